/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The vmdk driver through the block layer: the descriptor parser, probing,
 * every extent kind from generated images (hosted sparse, split, flat,
 * zero, streamOptimized with a footer, COWD, seSparse) and parents (CID
 * checks, hints from other hosts). Hostile images: test-vmdk-hostile.c.
 */
#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/vmdk.h"
#include "src/vd-chain.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "tests/unit/test-peek.h"
#include "tests/unit/test-vmdk-gen.h"

/* info's entry key, as vdisk info prints it, is want. */
static void assert_info(const VdInfo *info, const char *key, const char *want)
{
    g_autofree char *got = vd_info_entry_to_string(vd_info_get(info, key));
    if (g_strcmp0(got, want) != 0)
        g_error("info %s: %s, expected %s", key, got ? got : "(none)", want);
}

/* ---- descriptor ---- */

static const char sample_desc[] = "# Disk DescriptorFile\r\n"
                                  "version=1\r\n"
                                  "encoding=\"UTF-8\"\r\n"
                                  "CID=0012abcd\r\n"
                                  "parentCID = ffffffff\r\n"
                                  "createType=\"twoGbMaxExtentSparse\"\r\n"
                                  "parentFileNameHint=\"base disk.vmdk\"\r\n"
                                  "\r\n"
                                  "# Extent description\r\n"
                                  "RW 4192256 SPARSE \"a b-s001.vmdk\"\r\n"
                                  "  RDONLY 100 FLAT \"flat.bin\" 7\r\n"
                                  "NOACCESS 8 ZERO\r\n"
                                  "\r\n"
                                  "ddb.adapterType = \"lsilogic\"\r\n"
                                  "ddb.virtualHWVersion = \"7\"\r\n";

static void test_desc_parse(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VmdkDescriptor) d =
        vmdk_descriptor_parse(sample_desc, sizeof sample_desc - 1, "t", &err);
    g_assert_no_error(err);
    g_assert_cmpuint(d->version, ==, 1);
    g_assert_true(d->has_cid && d->has_parent_cid);
    g_assert_cmphex(d->cid, ==, 0x12abcd);
    g_assert_cmphex(d->parent_cid, ==, 0xffffffff);
    g_assert_cmpstr(d->create_type, ==, "twoGbMaxExtentSparse");
    g_assert_cmpstr(d->parent_hint, ==, "base disk.vmdk");
    g_assert_cmpuint(d->extents->len, ==, 3);
    VmdkDescExtent *x = g_ptr_array_index(d->extents, 0);
    g_assert_cmpstr(x->access, ==, "RW");
    g_assert_cmpuint(x->sectors, ==, 4192256);
    g_assert_cmpstr(x->type, ==, "SPARSE");
    g_assert_cmpstr(x->filename, ==, "a b-s001.vmdk");
    x = g_ptr_array_index(d->extents, 1);
    g_assert_cmpstr(x->access, ==, "RDONLY");
    g_assert_cmpuint(x->offset, ==, 7);
    x = g_ptr_array_index(d->extents, 2);
    g_assert_cmpstr(x->type, ==, "ZERO");
    g_assert_null(x->filename);
    g_assert_cmpstr(vmdk_descriptor_ddb(d, "ddb.adapterType"), ==, "lsilogic");
    g_assert_cmpstr(vmdk_descriptor_ddb(d, "ddb.virtualHWVersion"), ==, "7");
    g_assert_null(vmdk_descriptor_ddb(d, "ddb.uuid"));

    /* Text after a NUL (embedded descriptors are padded) is not read. */
    static const char padded[] = "version=1\nCID=1\n\0RW 1 ZERO\n";
    g_autoptr(VmdkDescriptor) p = vmdk_descriptor_parse(padded, sizeof padded, "t", &err);
    g_assert_no_error(err);
    g_assert_cmpuint(p->extents->len, ==, 0);
}

