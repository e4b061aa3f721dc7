/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vd-container.h"
#include "vd-error.h"
#include "vd-file.h"
#include "vd-lock.h"
#include "vd-source.h"

/* path below root ("" for root itself), or NULL when it is not. */
static const char *strip_root(const char *root, const char *path)
{
    size_t n = strlen(root);
    if (strncmp(path, root, n) != 0)
        return NULL;
    if (path[n] == '\0')
        return ".";
    if (path[n] != '/' && !(n == 1 && root[0] == '/'))
        return NULL;
    path += n;
    while (*path == '/')
        path++;
    return *path ? path : ".";
}

static int openat2_beneath(int dirfd, const char *rel, int oflags)
{
    struct open_how how = {
        .flags = (uint64_t)oflags,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    return (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
}

/* Open path beneath ctx->root. The path is first made relative to the
 * root as written, then (when it was reached through a symlinked parent,
 * or holds an absolute symlink, which RESOLVE_BENEATH refuses) as its
 * canonical form; either way the kernel checks the final walk. */
static int open_confined(const char *root, int root_fd, const char *path, const char *name,
                         int oflags, const char *hint, GError **error)
{
    /* Absolute, but not canonicalised: "a/link/.." is the kernel's to walk. */
    g_autofree char *cwd = g_path_is_absolute(path) ? NULL : g_get_current_dir();
    g_autofree char *abs = cwd ? g_build_filename(cwd, path, NULL) : g_strdup(path);
    g_autofree char *real = NULL;
    const char *rel = strip_root(root, abs);
    int fd = -1;
    if (rel != NULL) {
        fd = openat2_beneath(root_fd, rel, oflags);
        if (fd >= 0 || (errno != EXDEV && errno != ELOOP && errno != ENOSYS))
            goto out;
    }
    int saved = errno;
    real = realpath(path, NULL);
    if (real == NULL) {
        if (rel != NULL)
            errno = saved;
        goto out;
    }
    rel = strip_root(root, real);
    if (rel == NULL)
        goto outside;
    fd = openat2_beneath(root_fd, rel, oflags);
    if (fd < 0 && errno == ENOSYS) /* before Linux 5.6: checked, not race-free */
        fd = openat(root_fd, rel, oflags | O_NOFOLLOW);
    if (fd < 0 && errno == EXDEV)
        goto outside;
out:
    if (fd < 0)
        vd_set_error_errno(error, errno, "%s", name);
    return fd;
outside:
    vd_set_error(error, EACCES, "%s resolves outside the image directory (%s)", name, hint);
    return -1;
}

static int open_path(VdContext *ctx, const char *path, const char *name, unsigned flags, int oflags,
                     GError **error)
{
    bool member = (flags & VD_FILE_MEMBER) != 0;
    VdBackingPolicy policy = member ? ctx->backing_policy : ctx->symlink_policy;
    if (!member && ctx->overlay_dir != NULL) {
        /* An overlay (vd-overlay.c): beneath the overlay directory. */
        g_autofree char *cwd = g_path_is_absolute(path) ? NULL : g_get_current_dir();
        g_autofree char *abs = cwd ? g_build_filename(cwd, path, NULL) : g_strdup(path);
        if (strip_root(ctx->overlay_dir, abs) != NULL)
            return open_confined(ctx->overlay_dir, ctx->overlay_fd, path, name, oflags,
                                 "it must stay inside the overlay directory", error);
    }
    if (ctx->root == NULL || ctx->root_fd < 0 || policy == VD_BACKING_ANY) {
        int fd = open(path, oflags);
        if (fd < 0)
            vd_set_error_errno(error, errno, "%s", name);
        return fd;
    }
    return open_confined(
        ctx->root, ctx->root_fd, path, name, oflags,
        member ? "use -o backing=any to allow it" : "use -o symlinks=any to allow it", error);
}

static const char *type_name(mode_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFIFO:
        return "a FIFO";
    case S_IFSOCK:
        return "a socket";
    case S_IFCHR:
        return "a character device";
    case S_IFDIR:
        return "a directory";
    case S_IFLNK:
        return "a symbolic link";
    default:
        return "not a regular file";
    }
}

/* If f is a container, make it the source of what it holds: f->fd becomes
 * the source's descriptor, read-only, while the container's own file
 * keeps the locks (f->lock_fd). */
static bool open_container(VdContext *ctx, const char *path, const char *name, const char *member,
                           unsigned flags, VdFile *f, GError **error)
{
    uint8_t head[VD_CONTAINER_HEAD];
    ssize_t n = pread(f->fd, head, sizeof head, 0);
    const VdContainer *c =
        n > 0 ? vd_container_probe(head, (size_t)n, (uint64_t)f->st.st_size) : NULL;
    if (c == NULL && member == NULL)
        return true;
    if (member != NULL && (c == NULL || c->open_member == NULL)) {
        vd_set_error(error, ENOTDIR, "%s: not a directory", name);
        close(f->fd);
        return false;
    }
    g_autofree char *self = g_strdup_printf("/proc/self/fd/%d", f->fd);
    int placeholder = open(self, O_PATH | O_CLOEXEC);
    if (placeholder < 0) {
        vd_set_error_errno(error, errno, "%s", name);
        close(f->fd);
        return false;
    }
    const VdSourceOps *ops;
    void *opaque;
    uint64_t size;
    int real = f->fd;
    bool partial = false, declined = true;
    bool ok = false;
    if (member == NULL && (flags & VD_FILE_PROBE_HEAD))
        ok = vd_container_open_head(c, ctx, real, name, &ops, &opaque, &size, &partial, &declined,
                                    error);
    if (!ok && declined)
        ok = member != NULL
                 ? c->open_member(ctx, real, path, name, member, &ops, &opaque, &size, error)
                 : c->open(ctx, real, path, name, &ops, &opaque, &size, error);
    if (!ok) {
        close(placeholder);
        return false;
    }
    vd_source_attach(placeholder, ops, opaque, size);
    f->fd = placeholder;
    f->lock_fd = real;
    f->writable = false;
    f->container = c;
    f->head_only = partial;
    return true;
}

char *vd_file_directory_of(const char *path)
{
    char *dir = g_path_get_dirname(path);
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISREG(st.st_mode)) {
        char *up = g_path_get_dirname(dir);
        g_free(dir);
        dir = up;
    }
    return dir;
}

