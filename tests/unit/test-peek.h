/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Checks of a driver's peek (the header-only open that listings use),
 * shared by the format tests: it agrees with a full open, and it reads no
 * table, however large the header says the table is.
 */
#ifndef TEST_PEEK_H
#define TEST_PEEK_H

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

#endif
