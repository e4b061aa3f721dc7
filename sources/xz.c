/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * xz: random access by the file's index (liblzma reads every stream's
 * index, multi-stream files and padding included). A read decodes the
 * block that holds it: blocks of up to XZ_CACHE_BLOCK go into the
 * decoded-chunk cache (src/vd-ro-cache.h: once however many readers want
 * one, side by side for different blocks, growing while random reads
 * come back to evicted blocks; files made by `xz -T0` have blocks of a
 * few tens of MiB).
 * A block is decoded only as far as a read needs (to the end of its
 * XZ_PIECE) and that prefix is what the cache holds: a random read
 * decodes half a block on average instead of all of it. A read from the
 * block's first piece, or one that goes on where the cached prefix ends,
 * is a sequential reader's: the block is then decoded to its end, so a
 * pass over the file decodes every block once. The price: bytes served
 * from a prefix were not checked against the block's check (CRC32, CRC64
 * or SHA-256 at its end) yet; LZMA2 still fails on most damage, and the
 * check is verified whenever a block is decoded to its end: after a
 * partial decode, the decoder goes on from where the read left it to the
 * block's end on a background thread (one for every file; at most
 * XZ_COMPLETE_PENDING blocks of a file waiting, further ones dropped) and
 * the whole block replaces its prefix in the cache, so a random reader
 * that comes back to the block finds it (the core a QD1 reader leaves
 * idle). Once a decode of a block fails on its data (its check, or
 * LZMA2 itself), every read of that block fails, its prefix's too. A
 * reader that needs more of a block whose decoder waits takes
 * the decoder over, and one whose decoder runs waits for it: a block is
 * decoded once however it is read.
 * A larger block (a single-block file, as plain `xz` writes) is decoded
 * as a stream kept at the end of the last read, in windows of XZ_WINDOW
 * that go into a VdRoCache of at least XZ_WINDOWS of them (as zstd's
 * and gzip's windows do), so that sequential reads cost
 * one pass even when the kernel's read-ahead asks out of order; a read
 * behind those starts again from the block's beginning. The windows the
 * stream passes to reach a read ahead of it are kept too (the last
 * XZ_WINDOWS_PASSED): the reads for them come a moment later, out of
 * order, from the kernel's read-ahead and from concurrent readers, and
 * each would otherwise start the stream again (two files read at once
 * went at a tenth of the speed of one). Such a block's end costs
 * decoding all of it, so a probe does not look there unless the name
 * asks for a format known by its end (xz_costly_at; disk.vhd.xz).
 */
#include "config.h"

#include <lzma.h>
#include <string.h>
#include <unistd.h>

#include "src/vd-interrupt.h"
#include "src/vd-pool.h"
#include "src/vd-container.h"
#include "src/vd-error.h"
#include "src/vd-info.h"
#include "src/vd-io.h"
#include "src/vd-ro-cache.h"
#include "src/vd-stream.h"

#define XZ_MAGIC                                                                                   \
    "\xfd"                                                                                         \
    "7zXZ\0"
#define XZ_CACHE_BLOCK      (64u << 20)
#define XZ_INDEX_MEMMAX     (256u << 20)
#define XZ_INPUT            (256u << 10)
#define XZ_WINDOW           (1u << 20)
#define XZ_WINDOWS          16
#define XZ_WINDOWS_PASSED   8 /* of them kept when the stream passes them */
#define XZ_PIECE            (4u << 10)
#define XZ_COMPLETE_PENDING 2
/* Decoders waiting to finish their blocks in the background, in the whole
 * process: each holds its block's room (up to XZ_CACHE_BLOCK) and its
 * dictionary, and many files read at random side by side would queue
 * XZ_COMPLETE_PENDING each. Beyond this many, a stopped decoder is dropped
 * (xz.background_dropped): a read of the rest of its block decodes it
 * again from the block's start. */
#define XZ_COMPLETE_ALL  8
#define XZ_COSTLY_DECODE (16u << 20) /* to decode before a read: not for a probe */

typedef struct XzDecoder XzDecoder;

typedef struct {
    VdContext *ctx; /* whose memory budget the stream's dictionary is charged to */
    int fd;
    char *name;
    lzma_index *index; /* immutable after open: iterated by readers side by side */
    VdRoCache *blocks; /* decoded blocks of up to XZ_CACHE_BLOCK, by uncompressed start */
    GMutex lock;       /* guards the stream below */
    /* The stream over a block too big to cache: its decoder, where in the
     * block it stands, and where its input goes on. */
    lzma_stream strm;
    lzma_block strm_blk; /* the decoder keeps a pointer to it while it runs */
    bool strm_live;
    uint64_t strm_reserved; /* of the budget, for its dictionary */
    uint64_t strm_block;    /* uncompressed start of its block */
    uint64_t strm_pos;      /* uncompressed offset reached */
    uint64_t strm_in;       /* compressed file offset of the next input */
    uint64_t strm_in_end;   /* end of the block's compressed data */
    uint8_t *inbuf;
    VdRoCache *windows; /* decoded windows of the streamed blocks, by offset */
    /* Blocks decoded on to their end in the background after a partial
     * decode: their decoders, and the jobs that run them. */
    GMutex complete_lock;
    GCond complete_done;
    XzDecoder *pending[XZ_COMPLETE_PENDING]; /* complete_lock */
    unsigned complete_jobs;                  /* queued or running; complete_lock */
    bool closing;                            /* atomic: background decodes give up */
    /* Blocks a decode found damaged (start -> what it said), so that
     * the prefix served before is no longer: complete_lock. */
    GHashTable *damaged;
    unsigned n_damaged; /* atomic: damaged's size, read without the lock */
    uint64_t decoded;   /* atomic: bytes decoded (into the cache, or by the stream) */
    uint64_t restarts;  /* atomic: times the stream started again at a block's start */
    uint64_t dropped;   /* atomic: stopped decoders dropped for XZ_COMPLETE_ALL */
} XzSource;

/* Decoders in the pending slots of every file: atomic. */
static gint complete_waiting;

typedef struct {
    XzSource *x;
    uint64_t start; /* of the block whose decoder is pending */
} XzComplete;

static bool xz_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
    return len >= 6 && memcmp(head, XZ_MAGIC, 6) == 0;
}

