/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * zstd: random access by frames. A zstd file is one or more frames, each
 * decodable on its own, so the index is where each frame starts in the
 * file and in what it holds. It comes from the seekable format's seek
 * table when the file ends with one, else from walking the frames at
 * open: a frame's header gives its content size, its block headers give
 * where it ends (no decoding); a frame that does not record its size
 * (written by `zstd` from a pipe) is decoded once, to count, and the
 * index shared by the opens of the file (src/vd-index-cache.h).
 *
 * A read decodes the frame that holds it. Frames of up to ZS_CACHE_FRAME
 * are decoded whole into the decoded-chunk cache (src/vd-ro-cache.h).
 * A larger frame (a file compressed as one frame, as plain `zstd` writes
 * it) is decoded as a stream kept where the last read left it, in windows
 * of ZS_WINDOW that go to a second such cache, so that sequential reads
 * cost one pass, also when they come a little out of order (the windows
 * the stream passes are kept); a read further behind the stream starts
 * again from the frame's beginning: in a single-frame file, random reads
 * cost a decode from the start of the file up to them.
 *
 * Sizes are hostile: a frame must decode to exactly the size its header
 * or the seek table gives it, else the read is an EIO saying so; nothing
 * is allocated from a size beyond what is cached, and the index is
 * charged to the mount's memory budget.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "src/vd-interrupt.h"
#include "src/vd-ro-cache.h"
#include "src/vd-stream.h"
#include "src/vd-container.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-index-cache.h"
#include "src/vd-info.h"
#include "src/vd-io.h"

#define ZS_MAGIC          0xFD2FB528u
#define ZS_SKIP_MAGIC     0x184D2A50u /* to 0x184D2A5F */
#define ZS_SEEK_MAGIC     0x184D2A5Eu
#define ZS_SEEK_FOOTER    0x8F92EAB1u
#define ZS_CACHE_FRAME    (32u << 20)
#define ZS_WINDOW         (1u << 20)
#define ZS_WINDOWS_PASSED 4 /* kept in the cache when the stream passes them */
#define ZS_INPUT          (128u << 10)
#define ZS_RESERVE_STEP   4096         /* frames reserved at a time */
#define ZS_MAX_SIZE       (1ull << 62) /* what the offsets below can add up to */
#define ZS_WINDOW_LOG_MAX 27           /* 128 MiB, libzstd's default: say it */
#define ZS_HEADER_MAX     18 /* the longest frame header: magic, 2, dictionary ID 4, size 8 */

typedef struct {
    uint64_t in_off, in_len;   /* compressed, in the file */
    uint64_t out_off, out_len; /* uncompressed */
} ZsFrame;

/* A decoder running through one frame. */
typedef struct {
    ZSTD_DCtx *dctx;
    uint64_t in, in_end; /* next compressed byte to read, end of the frame */
    uint8_t *buf;
    ZSTD_inBuffer ib;
    bool ended; /* the frame's end was decoded */
} ZsStream;

/* Where the frames are: shared by the opens of one file through the
 * index cache (src/vd-index-cache.h), as a frame that does not record its
 * size costs a decode to count; immutable once built. */
typedef struct {
    VdContext *ctx; /* whose budget reserved is charged to */
    GArray *frames; /* ZsFrame, by out_off */
    uint64_t reserved;
    uint64_t size;
    bool seek_table;
} ZsIndex;

typedef struct {
    VdContext *ctx;
    int fd;
    char *name;
    ZsIndex *ix;
    VdRoCache *frame_cache;  /* whole frames of up to ZS_CACHE_FRAME, by index */
    VdRoCache *window_cache; /* windows of larger frames, by uncompressed offset */
    GMutex lock;             /* guards strm and the fields after it */
    ZsStream strm;
    bool live;
    guint strm_frame;
    uint64_t strm_pos; /* uncompressed offset reached */
    uint64_t starts;   /* atomic: times the stream started at a frame's start */
} ZsSource;

static bool zs_is_skippable(uint32_t magic)
{
    return (magic & 0xFFFFFFF0u) == ZS_SKIP_MAGIC;
}

