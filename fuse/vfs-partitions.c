/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * .partitions/: every partition of every image (and of every internal
 * snapshot) as a file of its own, so that fuse2fs, mount -o loop and
 * friends reach the filesystems inside without root and without offsets.
 *
 *   .partitions/<path of image>/pN
 *   .partitions/.snapshots/<path of image>/<snapshot>/pN
 *
 * The directories mirror the main tree and .snapshots/ (the same scans
 * answer for them); an image's directory reads its partition table at
 * every lookup and listing, so a table rewritten through a rw mount shows
 * at once. An open pN is a slice of the image (src/vd-partition.h) over
 * the same image object as the whole disk: both can be written at once,
 * as sda and sda1 can, and see each other's writes.
 */
#include "config.h"

#include <string.h>

#include "src/vd-error.h"
#include "src/vd-partition.h"
#include "fuse/vfs-image.h"
#include "fuse/vfs-partitions.h"
#include "fuse/vfs-tree.h"

/* The tree node this partition node mirrors, for the scans of vfs-tree.c. */
static VfsNode mirror(const VfsNode *dir, VfsNodeKind kind)
{
    return (VfsNode){.kind = kind, .relpath = dir->relpath, .snap_name = dir->snap_name};
}

/* The disk a PARTIMG or PARTFILE node belongs to: the image, or one of
 * its snapshots. rw: the image opened for writing. */
static VdImage *node_disk(VfsFs *fs, const VfsNode *node, bool rw, int *err)
{
    if (node->snap_name != NULL)
        return rw ? vfs_snapshot_acquire_rw(fs, node->relpath, node->snap_name, err)
                  : vfs_snapshot_acquire(fs, node->relpath, node->snap_name, err);
    VfsImage *vi = vfs_image_get(fs, node->relpath);
    if (vi == NULL) {
        *err = -ENOENT;
        return NULL;
    }
    VdImage *img = rw ? vfs_image_acquire_rw(vi, err) : vfs_image_acquire(vi, err);
    vfs_image_unref(vi);
    return img;
}

/* A table's complaints, logged once per image (and snapshot) and change. */
static void note_table_error(VfsFs *fs, const VfsNode *node, const VdPartitionTable *t)
{
    g_autofree char *key =
        g_strdup_printf("%s\x01%s", node->relpath, node->snap_name ? node->snap_name : "");
    g_mutex_lock(&fs->lock);
    const char *old = g_hash_table_lookup(fs->part_errors, key);
    bool changed = g_strcmp0(old, t->error) != 0;
    if (changed) {
        if (t->error != NULL)
            g_hash_table_insert(fs->part_errors, g_steal_pointer(&key), g_strdup(t->error));
        else
            g_hash_table_remove(fs->part_errors, key);
    }
    g_mutex_unlock(&fs->lock);
    if (changed && t->error != NULL)
        g_warning("%s%s%s: partition table: %s", node->relpath, node->snap_name ? "@" : "",
                  node->snap_name ? node->snap_name : "", t->error);
}

static VdPartitionTable *node_table(VfsFs *fs, const VfsNode *node, int *err)
{
    VdImage *img = node_disk(fs, node, false, err);
    if (img == NULL)
        return NULL;
    GError *e = NULL;
    VdPartitionTable *t = vd_partition_table_read(img, vd_image_logical_sector(img), &e);
    if (t == NULL) {
        vd_image_record_error(img, e);
        *err = -vd_error_errno(e);
        g_error_free(e);
    } else {
        note_table_error(fs, node, t);
    }
    vd_image_unref(img);
    return t;
}

/* "p3" -> 3; 0 for anything else. */
static unsigned parse_pname(const char *name)
{
    if (name[0] != 'p' || name[1] < '1' || name[1] > '9')
        return 0;
    char *end;
    guint64 n = g_ascii_strtoull(name + 1, &end, 10);
    return *end == '\0' && n <= G_MAXUINT ? (unsigned)n : 0;
}

static VfsNodeKind part_kind_of(VfsNodeKind k, bool in_snapshots)
{
    switch (k) {
    case VFS_NODE_DIR:
        return VFS_NODE_PARTDIR;
    case VFS_NODE_IMAGE:
        return VFS_NODE_PARTIMG;
    case VFS_NODE_SNAPDIR:
        return VFS_NODE_PARTSNAPDIR;
    case VFS_NODE_SNAPIMG:
        return VFS_NODE_PARTSNAPIMG;
    case VFS_NODE_SNAPFILE:
        return VFS_NODE_PARTIMG;
    default:
        return in_snapshots ? VFS_NODE_PARTSNAPDIR : VFS_NODE_PARTDIR;
    }
}

/* The main tree (or .snapshots/) node kind a partition directory mirrors. */
static VfsNodeKind mirrored_kind(VfsNodeKind k)
{
    switch (k) {
    case VFS_NODE_PARTDIR:
        return VFS_NODE_DIR;
    case VFS_NODE_PARTSNAPDIR:
        return VFS_NODE_SNAPDIR;
    default:
        return VFS_NODE_SNAPIMG;
    }
}

