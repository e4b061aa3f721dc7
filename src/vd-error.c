/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <string.h>

#include "vd-error.h"

G_DEFINE_QUARK(vd - error - quark, vd_error)

int vd_error_errno(const GError *error)
{
    if (error == NULL)
        return EIO;
    if (error->domain == VD_ERROR && error->code > 0)
        return error->code;
    if (error->domain == G_FILE_ERROR) {
        switch (error->code) {
        case G_FILE_ERROR_ACCES:
        case G_FILE_ERROR_PERM:
            return EACCES;
        case G_FILE_ERROR_NOENT:
            return ENOENT;
        case G_FILE_ERROR_NOSPC:
            return ENOSPC;
        default:
            break;
        }
    }
    return EIO;
}

void vd_set_error_errno(GError **error, int errnum, const char *fmt, ...)
{
    if (error == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *prefix = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, VD_ERROR, errnum ? errnum : EIO, "%s: %s", prefix, g_strerror(errnum));
}
