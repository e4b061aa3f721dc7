/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * An opened image: host file descriptors, driver state and its backing
 * image (another VdImage: the chain). Reference counted; every function
 * here is safe to call from several threads at once.
 *
 * Lock order, outermost first: a thread holding one of these takes only
 * those below it.
 *  1. The filesystem's (fuse/vfs-image.h, fuse/vfs.h): VfsImage.lock, then VfsFs.lock; a
 *     second VfsImage.lock only with g_mutex_trylock. Both may be held
 *     across opening and closing images (the last unref), hence above
 *     everything here. VfsFs.reaper_lock is held alone.
 *  2. VdImage.write_lock, of one image at a time (backing images are
 *     read-only and never written through their child).
 *  3. A driver's metadata locks: qcow2's L1 lock (Qcow2State.l1_lock,
 *     formats/qcow2.h: readers hold its read side across copying L2
 *     entries out of the table cache, a load on a miss included; the
 *     write side takes its write side only around changing L1, never
 *     calling into a table cache with it held), VDI's
 *     meta_lock, the decoded-data caches (qcow2, VMDK stream, qcow v1,
 *     vd-ro-cache). One at a time, around the cache's
 *     own data and host reads of what it loads; writers that need a
 *     table across calls pin it instead of keeping the lock. A cache's
 *     read lock is never held while waiting for another thread (the
 *     decode pool, read-ahead): big-reader read locks must not nest.
 *     VdTableCache.flush_lock (src/vd-table-cache.h) is held across its
 *     store callbacks and its dependency's flush: a cache's before the
 *     one it depends on.
 *  4. Leaves, under which nothing else is taken: VdImage.error_lock,
 *     VdTableCache.lock and .load_mutex (QED and qcow v1 tables, VHDX BAT
 *     chunks, VMDK grain tables, qcow2 L2 tables and refcount blocks:
 *     loads and stores run outside them),
 *     VdMetaMap.lock, VdReadahead.lock (its waiters hold nothing else),
 *     VdDecodeBatch.lock (jobs run outside it; the caller waiting for
 *     them holds nothing of 1-3 that they need), and fuse/vfs-uring.c's
 *     table of requests in hand and each ring entry's reply lock (a
 *     reply may take them under any lock above).
 * Functions that take a lock and return with it held do so only when they
 * succeed (dir_get_locked); the ones called with a lock held return with
 * it held either way (acquire_locked, src/vd-table-cache.c).
 */
#ifndef VD_IMAGE_H
#define VD_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "vd-context.h"
#include "vd-driver.h"

struct VdImage {
    gint refcount;
    const VdDriver *driver;
    void *opaque; /* the driver's state */
    VdContext *ctx;
    char *path;     /* host path as opened */
    char *name;     /* for messages and key lookup: path relative to ctx->root */
    int fd;         /* main host file (O_RDONLY|O_DIRECTORY for bundles) */
    bool read_only; /* set before open; a driver may set it, never clear it */
    /* The format forbids writing this image whatever the open mode
     * (streamOptimized VMDK, corrupt qcow2...): vd_image_refuse_writes(). */
    bool format_read_only;
    bool for_check; /* opened read-only for vdisk check (VdOpenOptions.for_check) */
    /* Virtual size. Written only by truncate and growing writes, under
     * write_lock; read with vd_image_size(). */
    uint64_t size;

    /* Backing reference as the driver found it (set during open). */
    char *backing_name;            /* as recorded, for display */
    char *backing_format;          /* driver name, or NULL to probe */
    GPtrArray *backing_candidates; /* host paths to try in order (char *) */
    bool backing_by_uuid;          /* find the parent by backing_uuid instead */
    uint8_t backing_uuid[16];
    VdImage *backing; /* opened by the generic code after open */