/* path names a member of an archive (ARCHIVE/MEMBER, ARCHIVE a plain
 * file that a container lists): open the archive and make it the source
 * of that member. */
static bool open_archive_member(VdContext *ctx, const char *path, const char *name, unsigned flags,
                                VdFile *out, GError **error)
{
    g_autofree char *archive = g_path_get_dirname(path);
    g_autofree char *member = g_path_get_basename(path);
    unsigned aflags =
        (flags & (VD_FILE_MEMBER | VD_FILE_PROBE)) | VD_FILE_NO_LOCK | VD_FILE_NO_CONTAINER;
    if (!vd_file_open(ctx, archive, name, aflags, out, error))
        return false;
    if (!S_ISREG(out->st.st_mode)) {
        vd_set_error(error, ENOTDIR, "%s: not a directory", name);
        close(out->fd);
        *out = (VdFile){.fd = -1};
        return false;
    }
    if (!open_container(ctx, archive, name, member, flags, out, error)) {
        *out = (VdFile){.fd = -1};
        return false;
    }
    if (!(flags & (VD_FILE_NO_LOCK | VD_FILE_PROBE)) && !vd_file_lock(ctx, out, name, error)) {
        vd_file_close(out->fd);
        *out = (VdFile){.fd = -1};
        return false;
    }
    return true;
}

