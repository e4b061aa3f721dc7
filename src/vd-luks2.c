/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * LUKS2 headers, implemented from the LUKS2 on-disk format specification:
 * two copies of a 4096-byte binary header, each followed by a JSON area,
 * the whole of each checksummed; the JSON names the key slots (their
 * area, KDF and anti-forensic split), the data segment (offset, size,
 * cipher, sector size) and the master key digests. What this reads is
 * turned into the version-independent form of vd-luks-priv.h, so that
 * unlocking and sector encryption are the LUKS1 code's.
 *
 * Key slots whose KDF is pbkdf2, argon2i or argon2id can be opened
 * (src/vd-kdf.c bounds them); others are refused by name.
 */
#include "config.h"

#include <json-glib/json-glib.h>
#include <string.h>

#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"
#include "src/vd-kdf.h"
#include "src/vd-luks-priv.h"

#define LUKS2_BIN_SIZE     4096u
#define LUKS2_MIN_HDR      16384u
#define LUKS2_MAX_HDR      (4u << 20)
#define LUKS2_CSUM_OFF     448
#define LUKS2_CSUM_LEN     64
#define LUKS2_SECOND_MAGIC "SKUL\xba\xbe"

/* ---- JSON access that never trusts a type ---- */

static JsonObject *get_obj(JsonObject *o, const char *k)
{
    JsonNode *n = o != NULL ? json_object_get_member(o, k) : NULL;
    return n != NULL && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

static const char *get_str(JsonObject *o, const char *k)
{
    JsonNode *n = o != NULL ? json_object_get_member(o, k) : NULL;
    return n != NULL && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
               ? json_node_get_string(n)
               : NULL;
}

/* A JSON integer, or a decimal string (LUKS2 writes 64-bit values as
 * strings, since JSON numbers are doubles to many readers). */
static bool get_u64(JsonObject *o, const char *k, uint64_t *v)
{
    JsonNode *n = o != NULL ? json_object_get_member(o, k) : NULL;
    if (n == NULL || !JSON_NODE_HOLDS_VALUE(n))
        return false;
    if (json_node_get_value_type(n) == G_TYPE_INT64) {
        gint64 i = json_node_get_int(n);
        if (i < 0)
            return false;
        *v = (uint64_t)i;
        return true;
    }
    const char *s = get_str(o, k);
    guint64 u;
    if (s == NULL || !g_ascii_string_to_unsigned(s, 10, 0, G_MAXUINT64, &u, NULL))
        return false;
    *v = u;
    return true;
}

/* Base64 into out[max]: its length, or 0 when absent, invalid or too long. */
static size_t get_b64(JsonObject *o, const char *k, uint8_t *out, size_t max)
{
    const char *s = get_str(o, k);
    /* g_base64_decode skips what is not base64: check first. */
    size_t sl = s != NULL ? strlen(s) : 0;
    if (sl == 0 || sl % 4 != 0 ||
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                  "0123456789+/=") != sl)
        return 0;
    gsize n = 0;
    g_autofree guchar *d = g_base64_decode(s, &n);
    if (n == 0 || n > max)
        return 0;
    memcpy(out, d, n);
    return n;
}

/* Whether array member k of o holds the string id. */
static bool array_has(JsonObject *o, const char *k, const char *id)
{
    JsonNode *n = o != NULL ? json_object_get_member(o, k) : NULL;
    if (n == NULL || !JSON_NODE_HOLDS_ARRAY(n))
        return false;
    JsonArray *a = json_node_get_array(n);
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonNode *e = json_array_get_element(a, i);
        if (JSON_NODE_HOLDS_VALUE(e) && json_node_get_value_type(e) == G_TYPE_STRING &&
            strcmp(json_node_get_string(e), id) == 0)
            return true;
    }
    return false;
}

/* "aes-xts-plain64" into "aes" and "xts-plain64". */
static bool split_spec(const char *spec, char *cipher, char *mode)
{
    const char *dash = spec != NULL ? strchr(spec, '-') : NULL;
    if (dash == NULL || (size_t)(dash - spec) > LUKS_NAME_LEN || strlen(dash + 1) > LUKS_NAME_LEN)
        return false;
    memcpy(cipher, spec, (size_t)(dash - spec));
    cipher[dash - spec] = '\0';
    strcpy(mode, dash + 1);
    return true;
}

