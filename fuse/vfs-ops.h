/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The FUSE low-level operations (fuse/vfs-ops.c). */
#ifndef FUSE_VFS_OPS_H
#define FUSE_VFS_OPS_H

#include "fuse/vfs.h"

extern const struct fuse_lowlevel_ops vfs_ops;

/* Frees an open file handle (vfs_free frees those the kernel never
 * released). */
void vfs_handle_free(gpointer handle);

#endif
