/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The qcow (version 1) driver through the block layer, on images made by
 * the test generator from the format description: plain, contiguous,
 * compressed and encrypted clusters, backing files, writes of every kind
 * (into holes with copy-on-write, into compressed clusters, in place,
 * encrypted partial sectors, new L2 tables), the probe against qcow2's
 * versions, and hostile headers and tables.
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

#define CS       4096u
#define DISK     (6u * 1024 * 1024 + 1536) /* ends inside a cluster */
#define CLUSTERS ((DISK + CS - 1) / CS)
#define PASS     "correct horse battery staple" /* only the first 16 bytes count */

/* Which clusters the sample holds, and how. */
static const struct {
    uint64_t ci;
    char kind; /* 'd' data, 'c' compressed */
} layout[] = {
    {0, 'd'},   {1, 'd'},   {2, 'c'},
    {5, 'd'},   {6, 'c'},   {7, 'c'},
    {600, 'c'}, {601, 'd'}, {CLUSTERS - 1, 'd'},
};

/* The sample image and, in expect, the disk it holds over base (or zeros). */
static TGen *sample(const char *backing, const char *pass, uint8_t *expect, const uint8_t *base)
{
    TGen *g = tgen_qcow1(DISK, 12, 9, backing, pass);
    if (base != NULL)
        memcpy(expect, base, DISK);
    else
        memset(expect, 0, DISK);
    uint8_t c[CS];
    for (size_t i = 0; i < G_N_ELEMENTS(layout); i++) {
        uint64_t off = layout[i].ci * CS;
        if (layout[i].kind == 'c') {
            /* Compressible: runs of one byte with a pattern here and there. */
            memset(c, (int)(0x30 + i), CS);
            tgen_fill(c + 100, 300, off + 100, (uint8_t)i);
            tgen_compressed(g, layout[i].ci, c);
        } else {
            tgen_fill(c, CS, off, (uint8_t)(0x40 + i));
            tgen_data(g, layout[i].ci, c);
        }
        memcpy(expect + off, c, MIN(CS, DISK - off));
    }
    return g;
}

static void test_probe(QFixture *f, gconstpointer data)
{
    g_autoptr(TGen) g = tgen_qcow1(1 << 20, 12, 9, NULL, NULL);
    g_autofree char *p = qfix_write(f, "v1.qcow", g);
    g_autoptr(GError) err = NULL;
    const VdDriver *drv = vd_probe_path(f->ctx, p, &err);
    g_assert_no_error(err);
    g_assert_nonnull(drv);
    g_assert_cmpstr(drv->name, ==, "qcow");
    /* The same magic with versions 2 and 3 is qcow2's, never ours. */
    for (uint32_t v = 2; v <= 3; v++) {
        vd_put_be32(g->b->data + 4, v);
        g_autofree char *p2 = qfix_write(f, "v2.qcow2", g);
        drv = vd_probe_path(f->ctx, p2, &err);
        g_assert_no_error(err);
        g_assert_true(drv == NULL || strcmp(drv->name, "qcow") != 0);
        qfix_expect_refused(f, g, "qcow", ENOTSUP, "qcow2 header forced as qcow");
    }
}

