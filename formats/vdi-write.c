/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vdi writes: block allocation, zeroing, growing and flushing. The block
 * layer calls these one at a time per image (VD_CAP_SERIAL_WRITES).
 *
 * Crash safety: a new block's data is written and made durable first, then
 * its block map entry, then the header's allocated-block count. A crash
 * before the map entry leaves an unused data block (reused by the next
 * allocation); a crash between the map entry and the count leaves a count
 * that this driver repairs on the next write. When the map entries lie in
 * the file's first page together with the header (images made by QEMU)
 * entries and count are written in one write.
 */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "formats/vdi.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

#define VDI_IO_CHUNK (1u << 20)

typedef struct {
    uint32_t block;
    uint32_t entry;
    bool is_new_data; /* entry is a freshly allocated data block */
} VdiMapUpdate;

/* Write the header copy [0, header_bytes) back. */
static bool header_write(VdImage *img, VdiState *s, GError **error)
{
    g_autofree uint8_t *copy = NULL;
    g_mutex_lock(&s->meta_lock);
    copy = g_memdup2(s->header, s->header_bytes);
    g_mutex_unlock(&s->meta_lock);
    return vd_host_pwrite(img->fd, img->name, copy, s->header_bytes, 0, error);
}

static void random_uuid(uint8_t u[16])
{
    for (int i = 0; i < 16; i += 4)
        vd_put_le32(u + i, g_random_int());
    u[7] = (uint8_t)((u[7] & 0x0f) | 0x40); /* version 4 (the field is little-endian) */
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
}

/* First modification in this session: a new modification UUID (so that
 * differencing images made from the old state notice), and the allocated
 * count repaired if a crash left it stale. */
static bool session_start(VdImage *img, VdiState *s, GError **error)
{
    if (s->session_started)
        return true;
    g_mutex_lock(&s->meta_lock);
    random_uuid(s->header + VDI_OFF_UUID_MODIFY);
    vd_put_le32(s->header + VDI_OFF_BLOCKS_ALLOCATED, s->allocated);
    g_mutex_unlock(&s->meta_lock);
    if (!header_write(img, s, error))
        return false;
    s->session_started = true;
    s->header_count_stale = false;
    return true;
}

static bool used_get(const VdiState *s, uint32_t i)
{
    return (s->used[i / 8] >> (i % 8)) & 1;
}

static void used_set(VdiState *s, uint32_t i, bool on)
{
    if (on)
        s->used[i / 8] |= (uint8_t)(1u << (i % 8));
    else
        s->used[i / 8] &= (uint8_t) ~(1u << (i % 8));
    if (!on && i < s->free_hint)
        s->free_hint = i;
}

/* The lowest data block index nobody uses. */
static bool alloc_index(VdImage *img, VdiState *s, uint32_t *idx, GError **error)
{
    for (uint32_t i = s->free_hint; i < s->used_capacity; i++) {
        if (s->used[i / 8] == 0xff) {
            i |= 7;
            continue;
        }
        if (!used_get(s, i)) {
            used_set(s, i, true);
            s->free_hint = i + 1;
            *idx = i;
            return true;
        }
    }
    vd_set_error(error, EIO, "%s: no free data block left (block map inconsistent)", img->name);
    return false;
}

/* Make host bytes [pos, pos+len) read as zeros. Nothing to do past the end of the file. */
static bool host_zero(VdImage *img, VdiState *s, uint64_t pos, uint64_t len, bool may_unmap,
                      GError **error)
{
    if (pos >= s->file_end || len == 0)
        return true;
    len = vd_min_u64(len, s->file_end - pos);
    int mode = may_unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                         : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
    if (fallocate(img->fd, mode, (off_t)pos, (off_t)len) == 0)
        return true;
    if (errno != EOPNOTSUPP && errno != EINVAL) {
        vd_set_error_errno(error, errno, "%s: zeroing 0x%" G_GINT64_MODIFIER "x", img->name, pos);
        return false;
    }
    size_t chunk = (size_t)vd_min_u64(len, VDI_IO_CHUNK);
    g_autofree uint8_t *zeros = g_malloc0(chunk);
    while (len > 0) {
        size_t n = (size_t)vd_min_u64(len, chunk);
        if (!vd_host_pwrite(img->fd, img->name, zeros, n, pos, error))
            return false;
        pos += n;
        len -= n;
    }
    return true;
}

