/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VHD ("vpc", Microsoft Virtual PC / Virtual Server / Hyper-V gen 1),
 * after Microsoft's Virtual Hard Disk Image Format Specification: a
 * 512-byte big-endian footer at the end of the file (copied at offset 0
 * for dynamic disks); fixed disks are the raw data followed by the footer;
 * dynamic and differencing disks have a dynamic header, a BAT of sector
 * numbers, and blocks made of a sector bitmap followed by the data.
 *
 * Reading the virtual size the way QEMU does (its documented rule): the
 * CHS geometry gives the size unless the creator is one that relies on
 * the footer's current size ("win ", "qem2", "d2v ", "tap\0", "CTXS") or
 * the geometry is the maximum one (65535/16/255).
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "formats/vhd-util.h"
#include "formats/vhd.h"
#include "src/vd-endian.h"
#include "src/vd-bits.h"
#include "src/vd-error.h"
#include "src/vd-info.h"
#include "src/vd-io.h"

#define VHD_MAX_GEOMETRY_SECTORS (65535ull * 16 * 255)
#define VHD_MAX_BAT_ENTRIES      (1u << 28)
#define VHD_MAX_LOCATOR_BYTES    65536

/* Parent locator platform codes. */
#define VHD_PLAT_WI2R 0x57693272u /* deprecated: relative path, ANSI */
#define VHD_PLAT_WI2K 0x5769326bu /* deprecated: absolute path, ANSI */
#define VHD_PLAT_W2RU 0x57327275u /* relative path, UTF-16LE */
#define VHD_PLAT_W2KU 0x57326b75u /* absolute path, UTF-16LE */
#define VHD_PLAT_MAC  0x4d616320u /* Mac OS alias record (opaque) */
#define VHD_PLAT_MACX 0x4d616358u /* file:// URL, UTF-8 */

const char vhd_meta_footer[] = "footer";

static uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t csum_off)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++) {
        if (i < csum_off || i >= csum_off + 4)
            sum += buf[i];
    }
    return ~sum;
}

static bool footer_valid(const uint8_t *f)
{
    return memcmp(f, "conectix", 8) == 0 && vd_be32(f + 64) == vhd_checksum(f, 512, 64);
}

static int vhd_probe(const VdProbe *probe)
{
    if (probe->head_len >= 8 && memcmp(probe->head, "conectix", 8) == 0)
        return VD_PROBE_MAGIC;
    /* Fixed disks carry their only footer at the end (and a dynamic disk
     * whose first copy is damaged still has this one). */
    if (probe->tail_len == VD_PROBE_TAIL && probe->file_size >= 2 * VHD_FOOTER_SIZE &&
        footer_valid(probe->tail))
        return VD_PROBE_MAGIC;
    return VD_PROBE_NO;
}

static void parse_footer(VhdState *s, const uint8_t *f)
{
    memcpy(s->footer, f, VHD_FOOTER_SIZE);
    memcpy(s->creator_app, f + 28, 4);
    s->creator_app[4] = '\0';
    s->creator_version = vd_be32(f + 32);
    s->creator_os = vd_be32(f + 36);
    s->original_size = vd_be64(f + 40);
    s->current_size = vd_be64(f + 48);
    s->cylinders = vd_be16(f + 56);
    s->heads = f[58];
    s->sectors = f[59];
    s->disk_type = vd_be32(f + 60);
    memcpy(s->uuid, f + 68, 16);
    s->saved_state = f[84] != 0;
}

/* The virtual size as QEMU reports it (see the comment at the top). */
static uint64_t virtual_size(VhdState *s)
{
    uint64_t chs = (uint64_t)s->cylinders * s->heads * s->sectors;
    static const char *const size_creators[] = {"win ", "qem2", "d2v ", "CTXS"};
    bool use_current = memcmp(s->creator_app, "tap", 4) == 0; /* "tap\0" */
    for (size_t i = 0; i < G_N_ELEMENTS(size_creators); i++)
        use_current |= memcmp(s->creator_app, size_creators[i], 4) == 0;
    if (use_current) {
        s->size_rule = "current_size (creator)";
        return s->current_size / VHD_SECTOR * VHD_SECTOR;
    }
    if (chs == VHD_MAX_GEOMETRY_SECTORS) {
        s->size_rule = "current_size (maximum geometry)";
        return s->current_size / VHD_SECTOR * VHD_SECTOR;
    }
    s->size_rule = "geometry";
    return chs * VHD_SECTOR;
}

