/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The whole-unit decoders (src/vd-inflate.c): raw deflate and zstd
 * clusters, what follows a unit ignored, units that do not fill their
 * output refused, and the per-thread decoder state shared by nobody. */
#include "config.h"

#include <string.h>
#include <zlib.h>

#include <glib.h>

#include "src/vd-inflate.h"

#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

#define UNIT 65536

static void fill_text(uint8_t *p, size_t n, unsigned seed)
{
    GRand *r = g_rand_new_with_seed(seed);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)("abcdefgh ijklmnop\n"[g_rand_int_range(r, 0, 18)]);
    g_rand_free(r);
}

/* Raw deflate (no header) of in, as qcow2 stores a cluster. */
static size_t deflate_raw(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    z_stream z = {0};
    g_assert_cmpint(deflateInit2(&z, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY), ==, Z_OK);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    g_assert_cmpint(deflate(&z, Z_FINISH), ==, Z_STREAM_END);
    size_t len = cap - z.avail_out;
    deflateEnd(&z);
    return len;
}

static void test_inflate_raw(void)
{
    g_autofree uint8_t *src = g_malloc(UNIT), *z = g_malloc(2 * UNIT), *out = g_malloc(UNIT);
    fill_text(src, UNIT, 1);
    size_t zlen = deflate_raw(src, UNIT, z, 2 * UNIT);
    /* The sector padding after the stream is not part of it. */
    memset(z + zlen, 0xa5, 511);
    size_t got = 0;
    g_assert_true(vd_inflate(VD_DEFLATE_RAW, z, zlen + 511, out, UNIT, &got));
    g_assert_cmpuint(got, ==, UNIT);
    g_assert_cmpmem(out, UNIT, src, UNIT);
    /* A stream that makes more than the room is refused. */
    g_assert_false(vd_inflate(VD_DEFLATE_RAW, z, zlen, out, UNIT / 2, &got));
    /* Cut short before the output is full. */
    g_assert_false(vd_inflate(VD_DEFLATE_RAW, z, zlen / 2, out, UNIT, &got) && got == UNIT);
}

#ifdef HAVE_ZSTD
static size_t zstd_of(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    size_t r = ZSTD_compress(out, cap, in, n, 3);
    g_assert_false(ZSTD_isError(r));
    return r;
}

static void test_unzstd_one_frame(void)
{
    g_autofree uint8_t *src = g_malloc(UNIT), *z = g_malloc(2 * UNIT), *out = g_malloc(UNIT);
    fill_text(src, UNIT, 2);
    size_t zlen = zstd_of(src, UNIT, z, 2 * UNIT);
    g_assert_true(vd_unzstd(z, zlen, out, UNIT));
    g_assert_cmpmem(out, UNIT, src, UNIT);
    /* What follows in the file (the next cluster's data) is ignored. */
    size_t zlen2 = zstd_of(src, UNIT / 2, z + zlen, 2 * UNIT - zlen);
    memset(out, 0, UNIT);
    g_assert_true(vd_unzstd(z, zlen + zlen2, out, UNIT));
    g_assert_cmpmem(out, UNIT, src, UNIT);
    memset(z + zlen, 0xee, 100);
    g_assert_true(vd_unzstd(z, zlen + 100, out, UNIT));
    g_assert_cmpmem(out, UNIT, src, UNIT);
}

static void test_unzstd_frames(void)
{
    g_autofree uint8_t *src = g_malloc(UNIT), *z = g_malloc(2 * UNIT), *out = g_malloc(UNIT);
    fill_text(src, UNIT, 3);
    /* The cluster in three frames, one after another. */
    size_t a = zstd_of(src, 10000, z, 2 * UNIT);
    size_t b = zstd_of(src + 10000, 30000, z + a, 2 * UNIT - a);
    size_t c = zstd_of(src + 40000, UNIT - 40000, z + a + b, 2 * UNIT - a - b);
    g_assert_true(vd_unzstd(z, a + b + c, out, UNIT));
    g_assert_cmpmem(out, UNIT, src, UNIT);
    /* Two of the three do not fill it. */
    g_assert_false(vd_unzstd(z, a + b, out, UNIT));
}

static void test_unzstd_bad(void)
{
    g_autofree uint8_t *src = g_malloc(2 * UNIT), *z = g_malloc(4 * UNIT), *out = g_malloc(UNIT);
    fill_text(src, 2 * UNIT, 4);
    /* A frame of more than the cluster: its first cluster, as QEMU's
     * stream decode reads it. */
    size_t zlen = zstd_of(src, 2 * UNIT, z, 4 * UNIT);
    g_assert_true(vd_unzstd(z, zlen, out, UNIT));
    g_assert_cmpmem(out, UNIT, src, UNIT);
    /* A frame cut short before the cluster is full. */
    zlen = zstd_of(src, UNIT, z, 4 * UNIT);
    g_assert_false(vd_unzstd(z, zlen / 3, out, UNIT));
    /* Not zstd at all. */
    memset(z, 0x42, 4096);
    g_assert_false(vd_unzstd(z, 4096, out, UNIT));
    g_assert_false(vd_unzstd(z, 0, out, UNIT));
    /* The thread's context is still good after the failures. */
    fill_text(src, UNIT, 5);
    zlen = zstd_of(src, UNIT, z, 4 * UNIT);
    g_assert_true(vd_unzstd(z, zlen, out, UNIT));
    g_assert_cmpmem(out, UNIT, src, UNIT);
}

typedef struct {
    unsigned seed;
    gboolean ok;
} ThreadArg;

static gpointer decode_thread(gpointer data)
{
    ThreadArg *a = data;
    g_autofree uint8_t *src = g_malloc(UNIT), *z = g_malloc(2 * UNIT), *out = g_malloc(UNIT);
    a->ok = TRUE;
    for (unsigned i = 0; i < 50 && a->ok; i++) {
        fill_text(src, UNIT, a->seed * 1000 + i);
        size_t zlen = ZSTD_compress(z, 2 * UNIT, src, UNIT, 1);
        size_t dlen = deflate_raw(src, UNIT, z + zlen, 2 * UNIT - zlen);
        size_t got = 0;
        a->ok = vd_unzstd(z, zlen, out, UNIT) && memcmp(out, src, UNIT) == 0 &&
                vd_inflate(VD_DEFLATE_RAW, z + zlen, dlen, out, UNIT, &got) && got == UNIT &&
                memcmp(out, src, UNIT) == 0;
    }
    return NULL;
}

static void test_threads(void)
{
    ThreadArg args[4];
    GThread *t[4];
    for (unsigned i = 0; i < 4; i++) {
        args[i].seed = i + 10;
        t[i] = g_thread_new("decode", decode_thread, &args[i]);
    }
    for (unsigned i = 0; i < 4; i++) {
        g_thread_join(t[i]);
        g_assert_true(args[i].ok);
    }
}
#endif

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/inflate/raw", test_inflate_raw);
#ifdef HAVE_ZSTD
    g_test_add_func("/inflate/zstd-one-frame", test_unzstd_one_frame);
    g_test_add_func("/inflate/zstd-frames", test_unzstd_frames);
    g_test_add_func("/inflate/zstd-bad", test_unzstd_bad);
    g_test_add_func("/inflate/threads", test_threads);
#endif
    return g_test_run();
}
