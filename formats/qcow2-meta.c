/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2: where the image's own metadata lies in the qcow2 file (a
 * VdMetaMap), for read-write opens. Built once at open from the header
 * and the tables already in memory, kept exact by the write side (every
 * table allocated, moved or dropped claims or releases its range), and
 * consulted before every data write and every allocation, so that a
 * hostile mapping or a lying refcount cannot make a guest write land on
 * a table (QEMU: "Preventing invalid write on metadata").
 *
 * In the map: the header cluster, the active L1 table and every L2 table
 * it references, the refcount table and every refcount block, the
 * snapshot table and each snapshot's L1 table, the LUKS header, and the
 * bitmap directory and bitmap tables while the bitmaps are valid.
 * Ranges are whole clusters, as allocations are.
 *
 * Not in the map: L2 tables only snapshots reference. Finding them means
 * reading every snapshot's L1 table (up to 32 MiB each) at every
 * read-write open; QEMU's default overlap check leaves them out for the
 * same reason. They keep a refcount of at least 1, so the allocator never
 * hands them out; only a hostile L2 entry could aim a write at one, and
 * that damages the snapshot, not the active disk or its tables.
 *
 * The map holds each range once: two structures on the same range are
 * corruption here, never sharing (the active L1 may not name an L2 table
 * twice, two refcount table entries may not share a block). The map
 * merges identical ranges, so the build counts what it added and names
 * the duplicate when the counts differ.
 */
#include "config.h"

#include <stdarg.h>
#include <string.h>

#include "formats/qcow2.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-info.h"
#include "src/vd-io.h"
#include "src/vd-metamap.h"

#define BITMAP_DIR_MAX    (64u << 20)
#define BITMAP_MAX        65535u
#define BITMAP_ENTRY_SIZE 24u

typedef struct MetaWalk MetaWalk;
struct MetaWalk {
    Qcow2State *s;
    uint64_t file_size;
    VdMetaMap *map;     /* the build: ranges go here */
    guint added;        /* ranges given to the map */
    GHashTable *starts; /* the diagnosis: start -> what */
};

static uint64_t cluster_len(const Qcow2State *s, uint64_t len)
{
    return qcow2_round_up(len, s->cluster_size);
}

/* One structure: aligned, inside the file, then into the map (whole
 * clusters). The file may end inside a structure's last cluster (QEMU
 * does not pad the snapshot table; allocations start past that cluster),
 * except for L2 tables and refcount blocks (whole: reads of a table cut
 * short by the end of the file fail, so writes must not use it either). */
static bool put_table(MetaWalk *w, uint64_t start, uint64_t len, const char *what, bool whole,
                      GError **error)
{
    Qcow2State *s = w->s;
    if (len == 0)
        return true;
    if (start & (s->cluster_size - 1)) {
        vd_set_error(error, EIO, "%s: %s at 0x%" G_GINT64_MODIFIER "x is not cluster aligned",
                     s->name, what, start);
        return false;
    }
    uint64_t end = whole ? w->file_size : cluster_len(s, w->file_size);
    if (start != 0 && !vd_range_within(start, len, end)) {
        vd_set_error(error, EIO,
                     "%s: %s at 0x%" G_GINT64_MODIFIER "x lies beyond the end of the file", s->name,
                     what, start);
        return false;
    }
    len = cluster_len(s, len);
    if (w->starts != NULL) {
        const char *other = g_hash_table_lookup(w->starts, &start);
        if (other != NULL) {
            vd_set_error(error, EIO,
                         "%s: %s at 0x%" G_GINT64_MODIFIER "x overlaps %s at 0x%" G_GINT64_MODIFIER
                         "x",
                         s->name, what, start, other, start);
            return false;
        }
        g_hash_table_insert(w->starts, g_memdup2(&start, sizeof start), (gpointer)what);
        return true;
    }
    w->added++;
    return vd_meta_map_add(w->map, start, len, what, error);
}

static bool put(MetaWalk *w, uint64_t start, uint64_t len, const char *what, GError **error)
{
    return put_table(w, start, len, what, false, error);
}

/* The bitmap directory and each bitmap's table (only while they are
 * valid); their data clusters are data, not tables. */
static bool bitmap_visit(void *opaque, uint64_t start, uint64_t len, const char *what,
                         GError **error)
{
    return strcmp(what, "bitmap data") == 0 || put(opaque, start, len, what, error);
}

static bool walk_bitmaps(MetaWalk *w, GError **error)
{
    return qcow2_bitmap_clusters(w->s, bitmap_visit, w, error);
}

