/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The bzip2 container: its block index (found by the block magics, to
 * the bit) reads back what was compressed, at random and across block
 * edges, for one stream, concatenated streams of other levels, and with
 * magics that are chance matches; hostile files (cut short, a flipped
 * byte, a wrong combined CRC, nothing but magics) fail with EIO naming
 * the block or stream, never with other bytes.
 */
#include "config.h"

#include <bzlib.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "sources/bzip2.h"
#include "src/vd-container.h"
#include "src/vd-error.h"
#include "src/vd-info.h"
#include "src/vd-source.h"
#include "tests/unit/test-fixtures.h"

#define MiB (1024 * 1024)

static char *dir;
static VdContext *ctx;

/* Compressible, not trivially: text-like lines mixed with noise. */
static uint8_t *make_data(size_t n, uint32_t seed)
{
    uint8_t *p = g_malloc(n);
    GRand *r = g_rand_new_with_seed(seed);
    for (size_t i = 0; i < n; i++)
        p[i] = (i / 700) % 4 == 0 ? (uint8_t)g_rand_int(r)
                                  : (uint8_t)("line of text\n"[i % 13] + seed);
    g_rand_free(r);
    return p;
}

static GByteArray *bz_compress(const uint8_t *data, size_t n, int level)
{
    unsigned cap = (unsigned)(n + n / 50 + 4096);
    GByteArray *out = g_byte_array_sized_new(cap);
    g_byte_array_set_size(out, cap);
    g_assert_cmpint(
        BZ2_bzBuffToBuffCompress((char *)out->data, &cap, (char *)data, (unsigned)n, level, 0, 0),
        ==, BZ_OK);
    g_byte_array_set_size(out, cap);
    return out;
}

static char *write_file(const char *name, const void *data, size_t n)
{
    char *path = g_build_filename(dir, name, NULL);
    tf_write_file(path, data, n);
    return path;
}

typedef TfContainer Opened;

static bool open_bytes(const char *name, const void *data, size_t n, Opened *o, GError **error)
{
    bool ok = tf_container_open(ctx, dir, name, data, n, o, error);
    g_assert_cmpstr(o->c->name, ==, "bzip2");
    return ok;
}

static void expect_open_error(const char *name, const void *data, size_t n, const char *why,
                              const char *why2)
{
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_false(open_bytes(name, data, n, &o, &err));
    g_assert_error(err, VD_ERROR, EIO);
    if (strstr(err->message, why) == NULL || (why2 != NULL && strstr(err->message, why2) == NULL))
        g_error("%s: expected an error about '%s' %s, got '%s'", name, why, why2 ? why2 : "",
                err->message);
}

static uint64_t info_u64(const Opened *o, const char *key)
{
    VdInfo *info = vd_info_new();
    o->ops->describe(o->opaque, info);
    const VdInfoEntry *e = vd_info_get(info, key);
    g_assert_nonnull(e);
    uint64_t v = e->u64;
    vd_info_free(info);
    return v;
}

/* The index of bytes, built directly, with extra (fake) magics added. */
static void index_of(const GByteArray *bz, const uint64_t *extra, guint n_extra, Bz2Index *ix)
{
    g_autofree char *path = write_file("index.bz2", bz->data, bz->len);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    g_autoptr(GArray) cands = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    g_autoptr(GError) err = NULL;
    g_assert_true(bz2_find_magics(ctx, fd, "index.bz2", bz->len, 1u << 20, cands, &err));
    for (guint i = 0; i < n_extra; i++) {
        guint k = 0;
        while (k < cands->len && g_array_index(cands, uint64_t, k) < extra[i])
            k++;
        g_array_insert_val(cands, k, extra[i]);
    }
    bool ok = bz2_index_build(ctx, fd, "index.bz2", bz->len, cands, ix, &err);
    g_assert_no_error(err);
    g_assert_true(ok);
    close(fd);
}

static const Bz2Block *blk(const Bz2Index *ix, guint i)
{
    return &g_array_index(ix->blocks, Bz2Block, i);
}

