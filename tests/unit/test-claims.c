/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <fcntl.h>
#include <unistd.h>

#include "src/vd-claims.h"
#include "src/vd-context.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "tests/unit/test-fixtures.h"

static VdImage *open_raw(VdContext **ctx, char **dir)
{
    *dir = tf_tmpdir("vdclaims-XXXXXX");
    g_autofree char *path = g_build_filename(*dir, "disk.raw", NULL);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, 1 << 20), ==, 0);
    close(fd);
    *ctx = vd_context_new(*dir, NULL);
    VdOpenOptions o = {.read_only = true, .format = "raw"};
    VdImage *img = vd_image_open(*ctx, path, &o, NULL);
    g_assert_nonnull(img);
    return img;
}

static void test_claims(void)
{
    VdContext *ctx;
    g_autofree char *dir = NULL;
    VdImage *img = open_raw(&ctx, &dir);
    g_autoptr(GError) err = NULL;
    VdClaims *c = vd_claims_new(img, 200, &err);
    g_assert_no_error(err);
    g_assert_true(vd_claims_take(c, 0, 3));
    g_assert_true(vd_claims_take(c, 63, 2)); /* across a word */
    g_assert_true(vd_claims_is_taken(c, 64));
    g_assert_false(vd_claims_is_taken(c, 65));
    g_assert_false(vd_claims_take(c, 64, 1));  /* twice */
    g_assert_false(vd_claims_take(c, 2, 5));   /* overlaps the first */
    g_assert_true(vd_claims_is_taken(c, 6));   /* still claimed */
    g_assert_false(vd_claims_take(c, 199, 2)); /* past the end */
    g_assert_true(vd_claims_is_taken(c, 199));
    g_assert_false(vd_claims_take(c, UINT64_MAX, 2));
    g_assert_false(vd_claims_is_taken(c, 200));
    g_assert_cmpuint(vd_claims_count_free(c, 0, 200), ==, 200 - 7 - 2 - 1);
    vd_claims_free(c);
    vd_image_unref(img);
    vd_context_unref(ctx);
    g_autofree char *path = g_build_filename(dir, "disk.raw", NULL);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/claims/take", test_claims);
    return g_test_run();
}
