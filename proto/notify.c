/* notify: sd_notify wrappers; compiled to no-ops without libsystemd. */
#include "notify.h"

#include <stdio.h>

#ifdef LOCKSTEP_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

void notify_ready(const char *status)
{
        sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void notify_status(const char *status)
{
        sd_notifyf(0, "STATUS=%s", status);
}

void notify_reloading(void)
{
        sd_notify(0, "RELOADING=1");
}

void notify_stopping(void)
{
        sd_notify(0, "STOPPING=1");
}

unsigned notify_watchdog_ms(void)
{
        uint64_t usec = 0;

        if (sd_watchdog_enabled(0, &usec) <= 0)
                return 0;
        return (unsigned)(usec / 1000);
}

void notify_watchdog(void)
{
        sd_notify(0, "WATCHDOG=1");
}
#else
void notify_ready(const char *status)
{
        (void)status;
}

void notify_status(const char *status)
{
        (void)status;
}

void notify_reloading(void)
{
}

void notify_stopping(void)
{
}

unsigned notify_watchdog_ms(void)
{
        return 0;
}

void notify_watchdog(void)
{
}
#endif
