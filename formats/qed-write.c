/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QED writes. Allocated clusters are written in place. Unallocated and
 * zero clusters get new clusters at the end of the file, in runs, ordered
 * as the specification's consistency rules want:
 *
 *   0. before the first allocation since the last flush, NEED_CHECK is
 *      set in the header and synced (as QEMU does: a crash from here on
 *      makes the next read-write open check the image);
 *   1. the new clusters, with the written bytes over the backing image's
 *      (or zeros, for zero clusters);
 *   2. a new L2 table, written whole, when the clusters had none;
 *   3. the L2 entries, or the L1 entry of the new table.
 *
 * Whatever part of this reaches the disk, the image holds no reference
 * to unwritten space except references past the end of the file, which
 * the check drops; at worst space leaks. flush() syncs, then clears
 * NEED_CHECK (synced again), so a flushed image needs no check.
 *
 * Every data write is first looked up in the metadata map (s->meta): a
 * reference into the header, the L1 or an L2 table is corruption, and the
 * write is refused before it lands (vd_image_guard_write: EIO, the image
 * marked corrupt, NEED_CHECK left set).
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "formats/qed.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

#define RUN_MAX 256 /* clusters handled together */

static bool mark_dirty(VdImage *img, GError **error)
{
    QedState *s = img->opaque;
    if (s->dirty)
        return true;
    if (!qed_set_need_check(img, true, error) || !vd_host_fdatasync(img->fd, img->name, error))
        return false;
    s->dirty = true;
    return true;
}

static bool bad_cluster(VdImage *img, uint64_t ci, uint64_t e, GError **error)
{
    QedState *s = img->opaque;
    /* Into the header or a table: corruption, not just a bad reference. */
    if (!vd_image_guard_write(img, s->meta, e, 1, error))
        return false;
    vd_set_error(error, EIO,
                 "%s: cluster %" PRIu64 " at 0x%" PRIx64
                 " is misaligned or lies beyond the end of the file",
                 img->name, ci, e);
    return false;
}

/* Point the L2 entries of clusters [ci, ci + k) at values[] (a new table
 * goes at *end, which moves past it). */
static bool set_entries(VdImage *img, uint64_t ci, uint64_t k, const uint64_t *values,
                        uint64_t l2_host, uint64_t *end, GError **error)
{
    QedState *s = img->opaque;
    uint64_t l1i = ci >> s->table_bits;
    uint64_t l2i = ci & (s->table_entries - 1);
    if (l2_host != 0) {
        g_autofree uint8_t *raw = g_malloc(k * 8);
        qed_tcache_encode(&s->l2, values, raw, (size_t)k);
        if (!vd_host_pwrite(img->fd, img->name, raw, k * 8, l2_host + l2i * 8, error))
            return false;
        qed_tcache_set(&s->l2, l2_host, l2i, values, (size_t)k);
        return true;
    }
    uint64_t table = *end, new_end;
    if (__builtin_add_overflow(table, s->table_bytes, &new_end) || new_end > INT64_MAX) {
        vd_set_error(error, EFBIG, "%s: the file is too large for another L2 table", img->name);
        return false;
    }
    if (!vd_meta_map_add(s->meta, table, s->table_bytes, "L2 table", error))
        return false;
    g_autofree uint64_t *t = g_new0(uint64_t, s->table_entries);
    memcpy(t + l2i, values, k * 8);
    g_autofree uint8_t *raw = g_malloc(s->table_bytes);
    qed_tcache_encode(&s->l2, t, raw, (size_t)s->table_entries);
    if (!mark_dirty(img, error) ||
        !vd_host_pwrite(img->fd, img->name, raw, s->table_bytes, table, error))
        return false;
    *end = new_end;
    __atomic_store_n(&s->file_end, new_end, __ATOMIC_RELEASE);
    qed_tcache_forget(&s->l2, table, s->table_bytes);
    uint8_t e[8];
    vd_put_le64(e, table);
    if (!vd_host_pwrite(img->fd, img->name, e, 8, s->l1_offset + l1i * 8, error))
        return false;
    __atomic_store_n(&s->l1[l1i], table, __ATOMIC_RELEASE);
    return true;
}

