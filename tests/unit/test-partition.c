/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Partition tables: MBR, extended chains, GPT, and tables that lie. */
#include "config.h"

#include <string.h>
#include <zlib.h>

#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-partition.h"

#define MIB (1024u * 1024u)

typedef struct {
    uint8_t *disk;
    uint64_t size;
} Disk;

static bool disk_read(void *opaque, void *buf, size_t len, uint64_t offset, GError **error)
{
    Disk *d = opaque;
    g_assert_cmpuint(offset + len, <=, d->size);
    memcpy(buf, d->disk + offset, len);
    return true;
}

static VdPartitionTable *parse(Disk *d, unsigned ss)
{
    g_autoptr(GError) err = NULL;
    VdPartitionTable *t = vd_partition_table_parse(disk_read, d, d->size, ss, &err);
    g_assert_no_error(err);
    g_assert_nonnull(t);
    return t;
}

static void mbr_entry(uint8_t *sector, unsigned i, uint8_t boot, uint8_t type, uint32_t lba,
                      uint32_t n)
{
    uint8_t *e = sector + 446 + 16 * i;
    e[0] = boot;
    e[4] = type;
    vd_put_le32(e + 8, lba);
    vd_put_le32(e + 12, n);
    sector[510] = 0x55;
    sector[511] = 0xaa;
}

static void check_part(const VdPartitionTable *t, unsigned n, uint64_t start, uint64_t len,
                       const char *type)
{
    const VdPartition *p = vd_partition_find(t, n);
    if (p == NULL)
        g_error("partition %u missing", n);
    g_assert_cmpuint(p->start, ==, start);
    g_assert_cmpuint(p->length, ==, len);
    g_assert_cmpstr(p->type, ==, type);
}

/* 64 MiB: p1 bootable Linux, p2 extended with two logicals, p3 swap. */
static Disk mbr_disk(void)
{
    Disk d = {g_malloc0(64 * MIB), 64 * MIB};
    mbr_entry(d.disk, 0, 0x80, 0x83, 2048, 8192);
    mbr_entry(d.disk, 1, 0, 0x05, 10240, 40960);
    mbr_entry(d.disk, 2, 0, 0x82, 51200, 4096);
    /* EBR 1 at the container's start: logical at +2048, link to EBR 2. */
    uint8_t *ebr1 = d.disk + 10240ull * 512;
    mbr_entry(ebr1, 0, 0, 0x83, 2048, 8192);
    mbr_entry(ebr1, 1, 0, 0x05, 12288, 20480);
    uint8_t *ebr2 = d.disk + (10240ull + 12288) * 512;
    mbr_entry(ebr2, 0, 0, 0x07, 2048, 16384);
    return d;
}

static void test_mbr(void)
{
    Disk d = mbr_disk();
    g_autoptr(VdPartitionTable) t = parse(&d, 0);
    g_assert_cmpstr(t->kind, ==, "mbr");
    g_assert_null(t->error);
    g_assert_cmpuint(t->parts->len, ==, 4); /* the extended container is not shown */
    check_part(t, 1, 2048 * 512ull, 8192 * 512ull, "0x83");
    g_assert_true(vd_partition_find(t, 1)->bootable);
    g_assert_null(vd_partition_find(t, 2));
    check_part(t, 3, 51200 * 512ull, 4096 * 512ull, "0x82");
    check_part(t, 5, (10240 + 2048) * 512ull, 8192 * 512ull, "0x83");
    check_part(t, 6, (10240 + 12288 + 2048) * 512ull, 16384 * 512ull, "0x07");
    g_assert_false(vd_partition_find(t, 5)->bootable);
    g_free(d.disk);
}

