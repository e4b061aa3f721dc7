/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Images as the filesystem sees them: opened once, failures remembered. */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "src/vd-error.h"
#include "src/vd-interrupt.h"
#include "src/vd-overlay.h"
#include "src/vd-source.h"
#include "fuse/vfs-image.h"

typedef struct {
    VfsImage base;
    VfsFs *fs;
} VfsImagePriv;

char *vfs_host_path(VfsFs *fs, const char *relpath)
{
    return *relpath ? g_build_filename(fs->root, relpath, NULL) : g_strdup(fs->root);
}

int vfs_host_stat(VfsFs *fs, const char *relpath, struct stat *st)
{
    g_autofree char *host = vfs_host_path(fs, relpath);
    if (stat(host, st) == 0)
        return 0;
    if (errno != ENOTDIR)
        return -1;
    /* A member of an archive shown as a directory: the archive's. */
    g_autofree char *archive = g_path_get_dirname(host);
    if (stat(archive, st) < 0)
        return -1;
    if (!S_ISREG(st->st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static void image_free(VfsImage *vi)
{
    g_clear_pointer(&vi->img, vd_image_unref);
    g_clear_pointer(&vi->snap_images, g_hash_table_unref);
    g_clear_pointer(&vi->snapshots, g_ptr_array_unref);
    g_clear_pointer(&vi->snap_names, g_ptr_array_unref);
    g_free(vi->error);
    g_clear_pointer(&vi->peek_members, g_ptr_array_unref);
    g_free(vi->peek_error);
    g_free(vi->relpath);
    g_mutex_clear(&vi->lock);
    g_free(vi);
}

void vfs_image_unref(VfsImage *vi)
{
    if (vi != NULL && g_atomic_int_dec_and_test(&vi->refcount))
        image_free(vi);
}

VfsImage *vfs_image_get(VfsFs *fs, const char *relpath)
{
    struct stat st;
    return vfs_image_get_stat(fs, relpath, &st);
}

VfsImage *vfs_image_get_stat(VfsFs *fs, const char *relpath, struct stat *host_st)
{
    if (vfs_host_stat(fs, relpath, host_st) < 0)
        return NULL;
    const struct stat st = *host_st;
    g_mutex_lock(&fs->lock);
    VfsImage *vi = g_hash_table_lookup(fs->images, relpath);
    bool changed_in_place = vi != NULL && fs->opts.read_only &&
                            (vi->size != st.st_size || vi->mtime.tv_sec != st.st_mtim.tv_sec ||
                             vi->mtime.tv_nsec != st.st_mtim.tv_nsec);
    if (vi != NULL && (vi->dev != st.st_dev || vi->ino != st.st_ino || changed_in_place)) {
        /* Replaced or rewritten on the host: open handles keep the old image.
         * (On rw mounts this daemon is the writer, so mtime tells nothing.) */
        g_hash_table_remove(fs->images, relpath);
        vi = NULL;
    }
    if (vi == NULL) {
        VfsImagePriv *p = g_new0(VfsImagePriv, 1);
        vi = &p->base;
        p->fs = fs;
        vi->refcount = 1;
        vi->relpath = g_strdup(relpath);
        vi->dev = st.st_dev;
        vi->ino = st.st_ino;
        vi->mtime = st.st_mtim;
        vi->size = st.st_size;
        g_mutex_init(&vi->lock);
        g_hash_table_insert(fs->images, vi->relpath, vi);
    }
    g_atomic_int_inc(&vi->refcount);
    g_mutex_unlock(&fs->lock);
    return vi;
}

/* Display names for snapshots: readable, unique, usable as file names. */
static GPtrArray *snapshot_display_names(GPtrArray *snaps)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GHashTable) used = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint i = 0; i < snaps->len; i++) {
        VdSnapshotInfo *s = g_ptr_array_index(snaps, i);
        g_autofree char *base = NULL;
        if (s->name == NULL || s->name[0] == '\0')
            base = g_strdup_printf("snapshot-%s", s->id);
        else if (strcmp(s->name, ".") == 0 || strcmp(s->name, "..") == 0)
            base = g_strdup_printf("%s_", s->name);
        else
            base = g_strdelimit(g_strdup(s->name), "/", '_');
        char *name = g_strdup(base);
        if (g_hash_table_contains(used, name)) {
            g_free(name);
            name = g_strdup_printf("%s~%s", base, s->id);
        }
        for (unsigned n = 2; g_hash_table_contains(used, name); n++) {
            g_free(name);
            name = g_strdup_printf("%s~%s.%u", base, s->id, n);
        }
        g_ptr_array_add(names, name);
        g_hash_table_add(used, name);
    }
    return names;
}