static void test_desc_invalid(void)
{
    static const char *const bad[] = {
        "RW x SPARSE \"a\"\n",
        "RW 10 SPARSE a\n",
        "RW 10 SPARSE \"a\n",
        "RW 10 SPARSE \"\"\n",
        "RW 10 FLAT \"a\" 1 2\n",
        "RW 10 FLAT \"a\" -1\n",
        "RW 10 FLAT\n",
        "RW\n",
        "RW 99999999999999999999 FLAT \"a\"\n",
        "RW 36028797018963968 FLAT \"a\"\n", /* 2^55 sectors: past 2^63 bytes */
        "RW 10 FLAT \"a\" 36028797018963968\n",
        "RW 10 FLAT \"a\x01\"\n",
        "version=x\n",
        "parentFileNameHint=\"\"\n",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GError) err = NULL;
        g_autoptr(VmdkDescriptor) d = vmdk_descriptor_parse(bad[i], strlen(bad[i]), "t", &err);
        if (d != NULL)
            g_error("accepted: %s", bad[i]);
        g_assert_error(err, VD_ERROR, EIO);
    }
    /* Too many extents. */
    GString *s = g_string_new("version=1\n");
    for (unsigned i = 0; i <= VMDK_MAX_EXTENTS; i++)
        g_string_append(s, "RW 1 ZERO\n");
    g_autoptr(GError) err = NULL;
    g_assert_null(vmdk_descriptor_parse(s->str, s->len, "t", &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_string_free(s, TRUE);
    /* Unknown keys and lines are not errors; a bad CID is ignored. */
    static const char odd[] = "hello world\nCID=xyz\nfoo=bar\n";
    g_clear_error(&err);
    g_autoptr(VmdkDescriptor) d = vmdk_descriptor_parse(odd, sizeof odd - 1, "t", &err);
    g_assert_no_error(err);
    g_assert_false(d->has_cid);
}

static void test_desc_set_cid(void)
{
    size_t n;
    g_autofree char *t =
        vmdk_descriptor_set_cid(sample_desc, sizeof sample_desc - 1, 0xdeadbeef, &n);
    g_assert_nonnull(t);
    g_assert_cmpuint(n, ==, strlen(t));
    g_assert_nonnull(strstr(t, "\r\nCID=deadbeef\r\nparentCID = ffffffff\r\n"));
    g_autoptr(GError) err = NULL;
    g_autoptr(VmdkDescriptor) d = vmdk_descriptor_parse(t, n, "t", &err);
    g_assert_no_error(err);
    g_assert_cmphex(d->cid, ==, 0xdeadbeef);
    g_assert_cmpuint(d->extents->len, ==, 3);
    g_assert_null(vmdk_descriptor_set_cid("parentCID=1\n", 12, 5, &n));
}

/* ---- probing ---- */

static void test_probe(Fixture *f, gconstpointer data)
{
    put_file(f, "text.vmdk", "# Disk DescriptorFile\nversion=1\nRW 8 ZERO\n");
    put_file(f, "text2.vmdk", "\n  \nversion=1\ncreateType=\"monolithicFlat\"\n");
    put_file(f, "notvmdk.txt", "version=1\nsomething else\n");
    put_file(f, "notvmdk2.txt", "hello\nversion=1\ncreateType=\"x\"\n");
    g_autofree char *padded = fpath(f, "padded.vmdk");
    g_assert_true(g_file_set_contents(padded, "version=1\ncreateType=\"x\"\n\0\0\0\0", 30, NULL));
    GenBuf b = {0};
    GenKdmv k = {.version = 1, .capacity = 2048, .grain = 128, .gtes = 512, .prealloc_gts = true};
    gen_kdmv(&b, &k);
    put_gen(f, "sparse.vmdk", &b);
    uint64_t none = 0;
    gen_cowd(&b, 2048, 1, &none, 0, 1);
    put_gen(f, "cowd.vmdk", &b);
    const char *yes[] = {"text.vmdk", "text2.vmdk", "padded.vmdk", "sparse.vmdk", "cowd.vmdk"};
    const char *no[] = {"notvmdk.txt", "notvmdk2.txt"};
    for (size_t i = 0; i < G_N_ELEMENTS(yes); i++) {
        g_autofree char *p = fpath(f, yes[i]);
        const VdDriver *drv = vd_probe_path(f->ctx, p, NULL);
        if (drv == NULL || strcmp(drv->name, "vmdk") != 0)
            g_error("%s not probed as vmdk", yes[i]);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(no); i++) {
        g_autofree char *p = fpath(f, no[i]);
        g_assert_null(vd_probe_path(f->ctx, p, NULL));
    }
}

/* ---- hosted sparse ---- */

static const char mono_desc[] = "# Disk DescriptorFile\nversion=1\nCID=11112222\n"
                                "parentCID=ffffffff\ncreateType=\"monolithicSparse\"\n"
                                "RW 8192 SPARSE \"renamed-since.vmdk\"\n"
                                "ddb.adapterType = \"buslogic\"\n";

/* 4 MiB, 64 KiB grains, 16 grains per table (4 tables): grains 0, 1 and 17
 * hold pattern 1; grain 5 is a zeroed grain; the rest unallocated. */
static uint8_t expect_mono(uint64_t off, gconstpointer data)
{
    uint64_t g = off / (64 * 1024);
    return (g == 0 || g == 1 || g == 17) ? gen_pattern(off, 1) : 0;
}

static void make_mono(Fixture *f, const char *name, const char *desc)
{
    GenBuf b = {0};
    GenKdmv k = {.version = 2,
                 .flags = 1 | 4,
                 .capacity = 8192,
                 .grain = 128,
                 .gtes = 16,
                 .rgd = true,
                 .prealloc_gts = true,
                 .desc = desc};
    gen_kdmv(&b, &k);
    uint8_t g[64 * 1024];
    uint64_t order[] = {17, 0, 1};
    for (size_t i = 0; i < G_N_ELEMENTS(order); i++) {
        gen_fill(g, sizeof g, order[i] * sizeof g, 1);
        gen_kdmv_grain(&b, &k, order[i], g);
    }
    gen_kdmv_gte(&b, &k, 5, 1);
    put_gen(f, name, &b);
}

static void test_sparse_read(Fixture *f, gconstpointer data)
{
    make_mono(f, "mono.vmdk", mono_desc);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "mono.vmdk", &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(img), ==, 4 * MiB);
    g_assert_null(img->members); /* the file is the image */
    check_content(img, expect_mono, NULL);
    uint64_t len;
    g_assert_cmpint(state_at(img, 0, &len), ==, VD_EXTENT_DATA);
    g_assert_cmpuint(len, ==, 128 * 1024); /* grains 0 and 1 merged */
    g_assert_cmpint(state_at(img, 2 * 65536, &len), ==, VD_EXTENT_UNALLOCATED);
    g_assert_cmpuint(len, ==, 3 * 65536);
    g_assert_cmpint(state_at(img, 5 * 65536, &len), ==, VD_EXTENT_ZERO);
    g_assert_cmpuint(len, ==, 65536);
    g_assert_cmpint(state_at(img, 17 * 65536 + 100, &len), ==, VD_EXTENT_DATA);
    g_assert_cmpuint(len, ==, 65536 - 100);
    uint64_t bytes;
    g_assert_true(vd_chain_data_bytes(img, &bytes, &err));
    g_assert_cmpuint(bytes, ==, 3 * 65536);

    g_autoptr(VdInfo) info = vd_info_describe(img);
    assert_info(info, "create_type", "monolithicSparse");
    assert_info(info, "cluster_size", "65536");
    assert_info(info, "cid", "11112222");
    assert_info(info, "adapter_type", "buslogic");
    g_assert_true(vd_info_get(info, "zeroed_grain")->b);

    /* No descriptor at all: still one sparse extent. */
    make_mono(f, "bare.vmdk", NULL);
    g_autoptr(VdImage) bare = open_img(f, "bare.vmdk", &err);
    g_assert_no_error(err);
    check_content(bare, expect_mono, NULL);
}

