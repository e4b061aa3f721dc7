/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The dmg driver through the block layer, on images written by the test
 * generator (test-dmg-gen.c): every chunk type, both block-table
 * containers, the plist parser alone, unsupported LZFSE chunks, and
 * hostile trailers, tables and streams.
 *
 * "test-dmg gen DIR" writes NAME.dmg and NAME.expect (the raw content)
 * for the integration test, "test-dmg bomb DIR" DIR/bomb.dmg (4 GiB of
 * zeros in 64 chunks of the largest size).
 */
#include "config.h"

#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "formats/dmg.h"
#include "src/vd-chain.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "tests/unit/test-dmg-gen.h"
#include "tests/unit/test-fixtures.h"

/* Every type, a gap, adjacent raw chunks, a 1 MiB chunk, two tables. */
static const DgChunk ALL[] = {
    {DMG_CHUNK_RAW, 16},   {DMG_CHUNK_ZERO, 8}, {DMG_CHUNK_ZLIB, 64},   {DMG_CHUNK_IGNORE, 24},
    {DMG_CHUNK_BZIP2, 40}, {DG_GAP, 8},         {DMG_CHUNK_LZMA, 32},   {DMG_CHUNK_ADC, 48},
    {DMG_CHUNK_RAW, 4},    {DMG_CHUNK_RAW, 4},  {DMG_CHUNK_ZLIB, 2048}, {DMG_CHUNK_ZERO, 100},
    {DMG_CHUNK_ADC, 2048},
};
static const DgSpec ALL_SPEC = {ALL, G_N_ELEMENTS(ALL), false, 0, 6, 16, false};

/* What QEMU 7.2 reads: raw, ignore and zlib, no gaps. */
static const DgChunk QEMU[] = {
    {DMG_CHUNK_RAW, 16},    {DMG_CHUNK_IGNORE, 8},    {DMG_CHUNK_ZLIB, 64},  {DMG_CHUNK_RAW, 40},
    {DMG_CHUNK_ZLIB, 2048}, {DMG_CHUNK_IGNORE, 2000}, {DMG_CHUNK_ZLIB, 128},
};
static const DgChunk BZ2[] = {{DMG_CHUNK_BZIP2, 64}, {DMG_CHUNK_ZLIB, 32}, {DMG_CHUNK_BZIP2, 2048}};
static const DgChunk LZFSE[] = {{DMG_CHUNK_RAW, 8}, {DMG_CHUNK_LZFSE, 16}, {DMG_CHUNK_ZLIB, 8}};

typedef struct {
    char *dir;
    VdContext *ctx;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    f->dir = tf_tmpdir("vdtest-dmg-XXXXXX");
    g_autoptr(GError) err = NULL;
    f->ctx = vd_context_new(f->dir, &err);
    g_assert_no_error(err);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    tf_rm_rf(f->dir);
    g_free(f->dir);
    vd_context_unref(f->ctx);
}

static VdImage *open_bytes(Fixture *f, const GByteArray *file, GError **error)
{
    dg_write(f->dir, "t.dmg", file->data, file->len);
    g_autofree char *p = g_build_filename(f->dir, "t.dmg", NULL);
    VdOpenOptions o = {.read_only = true};
    return vd_image_open(f->ctx, p, &o, error);
}

static bool is_hole_chunk(uint32_t t)
{
    return t == DMG_CHUNK_ZERO || t == DMG_CHUNK_IGNORE || t == DG_GAP;
}

