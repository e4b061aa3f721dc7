/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Hostile VMDK images: corrupt header fields, tables past the end of the
 * file, absurd sizes, grain table loops and overlaps, descriptors with
 * absurd extents or paths escaping IMAGEDIR, FIFOs, and random damage to
 * every kind of extent. Each must give an error (with its reason), never
 * a crash or a hang.
 */
#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/vmdk.h"
#include "src/vd-chain.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "tests/unit/test-guard.h"
#include "tests/unit/test-vmdk-gen.h"
#include "tests/unit/test-fixtures.h"

static const char hostile_desc[] = "# Disk DescriptorFile\nversion=1\nCID=11112222\n"
                                   "parentCID=ffffffff\ncreateType=\"monolithicSparse\"\n"
                                   "RW 8192 SPARSE \"renamed-since.vmdk\"\n";

static const uint64_t se_data[] = {0, 3};
static const uint64_t se_idx[] = {4097, 0};

/* A plain 4 MiB hosted sparse file without descriptor. */
static void make_plain(Fixture *f, const char *name)
{
    GenBuf b = {0};
    GenKdmv k = {.version = 1, .capacity = 8192, .grain = 128, .gtes = 512, .prealloc_gts = true};
    gen_kdmv(&b, &k);
    put_gen(f, name, &b);
}

static void hostile_kdmv(Fixture *f, const char *name, void (*poke)(GenBuf *b, GenKdmv *k))
{
    GenBuf b = {0};
    GenKdmv k = {.version = 1,
                 .flags = 1,
                 .capacity = 8192,
                 .grain = 128,
                 .gtes = 16,
                 .rgd = true,
                 .prealloc_gts = true,
                 .desc = hostile_desc};
    gen_kdmv(&b, &k);
    uint8_t g[65536];
    gen_fill(g, sizeof g, 0, 1);
    gen_kdmv_grain(&b, &k, 0, g);
    poke(&b, &k);
    put_gen(f, name, &b);
}

static void poke_gd_past_eof(GenBuf *b, GenKdmv *k)
{
    gen_le64(b, 56, 1u << 30);
}
static void poke_grain_zero(GenBuf *b, GenKdmv *k)
{
    gen_le64(b, 20, 0);
}
static void poke_grain_huge(GenBuf *b, GenKdmv *k)
{
    gen_le64(b, 20, UINT64_C(1) << 40);
}
static void poke_gtes_zero(GenBuf *b, GenKdmv *k)
{
    gen_le32(b, 44, 0);
}
static void poke_gtes_huge(GenBuf *b, GenKdmv *k)
{
    gen_le32(b, 44, 1u << 30);
}
static void poke_capacity_huge(GenBuf *b, GenKdmv *k)
{
    gen_le64(b, 12, UINT64_C(1) << 54);
}
static void poke_gt_loop(GenBuf *b, GenKdmv *k)
{
    /* Two directory entries naming the same table. */
    uint32_t first = b->data[k->gd_off] | b->data[k->gd_off + 1] << 8;
    gen_le32(b, k->gd_off + 4, first);
    gen_le32(b, k->rgd_off + 4, first);
}
static void poke_gt_on_gd(GenBuf *b, GenKdmv *k)
{
    gen_le32(b, k->gd_off + 8, (uint32_t)(k->gd_off / SECTOR));
    gen_le32(b, k->rgd_off + 8, (uint32_t)(k->rgd_off / SECTOR));
}
static void poke_gt_past_eof(GenBuf *b, GenKdmv *k)
{
    gen_le32(b, k->gd_off + 4, 0x7fffffff);
}
static void poke_rgd_disagrees(GenBuf *b, GenKdmv *k)
{
    gen_le32(b, k->rgd_off + 4, 0);
}
static void poke_version(GenBuf *b, GenKdmv *k)
{
    gen_le32(b, 4, 9);
}
static void poke_newlines(GenBuf *b, GenKdmv *k)
{
    gen_put(b, 73, "\n \n\n", 4);
}
static void poke_compress(GenBuf *b, GenKdmv *k)
{
    gen_le32(b, 77, 7);
}
static void poke_desc_past_eof(GenBuf *b, GenKdmv *k)
{
    gen_le64(b, 28, 1u << 20);
}

