/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * DMG (Apple UDIF) internals shared by dmg.c (the driver), dmg-parse.c
 * (pure parsers of the plist, the resource fork and mish blocks, so they
 * can be fuzzed and unit-tested on buffers) and dmg-decode.c (chunk
 * decompressors).
 */
#ifndef DMG_H
#define DMG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#define DMG_SECTOR 512u

/* Chunk ("block run") types of a mish table. */
#define DMG_CHUNK_ZERO       0x00000000u /* zero fill */
#define DMG_CHUNK_RAW        0x00000001u /* stored */
#define DMG_CHUNK_IGNORE     0x00000002u /* free space, reads as zeros */
#define DMG_CHUNK_ADC        0x80000004u /* Apple Data Compression */
#define DMG_CHUNK_ZLIB       0x80000005u
#define DMG_CHUNK_BZIP2      0x80000006u
#define DMG_CHUNK_LZFSE      0x80000007u
#define DMG_CHUNK_LZMA       0x80000008u
#define DMG_CHUNK_COMMENT    0x7ffffffeu
#define DMG_CHUNK_TERMINATOR 0xffffffffu

/* Sane maxima: what a decoded chunk may be, how much metadata we read. */
#define DMG_MAX_DECODED    (64u << 20)
#define DMG_MAX_COMPRESSED (DMG_MAX_DECODED + (DMG_MAX_DECODED >> 4) + 65536)
#define DMG_MAX_METADATA   (64u << 20) /* plist or resource fork */
#define DMG_MAX_CHUNKS     (1u << 24)
#define DMG_MAX_BLKX       65536u

typedef struct {
    uint32_t type;
    uint64_t sector;  /* first sector of the disk it holds */
    uint64_t sectors; /* how many */
    uint64_t offset;  /* absolute offset of its bytes in the file */
    uint64_t length;  /* stored bytes */
} DmgChunk;

/*
 * The base64 Data of every resource-fork/blkx entry of an XML property
 * list, decoded, as GBytes in document order. name is for messages.
 */
bool dmg_plist_blkx(const char *name, const char *xml, size_t len, GPtrArray **blobs,
                    GError **error);

/* The resources of a classic Mac resource fork whose data is a mish block. */
bool dmg_rsrc_blkx(const char *name, const uint8_t *fork, size_t len, GPtrArray **blobs,
                   GError **error);

/*
 * Append the chunks of one mish block (data-bearing ones; comments and
 * terminators dropped) to chunks (GArray of DmgChunk). Offsets become
 * absolute with data_fork_offset. Blocks that are not mish are ignored.
 */
bool dmg_parse_mish(const char *name, const uint8_t *buf, size_t len, uint64_t data_fork_offset,
                    GArray *chunks, GError **error);

/* Human name of a chunk type ("zlib"), or NULL for unknown ones. */
const char *dmg_chunk_type_name(uint32_t type);
/* The chunk type can be decoded by this build. */
bool dmg_chunk_type_supported(uint32_t type);

/* Decode a compressed chunk, which must hold exactly out_len bytes. */
GBytes *dmg_decode(const char *name, uint32_t type, const uint8_t *in, size_t in_len,
                   size_t out_len, GError **error);

#endif
