/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The metadata table cache: hits, misses, eviction, shared loads and
 * errors, the generation check against stale inserts, write-back, and
 * the dependency order, single-threaded and under many threads on a
 * cache of two or three tables.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <glib.h>

#include "src/vd-error.h"
#include "src/vd-table-cache.h"

#define SLOTS      8 /* 64-bit values per table */
#define TABLE      (SLOTS * 8)
#define KEYS       6
#define THREADS    8
#define ITERATIONS 3000

/* A fake file of KEYS tables at keys 0, TABLE, 2 * TABLE... */
typedef struct Fake {
    GMutex lock;
    uint64_t disk[KEYS][SLOTS];
    gint loads, stores;
    gint fail;        /* loads fail with EIO */
    gint slow;        /* loads sleep a little, to widen races */
    GMutex gate_lock; /* with gate: a load held until opened */
    GCond gate;
    bool gate_closed;
    int in_load;              /* loads waiting at the gate */
    struct Fake *must_follow; /* stores check it first (the dependency) */
    gint order_errors;
} Fake;

static void fake_init(Fake *f)
{
    memset(f, 0, sizeof(*f));
    g_mutex_init(&f->lock);
    g_mutex_init(&f->gate_lock);
    g_cond_init(&f->gate);
}

static void fake_clear(Fake *f)
{
    g_mutex_clear(&f->lock);
    g_mutex_clear(&f->gate_lock);
    g_cond_clear(&f->gate);
}

static bool fake_load(void *opaque, uint64_t key, uint8_t *data, GError **error)
{
    Fake *f = opaque;
    g_atomic_int_inc(&f->loads);
    g_mutex_lock(&f->gate_lock);
    f->in_load++;
    g_cond_broadcast(&f->gate);
    while (f->gate_closed)
        g_cond_wait(&f->gate, &f->gate_lock);
    f->in_load--;
    g_mutex_unlock(&f->gate_lock);
    if (g_atomic_int_get(&f->slow))
        g_usleep(g_random_int_range(0, 30));
    if (g_atomic_int_get(&f->fail)) {
        vd_set_error(error, EIO, "table at %" G_GUINT64_FORMAT " unreadable", key);
        return false;
    }
    g_mutex_lock(&f->lock);
    memcpy(data, f->disk[key / TABLE], TABLE);
    g_mutex_unlock(&f->lock);
    if (g_atomic_int_get(&f->slow))
        g_usleep(g_random_int_range(0, 30));
    return true;
}

static bool fake_store(void *opaque, uint64_t key, const uint8_t *data, GError **error)
{
    (void)error;
    Fake *f = opaque;
    g_atomic_int_inc(&f->stores);
    const uint64_t *v = (const uint64_t *)data;
    if (f->must_follow != NULL) {
        /* Every value of this table must already be in the other file. */
        Fake *b = f->must_follow;
        g_mutex_lock(&b->lock);
        for (int i = 0; i < SLOTS; i++) {
            if (b->disk[key / TABLE][i] < v[i])
                g_atomic_int_inc(&f->order_errors);
        }
        g_mutex_unlock(&b->lock);
    }
    g_mutex_lock(&f->lock);
    memcpy(f->disk[key / TABLE], data, TABLE);
    g_mutex_unlock(&f->lock);
    return true;
}

static uint64_t slot_of(VdTableCache *c, uint64_t key, int slot)
{
    uint64_t v = 0;
    g_autoptr(GError) error = NULL;
    g_assert_true(vd_table_cache_read(c, key, (size_t)slot * 8, 8, &v, &error));
    g_assert_no_error(error);
    return v;
}

