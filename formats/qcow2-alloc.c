/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qcow2 writes (not yet). */
#include "config.h"

#include "formats/qcow2.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

bool qcow2_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    vd_set_error(error, EROFS, "%s: qcow2 writes are not implemented", img->name);
    return false;
}

bool qcow2_write_zeroes(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                        GError **error)
{
    return qcow2_pwrite(img, NULL, 0, offset, error);
}

bool qcow2_truncate(VdImage *img, uint64_t new_size, GError **error)
{
    return qcow2_pwrite(img, NULL, 0, 0, error);
}

bool qcow2_flush(VdImage *img, GError **error)
{
    return true;
}
