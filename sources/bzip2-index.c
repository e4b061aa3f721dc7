/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bzip2's block index. A bzip2 file is one or more streams, each "BZh"
 * and a level '1'..'9' (the block size in 100 kB), then blocks, each
 * starting with the 48-bit magic 0x314159265359 and its 32-bit CRC, then
 * the end-of-stream magic 0x177245385090 and the stream's combined CRC,
 * padded to a byte. Blocks are not byte-aligned and their lengths are
 * recorded nowhere, but each decodes on its own: a block alone, shifted
 * to a byte boundary behind a "BZh<level>" header and followed by an end
 * of stream whose combined CRC is the block's own CRC (what it is for a
 * stream of one block), is a stream libbz2 decodes, checking both CRCs.
 *
 * So the first pass finds every place where either magic starts, to the
 * bit; decodes every stretch from a block magic to the next magic, a
 * worker thread per core, learning its length and whether it is all
 * zeros; then walks the streams from the start. A magic may also occur
 * by chance inside compressed data: the block before such a false
 * boundary is cut short and does not decode, and its real end is the
 * first later magic up to which its bits, fed to the decoder without an
 * end, make it produce output (a prefix of a block never does: its data
 * comes out only once the whole block is read), found by bisection over
 * the magics a block of its level could reach. The format bounds both a
 * block's compressed length (BZ2_MAX_BITS) and what it decodes to
 * (BZ2_MAX_OUT): no stretch longer, and no output larger, is accepted.
 */
#include "config.h"

#include <bzlib.h>
#include <string.h>

#include "sources/bzip2.h"
#include "src/vd-interrupt.h"
#include "src/vd-error.h"
#include "src/vd-pool.h"
#include "src/vd-io.h"

#define BZ2_SCAN_CHUNK (1u << 20)
#define BZ2_SCRATCH    (256u << 10)
#define BZ2_THREADS    8
#define BZ2_RESERVE    4096 /* blocks reserved at a time */
#define BZ2_MAX_SIZE   (1ull << 62)
/* Blocks of up to BZ2_MEMO_LEN compressed bytes are decoded once per
 * content: a sparse disk's zero blocks (46 MB of zeros in 45 bytes) are
 * all the same block, at other bit offsets. */
#define BZ2_MEMO_LEN     1024
#define BZ2_MEMO_ENTRIES 4096
/* A block holds up to level * 100000 bytes after the initial run-length
 * step; each of its symbols is a Huffman code of at most 20 bits, behind
 * tables of well under 200000 bits. */
#define BZ2_MAX_BITS(level) ((uint64_t)(level)*100000 * 20 + 200000)
/* The initial run-length step turns 5 bytes (4 equal ones and a count up
 * to 251 more) into at most 255. */
#define BZ2_MAX_OUT(level) ((uint64_t)(level)*100000 / 5 * 255 + 255)

typedef enum {
    SEG_END,     /* a whole stream: the block decoded, its CRC right */
    SEG_SHORT,   /* the input ran out before the block's end, no output */
    SEG_OUTPUT,  /* output came, and then (unless stopped there) an error */
    SEG_BAD,     /* an error before any output */
    SEG_TOO_BIG, /* more output than allowed */
    SEG_NOMEM,   /* libbz2 had no memory */
    SEG_IO,      /* reading the file failed (error set) */
} SegResult;

static uint64_t get_bits(const uint8_t *p, uint64_t bit, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++, bit++)
        v = v << 1 | ((p[bit / 8] >> (7 - bit % 8)) & 1);
    return v;
}

static void put_bits(uint8_t *p, uint64_t bit, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++, bit++)
        p[bit / 8] |= (uint8_t)(((v >> (n - 1 - i)) & 1) << (7 - bit % 8));
}

static bool all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static uint64_t cand_bit(const GArray *cands, guint i)
{
    return g_array_index(cands, uint64_t, i) >> 1;
}

static bool cand_eos(const GArray *cands, guint i)
{
    return g_array_index(cands, uint64_t, i) & 1;
}

