/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Test image generators for VHD and VHDX, written from the specifications
 * independently of the drivers: differencing disks (which QEMU cannot
 * create), every block state, dirty logs, and images to corrupt.
 */
#ifndef TEST_VHD_GEN_H
#define TEST_VHD_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "src/vd-image.h"
#include "tests/unit/test-fixtures.h"

/* ---- VHD ---- */

typedef struct {
    uint32_t type; /* 2 fixed, 3 dynamic, 4 differencing */
    uint64_t size; /* current size; creator "win " so it is the virtual size */
    uint32_t block_size;
    uint8_t uuid[16];
    uint8_t parent_uuid[16];
    const char *w2ru, *w2ku, *macx, *parent_name; /* differencing locators */
    /* Fill block idx; return false to leave it unallocated. bitmap has
     * block_size / 512 bits, MSB first; data is block_size bytes. */
    bool (*block)(void *ctx, uint32_t idx, uint8_t *bitmap, uint8_t *data);
    void *ctx;
} VhdGen;

GByteArray *vhdgen_build(const VhdGen *g);
/* Offsets in what vhdgen_build produced (dynamic disks). */
#define VHDGEN_HEADER_OFFSET 512u
#define VHDGEN_BAT_OFFSET    1536u

/* ---- VHDX ---- */

typedef struct {
    uint64_t size;
    uint32_t block_size;
    uint32_t logical_sector;
    bool fixed; /* LeaveBlocksAllocated */
    uint8_t data_write_guid[16];
    /* Differencing: parent locator entries (NULL to omit). */
    bool has_parent;
    const char *linkage, *linkage2, *relative_path, *volume_path, *absolute_path;
    /* State of payload block idx (VHDX_* state values); fill data for the
     * present states. For partially present blocks, sector(ctx, n) says
     * whether logical sector n of the disk is in this file. */
    unsigned (*block)(void *ctx, uint64_t idx, uint8_t *data);
    bool (*sector)(void *ctx, uint64_t n);
    void *ctx;
} VhdxGen;

#define VHDXGEN_LOG_OFFSET  (1u << 20)
#define VHDXGEN_LOG_SIZE    (1u << 20)
#define VHDXGEN_META_OFFSET (2u << 20)
#define VHDXGEN_BAT_OFFSET  (3u << 20)
#define VHDXGEN_DATA_OFFSET (4u << 20)

GByteArray *vhdxgen_build(const VhdxGen *g);

/* Turn `before` into an image whose log, replayed, gives `after`: the
 * 4 KiB pages that differ go into log entries (all-zero pages as zero
 * descriptors), at most per_entry pages per entry, the entries one
 * sequence starting at log offset start (wrapping around the log's end).
 * Sets the header's LogGuid. `before` must be a vhdxgen image. With
 * extend_first, the part of `after` past the end of `before` is appended
 * first (a writer's new blocks, synced before the log entry); otherwise
 * the replay must extend the file (LastFileOffset). */
void vhdxgen_make_dirty(GByteArray *before, const GByteArray *after, unsigned per_entry,
                        uint32_t start, uint64_t first_seq, bool extend_first);
/* Recompute the current header's checksum after editing it. */
void vhdxgen_fix_header(GByteArray *img, unsigned slot);
void vhdxgen_fix_region(GByteArray *img, unsigned which);

/* A temporary IMAGEDIR and its context, for g_test_add. */
typedef struct {
    char *dir;
    VdContext *ctx;
} Fixture;
void gen_fixture_setup(Fixture *f, gconstpointer data);
void gen_fixture_teardown(Fixture *f, gconstpointer data);
VdImage *gen_open(Fixture *f, const char *path, bool rw, GError **err);
/* Write b as name and assert that opening it as format fails. */
void gen_expect_refused(Fixture *f, const GByteArray *b, const char *name, const char *format,
                        const char *what);

/* 64 KiB of stamped sectors: each holds its own disk offset and gen, so
 * a reader can tell a complete sector from a torn or misplaced one. */
#define GEN_STAMP_CHUNK (64 * 1024)
void gen_stamp(uint8_t *buf, uint64_t off, uint64_t gen);
/* The sector at disk offset off is all zeros or a complete stamp. */
bool gen_sector_ok(const uint8_t *p, uint64_t off);

/* Little helpers. */
void gen_guid(uint8_t g[16], const char *text);
bool gen_write_file(const char *path, const GByteArray *b);
uint32_t gen_crc32c(const uint8_t *p, size_t len);

#endif