static void test_basic(void)
{
    Fake f;
    fake_init(&f);
    for (int k = 0; k < KEYS; k++)
        for (int i = 0; i < SLOTS; i++)
            f.disk[k][i] = (uint64_t)k * 100 + (uint64_t)i;
    VdTableCache *c = vd_table_cache_new(TABLE, 2 * TABLE, 2, fake_load, fake_store, &f);
    VdTableCacheStats st;

    g_assert_cmpuint(slot_of(c, 0, 3), ==, 3);
    g_assert_cmpuint(slot_of(c, 0, 4), ==, 4);
    g_assert_cmpint(f.loads, ==, 1);
    g_assert_cmpuint(slot_of(c, TABLE, 1), ==, 101);
    g_assert_cmpuint(slot_of(c, 2 * TABLE, 1), ==, 201);
    vd_table_cache_stats(c, &st);
    g_assert_cmpuint(st.capacity, ==, 2);
    g_assert_cmpuint(st.entries, ==, 2);
    g_assert_cmpuint(st.evictions, ==, 1);
    g_assert_cmpuint(st.loads, ==, 3);

    /* A pinned table stays whatever else comes in. */
    VdTable *t = vd_table_cache_get(c, 3 * TABLE, NULL);
    g_assert_nonnull(t);
    for (int k = 0; k < KEYS; k++)
        slot_of(c, (uint64_t)k * TABLE, 0);
    int before = f.loads;
    VdTable *again = vd_table_cache_get(c, 3 * TABLE, NULL);
    g_assert_true(again == t);
    g_assert_cmpint(f.loads, ==, before);
    vd_table_cache_put(c, again);

    /* Dirty: written back by flush only, kept until then. */
    uint64_t v = 777;
    vd_table_cache_update(c, t, 2 * 8, &v, 8);
    vd_table_cache_put(c, t);
    for (int k = 0; k < KEYS; k++)
        slot_of(c, (uint64_t)k * TABLE, 0);
    g_assert_cmpuint(f.disk[3][2], ==, 302);
    g_assert_cmpuint(slot_of(c, 3 * TABLE, 2), ==, 777);
    vd_table_cache_stats(c, &st);
    g_assert_cmpuint(st.dirty, ==, 1);
    g_assert_cmpuint(vd_table_cache_dirty_count(c), ==, 1);
    g_assert_true(vd_table_cache_pressure(c));
    g_assert_true(vd_table_cache_flush(c, NULL));
    g_assert_cmpuint(f.disk[3][2], ==, 777);
    vd_table_cache_stats(c, &st);
    g_assert_cmpuint(st.dirty, ==, 0);
    g_assert_cmpuint(vd_table_cache_dirty_count(c), ==, 0);
    g_assert_cmpuint(st.stores, ==, 1);
    g_assert_cmpuint(st.entries, <=, 2);
    g_assert_false(vd_table_cache_pressure(c));

    /* Write-through updates the cached copy; invalidate forgets it. */
    slot_of(c, 0, 0);
    v = 55;
    f.disk[0][5] = 55;
    vd_table_cache_updated(c, 0, 5 * 8, &v, 8);
    g_assert_cmpuint(slot_of(c, 0, 5), ==, 55);
    f.disk[0][6] = 66; /* behind the cache's back */
    g_assert_cmpuint(slot_of(c, 0, 6), ==, 6);
    vd_table_cache_invalidate(c, 0);
    g_assert_cmpuint(slot_of(c, 0, 6), ==, 66);
    f.disk[0][6] = 67;
    vd_table_cache_invalidate_range(c, 5, 1);
    g_assert_cmpuint(slot_of(c, 0, 6), ==, 67);
    vd_table_cache_invalidate_all(c);
    vd_table_cache_stats(c, &st);
    g_assert_cmpuint(st.entries, ==, 0);

    /* A new table is dirty at once and never read from the file. */
    before = f.loads;
    uint64_t fresh[SLOTS] = {9, 9, 9, 9, 9, 9, 9, 9};
    t = vd_table_cache_get_new(c, 4 * TABLE, fresh);
    vd_table_cache_put(c, t);
    g_assert_cmpuint(slot_of(c, 4 * TABLE, 7), ==, 9);
    g_assert_cmpint(f.loads, ==, before);
    g_assert_true(vd_table_cache_flush(c, NULL));
    g_assert_cmpuint(f.disk[4][7], ==, 9);

    /* Errors reach the caller and are not cached. */
    g_atomic_int_set(&f.fail, 1);
    g_autoptr(GError) error = NULL;
    uint64_t out;
    g_assert_false(vd_table_cache_read(c, 5 * TABLE, 0, 8, &out, &error));
    g_assert_error(error, VD_ERROR, EIO);
    g_atomic_int_set(&f.fail, 0);
    g_assert_cmpuint(slot_of(c, 5 * TABLE, 1), ==, 501);

    vd_table_cache_free(c);
    fake_clear(&f);
}

typedef struct {
    VdTableCache *c;
    bool ok;
    uint64_t value;
    GError *error;
} Miss;

static gpointer miss_thread(gpointer data)
{
    Miss *m = data;
    m->ok = vd_table_cache_read(m->c, 2 * TABLE, 8, 8, &m->value, &m->error);
    return NULL;
}

static void gate_wait_loads(Fake *f, int n)
{
    g_mutex_lock(&f->gate_lock);
    while (f->in_load < n)
        g_cond_wait(&f->gate, &f->gate_lock);
    g_mutex_unlock(&f->gate_lock);
}

