/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * EWF: the walk over every segment's section chain, the volume, and the
 * chunk tables (their headers at open, their entries on first use).
 */
#include "config.h"

#include <string.h>
#include <zlib.h>

#include "sources/ewf-internal.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"

/* Text sections (header, header2, xhash) larger than this are not read:
 * they are a few hundred bytes, and only metadata. */
#define EWF_MAX_TEXT (1u << 20)
/* Tables and data sections are reserved from the budget this many at a
 * time, so that a file of tiny sections cannot take memory unaccounted. */
#define EWF_RESERVE_STEP 1024

bool ewf_read(EwfSet *s, unsigned seg, void *buf, size_t len, uint64_t off, GError **error)
{
    return s->io->read(s->user, seg, buf, len, off, error);
}

static uint32_t adler(const uint8_t *p, size_t len)
{
    return (uint32_t)adler32(adler32(0, NULL, 0), p, (uInt)len);
}

/* Count more elements of size bytes into *reserved, from the budget. */
static bool reserve_more(EwfSet *s, guint have, guint *reserved, size_t size, const char *what,
                         GError **error)
{
    if (have < *reserved)
        return true;
    uint64_t bytes = (uint64_t)EWF_RESERVE_STEP * size;
    if (s->io->reserve != NULL && !s->io->reserve(s->user, bytes, what, error))
        return false;
    s->reserved += bytes;
    *reserved += EWF_RESERVE_STEP;
    return true;
}

/* Inflate a small metadata section whole. NULL when it is not zlib. */
static uint8_t *inflate_text(const uint8_t *in, size_t len, size_t *out_len)
{
    z_stream z = {0};
    if (inflateInit(&z) != Z_OK)
        return NULL;
    size_t cap = 4096, n = 0;
    uint8_t *out = g_malloc(cap + 1);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    int r = Z_OK;
    while (r == Z_OK) {
        if (n == cap) {
            if (cap >= EWF_MAX_TEXT)
                break;
            cap *= 2;
            out = g_realloc(out, cap + 1);
        }
        z.next_out = out + n;
        z.avail_out = (uInt)(cap - n);
        r = inflate(&z, Z_NO_FLUSH);
        n = cap - z.avail_out;
        if (r == Z_BUF_ERROR && z.avail_out > 0)
            break; /* input ends before the stream */
    }
    inflateEnd(&z);
    if (r != Z_STREAM_END) {
        g_free(out);
        return NULL;
    }
    out[n] = 0;
    *out_len = n;
    return out;
}

static void read_text(EwfSet *s, unsigned seg, const char *type, uint64_t start, uint64_t len)
{
    if (len == 0 || len > EWF_MAX_TEXT)
        return;
    g_autofree uint8_t *raw = g_malloc(len);
    g_autoptr(GError) err = NULL;
    size_t n = 0;
    g_autofree uint8_t *text = NULL;
    if (!ewf_read(s, seg, raw, len, start, &err) || (text = inflate_text(raw, len, &n)) == NULL) {
        g_debug("%s: %s section at 0x%" G_GINT64_MODIFIER "x is not readable, ignored", s->name,
                type, start - EWF_SECTION);
        return;
    }
    if (strcmp(type, "xhash") == 0)
        ewf_meta_add_xhash(&s->meta, text, n);
    else
        ewf_meta_add_header(&s->meta, text, n, strcmp(type, "header2") == 0);
}

static const char *media_type_name(uint8_t t)
{
    switch (t) {
    case 0x00:
        return "removable";
    case 0x01:
        return "fixed";
    case 0x03:
        return "optical";
    case 0x10:
        return "memory";
    default:
        return "unknown";
    }
}

/* A volume, disk or data section. The first one found describes the
 * media; data sections in later segments must agree with it. */
