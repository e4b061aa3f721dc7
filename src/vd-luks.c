/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * LUKS key slots and sector encryption (see vd-luks.h), implemented from
 * the LUKS1 on-disk format specification: a 592-byte big-endian header,
 * eight key slots whose key material is the master key split into stripes
 * by the anti-forensic splitter (hash diffusion) and encrypted with a key
 * PBKDF2 derives from the passphrase, and a PBKDF2 digest of the master
 * key to tell the right passphrase. Ciphers and hashes come from OpenSSL.
 * LUKS2 headers (src/vd-luks2.c) come down to the same slots and digest.
 */
#include "config.h"

#include <openssl/crypto.h>
#include <string.h>

#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-info.h"
#include "src/vd-io.h"
#include "src/vd-kdf.h"
#include "src/vd-luks-priv.h"
#include "src/vd-metamap.h"

#define LUKS1_HEADER_SIZE 592
#define LUKS1_SLOTS       8
#define LUKS1_SLOT_ACTIVE 0x00ac71f3u
#define LUKS1_DIGEST_SIZE 20
#define LUKS1_SALT_SIZE   32
#define CIPHER_BLOCK      16

static VdLuks *luks_new(const char *name)
{
    VdLuks *l = g_new0(VdLuks, 1);
    l->ref = 1;
    l->name = g_strdup(name);
    l->slot = -1;
    l->locked = true;
    l->sector_size = LUKS_SECTOR;
    return l;
}

VdLuks *vd_luks_ref(VdLuks *l)
{
    g_atomic_int_inc(&l->ref);
    return l;
}

void vd_luks_unref(VdLuks *l)
{
    if (l == NULL || !g_atomic_int_dec_and_test(&l->ref))
        return;
    for (int i = 0; i < l->n_slots; i++)
        g_free(l->slots[i].refused);
    g_free(l->name);
    OPENSSL_cleanse(l, sizeof *l);
    g_free(l);
}

static const EVP_CIPHER *aes_by_key(size_t key_bytes, const EVP_CIPHER *k16, const EVP_CIPHER *k24,
                                    const EVP_CIPHER *k32)
{
    return key_bytes == 16 ? k16 : key_bytes == 24 ? k24 : key_bytes == 32 ? k32 : NULL;
}

static const EVP_CIPHER *aes_ecb_for(size_t key_bytes)
{
    return aes_by_key(key_bytes, EVP_aes_128_ecb(), EVP_aes_192_ecb(), EVP_aes_256_ecb());
}

static const EVP_CIPHER *aes_cipher(const char *mode, size_t key_bytes)
{
    if (strcmp(mode, "xts") == 0)
        return key_bytes == 32 ? EVP_aes_128_xts() : key_bytes == 64 ? EVP_aes_256_xts() : NULL;
    if (strcmp(mode, "cbc") == 0)
        return aes_by_key(key_bytes, EVP_aes_128_cbc(), EVP_aes_192_cbc(), EVP_aes_256_cbc());
    if (strcmp(mode, "ecb") == 0)
        return aes_ecb_for(key_bytes);
    return NULL;
}

bool luks_cipher_setup(LuksCipher *c, const char *name, const char *cname, const char *cmode,
                       size_t key_len, GError **error)
{
    char mode[LUKS_NAME_LEN + 1];
    g_strlcpy(mode, cmode, sizeof mode);
    char *dash = strchr(mode, '-');
    const char *ivspec = "";
    if (dash != NULL) {
        *dash = '\0';
        ivspec = dash + 1;
    }
    if (g_ascii_strcasecmp(cname, "aes") != 0) {
        vd_set_error(error, ENOTSUP, "%s: LUKS cipher %s-%s is not supported (only aes)", name,
                     cname, cmode);
        return false;
    }
    memset(c, 0, sizeof *c);
    c->cipher = aes_cipher(mode, key_len);
    if (c->cipher == NULL) {
        vd_set_error(error, ENOTSUP, "%s: LUKS cipher aes-%s with a %zu-byte key is not supported",
                     name, cmode, key_len);
        return false;
    }
    c->key_len = key_len;
    c->key_bits = (unsigned)(strcmp(mode, "xts") == 0 ? key_len * 4 : key_len * 8);
    if (strcmp(mode, "ecb") == 0 && *ivspec == '\0') {
        c->ivgen = LUKS_IV_NONE;
    } else if (strcmp(ivspec, "plain") == 0) {
        c->ivgen = LUKS_IV_PLAIN;
    } else if (strcmp(ivspec, "plain64") == 0) {
        c->ivgen = LUKS_IV_PLAIN64;
    } else if (g_str_has_prefix(ivspec, "essiv:")) {
        c->essiv_md = EVP_get_digestbyname(ivspec + 6);
        int ds = c->essiv_md ? EVP_MD_get_size(c->essiv_md) : 0;
        c->essiv_cipher = ds > 0 ? aes_ecb_for((size_t)ds) : NULL;
        if (c->essiv_cipher == NULL) {
            vd_set_error(error, ENOTSUP, "%s: LUKS IV generator %s is not supported", name, ivspec);
            return false;
        }
        c->ivgen = LUKS_IV_ESSIV;
    } else {
        vd_set_error(error, ENOTSUP, "%s: LUKS IV generator '%s' is not supported", name, ivspec);
        return false;
    }
    return true;
}

