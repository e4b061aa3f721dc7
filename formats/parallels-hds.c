/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One Parallels .hds file (expanding or plain): header and BAT checks,
 * the cluster map, and cluster allocation on write.
 *
 * Writes never reuse space: a new cluster goes at the end of the data
 * area. Its data is written and made durable before its BAT entry, so a
 * crash leaves at worst unreferenced space at the end of the file, which
 * `qemu-img check` reports as a leak. The in_use field is left alone: with
 * that ordering the image is consistent at every step.
 */
#include "config.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/parallels.h"
#include "src/vd-claims.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-file.h"
#include "src/vd-image.h"
#include "src/vd-io.h"

#define PRL_IO_CHUNK (1u << 20)

bool prl_hds_magic(const uint8_t *head, size_t len)
{
    return len >= PRL_HEADER_SIZE &&
           (memcmp(head, PRL_MAGIC_OLD, 16) == 0 || memcmp(head, PRL_MAGIC_EXT, 16) == 0);
}

void prl_hds_clear(PrlHds *h)
{
    if (h->owns_fd && h->fd >= 0)
        vd_file_close(h->fd);
    h->fd = -1;
    g_clear_pointer(&h->bat, g_free);
    g_clear_pointer(&h->name, g_free);
    g_clear_pointer(&h->meta, vd_meta_map_free);
    g_clear_pointer(&h->layout_error, g_free);
}

/* Keep the first reason only: one log line says what is wrong. */
static void note_layout(PrlHds *h, char *why)
{
    if (h->layout_error == NULL)
        h->layout_error = why;
    else
        g_free(why);
}

/* Every allocated cluster inside the data area and on its cluster grid.
 * Clusters past the end of the file or used twice read as the BAT says;
 * whether the image can be written is prl_hds_check_layout's question. */
static bool check_bat(PrlHds *h, GError **error)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < h->bat_entries; i++) {
        uint32_t e = h->bat[i];
        if (e == 0)
            continue;
        uint64_t host = (uint64_t)e * h->unit;
        VdMetaRange hit;
        if (vd_meta_map_find(h->meta, host, h->cluster, &hit)) {
            /* Readable as the BAT says; a write there would hit metadata. */
            note_layout(h, g_strdup_printf("%s: cluster %u at 0x%" G_GINT64_MODIFIER
                                           "x overlaps the %s",
                                           h->name, i, host, hit.what));
        } else if (host < h->data_off || (host - h->grid) % h->cluster != 0) {
            vd_set_error(error, EIO,
                         "%s: cluster %u at 0x%" G_GINT64_MODIFIER "x is outside the data area "
                         "or not aligned to a cluster",
                         h->name, i, host);
            return false;
        }
        n++;
    }
    h->allocated = n;
    return true;
}