static bool read_volume(EwfSet *s, unsigned seg, const char *type, uint64_t start, uint64_t len,
                        GError **error)
{
    uint8_t v[EWF_VOLUME_E01];
    bool e01 = len >= EWF_VOLUME_E01;
    size_t n = e01 ? EWF_VOLUME_E01 : EWF_VOLUME_S01;
    if (len < EWF_VOLUME_S01) {
        vd_set_error(error, EIO,
                     "%s: %s section at 0x%" G_GINT64_MODIFIER "x of segment %u is too short "
                     "(%" G_GUINT64_FORMAT " bytes)",
                     s->name, type, start - EWF_SECTION, seg, len);
        return false;
    }
    if (!ewf_read(s, seg, v, n, start, error))
        return false;
    uint32_t sum = vd_le32(v + n - 4);
    /* Some Logicube products leave the data section's checksum 0. */
    if (adler(v, n - 4) != sum && !(sum == 0 && strcmp(type, "data") == 0)) {
        vd_set_error(error, EIO,
                     "%s: %s section at 0x%" G_GINT64_MODIFIER "x of segment %u has a bad checksum",
                     s->name, type, start - EWF_SECTION, seg);
        return false;
    }
    uint32_t spc = vd_le32(v + 8), bps = vd_le32(v + 12);
    uint64_t sectors = e01 ? vd_le64(v + 16) : vd_le32(v + 16);
    uint64_t chunk = (uint64_t)spc * bps, media;
    if (spc == 0 || bps == 0 || chunk > EWF_MAX_CHUNK ||
        __builtin_mul_overflow(sectors, (uint64_t)bps, &media) || media > INT64_MAX) {
        vd_set_error(
            error, EIO,
            "%s: %s section of segment %u: %u sectors of %u bytes per chunk, %" G_GUINT64_FORMAT
            " sectors: not a usable geometry",
            s->name, type, seg, spc, bps, sectors);
        return false;
    }
    if (e01 && v[0] == 0x0e) {
        vd_set_error(error, EIO, "%s: logical evidence (L01), not a disk: not supported", s->name);
        return false;
    }
    if (!s->have_volume) {
        s->have_volume = true;
        s->smart = !e01;
        s->chunk_size = (uint32_t)chunk;
        s->media_size = media;
        if (e01) {
            memcpy(s->guid, v + 64, 16);
            s->meta.media_type = media_type_name(v[0]);
        }
        return true;
    }
    if (strcmp(type, "data") == 0 && (chunk != s->chunk_size || media != s->media_size ||
                                      (e01 && !s->smart && memcmp(s->guid, v + 64, 16) != 0))) {
        vd_set_error(error, EIO,
                     "%s: segment %u belongs to another evidence set (its data section disagrees "
                     "with the volume)",
                     s->name, seg);
        return false;
    }
    return true;
}

static bool add_range(EwfSet *s, unsigned seg, uint64_t start, uint64_t end, GError **error)
{
    if (start >= end)
        return true;
    if (!reserve_more(s, s->ranges->len, &s->ranges_reserved, sizeof(EwfRange), "section list",
                      error))
        return false;
    EwfRange r = {seg, start, end};
    g_array_append_val(s->ranges, r);
    return true;
}

/* A table (or table2) section. A table whose header checksum fails is
 * taken from the table2 that follows it, when that one is sound. */
