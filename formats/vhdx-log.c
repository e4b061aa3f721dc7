/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The VHDX metadata log: a circular buffer of 4 KiB sectors holding log
 * entries (header, zero and data descriptors, data sectors), each checked
 * by CRC-32C and tied to the header's LogGuid.
 *
 * Replay (on open, when LogGuid is not zero): every valid entry is a
 * candidate head; its sequence runs from the entry its Tail names forward
 * through entries with consecutive sequence numbers to the head. The
 * complete sequence with the highest head sequence number is the active
 * one and is applied in order. Read-only opens keep the result in memory
 * (an overlay consulted by every metadata read); read-write opens apply it
 * to the file and then mark the log empty.
 *
 * We never write log entries (see vhdx-write.c for why): logs come from
 * other implementations, after a crash.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "formats/vhd-util.h"
#include "formats/vhdx.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

#define LOG_HEADER_SIZE   64u
#define LOG_DESC_SIZE     32u
#define LOG_MAX_REPLAY    (64u * VHDX_MiB)    /* largest log read into memory */
#define LOG_MAX_STEPS     (1u << 20)          /* sequence walking budget */
#define LOG_PROTECTED_END VHDX_REGION1_OFFSET /* identifier and headers */

bool vhdx_meta_read(VdImage *img, void *buf, size_t len, uint64_t off, GError **error)
{
    VhdxState *s = img->opaque;
    if (!vd_host_pread(img->fd, img->name, buf, len, off, true, error))
        return false;
    if (s->overlay == NULL)
        return true;
    uint8_t *p = buf;
    for (guint i = 0; i < s->overlay->len; i++) {
        const VhdxOverlay *o = &g_array_index(s->overlay, VhdxOverlay, i);
        uint64_t lo = MAX(o->offset, off), hi = MIN(o->offset + o->length, off + len);
        if (lo >= hi)
            continue;
        if (o->data != NULL)
            memcpy(p + (lo - off), o->data + (lo - o->offset), hi - lo);
        else
            memset(p + (lo - off), 0, hi - lo);
    }
    return true;
}

bool vhdx_overlay_hits(const VhdxState *s, uint64_t off, uint64_t len)
{
    if (s->overlay == NULL)
        return false;
    for (guint i = 0; i < s->overlay->len; i++) {
        const VhdxOverlay *o = &g_array_index(s->overlay, VhdxOverlay, i);
        if (o->offset < off + len && off < o->offset + o->length)
            return true;
    }
    return false;
}

typedef struct {
    uint64_t pos; /* offset in the log */
    uint32_t length;
    uint32_t tail;
    uint64_t seq;
    uint32_t ndesc;
    uint32_t desc_sectors;
    uint64_t flushed_end, last_end;
} LogEntry;

typedef struct {
    VdImage *img;
    const uint8_t *log; /* the whole log */
    uint64_t len;
    GHashTable *entries; /* pos -> LogEntry* (valid entries only) */
    /* Work budgets: overlapping hostile entries must not cost unbounded
     * checksumming or sequence walking. */
    uint64_t crc_budget;
    uint64_t step_budget;
} LogScan;

/* Bytes [pos, pos + n) of the circular log, unwrapped. */
static uint8_t *log_copy(const LogScan *ls, uint64_t pos, uint64_t n)
{
    uint8_t *out = g_malloc(n);
    uint64_t first = MIN(n, ls->len - pos);
    memcpy(out, ls->log + pos, first);
    memcpy(out + first, ls->log, n - first);
    return out;
}

