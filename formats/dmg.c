/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * DMG: Apple's Universal Disk Image Format (UDIF; read-only). A 512-byte
 * big-endian "koly" trailer ends the file: data fork offset (24), resource
 * fork offset and length (40, 48), segment count (60), XML property list
 * offset and length (216, 224), image variant (488) and the disk's sector
 * count (492). The property list (or, in older images, the resource fork)
 * holds "blkx" entries: mish block tables whose chunks map runs of disk
 * sectors to zeros, stored bytes, or compressed streams (dmg-parse.c,
 * dmg-decode.c). A chunk's bytes lie at data fork offset + the mish data
 * offset + the chunk's offset.
 *
 * Sectors that no chunk covers read as zeros (QEMU refuses to read them).
 * Zero and ignore chunks are holes; raw chunks are read in place;
 * compressed chunks are decoded whole, once however many readers want them
 * at the same time, and kept in a cache sized by the readers (vd-ro-cache.h).
 */
#include "config.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "formats/dmg.h"
#include "src/vd-ro-cache.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "src/vd-io.h"

#define KOLY_SIZE 512

typedef struct {
    DmgChunk *chunks; /* sorted by sector, disjoint; immutable after open */
    guint n_chunks;
    guint n_blkx;
    uint32_t variant;
    uint32_t version;
    bool from_xml;
    uint64_t data_fork_offset;
    VdRoCache *cache; /* decoded chunks, keyed by index (own lock) */
} DmgState;

static int dmg_probe(const VdProbe *probe)
{
    if (probe->tail_len == VD_PROBE_TAIL && probe->file_size >= KOLY_SIZE &&
        memcmp(probe->tail, "koly", 4) == 0 && vd_be32(probe->tail + 8) == KOLY_SIZE)
        return VD_PROBE_MAGIC;
    return VD_PROBE_NO;
}

static void dmg_close(VdImage *img)
{
    DmgState *s = img->opaque;
    if (s == NULL)
        return;
    g_free(s->chunks);
    vd_ro_cache_free(s->cache);
    g_free(s);
    img->opaque = NULL;
}

static bool is_zero_type(uint32_t t)
{
    return t == DMG_CHUNK_ZERO || t == DMG_CHUNK_IGNORE;
}

static int chunk_cmp(const void *a, const void *b)
{
    const DmgChunk *x = a, *y = b;
    return x->sector < y->sector ? -1 : x->sector > y->sector;
}

/* Read a metadata region (plist or resource fork) after checking it. */
static uint8_t *read_region(VdImage *img, const char *what, uint64_t off, uint64_t len,
                            uint64_t limit, GError **error)
{
    if (len > DMG_MAX_METADATA || !vd_range_within(off, len, limit)) {
        vd_set_error(error, EIO,
                     "%s: %s (%" PRIu64 " bytes at 0x%" PRIx64
                     ") is too large or lies outside the file",
                     img->name, what, len, off);
        return NULL;
    }
    uint8_t *buf = g_malloc(len + 1);
    if (!vd_host_pread(img->fd, img->name, buf, len, off, false, error)) {
        g_free(buf);
        return NULL;
    }
    buf[len] = 0;
    return buf;
}

/* Check every chunk against the disk and the file. */
static bool check_chunks(VdImage *img, DmgState *s, uint64_t sectors, uint64_t koly_off,
                         GError **error)
{
    uint64_t max_decoded = DMG_SECTOR;
    for (guint i = 0; i < s->n_chunks; i++) {
        const DmgChunk *c = &s->chunks[i];
        const char *tn = dmg_chunk_type_name(c->type);
        if (c->sector + c->sectors > sectors) {
            vd_set_error(error, EIO,
                         "%s: chunk at sector %" PRIu64 " (%" PRIu64
                         " sectors) lies past the disk's end (%" PRIu64 " sectors)",
                         img->name, c->sector, c->sectors, sectors);
            return false;
        }
        if (i > 0 && s->chunks[i - 1].sector + s->chunks[i - 1].sectors > c->sector) {
            vd_set_error(error, EIO, "%s: chunks overlap at sector %" PRIu64, img->name, c->sector);
            return false;
        }
        if (is_zero_type(c->type))
            continue;
        uint64_t bytes = c->sectors * DMG_SECTOR; /* < 2^64 by dmg_parse_mish */
        if (c->type == DMG_CHUNK_RAW) {
            if (c->length < bytes || !vd_range_within(c->offset, bytes, koly_off)) {
                vd_set_error(error, EIO,
                             "%s: raw chunk at sector %" PRIu64 " (0x%" PRIx64 ", %" PRIu64
                             " bytes) is short or lies outside the data",
                             img->name, c->sector, c->offset, c->length);
                return false;
            }
            continue;
        }
        if (bytes > DMG_MAX_DECODED || c->length > DMG_MAX_COMPRESSED ||
            !vd_range_within(c->offset, c->length, koly_off)) {
            vd_set_error(error, EIO,
                         "%s: %s chunk at sector %" PRIu64 " (%" PRIu64 " sectors from %" PRIu64
                         " bytes at 0x%" PRIx64 ") is too large or lies outside the data",
                         img->name, tn ? tn : "unknown", c->sector, c->sectors, c->length,
                         c->offset);
            return false;
        }
        max_decoded = MAX(max_decoded, bytes);
    }
    s->cache = vd_ro_cache_new(img->ctx->decode_cache_bytes, max_decoded);
    return true;
}

