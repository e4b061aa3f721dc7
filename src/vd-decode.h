/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Decoding (decompressing, decrypting) several extents of one read at
 * once, on a pool of one thread per core: a 1 MiB read of a compressed
 * image is sixteen 64 KiB clusters that need not wait for each other.
 */
#ifndef VD_DECODE_H
#define VD_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "vd-image.h"

typedef struct VdDecodeBatch VdDecodeBatch;

/* An empty batch (on the caller's stack: call vd_decode_batch_finish). */
VdDecodeBatch *vd_decode_batch_new(void);
/* img->driver->pread(img, buf, len, offset): run now or on the pool. */
void vd_decode_batch_add(VdDecodeBatch *b, VdImage *img, void *buf, size_t len, uint64_t offset);
/* Wait for every job; false with the first error. Frees the batch. */
bool vd_decode_batch_finish(VdDecodeBatch *b, GError **error);

#endif
