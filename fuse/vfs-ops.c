/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libfuse3 low-level operations: the one place errors become errno. */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "src/vd-chain.h"
#include "src/vd-error.h"
#include "src/vd-interrupt.h"
#include "src/vd-io.h"
#include "fuse/vfs-fs.h"
#include "fuse/vfs-image.h"
#include "fuse/vfs-node.h"
#include "fuse/vfs-ops.h"
#include "fuse/vfs-stat.h"
#include "fuse/vfs-tree.h"
#include "fuse/vfs-uring.h"
#include "fuse/vfs-xattr.h"

/* The image whose write handles a handle on img counts among: a partition
 * file's writes are its disk's. */
static VdImage *written_image(VdImage *img)
{
    return vd_image_view_of(img) != NULL ? vd_image_view_of(img) : img;
}

/* An open file (img) or directory (entries). */
typedef struct {
    VdImage *img;
    bool writable;
    GPtrArray *entries; /* VfsDirEntry */
} VfsHandle;

void vfs_handle_free(gpointer p)
{
    VfsHandle *h = p;
    if (h->img != NULL)
        vd_image_unref(h->img);
    if (h->entries != NULL)
        g_ptr_array_unref(h->entries);
    g_free(h);
}

static VfsFs *req_fs(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

/* errno for a failed block-layer call on img. A bad request (ENOSPC,
 * EINVAL...) goes to the debug log only, so that it cannot flood the log;
 * corruption and host I/O errors are kept as the image's error
 * (user.vdiskfs.error) and logged once per distinct message. */
static int image_error_to_errno(VdImage *img, GError *err)
{
    int e = vd_error_errno(err);
    if (img != NULL)
        vd_image_record_error(img, err);
    g_debug("%s", err->message);
    g_error_free(err);
    return e;
}

static void vfs_init(void *userdata, struct fuse_conn_info *conn)
{
    VfsFs *fs = userdata;
    if (fs->opts.splice_min > 0) {
        if (conn->capable & FUSE_CAP_SPLICE_WRITE)
            conn->want |= FUSE_CAP_SPLICE_WRITE;
        if (conn->capable & FUSE_CAP_SPLICE_MOVE)
            conn->want |= FUSE_CAP_SPLICE_MOVE;
    }
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
        conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    conn->max_write = VFS_MAX_IO;
    conn->max_readahead = VFS_MAX_IO;
}

static void vfs_destroy(void *userdata)
{
    vfs_close_all(userdata);
}

static void fill_entry(VfsFs *fs, VfsNode *n, const struct stat *st, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof *e);
    e->ino = n->ino;
    e->generation = 1;
    e->attr = *st;
    e->attr_timeout = fs->opts.attr_timeout;
    e->entry_timeout = fs->opts.attr_timeout;
}

/* Look a child up and take a lookup reference on its node. */
static int lookup_child(VfsFs *fs, fuse_ino_t parent, const char *name, struct fuse_entry_param *e)
{
    VfsNode *dir = vfs_node_get(fs, parent);
    if (dir == NULL)
        return -ESTALE;
    VfsChild child;
    int r = vfs_find_child(fs, dir, name, &child);
    if (r < 0)
        return r;
    VfsNode *n = vfs_node_lookup(fs, &child);
    vfs_child_clear(&child);
    struct stat st;
    r = vfs_node_stat(fs, n, NULL, &st);
    if (r < 0) {
        vfs_node_forget(fs, n->ino, 1);
        return r;
    }
    fill_entry(fs, n, &st, e);
    return 0;
}

static void vfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    int r = lookup_child(req_fs(req), parent, name, &e);
    if (r < 0)
        fuse_reply_err(req, -r);
    else
        fuse_reply_entry(req, &e);
}

static void vfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    vfs_node_forget(req_fs(req), ino, nlookup);
    fuse_reply_none(req);
}

