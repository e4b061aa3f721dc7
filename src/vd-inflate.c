/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <libdeflate.h>
#include <zlib.h>
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

#include <glib.h>

#include "vd-inflate.h"

/* Setting up a decompressor costs more than inflating a small cluster:
 * one per thread, kept. */
static void decompressor_free(gpointer p)
{
    libdeflate_free_decompressor(p);
}

static GPrivate decompressor = G_PRIVATE_INIT(decompressor_free);

/* zlib, for what libdeflate refuses: a stream that fills the output
 * exactly but whose end is cut off (QEMU accepts those in qcow clusters). */
static bool inflate_zlib(VdDeflateWrap wrap, const uint8_t *in, size_t in_len, uint8_t *out,
                         size_t cap, size_t *out_len)
{
    z_stream z = {0};
    if (in_len > UINT32_MAX || cap > UINT32_MAX ||
        inflateInit2(&z, wrap == VD_DEFLATE_RAW ? -MAX_WBITS : MAX_WBITS) != Z_OK)
        return false;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)in_len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int r = inflate(&z, Z_FINISH);
    *out_len = cap - z.avail_out;
    inflateEnd(&z);
    return r == Z_STREAM_END || (r == Z_BUF_ERROR && z.avail_out == 0);
}

bool vd_inflate(VdDeflateWrap wrap, const uint8_t *in, size_t in_len, uint8_t *out, size_t cap,
                size_t *out_len)
{
    struct libdeflate_decompressor *d = g_private_get(&decompressor);
    if (d == NULL) {
        d = libdeflate_alloc_decompressor();
        if (d == NULL)
            return false;
        g_private_set(&decompressor, d);
    }
    size_t used = 0, made = 0;
    enum libdeflate_result r =
        wrap == VD_DEFLATE_RAW
            ? libdeflate_deflate_decompress_ex(d, in, in_len, out, cap, &used, &made)
            : libdeflate_zlib_decompress_ex(d, in, in_len, out, cap, &used, &made);
    *out_len = made;
    if (r == LIBDEFLATE_SUCCESS)
        return true;
    if (r == LIBDEFLATE_INSUFFICIENT_SPACE) {
        *out_len = cap; /* more than fits: as far as the caller can tell, cap and more */
        return false;
    }
    return r == LIBDEFLATE_BAD_DATA && inflate_zlib(wrap, in, in_len, out, cap, out_len);
}

#ifdef HAVE_ZSTD
static void dctx_free(gpointer p)
{
    ZSTD_freeDCtx(p);
}

static GPrivate zstd_dctx = G_PRIVATE_INIT(dctx_free);

/* The frames one at a time, each straight into out: no copy through a
 * window buffer. Fails on a frame that would overflow out. */
static bool unzstd_frames(ZSTD_DCtx *dctx, const uint8_t *in, size_t in_len, uint8_t *out,
                          size_t out_len)
{
    size_t pos = 0, made = 0;
    while (made < out_len) {
        size_t frame = ZSTD_findFrameCompressedSize(in + pos, in_len - pos);
        if (ZSTD_isError(frame))
            return false;
        size_t got = ZSTD_decompressDCtx(dctx, out + made, out_len - made, in + pos, frame);
        if (ZSTD_isError(got))
            return false;
        made += got;
        pos += frame;
    }
    return true;
}

/* As a stream, stopping when out is full: what a frame that makes more
 * than out holds (or one cut short after it has) gives, as QEMU reads it. */
static bool unzstd_stream(ZSTD_DCtx *dctx, const uint8_t *in, size_t in_len, uint8_t *out,
                          size_t out_len)
{
    ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
    ZSTD_inBuffer ib = {in, in_len, 0};
    ZSTD_outBuffer ob = {out, out_len, 0};
    while (ob.pos < ob.size) {
        size_t before_in = ib.pos, before_out = ob.pos;
        size_t ret = ZSTD_decompressStream(dctx, &ob, &ib);
        if (ZSTD_isError(ret) || (ib.pos == before_in && ob.pos == before_out))
            return false;
    }
    return true;
}

bool vd_unzstd(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len)
{
    ZSTD_DCtx *dctx = g_private_get(&zstd_dctx);
    if (dctx == NULL) {
        dctx = ZSTD_createDCtx();
        if (dctx == NULL)
            return false;
        g_private_set(&zstd_dctx, dctx);
    }
    return unzstd_frames(dctx, in, in_len, out, out_len) ||
           unzstd_stream(dctx, in, in_len, out, out_len);
}
#endif
