/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The decoded-chunk cache of the read-only formats (see vd-ro-cache.h). */
#include "config.h"

#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "src/vd-ro-cache.h"
#include "src/vd-error.h"
#include "src/vd-interrupt.h"

#define RO_MIN_ENTRIES  2
#define RO_FLOOR_MAX    256   /* entries held without borrowing, at most */
#define RO_MAX_ENTRIES  16384 /* with borrowed ones, at most */
#define RO_TRASH_INLINE 16
#define RO_GHOSTS_MIN   1024 /* keys evicted lately remembered, at least */
#define RO_GROW_SHARE   8    /* a ghost hit grows the cache by 1 + 1/8 of it */
#define RO_STALE_USEC   (2 * G_USEC_PER_SEC)
/* ...and not used during the last this many uses per entry of the cache:
 * under load a reader's next request can wait seconds in the decode pool
 * behind other readers' chunks, and its chunk is not stale for that. */
#define RO_STALE_USES 16
#define RO_SHARED_MAX (512ull << 20)

typedef struct {
    uint64_t key;
    GBytes *data;   /* NULL: free slot */
    uint64_t used;  /* LRU clock */
    gint64 used_at; /* monotonic time of the last use */
    int prev, next; /* the LRU list of held slots, by slot number; -1: none */
} VdRoSlot;

/* A key evicted lately; seq tells a key's latest eviction from older ones
 * still in the ring. */
typedef struct {
    uint64_t key;
    uint64_t seq;
} VdRoGhost;

/* A chunk being decoded, and the readers waiting for it. */
typedef struct {
    uint64_t key;
    unsigned refs; /* the decoder and the waiters */
    bool done;
    GBytes *data;
    GError *error;
} VdRoFlight;

struct VdRoCache {
    GMutex lock;     /* guards everything below */
    GCond landed;    /* broadcast when a flight is done */
    VdRoSlot *slots; /* n_slots of them; grown as the cache grows */
    unsigned n_slots;
    GHashTable *index; /* key (uint64_t *, owned) -> slot number + 1 */
    unsigned entries;  /* slots holding data */
    unsigned floor;    /* entries held without borrowing */
    unsigned target;   /* entries wanted now (floor..RO_MAX_ENTRIES) */
    unsigned borrowed; /* entries above the floor: unit bytes of the shared pool each */
    uint64_t unit;
    uint64_t clock;
    gint64 last_sweep;
    GPtrArray *flights;     /* VdRoFlight *: chunks being decoded, by their decoder */
    int lru_head, lru_tail; /* most and least recently used held slots; -1: none */
    /* Keys evicted lately, for spotting thrash: as many as the cache may
     * hold (at least RO_GHOSTS_MIN), so that a cache too small for random
     * reads over many chunks grows in proportion to its size. A ring,
     * oldest first from ghost_next once full, and a set of its keys
     * (key -> seq of its latest eviction). */
    VdRoGhost *ghosts;
    unsigned ghost_cap, n_ghosts, ghost_next;
    uint64_t ghost_seq;
    GHashTable *ghost_set;
};

/* Chunks dropped under the lock, released after it. */
typedef struct {
    GBytes *items[RO_TRASH_INLINE];
    unsigned n;
    GPtrArray *more; /* past RO_TRASH_INLINE, or NULL */
} VdRoTrash;

static void trash_add(VdRoTrash *trash, GBytes *b)
{
    if (trash->n < RO_TRASH_INLINE) {
        trash->items[trash->n++] = b;
        return;
    }
    if (trash->more == NULL)
        trash->more = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    g_ptr_array_add(trash->more, b);
}

static GMutex shared_lock;
static uint64_t shared_used; /* shared_lock */

uint64_t vd_ro_cache_shared_limit(void)
{
    static gsize once;
    static uint64_t limit;
    if (g_once_init_enter(&once)) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        uint64_t phys = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
        limit = phys > 0 ? MIN(RO_SHARED_MAX, phys / 8) : RO_SHARED_MAX;
        g_once_init_leave(&once, 1);
    }
    return limit;
}

static bool shared_take(uint64_t n)
{
    uint64_t limit = vd_ro_cache_shared_limit();
    g_mutex_lock(&shared_lock);
    bool ok = shared_used <= limit && n <= limit - shared_used;
    if (ok)
        shared_used += n;
    g_mutex_unlock(&shared_lock);
    return ok;
}

