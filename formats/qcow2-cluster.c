/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2: guest offset -> host offset through the L1 table and cached L2
 * tables (standard and extended entries), block status and decoding reads.
 */
#include "config.h"

#include <string.h>

#include "formats/qcow2.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

uint64_t qcow2_l2_bitmap(const Qcow2State *s, const uint8_t *t, uint64_t i)
{
    return s->ext_l2 ? vd_be64(t + i * s->l2_esize + 8) : 0;
}

void qcow2_l2_set(const Qcow2State *s, uint8_t *t, uint64_t i, uint64_t entry, uint64_t bitmap)
{
    vd_put_be64(t + i * s->l2_esize, entry);
    if (s->ext_l2)
        vd_put_be64(t + i * s->l2_esize + 8, bitmap);
}

void qcow2_l2_update(Qcow2State *s, VdTable *t, uint64_t i, uint64_t entry, uint64_t bitmap)
{
    uint8_t raw[16];
    qcow2_l2_set(s, raw, 0, entry, bitmap);
    vd_table_cache_update(s->l2_cache, t, (size_t)(i * s->l2_esize), raw, s->l2_esize);
}

void qcow2_l2_store(Qcow2State *s, VdTable *t, uint64_t first, uint64_t n, const uint8_t *raw)
{
    vd_table_cache_update(s->l2_cache, t, (size_t)(first * s->l2_esize), raw,
                          (size_t)(n * s->l2_esize));
}

static bool has_data_file(const Qcow2State *s)
{
    return (s->incompat & QCOW2_INCOMPAT_DATA_FILE) != 0;
}

Qcow2ScType qcow2_sc_type(const Qcow2State *s, uint64_t entry, uint64_t bitmap, unsigned sc)
{
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        if (bitmap != 0 || has_data_file(s))
            return QCOW2_SC_INVALID;
        return QCOW2_SC_COMPRESSED;
    }
    bool has_offset =
        (entry & QCOW2_OFFSET_MASK) != 0 || (has_data_file(s) && (entry & QCOW2_OFLAG_COPIED));
    if (!s->ext_l2) {
        if (entry & QCOW2_OFLAG_ZERO)
            return QCOW2_SC_ZERO;
        return has_offset ? QCOW2_SC_NORMAL : QCOW2_SC_UNALLOCATED;
    }
    uint32_t alloc = (uint32_t)bitmap, zero = (uint32_t)(bitmap >> 32);
    if (alloc & zero)
        return QCOW2_SC_INVALID;
    if (!has_offset && alloc != 0)
        return QCOW2_SC_INVALID;
    if (zero & (1u << sc))
        return QCOW2_SC_ZERO;
    if (alloc & (1u << sc))
        return QCOW2_SC_NORMAL;
    return QCOW2_SC_UNALLOCATED;
}

void qcow2_compressed_range(const Qcow2State *s, uint64_t entry, uint64_t *start, uint64_t *len)
{
    uint64_t off = entry & s->coffset_mask;
    uint64_t nsect = ((entry >> s->csize_shift) & s->csize_mask) + 1;
    *start = off;
    *len = nsect * QCOW2_SECTOR - (off & (QCOW2_SECTOR - 1));
}

/* Where the L2 table for guest offset lies: 0 when none is allocated. */
static bool l2_offset_for(Qcow2State *s, uint64_t guest, uint64_t *l2off, GError **error)
{
    uint64_t l1i = guest >> (s->cluster_bits + s->l2_bits);
    if (l1i >= s->l1_entries) {
        *l2off = 0;
        return true;
    }
    uint64_t off = s->l1[l1i] & QCOW2_OFFSET_MASK;
    if (off & (s->cluster_size - 1)) {
        vd_set_error(error, EIO,
                     "%s: L2 table offset 0x%" G_GINT64_MODIFIER "x is not cluster aligned "
                     "(L1 index %" G_GUINT64_FORMAT ")",
                     s->name, off, l1i);
        return false;
    }
    *l2off = off;
    return true;
}

/* Where the L2 table for guest lies (0: none), and the entry's bytes
 * copied out of it (esize of them, at raw): l1_lock's read side held. */
static bool entry_locked(Qcow2State *s, uint64_t guest, uint64_t *l2off, uint8_t *raw,
                         GError **error)
{
    uint64_t i = (guest >> s->cluster_bits) & ((1ull << s->l2_bits) - 1);
    if (!l2_offset_for(s, guest, l2off, error))
        return false;
    return *l2off == 0 || vd_table_cache_read(s->l2_cache, *l2off, (size_t)(i * s->l2_esize),
                                              s->l2_esize, raw, error);
}

