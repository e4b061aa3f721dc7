/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * seSparse extents (ESXi 6.5+ snapshots), read-only. Not publicly
 * specified; the layout below is what ESXi writes and what other readers
 * accept, and anything unexpected is refused rather than guessed.
 *
 * Constant header at sector 0, all fields little-endian u64, sizes and
 * offsets in sectors: 0 magic 0xcafebabe, 8 version 0x0000000200000001,
 * 16 capacity, 24 grain size (8), 32 grain table size (64), 40 flags (0),
 * 48..79 reserved (0), 80 volatile header offset, 88 its size,
 * 96..127 journal header and journal, 128 grain directory offset,
 * 136 its size, 144 grain tables offset, 152 their size, 160 free bitmap,
 * 176 backmap, 192 grains offset, 200 grains size; zero padding.
 * Volatile header: 0 magic 0xcafecafe, 8 free GT number, 16 next
 * transaction, 24 replay-journal flag.
 *
 * Directory entries: 0 (no table) or 0x10000000'xxxxxxxx (table number).
 * Table entries, by top nibble: 0 unallocated (the whole entry 0),
 * 1 unmapped and 2 zero (both read as zeros), 3 allocated, with the grain
 * number in bits 0..47 (high part) and 48..59 (low 12 bits).
 */
#include "config.h"

#include <string.h>

#include "formats/vmdk.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

#define SE_CONST_MAGIC    UINT64_C(0xcafebabe)
#define SE_VOLATILE_MAGIC UINT64_C(0xcafecafe)
#define SE_VERSION        UINT64_C(0x0000000200000001)
#define SE_GRAIN_SECTORS  8
#define SE_GT_SECTORS     64

/* offset + size (sectors) as a byte range inside the file. */
static bool se_region(VdImage *img, VmdkExtent *e, const uint8_t *h, unsigned field,
                      const char *what, uint64_t *off, uint64_t *len, GError **error)
{
    uint64_t o = vd_le64(h + field), n = vd_le64(h + field + 8);
    if (o > INT64_MAX / VMDK_SECTOR || n > INT64_MAX / VMDK_SECTOR ||
        !vd_range_within(o * VMDK_SECTOR, n * VMDK_SECTOR, e->file_size)) {
        vd_set_error(error, EIO, "%s: seSparse %s of %s lies beyond the end of the file", img->name,
                     what, e->path);
        return false;
    }
    *off = o * VMDK_SECTOR;
    *len = n * VMDK_SECTOR;
    return true;
}

bool vmdk_is_sesparse(const uint8_t *head, size_t len)
{
    return len >= 8 && vd_le64(head) == SE_CONST_MAGIC;
}

/* Where the directory and the tables are, from the headers. */
typedef struct {
    uint64_t gd_off, gd_len, gt_len;
} SeRegions;

/* The constant and volatile headers into e (geometry, grain and table
 * bases) and r: every region inside the file, the directory big enough
 * for the capacity. Reads two sectors and allocates nothing. */
