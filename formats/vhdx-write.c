/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VHDX writes. The first write of a session gives the file new
 * FileWriteGuid and DataWriteGuid values (the headers are updated in
 * place, as the specification wants). Data is written in place into fully
 * or partially present blocks. A block is allocated at the end of the file
 * (1 MiB aligned; the file is extended over the whole block, whose unused
 * parts are holes and read as zeros), its data written and synced, and
 * only then are the BAT entry and, for differencing disks, the sector
 * bitmap bits changed.
 *
 * Those metadata updates are written in place, ordered, never through the
 * log. MS-VHDX asks for the log, but a log entry is live from the moment it
 * is written until the header says the log is empty, and a process killed
 * in between leaves an image that QEMU will not open read-only (qemu-img
 * check, info and convert refuse it until something replays the log): no
 * ordering of log writes closes that window. In place, each step is one
 * page write that changes what that step changes and is synced before the
 * next step: the bitmap pages (whose bits mean nothing while the block is
 * not present, and are only ever set for data already synced), the chunk's
 * sector bitmap entry, then the block's entry. A BAT update changes one
 * 8-byte entry, inside one sector, so even a torn page write leaves the old
 * entry or the new one: the same guarantee qcow2's L2 updates rely on. A
 * kill or crash at any point leaves the old metadata or the new, a leaked
 * block at worst, and a log that is empty. A dirty log found at open (from
 * Hyper-V or QEMU) is still replayed (vhdx-log.c).
 *
 * Every data write is first looked up in the metadata map (s->meta): a BAT
 * entry that points a block at the header region, the log, the BAT, the
 * metadata region or a sector bitmap block is corruption, and the write is
 * refused before it lands (vd_image_guard_write: EIO, the image marked
 * corrupt).
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "formats/vhd-util.h"
#include "formats/vhdx.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

#define MAX_PAGES 24

static bool begin_session(VdImage *img, GError **error)
{
    VhdxState *s = img->opaque;
    if (s->session_started)
        return true;
    vhd_random_guid(s->file_write_guid);
    vhd_random_guid(s->data_write_guid);
    if (!vhdx_write_header(img, error))
        return false;
    s->session_started = true;
    return true;
}

/* Reserve len bytes (1 MiB aligned) at the end of the file. */
static bool grow_file(VdImage *img, uint64_t len, uint64_t *where, GError **error)
{
    VhdxState *s = img->opaque;
    uint64_t start = (s->file_size + VHDX_MiB - 1) / VHDX_MiB * VHDX_MiB;
    uint64_t end;
    if (__builtin_add_overflow(start, len, &end) || end > (UINT64_MAX >> 20 << 20) ||
        end > INT64_MAX) {
        vd_set_error(error, EFBIG, "%s: file would grow too large", img->name);
        return false;
    }
    if (ftruncate(img->fd, (off_t)end) < 0) {
        vd_set_error_errno(error, errno, "%s: extend to %" PRIu64, img->name, end);
        return false;
    }
    __atomic_store_n(&s->file_size, end, __ATOMIC_RELEASE);
    *where = start;
    return true;
}

/* After a sync of everything before it (the data or bitmap the entry
 * will point at), BAT entry idx becomes value: its page rewritten in place,
 * one entry changed. */
static bool set_entry(VdImage *img, uint64_t idx, uint64_t value, GError **error)
{
    VhdxPage page;
    if (!vd_host_fdatasync(img->fd, img->name, error) || !vhdx_bat_page(img, idx, &page, error))
        return false;
    vd_put_le64(page.data + (idx % 512) * 8, value);
    if (!vd_host_pwrite(img->fd, img->name, page.data, VHDX_LOG_SECTOR, page.offset, error))
        return false;
    vhdx_bat_set(img, idx, value);
    return true;
}

static bool allocate_full(VdImage *img, uint64_t block, const uint8_t *buf, uint64_t within,
                          uint64_t n, GError **error)
{
    VhdxState *s = img->opaque;
    uint64_t start;
    return grow_file(img, s->block_size, &start, error) &&
           vd_image_guard_write(img, s->meta, start + within, n, error) &&
           vd_host_pwrite(img->fd, img->name, buf, n, start + within, error) &&
           set_entry(img, vhdx_payload_index(s, block), start | VHDX_PAYLOAD_FULLY_PRESENT, error);
}

/* A write into a differencing disk's block that is not (or only partly)
 * present: data into the block, then bitmap bits and BAT entries. */
