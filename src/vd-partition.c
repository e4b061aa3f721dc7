/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * MBR and GPT, as the UEFI specification (GPT) and the PC convention
 * (MBR, extended boot records) lay them out, read the way Linux's
 * block/partitions code reads them, so that pN here is sdaN there.
 */
#include "config.h"

#include <stdarg.h>
#include <string.h>
#include <zlib.h>

#include "vd-chain.h"
#include "vd-endian.h"
#include "vd-error.h"
#include "vd-partition.h"
#include "vd-readahead.h"

#define MBR_TABLE      446
#define MBR_ENTRY      16
#define MBR_SIGNATURE  510
#define MBR_TYPE_GPT   0xee
#define GPT_HEADER_MIN 92
#define GPT_ENTRY_SIZE 128
#define GPT_ARRAY_MAX  (4u << 20) /* bytes of entries we are willing to read */
#define MAX_LOGICALS   256        /* Linux: DISK_MAX_PARTS */
#define GPT_NAME_UNITS 36

typedef struct {
    VdPartitionReader read;
    void *opaque;
    uint64_t disk_size;
    unsigned ss;
    GPtrArray *parts;
    GString *why; /* what was wrong, "; "-separated */
} Parse;

static void partition_free(gpointer p)
{
    VdPartition *x = p;
    g_free(x->type);
    g_free(x->name);
    g_free(x->uuid);
    g_free(x);
}

void vd_partition_table_free(VdPartitionTable *t)
{
    if (t == NULL)
        return;
    g_ptr_array_unref(t->parts);
    g_free(t->error);
    g_free(t);
}

static void G_GNUC_PRINTF(2, 3) note(Parse *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (p->why->len > 0)
        g_string_append(p->why, "; ");
    g_string_append_vprintf(p->why, fmt, ap);
    va_end(ap);
}

static bool read_at(Parse *p, void *buf, size_t len, uint64_t off, GError **error)
{
    if (off > p->disk_size || len > p->disk_size - off) {
        memset(buf, 0, len);
        return true; /* past the end reads as zeros, like the disk does */
    }
    return p->read(p->opaque, buf, len, off, error);
}

/* Add a partition of n sectors at sector lba, as Linux would: dropped
 * when it starts past the end, truncated when it runs past it; and,
 * beyond Linux, dropped when it overlaps one already found. */
static void add_part(Parse *p, unsigned number, uint64_t lba, uint64_t n, char *type, char *name,
                     char *uuid, bool bootable)
{
    VdPartition *x = g_new0(VdPartition, 1);
    x->number = number;
    x->type = type;
    x->name = name;
    x->uuid = uuid;
    x->bootable = bootable;
    uint64_t start, length;
    if (n == 0) {
        partition_free(x);
        return;
    }
    if (__builtin_mul_overflow(lba, p->ss, &start) || start >= p->disk_size) {
        note(p, "partition %u starts past the end of the disk", number);
        partition_free(x);
        return;
    }
    if (__builtin_mul_overflow(n, p->ss, &length) || length > p->disk_size - start) {
        note(p, "partition %u runs past the end of the disk: truncated", number);
        length = p->disk_size - start;
    }
    for (guint i = 0; i < p->parts->len; i++) {
        const VdPartition *o = g_ptr_array_index(p->parts, i);
        if (start < o->start + o->length && o->start < start + length) {
            note(p, "partition %u overlaps partition %u: left out", number, o->number);
            partition_free(x);
            return;
        }
    }
    x->start = start;
    x->length = length;
    g_ptr_array_add(p->parts, x);
}

static bool mbr_is_extended(uint8_t type)
{
    return type == 0x05 || type == 0x0f || type == 0x85;
}

/* Walk the chain of extended boot records inside the extended partition
 * at [ext, ext + ext_n) sectors. */