static void register_members(VfsFs *fs, VdImage *img)
{
    GPtrArray *members = vd_image_members(img);
    if (members == NULL)
        return;
    g_mutex_lock(&fs->lock);
    for (guint i = 0; i < members->len; i++) {
        struct stat st;
        if (stat(g_ptr_array_index(members, i), &st) == 0)
            g_hash_table_insert(
                fs->members, g_strdup_printf("%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino),
                g_strdup(vd_image_name(img)));
    }
    g_mutex_unlock(&fs->lock);
}

int vfs_image_peek_locked(VfsImage *vi, const VdDriver *drv, const struct stat *host_st)
{
    VfsFs *fs = ((VfsImagePriv *)vi)->fs;
    g_autofree char *host = vfs_host_path(fs, vi->relpath);
    const struct stat st = *host_st;
    if (vi->peeked && vi->peek_fsize == st.st_size && vi->peek_mtime.tv_sec == st.st_mtim.tv_sec &&
        vi->peek_mtime.tv_nsec == st.st_mtim.tv_nsec)
        return 0;
    vi->peeked = true;
    vi->peek_mtime = st.st_mtim;
    vi->peek_fsize = st.st_size;
    g_clear_pointer(&vi->peek_members, g_ptr_array_unref);
    GError *err = NULL;
    VdImage *img = vd_image_peek_as(fs->ctx, host, drv, &err);
    if (img == NULL && vd_error_is_interrupt(err)) {
        /* No verdict: the next stat peeks again. */
        vi->peeked = false;
        g_debug("%s", err->message);
        g_error_free(err);
        return -EINTR;
    }
    if (img == NULL) {
        /* Logged once per change of the file, not once per listing. */
        if (g_strcmp0(vi->peek_error, err->message) != 0)
            g_warning("%s", err->message);
        g_free(vi->peek_error);
        vi->peek_error = g_strdup(err->message);
        vi->peek_size = 0;
        vi->peek_read_only = true;
        g_error_free(err);
        return 0;
    }
    g_clear_pointer(&vi->peek_error, g_free);
    vi->peek_size = vd_image_size(img);
    vi->peek_read_only = vd_image_format_read_only(img);
    /* A member's share of its archive, which the archive's times cover. */
    vi->peek_has_share = vd_source_host_bytes(vd_image_fd(img), &vi->peek_share);
    if (vd_image_members(img) != NULL)
        vi->peek_members = g_ptr_array_ref(vd_image_members(img));
    register_members(fs, img);
    vd_image_unref(img);
    return 0;
}

static void reap_unused_now(VfsFs *fs, VfsImage *except);

/* Overlays this mount uses, for -o overlay_discard. */
static void note_overlay(VfsFs *fs, VdImage *img)
{
    g_mutex_lock(&fs->lock);
    g_hash_table_add(fs->overlays, g_strdup(vd_image_path(img)));
    g_mutex_unlock(&fs->lock);
}

/* The image as this mount shows it: under -o overlay, its overlay over it
 * when there is one (made by the first open for writing), else the image
 * itself, which is then only ever read. */
static VdImage *open_shown(VfsFs *fs, VfsImage *vi, const char *host, bool rw, GError **error)
{
    VdOpenOptions o = {.read_only = !rw || fs->opts.overlay};
    if (!fs->opts.overlay)
        return vd_image_open(fs->ctx, host, &o, error);
    GError *e = NULL;
    VdImage *img = vd_overlay_open(fs->ctx, vi->relpath, host, NULL, rw, &e);
    if (img == NULL && e == NULL)
        img = rw ? vd_overlay_create(fs->ctx, vi->relpath, host, &e)
                 : vd_image_open(fs->ctx, host, &o, &e);
    if (img == NULL) {
        g_propagate_error(error, e);
        return NULL;
    }
    if (vd_image_is_overlay(img))
        note_overlay(fs, img);
    return img;
}

/* Called with vi->lock held. */
static void image_open_locked(VfsImage *vi)
{
    VfsFs *fs = ((VfsImagePriv *)vi)->fs;
    vi->opened = true;
    g_autofree char *host = vfs_host_path(fs, vi->relpath);
    /* Read-only even on rw mounts until someone opens the file for writing
     * (vfs_image_acquire_rw): a read-only open takes QEMU's read locks, which
     * let the same file be the backing image of another image here. */
    GError *err = NULL;
    vi->img = open_shown(fs, vi, host, false, &err);
    if (vi->img == NULL && vd_error_errno(err) == ENOMEM) {
        /* Over the memory budget: make room by closing idle images. */
        g_clear_error(&err);
        reap_unused_now(fs, vi);
        vi->img = open_shown(fs, vi, host, false, &err);
    }
    if (vi->img == NULL && vd_error_is_interrupt(err)) {
        /* Its caller gave up, or the mount is going: no verdict on the
         * image, and the next open tries again. */
        vi->error_errno = EINTR;
        vi->opened = false;
        g_debug("%s", err->message);
        g_error_free(err);
        return;
    }
    if (vi->img == NULL) {
        /* EACCES for a missing key; EIO for every other reason, which is in
         * the log and user.vdiskfs.error (a listed file is not ENOENT). */
        vi->error_errno = vd_error_errno(err) == EACCES ? EACCES : EIO;
        /* Logged once per distinct reason, however often it is retried. */
        if (g_strcmp0(vi->error, err->message) != 0)
            g_warning("%s", err->message);
        g_free(vi->error);
        vi->error = g_strdup(err->message);
        /* No room in the memory budget passes when other images close,
         * and another process's lock (EBUSY) when it lets go: the next
         * open tries again. Other verdicts stand for a while
         * (open_retry_due). */
        vi->failed_at = g_get_monotonic_time();
        if (vd_error_errno(err) == ENOMEM || vd_error_errno(err) == EBUSY)
            vi->opened = false;
        g_error_free(err);
        return;
    }
    g_clear_pointer(&vi->error, g_free);
    vi->error_errno = 0;
    register_members(fs, vi->img);
    vi->snapshots = vd_image_snapshots(vfs_image_underneath(vi->img), &err);
    if (vi->snapshots == NULL) {
        g_warning("%s: cannot list snapshots: %s", vi->relpath, err->message);
        g_clear_error(&err);
        vi->snapshots = g_ptr_array_new_with_free_func((GDestroyNotify)vd_snapshot_info_free);
    }
    vi->snap_names = snapshot_display_names(vi->snapshots);
    vi->snap_images =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)vd_image_unref);
}

