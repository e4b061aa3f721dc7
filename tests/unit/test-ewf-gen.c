/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <string.h>
#include <zlib.h>

#include "src/vd-error.h"
#include "tests/unit/test-ewf-gen.h"

static void le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
    le32(p, (uint32_t)v);
    le32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t adl(const uint8_t *p, size_t n)
{
    return (uint32_t)adler32(adler32(0, NULL, 0), p, (uInt)n);
}

void ewf_gen_put_le32(GByteArray *seg, uint64_t off, uint32_t v)
{
    le32(seg->data + off, v);
}

void ewf_gen_put_le64(GByteArray *seg, uint64_t off, uint64_t v)
{
    le64(seg->data + off, v);
}

void ewf_gen_fix_sum(GByteArray *seg, uint64_t off, size_t len)
{
    le32(seg->data + off + len, adl(seg->data + off, len));
}

void ewf_gen_fix_descriptor(GByteArray *seg, uint64_t off)
{
    ewf_gen_fix_sum(seg, off, 72);
}

/* Append a section (descriptor and data); its descriptor's offset. */
static uint64_t section(GByteArray *b, const char *type, const uint8_t *data, size_t len,
                        bool smart)
{
    uint64_t off = b->len;
    bool terminal = strcmp(type, "done") == 0 || strcmp(type, "next") == 0;
    uint8_t d[EWF_SECTION] = {0};
    memcpy(d, type, strlen(type));
    le64(d + 16, terminal ? (smart ? off + EWF_SECTION : off) : off + EWF_SECTION + len);
    le64(d + 24, terminal ? (smart ? EWF_SECTION : 0) : EWF_SECTION + len);
    le32(d + 72, adl(d, 72));
    g_byte_array_append(b, d, sizeof d);
    if (len > 0)
        g_byte_array_append(b, data, (guint)len);
    return off;
}

static void text_section(GByteArray *b, const char *type, const uint8_t *text, size_t len,
                         bool smart)
{
    uLongf n = compressBound(len);
    g_autofree uint8_t *z = g_malloc(n);
    g_assert_cmpint(compress2(z, &n, text, len, 6), ==, Z_OK);
    section(b, type, z, n, smart);
}

static void volume(GByteArray *b, const char *type, const EwfGenOpts *o, uint32_t chunks)
{
    uint8_t v[1052] = {0};
    size_t n = o->smart ? 94 : 1052;
    if (o->smart) {
        le32(v, 1);
        le32(v + 16, (uint32_t)o->sectors);
        memcpy(v + 85, "SMART", 5);
    } else {
        v[0] = 1; /* fixed */
        le64(v + 16, o->sectors);
        v[36] = 1;
        memcpy(v + 64, "0123456789abcdef", 16);
    }
    le32(v + 4, chunks);
    le32(v + 8, o->spc);
    le32(v + 12, 512);
    le32(v + n - 4, adl(v, n - 4));
    section(b, type, v, n, o->smart);
}

/* Chunk i as stored, and whether compressed. */
static GBytes *encode(const EwfGenOpts *o, uint64_t i, bool *compressed)
{
    uint64_t cs = (uint64_t)o->spc * 512, media = o->sectors * 512;
    size_t len = (size_t)MIN(cs, media - i * cs);
    const uint8_t *p = o->media + i * cs;
    int level = o->smart && o->level < 0 ? 0 : o->level;
    if (level >= 0) {
        uLongf n = compressBound(len);
        uint8_t *z = g_malloc(n);
        g_assert_cmpint(compress2(z, &n, p, len, level), ==, Z_OK);
        if (o->smart || n < len) {
            *compressed = true;
            return g_bytes_new_take(z, n);
        }
        g_free(z);
    }
    *compressed = false;
    uint8_t *u = g_malloc(len + 4);
    memcpy(u, p, len);
    le32(u + len, adl(p, len));
    return g_bytes_new_take(u, len + 4);
}

/* Chunks [first, first + count) as sectors, table and table2 sections
 * (a SMART table holding them). */
static void chunk_block(GByteArray *b, const EwfGenOpts *o, uint64_t first, uint32_t count)
{
    g_autoptr(GPtrArray) enc = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    g_autofree bool *comp = g_new(bool, count);
    size_t total = 0;
    for (uint32_t k = 0; k < count; k++) {
        g_ptr_array_add(enc, encode(o, first + k, &comp[k]));
        total += g_bytes_get_size(enc->pdata[k]);
    }
    g_autofree uint8_t *data = g_malloc(total + 1);
    g_autofree uint64_t *at = g_new(uint64_t, count);
    size_t pos = 0;
    for (uint32_t k = 0; k < count; k++) {
        gsize n;
        const void *d = g_bytes_get_data(enc->pdata[k], &n);
        memcpy(data + pos, d, n);
        at[k] = pos;
        pos += n;
    }
    size_t tlen = 24 + 4 * (size_t)count + (o->smart ? total : 4);
    g_autofree uint8_t *t = g_malloc0(tlen);
    uint64_t base = 0, data_off;
    if (o->smart) {
        data_off = b->len + EWF_SECTION + 24 + 4 * (uint64_t)count;
    } else {
        uint64_t sec = section(b, "sectors", data, total, false);
        data_off = sec + EWF_SECTION;
        if (o->table_base)
            base = sec;
    }
    le32(t, count);
    if (!o->smart)
        le64(t + 8, base);
    le32(t + 20, adl(t, 20));
    for (uint32_t k = 0; k < count; k++)
        le32(t + 24 + 4 * k, (uint32_t)(data_off + at[k] - base) | (comp[k] ? 0x80000000u : 0));
    if (o->smart) {
        memcpy(t + 24 + 4 * (size_t)count, data, total);
        section(b, "table", t, tlen, true);
        return;
    }
    le32(t + 24 + 4 * count, adl(t + 24, 4 * (size_t)count));
    section(b, "table", t, tlen, false);
    section(b, "table2", t, tlen, false);
}