static bool write_partial(VdImage *img, uint64_t block, uint64_t entry, const uint8_t *buf,
                          uint64_t within, uint64_t n, GError **error)
{
    VhdxState *s = img->opaque;
    uint64_t bs = s->block_size, lsec = s->logical_sector;
    uint64_t chunk = block / s->chunk_ratio;
    uint64_t sbi = vhdx_sb_index(s, chunk), pi = vhdx_payload_index(s, block);
    uint64_t sbe;
    if (!vhdx_bat_get(img, sbi, &sbe, error))
        return false;
    bool new_sb = VHDX_BAT_STATE(sbe) != VHDX_SB_PRESENT;
    bool new_block = VHDX_BAT_STATE(entry) != VHDX_PAYLOAD_PARTIALLY_PRESENT;
    uint64_t sb_off = VHDX_BAT_OFFSET(sbe), pay_off = VHDX_BAT_OFFSET(entry);
    uint64_t a0 = within / lsec * lsec;
    uint64_t a1 = MIN((within + n + lsec - 1) / lsec * lsec, bs);
    if (!new_sb && !vhdx_check_block(img, sbe, VHDX_SB_BLOCK_SIZE, "sector bitmap", chunk, error))
        return false;
    if (!new_block && (!vd_image_guard_write(img, s->meta, pay_off + a0, a1 - a0, error) ||
                       !vhdx_check_block(img, entry, MIN(bs, s->disk_size - block * bs), "payload",
                                         block, error)))
        return false;
    if (new_sb &&
        (!grow_file(img, VHDX_SB_BLOCK_SIZE, &sb_off, error) ||
         !vd_meta_map_add(s->meta, sb_off, VHDX_SB_BLOCK_SIZE, "sector bitmap block", error)))
        return false;
    if (new_block && !grow_file(img, bs, &pay_off, error))
        return false;

    /* The bitmap pages covering the written sectors. */
    uint64_t base = (block % s->chunk_ratio) * bs / lsec; /* first sector of the block */
    uint64_t k0 = base + a0 / lsec, k1 = base + a1 / lsec - 1;
    /* A new block takes all its bitmap pages, to clear any stale bits. */
    uint64_t kb0 = new_block ? base : k0, kb1 = new_block ? base + bs / lsec - 1 : k1;
    uint64_t p0 = kb0 / 8 / VHDX_LOG_SECTOR, p1 = kb1 / 8 / VHDX_LOG_SECTOR;
    VhdxPage pages[MAX_PAGES];
    size_t np = (size_t)(p1 - p0 + 1);
    if (np > MAX_PAGES) {
        vd_set_error(error, EIO, "%s: internal: write spans too many bitmap pages", img->name);
        return false;
    }
    for (size_t i = 0; i < np; i++) {
        pages[i].offset = sb_off + (p0 + i) * VHDX_LOG_SECTOR;
        if (new_sb)
            memset(pages[i].data, 0, VHDX_LOG_SECTOR);
        else if (!vd_host_pread(img->fd, img->name, pages[i].data, VHDX_LOG_SECTOR, pages[i].offset,
                                false, error))
            return false;
    }
#define BIT_BYTE(k) (&pages[(k) / 8 / VHDX_LOG_SECTOR - p0].data[(k) / 8 % VHDX_LOG_SECTOR])
    if (new_block) {
        /* Blocks cover whole bytes of the bitmap (a multiple of 8 sectors). */
        for (uint64_t k = kb0; k <= kb1; k += 8)
            *BIT_BYTE(k) = 0;
    }

    /* The sector-aligned payload, completing partly written sectors from
     * this file or the parent. */
    g_autofree uint8_t *out = g_malloc(a1 - a0);
    uint64_t edges[2] = {a0, a1 - lsec};
    bool partial[2] = {within > a0, within + n < a1};
    if (edges[0] == edges[1] && partial[0])
        partial[1] = false;
    for (int i = 0; i < 2; i++) {
        if (!partial[i])
            continue;
        uint64_t k = base + edges[i] / lsec;
        bool here = (*BIT_BYTE(k) >> (k % 8)) & 1;
        uint8_t *dst = out + (edges[i] - a0);
        bool ok =
            here ? vd_host_pread(img->fd, img->name, dst, lsec, pay_off + edges[i], true, error)
                 : vd_image_read_backing(img, dst, lsec, block * bs + edges[i], error);
        if (!ok)
            return false;
    }
    memcpy(out + (within - a0), buf, n);
    if ((new_block && !vd_image_guard_write(img, s->meta, pay_off + a0, a1 - a0, error)) ||
        !vd_host_pwrite(img->fd, img->name, out, a1 - a0, pay_off + a0, error))
        return false;

    bool changed = false;
    for (uint64_t k = k0; k <= k1; k++) {
        uint8_t *byte = BIT_BYTE(k);
        if (!((*byte >> (k % 8)) & 1)) {
            *byte |= (uint8_t)(1u << (k % 8));
            changed = true;
        }
    }
#undef BIT_BYTE
    if (!changed && !new_block)
        return true;
    /* In the order the top of this file explains, each step synced first. */
    if (!vd_host_fdatasync(img->fd, img->name, error))
        return false;
    for (size_t i = 0; i < np; i++) {
        if (!vd_host_pwrite(img->fd, img->name, pages[i].data, VHDX_LOG_SECTOR, pages[i].offset,
                            error))
            return false;
    }
    return (!new_sb || set_entry(img, sbi, sb_off | VHDX_SB_PRESENT, error)) &&
           (!new_block || set_entry(img, pi, pay_off | VHDX_PAYLOAD_PARTIALLY_PRESENT, error));
}

