/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include "src/vd-pool.h"

GThreadPool *vd_pool_get(VdPool *p, GFunc fn, unsigned threads)
{
    if (g_once_init_enter(&p->once)) {
        gint n = threads ? (gint)threads : (gint)g_get_num_processors();
        /* Not exclusive: GLib starts threads as work comes and lets
         * idle ones go. */
        p->pool = g_thread_pool_new(fn, NULL, n, FALSE, NULL);
        g_once_init_leave(&p->once, 1);
    }
    return p->pool;
}