    GPtrArray *members; /* host paths of the image's other files (char *) */
    /* The unit in which the driver decodes DATA_DECODE data (a compressed
     * cluster or grain), set by open; reads split decoding at its
     * boundaries to spread it over cores. 0: 64 KiB. */
    uint64_t decode_unit;
    /* The disk's logical sector size where the format records one (VHDX:
     * 512 or 4096), else 0; partition tables are read in its units. */
    unsigned logical_sector;
    VdImage *snapshot_of; /* for a snapshot view: the image it belongs to */
    VdImage *view_of;     /* for a partition view: the disk it is a slice of */
    GBytes *origin;       /* what create was given as opts->origin, where the image keeps it */
    bool overlay;         /* an overlay (vd-overlay.c): backing is the image it shows */
    unsigned depth;       /* 0 for the top of a chain */
    bool peeked;          /* made by vd_image_peek: no driver state */

    /* Held for writing around write-side callbacks (VD_CAP_SERIAL_WRITES)
     * and truncate, for reading around pwrite_fast. */
    GRWLock write_lock;
    struct VdReadahead *readahead; /* vd-readahead.c; its own lock */

    /* Every host file of this image that holds QEMU's locks (the image
     * file, extents, data files, layers): VdImageFile, so that the locks can
     * follow the image from writer to reader and back. files_lock guards
     * it and write_locked (true while the writable files hold the writer's
     * locks; read atomically on the write path). */
    GMutex files_lock;
    GArray *files;
    gint write_locked;
    gint64 mem_reserved; /* of ctx's budget (vd_image_mem_reserve); atomic */

    /* Set once corruption was found at I/O time (vd_image_set_corrupt):
     * writes fail with EIO from then on. Atomic. */
    gint corrupt;
    /* The last I/O-time error (corruption, host I/O error), for the log and
     * user.vdiskfs.error; guarded by error_lock. */
    GMutex error_lock;
    char *io_error;
};

typedef struct {
    bool read_only;
    const char *format; /* force a driver, or NULL to probe */
    bool raw_fallback;  /* unrecognised content opens as raw (backing files) */
    bool no_backing;    /* this layer only, not its backing chain (identity checks) */
    /* Read-only, for vdisk check: a driver may open metadata it would
     * refuse (VDI's doubly used blocks), keeping the fault for the check
     * to report and refusing the reads that would use it. */
    bool for_check;
} VdOpenOptions;

/* Probe one host path: the driver that claims it, or NULL (not an image,
 * error unset) or NULL with error (could not be read). */
const VdDriver *vd_probe_path(VdContext *ctx, const char *path, GError **error);
/* The same, and for a container (an .xz, an E01) whose image goes by its
 * name without the container's suffix, that name in *shown (g_free);
 * in *archive whether the file is an archive that may hold several
 * images (vd_file_archive_members tells); in *head_only whether the
 * verdict comes from the head of what a container holds whose size
 * costs decoding it all (a gzip stream), which the probe did not pay:
 * its size is learned by opening it. Such a head that says nothing,
 * inside a name whose format is known by its end (disk.vhd.gz), is
 * taken for raw and *head_only: opening it tells the format too. */
const VdDriver *vd_probe_path_shown(VdContext *ctx, const char *path, char **shown, bool *archive,
                                    bool *head_only, GError **error);

/* Open an image and its whole backing chain. */
VdImage *vd_image_open(VdContext *ctx, const char *path, const VdOpenOptions *opts, GError **error);
/* What a listing needs (virtual size, members, whether the format allows
 * writing), from the header only where the driver has a peek callback:
 * a read-only VdImage that cannot be read or written, only looked at and
 * unreferenced. No locks are taken (like qemu-img info -U). */
VdImage *vd_image_peek(VdContext *ctx, const char *path, GError **error);
/* The same for a file already probed as drv (a directory scan's): no
 * second probe; the driver's own checks still refuse a changed file. */