/* ---- the binary headers ---- */

/* A binary header and its JSON area (hdr, hdr_size bytes) whose checksum
 * holds: the checksum over all of it with the checksum field zeroed. */
static bool checksum_ok(uint8_t *hdr, uint64_t hdr_size)
{
    char alg[LUKS_NAME_LEN + 1];
    memcpy(alg, hdr + 72, LUKS_NAME_LEN);
    alg[LUKS_NAME_LEN] = '\0';
    const EVP_MD *md = EVP_get_digestbyname(alg);
    int ds = md != NULL ? EVP_MD_get_size(md) : 0;
    if (ds <= 0 || ds > LUKS2_CSUM_LEN)
        return false;
    uint8_t want[LUKS2_CSUM_LEN], got[EVP_MAX_MD_SIZE];
    memcpy(want, hdr + LUKS2_CSUM_OFF, LUKS2_CSUM_LEN);
    memset(hdr + LUKS2_CSUM_OFF, 0, LUKS2_CSUM_LEN);
    unsigned n = 0;
    bool ok = EVP_Digest(hdr, hdr_size, got, &n, md, NULL) && memcmp(got, want, (size_t)ds) == 0;
    memcpy(hdr + LUKS2_CSUM_OFF, want, LUKS2_CSUM_LEN);
    return ok;
}

static bool valid_hdr_size(uint64_t size)
{
    return size >= LUKS2_MIN_HDR && size <= LUKS2_MAX_HDR && vd_is_pow2(size);
}

/* Read one copy at off (relative to the LUKS area): its bytes, or NULL
 * when it is not a valid header with magic (and offset) as expected. */
static uint8_t *read_copy(VdLuks *l, int fd, uint64_t off, const char *magic, uint64_t area_len,
                          uint64_t *hdr_size, uint64_t *seqid, GError **error)
{
    uint8_t bin[LUKS2_BIN_SIZE];
    if (!vd_range_within(off, LUKS2_BIN_SIZE, area_len) ||
        !vd_host_pread(fd, l->name, bin, sizeof bin, l->offset + off, false, error))
        return NULL;
    uint64_t size = vd_be64(bin + 8);
    if (memcmp(bin, magic, VD_LUKS_MAGIC_LEN) != 0 || vd_be16(bin + 6) != 2 ||
        !valid_hdr_size(size) || vd_be64(bin + 256) != off || !vd_range_within(off, size, area_len))
        return NULL;
    g_autofree uint8_t *hdr = g_malloc(size);
    memcpy(hdr, bin, sizeof bin);
    if (!vd_host_pread(fd, l->name, hdr + LUKS2_BIN_SIZE, size - LUKS2_BIN_SIZE,
                       l->offset + off + LUKS2_BIN_SIZE, false, error) ||
        !checksum_ok(hdr, size))
        return NULL;
    *hdr_size = size;
    *seqid = vd_be64(hdr + 16);
    return g_steal_pointer(&hdr);
}

/* ---- the JSON metadata ---- */

