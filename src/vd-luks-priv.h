/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What src/vd-luks.c (LUKS1, key slots, sectors) and src/vd-luks2.c (the
 * LUKS2 binary header and JSON metadata) share: a parsed header in one
 * version-independent form.
 */
#ifndef VD_LUKS_PRIV_H
#define VD_LUKS_PRIV_H

#include <openssl/evp.h>

#include "vd-luks.h"

#define LUKS_MAX_SLOTS   32 /* LUKS2; LUKS1 has 8 */
#define LUKS_MAX_KEY     64
#define LUKS_MAX_SALT    64
#define LUKS_MAX_STRIPES 65536u
#define LUKS_SECTOR      512u
#define LUKS_NAME_LEN    32

typedef enum { LUKS_IV_NONE, LUKS_IV_PLAIN, LUKS_IV_PLAIN64, LUKS_IV_ESSIV } LuksIvGen;
typedef enum { LUKS_KDF_PBKDF2, LUKS_KDF_ARGON2I, LUKS_KDF_ARGON2ID } LuksKdf;

/* A cipher set up for sector transforms, with or without its key. */
typedef struct {
    const EVP_CIPHER *cipher;
    LuksIvGen ivgen;
    const EVP_MD *essiv_md;
    const EVP_CIPHER *essiv_cipher;
    uint8_t key[LUKS_MAX_KEY];
    size_t key_len;
    uint8_t essiv_key[EVP_MAX_MD_SIZE];
    unsigned key_bits; /* the cipher's strength (half the key for xts) */
} LuksCipher;

/* One active key slot, checked: where its material lies (relative to the
 * header) and how to turn a passphrase into the key that opens it. */
typedef struct {
    int index;
    LuksKdf kdf;
    uint64_t iterations;        /* Argon2: the time cost (passes) */
    uint32_t memory_kib, lanes; /* Argon2 */
    const EVP_MD *kdf_md;       /* PBKDF2 */
    uint8_t salt[LUKS_MAX_SALT];
    size_t salt_len;
    const EVP_MD *af_md;
    uint32_t stripes;
    uint64_t mat_off, mat_len;
    char cipher[LUKS_NAME_LEN + 1], mode[LUKS_NAME_LEN + 1]; /* the material's */
    size_t area_key_len;
    /* Set when the slot cannot be tried: the whole message (an
     * unsupported KDF, by name). */
    char *refused;
} LuksSlot;

struct VdLuks {
    gint ref;
    int version;
    char *name;
    uint64_t offset; /* of the header in the host file */
    char cipher_name[LUKS_NAME_LEN + 1], cipher_mode[LUKS_NAME_LEN + 1];
    char hash_spec[LUKS_NAME_LEN + 1];
    LuksCipher data;
    bool locked;
    uint64_t payload_offset, payload_size;
    uint32_t sector_size;
    uint64_t iv_tweak;
    uint64_t header_len; /* the header region, from offset */
    uint32_t active_slots;
    int slot; /* the one that opened it, or -1 */
    LuksSlot slots[LUKS_MAX_SLOTS];
    int n_slots;
    /* The master key digest. */
    const EVP_MD *digest_md;
    uint8_t digest_salt[LUKS_MAX_SALT];
    size_t digest_salt_len;
    uint64_t digest_iterations;
    uint8_t digest[EVP_MAX_MD_SIZE];
    size_t digest_len;
    /* LUKS1, as qemu-img info describes it: the UUID and every slot's
     * header fields, active or not. */
    char uuid[41];
    struct {
        uint32_t iterations, stripes;
        uint64_t key_offset; /* bytes, from the header */
    } v1_slots[8];           /* LUKS1 has eight */
};

/* Parse "xts-plain64" etc. for cipher cname with key_len bytes into c. */
bool luks_cipher_setup(LuksCipher *c, const char *name, const char *cname, const char *mode,
                       size_t key_len, GError **error);

/* Fill l from the LUKS2 header at l->offset of fd (magic and version
 * seen), within area_len. */
bool luks2_parse(VdLuks *l, int fd, uint64_t area_len, GError **error);

#endif
