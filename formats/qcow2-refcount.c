/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 refcounts: the refcount table and cached refcount blocks of any
 * width (1 to 64 bits), cluster allocation (reusing freed clusters first,
 * else appending, with new refcount blocks and a grown refcount table as
 * needed), and deferred frees.
 *
 * Ordering (see qcow2_metadata_writeback): increments reach the file
 * before anything that points at the new clusters; decrements are only
 * applied once the metadata that stopped pointing at them is durable. A
 * crash in between leaks clusters, never corrupts.
 *
 * Everything here runs under the image's write lock, the refcount table
 * included: nothing else reads it (the fast write path needs no
 * refcounts), so unlike the L1 table it needs no lock of its own. The
 * blocks live in a table cache (src/vd-table-cache.h), read straight
 * from pinned copies and changed through it.
 */
#include "config.h"

#include <string.h>

#include "formats/qcow2.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

typedef struct {
    uint64_t start, len; /* host bytes */
} FreeRange;

struct Qcow2Refcounts {
    uint64_t *table; /* refcount table, host byte order */
    uint64_t table_entries;
    uint64_t table_dirty_lo, table_dirty_hi; /* entries not yet in the file */
    VdTableCache *blocks;
    uint64_t block_entries; /* refcounts per block */
    uint64_t max_value;
    uint64_t free_hint; /* cluster index: none free below (among existing blocks) */
    uint64_t end;       /* cluster index: nothing allocated at or above */
    GArray *pending;    /* FreeRange */
    uint64_t pending_bytes;
};

