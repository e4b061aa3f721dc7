/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The QED driver through the block layer, on images made by the test
 * generator from the specification: data, zero and unallocated clusters,
 * backing files with and without format probing, the need-check flag
 * (read-only: lenient; read-write: repaired), writes and the flag's life
 * cycle, zeroing and discard, growing, readers racing a writer through
 * a tiny table cache, and hostile headers, tables and clusters.
 */
#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/vd-chain.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "tests/unit/test-guard.h"
#include "tests/unit/test-peek.h"
#include "tests/unit/test-qed-gen.h"
#include "tests/unit/test-fixtures.h"

#define CS         4096u
#define DISK       (6u * 1024 * 1024 + 3 * CS)
#define CLUSTERS   (DISK / CS)
#define NEED_CHECK 2           /* QED feature bit */
#define SPAN       (512u * CS) /* one L2 table (table_size 1) */

static const struct {
    uint64_t ci;
    char kind; /* 'd' data, 'z' zero cluster */
} layout[] = {
    {0, 'd'}, {1, 'd'}, {2, 'z'}, {5, 'd'}, {600, 'd'}, {601, 'z'}, {602, 'd'}, {CLUSTERS - 1, 'd'},
};

/* The sample image; expect gets the disk it shows over base (or zeros). */
static TGen *sample(const char *backing, uint64_t features, uint8_t *expect, const uint8_t *base)
{
    TGen *g = tgen_qed(DISK, CS, 1, backing, features);
    if (base != NULL)
        memcpy(expect, base, DISK);
    else
        memset(expect, 0, DISK);
    uint8_t c[CS];
    for (size_t i = 0; i < G_N_ELEMENTS(layout); i++) {
        uint64_t off = layout[i].ci * CS;
        if (layout[i].kind == 'z') {
            tgen_zero(g, layout[i].ci);
            memset(expect + off, 0, CS);
        } else {
            tgen_fill(c, CS, off, (uint8_t)(0x40 + i));
            tgen_data(g, layout[i].ci, c);
            memcpy(expect + off, c, CS);
        }
    }
    return g;
}

static uint64_t file_features(const char *path)
{
    uint8_t h[64];
    int fd = open(path, O_RDONLY);
    g_assert_cmpint(pread(fd, h, sizeof h, 0), ==, sizeof h);
    close(fd);
    return vd_le64(h + 16);
}

static uint64_t file_u64(const char *path, uint64_t off)
{
    uint8_t b[8];
    int fd = open(path, O_RDONLY);
    g_assert_cmpint(pread(fd, b, 8, (off_t)off), ==, 8);
    close(fd);
    return vd_le64(b);
}

