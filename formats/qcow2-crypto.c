/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 encryption: LUKS (version 1 header in the clusters named by the
 * full-disk-encryption header extension; data sectors tweaked by their host
 * offset) and the legacy AES method (AES-128-CBC, plain64 IVs from the guest
 * offset, key = the passphrase's first 16 bytes). Both are src/vd-luks
 * objects: the LUKS one parsed from the header, the AES one plain.
 */
#include "config.h"

#include <openssl/crypto.h>
#include <string.h>

#include "formats/qcow2.h"
#include "src/vd-error.h"
#include "src/vd-info.h"
#include "src/vd-io.h"
#include "src/vd-luks.h"

uint64_t qcow2_crypto_sector(const Qcow2State *s, uint64_t host, uint64_t guest)
{
    return (s->crypt_method == QCOW2_CRYPT_LUKS ? host : guest) / QCOW2_SECTOR;
}

static VdLuks *luks_open(Qcow2State *s, VdImage *img, const char *pass, GError **error)
{
    if (!vd_range_within(s->crypto_offset, s->crypto_length, qcow2_file_size(s))) {
        vd_set_error(error, EIO,
                     "%s: LUKS header at 0x%" G_GINT64_MODIFIER "x (%" G_GUINT64_FORMAT
                     " bytes) lies outside the file",
                     s->name, s->crypto_offset, s->crypto_length);
        return NULL;
    }
    g_autoptr(VdLuks) l = vd_luks_parse(s->fd, s->name, s->crypto_offset, s->crypto_length, error);
    if (l == NULL)
        return NULL;
    if (vd_luks_version(l) != 1 || vd_luks_sector_size(l) != QCOW2_SECTOR) {
        vd_set_error(error, EIO, "%s: no LUKS version 1 header at 0x%" G_GINT64_MODIFIER "x",
                     s->name, s->crypto_offset);
        return NULL;
    }
    if (pass != NULL && !vd_luks_unlock(l, img->ctx, s->fd, pass, error))
        return NULL;
    return g_steal_pointer(&l);
}

static VdLuks *aes_open(Qcow2State *s, const char *pass, GError **error)
{
    uint8_t key[16] = {0};
    if (pass != NULL)
        memcpy(key, pass, MIN(strlen(pass), sizeof key));
    VdLuks *l = vd_luks_new_plain(s->name, "aes", "cbc-plain64", pass != NULL ? key : NULL,
                                  sizeof key, error);
    OPENSSL_cleanse(key, sizeof key);
    return l;
}

bool qcow2_crypto_open(Qcow2State *s, VdImage *img, GError **error)
{
    if (s->crypt_method != QCOW2_CRYPT_AES && s->crypt_method != QCOW2_CRYPT_LUKS) {
        vd_set_error(error, ENOTSUP, "%s: unknown encryption method %u", s->name, s->crypt_method);
        return false;
    }
    if (s->crypt_method == QCOW2_CRYPT_LUKS && s->crypto_length == 0) {
        vd_set_error(error, EIO, "%s: LUKS-encrypted but no encryption header extension", s->name);
        return false;
    }
    /* Without a passphrase, and where the opener allows it (vdisk): the
     * header is read and described, every read of data fails with EACCES,
     * and the image is never written. */
    char *pass;
    if (!vd_luks_passphrase(img->ctx, img->name, &pass, error))
        return false;
    if (pass == NULL)
        vd_image_refuse_writes(img);
    s->crypto = s->crypt_method == QCOW2_CRYPT_AES ? aes_open(s, pass, error)
                                                   : luks_open(s, img, pass, error);
    vd_secret_free(pass);
    return s->crypto != NULL;
}

void qcow2_crypto_describe(const Qcow2State *s, VdInfo *info)
{
    if (s->crypt_method == QCOW2_CRYPT_NONE) {
        vd_info_add_str(info, "encryption", "none");
        return;
    }
    vd_info_add_str(info, "encryption", "%s",
                    s->crypt_method == QCOW2_CRYPT_AES    ? "aes"
                    : s->crypt_method == QCOW2_CRYPT_LUKS ? "luks"
                                                          : "unknown");
    if (s->crypto == NULL) {
        vd_info_add_bool(info, "encryption_unlocked", false);
        return;
    }
    vd_luks_describe(s->crypto, info, "encryption_");
}
