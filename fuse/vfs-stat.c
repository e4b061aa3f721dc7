/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Attributes of the filesystem's nodes (stat, getattr). */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "fuse/vfs-image.h"
#include "fuse/vfs-node.h"
#include "fuse/vfs-partitions.h"
#include "fuse/vfs-stat.h"

static void stat_times_from(struct stat *st, const struct stat *host)
{
    st->st_atim = host->st_atim;
    st->st_mtim = host->st_mtim;
    st->st_ctim = host->st_ctim;
}

/* What the stat of an image node that no handle holds shows: the opened
 * image when it is open, else what its header says (a listing opens no
 * image). Host bytes are those of the image file and its members. */
typedef struct {
    bool have;
    uint64_t size;
    bool read_only;
    uint64_t host_bytes;
} VfsPeekStat;

/* *host_st_valid: *host_st is the node's host file's vfs_host_stat. */
static int image_node_peek(VfsFs *fs, VfsNode *node, VdImage **img, VfsPeekStat *ps,
                           struct stat *host_st, bool *host_st_valid)
{
    int err = 0;
    VfsImage *vi = vfs_node_vfs_image_stat(fs, node, &err, host_st, host_st_valid);
    if (vi == NULL)
        return err;
    g_mutex_lock(&vi->lock);
    if (vi->img != NULL) {
        *img = vd_image_ref(vi->img);
    } else {
        /* A node whose host file was replaced keeps its image state; the
         * path's file is what is there now. */
        struct stat now;
        const struct stat *hs = host_st;
        if (!*host_st_valid)
            hs = vfs_host_stat(fs, vi->relpath, &now) == 0 ? &now : NULL;
        if (hs != NULL && (err = vfs_image_peek_locked(vi, NULL, hs)) < 0) {
            g_mutex_unlock(&vi->lock);
            vfs_image_unref(vi);
            return err;
        }
        ps->have = true;
        ps->size = vi->peek_size;
        ps->read_only = vi->peek_read_only;
        struct stat st;
        if (vi->peek_has_share)
            ps->host_bytes += vi->peek_share;
        else if (hs != NULL && !S_ISDIR(hs->st_mode))
            ps->host_bytes += (uint64_t)hs->st_blocks * 512;
        for (guint i = 0; vi->peek_members != NULL && i < vi->peek_members->len; i++) {
            if (stat(g_ptr_array_index(vi->peek_members, i), &st) == 0 && S_ISREG(st.st_mode))
                ps->host_bytes += (uint64_t)st.st_blocks * 512;
        }
    }
    g_mutex_unlock(&vi->lock);
    vfs_image_unref(vi);
    return 0;
}

int vfs_node_stat(VfsFs *fs, VfsNode *node, VdImage *open_img, struct stat *st)
{
    if (node->kind >= VFS_NODE_PARTDIR)
        return vfs_part_stat(fs, node, open_img, st);
    struct stat hst;
    bool have_hst = false;
    g_autoptr(VdImage) img = NULL;
    VfsPeekStat ps = {0};
    if (node->kind == VFS_NODE_IMAGE) {
        /* The attributes of the file the image was opened from: the path
         * may name a replacement by now. */
        if (open_img != NULL) {
            img = vd_image_ref(open_img);
        } else {
            int err = image_node_peek(fs, node, &img, &ps, &hst, &have_hst);
            if (err == -ESTALE || err == -EINTR)
                return err;
        }
    }
    if (img != NULL) {
        /* Under an overlay, the attributes of the image it covers. */
        if (fstat(vd_image_fd(vfs_image_underneath(img)), &hst) < 0)
            return -errno;
    } else if (!have_hst && vfs_host_stat(fs, node->relpath, &hst) < 0) {
        return -errno;
    }
    memset(st, 0, sizeof *st);
    st->st_ino = node->ino;
    st->st_uid = hst.st_uid;
    st->st_gid = hst.st_gid;
    st->st_blksize = 4096;
    stat_times_from(st, &hst);
    mode_t perm = hst.st_mode & 07777;
    switch (node->kind) {
    case VFS_NODE_DIR:
    case VFS_NODE_SNAPDIR:
        /* Nothing can be created in the mount: no write bits on directories.
         * An archive shown as one: searchable by whoever may read it. */
        if (S_ISREG(hst.st_mode))
            perm = (perm & 0444) | ((perm & 0444) >> 2);
        st->st_mode = S_IFDIR | (perm & ~0222);
        st->st_nlink = 2;
        break;
    case VFS_NODE_SNAPIMG:
        /* Readable as a directory by whoever may read the image. */
        st->st_mode = S_IFDIR | (perm & 0444) | ((perm & 0444) >> 2);
        st->st_nlink = 2;
        break;
    case VFS_NODE_IMAGE: {
        /* On rw mounts images stay open read-only until written, so
         * "writable" is what the driver could do. */
        bool writable = !fs->opts.read_only &&
                        (fs->opts.overlay || (img != NULL ? !vd_image_format_read_only(img)
                                                          : ps.have && !ps.read_only));
        if (S_ISDIR(hst.st_mode))
            perm &= ~0111; /* a bundle directory shown as a file */
        st->st_mode = S_IFREG | (writable ? perm : (perm & ~0222));
        st->st_nlink = 1;
        if (img != NULL) {
            st->st_size = (off_t)vd_image_size(img);
            uint64_t bytes = vd_image_host_bytes(img);
            if (vd_image_is_overlay(img) && vd_image_backing(img) != NULL)
                bytes += vd_image_host_bytes(vd_image_backing(img));
            st->st_blocks = (blkcnt_t)((bytes + 511) / 512);
        } else {
            st->st_size = (off_t)ps.size;
            st->st_blocks = (blkcnt_t)((ps.host_bytes + 511) / 512);
        }
        break;
    }
    case VFS_NODE_SNAPFILE: {
        int64_t date;
        uint32_t nsec;
        uint64_t size;
        if (!vfs_snapshot_info(fs, node->relpath, node->snap_name, &date, &nsec, &size))
            return -ENOENT;
        /* Writable only through an overlay (-o overlay). */
        st->st_mode = S_IFREG | (fs->opts.overlay ? perm : (perm & 0444));
        st->st_nlink = 1;
        st->st_size = (off_t)size;
        st->st_mtim.tv_sec = date;
        st->st_mtim.tv_nsec = nsec;
        st->st_ctim = st->st_mtim;
        break;
    }
    default: /* .partitions/: vfs_part_stat */
        return -EIO;
    }
    return 0;
}
