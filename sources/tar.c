/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tar and OVA archives: an archive holding one disk image (the usual
 * single-disk OVA: an .ovf descriptor, an optional .mf manifest and the
 * disk) is the source of that disk, shown under the member's name. A
 * member is a contiguous byte range of the archive, so reads go straight
 * to the archive's descriptor and hand out (fd, offset) for zero-copy.
 *
 * The manifest's digests (SHA1, SHA256, SHA512) of the disk and the
 * descriptor are checked when the image is opened for use, not when a
 * listing probes it (that would read every archive whole), and the
 * verdict is remembered per archive file (device, inode, size, mtime) so
 * that an image reopened after its idle timeout is not read again.
 */
#include "config.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sources/tar.h"
#include "src/vd-container.h"
#include "src/vd-error.h"
#include "src/vd-info.h"
#include "src/vd-io.h"

#define TAR_HASH_CHUNK  (1u << 20)
#define TAR_VERDICTS    1024
#define TAR_LIST_MAX    1024 /* disks an archive shown as a directory may hold */
#define TAR_SHOWN_NAMES 3    /* disk names an error lists */

/* ---- the header walk ---------------------------------------------------- */

static bool is_zero_block(const uint8_t *b)
{
    for (unsigned i = 0; i < TAR_BLOCK; i++) {
        if (b[i] != 0)
            return false;
    }
    return true;
}

/* The checksum field is octal digits, ended by NUL or space; old tars
 * summed signed chars, so either sum is accepted. */
bool tar_header_valid(const uint8_t *b)
{
    if (memcmp(b + 257, "ustar", 5) != 0)
        return false;
    uint64_t recorded = 0;
    unsigned i = 148, digits = 0;
    while (i < 156 && b[i] == ' ')
        i++;
    for (; i < 156 && b[i] >= '0' && b[i] <= '7'; i++, digits++)
        recorded = recorded * 8 + (uint64_t)(b[i] - '0');
    if (digits == 0 || (i < 156 && b[i] != ' ' && b[i] != '\0'))
        return false;
    uint64_t usum = 0;
    int64_t ssum = 0;
    for (unsigned k = 0; k < TAR_BLOCK; k++) {
        uint8_t c = (k >= 148 && k < 156) ? ' ' : b[k];
        usum += c;
        ssum += (int8_t)c;
    }
    return recorded == usum || (int64_t)recorded == ssum;
}

/* A numeric field: octal (spaces, digits, NUL or space), or GNU's base-256
 * (high bit of the first byte set) for values that do not fit. */
static bool parse_number(const uint8_t *f, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (f[0] & 0x80) {
        if (f[0] == 0xff)
            return false; /* negative */
        v = f[0] & 0x7f;
        for (size_t i = 1; i < n; i++) {
            if (v > (UINT64_MAX >> 8))
                return false;
            v = (v << 8) | f[i];
        }
    } else {
        size_t i = 0;
        while (i < n && f[i] == ' ')
            i++;
        for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
            if (v > (UINT64_MAX >> 3))
                return false;
            v = v * 8 + (uint64_t)(f[i] - '0');
        }
        if (i < n && f[i] != ' ' && f[i] != '\0')
            return false;
    }
    if (v > (uint64_t)INT64_MAX)
        return false;
    *out = v;
    return true;
}

/* A field's text up to its first NUL, escaped for messages. */
static char *field_text(const uint8_t *f, size_t n)
{
    g_autofree char *s = g_strndup((const char *)f, n);
    return g_strescape(s, NULL);
}

typedef struct {
    char *path;    /* a pax "path" record, or NULL */
    bool has_size; /* a pax "size" record */
    uint64_t size;
} PaxRecords;

