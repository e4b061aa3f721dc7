/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VHDX (Hyper-V), after Microsoft's [MS-VHDX] specification: file type
 * identifier, two headers (sequence numbers, CRC-32C), two region tables
 * locating the BAT and the metadata region, metadata items (file
 * parameters, virtual disk size, sector sizes, page 83 data, parent
 * locator). The log (vhdx-log.c) is replayed before the regions are read;
 * the BAT and reads are in vhdx-bat.c, writes in vhdx-write.c.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "formats/vhd-util.h"
#include "formats/vhdx.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-info.h"
#include "src/vd-io.h"

#define GUID_BAT_REGION     "2dc27766-f623-4200-9d64-115e9bfd4a08"
#define GUID_META_REGION    "8b7ca206-4790-4b9a-b8fe-575f050f886e"
#define GUID_FILE_PARAMS    "caa16737-fa36-4d43-b3b6-33f0aa44e76b"
#define GUID_DISK_SIZE      "2fa54224-cd1b-4876-b211-5dbed83bf4b8"
#define GUID_PAGE83         "beca12ab-b2e6-4523-93ef-c309e000c746"
#define GUID_LOGICAL_SECTOR "8141bf1d-a96f-4709-ba47-f233a8faab5f"
#define GUID_PHYS_SECTOR    "cda348c7-445d-4471-9cc9-e9885251c556"
#define GUID_PARENT_LOCATOR "a8d35f2d-b30b-454d-abf7-d3d84834ab0c"
#define GUID_LOCATOR_VHDX   "b04aefb7-d19e-4a81-b789-25b8e9445913"

static bool guid_is(const uint8_t *g, const char *text)
{
    uint8_t want[16];
    return vhd_guid_from_string(text, want) && memcmp(g, want, 16) == 0;
}

static int vhdx_probe(const VdProbe *probe)
{
    if (probe->head_len >= 8 && memcmp(probe->head, "vhdxfile", 8) == 0)
        return VD_PROBE_MAGIC;
    return VD_PROBE_NO;
}

static bool header_valid(const uint8_t *h)
{
    return memcmp(h, "head", 4) == 0 && vd_le32(h + 4) == vhd_crc32c_skip(h, VHDX_HEADER_SIZE, 4);
}

static bool read_headers(VdImage *img, GError **error)
{
    VhdxState *s = img->opaque;
    g_autofree uint8_t *both = g_malloc(2 * VHDX_HEADER_SIZE);
    uint8_t *h[2] = {both, both + VHDX_HEADER_SIZE};
    const uint64_t where[2] = {VHDX_HEADER1_OFFSET, VHDX_HEADER2_OFFSET};
    bool valid[2];
    for (int i = 0; i < 2; i++) {
        if (!vd_host_pread(img->fd, img->name, h[i], VHDX_HEADER_SIZE, where[i], false, error))
            return false;
        valid[i] = header_valid(h[i]);
    }
    int cur;
    if (valid[0] && valid[1]) {
        uint64_t a = vd_le64(h[0] + 8), b = vd_le64(h[1] + 8);
        if (a == b && memcmp(h[0], h[1], VHDX_HEADER_SIZE) != 0) {
            vd_set_error(error, EIO, "%s: both VHDX headers have sequence number %" PRIu64,
                         img->name, a);
            return false;
        }
        cur = a >= b ? 0 : 1;
    } else if (valid[0] || valid[1]) {
        cur = valid[0] ? 0 : 1;
    } else {
        vd_set_error(error, EIO, "%s: no valid VHDX header (signature or CRC-32C mismatch)",
                     img->name);
        return false;
    }
    const uint8_t *p = h[cur];
    s->header_slot = cur;
    s->header_seq = vd_le64(p + 8);
    memcpy(s->file_write_guid, p + 16, 16);
    memcpy(s->data_write_guid, p + 32, 16);
    memcpy(s->log_guid, p + 48, 16);
    s->log_version = vd_le16(p + 64);
    s->version = vd_le16(p + 66);
    s->log_length = vd_le32(p + 68);
    s->log_offset = vd_le64(p + 72);
    if (s->version != 1 || s->log_version != 0) {
        vd_set_error(error, ENOTSUP, "%s: VHDX version %u, log version %u not supported", img->name,
                     s->version, s->log_version);
        return false;
    }
    if (s->log_length % VHDX_MiB != 0 || s->log_offset % VHDX_MiB != 0 ||
        (s->log_length != 0 && s->log_offset < VHDX_MiB) ||
        !vd_range_within(s->log_offset, s->log_length, s->file_size)) {
        vd_set_error(error, EIO,
                     "%s: log at 0x%" PRIx64 " (%" PRIu32 " bytes) is misaligned or past the end",
                     img->name, s->log_offset, s->log_length);
        return false;
    }
    return true;
}

