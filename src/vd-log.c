/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <stdio.h>
#include <syslog.h>

#include <glib.h>

#include "vd-log.h"

static const char *log_program = "vdisk";
static bool log_debug;
static bool log_syslog;

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
    else
        fprintf(stderr, "%s: %s: %s\n", log_program, tag, message);
    return G_LOG_WRITER_HANDLED;
}

void vd_log_init(const char *program, bool debug)
{
    log_program = program;
    log_debug = debug;
    g_log_set_writer_func(vd_log_writer, NULL, NULL);
}

void vd_log_use_syslog(void)
{
    openlog(log_program, LOG_PID, LOG_DAEMON);
    log_syslog = true;
}
