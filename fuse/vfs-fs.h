/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The mount's lifetime and the handles it tracks (fuse/vfs-fs.c). */
#ifndef FUSE_VFS_FS_H
#define FUSE_VFS_FS_H

#include "fuse/vfs.h"

VfsFs *vfs_new(VdContext *ctx, const VfsOptions *opts);
void vfs_free(VfsFs *fs);
/* Flush and close every image (unmount, SIGTERM). */
void vfs_close_all(VfsFs *fs);

/* Write handles, so that unmount and SIGTERM flush images that open files
 * still hold (perhaps replaced on the host and so no longer in images). */
void vfs_writer_add(VfsFs *fs, VdImage *img);
/* Returns how many write handles of img are left. */
guint vfs_writer_remove(VfsFs *fs, VdImage *img);
guint vfs_writer_count(VfsFs *fs, VdImage *img);
/* Open file handles: an unmount (or SIGTERM) can come before the kernel's
 * RELEASE of the last ones; vfs_free() frees what is left. */
void vfs_handle_add(VfsFs *fs, gpointer handle);
void vfs_handle_remove(VfsFs *fs, gpointer handle);

#endif
