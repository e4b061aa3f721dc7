/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test image generators for VHD and VHDX (see test-vhd-gen.h). */
#include "config.h"

#include <glib/gstdio.h>
#include <string.h>

#include "tests/unit/test-vhd-gen.h"
#include "tests/unit/test-fixtures.h"

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    put_be16(p, (uint16_t)(v >> 16));
    put_be16(p + 2, (uint16_t)v);
}

static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    put_le16(p, (uint16_t)v);
    put_le16(p + 2, (uint16_t)(v >> 16));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

uint32_t gen_crc32c(const uint8_t *p, size_t len)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < len; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
    }
    return ~c;
}

void gen_guid(uint8_t g[16], const char *text)
{
    /* "aabbccdd-eeff-gghh-iijj-kkllmmnnoopp": first three fields LE. */
    uint8_t t[16];
    int n = 0;
    for (const char *s = text; *s && n < 16; s++) {
        if (*s == '-' || *s == '{' || *s == '}')
            continue;
        t[n++] = (uint8_t)(g_ascii_xdigit_value(s[0]) << 4 | g_ascii_xdigit_value(s[1]));
        s++;
    }
    uint8_t o[16] = {t[3], t[2], t[1], t[0], t[5], t[4], t[7], t[6]};
    memcpy(o + 8, t + 8, 8);
    memcpy(g, o, 16);
}

void gen_fixture_setup(Fixture *f, gconstpointer data)
{
    f->dir = tf_tmpdir("vdtest-vhd-XXXXXX");
    g_assert_nonnull(f->dir);
    g_autoptr(GError) err = NULL;
    f->ctx = vd_context_new(f->dir, &err);
    g_assert_no_error(err);
}

void gen_fixture_teardown(Fixture *f, gconstpointer data)
{
    tf_rm_rf(f->dir);
    g_free(f->dir);
    vd_context_unref(f->ctx);
}

VdImage *gen_open(Fixture *f, const char *path, bool rw, GError **err)
{
    VdOpenOptions o = {.read_only = !rw};
    return vd_image_open(f->ctx, path, &o, err);
}

void gen_expect_refused(Fixture *f, const GByteArray *b, const char *name, const char *format,
                        const char *what)
{
    g_autofree char *p = g_build_filename(f->dir, name, NULL);
    g_assert_true(gen_write_file(p, b));
    g_autoptr(GError) err = NULL;
    VdOpenOptions o = {.read_only = true, .format = format};
    VdImage *img = vd_image_open(f->ctx, p, &o, &err);
    g_test_message("%s: %s", what, err ? err->message : "(opened)");
    g_assert_null(img);
    g_assert_nonnull(err);
}

bool gen_write_file(const char *path, const GByteArray *b)
{
    return g_file_set_contents(path, (const char *)b->data, (gssize)b->len, NULL);
}

static void ensure(GByteArray *b, size_t len)
{
    if (b->len < len) {
        size_t old = b->len;
        g_byte_array_set_size(b, (guint)len);
        memset(b->data + old, 0, len - old);
    }
}

/* UTF-16 of an ASCII/UTF-8 string; returns bytes written. */
static size_t put_utf16(uint8_t *p, const char *s, bool be)
{
    glong n = 0;
    g_autofree gunichar2 *u = g_utf8_to_utf16(s, -1, NULL, &n, NULL);
    for (glong i = 0; i < n; i++) {
        if (be)
            put_be16(p + 2 * i, u[i]);
        else
            put_le16(p + 2 * i, u[i]);
    }
    return (size_t)n * 2;
}

/* ---------------- VHD ---------------- */

static void vhd_footer(uint8_t *f, const VhdGen *g, uint64_t data_offset)
{
    memset(f, 0, 512);
    memcpy(f, "conectix", 8);
    put_be32(f + 8, 2);
    put_be32(f + 12, 0x00010000);
    put_be64(f + 16, data_offset);
    memcpy(f + 28, "win ", 4);
    put_be32(f + 32, 0x000a0000);
    memcpy(f + 36, "Wi2k", 4);
    put_be64(f + 40, g->size);
    put_be64(f + 48, g->size);
    put_be16(f + 56, 1000);
    f[58] = 16;
    f[59] = 63;
    put_be32(f + 60, g->type);
    memcpy(f + 68, g->uuid, 16);
    uint32_t sum = 0;
    for (int i = 0; i < 512; i++)
        sum += f[i];
    put_be32(f + 64, ~sum);
}

