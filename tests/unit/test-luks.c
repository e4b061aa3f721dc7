/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * luks driver: images made by qemu-img (LUKS1, aes-xts-plain64 and
 * aes-cbc-essiv:sha256) read as qemu-img convert reads them, LUKS2 files
 * made by cryptsetup (pbkdf2, argon2i and argon2id key slots) as cryptsetup
 * decrypts them, the wrong or
 * a missing passphrase refused with EACCES, writes of any alignment read
 * back by QEMU, a payload over the key material never written, and
 * hostile headers (key size 0, key material past the end, iteration
 * counts over the cap, a payload past the end, random damage) refused
 * with a clear error, never a crash.
 */
#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "tests/unit/test-guard.h"
#include "tests/unit/test-peek.h"
#include "tests/unit/test-fixtures.h"

#define SECRET "--object secret,id=s0,data=PASS"
#define VSIZE  (4u << 20)

typedef struct {
    char *dir;
    char *path; /* dir/t.luks */
    char *raw;  /* what qemu-img convert reads of it */
    VdContext *ctx;
} Fixture;

/* What main() made once: copied into each test's directory. */
static char *template_dir;

/* qemu-img times PBKDF2 and now and then fails to ("Unable to get
 * accurate CPU usage"): retry. */
static void create_luks(const char *path, const char *opts)
{
    g_autofree char *cmd = g_strdup_printf("qemu-img create -q -f luks " SECRET
                                           " -o key-secret=s0,iter-time=10,hash-alg=sha256%s %s %u",
                                           opts, path, VSIZE);
    for (int i = 0; i < 20; i++) {
        if (tf_try(cmd))
            return;
        g_unlink(path);
        g_usleep(100 * 1000);
    }
    g_error("%s keeps failing", cmd);
}

static void qemu_io(const char *path, const char *script)
{
    g_autofree char *cmd = g_strdup_printf(
        "qemu-io " SECRET " --image-opts driver=luks,file.filename=%s,key-secret=s0 %s", path,
        script);
    tf_run(cmd);
}

static void qemu_convert(const char *path, const char *raw)
{
    g_autofree char *cmd = g_strdup_printf(
        "qemu-img convert " SECRET " --image-opts driver=luks,file.filename=%s,key-secret=s0"
        " -O raw %s",
        path, raw);
    tf_run(cmd);
}

/* cryptsetup's own reading of a LUKS2 file: an offline decryption of a
 * copy (no device mapper needed), whose first VSIZE bytes are the disk. */
static void cryptsetup_raw(const char *path, const char *raw)
{
    g_autofree char *copy = g_strconcat(raw, ".tmp", NULL);
    g_autofree char *hdr = g_strconcat(raw, ".hdr", NULL);
    g_autofree char *key = g_build_filename(template_dir, "key", NULL);
    g_autofree char *cmd = g_strdup_printf(
        "sh -c 'cp %s %s && rm -f %s && cryptsetup reencrypt --decrypt --force-offline-reencrypt "
        "--header %s --key-file %s --batch-mode %s && head -c %u %s >%s && rm -f %s %s'",
        path, copy, hdr, hdr, key, copy, VSIZE, copy, raw, copy, hdr);
    tf_run(cmd);
}

/* A LUKS2 file as cryptsetup makes it: 16 MiB of header and key slots,
 * VSIZE of payload (4096-byte sectors, as cryptsetup picks for files). */
static void make_luks2(const char *path, const char *opts)
{
    g_autofree char *key = g_build_filename(template_dir, "key", NULL);
    g_autofree char *cmd = g_strdup_printf(
        "sh -c 'truncate -s %u %s && cryptsetup luksFormat --type luks2 %s --batch-mode "
        "--key-file %s %s'",
        VSIZE + (16u << 20), path, opts, key, path);
    tf_run(cmd);
}

static void make_template2(const char *name, const char *opts)
{
    g_autofree char *path = g_build_filename(template_dir, name, NULL);
    g_autofree char *raw = g_strconcat(path, ".raw", NULL);
    make_luks2(path, opts);
    cryptsetup_raw(path, raw);
}

