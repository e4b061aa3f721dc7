/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The gzip, zstd and xz containers: their indexes (restart points,
 * frames, the seek table, xz blocks) read back what was compressed, at
 * random; and hostile
 * files (sizes that lie, data cut short, a frame that decodes past what
 * it declares) fail with EIO and a reason, never with other bytes.
 */
#include "config.h"

#include <fcntl.h>
#include <lzma.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

#include "src/vd-container.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-index-cache.h"
#include "src/vd-info.h"
#include "src/vd-interrupt.h"
#include "src/vd-source.h"
#include "tests/unit/test-fixtures.h"

#define MiB (1024 * 1024)

static char *dir;
static VdContext *ctx;

/* Compressible, not trivially: runs of a counter mixed with noise. */
static uint8_t *make_data(size_t n, uint32_t seed)
{
    uint8_t *p = g_malloc(n);
    GRand *r = g_rand_new_with_seed(seed);
    for (size_t i = 0; i < n; i++)
        p[i] = (i / 512) % 3 == 0 ? (uint8_t)g_rand_int(r) : (uint8_t)(i / 4096 + seed);
    g_rand_free(r);
    return p;
}

typedef TfContainer Opened;

/* Open bytes as a container: true, or false with error set. */
static bool open_bytes(const char *name, const void *data, size_t n, Opened *o, GError **error)
{
    return tf_container_open(ctx, dir, name, data, n, o, error);
}

static void expect_open_error(const char *name, const void *data, size_t n, const char *why)
{
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_false(open_bytes(name, data, n, &o, &err));
    g_assert_nonnull(err);
    if (strstr(err->message, why) == NULL)
        g_error("%s: expected an error about '%s', got '%s'", name, why, err->message);
}

static uint64_t info_u64(const Opened *o, const char *key)
{
    VdInfo *info = vd_info_new();
    o->ops->describe(o->opaque, info);
    const VdInfoEntry *e = vd_info_get(info, key);
    g_assert_nonnull(e);
    uint64_t v = e->type == VD_INFO_BOOL ? e->b : e->u64;
    vd_info_free(info);
    return v;
}

/* Whole, then at random offsets, out of order. */
static void check_reads(const Opened *o, const uint8_t *want, size_t n)
{
    g_assert_cmpuint(o->size, ==, n);
    g_autofree uint8_t *got = g_malloc(n);
    g_autoptr(GError) err = NULL;
    g_assert_true(o->ops->pread(o->opaque, got, n, 0, &err));
    g_assert_no_error(err);
    g_assert_true(memcmp(got, want, n) == 0);
    GRand *r = g_rand_new_with_seed(7);
    for (int i = 0; i < 64; i++) {
        uint64_t off = (uint64_t)g_rand_double_range(r, 0, (double)n);
        uint64_t want_len = (uint64_t)g_rand_int_range(r, 1, 3 * MiB); /* MIN evaluates twice */
        size_t len = (size_t)MIN(want_len, n - off);
        g_assert_true(o->ops->pread(o->opaque, got, len, off, &err));
        g_assert_no_error(err);
        if (memcmp(got, want + off, len) != 0)
            g_error("read of %zu at %" G_GUINT64_FORMAT " differs", len, off);
    }
    g_rand_free(r);
}

static void expect_read_error(const Opened *o, uint64_t off, size_t len, const char *why)
{
    g_autofree uint8_t *buf = g_malloc(len);
    g_autoptr(GError) err = NULL;
    g_assert_false(o->ops->pread(o->opaque, buf, len, off, &err));
    g_assert_error(err, VD_ERROR, EIO);
    if (why != NULL && strstr(err->message, why) == NULL)
        g_error("expected a read error about '%s', got '%s'", why, err->message);
}

/* ---- gzip ---- */

static GByteArray *gz_member(const uint8_t *data, size_t n, int level)
{
    z_stream zs = {0};
    g_assert_cmpint(deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), ==, Z_OK);
    GByteArray *out = g_byte_array_sized_new((guint)deflateBound(&zs, n));
    g_byte_array_set_size(out, (guint)deflateBound(&zs, n));
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)n;
    zs.next_out = out->data;
    zs.avail_out = out->len;
    g_assert_cmpint(deflate(&zs, Z_FINISH), ==, Z_STREAM_END);
    g_byte_array_set_size(out, (guint)zs.total_out);
    deflateEnd(&zs);
    return out;
}

/* data as one gzip member at level, opened. */
static void open_gz_member(const char *name, const uint8_t *data, size_t n, int level, Opened *o)
{
    g_autoptr(GByteArray) gz = gz_member(data, n, level);
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes(name, gz->data, gz->len, o, &err));
    g_assert_no_error(err);
}

static void test_gzip_single(void)
{
    size_t n = 12 * MiB + 12345;
    g_autofree uint8_t *data = make_data(n, 1);
    Opened o;
    open_gz_member("one.img.gz", data, n, 6, &o);
    g_assert_cmpstr(o.c->name, ==, "gzip");
    /* A point every MiB or so, the first at the start. */
    g_assert_cmpuint(info_u64(&o, "gzip.restart_points"), >=, 8);
    g_assert_cmpuint(info_u64(&o, "gzip.members"), ==, 1);
    check_reads(&o, data, n);
    o.ops->close(o.opaque);
}

