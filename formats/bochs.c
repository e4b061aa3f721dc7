/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Bochs growing and redolog disk images (read-only). A 512-byte header
 * ("Bochs Virtual HD Image", type "Redolog", subtype "Growing",
 * "Undoable" or "Volatile"; little-endian fields), then a catalog of
 * 32-bit extent numbers (0xffffffff: not allocated), then the extents,
 * each a sector bitmap (padded to whole sectors; bit n, least significant
 * first, says whether sector n of the extent is stored) followed by the
 * extent's data.
 *
 * Growing images stand alone: what is not stored reads as zeros.
 * Undoable and volatile redologs record changes to a base image, which
 * Bochs names "<base>.redolog": what is not stored comes from the base.
 *
 * Header fields (offsets in bytes): magic 0 (32), type 32 (16), subtype
 * 48 (16), version 64 (0x00010000 or 0x00020000), header size 68,
 * catalog entries 72, bitmap bytes 76, extent bytes 80, then for version
 * 2 a base timestamp at 84 and the disk size at 88; version 1 has the
 * disk size at 84.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "src/vd-io.h"

#define BOCHS_MAGIC         "Bochs Virtual HD Image"
#define BOCHS_TYPE_REDOLOG  "Redolog"
#define BOCHS_HEADER_SIZE   512
#define BOCHS_SECTOR        512u
#define BOCHS_V1            0x00010000u
#define BOCHS_V2            0x00020000u
#define BOCHS_UNALLOCATED   0xffffffffu
#define BOCHS_MAX_EXTENT    (64u << 20)
#define BOCHS_MAX_CATALOG   (1u << 26) /* entries: 256 MiB of catalog */
#define BOCHS_REDOLOG_SUFFX ".redolog"

typedef enum { BOCHS_GROWING, BOCHS_UNDOABLE, BOCHS_VOLATILE } BochsKind;

typedef struct {
    BochsKind kind;
    uint32_t version;
    uint32_t header_size;
    uint32_t catalog_len; /* entries */
    uint32_t bitmap_size; /* bytes used for each extent's bitmap */
    uint32_t extent_size; /* bytes of data per extent */
    uint32_t timestamp;   /* version 2: the base image's time (undoable) */
    uint64_t disk_size;   /* as recorded */
    uint64_t data_offset; /* where extent 0 starts */
    uint64_t stride;      /* bytes per stored extent: bitmap sectors + data sectors */
    uint64_t bitmap_area; /* bitmap bytes rounded up to whole sectors */
    uint64_t file_size;
    uint32_t *catalog; /* immutable after open: read without a lock */
} BochsState;

static const char *const kind_names[] = {"growing", "undoable", "volatile"};

/* A NUL-padded header string field equals s. */
static bool field_is(const uint8_t *field, size_t len, const char *s)
{
    size_t n = strlen(s);
    if (n > len || memcmp(field, s, n) != 0)
        return false;
    for (size_t i = n; i < len; i++) {
        if (field[i] != 0)
            return false;
    }
    return true;
}

static int bochs_probe(const VdProbe *probe)
{
    if (probe->head_len < BOCHS_HEADER_SIZE)
        return VD_PROBE_NO;
    if (field_is(probe->head, 32, BOCHS_MAGIC) &&
        field_is(probe->head + 32, 16, BOCHS_TYPE_REDOLOG))
        return VD_PROBE_MAGIC;
    return VD_PROBE_NO;
}

static void bochs_close(VdImage *img)
{
    BochsState *s = img->opaque;
    if (s == NULL)
        return;
    g_free(s->catalog);
    g_free(s);
    img->opaque = NULL;
}