bool vhd_block_host(VdImage *img, uint32_t idx, uint64_t *host, GError **error)
{
    VhdState *s = img->opaque;
    uint32_t e = vhd_bat_get(s, idx);
    if (e == VHD_BAT_UNUSED) {
        *host = 0;
        return true;
    }
    uint64_t start = (uint64_t)e * VHD_SECTOR;
    uint64_t size = vd_image_size(img);
    uint64_t need = vd_min_u64(s->block_size, size - (uint64_t)idx * s->block_size);
    uint64_t limit = __atomic_load_n(&s->footer_offset, __ATOMIC_ACQUIRE);
    if (start < VHD_FOOTER_SIZE || !vd_range_within(start, s->bitmap_size + need, limit)) {
        vd_set_error(error, EIO,
                     "%s: block %" PRIu32 " at 0x%" PRIx64 " lies outside the file's data area",
                     img->name, idx, start);
        return false;
    }
    *host = start;
    return true;
}

/* Decode one parent locator entry into path candidates. */
static void locator_candidates(VdImage *img, uint32_t code, const uint8_t *data, size_t len,
                               GPtrArray *rel, GPtrArray *abs, GPtrArray *shown)
{
    g_autofree char *text = NULL;
    switch (code) {
    case VHD_PLAT_W2RU:
    case VHD_PLAT_W2KU:
        text = vhd_utf16_to_utf8(data, len, false);
        break;
    case VHD_PLAT_WI2R:
    case VHD_PLAT_WI2K:
        text = g_strndup((const char *)data, len);
        if (!g_utf8_validate(text, -1, NULL))
            g_clear_pointer(&text, g_free);
        break;
    case VHD_PLAT_MACX: {
        g_autofree char *url = g_strndup((const char *)data, len);
        const char *p = url;
        if (g_str_has_prefix(p, "file://")) {
            p += 7;
            if (*p != '/') /* a host name, usually "localhost" */
                p = strchr(p, '/');
        }
        if (p != NULL && *p == '/')
            text = g_uri_unescape_string(p, NULL);
        break;
    }
    default:
        /* Mac alias records are opaque Finder data; others are unknown. */
        return;
    }
    if (text == NULL || *text == '\0')
        return;
    g_ptr_array_add(shown, g_strdup_printf("%c%c%c%c: %s", (char)(code >> 24), (char)(code >> 16),
                                           (char)(code >> 8), (char)code, text));
    bool relative = code == VHD_PLAT_W2RU || code == VHD_PLAT_WI2R;
    vhd_path_candidates(text, relative ? rel : abs);
    (void)img;
}

