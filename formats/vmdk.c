/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vmdk: VMware virtual disks (probe, open, extent list, status, describe).
 * See vmdk.h for the map of the driver's files.
 *
 * Three ways in: a hosted sparse file ("KDMV") whose embedded descriptor
 * only names the file itself (monolithicSparse, streamOptimized; the
 * header alone defines the data, as in QEMU, so renamed files still
 * work); a lone "COWD" or seSparse file (its descriptor lost or not
 * copied: a standalone disk, since only a descriptor names a parent); or
 * a text descriptor naming extent files relative to its own directory
 * (everything else). Extent files are members of the image: the
 * filesystem hides them, lone or not.
 */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/vmdk.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-file.h"
#include "src/vd-info.h"
#include "src/vd-io.h"

extern const VdDriver vd_vmdk_driver;

/* ---- probe ---- */

/* QEMU's rule: after blank lines and comments, the first line is
 * "version=N". We also want "createType" or the standard first comment, so
 * that unrelated "version=1" files are not taken for disks. */
static bool looks_like_descriptor(const uint8_t *head, size_t len)
{
    /* QEMU pads descriptors it rewrote with NULs: the text ends there. */
    const uint8_t *nul = memchr(head, '\0', len);
    if (nul != NULL)
        len = (size_t)(nul - head);
    const char *p = (const char *)head, *end = p + len;
    bool marked = len >= 21 && g_ascii_strncasecmp(p, "# Disk DescriptorFile", 21) == 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        while (p < le && (*p == ' ' || *p == '\t' || *p == '\r'))
            p++;
        if (p == le || *p == '#') {
            p = eol ? eol + 1 : end;
            continue;
        }
        if (le - p < 8 || strncmp(p, "version", 7) != 0)
            return false;
        const char *q = p + 7;
        while (q < le && (*q == ' ' || *q == '\t'))
            q++;
        if (q == le || *q != '=')
            return false;
        if (marked)
            return true;
        size_t n = (size_t)(end - (const char *)head);
        return g_strstr_len((const char *)head, (gssize)n, "createType") != NULL;
    }
    return false;
}

static int vmdk_probe(const VdProbe *probe)
{
    if (probe->is_dir)
        return VD_PROBE_NO;
    if (probe->head_len >= 4 &&
        (memcmp(probe->head, "KDMV", 4) == 0 || memcmp(probe->head, "COWD", 4) == 0))
        return VD_PROBE_MAGIC;
    if (vmdk_is_sesparse(probe->head, probe->head_len))
        return VD_PROBE_MAGIC;
    if (probe->file_size > 0 && probe->file_size <= VMDK_DESC_MAX &&
        looks_like_descriptor(probe->head, probe->head_len))
        return VD_PROBE_MAGIC;
    return VD_PROBE_NO;
}

/* ---- state ---- */

static void state_free(VmdkState *s)
{
    if (s == NULL)
        return;
    vmdk_descriptor_free(s->desc);
    g_free(s->desc_text);
    g_free(s->create_type);
    g_clear_pointer(&s->extents, g_ptr_array_unref);
    vmdk_decode_cache_clear(&s->dc);
    g_free(s);
}

VmdkExtent *vmdk_find_extent(VmdkState *s, uint64_t offset)
{
    guint lo = 0, hi = s->extents->len;
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        VmdkExtent *e = g_ptr_array_index(s->extents, mid);
        if (offset < e->start)
            hi = mid;
        else if (offset - e->start >= e->length)
            lo = mid + 1;
        else
            return e;
    }
    return NULL;
}

/* ---- extent files ---- */

static bool open_extent_fd(VdImage *img, GPtrArray *extents, VmdkExtent *e, struct stat *st,
                           GError **error)
{
    /* Flat extents may share a file: one open (and one set of locks) for
     * them all. */
    for (guint i = 0; i < extents->len && e->fd < 0; i++) {
        VmdkExtent *o = g_ptr_array_index(extents, i);
        if (o->own_fd && o->path != NULL && strcmp(o->path, e->path) == 0)
            e->fd = o->fd;
    }
    if (e->fd < 0) {
        /* Confined like backing files, never blocking, locked like the image. */
        e->fd = vd_image_open_member(img, e->path, "extent file", VD_FILE_WRITE, error);
        if (e->fd < 0)
            return false;
        e->own_fd = true;
    }
    if (fstat(e->fd, st) < 0) {
        vd_set_error_errno(error, errno, "%s: extent file %s", img->name, e->path);
        return false;
    }
    return vd_host_size(e->fd, e->path, &e->file_size, error);
}

