/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vmdk writes through the block layer against an in-memory model: grain
 * allocation with both grain directories and tables kept in step (also
 * allocating tables), copy-on-write from a parent, flat and zero extents,
 * zeroed grains, CID updates, refusal on read-only kinds, and what a
 * process killed before flushing leaves behind.
 */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "formats/vmdk.h"
#include "src/vd-chain.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "tests/unit/test-vmdk-gen.h"

#define GRAIN 65536

static const char desc_a[] = "# Disk DescriptorFile\nversion=1\nCID=11112222\n"
                             "parentCID=ffffffff\ncreateType=\"monolithicSparse\"\n"
                             "RW 16384 SPARSE \"a.vmdk\"\n";

/* 8 MiB, 16 entries per table (8 tables); grains 0 and 40 hold pattern 1. */
static void make_sparse(Fixture *f, const char *name, bool prealloc, bool zero_grain,
                        const char *desc, uint8_t *model)
{
    GenBuf b = {0};
    GenKdmv k = {.version = zero_grain ? 2 : 1,
                 .flags = 1 | (zero_grain ? 4 : 0),
                 .capacity = 16384,
                 .grain = 128,
                 .gtes = 16,
                 .rgd = true,
                 .prealloc_gts = prealloc,
                 .desc = desc};
    gen_kdmv(&b, &k);
    memset(model, 0, 8 * MiB);
    if (prealloc) {
        uint8_t g[GRAIN];
        uint64_t grains[] = {40, 0};
        for (size_t i = 0; i < G_N_ELEMENTS(grains); i++) {
            gen_fill(g, sizeof g, grains[i] * GRAIN, 1);
            gen_kdmv_grain(&b, &k, grains[i], g);
            memcpy(model + grains[i] * GRAIN, g, GRAIN);
        }
    }
    put_gen(f, name, &b);
}

static void compare_model(VdImage *img, const uint8_t *model, size_t len, const char *when)
{
    g_autofree uint8_t *buf = g_malloc(len);
    g_autoptr(GError) err = NULL;
    g_assert_true(vd_image_pread(img, buf, len, 0, &err));
    g_assert_no_error(err);
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != model[i])
            g_error("%s: byte 0x%zx: expected 0x%02x, got 0x%02x", when, i, model[i], buf[i]);
    }
}

/* Both directories and every table pair agree on disk. */
static void check_redundant(Fixture *f, const char *name)
{
    g_autofree char *p = fpath(f, name);
    g_autofree char *raw = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(p, &raw, &len, NULL));
    const uint8_t *d = (const uint8_t *)raw;
    uint64_t gd = vd_le64(d + 56) * SECTOR, rgd = vd_le64(d + 48) * SECTOR;
    uint32_t gtes = vd_le32(d + 44);
    uint64_t n = vd_le64(d + 12) / (gtes * vd_le64(d + 20));
    for (uint64_t i = 0; i < n; i++) {
        uint64_t t = (uint64_t)vd_le32(d + gd + i * 4) * SECTOR;
        uint64_t r = (uint64_t)vd_le32(d + rgd + i * 4) * SECTOR;
        g_assert_true((t == 0) == (r == 0));
        if (t == 0)
            continue;
        g_assert_cmpuint(t + gtes * 4, <=, len);
        g_assert_cmpuint(r + gtes * 4, <=, len);
        if (memcmp(d + t, d + r, gtes * 4) != 0)
            g_error("grain table %" G_GUINT64_FORMAT " differs from its redundant copy", i);
        for (uint32_t j = 0; j < gtes; j++) {
            uint64_t g = vd_le32(d + t + j * 4);
            if (g > 1)
                g_assert_cmpuint(g * SECTOR + GRAIN, <=, len);
        }
    }
}

static void random_writes(VdImage *img, uint8_t *model, size_t size, GRand *r, int count)
{
    g_autofree uint8_t *buf = g_malloc(300 * 1024);
    g_autoptr(GError) err = NULL;
    for (int i = 0; i < count; i++) {
        size_t len = (size_t)g_rand_int_range(r, 1, 300 * 1024);
        size_t off = (size_t)g_rand_int_range(r, 0, (gint32)(size - len));
        if (g_rand_int_range(r, 0, 8) == 0) {
            g_assert_true(vd_image_write_zeroes(img, off, len, 0, &err));
            memset(model + off, 0, len);
        } else {
            for (size_t j = 0; j < len; j++)
                buf[j] = (uint8_t)g_rand_int(r);
            g_assert_true(vd_image_pwrite(img, buf, len, off, &err));
            memcpy(model + off, buf, len);
        }
        g_assert_no_error(err);
    }
}

