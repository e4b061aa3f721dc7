/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include "vd-decode.h"
#include "vd-dispatch.h"
#include "vd-error.h"
#include "vd-pool.h"

typedef struct {
    VdDecodeBatch *batch;
    VdImage *img;
    void *buf;
    size_t len;
    uint64_t offset;
} DecodeJob;

struct VdDecodeBatch {
    GMutex lock;
    GCond done;
    unsigned pending;   /* jobs on the pool not finished; lock */
    GError *error;      /* the first failure; lock */
    DecodeJob deferred; /* the first job, held back: one job runs inline */
    bool has_deferred;
    bool pooled;
};

static VD_POOL(decode_pool);
/* Set in pool threads: a decode that reads a backing image which needs
 * decoding too runs inline there, so the pool never waits on itself. */
static GPrivate in_worker;

static void job_record(VdDecodeBatch *b, GError *e)
{
    g_mutex_lock(&b->lock);
    if (e != NULL && b->error == NULL)
        b->error = e;
    else if (e != NULL)
        g_error_free(e);
    g_mutex_unlock(&b->lock);
}

static void job_run(DecodeJob *j)
{
    GError *e = NULL;
    if (!vd_drv_pread(j->img, j->buf, j->len, j->offset, &e) && e == NULL)
        e = g_error_new(VD_ERROR, EIO, "%s: decoding failed", j->img->name);
    job_record(j->batch, e);
}

static void pool_func(gpointer data, gpointer user_data)
{
    g_private_set(&in_worker, GINT_TO_POINTER(1));
    DecodeJob *j = data;
    VdDecodeBatch *b = j->batch;
    job_run(j);
    g_free(j);
    g_mutex_lock(&b->lock);
    if (--b->pending == 0)
        g_cond_signal(&b->done);
    g_mutex_unlock(&b->lock);
}

VdDecodeBatch *vd_decode_batch_new(void)
{
    VdDecodeBatch *b = g_new0(VdDecodeBatch, 1);
    g_mutex_init(&b->lock);
    g_cond_init(&b->done);
    return b;
}

static void push(VdDecodeBatch *b, const DecodeJob *j)
{
    g_mutex_lock(&b->lock);
    b->pending++;
    g_mutex_unlock(&b->lock);
    g_thread_pool_push(vd_pool_get(&decode_pool, pool_func, 0), g_memdup2(j, sizeof *j), NULL);
    b->pooled = true;
}

void vd_decode_batch_add(VdDecodeBatch *b, VdImage *img, void *buf, size_t len, uint64_t offset)
{
    DecodeJob j = {b, img, buf, len, offset};
    if (g_private_get(&in_worker) != NULL) {
        job_run(&j);
        return;
    }
    if (!b->has_deferred) {
        b->deferred = j;
        b->has_deferred = true;
        return;
    }
    push(b, &j);
}

bool vd_decode_batch_finish(VdDecodeBatch *b, GError **error)
{
    /* The held-back job runs here, in parallel with what went to the pool. */
    if (b->has_deferred)
        job_run(&b->deferred);
    g_mutex_lock(&b->lock);
    while (b->pending > 0)
        g_cond_wait(&b->done, &b->lock);
    GError *e = g_steal_pointer(&b->error);
    g_mutex_unlock(&b->lock);
    g_mutex_clear(&b->lock);
    g_cond_clear(&b->done);
    g_free(b);
    if (e != NULL) {
        g_propagate_error(error, e);
        return false;
    }
    return true;
}