static void test_hostile_sparse(Fixture *f, gconstpointer data)
{
    static const struct {
        const char *name;
        void (*poke)(GenBuf *, GenKdmv *);
        int code;
    } cases[] = {
        {"gd-past-eof.vmdk", poke_gd_past_eof, EIO},
        {"grain-zero.vmdk", poke_grain_zero, EIO},
        {"grain-huge.vmdk", poke_grain_huge, EIO},
        {"gtes-zero.vmdk", poke_gtes_zero, EIO},
        {"gtes-huge.vmdk", poke_gtes_huge, EIO},
        {"capacity-huge.vmdk", poke_capacity_huge, EIO},
        {"gt-loop.vmdk", poke_gt_loop, EIO},
        {"gt-on-gd.vmdk", poke_gt_on_gd, EIO},
        {"gt-past-eof.vmdk", poke_gt_past_eof, EIO},
        {"rgd-disagrees.vmdk", poke_rgd_disagrees, EIO},
        {"version.vmdk", poke_version, ENOTSUP},
        {"newlines.vmdk", poke_newlines, EIO},
        {"compress.vmdk", poke_compress, ENOTSUP},
        {"desc-past-eof.vmdk", poke_desc_past_eof, EIO},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        hostile_kdmv(f, cases[i].name, cases[i].poke);
        expect_open_error(f, cases[i].name, cases[i].code, cases[i].name);
    }
}

static void poke_gte_past_eof(GenBuf *b, GenKdmv *k)
{
    gen_kdmv_gte(b, k, 2, 0x00ffffff);
}

static void test_hostile_gte(Fixture *f, gconstpointer data)
{
    hostile_kdmv(f, "gte.vmdk", poke_gte_past_eof);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "gte.vmdk", &err);
    g_assert_no_error(err);
    uint8_t buf[4096];
    g_assert_true(vd_image_pread(img, buf, sizeof buf, 0, &err));
    g_assert_false(vd_image_pread(img, buf, sizeof buf, 2 * 65536, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);
    /* A run that reaches the bad entry stops before it. */
    uint64_t len;
    g_assert_cmpint(state_at(img, 65536, &len), ==, VD_EXTENT_UNALLOCATED);
    g_assert_cmpuint(len, ==, 65536);
}

/* A grain table entry pointing a grain at each kind of metadata of a
 * monolithicSparse file (and of a split extent). Found at a read-write
 * open (the consistency walk), the image is served read-only and says
 * why. Written into the file behind our back after the open (so that
 * only the write path can see it), the write is refused before it lands
 * and every later write of the session too. VMDK has no flag to record
 * it on disk. */