/* The header and what follows from it alone: what open and peek share. */
static bool read_header(PrlHds *h, uint64_t *file_size, GError **error)
{
    const char *name = h->name;
    if (!vd_host_size(h->fd, name, file_size, error))
        return false;
    uint8_t *hd = h->header;
    if (*file_size < PRL_HEADER_SIZE) {
        vd_set_error(error, EIO, "%s: too short for a Parallels header", name);
        return false;
    }
    if (!vd_host_pread(h->fd, name, hd, PRL_HEADER_SIZE, 0, false, error))
        return false;
    if (!prl_hds_magic(hd, PRL_HEADER_SIZE)) {
        vd_set_error(error, EMEDIUMTYPE, "%s: not an expanding Parallels image", name);
        return false;
    }
    h->ext_magic = memcmp(hd, PRL_MAGIC_EXT, 16) == 0;
    uint32_t version = vd_le32(hd + PRL_OFF_VERSION);
    if (version != 2) {
        vd_set_error(error, ENOTSUP, "%s: Parallels image version %u is not supported", name,
                     version);
        return false;
    }
    uint32_t tracks = vd_le32(hd + PRL_OFF_TRACKS);
    if (tracks == 0 || tracks > PRL_MAX_CLUSTER / 512) {
        vd_set_error(error, EIO, "%s: cluster size of %u sectors is out of range", name, tracks);
        return false;
    }
    h->cluster = (uint64_t)tracks * 512;
    h->unit = h->ext_magic ? h->cluster : 512;
    h->bat_entries = vd_le32(hd + PRL_OFF_BAT_ENTRIES);
    uint64_t bat_end = PRL_HEADER_SIZE + (uint64_t)h->bat_entries * 4;
    if (h->bat_entries > PRL_MAX_BAT_ENTRIES || bat_end > *file_size) {
        vd_set_error(error, EIO, "%s: BAT of %u entries lies beyond the end of the file", name,
                     h->bat_entries);
        return false;
    }
    uint64_t sectors = vd_le64(hd + PRL_OFF_NB_SECTORS);
    if (!h->ext_magic)
        sectors &= 0xffffffffu; /* only the low half counts in old images */
    if (sectors > (uint64_t)h->bat_entries * tracks) {
        vd_set_error(error, EIO,
                     "%s: disk of %" G_GUINT64_FORMAT " sectors exceeds its %u clusters of %u "
                     "sectors",
                     name, sectors, h->bat_entries, tracks);
        return false;
    }
    h->size = sectors * 512;
    h->data_off = (uint64_t)vd_le32(hd + PRL_OFF_DATA_OFF) * 512;
    if (h->data_off == 0)
        h->data_off = (bat_end + 511) / 512 * 512;
    /* Entries of the extended magic count clusters from the start of the
     * file, so their grid starts there even when the data area does not;
     * sector entries are kept on the data area's own grid. */
    h->grid = h->ext_magic ? 0 : h->data_off;
    h->meta = vd_meta_map_new(name);
    vd_meta_map_add(h->meta, 0, PRL_HEADER_SIZE, "header", NULL);
    vd_meta_map_add(h->meta, PRL_HEADER_SIZE, bat_end - PRL_HEADER_SIZE, "BAT", NULL);
    vd_meta_map_seal(h->meta, NULL); /* adjacent, never overlapping */
    if (h->data_off < bat_end)
        note_layout(h,
                    g_strdup_printf("%s: data area at 0x%" G_GINT64_MODIFIER "x overlaps the BAT",
                                    name, h->data_off));
    h->heads = vd_le32(hd + PRL_OFF_HEADS);
    h->cylinders = vd_le32(hd + PRL_OFF_CYLINDERS);
    h->was_in_use = vd_le32(hd + PRL_OFF_INUSE) == PRL_INUSE_OPEN;
    h->flags = vd_le32(hd + PRL_OFF_FLAGS);
    h->ext_off = vd_le64(hd + PRL_OFF_EXT_OFF);
    return true;
}

bool prl_hds_open(PrlHds *h, int fd, bool owns_fd, const char *name, GError **error)
{
    memset(h, 0, sizeof *h);
    h->fd = fd;
    h->owns_fd = owns_fd;
    h->name = g_strdup(name);
    uint64_t file_size;
    if (!read_header(h, &file_size, error))
        return false;

    size_t bat_bytes = (size_t)h->bat_entries * 4;
    g_autofree uint8_t *raw = g_malloc(bat_bytes ? bat_bytes : 1);
    if (!vd_host_pread(fd, name, raw, bat_bytes, PRL_HEADER_SIZE, false, error))
        return false;
    h->bat = g_new(uint32_t, h->bat_entries ? h->bat_entries : 1);
    for (uint32_t i = 0; i < h->bat_entries; i++)
        h->bat[i] = vd_le32(raw + (size_t)i * 4);
    if (!check_bat(h, error))
        return false;

    /* New clusters go after everything, on the cluster grid: at or past the
     * end of the file, so never where an entry already points. */
    h->file_size = file_size;
    uint64_t from = MAX(file_size, h->data_off) - h->grid;
    h->data_end = h->grid + (from + h->cluster - 1) / h->cluster * h->cluster;
    return true;
}

bool prl_hds_peek(PrlHds *h, int fd, const char *name, GError **error)
{
    memset(h, 0, sizeof *h);
    h->fd = fd;
    h->name = g_strdup(name);
    uint64_t file_size;
    return read_header(h, &file_size, error);
}

/* Claim the header, the BAT and every allocated cluster on the cluster
 * grid: false with the first cluster that lies past the end of the file
 * (a new cluster would land under it) or that is claimed twice (a write
 * through one entry would change the other's data). */
