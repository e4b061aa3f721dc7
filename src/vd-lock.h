/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The byte-range locks QEMU's file-posix driver takes, so that vdiskfs and
 * QEMU keep out of each other's way: an OFD read lock on byte 100+i for each
 * permission i used, and on byte 200+i for each permission not shared.
 */
#ifndef VD_LOCK_H
#define VD_LOCK_H

#include <stdbool.h>
#include <sys/stat.h>

#include <glib.h>

#include "vd-context.h"

/* Put fd's locks in the state of a reader (consistent read; writers not
 * allowed) or a writer (write and resize too; other writers and resizers
 * not allowed): a reader that was a writer releases the writer's bytes,
 * and a writer that cannot become one stays a reader. With force_share
 * (qemu-img -U) a reader takes and checks no locks; a writer always does,
 * since two writers corrupt an image. EBUSY with a message naming what
 * conflicts, and whether it is another image of this same mount (a child
 * reading it as its backing file). A host filesystem without OFD locks
 * (some network ones) is warned about once and then ignored, as QEMU's
 * locking=auto does. st identifies the file for that message. */
bool vd_lock_fd(VdContext *ctx, int fd, const struct stat *st, const char *name, bool writable,
                GError **error);
/* Say that this process holds fd's file locked (as a reader or writer)
 * or no longer does, so that a conflict can be told apart from another
 * process's. */
void vd_lock_note(VdContext *ctx, const struct stat *st, bool held);

#endif