/* Split: two sparse extents (2 MiB each), a flat one, a zero one. */
static uint8_t expect_split(uint64_t off, gconstpointer data)
{
    if (off < 4 * MiB) {
        uint64_t rel = off % (2 * MiB), g = rel / 65536;
        return (g == 0 || g == 1 || g == 17) ? gen_pattern(rel, 1) : 0;
    }
    if (off < 5 * MiB)
        return gen_pattern(off - 4 * MiB + 4096, 2);
    return 0;
}

static void make_split(Fixture *f)
{
    for (int i = 1; i <= 2; i++) {
        GenBuf b = {0};
        GenKdmv k = {.version = 1,
                     .capacity = 4096,
                     .grain = 128,
                     .gtes = 16,
                     .rgd = true,
                     .prealloc_gts = true};
        gen_kdmv(&b, &k);
        uint8_t g[64 * 1024];
        uint64_t order[] = {1, 17, 0};
        for (size_t j = 0; j < G_N_ELEMENTS(order); j++) {
            gen_fill(g, sizeof g, order[j] * sizeof g, 1);
            gen_kdmv_grain(&b, &k, order[j], g);
        }
        g_autofree char *n = g_strdup_printf("split-s%03d.vmdk", i);
        put_gen(f, n, &b);
    }
    GenBuf fl = {0};
    g_autofree uint8_t *d = g_malloc(MiB + 4096);
    gen_fill(d, MiB + 4096, 0, 2);
    gen_put(&fl, 0, d, MiB + 4096);
    put_gen(f, "split-flat.bin", &fl);
    put_file(f, "split.vmdk",
             "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
             "createType=\"twoGbMaxExtentSparse\"\n"
             "RW 4096 SPARSE \"split-s001.vmdk\"\n"
             "RW 4096 SPARSE \"split-s002.vmdk\"\n"
             "RW 2048 FLAT \"split-flat.bin\" 8\n"
             "RW 2048 ZERO\n");
}

