/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2: count every reference from the metadata (header, L1 tables, L2
 * tables, data and compressed clusters, snapshot table, refcount
 * structures, encryption header), then either
 * - repair a dirty image (lazy refcounts, or a crash of a writer that used
 *   them), as `qemu-img check -r all` would do it: rewrite the refcount
 *   blocks to match, fix the COPIED flags of the active tables, clear the
 *   dirty bit; or
 * - check it read-only (vdisk check): compare the counts with the stored
 *   refcounts and the COPIED flags, reporting corruptions and leaks as
 *   `qemu-img check` does.
 */
#include "config.h"

#include <stdarg.h>
#include <string.h>

#include "formats/qcow2.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

#define REPAIR_MAX_CLUSTERS (64ull << 20)

typedef struct {
    Qcow2State *s;
    uint32_t *counts;      /* references per host cluster */
    uint64_t n;            /* clusters counted */
    VdCheckReport *report; /* checking: faults are reported, the count goes on */
} Counter;

G_GNUC_PRINTF(3, 4)
static void report_line(VdCheckReport *r, uint64_t *counter, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_ptr_array_add(r->lines, g_strdup_vprintf(fmt, ap));
    va_end(ap);
    (*counter)++;
}

static bool count(Counter *c, uint64_t start, uint64_t len, const char *what, GError **error)
{
    Qcow2State *s = c->s;
    if (len == 0)
        return true;
    uint64_t c0 = start >> s->cluster_bits, c1 = (start + len - 1) >> s->cluster_bits;
    if (c->report != NULL && (c1 >= c->n || start + len < start)) {
        report_line(c->report, &c->report->corruptions,
                    "ERROR: counting reference for region exceeding the end of the file by one "
                    "cluster or more: offset 0x%" G_GINT64_MODIFIER "x size 0x%" G_GINT64_MODIFIER
                    "x",
                    start, len);
        return true;
    }
    if (c1 >= c->n || start + len < start) {
        vd_set_error(error, EIO,
                     "%s: %s at 0x%" G_GINT64_MODIFIER "x lies beyond the end of the file; "
                     "repair it with qemu-img check -r all",
                     s->name, what, start);
        return false;
    }
    for (uint64_t i = c0; i <= c1; i++) {
        if (c->counts[i] == UINT32_MAX) {
            vd_set_error(error, EIO, "%s: cluster %" G_GUINT64_FORMAT " has too many references",
                         s->name, i);
            return false;
        }
        c->counts[i]++;
    }
    return true;
}

/* Count the tables and clusters reachable from one L1 table. */
static bool count_l1(Counter *c, const uint64_t *l1, uint64_t entries, GError **error)
{
    Qcow2State *s = c->s;
    g_autofree uint8_t *t = g_malloc(s->cluster_size);
    uint64_t n = 1ull << s->l2_bits;
    for (uint64_t i = 0; i < entries; i++) {
        uint64_t l2 = l1[i] & QCOW2_OFFSET_MASK;
        if (l2 == 0)
            continue;
        if (c->report != NULL && ((l2 & (s->cluster_size - 1)) || l2 >= c->n << s->cluster_bits)) {
            report_line(c->report, &c->report->corruptions,
                        "ERROR L2 table at offset 0x%" G_GINT64_MODIFIER
                        "x is unaligned or beyond the end of the image",
                        l2);
            continue;
        }
        if ((l2 & (s->cluster_size - 1)) || !count(c, l2, s->cluster_size, "L2 table", error) ||
            !vd_host_pread(s->fd, s->name, t, s->cluster_size, l2, false, error)) {
            if (error && !*error)
                vd_set_error(error, EIO, "%s: L2 table offset is unaligned", s->name);
            return false;
        }
        for (uint64_t j = 0; j < n; j++) {
            uint64_t e = qcow2_l2_word(s, t, j);
            if (e & QCOW2_OFLAG_COMPRESSED) {
                uint64_t start, len;
                qcow2_compressed_range(s, e, &start, &len);
                if (!count(c, start, len, "compressed cluster", error))
                    return false;
            } else if ((e & QCOW2_OFFSET_MASK) && !(s->incompat & QCOW2_INCOMPAT_DATA_FILE)) {
                if (!count(c, e & QCOW2_OFFSET_MASK, s->cluster_size, "data cluster", error))
                    return false;
            }
        }
    }
    return true;
}

