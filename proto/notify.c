/* notify: systemd's notify protocol spoken directly: one datagram per message
 * to the socket in $NOTIFY_SOCKET (sd_notify(3) documents it as stable for
 * this use). No libsystemd: it and the compression and crypto libraries it
 * pulls in were mapped in every agent process for a few sendto calls. */
#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"

/* Best effort, as libsystemd's: a daemon outside systemd, or one whose
 * manager went away, runs on. secure_getenv, as libsystemd: nothing of a
 * setuid caller's environment. */
static void notify_send(const char *msg)
{
        const char *path = secure_getenv("NOTIFY_SOCKET");
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        size_t len;

        if (!path || (path[0] != '/' && path[0] != '@'))
                return;
        len = strlen(path);
        if (len < 2 || len > sizeof(sa.sun_path))
                return;
        memcpy(sa.sun_path, path, len);
        if (path[0] == '@') /* an abstract socket: its name starts with a NUL */
                sa.sun_path[0] = '\0';
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return;
        (void)sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
}

void notify_ready(const char *status)
{
        char msg[512];

        snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
        notify_send(msg);
}

void notify_status(const char *status)
{
        char msg[512];

        snprintf(msg, sizeof(msg), "STATUS=%s", status);
        notify_send(msg);
}

void notify_reloading(void)
{
        notify_send("RELOADING=1");
}

void notify_stopping(void)
{
        notify_send("STOPPING=1");
}

/* WATCHDOG_USEC, for this process only when WATCHDOG_PID names another (a
 * child that inherited the environment must not ping for its parent). */
unsigned notify_watchdog_ms(void)
{
        const char *usec = secure_getenv("WATCHDOG_USEC"), *pid = secure_getenv("WATCHDOG_PID");
        unsigned long long v;
        char *end;

        if (!usec || !*usec)
                return 0;
        if (pid && *pid && strtoll(pid, NULL, 10) != (long long)getpid())
                return 0;
        errno = 0;
        v = strtoull(usec, &end, 10);
        if (errno || *end || v == 0 || v / 1000 > 0xffffffffULL)
                return 0;
        return (unsigned)(v / 1000 ? v / 1000 : 1);
}

void notify_watchdog(void)
{
        notify_send("WATCHDOG=1");
}
