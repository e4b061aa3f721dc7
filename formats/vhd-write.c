/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VHD writes. Fixed disks are written in place. Dynamic and differencing
 * disks allocate a block where the end footer is, in an order that leaves
 * a valid image after a crash at any point:
 *
 *   1. the footer is written again after the new block's place (the file
 *      now ends with a valid footer; the old one becomes dead space), sync;
 *   2. the block's sector bitmap and the written data go in, sync;
 *   3. the BAT entry is written (synced by the next allocation or flush).
 *
 * A crash before 3 leaks the space; nothing ever points at unwritten data.
 * Like QEMU, a dynamic disk's new block gets a full bitmap (the rest of
 * the block is a hole in the host file and reads as zeros); a differencing
 * disk's bitmap marks only the sectors written, so the rest still comes
 * from the parent.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "formats/vhd.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

/* The sector-aligned cover of [within, within + n) in one block, with the
 * partial sectors at either end completed from what they read as now. */
static uint8_t *aligned_payload(VdImage *img, uint32_t idx, uint64_t host, const uint8_t *bits,
                                uint32_t bits_first, const uint8_t *buf, uint64_t within,
                                uint64_t n, uint64_t *a0_out, uint64_t *a1_out, GError **error)
{
    VhdState *s = img->opaque;
    uint64_t a0 = within / VHD_SECTOR * VHD_SECTOR;
    uint64_t a1 = (within + n + VHD_SECTOR - 1) / VHD_SECTOR * VHD_SECTOR;
    a1 = vd_min_u64(a1, s->block_size);
    g_autofree uint8_t *out = g_malloc(a1 - a0);
    uint64_t block_start = (uint64_t)idx * s->block_size;
    /* Head and tail sectors the write only partly covers. */
    uint64_t edges[2] = {a0, a1 - VHD_SECTOR};
    bool partial[2] = {within > a0, within + n < a1};
    if (edges[1] == edges[0] && partial[0])
        partial[1] = false; /* one sector, completed once */
    for (int e = 0; e < 2; e++) {
        if (!partial[e])
            continue;
        uint64_t sec = edges[e];
        uint32_t k = (uint32_t)(sec / VHD_SECTOR);
        bool here = bits == NULL || ((bits[k / 8 - bits_first / 8] >> (7 - k % 8)) & 1);
        bool ok;
        if (host != 0 && here)
            ok = vd_host_pread(img->fd, img->name, out + (sec - a0), VHD_SECTOR,
                               host + s->bitmap_size + sec, true, error);
        else if (s->disk_type == VHD_TYPE_DIFFERENCING)
            ok = vd_image_read_backing(img, out + (sec - a0), VHD_SECTOR, block_start + sec, error);
        else
            ok = (memset(out + (sec - a0), 0, VHD_SECTOR), true);
        if (!ok)
            return NULL;
    }
    memcpy(out + (within - a0), buf, n);
    *a0_out = a0;
    *a1_out = a1;
    return g_steal_pointer(&out);
}

static bool write_footer_at(VdImage *img, uint64_t off, GError **error)
{
    VhdState *s = img->opaque;
    return vd_host_pwrite(img->fd, img->name, s->footer, VHD_FOOTER_SIZE, off, error);
}

/* The map holds the footer at off (and not some other structure there). */
static bool footer_in_map(VhdState *s, uint64_t off)
{
    VdMetaRange hit;
    return vd_meta_map_find(s->meta, off, VHD_FOOTER_SIZE, &hit) && hit.start == off &&
           hit.end == off + VHD_FOOTER_SIZE && hit.what == vhd_meta_footer;
}