/* Bytes [from, to) of a new block at host data offset `data`: the parent's
 * content for a differencing image's free block, zeros otherwise. */
static bool fill_from_below(VdImage *img, VdiState *s, uint64_t block, uint32_t old_entry,
                            uint64_t data, uint64_t from, uint64_t to, GError **error)
{
    if (from >= to)
        return true;
    if (!(s->differencing && old_entry == VDI_BLOCK_FREE && img->backing != NULL))
        return host_zero(img, s, data + from, to - from, true, error);
    g_autofree uint8_t *buf = g_malloc((size_t)vd_min_u64(to - from, VDI_IO_CHUNK));
    uint64_t vbase = block * s->block_size;
    for (uint64_t pos = from; pos < to;) {
        size_t n = (size_t)vd_min_u64(to - pos, VDI_IO_CHUNK);
        if (!vd_image_read_backing(img, buf, n, vbase + pos, error))
            return false;
        bool ok = vd_buffer_is_zero(buf, n)
                      ? host_zero(img, s, data + pos, n, true, error)
                      : vd_host_pwrite(img->fd, img->name, buf, n, data + pos, error);
        if (!ok)
            return false;
        pos += n;
    }
    return true;
}

/* Fill data block idx for virtual block `block`: user bytes (or zeros when
 * buf is NULL) at [in_block, in_block+n), the rest from below. */
static bool fill_block(VdImage *img, VdiState *s, uint64_t block, uint32_t old_entry, uint32_t idx,
                       const uint8_t *buf, uint64_t in_block, uint64_t n, GError **error)
{
    uint64_t slot = s->off_data + (uint64_t)idx * s->slot_size;
    uint64_t data = slot + s->block_extra;
    uint64_t slot_end = slot + s->slot_size;
    uint64_t old_end = s->file_end;
    if (!vd_image_guard_write(img, s->meta, slot, s->slot_size, error))
        return false;
    if (slot_end > s->file_end) {
        if (ftruncate(img->fd, (off_t)slot_end) < 0) {
            vd_set_error_errno(error, errno, "%s: extending to %" G_GUINT64_FORMAT " bytes",
                               img->name, slot_end);
            return false;
        }
        s->file_end = slot_end;
    }
    /* A reused slot inside the old file may hold stale bytes. */
    if (slot < old_end && !host_zero(img, s, slot, s->block_extra, true, error))
        return false;
    if (!fill_from_below(img, s, block, old_entry, data, 0, in_block, error) ||
        !fill_from_below(img, s, block, old_entry, data, in_block + n, s->block_size, error))
        return false;
    if (buf == NULL)
        return host_zero(img, s, data + in_block, n, true, error);
    return vd_host_pwrite(img->fd, img->name, buf, n, data + in_block, error);
}

/* Publish new block map entries: on disk (after the data is durable), then
 * the header's count, then in memory. */
