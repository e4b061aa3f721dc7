/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Reading /dev/fuse for libfuse. The read that finds the connection gone
 * (ENODEV: unmounted, or aborted through /sys/fs/fuse/connections)
 * cancels the mount's long work there and then: libfuse's loop waits for
 * every request in hand before it returns, and one decoding a hostile
 * stream far into a file would keep the daemon, and its image locks, for
 * as long as that decode takes (vd-interrupt.h).
 */
#ifndef VFS_DEVIO_H
#define VFS_DEVIO_H

#include <stdbool.h>
#include <sys/types.h>

#include <glib.h>

#include "fuse/vfs.h"

/* read(2) of /dev/fuse for the mount fs (the session's user data). */
ssize_t vfs_devio_read(int fd, void *buf, size_t len, VfsFs *fs);
/* Read se's /dev/fuse through vfs_devio_read (when the ring, which does
 * so itself, is not installed). False with error when libfuse refuses. */
bool vfs_devio_install(struct fuse_session *se, GError **error);

#endif