/* Records "LEN KEY=VALUE\n", LEN counting the whole record. */
static bool parse_pax(const char *p, size_t len, PaxRecords *r, const char *name, uint64_t at,
                      GError **error)
{
    size_t pos = 0;
    while (pos < len) {
        if (p[pos] == '\0')
            break; /* padding some writers leave */
        size_t i = pos, rec = 0;
        while (i < len && p[i] >= '0' && p[i] <= '9' && rec <= len)
            rec = rec * 10 + (size_t)(p[i++] - '0');
        if (i == pos || i >= len || p[i] != ' ' || rec <= i - pos + 1 || rec > len - pos ||
            p[pos + rec - 1] != '\n')
            goto bad;
        const char *key = p + i + 1, *end = p + pos + rec - 1;
        const char *eq = memchr(key, '=', (size_t)(end - key));
        if (eq == NULL)
            goto bad;
        size_t klen = (size_t)(eq - key), vlen = (size_t)(end - eq - 1);
        const char *val = eq + 1;
        if (klen == 4 && memcmp(key, "path", 4) == 0) {
            if (vlen == 0 || vlen > TAR_NAME_MAX || memchr(val, '\0', vlen) != NULL)
                goto bad;
            g_free(r->path);
            r->path = g_strndup(val, vlen);
        } else if (klen == 4 && memcmp(key, "size", 4) == 0) {
            uint64_t v = 0;
            if (vlen == 0 || vlen > 19)
                goto bad;
            for (size_t k = 0; k < vlen; k++) {
                if (val[k] < '0' || val[k] > '9')
                    goto bad;
                v = v * 10 + (uint64_t)(val[k] - '0');
            }
            if (v > (uint64_t)INT64_MAX)
                goto bad;
            r->has_size = true;
            r->size = v;
        } else if (klen > 11 && memcmp(key, "GNU.sparse.", 11) == 0) {
            vd_set_error(error, EIO,
                         "%s: pax header at 0x%" G_GINT64_MODIFIER
                         "x describes a GNU sparse member, which is not supported",
                         name, at);
            return false;
        }
        pos += rec;
    }
    return true;
bad:
    vd_set_error(error, EIO, "%s: malformed pax record in the header at 0x%" G_GINT64_MODIFIER "x",
                 name, at);
    return false;
}

/* The data of a long-name or pax header, whole (at most TAR_META_MAX). */
static char *read_meta(TarReadFn read, void *ro, uint64_t off, uint64_t size, const char *name,
                       const char *what, GError **error)
{
    if (size > TAR_META_MAX) {
        vd_set_error(error, EIO,
                     "%s: %s at 0x%" G_GINT64_MODIFIER "x is %" G_GUINT64_FORMAT
                     " bytes, more than the %u accepted",
                     name, what, off, size, TAR_META_MAX);
        return NULL;
    }
    char *buf = g_malloc((size_t)size + 1);
    if (size > 0 && !read(ro, buf, (size_t)size, off, error)) {
        g_free(buf);
        return NULL;
    }
    buf[size] = '\0';
    return buf;
}

