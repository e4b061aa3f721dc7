/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The block layer through the raw driver: reads, holes, writes, read vectors. */
#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "src/vd-chain.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "tests/unit/test-fixtures.h"

#define MiB (1024 * 1024)

typedef struct {
    char *dir;
    char *path;
    VdContext *ctx;
} Fixture;

/* 4 MiB file: MiB 0 and MiB 2 filled with a pattern, MiB 1 and 3 holes. */
static void fixture_setup(Fixture *f, gconstpointer data)
{
    f->dir = tf_tmpdir("vdtest-XXXXXX");
    f->path = g_build_filename(f->dir, "disk.img", NULL);
    int fd = open(f->path, O_CREAT | O_RDWR, 0644);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, 4 * MiB), ==, 0);
    g_autofree uint8_t *buf = g_malloc(MiB);
    for (int i = 0; i < MiB; i++)
        buf[i] = (uint8_t)(i * 7 + 1);
    g_assert_cmpint(pwrite(fd, buf, MiB, 0), ==, MiB);
    g_assert_cmpint(pwrite(fd, buf, MiB, 2 * MiB), ==, MiB);
    close(fd);
    g_autoptr(GError) err = NULL;
    f->ctx = vd_context_new(f->dir, &err);
    g_assert_no_error(err);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    g_unlink(f->path);
    g_autofree char *txt = g_build_filename(f->dir, "notes.txt", NULL);
    g_unlink(txt);
    g_rmdir(f->dir);
    g_free(f->path);
    g_free(f->dir);
    vd_context_unref(f->ctx);
}

static void test_probe(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    const VdDriver *drv = vd_probe_path(f->ctx, f->path, &err);
    g_assert_no_error(err);
    g_assert_nonnull(drv);
    g_assert_cmpstr(drv->name, ==, "raw");
    g_autofree char *txt = g_build_filename(f->dir, "notes.txt", NULL);
    g_assert_true(g_file_set_contents(txt, "hello", -1, NULL));
    g_assert_null(vd_probe_path(f->ctx, txt, &err));
    g_assert_no_error(err);
    /* Unrecognised content still opens as raw where asked (backing files). */
    VdOpenOptions o = {.read_only = true};
    g_assert_null(vd_image_open(f->ctx, txt, &o, &err));
    g_assert_error(err, VD_ERROR, EMEDIUMTYPE);
    g_clear_error(&err);
    o.raw_fallback = true;
    g_autoptr(VdImage) img = vd_image_open(f->ctx, txt, &o, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(img), ==, 5);
}