/* Reads equal the source; holes exactly at zero, ignore and gap chunks. */
static void check_image(VdImage *img, const DgSpec *spec, const DgImage *g)
{
    g_autoptr(GError) err = NULL;
    g_assert_cmpstr(img->driver->name, ==, "dmg");
    g_assert_cmpuint(vd_image_size(img), ==, g->size);
    g_autofree uint8_t *buf = g_malloc(g->size);
    g_assert_true(vd_image_pread(img, buf, g->size, 0, &err));
    g_assert_no_error(err);
    for (uint64_t i = 0; i < g->size; i++) {
        if (buf[i] != g->expect[i])
            g_error("byte 0x%" G_GINT64_MODIFIER "x: got %02x, expected %02x", i, buf[i],
                    g->expect[i]);
    }
    /* Unaligned reads across chunk boundaries. */
    for (uint64_t off = 1; off + 3000 < g->size; off += 7777) {
        g_assert_true(vd_image_pread(img, buf, 3000, off, &err));
        g_assert_cmpmem(buf, 3000, g->expect + off, 3000);
    }
    /* Sector states from the spec. */
    uint64_t sectors = g->size / 512;
    g_autofree bool *hole = g_new0(bool, sectors);
    uint64_t s = 0;
    for (size_t i = 0; i < spec->n; i++) {
        for (uint32_t k = 0; k < spec->chunks[i].sectors; k++)
            hole[s + k] = is_hole_chunk(spec->chunks[i].type);
        s += spec->chunks[i].sectors;
    }
    for (; s < sectors; s++)
        hole[s] = true;
    for (uint64_t off = 0; off < g->size;) {
        VdChainExtent e;
        g_assert_true(vd_chain_status(img, off, g->size - off, VD_STATUS_WANT_ZERO, &e, &err));
        bool data = vd_chain_extent_is_data(&e);
        for (uint64_t k = off / 512; k < (off + e.length) / 512; k++) {
            if (hole[k] == data)
                g_error("sector %" G_GUINT64_FORMAT ": %s, expected %s", k, data ? "data" : "hole",
                        hole[k] ? "hole" : "data");
        }
        off += e.length;
    }
}

static void test_all_types(Fixture *f, gconstpointer data)
{
    g_autoptr(DgImage) g = dg_build(&ALL_SPEC);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_bytes(f, g->file, &err);
    g_assert_no_error(err);
    check_image(img, &ALL_SPEC, g);
    g_autoptr(VdInfo) info = vd_info_describe(img);
    const VdInfoEntry *e = vd_info_get(info, "block_tables");
    g_assert_nonnull(e);
    g_assert_cmpstr(e->str, ==, "XML property list");
    g_assert_cmpuint(vd_info_get(info, "blkx_tables")->u64, ==, 2);
    g_autofree char *types = vd_info_entry_to_string(vd_info_get(info, "chunk_types"));
    g_assert_nonnull(strstr(types, "ADC: 2"));
    g_assert_nonnull(strstr(types, "bzip2: 1"));
    /* Adjacent raw chunks stored back to back: one host run. */
    VdExtent ext;
    uint64_t raw8 = (16 + 8 + 64 + 24 + 40 + 8 + 32 + 48) * 512ull;
    g_assert_true(img->driver->block_status(img, raw8, 8 * 512, 0, &ext, &err));
    g_assert_cmpint(ext.state, ==, VD_EXTENT_DATA);
    g_assert_cmpuint(ext.length, ==, 8 * 512);
}

static void test_resource_fork(Fixture *f, gconstpointer data)
{
    DgSpec spec = ALL_SPEC;
    spec.rsrc_fork = true;
    spec.data_fork_prefix = 4096;
    g_autoptr(DgImage) g = dg_build(&spec);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_bytes(f, g->file, &err);
    g_assert_no_error(err);
    check_image(img, &spec, g);
    g_autoptr(VdInfo) info = vd_info_describe(img);
    g_assert_cmpstr(vd_info_get(info, "block_tables")->str, ==, "resource fork");
}

static void test_lzfse_unsupported(Fixture *f, gconstpointer data)
{
    DgSpec spec = {LZFSE, G_N_ELEMENTS(LZFSE), false, 0, 0, 0, false};
    g_autoptr(DgImage) g = dg_build(&spec);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_bytes(f, g->file, &err);
    g_assert_no_error(err);
    uint8_t buf[512];
    g_assert_true(vd_image_pread(img, buf, sizeof buf, 0, &err));
    g_assert_true(vd_image_pread(img, buf, sizeof buf, 24 * 512, &err));
    g_assert_cmpmem(buf, sizeof buf, g->expect + 24 * 512, sizeof buf);
    g_assert_false(vd_image_pread(img, buf, sizeof buf, 8 * 512, &err));
    g_assert_error(err, VD_ERROR, ENOTSUP);
    g_assert_nonnull(strstr(err->message, "unsupported chunk type 0x80000007 (LZFSE)"));
    g_autoptr(VdInfo) info = vd_info_describe(img);
    g_autofree char *types = vd_info_entry_to_string(vd_info_get(info, "chunk_types"));
    g_assert_nonnull(strstr(types, "LZFSE: 1 (unsupported)"));
}

