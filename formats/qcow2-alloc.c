/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 writes: in place where a cluster is ours alone (COPIED), else
 * into freshly allocated clusters (copy-on-write of the rest of the
 * cluster, or of the touched subclusters with extended L2 entries),
 * zeroing and discard, growth, and ordered write-back of the metadata.
 *
 * Called under the image's write lock (VD_CAP_SERIAL_WRITES); readers run
 * concurrently and see L2 changes through the table cache and L1 changes
 * under l1_lock (qcow2.h), always after the data they point to has been
 * written. L2 tables are read here straight from their pinned copies
 * (only this side changes them) and changed through the cache.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "formats/qcow2.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

static bool has_data_file(const Qcow2State *s)
{
    return (s->incompat & QCOW2_INCOMPAT_DATA_FILE) != 0;
}

static uint64_t round_down(uint64_t v, uint64_t a)
{
    return v & ~(a - 1);
}

/* Guest data bound for the qcow2 file itself must not land on its
 * metadata (an external data file holds none). */
static bool guard_data(VdImage *img, Qcow2State *s, uint64_t host, uint64_t len, GError **error)
{
    return s->data_fd != s->fd || vd_image_guard_write(img, s->meta, host, len, error);
}

/* Before the first change: drop the autoclear bits we do not maintain. */
static bool prepare_write(Qcow2State *s, GError **error)
{
    if (s->write_ready)
        return true;
    if (s->rc == NULL || s->is_snapshot) {
        vd_set_error(error, EROFS, "%s: image is read-only", s->name);
        return false;
    }
    uint64_t keep = s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    if (s->version >= 3 && keep != s->autoclear) {
        uint8_t b[8];
        vd_put_be64(b, keep);
        if (!vd_host_pwrite(s->fd, s->name, b, 8, 88, error) ||
            !vd_host_fdatasync(s->fd, s->name, error))
            return false;
        s->autoclear = keep;
    }
    s->write_ready = true;
    return true;
}

/* The table an L1 entry marks COPIED: ours alone if its refcount says so
 * (and then its entries checked, qcow2-trust.c), else NULL, error unset. */
static VdTable *own_table(Qcow2State *s, uint64_t l1i, uint64_t off, GError **error)
{
    VdTable *t = vd_table_cache_get(s->l2_cache, off, error);
    if (t == NULL || qcow2_trust_known(s, off))
        return t;
    uint64_t v;
    if (!qcow2_refcount_get(s, off >> s->cluster_bits, &v, error) ||
        (v == 1 && !qcow2_trust_table(s, t, error))) {
        vd_table_cache_put(s->l2_cache, t);
        return NULL;
    }
    if (v == 1)
        return t;
    /* Shared after all: copied like any shared table. */
    vd_table_cache_put(s->l2_cache, t);
    qcow2_l1_set(s, l1i, s->l1[l1i] & ~QCOW2_OFLAG_COPIED);
    return NULL;
}

/* The L2 table covering guest, allocated and ours alone (pinned). */
static VdTable *l2_for_write(Qcow2State *s, uint64_t guest, GError **error)
{
    uint64_t l1i = guest >> (s->cluster_bits + s->l2_bits);
    if (l1i >= s->l1_entries) {
        vd_set_error(error, EIO,
                     "%s: guest offset 0x%" G_GINT64_MODIFIER "x is beyond the L1 table", s->name,
                     guest);
        return NULL;
    }
    uint64_t e = s->l1[l1i], old = e & QCOW2_OFFSET_MASK;
    if (old & (s->cluster_size - 1)) {
        vd_set_error(error, EIO, "%s: L2 table offset 0x%" G_GINT64_MODIFIER "x is not aligned",
                     s->name, old);
        return NULL;
    }
    if (old != 0 && (e & QCOW2_OFLAG_COPIED)) {
        g_autoptr(GError) err = NULL;
        VdTable *t = own_table(s, l1i, old, &err);
        if (err != NULL) {
            g_propagate_error(error, g_steal_pointer(&err));
            return NULL;
        }
        if (t != NULL)
            return t;
    }
    /* New table: empty, or a private copy of a shared one. */
    g_autofree uint8_t *copy = NULL;
    if (old != 0) {
        VdTable *ot = vd_table_cache_get(s->l2_cache, old, error);
        if (ot == NULL)
            return NULL;
        copy = g_memdup2(ot->data, s->cluster_size);
        vd_table_cache_put(s->l2_cache, ot);
    }
    uint64_t noff, got;
    if (!qcow2_alloc_clusters(s, 1, &noff, &got, error) ||
        !qcow2_meta_claim(s, noff, s->cluster_size, "L2 table", error))
        return NULL;
    /* The table first, then the L1 entry naming it: a reader that sees the
     * new entry finds the new table (dirty, so never evicted unwritten). */
    VdTable *t = vd_table_cache_get_new(s->l2_cache, noff, copy);
    qcow2_l1_set(s, l1i, noff | QCOW2_OFLAG_COPIED);
    if (old != 0) {
        /* The shared table stays a snapshot's, which the map leaves out. */
        qcow2_meta_release(s, old);
        qcow2_free_later(s, old, s->cluster_size);
        if (!qcow2_trust_table(s, t, error)) {
            vd_table_cache_put(s->l2_cache, t);
            return NULL;
        }
    } else {
        qcow2_trust_new_table(s, t);
    }
    return t;
}

