/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Ordered key/value descriptions of an image, for `vdisk info` (its
 * "vdiskfs" keys) and the user.vdiskfs.* extended attributes. Keys are lower-case
 * with underscores; a key holding a list is a JSON array.
 */
#ifndef VD_INFO_H
#define VD_INFO_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "vd-image.h"

typedef enum { VD_INFO_STR, VD_INFO_U64, VD_INFO_BOOL, VD_INFO_LIST } VdInfoType;

typedef struct {
    char *key;
    VdInfoType type;
    char *str;       /* STR */
    uint64_t u64;    /* U64 */
    bool b;          /* BOOL */
    GPtrArray *list; /* LIST of char * */
} VdInfoEntry;

struct VdInfo {
    GPtrArray *entries; /* VdInfoEntry */
};

VdInfo *vd_info_new(void);
void vd_info_free(VdInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VdInfo, vd_info_free)

void vd_info_add_str(VdInfo *info, const char *key, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
void vd_info_add_u64(VdInfo *info, const char *key, uint64_t value);
void vd_info_add_bool(VdInfo *info, const char *key, bool value);
/* Append an item to the list under key (created on first use). */
void vd_info_add_list_item(VdInfo *info, const char *key, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
const VdInfoEntry *vd_info_get(const VdInfo *info, const char *key);

/* The value as one line of text ("a, b" for lists). */
char *vd_info_entry_to_string(const VdInfoEntry *e);

/* The driver's description of one image (format-specific keys only),
 * and that of the container it is read from, if any. */
VdInfo *vd_info_describe(VdImage *img);
/* The container's description alone ("ewf.md5"...), or NULL. */
VdInfo *vd_info_describe_source(VdImage *img);

#endif