static void vfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    for (size_t i = 0; i < count; i++)
        vfs_node_forget(req_fs(req), forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static void vfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    VfsFs *fs = req_fs(req);
    VfsNode *n = vfs_node_get(fs, ino);
    struct stat st;
    VdImage *open_img = fi && fi->fh ? ((VfsHandle *)(uintptr_t)fi->fh)->img : NULL;
    int r = n ? vfs_node_stat(fs, n, open_img, &st) : -ESTALE;
    if (r < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    fuse_reply_attr(req, &st, fs->opts.attr_timeout);
}

static void vfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                        struct fuse_file_info *fi)
{
    VfsFs *fs = req_fs(req);
    VfsNode *n = vfs_node_get(fs, ino);
    if (n == NULL) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
        fuse_reply_err(req, EPERM);
        return;
    }
    if (to_set & (FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
        if (fs->opts.read_only || n->kind != VFS_NODE_IMAGE) {
            fuse_reply_err(req, n->kind == VFS_NODE_IMAGE ? EROFS : EPERM);
            return;
        }
    }
    if (to_set & FUSE_SET_ATTR_SIZE) {
        int err = 0;
        VfsHandle *h = fi && fi->fh ? (VfsHandle *)(uintptr_t)fi->fh : NULL;
        VdImage *img = h && h->writable ? vd_image_ref(h->img) : vfs_node_image_rw(fs, n, &err);
        if (img == NULL) {
            fuse_reply_err(req, -err);
            return;
        }
        GError *e = NULL;
        bool ok = vd_image_truncate(img, (uint64_t)attr->st_size, &e);
        if (!ok) {
            /* A refused resize is worth a log line: the caller sees only EINVAL. */
            g_message("%s", e->message);
            err = image_error_to_errno(img, e);
        }
        vd_image_unref(img);
        if (!ok) {
            fuse_reply_err(req, err);
            return;
        }
    }
    if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
        struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
        if (to_set & FUSE_SET_ATTR_ATIME)
            ts[0] = (to_set & FUSE_SET_ATTR_ATIME_NOW) ? (struct timespec){.tv_nsec = UTIME_NOW}
                                                       : attr->st_atim;
        if (to_set & FUSE_SET_ATTR_MTIME)
            ts[1] = (to_set & FUSE_SET_ATTR_MTIME_NOW) ? (struct timespec){.tv_nsec = UTIME_NOW}
                                                       : attr->st_mtim;
        g_autofree char *host = vfs_host_path(fs, n->relpath);
        if (utimensat(AT_FDCWD, host, ts, 0) < 0) {
            fuse_reply_err(req, errno);
            return;
        }
    }
    struct stat st;
    VdImage *open_img = fi && fi->fh ? ((VfsHandle *)(uintptr_t)fi->fh)->img : NULL;
    int r = vfs_node_stat(fs, n, open_img, &st);
    if (r < 0)
        fuse_reply_err(req, -r);
    else
        fuse_reply_attr(req, &st, fs->opts.attr_timeout);
}

static void vfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    VfsFs *fs = req_fs(req);
    VfsNode *n = vfs_node_get(fs, ino);
    if (n == NULL) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    bool want_write = (fi->flags & O_ACCMODE) != O_RDONLY;
    int err = 0;
    VdImage *img = want_write && !fs->opts.read_only ? vfs_node_image_rw(fs, n, &err)
                                                     : vfs_node_image(fs, n, &err);
    if (img == NULL) {
        fuse_reply_err(req, -err);
        return;
    }
    if (want_write && (vd_image_read_only(img) || fs->opts.read_only)) {
        vd_image_unref(img);
        fuse_reply_err(req, EROFS);
        return;
    }
    VfsHandle *h = g_new0(VfsHandle, 1);
    h->img = img;
    h->writable = want_write;
    if (want_write)
        vfs_writer_add(fs, written_image(img));
    fi->fh = (uint64_t)(uintptr_t)h;
    /* On a read-only mount the kernel may keep its page cache between opens,
     * unless the host file changed in place since the cache was filled. */
    struct stat hst;
    fi->keep_cache = (fs->opts.read_only || n->kind == VFS_NODE_SNAPFILE) &&
                     fstat(vd_image_fd(img), &hst) == 0 &&
                     vfs_node_cache_still_valid(fs, n, &hst.st_mtim);
    /* Write handles bypass the page cache: without it the kernel skips the
     * security.capability GETXATTR it otherwise sends before every write
     * (measured: 13k -> 18k 4 KiB random writes/s), and what is written
     * reaches the image at once. Shared writable mmap is not possible then. */
    fi->direct_io = want_write;
    vfs_handle_add(fs, h);
    if (fuse_reply_open(req, fi) == -ENOENT) {
        if (want_write)
            vfs_writer_remove(fs, written_image(img));
        vfs_handle_remove(fs, h);
        vfs_handle_free(h);
    }
}

