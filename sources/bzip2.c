/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bzip2: random access by blocks. bzip2 records no size, so the first
 * open decodes the whole file once (sources/bzip2-index.c: a worker per
 * core, every CRC checked) and keeps, per block, where it lies in the
 * file to the bit and in the decoded data. A read then decodes only the
 * blocks it touches, each on its own (at most 900 kB before bzip2's
 * initial run-length step), and keeps them in the decoded-chunk cache
 * (src/vd-ro-cache.h); blocks that decode to zeros are not decoded
 * again at all, and are holes to SEEK_HOLE.
 *
 * The index is charged to the mount's memory budget and bounded
 * (BZ2_MAX_BLOCKS, 32 bytes a block), and shared by the opens of the
 * same file through the index cache (src/vd-index-cache.h), kept a
 * minute after the last one closes: a listing's probe and stat and the
 * open after them come in a row, and each would be a full pass.
 *
 * Hostile files: a block that does not decode, fails its CRC or is cut
 * short, a stream whose combined CRC is wrong, fail the open with the
 * block's number and place; nothing is allocated from what the file says
 * beyond the bounds the format sets. A DMG whose first chunk is bzip2
 * starts as a .bz2 does and is passed on as it is (plain_ops).
 */
#include "config.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/vd-pool.h"
#include "src/vd-ro-cache.h"
#include "sources/bzip2.h"
#include "src/vd-container.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-info.h"
#include "src/vd-index-cache.h"
#include "src/vd-io.h"

#define BZ_ZERO_RUN 4096 /* blocks one is_zero answer may cover */
#define BZ_UNIT_MAX (4u << 20)
#define BZ_AHEAD    2 /* blocks decoded ahead of a sequential reader */

/* A built index, shared by the opens of one file through the index
 * cache (src/vd-index-cache.h): immutable once built. */
typedef struct {
    VdContext *ctx; /* whose budget ix is charged to */
    Bz2Index ix;
} BzShared;

typedef struct {
    VdContext *ctx;
    int fd;
    char *name;
    BzShared *sh;
    const Bz2Index *ix;
    VdRoCache *cache;  /* decoded blocks, by index */
    GMutex ahead_lock; /* guards the fields below */
    GCond ahead_done;
    unsigned ahead_jobs; /* decodes ahead not finished */
    guint last_block;    /* where the last read ended */
    guint ahead_to;      /* the blocks before it were sent ahead */
} BzSource;

typedef struct {
    BzSource *x;
    guint block;
} BzAhead;

static bool bz_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
    (void)file_size;
    return len >= 10 && bz2_is_stream_head(head);
}

static const Bz2Block *block_at(const BzSource *x, guint i)
{
    return &g_array_index(x->ix->blocks, Bz2Block, i);
}

