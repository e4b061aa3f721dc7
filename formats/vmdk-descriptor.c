/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The VMDK text descriptor: "key=value" lines (version, CID, parentCID,
 * createType, parentFileNameHint, ddb.*), extent lines
 * (ACCESS SECTORS TYPE ["FILE" [OFFSET]]) and '#' comments. A pure
 * function over a byte buffer, so that it can be fuzzed on its own.
 */
#include "config.h"

#include <string.h>

#include "formats/vmdk.h"
#include "src/vd-error.h"

#define MAX_FILENAME 4096

static void desc_extent_free(gpointer p)
{
    VmdkDescExtent *x = p;
    g_free(x->access);
    g_free(x->type);
    g_free(x->filename);
    g_free(x);
}

void vmdk_descriptor_free(VmdkDescriptor *d)
{
    if (d == NULL)
        return;
    g_free(d->create_type);
    g_free(d->parent_hint);
    g_clear_pointer(&d->extents, g_ptr_array_unref);
    g_clear_pointer(&d->ddb_keys, g_ptr_array_unref);
    g_clear_pointer(&d->ddb_values, g_ptr_array_unref);
    g_free(d);
}

const char *vmdk_descriptor_ddb(const VmdkDescriptor *d, const char *key)
{
    for (guint i = 0; i < d->ddb_keys->len; i++) {
        if (g_ascii_strcasecmp(g_ptr_array_index(d->ddb_keys, i), key) == 0)
            return g_ptr_array_index(d->ddb_values, i);
    }
    return NULL;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* [*p, end) trimmed of blanks on both sides. */
static void trim(const char **p, const char **end)
{
    while (*p < *end && is_space(**p))
        (*p)++;
    while (*end > *p && is_space((*end)[-1]))
        (*end)--;
}

/* A decimal number spanning exactly [p, end), at most max. */
static bool parse_u64(const char *p, const char *end, uint64_t max, uint64_t *out)
{
    if (p == end)
        return false;
    uint64_t v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return false;
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
            return false;
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* A CID: up to 8 hexadecimal digits. */
static bool parse_cid(const char *p, const char *end, uint32_t *out)
{
    if (p == end || end - p > 8)
        return false;
    uint32_t v = 0;
    for (; p < end; p++) {
        int d = g_ascii_xdigit_value(*p);
        if (d < 0)
            return false;
        v = (v << 4) | (uint32_t)d;
    }
    *out = v;
    return true;
}

/* The next blank-separated token of [*p, end). */
static bool next_token(const char **p, const char *end, const char **tok, const char **tok_end)
{
    while (*p < end && is_space(**p))
        (*p)++;
    if (*p == end)
        return false;
    *tok = *p;
    while (*p < end && !is_space(**p))
        (*p)++;
    *tok_end = *p;
    return true;
}

static bool token_is(const char *p, const char *end, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(end - p) == n && g_ascii_strncasecmp(p, word, n) == 0;
}

static bool parse_extent(VmdkDescriptor *d, const char *p, const char *end, const char *name,
                         unsigned lineno, GError **error)
{
    const char *t, *te;
    VmdkDescExtent *x = g_new0(VmdkDescExtent, 1);
    const char *what = "access mode";
    if (!next_token(&p, end, &t, &te))
        goto bad;
    x->access = g_ascii_strup(t, te - t);
    what = "size";
    if (!next_token(&p, end, &t, &te) || !parse_u64(t, te, INT64_MAX / VMDK_SECTOR, &x->sectors))
        goto bad;
    what = "type";
    if (!next_token(&p, end, &t, &te) || te - t > 32)
        goto bad;
    x->type = g_ascii_strup(t, te - t);
    while (p < end && is_space(*p))
        p++;
    if (p < end) {
        what = "file name";
        if (*p != '"')
            goto bad;
        const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
        if (q == NULL || q == p + 1 || q - p - 1 > MAX_FILENAME)
            goto bad;
        for (const char *c = p + 1; c < q; c++) {
            if ((unsigned char)*c < 0x20)
                goto bad;
        }
        x->filename = g_strndup(p + 1, (gsize)(q - p - 1));
        p = q + 1;
        if (next_token(&p, end, &t, &te)) {
            what = "offset";
            if (!parse_u64(t, te, INT64_MAX / VMDK_SECTOR, &x->offset))
                goto bad;
            if (next_token(&p, end, &t, &te)) {
                what = "trailing text";
                goto bad;
            }
        }
    }
    if (x->filename == NULL && strcmp(x->type, "ZERO") != 0) {
        what = "file name";
        goto bad;
    }
    if (d->extents->len >= VMDK_MAX_EXTENTS) {
        vd_set_error(error, EIO, "%s: descriptor lists more than %u extents", name,
                     VMDK_MAX_EXTENTS);
        desc_extent_free(x);
        return false;
    }
    g_ptr_array_add(d->extents, x);
    return true;

bad:
    vd_set_error(error, EIO, "%s: descriptor line %u: invalid extent %s", name, lineno, what);
    desc_extent_free(x);
    return false;
}

static bool parse_pair(VmdkDescriptor *d, const char *k, const char *ke, const char *v,
                       const char *ve, const char *name, unsigned lineno, GError **error)
{
    trim(&k, &ke);
    trim(&v, &ve);
    if (ve - v >= 2 && *v == '"' && ve[-1] == '"') {
        v++;
        ve--;
    }
    if (token_is(k, ke, "version")) {
        uint64_t ver;
        if (!parse_u64(v, ve, 1000, &ver)) {
            vd_set_error(error, EIO, "%s: descriptor line %u: invalid version", name, lineno);
            return false;
        }
        d->version = (unsigned)ver;
    } else if (token_is(k, ke, "CID")) {
        d->has_cid = parse_cid(v, ve, &d->cid);
    } else if (token_is(k, ke, "parentCID")) {
        d->has_parent_cid = parse_cid(v, ve, &d->parent_cid);
    } else if (token_is(k, ke, "createType")) {
        g_free(d->create_type);
        d->create_type = g_strndup(v, (gsize)(ve - v));
    } else if (token_is(k, ke, "parentFileNameHint")) {
        if (ve == v || ve - v > MAX_FILENAME || memchr(v, '\0', (size_t)(ve - v)) != NULL) {
            vd_set_error(error, EIO, "%s: descriptor line %u: invalid parentFileNameHint", name,
                         lineno);
            return false;
        }
        g_free(d->parent_hint);
        d->parent_hint = g_strndup(v, (gsize)(ve - v));
    } else if (ke - k > 4 && g_ascii_strncasecmp(k, "ddb.", 4) == 0) {
        if (d->ddb_keys->len < 1024) {
            g_ptr_array_add(d->ddb_keys, g_strndup(k, (gsize)(ke - k)));
            g_ptr_array_add(d->ddb_values, g_strndup(v, (gsize)(ve - v)));
        }
    }
    /* Other keys (encoding, isNativeSnapshot, ...) do not change the data. */
    return true;
}

VmdkDescriptor *vmdk_descriptor_parse(const char *text, size_t len, const char *name,
                                      GError **error)
{
    const char *nul = memchr(text, '\0', len);
    if (nul != NULL)
        len = (size_t)(nul - text);
    if (len > VMDK_DESC_MAX) {
        vd_set_error(error, EIO, "%s: descriptor is larger than %u bytes", name, VMDK_DESC_MAX);
        return NULL;
    }
    g_autoptr(VmdkDescriptor) d = g_new0(VmdkDescriptor, 1);
    d->extents = g_ptr_array_new_with_free_func(desc_extent_free);
    d->ddb_keys = g_ptr_array_new_with_free_func(g_free);
    d->ddb_values = g_ptr_array_new_with_free_func(g_free);

    const char *p = text, *end = text + len;
    unsigned lineno = 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        const char *ls = p;
        p = eol ? eol + 1 : end;
        lineno++;
        trim(&ls, &le);
        if (ls == le || *ls == '#')
            continue;
        const char *t = ls, *te = ls;
        while (te < le && !is_space(*te) && *te != '=')
            te++;
        if (token_is(t, te, "RW") || token_is(t, te, "RDONLY") || token_is(t, te, "NOACCESS")) {
            if (!parse_extent(d, ls, le, name, lineno, error))
                return NULL;
            continue;
        }
        const char *eq = memchr(ls, '=', (size_t)(le - ls));
        if (eq == NULL)
            continue; /* unknown line: nothing we need */
        if (!parse_pair(d, ls, eq, eq + 1, le, name, lineno, error))
            return NULL;
    }
    return g_steal_pointer(&d);
}

char *vmdk_descriptor_set_cid(const char *text, size_t len, uint32_t cid, size_t *out_len)
{
    const char *nul = memchr(text, '\0', len);
    if (nul != NULL)
        len = (size_t)(nul - text);
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        const char *ls = p;
        while (ls < le && is_space(*ls))
            ls++;
        const char *k = ls;
        while (k < le && !is_space(*k) && *k != '=')
            k++;
        if (token_is(ls, k, "CID")) {
            const char *eq = k;
            while (eq < le && is_space(*eq))
                eq++;
            if (eq < le && *eq == '=') {
                const char *ve = le;
                while (ve > eq + 1 && is_space(ve[-1]))
                    ve--;
                GString *s = g_string_new_len(text, eq + 1 - text);
                g_string_append_printf(s, "%08x", cid);
                g_string_append_len(s, ve, end - ve);
                *out_len = s->len;
                return g_string_free(s, FALSE);
            }
        }
        p = eol ? eol + 1 : end;
    }
    return NULL;
}
