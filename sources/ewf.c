/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * EWF evidence sets as a container: the first segment (NAME.E01, or
 * NAME.s01 for SMART) is the container of the media, shown as NAME; the
 * later segments (.E02 ... .E99, .EAA ... .ZZZ, in the first one's letter
 * case) are found by name beside it, opened confined like any file named
 * inside an image, and listed as the container's members so that the
 * listing hides them. Chunks are decoded whole into the decoded-chunk
 * cache (src/vd-ro-cache.c: single-flight, sized by its readers). EWF2
 * (.Ex01) is recognised and refused by name.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "src/vd-ro-cache.h"
#include "sources/ewf.h"
#include "src/vd-container.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-file.h"
#include "src/vd-info.h"
#include "src/vd-io.h"

/* How many chunks one is_zero answer may look at: SEEK_HOLE asks again. */
#define EWF_ZERO_SCAN 65536

typedef struct {
    VdFile f;
    char *path;
    char *name; /* for messages */
} EwfSegment;

typedef struct {
    VdContext *ctx;
    char *name;
    char *stem;   /* the first segment's path without its extension's last two characters */
    char letter;  /* the extension's first one: E, e, S or s */
    GArray *segs; /* EwfSegment; [0] is the container's own file */
    char **members;
    EwfSet *set;
    VdRoCache *cache;
    uint64_t reserved; /* of ctx's budget */
} EwfSource;

static bool ewf_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
    /* The first segment only: the others are its members. */
    if (len >= EWF_FILE_HEADER && memcmp(head, EWF_MAGIC, 8) == 0)
        return head[8] == 1 && vd_le16(head + 9) == 1;
    return len >= 16 && memcmp(head, EWF2_MAGIC, 8) == 0 && vd_le32(head + 12) == 1;
}

bool ewf_segment_ext(char letter, unsigned n, char ext[4])
{
    bool lower = g_ascii_islower(letter);
    if (n <= 99) {
        g_snprintf(ext, 4, "%c%02u", letter, n);
        return true;
    }
    unsigned k = n - 100, first = (unsigned)(g_ascii_toupper(letter) - 'A') + k / 676;
    if (first >= 26)
        return false;
    char a = lower ? 'a' : 'A';
    ext[0] = (char)(a + first);
    ext[1] = (char)(a + k / 26 % 26);
    ext[2] = (char)(a + k % 26);
    ext[3] = 0;
    return true;
}

static bool io_segment(void *user, unsigned n, uint64_t *size, GError **error)
{
    EwfSource *x = user;
    if (n == 1)
        return vd_host_size(g_array_index(x->segs, EwfSegment, 0).f.fd, x->name, size, error);
    char ext[4];
    if (x->stem == NULL || !ewf_segment_ext(x->letter, n, ext)) {
        vd_set_error(error, EIO,
                     "%s: segment %u cannot be named (the first segment's name must end in .E01 "
                     "or .s01, and names end at .ZZZ)",
                     x->name, n);
        return false;
    }
    EwfSegment seg = {.path = g_strconcat(x->stem, ext, NULL)};
    g_autofree char *base = g_path_get_basename(seg.path);
    seg.name = g_strdup_printf("%s: segment %s", x->name, base);
    GError *local = NULL;
    if (!vd_file_open(x->ctx, seg.path, seg.name,
                      VD_FILE_MEMBER | VD_FILE_NO_CONTAINER | VD_FILE_NO_LOCK, &seg.f, &local)) {
        int code = vd_error_errno(local);
        vd_set_error(error, code == ENOENT ? EIO : code, "%s%s", local->message,
                     code == ENOENT ? " (the set has more segments)" : "");
        g_error_free(local);
        g_free(seg.path);
        g_free(seg.name);
        return false;
    }
    g_array_append_val(x->segs, seg);
    return vd_host_size(seg.f.fd, seg.name, size, error);
}

static bool io_read(void *user, unsigned n, void *buf, size_t len, uint64_t off, GError **error)
{
    EwfSource *x = user;
    const EwfSegment *seg = &g_array_index(x->segs, EwfSegment, n - 1);
    return vd_host_pread(seg->f.fd, n == 1 ? x->name : seg->name, buf, len, off, false, error);
}

static bool io_reserve(void *user, uint64_t bytes, const char *what, GError **error)
{
    EwfSource *x = user;
    if (!vd_context_mem_reserve(x->ctx, bytes, x->name, what, error))
        return false;
    x->reserved += bytes;
    return true;
}