static void test_split(Fixture *f, gconstpointer data)
{
    make_split(f);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "split.vmdk", &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(img), ==, 6 * MiB);
    check_content(img, expect_split, NULL);
    g_assert_nonnull(img->members);
    g_assert_cmpuint(img->members->len, ==, 3);
    uint64_t len;
    g_assert_cmpint(state_at(img, 2 * MiB - 1, &len), ==, VD_EXTENT_UNALLOCATED);
    g_assert_cmpuint(len, ==, 1); /* ends at the extent boundary */
    g_assert_cmpint(state_at(img, 4 * MiB, &len), ==, VD_EXTENT_DATA);
    g_assert_cmpint(state_at(img, 5 * MiB, &len), ==, VD_EXTENT_ZERO);
    g_assert_cmpuint(len, ==, MiB);
    /* The lone extent opens on its own too (and is hidden as a member). */
    g_autoptr(VdImage) lone = open_img(f, "split-s002.vmdk", &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(lone), ==, 2 * MiB);
}

/* ---- streamOptimized with a footer ---- */

static uint8_t expect_stream(uint64_t off, gconstpointer data)
{
    uint64_t g = off / 65536;
    return (g == 0 || g == 3 || g == 600 || g == 1023) ? gen_pattern(off, 7) : 0;
}

static void test_stream_footer(Fixture *f, gconstpointer data)
{
    GenBuf b = {0};
    uint64_t grains[] = {3, 0, 600, 1023};
    gen_stream(&b, 131072, grains, G_N_ELEMENTS(grains), 7,
               "version=1\nCID=1\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n");
    put_gen(f, "stream.vmdk", &b);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "stream.vmdk", &err);
    g_assert_no_error(err);
    g_assert_true(img->read_only);
    g_assert_cmpuint(vd_image_size(img), ==, 64 * MiB);
    check_content(img, expect_stream, NULL);
    uint64_t len;
    g_assert_cmpint(state_at(img, 0, &len), ==, VD_EXTENT_DATA_DECODE);
    g_assert_cmpuint(len, ==, 65536);
    g_assert_cmpint(state_at(img, 65536, &len), ==, VD_EXTENT_UNALLOCATED);
    g_assert_cmpuint(len, ==, 2 * 65536);
    g_autoptr(VdInfo) info = vd_info_describe(img);
    assert_info(info, "compression", "deflate");

    /* Footer missing: refused. */
    GenBuf t = {0};
    gen_stream(&t, 131072, grains, 1, 7, NULL);
    t.len -= 512;
    put_gen(f, "nofooter.vmdk", &t);
    expect_open_error(f, "nofooter.vmdk", EIO, "stream without footer");

    /* A corrupt compressed grain fails its read, nothing else. */
    GenBuf c2 = {0};
    gen_stream(&c2, 131072, grains, 1, 7, NULL);
    memset(c2.data + 128 * 512 + 12, 0x55, 64);
    put_gen(f, "badgrain.vmdk", &c2);
    g_autoptr(VdImage) bad = open_img(f, "badgrain.vmdk", &err);
    g_assert_no_error(err);
    uint8_t buf[512];
    g_assert_false(vd_image_pread(bad, buf, sizeof buf, 3 * 65536, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);
    g_assert_true(vd_image_pread(bad, buf, sizeof buf, 65536, &err));
}

