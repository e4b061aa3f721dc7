/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A bounded cache of second-level table pieces, shared by the QED and
 * qcow (version 1) drivers: both map guest clusters through an in-memory
 * L1 table and L2 tables of 64-bit offsets (little-endian in QED,
 * big-endian in qcow). Tables are cached in chunks of at most 64 KiB, so
 * a hostile table size never turns into a large allocation, in the
 * block layer's table cache (src/vd-table-cache.h).
 *
 * Every function may be called from any thread. Entries are decoded to
 * host order; the writer (serialised by the block layer) writes an entry
 * to the file first and then calls qed_tcache_set().
 */
#ifndef QED_TABLE_H
#define QED_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "src/vd-image.h"
#include "src/vd-table-cache.h"

#define QED_TCACHE_CHUNK_BYTES (64u * 1024u)

typedef struct {
    VdTableCache *cache; /* chunk host offset -> chunk_entries decoded entries */
    VdImage *img;        /* the file the chunks are read from */
    bool big_endian;
    uint64_t chunk_entries; /* a power of two dividing the table's entry count */
} QedTableCache;

/* table_entries: entries per table (a power of two); budget: bytes. */
void qed_tcache_init(QedTableCache *c, VdImage *img, bool big_endian, uint64_t table_entries,
                     uint64_t budget);
void qed_tcache_clear(QedTableCache *c);

/* Copy entries index.. of the table at table_host into out: at least one,
 * at most max, never past the end of the chunk holding index. Returns the
 * number copied, 0 with error when the table cannot be read. */
size_t qed_tcache_get(QedTableCache *c, uint64_t table_host, uint64_t index, size_t max,
                      uint64_t *out, GError **error);

/* Entries index.. (n of them) were written to the file: update the cached
 * copy, if any. */
void qed_tcache_set(QedTableCache *c, uint64_t table_host, uint64_t index, const uint64_t *values,
                    size_t n);

/* Drop whatever is cached for host bytes [host, host + len). */
void qed_tcache_forget(QedTableCache *c, uint64_t host, uint64_t len);

/* How a guest cluster reads, as the driver sees its L2 entry. */
typedef struct {
    VdExtentState state;
    uint64_t host; /* VD_EXTENT_DATA: the cluster's host offset */
} QedMapped;

/* A driver's two-level map, for qed_map_status(). */
typedef struct {
    unsigned cluster_bits;
    /* L2 entries of the clusters from ci on: at least one, at most max
     * (0 for clusters under an unallocated table); *l2_host is their
     * table (0 when unallocated). */
    bool (*entries)(VdImage *img, uint64_t ci, size_t max, uint64_t *out, size_t *n,
                    uint64_t *l2_host, GError **error);
    /* One entry's state; false with error when it is invalid. */
    bool (*classify)(VdImage *img, uint64_t ci, uint64_t entry, QedMapped *m, GError **error);
} QedMap;

/* block_status over such a map: the longest run from offset of one state
 * (DATA runs also contiguous in the file), after a bounded number of
 * table lookups. A bad entry after a good run ends the run; the error
 * comes when the caller asks about the bad entry itself. */
bool qed_map_status(VdImage *img, const QedMap *map, uint64_t offset, uint64_t length,
                    VdExtent *ext, GError **error);

/* Sort the offsets; false (and *clash, the first table of an overlapping
 * pair) when two of them overlap, or one is listed twice. */
bool qed_tables_sort(GArray *tables, uint64_t table_bytes, uint64_t *clash);

/* All k entries equal v. */
bool qed_entries_all(const uint64_t *entries, uint64_t k, uint64_t v);

/* Decode / encode n entries in the cache's byte order. */
void qed_tcache_decode(const QedTableCache *c, const uint8_t *raw, uint64_t *out, size_t n);
void qed_tcache_encode(const QedTableCache *c, const uint64_t *in, uint8_t *raw, size_t n);

#endif
