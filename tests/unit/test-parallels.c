/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Parallels: .hds images built here field by field (both magics, odd
 * cluster sizes), hostile headers and BATs, cluster allocation, the
 * DiskDescriptor.xml parser (good and hostile documents, snapshot chains),
 * and bundles: storages, snapshot layers, copy-on-write into the top layer.
 */
#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "formats/parallels.h"
#include "src/vd-chain.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "tests/unit/test-guard.h"
#include "tests/unit/test-peek.h"
#include "tests/unit/test-fixtures.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

typedef struct {
    bool ext;          /* WithouFreSpacExt: BAT in clusters */
    uint32_t tracks;   /* cluster size in sectors */
    uint32_t entries;  /* BAT entries */
    uint64_t sectors;  /* disk size */
    uint32_t data_off; /* sectors; 0 = computed */
    uint64_t ext_off;  /* sectors */
    uint32_t version;
    uint32_t inuse;
} HdsSpec;

static HdsSpec hds_default(bool ext, uint32_t tracks, uint32_t entries)
{
    HdsSpec s = {.ext = ext, .tracks = tracks, .entries = entries, .version = 2};
    s.sectors = (uint64_t)tracks * entries;
    /* Data area after the BAT, on the cluster grid like QEMU's. */
    uint64_t bat_end = 64 + (uint64_t)entries * 4;
    uint64_t cl = (uint64_t)tracks * 512;
    s.data_off = (uint32_t)((bat_end + cl - 1) / cl * tracks);
    return s;
}

static uint8_t cluster_byte(uint32_t k)
{
    return (uint8_t)(0x60 + k);
}

/* map[i]: 0 = unallocated, else 1 + the data cluster slot (filled with cluster_byte(slot)). */
static void write_hds(const char *path, const HdsSpec *s, const uint32_t *map, uint32_t nmap)
{
    uint64_t cl = (uint64_t)s->tracks * 512;
    uint64_t data = s->data_off ? (uint64_t)s->data_off * 512
                                : (64 + (uint64_t)s->entries * 4 + 511) / 512 * 512;
    uint32_t slots = 0;
    for (uint32_t i = 0; i < nmap; i++)
        slots = MAX(slots, map[i]);
    size_t total = (size_t)(data + slots * cl);
    total = MAX(total, (size_t)(64 + (uint64_t)nmap * 4));
    g_autofree uint8_t *f = g_malloc0(total);
    memcpy(f, s->ext ? PRL_MAGIC_EXT : PRL_MAGIC_OLD, 16);
    vd_put_le32(f + PRL_OFF_VERSION, s->version);
    vd_put_le32(f + PRL_OFF_HEADS, 16);
    vd_put_le32(f + PRL_OFF_CYLINDERS, 32);
    vd_put_le32(f + PRL_OFF_TRACKS, s->tracks);
    vd_put_le32(f + PRL_OFF_BAT_ENTRIES, s->entries);
    vd_put_le64(f + PRL_OFF_NB_SECTORS, s->sectors);
    vd_put_le32(f + PRL_OFF_INUSE, s->inuse);
    vd_put_le32(f + PRL_OFF_DATA_OFF, s->data_off);
    vd_put_le64(f + PRL_OFF_EXT_OFF, s->ext_off);
    for (uint32_t i = 0; i < nmap; i++) {
        uint64_t host = map[i] ? data + (map[i] - 1) * cl : 0;
        vd_put_le32(f + 64 + i * 4, map[i] ? (uint32_t)(host / (s->ext ? cl : 512)) : 0);
    }
    for (uint32_t k = 0; k < slots; k++)
        memset(f + data + k * cl, cluster_byte(k), cl);
    g_assert_true(g_file_set_contents(path, (char *)f, (gssize)total, NULL));
}

typedef struct {
    char *dir;
    VdContext *ctx;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    f->dir = tf_tmpdir("vdtest-prl-XXXXXX");
    g_autoptr(GError) err = NULL;
    f->ctx = vd_context_new(f->dir, &err);
    g_assert_no_error(err);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    tf_rm_rf(f->dir);
    g_free(f->dir);
    vd_context_unref(f->ctx);
}

static char *fpath(Fixture *f, const char *name)
{
    return g_build_filename(f->dir, name, NULL);
}

#define write_named(f, name, s, map)                                                               \
    do {                                                                                           \
        g_autofree char *p_ = fpath(f, name);                                                      \
        write_hds(p_, s, map, G_N_ELEMENTS(map));                                                  \
    } while (0)

static VdImage *open_img(Fixture *f, const char *name, bool rw, GError **err)
{
    g_autofree char *p = fpath(f, name);
    VdOpenOptions o = {.read_only = !rw};
    return vd_image_open(f->ctx, p, &o, err);
}

static void assert_bytes(VdImage *img, uint64_t off, size_t len, uint8_t want)
{
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *buf = g_malloc(len);
    g_assert_true(vd_image_pread(img, buf, len, off, &err));
    g_assert_no_error(err);
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != want) {
            g_test_message("%s at 0x%" G_GINT64_MODIFIER "x: expected 0x%02x, got 0x%02x",
                           img->name, off + i, want, buf[i]);
            g_assert_cmpuint(buf[i], ==, want);
        }
    }
}