static void test_sparse_model(Fixture *f, gconstpointer data)
{
    bool prealloc = GPOINTER_TO_INT(data) & 1, zero_grain = GPOINTER_TO_INT(data) & 2;
    g_autofree uint8_t *model = g_malloc(8 * MiB);
    make_sparse(f, "a.vmdk", prealloc, zero_grain, desc_a, model);
    GRand *r = g_rand_new_with_seed(42 + GPOINTER_TO_UINT(data));
    {
        g_autoptr(VdImage) img = open_rw(f, "a.vmdk");
        g_assert_false(img->read_only);
        random_writes(img, model, 8 * MiB, r, 150);
        compare_model(img, model, 8 * MiB, "before flush");
        g_autoptr(GError) err = NULL;
        g_assert_true(vd_image_flush(img, &err));
        random_writes(img, model, 8 * MiB, r, 50);
    } /* unref flushes */
    g_rand_free(r);
    check_redundant(f, "a.vmdk");
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "a.vmdk", &err);
    g_assert_no_error(err);
    compare_model(img, model, 8 * MiB, "after reopening");
    /* The first write gave the image a new CID. */
    VmdkState *s = img->opaque;
    g_assert_cmphex(s->cid, !=, 0x11112222);
    g_assert_cmpuint(s->desc->extents->len, ==, 1);
}

static void test_child_cow(Fixture *f, gconstpointer data)
{
    g_autofree uint8_t *model = g_malloc(8 * MiB);
    make_sparse(f, "base.vmdk", true, false, desc_a, model);
    g_autofree char *basep = fpath(f, "base.vmdk");
    g_autofree char *before = NULL;
    gsize blen;
    g_assert_true(g_file_get_contents(basep, &before, &blen, NULL));
    g_autofree uint8_t *unused = g_malloc(8 * MiB);
    make_sparse(f, "child.vmdk", false, false,
                "version=1\nCID=aaaa0001\nparentCID=11112222\ncreateType=\"monolithicSparse\"\n"
                "parentFileNameHint=\"base.vmdk\"\n",
                unused);
    {
        g_autoptr(VdImage) img = open_rw(f, "child.vmdk");
        g_assert_nonnull(img->backing);
        g_autoptr(GError) err = NULL;
        /* Partial grains over the parent's data and over its holes. */
        g_assert_true(vd_image_pwrite(img, "abc", 3, 100, &err));
        memcpy(model + 100, "abc", 3);
        g_assert_true(vd_image_pwrite(img, "xyz", 3, 40 * GRAIN + GRAIN - 3, &err));
        memcpy(model + 40 * GRAIN + GRAIN - 3, "xyz", 3);
        g_assert_true(vd_image_pwrite(img, "hole", 4, 7 * GRAIN + 5, &err));
        memcpy(model + 7 * GRAIN + 5, "hole", 4);
        /* Zeros over the parent's data must hide it. */
        g_assert_true(vd_image_write_zeroes(img, 40 * GRAIN, 1000, 0, &err));
        memset(model + 40 * GRAIN, 0, 1000);
        g_assert_no_error(err);
        compare_model(img, model, 8 * MiB, "child before flush");
    }
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "child.vmdk", &err);
    g_assert_no_error(err);
    compare_model(img, model, 8 * MiB, "child after reopening");
    g_autofree char *after = NULL;
    gsize alen;
    g_assert_true(g_file_get_contents(basep, &after, &alen, NULL));
    g_assert_true(blen == alen && memcmp(before, after, blen) == 0);
    check_redundant(f, "child.vmdk");
}