/* The last write handle of img is going (or its last close came): flush,
 * and give the write permission's locks back, so that a child of this
 * image, or a QEMU reading it, can open it at once. */
static void release_write(VdImage *img)
{
    g_autoptr(GError) e = NULL;
    if (!vd_image_release_write(img, &e)) {
        vd_image_record_error(img, e);
        g_warning("%s", e->message);
    }
}

static void vfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    VfsHandle *h = (VfsHandle *)(uintptr_t)fi->fh;
    if (h->writable && vfs_writer_remove(req_fs(req), written_image(h->img)) == 0)
        release_write(written_image(h->img));
    vfs_handle_remove(req_fs(req), h);
    vfs_handle_free(h);
    fuse_reply_err(req, 0);
}

static void reply_read_vec(fuse_req_t req, VdImage *img, uint64_t off, size_t len)
{
    VdReadVec vec;
    vd_read_vec_init(&vec, len);
    GError *e = NULL;
    if (!vd_chain_read_vec(img, off, len, &vec, &e)) {
        fuse_reply_err(req, image_error_to_errno(img, e));
        vd_read_vec_clear(&vec);
        return;
    }
    guint n = vec.segs->len;
    struct fuse_bufvec *bv = g_malloc0(sizeof *bv + n * sizeof(struct fuse_buf));
    bv->count = n;
    for (guint i = 0; i < n; i++) {
        VdIoSeg *s = &g_array_index(vec.segs, VdIoSeg, i);
        struct fuse_buf *b = &bv->buf[i];
        b->size = s->len;
        if (s->fd >= 0) {
            b->flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
            b->fd = s->fd;
            b->pos = (off_t)s->pos;
        } else {
            b->mem = s->mem;
        }
    }
    fuse_reply_data(req, bv, FUSE_BUF_SPLICE_MOVE);
    g_free(bv);
    vd_read_vec_clear(&vec);
}

/* A read over the memory budget (an xz stream's dictionary is charged
 * while the stream lives, vd_context_mem_reserve) tries again once the
 * images nobody uses are closed, as opens do (vfs-image.c): the mount
 * keeps an image open for idle_timeout after its last close, and reads
 * of another would fail until the reaper came by. */
static bool pread_making_room(VfsFs *fs, VdImage *img, uint8_t *buf, size_t len, uint64_t off,
                              GError **error)
{
    GError *e = NULL;
    if (vd_image_pread(img, buf, len, off, &e))
        return true;
    if (vd_error_errno(e) != ENOMEM) {
        g_propagate_error(error, e);
        return false;
    }
    g_debug("%s; closing unused images to make room", e->message);
    g_error_free(e);
    vfs_images_close_unused(fs);
    return vd_image_pread(img, buf, len, off, error);
}