static void test_gzip_members(void)
{
    size_t sizes[] = {3 * MiB + 5, 17, 5 * MiB};
    GByteArray *all = g_byte_array_new();
    g_autoptr(GByteArray) want = g_byte_array_new();
    for (unsigned i = 0; i < G_N_ELEMENTS(sizes); i++) {
        g_autofree uint8_t *d = make_data(sizes[i], 10 + i);
        g_autoptr(GByteArray) m = gz_member(d, sizes[i], i == 1 ? 0 : 9);
        g_byte_array_append(all, m->data, m->len);
        g_byte_array_append(want, d, (guint)sizes[i]);
    }
    /* Zeros after the last member are ignored, as gzip does. */
    static const uint8_t pad[64];
    g_byte_array_append(all, pad, sizeof pad);
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes("many.img.gz", all->data, all->len, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(info_u64(&o, "gzip.members"), ==, 3);
    check_reads(&o, want->data, want->len);
    o.ops->close(o.opaque);
    g_byte_array_unref(all);
}

/* A memory budget that holds a few points: fewer, farther apart, still
 * reading right. */
static void test_gzip_thinned(void)
{
    size_t n = 16 * MiB;
    g_autofree uint8_t *data = make_data(n, 3);
    g_autoptr(GByteArray) gz = gz_member(data, n, 1);
    uint64_t budget = ctx->mem_budget;
    ctx->mem_budget = ctx->mem_used + 6 * 33000;
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes("thin.img.gz", gz->data, gz->len, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(info_u64(&o, "gzip.restart_points"), <=, 6);
    g_assert_cmpuint(info_u64(&o, "gzip.restart_spacing"), >, MiB);
    check_reads(&o, data, n);
    o.ops->close(o.opaque);
    ctx->mem_budget = budget;
}

/* Restart points sit just before the windows reads decode: a read that
 * starts the decoder again inflates its window and at most about a
 * deflate block more, not up to a spacing more. */
static void test_gzip_placed(void)
{
    size_t n = 8 * MiB + 777;
    g_autofree uint8_t *data = make_data(n, 7);
    Opened o;
    open_gz_member("placed.img.gz", data, n, 6, &o);
    g_autoptr(GError) err = NULL;
    /* Backwards, so that every read starts the decoder again. */
    uint8_t buf[4096];
    for (uint64_t k = 7; k >= 1; k--) {
        uint64_t off = k * MiB + 100;
        g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, off, &err));
        g_assert_no_error(err);
        g_assert_true(memcmp(buf, data + off, sizeof buf) == 0);
    }
    /* Each read's window (256 KiB, the first of its spacing) and at most
     * one deflate block before it. */
    g_assert_cmpuint(info_u64(&o, "gzip.bytes_inflated"), <=, 7 * (256 * 1024 + 128 * 1024));
    g_assert_cmpuint(info_u64(&o, "gzip.bytes_inflated"), >=, 7 * 256 * 1024);
    check_reads(&o, data, n);
    o.ops->close(o.opaque);
}

/* A read in the last window of a spacing inflates the windows before it
 * on the way and keeps them: reading those afterwards inflates nothing
 * more, and a read in the spacing's first window, before the kept stream,
 * starts it again and inflates no more than its window and a block. */
static void test_gzip_windows_kept(void)
{
    size_t n = 4 * MiB;
    g_autofree uint8_t *data = make_data(n, 8);
    Opened o;
    open_gz_member("kept.img.gz", data, n, 6, &o);
    g_autoptr(GError) err = NULL;
    uint8_t buf[4096];
    uint64_t last = 2 * MiB + 3 * 256 * 1024 + 5000;
    g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, last, &err));
    g_assert_no_error(err);
    g_assert_true(memcmp(buf, data + last, sizeof buf) == 0);
    uint64_t after = info_u64(&o, "gzip.bytes_inflated");
    g_assert_cmpuint(after, >=, MiB);
    g_assert_cmpuint(after, <=, MiB + 128 * 1024);
    for (int w = 0; w < 3; w++) {
        uint64_t off = 2 * MiB + (uint64_t)w * 256 * 1024 + 100;
        g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, off, &err));
        g_assert_no_error(err);
        g_assert_true(memcmp(buf, data + off, sizeof buf) == 0);
    }
    g_assert_cmpuint(info_u64(&o, "gzip.bytes_inflated"), ==, after);
    g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, MiB + 100, &err));
    g_assert_no_error(err);
    g_assert_true(memcmp(buf, data + MiB + 100, sizeof buf) == 0);
    g_assert_cmpuint(info_u64(&o, "gzip.bytes_inflated"), <=, after + 256 * 1024 + 128 * 1024);
    check_reads(&o, data, n);
    o.ops->close(o.opaque);
}

typedef struct {
    const Opened *o;
    const uint8_t *want;
    size_t n;
    unsigned seed;
} GzReader;

/* Random reads of 4 KiB and of 300 KiB (across windows), each checked. */
static gpointer gz_reader_run(gpointer data)
{
    GzReader *r = data;
    GRand *g = g_rand_new_with_seed(r->seed);
    g_autofree uint8_t *buf = g_malloc(300 * 1024);
    for (int i = 0; i < 200; i++) {
        size_t want = i % 8 == 0 ? 300 * 1024 : 4096;
        uint64_t off = (uint64_t)g_rand_double_range(g, 0, (double)(r->n - want));
        g_autoptr(GError) err = NULL;
        if (!r->o->ops->pread(r->o->opaque, buf, want, off, &err) ||
            memcmp(buf, r->want + off, want) != 0)
            g_error("thread %u: read of %zu at %" G_GUINT64_FORMAT " failed or differs", r->seed,
                    want, off);
    }
    g_rand_free(g);
    return NULL;
}

/* Readers side by side on one stream: each window read whole, from the
 * cache or inflated once, whichever of them passed it first. */
static void test_gzip_concurrent(void)
{
    size_t n = 12 * MiB + 999;
    g_autofree uint8_t *data = make_data(n, 9);
    Opened o;
    open_gz_member("threads.img.gz", data, n, 6, &o);
    GzReader r[4];
    GThread *t[4];
    for (unsigned i = 0; i < 4; i++) {
        r[i] = (GzReader){&o, data, n, i + 1};
        t[i] = g_thread_new("reader", gz_reader_run, &r[i]);
    }
    for (unsigned i = 0; i < 4; i++)
        g_thread_join(t[i]);
    check_reads(&o, data, n);
    o.ops->close(o.opaque);
}

