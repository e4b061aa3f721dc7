/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <stdbool.h>
#include <string.h>

#include "src/vd-ro-cache.h"
#include "src/vd-error.h"
#include "src/vd-interrupt.h"
#include "src/vd-stream.h"

/* A decoder that counts its calls: chunk key is 64 bytes of the key's low
 * byte, made after sleep_usec; keys in fail_key fail; with
 * interrupt_first, the first call is stopped as if its request had been
 * interrupted. */
typedef struct {
    gint decodes;
    gulong sleep_usec;
    int64_t fail_key;
    bool interrupt_first;
} Decoder;

static GBytes *decode(gpointer user, uint64_t key, GError **error)
{
    Decoder *d = user;
    int nth = g_atomic_int_add(&d->decodes, 1) + 1;
    if (d->sleep_usec)
        g_usleep(d->sleep_usec);
    if (d->interrupt_first && nth == 1) {
        vd_set_error(error, EINTR, "chunk %" G_GUINT64_FORMAT ": stopped", key);
        return NULL;
    }
    if ((int64_t)key == d->fail_key) {
        vd_set_error(error, EIO, "chunk %" G_GUINT64_FORMAT " is corrupt", key);
        return NULL;
    }
    uint8_t *p = g_malloc(64);
    memset(p, (int)(key & 0xff), 64);
    return g_bytes_new_take(p, 64);
}

static bool holds(GBytes *b, uint64_t key)
{
    gsize n;
    const uint8_t *p = g_bytes_get_data(b, &n);
    for (gsize i = 0; i < n; i++) {
        if (p[i] != (key & 0xff))
            return false;
    }
    return n == 64;
}

typedef struct {
    VdRoCache *cache;
    Decoder *dec;
    uint64_t key;
    unsigned rounds;
    GBytes *got;
    GError *error;
} Reader;

static gpointer read_once(gpointer data)
{
    Reader *r = data;
    r->got = vd_ro_cache_fetch(r->cache, r->key, decode, r->dec, &r->error);
    return NULL;
}

/* n readers at once, of key + stride * i (results left in r). */
static void read_together(VdRoCache *c, Decoder *dec, uint64_t key, uint64_t stride, Reader *r,
                          int n)
{
    GThread *t[32];
    g_assert_cmpint(n, <=, 32);
    for (int i = 0; i < n; i++) {
        r[i] = (Reader){.cache = c, .dec = dec, .key = key + stride * (uint64_t)i};
        t[i] = g_thread_new("reader", read_once, &r[i]);
    }
    for (int i = 0; i < n; i++)
        g_thread_join(t[i]);
}

/* Readers of one chunk that is being decoded wait for that decode. */
static void test_single_flight(void)
{
    Decoder dec = {.sleep_usec = 200000, .fail_key = -1};
    VdRoCache *c = vd_ro_cache_new(0, 64);
    Reader r[8];
    read_together(c, &dec, 7, 0, r, 8);
    g_assert_cmpint(dec.decodes, ==, 1);
    for (int i = 0; i < 8; i++) {
        g_assert_no_error(r[i].error);
        g_assert_true(r[i].got == r[0].got); /* the very same chunk */
        g_assert_true(holds(r[i].got, 7));
        g_bytes_unref(r[i].got);
    }
    /* Cached now. */
    GBytes *b = vd_ro_cache_fetch(c, 7, decode, &dec, NULL);
    g_assert_true(holds(b, 7));
    g_bytes_unref(b);
    g_assert_cmpint(dec.decodes, ==, 1);
    vd_ro_cache_free(c);
}

/* A failed decode fails every reader that waited for it, and is not
 * cached: the next reader tries again. */
