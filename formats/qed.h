/* SPDX-License-Identifier: GPL-2.0-or-later */
/* QED: state shared by qed.c (open, status), qed-check.c and qed-write.c. */
#ifndef QED_H
#define QED_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "formats/qed-table.h"
#include "src/vd-image.h"
#include "src/vd-metamap.h"

#define QED_HEADER_SIZE               64
#define QED_F_BACKING_FILE            UINT64_C(0x1)
#define QED_F_NEED_CHECK              UINT64_C(0x2)
#define QED_F_BACKING_FORMAT_NO_PROBE UINT64_C(0x4)
#define QED_F_KNOWN                   UINT64_C(0x7)
#define QED_ZERO_CLUSTER              1 /* L2 entry: reads as zeros, nothing allocated */
#define QED_MIN_CLUSTER               (1u << 12)
#define QED_MAX_CLUSTER               (1u << 26)
#define QED_MAX_TABLE_SIZE            16
#define QED_MAX_BACKING               4096
#define QED_MAX_L1_MEMORY             (64u << 20) /* L1 entries kept in memory, in bytes */

typedef struct {
    uint32_t cluster_size;
    unsigned cluster_bits;
    uint32_t table_size;  /* clusters per table */
    uint32_t header_size; /* clusters */
    uint64_t features, compat_features, autoclear_features;
    uint64_t l1_offset;
    uint64_t image_size; /* as in the header; equal to img->size */
    uint32_t backing_offset, backing_size;
    uint64_t table_entries; /* entries per table (a power of two) */
    unsigned table_bits;
    uint64_t table_bytes;
    uint64_t header_end; /* header_size * cluster_size */

    /* The L1 entries that cover the virtual size, in host order. The
     * pointer is replaced (never freed before close) when truncate grows
     * the disk; entries are read with __atomic_load_n and stored by the
     * serialised writer. */
    uint64_t *l1;
    uint64_t l1_len;
    GPtrArray *l1_retired;

    /* End of the last whole cluster of the file: allocations go here.
     * Atomic; stored by the writer only. */
    uint64_t file_end;
    QedTableCache l2;
    /* Read-write opens: the header, the L1 and every L2 table, so that no
     * data write lands on them (the writer adds the tables it makes). */
    VdMetaMap *meta;

    /* NEED_CHECK was set at open on a read-only image: references that
     * a check would drop read as unallocated instead of failing. */
    bool lenient;
    /* Writer only: NEED_CHECK is set in the file by us (allocations
     * since the last flush). */
    bool dirty;
    /* Guards the features field on disk and corrupt: mark_corrupt may run
     * outside the writer. */
    GMutex features_lock;
    /* NEED_CHECK was set because a data write was refused: it stays. */
    bool marked_corrupt;
    char *check_report; /* what the repair at open did, or NULL */
} QedState;

/* L2 entries of the clusters from ci on (see qcow1_entries). */
bool qed_entries(VdImage *img, uint64_t ci, size_t max, uint64_t *out, size_t *n, uint64_t *l2_host,
                 GError **error);
/* A data cluster offset is aligned, past the header and inside the file. */
bool qed_cluster_valid(const QedState *s, uint64_t off);
/* A table offset: every cluster of the table valid. */
bool qed_table_valid(const QedState *s, uint64_t off);
/* Set or clear NEED_CHECK in the header (never clears it once the image
 * was marked corrupt). */
bool qed_set_need_check(VdImage *img, bool set, GError **error);

/* qed-check.c: the consistency walk of a read-write open. With repair
 * (NEED_CHECK set): QEMU's check, invalid references dropped, duplicates
 * fatal. Without: nothing rewritten; invalid references or clusters used
 * twice make img read-only, the reason recorded. */
bool qed_check(VdImage *img, bool repair, GError **error);
/* vdisk check: the same walk, read-only, counted as qemu-img check does
 * (invalid and doubly used references are corruptions, unused clusters
 * leaks, plus the allocation statistics). */
bool qed_check_report(VdImage *img, VdCheckReport *report, GError **error);

/* qed-write.c */
bool qed_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error);
bool qed_write_zeroes(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                      GError **error);
bool qed_truncate(VdImage *img, uint64_t new_size, GError **error);
bool qed_flush(VdImage *img, GError **error);
/* Read and validate L1 entries [from, to) into a new array (truncate, open). */
bool qed_load_l1(VdImage *img, uint64_t to, GError **error);

#endif