/* With a spill directory the first pass writes what it inflates there:
 * reads inflate nothing more, zero blocks are holes the source reports;
 * a directory that cannot take the file leaves the restart points. */
static void test_gzip_spill(void)
{
    size_t n = 6 * MiB + 1234;
    g_autofree uint8_t *data = make_data(n, 12);
    memset(data + 2 * MiB, 0, MiB); /* a hole to be */
    g_autofree char *spill = g_build_filename(dir, "spill", NULL);
    g_assert_cmpint(g_mkdir(spill, 0700), ==, 0);
    ctx->spill_dir = g_strdup(spill);
    Opened o;
    open_gz_member("spilled.img.gz", data, n, 6, &o);
    g_assert_cmpuint(info_u64(&o, "gzip.spilled"), ==, 1);
    check_reads(&o, data, n);
    g_assert_cmpuint(info_u64(&o, "gzip.bytes_inflated"), ==, 0);
    bool zero = false;
    uint64_t run = 0;
    g_assert_true(o.ops->is_zero(o.opaque, 2 * MiB, n - 2 * MiB, &zero, &run));
    g_assert_true(zero);
    g_assert_cmpuint(run, ==, MiB);
    g_assert_true(o.ops->is_zero(o.opaque, 0, n, &zero, &run));
    g_assert_false(zero);
    g_assert_cmpuint(run, ==, 2 * MiB);
    uint64_t host_off = 1;
    g_assert_cmpint(o.ops->host_range(o.opaque, 4096, 4096, &host_off), >=, 0);
    g_assert_cmpuint(host_off, ==, 4096);
    o.ops->close(o.opaque);
    g_clear_pointer(&ctx->spill_dir, g_free);
    /* Not a directory: given up, and the points serve. */
    ctx->spill_dir = g_build_filename(dir, "no-such-dir", NULL);
    open_gz_member("unspilled.img.gz", data, n, 6, &o);
    g_assert_cmpuint(info_u64(&o, "gzip.spilled"), ==, 0);
    g_assert_cmpuint(info_u64(&o, "gzip.restart_points"), >, 1);
    check_reads(&o, data, n);
    g_assert_cmpuint(info_u64(&o, "gzip.bytes_inflated"), >, 0);
    o.ops->close(o.opaque);
    g_clear_pointer(&ctx->spill_dir, g_free);
}

/* Opens of one file share its index; a file rewritten is indexed anew. */
static void test_gzip_shared(void)
{
    size_t n = 3 * MiB;
    g_autofree uint8_t *a = make_data(n, 40), *b = make_data(n, 41);
    g_autoptr(GByteArray) ga = gz_member(a, n, 6);
    g_autoptr(GByteArray) gb = gz_member(b, n, 6);
    Opened o1, o2;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes("shared.img.gz", ga->data, ga->len, &o1, &err));
    g_assert_no_error(err);
    g_autofree char *path = g_build_filename(dir, "shared.img.gz", NULL);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    gint64 used = ctx->mem_used;
    g_assert_true(o1.c->open(ctx, fd, path, "again", &o2.ops, &o2.opaque, &o2.size, &err));
    g_assert_no_error(err);
    g_assert_cmpint(ctx->mem_used, ==, used); /* nothing built again */
    check_reads(&o2, a, n);
    o2.ops->close(o2.opaque);
    check_reads(&o1, a, n);
    o1.ops->close(o1.opaque);
    /* Rewritten (g_file_set_contents: another inode, other times). */
    g_assert_true(open_bytes("shared.img.gz", gb->data, gb->len, &o1, &err));
    g_assert_no_error(err);
    check_reads(&o1, b, n);
    o1.ops->close(o1.opaque);
}

static void test_gzip_hostile(void)
{
    size_t n = 2 * MiB;
    g_autofree uint8_t *data = make_data(n, 4);
    g_autoptr(GByteArray) gz = gz_member(data, n, 6);
    /* ISIZE that lies (the size mod 2^32 in the trailer). */
    g_autofree uint8_t *b = g_memdup2(gz->data, gz->len);
    b[gz->len - 4] ^= 1;
    expect_open_error("isize.gz", b, gz->len, "length check");
    /* A CRC that does not match. */
    memcpy(b, gz->data, gz->len);
    b[gz->len - 8] ^= 1;
    expect_open_error("crc.gz", b, gz->len, "data check");
    /* Cut short. */
    expect_open_error("cut.gz", gz->data, gz->len / 2, "cut short");
    /* Damage in the deflate data. */
    memcpy(b, gz->data, gz->len);
    memset(b + gz->len / 3, 0xff, 64);
    expect_open_error("bad.gz", b, gz->len, "does not inflate");
    /* A second member cut short: not a silent end. */
    g_autoptr(GByteArray) two = g_byte_array_new();
    g_byte_array_append(two, gz->data, gz->len);
    g_byte_array_append(two, gz->data, gz->len / 2);
    expect_open_error("cut2.gz", two->data, two->len, "cut short");
    /* A header and nothing in it. */
    g_autoptr(GByteArray) empty = gz_member(data, 0, 6);
    expect_open_error("empty.gz", empty->data, empty->len, "no data");
}

#ifdef HAVE_ZSTD
/* ---- zstd ---- */

static void zs_append(GByteArray *out, const uint8_t *d, size_t n, int level, bool size_known)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, size_known);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    size_t cap = ZSTD_compressBound(n), at = out->len;
    g_byte_array_set_size(out, (guint)(at + cap));
    ZSTD_outBuffer ob = {out->data + at, cap, 0};
    ZSTD_inBuffer ib = {d, n, 0};
    /* Streamed, so that the pledged size is known only when asked. */
    size_t r = ZSTD_compressStream2(c, &ob, &ib, ZSTD_e_end);
    g_assert_cmpuint(r, ==, 0);
    g_byte_array_set_size(out, (guint)(at + ob.pos));
    ZSTD_freeCCtx(c);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The seekable format's table for frames (compressed, decompressed). */