static bool parse_header(VdImage *img, BochsState *s, const uint8_t *h, GError **error)
{
    if (!field_is(h, 32, BOCHS_MAGIC) || !field_is(h + 32, 16, BOCHS_TYPE_REDOLOG)) {
        vd_set_error(error, EIO, "%s: not a Bochs redolog image (bad magic or type)", img->name);
        return false;
    }
    if (field_is(h + 48, 16, "Growing")) {
        s->kind = BOCHS_GROWING;
    } else if (field_is(h + 48, 16, "Undoable")) {
        s->kind = BOCHS_UNDOABLE;
    } else if (field_is(h + 48, 16, "Volatile")) {
        s->kind = BOCHS_VOLATILE;
    } else {
        char sub[17];
        for (int i = 0; i < 16; i++)
            sub[i] = g_ascii_isprint(h[48 + i]) ? (char)h[48 + i] : '\0';
        sub[16] = '\0';
        vd_set_error(error, ENOTSUP, "%s: unsupported Bochs redolog subtype \"%s\"", img->name,
                     sub);
        return false;
    }
    s->version = vd_le32(h + 64);
    s->header_size = vd_le32(h + 68);
    s->catalog_len = vd_le32(h + 72);
    s->bitmap_size = vd_le32(h + 76);
    s->extent_size = vd_le32(h + 80);
    if (s->version == BOCHS_V2) {
        s->timestamp = vd_le32(h + 84);
        s->disk_size = vd_le64(h + 88);
    } else if (s->version == BOCHS_V1) {
        s->disk_size = vd_le64(h + 84);
    } else {
        vd_set_error(error, ENOTSUP, "%s: unsupported Bochs header version 0x%08" PRIx32, img->name,
                     s->version);
        return false;
    }
    if (s->header_size < BOCHS_HEADER_SIZE || s->header_size > (1u << 20)) {
        vd_set_error(error, EIO, "%s: Bochs header size %" PRIu32 " is out of range", img->name,
                     s->header_size);
        return false;
    }
    if (s->extent_size < BOCHS_SECTOR || s->extent_size > BOCHS_MAX_EXTENT ||
        s->extent_size % BOCHS_SECTOR != 0) {
        vd_set_error(error, EIO, "%s: extent size %" PRIu32 " is invalid", img->name,
                     s->extent_size);
        return false;
    }
    uint64_t sectors_per_extent = s->extent_size / BOCHS_SECTOR;
    if ((uint64_t)s->bitmap_size * 8 < sectors_per_extent || s->bitmap_size > BOCHS_MAX_EXTENT) {
        vd_set_error(error, EIO,
                     "%s: bitmap of %" PRIu32 " bytes cannot cover an extent of %" PRIu32 " bytes",
                     img->name, s->bitmap_size, s->extent_size);
        return false;
    }
    if (s->catalog_len == 0 || s->catalog_len > BOCHS_MAX_CATALOG) {
        vd_set_error(error, EIO, "%s: catalog of %" PRIu32 " entries is out of range", img->name,
                     s->catalog_len);
        return false;
    }
    uint64_t size = s->disk_size / BOCHS_SECTOR * BOCHS_SECTOR;
    uint64_t need = size / s->extent_size + (size % s->extent_size != 0);
    if (size > INT64_MAX || need > s->catalog_len) {
        vd_set_error(error, EIO,
                     "%s: disk size %" PRIu64 " needs %" PRIu64
                     " extents, but the catalog has %" PRIu32,
                     img->name, s->disk_size, need, s->catalog_len);
        return false;
    }
    img->size = size;
    s->bitmap_area = ((uint64_t)s->bitmap_size + BOCHS_SECTOR - 1) / BOCHS_SECTOR * BOCHS_SECTOR;
    s->stride = s->bitmap_area + s->extent_size;
    s->data_offset = (uint64_t)s->header_size + (uint64_t)s->catalog_len * 4;
    return true;
}

/* The header, the catalog's place and, for redologs, the base image's
 * name (*parent, g_free): what open and peek share. */
static bool read_header(VdImage *img, BochsState *s, char **parent, GError **error)
{
    uint8_t h[BOCHS_HEADER_SIZE];
    if (!vd_host_size(img->fd, img->name, &s->file_size, error))
        return false;
    if (s->file_size < BOCHS_HEADER_SIZE) {
        vd_set_error(error, EIO, "%s: too small for a Bochs header", img->name);
        return false;
    }
    if (!vd_host_pread(img->fd, img->name, h, sizeof h, 0, false, error))
        return false;
    if (!parse_header(img, s, h, error))
        return false;
    uint64_t cat_bytes = (uint64_t)s->catalog_len * 4;
    if (!vd_range_within(s->header_size, cat_bytes, s->file_size)) {
        vd_set_error(error, EIO,
                     "%s: catalog (%" PRIu32 " entries at 0x%" PRIx32
                     ") lies past the end of the file",
                     img->name, s->catalog_len, s->header_size);
        return false;
    }
    *parent = NULL;
    if (s->kind != BOCHS_GROWING) {
        /* Bochs keeps a redolog beside its base, named <base>.redolog. */
        const char *base = strrchr(img->path, '/') ? strrchr(img->path, '/') + 1 : img->path;
        if (!g_str_has_suffix(base, BOCHS_REDOLOG_SUFFX) ||
            strlen(base) == strlen(BOCHS_REDOLOG_SUFFX)) {
            vd_set_error(error, ENOENT,
                         "%s: %s redolog whose name does not end in \"%s\": cannot tell its base "
                         "image",
                         img->name, kind_names[s->kind], BOCHS_REDOLOG_SUFFX);
            return false;
        }
        *parent = g_strndup(base, strlen(base) - strlen(BOCHS_REDOLOG_SUFFX));
    }
    return true;
}