static void test_write_over_metadata(Fixture *f, gconstpointer data)
{
    enum { DESC, GD, RGD, OWN_GT, OTHER_GT, RGT, NEW_GT, SPLIT_GT };
    static const char *const what[] = {
        "the embedded descriptor",   "the grain directory",         "the redundant grain directory",
        "its own grain table",       "another grain table",         "a redundant grain table",
        "a table made this session", "a split extent's grain table"};
    const uint64_t grain = 128 * SECTOR; /* bytes */
    for (int c = DESC; c <= SPLIT_GT; c++) {
        g_test_message("grain 5 over %s", what[c]);
        GenBuf b = {0};
        GenKdmv k = {.version = 1,
                     .flags = 1,
                     .capacity = 16384,
                     .grain = 128,
                     .gtes = 16,
                     .rgd = true,
                     .prealloc_gts = true,
                     .desc = c == SPLIT_GT ? NULL : hostile_desc};
        gen_kdmv(&b, &k);
        uint8_t g[128 * SECTOR];
        gen_fill(g, sizeof g, 0, 1);
        gen_kdmv_grain(&b, &k, 0, g);
        /* Table 7 is missing: the first write under it allocates a grain at
         * the end of the file, then the table and its copy after it. */
        gen_le32(&b, k.gd_off + 7 * 4, 0);
        gen_le32(&b, k.rgd_off + 7 * 4, 0);
        uint64_t end = (b.len + SECTOR - 1) / SECTOR * SECTOR;
        uint64_t target[] = {SECTOR,    k.gd_off,    k.rgd_off, k.gt_off, k.gt_off + 3 * SECTOR,
                             k.rgt_off, end + grain, k.gt_off};
        size_t meta_len[] = {20 * SECTOR, 32, 32, 64, 64, 64, 64, 64};
        GenBuf bad = {0};
        gen_put(&bad, 0, b.data, b.len);
        gen_kdmv_gte(&bad, &k, 5, (uint32_t)(target[c] / SECTOR));
        const char *name = "meta.vmdk", *host = "meta.vmdk";
        if (c == SPLIT_GT) {
            put_file(f, "split.vmdk",
                     "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
                     "createType=\"twoGbMaxExtentSparse\"\nRW 16384 SPARSE \"meta-s001.vmdk\"\n");
            name = "split.vmdk";
            host = "meta-s001.vmdk";
        }
        g_autofree char *hp = fpath(f, host);
        g_autoptr(GError) err = NULL;

        /* Seen at open: read-only, with the reason. */
        gen_write_file(&bad, hp);
        g_test_expect_message(NULL, G_LOG_LEVEL_WARNING,
                              c == NEW_GT ? "*grain 5 at * lies beyond the end of the file*"
                                          : "*grain 5 at * overlaps the *; opening it read-only");
        g_autoptr(VdImage) ro = open_rw(f, name);
        g_test_assert_expected_messages();
        uint8_t d[4096] = {0x77};
        g_assert_false(vd_image_pwrite(ro, d, sizeof d, 0, &err));
        g_assert_error(err, VD_ERROR, EROFS);
        g_clear_error(&err);
        g_autofree char *why = vd_image_last_error(ro);
        g_assert_nonnull(strstr(why, "grain 5 at"));
        g_clear_pointer(&ro, vd_image_unref);

        /* Made after the open: the guard. */
        put_gen(f, host, &b);
        g_autoptr(VdImage) rw = open_rw(f, name);
        g_assert_null(vd_image_last_error(rw));
        guard_patch(hp, 0, bad.data, bad.len);
        gen_free(&bad);
        /* A good write first: the session's new CID changes the descriptor. */
        g_assert_true(vd_image_pwrite(rw, d, sizeof d, c == NEW_GT ? 7 * 16 * grain : 0, &err));
        g_assert_true(vd_image_flush(rw, &err));
        /* The mapping looks valid: reading it shows the metadata. */
        g_autofree uint8_t *got = g_malloc(meta_len[c]);
        g_autofree uint8_t *meta = guard_read_host(hp, target[c], meta_len[c]);
        g_assert_true(vd_image_pread(rw, got, meta_len[c], 5 * grain, &err));
        g_assert_cmpmem(got, meta_len[c], meta, meta_len[c]);
        guard_expect_write_refused(rw, hp, 5 * grain + 7, 10, target[c], meta_len[c], 0);
        g_clear_pointer(&rw, vd_image_unref);
        g_autofree uint8_t *after = guard_read_host(hp, target[c], meta_len[c]);
        g_assert_cmpmem(after, meta_len[c], meta, meta_len[c]);
        g_assert_cmpint(g_unlink(hp), ==, 0);
    }
}

static uint64_t host_le(const char *path, uint64_t off, unsigned n)
{
    g_autofree uint8_t *b = guard_read_host(path, off, n);
    return n == 8 ? vd_le64(b) : vd_le32(b);
}

/* The primary grain table of a qemu-img monolithicSparse image (the
 * first; 1 MiB needs only one) and where its redundant copy is. */
static void qemu_tables(const char *path, uint64_t *gt, uint64_t *rgt)
{
    *gt = host_le(path, host_le(path, 56, 8) * SECTOR, 4) * SECTOR;
    *rgt = host_le(path, host_le(path, 48, 8) * SECTOR, 4) * SECTOR;
}

/*
 * The consistency walk of a read-write open, on images qemu-img made and
 * qemu-io wrote (grains 0 and 4 of 64 KiB), then damaged: two grain
 * table entries naming one grain, an entry at the end of the file (where
 * the next grain would go), an entry on the grain directory. Each opens
 * (read-write asked), but writes get EROFS, the last error says why, and
 * reads show what they showed; the clean image stays writable.
 */
