/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Read-ahead for sequential reads of data that must be decoded: while the
 * kernel copies one reply out and the reader asks for the next, the next
 * range is already being decompressed, so both cores stay busy.
 */
#ifndef VD_READAHEAD_H
#define VD_READAHEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

typedef struct VdImage VdImage;
typedef struct VdReadahead VdReadahead;

/* Reads smaller than this never start or use read-ahead. */
#define VD_READAHEAD_MIN (128u * 1024)

VdReadahead *vd_readahead_new(void);
/* Waits for a running read-ahead to finish first. */
void vd_readahead_free(VdReadahead *ra);

/* Serve [offset, offset+len) from read-ahead if it holds exactly that
 * start (waiting for it if it is running); true when buf was filled, and
 * then the range after it is being read ahead already. */
bool vd_readahead_take(VdImage *img, void *buf, size_t len, uint64_t offset);
/* A read of [offset, offset+len) completed; decoded: it needed decoding.
 * Starts reading the next range ahead when the reads are sequential. */
void vd_readahead_note(VdImage *img, size_t len, uint64_t offset, bool decoded);
/* Wait until no read-ahead runs (for tests). */
void vd_readahead_wait(VdImage *img);
/* Something wrote to the image: drop what was read ahead. */
void vd_readahead_invalidate(VdImage *img);

#endif