static void gate_open(Fake *f)
{
    g_mutex_lock(&f->gate_lock);
    f->gate_closed = false;
    g_cond_broadcast(&f->gate);
    g_mutex_unlock(&f->gate_lock);
}

/* Wait until n - 1 threads share the load in flight. */
static void wait_shared(VdTableCache *c, unsigned n)
{
    VdTableCacheStats st;
    for (;;) {
        vd_table_cache_stats(c, &st);
        if (st.shared_loads >= n - 1)
            return;
        g_usleep(100);
    }
}

/* Concurrent misses of one key: one load, its result or error shared. */
static void run_shared_miss(bool fail)
{
    Fake f;
    fake_init(&f);
    f.disk[2][1] = 4242;
    f.fail = fail;
    f.gate_closed = true;
    VdTableCache *c = vd_table_cache_new(TABLE, 3 * TABLE, 3, fake_load, fake_store, &f);
    Miss m[THREADS];
    GThread *th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        m[i] = (Miss){.c = c};
        th[i] = g_thread_new("miss", miss_thread, &m[i]);
    }
    gate_wait_loads(&f, 1);
    wait_shared(c, THREADS);
    gate_open(&f);
    for (int i = 0; i < THREADS; i++) {
        g_thread_join(th[i]);
        g_assert_cmpint(m[i].ok, ==, !fail);
        if (fail) {
            g_assert_nonnull(m[i].error);
            g_assert_nonnull(strstr(m[i].error->message, "unreadable"));
            g_clear_error(&m[i].error);
        } else {
            g_assert_cmpuint(m[i].value, ==, 4242);
        }
    }
    g_assert_cmpint(f.loads, ==, 1);
    VdTableCacheStats st;
    vd_table_cache_stats(c, &st);
    g_assert_cmpuint(st.shared_loads, ==, THREADS - 1);
    g_assert_cmpuint(st.entries, ==, fail ? 0 : 1);
    g_assert_cmpuint(st.pinned, ==, 0);
    vd_table_cache_free(c);
    fake_clear(&f);
}

static void test_shared_miss(void)
{
    run_shared_miss(false);
}

static void test_shared_error(void)
{
    run_shared_miss(true);
}

/* The generation path, deliberately: the load is stopped after its
 * read while a writer changes the table; the stale copy must not be kept. */
typedef struct {
    Fake f;
    VdTableCache *c;
    GMutex lock;
    GCond cond;
    int phase; /* 1: the load has read; 2: the writer has changed it */
    bool invalidate;
} Held;

static bool held_load(void *opaque, uint64_t key, uint8_t *data, GError **error)
{
    Held *h = opaque;
    if (!fake_load(&h->f, key, data, error))
        return false;
    g_mutex_lock(&h->lock);
    if (h->phase == 0) {
        h->phase = 1;
        g_cond_broadcast(&h->cond);
        while (h->phase != 2)
            g_cond_wait(&h->cond, &h->lock);
    }
    g_mutex_unlock(&h->lock);
    return true;
}

static gpointer held_miss(gpointer data)
{
    Held *h = data;
    uint64_t v = 0;
    g_assert_true(vd_table_cache_read(h->c, 2 * TABLE, 8, 8, &v, NULL));
    return GSIZE_TO_POINTER((gsize)v);
}

static void test_stale_held(void)
{
    for (int invalidate = 0; invalidate < 2; invalidate++) {
        Held h;
        memset(&h, 0, sizeof(h));
        fake_init(&h.f);
        g_mutex_init(&h.lock);
        g_cond_init(&h.cond);
        h.f.disk[2][1] = 1;
        h.c = vd_table_cache_new(TABLE, 3 * TABLE, 3, held_load, fake_store, &h);
        GThread *th = g_thread_new("miss", held_miss, &h);
        g_mutex_lock(&h.lock);
        while (h.phase != 1)
            g_cond_wait(&h.cond, &h.lock);
        g_mutex_unlock(&h.lock);
        /* The load holds the old table; the writer changes it. */
        h.f.disk[2][1] = 2;
        uint64_t v = 2;
        if (invalidate)
            vd_table_cache_invalidate(h.c, 2 * TABLE);
        else
            vd_table_cache_updated(h.c, 2 * TABLE, 8, &v, 8);
        g_mutex_lock(&h.lock);
        h.phase = 2;
        g_cond_broadcast(&h.cond);
        g_mutex_unlock(&h.lock);
        g_assert_cmpuint(GPOINTER_TO_SIZE(g_thread_join(th)), ==, 2);
        g_assert_cmpuint(slot_of(h.c, 2 * TABLE, 1), ==, 2);
        VdTableCacheStats st;
        vd_table_cache_stats(h.c, &st);
        g_assert_cmpuint(st.loads, ==, 2);
        if (!invalidate)
            g_assert_cmpuint(st.stale_loads, ==, 1);
        vd_table_cache_free(h.c);
        g_mutex_clear(&h.lock);
        g_cond_clear(&h.cond);
        fake_clear(&h.f);
    }
}

