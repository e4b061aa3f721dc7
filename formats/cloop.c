/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cloop (compressed loop, version 2; read-only): a 128-byte shell-script
 * preamble ("#!/bin/sh" ... "#V2.0 Format"), the block size and the
 * number of blocks (big-endian 32-bit, at 128 and 132), then n + 1
 * big-endian 64-bit file offsets: block i is the zlib stream between
 * offsets i and i + 1, and inflates to exactly one block. The disk is
 * n * block size bytes; every block is data (there are no holes).
 *
 * Hostile input: the offsets must rise and stay inside the file, a
 * stream may not be larger than a generous bound on zlib's worst case,
 * and inflation stops at the block size (decompression bombs fail).
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>
#include <zlib.h>

#include "src/vd-ro-cache.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "src/vd-inflate.h"
#include "src/vd-io.h"

#define CLOOP_PREAMBLE   128
#define CLOOP_HEADER     136
#define CLOOP_MAX_BLOCK  (64u << 20)
#define CLOOP_MAX_BLOCKS (1u << 26) /* 512 MiB of offsets */

typedef struct {
    uint32_t block_size;
    uint32_t n_blocks;
    uint64_t *offsets;   /* n_blocks + 1, rising; immutable after open */
    uint64_t max_stream; /* largest stream accepted */
    VdRoCache *cache;    /* decoded blocks (has its own lock) */
} CloopState;

static bool has_v2_preamble(const uint8_t *head, size_t len)
{
    if (len < CLOOP_PREAMBLE || memcmp(head, "#!/bin/sh", 9) != 0)
        return false;
    return g_strstr_len((const char *)head, CLOOP_PREAMBLE, "#V2.0 Format") != NULL;
}

static int cloop_probe(const VdProbe *probe)
{
    return has_v2_preamble(probe->head, probe->head_len) ? VD_PROBE_MAGIC : VD_PROBE_NO;
}

static void cloop_close(VdImage *img)
{
    CloopState *s = img->opaque;
    if (s == NULL)
        return;
    g_free(s->offsets);
    vd_ro_cache_free(s->cache);
    g_free(s);
    img->opaque = NULL;
}

/* The header and the offset table's place: what open and peek share. */
static bool read_header(VdImage *img, CloopState *s, uint64_t *file_size, GError **error)
{
    uint8_t h[CLOOP_HEADER];
    if (!vd_host_size(img->fd, img->name, file_size, error))
        return false;
    if (*file_size < CLOOP_HEADER) {
        vd_set_error(error, EIO, "%s: too small for a cloop header", img->name);
        return false;
    }
    if (!vd_host_pread(img->fd, img->name, h, sizeof h, 0, false, error))
        return false;
    if (!has_v2_preamble(h, sizeof h)) {
        bool other = memcmp(h, "#!/bin/sh", 9) == 0 &&
                     g_strstr_len((const char *)h, CLOOP_PREAMBLE, "#V") != NULL;
        vd_set_error(error, other ? ENOTSUP : EIO, "%s: %s", img->name,
                     other ? "unsupported cloop version (only V2.0 is)" : "no cloop V2.0 header");
        return false;
    }
    s->block_size = vd_be32(h + 128);
    s->n_blocks = vd_be32(h + 132);
    if (s->block_size == 0 || s->block_size % 512 != 0 || s->block_size > CLOOP_MAX_BLOCK) {
        vd_set_error(error, EIO, "%s: block size %" PRIu32 " is invalid", img->name, s->block_size);
        return false;
    }
    uint64_t table = ((uint64_t)s->n_blocks + 1) * 8;
    if (s->n_blocks > CLOOP_MAX_BLOCKS || !vd_range_within(CLOOP_HEADER, table, *file_size)) {
        vd_set_error(error, EIO,
                     "%s: offset table for %" PRIu32 " blocks lies past the end of the file",
                     img->name, s->n_blocks);
        return false;
    }
    img->size = (uint64_t)s->n_blocks * s->block_size;
    return true;
}