static void make_template(const char *name, const char *opts)
{
    g_autofree char *path = g_build_filename(template_dir, name, NULL);
    g_autofree char *raw = g_strconcat(path, ".raw", NULL);
    create_luks(path, opts);
    qemu_io(path,
            "-c 'write -P 0x5a 0 1M' -c 'write -P 0x33 1536 1000' -c 'write -P 0x7e 3M 4097'");
    qemu_convert(path, raw);
}

static void copy_file(const char *from, const char *to)
{
    g_autofree char *data = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(from, &data, &len, NULL));
    tf_write_file(to, data, len);
}

static void fixture_setup(Fixture *f, gconstpointer data)
{
    const char *which = data != NULL ? data : "xts.luks";
    f->dir = tf_tmpdir("vdluks-XXXXXX");
    f->path = g_build_filename(f->dir, "t.luks", NULL);
    f->raw = g_build_filename(f->dir, "t.raw", NULL);
    g_autofree char *src = g_build_filename(template_dir, which, NULL);
    g_autofree char *src_raw = g_strconcat(src, ".raw", NULL);
    copy_file(src, f->path);
    copy_file(src_raw, f->raw);
    g_autoptr(GError) err = NULL;
    f->ctx = vd_context_new(f->dir, &err);
    g_assert_no_error(err);
    g_autofree char *keys = g_build_filename(f->dir, "keys", NULL);
    g_assert_true(g_file_set_contents(keys, "[t.luks]\npassphrase=PASS\n", -1, NULL));
    g_assert_cmpint(chmod(keys, 0600), ==, 0);
    g_assert_true(vd_context_load_keyfile(f->ctx, keys, &err));
    g_assert_no_error(err);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    tf_rm_rf(f->dir);
    g_free(f->path);
    g_free(f->raw);
    g_free(f->dir);
    vd_context_unref(f->ctx);
}

static VdImage *open_image(Fixture *f, bool rw, GError **error)
{
    VdOpenOptions o = {.read_only = !rw};
    return vd_image_open(f->ctx, f->path, &o, error);
}

/* Damaged images: open, and read if it opened; only a crash fails. */
static void open_and_read(Fixture *f)
{
    g_autoptr(GError) err = NULL;
    VdImage *img = open_image(f, false, &err);
    if (img != NULL) {
        uint8_t buf[4096];
        g_autoptr(GError) rerr = NULL;
        vd_image_pread(img, buf, sizeof buf, 0, &rerr);
        vd_image_unref(img);
    }
}

static void set_passphrase(Fixture *f, const char *pass)
{
    g_autofree char *keys = g_build_filename(f->dir, "keys", NULL);
    g_autofree char *text = g_strdup_printf("[t.luks]\npassphrase=%s\n", pass);
    g_assert_true(g_file_set_contents(keys, text, -1, NULL));
    g_assert_cmpint(chmod(keys, 0600), ==, 0);
    g_autoptr(GError) err = NULL;
    g_assert_true(vd_context_load_keyfile(f->ctx, keys, &err));
    g_assert_no_error(err);
}

/* The whole disk, and some unaligned pieces, equal what qemu-img reads. */
static void expect_like_qemu(VdImage *img, const char *raw)
{
    g_autofree uint8_t *want = NULL;
    gsize want_len;
    g_assert_true(g_file_get_contents(raw, (char **)&want, &want_len, NULL));
    g_assert_cmpuint(vd_image_size(img), ==, want_len);
    g_autofree uint8_t *got = tf_read_image(img);
    g_assert_cmpmem(got, want_len, want, want_len);
    g_autoptr(GError) err = NULL;
    static const uint64_t pieces[][2] = {
        {1, 1}, {511, 2}, {1535, 1003}, {3 * 1048576 - 7, 4111}, {VSIZE - 1, 1}};
    for (size_t i = 0; i < G_N_ELEMENTS(pieces); i++) {
        uint8_t buf[8192];
        size_t n = (size_t)pieces[i][1];
        g_assert_true(vd_image_pread(img, buf, n, pieces[i][0], &err));
        g_assert_no_error(err);
        g_assert_cmpmem(buf, n, want + pieces[i][0], n);
    }
}

