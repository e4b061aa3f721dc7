/* SPDX-License-Identifier: GPL-2.0-or-later */
/* EWF evidence sets made in memory, as ewfacquire lays them out, for the
 * parser's tests; and helpers to damage them. */
#ifndef TEST_EWF_GEN_H
#define TEST_EWF_GEN_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "sources/ewf.h"

typedef struct {
    bool smart;           /* S01: 94-byte volume, chunks inside the table sections */
    uint32_t spc;         /* sectors per chunk (default 8) */
    const uint8_t *media; /* sectors * 512 bytes */
    uint64_t sectors;
    unsigned chunks_per_segment; /* 0: one segment */
    unsigned chunks_per_table;   /* 0: one table per segment */
    int level;                   /* zlib level; -1 stores chunks uncompressed (not SMART) */
    bool table_base;             /* entries relative to the sectors section (EnCase 6) */
    const char *header;          /* header text (ASCII, \n line ends), or NULL */
    const char *header2;         /* header2 text (becomes UTF-16LE), or NULL */
    const uint8_t *md5;          /* 16 bytes for a hash section, or NULL */
    const uint8_t *sha1;         /* 20 bytes for a digest section (with md5), or NULL */
} EwfGenOpts;

/* The segments (GByteArray each), first one first. */
GPtrArray *ewf_gen(const EwfGenOpts *o);

/* Offset of the n-th (0-based) section of type in seg, or -1. */
int64_t ewf_gen_find(GByteArray *seg, const char *type, unsigned n);
/* Recompute the Adler-32 of the descriptor at off. */
void ewf_gen_fix_descriptor(GByteArray *seg, uint64_t off);
void ewf_gen_put_le32(GByteArray *seg, uint64_t off, uint32_t v);
void ewf_gen_put_le64(GByteArray *seg, uint64_t off, uint64_t v);
/* Recompute the Adler-32 at off + len of the len bytes at off. */
void ewf_gen_fix_sum(GByteArray *seg, uint64_t off, size_t len);

/* An EwfIo over the segments: reads past a segment's end fail, and the
 * test aborts on any read the parser should not have made (none). */
extern const EwfIo ewf_gen_io;

#endif