static bool kind_from_type(VdImage *img, const char *type, VmdkExtentKind *kind, GError **error)
{
    if (strcmp(type, "FLAT") == 0 || strcmp(type, "VMFS") == 0)
        *kind = VMDK_EXT_FLAT;
    else if (strcmp(type, "ZERO") == 0)
        *kind = VMDK_EXT_ZERO;
    else if (strcmp(type, "SPARSE") == 0)
        *kind = VMDK_EXT_SPARSE;
    else if (strcmp(type, "VMFSSPARSE") == 0)
        *kind = VMDK_EXT_COWD;
    else if (strcmp(type, "SESPARSE") == 0)
        *kind = VMDK_EXT_SESPARSE;
    else {
        vd_set_error(error, ENOTSUP, "%s: unsupported extent type %s", img->name, type);
        return false;
    }
    return true;
}

/* Flat extents may share a file; it is one member. */
static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* A descriptor's extent line, checked: its kind, and where it ends when it
 * starts at start. Writes are refused for what cannot be written. */
static bool desc_extent_kind(VdImage *img, const VmdkDescExtent *x, uint64_t start,
                             VmdkExtentKind *kind, uint64_t *end, GError **error)
{
    if (!kind_from_type(img, x->type, kind, error))
        return false;
    bool rw = strcmp(x->access, "RW") == 0;
    if (!rw && strcmp(x->access, "RDONLY") != 0 && strcmp(x->access, "NOACCESS") != 0) {
        vd_set_error(error, EIO, "%s: invalid extent access mode %s", img->name, x->access);
        return false;
    }
    if (__builtin_add_overflow(start, x->sectors * VMDK_SECTOR, end) || *end > INT64_MAX) {
        vd_set_error(error, EIO, "%s: the extents add up to more than 8 EiB", img->name);
        return false;
    }
    if (!rw || *kind == VMDK_EXT_COWD || *kind == VMDK_EXT_SESPARSE)
        vd_image_refuse_writes(img);
    return true;
}

/* One extent of a descriptor, opened and checked. */
static bool open_desc_extent(VdImage *img, VmdkState *s, const VmdkDescExtent *x,
                             const struct stat *self, GArray *sparse_ids, uint64_t *start,
                             GError **error)
{
    VmdkExtentKind kind;
    uint64_t end;
    if (!desc_extent_kind(img, x, *start, &kind, &end, error))
        return false;
    uint64_t length = end - *start;
    g_autoptr(GPtrArray) hold = g_ptr_array_new_with_free_func((GDestroyNotify)vmdk_extent_free);
    VmdkExtent *e = g_new0(VmdkExtent, 1);
    g_ptr_array_add(hold, e);
    e->kind = kind;
    e->fd = -1;
    e->start = *start;
    e->length = length;
    e->noaccess = strcmp(x->access, "NOACCESS") == 0;
    e->line = x->filename
                  ? g_strdup_printf("%s %" G_GUINT64_FORMAT " %s \"%s\"", x->access, x->sectors,
                                    x->type, x->filename)
                  : g_strdup_printf("%s %" G_GUINT64_FORMAT " %s", x->access, x->sectors, x->type);
    if (kind != VMDK_EXT_ZERO) {
        /* Relative to the descriptor. */
        e->path = vd_image_sibling_path(img, x->filename);
        struct stat st;
        if (!open_extent_fd(img, s->extents, e, &st, error))
            return false;
        e->dev = (uint64_t)st.st_dev;
        e->ino = (uint64_t)st.st_ino;
        if (same_file(&st, self)) {
            vd_set_error(error, EIO, "%s: extent %s is the descriptor itself", img->name,
                         x->filename);
            return false;
        }
        if (kind == VMDK_EXT_FLAT) {
            e->flat_offset = x->offset * VMDK_SECTOR;
        } else {
            for (guint i = 0; i < sparse_ids->len; i++) {
                if (same_file(&g_array_index(sparse_ids, struct stat, i), &st)) {
                    vd_set_error(error, EIO, "%s: sparse extent %s is listed twice", img->name,
                                 x->filename);
                    return false;
                }
            }
            g_array_append_val(sparse_ids, st);
        }
    }
    if (kind == VMDK_EXT_SPARSE || kind == VMDK_EXT_COWD) {
        uint8_t head[VMDK_SECTOR] = {0};
        if (!vd_host_pread(e->fd, e->path, head, vd_min_u64(sizeof head, e->file_size), 0, true,
                           error))
            return false;
        if (memcmp(head, "KDMV", 4) == 0 && vd_le64(head + 12) == 0) {
            vd_set_error(error, EIO, "%s: extent %s holds another descriptor, not data", img->name,
                         x->filename);
            return false;
        }
        if (!vmdk_sparse_open(img, e, head, error))
            return false;
    } else if (kind == VMDK_EXT_SESPARSE && !vmdk_sesparse_open(img, e, error)) {
        return false;
    }
    if (kind != VMDK_EXT_FLAT && kind != VMDK_EXT_ZERO) {
        if (e->capacity < length) {
            vd_set_error(error, EIO,
                         "%s: descriptor gives extent %s %" G_GUINT64_FORMAT
                         " sectors, but it holds %" G_GUINT64_FORMAT,
                         img->name, x->filename, x->sectors, e->capacity / VMDK_SECTOR);
            return false;
        }
        if (kind == VMDK_EXT_SPARSE && (e->compressed || e->version == 3))
            vd_image_refuse_writes(img);
    }
    *start = end;
    if (length == 0)
        return true; /* nothing to map; the file is still a member */
    e->index = s->extents->len;
    g_ptr_array_add(s->extents, g_ptr_array_steal_index(hold, 0));
    return true;
}