static bool parse_extended(Parse *p, uint64_t ext, uint64_t ext_n, unsigned *next, GError **error)
{
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    uint64_t ebr = ext;
    for (unsigned hops = 0;; hops++) {
        if (*next >= 5 + MAX_LOGICALS || hops > MAX_LOGICALS) {
            note(p, "more than %u logical partitions: the rest left out", MAX_LOGICALS);
            return true;
        }
        gint64 key = (gint64)ebr;
        if (g_hash_table_contains(seen, &key)) {
            note(p, "the chain of logical partitions loops back to sector %" G_GUINT64_FORMAT, ebr);
            return true;
        }
        g_hash_table_add(seen, g_memdup2(&key, sizeof key));
        uint8_t s[512];
        uint64_t off;
        if (__builtin_mul_overflow(ebr, p->ss, &off) || off >= p->disk_size) {
            note(p, "an extended boot record at sector %" G_GUINT64_FORMAT " lies past the end",
                 ebr);
            return true;
        }
        if (!read_at(p, s, sizeof s, off, error))
            return false;
        if (s[MBR_SIGNATURE] != 0x55 || s[MBR_SIGNATURE + 1] != 0xaa) {
            note(p, "the extended boot record at sector %" G_GUINT64_FORMAT " has no signature",
                 ebr);
            return true;
        }
        const uint8_t *link = NULL;
        for (unsigned i = 0; i < 4; i++) {
            const uint8_t *e = s + MBR_TABLE + i * MBR_ENTRY;
            uint64_t rel = vd_le32(e + 8), n = vd_le32(e + 12);
            if (n == 0)
                continue;
            if (mbr_is_extended(e[4])) {
                if (link == NULL)
                    link = e;
                continue;
            }
            /* A logical partition, relative to its EBR, inside the container. */
            uint64_t lba = ebr + rel;
            if (lba < ext || lba + n > ext + ext_n) {
                note(p, "a logical partition lies outside its extended partition: left out");
                continue;
            }
            char type[8];
            g_snprintf(type, sizeof type, "0x%02x", e[4]);
            add_part(p, (*next)++, lba, n, g_strdup(type), NULL, NULL, e[0] == 0x80);
        }
        if (link == NULL)
            return true;
        /* The next EBR, relative to the start of the extended partition. */
        uint64_t rel = vd_le32(link + 8);
        if (rel >= ext_n) {
            note(p, "the next extended boot record lies outside the extended partition");
            return true;
        }
        ebr = ext + rel;
    }
}

static bool parse_mbr(Parse *p, const uint8_t *s, GError **error)
{
    unsigned next = 5;
    for (unsigned i = 0; i < 4; i++) {
        const uint8_t *e = s + MBR_TABLE + i * MBR_ENTRY;
        uint64_t lba = vd_le32(e + 8), n = vd_le32(e + 12);
        if (n == 0)
            continue;
        if (mbr_is_extended(e[4])) {
            /* The container is not shown; its logical partitions are. */
            if (!parse_extended(p, lba, n, &next, error))
                return false;
            continue;
        }
        char type[8];
        g_snprintf(type, sizeof type, "0x%02x", e[4]);
        add_part(p, i + 1, lba, n, g_strdup(type), NULL, NULL, e[0] == 0x80);
    }
    return true;
}

static char *guid_string(const uint8_t *g)
{
    char s[37];
    vd_guid_format(g, s);
    return g_strdup(s);
}

static char *gpt_name(const uint8_t *raw)
{
    gunichar2 units[GPT_NAME_UNITS + 1];
    glong n = 0;
    while (n < GPT_NAME_UNITS && vd_le16(raw + 2 * n) != 0) {
        units[n] = vd_le16(raw + 2 * n);
        n++;
    }
    if (n == 0)
        return NULL;
    char *utf8 = g_utf16_to_utf8(units, n, NULL, NULL, NULL);
    if (utf8 == NULL) {
        /* Unpaired surrogates: keep what can be kept. */
        GString *out = g_string_new(NULL);
        for (glong i = 0; i < n; i++)
            g_string_append_unichar(out,
                                    (units[i] >= 0xd800 && units[i] < 0xe000) ? 0xfffd : units[i]);
        utf8 = g_string_free(out, FALSE);
    }
    return utf8;
}

/* A GPT header at lba, checked; the entry array it describes, checked;
 * NULL (and *why set) when either is bad. */
static uint8_t *gpt_load(Parse *p, uint64_t lba, uint64_t last_lba, uint8_t *hdr, uint32_t *count,
                         const char **why, GError **error)
{
    uint64_t off = lba * p->ss;
    if (!read_at(p, hdr, p->ss, off, error))
        return NULL;
    if (memcmp(hdr, "EFI PART", 8) != 0) {
        *why = "no signature";
        return NULL;
    }
    uint32_t hsize = vd_le32(hdr + 12);
    if (hsize < GPT_HEADER_MIN || hsize > p->ss) {
        *why = "bad header size";
        return NULL;
    }
    uint32_t crc = vd_le32(hdr + 16);
    uint8_t tmp[4096];
    memcpy(tmp, hdr, hsize);
    memset(tmp + 16, 0, 4);
    if ((uint32_t)crc32(0, tmp, hsize) != crc) {
        *why = "header CRC mismatch";
        return NULL;
    }
    uint64_t my = vd_le64(hdr + 24), first = vd_le64(hdr + 40), last = vd_le64(hdr + 48);
    uint64_t entries = vd_le64(hdr + 72);
    uint32_t n = vd_le32(hdr + 80), esize = vd_le32(hdr + 84), ecrc = vd_le32(hdr + 88);
    if (my != lba || first > last || last > last_lba) {
        *why = "inconsistent header";
        return NULL;
    }
    uint64_t bytes = (uint64_t)n * esize;
    if (esize != GPT_ENTRY_SIZE || n == 0 || bytes > GPT_ARRAY_MAX || entries > last_lba ||
        entries * p->ss + bytes > p->disk_size) {
        *why = "bad partition entry array";
        return NULL;
    }
    uint8_t *array = g_malloc((size_t)bytes);
    if (!read_at(p, array, (size_t)bytes, entries * p->ss, error)) {
        g_free(array);
        return NULL;
    }
    if ((uint32_t)crc32(0, array, (uInt)bytes) != ecrc) {
        *why = "partition entry array CRC mismatch";
        g_free(array);
        return NULL;
    }
    *count = n;
    return array;
}

