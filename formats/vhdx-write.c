/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VHDX writes. The first write of a session gives the file new
 * FileWriteGuid and DataWriteGuid values (the headers are updated in
 * place, never through the log). Data is written in place into fully or
 * partially present blocks. A block is allocated at the end of the file
 * (1 MiB aligned; the file is extended over the whole block, whose unused
 * parts are holes and read as zeros), its data written and synced, and
 * only then are the BAT entry and, for differencing disks, the sector
 * bitmap bits changed, through the log (vhdx-log.c). A crash leaves either
 * the old metadata or, after replay, the new; never an entry pointing at
 * unwritten data. flush() syncs and marks the log empty again, so that
 * the image is clean for other readers (qemu-img check) afterwards.
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

/* Add (or find) the BAT page holding idx in pages, with idx set to value. */
static bool page_set_entry(VdImage *img, VhdxPage *pages, size_t *n, uint64_t idx, uint64_t value,
                           GError **error)
{
    VhdxState *s = img->opaque;
    uint64_t off = s->bat_offset + idx / 512 * 512 * 8;
    VhdxPage *pg = NULL;
    for (size_t i = 0; i < *n && pg == NULL; i++) {
        if (pages[i].offset == off)
            pg = &pages[i];
    }
    if (pg == NULL) {
        pg = &pages[(*n)++];
        if (!vhdx_bat_page(img, idx, pg, error))
            return false;
    }
    vd_put_le64(pg->data + (idx % 512) * 8, value);
    return true;
}

static bool allocate_full(VdImage *img, uint64_t block, const uint8_t *buf, uint64_t within,
                          uint64_t n, GError **error)
{
    VhdxState *s = img->opaque;
    uint64_t start;
    if (!grow_file(img, s->block_size, &start, error) ||
        !vd_host_pwrite(img->fd, img->name, buf, n, start + within, error) ||
        !vd_host_fdatasync(img->fd, img->name, error))
        return false;
    s->need_sync = false;
    VhdxPage page;
    size_t np = 0;
    uint64_t idx = vhdx_payload_index(s, block);
    uint64_t entry = start | VHDX_PAYLOAD_FULLY_PRESENT;
    if (!page_set_entry(img, &page, &np, idx, entry, error) ||
        !vhdx_log_pages(img, &page, np, error))
        return false;
    vhdx_bat_set(img, idx, entry);
    return true;
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
    if (!new_sb && !vhdx_check_block(img, sbe, VHDX_SB_BLOCK_SIZE, "sector bitmap", chunk, error))
        return false;
    if (!new_block &&
        !vhdx_check_block(img, entry, MIN(bs, s->disk_size - block * bs), "payload", block, error))
        return false;
    uint64_t sb_off = VHDX_BAT_OFFSET(sbe), pay_off = VHDX_BAT_OFFSET(entry);
    if (new_sb && !grow_file(img, VHDX_SB_BLOCK_SIZE, &sb_off, error))
        return false;
    if (new_block && !grow_file(img, bs, &pay_off, error))
        return false;

    /* The bitmap pages covering the written sectors. */
    uint64_t a0 = within / lsec * lsec;
    uint64_t a1 = MIN((within + n + lsec - 1) / lsec * lsec, bs);
    uint64_t base = (block % s->chunk_ratio) * bs / lsec; /* first sector of the block */
    uint64_t k0 = base + a0 / lsec, k1 = base + a1 / lsec - 1;
    /* A new block takes all its bitmap pages, to clear any stale bits. */
    uint64_t kb0 = new_block ? base : k0, kb1 = new_block ? base + bs / lsec - 1 : k1;
    uint64_t p0 = kb0 / 8 / VHDX_LOG_SECTOR, p1 = kb1 / 8 / VHDX_LOG_SECTOR;
    VhdxPage pages[MAX_PAGES];
    size_t np = (size_t)(p1 - p0 + 1);
    if (np + 2 > MAX_PAGES) {
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
    if (!vd_host_pwrite(img->fd, img->name, out, a1 - a0, pay_off + a0, error))
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
    if (!changed && !new_block) {
        s->need_sync = true;
        return true;
    }
    if (!vd_host_fdatasync(img->fd, img->name, error))
        return false;
    s->need_sync = false;
    uint64_t new_pe = pay_off | VHDX_PAYLOAD_PARTIALLY_PRESENT;
    uint64_t new_se = sb_off | VHDX_SB_PRESENT;
    if ((new_block && !page_set_entry(img, pages, &np, pi, new_pe, error)) ||
        (new_sb && !page_set_entry(img, pages, &np, sbi, new_se, error)) ||
        !vhdx_log_pages(img, pages, np, error))
        return false;
    if (new_block)
        vhdx_bat_set(img, pi, new_pe);
    if (new_sb)
        vhdx_bat_set(img, sbi, new_se);
    return true;
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
            ok = vhdx_check_block(img, e, MIN(bs, s->disk_size - block * bs), "payload", block,
                                  error) &&
                 vd_host_pwrite(img->fd, img->name, p, n, VHDX_BAT_OFFSET(e) + within, error);
            s->need_sync = true;
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
    VhdxState *s = img->opaque;
    if (!vd_host_fdatasync(img->fd, img->name, error))
        return false;
    s->need_sync = false;
    return vhdx_log_close(img, error);
}