static void test_rw_walk(Fixture *f, gconstpointer data)
{
    g_autofree char *qemu_img = g_find_program_in_path("qemu-img");
    g_autofree char *qemu_io = g_find_program_in_path("qemu-io");
    if (qemu_img == NULL || qemu_io == NULL) {
        g_test_skip("qemu-img or qemu-io not found");
        return;
    }
    enum { CLEAN, SHARED, PAST_EOF, ON_GD, N_CASES };
    static const char *const why[] = {NULL, "*grains 0 and 4 share host sectors at*",
                                      "*grain 8 at * lies beyond the end of the file*",
                                      "*grain 8 at * overlaps the grain directory*"};
    g_autofree char *p = fpath(f, "q.vmdk");
    for (int c = CLEAN; c < N_CASES; c++) {
        g_autofree char *create = g_strdup_printf("qemu-img create -q -f vmdk %s 1M", p);
        g_autofree char *io = g_strdup_printf(
            "qemu-io -f vmdk -c 'write -P 0x5a 0 64k' -c 'write -P 0x6b 256k 64k' %s", p);
        tf_run(create);
        tf_run(io);
        uint64_t gt, rgt;
        qemu_tables(p, &gt, &rgt);
        struct stat st;
        g_assert_cmpint(stat(p, &st), ==, 0);
        uint64_t size = (uint64_t)st.st_size;
        uint32_t g0 = (uint32_t)host_le(p, gt, 4);
        g_assert_cmpuint(g0, !=, 0);
        for (int copy = 0; copy < 2; copy++) {
            uint64_t t = copy ? rgt : gt;
            if (c == SHARED)
                guard_patch_le32(p, t + 4 * 4, g0);
            else if (c == PAST_EOF)
                guard_patch_le32(p, t + 8 * 4, (uint32_t)(size / SECTOR));
            else if (c == ON_GD)
                guard_patch_le32(p, t + 8 * 4, (uint32_t)host_le(p, 56, 8));
        }
        g_autoptr(GBytes) before = guard_file_bytes(p);
        uint8_t old4[4096], old0[4096], buf[4096];
        g_autoptr(GError) err = NULL;
        {
            g_autoptr(VdImage) ro = open_img(f, "q.vmdk", &err);
            g_assert_no_error(err);
            g_assert_true(vd_image_pread(ro, old0, sizeof old0, 0, &err));
            g_assert_true(vd_image_pread(ro, old4, sizeof old4, 256 * 1024, &err));
        }
        g_assert_cmpuint(old0[0], ==, 0x5a);
        g_assert_cmpuint(old4[0], ==, c == SHARED ? 0x5a : 0x6b);

        if (why[c] != NULL)
            g_test_expect_message(NULL, G_LOG_LEVEL_WARNING, why[c]);
        g_autoptr(VdImage) img = open_rw(f, "q.vmdk");
        g_test_assert_expected_messages();
        g_autofree char *last = vd_image_last_error(img);
        memset(buf, 0xee, sizeof buf);
        bool wrote = vd_image_pwrite(img, buf, sizeof buf, 512 * 1024, &err);
        if (c == CLEAN) {
            g_assert_no_error(err);
            g_assert_true(wrote);
            g_assert_null(last);
            g_assert_true(vd_image_flush(img, &err));
            g_assert_true(vd_image_pread(img, buf, sizeof buf, 512 * 1024, &err));
            g_assert_cmpuint(buf[0], ==, 0xee);
            continue;
        }
        g_assert_false(wrote);
        g_assert_error(err, VD_ERROR, EROFS);
        g_clear_error(&err);
        g_assert_nonnull(last);
        g_test_message("%s", last);
        g_assert_true(g_pattern_match_simple(why[c], last));
        g_assert_nonnull(strstr(last, "q.vmdk"));
        g_assert_true(vd_image_pread(img, buf, sizeof buf, 0, &err));
        g_assert_cmpmem(buf, sizeof buf, old0, sizeof old0);
        g_assert_true(vd_image_pread(img, buf, sizeof buf, 256 * 1024, &err));
        g_assert_cmpmem(buf, sizeof buf, old4, sizeof old4);
        g_assert_no_error(err);
        g_clear_pointer(&img, vd_image_unref);
        g_autoptr(GBytes) after = guard_file_bytes(p);
        g_assert_true(g_bytes_equal(before, after));
    }
}