/* The host bytes an extent may write: a flat extent its range, a sparse
 * one (which allocates at the end) its whole file. */
typedef struct {
    uint64_t dev, ino, lo, hi;
    const VmdkExtent *e;
} HostUse;

static gint cmp_host_use(gconstpointer a, gconstpointer b)
{
    const HostUse *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino)
        return x->ino < y->ino ? -1 : 1;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static char *describe_use(const HostUse *u)
{
    if (u->e->kind == VMDK_EXT_FLAT)
        return g_strdup_printf("extent %u (%s, from byte 0x%" G_GINT64_MODIFIER "x)",
                               u->e->index + 1, u->e->line, u->lo);
    return g_strdup_printf("extent %u (%s)", u->e->index + 1, u->e->line);
}

/* Flat extents may share a file, each in its own part of it; two that
 * overlap, or a flat extent in a sparse extent's file, would make a write
 * to one guest range change another (or a sparse extent's metadata).
 * Only a writer cares: such an image is served read-only, saying why. */
static void check_shared_files(VdImage *img, VmdkState *s)
{
    if (img->read_only)
        return;
    g_autoptr(GArray) uses = g_array_new(FALSE, FALSE, sizeof(HostUse));
    for (guint i = 0; i < s->extents->len; i++) {
        const VmdkExtent *e = g_ptr_array_index(s->extents, i);
        if (e->kind == VMDK_EXT_ZERO)
            continue;
        HostUse u = {.dev = e->dev, .ino = e->ino, .hi = UINT64_MAX, .e = e};
        if (e->kind == VMDK_EXT_FLAT) {
            u.lo = e->flat_offset;
            if (__builtin_add_overflow(e->flat_offset, e->length, &u.hi))
                u.hi = UINT64_MAX;
        }
        g_array_append_val(uses, u);
    }
    g_array_sort(uses, cmp_host_use);
    const HostUse *reach = NULL; /* of this file so far, the one that ends last */
    for (guint i = 0; i < uses->len; i++) {
        const HostUse *u = &g_array_index(uses, HostUse, i);
        if (reach != NULL && (reach->dev != u->dev || reach->ino != u->ino))
            reach = NULL;
        if (reach != NULL && u->lo < reach->hi) {
            g_autoptr(GError) err = NULL;
            g_autofree char *a = describe_use(reach), *b = describe_use(u);
            vd_set_error(&err, EIO, "%s: %s and %s use the same bytes of %s; opening it read-only",
                         img->name, a, b, u->e->path);
            img->read_only = true;
            vd_image_record_error(img, err);
            return;
        }
        if (reach == NULL || u->hi > reach->hi)
            reach = u;
    }
}