/* Whole, at random offsets out of order, and across every block edge. */
static void check_reads(const Opened *o, const GByteArray *bz, const uint8_t *want, size_t n)
{
    g_assert_cmpuint(o->size, ==, n);
    g_autofree uint8_t *got = g_malloc(n);
    g_autoptr(GError) err = NULL;
    g_assert_true(o->ops->pread(o->opaque, got, n, 0, &err));
    g_assert_no_error(err);
    g_assert_true(memcmp(got, want, n) == 0);
    GRand *r = g_rand_new_with_seed(7);
    for (int i = 0; i < 200; i++) {
        uint64_t off = (uint64_t)g_rand_double_range(r, 0, (double)n);
        uint64_t want_len = (uint64_t)g_rand_int_range(r, 1, i % 2 ? 4096 : 2 * MiB);
        size_t len = (size_t)MIN(want_len, n - off);
        g_assert_true(o->ops->pread(o->opaque, got, len, off, &err));
        g_assert_no_error(err);
        if (memcmp(got, want + off, len) != 0)
            g_error("read of %zu at %" G_GUINT64_FORMAT " differs", len, off);
    }
    g_rand_free(r);
    Bz2Index ix;
    index_of(bz, NULL, 0, &ix);
    g_assert_cmpuint(ix.size, ==, n);
    for (guint i = 1; i < ix.blocks->len; i++) {
        uint64_t edge = blk(&ix, i)->out_off;
        g_assert_cmpuint(edge, ==, blk(&ix, i - 1)->out_off + blk(&ix, i - 1)->out_len);
        for (uint64_t back = 1; back <= 4096 && back <= edge; back *= 64) {
            size_t len = (size_t)MIN(2 * back, n - (edge - back));
            g_assert_true(o->ops->pread(o->opaque, got, len, edge - back, &err));
            g_assert_no_error(err);
            if (memcmp(got, want + edge - back, len) != 0)
                g_error("read of %zu at block edge %" G_GUINT64_FORMAT " - %" G_GUINT64_FORMAT
                        " differs",
                        len, edge, back);
        }
    }
    bz2_index_clear(ctx, &ix);
}

