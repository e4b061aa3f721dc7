/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2: a bounded cache of cluster-sized tables (L2 tables, refcount
 * blocks). Readers look tables up under a read lock; a miss loads the
 * table outside any lock and inserts it under the write lock. Dirty and
 * pinned tables are never evicted, so the bytes readers see are always
 * at least as new as the file's.
 */
#include "config.h"

#include <string.h>

#include "formats/qcow2.h"
#include "src/vd-brlock.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

struct Qcow2Cache {
    VdBrLock lock;      /* readers on different threads share no lock word */
    GHashTable *tables; /* &table->offset -> Qcow2Table *; under lock */
    unsigned max;       /* soft limit: dirty and pinned tables may exceed it */
    uint64_t cluster_size;
    gint64 tick;    /* LRU clock (vd_lru_touch) */
    uint64_t gen;   /* under lock: bumped whenever a table leaves the cache */
    unsigned dirty; /* under lock */
};

static void table_free(gpointer p)
{
    Qcow2Table *t = p;
    g_free(t->data);
    g_free(t);
}

Qcow2Cache *qcow2_cache_new(const Qcow2State *s, uint64_t max_bytes)
{
    Qcow2Cache *c = g_new0(Qcow2Cache, 1);
    vd_brlock_init(&c->lock);
    c->tables = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, table_free);
    c->cluster_size = s->cluster_size;
    uint64_t n = max_bytes / s->cluster_size;
    c->max = (unsigned)CLAMP(n, 8, 65536);
    return c;
}

void qcow2_cache_free(Qcow2Cache *c)
{
    if (c == NULL)
        return;
    g_hash_table_unref(c->tables);
    vd_brlock_clear(&c->lock);
    g_free(c);
}

void qcow2_cache_rdlock(Qcow2Cache *c)
{
    vd_brlock_rdlock(&c->lock);
}

void qcow2_cache_rdunlock(Qcow2Cache *c)
{
    vd_brlock_rdunlock(&c->lock);
}

void qcow2_cache_wrlock(Qcow2Cache *c)
{
    vd_brlock_wrlock(&c->lock);
}

void qcow2_cache_wrunlock(Qcow2Cache *c)
{
    vd_brlock_wrunlock(&c->lock);
}

Qcow2Table *qcow2_cache_find(Qcow2Cache *c, uint64_t offset)
{
    Qcow2Table *t = g_hash_table_lookup(c->tables, &offset);
    if (t != NULL)
        vd_lru_touch(&t->last_use, &c->tick);
    return t;
}

/* Make room for one more table (write lock held). */
static void cache_evict(Qcow2Cache *c)
{
    while (g_hash_table_size(c->tables) >= c->max) {
        GHashTableIter it;
        gpointer k, v;
        Qcow2Table *victim = NULL;
        g_hash_table_iter_init(&it, c->tables);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            Qcow2Table *t = v;
            if (t->pins > 0 || t->dirty)
                continue;
            if (victim == NULL || t->last_use < victim->last_use)
                victim = t;
        }
        if (victim == NULL)
            return; /* everything is dirty or pinned: grow for now */
        g_hash_table_remove(c->tables, &victim->offset);
        c->gen++;
    }
}

static Qcow2Table *cache_insert(Qcow2Cache *c, uint64_t offset, uint8_t *data)
{
    cache_evict(c);
    Qcow2Table *t = g_new0(Qcow2Table, 1);
    t->offset = offset;
    t->data = data;
    t->last_use = vd_lru_insert_stamp(&c->tick);
    g_hash_table_insert(c->tables, &t->offset, t);
    return t;
}

bool qcow2_cache_load_wrlocked(Qcow2State *s, Qcow2Cache *c, int fd, uint64_t offset,
                               Qcow2Table **out, GError **error)
{
    for (;;) {
        vd_brlock_rdlock(&c->lock);
        uint64_t gen0 = c->gen;
        bool present = g_hash_table_contains(c->tables, &offset);
        vd_brlock_rdunlock(&c->lock);

        g_autofree uint8_t *buf = NULL;
        if (!present) {
            buf = g_malloc(c->cluster_size);
            if (!vd_host_pread(fd, s->name, buf, c->cluster_size, offset, true, error))
                return false;
        }
        vd_brlock_wrlock(&c->lock);
        Qcow2Table *t = qcow2_cache_find(c, offset);
        if (t != NULL) {
            *out = t;
            return true;
        }
        if (buf != NULL && c->gen == gen0) {
            /* Nothing left the cache while we read: the file's copy is current. */
            *out = cache_insert(c, offset, g_steal_pointer(&buf));
            return true;
        }
        vd_brlock_wrunlock(&c->lock);
    }
}

