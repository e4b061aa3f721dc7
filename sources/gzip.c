/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * gzip: random access by restart points. A gzip file (one member or
 * several, concatenated) records its size only modulo 2^32, so the first
 * open decodes it all: that pass learns the size, checks every member's
 * CRC and length, and records restart points on the way: at a deflate
 * block boundary every GZ_SPACING or more of output, where it is in the
 * file (to the bit) and the 32 KiB of output before it, which is all a
 * raw inflate needs to go on from there (inflatePrime, then
 * inflateSetDictionary). The points are placed for the windows reads
 * decode (GZ_WINDOW, a divisor of the spacing): at the last block
 * boundary (or member start) at or before each multiple of the spacing,
 * so that a read that misses inflates at most one deflate block more
 * than the windows it keeps. The index is kept in memory while the file is
 * open, charged to the mount's memory budget and bounded: past
 * GZ_MAX_POINTS points (or when the budget says no) every other point is
 * dropped and the spacing doubles, so the index never takes more than
 * about GZ_MAX_POINTS * 32 KiB (128 MiB) and a read never decodes more
 * than one spacing of output (and one block) before what it wants.
 *
 * The pass is synchronous, at open, the cost of reading a gzip file at
 * all: the size has to be known before the file can be stat'ed. A probe
 * does not pay it (gz_head: the first bytes only, so that a listing does
 * not wait for it; the listing leaves the size to the file's stat). The index
 * is shared by the opens of the same file and kept a while after the last
 * one closes (src/vd-index-cache.h), since a listing's probe, peek and
 * stat and the open after them come in a row. Reads
 * after it decode from the nearest point before them, in windows of
 * GZ_WINDOW kept in the decoded-chunk cache (src/vd-ro-cache.h), with
 * the decoder left where the last read stopped so that sequential reads
 * cost one pass. The windows are a quarter of the starting spacing: a
 * random read that misses inflates from the point to the end of its
 * window, not to the end of the spacing, and keeps every whole window it
 * inflated on the way, so that nothing inflated is thrown away.
 *
 * Spilled (src/vd-spill.h, when the mount has a spill directory): the
 * first pass also writes what it inflates to an unlinked file, and reads
 * are preads of it, handed out as host ranges, its holes the zeros; the
 * points are then thinned to the first, since nothing reads them.
 *
 * Hostile files: a member that does not inflate, fails its CRC or
 * length, or is cut short makes the open fail with the reason; the pass
 * allocates nothing from what the file says; inflating to terabytes costs
 * time (deflate expands at most about 1032 times) but no memory. Bytes
 * after the last member that do not start another are ignored, as gzip
 * does.
 */
#include "config.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "src/vd-interrupt.h"
#include "src/vd-ro-cache.h"
#include "src/vd-container.h"
#include "src/vd-error.h"
#include "src/vd-index-cache.h"
#include "src/vd-info.h"
#include "src/vd-io.h"
#include "src/vd-spill.h"
#include "src/vd-stream.h"

#define GZ_DICT       32768u
#define GZ_SPACING    (1u << 20) /* at the start: doubles as points are thinned */
#define GZ_MAX_POINTS 4096u
#define GZ_WINDOW     (256u << 10) /* divides the spacing */
#define GZ_INPUT      (256u << 10)
#define GZ_MAX_SIZE   (1ull << 62)

typedef struct {
    uint64_t in;  /* first whole compressed byte not consumed */
    uint64_t out; /* uncompressed offset */
    uint8_t bits; /* unused bits of the byte before in, still to read */
    bool member;  /* the start of a member (its gzip header at in): no window */
    uint32_t dict_len;
    uint8_t *dict; /* the output before out, dict_len bytes (up to 32 KiB) */
} GzPoint;

/* An inflate running from a restart point on. */
typedef struct {
    z_stream zs;
    bool inited;
    bool raw;    /* inside a member started mid-way: its trailer is ours to skip */
    bool ended;  /* past the last member */
    uint64_t in; /* next compressed byte to read */
    uint8_t *buf;
} GzStream;

/* What the first pass learns, shared by the opens of one file (the
 * probe, the open, the stat of a listing each open it) through the index
 * cache: immutable once built. */
typedef struct {
    VdContext *ctx;    /* whose budget reserved is charged to */
    uint64_t data_end; /* end of the last member */
    uint64_t size;
    uint64_t members;
    uint64_t spacing;
    GArray *points; /* GzPoint, by out */
    uint64_t reserved;
    int spill_fd; /* what the pass inflated, in a spill file (src/vd-spill.h), or -1 */
} GzIndex;

typedef struct {
    VdContext *ctx;
    int fd;
    char *name;
    GzIndex *ix;
    VdRoCache *cache; /* windows, by uncompressed offset */
    GMutex lock;      /* guards strm and strm_pos */
    GzStream strm;
    uint64_t strm_pos;
    bool live;
    uint64_t inflated; /* atomic: bytes inflated by reads (kept or skipped) */
} GzSource;

static bool gz_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
    /* Magic, deflate, and no reserved flag bits. */
    return len >= 10 && head[0] == 0x1f && head[1] == 0x8b && head[2] == 8 && (head[3] & 0xe0) == 0;
}