static void seek_table(GByteArray *out, const uint32_t *c, const uint32_t *d, unsigned n)
{
    uint8_t h[8], e[8], f[9];
    put_le32(h, 0x184D2A5E);
    put_le32(h + 4, n * 8 + 9);
    g_byte_array_append(out, h, 8);
    for (unsigned i = 0; i < n; i++) {
        put_le32(e, c[i]);
        put_le32(e + 4, d[i]);
        g_byte_array_append(out, e, 8);
    }
    put_le32(f, n);
    f[4] = 0;
    put_le32(f + 5, 0x8F92EAB1);
    g_byte_array_append(out, f, 9);
}

static void test_zstd_frames(void)
{
    size_t sizes[] = {2 * MiB, 3 * MiB + 7, 1, 4 * MiB};
    GByteArray *z = g_byte_array_new();
    g_autoptr(GByteArray) want = g_byte_array_new();
    /* A skippable frame first, as some writers put metadata there. */
    static const uint8_t skip[12] = {0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 'm', 'e', 't', 'a'};
    g_byte_array_append(z, skip, sizeof skip);
    for (unsigned i = 0; i < G_N_ELEMENTS(sizes); i++) {
        g_autofree uint8_t *d = make_data(sizes[i], 20 + i);
        zs_append(z, d, sizes[i], 3, i != 1); /* one frame without its size */
        g_byte_array_append(want, d, (guint)sizes[i]);
    }
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes("frames.img.zst", z->data, z->len, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(o.c->name, ==, "zstd");
    g_assert_cmpuint(info_u64(&o, "zstd.frames"), ==, 4);
    g_assert_cmpuint(info_u64(&o, "zstd.seek_table"), ==, 0);
    check_reads(&o, want->data, want->len);
    o.ops->close(o.opaque);
    g_byte_array_unref(z);
}

/* One frame larger than is cached whole: streamed in windows. */
static void test_zstd_single(void)
{
    size_t n = 40 * MiB + 99;
    g_autofree uint8_t *data = make_data(n, 5);
    g_autoptr(GByteArray) z = g_byte_array_new();
    zs_append(z, data, n, 1, true);
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes("single.img.zst", z->data, z->len, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(info_u64(&o, "zstd.frames"), ==, 1);
    /* Out of order just behind the stream (read-ahead, two readers):
     * the windows it passed are there, no second start; further behind,
     * a start again. */
    uint8_t buf[4096];
    uint64_t offs[] = {20 * MiB + 4096, 17 * MiB, 19 * MiB + 100, 18 * MiB, 21 * MiB, 10 * MiB};
    for (size_t i = 0; i < G_N_ELEMENTS(offs); i++) {
        g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, offs[i], &err));
        g_assert_no_error(err);
        if (memcmp(buf, data + offs[i], sizeof buf) != 0)
            g_error("zstd stream read at %" G_GUINT64_FORMAT " differs", offs[i]);
        g_assert_cmpuint(info_u64(&o, "zstd.stream_starts"), ==, i < 5 ? 1 : 2);
    }
    check_reads(&o, data, n);
    o.ops->close(o.opaque);
}