static bool xz_read_raw(XzSource *x, void *buf, size_t len, uint64_t off, GError **error)
{
    return vd_host_pread(x->fd, x->name, buf, len, off, false, error);
}

/* What a block's own bytes say is wrong: EIO to the caller like any read
 * error, in a domain of its own because it is the one failure that marks
 * the block damaged (note_damaged_locked). A failed read of the host file
 * (an NFS server gone for a while, a bad sector that a retry gets past)
 * and a lack of memory say nothing about the data and may pass. */
GQuark xz_damage_quark(void);
G_DEFINE_QUARK(vd - xz - damage - quark, xz_damage)
#define xz_damage(error, ...) g_set_error((error), xz_damage_quark(), EIO, __VA_ARGS__)

static void set_lzma_error(XzSource *x, lzma_ret r, const char *what, GError **error)
{
    if (r == LZMA_MEM_ERROR || r == LZMA_MEMLIMIT_ERROR)
        vd_set_error(error, ENOMEM, "%s: no memory for xz %s (liblzma error %d)", x->name, what,
                     (int)r);
    else
        xz_damage(error, "%s: xz %s failed (liblzma error %d)", x->name, what, (int)r);
}

/* Start a block decoder on the block iter describes. block must outlive
 * the decoder (liblzma checks the sizes in it at the block's end).
 * *memusage (when asked for): what liblzma says the decoder takes at
 * most, its dictionary mostly (UINT64_MAX when it cannot say). */
static bool block_start(XzSource *x, const lzma_index_iter *it, lzma_stream *strm,
                        lzma_block *block, lzma_filter *filters, uint64_t *in, uint64_t *in_end,
                        uint64_t *memusage, GError **error)
{
    uint8_t hdr[LZMA_BLOCK_HEADER_SIZE_MAX];
    uint64_t off = it->block.compressed_file_offset;
    if (!xz_read_raw(x, hdr, 1, off, error))
        return false;
    memset(block, 0, sizeof *block);
    block->version = 1;
    block->check = it->stream.flags->check;
    block->filters = filters;
    block->header_size = lzma_block_header_size_decode(hdr[0]);
    if (hdr[0] == 0 || block->header_size > sizeof hdr ||
        !xz_read_raw(x, hdr + 1, block->header_size - 1, off + 1, error)) {
        if (error != NULL && *error == NULL)
            xz_damage(error, "%s: bad xz block header at 0x%" G_GINT64_MODIFIER "x", x->name, off);
        return false;
    }
    lzma_ret r = lzma_block_header_decode(block, NULL, hdr);
    if (r != LZMA_OK) {
        set_lzma_error(x, r, "block header", error);
        return false;
    }
    r = lzma_block_compressed_size(block, it->block.unpadded_size);
    if (r != LZMA_OK) {
        lzma_filters_free(filters, NULL);
        set_lzma_error(x, r, "block header", error);
        return false;
    }
    if (memusage != NULL)
        *memusage = lzma_raw_decoder_memusage(filters);
    *strm = (lzma_stream)LZMA_STREAM_INIT;
    r = lzma_block_decoder(strm, block);
    lzma_filters_free(filters, NULL);
    if (r != LZMA_OK) {
        set_lzma_error(x, r, "block decoder", error);
        return false;
    }
    *in = off + block->header_size;
    *in_end = off + it->block.total_size;
    return true;
}

