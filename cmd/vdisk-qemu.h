/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vdisk's output in qemu-img's terms: `qemu-img info --output=json` keys
 * (virtual-size, format-specific {type, data}, snapshots[]...) built from
 * what the block layer and the driver's describe callback know, so that
 * scripts written against qemu-img work unchanged. Keys qemu-img does not
 * print live under "vdiskfs".
 */
#ifndef VDISK_QEMU_H
#define VDISK_QEMU_H

#include <json-glib/json-glib.h>

#include "src/vd-image.h"
#include "src/vd-info.h"

/* A string as JSON can carry it: invalid UTF-8 becomes U+FFFD. */
void vdq_add_string(JsonBuilder *b, const char *key, const char *s);

/* The VdInfo entries as one object (lists as arrays of strings). */
JsonNode *vdq_info_object(const VdInfo *info);

/* The snapshot table as qemu-img's list of objects. */
JsonNode *vdq_snapshot_list(GPtrArray *snaps);

/* One image's info object; filename as qemu-img would name it (the path
 * given for the top, the resolved backing name for the layers below). */
JsonNode *vdq_image_info(VdImage *img, const char *filename, GError **error);

/* Whether QEMU's driver for fmt takes a backing file: where it does not,
 * qemu-img map calls unallocated runs present (they read as zeros). */
bool vdq_supports_backing(const char *fmt);

/* The backing file's name as qemu-img resolves it against the image's. */
char *vdq_full_backing_name(const char *filename, const char *backing);

/* qemu-img info's text for one info object, then under "vdiskfs
 * information" the extra lines (NULL-terminated, may be NULL) and its
 * "vdiskfs" keys. */
void vdq_print_info_text(JsonNode *info, const char *const *extra);
void vdq_print_snapshots_text(JsonNode *snapshots);

/* A size as qemu-img prints it: "1 MiB", "1.03 MiB", "332 KiB". */
char *vdq_size_to_str(uint64_t v);

/* The node as text, pretty-printed, with a trailing newline. */
void vdq_print(JsonNode *node, bool pretty);

#endif
