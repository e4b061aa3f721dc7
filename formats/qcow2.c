/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 (QEMU copy-on-write, versions 2 and 3): probe, header and header
 * extensions, feature bits, open/close, description. The mapping lives in
 * qcow2-cluster.c, writes in qcow2-alloc.c and qcow2-refcount.c.
 */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/qcow2.h"
#include "formats/qcow2-create.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-file.h"
#include "src/vd-info.h"
#include "src/vd-io.h"
#include "src/vd-log.h"

static int qcow2_probe(const VdProbe *probe)
{
    if (probe->head_len < 8 || vd_be32(probe->head) != QCOW2_MAGIC)
        return VD_PROBE_NO;
    uint32_t version = vd_be32(probe->head + 4);
    return version == 2 || version == 3 ? VD_PROBE_MAGIC : VD_PROBE_NO;
}

uint64_t qcow2_file_size(const Qcow2State *s)
{
    uint64_t size;
    return vd_host_size(s->fd, s->name, &size, NULL) ? size : UINT64_MAX;
}

void qcow2_state_free(Qcow2State *s)
{
    if (s == NULL)
        return;
    qcow2_refcount_free(s->rc);
    vd_meta_map_free(s->meta);
    qcow2_trust_free(s->trust);
    vd_table_cache_free(s->l2_cache);
    qcow2_decode_cache_free(s->decode);
    vd_luks_unref(s->crypto);
    if (s->own_data_fd && s->data_fd >= 0)
        vd_file_close(s->data_fd);
    g_free(s->l1);
    vd_brlock_clear(&s->l1_lock);
    g_free(s->backing_file);
    g_free(s->backing_format);
    g_free(s->data_file);
    g_free(s->data_file_path);
    g_clear_pointer(&s->origin, g_bytes_unref);
    if (s->features != NULL)
        g_array_unref(s->features);
    if (s->snapshots != NULL)
        g_ptr_array_unref(s->snapshots);
    g_free(s);
}

uint64_t qcow2_l1_entries_for(const Qcow2State *s, uint64_t size)
{
    unsigned shift = s->cluster_bits + s->l2_bits;
    return (size >> shift) + ((size & ((1ull << shift) - 1)) != 0);
}

bool qcow2_load_l1(Qcow2State *s, uint64_t offset, uint32_t entries, uint64_t file_size,
                   uint64_t **out, GError **error)
{
    uint64_t bytes = (uint64_t)entries * 8;
    if (bytes > QCOW2_MAX_L1_BYTES) {
        vd_set_error(error, EIO, "%s: L1 table of %u entries is larger than %u MiB", s->name,
                     entries, QCOW2_MAX_L1_BYTES >> 20);
        return false;
    }
    if (entries == 0) {
        *out = g_new0(uint64_t, 1);
        return true;
    }
    if ((offset & (s->cluster_size - 1)) || offset < s->cluster_size) {
        vd_set_error(error, EIO, "%s: L1 table offset 0x%" G_GINT64_MODIFIER "x is invalid",
                     s->name, offset);
        return false;
    }
    if (!vd_range_within(offset, bytes, file_size)) {
        vd_set_error(error, EIO,
                     "%s: L1 table at 0x%" G_GINT64_MODIFIER "x lies beyond the end of the file",
                     s->name, offset);
        return false;
    }
    g_autofree uint8_t *raw = g_malloc(bytes);
    if (!vd_host_pread(s->fd, s->name, raw, bytes, offset, false, error))
        return false;
    uint64_t *l1 = g_new(uint64_t, entries);
    for (uint32_t i = 0; i < entries; i++)
        l1[i] = vd_be64(raw + i * 8ull);
    *out = l1;
    return true;
}

static const char *known_feature_name(int type, unsigned bit)
{
    static const char *const incompat[] = {"dirty", "corrupt", "external data file",
                                           "compression type", "extended L2 entries"};
    if (type == 0 && bit < G_N_ELEMENTS(incompat))
        return incompat[bit];
    if (type == 1 && bit == 0)
        return "lazy refcounts";
    if (type == 2 && bit == 0)
        return "bitmaps";
    if (type == 2 && bit == 1)
        return "raw external data";
    return NULL;
}

