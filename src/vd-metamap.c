/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <string.h>

#include "vd-error.h"
#include "vd-metamap.h"

typedef struct {
    uint64_t start;
    uint64_t end;
    const char *what;
    guint refs;
} MetaEntry;

struct VdMetaMap {
    char *name;      /* the image's, for messages */
    GRWLock lock;    /* readers: find; writers: add, remove, seal */
    GArray *entries; /* MetaEntry, sorted by start and disjoint once sealed */
    bool sealed;
};

VdMetaMap *vd_meta_map_new(const char *image_name)
{
    VdMetaMap *m = g_new0(VdMetaMap, 1);
    m->name = g_strdup(image_name);
    g_rw_lock_init(&m->lock);
    m->entries = g_array_new(FALSE, FALSE, sizeof(MetaEntry));
    return m;
}

void vd_meta_map_free(VdMetaMap *m)
{
    if (m == NULL)
        return;
    g_array_unref(m->entries);
    g_rw_lock_clear(&m->lock);
    g_free(m->name);
    g_free(m);
}

static void set_overlap_error(VdMetaMap *m, const MetaEntry *a, const MetaEntry *b, GError **error)
{
    vd_set_error(error, EIO,
                 "%s: %s at 0x%" G_GINT64_MODIFIER "x overlaps %s at 0x%" G_GINT64_MODIFIER "x",
                 m->name, a->what, a->start, b->what, b->start);
}

/* Index of the first entry whose start is >= start (entries sorted). */
static guint lower_bound(GArray *a, uint64_t start)
{
    guint lo = 0, hi = a->len;
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        if (g_array_index(a, MetaEntry, mid).start < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool vd_meta_map_add(VdMetaMap *m, uint64_t start, uint64_t len, const char *what, GError **error)
{
    if (len == 0)
        return true;
    MetaEntry e = {.start = start, .what = what, .refs = 1};
    if (__builtin_add_overflow(start, len, &e.end)) {
        vd_set_error(error, EIO, "%s: %s at 0x%" G_GINT64_MODIFIER "x lies past the largest offset",
                     m->name, what, start);
        return false;
    }
    bool ok = true;
    g_rw_lock_writer_lock(&m->lock);
    if (!m->sealed) {
        g_array_append_val(m->entries, e);
        goto out;
    }
    guint i = lower_bound(m->entries, start);
    if (i < m->entries->len) {
        MetaEntry *next = &g_array_index(m->entries, MetaEntry, i);
        if (next->start == e.start && next->end == e.end) {
            next->refs++;
            goto out;
        }
        if (next->start < e.end) {
            set_overlap_error(m, &e, next, error);
            ok = false;
            goto out;
        }
    }
    if (i > 0) {
        MetaEntry *prev = &g_array_index(m->entries, MetaEntry, i - 1);
        if (prev->end > e.start) {
            set_overlap_error(m, &e, prev, error);
            ok = false;
            goto out;
        }
    }
    g_array_insert_val(m->entries, i, e);
out:
    g_rw_lock_writer_unlock(&m->lock);
    return ok;
}

static guint find_start(VdMetaMap *m, uint64_t start)
{
    if (m->sealed) {
        guint i = lower_bound(m->entries, start);
        return i < m->entries->len && g_array_index(m->entries, MetaEntry, i).start == start
                   ? i
                   : G_MAXUINT;
    }
    for (guint i = 0; i < m->entries->len; i++) {
        if (g_array_index(m->entries, MetaEntry, i).start == start)
            return i;
    }
    return G_MAXUINT;
}

bool vd_meta_map_remove(VdMetaMap *m, uint64_t start)
{
    g_rw_lock_writer_lock(&m->lock);
    guint i = find_start(m, start);
    if (i != G_MAXUINT) {
        MetaEntry *e = &g_array_index(m->entries, MetaEntry, i);
        if (--e->refs == 0)
            g_array_remove_index(m->entries, i);
    }
    g_rw_lock_writer_unlock(&m->lock);
    return i != G_MAXUINT;
}

static gint entry_cmp(gconstpointer a, gconstpointer b)
{
    const MetaEntry *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

bool vd_meta_map_seal(VdMetaMap *m, GError **error)
{
    bool ok = true;
    g_rw_lock_writer_lock(&m->lock);
    if (m->sealed)
        goto out;
    g_array_sort(m->entries, entry_cmp);
    /* Merge identical ranges, then every neighbour must start after the
     * previous one ends. */
    guint out = 0;
    for (guint i = 0; i < m->entries->len; i++) {
        MetaEntry *e = &g_array_index(m->entries, MetaEntry, i);
        if (out > 0) {
            MetaEntry *prev = &g_array_index(m->entries, MetaEntry, out - 1);
            if (prev->start == e->start && prev->end == e->end) {
                prev->refs += e->refs;
                continue;
            }
            if (prev->end > e->start && ok) {
                set_overlap_error(m, e, prev, error);
                ok = false;
            }
        }
        g_array_index(m->entries, MetaEntry, out++) = *e;
    }
    g_array_set_size(m->entries, out);
    /* Sealed even when overlapping, so that lookups stay correct: find()
     * below does not rely on disjointness when the map is not. */
    m->sealed = ok;
out:
    g_rw_lock_writer_unlock(&m->lock);
    return ok;
}

bool vd_meta_map_find(VdMetaMap *m, uint64_t start, uint64_t len, VdMetaRange *hit)
{
    uint64_t end;
    if (len == 0)
        return false;
    if (__builtin_add_overflow(start, len, &end))
        end = UINT64_MAX;
    bool found = false;
    const MetaEntry *e = NULL;
    g_rw_lock_reader_lock(&m->lock);
    if (m->sealed) {
        /* Sorted and disjoint: the ranges touching [start, end) are the
         * run that ends with the last one starting before end; report the
         * first of them (the structure the write would reach first). */
        for (guint i = lower_bound(m->entries, end);
             i > 0 && g_array_index(m->entries, MetaEntry, i - 1).end > start; i--) {
            e = &g_array_index(m->entries, MetaEntry, i - 1);
            found = true;
        }
    } else {
        for (guint i = 0; i < m->entries->len && !found; i++) {
            e = &g_array_index(m->entries, MetaEntry, i);
            found = e->start < end && e->end > start;
        }
    }
    if (found && hit != NULL)
        *hit = (VdMetaRange){.start = e->start, .end = e->end, .what = e->what};
    g_rw_lock_reader_unlock(&m->lock);
    return found;
}

guint vd_meta_map_count(VdMetaMap *m)
{
    g_rw_lock_reader_lock(&m->lock);
    guint n = m->entries->len;
    g_rw_lock_reader_unlock(&m->lock);
    return n;
}