static const GzPoint *point_at(const GzSource *x, guint i)
{
    return &g_array_index(x->ix->points, GzPoint, i);
}

static void zlib_error(GzSource *x, const GzStream *s, int r, GError **error)
{
    uint64_t at = s->in - s->zs.avail_in;
    if (r == Z_MEM_ERROR)
        vd_set_error(error, ENOMEM, "%s: no memory to inflate", x->name);
    else
        vd_set_error(error, EIO, "%s: gzip data does not inflate at 0x%" G_GINT64_MODIFIER "x: %s",
                     x->name, at, s->zs.msg ? s->zs.msg : "bad data");
}

static bool stream_init(GzSource *x, GzStream *s, GError **error)
{
    memset(&s->zs, 0, sizeof s->zs);
    s->buf = g_malloc(GZ_INPUT);
    if (inflateInit2(&s->zs, 15 + 16) != Z_OK) {
        vd_set_error(error, ENOMEM, "%s: no memory for an inflate stream", x->name);
        return false;
    }
    s->inited = true;
    return true;
}

static void stream_clear(GzStream *s)
{
    if (s->inited)
        inflateEnd(&s->zs);
    s->inited = false;
    g_clear_pointer(&s->buf, g_free);
}

/* Move the stream to restart point p. */
static bool stream_start(GzSource *x, GzStream *s, const GzPoint *p, GError **error)
{
    s->zs.avail_in = 0;
    s->zs.next_in = s->buf;
    s->in = p->in;
    s->ended = false;
    s->raw = !p->member;
    int r = inflateReset2(&s->zs, p->member ? 15 + 16 : -15);
    if (r == Z_OK && !p->member && p->bits > 0) {
        uint8_t b;
        if (!vd_host_pread(x->fd, x->name, &b, 1, p->in - 1, false, error))
            return false;
        r = inflatePrime(&s->zs, p->bits, b >> (8 - p->bits));
    }
    if (r == Z_OK && !p->member && p->dict_len > 0)
        r = inflateSetDictionary(&s->zs, p->dict, p->dict_len);
    if (r != Z_OK) {
        zlib_error(x, s, r, error);
        return false;
    }
    return true;
}

/* After a member's end: the next member, or the end of the data. */
static void member_next(GzSource *x, GzStream *s)
{
    if (s->raw) {
        /* The trailer (CRC-32, ISIZE) that gzip mode would have read;
         * checked by the first pass. */
        uInt k = MIN(s->zs.avail_in, 8u);
        s->zs.next_in += k;
        s->zs.avail_in -= k;
        s->in += 8 - k;
        s->raw = false;
    }
    if (s->in - s->zs.avail_in >= x->ix->data_end)
        s->ended = true;
    else
        inflateReset2(&s->zs, 15 + 16);
}