static bool read_table(EwfSet *s, unsigned seg, const char *type, const char *prev, uint64_t start,
                       uint64_t len, GError **error)
{
    uint64_t at = start - EWF_SECTION;
    uint8_t h[EWF_TABLE_HEADER];
    if (len < sizeof h) {
        vd_set_error(error, EIO,
                     "%s: %s section at 0x%" G_GINT64_MODIFIER "x of segment %u is too short",
                     s->name, type, at, seg);
        return false;
    }
    if (!ewf_read(s, seg, h, sizeof h, start, error))
        return false;
    bool mirror = strcmp(type, "table2") == 0 && strcmp(prev, "table") == 0;
    bool sound = adler(h, 20) == vd_le32(h + 20);
    uint32_t count = vd_le32(h);
    uint64_t base = s->smart ? 0 : vd_le64(h + 8);
    uint64_t footer = s->smart ? 0 : 4, entries = (uint64_t)count * 4;
    if (sound && EWF_TABLE_HEADER + entries + footer > len) {
        vd_set_error(error, EIO,
                     "%s: %s section at 0x%" G_GINT64_MODIFIER "x of segment %u: %u entries do not "
                     "fit in its %" G_GUINT64_FORMAT " bytes",
                     s->name, type, at, seg, count, len);
        return false;
    }
    if (mirror && !s->table_pending) {
        /* The table was sound: keep the copy for when its entries are not. */
        EwfTable *t =
            s->tables->len ? &g_array_index(s->tables, EwfTable, s->tables->len - 1) : NULL;
        if (sound && t != NULL && t->seg == seg && t->count == count && t->base == base)
            t->mirror_off = start + EWF_TABLE_HEADER;
        return true;
    }
    if (!sound) {
        if (!mirror) {
            s->table_pending = true; /* unless the table2 after it is sound */
            s->pending_at = at;
            return true;
        }
        vd_set_error(error, EIO,
                     "%s: table at 0x%" G_GINT64_MODIFIER "x of segment %u and its table2 have bad "
                     "checksums",
                     s->name, s->pending_at, seg);
        return false;
    }
    s->table_pending = false;
    /* SMART and EnCase 1 keep the chunks in the table section, after the
     * entries. */
    if (!add_range(s, seg, start + EWF_TABLE_HEADER + entries + footer, start + len, error))
        return false;
    if (count == 0)
        return true;
    if (!reserve_more(s, s->tables->len, &s->tables_reserved, sizeof(EwfTable), "table list",
                      error))
        return false;
    EwfTable t = {
        .seg = seg,
        .entries_off = start + EWF_TABLE_HEADER,
        .count = count,
        .used = count,
        .base = base,
        .first = s->entries_total,
        .footer = footer != 0,
    };
    g_array_append_val(s->tables, t);
    s->entries_total += count;
    return true;
}

static void read_hashes(EwfSet *s, unsigned seg, const char *type, uint64_t start, uint64_t len)
{
    uint8_t d[80];
    bool digest = strcmp(type, "digest") == 0;
    size_t n = digest ? 80 : 36;
    if (len < n || !ewf_read(s, seg, d, n, start, NULL) || adler(d, n - 4) != vd_le32(d + n - 4)) {
        g_debug("%s: %s section of segment %u is not sound, ignored", s->name, type, seg);
        return;
    }
    if (s->meta.md5[0] == 0)
        ewf_meta_set_hash(s->meta.md5, d, 16);
    if (digest && s->meta.sha1[0] == 0)
        ewf_meta_set_hash(s->meta.sha1, d + 16, 20);
}

/* error2: the sectors that could not be read when acquiring (zeros). */
static void read_errors(EwfSet *s, unsigned seg, uint64_t start, uint64_t len)
{
    uint8_t h[520];
    if (len < sizeof h || !ewf_read(s, seg, h, sizeof h, start, NULL) ||
        adler(h, 516) != vd_le32(h + 516))
        return;
    uint64_t count = vd_le32(h), shown = MIN(count, (uint64_t)EWF_MAX_ERRORS_SHOWN);
    if (count * 8 > len - sizeof h)
        return;
    g_autofree uint8_t *e = g_malloc(shown * 8 + 1);
    if (!ewf_read(s, seg, e, shown * 8, start + sizeof h, NULL))
        return;
    for (uint64_t i = 0; i < shown; i++)
        g_ptr_array_add(s->meta.errors,
                        g_strdup_printf("%u+%u", vd_le32(e + 8 * i), vd_le32(e + 8 * i + 4)));
    if (count > shown)
        g_ptr_array_add(s->meta.errors,
                        g_strdup_printf("(%" G_GUINT64_FORMAT " ranges in all)", count));
}