/* ---- COWD (vmfsSparse) ---- */

static uint8_t expect_cowd(uint64_t off, gconstpointer data)
{
    uint64_t g = off / 512;
    return (g == 0 || g == 9 || g == 4097 || g == 5000) ? gen_pattern(off, 3) : 0;
}

static void test_cowd(Fixture *f, gconstpointer data)
{
    GenBuf b = {0};
    uint64_t grains[] = {9, 0, 4097, 5000};
    gen_cowd(&b, 8192, 1, grains, G_N_ELEMENTS(grains), 3);
    put_gen(f, "lone-cowd.vmdk", &b);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "lone-cowd.vmdk", &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(img), ==, 4 * MiB);
    check_content(img, expect_cowd, NULL);
    g_assert_cmpint(state_at(img, 512, NULL), ==, VD_EXTENT_UNALLOCATED);
    g_assert_cmpint(state_at(img, 9 * 512, NULL), ==, VD_EXTENT_DATA);
}

/* An ESX snapshot: a COWD delta over a flat base, unallocated grains from the base. */
static uint8_t expect_cowd_chain(uint64_t off, gconstpointer data)
{
    uint64_t g = off / 512;
    return (g == 0 || g == 9 || g == 4097 || g == 5000) ? gen_pattern(off, 3) : gen_pattern(off, 4);
}

static void test_cowd_snapshot(Fixture *f, gconstpointer data)
{
    GenBuf b = {0};
    uint64_t grains[] = {9, 0, 4097, 5000};
    gen_cowd(&b, 8192, 1, grains, G_N_ELEMENTS(grains), 3);
    put_gen(f, "vm-000001-delta.vmdk", &b);
    GenBuf base = {0};
    g_autofree uint8_t *d = g_malloc(4 * MiB);
    gen_fill(d, 4 * MiB, 0, 4);
    gen_put(&base, 0, d, 4 * MiB);
    put_gen(f, "vm-flat.vmdk", &base);
    put_file(f, "vm.vmdk",
             "version=1\nCID=0badcafe\nparentCID=ffffffff\ncreateType=\"vmfs\"\n"
             "RW 8192 VMFS \"vm-flat.vmdk\"\nddb.adapterType = \"lsilogic\"\n");
    put_file(f, "vm-000001.vmdk",
             "version=1\nCID=12345678\nparentCID=0badcafe\ncreateType=\"vmfsSparse\"\n"
             "parentFileNameHint=\"vm.vmdk\"\nRW 8192 VMFSSPARSE \"vm-000001-delta.vmdk\"\n");
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "vm-000001.vmdk", &err);
    g_assert_no_error(err);
    g_assert_nonnull(img->backing);
    check_content(img, expect_cowd_chain, NULL);

    /* The parent's CID changed: refused, with the reason. */
    put_file(f, "vm.vmdk",
             "version=1\nCID=0badcaff\nparentCID=ffffffff\ncreateType=\"vmfs\"\n"
             "RW 8192 VMFS \"vm-flat.vmdk\"\n");
    expect_open_error(f, "vm-000001.vmdk", EIO, "CID mismatch");
    g_autoptr(VdImage) again = open_img(f, "vm-000001.vmdk", &err);
    g_assert_null(again);
    g_assert_nonnull(strstr(err->message, "CID"));
    g_clear_error(&err);
    /* Parent missing: refused, not read as zeros. */
    g_autofree char *vm = fpath(f, "vm.vmdk");
    g_unlink(vm);
    expect_open_error(f, "vm-000001.vmdk", ENOENT, "missing parent");
}

/* ---- seSparse ---- */

static const uint64_t se_data[] = {0, 3, 4095, 4096, 8000};
static const uint64_t se_idx[] = {4097, 0, 2, 1, 5};
static const uint64_t se_zero[] = {1, 4100};
static const uint64_t se_unmapped[] = {2};

