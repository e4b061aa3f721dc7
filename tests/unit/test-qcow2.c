/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 driver: hand-built images, then hostile variants of them (tables
 * past the end of the file, absurd sizes, overlapping tables, unknown
 * feature bits, contradictory L2 entries, random header damage). Every
 * one must give an error, never a crash.
 */
#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/qcow2.h"
#include "src/vd-chain.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-readahead.h"
#include "src/vd-info.h"
#include "src/vd-metamap.h"
#include "tests/unit/test-fixtures.h"

#define CS      4096u /* cluster size of the hand-built image */
#define NCLUST  6u
#define VSIZE   (1u << 20)
#define L1_OFF  (3 * CS)
#define L2_OFF  (4 * CS)
#define DAT_OFF (5 * CS)

typedef struct {
    char *dir;
    char *path;
    VdContext *ctx;
    uint8_t *img; /* the image bytes, patched by each test before writing */
    size_t len;
} Fixture;

/*
 * A minimal valid version 3 image: header, refcount table, one refcount
 * block, L1 table, one L2 table, one data cluster (guest cluster 0).
 */
static void put_header(uint8_t *h, unsigned cluster_bits, uint64_t incompat)
{
    uint64_t cs = 1ull << cluster_bits;
    vd_put_be32(h, 0x514649fb);
    vd_put_be32(h + 4, 3);
    vd_put_be32(h + 20, cluster_bits);
    vd_put_be64(h + 24, VSIZE);
    vd_put_be32(h + 36, 1);
    vd_put_be64(h + 40, 3 * cs); /* L1 */
    vd_put_be64(h + 48, cs);     /* refcount table */
    vd_put_be32(h + 56, 1);
    vd_put_be64(h + 72, incompat);
    vd_put_be32(h + 96, 4);
    vd_put_be32(h + 100, 104);
    vd_put_be64(h + cs, 2 * cs); /* refcount table -> block */
    for (unsigned i = 0; i < NCLUST; i++)
        vd_put_be16(h + 2 * cs + 2 * i, 1);
    vd_put_be64(h + 3 * cs, (4 * cs) | (1ull << 63)); /* L1 -> L2 */
    vd_put_be64(h + 4 * cs, (5 * cs) | (1ull << 63)); /* L2 -> data */
}

/*
 * A minimal valid version 3 image: header, refcount table, one refcount
 * block, L1 table, one L2 table, one data cluster (guest cluster 0).
 */
static void build_image(Fixture *f)
{
    f->len = NCLUST * CS;
    f->img = g_malloc0(f->len);
    put_header(f->img, 12, 0);
    for (unsigned i = 0; i < CS; i++)
        f->img[DAT_OFF + i] = (uint8_t)(i * 13 + 5);
}

static void write_image(Fixture *f)
{
    g_assert_true(g_file_set_contents(f->path, (const char *)f->img, (gssize)f->len, NULL));
}

static void fixture_setup(Fixture *f, gconstpointer data)
{
    f->dir = tf_tmpdir("vdqcow2-XXXXXX");
    f->path = g_build_filename(f->dir, "t.qcow2", NULL);
    g_autoptr(GError) err = NULL;
    f->ctx = vd_context_new(f->dir, &err);
    g_assert_no_error(err);
    build_image(f);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    tf_rm_rf(f->dir);
    g_free(f->path);
    g_free(f->dir);
    g_free(f->img);
    vd_context_unref(f->ctx);
}

static VdImage *open_image(Fixture *f, bool rw, GError **error)
{
    write_image(f);
    VdOpenOptions o = {.read_only = !rw};
    return vd_image_open(f->ctx, f->path, &o, error);
}

/* Open must fail with code, and the message must mention what. */
static void expect_open_error(Fixture *f, int code, const char *what)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_image(f, false, &err);
    if (img != NULL)
        g_error("opened an image that should fail (%s)", what);
    g_assert_error(err, VD_ERROR, code);
    if (what != NULL && strstr(err->message, what) == NULL)
        g_error("message '%s' does not mention '%s'", err->message, what);
    g_assert_nonnull(strstr(err->message, "t.qcow2"));
}

/* Open works, reading all of the disk fails with EIO. */
static void expect_read_error(Fixture *f)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_image(f, false, &err);
    g_assert_no_error(err);
    g_autofree uint8_t *buf = g_malloc(VSIZE);
    g_assert_false(vd_image_pread(img, buf, VSIZE, 0, &err));
    g_assert_error(err, VD_ERROR, EIO);
}

