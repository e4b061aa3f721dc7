/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Where GLib's structured log goes: stderr in the foreground, syslog (the
 * journal picks it up) once daemonised. */
#ifndef VD_LOG_H
#define VD_LOG_H

#include <stdbool.h>

void vd_log_init(const char *program, bool debug);
/* Switch to syslog (after fuse_daemonize closes stderr). */
void vd_log_use_syslog(void);
/* msg with control characters as \\xNN, or NULL when it has none (g_free). */
char *vd_log_escape(const char *msg);

#endif
