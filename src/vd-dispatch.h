/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The one place the block layer calls a driver's data callbacks: results
 * are checked here, once (an extent of no length, or longer than asked,
 * DATA without a descriptor, DATA_DECODE from a driver that cannot
 * decode, a state that is none of the four), and every call can be traced
 * (vd_dispatch_trace, set by vdiskfs -d).
 */
#ifndef VD_DISPATCH_H
#define VD_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "vd-image.h"

/* Log every driver call at debug level. */
void vd_dispatch_set_trace(bool on);

bool vd_drv_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                         VdExtent *ext, GError **error);
bool vd_drv_pread(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error);
bool vd_drv_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error);
int vd_drv_pwrite_fast(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error);
bool vd_drv_write_zeroes(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                         GError **error);
bool vd_drv_flush(VdImage *img, GError **error);

#endif
