/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow (version 1), QEMU's original copy-on-write format: a 48-byte
 * big-endian header ("QFI\xfb", version 1, backing file name offset and
 * size, mtime, size, cluster_bits, l2_bits, crypt_method, L1 offset),
 * one L1 table and L2 tables of big-endian 64-bit cluster offsets. An L2
 * entry with the top bit set is a compressed cluster (raw deflate): the
 * low 63 - cluster_bits bits are the stream's offset, the cluster_bits
 * bits above them its length in bytes. Encrypted images (crypt_method 1)
 * hold AES-128-CBC data, each 512-byte sector with the guest sector
 * number (little-endian) as IV; the key is the passphrase's first 16
 * bytes, zero padded. Compressed clusters are not encrypted.
 *
 * The qcow2 driver matches the same magic: this one only claims version 1.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "formats/qcow1.h"
#include "src/vd-claims.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-info.h"
#include "src/vd-inflate.h"
#include "src/vd-io.h"

static int qcow1_probe(const VdProbe *probe)
{
    if (probe->head_len >= QCOW1_HEADER_SIZE && memcmp(probe->head, "QFI\xfb", 4) == 0 &&
        vd_be32(probe->head + 4) == 1)
        return VD_PROBE_MAGIC;
    return VD_PROBE_NO;
}

static uint64_t file_end(const Qcow1State *s)
{
    return __atomic_load_n(&s->file_end, __ATOMIC_ACQUIRE);
}

/* [host, host + len) overlaps the header, the backing file name or the L1. */
static bool metadata_overlap(const Qcow1State *s, uint64_t host, uint64_t len)
{
    uint64_t end = host + len;
    uint64_t hdr_end = QCOW1_HEADER_SIZE;
    if (s->backing_offset != 0 && s->backing_size != 0)
        hdr_end = MAX(hdr_end, s->backing_offset + s->backing_size);
    return host < hdr_end ||
           (s->l1_entries > 0 && host < s->l1_offset + s->l1_entries * 8 && s->l1_offset < end);
}

bool qcow1_entries(VdImage *img, uint64_t ci, size_t max, uint64_t *out, size_t *n,
                   uint64_t *l2_host, GError **error)
{
    Qcow1State *s = img->opaque;
    uint64_t l1i = ci >> s->l2_bits;
    uint64_t l2i = ci & (s->l2_entries - 1);
    if (l1i >= s->l1_entries) {
        vd_set_error(error, EIO, "%s: cluster %" PRIu64 " lies past the L1 table", img->name, ci);
        return false;
    }
    uint64_t t = __atomic_load_n(&s->l1[l1i], __ATOMIC_ACQUIRE);
    *l2_host = t;
    if (t == 0) {
        *n = (size_t)MIN((uint64_t)MAX(max, 1), s->l2_entries - l2i);
        memset(out, 0, *n * 8);
        return true;
    }
    *n = qed_tcache_get(&s->l2, t, l2i, max, out, error);
    return *n > 0;
}

bool qcow1_cluster(VdImage *img, uint64_t ci, uint64_t entry, Qcow1Cluster *c, GError **error)
{
    Qcow1State *s = img->opaque;
    uint64_t end = file_end(s);
    if (entry == 0) {
        *c = (Qcow1Cluster){QCOW1_UNALLOCATED, 0, 0};
        return true;
    }
    if (entry & QCOW1_COMPRESSED) {
        unsigned shift = 63 - s->cluster_bits;
        uint64_t off = entry & ((1ull << shift) - 1);
        uint64_t len = (entry >> shift) & (s->cluster_size - 1);
        if (len == 0 || !vd_range_within(off, len, end) || off < QCOW1_HEADER_SIZE) {
            vd_set_error(error, EIO,
                         "%s: compressed cluster %" PRIu64 " (%" PRIu64 " bytes at 0x%" PRIx64
                         ") lies outside the file",
                         img->name, ci, len, off);
            return false;
        }
        *c = (Qcow1Cluster){QCOW1_COMPRESSED_CLUSTER, off, len};
        return true;
    }
    if (entry >= end || entry < QCOW1_HEADER_SIZE) {
        vd_set_error(error, EIO,
                     "%s: cluster %" PRIu64 " at 0x%" PRIx64 " lies outside the file (%" PRIu64
                     " bytes)",
                     img->name, ci, entry, end);
        return false;
    }
    *c = (Qcow1Cluster){QCOW1_NORMAL, entry, 0};
    return true;
}

