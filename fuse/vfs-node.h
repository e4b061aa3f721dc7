/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The node table and the image a node shows (fuse/vfs-node.c). */
#ifndef FUSE_VFS_NODE_H
#define FUSE_VFS_NODE_H

#include "fuse/vfs.h"

/* Made by vfs_new with the root node, freed by vfs_free. */
void vfs_node_table_init(VfsFs *fs);
void vfs_node_table_clear(VfsFs *fs);

/* Nodes. vfs_node_lookup takes one lookup reference (for a FUSE entry reply). */
VfsNode *vfs_node_get(VfsFs *fs, fuse_ino_t ino);
VfsNode *vfs_node_lookup(VfsFs *fs, const VfsChild *child);
void vfs_node_forget(VfsFs *fs, fuse_ino_t ino, uint64_t n);
/* Whether the kernel's cached pages of node still match a host file with
 * this mtime; records it for next time. */
bool vfs_node_cache_still_valid(VfsFs *fs, VfsNode *node, const struct timespec *mtime);

/* The image a node shows (IMAGE or SNAPFILE), referenced, or NULL and
 * -errno (ESTALE when the host file was replaced since the lookup). */
VdImage *vfs_node_image(VfsFs *fs, VfsNode *node, int *err);
/* Same, opened read-write (IMAGE nodes only). */
VdImage *vfs_node_image_rw(VfsFs *fs, VfsNode *node, int *err);
/* The VfsImage of an IMAGE node, or NULL and -errno (ESTALE as above). */
VfsImage *vfs_node_vfs_image(VfsFs *fs, VfsNode *node, int *err);
/* The same, with the host file's stat when it is still the node's file
 * (*host_st_valid), so that a listing stats each file once. */
VfsImage *vfs_node_vfs_image_stat(VfsFs *fs, VfsNode *node, int *err, struct stat *host_st,
                                  bool *host_st_valid);

#endif
