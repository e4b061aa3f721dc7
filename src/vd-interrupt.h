/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Stopping long work early. A read of a compressed stream far from where
 * its decoder stands, or the first pass over a gzip file, can decode for
 * minutes on behalf of one request (a single-frame zstd of RLE blocks
 * holds a terabyte in 32 MB). The process that made the request cannot
 * even be killed meanwhile: the kernel waits for the answer to a FUSE
 * request in flight, and only tells the daemon that its caller got a
 * signal (INTERRUPT). And libfuse's loop waits for every request in
 * hand before the daemon may exit, with its image locks held.
 *
 * So such work asks, every megabyte or so, whether to stop: when the
 * request it serves was interrupted (EINTR; the decoder keeps where it
 * got to, so a caller that retries goes on from there) or the mount is
 * shutting down (ECANCELED, vd_context_cancel).
 */
#ifndef VD_INTERRUPT_H
#define VD_INTERRUPT_H

#include <stdbool.h>

#include <glib.h>

#include "vd-context.h"

/* Whether the request with data was interrupted. Called only from the
 * thread serving it, while it is served. */
typedef bool (*VdInterruptPoll)(void *data);

/* The calling thread serves a request from now until vd_interrupt_leave:
 * long work on this thread polls poll(data). */
void vd_interrupt_enter(VdInterruptPoll poll, void *data);
void vd_interrupt_leave(void);

/* Whether long work done for name should stop now: error set (EINTR or
 * ECANCELED) when it should. ctx may be NULL. */
bool vd_interrupted(VdContext *ctx, const char *name, GError **error);

/* Whether err says work was stopped by vd_interrupted: not a verdict on
 * the image. */
bool vd_error_is_interrupt(const GError *err);

#endif
