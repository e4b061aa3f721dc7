/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Container indexes shared between the opens of one file (vd-index-cache.h). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "vd-error.h"
#include "vd-interrupt.h"
#include "vd-index-cache.h"
#include "vd-io.h"

typedef struct {
    VdIndexKey key; /* key.ctx referenced */
    gpointer index; /* NULL while being built */
    uint64_t bytes;
    GDestroyNotify free_index;
    int refs; /* opens holding it, and builders and waiters */
    bool building;
    bool failed;     /* the build failed: waiters try again */
    gint64 released; /* monotonic time refs went to 0 */
} IndexEntry;

/* How often a waiter for a build looks whether its request was given up. */
#define INDEX_WAIT_POLL_USEC (50 * 1000)

/* Most recently used or released first. */
static GMutex cache_lock;
static GCond cache_built;
static GList *cache_entries;
static uint64_t cache_builds;

static bool key_equal(const VdIndexKey *a, const VdIndexKey *b)
{
    return a->ctx == b->ctx && strcmp(a->kind, b->kind) == 0 && a->dev == b->dev &&
           a->ino == b->ino && a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec && a->ctime.tv_sec == b->ctime.tv_sec &&
           a->ctime.tv_nsec == b->ctime.tv_nsec && memcmp(a->tail, b->tail, sizeof a->tail) == 0;
}

static void entry_free(IndexEntry *e)
{
    if (e->index != NULL)
        e->free_index(e->index);
    vd_context_unref(e->key.ctx);
    g_free(e);
}

/* Drop the unused entries past the keep limits; under cache_lock. */
static void cache_expire(void)
{
    gint64 now = g_get_monotonic_time();
    unsigned kept = 0;
    uint64_t kept_bytes = 0;
    for (GList *l = cache_entries, *next; l != NULL; l = next) {
        IndexEntry *e = l->data;
        next = l->next;
        if (e->refs > 0)
            continue;
        kept++;
        kept_bytes += e->bytes;
        /* The last one released stays whatever its size: it is the one
         * the next open (after a probe, a stat) most likely wants. */
        bool over = kept > 1 && (kept > VD_INDEX_KEEP_COUNT || kept_bytes > VD_INDEX_KEEP_BYTES);
        if (over || now - e->released > VD_INDEX_KEEP_USEC) {
            cache_entries = g_list_delete_link(cache_entries, l);
            entry_free(e);
        }
    }
}

static IndexEntry *cache_find(const VdIndexKey *key)
{
    for (GList *l = cache_entries; l != NULL; l = l->next) {
        IndexEntry *e = l->data;
        if (!e->failed && key_equal(&e->key, key))
            return e;
    }
    return NULL;
}

static void cache_touch(IndexEntry *e)
{
    cache_entries = g_list_remove(cache_entries, e);
    cache_entries = g_list_prepend(cache_entries, e);
}

/* One reference less; under cache_lock. */
static void entry_put(IndexEntry *e)
{
    if (--e->refs > 0)
        return;
    if (e->failed) {
        cache_entries = g_list_remove(cache_entries, e);
        entry_free(e);
        return;
    }
    e->released = g_get_monotonic_time();
    cache_touch(e);
    cache_expire();
}

bool vd_index_key_of(VdContext *ctx, const char *kind, int fd, const char *name, VdIndexKey *key,
                     GError **error)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        vd_set_error_errno(error, errno, "%s", name);
        return false;
    }
    *key = (VdIndexKey){
        .kind = kind,
        .ctx = ctx,
        .dev = st.st_dev,
        .ino = st.st_ino,
        .size = st.st_size,
        .mtime = st.st_mtim,
        .ctime = st.st_ctim,
    };
    size_t tail_len = (size_t)MIN((uint64_t)st.st_size, sizeof key->tail);
    return vd_host_pread(fd, name, key->tail, tail_len, (uint64_t)st.st_size - tail_len, false,
                         error);
}

gpointer vd_index_cache_get(const VdIndexKey *key, VdIndexBuildFunc build, gpointer user,
                            GDestroyNotify free_index, GError **error)
{
    g_mutex_lock(&cache_lock);
    cache_expire();
    for (;;) {
        IndexEntry *e = cache_find(key);
        if (e == NULL)
            break;
        e->refs++;
        /* A build can take minutes (a gzip of a terabyte of zeros): the
         * waiter's own request may be given up meanwhile. */
        while (e->building) {
            g_cond_wait_until(&cache_built, &cache_lock,
                              g_get_monotonic_time() + INDEX_WAIT_POLL_USEC);
            if (e->building && vd_interrupted(key->ctx, key->kind, error)) {
                entry_put(e);
                g_mutex_unlock(&cache_lock);
                return NULL;
            }
        }
        if (e->failed) {
            /* Its builder's error was its own: build again here. */
            entry_put(e);
            continue;
        }
        cache_touch(e);
        g_mutex_unlock(&cache_lock);
        return e->index;
    }
    IndexEntry *e = g_new0(IndexEntry, 1);
    e->key = *key;
    vd_context_ref(key->ctx);
    e->free_index = free_index;
    e->refs = 1;
    e->building = true;
    cache_entries = g_list_prepend(cache_entries, e);
    cache_builds++;
    g_mutex_unlock(&cache_lock);

    uint64_t bytes = 0;
    gpointer index = build(user, &bytes, error);

    g_mutex_lock(&cache_lock);
    e->building = false;
    e->index = index;
    e->bytes = bytes;
    e->failed = index == NULL;
    g_cond_broadcast(&cache_built);
    if (index == NULL)
        entry_put(e);
    g_mutex_unlock(&cache_lock);
    return index;
}

void vd_index_cache_release(gpointer index)
{
    if (index == NULL)
        return;
    g_mutex_lock(&cache_lock);
    for (GList *l = cache_entries; l != NULL; l = l->next) {
        IndexEntry *e = l->data;
        if (e->index == index) {
            entry_put(e);
            break;
        }
    }
    g_mutex_unlock(&cache_lock);
}

unsigned vd_index_cache_count(void)
{
    g_mutex_lock(&cache_lock);
    unsigned n = g_list_length(cache_entries);
    g_mutex_unlock(&cache_lock);
    return n;
}

uint64_t vd_index_cache_builds(void)
{
    g_mutex_lock(&cache_lock);
    uint64_t n = cache_builds;
    g_mutex_unlock(&cache_lock);
    return n;
}

void vd_index_cache_drop_unused(void)
{
    g_mutex_lock(&cache_lock);
    for (GList *l = cache_entries, *next; l != NULL; l = next) {
        IndexEntry *e = l->data;
        next = l->next;
        if (e->refs == 0) {
            cache_entries = g_list_delete_link(cache_entries, l);
            entry_free(e);
        }
    }
    g_mutex_unlock(&cache_lock);
}