static bool open_descriptor(VdImage *img, VmdkState *s, const struct stat *self, GError **error)
{
    VmdkDescriptor *d = s->desc;
    if (d->extents->len == 0) {
        vd_set_error(error, EIO, "%s: descriptor lists no extents", img->name);
        return false;
    }
    g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(struct stat));
    uint64_t size = 0;
    for (guint i = 0; i < d->extents->len; i++) {
        if (!open_desc_extent(img, s, g_ptr_array_index(d->extents, i), self, ids, &size, error))
            return false;
    }
    img->size = size;
    check_shared_files(img, s);
    return true;
}

/* Only uncompressed hosted sparse files of versions 1 and 2 are written
 * (seSparse and COWD never). */
static void self_extent_rules(VdImage *img, const VmdkExtent *e)
{
    if (e->kind != VMDK_EXT_SPARSE || e->compressed || e->version == 3)
        vd_image_refuse_writes(img);
}

/* The header (peek) or the whole extent (open) of a file that is its own
 * only extent: KDMV, COWD or seSparse. */
static bool self_extent_read(VdImage *img, VmdkExtent *e, const uint8_t *head, bool peek,
                             GError **error)
{
    if (vmdk_is_sesparse(head, VMDK_SECTOR))
        return peek ? vmdk_sesparse_peek(img, e, error) : vmdk_sesparse_open(img, e, error);
    return peek ? vmdk_sparse_peek(img, e, head, error) : vmdk_sparse_open(img, e, head, error);
}

static const char *self_extent_type(const VmdkExtent *e)
{
    return e->kind == VMDK_EXT_COWD       ? "VMFSSPARSE"
           : e->kind == VMDK_EXT_SESPARSE ? "SESPARSE"
                                          : "SPARSE";
}

/* The first sector of a hosted sparse file, as a one-extent image. */
static bool open_self_extent(VdImage *img, VmdkState *s, const uint8_t *head, uint64_t fsize,
                             GError **error)
{
    VmdkExtent *e = g_new0(VmdkExtent, 1);
    e->fd = img->fd;
    e->path = g_strdup(img->path);
    e->file_size = fsize;
    g_ptr_array_add(s->extents, e);
    if (!self_extent_read(img, e, head, false, error))
        return false;
    e->length = e->capacity;
    e->line = g_strdup_printf("RW %" G_GUINT64_FORMAT " %s \"%s\"", e->capacity / VMDK_SECTOR,
                              self_extent_type(e),
                              strrchr(img->path, '/') ? strrchr(img->path, '/') + 1 : img->path);
    self_extent_rules(img, e);
    img->size = e->length;
    return true;
}

static bool read_descriptor(VdImage *img, VmdkState *s, uint64_t off, uint64_t len, GError **error)
{
    s->desc_text = g_malloc(len + 1);
    if (!vd_host_pread(img->fd, img->name, s->desc_text, len, off, true, error))
        return false;
    s->desc_text[len] = '\0';
    s->desc_len = strlen(s->desc_text);
    s->desc_offset = off;
    s->desc = vmdk_descriptor_parse(s->desc_text, s->desc_len, img->name, error);
    return s->desc != NULL;
}

/* The parent as recorded; when that is an absolute path (perhaps from another host (VMware
 * writes "C:\\VMs\\base.vmdk" or "/vmfs/volumes/.../base.vmdk"), also its
 * last component next to this image, where copied chains end up. */
static void set_parent(VdImage *img, const char *hint)
{
    vd_image_set_backing(img, hint, "vmdk");
    const char *base = hint;
    for (const char *p = hint; *p != '\0'; p++) {
        if (*p == '/' || *p == '\\')
            base = p + 1;
    }
    bool foreign = g_path_is_absolute(hint) || strchr(hint, '\\') != NULL;
    if (foreign && base != hint && *base != '\0')
        vd_image_add_backing_candidate(img, base);
}

/* The image's first sector into head and its descriptor, if any (embedded,
 * or the whole file), into s; *self_extent when the file is a sparse
 * extent itself (KDMV with data of its own, COWD or seSparse). */