static void test_plist_parser(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) blobs = NULL;
    /* Only Data of dicts in resource-fork/blkx counts, wherever it sits. */
    static const char ok[] =
        "<?xml version=\"1.0\"?><plist version=\"1.0\"><dict>"
        "<key>Data</key><data>AAAA</data>"
        "<key>resource-fork</key><dict>"
        "<key>other</key><array><dict><key>Data</key><data>AAAA</data></dict></array>"
        "<key>blkx</key><array>"
        "<dict><key>Name</key><string>a</string><key>Data</key><data>\n\t bWlz\n "
        "aA==\n</data></dict>"
        "<string>x</string>"
        "<dict><key>Attributes</key><dict><key>Data</key><data>AAAA</data></dict>"
        "<key>Data</key><data>YWJj</data></dict>"
        "</array></dict></dict></plist>";
    g_assert_true(dmg_plist_blkx("t", ok, strlen(ok), &blobs, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(blobs->len, ==, 2);
    gsize n;
    const char *b = g_bytes_get_data(g_ptr_array_index(blobs, 0), &n);
    g_assert_cmpmem(b, n, "mish", 4);
    b = g_bytes_get_data(g_ptr_array_index(blobs, 1), &n);
    g_assert_cmpmem(b, n, "abc", 3);

    static const char *const bad[] = {
        "<plist><dict><key>resource-fork</key><dict>",          /* unterminated */
        "<plist><dict><key>a<key>b</key></key></dict></plist>", /* element in a key */
        "<plist><dict></array></plist>",                        /* mismatched */
        "\xff\xfe<plist/>",                                     /* not UTF-8 */
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GPtrArray) none = NULL;
        g_assert_false(dmg_plist_blkx("t", bad[i], strlen(bad[i]), &none, &err));
        g_assert_error(err, VD_ERROR, EIO);
        g_clear_error(&err);
    }
    /* Deep nesting is refused, not recursed into. */
    GString *deep = g_string_new("<plist>");
    for (int i = 0; i < 100; i++)
        g_string_append(deep, "<array>");
    g_autoptr(GPtrArray) none = NULL;
    g_assert_false(dmg_plist_blkx("t", deep->str, deep->len, &none, &err));
    g_assert_nonnull(strstr(err->message, "deeper"));
    g_string_free(deep, TRUE);
}

static void test_adc(void)
{
    /* The encoder makes all three code kinds; the decoder undoes them. */
    uint8_t src[5000];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = i < 100 ? (uint8_t)(i * 37) : i < 2000 ? (uint8_t)'a' : dg_pattern(i);
    g_autoptr(GByteArray) enc = dg_adc_encode(src, sizeof src);
    g_autoptr(GError) err = NULL;
    g_autoptr(GBytes) out = dmg_decode("t", DMG_CHUNK_ADC, enc->data, enc->len, sizeof src, &err);
    g_assert_no_error(err);
    g_assert_cmpmem(g_bytes_get_data(out, NULL), sizeof src, src, sizeof src);
    /* A copy from before the start, and one that decodes too much. */
    static const uint8_t before[] = {0x80, 'x', 0x40, 0x00, 0x05};
    g_assert_null(dmg_decode("t", DMG_CHUNK_ADC, before, sizeof before, 5, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);
    g_assert_null(dmg_decode("t", DMG_CHUNK_ADC, enc->data, enc->len, 100, &err));
    g_assert_error(err, VD_ERROR, EIO);
}

/* Open must fail (EIO/ENOTSUP), or reading everything must fail: never crash. */
static void expect_refused(Fixture *f, const GByteArray *file, const char *what)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_bytes(f, file, &err);
    if (img != NULL) {
        uint64_t size = vd_image_size(img);
        g_autofree uint8_t *buf = g_malloc(MIN(size, 1u << 24) + 1);
        bool ok = vd_image_pread(img, buf, MIN(size, 1u << 24), 0, &err);
        if (ok)
            g_error("%s: image opened and read without error", what);
    }
    g_assert_nonnull(err);
    g_test_message("%s: %s", what, err->message);
}

static GByteArray *copy(const GByteArray *a)
{
    GByteArray *b = g_byte_array_sized_new(a->len);
    g_byte_array_append(b, a->data, a->len);
    return b;
}

