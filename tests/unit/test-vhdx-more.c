/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The vhdx driver: hostile headers and blocks, a writer killed with
 * SIGKILL, readers racing a writer. */
#include "config.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "tests/unit/test-guard.h"
#include "tests/unit/test-peek.h"
#include "tests/unit/test-vhdx.h"

/* ---- hostile headers ---- */

typedef void (*Mutator)(GByteArray *b);

static void m_headers_crc(GByteArray *b)
{
    b->data[0x10000 + 100] ^= 1;
    b->data[0x20000 + 100] ^= 1;
}
static void m_same_seq(GByteArray *b)
{
    b->data[0x10000 + 8] = 2;
    b->data[0x10000 + 200] = 1; /* differs from the other */
    vhdxgen_fix_header(b, 0);
}
static void m_no_signature(GByteArray *b)
{
    b->data[0] = 'X';
}
static void m_regions(GByteArray *b)
{
    b->data[0x30000 + 100] ^= 1;
    b->data[0x40000 + 100] ^= 1;
}
static void m_bat_past_eof(GByteArray *b)
{
    for (unsigned w = 0; w < 2; w++) {
        put_le64_at(b->data + (w ? 0x40000 : 0x30000) + 32, 1ull << 40);
        vhdxgen_fix_region(b, w);
    }
}
static void m_bat_misaligned(GByteArray *b)
{
    for (unsigned w = 0; w < 2; w++) {
        put_le64_at(b->data + (w ? 0x40000 : 0x30000) + 32, VHDXGEN_BAT_OFFSET + 4096);
        vhdxgen_fix_region(b, w);
    }
}
static void m_regions_overlap(GByteArray *b)
{
    for (unsigned w = 0; w < 2; w++) {
        put_le64_at(b->data + (w ? 0x40000 : 0x30000) + 32, VHDXGEN_LOG_OFFSET);
        vhdxgen_fix_region(b, w);
    }
}
static void m_region_count(GByteArray *b)
{
    for (unsigned w = 0; w < 2; w++) {
        set_le32(b->data + (w ? 0x40000 : 0x30000) + 8, 100000);
        vhdxgen_fix_region(b, w);
    }
}
static void m_unknown_region(GByteArray *b)
{
    for (unsigned w = 0; w < 2; w++) {
        uint8_t *r = b->data + (w ? 0x40000 : 0x30000);
        set_le32(r + 8, 3);
        memset(r + 80, 0x42, 16);
        put_le64_at(r + 96, 5 * MiB);
        set_le32(r + 104, MiB);
        set_le32(r + 108, 1);
        vhdxgen_fix_region(b, w);
    }
}
static uint8_t *meta_item(GByteArray *b, int i)
{
    uint8_t *e = b->data + VHDXGEN_META_OFFSET + 32 + 32 * i;
    uint32_t off = e[16] | e[17] << 8 | e[18] << 16 | (uint32_t)e[19] << 24;
    return b->data + VHDXGEN_META_OFFSET + off;
}
static void m_block_size(GByteArray *b)
{
    set_le32(meta_item(b, 0), 3 * MiB);
}
static void m_block_size_small(GByteArray *b)
{
    set_le32(meta_item(b, 0), 4096);
}
static void m_disk_size(GByteArray *b)
{
    put_le64_at(meta_item(b, 1), 1ull << 62);
}
static void m_disk_size_bat(GByteArray *b)
{
    put_le64_at(meta_item(b, 1), 60ull << 40); /* BAT region far too small */
}
static void m_sector_size(GByteArray *b)
{
    set_le32(meta_item(b, 3), 1000);
}
static void m_item_offset(GByteArray *b)
{
    set_le32(b->data + VHDXGEN_META_OFFSET + 32 + 16, 0x7fffffff);
}
static void m_item_count(GByteArray *b)
{
    b->data[VHDXGEN_META_OFFSET + 10] = 0xff;
    b->data[VHDXGEN_META_OFFSET + 11] = 0xff;
}
static void m_unknown_item(GByteArray *b)
{
    b->data[VHDXGEN_META_OFFSET + 32 + 32 * 2] ^= 0x55; /* page 83 GUID, required */
}
static void m_log_past_eof(GByteArray *b)
{
    for (unsigned s = 0; s < 2; s++) {
        put_le64_at(b->data + (s ? 0x20000 : 0x10000) + 72, 1ull << 40);
        vhdxgen_fix_header(b, s);
    }
}
static void m_log_version(GByteArray *b)
{
    for (unsigned s = 0; s < 2; s++) {
        b->data[(s ? 0x20000 : 0x10000) + 64] = 7;
        vhdxgen_fix_header(b, s);
    }
}

