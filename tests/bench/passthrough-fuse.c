/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The benchmark's ceiling: the smallest useful FUSE filesystem, one raw
 * file passed through with pread/pwrite (or splice, -o splice). Whatever
 * vdiskfs costs on top of this is the price of the format and of vdiskfs.
 *
 *   passthrough-fuse [-o splice] RAWFILE MOUNTPOINT   (shows MOUNTPOINT/disk)
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int backing_fd = -1;
static int use_splice;

static int disk_stat(fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    if (ino == FUSE_ROOT_ID) {
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
        return 0;
    }
    struct stat host;
    if (ino != 2 || fstat(backing_fd, &host) < 0)
        return ENOENT;
    st->st_mode = S_IFREG | 0644;
    st->st_nlink = 1;
    st->st_size = host.st_size;
    st->st_blocks = host.st_blocks;
    return 0;
}

static void pt_init(void *data, struct fuse_conn_info *conn)
{
    if (use_splice)
        conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
    conn->max_write = 1 << 20;
}

static void pt_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e = {.ino = 2, .attr_timeout = 1, .entry_timeout = 1};
    if (parent != FUSE_ROOT_ID || strcmp(name, "disk") != 0 || disk_stat(2, &e.attr) != 0)
        fuse_reply_err(req, ENOENT);
    else
        fuse_reply_entry(req, &e);
}

static void pt_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat st;
    int r = disk_stat(ino, &st);
    if (r)
        fuse_reply_err(req, r);
    else
        fuse_reply_attr(req, &st, 1);
}

static void pt_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fuse_reply_open(req, fi);
}

static void pt_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    if (use_splice) {
        struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
        bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
        bv.buf[0].fd = backing_fd;
        bv.buf[0].pos = off;
        fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
        return;
    }
    char *buf = malloc(size);
    ssize_t n = pread(backing_fd, buf, size, off);
    if (n < 0)
        fuse_reply_err(req, errno);
    else
        fuse_reply_buf(req, buf, (size_t)n);
    free(buf);
}

static void pt_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    ssize_t n = pwrite(backing_fd, buf, size, off);
    if (n < 0)
        fuse_reply_err(req, errno);
    else
        fuse_reply_write(req, (size_t)n);
}

static void pt_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    char buf[256];
    size_t used = 0;
    if (off == 0) {
        struct stat st = {.st_ino = 2, .st_mode = S_IFREG};
        used = fuse_add_direntry(req, buf, sizeof buf, "disk", &st, 1);
    }
    fuse_reply_buf(req, buf, used);
}

static void pt_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    fuse_reply_err(req, fdatasync(backing_fd) < 0 ? errno : 0);
}

static const struct fuse_lowlevel_ops pt_ops = {
    .init = pt_init,
    .lookup = pt_lookup,
    .getattr = pt_getattr,
    .open = pt_open,
    .read = pt_read,
    .write = pt_write,
    .readdir = pt_readdir,
    .fsync = pt_fsync,
};

int main(int argc, char *argv[])
{
    int a = 1;
    if (argc > 2 && strcmp(argv[1], "-o") == 0 && strcmp(argv[2], "splice") == 0) {
        use_splice = 1;
        a = 3;
    }
    if (argc - a != 2) {
        fprintf(stderr, "usage: %s [-o splice] RAWFILE MOUNTPOINT\n", argv[0]);
        return 2;
    }
    backing_fd = open(argv[a], O_RDWR);
    if (backing_fd < 0) {
        perror(argv[a]);
        return 1;
    }
    char *fargs[] = {argv[0], "-o", "default_permissions", NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, fargs);
    struct fuse_session *se = fuse_session_new(&args, &pt_ops, sizeof pt_ops, NULL);
    if (se == NULL || fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[a + 1]) != 0)
        return 1;
    fuse_daemonize(0);
    struct fuse_loop_config *lc = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(lc, 16);
    int r = fuse_session_loop_mt(se, lc);
    fuse_loop_cfg_destroy(lc);
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return r ? 1 : 0;
}
