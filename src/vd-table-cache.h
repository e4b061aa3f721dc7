/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One bounded cache of fixed-size metadata tables (L2 tables, refcount
 * blocks, grain tables, BAT chunks), keyed by the table's host offset.
 *
 * Readers copy bytes out of a cached table under a big-reader lock
 * (vd_table_cache_read: no pin, no shared write on a hit). Writers pin a
 * table (get), change it through the cache (update), mark it dirty and
 * write it back (flush), or write the file themselves and tell the cache
 * (updated: write-through).
 *
 * A miss calls the load callback outside every lock; concurrent misses of
 * one key wait for that one load and share its table or its error. A load
 * races with writers: every change to a key that is being loaded bumps
 * that load's generation, and a load that finishes with its generation
 * changed is thrown away and done again, so a table read before a writer
 * changed it is never inserted.
 *
 * Eviction is least recently used among unpinned clean tables; dirty
 * tables stay until written back (the bound is soft for them, see
 * vd_table_cache_pressure), pinned ones stay until put. A cache may
 * depend on another (vd_table_cache_set_dependency): its flush first
 * flushes that one, so that what its tables point at is on disk before
 * they are.
 *
 * Capacity comes from the per-image metadata cache size (VdContext's
 * metadata_cache_bytes), as every driver's cache always sized itself.
 *
 * Locks (src/vd-image.h): the cache's lock is a leaf; callbacks never run
 * under it. flush_lock serialises write-backs of one cache and is held
 * across its store callback, never across another cache's flush.
 */
#ifndef VD_TABLE_CACHE_H
#define VD_TABLE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

typedef struct VdTableCache VdTableCache;

/* A pinned table. data is table_bytes long; a writer changes it only
 * through vd_table_cache_update() (readers copy it concurrently). */
typedef struct VdTable {
    uint64_t key;
    uint8_t *data;
} VdTable;

/* Fill data (table_bytes) with the table at key; false with error. */
typedef bool (*VdTableLoadFn)(void *opaque, uint64_t key, uint8_t *data, GError **error);
/* Write the table at key to the file; false with error. */
typedef bool (*VdTableStoreFn)(void *opaque, uint64_t key, const uint8_t *data, GError **error);

typedef struct {
    /* hits: of get() only; read() hits are not counted, so that the hot
     * path writes no shared counter. */
    uint64_t hits, misses;
    uint64_t loads;        /* load callbacks run */
    uint64_t shared_loads; /* misses that waited for another thread's load */
    uint64_t stale_loads;  /* loads thrown away: a writer changed the key meanwhile */
    uint64_t evictions;
    uint64_t stores; /* store callbacks run */
    unsigned entries, dirty, pinned;
    unsigned capacity;
} VdTableCacheStats;

/* max_bytes / table_bytes tables, at least min_entries (and at most
 * 65536). store may be NULL for a cache never marked dirty. */
VdTableCache *vd_table_cache_new(size_t table_bytes, uint64_t max_bytes, unsigned min_entries,
                                 VdTableLoadFn load, VdTableStoreFn store, void *opaque);
/* Dirty tables are dropped unwritten: flush first. */
void vd_table_cache_free(VdTableCache *c);

size_t vd_table_cache_table_bytes(const VdTableCache *c);

/* Flush first before writing back this cache's tables (NULL: none). */
void vd_table_cache_set_dependency(VdTableCache *c, VdTableCache *first);

/* Copy len bytes at offset within the table at key into out, loading it
 * on a miss. The hot read path: a hit takes only a read lock. */
bool vd_table_cache_read(VdTableCache *c, uint64_t key, size_t offset, size_t len, void *out,
                         GError **error);

/* The table at key, pinned (loaded on a miss); NULL with error. */
VdTable *vd_table_cache_get(VdTableCache *c, uint64_t key, GError **error);
/* A new table at key with the given contents (or zeros), pinned and
 * dirty, without reading the file: for tables just allocated. */
VdTable *vd_table_cache_get_new(VdTableCache *c, uint64_t key, const void *data);
void vd_table_cache_put(VdTableCache *c, VdTable *t);

/* Change bytes of a pinned table (readers see the old or the new bytes,
 * never a mix within one call) and mark it dirty. */
void vd_table_cache_update(VdTableCache *c, VdTable *t, size_t offset, const void *src, size_t len);
void vd_table_cache_mark_dirty(VdTableCache *c, VdTable *t);

/* Write-through: the caller wrote bytes [offset, offset + len) of the
 * table at key to the file. Update the cached copy, if any; a load of it
 * under way is done again. */
void vd_table_cache_updated(VdTableCache *c, uint64_t key, size_t offset, const void *src,
                            size_t len);

/* Write back every table dirty when called (after the dependency's),
 * then evict down to capacity. */
bool vd_table_cache_flush(VdTableCache *c, GError **error);
/* Dirty tables have pushed the cache past its capacity: time to flush. */
bool vd_table_cache_pressure(VdTableCache *c);
/* Dirty tables in the cache: for a writer's own write-back rule. Takes
 * only a read lock, unlike vd_table_cache_stats. */
unsigned vd_table_cache_dirty_count(VdTableCache *c);

/* Forget the table at key / every table overlapping host bytes [start,
 * start + len) / everything: dirty ones unwritten, loads under way done
 * again. Pinned tables stay pinned but leave the index. */
void vd_table_cache_invalidate(VdTableCache *c, uint64_t key);
void vd_table_cache_invalidate_range(VdTableCache *c, uint64_t start, uint64_t len);
void vd_table_cache_invalidate_all(VdTableCache *c);

void vd_table_cache_stats(VdTableCache *c, VdTableCacheStats *st);

#endif