static void test_hds_read(Fixture *f, gconstpointer data)
{
    for (int ext = 0; ext <= 1; ext++) {
        /* 63-sector clusters (an old Parallels size), 6 clusters, the last one cut short. */
        HdsSpec s = hds_default(ext, 63, 6);
        s.sectors = 63 * 5 + 10;
        uint32_t map[6] = {2, 0, 1, 3, 0, 4};
        write_named(f, "a.hds", &s, map);
        g_autoptr(GError) err = NULL;
        g_autofree char *p = fpath(f, "a.hds");
        const VdDriver *drv = vd_probe_path(f->ctx, p, &err);
        g_assert_nonnull(drv);
        g_assert_cmpstr(drv->name, ==, "parallels");
        peek_assert_like_open(f->ctx, p);
        g_autoptr(VdImage) img = open_img(f, "a.hds", false, &err);
        g_assert_no_error(err);
        uint64_t cl = 63 * 512;
        g_assert_cmpuint(vd_image_size(img), ==, 5 * cl + 10 * 512);
        assert_bytes(img, 0, cl, cluster_byte(1));
        assert_bytes(img, cl, cl, 0);
        assert_bytes(img, 2 * cl, cl, cluster_byte(0));
        assert_bytes(img, 3 * cl, cl, cluster_byte(2));
        assert_bytes(img, 4 * cl, cl, 0);
        assert_bytes(img, 5 * cl, 10 * 512, cluster_byte(3));
        /* Clusters 2 and 3 are not contiguous on the host (slots 0 and 2). */
        VdExtent e;
        g_assert_true(img->driver->block_status(img, 2 * cl + 5, 3 * cl, 0, &e, &err));
        g_assert_cmpint(e.state, ==, VD_EXTENT_DATA);
        g_assert_cmpuint(e.length, ==, cl - 5);
        uint64_t pos;
        g_assert_true(vd_chain_seek(img, 0, SEEK_HOLE, &pos, &err));
        g_assert_cmpuint(pos, ==, cl);
        g_autoptr(VdInfo) info = vd_info_describe(img);
        g_assert_cmpuint(vd_info_get(info, "allocated_clusters")->u64, ==, 4);
    }
}

static void expect_open_error(Fixture *f, const HdsSpec *s, const uint32_t *map, uint32_t n,
                              int code, const char *what)
{
    g_autofree char *p = fpath(f, "bad.hds");
    write_hds(p, s, map, n);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "bad.hds", false, &err);
    if (img != NULL)
        g_error("%s: hostile image opened", what);
    g_assert_error(err, VD_ERROR, code);
    g_test_message("%s: %s", what, err->message);
    g_assert_nonnull(strstr(err->message, "bad.hds"));
}

static void patch_le32(Fixture *f, const char *name, uint64_t off, uint32_t v)
{
    g_autofree char *p = fpath(f, name);
    guard_patch_le32(p, off, v);
}