static void test_read(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_image(f, false, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(img->driver->name, ==, "luks");
    expect_like_qemu(img, f->raw);
    /* Nothing is a hole: all of it is ciphertext. */
    VdExtent ext;
    g_assert_true(
        img->driver->block_status(img, 0, vd_image_size(img), VD_STATUS_WANT_ZERO, &ext, &err));
    g_assert_cmpint(ext.state, ==, VD_EXTENT_DATA_DECODE);
    g_assert_cmpuint(ext.length, ==, vd_image_size(img));
    g_autoptr(VdInfo) info = vd_info_new();
    img->driver->describe(img, info);
    const VdInfoEntry *e = vd_info_get(info, "encryption_unlocked");
    g_assert_nonnull(e);
    g_assert_true(e->b);
    g_assert_nonnull(vd_info_get(info, "encryption_hash"));
    g_assert_nonnull(vd_info_get(info, "payload_offset"));
}

static void test_wrong_passphrase(Fixture *f, gconstpointer data)
{
    set_passphrase(f, "not-it");
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_image(f, false, &err);
    g_assert_null(img);
    g_assert_cmpint(vd_error_errno(err), ==, EACCES);
    g_assert_nonnull(strstr(err->message, "passphrase"));
}

static void test_missing_key(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    VdContext *bare = vd_context_new(f->dir, &err);
    g_assert_no_error(err);
    VdOpenOptions o = {.read_only = true};
    VdImage *img = vd_image_open(bare, f->path, &o, &err);
    g_assert_null(img);
    g_assert_cmpint(vd_error_errno(err), ==, EACCES);
    g_assert_nonnull(strstr(err->message, "keyfile"));
    g_clear_error(&err);
    /* vdisk: described without the key, every read refused. */
    bare->open_locked = true;
    img = vd_image_open(bare, f->path, &o, &err);
    g_assert_no_error(err);
    uint8_t buf[512];
    g_assert_false(vd_image_pread(img, buf, sizeof buf, 0, &err));
    g_assert_cmpint(vd_error_errno(err), ==, EACCES);
    g_autoptr(VdInfo) info = vd_info_new();
    img->driver->describe(img, info);
    const VdInfoEntry *e = vd_info_get(info, "encryption_unlocked");
    g_assert_nonnull(e);
    g_assert_false(e->b);
    vd_image_unref(img);
    vd_context_unref(bare);
}

static void test_peek(Fixture *f, gconstpointer data)
{
    peek_expect_same(f->ctx, f->path);
}

/* Writes of every alignment read back, through vdiskfs and through QEMU. */
static void test_write(Fixture *f, gconstpointer data)
{
    g_autofree uint8_t *want = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(f->raw, (char **)&want, &len, NULL));
    g_autoptr(GError) err = NULL;
    VdImage *img = open_image(f, true, &err);
    g_assert_no_error(err);
    g_assert_false(img->read_only);
    static const uint64_t pieces[][2] = {{65536, 65536},   {777, 1000}, {2097152 - 300, 1500},
                                         {VSIZE - 1, 1},   {0, 512},    {1048576 - 5, 10},
                                         {3000000, 300000}};
    g_autofree uint8_t *buf = g_malloc(300000);
    for (size_t i = 0; i < G_N_ELEMENTS(pieces); i++) {
        size_t n = (size_t)pieces[i][1];
        for (size_t k = 0; k < n; k++)
            buf[k] = (uint8_t)(k * 7 + i * 31 + 1);
        g_assert_true(vd_image_pwrite(img, buf, n, pieces[i][0], &err));
        g_assert_no_error(err);
        memcpy(want + pieces[i][0], buf, n);
    }
    g_assert_true(vd_image_flush(img, &err));
    g_assert_no_error(err);
    vd_image_unref(img);
    g_assert_true(g_file_set_contents(f->raw, (char *)want, (gssize)len, NULL));
    img = open_image(f, false, &err);
    g_assert_no_error(err);
    expect_like_qemu(img, f->raw);
    vd_image_unref(img);
    g_autofree char *qraw = g_build_filename(f->dir, "q.raw", NULL);
    if (data != NULL && g_str_has_prefix(data, "luks2"))
        cryptsetup_raw(f->path, qraw);
    else
        qemu_convert(f->path, qraw);
    g_autofree uint8_t *got = NULL;
    gsize got_len;
    g_assert_true(g_file_get_contents(qraw, (char **)&got, &got_len, NULL));
    g_assert_cmpmem(got, got_len, want, len);
}

