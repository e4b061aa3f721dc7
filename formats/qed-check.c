/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The QED consistency check (docs/interop/qed_spec, "Consistency
 * checking"), run when a read-write open finds NEED_CHECK set: every
 * table from the L1 down is read; references that are misaligned, point
 * into the header or past the usable end of the file are dropped (set to
 * unallocated, as QEMU's repair does: after a crash these are allocations
 * whose data never reached the file); every cluster may be referenced
 * once. When nothing but leaks remains, the fixes are synced and the flag
 * is cleared. Clusters referenced twice cannot be repaired: the open fails.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "formats/qed.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

typedef struct {
    VdImage *img;
    QedState *s;
    uint64_t nclusters;
    uint64_t *used; /* bitmap of referenced clusters */
    uint64_t dropped, duplicates;
} Check;

/* Mark n clusters from off referenced; false if one already was. */
static bool mark_used(Check *c, uint64_t off, uint64_t n)
{
    bool fresh = true;
    uint64_t first = off >> c->s->cluster_bits;
    for (uint64_t k = first; k < first + n && k < c->nclusters; k++) {
        uint64_t bit = 1ull << (k % 64);
        if (c->used[k / 64] & bit)
            fresh = false;
        c->used[k / 64] |= bit;
    }
    return fresh;
}

/* Read, check and (when changed) rewrite a table piece by piece. l2
 * selects the rules for data cluster entries, else for L2 table entries. */
static bool check_table(Check *c, uint64_t table, bool l2, GError **error);

static bool check_entry(Check *c, uint64_t *e, bool l2, GError **error)
{
    QedState *s = c->s;
    if (*e == 0 || (l2 && *e == QED_ZERO_CLUSTER))
        return true;
    if (l2 ? !qed_cluster_valid(s, *e) : !qed_table_valid(s, *e)) {
        *e = 0;
        c->dropped++;
        return true;
    }
    if (!mark_used(c, *e, l2 ? 1 : s->table_size)) {
        c->duplicates++;
        return true; /* do not descend into a table seen twice */
    }
    return l2 || check_table(c, *e, true, error);
}

static bool check_table(Check *c, uint64_t table, bool l2, GError **error)
{
    QedState *s = c->s;
    size_t per = (size_t)MIN(s->table_entries, (uint64_t)QED_TCACHE_CHUNK_BYTES / 8);
    g_autofree uint8_t *raw = g_malloc(per * 8);
    g_autofree uint64_t *e = g_new(uint64_t, per);
    for (uint64_t first = 0; first < s->table_entries; first += per) {
        uint64_t host = table + first * 8;
        if (!vd_host_pread(c->img->fd, c->img->name, raw, per * 8, host, false, error))
            return false;
        qed_tcache_decode(&s->l2, raw, e, per);
        uint64_t before = c->dropped;
        for (size_t i = 0; i < per; i++) {
            if (!check_entry(c, &e[i], l2, error))
                return false;
        }
        if (c->dropped != before) {
            qed_tcache_encode(&s->l2, e, raw, per);
            if (!vd_host_pwrite(c->img->fd, c->img->name, raw, per * 8, host, error))
                return false;
        }
    }
    return true;
}

bool qed_check_repair(VdImage *img, GError **error)
{
    QedState *s = img->opaque;
    Check c = {.img = img, .s = s, .nclusters = s->file_end >> s->cluster_bits};
    c.used = g_new0(uint64_t, c.nclusters / 64 + 1);
    bool ok = false;
    mark_used(&c, s->l1_offset, s->table_size);
    if (!check_table(&c, s->l1_offset, false, error))
        goto out;
    if (c.duplicates > 0) {
        vd_set_error(error, EIO,
                     "%s: needs a consistency check, and %" PRIu64
                     " cluster(s) are referenced more than once: cannot repair",
                     img->name, c.duplicates);
        goto out;
    }
    uint64_t leaks = 0;
    for (uint64_t k = s->header_size; k < c.nclusters; k++)
        leaks += !(c.used[k / 64] & (1ull << (k % 64)));
    /* The fixes reach the disk before the flag goes. */
    if (!vd_host_fdatasync(img->fd, img->name, error) || !qed_set_need_check(img, false, error) ||
        !vd_host_fdatasync(img->fd, img->name, error))
        goto out;
    s->check_report = g_strdup_printf("repaired at open: %" PRIu64
                                      " invalid references dropped, %" PRIu64 " clusters leaked",
                                      c.dropped, leaks);
    ok = true;
out:
    g_free(c.used);
    return ok;
}