static void test_read(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *expect = g_malloc(DISK);
    g_autoptr(TGen) g = sample(NULL, 0, expect, NULL);
    g_autofree char *p = qfix_write(f, "s.qed", g);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = qfix_open(f, p, NULL, false, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(img->driver->name, ==, "qed");
    qfix_assert_disk(img, expect, DISK);

    VdChainExtent e;
    g_assert_true(vd_chain_status(img, 10, DISK - 10, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_DATA);
    g_assert_cmpuint(e.length, ==, 2 * CS - 10);
    g_assert_cmpuint(e.host_offset, ==, tgen_get64(g, tgen_entry_offset(g, 0)) + 10);
    g_assert_true(vd_chain_status(img, 2 * CS, DISK - 2 * CS, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_ZERO);
    g_assert_cmpuint(e.length, ==, CS);
    g_assert_true(vd_chain_status(img, 3 * CS, DISK - 3 * CS, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_UNALLOCATED);
    g_assert_cmpuint(e.length, ==, 2 * CS);
    uint64_t pos;
    g_assert_true(vd_chain_seek(img, 6 * CS, SEEK_DATA, &pos, &err));
    g_assert_cmpuint(pos, ==, 600 * CS);
    g_assert_true(vd_chain_seek(img, 600 * CS, SEEK_HOLE, &pos, &err));
    g_assert_cmpuint(pos, ==, 601 * CS);

    g_autoptr(VdInfo) info = vd_info_describe(img);
    g_assert_cmpuint(vd_info_get(info, "cluster_size")->u64, ==, CS);
    g_assert_cmpuint(vd_info_get(info, "table_size")->u64, ==, 1);
    g_assert_cmpstr(vd_info_get(info, "features")->str, ==, "none");
    g_assert_cmpuint(vd_info_get(info, "l2_tables")->u64, ==, 3);
}

/* The backing file is a qcow image: probed, it is that disk; with
 * BACKING_FORMAT_NO_PROBE, the file's raw bytes. */
static void test_backing(QFixture *f, gconstpointer data)
{
    g_autoptr(TGen) bq = tgen_qcow1(DISK, 12, 9, NULL, NULL);
    g_autofree uint8_t *base_disk = g_malloc0(DISK);
    uint8_t c[CS];
    for (uint64_t ci = 0; ci < CLUSTERS; ci += 3) {
        tgen_fill(c, CS, ci * CS, 0x77);
        tgen_data(bq, ci, c);
        memcpy(base_disk + ci * CS, c, CS);
    }
    g_autofree char *bp = qfix_write(f, "base.img", bq);
    g_autofree uint8_t *base_raw = g_malloc0(DISK);
    memcpy(base_raw, bq->b->data, MIN(bq->b->len, DISK));

    for (int no_probe = 0; no_probe <= 1; no_probe++) {
        g_autofree uint8_t *expect = g_malloc(DISK);
        g_autoptr(TGen) g =
            sample("base.img", no_probe ? 4 : 0, expect, no_probe ? base_raw : base_disk);
        g_autofree char *p = qfix_write(f, "child.qed", g);
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = qfix_open(f, p, NULL, false, &err);
        g_assert_no_error(err);
        g_assert_cmpstr(img->backing->driver->name, ==, no_probe ? "raw" : "qcow");
        qfix_assert_disk(img, expect, DISK);
        /* A zero cluster hides the backing file. */
        VdChainExtent e;
        g_assert_true(vd_chain_status(img, 2 * CS, CS, VD_STATUS_WANT_ZERO, &e, &err));
        g_assert_cmpint(e.state, ==, VD_EXTENT_ZERO);
        g_assert_cmpuint(e.depth, ==, 0);
        g_autoptr(VdInfo) info = vd_info_describe(img);
        g_assert_cmpstr(vd_info_get(info, "backing_format")->str, ==, no_probe ? "raw" : "probed");
    }
}

/* A crashed image: NEED_CHECK, a data cluster and a table past the end
 * of the file and a misaligned entry; expect: as the check leaves it. */
static TGen *crashed(uint8_t *expect)
{
    TGen *g = sample(NULL, 2, expect, NULL);
    tgen_put64(g, tgen_entry_offset(g, 5), g->b->len + 10 * CS);
    memset(expect + 5 * CS, 0, CS);
    tgen_put64(g, tgen_entry_offset(g, 602), tgen_get64(g, tgen_entry_offset(g, 602)) + 512);
    memset(expect + 602 * CS, 0, CS);
    tgen_put64(g, g->l1_offset + 8 * 2, g->b->len); /* a table right at the end */
    return g;
}

static void test_need_check_ro(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *expect = g_malloc(DISK);
    g_autoptr(TGen) g = crashed(expect);
    g_autofree char *p = qfix_write(f, "crashed.qed", g);
    g_autoptr(GError) err = NULL;
    {
        g_autoptr(VdImage) img = qfix_open(f, p, NULL, false, &err);
        g_assert_no_error(err);
        qfix_assert_disk(img, expect, DISK);
        g_autoptr(VdInfo) info = vd_info_describe(img);
        g_assert_nonnull(strstr(vd_info_get(info, "need_check")->str, "not repaired"));
    }
    g_autofree char *after = NULL;
    gsize n;
    g_assert_true(g_file_get_contents(p, &after, &n, NULL));
    g_assert_cmpmem(after, n, g->b->data, g->b->len); /* untouched */

    /* Without the flag, the same references are errors. */
    g->b->data[16] = 0;
    qfix_expect_refused(f, g, "qed", EIO, "table past the end without NEED_CHECK");
}

static void test_need_check_rw(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *expect = g_malloc(DISK);
    g_autoptr(TGen) g = crashed(expect);
    g_autofree char *p = qfix_write(f, "crashed.qed", g);
    g_autoptr(GError) err = NULL;
    {
        g_autoptr(VdImage) img = qfix_open(f, p, NULL, true, &err);
        g_assert_no_error(err);
        qfix_assert_disk(img, expect, DISK);
        g_autoptr(VdInfo) info = vd_info_describe(img);
        const char *rep = vd_info_get(info, "need_check")->str;
        g_test_message("%s", rep);
        g_assert_nonnull(strstr(rep, "3 invalid references dropped"));
    }
    /* On disk: the flag is gone, the bad entries are 0. */
    g_assert_cmpuint(file_features(p) & 2, ==, 0);
    g_assert_cmpuint(file_u64(p, tgen_entry_offset(g, 5)), ==, 0);
    g_assert_cmpuint(file_u64(p, tgen_entry_offset(g, 602)), ==, 0);
    g_assert_cmpuint(file_u64(p, g->l1_offset + 16), ==, 0);
    g_assert_cmpuint(file_u64(p, tgen_entry_offset(g, 600)), !=, 0);
    g_autoptr(VdImage) img = qfix_open(f, p, NULL, false, &err);
    g_assert_no_error(err);
    qfix_assert_disk(img, expect, DISK);
}

/* Two references to one cluster cannot be repaired: a read-write open
 * fails, a read-only one reads. */
static void test_need_check_duplicate(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *expect = g_malloc(DISK);
    g_autoptr(TGen) g = sample(NULL, 2, expect, NULL);
    tgen_put64(g, tgen_entry_offset(g, 7), tgen_get64(g, tgen_entry_offset(g, 0)));
    g_autofree char *p = qfix_write(f, "dup.qed", g);
    g_autoptr(GError) err = NULL;
    VdImage *img = qfix_open(f, p, NULL, true, &err);
    g_assert_null(img);
    g_assert_error(err, VD_ERROR, EIO);
    g_test_message("%s", err->message);
    g_clear_error(&err);
    img = qfix_open(f, p, NULL, false, &err);
    g_assert_no_error(err);
    vd_image_unref(img);
    g_assert_cmpuint(file_features(p) & 2, ==, 2);
}

static void test_write(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *base = qfix_base_file(f, "base.raw", DISK);
    g_autofree uint8_t *model = g_malloc(DISK);
    g_autoptr(TGen) g = sample("base.raw", 4, model, base);
    g_autofree char *p = qfix_write(f, "child.qed", g);
    g_autoptr(GError) err = NULL;
    {
        g_autoptr(VdImage) img = qfix_open(f, p, NULL, true, &err);
        g_assert_no_error(err);
        qfix_write_both(img, model, 0, 100, 0xa1);             /* in place */
        g_assert_cmpuint(file_features(p) & 2, ==, 0);         /* no allocation yet */
        qfix_write_both(img, model, 3 * CS + 7, 100, 0xa2);    /* copy-on-write from the base */
        g_assert_cmpuint(file_features(p) & 2, ==, 2);         /* allocating: NEED_CHECK */
        qfix_write_both(img, model, 2 * CS + 9, 10, 0xa3);     /* a zero cluster: zeros around it */
        qfix_write_both(img, model, 4 * CS - 5, 2 * CS, 0xa4); /* hole, data */
        qfix_write_both(img, model, 2 * SPAN - 100, 3 * CS, 0xa5); /* a new L2 table */
        qfix_write_both(img, model, 601 * CS, 2 * CS, 0xa6);       /* zero cluster and data */
        qfix_write_both(img, model, DISK - 300, 300, 0xa7);
        qfix_assert_disk(img, model, DISK);
        g_assert_true(vd_image_flush(img, &err));
        g_assert_cmpuint(file_features(p) & 2, ==, 0); /* flushed: clean */
        qfix_write_both(img, model, 8 * CS, 3 * CS, 0xa8);
        g_assert_cmpuint(file_features(p) & 2, ==, 2);
    } /* closing flushes */
    g_assert_cmpuint(file_features(p) & 2, ==, 0);
    g_autoptr(VdImage) img = qfix_open(f, p, NULL, false, &err);
    g_assert_no_error(err);
    qfix_assert_disk(img, model, DISK);
}

static void test_write_zeroes(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *base = qfix_base_file(f, "base.raw", DISK);
    for (int backed = 0; backed <= 1; backed++) {
        g_autofree uint8_t *model = g_malloc(DISK);
        g_autoptr(TGen) g = sample(backed ? "base.raw" : NULL, 4, model, backed ? base : NULL);
        g_autofree char *p = qfix_write(f, "z.qed", g);
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = qfix_open(f, p, NULL, true, &err);
        g_assert_no_error(err);
        struct stat st0, st1;
        g_assert_cmpint(stat(p, &st0), ==, 0);
        /* Holes 3-4: zero clusters over a backing file, nothing without. */
        g_assert_true(vd_image_write_zeroes(img, 3 * CS, 2 * CS, VD_ZERO_MAY_UNMAP, &err));
        memset(model + 3 * CS, 0, 2 * CS);
        uint64_t e3 = file_u64(p, tgen_entry_offset(g, 3));
        g_assert_cmpuint(e3, ==, backed ? 1 : 0);
        /* Data clusters 0-1 and part of 5: they stay allocated, read zeros. */
        g_assert_true(vd_image_write_zeroes(img, 0, 2 * CS, VD_ZERO_MAY_UNMAP, &err));
        g_assert_true(vd_image_write_zeroes(img, 5 * CS + 100, 1000, 0, &err));
        memset(model, 0, 2 * CS);
        memset(model + 5 * CS + 100, 0, 1000);
        g_assert_cmpuint(file_u64(p, tgen_entry_offset(g, 0)), ==,
                         tgen_get64(g, tgen_entry_offset(g, 0)));
        /* A range over a table that does not exist yet (clusters 1100..). */
        g_assert_true(vd_image_write_zeroes(img, 1100 * CS - 50, 3 * CS, 0, &err));
        memset(model + 1100 * CS - 50, 0, 3 * CS);
        g_assert_no_error(err);
        qfix_assert_disk(img, model, DISK);
        g_assert_cmpint(stat(p, &st1), ==, 0);
        if (!backed)
            g_assert_cmpuint(st1.st_size, ==, st0.st_size); /* nothing allocated */
        VdChainExtent e;
        g_assert_true(vd_chain_status(img, 3 * CS, 2 * CS, VD_STATUS_WANT_ZERO, &e, &err));
        g_assert_false(vd_chain_extent_is_data(&e));
        g_assert_cmpuint(e.length, ==, 2 * CS);
    }
}

static void test_truncate(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *model = g_malloc0(4 * DISK);
    g_autoptr(TGen) g = sample(NULL, 0, model, NULL);
    g_autofree char *p = qfix_write(f, "grow.qed", g);
    g_autoptr(GError) err = NULL;
    {
        g_autoptr(VdImage) img = qfix_open(f, p, NULL, true, &err);
        g_assert_no_error(err);
        g_assert_false(vd_image_truncate(img, 4 * DISK + 100, &err));
        g_assert_error(err, VD_ERROR, EINVAL);
        g_clear_error(&err);
        g_assert_false(vd_image_truncate(img, (1ull << 30) + 512, &err)); /* past 512*512*4K */
        g_assert_error(err, VD_ERROR, EINVAL);
        g_clear_error(&err);
        g_assert_true(vd_image_truncate(img, 4 * DISK, &err));
        g_assert_no_error(err);
        qfix_write_both(img, model, 4 * DISK - 5000, 5000, 0xb1);
        qfix_write_both(img, model, DISK - 10, 20, 0xb2);
        qfix_assert_disk(img, model, 4 * DISK);
    }
    g_assert_cmpuint(file_u64(p, 48), ==, 4 * DISK);
    g_autoptr(VdImage) img = qfix_open(f, p, NULL, false, &err);
    g_assert_no_error(err);
    qfix_assert_disk(img, model, 4 * DISK);
}

typedef struct {
    VdImage *img;
    const uint8_t *stable; /* content of the clusters nobody writes */
    gint stop;
    int failures;
} Race;

/* Readers: clusters 3k+1 never change; read them again and again. */
static gpointer race_reader(gpointer data)
{
    Race *r = data;
    uint8_t buf[2 * CS];
    guint32 seed = (guint32)(gsize)g_thread_self();
    while (!g_atomic_int_get(&r->stop)) {
        uint64_t ci = (g_random_int() ^ seed) % (CLUSTERS / 3) * 3 + 1;
        g_autoptr(GError) err = NULL;
        if (!vd_image_pread(r->img, buf, CS, ci * CS, &err) ||
            memcmp(buf, r->stable + ci * CS, CS) != 0) {
            g_atomic_int_inc(&r->failures);
            break;
        }
        VdChainExtent e;
        if (!vd_chain_status(r->img, ci * CS, CS, VD_STATUS_WANT_ZERO, &e, &err) ||
            !vd_chain_extent_is_data(&e)) {
            g_atomic_int_inc(&r->failures);
            break;
        }
    }
    return NULL;
}

/* Readers and a writer allocating clusters in the same tables, with a
 * table cache far too small to hold them. */
static void test_concurrent(QFixture *f, gconstpointer data)
{
    f->ctx->metadata_cache_bytes = 1; /* the minimum: a few chunks */
    g_autoptr(TGen) g = tgen_qed(DISK, CS, 1, NULL, 0);
    g_autofree uint8_t *model = g_malloc0(DISK);
    uint8_t c[CS];
    for (uint64_t ci = 1; ci < CLUSTERS; ci += 3) {
        tgen_fill(c, CS, ci * CS, 0x21);
        tgen_data(g, ci, c);
        memcpy(model + ci * CS, c, CS);
    }
    g_autofree char *p = qfix_write(f, "race.qed", g);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = qfix_open(f, p, NULL, true, &err);
    g_assert_no_error(err);
    Race r = {.img = img, .stable = model};
    GThread *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = g_thread_new("reader", race_reader, &r);
    for (uint64_t ci = 0; ci < CLUSTERS && !g_atomic_int_get(&r.failures); ci += 3)
        qfix_write_both(img, model, ci * CS + 100, 200, (uint8_t)ci | 1);
    g_atomic_int_set(&r.stop, 1);
    for (int i = 0; i < 4; i++)
        g_thread_join(t[i]);
    g_assert_cmpint(r.failures, ==, 0);
    qfix_assert_disk(img, model, DISK);
}

static void test_hostile_header(QFixture *f, gconstpointer data)
{
    struct {
        const char *what;
        unsigned field, width;
        uint64_t value;
        int code;
    } cases[] = {
        {"cluster size 2048", 4, 4, 2048, EIO},
        {"cluster size 12288", 4, 4, 12288, EIO},
        {"cluster size 128 MiB", 4, 4, 1u << 27, EIO},
        {"table size 0", 8, 4, 0, EIO},
        {"table size 3", 8, 4, 3, EIO},
        {"table size 32", 8, 4, 32, EIO},
        {"header size 0", 12, 4, 0, EIO},
        {"header size past the end", 12, 4, 0xffffffff, EIO},
        {"unknown feature", 16, 8, 0x10, ENOTSUP},
        {"image size not a sector multiple", 48, 8, 1000, EIO},
        {"image size past the maximum", 48, 8, (1ull << 30) + 512, EIO},
        {"image size 2^64-512", 48, 8, UINT64_MAX - 511, EIO},
        {"L1 misaligned", 40, 8, CS + 8, EIO},
        {"L1 past the end", 40, 8, 1ull << 40, EIO},
        {"L1 in the header", 40, 8, 0, EIO},
        {"backing name over the header fields", 56, 4, 40, EIO},
        {"backing name past the header", 56, 4, CS - 2, EIO},
        {"backing name of 0 bytes", 60, 4, 0, EIO},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree uint8_t *expect = g_malloc(DISK);
        g_autoptr(TGen) g = sample("base.raw", 0, expect, NULL);
        uint8_t *h = g->b->data;
        if (cases[i].width == 4)
            vd_put_le32(h + cases[i].field, (uint32_t)cases[i].value);
        else
            vd_put_le64(h + cases[i].field, cases[i].value);
        qfix_expect_refused(f, g, "qed", cases[i].code, cases[i].what);
    }
    g_autoptr(TGen) g = tgen_qed(DISK, CS, 1, "base\0raw", 0);
    vd_put_le32(g->b->data + 60, 8);
    memcpy(g->b->data + 64, "base\0raw", 8);
    qfix_expect_refused(f, g, "qed", EIO, "backing name with a NUL byte");
    g_byte_array_set_size(g->b, 60);
    qfix_expect_refused(f, g, "qed", EIO, "shorter than the header");
}

/* Unknown compat features are ignored; unknown autoclear features are
 * cleared by a writer. */
static void test_feature_bits(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *expect = g_malloc(DISK);
    g_autoptr(TGen) g = sample(NULL, 0, expect, NULL);
    vd_put_le64(g->b->data + 24, 0x100);
    vd_put_le64(g->b->data + 32, 0x3);
    g_autofree char *p = qfix_write(f, "bits.qed", g);
    g_autoptr(GError) err = NULL;
    VdImage *img = qfix_open(f, p, NULL, false, &err);
    g_assert_no_error(err);
    qfix_assert_disk(img, expect, DISK);
    vd_image_unref(img);
    g_assert_cmpuint(file_u64(p, 32), ==, 3);
    img = qfix_open(f, p, NULL, true, &err);
    g_assert_no_error(err);
    vd_image_unref(img);
    g_assert_cmpuint(file_u64(p, 32), ==, 0);
    g_assert_cmpuint(file_u64(p, 24), ==, 0x100);
}

static void test_hostile_tables(QFixture *f, gconstpointer data)
{
    struct {
        const char *what;
        uint64_t index;
        int64_t value; /* -1: entry 0's table; -2: that + one cluster; -3: the end */
    } cases[] = {
        {"table misaligned", 0, 2 * CS + 8}, {"table past the end", 0, 1ll << 40},
        {"table straddles the end", 0, -3},  {"table in the header", 0, 0x800},
        {"table over the L1", 0, CS},        {"two entries, one table", 1, -1},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree uint8_t *expect = g_malloc(DISK);
        g_autoptr(TGen) g = sample(NULL, 0, expect, NULL);
        uint64_t v = (uint64_t)cases[i].value;
        if (cases[i].value == -1)
            v = tgen_get64(g, g->l1_offset);
        else if (cases[i].value == -3)
            v = g->b->len / CS * CS; /* one cluster table ending past the end */
        tgen_put64(g, g->l1_offset + 8 * cases[i].index, v);
        if (cases[i].value == -3)
            g_byte_array_set_size(g->b, (guint)(v + CS / 2));
        qfix_expect_refused(f, g, "qed", EIO, cases[i].what);
    }
    /* Two tables that overlap need table_size > 1. */
    g_autoptr(TGen) g = tgen_qed(DISK, CS, 2, NULL, 0);
    uint8_t c[CS] = {1};
    tgen_data(g, 0, c);
    tgen_put64(g, g->l1_offset + 8, tgen_get64(g, g->l1_offset) + CS);
    qfix_expect_refused(f, g, "qed", EIO, "tables overlap");
}

static void test_hostile_clusters(QFixture *f, gconstpointer data)
{
    struct {
        const char *what;
        int64_t entry;   /* -1: cluster 5's own L2 table */
        bool read_fails; /* else only writes are refused (the bytes are there) */
        const char *why; /* the read-write open's reason */
    } cases[] = {
        {"data misaligned", 3 * CS + 16, true, "*guest cluster 5 at 0x3010 is misaligned*"},
        {"data past the end", 1ll << 40, true, "*guest cluster 5 at 0x10000000000 is misaligned*"},
        {"data is the L1 table", CS, false,
         "*the L1 table and guest cluster 5 both use the cluster at 0x1000*"},
        {"data over its L2 table", -1, false,
         "*the L2 table of L1 entry 0 and guest cluster 5 both use the cluster at 0x*"},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree uint8_t *expect = g_malloc(DISK);
        g_autoptr(TGen) g = sample(NULL, 0, expect, NULL);
        uint64_t ent = tgen_entry_offset(g, 5);
        tgen_put64(g, ent, cases[i].entry < 0 ? tgen_l2(g, 5) : (uint64_t)cases[i].entry);
        g_autofree char *p = qfix_write(f, "bad.qed", g);
        g_autoptr(GError) err = NULL;
        uint8_t buf[CS];
        {
            g_autoptr(VdImage) img = qfix_open(f, p, NULL, false, &err);
            g_assert_no_error(err);
            bool ok = vd_image_pread(img, buf, CS, 5 * CS, &err);
            g_assert_true(ok != cases[i].read_fails);
            if (!ok) {
                g_test_message("%s: %s", cases[i].what, err->message);
                g_assert_error(err, VD_ERROR, EIO);
                g_clear_error(&err);
            }
            g_assert_true(vd_image_pread(img, buf, CS, 0, &err));
            g_assert_cmpmem(buf, CS, expect, CS);
        }
        /* The read-write open's walk finds it: read-only, with the reason. */
        g_test_expect_message(NULL, G_LOG_LEVEL_WARNING, "*serving the image read-only*");
        g_autoptr(VdImage) rw = qfix_open(f, p, NULL, true, &err);
        g_test_assert_expected_messages();
        g_assert_no_error(err);
        memset(buf, 0xee, sizeof buf);
        g_assert_false(vd_image_pwrite(rw, buf, 10, 5 * CS + 7, &err));
        g_assert_error(err, VD_ERROR, EROFS);
        g_autofree char *why = vd_image_last_error(rw);
        g_test_message("%s (write): %s", cases[i].what, why);
        g_assert_true(g_pattern_match_simple(cases[i].why, why));
        g_clear_pointer(&rw, vd_image_unref);
        g_assert_cmpuint(file_features(p) & NEED_CHECK, ==, 0);
    }
}

enum { L2_ENTRY0 = -1, L2_FILE_END = -2 };

/* An image qemu-img made and qemu-io wrote (4 KiB clusters: 0x11 in
 * cluster 0, 0x22 in cluster 2), cluster 2's L2 entry patched to entry
 * (0: left alone; L2_ENTRY0: cluster 0's; L2_FILE_END: where the next new
 * cluster goes). Unsafe to write: a read-write open serves it read-only
 * with the reason, writes fail with EROFS, reads show what the tables
 * say, the file stays as it was (NEED_CHECK clear: nothing repaired). */
static void check_unsafe(QFixture *f, const char *name, int64_t entry, const char *why,
                         bool cluster2_reads, uint8_t cluster2)
{
    g_autofree char *p = g_build_filename(f->dir, name, NULL);
    g_autofree char *create =
        g_strdup_printf("qemu-img create -q -f qed -o cluster_size=4096 %s 1M", p);
    tf_run(create);
    g_autofree char *io =
        g_strdup_printf("qemu-io -f qed -c 'write -P 0x11 0 4k' -c 'write -P 0x22 8k 4k' %s", p);
    tf_run(io);
    uint64_t l2 = file_u64(p, file_u64(p, 40));
    g_assert_cmpuint(l2, !=, 0);
    g_assert_cmpuint(file_u64(p, l2 + 2 * 8), !=, 0);
    struct stat st;
    g_assert_cmpint(stat(p, &st), ==, 0);
    if (entry == L2_ENTRY0)
        entry = (int64_t)file_u64(p, l2);
    else if (entry == L2_FILE_END)
        entry = st.st_size / CS * CS;
    if (entry != 0) {
        uint8_t b[8];
        vd_put_le64(b, (uint64_t)entry);
        guard_patch(p, l2 + 2 * 8, b, sizeof b);
    }
    g_autofree char *before = NULL;
    gsize before_len;
    g_assert_true(g_file_get_contents(p, &before, &before_len, NULL));

    g_autoptr(GError) err = NULL;
    if (why != NULL)
        g_test_expect_message(NULL, G_LOG_LEVEL_WARNING, "*serving the image read-only*");
    g_autoptr(VdImage) img = qfix_open(f, p, NULL, true, &err);
    g_test_assert_expected_messages();
    g_assert_no_error(err);
    uint8_t buf[CS], got[CS];
    memset(buf, 0x77, sizeof buf);
    if (why == NULL) {
        g_assert_true(vd_image_pwrite(img, buf, CS, 4 * CS, &err));
        g_assert_no_error(err);
        g_assert_true(vd_image_pread(img, got, CS, 4 * CS, &err));
        g_assert_cmpmem(got, CS, buf, CS);
        return;
    }
    g_assert_false(vd_image_pwrite(img, buf, CS, 2 * CS, &err));
    g_assert_error(err, VD_ERROR, EROFS);
    g_clear_error(&err);
    g_assert_false(vd_image_pwrite(img, buf, CS, 4 * CS, &err));
    g_assert_error(err, VD_ERROR, EROFS);
    g_clear_error(&err);
    g_autofree char *last = vd_image_last_error(img);
    g_test_message("%s: %s", name, last);
    g_assert_nonnull(last);
    g_assert_true(g_pattern_match_simple(why, last));
    memset(buf, 0x11, CS);
    g_assert_true(vd_image_pread(img, got, CS, 0, &err));
    g_assert_cmpmem(got, CS, buf, CS);
    bool ok = vd_image_pread(img, got, CS, 2 * CS, &err);
    g_assert_true(ok == cluster2_reads);
    g_clear_error(&err);
    memset(buf, cluster2, CS);
    if (ok)
        g_assert_cmpmem(got, CS, buf, CS);
    g_clear_pointer(&img, vd_image_unref);
    g_autofree char *after = NULL;
    gsize after_len;
    g_assert_true(g_file_get_contents(p, &after, &after_len, NULL));
    g_assert_cmpmem(after, after_len, before, before_len);
}

static void test_unsafe_qemu(QFixture *f, gconstpointer data)
{
    g_autofree char *qemu_img = g_find_program_in_path("qemu-img");
    g_autofree char *qemu_io = g_find_program_in_path("qemu-io");
    if (qemu_img == NULL || qemu_io == NULL) {
        g_test_skip("qemu-img or qemu-io not found");
        return;
    }
    check_unsafe(f, "clean.qed", 0, NULL, true, 0x22);
    check_unsafe(f, "shared.qed", L2_ENTRY0,
                 "*shared.qed: guest cluster 0 and guest cluster 2 both use the cluster at 0x*",
                 true, 0x11);
    /* Where the next new cluster would go, and far past it: reading them
     * fails (EIO), as without a write. */
    check_unsafe(f, "end.qed", L2_FILE_END,
                 "*end.qed: guest cluster 2 at 0x* is misaligned or lies beyond the end*", false,
                 0);
    check_unsafe(f, "far.qed", 1ll << 30,
                 "*far.qed: guest cluster 2 at 0x40000000 is misaligned or lies beyond the end*",
                 false, 0);
}

/* A guest cluster mapped onto each kind of metadata: the write is refused
 * before it lands, the image is marked (NEED_CHECK, writes refused for the
 * rest of the session), and the next read-write open checks it: a cluster
 * that is also a table cannot be repaired, one in the header is dropped. */
static void test_write_over_metadata(QFixture *f, gconstpointer data)
{
    enum { HEADER, L1, OWN_L2, OTHER_L2, NEW_L2 };
    static const char *const what[] = {"header", "L1 table", "its own L2 table", "another L2 table",
                                       "an L2 table made this session"};
    for (int c = HEADER; c <= NEW_L2; c++) {
        g_test_message("cluster 5 over %s", what[c]);
        g_autofree uint8_t *expect = g_malloc(DISK);
        g_autoptr(TGen) g = sample(NULL, 0, expect, NULL);
        uint64_t end = g->b->len / CS * CS;
        /* A write under L1 entry 2 (no table yet) puts a data cluster at
         * the end of the file and its new L2 table right after it. */
        const uint64_t fresh = 1100;
        uint64_t target[] = {0x800, g->l1_offset, tgen_l2(g, 5), tgen_l2(g, 600), end + CS};
        g_autofree char *p = qfix_write(f, "meta.qed", g);
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) rw = qfix_open(f, p, NULL, true, &err);
        g_assert_no_error(err);
        if (c == NEW_L2) {
            qfix_write_both(rw, expect, fresh * CS, CS, 0x77);
            g_assert_true(vd_image_flush(rw, &err));
            g_assert_cmpuint(file_u64(p, g->l1_offset + 2 * 8), ==, end + CS);
        }
        /* Pointed there behind the driver's back (its table not yet
         * cached), as a driver bug would: an open would have found it
         * (test_hostile_clusters), the guard is what is left. */
        uint8_t ent[8];
        vd_put_le64(ent, target[c]);
        guard_patch(p, tgen_entry_offset(g, 5), ent, sizeof ent);
        if (c != HEADER) {
            /* The mapping looks valid: reading it shows the table. */
            g_autofree uint8_t *got = g_malloc(CS);
            g_autofree uint8_t *meta = guard_read_host(p, target[c], CS);
            g_assert_true(vd_image_pread(rw, got, CS, 5 * CS, &err));
            g_assert_cmpmem(got, CS, meta, CS);
        }
        /* The header's features change (NEED_CHECK); the rest must not. */
        uint64_t meta_off = c == HEADER ? 24 : target[c];
        size_t meta_len = c == HEADER ? CS - 24 : CS;
        g_autofree uint8_t *head = guard_read_host(p, 0, 16);
        guard_expect_write_refused(rw, p, 5 * CS + 7, 10, meta_off, meta_len, 0);
        g_autofree uint8_t *head2 = guard_read_host(p, 0, 16);
        g_assert_cmpmem(head2, 16, head, 16);
        g_assert_true(file_features(p) & NEED_CHECK);
        /* Closing does not clear it. */
        g_clear_pointer(&rw, vd_image_unref);
        g_assert_true(file_features(p) & NEED_CHECK);

        /* The other clusters still read as before. */
        {
            g_autoptr(VdImage) ro = qfix_open(f, p, NULL, false, &err);
            g_assert_no_error(err);
            g_autofree uint8_t *got = g_malloc(CS);
            g_assert_true(vd_image_pread(ro, got, CS, 0, &err));
            g_assert_cmpmem(got, CS, expect, CS);
            g_assert_true(vd_image_pread(ro, got, CS, 600 * CS, &err));
            g_assert_cmpmem(got, CS, expect + 600 * CS, CS);
        }

        g_autoptr(VdImage) again = qfix_open(f, p, NULL, true, &err);
        if (c == HEADER) {
            g_assert_no_error(err);
            g_assert_false(file_features(p) & NEED_CHECK);
        } else {
            g_assert_null(again);
            g_test_message("reopened read-write: %s", err->message);
            g_assert_error(err, VD_ERROR, EIO);
        }
    }
}

/* Peek reads the header only: the same size as an open (plain, backed,
 * needing a check), and a 16 MiB L1 table is not loaded. */
static void test_peek(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *base = qfix_base_file(f, "base.raw", DISK);
    g_autofree uint8_t *expect = g_malloc(DISK);
    g_autoptr(TGen) plain = sample(NULL, 0, expect, NULL);
    g_autoptr(TGen) backed = sample("base.raw", 0, expect, base);
    g_autoptr(TGen) crash = crashed(expect);
    const TGen *gens[] = {plain, backed, crash};
    for (size_t i = 0; i < G_N_ELEMENTS(gens); i++) {
        g_autofree char *name = g_strdup_printf("peek%zu.qed", i);
        g_autofree char *p = qfix_write(f, name, gens[i]);
        peek_expect_same(f->ctx, p);
    }
    /* 1 MiB clusters, 16-cluster tables: 2M L1 entries for 4 EiB. */
    const uint64_t size = UINT64_C(1) << 62;
    g_autoptr(TGen) huge = tgen_qed(size, 1u << 20, 16, NULL, 0);
    g_assert_cmpuint(huge->l1_entries, ==, 1u << 21);
    g_autofree char *p = qfix_write(f, "huge.qed", huge);
    peek_expect_small(f->ctx, p, size, huge->l1_entries * 8, true);
}

int main(int argc, char *argv[])
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, QFixture, NULL, qfix_setup, fn, qfix_teardown)
    ADD("/qed/read", test_read);
    ADD("/qed/backing", test_backing);
    ADD("/qed/need-check/read-only", test_need_check_ro);
    ADD("/qed/need-check/repair", test_need_check_rw);
    ADD("/qed/need-check/duplicate", test_need_check_duplicate);
    ADD("/qed/write", test_write);
    ADD("/qed/write-zeroes", test_write_zeroes);
    ADD("/qed/truncate", test_truncate);
    ADD("/qed/concurrent", test_concurrent);
    ADD("/qed/feature-bits", test_feature_bits);
    ADD("/qed/hostile/header", test_hostile_header);
    ADD("/qed/hostile/tables", test_hostile_tables);
    ADD("/qed/hostile/clusters", test_hostile_clusters);
    ADD("/qed/hostile/unsafe-to-write", test_unsafe_qemu);
    ADD("/qed/write-over-metadata", test_write_over_metadata);
    ADD("/qed/peek", test_peek);
#undef ADD
    return g_test_run();
}
