/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <string.h>

#include "vd-image.h"
#include "vd-pool.h"
#include "vd-readahead.h"

struct VdReadahead {
    GMutex lock;
    GCond done;
    uint64_t next; /* where a sequential reader will read next; atomic */
    /* atomic: running || valid. Readers of data that needs no decoding
     * check it (and swap next) without taking the lock. */
    bool armed;
    uint64_t off; /* the range read ahead; lock */
    size_t len;
    uint8_t *buf;   /* its bytes, once valid; lock */
    bool running;   /* a worker is filling buf; lock */
    bool valid;     /* buf holds [off, off+len) as the image is now; lock */
    unsigned epoch; /* bumped by every write: a worker's result from an older epoch is stale */
};

typedef struct {
    VdImage *img;
    uint64_t off;
    size_t len;
    unsigned epoch;
} RaJob;

static VD_POOL(ra_pool);

static void ra_work(gpointer data, gpointer user_data)
{
    RaJob *j = data;
    VdReadahead *ra = j->img->readahead;
    uint8_t *buf = g_malloc(j->len);
    bool decoded;
    bool ok = vd_image_pread_direct(j->img, buf, j->len, j->off, &decoded, NULL);
    g_mutex_lock(&ra->lock);
    if (ok && ra->epoch == j->epoch) {
        g_free(ra->buf);
        ra->buf = buf;
        buf = NULL;
        ra->valid = true;
    }
    ra->running = false;
    __atomic_store_n(&ra->armed, ra->valid, __ATOMIC_RELAXED);
    g_cond_broadcast(&ra->done);
    g_mutex_unlock(&ra->lock);
    g_free(buf);
    vd_image_unref(j->img);
    g_free(j);
}

VdReadahead *vd_readahead_new(void)
{
    VdReadahead *ra = g_new0(VdReadahead, 1);
    g_mutex_init(&ra->lock);
    g_cond_init(&ra->done);
    ra->next = UINT64_MAX;
    return ra;
}

void vd_readahead_free(VdReadahead *ra)
{
    if (ra == NULL)
        return;
    /* Workers hold a reference on the image: none can be running here. */
    g_free(ra->buf);
    g_mutex_clear(&ra->lock);
    g_cond_clear(&ra->done);
    g_free(ra);
}

bool vd_readahead_take(VdImage *img, void *buf, size_t len, uint64_t offset)
{
    VdReadahead *ra = img->readahead;
    if (len < VD_READAHEAD_MIN || !__atomic_load_n(&ra->armed, __ATOMIC_RELAXED))
        return false;
    g_mutex_lock(&ra->lock);
    uint8_t *got = NULL;
    if ((ra->running || ra->valid) && ra->off == offset && len <= ra->len) {
        while (ra->running)
            g_cond_wait(&ra->done, &ra->lock);
        /* Another reader may have started a shorter read-ahead of the
         * same start while this one waited: check the length again. */
        if (ra->valid && ra->off == offset && len <= ra->len)
            got = g_steal_pointer(&ra->buf);
    }
    if (got != NULL) {
        ra->valid = false;
        __atomic_store_n(&ra->armed, false, __ATOMIC_RELAXED);
    }
    g_mutex_unlock(&ra->lock);
    if (got == NULL)
        return false;
    /* The next range goes to the cores before this one is copied out:
     * they decode on while this thread copies. */
    vd_readahead_note(img, len, offset, true);
    memcpy(buf, got, len);
    g_free(got);
    return true;
}

void vd_readahead_note(VdImage *img, size_t len, uint64_t offset, bool decoded)
{
    VdReadahead *ra = img->readahead;
    if (len < VD_READAHEAD_MIN)
        return;
    uint64_t next = offset + len;
    bool sequential = __atomic_exchange_n(&ra->next, next, __ATOMIC_RELAXED) == offset;
    if (!decoded || !sequential)
        return;
    RaJob *j = NULL;
    g_mutex_lock(&ra->lock);
    if (!ra->running && next < vd_image_size(img)) {
        j = g_new0(RaJob, 1);
        j->img = vd_image_ref(img);
        j->off = next;
        j->len = (size_t)MIN((uint64_t)len, vd_image_size(img) - next);
        j->epoch = ra->epoch;
        ra->off = j->off;
        ra->len = j->len;
        ra->valid = false;
        ra->running = true;
        __atomic_store_n(&ra->armed, true, __ATOMIC_RELAXED);
    }
    g_mutex_unlock(&ra->lock);
    /* One reader ahead at a time is enough for two cores; its own
     * decoding still fans out on the decode pool. */
    if (j != NULL)
        g_thread_pool_push(vd_pool_get(&ra_pool, ra_work, 1), j, NULL);
}

void vd_readahead_invalidate(VdImage *img)
{
    VdReadahead *ra = img->readahead;
    g_mutex_lock(&ra->lock);
    ra->epoch++;
    ra->valid = false;
    __atomic_store_n(&ra->armed, ra->running, __ATOMIC_RELAXED);
    __atomic_store_n(&ra->next, UINT64_MAX, __ATOMIC_RELAXED);
    g_mutex_unlock(&ra->lock);
}

void vd_readahead_wait(VdImage *img)
{
    VdReadahead *ra = img->readahead;
    g_mutex_lock(&ra->lock);
    while (ra->running)
        g_cond_wait(&ra->done, &ra->lock);
    g_mutex_unlock(&ra->lock);
}
