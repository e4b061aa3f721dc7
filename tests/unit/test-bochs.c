/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The bochs driver through the block layer: growing images (header
 * versions 1 and 2) written from the format facts, sector bitmaps, an
 * undoable redolog over its base, and hostile headers.
 */
#include "config.h"

#include <glib/gstdio.h>
#include <string.h>

#include "src/vd-chain.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "tests/unit/test-peek.h"
#include "tests/unit/test-fixtures.h"

#define EXTENT  (8 * 512u)
#define EXTENTS 16u
#define DISK    (EXTENTS * EXTENT - 1024) /* the last extent is partly outside */

typedef struct {
    char *dir;
    VdContext *ctx;
} Fixture;

static uint8_t pat(uint64_t off)
{
    return (uint8_t)(off * 13 + (off >> 9) + 1);
}

/* Sector s of the disk is stored (in extents that are allocated). */
static bool stored(uint64_t s)
{
    uint64_t e = s / 8, k = s % 8;
    if (e == 0)
        return true; /* full */
    if (e == 3)
        return k % 2 == 1; /* every other sector */
    if (e == 7)
        return k >= 4; /* second half */
    if (e == EXTENTS - 1)
        return k < 6; /* the partial last extent */
    return false;
}

/*
 * A growing (or other subtype) image: catalog of 32 entries, extents
 * stored in reverse order of their index, bitmap of 1 byte (padded to a
 * sector).
 */
static GByteArray *build(const char *subtype, uint32_t version)
{
    const uint32_t catalog = 32, bitmap = 1;
    GByteArray *f = g_byte_array_new();
    g_byte_array_set_size(f, 512 + catalog * 4);
    memset(f->data, 0, f->len);
    uint8_t *h = f->data;
    memcpy(h, "Bochs Virtual HD Image", 22);
    memcpy(h + 32, "Redolog", 7);
    memcpy(h + 48, subtype, strlen(subtype));
    vd_put_le32(h + 64, version);
    vd_put_le32(h + 68, 512);
    vd_put_le32(h + 72, catalog);
    vd_put_le32(h + 76, bitmap);
    vd_put_le32(h + 80, EXTENT);
    if (version == 0x00020000)
        vd_put_le64(h + 88, DISK);
    else
        vd_put_le64(h + 84, DISK);
    for (uint32_t i = 0; i < catalog; i++)
        vd_put_le32(f->data + 512 + 4 * i, 0xffffffff);
    static const uint32_t used[] = {EXTENTS - 1, 7, 3, 0};
    for (uint32_t n = 0; n < G_N_ELEMENTS(used); n++) {
        uint32_t e = used[n];
        vd_put_le32(f->data + 512 + 4 * e, n);
        uint8_t blk[512 + EXTENT];
        memset(blk, 0, sizeof blk);
        for (uint32_t k = 0; k < 8; k++) {
            uint64_t s = (uint64_t)e * 8 + k;
            if (stored(s))
                blk[0] |= (uint8_t)(1u << k);
            for (uint32_t b = 0; b < 512; b++)
                blk[512 + k * 512 + b] = stored(s) ? pat(s * 512 + b) : 0xee;
        }
        /* The last extent is cut short at the end of the file. */
        g_byte_array_append(f, blk, n == G_N_ELEMENTS(used) - 1 ? sizeof blk : sizeof blk);
    }
    return f;
}

static void fixture_setup(Fixture *f, gconstpointer data)
{
    f->dir = tf_tmpdir("vdtest-bochs-XXXXXX");
    g_autoptr(GError) err = NULL;
    f->ctx = vd_context_new(f->dir, &err);
    g_assert_no_error(err);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    tf_rm_rf(f->dir);
    g_free(f->dir);
    vd_context_unref(f->ctx);
}

static VdImage *open_file(Fixture *f, const char *name, const GByteArray *b, GError **error)
{
    g_autofree char *p = g_build_filename(f->dir, name, NULL);
    g_assert_true(g_file_set_contents(p, (const char *)b->data, b->len, NULL));
    VdOpenOptions o = {.read_only = true};
    return vd_image_open(f->ctx, p, &o, error);
}

/* Content and map of a growing image; base supplies the rest when given. */
static void check(VdImage *img, const uint8_t *base)
{
    g_autoptr(GError) err = NULL;
    g_assert_cmpuint(vd_image_size(img), ==, DISK);
    g_autofree uint8_t *buf = g_malloc(DISK);
    g_assert_true(vd_image_pread(img, buf, DISK, 0, &err));
    g_assert_no_error(err);
    for (uint64_t i = 0; i < DISK; i++) {
        uint8_t want = stored(i / 512) ? pat(i) : base ? base[i] : 0;
        if (buf[i] != want)
            g_error("byte %" G_GUINT64_FORMAT ": got %02x, want %02x", i, buf[i], want);
    }
    for (uint64_t off = 0; off < DISK;) {
        VdChainExtent e;
        g_assert_true(vd_chain_status(img, off, DISK - off, VD_STATUS_WANT_ZERO, &e, &err));
        for (uint64_t s = off / 512; s < (off + e.length) / 512; s++) {
            bool data = vd_chain_extent_is_data(&e);
            if (base == NULL && data != stored(s))
                g_error("sector %" G_GUINT64_FORMAT ": data=%d", s, data);
            if (base != NULL)
                g_assert_cmpuint(e.depth, ==, stored(s) ? 0 : 1);
        }
        off += e.length;
    }
}