static bool claim_clusters(const PrlHds *h, VdImage *img, GError **error)
{
    g_autoptr(VdClaims) c = vd_claims_new(img, (h->data_end - h->grid) / h->cluster, error);
    if (c == NULL)
        return false;
    uint64_t bat_end = PRL_HEADER_SIZE + (uint64_t)h->bat_entries * 4;
    if (bat_end > h->grid)
        vd_claims_take(c, 0, (bat_end - h->grid + h->cluster - 1) / h->cluster);
    for (uint32_t i = 0; i < h->bat_entries; i++) {
        uint32_t e = h->bat[i];
        if (e == 0)
            continue;
        uint64_t host = (uint64_t)e * h->unit;
        if (!vd_range_within(host, h->cluster, h->file_size)) {
            vd_set_error(error, EIO,
                         "%s: cluster %u at 0x%" G_GINT64_MODIFIER "x lies beyond the end of "
                         "the file",
                         h->name, i, host);
            return false;
        }
        if (vd_claims_take(c, (host - h->grid) / h->cluster, 1))
            continue;
        /* Find the other user only now, for the message. */
        uint32_t first = 0;
        while (first < i && h->bat[first] != e)
            first++;
        if (first < i)
            vd_set_error(error, EIO, "%s: clusters %u and %u both map to 0x%" G_GINT64_MODIFIER "x",
                         h->name, first, i, host);
        else
            vd_set_error(error, EIO,
                         "%s: cluster %u at 0x%" G_GINT64_MODIFIER "x overlaps the header or "
                         "the BAT",
                         h->name, i, host);
        return false;
    }
    return true;
}

void prl_hds_check_layout(const PrlHds *h, VdImage *img)
{
    if (h->plain)
        return;
    if (h->layout_error != NULL) {
        vd_image_set_corrupt(img, "%s", h->layout_error);
        return;
    }
    g_autoptr(GError) why = NULL;
    if (claim_clusters(h, img, &why))
        return;
    /* Reads keep working; a write could change other data. */
    g_autoptr(GError) err = NULL;
    vd_set_error(&err, EIO, "%s; serving the image read-only", why->message);
    img->read_only = true;
    vd_image_record_error(img, err);
}

bool prl_hds_open_plain(PrlHds *h, int fd, bool owns_fd, const char *name, GError **error)
{
    memset(h, 0, sizeof *h);
    h->fd = fd;
    h->owns_fd = owns_fd;
    h->name = g_strdup(name);
    h->plain = true;
    return vd_host_size(fd, name, &h->size, error);
}

void prl_hds_status(const PrlHds *h, uint64_t off, uint64_t len, bool *allocated, uint64_t *host,
                    uint64_t *run)
{
    if (h->plain) {
        *allocated = true;
        *host = off;
        *run = len;
        return;
    }
    uint64_t idx = off / h->cluster, in = off % h->cluster;
    if (idx >= h->bat_entries) {
        *allocated = false;
        *run = len;
        return;
    }
    uint32_t e = __atomic_load_n(&h->bat[idx], __ATOMIC_ACQUIRE);
    *allocated = e != 0;
    *host = (uint64_t)e * h->unit + in;
    uint64_t r = vd_min_u64(len, h->cluster - in);
    while (r < len && ++idx < h->bat_entries) {
        uint32_t n = __atomic_load_n(&h->bat[idx], __ATOMIC_ACQUIRE);
        if ((n != 0) != (e != 0) ||
            (e != 0 && (uint64_t)n * h->unit != (uint64_t)e * h->unit + h->cluster))
            break;
        e = n;
        r = vd_min_u64(len, r + h->cluster);
    }
    *run = r;
}

