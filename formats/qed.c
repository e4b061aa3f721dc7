/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QED, the QEMU Enhanced Disk format (docs/interop/qed_spec): a
 * little-endian header in the first header_size clusters, an L1 table and
 * L2 tables of table_size clusters each holding 64-bit cluster offsets.
 * An L2 entry of 0 is unallocated (the backing file answers), 1 is a zero
 * cluster, anything else a cluster-aligned data cluster. Features:
 * BACKING_FILE, NEED_CHECK (the image may be inconsistent: checked and
 * repaired on a read-write open, see qed-check.c) and
 * BACKING_FORMAT_NO_PROBE (the backing file is raw).
 *
 * Like QEMU, the usable end of the file is its size rounded down to a
 * cluster: a reference at or past it is invalid, and new clusters go there.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "formats/qed.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-info.h"
#include "src/vd-io.h"

static int qed_probe(const VdProbe *probe)
{
    if (probe->head_len >= QED_HEADER_SIZE && memcmp(probe->head, "QED\0", 4) == 0)
        return VD_PROBE_MAGIC;
    return VD_PROBE_NO;
}

static uint64_t file_end(const QedState *s)
{
    return __atomic_load_n(&s->file_end, __ATOMIC_ACQUIRE);
}

bool qed_cluster_valid(const QedState *s, uint64_t off)
{
    return (off & (s->cluster_size - 1)) == 0 && off >= s->header_end && off < file_end(s);
}

bool qed_table_valid(const QedState *s, uint64_t off)
{
    return qed_cluster_valid(s, off) && vd_range_within(off, s->table_bytes, file_end(s));
}

bool qed_set_need_check(VdImage *img, bool set, GError **error)
{
    QedState *s = img->opaque;
    g_mutex_lock(&s->features_lock);
    uint64_t features =
        set || s->marked_corrupt ? s->features | QED_F_NEED_CHECK : s->features & ~QED_F_NEED_CHECK;
    uint8_t f[8];
    vd_put_le64(f, features);
    bool ok = vd_host_pwrite(img->fd, img->name, f, sizeof f, 16, error);
    if (ok)
        s->features = features;
    g_mutex_unlock(&s->features_lock);
    return ok;
}

/* NEED_CHECK is QED's way to say "do not trust this image before a check":
 * QEMU checks (and repairs what it can) on its next read-write open, and
 * so do we (qed-check.c), which refuses the open while a cluster is also
 * a table. Best effort: the session refuses writes anyway. */
static void qed_mark_corrupt(VdImage *img)
{
    QedState *s = img->opaque;
    g_mutex_lock(&s->features_lock);
    s->marked_corrupt = true;
    g_mutex_unlock(&s->features_lock);
    g_autoptr(GError) err = NULL;
    if (!qed_set_need_check(img, true, &err) || !vd_host_fdatasync(img->fd, img->name, &err))
        g_warning("%s: could not set the need-check flag: %s", img->name, err->message);
}

/* The metadata a data write must not touch, from the sorted L2 tables. */
static bool build_meta(VdImage *img, const GArray *tables, GError **error)
{
    QedState *s = img->opaque;
    g_autoptr(VdMetaMap) m = vd_meta_map_new(img->name);
    vd_meta_map_add(m, 0, s->header_end, "header", NULL);
    vd_meta_map_add(m, s->l1_offset, s->table_bytes, "L1 table", NULL);
    for (guint i = 0; i < tables->len; i++)
        vd_meta_map_add(m, g_array_index(tables, uint64_t, i), s->table_bytes, "L2 table", NULL);
    if (!vd_meta_map_seal(m, error))
        return false;
    g_clear_pointer(&s->meta, vd_meta_map_free);
    s->meta = g_steal_pointer(&m);
    return true;
}