/* More of the block's input for strm once it has used what it had. */
static bool refill(XzSource *x, lzma_stream *strm, uint8_t *inbuf, uint64_t *in, uint64_t in_end,
                   GError **error)
{
    if (strm->avail_in > 0 || *in >= in_end)
        return true;
    if (__atomic_load_n(&x->closing, __ATOMIC_RELAXED)) {
        vd_set_error(error, ECANCELED, "%s: closed while decoding", x->name);
        return false;
    }
    size_t n = (size_t)MIN((uint64_t)XZ_INPUT, in_end - *in);
    if (!xz_read_raw(x, inbuf, n, *in, error))
        return false;
    strm->next_in = inbuf;
    strm->avail_in = n;
    *in += n;
    return true;
}

/* Decode from strm into out (len bytes, NULL to skip them). */
static bool decode_into(XzSource *x, lzma_stream *strm, uint8_t *inbuf, uint64_t *in,
                        uint64_t in_end, uint8_t *out, uint64_t len, GError **error)
{
    uint8_t skip[65536];
    while (len > 0) {
        size_t want = (size_t)(out ? MIN(len, (uint64_t)SIZE_MAX) : MIN(len, sizeof skip));
        strm->next_out = out ? out : skip;
        strm->avail_out = want;
        while (strm->avail_out > 0) {
            if (!refill(x, strm, inbuf, in, in_end, error))
                return false;
            lzma_ret r = lzma_code(strm, LZMA_RUN);
            if (r == LZMA_STREAM_END && strm->avail_out > 0) {
                xz_damage(error, "%s: xz block ends before its recorded size", x->name);
                return false;
            }
            if (r != LZMA_OK && r != LZMA_STREAM_END) {
                set_lzma_error(x, r, "decoding", error);
                return false;
            }
            if (r == LZMA_OK && strm->avail_in == 0 && *in >= in_end && strm->avail_out > 0) {
                xz_damage(error, "%s: xz block data ends early", x->name);
                return false;
            }
        }
        size_t done = want;
        len -= done;
        if (out)
            out += done;
    }
    return true;
}

/* After a block's last byte: its padding and its check, which liblzma
 * verifies (LZMA_DATA_ERROR when it does not match). */
static bool finish_block(XzSource *x, lzma_stream *strm, uint8_t *inbuf, uint64_t *in,
                         uint64_t in_end, GError **error)
{
    uint8_t extra;
    for (;;) {
        if (!refill(x, strm, inbuf, in, in_end, error))
            return false;
        strm->next_out = &extra;
        strm->avail_out = 1;
        lzma_ret r = lzma_code(strm, LZMA_RUN);
        if (r == LZMA_STREAM_END && strm->avail_out == 1)
            return true;
        if (r == LZMA_DATA_ERROR) {
            xz_damage(error, "%s: xz block fails its check (damaged data)", x->name);
            return false;
        }
        if (r != LZMA_OK && r != LZMA_STREAM_END) {
            set_lzma_error(x, r, "decoding", error);
            return false;
        }
        if (strm->avail_out == 0) {
            xz_damage(error, "%s: xz block longer than its recorded size", x->name);
            return false;
        }
        if (strm->avail_in == 0 && *in >= in_end) {
            xz_damage(error, "%s: xz block data ends early", x->name);
            return false;
        }
    }
}

/* A block's decoder and the room for the whole block: run as far as a
 * read needs, then handed to the background to go on from there, so that
 * a block is decoded once in all however it is read. */
struct XzDecoder {
    lzma_index_iter it; /* a copy: it points into the immutable index */
    lzma_stream strm;
    lzma_block block; /* the decoder keeps a pointer to it */
    lzma_filter filters[LZMA_FILTERS_MAX + 1];
    uint64_t in, in_end;
    uint8_t *inbuf;
    uint8_t *data; /* room for the whole block */
    uint64_t done; /* bytes of data decoded */
    bool running;  /* complete_lock: the background thread has it */
};