/* A payload that starts on the key material: readable, never written. */
static void test_payload_on_keys(Fixture *f, gconstpointer data)
{
    guard_patch_be32(f->path, 104, 8); /* slot 0's material, at sector 8 */
    g_autoptr(GBytes) before = guard_file_bytes(f->path);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_image(f, true, &err);
    g_assert_no_error(err);
    g_assert_true(img->read_only || img->format_read_only);
    uint8_t buf[4096] = {1};
    g_assert_false(vd_image_pwrite(img, buf, sizeof buf, 0, &err));
    g_assert_cmpint(vd_error_errno(err), ==, EROFS);
    g_autoptr(GBytes) after = guard_file_bytes(f->path);
    g_assert_true(g_bytes_equal(before, after));
    /* A listing tells the same. */
    peek_expect_same(f->ctx, f->path);
}

static void expect_open_error(Fixture *f, int errnum, const char *pattern);

/* Replace old by new in the JSON of both LUKS2 header copies and make
 * their checksums right again (or, with bad_csum, wrong in copy n). */
static void luks2_edit(const char *path, const char *old, const char *new, int bad_csum)
{
    g_autofree uint8_t *first = guard_read_host(path, 0, 16);
    uint64_t hsize = vd_be64(first + 8);
    g_assert_cmpuint(hsize, >=, 16384);
    g_assert_cmpuint(hsize, <=, 4u << 20);
    g_autofree uint8_t *b = guard_read_host(path, 0, 2 * hsize);
    for (int copy = 0; copy < 2; copy++) {
        uint8_t *h = b + copy * hsize;
        char *json = (char *)h + 4096;
        size_t jmax = hsize - 4096;
        if (old != NULL) {
            g_autofree char *text = g_strndup(json, jmax);
            g_auto(GStrv) parts = g_strsplit(text, old, 2);
            g_assert_nonnull(parts[1]);
            g_autofree char *edited = g_strjoin(new, parts[0], parts[1], NULL);
            g_assert_cmpuint(strlen(edited), <, jmax);
            memset(json, 0, jmax);
            memcpy(json, edited, strlen(edited));
        }
        memset(h + 448, 0, 64);
        GChecksum *c = g_checksum_new(G_CHECKSUM_SHA256);
        g_checksum_update(c, h, hsize);
        gsize dl = 32;
        g_checksum_get_digest(c, h + 448, &dl);
        g_checksum_free(c);
        if (bad_csum & (1 << copy))
            h[448] ^= 1;
    }
    guard_patch(path, 0, b, 2 * hsize);
}

/* The secondary copy stands in for a damaged primary; both damaged: refused. */
static void test_luks2_copies(Fixture *f, gconstpointer data)
{
    luks2_edit(f->path, NULL, NULL, 1);
    g_autoptr(GError) err = NULL;
    VdImage *img = open_image(f, false, &err);
    g_assert_no_error(err);
    expect_like_qemu(img, f->raw);
    vd_image_unref(img);
    luks2_edit(f->path, NULL, NULL, 3);
    expect_open_error(f, EIO, "*neither LUKS2 header copy is valid*");
}

/* An edit of the LUKS2 JSON and what opening the image then gives: the
 * errno and message pattern, or (pattern NULL) a read-only image. */
typedef struct {
    const char *old, *new;
    int errnum;
    const char *pattern;
} JsonCase;

