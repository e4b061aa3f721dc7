/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <stdio.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <glib.h>

#include "vd-log.h"

static const char *log_program = "vdisk";
static bool log_debug;
static bool log_syslog;
static bool log_journal;

/* Messages quote names read from images (backing files, extents,
 * snapshot names): a newline there must not start a forged log line, nor
 * an escape sequence drive the reader's terminal. Control bytes become
 * \xNN; everything else is kept. NULL when nothing needs escaping. */
char *vd_log_escape(const char *msg)
{
    const unsigned char *p = (const unsigned char *)msg;
    while (*p != 0 && *p >= 0x20 && *p != 0x7f)
        p++;
    if (*p == 0)
        return NULL;
    GString *out = g_string_new_len(msg, (gssize)(p - (const unsigned char *)msg));
    for (; *p != 0; p++) {
        if (*p < 0x20 || *p == 0x7f)
            g_string_append_printf(out, "\\x%02x", *p);
        else
            g_string_append_c(out, (char)*p);
    }
    return g_string_free(out, FALSE);
}

static GLogWriterOutput vd_log_writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields,
                                      gpointer user_data)
{
    const char *message = NULL;
    for (gsize i = 0; i < n_fields; i++) {
        if (g_strcmp0(fields[i].key, "MESSAGE") == 0)
            message = fields[i].value;
    }
    if (message == NULL)
        return G_LOG_WRITER_UNHANDLED;
    g_autofree char *escaped = vd_log_escape(message);
    if (escaped != NULL)
        message = escaped;
    const char *tag;
    int prio;
    switch (level & G_LOG_LEVEL_MASK) {
    case G_LOG_LEVEL_ERROR:
    case G_LOG_LEVEL_CRITICAL:
        tag = "error";
        prio = LOG_ERR;
        break;
    case G_LOG_LEVEL_WARNING:
        tag = "warning";
        prio = LOG_WARNING;
        break;
    case G_LOG_LEVEL_MESSAGE:
    case G_LOG_LEVEL_INFO:
        tag = "info";
        prio = LOG_INFO;
        break;
    default:
        if (!log_debug)
            return G_LOG_WRITER_HANDLED;
        tag = "debug";
        prio = LOG_DEBUG;
        break;
    }
    if (log_syslog)
        syslog(prio, "%s", message);
    else if (log_journal)
        fprintf(stderr, "<%d>%s: %s: %s\n", prio, log_program, tag, message);
    else
        fprintf(stderr, "%s: %s: %s\n", log_program, tag, message);
    return G_LOG_WRITER_HANDLED;
}

/* stderr is the journal's stream (systemd sets JOURNAL_STREAM to its
 * device:inode): lines then carry a syslog priority prefix ("<4>"), which
 * journald turns into the entry's priority. */
static bool stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    struct stat st;
    unsigned long long dev, ino;
    if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void vd_log_init(const char *program, bool debug)
{
    log_program = program;
    log_debug = debug;
    log_journal = stderr_is_journal();
    g_log_set_writer_func(vd_log_writer, NULL, NULL);
}

void vd_log_use_syslog(void)
{
    openlog(log_program, LOG_PID, LOG_DAEMON);
    log_syslog = true;
}