/* Extents of a descriptor on the same bytes of one file: two flat ones
 * that overlap, a flat one inside a sparse extent's file. Served
 * read-only with the reason; flat extents side by side stay writable. */
static void test_shared_extent_files(Fixture *f, gconstpointer data)
{
    static const struct {
        const char *desc;
        bool writable;
    } cases[] = {
        {"RW 1024 FLAT \"f.bin\" 0\nRW 1024 FLAT \"f.bin\" 1024\n", true},
        {"RW 1024 FLAT \"f.bin\" 0\nRW 1024 FLAT \"f.bin\" 512\n", false},
        {"RW 64 FLAT \"f.bin\" 0\nRW 1024 FLAT \"f.bin\" 2048\nRW 64 FLAT \"f.bin\" 32\n", false},
        {"RW 8192 SPARSE \"s.vmdk\"\nRW 16 FLAT \"s.vmdk\" 0\n", false},
    };
    GenBuf fl = {0};
    uint8_t z[4096] = {1};
    gen_put(&fl, MiB - sizeof z, z, sizeof z);
    put_gen(f, "f.bin", &fl);
    make_plain(f, "s.vmdk");
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *text =
            g_strdup_printf("# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
                            "createType=\"monolithicFlat\"\n%s",
                            cases[i].desc);
        put_file(f, "d.vmdk", text);
        if (!cases[i].writable)
            g_test_expect_message(
                NULL, G_LOG_LEVEL_WARNING,
                "*d.vmdk: extent * and extent * use the same bytes of *; opening it read-only");
        g_autoptr(VdImage) img = open_rw(f, "d.vmdk");
        g_test_assert_expected_messages();
        g_autoptr(GError) err = NULL;
        uint8_t buf[4096] = {0x42};
        bool wrote = vd_image_pwrite(img, buf, sizeof buf, 0, &err);
        g_assert_true(wrote == cases[i].writable);
        if (!cases[i].writable) {
            g_assert_error(err, VD_ERROR, EROFS);
            g_autofree char *why = vd_image_last_error(img);
            g_assert_nonnull(why);
            g_test_message("%s", why);
        }
        g_clear_error(&err);
        g_assert_true(vd_image_pread(img, buf, sizeof buf, 0, &err));
        g_assert_no_error(err);
    }
}