/* A feature bit's name: from the image's feature name table, else ours. */
static char *feature_name(const Qcow2State *s, int type, unsigned bit)
{
    for (guint i = 0; s->features != NULL && i < s->features->len; i++) {
        const Qcow2FeatureName *f = &g_array_index(s->features, Qcow2FeatureName, i);
        if (f->type == type && f->bit == bit && f->name[0] != '\0')
            return g_strdup(f->name);
    }
    const char *k = known_feature_name(type, bit);
    return k ? g_strdup(k) : NULL;
}

static bool read_string(Qcow2State *s, const uint8_t *p, uint32_t len, char **out, const char *what,
                        GError **error)
{
    if (len == 0 || len > QCOW2_MAX_BACKING_NAME || memchr(p, '\0', len) != NULL) {
        vd_set_error(error, EIO, "%s: malformed %s header extension", s->name, what);
        return false;
    }
    g_free(*out);
    *out = g_strndup((const char *)p, len);
    return true;
}

static bool parse_extensions(Qcow2State *s, const uint8_t *hdr, uint64_t hdr_len, GError **error)
{
    uint64_t pos = s->version >= 3 ? s->header_length : QCOW2_HEADER_V2_LENGTH;
    s->features = g_array_new(FALSE, TRUE, sizeof(Qcow2FeatureName));
    while (pos + 8 <= hdr_len) {
        uint32_t type = vd_be32(hdr + pos), len = vd_be32(hdr + pos + 4);
        if (type == QCOW2_EXT_END)
            return true;
        pos += 8;
        if (len > hdr_len - pos) {
            vd_set_error(error, EIO,
                         "%s: header extension 0x%08x (%u bytes) runs past the first cluster",
                         s->name, type, len);
            return false;
        }
        const uint8_t *d = hdr + pos;
        switch (type) {
        case QCOW2_EXT_BACKING_FMT:
            if (!read_string(s, d, len, &s->backing_format, "backing format", error))
                return false;
            break;
        case QCOW2_EXT_DATA_FILE:
            if (!read_string(s, d, len, &s->data_file, "data file", error))
                return false;
            break;
        case QCOW2_EXT_FEATURES:
            for (uint32_t i = 0; i + 48 <= len; i += 48) {
                Qcow2FeatureName f = {.type = d[i], .bit = d[i + 1]};
                memcpy(f.name, d + i + 2, 46);
                f.name[46] = '\0';
                g_array_append_val(s->features, f);
            }
            break;
        case QCOW2_EXT_CRYPTO:
            if (len < 16) {
                vd_set_error(error, EIO, "%s: encryption header extension is too short", s->name);
                return false;
            }
            s->crypto_offset = vd_be64(d);
            s->crypto_length = vd_be64(d + 8);
            break;
        case QCOW2_EXT_BITMAPS:
            s->has_bitmaps_ext = true;
            if (len >= 24) {
                s->bitmaps_count = vd_be32(d);
                s->bitmaps_dir_size = vd_be64(d + 8);
                s->bitmaps_offset = vd_be64(d + 16);
            }
            break;
        case QCOW2_EXT_ORIGIN:
            g_clear_pointer(&s->origin, g_bytes_unref);
            s->origin = g_bytes_new(d, len);
            break;
        default:
            break; /* unknown extensions are skipped */
        }
        pos += qcow2_round_up(len, 8);
    }
    return true;
}

typedef struct {
    const char *what;
    uint64_t start, len;
} Area;

static bool check_overlaps(Qcow2State *s, const Area *a, size_t n, GError **error)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            if (a[i].len == 0 || a[j].len == 0)
                continue;
            if (a[i].start < a[j].start + a[j].len && a[j].start < a[i].start + a[i].len) {
                vd_set_error(error, EIO, "%s: the %s and the %s overlap", s->name, a[i].what,
                             a[j].what);
                return false;
            }
        }
    }
    return true;
}