static void test_single(void)
{
    size_t n = 5 * MiB + 4321;
    g_autofree uint8_t *data = make_data(n, 1);
    g_autoptr(GByteArray) bz = bz_compress(data, n, 9);
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes("one.img.bz2", bz->data, bz->len, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(info_u64(&o, "bzip2.streams"), ==, 1);
    g_assert_cmpuint(info_u64(&o, "bzip2.blocks"), >=, 6); /* 900 kB each */
    g_assert_cmpuint(info_u64(&o, "bzip2.level"), ==, 9);
    check_reads(&o, bz, data, n);
    o.ops->close(o.opaque);
}

/* `cat a.bz2 b.bz2 c.bz2`, of levels 1, 9 and 5, and garbage after. */
static void test_streams(void)
{
    size_t sizes[] = {700 * 1024 + 3, 2 * MiB + 77, 1};
    int levels[] = {1, 9, 5};
    g_autoptr(GByteArray) all = g_byte_array_new();
    g_autoptr(GByteArray) want = g_byte_array_new();
    for (unsigned i = 0; i < G_N_ELEMENTS(sizes); i++) {
        g_autofree uint8_t *d = make_data(sizes[i], 10 + i);
        g_autoptr(GByteArray) s = bz_compress(d, sizes[i], levels[i]);
        g_byte_array_append(all, s->data, s->len);
        g_byte_array_append(want, d, (guint)sizes[i]);
    }
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes("many.img.bz2", all->data, all->len, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(info_u64(&o, "bzip2.streams"), ==, 3);
    g_assert_cmpuint(info_u64(&o, "bzip2.level"), ==, 1);
    /* 700 kB at level 1 is several blocks. */
    g_assert_cmpuint(info_u64(&o, "bzip2.blocks"), >=, 7 + 3 + 1);
    check_reads(&o, all, want->data, want->len);
    o.ops->close(o.opaque);

    /* Bytes after the last stream that start none are ignored, as bzip2 does. */
    static const uint8_t pad[64];
    g_byte_array_append(all, pad, sizeof pad);
    g_assert_true(open_bytes("padded.img.bz2", all->data, all->len, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(o.size, ==, want->len);
    o.ops->close(o.opaque);

    /* Streams of one byte each: two magics in 37 bytes, no chance matches. */
    g_autoptr(GByteArray) tiny = g_byte_array_new();
    for (unsigned i = 0; i < 200; i++) {
        uint8_t c = (uint8_t)i;
        g_autoptr(GByteArray) one = bz_compress(&c, 1, 9);
        g_byte_array_append(tiny, one->data, one->len);
    }
    g_assert_true(open_bytes("tiny.img.bz2", tiny->data, tiny->len, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(o.size, ==, 200);
    g_assert_cmpuint(info_u64(&o, "bzip2.streams"), ==, 200);
    uint8_t b;
    g_assert_true(o.ops->pread(o.opaque, &b, 1, 123, &err));
    g_assert_cmpuint(b, ==, 123);
    o.ops->close(o.opaque);
}

/* Magics that are chance matches inside compressed data: a block cut
 * short by one is found whole again, whatever their number and kind. */
static void test_false_magics(void)
{
    size_t n = 3 * MiB;
    g_autofree uint8_t *data = make_data(n, 4);
    g_autoptr(GByteArray) bz = bz_compress(data, n, 9);
    Bz2Index want, got;
    index_of(bz, NULL, 0, &want);
    g_assert_cmpuint(want.blocks->len, >=, 3);
    /* In block 0: one block magic; in block 1 three, an end of stream
     * among them; in the last, one right after its start. */
    const Bz2Block *b0 = blk(&want, 0), *b1 = blk(&want, 1);
    const Bz2Block *bl = blk(&want, want.blocks->len - 1);
    uint64_t extra[] = {
        (b0->bit + b0->bits / 2) << 1, (b1->bit + 1000) << 1, (b1->bit + 2001) << 1 | 1,
        (b1->bit + b1->bits - 7) << 1, (bl->bit + 81) << 1,
    };
    index_of(bz, extra, G_N_ELEMENTS(extra), &got);
    g_assert_cmpuint(got.blocks->len, ==, want.blocks->len);
    g_assert_cmpuint(got.size, ==, want.size);
    for (guint i = 0; i < want.blocks->len; i++) {
        g_assert_cmpuint(blk(&got, i)->bit, ==, blk(&want, i)->bit);
        g_assert_cmpuint(blk(&got, i)->bits, ==, blk(&want, i)->bits);
        g_assert_cmpuint(blk(&got, i)->out_len, ==, blk(&want, i)->out_len);
        g_assert_cmpuint(blk(&got, i)->crc, ==, blk(&want, i)->crc);
    }
    /* Each block alone decodes to the original. */
    g_autofree char *path = write_file("alone.bz2", bz->data, bz->len);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    for (guint i = 0; i < got.blocks->len; i++) {
        const Bz2Block *b = blk(&got, i);
        g_autofree uint8_t *out = g_malloc(b->out_len);
        g_autoptr(GError) err = NULL;
        g_assert_true(bz2_block_decode(fd, "alone.bz2", i, b, out, &err));
        g_assert_no_error(err);
        g_assert_true(memcmp(out, data + b->out_off, b->out_len) == 0);
    }
    close(fd);
    bz2_index_clear(ctx, &want);
    bz2_index_clear(ctx, &got);
}

static void test_empty(void)
{
    g_autoptr(GByteArray) bz = bz_compress((const uint8_t *)"", 0, 9);
    g_assert_cmpuint(bz->len, ==, 14); /* header, end of stream, CRC 0 */
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes("empty.img.bz2", bz->data, bz->len, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(o.size, ==, 0);
    g_assert_cmpuint(info_u64(&o, "bzip2.blocks"), ==, 0);
    o.ops->close(o.opaque);
}

/* Zeros: blocks that decode to nothing else are holes, read as zeros;
 * at level 1, 5 MB each, the same block (decoded once) at other bit
 * offsets. */
static void test_zero_blocks(void)
{
    size_t n = 64 * MiB;
    g_autofree uint8_t *data = g_malloc0(n);
    memset(data, 'x', 1000);
    memset(data + n - 1000, 'y', 1000);
    g_autoptr(GByteArray) bz = bz_compress(data, n, 1);
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes("zeros.img.bz2", bz->data, bz->len, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(info_u64(&o, "bzip2.zero_blocks"), >=, 10);
    bool zero;
    uint64_t run;
    g_assert_true(o.ops->is_zero(o.opaque, 0, n, &zero, &run));
    g_assert_false(zero);
    g_assert_true(o.ops->is_zero(o.opaque, run, n - run, &zero, &run));
    g_assert_true(zero);
    g_assert_cmpuint(run, >=, 30 * MiB);
    check_reads(&o, bz, data, n);
    o.ops->close(o.opaque);
}

/* Two opens of one file share its index: the second costs no budget. */
static void test_shared(void)
{
    size_t n = 2 * MiB;
    g_autofree uint8_t *data = make_data(n, 5);
    g_autoptr(GByteArray) bz = bz_compress(data, n, 9);
    g_autofree char *path = write_file("shared.img.bz2", bz->data, bz->len);
    Opened a, b;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes("shared.img.bz2", bz->data, bz->len, &a, &err));
    uint64_t used = ctx->mem_used;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_true(vd_container_probe(bz->data, 10, bz->len)
                      ->open(ctx, fd, path, "shared.img.bz2", &b.ops, &b.opaque, &b.size, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(ctx->mem_used, ==, used);
    g_assert_cmpuint(b.size, ==, n);
    check_reads(&b, bz, data, n);
    a.ops->close(a.opaque);
    b.ops->close(b.opaque);
}

typedef struct {
    const Opened *o;
    const uint8_t *want;
    size_t n;
    unsigned seed;
} Reader;

/* Sequential runs from random places (so that blocks are decoded ahead),
 * and random reads. */
static gpointer reader_run(gpointer data)
{
    Reader *r = data;
    GRand *g = g_rand_new_with_seed(r->seed);
    g_autofree uint8_t *buf = g_malloc(256 * 1024);
    for (int i = 0; i < 12; i++) {
        uint64_t off = (uint64_t)g_rand_double_range(g, 0, (double)r->n);
        for (int k = 0; k < 8 && off < r->n; k++) {
            size_t len = (size_t)MIN((uint64_t)256 * 1024, r->n - off);
            g_autoptr(GError) err = NULL;
            if (!r->o->ops->pread(r->o->opaque, buf, len, off, &err) ||
                memcmp(buf, r->want + off, len) != 0)
                g_error("thread %u: read of %zu at %" G_GUINT64_FORMAT " failed or differs",
                        r->seed, len, off);
            off += len;
        }
    }
    g_rand_free(g);
    return NULL;
}

/* Readers side by side, with the blocks decoded ahead of them. */
static void test_concurrent(void)
{
    size_t n = 6 * MiB;
    g_autofree uint8_t *data = make_data(n, 8);
    g_autoptr(GByteArray) bz = bz_compress(data, n, 2);
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes("threads.img.bz2", bz->data, bz->len, &o, &err));
    g_assert_no_error(err);
    Reader r[4];
    GThread *t[4];
    for (unsigned i = 0; i < 4; i++) {
        r[i] = (Reader){&o, data, n, i + 1};
        t[i] = g_thread_new("reader", reader_run, &r[i]);
    }
    for (unsigned i = 0; i < 4; i++)
        g_thread_join(t[i]);
    /* Closed while blocks are still being decoded ahead. */
    g_autofree uint8_t *buf = g_malloc(MiB);
    g_assert_true(o.ops->pread(o.opaque, buf, MiB, 0, &err));
    g_assert_true(o.ops->pread(o.opaque, buf, MiB, MiB, &err));
    o.ops->close(o.opaque);
}

static void test_truncated(void)
{
    size_t n = 2 * MiB;
    g_autofree uint8_t *data = make_data(n, 6);
    g_autoptr(GByteArray) bz = bz_compress(data, n, 9);
    guint cuts[] = {bz->len / 3, bz->len - 100, bz->len - 6, bz->len - 1};
    for (unsigned i = 0; i < G_N_ELEMENTS(cuts); i++)
        expect_open_error("cut.img.bz2", bz->data, cuts[i], "cut short", NULL);
}

/* A flipped byte: in a block's recorded CRC, its data, or the stream's
 * combined CRC: EIO, naming the block (or stream). */
static void test_corrupt(void)
{
    size_t n = 3 * MiB;
    g_autofree uint8_t *data = make_data(n, 7);
    g_autoptr(GByteArray) bz = bz_compress(data, n, 9);
    Bz2Index ix;
    index_of(bz, NULL, 0, &ix);
    const Bz2Block *b1 = blk(&ix, 1);
    g_autoptr(GByteArray) c = g_byte_array_new();
    g_byte_array_append(c, bz->data, bz->len);
    c->data[(b1->bit + 60) / 8] ^= 0x10; /* inside its CRC */
    expect_open_error("crc.img.bz2", c->data, c->len, "block 1 ", "fails its CRC");
    memcpy(c->data, bz->data, bz->len);
    c->data[(b1->bit + b1->bits / 2) / 8] ^= 0x5a; /* inside its data */
    expect_open_error("data.img.bz2", c->data, c->len, "block 1 ", NULL);
    memcpy(c->data, bz->data, bz->len);
    c->data[c->len - 2] ^= 0x01; /* the combined CRC */
    expect_open_error("combined.img.bz2", c->data, c->len, "stream 0", "combined CRC");
    bz2_index_clear(ctx, &ix);
}

/* A DMG whose first chunk is bzip2 starts like a .bz2: its koly trailer
 * has it passed on as it is, for the DMG driver. */
static void test_dmg_passed_on(void)
{
    g_autofree uint8_t *d = make_data(100000, 9);
    g_autoptr(GByteArray) f = bz_compress(d, 100000, 9);
    uint8_t koly[512] = {'k', 'o', 'l', 'y', 0, 0, 0, 4, 0, 0, 2, 0};
    g_byte_array_append(f, koly, sizeof koly);
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes("disk.dmg", f->data, f->len, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(o.size, ==, f->len);
    g_assert_null(o.ops->describe);
    uint64_t host;
    g_assert_cmpint(o.ops->host_range(o.opaque, 0, o.size, &host), >=, 0);
    g_assert_cmpuint(host, ==, 0);
    uint8_t got[16];
    g_assert_true(o.ops->pread(o.opaque, got, sizeof got, f->len - 512, &err));
    g_assert_true(memcmp(got, koly, sizeof got) == 0);
    o.ops->close(o.opaque);
}

/* Nothing but magics: refused quickly, not searched through forever. */
static void test_magics_only(void)
{
    g_autoptr(GByteArray) h = g_byte_array_new();
    g_byte_array_append(h, (const uint8_t *)"BZh9", 4);
    static const uint8_t m[6] = {0x31, 0x41, 0x59, 0x26, 0x53, 0x59};
    for (int i = 0; i < 100000; i++)
        g_byte_array_append(h, m, sizeof m);
    gint64 t0 = g_get_monotonic_time();
    expect_open_error("magics.img.bz2", h->data, h->len, "bzip2", NULL);
    g_assert_cmpint(g_get_monotonic_time() - t0, <, 20 * G_USEC_PER_SEC);
    /* And a stream of blocks whose magics are right but nothing else. */
    g_byte_array_set_size(h, 4 + 6 * 40);
    g_byte_array_append(h, (const uint8_t *)"\x17\x72\x45\x38\x50\x90\0\0\0\0", 10);
    expect_open_error("magics2.img.bz2", h->data, h->len, "block 0 ", NULL);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_autoptr(GError) err = NULL;
    dir = g_dir_make_tmp("test-bzip2-XXXXXX", &err);
    g_assert_no_error(err);
    ctx = vd_context_new(dir, &err);
    g_assert_no_error(err);
    g_test_add_func("/bzip2/single", test_single);
    g_test_add_func("/bzip2/streams", test_streams);
    g_test_add_func("/bzip2/false-magics", test_false_magics);
    g_test_add_func("/bzip2/empty", test_empty);
    g_test_add_func("/bzip2/zero-blocks", test_zero_blocks);
    g_test_add_func("/bzip2/shared", test_shared);
    g_test_add_func("/bzip2/concurrent", test_concurrent);
    g_test_add_func("/bzip2/truncated", test_truncated);
    g_test_add_func("/bzip2/corrupt", test_corrupt);
    g_test_add_func("/bzip2/magics-only", test_magics_only);
    g_test_add_func("/bzip2/dmg-passed-on", test_dmg_passed_on);
    int r = g_test_run();
    vd_context_unref(ctx);
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
    (void)!system(cmd);
    g_free(dir);
    return r;
}