static void shared_give(uint64_t n)
{
    g_mutex_lock(&shared_lock);
    shared_used -= n;
    g_mutex_unlock(&shared_lock);
}

VdRoCache *vd_ro_cache_new(uint64_t budget, uint64_t unit)
{
    VdRoCache *c = g_new0(VdRoCache, 1);
    uint64_t n = unit ? budget / unit : RO_MIN_ENTRIES;
    c->floor = (unsigned)CLAMP(n, RO_MIN_ENTRIES, RO_FLOOR_MAX);
    c->n_slots = c->floor;
    c->slots = g_new0(VdRoSlot, c->n_slots);
    c->index = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    c->target = c->floor;
    c->unit = MAX(unit, 1);
    c->flights = g_ptr_array_new();
    c->lru_head = c->lru_tail = -1;
    c->ghost_set = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
    g_mutex_init(&c->lock);
    g_cond_init(&c->landed);
    return c;
}

void vd_ro_cache_free(VdRoCache *c)
{
    if (c == NULL)
        return;
    for (unsigned i = 0; i < c->n_slots; i++)
        g_clear_pointer(&c->slots[i].data, g_bytes_unref);
    g_free(c->slots);
    g_hash_table_unref(c->index);
    g_hash_table_unref(c->ghost_set);
    g_free(c->ghosts);
    if (c->borrowed > 0)
        shared_give(c->borrowed * c->unit);
    g_ptr_array_unref(c->flights); /* empty: no reader runs any more */
    g_mutex_clear(&c->lock);
    g_cond_clear(&c->landed);
    g_free(c);
}

static unsigned capacity(const VdRoCache *c)
{
    return MAX(c->floor, c->target);
}

static int find(const VdRoCache *c, uint64_t key)
{
    gpointer v = g_hash_table_lookup(c->index, &key);
    return v != NULL ? GPOINTER_TO_INT(v) - 1 : -1;
}

static void lru_unlink(VdRoCache *c, int i)
{
    VdRoSlot *s = &c->slots[i];
    if (s->prev >= 0)
        c->slots[s->prev].next = s->next;
    else
        c->lru_head = s->next;
    if (s->next >= 0)
        c->slots[s->next].prev = s->prev;
    else
        c->lru_tail = s->prev;
    s->prev = s->next = -1;
}

static void lru_push_head(VdRoCache *c, int i)
{
    VdRoSlot *s = &c->slots[i];
    s->prev = -1;
    s->next = c->lru_head;
    if (c->lru_head >= 0)
        c->slots[c->lru_head].prev = i;
    c->lru_head = i;
    if (c->lru_tail < 0)
        c->lru_tail = i;
}

/* Slot i was used now (it is on the LRU list, or new when fresh). */
static void touch(VdRoCache *c, int i, gint64 now, bool fresh)
{
    VdRoSlot *s = &c->slots[i];
    s->used = ++c->clock;
    s->used_at = now;
    if (!fresh) {
        if (c->lru_head == i)
            return;
        lru_unlink(c, i);
    }
    lru_push_head(c, i);
}

static void ghost_add(VdRoCache *c, uint64_t key)
{
    unsigned want = MAX(RO_GHOSTS_MIN, capacity(c));
    if (c->ghost_cap < want && c->n_ghosts == c->ghost_cap) {
        /* Full and the cache grew: a larger ring, oldest first. */
        unsigned cap = MIN(RO_MAX_ENTRIES, MAX(want, c->ghost_cap * 2));
        VdRoGhost *g = g_new(VdRoGhost, cap);
        for (unsigned k = 0; k < c->n_ghosts; k++)
            g[k] = c->ghosts[(c->ghost_next + k) % c->n_ghosts];
        g_free(c->ghosts);
        c->ghosts = g;
        c->ghost_next = c->n_ghosts;
        c->ghost_cap = cap;
    }
    VdRoGhost *slot = &c->ghosts[c->ghost_next];
    if (c->n_ghosts == c->ghost_cap) {
        /* The oldest goes, unless the key was evicted again since. */
        uint64_t *seq = g_hash_table_lookup(c->ghost_set, &slot->key);
        if (seq != NULL && *seq == slot->seq)
            g_hash_table_remove(c->ghost_set, &slot->key);
    } else {
        c->n_ghosts++;
    }
    *slot = (VdRoGhost){.key = key, .seq = ++c->ghost_seq};
    g_hash_table_replace(c->ghost_set, g_memdup2(&key, sizeof key),
                         g_memdup2(&slot->seq, sizeof slot->seq));
    c->ghost_next = (c->ghost_next + 1) % c->ghost_cap;
}