bool tar_walk(TarReadFn read, void *ro, uint64_t file_size, const char *name, TarMemberFn fn,
              void *fo, GError **error)
{
    uint8_t b[TAR_BLOCK];
    g_autofree char *long_name = NULL; /* from a GNU 'L' header, for the next member */
    PaxRecords pax = {0};              /* from a pax 'x' header, for the next member */
    g_autofree char *prev = NULL;      /* the last member's name, for messages */
    uint64_t off = 0;
    bool ok = false;
    for (;;) {
        if (off == file_size)
            break; /* no end-of-archive blocks: GNU tar accepts it too */
        if (file_size - off < TAR_BLOCK) {
            vd_set_error(error, EIO,
                         "%s: the archive ends inside a header at 0x%" G_GINT64_MODIFIER
                         "x (truncated?)",
                         name, off);
            goto out;
        }
        if (!read(ro, b, TAR_BLOCK, off, error))
            goto out;
        if (is_zero_block(b))
            break; /* end of archive */
        g_autofree char *hname = field_text(b, 100);
        if (!tar_header_valid(b)) {
            vd_set_error(
                error, EIO,
                "%s: bad tar header checksum at 0x%" G_GINT64_MODIFIER "x (member '%s'%s%s%s)",
                name, off, hname, prev ? ", after '" : "", prev ? prev : "", prev ? "'" : "");
            goto out;
        }
        uint64_t size;
        if (!parse_number(b + 124, 12, &size)) {
            vd_set_error(error, EIO,
                         "%s: member '%s' (header at 0x%" G_GINT64_MODIFIER "x): bad size field",
                         name, hname, off);
            goto out;
        }
        char type = (char)b[156];
        if ((type == '0' || type == '\0' || type == '7') && pax.has_size)
            size = pax.size;
        uint64_t data = off + TAR_BLOCK, padded;
        if (size > file_size - data) {
            vd_set_error(error, EIO,
                         "%s: member '%s' (header at 0x%" G_GINT64_MODIFIER
                         "x) has %" G_GUINT64_FORMAT
                         " bytes, past the end of the archive (truncated?)",
                         name,
                         pax.path    ? pax.path
                         : long_name ? long_name
                                     : hname,
                         off, size);
            goto out;
        }
        padded = (size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
        switch (type) {
        case 'L': /* GNU: the next member's name */
            g_free(long_name);
            if ((long_name = read_meta(read, ro, data, size, name, "a long name", error)) == NULL)
                goto out;
            if (strlen(long_name) == 0 || strlen(long_name) > TAR_NAME_MAX) {
                vd_set_error(error, EIO,
                             "%s: unusable long name in the header at 0x%" G_GINT64_MODIFIER "x",
                             name, off);
                goto out;
            }
            break;
        case 'x': { /* pax: records for the next member */
            g_autofree char *recs = read_meta(read, ro, data, size, name, "a pax header", error);
            if (recs == NULL || !parse_pax(recs, (size_t)size, &pax, name, off, error))
                goto out;
            break;
        }
        case 'S':
        case 'M':
            vd_set_error(error, EIO,
                         "%s: member '%s' (header at 0x%" G_GINT64_MODIFIER
                         "x) is a GNU %s member, which is not supported",
                         name, hname, off, type == 'S' ? "sparse" : "multi-volume");
            goto out;
        case '0':
        case '\0':
        case '7': {
            g_autofree char *full = NULL;
            if (pax.path != NULL)
                full = g_strdup(pax.path);
            else if (long_name != NULL)
                full = g_strdup(long_name);
            else if (memcmp(b + 257, "ustar\0", 6) == 0 && b[345] != '\0') {
                /* POSIX ustar: prefix/name (GNU headers keep times there). */
                g_autofree char *pre = g_strndup((const char *)b + 345, 155);
                g_autofree char *nm = g_strndup((const char *)b, 100);
                full = g_strconcat(pre, "/", nm, NULL);
            } else
                full = g_strndup((const char *)b, 100);
            TarMember m = {.name = full, .header = off, .offset = data, .size = size};
            if (!fn(fo, &m, error))
                goto out;
            g_free(prev);
            prev = g_strescape(full, NULL);
            g_clear_pointer(&long_name, g_free);
            g_clear_pointer(&pax.path, g_free);
            pax.has_size = false;
            break;
        }
        default: /* directories, links, devices, 'K' long link names, 'g' globals */
            if (type != 'K' && type != 'g') {
                g_clear_pointer(&long_name, g_free);
                g_clear_pointer(&pax.path, g_free);
                pax.has_size = false;
            }
            break;
        }
        off = data + padded; /* data + size <= file_size, so no overflow */
        if (off > file_size)
            off = file_size;
    }
    ok = true;
out:
    g_free(pax.path);
    return ok;
}

/* ---- the manifest ------------------------------------------------------- */

bool tar_manifest_lookup(const char *mf, size_t len, const char *file, GChecksumType *type,
                         char **hex)
{
    static const struct {
        const char *name;
        GChecksumType type;
        size_t hexlen;
    } algs[] = {
        {"SHA256", G_CHECKSUM_SHA256, 64},
        {"SHA1", G_CHECKSUM_SHA1, 40},
        {"SHA512", G_CHECKSUM_SHA512, 128},
    };
    g_autofree char *text = g_strndup(mf, len);
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    for (char **l = lines; *l != NULL; l++) {
        char *s = g_strstrip(*l);
        for (unsigned a = 0; a < G_N_ELEMENTS(algs); a++) {
            size_t n = strlen(algs[a].name);
            if (g_ascii_strncasecmp(s, algs[a].name, n) != 0)
                continue;
            /* "SHA256(disk1.vmdk)= hex", spaces around tolerated */
            char *p = s + n;
            while (*p == ' ')
                p++;
            if (*p != '(')
                continue;
            char *close = strrchr(p, ')');
            if (close == NULL)
                continue;
            g_autofree char *fname = g_strndup(p + 1, (size_t)(close - p - 1));
            if (strcmp(g_strstrip(fname), file) != 0)
                continue;
            char *q = close + 1;
            while (*q == ' ')
                q++;
            if (*q != '=')
                continue;
            q++;
            while (*q == ' ')
                q++;
            if (strlen(q) != algs[a].hexlen)
                continue;
            *type = algs[a].type;
            *hex = g_ascii_strdown(q, -1);
            return true;
        }
    }
    return false;
}

/* ---- the container ------------------------------------------------------ */

typedef struct {
    uint64_t offset, size;
    char *name; /* path in the archive */
} Slice;

typedef struct {
    int fd;
    char *name;  /* the archive, for messages */
    char *shown; /* the disk member's base name */
    Slice disk, ovf, mf;
    char *verdict_key; /* device:inode:size:mtime of the archive, and the member */
    bool by_name;      /* opened as ARCHIVE/MEMBER (one disk of several): counts its share */
} TarSource;

/* What one walk over the archive learns: the members that are neither
 * descriptor nor manifest, the first of them and the first named like a
 * disk image (a few names of those kept for messages), and those two.
 * Listing, or picking a disk by name, also gives every disk the name it
 * is shown under (unique_name). */
typedef struct {
    VdContext *ctx;
    const char *want; /* the member (as listed) asked for, or NULL */
    GPtrArray *names; /* shown names of the disks, when listing */
    GHashTable *seen; /* shown names so far, when listing or picking by name */
    Slice wanted;
    unsigned others, disks;
    Slice first, first_disk;
    char *disk_names[TAR_SHOWN_NAMES + 1]; /* NULL-terminated */
    Slice ovf, mf;
    const char *name; /* the archive, for messages */
} TarScan;

static bool has_ext(const char *path, const char *ext)
{
    size_t n = strlen(path), k = strlen(ext);
    return n > k && g_ascii_strcasecmp(path + n - k, ext) == 0;
}

/* Named like an image: what picks the disk out of an archive that also
 * holds other files (an .nvram, a README). */
static bool disk_named(VdContext *ctx, const char *path)
{
    static const char *const exts[] = {".qcow2", ".qcow", ".vmdk", ".vhd", ".vhdx",
                                       ".vdi",   ".qed",  ".hdd",  ".hds", ".dmg"};
    for (unsigned i = 0; i < G_N_ELEMENTS(exts); i++) {
        if (has_ext(path, exts[i]))
            return true;
    }
    g_autofree char *base = g_path_get_basename(path);
    return ctx != NULL && vd_context_is_raw_name(ctx, base);
}

/* A name a directory can hold. */
static bool showable(const char *n)
{
    return *n != '\0' && strcmp(n, ".") != 0 && strcmp(n, "..") != 0 && strlen(n) <= 255 &&
           strchr(n, '/') == NULL;
}

/* The name the disk at path in the archive is shown under, not taken by
 * an earlier one (seen, which it joins): its base name; else, when two
 * folders of the archive hold disks alike, its path with each '/' turned
 * into '_' ("b/disk.vmdk" as "b_disk.vmdk"); else the base name with
 * "~2", "~3"... before its extension ("disk~2.vmdk"). NULL when none can
 * be shown. */
static char *unique_name(GHashTable *seen, const char *path)
{
    g_autofree char *base = g_path_get_basename(path);
    while (g_str_has_prefix(path, "./") || *path == '/')
        path += *path == '/' ? 1 : 2;
    g_autofree char *flat = g_strdelimit(g_strdup(path), "/", '_');
    char *pick = NULL;
    if (showable(base) && !g_hash_table_contains(seen, base))
        pick = g_strdup(base);
    else if (showable(flat) && !g_hash_table_contains(seen, flat))
        pick = g_strdup(flat);
    /* The number before the extension, which raw disks are known by. */
    const char *dot = strrchr(base, '.');
    int stem = dot != NULL && dot != base ? (int)(dot - base) : (int)strlen(base);
    for (unsigned i = 2; pick == NULL && showable(base) && i <= TAR_LIST_MAX + 1; i++) {
        char *n = g_strdup_printf("%.*s~%u%s", stem, base, i, base + stem);
        if (showable(n) && !g_hash_table_contains(seen, n))
            pick = n;
        else
            g_free(n);
    }
    if (pick != NULL)
        g_hash_table_add(seen, g_strdup(pick));
    return pick;
}

static void slice_set(Slice *s, const TarMember *m)
{
    g_free(s->name);
    *s = (Slice){.offset = m->offset, .size = m->size, .name = g_strdup(m->name)};
}

static bool scan_member(void *opaque, const TarMember *m, GError **error)
{
    TarScan *s = opaque;
    if (has_ext(m->name, ".ovf")) {
        if (s->ovf.name == NULL)
            slice_set(&s->ovf, m);
    } else if (has_ext(m->name, ".mf")) {
        if (s->mf.name == NULL)
            slice_set(&s->mf, m);
    } else if (m->size > 0 && !has_ext(m->name, ".cert") && !g_str_has_suffix(m->name, "/")) {
        if (s->others++ == 0)
            slice_set(&s->first, m);
        bool disk = disk_named(s->ctx, m->name);
        if (disk && s->seen != NULL && g_hash_table_size(s->seen) >= TAR_LIST_MAX) {
            vd_set_error(error, EIO, "%s: the archive holds more than %u disk images", s->name,
                         TAR_LIST_MAX);
            return false;
        }
        /* Disks go by their shown names, other files by their base names. */
        g_autofree char *as =
            disk && s->seen != NULL ? unique_name(s->seen, m->name) : g_path_get_basename(m->name);
        if (s->want != NULL && s->wanted.name == NULL && as != NULL && strcmp(as, s->want) == 0)
            slice_set(&s->wanted, m);
        if (disk) {
            if (s->names != NULL && as != NULL)
                g_ptr_array_add(s->names, g_steal_pointer(&as));
            if (s->disks < TAR_SHOWN_NAMES)
                s->disk_names[s->disks] = g_strescape(m->name, NULL);
            if (s->disks++ == 0)
                slice_set(&s->first_disk, m);
        }
    }
    return true;
}

static bool read_fd(void *opaque, void *buf, size_t len, uint64_t off, GError **error)
{
    TarSource *t = opaque;
    return vd_host_pread(t->fd, t->name, buf, len, off, false, error);
}

static bool tar_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
    return len >= TAR_BLOCK && file_size >= TAR_BLOCK && tar_header_valid(head);
}