/* Decode len bytes into out (NULL: skip them). */
static bool stream_decode(GzSource *x, GzStream *s, uint8_t *out, uint64_t len, GError **error)
{
    uint8_t skip[65536];
    while (len > 0) {
        if (s->ended) {
            vd_set_error(error, EIO, "%s: the gzip data ends before its size", x->name);
            return false;
        }
        uInt want = (uInt)(out ? MIN(len, (uint64_t)UINT32_MAX) : MIN(len, sizeof skip));
        s->zs.next_out = out ? out : skip;
        s->zs.avail_out = want;
        if (s->zs.avail_in == 0 && s->in < x->ix->data_end) {
            size_t n = (size_t)MIN((uint64_t)GZ_INPUT, x->ix->data_end - s->in);
            if (!vd_host_pread(x->fd, x->name, s->buf, n, s->in, false, error))
                return false;
            s->zs.next_in = s->buf;
            s->zs.avail_in = (uInt)n;
            s->in += n;
        }
        int r = inflate(&s->zs, Z_NO_FLUSH);
        uInt done = want - s->zs.avail_out;
        __atomic_add_fetch(&x->inflated, done, __ATOMIC_RELAXED);
        if (r == Z_STREAM_END)
            member_next(x, s);
        else if (r == Z_BUF_ERROR && s->zs.avail_in == 0 && s->in >= x->ix->data_end) {
            vd_set_error(error, EIO, "%s: the gzip data is cut short", x->name);
            return false;
        } else if (r != Z_OK && r != Z_BUF_ERROR) {
            zlib_error(x, s, r, error);
            return false;
        }
        len -= done;
        if (out)
            out += done;
    }
    return true;
}