static void test_growing(Fixture *f, gconstpointer data)
{
    for (int v = 1; v <= 2; v++) {
        g_autoptr(GByteArray) b = build("Growing", (uint32_t)v << 16);
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = open_file(f, "g.img", b, &err);
        g_assert_no_error(err);
        g_assert_cmpstr(img->driver->name, ==, "bochs");
        check(img, NULL);
        g_autoptr(VdInfo) info = vd_info_describe(img);
        g_assert_cmpstr(vd_info_get(info, "bochs_type")->str, ==, "growing");
        g_assert_cmpuint(vd_info_get(info, "allocated_extents")->u64, ==, 4);
        g_assert_cmpuint(vd_info_get(info, "extent_size")->u64, ==, EXTENT);
    }
}

static void test_undoable(Fixture *f, gconstpointer data)
{
    g_autofree uint8_t *base = g_malloc(DISK);
    for (uint64_t i = 0; i < DISK; i++)
        base[i] = (uint8_t)(0x40 + i % 61);
    g_autofree char *bp = g_build_filename(f->dir, "disk.img", NULL);
    g_assert_true(g_file_set_contents(bp, (const char *)base, DISK, NULL));
    g_autoptr(GByteArray) b = build("Undoable", 0x00020000);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_file(f, "disk.img.redolog", b, &err);
    g_assert_no_error(err);
    g_assert_nonnull(img->backing);
    check(img, base);
    /* Without the conventional name the base cannot be found. */
    g_autoptr(VdImage) none = open_file(f, "other.log", b, &err);
    g_assert_null(none);
    g_assert_error(err, VD_ERROR, ENOENT);
}

static void test_hostile(Fixture *f, gconstpointer data)
{
    struct {
        const char *what;
        uint32_t at, value;
        int code;
    } cases[] = {
        {"catalog huge", 72, 0x7fffffff, EIO},
        {"catalog zero", 72, 0, EIO},
        {"catalog too small for the disk", 72, 4, EIO},
        {"catalog past the end of the file", 72, 1u << 20, EIO},
        {"extent size zero", 80, 0, EIO},
        {"extent size not sectors", 80, 1000, EIO},
        {"extent size huge", 80, 1u << 31, EIO},
        {"bitmap too small", 76, 0, EIO},
        {"header size tiny", 68, 16, EIO},
        {"unknown version", 64, 0x00030000, ENOTSUP},
        {"disk size huge", 92, 0x40000000, EIO},
        {"extent stored past the end", 512 + 4 * 3, 1000000, 0},
        {"extent index wraps", 512 + 4 * 7, 0xfffffffe, 0},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GByteArray) b = build("Growing", 0x00020000);
        vd_put_le32(b->data + cases[i].at, cases[i].value);
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = open_file(f, "h.img", b, &err);
        if (cases[i].code != 0) {
            if (img != NULL)
                g_error("%s: opened", cases[i].what);
            g_assert_error(err, VD_ERROR, cases[i].code);
        } else {
            g_assert_no_error(err);
            g_autofree uint8_t *buf = g_malloc(DISK);
            g_assert_false(vd_image_pread(img, buf, DISK, 0, &err));
            g_assert_error(err, VD_ERROR, EIO);
        }
        g_test_message("%s: %s", cases[i].what, err->message);
    }
    /* Subtype and type. */
    g_autoptr(GByteArray) b = build("Sparse", 0x00020000);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_file(f, "s.img", b, &err);
    g_assert_null(img);
    g_assert_error(err, VD_ERROR, ENOTSUP);
    g_assert_nonnull(strstr(err->message, "Sparse"));
    /* A truncated file: the header alone. */
    g_byte_array_set_size(b, 512);
    memcpy(b->data + 48, "Growing\0", 8);
    g_clear_error(&err);
    g_autoptr(VdImage) t = open_file(f, "t.img", b, &err);
    g_assert_null(t);
    g_assert_error(err, VD_ERROR, EIO);
}

static void test_peek(Fixture *f, gconstpointer data)
{
    for (int v = 1; v <= 2; v++) {
        g_autoptr(GByteArray) b = build("Growing", (uint32_t)v << 16);
        g_autofree char *p = g_build_filename(f->dir, "g.img", NULL);
        g_assert_true(g_file_set_contents(p, (const char *)b->data, b->len, NULL));
        peek_assert_like_open(f->ctx, p);
    }
    /* A redolog peeks without its base. */
    g_autoptr(GByteArray) b = build("Undoable", 0x00020000);
    g_autofree char *rp = g_build_filename(f->dir, "gone.img.redolog", NULL);
    g_assert_true(g_file_set_contents(rp, (const char *)b->data, b->len, NULL));
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) r = vd_image_peek(f->ctx, rp, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(r), ==, DISK);
    /* A header claiming a 256 MiB catalog (2^26 extents of 64 KiB). */
    uint32_t n = 1u << 26;
    memset(b->data + 48, 0, 16);
    memcpy(b->data + 48, "Growing", 7);
    vd_put_le32(b->data + 72, n);
    vd_put_le32(b->data + 76, 16);
    vd_put_le32(b->data + 80, 64 * 1024);
    vd_put_le64(b->data + 88, (uint64_t)n * 64 * 1024);
    g_autofree char *hp = g_build_filename(f->dir, "huge.img", NULL);
    peek_write_sparse(hp, b->data, 512, 512 + (uint64_t)n * 4);
    peek_assert_bounded(f->ctx, hp, (uint64_t)n * 64 * 1024, 64);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/bochs/growing", Fixture, NULL, fixture_setup, test_growing, fixture_teardown);
    g_test_add("/bochs/undoable", Fixture, NULL, fixture_setup, test_undoable, fixture_teardown);
    g_test_add("/bochs/hostile", Fixture, NULL, fixture_setup, test_hostile, fixture_teardown);
    g_test_add("/bochs/peek", Fixture, NULL, fixture_setup, test_peek, fixture_teardown);
    return g_test_run();
}