bool bz2_find_magics(VdContext *ctx, int fd, const char *name, uint64_t file_size, guint max,
                     GArray *cands, GError **error)
{
    /* A magic at shift s in the last 64 bits read puts its bits
     * [16 - s, 24 - s) in bits [16, 24) of the window: bytes that are
     * none of those 16 rule out every shift at once. */
    bool maybe[256] = {false};
    for (unsigned s = 0; s < 8; s++) {
        maybe[(BZ2_BLOCK_MAGIC >> (16 - s)) & 0xff] = true;
        maybe[(BZ2_EOS_MAGIC >> (16 - s)) & 0xff] = true;
    }
    const uint64_t mask = (1ull << 48) - 1;
    g_autofree uint8_t *buf = g_malloc(BZ2_SCAN_CHUNK);
    uint64_t w = 0;
    for (uint64_t off = 0; off < file_size;) {
        size_t n = (size_t)MIN((uint64_t)BZ2_SCAN_CHUNK, file_size - off);
        if (!vd_host_pread(fd, name, buf, n, off, false, error))
            return false;
        if (vd_interrupted(ctx, name, error))
            return false;
        for (size_t i = 0; i < n; i++) {
            w = w << 8 | buf[i];
            uint64_t end = (off + i + 1) * 8;
            if (!maybe[(w >> 16) & 0xff] || end < 56)
                continue;
            /* Larger shifts start earlier: ascending order. */
            for (int s = 7; s >= 0; s--) {
                uint64_t v = (w >> s) & mask;
                if (v != BZ2_BLOCK_MAGIC && v != BZ2_EOS_MAGIC)
                    continue;
                if (cands->len >= max) {
                    vd_set_error(error, EIO, "%s: more than %u bzip2 block markers", name, max);
                    return false;
                }
                uint64_t c = (end - (uint64_t)s - 48) << 1 | (v == BZ2_EOS_MAGIC);
                g_array_append_val(cands, c);
            }
        }
        off += n;
    }
    return true;
}

/* Decode the stream in[0, n) (out NULL: count and discard; else up to
 * cap bytes into out), stopping at the first output when stop is set. */
static SegResult seg_decode(uint8_t *in, size_t n, unsigned level, bool stop, uint8_t *out,
                            uint64_t cap, uint64_t *produced, bool *zero)
{
    bz_stream z;
    memset(&z, 0, sizeof z);
    *produced = 0;
    *zero = true;
    if (BZ2_bzDecompressInit(&z, 0, 0) != BZ_OK)
        return SEG_NOMEM;
    g_autofree uint8_t *scratch = out == NULL ? g_malloc(BZ2_SCRATCH) : NULL;
    uint8_t spill[1];
    z.next_in = (char *)in;
    z.avail_in = (unsigned)n;
    SegResult res;
    for (;;) {
        uint8_t *dst;
        unsigned room;
        if (out == NULL)
            dst = scratch, room = BZ2_SCRATCH;
        else if (*produced < cap)
            dst = out + *produced, room = (unsigned)MIN(cap - *produced, (uint64_t)UINT_MAX);
        else
            dst = spill, room = sizeof spill; /* anything here is too much */
        z.next_out = (char *)dst;
        z.avail_out = room;
        int r = BZ2_bzDecompress(&z);
        unsigned got = room - z.avail_out;
        *produced += got;
        if (*zero && got > 0)
            *zero = all_zero(dst, got);
        if ((dst == spill && got > 0) || *produced > BZ2_MAX_OUT(level)) {
            res = SEG_TOO_BIG;
            break;
        }
        if (stop && *produced > 0) {
            res = SEG_OUTPUT;
            break;
        }
        if (r == BZ_STREAM_END) {
            res = SEG_END;
            break;
        }
        if (r == BZ_MEM_ERROR) {
            res = SEG_NOMEM;
            break;
        }
        if (r != BZ_OK || (z.avail_in == 0 && z.avail_out > 0)) {
            /* An error, or no input left and the stream not at its end. */
            res = *produced > 0 ? SEG_OUTPUT : r == BZ_OK ? SEG_SHORT : SEG_BAD;
            break;
        }
    }
    BZ2_bzDecompressEnd(&z);
    return res;
}

/* What small blocks decoded to, by their aligned streams. */
typedef struct {
    GMutex lock;
    GHashTable *seen; /* GBytes -> MemoResult; lock */
} Memo;

