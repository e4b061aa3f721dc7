/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The unit tests' shared fixtures (see test-fixtures.h). */
#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>

#include "tests/unit/test-fixtures.h"

char *tf_tmpdir(const char *tmpl)
{
    g_autoptr(GError) err = NULL;
    char *dir = g_dir_make_tmp(tmpl, &err);
    g_assert_no_error(err);
    return dir;
}

void tf_rm_rf(const char *path)
{
    if (g_file_test(path, G_FILE_TEST_IS_DIR) && !g_file_test(path, G_FILE_TEST_IS_SYMLINK)) {
        g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
        const char *n;
        while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
            g_autofree char *p = g_build_filename(path, n, NULL);
            tf_rm_rf(p);
        }
        g_rmdir(path);
    } else {
        g_unlink(path);
    }
}

void tf_run(const char *cmd)
{
    g_autofree char *out = NULL, *err = NULL;
    int status = 0;
    g_assert_true(g_spawn_command_line_sync(cmd, &out, &err, &status, NULL));
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("%s failed: %s%s", cmd, out, err);
}

bool tf_try(const char *cmd)
{
    int status = 0;
    g_assert_true(g_spawn_command_line_sync(cmd, NULL, NULL, &status, NULL));
    return g_spawn_check_wait_status(status, NULL);
}

void tf_write_file(const char *path, const void *data, size_t len)
{
    g_autoptr(GError) err = NULL;
    g_file_set_contents(path, data, (gssize)len, &err);
    g_assert_no_error(err);
}

uint8_t *tf_read_image(VdImage *img)
{
    uint64_t size = vd_image_size(img);
    uint8_t *buf = g_malloc(size);
    g_autoptr(GError) err = NULL;
    g_assert_true(vd_image_pread(img, buf, size, 0, &err));
    g_assert_no_error(err);
    return buf;
}

void tf_assert_same(const uint8_t *got, const uint8_t *want, uint64_t len, const char *what)
{
    for (uint64_t i = 0; i < len; i++) {
        if (got[i] != want[i]) {
            g_test_message("%s%soffset 0x%" G_GINT64_MODIFIER "x: expected 0x%02x, got 0x%02x",
                           what ? what : "", what ? ": " : "", i, want[i], got[i]);
            g_test_fail();
            return;
        }
    }
}

bool tf_container_open(VdContext *ctx, const char *dir, const char *name, const void *data,
                       size_t n, TfContainer *o, GError **error)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);
    tf_write_file(path, data, n);
    o->c = vd_container_probe(data, MIN(n, (size_t)VD_CONTAINER_HEAD), n);
    g_assert_nonnull(o->c);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    return o->c->open(ctx, fd, path, name, &o->ops, &o->opaque, &o->size, error);
}