static void decoder_free(XzDecoder *d)
{
    if (d == NULL)
        return;
    lzma_end(&d->strm);
    g_free(d->inbuf);
    g_free(d->data);
    g_free(d);
}

static XzDecoder *decoder_new(XzSource *x, const lzma_index_iter *it, GError **error)
{
    XzDecoder *d = g_new0(XzDecoder, 1);
    d->it = *it;
    if (!block_start(x, it, &d->strm, &d->block, d->filters, &d->in, &d->in_end, NULL, error)) {
        g_free(d);
        return NULL;
    }
    uint64_t n = it->block.uncompressed_size;
    d->inbuf = g_malloc(XZ_INPUT);
    d->data = g_try_malloc(n ? n : 1);
    if (d->data == NULL) {
        vd_set_error(error, ENOMEM, "%s: no memory for an xz block of %" G_GUINT64_FORMAT " bytes",
                     x->name, n);
        decoder_free(d);
        return NULL;
    }
    return d;
}

/* Decode d on to byte upto of its block; at the block's end, its check
 * too. */
static bool decoder_run(XzSource *x, XzDecoder *d, uint64_t upto, GError **error)
{
    uint64_t n = d->it.block.uncompressed_size;
    if (upto > d->done) {
        if (!decode_into(x, &d->strm, d->inbuf, &d->in, d->in_end, d->data + d->done,
                         upto - d->done, error))
            return false;
        __atomic_add_fetch(&x->decoded, upto - d->done, __ATOMIC_RELAXED);
        d->done = upto;
        if (upto == n)
            return finish_block(x, &d->strm, d->inbuf, &d->in, d->in_end, error);
    }
    return true;
}

/* What d has decoded, for the cache: the whole block (d's room, taken)
 * or a copy of its prefix (d goes on into the room). */
static GBytes *decoder_bytes(XzDecoder *d)
{
    if (d->done < d->it.block.uncompressed_size)
        return g_bytes_new(d->data, (gsize)d->done);
    GBytes *b = g_bytes_new_take(d->data, (gsize)d->done);
    d->data = NULL;
    return b;
}

/* The slot of the block starting at start's decoder waiting or running
 * in the background, or NULL. complete_lock held. */
static XzDecoder **pending_slot(XzSource *x, uint64_t start)
{
    for (unsigned i = 0; i < XZ_COMPLETE_PENDING; i++) {
        if (x->pending[i] != NULL && x->pending[i]->it.block.uncompressed_file_offset == start)
            return &x->pending[i];
    }
    return NULL;
}

/* A block that failed to decode fails every read from now on, its
 * cached prefix's too: the check covers the block as a whole. Only for
 * what the data said (xz_damage), not for closing, memory or the host
 * file's read errors. complete_lock held. */
static void note_damaged_locked(XzSource *x, uint64_t start, const GError *err)
{
    if (err == NULL || err->domain != xz_damage_quark() ||
        g_hash_table_contains(x->damaged, &start))
        return;
    g_hash_table_insert(x->damaged, g_memdup2(&start, sizeof start), g_strdup(err->message));
    g_atomic_int_inc(&x->n_damaged);
}

static void note_damaged(XzSource *x, uint64_t start, const GError *err)
{
    g_mutex_lock(&x->complete_lock);
    note_damaged_locked(x, start, err);
    g_mutex_unlock(&x->complete_lock);
}

static void complete_run(gpointer data, gpointer unused)
{
    XzComplete *j = data;
    XzSource *x = j->x;
    g_mutex_lock(&x->complete_lock);
    XzDecoder **slot = pending_slot(x, j->start), *d = slot ? *slot : NULL;
    if (d != NULL && !d->running) {
        d->running = true;
        g_mutex_unlock(&x->complete_lock);
        GError *err = NULL;
        bool ok = decoder_run(x, d, d->it.block.uncompressed_size, &err);
        if (ok) {
            g_autoptr(GBytes) b = decoder_bytes(d);
            vd_ro_cache_put(x->blocks, j->start, b);
        }
        g_mutex_lock(&x->complete_lock);
        if (!ok)
            note_damaged_locked(x, j->start, err);
        g_clear_error(&err);
        *pending_slot(x, j->start) = NULL;
        g_atomic_int_add(&complete_waiting, -1);
        decoder_free(d);
    }
    /* Else a reader took the decoder over before this job ran. */
    x->complete_jobs--;
    g_cond_broadcast(&x->complete_done);
    g_mutex_unlock(&x->complete_lock);
    g_free(j);
}