static bool commit_updates(VdImage *img, VdiState *s, GArray *updates, GError **error)
{
    if (updates->len == 0)
        return true;
    uint32_t new_data = 0, lo = UINT32_MAX, hi = 0;
    for (guint i = 0; i < updates->len; i++) {
        VdiMapUpdate *u = &g_array_index(updates, VdiMapUpdate, i);
        new_data += u->is_new_data;
        lo = MIN(lo, u->block);
        hi = MAX(hi, u->block);
    }
    if (new_data > 0 && !vd_host_fdatasync(img->fd, img->name, error))
        return false;

    /* The entries [lo, hi] as they will be on disk. */
    size_t span = (size_t)(hi - lo + 1) * 4;
    g_autofree uint8_t *ents = g_malloc(span);
    for (uint32_t b = lo; b <= hi; b++)
        vd_put_le32(ents + (size_t)(b - lo) * 4, s->bmap[b]);
    for (guint i = 0; i < updates->len; i++) {
        VdiMapUpdate *u = &g_array_index(updates, VdiMapUpdate, i);
        vd_put_le32(ents + (size_t)(u->block - lo) * 4, u->entry);
    }

    uint32_t count = s->allocated + new_data;
    uint64_t map_end = s->off_blocks + ((uint64_t)hi + 1) * 4;
    bool ok;
    if (new_data > 0 && s->header_bytes == s->off_blocks && map_end <= VDI_HEADER_MAX) {
        /* Header, count and entries in one write within the first page. */
        g_autofree uint8_t *page = g_malloc((size_t)map_end);
        g_mutex_lock(&s->meta_lock);
        vd_put_le32(s->header + VDI_OFF_BLOCKS_ALLOCATED, count);
        memcpy(page, s->header, s->header_bytes);
        g_mutex_unlock(&s->meta_lock);
        for (uint32_t b = 0; b < lo; b++)
            vd_put_le32(page + s->off_blocks + (size_t)b * 4, s->bmap[b]);
        memcpy(page + s->off_blocks + (size_t)lo * 4, ents, span);
        ok = vd_host_pwrite(img->fd, img->name, page, (size_t)map_end, 0, error);
    } else {
        ok =
            vd_host_pwrite(img->fd, img->name, ents, span, s->off_blocks + (uint64_t)lo * 4, error);
        if (ok && new_data > 0) {
            g_mutex_lock(&s->meta_lock);
            vd_put_le32(s->header + VDI_OFF_BLOCKS_ALLOCATED, count);
            g_mutex_unlock(&s->meta_lock);
            /* If this fails the map is ahead of the count: repaired next session. */
            ok = header_write(img, s, error);
        }
    }
    if (!ok) {
        g_mutex_lock(&s->meta_lock);
        vd_put_le32(s->header + VDI_OFF_BLOCKS_ALLOCATED, s->allocated);
        g_mutex_unlock(&s->meta_lock);
        return false;
    }
    for (guint i = 0; i < updates->len; i++) {
        VdiMapUpdate *u = &g_array_index(updates, VdiMapUpdate, i);
        __atomic_store_n(&s->bmap[u->block], u->entry, __ATOMIC_RELEASE);
    }
    g_mutex_lock(&s->meta_lock);
    s->allocated = count;
    g_mutex_unlock(&s->meta_lock);
    return true;
}

/* Give back the data blocks of updates that were never committed. */
static void abandon_updates(VdiState *s, GArray *updates)
{
    for (guint i = 0; i < updates->len; i++) {
        VdiMapUpdate *u = &g_array_index(updates, VdiMapUpdate, i);
        if (u->is_new_data)
            used_set(s, u->entry, false);
    }
    g_array_set_size(updates, 0);
}

