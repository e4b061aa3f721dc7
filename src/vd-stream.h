/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Streams read in windows. A compressed stream that decodes only forward
 * (an xz block, a zstd frame, gzip from a restart point) is kept where the
 * last read left it, and read in windows of a fixed size that go into a
 * VdRoCache. To reach a window ahead of it, the stream decodes the windows
 * in between, and the last few of those go into the cache too: the
 * kernel's read-ahead and concurrent readers ask for sequential ranges out
 * of order, and a window passed and dropped would cost a restart of the
 * stream when its read came a moment later (a 400 MiB single-frame zstd
 * read with cat took 14 s that way, against 0.7 s). Each window asks
 * whether to stop (vd-interrupt.h), and a stream stopped so stays
 * consistent where it got to.
 */
#ifndef VD_STREAM_H
#define VD_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "vd-context.h"
#include "vd-ro-cache.h"

/* The stream's next len bytes into out, or past them when out is NULL. */
typedef bool (*VdStreamDecodeFunc)(gpointer user, uint8_t *out, uint64_t len, GError **error);

typedef struct {
    VdRoCache *cache;
    uint64_t window; /* bytes */
    unsigned keep;   /* passed windows to put into the cache, at most */
    VdStreamDecodeFunc decode;
    gpointer user;
    VdContext *ctx; /* whose cancellation stops the stream; may be NULL */
    const char *name;
} VdStreamWindows;

/* Decode the stream from *pos to target, both window-aligned, a window
 * at a time, *pos following; the last s->keep windows before target that
 * the cache lacks are put into it. False with error set when a decode
 * failed (the stream is then broken) or the work is to stop (*stopped:
 * the stream stands at *pos, whole). */
bool vd_stream_pass(const VdStreamWindows *s, uint64_t *pos, uint64_t target, bool *stopped,
                    GError **error);

#endif