static bool inflate_cluster(VdImage *img, const uint8_t *in, size_t in_len, uint8_t *out,
                            size_t out_len, uint64_t ci, GError **error)
{
    /* Raw deflate, which must fill the cluster. */
    size_t got = 0;
    if (!vd_inflate(VD_DEFLATE_RAW, in, in_len, out, out_len, &got) || got != out_len) {
        vd_set_error(error, EIO, "%s: compressed cluster %" PRIu64 " does not inflate (%s)",
                     img->name, ci, got == out_len ? "corrupt stream" : "short stream");
        return false;
    }
    return true;
}

bool qcow1_decompress(VdImage *img, uint64_t ci, const Qcow1Cluster *c, uint64_t entry,
                      uint8_t *out, GError **error)
{
    Qcow1State *s = img->opaque;
    size_t cs = (size_t)s->cluster_size;
    g_mutex_lock(&s->dec_lock);
    for (unsigned i = 0; i < s->dec_slots; i++) {
        if (s->dec[i].key == entry) {
            memcpy(out, s->dec[i].data, cs);
            g_mutex_unlock(&s->dec_lock);
            return true;
        }
    }
    g_mutex_unlock(&s->dec_lock);

    g_autofree uint8_t *in = g_malloc(c->csize);
    if (!vd_host_pread(img->fd, img->name, in, c->csize, c->host, false, error) ||
        !inflate_cluster(img, in, c->csize, out, cs, ci, error))
        return false;
    if (s->dec_slots == 0)
        return true;
    g_mutex_lock(&s->dec_lock);
    Qcow1Decoded *d = &s->dec[s->dec_hand];
    s->dec_hand = (s->dec_hand + 1) % s->dec_slots;
    if (d->data == NULL)
        d->data = g_malloc(cs);
    memcpy(d->data, out, cs);
    d->key = entry;
    g_mutex_unlock(&s->dec_lock);
    return true;
}

bool qcow1_crypt(VdImage *img, uint8_t *buf, size_t len, uint64_t guest_offset, bool encrypt,
                 GError **error)
{
    Qcow1State *s = img->opaque;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    bool ok = ctx != NULL &&
              EVP_CipherInit_ex(ctx, EVP_aes_128_cbc(), NULL, s->key, NULL, encrypt ? 1 : 0) == 1;
    if (ok)
        EVP_CIPHER_CTX_set_padding(ctx, 0);
    for (size_t done = 0; ok && done < len; done += QCOW1_SECTOR) {
        uint8_t iv[16] = {0};
        vd_put_le64(iv, (guest_offset + done) / QCOW1_SECTOR);
        int outl = 0;
        ok = EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, -1) == 1 &&
             EVP_CipherUpdate(ctx, buf + done, &outl, buf + done, QCOW1_SECTOR) == 1 &&
             outl == QCOW1_SECTOR;
    }
    EVP_CIPHER_CTX_free(ctx);
    if (!ok)
        vd_set_error(error, EIO, "%s: AES-CBC %s failed at 0x%" PRIx64, img->name,
                     encrypt ? "encryption" : "decryption", guest_offset);
    return ok;
}