GPtrArray *ewf_gen(const EwfGenOpts *o)
{
    GPtrArray *segs = g_ptr_array_new_with_free_func((GDestroyNotify)g_byte_array_unref);
    uint64_t cs = (uint64_t)o->spc * 512, media = o->sectors * 512;
    uint64_t chunks = media / cs + (media % cs != 0);
    uint64_t per_seg = o->chunks_per_segment ? o->chunks_per_segment : MAX(chunks, 1);
    uint64_t per_table = o->chunks_per_table ? o->chunks_per_table : per_seg;
    uint64_t done = 0;
    for (unsigned n = 1; n == 1 || done < chunks; n++) {
        GByteArray *b = g_byte_array_new();
        uint8_t fh[EWF_FILE_HEADER] = {0};
        memcpy(fh, EWF_MAGIC, 8);
        fh[8] = 1;
        fh[9] = (uint8_t)n;
        fh[10] = (uint8_t)(n >> 8);
        g_byte_array_append(b, fh, sizeof fh);
        if (n == 1) {
            if (o->header2 != NULL) {
                glong items;
                g_autofree gunichar2 *u = g_utf8_to_utf16(o->header2, -1, NULL, &items, NULL);
                g_autofree uint8_t *t = g_malloc(2 + 2 * (size_t)items);
                t[0] = 0xff, t[1] = 0xfe;
                for (glong i = 0; i < items; i++)
                    t[2 + 2 * i] = (uint8_t)u[i], t[3 + 2 * i] = (uint8_t)(u[i] >> 8);
                text_section(b, "header2", t, 2 + 2 * (size_t)items, o->smart);
                text_section(b, "header2", t, 2 + 2 * (size_t)items, o->smart);
            }
            if (o->header != NULL)
                text_section(b, "header", (const uint8_t *)o->header, strlen(o->header), o->smart);
            volume(b, "volume", o, (uint32_t)chunks);
        } else if (!o->smart) {
            volume(b, "data", o, (uint32_t)chunks);
        }
        uint64_t end = MIN(chunks, done + per_seg);
        while (done < end) {
            uint32_t k = (uint32_t)MIN(per_table, end - done);
            chunk_block(b, o, done, k);
            done += k;
        }
        bool last = done >= chunks;
        if (last && n == 1 && !o->smart)
            volume(b, "data", o, (uint32_t)chunks);
        if (last && o->md5 != NULL && o->sha1 != NULL) {
            uint8_t d[80] = {0};
            memcpy(d, o->md5, 16);
            memcpy(d + 16, o->sha1, 20);
            le32(d + 76, adl(d, 76));
            section(b, "digest", d, sizeof d, o->smart);
        }
        if (last && o->md5 != NULL) {
            uint8_t h[36] = {0};
            memcpy(h, o->md5, 16);
            le32(h + 32, adl(h, 32));
            section(b, "hash", h, sizeof h, o->smart);
        }
        section(b, last ? "done" : "next", NULL, 0, o->smart);
        g_ptr_array_add(segs, b);
    }
    return segs;
}

int64_t ewf_gen_find(GByteArray *seg, const char *type, unsigned n)
{
    uint64_t off = EWF_FILE_HEADER;
    while (off + EWF_SECTION <= seg->len) {
        const char *t = (const char *)seg->data + off;
        if (strncmp(t, type, 16) == 0 && n-- == 0)
            return (int64_t)off;
        if (strcmp(t, "done") == 0 || strcmp(t, "next") == 0)
            break;
        uint64_t next = 0;
        for (int i = 7; i >= 0; i--)
            next = next << 8 | seg->data[off + 16 + i];
        if (next <= off)
            break;
        off = next;
    }
    return -1;
}

static bool gen_segment(void *user, unsigned n, uint64_t *size, GError **error)
{
    GPtrArray *segs = user;
    if (n > segs->len) {
        vd_set_error(error, ENOENT, "segment %u is missing", n);
        return false;
    }
    *size = ((GByteArray *)segs->pdata[n - 1])->len;
    return true;
}

static bool gen_read(void *user, unsigned n, void *buf, size_t len, uint64_t off, GError **error)
{
    GPtrArray *segs = user;
    g_assert_cmpuint(n, >=, 1);
    g_assert_cmpuint(n, <=, segs->len);
    GByteArray *b = segs->pdata[n - 1];
    if (off > b->len || len > b->len - off) {
        vd_set_error(error, EIO, "segment %u: read past its end", n);
        return false;
    }
    memcpy(buf, b->data + off, len);
    return true;
}

const EwfIo ewf_gen_io = {
    .segment = gen_segment,
    .read = gen_read,
};
