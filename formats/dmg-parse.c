/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * DMG metadata parsers, pure functions over buffers (fuzzable):
 *
 * - the XML property list: <plist><dict> with key "resource-fork" holding
 *   a dict whose key "blkx" holds an array of dicts; each has a base64
 *   <data> under key "Data": a mish block.
 * - the classic resource fork of older images: a 16-byte header (data
 *   offset, map offset, data length, map length; big-endian 32-bit) and
 *   a data area of resources, each a 32-bit length and its bytes.
 * - mish blocks: "mish", version, first sector (8), sector count (16),
 *   data offset (24), ..., number of chunks (200), then 40-byte chunks:
 *   type, comment, first sector, sector count, offset, length.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "formats/dmg.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"

#define MISH_HEADER   204
#define MISH_CHUNK    40
#define PLIST_DEPTH   32
#define PLIST_KEY_MAX 256

typedef struct {
    const char *name;
    GPtrArray *path;   /* char *: the key each open container sits under ("[]" in arrays) */
    GString *kinds;    /* one letter per open container: 'p'list, 'd'ict, 'a'rray */
    GPtrArray *blobs;  /* GBytes */
    GString *key;      /* text of the <key> being read, or NULL */
    char *pending_key; /* the last complete <key> in the innermost dict */
    GString *data;     /* base64 of the <data> being captured, or NULL */
    bool in_data;      /* inside a <data> (captured or not) */
    uint64_t decoded;  /* bytes decoded so far */
} PlistParse;

/* The container path "/resource-fork/blkx/[]" identifies a blkx entry. */
static bool path_is_blkx_entry(GPtrArray *path)
{
    static const char *const want[] = {"", "resource-fork", "blkx", "[]"};
    if (path->len != 5)
        return false; /* plist element, root dict, rsrc dict, array, entry */
    for (guint i = 0; i < 4; i++) {
        if (strcmp(g_ptr_array_index(path, i + 1), want[i]) != 0)
            return false;
    }
    return true;
}

static bool is_container(const char *element)
{
    return strcmp(element, "dict") == 0 || strcmp(element, "array") == 0 ||
           strcmp(element, "plist") == 0;
}

/* After a value ends: inside an array the next item again sits under "[]". */
static void value_done(PlistParse *p)
{
    g_clear_pointer(&p->pending_key, g_free);
    if (p->kinds->len > 0 && p->kinds->str[p->kinds->len - 1] == 'a')
        p->pending_key = g_strdup("[]");
}

static void plist_start(GMarkupParseContext *ctx, const char *element, const char **names,
                        const char **values, gpointer user, GError **error)
{
    PlistParse *p = user;
    (void)ctx;
    (void)names;
    (void)values;
    if (p->key != NULL || p->in_data) {
        vd_set_error(error, EIO, "%s: property list has <%s> inside a key or data", p->name,
                     element);
        return;
    }
    if (strcmp(element, "key") == 0) {
        p->key = g_string_new(NULL);
    } else if (strcmp(element, "data") == 0) {
        p->in_data = true;
        if (path_is_blkx_entry(p->path) && g_strcmp0(p->pending_key, "Data") == 0)
            p->data = g_string_new(NULL);
    } else if (is_container(element)) {
        if (p->path->len >= PLIST_DEPTH) {
            vd_set_error(error, EIO, "%s: property list nests deeper than %d", p->name,
                         PLIST_DEPTH);
            return;
        }
        g_ptr_array_add(p->path, g_strdup(p->pending_key ? p->pending_key : ""));
        g_string_append_c(p->kinds, element[0]);
        g_clear_pointer(&p->pending_key, g_free);
        if (element[0] == 'a')
            p->pending_key = g_strdup("[]");
    }
}