static bool read_start(VdImage *img, VmdkState *s, struct stat *st, uint8_t *head,
                       bool *self_extent, GError **error)
{
    uint64_t fsize;
    if (fstat(img->fd, st) < 0 || !vd_host_size(img->fd, img->name, &fsize, error)) {
        if (error != NULL && *error == NULL)
            vd_set_error_errno(error, errno, "%s", img->name);
        return false;
    }
    memset(head, 0, VMDK_SECTOR);
    if (fsize < 4 ||
        !vd_host_pread(img->fd, img->name, head, vd_min_u64(fsize, VMDK_SECTOR), 0, true, error)) {
        if (error != NULL && *error == NULL)
            vd_set_error(error, EIO, "%s: too short for a VMDK", img->name);
        return false;
    }
    *self_extent = true;
    if (memcmp(head, "KDMV", 4) == 0) {
        uint64_t doff, dlen;
        vmdk_sparse_desc_location(head, &doff, &dlen);
        if (dlen > 0 && !vd_range_within(doff, dlen, fsize)) {
            vd_set_error(error, EIO, "%s: embedded descriptor lies beyond the end of the file",
                         img->name);
            return false;
        }
        if (dlen > 0 && !read_descriptor(img, s, doff, dlen, error))
            return false;
        s->desc_embedded = true;
        s->desc_space = dlen;
        /* No data of its own: a descriptor in a sparse header's clothing. */
        *self_extent = vd_le64(head + 12) != 0 || s->desc == NULL;
    } else if (memcmp(head, "COWD", 4) != 0 && !vmdk_is_sesparse(head, VMDK_SECTOR)) {
        if (fsize > VMDK_DESC_MAX) {
            vd_set_error(error, EIO, "%s: too large for a VMDK descriptor", img->name);
            return false;
        }
        if (!read_descriptor(img, s, 0, fsize, error))
            return false;
        *self_extent = false;
    }
    return true;
}

static bool open_internal(VdImage *img, VmdkState *s, GError **error)
{
    struct stat st;
    uint8_t head[VMDK_SECTOR];
    bool self;
    if (!read_start(img, s, &st, head, &self, error))
        return false;
    if (self ? !open_self_extent(img, s, head, (uint64_t)st.st_size, error)
             : !open_descriptor(img, s, &st, error))
        return false;

    VmdkDescriptor *d = s->desc;
    if (d != NULL) {
        s->cid = d->cid;
        if (d->create_type != NULL)
            s->create_type = g_strdup(d->create_type);
        if (d->parent_hint != NULL)
            set_parent(img, d->parent_hint);
    }
    if (s->create_type == NULL) {
        VmdkExtent *e = s->extents->len ? g_ptr_array_index(s->extents, 0) : NULL;
        s->create_type = g_strdup(e && e->kind == VMDK_EXT_COWD       ? "vmfsSparse"
                                  : e && e->kind == VMDK_EXT_SESPARSE ? "seSparse"
                                  : e && e->compressed                ? "streamOptimized"
                                                                      : "monolithicSparse");
    }
    uint64_t grain = 0;
    for (guint i = 0; i < s->extents->len; i++) {
        VmdkExtent *e = g_ptr_array_index(s->extents, i);
        if (e->compressed)
            grain = MAX(grain, e->grain);
    }
    vmdk_decode_cache_init(&s->dc, img->ctx->decode_cache_bytes, grain);
    vmdk_gt_caches_new(img, s);
    return true;
}

static bool vmdk_open(VdImage *img, GError **error)
{
    VmdkState *s = g_new0(VmdkState, 1);
    s->extents = g_ptr_array_new_with_free_func((GDestroyNotify)vmdk_extent_free);
    img->opaque = s;
    if (!open_internal(img, s, error)) {
        state_free(s);
        img->opaque = NULL;
        return false;
    }
    return true;
}

static void vmdk_close(VdImage *img)
{
    g_clear_pointer(&img->opaque, state_free);
}

/* Size and members from a descriptor alone: the extent files are named,
 * not opened (a split streamOptimized image is told by its createType). */
static bool peek_descriptor(VdImage *img, const VmdkDescriptor *d, GError **error)
{
    if (d->extents->len == 0) {
        vd_set_error(error, EIO, "%s: descriptor lists no extents", img->name);
        return false;
    }
    uint64_t size = 0;
    for (guint i = 0; i < d->extents->len; i++) {
        const VmdkDescExtent *x = g_ptr_array_index(d->extents, i);
        VmdkExtentKind kind;
        if (!desc_extent_kind(img, x, size, &kind, &size, error))
            return false;
        if (kind == VMDK_EXT_ZERO)
            continue;
        /* Named as open names it; whether it may be opened is open's to say. */
        g_autofree char *path = vd_image_sibling_path(img, x->filename);
        vd_image_add_member(img, path);
    }
    if (d->create_type != NULL && g_ascii_strcasecmp(d->create_type, "streamOptimized") == 0)
        vd_image_refuse_writes(img);
    img->size = size;
    return true;
}