static void test_hostile_open(Fixture *f, gconstpointer data)
{
    struct {
        const char *what;
        Mutator m;
    } cases[] = {
        {"both header CRCs", m_headers_crc},
        {"equal sequence numbers", m_same_seq},
        {"no identifier", m_no_signature},
        {"both region tables", m_regions},
        {"BAT past EOF", m_bat_past_eof},
        {"BAT misaligned", m_bat_misaligned},
        {"region count", m_region_count},
        {"BAT over the log", m_regions_overlap},
        {"unknown required region", m_unknown_region},
        {"block size 3 MiB", m_block_size},
        {"block size 4 KiB", m_block_size_small},
        {"disk size 2^62", m_disk_size},
        {"BAT too small", m_disk_size_bat},
        {"sector size 1000", m_sector_size},
        {"item offset", m_item_offset},
        {"item count", m_item_count},
        {"unknown required item", m_unknown_item},
        {"log past EOF", m_log_past_eof},
        {"log version", m_log_version},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        VhdxGen g = parent_gen();
        g_autoptr(GByteArray) b = vhdxgen_build(&g);
        cases[i].m(b);
        gen_expect_refused(f, b, "bad.vhdx", "vhdx", cases[i].what);
    }
    /* One valid header is enough. */
    VhdxGen g = parent_gen();
    g_autoptr(GByteArray) b = vhdxgen_build(&g);
    b->data[0x20000 + 100] ^= 1;
    g_autofree char *p = g_build_filename(f->dir, "one.vhdx", NULL);
    g_assert_true(gen_write_file(p, b));
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = gen_open(f, p, false, &err);
    g_assert_no_error(err);
}

static void test_hostile_blocks(Fixture *f, gconstpointer data)
{
    struct {
        const char *what;
        uint64_t entry;
    } cases[] = {
        {"payload past EOF", (1ull << 40) | 6},
        {"payload in the headers", 6},
        {"partially present without parent", (4ull << 20) | 7},
        {"reserved state 4", 4},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        VhdxGen g = parent_gen();
        g_autoptr(GByteArray) b = vhdxgen_build(&g);
        put_le64_at(b->data + VHDXGEN_BAT_OFFSET + 8 * 2, cases[i].entry);
        g_autofree char *p = g_build_filename(f->dir, "bad.vhdx", NULL);
        g_assert_true(gen_write_file(p, b));
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = gen_open(f, p, false, &err);
        g_assert_no_error(err);
        uint8_t buf[4096];
        g_assert_true(vd_image_pread(img, buf, sizeof buf, 0, &err));
        g_assert_false(vd_image_pread(img, buf, sizeof buf, 2 * BLOCK, &err));
        g_test_message("%s: %s", cases[i].what, err->message);
        g_assert_error(err, VD_ERROR, EIO);
    }
    /* A differencing disk whose partially present block has no bitmap. */
    VhdxGen pg = parent_gen(), cg = child_gen();
    g_autofree char *pp = write_gen(f->dir, "parent.vhdx", &pg);
    g_autoptr(GByteArray) b = vhdxgen_build(&cg);
    uint64_t cr = ((uint64_t)1 << 23) * 512 / BLOCK;
    put_le64_at(b->data + VHDXGEN_BAT_OFFSET + 8 * cr, 0);
    g_autofree char *cp = write_bytes(f->dir, "child.vhdx", b);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = gen_open(f, cp, false, &err);
    g_assert_no_error(err);
    uint8_t buf[512];
    g_assert_false(vd_image_pread(img, buf, sizeof buf, 0, &err));
    g_assert_error(err, VD_ERROR, EIO);
}

/* ---- writes over metadata ---- */

/* A differencing disk with one fully present block (3) and no sector
 * bitmap yet. */
static unsigned bare_child_block(void *ctx, uint64_t idx, uint8_t *data)
{
    if (idx != 3)
        return 0;
    memset(data, 0x33, BLOCK);
    return 6;
}

/* A BAT entry pointing a block at each kind of metadata: the write is
 * refused before it lands and every later write of the session too. VHDX
 * has no flag to record it on disk. */
