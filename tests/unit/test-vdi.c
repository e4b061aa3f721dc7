/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The vdi driver: images built here field by field (dynamic, static,
 * differencing, odd block sizes and extra data), hostile headers, block
 * allocation and its crash-safety bookkeeping, and the real VirtualBox image
 * from $TESTDATA when present.
 */
#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "formats/vdi.h"
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
    uint32_t type;
    uint64_t disk_size;
    uint32_t block_size;
    uint32_t extra;
    uint32_t blocks;
    uint32_t off_blocks;
    uint32_t off_data;
    uint32_t header_size;
    uint32_t allocated; /* written as is; UINT32_MAX: count the map */
    uint8_t uuid[16], modify[16], link[16], parent_modify[16];
} VdiSpec;

static VdiSpec spec_default(uint32_t blocks, uint32_t block_size)
{
    VdiSpec s = {
        .type = VDI_TYPE_NORMAL,
        .disk_size = (uint64_t)blocks * block_size,
        .block_size = block_size,
        .blocks = blocks,
        .off_blocks = 0x200,
        .header_size = 0x180,
        .allocated = UINT32_MAX,
    };
    s.off_data = (uint32_t)((0x200 + blocks * 4 + 511) / 512 * 512);
    memset(s.uuid, 0x11, 16);
    memset(s.modify, 0x22, 16);
    return s;
}

/* Data block k (and its extra bytes) is filled with byte 0x40 + k. */
static uint8_t data_byte(uint32_t k)
{
    return (uint8_t)(0x40 + k);
}

/* The map has nmap entries (fewer than s->blocks for hostile counts). */
static void write_vdi_n(const char *path, const VdiSpec *s, const uint32_t *map, uint32_t nmap)
{
    uint32_t ndata = 0, count = 0;
    nmap = MIN(nmap, s->blocks);
    for (uint32_t i = 0; i < nmap; i++) {
        if (vdi_entry_allocated(map[i])) {
            ndata = MAX(ndata, map[i] + 1);
            count++;
        }
    }
    size_t slot = (size_t)s->block_size + s->extra;
    size_t total = s->off_data + ndata * slot;
    g_autofree uint8_t *f = g_malloc0(MAX(total, (size_t)s->off_blocks + (size_t)nmap * 4));
    strcpy((char *)f, "<<< Oracle VM VirtualBox Disk Image >>>\n");
    vd_put_le32(f + VDI_OFF_SIGNATURE, VDI_SIGNATURE);
    vd_put_le32(f + VDI_OFF_VERSION, 0x00010001);
    vd_put_le32(f + VDI_OFF_HEADER_SIZE, s->header_size);
    vd_put_le32(f + VDI_OFF_TYPE, s->type);
    vd_put_le32(f + VDI_OFF_BLOCKS, s->off_blocks);
    vd_put_le32(f + VDI_OFF_DATA, s->off_data);
    vd_put_le32(f + VDI_OFF_SECTOR_SIZE, 512);
    vd_put_le64(f + VDI_OFF_DISK_SIZE, s->disk_size);
    vd_put_le32(f + VDI_OFF_BLOCK_SIZE, s->block_size);
    vd_put_le32(f + VDI_OFF_BLOCK_EXTRA, s->extra);
    vd_put_le32(f + VDI_OFF_BLOCK_COUNT, s->blocks);
    vd_put_le32(f + VDI_OFF_BLOCKS_ALLOCATED, s->allocated == UINT32_MAX ? count : s->allocated);
    memcpy(f + VDI_OFF_UUID_CREATE, s->uuid, 16);
    memcpy(f + VDI_OFF_UUID_MODIFY, s->modify, 16);
    memcpy(f + VDI_OFF_UUID_LINKAGE, s->link, 16);
    memcpy(f + VDI_OFF_UUID_PARENT_MODIFY, s->parent_modify, 16);
    for (uint32_t i = 0; i < nmap; i++)
        vd_put_le32(f + s->off_blocks + i * 4, map[i]);
    for (uint32_t k = 0; k < ndata; k++)
        memset(f + s->off_data + k * slot, data_byte(k), slot);
    g_assert_true(g_file_set_contents(path, (char *)f, (gssize)total, NULL));
}

#define write_vdi(path, s, map) write_vdi_n(path, s, map, G_N_ELEMENTS(map))
#define write_named(f, name, s, map)                                                               \
    do {                                                                                           \
        g_autofree char *p_ = fpath(f, name);                                                      \
        write_vdi_n(p_, s, map, G_N_ELEMENTS(map));                                                \
    } while (0)

typedef struct {
    char *dir;
    VdContext *ctx;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    f->dir = tf_tmpdir("vdtest-vdi-XXXXXX");
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
            g_test_message("at 0x%" G_GINT64_MODIFIER "x: expected 0x%02x, got 0x%02x", off + i,
                           want, buf[i]);
            g_assert_cmpuint(buf[i], ==, want);
        }
    }
}