static VD_POOL(complete_pool);

/* Hand d, stopped inside its block, to the background to finish; when
 * XZ_COMPLETE_PENDING blocks of the file wait already, or this one does,
 * it is dropped. Takes d. */
static void complete_later(XzSource *x, XzDecoder *d)
{
    uint64_t start = d->it.block.uncompressed_file_offset;
    g_mutex_lock(&x->complete_lock);
    XzDecoder **slot = NULL;
    for (unsigned i = 0; slot == NULL && i < XZ_COMPLETE_PENDING; i++) {
        if (x->pending[i] == NULL)
            slot = &x->pending[i];
    }
    if (pending_slot(x, start) != NULL)
        slot = NULL;
    if (slot != NULL && g_atomic_int_add(&complete_waiting, 1) >= XZ_COMPLETE_ALL) {
        g_atomic_int_add(&complete_waiting, -1);
        __atomic_add_fetch(&x->dropped, 1, __ATOMIC_RELAXED);
        slot = NULL;
    }
    if (slot != NULL) {
        *slot = d;
        d = NULL;
        XzComplete *j = g_new(XzComplete, 1);
        *j = (XzComplete){.x = x, .start = start};
        x->complete_jobs++;
        /* One thread, so that readers keep the other cores. */
        g_thread_pool_push(vd_pool_get(&complete_pool, complete_run, 1), j, NULL);
    }
    g_mutex_unlock(&x->complete_lock);
    decoder_free(d);
}

/* The background's decoder of the block at start, when it has not begun
 * on it: the caller goes on with it. When the background is running it,
 * waits for it to end and returns NULL (the cache then holds the block,
 * unless it was damaged). */
static XzDecoder *complete_claim(XzSource *x, uint64_t start)
{
    XzDecoder *d = NULL, **slot;
    g_mutex_lock(&x->complete_lock);
    if ((slot = pending_slot(x, start)) != NULL && !(*slot)->running) {
        d = *slot;
        *slot = NULL;
        g_atomic_int_add(&complete_waiting, -1);
    } else {
        while ((slot = pending_slot(x, start)) != NULL)
            g_cond_wait(&x->complete_done, &x->complete_lock);
    }
    g_mutex_unlock(&x->complete_lock);
    return d;
}

typedef struct {
    XzSource *x;
    const lzma_index_iter *it;
    uint64_t want;      /* bytes of the block to decode */
    XzDecoder *decoder; /* out: stopped short of the block's end */
} XzPrefixRequest;

/* Decode d to want and hand what it decoded out; a decoder stopped short
 * of its block's end goes to *rest. Takes d. */
static GBytes *decoder_finish(XzSource *x, XzDecoder *d, uint64_t want, XzDecoder **rest,
                              GError **error)
{
    if (!decoder_run(x, d, want, error)) {
        decoder_free(d);
        return NULL;
    }
    GBytes *b = decoder_bytes(d);
    if (d->data != NULL)
        *rest = d;
    else
        decoder_free(d);
    return b;
}

/* The prefix a read asked for, for the cache (key: the block's start). */
static GBytes *decode_cached_prefix(gpointer user, uint64_t key, GError **error)
{
    XzPrefixRequest *req = user;
    XzDecoder *d = decoder_new(req->x, req->it, error);
    return d ? decoder_finish(req->x, d, req->want, &req->decoder, error) : NULL;
}

/* Whether a decode found the block at start damaged; if so, the error
 * it met. */
static bool block_damaged(XzSource *x, uint64_t start, GError **error)
{
    g_mutex_lock(&x->complete_lock);
    const char *why = g_hash_table_lookup(x->damaged, &start);
    if (why != NULL)
        xz_damage(error, "%s", why);
    g_mutex_unlock(&x->complete_lock);
    return why != NULL;
}

