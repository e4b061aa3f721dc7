/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Test image generators for qcow (version 1) and QED, written from the
 * format descriptions independently of the drivers: plain, compressed,
 * encrypted and zero clusters, backing file names, and images to corrupt.
 * Both formats map clusters through an L1 table and L2 tables of 64-bit
 * offsets (big-endian in qcow, little-endian in QED).
 */
#ifndef TEST_QED_GEN_H
#define TEST_QED_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "src/vd-image.h"

typedef struct {
    bool qed; /* else qcow (v1) */
    GByteArray *b;
    uint64_t size;
    uint64_t cluster_size;
    unsigned cluster_bits;
    uint64_t l2_entries; /* entries per L2 table */
    unsigned l2_bits;
    uint64_t table_bytes;
    uint64_t l1_offset;
    uint64_t l1_entries; /* entries that cover the size */
    bool encrypt;        /* qcow: AES-CBC data clusters */
    uint8_t key[16];
} TGen;

/* qcow v1: header, backing name (or NULL), L1 right after, 8-aligned. */
TGen *tgen_qcow1(uint64_t size, unsigned cluster_bits, unsigned l2_bits, const char *backing,
                 const char *passphrase);
/* QED: a one-cluster header, the backing name at offset 64, the L1 table
 * in the next table_size clusters. */
TGen *tgen_qed(uint64_t size, uint32_t cluster_size, uint32_t table_size, const char *backing,
               uint64_t features);
void tgen_free(TGen *g);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TGen, tgen_free)

/* Append len bytes at the end (cluster-aligned first); returns the offset. */
uint64_t tgen_append(TGen *g, const void *data, size_t len);
/* Table entries in the format's byte order. */
uint64_t tgen_get64(const TGen *g, uint64_t off);
void tgen_put64(TGen *g, uint64_t off, uint64_t v);
/* Offset of cluster ci's L2 table, allocated (zeroed) when missing. */
uint64_t tgen_l2(TGen *g, uint64_t ci);
/* Offset of cluster ci's L2 entry. */
uint64_t tgen_entry_offset(TGen *g, uint64_t ci);
/* Cluster ci holds data (cluster_size bytes; encrypted when g->encrypt). */
uint64_t tgen_data(TGen *g, uint64_t ci, const uint8_t *data);
/* qcow: cluster ci holds data, deflated. */
void tgen_compressed(TGen *g, uint64_t ci, const uint8_t *data);
/* QED: cluster ci is a zero cluster. */
void tgen_zero(TGen *g, uint64_t ci);
bool tgen_write(const TGen *g, const char *path);

/* A temporary IMAGEDIR and its context. */
typedef struct {
    char *dir;
    VdContext *ctx;
} QFixture;
void qfix_setup(QFixture *f, gconstpointer data);
void qfix_teardown(QFixture *f, gconstpointer data);
/* Write g as name in the fixture's directory; returns the path. */
char *qfix_write(QFixture *f, const char *name, const TGen *g);
VdImage *qfix_open(QFixture *f, const char *path, const char *format, bool rw, GError **err);
/* Open (read-only, format forced) and expect failure with code. */
void qfix_expect_refused(QFixture *f, const TGen *g, const char *format, int code,
                         const char *what);
/* Read the whole disk and walk its status: false with error on failure. */
bool qfix_read_all(VdImage *img, uint8_t *buf, GError **err);

/* The whole disk reads as expect (size bytes); the first difference is
 * reported. */
void qfix_assert_disk(VdImage *img, const uint8_t *expect, uint64_t size);
/* Write len bytes of a pattern (zeros for seed 0) at off, to the image
 * and to the model. */
void qfix_write_both(VdImage *img, uint8_t *model, uint64_t off, size_t len, uint8_t seed);
/* A raw file of size pattern bytes in the fixture; returns its content. */
uint8_t *qfix_base_file(QFixture *f, const char *name, uint64_t size);

/* A byte of a recognisable pattern. */
static inline uint8_t tgen_pat(uint64_t off, uint8_t seed)
{
    return (uint8_t)(seed + (off >> 9) * 31 + (off & 511) * 7);
}
void tgen_fill(uint8_t *buf, size_t len, uint64_t off, uint8_t seed);

#endif
