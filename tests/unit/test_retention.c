/* test_retention: which cuts a retention policy keeps, on synthetic histories whose
 * answers are worked out by hand and again by a slow brute-force oracle. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "retention.h"

#define US 1000000LL
#define MIN_US (60 * US)
#define HOUR_US (60 * MIN_US)
#define DAY_US (24 * HOUR_US)
#define STEP_US (15 * MIN_US)
#define YEAR_CUTS 35040 /* 365 days of 2025 x 96 quarter hours */

#define WHY_OLD "older than every rule keeps"
#define WHY_SUPERSEDED "superseded by newer cuts of its periods"

/* Timestamps come from timegm, not from the module's own calendar arithmetic. */
static long long at(int y, int mo, int d, int h, int mi)
{
        struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi };

        return (long long)timegm(&tm) * US;
}

/* ---- the oracle -------------------------------------------------------- */

/* The rules read literally and computed the slow way: every period named by
 * strftime (glibc's %G-W%V for ISO weeks), the newest cut of each name found by
 * sorting on the name, the names ranked by that cut. Nothing shared with
 * retention.c but the wording of the result. */

struct ent {
        long long t;
        size_t idx, pos;
        char label[32];
};

static int ent_by_time(const void *a, const void *b)
{
        const struct ent *x = a, *y = b;

        if (x->t != y->t)
                return x->t > y->t ? -1 : 1;
        return (x->idx > y->idx) - (x->idx < y->idx);
}

static int ent_by_label(const void *a, const void *b)
{
        const struct ent *x = a, *y = b;
        int r = strcmp(x->label, y->label);

        return r ? r : (x->pos > y->pos) - (x->pos < y->pos);
}