static bool read_cached(XzSource *x, const lzma_index_iter *it, uint8_t *buf, size_t len,
                        uint64_t off, GError **error)
{
    uint64_t start = it->block.uncompressed_file_offset;
    uint64_t bsize = it->block.uncompressed_size;
    uint64_t need = off - start + len;
    gsize have = 0;
    GError *err = NULL;
    if (g_atomic_int_get(&x->n_damaged) > 0 && block_damaged(x, start, error))
        return false;
    GBytes *b = vd_ro_cache_get(x->blocks, start);
    if (b != NULL)
        g_bytes_get_data(b, &have);
    if (b == NULL || have < need) {
        bool sequential = b == NULL ? off - start < XZ_PIECE : off - start <= have + XZ_PIECE;
        XzPrefixRequest req = {
            .x = x,
            .it = it,
            .want = sequential ? bsize : MIN(bsize, (need + XZ_PIECE - 1) / XZ_PIECE * XZ_PIECE),
        };
        if (b == NULL) {
            b = vd_ro_cache_fetch(x->blocks, start, decode_cached_prefix, &req, &err);
            if (b == NULL)
                goto failed;
            g_bytes_get_data(b, &have);
        }
        if (have < need) {
            /* Cached shorter than this read needs (or shared a shorter
             * decode): go on with the background's decoder of the block
             * or wait for it to end, else decode again from the start. */
            g_clear_pointer(&b, g_bytes_unref);
            g_clear_pointer(&req.decoder, decoder_free);
            XzDecoder *d = complete_claim(x, start);
            if (d == NULL && (b = vd_ro_cache_get(x->blocks, start)) != NULL) {
                g_bytes_get_data(b, &have);
                if (have < need)
                    g_clear_pointer(&b, g_bytes_unref);
            }
            if (b == NULL) {
                if (d == NULL && (d = decoder_new(x, it, &err)) == NULL)
                    goto failed;
                if ((b = decoder_finish(x, d, req.want, &req.decoder, &err)) == NULL)
                    goto failed;
                vd_ro_cache_put(x->blocks, start, b);
            }
        }
        if (req.decoder != NULL)
            complete_later(x, req.decoder);
    }
    memcpy(buf, (const uint8_t *)g_bytes_get_data(b, NULL) + (off - start), len);
    g_bytes_unref(b);
    return true;

failed:
    note_damaged(x, start, err);
    g_propagate_error(error, err);
    return false;
}

static void stream_drop(XzSource *x)
{
    lzma_end(&x->strm);
    x->strm_live = false;
    vd_context_mem_release(x->ctx, x->strm_reserved);
    x->strm_reserved = 0;
}

/* The stream's next len bytes (VdStreamDecodeFunc). */
static bool stream_forward(gpointer user, uint8_t *out, uint64_t len, GError **error)
{
    XzSource *x = user;
    if (!decode_into(x, &x->strm, x->inbuf, &x->strm_in, x->strm_in_end, out, len, error))
        return false;
    __atomic_add_fetch(&x->decoded, len, __ATOMIC_RELAXED);
    return true;
}

/* Window wstart of the block iter describes, decoded by the stream,
 * brought there first (vd-stream.h; started again at the block's start
 * when it went past). x->lock held. */
static GBytes *stream_window(XzSource *x, const lzma_index_iter *it, uint64_t wstart,
                             GError **error)
{
    uint64_t block = it->block.uncompressed_file_offset;
    uint64_t bend = block + it->block.uncompressed_size;
    if (!x->strm_live || x->strm_block != block || x->strm_pos > wstart) {
        if (x->strm_live)
            stream_drop(x);
        lzma_filter filters[LZMA_FILTERS_MAX + 1];
        uint64_t memusage;
        if (!block_start(x, it, &x->strm, &x->strm_blk, filters, &x->strm_in, &x->strm_in_end,
                         &memusage, error))
            return NULL;
        /* The dictionary fills as the block decodes, up to its size: a
         * block of gigabytes of zeros in a few hundred KiB of xz, with
         * a 1.5 GiB dictionary, takes that much for as long as the
         * stream lives, in every such file read at once. */
        uint64_t charge = MIN(memusage, it->block.uncompressed_size + XZ_WINDOW);
        if (!vd_context_mem_reserve(x->ctx, charge, x->name, "xz dictionary", error)) {
            lzma_end(&x->strm);
            return NULL;
        }
        x->strm_reserved = charge;
        x->strm_live = true;
        x->strm_block = block;
        x->strm_pos = block;
        __atomic_add_fetch(&x->restarts, 1, __ATOMIC_RELAXED);
    }
    VdStreamWindows sw = {x->windows, XZ_WINDOW, XZ_WINDOWS_PASSED, stream_forward, x,
                          x->ctx,     x->name};
    bool stopped;
    if (!vd_stream_pass(&sw, &x->strm_pos, wstart, &stopped, error)) {
        if (!stopped)
            stream_drop(x);
        return NULL;
    }
    uint64_t wlen = MIN((uint64_t)XZ_WINDOW, bend - wstart);
    uint8_t *data = g_malloc(wlen);
    if (!stream_forward(x, data, wlen, error)) {
        g_free(data);
        stream_drop(x);
        return NULL;
    }
    x->strm_pos += wlen;
    return g_bytes_new_take(data, wlen);
}

