/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A big-reader lock: readers take one of several reader-writer locks, the
 * one of their thread's slot, each on its own cache line; a writer takes
 * them all. Hot read paths that must exclude rare writers then share no
 * lock word between threads, so parallel readers do not bounce a cache
 * line back and forth as they would on one rwlock.
 */
#ifndef VD_BRLOCK_H
#define VD_BRLOCK_H

#include <pthread.h>

#include <glib.h>

#define VD_BRLOCK_SLOTS 8

/* Padded rather than aligned (heap blocks are only 16-byte aligned): two
 * slots' lock words are then never within one 64-byte line. */
typedef struct {
    pthread_rwlock_t lock;
    char pad[128 - sizeof(pthread_rwlock_t)];
} VdBrLockSlot;

typedef struct {
    VdBrLockSlot slot[VD_BRLOCK_SLOTS];
} VdBrLock;

void vd_brlock_init(VdBrLock *l);
void vd_brlock_clear(VdBrLock *l);
/* Readers must not nest: a writer waiting in between would deadlock them. */
void vd_brlock_rdlock(VdBrLock *l);
void vd_brlock_rdunlock(VdBrLock *l);
void vd_brlock_wrlock(VdBrLock *l);
void vd_brlock_wrunlock(VdBrLock *l);

/*
 * LRU stamps for caches read under a big-reader lock: the clock advances
 * only on inserts (write lock), and a lookup (either mode) rewrites its
 * entry's stamp only when it differs, so that readers of one hot entry
 * do not all write its cache line. Entries used since the same insert
 * tie, which is as much order as eviction needs.
 */
static inline void vd_lru_touch(gint64 *last_use, const gint64 *tick)
{
    gint64 now = __atomic_load_n(tick, __ATOMIC_RELAXED);
    if (__atomic_load_n(last_use, __ATOMIC_RELAXED) != now)
        __atomic_store_n(last_use, now, __ATOMIC_RELAXED);
}

/* The stamp of a newly inserted entry (write lock held). */
static inline gint64 vd_lru_insert_stamp(gint64 *tick)
{
    return __atomic_add_fetch(tick, 1, __ATOMIC_RELAXED);
}

#endif
