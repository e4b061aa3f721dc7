/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow (version 1) writes. Allocated clusters are written in place
 * (re-encrypted, whole sectors, for AES images). Unallocated and
 * compressed clusters get new clusters at the end of the file, in runs,
 * in an order that leaves a consistent image after a crash at any point:
 *
 *   1. the new clusters (the written bytes over the backing image's, or
 *      over the decompressed old contents) and, when the L2 table is new,
 *      the whole table with the new entries in it; then fdatasync;
 *   2. the L2 entries (existing table) or the L1 entry (new table).
 *
 * A crash before 2 leaks the space; nothing ever points at unwritten
 * data. The space of a replaced compressed cluster is leaked, as QEMU
 * leaks it (qcow has no free space tracking).
 *
 * Every data write is first looked up in the metadata map (s->meta): a
 * cluster that lies on the header, the backing file name, the L1 or an L2
 * table is corruption, and the write is refused before it lands
 * (vd_image_guard_write: EIO, the image marked corrupt).
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "formats/qcow1.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

#define ALLOC_RUN_MAX 256 /* clusters allocated together */

static bool overflow_error(VdImage *img, GError **error)
{
    vd_set_error(error, EFBIG, "%s: the file is too large for another cluster", img->name);
    return false;
}

/* A write in place reached end: a last cluster that was only partly in
 * the file (or an unaligned one) now extends it, and new clusters must
 * go after it. */
static bool note_end(Qcow1State *s, uint64_t end)
{
    if (end > __atomic_load_n(&s->file_end, __ATOMIC_ACQUIRE))
        __atomic_store_n(&s->file_end, end, __ATOMIC_RELEASE);
    return true;
}

/* Clusters from ci on, host-contiguous from host, all allocated: write
 * bytes [within, within + n) of them, unless that would land on metadata. */
static bool write_in_place(VdImage *img, uint64_t ci, uint64_t host, const uint8_t *src,
                           uint64_t within, uint64_t n, GError **error)
{
    Qcow1State *s = img->opaque;
    if (!qcow1_encrypted(s))
        return vd_image_guard_write(img, s->meta, host + within, n, error) &&
               vd_host_pwrite(img->fd, img->name, src, n, host + within, error) &&
               note_end(s, host + within + n);
    uint64_t a0 = within / QCOW1_SECTOR * QCOW1_SECTOR;
    uint64_t a1 = (within + n + QCOW1_SECTOR - 1) / QCOW1_SECTOR * QCOW1_SECTOR;
    if (!vd_image_guard_write(img, s->meta, host + a0, a1 - a0, error))
        return false;
    uint64_t guest = ci << s->cluster_bits;
    g_autofree uint8_t *tmp = g_malloc(a1 - a0);
    if (a0 < within || a1 > within + n) {
        /* Partly written sectors: their other bytes as they read now. */
        if (!vd_host_pread(img->fd, img->name, tmp, a1 - a0, host + a0, true, error) ||
            !qcow1_crypt(img, tmp, a1 - a0, guest + a0, false, error))
            return false;
    }
    memcpy(tmp + (within - a0), src, n);
    return qcow1_crypt(img, tmp, a1 - a0, guest + a0, true, error) &&
           vd_host_pwrite(img->fd, img->name, tmp, a1 - a0, host + a0, error) &&
           note_end(s, host + a1);
}

/* New clusters for [ci, ci + k) (unallocated or compressed, entries in
 * old[]), holding bytes [within, within + n) from src over what they read
 * as now. l2_host: their L2 table, 0 when it does not exist yet. */
