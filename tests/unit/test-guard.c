/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "tests/unit/test-guard.h"

GBytes *guard_file_bytes(const char *path)
{
    char *buf = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(path, &buf, &len, NULL));
    return g_bytes_new_take(buf, len);
}

void guard_patch(const char *path, uint64_t off, const void *bytes, size_t len)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pwrite(fd, bytes, len, (off_t)off), ==, (ssize_t)len);
    close(fd);
}

void guard_patch_le32(const char *path, uint64_t off, uint32_t v)
{
    uint8_t b[4];
    vd_put_le32(b, v);
    guard_patch(path, off, b, 4);
}

void guard_patch_be32(const char *path, uint64_t off, uint32_t v)
{
    uint8_t b[4];
    vd_put_be32(b, v);
    guard_patch(path, off, b, 4);
}

void guard_expect_refused(VdContext *ctx, const char *path, const char *why, const uint64_t *offs,
                          size_t n)
{
    guard_expect_refused_in(ctx, path, path, why, offs, n);
}

void guard_expect_refused_in(VdContext *ctx, const char *path, const char *watch, const char *why,
                             const uint64_t *offs, size_t n)
{
    g_autoptr(GBytes) before = guard_file_bytes(watch);
    g_autoptr(GError) err = NULL;
    VdOpenOptions ro = {.read_only = true}, rw = {.read_only = false};
    {
        /* Unexpected warnings are fatal in a GTest program. */
        g_autoptr(VdImage) img = vd_image_open(ctx, path, &ro, &err);
        g_assert_no_error(err);
    }
    g_test_expect_message(NULL, G_LOG_LEVEL_WARNING, why);
    g_autoptr(VdImage) img = vd_image_open(ctx, path, &rw, &err);
    g_test_assert_expected_messages();
    g_assert_no_error(err);
    g_assert_false(img->read_only);
    uint8_t pat[4096];
    memset(pat, 0xee, sizeof pat);
    for (size_t i = 0; i < n; i++) {
        g_assert_false(vd_image_pwrite(img, pat, sizeof pat, offs[i], &err));
        g_assert_error(err, VD_ERROR, EIO);
        g_test_message("write at 0x%" G_GINT64_MODIFIER "x: %s", offs[i], err->message);
        /* As the filesystem does: neither logged again nor kept over the reason. */
        vd_image_record_error(img, err);
        g_clear_error(&err);
    }
    g_assert_false(vd_image_write_zeroes(img, 0, 4096, 0, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);
    g_autofree char *last = vd_image_last_error(img);
    g_assert_nonnull(last);
    g_assert_true(g_pattern_match_simple(why, last));
    g_assert_null(strstr(last, "image is marked corrupt"));
    uint8_t buf[4096];
    for (size_t i = 0; i < n; i++)
        g_assert_true(vd_image_pread(img, buf, sizeof buf, offs[i], &err));
    g_assert_no_error(err);
    g_autoptr(GBytes) after = guard_file_bytes(watch);
    g_assert_true(g_bytes_equal(before, after));
}

uint8_t *guard_read_host(const char *path, uint64_t off, size_t len)
{
    uint8_t *b = g_malloc0(len);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, b, len, (off_t)off), ==, (ssize_t)len);
    close(fd);
    return b;
}

void guard_expect_write_refused(VdImage *rw, const char *host_path, uint64_t guest_off, size_t len,
                                uint64_t meta_off, size_t meta_len, uint64_t good_off)
{
    g_autofree uint8_t *before = guard_read_host(host_path, meta_off, meta_len);
    g_autofree uint8_t *buf = g_malloc(len);
    memset(buf, 0xee, len);
    g_autoptr(GError) err = NULL;

    g_test_expect_message(NULL, G_LOG_LEVEL_WARNING, "*refused a data write*");
    g_assert_false(vd_image_pwrite(rw, buf, len, guest_off, &err));
    g_test_assert_expected_messages();
    g_assert_error(err, VD_ERROR, EIO);
    g_test_message("refused: %s", err->message);
    g_clear_error(&err);

    /* Nothing reached the metadata, not even after a flush. */
    g_assert_true(vd_image_flush(rw, &err));
    g_autofree uint8_t *after = guard_read_host(host_path, meta_off, meta_len);
    g_assert_cmpmem(after, meta_len, before, meta_len);

    /* The image is marked: a good write fails too, and says why. */
    g_assert_false(vd_image_pwrite(rw, buf, len, good_off, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_assert_nonnull(strstr(err->message, "marked corrupt"));
    g_clear_error(&err);
    g_autofree char *why = vd_image_last_error(rw);
    g_assert_nonnull(why);
    g_assert_nonnull(strstr(why, "refused a data write"));

    /* Reads are untouched. */
    g_assert_true(vd_image_pread(rw, buf, len, good_off, &err));
    g_assert_no_error(err);
}
