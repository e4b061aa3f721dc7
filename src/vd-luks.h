/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * LUKS, independent of what holds it: a LUKS header read from a host file
 * at an offset (qcow2's encryption header, or a whole LUKS image), key
 * slots unlocked with a passphrase (PBKDF2 through src/vd-kdf: bounded,
 * cancellable), and sectors encrypted or decrypted with the master key.
 * Also the header-less "plain" form (a cipher and a key, no slots) that
 * qcow2's legacy AES method is.
 *
 * A VdLuks is immutable once unlocked and may be used from any number of
 * threads at once; it is reference counted so that snapshots can share it.
 */
#ifndef VD_LUKS_H
#define VD_LUKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "vd-context.h"

typedef struct VdLuks VdLuks;
typedef struct VdInfo VdInfo;
struct VdMetaMap;

#define VD_LUKS_MAGIC     "LUKS\xba\xbe"
#define VD_LUKS_MAGIC_LEN 6

/*
 * Read and check the LUKS header at offset of fd. area_len bounds the
 * LUKS area (header, key material, and for a whole image the payload):
 * every offset the header gives must lie inside it. name is for messages.
 * The result is locked: vd_luks_unlock() gives it its key.
 */
VdLuks *vd_luks_parse(int fd, const char *name, uint64_t offset, uint64_t area_len, GError **error);

/*
 * Try pass on the active key slots, cheapest first, none over ctx's
 * iteration cap. EACCES when no slot takes it (the reason names a refused
 * slot where there was one), ECANCELED when ctx was cancelled, EIO for
 * I/O errors.
 */
bool vd_luks_unlock(VdLuks *l, const VdContext *ctx, int fd, const char *pass, GError **error);

/*
 * No header: cipher (e.g. "aes") and mode (e.g. "cbc-plain64") with key,
 * or locked when key is NULL.
 */
VdLuks *vd_luks_new_plain(const char *name, const char *cipher, const char *mode,
                          const uint8_t *key, size_t key_len, GError **error);

/*
 * The passphrase of an encrypted image (vd_context_passphrase): true with
 * it in *pass (vd_secret_free), or true with *pass NULL where there is
 * none and ctx->open_locked lets the image open without its key (vdisk:
 * described, never read or written); EACCES with the reason otherwise.
 */
bool vd_luks_passphrase(const VdContext *ctx, const char *image_name, char **pass, GError **error);

VdLuks *vd_luks_ref(VdLuks *l);
void vd_luks_unref(VdLuks *l);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VdLuks, vd_luks_unref)

/*
 * Encrypt or decrypt len bytes (a multiple of vd_luks_sector_size) in
 * place, the first of them being sector (in units of the sector size).
 * The IV generator is given the sector's offset in 512-byte units, plus
 * the header's IV tweak. EACCES when locked.
 */
bool vd_luks_crypt(const VdLuks *l, bool encrypt, uint64_t sector, uint8_t *buf, size_t len,
                   GError **error);

bool vd_luks_locked(const VdLuks *l);
/* 1 or 2; 0 for the plain form. */
int vd_luks_version(const VdLuks *l);
/* The payload (encrypted data) relative to the header's offset, and its
 * length: 0 means the rest of the area. */
uint64_t vd_luks_payload_offset(const VdLuks *l);
uint64_t vd_luks_payload_size(const VdLuks *l);
uint32_t vd_luks_sector_size(const VdLuks *l);
/* The master key's length in bytes. */
size_t vd_luks_key_size(const VdLuks *l);

/* Record the header and every key slot's material (at base + their
 * offsets) in map. */
void vd_luks_add_meta(const VdLuks *l, struct VdMetaMap *map, uint64_t base);

/* Cipher, mode, hash, active slots and whether unlocked, as
 * <prefix>unlocked, <prefix>cipher ("aes-256"), <prefix>mode,
 * <prefix>hash, <prefix>active_slots. */
void vd_luks_describe(const VdLuks *l, VdInfo *info, const char *prefix);

#endif
