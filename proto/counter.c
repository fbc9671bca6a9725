/* counter: block-reserved durable sequence for command counters. */
#include "counter.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"

struct counter {
        char *path;
        pthread_mutex_t lock;
        uint64_t next;     /* next value to hand out */
        uint64_t reserved; /* values below this are covered by the file */
};

static int reserve(struct counter *c, uint64_t upto, lserr *err)
{
        char text[32];
        int n = snprintf(text, sizeof(text), "%" PRIu64 "\n", upto);
        int r = fsutil_write_atomic(c->path, text, (size_t)n, 0600, 0, err);

        if (r < 0)
                return r;
        c->reserved = upto;
        return 0;
}

int counter_open(const char *path, struct counter **ret, lserr *err)
{
        struct counter *c;
        char *buf = NULL, *end;
        uint64_t start = (uint64_t)fsutil_now_us();
        size_t len;
        int r;

        r = fsutil_read_all(path, 64, &buf, &len, err);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r == 0) {
                uint64_t stored;
                errno = 0;
                stored = strtoull(buf, &end, 10);
                if (errno || end == buf || (*end && *end != '\n')) {
                        free(buf);
                        return lserr_set(err, -EINVAL, "counter file \"%s\": not a number; refusing to guess", path);
                }
                free(buf);
                if (stored > start)
                        start = stored;
        }
        lserr_clear(err);
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->path = strdup(path);
        if (!c->path) {
                free(c);
                return -ENOMEM;
        }
        pthread_mutex_init(&c->lock, NULL);
        c->next = start;
        r = reserve(c, start + COUNTER_BLOCK, err);
        if (r < 0) {
                counter_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

struct counter *counter_free(struct counter *c)
{
        if (!c)
                return NULL;
        pthread_mutex_destroy(&c->lock);
        free(c->path);
        free(c);
        return NULL;
}

int counter_next(struct counter *c, uint64_t *ret, lserr *err)
{
        int r = 0;

        pthread_mutex_lock(&c->lock);
        if (c->next >= c->reserved)
                r = reserve(c, c->next + COUNTER_BLOCK, err);
        if (r == 0)
                *ret = c->next++;
        pthread_mutex_unlock(&c->lock);
        return r;
}

int counter_advance(struct counter *c, uint64_t past, lserr *err)
{
        uint64_t now = (uint64_t)fsutil_now_us(), base;
        int r = 0;

        pthread_mutex_lock(&c->lock);
        /* A restart would start at the current time: a peer that is ahead of an
         * idle counter by no more than that is not suspicious. */
        base = c->next > now ? c->next : now;
        if (past < c->next)
                goto out;
        if (past > base && past - base > COUNTER_JUMP_MAX) {
                r = lserr_set(err, -ERANGE,
                              "counter file \"%s\": advance: %" PRIu64 " ahead of this coordinator's %" PRIu64
                              ", more than the %llu allowed in one jump; not moving",
                              c->path, past - base, base, (unsigned long long)COUNTER_JUMP_MAX);
                goto out;
        }
        if (past >= UINT64_MAX - COUNTER_BLOCK) {
                r = lserr_set(err, -ERANGE, "counter file \"%s\": advance: past %" PRIu64 " the counter would wrap",
                              c->path, past);
                goto out;
        }
        if (past + 1 >= c->reserved) {
                r = reserve(c, past + 1 + COUNTER_BLOCK, err);
                if (r < 0)
                        goto out;
        }
        c->next = past + 1;
out:
        pthread_mutex_unlock(&c->lock);
        return r;
}