static bool read_section(EwfSet *s, unsigned seg, const char *type, const char *prev,
                         uint64_t start, uint64_t len, GError **error)
{
    if (s->table_pending && strcmp(type, "table2") != 0) {
        vd_set_error(error, EIO,
                     "%s: table at 0x%" G_GINT64_MODIFIER "x of segment %u has a bad checksum",
                     s->name, s->pending_at, seg);
        return false;
    }
    if (strcmp(type, "header2") == 0 || strcmp(type, "header") == 0 || strcmp(type, "xhash") == 0) {
        read_text(s, seg, type, start, len);
    } else if (strcmp(type, "volume") == 0 || strcmp(type, "disk") == 0 ||
               strcmp(type, "data") == 0) {
        return read_volume(s, seg, type, start, len, error);
    } else if (strcmp(type, "sectors") == 0) {
        return add_range(s, seg, start, start + len, error);
    } else if (strcmp(type, "table") == 0 || strcmp(type, "table2") == 0) {
        if (!s->have_volume) {
            vd_set_error(error, EIO,
                         "%s: %s section at 0x%" G_GINT64_MODIFIER
                         "x of segment %u comes before any "
                         "volume section",
                         s->name, type, start - EWF_SECTION, seg);
            return false;
        }
        return read_table(s, seg, type, prev, start, len, error);
    } else if (strcmp(type, "hash") == 0 || strcmp(type, "digest") == 0) {
        read_hashes(s, seg, type, start, len);
    } else if (strcmp(type, "error2") == 0) {
        read_errors(s, seg, start, len);
    }
    return true;
}

/* One segment's chain; *more when it ends with next. */
static bool walk_segment(EwfSet *s, unsigned seg, bool *more, GError **error)
{
    uint64_t size;
    if (!s->io->segment(s->user, seg, &size, error))
        return false;
    g_array_append_val(s->seg_sizes, size);
    uint8_t fh[EWF_FILE_HEADER];
    if (size < sizeof fh || !ewf_read(s, seg, fh, sizeof fh, 0, error)) {
        if (error != NULL && *error == NULL)
            vd_set_error(error, EIO, "%s: segment %u is too short for an EWF file header", s->name,
                         seg);
        return false;
    }
    if (memcmp(fh, EWF_MAGIC, 8) != 0) {
        vd_set_error(error, EIO, "%s: segment %u is not an EWF segment file", s->name, seg);
        return false;
    }
    if (vd_le16(fh + 9) != seg) {
        vd_set_error(error, EIO, "%s: segment %u says it is segment %u (of another set?)", s->name,
                     seg, vd_le16(fh + 9));
        return false;
    }
    char prev[17] = "";
    for (uint64_t off = sizeof fh;;) {
        uint8_t d[EWF_SECTION];
        if (off > size || size - off < sizeof d) {
            vd_set_error(error, EIO,
                         "%s: segment %u is truncated: no section at 0x%" G_GINT64_MODIFIER
                         "x (the file ends at 0x%" G_GINT64_MODIFIER "x)",
                         s->name, seg, off, size);
            return false;
        }
        if (!ewf_read(s, seg, d, sizeof d, off, error))
            return false;
        if (adler(d, 72) != vd_le32(d + 72)) {
            vd_set_error(error, EIO,
                         "%s: section descriptor at 0x%" G_GINT64_MODIFIER
                         "x of segment %u has a bad checksum",
                         s->name, off, seg);
            return false;
        }
        char type[17];
        for (unsigned i = 0; i < 16; i++)
            type[i] = d[i] == 0 || g_ascii_isalnum(d[i]) ? (char)d[i] : '?';
        type[16] = 0;
        uint64_t next = vd_le64(d + 16), size_field = vd_le64(d + 24);
        if (strcmp(type, "done") == 0 || strcmp(type, "next") == 0) {
            if (s->table_pending)
                return read_section(s, seg, type, prev, 0, 0, error);
            *more = type[0] == 'n';
            return true;
        }
        if (next <= off || next - off < EWF_SECTION) {
            vd_set_error(error, EIO,
                         "%s: %s section at 0x%" G_GINT64_MODIFIER "x of segment %u: the next one "
                         "at 0x%" G_GINT64_MODIFIER "x is not after it (a loop?)",
                         s->name, type, off, seg, next);
            return false;
        }
        if (next > size) {
            vd_set_error(error, EIO,
                         "%s: %s section at 0x%" G_GINT64_MODIFIER
                         "x of segment %u runs to 0x%" G_GINT64_MODIFIER
                         "x, past the end of the file (0x%" G_GINT64_MODIFIER "x): truncated?",
                         s->name, type, off, seg, next, size);
            return false;
        }
        /* Both say where the section ends: they must agree (an image that
         * reads differently by either is refused). */
        if (size_field != 0 && size_field != next - off) {
            vd_set_error(error, EIO,
                         "%s: %s section at 0x%" G_GINT64_MODIFIER
                         "x of segment %u: its size 0x%" G_GINT64_MODIFIER
                         "x disagrees with the next section's offset 0x%" G_GINT64_MODIFIER "x",
                         s->name, type, off, seg, size_field, next);
            return false;
        }
        if (!read_section(s, seg, type, prev, off + EWF_SECTION, next - off - EWF_SECTION, error))
            return false;
        memcpy(prev, type, sizeof prev);
        off = next;
    }
}