typedef struct {
    XzSource *x;
    const lzma_index_iter *it; /* the streamed block */
} XzStreamRequest;

/* A window of a streamed block, for the window cache (key: its offset). */
static GBytes *decode_stream_window(gpointer user, uint64_t key, GError **error)
{
    XzStreamRequest *req = user;
    XzSource *x = req->x;
    /* One stream per file: its readers take turns. */
    g_mutex_lock(&x->lock);
    /* Passed by the stream while this reader waited for it. */
    GBytes *w = vd_ro_cache_get(x->windows, key);
    if (w == NULL)
        w = stream_window(x, req->it, key, error);
    g_mutex_unlock(&x->lock);
    return w;
}

static bool read_streamed(XzSource *x, const lzma_index_iter *it, uint8_t *buf, size_t len,
                          uint64_t off, GError **error)
{
    uint64_t block = it->block.uncompressed_file_offset;
    XzStreamRequest req = {.x = x, .it = it};
    while (len > 0) {
        uint64_t wstart = block + (off - block) / XZ_WINDOW * XZ_WINDOW;
        g_autoptr(GBytes) w =
            vd_ro_cache_fetch(x->windows, wstart, decode_stream_window, &req, error);
        if (w == NULL)
            return false;
        gsize have;
        const uint8_t *d = g_bytes_get_data(w, &have);
        size_t n = (size_t)MIN((uint64_t)len, wstart + have - off);
        memcpy(buf, d + (off - wstart), n);
        buf += n;
        off += n;
        len -= n;
    }
    return true;
}

static bool xz_pread(void *opaque, void *buf, size_t len, uint64_t off, GError **error)
{
    XzSource *x = opaque;
    uint8_t *p = buf;
    bool ok = true;
    while (len > 0 && ok) {
        lzma_index_iter it;
        lzma_index_iter_init(&it, x->index);
        if (lzma_index_iter_locate(&it, off)) {
            vd_set_error(error, EIO, "%s: offset 0x%" G_GINT64_MODIFIER "x is in no xz block",
                         x->name, off);
            ok = false;
            break;
        }
        uint64_t bend = it.block.uncompressed_file_offset + it.block.uncompressed_size;
        size_t n = (size_t)MIN((uint64_t)len, bend - off);
        if (it.block.uncompressed_size <= XZ_CACHE_BLOCK) {
            ok = read_cached(x, &it, p, n, off, error);
        } else {
            ok = read_streamed(x, &it, p, n, off, error);
        }
        p += n;
        off += n;
        len -= n;
    }
    /* Damage is this file's own business: readers see EIO like any other. */
    if (!ok && error != NULL && *error != NULL && (*error)->domain == xz_damage_quark())
        (*error)->domain = VD_ERROR;
    return ok;
}

static void xz_close(void *opaque)
{
    XzSource *x = opaque;
    __atomic_store_n(&x->closing, true, __ATOMIC_RELAXED);
    g_mutex_lock(&x->complete_lock);
    while (x->complete_jobs > 0)
        g_cond_wait(&x->complete_done, &x->complete_lock);
    g_mutex_unlock(&x->complete_lock);
    for (unsigned i = 0; i < XZ_COMPLETE_PENDING; i++)
        decoder_free(x->pending[i]); /* none: each had a job */
    g_mutex_clear(&x->complete_lock);
    g_cond_clear(&x->complete_done);
    g_hash_table_destroy(x->damaged);
    vd_ro_cache_free(x->blocks);
    if (x->windows != NULL)
        vd_ro_cache_free(x->windows);
    if (x->strm_live)
        stream_drop(x);
    vd_context_unref(x->ctx);
    lzma_index_end(x->index, NULL);
    g_mutex_clear(&x->lock);
    g_free(x->inbuf);
    g_free(x->name);
    close(x->fd);
    g_free(x);
}

/* What vdisk info and user.vdiskfs.container say the image is read from,
 * as the other compressed containers do. */