/* Zero host bytes of an allocated cluster. */
static bool host_zero(PrlHds *h, uint64_t pos, uint64_t len, bool may_unmap, GError **error)
{
    int mode = may_unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                         : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
    if (fallocate(h->fd, mode, (off_t)pos, (off_t)len) == 0)
        return true;
    if (errno != EOPNOTSUPP && errno != EINVAL) {
        vd_set_error_errno(error, errno, "%s: zeroing 0x%" G_GINT64_MODIFIER "x", h->name, pos);
        return false;
    }
    g_autofree uint8_t *zeros = g_malloc0((size_t)vd_min_u64(len, PRL_IO_CHUNK));
    while (len > 0) {
        size_t n = (size_t)vd_min_u64(len, PRL_IO_CHUNK);
        if (!vd_host_pwrite(h->fd, h->name, zeros, n, pos, error))
            return false;
        pos += n;
        len -= n;
    }
    return true;
}

/* Copy what lies below into fresh space [host, host+len) for disk bytes at voff. */
static bool fill_below(PrlHds *h, PrlFillFn fill, void *opaque, uint64_t host, uint64_t voff,
                       uint64_t len, GError **error)
{
    if (fill == NULL || len == 0)
        return true; /* fresh space reads as zeros */
    g_autofree uint8_t *buf = g_malloc((size_t)vd_min_u64(len, PRL_IO_CHUNK));
    while (len > 0) {
        size_t n = (size_t)vd_min_u64(len, PRL_IO_CHUNK);
        if (!fill(opaque, buf, n, voff, error))
            return false;
        if (!vd_buffer_is_zero(buf, n) && !vd_host_pwrite(h->fd, h->name, buf, n, host, error))
            return false;
        host += n;
        voff += n;
        len -= n;
    }
    return true;
}

/* The first write drops a format extension (dirty bitmaps would go stale). */
static bool drop_extension(PrlHds *h, GError **error)
{
    if (h->ext_off == 0)
        return true;
    vd_put_le64(h->header + PRL_OFF_EXT_OFF, 0);
    if (!vd_host_pwrite(h->fd, h->name, h->header, PRL_HEADER_SIZE, 0, error) ||
        !vd_host_fdatasync(h->fd, h->name, error)) {
        vd_put_le64(h->header + PRL_OFF_EXT_OFF, h->ext_off);
        return false;
    }
    h->ext_off = 0;
    return true;
}

typedef struct {
    uint32_t idx;
    uint32_t entry;
} PrlBatUpdate;

static bool commit_bat(PrlHds *h, GArray *ups, GError **error)
{
    if (ups->len == 0)
        return true;
    if (!vd_host_fdatasync(h->fd, h->name, error))
        return false;
    /* Updates come in cluster order, from one contiguous write. */
    uint32_t lo = g_array_index(ups, PrlBatUpdate, 0).idx;
    uint32_t hi = g_array_index(ups, PrlBatUpdate, ups->len - 1).idx;
    size_t span = (size_t)(hi - lo + 1) * 4;
    g_autofree uint8_t *raw = g_malloc(span);
    for (uint32_t i = lo; i <= hi; i++)
        vd_put_le32(raw + (size_t)(i - lo) * 4, h->bat[i]);
    for (guint i = 0; i < ups->len; i++) {
        PrlBatUpdate *u = &g_array_index(ups, PrlBatUpdate, i);
        vd_put_le32(raw + (size_t)(u->idx - lo) * 4, u->entry);
    }
    if (!vd_host_pwrite(h->fd, h->name, raw, span, PRL_HEADER_SIZE + (uint64_t)lo * 4, error))
        return false;
    for (guint i = 0; i < ups->len; i++) {
        PrlBatUpdate *u = &g_array_index(ups, PrlBatUpdate, i);
        __atomic_store_n(&h->bat[u->idx], u->entry, __ATOMIC_RELEASE);
    }
    h->allocated += ups->len;
    return true;
}