/* Give c its key (and ESSIV its salt key: the hash of the key). */
static bool cipher_set_key(LuksCipher *c, const uint8_t *key)
{
    memcpy(c->key, key, c->key_len);
    unsigned n = 0;
    return c->ivgen != LUKS_IV_ESSIV ||
           EVP_Digest(key, c->key_len, c->essiv_key, &n, c->essiv_md, NULL);
}

static void make_iv(const LuksCipher *c, EVP_CIPHER_CTX *ectx, uint64_t sector,
                    uint8_t iv[CIPHER_BLOCK])
{
    memset(iv, 0, CIPHER_BLOCK);
    switch (c->ivgen) {
    case LUKS_IV_NONE:
        break;
    case LUKS_IV_PLAIN:
        vd_put_le32(iv, (uint32_t)sector);
        break;
    case LUKS_IV_PLAIN64:
        vd_put_le64(iv, sector);
        break;
    case LUKS_IV_ESSIV: {
        uint8_t in[CIPHER_BLOCK] = {0};
        int n = 0;
        vd_put_le64(in, sector);
        EVP_EncryptUpdate(ectx, iv, &n, in, CIPHER_BLOCK);
        break;
    }
    }
}

/* The same sector-by-sector transform for data and for key material. */
static bool crypt_sectors(const LuksCipher *c, bool encrypt, uint64_t iv_sector,
                          uint32_t sector_size, uint8_t *buf, size_t len)
{
    /* IVs count 512-byte units whatever the sector size (LUKS2 with
     * 4096-byte sectors: 0, 8, 16...), as cryptsetup does for LUKS. */
    uint64_t iv_step = sector_size / LUKS_SECTOR;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    EVP_CIPHER_CTX *ectx = NULL;
    bool ok = ctx != NULL && EVP_CipherInit_ex(ctx, c->cipher, NULL, c->key, NULL, encrypt ? 1 : 0);
    if (ok)
        EVP_CIPHER_CTX_set_padding(ctx, 0);
    if (ok && c->ivgen == LUKS_IV_ESSIV) {
        ectx = EVP_CIPHER_CTX_new();
        ok = ectx != NULL && EVP_EncryptInit_ex(ectx, c->essiv_cipher, NULL, c->essiv_key, NULL);
        if (ok)
            EVP_CIPHER_CTX_set_padding(ectx, 0);
    }
    for (size_t off = 0; ok && off < len; off += sector_size, iv_sector += iv_step) {
        uint8_t iv[CIPHER_BLOCK];
        make_iv(c, ectx, iv_sector, iv);
        int n = 0;
        ok = EVP_CipherInit_ex(ctx, NULL, NULL, NULL, c->ivgen == LUKS_IV_NONE ? NULL : iv, -1) &&
             EVP_CipherUpdate(ctx, buf + off, &n, buf + off, (int)sector_size) &&
             n == (int)sector_size;
    }
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_CTX_free(ectx);
    return ok;
}

bool vd_luks_crypt(const VdLuks *l, bool encrypt, uint64_t sector, uint8_t *buf, size_t len,
                   GError **error)
{
    if (l->locked) {
        vd_set_error(error, EACCES, "%s: image is encrypted and no keyfile was given", l->name);
        return false;
    }
    if (len % l->sector_size != 0 ||
        !crypt_sectors(&l->data, encrypt, sector * (l->sector_size / LUKS_SECTOR) + l->iv_tweak,
                       l->sector_size, buf, len)) {
        vd_set_error(error, EIO, "%s: %s failed at sector %" G_GUINT64_FORMAT, l->name,
                     encrypt ? "encryption" : "decryption", sector);
        return false;
    }
    return true;
}