static void vfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    VfsFs *fs = req_fs(req);
    VdImage *img = ((VfsHandle *)(uintptr_t)fi->fh)->img;
    uint64_t vsize = vd_image_size(img);
    if (off < 0 || (uint64_t)off >= vsize || size == 0) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    size_t len = (size_t)vd_min_u64(size, vsize - (uint64_t)off);
    if (fs->opts.splice_min > 0 && len >= fs->opts.splice_min) {
        reply_read_vec(req, img, (uint64_t)off, len);
        return;
    }
    GError *e = NULL;
    /* Through io_uring: read straight into the request's ring buffer. */
    uint8_t *ring_buf = vfs_uring_read_buffer(len);
    if (ring_buf != NULL) {
        if (!pread_making_room(fs, img, ring_buf, len, (uint64_t)off, &e))
            fuse_reply_err(req, image_error_to_errno(img, e));
        else
            vfs_uring_reply_read(req, len);
        return;
    }
    g_autofree uint8_t *buf = g_malloc(len);
    if (!pread_making_room(fs, img, buf, len, (uint64_t)off, &e))
        fuse_reply_err(req, image_error_to_errno(img, e));
    else
        fuse_reply_buf(req, (const char *)buf, len);
}

static void vfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
    VfsHandle *h = (VfsHandle *)(uintptr_t)fi->fh;
    GError *e = NULL;
    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (!vd_image_pwrite(h->img, buf, size, (uint64_t)off, &e))
        fuse_reply_err(req, image_error_to_errno(h->img, e));
    else
        fuse_reply_write(req, size);
}

/* close(2) of a write handle: synchronous, unlike RELEASE, so that a
 * program that writes, closes and exits (dd, then `qemu-img check`, or an
 * unmount) finds the data flushed and the write locks given back. A later
 * write through another descriptor of the same handle takes them again. */
static void vfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    VfsHandle *h = (VfsHandle *)(uintptr_t)fi->fh;
    int err = 0;
    if (h->writable) {
        GError *e = NULL;
        if (vfs_writer_count(req_fs(req), written_image(h->img)) <= 1)
            release_write(written_image(h->img));
        else if (!vd_image_flush(h->img, &e))
            err = image_error_to_errno(h->img, e);
    }
    fuse_reply_err(req, err);
}

static void vfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    VfsHandle *h = (VfsHandle *)(uintptr_t)fi->fh;
    GError *e = NULL;
    if (!vd_image_flush(h->img, &e))
        fuse_reply_err(req, image_error_to_errno(h->img, e));
    else
        fuse_reply_err(req, 0);
}

static void vfs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
                      struct fuse_file_info *fi)
{
    VdImage *img = ((VfsHandle *)(uintptr_t)fi->fh)->img;
    if (whence != SEEK_DATA && whence != SEEK_HOLE) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (off < 0) {
        fuse_reply_err(req, ENXIO);
        return;
    }
    uint64_t result;
    GError *e = NULL;
    if (!vd_chain_seek(img, (uint64_t)off, whence, &result, &e))
        fuse_reply_err(req, image_error_to_errno(img, e));
    else
        fuse_reply_lseek(req, (off_t)result);
}

