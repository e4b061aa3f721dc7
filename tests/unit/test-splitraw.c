/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The split-raw driver through the block layer: which names start a set
 * (and which do not), segments of different sizes (an empty one
 * included), reads and writes across segment boundaries, holes in sparse
 * segments, members, and raw_ext.
 */
#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "src/vd-chain.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "tests/unit/test-peek.h"
#include "tests/unit/test-fixtures.h"

typedef struct {
    char *dir;
    VdContext *ctx;
} Fixture;

static uint8_t pat(uint64_t off)
{
    return (uint8_t)(off * 7 + (off >> 12) + 3);
}

static void fixture_setup(Fixture *f, gconstpointer data)
{
    f->dir = tf_tmpdir("vdtest-split-XXXXXX");
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

/* Write name with the disk bytes [start, start + len); holes where sparse. */
static void segment(Fixture *f, const char *name, uint64_t start, uint64_t len, bool sparse)
{
    g_autofree char *p = g_build_filename(f->dir, name, NULL);
    int fd = open(p, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)len), ==, 0);
    g_autofree uint8_t *buf = g_malloc(len + 1);
    for (uint64_t i = 0; i < len; i++)
        buf[i] = pat(start + i);
    /* Sparse: only the first 64 KiB hold data, the rest is a hole (zeros). */
    uint64_t n = sparse ? MIN(len, 65536) : len;
    g_assert_cmpint(pwrite(fd, buf, n, 0), ==, (ssize_t)n);
    close(fd);
}

static const char *probe_name(Fixture *f, const char *name)
{
    g_autofree char *p = g_build_filename(f->dir, name, NULL);
    const VdDriver *d = vd_probe_path(f->ctx, p, NULL);
    return d ? d->name : "none";
}

static void test_probe(Fixture *f, gconstpointer data)
{
    segment(f, "a.img.000", 0, 100, false);
    g_assert_cmpstr(probe_name(f, "a.img.000"), ==, "none"); /* alone: not a set */
    segment(f, "a.img.001", 100, 100, false);
    segment(f, "a.img.002", 200, 100, false);
    g_assert_cmpstr(probe_name(f, "a.img.000"), ==, "split-raw");
    g_assert_cmpstr(probe_name(f, "a.img.001"), ==, "none"); /* second of a .000 set */
    g_assert_cmpstr(probe_name(f, "a.img.002"), ==, "none");
    segment(f, "b.001", 0, 100, false);
    segment(f, "b.002", 100, 100, false);
    g_assert_cmpstr(probe_name(f, "b.001"), ==, "split-raw");
    segment(f, "c.aa", 0, 100, false);
    segment(f, "c.ab", 100, 100, false);
    g_assert_cmpstr(probe_name(f, "c.aa"), ==, "split-raw");
    g_assert_cmpstr(probe_name(f, "c.ab"), ==, "none");
    segment(f, "d.00", 0, 100, false);
    segment(f, "d.01", 100, 100, false);
    g_assert_cmpstr(probe_name(f, "d.00"), ==, "split-raw");
    segment(f, "e.0", 0, 100, false); /* one digit: not a split suffix */
    segment(f, "e.1", 100, 100, false);
    g_assert_cmpstr(probe_name(f, "e.0"), ==, "none");
    segment(f, "f.aaaaa", 0, 100, false); /* five letters: no */
    segment(f, "f.aaaab", 100, 100, false);
    g_assert_cmpstr(probe_name(f, "f.aaaaa"), ==, "none");
    /* A magic number wins: a split VHD is not a split raw disk. */
    g_autofree char *q = g_build_filename(f->dir, "g.000", NULL);
    g_assert_true(g_file_set_contents(q, "conectix", 8, NULL));
    segment(f, "g.001", 0, 100, false);
    g_assert_cmpstr(probe_name(f, "g.000"), !=, "split-raw");
    /* raw_ext naming "000": a lone .000 is raw, a set stays split-raw. */
    g_autoptr(GError) err = NULL;
    g_assert_true(vd_context_set_raw_extensions(f->ctx, "img,000", &err));
    segment(f, "h.000", 0, 100, false);
    g_assert_cmpstr(probe_name(f, "h.000"), ==, "raw");
    g_assert_cmpstr(probe_name(f, "a.img.000"), ==, "split-raw");
}