/* Release what an L2 entry points at (once the new entry is durable). */
static void free_entry(Qcow2State *s, uint64_t e)
{
    if (has_data_file(s))
        return; /* data file clusters are not refcounted */
    if (e & QCOW2_OFLAG_COMPRESSED) {
        uint64_t start, len;
        qcow2_compressed_range(s, e, &start, &len);
        qcow2_free_later(s, start, len);
    } else if (e & QCOW2_OFFSET_MASK) {
        qcow2_free_later(s, e & QCOW2_OFFSET_MASK, s->cluster_size);
    }
}

/* Where a guest cluster's data lives when it has a host cluster: 0 if none. */
static uint64_t entry_host(const Qcow2State *s, uint64_t e, uint64_t guest_cluster)
{
    if (e & QCOW2_OFLAG_COMPRESSED)
        return 0;
    if (has_data_file(s) && (e & QCOW2_OFLAG_COPIED))
        return e & QCOW2_OFFSET_MASK ? e & QCOW2_OFFSET_MASK : guest_cluster;
    return e & QCOW2_OFFSET_MASK;
}

/* Written where it is: ours alone, not compressed, and (standard L2) not a zero cluster. */
static bool writes_in_place(const Qcow2State *s, uint64_t e, uint64_t guest_cluster)
{
    if (entry_host(s, e, guest_cluster) == 0 && !(has_data_file(s) && (e & QCOW2_OFLAG_COPIED)))
        return false;
    if (!(e & QCOW2_OFLAG_COPIED))
        return false;
    return s->ext_l2 || !(e & QCOW2_OFLAG_ZERO);
}

/* buf holds guest [g0, g1): the written bytes [d0, d1) from data, the rest as it reads now. */
static bool fill_around(VdImage *img, uint8_t *buf, uint64_t g0, uint64_t g1, const uint8_t *data,
                        uint64_t d0, uint64_t d1, GError **error)
{
    if (d0 > g0 && !vd_image_pread(img, buf, d0 - g0, g0, error))
        return false;
    if (g1 > d1 && !vd_image_pread(img, buf + (d1 - g0), g1 - d1, d1, error))
        return false;
    memcpy(buf + (d0 - g0), data, d1 - d0);
    return true;
}

static bool write_host(Qcow2State *s, uint8_t *buf, uint64_t len, uint64_t host, uint64_t guest,
                       GError **error)
{
    if (s->crypto != NULL &&
        !vd_luks_crypt(s->crypto, true, qcow2_crypto_sector(s, host, guest), buf, len, error))
        return false;
    return vd_host_pwrite(s->data_fd, s->name, buf, len, host, error);
}

/* Subclusters of a cluster starting at cstart that [d0, d1) touches. */
static uint32_t touched_mask(const Qcow2State *s, uint64_t cstart, uint64_t d0, uint64_t d1)
{
    uint64_t a = MAX(d0, cstart) - cstart, b = MIN(d1, cstart + s->cluster_size) - cstart;
    unsigned first = (unsigned)(a >> s->sc_bits), last = (unsigned)((b - 1) >> s->sc_bits);
    uint64_t m = ((2ull << last) - 1) & ~((1ull << first) - 1);
    return (uint32_t)m;
}