static void expect_json_cases(Fixture *f, const JsonCase *cases, size_t n)
{
    g_autoptr(GBytes) orig = guard_file_bytes(f->path);
    gsize len;
    const uint8_t *bytes = g_bytes_get_data(orig, &len);
    for (size_t i = 0; i < n; i++) {
        guard_patch(f->path, 0, bytes, MIN(len, 2 * vd_be64(bytes + 8)));
        g_test_message("case %zu: %s", i, cases[i].new);
        luks2_edit(f->path, cases[i].old, cases[i].new, 0);
        if (cases[i].pattern != NULL) {
            expect_open_error(f, cases[i].errnum, cases[i].pattern);
            continue;
        }
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = open_image(f, true, &err);
        g_assert_no_error(err);
        g_assert_true(img->read_only || img->format_read_only);
    }
}

static void test_luks2_hostile(Fixture *f, gconstpointer data)
{
    static const JsonCase cases[] = {
        {"\"key_size\":64,\"af\"", "\"key_size\":0,\"af\"", EIO, "*key slot 0 is malformed*"},
        {"\"offset\":\"32768\"", "\"offset\":\"99999999999\"", EIO, "*key slot 0 is malformed*"},
        {"\"stripes\":4000", "\"stripes\":40000000", EIO, "*key slot 0 is malformed*"},
        {"\"iterations\":1000,\"salt\"", "\"iterations\":4000000000,\"salt\"", EACCES,
         "*key slot 0*iterations*"},
        {"\"offset\":\"16777216\"", "\"offset\":\"99999999999\"", EIO,
         "*payload offset*beyond the end*"},
        /* A payload on the header: readable, never written. */
        {"\"offset\":\"16777216\"", "\"offset\":\"4096\"", 0, NULL},
        {"\"size\":\"dynamic\"", "\"size\":\"99999999999\"", EIO, "*segment*beyond the end*"},
        {"\"sector_size\":4096", "\"sector_size\":4000", EIO, "*sector size 4000*"},
        {"\"type\":\"pbkdf2\",\"hash\"", "\"type\":\"scrypt\",\"hash\"", EACCES,
         "*key slot 0 uses scrypt, which vdiskfs cannot derive*"},
        {"\"type\":\"pbkdf2\",\"hash\"", "\"type\":\"argon2id\",\"hash\"", EIO,
         "*key slot 0 has a malformed argon2id KDF*"},
        {"\"segments\":{\"0\"", "\"segments\":{\"1\":{},\"0\"", ENOTSUP, "*2 data segments*"},
        {"\"config\":{", "\"config\":{\"requirements\":{\"mandatory\":[\"online-reencrypt\"]},",
         ENOTSUP, "*requires 'online-reencrypt'*"},
        {"{\"keyslots\"", "[{\"keyslots\"", EIO, "*not valid JSON*"},
        {"\"keyslots\":{", "\"keyslots\":7,\"x\":{", EIO, "*lacks keyslots*"},
        {"\"salt\":\"", "\"salt\":\"!!", EIO, "*malformed*"},
    };
    expect_json_cases(f, cases, G_N_ELEMENTS(cases));
}

/* Argon2 slots whose cost is beyond the caps: refused before any work. */
static void test_argon2_hostile(Fixture *f, gconstpointer data)
{
    static const JsonCase cases[] = {
        {"\"memory\":32,", "\"memory\":4000000000,", EACCES, "*key slot 0 asks for Argon2*"},
        {"\"time\":4,", "\"time\":4000000000,", EACCES, "*key slot 0 asks for Argon2*"},
        {"\"cpus\":1", "\"cpus\":1000", EIO, "*malformed argon2id KDF*"},
        {"\"time\":4,", "\"time\":0,", EIO, "*malformed argon2id KDF*"},
    };
    expect_json_cases(f, cases, G_N_ELEMENTS(cases));
}

/* Random damage to the JSON (checksums made right, so that it is parsed):
 * an error or an image, never a crash. */