static void vfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                          struct fuse_file_info *fi)
{
    VfsHandle *h = (VfsHandle *)(uintptr_t)fi->fh;
    if (!h->writable) {
        fuse_reply_err(req, EBADF);
        return;
    }
    if (off < 0 || len <= 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    uint64_t start = (uint64_t)off, length = (uint64_t)len, size = vd_image_size(h->img);
    GError *e = NULL;
    bool ok;
    if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {
        if (start >= size) {
            fuse_reply_err(req, 0);
            return;
        }
        length = vd_min_u64(length, size - start);
        ok = vd_image_write_zeroes(h->img, start, length, VD_ZERO_MAY_UNMAP, &e);
    } else if ((mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE) {
        if (mode & FALLOC_FL_KEEP_SIZE) {
            if (start >= size) {
                fuse_reply_err(req, 0);
                return;
            }
            length = vd_min_u64(length, size - start);
        } else if (start + length > size && !vd_image_truncate(h->img, start + length, &e)) {
            fuse_reply_err(req, image_error_to_errno(h->img, e));
            return;
        }
        ok = vd_image_write_zeroes(h->img, start, length, 0, &e);
    } else {
        /* Reserving space has no meaning for most formats; say so. */
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    fuse_reply_err(req, ok ? 0 : image_error_to_errno(h->img, e));
}

static void vfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    VfsFs *fs = req_fs(req);
    VfsNode *n = vfs_node_get(fs, ino);
    if (n == NULL) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    int err = 0;
    GPtrArray *entries = vfs_list_dir(fs, n, &err);
    if (entries == NULL) {
        fuse_reply_err(req, -err);
        return;
    }
    VfsHandle *dh = g_new0(VfsHandle, 1);
    dh->entries = entries;
    fi->fh = (uint64_t)(uintptr_t)dh;
    vfs_handle_add(fs, dh);
    if (fuse_reply_open(req, fi) == -ENOENT) {
        vfs_handle_remove(fs, dh);
        vfs_handle_free(dh);
    }
}

static mode_t kind_dtype(VfsNodeKind kind)
{
    return vfs_kind_is_file(kind) ? S_IFREG : S_IFDIR;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi, bool plus)
{
    VfsFs *fs = req_fs(req);
    VfsHandle *dh = (VfsHandle *)(uintptr_t)fi->fh;
    g_autofree char *buf = g_malloc(size);
    size_t used = 0;
    /* Positions: 0 = ".", 1 = "..", 2 + i = entry i; an entry's offset is the next position. */
    for (off_t pos = off; pos < (off_t)dh->entries->len + 2; pos++) {
        const char *name;
        VfsNodeKind kind = VFS_NODE_DIR;
        bool attrs_later = false;
        if (pos == 0)
            name = ".";
        else if (pos == 1)
            name = "..";
        else {
            VfsDirEntry *de = g_ptr_array_index(dh->entries, pos - 2);
            name = de->name;
            kind = de->kind;
            attrs_later = de->attrs_later;
        }
        size_t n;
        if (attrs_later && plus) {
            /* Node 0: the name only, its attributes by a LOOKUP when asked. */
            struct fuse_entry_param e = {.attr.st_ino = g_str_hash(name) | 1u,
                                         .attr.st_mode = kind_dtype(kind)};
            n = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, pos + 1);
            if (n > size - used)
                break;
        } else if (!plus) {
            /* d_ino must not be 0 (readdir(3) skips those); the real number
             * comes with lookup, as for any FUSE filesystem without use_ino. */
            struct stat st = {.st_ino = pos < 2 ? ino : (g_str_hash(name) | 1u),
                              .st_mode = kind_dtype(kind)};
            n = fuse_add_direntry(req, buf + used, size - used, name, &st, pos + 1);
            if (n > size - used)
                break;
        } else {
            struct fuse_entry_param e = {.attr.st_mode = S_IFDIR, .attr.st_ino = ino};
            bool looked_up = false;
            if (pos >= 2) {
                if (lookup_child(fs, ino, name, &e) < 0)
                    continue; /* vanished since opendir */
                looked_up = true;
            }
            n = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, pos + 1);
            if (n > size - used) {
                if (looked_up)
                    vfs_node_forget(fs, e.ino, 1);
                break;
            }
        }
        used += n;
    }
    fuse_reply_buf(req, buf, used);
}

static void vfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, false);
}

static void vfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                            struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, true);
}

static void vfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    VfsHandle *dh = (VfsHandle *)(uintptr_t)fi->fh;
    vfs_handle_remove(req_fs(req), dh);
    vfs_handle_free(dh);
    fuse_reply_err(req, 0);
}

static void vfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct statvfs sv;
    if (statvfs(req_fs(req)->root, &sv) < 0)
        fuse_reply_err(req, errno);
    else
        fuse_reply_statfs(req, &sv);
}