static void test_mbr_lies(void)
{
    Disk d = mbr_disk();
    /* The second EBR links back to the first: a loop. */
    uint8_t *ebr2 = d.disk + (10240ull + 12288) * 512;
    mbr_entry(ebr2, 1, 0, 0x05, 0, 20480);
    /* p3 runs past the end of the disk (truncated, as Linux does), p4
     * starts past it (dropped), and p1 now overlaps the container's logical. */
    mbr_entry(d.disk, 2, 0, 0x82, 120000, 100000);
    mbr_entry(d.disk, 3, 0, 0x83, 200000, 10);
    mbr_entry(d.disk, 0, 0x80, 0x83, 2048, 11000);
    g_autoptr(VdPartitionTable) t = parse(&d, 0);
    g_assert_cmpstr(t->kind, ==, "mbr");
    g_assert_nonnull(t->error);
    g_assert_nonnull(strstr(t->error, "loops"));
    g_assert_nonnull(strstr(t->error, "partition 4 starts past the end"));
    g_assert_nonnull(strstr(t->error, "partition 3 runs past the end"));
    g_assert_nonnull(strstr(t->error, "partition 5 overlaps partition 1"));
    check_part(t, 1, 2048 * 512ull, 11000 * 512ull, "0x83");
    check_part(t, 3, 120000 * 512ull, 64 * MIB - 120000 * 512ull, "0x82");
    g_assert_null(vd_partition_find(t, 4));
    g_assert_null(vd_partition_find(t, 5));
    check_part(t, 6, (10240 + 12288 + 2048) * 512ull, 16384 * 512ull, "0x07");
    g_free(d.disk);
}

static void test_no_table(void)
{
    Disk d = {g_malloc0(4 * MIB), 4 * MIB};
    g_autoptr(VdPartitionTable) t = parse(&d, 0);
    g_assert_null(t->kind);
    g_assert_cmpuint(t->parts->len, ==, 0);
    /* A FAT boot sector ends in 55 aa too, but its "boot flags" are code. */
    memcpy(d.disk, "\xeb\x3c\x90MSDOS5.0", 11);
    d.disk[446] = 0x29;
    d.disk[510] = 0x55;
    d.disk[511] = 0xaa;
    g_autoptr(VdPartitionTable) t2 = parse(&d, 0);
    g_assert_null(t2->kind);
    g_free(d.disk);
}

/* A GPT with the given entries (type byte, first, last, name) on a disk
 * of sectors of size ss; entries 0 and 2 used, 1 empty. */
typedef struct {
    uint8_t type;
    uint64_t first, last;
    const char *name;
} GptSpec;

static void gpt_header(uint8_t *h, uint64_t my, uint64_t alt, uint64_t entries, uint64_t last_lba,
                       uint32_t array_crc, unsigned ss)
{
    memset(h, 0, ss);
    memcpy(h, "EFI PART", 8);
    vd_put_le32(h + 8, 0x10000);
    vd_put_le32(h + 12, 92);
    vd_put_le64(h + 24, my);
    vd_put_le64(h + 32, alt);
    vd_put_le64(h + 40, 34);
    vd_put_le64(h + 48, last_lba - 33);
    memset(h + 56, 0x42, 16);
    vd_put_le64(h + 72, entries);
    vd_put_le32(h + 80, 128);
    vd_put_le32(h + 84, 128);
    vd_put_le32(h + 88, array_crc);
    vd_put_le32(h + 16, (uint32_t)crc32(0, h, 92));
}

