/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The EWF parser's state, shared by sources/ewf-*.c (not by users). */
#ifndef EWF_INTERNAL_H
#define EWF_INTERNAL_H

#include "sources/ewf.h"

#define EWF_VOLUME_E01       1052 /* FTK, EnCase, linen: volume, disk and data sections */
#define EWF_VOLUME_S01       94   /* SMART and the original EWF */
#define EWF_TABLE_HEADER     24
#define EWF_MAX_ERRORS_SHOWN 256

/* A section that holds chunks: sectors, or the part of a SMART table
 * after its entries. */
typedef struct {
    unsigned seg;
    uint64_t start, end;
} EwfRange;

typedef struct {
    uint32_t overflow_from; /* entries from here on are 32-bit offsets of uncompressed chunks */
    uint32_t e[];           /* as stored, host order */
} EwfEntries;

typedef struct {
    unsigned seg;
    uint64_t entries_off; /* where its entries are in the segment */
    uint64_t mirror_off;  /* table2's, or 0 */
    uint32_t count;       /* entries stored */
    uint32_t used;        /* of them, those within the media */
    uint64_t base;        /* what entries are relative to */
    uint64_t first;       /* index of its first chunk */
    bool footer;          /* an Adler-32 of the entries follows them */
    EwfEntries *entries;  /* read on first use, then kept (atomic; written under load_lock) */
} EwfTable;

struct EwfSet {
    char *name;
    const EwfIo *io;
    void *user;
    unsigned nsegs;
    GArray *seg_sizes; /* uint64_t */
    GArray *ranges;    /* EwfRange, by segment and offset (the walk's order) */
    GArray *tables;    /* EwfTable, by first chunk */
    guint ranges_reserved, tables_reserved;
    uint64_t entries_total;
    bool table_pending; /* the last table's header was bad: its table2 must do */
    uint64_t pending_at;
    bool have_volume;
    bool smart; /* S01 volume: tables without checksums of their entries */
    uint8_t guid[16];
    uint32_t chunk_size;
    uint64_t media_size, chunks;
    GMutex load_lock;      /* loading tables' entries */
    uint64_t reserved;     /* of the budget; written at open and under load_lock */
    gint *zstate;          /* 2 bits a chunk: 0 not known, 1 data, 2 zeros (atomic) */
    gint *verified;        /* a bit a chunk: stored as it is, its checksum found right (atomic) */
    GPtrArray *zero_forms; /* GBytes: zlib's forms of a zero chunk (g_once) */
    EwfMeta meta;
};

bool ewf_read(EwfSet *s, unsigned seg, void *buf, size_t len, uint64_t off, GError **error);

#endif