typedef struct {
    SegResult result;
    uint64_t produced;
    bool zero;
} MemoResult;

/* Decode s (seg_decode's arguments), or take what the same stream gave. */
static SegResult memo_decode(Memo *memo, uint8_t *s, size_t slen, unsigned level,
                             uint64_t *produced, bool *zero)
{
    if (memo == NULL || slen > BZ2_MEMO_LEN)
        return seg_decode(s, slen, level, false, NULL, 0, produced, zero);
    g_autoptr(GBytes) key = g_bytes_new(s, slen);
    g_mutex_lock(&memo->lock);
    const MemoResult *m = g_hash_table_lookup(memo->seen, key);
    MemoResult r = m != NULL ? *m : (MemoResult){0};
    g_mutex_unlock(&memo->lock);
    if (m != NULL) {
        *produced = r.produced;
        *zero = r.zero;
        return r.result;
    }
    r.result = seg_decode(s, slen, level, false, NULL, 0, &r.produced, &r.zero);
    *produced = r.produced;
    *zero = r.zero;
    g_mutex_lock(&memo->lock);
    if (g_hash_table_size(memo->seen) < BZ2_MEMO_ENTRIES)
        g_hash_table_replace(memo->seen, g_bytes_ref(key), g_memdup2(&r, sizeof r));
    g_mutex_unlock(&memo->lock);
    return r.result;
}

/* Decode the block whose magic is at bit, taking it to end there: behind
 * a header, with an end of stream after it (trailer), or (!trailer) as
 * the file's bits up to the byte that holds bit end - 1, stopping at the
 * first output. */
static SegResult seg_run(int fd, const char *name, uint64_t file_size, uint64_t bit, uint64_t end,
                         unsigned level, bool trailer, uint8_t *out, uint64_t cap,
                         uint64_t *produced, bool *zero, Memo *memo, GError **error)
{
    *produced = 0;
    *zero = false;
    if (end < bit + 80)
        return SEG_BAD;
    uint64_t first = bit / 8, last = MIN((end + 7) / 8, file_size);
    unsigned shift = bit % 8;
    size_t raw_len = (size_t)(last - first);
    g_autofree uint8_t *raw = g_malloc0(raw_len + 1);
    if (!vd_host_pread(fd, name, raw, raw_len, first, false, error))
        return SEG_IO;
    uint64_t nbits = trailer ? end - bit : raw_len * 8 - shift;
    size_t nb = (size_t)((nbits + 7) / 8);
    size_t slen = (size_t)((32 + nbits + (trailer ? 80 : 0) + 7) / 8);
    g_autofree uint8_t *s = g_malloc0(slen);
    memcpy(s, "BZh", 3);
    s[3] = (uint8_t)('0' + level);
    for (size_t j = 0; j < nb; j++)
        s[4 + j] = (uint8_t)(raw[j] << shift | (shift ? raw[j + 1] >> (8 - shift) : 0));
    if (nbits % 8)
        s[4 + nb - 1] &= (uint8_t)(0xff << (8 - nbits % 8));
    if (trailer) {
        put_bits(s, 32 + nbits, BZ2_EOS_MAGIC, 48);
        put_bits(s, 32 + nbits + 48, get_bits(raw, shift + 48, 32), 32);
    }
    if (trailer && out == NULL)
        return memo_decode(memo, s, slen, level, produced, zero);
    return seg_decode(s, slen, level, !trailer, out, cap, produced, zero);
}

bool bz2_block_decode(int fd, const char *name, guint i, const Bz2Block *b, uint8_t *out,
                      GError **error)
{
    uint64_t file_size, got;
    bool zero;
    if (!vd_host_size(fd, name, &file_size, error))
        return false;
    SegResult r = seg_run(fd, name, file_size, b->bit, b->bit + b->bits, b->level, true, out,
                          b->out_len, &got, &zero, NULL, error);
    if (r == SEG_IO)
        return false;
    if (r == SEG_NOMEM) {
        vd_set_error(error, ENOMEM, "%s: no memory to decode bzip2 block %u", name, i);
        return false;
    }
    if (r != SEG_END || got != b->out_len) {
        vd_set_error(error, EIO,
                     "%s: bzip2 block %u (at bit %" G_GUINT64_FORMAT
                     ") no longer decodes as the first pass found (the file changed?)",
                     name, i, b->bit);
        return false;
    }
    return true;
}

