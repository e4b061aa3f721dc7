/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The DMG writer for tests (see test-dmg-gen.h). */
#include "config.h"

#include <bzlib.h>
#include <lzma.h>
#include <string.h>
#include <zlib.h>

#include "formats/dmg.h"
#include "src/vd-endian.h"
#include "tests/unit/test-dmg-gen.h"
#include "tests/unit/test-fixtures.h"

uint8_t dg_pattern(uint64_t off)
{
    /* Compressible, but different in every sector. */
    static const char text[] = "vdiskfs dmg test data: the quick brown fox. ";
    uint64_t sector = off / 512;
    if (off % 512 < 8)
        return (uint8_t)(sector >> (8 * (off % 8)));
    return (uint8_t)(text[off % (sizeof text - 1)] + (sector % 3));
}

GByteArray *dg_adc_encode(const uint8_t *d, size_t len)
{
    GByteArray *out = g_byte_array_new();
    size_t i = 0, lit_start = 0;
    static const size_t dists[] = {1, 2, 44, 512, 1000, 4096};
    while (i <= len) {
        size_t best_run = 0, best_dist = 0;
        for (size_t k = 0; i < len && k < G_N_ELEMENTS(dists); k++) {
            size_t dist = dists[k];
            if (dist > i)
                continue;
            size_t run = 0;
            while (i + run < len && run < 67 && d[i + run] == d[i + run - dist])
                run++;
            if (run > best_run) {
                best_run = run;
                best_dist = dist;
            }
        }
        bool flush = i == len || best_run >= 4 || i - lit_start == 128;
        if (flush && i > lit_start) {
            uint8_t b = (uint8_t)(0x80 | (i - lit_start - 1));
            g_byte_array_append(out, &b, 1);
            g_byte_array_append(out, d + lit_start, (guint)(i - lit_start));
            lit_start = i;
        }
        if (i == len)
            break;
        if (best_run >= 4) {
            size_t dist = best_dist - 1;
            if (best_dist <= 1024 && best_run <= 18) {
                uint8_t c[2] = {(uint8_t)(((best_run - 3) << 2) | (dist >> 8)), (uint8_t)dist};
                g_byte_array_append(out, c, 2);
            } else {
                uint8_t c[3] = {(uint8_t)(0x40 | (best_run - 4)), (uint8_t)(dist >> 8),
                                (uint8_t)dist};
                g_byte_array_append(out, c, 3);
            }
            i += best_run;
            lit_start = i;
        } else {
            i++;
        }
    }
    return out;
}

/* Compress one chunk's bytes in the chunk's format. */
static GByteArray *encode(uint32_t type, const uint8_t *d, size_t len)
{
    GByteArray *out = g_byte_array_new();
    switch (type) {
    case DMG_CHUNK_RAW:
        g_byte_array_append(out, d, (guint)len);
        break;
    case DMG_CHUNK_ZLIB: {
        uLongf n = compressBound(len);
        g_byte_array_set_size(out, (guint)n);
        g_assert_cmpint(compress2(out->data, &n, d, len, 6), ==, Z_OK);
        g_byte_array_set_size(out, (guint)n);
        break;
    }
    case DMG_CHUNK_BZIP2: {
        unsigned n = (unsigned)(len + len / 100 + 1024);
        g_byte_array_set_size(out, n);
        g_assert_cmpint(
            BZ2_bzBuffToBuffCompress((char *)out->data, &n, (char *)d, (unsigned)len, 9, 0, 0), ==,
            BZ_OK);
        g_byte_array_set_size(out, n);
        break;
    }
    case DMG_CHUNK_LZMA: {
        size_t pos = 0, cap = lzma_stream_buffer_bound(len);
        g_byte_array_set_size(out, (guint)cap);
        g_assert_cmpint(
            lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, NULL, d, len, out->data, &pos, cap), ==,
            LZMA_OK);
        g_byte_array_set_size(out, (guint)pos);
        break;
    }
    case DMG_CHUNK_ADC:
        g_byte_array_unref(out);
        return dg_adc_encode(d, len);
    case DMG_CHUNK_LZFSE: {
        /* No encoder in Debian: a stand-in that must never decode. */
        static const uint8_t junk[] = "bvx2-not-really-lzfse";
        g_byte_array_append(out, junk, sizeof junk);
        break;
    }
    default: /* zero, ignore: nothing stored */
        break;
    }
    return out;
}