bool vhdx_write_header(VdImage *img, GError **error)
{
    VhdxState *s = img->opaque;
    uint8_t h[VHDX_HEADER_SIZE] = {0};
    memcpy(h, "head", 4);
    memcpy(h + 16, s->file_write_guid, 16);
    memcpy(h + 32, s->data_write_guid, 16);
    memcpy(h + 48, s->log_guid, 16);
    vd_put_le16(h + 64, s->log_version);
    vd_put_le16(h + 66, s->version);
    vd_put_le32(h + 68, s->log_length);
    vd_put_le64(h + 72, s->log_offset);
    /* The other slot first: a crash leaves the old current header. */
    for (int i = 0; i < 2; i++) {
        int slot = 1 - s->header_slot;
        vd_put_le64(h + 8, s->header_seq + 1);
        vd_put_le32(h + 4, 0);
        vd_put_le32(h + 4, vhd_crc32c(h, sizeof h));
        uint64_t off = slot == 0 ? VHDX_HEADER1_OFFSET : VHDX_HEADER2_OFFSET;
        if (!vd_host_pwrite(img->fd, img->name, h, sizeof h, off, error) ||
            !vd_host_fdatasync(img->fd, img->name, error))
            return false;
        s->header_seq++;
        s->header_slot = slot;
    }
    return true;
}

static bool region_table_valid(const uint8_t *t)
{
    return memcmp(t, "regi", 4) == 0 && vd_le32(t + 8) <= VHDX_REGION_MAX &&
           vd_le32(t + 4) == vhd_crc32c_skip(t, VHDX_REGION_SIZE, 4);
}

static bool read_regions(VdImage *img, GError **error)
{
    VhdxState *s = img->opaque;
    g_autofree uint8_t *t = g_malloc(VHDX_REGION_SIZE);
    if (!vhdx_meta_read(img, t, VHDX_REGION_SIZE, VHDX_REGION1_OFFSET, error))
        return false;
    if (!region_table_valid(t)) {
        if (!vhdx_meta_read(img, t, VHDX_REGION_SIZE, VHDX_REGION2_OFFSET, error))
            return false;
        if (!region_table_valid(t)) {
            vd_set_error(error, EIO, "%s: both VHDX region tables are invalid", img->name);
            return false;
        }
    }
    uint32_t count = vd_le32(t + 8);
    bool have_bat = false, have_meta = false;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = t + 16 + 32 * i;
        uint64_t off = vd_le64(e + 16);
        uint32_t len = vd_le32(e + 24);
        bool required = vd_le32(e + 28) & 1;
        bool is_bat = guid_is(e, GUID_BAT_REGION), is_meta = guid_is(e, GUID_META_REGION);
        if (!is_bat && !is_meta) {
            if (required) {
                g_autofree char *g = vhd_guid_to_string(e);
                vd_set_error(error, ENOTSUP, "%s: unknown required region %s", img->name, g);
                return false;
            }
            continue;
        }
        if ((is_bat && have_bat) || (is_meta && have_meta)) {
            vd_set_error(error, EIO, "%s: region listed twice", img->name);
            return false;
        }
        if (off % VHDX_MiB != 0 || off < VHDX_MiB || len == 0 || len % VHDX_MiB != 0 ||
            !vd_range_within(off, len, s->overlay_end)) {
            vd_set_error(error, EIO,
                         "%s: %s region at 0x%" PRIx64 " (%" PRIu32
                         " bytes) is misaligned or lies past the end of the file",
                         img->name, is_bat ? "BAT" : "metadata", off, len);
            return false;
        }
        if (is_bat) {
            s->bat_offset = off;
            s->bat_length = len;
            have_bat = true;
        } else {
            s->meta_offset = off;
            s->meta_length = len;
            have_meta = true;
        }
    }
    if (!have_bat || !have_meta) {
        vd_set_error(error, EIO, "%s: region table lacks the %s region", img->name,
                     have_bat ? "metadata" : "BAT");
        return false;
    }
    /* BAT, metadata and log must not share space: writing one would
     * corrupt another. */
    const uint64_t r[3][2] = {{s->bat_offset, s->bat_length},
                              {s->meta_offset, s->meta_length},
                              {s->log_offset, s->log_length}};
    for (int i = 0; i < 3; i++) {
        for (int j = i + 1; j < 3; j++) {
            if (r[i][1] != 0 && r[j][1] != 0 && r[i][0] < r[j][0] + r[j][1] &&
                r[j][0] < r[i][0] + r[i][1]) {
                vd_set_error(error, EIO, "%s: the BAT, metadata and log regions overlap",
                             img->name);
                return false;
            }
        }
    }
    return true;
}