static void xz_describe(void *opaque, VdInfo *info)
{
    XzSource *x = opaque;
    vd_info_add_str(info, "container", "xz");
    vd_info_add_u64(info, "xz.blocks", lzma_index_block_count(x->index));
    vd_info_add_u64(info, "xz.bytes_decoded", __atomic_load_n(&x->decoded, __ATOMIC_RELAXED));
    vd_info_add_u64(info, "xz.stream_starts", __atomic_load_n(&x->restarts, __ATOMIC_RELAXED));
    vd_info_add_u64(info, "xz.background_dropped", __atomic_load_n(&x->dropped, __ATOMIC_RELAXED));
}

/* A read far into a block decodes the block from its start up to it. */
static bool xz_costly_at(void *opaque, uint64_t off)
{
    XzSource *x = opaque;
    lzma_index_iter it;
    lzma_index_iter_init(&it, x->index);
    return !lzma_index_iter_locate(&it, off) &&
           off - it.block.uncompressed_file_offset > XZ_COSTLY_DECODE;
}

static const VdSourceOps xz_ops = {
    .name = "xz",
    .pread = xz_pread,
    .costly_at = xz_costly_at,
    .describe = xz_describe,
    .close = xz_close,
};

/* Every stream's index, read the way liblzma asks (it seeks backwards
 * from the end of the file). */
static lzma_index *read_index(int fd, const char *name, uint64_t file_size, GError **error)
{
    lzma_stream strm = LZMA_STREAM_INIT;
    lzma_index *idx = NULL;
    lzma_ret r = lzma_file_info_decoder(&strm, &idx, XZ_INDEX_MEMMAX, file_size);
    g_autofree uint8_t *buf = g_malloc(XZ_INPUT);
    uint64_t pos = 0;
    while (r == LZMA_OK) {
        if (strm.avail_in == 0) {
            size_t n = (size_t)MIN((uint64_t)XZ_INPUT, file_size - MIN(pos, file_size));
            if (n == 0 || !vd_host_pread(fd, name, buf, n, pos, false, error)) {
                lzma_end(&strm);
                if (error != NULL && *error == NULL)
                    vd_set_error(error, EIO, "%s: the xz index runs past the end", name);
                return NULL;
            }
            strm.next_in = buf;
            strm.avail_in = n;
            pos += n;
        }
        r = lzma_code(&strm, LZMA_RUN);
        if (r == LZMA_SEEK_NEEDED) {
            pos = strm.seek_pos;
            strm.avail_in = 0;
            r = LZMA_OK;
        }
    }
    lzma_end(&strm);
    if (r != LZMA_STREAM_END) {
        vd_set_error(error, EIO, "%s: not a usable xz file (liblzma error %d%s)", name, (int)r,
                     r == LZMA_MEMLIMIT_ERROR ? ": its index is too large" : "");
        if (idx != NULL)
            lzma_index_end(idx, NULL);
        return NULL;
    }
    return idx;
}

static bool xz_open(VdContext *ctx, int fd, const char *path, const char *name,
                    const VdSourceOps **ops, void **opaque, uint64_t *size, GError **error)
{
    uint64_t file_size;
    lzma_index *idx = NULL;
    if (!vd_host_size(fd, name, &file_size, error) ||
        (idx = read_index(fd, name, file_size, error)) == NULL) {
        close(fd);
        return false;
    }
    XzSource *x = g_new0(XzSource, 1);
    x->ctx = vd_context_ref(ctx);
    x->fd = fd;
    x->name = g_strdup(name);
    x->index = idx;
    x->inbuf = g_malloc(XZ_INPUT);
    g_mutex_init(&x->lock);
    g_mutex_init(&x->complete_lock);
    g_cond_init(&x->complete_done);
    x->damaged = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
    /* The cache's unit: the largest block it will hold. */
    uint64_t unit = 1;
    bool large = false;
    lzma_index_iter it;
    lzma_index_iter_init(&it, idx);
    while (!lzma_index_iter_next(&it, LZMA_INDEX_ITER_NONEMPTY_BLOCK)) {
        if (it.block.uncompressed_size <= XZ_CACHE_BLOCK)
            unit = MAX(unit, it.block.uncompressed_size);
        else
            large = true;
    }
    x->blocks = vd_ro_cache_new(ctx->decode_cache_bytes, unit);
    if (large)
        x->windows = vd_ro_cache_new(MAX(ctx->decode_cache_bytes, (uint64_t)XZ_WINDOWS * XZ_WINDOW),
                                     XZ_WINDOW);
    *ops = &xz_ops;
    *opaque = x;
    *size = lzma_index_uncompressed_size(idx);
    return true;
}

const VdContainer vd_xz_container = {
    .name = "xz",
    .suffix = ".xz",
    .probe = xz_probe,
    .open = xz_open,
};
