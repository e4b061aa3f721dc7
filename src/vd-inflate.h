/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The one inflate for whole compressed units (a qcow2 or qcow cluster, a
 * streamOptimized VMDK grain, a cloop block, a DMG or EWF chunk): the
 * whole input is at hand and the output's size is known, which is
 * libdeflate's case exactly (about twice zlib's speed). zlib stays for
 * streams (gzip containers). And the one zstd decoder for whole units
 * (zstd qcow2 clusters).
 */
#ifndef VD_INFLATE_H
#define VD_INFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    VD_DEFLATE_RAW,  /* RFC 1951, no header (qcow2, qcow) */
    VD_DEFLATE_ZLIB, /* RFC 1950 (VMDK grains, cloop, DMG, EWF) */
} VdDeflateWrap;

/* Inflate the one stream at in (in_len bytes; bytes after its end, such
 * as a cluster's padding to a sector, are ignored) into out, at most cap
 * bytes; *out_len gets how many it made. False when the input is not a
 * whole stream or inflates to more than cap (*out_len is cap then).
 * Thread-safe (a decompressor
 * per thread). */
bool vd_inflate(VdDeflateWrap wrap, const uint8_t *in, size_t in_len, uint8_t *out, size_t cap,
                size_t *out_len);

#ifdef HAVE_ZSTD
/* Fill out (exactly out_len bytes) from the zstd frames at in (in_len
 * bytes; what follows the frames that fill it is ignored). False when
 * they do not fill it. Thread-safe (a decompression context per thread:
 * making one costs more than decoding a 64 KiB cluster). */
bool vd_unzstd(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len);
#endif

#endif