/* Anti-forensic merge: fold the stripes through the hash diffuser. */
static bool af_merge(const EVP_MD *md, const uint8_t *split, size_t key_bytes, uint32_t stripes,
                     uint8_t *out)
{
    size_t ds = (size_t)EVP_MD_get_size(md);
    uint8_t d[LUKS_MAX_KEY] = {0};
    for (uint32_t s = 0; s + 1 < stripes; s++) {
        for (size_t i = 0; i < key_bytes; i++)
            d[i] ^= split[(size_t)s * key_bytes + i];
        for (size_t j = 0; j * ds < key_bytes; j++) {
            size_t n = MIN(ds, key_bytes - j * ds);
            uint8_t iv[4], h[EVP_MAX_MD_SIZE];
            unsigned hl = 0;
            vd_put_be32(iv, (uint32_t)j);
            EVP_MD_CTX *m = EVP_MD_CTX_new();
            bool ok = m != NULL && EVP_DigestInit_ex(m, md, NULL) && EVP_DigestUpdate(m, iv, 4) &&
                      EVP_DigestUpdate(m, d + j * ds, n) && EVP_DigestFinal_ex(m, h, &hl);
            EVP_MD_CTX_free(m);
            if (!ok)
                return false;
            memcpy(d + j * ds, h, n);
        }
    }
    for (size_t i = 0; i < key_bytes; i++)
        out[i] = d[i] ^ split[(size_t)(stripes - 1) * key_bytes + i];
    OPENSSL_cleanse(d, sizeof d);
    return true;
}

/* A fixed-width, possibly unterminated header string. */
static void header_string(char *out, const uint8_t *p, size_t n)
{
    memcpy(out, p, n);
    out[n] = '\0';
}