/* New clusters for [ci, ci + k) (unallocated or zero clusters, entries in
 * old[]) holding bytes [within, within + n) of src over what they read as. */
static bool allocate_run(VdImage *img, uint64_t ci, uint64_t k, const uint64_t *old,
                         uint64_t l2_host, const uint8_t *src, uint64_t within, uint64_t n,
                         GError **error)
{
    QedState *s = img->opaque;
    uint64_t cs = s->cluster_size;
    g_autofree uint8_t *data = g_malloc0(k * cs);
    for (uint64_t j = 0; j < k; j++) {
        uint8_t *c = data + j * cs;
        uint64_t w0 = j == 0 ? within : 0;
        uint64_t w1 = MIN(cs, within + n - j * cs);
        if ((w0 > 0 || w1 < cs) && old[j] == 0 &&
            !vd_image_read_backing(img, c, cs, (ci + j) << s->cluster_bits, error))
            return false;
        memcpy(c + w0, src + (j * cs + w0 - within), w1 - w0);
    }
    uint64_t host = __atomic_load_n(&s->file_end, __ATOMIC_ACQUIRE), end;
    if (__builtin_add_overflow(host, k * cs, &end) || end > INT64_MAX) {
        vd_set_error(error, EFBIG, "%s: the file is too large for another cluster", img->name);
        return false;
    }
    uint64_t values[RUN_MAX];
    for (uint64_t j = 0; j < k; j++)
        values[j] = host + j * cs;
    if (!vd_image_guard_write(img, s->meta, host, k * cs, error) || !mark_dirty(img, error) ||
        !vd_host_pwrite(img->fd, img->name, data, k * cs, host, error))
        return false;
    __atomic_store_n(&s->file_end, end, __ATOMIC_RELEASE);
    return set_entries(img, ci, k, values, l2_host, &end, error);
}

/* One lookup's worth: the run of clusters from ci handled alike. */
static bool run_of(VdImage *img, uint64_t ci, uint64_t clusters, uint64_t *entries, uint64_t *k,
                   uint64_t *l2_host, GError **error)
{
    QedState *s = img->opaque;
    size_t n;
    if (!qed_entries(img, ci, (size_t)MIN(clusters, (uint64_t)RUN_MAX), entries, &n, l2_host,
                     error))
        return false;
    uint64_t e0 = entries[0];
    if (e0 > QED_ZERO_CLUSTER && !qed_cluster_valid(s, e0))
        return bad_cluster(img, ci, e0, error);
    uint64_t j = 1;
    if (e0 > QED_ZERO_CLUSTER) {
        while (j < n && entries[j] == e0 + j * s->cluster_size && qed_cluster_valid(s, entries[j]))
            j++;
    } else {
        while (j < n && entries[j] <= QED_ZERO_CLUSTER)
            j++;
    }
    *k = j;
    return true;
}