static bool count_visit(void *opaque, uint64_t start, uint64_t len, const char *what,
                        GError **error)
{
    return count(opaque, start, len, what, error);
}

static bool count_all(Counter *c, GError **error)
{
    Qcow2State *s = c->s;
    if (!count(c, 0, s->cluster_size, "header", error) ||
        !count(c, s->l1_offset, (uint64_t)s->l1_entries * 8, "L1 table", error) ||
        !count_l1(c, s->l1, s->l1_entries, error) ||
        !count(c, s->snapshots_offset, s->snapshots_size, "snapshot table", error) ||
        !count(c, s->crypto_offset, s->crypto_length, "encryption header", error) ||
        !count(c, s->refcount_table_offset, (uint64_t)s->refcount_table_clusters << s->cluster_bits,
               "refcount table", error) ||
        !qcow2_bitmap_clusters(s, count_visit, c, error))
        return false;
    for (uint64_t r = 0; r < qcow2_refcount_table_entries(s); r++) {
        uint64_t b = qcow2_refcount_block_at(s, r);
        if (b != 0 && !count(c, b, s->cluster_size, "refcount block", error))
            return false;
    }
    for (guint i = 0; s->snapshots != NULL && i < s->snapshots->len; i++) {
        const Qcow2Snapshot *sn = s->snapshots->pdata[i];
        g_autofree uint64_t *l1 = NULL;
        if (!count(c, sn->l1_offset, (uint64_t)sn->l1_size * 8, "snapshot L1 table", error) ||
            !qcow2_load_l1(s, sn->l1_offset, sn->l1_size, c->n << s->cluster_bits, &l1, error) ||
            !count_l1(c, l1, sn->l1_size, error))
            return false;
    }
    return true;
}

/* Refcount blocks for regions that need one and lack it, placed past the end. */
static bool add_blocks(Counter *c, GError **error)
{
    Qcow2State *s = c->s;
    uint64_t E = qcow2_refcount_block_entries(s);
    uint64_t regions = (c->n + E - 1) / E;
    g_autoptr(GArray) need = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    for (uint64_t r = 0; r < regions; r++) {
        if (qcow2_refcount_block_at(s, r) != 0)
            continue;
        for (uint64_t i = r * E; i < MIN((r + 1) * E, c->n); i++) {
            if (c->counts[i] != 0) {
                g_array_append_val(need, r);
                break;
            }
        }
    }
    if (need->len == 0)
        return true;
    /* The new blocks go right after the file; they may need blocks themselves. */
    uint64_t p = c->n, nb = need->len;
    for (;;) {
        uint64_t extra = 0;
        for (uint64_t r = p / E; r <= (p + nb - 1) / E; r++) {
            bool listed = false;
            for (guint k = 0; k < need->len && !listed; k++)
                listed = g_array_index(need, uint64_t, k) == r;
            extra += !listed && qcow2_refcount_block_at(s, r) == 0;
        }
        if (need->len + extra == nb)
            break;
        nb = need->len + extra;
    }
    for (uint64_t r = p / E; r <= (p + nb - 1) / E; r++) {
        bool listed = false;
        for (guint k = 0; k < need->len && !listed; k++)
            listed = g_array_index(need, uint64_t, k) == r;
        if (!listed && qcow2_refcount_block_at(s, r) == 0)
            g_array_append_val(need, r);
    }
    uint64_t last = g_array_index(need, uint64_t, need->len - 1);
    for (guint k = 0; k < need->len; k++)
        last = MAX(last, g_array_index(need, uint64_t, k));
    if (last >= qcow2_refcount_table_entries(s)) {
        vd_set_error(error, ENOTSUP,
                     "%s: repairing this dirty image needs a larger refcount table; "
                     "run qemu-img check -r all on it",
                     s->name);
        return false;
    }
    c->counts = g_renew(uint32_t, c->counts, p + nb);
    for (guint k = 0; k < need->len; k++) {
        uint64_t cl = p + k;
        c->counts[cl] = 1;
        if (!qcow2_refcount_new_block(s, g_array_index(need, uint64_t, k), cl << s->cluster_bits,
                                      error))
            return false;
    }
    c->n = p + nb;
    return true;
}

