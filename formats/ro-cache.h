/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A small LRU of decoded chunks for the read-only compressed formats
 * (cloop, dmg): a key (chunk index) maps to an immutable GBytes, so a
 * reader copies from it outside the lock. Decoding happens outside the
 * lock too; two threads may decode the same chunk at once, and the
 * second insert simply replaces the first.
 */
#ifndef RO_CACHE_H
#define RO_CACHE_H

#include <stdint.h>

#include <glib.h>

typedef struct RoCache RoCache;

/* Room for budget / unit entries, at least 2 and at most 256. */
RoCache *ro_cache_new(uint64_t budget, uint64_t unit);
void ro_cache_free(RoCache *c);
/* A new reference to the chunk, or NULL. */
GBytes *ro_cache_get(RoCache *c, uint64_t key);
/* Insert (takes a new reference), evicting the least recently used. */
void ro_cache_put(RoCache *c, uint64_t key, GBytes *data);

#endif