bool vd_file_open(VdContext *ctx, const char *path, const char *name, unsigned flags, VdFile *out,
                  GError **error)
{
    *out = (VdFile){.fd = -1};
    bool dir = (flags & VD_FILE_DIRECTORY) != 0;
    bool want_write = (flags & VD_FILE_WRITE) != 0;
    /* O_NONBLOCK until the type is known: opening a FIFO would wait for a
     * writer, forever. */
    int base = O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (dir ? O_DIRECTORY : 0);
    GError *local = NULL;
    int fd =
        open_path(ctx, path, name, flags, base | (want_write && !dir ? O_RDWR : O_RDONLY), &local);
    bool writable = want_write;
    if (fd < 0 && want_write && !dir) {
        int e = vd_error_errno(local);
        if (e == EACCES || e == EROFS || e == EPERM) {
            /* The host says read-only: serve it so rather than not at all
             * (a confinement refusal is EACCES too, and refused again). */
            g_clear_error(&local);
            writable = false;
            fd = open_path(ctx, path, name, flags, base | O_RDONLY, &local);
        }
    }
    if (fd < 0 && !dir && !(flags & VD_FILE_NO_CONTAINER) && vd_error_errno(local) == ENOTDIR) {
        g_clear_error(&local);
        return open_archive_member(ctx, path, name, flags, out, error);
    }
    if (fd < 0) {
        g_propagate_error(error, local);
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        vd_set_error_errno(error, errno, "%s", name);
        close(fd);
        return false;
    }
    if (flags & VD_FILE_PROBE)
        flags |= VD_FILE_NO_LOCK;
    bool ok_type = dir ? S_ISDIR(st.st_mode)
                       : (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) ||
                          ((flags & VD_FILE_PROBE) && S_ISDIR(st.st_mode)));
    if (!ok_type) {
        vd_set_error(error, EIO, "%s: %s, not %s", name, type_name(st.st_mode),
                     dir ? "a directory" : "a regular file or block device");
        close(fd);
        return false;
    }
    /* O_NONBLOCK is the only status flag the open set: clear it in one call. */
    if (fcntl(fd, F_SETFL, 0) < 0) {
        vd_set_error_errno(error, errno, "%s", name);
        close(fd);
        return false;
    }
    *out = (VdFile){.fd = fd, .lock_fd = fd, .writable = writable, .st = st};
    if (!dir && S_ISREG(st.st_mode) && !(flags & VD_FILE_NO_CONTAINER) &&
        !open_container(ctx, path, name, NULL, flags, out, error))
        return false;
    if (!(flags & VD_FILE_NO_LOCK) && !vd_file_lock(ctx, out, name, error)) {
        vd_file_close(out->fd);
        *out = (VdFile){.fd = -1};
        return false;
    }
    return true;
}

bool vd_file_lock(VdContext *ctx, VdFile *f, const char *name, GError **error)
{
    vd_lock_note(ctx, &f->st, true);
    f->locked = true;
    /* A container's other files (EWF segments) are read as it is. Locking
     * is what an open for use does (probes and peeks do not), so that is
     * where the container checks what it holds. */
    if (!vd_lock_fd(ctx, f->lock_fd, &f->st, name, f->writable, error) ||
        (f->container != NULL &&
         (!vd_source_lock(f->fd, error) || !vd_source_verify(f->fd, error)))) {
        vd_file_forget(ctx, f);
        return false;
    }
    return true;
}

const VdContainer *vd_file_container_of(VdContext *ctx, const char *path)
{
    VdFile f;
    if (!vd_file_open(ctx, path, path, VD_FILE_NO_LOCK | VD_FILE_NO_CONTAINER, &f, NULL))
        return NULL;
    uint8_t head[VD_CONTAINER_HEAD];
    ssize_t n = pread(f.fd, head, sizeof head, 0);
    close(f.fd);
    return n > 0 ? vd_container_probe(head, (size_t)n, (uint64_t)f.st.st_size) : NULL;
}

void vd_file_close(int fd)
{
    if (fd < 0)
        return;
    vd_source_detach(fd);
    close(fd);
}

void vd_file_forget(VdContext *ctx, VdFile *f)
{
    if (f->locked)
        vd_lock_note(ctx, &f->st, false);
    f->locked = false;
}

GPtrArray *vd_file_archive_members(VdContext *ctx, const char *path)
{
    VdFile f;
    if (!vd_file_open(ctx, path, path, VD_FILE_PROBE | VD_FILE_NO_CONTAINER, &f, NULL))
        return NULL;
    uint8_t head[VD_CONTAINER_HEAD];
    ssize_t n = S_ISREG(f.st.st_mode) ? pread(f.fd, head, sizeof head, 0) : 0;
    const VdContainer *c =
        n > 0 ? vd_container_probe(head, (size_t)n, (uint64_t)f.st.st_size) : NULL;
    GPtrArray *members = NULL;
    g_autoptr(GError) err = NULL;
    if (c != NULL && c->list != NULL && !c->list(ctx, f.fd, path, &members, &err))
        g_debug("%s", err->message);
    close(f.fd);
    if (members != NULL && members->len < 2)
        g_clear_pointer(&members, g_ptr_array_unref);
    return members;
}
