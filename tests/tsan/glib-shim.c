/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Linked into every program of a --enable-tsan build (in libvdblock.a),
 * so that ThreadSanitizer sees the synchronisation GLib does for us.
 * Debian's GLib is not instrumented, and its GMutex, GCond and g_once
 * are futexes and atomics inside libglib, invisible to TSan: every
 * handoff through them would be reported as a race. The executable's
 * definitions here take the place of GLib's for our code (GLib's own
 * calls stay bound inside libglib, on GLib's own objects), and are built
 * on pthreads, whose calls TSan intercepts. GThreadPool hands a job over
 * through GLib's internal queue: push releases the job, the worker
 * acquires it first. Never part of a normal build.
 */
#define _GNU_SOURCE
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include <glib.h>
#include <sanitizer/tsan_interface.h>

/* The pthread object behind a GLib lock, made on first use (a zeroed
 * static GMutex needs no init). */
static void *lazy(gpointer *slot, size_t size, void (*init)(void *))
{
    void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (p != NULL)
        return p;
    void *fresh = malloc(size);
    if (fresh == NULL)
        abort();
    init(fresh);
    if (__atomic_compare_exchange_n(slot, &p, fresh, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return fresh;
    free(fresh); /* never used: no destroy needed for a fresh object */
    return p;
}

static void mutex_new(void *p)
{
    pthread_mutex_init(p, NULL);
}

static pthread_mutex_t *mutex_of(GMutex *m)
{
    return lazy(&m->p, sizeof(pthread_mutex_t), mutex_new);
}

void g_mutex_init(GMutex *m)
{
    m->p = NULL;
}

void g_mutex_clear(GMutex *m)
{
    if (m->p != NULL) {
        pthread_mutex_destroy(m->p);
        free(m->p);
        m->p = NULL;
    }
}

void g_mutex_lock(GMutex *m)
{
    pthread_mutex_lock(mutex_of(m));
}

void g_mutex_unlock(GMutex *m)
{
    pthread_mutex_unlock(mutex_of(m));
}

gboolean g_mutex_trylock(GMutex *m)
{
    return pthread_mutex_trylock(mutex_of(m)) == 0;
}

static void rwlock_new(void *p)
{
    pthread_rwlock_init(p, NULL);
}

static pthread_rwlock_t *rwlock_of(GRWLock *l)
{
    return lazy(&l->p, sizeof(pthread_rwlock_t), rwlock_new);
}

void g_rw_lock_init(GRWLock *l)
{
    l->p = NULL;
}

void g_rw_lock_clear(GRWLock *l)
{
    if (l->p != NULL) {
        pthread_rwlock_destroy(l->p);
        free(l->p);
        l->p = NULL;
    }
}

void g_rw_lock_writer_lock(GRWLock *l)
{
    pthread_rwlock_wrlock(rwlock_of(l));
}

gboolean g_rw_lock_writer_trylock(GRWLock *l)
{
    return pthread_rwlock_trywrlock(rwlock_of(l)) == 0;
}

void g_rw_lock_writer_unlock(GRWLock *l)
{
    pthread_rwlock_unlock(rwlock_of(l));
}

void g_rw_lock_reader_lock(GRWLock *l)
{
    pthread_rwlock_rdlock(rwlock_of(l));
}

gboolean g_rw_lock_reader_trylock(GRWLock *l)
{
    return pthread_rwlock_tryrdlock(rwlock_of(l)) == 0;
}

void g_rw_lock_reader_unlock(GRWLock *l)
{
    pthread_rwlock_unlock(rwlock_of(l));
}

/* g_cond_wait_until counts in g_get_monotonic_time() microseconds. */
static void cond_new(void *p)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(p, &attr);
    pthread_condattr_destroy(&attr);
}

static pthread_cond_t *cond_of(GCond *c)
{
    return lazy(&c->p, sizeof(pthread_cond_t), cond_new);
}

void g_cond_init(GCond *c)
{
    c->p = NULL;
}

void g_cond_clear(GCond *c)
{
    if (c->p != NULL) {
        pthread_cond_destroy(c->p);
        free(c->p);
        c->p = NULL;
    }
}

void g_cond_wait(GCond *c, GMutex *m)
{
    pthread_cond_wait(cond_of(c), mutex_of(m));
}

gboolean g_cond_wait_until(GCond *c, GMutex *m, gint64 end_time)
{
    struct timespec ts = {.tv_sec = end_time / G_USEC_PER_SEC,
                          .tv_nsec = (end_time % G_USEC_PER_SEC) * 1000};
    return pthread_cond_timedwait(cond_of(c), mutex_of(m), &ts) != ETIMEDOUT;
}

void g_cond_signal(GCond *c)
{
    pthread_cond_signal(cond_of(c));
}

void g_cond_broadcast(GCond *c)
{
    pthread_cond_broadcast(cond_of(c));
}

/* g_once_init_enter/leave: one initialiser per location, the others wait. */
static pthread_mutex_t once_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t once_cond = PTHREAD_COND_INITIALIZER;
static GSList *once_running; /* locations being initialised; once_lock */

gboolean(g_once_init_enter)(volatile void *location)
{
    gsize *loc = (gsize *)location;
    gboolean mine = FALSE;
    pthread_mutex_lock(&once_lock);
    while (__atomic_load_n(loc, __ATOMIC_ACQUIRE) == 0) {
        if (g_slist_find(once_running, loc) == NULL) {
            once_running = g_slist_prepend(once_running, loc);
            mine = TRUE;
            break;
        }
        pthread_cond_wait(&once_cond, &once_lock);
    }
    pthread_mutex_unlock(&once_lock);
    return mine;
}

void(g_once_init_leave)(volatile void *location, gsize result)
{
    gsize *loc = (gsize *)location;
    pthread_mutex_lock(&once_lock);
    __atomic_store_n(loc, result, __ATOMIC_RELEASE);
    once_running = g_slist_remove(once_running, loc);
    pthread_cond_broadcast(&once_cond);
    pthread_mutex_unlock(&once_lock);
}

/* GLib's own function of that name, found once. */
static void *real_fn(void **slot, const char *name)
{
    void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (f == NULL) {
        f = dlsym(RTLD_NEXT, name);
        if (f == NULL)
            abort();
        __atomic_store_n(slot, f, __ATOMIC_RELEASE);
    }
    return f;
}

/* Thread pools: the job is released by the pusher, acquired by the worker. */
typedef struct {
    GFunc func;
    gpointer user_data;
} PoolFunc;

static void pool_trampoline(gpointer data, gpointer user_data)
{
    PoolFunc *f = user_data;
    __tsan_acquire(data);
    f->func(data, f->user_data);
}

GThreadPool *g_thread_pool_new(GFunc func, gpointer user_data, gint max_threads, gboolean exclusive,
                               GError **error)
{
    static void *real;
    GThreadPool *(*fn)(GFunc, gpointer, gint, gboolean, GError **) =
        real_fn(&real, "g_thread_pool_new");
    /* Pools live as long as the process: the PoolFunc too. */
    PoolFunc *f = malloc(sizeof *f);
    if (f == NULL)
        abort();
    f->func = func;
    f->user_data = user_data;
    return fn(pool_trampoline, f, max_threads, exclusive, error);
}

gboolean g_thread_pool_push(GThreadPool *pool, gpointer data, GError **error)
{
    static void *real;
    gboolean (*fn)(GThreadPool *, gpointer, GError **) = real_fn(&real, "g_thread_pool_push");
    __tsan_release(data);
    return fn(pool, data, error);
}

/* GBytes shared between threads (the decoded-block caches) are freed by
 * whichever unref is last: an acquire-release decrement inside libglib.
 * Each unref releases what its thread did and acquires what the earlier
 * unrefs released, as that decrement does. */
void g_bytes_unref(GBytes *bytes)
{
    static void *real;
    void (*fn)(GBytes *) = real_fn(&real, "g_bytes_unref");
    if (bytes != NULL) {
        __tsan_release(bytes);
        __tsan_acquire(bytes);
    }
    fn(bytes);
}