static void test_luks2_fuzz(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) orig = guard_file_bytes(f->path);
    gsize len;
    const uint8_t *bytes = g_bytes_get_data(orig, &len);
    uint64_t hsize = vd_be64(bytes + 8);
    size_t jlen = strnlen((const char *)bytes + 4096, hsize - 4096);
    g_autofree uint8_t *b = g_memdup2(bytes, 2 * hsize);
    GRand *r = g_rand_new_with_seed(11);
    static const char junk[] = "{}[]\",:0123456789-ae\\";
    for (int round = 0; round < 150; round++) {
        memcpy(b, bytes, 2 * hsize);
        for (int k = g_rand_int_range(r, 1, 4); k > 0; k--) {
            size_t at = 4096 + (size_t)g_rand_int_range(r, 0, (gint32)jlen);
            uint8_t v = (uint8_t)junk[g_rand_int_range(r, 0, sizeof junk - 1)];
            b[at] = b[hsize + at] = v;
        }
        guard_patch(f->path, 0, b, 2 * hsize);
        luks2_edit(f->path, NULL, NULL, 0);
        open_and_read(f);
    }
    g_rand_free(r);
}

/* Open must fail with errno and a message matching pattern. */
static void expect_open_error(Fixture *f, int errnum, const char *pattern)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_image(f, false, &err);
    g_assert_null(img);
    g_assert_nonnull(err);
    if (!g_pattern_match_simple(pattern, err->message))
        g_error("error '%s' does not match '%s'", err->message, pattern);
    g_assert_cmpint(vd_error_errno(err), ==, errnum);
}

#define SLOT0 208

static void test_hostile(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) orig = guard_file_bytes(f->path);
    gsize len;
    const uint8_t *bytes = g_bytes_get_data(orig, &len);
    uint64_t file_size = len;

    /* Key size 0. */
    guard_patch_be32(f->path, 108, 0);
    expect_open_error(f, EIO, "*key size 0*");
    guard_patch(f->path, 0, bytes, 592);
    /* Key material of slot 0 past the end of the file. */
    guard_patch_be32(f->path, SLOT0 + 40, (uint32_t)(file_size / 512));
    expect_open_error(f, EIO, "*key slot 0 is malformed*");
    guard_patch(f->path, 0, bytes, 592);
    /* Stripes beyond any sane count. */
    guard_patch_be32(f->path, SLOT0 + 44, 0x7fffffff);
    expect_open_error(f, EIO, "*key slot 0 is malformed*");
    guard_patch(f->path, 0, bytes, 592);
    /* Iterations over the cap: refused before any work, like a missing key. */
    guard_patch_be32(f->path, SLOT0 + 4, 0xffffffffu);
    expect_open_error(f, EACCES, "*key slot 0*iterations*");
    guard_patch(f->path, 0, bytes, 592);
    guard_patch_be32(f->path, 164, 0xffffffffu);
    expect_open_error(f, EACCES, "*digest*iterations*");
    guard_patch(f->path, 0, bytes, 592);
    /* Payload offset past the end. */
    guard_patch_be32(f->path, 104, (uint32_t)(file_size / 512 + 1));
    expect_open_error(f, EIO, "*payload offset*beyond the end*");
    guard_patch(f->path, 0, bytes, 592);
    /* Unknown cipher, hash. */
    guard_patch(f->path, 8, "serpent\0", 8);
    expect_open_error(f, ENOTSUP, "*cipher serpent*not supported*");
    guard_patch(f->path, 0, bytes, 592);
    guard_patch(f->path, 72, "nohash\0", 7);
    expect_open_error(f, ENOTSUP, "*hash 'nohash'*");
    guard_patch(f->path, 0, bytes, 592);
    /* A version this driver does not know. */
    guard_patch(f->path, 6, "\0\x07", 2);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_image(f, false, &err);
    g_assert_null(img);
    guard_patch(f->path, 0, bytes, 592);
    /* And the original still opens. */
    g_clear_error(&err);
    img = open_image(f, false, &err);
    g_assert_no_error(err);
}