/* Make every refcount equal the count (leaks past the end of the file included). */
static bool rewrite_refcounts(Counter *c, GError **error)
{
    Qcow2State *s = c->s;
    uint64_t E = qcow2_refcount_block_entries(s), max = qcow2_refcount_max(s);
    for (uint64_t r = 0; r < qcow2_refcount_table_entries(s); r++) {
        if (qcow2_refcount_block_at(s, r) == 0)
            continue;
        for (uint64_t i = r * E; i < (r + 1) * E; i++) {
            uint64_t have, want = i < c->n ? c->counts[i] : 0;
            if (!qcow2_refcount_get(s, i, &have, error))
                return false;
            if (have == want)
                continue;
            if (want > max) {
                vd_set_error(error, EIO,
                             "%s: cluster %" G_GUINT64_FORMAT
                             " needs a refcount above %" G_GUINT64_FORMAT,
                             s->name, i, max);
                return false;
            }
            if (!qcow2_refcount_set(s, i, want, error))
                return false;
        }
    }
    return true;
}

/* COPIED exactly where the refcount is 1, in the active L1 and its L2 tables. */
static bool fix_copied(Counter *c, GError **error)
{
    Qcow2State *s = c->s;
    bool data_file = (s->incompat & QCOW2_INCOMPAT_DATA_FILE) != 0;
    uint64_t n = 1ull << s->l2_bits;
    for (uint64_t i = 0; i < s->l1_entries; i++) {
        uint64_t l2 = s->l1[i] & QCOW2_OFFSET_MASK;
        if (l2 == 0)
            continue;
        bool copied = c->counts[l2 >> s->cluster_bits] == 1;
        uint64_t want = l2 | (copied ? QCOW2_OFLAG_COPIED : 0);
        if (s->l1[i] != want)
            qcow2_l1_set(s, i, want);
        VdTable *t = vd_table_cache_get(s->l2_cache, l2, error);
        if (t == NULL)
            return false;
        for (uint64_t j = 0; j < n; j++) {
            uint64_t e = qcow2_l2_word(s, t->data, j);
            if (e & QCOW2_OFLAG_COMPRESSED)
                continue;
            uint64_t host = e & QCOW2_OFFSET_MASK, ne = e;
            if (data_file)
                ne = host || (e & QCOW2_OFLAG_COPIED) ? e | QCOW2_OFLAG_COPIED : e;
            else if (host != 0)
                ne = c->counts[host >> s->cluster_bits] == 1 ? e | QCOW2_OFLAG_COPIED
                                                             : e & ~QCOW2_OFLAG_COPIED;
            else
                ne = e & ~QCOW2_OFLAG_COPIED;
            if (ne != e)
                qcow2_l2_update(s, t, j, ne, qcow2_l2_bitmap(s, t->data, j));
        }
        vd_table_cache_put(s->l2_cache, t);
    }
    return true;
}

