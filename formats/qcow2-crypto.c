/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 encryption: LUKS (version 1 header in the clusters named by the
 * full-disk-encryption header extension; data sectors tweaked by their host
 * offset) and the legacy AES method (AES-128-CBC, plain64 IVs from the guest
 * offset, key = the passphrase's first 16 bytes). Ciphers and hashes come
 * from OpenSSL, PBKDF2 through src/vd-kdf (bounded, cancellable).
 */
#include "config.h"

#include <openssl/evp.h>
#include <string.h>

#include "formats/qcow2.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-info.h"
#include "src/vd-io.h"
#include "src/vd-kdf.h"

#define LUKS_HEADER_SIZE 592
#define LUKS_SLOTS       8
#define LUKS_SLOT_ACTIVE 0x00ac71f3u
#define LUKS_DIGEST_SIZE 20
#define LUKS_MAX_STRIPES 65536u
#define CRYPTO_MAX_KEY   64
#define CRYPTO_BLOCK     16

typedef enum { IV_NONE, IV_PLAIN, IV_PLAIN64, IV_ESSIV } IvGen;

struct Qcow2Crypto {
    gint ref;
    uint32_t method;
    const EVP_CIPHER *cipher;
    uint8_t key[CRYPTO_MAX_KEY];
    size_t key_len;
    IvGen ivgen;
    const EVP_CIPHER *essiv_cipher;
    uint8_t essiv_key[EVP_MAX_MD_SIZE];
    /* For vdisk info. */
    char cipher_name[33], cipher_mode[33], hash_spec[33];
    unsigned key_bits;
    int slot;
    uint32_t active_slots;
    bool locked; /* header read, no key: vdisk without a key file */
    /* The LUKS header as qemu-img info describes it. */
    char uuid[41];
    uint64_t payload_offset; /* bytes */
    uint32_t mk_iterations;
    struct {
        uint32_t iterations, stripes;
        uint64_t key_offset; /* bytes, within the header area */
    } slot_info[LUKS_SLOTS];
};

Qcow2Crypto *qcow2_crypto_ref(Qcow2Crypto *c)
{
    g_atomic_int_inc(&c->ref);
    return c;
}

void qcow2_crypto_unref(Qcow2Crypto *c)
{
    if (c == NULL || !g_atomic_int_dec_and_test(&c->ref))
        return;
    OPENSSL_cleanse(c, sizeof *c);
    g_free(c);
}

uint64_t qcow2_crypto_sector(const Qcow2State *s, uint64_t host, uint64_t guest)
{
    return (s->crypt_method == QCOW2_CRYPT_LUKS ? host : guest) / QCOW2_SECTOR;
}

static void make_iv(const Qcow2Crypto *c, EVP_CIPHER_CTX *ectx, uint64_t sector,
                    uint8_t iv[CRYPTO_BLOCK])
{
    memset(iv, 0, CRYPTO_BLOCK);
    switch (c->ivgen) {
    case IV_NONE:
        break;
    case IV_PLAIN:
        vd_put_le32(iv, (uint32_t)sector);
        break;
    case IV_PLAIN64:
        vd_put_le64(iv, sector);
        break;
    case IV_ESSIV: {
        uint8_t in[CRYPTO_BLOCK] = {0};
        int n = 0;
        vd_put_le64(in, sector);
        EVP_EncryptUpdate(ectx, iv, &n, in, CRYPTO_BLOCK);
        break;
    }
    }
}

/* The same sector-by-sector transform for data and for LUKS key material. */
static bool crypt_sectors(const EVP_CIPHER *cipher, const uint8_t *key, IvGen ivgen,
                          const Qcow2Crypto *c, bool encrypt, uint64_t sector, uint8_t *buf,
                          size_t len)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    EVP_CIPHER_CTX *ectx = NULL;
    bool ok = ctx != NULL && EVP_CipherInit_ex(ctx, cipher, NULL, key, NULL, encrypt ? 1 : 0);
    if (ok)
        EVP_CIPHER_CTX_set_padding(ctx, 0);
    if (ok && ivgen == IV_ESSIV) {
        ectx = EVP_CIPHER_CTX_new();
        ok = ectx != NULL && EVP_EncryptInit_ex(ectx, c->essiv_cipher, NULL, c->essiv_key, NULL);
        if (ok)
            EVP_CIPHER_CTX_set_padding(ectx, 0);
    }
    Qcow2Crypto ivc = {.ivgen = ivgen};
    for (size_t off = 0; ok && off < len; off += QCOW2_SECTOR, sector++) {
        uint8_t iv[CRYPTO_BLOCK];
        make_iv(&ivc, ectx, sector, iv);
        int n = 0;
        ok = EVP_CipherInit_ex(ctx, NULL, NULL, NULL, ivgen == IV_NONE ? NULL : iv, -1) &&
             EVP_CipherUpdate(ctx, buf + off, &n, buf + off, QCOW2_SECTOR) && n == QCOW2_SECTOR;
    }
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_CTX_free(ectx);
    return ok;
}

