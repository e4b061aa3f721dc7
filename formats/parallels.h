/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Parallels disk images, shared by the "parallels" driver (a lone .hds
 * file) and the "parallels-bundle" driver (a NAME.hdd/ directory with a
 * DiskDescriptor.xml and one .hds per storage and snapshot layer).
 *
 * An expanding .hds (all numbers little-endian): a 64-byte header, the BAT
 * (one 32-bit entry per cluster: 0 = not allocated, else the cluster's file
 * offset in sectors for "WithoutFreeSpace" images or in clusters for
 * "WithouFreSpacExt" ones), then the data area. A plain .hds is raw data.
 */
#ifndef PARALLELS_H
#define PARALLELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "src/vd-driver.h"
#include "src/vd-metamap.h"

#define PRL_MAGIC_OLD   "WithoutFreeSpace"
#define PRL_MAGIC_EXT   "WithouFreSpacExt"
#define PRL_HEADER_SIZE 64
#define PRL_INUSE_OPEN  0x746f6e59u /* "Ynot": opened read-write, not closed */

enum {
    PRL_OFF_VERSION = 16,
    PRL_OFF_HEADS = 20,
    PRL_OFF_CYLINDERS = 24,
    PRL_OFF_TRACKS = 28, /* cluster size in sectors */
    PRL_OFF_BAT_ENTRIES = 32,
    PRL_OFF_NB_SECTORS = 36,
    PRL_OFF_INUSE = 44,
    PRL_OFF_DATA_OFF = 48, /* sectors */
    PRL_OFF_FLAGS = 52,
    PRL_OFF_EXT_OFF = 56, /* sectors */
};

/* Sane maxima. */
#define PRL_MAX_CLUSTER     (256u << 20)
#define PRL_MAX_BAT_ENTRIES (1u << 28)

/* One .hds file: expanding or plain. */
typedef struct {
    int fd; /* owned when owns_fd */
    bool owns_fd;
    char *name; /* for messages */
    bool plain;
    uint64_t size; /* bytes of disk it holds (plain: the file size) */

    /* Expanding only; fixed after open. */
    bool ext_magic;
    uint64_t cluster; /* bytes */
    uint64_t unit;    /* bytes per BAT unit: 512 or the cluster size */
    uint32_t bat_entries;
    uint64_t data_off;
    uint64_t grid; /* where the cluster grid starts: 0 or data_off */
    uint32_t heads, cylinders;
    bool was_in_use; /* opened read-write elsewhere and not closed */
    uint32_t flags;
    /* BAT in host order: entries read atomically from any thread, stored
     * only by the write side (serialised by the block layer). */
    uint32_t *bat;
    uint32_t allocated; /* write side; for describe */

    /* Write side only. */
    uint64_t file_size; /* at open */
    uint64_t data_end;  /* where the next cluster goes */
    uint64_t ext_off;   /* format extension (dirty bitmaps), dropped on first write */
    uint8_t header[PRL_HEADER_SIZE];

    /* Expanding only: the header and the BAT, where no data write may
     * land; fixed after open. */
    VdMetaMap *meta;
    /* Why data would land on the header or the BAT (the data area or a
     * cluster lies there), or NULL: the caller marks a read-write image
     * corrupt with it (prl_hds_check_layout). */
    char *layout_error;
} PrlHds;

/* Fill [voff, voff+len) of a new cluster with what lies below (NULL: zeros). */
typedef bool (*PrlFillFn)(void *opaque, uint8_t *buf, size_t len, uint64_t voff, GError **error);

/* The magic of an expanding .hds at head (64 bytes or more). */
bool prl_hds_magic(const uint8_t *head, size_t len);
/* Open an expanding .hds on fd (taken over if owns_fd). */
bool prl_hds_open(PrlHds *h, int fd, bool owns_fd, const char *name, GError **error);
/* Only the header of an expanding .hds on fd (not taken over): h->size
 * and the layout; no BAT. prl_hds_clear() it afterwards. */
bool prl_hds_peek(PrlHds *h, int fd, const char *name, GError **error);
/* For a layer opened to be written: mark img corrupt when h's data would
 * land on its metadata; serve it read-only (the reason recorded) when a
 * cluster lies past the end of the file or is used twice, where writes
 * would change other data. */
void prl_hds_check_layout(const PrlHds *h, VdImage *img);
/* vdisk check of an expanding .hds: what qemu-img check reports. */
bool prl_hds_check_report(const PrlHds *h, VdCheckReport *report, GError **error);
/* A plain .hds: raw bytes, size from the file. */
bool prl_hds_open_plain(PrlHds *h, int fd, bool owns_fd, const char *name, GError **error);
void prl_hds_clear(PrlHds *h);

/* Status of [off, off+len) within the .hds: allocated (host offset set) or
 * not; *run is the length of the run in that state (contiguous on the host). */
void prl_hds_status(const PrlHds *h, uint64_t off, uint64_t len, bool *allocated, uint64_t *host,
                    uint64_t *run);

/* Write buf (or zeros when buf is NULL) at [off, off+len) < h->size of
 * a layer of img. New clusters get what fill says lies below elsewhere
 * (NULL: zeros); zeroing unallocated clusters is skipped when fill is
 * NULL. A data write that would land on h's metadata marks img corrupt. */
bool prl_hds_write(VdImage *img, PrlHds *h, const uint8_t *buf, uint64_t len, uint64_t off,
                   bool may_unmap, PrlFillFn fill, void *fill_opaque, GError **error);

/* Format details of one .hds for vdisk info, keys prefixed (parallels.c). */
void prl_describe_hds(const PrlHds *h, VdInfo *info, const char *prefix);

/* DiskDescriptor.xml of a bundle. Sizes and offsets in 512-byte sectors. */
typedef struct {
    char *guid;
    char *type; /* "Compressed" (expanding) or "Plain" */
    char *file;
} PrlDescImage;

typedef struct {
    uint64_t start, end;
    uint32_t blocksize;
    GPtrArray *images; /* PrlDescImage */
} PrlDescStorage;

typedef struct {
    char *guid;
    char *parent;
} PrlDescShot;

typedef struct {
    uint64_t disk_size;
    uint32_t logic_sector_size; /* 0 when absent */
    char *uid;
    char *name;
    char *encryption_engine; /* NULL or a GUID; a non-null one means encrypted */
    GPtrArray *storages;     /* PrlDescStorage */
    GPtrArray *shots;        /* PrlDescShot */
    char *top_guid;          /* <Snapshots><TopGUID>, NULL when absent */
} PrlDescriptor;

#define PRL_NULL_GUID      "{00000000-0000-0000-0000-000000000000}"
#define PRL_MAX_DESCRIPTOR (4u << 20)

/* Parse a DiskDescriptor.xml buffer. A pure function (no I/O): the errors
 * name `name`. Checks structure only; the bundle driver checks meaning. */
PrlDescriptor *prl_descriptor_parse(const char *buf, size_t len, const char *name, GError **error);
void prl_descriptor_free(PrlDescriptor *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PrlDescriptor, prl_descriptor_free)

/* The image chain of the descriptor from guid down to the base, as GUIDs
 * (top first; guid NULL: the current top). */
GPtrArray *prl_descriptor_chain(const PrlDescriptor *d, const char *guid, const char *name,
                                GError **error);
const char *prl_descriptor_top(const PrlDescriptor *d);

#endif
