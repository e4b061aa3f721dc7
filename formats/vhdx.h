/* SPDX-License-Identifier: GPL-2.0-or-later */
/* VHDX: layout constants and the state shared by the driver's files. */
#ifndef VHDX_H
#define VHDX_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "src/vd-brlock.h"
#include "src/vd-image.h"
#include "src/vd-metamap.h"

#define VHDX_MiB              (1024u * 1024u)
#define VHDX_HEADER1_OFFSET   (64u * 1024u)
#define VHDX_HEADER2_OFFSET   (128u * 1024u)
#define VHDX_HEADER_SIZE      4096u
#define VHDX_REGION1_OFFSET   (192u * 1024u)
#define VHDX_REGION2_OFFSET   (256u * 1024u)
#define VHDX_REGION_SIZE      (64u * 1024u)
#define VHDX_REGION_MAX       2047u
#define VHDX_META_TABLE_SIZE  (64u * 1024u)
#define VHDX_META_MAX_ENTRIES 2047u
#define VHDX_LOG_SECTOR       4096u
#define VHDX_SB_BLOCK_SIZE    VHDX_MiB
#define VHDX_MAX_DISK_SIZE    (64ull << 40)

/* Payload block states (BAT entry bits 0-2). */
#define VHDX_PAYLOAD_NOT_PRESENT       0
#define VHDX_PAYLOAD_UNDEFINED         1
#define VHDX_PAYLOAD_ZERO              2
#define VHDX_PAYLOAD_UNMAPPED          3
#define VHDX_PAYLOAD_UNMAPPED_V095     5 /* UNMAPPED in the 0.95 draft */
#define VHDX_PAYLOAD_FULLY_PRESENT     6
#define VHDX_PAYLOAD_PARTIALLY_PRESENT 7
/* Sector bitmap block states. */
#define VHDX_SB_NOT_PRESENT 0
#define VHDX_SB_PRESENT     6

#define VHDX_BAT_STATE(e)  ((unsigned)((e)&7))
#define VHDX_BAT_OFFSET(e) ((e) & ~(uint64_t)(VHDX_MiB - 1))

/* One range the in-memory log replay changed (read-only opens). */
typedef struct {
    uint64_t offset;
    uint64_t length;
    uint8_t *data; /* NULL: zeros */
} VhdxOverlay;

/* A 4 KiB metadata page to be written. */
typedef struct {
    uint64_t offset;
    uint8_t data[VHDX_LOG_SECTOR];
} VhdxPage;

typedef struct {
    /* Current header: slot (0 = 64 KiB, 1 = 128 KiB) and its fields. */
    int header_slot;
    uint64_t header_seq;
    uint8_t file_write_guid[16];
    uint8_t data_write_guid[16];
    uint8_t log_guid[16];
    uint16_t log_version, version;
    uint32_t log_length;
    uint64_t log_offset;
    char *creator;

    uint64_t bat_offset, bat_length;
    uint64_t meta_offset, meta_length;

    /* Metadata items. */
    uint32_t block_size;
    bool leave_blocks_allocated;
    bool has_parent;
    uint64_t disk_size;
    uint32_t logical_sector, physical_sector;
    uint8_t page83[16];
    bool have_linkage, have_linkage2;
    uint8_t parent_linkage[16], parent_linkage2[16];
    char *parent_relative, *parent_volume, *parent_absolute;

    /* BAT geometry. */
    uint64_t chunk_ratio;
    uint64_t n_payload; /* payload blocks */
    uint64_t n_bat;     /* BAT entries the region holds */

    /* BAT cache: 64 KiB chunks of entries in host order, in the block
     * layer's table cache (src/vd-table-cache.h), keyed by host offset;
     * written through by the writer (vhdx_bat_set). */
    struct VdTableCache *bat;

    /* Log replayed in memory (read-only open with a dirty log). Immutable
     * after open. */
    GArray *overlay;      /* VhdxOverlay, in replay order */
    uint64_t overlay_end; /* file size as the replayed log leaves it */
    const char *log_state;
    uint64_t log_entries_replayed;

    /* Host file size; grows under the writer, read by everyone. */
    uint64_t file_size;

    /* Writer state (serialised by VD_CAP_SERIAL_WRITES). */
    bool session_started; /* FileWriteGuid/DataWriteGuid changed */
    /* Read-write opens: the header region, log, BAT, metadata region and
     * sector bitmap blocks, which no data write may touch (new bitmap
     * blocks are added by the writer). */
    VdMetaMap *meta;
} VhdxState;

/* vhdx.c */
bool vhdx_write_header(VdImage *img, GError **error);

/* vhdx-log.c */
/* Read len bytes of metadata at off, as the replayed log leaves them. */
bool vhdx_meta_read(VdImage *img, void *buf, size_t len, uint64_t off, GError **error);
bool vhdx_overlay_hits(const VhdxState *s, uint64_t off, uint64_t len);
/* Replay a dirty log: in memory when read-only, on disk otherwise. */
bool vhdx_log_replay(VdImage *img, GError **error);

/* vhdx-bat.c */
/* Chunk ratio and entry counts, checked against the BAT region's size. */
bool vhdx_bat_geometry(VdImage *img, GError **error);
/* The geometry and an empty cache. */
bool vhdx_bat_init(VdImage *img, GError **error);
void vhdx_bat_free(VhdxState *s);
bool vhdx_bat_get(VdImage *img, uint64_t idx, uint64_t *entry, GError **error);
void vhdx_bat_set(VdImage *img, uint64_t idx, uint64_t entry);
/* The 4 KiB BAT page holding entry idx, as now. */
bool vhdx_bat_page(VdImage *img, uint64_t idx, VhdxPage *page, GError **error);
static inline uint64_t vhdx_payload_index(const VhdxState *s, uint64_t block)
{
    return block + block / s->chunk_ratio;
}
static inline uint64_t vhdx_sb_index(const VhdxState *s, uint64_t chunk)
{
    return chunk * (s->chunk_ratio + 1) + s->chunk_ratio;
}
bool vhdx_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                       VdExtent *ext, GError **error);
bool vhdx_pread(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error);
/* Validated host offset of an allocated payload or bitmap block. */
bool vhdx_check_block(VdImage *img, uint64_t entry, uint64_t need, const char *what, uint64_t index,
                      GError **error);

/* vdisk check: what qemu-img check reports for VHDX. */
bool vhdx_check(VdImage *img, VdCheckReport *report, GError **error);

/* vhdx-write.c */
/* For a read-write open, once the BAT geometry is known: s->meta. */
bool vhdx_write_init(VdImage *img, GError **error);
bool vhdx_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error);
bool vhdx_flush(VdImage *img, GError **error);

#endif
