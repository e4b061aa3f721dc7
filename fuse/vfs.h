/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The filesystem: IMAGEDIR's tree with every image shown as its raw disk,
 * and .snapshots/ with each internal snapshot as a read-only file. Nothing
 * here knows any format: it talks to the block layer (src/) only.
 */
#ifndef VFS_H
#define VFS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include <glib.h>

#include "src/vd-context.h"
#include "src/vd-image.h"

#define VFS_SNAPSHOT_DIR  ".snapshots"
#define VFS_PARTITION_DIR ".partitions"

/* The largest READ/WRITE and the connection's max_readahead. */
#define VFS_MAX_IO (1u << 20)

typedef struct {
    bool read_only;        /* -o ro (default) / rw */
    double attr_timeout;   /* seconds the kernel may cache attributes and entries */
    size_t splice_min;     /* reads at least this large hand fds to the kernel; 0 = never */
    unsigned idle_timeout; /* seconds before an unused image is closed; 0 = never */
    bool overlay;          /* writes go to overlays (ctx->overlay_dir): every image is writable */
    bool overlay_discard;  /* and the overlays are removed at unmount */
} VfsOptions;

/* One image file in IMAGEDIR, opened (or failed) once per host file. */
typedef struct VfsImage {
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
} VfsImage;

typedef enum {
    VFS_NODE_DIR,      /* a directory of IMAGEDIR */
    VFS_NODE_IMAGE,    /* an image, shown as its raw disk */
    VFS_NODE_SNAPDIR,  /* .snapshots/ or a directory below it */
    VFS_NODE_SNAPIMG,  /* .snapshots/<image>/: the image's snapshots */
    VFS_NODE_SNAPFILE, /* one snapshot */
    /* .partitions/ (fuse/vfs-partitions.c) */
    VFS_NODE_PARTDIR,     /* .partitions/ or a directory below it */
    VFS_NODE_PARTSNAPDIR, /* .partitions/.snapshots/ or a directory below it */
    VFS_NODE_PARTSNAPIMG, /* .partitions/.snapshots/<image>/: one directory per snapshot */
    VFS_NODE_PARTIMG,     /* .partitions/<image>/ (or of a snapshot): its pN files */
    VFS_NODE_PARTFILE,    /* one partition */
} VfsNodeKind;

/* Whether a node kind is a file (not a directory). */
static inline bool vfs_kind_is_file(VfsNodeKind k)
{
    return k == VFS_NODE_IMAGE || k == VFS_NODE_SNAPFILE || k == VFS_NODE_PARTFILE;
}

typedef struct {
    fuse_ino_t ino;
    VfsNodeKind kind;
    char *relpath;   /* path below IMAGEDIR ("" = root); for snapshot nodes, of the dir or image */
    char *snap_name; /* SNAPFILE, and PARTIMG/PARTFILE of a snapshot: its display name */
    unsigned part;   /* PARTFILE: the partition's number */
    char *key;       /* lookup key in VfsFs.by_key */
    dev_t dev;       /* VFS_NODE_IMAGE: the host file; a replaced file is a new node */
    ino_t ino_host;
    struct VfsImage *vi;          /* VFS_NODE_IMAGE: what it showed last; VfsFs.lock */
    uint64_t nlookup;             /* guarded by VfsFs.lock */
    struct timespec cached_mtime; /* host mtime the kernel's page cache holds; VfsFs.lock */
} VfsNode;

/* What a name in a directory is. */
typedef struct {
    VfsNodeKind kind;
    char *relpath; /* of the child (of the image, for snapshot and partition nodes) */
    dev_t dev;     /* VFS_NODE_IMAGE: host identity */
    ino_t ino;
    char *snap_name; /* snapshot nodes: the snapshot's display name (owned) */
    unsigned part;   /* PARTFILE */
} VfsChild;

void vfs_child_clear(VfsChild *c);

typedef struct {
    char *name;
    VfsNodeKind kind;
} VfsDirEntry;

typedef struct VfsWatch VfsWatch;

typedef struct {
    VdContext *ctx;
    char *root;              /* IMAGEDIR, realpath */
    struct fuse_session *se; /* for invalidation notices; NULL when not mounted */
    VfsWatch *watch;         /* inotify (vfs-watch.c), or NULL */
    GThread *reaper;         /* idle-image closer, or NULL */
    GMutex reaper_lock;      /* guards reaper_stop with reaper_cond */
    GCond reaper_cond;
    bool reaper_stop;
    VfsOptions opts;
    GMutex lock;             /* guards the tables below */
    GHashTable *by_ino;      /* fuse_ino_t -> VfsNode* (owns) */
    GHashTable *by_key;      /* key -> VfsNode* */
    GHashTable *images;      /* relpath -> VfsImage* (owns a ref) */
    GHashTable *members;     /* "dev:ino" of files that belong to an image -> image name */
    GHashTable *dirs;        /* relpath -> scan of that directory (vfs-tree.c) */
    GHashTable *writers;     /* VdImage* -> number of open write handles */
    GHashTable *handles;     /* every open file handle (owned), freed at unmount */
    GHashTable *part_errors; /* "relpath\1snapshot" -> last partition table error logged */
    GHashTable *overlays;    /* overlay paths this mount used (for overlay_discard) */
    fuse_ino_t next_ino;
} VfsFs;

VfsFs *vfs_new(VdContext *ctx, const VfsOptions *opts);
void vfs_free(VfsFs *fs);
/* Flush and close every image (unmount, SIGTERM). */
void vfs_close_all(VfsFs *fs);

/* Write handles, so that unmount and SIGTERM flush images that open files
 * still hold (perhaps replaced on the host and so no longer in images). */
