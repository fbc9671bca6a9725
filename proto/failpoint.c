/* failpoint: the crash-test stops and test-only switches both daemons use. */
#include "failpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"

#ifdef LOCKSTEP_FAILPOINTS
static char fp_scope[64];

static void stop_forever(const char *name)
{
        log_warn("failpoint %s reached: stopping here until killed", name);
        for (;;)
                pause();
}

/* <dir>/<scope>.<name> into path; 0 when run-time failpoints are off. */
static int armed_path(const char *name, char *path, size_t n)
{
        const char *dir = getenv("LOCKSTEP_FAILPOINT_DIR");
        int len;

        if (!dir || !*dir)
                return 0;
        len = snprintf(path, n, "%s/%s%s%s", dir, fp_scope, fp_scope[0] ? "." : "", name);
        return len > 0 && (size_t)len < n;
}

static void hold(const char *name, const char *path)
{
        char held[4096 + sizeof(".held")];
        struct timespec ts = {0, 10 * 1000 * 1000};
        _cleanup_close_ int fd = -1;

        snprintf(held, sizeof(held), "%s.held", path);
        fd = open(held, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                log_err("failpoint %s: cannot write %s: %m", name, held);
        else
                dprintf(fd, "%d\n", (int)getpid());
        log_warn("failpoint %s reached: holding until %s is removed", name, path);
        while (access(path, F_OK) == 0)
                nanosleep(&ts, NULL);
        unlink(held);
        log_warn("failpoint %s released", name);
}
#endif

void failpoint_scope(const char *scope)
{
#ifdef LOCKSTEP_FAILPOINTS
        snprintf(fp_scope, sizeof(fp_scope), "%s", scope ? scope : "");
#else
        (void)scope;
#endif
}

int failpoint_on(const char *name)
{
#ifdef LOCKSTEP_FAILPOINTS
        char path[4096];

        return armed_path(name, path, sizeof(path)) && access(path, F_OK) == 0;
#else
        (void)name;
        return 0;
#endif
}

void failpoint_stop(const char *name)
{
#ifdef LOCKSTEP_FAILPOINTS
        const char *fp = getenv("LOCKSTEP_FAILPOINT");
        char path[4096], word[16] = "";
        _cleanup_fclose_ FILE *f = NULL;

        if (fp && strcmp(fp, name) == 0)
                stop_forever(name);
        if (!armed_path(name, path, sizeof(path)) || !(f = fopen(path, "re")))
                return;
        if (fscanf(f, "%15s", word) != 1)
                word[0] = '\0';
        if (strcmp(word, "stop") == 0)
                stop_forever(name);
        if (strcmp(word, "kill") == 0) {
                log_warn("failpoint %s reached: killing this process", name);
                raise(SIGKILL);
        }
        hold(name, path);
#else
        (void)name;
#endif
}
