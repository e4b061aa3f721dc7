/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include "vd-dispatch.h"
#include "vd-error.h"

static gint trace;

void vd_dispatch_set_trace(bool on)
{
    g_atomic_int_set(&trace, on);
}

static const char *const state_names[] = {"data", "data-decode", "zero", "unallocated"};

bool vd_drv_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                         VdExtent *ext, GError **error)
{
    *ext = (VdExtent){.fd = -1};
    if (!img->driver->block_status(img, offset, length, flags, ext, error))
        return false;
    bool ok = ext->length > 0 && ext->length <= length &&
              (unsigned)ext->state <= VD_EXTENT_UNALLOCATED &&
              (ext->state != VD_EXTENT_DATA || ext->fd >= 0) &&
              (ext->state != VD_EXTENT_DATA_DECODE || img->driver->pread != NULL);
    if (G_UNLIKELY(g_atomic_int_get(&trace)))
        g_debug("%s: %s block_status 0x%" G_GINT64_MODIFIER "x+0x%" G_GINT64_MODIFIER
                "x -> %s 0x%" G_GINT64_MODIFIER "x%s",
                img->name, img->driver->name, offset, length,
                (unsigned)ext->state <= VD_EXTENT_UNALLOCATED ? state_names[ext->state] : "?",
                ext->length, ok ? "" : " (invalid)");
    if (!ok) {
        vd_set_error(error, EIO,
                     "%s: invalid block status at 0x%" G_GINT64_MODIFIER "x (a %s driver bug, or "
                     "corruption)",
                     img->name, offset, img->driver->name);
        return false;
    }
    return true;
}

bool vd_drv_pread(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error)
{
    if (G_UNLIKELY(g_atomic_int_get(&trace)))
        g_debug("%s: %s pread 0x%" G_GINT64_MODIFIER "x+0x%zx", img->name, img->driver->name,
                offset, len);
    return img->driver->pread(img, buf, len, offset, error);
}

bool vd_drv_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    if (G_UNLIKELY(g_atomic_int_get(&trace)))
        g_debug("%s: %s pwrite 0x%" G_GINT64_MODIFIER "x+0x%zx", img->name, img->driver->name,
                offset, len);
    return img->driver->pwrite(img, buf, len, offset, error);
}

int vd_drv_pwrite_fast(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    int r = img->driver->pwrite_fast(img, buf, len, offset, error);
    if (G_UNLIKELY(g_atomic_int_get(&trace)))
        g_debug("%s: %s pwrite_fast 0x%" G_GINT64_MODIFIER "x+0x%zx -> %s", img->name,
                img->driver->name, offset, len,
                r == VD_FAST_DONE   ? "done"
                : r == VD_FAST_SLOW ? "slow"
                                    : "error");
    return r;
}

bool vd_drv_write_zeroes(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                         GError **error)
{
    if (G_UNLIKELY(g_atomic_int_get(&trace)))
        g_debug("%s: %s write_zeroes 0x%" G_GINT64_MODIFIER "x+0x%" G_GINT64_MODIFIER "x%s",
                img->name, img->driver->name, offset, length,
                (flags & VD_ZERO_MAY_UNMAP) ? " may-unmap" : "");
    return img->driver->write_zeroes(img, offset, length, flags, error);
}

bool vd_drv_flush(VdImage *img, GError **error)
{
    if (G_UNLIKELY(g_atomic_int_get(&trace)))
        g_debug("%s: %s flush", img->name, img->driver->name);
    return img->driver->flush(img, error);
}