static bool zs_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
    if (len < 4)
        return false;
    uint32_t m = vd_le32(head);
    if (m == ZS_MAGIC)
        return len >= 6;
    /* A skippable frame first (metadata some writers put there): zstd
     * only if a frame follows it within the head. */
    if (!zs_is_skippable(m) || len < 8)
        return false;
    uint64_t next = 8 + (uint64_t)vd_le32(head + 4);
    return next + 4 <= len && vd_le32(head + next) == ZS_MAGIC;
}

static bool zs_read_raw(ZsSource *x, void *buf, size_t len, uint64_t off, GError **error)
{
    return vd_host_pread(x->fd, x->name, buf, len, off, false, error);
}

static const ZsFrame *frame_at(const ZsSource *x, guint i)
{
    return &g_array_index(x->ix->frames, ZsFrame, i);
}

/* The frame holding uncompressed offset off (< size). */
static guint frame_find(const ZsSource *x, uint64_t off)
{
    guint lo = 0, hi = x->ix->frames->len;
    while (hi - lo > 1) {
        guint mid = lo + (hi - lo) / 2;
        if (frame_at(x, mid)->out_off <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static bool stream_init(ZsSource *x, ZsStream *s, GError **error)
{
    s->dctx = ZSTD_createDCtx();
    s->buf = g_malloc(ZS_INPUT);
    if (s->dctx == NULL) {
        vd_set_error(error, ENOMEM, "%s: no memory for a zstd decoder", x->name);
        return false;
    }
    /* Frames that ask for larger windows are refused rather than given
     * the memory (an error that names the limit). */
    ZSTD_DCtx_setParameter(s->dctx, ZSTD_d_windowLogMax, ZS_WINDOW_LOG_MAX);
    return true;
}

static void stream_clear(ZsStream *s)
{
    ZSTD_freeDCtx(s->dctx);
    s->dctx = NULL;
    g_clear_pointer(&s->buf, g_free);
}

static void stream_start(ZsStream *s, uint64_t in_off, uint64_t in_len)
{
    ZSTD_DCtx_reset(s->dctx, ZSTD_reset_session_only);
    s->in = in_off;
    s->in_end = in_off + in_len;
    s->ib = (ZSTD_inBuffer){s->buf, 0, 0};
    s->ended = false;
}

/* Decode len bytes into out (NULL: skip them). *got is how many came
 * before the frame ended (all of len, unless it ended early); the caller
 * decides whether an early end is an error. */
static bool stream_decode(ZsSource *x, ZsStream *s, uint8_t *out, uint64_t len, uint64_t *got,
                          GError **error)
{
    uint8_t skip[65536];
    *got = 0;
    while (len > 0 && !s->ended) {
        size_t want = (size_t)(out ? MIN(len, (uint64_t)SIZE_MAX) : MIN(len, sizeof skip));
        ZSTD_outBuffer ob = {out ? out : skip, want, 0};
        while (ob.pos < ob.size && !s->ended) {
            if (s->ib.pos == s->ib.size && s->in < s->in_end) {
                size_t n = (size_t)MIN((uint64_t)ZS_INPUT, s->in_end - s->in);
                if (!zs_read_raw(x, s->buf, n, s->in, error))
                    return false;
                s->ib = (ZSTD_inBuffer){s->buf, n, 0};
                s->in += n;
            }
            size_t in_before = s->ib.pos, out_before = ob.pos;
            size_t r = ZSTD_decompressStream(s->dctx, &ob, &s->ib);
            if (ZSTD_isError(r)) {
                vd_set_error(error, EIO, "%s: zstd frame does not decode: %s", x->name,
                             ZSTD_getErrorName(r));
                return false;
            }
            if (r == 0)
                s->ended = true;
            else if (ob.pos == out_before && s->ib.pos == in_before && s->in >= s->in_end) {
                vd_set_error(error, EIO, "%s: zstd frame data ends early", x->name);
                return false;
            }
        }
        *got += ob.pos;
        len -= ob.pos;
        if (out)
            out += ob.pos;
    }
    return true;
}

/* The frame must end here: more output, or none and no end, is an error. */
static bool stream_finish(ZsSource *x, ZsStream *s, uint64_t declared, GError **error)
{
    uint8_t one;
    uint64_t got;
    if (!stream_decode(x, s, &one, 1, &got, error))
        return false;
    if (got > 0) {
        vd_set_error(error, EIO,
                     "%s: a zstd frame decodes to more than its declared %" G_GUINT64_FORMAT
                     " bytes",
                     x->name, declared);
        return false;
    }
    return true;
}

/* len bytes from the current frame, which must have them. */
static bool stream_exact(ZsSource *x, ZsStream *s, uint8_t *out, uint64_t len, uint64_t declared,
                         GError **error)
{
    uint64_t got;
    if (!stream_decode(x, s, out, len, &got, error))
        return false;
    if (got < len) {
        vd_set_error(error, EIO,
                     "%s: a zstd frame ends before its declared %" G_GUINT64_FORMAT " bytes",
                     x->name, declared);
        return false;
    }
    return true;
}

/* A whole frame, decoded (vd_ro_cache's decode function; key: the frame). */
static GBytes *decode_frame(gpointer user, uint64_t key, GError **error)
{
    ZsSource *x = user;
    const ZsFrame *f = frame_at(x, (guint)key);
    ZsStream s = {0};
    uint8_t *data = NULL;
    bool ok = stream_init(x, &s, error);
    if (ok && (data = g_try_malloc(f->out_len)) == NULL) {
        vd_set_error(error, ENOMEM, "%s: no memory for a zstd frame of %" G_GUINT64_FORMAT " bytes",
                     x->name, f->out_len);
        ok = false;
    }
    if (ok) {
        stream_start(&s, f->in_off, f->in_len);
        ok = stream_exact(x, &s, data, f->out_len, f->out_len, error) &&
             stream_finish(x, &s, f->out_len, error);
    }
    stream_clear(&s);
    if (!ok) {
        g_free(data);
        return NULL;
    }
    return g_bytes_new_take(data, f->out_len);
}

typedef struct {
    ZsSource *x;
    uint64_t declared; /* the frame's size, for errors */
} ZsPass;

/* The kept stream's next len bytes (VdStreamDecodeFunc). */
static bool stream_forward(gpointer user, uint8_t *out, uint64_t len, GError **error)
{
    ZsPass *p = user;
    return stream_exact(p->x, &p->x->strm, out, len, p->declared, error);
}

/* A window of a large frame (key: its uncompressed offset), decoded by
 * the kept stream, moved there first (vd-stream.h: the last
 * ZS_WINDOWS_PASSED windows it passes are kept too). */
static GBytes *decode_window(gpointer user, uint64_t key, GError **error)
{
    ZsSource *x = user;
    guint i = frame_find(x, key);
    const ZsFrame *f = frame_at(x, i);
    uint64_t fend = f->out_off + f->out_len;
    uint64_t wlen = MIN((uint64_t)ZS_WINDOW, fend - key);
    g_mutex_lock(&x->lock);
    /* Passed by the stream while this reader waited for it. */
    GBytes *kept = vd_ro_cache_get(x->window_cache, key);
    if (kept != NULL) {
        g_mutex_unlock(&x->lock);
        return kept;
    }
    if (!x->live || x->strm_frame != i || x->strm_pos > key) {
        stream_start(&x->strm, f->in_off, f->in_len);
        x->live = true;
        x->strm_frame = i;
        x->strm_pos = f->out_off;
        __atomic_add_fetch(&x->starts, 1, __ATOMIC_RELAXED);
    }
    ZsPass pass = {.x = x, .declared = f->out_len};
    VdStreamWindows sw = {x->window_cache, ZS_WINDOW, ZS_WINDOWS_PASSED, stream_forward, &pass,
                          x->ctx,          x->name};
    bool stopped;
    bool ok = vd_stream_pass(&sw, &x->strm_pos, key, &stopped, error);
    uint8_t *data = ok ? g_malloc(wlen) : NULL;
    ok = ok && stream_exact(x, &x->strm, data, wlen, f->out_len, error) &&
         (key + wlen < fend || stream_finish(x, &x->strm, f->out_len, error));
    if (ok)
        x->strm_pos = key + wlen;
    else if (!stopped)
        x->live = false;
    g_mutex_unlock(&x->lock);
    if (!ok) {
        g_free(data);
        return NULL;
    }
    return g_bytes_new_take(data, wlen);
}

static bool zs_pread(void *opaque, void *buf, size_t len, uint64_t off, GError **error)
{
    ZsSource *x = opaque;
    uint8_t *p = buf;
    while (len > 0) {
        guint i = frame_find(x, off);
        const ZsFrame *f = frame_at(x, i);
        g_autoptr(GBytes) chunk = NULL;
        uint64_t start;
        if (f->out_len <= ZS_CACHE_FRAME) {
            start = f->out_off;
            chunk = vd_ro_cache_fetch(x->frame_cache, i, decode_frame, x, error);
        } else {
            start = f->out_off + (off - f->out_off) / ZS_WINDOW * ZS_WINDOW;
            chunk = vd_ro_cache_fetch(x->window_cache, start, decode_window, x, error);
        }
        if (chunk == NULL)
            return false;
        gsize have;
        const uint8_t *d = g_bytes_get_data(chunk, &have);
        size_t n = (size_t)MIN((uint64_t)len, start + have - off);
        memcpy(p, d + (off - start), n);
        p += n;
        off += n;
        len -= n;
    }
    return true;
}

static void zs_describe(void *opaque, VdInfo *info)
{
    ZsSource *x = opaque;
    vd_info_add_str(info, "container", "zstd");
    vd_info_add_u64(info, "zstd.frames", x->ix->frames->len);
    vd_info_add_bool(info, "zstd.seek_table", x->ix->seek_table);
    vd_info_add_u64(info, "zstd.stream_starts", __atomic_load_n(&x->starts, __ATOMIC_RELAXED));
}

static void zs_close(void *opaque)
{
    ZsSource *x = opaque;
    if (x->frame_cache != NULL)
        vd_ro_cache_free(x->frame_cache);
    if (x->window_cache != NULL)
        vd_ro_cache_free(x->window_cache);
    stream_clear(&x->strm);
    vd_index_cache_release(x->ix);
    vd_context_unref(x->ctx);
    g_mutex_clear(&x->lock);
    g_free(x->name);
    close(x->fd);
    g_free(x);
}

static const VdSourceOps zs_ops = {
    .name = "zstd",
    .pread = zs_pread,
    .describe = zs_describe,
    .close = zs_close,
};

/* Add a frame to the index, its memory charged to the budget. Empty
 * frames hold nothing to read and are left out. */
static bool frame_add(ZsSource *x, uint64_t in_off, uint64_t in_len, uint64_t out_len,
                      GError **error)
{
    if (out_len == 0)
        return true;
    if (out_len > ZS_MAX_SIZE || x->ix->size > ZS_MAX_SIZE - out_len) {
        vd_set_error(error, EIO, "%s: the zstd frames add up to more than 2^62 bytes", x->name);
        return false;
    }
    if (x->ix->frames->len % ZS_RESERVE_STEP == 0) {
        uint64_t bytes = ZS_RESERVE_STEP * sizeof(ZsFrame);
        if (!vd_context_mem_reserve(x->ctx, bytes, x->name, "zstd frame index", error))
            return false;
        x->ix->reserved += bytes;
    }
    ZsFrame f = {in_off, in_len, x->ix->size, out_len};
    g_array_append_val(x->ix->frames, f);
    x->ix->size += out_len;
    return true;
}

/* The seekable format's seek table, if the file ends with one: true
 * with *found false when it does not. */
static bool read_seek_table(ZsSource *x, uint64_t file_size, bool *found, GError **error)
{
    uint8_t foot[9];
    *found = false;
    if (file_size < 8 + 9 || !zs_read_raw(x, foot, 9, file_size - 9, error))
        return error == NULL || *error == NULL;
    if (vd_le32(foot + 5) != ZS_SEEK_FOOTER)
        return true;
    uint32_t n = vd_le32(foot);
    uint8_t desc = foot[4];
    size_t entry = desc & 0x80 ? 12 : 8;
    uint64_t table = (uint64_t)n * entry + 9;
    if ((desc & 0x7C) != 0 || table + 8 > file_size) {
        vd_set_error(error, EIO,
                     "%s: bad zstd seek table (%u frames in a file of %" G_GUINT64_FORMAT " bytes)",
                     x->name, n, file_size);
        return false;
    }
    uint64_t start = file_size - 8 - table;
    uint8_t hdr[8];
    if (!zs_read_raw(x, hdr, 8, start, error))
        return false;
    if (vd_le32(hdr) != ZS_SEEK_MAGIC || vd_le32(hdr + 4) != table) {
        vd_set_error(error, EIO, "%s: the zstd seek table's frame header does not match its footer",
                     x->name);
        return false;
    }
    /* Read in pieces: its size is bounded by the file's, not by memory. */
    uint8_t buf[12 * 1024];
    uint64_t in_off = 0;
    for (uint32_t i = 0; i < n;) {
        uint32_t k = MIN(n - i, (uint32_t)(sizeof buf / entry));
        if (!zs_read_raw(x, buf, k * entry, start + 8 + (uint64_t)i * entry, error))
            return false;
        for (uint32_t j = 0; j < k; j++, i++) {
            uint64_t clen = vd_le32(buf + j * entry), dlen = vd_le32(buf + j * entry + 4);
            if (clen == 0 || clen > start - in_off) {
                vd_set_error(error, EIO,
                             "%s: zstd seek table entry %u (%" G_GUINT64_FORMAT
                             " bytes) lies beyond the frames",
                             x->name, i, clen);
                return false;
            }
            if (!frame_add(x, in_off, clen, dlen, error))
                return false;
            in_off += clen;
        }
    }
    if (in_off != start) {
        vd_set_error(error, EIO,
                     "%s: the zstd seek table covers %" G_GUINT64_FORMAT
                     " bytes of frames, not %" G_GUINT64_FORMAT,
                     x->name, in_off, start);
        return false;
    }
    /* The sizes frames record must agree with the table's (cheap: one
     * header each); a frame that lies anyway fails when it is read. */
    for (guint i = 0; i < x->ix->frames->len; i++) {
        const ZsFrame *f = frame_at(x, i);
        uint8_t h[ZS_HEADER_MAX];
        size_t hn = (size_t)MIN((uint64_t)sizeof h, f->in_len);
        if (!zs_read_raw(x, h, hn, f->in_off, error))
            return false;
        unsigned long long fcs = ZSTD_getFrameContentSize(h, hn);
        if (fcs == ZSTD_CONTENTSIZE_ERROR ||
            (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs != f->out_len)) {
            vd_set_error(error, EIO,
                         "%s: zstd frame %u at 0x%" G_GINT64_MODIFIER
                         "x %s (seek table: %" G_GUINT64_FORMAT " bytes)",
                         x->name, i, f->in_off,
                         fcs == ZSTD_CONTENTSIZE_ERROR ? "has a bad header"
                                                       : "records another size",
                         f->out_len);
            return false;
        }
    }
    x->ix->seek_table = true;
    *found = true;
    return true;
}

/* Where the frame at off ends, from its header and block headers (no
 * decoding): *len its compressed length. */
static bool frame_extent(ZsSource *x, const uint8_t *h, size_t hn, uint64_t off, uint64_t file_size,
                         uint64_t *len, GError **error)
{
    static const unsigned did_len[4] = {0, 1, 2, 4};
    uint8_t fhd = h[4];
    bool single = fhd & 0x20, checksum = fhd & 0x04;
    unsigned fcs_flag = fhd >> 6;
    uint64_t p = 5 + (single ? 0 : 1) + did_len[fhd & 3] +
                 (fcs_flag == 0 ? (single ? 1 : 0) : 1u << fcs_flag);
    if (fhd & 0x08 || p > hn) {
        vd_set_error(error, EIO, "%s: bad zstd frame header at 0x%" G_GINT64_MODIFIER "x", x->name,
                     off);
        return false;
    }
    p += off;
    for (;;) {
        uint8_t b[3];
        if (p + 3 > file_size || !zs_read_raw(x, b, 3, p, error)) {
            if (error != NULL && *error == NULL)
                vd_set_error(error, EIO,
                             "%s: the zstd frame at 0x%" G_GINT64_MODIFIER "x is cut short",
                             x->name, off);
            return false;
        }
        uint32_t bh = b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16;
        unsigned type = (bh >> 1) & 3;
        uint64_t stored = type == 1 ? 1 : bh >> 3;
        if (type == 3) {
            vd_set_error(error, EIO, "%s: reserved zstd block type at 0x%" G_GINT64_MODIFIER "x",
                         x->name, p);
            return false;
        }
        p += 3 + stored;
        if (bh & 1)
            break;
    }
    if (checksum)
        p += 4;
    if (p > file_size) {
        vd_set_error(error, EIO, "%s: the zstd frame at 0x%" G_GINT64_MODIFIER "x is cut short",
                     x->name, off);
        return false;
    }
    *len = p - off;
    return true;
}

/* Decode a frame that does not record its size once, to learn it. */
static bool frame_count(ZsSource *x, uint64_t off, uint64_t in_len, uint64_t *out_len,
                        GError **error)
{
    ZsStream s = {0};
    bool ok = stream_init(x, &s, error);
    *out_len = 0;
    if (ok)
        stream_start(&s, off, in_len);
    while (ok && !s.ended) {
        uint64_t got;
        if (vd_interrupted(x->ctx, x->name, error))
            ok = false;
        else if ((ok = stream_decode(x, &s, NULL, 64u << 20, &got, error)))
            *out_len += got;
        if (ok && *out_len > ZS_MAX_SIZE) {
            vd_set_error(error, EIO, "%s: a zstd frame decodes to more than 2^62 bytes", x->name);
            ok = false;
        }
    }
    stream_clear(&s);
    return ok;
}

/* Every frame, walked from the start. */
static bool walk_frames(ZsSource *x, uint64_t file_size, GError **error)
{
    uint64_t off = 0;
    while (off < file_size) {
        uint8_t h[ZS_HEADER_MAX];
        size_t hn = (size_t)MIN((uint64_t)sizeof h, file_size - off);
        if (hn < 4 || !zs_read_raw(x, h, hn, off, error)) {
            if (error != NULL && *error == NULL)
                vd_set_error(error, EIO, "%s: stray bytes after the last zstd frame", x->name);
            return false;
        }
        uint32_t magic = vd_le32(h);
        if (zs_is_skippable(magic)) {
            if (hn < 8 || vd_le32(h + 4) > file_size - off - 8) {
                vd_set_error(error, EIO,
                             "%s: a skippable frame at 0x%" G_GINT64_MODIFIER "x runs past the end",
                             x->name, off);
                return false;
            }
            off += 8 + (uint64_t)vd_le32(h + 4);
            continue;
        }
        if (magic != ZS_MAGIC) {
            vd_set_error(error, EIO, "%s: no zstd frame at 0x%" G_GINT64_MODIFIER "x", x->name,
                         off);
            return false;
        }
        unsigned long long fcs = ZSTD_getFrameContentSize(h, hn);
        uint64_t in_len, out_len;
        if (fcs == ZSTD_CONTENTSIZE_ERROR) {
            vd_set_error(error, EIO, "%s: bad zstd frame header at 0x%" G_GINT64_MODIFIER "x",
                         x->name, off);
            return false;
        }
        if (!frame_extent(x, h, hn, off, file_size, &in_len, error))
            return false;
        if (fcs == ZSTD_CONTENTSIZE_UNKNOWN) {
            if (!frame_count(x, off, in_len, &out_len, error))
                return false;
        } else
            out_len = fcs;
        if (!frame_add(x, off, in_len, out_len, error))
            return false;
        off += in_len;
    }
    return true;
}

static void index_free(gpointer p)
{
    ZsIndex *ix = p;
    g_array_unref(ix->frames);
    if (ix->reserved > 0)
        vd_context_mem_release(ix->ctx, ix->reserved);
    vd_context_unref(ix->ctx);
    g_free(ix);
}

/* The frame index, for the index cache: x->ix while it is built. */
static gpointer index_build(gpointer user, uint64_t *bytes, GError **error)
{
    ZsSource *x = user;
    ZsIndex *ix = x->ix = g_new0(ZsIndex, 1);
    ix->ctx = vd_context_ref(x->ctx);
    ix->frames = g_array_new(FALSE, FALSE, sizeof(ZsFrame));
    uint64_t file_size;
    bool found = false;
    bool ok = vd_host_size(x->fd, x->name, &file_size, error) &&
              read_seek_table(x, file_size, &found, error) &&
              (found || walk_frames(x, file_size, error));
    if (ok && ix->frames->len == 0) {
        vd_set_error(error, EIO, "%s: the zstd file holds no data", x->name);
        ok = false;
    }
    x->ix = NULL;
    if (!ok) {
        index_free(ix);
        return NULL;
    }
    *bytes = sizeof *ix + ix->reserved;
    return ix;
}

static bool zs_open(VdContext *ctx, int fd, const char *path, const char *name,
                    const VdSourceOps **ops, void **opaque, uint64_t *size, GError **error)
{
    ZsSource *x = g_new0(ZsSource, 1);
    x->ctx = vd_context_ref(ctx);
    x->fd = fd;
    x->name = g_strdup(name);
    g_mutex_init(&x->lock);
    VdIndexKey key;
    bool ok =
        stream_init(x, &x->strm, error) && vd_index_key_of(ctx, "zstd", fd, name, &key, error);
    if (ok) {
        x->ix = vd_index_cache_get(&key, index_build, x, index_free, error);
        ok = x->ix != NULL;
    }
    if (!ok) {
        zs_close(x);
        return false;
    }
    uint64_t unit = 0;
    bool large = false;
    for (guint i = 0; i < x->ix->frames->len; i++) {
        uint64_t n = frame_at(x, i)->out_len;
        if (n <= ZS_CACHE_FRAME)
            unit = MAX(unit, n);
        else
            large = true;
    }
    if (unit > 0)
        x->frame_cache = vd_ro_cache_new(ctx->decode_cache_bytes, unit);
    if (large)
        x->window_cache = vd_ro_cache_new(ctx->decode_cache_bytes, ZS_WINDOW);
    *ops = &zs_ops;
    *opaque = x;
    *size = x->ix->size;
    return true;
}

/* For a probe: the first len bytes, decoded from the start (over frame
 * boundaries, skippable frames passed), nothing checked but that they
 * decode. Opening walks every frame's blocks and decodes the frames that
 * do not record their size (`zstd` from a pipe): a probe need not. */
static bool zs_head(VdContext *ctx, int fd, const char *name, uint8_t *buf, size_t len, size_t *got,
                    bool *all, GError **error)
{
    (void)ctx;
    ZsSource probe = {.fd = fd, .name = (char *)name};
    ZsStream s = {0};
    uint64_t file_size, at = 0;
    *got = 0;
    *all = false;
    if (!vd_host_size(fd, name, &file_size, error) || !stream_init(&probe, &s, error)) {
        stream_clear(&s);
        return false;
    }
    ZSTD_outBuffer ob = {buf, len, 0};
    size_t r = 1; /* not at a frame's end */
    bool ok = true;
    while (ok && ob.pos < ob.size) {
        if (s.ib.pos == s.ib.size) {
            size_t n = (size_t)MIN((uint64_t)ZS_INPUT, file_size - at);
            if (n == 0) {
                /* The end of the file: at a frame's end, all of it. */
                *all = r == 0;
                if (r != 0) {
                    vd_set_error(error, EIO, "%s: the zstd data is cut short", name);
                    ok = false;
                }
                break;
            }
            if (!(ok = zs_read_raw(&probe, s.buf, n, at, error)))
                break;
            s.ib = (ZSTD_inBuffer){s.buf, n, 0};
            at += n;
        }
        r = ZSTD_decompressStream(s.dctx, &ob, &s.ib);
        if (ZSTD_isError(r)) {
            vd_set_error(error, EIO,
                         "%s: zstd data does not decode at 0x%" G_GINT64_MODIFIER "x: %s", name,
                         at - (s.ib.size - s.ib.pos), ZSTD_getErrorName(r));
            ok = false;
        }
    }
    *got = ob.pos;
    stream_clear(&s);
    return ok;
}

static const char *const zs_more_suffixes[] = {".zstd", NULL};

const VdContainer vd_zstd_container = {
    .name = "zstd",
    .suffix = ".zst",
    .more_suffixes = zs_more_suffixes,
    .probe = zs_probe,
    .open = zs_open,
    .head = zs_head,
};