static uint32_t disk_le32(Fixture *f, const char *name, uint64_t off)
{
    g_autofree char *p = fpath(f, name);
    int fd = open(p, O_RDONLY);
    uint8_t b[4];
    g_assert_cmpint(pread(fd, b, 4, (off_t)off), ==, 4);
    close(fd);
    return vd_le32(b);
}

static void test_probe_and_read(Fixture *f, gconstpointer data)
{
    /* 6 blocks of 64 KiB with 512 bytes of extra data each: data, free,
     * zero, data (index 0, out of order), data, free; disk 5.5 blocks. */
    VdiSpec s = spec_default(6, 64 * KiB);
    s.extra = 512;
    s.disk_size = 5 * 64 * KiB + 32 * KiB;
    uint32_t map[6] = {1, VDI_BLOCK_FREE, VDI_BLOCK_ZERO, 0, 2, VDI_BLOCK_FREE};
    g_autofree char *p = fpath(f, "a.vdi");
    write_vdi(p, &s, map);
    g_autoptr(GError) err = NULL;
    const VdDriver *drv = vd_probe_path(f->ctx, p, &err);
    g_assert_no_error(err);
    g_assert_nonnull(drv);
    g_assert_cmpstr(drv->name, ==, "vdi");

    g_autoptr(VdImage) img = open_img(f, "a.vdi", false, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(img), ==, s.disk_size);
    assert_bytes(img, 0, 64 * KiB, data_byte(1));
    assert_bytes(img, 64 * KiB, 128 * KiB, 0);
    assert_bytes(img, 192 * KiB, 64 * KiB, data_byte(0));
    assert_bytes(img, 256 * KiB, 64 * KiB, data_byte(2));
    assert_bytes(img, 320 * KiB, 32 * KiB, 0);

    VdExtent e;
    g_assert_true(img->driver->block_status(img, 100, 6 * 64 * KiB - 100, 0, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_DATA);
    g_assert_cmpuint(e.length, ==, 64 * KiB - 100);
    g_assert_cmpuint(e.host_offset, ==, s.off_data + (64 * KiB + 512) + 512 + 100);
    g_assert_true(img->driver->block_status(img, 64 * KiB, 64 * KiB, 0, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_UNALLOCATED);
    g_assert_true(img->driver->block_status(img, 128 * KiB, 64 * KiB, 0, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_ZERO);

    uint64_t pos;
    g_assert_true(vd_chain_seek(img, 0, SEEK_HOLE, &pos, &err));
    g_assert_cmpuint(pos, ==, 64 * KiB);
    g_assert_true(vd_chain_seek(img, pos, SEEK_DATA, &pos, &err));
    g_assert_cmpuint(pos, ==, 192 * KiB);
    g_assert_true(vd_chain_seek(img, pos, SEEK_HOLE, &pos, &err));
    g_assert_cmpuint(pos, ==, 320 * KiB);

    g_autoptr(VdInfo) info = vd_info_describe(img);
    g_assert_cmpstr(vd_info_get(info, "vdi_type")->str, ==, "dynamic");
    g_assert_cmpuint(vd_info_get(info, "allocated_blocks")->u64, ==, 3);
    g_assert_cmpstr(vd_info_get(info, "uuid")->str, ==, "11111111-1111-1111-1111-111111111111");
}

/* Contiguous data blocks merge into one extent. */
static void test_merge(Fixture *f, gconstpointer data)
{
    VdiSpec s = spec_default(4, 1 * MiB);
    uint32_t map[4] = {0, 1, 2, VDI_BLOCK_FREE};
    g_autofree char *p = fpath(f, "m.vdi");
    write_vdi(p, &s, map);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "m.vdi", false, &err);
    g_assert_no_error(err);
    VdExtent e;
    g_assert_true(img->driver->block_status(img, 4096, 4 * MiB - 4096, 0, &e, &err));
    g_assert_cmpint(e.state, ==, VD_EXTENT_DATA);
    g_assert_cmpuint(e.length, ==, 3 * MiB - 4096);
}

static void expect_open_error(Fixture *f, const VdiSpec *s, const uint32_t *map, int code,
                              const char *what)
{
    g_autofree char *p = fpath(f, "bad.vdi");
    write_vdi_n(p, s, map, 4);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "bad.vdi", false, &err);
    if (img != NULL)
        g_error("%s: hostile image opened", what);
    g_assert_error(err, VD_ERROR, code);
    g_test_message("%s: %s", what, err->message);
    g_assert_nonnull(strstr(err->message, "bad.vdi"));
}

static void test_hostile(Fixture *f, gconstpointer data)
{
    uint32_t map[4] = {0, 1, VDI_BLOCK_FREE, VDI_BLOCK_ZERO};
    VdiSpec s;

    s = spec_default(4, 64 * KiB);
    s.blocks = 1u << 20; /* the map would need 4 MiB: past the end of the file */
    s.off_data = 0x200 + 4 * 4;
    expect_open_error(f, &s, map, EIO, "block map past EOF");

    s = spec_default(4, 64 * KiB);
    s.blocks = 0xfffffff0u;
    expect_open_error(f, &s, map, EIO, "absurd block count");

    s = spec_default(4, 64 * KiB);
    s.block_size = 0;
    expect_open_error(f, &s, map, EIO, "block size 0");
    s.block_size = 1000;
    expect_open_error(f, &s, map, EIO, "block size 1000");
    s.block_size = 0x80000000u;
    expect_open_error(f, &s, map, EIO, "block size 2 GiB");

    s = spec_default(4, 64 * KiB);
    s.extra = 0xfffffe00u;
    expect_open_error(f, &s, map, EIO, "absurd block extra");

    s = spec_default(4, 64 * KiB);
    s.disk_size = 4 * 64 * KiB + 1;
    expect_open_error(f, &s, map, EIO, "disk larger than its blocks");
    s.disk_size = UINT64_MAX;
    expect_open_error(f, &s, map, EIO, "disk size 2^64-1");

    s = spec_default(4, 64 * KiB);
    uint32_t dup[4] = {0, 1, 1, VDI_BLOCK_FREE};
    expect_open_error(f, &s, dup, EIO, "duplicate block map entries");

    s = spec_default(4, 64 * KiB);
    uint32_t big[4] = {0, 7, VDI_BLOCK_FREE, VDI_BLOCK_FREE};
    expect_open_error(f, &s, big, EIO, "entry beyond the block count");

    s = spec_default(4, 64 * KiB);
    s.off_blocks = 0x100;
    expect_open_error(f, &s, map, EIO, "map overlapping the header");

    s = spec_default(4, 64 * KiB);
    s.header_size = 0x7fffffff;
    expect_open_error(f, &s, map, EIO, "header size");

    s = spec_default(4, 64 * KiB);
    s.allocated = 9;
    expect_open_error(f, &s, map, EIO, "allocated count above the block count");

    s = spec_default(4, 64 * KiB);
    s.type = 77;
    expect_open_error(f, &s, map, EIO, "unknown type");

    s = spec_default(4, 64 * KiB);
    s.type = VDI_TYPE_DIFF;
    expect_open_error(f, &s, map, EIO, "differencing without parent UUID");

    /* Version 0 (VirtualBox 1.x) is refused as unsupported. */
    s = spec_default(4, 64 * KiB);
    g_autofree char *p = fpath(f, "bad.vdi");
    write_vdi(p, &s, map);
    int fd = open(p, O_WRONLY);
    uint8_t v0[4];
    vd_put_le32(v0, 0x00000001);
    g_assert_cmpint(pwrite(fd, v0, 4, VDI_OFF_VERSION), ==, 4);
    close(fd);
    g_autoptr(GError) err = NULL;
    g_assert_null(open_img(f, "bad.vdi", false, &err));
    g_assert_error(err, VD_ERROR, ENOTSUP);

    /* Data block 1 cut off by truncation. */
    s = spec_default(4, 64 * KiB);
    write_vdi(p, &s, map);
    g_assert_true(truncate(p, s.off_data + 64 * KiB + 100) == 0);
    g_clear_error(&err);
    g_assert_null(open_img(f, "bad.vdi", false, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_test_message("data past EOF: %s", err->message);

    /* Truncated in the middle of the header. */
    g_assert_true(truncate(p, 0x100) == 0);
    g_clear_error(&err);
    g_assert_null(open_img(f, "bad.vdi", false, &err));
    g_assert_nonnull(err);
}

static void put_disk_le32(Fixture *f, const char *name, uint64_t off, uint32_t v)
{
    g_autofree char *p = fpath(f, name);
    guard_patch_le32(p, off, v);
}

static GBytes *file_bytes(Fixture *f, const char *name)
{
    g_autofree char *p = fpath(f, name);
    return guard_file_bytes(p);
}

static void expect_write_refused(Fixture *f, const char *name, const char *why,
                                 const uint64_t *offs, size_t n)
{
    g_autofree char *p = fpath(f, name);
    guard_expect_refused(f->ctx, p, why, offs, n);
}

/* Headers that put the data area over the block map: readable as the map
 * says, never written. */
static void test_data_over_map(Fixture *f, gconstpointer data)
{
    /* Block 1 maps to data block 0, which the header puts on the map. */
    VdiSpec s = spec_default(4, 64 * KiB);
    uint32_t map[4] = {VDI_BLOCK_FREE, 0, VDI_BLOCK_FREE, VDI_BLOCK_ZERO};
    write_named(f, "over.vdi", &s, map);
    put_disk_le32(f, "over.vdi", VDI_OFF_DATA, s.off_blocks);
    const uint64_t offs[] = {64 * KiB, 64 * KiB + 60 * KiB, 2 * 64 * KiB, 0};
    expect_write_refused(f, "over.vdi", "*over.vdi: data area at 0x200 overlaps the block map*",
                         offs, G_N_ELEMENTS(offs));
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "over.vdi", false, &err);
    g_assert_no_error(err);
    assert_bytes(img, 64 * KiB, 4, 0xff); /* the map's first entry, read as data */

    /* Nothing allocated: the first allocation would land on the map. */
    uint32_t none[4] = {VDI_BLOCK_FREE, VDI_BLOCK_FREE, VDI_BLOCK_FREE, VDI_BLOCK_FREE};
    s = spec_default(4, 64 * KiB);
    write_named(f, "first.vdi", &s, none);
    g_autofree char *fp = fpath(f, "first.vdi");
    g_assert_cmpint(truncate(fp, 64 * KiB), ==, 0);
    put_disk_le32(f, "first.vdi", VDI_OFF_DATA, 0);
    const uint64_t first[] = {0, 3 * 64 * KiB};
    expect_write_refused(f, "first.vdi", "*first.vdi: data area at 0x0 overlaps the block map*",
                         first, G_N_ELEMENTS(first));

    /* A block count whose map runs into the data area: data block 0 (of
     * block 1) holds map entries 128..255 (free). */
    s = spec_default(4, 64 * KiB);
    write_named(f, "count.vdi", &s, map);
    put_disk_le32(f, "count.vdi", VDI_OFF_BLOCK_COUNT, 256);
    g_autofree char *cp = fpath(f, "count.vdi");
    int fd = open(cp, O_WRONLY);
    uint8_t ff[0x200];
    memset(ff, 0xff, sizeof ff);
    g_assert_cmpint(pwrite(fd, ff, sizeof ff, s.off_data), ==, sizeof ff);
    g_assert_cmpint(pwrite(fd, ff, 0x400 - 0x210, 0x210), ==, 0x400 - 0x210);
    close(fd);
    const uint64_t count[] = {64 * KiB, 0};
    expect_write_refused(f, "count.vdi", "*count.vdi: data area at 0x400 overlaps the block map*",
                         count, G_N_ELEMENTS(count));
}

/* Every data write path asks the metadata map: with the state poked so
 * that data blocks start on the map (what a driver bug would do), an
 * overwrite and an allocation are each refused before they land. */
static void test_guard_paths(Fixture *f, gconstpointer data)
{
    VdiSpec s = spec_default(4, 64 * KiB);
    uint32_t maps[2][4] = {
        {0, VDI_BLOCK_FREE, VDI_BLOCK_FREE, VDI_BLOCK_FREE}, /* overwrite of data block 0 */
        {VDI_BLOCK_FREE, VDI_BLOCK_FREE, VDI_BLOCK_FREE, VDI_BLOCK_FREE}, /* allocating it */
    };
    const uint64_t paths[] = {0, 2 * 64 * KiB};
    for (size_t i = 0; i < G_N_ELEMENTS(paths); i++) {
        write_named(f, "g.vdi", &s, maps[i]);
        g_autoptr(GBytes) before = file_bytes(f, "g.vdi");
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = open_img(f, "g.vdi", true, &err);
        g_assert_no_error(err);
        ((VdiState *)img->opaque)->off_data = s.off_blocks;
        g_test_expect_message(NULL, G_LOG_LEVEL_WARNING,
                              "*g.vdi: refused a data write at host offset 0x*block map*");
        g_assert_false(vd_image_pwrite(img, "x", 1, paths[i] + 100, &err));
        g_test_assert_expected_messages();
        g_assert_error(err, VD_ERROR, EIO);
        g_clear_error(&err);
        g_assert_false(vd_image_pwrite(img, "x", 1, 3 * 64 * KiB, &err));
        g_assert_error(err, VD_ERROR, EIO);
        g_autoptr(GBytes) after = file_bytes(f, "g.vdi");
        /* The header write that starts a session is all that changed. */
        g_assert_cmpuint(g_bytes_get_size(after), ==, g_bytes_get_size(before));
        const uint8_t *a = g_bytes_get_data(after, NULL), *b = g_bytes_get_data(before, NULL);
        g_assert_cmpint(
            memcmp(a + s.off_blocks, b + s.off_blocks, g_bytes_get_size(after) - s.off_blocks), ==,
            0);
    }
}

static void make_chain(Fixture *f, bool stale_parent);

static void test_peek(Fixture *f, gconstpointer data)
{
    VdiSpec s = spec_default(6, 64 * KiB);
    s.disk_size = 5 * 64 * KiB + 512;
    uint32_t map[6] = {1, VDI_BLOCK_FREE, VDI_BLOCK_ZERO, 0, VDI_BLOCK_FREE, VDI_BLOCK_FREE};
    g_autofree char *p = fpath(f, "p.vdi");
    write_vdi(p, &s, map);
    peek_assert_like_open(f->ctx, p);
    s.type = VDI_TYPE_FIXED;
    write_vdi(p, &s, map);
    peek_assert_like_open(f->ctx, p);

    /* A differencing image peeks without its parent. */
    make_chain(f, false);
    g_autofree char *cp = fpath(f, "child.vdi");
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) child = vd_image_peek(f->ctx, cp, &err);
    g_assert_no_error(err);
    g_assert_null(child->backing);
    g_assert_cmpuint(vd_image_size(child), ==, 4 * 64 * KiB);

    /* A header claiming a 256 MiB block map (2^26 blocks of 1 MiB). */
    uint8_t head[0x200] = {0};
    uint32_t blocks = 1u << 26;
    uint64_t off_data = 0x200 + (uint64_t)blocks * 4;
    strcpy((char *)head, "<<< Oracle VM VirtualBox Disk Image >>>\n");
    vd_put_le32(head + VDI_OFF_SIGNATURE, VDI_SIGNATURE);
    vd_put_le32(head + VDI_OFF_VERSION, 0x00010001);
    vd_put_le32(head + VDI_OFF_HEADER_SIZE, 0x180);
    vd_put_le32(head + VDI_OFF_TYPE, VDI_TYPE_NORMAL);
    vd_put_le32(head + VDI_OFF_BLOCKS, 0x200);
    vd_put_le32(head + VDI_OFF_DATA, (uint32_t)off_data);
    vd_put_le64(head + VDI_OFF_DISK_SIZE, (uint64_t)blocks * MiB);
    vd_put_le32(head + VDI_OFF_BLOCK_SIZE, MiB);
    vd_put_le32(head + VDI_OFF_BLOCK_COUNT, blocks);
    g_autofree char *hp = fpath(f, "huge.vdi");
    peek_write_sparse(hp, head, sizeof head, off_data);
    peek_assert_bounded(f->ctx, hp, (uint64_t)blocks * MiB, 64);
}

static void test_write_allocate(Fixture *f, gconstpointer data)
{
    VdiSpec s = spec_default(8, 64 * KiB);
    uint32_t map[8] = {VDI_BLOCK_FREE, 0,
                       VDI_BLOCK_ZERO, VDI_BLOCK_FREE,
                       VDI_BLOCK_FREE, VDI_BLOCK_FREE,
                       VDI_BLOCK_FREE, VDI_BLOCK_FREE};
    write_named(f, "w.vdi", &s, map);
    uint32_t old_mod = disk_le32(f, "w.vdi", VDI_OFF_UUID_MODIFY);
    g_autoptr(GError) err = NULL;
    {
        g_autoptr(VdImage) img = open_img(f, "w.vdi", true, &err);
        g_assert_no_error(err);
        uint8_t pat[5000];
        memset(pat, 0xab, sizeof pat);
        /* Into a free block, across into a zero block, into an allocated one. */
        g_assert_true(vd_image_pwrite(img, pat, sizeof pat, 2 * 64 * KiB - 1000, &err));
        g_assert_true(vd_image_pwrite(img, pat, 100, 64 * KiB + 10, &err));
        g_assert_no_error(err);
        assert_bytes(img, 64 * KiB + 10, 100, 0xab);
        assert_bytes(img, 64 * KiB + 110, 64 * KiB - 1110, data_byte(0));
        assert_bytes(img, 2 * 64 * KiB, 4000, 0xab);
        assert_bytes(img, 2 * 64 * KiB + 4000, 64 * KiB - 4000, 0);
        /* Zeroing a whole unallocated block of a base image allocates nothing. */
        g_assert_true(vd_image_write_zeroes(img, 4 * 64 * KiB, 64 * KiB, 0, &err));
        /* Zeroing part of an allocated block. */
        g_assert_true(vd_image_write_zeroes(img, 64 * KiB, 64, VD_ZERO_MAY_UNMAP, &err));
        assert_bytes(img, 64 * KiB, 64, 0);
        assert_bytes(img, 64 * KiB + 64, 46, 0xab);
        g_autoptr(VdInfo) info = vd_info_describe(img);
        g_assert_cmpuint(vd_info_get(info, "allocated_blocks")->u64, ==, 2);
    }
    g_assert_cmpuint(disk_le32(f, "w.vdi", VDI_OFF_BLOCKS_ALLOCATED), ==, 2);
    g_assert_cmpuint(disk_le32(f, "w.vdi", VDI_OFF_UUID_MODIFY), !=, old_mod);
    /* Block 2 got data block 1 (the lowest free index). */
    g_assert_cmpuint(disk_le32(f, "w.vdi", 0x200 + 2 * 4), ==, 1);
    g_assert_cmpuint(disk_le32(f, "w.vdi", 0x200 + 4 * 4), ==, VDI_BLOCK_FREE);
    g_autoptr(VdImage) img = open_img(f, "w.vdi", false, &err);
    g_assert_no_error(err);
    assert_bytes(img, 0, 64 * KiB, 0);
    assert_bytes(img, 64 * KiB, 64, 0);
    assert_bytes(img, 64 * KiB + 64, 46, 0xab);
    assert_bytes(img, 2 * 64 * KiB - 1000, 1000 + 4000, 0xab);
    assert_bytes(img, 4 * 64 * KiB, 4 * 64 * KiB, 0);
}

/* A crash between the map entry and the header count (map ahead), and one
 * before the map entry (a leaked data block past the last one in use). */
static void test_crash_leftovers(Fixture *f, gconstpointer data)
{
    VdiSpec s = spec_default(4, 64 * KiB);
    s.allocated = 1; /* stale: the map has two */
    uint32_t map[4] = {0, 1, VDI_BLOCK_FREE, VDI_BLOCK_FREE};
    write_named(f, "c.vdi", &s, map);
    /* A leaked block 2 at the end of the file, full of junk. */
    g_autofree char *p = fpath(f, "c.vdi");
    int fd = open(p, O_WRONLY);
    g_autofree uint8_t *junk = g_malloc(64 * KiB);
    memset(junk, 0x77, 64 * KiB);
    g_assert_cmpint(pwrite(fd, junk, 64 * KiB, s.off_data + 2 * 64 * KiB), ==, 64 * KiB);
    close(fd);

    g_autoptr(GError) err = NULL;
    {
        g_autoptr(VdImage) img = open_img(f, "c.vdi", true, &err);
        g_assert_no_error(err);
        g_assert_true(vd_image_pwrite(img, "x", 1, 3 * 64 * KiB + 5, &err));
        g_assert_no_error(err);
        /* The junk slot was reused and cleaned. */
        assert_bytes(img, 3 * 64 * KiB, 5, 0);
        assert_bytes(img, 3 * 64 * KiB + 6, 64 * KiB - 6, 0);
    }
    g_assert_cmpuint(disk_le32(f, "c.vdi", VDI_OFF_BLOCKS_ALLOCATED), ==, 3);
    g_assert_cmpuint(disk_le32(f, "c.vdi", 0x200 + 3 * 4), ==, 2);
}

static void test_static(Fixture *f, gconstpointer data)
{
    VdiSpec s = spec_default(3, 1 * MiB);
    s.type = VDI_TYPE_FIXED;
    uint32_t map[3] = {0, 1, 2};
    write_named(f, "s.vdi", &s, map);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "s.vdi", true, &err);
    g_assert_no_error(err);
    uint64_t bytes;
    g_assert_true(vd_chain_data_bytes(img, &bytes, &err));
    g_assert_cmpuint(bytes, ==, 3 * MiB);
    g_assert_true(vd_image_pwrite(img, "abc", 3, MiB, &err));
    assert_bytes(img, MiB + 3, 100, data_byte(1));
    g_assert_false(vd_image_truncate(img, 4 * MiB, &err));
    g_assert_error(err, VD_ERROR, ENOTSUP);
}