Qcow2Table *qcow2_cache_insert_new(Qcow2Cache *c, uint64_t offset, const uint8_t *data)
{
    Qcow2Table *old = g_hash_table_lookup(c->tables, &offset);
    if (old != NULL) {
        /* A stale clean copy of a cluster that was freed and reused. */
        if (old->dirty)
            c->dirty--;
        g_hash_table_remove(c->tables, &offset);
        c->gen++;
    }
    uint8_t *copy = data ? g_memdup2(data, c->cluster_size) : g_malloc0(c->cluster_size);
    Qcow2Table *t = cache_insert(c, offset, copy);
    t->dirty = true;
    c->dirty++;
    return t;
}

Qcow2Table *qcow2_cache_get_pinned(Qcow2State *s, Qcow2Cache *c, int fd, uint64_t offset,
                                   GError **error)
{
    Qcow2Table *t;
    if (!qcow2_cache_load_wrlocked(s, c, fd, offset, &t, error))
        return NULL;
    t->pins++;
    vd_brlock_wrunlock(&c->lock);
    return t;
}

void qcow2_cache_unpin(Qcow2Cache *c, Qcow2Table *t)
{
    vd_brlock_wrlock(&c->lock);
    t->pins--;
    vd_brlock_wrunlock(&c->lock);
}

unsigned qcow2_cache_dirty_count(Qcow2Cache *c)
{
    vd_brlock_rdlock(&c->lock);
    unsigned n = c->dirty;
    vd_brlock_rdunlock(&c->lock);
    return n;
}

bool qcow2_cache_pressure(Qcow2Cache *c)
{
    return qcow2_cache_dirty_count(c) * 2 >= c->max;
}

void qcow2_cache_mark_dirty(Qcow2Cache *c, Qcow2Table *t)
{
    if (!t->dirty) {
        t->dirty = true;
        c->dirty++;
    }
}

static gint cmp_offset(gconstpointer a, gconstpointer b)
{
    const Qcow2Table *x = *(Qcow2Table *const *)a, *y = *(Qcow2Table *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

bool qcow2_cache_writeback(Qcow2State *s, Qcow2Cache *c, int fd, GError **error)
{
    g_autoptr(GPtrArray) todo = g_ptr_array_new();
    vd_brlock_wrlock(&c->lock);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, c->tables);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        Qcow2Table *t = v;
        if (t->dirty) {
            t->pins++;
            g_ptr_array_add(todo, t);
        }
    }
    vd_brlock_wrunlock(&c->lock);
    g_ptr_array_sort(todo, cmp_offset);

    /* Only the write side changes table contents, and it is the caller:
     * the bytes are stable while we write them without the lock. */
    bool ok = true;
    for (guint i = 0; i < todo->len && ok; i++) {
        Qcow2Table *t = todo->pdata[i];
        ok = vd_host_pwrite(fd, s->name, t->data, c->cluster_size, t->offset, error);
        if (ok) {
            vd_brlock_wrlock(&c->lock);
            t->dirty = false;
            c->dirty--;
            vd_brlock_wrunlock(&c->lock);
        }
    }
    vd_brlock_wrlock(&c->lock);
    for (guint i = 0; i < todo->len; i++)
        ((Qcow2Table *)todo->pdata[i])->pins--;
    cache_evict(c);
    vd_brlock_wrunlock(&c->lock);
    return ok;
}

void qcow2_cache_drop(Qcow2Cache *c, uint64_t offset)
{
    vd_brlock_wrlock(&c->lock);
    Qcow2Table *t = g_hash_table_lookup(c->tables, &offset);
    if (t != NULL && t->pins == 0) {
        if (t->dirty)
            c->dirty--;
        g_hash_table_remove(c->tables, &offset);
        c->gen++;
    }
    vd_brlock_wrunlock(&c->lock);
}
