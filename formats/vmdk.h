/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VMDK: VMware virtual disks. An image is a text descriptor (a file of its
 * own, or embedded in a hosted sparse extent) listing extents, each one of
 * FLAT/VMFS (raw bytes in a file), ZERO, SPARSE (hosted sparse "KDMV",
 * also streamOptimized), VMFSSPARSE ("COWD") or SESPARSE (ESXi 6.5+).
 *
 * Files: vmdk.c (probe, open, extent list, status, describe),
 * vmdk-descriptor.c (the text parser), vmdk-sparse.c (KDMV and COWD
 * headers, grain directories, the grain tables in the block layer's
 * table cache and their write-back),
 * vmdk-sesparse.c (seSparse headers and entries), vmdk-stream.c
 * (compressed grains), vmdk-write.c (writes, grain allocation, flush),
 * vmdk-check.c (the consistency walk of a read-write open).
 */
#ifndef VMDK_H
#define VMDK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "src/vd-image.h"
#include "src/vd-metamap.h"
#include "src/vd-table-cache.h"

#define VMDK_SECTOR 512u
/* Descriptors are small text files; anything bigger is not one. */
#define VMDK_DESC_MAX    (1u << 20)
#define VMDK_MAX_EXTENTS 65536u

/* ---- the text descriptor (vmdk-descriptor.c) ---- */

typedef struct {
    char *access;     /* "RW", "RDONLY" or "NOACCESS" */
    uint64_t sectors; /* size in 512-byte sectors */
    char *type;       /* "SPARSE", "FLAT", "ZERO", "VMFS", "VMFSSPARSE", "SESPARSE", ... */
    char *filename;   /* as written (relative to the descriptor); NULL for ZERO */
    uint64_t offset;  /* FLAT/VMFS: start in the file, in sectors */
} VmdkDescExtent;

typedef struct {
    unsigned version;
    bool has_cid, has_parent_cid;
    uint32_t cid, parent_cid;
    char *create_type;     /* or NULL */
    char *parent_hint;     /* parentFileNameHint, or NULL */
    GPtrArray *extents;    /* VmdkDescExtent */
    GPtrArray *ddb_keys;   /* char *, "ddb.adapterType"... */
    GPtrArray *ddb_values; /* char *, same order */
} VmdkDescriptor;

/* Parse descriptor text (need not be NUL-terminated; stops at the first
 * NUL). Pure: touches nothing but the buffer. name is for messages. */
VmdkDescriptor *vmdk_descriptor_parse(const char *text, size_t len, const char *name,
                                      GError **error);
void vmdk_descriptor_free(VmdkDescriptor *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmdkDescriptor, vmdk_descriptor_free)
/* A ddb.* value, or NULL. */
const char *vmdk_descriptor_ddb(const VmdkDescriptor *d, const char *key);
/* The same text with the CID line's value replaced by cid (%08x); NULL when
 * the text has no CID line. */
char *vmdk_descriptor_set_cid(const char *text, size_t len, uint32_t cid, size_t *out_len);

/* ---- extents ---- */

typedef enum {
    VMDK_EXT_FLAT,     /* FLAT, VMFS */
    VMDK_EXT_ZERO,     /* ZERO */
    VMDK_EXT_SPARSE,   /* hosted sparse, "KDMV" (also streamOptimized) */
    VMDK_EXT_COWD,     /* VMFSSPARSE, "COWD" */
    VMDK_EXT_SESPARSE, /* SESPARSE */
} VmdkExtentKind;

/* Sparse header flags (KDMV). */
enum {
    VMDK_FLAG_NL_DETECT = 1u << 0,
    VMDK_FLAG_RGD = 1u << 1,
    VMDK_FLAG_ZERO_GRAIN = 1u << 2,
    VMDK_FLAG_COMPRESSED = 1u << 16,
    VMDK_FLAG_MARKERS = 1u << 17,
};