bool qcow2_get_entry(Qcow2State *s, uint64_t guest, uint64_t *entry, uint64_t *bitmap,
                     GError **error)
{
    uint8_t raw[16];
    uint64_t l2off;
    /* Held across the copy (a load on a miss too): the L1 entry and the
     * table it names are read as one, see qcow2.h. */
    vd_brlock_rdlock(&s->l1_lock);
    bool ok = entry_locked(s, guest, &l2off, raw, error);
    vd_brlock_rdunlock(&s->l1_lock);
    if (!ok)
        return false;
    *entry = l2off != 0 ? qcow2_l2_word(s, raw, 0) : 0;
    *bitmap = l2off != 0 ? qcow2_l2_bitmap(s, raw, 0) : 0;
    return true;
}

static VdExtentState state_of(const Qcow2State *s, Qcow2ScType type)
{
    switch (type) {
    case QCOW2_SC_NORMAL:
        return s->crypto ? VD_EXTENT_DATA_DECODE : VD_EXTENT_DATA;
    case QCOW2_SC_COMPRESSED:
        return VD_EXTENT_DATA_DECODE;
    case QCOW2_SC_ZERO:
        return VD_EXTENT_ZERO;
    default:
        return VD_EXTENT_UNALLOCATED;
    }
}

typedef struct {
    bool have;
    VdExtentState state;
    uint64_t length;
    uint64_t host; /* host offset of the run's first byte (DATA) */
} Run;

/* Add [guest, guest + n) of the given kind to the run; false when it does not fit. */
static bool run_add(Run *r, VdExtentState st, uint64_t host, uint64_t n)
{
    if (!r->have) {
        *r = (Run){.have = true, .state = st, .length = n, .host = host};
        return true;
    }
    if (st != r->state || (st == VD_EXTENT_DATA && host != r->host + r->length))
        return false;
    r->length += n;
    return true;
}

bool qcow2_entry_error(Qcow2State *s, uint64_t guest, uint64_t entry, uint64_t bitmap,
                       GError **error)
{
    vd_set_error(error, EIO,
                 "%s: invalid L2 entry 0x%016" G_GINT64_MODIFIER
                 "x (bitmap 0x%016" G_GINT64_MODIFIER "x) for guest offset 0x%" G_GINT64_MODIFIER
                 "x",
                 s->name, entry, bitmap, guest);
    return false;
}

#define STATUS_BATCH  256 /* L2 entries copied out per cache read */
#define STATUS_TABLES 64  /* L2 tables looked at per call */

/*
 * Extend the run through one L2 table's worth of guest space starting at
 * *pos (the table at l2off, or none when 0), copying its entries out in
 * batches. l1_lock's read side held. Returns false on error; *done when
 * the run cannot grow further.
 */
static bool run_table(Qcow2State *s, uint64_t l2off, uint64_t *pos, uint64_t end, Run *r,
                      bool *done, GError **error)
{
    uint64_t table_span = 1ull << (s->cluster_bits + s->l2_bits);
    uint64_t table_end = vd_min_u64((*pos | (table_span - 1)) + 1, end);
    if (l2off == 0) {
        if (!run_add(r, VD_EXTENT_UNALLOCATED, 0, table_end - *pos)) {
            *done = true;
            return true;
        }
        *pos = table_end;
        return true;
    }
    uint64_t sc_size = 1ull << s->sc_bits;
    uint8_t raw[STATUS_BATCH * 16];
    uint64_t base = 0, have = 0; /* raw holds entries [base, base + have) */
    while (*pos < table_end) {
        uint64_t guest = *pos;
        uint64_t i = (guest >> s->cluster_bits) & ((1ull << s->l2_bits) - 1);
        if (i < base || i >= base + have) {
            /* Only as many entries as the request still covers. */
            uint64_t last = ((table_end - 1) >> s->cluster_bits) & ((1ull << s->l2_bits) - 1);
            base = i;
            have = vd_min_u64(last - i + 1, STATUS_BATCH);
            if (!vd_table_cache_read(s->l2_cache, l2off, (size_t)(i * s->l2_esize),
                                     (size_t)(have * s->l2_esize), raw, error))
                return false;
        }
        uint64_t entry = qcow2_l2_word(s, raw, i - base);
        uint64_t bitmap = qcow2_l2_bitmap(s, raw, i - base);
        uint64_t cluster_end = vd_min_u64((guest | (s->cluster_size - 1)) + 1, table_end);
        uint64_t host_base = entry & QCOW2_OFFSET_MASK;
        Qcow2ScType first = qcow2_sc_type(s, entry, bitmap, 0);
        if (first == QCOW2_SC_INVALID)
            return qcow2_entry_error(s, guest, entry, bitmap, error);
        if ((first == QCOW2_SC_NORMAL || (s->ext_l2 && host_base != 0)) &&
            (host_base & (s->cluster_size - 1))) {
            vd_set_error(error, EIO,
                         "%s: data cluster offset 0x%" G_GINT64_MODIFIER
                         "x is not cluster aligned (guest offset 0x%" G_GINT64_MODIFIER "x)",
                         s->name, host_base, guest);
            return false;
        }
        while (guest < cluster_end) {
            unsigned sc = s->ext_l2 ? (unsigned)((guest >> s->sc_bits) & 31) : 0;
            uint64_t piece_end =
                s->ext_l2 ? vd_min_u64((guest | (sc_size - 1)) + 1, cluster_end) : cluster_end;
            Qcow2ScType type = qcow2_sc_type(s, entry, bitmap, sc);
            uint64_t host = host_base + (guest & (s->cluster_size - 1));
            if (!run_add(r, state_of(s, type), host, piece_end - guest)) {
                *done = true;
                *pos = guest;
                return true;
            }
            guest = piece_end;
        }
        *pos = cluster_end;
    }
    return true;
}