static bool open_data_file(Qcow2State *s, VdImage *img, GError **error)
{
    if (s->data_file == NULL) {
        vd_set_error(error, ENOTSUP,
                     "%s: uses an external data file but does not name it in the header", s->name);
        return false;
    }
    /* Confined like backing files, never blocking, locked like the image. */
    s->data_file_path = vd_image_sibling_path(img, s->data_file);
    int fd = vd_image_open_member(img, s->data_file_path, "data file", VD_FILE_WRITE, error);
    if (fd < 0)
        return false;
    s->data_fd = fd;
    s->own_data_fd = true;
    return true;
}

static bool check_incompatible(Qcow2State *s, GError **error)
{
    uint64_t unknown = s->incompat & ~QCOW2_INCOMPAT_KNOWN;
    if (unknown == 0)
        return true;
    g_autoptr(GString) names = g_string_new(NULL);
    for (unsigned bit = 0; bit < 64; bit++) {
        if (!(unknown & (1ull << bit)))
            continue;
        g_autofree char *n = feature_name(s, 0, bit);
        g_string_append_printf(names, "%s%s%s%u%s", names->len ? ", " : "", n ? n : "",
                               n ? " (bit " : "bit ", bit, n ? ")" : "");
    }
    vd_set_error(error, ENOTSUP, "%s: unsupported incompatible qcow2 feature: %s", s->name,
                 names->str);
    return false;
}