static bool parse_v1(VdLuks *l, const uint8_t *h, uint64_t area_len, GError **error)
{
    header_string(l->cipher_name, h + 8, 32);
    header_string(l->cipher_mode, h + 40, 32);
    header_string(l->hash_spec, h + 72, 32);
    uint32_t key_bytes = vd_be32(h + 108);
    l->digest_iterations = vd_be32(h + 164);
    if (key_bytes == 0 || key_bytes > LUKS_MAX_KEY || l->digest_iterations == 0) {
        vd_set_error(error, EIO,
                     "%s: LUKS header has key size %u and %" G_GUINT64_FORMAT " digest iterations",
                     l->name, key_bytes, l->digest_iterations);
        return false;
    }
    l->digest_md = EVP_get_digestbyname(l->hash_spec);
    if (l->digest_md == NULL) {
        vd_set_error(error, ENOTSUP, "%s: LUKS hash '%s' is not supported", l->name, l->hash_spec);
        return false;
    }
    if (!luks_cipher_setup(&l->data, l->name, l->cipher_name, l->cipher_mode, key_bytes, error))
        return false;
    memcpy(l->digest, h + 112, LUKS1_DIGEST_SIZE);
    l->digest_len = LUKS1_DIGEST_SIZE;
    memcpy(l->digest_salt, h + 132, LUKS1_SALT_SIZE);
    l->digest_salt_len = LUKS1_SALT_SIZE;
    l->header_len = LUKS1_HEADER_SIZE;
    l->payload_offset = (uint64_t)vd_be32(h + 104) * LUKS_SECTOR;
    header_string(l->uuid, h + 168, 40);
    for (int i = 0; i < LUKS1_SLOTS; i++) {
        const uint8_t *ks = h + 208 + i * 48;
        l->v1_slots[i].iterations = vd_be32(ks + 4);
        l->v1_slots[i].stripes = vd_be32(ks + 44);
        l->v1_slots[i].key_offset = (uint64_t)vd_be32(ks + 40) * LUKS_SECTOR;
        if (vd_be32(ks) != LUKS1_SLOT_ACTIVE)
            continue;
        l->active_slots |= 1u << i;
        LuksSlot *sl = &l->slots[l->n_slots++];
        sl->index = i;
        sl->iterations = vd_be32(ks + 4);
        memcpy(sl->salt, ks + 8, LUKS1_SALT_SIZE);
        sl->salt_len = LUKS1_SALT_SIZE;
        sl->kdf_md = sl->af_md = l->digest_md;
        sl->stripes = vd_be32(ks + 44);
        sl->mat_off = (uint64_t)vd_be32(ks + 40) * LUKS_SECTOR;
        sl->mat_len =
            ((uint64_t)key_bytes * sl->stripes + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
        g_strlcpy(sl->cipher, l->cipher_name, sizeof sl->cipher);
        g_strlcpy(sl->mode, l->cipher_mode, sizeof sl->mode);
        sl->area_key_len = key_bytes;
        if (sl->iterations == 0 || sl->stripes == 0 || sl->stripes > LUKS_MAX_STRIPES ||
            sl->mat_off < LUKS1_HEADER_SIZE ||
            !vd_range_within(sl->mat_off, sl->mat_len, area_len)) {
            vd_set_error(error, EIO,
                         "%s: LUKS key slot %d is malformed (%" G_GUINT64_FORMAT
                         " iterations, %u stripes, key material at 0x%" G_GINT64_MODIFIER
                         "x of a %" G_GUINT64_FORMAT "-byte area)",
                         l->name, i, sl->iterations, sl->stripes, sl->mat_off, area_len);
            return false;
        }
    }
    return true;
}

VdLuks *vd_luks_parse(int fd, const char *name, uint64_t offset, uint64_t area_len, GError **error)
{
    if (area_len < LUKS1_HEADER_SIZE) {
        vd_set_error(error, EIO,
                     "%s: LUKS area at 0x%" G_GINT64_MODIFIER "x (%" G_GUINT64_FORMAT
                     " bytes) is too small for a LUKS header",
                     name, offset, area_len);
        return NULL;
    }
    uint8_t h[LUKS1_HEADER_SIZE];
    if (!vd_host_pread(fd, name, h, sizeof h, offset, false, error))
        return NULL;
    if (memcmp(h, VD_LUKS_MAGIC, VD_LUKS_MAGIC_LEN) != 0) {
        vd_set_error(error, EIO, "%s: no LUKS header at 0x%" G_GINT64_MODIFIER "x", name, offset);
        return NULL;
    }
    g_autoptr(VdLuks) l = luks_new(name);
    l->offset = offset;
    l->version = vd_be16(h + 6);
    if (l->version != 1 && l->version != 2) {
        vd_set_error(error, ENOTSUP, "%s: LUKS version %d is not supported", name, l->version);
        return NULL;
    }
    if (!(l->version == 1 ? parse_v1(l, h, area_len, error) : luks2_parse(l, fd, area_len, error)))
        return NULL;
    return g_steal_pointer(&l);
}

VdLuks *vd_luks_new_plain(const char *name, const char *cipher, const char *mode,
                          const uint8_t *key, size_t key_len, GError **error)
{
    g_autoptr(VdLuks) l = luks_new(name);
    g_strlcpy(l->cipher_name, cipher, sizeof l->cipher_name);
    g_strlcpy(l->cipher_mode, mode, sizeof l->cipher_mode);
    if (!luks_cipher_setup(&l->data, name, cipher, mode, key_len, error))
        return NULL;
    if (key != NULL) {
        if (!cipher_set_key(&l->data, key)) {
            vd_set_error(error, EIO, "%s: setting up the cipher failed", name);
            return NULL;
        }
        l->locked = false;
    }
    return g_steal_pointer(&l);
}

bool vd_luks_passphrase(const VdContext *ctx, const char *image_name, char **pass, GError **error)
{
    GError *nokey = NULL;
    *pass = vd_context_passphrase(ctx, image_name, &nokey);
    if (*pass == NULL && !(ctx->open_locked && vd_error_errno(nokey) == EACCES)) {
        g_propagate_error(error, nokey);
        return false;
    }
    g_clear_error(&nokey);
    return true;
}

static int slot_cmp(const void *a, const void *b)
{
    const LuksSlot *x = *(const LuksSlot *const *)a, *y = *(const LuksSlot *const *)b;
    /* PBKDF2 before Argon2 (whose memory is the cost that hurts), then by
     * passes or iterations. */
    int xa = x->kdf != LUKS_KDF_PBKDF2, ya = y->kdf != LUKS_KDF_PBKDF2;
    if (xa != ya)
        return xa - ya;
    if (x->iterations != y->iterations)
        return x->iterations < y->iterations ? -1 : 1;
    return x->index - y->index;
}

/* Try the passphrase on one slot: true with the master key in mk when its
 * digest matches, false with *error set only for failures that end the
 * search (cancellation, I/O); a wrong passphrase leaves *error NULL. */
static bool try_slot(const VdLuks *l, const VdContext *ctx, int fd, const char *pass,
                     const LuksSlot *slot, uint8_t *mk, GError **error)
{
    size_t mk_len = l->data.key_len;
    g_autofree char *what = g_strdup_printf("%s: LUKS key slot %d", l->name, slot->index);
    g_autofree char *digest_what = g_strdup_printf("%s: LUKS master key digest", l->name);
    LuksCipher area;
    if (!luks_cipher_setup(&area, what, slot->cipher, slot->mode, slot->area_key_len, error))
        return false;
    g_autofree uint8_t *mat = g_malloc(slot->mat_len);
    uint8_t slot_key[LUKS_MAX_KEY], digest[EVP_MAX_MD_SIZE];
    if (!vd_host_pread(fd, l->name, mat, slot->mat_len, l->offset + slot->mat_off, false, error))
        return false;
    bool ok =
        slot->kdf == LUKS_KDF_PBKDF2
            ? vd_kdf_pbkdf2(ctx, what, slot->kdf_md, pass, strlen(pass), slot->salt, slot->salt_len,
                            slot->iterations, slot_key, slot->area_key_len, error)
            : vd_kdf_argon2(ctx, what, slot->kdf == LUKS_KDF_ARGON2ID, pass, strlen(pass),
                            slot->salt, slot->salt_len, (uint32_t)slot->iterations,
                            slot->memory_kib, slot->lanes, slot_key, slot->area_key_len, error);
    if (!ok) {
        OPENSSL_cleanse(mat, slot->mat_len);
        return false;
    }
    ok = cipher_set_key(&area, slot_key) &&
         crypt_sectors(&area, false, 0, LUKS_SECTOR, mat, slot->mat_len);
    OPENSSL_cleanse(slot_key, sizeof slot_key);
    OPENSSL_cleanse(&area, sizeof area);
    if (ok)
        ok = af_merge(slot->af_md, mat, mk_len, slot->stripes, mk);
    OPENSSL_cleanse(mat, slot->mat_len);
    if (!ok) {
        vd_set_error(error, EIO, "%s: decrypting the key material failed", what);
        return false;
    }
    if (!vd_kdf_pbkdf2(ctx, digest_what, l->digest_md, mk, mk_len, l->digest_salt,
                       l->digest_salt_len, l->digest_iterations, digest, l->digest_len, error))
        return false;
    bool match = CRYPTO_memcmp(digest, l->digest, l->digest_len) == 0;
    if (!match)
        OPENSSL_cleanse(mk, LUKS_MAX_KEY);
    return match;
}

bool vd_luks_unlock(VdLuks *l, const VdContext *ctx, int fd, const char *pass, GError **error)
{
    /* Every slot's check ends with the digest: past the cap, none can open. */
    g_autofree char *digest_what = g_strdup_printf("%s: LUKS master key digest", l->name);
    if (!vd_kdf_check_iterations(ctx, digest_what, l->digest_iterations, error))
        return false;
    /* Cheapest slots first, and none over the cap: a slot with a hostile
     * count costs nothing unless every cheaper one failed, and then at most
     * the cap. */
    const LuksSlot *order[LUKS_MAX_SLOTS];
    for (int k = 0; k < l->n_slots; k++)
        order[k] = &l->slots[k];
    qsort(order, (size_t)l->n_slots, sizeof order[0], slot_cmp);
    uint8_t mk[LUKS_MAX_KEY];
    g_autoptr(GError) refused = NULL;
    for (int k = 0; k < l->n_slots; k++) {
        const LuksSlot *sl = order[k];
        g_autofree char *what = g_strdup_printf("%s: LUKS key slot %d", l->name, sl->index);
        if (sl->refused != NULL) {
            if (refused == NULL)
                vd_set_error(&refused, EACCES, "%s", sl->refused);
            continue;
        }
        bool allowed =
            sl->kdf == LUKS_KDF_PBKDF2
                ? vd_kdf_check_iterations(ctx, what, sl->iterations, refused ? NULL : &refused)
                : vd_kdf_check_argon2(what, sl->iterations, sl->memory_kib, sl->lanes,
                                      refused ? NULL : &refused);
        if (!allowed)
            continue;
        GError *e = NULL;
        if (try_slot(l, ctx, fd, pass, sl, mk, &e)) {
            bool ok = cipher_set_key(&l->data, mk);
            OPENSSL_cleanse(mk, sizeof mk);
            if (!ok) {
                vd_set_error(error, EIO, "%s: ESSIV key derivation failed", l->name);
                return false;
            }
            l->slot = sl->index;
            l->locked = false;
            return true;
        }
        if (e != NULL) {
            g_propagate_error(error, e);
            return false;
        }
    }
    if (refused != NULL)
        vd_set_error(error, EACCES, "%s%s", refused->message,
                     l->n_slots > 1 ? " (no other key slot takes the passphrase)" : "");
    else
        vd_set_error(error, EACCES, "%s: the passphrase opens none of the LUKS key slots", l->name);
    return false;
}

bool vd_luks_locked(const VdLuks *l)
{
    return l->locked;
}

int vd_luks_version(const VdLuks *l)
{
    return l->version;
}

uint64_t vd_luks_payload_offset(const VdLuks *l)
{
    return l->payload_offset;
}

uint64_t vd_luks_payload_size(const VdLuks *l)
{
    return l->payload_size;
}

uint32_t vd_luks_sector_size(const VdLuks *l)
{
    return l->sector_size;
}

size_t vd_luks_key_size(const VdLuks *l)
{
    return l->data.key_len;
}

void vd_luks_add_meta(const VdLuks *l, VdMetaMap *map, uint64_t base)
{
    vd_meta_map_add(map, base, l->header_len, "LUKS header", NULL);
    for (int i = 0; i < l->n_slots; i++)
        vd_meta_map_add(map, base + l->slots[i].mat_off, l->slots[i].mat_len, "LUKS key material",
                        NULL);
}

void vd_luks_describe(const VdLuks *l, VdInfo *info, const char *prefix)
{
    g_autofree char *k_unlocked = g_strconcat(prefix, "unlocked", NULL);
    g_autofree char *k_cipher = g_strconcat(prefix, "cipher", NULL);
    g_autofree char *k_mode = g_strconcat(prefix, "mode", NULL);
    g_autofree char *k_hash = g_strconcat(prefix, "hash", NULL);
    g_autofree char *k_slots = g_strconcat(prefix, "active_slots", NULL);
    vd_info_add_bool(info, k_unlocked, !l->locked);
    vd_info_add_str(info, k_cipher, "%s-%u", l->cipher_name, l->data.key_bits);
    vd_info_add_str(info, k_mode, "%s", l->cipher_mode);
    if (l->version == 0)
        return;
    vd_info_add_str(info, k_hash, "%s", l->hash_spec);
    if (l->version == 1) {
        /* What qemu-img info's "encrypt" object holds (vdisk info --json
         * builds it from these). */
        g_autofree char *k_uuid = g_strconcat(prefix, "uuid", NULL);
        g_autofree char *k_payload = g_strconcat(prefix, "payload_offset", NULL);
        g_autofree char *k_mk = g_strconcat(prefix, "master_key_iterations", NULL);
        g_autofree char *k_key_slots = g_strconcat(prefix, "key_slots", NULL);
        vd_info_add_str(info, k_uuid, "%s", l->uuid);
        vd_info_add_u64(info, k_payload, l->payload_offset);
        vd_info_add_u64(info, k_mk, l->digest_iterations);
        /* One item a slot, in order. */
        for (int i = 0; i < LUKS1_SLOTS; i++) {
            if (l->active_slots & (1u << i))
                vd_info_add_list_item(
                    info, k_key_slots,
                    "active iterations=%u stripes=%u key_offset=%" G_GUINT64_FORMAT,
                    l->v1_slots[i].iterations, l->v1_slots[i].stripes, l->v1_slots[i].key_offset);
            else
                vd_info_add_list_item(info, k_key_slots, "inactive key_offset=%" G_GUINT64_FORMAT,
                                      l->v1_slots[i].key_offset);
        }
    }
    for (int i = 0; i < LUKS_MAX_SLOTS; i++) {
        if (l->active_slots & (1u << i))
            vd_info_add_list_item(info, k_slots, "%d", i);
    }
}