static int ent_by_pos(const void *a, const void *b)
{
        const struct ent *x = a, *y = b;

        return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Bucket b's name for the period holding t_us: hourly, daily, weekly, monthly. */
static void oracle_label(int b, long long t_us, char *out, size_t size)
{
        long long s = t_us / US - (t_us % US < 0);
        time_t tt = (time_t)s;
        struct tm tm;
        size_t len = 0;

        assert_non_null(gmtime_r(&tt, &tm));
        switch (b) {
        case 0: len = strftime(out, size, "%Y-%m-%dT%H", &tm); break;
        case 1: len = strftime(out, size, "%Y-%m-%d", &tm); break;
        case 2: len = strftime(out, size, "%G-W%V", &tm); break;
        case 3: len = strftime(out, size, "%Y-%m", &tm); break;
        }
        assert_true(len > 0);
}

struct reasons {
        unsigned last;
        char lab[4][32];
};

/* Fills want[i] with the why retention_apply must give cuts[i]; returns the number kept. */
static size_t oracle(const struct retention_policy *p, const struct retention_cut *cuts, size_t n,
                     char (*want)[96], int *want_keep)
{
        static const char *const word[4] = { "hourly", "daily", "weekly", "monthly" };
        const unsigned limit[4] = { p->hourly, p->daily, p->weekly, p->monthly };
        struct ent *order, *e;
        struct reasons *r;
        size_t *pos, kept = 0, reach = 0;
        int reached = 0;

        if (n == 0)
                return 0;
        if (!p->keep_last && !p->hourly && !p->daily && !p->weekly && !p->monthly) {
                for (size_t i = 0; i < n; i++) {
                        snprintf(want[i], 96, "%s", cuts[i].pinned ? "pinned: no retention policy" : "no retention policy");
                        want_keep[i] = 1;
                }
                return n;
        }
        order = calloc(n, sizeof(*order));
        e = calloc(n, sizeof(*e));
        r = calloc(n, sizeof(*r));
        pos = calloc(n, sizeof(*pos));
        assert_true(order && e && r && pos);
        for (size_t i = 0; i < n; i++) {
                order[i].t = cuts[i].t_us;
                order[i].idx = i;
        }
        qsort(order, n, sizeof(*order), ent_by_time);
        for (size_t i = 0; i < n; i++)
                pos[order[i].idx] = i;

        for (size_t i = 0, k = 0; i < n && k < p->keep_last; i++) {
                if (cuts[order[i].idx].pinned)
                        continue;
                r[order[i].idx].last = (unsigned)++k;
                reach = i > reach ? i : reach;
                reached = 1;
        }
        for (int b = 0; b < 4; b++) {
                size_t m = 0, heads = 0;

                for (size_t i = 0; i < n; i++) {
                        if (cuts[i].pinned)
                                continue;
                        e[m].t = cuts[i].t_us;
                        e[m].idx = i;
                        e[m].pos = pos[i];
                        oracle_label(b, cuts[i].t_us, e[m].label, sizeof(e[m].label));
                        m++;
                }
                qsort(e, m, sizeof(*e), ent_by_label);
                for (size_t i = 0; i < m; i++)
                        if (i == 0 || strcmp(e[i].label, e[i - 1].label) != 0)
                                e[heads++] = e[i];
                qsort(e, heads, sizeof(*e), ent_by_pos);
                for (size_t i = 0; i < heads && i < limit[b]; i++) {
                        snprintf(r[e[i].idx].lab[b], sizeof(r[e[i].idx].lab[b]), "%s", e[i].label);
                        reach = e[i].pos > reach ? e[i].pos : reach;
                        reached = 1;
                }
        }
        for (size_t i = 0; i < n; i++) {
                char *w = want[i];
                int any = 0;

                w[0] = '\0';
                if (cuts[i].pinned) {
                        snprintf(w, 96, "pinned");
                        want_keep[i] = 1;
                        kept++;
                        continue;
                }
                if (r[i].last) {
                        snprintf(w, 96, "last %u", r[i].last);
                        any = 1;
                }
                for (int b = 0; b < 4; b++) {
                        if (!r[i].lab[b][0])
                                continue;
                        snprintf(w + strlen(w), 96 - strlen(w), "%s%s %s", any ? ", " : "", word[b], r[i].lab[b]);
                        any = 1;
                }
                want_keep[i] = any;
                if (any)
                        kept++;
                else
                        snprintf(w, 96, "%s", reached && pos[i] <= reach ? WHY_SUPERSEDED : WHY_OLD);
        }
        free(order);
        free(e);
        free(r);
        free(pos);
        return kept;
}

/* Applies p and checks every cut's keep and why against the oracle; returns the count kept. */
static size_t apply_checked(const struct retention_policy *p, struct retention_cut *cuts, size_t n)
{
        char (*want)[96] = calloc(n ? n : 1, sizeof(*want));
        int *want_keep = calloc(n ? n : 1, sizeof(*want_keep));
        size_t got, expect, flagged = 0;

        assert_true(want && want_keep);
        got = retention_apply(p, cuts, n);
        expect = oracle(p, cuts, n, want, want_keep);
        for (size_t i = 0; i < n; i++) {
                assert_string_equal(cuts[i].why, want[i]);
                assert_int_equal(cuts[i].keep, want_keep[i]);
                flagged += cuts[i].keep != 0;
        }
        assert_int_equal(got, expect);
        assert_int_equal(got, flagged);
        free(want);
        free(want_keep);
        return got;
}

/* ---- helpers ----------------------------------------------------------- */

static struct retention_cut *year_history(void)
{
        struct retention_cut *c = calloc(YEAR_CUTS, sizeof(*c));
        long long t0 = at(2025, 1, 1, 0, 0);

        assert_non_null(c);
        for (size_t i = 0; i < YEAR_CUTS; i++)
                c[i].t_us = t0 + (long long)i * STEP_US;
        assert_true(c[YEAR_CUTS - 1].t_us == at(2025, 12, 31, 23, 45));
        return c;
}

/* The cut of the (unshuffled) year history taken at t. */
static const struct retention_cut *year_at(const struct retention_cut *c, long long t)
{
        long long i = (t - at(2025, 1, 1, 0, 0)) / STEP_US;

        assert_true(i >= 0 && i < YEAR_CUTS);
        assert_true(c[i].t_us == t);
        return &c[i];
}

static void assert_year(const struct retention_cut *c, long long t, const char *why)
{
        const struct retention_cut *x = year_at(c, t);

        assert_string_equal(x->why, why);
        assert_int_equal(x->keep, strcmp(why, WHY_OLD) != 0 && strcmp(why, WHY_SUPERSEDED) != 0);
}

static size_t count_with(const struct retention_cut *c, size_t n, const char *needle)
{
        size_t k = 0;

        for (size_t i = 0; i < n; i++)
                k += strstr(c[i].why, needle) != NULL;
        return k;
}

/* Deterministic shuffle (xorshift64), so a failure reproduces. */
static void shuffle(struct retention_cut *c, size_t n, uint64_t seed)
{
        for (size_t i = n; i > 1; i--) {
                struct retention_cut tmp;
                size_t j;

                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                j = (size_t)(seed % i);
                tmp = c[i - 1];
                c[i - 1] = c[j];
                c[j] = tmp;
        }
}

/* The why a lone cut at t gets: shows the period name the module gives t. */
static void assert_alone(struct retention_policy p, long long t, const char *why)
{
        struct retention_cut c = { .t_us = t };

        assert_int_equal(retention_apply(&p, &c, 1), 1);
        assert_int_equal(c.keep, 1);
        assert_string_equal(c.why, why);
}

/* ---- tests ------------------------------------------------------------- */

/* A year of quarter-hourly cuts, {keep_last 4, hourly 24, daily 7, weekly 4, monthly 12}.
 * By hand, with 2025-12-31 a Wednesday (2026-01-01 is a Thursday, so ISO 2026-W01
 * runs Mon 2025-12-29 .. Sun 2026-01-04 and 2025 has 52 weeks):
 *   keep_last 4: 12-31 23:45, 23:30, 23:15, 23:00                        4
 *   hourly 24:   12-31 hh:45 for hh = 23..00 (23:45 already kept)        +23 = 27
 *   daily 7:     23:45 of 12-25..12-31 (12-31 already kept)              +6  = 33
 *   weekly 4:    W01 -> 12-31 23:45, W52 (12-22..28) -> Sun 12-28 23:45,
 *                W51 -> Sun 12-21, W50 -> Sun 12-14 (first two kept)     +2  = 35
 *   monthly 12:  23:45 of each month's last day, Dec's being the newest
 *                cut overall (already kept)                              +11 = 46
 * The rules keep 4 + 24 + 7 + 4 + 12 = 51 cuts between them; the newest is
 * counted by all five (4 too many) and 12-28 23:45 by two (1 too many): 46. */
static void test_year_gfs(void **state)
{
        const struct retention_policy p = { .keep_last = 4, .hourly = 24, .daily = 7, .weekly = 4, .monthly = 12 };
        struct retention_cut *c = year_history();
        long long t0 = at(2025, 1, 1, 0, 0);

        (void)state;
        assert_int_equal(retention_apply(&p, c, YEAR_CUTS), 46);
        /* The caller's array keeps its order. */
        for (size_t i = 0; i < YEAR_CUTS; i++)
                assert_true(c[i].t_us == t0 + (long long)i * STEP_US);

        assert_year(c, at(2025, 12, 31, 23, 45),
                    "last 1, hourly 2025-12-31T23, daily 2025-12-31, weekly 2026-W01, monthly 2025-12");
        assert_year(c, at(2025, 12, 31, 23, 30), "last 2");
        assert_year(c, at(2025, 12, 31, 23, 15), "last 3");
        /* Not the newest of its hour: only keep_last holds it. */
        assert_year(c, at(2025, 12, 31, 23, 0), "last 4");
        assert_year(c, at(2025, 12, 31, 22, 45), "hourly 2025-12-31T22");
        assert_year(c, at(2025, 12, 31, 22, 30), WHY_SUPERSEDED);
        /* The 24th hour is 00h of the last day; the day before gets only daily. */
        assert_year(c, at(2025, 12, 31, 0, 45), "hourly 2025-12-31T00");
        assert_year(c, at(2025, 12, 31, 0, 30), WHY_SUPERSEDED);
        assert_year(c, at(2025, 12, 30, 23, 45), "daily 2025-12-30");
        assert_year(c, at(2025, 12, 30, 22, 45), WHY_SUPERSEDED);
        assert_year(c, at(2025, 12, 29, 23, 45), "daily 2025-12-29");
        assert_year(c, at(2025, 12, 28, 23, 45), "daily 2025-12-28, weekly 2025-W52");
        assert_year(c, at(2025, 12, 25, 23, 45), "daily 2025-12-25");
        /* 8th day back: its week's slot went to Sunday 12-28. */
        assert_year(c, at(2025, 12, 24, 23, 45), WHY_SUPERSEDED);
        assert_year(c, at(2025, 12, 21, 23, 45), "weekly 2025-W51");
        assert_year(c, at(2025, 12, 14, 23, 45), "weekly 2025-W50");
        assert_year(c, at(2025, 12, 15, 0, 0), WHY_SUPERSEDED);
        /* A fifth week is one too many. */
        assert_year(c, at(2025, 12, 7, 23, 45), WHY_SUPERSEDED);
        assert_year(c, at(2025, 11, 30, 23, 45), "monthly 2025-11");
        assert_year(c, at(2025, 6, 30, 23, 45), "monthly 2025-06");
        assert_year(c, at(2025, 2, 28, 23, 45), "monthly 2025-02");
        assert_year(c, at(2025, 1, 31, 23, 45), "monthly 2025-01");
        /* Past the twelfth month's cut nothing reaches. */
        assert_year(c, at(2025, 1, 31, 23, 30), WHY_OLD);
        assert_year(c, at(2025, 1, 1, 0, 0), WHY_OLD);

        /* Each rule keeps exactly its count; overlaps are counted once in the total. */
        assert_int_equal(count_with(c, YEAR_CUTS, "last "), 4);
        assert_int_equal(count_with(c, YEAR_CUTS, "hourly "), 24);
        assert_int_equal(count_with(c, YEAR_CUTS, "daily "), 7);
        assert_int_equal(count_with(c, YEAR_CUTS, "weekly "), 4);
        assert_int_equal(count_with(c, YEAR_CUTS, "monthly "), 12);
        assert_int_equal(count_with(c, YEAR_CUTS, WHY_OLD), YEAR_CUTS - 46 - count_with(c, YEAR_CUTS, WHY_SUPERSEDED));

        /* And cut by cut against the brute-force oracle. */
        assert_int_equal(apply_checked(&p, c, YEAR_CUTS), 46);
        free(c);
}

static void test_keep_last_only(void **state)
{
        struct retention_cut c[10] = {0};
        struct retention_policy p = { .keep_last = 3 };

        (void)state;
        for (int i = 0; i < 10; i++)
                c[i].t_us = at(2026, 3, 1, i, 0);
        assert_int_equal(apply_checked(&p, c, 10), 3);
        assert_string_equal(c[9].why, "last 1");
        assert_string_equal(c[8].why, "last 2");
        assert_string_equal(c[7].why, "last 3");
        assert_false(c[6].keep);
        assert_string_equal(c[6].why, WHY_OLD);
        assert_string_equal(c[0].why, WHY_OLD);

        /* Asking for more than there are keeps them all. */
        p.keep_last = 20;
        assert_int_equal(apply_checked(&p, c, 10), 10);
        assert_string_equal(c[0].why, "last 10");
}

/* monthly 3 over daily noon cuts 2024-01-25 .. 2024-02-29 plus the last
 * microsecond of Feb 29 and 03-01T00:00. By hand: 2024-03 -> 03-01 00:00,
 * 2024-02 -> 02-29 23:59:59.999999 (leap day, newer than its noon cut),
 * 2024-01 -> 01-31 12:00. */
static void test_monthly_leap_year(void **state)
{
        struct retention_cut c[38] = {0};
        struct retention_policy p = { .monthly = 3 };
        long long mar1 = at(2024, 3, 1, 0, 0);
        size_t n = 0;

        (void)state;
        for (long long t = at(2024, 1, 25, 12, 0); t < mar1; t += DAY_US)
                c[n++].t_us = t;
        assert_int_equal(n, 36); /* 7 January days + 29 February days */
        c[n++].t_us = mar1 - 1;
        c[n++].t_us = mar1;
        assert_true(c[35].t_us == at(2024, 2, 29, 12, 0));

        assert_int_equal(apply_checked(&p, c, n), 3);
        assert_string_equal(c[37].why, "monthly 2024-03");
        assert_string_equal(c[36].why, "monthly 2024-02");
        assert_string_equal(c[35].why, WHY_SUPERSEDED);   /* Feb 29 noon */
        assert_string_equal(c[34].why, WHY_SUPERSEDED);   /* Feb 28 noon */
        assert_string_equal(c[6].why, "monthly 2024-01"); /* Jan 31 noon */
        assert_string_equal(c[5].why, WHY_OLD);

        p.monthly = 2;
        assert_int_equal(apply_checked(&p, c, n), 2);
        assert_string_equal(c[6].why, WHY_OLD);

        /* Leap rules at the edges: 2000 is a leap year, 2100 is not; before 1970 too. */
        assert_alone((struct retention_policy){ .daily = 1 }, mar1 - 1, "daily 2024-02-29");
        assert_alone((struct retention_policy){ .daily = 1 }, at(2000, 3, 1, 0, 0) - 1, "daily 2000-02-29");
        assert_alone((struct retention_policy){ .daily = 1 }, at(2100, 3, 1, 0, 0) - 1, "daily 2100-02-28");
        assert_alone((struct retention_policy){ .monthly = 1 }, at(2100, 3, 1, 0, 0) - 1, "monthly 2100-02");
        assert_alone((struct retention_policy){ .hourly = 1, .daily = 1, .weekly = 1, .monthly = 1 }, -1,
                     "hourly 1969-12-31T23, daily 1969-12-31, weekly 1970-W01, monthly 1969-12");
}

/* weekly 3 over daily 06:00 cuts 2026-12-14 .. 2027-01-05. 2027-01-01 is a
 * Friday, so 2026's last Thursday is 12-31 and ISO 2026-W53 runs Mon 12-28 ..
 * Sun 2027-01-03. By hand: 2027-W01 -> Tue 01-05, 2026-W53 -> Sun 01-03,
 * 2026-W52 -> Sun 12-27; 12-31 and 01-01 lose to 01-03 within W53. */
static void test_weekly_iso_year_boundary(void **state)
{
        struct retention_cut c[23] = {0};
        const struct retention_policy p = { .weekly = 3 };
        size_t n = 0;

        (void)state;
        for (long long t = at(2026, 12, 14, 6, 0); t <= at(2027, 1, 5, 6, 0); t += DAY_US)
                c[n++].t_us = t;
        assert_int_equal(n, 23);
        assert_int_equal(apply_checked(&p, c, n), 3);
        assert_string_equal(c[22].why, "weekly 2027-W01");  /* 01-05 */
        assert_string_equal(c[21].why, WHY_SUPERSEDED);     /* 01-04, same week */
        assert_string_equal(c[20].why, "weekly 2026-W53");  /* 01-03 */
        assert_string_equal(c[18].why, WHY_SUPERSEDED);     /* 01-01 */
        assert_string_equal(c[17].why, WHY_SUPERSEDED);     /* 12-31 */
        assert_string_equal(c[13].why, "weekly 2026-W52");  /* 12-27 */
        assert_string_equal(c[6].why, WHY_OLD);             /* 12-20, W51 */

        assert_alone(p, at(2026, 12, 31, 12, 0), "weekly 2026-W53");
        assert_alone(p, at(2027, 1, 1, 0, 0), "weekly 2026-W53");
        assert_alone(p, at(2027, 1, 3, 23, 59), "weekly 2026-W53");
        assert_alone(p, at(2027, 1, 4, 0, 0), "weekly 2027-W01");
        assert_alone(p, at(2024, 12, 29, 23, 59), "weekly 2024-W52");
        assert_alone(p, at(2024, 12, 30, 0, 0), "weekly 2025-W01");
        assert_alone(p, at(2021, 1, 3, 12, 0), "weekly 2020-W53");
        assert_alone(p, at(2026, 1, 1, 0, 0), "weekly 2026-W01");
}

static void test_random_order(void **state)
{
        const struct retention_policy p = { .keep_last = 4, .hourly = 24, .daily = 7, .weekly = 4, .monthly = 12 };
        struct retention_cut *sorted = year_history(), *mixed = year_history();

        (void)state;
        shuffle(mixed, YEAR_CUTS, 0x9e3779b97f4a7c15ULL);
        assert_int_equal(retention_apply(&p, sorted, YEAR_CUTS), 46);
        assert_int_equal(apply_checked(&p, mixed, YEAR_CUTS), 46);
        for (size_t i = 0; i < YEAR_CUTS; i++) {
                const struct retention_cut *s = year_at(sorted, mixed[i].t_us);

                assert_int_equal(mixed[i].keep, s->keep);
                assert_string_equal(mixed[i].why, s->why);
        }
        free(sorted);
        free(mixed);
}

/* Cuts in the same microsecond: the one earlier in the array counts as newer. */
static void test_duplicate_timestamps(void **state)
{
        long long t = at(2026, 6, 1, 10, 0);
        struct retention_cut c[5] = {
                { .t_us = t }, { .t_us = t }, { .t_us = t - HOUR_US }, { .t_us = t - HOUR_US }, { .t_us = t },
        };
        struct retention_policy p = { .keep_last = 1 };

        (void)state;
        assert_int_equal(apply_checked(&p, c, 5), 1);
        assert_string_equal(c[0].why, "last 1");
        assert_false(c[1].keep);
        assert_false(c[4].keep);

        p = (struct retention_policy){ .keep_last = 2 };
        assert_int_equal(apply_checked(&p, c, 5), 2);
        assert_string_equal(c[1].why, "last 2");
        assert_false(c[4].keep);

        /* One per hour: c[0] for 10h, c[2] for 09h; the twins are superseded. */
        p = (struct retention_policy){ .hourly = 2 };
        assert_int_equal(apply_checked(&p, c, 5), 2);
        assert_string_equal(c[0].why, "hourly 2026-06-01T10");
        assert_string_equal(c[2].why, "hourly 2026-06-01T09");
        assert_string_equal(c[1].why, WHY_SUPERSEDED);
        assert_string_equal(c[4].why, WHY_SUPERSEDED);
        assert_string_equal(c[3].why, WHY_OLD);

        /* Swapping twins swaps which one is kept, nothing else. */
        c[0].t_us = t - HOUR_US;
        c[3].t_us = t;
        assert_int_equal(apply_checked(&p, c, 5), 2);
        assert_string_equal(c[1].why, "hourly 2026-06-01T10");
        assert_string_equal(c[0].why, "hourly 2026-06-01T09");
}

static void test_no_cuts(void **state)
{
        const struct retention_policy p = { .keep_last = 1, .daily = 3 };
        struct retention_cut c = { .t_us = 1, .keep = -7, .why = "untouched" };

        (void)state;
        assert_int_equal(retention_apply(&p, NULL, 0), 0);
        assert_int_equal(retention_apply(&p, &c, 0), 0);
        assert_int_equal(c.keep, -7);
        assert_string_equal(c.why, "untouched");
}

static void test_empty_policy_keeps_all(void **state)
{
        const struct retention_policy none = {0};
        struct retention_cut *c = year_history();

        (void)state;
        assert_true(retention_policy_empty(&none));
        assert_false(retention_policy_empty(&(struct retention_policy){ .keep_last = 1 }));
        assert_false(retention_policy_empty(&(struct retention_policy){ .hourly = 1 }));
        assert_false(retention_policy_empty(&(struct retention_policy){ .daily = 1 }));
        assert_false(retention_policy_empty(&(struct retention_policy){ .weekly = 1 }));
        assert_false(retention_policy_empty(&(struct retention_policy){ .monthly = 1 }));

        c[100].pinned = 1;
        assert_int_equal(apply_checked(&none, c, YEAR_CUTS), YEAR_CUTS);
        assert_string_equal(c[0].why, "no retention policy");
        assert_string_equal(c[100].why, "pinned: no retention policy");
        free(c);
}

/* Pinned cuts are kept on top of the policy and are invisible to its rules. */
static void test_pinned(void **state)
{
        struct retention_cut c[6] = {0};
        struct retention_cut d[3] = {0};
        struct retention_cut h[5] = {0};
        struct retention_policy p = { .daily = 2 };

        (void)state;
        /* daily 2 over noon cuts May 1..5 with May 4 pinned and an old pinned cut:
         * May 5 takes the first slot, May 4 takes none, so the second goes to May 3. */
        for (int i = 0; i < 5; i++)
                c[i].t_us = at(2026, 5, 1 + i, 12, 0);
        c[3].pinned = 1;
        c[5].t_us = at(2025, 1, 1, 0, 0);
        c[5].pinned = 1;
        assert_int_equal(apply_checked(&p, c, 6), 4);
        assert_string_equal(c[4].why, "daily 2026-05-05");
        assert_string_equal(c[3].why, "pinned");
        assert_string_equal(c[2].why, "daily 2026-05-03");
        assert_string_equal(c[1].why, WHY_OLD);
        assert_string_equal(c[5].why, "pinned");
        assert_true(c[5].keep);

        /* Dropping the pinned cuts leaves exactly what the rules kept. */
        {
                struct retention_cut u[4];
                size_t m = 0;

                for (size_t i = 0; i < 6; i++)
                        if (!c[i].pinned)
                                u[m++] = (struct retention_cut){ .t_us = c[i].t_us };
                assert_int_equal(m, 4);
                assert_int_equal(apply_checked(&p, u, m), 2);
                for (size_t i = 0, j = 0; i < 6; i++)
                        if (!c[i].pinned) {
                                assert_int_equal(u[j].keep, c[i].keep);
                                assert_string_equal(u[j].why, c[i].why);
                                j++;
                        }
        }

        /* A pinned newest cut of a day: the day's slot goes to its next cut. */
        d[0] = (struct retention_cut){ .t_us = at(2026, 5, 5, 12, 0), .pinned = 1 };
        d[1] = (struct retention_cut){ .t_us = at(2026, 5, 5, 8, 0) };
        d[2] = (struct retention_cut){ .t_us = at(2026, 5, 4, 12, 0) };
        p = (struct retention_policy){ .daily = 1 };
        assert_int_equal(apply_checked(&p, d, 3), 2);
        assert_string_equal(d[0].why, "pinned");
        assert_string_equal(d[1].why, "daily 2026-05-05");
        assert_string_equal(d[2].why, WHY_OLD);

        /* keep_last counts unpinned cuts only. */
        for (int i = 0; i < 5; i++)
                h[i].t_us = at(2026, 5, 5, i, 0);
        h[4].pinned = 1;
        p = (struct retention_policy){ .keep_last = 2 };
        assert_int_equal(apply_checked(&p, h, 5), 3);
        assert_string_equal(h[4].why, "pinned");
        assert_string_equal(h[3].why, "last 1");
        assert_string_equal(h[2].why, "last 2");
        assert_string_equal(h[1].why, WHY_OLD);
}

/* 35040 cuts through a few policies, big limits included. It should take well
 * under a second; timing is not asserted because CI machines vary. */
static void test_performance(void **state)
{
        const struct retention_policy policies[] = {
                { .monthly = 1 },
                { .keep_last = 100, .hourly = 1000, .daily = 100, .weekly = 60, .monthly = 36 },
                { .hourly = UINT_MAX, .daily = UINT_MAX, .weekly = UINT_MAX, .monthly = UINT_MAX },
        };
        struct retention_cut *c = year_history();

        (void)state;
        shuffle(c, YEAR_CUTS, 42);
        assert_int_equal(retention_apply(&policies[0], c, YEAR_CUTS), 1);
        /* hourly 1000 alone keeps 1000 cuts; the other rules can only add. */
        assert_true(retention_apply(&policies[1], c, YEAR_CUTS) >= 1000);
        /* Every hour has its own slot: one cut in four survives. */
        assert_int_equal(retention_apply(&policies[2], c, YEAR_CUTS), YEAR_CUTS / 4);
        assert_int_equal(retention_apply(&(struct retention_policy){ .keep_last = UINT_MAX }, c, YEAR_CUTS),
                         YEAR_CUTS);
        free(c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_year_gfs),
                cmocka_unit_test(test_keep_last_only),
                cmocka_unit_test(test_monthly_leap_year),
                cmocka_unit_test(test_weekly_iso_year_boundary),
                cmocka_unit_test(test_random_order),
                cmocka_unit_test(test_duplicate_timestamps),
                cmocka_unit_test(test_no_cuts),
                cmocka_unit_test(test_empty_policy_keeps_all),
                cmocka_unit_test(test_pinned),
                cmocka_unit_test(test_performance),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