/* Many threads on a tiny cache. */
typedef struct {
    VdTableCache *a, *b; /* write-back; a's tables point at b's: b is flushed first */
    VdTableCache *w;     /* write-through */
    Fake fa, fb, fw;
    GMutex write_lock; /* writers of the write-through half, one at a time */
    gsize next;        /* atomic: the last value handed out */
    gint errors;
    int id;
} Stress;

typedef struct {
    Stress *s;
    int id;
} Worker;

/* Write-through, as the read-mostly drivers do: write the file, then
 * tell the cache; reading back at once must never find an older value. */
static void write_through(Stress *s, uint64_t key, int slot)
{
    g_mutex_lock(&s->write_lock);
    uint64_t v = (uint64_t)g_atomic_pointer_add(&s->next, 1) + 1;
    g_mutex_lock(&s->fw.lock);
    s->fw.disk[key / TABLE][slot] = v;
    g_mutex_unlock(&s->fw.lock);
    vd_table_cache_updated(s->w, key, (size_t)slot * 8, &v, 8);
    if (slot_of(s->w, key, slot) != v)
        g_atomic_int_inc(&s->errors);
    g_mutex_unlock(&s->write_lock);
}

static gpointer stress_thread(gpointer data)
{
    Worker *w = data;
    Stress *s = w->s;
    uint64_t mine[KEYS] = {0}; /* what this thread last wrote to its slot of a */
    int slot = w->id;
    GRand *r = g_rand_new_with_seed((guint32)w->id);
    for (int i = 0; i < ITERATIONS; i++) {
        uint64_t key = (uint64_t)g_rand_int_range(r, 0, KEYS) * TABLE;
        switch (g_rand_int_range(r, 0, 5)) {
        case 0:
            write_through(s, key, g_rand_int_range(r, 0, SLOTS));
            break;
        case 1: {
            /* Write-back: a's slot takes a value b's table holds (dirty),
             * so b's table must reach the file first. */
            uint64_t v = (uint64_t)g_atomic_pointer_add(&s->next, 1) + 1;
            VdTable *tb = vd_table_cache_get(s->b, key, NULL);
            VdTable *t = vd_table_cache_get(s->a, key, NULL);
            if (t == NULL || tb == NULL) {
                g_atomic_int_inc(&s->errors);
                break;
            }
            vd_table_cache_update(s->b, tb, (size_t)slot * 8, &v, 8);
            vd_table_cache_put(s->b, tb);
            vd_table_cache_update(s->a, t, (size_t)slot * 8, &v, 8);
            vd_table_cache_put(s->a, t);
            mine[key / TABLE] = v;
            break;
        }
        case 2:
            if (g_rand_int_range(r, 0, 4) == 0) {
                if (!vd_table_cache_flush(s->a, NULL))
                    g_atomic_int_inc(&s->errors);
                /* Everything this thread wrote before is in the file. */
                g_mutex_lock(&s->fa.lock);
                for (int k = 0; k < KEYS; k++) {
                    if (s->fa.disk[k][slot] != mine[k])
                        g_atomic_int_inc(&s->errors);
                }
                g_mutex_unlock(&s->fa.lock);
            }
            break;
        default: {
            /* Readers: a's slot holds what this thread wrote last. */
            uint64_t v = slot_of(s->a, key, slot);
            if (v != mine[key / TABLE])
                g_atomic_int_inc(&s->errors);
            slot_of(s->b, key, g_rand_int_range(r, 0, SLOTS));
            slot_of(s->w, key, g_rand_int_range(r, 0, SLOTS));
            break;
        }
        }
    }
    g_rand_free(r);
    return NULL;
}