bool qcow2_crypto_run(Qcow2Crypto *c, bool encrypt, uint64_t sector, uint8_t *buf, size_t len,
                      const char *name, GError **error)
{
    if (c->locked) {
        vd_set_error(error, EACCES, "%s: image is encrypted and no keyfile was given", name);
        return false;
    }
    if (len % QCOW2_SECTOR != 0 ||
        !crypt_sectors(c->cipher, c->key, c->ivgen, c, encrypt, sector, buf, len)) {
        vd_set_error(error, EIO, "%s: %s failed at sector %" G_GUINT64_FORMAT, name,
                     encrypt ? "encryption" : "decryption", sector);
        return false;
    }
    return true;
}

/* A fixed-width, possibly unterminated header string. */
static void header_string(char *out, const uint8_t *p, size_t n)
{
    memcpy(out, p, n);
    out[n] = '\0';
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

/* Anti-forensic merge (LUKS): fold the stripes through the diffuser. */
static bool af_merge(const EVP_MD *md, const uint8_t *split, size_t key_bytes, uint32_t stripes,
                     uint8_t *out)
{
    size_t ds = (size_t)EVP_MD_get_size(md);
    uint8_t d[CRYPTO_MAX_KEY] = {0};
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

/* Parse the cipher mode string ("xts-plain64", "cbc-essiv:sha256", "ecb"). */
static bool luks_setup_cipher(Qcow2State *s, Qcow2Crypto *c, uint32_t key_bytes, GError **error)
{
    char mode[33];
    g_strlcpy(mode, c->cipher_mode, sizeof mode);
    char *dash = strchr(mode, '-');
    const char *ivspec = "";
    if (dash != NULL) {
        *dash = '\0';
        ivspec = dash + 1;
    }
    if (g_ascii_strcasecmp(c->cipher_name, "aes") != 0) {
        vd_set_error(error, ENOTSUP, "%s: LUKS cipher %s-%s is not supported (only aes)", s->name,
                     c->cipher_name, c->cipher_mode);
        return false;
    }
    c->cipher = aes_cipher(mode, key_bytes);
    if (c->cipher == NULL) {
        vd_set_error(error, ENOTSUP, "%s: LUKS cipher aes-%s with a %u-byte key is not supported",
                     s->name, c->cipher_mode, key_bytes);
        return false;
    }
    c->key_bits = strcmp(mode, "xts") == 0 ? key_bytes * 4 : key_bytes * 8;
    if (strcmp(mode, "ecb") == 0 && *ivspec == '\0') {
        c->ivgen = IV_NONE;
    } else if (strcmp(ivspec, "plain") == 0) {
        c->ivgen = IV_PLAIN;
    } else if (strcmp(ivspec, "plain64") == 0) {
        c->ivgen = IV_PLAIN64;
    } else if (g_str_has_prefix(ivspec, "essiv:")) {
        const EVP_MD *md = EVP_get_digestbyname(ivspec + 6);
        int ds = md ? EVP_MD_get_size(md) : 0;
        c->essiv_cipher = ds > 0 ? aes_ecb_for((size_t)ds) : NULL;
        if (c->essiv_cipher == NULL) {
            vd_set_error(error, ENOTSUP, "%s: LUKS IV generator %s is not supported", s->name,
                         ivspec);
            return false;
        }
        c->ivgen = IV_ESSIV;
    } else {
        vd_set_error(error, ENOTSUP, "%s: LUKS IV generator '%s' is not supported", s->name,
                     ivspec);
        return false;
    }
    return true;
}

static bool essiv_key(Qcow2Crypto *c, const char *ivspec_hash, const uint8_t *key, size_t len)
{
    const EVP_MD *md = EVP_get_digestbyname(ivspec_hash);
    unsigned n = 0;
    return md != NULL && EVP_Digest(key, len, c->essiv_key, &n, md, NULL);
}

/* An active key slot, checked: where its key material lies and how much
 * work its passphrase costs. */
typedef struct {
    int index;
    uint32_t iterations;
    uint32_t stripes;
    uint64_t mat_off; /* within the LUKS header area */
    uint64_t mat_len;
} LuksSlot;

static int slot_cmp(const void *a, const void *b)
{
    const LuksSlot *x = a, *y = b;
    if (x->iterations != y->iterations)
        return x->iterations < y->iterations ? -1 : 1;
    return x->index - y->index;
}

/* Try the passphrase on one slot: true with the master key in mk when its
 * digest matches, false with *error set only for failures that end the
 * search (cancellation, I/O); a wrong passphrase leaves *error NULL. */
static bool luks_try_slot(Qcow2State *s, VdImage *img, Qcow2Crypto *c, const uint8_t *h,
                          const EVP_MD *md, const char *pass, const char *essiv_hash,
                          const LuksSlot *slot, uint8_t *mk, GError **error)
{
    size_t key_bytes = c->key_len;
    g_autofree char *what = g_strdup_printf("%s: LUKS key slot %d", s->name, slot->index);
    g_autofree char *digest_what = g_strdup_printf("%s: LUKS master key digest", s->name);
    g_autofree uint8_t *mat = g_malloc(slot->mat_len);
    uint8_t slot_key[CRYPTO_MAX_KEY], digest[LUKS_DIGEST_SIZE];
    if (!vd_host_pread(s->fd, s->name, mat, slot->mat_len, s->crypto_offset + slot->mat_off, false,
                       error))
        return false;
    bool ok = vd_kdf_pbkdf2(img->ctx, what, md, pass, strlen(pass), h + 208 + slot->index * 48 + 8,
                            32, slot->iterations, slot_key, key_bytes, error);
    if (!ok) {
        OPENSSL_cleanse(mat, slot->mat_len);
        return false;
    }
    ok = essiv_hash == NULL || essiv_key(c, essiv_hash, slot_key, key_bytes);
    if (ok)
        ok = crypt_sectors(c->cipher, slot_key, c->ivgen, c, false, 0, mat, slot->mat_len);
    OPENSSL_cleanse(slot_key, sizeof slot_key);
    if (ok)
        ok = af_merge(md, mat, key_bytes, slot->stripes, mk);
    OPENSSL_cleanse(mat, slot->mat_len);
    if (!ok) {
        vd_set_error(error, EIO, "%s: decrypting the key material failed", what);
        return false;
    }
    if (!vd_kdf_pbkdf2(img->ctx, digest_what, md, mk, key_bytes, h + 132, 32, vd_be32(h + 164),
                       digest, LUKS_DIGEST_SIZE, error))
        return false;
    bool match = CRYPTO_memcmp(digest, h + 112, LUKS_DIGEST_SIZE) == 0;
    if (!match)
        OPENSSL_cleanse(mk, CRYPTO_MAX_KEY);
    return match;
}

static bool luks_open(Qcow2State *s, VdImage *img, Qcow2Crypto *c, const char *pass, GError **error)
{
    uint64_t file_size = qcow2_file_size(s);
    if (s->crypto_length < LUKS_HEADER_SIZE ||
        !vd_range_within(s->crypto_offset, s->crypto_length, file_size)) {
        vd_set_error(error, EIO,
                     "%s: LUKS header at 0x%" G_GINT64_MODIFIER "x (%" G_GUINT64_FORMAT
                     " bytes) lies outside the file",
                     s->name, s->crypto_offset, s->crypto_length);
        return false;
    }
    uint8_t h[LUKS_HEADER_SIZE];
    if (!vd_host_pread(s->fd, s->name, h, sizeof h, s->crypto_offset, false, error))
        return false;
    if (memcmp(h, "LUKS\xba\xbe", 6) != 0 || vd_be16(h + 6) != 1) {
        vd_set_error(error, EIO, "%s: no LUKS version 1 header at 0x%" G_GINT64_MODIFIER "x",
                     s->name, s->crypto_offset);
        return false;
    }
    header_string(c->cipher_name, h + 8, 32);
    header_string(c->cipher_mode, h + 40, 32);
    header_string(c->hash_spec, h + 72, 32);
    header_string(c->uuid, h + 168, 40);
    c->payload_offset = (uint64_t)vd_be32(h + 104) * QCOW2_SECTOR;
    c->mk_iterations = vd_be32(h + 164);
    for (int i = 0; i < LUKS_SLOTS; i++) {
        const uint8_t *ks = h + 208 + i * 48;
        c->slot_info[i].iterations = vd_be32(ks + 4);
        c->slot_info[i].key_offset = (uint64_t)vd_be32(ks + 40) * QCOW2_SECTOR;
        c->slot_info[i].stripes = vd_be32(ks + 44);
    }
    uint32_t key_bytes = vd_be32(h + 108);
    uint32_t mk_iter = vd_be32(h + 164);
    if (key_bytes == 0 || key_bytes > CRYPTO_MAX_KEY || mk_iter == 0) {
        vd_set_error(error, EIO, "%s: LUKS header has key size %u and %u digest iterations",
                     s->name, key_bytes, mk_iter);
        return false;
    }
    const EVP_MD *md = EVP_get_digestbyname(c->hash_spec);
    if (md == NULL) {
        vd_set_error(error, ENOTSUP, "%s: LUKS hash '%s' is not supported", s->name, c->hash_spec);
        return false;
    }
    if (!luks_setup_cipher(s, c, key_bytes, error))
        return false;
    const char *essiv_hash = c->ivgen == IV_ESSIV ? strchr(c->cipher_mode, ':') + 1 : NULL;
    c->key_len = key_bytes;
    if (pass == NULL) {
        /* The header only, for a description: the active slots. */
        for (int i = 0; i < LUKS_SLOTS; i++)
            if (vd_be32(h + 208 + i * 48) == LUKS_SLOT_ACTIVE)
                c->active_slots |= 1u << i;
        return true;
    }
    /* Every slot's check ends with the digest: past the cap, none can open. */
    g_autofree char *digest_what = g_strdup_printf("%s: LUKS master key digest", s->name);
    if (!vd_kdf_check_iterations(img->ctx, digest_what, mk_iter, error))
        return false;

    LuksSlot slots[LUKS_SLOTS];
    int n = 0;
    for (int i = 0; i < LUKS_SLOTS; i++) {
        const uint8_t *ks = h + 208 + i * 48;
        if (vd_be32(ks) != LUKS_SLOT_ACTIVE)
            continue;
        c->active_slots |= 1u << i;
        LuksSlot *sl = &slots[n++];
        sl->index = i;
        sl->iterations = vd_be32(ks + 4);
        sl->stripes = vd_be32(ks + 44);
        sl->mat_len = qcow2_round_up((uint64_t)key_bytes * sl->stripes, QCOW2_SECTOR);
        sl->mat_off = (uint64_t)vd_be32(ks + 40) * QCOW2_SECTOR;
        if (sl->iterations == 0 || sl->stripes == 0 || sl->stripes > LUKS_MAX_STRIPES ||
            !vd_range_within(sl->mat_off, sl->mat_len, s->crypto_length)) {
            vd_set_error(error, EIO, "%s: LUKS key slot %d is malformed", s->name, i);
            return false;
        }
    }
    /* Cheapest slots first, and none over the cap: a slot with a hostile
     * count costs nothing unless every cheaper one failed, and then at most
     * the cap. */
    qsort(slots, (size_t)n, sizeof slots[0], slot_cmp);
    uint8_t mk[CRYPTO_MAX_KEY];
    g_autoptr(GError) refused = NULL;
    for (int k = 0; k < n; k++) {
        g_autofree char *what = g_strdup_printf("%s: LUKS key slot %d", s->name, slots[k].index);
        if (!vd_kdf_check_iterations(img->ctx, what, slots[k].iterations,
                                     refused ? NULL : &refused))
            continue;
        GError *e = NULL;
        if (luks_try_slot(s, img, c, h, md, pass, essiv_hash, &slots[k], mk, &e)) {
            memcpy(c->key, mk, key_bytes);
            OPENSSL_cleanse(mk, sizeof mk);
            c->slot = slots[k].index;
            if (essiv_hash != NULL && !essiv_key(c, essiv_hash, c->key, key_bytes)) {
                vd_set_error(error, EIO, "%s: ESSIV key derivation failed", s->name);
                return false;
            }
            return true;
        }
        if (e != NULL) {
            g_propagate_error(error, e);
            return false;
        }
    }
    if (refused != NULL)
        vd_set_error(error, EACCES, "%s%s", refused->message,
                     n > 1 ? " (no other key slot takes the passphrase)" : "");
    else
        vd_set_error(error, EACCES, "%s: the passphrase opens none of the LUKS key slots", s->name);
    return false;
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
    GError *nokey = NULL;
    char *pass = vd_context_passphrase(img->ctx, img->name, &nokey);
    if (pass == NULL && !(img->ctx->open_locked && vd_error_errno(nokey) == EACCES)) {
        g_propagate_error(error, nokey);
        return false;
    }
    g_clear_error(&nokey);
    if (pass == NULL)
        vd_image_refuse_writes(img);
    Qcow2Crypto *c = g_new0(Qcow2Crypto, 1);
    c->locked = pass == NULL;
    c->ref = 1;
    c->method = s->crypt_method;
    c->slot = -1;
    bool ok;
    if (s->crypt_method == QCOW2_CRYPT_AES) {
        size_t n = pass != NULL ? MIN(strlen(pass), 16) : 0;
        if (n > 0)
            memcpy(c->key, pass, n);
        c->key_len = 16;
        c->key_bits = 128;
        c->cipher = EVP_aes_128_cbc();
        c->ivgen = IV_PLAIN64;
        strcpy(c->cipher_name, "aes");
        strcpy(c->cipher_mode, "cbc-plain64");
        ok = true;
    } else {
        ok = luks_open(s, img, c, pass, error);
    }
    vd_secret_free(pass);
    if (!ok) {
        qcow2_crypto_unref(c);
        return false;
    }
    s->crypto = c;
    return true;
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
    const Qcow2Crypto *c = s->crypto;
    if (c == NULL) {
        vd_info_add_bool(info, "encryption_unlocked", false);
        return;
    }
    vd_info_add_bool(info, "encryption_unlocked", !c->locked);
    vd_info_add_str(info, "encryption_cipher", "%s-%u", c->cipher_name, c->key_bits);
    vd_info_add_str(info, "encryption_mode", "%s", c->cipher_mode);
    if (s->crypt_method == QCOW2_CRYPT_LUKS) {
        vd_info_add_str(info, "encryption_hash", "%s", c->hash_spec);
        vd_info_add_str(info, "encryption_uuid", "%s", c->uuid);
        vd_info_add_u64(info, "encryption_payload_offset", c->payload_offset);
        vd_info_add_u64(info, "encryption_master_key_iterations", c->mk_iterations);
        /* One item a slot, in order; vdisk info --json makes objects of them. */
        for (int i = 0; i < LUKS_SLOTS; i++) {
            if (c->active_slots & (1u << i))
                vd_info_add_list_item(
                    info, "encryption_key_slots",
                    "active iterations=%u stripes=%u key_offset=%" G_GUINT64_FORMAT,
                    c->slot_info[i].iterations, c->slot_info[i].stripes,
                    c->slot_info[i].key_offset);
            else
                vd_info_add_list_item(info, "encryption_key_slots",
                                      "inactive key_offset=%" G_GUINT64_FORMAT,
                                      c->slot_info[i].key_offset);
        }
        for (int i = 0; i < LUKS_SLOTS; i++) {
            if (c->active_slots & (1u << i))
                vd_info_add_list_item(info, "encryption_active_slots", "%d", i);
        }
    }
}
