/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Directory scans: listings and lookups of names (fuse/vfs-tree.c). */
#ifndef FUSE_VFS_TREE_H
#define FUSE_VFS_TREE_H

#include "fuse/vfs.h"

/* fs->dirs: relpath -> scan of that directory. */
GHashTable *vfs_dir_table_new(void);

void vfs_child_clear(VfsChild *c);

/* Directory listing: GPtrArray of VfsDirEntry, or NULL with errno. */
GPtrArray *vfs_list_dir(VfsFs *fs, const VfsNode *dir, int *err);
/* Find one name in a directory: 0 and *child (free child->relpath), or -errno. */
int vfs_find_child(VfsFs *fs, const VfsNode *dir, const char *name, VfsChild *child);

#endif
