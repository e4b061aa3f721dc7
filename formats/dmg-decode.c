/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * DMG chunk decompressors: zlib, bzip2 (libbz2), LZMA (liblzma: .xz or
 * .lzma streams) and ADC (Apple Data Compression, decoded here). LZFSE
 * has no Debian library: such chunks fail with ENOTSUP.
 *
 * Every decoder writes into a buffer one byte larger than the chunk: a
 * stream that decodes to more (a decompression bomb) or less than the
 * chunk's size is an error, and no decoder can write past the buffer.
 */
#include "config.h"

#include <bzlib.h>
#include <inttypes.h>
#include <lzma.h>
#include <string.h>
#include <zlib.h>

#include "formats/dmg.h"
#include "src/vd-error.h"
#include "src/vd-inflate.h"

#define LZMA_MEMLIMIT (256u << 20)

bool dmg_chunk_type_supported(uint32_t type)
{
    switch (type) {
    case DMG_CHUNK_ADC:
    case DMG_CHUNK_ZLIB:
    case DMG_CHUNK_BZIP2:
    case DMG_CHUNK_LZMA:
        return true;
    default:
        return false;
    }
}

static size_t inflate_zlib(const uint8_t *in, size_t in_len, uint8_t *out, size_t cap, bool *ok)
{
    size_t n = 0;
    *ok = vd_inflate(VD_DEFLATE_ZLIB, in, in_len, out, cap, &n);
    return n;
}

static size_t decode_bzip2(const uint8_t *in, size_t in_len, uint8_t *out, size_t cap, bool *ok)
{
    bz_stream b = {0};
    if (BZ2_bzDecompressInit(&b, 0, 0) != BZ_OK || in_len > UINT32_MAX || cap > UINT32_MAX) {
        *ok = false;
        return 0;
    }
    b.next_in = (char *)in;
    b.avail_in = (unsigned)in_len;
    b.next_out = (char *)out;
    b.avail_out = (unsigned)cap;
    int ret = BZ_OK;
    /* bzip2 returns BZ_OK while it makes progress; stop when it does not. */
    while (ret == BZ_OK && b.avail_out > 0) {
        unsigned before_in = b.avail_in, before_out = b.avail_out;
        ret = BZ2_bzDecompress(&b);
        if (ret == BZ_OK && b.avail_in == before_in && b.avail_out == before_out)
            break;
    }
    *ok = ret == BZ_STREAM_END;
    size_t n = cap - b.avail_out;
    BZ2_bzDecompressEnd(&b);
    return n;
}

static size_t decode_lzma(const uint8_t *in, size_t in_len, uint8_t *out, size_t cap, bool *ok)
{
    lzma_stream l = LZMA_STREAM_INIT;
    if (lzma_auto_decoder(&l, LZMA_MEMLIMIT, 0) != LZMA_OK) {
        *ok = false;
        return 0;
    }
    l.next_in = in;
    l.avail_in = in_len;
    l.next_out = out;
    l.avail_out = cap;
    lzma_ret ret = lzma_code(&l, LZMA_FINISH);
    *ok = ret == LZMA_STREAM_END;
    size_t n = cap - l.avail_out;
    lzma_end(&l);
    return n;
}

/*
 * ADC: a sequence of codes. A byte with the top bit set starts a literal
 * run of (b & 0x7f) + 1 bytes; 01xxxxxx is followed by a 16-bit distance
 * and copies (b & 0x3f) + 4 bytes; 00xxxxyy is followed by one byte and
 * copies ((b >> 2) & 0xf) + 3 bytes from a 10-bit distance (yy:next).
 * Distances count back from the current position, minus one.
 */
static size_t decode_adc(const uint8_t *in, size_t in_len, uint8_t *out, size_t cap, bool *ok)
{
    size_t i = 0, o = 0;
    *ok = false;
    while (i < in_len) {
        uint8_t b = in[i++];
        size_t run, dist;
        if (b & 0x80) {
            run = (size_t)(b & 0x7f) + 1;
            if (run > in_len - i || run > cap - o)
                return o;
            memcpy(out + o, in + i, run);
            i += run;
            o += run;
            continue;
        }
        if (b & 0x40) {
            if (in_len - i < 2)
                return o;
            run = (size_t)(b & 0x3f) + 4;
            dist = ((size_t)in[i] << 8 | in[i + 1]) + 1;
            i += 2;
        } else {
            if (in_len - i < 1)
                return o;
            run = (size_t)((b >> 2) & 0x0f) + 3;
            dist = ((size_t)(b & 0x03) << 8 | in[i]) + 1;
            i += 1;
        }
        if (dist > o || run > cap - o)
            return o;
        for (size_t k = 0; k < run; k++, o++) /* may overlap: byte by byte */
            out[o] = out[o - dist];
    }
    *ok = true;
    return o;
}

GBytes *dmg_decode(const char *name, uint32_t type, const uint8_t *in, size_t in_len,
                   size_t out_len, GError **error)
{
    if (!dmg_chunk_type_supported(type)) {
        const char *what = dmg_chunk_type_name(type);
        vd_set_error(error, ENOTSUP, "%s: unsupported chunk type 0x%08" PRIx32 " (%s)", name, type,
                     what ? what : "unknown");
        return NULL;
    }
    uint8_t *buf = g_malloc(out_len + 1);
    bool ok = false;
    size_t n = 0;
    switch (type) {
    case DMG_CHUNK_ZLIB:
        n = inflate_zlib(in, in_len, buf, out_len + 1, &ok);
        break;
    case DMG_CHUNK_BZIP2:
        n = decode_bzip2(in, in_len, buf, out_len + 1, &ok);
        break;
    case DMG_CHUNK_LZMA:
        n = decode_lzma(in, in_len, buf, out_len + 1, &ok);
        break;
    case DMG_CHUNK_ADC:
        n = decode_adc(in, in_len, buf, out_len + 1, &ok);
        break;
    }
    if (!ok || n != out_len) {
        g_free(buf);
        vd_set_error(error, EIO, "%s: %s chunk does not decode to %zu bytes (%s)", name,
                     dmg_chunk_type_name(type), out_len,
                     n > out_len ? "it holds more"
                                 : (!ok ? "corrupt or truncated stream" : "it holds less"));
        return NULL;
    }
    return g_bytes_new_take(buf, out_len);
}
