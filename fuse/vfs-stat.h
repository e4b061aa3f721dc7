/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Attributes of nodes (fuse/vfs-stat.c). */
#ifndef FUSE_VFS_STAT_H
#define FUSE_VFS_STAT_H

#include "fuse/vfs.h"

/* Attributes of a node; from open_img (an open handle's image) when given,
 * so a file replaced on the host still stats as what the handle reads.
 * -errno on failure. */
int vfs_node_stat(VfsFs *fs, VfsNode *node, VdImage *open_img, struct stat *st);

#endif