bool qed_load_l1(VdImage *img, uint64_t n, GError **error)
{
    QedState *s = img->opaque;
    if (!vd_image_mem_reserve(img, n * 8, "L1 table", error))
        return false;
    g_autofree uint8_t *raw = g_malloc(n * 8 + 1);
    if (!vd_host_pread(img->fd, img->name, raw, n * 8, s->l1_offset, false, error))
        return false;
    g_autofree uint64_t *l1 = g_new0(uint64_t, n + 1);
    g_autoptr(GArray) tables = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    for (uint64_t i = 0; i < n; i++) {
        uint64_t t = vd_le64(raw + 8 * i);
        if (t == 0)
            continue;
        if (t < s->l1_offset + s->table_bytes && s->l1_offset < t + s->table_bytes) {
            vd_set_error(error, EIO,
                         "%s: L2 table %" PRIu64 " at 0x%" PRIx64 " overlaps the L1 table",
                         img->name, i, t);
            return false;
        }
        if (!qed_table_valid(s, t)) {
            if (s->lenient)
                continue; /* what the check would do */
            vd_set_error(error, EIO,
                         "%s: L2 table %" PRIu64 " at 0x%" PRIx64
                         " is misaligned or lies beyond the end of the file",
                         img->name, i, t);
            return false;
        }
        l1[i] = t;
        g_array_append_val(tables, t);
    }
    uint64_t clash;
    if (!qed_tables_sort(tables, s->table_bytes, &clash)) {
        vd_set_error(error, EIO, "%s: L2 table at 0x%" PRIx64 " overlaps another L2 table",
                     img->name, clash);
        return false;
    }
    if (!img->read_only && !build_meta(img, tables, error))
        return false;
    if (s->l1 != NULL)
        g_ptr_array_add(s->l1_retired, s->l1);
    __atomic_store_n(&s->l1, g_steal_pointer(&l1), __ATOMIC_RELEASE);
    __atomic_store_n(&s->l1_len, n, __ATOMIC_RELEASE);
    return true;
}

bool qed_entries(VdImage *img, uint64_t ci, size_t max, uint64_t *out, size_t *n, uint64_t *l2_host,
                 GError **error)
{
    QedState *s = img->opaque;
    uint64_t l1i = ci >> s->table_bits;
    uint64_t l2i = ci & (s->table_entries - 1);
    /* The length first: truncate publishes a longer array before its length. */
    uint64_t l1_len = __atomic_load_n(&s->l1_len, __ATOMIC_ACQUIRE);
    const uint64_t *l1 = __atomic_load_n(&s->l1, __ATOMIC_ACQUIRE);
    if (l1i >= l1_len) {
        vd_set_error(error, EIO, "%s: cluster %" PRIu64 " lies past the L1 table", img->name, ci);
        return false;
    }
    uint64_t t = __atomic_load_n(&l1[l1i], __ATOMIC_ACQUIRE);
    *l2_host = t;
    if (t == 0) {
        *n = (size_t)MIN((uint64_t)MAX(max, 1), s->table_entries - l2i);
        memset(out, 0, *n * 8);
        return true;
    }
    *n = qed_tcache_get(&s->l2, t, l2i, max, out, error);
    return *n > 0;
}

static bool qed_classify(VdImage *img, uint64_t ci, uint64_t e, QedMapped *m, GError **error)
{
    QedState *s = img->opaque;
    m->host = e;
    if (e == 0) {
        m->state = VD_EXTENT_UNALLOCATED;
    } else if (e == QED_ZERO_CLUSTER) {
        m->state = VD_EXTENT_ZERO;
    } else if (qed_cluster_valid(s, e)) {
        m->state = VD_EXTENT_DATA;
    } else if (s->lenient) {
        m->state = VD_EXTENT_UNALLOCATED; /* what the check would make of it */
    } else {
        vd_set_error(error, EIO,
                     "%s: cluster %" PRIu64 " at 0x%" PRIx64
                     " is misaligned or lies beyond the end of the file",
                     img->name, ci, e);
        return false;
    }
    return true;
}

static bool qed_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                             VdExtent *ext, GError **error)
{
    QedState *s = img->opaque;
    (void)flags;
    QedMap map = {s->cluster_bits, qed_entries, qed_classify};
    return qed_map_status(img, &map, offset, length, ext, error);
}

static void qed_close(VdImage *img)
{
    QedState *s = img->opaque;
    if (s == NULL)
        return;
    g_free(s->l1);
    g_clear_pointer(&s->l1_retired, g_ptr_array_unref);
    qed_tcache_clear(&s->l2);
    g_clear_pointer(&s->meta, vd_meta_map_free);
    g_mutex_clear(&s->features_lock);
    g_free(s->check_report);
    g_free(s);
    img->opaque = NULL;
}