static bool parse_header(Qcow2State *s, VdImage *img, uint64_t file_size, GError **error)
{
    uint8_t h[QCOW2_HEADER_V3_MIN] = {0};
    if (file_size < QCOW2_HEADER_V2_LENGTH) {
        vd_set_error(error, EIO, "%s: file too short for a qcow2 header", s->name);
        return false;
    }
    if (!vd_host_pread(s->fd, s->name, h, vd_min_u64(file_size, sizeof h), 0, false, error))
        return false;
    if (vd_be32(h) != QCOW2_MAGIC) {
        vd_set_error(error, EMEDIUMTYPE, "%s: not a qcow2 image", s->name);
        return false;
    }
    s->version = vd_be32(h + 4);
    if (s->version != 2 && s->version != 3) {
        vd_set_error(error, ENOTSUP, "%s: qcow2 version %u is not supported", s->name, s->version);
        return false;
    }
    uint64_t backing_off = vd_be64(h + 8);
    uint32_t backing_len = vd_be32(h + 16);
    s->cluster_bits = vd_be32(h + 20);
    s->virtual_size = vd_be64(h + 24);
    s->crypt_method = vd_be32(h + 32);
    uint32_t l1_size = vd_be32(h + 36);
    s->l1_offset = vd_be64(h + 40);
    s->refcount_table_offset = vd_be64(h + 48);
    s->refcount_table_clusters = vd_be32(h + 56);
    s->nb_snapshots = vd_be32(h + 60);
    s->snapshots_offset = vd_be64(h + 64);
    s->refcount_order = 4;
    s->header_length = QCOW2_HEADER_V2_LENGTH;
    if (s->version >= 3) {
        if (file_size < QCOW2_HEADER_V3_MIN) {
            vd_set_error(error, EIO, "%s: file too short for a version 3 header", s->name);
            return false;
        }
        s->incompat = vd_be64(h + 72);
        s->compat = vd_be64(h + 80);
        s->autoclear = vd_be64(h + 88);
        s->refcount_order = vd_be32(h + 96);
        s->header_length = vd_be32(h + 100);
    }
    if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        vd_set_error(error, EIO, "%s: cluster size 2^%u is not supported (512 B to 2 MiB)", s->name,
                     s->cluster_bits);
        return false;
    }
    s->cluster_size = 1ull << s->cluster_bits;
    if (s->version >= 3 && (s->header_length < QCOW2_HEADER_V3_MIN || s->header_length % 8 != 0 ||
                            s->header_length > s->cluster_size)) {
        vd_set_error(error, EIO, "%s: header length %u is invalid", s->name, s->header_length);
        return false;
    }
    if (s->refcount_order > 6) {
        vd_set_error(error, EIO, "%s: refcount order %u is larger than 6", s->name,
                     s->refcount_order);
        return false;
    }
    /* The whole first cluster: header, extensions and backing file name. */
    uint64_t hdr_len = vd_min_u64(s->cluster_size, file_size);
    g_autofree uint8_t *hdr = g_malloc0(s->cluster_size);
    if (!vd_host_pread(s->fd, s->name, hdr, hdr_len, 0, false, error))
        return false;
    if (s->header_length > hdr_len) {
        vd_set_error(error, EIO, "%s: header runs past the end of the file", s->name);
        return false;
    }
    if (s->version >= 3 && s->header_length > QCOW2_HEADER_V3_MIN)
        s->compression_type = hdr[104];
    if (!parse_extensions(s, hdr, hdr_len, error) || !check_incompatible(s, error))
        return false;

    if ((s->incompat & QCOW2_INCOMPAT_COMPRESSION) && s->compression_type == 0) {
        vd_set_error(error, EIO, "%s: compression type bit set but the type is zlib", s->name);
        return false;
    }
    if (!(s->incompat & QCOW2_INCOMPAT_COMPRESSION) && s->compression_type != 0) {
        vd_set_error(error, EIO, "%s: compression type %u without the compression type bit",
                     s->name, s->compression_type);
        return false;
    }
    if (!qcow2_compression_supported(s->compression_type)) {
        vd_set_error(error, ENOTSUP, "%s: compression type %u is not supported", s->name,
                     s->compression_type);
        return false;
    }
    s->ext_l2 = (s->incompat & QCOW2_INCOMPAT_EXTL2) != 0;
    if (s->ext_l2 && s->cluster_bits < 14) {
        vd_set_error(error, EIO, "%s: extended L2 entries need clusters of at least 16 KiB",
                     s->name);
        return false;
    }
    s->l2_esize = s->ext_l2 ? 16 : 8;
    s->l2_bits = s->cluster_bits - (s->ext_l2 ? 4 : 3);
    s->sc_bits = s->ext_l2 ? s->cluster_bits - 5 : s->cluster_bits;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (1ull << (s->cluster_bits - 8)) - 1;
    s->coffset_mask = (1ull << s->csize_shift) - 1;

    if (s->virtual_size > INT64_MAX) {
        vd_set_error(error, EIO, "%s: virtual size %" G_GUINT64_FORMAT " is too large", s->name,
                     s->virtual_size);
        return false;
    }
    uint64_t need = qcow2_l1_entries_for(s, s->virtual_size);
    if (need > QCOW2_MAX_L1_BYTES / 8 || l1_size < need) {
        vd_set_error(error, EIO,
                     "%s: L1 table of %u entries cannot map a virtual size of %" G_GUINT64_FORMAT
                     " bytes",
                     s->name, l1_size, s->virtual_size);
        return false;
    }
    s->l1_entries = l1_size;

    if (backing_off != 0) {
        if (backing_len == 0 || backing_len > QCOW2_MAX_BACKING_NAME ||
            !vd_range_within(backing_off, backing_len, hdr_len)) {
            vd_set_error(error, EIO,
                         "%s: backing file name (%u bytes at 0x%" G_GINT64_MODIFIER
                         "x) is not inside the first cluster",
                         s->name, backing_len, backing_off);
            return false;
        }
        s->backing_file = g_strndup((const char *)hdr + backing_off, backing_len);
        if (strlen(s->backing_file) != backing_len) {
            vd_set_error(error, EIO, "%s: backing file name contains a NUL byte", s->name);
            return false;
        }
    }
    (void)img;
    return true;
}