/* What decoding the stretch from a block magic to the next magic gave. */
typedef struct {
    uint8_t result; /* SegResult */
    uint8_t level;  /* decoded as */
    bool zero;
    uint32_t out_len;
} Tentative;

typedef struct {
    VdContext *ctx;
    int fd;
    const char *name;
    uint64_t file_size;
    const GArray *cands;
    uint8_t *levels; /* per magic: its stream's level, as far as the magics tell */
    Tentative *t;
    gint next; /* the next magic to take, atomic */
    Memo memo;
} Pass;

static uint64_t next_bit(const Pass *p, guint j)
{
    return j + 1 < p->cands->len ? cand_bit(p->cands, j + 1) : p->file_size * 8;
}

static void tentative_one(Pass *p, guint j)
{
    Tentative *t = &p->t[j];
    uint64_t bit = cand_bit(p->cands, j), end = next_bit(p, j), got;
    t->level = p->levels[j];
    t->result = SEG_SHORT;
    if (end - bit > BZ2_MAX_BITS(t->level))
        return; /* too long for one block: the walk looks further */
    GError *e = NULL;
    t->result = seg_run(p->fd, p->name, p->file_size, bit, end, t->level, true, NULL, 0, &got,
                        &t->zero, &p->memo, &e);
    g_clear_error(&e); /* the walk tries again and says why */
    t->out_len = got <= UINT32_MAX ? (uint32_t)got : 0;
}

static gpointer tentative_worker(gpointer data)
{
    Pass *p = data;
    for (;;) {
        guint j = (guint)g_atomic_int_add(&p->next, 1);
        if (j >= p->cands->len || vd_context_cancelled(p->ctx))
            break;
        if (!cand_eos(p->cands, j))
            tentative_one(p, j);
    }
    return NULL;
}

/* Each magic's level: a stream's header follows the padded end of the
 * one before (when that end is real; the walk checks). */
static bool assign_levels(Pass *p, unsigned level, GError **error)
{
    for (guint j = 0; j < p->cands->len; j++) {
        p->levels[j] = (uint8_t)level;
        if (!cand_eos(p->cands, j))
            continue;
        uint64_t at = (cand_bit(p->cands, j) + 80 + 7) / 8;
        uint8_t h[4];
        if (at + 4 > p->file_size)
            continue;
        if (!vd_host_pread(p->fd, p->name, h, 4, at, false, error))
            return false;
        if (memcmp(h, "BZh", 3) == 0 && h[3] >= '1' && h[3] <= '9')
            level = h[3] - '0';
    }
    return true;
}

/* A helper thread of tentative_all. Unpinned here, not in
 * tentative_worker: the caller works too, and it may be a FUSE ring
 * thread that must stay on its CPU. */
static gpointer tentative_thread(gpointer data)
{
    vd_thread_unpin();
    return tentative_worker(data);
}

/* Decode the stretches side by side: a worker per core. */
static void tentative_all(Pass *p)
{
    guint n = MIN(g_get_num_processors(), BZ2_THREADS);
    n = MIN(n, p->cands->len / 2 + 1);
    GThread *threads[BZ2_THREADS];
    guint started = 0;
    for (guint i = 1; i < n; i++) {
        threads[started] = g_thread_try_new("bzip2-index", tentative_thread, p, NULL);
        if (threads[started] != NULL)
            started++;
    }
    tentative_worker(p);
    for (guint i = 0; i < started; i++)
        g_thread_join(threads[i]);
}

typedef struct {
    guint index;  /* which block of the file */
    guint stream; /* which stream */
    uint64_t bit;
} Where;

static void block_error(const Pass *p, const Where *w, const char *what, GError **error)
{
    vd_set_error(error, EIO, "%s: bzip2 block %u (stream %u, at bit %" G_GUINT64_FORMAT ") %s",
                 p->name, w->index, w->stream, w->bit, what);
}

/* The block at magic j (at w->bit) when the stretch to the next magic did
 * not decode as one block of level: its end among the later magics. */