static uint8_t expect_se(uint64_t off, gconstpointer data)
{
    uint64_t g = off / 4096;
    for (size_t i = 0; i < G_N_ELEMENTS(se_data); i++) {
        if (se_data[i] == g)
            return gen_pattern(off, 5);
    }
    return 0;
}

/* A 48 MiB seSparse extent (3 tables, the last one missing) holding the
 * se_* grains, as file name. */
static void make_se(Fixture *f, const char *name)
{
    GenBuf b = {0};
    GenSe s = {.capacity = 3 * 32768,
               .data = se_data,
               .data_idx = se_idx,
               .n_data = G_N_ELEMENTS(se_data),
               .zero = se_zero,
               .n_zero = G_N_ELEMENTS(se_zero),
               .unmapped = se_unmapped,
               .n_unmapped = G_N_ELEMENTS(se_unmapped),
               .seed = 5};
    gen_sesparse(&b, &s);
    put_gen(f, name, &b);
}

/* make_se's image: content and states, however it was opened. */
static void check_se(VdImage *img)
{
    g_assert_true(img->read_only);
    g_assert_cmpuint(vd_image_size(img), ==, 48 * MiB);
    check_content(img, expect_se, NULL);
    uint64_t len;
    g_assert_cmpint(state_at(img, 0, &len), ==, VD_EXTENT_DATA);
    g_assert_cmpuint(len, ==, 4096); /* grain 1 is zero, not contiguous */
    g_assert_cmpint(state_at(img, 4096, &len), ==, VD_EXTENT_ZERO);
    g_assert_cmpuint(len, ==, 8192); /* zero and unmapped read alike */
    g_assert_cmpint(state_at(img, 3 * 4096, &len), ==, VD_EXTENT_DATA);
    g_assert_cmpint(state_at(img, 32 * MiB, &len), ==, VD_EXTENT_UNALLOCATED);
    g_assert_cmpuint(len, ==, 16 * MiB); /* no table at all */
}

static void test_sesparse(Fixture *f, gconstpointer data)
{
    make_se(f, "snap-sesparse.vmdk");
    put_file(f, "snap.vmdk",
             "version=3\nCID=1\nparentCID=ffffffff\ncreateType=\"seSparse\"\n"
             "RW 98304 SESPARSE \"snap-sesparse.vmdk\"\n");
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "snap.vmdk", &err);
    g_assert_no_error(err);
    check_se(img);
    g_assert_nonnull(img->members);
    g_assert_cmpuint(img->members->len, ==, 1);
    g_assert_true(g_str_has_suffix(g_ptr_array_index(img->members, 0), "/snap-sesparse.vmdk"));
}

/* A seSparse extent without its descriptor is a standalone disk of its
 * header's capacity: probed, read and described on its own, never
 * written, its holes those of the grain tables. */
static void test_sesparse_bare(Fixture *f, gconstpointer data)
{
    make_se(f, "lone.vmdk");
    g_autofree char *p = fpath(f, "lone.vmdk");
    const VdDriver *drv = vd_probe_path(f->ctx, p, NULL);
    g_assert_nonnull(drv);
    g_assert_cmpstr(drv->name, ==, "vmdk");

    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "lone.vmdk", &err);
    g_assert_no_error(err);
    check_se(img);
    g_assert_null(img->members); /* the file is the image */
    g_assert_null(img->backing_name);
    uint64_t pos;
    g_assert_true(vd_chain_seek(img, 0, SEEK_HOLE, &pos, &err));
    g_assert_cmpuint(pos, ==, 4096);
    g_assert_true(vd_chain_seek(img, 4096, SEEK_DATA, &pos, &err));
    g_assert_cmpuint(pos, ==, 3 * 4096);
    g_assert_true(vd_chain_seek(img, 8000 * 4096 + 1, SEEK_HOLE, &pos, &err));
    g_assert_cmpuint(pos, ==, 8001 * 4096);
    /* Past the last data grain: holes (zeros and missing tables) only. */
    g_assert_false(vd_chain_seek(img, 8001 * 4096, SEEK_DATA, &pos, &err));
    g_assert_error(err, VD_ERROR, ENXIO);
    g_clear_error(&err);
    uint64_t bytes;
    g_assert_true(vd_chain_data_bytes(img, &bytes, &err));
    g_assert_cmpuint(bytes, ==, G_N_ELEMENTS(se_data) * 4096);

    g_autoptr(VdInfo) info = vd_info_describe(img);
    assert_info(info, "create_type", "seSparse");
    assert_info(info, "extents", "RW 98304 SESPARSE \"lone.vmdk\"");
    assert_info(info, "grain_size", "4096");

    /* Asked for writing, it opens read-only (as under a descriptor). */
    g_clear_pointer(&img, vd_image_unref);
    g_autoptr(VdImage) rw = open_rw(f, "lone.vmdk");
    g_assert_true(rw->read_only);
    g_clear_pointer(&rw, vd_image_unref);
    peek_expect_same(f->ctx, p);
    peek_assert_like_open(f->ctx, p);
}

