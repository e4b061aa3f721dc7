/* SPDX-License-Identifier: GPL-2.0-or-later */
/* VHD (Virtual PC / "vpc"): state shared by the reader and the writer. */
#ifndef VHD_H
#define VHD_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "src/vd-image.h"
#include "src/vd-metamap.h"

#define VHD_FOOTER_SIZE       512
#define VHD_DYN_HEADER_SIZE   1024
#define VHD_SECTOR            512
#define VHD_BAT_UNUSED        0xffffffffu
#define VHD_TYPE_FIXED        2
#define VHD_TYPE_DYNAMIC      3
#define VHD_TYPE_DIFFERENCING 4

typedef struct {
    uint32_t disk_type;
    char creator_app[5];
    uint32_t creator_version;
    uint32_t creator_os;
    uint64_t original_size;
    uint64_t current_size;
    uint16_t cylinders;
    uint8_t heads, sectors;
    uint8_t uuid[16];
    bool saved_state;
    uint8_t footer[VHD_FOOTER_SIZE]; /* as on disk, for rewriting it at a new end */
    const char *size_rule;           /* how the virtual size was derived */

    /* Dynamic and differencing disks. */
    uint64_t header_offset;
    uint64_t bat_offset;
    uint32_t max_table_entries;
    uint32_t block_size;  /* bytes of data per block */
    uint32_t bitmap_size; /* bytes of sector bitmap before each block (512-multiple) */
    uint32_t n_blocks;    /* BAT entries that cover the virtual size */
    /* BAT in host order (sector numbers). Entries are read with
     * __atomic_load_n by any thread and stored by the (serialised) writer. */
    uint32_t *bat;
    uint8_t parent_uuid[16];
    uint32_t parent_timestamp;
    char *parent_name;
    GPtrArray *locators; /* "W2ru: ..\\dir\\parent.vhd" as decoded, for describe */
    /* Where the footer at the end of the file is; new blocks go here.
     * Writer only. */
    uint64_t footer_offset;
    bool can_allocate;
    /* Where no data write may land: the footer copy at 0, the dynamic
     * header, the BAT, the parent locators' data and the footer at the end
     * (moved by the writer when it appends a block). */
    VdMetaMap *meta;
} VhdState;

/* The name of the end footer's range in VhdState.meta (compared by address). */
extern const char vhd_meta_footer[];

static inline bool vhd_is_dynamic(const VhdState *s)
{
    return s->disk_type != VHD_TYPE_FIXED;
}

static inline uint32_t vhd_bat_get(const VhdState *s, uint32_t idx)
{
    return __atomic_load_n(&s->bat[idx], __ATOMIC_ACQUIRE);
}

/* Host offset of block idx's bitmap, validated against the file; false
 * with error when the BAT entry points outside it. *host = 0 when the
 * block is not allocated. */
bool vhd_block_host(VdImage *img, uint32_t idx, uint64_t *host, GError **error);

/* vhd-write.c */
bool vhd_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error);
bool vhd_flush(VdImage *img, GError **error);

#endif
