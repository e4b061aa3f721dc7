/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2: which COPIED flags the write side may believe. COPIED promises
 * that a data cluster has a refcount of exactly 1 and that nothing else
 * points at it; only then may it be written in place. A corrupt or
 * hostile image can break the promise:
 *
 *  - refcount 0: the allocator would hand the cluster out again, and the
 *    data written in place would be overwritten by another guest cluster;
 *  - refcount 2 or more: a snapshot shares the cluster;
 *  - two entries naming one cluster: writing one guest cluster changes
 *    the other.
 *
 * So before the first in-place write through an L2 table, each COPIED
 * entry is checked, once per session: a refcount of 2 or more drops the
 * flag (in the table, as qemu-img check -r would; the cluster is then
 * copied on write), a refcount of 0 or a cluster another trusted entry
 * already names marks the image corrupt. The clusters that trusted
 * entries name are kept in a set ("claims"), which the allocator also
 * consults: a cluster the refcounts call free but a trusted entry uses is
 * corruption, not free space.
 *
 * What this cannot see: an entry in a table that is never written through
 * naming the same cluster as a trusted one (finding it would mean reading
 * every L2 table at open). Data file clusters have no refcounts and are
 * not checked.
 *
 * Everything here runs under the image's write lock. The fast path
 * (qcow2_pwrite_fast) asks qcow2_trust_known under that lock's read side,
 * which excludes every change made here. Trust is by table offset and
 * outlives the table's stay in the cache: only the write side changes a
 * trusted table, and it keeps the claims up to date as it does.
 */
#include "config.h"

#include "formats/qcow2.h"
#include "src/vd-error.h"

#define CLAIM_BITS 4096 /* host clusters per claims chunk */

struct Qcow2Trust {
    GHashTable *tables; /* offsets of the L2 tables trusted this session */
    GHashTable *claims; /* host cluster / CLAIM_BITS -> uint64_t[CLAIM_BITS / 64] */
};

Qcow2Trust *qcow2_trust_new(void)
{
    Qcow2Trust *tr = g_new0(Qcow2Trust, 1);
    tr->tables = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    tr->claims = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
    return tr;
}

void qcow2_trust_free(Qcow2Trust *tr)
{
    if (tr == NULL)
        return;
    g_hash_table_unref(tr->tables);
    g_hash_table_unref(tr->claims);
    g_free(tr);
}

/* The word holding cluster c's claim bit, or NULL (create: make it). */
static uint64_t *claim_word(Qcow2Trust *tr, uint64_t c, bool create)
{
    uint64_t key = c / CLAIM_BITS;
    uint64_t *chunk = g_hash_table_lookup(tr->claims, &key);
    if (chunk == NULL && create) {
        chunk = g_new0(uint64_t, CLAIM_BITS / 64);
        g_hash_table_insert(tr->claims, g_memdup2(&key, sizeof key), chunk);
    }
    return chunk != NULL ? &chunk[(c % CLAIM_BITS) / 64] : NULL;
}

static bool claimed(Qcow2Trust *tr, uint64_t c)
{
    uint64_t *w = claim_word(tr, c, false);
    return w != NULL && (*w & (1ull << (c % 64)));
}

/* The host cluster an entry claims, or UINT64_MAX when it claims none. */
static uint64_t claim_of(const Qcow2State *s, uint64_t e)
{
    uint64_t host = e & QCOW2_OFFSET_MASK;
    if (!(e & QCOW2_OFLAG_COPIED) || (e & QCOW2_OFLAG_COMPRESSED) || host == 0 ||
        (s->incompat & QCOW2_INCOMPAT_DATA_FILE))
        return UINT64_MAX;
    return host >> s->cluster_bits;
}

bool qcow2_trust_is_claimed(Qcow2State *s, uint64_t first, uint64_t n, uint64_t *which)
{
    if (s->trust == NULL)
        return false;
    for (uint64_t c = first; c < first + n; c++) {
        if (claimed(s->trust, c)) {
            *which = c;
            return true;
        }
    }
    return false;
}

void qcow2_trust_update(Qcow2State *s, uint64_t old_entry, uint64_t new_entry)
{
    if (s->trust == NULL)
        return;
    uint64_t o = claim_of(s, old_entry), n = claim_of(s, new_entry);
    if (o != UINT64_MAX) {
        uint64_t *w = claim_word(s->trust, o, false);
        if (w != NULL)
            *w &= ~(1ull << (o % 64));
    }
    if (n != UINT64_MAX)
        *claim_word(s->trust, n, true) |= 1ull << (n % 64);
}

bool qcow2_trust_known(const Qcow2State *s, uint64_t off)
{
    return s->trust != NULL && g_hash_table_contains(s->trust->tables, &off);
}

bool qcow2_trust_table(Qcow2State *s, VdTable *t, GError **error)
{
    Qcow2Trust *tr = s->trust;
    if (qcow2_trust_known(s, t->key))
        return true;
    Qcow2RcCursor cur = {0};
    bool ok = true;
    for (uint64_t i = 0; ok && i < (1ull << s->l2_bits); i++) {
        uint64_t e = qcow2_l2_word(s, t->data, i), c = claim_of(s, e), v;
        if (c == UINT64_MAX)
            continue;
        ok = qcow2_refcount_read(s, &cur, c, &v, error);
        if (!ok)
            break;
        if (v >= 2) {
            qcow2_l2_update(s, t, i, e & ~QCOW2_OFLAG_COPIED, qcow2_l2_bitmap(s, t->data, i));
            continue;
        }
        const char *why = v == 0 ? "whose refcount is 0" : "that another L2 entry also names";
        if (v == 0 || claimed(tr, c)) {
            ok = qcow2_corrupt(s, error,
                               "%s: the L2 table at 0x%" G_GINT64_MODIFIER
                               "x (entry %" G_GUINT64_FORMAT ") names cluster 0x%" G_GINT64_MODIFIER
                               "x %s",
                               s->name, t->key, i, c << s->cluster_bits, why);
            break;
        }
        *claim_word(tr, c, true) |= 1ull << (c % 64);
    }
    qcow2_refcount_cursor_end(s, &cur);
    if (!ok)
        return false;
    g_hash_table_add(tr->tables, g_memdup2(&t->key, sizeof t->key));
    return true;
}

void qcow2_trust_new_table(Qcow2State *s, VdTable *t)
{
    g_hash_table_add(s->trust->tables, g_memdup2(&t->key, sizeof t->key));
}