static void test_zstd_seekable(void)
{
    enum { N = 5 };
    uint32_t c[N], d[N];
    g_autoptr(GByteArray) z = g_byte_array_new();
    g_autoptr(GByteArray) want = g_byte_array_new();
    for (unsigned i = 0; i < N; i++) {
        d[i] = MiB + i * 1000;
        g_autofree uint8_t *p = make_data(d[i], 30 + i);
        guint at = z->len;
        zs_append(z, p, d[i], 3, i % 2 == 0);
        c[i] = z->len - at;
        g_byte_array_append(want, p, d[i]);
    }
    guint frames_end = z->len;
    seek_table(z, c, d, N);
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes("seek.img.zst", z->data, z->len, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(info_u64(&o, "zstd.seek_table"), ==, 1);
    g_assert_cmpuint(info_u64(&o, "zstd.frames"), ==, N);
    check_reads(&o, want->data, want->len);
    o.ops->close(o.opaque);

    /* A table whose frames do not add up to where it starts. */
    g_byte_array_set_size(z, frames_end);
    c[2] += 1;
    seek_table(z, c, d, N);
    expect_open_error("seek-sum.zst", z->data, z->len, "seek table");
    c[2] -= 1;
    /* A table that says a frame holds less than it decodes to (frame 1
     * records no size of its own): the read of it fails. */
    g_byte_array_set_size(z, frames_end);
    d[1] -= 100;
    seek_table(z, c, d, N);
    g_assert_true(open_bytes("seek-less.img.zst", z->data, z->len, &o, &err));
    g_assert_no_error(err);
    expect_read_error(&o, d[0] + 10, 100, "more than its declared");
    /* The frames before it still read. */
    g_autofree uint8_t *buf = g_malloc(d[0]);
    g_assert_true(o.ops->pread(o.opaque, buf, d[0], 0, &err));
    g_assert_true(memcmp(buf, want->data, d[0]) == 0);
    o.ops->close(o.opaque);
    /* One that says more: the frame ends before. */
    g_byte_array_set_size(z, frames_end);
    d[1] += 200;
    seek_table(z, c, d, N);
    g_assert_true(open_bytes("seek-more.img.zst", z->data, z->len, &o, &err));
    g_assert_no_error(err);
    expect_read_error(&o, d[0], 10, "ends before");
    o.ops->close(o.opaque);
    /* And against a frame that records its size: refused at open. */
    g_byte_array_set_size(z, frames_end);
    d[1] -= 100;
    d[0] += 1;
    seek_table(z, c, d, N);
    expect_open_error("seek-fcs.zst", z->data, z->len, "records another size");
}

static void test_zstd_hostile(void)
{
    size_t n = 3 * MiB;
    g_autofree uint8_t *data = make_data(n, 6);
    g_autoptr(GByteArray) z = g_byte_array_new();
    zs_append(z, data, n, 3, true);
    g_autofree uint8_t *b = g_memdup2(z->data, z->len);
    /* A frame content size that lies (smaller, then larger): the frame
     * is indexed by it, and its read fails. */
    uint8_t fhd = b[4];
    unsigned fcs_at = 5 + ((fhd & 0x20) ? 0 : 1) + (unsigned[]){0, 1, 2, 4}[fhd & 3];
    g_assert_cmpuint(fhd >> 6, ==, 2); /* 4 bytes */
    for (int delta = -4096; delta <= 4096; delta += 8192) {
        memcpy(b, z->data, z->len);
        put_le32(b + fcs_at, (uint32_t)((int64_t)n + delta));
        Opened o;
        g_autoptr(GError) err = NULL;
        g_assert_true(open_bytes("fcs.img.zst", b, z->len, &o, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(o.size, ==, n + delta);
        expect_read_error(&o, 0, 4096, NULL);
        o.ops->close(o.opaque);
    }
    /* Cut short: the block headers run past the end. */
    expect_open_error("cut.zst", z->data, z->len / 2, "cut short");
    /* Garbage after the frames. */
    g_autoptr(GByteArray) more = g_byte_array_new();
    g_byte_array_append(more, z->data, z->len);
    g_byte_array_append(more, (const uint8_t *)"garbage!", 8);
    expect_open_error("junk.zst", more->data, more->len, "no zstd frame");
    /* A reserved block type. */
    memcpy(b, z->data, z->len);
    unsigned hsize = fcs_at + 4;
    b[hsize] |= 6;
    expect_open_error("reserved.zst", b, z->len, "reserved");
    /* A skippable frame that claims to run past the end. */
    static const uint8_t skip[12] = {0x5f, 0x2a, 0x4d, 0x18, 0xff, 0xff, 0xff, 0x0f};
    g_autoptr(GByteArray) s = g_byte_array_new();
    g_byte_array_append(s, z->data, z->len);
    g_byte_array_append(s, skip, sizeof skip);
    expect_open_error("skip.zst", s->data, s->len, "past the end");
    /* Damage inside a frame: indexed, the read fails. */
    memcpy(b, z->data, z->len);
    memset(b + z->len / 2, 0x55, 32);
    Opened o;
    g_autoptr(GError) err = NULL;
    if (open_bytes("bad.img.zst", b, z->len, &o, &err)) {
        expect_read_error(&o, 0, n, NULL);
        o.ops->close(o.opaque);
    } else
        g_assert_error(err, VD_ERROR, EIO);
}
#endif

/* ---- xz ---- */

/* An xz file of blocks of block_size (as xz -T writes them). */
static GByteArray *xz_blocks(const uint8_t *data, size_t n, uint64_t block_size)
{
    lzma_stream strm = LZMA_STREAM_INIT;
    lzma_mt mt = {.threads = 1, .block_size = block_size, .preset = 1, .check = LZMA_CHECK_CRC64};
    g_assert_cmpint(lzma_stream_encoder_mt(&strm, &mt), ==, LZMA_OK);
    GByteArray *out = g_byte_array_sized_new((guint)(n + n / 2 + 4096));
    g_byte_array_set_size(out, (guint)(n + n / 2 + 4096));
    strm.next_in = data;
    strm.avail_in = n;
    strm.next_out = out->data;
    strm.avail_out = out->len;
    g_assert_cmpint(lzma_code(&strm, LZMA_FINISH), ==, LZMA_STREAM_END);
    g_byte_array_set_size(out, (guint)strm.total_out);
    lzma_end(&strm);
    return out;
}

/* data as an xz file of 1 MiB blocks, opened. */
static void open_xz_blocks(const char *name, const uint8_t *data, size_t n, Opened *o)
{
    g_autoptr(GByteArray) xz = xz_blocks(data, n, MiB);
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes(name, xz->data, xz->len, o, &err));
    g_assert_no_error(err);
}

/* Blocks decoded in part (random reads) and whole (sequential ones), in
 * every order: always the bytes compressed. */
static void test_xz_blocks(void)
{
    size_t n = 9 * MiB + 4321;
    g_autofree uint8_t *data = make_data(n, 3);
    Opened o;
    open_xz_blocks("blocks.img.xz", data, n, &o);
    g_autoptr(GError) err = NULL;
    g_assert_cmpuint(info_u64(&o, "xz.blocks"), ==, 10);
    /* The end of a block first (decoded through it), then earlier bytes
     * of it (from the prefix), then later ones (decoded further). */
    uint8_t buf[4096];
    uint64_t offs[] = {MiB + 700 * 1024, MiB + 4096,     MiB + 64 * 1024 - 100, MiB + 900 * 1024,
                       MiB + 200 * 1024, 2 * MiB - 4096, 5 * MiB + 300 * 1024};
    for (size_t i = 0; i < G_N_ELEMENTS(offs); i++) {
        g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, offs[i], &err));
        g_assert_no_error(err);
        if (memcmp(buf, data + offs[i], sizeof buf) != 0)
            g_error("xz read at %" G_GUINT64_FORMAT " differs", offs[i]);
    }
    check_reads(&o, data, n);
    o.ops->close(o.opaque);
}

/* Many files read at random side by side: the decoders left to finish
 * their blocks in the background are bounded for the whole process
 * (XZ_COMPLETE_ALL), the others dropped; what was dropped decodes again
 * when read, right. */
