/* decided: a small durable set of recently decided txids, one text file
 * rewritten atomically on every addition. */
#include "decided.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "fsutil.h"
#include "names.h"

#define HEADER "lockstep-decided 1"
/* One line per entry: "<until_us> <txid>\n". */
#define LINE_MAX_LEN (20 + 1 + LS_NAME_MAX + 1)
#define FILE_MAX (64 + DECIDED_MAX * LINE_MAX_LEN)

struct entry {
        char txid[LS_NAME_MAX + 1];
        long long until_us;
};

struct decided {
        char path[4096];
        long long keep_us;
        long long closed_until_us; /* the memory overflowed: everything is decided until then */
        struct entry v[DECIDED_MAX];
        size_t n;
};

static void drop_expired(struct decided *d, long long now_us)
{
        size_t k = 0;

        for (size_t i = 0; i < d->n; i++)
                if (d->v[i].until_us > now_us)
                        d->v[k++] = d->v[i];
        d->n = k;
}

/* One entry line; -EBADMSG when it is not one. */
static int parse_line(char *line, struct entry *out)
{
        char *sp = strchr(line, ' '), *end;
        long long until;

        if (!sp)
                return -EBADMSG;
        *sp = '\0';
        until = strtoll(line, &end, 10);
        if (end == line || *end || until <= 0 || !names_valid(sp + 1))
                return -EBADMSG;
        snprintf(out->txid, sizeof(out->txid), "%s", sp + 1);
        out->until_us = until;
        return 0;
}

static int parse(struct decided *d, char *text, lserr *err)
{
        char *save = NULL, *line = strtok_r(text, "\n", &save), *end;
        unsigned lineno = 1;

        if (!line || strncmp(line, HEADER " ", strlen(HEADER " ")) != 0)
                return lserr_set(err, -EBADMSG, "%s: line 1: not a \"" HEADER "\" file", d->path);
        d->closed_until_us = strtoll(line + strlen(HEADER " "), &end, 10);
        if (*end || d->closed_until_us < 0)
                return lserr_set(err, -EBADMSG, "%s: line 1: bad overflow time", d->path);
        while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
                lineno++;
                if (d->n == DECIDED_MAX)
                        return lserr_set(err, -EBADMSG, "%s: more than %d entries", d->path, DECIDED_MAX);
                if (parse_line(line, &d->v[d->n]) < 0)
                        return lserr_set(err, -EBADMSG, "%s: line %u: not \"<until_us> <txid>\"", d->path, lineno);
                d->n++;
        }
        return 0;
}

int decided_open(const char *dir, long long keep_us, long long now_us, struct decided **ret, lserr *err)
{
        _cleanup_free_ struct decided *d = calloc(1, sizeof(*d));
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r;

        if (!d)
                return lserr_set(err, -ENOMEM, "decided: out of memory");
        if (snprintf(d->path, sizeof(d->path), "%s/" DECIDED_FILE, dir) >= (int)sizeof(d->path))
                return lserr_set(err, -ENAMETOOLONG, "decided: path under \"%s\" too long", dir);
        d->keep_us = keep_us;
        r = fsutil_read_all(d->path, FILE_MAX, &text, &len, err);
        if (r == -ENOENT) {
                lserr_clear(err);
                r = 0;
        } else if (r == 0) {
                lserr e = {0};
                r = parse(d, text, &e);
                if (r < 0)
                        lserr_set(err, r, "%s; remove the file to start (late opening steps of recently aborted "
                                  "transactions are then accepted again)", e.msg);
        }
        if (r < 0)
                return r;
        drop_expired(d, now_us);
        *ret = TAKE_PTR(d);
        return 0;
}

struct decided *decided_free(struct decided *d)
{
        free(d);
        return NULL;
}

int decided_has(const struct decided *d, const char *txid, long long now_us)
{
        if (now_us < d->closed_until_us)
                return 1;
        for (size_t i = 0; i < d->n; i++)
                if (d->v[i].until_us > now_us && !strcmp(d->v[i].txid, txid))
                        return 1;
        return 0;
}

static int save(const struct decided *d, lserr *err)
{
        _cleanup_free_ char *buf = malloc(FILE_MAX);
        size_t off;

        if (!buf)
                return lserr_set(err, -ENOMEM, "decided: out of memory");
        off = (size_t)snprintf(buf, FILE_MAX, HEADER " %lld\n", d->closed_until_us);
        for (size_t i = 0; i < d->n; i++)
                off += (size_t)snprintf(buf + off, FILE_MAX - off, "%lld %s\n", d->v[i].until_us, d->v[i].txid);
        return fsutil_write_atomic(d->path, buf, off, 0600, 0, err);
}

int decided_add(struct decided *d, const char *txid, long long now_us, lserr *err)
{
        size_t oldest = 0;

        if (!names_valid(txid))
                return lserr_set(err, -EINVAL, "decided: txid \"%s\" is not a valid name", txid);
        drop_expired(d, now_us);
        for (size_t i = 0; i < d->n; i++)
                if (!strcmp(d->v[i].txid, txid)) {
                        d->v[i].until_us = now_us + d->keep_us;
                        return save(d, err);
                }
        if (d->n == DECIDED_MAX) {
                for (size_t i = 1; i < d->n; i++)
                        if (d->v[i].until_us < d->v[oldest].until_us)
                                oldest = i;
                if (d->v[oldest].until_us > d->closed_until_us)
                        d->closed_until_us = d->v[oldest].until_us;
                d->v[oldest] = d->v[--d->n];
        }
        snprintf(d->v[d->n].txid, sizeof(d->v[d->n].txid), "%s", txid);
        d->v[d->n].until_us = now_us + d->keep_us;
        d->n++;
        return save(d, err);
}

size_t decided_count(const struct decided *d)
{
        return d->n;
}
