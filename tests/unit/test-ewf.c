/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The EWF parser: sets made in memory, read back, and damaged. */
#include "config.h"

#include <string.h>
#include <zlib.h>

#include "sources/ewf.h"
#include "src/vd-error.h"
#include "tests/unit/test-ewf-gen.h"

#define SECTORS 1021 /* not a whole number of chunks */
#define SPC     8
#define CS      (SPC * 512)

static uint8_t media[SECTORS * 512];

/* Random data, with zero runs that cover whole chunks. */
static void make_media(void)
{
    GRand *r = g_rand_new_with_seed(15);
    for (size_t i = 0; i < sizeof media; i++)
        media[i] = (uint8_t)g_rand_int(r);
    g_rand_free(r);
    memset(media + 3 * CS, 0, 5 * CS);
    memset(media + 40 * CS + 100, 0, 20 * CS);
}

static EwfGenOpts defaults(void)
{
    return (EwfGenOpts){
        .spc = SPC,
        .media = media,
        .sectors = SECTORS,
        .chunks_per_segment = 50,
        .chunks_per_table = 20,
        .level = 6,
        .table_base = true,
    };
}

static EwfSet *open_set(GPtrArray *segs, GError **error)
{
    return ewf_set_open(&ewf_gen_io, segs, "test.E01", error);
}

/* Read every chunk: false (with error) at the first that fails; a chunk
 * read without error must hold the media's bytes. */
static bool read_all(EwfSet *s, GError **error)
{
    g_assert_cmpuint(ewf_media_size(s), ==, sizeof media);
    for (uint64_t i = 0; i < ewf_chunk_count(s); i++) {
        g_autoptr(GBytes) b = ewf_chunk_read(s, i, error);
        if (b == NULL)
            return false;
        gsize n;
        const uint8_t *d = g_bytes_get_data(b, &n);
        g_assert_cmpuint(n, ==, MIN((uint64_t)CS, sizeof media - i * CS));
        if (memcmp(d, media + i * CS, n) != 0)
            g_error("chunk %" G_GUINT64_FORMAT " read without error but differs", i);
        /* Decoded where it goes: the same. */
        uint8_t whole[CS];
        if (n == CS) {
            g_assert_true(ewf_chunk_read_whole(s, i, whole, error));
            g_assert_cmpmem(whole, CS, d, CS);
        } else {
            g_assert_false(ewf_chunk_read_whole(s, i, whole, NULL));
        }
    }
    return true;
}

static void expect_open_error(GPtrArray *segs, const char *what)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(EwfSet) s = open_set(segs, &err);
    g_assert_null(s);
    g_assert_nonnull(err);
    if (strstr(err->message, what) == NULL)
        g_error("expected \"%s\" in \"%s\"", what, err->message);
}

static void expect_read_error(GPtrArray *segs, const char *what)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(EwfSet) s = open_set(segs, &err);
    g_assert_no_error(err);
    g_assert_false(read_all(s, &err));
    g_assert_cmpint(err->code, ==, EIO);
    if (strstr(err->message, what) == NULL)
        g_error("expected \"%s\" in \"%s\"", what, err->message);
}

static GByteArray *seg(GPtrArray *segs, unsigned n)
{
    return segs->pdata[n - 1];
}

/* Entry k of the table whose header is at h, its checksum kept right. */
static void set_entry(GByteArray *b, uint64_t h, uint32_t k, uint32_t v)
{
    uint32_t count = b->data[h] | b->data[h + 1] << 8;
    ewf_gen_put_le32(b, h + 24 + 4 * k, v);
    ewf_gen_fix_sum(b, h + 24, 4 * count);
}

