/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>

#include "src/vd-context.h"
#include "src/vd-error.h"
#include "tests/unit/test-fixtures.h"

static void test_raw_ext(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VdContext) ctx = vd_context_new(NULL, &err);
    g_assert_no_error(err);
    g_assert_true(vd_context_is_raw_name(ctx, "disk.img"));
    g_assert_true(vd_context_is_raw_name(ctx, "DISK.ISO"));
    g_assert_false(vd_context_is_raw_name(ctx, "notes.txt"));
    g_assert_false(vd_context_is_raw_name(ctx, ".img"));
    g_assert_false(vd_context_is_raw_name(ctx, "img"));
    g_assert_true(vd_context_set_raw_extensions(ctx, ".dsk,foo", &err));
    g_assert_true(vd_context_is_raw_name(ctx, "a.dsk"));
    g_assert_false(vd_context_is_raw_name(ctx, "a.img"));
    g_assert_false(vd_context_set_raw_extensions(ctx, "a/b", &err));
    g_assert_error(err, VD_ERROR, EINVAL);
}

static char *write_keyfile(const char *dir, mode_t mode)
{
    char *path = g_build_filename(dir, "keys", NULL);
    g_assert_true(g_file_set_contents(path, "[vm/a.qcow2]\npassphrase=secret\n", -1, NULL));
    g_assert_cmpint(g_chmod(path, mode), ==, 0);
    return path;
}

static void test_keyfile(void)
{
    g_autofree char *dir = tf_tmpdir("vdtest-XXXXXX");
    g_autoptr(GError) err = NULL;
    g_autoptr(VdContext) ctx = vd_context_new(dir, &err);
    g_assert_no_error(err);

    /* Without a key file, an encrypted image names the problem. */
    g_assert_null(vd_context_passphrase(ctx, "vm/a.qcow2", &err));
    g_assert_error(err, VD_ERROR, EACCES);
    g_clear_error(&err);

    g_autofree char *open_path = write_keyfile(dir, 0644);
    g_assert_false(vd_context_load_keyfile(ctx, open_path, &err));
    g_assert_error(err, VD_ERROR, EACCES);
    g_assert_nonnull(strstr(err->message, "readable by group or others"));
    g_clear_error(&err);

    g_assert_cmpint(g_chmod(open_path, 0600), ==, 0);
    g_assert_true(vd_context_load_keyfile(ctx, open_path, &err));
    char *pass = vd_context_passphrase(ctx, "vm/a.qcow2", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(pass, ==, "secret");
    vd_secret_free(pass);
    g_assert_null(vd_context_passphrase(ctx, "vm/b.qcow2", &err));
    g_assert_error(err, VD_ERROR, EACCES);
    g_unlink(open_path);
    g_rmdir(dir);
}

int main(int argc, char *argv[])
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/context/raw-ext", test_raw_ext);
    g_test_add_func("/context/keyfile", test_keyfile);
    return g_test_run();
}
