/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2: compressed clusters (raw deflate, or zstd with the compression
 * type header field), with a small cache of decompressed clusters. Output
 * is always exactly one cluster; anything else is corruption.
 */
#include "config.h"

#include <string.h>
#include <zlib.h>

#include "formats/qcow2.h"
#include "src/vd-error.h"
#include "src/vd-inflate.h"
#include "src/vd-io.h"

typedef struct {
    uint64_t key;
    uint8_t *data;
    uint64_t last_use;
} DecodeNode;

struct Qcow2DecodeCache {
    GMutex lock;
    GHashTable *nodes; /* &node->key -> DecodeNode *; under lock */
    unsigned max;
    uint64_t cluster_size;
    uint64_t tick; /* under lock */
};

static void node_free(gpointer p)
{
    DecodeNode *n = p;
    g_free(n->data);
    g_free(n);
}

Qcow2DecodeCache *qcow2_decode_cache_new(uint64_t cluster_size, uint64_t max_bytes)
{
    Qcow2DecodeCache *d = g_new0(Qcow2DecodeCache, 1);
    g_mutex_init(&d->lock);
    d->nodes = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, node_free);
    d->cluster_size = cluster_size;
    d->max = (unsigned)CLAMP(max_bytes / cluster_size, 2, 256);
    return d;
}

void qcow2_decode_cache_free(Qcow2DecodeCache *d)
{
    if (d == NULL)
        return;
    g_hash_table_unref(d->nodes);
    g_mutex_clear(&d->lock);
    g_free(d);
}

static bool cache_get(Qcow2DecodeCache *d, uint64_t key, uint8_t *out)
{
    g_mutex_lock(&d->lock);
    DecodeNode *n = g_hash_table_lookup(d->nodes, &key);
    if (n != NULL) {
        memcpy(out, n->data, d->cluster_size);
        n->last_use = ++d->tick;
    }
    g_mutex_unlock(&d->lock);
    return n != NULL;
}

static void cache_put(Qcow2DecodeCache *d, uint64_t key, const uint8_t *data)
{
    g_mutex_lock(&d->lock);
    if (!g_hash_table_contains(d->nodes, &key)) {
        if (g_hash_table_size(d->nodes) >= d->max) {
            GHashTableIter it;
            gpointer k, v;
            DecodeNode *victim = NULL;
            g_hash_table_iter_init(&it, d->nodes);
            while (g_hash_table_iter_next(&it, &k, &v)) {
                DecodeNode *n = v;
                if (victim == NULL || n->last_use < victim->last_use)
                    victim = n;
            }
            if (victim != NULL)
                g_hash_table_remove(d->nodes, &victim->key);
        }
        DecodeNode *n = g_new0(DecodeNode, 1);
        n->key = key;
        n->data = g_memdup2(data, d->cluster_size);
        n->last_use = ++d->tick;
        g_hash_table_insert(d->nodes, &n->key, n);
    }
    g_mutex_unlock(&d->lock);
}

bool qcow2_compression_supported(uint8_t type)
{
    if (type == QCOW2_COMPRESS_ZLIB)
        return true;
#ifdef HAVE_ZSTD
    if (type == QCOW2_COMPRESS_ZSTD)
        return true;
#endif
    return false;
}

/* A whole cluster of raw deflate, which must fill it (src/vd-inflate.c). */
static bool inflate_raw(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len)
{
    size_t got = 0;
    return vd_inflate(VD_DEFLATE_RAW, in, in_len, out, out_len, &got) && got == out_len;
}

bool qcow2_read_compressed(Qcow2State *s, uint64_t entry, uint8_t *out, bool keep, GError **error)
{
    uint64_t key = entry & ~(QCOW2_OFLAG_COPIED | QCOW2_OFLAG_COMPRESSED);
    if (cache_get(s->decode, key, out))
        return true;
    uint64_t start, len;
    qcow2_compressed_range(s, entry, &start, &len);
    if (start < s->cluster_size) {
        vd_set_error(error, EIO,
                     "%s: compressed cluster at 0x%" G_GINT64_MODIFIER "x overlaps the header",
                     s->name, start);
        return false;
    }
    g_autofree uint8_t *in = g_malloc(len);
    /* Compressed data may end short of its last sector at the end of the file. */
    if (!vd_host_pread(s->fd, s->name, in, len, start, true, error))
        return false;
    bool ok = false;
    if (s->compression_type == QCOW2_COMPRESS_ZLIB)
        ok = inflate_raw(in, len, out, s->cluster_size);
#ifdef HAVE_ZSTD
    else if (s->compression_type == QCOW2_COMPRESS_ZSTD)
        ok = vd_unzstd(in, len, out, s->cluster_size);
#endif
    if (!ok) {
        vd_set_error(error, EIO,
                     "%s: compressed cluster at 0x%" G_GINT64_MODIFIER "x (%" G_GUINT64_FORMAT
                     " bytes) does not decompress to one cluster",
                     s->name, start, len);
        return false;
    }
    if (keep)
        cache_put(s->decode, key, out);
    return true;
}
