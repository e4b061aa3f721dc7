/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tar headers (sources/tar.c): ustar names with a prefix, GNU long names
 * and base-256 sizes, pax path and size records; hostile headers (a bad
 * checksum, a size past the end, malformed pax records) refused with the
 * member named; 10,000 members in bounded memory; the OVA container: one
 * disk shown under its name, read in place, checked against the .mf;
 * several disks listed and opened one by one, each against its digest.
 */
#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sources/tar.h"
#include "src/vd-container.h"
#include "src/vd-error.h"
#include "tests/unit/test-fixtures.h"

static char *dir;
static VdContext *ctx;
extern const VdContainer vd_tar_container;

enum { USTAR, GNU };

static void put_octal(uint8_t *f, size_t n, uint64_t v)
{
    char tmp[32];
    g_snprintf(tmp, sizeof tmp, "%0*" G_GINT64_MODIFIER "o", (int)(n - 1), v);
    memcpy(f, tmp, n - 1);
    f[n - 1] = '\0';
}

/* One header (and data, padded) as tar writes it; size_field is what the
 * header's size says (the data length unless a pax record overrides it). */
static void add_header(GByteArray *a, int kind, const char *name, const char *prefix, char type,
                       uint64_t size_field, bool base256, const void *data, size_t len)
{
    uint8_t b[TAR_BLOCK] = {0};
    memcpy(b, name, MIN(strlen(name), (size_t)100));
    put_octal(b + 100, 8, 0644);
    put_octal(b + 108, 8, 0);
    put_octal(b + 116, 8, 0);
    if (base256) {
        b[124] = 0x80;
        for (int i = 0; i < 8; i++)
            b[135 - i] = (uint8_t)(size_field >> (8 * i));
    } else {
        put_octal(b + 124, 12, size_field);
    }
    put_octal(b + 136, 12, 1700000000);
    b[156] = (uint8_t)type;
    memcpy(b + 257,
           kind == GNU ? "ustar  \0"
                       : "ustar\0"
                         "00",
           8);
    if (prefix != NULL)
        memcpy(b + 345, prefix, strlen(prefix));
    memset(b + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < TAR_BLOCK; i++)
        sum += b[i];
    char ck[8];
    g_snprintf(ck, sizeof ck, "%06o", sum);
    memcpy(b + 148, ck, 7); /* six digits, NUL, and the space left */
    g_byte_array_append(a, b, TAR_BLOCK);
    if (len > 0) {
        g_byte_array_append(a, data, (guint)len);
        static const uint8_t pad[TAR_BLOCK];
        if (len % TAR_BLOCK)
            g_byte_array_append(a, pad, (guint)(TAR_BLOCK - len % TAR_BLOCK));
    }
}

static void add_file(GByteArray *a, int kind, const char *name, const void *data, size_t len)
{
    add_header(a, kind, name, NULL, '0', len, false, data, len);
}

static void add_end(GByteArray *a)
{
    static const uint8_t zero[2 * TAR_BLOCK];
    g_byte_array_append(a, zero, sizeof zero);
}

/* A pax record "LEN key=value\n", LEN counting itself. */
static char *pax_record(const char *key, const char *value)
{
    size_t body = strlen(key) + strlen(value) + 3; /* space, '=', newline */
    size_t n = body + 1;
    for (;;) {
        g_autofree char *digits = g_strdup_printf("%zu", n);
        if (strlen(digits) + body == n)
            break;
        n++;
    }
    return g_strdup_printf("%zu %s=%s\n", n, key, value);
}

/* The archive in memory, zeros past its bytes up to a declared size. */
typedef struct {
    const GByteArray *a;
} Mem;

static bool mem_read(void *opaque, void *buf, size_t len, uint64_t off, GError **error)
{
    const GByteArray *a = ((Mem *)opaque)->a;
    memset(buf, 0, len);
    if (off < a->len)
        memcpy(buf, a->data + off, (size_t)MIN((uint64_t)len, a->len - off));
    return true;
}

typedef struct {
    GPtrArray *names;
    GArray *offsets, *sizes;
    unsigned count;
} Seen;