static bool cloop_open(VdImage *img, GError **error)
{
    uint64_t file_size;
    g_autofree uint8_t *raw = NULL;
    CloopState *s = g_new0(CloopState, 1);
    img->opaque = s;
    bool ok = false;
    if (!read_header(img, s, &file_size, error))
        goto out;
    uint64_t table = ((uint64_t)s->n_blocks + 1) * 8;
    if (!vd_image_mem_reserve(img, table, "block index", error))
        goto out;
    raw = g_malloc(table);
    if (!vd_host_pread(img->fd, img->name, raw, table, CLOOP_HEADER, false, error))
        goto out;
    /* zlib's worst case is a few bytes per 16 KiB stored block; allow plenty. */
    s->max_stream = (uint64_t)s->block_size + s->block_size / 16 + 4096;
    s->offsets = g_new(uint64_t, (uint64_t)s->n_blocks + 1);
    for (uint64_t i = 0; i <= s->n_blocks; i++) {
        s->offsets[i] = vd_be64(raw + 8 * i);
        if (i == 0 && (s->offsets[0] < CLOOP_HEADER + table || s->offsets[0] > file_size)) {
            vd_set_error(error, EIO,
                         "%s: block 0 at 0x%" PRIx64 " overlaps the header or lies "
                         "past the end of the file",
                         img->name, s->offsets[0]);
            goto out;
        }
        if (i > 0 && (s->offsets[i] <= s->offsets[i - 1] || s->offsets[i] > file_size ||
                      s->offsets[i] - s->offsets[i - 1] > s->max_stream)) {
            vd_set_error(error, EIO,
                         "%s: block %" PRIu64 " (0x%" PRIx64 " to 0x%" PRIx64
                         ") is empty, out of order, too large or past the end of the file",
                         img->name, i - 1, s->offsets[i - 1], s->offsets[i]);
            goto out;
        }
    }
    img->decode_unit = s->block_size;
    s->cache = vd_ro_cache_new(img->ctx->decode_cache_bytes, s->block_size);
    ok = true;
out:
    if (!ok)
        cloop_close(img);
    return ok;
}

/* The header alone: the offset table is neither read nor allocated. */
static bool cloop_peek(VdImage *img, GError **error)
{
    CloopState s = {0};
    uint64_t file_size;
    return read_header(img, &s, &file_size, error);
}

static bool cloop_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                               VdExtent *ext, GError **error)
{
    CloopState *s = img->opaque;
    uint64_t within = offset % s->block_size;
    (void)flags;
    (void)error;
    /* One block per run: pread decodes exactly one. */
    *ext = (VdExtent){VD_EXTENT_DATA_DECODE, vd_min_u64(s->block_size - within, length), -1, 0};
    return true;
}

/* Inflate block idx into a new GBytes of exactly block_size bytes. */
static GBytes *decode_block(VdImage *img, uint32_t idx, GError **error)
{
    CloopState *s = img->opaque;
    uint64_t start = s->offsets[idx];
    size_t clen = (size_t)(s->offsets[idx + 1] - start);
    g_autofree uint8_t *in = g_malloc(clen);
    if (!vd_host_pread(img->fd, img->name, in, clen, start, false, error))
        return NULL;
    uint8_t *out = g_malloc(s->block_size);
    size_t got = 0;
    if (!vd_inflate(VD_DEFLATE_ZLIB, in, clen, out, s->block_size, &got) || got != s->block_size) {
        g_free(out);
        vd_set_error(error, EIO,
                     "%s: block %" PRIu32 " at 0x%" PRIx64 " does not inflate to %" PRIu32
                     " bytes (%s)",
                     img->name, idx, start, s->block_size,
                     got == s->block_size ? "corrupt stream" : "too much or truncated data");
        return NULL;
    }
    return g_bytes_new_take(out, s->block_size);
}

static bool cloop_pread(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error)
{
    CloopState *s = img->opaque;
    uint8_t *p = buf;
    while (len > 0) {
        uint32_t idx = (uint32_t)(offset / s->block_size);
        uint64_t within = offset % s->block_size;
        size_t n = (size_t)vd_min_u64(len, s->block_size - within);
        g_autoptr(GBytes) blk = vd_ro_cache_get(s->cache, idx);
        if (blk == NULL) {
            blk = decode_block(img, idx, error);
            if (blk == NULL)
                return false;
            vd_ro_cache_put(s->cache, idx, blk);
        }
        memcpy(p, (const uint8_t *)g_bytes_get_data(blk, NULL) + within, n);
        p += n;
        offset += n;
        len -= n;
    }
    return true;
}

static void cloop_describe(VdImage *img, VdInfo *info)
{
    CloopState *s = img->opaque;
    vd_info_add_str(info, "cloop_version", "2.0");
    vd_info_add_u64(info, "block_size", s->block_size);
    vd_info_add_u64(info, "cluster_size", s->block_size);
    vd_info_add_u64(info, "blocks", s->n_blocks);
    vd_info_add_str(info, "compression", "zlib");
}

const VdDriver vd_cloop_driver = {
    .name = "cloop",
    .description = "cloop: compressed loop image, V2.0 (zlib; read-only)",
    .caps = 0,
    .probe = cloop_probe,
    .open = cloop_open,
    .close = cloop_close,
    .peek = cloop_peek,
    .pread = cloop_pread,
    .block_status = cloop_block_status,
    .describe = cloop_describe,
};
