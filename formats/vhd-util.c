/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <string.h>
#include <sys/random.h>

#include "formats/vhd-util.h"
#include "src/vd-endian.h"
#include "src/vd-image.h"

char *vhd_utf16_to_utf8(const uint8_t *p, size_t len, bool big_endian)
{
    size_t n = len / 2;
    g_autofree gunichar2 *units = g_new(gunichar2, n + 1);
    size_t used = 0;
    for (; used < n; used++) {
        uint16_t u = big_endian ? vd_be16(p + 2 * used) : vd_le16(p + 2 * used);
        if (u == 0)
            break;
        units[used] = u;
    }
    return g_utf16_to_utf8(units, (glong)used, NULL, NULL, NULL);
}

uint8_t *vhd_utf8_to_utf16le(const char *s, size_t *out_len)
{
    glong n = 0;
    g_autofree gunichar2 *units = g_utf8_to_utf16(s, -1, NULL, &n, NULL);
    if (units == NULL)
        n = 0;
    uint8_t *out = g_malloc((size_t)n * 2 + 2);
    for (glong i = 0; i < n; i++)
        vd_put_le16(out + 2 * i, units[i]);
    *out_len = (size_t)n * 2;
    return out;
}

static uint32_t crc32c_table[256];
static gsize crc32c_once;

static void crc32c_init(void)
{
    if (g_once_init_enter(&crc32c_once)) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
            crc32c_table[i] = c;
        }
        g_once_init_leave(&crc32c_once, 1);
    }
}

static uint32_t crc32c_update(uint32_t crc, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        crc = crc32c_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

uint32_t vhd_crc32c(const void *buf, size_t len)
{
    crc32c_init();
    return ~crc32c_update(0xffffffffu, buf, len);
}

uint32_t vhd_crc32c_skip(const uint8_t *buf, size_t len, size_t csum_off)
{
    static const uint8_t zero[4];
    crc32c_init();
    uint32_t crc = crc32c_update(0xffffffffu, buf, csum_off);
    crc = crc32c_update(crc, zero, 4);
    crc = crc32c_update(crc, buf + csum_off + 4, len - csum_off - 4);
    return ~crc;
}

char *vhd_guid_to_string(const uint8_t g[16])
{
    return g_strdup_printf("%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", vd_le32(g),
                           vd_le16(g + 4), vd_le16(g + 6), g[8], g[9], g[10], g[11], g[12], g[13],
                           g[14], g[15]);
}

char *vhd_uuid_to_string(const uint8_t u[16])
{
    return g_strdup_printf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                           u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
                           u[12], u[13], u[14], u[15]);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool vhd_guid_from_string(const char *s, uint8_t g[16])
{
    /* Text order: 4-2-2-2-6 bytes; the first three groups are stored
     * little-endian. */
    uint8_t text[16];
    size_t n = 0;
    bool braced = *s == '{';
    if (braced)
        s++;
    for (int i = 0; i < 36;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
            i++;
            continue;
        }
        int hi = hexval(s[i]);
        int lo = hi < 0 ? -1 : hexval(s[i + 1]);
        if (lo < 0)
            return false;
        text[n++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    s += 36;
    if (braced && *s++ != '}')
        return false;
    if (*s != '\0' || n != 16)
        return false;
    g[0] = text[3];
    g[1] = text[2];
    g[2] = text[1];
    g[3] = text[0];
    g[4] = text[5];
    g[5] = text[4];
    g[6] = text[7];
    g[7] = text[6];
    memcpy(g + 8, text + 8, 8);
    return true;
}

void vhd_random_guid(uint8_t g[16])
{
    size_t got = 0;
    while (got < 16) {
        ssize_t n = getrandom(g + got, 16 - got, 0);
        if (n <= 0) {
            for (; got < 16; got++)
                g[got] = (uint8_t)g_random_int();
            break;
        }
        got += (size_t)n;
    }
    /* Version 4, RFC 4122 variant (Data3's high nibble is byte 7). */
    g[7] = (uint8_t)((g[7] & 0x0f) | 0x40);
    g[8] = (uint8_t)((g[8] & 0x3f) | 0x80);
}

bool vhd_guid_is_zero(const uint8_t g[16])
{
    for (int i = 0; i < 16; i++) {
        if (g[i] != 0)
            return false;
    }
    return true;
}

void vhd_path_candidates(const char *recorded, GPtrArray *out)
{
    if (recorded == NULL || *recorded == '\0')
        return;
    g_autofree char *p = g_strdup(recorded);
    for (char *c = p; *c; c++) {
        if (*c == '\\')
            *c = '/';
    }
    bool drive = g_ascii_isalpha(p[0]) && p[1] == ':';
    bool unc = p[0] == '/' && p[1] == '/';
    if (!drive && !unc) {
        const char *rel = p;
        while (rel[0] == '.' && rel[1] == '/')
            rel += 2;
        if (*rel != '\0')
            g_ptr_array_add(out, g_strdup(rel));
    }
    const char *base = strrchr(p, '/');
    base = base ? base + 1 : (drive ? p + 2 : p);
    if (*base != '\0' && strcmp(base, ".") != 0 && strcmp(base, "..") != 0 &&
        (drive || unc || strcmp(base, p) != 0))
        g_ptr_array_add(out, g_strdup(base));
}

void vhd_set_parent(VdImage *img, const char *recorded, const char *format,
                    const GPtrArray *candidates)
{
    vd_image_set_backing(img, recorded, format);
    /* set_backing made the recorded text the first candidate; the decoded
     * host paths replace it, in order of preference. */
    g_ptr_array_remove_index(img->backing_candidates, 0);
    for (guint i = 0; i < candidates->len; i++) {
        const char *c = g_ptr_array_index(candidates, i);
        bool dup = false;
        for (guint j = 0; j < img->backing_candidates->len && !dup; j++)
            dup = strcmp(g_ptr_array_index(img->backing_candidates, j), c) == 0;
        if (!dup)
            vd_image_add_backing_candidate(img, c);
    }
}