static void test_hds_hostile(Fixture *f, gconstpointer data)
{
    uint32_t map[4] = {1, 0, 2, 0};
    HdsSpec s;

    s = hds_default(true, 128, 4);
    s.version = 3;
    expect_open_error(f, &s, map, 4, ENOTSUP, "version 3");

    uint32_t unallocated[4] = {0, 0, 0, 0};
    s = hds_default(true, 128, 4);
    s.tracks = 0;
    expect_open_error(f, &s, unallocated, 4, EIO, "zero cluster size");

    s = hds_default(true, 128, 4);
    s.tracks = 0x7fffffff;
    expect_open_error(f, &s, unallocated, 4, EIO, "absurd cluster size");

    s = hds_default(true, 128, 4);
    s.entries = 0x40000000;
    expect_open_error(f, &s, map, 4, EIO, "BAT past EOF");

    s = hds_default(true, 128, 4);
    s.sectors = 128 * 4 + 1;
    expect_open_error(f, &s, map, 4, EIO, "disk larger than the BAT");
    s.sectors = UINT64_MAX;
    expect_open_error(f, &s, map, 4, EIO, "disk of 2^64-1 sectors");

    /* Entries past the end of the file or used twice are readable (see
     * test_hds_unsafe for writing them). */
    g_autoptr(GError) err = NULL;

    /* BAT entry inside the header/BAT area (old magic: sectors). */
    s = hds_default(false, 128, 4);
    write_named(f, "bad.hds", &s, map);
    patch_le32(f, "bad.hds", 64 + 4, 1);
    g_assert_null(open_img(f, "bad.hds", false, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_test_message("entry below the data area: %s", err->message);
    g_clear_error(&err);

    /* Misaligned entry (old magic, one sector off the cluster grid). */
    s = hds_default(false, 128, 4);
    write_named(f, "bad.hds", &s, map);
    patch_le32(f, "bad.hds", 64, s.data_off + 1);
    g_assert_null(open_img(f, "bad.hds", false, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);

    /* Too short for a header. */
    g_autofree char *p = fpath(f, "bad.hds");
    g_assert_true(g_file_set_contents(p, PRL_MAGIC_EXT "\x02", 17, NULL));
    g_assert_null(open_img(f, "bad.hds", false, &err));
    g_assert_nonnull(err);
}

/* An image qemu-img made and qemu-io wrote (4 KiB clusters: 0x11 in
 * cluster 0, 0x22 in cluster 2), patched with bat2 as cluster 2's entry
 * (0: left alone; BAT_ENTRY0: cluster 0's; BAT_FILE_END: where the next
 * new cluster goes). A read-write open that finds it unsafe to write serves
 * it read-only with the reason: writes fail with EROFS, reads show what
 * the BAT says, the file stays as it was. */
enum { BAT_ENTRY0 = -1, BAT_FILE_END = -2 };

static void check_unsafe(Fixture *f, const char *name, int64_t bat2, const char *why,
                         uint8_t cluster2)
{
    g_autofree char *p = fpath(f, name);
    g_autofree char *create =
        g_strdup_printf("qemu-img create -q -f parallels -o cluster_size=4096 %s 64K", p);
    tf_run(create);
    g_autofree char *io = g_strdup_printf(
        "qemu-io -f parallels -c 'write -P 0x11 0 4k' -c 'write -P 0x22 8k 4k' %s", p);
    tf_run(io);
    g_autofree uint8_t *head = guard_read_host(p, 0, 64 + 16 * 4);
    g_assert_cmpuint(vd_le32(head + 64), !=, 0);
    g_assert_cmpuint(vd_le32(head + 64 + 8), !=, 0);
    struct stat st;
    g_assert_cmpint(stat(p, &st), ==, 0);
    if (bat2 == BAT_ENTRY0)
        bat2 = vd_le32(head + 64);
    else if (bat2 == BAT_FILE_END)
        bat2 = (st.st_size + 4095) / 4096;
    if (bat2 != 0)
        patch_le32(f, name, 64 + 2 * 4, (uint32_t)bat2);
    g_autofree char *before = NULL;
    gsize before_len;
    g_assert_true(g_file_get_contents(p, &before, &before_len, NULL));

    g_autoptr(GError) err = NULL;
    if (why != NULL)
        g_test_expect_message(NULL, G_LOG_LEVEL_WARNING, "*serving the image read-only*");
    g_autoptr(VdImage) img = open_img(f, name, true, &err);
    g_test_assert_expected_messages();
    g_assert_no_error(err);
    uint8_t buf[4096];
    memset(buf, 0x77, sizeof buf);
    if (why == NULL) {
        g_assert_true(vd_image_pwrite(img, buf, sizeof buf, 4 * 4096, &err));
        g_assert_no_error(err);
        assert_bytes(img, 4 * 4096, 4096, 0x77);
        return;
    }
    g_assert_false(vd_image_pwrite(img, buf, sizeof buf, 2 * 4096, &err));
    g_assert_error(err, VD_ERROR, EROFS);
    g_clear_error(&err);
    g_assert_false(vd_image_pwrite(img, buf, sizeof buf, 4 * 4096, &err));
    g_assert_error(err, VD_ERROR, EROFS);
    g_autofree char *last = vd_image_last_error(img);
    g_test_message("%s: %s", name, last);
    g_assert_nonnull(last);
    g_assert_true(g_pattern_match_simple(why, last));
    assert_bytes(img, 0, 4096, 0x11);
    assert_bytes(img, 2 * 4096, 4096, cluster2);
    g_clear_pointer(&img, vd_image_unref);
    g_autofree char *after = NULL;
    gsize after_len;
    g_assert_true(g_file_get_contents(p, &after, &after_len, NULL));
    g_assert_cmpmem(after, after_len, before, before_len);
}

static void test_hds_unsafe(Fixture *f, gconstpointer data)
{
    g_autofree char *qemu_img = g_find_program_in_path("qemu-img");
    g_autofree char *qemu_io = g_find_program_in_path("qemu-io");
    if (qemu_img == NULL || qemu_io == NULL) {
        g_test_skip("qemu-img or qemu-io not found");
        return;
    }
    check_unsafe(f, "clean.hds", 0, NULL, 0x22);
    check_unsafe(f, "shared.hds", BAT_ENTRY0, "*shared.hds: clusters 0 and 2 both map to 0x*",
                 0x11);
    /* Where the next new cluster would go, and far past it. */
    check_unsafe(f, "end.hds", BAT_FILE_END, "*end.hds: cluster 2 at 0x* lies beyond the end*", 0);
    check_unsafe(f, "far.hds", 100, "*far.hds: cluster 2 at 0x64000 lies beyond the end*", 0);
}

static void test_hds_write(Fixture *f, gconstpointer data)
{
    HdsSpec s = hds_default(true, 128, 8); /* 64 KiB clusters */
    s.ext_off = 0x1234;
    uint32_t map[8] = {0, 1, 0, 0, 0, 0, 0, 0};
    write_named(f, "w.hds", &s, map);
    g_autofree char *p = fpath(f, "w.hds");
    g_autoptr(GError) err = NULL;
    {
        g_autoptr(VdImage) img = open_img(f, "w.hds", true, &err);
        g_assert_no_error(err);
        uint8_t pat[3000];
        memset(pat, 0xab, sizeof pat);
        /* Across the end of allocated cluster 1 into unallocated cluster 2. */
        g_assert_true(vd_image_pwrite(img, pat, sizeof pat, 3 * 64 * KiB - 1000, &err));
        g_assert_no_error(err);
        g_assert_true(vd_image_pwrite(img, pat, 10, 64 * KiB, &err));
        g_assert_true(vd_image_write_zeroes(img, 5 * 64 * KiB, 64 * KiB, VD_ZERO_MAY_UNMAP, &err));
        g_assert_true(vd_image_write_zeroes(img, 64 * KiB + 5, 2, 0, &err));
        g_assert_no_error(err);
        assert_bytes(img, 64 * KiB, 5, 0xab);
        assert_bytes(img, 64 * KiB + 5, 2, 0);
        assert_bytes(img, 64 * KiB + 7, 3, 0xab);
        assert_bytes(img, 64 * KiB + 10, 64 * KiB - 1010, cluster_byte(0));
        assert_bytes(img, 2 * 64 * KiB, 64 * KiB - 1000, 0);
        assert_bytes(img, 3 * 64 * KiB - 1000, 3000, 0xab);
        assert_bytes(img, 3 * 64 * KiB + 2000, 64 * KiB - 2000, 0);
    }
    /* Two new clusters at the end of the file, the extension dropped. */
    uint64_t data_start = (uint64_t)s.data_off * 512;
    g_autofree char *buf = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(p, &buf, &len, NULL));
    g_assert_cmpuint(len, ==, data_start + 3 * 64 * KiB);
    g_assert_cmpuint(vd_le64((uint8_t *)buf + PRL_OFF_EXT_OFF), ==, 0);
    g_assert_cmpuint(vd_le32((uint8_t *)buf + 64 + 2 * 4), ==, data_start / (64 * KiB) + 1);
    g_assert_cmpuint(vd_le32((uint8_t *)buf + 64 + 3 * 4), ==, data_start / (64 * KiB) + 2);
    g_assert_cmpuint(vd_le32((uint8_t *)buf + 64 + 5 * 4), ==, 0);
    g_autoptr(VdImage) img = open_img(f, "w.hds", false, &err);
    g_assert_no_error(err);
    assert_bytes(img, 3 * 64 * KiB - 1000, 3000, 0xab);
}

/* An extended-magic image whose data area starts off the cluster grid
 * (BAT entries count clusters from the start of the file): new clusters
 * go on that grid, so their entries say where the data went. */
static void test_hds_write_offgrid(Fixture *f, gconstpointer data)
{
    HdsSpec s = hds_default(true, 8, 16); /* 4 KiB clusters */
    s.data_off = 0;                       /* computed: 0x200 */
    uint32_t map[16] = {0};
    write_named(f, "off.hds", &s, map);
    g_autoptr(GError) err = NULL;
    uint8_t pat[4096];
    memset(pat, 0x5a, sizeof pat);
    {
        g_autoptr(VdImage) img = open_img(f, "off.hds", true, &err);
        g_assert_no_error(err);
        g_assert_true(vd_image_pwrite(img, pat, sizeof pat, 3 * 4096, &err));
        g_assert_true(vd_image_pwrite(img, pat, 100, 5 * 4096 + 7, &err));
        g_assert_no_error(err);
    }
    g_autofree char *p = fpath(f, "off.hds");
    g_autofree uint8_t *bat = guard_read_host(p, 64, 16 * 4);
    g_assert_cmpuint(vd_le32(bat + 3 * 4), ==, 1); /* 0x1000: the first cluster past 0x200 */
    g_assert_cmpuint(vd_le32(bat + 5 * 4), ==, 2);
    g_autoptr(VdImage) img = open_img(f, "off.hds", false, &err);
    g_assert_no_error(err);
    assert_bytes(img, 3 * 4096, 4096, 0x5a);
    assert_bytes(img, 5 * 4096, 7, 0);
    assert_bytes(img, 5 * 4096 + 7, 100, 0x5a);
}

/* 512-byte clusters and 200 entries: the BAT (0x40 to 0x360) spans
 * clusters 0 and 1, so a BAT entry or the data area can point there. */
static HdsSpec small_clusters(void)
{
    return hds_default(true, 1, 200);
}

static void test_hds_layout(Fixture *f, gconstpointer data)
{
    HdsSpec s = small_clusters();
    uint32_t map[200] = {[0] = 1, [3] = 2};
    write_named(f, "bat.hds", &s, map);
    patch_le32(f, "bat.hds", 64 + 1 * 4, 1); /* cluster 1 at 0x200: on the BAT */
    g_autofree char *bp = fpath(f, "bat.hds");
    const uint64_t offs[] = {512, 10 * 512, 0};
    guard_expect_refused(f->ctx, bp, "*bat.hds: cluster 1 at 0x200 overlaps the BAT*", offs,
                         G_N_ELEMENTS(offs));
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "bat.hds", false, &err);
    g_assert_no_error(err);
    assert_bytes(img, 512 + 0x360 - 0x200, 0x400 - 0x360, 0); /* the BAT's tail, read as data */

    /* The header puts the data area on the BAT. */
    s = small_clusters();
    s.data_off = 1;
    uint32_t none[200] = {0};
    write_named(f, "data.hds", &s, none);
    g_autofree char *dp = fpath(f, "data.hds");
    const uint64_t first[] = {0, 100 * 512};
    guard_expect_refused(f->ctx, dp, "*data.hds: data area at 0x200 overlaps the BAT*", first,
                         G_N_ELEMENTS(first));
}

/* Every data write path asks the metadata map: with the state poked as a
 * driver bug would leave it, an overwrite and an allocation are each
 * refused before they land. */
static void test_hds_guard_paths(Fixture *f, gconstpointer data)
{
    HdsSpec s = small_clusters();
    uint32_t map[200] = {[0] = 1};
    for (int path = 0; path < 2; path++) {
        write_named(f, "g.hds", &s, map);
        g_autofree char *p = fpath(f, "g.hds");
        g_autoptr(GBytes) before = guard_file_bytes(p);
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = open_img(f, "g.hds", true, &err);
        g_assert_no_error(err);
        PrlHds *h = img->opaque;
        if (path == 0)
            h->bat[0] = 1; /* on the BAT */
        else
            h->data_end = 0; /* the next cluster on the header */
        g_test_expect_message(NULL, G_LOG_LEVEL_WARNING,
                              path == 0
                                  ? "*g.hds: refused a data write at host offset 0x200*BAT*"
                                  : "*g.hds: refused a data write at host offset 0x0+0x200: *");
        g_assert_false(vd_image_pwrite(img, "xy", 2, path == 0 ? 0 : 7 * 512, &err));
        g_test_assert_expected_messages();
        g_assert_error(err, VD_ERROR, EIO);
        g_clear_error(&err);
        g_assert_false(vd_image_pwrite(img, "xy", 2, 9 * 512, &err));
        g_assert_error(err, VD_ERROR, EIO);
        g_autoptr(GBytes) after = guard_file_bytes(p);
        g_assert_true(g_bytes_equal(before, after));
    }
}

static void test_hds_peek(Fixture *f, gconstpointer data)
{
    /* (test_hds_read checks that peek agrees with a full open.) A header claiming a 256 MiB BAT
     * (2^26 clusters of 1 MiB). */
    uint8_t head[PRL_HEADER_SIZE] = {0};
    uint32_t entries = 1u << 26;
    memcpy(head, PRL_MAGIC_EXT, 16);
    vd_put_le32(head + PRL_OFF_VERSION, 2);
    vd_put_le32(head + PRL_OFF_TRACKS, 2048);
    vd_put_le32(head + PRL_OFF_BAT_ENTRIES, entries);
    vd_put_le64(head + PRL_OFF_NB_SECTORS, (uint64_t)entries * 2048);
    g_autofree char *hp = fpath(f, "huge.hds");
    peek_write_sparse(hp, head, sizeof head, PRL_HEADER_SIZE + (uint64_t)entries * 4);
    peek_assert_bounded(f->ctx, hp, (uint64_t)entries * MiB, 64);
}

/* ---- DiskDescriptor.xml ---- */

static char *xml_head(unsigned disk_size)
{
    return g_strdup_printf(
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        "<Parallels_disk_image Version=\"1.0\">\n"
        "  <Disk_Parameters><Disk_size>%u</Disk_size><LogicSectorSize>512</LogicSectorSize>\n"
        "    <Encryption><Engine>{00000000-0000-0000-0000-000000000000}</Engine><Data></Data>"
        "</Encryption>\n"
        "    <UID>{aaaa}</UID><Name>t</Name></Disk_Parameters>\n"
        "  <StorageData>\n",
        disk_size);
}

static PrlDescriptor *parse_str(const char *xml, GError **err)
{
    return prl_descriptor_parse(xml, strlen(xml), "d.xml", err);
}

static void test_xml_parse(Fixture *f, gconstpointer data)
{
    g_autofree char *head = xml_head(2048);
    g_autofree char *xml = g_strconcat(
        head,
        "<Storage><Start>0</Start><End>1024</End><Blocksize>128</Blocksize>"
        "<Image><GUID>{B}</GUID><Type>Compressed</Type><File>a.hds</File></Image>"
        "<Image><GUID>{C}</GUID><Type>Compressed</Type><File>a.hds.c</File></Image></Storage>"
        "<Storage><Start>1024</Start><End>2048</End>"
        "<Image><GUID>{B}</GUID><Type>Plain</Type><File>b.hds</File></Image>"
        "<Image><GUID>{C}</GUID><File>b.hds.c</File></Image></Storage>"
        "</StorageData><Snapshots><Shot><GUID>{B}</GUID>"
        "<ParentGUID>{00000000-0000-0000-0000-000000000000}</ParentGUID></Shot>"
        "<Shot><GUID>{C}</GUID><ParentGUID>{b}</ParentGUID></Shot></Snapshots>"
        "</Parallels_disk_image>",
        NULL);
    g_autoptr(GError) err = NULL;
    g_autoptr(PrlDescriptor) d = parse_str(xml, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(d->disk_size, ==, 2048);
    g_assert_cmpstr(d->uid, ==, "{aaaa}");
    g_assert_cmpuint(d->storages->len, ==, 2);
    PrlDescStorage *s1 = g_ptr_array_index(d->storages, 1);
    g_assert_cmpuint(s1->start, ==, 1024);
    g_assert_cmpstr(((PrlDescImage *)g_ptr_array_index(s1->images, 1))->type, ==, "Compressed");
    g_assert_cmpstr(prl_descriptor_top(d), ==, "{C}");
    g_autoptr(GPtrArray) chain = prl_descriptor_chain(d, NULL, "d.xml", &err);
    g_assert_no_error(err);
    g_assert_cmpuint(chain->len, ==, 2);
    g_assert_cmpstr(g_ptr_array_index(chain, 1), ==, "{b}");
}

static void expect_xml_error(const char *body, const char *what)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(PrlDescriptor) d = parse_str(body, &err);
    if (d != NULL)
        g_error("%s: hostile descriptor parsed", what);
    g_assert_error(err, VD_ERROR, EIO);
    g_test_message("%s: %s", what, err->message);
    g_assert_nonnull(strstr(err->message, "d.xml"));
}

static void test_xml_hostile(Fixture *f, gconstpointer data)
{
    g_autofree char *head = xml_head(2048);
    const char *img = "<Image><GUID>{B}</GUID><File>a.hds</File></Image>";
    expect_xml_error("", "empty");
    expect_xml_error("<Parallels_disk_image>", "unterminated");
    expect_xml_error("<Other/>", "wrong root");
    expect_xml_error("<Parallels_disk_image></Parallels_disk_image>", "no disk size");
    g_autofree char *x1 = g_strconcat(head, "</StorageData></Parallels_disk_image>", NULL);
    expect_xml_error(x1, "no storage");
    g_autofree char *x2 =
        g_strconcat(head,
                    "<Storage><Start>0</Start><End>2048</End></Storage></StorageData>"
                    "</Parallels_disk_image>",
                    NULL);
    expect_xml_error(x2, "storage without image");
    g_autofree char *x3 = g_strconcat(head, "<Storage><Start>x</Start><End>2048</End>", img,
                                      "</Storage></StorageData></Parallels_disk_image>", NULL);
    expect_xml_error(x3, "bad number");
    g_autofree char *x4 =
        g_strconcat(head, "<Storage><Start>0</Start><End>99999999999999999999</End>", img,
                    "</Storage></StorageData></Parallels_disk_image>", NULL);
    expect_xml_error(x4, "number too large");
    g_autofree char *x5 = g_strconcat(head, "<Storage><Start>5</Start><End>5</End>", img,
                                      "</Storage></StorageData></Parallels_disk_image>", NULL);
    expect_xml_error(x5, "empty storage range");
    g_autofree char *x6 =
        g_strconcat(head, "<Storage><Start>0</Start><End>2048</End><Image><GUID>{B}</GUID></Image>",
                    "</Storage></StorageData></Parallels_disk_image>", NULL);
    expect_xml_error(x6, "image without file");
    /* Deep nesting and a huge text node. */
    GString *deep = g_string_new("<Parallels_disk_image>");
    for (int i = 0; i < 100; i++)
        g_string_append(deep, "<a>");
    expect_xml_error(deep->str, "deep nesting");
    g_string_free(deep, TRUE);
    GString *big = g_string_new("<Parallels_disk_image><Disk_Parameters><Name>");
    for (int i = 0; i < 70000; i++)
        g_string_append_c(big, 'x');
    g_string_append(big, "</Name></Disk_Parameters></Parallels_disk_image>");
    expect_xml_error(big->str, "huge text");
    g_string_free(big, TRUE);

    /* Snapshot chains: a loop, a missing shot, ambiguous branches. */
    g_autofree char *storage = g_strconcat(
        "<Storage><Start>0</Start><End>2048</End>", img,
        "<Image><GUID>{C}</GUID><File>c.hds</File></Image></Storage></StorageData>", NULL);
    struct {
        const char *shots;
        const char *what;
    } chains[] = {
        {"<Shot><GUID>{B}</GUID><ParentGUID>{C}</ParentGUID></Shot>"
         "<Shot><GUID>{C}</GUID><ParentGUID>{B}</ParentGUID></Shot><TopGUID>{C}</TopGUID>",
         "loop"},
        {"<Shot><GUID>{C}</GUID><ParentGUID>{X}</ParentGUID></Shot>", "missing parent shot"},
        {"<Shot><GUID>{B}</GUID></Shot><Shot><GUID>{C}</GUID></Shot>", "two tops"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(chains); i++) {
        g_autofree char *x = g_strconcat(head, storage, "<Snapshots>", chains[i].shots,
                                         "</Snapshots></Parallels_disk_image>", NULL);
        g_autoptr(GError) err = NULL;
        g_autoptr(PrlDescriptor) d = parse_str(x, &err);
        g_assert_no_error(err);
        g_autoptr(GPtrArray) chain = prl_descriptor_chain(d, NULL, "d.xml", &err);
        if (chain != NULL)
            g_error("%s: chain resolved", chains[i].what);
        g_assert_nonnull(err);
        g_test_message("%s: %s", chains[i].what, err->message);
    }
}

/* ---- bundles ---- */

/* bundle.hdd: 4 MiB in two storages of 2 MiB; base layer {B} expanding
 * (64 KiB clusters: storage 0 clusters 0 and 5 allocated, storage 1 plain),
 * snapshot layer {C} on top (storage 0: cluster 1 allocated; storage 1:
 * expanding, cluster 0 allocated). */
static void make_bundle(Fixture *f, const char *name, const char *top_xml, const char *extra_xml)
{
    g_autofree char *dir = fpath(f, name);
    g_assert_cmpint(g_mkdir(dir, 0755), ==, 0);
    HdsSpec s = hds_default(true, 128, 32);
    uint32_t base0[32] = {[0] = 1, [5] = 2};
    g_autofree char *p0 = g_build_filename(dir, "s0.hds", NULL);
    write_hds(p0, &s, base0, 32);
    uint32_t top0[32] = {[1] = 1};
    g_autofree char *p0c = g_build_filename(dir, "s0.hds.{C}", NULL);
    write_hds(p0c, &s, top0, 32);
    g_autofree char *p1 = g_build_filename(dir, "s1.hds", NULL);
    g_autofree uint8_t *plain = g_malloc(2 * MiB);
    memset(plain, 0x5a, 2 * MiB);
    g_assert_true(g_file_set_contents(p1, (char *)plain, 2 * MiB, NULL));
    uint32_t top1[32] = {[0] = 1};
    g_autofree char *p1c = g_build_filename(dir, "s1.hds.{C}", NULL);
    write_hds(p1c, &s, top1, 32);
    g_autofree char *head = xml_head(8192);
    g_autofree char *xml = g_strconcat(
        head,
        "<Storage><Start>0</Start><End>4096</End><Blocksize>128</Blocksize>"
        "<Image><GUID>{B}</GUID><Type>Compressed</Type><File>s0.hds</File></Image>"
        "<Image><GUID>{C}</GUID><Type>Compressed</Type><File>s0.hds.{C}</File></Image></Storage>"
        "<Storage><Start>4096</Start><End>8192</End><Blocksize>128</Blocksize>"
        "<Image><GUID>{B}</GUID><Type>Plain</Type><File>s1.hds</File></Image>"
        "<Image><GUID>{C}</GUID><Type>Compressed</Type><File>s1.hds.{C}</File></Image></Storage>"
        "</StorageData><Snapshots>",
        top_xml,
        "<Shot><GUID>{B}</GUID><ParentGUID>{00000000-0000-0000-0000-000000000000}</ParentGUID>"
        "</Shot><Shot><GUID>{C}</GUID><ParentGUID>{B}</ParentGUID></Shot></Snapshots>",
        extra_xml, "</Parallels_disk_image>", NULL);
    g_autofree char *xp = g_build_filename(dir, "DiskDescriptor.xml", NULL);
    g_assert_true(g_file_set_contents(xp, xml, -1, NULL));
}

static void test_bundle(Fixture *f, gconstpointer data)
{
    make_bundle(f, "b.hdd", "<TopGUID>{C}</TopGUID>", "");
    g_autofree char *bp = fpath(f, "b.hdd");
    g_autoptr(GError) err = NULL;
    const VdDriver *drv = vd_probe_path(f->ctx, bp, &err);
    g_assert_nonnull(drv);
    g_assert_cmpstr(drv->name, ==, "parallels-bundle");
    const uint64_t C = 64 * KiB;
    {
        g_autoptr(VdImage) img = open_img(f, "b.hdd", true, &err);
        g_assert_no_error(err);
        g_assert_false(img->read_only);
        g_assert_cmpuint(vd_image_size(img), ==, 4 * MiB);
        g_assert_cmpuint(img->members->len, ==, 5);
        assert_bytes(img, 0, C, cluster_byte(0));          /* base */
        assert_bytes(img, C, C, cluster_byte(0));          /* top's cluster 1 */
        assert_bytes(img, 2 * C, 3 * C, 0);                /* nowhere */
        assert_bytes(img, 5 * C, C, cluster_byte(1));      /* base */
        assert_bytes(img, 2 * MiB, C, cluster_byte(0));    /* top of storage 1 */
        assert_bytes(img, 2 * MiB + C, 2 * MiB - C, 0x5a); /* plain base */
        uint64_t pos;
        g_assert_true(vd_chain_seek(img, 0, SEEK_HOLE, &pos, &err));
        g_assert_cmpuint(pos, ==, 2 * C);
        g_assert_true(vd_chain_seek(img, pos, SEEK_DATA, &pos, &err));
        g_assert_cmpuint(pos, ==, 5 * C);
        g_assert_true(vd_chain_seek(img, 6 * C, SEEK_DATA, &pos, &err));
        g_assert_cmpuint(pos, ==, 2 * MiB);
        g_assert_true(vd_chain_seek(img, pos, SEEK_HOLE, &pos, &err));
        g_assert_cmpuint(pos, ==, 4 * MiB);

        /* Snapshots: {B} only. */
        g_autoptr(GPtrArray) snaps = vd_image_snapshots(img, &err);
        g_assert_no_error(err);
        g_assert_cmpuint(snaps->len, ==, 1);
        g_assert_cmpstr(((VdSnapshotInfo *)g_ptr_array_index(snaps, 0))->id, ==, "{B}");
        g_autoptr(VdImage) snap = vd_image_open_snapshot(img, "{B}", &err);
        g_assert_no_error(err);
        assert_bytes(snap, 0, C, cluster_byte(0));
        assert_bytes(snap, C, 4 * C, 0);
        assert_bytes(snap, 2 * MiB, 2 * MiB, 0x5a);
        g_assert_null(vd_image_open_snapshot(img, "{nope}", &err));
        g_assert_error(err, VD_ERROR, ENOENT);
        g_clear_error(&err);

        /* Writes: copy-on-write from the base into the top layer, across storages. */
        g_assert_true(vd_image_pwrite(img, "hello", 5, 5 * C + 100, &err));
        g_assert_true(vd_image_pwrite(img, "XY", 2, 2 * MiB - 1, &err));
        g_assert_true(vd_image_write_zeroes(img, 2 * MiB + 2 * C, C, VD_ZERO_MAY_UNMAP, &err));
        g_assert_no_error(err);
        assert_bytes(img, 5 * C, 100, cluster_byte(1));
        assert_bytes(img, 5 * C + 105, C - 105, cluster_byte(1));
        assert_bytes(img, 2 * MiB - C, C - 1, 0);
        assert_bytes(img, 2 * MiB - 1, 1, 'X');
        assert_bytes(img, 2 * MiB, 1, 'Y');
        assert_bytes(img, 2 * MiB + 1, C - 1, cluster_byte(0));
        assert_bytes(img, 2 * MiB + C, C, 0x5a);
        assert_bytes(img, 2 * MiB + 2 * C, C, 0);
        assert_bytes(img, 2 * MiB + 3 * C, C, 0x5a);
        /* The snapshot view did not change. */
        assert_bytes(snap, 5 * C, C, cluster_byte(1));
        assert_bytes(snap, 2 * MiB + 2 * C, C, 0x5a);
    }
    g_autoptr(VdImage) img = open_img(f, "b.hdd", false, &err);
    g_assert_no_error(err);
    assert_bytes(img, 5 * C + 105, C - 105, cluster_byte(1));
    assert_bytes(img, 2 * MiB + 2 * C, C, 0);
    g_autoptr(VdInfo) info = vd_info_describe(img);
    g_assert_cmpuint(vd_info_get(info, "storages")->u64, ==, 2);
    g_assert_cmpuint(vd_info_get(info, "layers")->u64, ==, 2);
}

/* Without <TopGUID> the top is the snapshot nobody descends from. */
static void test_bundle_top_inferred(Fixture *f, gconstpointer data)
{
    make_bundle(f, "b.hdd", "", "");
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "b.hdd", false, &err);
    g_assert_no_error(err);
    assert_bytes(img, 64 * KiB, 64 * KiB, cluster_byte(0));
}

static void replace_in_file(const char *path, const char *from, const char *to)
{
    g_autofree char *buf = NULL;
    g_assert_true(g_file_get_contents(path, &buf, NULL, NULL));
    g_autoptr(GString) s = g_string_new(buf);
    g_assert_cmpuint(g_string_replace(s, from, to, 1), ==, 1);
    g_assert_true(g_file_set_contents(path, s->str, -1, NULL));
}

static void test_bundle_hostile(Fixture *f, gconstpointer data)
{
    struct {
        const char *from, *to;
        int code;
        const char *what;
    } cases[] = {
        {"<File>s0.hds</File>", "<File>../s0.hds</File>", EIO, "file outside the bundle"},
        {"<File>s0.hds</File>", "<File>..</File>", EIO, "file .."},
        {"<File>s0.hds</File>", "<File>missing.hds</File>", ENOENT, "missing file"},
        {"<Start>4096</Start>", "<Start>4000</Start>", EIO, "storages overlapping"},
        {"<End>8192</End>", "<End>6000</End>", EIO, "storages short of the disk"},
        {"<Type>Plain</Type>", "<Type>Weird</Type>", ENOTSUP, "unknown image type"},
        {"{00000000-0000-0000-0000-000000000000}</Engine>", "{12345678-0000-0000-0000-1}</Engine>",
         ENOTSUP, "encrypted"},
        {"<TopGUID>{C}</TopGUID>", "<TopGUID>{Z}</TopGUID>", EIO, "unknown top"},
        {"<Parallels_disk_image Version", "<Parallels_disk_imag Version", EIO, "broken XML"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *name = g_strdup_printf("h%u.hdd", i);
        make_bundle(f, name, "<TopGUID>{C}</TopGUID>", "");
        g_autofree char *xp = g_build_filename(f->dir, name, "DiskDescriptor.xml", NULL);
        replace_in_file(xp, cases[i].from, cases[i].to);
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = open_img(f, name, false, &err);
        if (img != NULL)
            g_error("%s: hostile bundle opened", cases[i].what);
        g_test_message("%s: %s", cases[i].what, err->message);
        g_assert_error(err, VD_ERROR, cases[i].code);
    }
    /* A layer with a hostile header. */
    make_bundle(f, "hx.hdd", "<TopGUID>{C}</TopGUID>", "");
    g_autofree char *hp = g_build_filename(f->dir, "hx.hdd", "s0.hds.{C}", NULL);
    int fd = open(hp, O_WRONLY);
    uint8_t b[4];
    vd_put_le32(b, 0xffffffffu);
    g_assert_cmpint(pwrite(fd, b, 4, PRL_OFF_BAT_ENTRIES), ==, 4);
    close(fd);
    g_autoptr(GError) err = NULL;
    g_assert_null(open_img(f, "hx.hdd", false, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_test_message("hostile layer: %s", err->message);
    /* A directory without a descriptor is not a bundle. */
    g_autofree char *plain_dir = fpath(f, "notabundle");
    g_assert_cmpint(g_mkdir(plain_dir, 0755), ==, 0);
    g_clear_error(&err);
    g_assert_null(vd_probe_path(f->ctx, plain_dir, &err));
    g_assert_no_error(err);
}

/* A top layer whose BAT points a cluster at its own BAT: a read-write
 * open marks the bundle corrupt, nothing lands in that layer. */
static void test_bundle_layout(Fixture *f, gconstpointer data)
{
    make_bundle(f, "b.hdd", "<TopGUID>{C}</TopGUID>", "");
    HdsSpec s = hds_default(true, 1, 4096); /* storage 0: 2 MiB of 512-byte clusters */
    static uint32_t top[4096] = {[1] = 1};
    g_autofree char *lp = g_build_filename(f->dir, "b.hdd", "s0.hds.{C}", NULL);
    write_hds(lp, &s, top, 4096);
    guard_patch_le32(lp, 64 + 2 * 4, 1); /* cluster 2 at 0x200 */
    g_autofree char *bp = fpath(f, "b.hdd");
    const uint64_t offs[] = {1024, 2 * MiB + 4096, 8192};
    guard_expect_refused_in(f->ctx, bp, lp,
                            "*b.hdd/s0.hds.{C}: cluster 2 at 0x200 overlaps the BAT*", offs,
                            G_N_ELEMENTS(offs));
}

/* A top layer whose BAT is unsafe to write (a cluster used twice): the
 * read-write open serves the bundle read-only, with the reason. */
static void test_bundle_unsafe(Fixture *f, gconstpointer data)
{
    make_bundle(f, "b.hdd", "<TopGUID>{C}</TopGUID>", "");
    g_autofree char *lp = g_build_filename(f->dir, "b.hdd", "s0.hds.{C}", NULL);
    g_autofree uint8_t *bat = guard_read_host(lp, 64, 8);
    guard_patch_le32(lp, 64 + 2 * 4, vd_le32(bat + 4)); /* cluster 2 on cluster 1's */
    g_autoptr(GError) err = NULL;
    g_test_expect_message(NULL, G_LOG_LEVEL_WARNING, "*serving the image read-only*");
    g_autoptr(VdImage) img = open_img(f, "b.hdd", true, &err);
    g_test_assert_expected_messages();
    g_assert_no_error(err);
    uint8_t buf[512] = {0x77};
    g_assert_false(vd_image_pwrite(img, buf, sizeof buf, 3 * 64 * KiB, &err));
    g_assert_error(err, VD_ERROR, EROFS);
    g_autofree char *why = vd_image_last_error(img);
    g_test_message("%s", why);
    g_assert_true(g_pattern_match_simple("*s0.hds.{C}: clusters 1 and 2 both map to 0x*", why));
    assert_bytes(img, 64 * KiB, 64 * KiB, cluster_byte(0));
    assert_bytes(img, 2 * 64 * KiB, 64 * KiB, cluster_byte(0));
    assert_bytes(img, 2 * MiB, 64 * KiB, cluster_byte(0));
}

/* Two storages naming one file as their top layer would allocate at the
 * same end of the file and share its BAT: the file locks refuse the open
 * (the second opener of the file for writing). */
static void test_bundle_shared_file(Fixture *f, gconstpointer data)
{
    make_bundle(f, "b.hdd", "<TopGUID>{C}</TopGUID>", "");
    g_autofree char *xp = g_build_filename(f->dir, "b.hdd", "DiskDescriptor.xml", NULL);
    replace_in_file(xp, "<File>s1.hds.{C}</File>", "<File>s0.hds.{C}</File>");
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "b.hdd", true, &err);
    g_assert_null(img);
    g_assert_nonnull(err);
    g_test_message("%s", err->message);
    g_assert_nonnull(strstr(err->message, "s0.hds.{C}"));
}

static void test_bundle_peek(Fixture *f, gconstpointer data)
{
    make_bundle(f, "b.hdd", "<TopGUID>{C}</TopGUID>", "");
    g_autofree char *bp = fpath(f, "b.hdd");
    peek_assert_like_open(f->ctx, bp);
    /* The layers are not opened: one that is missing does not matter. */
    g_autofree char *lp = g_build_filename(bp, "s1.hds.{C}", NULL);
    g_assert_cmpint(g_unlink(lp), ==, 0);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = vd_image_peek(f->ctx, bp, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(img), ==, 4 * MiB);
    g_assert_cmpuint(img->members->len, ==, 5);
    g_clear_pointer(&img, vd_image_unref);
    /* A descriptor the open refuses before any layer is refused too. */
    g_autofree char *xp = g_build_filename(bp, "DiskDescriptor.xml", NULL);
    replace_in_file(xp, "<TopGUID>{C}</TopGUID>", "<TopGUID>{Z}</TopGUID>");
    g_assert_null(vd_image_peek(f->ctx, bp, &err));
    g_assert_error(err, VD_ERROR, EIO);
}

/* $TESTDATA/expanding.hdd (Parallels Desktop): MiB i filled with byte i. */
static void test_real_expanding(Fixture *f, gconstpointer data)
{
    const char *td = g_getenv("TESTDATA");
    g_autofree char *src = td ? g_build_filename(td, "expanding.hdd", NULL) : NULL;
    if (src == NULL || !g_file_test(src, G_FILE_TEST_IS_DIR)) {
        g_test_skip("$TESTDATA/expanding.hdd not present");
        return;
    }
    g_autofree char *dst = fpath(f, "expanding.hdd");
    g_assert_cmpint(g_mkdir(dst, 0755), ==, 0);
    g_autoptr(GDir) d = g_dir_open(src, 0, NULL);
    const char *n;
    while ((n = g_dir_read_name(d)) != NULL) {
        g_autofree char *in = g_build_filename(src, n, NULL);
        g_autofree char *out = g_build_filename(dst, n, NULL);
        if (g_str_has_suffix(out, ".gz"))
            out[strlen(out) - 3] = '\0';
        gzFile z = gzopen(in, "rb");
        g_assert_nonnull(z);
        FILE *o = fopen(out, "wb");
        char buf[65536];
        int r;
        while ((r = gzread(z, buf, sizeof buf)) > 0)
            g_assert_cmpint(fwrite(buf, 1, (size_t)r, o), ==, r);
        gzclose(z);
        fclose(o);
    }
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "expanding.hdd", false, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(img), ==, 100 * MiB);
    for (uint32_t i = 0; i < 100; i += 7)
        assert_bytes(img, (uint64_t)i * MiB, MiB, (uint8_t)i);
    assert_bytes(img, 99 * MiB, MiB, 99);
    uint64_t pos;
    g_assert_true(vd_chain_seek(img, 0, SEEK_DATA, &pos, &err));
    g_assert_cmpuint(pos, ==, MiB);
}

int main(int argc, char *argv[])
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
    ADD("/parallels/hds-read", test_hds_read);
    ADD("/parallels/hds-hostile", test_hds_hostile);
    ADD("/parallels/hds-write", test_hds_write);
    ADD("/parallels/hds-write-offgrid", test_hds_write_offgrid);
    ADD("/parallels/hds-unsafe", test_hds_unsafe);
    ADD("/parallels/hds-layout", test_hds_layout);
    ADD("/parallels/hds-guard-paths", test_hds_guard_paths);
    ADD("/parallels/hds-peek", test_hds_peek);
    ADD("/parallels/xml-parse", test_xml_parse);
    ADD("/parallels/xml-hostile", test_xml_hostile);
    ADD("/parallels/bundle", test_bundle);
    ADD("/parallels/bundle-top-inferred", test_bundle_top_inferred);
    ADD("/parallels/bundle-hostile", test_bundle_hostile);
    ADD("/parallels/bundle-layout", test_bundle_layout);
    ADD("/parallels/bundle-unsafe", test_bundle_unsafe);
    ADD("/parallels/bundle-shared-file", test_bundle_shared_file);
    ADD("/parallels/bundle-peek", test_bundle_peek);
    ADD("/parallels/real-expanding", test_real_expanding);
    return g_test_run();
}