bool vhdx_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    VhdxState *s = img->opaque;
    if (!begin_session(img, error))
        return false;
    const uint8_t *p = buf;
    uint64_t bs = s->block_size;
    while (len > 0) {
        uint64_t block = offset / bs, within = offset % bs;
        uint64_t n = MIN(bs - within, len);
        uint64_t e;
        if (!vhdx_bat_get(img, vhdx_payload_index(s, block), &e, error))
            return false;
        unsigned st = VHDX_BAT_STATE(e);
        bool ok;
        if (st == VHDX_PAYLOAD_FULLY_PRESENT) {
            uint64_t host = VHDX_BAT_OFFSET(e) + within;
            ok = vd_image_guard_write(img, s->meta, host, n, error) &&
                 vhdx_check_block(img, e, MIN(bs, s->disk_size - block * bs), "payload", block,
                                  error) &&
                 vd_host_pwrite(img->fd, img->name, p, n, host, error);
        } else if (st == VHDX_PAYLOAD_PARTIALLY_PRESENT ||
                   (st == VHDX_PAYLOAD_NOT_PRESENT && s->has_parent)) {
            if (!s->has_parent) {
                vd_set_error(error, EIO, "%s: block %" PRIu64 " is partially present", img->name,
                             block);
                return false;
            }
            ok = write_partial(img, block, e, p, within, n, error);
        } else if (st == 4) {
            vd_set_error(error, EIO, "%s: block %" PRIu64 " has reserved state 4", img->name,
                         block);
            return false;
        } else if (vd_buffer_is_zero(p, n)) {
            ok = true; /* the block already reads as zeros */
        } else {
            ok = allocate_full(img, block, p, within, n, error);
        }
        if (!ok)
            return false;
        p += n;
        len -= n;
        offset += n;
    }
    return true;
}

bool vhdx_flush(VdImage *img, GError **error)
{
    return vd_host_fdatasync(img->fd, img->name, error);
}

bool vhdx_write_init(VdImage *img, GError **error)
{
    VhdxState *s = img->opaque;
    g_autoptr(VdMetaMap) m = vd_meta_map_new(img->name);
    vd_meta_map_add(m, 0, VHDX_MiB, "header region", NULL);
    vd_meta_map_add(m, s->log_offset, s->log_length, "log", NULL);
    vd_meta_map_add(m, s->bat_offset, s->bat_length, "BAT", NULL);
    vd_meta_map_add(m, s->meta_offset, s->meta_length, "metadata region", NULL);
    guint bitmaps = 0;
    /* One sector bitmap entry per chunk (at most 16384: a chunk covers
     * 2^23 sectors), read once here so that writes only look them up. */
    for (uint64_t c = 0; s->has_parent && c * s->chunk_ratio < s->n_payload; c++) {
        uint64_t idx = vhdx_sb_index(s, c);
        uint8_t raw[8];
        if (idx >= s->n_bat)
            break;
        if (!vd_host_pread(img->fd, img->name, raw, 8, s->bat_offset + idx * 8, false, error))
            return false;
        uint64_t e = vd_le64(raw);
        if (VHDX_BAT_STATE(e) == VHDX_SB_PRESENT) {
            vd_meta_map_add(m, VHDX_BAT_OFFSET(e), VHDX_SB_BLOCK_SIZE, "sector bitmap block", NULL);
            bitmaps++;
        }
    }
    if (!vd_meta_map_seal(m, error))
        return false;
    /* The map merges identical ranges: a bitmap block that is exactly the
     * BAT, or another chunk's bitmap block. */
    if (vd_meta_map_count(m) != 3u + (s->log_length != 0) + bitmaps) {
        vd_set_error(error, EIO,
                     "%s: a sector bitmap block is another chunk's or lies on the BAT, the log "
                     "or the metadata region",
                     img->name);
        return false;
    }
    s->meta = g_steal_pointer(&m);
    return true;
}
