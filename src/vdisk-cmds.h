/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vdisk's commands that live in files of their own; each returns the
 * program's exit status. */
#ifndef VDISK_CMDS_H
#define VDISK_CMDS_H

#include "vd-image.h"

int vdisk_cmd_check(VdImage *img);
int vdisk_cmd_partitions(VdImage *img);

#endif
