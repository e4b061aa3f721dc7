/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * EWF (Expert Witness Compression Format: EnCase .E01, SMART .s01)
 * evidence sets, read from their segment files through callbacks so that
 * the parser knows no file descriptors (sources/ewf.c opens the files;
 * the unit tests and the fuzz target hand it buffers).
 *
 * Layout (libyal's EWF documentation): each segment starts with a 13-byte
 * header ("EVF\x09\x0d\x0a\xff\x00", 0x01, its number) followed by a
 * chain of sections, each a 76-byte descriptor (type, offset of the next
 * one, size, Adler-32) and its data. The first segment has the metadata
 * (header, header2, volume/disk); the media is cut into chunks of
 * sectors-per-chunk * bytes-per-sector bytes, stored zlib-compressed or
 * as they are followed by their Adler-32, in sectors sections (in table
 * sections themselves for SMART), located by table sections: 32-bit
 * entries whose top bit says compressed and whose 31 others are the
 * offset from the table's base. table2 mirrors table. A segment ends with
 * next (another follows) or done (the last); hash, digest and xhash hold
 * the media's MD5 and SHA1, error2 the sectors that could not be read.
 */
#ifndef EWF_H
#define EWF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#define EWF_MAGIC       "EVF\x09\x0d\x0a\xff\x00"
#define EWF2_MAGIC      "EVF2\x0d\x0a\x81\x00"
#define EWF_FILE_HEADER 13
#define EWF_SECTION     76
/* E01..E99, EAA..ZZZ: the names there are. */
#define EWF_MAX_SEGMENTS (99u + 22u * 26u * 26u)
/* Larger chunks than tools write (32768 sectors of 512 bytes) with room
 * for 4 KiB sectors; each is decoded whole. */
#define EWF_MAX_CHUNK (64u << 20)

typedef struct {
    /* Make segment n (1-based) ready to read: its size, or false with
     * error (missing, refused...). Asked in order, each once. */
    bool (*segment)(void *user, unsigned n, uint64_t *size, GError **error);
    bool (*read)(void *user, unsigned n, void *buf, size_t len, uint64_t off, GError **error);
    /* Optional: charge table memory to a budget, and give it back. */
    bool (*reserve)(void *user, uint64_t bytes, const char *what, GError **error);
    void (*release)(void *user, uint64_t bytes);
} EwfIo;

typedef struct EwfSet EwfSet;

/* Where one chunk is stored. */
typedef struct {
    unsigned seg;
    uint64_t off;    /* in the segment */
    uint32_t stored; /* bytes to read there (a compressed chunk: at most) */
    uint32_t len;    /* bytes of media it holds */
    bool compressed;
} EwfChunk;

/* The acquisition metadata, as "key", "value" pairs in the order shown. */
typedef struct {
    GPtrArray *values; /* char *: key, value, key, value... */
    char md5[33];      /* lower-case hex, "" when not recorded */
    char sha1[41];
    const char *media_type;
    GPtrArray *errors; /* char *: "first sector+count" of the read errors */
} EwfMeta;

/* Walk every segment's sections: the volume, the tables (their headers;
 * the entries are read on first use), the metadata. name is for
 * messages. Everything the walk met that does not add up is an EIO. */
EwfSet *ewf_set_open(const EwfIo *io, void *user, const char *name, GError **error);
void ewf_set_free(EwfSet *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(EwfSet, ewf_set_free)

uint64_t ewf_media_size(const EwfSet *s);
uint32_t ewf_chunk_size(const EwfSet *s);
uint64_t ewf_chunk_count(const EwfSet *s);
unsigned ewf_segment_count(const EwfSet *s);
const EwfMeta *ewf_meta(const EwfSet *s);

/* Where chunk i (< ewf_chunk_count) lies, checked against its section
 * and segment. Safe from several threads. */
bool ewf_chunk_locate(EwfSet *s, uint64_t i, EwfChunk *c, GError **error);
/* Chunk i decoded: its len bytes, checksums checked (zlib's own, or the
 * Adler-32 after an uncompressed chunk). EIO for anything wrong. */
GBytes *ewf_chunk_read(EwfSet *s, uint64_t i, GError **error);
/* The same into buf (chunk_size bytes), for a chunk of chunk_size bytes
 * (not the media's last when that one is shorter). */
bool ewf_chunk_read_whole(EwfSet *s, uint64_t i, uint8_t *buf, GError **error);
/* Where chunk i's media bytes lie as they are, once ewf_chunk_read found
 * it stored uncompressed with a right checksum: true and c filled, else
 * false (read it with ewf_chunk_read). */
bool ewf_chunk_in_place(EwfSet *s, uint64_t i, EwfChunk *c);
/* Whether chunk i reads as zeros, from its stored form alone: a
 * compressed chunk small enough to be one, compared with the forms zlib
 * gives a zero chunk or else decoded. Uncompressed chunks are data (a
 * hole query does not read the media). Remembered. */
bool ewf_chunk_is_zero(EwfSet *s, uint64_t i, bool *zero, GError **error);

/* The extension of segment n (sources/ewf.c) after the first one's
 * letter (E, e, S or s), in its case: E01..E99, then EAA..EZZ, FAA.. up
 * to ZZZ (s01.., saa.. up to zzz). False past the last name. */
bool ewf_segment_ext(char letter, unsigned n, char ext[4]);

/* Metadata parsing (sources/ewf-meta.c), for ewf_set_open. */
void ewf_meta_init(EwfMeta *m);
void ewf_meta_clear(EwfMeta *m);
/* A header (ASCII) or header2 (UTF-16) section's decompressed text:
 * its values added where not known yet. */
void ewf_meta_add_header(EwfMeta *m, const uint8_t *text, size_t len, bool utf16);
/* An xhash section's decompressed XML: MD5 and SHA1 where not known. */
void ewf_meta_add_xhash(EwfMeta *m, const uint8_t *text, size_t len);
void ewf_meta_set_hash(char *out, const uint8_t *digest, size_t len);

#endif