static void test_truncate(Fixture *f, gconstpointer data)
{
    VdiSpec s = spec_default(2, 64 * KiB);
    s.off_data = 0x400; /* room for 128 entries */
    uint32_t map[2] = {0, VDI_BLOCK_FREE};
    write_named(f, "t.vdi", &s, map);
    g_autoptr(GError) err = NULL;
    {
        g_autoptr(VdImage) img = open_img(f, "t.vdi", true, &err);
        g_assert_no_error(err);
        g_assert_true(vd_image_truncate(img, 10 * 64 * KiB + 512, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(vd_image_size(img), ==, 10 * 64 * KiB + 512);
        g_assert_true(vd_image_pwrite(img, "q", 1, 10 * 64 * KiB + 100, &err));
        g_assert_no_error(err);
        g_assert_false(vd_image_truncate(img, 200 * 64 * KiB, &err));
        g_assert_error(err, VD_ERROR, ENOTSUP);
        g_clear_error(&err);
    }
    g_autoptr(VdImage) img = open_img(f, "t.vdi", false, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(img), ==, 10 * 64 * KiB + 512);
    assert_bytes(img, 10 * 64 * KiB + 100, 1, 'q');
    assert_bytes(img, 64 * KiB, 9 * 64 * KiB, 0);
}

/* parent.vdi: blocks 0..3 data (0x40..0x43). child.vdi: block 0 its own
 * data, block 1 free (parent), block 2 zero, block 3 free. */
static void make_chain(Fixture *f, bool stale_parent)
{
    VdiSpec ps = spec_default(4, 64 * KiB);
    uint32_t pmap[4] = {0, 1, 2, 3};
    memset(ps.uuid, 0xa1, 16);
    memset(ps.modify, 0xa2, 16);
    write_named(f, "parent.vdi", &ps, pmap);

    VdiSpec cs = spec_default(4, 64 * KiB);
    cs.type = VDI_TYPE_DIFF;
    memset(cs.uuid, 0xc1, 16);
    memset(cs.modify, 0xc2, 16);
    memcpy(cs.link, ps.uuid, 16);
    memset(cs.parent_modify, stale_parent ? 0x99 : 0xa2, 16);
    uint32_t cmap[4] = {0, VDI_BLOCK_FREE, VDI_BLOCK_ZERO, VDI_BLOCK_FREE};
    write_named(f, "child.vdi", &cs, cmap);
    /* A decoy: another base image with a different UUID. */
    VdiSpec ds = spec_default(4, 64 * KiB);
    memset(ds.uuid, 0xd1, 16);
    write_named(f, "decoy.vdi", &ds, pmap);
}

static void test_differencing(Fixture *f, gconstpointer data)
{
    make_chain(f, false);
    g_autoptr(GError) err = NULL;
    {
        g_autoptr(VdImage) img = open_img(f, "child.vdi", true, &err);
        g_assert_no_error(err);
        g_assert_nonnull(img->backing);
        g_assert_cmpstr(img->backing->name, ==, "parent.vdi");
        assert_bytes(img, 0, 64 * KiB, data_byte(0));        /* own */
        assert_bytes(img, 64 * KiB, 64 * KiB, data_byte(1)); /* parent's block 1 */
        assert_bytes(img, 2 * 64 * KiB, 64 * KiB, 0);        /* zero block */
        assert_bytes(img, 3 * 64 * KiB, 64 * KiB, data_byte(3));

        VdExtent e;
        g_assert_true(img->driver->block_status(img, 64 * KiB, 64 * KiB, 0, &e, &err));
        g_assert_cmpint(e.state, ==, VD_EXTENT_UNALLOCATED);
        g_autoptr(VdInfo) info = vd_info_describe(img);
        g_assert_cmpstr(vd_info_get(info, "parent_uuid")->str, ==,
                        "a1a1a1a1-a1a1-a1a1-a1a1-a1a1a1a1a1a1");

        /* Partial write into a free block copies the parent's rest. */
        g_assert_true(vd_image_pwrite(img, "zz", 2, 64 * KiB + 100, &err));
        g_assert_no_error(err);
        assert_bytes(img, 64 * KiB, 100, data_byte(1));
        assert_bytes(img, 64 * KiB + 100, 2, 'z');
        assert_bytes(img, 64 * KiB + 102, 64 * KiB - 102, data_byte(1));
        /* Partial write into the zero block: zeros around. */
        g_assert_true(vd_image_pwrite(img, "yy", 2, 2 * 64 * KiB + 100, &err));
        assert_bytes(img, 2 * 64 * KiB, 100, 0);
        assert_bytes(img, 2 * 64 * KiB + 102, 64 * KiB - 102, 0);
        /* Zeroing a whole free block hides the parent: a ZERO entry, no data. */
        g_assert_true(vd_image_write_zeroes(img, 3 * 64 * KiB, 64 * KiB, VD_ZERO_MAY_UNMAP, &err));
        assert_bytes(img, 3 * 64 * KiB, 64 * KiB, 0);
        g_assert_true(img->driver->block_status(img, 3 * 64 * KiB, 64 * KiB, 0, &e, &err));
        g_assert_cmpint(e.state, ==, VD_EXTENT_ZERO);
    }
    g_assert_cmpuint(disk_le32(f, "child.vdi", 0x200 + 3 * 4), ==, VDI_BLOCK_ZERO);
    g_assert_cmpuint(disk_le32(f, "child.vdi", VDI_OFF_BLOCKS_ALLOCATED), ==, 3);
    g_autoptr(VdImage) img = open_img(f, "child.vdi", false, &err);
    g_assert_no_error(err);
    assert_bytes(img, 64 * KiB + 102, 64 * KiB - 102, data_byte(1));
    /* The parent is untouched. */
    g_autoptr(VdImage) par = open_img(f, "parent.vdi", false, &err);
    assert_bytes(par, 64 * KiB, 64 * KiB, data_byte(1));
}

static void test_differencing_errors(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    make_chain(f, true);
    g_assert_null(open_img(f, "child.vdi", false, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_assert_nonnull(strstr(err->message, "modified"));
    g_clear_error(&err);

    /* Writing the parent changes its modification UUID: the child refuses it. */
    make_chain(f, false);
    {
        g_autoptr(VdImage) par = open_img(f, "parent.vdi", true, &err);
        g_assert_no_error(err);
        g_assert_true(vd_image_pwrite(par, "p", 1, 0, &err));
    }
    g_assert_null(open_img(f, "child.vdi", false, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);

    /* No parent at all. */
    make_chain(f, false);
    g_autofree char *pp = fpath(f, "parent.vdi");
    g_unlink(pp);
    g_assert_null(open_img(f, "child.vdi", false, &err));
    g_assert_error(err, VD_ERROR, ENOENT);
}

/* VirtualBox's layout: the base disk in the VM's folder, its differencing
 * images in Snapshots/ below it. */
static void test_snapshots_folder(Fixture *f, gconstpointer data)
{
    make_chain(f, false);
    g_autofree char *sub = fpath(f, "Snapshots");
    g_assert_cmpint(g_mkdir(sub, 0755), ==, 0);
    g_autofree char *from = fpath(f, "child.vdi");
    g_autofree char *to = g_build_filename(sub, "{c1c1c1c1}.vdi", NULL);
    g_assert_cmpint(g_rename(from, to), ==, 0);
    g_autoptr(GError) err = NULL;
    {
        g_autoptr(VdImage) img = open_img(f, "Snapshots/{c1c1c1c1}.vdi", false, &err);
        g_assert_no_error(err);
        g_assert_cmpstr(img->backing->name, ==, "parent.vdi");
        assert_bytes(img, 64 * KiB, 64 * KiB, data_byte(1));
    }
    /* Not above IMAGEDIR: a context rooted at Snapshots/ does not look up. */
    g_autoptr(VdContext) ctx = vd_context_new(sub, &err);
    g_assert_no_error(err);
    VdOpenOptions o = {.read_only = true};
    g_assert_null(vd_image_open(ctx, to, &o, &err));
    g_assert_error(err, VD_ERROR, ENOENT);
    g_unlink(to);
    g_rmdir(sub);
}

/* Differencing images naming each other as parents (a -> c -> a, b -> a):
 * an error, not an endless search. */
static void test_uuid_loop(Fixture *f, gconstpointer data)
{
    uint32_t map[2] = {VDI_BLOCK_FREE, VDI_BLOCK_FREE};
    VdiSpec a = spec_default(2, 64 * KiB), b = spec_default(2, 64 * KiB);
    a.type = b.type = VDI_TYPE_DIFF;
    memset(a.uuid, 0xaa, 16);
    memset(b.uuid, 0xbb, 16);
    memcpy(a.link, b.uuid, 16);
    memcpy(b.link, a.uuid, 16);
    VdiSpec c = spec_default(2, 64 * KiB);
    c.type = VDI_TYPE_DIFF;
    memset(c.uuid, 0xcc, 16);
    memcpy(c.link, a.uuid, 16);
    memcpy(a.link, c.uuid, 16);
    write_named(f, "a.vdi", &a, map);
    write_named(f, "b.vdi", &b, map);
    write_named(f, "c.vdi", &c, map);
    g_autoptr(GError) err = NULL;
    g_assert_null(open_img(f, "a.vdi", false, &err));
    g_assert_error(err, VD_ERROR, ELOOP);
    g_test_message("%s", err->message);
    g_clear_error(&err);
    g_assert_null(open_img(f, "b.vdi", false, &err));
    g_assert_error(err, VD_ERROR, ELOOP);
}

/* Decompress $TESTDATA/name.gz into the fixture directory. */
static bool gunzip_testdata(Fixture *f, const char *gz, const char *out)
{
    const char *td = g_getenv("TESTDATA");
    if (td == NULL)
        return false;
    g_autofree char *src = g_build_filename(td, gz, NULL);
    if (!g_file_test(src, G_FILE_TEST_EXISTS))
        return false;
    gzFile z = gzopen(src, "rb");
    g_assert_nonnull(z);
    g_autofree char *dst = fpath(f, out);
    FILE *o = fopen(dst, "wb");
    g_assert_nonnull(o);
    char buf[65536];
    int n;
    while ((n = gzread(z, buf, sizeof buf)) > 0)
        g_assert_cmpint(fwrite(buf, 1, (size_t)n, o), ==, n);
    g_assert_cmpint(n, ==, 0);
    gzclose(z);
    fclose(o);
    return true;
}

/* basic.vdi (VirtualBox, README): 10 MiB, 1 MiB blocks, first MiB zeros,
 * then 4 KiB block i filled with byte i % 256. */
static void test_real_basic(Fixture *f, gconstpointer data)
{
    if (!gunzip_testdata(f, "basic.vdi.gz", "basic.vdi")) {
        g_test_skip("$TESTDATA/basic.vdi.gz not present");
        return;
    }
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "basic.vdi", false, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(img), ==, 10 * MiB);
    assert_bytes(img, 0, MiB, 0);
    for (uint64_t off = MiB; off < 10 * MiB; off += 4 * KiB)
        assert_bytes(img, off, 4 * KiB, (uint8_t)(off / (4 * KiB)));
    uint64_t pos;
    g_assert_true(vd_chain_seek(img, 0, SEEK_DATA, &pos, &err));
    g_assert_cmpuint(pos, ==, MiB);
    g_assert_true(vd_chain_seek(img, MiB, SEEK_HOLE, &pos, &err));
    g_assert_cmpuint(pos, ==, 10 * MiB);
}

int main(int argc, char *argv[])
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
    ADD("/vdi/probe-read", test_probe_and_read);
    ADD("/vdi/merge", test_merge);
    ADD("/vdi/hostile", test_hostile);
    ADD("/vdi/write-allocate", test_write_allocate);
    ADD("/vdi/data-over-map", test_data_over_map);
    ADD("/vdi/guard-paths", test_guard_paths);
    ADD("/vdi/peek", test_peek);
    ADD("/vdi/crash-leftovers", test_crash_leftovers);
    ADD("/vdi/static", test_static);
    ADD("/vdi/truncate", test_truncate);
    ADD("/vdi/differencing", test_differencing);
    ADD("/vdi/differencing-errors", test_differencing_errors);
    ADD("/vdi/snapshots-folder", test_snapshots_folder);
    ADD("/vdi/uuid-loop", test_uuid_loop);
    ADD("/vdi/real-basic", test_real_basic);
    return g_test_run();
}
