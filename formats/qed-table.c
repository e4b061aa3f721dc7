/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The L2 tables of the QED and qcow (v1) drivers (see qed-table.h), in
 * chunks held by the block layer's table cache, decoded to host order.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "formats/qed-table.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

static bool chunk_load(void *opaque, uint64_t host, uint8_t *data, GError **error)
{
    QedTableCache *c = opaque;
    size_t bytes = (size_t)(c->chunk_entries * 8);
    g_autofree uint8_t *raw = g_malloc(bytes);
    if (!vd_host_pread(c->img->fd, c->img->name, raw, bytes, host, false, error))
        return false;
    qed_tcache_decode(c, raw, (uint64_t *)data, (size_t)c->chunk_entries);
    return true;
}

void qed_tcache_init(QedTableCache *c, VdImage *img, bool big_endian, uint64_t table_entries,
                     uint64_t budget)
{
    c->img = img;
    c->big_endian = big_endian;
    c->chunk_entries = MIN(table_entries, (uint64_t)QED_TCACHE_CHUNK_BYTES / 8);
    c->cache = vd_table_cache_new((size_t)(c->chunk_entries * 8), budget, 4, chunk_load, NULL, c);
}

void qed_tcache_clear(QedTableCache *c)
{
    g_clear_pointer(&c->cache, vd_table_cache_free);
}

void qed_tcache_decode(const QedTableCache *c, const uint8_t *raw, uint64_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = c->big_endian ? vd_be64(raw + 8 * i) : vd_le64(raw + 8 * i);
}

void qed_tcache_encode(const QedTableCache *c, const uint64_t *in, uint8_t *raw, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (c->big_endian)
            vd_put_be64(raw + 8 * i, in[i]);
        else
            vd_put_le64(raw + 8 * i, in[i]);
    }
}

size_t qed_tcache_get(QedTableCache *c, uint64_t table_host, uint64_t index, size_t max,
                      uint64_t *out, GError **error)
{
    uint64_t first = index / c->chunk_entries * c->chunk_entries;
    uint64_t within = index - first;
    size_t n = (size_t)MIN((uint64_t)MAX(max, 1), c->chunk_entries - within);
    if (!vd_table_cache_read(c->cache, table_host + first * 8, (size_t)within * 8, n * 8, out,
                             error))
        return 0;
    return n;
}

void qed_tcache_set(QedTableCache *c, uint64_t table_host, uint64_t index, const uint64_t *values,
                    size_t n)
{
    /* One update per chunk the entries fall in. */
    while (n > 0) {
        uint64_t first = index / c->chunk_entries * c->chunk_entries;
        uint64_t within = index - first;
        size_t k = (size_t)MIN((uint64_t)n, c->chunk_entries - within);
        vd_table_cache_updated(c->cache, table_host + first * 8, (size_t)within * 8, values, k * 8);
        index += k;
        values += k;
        n -= k;
    }
}

void qed_tcache_forget(QedTableCache *c, uint64_t host, uint64_t len)
{
    vd_table_cache_invalidate_range(c->cache, host, len);
}

#define STATUS_BATCH   1024 /* entries looked at per lookup */
#define STATUS_LOOKUPS 64   /* lookups per call */

bool qed_map_status(VdImage *img, const QedMap *map, uint64_t offset, uint64_t length,
                    VdExtent *ext, GError **error)
{
    uint64_t cs = 1ull << map->cluster_bits;
    uint64_t ci = offset >> map->cluster_bits;
    uint64_t within = offset & (cs - 1);
    uint64_t last = (offset + length - 1) >> map->cluster_bits;
    uint64_t entries[STATUS_BATCH];
    QedMapped first = {VD_EXTENT_UNALLOCATED, 0};
    uint64_t run = 0; /* clusters in the run so far */
    for (int lookups = 0; ci + run <= last && lookups < STATUS_LOOKUPS; lookups++) {
        size_t n, max = (size_t)MIN(last - (ci + run) + 1, (uint64_t)STATUS_BATCH);
        uint64_t l2;
        if (!map->entries(img, ci + run, max, entries, &n, &l2, error))
            return false;
        for (size_t i = 0; i < n; i++) {
            QedMapped m;
            GError *bad = NULL;
            if (!map->classify(img, ci + run, entries[i], &m, &bad)) {
                if (run == 0) {
                    g_propagate_error(error, bad);
                    return false;
                }
                g_error_free(bad);
                goto done;
            }
            if (run == 0)
                first = m;
            else if (m.state != first.state ||
                     (m.state == VD_EXTENT_DATA && m.host != first.host + run * cs))
                goto done;
            run++;
        }
    }
done:
    ext->state = first.state;
    ext->length = MIN(run * cs - within, length);
    ext->fd = first.state == VD_EXTENT_DATA ? img->fd : -1;
    ext->host_offset = first.state == VD_EXTENT_DATA ? first.host + within : 0;
    return true;
}

static gint cmp_u64(gconstpointer a, gconstpointer b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

bool qed_tables_sort(GArray *tables, uint64_t table_bytes, uint64_t *clash)
{
    g_array_sort(tables, cmp_u64);
    for (guint i = 0; i + 1 < tables->len; i++) {
        uint64_t t = g_array_index(tables, uint64_t, i);
        if (t + table_bytes > g_array_index(tables, uint64_t, i + 1)) {
            *clash = t;
            return false;
        }
    }
    return true;
}

bool qed_entries_all(const uint64_t *entries, uint64_t k, uint64_t v)
{
    for (uint64_t j = 0; j < k; j++) {
        if (entries[j] != v)
            return false;
    }
    return true;
}
