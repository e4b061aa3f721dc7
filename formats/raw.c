/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * raw: the image file is the disk. Holes in the host file are holes in the
 * disk (found with the host's SEEK_DATA/SEEK_HOLE only when asked for).
 */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "src/vd-io.h"
#include "src/vd-source.h"

static int raw_probe(const VdProbe *probe)
{
    /* raw has no signature; the block layer picks it by extension or as
     * the fallback for backing files. */
    return VD_PROBE_NO;
}

static bool raw_open(VdImage *img, GError **error)
{
    uint64_t size;
    if (!vd_host_size(img->fd, img->name, &size, error))
        return false;
    img->size = size;
    img->decode_unit = vd_source_unit(img->fd);
    return true;
}

static bool raw_pread(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error)
{
    return vd_host_pread(img->fd, img->name, buf, len, offset, true, error);
}

static void raw_grow_size(VdImage *img, uint64_t end)
{
    uint64_t cur = vd_image_size(img);
    while (end > cur && !__atomic_compare_exchange_n(&img->size, &cur, end, false, __ATOMIC_ACQ_REL,
                                                     __ATOMIC_ACQUIRE)) {
    }
}

static bool raw_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    if (!vd_host_pwrite(img->fd, img->name, buf, len, offset, error))
        return false;
    raw_grow_size(img, offset + len);
    return true;
}

static bool raw_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                             VdExtent *ext, GError **error)
{
    ext->fd = img->fd;
    ext->host_offset = offset;
    ext->state = VD_EXTENT_DATA;
    ext->length = length;
    /* A container that keeps its bytes encoded (a compressed stream, EWF
     * chunks): read through raw_pread, so that the block layer decodes a
     * large read's pieces side by side and reads ahead of sequential ones. */
    uint64_t host;
    if (vd_source_is(img->fd) && vd_source_host_range(img->fd, offset, length, &host) < 0)
        ext->state = VD_EXTENT_DATA_DECODE;
    if (!(flags & VD_STATUS_WANT_ZERO))
        return true;

    off_t data = vd_host_lseek(img->fd, (off_t)offset, SEEK_DATA);
    if (data < 0 && errno == ENXIO) {
        /* Nothing but hole up to the end of the file. */
        ext->state = VD_EXTENT_ZERO;
        return true;
    }
    if (data < 0) {
        /* Host cannot tell (EINVAL on some filesystems): all data. */
        if (errno == EINVAL || errno == ENOTSUP)
            return true;
        vd_set_error_errno(error, errno, "%s: SEEK_DATA at 0x%" G_GINT64_MODIFIER "x", img->name,
                           offset);
        return false;
    }
    if ((uint64_t)data > offset) {
        ext->state = VD_EXTENT_ZERO;
        ext->length = vd_min_u64(length, (uint64_t)data - offset);
        return true;
    }
    off_t hole = vd_host_lseek(img->fd, (off_t)offset, SEEK_HOLE);
    if (hole < 0) {
        vd_set_error_errno(error, errno, "%s: SEEK_HOLE at 0x%" G_GINT64_MODIFIER "x", img->name,
                           offset);
        return false;
    }
    if ((uint64_t)hole > offset)
        ext->length = vd_min_u64(length, (uint64_t)hole - offset);
    return true;
}

static bool raw_flush(VdImage *img, GError **error)
{
    return vd_host_fdatasync(img->fd, img->name, error);
}

static bool raw_write_zeroes(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                             GError **error)
{
    int mode = (flags & VD_ZERO_MAY_UNMAP) ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                                           : FALLOC_FL_ZERO_RANGE;
    uint64_t size = vd_image_size(img);
    /* Punching never extends a file: zero the part past the end instead. */
    if ((flags & VD_ZERO_MAY_UNMAP) && offset + length > size) {
        if (offset < size && fallocate(img->fd, mode, (off_t)offset, (off_t)(size - offset)) < 0)
            goto fallback;
        if (fallocate(img->fd, FALLOC_FL_ZERO_RANGE, (off_t)vd_min_u64(offset, size),
                      (off_t)(offset + length - vd_min_u64(offset, size))) < 0)
            goto fallback;
    } else if (fallocate(img->fd, mode, (off_t)offset, (off_t)length) < 0) {
        goto fallback;
    }
    raw_grow_size(img, offset + length);
    return true;

fallback:
    if (errno != EOPNOTSUPP && errno != ENOTSUP && errno != EINVAL) {
        vd_set_error_errno(error, errno,
                           "%s: zero 0x%" G_GINT64_MODIFIER "x+0x%" G_GINT64_MODIFIER "x",
                           img->name, offset, length);
        return false;
    }
    /* The host filesystem cannot zero ranges: write zeros. */
    size_t chunk = (size_t)vd_min_u64(length, 1u << 20);
    g_autofree uint8_t *zeros = g_malloc0(chunk);
    while (length > 0) {
        size_t n = (size_t)vd_min_u64(length, chunk);
        if (!raw_pwrite(img, zeros, n, offset, error))
            return false;
        offset += n;
        length -= n;
    }
    return true;
}

static bool raw_truncate(VdImage *img, uint64_t new_size, GError **error)
{
    if (ftruncate(img->fd, (off_t)new_size) < 0) {
        vd_set_error_errno(error, errno, "%s: resize to %" G_GUINT64_FORMAT, img->name, new_size);
        return false;
    }
    return true;
}

static void raw_describe(VdImage *img, VdInfo *info)
{
    struct stat st;
    if (fstat(img->fd, &st) == 0)
        vd_info_add_str(info, "host_file_type", "%s",
                        S_ISBLK(st.st_mode) ? "block device" : "file");
}

const VdDriver vd_raw_driver = {
    .name = "raw",
    .description = "raw disk image (the file is the disk)",
    .caps = VD_CAP_WRITE | VD_CAP_GROW_ON_WRITE | VD_CAP_SHRINK,
    .probe = raw_probe,
    .open = raw_open,
    .peek = raw_open, /* keeps no state */
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .block_status = raw_block_status,
    .flush = raw_flush,
    .write_zeroes = raw_write_zeroes,
    .truncate = raw_truncate,
    .describe = raw_describe,
};
