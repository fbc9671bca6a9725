/* log: one line per event on stderr for the daemons, with a syslog priority
 * prefix ("<6>") that journald reads when stderr is not a terminal. The library
 * functions under proto/ never call this; only the daemons do, at their edge. */
#pragma once

#include <syslog.h>

/* ident is kept by pointer. level: LOG_ERR..LOG_DEBUG, lines above it are dropped. */
void log_setup(const char *ident, int level);
/* Another ident, the level kept (a forked child that is another program). */
void log_rename(const char *ident);
void log_at(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_at(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_at(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_at(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_DEBUG, __VA_ARGS__)