static Disk gpt_disk(unsigned ss, const GptSpec *spec, unsigned n, bool hybrid)
{
    Disk d = {g_malloc0(64 * MIB), 64 * MIB};
    uint64_t last = d.size / ss - 1;
    mbr_entry(d.disk, 0, 0, 0xee, 1, (uint32_t)MIN(last, 0xffffffffu));
    if (hybrid)
        mbr_entry(d.disk, 1, 0x80, 0x83, 4096, 2048);
    uint8_t array[128 * 128] = {0};
    for (unsigned i = 0; i < n; i++) {
        if (spec[i].type == 0)
            continue;
        uint8_t *e = array + 128 * i;
        memset(e, spec[i].type, 16);
        for (unsigned k = 0; k < 16; k++)
            e[16 + k] = (uint8_t)(i * 16 + k);
        vd_put_le64(e + 32, spec[i].first);
        vd_put_le64(e + 40, spec[i].last);
        for (unsigned k = 0; spec[i].name[k]; k++)
            vd_put_le16(e + 56 + 2 * k, (uint8_t)spec[i].name[k]);
    }
    uint32_t acrc = (uint32_t)crc32(0, array, sizeof array);
    memcpy(d.disk + 2ull * ss, array, sizeof array);
    memcpy(d.disk + (last - 32) * ss, array, sizeof array);
    gpt_header(d.disk + ss, 1, last, 2, last, acrc, ss);
    gpt_header(d.disk + last * ss, last, 1, last - 32, last, acrc, ss);
    return d;
}

static const GptSpec three[] = {
    {0xaf, 2048, 4095, "EFI system"},
    {0, 0, 0, ""},
    {0x83, 4096, 20479, "root"},
};

static void test_gpt(void)
{
    Disk d = gpt_disk(512, three, 3, false);
    g_autoptr(VdPartitionTable) t = parse(&d, 0);
    g_assert_cmpstr(t->kind, ==, "gpt");
    g_assert_null(t->error);
    g_assert_cmpuint(t->parts->len, ==, 2);
    check_part(t, 1, 2048 * 512ull, 2048 * 512ull, "afafafaf-afaf-afaf-afaf-afafafafafaf");
    check_part(t, 3, 4096 * 512ull, 16384 * 512ull, "83838383-8383-8383-8383-838383838383");
    g_assert_cmpstr(vd_partition_find(t, 3)->name, ==, "root");
    g_assert_cmpstr(vd_partition_find(t, 1)->name, ==, "EFI system");
    g_assert_cmpstr(vd_partition_find(t, 1)->uuid, ==, "03020100-0504-0706-0809-0a0b0c0d0e0f");
    g_free(d.disk);

    /* A hybrid MBR: GPT wins, as in Linux. */
    d = gpt_disk(512, three, 3, true);
    g_autoptr(VdPartitionTable) h = parse(&d, 0);
    g_assert_cmpstr(h->kind, ==, "gpt");
    g_assert_cmpuint(h->parts->len, ==, 2);
    g_free(d.disk);
}

static void test_gpt_4k(void)
{
    static const GptSpec spec[] = {{0x83, 256, 4095, "data"}};
    Disk d = gpt_disk(4096, spec, 1, false);
    g_autoptr(VdPartitionTable) t = parse(&d, 0); /* found at LBA 1 of 4096-byte sectors */
    g_assert_cmpuint(t->sector_size, ==, 4096);
    check_part(t, 1, 256 * 4096ull, 3840 * 4096ull, "83838383-8383-8383-8383-838383838383");
    g_autoptr(VdPartitionTable) t2 = parse(&d, 4096); /* as a VHDX would declare it */
    check_part(t2, 1, 256 * 4096ull, 3840 * 4096ull, "83838383-8383-8383-8383-838383838383");
    g_free(d.disk);
}

static void test_gpt_fallback(void)
{
    /* Primary header CRC broken: the backup is used, and that is said. */
    Disk d = gpt_disk(512, three, 3, false);
    d.disk[512 + 60] ^= 1;
    g_autoptr(VdPartitionTable) t = parse(&d, 0);
    g_assert_cmpstr(t->kind, ==, "gpt");
    g_assert_cmpuint(t->parts->len, ==, 2);
    g_assert_nonnull(strstr(t->error, "backup"));
    /* The primary entry array broken instead. */
    g_free(d.disk);
    d = gpt_disk(512, three, 3, false);
    d.disk[2 * 512 + 70] ^= 1;
    g_autoptr(VdPartitionTable) t2 = parse(&d, 0);
    g_assert_cmpuint(t2->parts->len, ==, 2);
    g_assert_nonnull(strstr(t2->error, "entry array CRC"));
    /* Both broken: no partitions, the reason given. */
    uint64_t last = d.size / 512 - 1;
    d.disk[last * 512 + 60] ^= 1;
    g_autoptr(VdPartitionTable) t3 = parse(&d, 0);
    g_assert_null(t3->kind);
    g_assert_cmpuint(t3->parts->len, ==, 0);
    g_assert_nonnull(strstr(t3->error, "both unusable"));
    g_free(d.disk);
}