static bool tar_pread(void *opaque, void *buf, size_t len, uint64_t off, GError **error)
{
    TarSource *t = opaque;
    return vd_host_pread(t->fd, t->name, buf, len, t->disk.offset + off, false, error);
}

static int tar_host_range(void *opaque, uint64_t off, uint64_t len, uint64_t *host_off)
{
    TarSource *t = opaque;
    *host_off = t->disk.offset + off;
    return t->fd;
}

/* A disk opened by name (one of several, shown in the archive's directory)
 * occupies its data's 512-byte blocks of the archive, less the holes a
 * sparse copy of the archive has there; so du over the directory adds up
 * to the archive, not to a multiple of it. */
static bool tar_host_bytes(void *opaque, uint64_t *bytes)
{
    TarSource *t = opaque;
    if (!t->by_name)
        return false; /* the archive's only disk: all of it counts */
    uint64_t start = t->disk.offset,
             end = start + (t->disk.size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
    uint64_t total = 0, pos = start;
    while (pos < end) {
        off_t data = vd_host_lseek(t->fd, (off_t)pos, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO)
                break;          /* only holes to the end of the archive */
            total += end - pos; /* no hole information: all of it */
            break;
        }
        if ((uint64_t)data >= end)
            break;
        off_t hole = vd_host_lseek(t->fd, data, SEEK_HOLE);
        uint64_t stop = hole <= data ? end : MIN((uint64_t)hole, end);
        total += stop - (uint64_t)data;
        pos = stop;
    }
    *bytes = total;
    return true;
}