static void plist_end(GMarkupParseContext *ctx, const char *element, gpointer user, GError **error)
{
    PlistParse *p = user;
    (void)ctx;
    if (strcmp(element, "key") == 0 && p->key != NULL) {
        g_free(p->pending_key);
        p->pending_key = g_string_free(p->key, FALSE);
        p->key = NULL;
        return;
    }
    if (strcmp(element, "data") == 0) {
        p->in_data = false;
        if (p->data != NULL) {
            g_autoptr(GString) b64 = p->data;
            p->data = NULL;
            if (p->blobs->len >= DMG_MAX_BLKX) {
                vd_set_error(error, EIO, "%s: more than %u blkx entries", p->name, DMG_MAX_BLKX);
                return;
            }
            gsize n = 0;
            guchar *bin = g_base64_decode(b64->len ? b64->str : "", &n);
            p->decoded += n;
            g_ptr_array_add(p->blobs, g_bytes_new_take(bin, n));
        }
    } else if (is_container(element) && p->path->len > 0) {
        g_ptr_array_remove_index(p->path, p->path->len - 1);
        g_string_truncate(p->kinds, p->kinds->len - 1);
    }
    /* Any value (string, integer, data, a whole dict...) consumes the key. */
    value_done(p);
}

static void plist_text(GMarkupParseContext *ctx, const char *text, gsize len, gpointer user,
                       GError **error)
{
    PlistParse *p = user;
    (void)ctx;
    if (p->key != NULL) {
        if (p->key->len + len > PLIST_KEY_MAX) {
            vd_set_error(error, EIO, "%s: property list key longer than %d bytes", p->name,
                         PLIST_KEY_MAX);
            return;
        }
        g_string_append_len(p->key, text, (gssize)len);
        return;
    }
    if (p->data == NULL)
        return;
    /* Keep only base64 characters: the data is wrapped with tabs and newlines. */
    for (gsize i = 0; i < len; i++) {
        char c = text[i];
        if (g_ascii_isalnum(c) || c == '+' || c == '/' || c == '=')
            g_string_append_c(p->data, c);
    }
    if (p->decoded + p->data->len / 4 * 3 > DMG_MAX_METADATA)
        vd_set_error(error, EIO, "%s: blkx data larger than %u bytes", p->name, DMG_MAX_METADATA);
}

bool dmg_plist_blkx(const char *name, const char *xml, size_t len, GPtrArray **blobs,
                    GError **error)
{
    static const GMarkupParser parser = {plist_start, plist_end, plist_text, NULL, NULL};
    PlistParse p = {
        .name = name,
        .path = g_ptr_array_new_with_free_func(g_free),
        .kinds = g_string_new(NULL),
        .blobs = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref),
    };
    GMarkupParseContext *ctx = g_markup_parse_context_new(&parser, 0, &p, NULL);
    GError *local = NULL;
    bool ok = len <= G_MAXSSIZE && g_markup_parse_context_parse(ctx, xml, (gssize)len, &local) &&
              g_markup_parse_context_end_parse(ctx, &local);
    g_markup_parse_context_free(ctx);
    if (p.key != NULL)
        g_string_free(p.key, TRUE);
    if (p.data != NULL)
        g_string_free(p.data, TRUE);
    g_free(p.pending_key);
    g_ptr_array_unref(p.path);
    g_string_free(p.kinds, TRUE);
    if (!ok) {
        if (local != NULL && local->domain == VD_ERROR)
            g_propagate_error(error, local);
        else {
            vd_set_error(error, EIO, "%s: malformed property list: %s", name,
                         local ? local->message : "too large");
            g_clear_error(&local);
        }
        g_ptr_array_unref(p.blobs);
        return false;
    }
    *blobs = p.blobs;
    return true;
}

