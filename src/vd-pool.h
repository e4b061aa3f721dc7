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
} VdPool;

/* Declares a VdPool with static storage: `static VD_POOL(name);`. */
#define VD_POOL(name) VdPool name = {0, NULL}

/* The pool of p: fn on up to threads threads (0: one per core). Every
 * call for p must pass the same fn and threads. */
GThreadPool *vd_pool_get(VdPool *p, GFunc fn, unsigned threads);

#endif