/* The entry at pos, fully validated, or NULL. */
static LogEntry *log_parse(LogScan *ls, uint64_t pos)
{
    VhdxState *s = ls->img->opaque;
    const uint8_t *h = ls->log + pos;
    if (memcmp(h, "loge", 4) != 0)
        return NULL;
    uint32_t length = vd_le32(h + 8), tail = vd_le32(h + 12), ndesc = vd_le32(h + 24);
    if (length < VHDX_LOG_SECTOR || length % VHDX_LOG_SECTOR != 0 || length > ls->len ||
        tail % VHDX_LOG_SECTOR != 0 || tail >= ls->len || memcmp(h + 32, s->log_guid, 16) != 0)
        return NULL;
    uint64_t desc_bytes = LOG_HEADER_SIZE + (uint64_t)ndesc * LOG_DESC_SIZE;
    uint64_t desc_sectors = (desc_bytes + VHDX_LOG_SECTOR - 1) / VHDX_LOG_SECTOR;
    if (desc_sectors * VHDX_LOG_SECTOR > length || length > ls->crc_budget)
        return NULL;
    ls->crc_budget -= length;
    g_autofree uint8_t *b = log_copy(ls, pos, length);
    if (vd_le32(b + 4) != vhd_crc32c_skip(b, length, 4))
        return NULL;
    uint64_t seq = vd_le64(b + 16);
    uint64_t ndata = 0;
    for (uint32_t i = 0; i < ndesc; i++) {
        const uint8_t *d = b + LOG_HEADER_SIZE + (uint64_t)i * LOG_DESC_SIZE;
        if (vd_le64(d + 24) != seq || vd_le64(d + 16) % VHDX_LOG_SECTOR != 0)
            return NULL;
        if (memcmp(d, "zero", 4) == 0) {
            if (vd_le64(d + 8) % VHDX_LOG_SECTOR != 0)
                return NULL;
            continue;
        }
        if (memcmp(d, "desc", 4) != 0)
            return NULL;
        uint64_t at = (desc_sectors + ndata) * VHDX_LOG_SECTOR;
        if (at + VHDX_LOG_SECTOR > length)
            return NULL;
        const uint8_t *ds = b + at;
        if (memcmp(ds, "data", 4) != 0 || vd_le32(ds + 4) != (uint32_t)(seq >> 32) ||
            vd_le32(ds + 4092) != (uint32_t)seq)
            return NULL;
        ndata++;
    }
    LogEntry *e = g_new0(LogEntry, 1);
    e->pos = pos;
    e->length = length;
    e->tail = tail;
    e->seq = seq;
    e->ndesc = ndesc;
    e->desc_sectors = (uint32_t)desc_sectors;
    e->flushed_end = vd_le64(b + 48);
    e->last_end = vd_le64(b + 56);
    return e;
}

/* The active sequence as a list of entries, tail first (may be empty). */
static GPtrArray *log_active_sequence(LogScan *ls)
{
    GPtrArray *best = g_ptr_array_new();
    uint64_t best_seq = 0;
    GHashTableIter it;
    gpointer key, val;
    g_hash_table_iter_init(&it, ls->entries);
    while (g_hash_table_iter_next(&it, &key, &val)) {
        LogEntry *head = val;
        if (best->len > 0 && head->seq <= best_seq)
            continue;
        g_autoptr(GPtrArray) seqv = g_ptr_array_new();
        uint64_t pos = head->tail;
        guint limit = g_hash_table_size(ls->entries);
        bool complete = false;
        for (guint steps = 0; steps < limit && ls->step_budget > 0; steps++, ls->step_budget--) {
            LogEntry *e = g_hash_table_lookup(ls->entries, &pos);
            if (e == NULL)
                break;
            if (seqv->len > 0) {
                LogEntry *prev = g_ptr_array_index(seqv, seqv->len - 1);
                if (e->seq != prev->seq + 1)
                    break;
            }
            g_ptr_array_add(seqv, e);
            if (e == head) {
                complete = true;
                break;
            }
            if (e->seq >= head->seq)
                break;
            pos = (e->pos + e->length) % ls->len;
        }
        if (complete) {
            g_ptr_array_set_size(best, 0);
            for (guint i = 0; i < seqv->len; i++)
                g_ptr_array_add(best, g_ptr_array_index(seqv, i));
            best_seq = head->seq;
        }
    }
    return best;
}

static bool overlay_add(VhdxState *s, uint64_t off, uint64_t len, const uint8_t *data)
{
    VhdxOverlay o = {off, len, data ? g_memdup2(data, len) : NULL};
    g_array_append_val(s->overlay, o);
    return true;
}

static bool apply_range(VdImage *img, bool on_disk, uint64_t off, uint64_t len, const uint8_t *data,
                        uint64_t limit, GError **error)
{
    VhdxState *s = img->opaque;
    bool in_log = off < s->log_offset + s->log_length && s->log_offset < off + len;
    if (off < LOG_PROTECTED_END || !vd_range_within(off, len, limit) || in_log) {
        vd_set_error(error, EIO,
                     "%s: log entry writes 0x%" PRIx64 "+0x%" PRIx64
                     " (headers, the log itself, or past the file's end)",
                     img->name, off, len);
        return false;
    }
    if (!on_disk)
        return overlay_add(s, off, len, data);
    if (data != NULL)
        return vd_host_pwrite(img->fd, img->name, data, len, off, error);
    g_autofree uint8_t *zeros = g_malloc0(VHDX_MiB);
    while (len > 0) {
        uint64_t n = MIN(len, VHDX_MiB);
        if (!vd_host_pwrite(img->fd, img->name, zeros, n, off, error))
            return false;
        off += n;
        len -= n;
    }
    return true;
}