static void test_hostile(Fixture *f, gconstpointer data)
{
    DgSpec spec = ALL_SPEC;
    spec.rsrc_fork = true; /* block tables stored plainly, easy to corrupt */
    g_autoptr(DgImage) g = dg_build(&spec);
    uint8_t *koly = NULL;
    uint64_t m = g->mish_offset[0];
    struct {
        const char *what;
        uint64_t at;
        int width; /* 4 or 8: big-endian field */
        uint64_t value;
    } cases[] = {
        {"resource fork past the end", g->koly_offset + 40, 8, g->koly_offset + 4096},
        {"resource fork length huge", g->koly_offset + 48, 8, 1ull << 40},
        {"data fork past the trailer", g->koly_offset + 24, 8, g->koly_offset + 1},
        {"sector count absurd", g->koly_offset + 492, 8, 1ull << 62},
        {"sector count too small for chunks", g->koly_offset + 492, 8, 10},
        {"segmented", g->koly_offset + 60, 4, 3},
        {"mish chunk count huge", m + 200, 4, 0x7fffffff},
        {"first sector overflows", m + 8, 8, UINT64_MAX - 5},
        {"chunk sector count huge", m + 204 + 40 + 16, 8, 1ull << 60},
        {"raw chunk past the end", m + 204 + 40 + 24, 8, g->koly_offset},
        {"zlib chunk length huge", m + 204 + 3 * 40 + 32, 8, 1ull << 32},
        {"zlib chunk offset past the end", m + 204 + 3 * 40 + 24, 8, 1ull << 50},
        {"zlib chunk decodes to more (bomb)", m + 204 + 3 * 40 + 16, 8, 2},
        {"zlib chunk truncated", m + 204 + 3 * 40 + 32, 8, 20},
        {"chunks overlap", m + 204 + 2 * 40 + 8, 8, 1},
        {"bzip2 chunk decodes to more (bomb)", m + 204 + 5 * 40 + 16, 8, 1},
        {"data offset wraps", m + 24, 8, UINT64_MAX - 100},
        {"resource data length past the fork", g->koly_offset - 30 - (g->koly_offset - m) + 0, 4,
         0},
    };
    /* The last case: the resource fork header (at its start) gets a data
     * length beyond the fork. */
    uint64_t rsrc = vd_be64(g->file->data + g->koly_offset + 40);
    cases[G_N_ELEMENTS(cases) - 1].at = rsrc + 8;
    cases[G_N_ELEMENTS(cases) - 1].value = 1u << 30;
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GByteArray) b = copy(g->file);
        koly = b->data + cases[i].at;
        if (cases[i].width == 8)
            vd_put_be64(koly, cases[i].value);
        else
            vd_put_be32(koly, (uint32_t)cases[i].value);
        expect_refused(f, b, cases[i].what);
    }
    /* A zlib stream that inflates far past its chunk: the bomb stops at the chunk size. */
    {
        g_autofree uint8_t *zeros = g_malloc0(64u << 20);
        uLongf n = compressBound(64u << 20);
        g_autofree uint8_t *z = g_malloc(n);
        g_assert_cmpint(compress2(z, &n, zeros, 64u << 20, 9), ==, Z_OK);
        g_autoptr(GError) err = NULL;
        g_assert_null(dmg_decode("t", DMG_CHUNK_ZLIB, z, n, 512, &err));
        g_assert_nonnull(strstr(err->message, "holds more"));
    }
    /* Truncated trailer and XML. */
    {
        g_autoptr(DgImage) x = dg_build(&ALL_SPEC);
        g_autoptr(GByteArray) b = copy(x->file);
        vd_put_be64(b->data + x->koly_offset + 224, x->xml_length / 2);
        expect_refused(f, b, "XML cut in half");
        g_autoptr(GByteArray) c = copy(x->file);
        vd_put_be64(c->data + x->koly_offset + 216, x->koly_offset);
        expect_refused(f, c, "XML at the trailer");
        g_autoptr(GByteArray) d = copy(x->file);
        vd_put_be64(d->data + x->koly_offset + 224, 0);
        expect_refused(f, d, "neither plist nor resource fork");
        g_autoptr(GByteArray) e = copy(x->file);
        g_byte_array_set_size(e, 300);
        expect_refused(f, e, "shorter than a trailer");
    }
}