static void test_hostile_descriptor(Fixture *f, gconstpointer data)
{
    GenBuf fl = {0};
    uint8_t z[4096] = {1};
    gen_put(&fl, 0, z, sizeof z);
    put_gen(f, "data.bin", &fl);
    g_autofree char *outside_dir = tf_tmpdir("vdvmdk-out-XXXXXX");
    g_autofree char *outside = g_build_filename(outside_dir, "secret.bin", NULL);
    g_assert_true(g_file_set_contents(outside, "secret", -1, NULL));

    put_file(f, "escape.vmdk",
             "version=1\ncreateType=\"monolithicFlat\"\n"
             "RW 8 FLAT \"../../../../../../etc/passwd\" 0\n");
    g_autofree char *abs = g_strdup_printf("version=1\ncreateType=\"monolithicFlat\"\n"
                                           "RW 8 FLAT \"%s\" 0\n",
                                           outside);
    put_file(f, "absolute.vmdk", abs);
    g_autofree char *rel = g_strdup_printf("version=1\ncreateType=\"monolithicFlat\"\n"
                                           "RW 8 FLAT \"../%s/secret.bin\" 0\n",
                                           strrchr(outside_dir, '/') + 1);
    put_file(f, "relative.vmdk", rel);
    put_file(f, "huge.vmdk",
             "version=1\ncreateType=\"monolithicFlat\"\n"
             "RW 18014398509481983 FLAT \"data.bin\" 0\n"
             "RW 18014398509481983 FLAT \"data.bin\" 0\n");
    put_file(f, "self.vmdk", "version=1\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"self.vmdk\"\n");
    put_file(f, "missing.vmdk", "version=1\ncreateType=\"x\"\nRW 8 FLAT \"nope.bin\"\n");
    put_file(f, "noext.vmdk", "# Disk DescriptorFile\nversion=1\ncreateType=\"x\"\n");
    put_file(f, "rdm.vmdk", "version=1\ncreateType=\"x\"\nRW 8 VMFSRDM \"data.bin\"\n");
    put_file(f, "flatsparse.vmdk", "version=1\ncreateType=\"x\"\nRW 8 SPARSE \"data.bin\"\n");
    put_file(f, "dup.vmdk",
             "version=1\ncreateType=\"x\"\nRW 8192 SPARSE \"m.vmdk\"\n"
             "RW 8192 SPARSE \"m.vmdk\"\n");
    make_plain(f, "m.vmdk");
    put_file(f, "toobig.vmdk", "version=1\ncreateType=\"x\"\nRW 8193 SPARSE \"m.vmdk\"\n");
    put_file(f, "access.vmdk", "version=1\ncreateType=\"x\"\nRWX 8 FLAT \"data.bin\"\n");
    g_autofree char *fifo = fpath(f, "fifo.bin");
    g_assert_cmpint(mkfifo(fifo, 0644), ==, 0);
    put_file(f, "fifo.vmdk", "version=1\ncreateType=\"x\"\nRW 8 FLAT \"fifo.bin\"\n");

    expect_open_error(f, "escape.vmdk", EACCES, "extent escaping IMAGEDIR");
    expect_open_error(f, "absolute.vmdk", EACCES, "absolute extent outside IMAGEDIR");
    expect_open_error(f, "relative.vmdk", EACCES, "relative extent outside IMAGEDIR");
    expect_open_error(f, "huge.vmdk", EIO, "extents over 8 EiB");
    expect_open_error(f, "self.vmdk", EIO, "extent is the descriptor");
    expect_open_error(f, "missing.vmdk", ENOENT, "missing extent");
    expect_open_error(f, "noext.vmdk", EIO, "no extents");
    expect_open_error(f, "rdm.vmdk", ENOTSUP, "raw device mapping");
    expect_open_error(f, "flatsparse.vmdk", EIO, "SPARSE extent without header");
    expect_open_error(f, "dup.vmdk", EIO, "sparse extent listed twice");
    expect_open_error(f, "toobig.vmdk", EIO, "extent larger than its capacity");
    expect_open_error(f, "access.vmdk", EIO, "unknown access keyword");
    expect_open_error(f, "fifo.vmdk", EIO, "a FIFO as extent (must not hang)");

    /* With backing=any the outside file is reachable. */
    f->ctx->backing_policy = VD_BACKING_ANY;
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "absolute.vmdk", &err);
    g_assert_no_error(err);
    char buf[7] = {0};
    g_assert_true(vd_image_pread(img, buf, 6, 0, &err));
    g_assert_cmpstr(buf, ==, "secret");
    f->ctx->backing_policy = VD_BACKING_CONFINED;
    tf_rm_rf(outside_dir);
}