static void put_mish(GByteArray *m, const DgSpec *spec, size_t from, size_t to,
                     const uint64_t *sector, const uint64_t *off, const uint64_t *len,
                     uint64_t data_offset)
{
    size_t n = 0;
    for (size_t i = from; i < to; i++)
        n += spec->chunks[i].type != DG_GAP;
    n += 2; /* a comment and the terminator */
    g_byte_array_set_size(m, (guint)(204 + 40 * n));
    memset(m->data, 0, m->len);
    uint64_t first = sector[from];
    uint64_t last = to > from ? sector[to - 1] + spec->chunks[to - 1].sectors : first;
    memcpy(m->data, "mish", 4);
    vd_put_be32(m->data + 4, 1);
    vd_put_be64(m->data + 8, first);
    vd_put_be64(m->data + 16, last - first);
    vd_put_be64(m->data + 24, data_offset);
    vd_put_be32(m->data + 36, (uint32_t)from);
    vd_put_be32(m->data + 200, (uint32_t)n);
    uint8_t *c = m->data + 204;
    vd_put_be32(c, DMG_CHUNK_COMMENT); /* comments carry no data */
    c += 40;
    for (size_t i = from; i < to; i++) {
        if (spec->chunks[i].type == DG_GAP)
            continue;
        vd_put_be32(c, spec->chunks[i].type);
        vd_put_be64(c + 8, sector[i] - first);
        vd_put_be64(c + 16, spec->chunks[i].sectors);
        vd_put_be64(c + 24, off[i] - data_offset);
        vd_put_be64(c + 32, len[i]);
        c += 40;
    }
    vd_put_be32(c, DMG_CHUNK_TERMINATOR);
    vd_put_be64(c + 8, last - first);
}