/* Guest [d0, d1) within one cluster whose host cluster is ours: write in place. */
static bool write_in_place(VdImage *img, Qcow2State *s, VdTable *t, uint64_t idx,
                           const uint8_t *data, uint64_t d0, uint64_t d1, GError **error)
{
    uint64_t cstart = round_down(d0, s->cluster_size);
    uint64_t e = qcow2_l2_word(s, t->data, idx), bm = qcow2_l2_bitmap(s, t->data, idx);
    uint64_t host = entry_host(s, e, cstart);
    if (host & (s->cluster_size - 1)) {
        vd_set_error(error, EIO, "%s: data cluster offset 0x%" G_GINT64_MODIFIER "x is unaligned",
                     s->name, host);
        return false;
    }
    uint64_t scs = 1ull << s->sc_bits, unit = s->crypto ? QCOW2_SECTOR : 1;
    uint32_t touched = 0, alloc = (uint32_t)bm;
    uint64_t g0 = round_down(d0, unit), g1 = qcow2_round_up(d1, unit);
    if (s->ext_l2) {
        touched = touched_mask(s, cstart, d0, d1);
        unsigned sa = (unsigned)((d0 - cstart) >> s->sc_bits);
        unsigned sb = (unsigned)((d1 - 1 - cstart) >> s->sc_bits);
        if (!(alloc & (1u << sa)))
            g0 = round_down(d0, scs);
        if (!(alloc & (1u << sb)))
            g1 = qcow2_round_up(d1, scs);
    }
    if (!guard_data(img, s, host + (g0 - cstart), g1 - g0, error))
        return false;
    if (g0 == d0 && g1 == d1 && s->crypto == NULL) {
        if (!vd_host_pwrite(s->data_fd, s->name, data, d1 - d0, host + (d0 - cstart), error))
            return false;
    } else {
        g_autofree uint8_t *buf = g_malloc(g1 - g0);
        if (!fill_around(img, buf, g0, g1, data, d0, d1, error) ||
            !write_host(s, buf, g1 - g0, host + (g0 - cstart), g0, error))
            return false;
    }
    if (s->ext_l2 && ((alloc & touched) != touched || ((bm >> 32) & touched))) {
        uint64_t nalloc = alloc | touched, nzero = (bm >> 32) & ~(uint64_t)touched;
        qcow2_l2_update(s, t, idx, e, nalloc | (nzero << 32));
    }
    return true;
}

/*
 * Guest [d0, d1) spanning whole clusters' worth of entries [i0, i1) of table t,
 * none of which can be written in place: new host clusters, the rest of each
 * (or of each touched subcluster) as it reads now.
 */
