/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Tiny VMDK image generators for the unit tests, written from the layouts
 * (hosted sparse, streamOptimized with footer, COWD, seSparse), so that
 * formats qemu-img cannot create are still tested, and so that hostile
 * variants can be made by changing one field.
 */
#ifndef TEST_VMDK_GEN_H
#define TEST_VMDK_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "src/vd-image.h"
#include "tests/unit/test-fixtures.h"

/* A file image being built in memory. */
typedef struct {
    uint8_t *data;
    size_t len;
} GenBuf;

void gen_put(GenBuf *b, uint64_t off, const void *src, size_t len);
void gen_le32(GenBuf *b, uint64_t off, uint32_t v);
void gen_le64(GenBuf *b, uint64_t off, uint64_t v);
void gen_write_file(const GenBuf *b, const char *path);
void gen_free(GenBuf *b);

#define MiB    (1024 * 1024)
#define SECTOR 512

/* A temporary IMAGEDIR and a context confined to it. */
typedef struct {
    char *dir;
    VdContext *ctx;
} Fixture;

void setup(Fixture *f, gconstpointer data);
void teardown(Fixture *f, gconstpointer data);
char *fpath(Fixture *f, const char *name);
void put_file(Fixture *f, const char *name, const char *text);
/* Write b as f's file name, and free b. */
void put_gen(Fixture *f, const char *name, GenBuf *b);
VdImage *open_img(Fixture *f, const char *name, GError **err);
VdImage *open_rw(Fixture *f, const char *name);
/* Open must fail with code (and says why, in the test log). */
void expect_open_error(Fixture *f, const char *name, int code, const char *what);
/* Every byte of the image against expect(off, data). */
typedef uint8_t (*ExpectFn)(uint64_t off, gconstpointer data);
void check_content(VdImage *img, ExpectFn expect, gconstpointer data);
/* The state through the chain at off, and its run length. */
VdExtentState state_at(VdImage *img, uint64_t off, uint64_t *len);

/* Pattern for virtual byte offset off of a test image with seed s. */
uint8_t gen_pattern(uint64_t off, unsigned seed);
void gen_fill(uint8_t *buf, size_t len, uint64_t off, unsigned seed);

/* Hosted sparse ("KDMV"). */
typedef struct {
    uint32_t version;  /* 1 */
    uint32_t flags;    /* NL check, RGD, ... */
    uint64_t capacity; /* sectors */
    uint64_t grain;    /* sectors */
    uint32_t gtes;     /* 512 */
    bool rgd;          /* redundant directory and tables */
    bool prealloc_gts; /* tables allocated (else directory entries 0) */
    const char *desc;  /* embedded descriptor text, or NULL */
    uint16_t compress; /* compressAlgorithm */
    /* Filled in by gen_kdmv: */
    uint64_t gd_off, rgd_off; /* bytes */
    uint64_t gt_off, rgt_off; /* first table (bytes); tables are consecutive */
    uint32_t gd_count;
} GenKdmv;

void gen_kdmv(GenBuf *b, GenKdmv *k);
/* Append a grain of data for grain number g (tables must be preallocated). */
void gen_kdmv_grain(GenBuf *b, const GenKdmv *k, uint64_t g, const uint8_t *data);
/* Set a grain table entry directly (both copies). */
void gen_kdmv_gte(GenBuf *b, const GenKdmv *k, uint64_t g, uint32_t v);

/* streamOptimized with markers and the grain directory in a footer;
 * content: grains whose number is in grains[] are filled with
 * gen_pattern(seed); the rest are left out. */
void gen_stream(GenBuf *b, uint64_t capacity_sectors, const uint64_t *grains, size_t n,
                unsigned seed, const char *desc);

/* COWD with 512-byte grains (grain = sectors per grain); the listed grains
 * hold gen_pattern(seed). */
void gen_cowd(GenBuf *b, uint32_t capacity_sectors, uint32_t grain, const uint64_t *grains,
              size_t n, unsigned seed);

/* seSparse of capacity_sectors (multiple of 32768): grain g_data[i] holds
 * gen_pattern(seed) from grain number (index in the grain area) idx[i];
 * g_zero[] are zero grains, g_unmapped[] unmapped ones. */
typedef struct {
    uint64_t capacity; /* sectors */
    const uint64_t *data;
    const uint64_t *data_idx; /* grain-area index for each data grain */
    size_t n_data;
    const uint64_t *zero;
    size_t n_zero;
    const uint64_t *unmapped;
    size_t n_unmapped;
    unsigned seed;
    /* Filled in: */
    uint64_t gd_off, gt_off, grains_off;
} GenSe;
void gen_sesparse(GenBuf *b, GenSe *s);

#endif