bool qcow2_repair(Qcow2State *s, GError **error)
{
    uint64_t fsize = qcow2_file_size(s);
    Counter c = {.s = s, .n = qcow2_round_up(fsize, s->cluster_size) >> s->cluster_bits};
    if (c.n > REPAIR_MAX_CLUSTERS) {
        vd_set_error(error, ENOTSUP,
                     "%s: image is dirty and too large to repair here; "
                     "run qemu-img check -r all or mount read-only",
                     s->name);
        return false;
    }
    c.counts = g_new0(uint32_t, MAX(c.n, 1));
    bool ok = count_all(&c, error) && add_blocks(&c, error) && rewrite_refcounts(&c, error) &&
              fix_copied(&c, error) && qcow2_metadata_writeback(s, error) &&
              vd_host_fdatasync(s->fd, s->name, error);
    g_free(c.counts);
    if (!ok)
        return false;
    uint8_t b[8];
    vd_put_be64(b, s->incompat & ~QCOW2_INCOMPAT_DIRTY);
    if (!vd_host_pwrite(s->fd, s->name, b, 8, 72, error) ||
        !vd_host_fdatasync(s->fd, s->name, error))
        return false;
    s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
    g_message("%s: repaired the refcounts of a dirty image", s->name);
    return true;
}

/* Stored refcounts against the counted references, cluster by cluster,
 * for the clusters of the file (refcounts past its end are not looked at,
 * as qemu-img check does not). */
static bool compare_refcounts(Counter *c, GError **error)
{
    Qcow2State *s = c->s;
    VdCheckReport *r = c->report;
    uint64_t E = qcow2_refcount_block_entries(s);
    uint64_t last = qcow2_refcount_table_entries(s) * E;
    for (uint64_t i = 0; i < c->n; i++) {
        uint64_t have = 0, want = c->counts[i];
        if (i < last) {
            if (i % E == 0 && qcow2_refcount_block_at(s, i / E) == 0) {
                /* A region without a block: every refcount in it is 0. */
                for (uint64_t k = i; k < MIN(i + E, c->n); k++) {
                    if (c->counts[k] != 0)
                        r->image_end_offset = (k + 1) << s->cluster_bits;
                    if (c->counts[k] != 0)
                        report_line(r, &r->corruptions,
                                    "ERROR cluster %" G_GUINT64_FORMAT " refcount=0 reference=%u",
                                    k, c->counts[k]);
                }
                i += E - 1;
                continue;
            }
            g_autoptr(GError) err = NULL;
            if (!qcow2_refcount_get(s, i, &have, &err)) {
                report_line(r, &r->check_errors,
                            "ERROR reading the refcount of cluster %" G_GUINT64_FORMAT ": %s", i,
                            err->message);
                continue;
            }
        }
        /* The end of the image: its last cluster in use or counted so. */
        if (have != 0 || want != 0)
            r->image_end_offset = (i + 1) << s->cluster_bits;
        if (have == want)
            continue;
        if (have < want)
            report_line(r, &r->corruptions,
                        "ERROR cluster %" G_GUINT64_FORMAT " refcount=%" G_GUINT64_FORMAT
                        " reference=%" G_GUINT64_FORMAT,
                        i, have, want);
        else
            report_line(r, &r->leaks,
                        "Leaked cluster %" G_GUINT64_FORMAT " refcount=%" G_GUINT64_FORMAT
                        " reference=%" G_GUINT64_FORMAT,
                        i, have, want);
    }
    (void)error;
    return true;
}

/* The active tables' COPIED flags must say "refcount is exactly 1";
 * also the allocation statistics qemu-img check prints. */
