/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qcow (version 1): state shared by the reader (qcow1.c) and the writer (qcow1-write.c). */
#ifndef QCOW1_H
#define QCOW1_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "formats/qed-table.h"
#include "src/vd-image.h"
#include "src/vd-metamap.h"

#define QCOW1_HEADER_SIZE  48
#define QCOW1_SECTOR       512
#define QCOW1_COMPRESSED   (1ull << 63)
#define QCOW1_CRYPT_NONE   0
#define QCOW1_CRYPT_AES    1
#define QCOW1_MAX_L1       (1u << 24) /* 32 TiB at the default geometry */
#define QCOW1_MAX_BACKING  1023       /* longest backing file name QEMU accepts */
#define QCOW1_DECODE_SLOTS 64

typedef enum {
    QCOW1_UNALLOCATED,
    QCOW1_NORMAL,
    QCOW1_COMPRESSED_CLUSTER,
} Qcow1Kind;

/* One guest cluster, validated against the file. */
typedef struct {
    Qcow1Kind kind;
    uint64_t host;  /* NORMAL: cluster start; COMPRESSED: start of the deflate stream */
    uint64_t csize; /* COMPRESSED: stream length */
} Qcow1Cluster;

typedef struct {
    uint64_t key; /* the L2 entry of the compressed cluster; 0 = empty slot */
    uint8_t *data;
} Qcow1Decoded;

typedef struct {
    uint64_t size_field; /* as recorded (the disk is this rounded down to 512) */
    uint32_t mtime;
    unsigned cluster_bits, l2_bits;
    uint64_t cluster_size;
    uint64_t l2_entries;
    uint32_t crypt_method;
    uint8_t key[16]; /* AES-128 key from the passphrase; wiped on close */
    uint64_t l1_offset;
    uint64_t l1_entries;
    /* L1 in host order. Entries are read with __atomic_load_n by any
     * thread and stored by the (serialised) writer. */
    uint64_t *l1;
    uint64_t backing_offset;
    uint32_t backing_size;
    /* End of the file: allocations go at the next cluster boundary.
     * Atomic; stored by the writer only. */
    uint64_t file_end;
    QedTableCache l2; /* L2 tables (big-endian on disk) */
    /* Read-write opens: header, backing file name, L1 and every L2 table,
     * which no data write may touch (the writer adds the tables it makes). */
    VdMetaMap *meta;
    /* Decompressed clusters, round robin. Guarded by dec_lock. */
    GMutex dec_lock;
    Qcow1Decoded dec[QCOW1_DECODE_SLOTS];
    unsigned dec_slots, dec_hand;
} Qcow1State;

static inline bool qcow1_encrypted(const Qcow1State *s)
{
    return s->crypt_method == QCOW1_CRYPT_AES;
}

/* L2 entries of the clusters from guest cluster ci on: at least one, at
 * most max. Clusters under an unallocated L2 table come back as 0;
 * *l2_host is that table's offset (0 when unallocated). */
bool qcow1_entries(VdImage *img, uint64_t ci, size_t max, uint64_t *out, size_t *n,
                   uint64_t *l2_host, GError **error);
/* Classify and validate one L2 entry. */
bool qcow1_cluster(VdImage *img, uint64_t ci, uint64_t entry, Qcow1Cluster *c, GError **error);
/* The whole decompressed cluster (cluster_size bytes). */
bool qcow1_decompress(VdImage *img, uint64_t ci, const Qcow1Cluster *c, uint64_t entry,
                      uint8_t *out, GError **error);
/* AES-CBC over whole 512-byte sectors; the IV is the guest sector number. */
bool qcow1_crypt(VdImage *img, uint8_t *buf, size_t len, uint64_t guest_offset, bool encrypt,
                 GError **error);

/* qcow1-write.c */
bool qcow1_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error);
bool qcow1_flush(VdImage *img, GError **error);

#endif
