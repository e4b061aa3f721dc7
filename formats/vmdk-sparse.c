/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Grain-directory extents: hosted sparse ("KDMV", VMware's Virtual Disk
 * Format 1.1 and 5.0, including streamOptimized with compressed grains,
 * markers and a footer) and ESX vmfsSparse ("COWD"). Both map the extent
 * through a grain directory (GD, kept in memory) of grain tables (GT,
 * loaded on demand into the block layer's table cache, one per extent)
 * of grain table entries (GTE: the grain's host sector; 0 unallocated;
 * 1 a zeroed grain where the header's flag says so).
 *
 * KDMV header, little-endian: 0 magic "KDMV", 4 version, 8 flags,
 * 12 capacity (sectors), 20 grainSize (sectors), 28 descriptorOffset,
 * 36 descriptorSize, 44 numGTEsPerGT, 48 rgdOffset, 56 gdOffset,
 * 64 overHead, 72 uncleanShutdown, 73..76 "\n \r\n", 77 compressAlgorithm.
 * COWD header: 0 magic "COWD", 4 version, 8 flags, 12 numSectors,
 * 16 grainSize, 20 gdOffset, 24 numGDEntries, 28 freeSector; 4096
 * entries per grain table.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "formats/vmdk.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-file.h"
#include "src/vd-io.h"

#define GD_AT_END         UINT64_C(0xffffffffffffffff)
#define MAX_GRAIN_SECTORS 32768u     /* 16 MiB; real images use 1..128 */
#define MAX_GD_ENTRIES    (8u << 20) /* 2 TiB of 512-byte COWD grains is 1M */
#define COWD_GTES         4096u
#define MARKER_EOS        0u
#define MARKER_FOOTER     3u
/* Write dirty grain tables back once this many are waiting (or sooner
 * when they crowd a cache). */
#define DIRTY_TABLES_MAX 256u

void vmdk_sparse_desc_location(const uint8_t *head, uint64_t *offset, uint64_t *len)
{
    uint64_t off = vd_le64(head + 28), n = vd_le64(head + 36);
    if (memcmp(head, "KDMV", 4) != 0 || off == 0 || n == 0 || off > INT64_MAX / VMDK_SECTOR ||
        n > VMDK_DESC_MAX / VMDK_SECTOR) {
        *offset = *len = 0;
        return;
    }
    *offset = off * VMDK_SECTOR;
    *len = n * VMDK_SECTOR;
}

void vmdk_extent_free(VmdkExtent *e)
{
    if (e == NULL)
        return;
    if (e->own_fd && e->fd >= 0)
        vd_file_close(e->fd);
    g_free(e->path);
    g_free(e->line);
    vd_table_cache_free(e->gtc);
    g_free(e->gd);
    g_free(e->rgd);
    vd_meta_map_free(e->meta);
    if (e->gd_pending != NULL)
        g_array_unref(e->gd_pending);
    g_free(e);
}

static uint64_t file_size_now(VmdkExtent *e)
{
    return __atomic_load_n(&e->file_size, __ATOMIC_ACQUIRE);
}

void vmdk_extent_grew(VmdkExtent *e, uint64_t end)
{
    /* Only the serialised writer grows it; readers load it atomically. */
    if (end > file_size_now(e))
        __atomic_store_n(&e->file_size, end, __ATOMIC_RELEASE);
}

/* ---- grain directory ---- */

static void layout_add(VdMetaMap *m, guint *added, uint64_t off, uint64_t len, const char *what)
{
    if (len == 0)
        return;
    vd_meta_map_add(m, off, len, what, NULL);
    (*added)++;
}

/* Metadata must not overlap: a grain table that shares space with another
 * one, the directory, the descriptor or the header is corruption (or a
 * loop). The map is kept where writes may come, so that a grain table
 * entry pointing a grain at metadata cannot overwrite it. */
bool vmdk_check_layout(VdImage *img, VmdkExtent *e, GError **error)
{
    uint64_t gt_bytes = (uint64_t)e->gtes * e->gte_size;
    uint64_t gd_bytes = (uint64_t)e->gd_count * e->gte_size;
    g_autofree char *name = e->fd == img->fd ? g_strdup(img->name)
                                             : g_strdup_printf("%s: extent %s", img->name, e->path);
    g_autoptr(VdMetaMap) m = vd_meta_map_new(name);
    guint added = 0;
    layout_add(m, &added, 0, VMDK_SECTOR, "header");
    if (vd_range_within(e->desc_offset, e->desc_len, e->file_size))
        layout_add(m, &added, e->desc_offset, e->desc_len, "embedded descriptor");
    layout_add(m, &added, e->gd_offset, gd_bytes, "grain directory");
    if (e->rgd != NULL)
        layout_add(m, &added, e->rgd_offset, gd_bytes, "redundant grain directory");
    for (uint32_t i = 0; i < e->gd_count; i++) {
        if (e->gd[i] != 0)
            layout_add(m, &added, e->gd[i], gt_bytes, "grain table");
        if (e->rgd != NULL && e->rgd[i] != 0)
            layout_add(m, &added, e->rgd[i], gt_bytes, "redundant grain table");
    }
    if (!vd_meta_map_seal(m, error))
        return false;
    /* Identical ranges are merged: two entries naming one table. */
    if (vd_meta_map_count(m) != added) {
        vd_set_error(error, EIO, "%s: two grain directory entries name the same grain table", name);
        return false;
    }
    if (e->kind == VMDK_EXT_SPARSE && !e->compressed && e->version != 3 && !img->read_only) {
        e->meta = g_steal_pointer(&m);
        return vmdk_check_allocations(img, e, error);
    }
    return true;
}

/* Read a 32-bit directory at off into host byte offsets of grain tables. */
static bool load_gd32(VdImage *img, VmdkExtent *e, uint64_t off, uint64_t **out, GError **error)
{
    size_t bytes = (size_t)e->gd_count * 4;
    if (!vd_image_mem_reserve(img, (uint64_t)e->gd_count * 8, "grain directory", error))
        return false;
    g_autofree uint8_t *raw = g_malloc(bytes);
    if (!vd_host_pread(e->fd, e->path, raw, bytes, off, false, error))
        return false;
    uint64_t gt_bytes = (uint64_t)e->gtes * 4;
    g_autofree uint64_t *gd = g_new0(uint64_t, e->gd_count);
    for (uint32_t i = 0; i < e->gd_count; i++) {
        uint64_t v = vd_le32(raw + (size_t)i * 4);
        if (v == 0)
            continue;
        gd[i] = v * VMDK_SECTOR;
        if (!vd_range_within(gd[i], gt_bytes, e->file_size)) {
            vd_set_error(error, EIO,
                         "%s: grain table %u at 0x%" G_GINT64_MODIFIER
                         "x lies beyond the end of %s",
                         img->name, i, gd[i], e->path);
            return false;
        }
    }
    *out = g_steal_pointer(&gd);
    return true;
}

static bool check_gd_location(VdImage *img, VmdkExtent *e, uint64_t sectors, const char *what,
                              uint64_t *bytes_out, GError **error)
{
    if (sectors == 0 || sectors > INT64_MAX / VMDK_SECTOR ||
        !vd_range_within(sectors * VMDK_SECTOR, (uint64_t)e->gd_count * e->gte_size,
                         e->file_size)) {
        vd_set_error(error, EIO, "%s: %s at sector %" G_GUINT64_FORMAT " lies beyond the end of %s",
                     img->name, what, sectors, e->path);
        return false;
    }
    *bytes_out = sectors * VMDK_SECTOR;
    return true;
}

bool vmdk_sparse_set_geometry(VdImage *img, VmdkExtent *e, uint64_t capacity_sectors,
                              uint64_t grain_sectors, GError **error)
{
    if (grain_sectors == 0 || grain_sectors > MAX_GRAIN_SECTORS) {
        vd_set_error(error, EIO, "%s: invalid grain size of %" G_GUINT64_FORMAT " sectors in %s",
                     img->name, grain_sectors, e->path);
        return false;
    }
    if (capacity_sectors > INT64_MAX / VMDK_SECTOR) {
        vd_set_error(error, EIO, "%s: invalid capacity in %s", img->name, e->path);
        return false;
    }
    e->grain = grain_sectors * VMDK_SECTOR;
    e->capacity = capacity_sectors * VMDK_SECTOR;
    uint64_t per_gt = grain_sectors * e->gtes;
    uint64_t n = capacity_sectors / per_gt + (capacity_sectors % per_gt != 0);
    if (n > MAX_GD_ENTRIES) {
        vd_set_error(error, EIO,
                     "%s: grain directory of %s is too large (%" G_GUINT64_FORMAT " entries)",
                     img->name, e->path, n);
        return false;
    }
    if (e->gd_count == 0)
        e->gd_count = (uint32_t)n;
    return true;
}

/* ---- headers ---- */

/* A COWD header into e: everything but the directory. */
static bool cowd_header(VdImage *img, VmdkExtent *e, const uint8_t *h, GError **error)
{
    e->kind = VMDK_EXT_COWD;
    e->version = vd_le32(h + 4);
    e->flags = vd_le32(h + 8);
    e->gtes = COWD_GTES;
    e->gte_size = 4;
    if (e->version != 1) {
        vd_set_error(error, ENOTSUP, "%s: unsupported COWD version %u in %s", img->name, e->version,
                     e->path);
        return false;
    }
    uint32_t entries = vd_le32(h + 24);
    if (entries > MAX_GD_ENTRIES) {
        vd_set_error(error, EIO, "%s: grain directory of %s is too large", img->name, e->path);
        return false;
    }
    e->gd_count = entries;
    return vmdk_sparse_set_geometry(img, e, vd_le32(h + 12), vd_le32(h + 16), error);
}

static bool open_cowd(VdImage *img, VmdkExtent *e, const uint8_t *h, GError **error)
{
    if (!cowd_header(img, e, h, error))
        return false;
    if (e->gd_count > 0 &&
        !check_gd_location(img, e, vd_le32(h + 20), "grain directory", &e->gd_offset, error))
        return false;
    if (e->gd_count > 0 && !load_gd32(img, e, e->gd_offset, &e->gd, error))
        return false;
    if (e->gd == NULL)
        e->gd = g_new0(uint64_t, 1);
    e->overhead = VMDK_SECTOR * 4;
    return vmdk_check_layout(img, e, error);
}

/* The footer of a streamOptimized extent whose header says "GD at end":
 * footer marker, a copy of the header with the real gdOffset, end-of-stream. */
static bool read_footer(VdImage *img, VmdkExtent *e, uint8_t *hdr, GError **error)
{
    if (e->file_size < 4 * VMDK_SECTOR) {
        vd_set_error(error, EIO, "%s: %s is too short for a stream footer", img->name, e->path);
        return false;
    }
    uint8_t f[3 * VMDK_SECTOR];
    if (!vd_host_pread(e->fd, e->path, f, sizeof f, e->file_size - sizeof f, false, error))
        return false;
    const uint8_t *marker = f, *footer = f + VMDK_SECTOR, *eos = f + 2 * VMDK_SECTOR;
    if (vd_le32(marker + 8) != 0 || vd_le32(marker + 12) != MARKER_FOOTER ||
        memcmp(footer, "KDMV", 4) != 0 || vd_le64(eos) != 0 || vd_le32(eos + 8) != 0 ||
        vd_le32(eos + 12) != MARKER_EOS) {
        vd_set_error(error, EIO, "%s: %s says its grain directory is at the end, but has no footer",
                     img->name, e->path);
        return false;
    }
    if (vd_le64(footer + 56) == GD_AT_END) {
        vd_set_error(error, EIO, "%s: the footer of %s has no grain directory", img->name, e->path);
        return false;
    }
    memcpy(hdr, footer, VMDK_SECTOR);
    return true;
}

/* A KDMV header into e (from the footer where the header says the
 * directory is at the end; h gets the one used): everything but the
 * directories. */
static bool kdmv_header(VdImage *img, VmdkExtent *e, const uint8_t *head, uint8_t *h,
                        GError **error)
{
    memcpy(h, head, VMDK_SECTOR);
    e->kind = VMDK_EXT_SPARSE;
    if (vd_le64(h + 56) == GD_AT_END && !read_footer(img, e, h, error))
        return false;
    e->version = vd_le32(h + 4);
    e->flags = vd_le32(h + 8);
    if (e->version < 1 || e->version > 3) {
        vd_set_error(error, ENOTSUP, "%s: unsupported sparse extent version %u in %s", img->name,
                     e->version, e->path);
        return false;
    }
    if ((e->flags & VMDK_FLAG_NL_DETECT) &&
        (h[73] != '\n' || h[74] != ' ' || h[75] != '\r' || h[76] != '\n')) {
        vd_set_error(error, EIO,
                     "%s: %s has been damaged by a text-mode transfer (line-end check bytes)",
                     img->name, e->path);
        return false;
    }
    uint16_t alg = vd_le16(h + 77);
    if (alg > 1) {
        vd_set_error(error, ENOTSUP, "%s: unsupported compression algorithm %u in %s", img->name,
                     alg, e->path);
        return false;
    }
    e->compressed = alg == 1;
    e->markers = (e->flags & VMDK_FLAG_MARKERS) != 0;
    e->zero_grain = (e->flags & VMDK_FLAG_ZERO_GRAIN) != 0;
    e->gtes = vd_le32(h + 44);
    e->gte_size = 4;
    if (e->gtes == 0 || e->gtes > 512) {
        vd_set_error(error, EIO, "%s: invalid number of grain table entries (%u) in %s", img->name,
                     e->gtes, e->path);
        return false;
    }
    if (!vmdk_sparse_set_geometry(img, e, vd_le64(h + 12), vd_le64(h + 20), error))
        return false;
    vmdk_sparse_desc_location(h, &e->desc_offset, &e->desc_len);
    return true;
}

static bool open_kdmv(VdImage *img, VmdkExtent *e, const uint8_t *head, GError **error)
{
    uint8_t h[VMDK_SECTOR];
    if (!kdmv_header(img, e, head, h, error))
        return false;
    uint64_t overhead = vd_le64(h + 64);
    e->overhead = overhead <= INT64_MAX / VMDK_SECTOR ? overhead * VMDK_SECTOR : 0;
    if (!check_gd_location(img, e, vd_le64(h + 56), "grain directory", &e->gd_offset, error) ||
        !load_gd32(img, e, e->gd_offset, &e->gd, error))
        return false;
    uint64_t rgd = vd_le64(h + 48);
    if ((e->flags & VMDK_FLAG_RGD) && rgd != 0 && !e->compressed) {
        if (!check_gd_location(img, e, rgd, "redundant grain directory", &e->rgd_offset, error) ||
            !load_gd32(img, e, e->rgd_offset, &e->rgd, error))
            return false;
        /* Both directories must agree on which tables exist. */
        for (uint32_t i = 0; i < e->gd_count; i++) {
            if ((e->gd[i] == 0) != (e->rgd[i] == 0)) {
                vd_set_error(error, EIO,
                             "%s: grain directory entry %u of %s disagrees with its redundant copy",
                             img->name, i, e->path);
                return false;
            }
        }
    }
    if (e->gd_count == 0)
        e->gd = g_renew(uint64_t, e->gd, 1);
    return vmdk_check_layout(img, e, error);
}

bool vmdk_sparse_peek(VdImage *img, VmdkExtent *e, const uint8_t *head, GError **error)
{
    uint8_t h[VMDK_SECTOR];
    if (memcmp(head, "COWD", 4) == 0)
        return cowd_header(img, e, head, error);
    if (memcmp(head, "KDMV", 4) == 0)
        return kdmv_header(img, e, head, h, error);
    vd_set_error(error, EIO, "%s: %s is not a sparse extent", img->name, e->path);
    return false;
}

bool vmdk_sparse_open(VdImage *img, VmdkExtent *e, const uint8_t *head, GError **error)
{
    e->next_alloc = (e->file_size + VMDK_SECTOR - 1) / VMDK_SECTOR * VMDK_SECTOR;
    if (memcmp(head, "COWD", 4) == 0)
        return open_cowd(img, e, head, error);
    if (memcmp(head, "KDMV", 4) == 0)
        return open_kdmv(img, e, head, error);
    vd_set_error(error, EIO, "%s: %s is not a sparse extent", img->name, e->path);
    return false;
}

/* ---- grain table caches ---- */

static size_t gt_bytes_of(const VmdkExtent *e)
{
    return (size_t)e->gtes * e->gte_size;
}

static uint64_t gd_entry(const VmdkExtent *e, uint64_t index)
{
    return index < e->gd_count ? __atomic_load_n(&e->gd[index], __ATOMIC_ACQUIRE) : 0;
}

/* The table of directory entry key. Entries are set before their tables
 * are first looked up and never change after (tables do not move). */
static bool gt_load(void *opaque, uint64_t key, uint8_t *data, GError **error)
{
    VmdkExtent *e = opaque;
    uint64_t off = gd_entry(e, key);
    if (off == 0) {
        vd_set_error(error, EIO, "%s: grain directory entry %" G_GUINT64_FORMAT " names no table",
                     e->path, key);
        return false;
    }
    return vd_host_pread(e->fd, e->path, data, gt_bytes_of(e), off, false, error);
}

/* Write back both copies of a table (the serialised writer's flush, after
 * the grains it points at are on disk). */
static bool gt_store(void *opaque, uint64_t key, const uint8_t *data, GError **error)
{
    VmdkExtent *e = opaque;
    size_t size = gt_bytes_of(e);
    for (int copy = 0; copy < (e->rgd != NULL ? 2 : 1); copy++) {
        uint64_t off = copy ? e->rgd[key] : e->gd[key];
        if (!vd_host_pwrite(e->fd, e->path, data, size, off, error))
            return false;
        vmdk_extent_grew(e, off + size);
    }
    e->data_dirty = true;
    return true;
}

void vmdk_gt_caches_new(VdImage *img, VmdkState *s)
{
    uint64_t limit =
        img->ctx->metadata_cache_bytes > 0 ? img->ctx->metadata_cache_bytes : (1u << 20);
    guint n = 0;
    for (guint i = 0; i < s->extents->len; i++)
        n += ((VmdkExtent *)g_ptr_array_index(s->extents, i))->gd != NULL;
    for (guint i = 0; i < s->extents->len; i++) {
        VmdkExtent *e = g_ptr_array_index(s->extents, i);
        if (e->gd != NULL && e->gtc == NULL)
            e->gtc = vd_table_cache_new(gt_bytes_of(e), limit / n, 4, gt_load, gt_store, e);
    }
}

/* ---- lookups ---- */

static bool decode_gte(VdImage *img, VmdkExtent *e, const uint8_t *gt, uint32_t i, uint64_t grain,
                       VdExtentState *state, uint64_t *host, GError **error)
{
    *host = 0;
    if (e->kind == VMDK_EXT_SESPARSE)
        return vmdk_sesparse_gte(img, e, vd_le64(gt + (size_t)i * 8), state, host, error);
    uint64_t v = vd_le32(gt + (size_t)i * 4);
    if (v == 0) {
        *state = VD_EXTENT_UNALLOCATED;
        return true;
    }
    if (v == 1 && e->zero_grain) {
        *state = VD_EXTENT_ZERO;
        return true;
    }
    *host = v * VMDK_SECTOR;
    if (*host >= file_size_now(e)) {
        vd_set_error(error, EIO,
                     "%s: grain %" G_GUINT64_FORMAT " at 0x%" G_GINT64_MODIFIER
                     "x lies beyond the end of %s",
                     img->name, grain, *host, e->path);
        return false;
    }
    *state = e->compressed ? VD_EXTENT_DATA_DECODE : VD_EXTENT_DATA;
    return true;
}

/* Tables scanned per status call at most, to bound its cost. */
#define STATUS_MAX_TABLES 16
/* Entries copied out of the cache at once. */
#define STATUS_RUN 256u

bool vmdk_sparse_status(VdImage *img, VmdkExtent *e, uint64_t rel, uint64_t max, VdExtent *out,
                        GError **error)
{
    uint64_t grain = rel / e->grain;
    uint64_t covered = 0, first = rel % e->grain;
    uint64_t expect = 0, last_gdi = UINT64_MAX;
    bool have = false, ok = true;
    unsigned tables = 0;
    uint8_t run[STATUS_RUN * 8];
    *out = (VdExtent){.fd = e->fd};

    while (covered < max) {
        uint64_t gdi = grain / e->gtes;
        uint32_t gti = (uint32_t)(grain % e->gtes);
        if (gdi != last_gdi && tables >= STATUS_MAX_TABLES)
            break;
        if (gd_entry(e, gdi) == 0) {
            /* No table: the grains it would cover are unallocated. */
            if (have && out->state != VD_EXTENT_UNALLOCATED)
                break;
            have = true;
            out->state = VD_EXTENT_UNALLOCATED;
            uint64_t n = e->gtes - gti;
            covered += n * e->grain - (covered == 0 ? first : 0);
            grain += n;
            continue;
        }
        if (gdi != last_gdi) {
            tables++;
            last_gdi = gdi;
        }
        /* The entries the rest of the run can cover, a bounded copy of them. */
        uint64_t want = (max - covered + (covered == 0 ? first : 0) + e->grain - 1) / e->grain;
        uint32_t n = (uint32_t)vd_min_u64(vd_min_u64(e->gtes - gti, STATUS_RUN), want);
        if (!vd_table_cache_read(e->gtc, gdi, (size_t)gti * e->gte_size, (size_t)n * e->gte_size,
                                 run, error)) {
            ok = false;
            break;
        }
        bool stop = false;
        for (uint32_t j = 0; j < n && covered < max; j++, grain++) {
            VdExtentState st;
            uint64_t host;
            if (!decode_gte(img, e, run, j, grain, &st, &host, error)) {
                ok = false;
                stop = true;
                break;
            }
            if (!have) {
                have = true;
                out->state = st;
                out->host_offset = host + first;
            } else if (st != out->state || (st == VD_EXTENT_DATA && host != expect)) {
                stop = true;
                break;
            }
            expect = host + e->grain;
            covered += e->grain - (covered == 0 ? first : 0);
        }
        if (stop)
            break;
    }
    if (!ok) {
        /* A failure on the first grain is an error; later ones end the run. */
        if (covered == 0)
            return false;
        g_clear_error(error);
    }
    out->length = vd_min_u64(covered, max);
    if (out->state != VD_EXTENT_DATA)
        out->host_offset = 0;
    return true;
}

bool vmdk_gte_get(VmdkExtent *e, uint64_t grain, uint64_t *value, GError **error)
{
    uint64_t gdi = grain / e->gtes;
    uint32_t gti = (uint32_t)(grain % e->gtes);
    uint8_t raw[8];
    *value = 0;
    if (gd_entry(e, gdi) == 0)
        return true;
    if (!vd_table_cache_read(e->gtc, gdi, (size_t)gti * e->gte_size, e->gte_size, raw, error))
        return false;
    *value = e->gte_size == 8 ? vd_le64(raw) : vd_le32(raw);
    return true;
}

/* A new table (and its redundant copy) at the end of the file for
 * directory entry gdi, zeros in the cache, dirty: written back before the
 * directory entries that point to it, which are published (in memory)
 * only once the table is in the cache. */
static VdTable *gt_new(VdImage *img, VmdkExtent *e, uint32_t gdi, GError **error)
{
    uint64_t bytes = ((uint64_t)e->gtes * 4 + VMDK_SECTOR - 1) / VMDK_SECTOR * VMDK_SECTOR;
    uint64_t off = e->next_alloc, roff = 0;
    e->next_alloc += bytes;
    if (e->rgd != NULL) {
        roff = e->next_alloc;
        e->next_alloc += bytes;
    }
    if (e->next_alloc / VMDK_SECTOR > UINT32_MAX) {
        vd_set_error(error, ENOSPC, "%s: %s is full (grain tables address 2 TiB)", img->name,
                     e->path);
        return NULL;
    }
    uint64_t gt_bytes = (uint64_t)e->gtes * 4;
    if (e->meta != NULL && (!vd_meta_map_add(e->meta, off, gt_bytes, "grain table", error) ||
                            (e->rgd != NULL && !vd_meta_map_add(e->meta, roff, gt_bytes,
                                                                "redundant grain table", error))))
        return NULL;
    VdTable *t = vd_table_cache_get_new(e->gtc, gdi, NULL);
    if (e->rgd != NULL)
        __atomic_store_n(&e->rgd[gdi], roff, __ATOMIC_RELEASE);
    __atomic_store_n(&e->gd[gdi], off, __ATOMIC_RELEASE);
    if (e->gd_pending == NULL)
        e->gd_pending = g_array_new(FALSE, FALSE, sizeof(uint32_t));
    g_array_append_val(e->gd_pending, gdi);
    return t;
}

bool vmdk_gte_set(VdImage *img, VmdkExtent *e, uint64_t grain, uint32_t value, GError **error)
{
    uint64_t gdi = grain / e->gtes;
    uint32_t gti = (uint32_t)(grain % e->gtes);
    if (gdi >= e->gd_count) {
        vd_set_error(error, EIO, "%s: grain %" G_GUINT64_FORMAT " is outside the grain directory",
                     img->name, grain);
        return false;
    }
    VdTable *t = e->gd[gdi] == 0 ? gt_new(img, e, (uint32_t)gdi, error)
                                 : vd_table_cache_get(e->gtc, gdi, error);
    if (t == NULL)
        return false;
    uint8_t raw[4];
    vd_put_le32(raw, value);
    vd_table_cache_update(e->gtc, t, (size_t)gti * 4, raw, 4);
    vd_table_cache_put(e->gtc, t);
    return true;
}

bool vmdk_gt_writeback_due(VmdkState *s)
{
    unsigned dirty = 0;
    for (guint i = 0; i < s->extents->len; i++) {
        VmdkExtent *e = g_ptr_array_index(s->extents, i);
        if (e->gtc == NULL)
            continue;
        if (vd_table_cache_pressure(e->gtc))
            return true;
        dirty += vd_table_cache_dirty_count(e->gtc);
    }
    return dirty >= DIRTY_TABLES_MAX;
}

static bool sync_extent(VmdkExtent *e, GError **error)
{
    if (!e->data_dirty)
        return true;
    if (!vd_host_fdatasync(e->fd, e->path, error))
        return false;
    e->data_dirty = false;
    return true;
}

/* The directory entries of new tables (both copies), once the tables are
 * on disk. */
static bool write_gd_pending(VmdkExtent *e, GError **error)
{
    if (e->gd_pending == NULL || e->gd_pending->len == 0)
        return true;
    if (!sync_extent(e, error))
        return false;
    for (guint j = 0; j < e->gd_pending->len; j++) {
        uint32_t idx = g_array_index(e->gd_pending, uint32_t, j);
        uint8_t v[4];
        vd_put_le32(v, (uint32_t)(e->gd[idx] / VMDK_SECTOR));
        if (!vd_host_pwrite(e->fd, e->path, v, 4, e->gd_offset + (uint64_t)idx * 4, error))
            return false;
        if (e->rgd != NULL) {
            vd_put_le32(v, (uint32_t)(e->rgd[idx] / VMDK_SECTOR));
            if (!vd_host_pwrite(e->fd, e->path, v, 4, e->rgd_offset + (uint64_t)idx * 4, error))
                return false;
        }
    }
    g_array_set_size(e->gd_pending, 0);
    e->data_dirty = true;
    return true;
}

bool vmdk_gt_writeback(VdImage *img, GError **error)
{
    VmdkState *s = img->opaque;
    bool due = false;
    for (guint i = 0; i < s->extents->len && !due; i++) {
        VmdkExtent *e = g_ptr_array_index(s->extents, i);
        due = (e->gtc != NULL && vd_table_cache_dirty_count(e->gtc) > 0) ||
              (e->gd_pending != NULL && e->gd_pending->len > 0);
    }
    if (!due)
        return true;

    /* 1. The grains the tables will point to are on disk (only this
     * serialised writer changes tables, so none is dirtied meanwhile). */
    for (guint i = 0; i < s->extents->len; i++) {
        if (!sync_extent(g_ptr_array_index(s->extents, i), error))
            return false;
    }
    /* 2. The tables, both copies (gt_store). */
    for (guint i = 0; i < s->extents->len; i++) {
        VmdkExtent *e = g_ptr_array_index(s->extents, i);
        if (e->gtc != NULL && !vd_table_cache_flush(e->gtc, error))
            return false;
    }
    /* 3. Directory entries of new tables, after an fdatasync of those. */
    for (guint i = 0; i < s->extents->len; i++) {
        if (!write_gd_pending(g_ptr_array_index(s->extents, i), error))
            return false;
    }
    return true;
}