/* The restart point at or before off. */
static guint point_find(const GzSource *x, uint64_t off)
{
    guint lo = 0, hi = x->ix->points->len;
    while (hi - lo > 1) {
        guint mid = lo + (hi - lo) / 2;
        if (point_at(x, mid)->out <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* The window at key (a multiple of GZ_WINDOW) inflated by the kept
 * stream, which stands at it: x->lock held. */
static GBytes *stream_window(GzSource *x, uint64_t key, GError **error)
{
    uint64_t wlen = MIN((uint64_t)GZ_WINDOW, x->ix->size - key);
    uint8_t *data = g_malloc(wlen);
    if (!stream_decode(x, &x->strm, data, wlen, error)) {
        g_free(data);
        return NULL;
    }
    x->strm_pos = key + wlen;
    return g_bytes_new_take(data, wlen);
}

/* The kept stream's next len bytes (VdStreamDecodeFunc). */
static bool stream_forward(gpointer user, uint8_t *out, uint64_t len, GError **error)
{
    GzSource *x = user;
    return stream_decode(x, &x->strm, out, len, error);
}

/* Window key (its uncompressed offset), by the kept stream: on from
 * where it is when that is after the best restart point, else from it.
 * The whole windows on the way there go into the cache too. */
static GBytes *decode_window(gpointer user, uint64_t key, GError **error)
{
    GzSource *x = user;
    g_mutex_lock(&x->lock);
    /* Put there while this reader waited for the stream. */
    GBytes *w = vd_ro_cache_get(x->cache, key);
    if (w != NULL) {
        g_mutex_unlock(&x->lock);
        return w;
    }
    const GzPoint *p = point_at(x, point_find(x, key));
    bool ok = true, stopped = false;
    if (!x->live || x->strm_pos > key || x->strm_pos < p->out) {
        x->live = ok = stream_start(x, &x->strm, p, error);
        x->strm_pos = p->out;
    }
    if (ok && x->strm_pos < key && x->strm_pos % GZ_WINDOW != 0) {
        /* Up to the first window boundary after the point. */
        uint64_t next = MIN(key, (x->strm_pos / GZ_WINDOW + 1) * GZ_WINDOW);
        ok = stream_decode(x, &x->strm, NULL, next - x->strm_pos, error);
        x->strm_pos = next;
    }
    /* Every whole window passed is kept (vd-stream.h). */
    VdStreamWindows sw = {x->cache, GZ_WINDOW, G_MAXUINT, stream_forward, x, x->ctx, x->name};
    if (ok && !vd_stream_pass(&sw, &x->strm_pos, key, &stopped, error))
        ok = false;
    if (ok && (w = stream_window(x, key, error)) == NULL)
        ok = false;
    if (!ok && !stopped)
        x->live = false;
    g_mutex_unlock(&x->lock);
    return w;
}

static bool gz_pread(void *opaque, void *buf, size_t len, uint64_t off, GError **error)
{
    GzSource *x = opaque;
    if (x->ix->spill_fd >= 0)
        return vd_host_pread(x->ix->spill_fd, x->name, buf, len, off, false, error);
    uint8_t *p = buf;
    while (len > 0) {
        uint64_t start = off / GZ_WINDOW * GZ_WINDOW;
        g_autoptr(GBytes) w = vd_ro_cache_fetch(x->cache, start, decode_window, x, error);
        if (w == NULL)
            return false;
        gsize have;
        const uint8_t *d = g_bytes_get_data(w, &have);
        size_t n = (size_t)MIN((uint64_t)len, start + have - off);
        memcpy(p, d + (off - start), n);
        p += n;
        off += n;
        len -= n;
    }
    return true;
}

/* Spilled: the reads are the spill file's, handed out as they are. */
static int gz_host_range(void *opaque, uint64_t off, uint64_t len, uint64_t *host_off)
{
    GzSource *x = opaque;
    (void)len;
    *host_off = off;
    return x->ix->spill_fd;
}

static bool gz_is_zero(void *opaque, uint64_t off, uint64_t len, bool *zero, uint64_t *run)
{
    GzSource *x = opaque;
    if (x->ix->spill_fd < 0)
        return false;
    off_t data = lseek(x->ix->spill_fd, (off_t)off, SEEK_DATA);
    if (data < 0 && errno != ENXIO)
        return false;
    if (data < 0 || (uint64_t)data > off) {
        *zero = true;
        *run = data < 0 ? len : MIN(len, (uint64_t)data - off);
        return true;
    }
    off_t hole = lseek(x->ix->spill_fd, (off_t)off, SEEK_HOLE);
    if (hole < 0)
        return false;
    *zero = false;
    *run = MIN(len, (uint64_t)hole - off);
    return *run > 0;
}

static void gz_describe(void *opaque, VdInfo *info)
{
    GzSource *x = opaque;
    vd_info_add_str(info, "container", "gzip");
    vd_info_add_u64(info, "gzip.members", x->ix->members);
    vd_info_add_u64(info, "gzip.restart_points", x->ix->points->len);
    vd_info_add_u64(info, "gzip.restart_spacing", x->ix->spacing);
    vd_info_add_u64(info, "gzip.bytes_inflated", __atomic_load_n(&x->inflated, __ATOMIC_RELAXED));
    vd_info_add_bool(info, "gzip.spilled", x->ix->spill_fd >= 0);
}

static void points_free(GArray *points)
{
    for (guint i = 0; i < points->len; i++)
        g_free(g_array_index(points, GzPoint, i).dict);
    g_array_unref(points);
}

static void index_free(gpointer p)
{
    GzIndex *ix = p;
    if (ix->spill_fd >= 0)
        close(ix->spill_fd);
    points_free(ix->points);
    if (ix->reserved > 0)
        vd_context_mem_release(ix->ctx, ix->reserved);
    vd_context_unref(ix->ctx);
    g_free(ix);
}

static void gz_close(void *opaque)
{
    GzSource *x = opaque;
    if (x->cache != NULL)
        vd_ro_cache_free(x->cache);
    stream_clear(&x->strm);
    vd_index_cache_release(x->ix);
    vd_context_unref(x->ctx);
    g_mutex_clear(&x->lock);
    g_free(x->name);
    close(x->fd);
    g_free(x);
}

static const VdSourceOps gz_ops = {
    .name = "gzip",
    .pread = gz_pread,
    .is_zero = gz_is_zero,
    .host_range = gz_host_range,
    .describe = gz_describe,
    .close = gz_close,
};

static uint64_t point_cost(const GzPoint *p)
{
    return sizeof *p + p->dict_len;
}

/* Keep every other point (the first stays), twice the spacing. */
static void points_thin(GzSource *x)
{
    guint k = 0;
    for (guint i = 0; i < x->ix->points->len; i++) {
        GzPoint *p = &g_array_index(x->ix->points, GzPoint, i);
        if (i % 2 == 0) {
            g_array_index(x->ix->points, GzPoint, k++) = *p;
            continue;
        }
        vd_context_mem_release(x->ctx, point_cost(p));
        x->ix->reserved -= point_cost(p);
        g_free(p->dict);
    }
    g_array_set_size(x->ix->points, k);
    x->ix->spacing *= 2;
}

/* The last (up to) GZ_DICT bytes of output, in order, from the ring
 * (which wrapped: full, or not): their length. */
static uint32_t ring_copy(const uint8_t *ring, size_t ring_pos, bool full, uint8_t *dict)
{
    if (!full) {
        memcpy(dict, ring, ring_pos);
        return (uint32_t)ring_pos;
    }
    memcpy(dict, ring + ring_pos, GZ_DICT - ring_pos);
    memcpy(dict + GZ_DICT - ring_pos, ring, ring_pos);
    return GZ_DICT;
}

/* Record restart point p, whose output before it is dict (dict_len
 * bytes; none for a member's start). */
static bool point_add(GzSource *x, GzPoint p, const uint8_t *dict, uint32_t dict_len,
                      GError **error)
{
    p.dict_len = p.member ? 0 : dict_len;
    for (;;) {
        if (x->ix->points->len >= GZ_MAX_POINTS)
            points_thin(x);
        g_autoptr(GError) local = NULL;
        if (vd_context_mem_reserve(x->ctx, point_cost(&p), x->name, "gzip restart points", &local))
            break;
        /* The budget is spent: fewer points, farther apart, while there
         * are points to thin. */
        if (x->ix->points->len < 2) {
            g_propagate_error(error, g_steal_pointer(&local));
            return false;
        }
        points_thin(x);
    }
    x->ix->reserved += point_cost(&p);
    if (p.dict_len > 0)
        p.dict = g_memdup2(dict, p.dict_len);
    g_array_append_val(x->ix->points, p);
    return true;
}

/* Where the first pass puts restart points: for every multiple of the
 * spacing (a window's start), the last place a raw inflate can start at
 * or before it (a deflate block boundary or a member's start), so that a
 * window decodes at most one block's output it does not keep. Each such
 * place is a candidate, its dictionary copied, until one past the
 * multiple shows the one before was the last. */
typedef struct {
    uint64_t target; /* the multiple of the spacing to cover next */
    bool have;       /* a candidate since the last point */
    GzPoint p;
    uint32_t dict_len;
    uint8_t dict[GZ_DICT];
} GzPlacer;

/* A place a raw inflate can start at (p; its output before it in the
 * ring): kept as the candidate, or the candidate before it recorded as
 * the point for the multiple it passed. */
static bool point_place(GzSource *x, GzPlacer *pl, GzPoint p, const uint8_t *ring, size_t ring_pos,
                        bool full, GError **error)
{
    const GArray *pts = x->ix->points;
    if (p.out <= g_array_index(pts, GzPoint, pts->len - 1).out)
        return true; /* an empty block or member: the point before serves */
    while (p.out > pl->target) {
        /* Past the multiple: the candidate before it is the point (or,
         * when one block spans it, this place). */
        bool cand = pl->have;
        GzPoint q = cand ? pl->p : p;
        uint32_t len = cand ? pl->dict_len : ring_copy(ring, ring_pos, full, pl->dict);
        if (!point_add(x, q, pl->dict, len, error))
            return false;
        pl->have = false;
        uint64_t sp = x->ix->spacing; /* doubled when points were thinned */
        pl->target = MAX(pl->target + sp, q.out / sp * sp + sp);
        pl->target = pl->target / sp * sp;
        if (!cand)
            return true;
    }
    pl->p = p;
    pl->dict_len = p.member ? 0 : ring_copy(ring, ring_pos, full, pl->dict);
    pl->have = true;
    return true;
}

/* The first pass: every member inflated and checked, the size and the
 * restart points learned. */
static bool build_index(GzSource *x, uint64_t file_size, VdSpill **spill, GError **error)
{
    GzStream s = {0};
    g_autofree uint8_t *ring = g_malloc(GZ_DICT);
    g_autofree GzPlacer *pl = g_new0(GzPlacer, 1);
    size_t ring_pos = 0;
    bool full = false, ok = stream_init(x, &s, error);
    uint64_t out = 0, calls = 0;
    s.in = 0;
    ok = ok && point_add(x, (GzPoint){.member = true}, NULL, 0, error);
    pl->target = x->ix->spacing;
    x->ix->members = 1;
    while (ok) {
        if (s.zs.avail_in == 0) {
            size_t n = (size_t)MIN((uint64_t)GZ_INPUT, file_size - s.in);
            if (n == 0) {
                vd_set_error(error, EIO, "%s: the gzip data is cut short", x->name);
                ok = false;
                break;
            }
            if (!(ok = vd_host_pread(x->fd, x->name, s.buf, n, s.in, false, error)))
                break;
            s.zs.next_in = s.buf;
            s.zs.avail_in = (uInt)n;
            s.in += n;
        }
        if (ring_pos == GZ_DICT) {
            ring_pos = 0;
            full = true;
        }
        s.zs.next_out = ring + ring_pos;
        s.zs.avail_out = (uInt)(GZ_DICT - ring_pos);
        /* Z_BLOCK: stop at each block boundary, where a point may go. */
        int r = inflate(&s.zs, Z_BLOCK);
        size_t done = GZ_DICT - ring_pos - s.zs.avail_out;
        if (*spill != NULL && done > 0 && !vd_spill_append(*spill, ring + ring_pos, done))
            g_clear_pointer(spill, vd_spill_free);
        ring_pos += done;
        out += done;
        if (out > GZ_MAX_SIZE) {
            vd_set_error(error, EIO, "%s: the gzip data inflates to more than 2^62 bytes", x->name);
            ok = false;
        } else if (++calls % 4096 == 0 && vd_interrupted(x->ctx, x->name, error)) {
            ok = false;
        } else if (r == Z_STREAM_END) {
            /* The member's CRC and length were checked; another member
             * follows, or the data ends. */
            uint64_t at = s.in - s.zs.avail_in;
            uint8_t magic[3];
            x->ix->data_end = at;
            if (at + 18 > file_size)
                break;
            if (!(ok = vd_host_pread(x->fd, x->name, magic, sizeof magic, at, false, error)))
                break;
            if (magic[0] != 0x1f || magic[1] != 0x8b || magic[2] != 8)
                break;
            inflateReset(&s.zs);
            x->ix->members++;
            ok = point_place(x, pl, (GzPoint){.in = at, .out = out, .member = true}, ring, ring_pos,
                             full, error);
        } else if (r != Z_OK && r != Z_BUF_ERROR) {
            zlib_error(x, &s, r, error);
            ok = false;
        } else if ((s.zs.data_type & 128) && !(s.zs.data_type & 64) && out > 0) {
            GzPoint p = {.in = s.in - s.zs.avail_in, .out = out, .bits = s.zs.data_type & 7};
            ok = point_place(x, pl, p, ring, ring_pos, full, error);
        }
    }
    /* The last multiple before the end: its candidate is the point. */
    if (ok && pl->have && pl->target < out)
        ok = point_add(x, pl->p, pl->dict, pl->dict_len, error);
    stream_clear(&s);
    x->ix->size = out;
    return ok;
}

/* The first pass, for the index cache: x->ix while it runs. */
static gpointer index_build(gpointer user, uint64_t *bytes, GError **error)
{
    GzSource *x = user;
    struct stat st;
    if (fstat(x->fd, &st) != 0) {
        vd_set_error_errno(error, errno, "%s", x->name);
        return NULL;
    }
    GzIndex *ix = x->ix = g_new0(GzIndex, 1);
    ix->ctx = vd_context_ref(x->ctx);
    ix->spacing = GZ_SPACING;
    ix->points = g_array_new(FALSE, FALSE, sizeof(GzPoint));
    ix->spill_fd = -1;
    VdSpill *spill = vd_spill_new(x->ctx, x->name);
    bool ok = build_index(x, (uint64_t)st.st_size, &spill, error);
    if (ok && ix->size == 0) {
        vd_set_error(error, EIO, "%s: the gzip file holds no data", x->name);
        ok = false;
    }
    if (ok && spill != NULL) {
        ix->spill_fd = vd_spill_finish(g_steal_pointer(&spill), ix->size);
        /* Reads come from the spill: the points would only take memory. */
        while (ix->spill_fd >= 0 && ix->points->len > 1)
            points_thin(x);
    }
    vd_spill_free(spill);
    x->ix = NULL;
    if (!ok) {
        index_free(ix);
        return NULL;
    }
    *bytes = sizeof *ix + ix->reserved;
    return ix;
}

static bool gz_open(VdContext *ctx, int fd, const char *path, const char *name,
                    const VdSourceOps **ops, void **opaque, uint64_t *size, GError **error)
{
    GzSource *x = g_new0(GzSource, 1);
    x->ctx = vd_context_ref(ctx);
    x->fd = fd;
    x->name = g_strdup(name);
    g_mutex_init(&x->lock);
    VdIndexKey key;
    bool ok =
        stream_init(x, &x->strm, error) && vd_index_key_of(ctx, "gzip", fd, name, &key, error);
    if (ok) {
        x->ix = vd_index_cache_get(&key, index_build, x, index_free, error);
        ok = x->ix != NULL;
    }
    if (!ok) {
        gz_close(x);
        return false;
    }
    x->cache = vd_ro_cache_new(ctx->decode_cache_bytes, GZ_WINDOW);
    *ops = &gz_ops;
    *opaque = x;
    *size = x->ix->size;
    return true;
}

/* For a probe: the first len bytes, inflated from the start (over
 * member boundaries), nothing checked but that they inflate. */
static bool gz_head(VdContext *ctx, int fd, const char *name, uint8_t *buf, size_t len, size_t *got,
                    bool *all, GError **error)
{
    (void)ctx;
    z_stream zs = {0};
    if (inflateInit2(&zs, 15 + 16) != Z_OK) {
        vd_set_error(error, ENOMEM, "%s: no memory for an inflate stream", name);
        return false;
    }
    g_autofree uint8_t *in = g_malloc(GZ_INPUT);
    uint64_t at = 0, file_size;
    bool ok = vd_host_size(fd, name, &file_size, error);
    zs.next_out = buf;
    zs.avail_out = (uInt)len;
    *all = false;
    while (ok && zs.avail_out > 0) {
        if (zs.avail_in == 0) {
            size_t n = (size_t)MIN((uint64_t)GZ_INPUT, file_size - at);
            if (n == 0) {
                vd_set_error(error, EIO, "%s: the gzip data is cut short", name);
                ok = false;
                break;
            }
            if (!(ok = vd_host_pread(fd, name, in, n, at, false, error)))
                break;
            zs.next_in = in;
            zs.avail_in = (uInt)n;
            at += n;
        }
        int r = inflate(&zs, Z_NO_FLUSH);
        if (r == Z_STREAM_END) {
            /* Another member, or the end (trailing bytes ignored, as the
             * whole pass does). */
            uint8_t magic[3];
            uint64_t next = at - zs.avail_in;
            if (next + 18 > file_size ||
                !vd_host_pread(fd, name, magic, sizeof magic, next, false, NULL) ||
                magic[0] != 0x1f || magic[1] != 0x8b || magic[2] != 8) {
                *all = true;
                break;
            }
            inflateReset(&zs);
        } else if (r != Z_OK && r != Z_BUF_ERROR) {
            vd_set_error(error, r == Z_MEM_ERROR ? ENOMEM : EIO,
                         "%s: gzip data does not inflate at 0x%" G_GINT64_MODIFIER "x: %s", name,
                         at - zs.avail_in, zs.msg ? zs.msg : "bad data");
            ok = false;
        }
    }
    *got = len - zs.avail_out;
    inflateEnd(&zs);
    return ok;
}

const VdContainer vd_gzip_container = {
    .name = "gzip",
    .suffix = ".gz",
    .probe = gz_probe,
    .open = gz_open,
    .head = gz_head,
};