static void dir_entry_free(gpointer p)
{
    VfsDirEntry *e = p;
    g_free(e->name);
    g_free(e);
}

GPtrArray *vfs_part_list_dir(VfsFs *fs, const VfsNode *dir, int *err)
{
    *err = 0;
    if (dir->kind == VFS_NODE_PARTFILE) {
        *err = -ENOTDIR;
        return NULL;
    }
    if (dir->kind == VFS_NODE_PARTIMG) {
        g_autoptr(VdPartitionTable) t = node_table(fs, dir, err);
        if (t == NULL)
            return NULL;
        GPtrArray *out = g_ptr_array_new_with_free_func(dir_entry_free);
        for (guint i = 0; i < t->parts->len; i++) {
            const VdPartition *p = g_ptr_array_index(t->parts, i);
            VfsDirEntry *e = g_new0(VfsDirEntry, 1);
            e->name = g_strdup_printf("p%u", p->number);
            e->kind = VFS_NODE_PARTFILE;
            g_ptr_array_add(out, e);
        }
        return out;
    }
    VfsNode m = mirror(dir, mirrored_kind(dir->kind));
    GPtrArray *out = vfs_list_dir(fs, &m, err);
    if (out == NULL)
        return NULL;
    bool in_snapshots = dir->kind != VFS_NODE_PARTDIR;
    for (guint i = 0; i < out->len;) {
        VfsDirEntry *e = g_ptr_array_index(out, i);
        if (e->kind == VFS_NODE_PARTDIR ||
            (dir->kind == VFS_NODE_PARTDIR && e->kind == VFS_NODE_SNAPDIR)) {
            /* .partitions itself, and the root's .snapshots (added below as
             * .partitions/.snapshots) */
            g_ptr_array_remove_index(out, i);
            continue;
        }
        e->kind = part_kind_of(e->kind, in_snapshots);
        i++;
    }
    if (dir->kind == VFS_NODE_PARTDIR && *dir->relpath == '\0') {
        VfsDirEntry *e = g_new0(VfsDirEntry, 1);
        e->name = g_strdup(VFS_SNAPSHOT_DIR);
        e->kind = VFS_NODE_PARTSNAPDIR;
        g_ptr_array_add(out, e);
    }
    return out;
}

int vfs_part_find_child(VfsFs *fs, const VfsNode *dir, const char *name, VfsChild *child)
{
    memset(child, 0, sizeof *child);
    if (dir->kind == VFS_NODE_PARTFILE)
        return -ENOTDIR;
    if (dir->kind == VFS_NODE_PARTIMG) {
        unsigned n = parse_pname(name);
        if (n == 0)
            return -ENOENT;
        int err = 0;
        g_autoptr(VdPartitionTable) t = node_table(fs, dir, &err);
        if (t == NULL)
            return err;
        if (vd_partition_find(t, n) == NULL)
            return -ENOENT;
        child->kind = VFS_NODE_PARTFILE;
        child->relpath = g_strdup(dir->relpath);
        child->snap_name = g_strdup(dir->snap_name);
        child->part = n;
        return 0;
    }
    if (dir->kind == VFS_NODE_PARTDIR && *dir->relpath == '\0' &&
        strcmp(name, VFS_SNAPSHOT_DIR) == 0) {
        child->kind = VFS_NODE_PARTSNAPDIR;
        child->relpath = g_strdup("");
        return 0;
    }
    if (dir->kind == VFS_NODE_PARTDIR && *dir->relpath == '\0' &&
        strcmp(name, VFS_PARTITION_DIR) == 0)
        return -ENOENT;
    VfsNode m = mirror(dir, mirrored_kind(dir->kind));
    int r = vfs_find_child(fs, &m, name, child);
    if (r < 0)
        return r;
    if (child->kind == VFS_NODE_SNAPDIR && dir->kind == VFS_NODE_PARTDIR) {
        vfs_child_clear(child); /* the root's .snapshots: only .partitions/.snapshots */
        return -ENOENT;
    }
    child->kind = part_kind_of(child->kind, dir->kind != VFS_NODE_PARTDIR);
    child->dev = child->ino = 0;
    return 0;
}

