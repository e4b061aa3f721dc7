/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The VHDX BAT: payload entries interleaved with one sector bitmap entry
 * per chunk, cached in 64 KiB pieces; block status from the payload
 * states and, for partially present blocks of differencing disks, from
 * the sector bitmap (bit n of the chunk's bitmap, least significant bit
 * first, is logical sector n of the chunk).
 *
 * States as read: FULLY_PRESENT is data in this file; PARTIALLY_PRESENT
 * (differencing only) is data where the bitmap bit is set and the parent
 * elsewhere; NOT_PRESENT is the parent in a differencing disk and a hole
 * otherwise; ZERO, UNDEFINED and UNMAPPED read as zeros (the specification
 * lets undefined contents be returned as zeros).
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "formats/vhdx.h"
#include "src/vd-endian.h"
#include "src/vd-bits.h"
#include "src/vd-error.h"
#include "src/vd-io.h"
#include "src/vd-table-cache.h"

#define BAT_CHUNK_BYTES   (64u * 1024u)
#define BAT_CHUNK_ENTRIES (BAT_CHUNK_BYTES / 8)
#define MERGE_MAX_BLOCKS  65536

bool vhdx_bat_geometry(VdImage *img, GError **error)
{
    VhdxState *s = img->opaque;
    s->chunk_ratio = ((uint64_t)1 << 23) * s->logical_sector / s->block_size;
    s->n_payload = s->disk_size / s->block_size + (s->disk_size % s->block_size != 0);
    uint64_t n_sb = s->n_payload / s->chunk_ratio + (s->n_payload % s->chunk_ratio != 0);
    uint64_t need = s->has_parent ? n_sb * (s->chunk_ratio + 1)
                                  : s->n_payload + (s->n_payload - 1) / s->chunk_ratio;
    s->n_bat = s->bat_length / 8;
    if (need > s->n_bat) {
        vd_set_error(error, EIO,
                     "%s: BAT region holds %" PRIu64 " entries, the disk needs %" PRIu64, img->name,
                     s->n_bat, need);
        return false;
    }
    return true;
}

/* A chunk of the BAT at host (the last one may be short: zeros after
 * it), as the replayed log leaves it, in host order. */
static bool bat_chunk_load(void *opaque, uint64_t host, uint8_t *data, GError **error)
{
    VdImage *img = opaque;
    VhdxState *s = img->opaque;
    size_t bytes = (size_t)MIN((uint64_t)BAT_CHUNK_BYTES, s->bat_offset + s->bat_length - host);
    g_autofree uint8_t *raw = g_malloc(bytes);
    if (!vhdx_meta_read(img, raw, bytes, host, error))
        return false;
    uint64_t *chunk = (uint64_t *)data;
    memset(data, 0, BAT_CHUNK_BYTES);
    for (size_t i = 0; i < bytes / 8; i++)
        chunk[i] = vd_le64(raw + 8 * i);
    return true;
}

bool vhdx_bat_init(VdImage *img, GError **error)
{
    VhdxState *s = img->opaque;
    if (!vhdx_bat_geometry(img, error))
        return false;
    s->bat = vd_table_cache_new(BAT_CHUNK_BYTES, img->ctx->metadata_cache_bytes, 4, bat_chunk_load,
                                NULL, img);
    return true;
}

void vhdx_bat_free(VhdxState *s)
{
    g_clear_pointer(&s->bat, vd_table_cache_free);
}

static uint64_t bat_chunk_host(const VhdxState *s, uint64_t idx)
{
    return s->bat_offset + idx / BAT_CHUNK_ENTRIES * BAT_CHUNK_BYTES;
}

bool vhdx_bat_get(VdImage *img, uint64_t idx, uint64_t *entry, GError **error)
{
    VhdxState *s = img->opaque;
    if (idx >= s->n_bat) {
        vd_set_error(error, EIO, "%s: BAT index %" PRIu64 " out of range", img->name, idx);
        return false;
    }
    return vd_table_cache_read(s->bat, bat_chunk_host(s, idx),
                               (size_t)(idx % BAT_CHUNK_ENTRIES) * 8, 8, entry, error);
}

void vhdx_bat_set(VdImage *img, uint64_t idx, uint64_t entry)
{
    VhdxState *s = img->opaque;
    vd_table_cache_updated(s->bat, bat_chunk_host(s, idx), (size_t)(idx % BAT_CHUNK_ENTRIES) * 8,
                           &entry, 8);
}

bool vhdx_bat_page(VdImage *img, uint64_t idx, VhdxPage *page, GError **error)
{
    VhdxState *s = img->opaque;
    uint64_t first = idx / 512 * 512;
    page->offset = s->bat_offset + first * 8;
    for (uint64_t i = 0; i < 512; i++) {
        uint64_t e = 0;
        if (first + i < s->n_bat && !vhdx_bat_get(img, first + i, &e, error))
            return false;
        vd_put_le64(page->data + 8 * i, e);
    }
    return true;
}