static bool open_parent(VdImage *img, const uint8_t *hdr, uint64_t file_size, GError **error)
{
    VhdState *s = img->opaque;
    memcpy(s->parent_uuid, hdr + 40, 16);
    s->parent_timestamp = vd_be32(hdr + 56);
    s->parent_name = vhd_utf16_to_utf8(hdr + 64, 512, true);

    g_autoptr(GPtrArray) rel = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) abs = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) shown = g_ptr_array_new_with_free_func(g_free);
    for (int i = 0; i < 8; i++) {
        const uint8_t *e = hdr + 576 + 24 * i;
        uint32_t code = vd_be32(e);
        uint32_t len = vd_be32(e + 8);
        uint64_t off = vd_be64(e + 16);
        if (code == 0 || len == 0)
            continue;
        if (len > VHD_MAX_LOCATOR_BYTES || !vd_range_within(off, len, file_size)) {
            vd_set_error(error, EIO,
                         "%s: parent locator %d (%" PRIu32 " bytes at 0x%" PRIx64
                         ") lies outside the file",
                         img->name, i, len, off);
            return false;
        }
        g_autofree uint8_t *data = g_malloc(len);
        if (!vd_host_pread(img->fd, img->name, data, len, off, false, error))
            return false;
        vd_meta_map_add(s->meta, off, len, "parent locator", NULL);
        locator_candidates(img, code, data, len, rel, abs, shown);
    }
    g_autoptr(GPtrArray) all = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < rel->len; i++)
        g_ptr_array_add(all, g_strdup(g_ptr_array_index(rel, i)));
    for (guint i = 0; i < abs->len; i++)
        g_ptr_array_add(all, g_strdup(g_ptr_array_index(abs, i)));
    if (s->parent_name != NULL)
        vhd_path_candidates(s->parent_name, all);
    if (all->len == 0) {
        vd_set_error(error, ENOENT,
                     "%s: differencing disk names no parent that can be located "
                     "(no usable parent locator or parent name)",
                     img->name);
        return false;
    }
    s->locators = g_ptr_array_ref(shown);
    const char *display =
        shown->len > 0 ? (const char *)g_ptr_array_index(shown, 0) + 6 : s->parent_name;
    vhd_set_parent(img, display, "vpc", all);
    return true;
}

/* The dynamic disk header into hdr, and the BAT's place and size from it. */
static bool read_dynamic_header(VdImage *img, VhdState *s, uint64_t file_size,
                                uint8_t hdr[VHD_DYN_HEADER_SIZE], GError **error)
{
    if (!vd_range_within(s->header_offset, VHD_DYN_HEADER_SIZE, file_size)) {
        vd_set_error(error, EIO, "%s: dynamic disk header at 0x%" PRIx64 " lies past the end",
                     img->name, s->header_offset);
        return false;
    }
    if (!vd_host_pread(img->fd, img->name, hdr, VHD_DYN_HEADER_SIZE, s->header_offset, false,
                       error))
        return false;
    if (memcmp(hdr, "cxsparse", 8) != 0) {
        vd_set_error(error, EIO, "%s: no dynamic disk header (cxsparse) at 0x%" PRIx64, img->name,
                     s->header_offset);
        return false;
    }
    if (vd_be32(hdr + 36) != vhd_checksum(hdr, VHD_DYN_HEADER_SIZE, 36)) {
        vd_set_error(error, EIO, "%s: dynamic disk header checksum mismatch", img->name);
        return false;
    }
    s->bat_offset = vd_be64(hdr + 16);
    s->max_table_entries = vd_be32(hdr + 28);
    s->block_size = vd_be32(hdr + 32);
    if (!vd_is_pow2(s->block_size) || s->block_size < VHD_SECTOR || s->block_size > (1u << 28)) {
        vd_set_error(error, EIO, "%s: unsupported block size %" PRIu32, img->name, s->block_size);
        return false;
    }
    uint32_t sectors_per_block = s->block_size / VHD_SECTOR;
    s->bitmap_size = ((sectors_per_block + 7) / 8 + VHD_SECTOR - 1) / VHD_SECTOR * VHD_SECTOR;
    uint64_t size = img->size;
    uint64_t n = size / s->block_size + (size % s->block_size != 0);
    if (n > s->max_table_entries || n > VHD_MAX_BAT_ENTRIES) {
        vd_set_error(error, EIO, "%s: BAT has %" PRIu32 " entries, the virtual size needs %" PRIu64,
                     img->name, s->max_table_entries, n);
        return false;
    }
    s->n_blocks = (uint32_t)n;
    if (s->bat_offset < VHD_FOOTER_SIZE || !vd_range_within(s->bat_offset, n * 4, file_size)) {
        vd_set_error(error, EIO, "%s: BAT at 0x%" PRIx64 " (%" PRIu64 " entries) lies past the end",
                     img->name, s->bat_offset, n);
        return false;
    }
    return true;
}

