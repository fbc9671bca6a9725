/* retention: grandfather-father-son selection over a group's cuts, the way
 * restic's forget --keep-* and borg prune read it, with every bucket in UTC. */
#include "retention.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"

/* Cut times reach ±292,000 years; only a 64-bit time_t lets gmtime_r see them all. */
_Static_assert(sizeof(time_t) >= 8, "retention needs a 64-bit time_t");

#define US_PER_S 1000000LL
#define S_PER_DAY 86400LL

#define WHY_EMPTY "no retention policy"
#define WHY_NOMEM "retention not evaluated: out of memory"
#define WHY_OLD "older than every rule keeps"
#define WHY_SUPERSEDED "superseded by newer cuts of its periods"

enum bucket { B_HOUR, B_DAY, B_WEEK, B_MONTH, B_N };

/* One cut in newest-first order; the caller's array stays as it was. */
struct slot {
        long long t_us;
        size_t idx;
        unsigned last;              /* keep_last slot, 1 = newest; 0 = not kept by it */
        int by[B_N];                /* kept by that bucket rule */
        long long period[B_N];      /* valid where by[] is set, for the why text */
};

int retention_policy_empty(const struct retention_policy *p)
{
        return !p || (!p->keep_last && !p->hourly && !p->daily && !p->weekly && !p->monthly);
}

/* C division truncates; periods before 1970 must still round towards the past. */
static long long floor_div(long long a, long long b)
{
        long long q = a / b;

        if (a % b != 0 && (a < 0) != (b < 0))
                q--;
        return q;
}

static void utc(long long s, struct tm *ret)
{
        time_t tt = (time_t)s;

        *ret = (struct tm){0};
        /* Cannot fail: with a 64-bit time_t every long long microsecond count
         * lands in a year that fits tm_year. */
        if (!gmtime_r(&tt, ret))
                assert(!"gmtime_r failed on an in-range time");
}

static long long day_of(long long t_us)
{
        return floor_div(t_us, S_PER_DAY * US_PER_S);
}

/* A number per period, increasing with time, so that equal means "same period". */
static long long period_of(enum bucket b, long long t_us)
{
        struct tm tm;

        switch (b) {
        case B_HOUR:
                return floor_div(t_us, 3600 * US_PER_S);
        case B_DAY:
                return day_of(t_us);
        case B_WEEK:
                /* Day 0 (1970-01-01) is a Thursday, so Mondays are the days
                 * d with d + 3 divisible by 7; week w runs from day 7w - 3. */
                return floor_div(day_of(t_us) + 3, 7);
        case B_MONTH:
                utc(day_of(t_us) * S_PER_DAY, &tm);
                return (long long)tm.tm_year * 12 + tm.tm_mon;
        default:
                assert(!"unknown bucket");
                return 0;
        }
}

/* Appends to a why buffer, truncating rather than overflowing. */
__attribute__((format(printf, 3, 4)))
static void why_add(char *why, size_t size, const char *fmt, ...)
{
        size_t len = strnlen(why, size);
        va_list ap;

        if (len + 1 >= size)
                return;
        va_start(ap, fmt);
        vsnprintf(why + len, size - len, fmt, ap);
        va_end(ap);
}

