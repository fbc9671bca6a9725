/* fsutil: crash-safe small-file writes and bounded reads. */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"

static int fsync_dir_of(const char *path)
{
        char *copy = strdup(path);
        int fd, r = 0;

        if (!copy)
                return -ENOMEM;
        fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                r = -errno;
        else if (fsync(fd) < 0)
                r = -errno;
        if (fd >= 0)
                close(fd);
        free(copy);
        return r;
}

/* Creates a fresh temporary file beside path with mode. O_EXCL|O_NOFOLLOW and a
 * random name: a file or symlink someone else made there in advance is never
 * opened, so it cannot catch a key on its way into a shared directory. */
static int create_tmp(const char *path, mode_t mode, char tmp[static 4096], lserr *err)
{
        uint32_t rnd[2];
        int fd;

        for (int tries = 0; tries < 8; tries++) {
                randombytes_buf(rnd, sizeof(rnd));
                if (snprintf(tmp, 4096, "%s.tmp.%08x%08x", path, rnd[0], rnd[1]) >= 4096)
                        return lserr_set(err, -ENAMETOOLONG, "\"%s\": path too long", path);
                fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
                if (fd >= 0)
                        return fd;
                if (errno != EEXIST)
                        return lserr_set(err, -errno, "\"%s\": create: %m", tmp);
        }
        return lserr_set(err, -EEXIST, "\"%s\": create a temporary file: every name tried exists", path);
}

int fsutil_write_atomic(const char *path, const void *buf, size_t len, mode_t mode, int flags, lserr *err)
{
        int excl = flags & FSUTIL_EXCL;
        char tmp[4096];
        int fd = -1, r;
        size_t off = 0;

        if (excl && access(path, F_OK) == 0)
                return lserr_set(err, -EEXIST, "\"%s\": already exists, refusing to overwrite", path);
        fd = create_tmp(path, mode, tmp, err);
        if (fd < 0)
                return fd;
        /* open() honours the umask; the mode asked for is the mode wanted, and it is
         * the file's mode before any byte is in it. */
        if (fchmod(fd, mode) < 0) {
                r = lserr_set(err, -errno, "\"%s\": chmod: %m", tmp);
                goto out;
        }
        while (off < len) {
                ssize_t n = write(fd, (const char *)buf + off, len - off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = lserr_set(err, -errno, "\"%s\": write: %m", tmp);
                        goto out;
                }
                off += (size_t)n;
        }
        if (!(flags & FSUTIL_NOSYNC) && fsync(fd) < 0) {
                r = lserr_set(err, -errno, "\"%s\": fsync: %m", tmp);
                goto out;
        }
        close(fd);
        fd = -1;
        if (excl ? renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0 : rename(tmp, path) < 0) {
                r = lserr_set(err, -errno, "\"%s\": rename into place: %m", path);
                goto out;
        }
        if (flags & FSUTIL_NOSYNC)
                return 0;
        r = fsync_dir_of(path);
        if (r < 0)
                lserr_set(err, r, "\"%s\": fsync of directory: %s", path, strerror(-r));
        return r;
out:
        if (fd >= 0)
                close(fd);
        unlink(tmp);
        return r;
}

int fsutil_read_fd(int fd, const char *path, size_t max, char **ret_buf, size_t *ret_len, lserr *err)
{
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t off = 0;

        if (fstat(fd, &st) < 0)
                return lserr_set(err, -errno, "\"%s\": stat: %m", path);
        if (!S_ISREG(st.st_mode))
                return lserr_set(err, -EINVAL, "\"%s\": not a regular file", path);
        if ((size_t)st.st_size > max)
                return lserr_set(err, -EFBIG, "\"%s\": %lld bytes, larger than the %zu allowed", path,
                                 (long long)st.st_size, max);
        buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd, buf + off, (size_t)st.st_size - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return lserr_set(err, -errno, "\"%s\": read: %m", path);
                if (n == 0)
                        break;
                off += (size_t)n;
                if (off == (size_t)st.st_size)
                        break;
        }
        buf[off] = '\0';
        *ret_buf = TAKE_PTR(buf);
        *ret_len = off;
        return 0;
}

int fsutil_read_all(const char *path, size_t max, char **ret_buf, size_t *ret_len, lserr *err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

        if (fd < 0)
                return lserr_set(err, -errno, "\"%s\": open: %m", path);
        return fsutil_read_fd(fd, path, max, ret_buf, ret_len, err);
}

int fsutil_mkdir_p(const char *dir, mode_t mode, lserr *err)
{
        char path[4096];
        size_t n = strlen(dir);

        if (n == 0 || n >= sizeof(path))
                return lserr_set(err, -EINVAL, "\"%s\": bad directory path", dir);
        memcpy(path, dir, n + 1);
        /* The common case, a directory that is there, costs one call. */
        if (mkdir(path, mode) == 0 || errno == EEXIST)
                return 0;
        if (errno != ENOENT)
                return lserr_set(err, -errno, "\"%s\": mkdir: %m", path);
        for (char *p = path + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(path, mode) < 0 && errno != EEXIST)
                        return lserr_set(err, -errno, "\"%s\": mkdir: %m", path);
                *p = '/';
        }
        if (mkdir(path, mode) < 0 && errno != EEXIST)
                return lserr_set(err, -errno, "\"%s\": mkdir: %m", path);
        return 0;
}

static long long clock_us(clockid_t id)
{
        struct timespec ts;

        clock_gettime(id, &ts);
        return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

/* A test build's shift of Unix time (fsutil_clock_offset_env); 0 otherwise, and
 * in a release build nothing ever sets it. Monotonic time is never shifted:
 * deadlines and leases run on it. */
static _Atomic long long clock_offset_us;

long long fsutil_now_us(void)
{
        return clock_us(CLOCK_REALTIME) + clock_offset_us;
}

int fsutil_clock_offset_parse(const char *s, long long *ret_s, lserr *err)
{
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < -FSUTIL_CLOCK_OFFSET_MAX_S || v > FSUTIL_CLOCK_OFFSET_MAX_S)
                return lserr_set(err, -EINVAL, "LOCKSTEP_CLOCK_OFFSET_S=\"%.32s\" is not a whole number of seconds "
                                 "in -%d..%d", s, FSUTIL_CLOCK_OFFSET_MAX_S, FSUTIL_CLOCK_OFFSET_MAX_S);
        *ret_s = v;
        return 0;
}

int fsutil_clock_offset_env(long long *ret_s, lserr *err)
{
#ifdef LOCKSTEP_FAILPOINTS
        const char *s = getenv("LOCKSTEP_CLOCK_OFFSET_S");
        long long v;
        int r;

        if (!s || !*s)
                return 0;
        r = fsutil_clock_offset_parse(s, &v, err);
        if (r < 0)
                return r;
        clock_offset_us = v * 1000000LL;
        *ret_s = v;
        return 1;
#else
        (void)ret_s;
        (void)err;
        return 0;
#endif
}

long long fsutil_mono_us(void)
{
        return clock_us(CLOCK_MONOTONIC);
}

void fsutil_cond_init_mono(pthread_cond_t *c)
{
        pthread_condattr_t ca;

        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(c, &ca);
        pthread_condattr_destroy(&ca);
}

struct timespec fsutil_mono_after(long long us)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += us / 1000000;
        ts.tv_nsec += (us % 1000000) * 1000;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        return ts;
}
