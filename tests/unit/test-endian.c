/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <string.h>

#include "src/vd-endian.h"
#include "src/vd-io.h"

static void test_roundtrip(void)
{
    uint8_t b[8];
    vd_put_be64(b, 0x0102030405060708ull);
    g_assert_cmpint(b[0], ==, 1);
    g_assert_cmpint(b[7], ==, 8);
    g_assert_cmphex(vd_be64(b), ==, 0x0102030405060708ull);
    g_assert_cmphex(vd_be32(b + 4), ==, 0x05060708u);
    g_assert_cmphex(vd_be16(b + 6), ==, 0x0708u);
    vd_put_le64(b, 0x0102030405060708ull);
    g_assert_cmpint(b[0], ==, 8);
    g_assert_cmphex(vd_le64(b), ==, 0x0102030405060708ull);
    g_assert_cmphex(vd_le32(b), ==, 0x05060708u);
    g_assert_cmphex(vd_le16(b), ==, 0x0708u);
    vd_put_be32(b, 0xfffffffeu);
    g_assert_cmphex(vd_be32(b), ==, 0xfffffffeu);
    vd_put_le16(b, 0xabcd);
    g_assert_cmphex(vd_le16(b), ==, 0xabcd);
    vd_put_be16(b, 0xabcd);
    g_assert_cmphex(vd_be16(b), ==, 0xabcd);
    vd_put_le32(b, 0x80000001u);
    g_assert_cmphex(vd_le32(b), ==, 0x80000001u);
}

static void test_ranges(void)
{
    g_assert_true(vd_range_within(0, 10, 10));
    g_assert_false(vd_range_within(1, 10, 10));
    g_assert_false(vd_range_within(UINT64_MAX, 2, UINT64_MAX));
    g_assert_true(vd_is_pow2(65536));
    g_assert_false(vd_is_pow2(0));
    g_assert_false(vd_is_pow2(3 << 10));
}

static void test_is_zero(void)
{
    uint8_t buf[4096] = {0};
    g_assert_true(vd_buffer_is_zero(buf, sizeof buf));
    g_assert_true(vd_buffer_is_zero(buf, 0));
    g_assert_true(vd_buffer_is_zero(buf, 5));
    for (size_t i = 0; i < sizeof buf; i += 511) {
        buf[i] = 1;
        g_assert_false(vd_buffer_is_zero(buf, sizeof buf));
        buf[i] = 0;
    }
    buf[4095] = 1;
    g_assert_false(vd_buffer_is_zero(buf, sizeof buf));
    g_assert_true(vd_buffer_is_zero(buf, 4095));
}

int main(int argc, char *argv[])
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/endian/roundtrip", test_roundtrip);
    g_test_add_func("/io/ranges", test_ranges);
    g_test_add_func("/io/is-zero", test_is_zero);
    return g_test_run();
}