static void test_xz_background_bound(void)
{
    enum { FILES = 12 };
    size_t n = 8 * MiB;
    g_autofree uint8_t *data = make_data(n, 11);
    g_autoptr(GByteArray) xz = xz_blocks(data, n, 4 * MiB);
    Opened o[FILES];
    g_autoptr(GError) err = NULL;
    uint8_t buf[4096];
    for (int i = 0; i < FILES; i++) {
        g_autofree char *name = g_strdup_printf("many%d.img.xz", i);
        g_assert_true(open_bytes(name, xz->data, xz->len, &o[i], &err));
        g_assert_no_error(err);
    }
    /* Into each block a little: a prefix now, the rest in the background. */
    for (int i = 0; i < FILES; i++) {
        for (uint64_t off = 64 * 1024; off < n; off += 4 * MiB) {
            g_assert_true(o[i].ops->pread(o[i].opaque, buf, sizeof buf, off, &err));
            g_assert_no_error(err);
            g_assert_true(memcmp(buf, data + off, sizeof buf) == 0);
        }
    }
    uint64_t dropped = 0;
    for (int i = 0; i < FILES; i++)
        dropped += info_u64(&o[i], "xz.background_dropped");
    g_test_message("dropped %u", (unsigned)dropped);
    g_assert_cmpuint(dropped, >, 0);
    for (int i = 0; i < FILES; i++) {
        for (uint64_t off = 4 * MiB - 4096; off < n; off += 4 * MiB) {
            g_assert_true(o[i].ops->pread(o[i].opaque, buf, sizeof buf, off, &err));
            g_assert_no_error(err);
            g_assert_true(memcmp(buf, data + off, sizeof buf) == 0);
        }
        o[i].ops->close(o[i].opaque);
    }
}

/* Zeros with each 4 KiB block's offset at its start: quick to compress,
 * and a read from the wrong place shows. */
static uint8_t *stamped_zeros(size_t n)
{
    uint8_t *data = g_malloc0(n);
    for (size_t i = 0; i < n; i += 4096)
        memcpy(data + i, &i, sizeof i);
    return data;
}

/* A block too big for the cache is read as a stream: reads that come
 * out of order just behind the stream's position (read-ahead, two
 * readers) find the windows it passed, without starting it again from
 * the block's start; reads far into it are costly for a probe. */
static void test_xz_stream_order(void)
{
    size_t n = 80 * MiB; /* one block, above XZ_CACHE_BLOCK */
    g_autofree uint8_t *data = stamped_zeros(n);
    g_autoptr(GByteArray) xz = xz_blocks(data, n, n);
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes("stream.img.xz", xz->data, xz->len, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(info_u64(&o, "xz.blocks"), ==, 1);
    g_assert_false(o.ops->costly_at(o.opaque, 4096));
    g_assert_true(o.ops->costly_at(o.opaque, n - 512));
    uint8_t buf[4096];
    /* Windows 20, then 15, 19, 17, 12, 21: one pass of the stream. */
    uint64_t offs[] = {20 * MiB + 12288, 15 * MiB,        19 * MiB + 4096,
                       17 * MiB,         12 * MiB + 8192, 21 * MiB};
    for (size_t i = 0; i < G_N_ELEMENTS(offs); i++) {
        g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, offs[i], &err));
        g_assert_no_error(err);
        if (memcmp(buf, data + offs[i], sizeof buf) != 0)
            g_error("xz stream read at %" G_GUINT64_FORMAT " differs", offs[i]);
    }
    g_assert_cmpuint(info_u64(&o, "xz.stream_starts"), ==, 1);
    g_assert_cmpuint(info_u64(&o, "xz.bytes_decoded"), ==, 22 * MiB);
    /* Behind what is kept: from the start again. */
    g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, 0, &err));
    g_assert_no_error(err);
    g_assert_true(memcmp(buf, data, sizeof buf) == 0);
    g_assert_cmpuint(info_u64(&o, "xz.stream_starts"), ==, 2);
    check_reads(&o, data, n);
    /* The live stream's dictionary is charged to the budget until the
     * source closes. */
    gint64 used = __atomic_load_n(&ctx->mem_used, __ATOMIC_RELAXED);
    g_assert_cmpint(used, >=, MiB);
    o.ops->close(o.opaque);
    g_assert_cmpint(__atomic_load_n(&ctx->mem_used, __ATOMIC_RELAXED), <, used);
    /* A dictionary over what the budget has left: ENOMEM, saying so. */
    g_assert_true(open_bytes("stream2.img.xz", xz->data, xz->len, &o, &err));
    uint64_t budget = ctx->mem_budget;
    ctx->mem_budget = (uint64_t)__atomic_load_n(&ctx->mem_used, __ATOMIC_RELAXED) + 64 * 1024;
    g_assert_false(o.ops->pread(o.opaque, buf, sizeof buf, 0, &err));
    g_assert_error(err, VD_ERROR, ENOMEM);
    g_assert_nonnull(strstr(err->message, "mem_budget"));
    g_clear_error(&err);
    ctx->mem_budget = budget;
    g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, 0, &err));
    g_assert_no_error(err);
    g_assert_true(memcmp(buf, data, sizeof buf) == 0);
    o.ops->close(o.opaque);
}

/* Until the file's decoded-byte count reaches want (the background
 * decoder finishing a block), at most 10 s. */
static uint64_t wait_decoded(const Opened *o, uint64_t want)
{
    uint64_t got = 0;
    for (int i = 0; i < 1000 && (got = info_u64(o, "xz.bytes_decoded")) < want; i++)
        g_usleep(10000);
    return got;
}

/* A block is decoded once however it is read: a random read's prefix
 * decode is carried on to the block's end in the background (not started
 * again), and a read further into a block whose decoder is waiting or
 * running goes on with it or waits for it. */