bool vhdx_check_block(VdImage *img, uint64_t entry, uint64_t need, const char *what, uint64_t index,
                      GError **error)
{
    VhdxState *s = img->opaque;
    uint64_t off = VHDX_BAT_OFFSET(entry);
    uint64_t limit = MAX(__atomic_load_n(&s->file_size, __ATOMIC_ACQUIRE), s->overlay_end);
    if (off < VHDX_MiB || !vd_range_within(off, need, limit)) {
        vd_set_error(error, EIO, "%s: %s block %" PRIu64 " at 0x%" PRIx64 " lies outside the file",
                     img->name, what, index, off);
        return false;
    }
    return true;
}

/* Data at host: straight from the file, or through vhdx_pread when the
 * in-memory log replay changed it or put it past the end of the file. */
static VdExtentState data_state(const VhdxState *s, uint64_t host, uint64_t len)
{
    if (vhdx_overlay_hits(s, host, len) ||
        host + len > __atomic_load_n(&s->file_size, __ATOMIC_ACQUIRE))
        return VD_EXTENT_DATA_DECODE;
    return VD_EXTENT_DATA;
}

/* How a payload state reads, or -1 for allocated data. */
static int state_class(VhdxState *s, unsigned st)
{
    switch (st) {
    case VHDX_PAYLOAD_NOT_PRESENT:
        return s->has_parent ? VD_EXTENT_UNALLOCATED : VD_EXTENT_ZERO;
    case VHDX_PAYLOAD_UNDEFINED:
    case VHDX_PAYLOAD_ZERO:
    case VHDX_PAYLOAD_UNMAPPED:
    case VHDX_PAYLOAD_UNMAPPED_V095:
        return VD_EXTENT_ZERO;
    default:
        return -1;
    }
}

static bool partial_status(VdImage *img, uint64_t block, uint64_t entry, uint64_t within,
                           uint64_t n, VdExtent *ext, GError **error)
{
    VhdxState *s = img->opaque;
    uint64_t chunk = block / s->chunk_ratio;
    uint64_t sbe;
    if (!vhdx_bat_get(img, vhdx_sb_index(s, chunk), &sbe, error))
        return false;
    if (VHDX_BAT_STATE(sbe) != VHDX_SB_PRESENT) {
        vd_set_error(error, EIO,
                     "%s: block %" PRIu64 " is partially present but chunk %" PRIu64
                     " has no sector bitmap",
                     img->name, block, chunk);
        return false;
    }
    if (!vhdx_check_block(img, sbe, VHDX_SB_BLOCK_SIZE, "sector bitmap", chunk, error) ||
        !vhdx_check_block(img, entry, MIN(s->block_size, s->disk_size - block * s->block_size),
                          "payload", block, error))
        return false;
    uint64_t lsec = s->logical_sector;
    uint64_t first = ((block % s->chunk_ratio) * s->block_size + within) / lsec;
    uint64_t last = ((block % s->chunk_ratio) * s->block_size + within + n - 1) / lsec;
    uint64_t b0 = first / 8, nb = last / 8 - b0 + 1;
    g_autofree uint8_t *bits = g_malloc(nb);
    if (!vhdx_meta_read(img, bits, nb, VHDX_BAT_OFFSET(sbe) + b0, error))
        return false;
    bool set;
    uint64_t k = first + vd_bit_run(bits, first % 8, last - first + 1, true, &set);
    uint64_t run_end = k * lsec - (block % s->chunk_ratio) * s->block_size; /* within block */
    ext->length = MIN(n, run_end - within);
    if (set) {
        uint64_t host = VHDX_BAT_OFFSET(entry) + within;
        ext->state = data_state(s, host, ext->length);
        ext->fd = img->fd;
        ext->host_offset = host;
    } else {
        ext->state = VD_EXTENT_UNALLOCATED;
        ext->fd = -1;
    }
    return true;
}

