/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bzip2's block index (sources/bzip2-index.c), shared by the container
 * (sources/bzip2.c) and its tests: where every block of a bzip2 file lies,
 * to the bit, and what it decodes to.
 */
#ifndef VD_BZIP2_H
#define VD_BZIP2_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "src/vd-context.h"

#define BZ2_BLOCK_MAGIC 0x314159265359ull
#define BZ2_EOS_MAGIC   0x177245385090ull
/* Blocks one index may hold (32 bytes each: 64 MiB), at least 200 GiB of
 * data at level 9; a file with more is refused. */
#define BZ2_MAX_BLOCKS (1u << 21)

typedef struct {
    uint64_t bit;     /* where its block magic starts, in bits from the file's start */
    uint64_t out_off; /* where its data starts in the decoded file */
    uint32_t bits;    /* its length in bits, magic included */
    uint32_t out_len;
    uint32_t crc; /* as its header records it (checked by the first pass) */
    uint8_t level;
    bool zero; /* decodes to zeros only */
} Bz2Block;

typedef struct {
    GArray *blocks; /* Bz2Block, by out_off; blocks that decode to nothing left out */
    uint64_t size;
    uint32_t streams;
    uint32_t zero_blocks;
    uint32_t max_len;  /* the longest block's decoded length, zero blocks aside */
    uint64_t reserved; /* bytes of the context's budget held for blocks */
} Bz2Index;

/* Every bit position where a block magic or end-of-stream magic starts in
 * the file, ascending, as bit << 1 | (1 for end of stream); at most max of
 * them (else EIO). */
bool bz2_find_magics(VdContext *ctx, int fd, const char *name, uint64_t file_size, guint max,
                     GArray *cands, GError **error);

/* Walk the streams from the file's start, with the magics cands holds
 * (some may be chance matches inside compressed data): every block is
 * decoded once (several at a time) and its CRC checked, every stream's
 * combined CRC too. ix is filled; its blocks are charged to ctx's budget
 * (bz2_index_clear gives them back). Bytes after the last stream that do
 * not start another are ignored, as bzip2 does. */
bool bz2_index_build(VdContext *ctx, int fd, const char *name, uint64_t file_size,
                     const GArray *cands, Bz2Index *ix, GError **error);
void bz2_index_clear(VdContext *ctx, Bz2Index *ix);

/* Decode block i (b) into out, b->out_len bytes. */
bool bz2_block_decode(int fd, const char *name, guint i, const Bz2Block *b, uint8_t *out,
                      GError **error);

/* Whether head (10 bytes) starts a bzip2 stream: its magic, level and
 * a first block's or the end's marker. */
bool bz2_is_stream_head(const uint8_t head[10]);
/* The first len bytes fd holds (file_size bytes of bzip2 streams, one
 * after another), decoded from the start, for a probe: *got of them,
 * *all when that is the whole; nothing checked but that they decode. */
bool bz2_decode_head(int fd, const char *name, uint64_t file_size, uint8_t *buf, size_t len,
                     size_t *got, bool *all, GError **error);

#endif