static bool load_bat(VdImage *img, VhdState *s, GError **error)
{
    uint64_t n = s->n_blocks;
    if (!vd_image_mem_reserve(img, n * 4, "BAT", error))
        return false;
    g_autofree uint8_t *raw = g_malloc(n * 4 + 1);
    if (!vd_host_pread(img->fd, img->name, raw, n * 4, s->bat_offset, false, error))
        return false;
    s->bat = g_new(uint32_t, n + 1);
    for (uint64_t i = 0; i < n; i++)
        s->bat[i] = vd_be32(raw + 4 * i);
    return true;
}

static void vhd_close(VdImage *img)
{
    VhdState *s = img->opaque;
    if (s == NULL)
        return;
    g_free(s->bat);
    g_free(s->parent_name);
    g_clear_pointer(&s->locators, g_ptr_array_unref);
    vd_meta_map_free(s->meta);
    g_free(s);
    img->opaque = NULL;
}

/* An allocated block, for finding overlaps: 8 bytes, the BAT may be large. */
typedef struct {
    uint32_t sector;
    uint32_t idx;
} VhdBlockRef;

static gint ref_cmp(gconstpointer a, gconstpointer b)
{
    const VhdBlockRef *x = a, *y = b;
    return x->sector < y->sector ? -1 : x->sector > y->sector;
}

/* Bytes of block idx that writes may touch: its bitmap and the data
 * within the virtual size. */
static uint64_t block_span(const VhdState *s, uint64_t size, uint32_t idx)
{
    return s->bitmap_size + vd_min_u64(s->block_size, size - (uint64_t)idx * s->block_size);
}

/* Why a data write into an allocated block could damage something else:
 * a block outside the data area (it would come to overlap the blocks
 * appended later), on metadata, or overlapping another block (whose
 * sector bitmap it would overwrite). NULL when every block is sound. */
static char *check_blocks(VdImage *img, VhdState *s)
{
    g_autoptr(GArray) refs = g_array_new(FALSE, FALSE, sizeof(VhdBlockRef));
    uint64_t size = img->size;
    for (uint32_t i = 0; i < s->n_blocks; i++) {
        uint32_t e = s->bat[i];
        if (e == VHD_BAT_UNUSED)
            continue;
        uint64_t start = (uint64_t)e * VHD_SECTOR, len = block_span(s, size, i);
        VdMetaRange hit;
        if (start < VHD_FOOTER_SIZE || !vd_range_within(start, len, s->footer_offset))
            return g_strdup_printf("%s: block %" PRIu32 " at 0x%" PRIx64
                                   " lies outside the file's data area",
                                   img->name, i, start);
        if (vd_meta_map_find(s->meta, start, len, &hit))
            return g_strdup_printf("%s: block %" PRIu32 " at 0x%" PRIx64
                                   " overlaps the %s at 0x%" PRIx64,
                                   img->name, i, start, hit.what, hit.start);
        VhdBlockRef r = {e, i};
        g_array_append_val(refs, r);
    }
    g_array_sort(refs, ref_cmp);
    for (guint k = 1; k < refs->len; k++) {
        const VhdBlockRef *a = &g_array_index(refs, VhdBlockRef, k - 1);
        const VhdBlockRef *b = &g_array_index(refs, VhdBlockRef, k);
        if ((uint64_t)a->sector * VHD_SECTOR + block_span(s, size, a->idx) >
            (uint64_t)b->sector * VHD_SECTOR)
            return g_strdup_printf("%s: blocks %" PRIu32 " and %" PRIu32 " overlap at 0x%" PRIx64,
                                   img->name, a->idx, b->idx, (uint64_t)b->sector * VHD_SECTOR);
    }
    return NULL;
}

/* Seal the metadata map; for read-write opens, mark the image corrupt if
 * a data write could land on metadata or on another block. Only what a
 * write could damage is looked for, and only when writes can happen:
 * reads go by the BAT whatever it says. */