/* A failed open is tried again once OPEN_RETRY_US have passed: a read
 * error may be a network filesystem's server gone for a while, and a
 * damaged image costs only its header's parse to find damaged again. Not
 * a refused key (EACCES), which would cost its KDF every time. Called
 * with vi->lock held. */
#define OPEN_RETRY_US (2 * G_USEC_PER_SEC)

static bool open_retry_due(const VfsImage *vi)
{
    return vi->opened && vi->img == NULL && vi->error_errno != EACCES &&
           g_get_monotonic_time() - vi->failed_at >= OPEN_RETRY_US;
}

VdImage *vfs_image_acquire(VfsImage *vi, int *err)
{
    g_mutex_lock(&vi->lock);
    if (!vi->opened || open_retry_due(vi))
        image_open_locked(vi);
    vi->last_used = g_get_monotonic_time();
    VdImage *img = vi->img ? vd_image_ref(vi->img) : NULL;
    *err = img ? 0 : -vi->error_errno;
    g_mutex_unlock(&vi->lock);
    return img;
}

static void image_reap(VfsImage *vi, gint64 now, gint64 idle_us, bool try);

/* Close every image of the mount that nobody is using, except one: their
 * backing chains may hold read locks on the image about to be written.
 * Only try-locks, since the caller holds a VfsImage lock. */
static void reap_unused_now(VfsFs *fs, VfsImage *except)
{
    g_autoptr(GPtrArray) all = g_ptr_array_new_with_free_func((GDestroyNotify)vfs_image_unref);
    g_mutex_lock(&fs->lock);
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, fs->images);
    while (g_hash_table_iter_next(&it, NULL, &v)) {
        if (v == except)
            continue;
        g_atomic_int_inc(&((VfsImage *)v)->refcount);
        g_ptr_array_add(all, v);
    }
    g_mutex_unlock(&fs->lock);
    for (guint i = 0; i < all->len; i++)
        image_reap(g_ptr_array_index(all, i), G_MAXINT64, 0, true);
}