static const char *tar_inner_name(void *opaque)
{
    return ((TarSource *)opaque)->shown;
}

static void tar_describe(void *opaque, VdInfo *info)
{
    TarSource *t = opaque;
    vd_info_add_str(info, "container", "tar");
    vd_info_add_str(info, "tar.member", "%s", t->disk.name);
    if (t->mf.name != NULL)
        vd_info_add_str(info, "tar.manifest", "%s", t->mf.name);
}

/* Verdicts of manifests already checked: key -> "" (matched) or the
 * reason it did not. Bounded: forgotten all at once when full. */
static GMutex verdict_lock;
static GHashTable *verdicts;

static bool hash_slice(TarSource *t, const Slice *s, GChecksumType type, char **hex, GError **error)
{
    g_autoptr(GChecksum) sum = g_checksum_new(type);
    g_autofree uint8_t *buf = g_malloc(TAR_HASH_CHUNK);
    for (uint64_t pos = 0; pos < s->size;) {
        size_t n = (size_t)MIN((uint64_t)TAR_HASH_CHUNK, s->size - pos);
        if (!vd_host_pread(t->fd, t->name, buf, n, s->offset + pos, false, error))
            return false;
        g_checksum_update(sum, buf, (gssize)n);
        pos += n;
    }
    *hex = g_strdup(g_checksum_get_string(sum));
    return true;
}

