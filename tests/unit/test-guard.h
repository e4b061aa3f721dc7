/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shared by the format tests: a guest write that an image maps onto its
 * own metadata must be refused the way vd_image_guard_write promises.
 */
#ifndef TEST_GUARD_H
#define TEST_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "src/vd-image.h"

/* Write len bytes at guest offset guest_off of rw (opened read-write from
 * host_path, where the image maps that offset onto metadata at meta_off,
 * meta_len bytes) and check: EIO, one log line naming the refusal, the
 * metadata bytes in the file unchanged, a later write at good_off (a
 * block that is fine) refused too, reads at good_off still working. */
void guard_expect_refused(VdImage *rw, const char *host_path, uint64_t guest_off, size_t len,
                          uint64_t meta_off, size_t meta_len, uint64_t good_off);
/* The bytes [off, off + len) of a host file. */
uint8_t *guard_read_host(const char *path, uint64_t off, size_t len);

#endif
