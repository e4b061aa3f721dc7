/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vdi: VirtualBox Disk Image, version 1.x headers. Dynamic (normal) and
 * static (fixed) base images, and differencing images (VirtualBox
 * snapshots) whose parent is the image whose creation UUID equals the
 * child's linkage UUID, found among the images of the same directory.
 *
 * This file: probing, the header and block map checks, block status,
 * identity (UUIDs) and description. Writes are in vdi-write.c.
 */
#include "config.h"

#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "formats/vdi.h"
#include "src/vd-claims.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "src/vd-io.h"

const char *vdi_type_name(uint32_t type)
{
    switch (type) {
    case VDI_TYPE_NORMAL:
        return "dynamic";
    case VDI_TYPE_FIXED:
        return "static";
    case VDI_TYPE_UNDO:
        return "undo";
    case VDI_TYPE_DIFF:
        return "differencing";
    }
    return "unknown";
}

/* VirtualBox stores UUIDs as Windows GUIDs: the first three fields little-endian. */
void vdi_format_uuid(const uint8_t *u, char out[37])
{
    g_snprintf(out, 37, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", vd_le32(u),
               vd_le16(u + 4), vd_le16(u + 6), u[8], u[9], u[10], u[11], u[12], u[13], u[14],
               u[15]);
}

static bool uuid_is_null(const uint8_t *u)
{
    return vd_buffer_is_zero(u, 16);
}

static int vdi_probe(const VdProbe *probe)
{
    if (probe->head_len < VDI_OFF_VERSION + 4)
        return VD_PROBE_NO;
    if (vd_le32(probe->head + VDI_OFF_SIGNATURE) != VDI_SIGNATURE)
        return VD_PROBE_NO;
    return VD_PROBE_MAGIC;
}

static void vdi_state_free(VdiState *s)
{
    if (s == NULL)
        return;
    g_free(s->bmap);
    g_clear_pointer(&s->retired_maps, g_ptr_array_unref);
    g_free(s->used);
    g_free(s->header);
    g_mutex_clear(&s->meta_lock);
    vd_meta_map_free(s->meta);
    g_free(s->layout_error);
    g_free(s->map_fault);
    g_free(s);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VdiState, vdi_state_free)

/* The fixed-size part of the header: sizes, offsets and their limits. */
static bool check_header(VdImage *img, VdiState *s, const uint8_t *h, uint64_t file_size,
                         uint64_t *disk_size, GError **error)
{
    uint32_t version = vd_le32(h + VDI_OFF_VERSION);
    if (version >> 16 != 1) {
        vd_set_error(error, ENOTSUP, "%s: VDI version %u.%u is not supported (only 1.x)", img->name,
                     version >> 16, version & 0xffff);
        return false;
    }
    s->type = vd_le32(h + VDI_OFF_TYPE);
    switch (s->type) {
    case VDI_TYPE_NORMAL:
    case VDI_TYPE_FIXED:
        break;
    case VDI_TYPE_UNDO:
    case VDI_TYPE_DIFF:
        s->differencing = true;
        break;
    default:
        vd_set_error(error, EIO, "%s: unknown VDI image type %u", img->name, s->type);
        return false;
    }
    s->off_blocks = vd_le32(h + VDI_OFF_BLOCKS);
    s->off_data = vd_le32(h + VDI_OFF_DATA);
    s->block_size = vd_le32(h + VDI_OFF_BLOCK_SIZE);
    s->block_extra = vd_le32(h + VDI_OFF_BLOCK_EXTRA);
    s->blocks = vd_le32(h + VDI_OFF_BLOCK_COUNT);
    *disk_size = vd_le64(h + VDI_OFF_DISK_SIZE);

    if (s->off_blocks < s->header_len) {
        vd_set_error(error, EIO, "%s: block map at 0x%" G_GINT64_MODIFIER "x overlaps the header",
                     img->name, s->off_blocks);
        return false;
    }
    if (s->block_size < VDI_MIN_BLOCK_SIZE || s->block_size > VDI_MAX_BLOCK_SIZE ||
        s->block_size % 512 != 0) {
        vd_set_error(error, EIO, "%s: block size %u is not a multiple of 512 from 512 to %u",
                     img->name, s->block_size, VDI_MAX_BLOCK_SIZE);
        return false;
    }
    if (s->block_extra > VDI_MAX_BLOCK_SIZE) {
        vd_set_error(error, EIO, "%s: %u bytes of extra data per block is absurd", img->name,
                     s->block_extra);
        return false;
    }
    s->slot_size = (uint64_t)s->block_size + s->block_extra;
    if (s->blocks > VDI_MAX_BLOCKS) {
        vd_set_error(error, EIO, "%s: block count %u exceeds the limit of %u", img->name, s->blocks,
                     VDI_MAX_BLOCKS);
        return false;
    }
    uint64_t map_end = s->off_blocks + (uint64_t)s->blocks * 4;
    if (map_end > file_size) {
        vd_set_error(error, EIO,
                     "%s: block map (%u entries at 0x%" G_GINT64_MODIFIER "x) lies beyond the "
                     "end of the file",
                     img->name, s->blocks, s->off_blocks);
        return false;
    }
    if (s->off_data < map_end) {
        /* Readable as the map says, but every allocation would land on
         * the header or the map. */
        s->layout_error = g_strdup_printf("%s: data area at 0x%" G_GINT64_MODIFIER
                                          "x overlaps the block map at 0x%" G_GINT64_MODIFIER "x",
                                          img->name, s->off_data, s->off_blocks);
    }
    if (*disk_size > (uint64_t)s->blocks * s->block_size || *disk_size > INT64_MAX) {
        vd_set_error(error, EIO,
                     "%s: disk size %" G_GUINT64_FORMAT " exceeds its %u blocks of %u bytes",
                     img->name, *disk_size, s->blocks, s->block_size);
        return false;
    }
    uint32_t allocated = vd_le32(h + VDI_OFF_BLOCKS_ALLOCATED);
    if (allocated > s->blocks) {
        vd_set_error(error, EIO, "%s: %u allocated blocks out of %u", img->name, allocated,
                     s->blocks);
        return false;
    }
    return true;
}

