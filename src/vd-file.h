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
 * - A container (an .xz, an E01: src/vd-container.h) is opened as the
 *   source of what it holds, read-only.
 */
#ifndef VD_FILE_H
#define VD_FILE_H

#include <stdbool.h>
#include <sys/stat.h>

#include <glib.h>

#include "vd-context.h"

struct VdContainer;

enum {
    VD_FILE_WRITE = 1u << 0,        /* read-write if the host lets us */
    VD_FILE_DIRECTORY = 1u << 1,    /* a directory (a bundle), read-only fd */
    VD_FILE_NO_LOCK = 1u << 2,      /* probing or peeking: no locks */
    VD_FILE_MEMBER = 1u << 3,       /* named inside an image, or a backing file */
    VD_FILE_PROBE = 1u << 4,        /* a file or a directory, no locks: what is it? */
    VD_FILE_NO_CONTAINER = 1u << 5, /* the file itself, even when it is a container */
    /* With VD_FILE_PROBE: of a container whose size costs a full decode,
     * only its first bytes (vd_container_open_head), see head_only. */
    VD_FILE_PROBE_HEAD = 1u << 6,
};

typedef struct {
    int fd;
    int lock_fd;                         /* where QEMU's locks are: fd, or a container's own file */
    bool writable;                       /* opened read-write (or, for a directory, asked to be) */
    bool locked;                         /* holds QEMU's locks (vd_lock_note'd) */
    const struct VdContainer *container; /* what fd is the source of, or NULL */
    bool head_only; /* fd reads only the first bytes of what the container holds */
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
/* The container a plain file at path is, by its magic, or NULL (for
 * listing a container that cannot be opened, with its error). */
const struct VdContainer *vd_file_container_of(VdContext *ctx, const char *path);
/* The images of an archive at path that holds two or more (g_ptr_array of
 * names, each openable as path/name), else NULL: the mount shows such an
 * archive as a directory. */
GPtrArray *vd_file_archive_members(VdContext *ctx, const char *path);
/* The directory that holds the file path names (g_free): its parent, or,
 * for a member of an archive (ARCHIVE/MEMBER, which vd_file_open opens),
 * the archive's parent. What a program that opens one image confines it
 * to. */
char *vd_file_directory_of(const char *path);
/* Close a descriptor vd_file_open gave (a source's too: src/vd-source.h). */
void vd_file_close(int fd);
/* Take the locks of a file opened with VD_FILE_NO_LOCK, for f->writable. */
bool vd_file_lock(VdContext *ctx, VdFile *f, const char *name, GError **error);

#endif