void ewf_set_free(EwfSet *s)
{
    if (s == NULL)
        return;
    for (guint i = 0; s->tables != NULL && i < s->tables->len; i++)
        g_free(g_array_index(s->tables, EwfTable, i).entries);
    if (s->tables)
        g_array_unref(s->tables);
    if (s->ranges)
        g_array_unref(s->ranges);
    if (s->seg_sizes)
        g_array_unref(s->seg_sizes);
    if (s->zero_forms)
        g_ptr_array_unref(s->zero_forms);
    if (s->io->release != NULL && s->reserved > 0)
        s->io->release(s->user, s->reserved);
    g_free(s->zstate);
    ewf_meta_clear(&s->meta);
    g_mutex_clear(&s->load_lock);
    g_free(s->name);
    g_free(s);
}

EwfSet *ewf_set_open(const EwfIo *io, void *user, const char *name, GError **error)
{
    g_autoptr(EwfSet) s = g_new0(EwfSet, 1);
    s->io = io;
    s->user = user;
    s->name = g_strdup(name);
    s->seg_sizes = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    s->ranges = g_array_new(FALSE, FALSE, sizeof(EwfRange));
    s->tables = g_array_new(FALSE, FALSE, sizeof(EwfTable));
    g_mutex_init(&s->load_lock);
    ewf_meta_init(&s->meta);
    bool more = true;
    for (unsigned seg = 1; more; seg++) {
        if (seg > EWF_MAX_SEGMENTS) {
            vd_set_error(error, EIO, "%s: more than %u segments", name, EWF_MAX_SEGMENTS);
            return NULL;
        }
        more = false;
        if (!walk_segment(s, seg, &more, error))
            return NULL;
        s->nsegs = seg;
    }
    if (!s->have_volume) {
        vd_set_error(error, EIO, "%s: no volume section: not an evidence file of a disk", name);
        return NULL;
    }
    s->chunks = s->media_size / s->chunk_size + (s->media_size % s->chunk_size != 0);
    if (s->entries_total < s->chunks) {
        vd_set_error(error, EIO,
                     "%s: the chunk tables list %" G_GUINT64_FORMAT
                     " chunks, the media (%" G_GUINT64_FORMAT " bytes) needs %" G_GUINT64_FORMAT
                     ": segments missing or truncated?",
                     name, s->entries_total, s->media_size, s->chunks);
        return NULL;
    }
    /* Entries past the media are not used. */
    while (s->tables->len > 0 &&
           g_array_index(s->tables, EwfTable, s->tables->len - 1).first >= s->chunks)
        g_array_set_size(s->tables, s->tables->len - 1);
    if (s->tables->len > 0) {
        EwfTable *t = &g_array_index(s->tables, EwfTable, s->tables->len - 1);
        t->used = (uint32_t)(s->chunks - t->first);
    }
    /* 2 bits a chunk for zeros, 1 for checked in place, in one block. */
    uint64_t zwords = s->chunks / 16 + 1, vwords = s->chunks / 32 + 1;
    uint64_t zbytes = (zwords + vwords) * sizeof(gint);
    if (io->reserve != NULL && !io->reserve(user, zbytes, "chunk map", error))
        return NULL;
    s->reserved += zbytes;
    s->zstate = g_try_malloc0(zbytes);
    s->verified = s->zstate ? s->zstate + zwords : NULL;
    if (s->zstate == NULL) {
        vd_set_error(error, ENOMEM, "%s: no memory for the map of %" G_GUINT64_FORMAT " chunks",
                     name, s->chunks);
        return NULL;
    }
    return g_steal_pointer(&s);
}