GByteArray *vhdgen_build(const VhdGen *g)
{
    GByteArray *b = g_byte_array_new();
    if (g->type == 2) {
        ensure(b, g->size + 512);
        for (uint32_t i = 0; (uint64_t)i * g->block_size < g->size; i++) {
            g_autofree uint8_t *bm = g_malloc0(g->block_size / 512 / 8 + 1);
            if (g->block)
                g->block(g->ctx, i, bm, b->data + (uint64_t)i * g->block_size);
        }
        vhd_footer(b->data + g->size, g, UINT64_MAX);
        return b;
    }
    uint32_t nblocks = (uint32_t)((g->size + g->block_size - 1) / g->block_size);
    uint32_t bitmap = ((g->block_size / 512 / 8) + 511) / 512 * 512;
    uint64_t bat_bytes = ((uint64_t)nblocks * 4 + 511) / 512 * 512;
    uint64_t cur = VHDGEN_BAT_OFFSET + bat_bytes;
    ensure(b, cur);
    vhd_footer(b->data, g, VHDGEN_HEADER_OFFSET);
    uint8_t *h = b->data + VHDGEN_HEADER_OFFSET;
    memcpy(h, "cxsparse", 8);
    put_be64(h + 8, UINT64_MAX);
    put_be64(h + 16, VHDGEN_BAT_OFFSET);
    put_be32(h + 24, 0x00010000);
    put_be32(h + 28, nblocks);
    put_be32(h + 32, g->block_size);
    if (g->type == 4) {
        memcpy(h + 40, g->parent_uuid, 16);
        if (g->parent_name)
            put_utf16(h + 64, g->parent_name, true);
        struct {
            uint32_t code;
            const char *text;
            bool utf16;
        } locs[] = {
            {0x57327275, g->w2ru, true}, {0x57326b75, g->w2ku, true}, {0x4d616358, g->macx, false}};
        int slot = 0;
        for (size_t i = 0; i < G_N_ELEMENTS(locs); i++) {
            if (locs[i].text == NULL)
                continue;
            uint8_t tmp[1024] = {0};
            size_t len;
            if (locs[i].utf16) {
                len = put_utf16(tmp, locs[i].text, false);
            } else {
                len = strlen(locs[i].text);
                memcpy(tmp, locs[i].text, len);
            }
            uint8_t *e = b->data + VHDGEN_HEADER_OFFSET + 576 + 24 * slot++;
            put_be32(e, locs[i].code);
            put_be32(e + 4, 512); /* space: one sector (in bytes, as Windows writes it) */
            put_be32(e + 8, (uint32_t)len);
            put_be64(e + 16, cur);
            ensure(b, cur + 512);
            memcpy(b->data + cur, tmp, MIN(len, 512));
            cur += 512;
        }
    }
    h = b->data + VHDGEN_HEADER_OFFSET;
    uint32_t sum = 0;
    for (int i = 0; i < 1024; i++)
        sum += h[i];
    put_be32(h + 36, ~sum);
    for (uint32_t i = 0; i < nblocks; i++) {
        uint8_t *bat = b->data + VHDGEN_BAT_OFFSET;
        put_be32(bat + 4 * i, 0xffffffffu);
        g_autofree uint8_t *bm = g_malloc0(bitmap);
        g_autofree uint8_t *data = g_malloc0(g->block_size);
        if (g->block == NULL || !g->block(g->ctx, i, bm, data))
            continue;
        ensure(b, cur + bitmap + g->block_size);
        memcpy(b->data + cur, bm, bitmap);
        memcpy(b->data + cur + bitmap, data, g->block_size);
        put_be32(b->data + VHDGEN_BAT_OFFSET + 4 * i, (uint32_t)(cur / 512));
        cur += bitmap + g->block_size;
    }
    /* Unused BAT tail entries (padding to the sector) are 0xffffffff too. */
    for (uint64_t i = nblocks; i < bat_bytes / 4; i++)
        put_be32(b->data + VHDGEN_BAT_OFFSET + 4 * i, 0xffffffffu);
    ensure(b, cur + 512);
    memcpy(b->data + cur, b->data, 512);
    return b;
}

