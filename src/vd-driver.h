/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The format driver table, after nbdkit's plugin API: small, explicit,
 * capabilities declared. A driver only knows its own layer: the generic
 * block layer (vd-image.c, vd-chain.c) walks backing chains, turns
 * block_status into holes and read vectors, and enforces read-only.
 *
 * Every driver callback may be called from several threads at once
 * unless its capabilities say otherwise; see VD_CAP_SERIAL_WRITES.
 */
#ifndef VD_DRIVER_H
#define VD_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

typedef struct VdImage VdImage;
typedef struct VdInfo VdInfo;

/* What one run of an image's own layer holds. */
typedef enum {
    /* Raw bytes at (fd, host_offset): the generic code may read them
     * directly or hand the fd to the kernel (splice). */
    VD_EXTENT_DATA,
    /* Allocated in this layer but stored encoded (compressed, encrypted,
     * bitmap-interleaved): read it through the driver's pread. */
    VD_EXTENT_DATA_DECODE,
    /* Reads as zeros; backing layers are not consulted. */
    VD_EXTENT_ZERO,
    /* Not in this layer: the backing image supplies it, zeros at the bottom. */
    VD_EXTENT_UNALLOCATED,
} VdExtentState;

typedef struct {
    VdExtentState state;
    uint64_t length; /* > 0, and never past the range asked for */
    int fd;          /* VD_EXTENT_DATA only */
    uint64_t host_offset;
} VdExtent;

/* block_status flags */
enum {
    /* The caller maps holes (SEEK_HOLE, map, st_blocks). Without it the
     * caller only reads, and a driver may report known-zero host ranges as
     * DATA when telling them apart costs extra I/O (raw: host SEEK_HOLE). */
    VD_STATUS_WANT_ZERO = 1u << 0,
};

/* write_zeroes flags */
enum {
    /* The range may be deallocated (punch hole) as long as it reads as
     * zeros afterwards, whatever the backing image holds. */
    VD_ZERO_MAY_UNMAP = 1u << 0,
};

/* pwrite_fast results */
enum {
    VD_FAST_ERROR = -1, /* error set */
    VD_FAST_SLOW = 0,   /* not done: use pwrite */
    VD_FAST_DONE = 1,
};

/* Driver capabilities. */
enum {
    VD_CAP_WRITE = 1u << 0,         /* pwrite works on some images (see img->read_only) */
    VD_CAP_BACKING = 1u << 1,       /* images may have a backing image */
    VD_CAP_SNAPSHOTS = 1u << 2,     /* snapshot_list/snapshot_open */
    VD_CAP_GROW_ON_WRITE = 1u << 3, /* writes past the end extend the image (raw) */
    VD_CAP_SHRINK = 1u << 4,        /* truncate may make the image smaller */
    /* Write-side callbacks (pwrite, write_zeroes, truncate, flush) are
     * called one at a time per image; reads still run in parallel. */
    VD_CAP_SERIAL_WRITES = 1u << 5,
    VD_CAP_DIRECTORY = 1u << 6, /* the image is a directory (bundle), probe sees is_dir */
};

/* What probe is given: the start and end of the file (or nothing, for a
 * directory). Probing must not open other files except where a format
 * is defined by them (bundles, split sets) and then only by path. */
typedef struct {
    const char *path;     /* host path of the candidate */
    const char *basename; /* its last component */
    bool is_dir;
    uint64_t file_size;
    const uint8_t *head; /* first head_len bytes (up to VD_PROBE_HEAD) */
    size_t head_len;
    const uint8_t *tail; /* last tail_len bytes (up to VD_PROBE_TAIL) */
    size_t tail_len;
} VdProbe;

#define VD_PROBE_HEAD 4096
#define VD_PROBE_TAIL 512

/* Probe scores. */
enum {
    VD_PROBE_NO = 0,
    VD_PROBE_EXTENSION = 1, /* only the name suggests it */
    VD_PROBE_WEAK = 50,     /* plausible content (a text descriptor, a footer) */
    VD_PROBE_MAGIC = 100,   /* an unambiguous magic number */
};

typedef struct {
    char *id;   /* the format's own snapshot identifier */
    char *name; /* as recorded; may be empty, repeat, or contain '/' */
    int64_t date_sec;
    uint32_t date_nsec;
    uint64_t virtual_size;
    uint64_t vm_state_size;
    uint64_t vm_clock_nsec; /* guest clock when taken */
    bool has_icount;        /* icount: instructions executed, when recorded */
    uint64_t icount;
} VdSnapshotInfo;

void vd_snapshot_info_free(VdSnapshotInfo *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VdSnapshotInfo, vd_snapshot_info_free)

/* What create makes. */
typedef struct {
    uint64_t size;              /* virtual size */
    const char *backing;        /* backing file as it is to be recorded, or NULL */
    const char *backing_format; /* its driver name, or NULL */
    GBytes *origin;             /* kept in the image for open to give back (img->origin) */
} VdCreateOptions;

/* What a read-only consistency check found, in qemu-img check's terms:
 * corruptions (references the metadata cannot back: a refcount below the
 * references, a cluster outside the file, a wrong COPIED flag), leaks
 * (space counted as used that nothing references), and check errors
 * (metadata the check could not read). lines: one message each, as
 * qemu-img prints them ("ERROR cluster 5 refcount=0 reference=1").
 * failed: an errno when the check stopped at the first fault instead of
 * counting (qemu-img's VMDK check does: "Check failed: Invalid argument",
 * no summary); the counts are then not printed. */