static bool write_alloc(VdImage *img, Qcow2State *s, VdTable *t, const uint8_t *data, uint64_t d0,
                        uint64_t d1, GError **error)
{
    uint64_t cs = s->cluster_size, scs = 1ull << s->sc_bits;
    uint64_t c = round_down(d0, cs);
    while (c < d1) {
        uint64_t want = (qcow2_round_up(d1, cs) - c) / cs, host, got;
        if (has_data_file(s)) {
            host = c;
            got = want;
        } else if (!qcow2_alloc_clusters(s, want, &host, &got, error)) {
            return false;
        }
        uint64_t run_end = c + got * cs;
        uint64_t idx0 = (c >> s->cluster_bits) & ((1ull << s->l2_bits) - 1);
        /* Which part of the first and last cluster gets written. */
        uint64_t g0 = c, g1 = run_end;
        if (s->ext_l2) {
            uint64_t e0 = qcow2_l2_word(s, t->data, idx0);
            uint64_t el = qcow2_l2_word(s, t->data, idx0 + got - 1);
            bool full0 = (e0 & QCOW2_OFLAG_COMPRESSED) || entry_host(s, e0, c) != 0;
            bool fulll = (el & QCOW2_OFLAG_COMPRESSED) || entry_host(s, el, run_end - cs) != 0;
            if (!full0)
                g0 = MAX(c, round_down(d0, scs));
            if (!fulll)
                g1 = MIN(run_end, qcow2_round_up(d1, scs));
        }
        uint64_t w0 = MAX(d0, g0), w1 = MIN(d1, g1);
        if (!guard_data(img, s, host + (g0 - c), g1 - g0, error))
            return false;
        if (w0 == g0 && w1 == g1 && s->crypto == NULL) {
            /* Whole clusters from the caller's buffer: no copy. */
            if (!vd_host_pwrite(s->data_fd, s->name, data + (w0 - d0), g1 - g0, host + (g0 - c),
                                error))
                return false;
        } else {
            g_autofree uint8_t *buf = g_malloc(g1 - g0);
            if (!fill_around(img, buf, g0, g1, data + (w0 - d0), w0, w1, error) ||
                !write_host(s, buf, g1 - g0, host + (g0 - c), g0, error))
                return false;
        }
        g_autoptr(GArray) old = g_array_new(FALSE, FALSE, sizeof(uint64_t));
        /* The new entries built aside and stored in one change, so that
         * readers see the run's old entries or its new ones. */
        g_autofree uint8_t *raw = g_malloc(got * s->l2_esize);
        for (uint64_t i = 0; i < got; i++) {
            uint64_t cstart = c + i * cs, idx = idx0 + i;
            uint64_t e = qcow2_l2_word(s, t->data, idx), bm = qcow2_l2_bitmap(s, t->data, idx);
            uint64_t nbm = 0;
            if (s->ext_l2) {
                uint32_t touched = touched_mask(s, cstart, d0, d1);
                uint64_t alloc;
                if (e & QCOW2_OFLAG_COMPRESSED)
                    alloc = 0xffffffffu;
                else if (entry_host(s, e, cstart) != 0)
                    alloc = (uint32_t)bm | touched;
                else
                    alloc = touched;
                nbm = alloc | ((bm & ~(alloc << 32)) & 0xffffffff00000000ull);
            }
            qcow2_l2_set(s, raw, i, (host + i * cs) | QCOW2_OFLAG_COPIED, nbm);
            qcow2_trust_update(s, e, (host + i * cs) | QCOW2_OFLAG_COPIED);
            g_array_append_val(old, e);
        }
        qcow2_l2_store(s, t, idx0, got, raw);
        for (guint i = 0; i < old->len; i++)
            free_entry(s, g_array_index(old, uint64_t, i));
        data += w1 - d0;
        d0 = w1;
        c = run_end;
    }
    return true;
}

/* An entry the read path rejects (extended L2 bits that contradict each
 * other, a compressed cluster with a bitmap) is not written through
 * either: half of the cluster would change and the rest stay unreadable. */
static bool check_entry(Qcow2State *s, VdTable *t, uint64_t idx, uint64_t guest, GError **error)
{
    uint64_t e = qcow2_l2_word(s, t->data, idx), bm = qcow2_l2_bitmap(s, t->data, idx);
    Qcow2ScType type = qcow2_sc_type(s, e, bm, 0);
    uint64_t host = e & QCOW2_OFFSET_MASK;
    /* As the read path has it: with extended L2 any offset must be aligned. */
    bool misaligned = (type == QCOW2_SC_NORMAL || (s->ext_l2 && host != 0)) &&
                      type != QCOW2_SC_COMPRESSED && (host & (s->cluster_size - 1));
    return (type != QCOW2_SC_INVALID && !misaligned) || qcow2_entry_error(s, guest, e, bm, error);
}

/* Write guest [off, end) that lies within one L2 table. */
static bool write_table_range(VdImage *img, Qcow2State *s, VdTable *t, const uint8_t *data,
                              uint64_t off, uint64_t end, GError **error)
{
    uint64_t cs = s->cluster_size, mask = (1ull << s->l2_bits) - 1;
    while (off < end) {
        uint64_t idx = (off >> s->cluster_bits) & mask;
        uint64_t cend = MIN(round_down(off, cs) + cs, end);
        uint64_t e = qcow2_l2_word(s, t->data, idx);
        bool ok;
        if (!check_entry(s, t, idx, off, error))
            return false;
        if (writes_in_place(s, e, round_down(off, cs))) {
            ok = write_in_place(img, s, t, idx, data, off, cend, error);
        } else {
            /* Gather the following clusters that also need new ones. */
            while (cend < end) {
                uint64_t ni = (cend >> s->cluster_bits) & mask, ne = qcow2_l2_word(s, t->data, ni);
                if (writes_in_place(s, ne, cend) || !check_entry(s, t, ni, cend, NULL))
                    break;
                cend = MIN(cend + cs, end);
            }
            ok = write_alloc(img, s, t, data, off, cend, error);
        }
        if (!ok)
            return false;
        data += cend - off;
        off = cend;
    }
    return true;
}

