/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The one way to open a file an image consists of: the image itself, its
 * backing files, and the files named inside it (VMDK extents, qcow2 data
 * files, bundle layers, split parts).
 *
 * - Confined: under IMAGEDIR, the path is resolved beneath it with
 *   openat2(RESOLVE_BENEATH), race-free: symlinks are followed only while
 *   they stay inside. Images obey -o symlinks=, files named inside images
 *   and backing files -o backing=.
 * - Never blocks: opened O_NONBLOCK|O_NOCTTY, then its type checked: a
 *   regular file or block device (or a directory where one is asked for);
 *   a FIFO, socket or character device is refused with a clear error.
 * - Read-write where asked and the host allows it, else read-only.
 * - QEMU's locks taken for the mode it got (unless VD_FILE_NO_LOCK).
 */
#ifndef VD_FILE_H
#define VD_FILE_H

#include <stdbool.h>
#include <sys/stat.h>

#include <glib.h>

#include "vd-context.h"

enum {
    VD_FILE_WRITE = 1u << 0,     /* read-write if the host lets us */
    VD_FILE_DIRECTORY = 1u << 1, /* a directory (a bundle), read-only fd */
    VD_FILE_NO_LOCK = 1u << 2,   /* probing or peeking: no locks */
    VD_FILE_MEMBER = 1u << 3,    /* named inside an image, or a backing file */
    VD_FILE_PROBE = 1u << 4,     /* a file or a directory, no locks: what is it? */
};

typedef struct {
    int fd;
    bool writable; /* opened read-write (or, for a directory, asked to be) */
    bool locked;   /* holds QEMU's locks (vd_lock_note'd) */
    struct stat st;
} VdFile;

/* Open path (absolute, or relative to the working directory) as name (for
 * messages). EACCES when it resolves outside IMAGEDIR under a confined
 * policy, EBUSY when locked by another writer, EIO for a file that is not
 * of a usable type. The fd is the caller's to close; a locked one must
 * be released with vd_file_forget() before. */
bool vd_file_open(VdContext *ctx, const char *path, const char *name, unsigned flags, VdFile *out,
                  GError **error);
void vd_file_forget(VdContext *ctx, VdFile *f);
/* Take the locks of a file opened with VD_FILE_NO_LOCK, for f->writable. */
bool vd_file_lock(VdContext *ctx, VdFile *f, const char *name, GError **error);

#endif