static void test_stress(void)
{
    Stress s;
    memset(&s, 0, sizeof(s));
    fake_init(&s.fa);
    fake_init(&s.fb);
    fake_init(&s.fw);
    g_mutex_init(&s.write_lock);
    s.fa.slow = s.fb.slow = s.fw.slow = 1;
    s.fa.must_follow = &s.fb;
    s.a = vd_table_cache_new(TABLE, 2 * TABLE, 2, fake_load, fake_store, &s.fa);
    s.b = vd_table_cache_new(TABLE, 3 * TABLE, 3, fake_load, fake_store, &s.fb);
    s.w = vd_table_cache_new(TABLE, 2 * TABLE, 2, fake_load, NULL, &s.fw);
    vd_table_cache_set_dependency(s.a, s.b);
    GThread *th[THREADS];
    Worker w[THREADS];
    G_STATIC_ASSERT(THREADS <= SLOTS); /* a slot of a and b per worker */
    for (int i = 0; i < THREADS - 1; i++) {
        w[i] = (Worker){&s, i};
        th[i] = g_thread_new("stress", stress_thread, &w[i]);
    }
    for (int i = 0; i < THREADS - 1; i++)
        g_thread_join(th[i]);
    g_assert_cmpint(s.errors, ==, 0);
    g_assert_cmpint(s.fa.order_errors, ==, 0);
    g_assert_true(vd_table_cache_flush(s.a, NULL));
    g_assert_true(vd_table_cache_flush(s.b, NULL));
    VdTableCacheStats st;
    vd_table_cache_stats(s.a, &st);
    g_assert_cmpuint(st.dirty, ==, 0);
    g_assert_cmpuint(st.pinned, ==, 0);
    g_assert_cmpuint(st.entries, <=, 2);
    g_assert_cmpuint(st.stores, >, 0);
    g_assert_cmpuint(st.evictions, >, 0);
    /* Flushed: what b caches is the file; w's always was. */
    for (int k = 0; k < KEYS; k++) {
        for (int i = 0; i < SLOTS; i++) {
            g_assert_cmpuint(slot_of(s.b, (uint64_t)k * TABLE, i), ==, s.fb.disk[k][i]);
            g_assert_cmpuint(slot_of(s.w, (uint64_t)k * TABLE, i), ==, s.fw.disk[k][i]);
        }
    }
    vd_table_cache_stats(s.w, &st);
    g_test_message("w: %" G_GUINT64_FORMAT " loads, %" G_GUINT64_FORMAT " stale, %" G_GUINT64_FORMAT
                   " shared",
                   st.loads, st.stale_loads, st.shared_loads);
    vd_table_cache_free(s.a);
    vd_table_cache_free(s.b);
    vd_table_cache_free(s.w);
    g_mutex_clear(&s.write_lock);
    fake_clear(&s.fw);
    fake_clear(&s.fa);
    fake_clear(&s.fb);
}

/* A table of a is written after what b had dirty when its bytes were
 * taken. */
static void test_dependency(void)
{
    Fake fa, fb;
    fake_init(&fa);
    fake_init(&fb);
    fa.must_follow = &fb;
    VdTableCache *a = vd_table_cache_new(TABLE, 2 * TABLE, 2, fake_load, fake_store, &fa);
    VdTableCache *b = vd_table_cache_new(TABLE, 2 * TABLE, 2, fake_load, fake_store, &fb);
    vd_table_cache_set_dependency(a, b);
    uint64_t v = 5;
    VdTable *tb = vd_table_cache_get(b, TABLE, NULL);
    vd_table_cache_update(b, tb, 0, &v, 8);
    vd_table_cache_put(b, tb);
    VdTable *ta = vd_table_cache_get(a, TABLE, NULL);
    vd_table_cache_update(a, ta, 0, &v, 8);
    vd_table_cache_put(a, ta);
    g_assert_true(vd_table_cache_flush(a, NULL));
    g_assert_cmpint(fb.stores, ==, 1);
    g_assert_cmpint(fa.stores, ==, 1);
    g_assert_cmpint(fa.order_errors, ==, 0);
    g_assert_cmpuint(fb.disk[1][0], ==, 5);
    g_assert_cmpuint(fa.disk[1][0], ==, 5);
    /* Nothing dirty in a: b is not flushed on its account. */
    tb = vd_table_cache_get(b, 0, NULL);
    vd_table_cache_mark_dirty(b, tb);
    vd_table_cache_put(b, tb);
    g_assert_true(vd_table_cache_flush(a, NULL));
    g_assert_cmpint(fb.stores, ==, 1);
    vd_table_cache_free(a);
    vd_table_cache_free(b);
    fake_clear(&fa);
    fake_clear(&fb);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/table-cache/basic", test_basic);
    g_test_add_func("/table-cache/shared-miss", test_shared_miss);
    g_test_add_func("/table-cache/shared-error", test_shared_error);
    g_test_add_func("/table-cache/stale-held", test_stale_held);
    g_test_add_func("/table-cache/dependency", test_dependency);
    g_test_add_func("/table-cache/stress", test_stress);
    return g_test_run();
}