static void test_flat_zero_extents(Fixture *f, gconstpointer data)
{
    g_autofree uint8_t *model = g_malloc(8 * MiB);
    make_sparse(f, "sp.vmdk", true, false, NULL, model); /* 8 MiB at 0 */
    GenBuf fl = {0};
    uint8_t zero = 0;
    gen_put(&fl, MiB - 1, &zero, 1);
    put_gen(f, "fl.bin", &fl);
    put_file(f, "multi.vmdk",
             "version=1\nCID=1\nparentCID=ffffffff\ncreateType=\"custom\"\n"
             "RW 16384 SPARSE \"sp.vmdk\"\nRW 2048 FLAT \"fl.bin\" 1\n"
             "RW 2048 ZERO\n");
    model = g_realloc(model, 10 * MiB);
    memset(model + 8 * MiB, 0, 2 * MiB);
    {
        g_autoptr(VdImage) img = open_rw(f, "multi.vmdk");
        g_assert_false(img->read_only);
        g_autoptr(GError) err = NULL;
        /* One write across the sparse/flat boundary. */
        uint8_t buf[8192];
        gen_fill(buf, sizeof buf, 0, 9);
        g_assert_true(vd_image_pwrite(img, buf, sizeof buf, 8 * MiB - 4096, &err));
        memcpy(model + 8 * MiB - 4096, buf, sizeof buf);
        g_assert_true(vd_image_write_zeroes(img, 8 * MiB, 100, VD_ZERO_MAY_UNMAP, &err));
        memset(model + 8 * MiB, 0, 100);
        g_assert_true(vd_image_write_zeroes(img, 9 * MiB + 5, 100, 0, &err));
        g_assert_no_error(err);
        g_assert_false(vd_image_pwrite(img, buf, 1, 9 * MiB + 5, &err));
        g_assert_error(err, VD_ERROR, EROFS);
        g_clear_error(&err);
        compare_model(img, model, 10 * MiB, "multi");
    }
    /* The flat extent starts one sector into its file. */
    g_autofree char *p = fpath(f, "fl.bin");
    g_autofree char *raw = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(p, &raw, &len, NULL));
    g_assert_cmpuint(len, ==, MiB);
    g_assert_cmpint((uint8_t)raw[512 + 100], ==, model[8 * MiB + 100]);
    g_assert_cmpint((uint8_t)raw[512 + 4095], ==, model[8 * MiB + 4095]);
}

static void test_zeroed_grain(Fixture *f, gconstpointer data)
{
    g_autofree uint8_t *model = g_malloc(8 * MiB);
    make_sparse(f, "z.vmdk", true, true, desc_a, model);
    g_autofree char *p = fpath(f, "z.vmdk");
    g_autoptr(GError) err = NULL;
    {
        g_autoptr(VdImage) img = open_rw(f, "z.vmdk");
        g_assert_true(vd_image_write_zeroes(img, 0, 3 * GRAIN, 0, &err));
        g_assert_true(vd_image_flush(img, &err));
        g_assert_no_error(err);
        g_assert_cmpint(state_at(img, 0, NULL), ==, VD_EXTENT_ZERO);
        g_assert_cmpint(state_at(img, 40 * GRAIN, NULL), ==, VD_EXTENT_DATA);
        /* A partial write over a zeroed grain: the rest stays zeros. */
        g_assert_true(vd_image_pwrite(img, "q", 1, GRAIN + 7, &err));
        memset(model, 0, 3 * GRAIN);
        model[GRAIN + 7] = 'q';
        compare_model(img, model, 8 * MiB, "zeroed grains");
    }
    g_autoptr(VdImage) img = open_img(f, "z.vmdk", &err);
    compare_model(img, model, 8 * MiB, "zeroed grains, reopened");
    check_redundant(f, "z.vmdk");
}

static void test_read_only_kinds(Fixture *f, gconstpointer data)
{
    GenBuf b = {0};
    uint64_t grains[] = {1};
    gen_stream(&b, 2048, grains, 1, 1, NULL);
    put_gen(f, "stream.vmdk", &b);
    gen_cowd(&b, 2048, 1, grains, 1, 1);
    put_gen(f, "cowd.vmdk", &b);
    g_autofree uint8_t *model = g_malloc(8 * MiB);
    make_sparse(f, "sp.vmdk", true, false, NULL, model);
    put_file(f, "ro.vmdk", "version=1\ncreateType=\"x\"\nRDONLY 16384 SPARSE \"sp.vmdk\"\n");
    const char *names[] = {"stream.vmdk", "cowd.vmdk", "ro.vmdk"};
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        g_autoptr(VdImage) img = open_rw(f, names[i]);
        g_assert_true(img->read_only);
        g_autoptr(GError) err = NULL;
        g_assert_false(vd_image_pwrite(img, "x", 1, 0, &err));
        g_assert_error(err, VD_ERROR, EROFS);
    }
}

/* A writer killed without flushing: the image stays consistent and holds
 * exactly what was flushed. */
