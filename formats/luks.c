/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * luks: a raw disk inside a LUKS container (QEMU's "luks" format, and what
 * cryptsetup luksFormat makes of a plain file, LUKS1 or LUKS2). The header and key slots
 * come first; the payload, encrypted sector by sector with IVs counted from
 * 0 at its start, is the disk. Key handling is src/vd-luks.c; this file
 * maps disk offsets onto payload sectors. Writes change no metadata: they
 * encrypt whole sectors in place, reading back and merging partial ones,
 * and never land on the header or key material (a VdMetaMap of them).
 */
#include "config.h"

#include <string.h>

#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "src/vd-io.h"
#include "src/vd-luks.h"
#include "src/vd-metamap.h"

/* Decoded reads are cut at this size, so that large ones decrypt in
 * parallel on the decode pool. */
#define LUKS_DECODE_UNIT (64u * 1024)
/* The bounce buffer of a write. */
#define LUKS_WRITE_CHUNK (1u << 20)

typedef struct {
    VdLuks *luks;
    uint64_t payload; /* host offset of the disk's first byte */
    uint32_t sector;  /* encryption sector size */
    VdMetaMap *meta;  /* header and key material (writable opens) */
} LuksState;

static void luks_state_free(LuksState *s)
{
    if (s == NULL)
        return;
    vd_luks_unref(s->luks);
    vd_meta_map_free(s->meta);
    g_free(s);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LuksState, luks_state_free)

static int luks_probe(const VdProbe *probe)
{
    if (probe->head_len < 8 || memcmp(probe->head, VD_LUKS_MAGIC, VD_LUKS_MAGIC_LEN) != 0)
        return VD_PROBE_NO;
    uint16_t version = (uint16_t)(probe->head[6] << 8 | probe->head[7]);
    return version == 1 || version == 2 ? VD_PROBE_MAGIC : VD_PROBE_NO;
}

static bool build_meta_map(VdImage *img, LuksState *s, GError **error)
{
    s->meta = vd_meta_map_new(img->name);
    vd_luks_add_meta(s->luks, s->meta, 0);
    g_autoptr(GError) err = NULL;
    if (!vd_meta_map_seal(s->meta, &err)) {
        vd_set_error(error, EIO, "%s", err->message);
        return false;
    }
    /* The payload must not start inside the header or key material:
     * otherwise data writes there would destroy the key slots. */
    VdMetaRange hit;
    if (vd_meta_map_find(s->meta, s->payload, UINT64_MAX - s->payload, &hit)) {
        vd_set_error(error, EIO,
                     "%s: LUKS payload at 0x%" G_GINT64_MODIFIER
                     "x overlaps the %s at 0x%" G_GINT64_MODIFIER "x",
                     img->name, s->payload, hit.what, hit.start);
        return false;
    }
    return true;
}

/* The header, where the payload lies, how large the disk is and whether
 * it may be written: what open (warn set) and peek share. */
static LuksState *read_header(VdImage *img, bool warn, GError **error)
{
    uint64_t file_size;
    if (!vd_host_size(img->fd, img->name, &file_size, error))
        return NULL;
    g_autoptr(LuksState) s = g_new0(LuksState, 1);
    s->luks = vd_luks_parse(img->fd, img->name, 0, file_size, error);
    if (s->luks == NULL)
        return NULL;
    s->payload = vd_luks_payload_offset(s->luks);
    s->sector = vd_luks_sector_size(s->luks);
    if (s->payload > file_size || s->payload % s->sector != 0) {
        vd_set_error(error, EIO,
                     "%s: LUKS payload offset 0x%" G_GINT64_MODIFIER
                     "x is unaligned or lies beyond the end of the file (%" G_GUINT64_FORMAT
                     " bytes)",
                     img->name, s->payload, file_size);
        return NULL;
    }
    uint64_t size = vd_luks_payload_size(s->luks);
    if (size == 0) {
        /* The rest of the file, in whole sectors: a partial last sector
         * cannot be decrypted. */
        size = (file_size - s->payload) / s->sector * s->sector;
    } else if (!vd_range_within(s->payload, size, file_size) || size % s->sector != 0) {
        vd_set_error(error, EIO,
                     "%s: LUKS segment of %" G_GUINT64_FORMAT " bytes at 0x%" G_GINT64_MODIFIER
                     "x is unaligned or lies beyond the end of the file",
                     img->name, size, s->payload);
        return NULL;
    }
    img->size = size;
    g_autoptr(GError) layout = NULL;
    if (!build_meta_map(img, s, &layout)) {
        /* Readable, but a write could land on the key slots. */
        if (warn && !img->read_only)
            g_warning("%s; serving the image read-only", layout->message);
        vd_image_refuse_writes(img);
    }
    return g_steal_pointer(&s);
}

static bool luks_open(VdImage *img, GError **error)
{
    g_autoptr(LuksState) s = read_header(img, true, error);
    if (s == NULL)
        return false;
    /* Like an encrypted qcow2: without a passphrase the open fails with
     * EACCES and the reason, except where the opener describes images
     * without their key (vdisk): then every data read fails with EACCES
     * and the image is never written. */
    char *pass;
    if (!vd_luks_passphrase(img->ctx, img->name, &pass, error))
        return false;
    bool ok = pass == NULL || vd_luks_unlock(s->luks, img->ctx, img->fd, pass, error);
    vd_secret_free(pass);
    if (!ok)
        return false;
    if (vd_luks_locked(s->luks))
        vd_image_refuse_writes(img);
    img->decode_unit = LUKS_DECODE_UNIT;
    img->opaque = g_steal_pointer(&s);
    return true;
}

static bool luks_peek(VdImage *img, GError **error)
{
    g_autoptr(LuksState) s = read_header(img, false, error);
    return s != NULL;
}