static bool block_slow(Pass *p, guint j, unsigned level, const Where *w, uint64_t *end,
                       Tentative *t, GError **error)
{
    uint64_t got;
    bool zero;
    guint lo = j + 1, hi = j + 1;
    while (hi < p->cands->len && cand_bit(p->cands, hi) - w->bit <= BZ2_MAX_BITS(level))
        hi++;
    /* The first magic in [lo, hi) up to which the block gives output:
     * before its real end it never does, from there on it always does. */
    guint found = hi;
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        if (vd_interrupted(p->ctx, p->name, error))
            return false;
        SegResult r = seg_run(p->fd, p->name, p->file_size, w->bit, cand_bit(p->cands, mid), level,
                              false, NULL, 0, &got, &zero, NULL, error);
        if (r == SEG_IO)
            return false;
        if (r == SEG_OUTPUT || r == SEG_TOO_BIG)
            found = hi = mid;
        else
            lo = mid + 1;
    }
    SegResult r = SEG_SHORT;
    if (found < p->cands->len && cand_bit(p->cands, found) - w->bit <= BZ2_MAX_BITS(level)) {
        /* The probe reads whole bytes: the end may be any magic in the
         * 8 bits from there. */
        uint64_t near = cand_bit(p->cands, found) + 8;
        for (guint k = found; k < p->cands->len && cand_bit(p->cands, k) < near; k++) {
            *end = cand_bit(p->cands, k);
            SegResult rk = seg_run(p->fd, p->name, p->file_size, w->bit, *end, level, true, NULL, 0,
                                   &got, &t->zero, NULL, error);
            if (k == found || rk == SEG_END || rk == SEG_IO || rk == SEG_NOMEM)
                r = rk;
            if (r == SEG_END || r == SEG_IO || r == SEG_NOMEM)
                break;
        }
    } else if (p->file_size * 8 - w->bit <= BZ2_MAX_BITS(level)) {
        /* No magic ends it: maybe the file does, too soon. */
        r = seg_run(p->fd, p->name, p->file_size, w->bit, p->file_size * 8, level, false, NULL, 0,
                    &got, &zero, NULL, error);
        if (r == SEG_SHORT) {
            block_error(p, w, "is cut short: the bzip2 data ends inside it", error);
            return false;
        }
        if (r == SEG_OUTPUT) {
            /* Whole, but what follows is neither block nor end of stream. */
            block_error(p, w, "is the last: the bzip2 data is cut short after it", error);
            return false;
        }
        r = SEG_BAD;
    }
    switch (r) {
    case SEG_END:
        t->out_len = (uint32_t)got;
        return true;
    case SEG_IO:
        return false;
    case SEG_NOMEM:
        vd_set_error(error, ENOMEM, "%s: no memory to decode bzip2 block %u", p->name, w->index);
        return false;
    case SEG_OUTPUT:
        block_error(p, w, "fails its CRC", error);
        return false;
    case SEG_TOO_BIG:
        block_error(p, w, "decodes to more than a bzip2 block can hold", error);
        return false;
    default:
        block_error(p, w, "does not decode: corrupt bzip2 data", error);
        return false;
    }
}

static bool block_add(Pass *p, Bz2Index *ix, const Bz2Block *b, GError **error)
{
    if (b->out_len == 0)
        return true;
    if (ix->blocks->len >= BZ2_MAX_BLOCKS) {
        vd_set_error(error, EIO, "%s: more than %u bzip2 blocks: too large an index", p->name,
                     BZ2_MAX_BLOCKS);
        return false;
    }
    if (ix->size > BZ2_MAX_SIZE - b->out_len) {
        vd_set_error(error, EIO, "%s: the bzip2 data decodes to more than 2^62 bytes", p->name);
        return false;
    }
    if (ix->blocks->len % BZ2_RESERVE == 0) {
        uint64_t bytes = BZ2_RESERVE * sizeof(Bz2Block);
        if (!vd_context_mem_reserve(p->ctx, bytes, p->name, "bzip2 block index", error))
            return false;
        ix->reserved += bytes;
    }
    Bz2Block c = *b;
    c.out_off = ix->size;
    g_array_append_val(ix->blocks, c);
    ix->size += b->out_len;
    if (b->zero)
        ix->zero_blocks++;
    else
        ix->max_len = MAX(ix->max_len, b->out_len);
    return true;
}