static void test_hostile_cowd_sesparse(Fixture *f, gconstpointer data)
{
    uint64_t g0 = 0;
    GenBuf b = {0};
    gen_cowd(&b, 8192, 1, &g0, 1, 3);
    gen_le32(&b, 24, 0x7fffffff); /* directory entries */
    put_gen(f, "cowd-gd.vmdk", &b);
    expect_open_error(f, "cowd-gd.vmdk", EIO, "COWD directory too large");
    gen_cowd(&b, 8192, 1, &g0, 0, 3);
    gen_le32(&b, 16, 0); /* grain size */
    put_gen(f, "cowd-grain.vmdk", &b);
    expect_open_error(f, "cowd-grain.vmdk", EIO, "COWD grain size 0");

    GenSe s = {.capacity = 32768, .data = se_data, .data_idx = se_idx, .n_data = 1, .seed = 5};
    const char *desc = "version=1\ncreateType=\"seSparse\"\nRW 32768 SESPARSE \"se.bin\"\n";
    put_file(f, "se.vmdk", desc);
    gen_sesparse(&b, &s);
    gen_le64(&b, s.gd_off, UINT64_C(0x1000000000000000) | 77); /* table 77 of 1 */
    put_gen(f, "se.bin", &b);
    expect_open_error(f, "se.vmdk", EIO, "seSparse table out of range");
    gen_sesparse(&b, &s);
    gen_le64(&b, 136, UINT64_C(1) << 60); /* directory size */
    put_gen(f, "se.bin", &b);
    expect_open_error(f, "se.vmdk", EIO, "seSparse directory past EOF");
    gen_sesparse(&b, &s);
    gen_le64(&b, 24, 16); /* grain size */
    put_gen(f, "se.bin", &b);
    expect_open_error(f, "se.vmdk", ENOTSUP, "seSparse grain size");
    gen_sesparse(&b, &s);
    gen_le64(&b, 512 + 24, 1); /* journal to replay */
    put_gen(f, "se.bin", &b);
    expect_open_error(f, "se.vmdk", ENOTSUP, "seSparse dirty journal");
    gen_sesparse(&b, &s);
    gen_le64(&b, s.gt_off + 8, UINT64_C(0x5000000000000000));
    gen_le64(&b, s.gt_off + 16, UINT64_C(0x3000ffffffffffff)); /* grain far past EOF */
    put_gen(f, "se.bin", &b);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "se.vmdk", &err);
    g_assert_no_error(err);
    uint8_t buf[4096];
    g_assert_true(vd_image_pread(img, buf, sizeof buf, 0, &err));
    g_assert_false(vd_image_pread(img, buf, sizeof buf, 4096, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);
    g_assert_false(vd_image_pread(img, buf, sizeof buf, 8192, &err));
    g_assert_error(err, VD_ERROR, EIO);
}

/* Peek (what a listing does) and open of a bare extent both refuse it,
 * with code and a message that says what is wrong. */
static void expect_bare_refused(Fixture *f, const char *name, int code, const char *says)
{
    g_autofree char *p = fpath(f, name);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) peeked = vd_image_peek(f->ctx, p, &err);
    g_assert_null(peeked);
    g_assert_error(err, VD_ERROR, code);
    if (strstr(err->message, says) == NULL)
        g_error("peek of %s: '%s' does not say '%s'", name, err->message, says);
    g_clear_error(&err);
    expect_open_error(f, name, code, says);
    g_autoptr(VdImage) img = open_img(f, name, &err);
    g_assert_nonnull(strstr(err->message, says));
}

/* A seSparse extent alone (no descriptor): its header is all there is, so
 * a capacity its directory cannot cover, or regions past the end of the
 * file, are refused before anything is allocated from them. */
static void test_hostile_sesparse_bare(Fixture *f, gconstpointer data)
{
    static const struct {
        unsigned field; /* header byte offset */
        uint64_t value; /* sectors past the end of the file when past_eof */
        bool past_eof;
        int code;
        const char *says;
    } cases[] = {
        /* 1000 tables; the directory holds 64 */
        {16, UINT64_C(1000) * 32768, false, EIO, "capacity of 32768000 sectors"},
        {16, UINT64_MAX / 8, false, EIO, "invalid capacity"},    /* over 8 EiB */
        {128, 0, true, EIO, "grain directory of"},               /* at the end of the file */
        {144, UINT64_C(1) << 62, false, EIO, "grain tables of"}, /* far past it */
        {152, 0, true, EIO, "beyond the end of the file"},       /* tables' size runs past it */
        {8, 1, false, ENOTSUP, "unsupported seSparse variant"},  /* another version */
    };
    GenSe s = {.capacity = 32768, .data = se_data, .data_idx = se_idx, .n_data = 1, .seed = 5};
    GenBuf b = {0};
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        gen_sesparse(&b, &s);
        gen_le64(&b, cases[i].field, cases[i].value + (cases[i].past_eof ? b.len / SECTOR : 0));
        g_autofree char *name = g_strdup_printf("se-%zu.vmdk", i);
        put_gen(f, name, &b);
        expect_bare_refused(f, name, cases[i].code, cases[i].says);
    }
    gen_sesparse(&b, &s);
    b.len = 700; /* cut inside the volatile header */
    put_gen(f, "se-short.vmdk", &b);
    expect_bare_refused(f, "se-short.vmdk", EIO, "se-short.vmdk");
}