VdImage *vd_image_peek_as(VdContext *ctx, const char *path, const VdDriver *drv, GError **error);
VdImage *vd_image_ref(VdImage *img);
/* Whether anyone but the one caller holding a reference uses img. */
static inline bool vd_image_in_use(VdImage *img)
{
    return g_atomic_int_get(&img->refcount) > 1;
}
void vd_image_unref(VdImage *img);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VdImage, vd_image_unref)

static inline uint64_t vd_image_size(const VdImage *img)
{
    return __atomic_load_n(&img->size, __ATOMIC_ACQUIRE);
}

/* What code outside the block layer (fuse/, the programs) reads of an
 * image: through these, never the fields, which belong to the block layer
 * and the drivers. */
/* The host path it was opened from. */
static inline const char *vd_image_path(const VdImage *img)
{
    return img->path;
}
/* Its name: the path relative to IMAGEDIR. */
static inline const char *vd_image_name(const VdImage *img)
{
    return img->name;
}
/* Its driver's name. */
static inline const char *vd_image_format(const VdImage *img)
{
    return img->driver->name;
}
/* Its main host file (a directory for bundles). */
static inline int vd_image_fd(const VdImage *img)
{
    return img->fd;
}
/* Opened read-only (or made so by its driver). */
static inline bool vd_image_read_only(const VdImage *img)
{
    return img->read_only;
}
/* Never writable, whatever the open mode (vd_image_refuse_writes). */
static inline bool vd_image_format_read_only(const VdImage *img)
{
    return img->format_read_only;
}
/* The host paths of its other files (char *), or NULL. */
static inline GPtrArray *vd_image_members(const VdImage *img)
{
    return img->members;
}
/* Its logical sector size where the format records one, else 0. */
static inline unsigned vd_image_logical_sector(const VdImage *img)
{
    return img->logical_sector;
}
/* Its backing image, or NULL. */
static inline VdImage *vd_image_backing(const VdImage *img)
{
    return img->backing;
}
/* The backing file as recorded, or NULL. */
static inline const char *vd_image_backing_name(const VdImage *img)
{
    return img->backing_name;
}
/* An overlay (vd-overlay.c): its backing is the image it shows. */
static inline bool vd_image_is_overlay(const VdImage *img)
{
    return img->overlay;
}
/* For a partition view, the disk it is a slice of; else NULL. */
static inline VdImage *vd_image_view_of(const VdImage *img)
{
    return img->view_of;
}

/* Set by drivers during open. */
/* This image can never be written (whatever the open mode): read-only. */
void vd_image_refuse_writes(VdImage *img);
void vd_image_set_backing(VdImage *img, const char *recorded_name, const char *format);
void vd_image_add_backing_candidate(VdImage *img, const char *host_path);
void vd_image_add_member(VdImage *img, const char *host_path);
/* Open a file named inside the image (an extent, the external data file, a
 * bundle layer, a split part) through the one opener (src/vd-file.h):
 * confined to IMAGEDIR under -o backing=confined, never blocking on a
 * FIFO, refused when not a regular file or block device, read-write when
 * flags has VD_FILE_WRITE and the host allows it (else the image becomes
 * read-only), locked like the image, and added to the members. path is a
 * host path (see vd_image_sibling_path); what names it in messages
 * ("extent file"). Returns the fd, the driver's to close in close(), or
 * -1 with error. */
int vd_image_open_member(VdImage *img, const char *path, const char *what, unsigned flags,
                         GError **error);
/* Reserve memory for one of this image's tables from the mount's budget
 * (vd_context_mem_reserve), released when the image is freed. Drivers call
 * it before allocating a table whose size an image header gives. */
bool vd_image_mem_reserve(VdImage *img, uint64_t bytes, const char *what, GError **error);
/* Give back what a table that is freed before the image reserved. */
void vd_image_mem_release(VdImage *img, uint64_t bytes);
/* A file name recorded in the image, as a host path: absolute names as
 * they are, relative ones against the image's directory (for a directory
 * image, the bundle itself). */
