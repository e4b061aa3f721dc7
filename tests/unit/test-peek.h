/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shared by the format tests: what vd_image_peek (a listing's look at an
 * image) must agree on with a full open, and what it must not cost.
 */
#ifndef TEST_PEEK_H
#define TEST_PEEK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/vd-image.h"

/* Peeking at path gives what a read-only open without the backing chain
 * gives: the same driver, virtual size, members (in order) and whether the
 * format forbids writing; and no driver state is left behind. */
void peek_expect_same(VdContext *ctx, const char *path);
/* Peeking at path (whose header claims a table of table_bytes) succeeds
 * with virtual size size and keeps less than a sixteenth of that on the
 * heap while the peeked image lives; with open_loads, a full open keeps
 * at least half of it (so that the measure is seen to tell them apart).
 * Heap statistics come from glibc; where the allocator gives none
 * (sanitizers), only the size is checked. */
void peek_expect_small(VdContext *ctx, const char *path, uint64_t size, size_t table_bytes,
                       bool open_loads);

#endif
