/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Compressed grains (streamOptimized): a grain table entry points at a
 * grain marker (u64 LBA, u32 compressed size) followed by the deflated
 * grain (zlib stream; raw deflate accepted too), or, without markers, at
 * the compressed bytes themselves. Decoded grains are kept in a small
 * cache, since reads come in pieces smaller than a grain.
 */
#include "config.h"

#include <string.h>
#include <zlib.h>

#include "formats/vmdk.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-inflate.h"
#include "src/vd-io.h"

/* Compressed grains never need more room than this. */
#define COMPRESSED_MAX(grain) (2 * (grain) + 4096)

void vmdk_decode_cache_init(VmdkDecodeCache *dc, uint64_t limit, uint64_t grain)
{
    g_mutex_init(&dc->lock);
    uint64_t n = grain > 0 ? limit / grain : 1;
    dc->n = (unsigned)CLAMP(n, 1, 64);
    dc->slot = g_new0(struct VmdkDecoded, dc->n);
}

void vmdk_decode_cache_clear(VmdkDecodeCache *dc)
{
    if (dc->slot == NULL)
        return;
    for (unsigned i = 0; i < dc->n; i++)
        g_free(dc->slot[i].data);
    g_clear_pointer(&dc->slot, g_free);
    g_mutex_clear(&dc->lock);
}

static bool decode_cache_get(VmdkDecodeCache *dc, VmdkExtent *e, uint64_t host, uint8_t *out,
                             size_t off, size_t len)
{
    bool hit = false;
    g_mutex_lock(&dc->lock);
    for (unsigned i = 0; i < dc->n; i++) {
        struct VmdkDecoded *d = &dc->slot[i];
        if (d->valid && d->extent == e->index && d->host == host) {
            memcpy(out, d->data + off, len);
            d->age = ++dc->clock;
            hit = true;
            break;
        }
    }
    g_mutex_unlock(&dc->lock);
    return hit;
}

static void decode_cache_put(VmdkDecodeCache *dc, VmdkExtent *e, uint64_t host, uint8_t **grain)
{
    g_mutex_lock(&dc->lock);
    struct VmdkDecoded *victim = &dc->slot[0];
    for (unsigned i = 0; i < dc->n; i++) {
        if (!dc->slot[i].valid) {
            victim = &dc->slot[i];
            break;
        }
        if (dc->slot[i].age < victim->age)
            victim = &dc->slot[i];
    }
    g_free(victim->data);
    victim->data = g_steal_pointer(grain);
    victim->valid = true;
    victim->extent = e->index;
    victim->host = host;
    victim->age = ++dc->clock;
    g_mutex_unlock(&dc->lock);
}

/* Inflate src into exactly out_len bytes (zero-filling a short result).
 * zlib streams are what VMware and QEMU write; raw deflate is accepted. */
static bool inflate_grain(const uint8_t *src, size_t src_len, uint8_t *out, size_t out_len,
                          bool raw)
{
    size_t produced = 0;
    if (!vd_inflate(raw ? VD_DEFLATE_RAW : VD_DEFLATE_ZLIB, src, src_len, out, out_len, &produced))
        return false;
    memset(out + produced, 0, out_len - produced);
    return true;
}

static bool decode_grain(VdImage *img, VmdkExtent *e, uint64_t host, uint64_t grain, uint8_t *out,
                         GError **error)
{
    uint64_t fsize = __atomic_load_n(&e->file_size, __ATOMIC_ACQUIRE);
    uint64_t data_off = host, data_len;
    if (e->markers) {
        uint8_t m[12];
        if (!vd_host_pread(e->fd, e->path, m, sizeof m, host, false, error))
            return false;
        data_len = vd_le32(m + 8);
        data_off = host + sizeof m;
        if (data_len == 0 || data_len > COMPRESSED_MAX(e->grain) ||
            !vd_range_within(data_off, data_len, fsize)) {
            vd_set_error(error, EIO,
                         "%s: compressed grain %" G_GUINT64_FORMAT " at 0x%" G_GINT64_MODIFIER
                         "x has an invalid size (%" G_GUINT64_FORMAT ") in %s",
                         img->name, grain, host, data_len, e->path);
            return false;
        }
    } else {
        data_len = vd_min_u64(COMPRESSED_MAX(e->grain), fsize - host);
    }
    g_autofree uint8_t *src = g_malloc(data_len);
    if (!vd_host_pread(e->fd, e->path, src, data_len, data_off, false, error))
        return false;
    if (!inflate_grain(src, data_len, out, e->grain, false) &&
        !inflate_grain(src, data_len, out, e->grain, true)) {
        vd_set_error(error, EIO,
                     "%s: compressed grain %" G_GUINT64_FORMAT " at 0x%" G_GINT64_MODIFIER
                     "x does not decompress to one grain in %s",
                     img->name, grain, host, e->path);
        return false;
    }
    return true;
}

bool vmdk_sparse_read_decode(VdImage *img, VmdkExtent *e, uint8_t *buf, size_t len, uint64_t rel,
                             GError **error)
{
    VmdkState *s = img->opaque;
    while (len > 0) {
        uint64_t in = rel % e->grain;
        size_t n = (size_t)vd_min_u64(len, e->grain - in);
        VdExtent x;
        if (!vmdk_sparse_status(img, e, rel, n, &x, error))
            return false;
        n = (size_t)x.length;
        switch (x.state) {
        case VD_EXTENT_DATA:
            if (!vd_host_pread(e->fd, e->path, buf, n, x.host_offset, true, error))
                return false;
            break;
        case VD_EXTENT_ZERO:
            memset(buf, 0, n);
            break;
        case VD_EXTENT_UNALLOCATED:
            if (!vd_image_read_backing(img, buf, n, e->start + rel, error))
                return false;
            break;
        case VD_EXTENT_DATA_DECODE: {
            uint64_t grain = rel / e->grain, raw;
            if (!vmdk_gte_get(e, grain, &raw, error))
                return false;
            uint64_t host = raw * VMDK_SECTOR;
            if (decode_cache_get(&s->dc, e, host, buf, (size_t)in, n))
                break;
            g_autofree uint8_t *g = g_malloc(e->grain);
            if (!decode_grain(img, e, host, grain, g, error))
                return false;
            memcpy(buf, g + in, n);
            decode_cache_put(&s->dc, e, host, &g);
            break;
        }
        }
        buf += n;
        len -= n;
        rel += n;
    }
    return true;
}