static void io_release(void *user, uint64_t bytes)
{
    EwfSource *x = user;
    vd_context_mem_release(x->ctx, bytes);
    x->reserved -= bytes;
}

static const EwfIo ewf_io = {
    .segment = io_segment,
    .read = io_read,
    .reserve = io_reserve,
    .release = io_release,
};

static GBytes *decode_chunk(gpointer user, uint64_t key, GError **error)
{
    return ewf_chunk_read(user, key, error);
}

static bool ewf_pread(void *opaque, void *buf, size_t len, uint64_t off, GError **error)
{
    EwfSource *x = opaque;
    uint8_t *p = buf;
    uint64_t cs = ewf_chunk_size(x->set);
    while (len > 0) {
        uint64_t i = off / cs, in = off - i * cs;
        size_t n = (size_t)MIN((uint64_t)len, cs - in);
        /* Cached, or stored as it is and checked before: read in place. */
        g_autoptr(GBytes) chunk = vd_ro_cache_get(x->cache, i);
        EwfChunk c;
        if (chunk == NULL && ewf_chunk_in_place(x->set, i, &c)) {
            if (!io_read(x, c.seg, p, n, c.off + in, error))
                return false;
            p += n;
            off += n;
            len -= n;
            continue;
        }
        /* A whole chunk asked for (sequential reads) is decoded where it
         * goes: the cache is for the chunks read piece by piece. */
        if (chunk == NULL && in == 0 && n == cs && (i + 1) * cs <= ewf_media_size(x->set)) {
            if (!ewf_chunk_read_whole(x->set, i, p, error))
                return false;
            p += n;
            off += n;
            len -= n;
            continue;
        }
        if (chunk == NULL)
            chunk = vd_ro_cache_fetch(x->cache, i, decode_chunk, x->set, error);
        if (chunk == NULL)
            return false;
        gsize have;
        const uint8_t *d = g_bytes_get_data(chunk, &have);
        if (in + n > have) {
            vd_set_error(error, EIO, "%s: chunk %" G_GUINT64_FORMAT " is short", x->name, i);
            return false;
        }
        memcpy(p, d + in, n);
        p += n;
        off += n;
        len -= n;
    }
    return true;
}

/* Bytes of a chunk stored as it is and checked once: its segment's, so
 * that the kernel copies them from there. */
static int ewf_host_range(void *opaque, uint64_t off, uint64_t len, uint64_t *host_off)
{
    EwfSource *x = opaque;
    uint64_t cs = ewf_chunk_size(x->set), i = off / cs;
    EwfChunk c;
    if (len == 0 || (off + len - 1) / cs != i || !ewf_chunk_in_place(x->set, i, &c))
        return -1;
    *host_off = c.off + (off - i * cs);
    return g_array_index(x->segs, EwfSegment, c.seg - 1).f.fd;
}

static bool ewf_is_zero(void *opaque, uint64_t off, uint64_t len, bool *zero, uint64_t *run)
{
    EwfSource *x = opaque;
    uint64_t cs = ewf_chunk_size(x->set), first = off / cs, end = off + len, i;
    g_autoptr(GError) err = NULL;
    if (!ewf_chunk_is_zero(x->set, first, zero, &err))
        return false;
    for (i = first + 1; i * cs < end && i - first < EWF_ZERO_SCAN; i++) {
        bool z;
        if (!ewf_chunk_is_zero(x->set, i, &z, NULL) || z != *zero)
            break;
    }
    *run = MIN(i * cs, end) - off;
    return true;
}

static const char *const *ewf_members(void *opaque)
{
    EwfSource *x = opaque;
    return (const char *const *)x->members;
}

static bool ewf_lock(void *opaque, GError **error)
{
    EwfSource *x = opaque;
    for (guint i = 1; i < x->segs->len; i++) {
        EwfSegment *seg = &g_array_index(x->segs, EwfSegment, i);
        if (!seg->f.locked && !vd_file_lock(x->ctx, &seg->f, seg->name, error))
            return false;
    }
    return true;
}

