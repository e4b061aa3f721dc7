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

#endif