static bool read_u32_at_bit(const Pass *p, uint64_t bit, uint32_t *v, GError **error)
{
    uint8_t b[5] = {0};
    size_t n = (size_t)MIN((uint64_t)sizeof b, p->file_size - bit / 8);
    if (!vd_host_pread(p->fd, p->name, b, n, bit / 8, false, error))
        return false;
    *v = (uint32_t)get_bits(b, bit % 8, 32);
    return true;
}

/* One stream's blocks, from its header at byte *at; *at is then where
 * the next may start. */
static bool walk_stream(Pass *p, Bz2Index *ix, uint64_t *at, unsigned level, guint *j,
                        GError **error)
{
    uint64_t bit = (*at + 4) * 8, file_bits = p->file_size * 8;
    uint32_t combined = 0;
    for (;;) {
        while (*j < p->cands->len && cand_bit(p->cands, *j) < bit)
            (*j)++;
        if (*j == p->cands->len || cand_bit(p->cands, *j) != bit) {
            if (bit + 80 > file_bits)
                vd_set_error(error, EIO, "%s: the bzip2 data is cut short in stream %u", p->name,
                             ix->streams);
            else
                vd_set_error(error, EIO,
                             "%s: no bzip2 block or end of stream at bit %" G_GUINT64_FORMAT
                             " (stream %u)",
                             p->name, bit, ix->streams);
            return false;
        }
        uint32_t crc;
        if (bit + 80 > file_bits) {
            vd_set_error(error, EIO, "%s: the bzip2 data is cut short in stream %u", p->name,
                         ix->streams);
            return false;
        }
        if (!read_u32_at_bit(p, bit + 48, &crc, error))
            return false;
        if (cand_eos(p->cands, *j)) {
            if (crc != combined) {
                vd_set_error(error, EIO,
                             "%s: bzip2 stream %u records a combined CRC of 0x%08x, its blocks "
                             "give 0x%08x",
                             p->name, ix->streams, crc, combined);
                return false;
            }
            *at = (bit + 80 + 7) / 8;
            return true;
        }
        Where w = {ix->blocks->len, ix->streams, bit};
        Tentative t = p->t[*j];
        uint64_t end = next_bit(p, *j);
        if ((t.result != SEG_END || t.level != level) &&
            !block_slow(p, *j, level, &w, &end, &t, error))
            return false;
        Bz2Block b = {.bit = bit,
                      .bits = (uint32_t)(end - bit),
                      .out_len = t.out_len,
                      .crc = crc,
                      .level = (uint8_t)level,
                      .zero = t.zero};
        if (!block_add(p, ix, &b, error))
            return false;
        combined = (combined << 1 | combined >> 31) ^ crc;
        bit = end;
    }
}

bool bz2_index_build(VdContext *ctx, int fd, const char *name, uint64_t file_size,
                     const GArray *cands, Bz2Index *ix, GError **error)
{
    memset(ix, 0, sizeof *ix);
    ix->blocks = g_array_new(FALSE, FALSE, sizeof(Bz2Block));
    uint8_t h[4];
    if (file_size < 4 || !vd_host_pread(fd, name, h, 4, 0, false, error) ||
        memcmp(h, "BZh", 3) != 0 || h[3] < '1' || h[3] > '9') {
        if (error == NULL || *error == NULL)
            vd_set_error(error, EIO, "%s: no bzip2 stream header", name);
        return false;
    }
    Pass p = {.ctx = ctx, .fd = fd, .name = name, .file_size = file_size, .cands = cands};
    p.levels = g_malloc0(cands->len + 1);
    p.t = g_new0(Tentative, cands->len + 1);
    g_mutex_init(&p.memo.lock);
    p.memo.seen =
        g_hash_table_new_full(g_bytes_hash, g_bytes_equal, (GDestroyNotify)g_bytes_unref, g_free);
    bool ok = assign_levels(&p, h[3] - '0', error);
    if (ok)
        tentative_all(&p);
    if (ok && vd_interrupted(ctx, name, error))
        ok = false;
    uint64_t at = 0;
    guint j = 0;
    while (ok) {
        ok = walk_stream(&p, ix, &at, h[3] - '0', &j, error);
        if (ok)
            ix->streams++;
        /* Another stream, or the end (what follows, if not one, is ignored). */
        if (!ok || at + 4 > file_size || !(ok = vd_host_pread(fd, name, h, 4, at, false, error)) ||
            memcmp(h, "BZh", 3) != 0 || h[3] < '1' || h[3] > '9')
            break;
    }
    g_hash_table_unref(p.memo.seen);
    g_mutex_clear(&p.memo.lock);
    g_free(p.levels);
    g_free(p.t);
    return ok;
}