static bool se_header(VdImage *img, VmdkExtent *e, SeRegions *r, GError **error)
{
    uint8_t h[VMDK_SECTOR];
    e->kind = VMDK_EXT_SESPARSE;
    if (!vd_host_pread(e->fd, e->path, h, sizeof h, 0, false, error))
        return false;
    if (vd_le64(h) != SE_CONST_MAGIC) {
        vd_set_error(error, EIO, "%s: %s is not a seSparse extent", img->name, e->path);
        return false;
    }
    if (vd_le64(h + 8) != SE_VERSION || vd_le64(h + 24) != SE_GRAIN_SECTORS ||
        vd_le64(h + 32) != SE_GT_SECTORS || vd_le64(h + 40) != 0) {
        vd_set_error(error, ENOTSUP,
                     "%s: unsupported seSparse variant in %s (version 0x%" G_GINT64_MODIFIER
                     "x, grain %" G_GUINT64_FORMAT ", table %" G_GUINT64_FORMAT ")",
                     img->name, e->path, vd_le64(h + 8), vd_le64(h + 24), vd_le64(h + 32));
        return false;
    }
    for (unsigned i = 48; i < 80; i++) {
        if (h[i] != 0) {
            vd_set_error(error, ENOTSUP, "%s: reserved seSparse header fields set in %s", img->name,
                         e->path);
            return false;
        }
    }
    uint64_t voff, vlen, gtoff, groff, grlen;
    if (!se_region(img, e, h, 80, "volatile header", &voff, &vlen, error) ||
        !se_region(img, e, h, 128, "grain directory", &r->gd_off, &r->gd_len, error) ||
        !se_region(img, e, h, 144, "grain tables", &gtoff, &r->gt_len, error) ||
        !se_region(img, e, h, 192, "grains", &groff, &grlen, error))
        return false;
    uint8_t v[VMDK_SECTOR];
    if (vlen < VMDK_SECTOR || !vd_host_pread(e->fd, e->path, v, sizeof v, voff, false, NULL) ||
        vd_le64(v) != SE_VOLATILE_MAGIC) {
        vd_set_error(error, EIO, "%s: bad seSparse volatile header in %s", img->name, e->path);
        return false;
    }
    if (vd_le64(v + 24) != 0) {
        vd_set_error(error, ENOTSUP, "%s: %s has a journal to replay (not supported)", img->name,
                     e->path);
        return false;
    }

    e->gtes = SE_GT_SECTORS * VMDK_SECTOR / 8;
    e->gte_size = 8;
    e->se_grains = groff;
    e->se_gt_base = gtoff;
    e->gd_offset = r->gd_off;
    if (!vmdk_sparse_set_geometry(img, e, vd_le64(h + 16), SE_GRAIN_SECTORS, error))
        return false;
    /* The directory lies inside the file (checked above): a capacity it
     * cannot cover reaches past the end of the extent's metadata. */
    if (r->gd_len / 8 < e->gd_count) {
        vd_set_error(error, EIO,
                     "%s: seSparse capacity of %" G_GUINT64_FORMAT
                     " sectors in %s needs %u grain directory entries, but the directory "
                     "holds %" G_GUINT64_FORMAT,
                     img->name, e->capacity / VMDK_SECTOR, e->path, e->gd_count, r->gd_len / 8);
        return false;
    }
    return true;
}

bool vmdk_sesparse_peek(VdImage *img, VmdkExtent *e, GError **error)
{
    SeRegions r;
    return se_header(img, e, &r, error);
}

bool vmdk_sesparse_open(VdImage *img, VmdkExtent *e, GError **error)
{
    SeRegions r;
    if (!se_header(img, e, &r, error))
        return false;
    size_t bytes = (size_t)e->gd_count * 8;
    g_autofree uint8_t *raw = g_malloc(bytes ? bytes : 1);
    if (!vd_host_pread(e->fd, e->path, raw, bytes, r.gd_off, false, error))
        return false;
    uint64_t gt_bytes = (uint64_t)e->gtes * 8;
    e->gd = g_new0(uint64_t, e->gd_count ? e->gd_count : 1);
    for (uint32_t i = 0; i < e->gd_count; i++) {
        uint64_t x = vd_le64(raw + (size_t)i * 8);
        if (x == 0)
            continue;
        uint64_t n = x & 0xffffffffu;
        if ((x >> 32) != 0x10000000u || !vd_range_within(n * gt_bytes, gt_bytes, r.gt_len)) {
            vd_set_error(error, EIO,
                         "%s: invalid seSparse grain directory entry %u (0x%" G_GINT64_MODIFIER
                         "x) in %s",
                         img->name, i, x, e->path);
            return false;
        }
        e->gd[i] = e->se_gt_base + n * gt_bytes;
    }
    return vmdk_check_layout(img, e, error);
}

bool vmdk_sesparse_gte(VdImage *img, VmdkExtent *e, uint64_t v, VdExtentState *state,
                       uint64_t *host, GError **error)
{
    switch (v >> 60) {
    case 0:
        if (v != 0)
            break;
        *state = VD_EXTENT_UNALLOCATED;
        return true;
    case 1: /* unmapped */
    case 2: /* zero */
        *state = VD_EXTENT_ZERO;
        return true;
    case 3: {
        uint64_t n =
            ((v & UINT64_C(0x0fff000000000000)) >> 48) | ((v & UINT64_C(0x0000ffffffffffff)) << 12);
        uint64_t off;
        if (__builtin_mul_overflow(n, e->grain, &off) ||
            __builtin_add_overflow(off, e->se_grains, host) ||
            *host >= __atomic_load_n(&e->file_size, __ATOMIC_ACQUIRE))
            break;
        *state = VD_EXTENT_DATA;
        return true;
    }
    default:
        break;
    }
    vd_set_error(error, EIO,
                 "%s: invalid seSparse grain table entry 0x%" G_GINT64_MODIFIER "x in %s",
                 img->name, v, e->path);
    return false;
}