/* The UTF-16 key/value pairs of a VHDX parent locator. */
static bool parse_locator(VdImage *img, const uint8_t *item, uint32_t len, GError **error)
{
    VhdxState *s = img->opaque;
    if (len < 20 || !guid_is(item, GUID_LOCATOR_VHDX)) {
        vd_set_error(error, ENOTSUP, "%s: parent locator is not of the VHDX type", img->name);
        return false;
    }
    uint16_t count = vd_le16(item + 18);
    if (20 + 12ull * count > len) {
        vd_set_error(error, EIO, "%s: parent locator entries overrun the item", img->name);
        return false;
    }
    for (uint16_t i = 0; i < count; i++) {
        const uint8_t *e = item + 20 + 12 * i;
        uint32_t ko = vd_le32(e), vo = vd_le32(e + 4);
        uint16_t kl = vd_le16(e + 8), vl = vd_le16(e + 10);
        if (!vd_range_within(ko, kl, len) || !vd_range_within(vo, vl, len)) {
            vd_set_error(error, EIO, "%s: parent locator entry %u lies outside the item", img->name,
                         i);
            return false;
        }
        g_autofree char *key = vhd_utf16_to_utf8(item + ko, kl, false);
        g_autofree char *val = vhd_utf16_to_utf8(item + vo, vl, false);
        if (key == NULL || val == NULL)
            continue;
        if (strcmp(key, "parent_linkage") == 0) {
            s->have_linkage = vhd_guid_from_string(val, s->parent_linkage);
        } else if (strcmp(key, "parent_linkage2") == 0) {
            s->have_linkage2 = vhd_guid_from_string(val, s->parent_linkage2);
        } else if (strcmp(key, "relative_path") == 0) {
            g_free(s->parent_relative);
            s->parent_relative = g_steal_pointer(&val);
        } else if (strcmp(key, "volume_path") == 0) {
            g_free(s->parent_volume);
            s->parent_volume = g_steal_pointer(&val);
        } else if (strcmp(key, "absolute_win32_path") == 0) {
            g_free(s->parent_absolute);
            s->parent_absolute = g_steal_pointer(&val);
        }
    }
    if (!s->have_linkage) {
        vd_set_error(error, EIO, "%s: parent locator has no valid parent_linkage", img->name);
        return false;
    }
    return true;
}

static bool read_item(VdImage *img, uint32_t off, uint32_t len, uint32_t want, uint8_t *buf,
                      const char *what, GError **error)
{
    VhdxState *s = img->opaque;
    if (len < want) {
        vd_set_error(error, EIO, "%s: metadata item %s is too short", img->name, what);
        return false;
    }
    return vhdx_meta_read(img, buf, want, s->meta_offset + off, error);
}

