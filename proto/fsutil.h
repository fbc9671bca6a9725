/* fsutil: small durable-file helpers shared by keys, replay counters, the
 * coordinator's counter and the agent's journal. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#include "lserr.h"

/* Writes buf to path through a temporary file, fsync, rename and fsync of the
 * directory, so a crash leaves either the old or the new content. With excl, an
 * existing path is refused with -EEXIST. */
int fsutil_write_atomic(const char *path, const void *buf, size_t len, mode_t mode, int excl, lserr *err);

/* Reads a whole regular file of at most max bytes into a NUL-terminated buffer
 * owned by the caller (free()). Larger files are refused with -EFBIG. */
int fsutil_read_all(const char *path, size_t max, char **ret_buf, size_t *ret_len, lserr *err);

/* The same from an open file descriptor (borrowed, read from its position);
 * path only names it in messages. */
int fsutil_read_fd(int fd, const char *path, size_t max, char **ret_buf, size_t *ret_len, lserr *err);

/* Creates dir and its parents with mode (existing dirs are fine). */
int fsutil_mkdir_p(const char *dir, mode_t mode, lserr *err);

/* Unix time and a monotonic clock, microseconds. */
long long fsutil_now_us(void);
long long fsutil_mono_us(void);
