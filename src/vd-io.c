/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vd-error.h"
#include "vd-io.h"
#include "vd-source.h"

bool vd_host_pread(int fd, const char *name, void *buf, size_t len, uint64_t offset,
                   bool zero_past_eof, GError **error)
{
    bool ok;
    if (vd_source_pread(fd, name, buf, len, offset, zero_past_eof, &ok, error))
        return ok;
    uint8_t *p = buf;
    while (len > 0) {
        if (offset > INT64_MAX) {
            vd_set_error(error, EIO, "%s: read offset 0x%" G_GINT64_MODIFIER "x is out of range",
                         name, offset);
            return false;
        }
        ssize_t n = pread(fd, p, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            vd_set_error_errno(error, errno, "%s: read at 0x%" G_GINT64_MODIFIER "x", name, offset);
            return false;
        }
        if (n == 0) {
            if (zero_past_eof) {
                memset(p, 0, len);
                return true;
            }
            vd_set_error(error, EIO, "%s: unexpected end of file at 0x%" G_GINT64_MODIFIER "x",
                         name, offset);
            return false;
        }
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return true;
}

bool vd_host_pwrite(int fd, const char *name, const void *buf, size_t len, uint64_t offset,
                    GError **error)
{
    const uint8_t *p = buf;
    while (len > 0) {
        if (offset > INT64_MAX) {
            vd_set_error(error, EIO, "%s: write offset 0x%" G_GINT64_MODIFIER "x is out of range",
                         name, offset);
            return false;
        }
        ssize_t n = pwrite(fd, p, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            vd_set_error_errno(error, errno, "%s: write at 0x%" G_GINT64_MODIFIER "x", name,
                               offset);
            return false;
        }
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return true;
}

bool vd_host_fdatasync(int fd, const char *name, GError **error)
{
    if (fdatasync(fd) < 0) {
        vd_set_error_errno(error, errno, "%s: fdatasync", name);
        return false;
    }
    return true;
}

bool vd_host_size(int fd, const char *name, uint64_t *size, GError **error)
{
    if (vd_source_size(fd, size))
        return true;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        vd_set_error_errno(error, errno, "%s: stat", name);
        return false;
    }
    if (S_ISBLK(st.st_mode)) {
        off_t end = lseek(fd, 0, SEEK_END);
        if (end < 0) {
            vd_set_error_errno(error, errno, "%s: size of block device", name);
            return false;
        }
        *size = (uint64_t)end;
        return true;
    }
    *size = (uint64_t)st.st_size;
    return true;
}

off_t vd_host_lseek(int fd, off_t offset, int whence)
{
    int64_t r;
    if ((whence == SEEK_DATA || whence == SEEK_HOLE) && offset >= 0 &&
        vd_source_seek(fd, (uint64_t)offset, whence, &r))
        return (off_t)r;
    if (whence == SEEK_END) {
        uint64_t size;
        if (vd_source_size(fd, &size))
            return (off_t)size + offset;
    }
    return lseek(fd, offset, whence);
}

bool vd_host_punch_hole(int fd, const char *name, uint64_t offset, uint64_t len, GError **error)
{
    if (len == 0)
        return true;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len) < 0) {
        vd_set_error_errno(error, errno,
                           "%s: punch hole at 0x%" G_GINT64_MODIFIER "x+0x%" G_GINT64_MODIFIER "x",
                           name, offset, len);
        return false;
    }
    return true;
}

bool vd_buffer_is_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    /* Check the head byte-wise, then compare the buffer against itself shifted. */
    if (len == 0)
        return true;
    if (p[0] != 0)
        return false;
    size_t head = len < 16 ? len : 16;
    for (size_t i = 0; i < head; i++) {
        if (p[i] != 0)
            return false;
    }
    return len <= 16 || memcmp(p, p + 16, len - 16) == 0;
}