static bool load_chunks(VdImage *img, DmgState *s, const uint8_t *koly, uint64_t koly_off,
                        GError **error)
{
    uint64_t rsrc_off = vd_be64(koly + 40), rsrc_len = vd_be64(koly + 48);
    uint64_t xml_off = vd_be64(koly + 216), xml_len = vd_be64(koly + 224);
    g_autoptr(GPtrArray) blobs = NULL;
    if (xml_len != 0) {
        g_autofree uint8_t *xml =
            read_region(img, "XML property list", xml_off, xml_len, koly_off, error);
        if (xml == NULL ||
            !dmg_plist_blkx(img->name, (const char *)xml, (size_t)xml_len, &blobs, error))
            return false;
        s->from_xml = true;
    } else if (rsrc_len != 0) {
        g_autofree uint8_t *fork =
            read_region(img, "resource fork", rsrc_off, rsrc_len, koly_off, error);
        if (fork == NULL || !dmg_rsrc_blkx(img->name, fork, (size_t)rsrc_len, &blobs, error))
            return false;
    } else {
        vd_set_error(error, EIO,
                     "%s: the koly trailer names neither a property list nor a "
                     "resource fork",
                     img->name);
        return false;
    }
    g_autoptr(GArray) chunks = g_array_new(FALSE, FALSE, sizeof(DmgChunk));
    for (guint i = 0; i < blobs->len; i++) {
        gsize n;
        const uint8_t *b = g_bytes_get_data(g_ptr_array_index(blobs, i), &n);
        if (n >= 4 && memcmp(b, "mish", 4) == 0)
            s->n_blkx++;
        if (!dmg_parse_mish(img->name, b, n, s->data_fork_offset, chunks, error))
            return false;
    }
    s->n_chunks = chunks->len;
    s->chunks = (DmgChunk *)(void *)g_array_free(g_steal_pointer(&chunks), FALSE);
    if (s->n_chunks > 1)
        qsort(s->chunks, s->n_chunks, sizeof(DmgChunk), chunk_cmp);
    return true;
}

/* The koly trailer, checked as far as the disk's size and layout go. */
typedef struct {
    uint8_t raw[KOLY_SIZE];
    uint64_t offset;  /* where it lies: the end of the data */
    uint64_t sectors; /* the disk's size */
} Koly;

static bool read_koly(VdImage *img, Koly *k, GError **error)
{
    uint64_t file_size;
    if (!vd_host_size(img->fd, img->name, &file_size, error))
        return false;
    if (file_size < KOLY_SIZE) {
        vd_set_error(error, EIO, "%s: too small for a koly trailer", img->name);
        return false;
    }
    k->offset = file_size - KOLY_SIZE;
    if (!vd_host_pread(img->fd, img->name, k->raw, KOLY_SIZE, k->offset, false, error))
        return false;
    if (memcmp(k->raw, "koly", 4) != 0 || vd_be32(k->raw + 8) != KOLY_SIZE) {
        vd_set_error(error, EIO, "%s: no koly trailer at the end of the file", img->name);
        return false;
    }
    uint32_t segments = vd_be32(k->raw + 60);
    uint64_t data_fork_offset = vd_be64(k->raw + 24);
    k->sectors = vd_be64(k->raw + 492);
    if (segments > 1) {
        vd_set_error(error, ENOTSUP, "%s: segmented image (%" PRIu32 " segments)", img->name,
                     segments);
        return false;
    }
    if (data_fork_offset > k->offset) {
        vd_set_error(error, EIO, "%s: data fork at 0x%" PRIx64 " lies past the trailer", img->name,
                     data_fork_offset);
        return false;
    }
    if (k->sectors > (uint64_t)INT64_MAX / DMG_SECTOR) {
        vd_set_error(error, EIO, "%s: sector count %" PRIu64 " is too large", img->name,
                     k->sectors);
        return false;
    }
    return true;
}