static bool check_copied(Counter *c, GError **error)
{
    Qcow2State *s = c->s;
    VdCheckReport *r = c->report;
    bool data_file = (s->incompat & QCOW2_INCOMPAT_DATA_FILE) != 0;
    uint64_t n = 1ull << s->l2_bits;
    g_autofree uint8_t *t = g_malloc(s->cluster_size);
    for (uint64_t i = 0; i < s->l1_entries; i++) {
        /* Contiguity is judged within one L2 table, as qemu-img does. */
        uint64_t prev_host = 0;
        uint64_t l2 = s->l1[i] & QCOW2_OFFSET_MASK;
        if (l2 == 0 || (l2 & (s->cluster_size - 1)) || l2 >= c->n << s->cluster_bits)
            continue;
        bool copied = (s->l1[i] & QCOW2_OFLAG_COPIED) != 0;
        uint64_t rc;
        g_autoptr(GError) err = NULL;
        if (!qcow2_refcount_get(s, l2 >> s->cluster_bits, &rc, &err)) {
            report_line(r, &r->check_errors, "ERROR reading a refcount: %s", err->message);
            continue;
        }
        if (copied != (rc == 1))
            report_line(r, &r->corruptions,
                        "ERROR OFLAG_COPIED L2 cluster: l1_index=%" G_GUINT64_FORMAT
                        " l1_entry=%" G_GINT64_MODIFIER "x refcount=%" G_GUINT64_FORMAT,
                        i, s->l1[i], rc);
        if (!vd_host_pread(s->fd, s->name, t, s->cluster_size, l2, false, &err)) {
            report_line(r, &r->check_errors, "ERROR reading L2 table %" G_GUINT64_FORMAT ": %s", i,
                        err->message);
            continue;
        }
        for (uint64_t j = 0; j < n; j++) {
            uint64_t e = qcow2_l2_word(s, t, j);
            if (e & QCOW2_OFLAG_COMPRESSED) {
                /* Fragmented by nature, as qemu-img counts them: adjacent
                 * compressed clusters share sectors that are read twice. */
                r->allocated_clusters++;
                r->compressed_clusters++;
                r->fragmented_clusters++;
                continue;
            }
            uint64_t host = e & QCOW2_OFFSET_MASK;
            if (host == 0)
                continue;
            r->allocated_clusters++;
            if (prev_host != 0 && host != prev_host + s->cluster_size)
                r->fragmented_clusters++;
            prev_host = host;
            if (data_file)
                continue;
            bool e_copied = (e & QCOW2_OFLAG_COPIED) != 0;
            if (!qcow2_refcount_get(s, host >> s->cluster_bits, &rc, &err)) {
                report_line(r, &r->check_errors, "ERROR reading a refcount: %s", err->message);
                g_clear_error(&err);
                continue;
            }
            if (e_copied != (rc == 1))
                report_line(r, &r->corruptions,
                            "ERROR OFLAG_COPIED data cluster: l2_entry=%" G_GINT64_MODIFIER
                            "x refcount=%" G_GUINT64_FORMAT,
                            e, rc);
        }
    }
    (void)error;
    return true;
}

bool qcow2_check(VdImage *img, VdCheckReport *report, GError **error)
{
    Qcow2State *s = img->opaque;
    uint64_t fsize = qcow2_file_size(s);
    Counter c = {
        .s = s, .n = qcow2_round_up(fsize, s->cluster_size) >> s->cluster_bits, .report = report};
    if (c.n > REPAIR_MAX_CLUSTERS) {
        vd_set_error(error, ENOTSUP, "%s: too large to check here (more than %llu clusters)",
                     s->name, REPAIR_MAX_CLUSTERS);
        return false;
    }
    /* A read-only open has no refcount state: load it for the check. */
    bool own_rc = s->rc == NULL;
    if (own_rc && !qcow2_refcount_init(s, error)) {
        g_clear_pointer(&s->rc, qcow2_refcount_free);
        return false;
    }
    c.counts = g_new0(uint32_t, MAX(c.n, 1));
    report->total_clusters = (img->size + s->cluster_size - 1) >> s->cluster_bits;
    bool ok = count_all(&c, error) && compare_refcounts(&c, error) && check_copied(&c, error);
    g_free(c.counts);
    if (own_rc)
        g_clear_pointer(&s->rc, qcow2_refcount_free);
    return ok;
}