void vfs_writer_add(VfsFs *fs, VdImage *img);
/* Returns how many write handles of img are left. */
guint vfs_writer_remove(VfsFs *fs, VdImage *img);
guint vfs_writer_count(VfsFs *fs, VdImage *img);
/* Open file handles: an unmount (or SIGTERM) can come before the kernel's
 * RELEASE of the last ones; vfs_free() frees what is left. */
void vfs_handle_add(VfsFs *fs, gpointer handle);
void vfs_handle_remove(VfsFs *fs, gpointer handle);
void vfs_handle_free(gpointer handle); /* fuse/vfs-ops.c */

/* Nodes. vfs_node_lookup takes one lookup reference (for a FUSE entry reply). */
VfsNode *vfs_node_get(VfsFs *fs, fuse_ino_t ino);
VfsNode *vfs_node_lookup(VfsFs *fs, const VfsChild *child);
void vfs_node_forget(VfsFs *fs, fuse_ino_t ino, uint64_t n);
/* Whether the kernel's cached pages of node still match a host file with
 * this mtime; records it for next time. */
bool vfs_node_cache_still_valid(VfsFs *fs, VfsNode *node, const struct timespec *mtime);

/* Directory listing: GPtrArray of VfsDirEntry, or NULL with errno. */
GPtrArray *vfs_list_dir(VfsFs *fs, const VfsNode *dir, int *err);
/* Find one name in a directory: 0 and *child (free child->relpath), or -errno. */
int vfs_find_child(VfsFs *fs, const VfsNode *dir, const char *name, VfsChild *child);

/* Image state for a path (opening it on first use). Caller unrefs. */
VfsImage *vfs_image_get(VfsFs *fs, const char *relpath);
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
    return img->overlay && img->backing != NULL ? img->backing : img;
}
/* Learn what a listing needs from the image's header (vd_image_peek),
 * once per change of the host file; its members are hidden from then on.
 * Called with vi->lock held. */
void vfs_image_peek_locked(VfsImage *vi);
/* The same for an image a scan probed as drv (NULL: probe it). */
void vfs_image_peek_as_locked(VfsImage *vi, const VdDriver *drv);
/* The snapshot view with this display name, referenced, or NULL and -errno. */
VdImage *vfs_snapshot_acquire(VfsFs *fs, const char *relpath, const char *snap_name, int *err);
/* The same, writable: under -o overlay, the snapshot's overlay (made at the
 * first write as a copy of the snapshot); EROFS otherwise. */
VdImage *vfs_snapshot_acquire_rw(VfsFs *fs, const char *relpath, const char *snap_name, int *err);
/* The snapshot's table entry (copied) for attributes; false if none. */
bool vfs_snapshot_info(VfsFs *fs, const char *relpath, const char *snap_name, int64_t *date,
                       uint32_t *date_nsec, uint64_t *size);

/* The image a node shows (IMAGE or SNAPFILE), referenced, or NULL and
 * -errno (ESTALE when the host file was replaced since the lookup). */
VdImage *vfs_node_image(VfsFs *fs, VfsNode *node, int *err);
/* Same, opened read-write (IMAGE nodes only). */
VdImage *vfs_node_image_rw(VfsFs *fs, VfsNode *node, int *err);
/* The VfsImage of an IMAGE node, or NULL and -errno (ESTALE as above). */
VfsImage *vfs_node_vfs_image(VfsFs *fs, VfsNode *node, int *err);

/* Attributes of a node; from open_img (an open handle's image) when given,
 * so a file replaced on the host still stats as what the handle reads.
 * -errno on failure. */
int vfs_node_stat(VfsFs *fs, VfsNode *node, VdImage *open_img, struct stat *st);

/* .partitions/ (fuse/vfs-partitions.c): the same jobs for its nodes. */
GPtrArray *vfs_part_list_dir(VfsFs *fs, const VfsNode *dir, int *err);
int vfs_part_find_child(VfsFs *fs, const VfsNode *dir, const char *name, VfsChild *child);
int vfs_part_stat(VfsFs *fs, VfsNode *node, VdImage *open_img, struct stat *st);
/* The partition as an image (a slice of its disk), opened for writing
 * when rw (live images on rw mounts only), referenced; NULL and -errno. */
VdImage *vfs_part_open(VfsFs *fs, VfsNode *node, bool rw, int *err);
/* user.vdiskfs.partition.* of a PARTFILE, user.vdiskfs.error and
 * .partition.table of a PARTIMG: name/value pairs added to kv. */
void vfs_part_xattrs(VfsFs *fs, VfsNode *node, GPtrArray *kv);

/* Host path of a relpath. */
char *vfs_host_path(VfsFs *fs, const char *relpath);
/* stat(2) of relpath's host file; for a member of an archive shown as a
 * directory, the archive's. -1 with errno. */
int vfs_host_stat(VfsFs *fs, const char *relpath, struct stat *st);

/* xattrs (fuse/vfs-xattr.c): value into buf (size 0 = just the length);
 * returns length or -errno. */
ssize_t vfs_xattr_get(VfsFs *fs, VfsNode *node, const char *name, char *buf, size_t size);
ssize_t vfs_xattr_list(VfsFs *fs, VfsNode *node, char *buf, size_t size);

/* Close images nobody used for opts.idle_timeout seconds (and retry failed
 * ones after as long); they reopen on demand. */
void vfs_reaper_start(VfsFs *fs);
void vfs_reaper_stop(VfsFs *fs);

/* Live directories (vfs-watch.c). */
bool vfs_watch_start(VfsFs *fs, struct fuse_session *se);
void vfs_watch_stop(VfsFs *fs);
void vfs_watch_dir(VfsFs *fs, const char *relpath);

extern const struct fuse_lowlevel_ops vfs_ops;

#endif