/* ---------------- VHDX ---------------- */

#define GUID_BAT      "2dc27766-f623-4200-9d64-115e9bfd4a08"
#define GUID_META     "8b7ca206-4790-4b9a-b8fe-575f050f886e"
#define GUID_PARAMS   "caa16737-fa36-4d43-b3b6-33f0aa44e76b"
#define GUID_SIZE     "2fa54224-cd1b-4876-b211-5dbed83bf4b8"
#define GUID_PAGE83   "beca12ab-b2e6-4523-93ef-c309e000c746"
#define GUID_LSEC     "8141bf1d-a96f-4709-ba47-f233a8faab5f"
#define GUID_PSEC     "cda348c7-445d-4471-9cc9-e9885251c556"
#define GUID_LOCATOR  "a8d35f2d-b30b-454d-abf7-d3d84834ab0c"
#define GUID_LOC_VHDX "b04aefb7-d19e-4a81-b789-25b8e9445913"
#define GEN_LOG_GUID  "0badc0de-1234-4321-8765-0123456789ab"
#define GEN_FILE_GUID "11111111-2222-4333-8444-555555555555"

void vhdxgen_fix_header(GByteArray *img, unsigned slot)
{
    uint8_t *h = img->data + (slot == 0 ? 0x10000 : 0x20000);
    put_le32(h + 4, 0);
    put_le32(h + 4, gen_crc32c(h, 4096));
}

void vhdxgen_fix_region(GByteArray *img, unsigned which)
{
    uint8_t *r = img->data + (which == 0 ? 0x30000 : 0x40000);
    put_le32(r + 4, 0);
    put_le32(r + 4, gen_crc32c(r, 65536));
}

static size_t locator_item(uint8_t *p, const VhdxGen *g)
{
    const char *keys[] = {"parent_linkage", "parent_linkage2", "relative_path", "volume_path",
                          "absolute_win32_path"};
    const char *vals[] = {g->linkage, g->linkage2, g->relative_path, g->volume_path,
                          g->absolute_path};
    uint8_t guid[16];
    gen_guid(guid, GUID_LOC_VHDX);
    memcpy(p, guid, 16);
    uint16_t count = 0;
    for (int i = 0; i < 5; i++)
        count += vals[i] != NULL;
    put_le16(p + 18, count);
    size_t cur = 20 + 12u * count;
    int e = 0;
    for (int i = 0; i < 5; i++) {
        if (vals[i] == NULL)
            continue;
        uint8_t *ent = p + 20 + 12 * e++;
        size_t kl = put_utf16(p + cur, keys[i], false);
        put_le32(ent, (uint32_t)cur);
        put_le16(ent + 8, (uint16_t)kl);
        cur += kl;
        size_t vl = put_utf16(p + cur, vals[i], false);
        put_le32(ent + 4, (uint32_t)cur);
        put_le16(ent + 10, (uint16_t)vl);
        cur += vl;
    }
    return cur;
}