static bool maybe_writeback(Qcow2State *s, GError **error)
{
    if (vd_table_cache_pressure(s->l2_cache) || qcow2_refcount_pending_bytes(s) > (256u << 20) ||
        qcow2_refcount_pressure(s))
        return qcow2_metadata_writeback(s, error);
    return true;
}

/* The L2 entry for guest from a table the write side trusts
 * (qcow2-trust.c); false when there is none (or it cannot be read): the
 * slow path then decides. Under img->write_lock's read side, which keeps
 * the write side, and so every change of L1 and of the trusted set, out. */
static bool trusted_entry(Qcow2State *s, uint64_t guest, uint64_t *entry)
{
    uint64_t l1i = guest >> (s->cluster_bits + s->l2_bits);
    uint64_t i = (guest >> s->cluster_bits) & ((1ull << s->l2_bits) - 1);
    uint64_t l2 = l1i < s->l1_entries ? s->l1[l1i] & QCOW2_OFFSET_MASK : 0;
    uint8_t raw[8];
    if (l2 == 0 || !qcow2_trust_known(s, l2) ||
        !vd_table_cache_read(s->l2_cache, l2, (size_t)(i * s->l2_esize), 8, raw, NULL))
        return false;
    *entry = vd_be64(raw);
    return true;
}

int qcow2_pwrite_fast(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    Qcow2State *s = qcow2_state(img);
    /* Only plain clusters of a plain image: everything else may need to
     * change an L2 entry or a bitmap. */
    if (!s->write_ready || s->crypto != NULL || s->ext_l2 || has_data_file(s))
        return VD_FAST_SLOW;
    uint64_t cs = s->cluster_size, end = offset + len;
    /* Look every cluster up first: all or nothing. At most 16, so that a
     * large write does not hold the shared lock long. */
    uint64_t hosts[16];
    unsigned n = 0;
    for (uint64_t c = round_down(offset, cs); c < end; c += cs) {
        uint64_t e;
        if (n == G_N_ELEMENTS(hosts) || !trusted_entry(s, c, &e))
            return VD_FAST_SLOW;
        uint64_t host = e & QCOW2_OFFSET_MASK;
        if (!(e & QCOW2_OFLAG_COPIED) || (e & (QCOW2_OFLAG_COMPRESSED | QCOW2_OFLAG_ZERO)) ||
            host == 0 || (host & (cs - 1)))
            return VD_FAST_SLOW;
        uint64_t w0 = MAX(c, offset), w1 = MIN(c + cs, end);
        if (!vd_image_guard_write(img, s->meta, host + (w0 - c), w1 - w0, error))
            return VD_FAST_ERROR;
        hosts[n++] = host;
    }
    const uint8_t *p = buf;
    for (unsigned i = 0; i < n; i++) {
        uint64_t c0 = round_down(offset, cs);
        uint64_t chunk = MIN(end, c0 + cs) - offset;
        if (!vd_host_pwrite(s->data_fd, s->name, p, chunk, hosts[i] + (offset - c0), error))
            return VD_FAST_ERROR;
        p += chunk;
        offset += chunk;
    }
    return VD_FAST_DONE;
}

bool qcow2_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    Qcow2State *s = qcow2_state(img);
    if (!prepare_write(s, error))
        return false;
    const uint8_t *p = buf;
    uint64_t span = 1ull << (s->cluster_bits + s->l2_bits);
    while (len > 0) {
        uint64_t end = MIN(offset + len, round_down(offset, span) + span);
        VdTable *t = l2_for_write(s, offset, error);
        if (t == NULL)
            return false;
        bool ok = write_table_range(img, s, t, p, offset, end, error);
        vd_table_cache_put(s->l2_cache, t);
        if (!ok)
            return false;
        p += end - offset;
        len -= end - offset;
        offset = end;
    }
    return maybe_writeback(s, error);
}

