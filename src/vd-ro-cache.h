/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The cache of decoded chunks of the read-only compressed formats (dmg,
 * cloop): a key (chunk index) maps to an immutable GBytes, so a reader
 * copies from it outside the lock.
 *
 * Sizing. Every cache may hold budget / unit entries (at least 2, at most
 * 256): its floor, from VdContext's decode_cache_bytes. A chunk is decoded
 * whole, so readers working on more chunks than that at once would evict
 * each other's chunks and decode them again for every request (64 MiB of
 * inflate per 1 MiB read). So the cache grows beyond its floor to one entry
 * per chunk in concurrent use: as many as were being decoded at the same
 * time, plus one whenever a chunk comes back after it was evicted (one of
 * the keys evicted lately, as many as the cache may hold and at least
 * 1024: random reads over many chunks grow the cache in proportion to
 * its size until they fit; a sequential pass, which never comes back,
 * does not).
 * It holds at most 16384 entries, found by a hash of their keys, and
 * evicts the least recently used in constant time.
 * Entries above the floor borrow unit bytes each from one pool shared by
 * every cache of the process, vd_ro_cache_shared_limit(): 512 MiB, or an
 * eighth of the physical memory if that is less. When the pool is spent,
 * the least recently used entry goes, as before. Entries above the floor
 * that went unused for 2 s and for 16 uses per entry of the others are
 * dropped, and the cache shrinks back.
 *
 * Decoding. vd_ro_cache_fetch decodes a missing chunk outside the lock, once:
 * readers asking for a chunk that is being decoded wait for that decode
 * and share its result, or its error.
 */
#ifndef VD_RO_CACHE_H
#define VD_RO_CACHE_H

#include <stdint.h>

#include <glib.h>

typedef struct VdRoCache VdRoCache;

/* Decode chunk key: a new GBytes, or NULL with error set. */
typedef GBytes *(*VdRoDecodeFunc)(gpointer user, uint64_t key, GError **error);

/* Floor of budget / unit entries (2 to 256); unit is the largest chunk. */
VdRoCache *vd_ro_cache_new(uint64_t budget, uint64_t unit);
void vd_ro_cache_free(VdRoCache *c);

/* A new reference to chunk key: cached, or decoded by decode(user, key)
 * once however many readers ask at the same time. */
GBytes *vd_ro_cache_fetch(VdRoCache *c, uint64_t key, VdRoDecodeFunc decode, gpointer user,
                          GError **error);

/* A new reference to the chunk, or NULL (then decode and vd_ro_cache_put). */
GBytes *vd_ro_cache_get(VdRoCache *c, uint64_t key);
/* Insert (takes a new reference), evicting the least recently used. */
void vd_ro_cache_put(VdRoCache *c, uint64_t key, GBytes *data);

/* For tests: entries held now, and entries it may hold now. */
unsigned vd_ro_cache_entries(VdRoCache *c);
unsigned vd_ro_cache_capacity(VdRoCache *c);
/* The bytes all caches together may hold above their floors. */
uint64_t vd_ro_cache_shared_limit(void);

#endif