bool qed_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    QedState *s = img->opaque;
    const uint8_t *p = buf;
    uint64_t cs = s->cluster_size;
    uint64_t entries[RUN_MAX];
    while (len > 0) {
        uint64_t ci = offset >> s->cluster_bits;
        uint64_t within = offset & (cs - 1);
        uint64_t k, l2_host;
        if (!run_of(img, ci, (within + len + cs - 1) >> s->cluster_bits, entries, &k, &l2_host,
                    error))
            return false;
        uint64_t bytes = MIN(k * cs - within, len);
        k = (within + bytes + cs - 1) >> s->cluster_bits;
        bool ok;
        if (entries[0] > QED_ZERO_CLUSTER) {
            ok = vd_image_guard_write(img, s->meta, entries[0] + within, bytes, error) &&
                 vd_host_pwrite(img->fd, img->name, p, bytes, entries[0] + within, error);
        } else if (vd_buffer_is_zero(p, bytes) &&
                   (qed_entries_all(entries, k, QED_ZERO_CLUSTER) ||
                    (img->backing == NULL && qed_entries_all(entries, k, 0)))) {
            ok = true; /* zeros where it reads as zeros already */
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

/* Zeros into allocated clusters: a hole in the host file when unmapping
 * is allowed (the cluster stays allocated: freeing it would leak it). */
static bool zero_in_place(VdImage *img, uint64_t host, uint64_t len, unsigned flags, GError **error)
{
    if (flags & VD_ZERO_MAY_UNMAP) {
        GError *local = NULL;
        if (vd_host_punch_hole(img->fd, img->name, host, len, &local))
            return true;
        g_clear_error(&local);
    }
    g_autofree uint8_t *zeros = g_malloc0((size_t)MIN(len, (uint64_t)1 << 20));
    for (uint64_t done = 0; done < len;) {
        size_t n = (size_t)MIN(len - done, (uint64_t)1 << 20);
        if (!vd_host_pwrite(img->fd, img->name, zeros, n, host + done, error))
            return false;
        done += n;
    }
    return true;
}

bool qed_write_zeroes(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                      GError **error)
{
    QedState *s = img->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t entries[RUN_MAX];
    g_autofree uint8_t *zeros = NULL;
    while (length > 0) {
        uint64_t ci = offset >> s->cluster_bits;
        uint64_t within = offset & (cs - 1);
        if (within != 0 || length < cs) {
            /* A partial cluster: written as zeros. */
            uint64_t n = MIN(cs - within, length);
            if (zeros == NULL)
                zeros = g_malloc0(cs);
            if (!qed_pwrite(img, zeros, n, offset, error))
                return false;
            offset += n;
            length -= n;
            continue;
        }
        uint64_t k, l2_host;
        if (!run_of(img, ci, length / cs, entries, &k, &l2_host, error))
            return false;
        bool ok = true;
        if (entries[0] > QED_ZERO_CLUSTER) {
            ok = vd_image_guard_write(img, s->meta, entries[0], k * cs, error) &&
                 zero_in_place(img, entries[0], k * cs, flags, error);
        } else if (img->backing != NULL && !qed_entries_all(entries, k, QED_ZERO_CLUSTER)) {
            /* Zero clusters hide the backing file (QEMU writes them too). */
            uint64_t values[RUN_MAX];
            for (uint64_t j = 0; j < k; j++)
                values[j] = QED_ZERO_CLUSTER;
            uint64_t end = __atomic_load_n(&s->file_end, __ATOMIC_ACQUIRE);
            ok = set_entries(img, ci, k, values, l2_host, &end, error);
        }
        if (!ok)
            return false;
        offset += k * cs;
        length -= k * cs;
    }
    return true;
}

bool qed_truncate(VdImage *img, uint64_t new_size, GError **error)
{
    QedState *s = img->opaque;
    unsigned max_bits = 2 * s->table_bits + s->cluster_bits;
    if (new_size % 512 != 0 || (max_bits < 64 && new_size > (1ull << max_bits))) {
        vd_set_error(error, EINVAL,
                     "%s: QED sizes are multiples of 512 bytes up to %" PRIu64 " bytes here",
                     img->name, max_bits < 64 ? (uint64_t)1 << max_bits : UINT64_MAX);
        return false;
    }
    if (new_size < s->image_size) {
        vd_set_error(error, EINVAL, "%s: QED images cannot shrink", img->name);
        return false;
    }
    unsigned span = s->table_bits + s->cluster_bits;
    uint64_t n = (new_size + (1ull << span) - 1) >> span;
    if (n * 8 > QED_MAX_L1_MEMORY) {
        vd_set_error(error, EFBIG, "%s: size %" PRIu64 " needs too large an L1 table", img->name,
                     new_size);
        return false;
    }
    if (n > s->l1_len && !qed_load_l1(img, n, error))
        return false;
    uint8_t b[8];
    vd_put_le64(b, new_size);
    if (!vd_host_pwrite(img->fd, img->name, b, 8, 48, error))
        return false;
    s->image_size = new_size;
    return true;
}

bool qed_flush(VdImage *img, GError **error)
{
    QedState *s = img->opaque;
    if (!vd_host_fdatasync(img->fd, img->name, error))
        return false;
    if (!s->dirty)
        return true;
    if (!qed_set_need_check(img, false, error) || !vd_host_fdatasync(img->fd, img->name, error))
        return false;
    s->dirty = false;
    return true;
}