void vfs_images_close_unused(VfsFs *fs)
{
    reap_unused_now(fs, NULL);
}

/* Close the snapshot images of vi nobody reads; how many stay open.
 * Called with vi->lock held. */
static guint snapshots_drop_unused(VfsImage *vi)
{
    if (vi->snap_images == NULL)
        return 0;
    GHashTableIter it;
    gpointer snap;
    g_hash_table_iter_init(&it, vi->snap_images);
    while (g_hash_table_iter_next(&it, NULL, &snap)) {
        if (!vd_image_in_use(snap))
            g_hash_table_iter_remove(&it);
    }
    return g_hash_table_size(vi->snap_images);
}

/* How long a writer's open waits for readers' RELEASEs in flight: 1 s. */
#define RELEASE_WAIT_US    5000
#define RELEASE_WAIT_TRIES 200

VdImage *vfs_image_acquire_rw(VfsImage *vi, int *err)
{
    VfsFs *fs = ((VfsImagePriv *)vi)->fs;
    g_autofree char *host = vfs_host_path(fs, vi->relpath);
    VdImage *img = NULL;
    g_mutex_lock(&vi->lock);
    /* close(2) returns before the kernel's RELEASE of that handle reaches
     * us (it is queued in the background, and an OPEN may overtake it): a
     * reader that has just closed is given a moment to be gone. */
    for (int tries = 0;; tries++) {
        if (!vi->opened || open_retry_due(vi))
            image_open_locked(vi);
        vi->last_used = g_get_monotonic_time();
        if (vi->img == NULL) {
            *err = -vi->error_errno;
            goto out;
        }
        if (!vd_image_read_only(vi->img)) {
            img = vd_image_ref(vi->img);
            goto out;
        }
        /* Reopen read-write. Our own read-only open holds QEMU's read
         * locks, so it must go first; it can only when no one else is using
         * it, or those users would keep reading through stale metadata. */
        snapshots_drop_unused(vi);
        if (!vd_image_in_use(vi->img) || tries == RELEASE_WAIT_TRIES)
            break;
        g_mutex_unlock(&vi->lock);
        g_usleep(RELEASE_WAIT_US);
        g_mutex_lock(&vi->lock);
    }
    if (vd_image_in_use(vi->img)) {
        g_message("%s: open for reading (or a snapshot of it is); close it before writing",
                  vi->relpath);
        *err = -EBUSY;
        goto out;
    }
    GError *e = NULL;
    g_clear_pointer(&vi->img, vd_image_unref);
    img = open_shown(fs, vi, host, true, &e);
    /* Perhaps only idle images of this mount with this one in their backing
     * chain stand in the way: close those and try again. A child whose
     * reader has just closed it is idle only once that RELEASE arrives. */
    for (int tries = 0; img == NULL && vd_error_errno(e) == EBUSY && tries < RELEASE_WAIT_TRIES;
         tries++) {
        g_clear_error(&e);
        if (tries > 0)
            g_usleep(RELEASE_WAIT_US);
        reap_unused_now(fs, vi);
        img = open_shown(fs, vi, host, true, &e);
    }
    if (img != NULL && vd_image_read_only(img)) {
        /* The format or the host file cannot be written. */
        vi->img = img;
        img = NULL;
        *err = -EROFS;
        goto out;
    }
    if (img == NULL) {
        g_message("%s", e->message);
        *err = -(vd_error_errno(e) == EBUSY ? EBUSY : EIO);
        g_error_free(e);
        /* Back to read-only, as before. */
        vi->img = open_shown(fs, vi, host, false, NULL);
        if (vi->img == NULL)
            vi->opened = false;
        goto out;
    }
    register_members(fs, img);
    vi->img = vd_image_ref(img);
out:
    g_mutex_unlock(&vi->lock);
    return img;
}

/* Index of a snapshot display name, or -1. Called with vi->lock held. */
static int snapshot_index(VfsImage *vi, const char *snap_name)
{
    for (guint i = 0; vi->snap_names != NULL && i < vi->snap_names->len; i++) {
        if (strcmp(g_ptr_array_index(vi->snap_names, i), snap_name) == 0)
            return (int)i;
    }
    return -1;
}

