/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VMDK writes: flat extents in place; hosted sparse extents by grain
 * allocation at the end of the file. Ordering for crash consistency: a new
 * grain is written (with copy-on-write from the parent for the part not
 * being written) before its grain table entry changes, and table entries
 * change only in the extent's table cache (which never writes a dirty
 * table on its own, nor evicts one); write-back does fdatasync(data), then both
 * grain table copies, then (for new tables) fdatasync and both directory
 * entries. A crash loses unflushed allocations (leaked grains), never
 * points an entry at unwritten space. The first write of a session gives
 * the image a new CID, as VMware and QEMU do, so that children made over
 * the old content notice.
 *
 * Every data write into a sparse extent is first looked up in the
 * extent's metadata map (e->meta): a grain table entry that points a grain
 * at the header, the embedded descriptor, a directory or a grain table is
 * corruption, and the write is refused before it lands
 * (vd_image_guard_write: EIO, the image marked corrupt). That is the
 * last line of defence: the walk of the read-write open (vmdk-check.c)
 * serves an image read-only when an entry shares sectors with anything
 * else or reaches past the end of the file (e->next_alloc, where new
 * grains and tables go), so a guard refusal means the file changed
 * under us.
 */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "formats/vmdk.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

static bool update_cid(VdImage *img, VmdkState *s, GError **error)
{
    if (s->cid_updated)
        return true;
    s->cid_updated = true;
    if (s->desc_text == NULL)
        return true;
    uint32_t cid;
    do {
        cid = g_random_int();
    } while (cid == s->cid || cid >= 0xfffffffeu);
    size_t n;
    g_autofree char *text = vmdk_descriptor_set_cid(s->desc_text, s->desc_len, cid, &n);
    if (text == NULL)
        return true; /* no CID to change */
    if (s->desc_embedded && n > s->desc_space) {
        vd_set_error(error, ENOSPC, "%s: no room for the new CID in the embedded descriptor",
                     img->name);
        return false;
    }
    if (!vd_host_pwrite(img->fd, img->name, text, n, s->desc_offset, error))
        return false;
    if (n < s->desc_len) {
        if (s->desc_embedded) {
            g_autofree uint8_t *zeros = g_malloc0(s->desc_len - n);
            if (!vd_host_pwrite(img->fd, img->name, zeros, s->desc_len - n, s->desc_offset + n,
                                error))
                return false;
        } else if (ftruncate(img->fd, (off_t)n) < 0) {
            vd_set_error_errno(error, errno, "%s: shorten the descriptor", img->name);
            return false;
        }
    }
    g_free(s->desc_text);
    s->desc_text = g_steal_pointer(&text);
    s->desc_len = n;
    s->cid = cid;
    return true;
}

static bool write_flat(VdImage *img, VmdkExtent *e, const uint8_t *buf, size_t n, uint64_t rel,
                       GError **error)
{
    if (!vd_host_pwrite(e->fd, e->path, buf, n, e->flat_offset + rel, error))
        return false;
    e->data_dirty = true;
    return true;
}

static bool refuse(VdImage *img, VmdkExtent *e, GError **error)
{
    vd_set_error(error, EROFS, "%s: extent %s cannot be written", img->name, e->line);
    return false;
}

/* Write within one grain of a hosted sparse extent. */
static bool write_grain(VdImage *img, VmdkExtent *e, const uint8_t *buf, size_t n, uint64_t rel,
                        GError **error)
{
    uint64_t grain = rel / e->grain, in = rel % e->grain, v;
    if (!vmdk_gte_get(e, grain, &v, error))
        return false;
    bool zeroed = v == 1 && e->zero_grain;
    if (v != 0 && !zeroed) {
        uint64_t host = v * VMDK_SECTOR;
        if (!vd_image_guard_write(img, e->meta, host + in, n, error))
            return false;
        if (host < VMDK_SECTOR || host >= e->next_alloc) {
            vd_set_error(error, EIO,
                         "%s: grain %" G_GUINT64_FORMAT " at 0x%" G_GINT64_MODIFIER
                         "x lies outside %s",
                         img->name, grain, host, e->path);
            return false;
        }
        if (!vd_host_pwrite(e->fd, e->path, buf, n, host + in, error))
            return false;
        e->data_dirty = true;
        vmdk_extent_grew(e, host + in + n);
        return true;
    }
    /* Zeros over a grain that already reads as zeros need no space. */
    if ((zeroed || img->backing == NULL) && vd_buffer_is_zero(buf, n))
        return true;

    g_autofree uint8_t *whole = NULL;
    const uint8_t *data = buf;
    if (n < e->grain) {
        whole = g_malloc(e->grain);
        if (zeroed)
            memset(whole, 0, e->grain);
        else if (!vd_image_read_backing(img, whole, e->grain, e->start + grain * e->grain, error))
            return false;
        memcpy(whole + in, buf, n);
        data = whole;
    }
    uint64_t host = e->next_alloc, end;
    if (__builtin_add_overflow(host, e->grain, &end) || end / VMDK_SECTOR > UINT32_MAX) {
        vd_set_error(error, ENOSPC, "%s: %s is full (grain entries address 2 TiB)", img->name,
                     e->path);
        return false;
    }
    if (!vd_image_guard_write(img, e->meta, host, e->grain, error) ||
        !vd_host_pwrite(e->fd, e->path, data, e->grain, host, error))
        return false;
    e->next_alloc = end;
    e->data_dirty = true;
    vmdk_extent_grew(e, end);
    return vmdk_gte_set(img, e, grain, (uint32_t)(host / VMDK_SECTOR), error);
}