static void test_gpt_lies(void)
{
    /* Entries past the end, reversed, overlapping; a huge entry count. */
    static const GptSpec spec[] = {
        {0x83, 2048, 200000000, "past the end"},
        {0x83, 9000, 8000, "reversed"},
        {0x83, 4096, 8191, "fine"},
        {0x83, 8000, 9000, "overlaps"},
    };
    Disk d = gpt_disk(512, spec, 4, false);
    g_autoptr(VdPartitionTable) t = parse(&d, 0);
    g_assert_cmpuint(t->parts->len, ==, 1);
    check_part(t, 3, 4096 * 512ull, 4096 * 512ull, "83838383-8383-8383-8383-838383838383");
    g_assert_nonnull(strstr(t->error, "entry 1 lies outside"));
    g_assert_nonnull(strstr(t->error, "entry 2 lies outside"));
    g_assert_nonnull(strstr(t->error, "partition 4 overlaps partition 3"));
    g_free(d.disk);
    d = gpt_disk(512, three, 3, false);
    vd_put_le32(d.disk + 512 + 80, 0x7fffffff); /* entries: header CRC now wrong too */
    vd_put_le32(d.disk + 512 + 16, 0);
    vd_put_le32(d.disk + 512 + 16, (uint32_t)crc32(0, d.disk + 512, 92));
    g_autoptr(VdPartitionTable) t2 = parse(&d, 0);
    g_assert_cmpuint(t2->parts->len, ==, 2); /* from the backup */
    g_free(d.disk);
}

/* Random damage to every byte of the tables: errors are fine, crashes and
 * hangs are not. */
static void test_fuzz(void)
{
    GRand *r = g_rand_new_with_seed(7);
    for (int round = 0; round < 300; round++) {
        Disk d = round % 2 ? mbr_disk() : gpt_disk(512, three, 3, round % 4 == 0);
        for (int k = 0; k < 20; k++) {
            uint64_t where = round % 2 ? (uint64_t)g_rand_int_range(r, 0, 512)
                                       : (uint64_t)g_rand_int_range(r, 0, 3 * 512);
            if (k % 5 == 0 && round % 2)
                where += (10240 + (k % 2) * 12288) * 512ull;
            d.disk[where] = (uint8_t)g_rand_int(r);
        }
        g_autoptr(VdPartitionTable) t = parse(&d, 0);
        for (guint i = 0; i < t->parts->len; i++) {
            const VdPartition *p = g_ptr_array_index(t->parts, i);
            g_assert_cmpuint(p->start + p->length, <=, d.size);
            g_assert_cmpuint(p->length, >, 0);
        }
        g_free(d.disk);
    }
    g_rand_free(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/partition/mbr", test_mbr);
    g_test_add_func("/partition/mbr-lies", test_mbr_lies);
    g_test_add_func("/partition/none", test_no_table);
    g_test_add_func("/partition/gpt", test_gpt);
    g_test_add_func("/partition/gpt-4k", test_gpt_4k);
    g_test_add_func("/partition/gpt-fallback", test_gpt_fallback);
    g_test_add_func("/partition/gpt-lies", test_gpt_lies);
    g_test_add_func("/partition/fuzz", test_fuzz);
    return g_test_run();
}