static bool check_tables(Qcow2State *s, uint64_t file_size, GError **error)
{
    uint64_t rt_bytes = (uint64_t)s->refcount_table_clusters << s->cluster_bits;
    if (s->refcount_table_clusters == 0 || rt_bytes > QCOW2_MAX_REFTABLE_BYTES ||
        (s->refcount_table_offset & (s->cluster_size - 1)) ||
        s->refcount_table_offset < s->cluster_size ||
        !vd_range_within(s->refcount_table_offset, rt_bytes, file_size)) {
        vd_set_error(error, EIO,
                     "%s: refcount table (%u clusters at 0x%" G_GINT64_MODIFIER
                     "x) is invalid or lies beyond the end of the file",
                     s->name, s->refcount_table_clusters, s->refcount_table_offset);
        return false;
    }
    Area areas[] = {
        {"header", 0, s->cluster_size},
        {"L1 table", s->l1_offset, s->l1_entries ? (uint64_t)s->l1_entries * 8 : 0},
        {"refcount table", s->refcount_table_offset, rt_bytes},
        {"snapshot table", s->snapshots_offset, s->snapshots_size},
        {"encryption header", s->crypto_offset, s->crypto_length},
    };
    return check_overlaps(s, areas, G_N_ELEMENTS(areas), error);
}

/* What the header alone decides, for open and peek alike: its fields, and
 * whether the image may be written. */
static bool read_header(Qcow2State *s, VdImage *img, uint64_t file_size, GError **error)
{
    if (!parse_header(s, img, file_size, error))
        return false;
    if (s->incompat & QCOW2_INCOMPAT_CORRUPT) {
        if (!img->read_only)
            g_warning("%s: image is marked corrupt; opening it read-only", img->name);
        vd_image_refuse_writes(img);
    }
    if (s->crypt_method == QCOW2_CRYPT_LUKS && s->crypto_length == 0) {
        vd_set_error(error, EIO, "%s: LUKS encryption without its header extension", img->name);
        return false;
    }
    if (s->crypt_method != QCOW2_CRYPT_LUKS && s->crypto_length != 0) {
        vd_set_error(error, EIO, "%s: encryption header extension without LUKS encryption",
                     img->name);
        return false;
    }
    if ((s->incompat & QCOW2_INCOMPAT_DIRTY) && s->has_bitmaps_ext) {
        if (!img->read_only)
            g_warning("%s: image is dirty and has persistent bitmaps, which vdiskfs cannot "
                      "account for in a refcount repair; opening it read-only",
                      img->name);
        vd_image_refuse_writes(img);
    }
    return true;
}

/*
 * The write side: refcounts, and where every structure lies. Refcount
 * structures or tables that are misplaced (outside the file, unaligned,
 * on top of each other or of another table) would make allocations
 * overwrite metadata, and acknowledged writes vanish: such an image is
 * served read-only (writers get EROFS) and the reason is logged.
 */
static bool open_write_side(VdImage *img, Qcow2State *s, GError **error)
{
    g_autoptr(GError) err = NULL;
    if (!qcow2_refcount_init(s, &err) || !qcow2_meta_build(s, &err)) {
        g_warning("%s; serving the image read-only", err->message);
        g_clear_pointer(&s->rc, qcow2_refcount_free);
        g_clear_pointer(&s->meta, vd_meta_map_free);
        vd_image_refuse_writes(img);
        return true;
    }
    s->trust = qcow2_trust_new();
    /* L2 tables name clusters whose refcounts the blocks hold: a flush of
     * L2 tables first writes back the blocks (qcow2_metadata_writeback
     * does so itself too, with the refcount table and a sync between).
     * Set only here, where rc lives as long as the L2 cache. */
    vd_table_cache_set_dependency(s->l2_cache, qcow2_refcount_blocks(s));
    bool needs_repair = (s->incompat & QCOW2_INCOMPAT_DIRTY) != 0;
    return !needs_repair || qcow2_repair(s, error);
}

