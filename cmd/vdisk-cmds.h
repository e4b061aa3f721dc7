/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vdisk's commands that live in files of their own; each returns the
 * program's exit status. */
#ifndef VDISK_CMDS_H
#define VDISK_CMDS_H

#include <stdbool.h>

#include "src/vd-image.h"

/* filename: the image as the user named it; json: qemu-img's JSON
 * (check) or an object of the table (partitions) instead of text. */
int vdisk_cmd_check(VdImage *img, const char *filename, bool json);
int vdisk_cmd_partitions(VdImage *img, bool json);

#endif
