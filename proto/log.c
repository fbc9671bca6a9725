/* log: priority-prefixed single-line logging to stderr. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *log_ident = "lockstep";
static int log_level = LOG_INFO;
static int log_tty;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_setup(const char *ident, int level)
{
        log_ident = ident;
        log_level = level;
        log_tty = isatty(STDERR_FILENO);
}

void log_rename(const char *ident)
{
        log_ident = ident;
}

void log_at(int prio, const char *fmt, ...)
{
        static const char *const names[] = {"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug"};
        char line[2048];
        va_list ap;

        if (prio > log_level)
                return;
        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        /* A line is one event: never let a peer's text split it. */
        for (char *p = line; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
        pthread_mutex_lock(&log_lock);
        if (log_tty)
                fprintf(stderr, "%s: %s: %s\n", log_ident, names[prio & 7], line);
        else
                fprintf(stderr, "<%d>%s: %s\n", prio & 7, log_ident, line);
        pthread_mutex_unlock(&log_lock);
}