DgImage *dg_build(const DgSpec *spec)
{
    g_assert_cmpuint(spec->n, <=, 64);
    DgImage *img = g_new0(DgImage, 1);
    uint64_t sectors = spec->extra_sectors;
    for (size_t i = 0; i < spec->n; i++)
        sectors += spec->chunks[i].sectors;
    img->size = sectors * 512;
    img->expect = g_malloc0(img->size);
    img->file = g_byte_array_new();
    GByteArray *f = img->file;
    g_byte_array_set_size(f, spec->data_fork_prefix);
    if (f->len > 0)
        memset(f->data, 0x5a, f->len);

    uint64_t sector[64], off[64] = {0}, len[64] = {0}, s = 0;
    g_autoptr(GByteArray) last = NULL; /* zero_data: the last encoding, and of what */
    uint32_t last_type = 0, last_sectors = 0;
    for (size_t i = 0; i < spec->n; i++) {
        const DgChunk *c = &spec->chunks[i];
        sector[i] = s;
        uint64_t bytes = (uint64_t)c->sectors * 512;
        bool data = c->type != DG_GAP && c->type != DMG_CHUNK_ZERO && c->type != DMG_CHUNK_IGNORE;
        if (data && spec->zero_data) {
            /* expect stays zeros (untouched pages of g_malloc0: no memory) */
            if (last == NULL || last_type != c->type || last_sectors != c->sectors) {
                g_clear_pointer(&last, g_byte_array_unref);
                last = encode(c->type, img->expect + s * 512, bytes);
                last_type = c->type;
                last_sectors = c->sectors;
            }
            off[i] = f->len;
            len[i] = last->len;
            g_byte_array_append(f, last->data, last->len);
        } else if (data) {
            for (uint64_t k = 0; k < bytes; k++)
                img->expect[s * 512 + k] = dg_pattern(s * 512 + k);
            g_autoptr(GByteArray) enc = encode(c->type, img->expect + s * 512, bytes);
            off[i] = f->len;
            len[i] = enc->len;
            g_byte_array_append(f, enc->data, enc->len);
        }
        img->chunk_offset[i] = off[i];
        s += c->sectors;
    }
    uint64_t data_fork_len = f->len - spec->data_fork_prefix;
    /* Chunk offsets in a table are relative to data fork + mish data offset;
     * the second table uses a nonzero data offset. */
    size_t split = spec->split_at ? spec->split_at : spec->n;
    uint64_t second_base = split < spec->n ? off[split] : 0;
    for (size_t i = 0; i < spec->n; i++) {
        if (spec->chunks[i].type == DMG_CHUNK_ZERO || spec->chunks[i].type == DMG_CHUNK_IGNORE)
            off[i] = i >= split ? second_base : spec->data_fork_prefix;
    }
    g_autoptr(GByteArray) m1 = g_byte_array_new();
    g_autoptr(GByteArray) m2 = g_byte_array_new();
    for (size_t i = 0; i < spec->n; i++)
        off[i] -= spec->data_fork_prefix;
    put_mish(m1, spec, 0, split, sector, off, len, 0);
    if (split < spec->n)
        put_mish(m2, spec, split, spec->n, sector, off, len, second_base - spec->data_fork_prefix);
    GByteArray *tables[2] = {m1, m2};
    unsigned n_tables = split < spec->n ? 2 : 1;

    uint64_t rsrc_off = 0, rsrc_len = 0, xml_off = 0, xml_len = 0;
    if (spec->rsrc_fork) {
        rsrc_off = f->len;
        GByteArray *r = g_byte_array_new();
        g_byte_array_set_size(r, 256);
        memset(r->data, 0, 256);
        for (unsigned t = 0; t < n_tables; t++) {
            uint8_t l[4];
            vd_put_be32(l, tables[t]->len);
            g_byte_array_append(r, l, 4);
            img->mish_offset[t] = rsrc_off + r->len;
            g_byte_array_append(r, tables[t]->data, tables[t]->len);
        }
        uint32_t data_len = r->len - 256;
        vd_put_be32(r->data, 256);
        vd_put_be32(r->data + 4, r->len);
        vd_put_be32(r->data + 8, data_len);
        vd_put_be32(r->data + 12, 30);
        guint map = r->len;
        g_byte_array_set_size(r, map + 30);
        memset(r->data + map, 0, 30);
        rsrc_len = r->len;
        g_byte_array_append(f, r->data, r->len);
        g_byte_array_unref(r);
    } else {
        GString *x = g_string_new("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                                  "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" "
                                  "\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n"
                                  "<plist version=\"1.0\">\n<dict>\n"
                                  "\t<key>resource-fork</key>\n\t<dict>\n"
                                  "\t\t<key>blkx</key>\n\t\t<array>\n");
        for (unsigned t = 0; t < n_tables; t++) {
            g_autofree char *b64 = g_base64_encode(tables[t]->data, tables[t]->len);
            g_string_append_printf(x,
                                   "\t\t\t<dict>\n\t\t\t\t<key>Attributes</key>\n"
                                   "\t\t\t\t<string>0x0050</string>\n"
                                   "\t\t\t\t<key>CFName</key>\n\t\t\t\t<string>part %u &amp; "
                                   "more</string>\n\t\t\t\t<key>Data</key>\n\t\t\t\t<data>\n",
                                   t);
            for (size_t k = 0; k < strlen(b64); k += 52)
                g_string_append_printf(x, "\t\t\t\t%.52s\n", b64 + k);
            g_string_append_printf(x,
                                   "\t\t\t\t</data>\n\t\t\t\t<key>ID</key>\n"
                                   "\t\t\t\t<string>%d</string>\n\t\t\t</dict>\n",
                                   (int)t - 1);
        }
        /* Another resource with <data> that is not a block table. */
        g_string_append(x, "\t\t</array>\n\t\t<key>plst</key>\n\t\t<array>\n\t\t\t<dict>\n"
                           "\t\t\t\t<key>Data</key>\n\t\t\t\t<data>AAAA</data>\n"
                           "\t\t\t</dict>\n\t\t</array>\n\t</dict>\n"
                           "\t<key>Data</key>\n\t<data>bWlzaA==</data>\n</dict>\n</plist>\n");
        xml_off = f->len;
        xml_len = x->len;
        g_byte_array_append(f, (const guint8 *)x->str, (guint)x->len);
        g_string_free(x, TRUE);
    }
    uint8_t koly[512] = {0};
    memcpy(koly, "koly", 4);
    vd_put_be32(koly + 4, 4);
    vd_put_be32(koly + 8, 512);
    vd_put_be32(koly + 12, 1);
    vd_put_be64(koly + 24, spec->data_fork_prefix);
    vd_put_be64(koly + 32, data_fork_len);
    vd_put_be64(koly + 40, rsrc_off);
    vd_put_be64(koly + 48, rsrc_len);
    vd_put_be32(koly + 56, 1);
    vd_put_be32(koly + 60, 1);
    vd_put_be64(koly + 216, xml_off);
    vd_put_be64(koly + 224, xml_len);
    vd_put_be32(koly + 488, 1);
    vd_put_be64(koly + 492, sectors);
    img->koly_offset = f->len;
    img->xml_offset = xml_off;
    img->xml_length = xml_len;
    g_byte_array_append(f, koly, sizeof koly);
    return img;
}

void dg_free(DgImage *img)
{
    if (img == NULL)
        return;
    g_byte_array_unref(img->file);
    g_free(img->expect);
    g_free(img);
}

void dg_write(const char *dir, const char *name, const void *data, size_t len)
{
    g_autofree char *p = g_build_filename(dir, name, NULL);
    tf_write_file(p, data, len);
}