/* Write real zeros (where the format cannot say "zero"). */
static bool write_zero_data(VdImage *img, uint64_t offset, uint64_t length, GError **error)
{
    size_t chunk = (size_t)MIN(length, 1u << 20);
    g_autofree uint8_t *zeros = g_malloc0(chunk);
    while (length > 0) {
        size_t n = (size_t)MIN(length, chunk);
        if (!qcow2_pwrite(img, zeros, n, offset, error))
            return false;
        offset += n;
        length -= n;
    }
    return true;
}

static void punch_data(Qcow2State *s, uint64_t host, uint64_t len)
{
    g_autoptr(GError) err = NULL;
    if (!vd_host_punch_hole(s->data_fd, s->name, host, len, &err))
        g_debug("%s", err->message);
}

/* Whole clusters [off, off + n) within one L2 table read as zeros afterwards. */
static bool zero_clusters(VdImage *img, Qcow2State *s, uint64_t off, uint64_t n, GError **error)
{
    bool unalloc = img->backing == NULL;
    uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);
    if (unalloc && (s->l1[l1i] & QCOW2_OFFSET_MASK) == 0)
        return true; /* no table: already unallocated */
    uint64_t ne = unalloc || s->ext_l2 ? 0 : QCOW2_OFLAG_ZERO;
    uint64_t nbm = unalloc || !s->ext_l2 ? 0 : 0xffffffff00000000ull;
    VdTable *t = l2_for_write(s, off, error);
    if (t == NULL)
        return false;
    uint64_t mask = (1ull << s->l2_bits) - 1;
    uint64_t idx0 = (off >> s->cluster_bits) & mask, count = n >> s->cluster_bits;
    g_autoptr(GArray) old = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    /* Built aside and stored in one change, as in write_alloc. */
    g_autofree uint8_t *raw = g_memdup2(t->data + idx0 * s->l2_esize, count * s->l2_esize);
    bool changed = false;
    for (uint64_t g = off; g < off + n; g += s->cluster_size) {
        uint64_t idx = (g >> s->cluster_bits) & mask;
        uint64_t e = qcow2_l2_word(s, t->data, idx), bm = qcow2_l2_bitmap(s, t->data, idx);
        if (e == ne && bm == nbm)
            continue;
        if (!has_data_file(s))
            g_array_append_val(old, e);
        else if (e & (QCOW2_OFLAG_COPIED | QCOW2_OFFSET_MASK))
            g_array_append_val(old, g); /* data file offsets are guest offsets */
        qcow2_l2_set(s, raw, idx - idx0, ne, nbm);
        qcow2_trust_update(s, e, ne);
        changed = true;
    }
    if (changed)
        qcow2_l2_store(s, t, idx0, count, raw);
    vd_table_cache_put(s->l2_cache, t);
    for (guint i = 0; i < old->len; i++) {
        if (has_data_file(s))
            punch_data(s, g_array_index(old, uint64_t, i), s->cluster_size);
        else
            free_entry(s, g_array_index(old, uint64_t, i));
    }
    return true;
}

/* Whole subclusters [a, b) of one cluster read as zeros (extended L2). */
static bool zero_subclusters(VdImage *img, Qcow2State *s, uint64_t a, uint64_t b, GError **error)
{
    uint64_t cstart = round_down(a, s->cluster_size);
    VdTable *t = l2_for_write(s, a, error);
    if (t == NULL)
        return false;
    uint64_t idx = (a >> s->cluster_bits) & ((1ull << s->l2_bits) - 1);
    uint64_t e = qcow2_l2_word(s, t->data, idx), bm = qcow2_l2_bitmap(s, t->data, idx);
    if (!check_entry(s, t, idx, a, error)) {
        vd_table_cache_put(s->l2_cache, t);
        return false;
    }
    if (e & QCOW2_OFLAG_COMPRESSED) {
        vd_table_cache_put(s->l2_cache, t);
        return write_zero_data(img, a, b - a, error);
    }
    uint32_t m = touched_mask(s, cstart, a, b);
    uint64_t nbm = (bm & ~(uint64_t)m) | ((uint64_t)m << 32);
    uint64_t host = entry_host(s, e, cstart);
    /* Punching a hole is a write of zeros. */
    if (host != 0 && (e & QCOW2_OFLAG_COPIED) &&
        !guard_data(img, s, host + (a - cstart), b - a, error)) {
        vd_table_cache_put(s->l2_cache, t);
        return false;
    }
    if (nbm != bm)
        qcow2_l2_update(s, t, idx, e, nbm);
    vd_table_cache_put(s->l2_cache, t);
    /* Ours alone: give the space back now (it reads as zeros whatever it holds). */
    if (host != 0 && (e & QCOW2_OFLAG_COPIED))
        punch_data(s, host + (a - cstart), b - a);
    return true;
}

