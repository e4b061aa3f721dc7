/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The vhdx driver through the block layer: differencing chains with every
 * block state (built from the specification; QEMU cannot make them),
 * parent linkage, log replay in memory and on disk (wrapping, stale and
 * torn entries, hostile entries), writes, hostile headers, and a writer
 * killed with SIGKILL.
 *
 * "test-vhdx gen DIR" writes parent.vhdx, child.vhdx, child.expect,
 * dirty.vhdx and dirty.expect for the integration test. Hostile headers,
 * SIGKILL and concurrency tests are in test-vhdx-more.c.
 */
#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "src/vd-chain.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "tests/unit/test-vhd-gen.h"
#include "tests/unit/test-vhdx.h"

uint8_t pat(uint64_t off, uint8_t seed)
{
    return (uint8_t)(seed + (off >> 9) * 31 + (off & 511));
}

static unsigned parent_block(void *ctx, uint64_t idx, uint8_t *data)
{
    if (idx == 6)
        return 0; /* NOT_PRESENT */
    if (idx == 7)
        return 2; /* ZERO */
    for (uint64_t i = 0; i < BLOCK; i++)
        data[i] = pat(idx * BLOCK + i, 0x10);
    return 6;
}

static const unsigned child_states[8] = {7, 0, 2, 6, 3, 1, 0, 7};

static bool child_sector(void *ctx, uint64_t n)
{
    uint64_t b = n / SECTORS, s = n % SECTORS;
    return (b == 0 && s % 2 == 0) || (b == 7 && s < SECTORS / 2);
}

static unsigned child_block(void *ctx, uint64_t idx, uint8_t *data)
{
    unsigned st = child_states[idx];
    if (st == 6 || st == 7) {
        for (uint64_t i = 0; i < BLOCK; i++)
            data[i] = pat(idx * BLOCK + i, 0x80);
    }
    return st;
}

static uint8_t expected_byte(uint64_t off)
{
    uint64_t b = off / BLOCK;
    switch (child_states[b]) {
    case 6:
        return pat(off, 0x80);
    case 7:
        if (child_sector(NULL, off / 512))
            return pat(off, 0x80);
        return b < 6 ? pat(off, 0x10) : 0; /* the parent */
    case 0:
        return b < 6 ? pat(off, 0x10) : 0;
    default:
        return 0;
    }
}

VhdxGen parent_gen(void)
{
    VhdxGen g = {
        .size = DISK_SIZE, .block_size = BLOCK, .logical_sector = 512, .block = parent_block};
    gen_guid(g.data_write_guid, PARENT_DWG);
    return g;
}

VhdxGen child_gen(void)
{
    VhdxGen g = {.size = DISK_SIZE,
                 .block_size = BLOCK,
                 .logical_sector = 512,
                 .has_parent = true,
                 .linkage = "{" PARENT_DWG "}",
                 .relative_path = "parent.vhdx",
                 .absolute_path = "\\\\?\\C:\\VMs\\parent.vhdx",
                 .block = child_block,
                 .sector = child_sector};
    gen_guid(g.data_write_guid, "cccccccc-bbbb-4ccc-8ddd-eeeeeeeeeeee");
    return g;
}

char *write_gen(const char *dir, const char *name, const VhdxGen *g)
{
    char *path = g_build_filename(dir, name, NULL);
    g_autoptr(GByteArray) b = vhdxgen_build(g);
    g_assert_true(gen_write_file(path, b));
    return path;
}

char *write_bytes(const char *dir, const char *name, const GByteArray *b)
{
    char *path = g_build_filename(dir, name, NULL);
    g_assert_true(gen_write_file(path, b));
    return path;
}

static void check_expected(VdImage *img)
{
    g_autofree uint8_t *buf = tf_read_image(img);
    g_autofree uint8_t *want = g_malloc(DISK_SIZE);
    for (uint64_t i = 0; i < DISK_SIZE; i++)
        want[i] = expected_byte(i);
    tf_assert_same(buf, want, DISK_SIZE, "child");
}