/* Random byte flips in the block tables and streams: errors or data, never a crash. */
static void test_flips(Fixture *f, gconstpointer data)
{
    DgSpec spec = ALL_SPEC;
    spec.rsrc_fork = true;
    g_autoptr(DgImage) g = dg_build(&spec);
    GRand *r = g_rand_new_with_seed(42);
    for (int round = 0; round < 200; round++) {
        g_autoptr(GByteArray) b = copy(g->file);
        for (int k = 0; k < 4; k++) {
            guint at = (guint)g_rand_int_range(r, 0, (gint)b->len);
            b->data[at] ^= (uint8_t)g_rand_int_range(r, 1, 256);
        }
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = open_bytes(f, b, &err);
        if (img == NULL)
            continue;
        uint64_t size = MIN(vd_image_size(img), 8u << 20);
        g_autofree uint8_t *buf = g_malloc(size + 1);
        vd_image_pread(img, buf, size, 0, NULL);
        uint64_t pos;
        vd_chain_seek(img, 0, SEEK_HOLE, &pos, NULL);
    }
    g_rand_free(r);
}

static void write_pair(const char *dir, const char *name, const DgSpec *spec)
{
    g_autoptr(DgImage) g = dg_build(spec);
    g_autofree char *img = g_strdup_printf("%s.dmg", name);
    g_autofree char *exp = g_strdup_printf("%s.expect", name);
    dg_write(dir, img, g->file->data, g->file->len);
    dg_write(dir, exp, g->expect, g->size);
    /* The data ranges (merged), as the integration test's seek_map prints them. */
    GString *map = g_string_new(NULL);
    uint64_t s = 0, run_start = 0;
    bool in_run = false;
    for (size_t i = 0; i <= spec->n; i++) {
        bool data = i < spec->n && !is_hole_chunk(spec->chunks[i].type);
        if (data && !in_run)
            run_start = s;
        if (!data && in_run)
            g_string_append_printf(map, "%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT "\n",
                                   run_start * 512, (s - run_start) * 512);
        in_run = data;
        if (i < spec->n)
            s += spec->chunks[i].sectors;
    }
    g_autofree char *mapname = g_strdup_printf("%s.map", name);
    dg_write(dir, mapname, map->str, map->len);
    g_string_free(map, TRUE);
}

static int gen(const char *dir)
{
    DgSpec qemu = {QEMU, G_N_ELEMENTS(QEMU), false, 0, 3, 0, false};
    write_pair(dir, "qemu", &qemu);
    qemu.data_fork_prefix = 1536;
    write_pair(dir, "qemu-prefix", &qemu);
    qemu.rsrc_fork = true;
    write_pair(dir, "qemu-rsrc", &qemu);
    DgSpec bz2 = {BZ2, G_N_ELEMENTS(BZ2), false, 0, 0, 0, false};
    write_pair(dir, "bz2", &bz2);
    write_pair(dir, "all", &ALL_SPEC);
    DgSpec rsrc = ALL_SPEC;
    rsrc.rsrc_fork = true;
    rsrc.data_fork_prefix = 4096;
    write_pair(dir, "all-rsrc", &rsrc);
    DgSpec lz = {LZFSE, G_N_ELEMENTS(LZFSE), false, 0, 0, 0, false};
    write_pair(dir, "lzfse", &lz);
    return 0;
}

static VdImage *peek_file(Fixture *f, const char *name, GError **error)
{
    g_autofree char *p = g_build_filename(f->dir, name, NULL);
    return vd_image_peek(f->ctx, p, error);
}

/* peek: the full open's size, members and read-only state, from the koly
 * trailer alone. */
