/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Split raw images: a raw disk cut into consecutive files, shown as one
 * raw file under the first segment's name; the other segments are members
 * (hidden). Recognised sets, for any NAME:
 *
 *   NAME.000, NAME.001, ...   numeric, from zero (2 to 6 digits)
 *   NAME.001, NAME.002, ...   numeric, from one (when NAME.000 is absent)
 *   NAME.aa, NAME.ab, ...     alphabetic (2 to 4 lower-case letters)
 *
 * as `split -d -a N --numeric-suffixes=0|1 disk.img disk.img.` and plain
 * `split disk.img disk.img.` make them. A set needs at least two
 * segments: a lone NAME.000 is not one (it is shown as raw only if "000"
 * is in raw_ext). The suffix width is fixed by the first segment; the set
 * ends at the first missing name. Segments may differ in size (the last
 * is usually shorter); sizes are taken at open.
 *
 * raw_ext: the extension of "disk.img.000" is "000", so a raw_ext list
 * never matches segments unless it names such suffixes; and when it does,
 * the split set still wins for the first segment (a probe match beats the
 * extension fallback) while the later segments are hidden as members.
 *
 * Writes go to the segments in place, within the set's size (no growth).
 */
#include "config.h"

#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/vd-error.h"
#include "src/vd-file.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "src/vd-io.h"

#define SPLIT_MAX_SEGMENTS 100000

typedef struct {
    int fd;         /* segment 0 uses img->fd (not closed here) */
    char *path;     /* host path */
    uint64_t start; /* offset of its first byte in the disk */
    uint64_t size;
} SplitSeg;

typedef struct {
    SplitSeg *segs; /* n, in disk order; immutable after open */
    guint n;
    char *scheme; /* "numeric from 0 (3 digits)" etc., for describe */
} SplitState;

typedef enum { SUFFIX_NONE, SUFFIX_NUM0, SUFFIX_NUM1, SUFFIX_ALPHA } SuffixKind;

/* Which set the name starts, and where its suffix begins. */
static SuffixKind first_suffix(const char *name, size_t *suffix_at, size_t *width)
{
    const char *dot = strrchr(name, '.');
    if (dot == NULL || dot == name)
        return SUFFIX_NONE;
    const char *suf = dot + 1;
    size_t w = strlen(suf);
    *suffix_at = (size_t)(suf - name);
    *width = w;
    bool digits = w >= 2 && w <= 6, alpha = w >= 2 && w <= 4;
    for (size_t i = 0; i < w; i++) {
        digits &= g_ascii_isdigit(suf[i]);
        alpha &= suf[i] == 'a';
    }
    if (alpha)
        return SUFFIX_ALPHA;
    if (!digits)
        return SUFFIX_NONE;
    for (size_t i = 0; i + 1 < w; i++) {
        if (suf[i] != '0')
            return SUFFIX_NONE;
    }
    return suf[w - 1] == '0' ? SUFFIX_NUM0 : suf[w - 1] == '1' ? SUFFIX_NUM1 : SUFFIX_NONE;
}