static bool parse_gpt(Parse *p, bool *found, GError **error)
{
    *found = false;
    uint64_t sectors = p->disk_size / p->ss;
    if (sectors < 3)
        return true;
    uint64_t last_lba = sectors - 1;
    uint8_t hdr[4096];
    uint32_t n = 0;
    const char *why_primary = NULL, *why_backup = NULL;
    g_autofree uint8_t *array = gpt_load(p, 1, last_lba, hdr, &n, &why_primary, error);
    if (array == NULL && error != NULL && *error != NULL)
        return false;
    if (array == NULL) {
        /* As Linux does: the backup header in the disk's last sector. */
        array = gpt_load(p, last_lba, last_lba, hdr, &n, &why_backup, error);
        if (array == NULL && error != NULL && *error != NULL)
            return false;
        if (array == NULL) {
            note(p,
                 "the disk is marked GPT, but the primary GPT (%s) and the backup GPT (%s) "
                 "are both unusable",
                 why_primary, why_backup);
            return true;
        }
        note(p, "primary GPT header unusable (%s): the backup header was used", why_primary);
    }
    *found = true;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = array + (size_t)i * GPT_ENTRY_SIZE;
        static const uint8_t zero[16];
        if (memcmp(e, zero, 16) == 0)
            continue;
        uint64_t first = vd_le64(e + 32), last = vd_le64(e + 40);
        if (first > last || last > last_lba) {
            note(p, "GPT entry %u lies outside the disk: left out", i + 1);
            continue;
        }
        add_part(p, i + 1, first, last - first + 1, guid_string(e), gpt_name(e + 56),
                 guid_string(e + 16), false);
    }
    return true;
}

/* A protective (or hybrid) MBR: one entry of type 0xee starting at LBA 1. */
static bool mbr_says_gpt(const uint8_t *s)
{
    for (unsigned i = 0; i < 4; i++) {
        const uint8_t *e = s + MBR_TABLE + i * MBR_ENTRY;
        if (e[4] == MBR_TYPE_GPT && vd_le32(e + 8) == 1)
            return true;
    }
    return false;
}

/* A FAT or NTFS boot sector also ends in 55 aa; Linux tells a partition
 * table by its boot indicators, which are 0 or 0x80. */
static bool mbr_plausible(const uint8_t *s)
{
    for (unsigned i = 0; i < 4; i++) {
        uint8_t boot = s[MBR_TABLE + i * MBR_ENTRY];
        if (boot != 0 && boot != 0x80)
            return false;
    }
    return true;
}

static int part_cmp(gconstpointer a, gconstpointer b)
{
    const VdPartition *x = *(VdPartition *const *)a, *y = *(VdPartition *const *)b;
    return x->number < y->number ? -1 : x->number > y->number;
}

VdPartitionTable *vd_partition_table_parse(VdPartitionReader read, void *opaque, uint64_t disk_size,
                                           unsigned logical_sector, GError **error)
{
    g_autoptr(VdPartitionTable) t = g_new0(VdPartitionTable, 1);
    t->parts = g_ptr_array_new_with_free_func(partition_free);
    t->sector_size = 512;
    Parse p = {
        .read = read, .opaque = opaque, .disk_size = disk_size, .ss = 512, .parts = t->parts};
    g_autoptr(GString) why = g_string_new(NULL);
    p.why = why;
    uint8_t s[512];
    if (disk_size < sizeof s)
        return g_steal_pointer(&t);
    if (!read_at(&p, s, sizeof s, 0, error))
        return NULL;
    if (s[MBR_SIGNATURE] != 0x55 || s[MBR_SIGNATURE + 1] != 0xaa || !mbr_plausible(s))
        return g_steal_pointer(&t);
    if (logical_sector == 4096) {
        p.ss = 4096;
    } else if (logical_sector == 0 && disk_size >= 3 * 4096) {
        /* No header at LBA 1 of 512-byte sectors but one at 4096: 4Kn. */
        uint8_t sig[8], sig4k[8];
        if (!read_at(&p, sig, 8, 512, error) || !read_at(&p, sig4k, 8, 4096, error))
            return NULL;
        if (memcmp(sig, "EFI PART", 8) != 0 && memcmp(sig4k, "EFI PART", 8) == 0)
            p.ss = 4096;
    }
    t->sector_size = p.ss;
    if (mbr_says_gpt(s)) {
        /* GPT wins over a hybrid MBR, as in Linux; a disk marked GPT whose
         * GPT is unreadable shows no partitions rather than the MBR's. */
        bool found;
        if (!parse_gpt(&p, &found, error))
            return NULL;
        if (found)
            t->kind = "gpt";
    } else {
        if (!parse_mbr(&p, s, error))
            return NULL;
        t->kind = "mbr";
    }
    g_ptr_array_sort(t->parts, part_cmp);
    if (why->len > 0)
        t->error = g_strdup(why->str);
    return g_steal_pointer(&t);
}