static void ewf_describe(void *opaque, VdInfo *info)
{
    EwfSource *x = opaque;
    const EwfMeta *m = ewf_meta(x->set);
    if (m->md5[0])
        vd_info_add_str(info, "ewf.md5", "%s", m->md5);
    if (m->sha1[0])
        vd_info_add_str(info, "ewf.sha1", "%s", m->sha1);
    for (guint i = 0; i + 1 < m->values->len; i += 2) {
        g_autofree char *key = g_strconcat("ewf.", (char *)m->values->pdata[i], NULL);
        vd_info_add_str(info, key, "%s", (char *)m->values->pdata[i + 1]);
    }
    if (m->media_type != NULL)
        vd_info_add_str(info, "ewf.media_type", "%s", m->media_type);
    vd_info_add_u64(info, "ewf.chunk_size", ewf_chunk_size(x->set));
    vd_info_add_u64(info, "ewf.segments", ewf_segment_count(x->set));
    for (guint i = 0; i < m->errors->len; i++)
        vd_info_add_list_item(info, "ewf.acquiry_errors", "%s", (char *)m->errors->pdata[i]);
}

static uint64_t ewf_unit(void *opaque)
{
    EwfSource *x = opaque;
    return ewf_chunk_size(x->set);
}

static void ewf_close(void *opaque)
{
    EwfSource *x = opaque;
    if (x->cache != NULL)
        vd_ro_cache_free(x->cache);
    ewf_set_free(x->set);
    for (guint i = 0; i < x->segs->len; i++) {
        EwfSegment *seg = &g_array_index(x->segs, EwfSegment, i);
        if (i > 0)
            vd_file_forget(x->ctx, &seg->f);
        close(seg->f.fd);
        g_free(seg->path);
        g_free(seg->name);
    }
    g_array_unref(x->segs);
    g_strfreev(x->members);
    if (x->reserved > 0)
        vd_context_mem_release(x->ctx, x->reserved);
    vd_context_unref(x->ctx);
    g_free(x->stem);
    g_free(x->name);
    g_free(x);
}

static const VdSourceOps ewf_ops = {
    .name = "EWF",
    .pread = ewf_pread,
    .is_zero = ewf_is_zero,
    .host_range = ewf_host_range,
    .members = ewf_members,
    .lock = ewf_lock,
    .describe = ewf_describe,
    .unit = ewf_unit,
    .close = ewf_close,
};

/* NAME.E01 (any case), NAME.s01: where the later segments' names come
 * from. */
static void name_segments(EwfSource *x, const char *path)
{
    size_t n = strlen(path);
    if (n < 4 || path[n - 4] != '.' || path[n - 2] != '0' || path[n - 1] != '1')
        return;
    char l = path[n - 3];
    if (g_ascii_toupper(l) != 'E' && g_ascii_toupper(l) != 'S')
        return;
    x->letter = l;
    x->stem = g_strndup(path, n - 3);
}

static bool ewf_open(VdContext *ctx, int fd, const char *path, const char *name,
                     const VdSourceOps **ops, void **opaque, uint64_t *size, GError **error)
{
    uint8_t head[8];
    if (!vd_host_pread(fd, name, head, sizeof head, 0, false, error)) {
        close(fd);
        return false;
    }
    if (memcmp(head, EWF2_MAGIC, 8) == 0) {
        vd_set_error(error, EIO,
                     "%s: an EWF2 evidence file (EnCase 7 .Ex01): not supported (convert it with "
                     "ewfexport to .E01 or raw)",
                     name);
        close(fd);
        return false;
    }
    EwfSource *x = g_new0(EwfSource, 1);
    x->ctx = vd_context_ref(ctx);
    x->name = g_strdup(name);
    x->segs = g_array_new(FALSE, TRUE, sizeof(EwfSegment));
    EwfSegment first = {.f = {.fd = fd, .lock_fd = fd}, .path = g_strdup(path)};
    g_array_append_val(x->segs, first);
    name_segments(x, path);
    x->set = ewf_set_open(&ewf_io, x, name, error);
    if (x->set == NULL) {
        ewf_close(x);
        return false;
    }
    x->members = g_new0(char *, x->segs->len);
    for (guint i = 1; i < x->segs->len; i++)
        x->members[i - 1] = g_strdup(g_array_index(x->segs, EwfSegment, i).path);
    x->cache = vd_ro_cache_new(ctx->decode_cache_bytes, ewf_chunk_size(x->set));
    *ops = &ewf_ops;
    *opaque = x;
    *size = ewf_media_size(x->set);
    return true;
}

static const char *const ewf_more_suffixes[] = {".s01", ".Ex01", NULL};

const VdContainer vd_ewf_container = {
    .name = "ewf",
    .suffix = ".E01",
    .more_suffixes = ewf_more_suffixes,
    .holds_disk = true,
    .probe = ewf_probe,
    .open = ewf_open,
};
