/* SPDX-License-Identifier: GPL-2.0-or-later */
/* EWF chunks: decoded and checked, and told apart as zeros. */
#include "config.h"

#include <string.h>
#include <libdeflate.h>
#include <zlib.h>

#include "sources/ewf-internal.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-inflate.h"
#include "src/vd-io.h"

enum { ZSTATE_UNKNOWN, ZSTATE_DATA, ZSTATE_ZERO };

static void chunk_error(EwfSet *s, uint64_t i, const EwfChunk *c, const char *what, GError **error)
{
    vd_set_error(error, EIO,
                 "%s: chunk %" G_GUINT64_FORMAT " (segment %u at 0x%" G_GINT64_MODIFIER "x) %s",
                 s->name, i, c->seg, c->off, what);
}

static uint32_t adler(const uint8_t *p, size_t n)
{
    return libdeflate_adler32(1, p, n);
}

/* Inflate the stored form into out (chunk_size bytes): c->len or more. */
static bool inflate_chunk(EwfSet *s, uint64_t i, const EwfChunk *c, const uint8_t *in, uint8_t *out,
                          GError **error)
{
    size_t produced = 0;
    const char *why = NULL;
    if (!vd_inflate(VD_DEFLATE_ZLIB, in, c->stored, out, s->chunk_size, &produced))
        why = produced == s->chunk_size ? "decodes to more than a chunk"
                                        : "is not valid zlib data, or is cut short";
    else if (produced >= c->len)
        return true;
    g_autofree char *what =
        why ? g_strdup(why) : g_strdup_printf("decodes to %zu bytes, not %u", produced, c->len);
    chunk_error(s, i, c, what, error);
    return false;
}

/* An uncompressed chunk's n bytes and the Adler-32 after them. */
static bool checksum_ok(const uint8_t *in, uint32_t n)
{
    return adler(in, n) == vd_le32(in + n);
}

static uint8_t *read_stored(EwfSet *s, const EwfChunk *c, GError **error)
{
    uint8_t *in = g_try_malloc(c->stored);
    if (in == NULL) {
        vd_set_error(error, ENOMEM, "%s: no memory for a chunk", s->name);
        return NULL;
    }
    if (!ewf_read(s, c->seg, in, c->stored, c->off, error))
        g_clear_pointer(&in, g_free);
    return in;
}

/* Chunk i (at c) decoded into out, cap bytes: at least chunk_size, and
 * at least the bytes of an uncompressed one before its checksum. */
static bool chunk_decode(EwfSet *s, uint64_t i, const EwfChunk *c, uint8_t *out, size_t cap,
                         GError **error)
{
    if (!c->compressed) {
        uint32_t n = c->stored - 4;
        uint8_t sum[4];
        g_assert(cap >= n);
        if (!ewf_read(s, c->seg, out, n, c->off, error) ||
            !ewf_read(s, c->seg, sum, 4, c->off + n, error))
            return false;
        if (adler(out, n) != vd_le32(sum) && (n == c->len || !checksum_ok(out, c->len))) {
            chunk_error(s, i, c, "fails its checksum", error);
            return false;
        }
        g_atomic_int_or((guint *)&s->verified[i / 32], 1u << (i % 32));
        return true;
    }
    g_autofree uint8_t *in = read_stored(s, c, error);
    return in != NULL && inflate_chunk(s, i, c, in, out, error);
}

GBytes *ewf_chunk_read(EwfSet *s, uint64_t i, GError **error)
{
    EwfChunk c;
    if (!ewf_chunk_locate(s, i, &c, error))
        return NULL;
    size_t cap = MAX((size_t)s->chunk_size, (size_t)c.stored);
    uint8_t *out = g_try_malloc(cap);
    if (out == NULL) {
        vd_set_error(error, ENOMEM, "%s: no memory for a chunk of %u bytes", s->name,
                     s->chunk_size);
        return NULL;
    }
    if (!chunk_decode(s, i, &c, out, cap, error)) {
        g_free(out);
        return NULL;
    }
    return g_bytes_new_take(out, c.len);
}

