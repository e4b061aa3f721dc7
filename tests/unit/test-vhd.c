/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The vpc (VHD) driver through the block layer: differencing chains built
 * from the specification (QEMU cannot make them), parent locators, missing
 * or wrong parents, writes into differencing disks, size rules per
 * creator, and hostile headers.
 *
 * "test-vhd gen DIR" writes parent.vhd, child.vhd and child.expect (the
 * raw content) for the integration test.
 */
#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "src/vd-chain.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "formats/vhd.h"
#include "tests/unit/test-guard.h"
#include "tests/unit/test-peek.h"
#include "tests/unit/test-vhd-gen.h"

#define KiB       1024u
#define MiB       (1024u * 1024u)
#define DISK_SIZE (4 * MiB)
#define BLOCK     (512 * KiB)

static uint8_t pat(uint64_t off, uint8_t seed)
{
    return (uint8_t)(seed + (off >> 9) * 31 + (off & 511));
}

static const uint8_t PARENT_UUID[16] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                                        0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01};
static const uint8_t CHILD_UUID[16] = {0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0x47, 0xc8,
                                       0x89, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0};

/* Parent: blocks 0-5 fully written, 6-7 unallocated. */
static bool parent_block(void *ctx, uint32_t idx, uint8_t *bitmap, uint8_t *data)
{
    if (idx >= 6)
        return false;
    memset(bitmap, 0xff, BLOCK / 512 / 8);
    for (uint32_t i = 0; i < BLOCK; i++)
        data[i] = pat((uint64_t)idx * BLOCK + i, 0x10);
    return true;
}

/* Child: block 0 even sectors, block 2 all, block 6 first half; others
 * come from the parent. Data for all sectors of an allocated block is
 * written, so a reader that ignores the bitmap gets it wrong. */
static bool child_has(uint64_t off)
{
    uint32_t b = (uint32_t)(off / BLOCK), s = (uint32_t)(off % BLOCK / 512);
    return (b == 0 && s % 2 == 0) || b == 2 || (b == 6 && s < BLOCK / 512 / 2);
}

static bool child_block(void *ctx, uint32_t idx, uint8_t *bitmap, uint8_t *data)
{
    if (idx != 0 && idx != 2 && idx != 6)
        return false;
    for (uint32_t s = 0; s < BLOCK / 512; s++) {
        if (child_has((uint64_t)idx * BLOCK + s * 512))
            bitmap[s / 8] |= (uint8_t)(0x80 >> (s % 8));
    }
    for (uint32_t i = 0; i < BLOCK; i++)
        data[i] = pat((uint64_t)idx * BLOCK + i, 0x80);
    return true;
}

static uint8_t expected_byte(uint64_t off)
{
    if (child_has(off))
        return pat(off, 0x80);
    return off / BLOCK < 6 ? pat(off, 0x10) : 0;
}

static VhdGen parent_gen(void)
{
    VhdGen g = {.type = 3, .size = DISK_SIZE, .block_size = BLOCK, .block = parent_block};
    memcpy(g.uuid, PARENT_UUID, 16);
    return g;
}

static VhdGen child_gen(void)
{
    VhdGen g = {.type = 4,
                .size = DISK_SIZE,
                .block_size = BLOCK,
                .block = child_block,
                .w2ru = ".\\parent.vhd",
                .w2ku = "C:\\Users\\someone\\VMs\\parent.vhd",
                .parent_name = "parent.vhd"};
    memcpy(g.uuid, CHILD_UUID, 16);
    memcpy(g.parent_uuid, PARENT_UUID, 16);
    return g;
}

static char *write_gen(const char *dir, const char *name, const VhdGen *g)
{
    char *path = g_build_filename(dir, name, NULL);
    g_autoptr(GByteArray) b = vhdgen_build(g);
    g_assert_true(gen_write_file(path, b));
    return path;
}

static void check_content(VdImage *img, uint8_t (*expect)(uint64_t))
{
    g_autofree uint8_t *buf = g_malloc(DISK_SIZE);
    g_autoptr(GError) err = NULL;
    g_assert_true(vd_image_pread(img, buf, DISK_SIZE, 0, &err));
    g_assert_no_error(err);
    for (uint64_t i = 0; i < DISK_SIZE; i++) {
        if (buf[i] != expect(i)) {
            g_test_message("offset 0x%" G_GINT64_MODIFIER "x: expected 0x%02x, got 0x%02x", i,
                           expect(i), buf[i]);
            g_test_fail();
            return;
        }
    }
}