/* Where a snapshot's overlay lives below the overlay directory. */
static char *snapshot_overlay_key(const char *relpath, const char *snap_name)
{
    return g_build_filename(VFS_SNAPSHOT_DIR, relpath, snap_name, NULL);
}

/* The view of snapshot s of vi's image, as this mount shows it: under -o
 * overlay, its overlay when there is one (rw: made, or reopened, for
 * writing). Called with vi->lock held; returns a new reference. */
static VdImage *snapshot_open_locked(VfsFs *fs, VfsImage *vi, VdImage *base,
                                     const VdSnapshotInfo *s, const char *snap_name, bool rw,
                                     GError **error)
{
    g_autofree char *host = vfs_host_path(fs, vi->relpath);
    g_autofree char *key = snapshot_overlay_key(vi->relpath, snap_name);
    VdImage *cur = g_hash_table_lookup(vi->snap_images, s->id);
    if (cur != NULL && (!rw || (vd_image_is_overlay(cur) && !vd_image_read_only(cur))))
        return vd_image_ref(cur);
    if (cur != NULL) {
        /* Becoming writable replaces the view: only when nobody reads it. */
        if (vd_image_in_use(cur)) {
            vd_set_error(error, EBUSY, "%s: snapshot %s is open for reading", vi->relpath,
                         snap_name);
            return NULL;
        }
        g_hash_table_remove(vi->snap_images, s->id);
    }
    VdImage *snap = NULL;
    GError *e = NULL;
    if (fs->opts.overlay)
        snap = vd_overlay_open(fs->ctx, key, host, s->id, rw, &e);
    if (snap == NULL && e == NULL) {
        g_autoptr(VdImage) view = vd_image_open_snapshot(vfs_image_underneath(base), s->id, &e);
        if (view != NULL && rw)
            snap = vd_overlay_create_copy(fs->ctx, key, host, s->id, view, &e);
        else if (view != NULL)
            snap = g_steal_pointer(&view);
    }
    if (snap == NULL) {
        g_propagate_error(error, e);
        return NULL;
    }
    if (vd_image_is_overlay(snap))
        note_overlay(fs, snap);
    g_hash_table_insert(vi->snap_images, g_strdup(s->id), vd_image_ref(snap));
    return snap;
}

static VdImage *snapshot_acquire(VfsFs *fs, const char *relpath, const char *snap_name, bool rw,
                                 int *err)
{
    if (rw && !fs->opts.overlay) {
        *err = -EROFS;
        return NULL;
    }
    VfsImage *vi = vfs_image_get(fs, relpath);
    if (vi == NULL) {
        *err = -ENOENT;
        return NULL;
    }
    VdImage *base = vfs_image_acquire(vi, err);
    VdImage *snap = NULL;
    if (base != NULL) {
        g_mutex_lock(&vi->lock);
        int idx = snapshot_index(vi, snap_name);
        if (idx < 0) {
            *err = -ENOENT;
        } else {
            GError *e = NULL;
            snap = snapshot_open_locked(fs, vi, base, g_ptr_array_index(vi->snapshots, idx),
                                        snap_name, rw, &e);
            /* A reader that has just closed the snapshot is gone once its
             * RELEASE arrives, as for the image (vfs_image_acquire_rw). */
            for (int tries = 0;
                 snap == NULL && rw && vd_error_errno(e) == EBUSY && tries < RELEASE_WAIT_TRIES;
                 tries++) {
                g_clear_error(&e);
                g_mutex_unlock(&vi->lock);
                g_usleep(RELEASE_WAIT_US);
                g_mutex_lock(&vi->lock);
                idx = snapshot_index(vi, snap_name);
                if (idx < 0)
                    vd_set_error(&e, ENOENT, "%s: snapshot %s is gone", relpath, snap_name);
                else
                    snap = snapshot_open_locked(fs, vi, base, g_ptr_array_index(vi->snapshots, idx),
                                                snap_name, rw, &e);
            }
            if (snap == NULL) {
                g_warning("%s", e->message);
                *err = vd_error_errno(e) == EBUSY    ? -EBUSY
                       : vd_error_errno(e) == ENOENT ? -ENOENT
                                                     : -EIO;
                g_error_free(e);
            }
        }
        g_mutex_unlock(&vi->lock);
        vd_image_unref(base);
    }
    vfs_image_unref(vi);
    return snap;
}

VdImage *vfs_snapshot_acquire(VfsFs *fs, const char *relpath, const char *snap_name, int *err)
{
    return snapshot_acquire(fs, relpath, snap_name, false, err);
}

