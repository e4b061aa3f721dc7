/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A new, empty qcow2 v3 image, for overlays (src/vd-overlay.c). */
#ifndef QCOW2_CREATE_H
#define QCOW2_CREATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "src/vd-driver.h"

/* The driver's create: a new qcow2 of opts->size over opts->backing, the
 * origin in a header extension of its own (QCOW2_EXT_ORIGIN), mode 0600. */
bool qcow2_create(const char *path, const char *name, const VdCreateOptions *opts, GError **error);

#endif