uint64_t ewf_media_size(const EwfSet *s)
{
    return s->media_size;
}

uint32_t ewf_chunk_size(const EwfSet *s)
{
    return s->chunk_size;
}

uint64_t ewf_chunk_count(const EwfSet *s)
{
    return s->chunks;
}

unsigned ewf_segment_count(const EwfSet *s)
{
    return s->nsegs;
}

const EwfMeta *ewf_meta(const EwfSet *s)
{
    return &s->meta;
}

/* The entries of t, read and checked on first use. */
static const EwfEntries *table_entries(EwfSet *s, EwfTable *t, GError **error)
{
    EwfEntries *e = g_atomic_pointer_get(&t->entries);
    if (e != NULL)
        return e;
    g_mutex_lock(&s->load_lock);
    if ((e = t->entries) == NULL) {
        size_t bytes = (size_t)t->count * 4;
        uint64_t need = bytes + sizeof(EwfEntries);
        g_autofree uint8_t *raw = NULL;
        bool ok = s->io->reserve == NULL || s->io->reserve(s->user, need, "chunk table", error);
        if (ok) {
            s->reserved += need;
            raw = g_try_malloc(bytes + 4);
            e = g_try_malloc(need);
            ok = raw != NULL && e != NULL;
            if (!ok)
                vd_set_error(error, ENOMEM, "%s: no memory for a table of %u chunks", s->name,
                             t->count);
        }
        bool reserved = ok;
        ok = ok && ewf_read(s, t->seg, raw, bytes + (t->footer ? 4 : 0), t->entries_off, error);
        if (ok && t->footer && adler(raw, bytes) != vd_le32(raw + bytes)) {
            ok = t->mirror_off != 0 && ewf_read(s, t->seg, raw, bytes + 4, t->mirror_off, error) &&
                 adler(raw, bytes) == vd_le32(raw + bytes);
            if (!ok && (error == NULL || *error == NULL))
                vd_set_error(error, EIO,
                             "%s: the chunk table at 0x%" G_GINT64_MODIFIER
                             "x of segment %u has a bad checksum%s",
                             s->name, t->entries_off - EWF_TABLE_HEADER - EWF_SECTION, t->seg,
                             t->mirror_off ? ", and so has its table2" : "");
        }
        if (ok) {
            /* EnCase 6.7.1 let offsets run past 31 bits in segments over
             * 2 GiB: the top bit is then the offset's, and the chunks from
             * there on are stored uncompressed. */
            e->overflow_from = t->count;
            uint32_t prev = 0;
            for (uint32_t i = 0; i < t->count; i++) {
                uint32_t v = vd_le32(raw + 4 * i), r = v & 0x7fffffff;
                e->e[i] = v;
                if (e->overflow_from == t->count && i > 0 && r < prev && v > prev)
                    e->overflow_from = i;
                prev = e->overflow_from == t->count ? r : v;
            }
            g_atomic_pointer_set(&t->entries, e);
        } else {
            g_clear_pointer(&e, g_free);
            if (reserved && s->io->release != NULL)
                s->io->release(s->user, need);
            if (reserved)
                s->reserved -= need;
        }
    }
    g_mutex_unlock(&s->load_lock);
    return e;
}

