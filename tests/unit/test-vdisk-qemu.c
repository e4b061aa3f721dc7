/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vdisk's qemu-img spellings: sizes, backing names, JSON of descriptions. */
#include "config.h"

#include <glib.h>

#include "cmd/vdisk-qemu.h"

static char *to_json(JsonNode *n)
{
    return json_to_string(n, FALSE);
}

static void test_size_to_str(void)
{
    static const struct {
        uint64_t v;
        const char *s;
    } cases[] = {
        {0, "0 B"},         {999, "999 B"},        {1000, "0.977 KiB"},     {339968, "332 KiB"},
        {1048576, "1 MiB"}, {1079296, "1.03 MiB"}, {10ull << 30, "10 GiB"},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *s = vdq_size_to_str(cases[i].v);
        g_assert_cmpstr(s, ==, cases[i].s);
    }
}

static void test_full_backing_name(void)
{
    static const char *const cases[][3] = {
        {"top.qcow2", "base.qcow2", "base.qcow2"},
        {"./top.qcow2", "base.qcow2", "./base.qcow2"},
        {"/d/top.qcow2", "base.qcow2", "/d/base.qcow2"},
        {"/d/top.qcow2", "sub/base.qcow2", "/d/sub/base.qcow2"},
        {"/d/top.qcow2", "/e/base.qcow2", "/e/base.qcow2"},
        {"d/top.qcow2", "nbd://h/x", "nbd://h/x"},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *s = vdq_full_backing_name(cases[i][0], cases[i][1]);
        g_assert_cmpstr(s, ==, cases[i][2]);
    }
}

static void test_info_object(void)
{
    g_autoptr(VdInfo) info = vd_info_new();
    vd_info_add_u64(info, "cluster_size", 65536);
    vd_info_add_str(info, "name", "a\"b\xe9");
    vd_info_add_bool(info, "dirty", false);
    vd_info_add_list_item(info, "features", "x");
    vd_info_add_list_item(info, "features", "y");
    g_autoptr(JsonNode) n = vdq_info_object(info);
    g_autofree char *s = to_json(n);
    /* Numbers stay numbers, lists arrays, and byte 0xe9 becomes U+FFFD. */
    g_assert_cmpstr(s, ==,
                    "{\"cluster_size\":65536,\"name\":\"a\\\"b\xef\xbf\xbd\",\"dirty\":false,"
                    "\"features\":[\"x\",\"y\"]}");
    g_assert_true(g_utf8_validate(s, -1, NULL));
}

static void test_snapshot_list(void)
{
    g_autoptr(GPtrArray) snaps = g_ptr_array_new_with_free_func(g_free);
    VdSnapshotInfo *sn = g_new0(VdSnapshotInfo, 1);
    sn->id = "1";
    sn->name = "sn\xe9";
    sn->date_sec = 1700000000;
    sn->date_nsec = 5000;
    sn->vm_clock_nsec = 3 * 1000000000ull + 7;
    sn->vm_state_size = 4096;
    sn->virtual_size = 1048576;
    g_ptr_array_add(snaps, sn);
    g_autoptr(JsonNode) n = vdq_snapshot_list(snaps);
    JsonObject *o = json_array_get_object_element(json_node_get_array(n), 0);
    g_assert_cmpstr(json_object_get_string_member(o, "name"), ==, "sn\xef\xbf\xbd");
    g_assert_cmpint(json_object_get_int_member(o, "date-sec"), ==, 1700000000);
    g_assert_cmpint(json_object_get_int_member(o, "vm-clock-sec"), ==, 3);
    g_assert_cmpint(json_object_get_int_member(o, "vm-clock-nsec"), ==, 7);
    g_assert_cmpint(json_object_get_int_member(o, "vm-state-size"), ==, 4096);
    /* icount only when the image recorded one, as qemu-img. */
    g_assert_false(json_object_has_member(o, "icount"));
    g_assert_true(json_object_has_member(o, "vdiskfs"));
}

int main(int argc, char *argv[])
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/vdisk-qemu/size-to-str", test_size_to_str);
    g_test_add_func("/vdisk-qemu/full-backing-name", test_full_backing_name);
    g_test_add_func("/vdisk-qemu/info-object", test_info_object);
    g_test_add_func("/vdisk-qemu/snapshot-list", test_snapshot_list);
    return g_test_run();
}