/* Read the block map and check every entry: a data block inside the file,
 * used once. Builds the write side's bitmap of used data blocks. */
/* A block map fault: the open fails, unless it is one for vdisk check
 * (img->for_check), which keeps the first fault (reads refuse to run) and
 * goes on, so that the check can count them all as qemu-img does. */
static bool map_fault(VdImage *img, VdiState *s, GError **error, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

static bool map_fault(VdImage *img, VdiState *s, GError **error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (!img->for_check) {
        vd_set_error(error, EIO, "%s", msg);
        return false;
    }
    if (s->map_fault == NULL)
        s->map_fault = g_steal_pointer(&msg);
    return true;
}

static bool load_block_map(VdImage *img, VdiState *s, uint64_t file_size, GError **error)
{
    size_t map_bytes = (size_t)s->blocks * 4;
    if (!vd_image_mem_reserve(img, map_bytes, "block map", error))
        return false;
    g_autofree uint8_t *raw = g_malloc(map_bytes ? map_bytes : 1);
    if (!vd_host_pread(img->fd, img->name, raw, map_bytes, s->off_blocks, false, error))
        return false;
    s->bmap = g_new(uint32_t, s->blocks ? s->blocks : 1);
    s->used_capacity = s->blocks;
    s->used = g_malloc0((s->blocks + 7) / 8 + 1);
    for (uint32_t i = 0; i < s->blocks; i++) {
        uint32_t e = vd_le32(raw + (size_t)i * 4);
        s->bmap[i] = e;
        if (!vdi_entry_allocated(e))
            continue;
        if (e >= s->blocks) {
            if (!map_fault(img, s, error,
                           "%s: block %u maps to data block %u, beyond the image's %u blocks",
                           img->name, i, e, s->blocks))
                return false;
            continue;
        }
        uint64_t end = s->off_data + ((uint64_t)e + 1) * s->slot_size;
        if (end > file_size &&
            !map_fault(img, s, error,
                       "%s: data block %u of block %u lies beyond the end of the file", img->name,
                       e, i))
            return false;
        if (s->used[e / 8] & (1u << (e % 8))) {
            /* Find the first owner only now, for the message. */
            uint32_t first = 0;
            while (first < i && s->bmap[first] != e)
                first++;
            if (!map_fault(img, s, error, "%s: data block %u is used by both block %u and block %u",
                           img->name, e, first, i))
                return false;
            continue;
        }
        s->used[e / 8] |= (uint8_t)(1u << (e % 8));
        s->allocated++;
    }
    return true;
}

/* The pre-header and header into a new state: what open and peek share. */
static VdiState *read_header(VdImage *img, uint64_t *file_size, uint64_t *disk_size, GError **error)
{
    if (!vd_host_size(img->fd, img->name, file_size, error))
        return NULL;
    uint8_t pre[VDI_OFF_TYPE];
    if (!vd_host_pread(img->fd, img->name, pre, sizeof pre, 0, false, error))
        return NULL;
    if (vd_le32(pre + VDI_OFF_SIGNATURE) != VDI_SIGNATURE) {
        vd_set_error(error, EMEDIUMTYPE, "%s: not a VDI image (no signature)", img->name);
        return NULL;
    }
    uint32_t version = vd_le32(pre + VDI_OFF_VERSION);
    if (version >> 16 != 1) {
        vd_set_error(error, ENOTSUP, "%s: VDI version %u.%u is not supported (only 1.x)", img->name,
                     version >> 16, version & 0xffff);
        return NULL;
    }
    uint32_t cb_header = vd_le32(pre + VDI_OFF_HEADER_SIZE);
    if (cb_header < VDI_HEADER_V1_SIZE || cb_header > VDI_HEADER_MAX - VDI_OFF_HEADER_SIZE) {
        vd_set_error(error, EIO, "%s: VDI header size %u is out of range", img->name, cb_header);
        return NULL;
    }

    g_autoptr(VdiState) s = g_new0(VdiState, 1);
    g_mutex_init(&s->meta_lock);
    s->header_len = VDI_OFF_HEADER_SIZE + cb_header;
    s->header = g_malloc0(s->header_len);
    if (!vd_host_pread(img->fd, img->name, s->header, s->header_len, 0, false, error))
        return NULL;
    if (!check_header(img, s, s->header, *file_size, disk_size, error))
        return NULL;
    if (s->differencing && uuid_is_null(s->header + VDI_OFF_UUID_LINKAGE)) {
        vd_set_error(error, EIO, "%s: differencing image without a parent UUID", img->name);
        return NULL;
    }
    return g_steal_pointer(&s);
}

/* The metadata ranges no data write may touch. */
static void build_meta_map(VdImage *img, VdiState *s)
{
    uint64_t map_end = s->off_blocks + (uint64_t)s->blocks * 4;
    s->meta = vd_meta_map_new(img->name);
    vd_meta_map_add(s->meta, 0, s->header_bytes, "header", NULL);
    vd_meta_map_add(s->meta, s->off_blocks, MAX(map_end, s->off_data) - s->off_blocks, "block map",
                    NULL);
    g_autoptr(GError) err = NULL;
    /* check_header keeps the map after the header: this cannot fail, but
     * if it did the map still answers conservatively. */
    if (!vd_meta_map_seal(s->meta, &err) && s->layout_error == NULL)
        s->layout_error = g_strdup(err->message);
}

static bool vdi_open(VdImage *img, GError **error)
{
    uint64_t file_size, disk_size;
    g_autoptr(VdiState) s = read_header(img, &file_size, &disk_size, error);
    if (s == NULL)
        return false;
    s->header_bytes = s->header_len;
    if (s->off_blocks <= VDI_HEADER_MAX) {
        /* Keep the gap up to the block map too (see VdiState.header_bytes). */
        s->header = g_realloc(s->header, s->off_blocks);
        if (!vd_host_pread(img->fd, img->name, s->header + s->header_len,
                           s->off_blocks - s->header_len, s->header_len, false, error))
            return false;
        s->header_bytes = (uint32_t)s->off_blocks;
    }
    if (!load_block_map(img, s, file_size, error))
        return false;
    s->file_end = file_size;
    s->header_count_stale = s->allocated != vd_le32(s->header + VDI_OFF_BLOCKS_ALLOCATED);
    s->retired_maps = g_ptr_array_new_with_free_func(g_free);

    if (s->differencing) {
        const uint8_t *link = s->header + VDI_OFF_UUID_LINKAGE;
        char str[37];
        vdi_format_uuid(link, str);
        img->backing_by_uuid = true;
        memcpy(img->backing_uuid, link, 16);
        g_free(img->backing_name);
        img->backing_name = g_strdup_printf("{%s}", str);
        g_free(img->backing_format);
        img->backing_format = g_strdup("vdi");
    }
    build_meta_map(img, s);
    if (s->layout_error != NULL && !img->read_only)
        vd_image_set_corrupt(img, "%s", s->layout_error);
    img->size = disk_size;
    img->opaque = g_steal_pointer(&s);
    return true;
}

/* Header only: the block map is neither read nor allocated. */
static bool vdi_peek(VdImage *img, GError **error)
{
    uint64_t file_size, disk_size;
    g_autoptr(VdiState) s = read_header(img, &file_size, &disk_size, error);
    if (s == NULL)
        return false;
    img->size = disk_size;
    return true;
}

static void vdi_close(VdImage *img)
{
    vdi_state_free(img->opaque);
    img->opaque = NULL;
}

static bool vdi_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                             VdExtent *ext, GError **error)
{
    VdiState *s = img->opaque;
    if (s->map_fault != NULL) {
        /* Opened for vdisk check only: this map cannot be trusted. */
        vd_set_error(error, EIO, "%s", s->map_fault);
        return false;
    }
    const uint32_t *bmap = __atomic_load_n(&s->bmap, __ATOMIC_ACQUIRE);
    uint32_t blocks = __atomic_load_n(&s->blocks, __ATOMIC_ACQUIRE);
    uint64_t block = offset / s->block_size;
    uint64_t in_block = offset % s->block_size;
    if (block >= blocks) {
        /* Only while a truncate is being published; the size check says it is zeros. */
        ext->state = VD_EXTENT_ZERO;
        ext->length = length;
        return true;
    }
    uint32_t e = __atomic_load_n(&bmap[block], __ATOMIC_ACQUIRE);
    VdExtentState state = vdi_entry_allocated(e) ? VD_EXTENT_DATA
                          : e == VDI_BLOCK_ZERO  ? VD_EXTENT_ZERO
                                                 : VD_EXTENT_UNALLOCATED;
    ext->state = state;
    ext->fd = img->fd;
    if (state == VD_EXTENT_DATA)
        ext->host_offset = s->off_data + (uint64_t)e * s->slot_size + s->block_extra + in_block;
    uint64_t run = vd_min_u64(length, s->block_size - in_block);
    /* Extend over following blocks in the same state (data: contiguous on the host). */
    while (run < length && ++block < blocks) {
        uint32_t n = __atomic_load_n(&bmap[block], __ATOMIC_ACQUIRE);
        if (state == VD_EXTENT_DATA) {
            if (s->block_extra != 0 || !vdi_entry_allocated(n) || n != e + 1)
                break;
            e = n;
        } else if (vdi_entry_allocated(n) || (n == VDI_BLOCK_ZERO) != (state == VD_EXTENT_ZERO)) {
            break;
        }
        run = vd_min_u64(length, run + s->block_size);
    }
    ext->length = run;
    (void)flags;
    (void)error;
    return true;
}