/* Write (buf) or zero (buf == NULL) [offset, offset+len). */
static bool vdi_write_range(VdImage *img, const uint8_t *buf, uint64_t offset, uint64_t len,
                            unsigned zero_flags, GError **error)
{
    VdiState *s = img->opaque;
    if (!session_start(img, s, error))
        return false;
    g_autoptr(GArray) updates = g_array_new(FALSE, FALSE, sizeof(VdiMapUpdate));
    bool ok = true;
    while (len > 0 && ok) {
        uint64_t block = offset / s->block_size;
        uint64_t in_block = offset % s->block_size;
        uint64_t n = vd_min_u64(len, s->block_size - in_block);
        uint32_t e = s->bmap[block];
        if (vdi_entry_allocated(e)) {
            uint64_t host = s->off_data + (uint64_t)e * s->slot_size + s->block_extra + in_block;
            ok = vd_image_guard_write(img, s->meta, host, n, error) &&
                 (buf != NULL ? vd_host_pwrite(img->fd, img->name, buf, (size_t)n, host, error)
                              : host_zero(img, s, host, n, zero_flags & VD_ZERO_MAY_UNMAP, error));
        } else if (buf == NULL && (e == VDI_BLOCK_ZERO || !s->differencing)) {
            /* Already reads as zeros. */
        } else if (buf == NULL && n == s->block_size) {
            VdiMapUpdate u = {(uint32_t)block, VDI_BLOCK_ZERO, false};
            g_array_append_val(updates, u);
        } else {
            uint32_t idx;
            ok = alloc_index(img, s, &idx, error);
            if (ok) {
                VdiMapUpdate u = {(uint32_t)block, idx, true};
                g_array_append_val(updates, u);
                ok = fill_block(img, s, block, e, idx, buf, in_block, n, error);
            }
        }
        if (buf != NULL)
            buf += n;
        offset += n;
        len -= n;
    }
    if (ok)
        ok = commit_updates(img, s, updates, error);
    if (!ok)
        abandon_updates(s, updates);
    return ok;
}

bool vdi_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    return vdi_write_range(img, buf, offset, len, 0, error);
}

bool vdi_write_zeroes(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                      GError **error)
{
    return vdi_write_range(img, NULL, offset, length, flags, error);
}

/* Grow: new blocks are free; the block map must have room before the data. */
bool vdi_truncate(VdImage *img, uint64_t new_size, GError **error)
{
    VdiState *s = img->opaque;
    if (s->type == VDI_TYPE_FIXED) {
        vd_set_error(error, ENOTSUP, "%s: a static VDI image cannot be resized", img->name);
        return false;
    }
    uint64_t want = (new_size + s->block_size - 1) / s->block_size;
    uint32_t old_blocks = s->blocks;
    if (want > old_blocks) {
        if (want > VDI_MAX_BLOCKS || s->off_blocks + want * 4 > s->off_data) {
            vd_set_error(error, ENOTSUP,
                         "%s: the block map has no room for %" G_GUINT64_FORMAT
                         " blocks (the data area starts at 0x%" G_GINT64_MODIFIER "x)",
                         img->name, want, s->off_data);
            return false;
        }
        if (!session_start(img, s, error))
            return false;
        size_t add = (size_t)(want - old_blocks);
        g_autofree uint8_t *ents = g_malloc(add * 4);
        memset(ents, 0xff, add * 4);
        if (!vd_host_pwrite(img->fd, img->name, ents, add * 4,
                            s->off_blocks + (uint64_t)old_blocks * 4, error))
            return false;
        uint32_t *map = g_new(uint32_t, want);
        memcpy(map, s->bmap, (size_t)old_blocks * 4);
        memset(map + old_blocks, 0xff, add * 4);
        g_ptr_array_add(s->retired_maps, s->bmap);
        __atomic_store_n(&s->bmap, map, __ATOMIC_RELEASE);
        __atomic_store_n(&s->blocks, (uint32_t)want, __ATOMIC_RELEASE);
        /* Bits past the old capacity were never set; only new bytes need clearing. */
        size_t old_bytes = (size_t)(s->used_capacity + 7) / 8 + 1;
        size_t new_bytes = (size_t)(want + 7) / 8 + 1;
        s->used = g_realloc(s->used, new_bytes);
        memset(s->used + old_bytes, 0, new_bytes - old_bytes);
        s->used_capacity = (uint32_t)want;
    } else if (!session_start(img, s, error)) {
        return false;
    }
    g_mutex_lock(&s->meta_lock);
    vd_put_le64(s->header + VDI_OFF_DISK_SIZE, new_size);
    vd_put_le32(s->header + VDI_OFF_BLOCK_COUNT, s->blocks);
    g_mutex_unlock(&s->meta_lock);
    return header_write(img, s, error);
}

bool vdi_flush(VdImage *img, GError **error)
{
    return vd_host_fdatasync(img->fd, img->name, error);
}