static uint32_t get_entry(GByteArray *b, uint64_t h, uint32_t k)
{
    const uint8_t *p = b->data + h + 24 + 4 * k;
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static void test_names(void)
{
    char ext[4];
    struct {
        char letter;
        unsigned n;
        const char *want;
    } cases[] = {
        {'E', 2, "E02"},
        {'E', 99, "E99"},
        {'E', 100, "EAA"},
        {'E', 101, "EAB"},
        {'E', 126, "EBA"},
        {'E', 775, "EZZ"},
        {'E', 776, "FAA"},
        {'e', 100, "eaa"},
        {'s', 5, "s05"},
        {'s', 100, "saa"},
        {'E', EWF_MAX_SEGMENTS, "ZZZ"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_assert_true(ewf_segment_ext(cases[i].letter, cases[i].n, ext));
        g_assert_cmpstr(ext, ==, cases[i].want);
    }
    g_assert_false(ewf_segment_ext('E', EWF_MAX_SEGMENTS + 1, ext));
    g_assert_false(ewf_segment_ext('s', 100 + 8 * 676, ext));
}

static void check_zero_map(EwfSet *s, bool compressed)
{
    static const uint8_t zeros[CS];
    for (uint64_t i = 0; i < ewf_chunk_count(s); i++) {
        bool z, want = compressed && (i + 1) * CS <= sizeof media &&
                       memcmp(media + i * CS, zeros, CS) == 0;
        g_autoptr(GError) err = NULL;
        g_assert_true(ewf_chunk_is_zero(s, i, &z, &err));
        g_assert_no_error(err);
        if (z != want)
            g_error("chunk %" G_GUINT64_FORMAT ": zero %d, expected %d", i, z, want);
        g_assert_true(ewf_chunk_is_zero(s, i, &z, NULL)); /* remembered */
        g_assert_true(z == want);
    }
}

static void roundtrip(EwfGenOpts o, unsigned want_segs)
{
    g_autoptr(GPtrArray) segs = ewf_gen(&o);
    g_assert_cmpuint(segs->len, ==, want_segs);
    g_autoptr(GError) err = NULL;
    g_autoptr(EwfSet) s = open_set(segs, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(ewf_segment_count(s), ==, want_segs);
    g_assert_cmpuint(ewf_chunk_size(s), ==, CS);
    for (uint64_t i = 0; i < ewf_chunk_count(s); i++) {
        EwfChunk c;
        g_assert_false(ewf_chunk_in_place(s, i, &c)); /* not checked yet */
    }
    g_assert_true(read_all(s, &err));
    g_assert_no_error(err);
    check_zero_map(s, o.level >= 0);
    /* Chunks stored as they are, once checked, are read in place. */
    for (uint64_t i = 0; i < ewf_chunk_count(s); i++) {
        EwfChunk c;
        if (!ewf_chunk_in_place(s, i, &c))
            continue;
        g_assert_false(c.compressed);
        GByteArray *b = segs->pdata[c.seg - 1];
        g_assert_cmpuint(c.off + c.len, <=, b->len);
        g_assert_cmpmem(b->data + c.off, c.len, media + i * CS, c.len);
        if (o.level < 0)
            continue;
        g_assert_false(memcmp(media + i * CS, media + 3 * CS, MIN(c.len, CS)) == 0);
    }
    if (o.level < 0) {
        EwfChunk c;
        g_assert_true(ewf_chunk_in_place(s, 0, &c));
    }
}

static void test_roundtrip(void)
{
    EwfGenOpts o = defaults();
    roundtrip(o, 3); /* 128 chunks, 50 a segment */
    o.table_base = false;
    o.level = 1;
    roundtrip(o, 3);
    o.level = -1; /* ewfacquire -c none */
    roundtrip(o, 3);
    o = defaults();
    o.chunks_per_segment = 0;
    o.chunks_per_table = 0;
    roundtrip(o, 1);
    o = defaults();
    o.smart = true;
    o.table_base = false;
    o.level = 9;
    roundtrip(o, 3);
}

static void test_metadata(void)
{
    static const uint8_t md5[16] = {0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04,
                                    0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8, 0x42, 0x7e};
    static const uint8_t sha1[20] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
                                     11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
    EwfGenOpts o = defaults();
    o.header2 = "3\nmain\na\tc\tn\te\tt\tmd\tsn\tav\tov\tm\tu\tp\tdc\n"
                "Disque \xc3\xa9tiquet\xc3\xa9\tC-42\tE7\tJ. Doe\tfound in a drawer\tWD\t\t20140813"
                "\tLinux\t1142163845\t1142163845\t0\t\n\nsrce\n0\t1\n";
    o.header =
        "1\r\nmain\r\nc\tn\ta\te\tt\tav\tov\tm\tu\tp\tr\r\n"
        "C-42\tE7\tother\tJ. Doe\tnotes\t20140813\tLinux\t2006 3 12 11 44 5\t2006 3 12 11 44 "
        "5\t0\tb\r\n\r\n";
    o.md5 = md5;
    o.sha1 = sha1;
    g_autoptr(GPtrArray) segs = ewf_gen(&o);
    g_autoptr(GError) err = NULL;
    g_autoptr(EwfSet) s = open_set(segs, &err);
    g_assert_no_error(err);
    const EwfMeta *m = ewf_meta(s);
    g_assert_cmpstr(m->md5, ==, "d41d8cd98f00b204e9800998ecf8427e");
    g_assert_cmpstr(m->sha1, ==, "0102030405060708090a0b0c0d0e0f1011121314");
    g_assert_cmpstr(m->media_type, ==, "fixed");
    g_autoptr(GHashTable) v = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint i = 0; i + 1 < m->values->len; i += 2)
        g_hash_table_insert(v, m->values->pdata[i], m->values->pdata[i + 1]);
    /* header2 first (UTF-16), header for what it lacks. */
    g_assert_cmpstr(g_hash_table_lookup(v, "description"), ==, "Disque \xc3\xa9tiquet\xc3\xa9");
    g_assert_cmpstr(g_hash_table_lookup(v, "case_number"), ==, "C-42");
    g_assert_cmpstr(g_hash_table_lookup(v, "evidence_number"), ==, "E7");
    g_assert_cmpstr(g_hash_table_lookup(v, "examiner"), ==, "J. Doe");
    g_assert_cmpstr(g_hash_table_lookup(v, "notes"), ==, "found in a drawer");
    g_assert_cmpstr(g_hash_table_lookup(v, "model"), ==, "WD");
    g_assert_null(g_hash_table_lookup(v, "serial_number")); /* empty */
    g_assert_cmpstr(g_hash_table_lookup(v, "acquiry_date"), ==, "2006-03-12T11:44:05Z");
    g_assert_cmpstr(g_hash_table_lookup(v, "acquiry_os"), ==, "Linux");
    g_assert_cmpstr(g_hash_table_lookup(v, "compression"), ==, "b");

    /* The header's own date form, alone. */
    EwfMeta h;
    ewf_meta_init(&h);
    ewf_meta_add_header(&h, (const uint8_t *)o.header, strlen(o.header), false);
    g_assert_cmpstr(h.values->pdata[0], ==, "case_number");
    for (guint i = 0; i + 1 < h.values->len; i += 2) {
        if (strcmp(h.values->pdata[i], "acquiry_date") == 0)
            g_assert_cmpstr(h.values->pdata[i + 1], ==, "2006-03-12T11:44:05");
    }
    ewf_meta_add_xhash(&h,
                       (const uint8_t *)"<xhash><MD5>D41D8CD98F00B204E9800998ECF8427E</MD5>"
                                        "<SHA1>bad</SHA1></xhash>",
                       69);
    g_assert_cmpstr(h.md5, ==, "d41d8cd98f00b204e9800998ecf8427e");
    g_assert_cmpstr(h.sha1, ==, "");
    ewf_meta_clear(&h);
}

/* Every prefix of a set (as if the copy was cut short): refused, or read
 * right. */
static void test_truncated(void)
{
    EwfGenOpts o = defaults();
    o.chunks_per_segment = 0;
    g_autoptr(GPtrArray) segs = ewf_gen(&o);
    GByteArray *b = seg(segs, 1);
    guint full = b->len;
    for (guint len = 0; len < full; len += 37) {
        g_byte_array_set_size(b, len);
        g_autoptr(GError) err = NULL;
        g_autoptr(EwfSet) s = open_set(segs, &err);
        if (s != NULL)
            (void)read_all(s, NULL);
        else
            g_assert_cmpint(err->code, ==, EIO);
        g_byte_array_set_size(b, full);
    }
    /* The last segment of three cut short, and missing. */
    o = defaults();
    g_autoptr(GPtrArray) three = ewf_gen(&o);
    g_byte_array_set_size(seg(three, 3), seg(three, 3)->len - 100);
    expect_open_error(three, "segment 3");
    g_ptr_array_remove_index(three, 2);
    expect_open_error(three, "segment 3 is missing");
}

static void test_chain(void)
{
    EwfGenOpts o = defaults();
    g_autoptr(GPtrArray) segs = ewf_gen(&o);
    GByteArray *b = seg(segs, 2);
    int64_t t = ewf_gen_find(b, "table", 0);
    g_assert_cmpint(t, >, 0);

    /* A section whose next one is itself or behind it. */
    ewf_gen_put_le64(b, t + 16, 13);
    ewf_gen_put_le64(b, t + 24, 0);
    ewf_gen_fix_descriptor(b, t);
    expect_open_error(segs, "loop");
    /* ... or past the end of the file. */
    ewf_gen_put_le64(b, t + 16, b->len + 4096);
    ewf_gen_fix_descriptor(b, t);
    expect_open_error(segs, "past the end");
    /* Its size and its next offset disagree (two images in one). */
    g_autoptr(GPtrArray) fresh = ewf_gen(&o);
    b = seg(fresh, 2);
    ewf_gen_put_le64(b, t + 24, 100);
    ewf_gen_fix_descriptor(b, t);
    expect_open_error(fresh, "disagrees");
    /* A descriptor checksum. */
    ewf_gen_put_le64(b, t + 24, 0);
    expect_open_error(fresh, "bad checksum");

    /* Segments out of order, or of another set. */
    g_autoptr(GPtrArray) swapped = ewf_gen(&o);
    gpointer two = swapped->pdata[1];
    swapped->pdata[1] = swapped->pdata[2];
    swapped->pdata[2] = two;
    expect_open_error(swapped, "says it is segment");
    g_autoptr(GPtrArray) other = ewf_gen(&o);
    b = seg(other, 2);
    int64_t d = ewf_gen_find(b, "data", 0);
    b->data[d + EWF_SECTION + 70] ^= 1; /* the set's GUID */
    ewf_gen_fix_sum(b, d + EWF_SECTION, 1048);
    expect_open_error(other, "another evidence set");
}

/* Set a field of the volume and of every data section (its copies). */
static void set_volume(GPtrArray *segs, unsigned at, unsigned width, uint64_t v)
{
    for (guint n = 1; n <= segs->len; n++) {
        GByteArray *b = seg(segs, n);
        for (int k = 0; k < 2; k++) {
            int64_t d = ewf_gen_find(b, k ? "data" : "volume", 0);
            if (d < 0)
                continue;
            if (width == 4)
                ewf_gen_put_le32(b, d + EWF_SECTION + at, (uint32_t)v);
            else
                ewf_gen_put_le64(b, d + EWF_SECTION + at, v);
            ewf_gen_fix_sum(b, d + EWF_SECTION, 1048);
        }
    }
}

static void test_volume(void)
{
    EwfGenOpts o = defaults();
    g_autoptr(GPtrArray) segs = ewf_gen(&o);
    /* No sectors per chunk, chunks larger than any tool writes. */
    set_volume(segs, 8, 4, 0);
    expect_open_error(segs, "geometry");
    set_volume(segs, 8, 4, 1u << 20);
    expect_open_error(segs, "geometry");
    /* Media far larger than the tables hold: refused, nothing allocated
     * for it. */
    set_volume(segs, 8, 4, SPC);
    set_volume(segs, 16, 8, 1ull << 40);
    expect_open_error(segs, "needs");
    set_volume(segs, 16, 8, UINT64_MAX / 256);
    expect_open_error(segs, "geometry");
    /* The volume's checksum; no volume at all. */
    set_volume(segs, 16, 8, SECTORS);
    GByteArray *b = seg(segs, 1);
    int64_t v = ewf_gen_find(b, "volume", 0);
    b->data[v + EWF_SECTION + 16] ^= 1;
    expect_open_error(segs, "checksum");
    memcpy(b->data + v, "nothing", 8);
    ewf_gen_fix_descriptor(b, v);
    expect_open_error(segs, "before any volume");
}

static void test_tables(void)
{
    EwfGenOpts o = defaults();
    g_autoptr(GPtrArray) segs = ewf_gen(&o);
    GByteArray *b = seg(segs, 1);
    int64_t t = ewf_gen_find(b, "table", 1), t2 = ewf_gen_find(b, "table2", 1);
    uint64_t h = t + EWF_SECTION, h2 = t2 + EWF_SECTION;

    /* A bad header is taken from table2, a bad entry array too. */
    b->data[h + 12] ^= 0xff;
    g_autoptr(GError) err = NULL;
    g_autoptr(EwfSet) s = open_set(segs, &err);
    g_assert_no_error(err);
    g_assert_true(read_all(s, &err));
    g_clear_pointer(&s, ewf_set_free);
    b->data[h + 12] ^= 0xff;
    b->data[h + 24 + 9] ^= 0x10;
    s = open_set(segs, &err);
    g_assert_true(read_all(s, &err));
    g_assert_no_error(err);
    g_clear_pointer(&s, ewf_set_free);
    /* Both bad. */
    b->data[h2 + 24 + 9] ^= 0x10;
    expect_read_error(segs, "bad checksum");
    b->data[h + 12] ^= 0xff;
    b->data[h2 + 12] ^= 0xff;
    expect_open_error(segs, "bad checksums");
    b->data[h + 12] ^= 0xff;
    b->data[h2 + 12] ^= 0xff;
    b->data[h + 24 + 9] ^= 0x10;
    b->data[h2 + 24 + 9] ^= 0x10;

    /* More entries than the section holds. */
    g_autoptr(GPtrArray) big = ewf_gen(&o);
    b = seg(big, 1);
    ewf_gen_put_le32(b, h, 0x40000000);
    ewf_gen_fix_sum(b, h, 20);
    expect_open_error(big, "do not fit");

    /* An entry pointing anywhere: at the table's base (a descriptor), a
     * file header, past the end, into another chunk. Its checksums kept
     * right. */
    const uint32_t where[] = {0, 13, 0x7ffffff0, 0x80000000u | 0x7ffffff0, 200, 0x80000000u | 200};
    for (guint w = 0; w < G_N_ELEMENTS(where); w++) {
        g_autoptr(GPtrArray) any = ewf_gen(&o);
        b = seg(any, 1);
        set_entry(b, h, 5, where[w]);
        set_entry(b, h2, 5, where[w]);
        g_autoptr(EwfSet) a = open_set(any, &err);
        g_assert_no_error(err);
        g_assert_false(read_all(a, &err));
        g_assert_cmpint(err->code, ==, EIO);
        g_assert_nonnull(strstr(err->message, "chunk 25 "));
        g_clear_error(&err);
    }
}

static void test_chunks(void)
{
    EwfGenOpts o = defaults();
    o.chunks_per_segment = 0;
    o.chunks_per_table = 0;
    o.level = -1;
    g_autoptr(GPtrArray) segs = ewf_gen(&o);
    GByteArray *b = seg(segs, 1);
    uint64_t data = ewf_gen_find(b, "sectors", 0) + EWF_SECTION;
    b->data[data + 2 * (CS + 4) + 77] ^= 4; /* chunk 2 */
    expect_read_error(segs, "chunk 2 ");
    expect_read_error(segs, "fails its checksum");

    /* Chunk 0 (random data, stored as it is) said to be compressed, then
     * replaced by a small stream that inflates past a chunk. */
    o.level = 6;
    g_autoptr(GPtrArray) z = ewf_gen(&o);
    b = seg(z, 1);
    uint64_t h = ewf_gen_find(b, "table", 0) + EWF_SECTION;
    uint64_t h2 = ewf_gen_find(b, "table2", 0) + EWF_SECTION;
    uint32_t e0 = get_entry(b, h, 0);
    set_entry(b, h, 0, e0 | 0x80000000u);
    set_entry(b, h2, 0, e0 | 0x80000000u);
    expect_read_error(z, "zlib");
    data = ewf_gen_find(b, "sectors", 0) + EWF_SECTION;
    g_autofree uint8_t *zeros = g_malloc0(64 * CS);
    uLongf n = compressBound(64 * CS);
    g_autofree uint8_t *zz = g_malloc(n);
    g_assert_cmpint(compress2(zz, &n, zeros, 64 * CS, 9), ==, Z_OK);
    g_assert_cmpuint(n, <, CS);
    memcpy(b->data + data, zz, n);
    expect_read_error(z, "more than a chunk");
    /* ... and a stream cut short. */
    memset(b->data + data + n / 2, 0, n - n / 2);
    expect_read_error(z, "chunk 0 ");
}

/* The budget is asked before tables are loaded, and given back. */
static uint64_t budget_left, budget_used;

static bool tight_reserve(void *user, uint64_t bytes, const char *what, GError **error)
{
    if (bytes > budget_left) {
        vd_set_error(error, ENOMEM, "no room for a %s", what);
        return false;
    }
    budget_left -= bytes;
    budget_used += bytes;
    return true;
}

static void tight_release(void *user, uint64_t bytes)
{
    budget_left += bytes;
    budget_used -= bytes;
}

static void test_budget(void)
{
    EwfGenOpts o = defaults();
    g_autoptr(GPtrArray) segs = ewf_gen(&o);
    EwfIo io = ewf_gen_io;
    io.reserve = tight_reserve;
    io.release = tight_release;
    budget_left = 1u << 20;
    g_autoptr(GError) err = NULL;
    EwfSet *s = ewf_set_open(&io, segs, "t", &err);
    g_assert_no_error(err);
    uint64_t open_cost = budget_used;
    g_assert_true(read_all(s, &err));
    g_assert_cmpuint(budget_used, >=, open_cost + 128 * 4);
    ewf_set_free(s);
    g_assert_cmpuint(budget_used, ==, 0);
    /* Room to open, none for the tables. */
    budget_left = open_cost;
    s = ewf_set_open(&io, segs, "t", &err);
    g_assert_no_error(err);
    g_assert_false(read_all(s, &err));
    g_assert_cmpint(err->code, ==, ENOMEM);
    g_clear_error(&err);
    ewf_set_free(s);
    g_assert_cmpuint(budget_used, ==, 0);
    /* Not even that. */
    budget_left = 100;
    g_assert_null(ewf_set_open(&io, segs, "t", &err));
    g_assert_cmpint(err->code, ==, ENOMEM);
    g_assert_cmpuint(budget_used, ==, 0);
}

/* Single bit flips anywhere: refused, or read right (every structure an
 * E01 reads is checksummed). */
static void test_flips(void)
{
    EwfGenOpts o = defaults();
    o.chunks_per_segment = 0;
    g_autoptr(GPtrArray) segs = ewf_gen(&o);
    GByteArray *b = seg(segs, 1);
    GRand *r = g_rand_new_with_seed(1);
    for (int k = 0; k < 400; k++) {
        guint at = g_rand_int_range(r, 0, (gint32)b->len);
        uint8_t bit = (uint8_t)(1u << g_rand_int_range(r, 0, 8));
        b->data[at] ^= bit;
        g_autoptr(GError) err = NULL;
        g_autoptr(EwfSet) s = open_set(segs, &err);
        if (s != NULL)
            (void)read_all(s, NULL);
        b->data[at] ^= bit;
    }
    g_rand_free(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    make_media();
    g_test_add_func("/ewf/names", test_names);
    g_test_add_func("/ewf/roundtrip", test_roundtrip);
    g_test_add_func("/ewf/metadata", test_metadata);
    g_test_add_func("/ewf/truncated", test_truncated);
    g_test_add_func("/ewf/chain", test_chain);
    g_test_add_func("/ewf/volume", test_volume);
    g_test_add_func("/ewf/tables", test_tables);
    g_test_add_func("/ewf/chunks", test_chunks);
    g_test_add_func("/ewf/budget", test_budget);
    g_test_add_func("/ewf/flips", test_flips);
    return g_test_run();
}