static bool vdi_get_uuid(VdImage *img, uint8_t uuid[16])
{
    VdiState *s = img->opaque;
    g_mutex_lock(&s->meta_lock);
    memcpy(uuid, s->header + VDI_OFF_UUID_CREATE, 16);
    g_mutex_unlock(&s->meta_lock);
    return true;
}

/* The parent must not have changed since the child was made: VirtualBox
 * records the parent's modification UUID in the child. */
static bool vdi_check_backing(VdImage *img, VdImage *backing, GError **error)
{
    VdiState *s = img->opaque;
    if (backing->driver != img->driver) {
        vd_set_error(error, EIO, "%s: parent %s is not a VDI image", img->name, backing->name);
        return false;
    }
    VdiState *p = backing->opaque;
    uint8_t want[16], have[16];
    g_mutex_lock(&s->meta_lock);
    memcpy(want, s->header + VDI_OFF_UUID_PARENT_MODIFY, 16);
    g_mutex_unlock(&s->meta_lock);
    g_mutex_lock(&p->meta_lock);
    memcpy(have, p->header + VDI_OFF_UUID_MODIFY, 16);
    g_mutex_unlock(&p->meta_lock);
    if (uuid_is_null(want) || uuid_is_null(have) || memcmp(want, have, 16) == 0)
        return true;
    char ws[37], hs[37];
    vdi_format_uuid(want, ws);
    vdi_format_uuid(have, hs);
    vd_set_error(error, EIO,
                 "%s: parent %s was modified after this differencing image was made "
                 "(modification UUID {%s}, expected {%s})",
                 img->name, backing->name, hs, ws);
    return false;
}