static bool qcow1_pread(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error)
{
    Qcow1State *s = img->opaque;
    uint8_t *p = buf;
    g_autofree uint8_t *tmp = NULL;
    while (len > 0) {
        uint64_t ci = offset >> s->cluster_bits;
        uint64_t within = offset & (s->cluster_size - 1);
        size_t n = (size_t)MIN(s->cluster_size - within, len);
        uint64_t e, l2;
        size_t got;
        Qcow1Cluster c;
        if (!qcow1_entries(img, ci, 1, &e, &got, &l2, error) ||
            !qcow1_cluster(img, ci, e, &c, error))
            return false;
        if (c.kind == QCOW1_UNALLOCATED) {
            if (!vd_image_read_backing(img, p, n, offset, error))
                return false;
        } else if (c.kind == QCOW1_COMPRESSED_CLUSTER) {
            if (tmp == NULL)
                tmp = g_malloc(s->cluster_size);
            if (!qcow1_decompress(img, ci, &c, e, tmp, error))
                return false;
            memcpy(p, tmp + within, n);
        } else if (!qcow1_encrypted(s)) {
            if (!vd_host_pread(img->fd, img->name, p, n, c.host + within, true, error))
                return false;
        } else {
            if (tmp == NULL)
                tmp = g_malloc(s->cluster_size);
            uint64_t a0 = within / QCOW1_SECTOR * QCOW1_SECTOR;
            uint64_t a1 = (within + n + QCOW1_SECTOR - 1) / QCOW1_SECTOR * QCOW1_SECTOR;
            if (!vd_host_pread(img->fd, img->name, tmp, a1 - a0, c.host + a0, true, error) ||
                !qcow1_crypt(img, tmp, a1 - a0, (ci << s->cluster_bits) + a0, false, error))
                return false;
            memcpy(p, tmp + (within - a0), n);
        }
        p += n;
        offset += n;
        len -= n;
    }
    return true;
}

static bool qcow1_classify(VdImage *img, uint64_t ci, uint64_t entry, QedMapped *m, GError **error)
{
    Qcow1State *s = img->opaque;
    Qcow1Cluster c;
    if (!qcow1_cluster(img, ci, entry, &c, error))
        return false;
    m->host = c.host;
    if (c.kind == QCOW1_UNALLOCATED)
        m->state = VD_EXTENT_UNALLOCATED;
    else if (c.kind == QCOW1_COMPRESSED_CLUSTER || qcow1_encrypted(s))
        m->state = VD_EXTENT_DATA_DECODE;
    else
        m->state = VD_EXTENT_DATA;
    return true;
}

static bool qcow1_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                               VdExtent *ext, GError **error)
{
    Qcow1State *s = img->opaque;
    (void)flags;
    QedMap map = {s->cluster_bits, qcow1_entries, qcow1_classify};
    return qed_map_status(img, &map, offset, length, ext, error);
}

static void qcow1_close(VdImage *img)
{
    Qcow1State *s = img->opaque;
    if (s == NULL)
        return;
    OPENSSL_cleanse(s->key, sizeof s->key);
    g_free(s->l1);
    qed_tcache_clear(&s->l2);
    g_clear_pointer(&s->meta, vd_meta_map_free);
    for (unsigned i = 0; i < QCOW1_DECODE_SLOTS; i++)
        g_free(s->dec[i].data);
    g_mutex_clear(&s->dec_lock);
    g_free(s);
    img->opaque = NULL;
}

/* What a data write must not touch, given the checked L2 tables. */
static bool build_meta(VdImage *img, const GArray *tables, GError **error)
{
    Qcow1State *s = img->opaque;
    g_autoptr(VdMetaMap) m = vd_meta_map_new(img->name);
    vd_meta_map_add(m, 0, QCOW1_HEADER_SIZE, "header", NULL);
    if (s->backing_offset != 0)
        vd_meta_map_add(m, s->backing_offset, s->backing_size, "backing file name", NULL);
    vd_meta_map_add(m, s->l1_offset, s->l1_entries * 8, "L1 table", NULL);
    for (guint i = 0; i < tables->len; i++)
        vd_meta_map_add(m, g_array_index(tables, uint64_t, i), s->l2_entries * 8, "L2 table", NULL);
    if (!vd_meta_map_seal(m, error))
        return false;
    s->meta = g_steal_pointer(&m);
    return true;
}