static bool parse_slot(VdLuks *l, const char *id, JsonObject *ks, uint64_t area_len,
                       uint64_t keyslots_end, GError **error)
{
    guint64 index;
    if (!g_ascii_string_to_unsigned(id, 10, 0, LUKS_MAX_SLOTS - 1, &index, NULL)) {
        vd_set_error(error, EIO, "%s: LUKS2 key slot '%s' is not a number below %d", l->name, id,
                     LUKS_MAX_SLOTS);
        return false;
    }
    const char *type = get_str(ks, "type");
    if (type == NULL || strcmp(type, "luks2") != 0)
        return true; /* not a key slot for a passphrase (reencryption...) */
    LuksSlot *sl = &l->slots[l->n_slots++];
    sl->index = (int)index;
    l->active_slots |= 1u << index;
    JsonObject *area = get_obj(ks, "area"), *kdf = get_obj(ks, "kdf"), *af = get_obj(ks, "af");
    uint64_t key_size = 0, area_key = 0, stripes = 0;
    const char *area_type = get_str(area, "type"), *af_type = get_str(af, "type");
    const char *kdf_type = get_str(kdf, "type");
    bool ok = get_u64(ks, "key_size", &key_size) && key_size > 0 && key_size <= LUKS_MAX_KEY &&
              area_type != NULL && strcmp(area_type, "raw") == 0 &&
              get_u64(area, "offset", &sl->mat_off) && get_u64(area, "size", &sl->mat_len) &&
              get_u64(area, "key_size", &area_key) && area_key > 0 && area_key <= LUKS_MAX_KEY &&
              split_spec(get_str(area, "encryption"), sl->cipher, sl->mode) && af_type != NULL &&
              strcmp(af_type, "luks1") == 0 && get_u64(af, "stripes", &stripes) && stripes > 0 &&
              stripes <= LUKS_MAX_STRIPES && kdf_type != NULL;
    if (ok) {
        sl->af_md = EVP_get_digestbyname(get_str(af, "hash") ? get_str(af, "hash") : "");
        sl->stripes = (uint32_t)stripes;
        sl->area_key_len = (size_t)area_key;
        uint64_t need = (key_size * stripes + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
        ok = sl->af_md != NULL && need <= sl->mat_len && sl->mat_off >= l->header_len &&
             vd_range_within(sl->mat_off, sl->mat_len, MIN(area_len, keyslots_end));
    }
    if (!ok) {
        vd_set_error(error, EIO, "%s: LUKS2 key slot %s is malformed", l->name, id);
        return false;
    }
    if (l->data.key_len == 0)
        l->data.key_len = (size_t)key_size;
    if (l->data.key_len != key_size) {
        vd_set_error(error, EIO,
                     "%s: LUKS2 key slot %s holds a %" G_GUINT64_FORMAT
                     "-byte key, others a %zu-byte one",
                     l->name, id, key_size, l->data.key_len);
        return false;
    }
    bool argon2 = strcmp(kdf_type, "argon2i") == 0 || strcmp(kdf_type, "argon2id") == 0;
    if (!argon2 && strcmp(kdf_type, "pbkdf2") != 0) {
        sl->refused = g_strdup_printf("%s: LUKS key slot %s uses %s, which vdiskfs cannot derive",
                                      l->name, id, kdf_type);
        return true;
    }
    sl->salt_len = get_b64(kdf, "salt", sl->salt, sizeof sl->salt);
    if (argon2) {
        uint64_t memory = 0, cpus = 0;
        sl->kdf = strcmp(kdf_type, "argon2id") == 0 ? LUKS_KDF_ARGON2ID : LUKS_KDF_ARGON2I;
        ok = get_u64(kdf, "time", &sl->iterations) && get_u64(kdf, "memory", &memory) &&
             get_u64(kdf, "cpus", &cpus) && sl->salt_len > 0 &&
             vd_kdf_check_argon2(l->name, sl->iterations, memory, cpus, NULL);
        /* Within bounds or not, they fit: the cap is checked, with its
         * message, when the slot is tried. */
        if (ok || (memory <= UINT32_MAX && cpus <= UINT32_MAX && sl->iterations <= UINT32_MAX &&
                   sl->salt_len > 0 && sl->iterations > 0 && cpus > 0 && memory >= 8 * cpus)) {
            sl->memory_kib = (uint32_t)memory;
            sl->lanes = (uint32_t)cpus;
            return true;
        }
        vd_set_error(error, EIO, "%s: LUKS2 key slot %s has a malformed %s KDF", l->name, id,
                     kdf_type);
        return false;
    }
    const char *hash = get_str(kdf, "hash");
    sl->kdf_md = hash != NULL ? EVP_get_digestbyname(hash) : NULL;
    if (sl->kdf_md == NULL || sl->salt_len == 0 || !get_u64(kdf, "iterations", &sl->iterations) ||
        sl->iterations == 0) {
        vd_set_error(error, EIO, "%s: LUKS2 key slot %s has a malformed pbkdf2 KDF", l->name, id);
        return false;
    }
    return true;
}

/* The one crypt segment: where the disk lies and how it is encrypted. */
static bool parse_segment(VdLuks *l, JsonObject *segs, const char **seg_id, GError **error)
{
    GList *ids = json_object_get_members(segs);
    guint n = g_list_length(ids);
    *seg_id = ids != NULL ? ids->data : NULL;
    g_list_free(ids);
    if (n != 1) {
        vd_set_error(error, ENOTSUP,
                     "%s: LUKS2 metadata has %u data segments (only one is supported: is a "
                     "reencryption under way?)",
                     l->name, n);
        return false;
    }
    JsonObject *seg = get_obj(segs, *seg_id);
    const char *type = get_str(seg, "type"), *size = get_str(seg, "size");
    uint64_t sector = 0;
    if (type == NULL || strcmp(type, "crypt") != 0 || !get_u64(seg, "offset", &l->payload_offset) ||
        size == NULL || !get_u64(seg, "sector_size", &sector) ||
        !split_spec(get_str(seg, "encryption"), l->cipher_name, l->cipher_mode)) {
        vd_set_error(error, EIO, "%s: LUKS2 data segment %s is malformed", l->name, *seg_id);
        return false;
    }
    if (strcmp(size, "dynamic") == 0) {
        l->payload_size = 0;
    } else if (!get_u64(seg, "size", &l->payload_size) || l->payload_size == 0) {
        vd_set_error(error, EIO, "%s: LUKS2 data segment size '%s' is malformed", l->name, size);
        return false;
    }
    if (sector != 512 && sector != 1024 && sector != 2048 && sector != 4096) {
        vd_set_error(error, EIO, "%s: LUKS2 sector size %" G_GUINT64_FORMAT " is invalid", l->name,
                     sector);
        return false;
    }
    l->sector_size = (uint32_t)sector;
    const char *tweak = get_str(seg, "iv_tweak");
    if (tweak != NULL && !get_u64(seg, "iv_tweak", &l->iv_tweak)) {
        vd_set_error(error, EIO, "%s: LUKS2 iv_tweak '%s' is malformed", l->name, tweak);
        return false;
    }
    if (json_object_has_member(seg, "integrity")) {
        vd_set_error(error, ENOTSUP,
                     "%s: LUKS2 authenticated encryption (integrity) is not supported", l->name);
        return false;
    }
    return true;
}

/* The digest of the segment's key; slots it does not name cannot open it. */
static bool parse_digest(VdLuks *l, JsonObject *digests, const char *seg_id, GError **error)
{
    JsonObject *dg = NULL;
    const char *dg_id = NULL;
    GList *ids = json_object_get_members(digests);
    for (GList *i = ids; i != NULL && dg == NULL; i = i->next) {
        JsonObject *d = get_obj(digests, i->data);
        if (array_has(d, "segments", seg_id)) {
            dg = d;
            dg_id = i->data;
        }
    }
    g_list_free(ids);
    const char *type = get_str(dg, "type"), *hash = get_str(dg, "hash");
    if (dg == NULL || type == NULL || strcmp(type, "pbkdf2") != 0 || hash == NULL) {
        vd_set_error(error, EIO, "%s: LUKS2 metadata has no pbkdf2 digest for segment %s", l->name,
                     seg_id);
        return false;
    }
    g_strlcpy(l->hash_spec, hash, sizeof l->hash_spec);
    l->digest_md = EVP_get_digestbyname(hash);
    l->digest_salt_len = get_b64(dg, "salt", l->digest_salt, sizeof l->digest_salt);
    l->digest_len = get_b64(dg, "digest", l->digest, sizeof l->digest);
    if (l->digest_md == NULL || l->digest_salt_len == 0 || l->digest_len == 0 ||
        !get_u64(dg, "iterations", &l->digest_iterations) || l->digest_iterations == 0) {
        vd_set_error(error, EIO, "%s: LUKS2 digest %s is malformed", l->name, dg_id);
        return false;
    }
    /* Keep only the slots that hold this key. */
    int kept = 0;
    for (int i = 0; i < l->n_slots; i++) {
        char id[12];
        g_snprintf(id, sizeof id, "%d", l->slots[i].index);
        if (array_has(dg, "keyslots", id)) {
            l->slots[kept++] = l->slots[i];
        } else {
            g_free(l->slots[i].refused);
            l->active_slots &= ~(1u << l->slots[i].index);
        }
    }
    for (int i = kept; i < l->n_slots; i++)
        memset(&l->slots[i], 0, sizeof l->slots[i]);
    l->n_slots = kept;
    return true;
}

static bool parse_json(VdLuks *l, const uint8_t *hdr, uint64_t hdr_size, uint64_t area_len,
                       GError **error)
{
    const char *text = (const char *)hdr + LUKS2_BIN_SIZE;
    size_t len = strnlen(text, hdr_size - LUKS2_BIN_SIZE);
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) jerr = NULL;
    if (!json_parser_load_from_data(parser, text, (gssize)len, &jerr)) {
        vd_set_error(error, EIO, "%s: LUKS2 metadata is not valid JSON: %s", l->name,
                     jerr->message);
        return false;
    }
    JsonNode *root = json_parser_get_root(parser);
    JsonObject *top =
        root != NULL && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
    JsonObject *keyslots = get_obj(top, "keyslots"), *segs = get_obj(top, "segments");
    JsonObject *digests = get_obj(top, "digests"), *config = get_obj(top, "config");
    uint64_t json_size = 0, keyslots_size = 0;
    if (keyslots == NULL || segs == NULL || digests == NULL || config == NULL ||
        !get_u64(config, "json_size", &json_size) || json_size != hdr_size - LUKS2_BIN_SIZE ||
        !get_u64(config, "keyslots_size", &keyslots_size)) {
        vd_set_error(error, EIO, "%s: LUKS2 metadata lacks keyslots, segments, digests or config",
                     l->name);
        return false;
    }
    JsonObject *req = get_obj(config, "requirements");
    JsonNode *mandatory = req != NULL ? json_object_get_member(req, "mandatory") : NULL;
    if (mandatory != NULL && JSON_NODE_HOLDS_ARRAY(mandatory) &&
        json_array_get_length(json_node_get_array(mandatory)) > 0) {
        JsonNode *first = json_array_get_element(json_node_get_array(mandatory), 0);
        const char *what =
            JSON_NODE_HOLDS_VALUE(first) && json_node_get_value_type(first) == G_TYPE_STRING
                ? json_node_get_string(first)
                : "?";
        vd_set_error(error, ENOTSUP, "%s: LUKS2 header requires '%s', which vdiskfs lacks", l->name,
                     what);
        return false;
    }
    uint64_t keyslots_end;
    if (__builtin_add_overflow(l->header_len, keyslots_size, &keyslots_end)) {
        vd_set_error(error, EIO, "%s: LUKS2 keyslots_size is absurd", l->name);
        return false;
    }
    const char *seg_id;
    if (!parse_segment(l, segs, &seg_id, error))
        return false;
    GList *ids = json_object_get_members(keyslots);
    bool ok = true;
    for (GList *i = ids; i != NULL && ok; i = i->next)
        ok = parse_slot(l, i->data, get_obj(keyslots, i->data), area_len, keyslots_end, error);
    g_list_free(ids);
    if (!ok || !parse_digest(l, digests, seg_id, error))
        return false;
    if (l->data.key_len == 0) {
        vd_set_error(error, EIO, "%s: LUKS2 metadata has no key slot for the data", l->name);
        return false;
    }
    return luks_cipher_setup(&l->data, l->name, l->cipher_name, l->cipher_mode, l->data.key_len,
                             error);
}