static void test_valid(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    const VdDriver *drv = (write_image(f), vd_probe_path(f->ctx, f->path, &err));
    g_assert_no_error(err);
    g_assert_nonnull(drv);
    g_assert_cmpstr(drv->name, ==, "qcow2");
    g_autoptr(VdImage) img = open_image(f, false, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(img), ==, VSIZE);
    g_autofree uint8_t *buf = g_malloc(VSIZE);
    g_assert_true(vd_image_pread(img, buf, VSIZE, 0, &err));
    g_assert_cmpmem(buf, CS, f->img + DAT_OFF, CS);
    for (unsigned i = CS; i < VSIZE; i++)
        g_assert_cmpuint(buf[i], ==, 0);
    /* Block status: data at the host offset, then unallocated. */
    VdChainExtent e;
    g_assert_true(vd_chain_status(img, 0, VSIZE, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_DATA);
    g_assert_cmpuint(e.length, ==, CS);
    g_assert_cmpuint(e.host_offset, ==, DAT_OFF);
    g_assert_true(vd_chain_status(img, CS, VSIZE - CS, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_UNALLOCATED);
    g_assert_cmpuint(e.length, ==, VSIZE - CS);
    g_autoptr(VdInfo) info = vd_info_describe(img);
    g_assert_nonnull(vd_info_get(info, "cluster_size"));
    g_assert_cmpuint(vd_info_get(info, "cluster_size")->u64, ==, CS);
}

static void test_bad_magic_version(Fixture *f, gconstpointer data)
{
    vd_put_be32(f->img + 4, 4);
    write_image(f);
    g_autoptr(GError) err = NULL;
    g_assert_null(vd_probe_path(f->ctx, f->path, &err));
    VdOpenOptions o = {.read_only = true, .format = "qcow2"};
    g_autoptr(VdImage) img = vd_image_open(f->ctx, f->path, &o, &err);
    g_assert_null(img);
    g_assert_error(err, VD_ERROR, ENOTSUP);
}

static void test_cluster_bits(Fixture *f, gconstpointer data)
{
    vd_put_be32(f->img + 20, 8);
    expect_open_error(f, EIO, "cluster size");
    vd_put_be32(f->img + 20, 31);
    expect_open_error(f, EIO, "cluster size");
    vd_put_be32(f->img + 20, 0xffffffff);
    expect_open_error(f, EIO, "cluster size");
}

static void test_absurd_size(Fixture *f, gconstpointer data)
{
    vd_put_be64(f->img + 24, 1ull << 62); /* L1 of one entry cannot map it */
    expect_open_error(f, EIO, "L1");
    vd_put_be64(f->img + 24, UINT64_MAX);
    expect_open_error(f, EIO, "size");
    vd_put_be64(f->img + 24, 1ull << 50); /* would need a 512 GiB L1 table */
    vd_put_be32(f->img + 36, 0xffffffff);
    expect_open_error(f, EIO, "L1");
}

static void test_l1_past_eof(Fixture *f, gconstpointer data)
{
    vd_put_be64(f->img + 40, 1000 * CS);
    expect_open_error(f, EIO, "beyond the end");
    vd_put_be64(f->img + 40, L1_OFF + 8); /* unaligned */
    expect_open_error(f, EIO, "L1");
    vd_put_be64(f->img + 40, UINT64_MAX - 4095);
    expect_open_error(f, EIO, "L1");
}

static void test_refcount_table(Fixture *f, gconstpointer data)
{
    vd_put_be64(f->img + 48, 1000 * CS);
    expect_open_error(f, EIO, "refcount table");
    vd_put_be64(f->img + 48, CS);
    vd_put_be32(f->img + 56, 0x7fffffff);
    expect_open_error(f, EIO, "refcount table");
    vd_put_be32(f->img + 56, 0);
    expect_open_error(f, EIO, "refcount table");
}

static void test_overlaps(Fixture *f, gconstpointer data)
{
    vd_put_be64(f->img + 40, CS); /* L1 on top of the refcount table */
    expect_open_error(f, EIO, "overlap");
    vd_put_be64(f->img + 40, L1_OFF);
    vd_put_be64(f->img + 48, 0); /* refcount table in the header */
    expect_open_error(f, EIO, "refcount table");
}

static void test_incompatible_bits(Fixture *f, gconstpointer data)
{
    vd_put_be64(f->img + 72, 1ull << 40);
    expect_open_error(f, ENOTSUP, "bit 40");
    /* A feature name table names it. */
    vd_put_be64(f->img + 72, 1ull << 9);
    uint8_t *ext = f->img + 104;
    vd_put_be32(ext, 0x6803f857);
    vd_put_be32(ext + 4, 48);
    ext[8] = 0;
    ext[9] = 9;
    memcpy(ext + 10, "teleportation", 13);
    expect_open_error(f, ENOTSUP, "teleportation");
}

static void test_header_fields(Fixture *f, gconstpointer data)
{
    vd_put_be32(f->img + 100, 107); /* not a multiple of 8 */
    expect_open_error(f, EIO, "header length");
    vd_put_be32(f->img + 100, 104);
    vd_put_be32(f->img + 96, 7);
    expect_open_error(f, EIO, "refcount order");
    vd_put_be32(f->img + 96, 4);
    vd_put_be64(f->img + 72, 1ull << 4); /* extended L2 needs 16 KiB clusters */
    expect_open_error(f, EIO, "extended L2");
    vd_put_be64(f->img + 72, 1ull << 3); /* compression type bit, type 0 */
    vd_put_be32(f->img + 100, 112);
    expect_open_error(f, EIO, "compression");
    f->img[104] = 9;
    expect_open_error(f, ENOTSUP, "compression type 9");
}

static void test_extensions(Fixture *f, gconstpointer data)
{
    uint8_t *ext = f->img + 104;
    vd_put_be32(ext, 0xe2792aca);
    vd_put_be32(ext + 4, 0x7ffffff0); /* runs past the first cluster */
    expect_open_error(f, EIO, "header extension");
    /* Unknown extensions are skipped, then the end marker. */
    vd_put_be32(ext, 0x12345678);
    vd_put_be32(ext + 4, 5);
    vd_put_be32(ext + 16, 0);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_image(f, false, &err);
    g_assert_no_error(err);
    /* A data file bit without a data file name. */
    vd_put_be64(f->img + 72, 1ull << 2);
    expect_open_error(f, ENOTSUP, "data file");
    /* LUKS without its header extension. */
    vd_put_be64(f->img + 72, 0);
    vd_put_be32(f->img + 32, 2);
    expect_open_error(f, EIO, "LUKS");
    /* An encryption header extension that points past the end (no key: EACCES first). */
    vd_put_be32(ext, 0x0537be77);
    vd_put_be32(ext + 4, 16);
    vd_put_be64(ext + 8, 1ull << 40);
    vd_put_be64(ext + 16, 1 << 20);
    vd_put_be32(ext + 24, 0);
    expect_open_error(f, EACCES, NULL);
    vd_put_be32(f->img + 32, 77);
    expect_open_error(f, EIO, NULL);
}

static void test_backing_name(Fixture *f, gconstpointer data)
{
    vd_put_be64(f->img + 8, CS - 10);
    vd_put_be32(f->img + 16, 100); /* past the first cluster */
    expect_open_error(f, EIO, "backing file name");
    vd_put_be32(f->img + 16, 5000);
    expect_open_error(f, EIO, "backing file name");
    /* A backing file that does not exist. */
    vd_put_be64(f->img + 8, 512);
    vd_put_be32(f->img + 16, 7);
    memcpy(f->img + 512, "nothere", 7);
    expect_open_error(f, ENOENT, "nothere");
    /* A backing file that is the image itself: a loop. */
    memcpy(f->img + 512, "t.qcow2", 7);
    expect_open_error(f, ELOOP, NULL);
}

static void test_l2_past_eof(Fixture *f, gconstpointer data)
{
    vd_put_be64(f->img + L1_OFF, (1000ull * CS) | (1ull << 63));
    expect_read_error(f);
    vd_put_be64(f->img + L1_OFF, (L2_OFF + 512) | (1ull << 63)); /* unaligned */
    expect_read_error(f);
    vd_put_be64(f->img + L1_OFF, 0); /* in the header */
    vd_put_be64(f->img + L1_OFF, 512ull << 1);
    expect_read_error(f);
}

static void test_bad_l2_entries(Fixture *f, gconstpointer data)
{
    vd_put_be64(f->img + L2_OFF, (DAT_OFF + 512) | (1ull << 63)); /* unaligned data */
    expect_read_error(f);
    /* Compressed cluster that does not inflate. */
    vd_put_be64(f->img + L2_OFF, (1ull << 62) | DAT_OFF | (3ull << 58));
    expect_read_error(f);
    /* Compressed cluster past the end of the file and into the header. */
    vd_put_be64(f->img + L2_OFF, (1ull << 62) | 100);
    expect_read_error(f);
    vd_put_be64(f->img + L2_OFF, (1ull << 62) | ((1ull << 58) - 512));
    expect_read_error(f);
}

/* The image rebuilt with 16 KiB clusters and extended L2 entries; guest
 * cluster 0's bitmap is bitmap. */
static void build_xl2_image(Fixture *f, uint64_t bitmap)
{
    g_free(f->img);
    const uint64_t cs = 16384;
    f->len = 6 * cs;
    f->img = g_malloc0(f->len);
    put_header(f->img, 14, 1ull << 4);
    vd_put_be64(f->img + 4 * cs + 8, bitmap);
}

static void test_extended_l2(Fixture *f, gconstpointer data)
{
    const uint64_t cs = 16384;
    build_xl2_image(f, 0xf0); /* subclusters 4..7 allocated */
    memset(f->img + 5 * cs, 0xab, cs);
    g_autoptr(GError) err = NULL;
    {
        g_autoptr(VdImage) img = open_image(f, false, &err);
        g_assert_no_error(err);
        uint8_t buf[16384];
        g_assert_true(vd_image_pread(img, buf, cs, 0, &err));
        for (unsigned i = 0; i < cs; i++)
            g_assert_cmpuint(buf[i], ==, (i / 512 >= 4 && i / 512 < 8) ? 0xab : 0);
        VdChainExtent e;
        g_assert_true(vd_chain_status(img, 0, VSIZE, VD_STATUS_WANT_ZERO, &e, &err));
        g_assert_cmpint(e.state, ==, VD_EXTENT_UNALLOCATED);
        g_assert_cmpuint(e.length, ==, 4 * 512);
        g_assert_true(vd_chain_status(img, 2048, VSIZE - 2048, VD_STATUS_WANT_ZERO, &e, &err));
        g_assert_cmpint(e.state, ==, VD_EXTENT_DATA);
        g_assert_cmpuint(e.length, ==, 4 * 512);
        g_assert_cmpuint(e.host_offset, ==, 5 * cs + 2048);
    }
    /* Allocated and zero at once: corruption. */
    vd_put_be64(f->img + 4 * cs + 8, 0x00000010000000f0ull);
    {
        g_autoptr(VdImage) img = open_image(f, false, &err);
        g_assert_no_error(err);
        uint8_t buf[512];
        g_assert_false(vd_image_pread(img, buf, sizeof buf, 0, &err));
        g_assert_error(err, VD_ERROR, EIO);
        g_clear_error(&err);
    }
    /* Allocation bits without a host offset. */
    vd_put_be64(f->img + 4 * cs, 0);
    vd_put_be64(f->img + 4 * cs + 8, 1);
    {
        g_autoptr(VdImage) img = open_image(f, false, &err);
        g_assert_no_error(err);
        uint8_t buf[512];
        g_assert_false(vd_image_pread(img, buf, sizeof buf, 0, &err));
        g_assert_error(err, VD_ERROR, EIO);
    }
}

static void test_snapshot_table(Fixture *f, gconstpointer data)
{
    vd_put_be32(f->img + 60, 1000000);
    vd_put_be64(f->img + 64, 2 * CS);
    expect_open_error(f, EIO, "snapshots");
    vd_put_be32(f->img + 60, 2);
    vd_put_be64(f->img + 64, 100 * CS);
    expect_open_error(f, EIO, "snapshot table");
    /* One entry whose name runs past the end of the file. */
    f->len += CS;
    f->img = g_realloc(f->img, f->len);
    memset(f->img + NCLUST * CS, 0, CS);
    uint8_t *e = f->img + NCLUST * CS;
    vd_put_be32(f->img + 60, 1);
    vd_put_be64(f->img + 64, NCLUST * CS);
    vd_put_be64(e, L1_OFF);
    vd_put_be32(e + 8, 1);
    vd_put_be16(e + 12, 1);
    vd_put_be16(e + 14, 60000);
    expect_open_error(f, EIO, "snapshot");
    /* A valid entry, whose L1 table lies past the end: listing works, opening fails. */
    vd_put_be16(e + 14, 2);
    vd_put_be32(e + 36, 16);
    vd_put_be64(e + 48, VSIZE / 2);
    memcpy(e + 56, "1s1", 3);
    vd_put_be64(e, 4000 * CS);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_image(f, false, &err);
    g_assert_no_error(err);
    g_autoptr(GPtrArray) snaps = vd_image_snapshots(img, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(snaps->len, ==, 1);
    VdSnapshotInfo *si = snaps->pdata[0];
    g_assert_cmpstr(si->id, ==, "1");
    g_assert_cmpstr(si->name, ==, "s1");
    g_assert_cmpuint(si->virtual_size, ==, VSIZE / 2);
    g_assert_null(vd_image_open_snapshot(img, "1", &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);
    g_assert_null(vd_image_open_snapshot(img, "2", &err));
    g_assert_error(err, VD_ERROR, ENOENT);
}

/* Damaged refcounts and tables, opened read-write: writes fail or work, never crash. */
static void test_fuzz_write(Fixture *f, gconstpointer data)
{
    g_autofree uint8_t *orig = g_memdup2(f->img, f->len);
    GRand *r = g_rand_new_with_seed(4321);
    g_autofree uint8_t *buf = g_malloc(3 * CS);
    memset(buf, 0x5a, 3 * CS);
    int opened = 0;
    for (int iter = 0; iter < 300; iter++) {
        memcpy(f->img, orig, f->len);
        int n = g_rand_int_range(r, 1, 4);
        for (int k = 0; k < n; k++) {
            /* Refcount table and block, L1, L2 (and now and then the header). */
            uint32_t pos = g_rand_int_range(r, 0, 8) == 0
                               ? (uint32_t)g_rand_int_range(r, 36, 64)
                               : (uint32_t)g_rand_int_range(r, CS, L2_OFF + 64);
            f->img[pos] ^= (uint8_t)(1u << g_rand_int_range(r, 0, 8));
        }
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = open_image(f, true, &err);
        if (img == NULL)
            continue;
        opened++;
        uint64_t size = vd_image_size(img);
        for (int k = 0; k < 4 && size > 3 * CS; k++) {
            uint64_t off = (uint64_t)g_rand_double_range(r, 0, (double)(size - 3 * CS));
            if (!vd_image_pwrite(img, buf, 3 * CS - 100, off, &err))
                g_clear_error(&err);
            if (!vd_image_write_zeroes(img, off / 2, CS * 2, VD_ZERO_MAY_UNMAP, &err))
                g_clear_error(&err);
        }
        if (!vd_image_flush(img, &err))
            g_clear_error(&err);
    }
    g_assert_cmpint(opened, >, 100);
    g_rand_free(r);
}

/* Where the refcounts wrongly call the L1 table free, writing refuses. */
static void test_refcount_lies(Fixture *f, gconstpointer data)
{
    vd_put_be16(f->img + 2 * CS + 2 * 3, 0); /* the L1 table's cluster */
    vd_put_be64(f->img + L1_OFF, 0);         /* so the first write allocates */
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_image(f, true, &err);
    g_assert_no_error(err);
    uint8_t b[512] = {1};
    g_assert_false(vd_image_pwrite(img, b, sizeof b, 0, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_assert_nonnull(strstr(err->message, "L1 table"));
    g_assert_true(g_atomic_int_get(&img->corrupt));
}

static void test_corrupt_bit(Fixture *f, gconstpointer data)
{
    vd_put_be64(f->img + 72, 1ull << 1);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_image(f, true, &err);
    g_assert_no_error(err);
    g_assert_true(img->read_only);
    uint8_t buf[16] = {0};
    g_assert_false(vd_image_pwrite(img, buf, sizeof buf, 0, &err));
    g_assert_error(err, VD_ERROR, EROFS);
}

/* Random damage to the header cluster and tables: errors are fine, crashes are not. */
/* Overwrites of plain allocated clusters take the concurrent fast path;
 * everything that changes metadata must be refused by it, untouched. */
static void test_fast_write(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_image(f, true, &err);
    g_assert_no_error(err);
    int (*fast)(VdImage *, const void *, size_t, uint64_t, GError **) = img->driver->pwrite_fast;
    g_assert_nonnull(fast);
    uint8_t pat[64], got[64];
    memset(pat, 0xa5, sizeof pat);
    /* Before the first (slow) write the image is not prepared for writing. */
    g_assert_cmpint(fast(img, pat, 8, 0, &err), ==, VD_FAST_SLOW);
    g_assert_true(vd_image_pwrite(img, pat, 8, 0, &err));
    g_assert_cmpint(fast(img, pat, sizeof pat, 100, &err), ==, VD_FAST_DONE);
    g_assert_true(vd_image_pread(img, got, sizeof got, 100, &err));
    g_assert_cmpmem(got, sizeof got, pat, sizeof pat);
    /* Unallocated cluster, or a range reaching into one: the slow path's. */
    g_assert_cmpint(fast(img, pat, 8, CS * 2, &err), ==, VD_FAST_SLOW);
    g_assert_cmpint(fast(img, pat, 20, CS - 10, &err), ==, VD_FAST_SLOW);
    g_assert_true(vd_image_pread(img, got, 20, CS - 10, &err));
    g_assert_cmpint(got[10], ==, 0);
    g_assert_cmpint(got[9], ==, (uint8_t)((CS - 1) * 13 + 5));
    g_assert_no_error(err);
    g_clear_pointer(&img, vd_image_unref);

    /* A cluster shared with a snapshot (refcount 2, no COPIED flag). */
    g_free(f->img);
    build_image(f);
    vd_put_be64(f->img + L2_OFF, DAT_OFF);
    vd_put_be16(f->img + 2 * CS + 2 * (DAT_OFF / CS), 2);
    img = open_image(f, true, &err);
    g_assert_no_error(err);
    g_assert_true(vd_image_pwrite(img, pat, 8, CS * 3, &err));
    g_assert_cmpint(fast(img, pat, 8, 0, &err), ==, VD_FAST_SLOW);
    g_assert_no_error(err);
}

/* Sequential reads of compressed clusters read ahead; a write in between
 * must not let a later read see what was read ahead before it. */
static void test_readahead_invalidation(Fixture *f, gconstpointer data)
{
    g_autofree char *raw = g_build_filename(f->dir, "src.raw", NULL);
    g_autofree uint8_t *src = g_malloc(4u << 20);
    for (size_t i = 0; i < (4u << 20); i++)
        src[i] = (uint8_t)("compressible text "[i % 18] + (i >> 16));
    g_assert_true(g_file_set_contents(raw, (const char *)src, 4u << 20, NULL));
    g_autofree char *cmd =
        g_strdup_printf("qemu-img convert -c -f raw -O qcow2 %s %s", raw, f->path);
    tf_run(cmd);
    g_autoptr(GError) err = NULL;
    VdOpenOptions o = {.read_only = false};
    g_autoptr(VdImage) img = vd_image_open(f->ctx, f->path, &o, &err);
    g_assert_no_error(err);
    const size_t chunk = 256 * 1024;
    g_autofree uint8_t *buf = g_malloc(chunk);
    for (int round = 0; round < 2; round++) {
        g_assert_true(vd_image_pread(img, buf, chunk, 0, &err));
        g_assert_true(vd_image_pread(img, buf, chunk, chunk, &err));
        g_assert_cmpmem(buf, chunk, src + chunk, chunk);
        /* The next chunk has been read ahead; change it. */
        vd_readahead_wait(img);
        memset(src + 2 * chunk + 100, 0x5a, 5000);
        g_assert_true(vd_image_pwrite(img, src + 2 * chunk + 100, 5000, 2 * chunk + 100, &err));
        g_assert_true(vd_image_pread(img, buf, chunk, 2 * chunk, &err));
        g_assert_cmpmem(buf, chunk, src + 2 * chunk, chunk);
        g_assert_true(vd_image_pread(img, buf, chunk, 3 * chunk, &err));
        g_assert_cmpmem(buf, chunk, src + 3 * chunk, chunk);
    }
    g_assert_no_error(err);
}

static void test_fuzz(Fixture *f, gconstpointer data)
{
    g_autofree uint8_t *orig = g_memdup2(f->img, f->len);
    GRand *r = g_rand_new_with_seed(12345);
    g_autofree uint8_t *buf = g_malloc(VSIZE);
    for (int iter = 0; iter < 400; iter++) {
        memcpy(f->img, orig, f->len);
        int n = g_rand_int_range(r, 1, 6);
        for (int k = 0; k < n; k++) {
            /* Mostly header fields, sometimes the tables. */
            uint32_t pos = g_rand_boolean(r) ? (uint32_t)g_rand_int_range(r, 0, 112)
                                             : (uint32_t)g_rand_int_range(r, CS, L2_OFF + 64);
            f->img[pos] ^= (uint8_t)(1u << g_rand_int_range(r, 0, 8));
        }
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = open_image(f, false, &err);
        if (img == NULL) {
            g_assert_nonnull(err);
            continue;
        }
        uint64_t size = vd_image_size(img);
        uint64_t off = 0;
        /* Read the start and a few random places. */
        if (!vd_image_pread(img, buf, (size_t)MIN(size, VSIZE), 0, &err))
            g_clear_error(&err);
        for (int k = 0; k < 4 && size > 0; k++) {
            off = (uint64_t)g_rand_double_range(r, 0, (double)size);
            if (!vd_image_pread(img, buf, 4096, off, &err))
                g_clear_error(&err);
            VdChainExtent e;
            if (off < size && !vd_chain_status(img, off, size - off, VD_STATUS_WANT_ZERO, &e, &err))
                g_clear_error(&err);
        }
    }
    g_rand_free(r);
}

/* Warnings, kept for the tests that check what was logged (and out of the
 * TAP output). */
static GPtrArray *warnings;

static void test_log_handler(const char *domain, GLogLevelFlags level, const char *message,
                             gpointer user_data)
{
    if ((level & G_LOG_LEVEL_MASK) == G_LOG_LEVEL_WARNING)
        g_ptr_array_add(warnings, g_strdup(message));
    else
        g_log_default_handler(domain, level, message, user_data);
}

/* The number of warnings since the last call that contain what. */
static guint take_warnings(const char *what)
{
    guint n = 0;
    for (guint i = 0; i < warnings->len; i++)
        n += strstr(warnings->pdata[i], what) != NULL;
    g_ptr_array_set_size(warnings, 0);
    return n;
}

static void run_qemu_img(const char *args, const char *path)
{
    g_autofree char *cmd = g_strdup_printf("qemu-img %s %s", args, path);
    tf_run(cmd);
}

static uint64_t file_be64(const char *path, uint64_t off)
{
    int fd = open(path, O_RDONLY);
    uint8_t b[8] = {0};
    g_assert_cmpint(pread(fd, b, 8, (off_t)off), ==, 8);
    close(fd);
    return vd_be64(b);
}

/* A structure the map must hold exactly: 1 for the count. */
static guint expect_meta(Qcow2State *s, uint64_t off, const char *what)
{
    VdMetaRange hit;
    if (!qcow2_meta_find(s, off, 1, &hit))
        g_error("the map lacks the %s at 0x%" G_GINT64_MODIFIER "x", what, off);
    g_assert_cmpuint(hit.start, ==, off);
    g_assert_cmpstr(hit.what, ==, what);
    return 1;
}

/* Every structure of the active image is in the map, and nothing else. */
static void check_map_exact(Qcow2State *s, guint *n_l2, guint *n_blocks)
{
    guint n = expect_meta(s, 0, "header") + expect_meta(s, s->l1_offset, "L1 table") +
              expect_meta(s, s->refcount_table_offset, "refcount table");
    *n_l2 = *n_blocks = 0;
    for (uint32_t i = 0; i < s->l1_entries; i++) {
        uint64_t l2 = s->l1[i] & QCOW2_OFFSET_MASK;
        if (l2 != 0)
            *n_l2 += expect_meta(s, l2, "L2 table");
    }
    for (uint64_t r = 0; r < qcow2_refcount_table_entries(s); r++) {
        uint64_t b = qcow2_refcount_block_at(s, r);
        if (b != 0)
            *n_blocks += expect_meta(s, b, "refcount block");
    }
    g_assert_cmpuint(vd_meta_map_count(s->meta), ==, n + *n_l2 + *n_blocks);
    /* Data clusters are not metadata. */
    for (uint64_t g = 0; g < s->virtual_size; g += s->cluster_size) {
        uint64_t e, bm;
        g_assert_true(qcow2_get_entry(s, g, &e, &bm, NULL));
        if (e & QCOW2_OFFSET_MASK)
            g_assert_false(qcow2_meta_find(s, e & QCOW2_OFFSET_MASK, s->cluster_size, NULL));
    }
}

/* Aim guest cluster 0 at target (COPIED, as if the image said so) and
 * write: refused with EIO on the fast path and on the slow one, and the
 * target's bytes stay as they were. */
static void expect_write_refused(VdImage *img, uint64_t target)
{
    Qcow2State *s = qcow2_state(img);
    g_autoptr(GError) err = NULL;
    VdTable *t = vd_table_cache_get(s->l2_cache, s->l1[0] & QCOW2_OFFSET_MASK, &err);
    g_assert_no_error(err);
    uint64_t saved = qcow2_l2_word(s, t->data, 0);
    qcow2_l2_update(s, t, 0, target | QCOW2_OFLAG_COPIED, 0);
    uint8_t before[512], after[512], buf[512];
    memset(buf, 0xee, sizeof buf);
    /* (The file may end inside the target's cluster.) */
    ssize_t n = pread(s->fd, before, sizeof before, (off_t)target);
    g_assert_cmpint(n, >, 0);

    g_assert_false(vd_image_pwrite(img, buf, sizeof buf, 0, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);
    g_assert_true(g_atomic_int_get(&img->corrupt));
    g_atomic_int_set(&img->corrupt, 0);
    g_rw_lock_writer_lock(&img->write_lock);
    bool ok = qcow2_pwrite(img, buf, sizeof buf, 0, &err);
    g_rw_lock_writer_unlock(&img->write_lock);
    g_assert_false(ok);
    g_assert_error(err, VD_ERROR, EIO);
    g_assert_true(g_atomic_int_get(&img->corrupt));
    g_atomic_int_set(&img->corrupt, 0);
    if (take_warnings("refused a data write") != 2)
        g_error("writes onto 0x%" G_GINT64_MODIFIER "x were not logged twice", target);

    qcow2_l2_update(s, t, 0, saved, 0);
    vd_table_cache_put(s->l2_cache, t);
    g_assert_cmpint(pread(s->fd, after, sizeof after, (off_t)target), ==, n);
    g_assert_cmpmem(before, n, after, n);
}

/*
 * The map follows the write side: hundreds of new L2 tables and refcount
 * blocks, a refcount table that grows twice and moves, an L1 table that
 * grows and moves. After them the map holds exactly the image's metadata,
 * and a write aimed at any of it is refused.
 */
static void test_meta_upkeep(Fixture *f, gconstpointer data)
{
    g_autofree char *cmd = g_strdup_printf("%s 8M", f->path);
    run_qemu_img("create -q -f qcow2 -o cluster_size=512,refcount_bits=64", cmd);
    uint64_t l1_before = file_be64(f->path, 40), rt_before = file_be64(f->path, 48);
    g_autoptr(GError) err = NULL;
    VdOpenOptions o = {.read_only = false};
    g_autoptr(VdImage) img = vd_image_open(f->ctx, f->path, &o, &err);
    g_assert_no_error(err);
    Qcow2State *s = qcow2_state(img);
    g_assert_nonnull(s->meta);
    g_autofree uint8_t *buf = g_malloc(16384);
    for (uint64_t g = 0; g < (8u << 20); g += 32768) {
        memset(buf, (int)(g >> 15) | 1, 16384);
        g_assert_true(vd_image_pwrite(img, buf, 16384, g, &err));
        if ((g >> 15) % 64 == 63)
            g_assert_true(vd_image_flush(img, &err));
    }
    g_assert_true(vd_image_truncate(img, 64u << 20, &err));
    g_assert_true(vd_image_pwrite(img, buf, 16384, 60u << 20, &err));
    g_assert_true(vd_image_flush(img, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(s->l1_offset, !=, l1_before);
    g_assert_cmpuint(s->refcount_table_offset, !=, rt_before);
    g_assert_cmpuint(s->refcount_table_clusters, >, 2);
    guint n_l2, n_blocks;
    check_map_exact(s, &n_l2, &n_blocks);
    g_assert_cmpuint(n_l2, ==, 257);
    g_assert_cmpuint(n_blocks, >, 128);

    /* (An L2 entry cannot aim at the header: offset 0 means unallocated.) */
    expect_write_refused(img, s->l1_offset);
    expect_write_refused(img, s->refcount_table_offset);
    for (uint32_t i = 0; i < s->l1_entries; i++) {
        if (s->l1[i] & QCOW2_OFFSET_MASK)
            expect_write_refused(img, s->l1[i] & QCOW2_OFFSET_MASK);
    }
    for (uint64_t r = 0; r < qcow2_refcount_table_entries(s); r++) {
        if (qcow2_refcount_block_at(s, r) != 0)
            expect_write_refused(img, qcow2_refcount_block_at(s, r));
    }
    /* Still writable where the mapping is sound. */
    g_assert_true(vd_image_pwrite(img, buf, 512, 512, &err));
    g_clear_pointer(&img, vd_image_unref);
    /* A fresh open builds the same map; QEMU finds nothing wrong but the bit. */
    vd_put_be64(buf, file_be64(f->path, 72) & ~QCOW2_INCOMPAT_CORRUPT);
    int fd = open(f->path, O_WRONLY);
    g_assert_cmpint(pwrite(fd, buf, 8, 72), ==, 8);
    close(fd);
    g_autofree char *check = g_strdup_printf("check -q %s", f->path);
    run_qemu_img(check, "");
    img = vd_image_open(f->ctx, f->path, &o, &err);
    g_assert_no_error(err);
    guint n_l2b, n_blocksb;
    check_map_exact(qcow2_state(img), &n_l2b, &n_blocksb);
    g_assert_cmpuint(n_l2b, ==, n_l2);
    g_assert_cmpuint(n_blocksb, ==, n_blocks);
}

/* Opened read-write, the image is served read-only, says why once, and
 * still reads. */
static void expect_served_read_only(Fixture *f, const char *why)
{
    g_autoptr(GError) err = NULL;
    take_warnings("");
    g_autoptr(VdImage) img = open_image(f, true, &err);
    g_assert_no_error(err);
    if (!img->read_only)
        g_error("an image whose metadata is misplaced (%s) opened read-write", why);
    if (take_warnings(why) != 1)
        g_error("no single warning saying '%s'", why);
    uint8_t b[512] = {1}, got[CS];
    g_assert_false(vd_image_pwrite(img, b, sizeof b, 0, &err));
    g_assert_error(err, VD_ERROR, EROFS);
    g_clear_error(&err);
    /* Where the mapping was not touched, the data is there. */
    if (vd_be64(f->img + L1_OFF) == (L2_OFF | QCOW2_OFLAG_COPIED)) {
        g_assert_true(vd_image_pread(img, got, CS, 0, &err));
        g_assert_no_error(err);
        g_assert_cmpmem(got, CS, f->img + DAT_OFF, CS);
    }
}

/* Refcount structures and tables checked before the first allocation:
 * anything self-referencing, shared, misplaced or overlapping keeps the
 * image from being written (repro 05). */
static void test_misplaced_metadata(Fixture *f, gconstpointer data)
{
    g_autofree uint8_t *orig = g_memdup2(f->img, f->len);
    static const struct {
        uint64_t at, value;
        const char *why;
    } cases[] = {
        {CS, CS, "refcount block at 0x1000 overlaps refcount table at 0x1000"},
        {CS, L1_OFF, "refcount block at 0x3000 overlaps L1 table at 0x3000"},
        {CS, L2_OFF, "refcount block at 0x4000 overlaps L2 table at 0x4000"},
        {CS, DAT_OFF + CS / 2, "refcount block at 0x5800 is not cluster aligned"},
        {CS, 100 * CS, "refcount block at 0x64000 lies beyond the end of the file"},
        {CS + 8, 2 * CS, "refcount block at 0x2000 overlaps refcount block at 0x2000"},
        {L1_OFF, CS | QCOW2_OFLAG_COPIED, "L2 table at 0x1000 overlaps refcount table"},
        {L1_OFF, L1_OFF | QCOW2_OFLAG_COPIED, "L2 table at 0x3000 overlaps L1 table"},
        {L1_OFF, 100 * CS | QCOW2_OFLAG_COPIED, "L2 table at 0x64000 lies beyond the end"},
        {L1_OFF + 8, L2_OFF | QCOW2_OFLAG_COPIED, "L2 table at 0x4000 overlaps L2 table"},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        memcpy(f->img, orig, f->len);
        vd_put_be32(f->img + 36, 2); /* room for a second L1 entry */
        vd_put_be64(f->img + cases[i].at, cases[i].value);
        expect_served_read_only(f, cases[i].why);
    }
    /* An L2 table the end of the file cuts short: reads of it fail, so
     * writes must not use it (found by the write-mode fuzzer). */
    size_t len = f->len;
    memcpy(f->img, orig, f->len);
    vd_put_be64(f->img + L1_OFF, DAT_OFF | QCOW2_OFLAG_COPIED);
    f->len = DAT_OFF + 100;
    expect_served_read_only(f, "L2 table at 0x5000 lies beyond the end");
    f->len = len;
    /* An external data file that is the image itself: guest data would
     * land on the tables. Its write lock conflicts with the image's. */
    memcpy(f->img, orig, f->len);
    vd_put_be64(f->img + 72, QCOW2_INCOMPAT_DATA_FILE);
    vd_put_be32(f->img + 104, 0x44415441);
    vd_put_be32(f->img + 108, 7);
    memcpy(f->img + 112, "t.qcow2", 7);
    {
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = open_image(f, true, &err);
        g_assert_null(img);
        g_assert_error(err, VD_ERROR, EBUSY);
    }
    /* The unchanged image (with its two-entry L1) is writable. */
    memcpy(f->img, orig, f->len);
    vd_put_be32(f->img + 36, 2);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_image(f, true, &err);
    g_assert_no_error(err);
    g_assert_false(img->read_only);
    g_assert_cmpuint(take_warnings(""), ==, 0);
}

/* A refused write sets QEMU's corrupt bit in the file, durably: the next
 * open (ours or QEMU's) will not write the image. */
static void test_corrupt_bit_set(Fixture *f, gconstpointer data)
{
    vd_put_be64(f->img + L2_OFF + 8, L1_OFF | QCOW2_OFLAG_COPIED); /* guest CS -> the L1 */
    g_autoptr(GError) err = NULL;
    take_warnings("");
    {
        g_autoptr(VdImage) img = open_image(f, true, &err);
        g_assert_no_error(err);
        uint8_t b[512];
        memset(b, 0xee, sizeof b);
        g_assert_false(vd_image_pwrite(img, b, sizeof b, CS, &err));
        g_assert_error(err, VD_ERROR, EIO);
        g_assert_nonnull(strstr(err->message, "L1 table"));
        vd_image_record_error(img, err); /* as the FUSE boundary does */
        g_clear_error(&err);
        g_assert_cmpuint(take_warnings("L1 table"), ==, 1);
        /* Everything after that is refused too, even where the mapping is
         * sound, and logged no more. */
        g_assert_false(vd_image_pwrite(img, b, sizeof b, 0, &err));
        g_assert_error(err, VD_ERROR, EIO);
        vd_image_record_error(img, err);
        g_clear_error(&err);
        g_assert_false(vd_image_write_zeroes(img, 0, CS, 0, &err));
        g_assert_error(err, VD_ERROR, EIO);
        g_clear_error(&err);
        g_assert_true(vd_image_flush(img, &err));
        g_assert_cmpuint(take_warnings(""), ==, 0);
    }
    g_assert_cmpuint(file_be64(f->path, 72), ==, QCOW2_INCOMPAT_CORRUPT);
    g_assert_cmpuint(file_be64(f->path, L1_OFF), ==, L2_OFF | QCOW2_OFLAG_COPIED);
    VdOpenOptions o = {.read_only = false};
    g_autoptr(VdImage) img = vd_image_open(f->ctx, f->path, &o, &err);
    g_assert_no_error(err);
    g_assert_true(img->read_only);
    g_autoptr(VdInfo) info = vd_info_describe(img);
    g_assert_true(vd_info_get(info, "corrupt")->b);
}

/* A data reference to a table (no COPIED flag): the copy-on-write write is
 * fine, but freeing the old "data cluster" would free the L1 table for the
 * next allocation to overwrite. It is kept, and the image marked corrupt. */
static void test_free_metadata(Fixture *f, gconstpointer data)
{
    vd_put_be64(f->img + L2_OFF + 8, L1_OFF); /* guest CS -> the L1, shared */
    g_autoptr(GError) err = NULL;
    take_warnings("");
    g_autoptr(VdImage) img = open_image(f, true, &err);
    g_assert_no_error(err);
    uint8_t b[512], got[512];
    memset(b, 0x77, sizeof b);
    g_assert_true(vd_image_pwrite(img, b, sizeof b, CS, &err));
    g_assert_true(vd_image_flush(img, &err));
    g_assert_no_error(err);
    g_assert_true(g_atomic_int_get(&img->corrupt));
    g_assert_cmpuint(take_warnings("L1 table"), ==, 1);
    uint64_t v = 0;
    g_assert_true(qcow2_refcount_get(qcow2_state(img), L1_OFF / CS, &v, &err));
    g_assert_cmpuint(v, ==, 1);
    g_assert_true(vd_image_pread(img, got, sizeof got, CS, &err));
    g_assert_cmpmem(got, sizeof got, b, sizeof b);
    g_assert_cmpuint(file_be64(f->path, L1_OFF), ==, L2_OFF | QCOW2_OFLAG_COPIED);
}

/* peek: the size and members of a full open, and whether writes are
 * refused, from the header alone. */
static void expect_peek_like_open(Fixture *f, const char *path)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) p = vd_image_peek(f->ctx, path, &err);
    g_assert_no_error(err);
    VdOpenOptions o = {.read_only = true, .no_backing = true};
    g_autoptr(VdImage) img = vd_image_open(f->ctx, path, &o, &err);
    g_assert_no_error(err);
    g_assert_true(p->peeked);
    g_assert_null(p->opaque);
    g_assert_cmpuint(vd_image_size(p), ==, vd_image_size(img));
    g_assert_cmpint(p->format_read_only, ==, img->format_read_only);
    guint np = p->members ? p->members->len : 0, no = img->members ? img->members->len : 0;
    g_assert_cmpuint(np, ==, no);
    for (guint i = 0; i < np; i++)
        g_assert_cmpstr(p->members->pdata[i], ==, img->members->pdata[i]);
}

static void test_peek(Fixture *f, gconstpointer data)
{
    write_image(f);
    expect_peek_like_open(f, f->path);
    vd_put_be64(f->img + 72, QCOW2_INCOMPAT_CORRUPT);
    write_image(f);
    expect_peek_like_open(f, f->path);
    g_autofree char *ext = g_build_filename(f->dir, "ext.qcow2", NULL);
    g_autofree char *args =
        g_strdup_printf("create -q -f qcow2 -o data_file=%s/ext.data %s 5M", f->dir, ext);
    run_qemu_img(args, "");
    expect_peek_like_open(f, ext);
    g_autofree char *big = g_build_filename(f->dir, "big.qcow2", NULL);
    g_autofree char *bargs = g_strdup_printf("create -q -f qcow2 -o cluster_size=512 %s 3G", big);
    run_qemu_img(bargs, "");
    expect_peek_like_open(f, big);
    /* A header peek of an image that fails to open for its tables. */
    vd_put_be64(f->img + 72, 0);
    vd_put_be64(f->img + 40, 1000 * CS);
    write_image(f);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) p = vd_image_peek(f->ctx, f->path, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(p), ==, VSIZE);
}

static long max_rss_kib(void)
{
    struct rusage ru;
    g_assert_cmpint(getrusage(RUSAGE_SELF, &ru), ==, 0);
    return ru.ru_maxrss;
}

static long rss_kib(void)
{
    g_autofree char *statm = NULL;
    g_assert_true(g_file_get_contents("/proc/self/statm", &statm, NULL, NULL));
    long pages = 0;
    g_assert_cmpint(sscanf(statm, "%*s %ld", &pages), ==, 1);
    return pages * (sysconf(_SC_PAGESIZE) / 1024);
}

/* A header claiming a 32 MiB L1 table: peek never allocates it (peak RSS
 * does not move), a full open does. */
static void test_peek_big_l1(Fixture *f, gconstpointer data)
{
    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
        g_test_trap_assert_passed();
        return;
    }
    uint32_t entries = QCOW2_MAX_L1_BYTES / 8;
    vd_put_be32(f->img + 36, entries);
    vd_put_be64(f->img + 24, (uint64_t)entries << (12 + 9));
    write_image(f);
    g_assert_cmpint(truncate(f->path, L1_OFF + QCOW2_MAX_L1_BYTES + CS), ==, 0);
    g_autoptr(GError) err = NULL;
    long before = max_rss_kib();
    gint64 t0 = g_get_monotonic_time();
    g_autoptr(VdImage) p = vd_image_peek(f->ctx, f->path, &err);
    gint64 took = g_get_monotonic_time() - t0;
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(p), ==, (uint64_t)entries << 21);
    long after_peek = max_rss_kib();
    g_test_message("peek: %" G_GINT64_FORMAT " us, peak RSS +%ld KiB", took, after_peek - before);
    g_assert_cmpint(after_peek - before, <, 4096);
    g_assert_cmpint(took, <, 500000);
    VdOpenOptions o = {.read_only = true};
    long before_open = rss_kib();
    g_autoptr(VdImage) img = vd_image_open(f->ctx, f->path, &o, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(img), ==, vd_image_size(p));
    /* The measure works: the open's L1 table shows. */
    g_assert_cmpint(rss_kib() - before_open, >, 24 * 1024);
}

/* COPIED promises a refcount of 1 and a single reference. A snapshot
 * sharing the cluster (refcount 2): copied on write, the snapshot's bytes
 * untouched, qemu-img check clean. */
static void test_copied_shared(Fixture *f, gconstpointer data)
{
    f->len += 2 * CS;
    f->img = g_realloc(f->img, f->len);
    memset(f->img + f->len - 2 * CS, 0x99, 2 * CS);
    vd_put_be64(f->img + L2_OFF + 8, (6 * CS) | QCOW2_OFLAG_COPIED);
    vd_put_be16(f->img + 2 * CS + 2 * 6, 2);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_image(f, true, &err);
    g_assert_no_error(err);
    uint8_t a[CS], b[CS], got[CS];
    memset(a, 0xaa, sizeof a);
    memset(b, 0xbb, sizeof b);
    for (int round = 0; round < 2; round++) { /* slow path, then fast */
        g_assert_true(vd_image_pwrite(img, a, sizeof a, CS, &err));
        g_assert_true(vd_image_pwrite(img, b, sizeof b, (2 + round) * CS, &err));
        g_assert_true(vd_image_flush(img, &err));
        g_assert_true(vd_image_pread(img, got, sizeof got, CS, &err));
        g_assert_no_error(err);
        g_assert_cmpmem(got, sizeof got, a, sizeof a);
    }
    g_assert_false(g_atomic_int_get(&img->corrupt));
    int fd = open(f->path, O_RDONLY);
    g_assert_cmpint(pread(fd, got, CS, 6 * CS), ==, CS);
    close(fd);
    for (unsigned i = 0; i < CS; i++)
        g_assert_cmpuint(got[i], ==, 0x99);
}

/* A COPIED cluster whose refcount is 0 would be allocated again, and one
 * that two entries name is written through both: either way a write
 * would be lost. The write is refused and the image marked corrupt. */
static void test_copied_lies(Fixture *f, gconstpointer data)
{
    g_autofree uint8_t *orig = g_memdup2(f->img, f->len);
    for (int k = 0; k < 2; k++) {
        memcpy(f->img, orig, f->len);
        if (k == 0) {
            vd_put_be64(f->img + L2_OFF + 8, (6 * CS) | QCOW2_OFLAG_COPIED); /* past the end */
        } else {
            vd_put_be64(f->img + L2_OFF + 16, DAT_OFF | QCOW2_OFLAG_COPIED); /* guest 0's too */
        }
        g_autoptr(GError) err = NULL;
        take_warnings("");
        g_autoptr(VdImage) img = open_image(f, true, &err);
        g_assert_no_error(err);
        uint8_t a[CS];
        memset(a, 0xaa, sizeof a);
        g_assert_false(vd_image_pwrite(img, a, sizeof a, CS, &err));
        g_assert_error(err, VD_ERROR, EIO);
        vd_image_record_error(img, err);
        g_assert_true(g_atomic_int_get(&img->corrupt));
        g_assert_cmpuint(take_warnings(k == 0 ? "refcount is 0" : "another L2 entry"), ==, 1);
    }
}

/* The same across two L2 tables: the first is written through, the
 * second names the same cluster. The first write stays; the second is
 * refused. */
static void test_copied_twice(Fixture *f, gconstpointer data)
{
    g_autofree char *args =
        g_strdup_printf("create -q -f qcow2 -o cluster_size=512 %s 1M", f->path);
    run_qemu_img(args, "");
    g_autofree char *io = g_strdup_printf(
        "qemu-io -f qcow2 -c 'write -P 0x11 0 512' -c 'write -P 0x22 64k 512' %s", f->path);
    tf_run(io);
    uint64_t l1 = file_be64(f->path, 40);
    uint64_t l2a = file_be64(f->path, l1) & QCOW2_OFFSET_MASK;
    uint64_t l2b = file_be64(f->path, l1 + 16) & QCOW2_OFFSET_MASK; /* guest 64 KiB */
    g_assert_cmpuint(l2b, !=, 0);
    uint8_t e[8];
    vd_put_be64(e, file_be64(f->path, l2a));
    int fd = open(f->path, O_WRONLY);
    g_assert_cmpint(pwrite(fd, e, 8, (off_t)l2b), ==, 8);
    close(fd);
    g_autoptr(GError) err = NULL;
    VdOpenOptions o = {.read_only = false};
    g_autoptr(VdImage) img = vd_image_open(f->ctx, f->path, &o, &err);
    g_assert_no_error(err);
    uint8_t a[512], b[512], got[512];
    memset(a, 0xaa, sizeof a);
    memset(b, 0xbb, sizeof b);
    take_warnings("");
    g_assert_true(vd_image_pwrite(img, a, sizeof a, 0, &err));
    g_assert_false(vd_image_pwrite(img, b, sizeof b, 65536, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);
    g_assert_cmpuint(take_warnings("another L2 entry"), ==, 1);
    g_assert_true(vd_image_pread(img, got, sizeof got, 0, &err));
    g_assert_cmpmem(got, sizeof got, a, sizeof a);
}

/* A compressed entry whose bytes lie in guest 0's cluster: rewriting it
 * frees "its" cluster, which would punch guest 0's data away. Found by
 * the write-mode fuzzer. The cluster is kept and the image marked
 * corrupt; guest 0 keeps what was written. */
static void test_free_live_data(Fixture *f, gconstpointer data)
{
    uint64_t csize_shift = 62 - (12 - 8);
    vd_put_be64(f->img + L2_OFF + 8, QCOW2_OFLAG_COMPRESSED | DAT_OFF | (0ull << csize_shift));
    g_autoptr(GError) err = NULL;
    take_warnings("");
    g_autoptr(VdImage) img = open_image(f, true, &err);
    g_assert_no_error(err);
    uint8_t a[CS], b[CS], got[CS];
    memset(a, 0xaa, sizeof a);
    memset(b, 0xbb, sizeof b);
    g_assert_true(vd_image_pwrite(img, a, sizeof a, 0, &err));
    g_assert_true(vd_image_pwrite(img, b, sizeof b, CS, &err));
    g_assert_true(vd_image_flush(img, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(take_warnings("holds live data"), ==, 1);
    g_assert_true(g_atomic_int_get(&img->corrupt));
    g_clear_pointer(&img, vd_image_unref);
    VdOpenOptions o = {.read_only = true};
    img = vd_image_open(f->ctx, f->path, &o, &err);
    g_assert_no_error(err);
    g_assert_true(vd_image_pread(img, got, sizeof got, 0, &err));
    g_assert_cmpmem(got, sizeof got, a, sizeof a);
    g_assert_true(vd_image_pread(img, got, sizeof got, CS, &err));
    g_assert_cmpmem(got, sizeof got, b, sizeof b);
}

/* Persistent bitmaps: the directory and each bitmap's table are
 * metadata, and a write aimed at them is refused. */
static void test_bitmaps_in_map(Fixture *f, gconstpointer data)
{
    g_autofree char *args =
        g_strdup_printf("create -q -f qcow2 -o cluster_size=4096 %s 4M", f->path);
    run_qemu_img(args, "");
    g_autofree char *add = g_strdup_printf("bitmap --add %s b0", f->path);
    run_qemu_img(add, "");
    g_autofree char *io = g_strdup_printf("qemu-io -f qcow2 -c 'write -P 0x11 0 64k' %s", f->path);
    tf_run(io);
    g_autoptr(GError) err = NULL;
    VdOpenOptions o = {.read_only = false};
    g_autoptr(VdImage) img = vd_image_open(f->ctx, f->path, &o, &err);
    g_assert_no_error(err);
    Qcow2State *s = qcow2_state(img);
    g_assert_true(s->has_bitmaps_ext);
    expect_meta(s, s->bitmaps_offset, "bitmap directory");
    uint64_t table = file_be64(f->path, s->bitmaps_offset);
    g_assert_cmpuint(table, !=, 0);
    expect_meta(s, table, "bitmap table");
    take_warnings("");
    expect_write_refused(img, s->bitmaps_offset);
    expect_write_refused(img, table);
}

/* LUKS: the header area (key slots) is metadata; a write aimed at it is
 * refused, and writing elsewhere still works. */
static void test_luks_in_map(Fixture *f, gconstpointer data)
{
    g_autofree char *cmd = g_strdup_printf(
        "qemu-img create -q -f qcow2 --object secret,id=s0,data=sesame -o "
        "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10,cluster_size=4096 %s 1M",
        f->path);
    g_autofree char *io = g_strdup_printf(
        "qemu-io --object secret,id=s0,data=sesame --image-opts "
        "driver=qcow2,file.filename=%s,encrypt.key-secret=s0 -c 'write -P 0x11 0 4k'",
        f->path);
    bool made = false;
    /* qemu-img times PBKDF2 before it writes the key slot, and now and then
     * fails to ("Unable to get accurate CPU usage"): try again. */
    for (int tries = 0; tries < 8 && !made; tries++)
        made = tf_try(cmd);
    g_assert_true(made);
    tf_run(io);
    g_autofree char *keys = g_build_filename(f->dir, "keys", NULL);
    g_assert_true(g_file_set_contents(keys, "[t.qcow2]\npassphrase=sesame\n", -1, NULL));
    g_assert_cmpint(chmod(keys, 0600), ==, 0);
    g_autoptr(GError) err = NULL;
    g_assert_true(vd_context_load_keyfile(f->ctx, keys, &err));
    VdOpenOptions o = {.read_only = false};
    g_autoptr(VdImage) img = vd_image_open(f->ctx, f->path, &o, &err);
    g_assert_no_error(err);
    Qcow2State *s = qcow2_state(img);
    g_assert_cmpuint(s->crypto_length, >, 0);
    expect_meta(s, s->crypto_offset, "LUKS header");
    take_warnings("");
    expect_write_refused(img, s->crypto_offset);
    uint8_t b[4096], got[4096];
    memset(b, 0x42, sizeof b);
    g_assert_true(vd_image_pwrite(img, b, sizeof b, 8192, &err));
    g_assert_true(vd_image_pread(img, got, sizeof got, 8192, &err));
    g_assert_no_error(err);
    g_assert_cmpmem(got, sizeof got, b, sizeof b);
}

/* An extended L2 entry the read path rejects (subclusters allocated and
 * zero at once) is not written through: a zeroing of part of it would be
 * acknowledged and then unreadable (found by the write-mode fuzzer). */
static void test_write_invalid_entry(Fixture *f, gconstpointer data)
{
    const uint64_t cs = 16384;
    build_xl2_image(f, 0x000000f0000000f0ull); /* 4..7 allocated and zero */
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_image(f, true, &err);
    g_assert_no_error(err);
    uint8_t b[512] = {1};
    g_assert_false(vd_image_write_zeroes(img, 0, 1024, VD_ZERO_MAY_UNMAP, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);
    g_assert_false(vd_image_pwrite(img, b, sizeof b, 4096, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);
    /* The next cluster is sound and written. */
    g_assert_true(vd_image_pwrite(img, b, sizeof b, cs, &err));
    g_assert_no_error(err);
    g_clear_pointer(&img, vd_image_unref);
    /* An unaligned offset, nothing allocated yet: reads fail, so must writes. */
    build_xl2_image(f, 0);
    vd_put_be64(f->img + 4 * cs, (5 * cs + 512) | QCOW2_OFLAG_COPIED);
    img = open_image(f, true, &err);
    g_assert_no_error(err);
    g_assert_false(vd_image_write_zeroes(img, 0, 1024, VD_ZERO_MAY_UNMAP, &err));
    g_assert_error(err, VD_ERROR, EIO);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL);
    warnings = g_ptr_array_new_with_free_func(g_free);
    g_log_set_default_handler(test_log_handler, NULL);
#define ADD(name, fn) g_test_add("/qcow2/" name, Fixture, NULL, fixture_setup, fn, fixture_teardown)
    ADD("fast-write", test_fast_write);
    ADD("readahead-invalidation", test_readahead_invalidation);
    ADD("valid", test_valid);
    ADD("bad-version", test_bad_magic_version);
    ADD("cluster-bits", test_cluster_bits);
    ADD("absurd-size", test_absurd_size);
    ADD("l1-past-eof", test_l1_past_eof);
    ADD("refcount-table", test_refcount_table);
    ADD("overlapping-tables", test_overlaps);
    ADD("incompatible-bits", test_incompatible_bits);
    ADD("header-fields", test_header_fields);
    ADD("extensions", test_extensions);
    ADD("backing-name", test_backing_name);
    ADD("l2-past-eof", test_l2_past_eof);
    ADD("bad-l2-entries", test_bad_l2_entries);
    ADD("extended-l2", test_extended_l2);
    ADD("snapshot-table", test_snapshot_table);
    ADD("corrupt-bit", test_corrupt_bit);
    ADD("fuzz", test_fuzz);
    ADD("fuzz-write", test_fuzz_write);
    ADD("refcount-lies", test_refcount_lies);
    ADD("meta-upkeep", test_meta_upkeep);
    ADD("bitmaps-in-map", test_bitmaps_in_map);
    ADD("luks-in-map", test_luks_in_map);
    ADD("misplaced-metadata", test_misplaced_metadata);
    ADD("corrupt-bit-set", test_corrupt_bit_set);
    ADD("free-metadata", test_free_metadata);
    ADD("copied-shared", test_copied_shared);
    ADD("copied-lies", test_copied_lies);
    ADD("copied-twice", test_copied_twice);
    ADD("free-live-data", test_free_live_data);
    ADD("write-invalid-entry", test_write_invalid_entry);
    ADD("peek", test_peek);
    ADD("peek-big-l1", test_peek_big_l1);
#undef ADD
    return g_test_run();
}