static void test_read(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *expect = g_malloc(DISK);
    g_autoptr(TGen) g = sample(NULL, NULL, expect, NULL);
    g_autofree char *p = qfix_write(f, "s.qcow", g);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = qfix_open(f, p, NULL, false, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(img), ==, DISK);
    qfix_assert_disk(img, expect, DISK);

    /* Clusters 0 and 1 are contiguous in the file: one DATA run. */
    VdChainExtent e;
    g_assert_true(vd_chain_status(img, 100, DISK - 100, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_DATA);
    g_assert_cmpuint(e.length, ==, 2 * CS - 100);
    g_assert_cmpint(e.fd, ==, img->fd);
    g_assert_cmpuint(e.host_offset, ==, tgen_get64(g, tgen_entry_offset(g, 0)) + 100);
    g_assert_true(vd_chain_status(img, 2 * CS, DISK - 2 * CS, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_DATA_DECODE);
    g_assert_cmpuint(e.length, ==, CS);
    g_assert_true(vd_chain_status(img, 6 * CS, DISK - 6 * CS, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_DATA_DECODE);
    g_assert_cmpuint(e.length, ==, 2 * CS); /* decode runs merge */
    g_assert_true(vd_chain_status(img, 3 * CS, DISK - 3 * CS, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_UNALLOCATED);
    g_assert_cmpuint(e.length, ==, 2 * CS);
    /* Between cluster 8 and 600 lies a whole L1 span with no table. */
    uint64_t pos;
    g_assert_true(vd_chain_seek(img, 8 * CS, SEEK_DATA, &pos, &err));
    g_assert_cmpuint(pos, ==, 600 * CS);
    g_assert_true(vd_chain_seek(img, 600 * CS, SEEK_HOLE, &pos, &err));
    g_assert_cmpuint(pos, ==, 602 * CS);

    g_autoptr(VdInfo) info = vd_info_describe(img);
    g_assert_cmpuint(vd_info_get(info, "cluster_size")->u64, ==, CS);
    g_assert_cmpuint(vd_info_get(info, "l2_entries")->u64, ==, 512);
    g_assert_cmpstr(vd_info_get(info, "encryption")->str, ==, "none");
    g_assert_cmpuint(vd_info_get(info, "l2_tables")->u64, ==, 3);
}

static void test_backing(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *base = qfix_base_file(f, "base.raw", DISK);
    g_autofree uint8_t *expect = g_malloc(DISK);
    g_autoptr(TGen) g = sample("base.raw", NULL, expect, base);
    g_autofree char *p = qfix_write(f, "child.qcow", g);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = qfix_open(f, p, NULL, false, &err);
    g_assert_no_error(err);
    g_assert_nonnull(img->backing);
    g_assert_cmpstr(img->backing->driver->name, ==, "raw");
    g_assert_cmpstr(img->backing_name, ==, "base.raw");
    qfix_assert_disk(img, expect, DISK);
    VdChainExtent e;
    g_assert_true(vd_chain_status(img, 3 * CS, CS, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpuint(e.depth, ==, 1);

    /* A missing backing file fails the open and says which. */
    g_autofree char *bp = g_build_filename(f->dir, "base.raw", NULL);
    g_unlink(bp);
    VdImage *none = qfix_open(f, p, NULL, false, &err);
    g_assert_null(none);
    g_assert_nonnull(strstr(err->message, "base.raw"));
}

static char *keyfile(QFixture *f, const char *image, const char *pass)
{
    char *kp = g_build_filename(f->dir, "keys", NULL);
    g_autofree char *text = g_strdup_printf("[%s]\npassphrase=%s\n", image, pass);
    g_assert_true(g_file_set_contents(kp, text, -1, NULL));
    g_assert_cmpint(chmod(kp, 0600), ==, 0);
    return kp;
}

static void test_encrypted(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *expect = g_malloc(DISK);
    g_autoptr(TGen) g = sample(NULL, PASS, expect, NULL);
    g_autofree char *p = qfix_write(f, "enc.qcow", g);
    g_autoptr(GError) err = NULL;
    VdImage *img = qfix_open(f, p, NULL, false, &err);
    g_assert_null(img);
    g_assert_error(err, VD_ERROR, EACCES);
    g_test_message("no key: %s", err->message);
    g_clear_error(&err);

    g_autofree char *kp = keyfile(f, "enc.qcow", PASS);
    g_assert_true(vd_context_load_keyfile(f->ctx, kp, &err));
    img = qfix_open(f, p, NULL, false, &err);
    g_assert_no_error(err);
    qfix_assert_disk(img, expect, DISK);
    /* Encrypted plain clusters need decoding; so do compressed ones. */
    VdChainExtent e;
    g_assert_true(vd_chain_status(img, 0, DISK, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_DATA_DECODE);
    g_autoptr(VdInfo) info = vd_info_describe(img);
    g_assert_cmpstr(vd_info_get(info, "encryption")->str, ==, "aes-cbc");
    vd_image_unref(img);
}

/* A model of the disk and the image, written alike, then compared. */
static const struct {
    uint64_t off;
    size_t len;
} writes[] = {
    {3 * CS + 100, 50},          /* a hole: copy-on-write from the backing file */
    {2 * CS + 4000, 200},        /* compressed cluster 2 and into the hole at 3 */
    {6 * CS + 1, 1},             /* one byte into a compressed cluster */
    {0, CS + 10},                /* in place, across two clusters */
    {5 * CS - 10, 20},           /* hole and data */
    {1024 * CS - 700, 3 * CS},   /* across an L2 table boundary, both tables new */
    {600 * CS + 5, 2 * CS},      /* compressed and data */
    {DISK - 1000, 1000},         /* the partial last cluster */
    {2000 * 512 + 3, 65536 + 7}, /* a run of holes */
};

static void run_writes(QFixture *f, const char *path, uint8_t *model, bool encrypted)
{
    g_autoptr(GError) err = NULL;
    {
        g_autoptr(VdImage) img = qfix_open(f, path, NULL, true, &err);
        g_assert_no_error(err);
        for (size_t i = 0; i < G_N_ELEMENTS(writes); i++)
            qfix_write_both(img, model, writes[i].off, writes[i].len, (uint8_t)(0xa0 + i));
        qfix_assert_disk(img, model, DISK);
        g_assert_true(vd_image_flush(img, &err));
    }
    /* Reopened: all of it was written to the file. */
    g_autoptr(VdImage) img = qfix_open(f, path, NULL, false, &err);
    g_assert_no_error(err);
    qfix_assert_disk(img, model, DISK);
    /* A written compressed cluster became a plain one (which needs
     * decoding only when encrypted). */
    VdChainExtent e;
    g_assert_true(vd_chain_status(img, 6 * CS, CS, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpint(e.state, ==, encrypted ? VD_EXTENT_DATA_DECODE : VD_EXTENT_DATA);
}

static void test_write(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *base = qfix_base_file(f, "base.raw", DISK);
    g_autofree uint8_t *model = g_malloc(DISK);
    g_autoptr(TGen) g = sample("base.raw", NULL, model, base);
    g_autofree char *p = qfix_write(f, "child.qcow", g);
    run_writes(f, p, model, false);
    g_autofree uint8_t *after = NULL;
    gsize n;
    g_autofree char *bp = g_build_filename(f->dir, "base.raw", NULL);
    g_assert_true(g_file_get_contents(bp, (char **)&after, &n, NULL));
    g_assert_true(n == DISK && memcmp(after, base, DISK) == 0); /* the base untouched */
}

static void test_write_plain(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *model = g_malloc(DISK);
    g_autoptr(TGen) g = sample(NULL, NULL, model, NULL);
    g_autofree char *p = qfix_write(f, "plain.qcow", g);
    run_writes(f, p, model, false);
    /* Zeros into holes of an image without backing allocate nothing. */
    struct stat st0, st1;
    g_assert_cmpint(stat(p, &st0), ==, 0);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = qfix_open(f, p, NULL, true, &err);
    g_assert_no_error(err);
    qfix_write_both(img, model, 100 * CS + 5, 3 * CS, 0);
    g_assert_cmpint(stat(p, &st1), ==, 0);
    g_assert_cmpuint(st0.st_size, ==, st1.st_size);
    qfix_assert_disk(img, model, DISK);
}

static void test_write_encrypted(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *model = g_malloc(DISK);
    g_autoptr(TGen) g = sample(NULL, PASS, model, NULL);
    g_autofree char *p = qfix_write(f, "enc.qcow", g);
    g_autofree char *kp = keyfile(f, "enc.qcow", PASS);
    g_autoptr(GError) err = NULL;
    g_assert_true(vd_context_load_keyfile(f->ctx, kp, &err));
    run_writes(f, p, model, true);
    /* The data is AES-CBC with the sector number as IV, as the generator
     * encrypts: a plain cluster of the generator's is still readable. */
    g_autoptr(VdImage) img = qfix_open(f, p, NULL, true, &err);
    g_assert_no_error(err);
    qfix_write_both(img, model, 1 * CS + 511, 2, 0x11); /* two sectors, one byte each */
    qfix_assert_disk(img, model, DISK);
}

/* The file ends inside its last data cluster, which is not even aligned
 * (QEMU writes whole aligned clusters; other writers need not): the
 * missing part reads as zeros, and new clusters must go after it, not
 * over it, whether it was written in place first or not. */
static void test_write_partial_last(QFixture *f, gconstpointer data)
{
    for (int in_place_first = 1; in_place_first >= 0; in_place_first--) {
        g_autofree uint8_t *model = g_malloc(DISK);
        g_autoptr(TGen) g = sample(NULL, NULL, model, NULL);
        uint64_t at = g->b->len + 3000;
        g_byte_array_set_size(g->b, (guint)(at + 100)); /* 100 bytes of cluster 601 in the file */
        tgen_fill(g->b->data + at, 100, 0, 0x55);
        tgen_put64(g, tgen_entry_offset(g, 601), at);
        memcpy(model + 601 * CS, g->b->data + at, 100);
        memset(model + 601 * CS + 100, 0, CS - 100);
        g_autofree char *p = qfix_write(f, "short.qcow", g);
        g_autoptr(GError) err = NULL;
        {
            g_autoptr(VdImage) img = qfix_open(f, p, NULL, true, &err);
            g_assert_no_error(err);
            qfix_assert_disk(img, model, DISK);
            if (in_place_first) /* in place, past the file's end */
                qfix_write_both(img, model, 601 * CS + 2000, 200, 0x61);
            qfix_write_both(img, model, 300 * CS, 2 * CS, 0x62); /* new clusters */
            if (!in_place_first)
                qfix_write_both(img, model, 601 * CS + CS - 300, 300, 0x63);
            qfix_assert_disk(img, model, DISK);
        }
        g_autoptr(VdImage) img = qfix_open(f, p, NULL, false, &err);
        g_assert_no_error(err);
        qfix_assert_disk(img, model, DISK);
    }
}

/* Header fields that must make the open fail. */
static void test_hostile_header(QFixture *f, gconstpointer data)
{
    struct {
        const char *what;
        unsigned field; /* byte offset */
        unsigned width; /* 1, 4, 8 */
        uint64_t value;
        int code;
    } cases[] = {
        {"cluster_bits 8", 32, 1, 8, EIO},
        {"cluster_bits 17", 32, 1, 17, EIO},
        {"l2_bits 5", 33, 1, 5, EIO},
        {"l2_bits 14", 33, 1, 14, EIO},
        {"size 2^62", 24, 8, 1ull << 62, EIO},
        {"size 2^64-1", 24, 8, UINT64_MAX, EIO},
        {"L1 past the end", 40, 8, 1ull << 40, EIO},
        {"L1 offset wraps", 40, 8, UINT64_MAX - 7, EIO},
        {"L1 over the header", 40, 8, 8, EIO},
        {"crypt method 2", 36, 4, 2, ENOTSUP},
        {"version 0", 4, 4, 0, ENOTSUP},
        {"backing name past the end", 8, 8, 1ull << 32, EIO},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree uint8_t *expect = g_malloc(DISK);
        g_autoptr(TGen) g = sample(NULL, NULL, expect, NULL);
        uint8_t *h = g->b->data;
        if (cases[i].field == 8)
            vd_put_be32(h + 16, 10);
        if (cases[i].width == 1)
            h[cases[i].field] = (uint8_t)cases[i].value;
        else if (cases[i].width == 4)
            vd_put_be32(h + cases[i].field, (uint32_t)cases[i].value);
        else
            vd_put_be64(h + cases[i].field, cases[i].value);
        qfix_expect_refused(f, g, "qcow", cases[i].code, cases[i].what);
    }
    g_autoptr(TGen) g = tgen_qcow1(DISK, 12, 9, NULL, NULL);
    vd_put_be64(g->b->data + 8, 48);
    vd_put_be32(g->b->data + 16, 5000);
    qfix_expect_refused(f, g, "qcow", EIO, "backing name of 5000 bytes");
    g_byte_array_set_size(g->b, 40);
    qfix_expect_refused(f, g, "qcow", EIO, "a file shorter than the header");
}

/* L1 entries that must make the open fail: tables outside the file, over
 * the header or the L1, over each other (a table used twice is a loop). */
static void test_hostile_tables(QFixture *f, gconstpointer data)
{
    struct {
        const char *what;
        uint64_t l1_index;
        int64_t value; /* < 0: relative to entry 0's table (-1: that table) */
    } cases[] = {
        {"table past the end", 0, 1ll << 40}, {"table straddles the end", 0, 0x7ffffff0},
        {"table over the header", 0, 16},     {"table over the L1", 0, 48},
        {"two entries, one table", 1, -1},    {"tables overlap", 1, -2},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree uint8_t *expect = g_malloc(DISK);
        g_autoptr(TGen) g = sample(NULL, NULL, expect, NULL);
        uint64_t t0 = tgen_get64(g, g->l1_offset);
        uint64_t v = (uint64_t)cases[i].value;
        if (cases[i].value == -1)
            v = t0;
        else if (cases[i].value == -2)
            v = t0 + 8;
        else if (v == 0x7ffffff0)
            v = g->b->len - 8;
        tgen_put64(g, g->l1_offset + 8 * cases[i].l1_index, v);
        qfix_expect_refused(f, g, "qcow", EIO, cases[i].what);
    }
}

/* Bad cluster entries: the image opens, those clusters fail with EIO,
 * the others read. */
static void test_hostile_clusters(QFixture *f, gconstpointer data)
{
    struct {
        const char *what;
        uint64_t ci;
        uint64_t entry; /* 0: corrupt the stream of compressed cluster ci */
    } cases[] = {
        {"data past the end", 5, 1ull << 40},
        {"data inside the header", 5, 16},
        {"compressed past the end", 2, (1ull << 63) | (100ull << 51) | (1ull << 40)},
        {"compressed of length 0", 2, (1ull << 63) | 4096},
        {"corrupt deflate stream", 2, 0},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree uint8_t *expect = g_malloc(DISK);
        g_autoptr(TGen) g = sample(NULL, NULL, expect, NULL);
        uint64_t ent = tgen_entry_offset(g, cases[i].ci);
        if (cases[i].entry != 0) {
            tgen_put64(g, ent, cases[i].entry);
        } else {
            uint64_t e = tgen_get64(g, ent);
            uint64_t off = e & ((1ull << 51) - 1);
            memset(g->b->data + off, 0xff, 8);
        }
        g_autofree char *p = qfix_write(f, "bad.qcow", g);
        g_autoptr(GError) err = NULL;
        VdImage *img = qfix_open(f, p, NULL, false, &err);
        g_assert_no_error(err);
        uint8_t buf[CS];
        g_assert_false(vd_image_pread(img, buf, CS, cases[i].ci * CS, &err));
        g_test_message("%s: %s", cases[i].what, err->message);
        g_assert_error(err, VD_ERROR, EIO);
        g_clear_error(&err);
        g_assert_true(vd_image_pread(img, buf, CS, 0, &err));
        g_assert_cmpmem(buf, CS, expect, CS);
        /* Status from the cluster before: the good part, no error (yet). */
        VdChainExtent e;
        g_assert_true(vd_chain_status(img, (cases[i].ci - 1) * CS, 3 * CS, 0, &e, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(e.length, ==, CS);
        vd_image_unref(img);
        /* Writing into it fails too, rather than corrupting anything: a
         * bad entry makes a read-write open serve the image read-only; a
         * stream that merely does not inflate fails the write. */
        bool bad_entry = cases[i].entry != 0;
        if (bad_entry)
            g_test_expect_message(NULL, G_LOG_LEVEL_WARNING, "*; serving the image read-only");
        g_autoptr(VdImage) rw = qfix_open(f, p, NULL, true, &err);
        g_test_assert_expected_messages();
        g_assert_no_error(err);
        g_assert_false(vd_image_pwrite(rw, buf, 10, cases[i].ci * CS + 7, &err));
        int code = bad_entry ? EROFS : EIO;
        g_assert_error(err, VD_ERROR, code);
        g_clear_error(&err);
    }
}

/* The read-write open of meta.qcow finds cluster 5 on metadata: it
 * succeeds, says why once (pattern why), and serves the image read-only:
 * writes fail with EROFS and change nothing, reads go on. */
static void expect_served_read_only(QFixture *f, const char *p, const char *why,
                                    const uint8_t *expect)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GBytes) before = guard_file_bytes(p);
    g_test_expect_message(NULL, G_LOG_LEVEL_WARNING, why);
    g_autoptr(VdImage) rw = qfix_open(f, p, NULL, true, &err);
    g_test_assert_expected_messages();
    g_assert_no_error(err);
    g_autofree char *last = vd_image_last_error(rw);
    g_assert_nonnull(last);
    g_test_message("open: %s", last);
    g_assert_true(g_pattern_match_simple(why, last));
    uint8_t buf[CS];
    memset(buf, 0xee, sizeof buf);
    g_assert_false(vd_image_pwrite(rw, buf, 10, 5 * CS + 7, &err));
    g_assert_error(err, VD_ERROR, EROFS);
    g_clear_error(&err);
    g_assert_false(vd_image_pwrite(rw, buf, CS, 1500 * CS, &err)); /* a hole elsewhere */
    g_assert_error(err, VD_ERROR, EROFS);
    g_clear_error(&err);
    g_assert_true(vd_image_pread(rw, buf, CS, 601 * CS, &err));
    g_assert_cmpmem(buf, CS, expect + 601 * CS, CS);
    g_autoptr(GBytes) after = guard_file_bytes(p);
    g_assert_true(g_bytes_equal(before, after));
}

/* A guest cluster mapped onto each kind of metadata. The read-write open
 * finds it (the consistency walk) and serves the image read-only; should
 * the file change under an open image, the metadata guard still refuses
 * the write before it lands and every later write of the session too. */
static void test_write_over_metadata(QFixture *f, gconstpointer data)
{
    enum { HEADER, BACKING, L1, OWN_L2, OTHER_L2, NEW_L2 };
    static const char *const what[] = {"the header",       "the backing file name",
                                       "the L1 table",     "its own L2 table",
                                       "another L2 table", "an L2 table made this session"};
    static const char *const why[] = {
        "*guest cluster 0x5000 and the header share host cluster 0x0; *",
        "*guest cluster 0x5000 and the backing file name share host cluster 0x0; *",
        "*guest cluster 0x5000 and the L1 table share host cluster 0x*",
        "*guest cluster 0x5000 and L2 table 0 (at 0x*) share host cluster 0x*",
        "*guest cluster 0x5000 and L2 table 1 (at 0x*) share host cluster 0x*",
        "*guest cluster 0x5000 and L2 table 2 (at 0x*) share host cluster 0x*",
    };
    g_autofree uint8_t *base = qfix_base_file(f, "base.raw", DISK);
    for (int c = HEADER; c <= NEW_L2; c++) {
        g_test_message("cluster 5 over %s", what[c]);
        g_autofree uint8_t *expect = g_malloc(DISK);
        g_autoptr(TGen) g = sample("base.raw", NULL, expect, base);
        uint64_t end = (g->b->len + CS - 1) / CS * CS;
        /* A write under L1 entry 2 (no table yet) puts a data cluster at
         * the end of the file and its new L2 table right after it. */
        const uint64_t fresh = 1100;
        uint64_t target[] = {16, 48, g->l1_offset, tgen_l2(g, 5), tgen_l2(g, 601), end + CS};
        size_t meta_len[] = {48 - 16, 8, g->l1_entries * 8, 4096, 4096, 4096};
        uint64_t entry = tgen_entry_offset(g, 5);
        g_autofree char *p = qfix_write(f, "meta.qcow", g);
        {
            /* The image is sound at the open; the entry changes after it. */
            g_autoptr(GError) err = NULL;
            g_autoptr(VdImage) rw = qfix_open(f, p, NULL, true, &err);
            g_assert_no_error(err);
            if (c == NEW_L2) {
                qfix_write_both(rw, expect, fresh * CS, CS, 0x77);
                g_assert_true(vd_image_flush(rw, &err));
            }
            uint8_t be[8];
            vd_put_be64(be, target[c]);
            guard_patch(p, entry, be, 8);
            if (c != HEADER) {
                /* The mapping looks valid: reading it shows the metadata. */
                g_autofree uint8_t *got = g_malloc(meta_len[c]);
                g_autofree uint8_t *meta = guard_read_host(p, target[c], meta_len[c]);
                g_assert_true(vd_image_pread(rw, got, meta_len[c], 5 * CS, &err));
                g_assert_cmpmem(got, meta_len[c], meta, meta_len[c]);
            }
            guard_expect_write_refused(rw, p, 5 * CS + 7, 10, target[c], meta_len[c], 0);
            g_autofree uint8_t *got = g_malloc(CS);
            g_assert_true(vd_image_pread(rw, got, CS, 601 * CS, &err));
            g_assert_cmpmem(got, CS, expect + 601 * CS, CS);
        }
        /* qcow has no flag to record it: the next open finds it again. */
        expect_served_read_only(f, p, why[c], expect);
    }
}

/* Compressed streams are packed, several to a cluster (the sample's
 * clusters 6 and 7 share one, and its images are writable), but one on a
 * cluster that is written in place, or under one, makes the open serve
 * the image read-only. */
static void test_write_compressed_shared(QFixture *f, gconstpointer data)
{
    for (int c = 0; c < 2; c++) {
        g_autofree uint8_t *expect = g_malloc(DISK);
        g_autoptr(TGen) g = sample(NULL, NULL, expect, NULL);
        uint64_t data1 = tgen_get64(g, tgen_entry_offset(g, 1));
        uint64_t comp2 = tgen_get64(g, tgen_entry_offset(g, 2));
        const char *why;
        if (c == 0) {
            /* Cluster 6's stream moved into cluster 1's data. */
            uint64_t e6 = tgen_get64(g, tgen_entry_offset(g, 6));
            uint64_t off6 = e6 & ((1ull << 51) - 1);
            tgen_put64(g, tgen_entry_offset(g, 6), e6 - off6 + data1 + 100);
            why = "*compressed guest cluster 0x6000 and guest cluster 0x1000 share host cluster *";
        } else {
            /* Cluster 601's data over cluster 2's stream. */
            tgen_put64(g, tgen_entry_offset(g, 601), (comp2 & ((1ull << 51) - 1)) / CS * CS);
            why =
                "*guest cluster 0x259000 and compressed guest cluster 0x2000 share host cluster *";
        }
        g_autofree char *p = qfix_write(f, "packed.qcow", g);
        g_autoptr(GBytes) before = guard_file_bytes(p);
        g_autoptr(GError) err = NULL;
        g_test_expect_message(NULL, G_LOG_LEVEL_WARNING, why);
        g_autoptr(VdImage) rw = qfix_open(f, p, NULL, true, &err);
        g_test_assert_expected_messages();
        g_assert_no_error(err);
        uint8_t buf[CS];
        memset(buf, 0x5c, CS);
        g_assert_false(vd_image_pwrite(rw, buf, CS, CS, &err));
        g_assert_error(err, VD_ERROR, EROFS);
        g_clear_error(&err);
        g_assert_true(vd_image_pread(rw, buf, CS, CS, &err));
        g_assert_cmpmem(buf, CS, expect + CS, CS);
        g_autoptr(GBytes) after = guard_file_bytes(p);
        g_assert_true(g_bytes_equal(before, after));
    }
}

/* The first L2 table of a qcow image qemu-img made, and the offset of
 * guest cluster ci's entry in it. */
static uint64_t qemu_entry_offset(const char *p, uint64_t ci, unsigned *cluster_bits)
{
    g_autofree uint8_t *h = guard_read_host(p, 0, 48);
    *cluster_bits = h[32];
    g_autofree uint8_t *l1 = guard_read_host(p, vd_be64(h + 40), 8);
    return vd_be64(l1) + ci * 8;
}

/* Images qemu-img made and wrote, then patched so that two entries share
 * a cluster, or one points past the end of the file (where the next new
 * cluster would go): a read-write open succeeds, serves the image
 * read-only with the reason as its error, and reads what it did. */
static void test_write_inconsistent(QFixture *f, gconstpointer data)
{
    g_autofree char *img_tool = g_find_program_in_path("qemu-img");
    g_autofree char *io_tool = g_find_program_in_path("qemu-io");
    if (img_tool == NULL || io_tool == NULL) {
        g_test_skip("no qemu-img or qemu-io");
        return;
    }
    enum { SHARED, PAST_END, CLEAN };
    for (int c = SHARED; c <= CLEAN; c++) {
        g_autofree char *p = g_build_filename(f->dir, "q.qcow", NULL);
        g_autofree char *cmd = g_strdup_printf(
            "sh -c 'qemu-img create -q -f qcow %s 1M && qemu-io -f qcow -c \"write -P 0x11 0 64k\" "
            "-c \"write -P 0x22 512k 4k\" %s >/dev/null'",
            p, p);
        tf_run(cmd);
        unsigned bits;
        uint64_t e1 = qemu_entry_offset(p, 1, &bits);
        uint64_t cs = 1ull << bits, ci = (512 * 1024) >> bits;
        uint64_t e = qemu_entry_offset(p, ci, &bits);
        g_autoptr(GBytes) file = guard_file_bytes(p);
        uint64_t size = g_bytes_get_size(file);
        const uint8_t *fb = g_bytes_get_data(file, NULL);
        uint64_t host1 = vd_be64(fb + e1);
        uint8_t be[8];
        const char *why = NULL;
        if (c == SHARED) {
            vd_put_be64(be, host1); /* cluster ci onto cluster 1's data */
            guard_patch(p, e, be, 8);
            why = "*guest cluster 0x80000 and guest cluster 0x1000 share host cluster 0x*";
        } else if (c == PAST_END) {
            vd_put_be64(be, (size + cs - 1) / cs * cs); /* where a new cluster would go */
            guard_patch(p, e, be, 8);
            why = "*guest cluster 0x80000 maps to host 0x*, past the end of the file*";
        }
        g_autoptr(GBytes) before = guard_file_bytes(p);
        g_autoptr(GError) err = NULL;
        if (why != NULL)
            g_test_expect_message(NULL, G_LOG_LEVEL_WARNING, why);
        g_autoptr(VdImage) rw = qfix_open(f, p, NULL, true, &err);
        g_test_assert_expected_messages();
        g_assert_no_error(err);
        g_autofree uint8_t *buf = g_malloc(cs), *want = g_malloc(cs);
        memset(buf, 0x99, cs);
        if (why != NULL) {
            g_autofree char *last = vd_image_last_error(rw);
            g_assert_nonnull(last);
            g_test_message("%s", last);
            g_assert_true(g_pattern_match_simple(why, last));
            /* A hole, the shared cluster, its twin: all refused. */
            uint64_t offs[] = {300 * 1024, 512 * 1024, cs};
            for (size_t i = 0; i < G_N_ELEMENTS(offs); i++) {
                g_assert_false(vd_image_pwrite(rw, buf, cs, offs[i], &err));
                g_assert_error(err, VD_ERROR, EROFS);
                g_clear_error(&err);
            }
            g_assert_true(vd_image_flush(rw, &err));
            g_autoptr(GBytes) after = guard_file_bytes(p);
            g_assert_true(g_bytes_equal(before, after));
        } else {
            g_assert_null(vd_image_last_error(rw));
            g_assert_true(vd_image_pwrite(rw, buf, cs, 300 * 1024, &err));
            g_assert_no_error(err);
            g_assert_true(vd_image_pread(rw, want, cs, 300 * 1024, &err));
            g_assert_cmpmem(want, cs, buf, cs);
        }
        /* The old contents read as before. */
        memset(want, 0x11, cs);
        g_assert_true(vd_image_pread(rw, buf, cs, cs, &err));
        g_assert_cmpmem(buf, cs, want, cs);
        if (c != PAST_END) {
            memset(want, c == SHARED ? 0x11 : 0x22, cs);
            g_assert_true(vd_image_pread(rw, buf, cs, 512 * 1024, &err));
            g_assert_cmpmem(buf, cs, want, cs);
        }
    }
}

/* Peek reads the header only: the same size as an open (plain, backed,
 * encrypted: no key needed), and a 32 MiB L1 table is not loaded. */
static void test_peek(QFixture *f, gconstpointer data)
{
    g_autofree uint8_t *base = qfix_base_file(f, "base.raw", DISK);
    g_autofree uint8_t *expect = g_malloc(DISK);
    g_autoptr(TGen) plain = sample(NULL, NULL, expect, NULL);
    g_autoptr(TGen) backed = sample("base.raw", NULL, expect, base);
    g_autoptr(TGen) enc = sample(NULL, PASS, expect, NULL);
    const TGen *gens[] = {plain, backed, enc};
    for (size_t i = 0; i < G_N_ELEMENTS(gens); i++) {
        g_autofree char *name = g_strdup_printf("peek%zu.qcow", i);
        g_autofree char *p = qfix_write(f, name, gens[i]);
        if (gens[i] == enc) {
            /* The key is not needed to peek; the open to compare with needs it. */
            g_autoptr(GError) err = NULL;
            g_autoptr(VdImage) img = vd_image_peek(f->ctx, p, &err);
            g_assert_no_error(err);
            g_autofree char *kp = keyfile(f, name, PASS);
            g_assert_true(vd_context_load_keyfile(f->ctx, kp, &err));
        }
        peek_expect_same(f->ctx, p);
    }
    /* 4 KiB clusters, 512-entry tables: 4M L1 entries for 8 TiB. */
    const uint64_t size = UINT64_C(1) << 43;
    g_autoptr(TGen) huge = tgen_qcow1(size, 12, 9, NULL, NULL);
    g_assert_cmpuint(huge->l1_entries, ==, 1u << 22);
    g_autofree char *p = qfix_write(f, "huge.qcow", huge);
    peek_expect_small(f->ctx, p, size, huge->l1_entries * 8, true);
}

int main(int argc, char *argv[])
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, QFixture, NULL, qfix_setup, fn, qfix_teardown)
    ADD("/qcow/probe", test_probe);
    ADD("/qcow/read", test_read);
    ADD("/qcow/backing", test_backing);
    ADD("/qcow/encrypted", test_encrypted);
    ADD("/qcow/write/backed", test_write);
    ADD("/qcow/write/plain", test_write_plain);
    ADD("/qcow/write/encrypted", test_write_encrypted);
    ADD("/qcow/write/partial-last-cluster", test_write_partial_last);
    ADD("/qcow/hostile/header", test_hostile_header);
    ADD("/qcow/hostile/tables", test_hostile_tables);
    ADD("/qcow/hostile/clusters", test_hostile_clusters);
    ADD("/qcow/write-over-metadata", test_write_over_metadata);
    ADD("/qcow/write/inconsistent", test_write_inconsistent);
    ADD("/qcow/write/compressed-shared", test_write_compressed_shared);
    ADD("/qcow/peek", test_peek);
#undef ADD
    return g_test_run();
}