static void add_uuid(VdInfo *info, const char *key, const uint8_t *u)
{
    char str[37];
    vdi_format_uuid(u, str);
    vd_info_add_str(info, key, "%s", str);
}

static void vdi_describe(VdImage *img, VdInfo *info)
{
    VdiState *s = img->opaque;
    g_mutex_lock(&s->meta_lock);
    const uint8_t *h = s->header;
    uint32_t version = vd_le32(h + VDI_OFF_VERSION);
    vd_info_add_str(info, "vdi_type", "%s", vdi_type_name(s->type));
    vd_info_add_str(info, "vdi_version", "%u.%u", version >> 16, version & 0xffff);
    vd_info_add_u64(info, "cluster_size", s->block_size);
    if (s->block_extra != 0)
        vd_info_add_u64(info, "block_extra_bytes", s->block_extra);
    vd_info_add_u64(info, "blocks", s->blocks);
    vd_info_add_u64(info, "allocated_blocks", s->allocated);
    add_uuid(info, "uuid", h + VDI_OFF_UUID_CREATE);
    add_uuid(info, "modification_uuid", h + VDI_OFF_UUID_MODIFY);
    if (s->differencing) {
        add_uuid(info, "parent_uuid", h + VDI_OFF_UUID_LINKAGE);
        add_uuid(info, "parent_modification_uuid", h + VDI_OFF_UUID_PARENT_MODIFY);
    }
    char comment[VDI_COMMENT_LEN + 1];
    memcpy(comment, h + VDI_OFF_COMMENT, VDI_COMMENT_LEN);
    comment[VDI_COMMENT_LEN] = '\0';
    if (comment[0] != '\0' && g_utf8_validate(comment, -1, NULL))
        vd_info_add_str(info, "comment", "%s", comment);
    if (s->header_count_stale)
        vd_info_add_bool(info, "allocated_count_stale", true);
    uint32_t cyl = vd_le32(h + VDI_OFF_CYLINDERS), heads = vd_le32(h + VDI_OFF_HEADS);
    uint32_t secs = vd_le32(h + VDI_OFF_SECTORS);
    if (cyl != 0 && heads != 0 && secs != 0)
        vd_info_add_str(info, "geometry", "%u/%u/%u", cyl, heads, secs);
    g_mutex_unlock(&s->meta_lock);
}