static uint64_t entry_offset(const EwfEntries *e, uint32_t k, bool *compressed)
{
    uint32_t v = e->e[k];
    if (k >= e->overflow_from) {
        *compressed = false;
        return v;
    }
    *compressed = (v >> 31) != 0;
    return v & 0x7fffffff;
}

/* The data section of seg that holds off, or NULL. */
static const EwfRange *find_range(const EwfSet *s, unsigned seg, uint64_t off)
{
    guint lo = 0, hi = s->ranges->len;
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        const EwfRange *r = &g_array_index(s->ranges, EwfRange, mid);
        if (r->seg < seg || (r->seg == seg && r->end <= off))
            lo = mid + 1;
        else
            hi = mid;
    }
    const EwfRange *r = lo < s->ranges->len ? &g_array_index(s->ranges, EwfRange, lo) : NULL;
    return r != NULL && r->seg == seg && r->start <= off && off < r->end ? r : NULL;
}

bool ewf_chunk_locate(EwfSet *s, uint64_t i, EwfChunk *c, GError **error)
{
    if (i >= s->chunks || s->tables->len == 0) {
        vd_set_error(error, EIO, "%s: chunk %" G_GUINT64_FORMAT " is past the media", s->name, i);
        return false;
    }
    guint lo = 0, hi = s->tables->len;
    while (hi - lo > 1) {
        guint mid = lo + (hi - lo) / 2;
        if (g_array_index(s->tables, EwfTable, mid).first <= i)
            lo = mid;
        else
            hi = mid;
    }
    EwfTable *t = &g_array_index(s->tables, EwfTable, lo);
    const EwfEntries *e = table_entries(s, t, error);
    if (e == NULL)
        return false;
    uint32_t k = (uint32_t)(i - t->first);
    bool compressed, next_compressed;
    uint64_t off = t->base + entry_offset(e, k, &compressed);
    const EwfRange *r = find_range(s, t->seg, off);
    if (r == NULL) {
        vd_set_error(error, EIO,
                     "%s: chunk %" G_GUINT64_FORMAT " at 0x%" G_GINT64_MODIFIER
                     "x of segment %u lies in no sectors section",
                     s->name, i, off, t->seg);
        return false;
    }
    uint64_t end = r->end;
    if (k + 1 < t->count) {
        uint64_t next = t->base + entry_offset(e, k + 1, &next_compressed);
        if (next > off && next < end)
            end = next;
    }
    uint64_t avail = end - off;
    c->seg = t->seg;
    c->off = off;
    c->compressed = compressed;
    c->len = (uint32_t)MIN((uint64_t)s->chunk_size, s->media_size - i * s->chunk_size);
    if (compressed) {
        uint64_t cap = compressBound(s->chunk_size) + 64;
        c->stored = (uint32_t)MIN(avail, cap);
        if (c->stored < 8) {
            vd_set_error(error, EIO,
                         "%s: chunk %" G_GUINT64_FORMAT " at 0x%" G_GINT64_MODIFIER
                         "x of segment %u: %u bytes cannot hold it",
                         s->name, i, off, t->seg, c->stored);
            return false;
        }
        return true;
    }
    /* The last chunk may hold more than the media's last whole sector
     * (libewf keeps a partial one), or a whole chunk. */
    c->stored = (uint32_t)MIN(avail, (uint64_t)s->chunk_size + 4);
    if (c->stored < c->len + 4)
        c->stored = c->len + 4;
    if (avail < c->stored) {
        vd_set_error(error, EIO,
                     "%s: chunk %" G_GUINT64_FORMAT " at 0x%" G_GINT64_MODIFIER
                     "x of segment %u: %" G_GUINT64_FORMAT
                     " bytes there cannot hold its %u bytes and checksum",
                     s->name, i, off, t->seg, avail, c->len);
        return false;
    }
    return true;
}