static bool read_metadata(VdImage *img, GError **error)
{
    VhdxState *s = img->opaque;
    g_autofree uint8_t *t = g_malloc(VHDX_META_TABLE_SIZE);
    if (!vhdx_meta_read(img, t, VHDX_META_TABLE_SIZE, s->meta_offset, error))
        return false;
    uint16_t count = vd_le16(t + 10);
    if (memcmp(t, "metadata", 8) != 0 || count > VHDX_META_MAX_ENTRIES) {
        vd_set_error(error, EIO, "%s: invalid metadata table", img->name);
        return false;
    }
    unsigned seen = 0;
    for (uint16_t i = 0; i < count; i++) {
        const uint8_t *e = t + 32 + 32 * i;
        uint32_t off = vd_le32(e + 16), len = vd_le32(e + 20), flags = vd_le32(e + 24);
        if (len > 0 && (off < VHDX_META_TABLE_SIZE || len > VHDX_MiB ||
                        !vd_range_within(off, len, s->meta_length))) {
            vd_set_error(error, EIO, "%s: metadata item %u lies outside the metadata region",
                         img->name, i);
            return false;
        }
        uint8_t b[16];
        if (guid_is(e, GUID_FILE_PARAMS)) {
            if (!read_item(img, off, len, 8, b, "file parameters", error))
                return false;
            s->block_size = vd_le32(b);
            s->leave_blocks_allocated = vd_le32(b + 4) & 1;
            s->has_parent = (vd_le32(b + 4) >> 1) & 1;
            seen |= 1;
        } else if (guid_is(e, GUID_DISK_SIZE)) {
            if (!read_item(img, off, len, 8, b, "virtual disk size", error))
                return false;
            s->disk_size = vd_le64(b);
            seen |= 2;
        } else if (guid_is(e, GUID_LOGICAL_SECTOR)) {
            if (!read_item(img, off, len, 4, b, "logical sector size", error))
                return false;
            s->logical_sector = vd_le32(b);
            seen |= 4;
        } else if (guid_is(e, GUID_PHYS_SECTOR)) {
            if (!read_item(img, off, len, 4, b, "physical sector size", error))
                return false;
            s->physical_sector = vd_le32(b);
            seen |= 8;
        } else if (guid_is(e, GUID_PAGE83)) {
            if (!read_item(img, off, len, 16, s->page83, "page 83 data", error))
                return false;
        } else if (guid_is(e, GUID_PARENT_LOCATOR)) {
            g_autofree uint8_t *item = g_malloc(len + 1);
            if (!read_item(img, off, len, len, item, "parent locator", error) ||
                !parse_locator(img, item, len, error))
                return false;
            seen |= 16;
        } else if (flags & 4) {
            g_autofree char *g = vhd_guid_to_string(e);
            vd_set_error(error, ENOTSUP, "%s: unknown required metadata item %s", img->name, g);
            return false;
        }
    }
    if ((seen & 15) != 15) {
        vd_set_error(error, EIO, "%s: a required metadata item is missing", img->name);
        return false;
    }
    if (!vd_is_pow2(s->block_size) || s->block_size < VHDX_MiB || s->block_size > 256 * VHDX_MiB) {
        vd_set_error(error, EIO, "%s: invalid block size %" PRIu32, img->name, s->block_size);
        return false;
    }
    if ((s->logical_sector != 512 && s->logical_sector != 4096) ||
        (s->physical_sector != 512 && s->physical_sector != 4096)) {
        vd_set_error(error, EIO, "%s: invalid sector sizes %" PRIu32 "/%" PRIu32, img->name,
                     s->logical_sector, s->physical_sector);
        return false;
    }
    if (s->disk_size == 0 || s->disk_size > VHDX_MAX_DISK_SIZE ||
        s->disk_size % s->logical_sector != 0) {
        vd_set_error(error, EIO, "%s: invalid virtual disk size %" PRIu64, img->name, s->disk_size);
        return false;
    }
    img->logical_sector = s->logical_sector;
    if (s->has_parent && !(seen & 16)) {
        vd_set_error(error, EIO, "%s: differencing disk without a parent locator", img->name);
        return false;
    }
    return true;
}