bool qcow2_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                        VdExtent *ext, GError **error)
{
    Qcow2State *s = qcow2_state(img);
    uint64_t end = offset + length;
    Run r = {0};
    uint64_t pos = offset;
    bool done = false, ok = true;
    vd_brlock_rdlock(&s->l1_lock);
    /* A bounded number of tables per call, each loaded if need be: a
     * shorter extent is as true, and the caller asks again. */
    for (int tables = 0; ok && !done && pos < end && tables < STATUS_TABLES; tables++) {
        uint64_t l2off;
        ok = l2_offset_for(s, pos, &l2off, error) &&
             run_table(s, l2off, &pos, end, &r, &done, error);
    }
    vd_brlock_rdunlock(&s->l1_lock);
    if (!ok)
        return false;
    (void)flags;
    ext->state = r.state;
    ext->length = r.length;
    ext->fd = r.state == VD_EXTENT_DATA ? s->data_fd : -1;
    ext->host_offset = r.state == VD_EXTENT_DATA ? r.host : 0;
    return true;
}

/* Decrypt-read host bytes for guest [guest, guest + n) of a normal subcluster. */
static bool read_encrypted(Qcow2State *s, uint8_t *buf, uint64_t n, uint64_t host, uint64_t guest,
                           GError **error)
{
    uint64_t head = host & (QCOW2_SECTOR - 1);
    uint64_t start = host - head;
    uint64_t len = qcow2_round_up(head + n, QCOW2_SECTOR);
    g_autofree uint8_t *tmp = g_malloc(len);
    if (!vd_host_pread(s->data_fd, s->name, tmp, len, start, true, error))
        return false;
    uint64_t sector = qcow2_crypto_sector(s, start, guest - head);
    if (!vd_luks_crypt(s->crypto, false, sector, tmp, len, error))
        return false;
    memcpy(buf, tmp + head, n);
    return true;
}

bool qcow2_pread(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error)
{
    Qcow2State *s = qcow2_state(img);
    uint8_t *p = buf;
    g_autofree uint8_t *cluster = NULL;
    while (len > 0) {
        uint64_t entry, bitmap;
        if (!qcow2_get_entry(s, offset, &entry, &bitmap, error))
            return false;
        uint64_t in_cluster = offset & (s->cluster_size - 1);
        unsigned sc = s->ext_l2 ? (unsigned)(in_cluster >> s->sc_bits) : 0;
        uint64_t unit = 1ull << s->sc_bits;
        uint64_t n = vd_min_u64(len, unit - (offset & (unit - 1)));
        Qcow2ScType type = qcow2_sc_type(s, entry, bitmap, sc);
        uint64_t host = (entry & QCOW2_OFFSET_MASK) + in_cluster;
        bool ok = true;
        switch (type) {
        case QCOW2_SC_INVALID:
            return qcow2_entry_error(s, offset, entry, bitmap, error);
        case QCOW2_SC_NORMAL:
            if ((entry & QCOW2_OFFSET_MASK) & (s->cluster_size - 1))
                return qcow2_entry_error(s, offset, entry, bitmap, error);
            ok = s->crypto ? read_encrypted(s, p, n, host, offset, error)
                           : vd_host_pread(s->data_fd, s->name, p, n, host, true, error);
            break;
        case QCOW2_SC_COMPRESSED:
            n = vd_min_u64(len, s->cluster_size - in_cluster);
            if (n == s->cluster_size) {
                ok = qcow2_read_compressed(s, entry, p, false, error);
                break;
            }
            if (cluster == NULL)
                cluster = g_malloc(s->cluster_size);
            ok = qcow2_read_compressed(s, entry, cluster, true, error);
            if (ok)
                memcpy(p, cluster + in_cluster, n);
            break;
        case QCOW2_SC_ZERO:
            memset(p, 0, n);
            break;
        case QCOW2_SC_UNALLOCATED:
            ok = vd_image_read_backing(img, p, n, offset, error);
            break;
        }
        if (!ok)
            return false;
        p += n;
        offset += n;
        len -= n;
    }
    return true;
}