static void why_period(char *why, size_t size, const char *sep, enum bucket b, long long period)
{
        struct tm tm;
        long long year;

        switch (b) {
        case B_HOUR:
                utc(period * 3600, &tm);
                why_add(why, size, "%shourly %04d-%02d-%02dT%02d", sep,
                        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour);
                break;
        case B_DAY:
                utc(period * S_PER_DAY, &tm);
                why_add(why, size, "%sdaily %04d-%02d-%02d", sep,
                        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
                break;
        case B_WEEK:
                /* An ISO week belongs to the year of its Thursday (day 7w), and
                 * week 1 is the one whose Thursday falls in the year's first 7 days. */
                utc(period * 7 * S_PER_DAY, &tm);
                why_add(why, size, "%sweekly %04d-W%02d", sep, tm.tm_year + 1900, tm.tm_yday / 7 + 1);
                break;
        case B_MONTH:
                year = floor_div(period, 12);
                why_add(why, size, "%smonthly %04lld-%02lld", sep, year + 1900, period - year * 12 + 1);
                break;
        default:
                assert(!"unknown bucket");
        }
}

static size_t keep_all(struct retention_cut *cuts, size_t n, const char *why)
{
        for (size_t i = 0; i < n; i++) {
                cuts[i].keep = 1;
                if (cuts[i].pinned)
                        snprintf(cuts[i].why, sizeof(cuts[i].why), "pinned: %s", why);
                else
                        snprintf(cuts[i].why, sizeof(cuts[i].why), "%s", why);
        }
        return n;
}

/* Newest first; the array index breaks ties so the order, and with it every
 * decision, is the same on each run whatever qsort does with equal keys. */
static int slot_cmp(const void *a, const void *b)
{
        const struct slot *x = a, *y = b;

        if (x->t_us != y->t_us)
                return x->t_us > y->t_us ? -1 : 1;
        return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* How far back the rules reached, in newest-first order: a cut older than the
 * oldest one any rule kept is "old", a younger unkept one "superseded". */
struct reach {
        size_t i;
        int any;
};

static void reach_to(struct reach *r, size_t i)
{
        if (!r->any || i > r->i)
                r->i = i;
        r->any = 1;
}

/* Pinned cuts are skipped by every rule: they take no keep_last slot and
 * count no period, so pinning a cut never pushes an older one out, and
 * unpinning it later leaves the rules' picks as they would be. */
static void mark_keep_last(unsigned keep_last, const struct retention_cut *cuts, struct slot *s, size_t n,
                           struct reach *r)
{
        for (size_t i = 0, k = 0; i < n && k < keep_last; i++) {
                if (cuts[s[i].idx].pinned)
                        continue;
                s[i].last = (unsigned)++k;
                reach_to(r, i);
        }
}

static void mark_bucket(enum bucket b, unsigned limit, const struct retention_cut *cuts, struct slot *s, size_t n,
                        struct reach *r)
{
        unsigned counted = 0;
        long long prev = 0;

        /* In newest-first order each period is one contiguous run, so a
         * period has been counted exactly when it equals the last one. */
        for (size_t i = 0; i < n && counted < limit; i++) {
                long long per;

                if (cuts[s[i].idx].pinned)
                        continue;
                per = period_of(b, s[i].t_us);
                if (counted && per == prev)
                        continue;
                s[i].by[b] = 1;
                s[i].period[b] = per;
                prev = per;
                counted++;
                reach_to(r, i);
        }
}

/* Sets keep and why of the cut at newest-first position i; 1 when kept. */
static int explain(struct retention_cut *c, const struct slot *si, size_t i, const struct reach *r)
{
        const char *sep = "";
        int keep = 0;

        c->why[0] = '\0';
        if (c->pinned) {
                /* The rules never see a pinned cut, so there is no other reason to add. */
                c->keep = 1;
                why_add(c->why, sizeof(c->why), "pinned");
                return 1;
        }
        if (si->last) {
                why_add(c->why, sizeof(c->why), "last %u", si->last);
                sep = ", ";
                keep = 1;
        }
        for (int b = 0; b < B_N; b++) {
                if (!si->by[b])
                        continue;
                why_period(c->why, sizeof(c->why), sep, (enum bucket)b, si->period[b]);
                sep = ", ";
                keep = 1;
        }
        c->keep = keep;
        if (keep)
                return 1;
        if (!r->any || i > r->i)
                why_add(c->why, sizeof(c->why), WHY_OLD);
        else
                why_add(c->why, sizeof(c->why), WHY_SUPERSEDED);
        return 0;
}

size_t retention_apply(const struct retention_policy *p, struct retention_cut *cuts, size_t n)
{
        _cleanup_free_ struct slot *s = NULL;
        struct reach r = {0, 0};
        size_t kept = 0;

        if (n == 0)
                return 0;
        assert(cuts);
        if (retention_policy_empty(p))
                return keep_all(cuts, n, WHY_EMPTY);

        s = calloc(n, sizeof(*s));
        if (!s)
                return keep_all(cuts, n, WHY_NOMEM);
        for (size_t i = 0; i < n; i++) {
                s[i].t_us = cuts[i].t_us;
                s[i].idx = i;
        }
        qsort(s, n, sizeof(*s), slot_cmp);

        mark_keep_last(p->keep_last, cuts, s, n, &r);
        mark_bucket(B_HOUR, p->hourly, cuts, s, n, &r);
        mark_bucket(B_DAY, p->daily, cuts, s, n, &r);
        mark_bucket(B_WEEK, p->weekly, cuts, s, n, &r);
        mark_bucket(B_MONTH, p->monthly, cuts, s, n, &r);
        for (size_t i = 0; i < n; i++)
                kept += (size_t)explain(&cuts[s[i].idx], &s[i], i, &r);
        return kept;
}