/* L2 tables: inside the file, clear of the header and the L1, and of each
 * other (two L1 entries naming one table included). */
static bool check_tables(VdImage *img, uint64_t file_size, GError **error)
{
    Qcow1State *s = img->opaque;
    uint64_t bytes = s->l2_entries * 8;
    g_autoptr(GArray) tables = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    for (uint64_t i = 0; i < s->l1_entries; i++) {
        uint64_t t = s->l1[i];
        if (t == 0)
            continue;
        if (!vd_range_within(t, bytes, file_size) || metadata_overlap(s, t, bytes)) {
            vd_set_error(error, EIO,
                         "%s: L2 table %" PRIu64 " at 0x%" PRIx64
                         " lies over the header or the L1 table or beyond the end of the file",
                         img->name, i, t);
            return false;
        }
        g_array_append_val(tables, t);
    }
    uint64_t clash;
    if (!qed_tables_sort(tables, bytes, &clash)) {
        vd_set_error(error, EIO, "%s: L2 table at 0x%" PRIx64 " overlaps another L2 table",
                     img->name, clash);
        return false;
    }
    return img->read_only || build_meta(img, tables, error);
}

/*
 * The consistency walk of a read-write open. qcow keeps no refcounts: the
 * writer trusts that the host bytes an entry names are that entry's alone,
 * writes allocated clusters in place and puts new ones at the end of the
 * file. Two entries on one cluster, an entry on a table, the L1 or the
 * header, or an entry past the end of the file (where the next allocation
 * goes) would let a write to one guest range silently change another, so
 * such an image is served read-only, the reason kept as its error.
 *
 * Claims are in host clusters. QEMU puts tables and data clusters on
 * cluster boundaries; an unaligned one claims every cluster it touches,
 * so unaligned neighbours closer than a cluster count as a collision:
 * that costs writability, never data. Compressed streams are packed
 * several to a cluster and never written in place (a write replaces them
 * with a new cluster), so they may share clusters with each other (a map
 * of their own), but not with anything that is written.
 */
typedef enum { USE_HEADER, USE_BACKING, USE_L1, USE_L2, USE_DATA, USE_COMPRESSED } UseKind;

typedef struct {
    UseKind kind;
    uint64_t index; /* USE_L2: its L1 entry; USE_DATA, USE_COMPRESSED: the guest cluster */
    uint64_t host, len;
} Use;

typedef struct Walk Walk;
/* false: stop the walk there. */
typedef bool (*UseFn)(Walk *w, const Use *u);

struct Walk {
    VdImage *img;
    Qcow1State *s;
    uint64_t file_size;
    uint64_t guest_clusters; /* of the disk: entries past it are never read or written */
    uint8_t *table;          /* one L2 table, as on disk */
    VdClaims *used;          /* written in place: header, backing name, L1, L2 tables, data */
    VdClaims *packed;        /* compressed streams */
    uint64_t end;            /* the furthest byte a table or an entry covers */
    char *problem;           /* why the image cannot be written */
    /* The owner search: the use to find a rival of, and the one found. */
    const Use *self;
    uint64_t unit;
    bool want_packed;
    bool bytewise;
    Use found;
    bool have_found;
};

/* Every use of the file in a fixed order (header, backing file name, L1,
 * the L2 tables, their entries), until fn says stop. False on a host I/O
 * error only. */