static bool parse_header(VdImage *img, QedState *s, const uint8_t *h, uint64_t file_size,
                         GError **error)
{
    s->cluster_size = vd_le32(h + 4);
    s->table_size = vd_le32(h + 8);
    s->header_size = vd_le32(h + 12);
    s->features = vd_le64(h + 16);
    s->compat_features = vd_le64(h + 24);
    s->autoclear_features = vd_le64(h + 32);
    s->l1_offset = vd_le64(h + 40);
    s->image_size = vd_le64(h + 48);
    s->backing_offset = vd_le32(h + 56);
    s->backing_size = vd_le32(h + 60);

    if (!vd_is_pow2(s->cluster_size) || s->cluster_size < QED_MIN_CLUSTER ||
        s->cluster_size > QED_MAX_CLUSTER) {
        vd_set_error(error, EIO,
                     "%s: cluster size %" PRIu32 " is not a power of two in [4 KiB, 64 MiB]",
                     img->name, s->cluster_size);
        return false;
    }
    if (!vd_is_pow2(s->table_size) || s->table_size > QED_MAX_TABLE_SIZE) {
        vd_set_error(error, EIO, "%s: table size %" PRIu32 " is not a power of two in [1, 16]",
                     img->name, s->table_size);
        return false;
    }
    if (s->features & ~QED_F_KNOWN) {
        vd_set_error(error, ENOTSUP, "%s: unsupported QED features 0x%" PRIx64, img->name,
                     s->features & ~QED_F_KNOWN);
        return false;
    }
    s->cluster_bits = (unsigned)__builtin_ctz(s->cluster_size);
    s->table_bytes = (uint64_t)s->table_size * s->cluster_size;
    s->table_entries = s->table_bytes / 8;
    s->table_bits = (unsigned)__builtin_ctzll(s->table_entries);
    s->header_end = (uint64_t)s->header_size * s->cluster_size;
    s->file_end = file_size & ~((uint64_t)s->cluster_size - 1);
    if (s->header_size == 0 || s->header_end > s->file_end) {
        vd_set_error(error, EIO, "%s: header of %" PRIu32 " clusters does not fit in the file",
                     img->name, s->header_size);
        return false;
    }
    /* image_size <= entries^2 * cluster_size, without overflow. */
    unsigned max_bits = 2 * s->table_bits + s->cluster_bits;
    if (s->image_size % 512 != 0 || (max_bits < 64 && s->image_size > (1ull << max_bits)) ||
        s->image_size > INT64_MAX) {
        vd_set_error(error, EIO, "%s: image size %" PRIu64 " is not valid for this geometry",
                     img->name, s->image_size);
        return false;
    }
    if (!qed_table_valid(s, s->l1_offset)) {
        vd_set_error(error, EIO,
                     "%s: L1 table at 0x%" PRIx64
                     " is misaligned or lies beyond the end of the file",
                     img->name, s->l1_offset);
        return false;
    }
    return true;
}

static bool open_backing(VdImage *img, GError **error)
{
    QedState *s = img->opaque;
    if (!(s->features & QED_F_BACKING_FILE))
        return true;
    if (s->backing_size == 0 || s->backing_size > QED_MAX_BACKING ||
        !vd_range_within(s->backing_offset, s->backing_size, s->header_end) ||
        s->backing_offset < QED_HEADER_SIZE) {
        vd_set_error(error, EIO,
                     "%s: backing file name (%" PRIu32 " bytes at 0x%" PRIx32
                     ") is empty, too long or outside the header",
                     img->name, s->backing_size, s->backing_offset);
        return false;
    }
    g_autofree char *name = g_malloc0(s->backing_size + 1);
    if (!vd_host_pread(img->fd, img->name, name, s->backing_size, s->backing_offset, false, error))
        return false;
    if (strlen(name) != s->backing_size) {
        vd_set_error(error, EIO, "%s: backing file name contains a NUL byte", img->name);
        return false;
    }
    vd_image_set_backing(img, name, (s->features & QED_F_BACKING_FORMAT_NO_PROBE) ? "raw" : NULL);
    return true;
}

/* The header of img->fd into s, checked, and the number of L1 entries
 * the virtual size needs. Reads nothing else. */
static bool read_header(VdImage *img, QedState *s, uint64_t *l1_entries, GError **error)
{
    uint64_t file_size;
    uint8_t h[QED_HEADER_SIZE];
    if (!vd_host_size(img->fd, img->name, &file_size, error))
        return false;
    if (file_size < QED_HEADER_SIZE) {
        vd_set_error(error, EIO, "%s: too small to hold a QED header", img->name);
        return false;
    }
    if (!vd_host_pread(img->fd, img->name, h, sizeof h, 0, false, error))
        return false;
    if (memcmp(h, "QED\0", 4) != 0) {
        vd_set_error(error, EIO, "%s: no QED magic", img->name);
        return false;
    }
    if (!parse_header(img, s, h, file_size, error))
        return false;
    uint64_t span_bits = s->table_bits + s->cluster_bits;
    uint64_t n = span_bits >= 64 ? 1 : (s->image_size + (1ull << span_bits) - 1) >> span_bits;
    if (n > s->table_entries || n * 8 > QED_MAX_L1_MEMORY) {
        vd_set_error(error, EIO, "%s: image size needs %" PRIu64 " L1 entries", img->name, n);
        return false;
    }
    *l1_entries = n;
    return true;
}