int vfs_part_stat(VfsFs *fs, VfsNode *node, VdImage *open_img, struct stat *st)
{
    g_autofree char *host = vfs_host_path(fs, node->relpath);
    struct stat hst;
    if (stat(host, &hst) < 0)
        return -errno;
    memset(st, 0, sizeof *st);
    st->st_ino = node->ino;
    st->st_uid = hst.st_uid;
    st->st_gid = hst.st_gid;
    st->st_blksize = 4096;
    st->st_atim = hst.st_atim;
    st->st_mtim = hst.st_mtim;
    st->st_ctim = hst.st_ctim;
    mode_t perm = hst.st_mode & 07777;
    switch (node->kind) {
    case VFS_NODE_PARTDIR:
    case VFS_NODE_PARTSNAPDIR:
        st->st_mode = S_IFDIR | (perm & ~0222);
        st->st_nlink = 2;
        return 0;
    case VFS_NODE_PARTSNAPIMG:
    case VFS_NODE_PARTIMG:
        /* Listable by whoever may read the image. */
        st->st_mode = S_IFDIR | (perm & 0444) | ((perm & 0444) >> 2);
        st->st_nlink = 2;
        return 0;
    case VFS_NODE_PARTFILE:
        break;
    default:
        return -EIO;
    }
    uint64_t length;
    bool writable = false;
    if (open_img != NULL) {
        length = vd_image_size(open_img);
        writable = !vd_image_format_read_only(open_img);
    } else {
        int err = 0;
        g_autoptr(VdPartitionTable) t = node_table(fs, node, &err);
        if (t == NULL)
            return err;
        const VdPartition *p = vd_partition_find(t, node->part);
        if (p == NULL)
            return -ENOENT;
        length = p->length;
        VdImage *disk = node_disk(fs, node, false, &err);
        writable = disk != NULL && (fs->opts.overlay || !vd_image_format_read_only(disk));
        if (disk != NULL)
            vd_image_unref(disk);
    }
    writable = writable && !fs->opts.read_only && (node->snap_name == NULL || fs->opts.overlay);
    if (S_ISDIR(hst.st_mode))
        perm &= ~0111; /* a bundle */
    st->st_mode = S_IFREG | (writable ? perm : (perm & ~0222));
    if (node->snap_name != NULL && !writable)
        st->st_mode &= ~0333;
    st->st_nlink = 1;
    st->st_size = (off_t)length;
    /* Not the host space of the slice, which would cost a walk of its
     * block status: sparse-aware tools use SEEK_DATA/SEEK_HOLE anyway. */
    st->st_blocks = 0;
    return 0;
}

VdImage *vfs_part_open(VfsFs *fs, VfsNode *node, bool rw, int *err)
{
    if (rw && (fs->opts.read_only || (node->snap_name != NULL && !fs->opts.overlay))) {
        *err = -EROFS;
        return NULL;
    }
    g_autoptr(VdImage) disk = node_disk(fs, node, rw, err);
    if (disk == NULL)
        return NULL;
    GError *e = NULL;
    g_autoptr(VdPartitionTable) t =
        vd_partition_table_read(disk, vd_image_logical_sector(disk), &e);
    if (t == NULL) {
        vd_image_record_error(disk, e);
        *err = -vd_error_errno(e);
        g_error_free(e);
        return NULL;
    }
    const VdPartition *p = vd_partition_find(t, node->part);
    if (p == NULL) {
        *err = -ENOENT;
        return NULL;
    }
    g_autofree char *name = g_strdup_printf("%s%s%s/p%u", node->relpath, node->snap_name ? "@" : "",
                                            node->snap_name ? node->snap_name : "", p->number);
    VdImage *slice = vd_image_open_slice(disk, p->start, p->length, name, !rw, &e);
    if (slice == NULL) {
        g_warning("%s", e->message);
        *err = -vd_error_errno(e);
        g_error_free(e);
    }
    return slice;
}

#define XATTR_PREFIX "user.vdiskfs."

static void add_kv(GPtrArray *kv, const char *key, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static void add_kv(GPtrArray *kv, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_ptr_array_add(kv, g_strconcat(XATTR_PREFIX, key, NULL));
    g_ptr_array_add(kv, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

void vfs_part_xattrs(VfsFs *fs, VfsNode *node, GPtrArray *kv)
{
    if (node->kind != VFS_NODE_PARTFILE && node->kind != VFS_NODE_PARTIMG)
        return;
    int err = 0;
    g_autoptr(VdPartitionTable) t = node_table(fs, node, &err);
    if (t == NULL)
        return;
    if (node->kind == VFS_NODE_PARTIMG) {
        if (t->kind != NULL)
            add_kv(kv, "partition.table", "%s", t->kind);
        add_kv(kv, "partition.sector_size", "%u", t->sector_size);
        if (t->error != NULL)
            add_kv(kv, "error", "%s", t->error);
        return;
    }
    const VdPartition *p = vd_partition_find(t, node->part);
    if (p == NULL)
        return;
    add_kv(kv, "partition.table", "%s", t->kind);
    add_kv(kv, "partition.number", "%u", p->number);
    add_kv(kv, "partition.start", "%" G_GUINT64_FORMAT, p->start);
    add_kv(kv, "partition.length", "%" G_GUINT64_FORMAT, p->length);
    add_kv(kv, "partition.type", "%s", p->type);
    if (p->name != NULL)
        add_kv(kv, "partition.name", "%s", p->name);
    if (p->uuid != NULL)
        add_kv(kv, "partition.uuid", "%s", p->uuid);
    if (strcmp(t->kind, "mbr") == 0)
        add_kv(kv, "partition.bootable", "%s", p->bootable ? "true" : "false");
}
