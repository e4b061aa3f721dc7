/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The decoded-chunk cache of the read-only formats (see vd-ro-cache.h). */
#include "config.h"

#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "src/vd-ro-cache.h"
#include "src/vd-error.h"

#define RO_MIN_ENTRIES  2
#define RO_FLOOR_MAX    256  /* entries held without borrowing, at most */
#define RO_MAX_ENTRIES  4096 /* with borrowed ones, at most */
#define RO_TRASH_INLINE 16
#define RO_GHOSTS       1024
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
} VdRoSlot;

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
    GPtrArray *flights;         /* VdRoFlight *: chunks being decoded, by their decoder */
    uint64_t ghosts[RO_GHOSTS]; /* keys evicted lately, for spotting thrash */
    unsigned n_ghosts, ghost_next;
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

static void touch(VdRoCache *c, VdRoSlot *s, gint64 now)
{
    s->used = ++c->clock;
    s->used_at = now;
}

static void evict(VdRoCache *c, VdRoSlot *s, bool ghost, VdRoTrash *trash)
{
    if (ghost) {
        c->ghosts[c->ghost_next] = s->key;
        c->ghost_next = (c->ghost_next + 1) % RO_GHOSTS;
        c->n_ghosts = MIN(c->n_ghosts + 1, RO_GHOSTS);
    }
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
    VdRoSlot *victim = NULL;
    for (unsigned i = 0; i < c->n_slots; i++) {
        VdRoSlot *s = &c->slots[i];
        if (s->data != NULL && (victim == NULL || s->used < victim->used))
            victim = s;
    }
    if (victim != NULL)
        evict(c, victim, true, trash);
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
            evict(c, s, false, trash);
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
    for (unsigned i = 0; i < c->n_ghosts; i++) {
        if (c->ghosts[i] == key) {
            c->ghosts[i] = c->ghosts[--c->n_ghosts];
            c->ghost_next = c->n_ghosts % RO_GHOSTS;
            c->target = MIN(RO_MAX_ENTRIES, capacity(c) + 1);
            return;
        }
    }
}

static void insert(VdRoCache *c, uint64_t key, GBytes *data, VdRoTrash *trash)
{
    gint64 now = g_get_monotonic_time();
    int i = find(c, key);
    if (i >= 0) {
        trash_add(trash, c->slots[i].data);
        c->slots[i].data = g_bytes_ref(data);
        touch(c, &c->slots[i], now);
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
    touch(c, s, now);
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
    g_mutex_lock(&c->lock);
    int i = find(c, key);
    if (i >= 0) {
        touch(c, &c->slots[i], now);
        result = g_bytes_ref(c->slots[i].data);
        maybe_sweep(c, now, &trash);
        g_mutex_unlock(&c->lock);
        trash_empty(&trash);
        return result;
    }
    VdRoFlight *f = NULL;
    for (guint k = 0; k < c->flights->len && f == NULL; k++) {
        VdRoFlight *g = g_ptr_array_index(c->flights, k);
        if (g->key == key)
            f = g;
    }
    if (f != NULL) {
        /* Being decoded: wait for it rather than decode it again. */
        f->refs++;
        while (!f->done)
            g_cond_wait(&c->landed, &c->lock);
        result = flight_result(f, error);
        flight_unref(f);
        g_mutex_unlock(&c->lock);
        return result;
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
        touch(c, &c->slots[i], now);
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