static bool apply_entry(VdImage *img, const LogScan *ls, const LogEntry *e, bool on_disk,
                        uint64_t limit, GError **error)
{
    g_autofree uint8_t *bytes = log_copy(ls, e->pos, e->length);
    uint64_t ndata = 0;
    for (uint32_t i = 0; i < e->ndesc; i++) {
        const uint8_t *d = bytes + LOG_HEADER_SIZE + (uint64_t)i * LOG_DESC_SIZE;
        uint64_t off = vd_le64(d + 16);
        if (memcmp(d, "zero", 4) == 0) {
            if (!apply_range(img, on_disk, off, vd_le64(d + 8), NULL, limit, error))
                return false;
            continue;
        }
        const uint8_t *ds = bytes + (e->desc_sectors + ndata++) * VHDX_LOG_SECTOR;
        uint8_t sector[VHDX_LOG_SECTOR];
        memcpy(sector, d + 8, 8);                         /* LeadingBytes */
        memcpy(sector + 8, ds + 8, VHDX_LOG_SECTOR - 12); /* data */
        memcpy(sector + VHDX_LOG_SECTOR - 4, d + 4, 4);   /* TrailingBytes */
        if (!apply_range(img, on_disk, off, VHDX_LOG_SECTOR, sector, limit, error))
            return false;
    }
    return true;
}

bool vhdx_log_replay(VdImage *img, GError **error)
{
    VhdxState *s = img->opaque;
    if (vhd_guid_is_zero(s->log_guid))
        return true;
    if (s->log_length == 0) {
        vd_set_error(error, EIO, "%s: header names a log but the log is empty", img->name);
        return false;
    }
    if (s->log_length > LOG_MAX_REPLAY) {
        vd_set_error(error, ENOTSUP, "%s: log of %" PRIu32 " bytes is too large to replay",
                     img->name, s->log_length);
        return false;
    }
    g_autofree uint8_t *log = g_malloc(s->log_length);
    if (!vd_host_pread(img->fd, img->name, log, s->log_length, s->log_offset, false, error))
        return false;
    LogScan ls = {img,
                  log,
                  s->log_length,
                  g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free),
                  4ull * s->log_length + VHDX_MiB,
                  LOG_MAX_STEPS};
    for (uint64_t pos = 0; pos < ls.len; pos += VHDX_LOG_SECTOR) {
        LogEntry *e = log_parse(&ls, pos);
        if (e != NULL)
            g_hash_table_insert(ls.entries, &e->pos, e);
    }
    g_autoptr(GPtrArray) active = log_active_sequence(&ls);
    bool ok = false;
    bool on_disk = !img->read_only;
    if (active->len == 0) {
        /* Nothing valid to replay: the log is empty in effect. */
        s->log_state = "clean (no valid entries)";
        ok = true;
        if (on_disk) {
            vhd_random_guid(s->file_write_guid);
            memset(s->log_guid, 0, 16);
            ok = vhdx_write_header(img, error);
        }
        goto out;
    }
    LogEntry *head = g_ptr_array_index(active, active->len - 1);
    if (s->file_size < head->flushed_end) {
        vd_set_error(error, EIO,
                     "%s: file is %" PRIu64 " bytes but the log says %" PRIu64
                     " were durable: data was lost",
                     img->name, s->file_size, head->flushed_end);
        goto out;
    }
    uint64_t limit = MAX(s->file_size, head->last_end);
    if (on_disk) {
        /* A new FileWriteGuid before the first modification, log included. */
        vhd_random_guid(s->file_write_guid);
        if (!vhdx_write_header(img, error))
            goto out;
    } else {
        s->overlay = g_array_new(FALSE, FALSE, sizeof(VhdxOverlay));
    }
    for (guint i = 0; i < active->len; i++) {
        if (!apply_entry(img, &ls, g_ptr_array_index(active, i), on_disk, limit, error))
            goto out;
    }
    s->log_entries_replayed = active->len;
    if (on_disk) {
        if (s->file_size < head->last_end) {
            if (ftruncate(img->fd, (off_t)head->last_end) < 0) {
                vd_set_error_errno(error, errno, "%s: extend after log replay", img->name);
                goto out;
            }
            s->file_size = head->last_end;
        }
        if (!vd_host_fdatasync(img->fd, img->name, error))
            goto out;
        memset(s->log_guid, 0, 16);
        if (!vhdx_write_header(img, error))
            goto out;
        s->overlay_end = s->file_size;
        s->log_state = "replayed on open";
    } else {
        s->overlay_end = limit;
        s->log_state = "replayed in memory (read-only)";
    }
    ok = true;
out:
    g_hash_table_unref(ls.entries);
    return ok;
}