static bool seen_member(void *opaque, const TarMember *m, GError **error)
{
    Seen *s = opaque;
    s->count++;
    if (s->names != NULL) {
        g_ptr_array_add(s->names, g_strdup(m->name));
        g_array_append_val(s->offsets, m->offset);
        g_array_append_val(s->sizes, m->size);
    }
    return true;
}

static Seen *walk(const GByteArray *a, uint64_t file_size, GError **error)
{
    Seen *s = g_new0(Seen, 1);
    s->names = g_ptr_array_new_with_free_func(g_free);
    s->offsets = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    s->sizes = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    Mem m = {a};
    if (!tar_walk(mem_read, &m, file_size, "t.tar", seen_member, s, error)) {
        g_ptr_array_unref(s->names);
        g_array_unref(s->offsets);
        g_array_unref(s->sizes);
        g_free(s);
        return NULL;
    }
    return s;
}

static void seen_free(Seen *s)
{
    g_ptr_array_unref(s->names);
    g_array_unref(s->offsets);
    g_array_unref(s->sizes);
    g_free(s);
}

#define SEEN_NAME(s, i) ((const char *)g_ptr_array_index((s)->names, i))
#define SEEN_OFF(s, i)  g_array_index((s)->offsets, uint64_t, i)
#define SEEN_SIZE(s, i) g_array_index((s)->sizes, uint64_t, i)

static void expect_walk_error(const GByteArray *a, uint64_t file_size, const char *why1,
                              const char *why2)
{
    g_autoptr(GError) err = NULL;
    Seen *s = walk(a, file_size, &err);
    g_assert_null(s);
    g_assert_nonnull(err);
    if (strstr(err->message, why1) == NULL || (why2 && strstr(err->message, why2) == NULL))
        g_error("expected an error about '%s' and '%s', got '%s'", why1, why2 ? why2 : "",
                err->message);
}