static void test_killed_writer(Fixture *f, gconstpointer data)
{
    g_autofree uint8_t *model = g_malloc(8 * MiB);
    make_sparse(f, "k.vmdk", false, false, desc_a, model);
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        VdImage *img = open_rw(f, "k.vmdk");
        uint8_t buf[100000];
        memset(buf, 'A', sizeof buf);
        GError *err = NULL;
        if (!vd_image_pwrite(img, buf, sizeof buf, 12345, &err) || !vd_image_flush(img, &err))
            _exit(2);
        memset(buf, 'B', sizeof buf);
        for (int i = 0; i < 40; i++) {
            if (!vd_image_pwrite(img, buf, sizeof buf, MiB + (uint64_t)i * 150000, &err))
                _exit(3);
        }
        _exit(0); /* no flush, no close: as if killed */
    }
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    check_redundant(f, "k.vmdk");
    memset(model + 12345, 'A', 100000);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "k.vmdk", &err);
    g_assert_no_error(err);
    compare_model(img, model, 8 * MiB, "after a killed writer");
}

/* Readers (status and reads) race a writer over a tiny grain table cache
 * that must keep dirty tables while evicting clean ones. The readers check
 * the half the writer leaves alone; the writer's half is checked after. */
typedef struct {
    VdImage *img;
    const uint8_t *model;
    gint stop;
    gint failures;
} Race;

static gpointer race_reader(gpointer data)
{
    Race *r = data;
    GRand *rnd = g_rand_new();
    g_autofree uint8_t *buf = g_malloc(200000);
    while (!g_atomic_int_get(&r->stop)) {
        g_autoptr(GError) err = NULL;
        size_t len = (size_t)g_rand_int_range(rnd, 1, 200000);
        uint64_t off = (uint64_t)g_rand_int_range(rnd, 0, (gint32)(4 * MiB - len));
        if (!vd_image_pread(r->img, buf, len, off, &err) || memcmp(buf, r->model + off, len) != 0)
            g_atomic_int_inc(&r->failures);
        uint64_t pos;
        g_clear_error(&err);
        uint64_t at = 4 * MiB + (uint64_t)g_rand_int_range(rnd, 0, 4 * MiB - 1);
        if (!vd_chain_seek(r->img, at, SEEK_HOLE, &pos, &err) || pos < at)
            g_atomic_int_inc(&r->failures);
    }
    g_rand_free(rnd);
    return NULL;
}

static void test_concurrent_readers(Fixture *f, gconstpointer data)
{
    g_autofree uint8_t *model = g_malloc(8 * MiB);
    make_sparse(f, "c.vmdk", true, false, desc_a, model);
    f->ctx->metadata_cache_bytes = 128; /* two tables of 16 entries: constant eviction */
    Race r = {.img = open_rw(f, "c.vmdk"), .model = model};
    GThread *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = g_thread_new("reader", race_reader, &r);
    GRand *rnd = g_rand_new_with_seed(7);
    g_autofree uint8_t *buf = g_malloc(100000);
    g_autoptr(GError) err = NULL;
    for (int i = 0; i < 300; i++) {
        size_t len = (size_t)g_rand_int_range(rnd, 1, 100000);
        uint64_t off = 4 * MiB + (uint64_t)g_rand_int_range(rnd, 0, (gint32)(4 * MiB - len));
        for (size_t j = 0; j < len; j++)
            buf[j] = (uint8_t)g_rand_int(rnd);
        g_assert_true(vd_image_pwrite(r.img, buf, len, off, &err));
        memcpy(model + off, buf, len);
        if (i % 50 == 0)
            g_assert_true(vd_image_flush(r.img, &err));
    }
    g_rand_free(rnd);
    g_atomic_int_set(&r.stop, 1);
    for (int i = 0; i < 4; i++)
        g_thread_join(t[i]);
    g_assert_cmpint(g_atomic_int_get(&r.failures), ==, 0);
    compare_model(r.img, model, 8 * MiB, "after the race");
    vd_image_unref(r.img);
    check_redundant(f, "c.vmdk");
}

int main(int argc, char *argv[])
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, data, fn) g_test_add(path, Fixture, data, setup, fn, teardown)
    ADD("/vmdk/write/sparse-model", GINT_TO_POINTER(1), test_sparse_model);
    ADD("/vmdk/write/sparse-model-new-tables", GINT_TO_POINTER(0), test_sparse_model);
    ADD("/vmdk/write/sparse-model-zeroed-grain", GINT_TO_POINTER(3), test_sparse_model);
    ADD("/vmdk/write/child-cow", NULL, test_child_cow);
    ADD("/vmdk/write/flat-and-zero-extents", NULL, test_flat_zero_extents);
    ADD("/vmdk/write/zeroed-grain", NULL, test_zeroed_grain);
    ADD("/vmdk/write/read-only-kinds", NULL, test_read_only_kinds);
    ADD("/vmdk/write/killed-writer", NULL, test_killed_writer);
    ADD("/vmdk/write/concurrent-readers", NULL, test_concurrent_readers);
#undef ADD
    return g_test_run();
}