bool ewf_chunk_read_whole(EwfSet *s, uint64_t i, uint8_t *buf, GError **error)
{
    EwfChunk c;
    if (!ewf_chunk_locate(s, i, &c, error))
        return false;
    if (c.len != s->chunk_size) {
        vd_set_error(error, EINVAL, "%s: chunk %" G_GUINT64_FORMAT " is not whole", s->name, i);
        return false;
    }
    return chunk_decode(s, i, &c, buf, s->chunk_size, error);
}

bool ewf_chunk_in_place(EwfSet *s, uint64_t i, EwfChunk *c)
{
    return i < s->chunks && (g_atomic_int_get(&s->verified[i / 32]) >> (i % 32) & 1) &&
           ewf_chunk_locate(s, i, c, NULL);
}

/* What zlib writes for a zero chunk: levels 1-3 and 4-9 differ in their
 * bodies, and each level in its header. */
static GPtrArray *zero_forms(EwfSet *s)
{
    if (g_once_init_enter(&s->zero_forms)) {
        GPtrArray *forms = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
        g_autofree uint8_t *zeros = g_try_malloc0(s->chunk_size);
        uLong cap = compressBound(s->chunk_size);
        static const int levels[] = {1, 6};
        for (unsigned k = 0; zeros != NULL && k < G_N_ELEMENTS(levels); k++) {
            uint8_t *buf = g_malloc(cap);
            uLongf n = cap;
            if (compress2(buf, &n, zeros, s->chunk_size, levels[k]) == Z_OK)
                g_ptr_array_add(forms, g_bytes_new_take(buf, n));
            else
                g_free(buf);
        }
        g_once_init_leave(&s->zero_forms, forms);
    }
    return s->zero_forms;
}

static bool is_zero_form(EwfSet *s, const uint8_t *in, uint32_t len)
{
    /* A zlib header: deflate, its check bits, no preset dictionary. */
    if (len < 2 || (in[0] & 0x0f) != 8 || ((in[0] << 8) | in[1]) % 31 != 0 || (in[1] & 0x20))
        return false;
    GPtrArray *forms = zero_forms(s);
    for (guint k = 0; k < forms->len; k++) {
        gsize n;
        const uint8_t *f = g_bytes_get_data(forms->pdata[k], &n);
        if (n == len && memcmp(f + 2, in + 2, n - 2) == 0)
            return true;
    }
    return false;
}

static int zstate_get(EwfSet *s, uint64_t i)
{
    return (g_atomic_int_get(&s->zstate[i / 16]) >> (i % 16 * 2)) & 3;
}

static void zstate_set(EwfSet *s, uint64_t i, int v)
{
    g_atomic_int_or((guint *)&s->zstate[i / 16], (guint)v << (i % 16 * 2));
}

bool ewf_chunk_is_zero(EwfSet *s, uint64_t i, bool *zero, GError **error)
{
    int st = zstate_get(s, i);
    if (st != ZSTATE_UNKNOWN) {
        *zero = st == ZSTATE_ZERO;
        return true;
    }
    EwfChunk c;
    if (!ewf_chunk_locate(s, i, &c, error))
        return false;
    bool z = false;
    /* Deflate shrinks zeros a thousandfold: a larger stored form is data
     * without reading it. */
    if (c.compressed && c.stored <= s->chunk_size / 64 + 64) {
        g_autofree uint8_t *in = read_stored(s, &c, error);
        if (in == NULL)
            return false;
        if (c.len == s->chunk_size && is_zero_form(s, in, c.stored)) {
            z = true;
        } else {
            g_autofree uint8_t *out = g_try_malloc(s->chunk_size);
            if (out == NULL || !inflate_chunk(s, i, &c, in, out, error)) {
                if (out == NULL)
                    vd_set_error(error, ENOMEM, "%s: no memory for a chunk", s->name);
                return false;
            }
            z = vd_buffer_is_zero(out, c.len);
        }
    }
    zstate_set(s, i, z ? ZSTATE_ZERO : ZSTATE_DATA);
    *zero = z;
    return true;
}