static bool set_parent(VdImage *img, GError **error)
{
    VhdxState *s = img->opaque;
    g_autoptr(GPtrArray) c = g_ptr_array_new_with_free_func(g_free);
    /* The order the specification asks for. */
    vhd_path_candidates(s->parent_relative, c);
    vhd_path_candidates(s->parent_volume, c);
    vhd_path_candidates(s->parent_absolute, c);
    if (c->len == 0) {
        vd_set_error(error, ENOENT, "%s: differencing disk's parent locator holds no path",
                     img->name);
        return false;
    }
    const char *shown = s->parent_relative   ? s->parent_relative
                        : s->parent_absolute ? s->parent_absolute
                                             : s->parent_volume;
    vhd_set_parent(img, shown, "vhdx", c);
    return true;
}

static void vhdx_close(VdImage *img)
{
    VhdxState *s = img->opaque;
    if (s == NULL)
        return;
    vhdx_bat_free(s);
    vd_meta_map_free(s->meta);
    if (s->overlay != NULL) {
        for (guint i = 0; i < s->overlay->len; i++)
            g_free(g_array_index(s->overlay, VhdxOverlay, i).data);
        g_array_unref(s->overlay);
    }
    g_free(s->creator);
    g_free(s->parent_relative);
    g_free(s->parent_volume);
    g_free(s->parent_absolute);
    g_free(s);
    img->opaque = NULL;
}

/* The file up to its metadata items: identifier, headers, the log (replayed,
 * in memory when read-only), region tables, metadata region. */
static bool read_layout(VdImage *img, GError **error)
{
    VhdxState *s = img->opaque;
    uint8_t ident[520];
    if (!vd_host_size(img->fd, img->name, &s->file_size, error))
        return false;
    s->overlay_end = s->file_size;
    if (s->file_size < VHDX_REGION2_OFFSET + VHDX_REGION_SIZE) {
        vd_set_error(error, EIO, "%s: too small for a VHDX file", img->name);
        return false;
    }
    if (!vd_host_pread(img->fd, img->name, ident, sizeof ident, 0, false, error))
        return false;
    if (memcmp(ident, "vhdxfile", 8) != 0) {
        vd_set_error(error, EIO, "%s: no VHDX file type identifier", img->name);
        return false;
    }
    s->creator = vhd_utf16_to_utf8(ident + 8, 512, false);
    return read_headers(img, error) && vhdx_log_replay(img, error) && read_regions(img, error) &&
           read_metadata(img, error);
}

static VhdxState *state_new(VdImage *img)
{
    VhdxState *s = g_new0(VhdxState, 1);
    img->opaque = s;
    s->log_state = "clean";
    return s;
}

static bool vhdx_open(VdImage *img, GError **error)
{
    VhdxState *s = state_new(img);
    bool ok = false;
    if (!read_layout(img, error) || !vhdx_bat_init(img, error) ||
        (!img->read_only && !vhdx_write_init(img, error)))
        goto out;
    img->size = s->disk_size;
    if (s->has_parent && !set_parent(img, error))
        goto out;
    ok = true;
out:
    if (!ok)
        vhdx_close(img);
    return ok;
}

/* The size from the metadata region, as an open reads it (a dirty log is
 * replayed in memory, as on any read-only open); the BAT is not loaded and
 * the parent not looked for. The state lives only during the call. */
static bool vhdx_peek(VdImage *img, GError **error)
{
    VhdxState *s = state_new(img);
    bool ok = read_layout(img, error) && vhdx_bat_geometry(img, error);
    if (ok)
        img->size = s->disk_size;
    vhdx_close(img);
    return ok;
}