static void test_write_over_metadata(Fixture *f, gconstpointer data)
{
    enum { HEADER, LOG, META, BAT, BITMAP, NEW_BITMAP };
    static const char *const what[] = {"the header region",     "the log",
                                       "the metadata region",   "the BAT",
                                       "a sector bitmap block", "a bitmap block made this session"};
    VhdxGen pg = parent_gen();
    g_autofree char *pp = write_gen(f->dir, "parent.vhdx", &pg);
    for (int c = HEADER; c <= NEW_BITMAP; c++) {
        g_test_message("block 1 over %s", what[c]);
        VhdxGen g = c < BITMAP ? parent_gen() : child_gen();
        if (c == NEW_BITMAP)
            g.block = bare_child_block, g.sector = NULL;
        g_autoptr(GByteArray) b = vhdxgen_build(&g);
        uint64_t end = ((uint64_t)b->len + MiB - 1) / MiB * MiB;
        /* child.vhdx: block 0 is partially present, its bitmap after the
         * three present blocks. A write to block 5 of the bare child makes
         * a bitmap block at the end of the file (and the block after it). */
        uint64_t target[] = {0,
                             VHDXGEN_LOG_OFFSET,
                             VHDXGEN_META_OFFSET,
                             VHDXGEN_BAT_OFFSET,
                             VHDXGEN_DATA_OFFSET + 3 * MiB,
                             end};
        put_le64_at(b->data + VHDXGEN_BAT_OFFSET + 8 * 1, target[c] | 6);
        g_autofree char *p = write_bytes(f->dir, "meta.vhdx", b);
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) rw = gen_open(f, p, true, &err);
        g_assert_no_error(err);
        /* A good write first: the session's first write updates the
         * headers, as it should. */
        uint8_t d[4096];
        memset(d, 0x77, sizeof d);
        uint64_t good = c < BITMAP ? 0 : 3 * MiB;
        g_assert_true(vd_image_pwrite(rw, d, sizeof d, c == NEW_BITMAP ? 5 * MiB : good, &err));
        g_assert_true(vd_image_flush(rw, &err));
        if (c != HEADER) {
            /* The mapping looks valid: reading it shows the metadata. */
            g_autofree uint8_t *got = g_malloc(4096);
            g_autofree uint8_t *meta = guard_read_host(p, target[c], 4096);
            g_assert_true(vd_image_pread(rw, got, 4096, 1 * MiB, &err));
            g_assert_cmpmem(got, 4096, meta, 4096);
        }
        guard_expect_write_refused(rw, p, 1 * MiB + 7, 10, target[c], 64 * 1024, good);
    }
}

/* A sector bitmap block that is also the BAT: a read-write open refuses it. */
static void test_bitmap_over_bat(Fixture *f, gconstpointer data)
{
    VhdxGen pg = parent_gen(), cg = child_gen();
    g_autofree char *pp = write_gen(f->dir, "parent.vhdx", &pg);
    g_autoptr(GByteArray) b = vhdxgen_build(&cg);
    uint64_t cr = ((uint64_t)1 << 23) * 512 / BLOCK;
    put_le64_at(b->data + VHDXGEN_BAT_OFFSET + 8 * cr, VHDXGEN_BAT_OFFSET | 6);
    g_autofree char *p = write_bytes(f->dir, "child.vhdx", b);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = gen_open(f, p, true, &err);
    g_assert_null(img);
    g_test_message("%s", err->message);
    g_assert_error(err, VD_ERROR, EIO);
}

/* ---- peek ---- */

/* Peek reads the headers, the log and the metadata region: the same size
 * as an open, also when only a dirty log's replay gives it; a 32 MiB BAT
 * region is not read. */
