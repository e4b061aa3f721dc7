/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vd-chain.h"
#include "vd-dispatch.h"
#include "vd-error.h"
#include "vd-io.h"
#include "vd-source.h"

bool vd_chain_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                     VdChainExtent *out, GError **error)
{
    VdImage *layer = img;
    unsigned depth = 0;
    for (;;) {
        uint64_t size = vd_image_size(layer);
        if (offset >= size) {
            /* A backing image shorter than its child reads as zeros there;
             * like qemu-img map, the answer is the child's (the last layer
             * that covers the range). */
            *out = (VdChainExtent){.length = length,
                                   .state = VD_EXTENT_UNALLOCATED,
                                   .depth = depth > 0 ? depth - 1 : 0,
                                   .fd = -1};
            return true;
        }
        length = vd_min_u64(length, size - offset);
        VdExtent ext;
        if (!vd_drv_block_status(layer, offset, length, flags, &ext, error))
            return false;
        length = ext.length;
        if (ext.state != VD_EXTENT_UNALLOCATED || layer->backing == NULL) {
            *out = (VdChainExtent){.length = length,
                                   .state = ext.state,
                                   .depth = depth,
                                   .fd = ext.fd,
                                   .host_offset = ext.host_offset};
            return true;
        }
        layer = layer->backing;
        depth++;
    }
}

bool vd_chain_seek(VdImage *img, uint64_t offset, int whence, uint64_t *result, GError **error)
{
    uint64_t size = vd_image_size(img);
    if (offset >= size) {
        vd_set_error(error, ENXIO, "%s: seek offset past the end", img->name);
        return false;
    }
    bool want_data = whence == SEEK_DATA;
    while (offset < size) {
        VdChainExtent e;
        if (!vd_chain_status(img, offset, size - offset, VD_STATUS_WANT_ZERO, &e, error))
            return false;
        if (vd_chain_extent_is_data(&e) == want_data) {
            *result = offset;
            return true;
        }
        offset += e.length;
    }
    if (want_data) {
        vd_set_error(error, ENXIO, "%s: no data after the offset", img->name);
        return false;
    }
    *result = size; /* the implicit hole at the end */
    return true;
}

bool vd_chain_data_bytes(VdImage *img, uint64_t *bytes, GError **error)
{
    uint64_t size = vd_image_size(img), offset = 0, total = 0;
    while (offset < size) {
        VdChainExtent e;
        if (!vd_chain_status(img, offset, size - offset, VD_STATUS_WANT_ZERO, &e, error))
            return false;
        if (vd_chain_extent_is_data(&e))
            total += e.length;
        offset += e.length;
    }
    *bytes = total;
    return true;
}

void vd_read_vec_init(VdReadVec *vec, size_t len)
{
    vec->segs = g_array_sized_new(FALSE, FALSE, sizeof(VdIoSeg), 4);
    vec->scratch = NULL;
    vec->scratch_used = 0;
    (void)len;
}

void vd_read_vec_clear(VdReadVec *vec)
{
    g_clear_pointer(&vec->segs, g_array_unref);
    g_clear_pointer(&vec->scratch, g_free);
    vec->scratch_used = 0;
}

static void vec_add_fd(VdReadVec *vec, int fd, uint64_t pos, size_t len)
{
    if (vec->segs->len > 0) {
        VdIoSeg *last = &g_array_index(vec->segs, VdIoSeg, vec->segs->len - 1);
        if (last->fd == fd && last->pos + last->len == pos) {
            last->len += len;
            return;
        }
    }
    VdIoSeg seg = {.fd = fd, .pos = pos, .len = len};
    g_array_append_val(vec->segs, seg);
}

static uint8_t *vec_add_mem(VdReadVec *vec, size_t len, size_t total)
{
    if (vec->scratch == NULL)
        vec->scratch = g_malloc(total);
    uint8_t *mem = vec->scratch + vec->scratch_used;
    vec->scratch_used += len;
    if (vec->segs->len > 0) {
        VdIoSeg *last = &g_array_index(vec->segs, VdIoSeg, vec->segs->len - 1);
        if (last->fd < 0 && last->mem + last->len == mem) {
            last->len += len;
            return mem;
        }
    }
    VdIoSeg seg = {.fd = -1, .mem = mem, .len = len};
    g_array_append_val(vec->segs, seg);
    return mem;
}

bool vd_chain_read_vec(VdImage *img, uint64_t offset, size_t len, VdReadVec *vec, GError **error)
{
    uint64_t size = vd_image_size(img);
    size_t total = len;
    while (len > 0) {
        if (offset >= size) {
            memset(vec_add_mem(vec, len, total), 0, len);
            return true;
        }
        VdChainExtent e;
        if (!vd_chain_status(img, offset, vd_min_u64(len, size - offset), 0, &e, error))
            return false;
        size_t n = (size_t)e.length;
        struct stat st;
        /* A source hands the kernel the host file it keeps bytes in as
         * they are (a tar member), or nothing (compressed data). */
        int fd = e.fd;
        uint64_t pos = e.host_offset;
        if (e.state == VD_EXTENT_DATA && vd_source_is(fd))
            fd = vd_source_host_range(e.fd, e.host_offset, n, &pos);
        /* Host ranges the kernel will splice must exist in full: a short
         * splice would end the read early, where pread reads zeros. */
        if (e.state == VD_EXTENT_DATA && fd >= 0 && fstat(fd, &st) == 0 &&
            vd_range_within(pos, n, (uint64_t)st.st_size)) {
            vec_add_fd(vec, fd, pos, n);
        } else {
            /* Decoding, zeros and reads past a short backing file: let the
             * block layer fill memory (it finds the same layer again). */
            if (!vd_image_pread(img, vec_add_mem(vec, n, total), n, offset, error))
                return false;
        }
        offset += n;
        len -= n;
    }
    return true;
}