static bool walk(MetaWalk *w, GError **error)
{
    Qcow2State *s = w->s;
    if (!put(w, 0, s->cluster_size, "header", error) ||
        !put(w, s->l1_offset, (uint64_t)s->l1_entries * 8, "L1 table", error) ||
        !put(w, s->refcount_table_offset, (uint64_t)s->refcount_table_clusters << s->cluster_bits,
             "refcount table", error) ||
        !put(w, s->snapshots_offset, s->snapshots_size, "snapshot table", error) ||
        !put(w, s->crypto_offset, s->crypto_length, "LUKS header", error))
        return false;
    for (guint i = 0; s->snapshots != NULL && i < s->snapshots->len; i++) {
        const Qcow2Snapshot *sn = s->snapshots->pdata[i];
        uint64_t bytes = (uint64_t)sn->l1_size * 8;
        if (bytes > QCOW2_MAX_L1_BYTES || (bytes > 0 && sn->l1_offset == 0)) {
            vd_set_error(error, EIO, "%s: snapshot %s has an invalid L1 table", s->name, sn->id);
            return false;
        }
        if (!put(w, sn->l1_offset, bytes, "snapshot L1 table", error))
            return false;
    }
    if (!walk_bitmaps(w, error))
        return false;
    for (uint32_t i = 0; i < s->l1_entries; i++) {
        uint64_t l2 = s->l1[i] & QCOW2_OFFSET_MASK;
        if (l2 != 0 && !put_table(w, l2, s->cluster_size, "L2 table", true, error))
            return false;
    }
    for (uint64_t r = 0; r < qcow2_refcount_table_entries(s); r++) {
        uint64_t b = qcow2_refcount_block_at(s, r);
        if (b != 0 && !put_table(w, b, s->cluster_size, "refcount block", true, error))
            return false;
    }
    return true;
}

bool qcow2_meta_build(Qcow2State *s, GError **error)
{
    g_autoptr(VdMetaMap) m = vd_meta_map_new(s->name);
    MetaWalk w = {.s = s, .file_size = qcow2_file_size(s), .map = m};
    if (!walk(&w, error) || !vd_meta_map_seal(m, error))
        return false;
    if (vd_meta_map_count(m) != w.added) {
        /* Two structures start at the same offset: walk again to name them. */
        MetaWalk d = {.s = s, .file_size = w.file_size};
        d.starts = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
        bool named = !walk(&d, error);
        g_hash_table_unref(d.starts);
        if (!named)
            vd_set_error(error, EIO, "%s: two metadata structures share a cluster", s->name);
        return false;
    }
    vd_meta_map_free(s->meta);
    s->meta = g_steal_pointer(&m);
    return true;
}

bool qcow2_corrupt(Qcow2State *s, GError **error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    vd_image_set_corrupt(s->img, "%s", msg);
    vd_set_error(error, EIO, "%s", msg);
    return false;
}

bool qcow2_meta_check_free(Qcow2State *s, uint64_t off, uint64_t len, GError **error)
{
    VdMetaRange hit;
    if (s->meta == NULL || !vd_meta_map_find(s->meta, off, len, &hit))
        return true;
    return qcow2_corrupt(s, error,
                         "%s: refcounts say cluster 0x%" G_GINT64_MODIFIER
                         "x is free but it holds the %s at 0x%" G_GINT64_MODIFIER "x",
                         s->name, off, hit.what, hit.start);
}

bool qcow2_meta_claim(Qcow2State *s, uint64_t off, uint64_t len, const char *what, GError **error)
{
    if (s->meta == NULL)
        return true;
    len = cluster_len(s, len);
    /* The map would count an identical range as shared: look first. */
    VdMetaRange hit;
    if (vd_meta_map_find(s->meta, off, len, &hit))
        return qcow2_corrupt(s, error,
                             "%s: a new %s at 0x%" G_GINT64_MODIFIER
                             "x would overwrite the %s at 0x%" G_GINT64_MODIFIER "x",
                             s->name, what, off, hit.what, hit.start);
    return vd_meta_map_add(s->meta, off, len, what, error);
}

void qcow2_meta_release(Qcow2State *s, uint64_t off)
{
    if (s->meta != NULL && !vd_meta_map_remove(s->meta, off))
        g_debug("%s: no metadata recorded at 0x%" G_GINT64_MODIFIER "x", s->name, off);
}

bool qcow2_meta_find(Qcow2State *s, uint64_t off, uint64_t len, VdMetaRange *hit)
{
    return s->meta != NULL && vd_meta_map_find(s->meta, off, len, hit);
}

/* The persistent bitmaps, as qemu-img info lists them: one "bitmaps" item
 * each, "GRANULARITY FLAGS NAME" (flags "auto,in-use" or "-"; the name
 * last, as it may hold spaces). Only while they are valid (the autoclear
 * bit); a directory that does not parse lists nothing. */