static void test_xz_resume(void)
{
    size_t n = 4 * MiB;
    g_autofree uint8_t *data = make_data(n, 5);
    Opened o;
    open_xz_blocks("resume.img.xz", data, n, &o);
    g_autoptr(GError) err = NULL;
    uint8_t buf[4096];
    /* Block 1 from its middle: a prefix, then the rest in the background. */
    g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, MiB + 300 * 1024, &err));
    g_assert_no_error(err);
    g_assert_true(memcmp(buf, data + MiB + 300 * 1024, sizeof buf) == 0);
    g_assert_cmpuint(wait_decoded(&o, MiB), ==, MiB);
    /* Its end now comes from the cache. */
    g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, 2 * MiB - 4096, &err));
    g_assert_no_error(err);
    g_assert_true(memcmp(buf, data + 2 * MiB - 4096, sizeof buf) == 0);
    g_assert_cmpuint(info_u64(&o, "xz.bytes_decoded"), ==, MiB);
    /* Block 2 from its middle and at once further on: the second read
     * takes the waiting decoder over or waits for the running one. */
    for (int i = 0; i < 2; i++) {
        uint64_t off = 2 * MiB + (i ? 900 : 100) * 1024;
        g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, off, &err));
        g_assert_no_error(err);
        g_assert_true(memcmp(buf, data + off, sizeof buf) == 0);
    }
    g_assert_cmpuint(wait_decoded(&o, 2 * MiB), ==, 2 * MiB);
    /* Everything, every way: each of the four blocks once. */
    check_reads(&o, data, n);
    g_assert_cmpuint(wait_decoded(&o, n), ==, n);
    o.ops->close(o.opaque);
}

/* A block whose check does not match: a random read served from a
 * prefix is decoded data that the check has not covered yet (the
 * documented price of partial decoding) until the background has decoded
 * the block to its end; from then on every read of the block fails with
 * EIO and says so, as does a read of its first bytes (decoded to the
 * block's end at once, a sequential reader's) and every read after it. */
static void test_xz_check(void)
{
    size_t n = 2 * MiB;
    g_autofree uint8_t *data = make_data(n, 4);
    g_autoptr(GByteArray) xz = xz_blocks(data, n, MiB);
    /* The stream: header (12), block 1 (header, data, padding, CRC64),
     * block 2, index, footer. Find block 1's check: the index records
     * its unpadded size; simpler, find the CRC64 of the first MiB. */
    uint64_t crc = lzma_crc64(data, MiB, 0);
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(crc >> (8 * i));
    uint8_t *at = memmem(xz->data, xz->len, le, sizeof le);
    g_assert_nonnull(at);
    at[3] ^= 0x40;
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes("badcheck.img.xz", xz->data, xz->len, &o, &err));
    g_assert_no_error(err);
    uint8_t buf[4096];
    g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, 300 * 1024, &err));
    g_assert_no_error(err);
    g_assert_true(memcmp(buf, data + 300 * 1024, sizeof buf) == 0);
    /* The background carries that decoder on to the block's end and
     * finds the check wrong: from then on the block's prefix fails too. */
    bool failed = false;
    for (int i = 0; i < 1000 && !failed; i++) {
        failed = !o.ops->pread(o.opaque, buf, sizeof buf, 300 * 1024, &err);
        if (!failed)
            g_usleep(10000);
    }
    g_assert_true(failed);
    g_assert_error(err, VD_ERROR, EIO);
    g_assert_nonnull(strstr(err->message, "check"));
    g_clear_error(&err);
    expect_read_error(&o, 0, 4096, "check");
    expect_read_error(&o, 700 * 1024, 4096, "check");
    /* The second block is whole and reads back. */
    g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, MiB, &err));
    g_assert_no_error(err);
    g_assert_true(memcmp(buf, data + MiB, sizeof buf) == 0);
    o.ops->close(o.opaque);
    /* Read from its start first (decoded to its end at once, a sequential
     * reader's): that read fails, and so do later random ones. */
    g_assert_true(open_bytes("badcheck2.img.xz", xz->data, xz->len, &o, &err));
    g_assert_no_error(err);
    expect_read_error(&o, 0, 4096, "check");
    expect_read_error(&o, 300 * 1024, 4096, "check");
    g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, MiB + 4096, &err));
    g_assert_no_error(err);
    o.ops->close(o.opaque);
}

/* A host file whose reads fail while fail is set, once allow more have
 * gone through: a disk or a network filesystem having a bad moment. */
typedef struct {
    int fd;
    int fail;  /* atomic */
    int allow; /* atomic */
} FlakyHost;

static bool flaky_pread(void *opaque, void *buf, size_t len, uint64_t off, GError **error)
{
    FlakyHost *f = opaque;
    if (g_atomic_int_get(&f->fail) && g_atomic_int_add(&f->allow, -1) <= 0) {
        vd_set_error(error, EIO, "flaky host: read of %zu at %" G_GUINT64_FORMAT " fails", len,
                     off);
        return false;
    }
    g_assert_cmpint(pread(f->fd, buf, len, (off_t)off), ==, (ssize_t)len);
    return true;
}

static void flaky_close(void *opaque)
{
    FlakyHost *f = opaque;
    close(f->fd);
}

static const VdSourceOps flaky_ops = {.name = "flaky", .pread = flaky_pread, .close = flaky_close};

/* A read that fails because the host file could not be read (at a block's
 * header, or part-way through its data) is not damage: once the host
 * reads again, so does the block, every way it is read. */