bool luks2_parse(VdLuks *l, int fd, uint64_t area_len, GError **error)
{
    /* The primary copy, else the secondary: it sits right after the
     * primary, whose size a damaged primary no longer tells, so every
     * size the format allows is tried. */
    uint64_t size = 0, seqid = 0, size2 = 0, seqid2 = 0;
    g_autofree uint8_t *hdr = read_copy(l, fd, 0, VD_LUKS_MAGIC, area_len, &size, &seqid, error);
    if (hdr == NULL && error != NULL && *error != NULL)
        return false;
    g_autofree uint8_t *hdr2 = NULL;
    for (uint64_t off = hdr != NULL ? size : LUKS2_MIN_HDR; off <= LUKS2_MAX_HDR && hdr2 == NULL;
         off *= 2) {
        hdr2 = read_copy(l, fd, off, LUKS2_SECOND_MAGIC, area_len, &size2, &seqid2, NULL);
        if (hdr != NULL)
            break;
    }
    if (hdr == NULL && hdr2 == NULL) {
        vd_set_error(error, EIO, "%s: neither LUKS2 header copy is valid (size, offset, checksum)",
                     l->name);
        return false;
    }
    /* The newer one wins: a crash between the two writes leaves the
     * secondary ahead. */
    if (hdr == NULL || (hdr2 != NULL && seqid2 > seqid && size2 == size)) {
        g_free(hdr);
        hdr = g_steal_pointer(&hdr2);
        size = size2;
    }
    l->header_len = 2 * size;
    return parse_json(l, hdr, size, area_len, error);
}
