/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Grain-directory extents: hosted sparse ("KDMV", VMware's Virtual Disk
 * Format 1.1 and 5.0, including streamOptimized with compressed grains,
 * markers and a footer) and ESX vmfsSparse ("COWD"). Both map the extent
 * through a grain directory (GD, kept in memory) of grain tables (GT,
 * loaded on demand into a bounded cache) of grain table entries (GTE:
 * the grain's host sector; 0 unallocated; 1 a zeroed grain where the
 * header's flag says so).
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

struct VmdkGt {
    uint64_t key;
    VmdkExtent *e;
    uint32_t index; /* in the grain directory */
    uint8_t *data;  /* as on disk */
    size_t size;
    bool dirty;
    gint64 last_use; /* atomic: the cache's tick when last looked up */
};

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

/* ---- grain table cache ---- */

static void gt_free(VmdkGt *gt)
{
    g_free(gt->data);
    g_free(gt);
}

void vmdk_gt_cache_init(VmdkGtCache *c, uint64_t limit)
{
    vd_brlock_init(&c->lock);
    c->map = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, (GDestroyNotify)gt_free);
    c->limit = limit > 0 ? limit : (1u << 20);
}

void vmdk_gt_cache_clear(VmdkGtCache *c)
{
    if (c->map == NULL)
        return;
    g_clear_pointer(&c->map, g_hash_table_unref);
    vd_brlock_clear(&c->lock);
}

static uint64_t gt_key(const VmdkExtent *e, uint32_t index)
{
    return ((uint64_t)e->index << 32) | index;
}

static gint cmp_last_use(gconstpointer a, gconstpointer b)
{
    const VmdkGt *x = *(VmdkGt *const *)a, *y = *(VmdkGt *const *)b;
    return x->last_use < y->last_use ? -1 : x->last_use > y->last_use;
}

/* Over the limit: evict least recently used clean tables down to 7/8 of
 * it, so that the scan over all tables (thousands: they are 2 KiB) is paid
 * once per many inserts. Write lock held; never keep, the caller is about
 * to use it. */
static void gt_evict_locked(VmdkGtCache *c, const VmdkGt *keep)
{
    if (c->bytes <= c->limit)
        return;
    g_autoptr(GPtrArray) clean = g_ptr_array_new();
    GHashTableIter it;
    gpointer key, value;
    g_hash_table_iter_init(&it, c->map);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        VmdkGt *gt = value;
        if (gt != keep && !gt->dirty)
            g_ptr_array_add(clean, gt);
    }
    g_ptr_array_sort(clean, cmp_last_use);
    uint64_t target = c->limit - c->limit / 8;
    /* When all are dirty, over the limit until the next write-back. */
    for (guint i = 0; i < clean->len && c->bytes > target; i++) {
        VmdkGt *victim = clean->pdata[i];
        c->bytes -= victim->size;
        c->gen++;
        g_hash_table_remove(c->map, &victim->key);
    }
}

static VmdkGt *gt_insert_locked(VmdkGtCache *c, VmdkExtent *e, uint32_t index, uint8_t *data,
                                bool dirty)
{
    VmdkGt *gt = g_new0(VmdkGt, 1);
    gt->key = gt_key(e, index);
    gt->e = e;
    gt->index = index;
    gt->data = data;
    gt->size = (size_t)e->gtes * e->gte_size;
    gt->dirty = dirty;
    gt->last_use = vd_lru_insert_stamp(&c->tick);
    c->dirty += dirty;
    g_hash_table_insert(c->map, &gt->key, gt);
    c->bytes += gt->size;
    gt_evict_locked(c, gt);
    return gt;
}

/* The table of directory entry index (which must be allocated), loaded
 * when missing. Called and returns with c->lock held, for writing when
 * writer, else for reading; drops it while loading: pointers from earlier
 * calls are invalid afterwards. */