typedef struct {
    uint64_t corruptions, leaks, check_errors;
    int failed;
    uint64_t image_end_offset;
    uint64_t total_clusters, allocated_clusters, fragmented_clusters, compressed_clusters;
    GPtrArray *lines; /* char *, owned */
} VdCheckReport;

typedef struct VdDriver {
    const char *name;        /* "qcow2"; also the backing-format name */
    const char *description; /* one line, for vdisk and man pages */
    unsigned caps;           /* VD_CAP_* */

    /* Confidence (VD_PROBE_*) that the candidate is in this format. */
    int (*probe)(const VdProbe *probe);
    /* Optional, for a format that a probe may know only by the file's end
     * (a footer): the extensions (no dot) its files go by. A compressed
     * file's probe sees only the head of what it holds (decoding it all
     * costs a pass over it); one whose name inside ends so is decoded
     * whole to probe when its head says nothing. NULL-terminated. */
    const char *const *tail_extensions;

    /* Open: img->fd, img->path, img->name, img->read_only and img->ctx are
     * set. Set img->opaque, img->size and, where present, the backing
     * reference (vd_image_set_backing_*), img->members and
     * img->read_only = true if this image cannot be written. */
    bool (*open)(VdImage *img, GError **error);
    /* Release img->opaque. Never called after a failed open. */
    void (*close)(VdImage *img);
    /* Optional, and what a directory listing calls instead of open: set
     * img->size, the members (vd_image_add_member) and, where the format
     * forbids writing this image, vd_image_refuse_writes() - from the
     * header and descriptor only: no tables, no keys, no backing chain,
     * nothing left in img->opaque. img->fd is open read-only and unlocked.
     * Without it a listing opens the image (without its backing chain). */
    bool (*peek)(VdImage *img, GError **error);

    /* Read bytes that block_status reported as DATA_DECODE (or DATA) in this
     * layer. Required if block_status can return DATA_DECODE. */
    bool (*pread)(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error);
    /* Write within [0, img->size) (or beyond, with VD_CAP_GROW_ON_WRITE).
     * Partial-cluster copy-on-write reads the backing through
     * vd_image_read_backing(). */
    bool (*pwrite)(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error);
    /* Optional, with VD_CAP_SERIAL_WRITES: a write that changes no metadata
     * (an overwrite of data the image already holds, where it lies), run
     * concurrently with other fast writes and never with the serialised
     * callbacks. VD_FAST_SLOW when it would change metadata: nothing was
     * written and pwrite gets the request. */
    int (*pwrite_fast)(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error);
    /* The longest run from offset (< img->size, length bounded by
     * img->size) that has one state. Required. */
    bool (*block_status)(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                         VdExtent *ext, GError **error);
    /* Make every completed write durable: metadata caches, then the host. */
    bool (*flush)(VdImage *img, GError **error);
    /* Make the range read as zeros (VD_ZERO_*). Optional: the generic code
     * falls back to writing zero buffers. */
    bool (*write_zeroes)(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                         GError **error);
    /* Change the virtual size (grow; shrink only with VD_CAP_SHRINK). */
    bool (*truncate)(VdImage *img, uint64_t new_size, GError **error);

    /* Format details for vdisk info and xattrs (vd_info_add_*). Optional. */
    void (*describe)(VdImage *img, VdInfo *info);

    /* Internal snapshots, as a GPtrArray of VdSnapshotInfo. Optional. */
    GPtrArray *(*snapshot_list)(VdImage *img, GError **error);
    /* Fill snap (already holding a ref on img as snap->snapshot_of, a dup of
     * img->fd, img's backing, read_only) for snapshot id: set snap->opaque
     * and snap->size. close() is called on it later like on any image. */
    bool (*snapshot_open)(VdImage *img, const char *id, VdImage *snap, GError **error);

    /* Check that backing really is this image's parent (CID, UUID, linkage). */
    bool (*check_backing)(VdImage *img, VdImage *backing, GError **error);
    /* This image's identity, for children that name their parent by UUID. */
    bool (*get_uuid)(VdImage *img, uint8_t uuid[16]);
    /* Optional: make a new, empty image of this format at path (which must
     * not exist yet), durable when it returns. name is for messages. */
    bool (*create)(const char *path, const char *name, const VdCreateOptions *opts, GError **error);
    /* Optional: record in the image itself that it is corrupt (qcow2's
     * corrupt bit), best effort. Called once, by vd_image_set_corrupt(),
     * possibly from inside one of this driver's write callbacks. */
    void (*mark_corrupt)(VdImage *img);
    /* Optional: a read-only consistency check of this image (not its
     * backing chain), filling report (lines already allocated). False only
     * when the check could not run at all. */
    bool (*check)(VdImage *img, VdCheckReport *report, GError **error);
} VdDriver;

/* The table (src/vd-registry.c), NULL-terminated, in probe priority order. */
extern const VdDriver *const vd_drivers[];
const VdDriver *vd_driver_find(const char *name);

#endif
