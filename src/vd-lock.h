/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The byte-range locks QEMU's file-posix driver takes, so that vdiskfs and
 * QEMU keep out of each other's way: an OFD read lock on byte 100+i for each
 * permission i used, and on byte 200+i for each permission not shared.
 */
#ifndef VD_LOCK_H
#define VD_LOCK_H

#include <stdbool.h>

#include <glib.h>

/* Lock fd for reading (consistent read; writers not allowed) or writing
 * (write and resize; other writers and resizers not allowed). With
 * force_share (qemu-img -U), nothing is locked or checked. EBUSY with a
 * message naming what conflicts. */
bool vd_lock_fd(int fd, const char *name, bool writable, bool force_share, GError **error);

#endif
