/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Reading /dev/fuse for libfuse (see vfs-devio.h). */
#include "config.h"

#include "fuse/vfs-devio.h"
#include "src/vd-error.h"

#include <errno.h>
#include <sys/uio.h>
#include <unistd.h>

ssize_t vfs_devio_read(int fd, void *buf, size_t len, VfsFs *fs)
{
    ssize_t n = read(fd, buf, len);
    if (n < 0 && errno == ENODEV && fs != NULL) {
        int saved = errno;
        vd_context_cancel(fs->ctx);
        errno = saved;
    }
    return n;
}

static ssize_t devio_read(int fd, void *buf, size_t len, void *userdata)
{
    return vfs_devio_read(fd, buf, len, userdata);
}

static ssize_t devio_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    (void)userdata;
    return writev(fd, iov, count);
}

bool vfs_devio_install(struct fuse_session *se, GError **error)
{
    static const struct fuse_custom_io io = {.read = devio_read, .writev = devio_writev};
    int r = fuse_session_custom_io(se, &io, fuse_session_fd(se));
    if (r != 0) {
        vd_set_error(error, -r, "cannot take over /dev/fuse reads: %s", g_strerror(-r));
        return false;
    }
    return true;
}