static bool qed_open(VdImage *img, GError **error)
{
    QedState *s = g_new0(QedState, 1);
    img->opaque = s;
    g_mutex_init(&s->features_lock);
    s->l1_retired = g_ptr_array_new_with_free_func(g_free);
    bool ok = false;
    uint64_t n;
    if (!read_header(img, s, &n, error))
        goto out;
    qed_tcache_init(&s->l2, img, false, s->table_entries, img->ctx->metadata_cache_bytes);
    if (!open_backing(img, error))
        goto out;
    if (!img->read_only && s->autoclear_features != 0) {
        /* Unknown self-clearing features: cleared by a writer, as specified. */
        uint8_t zero[8] = {0};
        if (!vd_host_pwrite(img->fd, img->name, zero, 8, 32, error))
            goto out;
        s->autoclear_features = 0;
    }
    bool repaired = false;
    if (s->features & QED_F_NEED_CHECK) {
        if (img->read_only)
            s->lenient = true;
        else if (!(repaired = qed_check(img, true, error)))
            goto out;
    }
    if (!qed_load_l1(img, n, error))
        goto out;
    /* A flagged image was repaired above; a clean one is checked without
     * rewriting its tables, once the L1 is known to be sound. */
    if (!img->read_only && !repaired && !qed_check(img, false, error))
        goto out;
    img->size = s->image_size;
    ok = true;
out:
    if (!ok)
        qed_close(img);
    return ok;
}

/* The size is in the header; QED images have no other files, and the L1
 * table stays on disk. */
static bool qed_peek(VdImage *img, GError **error)
{
    QedState s = {0};
    uint64_t n;
    if (!read_header(img, &s, &n, error))
        return false;
    img->size = s.image_size;
    return true;
}

static void qed_describe(VdImage *img, VdInfo *info)
{
    QedState *s = img->opaque;
    vd_info_add_u64(info, "cluster_size", s->cluster_size);
    vd_info_add_u64(info, "table_size", s->table_size);
    vd_info_add_u64(info, "table_entries", s->table_entries);
    vd_info_add_u64(info, "header_size", s->header_size);
    static const char *const names[] = {"backing_file", "need_check", "backing_format_no_probe"};
    uint64_t f = s->features;
    for (unsigned b = 0; b < 64; b++) {
        if (!(f & (1ull << b)))
            continue;
        if (b < G_N_ELEMENTS(names))
            vd_info_add_list_item(info, "features", "%s", names[b]);
        else
            vd_info_add_list_item(info, "features", "0x%" PRIx64, (uint64_t)1 << b);
    }
    if (f == 0)
        vd_info_add_str(info, "features", "%s", "none");
    if (s->compat_features != 0)
        vd_info_add_str(info, "compat_features", "0x%" PRIx64, s->compat_features);
    if (s->autoclear_features != 0)
        vd_info_add_str(info, "autoclear_features", "0x%" PRIx64, s->autoclear_features);
    if (s->features & QED_F_BACKING_FILE)
        vd_info_add_str(info, "backing_format", "%s",
                        (s->features & QED_F_BACKING_FORMAT_NO_PROBE) ? "raw" : "probed");
    if (s->lenient)
        vd_info_add_str(info, "need_check", "%s",
                        "set; read-only, so not repaired (invalid references read as unallocated)");
    else if (s->check_report != NULL)
        vd_info_add_str(info, "need_check", "%s", s->check_report);
    uint64_t tables = 0;
    uint64_t l1_len = __atomic_load_n(&s->l1_len, __ATOMIC_ACQUIRE);
    const uint64_t *l1 = __atomic_load_n(&s->l1, __ATOMIC_ACQUIRE);
    for (uint64_t i = 0; i < l1_len; i++)
        tables += __atomic_load_n(&l1[i], __ATOMIC_ACQUIRE) != 0;
    vd_info_add_u64(info, "l2_tables", tables);
}

const VdDriver vd_qed_driver = {
    .name = "qed",
    .description = "QED: QEMU enhanced disk",
    .caps = VD_CAP_WRITE | VD_CAP_BACKING | VD_CAP_SERIAL_WRITES,
    .probe = qed_probe,
    .open = qed_open,
    .close = qed_close,
    .peek = qed_peek,
    .pwrite = qed_pwrite,
    .block_status = qed_block_status,
    .flush = qed_flush,
    .write_zeroes = qed_write_zeroes,
    .truncate = qed_truncate,
    .describe = qed_describe,
    .mark_corrupt = qed_mark_corrupt,
    .check = qed_check_report,
};