static bool each_use(Walk *w, UseFn fn, GError **error)
{
    Qcow1State *s = w->s;
    uint64_t table_bytes = s->l2_entries * 8;
    Use fixed[] = {
        {USE_HEADER, 0, 0, QCOW1_HEADER_SIZE},
        {USE_BACKING, 0, s->backing_offset, s->backing_offset != 0 ? s->backing_size : 0},
        {USE_L1, 0, s->l1_offset, s->l1_entries * 8},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(fixed); i++)
        if (fixed[i].len > 0 && !fn(w, &fixed[i]))
            return true;
    for (uint64_t i = 0; i < s->l1_entries; i++) {
        Use u = {USE_L2, i, s->l1[i], table_bytes};
        if (u.host != 0 && !fn(w, &u))
            return true;
    }
    unsigned shift = 63 - s->cluster_bits;
    for (uint64_t i = 0; i < s->l1_entries; i++) {
        if (s->l1[i] == 0)
            continue;
        if (!vd_host_pread(w->img->fd, w->img->name, w->table, table_bytes, s->l1[i], false, error))
            return false;
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t ci = (i << s->l2_bits) + j;
            uint64_t e = vd_be64(w->table + 8 * j);
            if (ci >= w->guest_clusters)
                break;
            if (e == 0)
                continue;
            Use u = {USE_DATA, ci, e, s->cluster_size};
            if (e & QCOW1_COMPRESSED)
                u = (Use){USE_COMPRESSED, ci, e & ((1ull << shift) - 1),
                          (e >> shift) & (s->cluster_size - 1)};
            if (!fn(w, &u))
                return true;
        }
    }
    return true;
}

static char *describe(const Walk *w, const Use *u)
{
    switch (u->kind) {
    case USE_HEADER:
        return g_strdup("the header");
    case USE_BACKING:
        return g_strdup("the backing file name");
    case USE_L1:
        return g_strdup("the L1 table");
    case USE_L2:
        return g_strdup_printf("L2 table %" PRIu64 " (at 0x%" PRIx64 ")", u->index, u->host);
    case USE_DATA:
        return g_strdup_printf("guest cluster 0x%" PRIx64, u->index << w->s->cluster_bits);
    case USE_COMPRESSED:
        break;
    }
    return g_strdup_printf("compressed guest cluster 0x%" PRIx64, u->index << w->s->cluster_bits);
}

/* The host clusters [*first, *end) that u touches. */
static void units_of(const Walk *w, const Use *u, uint64_t *first, uint64_t *end)
{
    *first = u->host >> w->s->cluster_bits;
    *end = (u->host + u->len + w->s->cluster_size - 1) >> w->s->cluster_bits;
}

/* Owner search: the first use (other than w->self) of the kind looked
 * for that touches w->unit or, with w->bytewise, shares bytes with
 * w->self (the header and the L1 share a cluster: name the right one). */
static bool find_rival(Walk *w, const Use *u)
{
    const Use *me = w->self;
    uint64_t first, end;
    if (u->kind == me->kind && u->index == me->index)
        return true;
    if ((u->kind == USE_COMPRESSED) != w->want_packed)
        return true;
    units_of(w, u, &first, &end);
    if (w->unit < first || w->unit >= end)
        return true;
    if (w->bytewise && (u->host >= me->host + me->len || me->host >= u->host + u->len))
        return true;
    w->found = *u;
    w->have_found = true;
    return false;
}

/* u collides with an earlier use on host cluster unit: say which. */
static bool collision(Walk *w, const Use *u, uint64_t unit, bool in_packed)
{
    w->self = u;
    w->unit = unit;
    w->want_packed = in_packed;
    w->have_found = false;
    for (int pass = 0; pass < 2 && !w->have_found; pass++) {
        g_autoptr(GError) ignored = NULL; /* read before: cannot fail now but for the host */
        w->bytewise = pass == 0;
        each_use(w, find_rival, &ignored);
    }
    g_autofree char *mine = describe(w, u);
    g_autofree char *theirs = w->have_found ? describe(w, &w->found) : g_strdup("another use");
    w->problem = g_strdup_printf("%s: %s and %s share host cluster 0x%" PRIx64, w->img->name, mine,
                                 theirs, unit << w->s->cluster_bits);
    return false;
}

