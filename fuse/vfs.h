/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The filesystem: IMAGEDIR's tree with every image shown as its raw disk,
 * and .snapshots/ with each internal snapshot as a read-only file. Nothing
 * here knows any format: it talks to the block layer (src/) only.
 *
 * This header holds the types the fuse/ files share (the mount, its nodes,
 * directory entries); each fuse/vfs-*.c declares its functions in its own
 * vfs-*.h.
 */
#ifndef FUSE_VFS_H
#define FUSE_VFS_H

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

typedef struct {
    char *name;
    VfsNodeKind kind;
    /* Its attributes cost decoding a whole container (a .gz's size):
     * READDIRPLUS leaves them to a LOOKUP, so that a listing without
     * them (ls) does not wait. */
    bool attrs_later;
} VfsDirEntry;

typedef struct VfsWatch VfsWatch;
/* fuse/vfs-image.h */
typedef struct VfsImage VfsImage;

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

#endif
