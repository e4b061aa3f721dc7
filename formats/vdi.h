/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VirtualBox VDI: shared state of the vdi driver (vdi.c: header, open,
 * block status; vdi-write.c: block allocation and the other write paths).
 *
 * Layout (all little-endian): a 64-byte text pre-header, the signature
 * 0xbeda107f and version at 0x40, the version 1 header from 0x48, the block
 * map (one 32-bit entry per virtual block: the index of the data block, or
 * FREE/ZERO) at offBlocks, and the data blocks from offData, each
 * cbBlockExtra bytes of service data followed by cbBlock bytes of disk.
 */
#ifndef VDI_H
#define VDI_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "src/vd-image.h"
#include "src/vd-metamap.h"

#define VDI_SIGNATURE 0xbeda107fu

/* Header fields, absolute offsets in the file (version 1.x). */
enum {
    VDI_OFF_SIGNATURE = 0x40,
    VDI_OFF_VERSION = 0x44,
    VDI_OFF_HEADER_SIZE = 0x48,
    VDI_OFF_TYPE = 0x4c,
    VDI_OFF_FLAGS = 0x50,
    VDI_OFF_COMMENT = 0x54,
    VDI_COMMENT_LEN = 256,
    VDI_OFF_BLOCKS = 0x154,
    VDI_OFF_DATA = 0x158,
    VDI_OFF_CYLINDERS = 0x15c,
    VDI_OFF_HEADS = 0x160,
    VDI_OFF_SECTORS = 0x164,
    VDI_OFF_SECTOR_SIZE = 0x168,
    VDI_OFF_DISK_SIZE = 0x170,
    VDI_OFF_BLOCK_SIZE = 0x178,
    VDI_OFF_BLOCK_EXTRA = 0x17c,
    VDI_OFF_BLOCK_COUNT = 0x180,
    VDI_OFF_BLOCKS_ALLOCATED = 0x184,
    VDI_OFF_UUID_CREATE = 0x188,
    VDI_OFF_UUID_MODIFY = 0x198,
    VDI_OFF_UUID_LINKAGE = 0x1a8,
    VDI_OFF_UUID_PARENT_MODIFY = 0x1b8,
    VDI_OFF_LCHS = 0x1c8, /* present when the header size is at least 0x190 */
    VDI_HEADER_V1_SIZE = 0x180,
    VDI_HEADER_V1PLUS_SIZE = 0x190,
    VDI_HEADER_MAX = 4096, /* where the header must end, at the latest */
};

enum {
    VDI_TYPE_NORMAL = 1, /* dynamic */
    VDI_TYPE_FIXED = 2,  /* static, preallocated */
    VDI_TYPE_UNDO = 3,   /* differencing, for undo (VirtualBox 1.x) */
    VDI_TYPE_DIFF = 4,   /* differencing (snapshots) */
};

/* Block map entries that are not data block indices. */
#define VDI_BLOCK_FREE 0xffffffffu /* not in this image: the parent's, or zeros */
#define VDI_BLOCK_ZERO 0xfffffffeu /* reads as zeros */
static inline bool vdi_entry_allocated(uint32_t e)
{
    return e < VDI_BLOCK_ZERO;
}

/* Sane maxima: beyond them an image is refused as corrupt. */
#define VDI_MAX_BLOCKS     (1u << 28)
#define VDI_MAX_BLOCK_SIZE (256u << 20)
#define VDI_MIN_BLOCK_SIZE 512u

typedef struct {
    /* Fixed at open. */
    uint32_t type;
    bool differencing;
    uint64_t off_blocks;  /* block map */
    uint64_t off_data;    /* first data block */
    uint32_t block_size;  /* bytes of disk per block */
    uint32_t block_extra; /* service bytes before each block's data */
    uint64_t slot_size;   /* block_size + block_extra */
    uint32_t header_len;  /* 0x48 + cbHeader */
    /* Bytes kept in `header` and rewritten on header updates: the header,
     * and up to the block map when that starts in the first page, so that
     * the header and the first map entries can be written in one go. */
    uint32_t header_bytes;

    /* The block map in host byte order. Entries are read with atomic loads
     * by block_status from any thread and stored (atomically) only by the
     * write paths, which the block layer serialises (VD_CAP_SERIAL_WRITES).
     * The pointer itself is replaced only by truncate; retired arrays are
     * kept until close because readers may still hold them. */
    uint32_t *bmap;
    uint32_t blocks; /* entries in bmap; written under the write lock, read atomically */
    GPtrArray *retired_maps;

    /* Write side only (serialised by the block layer's write lock). */
    uint8_t *used;           /* bitmap of data block indices in use, blocks bits */
    uint32_t used_capacity;  /* bits in used */
    uint32_t allocated;      /* allocated entries in bmap */
    uint32_t free_hint;      /* no free data index below this */
    uint64_t file_end;       /* host file size as we know it */
    bool session_started;    /* header rewritten with a fresh modification UUID */
    bool header_count_stale; /* header's allocated count differs from the map */

    /* A copy of the header bytes [0, header_bytes). Written under the write
     * lock; meta_lock guards it against describe and get_uuid. */
    GMutex meta_lock;
    uint8_t *header;

    /* The header (with the gap up to the block map when it is rewritten
     * with it) and the block map with the room reserved for it up to the
     * data area: no data write may land there. Fixed after open. */
    VdMetaMap *meta;
    /* Why data blocks would overlap the header or the map (the header
     * puts the data area there), or NULL; a read-write open marks the
     * image corrupt with it. */
    char *layout_error;
    /* Opened for vdisk check (img->for_check) with a block map the open
     * would refuse: the first fault; every read fails with it. */
    char *map_fault;
} VdiState;

/* vdi.c */
const char *vdi_type_name(uint32_t type);
void vdi_format_uuid(const uint8_t *u, char out[37]);

/* vdi-write.c */
bool vdi_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error);
bool vdi_write_zeroes(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                      GError **error);
bool vdi_truncate(VdImage *img, uint64_t new_size, GError **error);
bool vdi_flush(VdImage *img, GError **error);

#endif
