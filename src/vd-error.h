/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Errors travel as GError in the VD_ERROR domain whose code is the errno
 * the FUSE boundary should return; mapping happens exactly once, there.
 */
#ifndef VD_ERROR_H
#define VD_ERROR_H

#include <errno.h>
#include <glib.h>

#define VD_ERROR (vd_error_quark())
GQuark vd_error_quark(void);

/* errno for a GError from anywhere (other domains become EIO). */
int vd_error_errno(const GError *error);

/* Set a VD_ERROR from the current errno: "<prefix>: strerror(errno)". */
void vd_set_error_errno(GError **error, int errnum, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

#define vd_set_error(error, code, ...) g_set_error((error), VD_ERROR, (code), __VA_ARGS__)

#endif
