/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Extended attributes user.vdiskfs.* (fuse/vfs-xattr.c). */
#ifndef FUSE_VFS_XATTR_H
#define FUSE_VFS_XATTR_H

#include "fuse/vfs.h"

/* Value into buf (size 0 = just the length);
 * returns length or -errno. */
ssize_t vfs_xattr_get(VfsFs *fs, VfsNode *node, const char *name, char *buf, size_t size);
ssize_t vfs_xattr_list(VfsFs *fs, VfsNode *node, char *buf, size_t size);

#endif
