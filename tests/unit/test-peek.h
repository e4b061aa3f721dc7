/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Checks of a driver's peek (the header-only open that listings use),
 * shared by the format tests: it agrees with a full open, and it reads no
 * table, however large the header says the table is.
 */
#ifndef TEST_PEEK_H
#define TEST_PEEK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/vd-image.h"

/* vd_image_peek(path) used the driver's own peek, and its size, members
 * and writability equal those of a full read-write open. */
void peek_assert_like_open(VdContext *ctx, const char *path);

/* Peek path in a child process whose address space may grow by at most
 * limit_mib MiB (headers claim tables larger than that): a peek that
 * loaded or allocated the table would die there. The peeked size must be
 * want_size. Under AddressSanitizer, whose shadow memory rules out an
 * address space limit, the peek runs unlimited. */
void peek_assert_bounded(VdContext *ctx, const char *path, uint64_t want_size, unsigned limit_mib);

/* Make path a sparse file of size bytes that starts with head. */
void peek_write_sparse(const char *path, const void *head, size_t head_len, uint64_t size);

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
