/* notify: readiness, status and watchdog pings to systemd (Type=notify);
 * outside systemd (no NOTIFY_SOCKET), no-ops. */
#pragma once

/* READY=1 with a one-line status. */
void notify_ready(const char *status);
/* STATUS=... alone, e.g. "reloading", "3 cuts running". */
void notify_status(const char *status);
void notify_reloading(void);
void notify_stopping(void);
/* The watchdog interval systemd wants pings within, in ms; 0 when off. Ping at
 * half of it, from the loop whose stall the watchdog should catch. */
unsigned notify_watchdog_ms(void);
void notify_watchdog(void);