bool vhdx_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                       VdExtent *ext, GError **error)
{
    VhdxState *s = img->opaque;
    (void)flags;
    uint64_t bs = s->block_size;
    uint64_t block = offset / bs, within = offset % bs;
    uint64_t n = MIN(bs - within, length);
    uint64_t e;
    if (!vhdx_bat_get(img, vhdx_payload_index(s, block), &e, error))
        return false;
    unsigned st = VHDX_BAT_STATE(e);
    if (st == VHDX_PAYLOAD_PARTIALLY_PRESENT) {
        if (!s->has_parent) {
            vd_set_error(error, EIO,
                         "%s: block %" PRIu64 " is partially present in a disk without a parent",
                         img->name, block);
            return false;
        }
        return partial_status(img, block, e, within, n, ext, error);
    }
    if (st == 4) {
        vd_set_error(error, EIO, "%s: block %" PRIu64 " has reserved state 4", img->name, block);
        return false;
    }
    int cls = state_class(s, st);
    uint64_t run = n;
    if (cls >= 0) {
        /* Merge following blocks that read the same way. */
        for (uint64_t b = block + 1;
             run < length && b < s->n_payload && b - block < MERGE_MAX_BLOCKS; b++) {
            uint64_t ne;
            if (!vhdx_bat_get(img, vhdx_payload_index(s, b), &ne, error))
                return false;
            if (state_class(s, VHDX_BAT_STATE(ne)) != cls)
                break;
            run += bs;
        }
        *ext = (VdExtent){(VdExtentState)cls, MIN(run, length), -1, 0};
        return true;
    }
    /* FULLY_PRESENT: data here; merge blocks that follow on in the file. */
    uint64_t need = MIN(bs, s->disk_size - block * bs);
    if (!vhdx_check_block(img, e, need, "payload", block, error))
        return false;
    uint64_t host = VHDX_BAT_OFFSET(e) + within;
    for (uint64_t b = block + 1; run < length && b < s->n_payload && b - block < MERGE_MAX_BLOCKS;
         b++) {
        uint64_t ne;
        if (!vhdx_bat_get(img, vhdx_payload_index(s, b), &ne, error))
            return false;
        if (VHDX_BAT_STATE(ne) != VHDX_PAYLOAD_FULLY_PRESENT ||
            VHDX_BAT_OFFSET(ne) != VHDX_BAT_OFFSET(e) + (b - block) * bs ||
            !vhdx_check_block(img, ne, MIN(bs, s->disk_size - b * bs), "payload", b, NULL))
            break;
        run += bs;
    }
    ext->length = MIN(run, length);
    ext->fd = img->fd;
    ext->host_offset = host;
    ext->state = data_state(s, host, ext->length);
    return true;
}

bool vhdx_pread(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error)
{
    uint8_t *p = buf;
    while (len > 0) {
        VdExtent ext;
        if (!vhdx_block_status(img, offset, len, 0, &ext, error))
            return false;
        size_t n = (size_t)ext.length;
        bool ok = true;
        switch (ext.state) {
        case VD_EXTENT_DATA:
        case VD_EXTENT_DATA_DECODE:
            ok = vhdx_meta_read(img, p, n, ext.host_offset, error);
            break;
        case VD_EXTENT_ZERO:
            memset(p, 0, n);
            break;
        case VD_EXTENT_UNALLOCATED:
            ok = vd_image_read_backing(img, p, n, offset, error);
            break;
        }
        if (!ok)
            return false;
        p += n;
        len -= n;
        offset += n;
    }
    return true;
}

/* vdisk check, as qemu-img check (7.2) reports VHDX: every BAT entry in
 * state 6 (a fully present payload block, or a present sector bitmap,
 * which shares the value) whose block starts or ends past the end of the
 * file, or overlaps the log, the BAT or the metadata region (the later
 * region named first), is a corruption. Blocks are not compared with one
 * another, and there are no leaks. The messages carry the program name,
 * as qemu-img's do. */
bool vhdx_check(VdImage *img, VdCheckReport *report, GError **error)
{
    VhdxState *s = img->opaque;
    uint64_t size;
    if (!vd_host_size(img->fd, img->name, &size, error))
        return false;
    const struct {
        uint64_t start, len;
    } region[] = {
        {s->meta_offset, s->meta_length},
        {s->bat_offset, s->bat_length},
        {s->log_offset, s->log_length},
    };
    for (uint64_t i = 0; i < s->n_bat; i++) {
        uint64_t e;
        if (!vhdx_bat_get(img, i, &e, error))
            return false;
        if (VHDX_BAT_STATE(e) != VHDX_PAYLOAD_FULLY_PRESENT)
            continue;
        uint64_t off = VHDX_BAT_OFFSET(e), end = off + s->block_size;
        char *msg = NULL;
        if (off >= size) {
            msg = g_strdup_printf("vdisk: VHDX BAT entry %" G_GUINT64_FORMAT
                                  " start offset %" G_GUINT64_FORMAT
                                  " points after end of file (%" G_GUINT64_FORMAT
                                  "). Image has probably been truncated.",
                                  i, off, size);
        } else if (end > size) {
            msg = g_strdup_printf("vdisk: VHDX BAT entry %" G_GUINT64_FORMAT
                                  " end offset %" G_GUINT64_FORMAT
                                  " points after end of file (%" G_GUINT64_FORMAT
                                  "). Image has probably been truncated.",
                                  i, end - 1, size);
        } else {
            for (size_t r = 0; r < G_N_ELEMENTS(region) && msg == NULL; r++) {
                uint64_t rs = region[r].start, re = rs + region[r].len;
                if (region[r].len != 0 && off < re && rs < end)
                    msg = g_strdup_printf(
                        "vdisk: VHDX region %" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT
                        " overlaps with region %" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT,
                        off, end, rs, re);
            }
        }
        if (msg != NULL) {
            g_ptr_array_add(report->lines, msg);
            report->corruptions++;
        }
    }
    return true;
}
