/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A read-only passthrough of a directory that refuses every byte-range
 * lock, as some network filesystems do: for testing vdiskfs on such a
 * host filesystem. With -r FLAG, files are opened in direct I/O (every
 * read reaches here) and reads fail with EIO while the file FLAG exists:
 * a server that is gone for a while.
 *
 *   nolock-fuse [-e ENOLCK|EOPNOTSUPP|EINVAL] [-r FLAG] DIR MOUNTPOINT   (foreground)
 */
#define FUSE_USE_VERSION 312
#include <fuse.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *under;
static int lock_errno = ENOLCK;
static const char *eio_flag; /* reads fail while this file exists */

static int host_path(const char *path, char *out)
{
    int n = snprintf(out, PATH_MAX, "%s%s", under, path);
    return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

static int nl_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    char p[PATH_MAX];
    int r = host_path(path, p);
    if (r < 0)
        return r;
    if (fi != NULL)
        return fstat((int)fi->fh, st) < 0 ? -errno : 0;
    return lstat(p, st) < 0 ? -errno : 0;
}

static int nl_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    char p[PATH_MAX];
    int r = host_path(path, p);
    if (r < 0)
        return r;
    DIR *d = opendir(p);
    if (d == NULL)
        return -errno;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        fill(buf, de->d_name, NULL, 0, 0);
    closedir(d);
    return 0;
}

static int nl_open(const char *path, struct fuse_file_info *fi)
{
    char p[PATH_MAX];
    int r = host_path(path, p);
    if (r < 0)
        return r;
    if ((fi->flags & O_ACCMODE) != O_RDONLY)
        return -EROFS;
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        return -errno;
    fi->fh = (uint64_t)fd;
    if (eio_flag != NULL)
        fi->direct_io = 1;
    return 0;
}

static int nl_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    if (eio_flag != NULL && access(eio_flag, F_OK) == 0)
        return -EIO;
    ssize_t n = pread((int)fi->fh, buf, size, off);
    return n < 0 ? -errno : (int)n;
}

static int nl_release(const char *path, struct fuse_file_info *fi)
{
    close((int)fi->fh);
    return 0;
}

/* Defining lock makes the kernel forward byte-range locks (OFD ones
 * included) here instead of keeping them itself. */
static int nl_lock(const char *path, struct fuse_file_info *fi, int cmd, struct flock *fl)
{
    return -lock_errno;
}

static const struct fuse_operations nl_ops = {
    .getattr = nl_getattr,
    .readdir = nl_readdir,
    .open = nl_open,
    .read = nl_read,
    .release = nl_release,
    .lock = nl_lock,
};

int main(int argc, char **argv)
{
    int a = 1;
    if (argc >= 3 && strcmp(argv[1], "-e") == 0) {
        if (strcmp(argv[2], "EOPNOTSUPP") == 0)
            lock_errno = EOPNOTSUPP;
        else if (strcmp(argv[2], "EINVAL") == 0)
            lock_errno = EINVAL;
        else if (strcmp(argv[2], "ENOLCK") != 0)
            return 2;
        a = 3;
    }
    if (argc - a >= 2 && strcmp(argv[a], "-r") == 0) {
        eio_flag = argv[a + 1];
        a += 2;
    }
    if (argc - a != 2) {
        fprintf(stderr,
                "usage: nolock-fuse [-e ENOLCK|EOPNOTSUPP|EINVAL] [-r FLAG] DIR MOUNTPOINT\n");
        return 2;
    }
    under = realpath(argv[a], NULL);
    if (under == NULL) {
        perror(argv[a]);
        return 1;
    }
    char *fargs[] = {argv[0], "-f", "-s", "-o", "ro,default_permissions", argv[a + 1], NULL};
    int ret = fuse_main(6, fargs, &nl_ops, NULL);
    free(under);
    return ret;
}