/* Random damage to the metadata of every kind: errors are fine, crashes
 * (and sanitizer reports, in sanitizer builds) are not. */
static void test_fuzz(Fixture *f, gconstpointer data)
{
    GenBuf seeds[5] = {{0}};
    GenKdmv k = {.version = 2,
                 .flags = 5,
                 .capacity = 8192,
                 .grain = 128,
                 .gtes = 16,
                 .rgd = true,
                 .prealloc_gts = true,
                 .desc = hostile_desc};
    gen_kdmv(&seeds[0], &k);
    uint8_t g[65536];
    gen_fill(g, sizeof g, 0, 1);
    gen_kdmv_grain(&seeds[0], &k, 0, g);
    gen_kdmv_grain(&seeds[0], &k, 20, g);
    uint64_t grains[] = {0, 5};
    gen_stream(&seeds[1], 16384, grains, 2, 1, hostile_desc);
    gen_cowd(&seeds[2], 8192, 1, grains, 2, 1);
    static const uint64_t small_idx[] = {1, 0};
    GenSe s = {.capacity = 32768, .data = se_data, .data_idx = small_idx, .n_data = 2, .seed = 5};
    gen_sesparse(&seeds[3], &s);
    gen_sesparse(&seeds[4], &s); /* the same extent alone, without a descriptor */
    put_file(f, "fz.vmdk", "version=1\ncreateType=\"seSparse\"\nRW 32768 SESPARSE \"fz.bin\"\n");
    GRand *r = g_rand_new_with_seed(12345);
    g_autofree uint8_t *buf = g_malloc(MiB);
    unsigned opened = 0;
    for (int iter = 0; iter < 2000; iter++) {
        GenBuf *src = &seeds[iter % 5];
        GenBuf m = {0};
        gen_put(&m, 0, src->data, src->len);
        /* Damage mostly the metadata at the start, sometimes anywhere. */
        int n = g_rand_int_range(r, 1, 8);
        for (int j = 0; j < n; j++) {
            size_t span = g_rand_boolean(r) ? MIN(m.len, 4096) : m.len;
            size_t at = (size_t)g_rand_int_range(r, 0, (gint32)span);
            m.data[at] = (uint8_t)g_rand_int(r);
        }
        if (g_rand_int_range(r, 0, 10) == 0)
            m.len = (size_t)g_rand_int_range(r, 1, (gint32)m.len);
        const char *name = iter % 5 == 3 ? "fz.bin" : "fz-img.vmdk";
        put_gen(f, name, &m);
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = open_img(f, iter % 5 == 3 ? "fz.vmdk" : name, &err);
        if (img == NULL)
            continue;
        opened++;
        uint64_t size = vd_image_size(img);
        for (uint64_t off = 0; off < size && off < 8 * MiB; off += MiB) {
            g_autoptr(GError) e2 = NULL;
            (void)vd_image_pread(img, buf, (size_t)MIN((uint64_t)MiB, size - off), off, &e2);
        }
        uint64_t pos;
        g_autoptr(GError) e3 = NULL;
        (void)vd_chain_seek(img, 0, SEEK_DATA, &pos, &e3);
    }
    g_rand_free(r);
    for (int i = 0; i < 5; i++)
        gen_free(&seeds[i]);
    g_test_message("%u of 2000 damaged images opened", opened);
}

int main(int argc, char *argv[])
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, setup, fn, teardown)
    ADD("/vmdk/hostile/sparse-headers", test_hostile_sparse);
    ADD("/vmdk/hostile/grain-entry", test_hostile_gte);
    ADD("/vmdk/hostile/write-over-metadata", test_write_over_metadata);
    ADD("/vmdk/hostile/rw-walk", test_rw_walk);
    ADD("/vmdk/hostile/shared-extent-files", test_shared_extent_files);
    ADD("/vmdk/hostile/descriptor", test_hostile_descriptor);
    ADD("/vmdk/hostile/cowd-sesparse", test_hostile_cowd_sesparse);
    ADD("/vmdk/hostile/sesparse-bare", test_hostile_sesparse_bare);
    ADD("/vmdk/hostile/fuzz", test_fuzz);
#undef ADD
    return g_test_run();
}