/* The member against the manifest's digest, when it records one. */
static bool check_slice(TarSource *t, const char *mf, size_t mf_len, const Slice *s,
                        bool *io_failed, GError **error)
{
    GChecksumType type;
    g_autofree char *want = NULL, *got = NULL;
    g_autofree char *base = g_path_get_basename(s->name);
    if (!tar_manifest_lookup(mf, mf_len, base, &type, &want) &&
        !tar_manifest_lookup(mf, mf_len, s->name, &type, &want))
        return true;
    if (!hash_slice(t, s, type, &got, error)) {
        *io_failed = true;
        return false;
    }
    if (strcmp(want, got) != 0) {
        vd_set_error(error, EIO, "%s: member %s does not match its digest in %s (%s, got %s)",
                     t->name, s->name, t->mf.name, want, got);
        return false;
    }
    return true;
}

static bool tar_verify(void *opaque, GError **error)
{
    TarSource *t = opaque;
    if (t->mf.name == NULL)
        return true;
    g_mutex_lock(&verdict_lock);
    const char *known = verdicts ? g_hash_table_lookup(verdicts, t->verdict_key) : NULL;
    g_autofree char *reason = g_strdup(known);
    g_mutex_unlock(&verdict_lock);
    if (reason != NULL) {
        if (*reason == '\0')
            return true;
        vd_set_error(error, EIO, "%s", reason);
        return false;
    }
    GError *local = NULL;
    g_autofree char *mf = NULL;
    bool io_failed = false;
    if (t->mf.size > TAR_META_MAX) {
        vd_set_error(&local, EIO, "%s: manifest %s is larger than %u bytes", t->name, t->mf.name,
                     TAR_META_MAX);
    } else {
        mf = g_malloc((size_t)t->mf.size + 1);
        if (!read_fd(t, mf, (size_t)t->mf.size, t->mf.offset, &local)) {
            io_failed = true;
        } else {
            mf[t->mf.size] = '\0';
            if (check_slice(t, mf, (size_t)t->mf.size, &t->disk, &io_failed, &local) &&
                t->ovf.name != NULL)
                check_slice(t, mf, (size_t)t->mf.size, &t->ovf, &io_failed, &local);
        }
    }
    /* A read error is the host's, not the archive's: asked again next time. */
    if (!io_failed) {
        g_mutex_lock(&verdict_lock);
        if (verdicts == NULL || g_hash_table_size(verdicts) >= TAR_VERDICTS) {
            g_clear_pointer(&verdicts, g_hash_table_unref);
            verdicts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        }
        g_hash_table_replace(verdicts, g_strdup(t->verdict_key),
                             g_strdup(local ? local->message : ""));
        g_mutex_unlock(&verdict_lock);
    }
    if (local != NULL) {
        g_propagate_error(error, local);
        return false;
    }
    return true;
}

