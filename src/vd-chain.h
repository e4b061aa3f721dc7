/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The view through a whole backing chain: which layer answers for a range,
 * holes for SEEK_DATA/SEEK_HOLE and maps, and zero-copy read vectors.
 */
#ifndef VD_CHAIN_H
#define VD_CHAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "vd-image.h"

/* One run with a single answer through the chain. */
typedef struct {
    uint64_t length;
    VdExtentState state; /* as reported by the layer that answered; UNALLOCATED: none did */
    unsigned depth;      /* that layer (0 = top); the bottom layer's depth when none did */
    int fd;              /* VD_EXTENT_DATA: where the bytes are */
    uint64_t host_offset;
} VdChainExtent;

static inline bool vd_chain_extent_is_data(const VdChainExtent *e)
{
    return e->state == VD_EXTENT_DATA || e->state == VD_EXTENT_DATA_DECODE;
}

/* Status of [offset, offset + length) (offset < virtual size of img). */
bool vd_chain_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                     VdChainExtent *out, GError **error);

/* lseek(SEEK_DATA / SEEK_HOLE) over the virtual disk. ENXIO as for lseek. */
bool vd_chain_seek(VdImage *img, uint64_t offset, int whence, uint64_t *result, GError **error);

/* Bytes of the virtual disk that are data anywhere in the chain. */
bool vd_chain_data_bytes(VdImage *img, uint64_t *bytes, GError **error);

/* A read as a list of segments: host (fd, pos) ranges the caller may splice,
 * and memory ranges the block layer filled. */
typedef struct {
    int fd; /* >= 0: len bytes at fd/pos; -1: len bytes at mem */
    uint64_t pos;
    uint8_t *mem;
    size_t len;
} VdIoSeg;

typedef struct {
    GArray *segs;     /* VdIoSeg */
    uint8_t *scratch; /* holds the memory segments; as large as the read */
    size_t scratch_used;
} VdReadVec;

void vd_read_vec_init(VdReadVec *vec, size_t len);
void vd_read_vec_clear(VdReadVec *vec);
bool vd_chain_read_vec(VdImage *img, uint64_t offset, size_t len, VdReadVec *vec, GError **error);

#endif