static void luks_close(VdImage *img)
{
    luks_state_free(img->opaque);
    img->opaque = NULL;
}

static bool luks_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                              VdExtent *ext, GError **error)
{
    /* Every byte is ciphertext: nothing is a hole, nothing can be handed
     * out as it lies. */
    ext->state = VD_EXTENT_DATA_DECODE;
    ext->length = length;
    return true;
}

/* Read and decrypt the whole sectors [start, start + len) of the disk. */
static bool read_sectors(VdImage *img, LuksState *s, uint8_t *buf, size_t len, uint64_t start,
                         GError **error)
{
    return vd_host_pread(img->fd, img->name, buf, len, s->payload + start, false, error) &&
           vd_luks_crypt(s->luks, false, start / s->sector, buf, len, error);
}

static bool luks_pread(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error)
{
    LuksState *s = img->opaque;
    uint64_t start = offset / s->sector * s->sector;
    uint64_t end = (offset + len + s->sector - 1) / s->sector * s->sector;
    if (start == offset && end == offset + len)
        return read_sectors(img, s, buf, len, start, error);
    g_autofree uint8_t *tmp = g_malloc(end - start);
    if (!read_sectors(img, s, tmp, end - start, start, error))
        return false;
    memcpy(buf, tmp + (offset - start), len);
    return true;
}

/* Encrypt the whole sectors [start, start + len) of the disk in buf (which
 * this clobbers) and write them. */
static bool write_sectors(VdImage *img, LuksState *s, uint8_t *buf, size_t len, uint64_t start,
                          GError **error)
{
    return vd_image_guard_write(img, s->meta, s->payload + start, len, error) &&
           vd_luks_crypt(s->luks, true, start / s->sector, buf, len, error) &&
           vd_host_pwrite(img->fd, img->name, buf, len, s->payload + start, error);
}

/* Sector-aligned writes: encrypted through a bounded bounce buffer, since
 * the caller's buffer is not ours to encrypt in place. */
static bool write_aligned(VdImage *img, LuksState *s, const uint8_t *buf, size_t len,
                          uint64_t offset, GError **error)
{
    size_t chunk = MIN(len, LUKS_WRITE_CHUNK);
    g_autofree uint8_t *tmp = g_malloc(chunk);
    for (size_t done = 0; done < len;) {
        size_t n = MIN(chunk, len - done);
        memcpy(tmp, buf + done, n);
        if (!write_sectors(img, s, tmp, n, offset + done, error))
            return false;
        done += n;
    }
    return true;
}

/* Part of one sector: read it back, merge, write it whole. */
static bool write_partial(VdImage *img, LuksState *s, const uint8_t *buf, size_t len,
                          uint64_t offset, GError **error)
{
    uint64_t start = offset / s->sector * s->sector;
    g_autofree uint8_t *tmp = g_malloc(s->sector);
    if (!read_sectors(img, s, tmp, s->sector, start, error))
        return false;
    memcpy(tmp + (offset - start), buf, len);
    return write_sectors(img, s, tmp, s->sector, start, error);
}

static bool is_aligned(const LuksState *s, size_t len, uint64_t offset)
{
    return offset % s->sector == 0 && len % s->sector == 0;
}

/* Whole sectors change no metadata and touch no neighbour: they may run
 * beside each other. Partial ones read back the rest of their sector, so
 * they are serialised (VD_CAP_SERIAL_WRITES) and go to luks_pwrite. */
static int luks_pwrite_fast(VdImage *img, const void *buf, size_t len, uint64_t offset,
                            GError **error)
{
    LuksState *s = img->opaque;
    if (!is_aligned(s, len, offset))
        return VD_FAST_SLOW;
    return write_aligned(img, s, buf, len, offset, error) ? VD_FAST_DONE : VD_FAST_ERROR;
}

static bool luks_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    LuksState *s = img->opaque;
    const uint8_t *p = buf;
    uint64_t head = offset % s->sector;
    if (head != 0) {
        size_t n = (size_t)MIN((uint64_t)len, s->sector - head);
        if (!write_partial(img, s, p, n, offset, error))
            return false;
        p += n;
        offset += n;
        len -= n;
    }
    size_t whole = len / s->sector * s->sector;
    if (whole > 0 && !write_aligned(img, s, p, whole, offset, error))
        return false;
    p += whole;
    offset += whole;
    len -= whole;
    return len == 0 || write_partial(img, s, p, len, offset, error);
}

static bool luks_flush(VdImage *img, GError **error)
{
    return vd_host_fdatasync(img->fd, img->name, error);
}

static void luks_describe(VdImage *img, VdInfo *info)
{
    LuksState *s = img->opaque;
    vd_info_add_str(info, "encryption", "luks");
    if (s == NULL)
        return;
    vd_info_add_u64(info, "luks_version", (uint64_t)vd_luks_version(s->luks));
    vd_luks_describe(s->luks, info, "encryption_");
    vd_info_add_u64(info, "encryption_key_size", vd_luks_key_size(s->luks) * 8);
    vd_info_add_u64(info, "payload_offset", s->payload);
}

const VdDriver vd_luks_driver = {
    .name = "luks",
    .description = "LUKS-encrypted raw disk (QEMU luks, cryptsetup LUKS1/LUKS2)",
    .caps = VD_CAP_WRITE | VD_CAP_SERIAL_WRITES,
    .probe = luks_probe,
    .open = luks_open,
    .peek = luks_peek,
    .close = luks_close,
    .pread = luks_pread,
    .pwrite = luks_pwrite,
    .pwrite_fast = luks_pwrite_fast,
    .block_status = luks_block_status,
    .flush = luks_flush,
    .describe = luks_describe,
};
