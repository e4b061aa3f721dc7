/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <unistd.h>

#include "src/vd-pool.h"

void vd_thread_unpin(void)
{
    static __thread bool done;
    if (done)
        return;
    done = true;
    /* The main thread's affinity (its thread id is the process id) is
     * the process's own: what taskset(1) or a cgroup gave it. */
    cpu_set_t set;
    if (sched_getaffinity(getpid(), sizeof set, &set) == 0 &&
        sched_setaffinity(0, sizeof set, &set) != 0)
        g_debug("cannot widen a worker thread's CPU affinity: %s", g_strerror(errno));
}

/* GLib starts a pool's threads from whichever thread pushes work (or its
 * spawner thread, itself started by the first pusher): unpin each before
 * its first job. */
static void pool_trampoline(gpointer data, gpointer user_data)
{
    VdPool *p = user_data;
    vd_thread_unpin();
    p->fn(data, NULL);
}

GThreadPool *vd_pool_get(VdPool *p, GFunc fn, unsigned threads)
{
    if (g_once_init_enter(&p->once)) {
        gint n = threads ? (gint)threads : (gint)g_get_num_processors();
        p->fn = fn;
        /* Not exclusive: GLib starts threads as work comes and lets
         * idle ones go. */
        p->pool = g_thread_pool_new(pool_trampoline, p, n, FALSE, NULL);
        g_once_init_leave(&p->once, 1);
    }
    return p->pool;
}