void qcow2_describe_bitmaps(const Qcow2State *s, VdInfo *info)
{
    if (!s->has_bitmaps_ext || !(s->autoclear & QCOW2_AUTOCLEAR_BITMAPS) || s->bitmaps_count == 0 ||
        s->bitmaps_count > BITMAP_MAX || s->bitmaps_dir_size > BITMAP_DIR_MAX ||
        s->bitmaps_dir_size < (uint64_t)s->bitmaps_count * BITMAP_ENTRY_SIZE)
        return;
    g_autofree uint8_t *dir = g_malloc(s->bitmaps_dir_size);
    if (!vd_host_pread(s->fd, s->name, dir, s->bitmaps_dir_size, s->bitmaps_offset, false, NULL))
        return;
    uint64_t pos = 0;
    for (uint32_t i = 0; i < s->bitmaps_count && s->bitmaps_dir_size - pos >= BITMAP_ENTRY_SIZE;
         i++) {
        const uint8_t *e = dir + pos;
        uint32_t flags = vd_be32(e + 12);
        unsigned gran_bits = e[17];
        uint16_t name_len = vd_be16(e + 18);
        uint32_t extra = vd_be32(e + 20);
        uint64_t entry_len = BITMAP_ENTRY_SIZE + (uint64_t)extra + name_len;
        if (entry_len > s->bitmaps_dir_size - pos || gran_bits > 63)
            return;
        g_autofree char *name = g_strndup((const char *)e + BITMAP_ENTRY_SIZE + extra, name_len);
        /* qemu-img lists in-use before auto. */
        const char *fl = (flags & 1) && (flags & 2) ? "in-use,auto"
                         : (flags & 1)              ? "in-use"
                         : (flags & 2)              ? "auto"
                                                    : "-";
        vd_info_add_list_item(info, "bitmaps", "%" G_GUINT64_FORMAT " %s %s",
                              (uint64_t)1 << gran_bits, fl, name);
        pos += qcow2_round_up(entry_len, 8);
    }
}

bool qcow2_bitmap_clusters(const Qcow2State *s, Qcow2BitmapVisit visit, void *opaque,
                           GError **error)
{
    if (!s->has_bitmaps_ext || !(s->autoclear & QCOW2_AUTOCLEAR_BITMAPS) || s->bitmaps_count == 0)
        return true;
    if (s->bitmaps_count > BITMAP_MAX || s->bitmaps_dir_size > BITMAP_DIR_MAX ||
        s->bitmaps_dir_size < (uint64_t)s->bitmaps_count * BITMAP_ENTRY_SIZE) {
        vd_set_error(error, EIO,
                     "%s: bitmap directory (%u bitmaps, %" G_GUINT64_FORMAT " bytes) is invalid",
                     s->name, s->bitmaps_count, s->bitmaps_dir_size);
        return false;
    }
    if (!visit(opaque, s->bitmaps_offset, s->bitmaps_dir_size, "bitmap directory", error))
        return false;
    g_autofree uint8_t *dir = g_malloc(s->bitmaps_dir_size);
    if (!vd_host_pread(s->fd, s->name, dir, s->bitmaps_dir_size, s->bitmaps_offset, false, error))
        return false;
    uint64_t pos = 0;
    for (uint32_t i = 0; i < s->bitmaps_count; i++) {
        if (s->bitmaps_dir_size - pos < BITMAP_ENTRY_SIZE) {
            vd_set_error(error, EIO, "%s: bitmap directory entry %u runs past the directory",
                         s->name, i);
            return false;
        }
        const uint8_t *e = dir + pos;
        uint64_t table = vd_be64(e);
        uint32_t entries = vd_be32(e + 8);
        uint64_t entry_len = BITMAP_ENTRY_SIZE + (uint64_t)vd_be32(e + 20) + vd_be16(e + 18);
        if (!visit(opaque, table, (uint64_t)entries * 8, "bitmap table", error))
            return false;
        /* Each table entry: a data cluster, or 0 (all zeros or all ones). */
        if (entries > 0 && (uint64_t)entries * 8 <= BITMAP_DIR_MAX) {
            g_autofree uint8_t *t = g_malloc((size_t)entries * 8);
            if (!vd_host_pread(s->fd, s->name, t, (size_t)entries * 8, table, false, error))
                return false;
            for (uint32_t k = 0; k < entries; k++) {
                uint64_t off = vd_be64(t + (size_t)k * 8) & QCOW2_OFFSET_MASK;
                if (off != 0 && !visit(opaque, off, s->cluster_size, "bitmap data", error))
                    return false;
            }
        }
        pos += qcow2_round_up(entry_len, 8);
        if (pos > s->bitmaps_dir_size && i + 1 < s->bitmaps_count) {
            vd_set_error(error, EIO, "%s: bitmap directory entry %u runs past the directory",
                         s->name, i);
            return false;
        }
    }
    return true;
}