static void vhdx_describe(VdImage *img, VdInfo *info)
{
    VhdxState *s = img->opaque;
    const char *type = s->has_parent               ? "differencing"
                       : s->leave_blocks_allocated ? "fixed"
                                                   : "dynamic";
    vd_info_add_str(info, "disk_type", "%s", type);
    if (s->creator != NULL && *s->creator != '\0')
        vd_info_add_str(info, "creator", "%s", s->creator);
    vd_info_add_u64(info, "block_size", s->block_size);
    vd_info_add_u64(info, "cluster_size", s->block_size);
    vd_info_add_u64(info, "logical_sector_size", s->logical_sector);
    vd_info_add_u64(info, "physical_sector_size", s->physical_sector);
    vd_info_add_u64(info, "chunk_ratio", s->chunk_ratio);
    vd_info_add_u64(info, "log_size", s->log_length);
    vd_info_add_str(info, "log", "%s", s->log_state);
    if (s->log_entries_replayed > 0)
        vd_info_add_u64(info, "log_entries_replayed", s->log_entries_replayed);
    g_autofree char *p83 = vhd_guid_to_string(s->page83);
    vd_info_add_str(info, "page83_id", "%s", p83);
    g_autofree char *dwg = vhd_guid_to_string(s->data_write_guid);
    vd_info_add_str(info, "data_write_guid", "%s", dwg);
    if (s->has_parent) {
        g_autofree char *l = vhd_guid_to_string(s->parent_linkage);
        vd_info_add_str(info, "parent_linkage", "%s", l);
        if (s->have_linkage2) {
            g_autofree char *l2 = vhd_guid_to_string(s->parent_linkage2);
            vd_info_add_str(info, "parent_linkage2", "%s", l2);
        }
        if (s->parent_relative)
            vd_info_add_str(info, "parent_relative_path", "%s", s->parent_relative);
        if (s->parent_volume)
            vd_info_add_str(info, "parent_volume_path", "%s", s->parent_volume);
        if (s->parent_absolute)
            vd_info_add_str(info, "parent_absolute_win32_path", "%s", s->parent_absolute);
    }
    /* Block states, where the table is small enough to walk. */
    if (s->n_payload > (1u << 20))
        return;
    static const char *const names[8] = {
        "not_present", "undefined", "zero",          "unmapped",
        NULL,          "unmapped",  "fully_present", "partially_present"};
    uint64_t counts[8] = {0};
    for (uint64_t b = 0; b < s->n_payload; b++) {
        uint64_t e;
        if (!vhdx_bat_get(img, vhdx_payload_index(s, b), &e, NULL))
            return;
        counts[VHDX_BAT_STATE(e)]++;
    }
    for (int i = 0; i < 8; i++) {
        if (counts[i] > 0 && names[i] != NULL)
            vd_info_add_list_item(info, "block_states", "%s: %" PRIu64, names[i], counts[i]);
    }
}

static bool vhdx_check_backing(VdImage *img, VdImage *backing, GError **error)
{
    VhdxState *s = img->opaque;
    if (backing->driver != img->driver) {
        vd_set_error(error, EIO, "%s: parent %s is not a VHDX image", img->name, backing->name);
        return false;
    }
    VhdxState *p = backing->opaque;
    if (memcmp(p->data_write_guid, s->parent_linkage, 16) == 0 ||
        (s->have_linkage2 && memcmp(p->data_write_guid, s->parent_linkage2, 16) == 0))
        return true;
    g_autofree char *want = vhd_guid_to_string(s->parent_linkage);
    g_autofree char *got = vhd_guid_to_string(p->data_write_guid);
    vd_set_error(error, EIO,
                 "%s: parent %s has DataWriteGuid {%s}, but the parent linkage is {%s} "
                 "(the parent was modified or is another disk)",
                 img->name, backing->name, got, want);
    return false;
}

const VdDriver vd_vhdx_driver = {
    .name = "vhdx",
    .description = "VHDX: Microsoft Hyper-V virtual hard disk v2",
    .caps = VD_CAP_WRITE | VD_CAP_BACKING | VD_CAP_SERIAL_WRITES,
    .probe = vhdx_probe,
    .open = vhdx_open,
    .close = vhdx_close,
    .peek = vhdx_peek,
    .pread = vhdx_pread,
    .pwrite = vhdx_pwrite,
    .block_status = vhdx_block_status,
    .flush = vhdx_flush,
    .describe = vhdx_describe,
    .check_backing = vhdx_check_backing,
    .check = vhdx_check,
};
