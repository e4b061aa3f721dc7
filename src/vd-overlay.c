/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vd-chain.h"
#include "vd-error.h"
#include "vd-io.h"
#include "vd-overlay.h"

#define OVERLAY_FORMAT "qcow2"
#define ORIGIN_VERSION "vdiskfs-origin 1"

char *vd_overlay_path(VdContext *ctx, const char *relpath)
{
    g_autofree char *file = g_strconcat(relpath, ".qcow2", NULL);
    return g_build_filename(ctx->overlay_dir, file, NULL);
}

/* What an overlay records of its original: enough to notice that the
 * original was changed (or replaced) after the overlay was made. */
static char *origin_record(const struct stat *st, const char *snapshot)
{
    return g_strdup_printf(ORIGIN_VERSION " size=%jd mtime=%jd.%09ld%s%s", (intmax_t)st->st_size,
                           (intmax_t)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
                           snapshot ? " snapshot=" : "", snapshot ? snapshot : "");
}

static bool check_origin(VdImage *ov, const char *original, const char *snapshot, GError **error)
{
    struct stat st;
    if (stat(original, &st) < 0) {
        vd_set_error_errno(error, errno, "%s", original);
        return false;
    }
    g_autofree char *now = origin_record(&st, snapshot);
    size_t len = 0;
    const char *rec = ov->origin ? g_bytes_get_data(ov->origin, &len) : NULL;
    if (rec == NULL || len != strlen(now) || memcmp(rec, now, len) != 0) {
        g_autofree char *was = rec ? g_strndup(rec, len) : g_strdup("nothing");
        vd_set_error(error, EIO,
                     "%s: overlay %s was made over the image as it was then (%s); it is now "
                     "(%s): refusing to apply the overlay to a changed image (move the overlay "
                     "away to start afresh)",
                     original, ov->path, was, now);
        return false;
    }
    /* Its backing file must be this very file (a snapshot's overlay is a
     * copy: QEMU has no way to name an internal snapshot as a backing file). */
    struct stat bst;
    VdImage *b = ov->backing;
    if (snapshot != NULL ? b != NULL
                         : (b == NULL || fstat(b->fd, &bst) < 0 || bst.st_dev != st.st_dev ||
                            bst.st_ino != st.st_ino)) {
        vd_set_error(error, EIO, "%s: overlay %s is not an overlay of this image", original,
                     ov->path);
        return false;
    }
    return true;
}

VdImage *vd_overlay_open(VdContext *ctx, const char *relpath, const char *original,
                         const char *snapshot, bool rw, GError **error)
{
    g_autofree char *path = vd_overlay_path(ctx, relpath);
    if (access(path, F_OK) < 0 && errno == ENOENT)
        return NULL;
    VdOpenOptions o = {.read_only = !rw, .format = OVERLAY_FORMAT};
    g_autoptr(VdImage) ov = vd_image_open(ctx, path, &o, error);
    if (ov == NULL || !check_origin(ov, original, snapshot, error))
        return NULL;
    if (rw && ov->read_only) {
        vd_set_error(error, EROFS, "%s: overlay %s cannot be written", original, path);
        return NULL;
    }
    ov->overlay = true;
    return g_steal_pointer(&ov);
}

/* mkdir -p of the directories below the overlay root. */
static bool make_parents(VdContext *ctx, const char *path, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    if (g_mkdir_with_parents(dir, 0700) < 0) {
        vd_set_error_errno(error, errno, "overlay directory %s", dir);
        return false;
    }
    return true;
}

VdImage *vd_overlay_create(VdContext *ctx, const char *relpath, const char *original,
                           GError **error)
{
    g_autofree char *path = vd_overlay_path(ctx, relpath);
    const VdDriver *qcow2 = vd_driver_find(OVERLAY_FORMAT);
    if (qcow2 == NULL || qcow2->create == NULL) {
        vd_set_error(error, ENOTSUP, "%s: no driver to make overlays with", original);
        return NULL;
    }
    /* The original as the overlay's backing chain will see it. */
    g_autoptr(VdImage) base = vd_image_open(ctx, original, NULL, error);
    if (base == NULL)
        return NULL;
    struct stat st;
    if (fstat(base->fd, &st) < 0) {
        vd_set_error_errno(error, errno, "%s", original);
        return NULL;
    }
    g_autofree char *abs = realpath(original, NULL);
    if (abs == NULL) {
        vd_set_error_errno(error, errno, "%s", original);
        return NULL;
    }
    g_autofree char *rec = origin_record(&st, NULL);
    g_autoptr(GBytes) origin = g_bytes_new(rec, strlen(rec));
    VdCreateOptions opts = {
        .size = vd_image_size(base),
        .backing = abs,
        .backing_format = base->driver->name,
        .origin = origin,
    };
    if (!make_parents(ctx, path, error) || !qcow2->create(path, path, &opts, error))
        return NULL;
    g_clear_pointer(&base, vd_image_unref);
    g_message("%s: overlay %s made; the image itself will not be written", original, path);
    return vd_overlay_open(ctx, relpath, original, NULL, true, error);
}

/* Copy what src holds (its data runs, not its holes) into dst. */
static bool copy_data(VdImage *src, VdImage *dst, GError **error)
{
    uint64_t size = vd_image_size(src), off = 0;
    g_autofree uint8_t *buf = g_malloc(1u << 20);
    while (off < size) {
        VdChainExtent e;
        if (!vd_chain_status(src, off, size - off, VD_STATUS_WANT_ZERO, &e, error))
            return false;
        for (uint64_t done = 0; vd_chain_extent_is_data(&e) && done < e.length;) {
            size_t n = (size_t)MIN(e.length - done, 1u << 20);
            if (!vd_image_pread(src, buf, n, off + done, error))
                return false;
            if (!vd_buffer_is_zero(buf, n) && !vd_image_pwrite(dst, buf, n, off + done, error))
                return false;
            done += n;
        }
        off += e.length;
    }
    return vd_image_flush(dst, error);
}

VdImage *vd_overlay_create_copy(VdContext *ctx, const char *relpath, const char *original,
                                const char *snapshot, VdImage *src, GError **error)
{
    g_autofree char *path = vd_overlay_path(ctx, relpath);
    const VdDriver *qcow2 = vd_driver_find(OVERLAY_FORMAT);
    struct stat st;
    if (stat(original, &st) < 0) {
        vd_set_error_errno(error, errno, "%s", original);
        return NULL;
    }
    g_autofree char *rec = origin_record(&st, snapshot);
    g_autoptr(GBytes) origin = g_bytes_new(rec, strlen(rec));
    VdCreateOptions opts = {.size = vd_image_size(src), .origin = origin};
    if (!make_parents(ctx, path, error) || !qcow2->create(path, path, &opts, error))
        return NULL;
    g_autoptr(VdImage) ov = vd_overlay_open(ctx, relpath, original, snapshot, true, error);
    if (ov == NULL || !copy_data(src, ov, error)) {
        unlink(path);
        return NULL;
    }
    g_message("%s: overlay %s made as a copy of snapshot %s; the image itself will not be "
              "written",
              original, path, snapshot);
    return g_steal_pointer(&ov);
}