static void test_peek(Fixture *f, gconstpointer data)
{
    VhdxGen pg = parent_gen(), cg = child_gen();
    g_autofree char *pp = write_gen(f->dir, "parent.vhdx", &pg);
    g_autofree char *cp = write_gen(f->dir, "child.vhdx", &cg);
    peek_expect_same(f->ctx, pp);
    peek_expect_same(f->ctx, cp);

    /* A log that halves the disk: the size on disk is not the size. */
    g_autoptr(GByteArray) before = vhdxgen_build(&pg);
    g_autoptr(GByteArray) after = g_byte_array_new();
    g_byte_array_append(after, before->data, before->len);
    bool found = false;
    for (uint64_t o = VHDXGEN_META_OFFSET + 65536; o < VHDXGEN_META_OFFSET + MiB && !found;
         o += 8) {
        if (vd_le64(after->data + o) == DISK_SIZE) {
            put_le64_at(after->data + o, DISK_SIZE / 2);
            found = true;
        }
    }
    g_assert_true(found);
    vhdxgen_make_dirty(before, after, 100, 0, 7, false);
    g_autofree char *dp = write_bytes(f->dir, "dirty.vhdx", before);
    peek_expect_same(f->ctx, dp);
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = vd_image_peek(f->ctx, dp, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(img), ==, DISK_SIZE / 2);

    /* No blocks, and a BAT region of 32 MiB. */
    VhdxGen eg = {.size = DISK_SIZE, .block_size = BLOCK, .logical_sector = 512};
    g_autoptr(GByteArray) e = vhdxgen_build(&eg);
    for (unsigned w = 0; w < 2; w++) {
        set_le32(e->data + (w ? 0x40000 : 0x30000) + 40, 32 * MiB);
        vhdxgen_fix_region(e, w);
    }
    g_byte_array_set_size(e, VHDXGEN_BAT_OFFSET + 32 * MiB);
    memset(e->data + VHDXGEN_DATA_OFFSET, 0, VHDXGEN_BAT_OFFSET + 32 * MiB - VHDXGEN_DATA_OFFSET);
    g_autofree char *hp = write_bytes(f->dir, "bigbat.vhdx", e);
    peek_expect_small(f->ctx, hp, DISK_SIZE, 32 * MiB, false);
}

/* ---- SIGKILL during writes ---- */

static void check_stamps(VdImage *img, uint64_t size, const char *what)
{
    g_autofree uint8_t *buf = g_malloc(MiB);
    for (uint64_t base = 0; base < size; base += MiB) {
        g_autoptr(GError) err = NULL;
        g_assert_true(vd_image_pread(img, buf, MiB, base, &err));
        for (uint64_t off = 0; off < MiB; off += 512) {
            if (!gen_sector_ok(buf + off, base + off)) {
                g_test_message("%s: sector at 0x%" G_GINT64_MODIFIER "x is neither zero nor a "
                               "complete stamp",
                               what, base + off);
                g_test_fail();
                return;
            }
        }
    }
}

static void test_sigkill(Fixture *f, gconstpointer data)
{
    const uint64_t size = 512 * MiB;
    g_autofree char *p = g_build_filename(f->dir, "kill.vhdx", NULL);
    g_autofree char *qemu_img = g_find_program_in_path("qemu-img");
    GRand *r = g_rand_new_with_seed(1234);
    for (int round = 0; round < 6; round++) {
        VhdxGen g = {.size = size, .block_size = BLOCK, .logical_sector = 512};
        gen_guid(g.data_write_guid, PARENT_DWG);
        g_autoptr(GByteArray) b = vhdxgen_build(&g);
        g_assert_true(gen_write_file(p, b));
        guint32 seed = g_rand_int(r);
        pid_t pid = fork();
        g_assert_cmpint(pid, >=, 0);
        if (pid == 0) {
            GRand *cr = g_rand_new_with_seed(seed);
            GError *err = NULL;
            VdOpenOptions o = {.read_only = false};
            VdImage *img = vd_image_open(f->ctx, p, &o, &err);
            if (img == NULL)
                _exit(3);
            uint8_t *buf = g_malloc(GEN_STAMP_CHUNK);
            for (uint64_t gen = 1;; gen++) {
                uint64_t off = (uint64_t)g_rand_int_range(cr, 0, (gint32)(size / GEN_STAMP_CHUNK)) *
                               GEN_STAMP_CHUNK;
                gen_stamp(buf, off, gen);
                if (!vd_image_pwrite(img, buf, GEN_STAMP_CHUNK, off, &err))
                    _exit(4);
                if (gen % 200 == 0 && !vd_image_flush(img, &err))
                    _exit(5);
            }
        }
        g_usleep((gulong)g_rand_int_range(r, 20000, 150000));
        kill(pid, SIGKILL);
        int status;
        g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
        g_assert_true(WIFSIGNALED(status));

        g_autoptr(GError) err = NULL;
        {
            g_autoptr(VdImage) img = gen_open(f, p, false, &err);
            g_assert_no_error(err);
            g_autoptr(VdInfo) info = vd_info_describe(img);
            g_test_message("round %d: log %s", round, vd_info_get(info, "log")->str);
            check_stamps(img, size, "read-only after SIGKILL");
        }
        {
            g_autoptr(VdImage) img = gen_open(f, p, true, &err);
            g_assert_no_error(err);
            check_stamps(img, size, "read-write after SIGKILL");
        }
        if (qemu_img != NULL) {
            const char *argv[] = {qemu_img, "check", "-f", "vhdx", p, NULL};
            int st;
            g_autofree char *out = NULL, *errout = NULL;
            g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                                       &errout, &st, NULL));
            if (!g_spawn_check_wait_status(st, NULL)) {
                g_test_message("qemu-img check: %s%s", out, errout);
                g_test_fail();
            }
        }
    }
    g_rand_free(r);
}