static void vfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    VfsFs *fs = req_fs(req);
    VfsNode *n = vfs_node_get(fs, ino);
    if (n == NULL) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    g_autofree char *buf = size ? g_malloc(size) : NULL;
    ssize_t r = vfs_xattr_get(fs, n, name, buf, size);
    if (r < 0)
        fuse_reply_err(req, (int)-r);
    else if (size == 0)
        fuse_reply_xattr(req, (size_t)r);
    else
        fuse_reply_buf(req, buf, (size_t)r);
}

static void vfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    VfsFs *fs = req_fs(req);
    VfsNode *n = vfs_node_get(fs, ino);
    if (n == NULL) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    g_autofree char *buf = size ? g_malloc(size) : NULL;
    ssize_t r = vfs_xattr_list(fs, n, buf, size);
    if (r < 0)
        fuse_reply_err(req, (int)-r);
    else if (size == 0)
        fuse_reply_xattr(req, (size_t)r);
    else
        fuse_reply_buf(req, buf, (size_t)r);
}

/* The tree mirrors IMAGEDIR: names are made on the host, not here. */
static void vfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    fuse_reply_err(req, EPERM);
}

static void vfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    fuse_reply_err(req, EPERM);
}

static void vfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, EPERM);
}

static void vfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                       const char *newname, unsigned int flags)
{
    fuse_reply_err(req, EPERM);
}

static void vfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                       struct fuse_file_info *fi)
{
    fuse_reply_err(req, EPERM);
}

static void vfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                         size_t size, int flags)
{
    fuse_reply_err(req, ENOTSUP);
}

/*
 * The requests that may open an image or decode far into a stream: long
 * work in them stops when the kernel says their caller was interrupted
 * (vd-interrupt.h). Polled, not told through fuse_req_interrupt_func: a
 * callback registered on the request can still run after the reply, on
 * libfuse's thread, against the handler's gone stack; the poll runs only
 * on the handler's thread before it replies.
 */
static bool request_interrupted(void *req)
{
    return fuse_req_interrupted(req) != 0;
}

#define INTERRUPTIBLE(handler, ...)                                                                \
    do {                                                                                           \
        vd_interrupt_enter(request_interrupted, req);                                              \
        handler(req, __VA_ARGS__);                                                                 \
        vd_interrupt_leave();                                                                      \
    } while (0)

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    INTERRUPTIBLE(vfs_lookup, parent, name);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    INTERRUPTIBLE(vfs_getattr, ino, fi);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    INTERRUPTIBLE(vfs_open, ino, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    INTERRUPTIBLE(vfs_read, ino, size, off, fi);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
                     struct fuse_file_info *fi)
{
    INTERRUPTIBLE(vfs_lseek, ino, off, whence, fi);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
    INTERRUPTIBLE(vfs_readdirplus, ino, size, off, fi);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    INTERRUPTIBLE(vfs_getxattr, ino, name, size);
}

const struct fuse_lowlevel_ops vfs_ops = {
    .init = vfs_init,
    .destroy = vfs_destroy,
    .lookup = op_lookup,
    .forget = vfs_forget,
    .forget_multi = vfs_forget_multi,
    .getattr = op_getattr,
    .setattr = vfs_setattr,
    .open = op_open,
    .release = vfs_release,
    .read = op_read,
    .write = vfs_write,
    .flush = vfs_flush,
    .fsync = vfs_fsync,
    .lseek = op_lseek,
    .fallocate = vfs_fallocate,
    .opendir = vfs_opendir,
    .readdir = vfs_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = vfs_releasedir,
    .statfs = vfs_statfs,
    .getxattr = op_getxattr,
    .listxattr = vfs_listxattr,
    .setxattr = vfs_setxattr,
    .mknod = vfs_mknod,
    .mkdir = vfs_mkdir,
    .unlink = vfs_unlink,
    .rmdir = vfs_unlink,
    .rename = vfs_rename,
    .create = vfs_create,
};