static void test_read_write(Fixture *f, gconstpointer data)
{
    /* Sizes differ; the third is empty; the fourth sparse; the last short. */
    const uint64_t sizes[] = {1 << 20, 300000, 0, 1 << 20, 4097};
    uint64_t total = 0;
    for (int i = 0; i < 5; i++) {
        g_autofree char *n = g_strdup_printf("disk.%03d", i);
        segment(f, n, total, sizes[i], i == 3);
        total += sizes[i];
    }
    g_autofree char *p = g_build_filename(f->dir, "disk.000", NULL);
    peek_assert_like_open(f->ctx, p); /* the members: every later segment */
    VdOpenOptions o = {.read_only = false};
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = vd_image_open(f->ctx, p, &o, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(img->driver->name, ==, "split-raw");
    g_assert_cmpuint(vd_image_size(img), ==, total);
    g_assert_cmpuint(img->members->len, ==, 4);
    g_autofree uint8_t *buf = g_malloc(total);
    g_assert_true(vd_image_pread(img, buf, total, 0, &err));
    uint64_t sparse_start = sizes[0] + sizes[1], sparse_data_end = sparse_start + 65536;
    for (uint64_t i = 0; i < total; i++) {
        uint8_t want = (i >= sparse_data_end && i < sparse_start + sizes[3]) ? 0 : pat(i);
        if (buf[i] != want)
            g_error("byte %" G_GUINT64_FORMAT ": got %02x, want %02x", i, buf[i], want);
    }
    /* Holes: the sparse segment's tail, through SEEK_HOLE. */
    uint64_t pos;
    g_assert_true(vd_chain_seek(img, 0, SEEK_HOLE, &pos, &err));
    g_assert_cmpuint(pos, ==, sparse_data_end);
    g_assert_true(vd_chain_seek(img, pos, SEEK_DATA, &pos, &err));
    g_assert_cmpuint(pos, ==, sparse_start + sizes[3]);
    /* A write across three segments (the empty one between), then a flush. */
    uint64_t at = sizes[0] - 1000, len = sizes[1] + 3000;
    g_autofree uint8_t *w = g_malloc(len);
    memset(w, 0xab, len);
    g_assert_true(vd_image_pwrite(img, w, len, at, &err));
    g_assert_true(vd_image_flush(img, &err));
    g_assert_true(vd_image_pread(img, buf, total, 0, &err));
    for (uint64_t i = 0; i < len; i++)
        g_assert_cmpuint(buf[at + i], ==, 0xab);
    g_assert_cmpuint(buf[at - 1], ==, pat(at - 1));
    /* The segments kept their sizes: no growth, not even at the end. */
    g_assert_false(vd_image_pwrite(img, w, 10, total - 5, &err));
    g_assert_error(err, VD_ERROR, ENOSPC);
    g_autofree char *p1 = g_build_filename(f->dir, "disk.001", NULL);
    GStatBuf st;
    g_assert_cmpint(g_stat(p1, &st), ==, 0);
    g_assert_cmpuint(st.st_size, ==, sizes[1]);
    g_autoptr(VdInfo) info = vd_info_describe(img);
    g_assert_cmpuint(vd_info_get(info, "segments")->u64, ==, 5);
    g_assert_cmpstr(vd_info_get(info, "split_scheme")->str, ==, "numeric from 0 (3 digits)");
}

static void test_alpha_and_one(Fixture *f, gconstpointer data)
{
    /* 30 alphabetic segments: past .az into .ba. */
    uint64_t total = 0;
    for (int i = 0; i < 30; i++) {
        g_autofree char *n = g_strdup_printf("x.%c%c", 'a' + i / 26, 'a' + i % 26);
        segment(f, n, total, 1000 + i, false);
        total += 1000 + i;
    }
    g_autofree char *p = g_build_filename(f->dir, "x.aa", NULL);
    peek_assert_like_open(f->ctx, p);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = vd_image_open(f->ctx, p, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(img), ==, total);
    g_autofree uint8_t *buf = g_malloc(total);
    g_assert_true(vd_image_pread(img, buf, total, 0, &err));
    for (uint64_t i = 0; i < total; i++)
        g_assert_cmpuint(buf[i], ==, pat(i));
    /* Numbered from one; a missing segment ends the set. */
    segment(f, "y.001", 0, 5000, false);
    segment(f, "y.002", 5000, 5000, false);
    segment(f, "y.004", 10000, 5000, false);
    g_autofree char *q = g_build_filename(f->dir, "y.001", NULL);
    peek_assert_like_open(f->ctx, q);
    g_autoptr(VdImage) one = vd_image_open(f->ctx, q, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(one), ==, 10000);
    /* Read-only opens refuse writes. */
    g_assert_false(vd_image_pwrite(one, buf, 1, 0, &err));
    g_assert_error(err, VD_ERROR, EROFS);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/split-raw/probe", Fixture, NULL, fixture_setup, test_probe, fixture_teardown);
    g_test_add("/split-raw/read-write", Fixture, NULL, fixture_setup, test_read_write,
               fixture_teardown);
    g_test_add("/split-raw/alpha-and-one", Fixture, NULL, fixture_setup, test_alpha_and_one,
               fixture_teardown);
    return g_test_run();
}
