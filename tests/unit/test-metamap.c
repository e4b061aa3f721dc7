/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <string.h>

#include "src/vd-error.h"
#include "src/vd-log.h"
#include "src/vd-metamap.h"

static void test_find_after_seal(void)
{
    g_autoptr(VdMetaMap) m = vd_meta_map_new("t");
    /* Added out of order, as an open walking an L1 table would. */
    g_assert_true(vd_meta_map_add(m, 0x30000, 0x10000, "L2 table", NULL));
    g_assert_true(vd_meta_map_add(m, 0, 0x10000, "header", NULL));
    g_assert_true(vd_meta_map_add(m, 0x10000, 0x10000, "L1 table", NULL));
    g_assert_true(vd_meta_map_seal(m, NULL));
    VdMetaRange hit;
    g_assert_true(vd_meta_map_find(m, 0x10000, 1, &hit));
    g_assert_cmpstr(hit.what, ==, "L1 table");
    g_assert_true(vd_meta_map_find(m, 0x1ffff, 0x100, &hit));
    g_assert_cmpstr(hit.what, ==, "L1 table");
    g_assert_false(vd_meta_map_find(m, 0x20000, 0x10000, NULL)); /* the gap */
    g_assert_true(vd_meta_map_find(m, 0x20000, 0x10001, &hit));  /* one byte into the L2 */
    g_assert_cmpstr(hit.what, ==, "L2 table");
    g_assert_false(vd_meta_map_find(m, 0x40000, 0x100000, NULL));
    g_assert_true(vd_meta_map_find(m, 0, UINT64_MAX, NULL)); /* end overflows: clamped */
    g_assert_false(vd_meta_map_find(m, 0x5000, 0, NULL));
    /* A write over several: the first one it reaches is named. */
    g_assert_true(vd_meta_map_find(m, 0x8000, 0x30000, &hit));
    g_assert_cmpstr(hit.what, ==, "header");
    g_assert_cmpuint(hit.start, ==, 0);
}

static void test_overlap_refused(void)
{
    g_autoptr(VdMetaMap) m = vd_meta_map_new("img.qcow2");
    g_assert_true(vd_meta_map_add(m, 0x10000, 0x10000, "refcount table", NULL));
    /* A refcount block that is the refcount table itself (repro 05). */
    g_assert_true(vd_meta_map_add(m, 0x18000, 0x10000, "refcount block", NULL));
    g_autoptr(GError) err = NULL;
    g_assert_false(vd_meta_map_seal(m, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_assert_nonnull(strstr(err->message, "overlaps"));
    /* Still answers lookups, conservatively. */
    g_assert_true(vd_meta_map_find(m, 0x27000, 1, NULL));

    g_autoptr(VdMetaMap) s = vd_meta_map_new("t");
    g_assert_true(vd_meta_map_seal(s, NULL));
    g_assert_true(vd_meta_map_add(s, 0x10000, 0x10000, "L1 table", NULL));
    g_assert_true(vd_meta_map_add(s, 0x30000, 0x10000, "L2 table", NULL));
    g_clear_error(&err);
    g_assert_false(vd_meta_map_add(s, 0x1fe00, 0x200, "refcount block", &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);
    g_assert_false(vd_meta_map_add(s, 0x28000, 0x10000, "refcount block", &err));
    g_assert_true(
        vd_meta_map_add(s, 0x20000, 0x10000, "refcount block", NULL)); /* exactly between */
    g_assert_cmpuint(vd_meta_map_count(s), ==, 3);
}

static void test_shared_and_remove(void)
{
    g_autoptr(VdMetaMap) m = vd_meta_map_new("t");
    g_assert_true(vd_meta_map_add(m, 0x50000, 0x10000, "L2 table", NULL));
    g_assert_true(vd_meta_map_add(m, 0x50000, 0x10000, "L2 table", NULL)); /* a snapshot's too */
    g_assert_true(vd_meta_map_seal(m, NULL));
    g_assert_cmpuint(vd_meta_map_count(m), ==, 1);
    g_assert_true(vd_meta_map_add(m, 0x50000, 0x10000, "L2 table", NULL));
    g_assert_true(vd_meta_map_remove(m, 0x50000));
    g_assert_true(vd_meta_map_remove(m, 0x50000));
    g_assert_true(vd_meta_map_find(m, 0x50000, 1, NULL)); /* one reference left */
    g_assert_true(vd_meta_map_remove(m, 0x50000));
    g_assert_false(vd_meta_map_find(m, 0x50000, 1, NULL));
    g_assert_false(vd_meta_map_remove(m, 0x50000));
    g_autoptr(GError) err = NULL;
    g_assert_false(vd_meta_map_add(m, UINT64_MAX - 10, 100, "L2 table", &err));
}

static void test_many(void)
{
    /* Thousands of tables, inserted in reverse: lookups stay exact. */
    g_autoptr(VdMetaMap) m = vd_meta_map_new("t");
    g_assert_true(vd_meta_map_seal(m, NULL));
    for (int i = 4095; i >= 0; i--)
        g_assert_true(vd_meta_map_add(m, (uint64_t)i * 0x20000, 0x10000, "L2 table", NULL));
    for (int i = 0; i < 4096; i++) {
        g_assert_true(vd_meta_map_find(m, (uint64_t)i * 0x20000 + 0xffff, 1, NULL));
        g_assert_false(vd_meta_map_find(m, (uint64_t)i * 0x20000 + 0x10000, 0x10000, NULL));
    }
}

static void test_log_escape(void)
{
    g_assert_null(vd_log_escape("plain text, caf\xc3\xa9"));
    g_autofree char *e = vd_log_escape("x.qcow2\nvdiskfs: info: forged\x1b[2J");
    g_assert_cmpstr(e, ==, "x.qcow2\\x0avdiskfs: info: forged\\x1b[2J");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/metamap/find", test_find_after_seal);
    g_test_add_func("/metamap/overlap", test_overlap_refused);
    g_test_add_func("/metamap/shared", test_shared_and_remove);
    g_test_add_func("/metamap/many", test_many);
    g_test_add_func("/log/escape", test_log_escape);
    return g_test_run();
}