typedef struct {
    VmdkExtentKind kind;
    unsigned index;       /* position in the extent list */
    char *path;           /* host path; NULL for ZERO */
    char *line;           /* the descriptor line, for describe */
    int fd;               /* -1 for ZERO */
    bool own_fd;          /* fd is ours to close (not img->fd) */
    bool noaccess;        /* NOACCESS: reads fail */
    uint64_t start;       /* first virtual byte */
    uint64_t length;      /* virtual bytes */
    uint64_t flat_offset; /* FLAT: byte offset of the extent's start in the file */
    uint64_t dev, ino;    /* which host file (descriptor extents; 0 for ZERO) */

    /* Sparse kinds. Fixed after open unless noted. */
    uint32_t version, flags;
    uint64_t capacity;              /* bytes the sparse header describes */
    uint64_t grain;                 /* bytes per grain */
    uint32_t gtes;                  /* entries per grain table */
    unsigned gte_size;              /* 4, or 8 for seSparse */
    uint32_t gd_count;              /* grain directory entries */
    uint64_t gd_offset, rgd_offset; /* bytes; rgd_offset 0 when none */
    uint64_t desc_offset, desc_len; /* embedded descriptor (KDMV); 0 length: none */
    /* Host byte offsets of the grain tables (0: none). Entries change
     * (0 -> allocated) only by the serialised writer, after the new table
     * is in gtc, with __atomic_store_n; readers take no lock and load
     * them with __atomic_load_n. */
    uint64_t *gd;
    uint64_t *rgd;     /* redundant copies, or NULL (writer only) */
    uint64_t overhead; /* bytes of metadata before the first grain */
    bool compressed, markers, zero_grain;
    uint64_t se_grains;  /* seSparse: byte offset of grain number 0 */
    uint64_t se_gt_base; /* seSparse: byte offset of grain table number 0 */
    uint64_t file_size;  /* host size as last known (atomic; grows under writes) */

    /* Writable hosted sparse extents: the header, embedded descriptor,
     * directories and every grain table, which no data write may touch;
     * new tables are added by the serialised writer (the map has a lock
     * of its own for lookups). */
    VdMetaMap *meta;

    /* Sparse kinds (KDMV, COWD, seSparse): the grain tables, keyed by
     * their directory index, as stored (gtes * gte_size bytes each).
     * Created once every extent is open; thread-safe on its own. */
    VdTableCache *gtc;

    /* Writer state (VD_CAP_SERIAL_WRITES serialises all of it). */
    uint64_t next_alloc; /* where the next grain or table goes */
    bool data_dirty;     /* written since the last fdatasync */
    GArray *gd_pending;  /* uint32_t: GD entries to write after their tables */
} VmdkExtent;

/* Decompressed grains (streamOptimized), a few at a time. */
typedef struct {
    GMutex lock; /* guards the slots */
    unsigned n;
    struct VmdkDecoded {
        bool valid;
        unsigned extent;
        uint64_t host;
        uint64_t age;
        uint8_t *data; /* one grain */
    } * slot;
    uint64_t clock;
} VmdkDecodeCache;

typedef struct {
    VmdkDescriptor *desc; /* NULL for a lone extent without one */
    char *desc_text;      /* raw descriptor, for CID updates */
    size_t desc_len;
    bool desc_embedded; /* in img->fd at desc_offset, at most desc_space bytes */
    uint64_t desc_offset, desc_space;
    char *create_type;
    GPtrArray *extents; /* VmdkExtent */
    VmdkDecodeCache dc;
    uint32_t cid;     /* as written now (changes on the first write) */
    bool cid_updated; /* writer state */
} VmdkState;

/* vmdk.c */
VmdkExtent *vmdk_find_extent(VmdkState *s, uint64_t offset);