static bool image_reader(void *opaque, void *buf, size_t len, uint64_t offset, GError **error)
{
    return vd_image_pread(opaque, buf, len, offset, error);
}

VdPartitionTable *vd_partition_table_read(VdImage *img, unsigned logical_sector, GError **error)
{
    return vd_partition_table_parse(image_reader, img, vd_image_size(img), logical_sector, error);
}

const VdPartition *vd_partition_find(const VdPartitionTable *t, unsigned number)
{
    for (guint i = 0; i < t->parts->len; i++) {
        const VdPartition *x = g_ptr_array_index(t->parts, i);
        if (x->number == number)
            return x;
    }
    return NULL;
}

/* ---- partition views ---- */

/* img->view_of is the disk; opaque the slice's start. */
typedef struct {
    uint64_t start;
} SliceState;

static bool slice_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                               VdExtent *ext, GError **error)
{
    SliceState *s = img->opaque;
    VdChainExtent ce;
    if (!vd_chain_status(img->view_of, s->start + offset, length, flags, &ce, error))
        return false;
    *ext = (VdExtent){.length = ce.length, .fd = -1};
    switch (ce.state) {
    case VD_EXTENT_DATA:
        /* Straight from the host file of whichever layer holds it. */
        ext->state = VD_EXTENT_DATA;
        ext->fd = ce.fd;
        ext->host_offset = ce.host_offset;
        break;
    case VD_EXTENT_DATA_DECODE:
        ext->state = VD_EXTENT_DATA_DECODE;
        break;
    case VD_EXTENT_ZERO:
    case VD_EXTENT_UNALLOCATED: /* no layer has it: zeros */
        ext->state = VD_EXTENT_ZERO;
        break;
    }
    return true;
}

static bool slice_pread(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error)
{
    SliceState *s = img->opaque;
    return vd_image_pread(img->view_of, buf, len, s->start + offset, error);
}

static bool slice_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    SliceState *s = img->opaque;
    return vd_image_pwrite(img->view_of, buf, len, s->start + offset, error);
}

static bool slice_write_zeroes(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                               GError **error)
{
    SliceState *s = img->opaque;
    return vd_image_write_zeroes(img->view_of, s->start + offset, length, flags, error);
}

static bool slice_flush(VdImage *img, GError **error)
{
    return vd_image_flush(img->view_of, error);
}

static void slice_close(VdImage *img)
{
    g_free(img->opaque);
}

/* Not in the driver table: views are made, never probed. Writes are the
 * parent's, which serialises them itself. */
static const VdDriver slice_driver = {
    .name = "partition",
    .description = "a slice of another image",
    .caps = VD_CAP_WRITE,
    .close = slice_close,
    .pread = slice_pread,
    .pwrite = slice_pwrite,
    .block_status = slice_block_status,
    .flush = slice_flush,
    .write_zeroes = slice_write_zeroes,
};

VdImage *vd_image_open_slice(VdImage *parent, uint64_t start, uint64_t length, const char *name,
                             bool read_only, GError **error)
{
    uint64_t end;
    if (__builtin_add_overflow(start, length, &end) || end > vd_image_size(parent)) {
        vd_set_error(error, EINVAL, "%s: lies past the end of %s", name, parent->name);
        return NULL;
    }
    VdImage *v = vd_image_new_view(parent, &slice_driver, name, error);
    if (v == NULL)
        return NULL;
    SliceState *s = g_new0(SliceState, 1);
    s->start = start;
    v->view_of = vd_image_ref(parent);
    v->opaque = s;
    v->size = length;
    v->read_only = read_only || parent->read_only;
    v->format_read_only = parent->format_read_only;
    v->decode_unit = parent->decode_unit;
    /* Decoded data is read ahead by the parent; a second read-ahead here
     * would also miss the parent's writes. */
    vd_readahead_free(v->readahead);
    v->readahead = NULL;
    return v;
}