static VmdkGt *gt_get_locked(VdImage *img, VmdkExtent *e, uint32_t index, bool writer,
                             GError **error)
{
    VmdkGtCache *c = &((VmdkState *)img->opaque)->gtc;
    uint64_t key = gt_key(e, index);
    for (;;) {
        VmdkGt *gt = g_hash_table_lookup(c->map, &key);
        if (gt != NULL) {
            vd_lru_touch(&gt->last_use, &c->tick);
            return gt;
        }
        /* A directory entry, once set, never changes (tables do not
         * move): the offset stays valid without the lock. */
        uint64_t off = e->gd[index];
        uint64_t gen0 = c->gen;
        size_t size = (size_t)e->gtes * e->gte_size;
        uint8_t *data = g_malloc(size);
        if (writer)
            vd_brlock_wrunlock(&c->lock);
        else
            vd_brlock_rdunlock(&c->lock);
        bool ok = vd_host_pread(e->fd, e->path, data, size, off, false, error);
        vd_brlock_wrlock(&c->lock);
        /* Insert only when nothing left the cache meanwhile: the table may
         * have been loaded, changed, written back and evicted while we
         * read, and then our copy would be stale. */
        if (ok && c->gen == gen0 && g_hash_table_lookup(c->map, &key) == NULL)
            gt_insert_locked(c, e, index, data, false);
        else
            g_free(data);
        if (!writer) {
            vd_brlock_wrunlock(&c->lock);
            vd_brlock_rdlock(&c->lock);
        }
        if (!ok)
            return NULL;
        /* Look again: a reader may (rarely) find it evicted already. */
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

bool vmdk_sparse_status(VdImage *img, VmdkExtent *e, uint64_t rel, uint64_t max, VdExtent *out,
                        GError **error)
{
    VmdkGtCache *c = &((VmdkState *)img->opaque)->gtc;
    uint64_t grain = rel / e->grain;
    uint64_t covered = 0, first = rel % e->grain;
    uint64_t expect = 0;
    bool have = false, ok = true;
    unsigned tables = 0;
    *out = (VdExtent){.fd = e->fd};

    vd_brlock_rdlock(&c->lock);
    while (covered < max && tables < STATUS_MAX_TABLES) {
        uint64_t gdi = grain / e->gtes;
        uint32_t gti = (uint32_t)(grain % e->gtes);
        if (gdi >= e->gd_count || e->gd[gdi] == 0) {
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
        tables++;
        VmdkGt *gt = gt_get_locked(img, e, (uint32_t)gdi, false, error);
        if (gt == NULL) {
            ok = false;
            break;
        }
        bool stop = false;
        for (; gti < e->gtes && covered < max; gti++, grain++) {
            VdExtentState st;
            uint64_t host;
            if (!decode_gte(img, e, gt->data, gti, grain, &st, &host, error)) {
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
    vd_brlock_rdunlock(&c->lock);
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

bool vmdk_gte_get(VdImage *img, VmdkExtent *e, uint64_t grain, uint64_t *value, GError **error)
{
    VmdkGtCache *c = &((VmdkState *)img->opaque)->gtc;
    uint64_t gdi = grain / e->gtes;
    uint32_t gti = (uint32_t)(grain % e->gtes);
    *value = 0;
    vd_brlock_rdlock(&c->lock);
    bool ok = true;
    if (gdi < e->gd_count && e->gd[gdi] != 0) {
        VmdkGt *gt = gt_get_locked(img, e, (uint32_t)gdi, false, error);
        if (gt == NULL)
            ok = false;
        else
            *value = e->gte_size == 8 ? vd_le64(gt->data + (size_t)gti * 8)
                                      : vd_le32(gt->data + (size_t)gti * 4);
    }
    vd_brlock_rdunlock(&c->lock);
    return ok;
}

bool vmdk_gte_set(VdImage *img, VmdkExtent *e, uint64_t grain, uint32_t value, GError **error)
{
    VmdkGtCache *c = &((VmdkState *)img->opaque)->gtc;
    uint64_t gdi = grain / e->gtes;
    uint32_t gti = (uint32_t)(grain % e->gtes);
    if (gdi >= e->gd_count) {
        vd_set_error(error, EIO, "%s: grain %" G_GUINT64_FORMAT " is outside the grain directory",
                     img->name, grain);
        return false;
    }
    vd_brlock_wrlock(&c->lock);
    VmdkGt *gt;
    if (e->gd[gdi] == 0) {
        /* A new table (and its redundant copy) at the end of the file;
         * written back before the directory entries that point to it. */
        uint64_t bytes = ((uint64_t)e->gtes * 4 + VMDK_SECTOR - 1) / VMDK_SECTOR * VMDK_SECTOR;
        uint64_t off = e->next_alloc, roff = 0;
        e->next_alloc += bytes;
        if (e->rgd != NULL) {
            roff = e->next_alloc;
            e->next_alloc += bytes;
        }
        if (e->next_alloc / VMDK_SECTOR > UINT32_MAX) {
            vd_brlock_wrunlock(&c->lock);
            vd_set_error(error, ENOSPC, "%s: %s is full (grain tables address 2 TiB)", img->name,
                         e->path);
            return false;
        }
        uint64_t gt_bytes = (uint64_t)e->gtes * 4;
        if (e->meta != NULL &&
            (!vd_meta_map_add(e->meta, off, gt_bytes, "grain table", error) ||
             (e->rgd != NULL &&
              !vd_meta_map_add(e->meta, roff, gt_bytes, "redundant grain table", error)))) {
            vd_brlock_wrunlock(&c->lock);
            return false;
        }
        gt = gt_insert_locked(c, e, (uint32_t)gdi, g_malloc0((size_t)e->gtes * 4), true);
        e->gd[gdi] = off;
        if (e->rgd != NULL)
            e->rgd[gdi] = roff;
        uint32_t idx = (uint32_t)gdi;
        if (e->gd_pending == NULL)
            e->gd_pending = g_array_new(FALSE, FALSE, sizeof(uint32_t));
        g_array_append_val(e->gd_pending, idx);
    } else {
        gt = gt_get_locked(img, e, (uint32_t)gdi, true, error);
        if (gt == NULL) {
            vd_brlock_wrunlock(&c->lock);
            return false;
        }
    }
    vd_put_le32(gt->data + (size_t)gti * 4, value);
    if (!gt->dirty) {
        gt->dirty = true;
        c->dirty++;
    }
    vd_brlock_wrunlock(&c->lock);
    return true;
}

unsigned vmdk_gt_dirty_count(VmdkState *s)
{
    vd_brlock_rdlock(&s->gtc.lock);
    unsigned n = s->gtc.dirty;
    vd_brlock_rdunlock(&s->gtc.lock);
    return n;
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

bool vmdk_gt_writeback(VdImage *img, GError **error)
{
    VmdkState *s = img->opaque;
    VmdkGtCache *c = &s->gtc;
    g_autoptr(GPtrArray) dirty = g_ptr_array_new();
    vd_brlock_rdlock(&c->lock);
    GHashTableIter it;
    gpointer key, value;
    g_hash_table_iter_init(&it, c->map);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        VmdkGt *gt = value;
        if (gt->dirty)
            g_ptr_array_add(dirty, gt);
    }
    vd_brlock_rdunlock(&c->lock);
    bool pending = false;
    for (guint i = 0; i < s->extents->len; i++) {
        VmdkExtent *e = g_ptr_array_index(s->extents, i);
        pending |= e->gd_pending != NULL && e->gd_pending->len > 0;
    }
    if (dirty->len == 0 && !pending)
        return true;

    /* 1. The grains the tables will point to are on disk. Dirty tables are
     * never evicted and only this (serialised) writer changes them, so
     * they can be read without the lock. */
    for (guint i = 0; i < s->extents->len; i++) {
        if (!sync_extent(g_ptr_array_index(s->extents, i), error))
            return false;
    }
    /* 2. The tables, both copies. */
    for (guint i = 0; i < dirty->len; i++) {
        VmdkGt *gt = g_ptr_array_index(dirty, i);
        VmdkExtent *e = gt->e;
        for (int copy = 0; copy < (e->rgd != NULL ? 2 : 1); copy++) {
            uint64_t off = copy ? e->rgd[gt->index] : e->gd[gt->index];
            if (!vd_host_pwrite(e->fd, e->path, gt->data, gt->size, off, error))
                return false;
            vmdk_extent_grew(e, off + gt->size);
        }
        e->data_dirty = true;
    }
    /* 3. Directory entries of new tables, once the tables are on disk. */
    for (guint i = 0; i < s->extents->len; i++) {
        VmdkExtent *e = g_ptr_array_index(s->extents, i);
        if (e->gd_pending == NULL || e->gd_pending->len == 0)
            continue;
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
    }
    vd_brlock_wrlock(&c->lock);
    for (guint i = 0; i < dirty->len; i++) {
        VmdkGt *gt = g_ptr_array_index(dirty, i);
        gt->dirty = false;
        c->dirty--;
    }
    gt_evict_locked(c, NULL);
    vd_brlock_wrunlock(&c->lock);
    return true;
}
