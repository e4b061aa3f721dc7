/* SPDX-License-Identifier: GPL-2.0-or-later */
/* user.vdiskfs.* extended attributes: what each image is, and why it fails. */
#include "config.h"

#include <string.h>

#include "src/vd-info.h"
#include "fuse/vfs-image.h"
#include "fuse/vfs-node.h"
#include "fuse/vfs-partitions.h"
#include "fuse/vfs-xattr.h"

#define XATTR_PREFIX "user.vdiskfs."

/* The attributes of one image node, as name/value pairs. */
static GPtrArray *image_xattrs(VfsFs *fs, VfsNode *node)
{
    GPtrArray *kv = g_ptr_array_new_with_free_func(g_free);
#define ADD(k, ...)                                                                                \
    do {                                                                                           \
        g_ptr_array_add(kv, g_strdup(XATTR_PREFIX k));                                             \
        g_ptr_array_add(kv, g_strdup_printf(__VA_ARGS__));                                         \
    } while (0)
    int err = 0;
    VdImage *img = NULL;
    VfsImage *vi = NULL;
    if (node->kind == VFS_NODE_IMAGE) {
        vi = vfs_node_vfs_image(fs, node, &err);
        img = vi ? vfs_image_acquire(vi, &err) : NULL;
    } else if (node->kind == VFS_NODE_SNAPFILE) {
        img = vfs_snapshot_acquire(fs, node->relpath, node->snap_name, &err);
    } else {
        vfs_part_xattrs(fs, node, kv);
        return kv;
    }
    if (img != NULL) {
        /* Under an overlay, what it covers describes the image. */
        VdImage *under = vfs_image_underneath(img);
        ADD("format", "%s", vd_image_format(under));
        ADD("virtual_size", "%" G_GUINT64_FORMAT, vd_image_size(img));
        if (vd_image_is_overlay(img))
            ADD("overlay", "%s", vd_image_path(img));
        if (vd_image_backing_name(under) != NULL)
            ADD("backing", "%s", vd_image_backing_name(under));
        GString *chain = g_string_new(NULL);
        for (VdImage *b = vd_image_backing(under); b != NULL; b = vd_image_backing(b))
            g_string_append_printf(chain, "%s%s", chain->len ? "\n" : "", vd_image_name(b));
        if (chain->len > 0)
            ADD("backing_chain", "%s", chain->str);
        g_string_free(chain, TRUE);
        g_autoptr(VdInfo) info = vd_info_describe(under);
        const VdInfoEntry *cs = vd_info_get(info, "cluster_size");
        if (cs != NULL) {
            g_autofree char *v = vd_info_entry_to_string(cs);
            ADD("cluster_size", "%s", v);
        }
        /* What the container records (EWF's hashes and case metadata). */
        g_autoptr(VdInfo) held = vd_info_describe_source(under);
        for (guint i = 0; held != NULL && i < held->entries->len; i++) {
            const VdInfoEntry *e = g_ptr_array_index(held->entries, i);
            g_ptr_array_add(kv, g_strconcat(XATTR_PREFIX, e->key, NULL));
            g_ptr_array_add(kv, vd_info_entry_to_string(e));
        }
        if (vi != NULL) {
            g_mutex_lock(&vi->lock);
            ADD("snapshot_count", "%u", vi->snap_names ? vi->snap_names->len : 0);
            g_mutex_unlock(&vi->lock);
        }
        /* Corruption met while serving reads or writes. */
        g_autofree char *io_error = vd_image_last_error(img);
        if (io_error != NULL)
            ADD("error", "%s", io_error);
        vd_image_unref(img);
    } else if (vi != NULL) {
        g_mutex_lock(&vi->lock);
        const char *why = vi->error ? vi->error : vi->peek_error;
        if (why != NULL)
            ADD("error", "%s", why);
        g_mutex_unlock(&vi->lock);
    }
#undef ADD
    if (vi != NULL)
        vfs_image_unref(vi);
    return kv;
}

ssize_t vfs_xattr_get(VfsFs *fs, VfsNode *node, const char *name, char *buf, size_t size)
{
    /* Only user.* names exist here: no ACLs, labels or capabilities.
     * Saying so (EOPNOTSUPP, not ENODATA) lets ls(1) stop asking for
     * security.selinux and system.posix_acl_access after the first file
     * instead of paying two round trips for every file it lists; the
     * kernel's own security.capability query before each write is
     * answered without looking at the image either way. */
    if (strncmp(name, "user.", 5) != 0)
        return -EOPNOTSUPP;
    if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) != 0)
        return -ENODATA;
    g_autoptr(GPtrArray) kv = image_xattrs(fs, node);
    for (guint i = 0; i + 1 < kv->len; i += 2) {
        if (strcmp(kv->pdata[i], name) != 0)
            continue;
        const char *v = kv->pdata[i + 1];
        size_t len = strlen(v);
        if (size == 0)
            return (ssize_t)len;
        if (len > size)
            return -ERANGE;
        memcpy(buf, v, len);
        return (ssize_t)len;
    }
    return -ENODATA;
}

ssize_t vfs_xattr_list(VfsFs *fs, VfsNode *node, char *buf, size_t size)
{
    g_autoptr(GPtrArray) kv = image_xattrs(fs, node);
    size_t total = 0;
    for (guint i = 0; i + 1 < kv->len; i += 2)
        total += strlen(kv->pdata[i]) + 1;
    if (size == 0)
        return (ssize_t)total;
    if (total > size)
        return -ERANGE;
    char *p = buf;
    for (guint i = 0; i + 1 < kv->len; i += 2) {
        size_t n = strlen(kv->pdata[i]) + 1;
        memcpy(p, kv->pdata[i], n);
        p += n;
    }
    return (ssize_t)total;
}