static bool allocate_block(VdImage *img, uint32_t idx, const uint8_t *buf, uint64_t within,
                           uint64_t n, GError **error)
{
    VhdState *s = img->opaque;
    if (!s->can_allocate) {
        vd_set_error(error, EROFS, "%s: cannot allocate blocks (damaged end footer)", img->name);
        return false;
    }
    uint64_t start = s->footer_offset;
    uint64_t new_footer = start + s->bitmap_size + s->block_size;
    if (start / VHD_SECTOR > UINT32_MAX - 1) {
        vd_set_error(error, ENOSPC, "%s: the file is too large for another VHD block", img->name);
        return false;
    }
    bool diff = s->disk_type == VHD_TYPE_DIFFERENCING;
    uint64_t a0, a1;
    g_autofree uint8_t *payload =
        aligned_payload(img, idx, 0, NULL, 0, buf, within, n, &a0, &a1, error);
    if (payload == NULL)
        return false;
    g_autofree uint8_t *bitmap = g_malloc0(s->bitmap_size);
    if (diff) {
        for (uint64_t k = a0 / VHD_SECTOR; k < a1 / VHD_SECTOR; k++)
            bitmap[k / 8] |= (uint8_t)(0x80 >> (k % 8));
    } else {
        memset(bitmap, 0xff, s->bitmap_size);
    }
    uint8_t entry[4];
    vd_put_be32(entry, (uint32_t)(start / VHD_SECTOR));
    /* The block goes where the footer is, the footer after the block: the
     * footer leaves the map first, so that nothing else may be there. */
    bool moving = footer_in_map(s, start);
    if (moving)
        vd_meta_map_remove(s->meta, start);
    bool ok =
        vd_image_guard_write(img, s->meta, start, new_footer + VHD_FOOTER_SIZE - start, error) &&
        write_footer_at(img, new_footer, error) && vd_host_fdatasync(img->fd, img->name, error) &&
        vd_host_pwrite(img->fd, img->name, bitmap, s->bitmap_size, start, error) &&
        vd_host_pwrite(img->fd, img->name, payload, a1 - a0, start + s->bitmap_size + a0, error) &&
        vd_host_fdatasync(img->fd, img->name, error) &&
        vd_host_pwrite(img->fd, img->name, entry, 4, s->bat_offset + 4ull * idx, error);
    /* The range was free (checked above), and so was the old one. */
    if (moving || ok)
        vd_meta_map_add(s->meta, ok ? new_footer : start, VHD_FOOTER_SIZE, vhd_meta_footer, NULL);
    if (!ok)
        return false;
    __atomic_store_n(&s->footer_offset, new_footer, __ATOMIC_RELEASE);
    __atomic_store_n(&s->bat[idx], (uint32_t)(start / VHD_SECTOR), __ATOMIC_RELEASE);
    return true;
}

/* A write into an allocated block of a differencing disk: the data, then
 * the bits that now say "here". */
static bool write_diff_block(VdImage *img, uint32_t idx, uint64_t host, const uint8_t *buf,
                             uint64_t within, uint64_t n, GError **error)
{
    VhdState *s = img->opaque;
    uint32_t k0 = (uint32_t)(within / VHD_SECTOR);
    uint32_t k1 = (uint32_t)((within + n - 1) / VHD_SECTOR);
    uint32_t b0 = k0 / 8, b1 = k1 / 8;
    size_t nb = b1 - b0 + 1;
    g_autofree uint8_t *bits = g_malloc(nb);
    if (!vd_host_pread(img->fd, img->name, bits, nb, host + b0, false, error))
        return false;
    uint64_t a0, a1;
    g_autofree uint8_t *payload =
        aligned_payload(img, idx, host, bits, b0 * 8, buf, within, n, &a0, &a1, error);
    if (payload == NULL)
        return false;
    /* The bits and the data both belong to this block. */
    if (!vd_image_guard_write(img, s->meta, host + b0, s->bitmap_size + a1 - b0, error))
        return false;
    bool changed = false;
    for (uint32_t k = k0; k <= k1; k++) {
        uint8_t m = (uint8_t)(0x80 >> (k % 8));
        if (!(bits[k / 8 - b0] & m)) {
            bits[k / 8 - b0] |= m;
            changed = true;
        }
    }
    if (!vd_host_pwrite(img->fd, img->name, payload, a1 - a0, host + s->bitmap_size + a0, error))
        return false;
    if (!changed)
        return true;
    return vd_host_fdatasync(img->fd, img->name, error) &&
           vd_host_pwrite(img->fd, img->name, bits, nb, host + b0, error);
}

bool vhd_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    VhdState *s = img->opaque;
    if (!vhd_is_dynamic(s))
        return vd_image_guard_write(img, s->meta, offset, len, error) &&
               vd_host_pwrite(img->fd, img->name, buf, len, offset, error);
    const uint8_t *p = buf;
    while (len > 0) {
        uint32_t idx = (uint32_t)(offset / s->block_size);
        uint64_t within = offset % s->block_size;
        uint64_t n = vd_min_u64(s->block_size - within, len);
        uint64_t host;
        if (!vhd_block_host(img, idx, &host, error))
            return false;
        bool ok = true;
        if (host == 0) {
            /* Zeros into an unallocated block of a dynamic disk: already so. */
            if (s->disk_type == VHD_TYPE_DIFFERENCING || !vd_buffer_is_zero(p, n))
                ok = allocate_block(img, idx, p, within, n, error);
        } else if (s->disk_type == VHD_TYPE_DIFFERENCING) {
            ok = write_diff_block(img, idx, host, p, within, n, error);
        } else {
            uint64_t at = host + s->bitmap_size + within;
            ok = vd_image_guard_write(img, s->meta, at, n, error) &&
                 vd_host_pwrite(img->fd, img->name, p, n, at, error);
        }
        if (!ok)
            return false;
        p += n;
        len -= n;
        offset += n;
    }
    return true;
}

bool vhd_flush(VdImage *img, GError **error)
{
    return vd_host_fdatasync(img->fd, img->name, error);
}