static void slice_clear(Slice *s)
{
    g_clear_pointer(&s->name, g_free);
}

static void tar_close(void *opaque)
{
    TarSource *t = opaque;
    slice_clear(&t->disk);
    slice_clear(&t->ovf);
    slice_clear(&t->mf);
    g_free(t->shown);
    g_free(t->name);
    g_free(t->verdict_key);
    close(t->fd);
    g_free(t);
}

static const VdSourceOps tar_ops = {
    .name = "tar member",
    .pread = tar_pread,
    .host_range = tar_host_range,
    .inner_name = tar_inner_name,
    .host_bytes = tar_host_bytes,
    .verify = tar_verify,
    .describe = tar_describe,
    .close = tar_close,
};

static void scan_clear(TarScan *s)
{
    slice_clear(&s->first);
    slice_clear(&s->first_disk);
    slice_clear(&s->wanted);
    slice_clear(&s->ovf);
    slice_clear(&s->mf);
    for (unsigned i = 0; i < TAR_SHOWN_NAMES; i++)
        g_clear_pointer(&s->disk_names[i], g_free);
    g_clear_pointer(&s->seen, g_hash_table_unref);
}

static bool open_common(VdContext *ctx, int fd, const char *name, const char *member,
                        const VdSourceOps **ops, void **opaque, uint64_t *size, GError **error)
{
    TarSource *t = g_new0(TarSource, 1);
    t->fd = fd;
    t->name = g_strdup(name);
    TarScan s = {.ctx = ctx, .want = member, .name = name};
    if (member != NULL)
        s.seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    struct stat st;
    uint64_t file_size;
    if (fstat(fd, &st) < 0) {
        vd_set_error_errno(error, errno, "%s", name);
        goto fail;
    }
    if (!vd_host_size(fd, name, &file_size, error) ||
        !tar_walk(read_fd, t, file_size, name, scan_member, &s, error))
        goto fail;
    /* The one member; else the one named like a disk; several disks are
     * refused (not shown as a directory yet). An archive of other files
     * shows its first, which a listing then probes like any file: a
     * tarball of sources stays unlisted, as it was. */
    Slice *pick = member != NULL                  ? &s.wanted
                  : s.others == 1 || s.disks == 0 ? &s.first
                                                  : &s.first_disk;
    if (member != NULL && s.wanted.name == NULL) {
        vd_set_error(error, ENOENT, "%s: the archive holds no member %s", name, member);
        goto fail;
    }
    if (s.others == 0) {
        vd_set_error(error, EIO, "%s: the archive holds no disk image", name);
        goto fail;
    }
    if (member == NULL && s.others > 1 && s.disks > 1) {
        g_autofree char *list = g_strjoinv(", ", s.disk_names);
        vd_set_error(error, EIO,
                     "%s: the archive holds %u disk images (%s%s); only an archive of one disk "
                     "image is shown",
                     name, s.disks, list, s.disks > TAR_SHOWN_NAMES ? ", ..." : "");
        goto fail;
    }
    /* By name: the name it is listed under (unique_name's). */
    t->shown = member != NULL ? g_strdup(member) : g_path_get_basename(pick->name);
    if (strcmp(t->shown, ".") == 0 || strcmp(t->shown, "..") == 0 || strcmp(t->shown, "/") == 0 ||
        strlen(t->shown) > 255) {
        g_autofree char *esc = g_strescape(pick->name, NULL);
        vd_set_error(error, EIO, "%s: member name '%s' cannot be shown", name, esc);
        goto fail;
    }
    t->disk = *pick, *pick = (Slice){0};
    t->ovf = s.ovf, s.ovf = (Slice){0};
    t->mf = s.mf, s.mf = (Slice){0};
    /* Per member: each disk of an archive has its own digest. */
    t->by_name = member != NULL;
    t->verdict_key = g_strdup_printf("%ju:%ju:%jd:%jd.%09ld:%s", (uintmax_t)st.st_dev,
                                     (uintmax_t)st.st_ino, (intmax_t)st.st_size,
                                     (intmax_t)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, t->disk.name);
    scan_clear(&s);
    *ops = &tar_ops;
    *opaque = t;
    *size = t->disk.size;
    return true;
fail:
    scan_clear(&s);
    tar_close(t);
    return false;
}