static bool claim(Walk *w, const Use *u)
{
    if (u->kind == USE_DATA && u->host >= w->file_size) {
        g_autofree char *d = describe(w, u);
        w->problem = g_strdup_printf("%s: %s maps to host 0x%" PRIx64
                                     ", past the end of the file (%" PRIu64 " bytes)",
                                     w->img->name, d, u->host, w->file_size);
        return false;
    }
    if (u->kind == USE_COMPRESSED &&
        (u->len == 0 || !vd_range_within(u->host, u->len, w->file_size))) {
        g_autofree char *d = describe(w, u);
        w->problem = g_strdup_printf("%s: %s (%" PRIu64 " bytes at 0x%" PRIx64
                                     ") is empty or lies outside the file (%" PRIu64 " bytes)",
                                     w->img->name, d, u->len, u->host, w->file_size);
        return false;
    }
    /* Tables, the header and the L1 were checked against the file. A data
     * cluster may start in the file's last bytes and end past them: what
     * it covers is the end new clusters must go after. */
    w->end = MAX(w->end, u->host + u->len);
    uint64_t first, end;
    units_of(w, u, &first, &end);
    for (uint64_t k = first; k < end; k++) {
        if (u->kind == USE_COMPRESSED) {
            if (vd_claims_is_taken(w->used, k))
                return collision(w, u, k, false);
            vd_claims_take(w->packed, k, 1);
        } else if (vd_claims_is_taken(w->packed, k)) {
            return collision(w, u, k, true);
        } else if (!vd_claims_take(w->used, k, 1) && u->kind != USE_HEADER &&
                   u->kind != USE_BACKING && u->kind != USE_L1) {
            /* The header, the backing file name and the L1 may share
             * clusters: they are never written over each other. */
            return collision(w, u, k, false);
        }
    }
    return true;
}

/* Read-write opens: the walk above, once. An image that fails it is
 * served read-only, the open succeeding so that reads go on; the claims
 * are dropped afterwards, as no entry points past the end it leaves in
 * s->file_end. False only when a table cannot be read. */
static bool check_layout(VdImage *img, uint64_t file_size, GError **error)
{
    Qcow1State *s = img->opaque;
    uint64_t disk = s->size_field / QCOW1_SECTOR * QCOW1_SECTOR;
    /* A data cluster starting in the file's last byte ends a cluster later. */
    uint64_t units = file_size / s->cluster_size + 2;
    Walk w = {.img = img, .s = s, .file_size = file_size, .end = file_size};
    w.guest_clusters = (disk + s->cluster_size - 1) >> s->cluster_bits;
    g_autoptr(GError) err = NULL;
    g_autoptr(VdClaims) used = vd_claims_new(img, units, &err);
    g_autoptr(VdClaims) packed = used != NULL ? vd_claims_new(img, units, &err) : NULL;
    g_autofree uint8_t *table = g_malloc(s->l2_entries * 8);
    if (packed == NULL) {
        w.problem = g_strdup_printf("%s; its tables cannot be checked", err->message);
    } else {
        w.used = used;
        w.packed = packed;
        w.table = table;
        if (!each_use(&w, claim, error)) {
            g_free(w.problem);
            return false;
        }
    }
    if (w.problem == NULL) {
        s->file_end = w.end;
        return true;
    }
    g_autoptr(GError) why = NULL;
    vd_set_error(&why, EIO, "%s; serving the image read-only", w.problem);
    g_free(w.problem);
    vd_image_record_error(img, why);
    g_clear_pointer(&s->meta, vd_meta_map_free);
    vd_image_refuse_writes(img);
    return true;
}