/* Random damage to the header: an error or an image, never a crash. */
static void test_fuzz(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) orig = guard_file_bytes(f->path);
    const uint8_t *bytes = g_bytes_get_data(orig, NULL);
    GRand *r = g_rand_new_with_seed(7);
    for (int round = 0; round < 100; round++) {
        uint8_t h[592];
        memcpy(h, bytes, sizeof h);
        for (int k = 0; k < 4; k++) {
            /* Fields, not strings and salts: the interesting damage. */
            static const unsigned fields[] = {104, 108, 164, 208, 212, 248,
                                              252, 256, 260, 296, 300};
            unsigned at = fields[g_rand_int_range(r, 0, G_N_ELEMENTS(fields))];
            vd_put_be32(h + at,
                        g_rand_boolean(r) ? g_rand_int(r) : (uint32_t)g_rand_int_range(r, 0, 9000));
        }
        guard_patch(f->path, 0, h, sizeof h);
        open_and_read(f);
    }
    g_rand_free(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL);
    g_autofree char *qemu_img = g_find_program_in_path("qemu-img");
    g_autofree char *qemu_io = g_find_program_in_path("qemu-io");
    if (qemu_img == NULL || qemu_io == NULL) {
        g_print("1..0 # SKIP qemu-img or qemu-io missing\n");
        return 77;
    }
    template_dir = tf_tmpdir("vdluks-template-XXXXXX");
    make_template("xts.luks", "");
    make_template("essiv.luks", ",cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha256");
    g_autofree char *cryptsetup = g_find_program_in_path("cryptsetup");
    if (cryptsetup == NULL)
        g_error("cryptsetup is missing (apt-get install cryptsetup-bin)");
    g_autofree char *key = g_build_filename(template_dir, "key", NULL);
    g_assert_true(g_file_set_contents(key, "PASS", -1, NULL));
    make_template2("luks2.luks", "--pbkdf pbkdf2 --pbkdf-force-iterations 1000 -c aes-xts-plain64");
    make_template2("luks2-cbc.luks",
                   "--pbkdf pbkdf2 --pbkdf-force-iterations 1000 -c aes-cbc-essiv:sha256 -s 256 "
                   "--sector-size 512 --hash sha512");
    /* Argon2 at its cheapest, which cryptsetup allows when forced. */
    make_template2("luks2-argon2id.luks", "--pbkdf argon2id --pbkdf-force-iterations 4 "
                                          "--pbkdf-memory 32 --pbkdf-parallel 1");
    make_template2("luks2-argon2i.luks", "--pbkdf argon2i --pbkdf-force-iterations 4 "
                                         "--pbkdf-memory 64 --pbkdf-parallel 2");
#define ADD(name, fn, which)                                                                       \
    g_test_add("/luks/" name, Fixture, which, fixture_setup, fn, fixture_teardown)
    ADD("read-xts", test_read, "xts.luks");
    ADD("read-essiv", test_read, "essiv.luks");
    ADD("wrong-passphrase", test_wrong_passphrase, NULL);
    ADD("missing-key", test_missing_key, NULL);
    ADD("peek", test_peek, NULL);
    ADD("write-xts", test_write, "xts.luks");
    ADD("write-essiv", test_write, "essiv.luks");
    ADD("payload-on-keys", test_payload_on_keys, NULL);
    ADD("luks2-read", test_read, "luks2.luks");
    ADD("luks2-read-cbc", test_read, "luks2-cbc.luks");
    ADD("luks2-write", test_write, "luks2.luks");
    ADD("luks2-write-cbc", test_write, "luks2-cbc.luks");
    ADD("luks2-copies", test_luks2_copies, "luks2.luks");
    ADD("luks2-hostile", test_luks2_hostile, "luks2.luks");
    ADD("luks2-fuzz", test_luks2_fuzz, "luks2.luks");
    ADD("luks2-argon2id", test_read, "luks2-argon2id.luks");
    ADD("luks2-argon2i", test_read, "luks2-argon2i.luks");
    ADD("luks2-argon2-write", test_write, "luks2-argon2id.luks");
    ADD("luks2-argon2-hostile", test_argon2_hostile, "luks2-argon2id.luks");
    ADD("hostile", test_hostile, NULL);
    ADD("fuzz", test_fuzz, NULL);
    int rc = g_test_run();
    tf_rm_rf(template_dir);
    return rc;
}