static bool tar_open(VdContext *ctx, int fd, const char *path, const char *name,
                     const VdSourceOps **ops, void **opaque, uint64_t *size, GError **error)
{
    return open_common(ctx, fd, name, NULL, ops, opaque, size, error);
}

static bool tar_open_member(VdContext *ctx, int fd, const char *path, const char *name,
                            const char *member, const VdSourceOps **ops, void **opaque,
                            uint64_t *size, GError **error)
{
    return open_common(ctx, fd, name, member, ops, opaque, size, error);
}

/* The disks of an archive that holds two or more, by the names
 * unique_name gives them (base names where they differ). */
static bool tar_list(VdContext *ctx, int fd, const char *name, GPtrArray **members, GError **error)
{
    TarSource t = {.fd = fd, .name = (char *)name};
    TarScan s = {.ctx = ctx,
                 .name = name,
                 .names = g_ptr_array_new_with_free_func(g_free),
                 .seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL)};
    uint64_t file_size;
    bool ok = vd_host_size(fd, name, &file_size, error) &&
              tar_walk(read_fd, &t, file_size, name, scan_member, &s, error);
    *members = ok && s.others > 1 && s.disks > 1 ? g_steal_pointer(&s.names)
                                                 : g_ptr_array_new_with_free_func(g_free);
    g_clear_pointer(&s.names, g_ptr_array_unref);
    scan_clear(&s);
    return ok;
}

const VdContainer vd_tar_container = {
    .name = "tar",
    /* No suffix: shown under the member's name (tar_inner_name). */
    .probe = tar_probe,
    .open = tar_open,
    .list = tar_list,
    .open_member = tar_open_member,
};
