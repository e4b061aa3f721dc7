/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A DMG (UDIF) writer for tests, from the format facts: chunks of every
 * type over a patterned disk, block tables in an XML property list (or a
 * classic resource fork), and the koly trailer. No tool in Debian makes
 * DMG images.
 */
#ifndef TEST_DMG_GEN_H
#define TEST_DMG_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#define DG_GAP 0x7fff0000u /* not a chunk: leave these sectors uncovered */

typedef struct {
    uint32_t type; /* a DMG_CHUNK_* or DG_GAP */
    uint32_t sectors;
} DgChunk;

typedef struct {
    const DgChunk *chunks; /* in disk order */
    size_t n;
    bool rsrc_fork;            /* classic resource fork instead of the plist */
    uint32_t data_fork_prefix; /* bytes of junk before the data fork */
    size_t split_at;           /* chunks from this index on go into a second blkx table (0: one) */
    uint32_t extra_sectors;    /* disk sectors after the last chunk (uncovered) */
    bool zero_data;            /* data chunks hold zeros, each alike encoded once (big disks) */
} DgSpec;

typedef struct {
    GByteArray *file; /* the image */
    uint8_t *expect;  /* the disk's content */
    uint64_t size;    /* its size in bytes */
    /* Where things went, for tests that corrupt them. */
    uint64_t koly_offset;
    uint64_t xml_offset;
    uint64_t xml_length;
    uint64_t chunk_offset[64]; /* stored offset of chunk i (absolute) */
    uint64_t mish_offset[2];   /* resource fork images: where each block table lies */
} DgImage;

/* Build the image (g_assert on misuse: tests only). */
DgImage *dg_build(const DgSpec *spec);
void dg_free(DgImage *img);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(DgImage, dg_free)

/* The disk byte at off for chunk types that hold data. */
uint8_t dg_pattern(uint64_t off);

/* An ADC encoding of data (literal runs and both copy forms). */
GByteArray *dg_adc_encode(const uint8_t *data, size_t len);

/* Write bytes to dir/name. */
void dg_write(const char *dir, const char *name, const void *data, size_t len);

#endif