static void test_read_and_holes(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    VdOpenOptions o = {.read_only = true};
    g_autoptr(VdImage) img = vd_image_open(f->ctx, f->path, &o, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(img->name, ==, "disk.img");
    g_assert_cmpuint(vd_image_size(img), ==, 4 * MiB);

    g_autofree uint8_t *buf = g_malloc(3 * MiB);
    g_assert_true(vd_image_pread(img, buf, 3 * MiB, MiB / 2, &err));
    g_assert_cmpint(buf[0], ==, (uint8_t)((MiB / 2) * 7 + 1));
    g_assert_cmpint(buf[MiB / 2], ==, 0);
    g_assert_cmpint(buf[MiB / 2 + MiB + 5], ==, (uint8_t)(5 * 7 + 1));

    /* Past the end reads zeros. */
    memset(buf, 0xaa, 100);
    g_assert_true(vd_image_pread(img, buf, 100, 4 * MiB - 50, &err));
    g_assert_cmpint(buf[49], ==, 0);
    g_assert_cmpint(buf[50], ==, 0);

    uint64_t pos;
    g_assert_true(vd_chain_seek(img, 0, SEEK_HOLE, &pos, &err));
    g_assert_cmpuint(pos, ==, MiB);
    g_assert_true(vd_chain_seek(img, MiB, SEEK_DATA, &pos, &err));
    g_assert_cmpuint(pos, ==, 2 * MiB);
    g_assert_true(vd_chain_seek(img, 2 * MiB, SEEK_HOLE, &pos, &err));
    g_assert_cmpuint(pos, ==, 3 * MiB);
    g_assert_false(vd_chain_seek(img, 3 * MiB, SEEK_DATA, &pos, &err));
    g_assert_error(err, VD_ERROR, ENXIO);
    g_clear_error(&err);
    g_assert_false(vd_chain_seek(img, 4 * MiB, SEEK_HOLE, &pos, &err));
    g_assert_error(err, VD_ERROR, ENXIO);
    g_clear_error(&err);

    uint64_t data_bytes;
    g_assert_true(vd_chain_data_bytes(img, &data_bytes, &err));
    g_assert_cmpuint(data_bytes, ==, 2 * MiB);

    /* Read-only images refuse writes with EROFS. */
    g_assert_false(vd_image_pwrite(img, buf, 10, 0, &err));
    g_assert_error(err, VD_ERROR, EROFS);
}

static void test_read_vec(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    VdOpenOptions o = {.read_only = true};
    g_autoptr(VdImage) img = vd_image_open(f->ctx, f->path, &o, &err);
    g_assert_no_error(err);
    VdReadVec vec;
    vd_read_vec_init(&vec, 2 * MiB);
    g_assert_true(vd_chain_read_vec(img, 3 * MiB, 2 * MiB, &vec, &err));
    /* 1 MiB of host file, then 1 MiB past the end as memory zeros. */
    g_assert_cmpuint(vec.segs->len, ==, 2);
    VdIoSeg *s0 = &g_array_index(vec.segs, VdIoSeg, 0);
    VdIoSeg *s1 = &g_array_index(vec.segs, VdIoSeg, 1);
    g_assert_cmpint(s0->fd, ==, img->fd);
    g_assert_cmpuint(s0->pos, ==, 3 * MiB);
    g_assert_cmpuint(s0->len, ==, MiB);
    g_assert_cmpint(s1->fd, ==, -1);
    g_assert_cmpuint(s1->len, ==, MiB);
    g_assert_true(s1->mem[0] == 0 && s1->mem[MiB - 1] == 0);
    vd_read_vec_clear(&vec);
}

static void test_write(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    VdOpenOptions o = {.read_only = false};
    g_autoptr(VdImage) img = vd_image_open(f->ctx, f->path, &o, &err);
    g_assert_no_error(err);
    g_assert_false(img->read_only);
    g_assert_true(vd_image_pwrite(img, "abc", 3, MiB + 1, &err));
    g_assert_true(vd_image_write_zeroes(img, 0, 4096, VD_ZERO_MAY_UNMAP, &err));
    g_assert_true(vd_image_flush(img, &err));
    char buf[4] = {0};
    g_assert_true(vd_image_pread(img, buf, 3, MiB + 1, &err));
    g_assert_cmpstr(buf, ==, "abc");
    uint8_t z[4096];
    g_assert_true(vd_image_pread(img, z, sizeof z, 0, &err));
    g_assert_true(z[0] == 0 && z[4095] == 0);
    g_assert_true(vd_image_truncate(img, 5 * MiB, &err));
    g_assert_cmpuint(vd_image_size(img), ==, 5 * MiB);
    g_assert_true(vd_image_truncate(img, 4 * MiB, &err));
    g_assert_no_error(err);
    /* Growing writes extend a raw file. */
    g_assert_true(vd_image_pwrite(img, "xyz", 3, 4 * MiB, &err));
    g_assert_cmpuint(vd_image_size(img), ==, 4 * MiB + 3);
}

static void test_info(Fixture *f, gconstpointer data)
{
    g_autoptr(VdInfo) info = vd_info_new();
    vd_info_add_u64(info, "cluster_size", 65536);
    vd_info_add_str(info, "name", "a\"b");
    vd_info_add_bool(info, "dirty", false);
    vd_info_add_list_item(info, "features", "x");
    vd_info_add_list_item(info, "features", "y");
    /* The JSON spelling is vdisk's (tests/unit/test-vdisk-qemu.c). */
    g_assert_cmpuint(info->entries->len, ==, 4);
    g_assert_cmpuint(vd_info_get(info, "cluster_size")->u64, ==, 65536);
    g_assert_cmpstr(vd_info_get(info, "name")->str, ==, "a\"b");
    g_autofree char *l = vd_info_entry_to_string(vd_info_get(info, "features"));
    g_assert_cmpstr(l, ==, "x, y");
}

int main(int argc, char *argv[])
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/raw/probe", Fixture, NULL, fixture_setup, test_probe, fixture_teardown);
    g_test_add("/raw/read-holes", Fixture, NULL, fixture_setup, test_read_and_holes,
               fixture_teardown);
    g_test_add("/raw/read-vec", Fixture, NULL, fixture_setup, test_read_vec, fixture_teardown);
    g_test_add("/raw/write", Fixture, NULL, fixture_setup, test_write, fixture_teardown);
    g_test_add("/info/json", Fixture, NULL, fixture_setup, test_info, fixture_teardown);
    return g_test_run();
}