static void test_ustar(void)
{
    g_autoptr(GByteArray) a = g_byte_array_new();
    add_file(a, USTAR, "appliance.ovf", "<Envelope/>", 11);
    static const uint8_t zeros[1000];
    add_header(a, USTAR, "disk1.vmdk", "some/dir", '0', 1000, false, zeros, sizeof zeros);
    add_header(a, USTAR, "sub", NULL, '5', 0, false, NULL, 0);
    add_end(a);
    g_autoptr(GError) err = NULL;
    Seen *s = walk(a, a->len, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(s->count, ==, 2); /* directories are not members */
    g_assert_cmpstr(SEEN_NAME(s, 0), ==, "appliance.ovf");
    g_assert_cmpuint(SEEN_OFF(s, 0), ==, 512);
    g_assert_cmpuint(SEEN_SIZE(s, 0), ==, 11);
    g_assert_cmpstr(SEEN_NAME(s, 1), ==, "some/dir/disk1.vmdk");
    g_assert_cmpuint(SEEN_OFF(s, 1), ==, 3 * 512);
    g_assert_cmpuint(SEEN_SIZE(s, 1), ==, 1000);
    seen_free(s);
    /* Nor need an archive end with its zero blocks, as GNU tar accepts. */
    g_byte_array_set_size(a, a->len - 1024);
    s = walk(a, a->len, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(s->count, ==, 2);
    seen_free(s);
}

static void test_gnu_long_name(void)
{
    g_autoptr(GByteArray) a = g_byte_array_new();
    g_autofree char *lng = g_strnfill(300, 'n');
    g_autofree char *name = g_strconcat("dir/", lng, ".qcow2", NULL);
    add_header(a, GNU, "././@LongLink", NULL, 'L', strlen(name) + 1, false, name, strlen(name) + 1);
    add_file(a, GNU, "truncated-name-ignored", "abc", 3);
    add_file(a, GNU, "short.img", "xy", 2); /* the long name was for one member only */
    add_end(a);
    g_autoptr(GError) err = NULL;
    Seen *s = walk(a, a->len, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(s->count, ==, 2);
    g_assert_cmpstr(SEEN_NAME(s, 0), ==, name);
    g_assert_cmpuint(SEEN_SIZE(s, 0), ==, 3);
    g_assert_cmpstr(SEEN_NAME(s, 1), ==, "short.img");
    seen_free(s);
}

static void test_pax(void)
{
    uint64_t big = 9ull << 30; /* over the 8 GiB of an octal size field */
    g_autoptr(GByteArray) a = g_byte_array_new();
    g_autofree char *lng = g_strnfill(200, 'p');
    g_autofree char *path = g_strconcat(lng, "/disk.vmdk", NULL);
    g_autofree char *r1 = pax_record("path", path);
    g_autofree char *r2 = pax_record("size", "9663676416");
    g_autofree char *r3 = pax_record("mtime", "1700000000.5");
    g_autofree char *recs = g_strconcat(r1, r3, r2, NULL);
    add_header(a, USTAR, "PaxHeaders/disk.vmdk", NULL, 'x', strlen(recs), false, recs,
               strlen(recs));
    add_header(a, USTAR, "disk.vmdk", NULL, '0', 0, false, NULL, 0);
    uint64_t data = a->len;
    g_autoptr(GError) err = NULL;
    Seen *s = walk(a, data + big, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(s->count, ==, 1);
    g_assert_cmpstr(SEEN_NAME(s, 0), ==, path);
    g_assert_cmpuint(SEEN_OFF(s, 0), ==, data);
    g_assert_cmpuint(SEEN_SIZE(s, 0), ==, big);
    seen_free(s);
    /* The same size one byte short of the archive: past the end. */
    expect_walk_error(a, data + big - 1, "past the end", "disk.vmdk");

    /* Malformed records: a length past the header, no '=', no newline. */
    static const char *const bad[] = {"99 path=x\n", "9 pathx\n", "10 path=xy", "abc path=x\n",
                                      "11 size=1x\n"};
    for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GByteArray) b = g_byte_array_new();
        add_header(b, USTAR, "PaxHeaders/x", NULL, 'x', strlen(bad[i]), false, bad[i],
                   strlen(bad[i]));
        add_file(b, USTAR, "x", "1", 1);
        add_end(b);
        expect_walk_error(b, b->len, "malformed pax record", NULL);
    }
}

static void test_gnu_base256(void)
{
    uint64_t big = (12ull << 30) + 12345;
    g_autoptr(GByteArray) a = g_byte_array_new();
    add_header(a, GNU, "huge.raw", NULL, '0', big, true, NULL, 0);
    uint64_t data = a->len;
    g_autoptr(GError) err = NULL;
    Seen *s = walk(a, data + (big + 511) / 512 * 512 + 1024, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(s->count, ==, 1);
    g_assert_cmpuint(SEEN_SIZE(s, 0), ==, big);
    seen_free(s);
    expect_walk_error(a, data + big - 512, "huge.raw", "past the end");
    /* A negative base-256 number is no size. */
    g_autoptr(GByteArray) n = g_byte_array_new();
    add_header(n, GNU, "neg.raw", NULL, '0', UINT64_MAX, true, NULL, 0);
    n->data[124] = 0xff;
    memset(n->data + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < TAR_BLOCK; i++)
        sum += n->data[i];
    g_snprintf((char *)n->data + 148, 8, "%06o", sum);
    expect_walk_error(n, n->len + 4096, "neg.raw", "bad size");
}

static void test_bad_checksum(void)
{
    g_autoptr(GByteArray) a = g_byte_array_new();
    add_file(a, USTAR, "appliance.ovf", "<Envelope/>", 11);
    guint at = a->len;
    add_file(a, USTAR, "disk1.vmdk", "data", 4);
    add_end(a);
    a->data[at + 130] ^= 0x01; /* a size digit: the checksum no longer holds */
    expect_walk_error(a, a->len, "bad tar header checksum", "'disk1.vmdk'");
    expect_walk_error(a, a->len, "after 'appliance.ovf'", "0x400");
    /* An archive cut inside a header. */
    g_autoptr(GByteArray) c = g_byte_array_new();
    add_file(c, USTAR, "a", "1", 1);
    add_file(c, USTAR, "b", "2", 1);
    g_byte_array_set_size(c, c->len - 600);
    expect_walk_error(c, c->len, "ends inside a header", NULL);
    /* GNU sparse members are not one byte range. */
    g_autoptr(GByteArray) sp = g_byte_array_new();
    add_header(sp, GNU, "sparse.img", NULL, 'S', 0, false, NULL, 0);
    add_end(sp);
    expect_walk_error(sp, sp->len, "sparse.img", "sparse");
}

static long max_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static char *write_file(const char *name, const GByteArray *a)
{
    char *path = g_build_filename(dir, name, NULL);
    tf_write_file(path, a->data, a->len);
    return path;
}

typedef struct {
    const VdContainer *c;
    const VdSourceOps *ops;
    void *opaque;
    uint64_t size;
} Opened;

static bool open_archive(const char *name, const GByteArray *a, Opened *o, GError **error)
{
    g_autofree char *path = write_file(name, a);
    o->c = vd_container_probe(a->data, MIN(a->len, (guint)VD_CONTAINER_HEAD), a->len);
    g_assert_nonnull(o->c);
    g_assert_cmpstr(o->c->name, ==, "tar");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    return o->c->open(ctx, fd, path, name, &o->ops, &o->opaque, &o->size, error);
}

static void test_many_members(void)
{
    /* 10,000 empty members, each with a long name, then the disk: the
     * walk keeps no list of them. */
    g_autoptr(GByteArray) a = g_byte_array_new();
    g_autofree char *lng = g_strnfill(900, 'e');
    for (unsigned i = 0; i < 10000; i++) {
        g_autofree char *name = g_strdup_printf("%s-%05u", lng, i);
        add_header(a, GNU, "././@LongLink", NULL, 'L', strlen(name) + 1, false, name,
                   strlen(name) + 1);
        add_file(a, GNU, "empty", NULL, 0);
    }
    g_autofree uint8_t *disk = g_malloc(4096);
    for (int i = 0; i < 4096; i++)
        disk[i] = (uint8_t)i;
    add_file(a, GNU, "disk.img", disk, 4096);
    add_end(a);
    long before = max_rss_kib();
    Seen s = {0};
    Mem m = {a};
    g_autoptr(GError) err = NULL;
    g_assert_true(tar_walk(mem_read, &m, a->len, "many.tar", seen_member, &s, &err));
    g_assert_cmpuint(s.count, ==, 10001);
    Opened o;
    g_assert_true(open_archive("many.tar", a, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(o.size, ==, 4096);
    g_assert_cmpstr(o.ops->inner_name(o.opaque), ==, "disk.img");
    o.ops->close(o.opaque);
    /* The archive itself is 20 MiB; walking it twice must not add that.
     * (Not under ASan: its quarantine keeps freed blocks resident.) */
#if !defined(__SANITIZE_ADDRESS__)
    g_assert_cmpint(max_rss_kib() - before, <, 8 * 1024);
#else
    (void)before;
#endif
}

static void test_manifest_lookup(void)
{
    static const char mf[] = "SHA1(appliance.ovf)= 0123456789ABCDEF0123456789abcdef01234567\r\n"
                             "SHA256 (disk1.vmdk) = "
                             "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
                             "SHA256(short.vmdk)= 0011\n";
    GChecksumType t;
    g_autofree char *h1 = NULL, *h2 = NULL, *h3 = NULL;
    g_assert_true(tar_manifest_lookup(mf, strlen(mf), "appliance.ovf", &t, &h1));
    g_assert_cmpint(t, ==, G_CHECKSUM_SHA1);
    g_assert_cmpstr(h1, ==, "0123456789abcdef0123456789abcdef01234567");
    g_assert_true(tar_manifest_lookup(mf, strlen(mf), "disk1.vmdk", &t, &h2));
    g_assert_cmpint(t, ==, G_CHECKSUM_SHA256);
    g_assert_false(tar_manifest_lookup(mf, strlen(mf), "short.vmdk", &t, &h3));
    g_assert_false(tar_manifest_lookup(mf, strlen(mf), "disk2.vmdk", &t, &h3));
}

static GByteArray *ova(const uint8_t *disk, size_t len, const char *mf_digest)
{
    GByteArray *a = g_byte_array_new();
    add_file(a, USTAR, "appliance.ovf", "<Envelope/>", 11);
    g_autofree char *digest =
        mf_digest ? g_strdup(mf_digest) : g_compute_checksum_for_data(G_CHECKSUM_SHA256, disk, len);
    g_autofree char *mf = g_strdup_printf("SHA256(disk1.vmdk)= %s\n", digest);
    add_file(a, USTAR, "appliance.mf", mf, strlen(mf));
    add_file(a, USTAR, "disk1.vmdk", disk, len);
    add_end(a);
    return a;
}

static void test_container(void)
{
    size_t len = 3 * 4096 + 100;
    g_autofree uint8_t *disk = g_malloc(len);
    for (size_t i = 0; i < len; i++)
        disk[i] = (uint8_t)(i * 7 + 3);
    g_autoptr(GByteArray) a = ova(disk, len, NULL);
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_archive("appliance.ova", a, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(o.size, ==, len);
    g_assert_cmpstr(o.ops->inner_name(o.opaque), ==, "disk1.vmdk");
    g_autofree uint8_t *buf = g_malloc(len);
    g_assert_true(o.ops->pread(o.opaque, buf, len - 5, 5, &err));
    g_assert_cmpmem(buf, len - 5, disk + 5, len - 5);
    uint64_t host_off;
    g_assert_cmpint(o.ops->host_range(o.opaque, 10, 100, &host_off), >=, 0);
    g_assert_cmpuint(host_off, ==, 3 * 512 + 2 * 512 + 10); /* ovf and mf: a block each */
    g_assert_true(o.ops->verify(o.opaque, &err));
    g_assert_no_error(err);
    o.ops->close(o.opaque);

    /* A manifest that disagrees: the open for use fails and says so. */
    g_autofree char *wrong = g_strnfill(64, 'a');
    g_autoptr(GByteArray) b = ova(disk, len, wrong);
    g_assert_true(open_archive("wrong.ova", b, &o, &err));
    g_assert_false(o.ops->verify(o.opaque, &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, "disk1.vmdk does not match its digest"));
    g_clear_error(&err);
    g_assert_false(o.ops->verify(o.opaque, &err)); /* remembered, the same answer */
    g_assert_nonnull(strstr(err->message, "does not match"));
    g_clear_error(&err);
    o.ops->close(o.opaque);

    /* Two disks: not shown (yet), and said why, even beside other files. */
    g_autoptr(GByteArray) c = g_byte_array_new();
    add_file(c, USTAR, "disk1.vmdk", disk, 100);
    add_file(c, USTAR, "notes.txt", disk, 20);
    add_file(c, USTAR, "disk2.vmdk", disk, 200);
    add_end(c);
    g_assert_false(open_archive("two.ova", c, &o, &err));
    g_assert_nonnull(strstr(err->message, "disk1.vmdk, disk2.vmdk"));
    g_clear_error(&err);
    /* A disk beside other files: the one named like a disk is shown. */
    g_autoptr(GByteArray) e = g_byte_array_new();
    add_file(e, USTAR, "README", "read me", 7);
    add_file(e, USTAR, "vm/disk.qcow2", disk, 300);
    add_file(e, USTAR, "vm.nvram", disk, 50);
    add_end(e);
    g_assert_true(open_archive("mixed.tar", e, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(o.ops->inner_name(o.opaque), ==, "disk.qcow2");
    g_assert_cmpuint(o.size, ==, 300);
    o.ops->close(o.opaque);
    /* Files none named like a disk (a tarball of sources): the first is
     * offered, for a listing to probe like any file. */
    g_autoptr(GByteArray) f = g_byte_array_new();
    add_file(f, USTAR, "src/main.c", "int main;", 9);
    add_file(f, USTAR, "src/Makefile", "all:", 4);
    add_end(f);
    g_assert_true(open_archive("src.tar", f, &o, &err));
    g_assert_cmpstr(o.ops->inner_name(o.opaque), ==, "main.c");
    o.ops->close(o.opaque);
    /* No disk at all. */
    g_autoptr(GByteArray) d = g_byte_array_new();
    add_file(d, USTAR, "only.ovf", "<Envelope/>", 11);
    add_end(d);
    g_assert_false(open_archive("none.ova", d, &o, &err));
    g_assert_nonnull(strstr(err->message, "no disk image"));
}

/* Write a as name and list its disks (asserting it can be listed); its
 * path into *path. */
static GPtrArray *list_archive(const char *name, const GByteArray *a, char **path)
{
    *path = write_file(name, a);
    int fd = open(*path, O_RDONLY | O_CLOEXEC);
    GPtrArray *names = NULL;
    g_autoptr(GError) err = NULL;
    g_assert_true(vd_tar_container.list(ctx, fd, name, &names, &err));
    g_assert_no_error(err);
    close(fd);
    return names;
}

/* Two disks: listed by name, each opened as a member, each checked
 * against its own digest (one right, one wrong, in one process). */
static void test_members(void)
{
    uint8_t d1[1000], d2[3000];
    memset(d1, 0x11, sizeof d1);
    memset(d2, 0x22, sizeof d2);
    g_autoptr(GByteArray) a = g_byte_array_new();
    g_autofree char *sum1 = g_compute_checksum_for_data(G_CHECKSUM_SHA256, d1, sizeof d1);
    g_autofree char *mf = g_strdup_printf("SHA256(a.vmdk)= %s\nSHA256(b.qcow2)= %s\n", sum1, sum1);
    add_file(a, USTAR, "x.ovf", "<Envelope/>", 11);
    add_file(a, USTAR, "x.mf", mf, strlen(mf));
    add_file(a, USTAR, "a.vmdk", d1, sizeof d1);
    add_file(a, USTAR, "sub/b.qcow2", d2, sizeof d2);
    add_end(a);
    g_autofree char *path = NULL;
    g_autoptr(GPtrArray) names = list_archive("multi.ova", a, &path);
    g_autoptr(GError) err = NULL;
    g_assert_cmpuint(names->len, ==, 2);
    g_assert_cmpstr(g_ptr_array_index(names, 0), ==, "a.vmdk");
    g_assert_cmpstr(g_ptr_array_index(names, 1), ==, "b.qcow2");
    const VdSourceOps *ops;
    void *o1, *o2;
    uint64_t size;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_true(
        vd_tar_container.open_member(ctx, fd, path, "multi.ova", "a.vmdk", &ops, &o1, &size, &err));
    g_assert_cmpuint(size, ==, sizeof d1);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_true(vd_tar_container.open_member(ctx, fd, path, "multi.ova", "b.qcow2", &ops, &o2,
                                               &size, &err));
    g_assert_cmpuint(size, ==, sizeof d2);
    uint8_t buf[3000];
    g_assert_true(ops->pread(o2, buf, sizeof buf, 0, &err));
    g_assert_cmpmem(buf, sizeof buf, d2, sizeof d2);
    g_assert_true(ops->verify(o1, &err));
    g_assert_false(ops->verify(o2, &err));
    g_assert_nonnull(strstr(err->message, "sub/b.qcow2 does not match"));
    g_clear_error(&err);
    ops->close(o1);
    ops->close(o2);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_false(
        vd_tar_container.open_member(ctx, fd, path, "multi.ova", "c.vmdk", &ops, &o1, &size, &err));
    g_assert_nonnull(strstr(err->message, "no member c.vmdk"));
    g_clear_error(&err);
    /* One disk: no directory, the archive is the disk's source. */
    g_autoptr(GByteArray) b = ova(d1, sizeof d1, NULL);
    g_autofree char *p1 = NULL;
    g_autoptr(GPtrArray) none = list_archive("one.ova", b, &p1);
    g_assert_cmpuint(none->len, ==, 0);
}

/* Disks alike in name in different folders of the archive: listed under
 * distinct names (the first under its base name, later ones under their
 * path with '_' for '/', then numbered), each opened by that name to its
 * own bytes; each counts its own share of the archive. */
static void test_same_base_names(void)
{
    static const char *const paths[] = {"a/x.qcow2", "b/x.qcow2", "b_x.qcow2", "./c/x.qcow2",
                                        "c/x.qcow2"};
    static const char *const shown[] = {"x.qcow2", "b_x.qcow2", "b_x~2.qcow2", "c_x.qcow2",
                                        "x~2.qcow2"};
    g_autoptr(GByteArray) a = g_byte_array_new();
    uint8_t data[G_N_ELEMENTS(paths)][700];
    for (size_t i = 0; i < G_N_ELEMENTS(paths); i++) {
        memset(data[i], 0x30 + (int)i, sizeof data[i]);
        add_file(a, USTAR, paths[i], data[i], sizeof data[i] - i);
    }
    add_end(a);
    g_autofree char *path = NULL;
    g_autoptr(GPtrArray) names = list_archive("alike.tar", a, &path);
    g_autoptr(GError) err = NULL;
    g_assert_cmpuint(names->len, ==, G_N_ELEMENTS(shown));
    for (size_t i = 0; i < G_N_ELEMENTS(shown); i++) {
        g_assert_cmpstr(g_ptr_array_index(names, i), ==, shown[i]);
        const VdSourceOps *ops;
        void *o;
        uint64_t size, bytes;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        g_assert_true(vd_tar_container.open_member(ctx, fd, path, "alike.tar", shown[i], &ops, &o,
                                                   &size, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(size, ==, sizeof data[i] - i);
        uint8_t buf[700];
        g_assert_true(ops->pread(o, buf, (size_t)size, 0, &err));
        g_assert_cmpmem(buf, (size_t)size, data[i], (size_t)size);
        g_assert_cmpstr(ops->inner_name(o), ==, shown[i]);
        g_assert_true(ops->host_bytes(o, &bytes));
        g_assert_cmpuint(bytes, ==, 1024); /* 700 bytes in 512-byte blocks */
        ops->close(o);
    }
    /* The archive's only disk counts all of the archive (no share). */
    Opened one;
    g_autoptr(GByteArray) b = g_byte_array_new();
    add_file(b, USTAR, "d/only.qcow2", data[0], sizeof data[0]);
    add_end(b);
    g_assert_true(open_archive("only.tar", b, &one, &err));
    uint64_t bytes;
    g_assert_false(one.ops->host_bytes(one.opaque, &bytes));
    one.ops->close(one.opaque);
}

static void test_probe(void)
{
    g_autoptr(GByteArray) a = g_byte_array_new();
    add_file(a, USTAR, "x", "1", 1);
    const VdContainer *c = vd_container_probe(a->data, TAR_BLOCK, a->len);
    g_assert_nonnull(c);
    g_assert_cmpstr(c->name, ==, "tar");
    a->data[0] ^= 1; /* checksum broken: not claimed as a tar at all */
    g_assert_null(vd_container_probe(a->data, TAR_BLOCK, a->len));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_autoptr(GError) err = NULL;
    dir = tf_tmpdir("test-tar-XXXXXX");
    g_assert_no_error(err);
    ctx = vd_context_new(dir, &err);
    g_assert_no_error(err);
    g_test_add_func("/tar/ustar", test_ustar);
    g_test_add_func("/tar/gnu-long-name", test_gnu_long_name);
    g_test_add_func("/tar/pax", test_pax);
    g_test_add_func("/tar/gnu-base256", test_gnu_base256);
    g_test_add_func("/tar/bad-checksum", test_bad_checksum);
    g_test_add_func("/tar/many-members", test_many_members);
    g_test_add_func("/tar/manifest", test_manifest_lookup);
    g_test_add_func("/tar/container", test_container);
    g_test_add_func("/tar/members", test_members);
    g_test_add_func("/tar/same-base-names", test_same_base_names);
    g_test_add_func("/tar/probe", test_probe);
    int rc = g_test_run();
    tf_rm_rf(dir);
    vd_context_unref(ctx);
    return rc;
}
