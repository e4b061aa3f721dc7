/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Background thread pools: made once, on first use, and kept for the
 * life of the process, one for each kind of background work (decoding
 * the clusters of one read side by side, reading ahead, finishing xz
 * blocks, decoding bzip2 blocks ahead).
 */
#ifndef VD_POOL_H
#define VD_POOL_H

#include <glib.h>

typedef struct {
    gsize once;
    GThreadPool *pool;
    GFunc fn;
} VdPool;

/* Declares a VdPool with static storage: `static VD_POOL(name);`. */
#define VD_POOL(name) VdPool name = {0, NULL, NULL}

/* The pool of p: fn on up to threads threads (0: one per core). Every
 * call for p must pass the same fn and threads. */
GThreadPool *vd_pool_get(VdPool *p, GFunc fn, unsigned threads);

/* A new thread runs where its creator may: one started from a FUSE ring
 * thread, which is pinned to its queue's CPU, would be pinned there too,
 * and every decode of the mount would share that one core. Called first
 * by every background thread (pool threads get it from vd_pool_get),
 * never by code that may run on the thread that asked for the work:
 * the calling thread may run wherever the process may. Once per thread;
 * then free. */
void vd_thread_unpin(void);

#endif
