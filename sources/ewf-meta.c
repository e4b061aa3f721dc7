/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * EWF acquisition metadata: the header and header2 sections' text (a
 * "main" category whose line of tab-separated identifiers names the
 * values on the line after it), and the hashes.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sources/ewf-internal.h"

/* Identifiers shown, and under which names (user.vdiskfs.ewf.NAME). The
 * password hash, "dc" and "ext" are left out. */
static const struct {
    const char *id, *name;
    bool date;
} fields[] = {
    {"c", "case_number", false},    {"n", "evidence_number", false},
    {"e", "examiner", false},       {"a", "description", false},
    {"t", "notes", false},          {"m", "acquiry_date", true},
    {"u", "system_date", true},     {"av", "acquiry_software", false},
    {"ov", "acquiry_os", false},    {"md", "model", false},
    {"sn", "serial_number", false}, {"l", "device_label", false},
    {"pid", "process_id", false},   {"r", "compression", false},
};

void ewf_meta_init(EwfMeta *m)
{
    memset(m, 0, sizeof *m);
    m->values = g_ptr_array_new_with_free_func(g_free);
    m->errors = g_ptr_array_new_with_free_func(g_free);
}

void ewf_meta_clear(EwfMeta *m)
{
    g_clear_pointer(&m->values, g_ptr_array_unref);
    g_clear_pointer(&m->errors, g_ptr_array_unref);
}

static bool has_value(const EwfMeta *m, const char *name)
{
    for (guint i = 0; i + 1 < m->values->len; i += 2) {
        if (strcmp(m->values->pdata[i], name) == 0)
            return true;
    }
    return false;
}

/* Dates are POSIX seconds (header2, linen) or "year month day hour
 * minute second" in the acquiring system's local time (header). */
static char *format_date(const char *v)
{
    char *end;
    if (g_ascii_isdigit(v[0])) {
        guint64 t = g_ascii_strtoull(v, &end, 10);
        if (*end == 0 && t < (1ull << 40)) {
            g_autoptr(GDateTime) d = g_date_time_new_from_unix_utc((gint64)t);
            if (d != NULL)
                return g_date_time_format(d, "%Y-%m-%dT%H:%M:%SZ");
        }
    }
    int f[6];
    if (sscanf(v, "%d %d %d %d %d %d", &f[0], &f[1], &f[2], &f[3], &f[4], &f[5]) == 6 &&
        f[1] >= 1 && f[1] <= 12 && f[2] >= 1 && f[2] <= 31 && f[3] >= 0 && f[3] < 24 && f[4] >= 0 &&
        f[4] < 60 && f[5] >= 0 && f[5] <= 60 && f[0] >= 0 && f[0] <= 9999)
        return g_strdup_printf("%04d-%02d-%02dT%02d:%02d:%02d", f[0], f[1], f[2], f[3], f[4], f[5]);
    return g_strdup(v);
}

/* The text as UTF-8: header2 is UTF-16 (a byte order mark first, little
 * endian without one), header a single-byte code page. */
static char *to_utf8(const uint8_t *text, size_t len, bool utf16)
{
    if (!utf16) {
        if (g_utf8_validate((const char *)text, (gssize)len, NULL))
            return g_strndup((const char *)text, len);
        char *c =
            g_convert((const char *)text, (gssize)len, "UTF-8", "WINDOWS-1252", NULL, NULL, NULL);
        return c ? c : g_utf8_make_valid((const char *)text, (gssize)len);
    }
    bool be = len >= 2 && text[0] == 0xfe && text[1] == 0xff;
    size_t skip = len >= 2 && ((text[0] == 0xff && text[1] == 0xfe) || be) ? 2 : 0;
    size_t n = (len - skip) / 2;
    g_autofree gunichar2 *u = g_new(gunichar2, n + 1);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = text + skip + 2 * i;
        u[i] = be ? (gunichar2)(p[0] << 8 | p[1]) : (gunichar2)(p[0] | p[1] << 8);
    }
    return g_utf16_to_utf8(u, (glong)n, NULL, NULL, NULL);
}

void ewf_meta_add_header(EwfMeta *m, const uint8_t *text, size_t len, bool utf16)
{
    g_autofree char *s = to_utf8(text, len, utf16);
    if (s == NULL)
        return;
    g_auto(GStrv) lines = g_strsplit(s, "\n", -1);
    for (char **l = lines; *l != NULL; l++)
        g_strchomp(*l); /* the \r of EnCase's line ends */
    for (guint i = 0; lines[i] != NULL; i++) {
        if (strcmp(lines[i], "main") != 0 || lines[i + 1] == NULL || lines[i + 2] == NULL)
            continue;
        g_auto(GStrv) ids = g_strsplit(lines[i + 1], "\t", -1);
        g_auto(GStrv) vals = g_strsplit(lines[i + 2], "\t", -1);
        for (guint k = 0; ids[k] != NULL && vals[k] != NULL; k++) {
            for (guint f = 0; f < G_N_ELEMENTS(fields); f++) {
                if (strcmp(ids[k], fields[f].id) != 0 || vals[k][0] == 0 ||
                    has_value(m, fields[f].name))
                    continue;
                g_ptr_array_add(m->values, g_strdup(fields[f].name));
                g_ptr_array_add(m->values,
                                fields[f].date ? format_date(vals[k]) : g_strdup(vals[k]));
            }
        }
        break;
    }
}

static bool set_hex(char *out, const char *from, size_t digits)
{
    for (size_t i = 0; i < digits; i++) {
        if (!g_ascii_isxdigit(from[i]))
            return false;
    }
    if (from[digits] != '<')
        return false;
    for (size_t i = 0; i < digits; i++)
        out[i] = g_ascii_tolower(from[i]);
    out[digits] = 0;
    return strspn(out, "0") != digits;
}

void ewf_meta_add_xhash(EwfMeta *m, const uint8_t *text, size_t len)
{
    g_autofree char *s = g_strndup((const char *)text, len);
    const char *p;
    if (m->md5[0] == 0 && (p = strstr(s, "<MD5>")) != NULL && !set_hex(m->md5, p + 5, 32))
        m->md5[0] = 0;
    if (m->sha1[0] == 0 && (p = strstr(s, "<SHA1>")) != NULL && !set_hex(m->sha1, p + 6, 40))
        m->sha1[0] = 0;
}

void ewf_meta_set_hash(char *out, const uint8_t *digest, size_t len)
{
    bool zero = true;
    for (size_t i = 0; i < len; i++)
        zero = zero && digest[i] == 0;
    if (zero)
        return; /* not recorded */
    for (size_t i = 0; i < len; i++)
        g_snprintf(out + 2 * i, 3, "%02x", digest[i]);
}
