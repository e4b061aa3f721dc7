/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The metadata table cache (see vd-table-cache.h).
 *
 * An entry is in the index while it is the cache's copy of its key. A
 * miss indexes a LOADING entry and loads outside the lock; other misses
 * of the key find it and wait. When the load ends, the entry becomes
 * READY (shared), FAILED (the error is shared), or, when it left the
 * index meanwhile (invalidated: the key's table was replaced), RETRY:
 * everyone looks the key up again. Writers changing a LOADING key bump
 * its generation; the loader then loads again before anyone sees it.
 *
 * Eviction is CLOCK over the indexed entries: readers set a reference
 * bit (written only when clear, so readers of a hot table do not keep
 * writing its line), the hand clears it once and evicts the next
 * unpinned clean READY entry it meets with the bit clear.
 */
#include "config.h"

#include <string.h>

#include "src/vd-brlock.h"
#include "src/vd-error.h"
#include "src/vd-table-cache.h"

typedef enum { LOADING, READY, FAILED, RETRY } EntryState;

typedef struct {
    VdTable pub;     /* key, data */
    gint referenced; /* atomic: CLOCK's bit, set by lookups */
    gint state;      /* EntryState; written under the write lock, read atomically */
    /* The rest under the cache's write lock (or read lock to read). */
    unsigned pins; /* callers holding it, a running load included */
    guint ring;    /* its slot in ring while indexed */
    bool indexed;  /* in the index and the ring */
    bool dirty;    /* the file's copy is older */
    uint64_t gen;  /* bumped by writers while LOADING: the load is stale */
    uint64_t seq;  /* bumped by every change: a write-back knows if it is current */
    GError *error; /* FAILED: the load's error */
} Entry;

struct VdTableCache {
    VdBrLock lock;      /* leaf: readers take a slot, everything else all of it */
    GHashTable *index;  /* under lock: &key -> Entry */
    GPtrArray *ring;    /* under lock: indexed entries, CLOCK order */
    guint hand;         /* under lock */
    unsigned capacity;  /* tables kept, soft for dirty, pinned and loading ones */
    unsigned dirty;     /* under lock: dirty indexed entries */
    unsigned pinned;    /* under lock: entries with pins */
    size_t table_bytes; /* immutable from here on */
    VdTableLoadFn load;
    VdTableStoreFn store;
    void *opaque;
    VdTableCache *dependency; /* flushed before this cache's tables are written */
    GMutex flush_lock;        /* one write-back at a time; before the dependency's */
    GMutex load_mutex;        /* leaf, with load_cond: waits for a shared load */
    GCond load_cond;
    VdTableCacheStats st; /* under lock (counters only) */
};

VdTableCache *vd_table_cache_new(size_t table_bytes, uint64_t max_bytes, unsigned min_entries,
                                 VdTableLoadFn load, VdTableStoreFn store, void *opaque)
{
    VdTableCache *c = g_new0(VdTableCache, 1);
    vd_brlock_init(&c->lock);
    c->index = g_hash_table_new(g_int64_hash, g_int64_equal);
    c->ring = g_ptr_array_new();
    c->table_bytes = MAX(table_bytes, 1);
    uint64_t n = max_bytes / c->table_bytes;
    c->capacity = (unsigned)CLAMP(n, MAX(min_entries, 1u), 65536u);
    c->load = load;
    c->store = store;
    c->opaque = opaque;
    g_mutex_init(&c->flush_lock);
    g_mutex_init(&c->load_mutex);
    g_cond_init(&c->load_cond);
    return c;
}

static void entry_free(Entry *e)
{
    g_clear_error(&e->error);
    g_free(e->pub.data);
    g_free(e);
}

void vd_table_cache_free(VdTableCache *c)
{
    if (c == NULL)
        return;
    /* Pinned entries belong to callers that are gone by now. */
    for (guint i = 0; i < c->ring->len; i++)
        entry_free(c->ring->pdata[i]);
    g_ptr_array_unref(c->ring);
    g_hash_table_unref(c->index);
    g_cond_clear(&c->load_cond);
    g_mutex_clear(&c->load_mutex);
    g_mutex_clear(&c->flush_lock);
    vd_brlock_clear(&c->lock);
    g_free(c);
}

size_t vd_table_cache_table_bytes(const VdTableCache *c)
{
    return c->table_bytes;
}

void vd_table_cache_set_dependency(VdTableCache *c, VdTableCache *first)
{
    /* A cycle would make flushes recurse for ever. */
    for (VdTableCache *d = first; d != NULL; d = d->dependency)
        g_return_if_fail(d != c);
    c->dependency = first;
}

/* The lookup both modes share (lock held). */
static Entry *lookup(VdTableCache *c, uint64_t key)
{
    Entry *e = g_hash_table_lookup(c->index, &key);
    if (e != NULL && !g_atomic_int_get(&e->referenced))
        g_atomic_int_set(&e->referenced, 1);
    return e;
}

/* Write lock held. */
static void pin(VdTableCache *c, Entry *e)
{
    if (e->pins++ == 0)
        c->pinned++;
}

/* Write lock held; frees an entry that left the index and is unused. */
static void unpin(VdTableCache *c, Entry *e)
{
    if (--e->pins == 0) {
        c->pinned--;
        if (!e->indexed)
            entry_free(e);
    }
}

static void set_dirty(VdTableCache *c, Entry *e, bool dirty)
{
    if (e->dirty != dirty && e->indexed)
        c->dirty += dirty ? 1 : -1;
    e->dirty = dirty;
}

/* Write lock held: take e out of the index and the ring. */
static void unindex(VdTableCache *c, Entry *e)
{
    g_hash_table_remove(c->index, &e->pub.key);
    set_dirty(c, e, false);
    guint last = c->ring->len - 1;
    Entry *moved = c->ring->pdata[last];
    c->ring->pdata[e->ring] = moved;
    moved->ring = e->ring;
    g_ptr_array_set_size(c->ring, last);
    if (c->hand >= c->ring->len)
        c->hand = 0;
    e->indexed = false;
    if (e->pins == 0)
        entry_free(e);
}

/* Write lock held: evict one unpinned clean READY entry; false if none. */
static bool evict_one(VdTableCache *c)
{
    for (guint steps = 0; steps < 2 * c->ring->len; steps++) {
        Entry *e = c->ring->pdata[c->hand];
        bool candidate = e->pins == 0 && !e->dirty && g_atomic_int_get(&e->state) == READY;
        if (candidate && !g_atomic_int_get(&e->referenced)) {
            unindex(c, e);
            c->st.evictions++;
            return true;
        }
        if (candidate)
            g_atomic_int_set(&e->referenced, 0);
        c->hand = (c->hand + 1) % c->ring->len;
    }
    return false;
}

/* Write lock held: a new pinned entry for key in the index. */
static Entry *entry_add(VdTableCache *c, uint64_t key, EntryState state)
{
    while (c->ring->len >= c->capacity && evict_one(c)) {
    }
    Entry *e = g_new0(Entry, 1);
    e->pub.key = key;
    e->pub.data = g_malloc0(c->table_bytes);
    e->state = state;
    e->indexed = true;
    e->ring = c->ring->len;
    g_ptr_array_add(c->ring, e);
    g_hash_table_insert(c->index, &e->pub.key, e);
    pin(c, e);
    return e;
}

/* Wait, holding no lock, until the load of e ends. */
static void wait_loaded(VdTableCache *c, Entry *e)
{
    g_mutex_lock(&c->load_mutex);
    while (g_atomic_int_get(&e->state) == LOADING)
        g_cond_wait(&c->load_cond, &c->load_mutex);
    g_mutex_unlock(&c->load_mutex);
}

static void end_load(VdTableCache *c, Entry *e, EntryState state)
{
    g_atomic_int_set(&e->state, state);
    g_mutex_lock(&c->load_mutex);
    g_cond_broadcast(&c->load_cond);
    g_mutex_unlock(&c->load_mutex);
}

/* Write lock held on entry and on return: load e (pinned, LOADING) until
 * no writer changed its key meanwhile. */
static EntryState run_load(VdTableCache *c, Entry *e)
{
    for (;;) {
        uint64_t gen = e->gen;
        GError *err = NULL;
        vd_brlock_wrunlock(&c->lock);
        bool ok = c->load(c->opaque, e->pub.key, e->pub.data, &err);
        vd_brlock_wrlock(&c->lock);
        c->st.loads++;
        if (!e->indexed) {
            g_clear_error(&err);
            return RETRY;
        }
        if (!ok) {
            e->error = err;
            return FAILED;
        }
        if (e->gen == gen)
            return READY;
        c->st.stale_loads++;
    }
}

/* The entry of key, READY and pinned; NULL with error. Write lock held
 * on entry and on return. */
static Entry *acquire_locked(VdTableCache *c, uint64_t key, GError **error)
{
    for (;;) {
        Entry *e = lookup(c, key);
        if (e != NULL && g_atomic_int_get(&e->state) == READY) {
            pin(c, e);
            return e;
        }
        EntryState state;
        c->st.misses++;
        if (e != NULL) {
            /* Someone is loading it: share that load. */
            pin(c, e);
            c->st.shared_loads++;
            vd_brlock_wrunlock(&c->lock);
            wait_loaded(c, e);
            vd_brlock_wrlock(&c->lock);
            state = g_atomic_int_get(&e->state);
        } else {
            e = entry_add(c, key, LOADING);
            state = run_load(c, e);
            if (state == FAILED)
                unindex(c, e);
            end_load(c, e, state);
        }
        if (state == READY)
            return e;
        if (state == FAILED && error != NULL)
            *error = g_error_copy(e->error);
        unpin(c, e);
        if (state == FAILED)
            return NULL;
        /* RETRY: the key's table changed identity while it loaded. */
    }
}

bool vd_table_cache_read(VdTableCache *c, uint64_t key, size_t offset, size_t len, void *out,
                         GError **error)
{
    g_return_val_if_fail(offset <= c->table_bytes && len <= c->table_bytes - offset, false);
    vd_brlock_rdlock(&c->lock);
    Entry *e = lookup(c, key);
    if (e != NULL && g_atomic_int_get(&e->state) == READY) {
        memcpy(out, e->pub.data + offset, len);
        vd_brlock_rdunlock(&c->lock);
        return true;
    }
    vd_brlock_rdunlock(&c->lock);

    vd_brlock_wrlock(&c->lock);
    e = acquire_locked(c, key, error);
    if (e != NULL) {
        memcpy(out, e->pub.data + offset, len);
        unpin(c, e);
    }
    vd_brlock_wrunlock(&c->lock);
    return e != NULL;
}

VdTable *vd_table_cache_get(VdTableCache *c, uint64_t key, GError **error)
{
    vd_brlock_wrlock(&c->lock);
    Entry *e = g_hash_table_lookup(c->index, &key);
    if (e != NULL && g_atomic_int_get(&e->state) == READY)
        c->st.hits++;
    e = acquire_locked(c, key, error);
    vd_brlock_wrunlock(&c->lock);
    return e != NULL ? &e->pub : NULL;
}

VdTable *vd_table_cache_get_new(VdTableCache *c, uint64_t key, const void *data)
{
    vd_brlock_wrlock(&c->lock);
    Entry *old = g_hash_table_lookup(c->index, &key);
    if (old != NULL) {
        /* A load of what was there before must not win. */
        old->gen++;
        unindex(c, old);
    }
    Entry *e = entry_add(c, key, READY);
    if (data != NULL)
        memcpy(e->pub.data, data, c->table_bytes);
    set_dirty(c, e, true);
    vd_brlock_wrunlock(&c->lock);
    return &e->pub;
}

void vd_table_cache_put(VdTableCache *c, VdTable *t)
{
    if (t == NULL)
        return;
    vd_brlock_wrlock(&c->lock);
    unpin(c, (Entry *)t);
    vd_brlock_wrunlock(&c->lock);
}

void vd_table_cache_update(VdTableCache *c, VdTable *t, size_t offset, const void *src, size_t len)
{
    g_return_if_fail(offset <= c->table_bytes && len <= c->table_bytes - offset);
    Entry *e = (Entry *)t;
    vd_brlock_wrlock(&c->lock);
    memcpy(e->pub.data + offset, src, len);
    e->seq++;
    set_dirty(c, e, true);
    vd_brlock_wrunlock(&c->lock);
}

void vd_table_cache_mark_dirty(VdTableCache *c, VdTable *t)
{
    Entry *e = (Entry *)t;
    vd_brlock_wrlock(&c->lock);
    e->seq++;
    set_dirty(c, e, true);
    vd_brlock_wrunlock(&c->lock);
}

void vd_table_cache_updated(VdTableCache *c, uint64_t key, size_t offset, const void *src,
                            size_t len)
{
    g_return_if_fail(offset <= c->table_bytes && len <= c->table_bytes - offset);
    vd_brlock_wrlock(&c->lock);
    Entry *e = g_hash_table_lookup(c->index, &key);
    if (e != NULL && g_atomic_int_get(&e->state) == READY) {
        memcpy(e->pub.data + offset, src, len);
        e->seq++;
    } else if (e != NULL) {
        e->gen++; /* the load under way may have read the old bytes */
    }
    vd_brlock_wrunlock(&c->lock);
}

/* Write back e (pinned by the caller) if dirty; flush_lock held. */
static bool write_back(VdTableCache *c, Entry *e, uint8_t *copy, GError **error)
{
    vd_brlock_rdlock(&c->lock);
    bool dirty = e->dirty && e->indexed;
    uint64_t seq = e->seq;
    if (dirty)
        memcpy(copy, e->pub.data, c->table_bytes);
    vd_brlock_rdunlock(&c->lock);
    if (!dirty)
        return true;
    /* After the copy: whatever the dependency had dirty when this
     * table's bytes were taken (all it may point at) goes first. */
    if (c->dependency != NULL && !vd_table_cache_flush(c->dependency, error))
        return false;
    if (!c->store(c->opaque, e->pub.key, copy, error))
        return false;
    vd_brlock_wrlock(&c->lock);
    c->st.stores++;
    if (e->seq == seq)
        set_dirty(c, e, false);
    vd_brlock_wrunlock(&c->lock);
    return true;
}

bool vd_table_cache_flush(VdTableCache *c, GError **error)
{
    g_mutex_lock(&c->flush_lock);
    g_autoptr(GPtrArray) todo = g_ptr_array_new();
    vd_brlock_wrlock(&c->lock);
    for (guint i = 0; c->dirty > 0 && i < c->ring->len; i++) {
        Entry *e = c->ring->pdata[i];
        if (e->dirty) {
            pin(c, e);
            g_ptr_array_add(todo, e);
        }
    }
    vd_brlock_wrunlock(&c->lock);

    bool ok = true;
    g_autofree uint8_t *copy = todo->len > 0 ? g_malloc(c->table_bytes) : NULL;
    for (guint i = 0; ok && i < todo->len; i++)
        ok = write_back(c, todo->pdata[i], copy, error);

    vd_brlock_wrlock(&c->lock);
    for (guint i = 0; i < todo->len; i++)
        unpin(c, todo->pdata[i]);
    while (c->ring->len > c->capacity && evict_one(c)) {
    }
    vd_brlock_wrunlock(&c->lock);
    g_mutex_unlock(&c->flush_lock);
    return ok;
}

bool vd_table_cache_pressure(VdTableCache *c)
{
    vd_brlock_rdlock(&c->lock);
    bool full = c->dirty > 0 && (c->ring->len > c->capacity || c->dirty * 2 >= c->capacity);
    vd_brlock_rdunlock(&c->lock);
    return full;
}

unsigned vd_table_cache_dirty_count(VdTableCache *c)
{
    vd_brlock_rdlock(&c->lock);
    unsigned n = c->dirty;
    vd_brlock_rdunlock(&c->lock);
    return n;
}

/* Write lock held. A LOADING entry leaves the index too: its loader then
 * tells its waiters to look again. */
static void drop(VdTableCache *c, Entry *e)
{
    e->gen++;
    unindex(c, e);
}

void vd_table_cache_invalidate(VdTableCache *c, uint64_t key)
{
    vd_brlock_wrlock(&c->lock);
    Entry *e = g_hash_table_lookup(c->index, &key);
    if (e != NULL)
        drop(c, e);
    vd_brlock_wrunlock(&c->lock);
}

void vd_table_cache_invalidate_range(VdTableCache *c, uint64_t start, uint64_t len)
{
    vd_brlock_wrlock(&c->lock);
    for (guint i = c->ring->len; i-- > 0;) {
        Entry *e = c->ring->pdata[i];
        uint64_t k = e->pub.key;
        if (k < start + len && start < k + c->table_bytes)
            drop(c, e);
    }
    vd_brlock_wrunlock(&c->lock);
}

void vd_table_cache_invalidate_all(VdTableCache *c)
{
    vd_brlock_wrlock(&c->lock);
    while (c->ring->len > 0)
        drop(c, c->ring->pdata[c->ring->len - 1]);
    vd_brlock_wrunlock(&c->lock);
}

void vd_table_cache_stats(VdTableCache *c, VdTableCacheStats *st)
{
    vd_brlock_wrlock(&c->lock);
    *st = c->st;
    st->entries = c->ring->len;
    st->dirty = c->dirty;
    st->pinned = c->pinned;
    st->capacity = c->capacity;
    vd_brlock_wrunlock(&c->lock);
}