static bool write_sparse(VdImage *img, VmdkExtent *e, const uint8_t *buf, size_t n, uint64_t rel,
                         GError **error)
{
    while (n > 0) {
        size_t chunk = (size_t)vd_min_u64(n, e->grain - rel % e->grain);
        if (!write_grain(img, e, buf, chunk, rel, error))
            return false;
        buf += chunk;
        n -= chunk;
        rel += chunk;
    }
    return true;
}

static bool maybe_writeback(VdImage *img, GError **error)
{
    if (!vmdk_gt_writeback_due(img->opaque))
        return true;
    return vmdk_gt_writeback(img, error);
}

static bool zero_flat(VdImage *img, VmdkExtent *e, uint64_t rel, uint64_t n, unsigned flags,
                      GError **error)
{
    uint64_t host = e->flat_offset + rel;
    int mode = (flags & VD_ZERO_MAY_UNMAP) ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                                           : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
    if (host <= INT64_MAX && n <= INT64_MAX && fallocate(e->fd, mode, (off_t)host, (off_t)n) == 0) {
        e->data_dirty = true;
        return true;
    }
    size_t chunk = (size_t)vd_min_u64(n, 1u << 20);
    g_autofree uint8_t *zeros = g_malloc0(chunk);
    while (n > 0) {
        size_t k = (size_t)vd_min_u64(n, chunk);
        if (!write_flat(img, e, zeros, k, rel, error))
            return false;
        rel += k;
        n -= k;
    }
    return true;
}

static bool zero_sparse(VdImage *img, VmdkExtent *e, uint64_t rel, uint64_t n, GError **error)
{
    g_autofree uint8_t *zeros = g_malloc0(e->grain);
    while (n > 0) {
        uint64_t in = rel % e->grain;
        size_t chunk = (size_t)vd_min_u64(n, e->grain - in);
        uint64_t grain = rel / e->grain, v;
        bool whole = in == 0 && (chunk == e->grain || rel + chunk == e->length);
        if (whole && e->zero_grain) {
            /* A zeroed-grain entry; an old grain is leaked, as in QEMU. */
            if (!vmdk_gte_get(e, grain, &v, error))
                return false;
            if (v != 1 && !vmdk_gte_set(img, e, grain, 1, error))
                return false;
        } else if (!write_grain(img, e, zeros, chunk, rel, error)) {
            return false;
        }
        rel += chunk;
        n -= chunk;
    }
    return true;
}

/* One extent's part of a write (buf NULL: zeroing with flags). */
static bool extent_write(VdImage *img, VmdkExtent *e, const uint8_t *buf, uint64_t n, uint64_t rel,
                         unsigned flags, GError **error)
{
    bool sparse = e->kind == VMDK_EXT_SPARSE && !e->compressed;
    if (e->noaccess || (e->kind != VMDK_EXT_FLAT && !sparse && buf != NULL))
        return refuse(img, e, error);
    if (buf == NULL) {
        if (e->kind == VMDK_EXT_ZERO)
            return true;
        if (e->kind == VMDK_EXT_FLAT)
            return zero_flat(img, e, rel, n, flags, error);
        return sparse ? zero_sparse(img, e, rel, n, error) : refuse(img, e, error);
    }
    if (e->kind == VMDK_EXT_FLAT)
        return write_flat(img, e, buf, (size_t)n, rel, error);
    return write_sparse(img, e, buf, (size_t)n, rel, error);
}

static bool write_range(VdImage *img, const uint8_t *buf, uint64_t len, uint64_t offset,
                        unsigned flags, GError **error)
{
    VmdkState *s = img->opaque;
    if (!update_cid(img, s, error))
        return false;
    while (len > 0) {
        VmdkExtent *e = vmdk_find_extent(s, offset);
        if (e == NULL) {
            vd_set_error(error, ENOSPC, "%s: write past the last extent", img->name);
            return false;
        }
        uint64_t rel = offset - e->start;
        uint64_t n = vd_min_u64(len, e->length - rel);
        if (!extent_write(img, e, buf, n, rel, flags, error))
            return false;
        if (buf != NULL)
            buf += n;
        len -= n;
        offset += n;
    }
    return maybe_writeback(img, error);
}

bool vmdk_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    return write_range(img, buf, len, offset, 0, error);
}

bool vmdk_write_zeroes(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                       GError **error)
{
    return write_range(img, NULL, length, offset, flags, error);
}

bool vmdk_flush(VdImage *img, GError **error)
{
    VmdkState *s = img->opaque;
    if (!vmdk_gt_writeback(img, error))
        return false;
    for (guint i = 0; i < s->extents->len; i++) {
        VmdkExtent *e = g_ptr_array_index(s->extents, i);
        if (e->data_dirty && e->fd != img->fd) {
            if (!vd_host_fdatasync(e->fd, e->path, error))
                return false;
            e->data_dirty = false;
        }
    }
    /* The descriptor (new CID) or the sparse file that is the image. */
    return vd_host_fdatasync(img->fd, img->name, error);
}
