/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Opened images, snapshots, host paths and the idle reaper (fuse/vfs-image.c). */
#ifndef FUSE_VFS_IMAGE_H
#define FUSE_VFS_IMAGE_H

#include "fuse/vfs.h"

/* One image file in IMAGEDIR, opened (or failed) once per host file. */
struct VfsImage {
    gint refcount;
    char *relpath;
    dev_t dev; /* host identity when opened: a replaced file gets a new VfsImage */
    ino_t ino;
    struct timespec mtime; /* and, on read-only mounts, so does one changed in place */
    off_t size;
    GMutex lock;      /* guards everything below */
    bool opened;      /* an open was attempted */
    gint64 last_used; /* monotonic µs of the last acquire, for the idle reaper */
    VdImage *img;     /* NULL when the open failed */
    char *error;      /* why it failed (for user.vdiskfs.error) */
    int error_errno;
    gint64 failed_at;        /* monotonic µs of that failure */
    GPtrArray *snapshots;    /* VdSnapshotInfo, in table order; NULL until listed */
    GPtrArray *snap_names;   /* unique display names, parallel to snapshots */
    GHashTable *snap_images; /* snapshot id -> VdImage* */
    /* What listings show without opening the image (vfs_image_peek), for
     * the host file as it was at peek_mtime/peek_fsize. */
    bool peeked;
    struct timespec peek_mtime;
    off_t peek_fsize;
    uint64_t peek_size;      /* virtual size */
    bool peek_read_only;     /* the format forbids writing it */
    GPtrArray *peek_members; /* host paths (char *), or NULL */
    bool peek_has_share;     /* a member of an archive: peek_share is its host bytes */
    uint64_t peek_share;
    char *peek_error; /* why the header could not be read */
};

/* Host path of a relpath. */
char *vfs_host_path(VfsFs *fs, const char *relpath);
/* stat(2) of relpath's host file; for a member of an archive shown as a
 * directory, the archive's. -1 with errno. */
int vfs_host_stat(VfsFs *fs, const char *relpath, struct stat *st);

/* Image state for a path (opening it on first use). Caller unrefs. */
VfsImage *vfs_image_get(VfsFs *fs, const char *relpath);
/* The same, with the host stat it was checked against (vfs_host_stat), so
 * that a listing stats each file once. */
VfsImage *vfs_image_get_stat(VfsFs *fs, const char *relpath, struct stat *host_st);
void vfs_image_unref(VfsImage *vi);
/* The image opened read-write (reopening it so on first use), referenced,
 * or NULL and -errno: EBUSY while others read it or QEMU holds it, EROFS
 * when the format cannot be written. */
VdImage *vfs_image_acquire_rw(VfsImage *vi, int *err);
/* The opened image, referenced, or NULL and -errno. */
VdImage *vfs_image_acquire(VfsImage *vi, int *err);
/* Where an image's snapshots and host attributes come from: under an
 * overlay, the image it covers. */
static inline VdImage *vfs_image_underneath(VdImage *img)
{
    return vd_image_is_overlay(img) && vd_image_backing(img) != NULL ? vd_image_backing(img) : img;
}
/* Learn what a listing needs from the image's header (vd_image_peek),
 * once per change of the host file (host_st: its vfs_host_stat, just
 * taken); its members are hidden from then on. drv: what a scan probed
 * it as (NULL: probe it). 0, or -EINTR when the peek was stopped
 * (vd-interrupt.h) and nothing learnt. Called with vi->lock held. */
int vfs_image_peek_locked(VfsImage *vi, const VdDriver *drv, const struct stat *host_st);
/* The snapshot view with this display name, referenced, or NULL and -errno. */
VdImage *vfs_snapshot_acquire(VfsFs *fs, const char *relpath, const char *snap_name, int *err);
/* The same, writable: under -o overlay, the snapshot's overlay (made at the
 * first write as a copy of the snapshot); EROFS otherwise. */
VdImage *vfs_snapshot_acquire_rw(VfsFs *fs, const char *relpath, const char *snap_name, int *err);
/* The snapshot's table entry (copied) for attributes; false if none. */
bool vfs_snapshot_info(VfsFs *fs, const char *relpath, const char *snap_name, int64_t *date,
                       uint32_t *date_nsec, uint64_t *size);

/* Close images nobody used for opts.idle_timeout seconds (and retry failed
 * ones after as long); they reopen on demand. */
/* Close every image of the mount nobody is using now, whatever its idle
 * time, to make room in the memory budget. Only try-locks: the caller may
 * hold a VfsImage lock. */
void vfs_images_close_unused(VfsFs *fs);
void vfs_reaper_start(VfsFs *fs);
void vfs_reaper_stop(VfsFs *fs);

#endif
