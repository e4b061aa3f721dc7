/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Live directories: inotify on IMAGEDIR (fuse/vfs-watch.c). */
#ifndef FUSE_VFS_WATCH_H
#define FUSE_VFS_WATCH_H

#include "fuse/vfs.h"

bool vfs_watch_start(VfsFs *fs, struct fuse_session *se);
void vfs_watch_stop(VfsFs *fs);
void vfs_watch_dir(VfsFs *fs, const char *relpath);

#endif