/* Readers run while a writer allocates blocks: every sector they see is
 * zero or a complete stamp. A small BAT cache over a 64 GiB disk makes
 * the readers load and evict BAT pieces all the time. */
typedef struct {
    VdImage *img;
    uint64_t size;
    gint done;
    gint bad;
    gint next_seed; /* each reader takes its own */
} Race;

static gpointer race_reader(gpointer data)
{
    Race *r = data;
    GRand *rnd = g_rand_new_with_seed((guint32)g_atomic_int_add(&r->next_seed, 1));
    g_autofree uint8_t *buf = g_malloc(GEN_STAMP_CHUNK);
    while (!g_atomic_int_get(&r->done)) {
        /* Half the reads near the start, where the writer is busy. */
        uint64_t range = g_rand_boolean(rnd) ? 64 * MiB : r->size;
        uint64_t off =
            g_rand_int_range(rnd, 0, (gint32)(range / 512 - GEN_STAMP_CHUNK / 512)) * 512ull;
        g_autoptr(GError) err = NULL;
        if (!vd_image_pread(r->img, buf, GEN_STAMP_CHUNK, off, &err)) {
            g_atomic_int_inc(&r->bad);
            break;
        }
        for (uint64_t k = 0; k < GEN_STAMP_CHUNK; k += 512) {
            if (!gen_sector_ok(buf + k, off + k))
                g_atomic_int_inc(&r->bad);
        }
    }
    g_rand_free(rnd);
    return NULL;
}

static void test_concurrent(Fixture *f, gconstpointer data)
{
    const uint64_t size = 64ull << 30;
    VhdxGen g = {.size = size, .block_size = BLOCK, .logical_sector = 512};
    gen_guid(g.data_write_guid, PARENT_DWG);
    g_autoptr(GByteArray) b = vhdxgen_build(&g);
    g_autofree char *p = write_bytes(f->dir, "race.vhdx", b);
    f->ctx->metadata_cache_bytes = 4 * 64 * 1024;
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = gen_open(f, p, true, &err);
    g_assert_no_error(err);
    Race r = {.img = img, .size = size, .next_seed = 100};
    GThread *th[4];
    for (int i = 0; i < 4; i++) {
        th[i] = g_thread_new("reader", race_reader, &r);
        g_usleep(1000);
    }
    GRand *rnd = g_rand_new_with_seed(5);
    g_autofree uint8_t *buf = g_malloc(GEN_STAMP_CHUNK);
    for (uint64_t gen = 1; gen <= 300; gen++) {
        uint64_t range = (gen % 3) ? 64 * MiB : size;
        uint64_t off =
            g_rand_int_range(rnd, 0, (gint32)(range / GEN_STAMP_CHUNK)) * (uint64_t)GEN_STAMP_CHUNK;
        gen_stamp(buf, off, gen);
        g_assert_true(vd_image_pwrite(img, buf, GEN_STAMP_CHUNK, off, &err));
        if (gen % 100 == 0)
            g_assert_true(vd_image_flush(img, &err));
    }
    g_atomic_int_set(&r.done, 1);
    for (int i = 0; i < 4; i++)
        g_thread_join(th[i]);
    g_rand_free(rnd);
    g_assert_cmpint(g_atomic_int_get(&r.bad), ==, 0);
}

void vhdx_add_more_tests(void)
{
#define ADD(path, fn) g_test_add(path, Fixture, NULL, gen_fixture_setup, fn, gen_fixture_teardown)
    ADD("/vhdx/hostile/open", test_hostile_open);
    ADD("/vhdx/hostile/blocks", test_hostile_blocks);
    ADD("/vhdx/write-over-metadata", test_write_over_metadata);
    ADD("/vhdx/bitmap-over-bat", test_bitmap_over_bat);
    ADD("/vhdx/peek", test_peek);
    ADD("/vhdx/sigkill", test_sigkill);
    ADD("/vhdx/concurrent-read-write", test_concurrent);
#undef ADD
}