static void evict(VdRoCache *c, int i, bool ghost, VdRoTrash *trash)
{
    VdRoSlot *s = &c->slots[i];
    if (ghost)
        ghost_add(c, s->key);
    lru_unlink(c, i);
    g_hash_table_remove(c->index, &s->key);
    trash_add(trash, s->data);
    s->data = NULL;
    c->entries--;
    if (c->borrowed > 0 && c->entries < c->floor + c->borrowed) {
        c->borrowed--;
        shared_give(c->unit);
    }
}

static void evict_lru(VdRoCache *c, VdRoTrash *trash)
{
    if (c->lru_tail >= 0)
        evict(c, c->lru_tail, true, trash);
}

/* Drop entries above the floor that nobody used lately; want fewer. */
static void sweep(VdRoCache *c, gint64 now, VdRoTrash *trash)
{
    c->last_sweep = now;
    bool dropped = false;
    uint64_t uses = (uint64_t)RO_STALE_USES * capacity(c);
    for (unsigned i = 0; i < c->n_slots && c->entries > c->floor; i++) {
        VdRoSlot *s = &c->slots[i];
        if (s->data != NULL && now - s->used_at > RO_STALE_USEC && c->clock - s->used > uses) {
            evict(c, (int)i, false, trash);
            dropped = true;
        }
    }
    if (dropped)
        c->target = MAX(c->floor, c->entries + c->flights->len);
}

static void maybe_sweep(VdRoCache *c, gint64 now, VdRoTrash *trash)
{
    if (c->entries > c->floor && now - c->last_sweep > RO_STALE_USEC / 2)
        sweep(c, now, trash);
}

/* A miss on a key evicted lately: the cache is too small for the chunks
 * in use, even though they were not decoded at the same time. */
static void note_miss(VdRoCache *c, uint64_t key)
{
    /* By a share of its size: a random reader over N chunks sees ghost
     * hits at a rate of about capacity / N, so growing by one would take
     * N ln(N / floor) misses to fit them (seconds of decoding at 16384).
     * An eighth: a cold random reader over 256 chunks from a floor of 8
     * decodes 1.2 times each on the way, against 1.8 times at 1/128 (a
     * 256 MiB gzip file inflated 423 MB against 606 MB in its first 5 s
     * of random reads); the pool and RO_MAX_ENTRIES still bound it. */
    if (g_hash_table_remove(c->ghost_set, &key))
        c->target = MIN(RO_MAX_ENTRIES, capacity(c) + 1 + capacity(c) / RO_GROW_SHARE);
}

static void insert(VdRoCache *c, uint64_t key, GBytes *data, VdRoTrash *trash)
{
    gint64 now = g_get_monotonic_time();
    int i = find(c, key);
    if (i >= 0) {
        trash_add(trash, c->slots[i].data);
        c->slots[i].data = g_bytes_ref(data);
        touch(c, i, now, false);
        return;
    }
    maybe_sweep(c, now, trash);
    /* Room for one more: under the floor, or borrowed from the pool while
     * the cache wants more entries; otherwise the least recently used goes
     * (which may return a borrowed unit, so check again). */
    while (c->entries >= c->floor + c->borrowed) {
        if (c->entries < capacity(c) && shared_take(c->unit)) {
            c->borrowed++;
            break;
        }
        evict_lru(c, trash);
    }
    unsigned j = 0;
    while (j < c->n_slots && c->slots[j].data != NULL)
        j++;
    if (j == c->n_slots) {
        /* Every slot taken and room for one more: twice the slots. */
        unsigned n = MIN(RO_MAX_ENTRIES, c->n_slots * 2);
        c->slots = g_renew(VdRoSlot, c->slots, n);
        memset(c->slots + c->n_slots, 0, (n - c->n_slots) * sizeof *c->slots);
        c->n_slots = n;
    }
    VdRoSlot *s = &c->slots[j];
    s->key = key;
    s->data = g_bytes_ref(data);
    c->entries++;
    touch(c, (int)j, now, true);
    g_hash_table_insert(c->index, g_memdup2(&key, sizeof key), GINT_TO_POINTER((int)j + 1));
}

static void trash_empty(VdRoTrash *trash)
{
    for (unsigned i = 0; i < trash->n; i++)
        g_bytes_unref(trash->items[i]);
    trash->n = 0;
    g_clear_pointer(&trash->more, g_ptr_array_unref);
}