static void check_layout(VdImage *img, VhdState *s)
{
    g_autoptr(GError) overlap = NULL;
    bool disjoint = vd_meta_map_seal(s->meta, &overlap);
    if (img->read_only)
        return;
    g_autofree char *why = !disjoint           ? g_strdup(overlap->message)
                           : vhd_is_dynamic(s) ? check_blocks(img, s)
                                               : NULL;
    if (why != NULL)
        vd_image_set_corrupt(img, "%s", why);
}

/* Footers and, for dynamic disks, the dynamic header (into hdr): what
 * open and peek share. Sets img->size. */
static bool read_headers(VdImage *img, VhdState *s, uint64_t *file_size,
                         uint8_t hdr[VHD_DYN_HEADER_SIZE], GError **error)
{
    if (!vd_host_size(img->fd, img->name, file_size, error))
        return false;
    if (*file_size < VHD_FOOTER_SIZE) {
        vd_set_error(error, EIO, "%s: too small to hold a VHD footer", img->name);
        return false;
    }
    uint8_t end[VHD_FOOTER_SIZE], head[VHD_FOOTER_SIZE];
    if (!vd_host_pread(img->fd, img->name, end, sizeof end, *file_size - VHD_FOOTER_SIZE, false,
                       error) ||
        !vd_host_pread(img->fd, img->name, head, sizeof head, 0, false, error))
        return false;
    const uint8_t *f = NULL;
    bool end_ok = footer_valid(end);
    if (end_ok) {
        f = end;
    } else if (footer_valid(head) && vd_be32(head + 60) != VHD_TYPE_FIXED) {
        /* The copy at the start still describes a dynamic disk whose end
         * footer is damaged: readable, but not safely extensible. */
        f = head;
    } else {
        bool cookie = memcmp(end, "conectix", 8) == 0 || memcmp(head, "conectix", 8) == 0;
        vd_set_error(error, EIO, "%s: %s", img->name,
                     cookie ? "VHD footer checksum mismatch" : "no VHD footer");
        return false;
    }
    parse_footer(s, f);
    if (s->disk_type != VHD_TYPE_FIXED && s->disk_type != VHD_TYPE_DYNAMIC &&
        s->disk_type != VHD_TYPE_DIFFERENCING) {
        vd_set_error(error, ENOTSUP, "%s: unknown VHD disk type %" PRIu32, img->name, s->disk_type);
        return false;
    }
    img->size = virtual_size(s);
    s->footer_offset = *file_size - VHD_FOOTER_SIZE;
    s->can_allocate = end_ok && *file_size % VHD_SECTOR == 0;
    if (s->disk_type == VHD_TYPE_FIXED) {
        if (img->size > s->footer_offset) {
            vd_set_error(error, EIO,
                         "%s: fixed disk of %" PRIu64 " bytes holds only %" PRIu64 " bytes of data",
                         img->name, img->size, s->footer_offset);
            return false;
        }
        return true;
    }
    s->header_offset = vd_be64(f + 16);
    return read_dynamic_header(img, s, *file_size, hdr, error);
}

/* The structures of a dynamic disk that no data write may touch. The parent
 * locators were added while they were read. */
static void add_dynamic_meta(VhdState *s)
{
    vd_meta_map_add(s->meta, 0, VHD_FOOTER_SIZE, "footer copy", NULL);
    vd_meta_map_add(s->meta, s->header_offset, VHD_DYN_HEADER_SIZE, "dynamic disk header", NULL);
    vd_meta_map_add(s->meta, s->bat_offset, (uint64_t)s->max_table_entries * 4, "BAT", NULL);
}

