/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The QED consistency walk (docs/interop/qed_spec, "Consistency
 * checking"): every table from the L1 down is read, and every cluster the
 * header, a table or a data reference uses is claimed once (vd_claims).
 *
 * With repair, run when a read-write open finds NEED_CHECK set:
 * references that are misaligned, point into the header or past the
 * usable end of the file are dropped (set to unallocated, as QEMU's
 * repair does: after a crash these are allocations whose data never
 * reached the file). When nothing but leaks remains, the fixes are synced
 * and the flag is cleared. Clusters referenced twice cannot be repaired:
 * the open fails.
 *
 * Without repair, run at every other read-write open: the flag says the
 * image is consistent, so its tables are not rewritten, but a reference
 * past the end of the file would alias the clusters the writer allocates
 * there, and one cluster used twice would let a write to one guest range
 * (or a table update) change another. Either makes the image read-only,
 * the reason recorded; reads go on as the tables say.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "formats/qed.h"
#include "src/vd-claims.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

typedef struct {
    VdImage *img;
    QedState *s;
    bool repair;
    VdClaims *claims;
    uint64_t dropped, duplicates;
    /* Without repair: the first invalid reference, and the first cluster
     * claimed twice with its second user. */
    char *problem;
    uint64_t dup_host;
    char *dup_user;
    /* The walk that names the first user of find_host (0: not looking). */
    uint64_t find_host;
    char *found;
    /* vdisk check: what qemu-img check counts; last: the previous data
     * cluster of the L2 table being walked, for fragmentation. */
    VdCheckReport *report;
    uint64_t last;
} Check;

/* Who references a cluster: the L2 table of L1 entry l1i, or guest
 * cluster ci's data. */
static char *describe_use(bool l2, uint64_t l1i, uint64_t ci)
{
    return l2 ? g_strdup_printf("guest cluster %" PRIu64, ci)
              : g_strdup_printf("the L2 table of L1 entry %" PRIu64, l1i);
}

/* Read, check and (when changed) rewrite a table piece by piece. l2
 * selects the rules for data cluster entries, else for L2 table entries;
 * l1i is the L1 entry of an L2 table. */
static bool check_table(Check *c, uint64_t table, bool l2, uint64_t l1i, GError **error);

static bool check_entry(Check *c, uint64_t *e, bool l2, uint64_t l1i, uint64_t ci, GError **error)
{
    QedState *s = c->s;
    if (*e == 0 || (l2 && *e == QED_ZERO_CLUSTER))
        return true;
    uint64_t n = l2 ? 1 : s->table_size;
    if (c->report != NULL && l2) {
        c->report->allocated_clusters++;
        if (c->last != 0 && c->last + s->cluster_size != *e)
            c->report->fragmented_clusters++;
        c->last = *e;
    }
    if (l2 ? !qed_cluster_valid(s, *e) : !qed_table_valid(s, *e)) {
        if (c->find_host != 0)
            return true; /* never claimed */
        if (c->report != NULL) {
            c->report->corruptions++;
            return true;
        }
        if (!c->repair) {
            g_autofree char *who = describe_use(l2, l1i, ci);
            if (c->problem == NULL)
                c->problem = g_strdup_printf("%s: %s at 0x%" PRIx64 " is misaligned or lies "
                                             "beyond the end of the file",
                                             c->img->name, who, *e);
            return true;
        }
        *e = 0;
        c->dropped++;
        return true;
    }
    uint64_t first = *e >> s->cluster_bits;
    if (c->find_host != 0) {
        if (c->find_host >> s->cluster_bits >= first &&
            (c->find_host >> s->cluster_bits) < first + n)
            c->found = describe_use(l2, l1i, ci);
        return c->found != NULL || l2 || check_table(c, *e, true, l1i, error);
    }
    uint64_t taken = first;
    while (taken < first + n && !vd_claims_is_taken(c->claims, taken))
        taken++;
    vd_claims_take(c->claims, first, n);
    if (taken < first + n && c->report != NULL) {
        c->report->corruptions++;
        return true;
    }
    if (taken < first + n) {
        if (c->duplicates++ == 0 && !c->repair) {
            c->dup_host = taken << s->cluster_bits;
            c->dup_user = describe_use(l2, l1i, ci);
        }
        return true; /* do not descend into a table seen twice */
    }
    return l2 || check_table(c, *e, true, l1i, error);
}

static bool check_table(Check *c, uint64_t table, bool l2, uint64_t l1i, GError **error)
{
    QedState *s = c->s;
    size_t per = (size_t)MIN(s->table_entries, (uint64_t)QED_TCACHE_CHUNK_BYTES / 8);
    g_autofree uint8_t *raw = g_malloc(per * 8);
    g_autofree uint64_t *e = g_new(uint64_t, per);
    c->last = 0; /* contiguity within one table, as qemu-img counts it */
    for (uint64_t first = 0; first < s->table_entries; first += per) {
        uint64_t host = table + first * 8;
        if (!vd_host_pread(c->img->fd, c->img->name, raw, per * 8, host, false, error))
            return false;
        qed_tcache_decode(&s->l2, raw, e, per);
        uint64_t before = c->dropped;
        for (size_t i = 0; i < per; i++) {
            uint64_t idx = first + i;
            uint64_t ci = (l1i << s->table_bits) + idx;
            if (!check_entry(c, &e[i], l2, l2 ? l1i : idx, ci, error))
                return false;
            if (c->found != NULL)
                return true;
        }
        if (c->dropped != before) {
            qed_tcache_encode(&s->l2, e, raw, per);
            if (!vd_host_pwrite(c->img->fd, c->img->name, raw, per * 8, host, error))
                return false;
        }
    }
    return true;
}

/* The first user of the cluster at host, in walk order: the header, the
 * L1 table, or what check_entry would have claimed first. */
static char *first_user(Check *c, uint64_t host, GError **error)
{
    QedState *s = c->s;
    if (host < s->header_end)
        return g_strdup("the header");
    if (host >= s->l1_offset && host - s->l1_offset < s->table_bytes)
        return g_strdup("the L1 table");
    Check f = {.img = c->img, .s = s, .find_host = host};
    if (!check_table(&f, s->l1_offset, false, 0, error))
        return NULL;
    return f.found != NULL ? f.found : g_strdup("another reference");
}

bool qed_check(VdImage *img, bool repair, GError **error)
{
    QedState *s = img->opaque;
    Check c = {.img = img, .s = s, .repair = repair};
    bool ok = false;
    g_autoptr(GError) why = NULL;
    c.claims = vd_claims_new(img, s->file_end >> s->cluster_bits, &why);
    if (c.claims == NULL && repair) {
        g_propagate_error(error, g_steal_pointer(&why));
        return false;
    }
    if (c.claims == NULL) {
        /* Unchecked, the image is not safe to write; reads need no check. */
        c.problem = g_strdup(why->message);
        goto report;
    }
    vd_claims_take(c.claims, 0, s->header_size);
    vd_claims_take(c.claims, s->l1_offset >> s->cluster_bits, s->table_size);
    if (!check_table(&c, s->l1_offset, false, 0, error))
        goto out;
    if (!repair) {
        if (c.problem == NULL && c.dup_user != NULL) {
            /* Name both users: a second walk finds the first one. */
            g_autofree char *first = first_user(&c, c.dup_host, error);
            if (first == NULL)
                goto out;
            c.problem = g_strdup_printf("%s: %s and %s both use the cluster at 0x%" PRIx64,
                                        img->name, first, c.dup_user, c.dup_host);
        }
    report:
        if (c.problem != NULL) {
            /* Reads keep working; a write could change other data. */
            g_autoptr(GError) err = NULL;
            vd_set_error(&err, EIO, "%s; serving the image read-only", c.problem);
            img->read_only = true;
            vd_image_record_error(img, err);
        }
        ok = true;
        goto out;
    }
    if (c.duplicates > 0) {
        vd_set_error(error, EIO,
                     "%s: needs a consistency check, and %" PRIu64
                     " cluster(s) are referenced more than once: cannot repair",
                     img->name, c.duplicates);
        goto out;
    }
    uint64_t leaks = vd_claims_count_free(c.claims, s->header_size, vd_claims_units(c.claims));
    /* The fixes reach the disk before the flag goes. */
    if (!vd_host_fdatasync(img->fd, img->name, error) || !qed_set_need_check(img, false, error) ||
        !vd_host_fdatasync(img->fd, img->name, error))
        goto out;
    s->check_report = g_strdup_printf("repaired at open: %" PRIu64
                                      " invalid references dropped, %" PRIu64 " clusters leaked",
                                      c.dropped, leaks);
    ok = true;
out:
    vd_claims_free(c.claims);
    g_free(c.problem);
    g_free(c.dup_user);
    return ok;
}

bool qed_check_report(VdImage *img, VdCheckReport *report, GError **error)
{
    QedState *s = img->opaque;
    Check c = {.img = img, .s = s, .report = report};
    c.claims = vd_claims_new(img, s->file_end >> s->cluster_bits, error);
    if (c.claims == NULL)
        return false;
    report->total_clusters = (img->size + s->cluster_size - 1) >> s->cluster_bits;
    vd_claims_take(c.claims, 0, s->header_size);
    vd_claims_take(c.claims, s->l1_offset >> s->cluster_bits, s->table_size);
    bool ok = check_table(&c, s->l1_offset, false, 0, error);
    if (ok)
        report->leaks = vd_claims_count_free(c.claims, s->header_size, vd_claims_units(c.claims));
    vd_claims_free(c.claims);
    g_free(c.problem);
    g_free(c.dup_user);
    return ok;
}