/* A new cluster for cluster idx at the end of the data area. */
static bool alloc_cluster(VdImage *img, PrlHds *h, uint32_t idx, const uint8_t *buf, uint64_t in,
                          uint64_t n, PrlFillFn fill, void *opaque, GArray *ups, GError **error)
{
    uint64_t host = h->data_end;
    uint64_t entry = host / h->unit;
    if (entry > UINT32_MAX) {
        vd_set_error(error, EFBIG, "%s: the image cannot grow past 0x%" G_GINT64_MODIFIER "x",
                     h->name, host);
        return false;
    }
    if (!vd_image_guard_write(img, h->meta, host, h->cluster, error))
        return false;
    if (ftruncate(h->fd, (off_t)(host + h->cluster)) < 0) {
        vd_set_error_errno(error, errno, "%s: extending to %" G_GUINT64_FORMAT " bytes", h->name,
                           host + h->cluster);
        return false;
    }
    h->data_end = host + h->cluster;
    uint64_t vbase = (uint64_t)idx * h->cluster;
    if (!fill_below(h, fill, opaque, host, vbase, in, error) ||
        !fill_below(h, fill, opaque, host + in + n, vbase + in + n, h->cluster - in - n, error))
        return false;
    if (buf != NULL && !vd_host_pwrite(h->fd, h->name, buf, (size_t)n, host + in, error))
        return false;
    PrlBatUpdate u = {idx, (uint32_t)entry};
    g_array_append_val(ups, u);
    return true;
}

bool prl_hds_write(VdImage *img, PrlHds *h, const uint8_t *buf, uint64_t len, uint64_t off,
                   bool may_unmap, PrlFillFn fill, void *fill_opaque, GError **error)
{
    if (h->plain) {
        if (buf != NULL)
            return vd_host_pwrite(h->fd, h->name, buf, (size_t)len, off, error);
        return host_zero(h, off, len, may_unmap, error);
    }
    if (!drop_extension(h, error))
        return false;
    g_autoptr(GArray) ups = g_array_new(FALSE, FALSE, sizeof(PrlBatUpdate));
    bool ok = true;
    while (len > 0 && ok) {
        uint64_t idx = off / h->cluster, in = off % h->cluster;
        uint64_t n = vd_min_u64(len, h->cluster - in);
        uint32_t e = h->bat[idx];
        if (e != 0) {
            uint64_t host = (uint64_t)e * h->unit + in;
            ok = vd_image_guard_write(img, h->meta, host, n, error) &&
                 (buf != NULL ? vd_host_pwrite(h->fd, h->name, buf, (size_t)n, host, error)
                              : host_zero(h, host, n, may_unmap, error));
        } else if (buf != NULL || fill != NULL) {
            ok = alloc_cluster(img, h, (uint32_t)idx, buf, in, n, fill, fill_opaque, ups, error);
        }
        if (buf != NULL)
            buf += n;
        off += n;
        len -= n;
    }
    /* Clusters whose data made it in are published even when a later one failed. */
    GError *commit_err = NULL;
    bool committed = commit_bat(h, ups, ok ? error : &commit_err);
    g_clear_error(&commit_err);
    return ok && committed;
}

bool prl_hds_check_report(const PrlHds *h, VdCheckReport *report, GError **error)
{
    /* What qemu-img check (7.2) counts for Parallels: an image left in
     * use is a corruption, and so is a cluster that starts past the end
     * of the file (one that starts inside it and runs past is not); it
     * does not look for clusters used twice. Space past the last
     * cluster's end is leaked, counted in clusters, rounded up. */
    uint64_t size;
    if (h->plain) {
        vd_set_error(error, ENOTSUP, "%s: a plain .hds has no consistency check", h->name);
        return false;
    }
    if (!vd_host_size(h->fd, h->name, &size, error))
        return false;
    if (h->was_in_use) {
        g_ptr_array_add(report->lines, g_strdup("ERROR image was not closed correctly"));
        report->corruptions++;
    }
    uint64_t high = 0;
    report->total_clusters = h->bat_entries;
    for (uint32_t i = 0; i < h->bat_entries; i++) {
        if (h->bat[i] == 0)
            continue;
        uint64_t host = (uint64_t)h->bat[i] * h->unit;
        report->allocated_clusters++;
        if (host > size) {
            g_ptr_array_add(report->lines, g_strdup_printf("ERROR cluster %u is outside image", i));
            report->corruptions++;
        }
        high = MAX(high, host);
    }
    report->image_end_offset = high + h->cluster;
    if (size > report->image_end_offset) {
        uint64_t extra = size - report->image_end_offset;
        g_ptr_array_add(
            report->lines,
            g_strdup_printf("ERROR space leaked at the end of the image %" G_GUINT64_FORMAT,
                            extra));
        report->leaks += extra / h->cluster + (extra % h->cluster != 0);
    }
    return true;
}