static void test_diff_read(Fixture *f, gconstpointer data)
{
    VhdxGen pg = parent_gen(), cg = child_gen();
    g_autofree char *pp = write_gen(f->dir, "parent.vhdx", &pg);
    g_autofree char *cp = write_gen(f->dir, "child.vhdx", &cg);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = gen_open(f, cp, false, &err);
    g_assert_no_error(err);
    g_assert_nonnull(img->backing);
    g_assert_cmpstr(img->backing_name, ==, "parent.vhdx");
    check_expected(img);

    /* Holes: ZERO/UNMAPPED/UNDEFINED are zeros here, NOT_PRESENT asks the
     * parent, partially present blocks follow the bitmap. */
    VdChainExtent e;
    g_assert_true(vd_chain_status(img, 0, BLOCK, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpuint(e.depth, ==, 0);
    g_assert_cmpuint(e.length, ==, 512);
    g_assert_true(vd_chain_status(img, 512, BLOCK - 512, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpuint(e.depth, ==, 1);
    g_assert_true(vd_chain_status(img, BLOCK, BLOCK, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpuint(e.depth, ==, 1);
    g_assert_true(vd_chain_extent_is_data(&e));
    g_assert_true(vd_chain_status(img, 2 * BLOCK, BLOCK, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_ZERO);
    g_assert_cmpuint(e.depth, ==, 0);
    g_assert_true(vd_chain_status(img, 4 * BLOCK, 2 * BLOCK, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_ZERO);
    g_assert_cmpuint(e.length, ==, 2 * BLOCK);
    uint64_t pos;
    g_assert_true(vd_chain_seek(img, 7 * BLOCK, SEEK_HOLE, &pos, &err));
    g_assert_cmpuint(pos, ==, 7 * BLOCK + BLOCK / 2);

    g_autoptr(VdInfo) info = vd_info_describe(img);
    g_assert_cmpstr(vd_info_get(info, "disk_type")->str, ==, "differencing");
    g_assert_cmpuint(vd_info_get(info, "cluster_size")->u64, ==, BLOCK);
    g_assert_nonnull(vd_info_get(info, "parent_linkage"));
    g_assert_nonnull(vd_info_get(info, "block_states"));
}

static void test_diff_linkage(Fixture *f, gconstpointer data)
{
    VhdxGen pg = parent_gen(), cg = child_gen();
    g_autofree char *pp = write_gen(f->dir, "parent.vhdx", &pg);
    cg.linkage = "{" OTHER_DWG "}";
    g_autofree char *cp = write_gen(f->dir, "child.vhdx", &cg);
    g_autoptr(GError) err = NULL;
    g_assert_null(gen_open(f, cp, false, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_assert_nonnull(strstr(err->message, "linkage"));
    g_clear_error(&err);

    /* parent_linkage2 may name the parent instead. */
    cg.linkage2 = "{" PARENT_DWG "}";
    g_free(write_gen(f->dir, "child.vhdx", &cg));
    g_autoptr(VdImage) img = gen_open(f, cp, false, &err);
    g_assert_no_error(err);
    check_expected(img);
    g_clear_pointer(&img, vd_image_unref);

    /* Writing to the parent gives it a new DataWriteGuid: the child no
     * longer matches it. */
    cg.linkage2 = NULL;
    cg.linkage = "{" PARENT_DWG "}";
    g_free(write_gen(f->dir, "child.vhdx", &cg));
    {
        g_autoptr(VdImage) parent = gen_open(f, pp, true, &err);
        g_assert_no_error(err);
        g_assert_true(vd_image_pwrite(parent, "x", 1, 0, &err));
    }
    g_assert_null(gen_open(f, cp, false, &err));
    g_assert_error(err, VD_ERROR, EIO);
}

static void test_diff_paths(Fixture *f, gconstpointer data)
{
    VhdxGen pg = parent_gen();
    g_autofree char *pp = write_gen(f->dir, "base.vhdx", &pg);
    struct {
        const char *rel, *vol, *abs;
        bool ok;
    } cases[] = {
        {"base.vhdx", NULL, NULL, true},
        {".\\base.vhdx", NULL, NULL, true},
        {"..\\gone\\base2.vhdx",
         "\\\\?\\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}\\x\\base.vhdx", NULL, true},
        {NULL, NULL, "\\\\?\\D:\\path2\\sub3\\base.vhdx", true},
        {"nothere.vhdx", NULL, "\\\\?\\D:\\nothere.vhdx", false},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        VhdxGen cg = child_gen();
        cg.relative_path = cases[i].rel;
        cg.volume_path = cases[i].vol;
        cg.absolute_path = cases[i].abs;
        g_autofree char *cp = write_gen(f->dir, "child.vhdx", &cg);
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = gen_open(f, cp, false, &err);
        if (cases[i].ok) {
            g_assert_no_error(err);
            check_expected(img);
        } else {
            g_assert_null(img);
            g_assert_error(err, VD_ERROR, ENOENT);
        }
    }
}

static void test_diff_missing(Fixture *f, gconstpointer data)
{
    VhdxGen cg = child_gen();
    g_autofree char *cp = write_gen(f->dir, "child.vhdx", &cg);
    g_autoptr(GError) err = NULL;
    g_assert_null(gen_open(f, cp, false, &err));
    g_assert_error(err, VD_ERROR, ENOENT);
    g_assert_nonnull(strstr(err->message, "parent.vhdx"));
    g_clear_error(&err);
    /* A locator without any path is refused too. */
    cg.relative_path = cg.absolute_path = NULL;
    g_free(write_gen(f->dir, "child.vhdx", &cg));
    g_assert_null(gen_open(f, cp, false, &err));
    g_assert_error(err, VD_ERROR, ENOENT);
}

/* Random writes of random sizes against a model; reopen; the file stays
 * consistent for a second open. */
static void random_writes(Fixture *f, const char *path, uint8_t *model, uint64_t size, int n,
                          guint32 seed)
{
    GRand *r = g_rand_new_with_seed(seed);
    {
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = gen_open(f, path, true, &err);
        g_assert_no_error(err);
        g_assert_false(img->read_only);
        g_autofree uint8_t *buf = g_malloc(3 * BLOCK);
        for (int i = 0; i < n; i++) {
            uint64_t len = (uint64_t)g_rand_int_range(r, 1, i % 9 == 0 ? 3 * BLOCK : 20000);
            uint64_t off = (uint64_t)g_rand_int_range(r, 0, (gint32)(size - len));
            uint8_t v = (uint8_t)g_rand_int(r);
            for (uint64_t k = 0; k < len; k++)
                buf[k] = (uint8_t)(v + k * 7);
            if (i % 5 == 0)
                memset(buf, 0, len);
            g_assert_true(vd_image_pwrite(img, buf, len, off, &err));
            g_assert_no_error(err);
            memcpy(model + off, buf, len);
            if (i % 40 == 39)
                g_assert_true(vd_image_flush(img, &err));
        }
        g_autofree uint8_t *got = tf_read_image(img);
        tf_assert_same(got, model, size, "after writes");
    }
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) again = gen_open(f, path, false, &err);
    g_assert_no_error(err);
    g_autofree uint8_t *got = tf_read_image(again);
    tf_assert_same(got, model, size, "reopened");
    g_autoptr(VdInfo) info = vd_info_describe(again);
    g_assert_cmpstr(vd_info_get(info, "log")->str, ==, "clean");
    g_rand_free(r);
}

static void test_diff_write(Fixture *f, gconstpointer data)
{
    VhdxGen pg = parent_gen(), cg = child_gen();
    g_autofree char *pp = write_gen(f->dir, "parent.vhdx", &pg);
    g_autofree char *cp = write_gen(f->dir, "child.vhdx", &cg);
    g_autofree uint8_t *model = g_malloc(DISK_SIZE);
    for (uint64_t i = 0; i < DISK_SIZE; i++)
        model[i] = expected_byte(i);
    random_writes(f, cp, model, DISK_SIZE, 150, 7);
}

static void test_dynamic_write(Fixture *f, gconstpointer data)
{
    VhdxGen pg = parent_gen();
    g_autofree char *pp = write_gen(f->dir, "dyn.vhdx", &pg);
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *model = NULL;
    {
        g_autoptr(VdImage) img = gen_open(f, pp, false, &err);
        g_assert_no_error(err);
        model = tf_read_image(img);
    }
    random_writes(f, pp, model, DISK_SIZE, 150, 11);
}

/* ---- log ---- */

/* before: the parent image; after: block 1 turned ZERO, block 0's first
 * page rewritten and second page zeroed, and a new block 6 appended past
 * the end of the file. */
static void make_before_after(GByteArray **before, GByteArray **after)
{
    VhdxGen pg = parent_gen();
    *before = vhdxgen_build(&pg);
    GByteArray *a = g_byte_array_new();
    g_byte_array_append(a, (*before)->data, (*before)->len);
    uint8_t *bat = a->data + VHDXGEN_BAT_OFFSET;
    memset(bat + 8, 0, 8);
    bat[8] = 2; /* block 1: ZERO */
    uint64_t b0 = VHDXGEN_DATA_OFFSET;
    memset(a->data + b0, 0xab, 4096);
    memset(a->data + b0 + 4096, 0, 4096);
    uint64_t nb = a->len;
    g_byte_array_set_size(a, (guint)(nb + MiB));
    memset(a->data + nb, 0, MiB);
    memset(a->data + nb, 0xcd, 4096);
    uint64_t e = nb | 6;
    for (int i = 0; i < 8; i++)
        bat[6 * 8 + i] = (uint8_t)(e >> (8 * i));
    *after = a;
}

static uint8_t *content_of(Fixture *f, const GByteArray *b, const char *name)
{
    g_autofree char *p = write_bytes(f->dir, name, b);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = gen_open(f, p, false, &err);
    g_assert_no_error(err);
    return tf_read_image(img);
}

static void check_dirty(Fixture *f, GByteArray *dirty, const uint8_t *want, const char *state)
{
    g_autofree char *p = write_bytes(f->dir, "dirty.vhdx", dirty);
    g_autoptr(GError) err = NULL;
    {
        g_autoptr(VdImage) img = gen_open(f, p, false, &err);
        g_assert_no_error(err);
        g_autofree uint8_t *got = tf_read_image(img);
        tf_assert_same(got, want, DISK_SIZE, "read-only replay");
        g_autoptr(VdInfo) info = vd_info_describe(img);
        g_assert_cmpstr(vd_info_get(info, "log")->str, ==, state);
    }
    /* Read-only: the file is untouched. */
    g_autofree char *now = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(p, &now, &len, NULL));
    g_assert_cmpuint(len, ==, dirty->len);
    g_assert_true(memcmp(now, dirty->data, len) == 0);
    /* Read-write: replayed into the file, then clean. */
    {
        g_autoptr(VdImage) img = gen_open(f, p, true, &err);
        g_assert_no_error(err);
        g_autofree uint8_t *got = tf_read_image(img);
        tf_assert_same(got, want, DISK_SIZE, "read-write replay");
    }
    g_autoptr(VdImage) img = gen_open(f, p, false, &err);
    g_assert_no_error(err);
    g_autoptr(VdInfo) info = vd_info_describe(img);
    g_assert_cmpstr(vd_info_get(info, "log")->str, ==, "clean");
    g_autofree uint8_t *got = tf_read_image(img);
    tf_assert_same(got, want, DISK_SIZE, "after replay");
}

static void test_log_replay(Fixture *f, gconstpointer data)
{
    GByteArray *before, *after;
    make_before_after(&before, &after);
    g_autofree uint8_t *want = content_of(f, after, "after.vhdx");
    g_autofree uint8_t *old = content_of(f, before, "before.vhdx");
    g_assert_true(memcmp(want, old, DISK_SIZE) != 0);
    struct {
        unsigned per_entry;
        uint32_t start;
        bool extend_first;
    } cases[] = {{100, 0, false},
                 {100, 0, true},
                 {1, 0, false},
                 {1, VHDXGEN_LOG_SIZE - 8192, false},
                 {2, VHDXGEN_LOG_SIZE - 4096, true}};
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GByteArray) d = g_byte_array_new();
        g_byte_array_append(d, before->data, before->len);
        vhdxgen_make_dirty(d, after, cases[i].per_entry, cases[i].start, 1000,
                           cases[i].extend_first);
        g_test_message("per entry %u, start 0x%x, extend first %d", cases[i].per_entry,
                       cases[i].start, cases[i].extend_first);
        check_dirty(f, d, want, "replayed in memory (read-only)");
    }
    g_byte_array_unref(before);
    g_byte_array_unref(after);
}

/* An older complete sequence elsewhere in the log loses to the newer one. */
static void test_log_stale(Fixture *f, gconstpointer data)
{
    GByteArray *before, *after;
    make_before_after(&before, &after);
    g_autoptr(GByteArray) other = g_byte_array_new();
    g_byte_array_append(other, before->data, before->len);
    memset(other->data + VHDXGEN_DATA_OFFSET + 3 * MiB, 0x77, 4096);
    g_autofree uint8_t *want = content_of(f, after, "after.vhdx");
    for (int order = 0; order < 2; order++) {
        g_autoptr(GByteArray) d = g_byte_array_new();
        g_byte_array_append(d, before->data, before->len);
        if (order == 0) {
            vhdxgen_make_dirty(d, other, 1, 512 * 1024, 10, false);
            vhdxgen_make_dirty(d, after, 1, 0, 20, false);
        } else {
            vhdxgen_make_dirty(d, after, 1, 0, 20, false);
            vhdxgen_make_dirty(d, other, 1, 512 * 1024, 10, false);
        }
        check_dirty(f, d, want, "replayed in memory (read-only)");
    }
    g_byte_array_unref(before);
    g_byte_array_unref(after);
}

/* A torn entry (bad checksum) is not replayed. */
static void test_log_torn(Fixture *f, gconstpointer data)
{
    GByteArray *before, *after;
    make_before_after(&before, &after);
    g_autofree uint8_t *old = content_of(f, before, "before.vhdx");
    g_autoptr(GByteArray) d = g_byte_array_new();
    g_byte_array_append(d, before->data, before->len);
    vhdxgen_make_dirty(d, after, 100, 0, 5, false);
    d->data[VHDXGEN_LOG_OFFSET + 4096 + 100] ^= 0x40; /* inside a data sector */
    check_dirty(f, d, old, "clean (no valid entries)");
    g_byte_array_unref(before);
    g_byte_array_unref(after);
}

static void fix_entry_crc(GByteArray *d, uint32_t pos)
{
    uint8_t *e = d->data + VHDXGEN_LOG_OFFSET + pos;
    uint32_t len = e[8] | e[9] << 8 | e[10] << 16 | (uint32_t)e[11] << 24;
    if (len == 0 || len % 4096 != 0 || pos + len > VHDXGEN_LOG_SIZE)
        return;
    memset(e + 4, 0, 4);
    uint32_t c = gen_crc32c(e, len);
    for (int i = 0; i < 4; i++)
        e[4 + i] = (uint8_t)(c >> (8 * i));
}

void put_le64_at(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void set_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Entries whose CRC is right but whose fields are hostile. */
static void test_log_hostile(Fixture *f, gconstpointer data)
{
    GByteArray *before, *after;
    make_before_after(&before, &after);
    g_autoptr(GByteArray) base = g_byte_array_new();
    g_byte_array_append(base, before->data, before->len);
    vhdxgen_make_dirty(base, after, 100, 0, 5, false);
    g_autofree char *p = g_build_filename(f->dir, "h.vhdx", NULL);
    uint8_t *e0 = NULL;

    /* Targeted: writes into the headers, past the end, a lost file tail. */
    struct {
        const char *what;
        unsigned field; /* byte offset in the entry */
        uint64_t value;
    } cases[] = {
        {"descriptor writes the header", 64 + 16, 0x10000},
        {"descriptor writes the log", 64 + 16, VHDXGEN_LOG_OFFSET},
        {"descriptor far past the end", 64 + 16, 1ull << 50},
        {"flushed offset past the file's end", 48, 1ull << 40},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GByteArray) d = g_byte_array_new();
        g_byte_array_append(d, base->data, base->len);
        e0 = d->data + VHDXGEN_LOG_OFFSET;
        put_le64_at(e0 + cases[i].field, cases[i].value);
        fix_entry_crc(d, 0);
        g_assert_true(gen_write_file(p, d));
        g_autoptr(GError) err = NULL;
        VdImage *img = gen_open(f, p, false, &err);
        g_test_message("%s: %s", cases[i].what, err ? err->message : "opened");
        g_assert_null(img);
        g_assert_error(err, VD_ERROR, EIO);
    }

    /* Random mutations of the entry header and descriptors, CRC fixed up:
     * open may fail, but must not crash or hang. */
    GRand *r = g_rand_new_with_seed(99);
    for (int it = 0; it < 300; it++) {
        g_autoptr(GByteArray) d = g_byte_array_new();
        g_byte_array_append(d, base->data, base->len);
        e0 = d->data + VHDXGEN_LOG_OFFSET;
        int nmut = g_rand_int_range(r, 1, 4);
        for (int k = 0; k < nmut; k++) {
            unsigned at = (unsigned)g_rand_int_range(r, 8, 64 + 32 * 8);
            e0[at] = (uint8_t)g_rand_int(r);
        }
        fix_entry_crc(d, 0);
        g_assert_true(gen_write_file(p, d));
        g_autoptr(GError) err = NULL;
        VdImage *img = gen_open(f, p, false, &err);
        if (img != NULL) {
            g_autofree uint8_t *buf = g_malloc(DISK_SIZE);
            g_autoptr(GError) rerr = NULL;
            (void)vd_image_pread(img, buf, DISK_SIZE, 0, &rerr);
            vd_image_unref(img);
        }
    }
    g_rand_free(r);

    /* Every sector the start of a log-long entry (bad CRCs): the scan's
     * checksum budget keeps this cheap. */
    {
        g_autoptr(GByteArray) d = g_byte_array_new();
        g_byte_array_append(d, base->data, base->len);
        const uint8_t *guid = d->data + 0x20000 + 48;
        for (uint32_t pos = 0; pos < VHDXGEN_LOG_SIZE; pos += 4096) {
            uint8_t *e = d->data + VHDXGEN_LOG_OFFSET + pos;
            memcpy(e, "loge", 4);
            set_le32(e + 8, VHDXGEN_LOG_SIZE);
            set_le32(e + 12, 0);
            memcpy(e + 32, guid, 16);
        }
        g_assert_true(gen_write_file(p, d));
        gint64 t0 = g_get_monotonic_time();
        g_autoptr(GError) err = NULL;
        VdImage *img = gen_open(f, p, false, &err);
        g_clear_pointer(&img, vd_image_unref);
        g_assert_cmpint(g_get_monotonic_time() - t0, <, 5 * G_USEC_PER_SEC);
    }

    /* An entry as long as the whole log, its tail at itself. */
    g_autoptr(GByteArray) d = g_byte_array_new();
    g_byte_array_append(d, base->data, base->len);
    e0 = d->data + VHDXGEN_LOG_OFFSET;
    e0[8] = 0;
    e0[9] = 0;
    e0[10] = 0x10; /* 1 MiB */
    e0[11] = 0;
    fix_entry_crc(d, 0);
    g_assert_true(gen_write_file(p, d));
    g_autoptr(GError) err = NULL;
    VdImage *img = gen_open(f, p, false, &err);
    g_clear_pointer(&img, vd_image_unref);
    g_byte_array_unref(before);
    g_byte_array_unref(after);
}

static int generate(const char *dir)
{
    VhdxGen pg = parent_gen(), cg = child_gen();
    g_autofree char *pp = write_gen(dir, "parent.vhdx", &pg);
    g_autofree char *cp = write_gen(dir, "child.vhdx", &cg);
    g_autofree uint8_t *raw = g_malloc(DISK_SIZE);
    for (uint64_t i = 0; i < DISK_SIZE; i++)
        raw[i] = expected_byte(i);
    g_autofree char *ep = g_build_filename(dir, "child.expect", NULL);
    if (!g_file_set_contents(ep, (const char *)raw, DISK_SIZE, NULL))
        return 1;
    GByteArray *before, *after;
    make_before_after(&before, &after);
    /* The expected content of "after", computed without the driver: block
     * i at VHDXGEN_DATA_OFFSET + i MiB for 0..5, block 1 zero, block 6 the
     * appended one, block 7 zero. */
    memset(raw, 0, DISK_SIZE);
    for (uint64_t blk = 0; blk < 6; blk++) {
        if (blk != 1)
            memcpy(raw + blk * BLOCK, after->data + VHDXGEN_DATA_OFFSET + blk * BLOCK, BLOCK);
    }
    memcpy(raw + 6 * BLOCK, after->data + after->len - MiB, BLOCK);
    g_autofree char *xp = g_build_filename(dir, "dirty.expect", NULL);
    if (!g_file_set_contents(xp, (const char *)raw, DISK_SIZE, NULL))
        return 1;
    vhdxgen_make_dirty(before, after, 2, 64 * 1024, 77, true);
    g_autofree char *dp = g_build_filename(dir, "dirty.vhdx", NULL);
    bool ok = gen_write_file(dp, before);
    g_byte_array_unref(before);
    g_byte_array_unref(after);
    return ok ? 0 : 1;
}

int main(int argc, char *argv[])
{
    if (argc == 3 && strcmp(argv[1], "gen") == 0)
        return generate(argv[2]);
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, gen_fixture_setup, fn, gen_fixture_teardown)
    ADD("/vhdx/diff/read", test_diff_read);
    ADD("/vhdx/diff/linkage", test_diff_linkage);
    ADD("/vhdx/diff/paths", test_diff_paths);
    ADD("/vhdx/diff/missing-parent", test_diff_missing);
    ADD("/vhdx/diff/write", test_diff_write);
    ADD("/vhdx/dynamic/write", test_dynamic_write);
    ADD("/vhdx/log/replay", test_log_replay);
    ADD("/vhdx/log/stale-sequence", test_log_stale);
    ADD("/vhdx/log/torn-entry", test_log_torn);
    ADD("/vhdx/log/hostile", test_log_hostile);
    vhdx_add_more_tests();
    return g_test_run();
}