static bool vhd_open(VdImage *img, GError **error)
{
    VhdState *s = g_new0(VhdState, 1);
    img->opaque = s;
    s->meta = vd_meta_map_new(img->name);
    bool ok = false;
    uint64_t file_size;
    uint8_t hdr[VHD_DYN_HEADER_SIZE];
    if (!read_headers(img, s, &file_size, hdr, error))
        goto out;
    if (vhd_is_dynamic(s)) {
        if (!load_bat(img, s, error))
            goto out;
        if (s->disk_type == VHD_TYPE_DIFFERENCING && !open_parent(img, hdr, file_size, error))
            goto out;
        add_dynamic_meta(s);
    }
    vd_meta_map_add(s->meta, s->footer_offset, VHD_FOOTER_SIZE, vhd_meta_footer, NULL);
    if (!s->can_allocate && vhd_is_dynamic(s))
        vd_image_refuse_writes(img);
    check_layout(img, s);
    ok = true;
out:
    if (!ok)
        vhd_close(img);
    return ok;
}

/* Footers and the dynamic header only: no BAT, no parent locators. */
static bool vhd_peek(VdImage *img, GError **error)
{
    g_autofree VhdState *s = g_new0(VhdState, 1);
    uint64_t file_size;
    uint8_t hdr[VHD_DYN_HEADER_SIZE];
    if (!read_headers(img, s, &file_size, hdr, error))
        return false;
    if (!s->can_allocate && vhd_is_dynamic(s))
        vd_image_refuse_writes(img);
    return true;
}

/* Runs of one bitmap bit (MSB first) from sector first, at most count. */
static bool bitmap_run(VdImage *img, uint64_t bitmap_host, uint32_t first, uint32_t count,
                       bool *set, uint32_t *run, GError **error)
{
    uint32_t b0 = first / 8, b1 = (first + count - 1) / 8;
    size_t n = b1 - b0 + 1;
    g_autofree uint8_t *bits = g_malloc(n);
    if (!vd_host_pread(img->fd, img->name, bits, n, bitmap_host + b0, false, error))
        return false;
    *run = (uint32_t)vd_bit_run(bits, first % 8, count, false, set);
    return true;
}

static bool vhd_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                             VdExtent *ext, GError **error)
{
    VhdState *s = img->opaque;
    (void)flags;
    if (s->disk_type == VHD_TYPE_FIXED) {
        *ext = (VdExtent){VD_EXTENT_DATA, length, img->fd, offset};
        return true;
    }
    uint64_t bs = s->block_size;
    uint32_t idx = (uint32_t)(offset / bs);
    uint64_t within = offset % bs;
    uint64_t host;
    if (!vhd_block_host(img, idx, &host, error))
        return false;
    if (host == 0) {
        /* Merge the following unallocated blocks. */
        uint64_t run = bs - within;
        while (run < length && idx + 1 < s->n_blocks && vhd_bat_get(s, idx + 1) == VHD_BAT_UNUSED) {
            idx++;
            run += bs;
        }
        ext->state = s->disk_type == VHD_TYPE_DIFFERENCING ? VD_EXTENT_UNALLOCATED : VD_EXTENT_ZERO;
        ext->length = vd_min_u64(run, length);
        ext->fd = -1;
        return true;
    }
    uint64_t n = vd_min_u64(bs - within, length);
    ext->fd = img->fd;
    ext->host_offset = host + s->bitmap_size + within;
    ext->state = VD_EXTENT_DATA;
    ext->length = n;
    if (s->disk_type != VHD_TYPE_DIFFERENCING)
        return true;
    /* Differencing: the sector bitmap says which sectors are here. */
    uint32_t first = (uint32_t)(within / VHD_SECTOR);
    uint32_t last = (uint32_t)((within + n - 1) / VHD_SECTOR);
    bool set;
    uint32_t run;
    if (!bitmap_run(img, host, first, last - first + 1, &set, &run, error))
        return false;
    uint64_t run_end = (uint64_t)(first + run) * VHD_SECTOR;
    ext->length = vd_min_u64(n, run_end - within);
    if (!set) {
        ext->state = VD_EXTENT_UNALLOCATED;
        ext->fd = -1;
    }
    return true;
}

