/* SPDX-License-Identifier: GPL-2.0-or-later */
/* .partitions/ (fuse/vfs-partitions.c). */
#ifndef FUSE_VFS_PARTITIONS_H
#define FUSE_VFS_PARTITIONS_H

#include "fuse/vfs.h"

/* The same jobs as vfs-tree.h, vfs-stat.h and vfs-node.h, for its nodes. */
GPtrArray *vfs_part_list_dir(VfsFs *fs, const VfsNode *dir, int *err);
int vfs_part_find_child(VfsFs *fs, const VfsNode *dir, const char *name, VfsChild *child);
int vfs_part_stat(VfsFs *fs, VfsNode *node, VdImage *open_img, struct stat *st);
/* The partition as an image (a slice of its disk), opened for writing
 * when rw (live images on rw mounts only), referenced; NULL and -errno. */
VdImage *vfs_part_open(VfsFs *fs, VfsNode *node, bool rw, int *err);
/* user.vdiskfs.partition.* of a PARTFILE, user.vdiskfs.error and
 * .partition.table of a PARTIMG: name/value pairs added to kv. */
void vfs_part_xattrs(VfsFs *fs, VfsNode *node, GPtrArray *kv);

#endif