/* The descriptor and the sparse header only: no grain directory, no
 * extent file opened. */
static bool vmdk_peek(VdImage *img, GError **error)
{
    VmdkState s = {0};
    struct stat st;
    uint8_t head[VMDK_SECTOR];
    bool self, ok = read_start(img, &s, &st, head, &self, error);
    if (ok && self) {
        VmdkExtent e = {.fd = img->fd, .path = img->path, .file_size = (uint64_t)st.st_size};
        ok = self_extent_read(img, &e, head, true, error);
        if (ok) {
            self_extent_rules(img, &e);
            img->size = e.capacity;
        }
    } else if (ok) {
        ok = peek_descriptor(img, s.desc, error);
    }
    vmdk_descriptor_free(s.desc);
    g_free(s.desc_text);
    return ok;
}

/* ---- reads ---- */

/* Holes in a flat extent's file are holes in the disk (asked for only). */
static bool flat_status(VdImage *img, VmdkExtent *e, uint64_t rel, uint64_t max, unsigned flags,
                        VdExtent *ext, GError **error)
{
    uint64_t host = e->flat_offset + rel;
    *ext = (VdExtent){.state = VD_EXTENT_DATA, .length = max, .fd = e->fd, .host_offset = host};
    if (!(flags & VD_STATUS_WANT_ZERO) || host > INT64_MAX)
        return true;
    off_t data = vd_host_lseek(e->fd, (off_t)host, SEEK_DATA);
    if (data < 0 && errno == ENXIO) {
        ext->state = VD_EXTENT_ZERO;
        return true;
    }
    if (data < 0) {
        if (errno == EINVAL || errno == ENOTSUP || errno == EOPNOTSUPP)
            return true;
        vd_set_error_errno(error, errno, "%s: SEEK_DATA in %s", img->name, e->path);
        return false;
    }
    if ((uint64_t)data > host) {
        ext->state = VD_EXTENT_ZERO;
        ext->length = vd_min_u64(max, (uint64_t)data - host);
        return true;
    }
    off_t hole = vd_host_lseek(e->fd, (off_t)host, SEEK_HOLE);
    if (hole < 0) {
        vd_set_error_errno(error, errno, "%s: SEEK_HOLE in %s", img->name, e->path);
        return false;
    }
    if ((uint64_t)hole > host)
        ext->length = vd_min_u64(max, (uint64_t)hole - host);
    return true;
}

static bool vmdk_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                              VdExtent *ext, GError **error)
{
    VmdkState *s = img->opaque;
    VmdkExtent *e = vmdk_find_extent(s, offset);
    if (e == NULL) {
        vd_set_error(error, EIO, "%s: no extent at 0x%" G_GINT64_MODIFIER "x", img->name, offset);
        return false;
    }
    uint64_t rel = offset - e->start;
    uint64_t max = vd_min_u64(length, e->length - rel);
    if (e->noaccess) {
        vd_set_error(error, EIO, "%s: extent %s is marked NOACCESS", img->name, e->line);
        return false;
    }
    switch (e->kind) {
    case VMDK_EXT_ZERO:
        *ext = (VdExtent){.state = VD_EXTENT_ZERO, .length = max, .fd = -1};
        return true;
    case VMDK_EXT_FLAT:
        return flat_status(img, e, rel, max, flags, ext, error);
    default:
        return vmdk_sparse_status(img, e, rel, max, ext, error);
    }
}

static bool vmdk_pread(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error)
{
    VmdkState *s = img->opaque;
    uint8_t *p = buf;
    while (len > 0) {
        VmdkExtent *e = vmdk_find_extent(s, offset);
        if (e == NULL) {
            memset(p, 0, len);
            return true;
        }
        uint64_t rel = offset - e->start;
        size_t n = (size_t)vd_min_u64(len, e->length - rel);
        bool ok = true;
        if (e->noaccess) {
            vd_set_error(error, EIO, "%s: extent %s is marked NOACCESS", img->name, e->line);
            ok = false;
        } else if (e->kind == VMDK_EXT_ZERO) {
            memset(p, 0, n);
        } else if (e->kind == VMDK_EXT_FLAT) {
            ok = vd_host_pread(e->fd, e->path, p, n, e->flat_offset + rel, true, error);
        } else {
            ok = vmdk_sparse_read_decode(img, e, p, n, rel, error);
        }
        if (!ok)
            return false;
        p += n;
        len -= n;
        offset += n;
    }
    return true;
}