VdImage *vfs_snapshot_acquire_rw(VfsFs *fs, const char *relpath, const char *snap_name, int *err)
{
    return snapshot_acquire(fs, relpath, snap_name, true, err);
}

bool vfs_snapshot_info(VfsFs *fs, const char *relpath, const char *snap_name, int64_t *date,
                       uint32_t *date_nsec, uint64_t *size)
{
    VfsImage *vi = vfs_image_get(fs, relpath);
    if (vi == NULL)
        return false;
    int err;
    VdImage *base = vfs_image_acquire(vi, &err);
    bool found = false;
    if (base != NULL) {
        g_mutex_lock(&vi->lock);
        int idx = snapshot_index(vi, snap_name);
        if (idx >= 0) {
            VdSnapshotInfo *s = g_ptr_array_index(vi->snapshots, idx);
            *date = s->date_sec;
            *date_nsec = s->date_nsec;
            *size = s->virtual_size;
            found = true;
        }
        g_mutex_unlock(&vi->lock);
        vd_image_unref(base);
    }
    vfs_image_unref(vi);
    return found;
}

/* Close vi's image if nothing but vi holds it (no handle, no request, no
 * open snapshot) and it has been idle long enough. */
static void image_reap(VfsImage *vi, gint64 now, gint64 idle_us, bool try)
{
    if (!try)
        g_mutex_lock(&vi->lock);
    else if (!g_mutex_trylock(&vi->lock))
        return;
    if (!vi->opened || now - vi->last_used < idle_us)
        goto out;
    if (snapshots_drop_unused(vi) > 0)
        goto out;
    if (vi->img != NULL && vd_image_in_use(vi->img))
        goto out;
    /* vi->lock is held, so no one can take a new reference meanwhile. */
    g_clear_pointer(&vi->img, vd_image_unref);
    g_clear_pointer(&vi->snap_images, g_hash_table_unref);
    g_clear_pointer(&vi->snapshots, g_ptr_array_unref);
    g_clear_pointer(&vi->snap_names, g_ptr_array_unref);
    /* The error stays, so that a retry failing the same way logs nothing. */
    vi->opened = false;
out:
    g_mutex_unlock(&vi->lock);
}

static gpointer reaper_thread(gpointer data)
{
    VfsFs *fs = data;
    gint64 idle_us = (gint64)fs->opts.idle_timeout * G_USEC_PER_SEC;
    gint64 period = MAX(idle_us / 4, G_USEC_PER_SEC / 4);
    g_mutex_lock(&fs->reaper_lock);
    while (!fs->reaper_stop) {
        gint64 deadline = g_get_monotonic_time() + period;
        while (!fs->reaper_stop && g_cond_wait_until(&fs->reaper_cond, &fs->reaper_lock, deadline))
            ;
        if (fs->reaper_stop)
            break;
        g_mutex_unlock(&fs->reaper_lock);
        g_mutex_lock(&fs->lock);
        g_autoptr(GPtrArray) all = g_ptr_array_new_with_free_func((GDestroyNotify)vfs_image_unref);
        GHashTableIter it;
        gpointer v;
        g_hash_table_iter_init(&it, fs->images);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
            g_atomic_int_inc(&((VfsImage *)v)->refcount);
            g_ptr_array_add(all, v);
        }
        g_mutex_unlock(&fs->lock);
        gint64 now = g_get_monotonic_time();
        for (guint i = 0; i < all->len; i++)
            image_reap(g_ptr_array_index(all, i), now, idle_us, false);
        g_mutex_lock(&fs->reaper_lock);
    }
    g_mutex_unlock(&fs->reaper_lock);
    return NULL;
}

void vfs_reaper_start(VfsFs *fs)
{
    if (fs->opts.idle_timeout == 0 || fs->reaper != NULL)
        return;
    fs->reaper_stop = false;
    fs->reaper = g_thread_new("vdiskfs-idle", reaper_thread, fs);
}

void vfs_reaper_stop(VfsFs *fs)
{
    if (fs->reaper == NULL)
        return;
    g_mutex_lock(&fs->reaper_lock);
    fs->reaper_stop = true;
    g_cond_signal(&fs->reaper_cond);
    g_mutex_unlock(&fs->reaper_lock);
    g_thread_join(fs->reaper);
    fs->reaper = NULL;
}