GByteArray *vhdxgen_build(const VhdxGen *g)
{
    GByteArray *b = g_byte_array_new();
    ensure(b, VHDXGEN_DATA_OFFSET);
    uint8_t *p = b->data;
    memcpy(p, "vhdxfile", 8);
    put_utf16(p + 8, "vdiskfs test generator", false);
    for (unsigned slot = 0; slot < 2; slot++) {
        uint8_t *h = p + (slot == 0 ? 0x10000 : 0x20000);
        memcpy(h, "head", 4);
        put_le64(h + 8, slot + 1);
        gen_guid(h + 16, GEN_FILE_GUID);
        memcpy(h + 32, g->data_write_guid, 16);
        put_le16(h + 66, 1);
        put_le32(h + 68, VHDXGEN_LOG_SIZE);
        put_le64(h + 72, VHDXGEN_LOG_OFFSET);
        vhdxgen_fix_header(b, slot);
    }
    for (unsigned which = 0; which < 2; which++) {
        uint8_t *r = p + (which == 0 ? 0x30000 : 0x40000);
        memcpy(r, "regi", 4);
        put_le32(r + 8, 2);
        gen_guid(r + 16, GUID_BAT);
        put_le64(r + 32, VHDXGEN_BAT_OFFSET);
        put_le32(r + 40, 1u << 20);
        put_le32(r + 44, 1);
        gen_guid(r + 48, GUID_META);
        put_le64(r + 64, VHDXGEN_META_OFFSET);
        put_le32(r + 72, 1u << 20);
        put_le32(r + 76, 1);
        vhdxgen_fix_region(b, which);
    }
    uint8_t *m = p + VHDXGEN_META_OFFSET;
    memcpy(m, "metadata", 8);
    struct {
        const char *guid;
        uint32_t len;
        uint32_t flags;
    } items[] = {{GUID_PARAMS, 8, 4}, {GUID_SIZE, 8, 6}, {GUID_PAGE83, 16, 6},
                 {GUID_LSEC, 4, 6},   {GUID_PSEC, 4, 6}, {GUID_LOCATOR, 0, 6}};
    uint32_t n_items = g->has_parent ? 6 : 5;
    put_le16(m + 10, (uint16_t)n_items);
    uint32_t off = 65536;
    for (uint32_t i = 0; i < n_items; i++) {
        uint8_t *e = m + 32 + 32 * i;
        uint8_t *d = m + off;
        gen_guid(e, items[i].guid);
        uint32_t len = items[i].len;
        switch (i) {
        case 0:
            put_le32(d, g->block_size);
            put_le32(d + 4, (g->fixed ? 1u : 0u) | (g->has_parent ? 2u : 0u));
            break;
        case 1:
            put_le64(d, g->size);
            break;
        case 2:
            gen_guid(d, "01020304-0506-4708-890a-0b0c0d0e0f10");
            break;
        case 3:
            put_le32(d, g->logical_sector);
            break;
        case 4:
            put_le32(d, 4096);
            break;
        case 5:
            len = (uint32_t)locator_item(d, g);
            break;
        }
        put_le32(e + 16, off);
        put_le32(e + 20, len);
        put_le32(e + 24, items[i].flags);
        off += (len + 7) / 8 * 8;
    }

    uint64_t bs = g->block_size;
    uint64_t cr = (((uint64_t)1 << 23) * g->logical_sector) / bs;
    uint64_t npay = (g->size + bs - 1) / bs;
    uint64_t nchunks = (npay + cr - 1) / cr;
    uint64_t cur = VHDXGEN_DATA_OFFSET;
    g_autofree uint8_t *data = g_malloc(bs);
    g_autofree bool *chunk_partial = g_new0(bool, nchunks);
    for (uint64_t i = 0; i < npay; i++) {
        memset(data, 0, bs);
        unsigned st = g->block ? g->block(g->ctx, i, data) : 0;
        uint64_t entry = st;
        if (st == 6 || st == 7) {
            ensure(b, cur + bs);
            memcpy(b->data + cur, data, bs);
            entry |= cur;
            cur += bs;
        }
        if (st == 7)
            chunk_partial[i / cr] = true;
        put_le64(b->data + VHDXGEN_BAT_OFFSET + 8 * (i + i / cr), entry);
    }
    uint64_t lsec = g->logical_sector;
    for (uint64_t c = 0; c < nchunks; c++) {
        if (!chunk_partial[c])
            continue;
        ensure(b, cur + (1u << 20));
        uint8_t *bits = b->data + cur;
        uint64_t first = c * cr * bs / lsec;
        for (uint64_t k = 0; k < ((uint64_t)1 << 23); k++) {
            uint64_t sector = first + k;
            if (sector * lsec >= g->size)
                break;
            if (g->sector && g->sector(g->ctx, sector))
                bits[k / 8] |= (uint8_t)(1u << (k % 8));
        }
        put_le64(b->data + VHDXGEN_BAT_OFFSET + 8 * (c * (cr + 1) + cr), cur | 6);
        cur += 1u << 20;
    }
    ensure(b, cur);
    return b;
}

static bool page_is_zero(const uint8_t *p)
{
    for (int i = 0; i < 4096; i++) {
        if (p[i])
            return false;
    }
    return true;
}