static bool open_backing(VdImage *img, uint64_t file_size, GError **error)
{
    Qcow1State *s = img->opaque;
    if (s->backing_offset == 0 || s->backing_size == 0)
        return true;
    if (s->backing_size > QCOW1_MAX_BACKING ||
        !vd_range_within(s->backing_offset, s->backing_size, file_size) ||
        s->backing_offset < QCOW1_HEADER_SIZE) {
        vd_set_error(error, EIO,
                     "%s: backing file name (%" PRIu32 " bytes at 0x%" PRIx64
                     ") is too long or lies outside the file",
                     img->name, s->backing_size, s->backing_offset);
        return false;
    }
    if (s->l1_entries > 0 && s->backing_offset < s->l1_offset + s->l1_entries * 8 &&
        s->l1_offset < s->backing_offset + s->backing_size) {
        vd_set_error(error, EIO, "%s: backing file name overlaps the L1 table", img->name);
        return false;
    }
    g_autofree char *name = g_malloc0(s->backing_size + 1);
    if (!vd_host_pread(img->fd, img->name, name, s->backing_size, s->backing_offset, false, error))
        return false;
    if (name[0] == '\0')
        return true;
    vd_image_set_backing(img, name, NULL);
    return true;
}

static bool load_key(VdImage *img, GError **error)
{
    Qcow1State *s = img->opaque;
    char *pass = vd_context_passphrase(img->ctx, img->name, error);
    if (pass == NULL)
        return false;
    size_t n = strlen(pass);
    memcpy(s->key, pass, MIN(n, sizeof s->key));
    vd_secret_free(pass);
    return true;
}

/* The header of img->fd into s, checked (the L1 table's place included,
 * not its contents). Reads nothing else. */
static bool read_header(VdImage *img, Qcow1State *s, uint64_t *file_size, GError **error)
{
    uint8_t h[QCOW1_HEADER_SIZE];
    if (!vd_host_size(img->fd, img->name, file_size, error))
        return false;
    if (*file_size < QCOW1_HEADER_SIZE) {
        vd_set_error(error, EIO, "%s: too small to hold a qcow header", img->name);
        return false;
    }
    if (!vd_host_pread(img->fd, img->name, h, sizeof h, 0, false, error))
        return false;
    if (memcmp(h, "QFI\xfb", 4) != 0) {
        vd_set_error(error, EIO, "%s: no qcow magic", img->name);
        return false;
    }
    if (vd_be32(h + 4) != 1) {
        vd_set_error(error, ENOTSUP, "%s: qcow version %" PRIu32 " is not qcow version 1",
                     img->name, vd_be32(h + 4));
        return false;
    }
    s->backing_offset = vd_be64(h + 8);
    s->backing_size = vd_be32(h + 16);
    s->mtime = vd_be32(h + 20);
    s->size_field = vd_be64(h + 24);
    s->cluster_bits = h[32];
    s->l2_bits = h[33];
    s->crypt_method = vd_be32(h + 36);
    s->l1_offset = vd_be64(h + 40);
    s->file_end = *file_size;
    if (s->cluster_bits < 9 || s->cluster_bits > 16 || s->l2_bits < 6 || s->l2_bits > 13) {
        vd_set_error(error, EIO, "%s: cluster_bits %u / l2_bits %u out of range (9-16 / 6-13)",
                     img->name, s->cluster_bits, s->l2_bits);
        return false;
    }
    if (s->crypt_method > QCOW1_CRYPT_AES) {
        vd_set_error(error, ENOTSUP, "%s: unknown encryption method %" PRIu32, img->name,
                     s->crypt_method);
        return false;
    }
    s->cluster_size = 1ull << s->cluster_bits;
    s->l2_entries = 1ull << s->l2_bits;
    unsigned shift = s->cluster_bits + s->l2_bits;
    uint64_t l1 = (s->size_field >> shift) + ((s->size_field & ((1ull << shift) - 1)) != 0);
    if (l1 > QCOW1_MAX_L1 || s->size_field > INT64_MAX) {
        vd_set_error(error, EIO,
                     "%s: virtual size %" PRIu64 " is absurd (L1 of %" PRIu64 " entries)",
                     img->name, s->size_field, l1);
        return false;
    }
    s->l1_entries = l1;
    if (!vd_range_within(s->l1_offset, l1 * 8, *file_size) ||
        (l1 > 0 && s->l1_offset < QCOW1_HEADER_SIZE)) {
        vd_set_error(error, EIO,
                     "%s: L1 table at 0x%" PRIx64 " (%" PRIu64
                     " entries) lies over the header or beyond the end of the file",
                     img->name, s->l1_offset, l1);
        return false;
    }
    return true;
}

