/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "src/vd-error.h"
#include "tests/unit/test-guard.h"

uint8_t *guard_read_host(const char *path, uint64_t off, size_t len)
{
    uint8_t *b = g_malloc0(len);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, b, len, (off_t)off), ==, (ssize_t)len);
    close(fd);
    return b;
}

void guard_expect_refused(VdImage *rw, const char *host_path, uint64_t guest_off, size_t len,
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