static bool qcow2_open(VdImage *img, GError **error)
{
    Qcow2State *s = g_new0(Qcow2State, 1);
    vd_brlock_init(&s->l1_lock);
    s->name = img->name;
    s->img = img;
    s->fd = img->fd;
    s->data_fd = img->fd;
    uint64_t file_size;
    bool ok = vd_host_size(img->fd, img->name, &file_size, error) &&
              read_header(s, img, file_size, error);
    ok = ok && vd_image_mem_reserve(img, (uint64_t)s->l1_entries * 8, "L1 table", error);
    ok = ok && qcow2_load_l1(s, s->l1_offset, s->l1_entries, file_size, &s->l1, error);
    ok = ok && qcow2_read_snapshots(s, file_size, error);
    ok = ok && check_tables(s, file_size, error);
    if (ok && (s->incompat & QCOW2_INCOMPAT_DATA_FILE)) {
        s->data_file_raw = (s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW) != 0;
        ok = open_data_file(s, img, error);
    }
    if (ok && s->crypt_method != QCOW2_CRYPT_NONE)
        ok = qcow2_crypto_open(s, img, error);
    if (!ok) {
        qcow2_state_free(s);
        return false;
    }
    s->l2_cache = qcow2_l2_cache_new(s, img->ctx->metadata_cache_bytes);
    s->decode = qcow2_decode_cache_new(s->cluster_size, img->ctx->decode_cache_bytes);
    s->l1_dirty_lo = UINT32_MAX;
    img->opaque = s;
    img->size = s->virtual_size;
    img->decode_unit = s->cluster_size;
    if (s->origin != NULL)
        img->origin = g_bytes_ref(s->origin);
    if (s->backing_file != NULL)
        vd_image_set_backing(img, s->backing_file, s->backing_format);
    if (!img->read_only && !open_write_side(img, s, error)) {
        img->opaque = NULL;
        qcow2_state_free(s);
        return false;
    }
    return true;
}

/* The header only: no L1 or refcount table, no snapshot table, no key. */
static bool qcow2_peek(VdImage *img, GError **error)
{
    g_autoptr(Qcow2State) s = g_new0(Qcow2State, 1);
    vd_brlock_init(&s->l1_lock);
    s->name = img->name;
    s->img = img;
    s->fd = img->fd;
    s->data_fd = -1;
    uint64_t file_size;
    if (!vd_host_size(img->fd, img->name, &file_size, error) ||
        !read_header(s, img, file_size, error))
        return false;
    if (s->incompat & QCOW2_INCOMPAT_DATA_FILE) {
        if (s->data_file == NULL) {
            vd_set_error(error, ENOTSUP,
                         "%s: uses an external data file but does not name it in the header",
                         s->name);
            return false;
        }
        /* Named as open names it; not opened (nor its confinement checked). */
        g_autofree char *path = vd_image_sibling_path(img, s->data_file);
        vd_image_add_member(img, path);
    }
    img->size = s->virtual_size;
    return true;
}

/* As QEMU does: the corrupt bit, durable, so that no later open writes it. */
static void qcow2_mark_corrupt(VdImage *img)
{
    Qcow2State *s = qcow2_state(img);
    if (s == NULL || s->is_snapshot)
        return;
    if (s->version < 3) {
        g_warning("%s: a version 2 image has no corrupt flag to set", s->name);
        return;
    }
    /* s->incompat stays as it is: fast writers read it concurrently. */
    uint8_t b[8];
    vd_put_be64(b, s->incompat | QCOW2_INCOMPAT_CORRUPT);
    g_autoptr(GError) err = NULL;
    if (!vd_host_pwrite(s->fd, s->name, b, sizeof b, 72, &err) ||
        !vd_host_fdatasync(s->fd, s->name, &err))
        g_warning("%s: could not set the corrupt flag: %s", s->name, err->message);
}

static void qcow2_close(VdImage *img)
{
    qcow2_state_free(img->opaque);
    img->opaque = NULL;
}