/* ---- chain ---- */

static bool vmdk_check_backing(VdImage *img, VdImage *backing, GError **error)
{
    VmdkState *s = img->opaque;
    if (backing->driver != &vd_vmdk_driver) {
        vd_set_error(error, EIO, "%s: parent %s is a %s image, not VMDK", img->name, backing->name,
                     backing->driver->name);
        return false;
    }
    VmdkState *ps = backing->opaque;
    if (s->desc == NULL || !s->desc->has_parent_cid || ps->desc == NULL || !ps->desc->has_cid)
        return true; /* nothing recorded to compare */
    if (s->desc->parent_cid != ps->cid) {
        vd_set_error(error, EIO,
                     "%s: parent %s has CID %08x, but this image was made over CID %08x "
                     "(the parent changed after this image was created)",
                     img->name, backing->name, ps->cid, s->desc->parent_cid);
        return false;
    }
    return true;
}

/* ---- describe ---- */

static void vmdk_describe(VdImage *img, VdInfo *info)
{
    VmdkState *s = img->opaque;
    VmdkDescriptor *d = s->desc;
    vd_info_add_str(info, "create_type", "%s", s->create_type);
    if (d != NULL && d->has_cid)
        vd_info_add_str(info, "cid", "%08x", s->cid);
    if (d != NULL && d->has_parent_cid)
        vd_info_add_str(info, "parent_cid", "%08x", d->parent_cid);
    if (d != NULL && d->parent_hint != NULL)
        vd_info_add_str(info, "parent_file_name_hint", "%s", d->parent_hint);
    const char *v;
    if (d != NULL && (v = vmdk_descriptor_ddb(d, "ddb.adapterType")) != NULL)
        vd_info_add_str(info, "adapter_type", "%s", v);
    if (d != NULL && (v = vmdk_descriptor_ddb(d, "ddb.virtualHWVersion")) != NULL)
        vd_info_add_str(info, "hardware_version", "%s", v);
    if (d != NULL && (v = vmdk_descriptor_ddb(d, "ddb.toolsVersion")) != NULL)
        vd_info_add_str(info, "tools_version", "%s", v);
    for (guint i = 0; i < s->extents->len; i++) {
        VmdkExtent *e = g_ptr_array_index(s->extents, i);
        vd_info_add_list_item(info, "extents", "%s", e->line);
    }
    for (guint i = 0; i < s->extents->len; i++) {
        VmdkExtent *e = g_ptr_array_index(s->extents, i);
        if (e->kind == VMDK_EXT_FLAT || e->kind == VMDK_EXT_ZERO)
            continue;
        /* The first sparse extent speaks for all (they are made alike). */
        vd_info_add_u64(info, "grain_size", e->grain);
        vd_info_add_u64(info, "cluster_size", e->grain);
        vd_info_add_str(info, "compression", "%s", e->compressed ? "deflate" : "none");
        if (e->kind == VMDK_EXT_SPARSE) {
            vd_info_add_u64(info, "sparse_version", e->version);
            vd_info_add_bool(info, "zeroed_grain", e->zero_grain);
            vd_info_add_bool(info, "redundant_grain_directory", e->rgd != NULL);
        }
        break;
    }
}

const VdDriver vd_vmdk_driver = {
    .name = "vmdk",
    .description = "VMware virtual disk (sparse, flat, split, streamOptimized, COWD, seSparse)",
    .caps = VD_CAP_WRITE | VD_CAP_BACKING | VD_CAP_SERIAL_WRITES,
    .probe = vmdk_probe,
    .open = vmdk_open,
    .close = vmdk_close,
    .peek = vmdk_peek,
    .pread = vmdk_pread,
    .pwrite = vmdk_pwrite,
    .block_status = vmdk_block_status,
    .flush = vmdk_flush,
    .write_zeroes = vmdk_write_zeroes,
    .describe = vmdk_describe,
    .check_backing = vmdk_check_backing,
    .check = vmdk_check_report,
};
