/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The node table: inode numbers handed to the kernel, keyed by what they
 * name (path, and host identity for images), with the kernel's lookup
 * counts; and the image a node shows.
 */
#include "config.h"

#include "fuse/vfs-image.h"
#include "fuse/vfs-node.h"
#include "fuse/vfs-partitions.h"

static char *node_key(const VfsChild *c)
{
    static const char tag[] = {'d', 'i', 's', 't', 'u', 'P', 'Q', 'R', 'S', 'T'};
    G_STATIC_ASSERT(G_N_ELEMENTS(tag) == VFS_NODE_PARTFILE + 1);
    if (c->kind == VFS_NODE_IMAGE)
        return g_strdup_printf("i:%s\x01%ju:%ju", c->relpath, (uintmax_t)c->dev, (uintmax_t)c->ino);
    return g_strdup_printf("%c:%s%s%s\x01%u", tag[c->kind], c->relpath, c->snap_name ? "\x01" : "",
                           c->snap_name ? c->snap_name : "", c->part);
}

static void node_free(gpointer p)
{
    VfsNode *n = p;
    if (n->vi != NULL)
        vfs_image_unref(n->vi);
    g_free(n->relpath);
    g_free(n->snap_name);
    g_free(n->key);
    g_free(n);
}

void vfs_node_table_init(VfsFs *fs)
{
    fs->by_ino = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, node_free);
    fs->by_key = g_hash_table_new(g_str_hash, g_str_equal);
    fs->next_ino = FUSE_ROOT_ID + 1;

    VfsNode *root = g_new0(VfsNode, 1);
    root->ino = FUSE_ROOT_ID;
    root->kind = VFS_NODE_DIR;
    root->relpath = g_strdup("");
    VfsChild root_child = {.kind = VFS_NODE_DIR, .relpath = ""};
    root->key = node_key(&root_child);
    root->nlookup = 1;
    g_hash_table_insert(fs->by_ino, &root->ino, root);
    g_hash_table_insert(fs->by_key, root->key, root);
}

void vfs_node_table_clear(VfsFs *fs)
{
    g_hash_table_unref(fs->by_key);
    g_hash_table_unref(fs->by_ino);
}

VfsNode *vfs_node_get(VfsFs *fs, fuse_ino_t ino)
{
    g_mutex_lock(&fs->lock);
    uint64_t key = ino;
    VfsNode *n = g_hash_table_lookup(fs->by_ino, &key);
    g_mutex_unlock(&fs->lock);
    return n;
}

VfsNode *vfs_node_lookup(VfsFs *fs, const VfsChild *child)
{
    g_autofree char *key = node_key(child);
    g_mutex_lock(&fs->lock);
    VfsNode *n = g_hash_table_lookup(fs->by_key, key);
    if (n == NULL) {
        n = g_new0(VfsNode, 1);
        n->ino = fs->next_ino++;
        n->kind = child->kind;
        n->relpath = g_strdup(child->relpath);
        n->snap_name = g_strdup(child->snap_name);
        n->part = child->part;
        n->dev = child->dev;
        n->ino_host = child->ino;
        n->key = g_steal_pointer(&key);
        g_hash_table_insert(fs->by_ino, &n->ino, n);
        g_hash_table_insert(fs->by_key, n->key, n);
    }
    n->nlookup++;
    g_mutex_unlock(&fs->lock);
    return n;
}

void vfs_node_forget(VfsFs *fs, fuse_ino_t ino, uint64_t count)
{
    if (ino == FUSE_ROOT_ID)
        return;
    g_mutex_lock(&fs->lock);
    uint64_t key = ino;
    VfsNode *n = g_hash_table_lookup(fs->by_ino, &key);
    if (n != NULL) {
        n->nlookup = count >= n->nlookup ? 0 : n->nlookup - count;
        if (n->nlookup == 0) {
            g_hash_table_remove(fs->by_key, n->key);
            g_hash_table_remove(fs->by_ino, &key);
        }
    }
    g_mutex_unlock(&fs->lock);
}

bool vfs_node_cache_still_valid(VfsFs *fs, VfsNode *node, const struct timespec *mtime)
{
    g_mutex_lock(&fs->lock);
    bool same =
        node->cached_mtime.tv_sec == mtime->tv_sec && node->cached_mtime.tv_nsec == mtime->tv_nsec;
    node->cached_mtime = *mtime;
    g_mutex_unlock(&fs->lock);
    return same;
}

VfsImage *vfs_node_vfs_image(VfsFs *fs, VfsNode *node, int *err)
{
    struct stat st;
    return vfs_node_vfs_image_stat(fs, node, err, &st, NULL);
}

VfsImage *vfs_node_vfs_image_stat(VfsFs *fs, VfsNode *node, int *err, struct stat *host_st,
                                  bool *host_st_valid)
{
    VfsImage *vi = vfs_image_get_stat(fs, node->relpath, host_st);
    if (vi != NULL && (vi->dev != node->dev || vi->ino != node->ino_host))
        g_clear_pointer(&vi, vfs_image_unref);
    if (host_st_valid != NULL)
        *host_st_valid = vi != NULL;
    g_mutex_lock(&fs->lock);
    if (vi != NULL && vi != node->vi) {
        /* The host file this node names (perhaps reopened after a change). */
        if (node->vi != NULL)
            vfs_image_unref(node->vi);
        g_atomic_int_inc(&vi->refcount);
        node->vi = vi;
    } else if (vi == NULL && node->vi != NULL) {
        /* Replaced or removed on the host: the node still shows what it
         * showed, as an open file would on any filesystem. */
        vi = node->vi;
        g_atomic_int_inc(&vi->refcount);
    }
    g_mutex_unlock(&fs->lock);
    if (vi == NULL)
        *err = -ESTALE;
    return vi;
}

VdImage *vfs_node_image(VfsFs *fs, VfsNode *node, int *err)
{
    if (node->kind == VFS_NODE_SNAPFILE)
        return vfs_snapshot_acquire(fs, node->relpath, node->snap_name, err);
    if (node->kind == VFS_NODE_PARTFILE)
        return vfs_part_open(fs, node, false, err);
    if (node->kind != VFS_NODE_IMAGE) {
        *err = -EISDIR;
        return NULL;
    }
    VfsImage *vi = vfs_node_vfs_image(fs, node, err);
    if (vi == NULL)
        return NULL;
    VdImage *img = vfs_image_acquire(vi, err);
    vfs_image_unref(vi);
    return img;
}

VdImage *vfs_node_image_rw(VfsFs *fs, VfsNode *node, int *err)
{
    if (node->kind == VFS_NODE_PARTFILE)
        return vfs_part_open(fs, node, true, err);
    if (node->kind == VFS_NODE_SNAPFILE)
        return vfs_snapshot_acquire_rw(fs, node->relpath, node->snap_name, err);
    if (node->kind != VFS_NODE_IMAGE) {
        *err = -EISDIR;
        return NULL;
    }
    VfsImage *vi = vfs_node_vfs_image(fs, node, err);
    if (vi == NULL)
        return NULL;
    VdImage *img = vfs_image_acquire_rw(vi, err);
    vfs_image_unref(vi);
    return img;
}
