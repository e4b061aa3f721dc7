/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The driver and container tables: what each declares agrees with what it
 * implements, so that the block layer's reliance on capabilities holds. */
#include "config.h"

#include <string.h>

#include "src/vd-container.h"
#include "src/vd-driver.h"

static void test_drivers(void)
{
    g_autoptr(GHashTable) names = g_hash_table_new(g_str_hash, g_str_equal);
    unsigned n = 0;
    for (const VdDriver *const *d = vd_drivers; *d != NULL; d++, n++) {
        const VdDriver *drv = *d;
        g_test_message("driver %s", drv->name);
        g_assert_nonnull(drv->name);
        g_assert_nonnull(drv->description);
        g_assert_false(g_hash_table_contains(names, drv->name));
        g_hash_table_add(names, (gpointer)drv->name);
        g_assert_true(vd_driver_find(drv->name) == drv);
        g_assert_nonnull(drv->probe);
        g_assert_nonnull(drv->open);
        g_assert_nonnull(drv->block_status);
        /* Listings never open images: every driver peeks. */
        g_assert_nonnull(drv->peek);
        unsigned caps = drv->caps;
        g_assert_cmpint((caps & VD_CAP_WRITE) != 0, ==, drv->pwrite != NULL);
        if (caps & (VD_CAP_SERIAL_WRITES | VD_CAP_GROW_ON_WRITE | VD_CAP_SHRINK))
            g_assert_true(caps & VD_CAP_WRITE);
        if (drv->pwrite_fast != NULL)
            g_assert_true(caps & VD_CAP_SERIAL_WRITES);
        if (caps & VD_CAP_SHRINK)
            g_assert_nonnull(drv->truncate);
        if (drv->write_zeroes != NULL || drv->truncate != NULL || drv->flush != NULL)
            g_assert_true(caps & VD_CAP_WRITE);
        g_assert_cmpint((caps & VD_CAP_SNAPSHOTS) != 0, ==, drv->snapshot_list != NULL);
        g_assert_cmpint(drv->snapshot_list != NULL, ==, drv->snapshot_open != NULL);
        if (drv->check_backing != NULL)
            g_assert_true(caps & VD_CAP_BACKING);
        if (drv->create != NULL || drv->mark_corrupt != NULL)
            g_assert_true(caps & VD_CAP_WRITE);
    }
    g_assert_cmpuint(n, >=, 14);
}

static void test_containers(void)
{
    g_autoptr(GHashTable) names = g_hash_table_new(g_str_hash, g_str_equal);
    for (const VdContainer *const *c = vd_containers; *c != NULL; c++) {
        g_assert_nonnull((*c)->name);
        g_assert_false(g_hash_table_contains(names, (*c)->name));
        g_hash_table_add(names, (gpointer)(*c)->name);
        g_assert_nonnull((*c)->probe);
        g_assert_nonnull((*c)->open);
        /* A probe must not claim empty or tiny input. */
        static const uint8_t zero[VD_CONTAINER_HEAD];
        g_assert_false((*c)->probe(zero, sizeof zero, sizeof zero));
        g_assert_false((*c)->probe(zero, 0, 0));
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/drivers/table", test_drivers);
    g_test_add_func("/drivers/containers", test_containers);
    return g_test_run();
}