static bool allocate_run(VdImage *img, uint64_t ci, uint64_t k, const uint64_t *old,
                         uint64_t l2_host, const uint8_t *src, uint64_t within, uint64_t n,
                         GError **error)
{
    Qcow1State *s = img->opaque;
    uint64_t cs = s->cluster_size;
    g_autofree uint8_t *data = g_malloc(k * cs);
    for (uint64_t j = 0; j < k; j++) {
        uint8_t *c = data + j * cs;
        uint64_t w0 = j == 0 ? within : 0;
        uint64_t w1 = MIN(cs, within + n - j * cs);
        uint64_t guest = (ci + j) << s->cluster_bits;
        if (w0 > 0 || w1 < cs) {
            Qcow1Cluster cl;
            if (!qcow1_cluster(img, ci + j, old[j], &cl, error))
                return false;
            bool ok = cl.kind == QCOW1_COMPRESSED_CLUSTER
                          ? qcow1_decompress(img, ci + j, &cl, old[j], c, error)
                          : vd_image_read_backing(img, c, cs, guest, error);
            if (!ok)
                return false;
        }
        memcpy(c + w0, src + (j * cs + w0 - within), w1 - w0);
        if (qcow1_encrypted(s) && !qcow1_crypt(img, c, cs, guest, true, error))
            return false;
    }

    uint64_t end = __atomic_load_n(&s->file_end, __ATOMIC_ACQUIRE);
    uint64_t host, table = 0, new_end;
    uint64_t table_bytes = s->l2_entries * 8;
    if (__builtin_add_overflow(end, cs - 1, &host))
        return overflow_error(img, error);
    host &= ~(cs - 1);
    if (__builtin_add_overflow(host, k * cs, &new_end) || new_end > INT64_MAX)
        return overflow_error(img, error);
    uint64_t l1i = ci >> s->l2_bits;
    uint64_t l2i = ci & (s->l2_entries - 1);
    g_autofree uint64_t *entries = g_new(uint64_t, k);
    for (uint64_t j = 0; j < k; j++)
        entries[j] = host + j * cs;
    g_autofree uint8_t *raw = NULL;
    if (l2_host == 0) {
        table = new_end;
        if (__builtin_add_overflow(table, table_bytes, &new_end) || new_end > INT64_MAX)
            return overflow_error(img, error);
        g_autofree uint64_t *t = g_new0(uint64_t, s->l2_entries);
        memcpy(t + l2i, entries, k * 8);
        raw = g_malloc(table_bytes);
        qed_tcache_encode(&s->l2, t, raw, (size_t)s->l2_entries);
    } else {
        raw = g_malloc(k * 8);
        qed_tcache_encode(&s->l2, entries, raw, (size_t)k);
    }

    if (!vd_image_guard_write(img, s->meta, host, k * cs, error) ||
        (table != 0 && !vd_meta_map_add(s->meta, table, table_bytes, "L2 table", error)))
        return false;
    /* The space is taken before a byte lands: should a write below fail,
     * the next allocation goes after it rather than over a range the
     * metadata map already calls an L2 table (or over bytes half
     * written). The space is leaked, as after a crash. */
    __atomic_store_n(&s->file_end, new_end, __ATOMIC_RELEASE);
    if (!vd_host_pwrite(img->fd, img->name, data, k * cs, host, error) ||
        (table != 0 && !vd_host_pwrite(img->fd, img->name, raw, table_bytes, table, error)) ||
        !vd_host_fdatasync(img->fd, img->name, error))
        return false;
    if (table != 0) {
        uint8_t e[8];
        vd_put_be64(e, table);
        qed_tcache_forget(&s->l2, table, table_bytes);
        if (!vd_host_pwrite(img->fd, img->name, e, 8, s->l1_offset + l1i * 8, error))
            return false;
        __atomic_store_n(&s->l1[l1i], table, __ATOMIC_RELEASE);
        return true;
    }
    if (!vd_host_pwrite(img->fd, img->name, raw, k * 8, l2_host + l2i * 8, error))
        return false;
    qed_tcache_set(&s->l2, l2_host, l2i, entries, (size_t)k);
    return true;
}

bool qcow1_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    Qcow1State *s = img->opaque;
    const uint8_t *p = buf;
    uint64_t cs = s->cluster_size;
    uint64_t entries[ALLOC_RUN_MAX];
    while (len > 0) {
        uint64_t ci = offset >> s->cluster_bits;
        uint64_t within = offset & (cs - 1);
        uint64_t clusters = (within + len + cs - 1) >> s->cluster_bits;
        size_t n;
        uint64_t l2_host;
        if (!qcow1_entries(img, ci, (size_t)MIN(clusters, (uint64_t)ALLOC_RUN_MAX), entries, &n,
                           &l2_host, error))
            return false;
        Qcow1Cluster c0;
        if (!qcow1_cluster(img, ci, entries[0], &c0, error)) {
            /* Into the header: corruption, not just a bad reference. */
            GError *meta = NULL;
            if (!(entries[0] & QCOW1_COMPRESSED) && entries[0] < QCOW1_HEADER_SIZE &&
                !vd_image_guard_write(img, s->meta, entries[0] + within, MIN(cs - within, len),
                                      &meta)) {
                g_clear_error(error);
                g_propagate_error(error, meta);
            }
            return false;
        }
        /* A run of clusters handled alike. */
        uint64_t k = 1;
        if (c0.kind == QCOW1_NORMAL) {
            uint64_t end = __atomic_load_n(&s->file_end, __ATOMIC_ACQUIRE);
            while (k < n && entries[k] == c0.host + k * cs && entries[k] < end)
                k++;
        } else {
            while (k < n && (entries[k] == 0 || (entries[k] & QCOW1_COMPRESSED)))
                k++;
        }
        uint64_t bytes = MIN(k * cs - within, len);
        k = (within + bytes + cs - 1) >> s->cluster_bits;
        bool ok;
        if (c0.kind == QCOW1_NORMAL) {
            ok = write_in_place(img, ci, c0.host, p, within, bytes, error);
        } else if (img->backing == NULL && qed_entries_all(entries, k, 0) &&
                   vd_buffer_is_zero(p, bytes)) {
            ok = true; /* zeros over holes that read as zeros */
        } else {
            ok = allocate_run(img, ci, k, entries, l2_host, p, within, bytes, error);
        }
        if (!ok)
            return false;
        p += bytes;
        offset += bytes;
        len -= bytes;
    }
    return true;
}

bool qcow1_flush(VdImage *img, GError **error)
{
    return vd_host_fdatasync(img->fd, img->name, error);
}