bool qcow2_write_zeroes(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                        GError **error)
{
    Qcow2State *s = qcow2_state(img);
    if (!prepare_write(s, error))
        return false;
    uint64_t cs = s->cluster_size, scs = 1ull << s->sc_bits;
    uint64_t span = 1ull << (s->cluster_bits + s->l2_bits), end = offset + length;
    bool can_say_zero = s->version >= 3 || img->backing == NULL;
    while (offset < end) {
        bool ok;
        uint64_t next;
        if ((offset & (cs - 1)) == 0 && end - offset >= cs) {
            next = MIN(round_down(end, cs), round_down(offset, span) + span);
            ok = can_say_zero ? zero_clusters(img, s, offset, next - offset, error)
                              : write_zero_data(img, offset, next - offset, error);
        } else {
            next = MIN(end, round_down(offset, cs) + cs);
            uint64_t a = qcow2_round_up(offset, scs), b = round_down(next, scs);
            if (s->ext_l2 && a < b) {
                ok = write_zero_data(img, offset, a - offset, error) &&
                     zero_subclusters(img, s, a, b, error) &&
                     write_zero_data(img, b, next - b, error);
            } else {
                ok = write_zero_data(img, offset, next - offset, error);
            }
        }
        if (!ok)
            return false;
        offset = next;
    }
    (void)flags;
    return maybe_writeback(s, error);
}

static bool write_header_field(Qcow2State *s, uint64_t off, uint64_t v, unsigned width,
                               GError **error)
{
    uint8_t b[8];
    if (width == 8)
        vd_put_be64(b, v);
    else
        vd_put_be32(b, (uint32_t)v);
    return vd_host_pwrite(s->fd, s->name, b, width, off, error);
}

/* A larger L1 table: written whole, then the header switches to it. */
static bool grow_l1(Qcow2State *s, uint64_t entries, GError **error)
{
    if (entries * 8 > QCOW2_MAX_L1_BYTES) {
        vd_set_error(error, EFBIG, "%s: the L1 table would exceed %u MiB", s->name,
                     QCOW2_MAX_L1_BYTES >> 20);
        return false;
    }
    if (!qcow2_metadata_writeback(s, error))
        return false;
    uint64_t bytes = qcow2_round_up(entries * 8, s->cluster_size), off;
    if (!qcow2_alloc_contiguous(s, bytes >> s->cluster_bits, &off, error) ||
        !qcow2_meta_claim(s, off, bytes, "L1 table", error))
        return false;
    g_autofree uint8_t *raw = g_malloc0(bytes);
    uint64_t *l1 = g_new0(uint64_t, entries);
    memcpy(l1, s->l1, (size_t)s->l1_entries * 8);
    for (uint64_t i = 0; i < s->l1_entries; i++)
        vd_put_be64(raw + 8 * i, l1[i]);
    uint8_t hdr[12];
    vd_put_be32(hdr, (uint32_t)entries);
    vd_put_be64(hdr + 4, off);
    bool ok = vd_host_pwrite(s->fd, s->name, raw, bytes, off, error) &&
              qcow2_refcount_writeback(s, error) && vd_host_fdatasync(s->fd, s->name, error) &&
              vd_host_pwrite(s->fd, s->name, hdr, sizeof hdr, 36, error) &&
              vd_host_fdatasync(s->fd, s->name, error);
    if (!ok) {
        qcow2_meta_release(s, off);
        g_free(l1);
        return false;
    }
    uint64_t old_off = s->l1_offset, old_bytes = (uint64_t)s->l1_entries * 8;
    if (old_bytes > 0)
        qcow2_meta_release(s, old_off);
    vd_brlock_wrlock(&s->l1_lock);
    uint64_t *old = s->l1;
    s->l1 = l1;
    s->l1_entries = (uint32_t)entries;
    s->l1_offset = off;
    vd_brlock_wrunlock(&s->l1_lock);
    g_free(old);
    s->l1_dirty_lo = UINT32_MAX;
    s->l1_dirty_hi = 0;
    if (old_bytes > 0 && old_off != 0)
        qcow2_free_later(s, old_off, old_bytes);
    return true;
}