/* The path of segment k of the set that path starts (NULL past the suffix range). */
static char *segment_path(const char *path, size_t suffix_at, size_t width, SuffixKind kind,
                          uint64_t k)
{
    g_autofree char *suffix = NULL;
    if (kind == SUFFIX_ALPHA) {
        suffix = g_malloc(width + 1);
        suffix[width] = '\0';
        for (size_t i = width; i-- > 0;) {
            suffix[i] = (char)('a' + k % 26);
            k /= 26;
        }
        if (k != 0)
            return NULL;
    } else {
        uint64_t num = k + (kind == SUFFIX_NUM1);
        suffix = g_strdup_printf("%0*" PRIu64, (int)width, num);
        if (strlen(suffix) != width)
            return NULL;
    }
    /* suffix_at counts in the base name; the directory part is unchanged. */
    size_t dir_len = strlen(path) - strlen(strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
    return g_strdup_printf("%.*s%s", (int)(dir_len + suffix_at), path, suffix);
}

static bool is_regular(const char *path, struct stat *st)
{
    return stat(path, st) == 0 && S_ISREG(st->st_mode);
}

static int split_probe(const VdProbe *probe)
{
    size_t at, width;
    SuffixKind kind = first_suffix(probe->basename, &at, &width);
    if (kind == SUFFIX_NONE || probe->is_dir || probe->path == NULL)
        return VD_PROBE_NO;
    struct stat st;
    if (kind == SUFFIX_NUM1) {
        /* NAME.001 is the second segment when NAME.000 exists. */
        g_autofree char *zero = segment_path(probe->path, at, width, SUFFIX_NUM0, 0);
        if (zero != NULL && is_regular(zero, &st))
            return VD_PROBE_NO;
    }
    g_autofree char *next = segment_path(probe->path, at, width, kind, 1);
    if (next == NULL || !is_regular(next, &st))
        return VD_PROBE_NO;
    /* Weaker than any magic number: a split qcow2 is not a split raw disk. */
    return VD_PROBE_WEAK;
}

static void split_close(VdImage *img)
{
    SplitState *s = img->opaque;
    if (s == NULL)
        return;
    for (guint i = 0; i < s->n; i++) {
        if (i > 0 && s->segs[i].fd >= 0)
            close(s->segs[i].fd);
        g_free(s->segs[i].path);
    }
    g_free(s->segs);
    g_free(s->scheme);
    g_free(s);
    img->opaque = NULL;
}

static bool split_open(VdImage *img, GError **error)
{
    const char *base = strrchr(img->path, '/') ? strrchr(img->path, '/') + 1 : img->path;
    size_t at, width;
    SuffixKind kind = first_suffix(base, &at, &width);
    if (kind == SUFFIX_NONE) {
        vd_set_error(error, EIO, "%s: not the first segment of a split set", img->name);
        return false;
    }
    SplitState *s = g_new0(SplitState, 1);
    img->opaque = s;
    bool ok = false;
    g_autoptr(GArray) segs = g_array_new(FALSE, TRUE, sizeof(SplitSeg));
    uint64_t total = 0;
    for (uint64_t k = 0;; k++) {
        SplitSeg seg = {.fd = -1};
        struct stat st;
        if (k == 0) {
            seg.fd = img->fd;
            seg.path = g_strdup(img->path);
            if (fstat(img->fd, &st) < 0) {
                vd_set_error_errno(error, errno, "%s", img->name);
                g_free(seg.path);
                goto out;
            }
        } else {
            seg.path = segment_path(img->path, at, width, kind, k);
            if (seg.path == NULL || !is_regular(seg.path, &st)) {
                g_free(seg.path);
                break;
            }
            if (k >= SPLIT_MAX_SEGMENTS) {
                vd_set_error(error, EIO, "%s: more than %u segments", img->name,
                             SPLIT_MAX_SEGMENTS);
                g_free(seg.path);
                goto out;
            }
            /* One segment the host will not let us write: the set is read-only. */
            seg.fd = vd_image_open_member(img, seg.path, "segment", VD_FILE_WRITE, error);
            if (seg.fd < 0) {
                g_free(seg.path);
                goto out;
            }
            if (fstat(seg.fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                vd_set_error(error, EIO, "%s: segment %s is not a regular file", img->name,
                             seg.path);
                close(seg.fd);
                g_free(seg.path);
                goto out;
            }
        }
        seg.start = total;
        seg.size = (uint64_t)st.st_size;
        g_array_append_val(segs, seg);
        if (__builtin_add_overflow(total, seg.size, &total) || total > INT64_MAX) {
            vd_set_error(error, EIO, "%s: segments add up to more than 2^63 bytes", img->name);
            goto out;
        }
    }
    if (segs->len < 2) {
        vd_set_error(error, EIO, "%s: split set without a second segment", img->name);
        goto out;
    }
    img->size = total;
    s->scheme = kind == SUFFIX_ALPHA
                    ? g_strdup_printf("alphabetic (%zu letters)", width)
                    : g_strdup_printf("numeric from %d (%zu digits)", kind == SUFFIX_NUM1, width);
    ok = true;
out:
    s->n = segs->len;
    s->segs = (SplitSeg *)(void *)g_array_free(g_steal_pointer(&segs), FALSE);
    if (!ok)
        split_close(img);
    return ok;
}

/* The segment holding offset (< size): the last one starting at or before it. */
static const SplitSeg *find_seg(const SplitState *s, uint64_t offset)
{
    guint lo = 0, hi = s->n;
    while (hi - lo > 1) {
        guint mid = lo + (hi - lo) / 2;
        if (s->segs[mid].start <= offset)
            lo = mid;
        else
            hi = mid;
    }
    /* Skip empty segments that start at the same offset. */
    while (lo + 1 < s->n && s->segs[lo].start + s->segs[lo].size <= offset)
        lo++;
    return &s->segs[lo];
}

static bool split_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                               VdExtent *ext, GError **error)
{
    const SplitSeg *g = find_seg(img->opaque, offset);
    uint64_t within = offset - g->start;
    *ext = (VdExtent){VD_EXTENT_DATA, vd_min_u64(length, g->size - within), g->fd, within};
    if (!(flags & VD_STATUS_WANT_ZERO))
        return true;
    off_t data = lseek(g->fd, (off_t)within, SEEK_DATA);
    if (data < 0 && errno == ENXIO) {
        ext->state = VD_EXTENT_ZERO; /* hole to the end of the segment */
        return true;
    }
    if (data < 0) {
        if (errno == EINVAL || errno == ENOTSUP)
            return true;
        vd_set_error_errno(error, errno, "%s: SEEK_DATA in %s", img->name, g->path);
        return false;
    }
    if ((uint64_t)data > within) {
        ext->state = VD_EXTENT_ZERO;
        ext->length = vd_min_u64(ext->length, (uint64_t)data - within);
        return true;
    }
    off_t hole = lseek(g->fd, (off_t)within, SEEK_HOLE);
    if (hole < 0) {
        vd_set_error_errno(error, errno, "%s: SEEK_HOLE in %s", img->name, g->path);
        return false;
    }
    if ((uint64_t)hole > within)
        ext->length = vd_min_u64(ext->length, (uint64_t)hole - within);
    return true;
}

static bool split_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    const uint8_t *p = buf;
    while (len > 0) {
        const SplitSeg *g = find_seg(img->opaque, offset);
        uint64_t within = offset - g->start;
        size_t n = (size_t)vd_min_u64(len, g->size - within);
        if (!vd_host_pwrite(g->fd, g->path, p, n, within, error))
            return false;
        p += n, offset += n, len -= n;
    }
    return true;
}

static bool split_flush(VdImage *img, GError **error)
{
    SplitState *s = img->opaque;
    for (guint i = 0; i < s->n; i++) {
        if (!vd_host_fdatasync(s->segs[i].fd, s->segs[i].path, error))
            return false;
    }
    return true;
}

static void split_describe(VdImage *img, VdInfo *info)
{
    SplitState *s = img->opaque;
    vd_info_add_str(info, "split_scheme", "%s", s->scheme);
    vd_info_add_u64(info, "segments", s->n);
    for (guint i = 0; i < s->n; i++) {
        g_autofree char *b = g_path_get_basename(s->segs[i].path);
        vd_info_add_list_item(info, "segment_files", "%s (%" PRIu64 " bytes)", b, s->segs[i].size);
    }
}

const VdDriver vd_split_raw_driver = {
    .name = "split-raw",
    .description = "split raw image: NAME.000/.001/..., NAME.001/.002/... or NAME.aa/.ab/...",
    .caps = VD_CAP_WRITE,
    .probe = split_probe,
    .open = split_open,
    .close = split_close,
    .pwrite = split_pwrite,
    .block_status = split_block_status,
    .flush = split_flush,
    .describe = split_describe,
};