void bz2_index_clear(VdContext *ctx, Bz2Index *ix)
{
    if (ix->reserved > 0)
        vd_context_mem_release(ctx, ix->reserved);
    ix->reserved = 0;
    g_clear_pointer(&ix->blocks, g_array_unref);
}

bool bz2_is_stream_head(const uint8_t head[10])
{
    static const uint8_t block[6] = {0x31, 0x41, 0x59, 0x26, 0x53, 0x59};
    static const uint8_t eos[6] = {0x17, 0x72, 0x45, 0x38, 0x50, 0x90};
    return memcmp(head, "BZh", 3) == 0 && head[3] >= '1' && head[3] <= '9' &&
           (memcmp(head + 4, block, 6) == 0 || memcmp(head + 4, eos, 6) == 0);
}

bool bz2_decode_head(int fd, const char *name, uint64_t file_size, uint8_t *buf, size_t len,
                     size_t *got, bool *all, GError **error)
{
    uint64_t at = 0;
    bz_stream z;
    memset(&z, 0, sizeof z);
    if (BZ2_bzDecompressInit(&z, 0, 0) != BZ_OK) {
        vd_set_error(error, ENOMEM, "%s: no memory for a bzip2 decoder", name);
        return false;
    }
    enum { BZ_HEAD_INPUT = 256u << 10 };
    g_autofree uint8_t *in = g_malloc(BZ_HEAD_INPUT);
    bool ok = true;
    z.next_out = (char *)buf;
    z.avail_out = (unsigned)len;
    while (ok && z.avail_out > 0) {
        if (z.avail_in == 0) {
            size_t n = (size_t)MIN((uint64_t)BZ_HEAD_INPUT, file_size - at);
            if (n == 0) {
                vd_set_error(error, EIO, "%s: the bzip2 data is cut short", name);
                ok = false;
                break;
            }
            if (!(ok = vd_host_pread(fd, name, in, n, at, false, error)))
                break;
            z.next_in = (char *)in;
            z.avail_in = (unsigned)n;
            at += n;
        }
        int r = BZ2_bzDecompress(&z);
        if (r == BZ_STREAM_END) {
            /* Another stream (pbzip2 writes one per piece), or the end. */
            uint8_t head[10];
            uint64_t next = at - z.avail_in;
            if (next + sizeof head > file_size ||
                !vd_host_pread(fd, name, head, sizeof head, next, false, NULL) ||
                !bz2_is_stream_head(head)) {
                *all = true;
                break;
            }
            bz_stream left = z; /* where the input and output are */
            BZ2_bzDecompressEnd(&z);
            memset(&z, 0, sizeof z);
            if (BZ2_bzDecompressInit(&z, 0, 0) != BZ_OK) {
                vd_set_error(error, ENOMEM, "%s: no memory for a bzip2 decoder", name);
                *got = len - left.avail_out;
                return false;
            }
            z.next_in = left.next_in;
            z.avail_in = left.avail_in;
            z.next_out = left.next_out;
            z.avail_out = left.avail_out;
        } else if (r != BZ_OK) {
            vd_set_error(error, r == BZ_MEM_ERROR ? ENOMEM : EIO,
                         "%s: bzip2 data does not decode at 0x%" G_GINT64_MODIFIER "x (error %d)",
                         name, at - z.avail_in, r);
            ok = false;
        }
    }
    *got = len - z.avail_out;
    BZ2_bzDecompressEnd(&z);
    return ok;
}