static void test_peek(Fixture *f, gconstpointer data)
{
    DgSpec rsrc = ALL_SPEC;
    rsrc.rsrc_fork = true;
    rsrc.data_fork_prefix = 4096;
    DgSpec lz = {LZFSE, G_N_ELEMENTS(LZFSE), false, 0, 0, 0, false};
    const DgSpec *specs[] = {&ALL_SPEC, &rsrc, &lz};
    for (size_t i = 0; i < G_N_ELEMENTS(specs); i++) {
        g_autoptr(DgImage) g = dg_build(specs[i]);
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) full = open_bytes(f, g->file, &err);
        g_assert_no_error(err);
        g_autoptr(VdImage) peek = peek_file(f, "t.dmg", &err);
        g_assert_no_error(err);
        g_assert_true(peek->peeked);
        g_assert_null(peek->opaque);
        g_assert_cmpstr(peek->driver->name, ==, "dmg");
        g_assert_cmpuint(vd_image_size(peek), ==, vd_image_size(full));
        g_assert_cmpuint(vd_image_size(peek), ==, g->size);
        g_assert_cmpuint(peek->members ? peek->members->len : 0, ==,
                         full->members ? full->members->len : 0);
        g_assert_true(peek->format_read_only);
        g_assert_cmpint(peek->format_read_only, ==, full->format_read_only);
    }

    /* Hostile block tables cost peek nothing: a 60 MiB "property list" in
     * a hole of the file, which a full open reads and refuses. */
    g_autoptr(DgImage) g = dg_build(&ALL_SPEC);
    uint64_t hole = g->koly_offset, xml_len = 60u << 20;
    uint8_t koly[512];
    memcpy(koly, g->file->data + g->koly_offset, sizeof koly);
    vd_put_be64(koly + 216, hole);
    vd_put_be64(koly + 224, xml_len);
    g_autofree char *p = g_build_filename(f->dir, "huge.dmg", NULL);
    FILE *fp = fopen(p, "wb");
    g_assert_nonnull(fp);
    g_assert_cmpuint(fwrite(g->file->data, 1, hole, fp), ==, hole);
    g_assert_cmpint(fseeko(fp, (off_t)(hole + xml_len), SEEK_SET), ==, 0);
    g_assert_cmpuint(fwrite(koly, 1, sizeof koly, fp), ==, sizeof koly);
    g_assert_cmpint(fclose(fp), ==, 0);
    g_autoptr(GError) err = NULL;
    gint64 t0 = g_get_monotonic_time();
    g_autoptr(VdImage) peek = peek_file(f, "huge.dmg", &err);
    g_assert_no_error(err);
    g_assert_cmpint(g_get_monotonic_time() - t0, <, G_USEC_PER_SEC / 10);
    g_assert_cmpuint(vd_image_size(peek), ==, g->size);
    VdOpenOptions o = {.read_only = true};
    g_autoptr(VdImage) full = vd_image_open(f->ctx, p, &o, &err);
    g_assert_null(full);
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);

    /* What the trailer itself gets wrong, peek refuses like open. */
    memcpy(koly, g->file->data + g->koly_offset, sizeof koly);
    vd_put_be64(koly + 492, UINT64_MAX / 256);
    GByteArray *bad = g_byte_array_new();
    g_byte_array_append(bad, g->file->data, (guint)g->koly_offset);
    g_byte_array_append(bad, koly, sizeof koly);
    dg_write(f->dir, "bad.dmg", bad->data, bad->len);
    g_byte_array_unref(bad);
    g_assert_null(peek_file(f, "bad.dmg", &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_assert_nonnull(strstr(err->message, "sector count"));
}

/* DIR/bomb.dmg: 64 zlib chunks of 64 MiB of zeros (the largest chunk
 * allowed) in 4 MB, for tests of concurrent readers. */
static int gen_bomb(const char *dir)
{
    DgChunk chunks[64];
    for (size_t i = 0; i < G_N_ELEMENTS(chunks); i++)
        chunks[i] = (DgChunk){DMG_CHUNK_ZLIB, DMG_MAX_DECODED / 512};
    DgSpec spec = {chunks, G_N_ELEMENTS(chunks), false, 0, 0, 0, true};
    g_autoptr(DgImage) img = dg_build(&spec);
    dg_write(dir, "bomb.dmg", img->file->data, img->file->len);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "gen") == 0)
        return gen(argv[2]);
    if (argc == 3 && strcmp(argv[1], "bomb") == 0)
        return gen_bomb(argv[2]);
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/dmg/plist-parser", test_plist_parser);
    g_test_add_func("/dmg/adc", test_adc);
    g_test_add("/dmg/all-types", Fixture, NULL, fixture_setup, test_all_types, fixture_teardown);
    g_test_add("/dmg/resource-fork", Fixture, NULL, fixture_setup, test_resource_fork,
               fixture_teardown);
    g_test_add("/dmg/lzfse-unsupported", Fixture, NULL, fixture_setup, test_lzfse_unsupported,
               fixture_teardown);
    g_test_add("/dmg/hostile", Fixture, NULL, fixture_setup, test_hostile, fixture_teardown);
    g_test_add("/dmg/flips", Fixture, NULL, fixture_setup, test_flips, fixture_teardown);
    g_test_add("/dmg/peek", Fixture, NULL, fixture_setup, test_peek, fixture_teardown);
    return g_test_run();
}