static void test_xz_host_error(void)
{
    size_t n = 3 * MiB;
    g_autofree uint8_t *data = make_data(n, 6);
    g_autoptr(GByteArray) xz = xz_blocks(data, n, MiB);
    g_autofree char *path = g_build_filename(dir, "flaky.img.xz", NULL);
    tf_write_file(path, xz->data, xz->len);
    FlakyHost f = {.fd = open(path, O_RDONLY | O_CLOEXEC)};
    g_assert_cmpint(f.fd, >=, 0);
    int pfd = open(path, O_PATH | O_CLOEXEC);
    g_assert_cmpint(pfd, >=, 0);
    vd_source_attach(pfd, &flaky_ops, &f, xz->len);
    Opened o;
    g_autoptr(GError) err = NULL;
    o.c = vd_container_probe(xz->data, VD_CONTAINER_HEAD, xz->len);
    g_assert_nonnull(o.c);
    g_assert_cmpstr(o.c->name, ==, "xz");
    g_assert_true(o.c->open(ctx, pfd, path, "flaky.img.xz", &o.ops, &o.opaque, &o.size, &err));
    g_assert_no_error(err);
    uint8_t buf[4096];
    /* Block 1 from its middle (random) and block 2 from its start
     * (sequential), each failing first at its header, then in its data. */
    uint64_t offs[] = {MiB + 300 * 1024, 2 * MiB};
    for (size_t i = 0; i < G_N_ELEMENTS(offs); i++) {
        for (int allow = 0; allow <= 2; allow += 2) {
            g_atomic_int_set(&f.allow, allow);
            g_atomic_int_set(&f.fail, 1);
            g_assert_false(o.ops->pread(o.opaque, buf, sizeof buf, offs[i], &err));
            g_assert_error(err, VD_ERROR, EIO);
            g_assert_nonnull(strstr(err->message, "flaky host"));
            g_clear_error(&err);
            g_atomic_int_set(&f.fail, 0);
        }
        g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, offs[i], &err));
        g_assert_no_error(err);
        g_assert_true(memcmp(buf, data + offs[i], sizeof buf) == 0);
    }
    check_reads(&o, data, n);
    o.ops->close(o.opaque); /* closes pfd: its number still names our source */
    vd_source_detach(pfd);
}

/* A request interrupted while its read waits on a long decode
 * (vd-interrupt.h): the read fails with EINTR after a few windows, and
 * the stream stays where it stopped, so the caller's next try goes on
 * from there instead of starting the stream again. */
static int polls_left;

static bool poll_countdown(void *data)
{
    (void)data;
    return polls_left-- <= 0;
}

static void expect_interrupted_then_resumed(const char *name, const GByteArray *file,
                                            const uint8_t *data, uint64_t off,
                                            const char *starts_key)
{
    Opened o;
    g_autoptr(GError) err = NULL;
    g_assert_true(open_bytes(name, file->data, file->len, &o, &err));
    g_assert_no_error(err);
    uint8_t buf[4096];
    polls_left = 3;
    vd_interrupt_enter(poll_countdown, NULL);
    g_assert_false(o.ops->pread(o.opaque, buf, sizeof buf, off, &err));
    vd_interrupt_leave();
    g_assert_error(err, VD_ERROR, EINTR);
    g_assert_true(vd_error_is_interrupt(err));
    g_clear_error(&err);
    g_assert_cmpint(polls_left, <, 0);
    g_assert_true(o.ops->pread(o.opaque, buf, sizeof buf, off, &err));
    g_assert_no_error(err);
    g_assert_true(memcmp(buf, data + off, sizeof buf) == 0);
    g_assert_cmpuint(info_u64(&o, starts_key), ==, 1);
    o.ops->close(o.opaque);
}

static void test_interrupt_streams(void)
{
    size_t n = 80 * MiB; /* one block, above XZ_CACHE_BLOCK */
    g_autofree uint8_t *data = stamped_zeros(n);
    g_autoptr(GByteArray) xz = xz_blocks(data, n, n);
    expect_interrupted_then_resumed("stop.img.xz", xz, data, 70 * MiB, "xz.stream_starts");
#ifdef HAVE_ZSTD
    g_autoptr(GByteArray) z = g_byte_array_new();
    zs_append(z, data, n, 1, true);
    expect_interrupted_then_resumed("stop.img.zst", z, data, 70 * MiB, "zstd.stream_starts");
#endif
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    dir = tf_tmpdir("vdtest-XXXXXX");
    g_autoptr(GError) err = NULL;
    ctx = vd_context_new(dir, &err);
    g_assert_no_error(err);
    g_test_add_func("/gzip/single", test_gzip_single);
    g_test_add_func("/gzip/members", test_gzip_members);
    g_test_add_func("/gzip/thinned", test_gzip_thinned);
    g_test_add_func("/gzip/placed", test_gzip_placed);
    g_test_add_func("/gzip/windows-kept", test_gzip_windows_kept);
    g_test_add_func("/gzip/concurrent", test_gzip_concurrent);
    g_test_add_func("/gzip/spill", test_gzip_spill);
    g_test_add_func("/gzip/shared", test_gzip_shared);
    g_test_add_func("/gzip/hostile", test_gzip_hostile);
    g_test_add_func("/xz/blocks", test_xz_blocks);
    g_test_add_func("/xz/check", test_xz_check);
    g_test_add_func("/xz/resume", test_xz_resume);
    g_test_add_func("/xz/stream-order", test_xz_stream_order);
    g_test_add_func("/xz/background-bound", test_xz_background_bound);
    g_test_add_func("/interrupt/streams", test_interrupt_streams);
#ifdef HAVE_ZSTD
    g_test_add_func("/xz/host-error", test_xz_host_error);
    g_test_add_func("/zstd/frames", test_zstd_frames);
    g_test_add_func("/zstd/single", test_zstd_single);
    g_test_add_func("/zstd/seekable", test_zstd_seekable);
    g_test_add_func("/zstd/hostile", test_zstd_hostile);
#endif
    int r = g_test_run();
    /* Every source gave back what it reserved, the gzip indexes kept for
     * the next open too once dropped. */
    vd_index_cache_drop_unused();
    g_assert_cmpint(ctx->mem_used, ==, 0);
    vd_context_unref(ctx);
    tf_rm_rf(dir);
    g_free(dir);
    return r;
}