static bool dmg_open(VdImage *img, GError **error)
{
    Koly k;
    if (!read_koly(img, &k, error))
        return false;
    DmgState *s = g_new0(DmgState, 1);
    img->opaque = s;
    s->version = vd_be32(k.raw + 4);
    s->variant = vd_be32(k.raw + 488);
    s->data_fork_offset = vd_be64(k.raw + 24);
    if (!load_chunks(img, s, k.raw, k.offset, error) ||
        !check_chunks(img, s, k.sectors, k.offset, error)) {
        dmg_close(img);
        return false;
    }
    img->size = k.sectors * DMG_SECTOR;
    return true;
}

/* The size is the trailer's: no block tables, no cache. */
static bool dmg_peek(VdImage *img, GError **error)
{
    Koly k;
    if (!read_koly(img, &k, error))
        return false;
    img->size = k.sectors * DMG_SECTOR;
    return true;
}

/* Index of the first chunk that ends after sector sec (n_chunks if none). */
static guint find_chunk(const DmgState *s, uint64_t sec)
{
    guint lo = 0, hi = s->n_chunks;
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        if (s->chunks[mid].sector + s->chunks[mid].sectors > sec)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static bool dmg_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                             VdExtent *ext, GError **error)
{
    DmgState *s = img->opaque;
    uint64_t want_end = offset + length; /* <= size */
    guint i = find_chunk(s, offset / DMG_SECTOR);
    const DmgChunk *c = i < s->n_chunks ? &s->chunks[i] : NULL;
    (void)flags;
    (void)error;
    if (c == NULL || c->sector * DMG_SECTOR > offset || is_zero_type(c->type)) {
        /* A hole: gaps and zero chunks, merged. */
        uint64_t end = offset;
        while (end < want_end) {
            if (i >= s->n_chunks) {
                end = want_end;
                break;
            }
            c = &s->chunks[i];
            if (c->sector * DMG_SECTOR > end) {
                end = c->sector * DMG_SECTOR; /* gap up to this chunk */
                continue;
            }
            if (!is_zero_type(c->type))
                break;
            end = (c->sector + c->sectors) * DMG_SECTOR;
            i++;
        }
        *ext = (VdExtent){VD_EXTENT_ZERO, vd_min_u64(end, want_end) - offset, -1, 0};
        return true;
    }
    uint64_t within = offset - c->sector * DMG_SECTOR;
    uint64_t end = (c->sector + c->sectors) * DMG_SECTOR;
    if (c->type != DMG_CHUNK_RAW) {
        *ext = (VdExtent){VD_EXTENT_DATA_DECODE, vd_min_u64(end, want_end) - offset, -1, 0};
        return true;
    }
    /* Stored in place: merge following raw chunks that continue in the file. */
    uint64_t host_next = c->offset + c->sectors * DMG_SECTOR;
    for (guint j = i + 1; j < s->n_chunks && end < want_end; j++) {
        const DmgChunk *d = &s->chunks[j];
        if (d->type != DMG_CHUNK_RAW || d->sector * DMG_SECTOR != end || d->offset != host_next)
            break;
        end += d->sectors * DMG_SECTOR;
        host_next += d->sectors * DMG_SECTOR;
    }
    *ext =
        (VdExtent){VD_EXTENT_DATA, vd_min_u64(end, want_end) - offset, img->fd, c->offset + within};
    return true;
}