static void describe_features(const Qcow2State *s, VdInfo *info)
{
    const uint64_t bits[3] = {s->incompat, s->compat, s->autoclear};
    static const char *const kinds[3] = {"incompatible", "compatible", "autoclear"};
    bool any = false;
    for (int type = 0; type < 3; type++) {
        for (unsigned bit = 0; bit < 64; bit++) {
            if (!(bits[type] & (1ull << bit)))
                continue;
            g_autofree char *n = feature_name(s, type, bit);
            if (n != NULL)
                vd_info_add_list_item(info, "features", "%s", n);
            else
                vd_info_add_list_item(info, "features", "%s bit %u", kinds[type], bit);
            any = true;
        }
    }
    if (!any)
        vd_info_add_list_item(info, "features", "none");
}

static void qcow2_describe(VdImage *img, VdInfo *info)
{
    const Qcow2State *s = qcow2_state(img);
    vd_info_add_u64(info, "version", s->version);
    vd_info_add_str(info, "compat", "%s", s->version >= 3 ? "1.1" : "0.10");
    vd_info_add_u64(info, "cluster_size", s->cluster_size);
    vd_info_add_u64(info, "refcount_bits", 1ull << s->refcount_order);
    vd_info_add_str(info, "compression_type", "%s",
                    s->compression_type == QCOW2_COMPRESS_ZSTD ? "zstd" : "zlib");
    qcow2_crypto_describe(s, info);
    vd_info_add_bool(info, "extended_l2", s->ext_l2);
    vd_info_add_bool(info, "lazy_refcounts", (s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS) != 0);
    vd_info_add_bool(info, "dirty", (s->incompat & QCOW2_INCOMPAT_DIRTY) != 0);
    vd_info_add_bool(info, "corrupt", (s->incompat & QCOW2_INCOMPAT_CORRUPT) != 0);
    describe_features(s, info);
    if (s->backing_format != NULL)
        vd_info_add_str(info, "backing_format", "%s", s->backing_format);
    if (s->data_file != NULL) {
        vd_info_add_str(info, "data_file", "%s", s->data_file);
        vd_info_add_bool(info, "data_file_raw", s->data_file_raw);
    }
    vd_info_add_u64(info, "l1_entries", s->l1_entries);
    if (s->is_snapshot)
        return;
    qcow2_describe_bitmaps(s, info);
    vd_info_add_u64(info, "snapshot_count", s->snapshots ? s->snapshots->len : 0);
    for (guint i = 0; s->snapshots != NULL && i < s->snapshots->len; i++) {
        const Qcow2Snapshot *sn = s->snapshots->pdata[i];
        g_autoptr(GDateTime) dt = g_date_time_new_from_unix_utc(sn->date_sec);
        g_autofree char *date = dt ? g_date_time_format(dt, "%Y-%m-%dT%H:%M:%SZ") : g_strdup("?");
        vd_info_add_list_item(info, "snapshots",
                              "id=%s name=%s date=%s virtual_size=%" G_GUINT64_FORMAT
                              " vm_state_size=%" G_GUINT64_FORMAT,
                              sn->id, sn->name, date, sn->virtual_size, sn->vm_state_size);
    }
}

const VdDriver vd_qcow2_driver = {
    .name = "qcow2",
    .description = "QEMU copy-on-write image, versions 2 and 3 (qcow2)",
    .caps = VD_CAP_WRITE | VD_CAP_BACKING | VD_CAP_SNAPSHOTS | VD_CAP_SERIAL_WRITES,
    .probe = qcow2_probe,
    .open = qcow2_open,
    .create = qcow2_create,
    .close = qcow2_close,
    .peek = qcow2_peek,
    .pread = qcow2_pread,
    .pwrite = qcow2_pwrite,
    .pwrite_fast = qcow2_pwrite_fast,
    .block_status = qcow2_block_status,
    .flush = qcow2_flush,
    .write_zeroes = qcow2_write_zeroes,
    .truncate = qcow2_truncate,
    .describe = qcow2_describe,
    .snapshot_list = qcow2_snapshot_list,
    .snapshot_open = qcow2_snapshot_open,
    .mark_corrupt = qcow2_mark_corrupt,
    .check = qcow2_check,
};