void vhdxgen_make_dirty(GByteArray *before, const GByteArray *after, unsigned per_entry,
                        uint32_t start, uint64_t first_seq, bool extend_first)
{
    if (extend_first && before->len < after->len) {
        /* As a writer does: new blocks written (and synced) first. */
        size_t old = before->len;
        g_byte_array_set_size(before, after->len);
        memcpy(before->data + old, after->data + old, after->len - old);
    }
    size_t len = MAX(before->len, after->len);
    size_t before_len = before->len;
    g_autofree uint8_t *a = g_malloc0(len), *bb = g_malloc0(len);
    memcpy(a, after->data, after->len);
    memcpy(bb, before->data, before->len);
    GArray *pages = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    for (uint64_t off = VHDXGEN_META_OFFSET; off < len; off += 4096) {
        if (memcmp(a + off, bb + off, 4096) != 0)
            g_array_append_val(pages, off);
    }
    uint8_t log_guid[16];
    gen_guid(log_guid, GEN_LOG_GUID);
    uint32_t pos = start;
    uint64_t seq = first_seq;
    for (guint i = 0; i < pages->len; i += per_entry) {
        guint n = MIN(per_entry, pages->len - i);
        guint ndata = 0;
        for (guint k = 0; k < n; k++)
            ndata += !page_is_zero(a + g_array_index(pages, uint64_t, i + k));
        uint32_t dsec = (64 + 32 * n + 4095) / 4096;
        uint32_t elen = (dsec + ndata) * 4096;
        g_autofree uint8_t *e = g_malloc0(elen);
        memcpy(e, "loge", 4);
        put_le32(e + 8, elen);
        put_le32(e + 12, start);
        put_le64(e + 16, seq);
        put_le32(e + 24, n);
        memcpy(e + 32, log_guid, 16);
        put_le64(e + 48, before_len);
        put_le64(e + 56, after->len);
        guint d = 0;
        for (guint k = 0; k < n; k++) {
            uint64_t off = g_array_index(pages, uint64_t, i + k);
            uint8_t *desc = e + 64 + 32 * k;
            const uint8_t *pg = a + off;
            put_le64(desc + 16, off);
            put_le64(desc + 24, seq);
            if (page_is_zero(pg)) {
                memcpy(desc, "zero", 4);
                put_le64(desc + 8, 4096);
                continue;
            }
            memcpy(desc, "desc", 4);
            memcpy(desc + 4, pg + 4092, 4);
            memcpy(desc + 8, pg, 8);
            uint8_t *ds = e + (uint64_t)(dsec + d++) * 4096;
            memcpy(ds, "data", 4);
            put_le32(ds + 4, (uint32_t)(seq >> 32));
            memcpy(ds + 8, pg + 8, 4084);
            put_le32(ds + 4092, (uint32_t)seq);
        }
        put_le32(e + 4, gen_crc32c(e, elen));
        for (uint32_t k = 0; k < elen; k++)
            before->data[VHDXGEN_LOG_OFFSET + (pos + k) % VHDXGEN_LOG_SIZE] = e[k];
        pos = (pos + elen) % VHDXGEN_LOG_SIZE;
        seq++;
    }
    g_array_unref(pages);
    for (unsigned slot = 0; slot < 2; slot++) {
        memcpy(before->data + (slot == 0 ? 0x10000 : 0x20000) + 48, log_guid, 16);
        vhdxgen_fix_header(before, slot);
    }
}

void gen_stamp(uint8_t *buf, uint64_t off, uint64_t gen)
{
    for (uint64_t s = 0; s < GEN_STAMP_CHUNK; s += 512) {
        uint8_t *p = buf + s;
        put_le64(p, off + s);
        put_le64(p + 8, gen);
        for (int i = 16; i < 512; i++)
            p[i] = (uint8_t)(gen * 13 + (off + s) / 512 + i);
    }
}

bool gen_sector_ok(const uint8_t *p, uint64_t off)
{
    bool zero = true;
    for (int i = 0; i < 512 && zero; i++)
        zero = p[i] == 0;
    if (zero)
        return true;
    uint64_t o = 0, gen = 0;
    for (int i = 7; i >= 0; i--) {
        o = o << 8 | p[i];
        gen = gen << 8 | p[8 + i];
    }
    if (o != off)
        return false;
    for (int i = 16; i < 512; i++) {
        if (p[i] != (uint8_t)(gen * 13 + off / 512 + i))
            return false;
    }
    return true;
}