/* Read and decode chunk key of img (a VdRoDecodeFunc). */
static GBytes *decode_chunk(gpointer user, uint64_t key, GError **error)
{
    VdImage *img = user;
    DmgState *s = img->opaque;
    const DmgChunk *c = &s->chunks[key];
    g_autofree char *what = g_strdup_printf("%s: chunk at sector %" PRIu64, img->name, c->sector);
    if (!dmg_chunk_type_supported(c->type))
        return dmg_decode(what, c->type, NULL, 0, 0, error); /* the ENOTSUP error */
    g_autofree uint8_t *in = g_malloc(c->length + 1);
    if (!vd_host_pread(img->fd, img->name, in, c->length, c->offset, false, error))
        return NULL;
    return dmg_decode(what, c->type, in, c->length, c->sectors * DMG_SECTOR, error);
}

/* Decoded once however many readers want it at the same time. */
static GBytes *chunk_data(VdImage *img, guint i, GError **error)
{
    DmgState *s = img->opaque;
    return vd_ro_cache_fetch(s->cache, i, decode_chunk, img, error);
}

static bool dmg_pread(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error)
{
    DmgState *s = img->opaque;
    uint8_t *p = buf;
    while (len > 0) {
        guint i = find_chunk(s, offset / DMG_SECTOR);
        const DmgChunk *c = i < s->n_chunks ? &s->chunks[i] : NULL;
        if (c == NULL || c->sector * DMG_SECTOR > offset) {
            uint64_t gap_end = c ? c->sector * DMG_SECTOR : UINT64_MAX;
            size_t n = (size_t)vd_min_u64(len, gap_end - offset);
            memset(p, 0, n);
            p += n, offset += n, len -= n;
            continue;
        }
        uint64_t within = offset - c->sector * DMG_SECTOR;
        size_t n = (size_t)vd_min_u64(len, c->sectors * DMG_SECTOR - within);
        if (is_zero_type(c->type)) {
            memset(p, 0, n);
        } else if (c->type == DMG_CHUNK_RAW) {
            if (!vd_host_pread(img->fd, img->name, p, n, c->offset + within, true, error))
                return false;
        } else {
            g_autoptr(GBytes) b = chunk_data(img, i, error);
            if (b == NULL)
                return false;
            memcpy(p, (const uint8_t *)g_bytes_get_data(b, NULL) + within, n);
        }
        p += n, offset += n, len -= n;
    }
    return true;
}

static void dmg_describe(VdImage *img, VdInfo *info)
{
    DmgState *s = img->opaque;
    vd_info_add_u64(info, "udif_version", s->version);
    vd_info_add_u64(info, "image_variant", s->variant);
    vd_info_add_str(info, "block_tables", "%s",
                    s->from_xml ? "XML property list" : "resource fork");
    vd_info_add_u64(info, "blkx_tables", s->n_blkx);
    vd_info_add_u64(info, "chunks", s->n_chunks);
    /* Chunk counts by type, e.g. "zlib: 12". */
    static const uint32_t types[] = {DMG_CHUNK_ZERO,  DMG_CHUNK_RAW,  DMG_CHUNK_IGNORE,
                                     DMG_CHUNK_ADC,   DMG_CHUNK_ZLIB, DMG_CHUNK_BZIP2,
                                     DMG_CHUNK_LZFSE, DMG_CHUNK_LZMA};
    guint known = 0;
    for (size_t t = 0; t < G_N_ELEMENTS(types); t++) {
        guint n = 0;
        for (guint i = 0; i < s->n_chunks; i++)
            n += s->chunks[i].type == types[t];
        known += n;
        if (n > 0)
            vd_info_add_list_item(info, "chunk_types", "%s: %u%s", dmg_chunk_type_name(types[t]), n,
                                  is_zero_type(types[t]) || types[t] == DMG_CHUNK_RAW ||
                                          dmg_chunk_type_supported(types[t])
                                      ? ""
                                      : " (unsupported)");
    }
    if (known < s->n_chunks)
        vd_info_add_list_item(info, "chunk_types", "unknown: %u (unsupported)",
                              s->n_chunks - known);
}

const VdDriver vd_dmg_driver = {
    .name = "dmg",
    .description = "DMG: Apple UDIF disk image (raw, zero, zlib, bzip2, LZMA, ADC; read-only)",
    .caps = 0,
    .probe = dmg_probe,
    .tail_extensions = (const char *const[]){"dmg", NULL},
    .open = dmg_open,
    .close = dmg_close,
    .peek = dmg_peek,
    .pread = dmg_pread,
    .block_status = dmg_block_status,
    .describe = dmg_describe,
};