/* The block holding decoded offset off (< size). */
static guint block_find(const BzSource *x, uint64_t off)
{
    guint lo = 0, hi = x->ix->blocks->len;
    while (hi - lo > 1) {
        guint mid = lo + (hi - lo) / 2;
        if (block_at(x, mid)->out_off <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static GBytes *decode_block(gpointer user, uint64_t key, GError **error)
{
    BzSource *x = user;
    const Bz2Block *b = block_at(x, (guint)key);
    uint8_t *data = g_try_malloc(b->out_len);
    if (data == NULL) {
        vd_set_error(error, ENOMEM, "%s: no memory for a bzip2 block of %u bytes", x->name,
                     b->out_len);
        return NULL;
    }
    if (!bz2_block_decode(x->fd, x->name, (guint)key, b, data, error)) {
        g_free(data);
        return NULL;
    }
    return g_bytes_new_take(data, b->out_len);
}

/* A block decoded into the cache ahead of the reader. */
static void ahead_run(gpointer data, gpointer unused)
{
    BzAhead *a = data;
    BzSource *x = a->x;
    GBytes *d = vd_ro_cache_fetch(x->cache, a->block, decode_block, x, NULL);
    if (d != NULL)
        g_bytes_unref(d);
    g_mutex_lock(&x->ahead_lock);
    if (--x->ahead_jobs == 0)
        g_cond_broadcast(&x->ahead_done);
    g_mutex_unlock(&x->ahead_lock);
    g_free(a);
}

static VD_POOL(ahead_pool);

/* A read took blocks first to last: when it goes on from the read before,
 * decode the next BZ_AHEAD blocks side by side, while the kernel copies
 * this one out (a block costs tens of milliseconds). */
static void ahead_note(BzSource *x, guint first, guint last)
{
    guint n = x->ix->blocks->len;
    g_mutex_lock(&x->ahead_lock);
    if (first != x->last_block && first != x->last_block + 1)
        x->ahead_to = 0;
    else
        for (guint k = MAX(last + 1, x->ahead_to); k < n && k <= last + BZ_AHEAD; k++) {
            x->ahead_to = k + 1;
            if (block_at(x, k)->zero)
                continue;
            BzAhead *a = g_new(BzAhead, 1);
            *a = (BzAhead){x, k};
            x->ahead_jobs++;
            g_thread_pool_push(vd_pool_get(&ahead_pool, ahead_run, 0), a, NULL);
        }
    x->last_block = last;
    g_mutex_unlock(&x->ahead_lock);
}

static bool bz_pread(void *opaque, void *buf, size_t len, uint64_t off, GError **error)
{
    BzSource *x = opaque;
    uint8_t *p = buf;
    guint first = block_find(x, off), i = first;
    while (len > 0) {
        i = block_find(x, off);
        const Bz2Block *b = block_at(x, i);
        size_t n = (size_t)MIN((uint64_t)len, b->out_off + b->out_len - off);
        if (b->zero)
            memset(p, 0, n);
        else {
            g_autoptr(GBytes) d = vd_ro_cache_fetch(x->cache, i, decode_block, x, error);
            if (d == NULL)
                return false;
            memcpy(p, (const uint8_t *)g_bytes_get_data(d, NULL) + (off - b->out_off), n);
        }
        p += n;
        off += n;
        len -= n;
    }
    ahead_note(x, first, i);
    return true;
}

static bool bz_is_zero(void *opaque, uint64_t off, uint64_t len, bool *zero, uint64_t *run)
{
    BzSource *x = opaque;
    guint i = block_find(x, off), n = x->ix->blocks->len;
    *zero = block_at(x, i)->zero;
    guint j = i + 1;
    while (j < n && j - i < BZ_ZERO_RUN && block_at(x, j)->zero == *zero &&
           block_at(x, j)->out_off < off + len)
        j++;
    const Bz2Block *last = block_at(x, j - 1);
    *run = last->out_off + last->out_len - off;
    return true;
}

static uint64_t bz_unit(void *opaque)
{
    BzSource *x = opaque;
    return MIN(x->ix->max_len, BZ_UNIT_MAX);
}

static void bz_describe(void *opaque, VdInfo *info)
{
    BzSource *x = opaque;
    vd_info_add_str(info, "container", "bzip2");
    vd_info_add_u64(info, "bzip2.streams", x->ix->streams);
    vd_info_add_u64(info, "bzip2.blocks", x->ix->blocks->len);
    vd_info_add_u64(info, "bzip2.zero_blocks", x->ix->zero_blocks);
    if (x->ix->blocks->len > 0)
        vd_info_add_u64(info, "bzip2.level", block_at(x, 0)->level);
}

static void shared_free(gpointer p)
{
    BzShared *sh = p;
    bz2_index_clear(sh->ctx, &sh->ix);
    vd_context_unref(sh->ctx);
    g_free(sh);
}

static void bz_close(void *opaque)
{
    BzSource *x = opaque;
    g_mutex_lock(&x->ahead_lock);
    while (x->ahead_jobs > 0)
        g_cond_wait(&x->ahead_done, &x->ahead_lock);
    g_mutex_unlock(&x->ahead_lock);
    g_mutex_clear(&x->ahead_lock);
    g_cond_clear(&x->ahead_done);
    if (x->cache != NULL)
        vd_ro_cache_free(x->cache);
    vd_index_cache_release(x->sh);
    vd_context_unref(x->ctx);
    g_free(x->name);
    close(x->fd);
    g_free(x);
}

static const VdSourceOps bz_ops = {
    .name = "bzip2",
    .pread = bz_pread,
    .is_zero = bz_is_zero,
    .describe = bz_describe,
    .unit = bz_unit,
    .close = bz_close,
};

/* A DMG whose first chunk is bzip2 (UDBZ) starts as a .bz2 does; its
 * "koly" trailer tells it apart, and it is passed on as it is, for the
 * DMG driver (zero-copy: its bytes are the file's). */
static bool plain_pread(void *opaque, void *buf, size_t len, uint64_t off, GError **error)
{
    BzSource *x = opaque;
    return vd_host_pread(x->fd, x->name, buf, len, off, false, error);
}

static int plain_host_range(void *opaque, uint64_t off, uint64_t len, uint64_t *host_off)
{
    BzSource *x = opaque;
    *host_off = off;
    return x->fd;
}

static const VdSourceOps plain_ops = {
    .name = "bzip2 (a DMG, as it is)",
    .pread = plain_pread,
    .host_range = plain_host_range,
    .close = bz_close,
};

static bool is_dmg(BzSource *x, uint64_t file_size, bool *dmg, GError **error)
{
    uint8_t k[12];
    *dmg = false;
    if (file_size < 512 + 10 ||
        !vd_host_pread(x->fd, x->name, k, sizeof k, file_size - 512, false, error))
        return error == NULL || *error == NULL;
    *dmg = memcmp(k, "koly", 4) == 0 && vd_be32(k + 8) == 512;
    return true;
}

/* The first pass, for the index cache. */
static gpointer shared_build(gpointer user, uint64_t *bytes, GError **error)
{
    BzSource *x = user;
    uint64_t file_size;
    if (!vd_host_size(x->fd, x->name, &file_size, error))
        return NULL;
    BzShared *sh = g_new0(BzShared, 1);
    sh->ctx = vd_context_ref(x->ctx);
    /* A stream of one byte takes some 40 bytes for its two magics: more
     * than one in 16 bytes are chance matches, or a file made of them. */
    guint max = (guint)MIN(file_size / 16 + 64, (uint64_t)BZ2_MAX_BLOCKS * 2);
    g_autoptr(GArray) cands = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    bool ok = bz2_find_magics(x->ctx, x->fd, x->name, file_size, max, cands, error);
    /* The magics, and what the first pass learns of each (17 bytes). */
    uint64_t charge = (uint64_t)cands->len * (sizeof(uint64_t) + 9);
    if (ok &&
        (ok = vd_context_mem_reserve(x->ctx, charge, x->name, "bzip2 block markers", error))) {
        ok = bz2_index_build(x->ctx, x->fd, x->name, file_size, cands, &sh->ix, error);
        vd_context_mem_release(x->ctx, charge);
    }
    if (!ok) {
        shared_free(sh);
        return NULL;
    }
    *bytes = sizeof *sh + sh->ix.reserved;
    return sh;
}

static bool bz_open(VdContext *ctx, int fd, const char *path, const char *name,
                    const VdSourceOps **ops, void **opaque, uint64_t *size, GError **error)
{
    BzSource *x = g_new0(BzSource, 1);
    x->ctx = vd_context_ref(ctx);
    x->fd = fd;
    x->name = g_strdup(name);
    g_mutex_init(&x->ahead_lock);
    g_cond_init(&x->ahead_done);
    x->last_block = G_MAXUINT;
    VdIndexKey key;
    bool ok = vd_index_key_of(ctx, "bzip2", fd, name, &key, error);
    bool dmg = false;
    ok = ok && is_dmg(x, (uint64_t)key.size, &dmg, error);
    if (ok && dmg) {
        *ops = &plain_ops;
        *opaque = x;
        *size = (uint64_t)key.size;
        return true;
    }
    if (ok)
        ok = (x->sh = vd_index_cache_get(&key, shared_build, x, shared_free, error)) != NULL;
    if (!ok) {
        bz_close(x);
        return false;
    }
    x->ix = &x->sh->ix;
    x->cache = vd_ro_cache_new(ctx->decode_cache_bytes, MAX(x->ix->max_len, 1u));
    *ops = &bz_ops;
    *opaque = x;
    *size = x->ix->size;
    return true;
}

/* For a probe: the first len bytes, decoded from the start (over stream
 * boundaries), nothing checked but that they decode. A DMG's is its own
 * file, which its probe knows by the end: declined. */
static bool bz_head(VdContext *ctx, int fd, const char *name, uint8_t *buf, size_t len, size_t *got,
                    bool *all, GError **error)
{
    (void)ctx;
    BzSource probe = {.fd = fd, .name = (char *)name};
    uint64_t file_size;
    bool dmg = false;
    *got = 0;
    *all = false;
    if (!vd_host_size(fd, name, &file_size, error) || !is_dmg(&probe, file_size, &dmg, error))
        return false;
    if (dmg)
        return true;
    return bz2_decode_head(fd, name, file_size, buf, len, got, all, error);
}

const VdContainer vd_bzip2_container = {
    .name = "bzip2",
    .suffix = ".bz2",
    .probe = bz_probe,
    .open = bz_open,
    .head = bz_head,
};