/* ---- peek ---- */

/* Every kind of image peeks as it opens; a grain directory of 4M entries
 * (32 MiB in memory) is not read. */
static void test_peek(Fixture *f, gconstpointer data)
{
    make_mono(f, "mono.vmdk", mono_desc);
    make_mono(f, "bare.vmdk", NULL);
    make_split(f);
    GenBuf st = {0};
    uint64_t grains[] = {3, 0};
    gen_stream(&st, 131072, grains, G_N_ELEMENTS(grains), 7,
               "version=1\nCID=1\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n");
    put_gen(f, "stream.vmdk", &st);
    GenBuf cw = {0};
    gen_cowd(&cw, 8192, 1, grains, G_N_ELEMENTS(grains), 3);
    put_gen(f, "vm-000001-delta.vmdk", &cw);
    put_file(f, "vm-000001.vmdk",
             "version=1\nCID=12345678\nparentCID=0badcafe\ncreateType=\"vmfsSparse\"\n"
             "parentFileNameHint=\"vm.vmdk\"\nRW 8192 VMFSSPARSE \"vm-000001-delta.vmdk\"\n");
    put_file(f, "rdonly.vmdk",
             "version=1\ncreateType=\"monolithicFlat\"\nRDONLY 2048 FLAT \"split-flat.bin\" 8\n"
             "RW 2048 FLAT \"split-flat.bin\" 0\n");
    const char *names[] = {"mono.vmdk",       "bare.vmdk",   "split.vmdk",
                           "split-s001.vmdk", "stream.vmdk", "vm-000001-delta.vmdk",
                           "vm-000001.vmdk",  "rdonly.vmdk"};
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        g_autofree char *p = fpath(f, names[i]);
        peek_expect_same(f->ctx, p);
    }

    GenBuf b = {0};
    GenKdmv k = {
        .version = 1, .flags = 1, .capacity = UINT64_C(1) << 38, .grain = 128, .gtes = 512};
    gen_kdmv(&b, &k);
    g_assert_cmpuint(k.gd_count, ==, 1u << 22);
    put_gen(f, "huge.vmdk", &b);
    g_autofree char *p = fpath(f, "huge.vmdk");
    peek_expect_small(f->ctx, p, (UINT64_C(1) << 38) * 512, (size_t)k.gd_count * 8, true);
}

/* ---- parents ---- */