bool qcow2_truncate(VdImage *img, uint64_t new_size, GError **error)
{
    Qcow2State *s = qcow2_state(img);
    if (!prepare_write(s, error))
        return false;
    uint64_t need = qcow2_l1_entries_for(s, new_size);
    if (need > s->l1_entries && !grow_l1(s, need, error))
        return false;
    if (s->data_file_raw) {
        uint64_t dsize;
        if (!vd_host_size(s->data_fd, s->name, &dsize, error))
            return false;
        if (dsize < new_size && ftruncate(s->data_fd, (off_t)new_size) < 0) {
            vd_set_error_errno(error, errno, "%s: resize the data file", s->name);
            return false;
        }
    }
    if (!write_header_field(s, 24, new_size, 8, error) || !vd_host_fdatasync(s->fd, s->name, error))
        return false;
    uint64_t old_size = s->virtual_size;
    s->virtual_size = new_size;
    /* As QEMU does: a longer backing file must not show through the new area. */
    uint64_t bsize = img->backing ? vd_image_size(img->backing) : 0;
    if (bsize > old_size)
        return qcow2_write_zeroes(img, old_size, MIN(bsize, new_size) - old_size, 0, error);
    return true;
}

bool qcow2_metadata_writeback(Qcow2State *s, GError **error)
{
    if (s->rc == NULL)
        return true;
    bool l2 = qcow2_dirty_tables(s->l2_cache) > 0;
    bool l1 = s->l1_dirty_lo < s->l1_dirty_hi;
    bool rc = qcow2_refcount_dirty(s), frees = qcow2_refcount_has_pending(s);
    /* 1. New refcounts reach the file before anything points at their clusters. */
    if (rc && !qcow2_refcount_writeback(s, error))
        return false;
    /* 2. Data and refcounts durable, then the L2 tables pointing at them. */
    if (l2 || l1) {
        if (!vd_host_fdatasync(s->fd, s->name, error) ||
            (s->data_fd != s->fd && !vd_host_fdatasync(s->data_fd, s->name, error)))
            return false;
    }
    /* The cache's dependency would flush the refcount blocks first too;
     * step 1 already did, with the refcount table entries and the sync. */
    if (l2 && !vd_table_cache_flush(s->l2_cache, error))
        return false;
    /* 3. New L2 tables durable, then the L1 entries pointing at them. */
    if (l1) {
        uint64_t lo = s->l1_dirty_lo, hi = s->l1_dirty_hi;
        g_autofree uint8_t *raw = g_malloc((hi - lo) * 8);
        for (uint64_t i = lo; i < hi; i++)
            vd_put_be64(raw + (i - lo) * 8, s->l1[i]);
        if ((l2 && !vd_host_fdatasync(s->fd, s->name, error)) ||
            !vd_host_pwrite(s->fd, s->name, raw, (hi - lo) * 8, s->l1_offset + lo * 8, error))
            return false;
        s->l1_dirty_lo = UINT32_MAX;
        s->l1_dirty_hi = 0;
    }
    /* 4. Nothing durable points at freed clusters any more: release them. */
    if (frees) {
        if (!vd_host_fdatasync(s->fd, s->name, error) || !qcow2_refcount_apply_frees(s, error) ||
            !qcow2_refcount_writeback(s, error))
            return false;
    }
    return true;
}

bool qcow2_flush(VdImage *img, GError **error)
{
    Qcow2State *s = qcow2_state(img);
    return qcow2_metadata_writeback(s, error) && vd_host_fdatasync(s->fd, s->name, error) &&
           (s->data_fd == s->fd || vd_host_fdatasync(s->data_fd, s->name, error));
}