static bool qcow1_open(VdImage *img, GError **error)
{
    Qcow1State *s = g_new0(Qcow1State, 1);
    img->opaque = s;
    g_mutex_init(&s->dec_lock);
    uint64_t file_size;
    bool ok = false;
    if (!read_header(img, s, &file_size, error))
        goto out;
    {
        uint64_t l1 = s->l1_entries;
        if (!vd_image_mem_reserve(img, l1 * 8, "L1 table", error))
            goto out;
        g_autofree uint8_t *raw = g_malloc(l1 * 8 + 1);
        if (!vd_host_pread(img->fd, img->name, raw, l1 * 8, s->l1_offset, false, error))
            goto out;
        s->l1 = g_new0(uint64_t, l1 + 1);
        for (uint64_t i = 0; i < l1; i++)
            s->l1[i] = vd_be64(raw + 8 * i);
    }
    qed_tcache_init(&s->l2, img, true, s->l2_entries, img->ctx->metadata_cache_bytes);
    if (!open_backing(img, file_size, error) || !check_tables(img, file_size, error) ||
        (!img->read_only && !check_layout(img, file_size, error)))
        goto out;
    if (qcow1_encrypted(s) && !load_key(img, error))
        goto out;
    s->dec_slots =
        (unsigned)MIN(img->ctx->decode_cache_bytes / s->cluster_size, (uint64_t)QCOW1_DECODE_SLOTS);
    img->size = s->size_field / QCOW1_SECTOR * QCOW1_SECTOR;
    img->decode_unit = s->cluster_size;
    ok = true;
out:
    if (!ok)
        qcow1_close(img);
    return ok;
}

/* The size is in the header; the L1 table stays on disk and no key is
 * needed. */
static bool qcow1_peek(VdImage *img, GError **error)
{
    Qcow1State s = {0};
    uint64_t file_size;
    if (!read_header(img, &s, &file_size, error))
        return false;
    img->size = s.size_field / QCOW1_SECTOR * QCOW1_SECTOR;
    return true;
}

static void qcow1_describe(VdImage *img, VdInfo *info)
{
    Qcow1State *s = img->opaque;
    vd_info_add_u64(info, "version", 1);
    vd_info_add_u64(info, "cluster_size", s->cluster_size);
    vd_info_add_u64(info, "l2_entries", s->l2_entries);
    vd_info_add_u64(info, "table_size", s->l2_entries * 8);
    vd_info_add_u64(info, "l1_entries", s->l1_entries);
    vd_info_add_str(info, "encryption", "%s", qcow1_encrypted(s) ? "aes-cbc" : "none");
    vd_info_add_u64(info, "mtime", s->mtime);
    uint64_t tables = 0;
    for (uint64_t i = 0; i < s->l1_entries; i++)
        tables += __atomic_load_n(&s->l1[i], __ATOMIC_ACQUIRE) != 0;
    vd_info_add_u64(info, "l2_tables", tables);
}

const VdDriver vd_qcow_driver = {
    .name = "qcow",
    .description = "qcow: QEMU copy-on-write, version 1 (compression, AES-CBC encryption)",
    .caps = VD_CAP_WRITE | VD_CAP_BACKING | VD_CAP_SERIAL_WRITES,
    .probe = qcow1_probe,
    .open = qcow1_open,
    .close = qcow1_close,
    .peek = qcow1_peek,
    .pread = qcow1_pread,
    .pwrite = qcow1_pwrite,
    .block_status = qcow1_block_status,
    .flush = qcow1_flush,
    .describe = qcow1_describe,
};
