/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Partition tables (MBR with extended/logical partitions, GPT) read from
 * a virtual disk, numbered as Linux numbers them, and partition views:
 * image objects over a slice of another image.
 *
 * The table is hostile input like any image header: entries past the end
 * of the disk are truncated or dropped (as Linux does), overlapping ones
 * and loops in the extended chain are dropped, a GPT whose primary header
 * or entry array fails its CRC falls back to the backup; what was wrong is
 * said once in the table's error.
 */
#ifndef VD_PARTITION_H
#define VD_PARTITION_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "vd-image.h"

typedef struct {
    unsigned number; /* MBR: 1-4 primaries, 5.. logicals; GPT: entry index + 1 */
    uint64_t start;  /* bytes from the start of the disk */
    uint64_t length; /* bytes */
    char *type;      /* MBR: "0x83"; GPT: the type GUID, lower case */
    char *name;      /* GPT: the partition name as UTF-8; MBR: NULL */
    char *uuid;      /* GPT: the unique partition GUID; MBR: NULL */
    bool bootable;   /* MBR: the active flag */
} VdPartition;

typedef struct {
    const char *kind;     /* "mbr", "gpt", or NULL: no partition table */
    unsigned sector_size; /* 512 or 4096 */
    GPtrArray *parts;     /* VdPartition, by number */
    char *error;          /* what was wrong with the table, or NULL */
} VdPartitionTable;

void vd_partition_table_free(VdPartitionTable *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VdPartitionTable, vd_partition_table_free)

/* Read img's partition table. logical_sector: the sector size the image
 * declares (VHDX: 4096), or 0 to find it (a GPT header at LBA 1 of 4096-
 * byte sectors means 4096). Fails only when the disk cannot be read; a
 * disk without a table gives kind NULL and no partitions. */
VdPartitionTable *vd_partition_table_read(VdImage *img, unsigned logical_sector, GError **error);

/* The same from a buffer holding the disk's first bytes and a reader for
 * the rest (for the fuzz target and unit tests). */
typedef bool (*VdPartitionReader)(void *opaque, void *buf, size_t len, uint64_t offset,
                                  GError **error);
VdPartitionTable *vd_partition_table_parse(VdPartitionReader read, void *opaque, uint64_t disk_size,
                                           unsigned logical_sector, GError **error);

const VdPartition *vd_partition_find(const VdPartitionTable *t, unsigned number);

/* A view of [start, start + length) of parent as an image of its own:
 * reads, holes (the parent chain's block status, zero-copy where the
 * parent's is) and, when parent is writable and read_only is false,
 * writes, which never go past the view's end (ENOSPC there, as on a block
 * device). name is for messages. */
VdImage *vd_image_open_slice(VdImage *parent, uint64_t start, uint64_t length, const char *name,
                             bool read_only, GError **error);

#endif