static bool bochs_open(VdImage *img, GError **error)
{
    g_autofree uint8_t *raw = NULL;
    g_autofree char *parent = NULL;
    BochsState *s = g_new0(BochsState, 1);
    img->opaque = s;
    bool ok = false;
    if (!read_header(img, s, &parent, error))
        goto out;
    uint64_t cat_bytes = (uint64_t)s->catalog_len * 4;
    if (!vd_image_mem_reserve(img, cat_bytes, "catalog", error))
        goto out;
    raw = g_malloc(cat_bytes);
    if (!vd_host_pread(img->fd, img->name, raw, cat_bytes, s->header_size, false, error))
        goto out;
    s->catalog = g_new(uint32_t, s->catalog_len);
    for (uint32_t i = 0; i < s->catalog_len; i++)
        s->catalog[i] = vd_le32(raw + 4 * (uint64_t)i);
    if (parent != NULL)
        vd_image_set_backing(img, parent, NULL);
    ok = true;
out:
    if (!ok)
        bochs_close(img);
    return ok;
}

/* The header alone: the catalog is neither read nor allocated. */
static bool bochs_peek(VdImage *img, GError **error)
{
    BochsState s = {0};
    g_autofree char *parent = NULL;
    return read_header(img, &s, &parent, error);
}

/* Where extent idx is stored (0: not allocated). */
static bool extent_host(VdImage *img, uint64_t idx, uint64_t *host, GError **error)
{
    BochsState *s = img->opaque;
    uint32_t e = s->catalog[idx];
    if (e == BOCHS_UNALLOCATED) {
        *host = 0;
        return true;
    }
    uint64_t start = s->data_offset + (uint64_t)e * s->stride; /* e < 2^32, stride < 2^28 */
    if (!vd_range_within(start, s->bitmap_area, s->file_size)) {
        vd_set_error(error, EIO,
                     "%s: extent %" PRIu64 " (stored as %" PRIu32 " at 0x%" PRIx64
                     ") lies past the end of the file",
                     img->name, idx, e, start);
        return false;
    }
    *host = start;
    return true;
}

static bool bochs_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                               VdExtent *ext, GError **error)
{
    BochsState *s = img->opaque;
    uint64_t es = s->extent_size;
    uint64_t idx = offset / es, within = offset % es;
    VdExtentState absent = s->kind == BOCHS_GROWING ? VD_EXTENT_ZERO : VD_EXTENT_UNALLOCATED;
    uint64_t host;
    (void)flags;
    if (!extent_host(img, idx, &host, error))
        return false;
    if (host == 0) {
        uint64_t run = es - within;
        uint64_t n_ext = (vd_image_size(img) + es - 1) / es;
        while (run < length && idx + 1 < n_ext && s->catalog[idx + 1] == BOCHS_UNALLOCATED) {
            idx++;
            run += es;
        }
        *ext = (VdExtent){absent, vd_min_u64(run, length), -1, 0};
        return true;
    }
    /* The bitmap bits of the sectors in [within, within + n). */
    uint64_t n = vd_min_u64(es - within, length);
    uint64_t first = within / BOCHS_SECTOR, last = (within + n - 1) / BOCHS_SECTOR;
    uint64_t b0 = first / 8, b1 = last / 8;
    size_t nbytes = (size_t)(b1 - b0 + 1);
    g_autofree uint8_t *bits = g_malloc(nbytes);
    /* Bytes of a bitmap cut short by the end of the file read as zeros. */
    if (!vd_host_pread(img->fd, img->name, bits, nbytes, host + b0, true, error))
        return false;
    bool set = bits[first / 8 - b0] >> (first % 8) & 1;
    uint64_t sec = first + 1;
    while (sec <= last && (bool)(bits[sec / 8 - b0] >> (sec % 8) & 1) == set)
        sec++;
    uint64_t run = vd_min_u64(n, sec * BOCHS_SECTOR - within);
    if (!set) {
        *ext = (VdExtent){absent, run, -1, 0};
        return true;
    }
    /* Data past the end of a truncated file reads as zeros (QEMU does the same). */
    *ext = (VdExtent){VD_EXTENT_DATA, run, img->fd, host + s->bitmap_area + within};
    return true;
}

static void bochs_describe(VdImage *img, VdInfo *info)
{
    BochsState *s = img->opaque;
    vd_info_add_str(info, "bochs_type", "%s", kind_names[s->kind]);
    vd_info_add_str(info, "header_version", "%u", s->version >> 16);
    vd_info_add_u64(info, "extent_size", s->extent_size);
    vd_info_add_u64(info, "cluster_size", s->extent_size);
    vd_info_add_u64(info, "catalog_entries", s->catalog_len);
    uint64_t used = 0;
    for (uint32_t i = 0; i < s->catalog_len; i++)
        used += s->catalog[i] != BOCHS_UNALLOCATED;
    vd_info_add_u64(info, "allocated_extents", used);
    if (s->kind != BOCHS_GROWING && s->version == BOCHS_V2)
        vd_info_add_str(info, "base_timestamp", "0x%08" PRIx32, s->timestamp);
}

const VdDriver vd_bochs_driver = {
    .name = "bochs",
    .description = "Bochs growing and redolog disk image (read-only)",
    .caps = VD_CAP_BACKING,
    .probe = bochs_probe,
    .open = bochs_open,
    .close = bochs_close,
    .peek = bochs_peek,
    .block_status = bochs_block_status,
    .describe = bochs_describe,
};
