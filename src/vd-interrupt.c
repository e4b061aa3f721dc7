/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Stopping long work early (see vd-interrupt.h). */
#include "config.h"

#include "vd-interrupt.h"
#include "vd-error.h"

#include <errno.h>

typedef struct {
    VdInterruptPoll poll;
    void *data;
} VdRequestPoll;

static __thread VdRequestPoll current;

void vd_interrupt_enter(VdInterruptPoll poll, void *data)
{
    current = (VdRequestPoll){poll, data};
}

void vd_interrupt_leave(void)
{
    current = (VdRequestPoll){NULL, NULL};
}

bool vd_interrupted(VdContext *ctx, const char *name, GError **error)
{
    if (ctx != NULL && vd_context_cancelled(ctx)) {
        vd_set_error(error, ECANCELED, "%s: stopped: the mount is shutting down", name);
        return true;
    }
    if (current.poll != NULL && current.poll(current.data)) {
        vd_set_error(error, EINTR, "%s: stopped: the request was interrupted", name);
        return true;
    }
    return false;
}

bool vd_error_is_interrupt(const GError *err)
{
    int e = err != NULL ? vd_error_errno(err) : 0;
    return e == EINTR || e == ECANCELED;
}