static void test_diff_read(Fixture *f, gconstpointer data)
{
    VhdGen pg = parent_gen(), cg = child_gen();
    g_autofree char *pp = write_gen(f->dir, "parent.vhd", &pg);
    g_autofree char *cp = write_gen(f->dir, "child.vhd", &cg);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = gen_open(f, cp, false, &err);
    g_assert_no_error(err);
    g_assert_nonnull(img->backing);
    g_assert_cmpstr(img->backing->driver->name, ==, "vpc");
    g_assert_cmpuint(vd_image_size(img), ==, DISK_SIZE);
    check_content(img, expected_byte);

    /* The chain: block 1 comes from the parent (depth 1), block 7 from
     * nowhere, odd sectors of block 0 from the parent. */
    VdChainExtent e;
    g_assert_true(vd_chain_status(img, BLOCK, BLOCK, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpuint(e.depth, ==, 1);
    g_assert_true(vd_chain_extent_is_data(&e));
    g_assert_true(vd_chain_status(img, 0, 1024, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpuint(e.depth, ==, 0);
    g_assert_cmpuint(e.length, ==, 512);
    g_assert_true(vd_chain_status(img, 512, 1024, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_cmpuint(e.depth, ==, 1);
    g_assert_true(vd_chain_status(img, 7 * BLOCK, BLOCK, VD_STATUS_WANT_ZERO, &e, &err));
    g_assert_false(vd_chain_extent_is_data(&e));
    uint64_t pos;
    g_assert_true(vd_chain_seek(img, 6 * BLOCK, SEEK_HOLE, &pos, &err));
    g_assert_cmpuint(pos, ==, 6 * BLOCK + BLOCK / 2);

    g_autoptr(VdInfo) info = vd_info_describe(img);
    const VdInfoEntry *t = vd_info_get(info, "disk_type");
    g_assert_nonnull(t);
    g_assert_cmpstr(t->str, ==, "differencing");
    g_assert_nonnull(vd_info_get(info, "parent_uuid"));
    g_assert_cmpuint(vd_info_get(info, "cluster_size")->u64, ==, BLOCK);
}

/* Each locator form on its own finds the parent. */
static void test_diff_locators(Fixture *f, gconstpointer data)
{
    g_autofree char *sub = g_build_filename(f->dir, "sub", NULL);
    g_assert_cmpint(g_mkdir(sub, 0755), ==, 0);
    VhdGen pg = parent_gen();
    g_autofree char *pp = write_gen(sub, "parent.vhd", &pg);
    g_autofree char *mac = g_strdup_printf("file://localhost%s", pp);
    struct {
        const char *w2ru, *w2ku, *macx, *name;
    } cases[] = {
        {".\\sub\\parent.vhd", NULL, NULL, NULL},
        {"sub\\parent.vhd", NULL, NULL, NULL},
        {NULL, NULL, mac, NULL},
        {".\\elsewhere\\gone.vhd", NULL, mac, NULL}, /* first candidate missing */
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        VhdGen cg = child_gen();
        cg.w2ru = cases[i].w2ru;
        cg.w2ku = cases[i].w2ku;
        cg.macx = cases[i].macx;
        cg.parent_name = cases[i].name;
        g_autofree char *cp = write_gen(f->dir, "child.vhd", &cg);
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = gen_open(f, cp, false, &err);
        g_assert_no_error(err);
        check_content(img, expected_byte);
    }
    /* Absolute Windows path and parent name: the last component is looked
     * for next to the child. */
    g_autofree char *pp2 = write_gen(f->dir, "parent.vhd", &pg);
    const char *w2ku[] = {"C:\\VMs\\parent.vhd", "\\\\server\\share\\parent.vhd"};
    for (size_t i = 0; i < G_N_ELEMENTS(w2ku) + 1; i++) {
        VhdGen cg = child_gen();
        cg.w2ru = NULL;
        cg.w2ku = i < G_N_ELEMENTS(w2ku) ? w2ku[i] : NULL;
        cg.parent_name = i < G_N_ELEMENTS(w2ku) ? NULL : "parent.vhd";
        g_autofree char *cp = write_gen(f->dir, "child.vhd", &cg);
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = gen_open(f, cp, false, &err);
        g_assert_no_error(err);
        check_content(img, expected_byte);
    }
}

static void test_diff_missing_parent(Fixture *f, gconstpointer data)
{
    VhdGen cg = child_gen();
    g_autofree char *cp = write_gen(f->dir, "child.vhd", &cg);
    g_autoptr(GError) err = NULL;
    g_assert_null(gen_open(f, cp, false, &err));
    g_assert_error(err, VD_ERROR, ENOENT);
    g_assert_nonnull(strstr(err->message, "parent.vhd"));
    g_clear_error(&err);

    /* No locator and no name at all: refused, not read as zeros. */
    cg.w2ru = cg.w2ku = cg.parent_name = NULL;
    g_autofree char *cp2 = write_gen(f->dir, "orphan.vhd", &cg);
    g_assert_null(gen_open(f, cp2, false, &err));
    g_assert_error(err, VD_ERROR, ENOENT);
    g_clear_error(&err);

    /* A parent with another UUID is refused. */
    VhdGen pg = parent_gen();
    pg.uuid[0] ^= 1;
    g_autofree char *pp = write_gen(f->dir, "parent.vhd", &pg);
    g_assert_null(gen_open(f, cp, false, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_assert_nonnull(strstr(err->message, "UUID"));
}

static uint8_t *model;
static uint8_t model_byte(uint64_t off)
{
    return model[off];
}

static void test_diff_write(Fixture *f, gconstpointer data)
{
    VhdGen pg = parent_gen(), cg = child_gen();
    g_autofree char *pp = write_gen(f->dir, "parent.vhd", &pg);
    g_autofree char *cp = write_gen(f->dir, "child.vhd", &cg);
    g_autofree char *parent_before = NULL;
    gsize plen;
    g_assert_true(g_file_get_contents(pp, &parent_before, &plen, NULL));
    model = g_malloc(DISK_SIZE);
    for (uint64_t i = 0; i < DISK_SIZE; i++)
        model[i] = expected_byte(i);
    GRand *r = g_rand_new_with_seed(42);
    {
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = gen_open(f, cp, true, &err);
        g_assert_no_error(err);
        g_assert_false(img->read_only);
        g_autofree uint8_t *buf = g_malloc(3 * BLOCK);
        for (int i = 0; i < 120; i++) {
            uint64_t len = (uint64_t)g_rand_int_range(r, 1, i % 10 == 0 ? 3 * BLOCK : 9000);
            uint64_t off = (uint64_t)g_rand_int_range(r, 0, (gint32)(DISK_SIZE - len));
            uint8_t v = (uint8_t)g_rand_int(r);
            for (uint64_t k = 0; k < len; k++)
                buf[k] = (uint8_t)(v + k * 3);
            if (i % 7 == 0)
                memset(buf, 0, len); /* zeros over parent data must stay zeros */
            g_assert_true(vd_image_pwrite(img, buf, len, off, &err));
            g_assert_no_error(err);
            memcpy(model + off, buf, len);
        }
        g_assert_true(vd_image_flush(img, &err));
        check_content(img, model_byte);
    }
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) again = gen_open(f, cp, false, &err);
    g_assert_no_error(err);
    check_content(again, model_byte);
    g_autofree char *parent_after = NULL;
    gsize plen2;
    g_assert_true(g_file_get_contents(pp, &parent_after, &plen2, NULL));
    g_assert_true(plen == plen2 && memcmp(parent_before, parent_after, plen) == 0);
    g_rand_free(r);
    g_clear_pointer(&model, g_free);
}

/* Creator and geometry decide the size the way qemu-img reports it. */
static void test_size_rules(Fixture *f, gconstpointer data)
{
    struct {
        const char creator[5];
        uint16_t cyl;
        uint8_t heads, secs;
        uint64_t expect;
    } cases[] = {
        {"win ", 100, 4, 17, DISK_SIZE},          {"qem2", 100, 4, 17, DISK_SIZE},
        {"d2v ", 100, 4, 17, DISK_SIZE},          {"CTXS", 100, 4, 17, DISK_SIZE},
        {"tap", 100, 4, 17, DISK_SIZE},           {"qemu", 100, 4, 17, 100 * 4 * 17 * 512},
        {"vpc ", 100, 4, 17, 100 * 4 * 17 * 512}, {"vbox", 100, 4, 17, 100 * 4 * 17 * 512},
        {"qemu", 65535, 16, 255, DISK_SIZE},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        VhdGen g = parent_gen();
        g_autoptr(GByteArray) b = vhdgen_build(&g);
        for (int copy = 0; copy < 2; copy++) {
            uint8_t *ft = copy ? b->data + b->len - 512 : b->data;
            memcpy(ft + 28, cases[i].creator, 4);
            ft[56] = (uint8_t)(cases[i].cyl >> 8);
            ft[57] = (uint8_t)cases[i].cyl;
            ft[58] = cases[i].heads;
            ft[59] = cases[i].secs;
            memset(ft + 64, 0, 4);
            uint32_t sum = 0;
            for (int k = 0; k < 512; k++)
                sum += ft[k];
            sum = ~sum;
            ft[64] = (uint8_t)(sum >> 24);
            ft[65] = (uint8_t)(sum >> 16);
            ft[66] = (uint8_t)(sum >> 8);
            ft[67] = (uint8_t)sum;
        }
        g_autofree char *p = g_build_filename(f->dir, "s.vhd", NULL);
        g_assert_true(gen_write_file(p, b));
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = gen_open(f, p, false, &err);
        g_assert_no_error(err);
        g_test_message("creator '%s' geometry %u/%u/%u", cases[i].creator, cases[i].cyl,
                       cases[i].heads, cases[i].secs);
        g_assert_cmpuint(vd_image_size(img), ==, cases[i].expect);
    }
}

typedef void (*Mutator)(GByteArray *b);

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void fix_header_sum(GByteArray *b)
{
    uint8_t *h = b->data + VHDGEN_HEADER_OFFSET;
    memset(h + 36, 0, 4);
    uint32_t sum = 0;
    for (int i = 0; i < 1024; i++)
        sum += h[i];
    put32(h + 36, ~sum);
}

static void m_footer_sum(GByteArray *b)
{
    b->data[b->len - 512 + 64] ^= 1;
    b->data[64] ^= 1;
}
static void m_header_sum(GByteArray *b)
{
    b->data[VHDGEN_HEADER_OFFSET + 36] ^= 1;
}
static void m_bat_past_eof(GByteArray *b)
{
    uint8_t *h = b->data + VHDGEN_HEADER_OFFSET;
    h[16] = 0x7f; /* table offset huge */
    fix_header_sum(b);
}
static void m_block_size_zero(GByteArray *b)
{
    put32(b->data + VHDGEN_HEADER_OFFSET + 32, 0);
    fix_header_sum(b);
}
static void m_block_size_odd(GByteArray *b)
{
    put32(b->data + VHDGEN_HEADER_OFFSET + 32, 3 * 1000);
    fix_header_sum(b);
}
static void m_block_size_huge(GByteArray *b)
{
    put32(b->data + VHDGEN_HEADER_OFFSET + 32, 1u << 31);
    fix_header_sum(b);
}
static void m_few_entries(GByteArray *b)
{
    put32(b->data + VHDGEN_HEADER_OFFSET + 28, 2);
    fix_header_sum(b);
}
static void m_header_past_eof(GByteArray *b)
{
    for (int copy = 0; copy < 2; copy++) {
        uint8_t *ft = copy ? b->data + b->len - 512 : b->data;
        put32(ft + 16, 0x7f);
        memset(ft + 64, 0, 4);
        uint32_t sum = 0;
        for (int k = 0; k < 512; k++)
            sum += ft[k];
        put32(ft + 64, ~sum);
    }
}
static void m_no_footer(GByteArray *b)
{
    memset(b->data, 0, 8);
    memset(b->data + b->len - 512, 0, 8);
}
static void m_locator_past_eof(GByteArray *b)
{
    uint8_t *e = b->data + VHDGEN_HEADER_OFFSET + 576;
    put32(e + 16, 0x7fffffff);
    fix_header_sum(b);
}
static void m_locator_huge(GByteArray *b)
{
    uint8_t *e = b->data + VHDGEN_HEADER_OFFSET + 576;
    put32(e + 8, 0xfffffff0);
    fix_header_sum(b);
}

/* Corrupt headers: open fails with an error (never a crash). */
static void test_hostile_open(Fixture *f, gconstpointer data)
{
    struct {
        const char *what;
        Mutator m;
        bool diff;
    } cases[] = {
        {"footer checksum", m_footer_sum, false},
        {"header checksum", m_header_sum, false},
        {"BAT past EOF", m_bat_past_eof, false},
        {"block size 0", m_block_size_zero, false},
        {"block size 3000", m_block_size_odd, false},
        {"block size 2G", m_block_size_huge, false},
        {"BAT too small", m_few_entries, false},
        {"header past EOF", m_header_past_eof, false},
        {"no footer", m_no_footer, false},
        {"locator past EOF", m_locator_past_eof, true},
        {"locator huge", m_locator_huge, true},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        VhdGen g = cases[i].diff ? child_gen() : parent_gen();
        g_autoptr(GByteArray) b = vhdgen_build(&g);
        cases[i].m(b);
        gen_expect_refused(f, b, "bad.vhd", "vpc", cases[i].what);
    }
}

/* A BAT entry pointing past the end: reads of that block fail with EIO. */
static void test_hostile_block(Fixture *f, gconstpointer data)
{
    VhdGen g = parent_gen();
    g_autoptr(GByteArray) b = vhdgen_build(&g);
    put32(b->data + VHDGEN_BAT_OFFSET + 4, 0x00ffffff);
    put32(b->data + VHDGEN_BAT_OFFSET + 8, 0); /* into the footer copy */
    g_autofree char *p = g_build_filename(f->dir, "bad.vhd", NULL);
    g_assert_true(gen_write_file(p, b));
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = gen_open(f, p, false, &err);
    g_assert_no_error(err);
    uint8_t buf[4096];
    g_assert_true(vd_image_pread(img, buf, sizeof buf, 0, &err));
    for (int blk = 1; blk <= 2; blk++) {
        g_assert_false(vd_image_pread(img, buf, sizeof buf, (uint64_t)blk * BLOCK, &err));
        g_assert_error(err, VD_ERROR, EIO);
        g_clear_error(&err);
    }
}

static void fix_footer_sum(uint8_t *ft)
{
    memset(ft + 64, 0, 4);
    uint32_t sum = 0;
    for (int k = 0; k < 512; k++)
        sum += ft[k];
    put32(ft + 64, ~sum);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Write b as name; offsets of the guest writes to try in want[]. */
static char *write_bytes(Fixture *f, const char *name, const GByteArray *b)
{
    char *p = g_build_filename(f->dir, name, NULL);
    g_assert_true(gen_write_file(p, b));
    return p;
}

/* BAT entries that point a block at metadata, outside the data area or
 * at another block: a read-write open marks the image corrupt, no write
 * lands, reads still work. */
static void test_block_on_metadata(Fixture *f, gconstpointer data)
{
    struct {
        const char *what;
        uint32_t entry1; /* BAT entry of block 1 (0: block 0's) */
        const char *why;
        uint64_t offs[3];
    } cases[] = {
        {"on the BAT",
         VHDGEN_BAT_OFFSET / 512,
         "*b.vhd: block 1 at 0x600 overlaps the BAT at 0x600*",
         {BLOCK, 6 * BLOCK, 0}},
        {"on the dynamic header",
         VHDGEN_HEADER_OFFSET / 512,
         "*b.vhd: block 1 at 0x200 overlaps the *",
         {BLOCK + 4096, 7 * BLOCK, 0}},
        {"shared with block 0", 0, "*b.vhd: blocks * overlap at 0x*", {BLOCK, 0, 6 * BLOCK}},
        {"past the end",
         0x00ffffff,
         "*b.vhd: block 1 at 0x1fffffe00 lies outside the file's data "
         "area*",
         {0, 6 * BLOCK, 2 * BLOCK}},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_test_message("block 1 %s", cases[i].what);
        VhdGen g = parent_gen();
        g_autoptr(GByteArray) b = vhdgen_build(&g);
        uint8_t *bat = b->data + VHDGEN_BAT_OFFSET;
        put32(bat + 4, cases[i].entry1 ? cases[i].entry1 : get32(bat));
        g_autofree char *p = write_bytes(f, "b.vhd", b);
        guard_expect_refused(f->ctx, p, cases[i].why, cases[i].offs, 3);
    }
}

/* Headers whose first allocation would overwrite metadata: the BAT inside
 * the dynamic header (its entries are written there), a BAT that the
 * header says runs over the end footer (where new blocks go), a parent
 * locator's data where the end footer is. */
static void test_allocation_on_metadata(Fixture *f, gconstpointer data)
{
    const uint64_t offs[] = {6 * BLOCK, 7 * BLOCK + 512, BLOCK};
    {
        VhdGen g = parent_gen();
        g_autoptr(GByteArray) b = vhdgen_build(&g);
        uint8_t *h = b->data + VHDGEN_HEADER_OFFSET;
        memcpy(b->data + 0x580, b->data + VHDGEN_BAT_OFFSET, 8 * 4);
        put32(h + 20, 0x580); /* table offset (low half) */
        fix_header_sum(b);
        g_autofree char *p = write_bytes(f, "in-header.vhd", b);
        guard_expect_refused(f->ctx, p,
                             "*in-header.vhd: BAT at 0x580 overlaps dynamic disk header*", offs,
                             G_N_ELEMENTS(offs));
    }
    {
        VhdGen g = parent_gen();
        g_autoptr(GByteArray) b = vhdgen_build(&g);
        put32(b->data + VHDGEN_HEADER_OFFSET + 28, 0x10000000); /* max table entries */
        fix_header_sum(b);
        g_autofree char *p = write_bytes(f, "entries.vhd", b);
        guard_expect_refused(f->ctx, p, "*entries.vhd: footer at 0x* overlaps BAT at 0x600*", offs,
                             G_N_ELEMENTS(offs));
    }
    {
        VhdGen pg = parent_gen(), cg = child_gen();
        g_autofree char *pp = write_gen(f->dir, "parent.vhd", &pg);
        g_autoptr(GByteArray) b = vhdgen_build(&cg);
        uint8_t *loc = b->data + VHDGEN_HEADER_OFFSET + 576 + 24; /* the W2ku one */
        put32(loc + 16, 0);
        put32(loc + 20, b->len - 512);
        fix_header_sum(b);
        g_autofree char *p = write_bytes(f, "loc.vhd", b);
        guard_expect_refused(f->ctx, p, "*loc.vhd: *footer* overlaps *", offs, G_N_ELEMENTS(offs));
    }
}

/* Every data write path asks the metadata map: with the state poked as a
 * driver bug would leave it, an overwrite of a dynamic disk's block, of
 * a differencing disk's block and an appended block are each refused
 * before they land. */
static void test_guard_paths(Fixture *f, gconstpointer data)
{
    VhdGen pg = parent_gen(), cg = child_gen();
    for (int path = 0; path < 3; path++) {
        g_autofree char *pp = write_gen(f->dir, "parent.vhd", &pg);
        g_autofree char *cp = write_gen(f->dir, "child.vhd", &cg);
        const char *target = path == 1 ? cp : pp;
        g_autoptr(GBytes) before = guard_file_bytes(target);
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = gen_open(f, target, true, &err);
        g_assert_no_error(err);
        VhdState *s = img->opaque;
        uint64_t at = 0;
        const char *why = "*refused a data write at host offset 0x400*dynamic disk header*";
        if (path == 2) {
            s->footer_offset = VHDGEN_BAT_OFFSET; /* appending a block here */
            at = 7 * BLOCK;
            why = "*refused a data write at host offset 0x600*BAT*";
        } else {
            s->bat[0] = VHDGEN_HEADER_OFFSET / 512;
            if (path == 1) /* the bitmap bits and the data, in one range */
                why = "*refused a data write at host offset 0x200*dynamic disk header*";
        }
        g_test_expect_message(NULL, G_LOG_LEVEL_WARNING, why);
        g_assert_false(vd_image_pwrite(img, "xy", 2, at, &err));
        g_test_assert_expected_messages();
        g_assert_error(err, VD_ERROR, EIO);
        g_clear_error(&err);
        g_assert_false(vd_image_pwrite(img, "xy", 2, 3 * BLOCK, &err));
        g_assert_error(err, VD_ERROR, EIO);
        g_autoptr(GBytes) after = guard_file_bytes(target);
        g_assert_true(g_bytes_equal(before, after));
    }
}

static void test_peek(Fixture *f, gconstpointer data)
{
    VhdGen pg = parent_gen(), cg = child_gen();
    g_autofree char *pp = write_gen(f->dir, "parent.vhd", &pg);
    g_autofree char *cp = write_gen(f->dir, "child.vhd", &cg);
    peek_assert_like_open(f->ctx, pp);
    peek_assert_like_open(f->ctx, cp);
    VhdGen fg = parent_gen();
    fg.type = 2;
    g_autofree char *fp = write_gen(f->dir, "fixed.vhd", &fg);
    peek_assert_like_open(f->ctx, fp);
    /* A damaged end footer: readable through the copy, never extended. */
    g_autoptr(GByteArray) b = vhdgen_build(&pg);
    b->data[b->len - 512 + 64] ^= 1;
    g_autofree char *dp = write_bytes(f, "damaged.vhd", b);
    peek_assert_like_open(f->ctx, dp);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) d = vd_image_peek(f->ctx, dp, &err);
    g_assert_no_error(err);
    g_assert_true(d->format_read_only);

    /* A header claiming a 256 MiB BAT (2^26 blocks of 2 MiB). */
    uint32_t n = 1u << 26;
    uint64_t size = (uint64_t)n * 2 * MiB, file = VHDGEN_BAT_OFFSET + (uint64_t)n * 4 + 512;
    uint8_t head[VHDGEN_BAT_OFFSET];
    memcpy(head, b->data, sizeof head);
    for (int k = 0; k < 8; k++)
        head[40 + k] = head[48 + k] = (uint8_t)(size >> (56 - 8 * k));
    fix_footer_sum(head);
    uint8_t *h = head + VHDGEN_HEADER_OFFSET;
    put32(h + 28, n);
    put32(h + 32, 2 * MiB);
    memset(h + 36, 0, 4);
    uint32_t sum = 0;
    for (int k = 0; k < 1024; k++)
        sum += h[k];
    put32(h + 36, ~sum);
    g_autofree char *hp = g_build_filename(f->dir, "huge.vhd", NULL);
    peek_write_sparse(hp, head, sizeof head, file);
    guard_patch(hp, file - 512, head, 512);
    peek_assert_bounded(f->ctx, hp, size, 64);
}

static int generate(const char *dir)
{
    VhdGen pg = parent_gen(), cg = child_gen();
    g_autofree char *pp = write_gen(dir, "parent.vhd", &pg);
    g_autofree char *cp = write_gen(dir, "child.vhd", &cg);
    g_autofree uint8_t *raw = g_malloc(DISK_SIZE);
    for (uint64_t i = 0; i < DISK_SIZE; i++)
        raw[i] = expected_byte(i);
    g_autofree char *ep = g_build_filename(dir, "child.expect", NULL);
    return g_file_set_contents(ep, (const char *)raw, DISK_SIZE, NULL) ? 0 : 1;
}

int main(int argc, char *argv[])
{
    if (argc == 3 && strcmp(argv[1], "gen") == 0)
        return generate(argv[2]);
    g_test_init(&argc, &argv, NULL);
    g_test_add("/vpc/diff/read", Fixture, NULL, gen_fixture_setup, test_diff_read,
               gen_fixture_teardown);
    g_test_add("/vpc/diff/locators", Fixture, NULL, gen_fixture_setup, test_diff_locators,
               gen_fixture_teardown);
    g_test_add("/vpc/diff/missing-parent", Fixture, NULL, gen_fixture_setup,
               test_diff_missing_parent, gen_fixture_teardown);
    g_test_add("/vpc/diff/write", Fixture, NULL, gen_fixture_setup, test_diff_write,
               gen_fixture_teardown);
    g_test_add("/vpc/size-rules", Fixture, NULL, gen_fixture_setup, test_size_rules,
               gen_fixture_teardown);
    g_test_add("/vpc/hostile/open", Fixture, NULL, gen_fixture_setup, test_hostile_open,
               gen_fixture_teardown);
    g_test_add("/vpc/hostile/block", Fixture, NULL, gen_fixture_setup, test_hostile_block,
               gen_fixture_teardown);
    g_test_add("/vpc/guard/block-on-metadata", Fixture, NULL, gen_fixture_setup,
               test_block_on_metadata, gen_fixture_teardown);
    g_test_add("/vpc/guard/allocation-on-metadata", Fixture, NULL, gen_fixture_setup,
               test_allocation_on_metadata, gen_fixture_teardown);
    g_test_add("/vpc/guard/paths", Fixture, NULL, gen_fixture_setup, test_guard_paths,
               gen_fixture_teardown);
    g_test_add("/vpc/peek", Fixture, NULL, gen_fixture_setup, test_peek, gen_fixture_teardown);
    return g_test_run();
}