static void flight_unref(VdRoFlight *f)
{
    if (--f->refs > 0)
        return;
    g_clear_pointer(&f->data, g_bytes_unref);
    g_clear_error(&f->error);
    g_free(f);
}

/* The flight's result for one of its readers; lock held. */
static GBytes *flight_result(VdRoFlight *f, GError **error)
{
    if (f->data != NULL)
        return g_bytes_ref(f->data);
    g_propagate_error(error, g_error_copy(f->error));
    return NULL;
}

GBytes *vd_ro_cache_fetch(VdRoCache *c, uint64_t key, VdRoDecodeFunc decode, gpointer user,
                          GError **error)
{
    VdRoTrash trash = {.n = 0, .more = NULL};
    GBytes *result = NULL;
    gint64 now = g_get_monotonic_time();
    VdRoFlight *f = NULL;
    g_mutex_lock(&c->lock);
    for (;;) {
        int i = find(c, key);
        if (i >= 0) {
            touch(c, i, now, false);
            result = g_bytes_ref(c->slots[i].data);
            maybe_sweep(c, now, &trash);
            g_mutex_unlock(&c->lock);
            trash_empty(&trash);
            return result;
        }
        for (guint k = 0; k < c->flights->len && f == NULL; k++) {
            VdRoFlight *g = g_ptr_array_index(c->flights, k);
            if (g->key == key)
                f = g;
        }
        if (f == NULL)
            break;
        /* Being decoded: wait for it rather than decode it again. */
        f->refs++;
        while (!f->done)
            g_cond_wait(&c->landed, &c->lock);
        /* Its reader gave up (vd-interrupt.h); this one did not. */
        bool gave_up = f->data == NULL && vd_error_is_interrupt(f->error);
        if (!gave_up)
            result = flight_result(f, error);
        flight_unref(f);
        if (!gave_up) {
            g_mutex_unlock(&c->lock);
            return result;
        }
        f = NULL;
    }
    note_miss(c, key);
    f = g_new0(VdRoFlight, 1);
    f->key = key;
    f->refs = 1;
    g_ptr_array_add(c->flights, f);
    /* Chunks decoded at the same time are chunks in use at the same time. */
    c->target = MIN(RO_MAX_ENTRIES, MAX(c->target, c->flights->len));
    g_mutex_unlock(&c->lock);

    GError *err = NULL;
    GBytes *data = decode(user, key, &err);
    if (data == NULL && err == NULL)
        vd_set_error(&err, EIO, "chunk %" G_GUINT64_FORMAT " failed to decode", key);

    g_mutex_lock(&c->lock);
    f->data = data;
    f->error = err;
    f->done = true;
    g_ptr_array_remove_fast(c->flights, f);
    if (data != NULL)
        insert(c, key, data, &trash);
    g_cond_broadcast(&c->landed);
    result = flight_result(f, error);
    flight_unref(f);
    g_mutex_unlock(&c->lock);
    trash_empty(&trash);
    return result;
}

GBytes *vd_ro_cache_get(VdRoCache *c, uint64_t key)
{
    GBytes *found = NULL;
    VdRoTrash trash = {.n = 0, .more = NULL};
    gint64 now = g_get_monotonic_time();
    g_mutex_lock(&c->lock);
    int i = find(c, key);
    if (i >= 0) {
        touch(c, i, now, false);
        found = g_bytes_ref(c->slots[i].data);
        maybe_sweep(c, now, &trash);
    } else {
        note_miss(c, key);
    }
    g_mutex_unlock(&c->lock);
    trash_empty(&trash);
    return found;
}

void vd_ro_cache_put(VdRoCache *c, uint64_t key, GBytes *data)
{
    VdRoTrash trash = {.n = 0, .more = NULL};
    g_mutex_lock(&c->lock);
    insert(c, key, data, &trash);
    g_mutex_unlock(&c->lock);
    trash_empty(&trash);
}

unsigned vd_ro_cache_entries(VdRoCache *c)
{
    g_mutex_lock(&c->lock);
    unsigned n = c->entries;
    g_mutex_unlock(&c->lock);
    return n;
}

unsigned vd_ro_cache_capacity(VdRoCache *c)
{
    g_mutex_lock(&c->lock);
    unsigned n = capacity(c);
    g_mutex_unlock(&c->lock);
    return n;
}
