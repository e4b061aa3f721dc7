/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Password-based key derivation (PBKDF2, and Argon2 for LUKS2) for
 * encrypted images, bounded:
 * an image chooses its own iteration count, so a hostile one could make
 * an open cost hours of CPU. Counts above the mount's cap are refused
 * before any work, and the work runs on a thread of its own while the
 * opener waits in short slices, so a mount being shut down stops waiting
 * at once (PBKDF2 itself cannot be interrupted; the abandoned thread dies
 * with the process).
 */
#ifndef VD_KDF_H
#define VD_KDF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>
#include <openssl/evp.h>

#include "vd-context.h"

/* Whether a derivation of that many iterations is allowed by ctx's cap:
 * EACCES naming what ("disk.qcow2: LUKS key slot 3"), the count and the
 * option otherwise. */
bool vd_kdf_check_iterations(const VdContext *ctx, const char *what, uint64_t iterations,
                             GError **error);

/*
 * PBKDF2-HMAC with md of (pass, salt) into out[out_len], on a thread of its
 * own. Fails with EACCES when iterations exceed the cap
 * (vd_kdf_check_iterations), with ECANCELED as soon as ctx is cancelled
 * (vd_context_cancel), and with EIO when OpenSSL fails. The inputs are
 * copied (and the copies wiped), so the caller may return early.
 */
bool vd_kdf_pbkdf2(const VdContext *ctx, const char *what, const EVP_MD *md, const void *pass,
                   size_t pass_len, const uint8_t *salt, size_t salt_len, uint64_t iterations,
                   uint8_t *out, size_t out_len, GError **error);

/* Argon2 (LUKS2 key slots): the memory and work (passes times memory) an
 * image may ask for. cryptsetup's luksFormat takes at most 1 GiB and times
 * the passes to about two seconds, a handful at 1 GiB. */
#define VD_KDF_ARGON2_MAX_MEMORY_KIB (1u << 20)
#define VD_KDF_ARGON2_MAX_WORK       (1ull << 25)
#define VD_KDF_ARGON2_MAX_LANES      16u

/* Whether such an Argon2 derivation is allowed: EACCES naming what and
 * the cost when it asks for too much, EIO when it is not possible. */
bool vd_kdf_check_argon2(const char *what, uint64_t time_cost, uint64_t memory_kib, uint64_t lanes,
                         GError **error);

/* Argon2i (or Argon2id) version 1.3 of (pass, salt), bounded
 * (vd_kdf_check_argon2) and cancellable as vd_kdf_pbkdf2 is. */
bool vd_kdf_argon2(const VdContext *ctx, const char *what, bool argon2id, const void *pass,
                   size_t pass_len, const uint8_t *salt, size_t salt_len, uint32_t time_cost,
                   uint32_t memory_kib, uint32_t lanes, uint8_t *out, size_t out_len,
                   GError **error);

/* Derivation threads not yet returned: those of cancelled waits, which
 * finish alone. A finished derivation's thread has returned before its
 * call does. */
unsigned vd_kdf_threads_running(void);

#endif
