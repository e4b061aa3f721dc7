/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2: the L1 table's changes and the callbacks through which the
 * block layer's table cache (src/vd-table-cache.h) loads and writes back
 * L2 tables and refcount blocks, both cluster-sized and kept as on disk.
 */
#include "config.h"

#include "formats/qcow2.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

void qcow2_l1_set(Qcow2State *s, uint64_t i, uint64_t entry)
{
    vd_brlock_wrlock(&s->l1_lock);
    s->l1[i] = entry;
    vd_brlock_wrunlock(&s->l1_lock);
    s->l1_dirty_lo = (uint32_t)MIN(s->l1_dirty_lo, i);
    s->l1_dirty_hi = (uint32_t)MAX(s->l1_dirty_hi, i + 1);
}

bool qcow2_table_load(void *opaque, uint64_t key, uint8_t *data, GError **error)
{
    Qcow2State *s = opaque;
    return vd_host_pread(s->fd, s->name, data, s->cluster_size, key, true, error);
}

bool qcow2_l2_load(void *opaque, uint64_t key, uint8_t *data, GError **error)
{
    Qcow2State *s = opaque;
    /* A hostile L1 entry must not make the header (or nothing) an L2 table. */
    if (key < s->cluster_size) {
        vd_set_error(error, EIO, "%s: L2 table at 0x%" G_GINT64_MODIFIER "x overlaps the header",
                     s->name, key);
        return false;
    }
    if (!vd_range_within(key, s->cluster_size, qcow2_file_size(s))) {
        vd_set_error(error, EIO,
                     "%s: L2 table at 0x%" G_GINT64_MODIFIER "x lies beyond the end of the file",
                     s->name, key);
        return false;
    }
    return qcow2_table_load(opaque, key, data, error);
}

bool qcow2_table_store(void *opaque, uint64_t key, const uint8_t *data, GError **error)
{
    Qcow2State *s = opaque;
    return vd_host_pwrite(s->fd, s->name, data, s->cluster_size, key, error);
}

VdTableCache *qcow2_l2_cache_new(Qcow2State *s, uint64_t max_bytes)
{
    /* At least 8 tables, as the driver's own cache always kept. */
    return vd_table_cache_new(s->cluster_size, max_bytes, 8, qcow2_l2_load, qcow2_table_store, s);
}

unsigned qcow2_dirty_tables(VdTableCache *c)
{
    VdTableCacheStats st;
    vd_table_cache_stats(c, &st);
    return st.dirty;
}