/* vmdk-sparse.c */
/* Read and check a KDMV or COWD header in e->fd (head: its first sector). */
bool vmdk_sparse_open(VdImage *img, VmdkExtent *e, const uint8_t *head, GError **error);
/* The same, header only (geometry and flags; no directory read): for peek. */
bool vmdk_sparse_peek(VdImage *img, VmdkExtent *e, const uint8_t *head, GError **error);
/* The embedded descriptor location of a KDMV header (0 length: none). */
void vmdk_sparse_desc_location(const uint8_t *head, uint64_t *offset, uint64_t *len);
void vmdk_extent_free(VmdkExtent *e);
/* Grain size, capacity and (unless set) the number of directory entries;
 * e->gtes must be set. */
bool vmdk_sparse_set_geometry(VdImage *img, VmdkExtent *e, uint64_t capacity_sectors,
                              uint64_t grain_sectors, GError **error);
/* Metadata ranges (header, descriptor, directories, tables) must not
 * overlap; for an extent that can be written they become e->meta. */
bool vmdk_check_layout(VdImage *img, VmdkExtent *e, GError **error);
/* The writer extended the extent's file to end (at least). */
void vmdk_extent_grew(VmdkExtent *e, uint64_t end);

/* The grain table caches of every sparse extent, metadata_cache_bytes
 * shared among them: once all extents are open. */
void vmdk_gt_caches_new(VdImage *img, VmdkState *s);

/* One run of a sparse extent from rel (bytes into the extent), at most
 * max bytes: state, length and (DATA) host offset. */
bool vmdk_sparse_status(VdImage *img, VmdkExtent *e, uint64_t rel, uint64_t max, VdExtent *out,
                        GError **error);
/* Grain table entry of grain number grain as stored (0 when the table is
 * missing), read through the cache. */
bool vmdk_gte_get(VmdkExtent *e, uint64_t grain, uint64_t *value, GError **error);
/* Set a grain table entry (KDMV), allocating the table when missing; the
 * table becomes dirty. Writer only. */
bool vmdk_gte_set(VdImage *img, VmdkExtent *e, uint64_t grain, uint32_t value, GError **error);
/* Write dirty grain tables (after an fdatasync of the data they point to),
 * then the directory entries of new tables. Writer only. */
bool vmdk_gt_writeback(VdImage *img, GError **error);
/* Dirty grain tables have piled up: time for vmdk_gt_writeback. Writer only. */
bool vmdk_gt_writeback_due(VmdkState *s);

/* vmdk-check.c */
/* Before a writable hosted sparse extent (e->meta set) is written: every
 * grain inside the file and used once, by nothing else. When not, the
 * image becomes read-only and the reason is recorded (true all the same);
 * false only when a table cannot be read. */
bool vmdk_check_allocations(VdImage *img, VmdkExtent *e, GError **error);
/* vdisk check: what qemu-img check reports for VMDK (a grain past the end
 * of its file stops the check). */
bool vmdk_check_report(VdImage *img, VdCheckReport *report, GError **error);

/* vmdk-stream.c */
void vmdk_decode_cache_init(VmdkDecodeCache *dc, uint64_t limit, uint64_t grain);
void vmdk_decode_cache_clear(VmdkDecodeCache *dc);
/* Read any range of a sparse extent, decompressing compressed grains. */
bool vmdk_sparse_read_decode(VdImage *img, VmdkExtent *e, uint8_t *buf, size_t len, uint64_t rel,
                             GError **error);

/* vmdk-sesparse.c */
/* head (len bytes of the file's start) begins with the seSparse magic. */
bool vmdk_is_sesparse(const uint8_t *head, size_t len);
/* Read and check a seSparse extent in e->fd: headers and directory. */
bool vmdk_sesparse_open(VdImage *img, VmdkExtent *e, GError **error);
/* The same, headers only (geometry; no directory read): for peek. */
bool vmdk_sesparse_peek(VdImage *img, VmdkExtent *e, GError **error);
/* Decode a seSparse grain table entry. */
bool vmdk_sesparse_gte(VdImage *img, VmdkExtent *e, uint64_t v, VdExtentState *state,
                       uint64_t *host, GError **error);

/* vmdk-write.c */
bool vmdk_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error);
bool vmdk_write_zeroes(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                       GError **error);
bool vmdk_flush(VdImage *img, GError **error);

#endif