static void test_single_flight_error(void)
{
    Decoder dec = {.sleep_usec = 200000, .fail_key = 3};
    VdRoCache *c = vd_ro_cache_new(0, 64);
    Reader r[8];
    read_together(c, &dec, 3, 0, r, 8);
    g_assert_cmpint(dec.decodes, ==, 1);
    for (int i = 0; i < 8; i++) {
        g_assert_null(r[i].got);
        g_assert_error(r[i].error, VD_ERROR, EIO);
        g_assert_cmpstr(r[i].error->message, ==, "chunk 3 is corrupt");
        g_clear_error(&r[i].error);
    }
    GError *err = NULL;
    dec.sleep_usec = 0;
    g_assert_null(vd_ro_cache_fetch(c, 3, decode, &dec, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);
    g_assert_cmpint(dec.decodes, ==, 2);
    vd_ro_cache_free(c);
}

/* A decode stopped for its own reader's request (EINTR, vd-interrupt.h)
 * fails that reader only: the others waiting for it decode it again. */
static void test_single_flight_interrupted(void)
{
    Decoder dec = {.sleep_usec = 200000, .fail_key = -1, .interrupt_first = true};
    VdRoCache *c = vd_ro_cache_new(0, 64);
    Reader r[8];
    read_together(c, &dec, 5, 0, r, 8);
    g_assert_cmpint(dec.decodes, ==, 2);
    int stopped = 0;
    for (int i = 0; i < 8; i++) {
        if (r[i].got == NULL) {
            g_assert_error(r[i].error, VD_ERROR, EINTR);
            g_clear_error(&r[i].error);
            stopped++;
            continue;
        }
        g_assert_no_error(r[i].error);
        g_assert_true(holds(r[i].got, 5));
        g_bytes_unref(r[i].got);
    }
    g_assert_cmpint(stopped, ==, 1);
    vd_ro_cache_free(c);
}

/* A stream whose byte at offset p is p's window number: counts what it
 * decodes and into where. */
typedef struct {
    uint64_t pos;
    unsigned decodes, kept;
} FakeStream;

static bool fake_decode(gpointer user, uint8_t *out, uint64_t len, GError **error)
{
    (void)error;
    FakeStream *f = user;
    if (out != NULL) {
        memset(out, (int)(f->pos / 64), len);
        f->kept++;
    }
    f->pos += len;
    f->decodes++;
    return true;
}

static int polls_left;

static bool poll_countdown(void *data)
{
    (void)data;
    return polls_left-- <= 0;
}

/* vd_stream_pass: the windows on the way are decoded, the last keep of
 * them that the cache lacks put there; an interrupt stops it between
 * windows, the position kept. */
static void test_stream_pass(void)
{
    VdRoCache *c = vd_ro_cache_new(16 * 64, 64);
    FakeStream f = {0};
    VdStreamWindows sw = {
        .cache = c, .window = 64, .keep = 3, .decode = fake_decode, .user = &f, .name = "fake"};
    uint64_t pos = 0;
    bool stopped = true;
    GError *err = NULL;
    g_assert_true(vd_stream_pass(&sw, &pos, 10 * 64, &stopped, &err));
    g_assert_no_error(err);
    g_assert_false(stopped);
    g_assert_cmpuint(pos, ==, 10 * 64);
    g_assert_cmpuint(f.decodes, ==, 10);
    g_assert_cmpuint(f.kept, ==, 3);
    for (uint64_t w = 0; w < 10; w++) {
        GBytes *b = vd_ro_cache_get(c, w * 64);
        g_assert_true((b != NULL) == (w >= 7));
        if (b != NULL) {
            g_assert_cmpuint(((const uint8_t *)g_bytes_get_data(b, NULL))[0], ==, w);
            g_bytes_unref(b);
        }
    }
    /* Kept already (8 and 9): passed over, not decoded into again. */
    f = (FakeStream){.pos = 6 * 64};
    pos = 6 * 64;
    g_assert_true(vd_stream_pass(&sw, &pos, 11 * 64, &stopped, &err));
    g_assert_cmpuint(f.decodes, ==, 5);
    g_assert_cmpuint(f.kept, ==, 1);
    /* Stopped after two windows: where it got to. */
    f = (FakeStream){.pos = 20 * 64};
    pos = 20 * 64;
    polls_left = 2;
    vd_interrupt_enter(poll_countdown, NULL);
    g_assert_false(vd_stream_pass(&sw, &pos, 30 * 64, &stopped, &err));
    vd_interrupt_leave();
    g_assert_error(err, VD_ERROR, EINTR);
    g_clear_error(&err);
    g_assert_true(stopped);
    g_assert_cmpuint(pos, ==, 22 * 64);
    g_assert_cmpuint(f.pos, ==, pos);
    vd_ro_cache_free(c);
}

static gpointer read_rounds(gpointer data)
{
    Reader *r = data;
    for (unsigned i = 0; i < r->rounds; i++) {
        GBytes *b = vd_ro_cache_fetch(r->cache, r->key, decode, r->dec, &r->error);
        g_assert_true(b != NULL && holds(b, r->key));
        g_bytes_unref(b);
        g_usleep(100);
    }
    return NULL;
}

/* More concurrent readers than the floor, each on its own chunk: the cache
 * grows to one chunk per reader, each decoded once (the floor of 2 alone
 * decoded a chunk again for almost every read). */
static void test_concurrent_readers(void)
{
    Decoder dec = {.sleep_usec = 100000, .fail_key = -1};
    VdRoCache *c = vd_ro_cache_new(0, 64);
    g_assert_cmpuint(vd_ro_cache_capacity(c), ==, 2);
    Reader r[8];
    GThread *t[8];
    for (int i = 0; i < 8; i++) {
        r[i] = (Reader){.cache = c, .dec = &dec, .key = 100 + i, .rounds = 200};
        t[i] = g_thread_new("reader", read_rounds, &r[i]);
    }
    for (int i = 0; i < 8; i++)
        g_thread_join(t[i]);
    g_assert_cmpint(dec.decodes, ==, 8);
    g_assert_cmpuint(vd_ro_cache_capacity(c), >=, 8);
    g_assert_cmpuint(vd_ro_cache_entries(c), ==, 8);
    vd_ro_cache_free(c);
}

/* Readers taking turns (one thread, so never two decodes at once): chunks
 * that come back soon after their eviction grow the cache. */
static void test_serial_thrash(void)
{
    Decoder dec = {.fail_key = -1};
    VdRoCache *c = vd_ro_cache_new(0, 64);
    for (int round = 0; round < 30; round++) {
        for (uint64_t k = 0; k < 6; k++) {
            GBytes *b = vd_ro_cache_fetch(c, k, decode, &dec, NULL);
            g_assert_true(holds(b, k));
            g_bytes_unref(b);
        }
    }
    /* 180 with a fixed cache of 2. */
    g_assert_cmpint(dec.decodes, <=, 16);
    g_assert_cmpuint(vd_ro_cache_capacity(c), >=, 6);
    vd_ro_cache_free(c);
}

/* reads random fetches over chunks chunks: afterwards the cache holds
 * every one, and a pass over them all decodes nothing. */
static void random_reads_fit(uint64_t chunks, int reads, guint32 seed)
{
    Decoder dec = {.fail_key = -1};
    VdRoCache *c = vd_ro_cache_new(0, 64);
    GRand *r = g_rand_new_with_seed(seed);
    for (int i = 0; i < reads; i++) {
        uint64_t k = (uint64_t)g_rand_int_range(r, 0, (gint32)chunks);
        GBytes *b = vd_ro_cache_fetch(c, k, decode, &dec, NULL);
        g_assert_true(holds(b, k));
        g_bytes_unref(b);
    }
    g_assert_cmpuint(vd_ro_cache_entries(c), ==, chunks);
    int before = dec.decodes;
    for (uint64_t k = 0; k < chunks; k++) {
        GBytes *b = vd_ro_cache_fetch(c, k, decode, &dec, NULL);
        g_assert_true(holds(b, k));
        g_bytes_unref(b);
    }
    g_assert_cmpint(dec.decodes, ==, before);
    g_rand_free(r);
    vd_ro_cache_free(c);
}

/* Random reads over more chunks than the old 256-slot limit (a
 * compressed container's windows): the cache grows to hold them all, its
 * keys found by their hash, and the reads stop decoding. */
static void test_random_grows_past_256(void)
{
    random_reads_fit(1000, 40000, 7);
}

/* A random reader over 256 chunks from a floor of 8 (a gzip or xz file
 * of 256 MiB, cold): the cache grows fast enough that few chunks are
 * decoded twice on the way (growing by 1/128 of itself a ghost hit, 1.8
 * decodes a chunk; by 1/8, 1.2). */
static void test_random_grows_fast(void)
{
    Decoder dec = {.fail_key = -1};
    VdRoCache *c = vd_ro_cache_new(8 * 64, 64);
    GRand *r = g_rand_new_with_seed(5);
    for (int i = 0; i < 3000; i++) {
        uint64_t k = (uint64_t)g_rand_int_range(r, 0, 256);
        GBytes *b = vd_ro_cache_fetch(c, k, decode, &dec, NULL);
        g_assert_true(holds(b, k));
        g_bytes_unref(b);
    }
    g_assert_cmpuint(vd_ro_cache_entries(c), ==, 256);
    g_assert_cmpint(dec.decodes, <=, 256 * 3 / 2);
    g_rand_free(r);
    vd_ro_cache_free(c);
}

/* Past the old bound of 4096 entries and 1024 remembered evictions:
 * random reads over 12,000 chunks fit within twenty reads per chunk, the
 * cache growing in proportion to its size (with 1024 ghosts it would
 * take far longer, with 4096 entries never). */
static void test_random_grows_to_12000(void)
{
    random_reads_fit(12000, 20 * 12000, 11);
}

static void fill_concurrently(VdRoCache *c, Decoder *dec, uint64_t first, int n)
{
    Reader r[32];
    read_together(c, dec, first, 1, r, n);
    for (int i = 0; i < n; i++) {
        g_assert_no_error(r[i].error);
        g_bytes_unref(r[i].got);
    }
}

/* Entries above the floors of all caches come from one pool. */
static void test_shared_bound(void)
{
    uint64_t limit = vd_ro_cache_shared_limit();
    g_assert_cmpuint(limit, >, 0);
    g_assert_cmpuint(limit, <=, 512ull << 20);
    /* Each entry is charged the unit, whatever its real size. */
    uint64_t unit = limit / 4;
    Decoder dec = {.sleep_usec = 100000, .fail_key = -1};
    VdRoCache *a = vd_ro_cache_new(0, unit);
    fill_concurrently(a, &dec, 0, 16);
    g_assert_cmpint(dec.decodes, ==, 16);
    g_assert_cmpuint(vd_ro_cache_entries(a), ==, 2 + 4);

    /* The pool is spent: another cache keeps to its floor. */
    VdRoCache *b = vd_ro_cache_new(0, unit);
    fill_concurrently(b, &dec, 100, 8);
    g_assert_cmpuint(vd_ro_cache_entries(b), ==, 2);

    /* Freeing the first gives its share back. */
    vd_ro_cache_free(a);
    fill_concurrently(b, &dec, 200, 8);
    g_assert_cmpuint(vd_ro_cache_entries(b), ==, 2 + 4);
    vd_ro_cache_free(b);
}

/* Once the readers are gone, entries above the floor go too. */
static void test_shrink(void)
{
    Decoder dec = {.sleep_usec = 50000, .fail_key = -1};
    VdRoCache *c = vd_ro_cache_new(0, 64);
    fill_concurrently(c, &dec, 0, 8);
    g_assert_cmpuint(vd_ro_cache_entries(c), ==, 8);
    /* One reader stays: many uses of its chunk, then two quiet seconds. */
    for (int i = 0; i < 200; i++)
        g_bytes_unref(vd_ro_cache_fetch(c, 0, decode, &dec, NULL));
    g_usleep(2100 * 1000);
    g_bytes_unref(vd_ro_cache_fetch(c, 0, decode, &dec, NULL));
    g_assert_cmpuint(vd_ro_cache_entries(c), ==, 2);
    g_assert_cmpuint(vd_ro_cache_capacity(c), ==, 2);
    g_assert_cmpint(dec.decodes, ==, 8);
    GBytes *b = vd_ro_cache_get(c, 0);
    g_assert_nonnull(b); /* the one in use stayed */
    g_bytes_unref(b);
    vd_ro_cache_free(c);
}

typedef struct {
    VdRoCache *cache;
    Decoder *dec;
    guint32 seed;
} Stress;

static gpointer stress_one(gpointer data)
{
    Stress *s = data;
    GRand *rnd = g_rand_new_with_seed(s->seed);
    for (int i = 0; i < 3000; i++) {
        uint64_t key = (uint64_t)g_rand_int_range(rnd, 0, 24);
        GError *err = NULL;
        GBytes *b = vd_ro_cache_fetch(s->cache, key, decode, s->dec, &err);
        if (key == 13) {
            g_assert_null(b);
            g_assert_error(err, VD_ERROR, EIO);
            g_clear_error(&err);
            continue;
        }
        g_assert_no_error(err);
        g_assert_true(holds(b, key));
        g_bytes_unref(b);
        if (i % 97 == 0) {
            GBytes *got = vd_ro_cache_get(s->cache, key);
            if (got != NULL) {
                g_assert_true(holds(got, key));
                g_bytes_unref(got);
            }
        }
    }
    g_rand_free(rnd);
    return NULL;
}

/* Many readers, random chunks, failures among them: every read sees its
 * own chunk (run under the sanitizer build too). */
static void test_stress(void)
{
    Decoder dec = {.fail_key = 13};
    VdRoCache *c = vd_ro_cache_new(4 * 64, 64);
    Stress s[8];
    GThread *t[8];
    for (int i = 0; i < 8; i++) {
        s[i] = (Stress){.cache = c, .dec = &dec, .seed = (guint32)i + 1};
        t[i] = g_thread_new("stress", stress_one, &s[i]);
    }
    for (int i = 0; i < 8; i++)
        g_thread_join(t[i]);
    g_assert_cmpint(dec.decodes, >=, 23);
    g_assert_cmpuint(vd_ro_cache_entries(c), <=, 256);
    vd_ro_cache_free(c);
}

/* get/put keep working for callers that decode themselves (cloop). */
static void test_get_put(void)
{
    Decoder dec = {.fail_key = -1};
    VdRoCache *c = vd_ro_cache_new(2 * 64, 64);
    g_assert_null(vd_ro_cache_get(c, 1));
    for (uint64_t k = 1; k <= 3; k++) {
        GBytes *b = decode(&dec, k, NULL);
        vd_ro_cache_put(c, k, b);
        g_bytes_unref(b);
    }
    g_assert_cmpuint(vd_ro_cache_entries(c), ==, 2);
    g_assert_null(vd_ro_cache_get(c, 1)); /* least recently used */
    GBytes *b = vd_ro_cache_get(c, 3);
    g_assert_true(holds(b, 3));
    g_bytes_unref(b);
    vd_ro_cache_free(c);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/ro-cache/single-flight", test_single_flight);
    g_test_add_func("/ro-cache/single-flight-error", test_single_flight_error);
    g_test_add_func("/ro-cache/single-flight-interrupted", test_single_flight_interrupted);
    g_test_add_func("/ro-cache/stream-pass", test_stream_pass);
    g_test_add_func("/ro-cache/concurrent-readers", test_concurrent_readers);
    g_test_add_func("/ro-cache/serial-thrash", test_serial_thrash);
    g_test_add_func("/ro-cache/shared-bound", test_shared_bound);
    g_test_add_func("/ro-cache/random-grows-past-256", test_random_grows_past_256);
    g_test_add_func("/ro-cache/random-grows-to-12000", test_random_grows_to_12000);
    g_test_add_func("/ro-cache/random-grows-fast", test_random_grows_fast);
    g_test_add_func("/ro-cache/shrink", test_shrink);
    g_test_add_func("/ro-cache/stress", test_stress);
    g_test_add_func("/ro-cache/get-put", test_get_put);
    return g_test_run();
}
