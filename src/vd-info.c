/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <string.h>

#include "vd-info.h"
#include "vd-source.h"

static void entry_free(gpointer p)
{
    VdInfoEntry *e = p;
    g_free(e->key);
    g_free(e->str);
    g_clear_pointer(&e->list, g_ptr_array_unref);
    g_free(e);
}

VdInfo *vd_info_new(void)
{
    VdInfo *info = g_new0(VdInfo, 1);
    info->entries = g_ptr_array_new_with_free_func(entry_free);
    return info;
}

void vd_info_free(VdInfo *info)
{
    if (info == NULL)
        return;
    g_ptr_array_unref(info->entries);
    g_free(info);
}

static VdInfoEntry *entry_add(VdInfo *info, const char *key, VdInfoType type)
{
    VdInfoEntry *e = g_new0(VdInfoEntry, 1);
    e->key = g_strdup(key);
    e->type = type;
    g_ptr_array_add(info->entries, e);
    return e;
}

void vd_info_add_str(VdInfo *info, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    entry_add(info, key, VD_INFO_STR)->str = g_strdup_vprintf(fmt, ap);
    va_end(ap);
}

void vd_info_add_u64(VdInfo *info, const char *key, uint64_t value)
{
    entry_add(info, key, VD_INFO_U64)->u64 = value;
}

void vd_info_add_bool(VdInfo *info, const char *key, bool value)
{
    entry_add(info, key, VD_INFO_BOOL)->b = value;
}

const VdInfoEntry *vd_info_get(const VdInfo *info, const char *key)
{
    for (guint i = 0; i < info->entries->len; i++) {
        const VdInfoEntry *e = g_ptr_array_index(info->entries, i);
        if (strcmp(e->key, key) == 0)
            return e;
    }
    return NULL;
}

void vd_info_add_list_item(VdInfo *info, const char *key, const char *fmt, ...)
{
    VdInfoEntry *e = (VdInfoEntry *)vd_info_get(info, key);
    if (e == NULL || e->type != VD_INFO_LIST) {
        e = entry_add(info, key, VD_INFO_LIST);
        e->list = g_ptr_array_new_with_free_func(g_free);
    }
    va_list ap;
    va_start(ap, fmt);
    g_ptr_array_add(e->list, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

char *vd_info_entry_to_string(const VdInfoEntry *e)
{
    switch (e->type) {
    case VD_INFO_STR:
        return g_strdup(e->str);
    case VD_INFO_U64:
        return g_strdup_printf("%" G_GUINT64_FORMAT, e->u64);
    case VD_INFO_BOOL:
        return g_strdup(e->b ? "true" : "false");
    case VD_INFO_LIST: {
        GString *s = g_string_new(NULL);
        for (guint i = 0; i < e->list->len; i++)
            g_string_append_printf(s, "%s%s", i ? ", " : "", (char *)e->list->pdata[i]);
        return g_string_free(s, FALSE);
    }
    }
    return g_strdup("");
}

VdInfo *vd_info_describe(VdImage *img)
{
    VdInfo *info = vd_info_new();
    if (img->driver->describe != NULL)
        img->driver->describe(img, info);
    vd_source_describe(img->fd, info);
    return info;
}

VdInfo *vd_info_describe_source(VdImage *img)
{
    VdInfo *info = vd_info_new();
    if (!vd_source_describe(img->fd, info))
        g_clear_pointer(&info, vd_info_free);
    return info;
}