bool dmg_rsrc_blkx(const char *name, const uint8_t *fork, size_t len, GPtrArray **blobs,
                   GError **error)
{
    if (len < 16) {
        vd_set_error(error, EIO, "%s: resource fork of %zu bytes is too small", name, len);
        return false;
    }
    uint32_t data_off = vd_be32(fork), data_len = vd_be32(fork + 8);
    if (!(data_off >= 16 || data_len == 0) || (uint64_t)data_off + data_len > len) {
        vd_set_error(error, EIO,
                     "%s: resource data (%" PRIu32 " bytes at %" PRIu32
                     ") lies outside the resource fork",
                     name, data_len, data_off);
        return false;
    }
    GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    uint64_t pos = data_off, end = (uint64_t)data_off + data_len;
    while (pos < end) {
        if (end - pos < 4) {
            vd_set_error(error, EIO, "%s: truncated resource at %" PRIu64, name, pos);
            g_ptr_array_unref(out);
            return false;
        }
        uint32_t n = vd_be32(fork + pos);
        pos += 4;
        if (n > end - pos) {
            vd_set_error(error, EIO,
                         "%s: resource of %" PRIu32 " bytes at %" PRIu64
                         " runs past the resource data",
                         name, n, pos - 4);
            g_ptr_array_unref(out);
            return false;
        }
        if (n >= 4 && memcmp(fork + pos, "mish", 4) == 0) {
            if (out->len >= DMG_MAX_BLKX) {
                vd_set_error(error, EIO, "%s: more than %u blkx resources", name, DMG_MAX_BLKX);
                g_ptr_array_unref(out);
                return false;
            }
            g_ptr_array_add(out, g_bytes_new(fork + pos, n));
        }
        pos += n;
    }
    *blobs = out;
    return true;
}

const char *dmg_chunk_type_name(uint32_t type)
{
    switch (type) {
    case DMG_CHUNK_ZERO:
        return "zero";
    case DMG_CHUNK_RAW:
        return "raw";
    case DMG_CHUNK_IGNORE:
        return "ignore";
    case DMG_CHUNK_ADC:
        return "ADC";
    case DMG_CHUNK_ZLIB:
        return "zlib";
    case DMG_CHUNK_BZIP2:
        return "bzip2";
    case DMG_CHUNK_LZFSE:
        return "LZFSE";
    case DMG_CHUNK_LZMA:
        return "LZMA";
    default:
        return NULL;
    }
}

bool dmg_parse_mish(const char *name, const uint8_t *buf, size_t len, uint64_t data_fork_offset,
                    GArray *chunks, GError **error)
{
    if (len < MISH_HEADER || memcmp(buf, "mish", 4) != 0)
        return true; /* not a block table: nothing to add */
    uint64_t first = vd_be64(buf + 8);
    uint64_t data_offset = vd_be64(buf + 24);
    uint32_t n = vd_be32(buf + 200);
    if ((uint64_t)n * MISH_CHUNK > len - MISH_HEADER) {
        vd_set_error(error, EIO, "%s: mish block claims %" PRIu32 " chunks in %zu bytes", name, n,
                     len);
        return false;
    }
    uint64_t base;
    if (__builtin_add_overflow(data_fork_offset, data_offset, &base)) {
        vd_set_error(error, EIO, "%s: mish data offset 0x%" PRIx64 " overflows", name, data_offset);
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *c = buf + MISH_HEADER + (size_t)i * MISH_CHUNK;
        DmgChunk ch = {
            .type = vd_be32(c),
            .sectors = vd_be64(c + 16),
            .length = vd_be64(c + 32),
        };
        if (ch.type == DMG_CHUNK_COMMENT || ch.type == DMG_CHUNK_TERMINATOR || ch.sectors == 0)
            continue;
        if (chunks->len >= DMG_MAX_CHUNKS) {
            vd_set_error(error, EIO, "%s: more than %u chunks", name, DMG_MAX_CHUNKS);
            return false;
        }
        uint64_t end;
        if (__builtin_add_overflow(first, vd_be64(c + 8), &ch.sector) ||
            __builtin_add_overflow(ch.sector, ch.sectors, &end) || end > UINT64_MAX / DMG_SECTOR ||
            __builtin_add_overflow(base, vd_be64(c + 24), &ch.offset)) {
            vd_set_error(error, EIO, "%s: chunk %" PRIu32 " of a mish block overflows", name, i);
            return false;
        }
        g_array_append_val(chunks, ch);
    }
    return true;
}