/* vdisk check, counted as qemu-img check (7.2) counts for VDI: each
 * entry that is beyond the block count, or that shares a data block with
 * an earlier entry, is a corruption, and so is a header whose allocated
 * count differs from the entries (the shared ones counted, those beyond
 * not). It has no leaks and does not compare the map with the file size. */
static bool vdi_check(VdImage *img, VdCheckReport *report, GError **error)
{
    VdiState *s = img->opaque;
    g_autoptr(VdClaims) used = vd_claims_new(img, s->blocks, error);
    if (used == NULL)
        return false;
    uint32_t counted = 0;
    for (uint32_t i = 0; i < s->blocks; i++) {
        uint32_t e = s->bmap[i];
        if (!vdi_entry_allocated(e))
            continue;
        if (e >= s->blocks) {
            g_ptr_array_add(report->lines,
                            g_strdup_printf("ERROR: block index %u too large, is %u", i, e));
            report->corruptions++;
            continue;
        }
        if (!vd_claims_take(used, e, 1)) {
            /* qemu-img 7.2 names the data block twice, not the entries. */
            g_ptr_array_add(report->lines,
                            g_strdup_printf("ERROR: block index %u also used by %u", e, e));
            report->corruptions++;
        }
        counted++;
    }
    uint32_t header = vd_le32(s->header + VDI_OFF_BLOCKS_ALLOCATED);
    if (counted != header) {
        g_ptr_array_add(report->lines,
                        g_strdup_printf("ERROR: allocated blocks mismatch, is %u, should be %u",
                                        counted, header));
        report->corruptions++;
    }
    return true;
}

const VdDriver vd_vdi_driver = {
    .name = "vdi",
    .description = "VirtualBox VDI (dynamic, static and differencing)",
    .caps = VD_CAP_WRITE | VD_CAP_BACKING | VD_CAP_SERIAL_WRITES,
    .probe = vdi_probe,
    .open = vdi_open,
    .close = vdi_close,
    .peek = vdi_peek,
    .pwrite = vdi_pwrite,
    .block_status = vdi_block_status,
    .flush = vdi_flush,
    .write_zeroes = vdi_write_zeroes,
    .truncate = vdi_truncate,
    .describe = vdi_describe,
    .check_backing = vdi_check_backing,
    .check = vdi_check,
    .get_uuid = vdi_get_uuid,
};
