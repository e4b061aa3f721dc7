/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Copy-on-write overlays (-o overlay=DIR): the images of IMAGEDIR are only
 * ever read; writes go to DIR/<path of image>.qcow2, an ordinary qcow2
 * whose backing file is the original (absolute path, format recorded), so
 * that qemu-img and QEMU open it as the chain it is. The overlay records
 * the original's size and mtime; one whose original has changed since is
 * refused rather than applied to another base.
 */
#ifndef VD_OVERLAY_H
#define VD_OVERLAY_H

#include <stdbool.h>

#include <glib.h>

#include "vd-context.h"
#include "vd-image.h"

/* Where the overlay of relpath (an image below IMAGEDIR) lives. */
char *vd_overlay_path(VdContext *ctx, const char *relpath);

/* The overlay of the image at host path original (relpath below IMAGEDIR)
 * opened as a chain over it, read-write when rw. NULL without error when
 * it has no overlay yet; NULL with error when the overlay cannot be used
 * (its original changed, it is not an overlay of this image, or it is
 * damaged). */
VdImage *vd_overlay_open(VdContext *ctx, const char *relpath, const char *original,
                         const char *snapshot, bool rw, GError **error);

/* Make the overlay (and the directories it lives in) over original, of
 * the original's virtual size, and open it read-write. */
VdImage *vd_overlay_create(VdContext *ctx, const char *relpath, const char *original,
                           GError **error);

/* The overlay of an internal snapshot of original: QEMU cannot name an
 * internal snapshot as a backing file, so it is a qcow2 of its own into
 * which the snapshot's data is copied first (relpath: where it lives
 * below the overlay directory; snapshot: the snapshot's id, recorded).
 * Opened read-write. vd_overlay_open with the same snapshot reopens it. */
VdImage *vd_overlay_create_copy(VdContext *ctx, const char *relpath, const char *original,
                                const char *snapshot, VdImage *src, GError **error);

#endif