static uint64_t rc_get(const Qcow2State *s, const uint8_t *b, uint64_t i)
{
    switch (s->refcount_order) {
    case 0:
    case 1:
    case 2: {
        unsigned bits = 1u << s->refcount_order;
        uint64_t bit = i * bits;
        return (b[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
    }
    case 3:
        return b[i];
    case 4:
        return vd_be16(b + 2 * i);
    case 5:
        return vd_be32(b + 4 * i);
    default:
        return vd_be64(b + 8 * i);
    }
}

static void rc_put(const Qcow2State *s, uint8_t *b, uint64_t i, uint64_t v);

/* Set refcounts [i, i + n) of a pinned block to v: the bytes they span
 * are changed aside and stored through the cache in one change. */
static void rc_update(Qcow2State *s, VdTable *t, uint64_t i, uint64_t n, uint64_t v)
{
    unsigned order = s->refcount_order;
    uint64_t at = (i << order) / 8, stop = ((i + n) << order) / 8;
    if (((i + n) << order) % 8)
        stop++;
    uint64_t base = (at * 8) >> order; /* the first refcount in byte at */
    size_t len = (size_t)(stop - at);
    g_autofree uint8_t *b = g_memdup2(t->data + at, len);
    for (uint64_t k = i; k < i + n; k++)
        rc_put(s, b, k - base, v);
    vd_table_cache_update(s->rc->blocks, t, (size_t)at, b, len);
}

static void rc_put(const Qcow2State *s, uint8_t *b, uint64_t i, uint64_t v)
{
    switch (s->refcount_order) {
    case 0:
    case 1:
    case 2: {
        unsigned bits = 1u << s->refcount_order;
        uint64_t bit = i * bits;
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << (bit % 8));
        b[bit / 8] = (uint8_t)((b[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
        break;
    }
    case 3:
        b[i] = (uint8_t)v;
        break;
    case 4:
        vd_put_be16(b + 2 * i, (uint16_t)v);
        break;
    case 5:
        vd_put_be32(b + 4 * i, (uint32_t)v);
        break;
    default:
        vd_put_be64(b + 8 * i, v);
        break;
    }
}

bool qcow2_refcount_init(Qcow2State *s, GError **error)
{
    Qcow2Refcounts *rc = g_new0(Qcow2Refcounts, 1);
    rc->table_entries = ((uint64_t)s->refcount_table_clusters << s->cluster_bits) / 8;
    rc->block_entries = (s->cluster_size * 8) >> s->refcount_order;
    rc->max_value = s->refcount_order == 6 ? UINT64_MAX : (1ull << (1u << s->refcount_order)) - 1;
    rc->table_dirty_lo = UINT64_MAX;
    rc->pending = g_array_new(FALSE, FALSE, sizeof(FreeRange));
    s->rc = rc; /* freed with the state from here on */
    uint64_t bytes = rc->table_entries * 8;
    g_autofree uint8_t *raw = g_malloc(bytes);
    if (!vd_host_pread(s->fd, s->name, raw, bytes, s->refcount_table_offset, false, error))
        return false;
    rc->table = g_new(uint64_t, rc->table_entries);
    for (uint64_t i = 0; i < rc->table_entries; i++) {
        rc->table[i] = vd_be64(raw + 8 * i);
        if (rc->table[i] & ~QCOW2_REFT_OFFSET_MASK & (s->cluster_size - 1)) {
            vd_set_error(error, EIO, "%s: refcount table entry %" G_GUINT64_FORMAT " is invalid",
                         s->name, i);
            return false;
        }
    }
    /* 64 blocks as before, fewer under a tinier metadata budget (at least 8). */
    rc->blocks = vd_table_cache_new(s->cluster_size,
                                    MIN(s->cluster_size * 64, s->img->ctx->metadata_cache_bytes), 8,
                                    qcow2_table_load, qcow2_table_store, s);
    uint64_t fsize = qcow2_file_size(s);
    rc->end = MAX(qcow2_round_up(fsize, s->cluster_size) >> s->cluster_bits, 1);
    return true;
}

VdTableCache *qcow2_refcount_blocks(const Qcow2State *s)
{
    return s->rc->blocks;
}

void qcow2_refcount_free(Qcow2Refcounts *rc)
{
    if (rc == NULL)
        return;
    g_free(rc->table);
    vd_table_cache_free(rc->blocks);
    g_array_unref(rc->pending);
    g_free(rc);
}

/* Host offset of the refcount block for table index ti, or 0. */
static bool block_offset(Qcow2State *s, uint64_t ti, uint64_t *off, GError **error)
{
    Qcow2Refcounts *rc = s->rc;
    *off = ti < rc->table_entries ? rc->table[ti] & QCOW2_REFT_OFFSET_MASK : 0;
    if (*off != 0 && (*off & (s->cluster_size - 1))) {
        vd_set_error(error, EIO,
                     "%s: refcount block offset 0x%" G_GINT64_MODIFIER "x is not cluster aligned",
                     s->name, *off);
        return false;
    }
    return true;
}

static VdTable *get_block(Qcow2State *s, uint64_t off, GError **error)
{
    return vd_table_cache_get(s->rc->blocks, off, error);
}

/* A new block at off, all zeros: dirty, not read from the file. */
static void new_block(Qcow2State *s, uint64_t off)
{
    vd_table_cache_put(s->rc->blocks, vd_table_cache_get_new(s->rc->blocks, off, NULL));
}

/* Refcount of one cluster (0 where no block exists). */
bool qcow2_refcount_get(Qcow2State *s, uint64_t cluster, uint64_t *value, GError **error)
{
    Qcow2Refcounts *rc = s->rc;
    uint64_t off;
    if (!block_offset(s, cluster / rc->block_entries, &off, error))
        return false;
    if (off == 0) {
        *value = 0;
        return true;
    }
    VdTable *t = get_block(s, off, error);
    if (t == NULL)
        return false;
    *value = rc_get(s, t->data, cluster % rc->block_entries);
    vd_table_cache_put(rc->blocks, t);
    return true;
}

bool qcow2_refcount_read(Qcow2State *s, Qcow2RcCursor *cur, uint64_t cluster, uint64_t *value,
                         GError **error)
{
    Qcow2Refcounts *rc = s->rc;
    uint64_t ti = cluster / rc->block_entries, off;
    if (cur->block == NULL || cur->index != ti) {
        qcow2_refcount_cursor_end(s, cur);
        if (!block_offset(s, ti, &off, error))
            return false;
        if (off == 0) {
            *value = 0;
            return true;
        }
        cur->block = get_block(s, off, error);
        if (cur->block == NULL)
            return false;
        cur->index = ti;
    }
    *value = rc_get(s, cur->block->data, cluster % rc->block_entries);
    return true;
}

void qcow2_refcount_cursor_end(Qcow2State *s, Qcow2RcCursor *cur)
{
    if (cur->block != NULL)
        vd_table_cache_put(s->rc->blocks, cur->block);
    cur->block = NULL;
}

/* Set a refcount; its block must exist. */
bool qcow2_refcount_set(Qcow2State *s, uint64_t cluster, uint64_t value, GError **error)
{
    Qcow2Refcounts *rc = s->rc;
    uint64_t off;
    if (!block_offset(s, cluster / rc->block_entries, &off, error))
        return false;
    if (off == 0) {
        vd_set_error(error, EIO, "%s: no refcount block for cluster %" G_GUINT64_FORMAT, s->name,
                     cluster);
        return false;
    }
    VdTable *t = get_block(s, off, error);
    if (t == NULL)
        return false;
    rc_update(s, t, cluster % rc->block_entries, 1, value);
    vd_table_cache_put(rc->blocks, t);
    return true;
}

static void table_set(Qcow2Refcounts *rc, uint64_t ti, uint64_t off)
{
    rc->table[ti] = off;
    rc->table_dirty_lo = MIN(rc->table_dirty_lo, ti);
    rc->table_dirty_hi = MAX(rc->table_dirty_hi, ti + 1);
}

uint64_t qcow2_refcount_block_entries(const Qcow2State *s)
{
    return s->rc->block_entries;
}

uint64_t qcow2_refcount_table_entries(const Qcow2State *s)
{
    return s->rc->table_entries;
}

uint64_t qcow2_refcount_block_at(const Qcow2State *s, uint64_t region)
{
    return region < s->rc->table_entries ? s->rc->table[region] & QCOW2_REFT_OFFSET_MASK : 0;
}

bool qcow2_refcount_new_block(Qcow2State *s, uint64_t region, uint64_t offset, GError **error)
{
    Qcow2Refcounts *rc = s->rc;
    if (!qcow2_meta_claim(s, offset, s->cluster_size, "refcount block", error))
        return false;
    new_block(s, offset);
    table_set(rc, region, offset);
    rc->end = MAX(rc->end, (offset >> s->cluster_bits) + 1);
    return true;
}

uint64_t qcow2_refcount_max(const Qcow2State *s)
{
    return s->rc->max_value;
}

/* Regions [first, last] that have no refcount block. */
static uint64_t regions_without_block(Qcow2Refcounts *rc, uint64_t first, uint64_t last)
{
    uint64_t n = 0;
    for (uint64_t r = first; r <= last; r++)
        n += r >= rc->table_entries || rc->table[r] == 0;
    return n;
}

/* First cluster >= from whose refcount is not 0, or UINT64_MAX. */
static bool first_used(Qcow2State *s, uint64_t from, uint64_t to, uint64_t *used, GError **error)
{
    for (uint64_t c = from; c < to; c++) {
        uint64_t v;
        if (!qcow2_refcount_get(s, c, &v, error))
            return false;
        if (v != 0) {
            *used = c;
            return true;
        }
    }
    *used = UINT64_MAX;
    return true;
}

static bool grow_table(Qcow2State *s, uint64_t need_entries, GError **error);

/*
 * n contiguous clusters past everything allocated; the refcount blocks for
 * the regions they touch (placed right after them) are created as needed.
 */
static bool alloc_append(Qcow2State *s, uint64_t n, uint64_t *first, GError **error)
{
    Qcow2Refcounts *rc = s->rc;
    uint64_t E = rc->block_entries;
    for (;;) {
        uint64_t p =
            MAX(rc->end, qcow2_round_up(qcow2_file_size(s), s->cluster_size) >> s->cluster_bits);
        uint64_t nb = 0;
        for (;;) {
            uint64_t want = regions_without_block(rc, p / E, (p + n + nb - 1) / E);
            if (want == nb)
                break;
            nb = want;
        }
        uint64_t last_region = (p + n + nb - 1) / E;
        if ((p + n + nb) > (QCOW2_OFFSET_MASK >> s->cluster_bits)) {
            vd_set_error(error, ENOSPC, "%s: the image cannot grow any larger", s->name);
            return false;
        }
        if (last_region >= rc->table_entries) {
            if (!grow_table(s, last_region + 1, error))
                return false;
            continue; /* the new table took the space at the end */
        }
        /* After a crash, clusters past the end of the file may be counted. */
        uint64_t used;
        if (!first_used(s, p, p + n + nb, &used, error))
            return false;
        if (used != UINT64_MAX) {
            rc->end = used + 1;
            continue;
        }
        uint64_t b = p + n;
        for (uint64_t r = p / E; r <= last_region; r++) {
            if (rc->table[r] != 0)
                continue;
            uint64_t boff = b++ << s->cluster_bits;
            if (!qcow2_meta_claim(s, boff, s->cluster_size, "refcount block", error))
                return false;
            new_block(s, boff);
            table_set(rc, r, boff);
        }
        for (uint64_t c = p + n; c < b; c++) {
            if (!qcow2_refcount_set(s, c, 1, error))
                return false;
        }
        for (uint64_t c = p; c < p + n; c++) {
            if (!qcow2_refcount_set(s, c, 1, error))
                return false;
        }
        rc->end = b;
        *first = p;
        return true;
    }
}

/* Write back dirty blocks and refcount table entries, with a barrier between. */
static bool write_table_entries(Qcow2State *s, GError **error)
{
    Qcow2Refcounts *rc = s->rc;
    if (rc->table_dirty_lo >= rc->table_dirty_hi)
        return true;
    uint64_t lo = rc->table_dirty_lo, hi = rc->table_dirty_hi;
    g_autofree uint8_t *raw = g_malloc((hi - lo) * 8);
    for (uint64_t i = lo; i < hi; i++)
        vd_put_be64(raw + (i - lo) * 8, rc->table[i]);
    /* The blocks must be in the file before the table points at them. */
    if (!vd_host_fdatasync(s->fd, s->name, error) ||
        !vd_host_pwrite(s->fd, s->name, raw, (hi - lo) * 8, s->refcount_table_offset + lo * 8,
                        error))
        return false;
    rc->table_dirty_lo = UINT64_MAX;
    rc->table_dirty_hi = 0;
    return true;
}

bool qcow2_refcount_writeback(Qcow2State *s, GError **error)
{
    return vd_table_cache_flush(s->rc->blocks, error) && write_table_entries(s, error);
}

bool qcow2_refcount_pressure(const Qcow2State *s)
{
    return s->rc != NULL && vd_table_cache_pressure(s->rc->blocks);
}

bool qcow2_refcount_dirty(const Qcow2State *s)
{
    return s->rc != NULL &&
           (qcow2_dirty_tables(s->rc->blocks) > 0 || s->rc->table_dirty_lo < s->rc->table_dirty_hi);
}

/*
 * A new, larger refcount table (and blocks for the regions it and they
 * occupy), placed past everything allocated; then the header switches to
 * it and the old table is freed.
 */
static bool grow_table(Qcow2State *s, uint64_t need_entries, GError **error)
{
    Qcow2Refcounts *rc = s->rc;
    uint64_t E = rc->block_entries, per_cluster = s->cluster_size / 8;
    /* Everything the old table points at must be in the file first. */
    if (!qcow2_refcount_writeback(s, error))
        return false;
    uint64_t p =
        MAX(rc->end, qcow2_round_up(qcow2_file_size(s), s->cluster_size) >> s->cluster_bits);
    uint64_t entries = MAX(need_entries, rc->table_entries * 2), tab, nb = 0;
    for (;;) {
        /* Before counting regions: a huge (sparse) file must not make
         * that loop run for ages only to find the table too large. */
        if (entries > QCOW2_MAX_REFTABLE_BYTES / 8) {
            vd_set_error(error, EFBIG, "%s: the refcount table would exceed %u MiB", s->name,
                         QCOW2_MAX_REFTABLE_BYTES >> 20);
            return false;
        }
        tab = (entries + per_cluster - 1) / per_cluster;
        entries = tab * per_cluster;
        uint64_t want = regions_without_block(rc, p / E, (p + tab + nb - 1) / E);
        uint64_t last_region = (p + tab + want - 1) / E;
        if (want == nb && last_region < entries)
            break;
        nb = want;
        entries = MAX(entries, last_region + 1);
    }
    uint64_t used;
    if (!first_used(s, p, p + tab + nb, &used, error))
        return false;
    if (used != UINT64_MAX) {
        rc->end = used + 1;
        return grow_table(s, need_entries, error);
    }
    uint64_t *table = g_new0(uint64_t, entries);
    memcpy(table, rc->table, rc->table_entries * 8);
    /* New blocks, each counting the new clusters in its region. */
    uint64_t first_new = p + tab, b = first_new;
    for (uint64_t r = p / E; r <= (p + tab + nb - 1) / E; r++) {
        if (r < rc->table_entries && rc->table[r] != 0)
            continue;
        table[r] = b++ << s->cluster_bits;
    }
    /* The new table and blocks are metadata from here on. */
    bool table_claimed =
        qcow2_meta_claim(s, p << s->cluster_bits, tab << s->cluster_bits, "refcount table", error);
    bool ok = table_claimed;
    uint64_t claimed = first_new;
    while (ok && claimed < b) {
        ok = qcow2_meta_claim(s, claimed << s->cluster_bits, s->cluster_size, "refcount block",
                              error);
        claimed += ok;
    }
    g_autofree uint8_t *blk = g_malloc(s->cluster_size);
    /* Write each new block: refcount 1 for the new clusters in its region. */
    for (uint64_t r = p / E; ok && r <= (p + tab + nb - 1) / E; r++) {
        uint64_t boff = table[r] & QCOW2_REFT_OFFSET_MASK;
        uint64_t bc = boff >> s->cluster_bits;
        if (bc < first_new || bc >= b)
            continue;
        memset(blk, 0, s->cluster_size);
        for (uint64_t c = MAX(p, r * E); c < MIN(b, (r + 1) * E); c++)
            rc_put(s, blk, c - r * E, 1);
        ok = vd_host_pwrite(s->fd, s->name, blk, s->cluster_size, boff, error);
    }
    /* New clusters in regions that already had a block: count them there. */
    for (uint64_t c = p; ok && c < b; c++) {
        uint64_t r = c / E;
        uint64_t bc = (table[r] & QCOW2_REFT_OFFSET_MASK) >> s->cluster_bits;
        if (bc >= first_new && bc < b)
            continue;
        ok = qcow2_refcount_set(s, c, 1, error);
    }
    ok = ok && vd_table_cache_flush(rc->blocks, error);
    g_autofree uint8_t *raw = g_malloc0(tab * s->cluster_size);
    for (uint64_t i = 0; i < entries; i++)
        vd_put_be64(raw + 8 * i, table[i]);
    uint8_t hdr[12];
    vd_put_be64(hdr, p << s->cluster_bits);
    vd_put_be32(hdr + 8, (uint32_t)tab);
    ok = ok &&
         vd_host_pwrite(s->fd, s->name, raw, tab * s->cluster_size, p << s->cluster_bits, error) &&
         vd_host_fdatasync(s->fd, s->name, error) &&
         vd_host_pwrite(s->fd, s->name, hdr, sizeof hdr, 48, error) &&
         vd_host_fdatasync(s->fd, s->name, error);
    if (!ok) {
        for (uint64_t c = first_new; c < claimed; c++)
            qcow2_meta_release(s, c << s->cluster_bits);
        if (table_claimed)
            qcow2_meta_release(s, p << s->cluster_bits);
        g_free(table);
        return false;
    }
    uint64_t old_off = s->refcount_table_offset, old_len = rc->table_entries * 8;
    qcow2_meta_release(s, old_off);
    g_free(rc->table);
    rc->table = table;
    rc->table_entries = entries;
    rc->table_dirty_lo = UINT64_MAX;
    rc->table_dirty_hi = 0;
    s->refcount_table_offset = p << s->cluster_bits;
    s->refcount_table_clusters = (uint32_t)tab;
    rc->end = MAX(rc->end, b);
    qcow2_free_later(s, old_off, old_len);
    return true;
}

/* Scan existing blocks from the hint for free clusters below rc->end. */
static bool alloc_scan(Qcow2State *s, uint64_t n, uint64_t *first, uint64_t *got, GError **error)
{
    Qcow2Refcounts *rc = s->rc;
    uint64_t E = rc->block_entries;
    uint64_t c = MAX(rc->free_hint, 1);
    *got = 0;
    while (c < rc->end) {
        uint64_t ti = c / E, off;
        if (!block_offset(s, ti, &off, error))
            return false;
        if (off == 0) {
            c = (ti + 1) * E;
            continue;
        }
        VdTable *t = get_block(s, off, error);
        if (t == NULL)
            return false;
        uint64_t lim = MIN((ti + 1) * E, rc->end);
        while (c < lim && rc_get(s, t->data, c % E) != 0)
            c++;
        if (c < lim) {
            uint64_t k = 0;
            while (c + k < lim && k < n && rc_get(s, t->data, (c + k) % E) == 0)
                k++;
            rc_update(s, t, c % E, k, 1);
            vd_table_cache_put(rc->blocks, t);
            rc->free_hint = c + k;
            *first = c;
            *got = k;
            return true;
        }
        vd_table_cache_put(rc->blocks, t);
    }
    rc->free_hint = rc->end;
    return true;
}

/* Fresh clusters hold no metadata and no data a trusted entry names:
 * otherwise the refcounts lie, and writing them would lose something. */
static bool check_free(Qcow2State *s, uint64_t first, uint64_t n, GError **error)
{
    uint64_t c;
    if (!qcow2_meta_check_free(s, first << s->cluster_bits, n << s->cluster_bits, error))
        return false;
    if (!qcow2_trust_is_claimed(s, first, n, &c))
        return true;
    return qcow2_corrupt(s, error,
                         "%s: refcounts say cluster 0x%" G_GINT64_MODIFIER
                         "x is free but an L2 entry uses it",
                         s->name, c << s->cluster_bits);
}

bool qcow2_alloc_clusters(Qcow2State *s, uint64_t n, uint64_t *offset, uint64_t *got,
                          GError **error)
{
    uint64_t first;
    if (!alloc_scan(s, n, &first, got, error))
        return false;
    if (*got == 0) {
        if (!alloc_append(s, n, &first, error))
            return false;
        *got = n;
    }
    *offset = first << s->cluster_bits;
    return check_free(s, first, *got, error);
}

bool qcow2_alloc_contiguous(Qcow2State *s, uint64_t n, uint64_t *offset, GError **error)
{
    uint64_t first;
    if (!alloc_append(s, n, &first, error))
        return false;
    *offset = first << s->cluster_bits;
    return check_free(s, first, n, error);
}

void qcow2_free_later(Qcow2State *s, uint64_t start, uint64_t len)
{
    if (len == 0)
        return;
    FreeRange r = {start, len};
    g_array_append_val(s->rc->pending, r);
    s->rc->pending_bytes += len;
}

bool qcow2_refcount_has_pending(const Qcow2State *s)
{
    return s->rc != NULL && s->rc->pending->len > 0;
}

uint64_t qcow2_refcount_pending_bytes(const Qcow2State *s)
{
    return s->rc != NULL ? s->rc->pending_bytes : 0;
}

bool qcow2_refcount_apply_frees(Qcow2State *s, GError **error)
{
    Qcow2Refcounts *rc = s->rc;
    g_autoptr(GArray) todo = g_steal_pointer(&rc->pending);
    rc->pending = g_array_new(FALSE, FALSE, sizeof(FreeRange));
    rc->pending_bytes = 0;
    uint64_t n_zero = 0, first_zero = 0;
    for (guint i = 0; i < todo->len; i++) {
        const FreeRange *r = &g_array_index(todo, FreeRange, i);
        uint64_t c0 = r->start >> s->cluster_bits;
        uint64_t c1 = (r->start + r->len + s->cluster_size - 1) >> s->cluster_bits;
        for (uint64_t c = c0; c < c1; c++) {
            uint64_t v;
            if (!qcow2_refcount_get(s, c, &v, error))
                return false;
            if (v == 0) {
                if (n_zero++ == 0)
                    first_zero = c;
                continue;
            }
            VdMetaRange hit;
            if (v == 1 && qcow2_meta_find(s, c << s->cluster_bits, s->cluster_size, &hit)) {
                /* Only a data reference that pointed at metadata gets here:
                 * freeing would let the next allocation overwrite it. */
                vd_image_set_corrupt(s->img,
                                     "%s: a data cluster reference pointed at the %s at "
                                     "0x%" G_GINT64_MODIFIER "x; it is not freed",
                                     s->name, hit.what, hit.start);
                continue;
            }
            uint64_t user;
            if (v == 1 && qcow2_trust_is_claimed(s, c, 1, &user)) {
                /* A hostile reference (a compressed range reaching into
                 * it, say) would free a cluster that holds live data. */
                vd_image_set_corrupt(s->img,
                                     "%s: cluster 0x%" G_GINT64_MODIFIER
                                     "x holds live data but its last reference was freed; it is "
                                     "kept",
                                     s->name, c << s->cluster_bits);
                continue;
            }
            if (!qcow2_refcount_set(s, c, v - 1, error))
                return false;
            if (v == 1) {
                rc->free_hint = MIN(rc->free_hint, c);
                /* A freed L2 table must not be found again by its offset. */
                vd_table_cache_invalidate(s->l2_cache, c << s->cluster_bits);
                g_autoptr(GError) perr = NULL;
                if (!vd_host_punch_hole(s->fd, s->name, c << s->cluster_bits, s->cluster_size,
                                        &perr))
                    g_debug("%s", perr->message);
            }
        }
    }
    /* Once per write-back, not per cluster: a hostile table can name many. */
    if (n_zero > 0)
        g_warning("%s: freed %" G_GUINT64_FORMAT " references to clusters whose refcount was "
                  "already 0 (the first: cluster %" G_GUINT64_FORMAT ")",
                  s->name, n_zero, first_zero);
    return true;
}
