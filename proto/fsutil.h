/* fsutil: small durable-file helpers shared by keys, replay counters, the
 * coordinator's counter and the agent's journal. */
#pragma once

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

#include "lserr.h"

#define FSUTIL_EXCL 1   /* an existing path is refused with -EEXIST */
#define FSUTIL_NOSYNC 2 /* whole or not at all for readers, but no fsync: for
                         * state that must outlive a process, not the machine */

/* Writes buf to path through a temporary file, fsync, rename and fsync of the
 * directory, so a crash leaves either the old or the new content. flags: 0 or
 * FSUTIL_EXCL, FSUTIL_NOSYNC. */
int fsutil_write_atomic(const char *path, const void *buf, size_t len, mode_t mode, int flags, lserr *err);

/* Reads a whole regular file of at most max bytes into a NUL-terminated buffer
 * owned by the caller (free()). Larger files are refused with -EFBIG. */
int fsutil_read_all(const char *path, size_t max, char **ret_buf, size_t *ret_len, lserr *err);

/* The same from an open file descriptor (borrowed, read from its position);
 * path only names it in messages. */
int fsutil_read_fd(int fd, const char *path, size_t max, char **ret_buf, size_t *ret_len, lserr *err);

/* Creates dir and its parents with mode (existing dirs are fine). */
int fsutil_mkdir_p(const char *dir, mode_t mode, lserr *err);

/* Unix time and a monotonic clock, microseconds. Unix time is every protocol
 * decision's (a command's issue time, its window, a reply's now_us, leases
 * kept in journals): a test build may shift it, never the monotonic clock. */
long long fsutil_now_us(void);
long long fsutil_mono_us(void);

/* A condition variable whose timed waits run on the monotonic clock (a clock
 * step must not stretch or cut a wait), and a deadline us from now on it. */
void fsutil_cond_init_mono(pthread_cond_t *c);
struct timespec fsutil_mono_after(long long us);

/* Test builds only (-DLOCKSTEP_FAILPOINTS=ON): LOCKSTEP_CLOCK_OFFSET_S=N shifts
 * fsutil_now_us by N seconds, as a host whose clock is N s ahead (N < 0:
 * behind). Returns 1 and *ret_s when set (the shift is on from then), 0 when
 * unset and always in a release build (which reads no environment for it),
 * < 0 with err for a value that is not a whole number within the bound. Call
 * once at start, before any thread. */
#define FSUTIL_CLOCK_OFFSET_MAX_S (10 * 365 * 86400)
int fsutil_clock_offset_env(long long *ret_s, lserr *err);
/* The check behind it: an integer in -FSUTIL_CLOCK_OFFSET_MAX_S..MAX, nothing after it. */
int fsutil_clock_offset_parse(const char *s, long long *ret_s, lserr *err);
