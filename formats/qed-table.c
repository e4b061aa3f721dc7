/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The L2 table cache of the QED and qcow (v1) drivers (see qed-table.h).
 *
 * A miss reads the chunk without holding the lock. A writer may update
 * an entry of that chunk meanwhile; an update of an uncached chunk and
 * every eviction bump the generation, and a load that sees the generation
 * changed is thrown away and retried (after a few tries, it loads under
 * the lock).
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "formats/qed-table.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

#define LOAD_TRIES 4

typedef struct {
    uint64_t host;   /* the hash key points here */
    gint64 last_use; /* atomic: the cache's tick when last looked up */
    uint64_t entries[];
} Chunk;

void qed_tcache_init(QedTableCache *c, bool big_endian, uint64_t table_entries, uint64_t budget)
{
    vd_brlock_init(&c->lock);
    c->big_endian = big_endian;
    c->chunk_entries = MIN(table_entries, (uint64_t)QED_TCACHE_CHUNK_BYTES / 8);
    uint64_t cap = budget / (c->chunk_entries * 8);
    c->cap = (size_t)MIN(MAX(cap, 4), 65536);
    c->chunks = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
}

void qed_tcache_clear(QedTableCache *c)
{
    if (c->chunks == NULL)
        return;
    g_clear_pointer(&c->chunks, g_hash_table_unref);
    vd_brlock_clear(&c->lock);
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

static Chunk *chunk_read(QedTableCache *c, VdImage *img, uint64_t host, GError **error)
{
    size_t bytes = (size_t)(c->chunk_entries * 8);
    g_autofree uint8_t *raw = g_malloc(bytes);
    if (!vd_host_pread(img->fd, img->name, raw, bytes, host, false, error))
        return NULL;
    Chunk *ch = g_malloc(sizeof(Chunk) + bytes);
    ch->host = host;
    ch->last_use = 0;
    qed_tcache_decode(c, raw, ch->entries, (size_t)c->chunk_entries);
    return ch;
}

static gint cmp_last_use(gconstpointer a, gconstpointer b)
{
    const Chunk *x = *(Chunk *const *)a, *y = *(Chunk *const *)b;
    return x->last_use < y->last_use ? -1 : x->last_use > y->last_use;
}

/* Under the write lock: add a loaded chunk. When full, first evict the
 * least recently used eighth, so the scan is paid once per many loads. */
static void chunk_insert(QedTableCache *c, Chunk *ch)
{
    if (g_hash_table_size(c->chunks) >= c->cap) {
        g_autoptr(GPtrArray) all = g_ptr_array_sized_new(g_hash_table_size(c->chunks));
        GHashTableIter it;
        gpointer key, value;
        g_hash_table_iter_init(&it, c->chunks);
        while (g_hash_table_iter_next(&it, &key, &value))
            g_ptr_array_add(all, value);
        g_ptr_array_sort(all, cmp_last_use);
        guint drop = MAX(all->len / 8, 1);
        for (guint i = 0; i < drop; i++)
            g_hash_table_remove(c->chunks, &((Chunk *)all->pdata[i])->host);
        /* A load running meanwhile may have read an evicted chunk before
         * its last update went to disk: it must not insert that copy. */
        c->gen++;
    }
    ch->last_use = vd_lru_insert_stamp(&c->tick);
    g_hash_table_insert(c->chunks, &ch->host, ch);
}

size_t qed_tcache_get(QedTableCache *c, VdImage *img, uint64_t table_host, uint64_t index,
                      size_t max, uint64_t *out, GError **error)
{
    uint64_t first = index / c->chunk_entries * c->chunk_entries;
    uint64_t host = table_host + first * 8;
    uint64_t within = index - first;
    size_t n = (size_t)MIN((uint64_t)MAX(max, 1), c->chunk_entries - within);
    for (int attempt = 0;; attempt++) {
        vd_brlock_rdlock(&c->lock);
        Chunk *ch = g_hash_table_lookup(c->chunks, &host);
        if (ch != NULL) {
            vd_lru_touch(&ch->last_use, &c->tick);
            memcpy(out, ch->entries + within, n * 8);
            vd_brlock_rdunlock(&c->lock);
            return n;
        }
        uint64_t gen = c->gen;
        vd_brlock_rdunlock(&c->lock);

        if (attempt >= LOAD_TRIES) {
            /* Writers keep changing it: load while holding the lock. */
            vd_brlock_wrlock(&c->lock);
            ch = g_hash_table_lookup(c->chunks, &host);
            if (ch == NULL) {
                ch = chunk_read(c, img, host, error);
                if (ch == NULL) {
                    vd_brlock_wrunlock(&c->lock);
                    return 0;
                }
                chunk_insert(c, ch);
            }
            memcpy(out, ch->entries + within, n * 8);
            vd_brlock_wrunlock(&c->lock);
            return n;
        }

        ch = chunk_read(c, img, host, error);
        if (ch == NULL)
            return 0;
        vd_brlock_wrlock(&c->lock);
        if (c->gen != gen || g_hash_table_contains(c->chunks, &host)) {
            vd_brlock_wrunlock(&c->lock);
            g_free(ch);
            continue;
        }
        chunk_insert(c, ch);
        memcpy(out, ch->entries + within, n * 8);
        vd_brlock_wrunlock(&c->lock);
        return n;
    }
}

void qed_tcache_set(QedTableCache *c, uint64_t table_host, uint64_t index, uint64_t value)
{
    uint64_t first = index / c->chunk_entries * c->chunk_entries;
    uint64_t host = table_host + first * 8;
    vd_brlock_wrlock(&c->lock);
    Chunk *ch = g_hash_table_lookup(c->chunks, &host);
    if (ch != NULL)
        ch->entries[index - first] = value;
    else
        c->gen++;
    vd_brlock_wrunlock(&c->lock);
}

void qed_tcache_forget(QedTableCache *c, uint64_t host, uint64_t len)
{
    vd_brlock_wrlock(&c->lock);
    GHashTableIter it;
    gpointer key, value;
    g_hash_table_iter_init(&it, c->chunks);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        Chunk *ch = value;
        if (ch->host < host + len && host < ch->host + c->chunk_entries * 8)
            g_hash_table_iter_remove(&it);
    }
    c->gen++;
    vd_brlock_wrunlock(&c->lock);
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