char *vd_image_sibling_path(VdImage *img, const char *recorded);
/* A file name recorded in the image (backing file, extent, data file):
 * resolved against the image's directory, and under backing=confined
 * required to lie inside IMAGEDIR. The realpath (free()), or NULL with
 * error ("<image>: <what> <recorded>: ..."; EACCES when outside). */
char *vd_image_resolve_file(VdImage *img, const char *recorded, const char *what, GError **error);

/* The last writer is gone: flush, and give up the write permission's locks
 * (keeping the reader's) so that other images of this mount, or a QEMU
 * reader, can open the file at once. The next write takes them back, or
 * fails with EBUSY if a reader came meanwhile. */
bool vd_image_release_write(VdImage *img, GError **error);

/* Corruption found while serving I/O (a mapping that points at metadata,
 * a table past the end of the file): logged once, kept for
 * vd_image_last_error(), the driver's mark_corrupt hook run, and every
 * later write refused with EIO. Safe from any thread and from inside a
 * driver callback. */
void vd_image_set_corrupt(VdImage *img, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Refuse a data write to [host_offset, +len) of a host file whose metadata
 * ranges are in map: false with EIO (and the image marked corrupt) when it
 * would land on any of them. For drivers, before every data write. */
struct VdMetaMap;
bool vd_image_guard_write(VdImage *img, struct VdMetaMap *map, uint64_t host_offset, uint64_t len,
                          GError **error);
/* An error met serving a request (EIO-class: corruption, host I/O): kept
 * as the image's last error and logged, once per distinct message. Errors
 * that are the caller's (ENOSPC, EROFS, EINVAL, EBUSY...) are ignored, and
 * so is everything once the image is marked corrupt (the reason stays). */
void vd_image_record_error(VdImage *img, const GError *err);
/* The last recorded error, or NULL (g_free). */
char *vd_image_last_error(VdImage *img);

/* A read-only consistency check of img alone (vdisk check), into report
 * (zeroed here; free with vd_check_report_clear). False with ENOTSUP for
 * formats that have no check, or with the reason the check could not run. */
bool vd_image_check(VdImage *img, VdCheckReport *report, GError **error);
void vd_check_report_clear(VdCheckReport *report);

/* Reads: any range; past the virtual size reads as zeros. */
bool vd_image_pread(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error);
/* The same without read-ahead; *decoded tells whether any of it needed
 * decoding. For the read-ahead worker. */
bool vd_image_pread_direct(VdImage *img, void *buf, size_t len, uint64_t offset, bool *decoded,
                           GError **error);
/* What lies under this layer at [offset, offset+len): the backing chain,
 * or zeros. For drivers doing copy-on-write. */
bool vd_image_read_backing(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error);

/* Writes: EROFS on read-only images, ENOSPC past the end (unless the
 * driver grows on write). */
bool vd_image_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error);
bool vd_image_write_zeroes(VdImage *img, uint64_t offset, uint64_t len, unsigned flags,
                           GError **error);
bool vd_image_truncate(VdImage *img, uint64_t new_size, GError **error);
bool vd_image_flush(VdImage *img, GError **error);

/* Host space used by the image's own files (not its backing), in bytes. */
uint64_t vd_image_host_bytes(VdImage *img);
/* The same for the file fd alone (an image's main file): its allocation,
 * or a source's share of its container file. */
uint64_t vd_image_file_bytes(int fd);

/* A read-only image object that shows something of another one (a
 * partition, a snapshot): drv's, sharing of's file (a dup of its fd) and
 * context, with no driver state yet. The caller sets opaque and size. */
VdImage *vd_image_new_view(VdImage *of, const VdDriver *drv, const char *name, GError **error);

/* Snapshots: a GPtrArray of VdSnapshotInfo (empty when the format has none). */
GPtrArray *vd_image_snapshots(VdImage *img, GError **error);
VdImage *vd_image_open_snapshot(VdImage *img, const char *id, GError **error);

#endif