static void vhd_describe(VdImage *img, VdInfo *info)
{
    VhdState *s = img->opaque;
    static const char *const types[] = {[VHD_TYPE_FIXED] = "fixed",
                                        [VHD_TYPE_DYNAMIC] = "dynamic",
                                        [VHD_TYPE_DIFFERENCING] = "differencing"};
    vd_info_add_str(info, "disk_type", "%s", types[s->disk_type]);
    char os[5] = {0};
    for (int i = 0; i < 4; i++) {
        char c = (char)(s->creator_os >> (24 - 8 * i));
        os[i] = g_ascii_isprint(c) ? c : '?';
    }
    char app[5];
    for (int i = 0; i < 5; i++)
        app[i] = (s->creator_app[i] == '\0' || g_ascii_isprint(s->creator_app[i]))
                     ? s->creator_app[i]
                     : '?';
    vd_info_add_str(info, "creator", "%s %u.%u (%s)", app, s->creator_version >> 16,
                    s->creator_version & 0xffff, os);
    vd_info_add_str(info, "geometry", "%u/%u/%u", s->cylinders, s->heads, s->sectors);
    vd_info_add_u64(info, "current_size", s->current_size);
    vd_info_add_str(info, "size_from", "%s", s->size_rule);
    g_autofree char *uuid = vhd_uuid_to_string(s->uuid);
    vd_info_add_str(info, "uuid", "%s", uuid);
    vd_info_add_bool(info, "saved_state", s->saved_state);
    if (!vhd_is_dynamic(s))
        return;
    vd_info_add_u64(info, "block_size", s->block_size);
    vd_info_add_u64(info, "cluster_size", s->block_size);
    uint64_t used = 0;
    for (uint32_t i = 0; i < s->n_blocks; i++)
        used += vhd_bat_get(s, i) != VHD_BAT_UNUSED;
    vd_info_add_u64(info, "allocated_blocks", used);
    if (s->disk_type == VHD_TYPE_DIFFERENCING) {
        g_autofree char *pu = vhd_uuid_to_string(s->parent_uuid);
        vd_info_add_str(info, "parent_uuid", "%s", pu);
        if (s->parent_name != NULL)
            vd_info_add_str(info, "parent_name", "%s", s->parent_name);
        for (guint i = 0; s->locators != NULL && i < s->locators->len; i++)
            vd_info_add_list_item(info, "parent_locators", "%s",
                                  (const char *)g_ptr_array_index(s->locators, i));
    }
}

static bool vhd_check_backing(VdImage *img, VdImage *backing, GError **error)
{
    VhdState *s = img->opaque;
    if (backing->driver != img->driver) {
        vd_set_error(error, EIO, "%s: parent %s is not a VHD image", img->name, backing->name);
        return false;
    }
    VhdState *p = backing->opaque;
    if (memcmp(p->uuid, s->parent_uuid, 16) != 0) {
        g_autofree char *want = vhd_uuid_to_string(s->parent_uuid);
        g_autofree char *got = vhd_uuid_to_string(p->uuid);
        vd_set_error(error, EIO, "%s: parent %s has UUID %s, but this disk's parent is %s",
                     img->name, backing->name, got, want);
        return false;
    }
    return true;
}

static bool vhd_get_uuid(VdImage *img, uint8_t uuid[16])
{
    VhdState *s = img->opaque;
    memcpy(uuid, s->uuid, 16);
    return true;
}

const VdDriver vd_vpc_driver = {
    .name = "vpc",
    .description = "VHD: Microsoft Virtual PC / Hyper-V virtual hard disk",
    .caps = VD_CAP_WRITE | VD_CAP_BACKING | VD_CAP_SERIAL_WRITES,
    .probe = vhd_probe,
    .tail_extensions = (const char *const[]){"vhd", "vpc", NULL},
    .open = vhd_open,
    .close = vhd_close,
    .peek = vhd_peek,
    .pwrite = vhd_pwrite,
    .block_status = vhd_block_status,
    .flush = vhd_flush,
    .describe = vhd_describe,
    .check_backing = vhd_check_backing,
    .get_uuid = vhd_get_uuid,
};
