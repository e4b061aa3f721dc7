/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * FUSE over io_uring (Linux 6.14+, fuse.enable_uring=1): the kernel hands
 * requests to ring entries instead of read(2)s of /dev/fuse, and takes
 * the reply with the next fetch in one system call. libfuse 3.14 does not
 * speak it, so this sits beside libfuse: a custom /dev/fuse I/O layer
 * offers FUSE_OVER_IO_URING in the INIT reply, threads registered on every
 * queue hand each request to fuse_session_process_buf() as if read from
 * /dev/fuse, and replies written through the layer go back into the
 * request's entry. /dev/fuse stays in use for what the kernel still sends
 * there (INIT, FORGET, INTERRUPT, and everything before the ring is
 * ready) and for notifications.
 */
#ifndef VFS_URING_H
#define VFS_URING_H

#include <stdbool.h>
#include <stddef.h>

#include <glib.h>

#include "fuse/vfs.h"

typedef struct VfsUring VfsUring;

/* Take over se's /dev/fuse I/O (after fuse_session_mount) so that the ring
 * can be set up when the kernel offers it at INIT; depth entries per
 * queue (one per CPU). NULL with error if libfuse refuses. */
VfsUring *vfs_uring_install(struct fuse_session *se, unsigned depth, GError **error);
/* Whether this kernel turns the ring on for new mounts (the fuse module's
 * enable_uring parameter reads Y). */
bool vfs_uring_kernel_enabled(void);
/* Stop the ring's threads (after the session loop ended) and free it. */
void vfs_uring_free(VfsUring *u);

/* The READ fast path: when the request being handled on this thread came
 * through the ring, its entry's payload buffer (at least len bytes), to
 * read into in place; else NULL. */
void *vfs_uring_read_buffer(size_t len);
/* Reply to that READ with the first len bytes of its buffer. */
void vfs_uring_reply_read(fuse_req_t req, size_t len);

#endif
