/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Checks shared by the format tests for writes that would land on an
 * image's metadata: the image is marked corrupt, every write fails with
 * EIO, not one byte of the file changes, and reads keep working.
 */
#ifndef TEST_GUARD_H
#define TEST_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "src/vd-image.h"

/* The whole file. */
GBytes *guard_file_bytes(const char *path);
/* Overwrite len bytes of path at off. */
void guard_patch(const char *path, uint64_t off, const void *bytes, size_t len);
void guard_patch_le32(const char *path, uint64_t off, uint32_t v);
void guard_patch_be32(const char *path, uint64_t off, uint32_t v);

/*
 * path opens read-only without a word, and read-write marked corrupt with
 * one warning that matches why (a g_pattern_match_simple pattern), which
 * is also the image's last error, whatever the refused writes then pass
 * to vd_image_record_error. A 4 KiB write at each of offs and a
 * write_zeroes at offset 0 fail with EIO, reads at offs still work, and
 * the file is byte for byte what it was.
 */
void guard_expect_refused(VdContext *ctx, const char *path, const char *why, const uint64_t *offs,
                          size_t n);
/* The same for an image of several files, watch the one that must not change. */
void guard_expect_refused_in(VdContext *ctx, const char *path, const char *watch, const char *why,
                             const uint64_t *offs, size_t n);

/* A driver-level check (for tests that build the image state by hand):
 * write len bytes at guest offset guest_off of rw (opened read-write from
 * host_path, where the image maps that offset onto metadata at meta_off,
 * meta_len bytes) and check: EIO, one log line naming the refusal, the
 * metadata bytes in the file unchanged, a later write at good_off (a
 * block that is fine) refused too, reads at good_off still working. */
void guard_expect_write_refused(VdImage *rw, const char *host_path, uint64_t guest_off, size_t len,
                                uint64_t meta_off, size_t meta_len, uint64_t good_off);
/* The bytes [off, off + len) of a host file. */
uint8_t *guard_read_host(const char *path, uint64_t off, size_t len);

#endif
