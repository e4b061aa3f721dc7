/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The filesystem's lifetime: its tables made at mount and freed at
 * unmount, the images flushed on the way out, and the write and file
 * handles that outlive a lookup.
 */
#include "config.h"

#include <unistd.h>

#include "fuse/vfs-fs.h"
#include "fuse/vfs-image.h"
#include "fuse/vfs-node.h"
#include "fuse/vfs-ops.h"
#include "fuse/vfs-tree.h"

static void vfs_image_unref_cb(gpointer p)
{
    vfs_image_unref(p);
}

VfsFs *vfs_new(VdContext *ctx, const VfsOptions *opts)
{
    VfsFs *fs = g_new0(VfsFs, 1);
    fs->ctx = vd_context_ref(ctx);
    fs->root = g_strdup(vd_context_root(ctx));
    fs->opts = *opts;
    g_mutex_init(&fs->lock);
    g_mutex_init(&fs->reaper_lock);
    g_cond_init(&fs->reaper_cond);
    fs->images = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, vfs_image_unref_cb);
    fs->members = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    fs->writers = g_hash_table_new(g_direct_hash, g_direct_equal);
    fs->handles = g_hash_table_new_full(g_direct_hash, g_direct_equal, vfs_handle_free, NULL);
    fs->dirs = vfs_dir_table_new();
    fs->part_errors = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    fs->overlays = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    vfs_node_table_init(fs);
    return fs;
}

void vfs_writer_add(VfsFs *fs, VdImage *img)
{
    g_mutex_lock(&fs->lock);
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(fs->writers, img));
    g_hash_table_insert(fs->writers, img, GUINT_TO_POINTER(n + 1));
    g_mutex_unlock(&fs->lock);
}

guint vfs_writer_remove(VfsFs *fs, VdImage *img)
{
    g_mutex_lock(&fs->lock);
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(fs->writers, img));
    if (n <= 1)
        g_hash_table_remove(fs->writers, img);
    else
        g_hash_table_insert(fs->writers, img, GUINT_TO_POINTER(n - 1));
    g_mutex_unlock(&fs->lock);
    return n > 0 ? n - 1 : 0;
}

guint vfs_writer_count(VfsFs *fs, VdImage *img)
{
    g_mutex_lock(&fs->lock);
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(fs->writers, img));
    g_mutex_unlock(&fs->lock);
    return n;
}

void vfs_handle_add(VfsFs *fs, gpointer handle)
{
    g_mutex_lock(&fs->lock);
    g_hash_table_add(fs->handles, handle);
    g_mutex_unlock(&fs->lock);
}

void vfs_handle_remove(VfsFs *fs, gpointer handle)
{
    g_mutex_lock(&fs->lock);
    g_hash_table_steal(fs->handles, handle);
    g_mutex_unlock(&fs->lock);
}

void vfs_close_all(VfsFs *fs)
{
    /* Open handles (a writer killed mid-way, SIGTERM) keep images alive
     * past this point, perhaps ones replaced on the host and no longer in
     * the table: flush every image written through a handle and every
     * image in the table. Collected under fs->lock, flushed outside it
     * (image locks nest outside fs->lock elsewhere). */
    g_autoptr(GPtrArray) images = g_ptr_array_new_with_free_func((GDestroyNotify)vd_image_unref);
    g_autoptr(GPtrArray) vis = g_ptr_array_new_with_free_func((GDestroyNotify)vfs_image_unref);
    g_mutex_lock(&fs->lock);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, fs->writers);
    while (g_hash_table_iter_next(&it, &k, NULL))
        g_ptr_array_add(images, vd_image_ref(k));
    g_hash_table_iter_init(&it, fs->images);
    while (g_hash_table_iter_next(&it, NULL, &v)) {
        g_atomic_int_inc(&((VfsImage *)v)->refcount);
        g_ptr_array_add(vis, v);
    }
    g_mutex_unlock(&fs->lock);
    for (guint i = 0; i < vis->len; i++) {
        VfsImage *vi = g_ptr_array_index(vis, i);
        g_mutex_lock(&vi->lock);
        if (vi->img != NULL)
            g_ptr_array_add(images, vd_image_ref(vi->img));
        g_mutex_unlock(&vi->lock);
    }
    for (guint i = 0; i < images->len; i++) {
        g_autoptr(GError) err = NULL;
        if (!vd_image_flush(g_ptr_array_index(images, i), &err))
            g_warning("%s", err->message);
    }
    g_mutex_lock(&fs->lock);
    g_hash_table_remove_all(fs->images);
    g_mutex_unlock(&fs->lock);
    if (fs->opts.overlay_discard) {
        /* -o overlay_discard: this mount's writes end with it. */
        g_mutex_lock(&fs->lock);
        GHashTableIter oit;
        g_hash_table_iter_init(&oit, fs->overlays);
        while (g_hash_table_iter_next(&oit, &k, NULL)) {
            if (unlink(k) < 0 && errno != ENOENT)
                g_warning("overlay %s: cannot remove it: %s", (char *)k, g_strerror(errno));
        }
        g_hash_table_remove_all(fs->overlays);
        g_mutex_unlock(&fs->lock);
    }
}

void vfs_free(VfsFs *fs)
{
    if (fs == NULL)
        return;
    vfs_close_all(fs);
    vfs_node_table_clear(fs);
    g_hash_table_unref(fs->images);
    g_hash_table_unref(fs->members);
    g_hash_table_unref(fs->handles); /* after the writers were flushed */
    g_hash_table_unref(fs->writers);
    g_hash_table_unref(fs->dirs);
    g_hash_table_unref(fs->part_errors);
    g_hash_table_unref(fs->overlays);
    g_mutex_clear(&fs->lock);
    g_mutex_clear(&fs->reaper_lock);
    g_cond_clear(&fs->reaper_cond);
    g_free(fs->root);
    vd_context_unref(fs->ctx);
    g_free(fs);
}