static void test_backing_cid(Fixture *f, gconstpointer data)
{
    make_mono(f, "base.vmdk", mono_desc);
    GenBuf b = {0};
    GenKdmv k = {.version = 1,
                 .capacity = 8192,
                 .grain = 128,
                 .gtes = 512,
                 .prealloc_gts = true,
                 .desc = "version=1\nCID=aaaa0001\nparentCID=11112222\n"
                         "createType=\"monolithicSparse\"\nparentFileNameHint=\"base.vmdk\"\n"};
    gen_kdmv(&b, &k);
    uint8_t g[65536];
    gen_fill(g, sizeof g, 3 * sizeof g, 9);
    gen_kdmv_grain(&b, &k, 3, g);
    put_gen(f, "child.vmdk", &b);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, "child.vmdk", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(img->backing_name, ==, "base.vmdk");
    uint8_t buf[65536];
    g_assert_true(vd_image_pread(img, buf, sizeof buf, 0, &err));
    g_assert_cmpint(buf[10], ==, gen_pattern(10, 1));
    g_assert_true(vd_image_pread(img, buf, sizeof buf, 3 * 65536, &err));
    g_assert_cmpint(buf[10], ==, gen_pattern(3 * 65536 + 10, 9));
    g_assert_cmpint(state_at(img, 0, NULL), ==, VD_EXTENT_DATA);
    g_assert_cmpint(state_at(img, 5 * 65536, NULL), ==, VD_EXTENT_ZERO); /* base's zero grain */

    make_mono(f, "base.vmdk", "version=1\nCID=11112223\nparentCID=ffffffff\n");
    expect_open_error(f, "child.vmdk", EIO, "parent CID changed");

    /* Hints written on another host find the parent next to the child. */
    const char *hints[] = {"C:\\VMs\\win\\base.vmdk", "/vmfs/volumes/ds1/vm/base.vmdk"};
    for (size_t i = 0; i < G_N_ELEMENTS(hints); i++) {
        g_autofree char *d = g_strdup_printf("version=1\nCID=1\nparentCID=11112223\n"
                                             "createType=\"monolithicSparse\"\n"
                                             "parentFileNameHint=\"%s\"\n",
                                             hints[i]);
        GenBuf c = {0};
        GenKdmv ck = {.version = 1,
                      .capacity = 8192,
                      .grain = 128,
                      .gtes = 512,
                      .prealloc_gts = true,
                      .desc = d};
        gen_kdmv(&c, &ck);
        put_gen(f, "moved.vmdk", &c);
        g_autoptr(VdImage) moved = open_img(f, "moved.vmdk", &err);
        g_assert_no_error(err);
        g_assert_nonnull(moved->backing);
        g_assert_cmpstr(moved->backing_name, ==, hints[i]);
    }
    /* A relative hint is taken as written: no guessing in this directory. */
    GenBuf c = {0};
    GenKdmv ck = {.version = 1,
                  .capacity = 8192,
                  .grain = 128,
                  .gtes = 512,
                  .prealloc_gts = true,
                  .desc = "version=1\nCID=1\nparentCID=11112223\n"
                          "parentFileNameHint=\"../elsewhere/base.vmdk\"\n"};
    gen_kdmv(&c, &ck);
    put_gen(f, "rel.vmdk", &c);
    expect_open_error(f, "rel.vmdk", ENOENT, "relative hint to a missing parent");

    /* A FIFO named as the parent is refused, not waited on. */
    g_autofree char *fifo = fpath(f, "pipe.vmdk");
    g_assert_cmpint(mkfifo(fifo, 0644), ==, 0);
    GenBuf p = {0};
    GenKdmv pk = {.version = 1,
                  .capacity = 8192,
                  .grain = 128,
                  .gtes = 512,
                  .prealloc_gts = true,
                  .desc = "version=1\nCID=1\nparentCID=11112223\n"
                          "parentFileNameHint=\"pipe.vmdk\"\n"};
    gen_kdmv(&p, &pk);
    put_gen(f, "onpipe.vmdk", &p);
    expect_open_error(f, "onpipe.vmdk", EIO, "a FIFO as parent (must not hang)");
}

int main(int argc, char *argv[])
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/vmdk/descriptor/parse", test_desc_parse);
    g_test_add_func("/vmdk/descriptor/invalid", test_desc_invalid);
    g_test_add_func("/vmdk/descriptor/set-cid", test_desc_set_cid);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, setup, fn, teardown)
    ADD("/vmdk/probe", test_probe);
    ADD("/vmdk/sparse/read", test_sparse_read);
    ADD("/vmdk/sparse/split", test_split);
    ADD("/vmdk/stream/footer", test_stream_footer);
    ADD("/vmdk/cowd/lone", test_cowd);
    ADD("/vmdk/cowd/snapshot-chain", test_cowd_snapshot);
    ADD("/vmdk/sesparse/read", test_sesparse);
    ADD("/vmdk/sesparse/bare", test_sesparse_bare);
    ADD("/vmdk/backing/cid", test_backing_cid);
    ADD("/vmdk/peek", test_peek);
#undef ADD
    return g_test_run();
}
