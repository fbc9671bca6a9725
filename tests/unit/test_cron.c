/* test_cron: cron expressions parse into the right sets, cron_next finds hand-checked
 * times across month ends and leap rules, bad input fails with a message naming the
 * field, and random input never crashes the parser. */
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

#include "cron.h"

/* "2026-05-04T10:07" or "2026-05-04T10:07:30", UTC, to Unix seconds. */
static long long iso(const char *s)
{
        struct tm tm = {0};
        int n;

        n = sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                   &tm.tm_sec);
        if (n < 5) {
                fprintf(stderr, "bad test time \"%s\"\n", s);
                abort();
        }
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        return (long long)timegm(&tm);
}

static const char *show(long long t, char buf[64])
{
        struct tm tm;
        time_t tt = (time_t)t;

        if (t == -1)
                return "never";
        gmtime_r(&tt, &tm);
        strftime(buf, 64, "%Y-%m-%dT%H:%M:%S %a", &tm);
        return buf;
}

/* Plain day-by-day search through the C library's calendar, to check cron_next's
 * own arithmetic and skipping against. */
static long long ref_next(const struct cron *c, long long after)
{
        long long t = after - (after % 60 + 60) % 60 + 60, limit = after + 9LL * 366 * 86400;
        long long day0 = t - (t % 86400 + 86400) % 86400;

        for (long long day = day0; day <= limit; day += 86400) {
                time_t tt = (time_t)day;
                struct tm tm;
                int in_mdays, in_wdays, hit;

                gmtime_r(&tt, &tm);
                if (!(c->months >> (tm.tm_mon + 1) & 1))
                        continue;
                in_mdays = c->mdays >> tm.tm_mday & 1;
                in_wdays = c->wdays >> tm.tm_wday & 1;
                hit = (c->mday_any || c->wday_any) ? in_mdays && in_wdays : in_mdays || in_wdays;
                if (!hit)
                        continue;
                for (long long s = day == day0 ? t - day : 0; s < 86400; s += 60)
                        if ((c->hours >> (s / 3600) & 1) && (c->minutes >> (s % 3600 / 60) & 1))
                                return day + s <= limit ? day + s : -1;
        }
        return -1;
}

struct next_case {
        const char *expr, *after, *want; /* want NULL: -1 */
};

static const struct next_case next_cases[] = {
        /* Strictly after: on a match the next one is wanted. */
        {"*/15 * * * *", "2026-05-04T10:07", "2026-05-04T10:15"},
        {"*/15 * * * *", "2026-05-04T10:15:00", "2026-05-04T10:30"},
        {"*/15 * * * *", "2026-05-04T10:14:59", "2026-05-04T10:15"},
        {"*/15 * * * *", "2026-05-04T23:45", "2026-05-05T00:00"},
        {"*/30 * * * *", "2026-05-04T22:45", "2026-05-04T23:00"},
        {"10 8,9 * * *", "2026-05-04T08:30", "2026-05-04T09:10"},
        {"0 * * * *", "2026-05-04T10:00", "2026-05-04T11:00"},
        {"0 * * * *", "2026-12-31T23:30", "2027-01-01T00:00"},
        {"@hourly", "2026-05-04T10:59:59", "2026-05-04T11:00"},
        {"@daily", "2026-05-04T00:00", "2026-05-05T00:00"},
        {"@midnight", "2026-05-04T13:12", "2026-05-05T00:00"},
        /* 2026-05-04 is a Monday. */
        {"@weekly", "2026-05-04T10:00", "2026-05-10T00:00"},
        {"@weekly", "2026-05-10T00:00", "2026-05-17T00:00"},
        {"@monthly", "2026-01-31T12:00", "2026-02-01T00:00"},
        {"@monthly", "2026-12-01T00:00", "2027-01-01T00:00"},
        {"@yearly", "2026-01-01T00:00", "2027-01-01T00:00"},
        {"@annually", "2026-07-04T08:00", "2027-01-01T00:00"},
        /* Months without a 31st are skipped. */
        {"0 0 31 * *", "2026-01-31T00:00", "2026-03-31T00:00"},
        {"0 0 31 * *", "2026-03-31T00:00", "2026-05-31T00:00"},
        {"0 0 30 * *", "2026-01-30T00:00", "2026-03-30T00:00"},
        /* Gregorian leap years: 2000 is one, 2100 is not. */
        {"0 0 29 2 *", "2026-03-01T00:00", "2028-02-29T00:00"},
        {"0 0 29 2 *", "1999-03-01T00:00", "2000-02-29T00:00"},
        {"0 0 29 2 *", "2096-03-01T00:00", "2104-02-29T00:00"},
        {"0 0 29 2 *", "2096-02-29T00:00", "2104-02-29T00:00"},
        {"0 0 * * *", "2100-02-28T12:00", "2100-03-01T00:00"},
        {"0 0 * * *", "2000-02-28T12:00", "2000-02-29T00:00"},
        {"0 0 * * *", "2028-02-28T23:59:59", "2028-02-29T00:00"},
        /* Both day fields restricted: either matches. 2026-05-15 is a Friday. */
        {"0 0 1,15 * 1", "2026-05-04T00:00", "2026-05-11T00:00"},
        {"0 0 1,15 * 1", "2026-05-11T00:00", "2026-05-15T00:00"},
        {"0 0 1,15 * 1", "2026-05-15T00:00", "2026-05-18T00:00"},
        {"0 0 1,15 * 1", "2026-05-25T00:00", "2026-06-01T00:00"},
        {"0 0 30 2 mon", "2026-03-01T00:00", "2027-02-01T00:00"},
        /* Day-of-month "*\/10" with a weekday: Vixie cron wants both. */
        {"0 0 */10 * mon", "2026-05-04T00:00", "2026-05-11T00:00"},
        {"0 0 */10 * mon", "2026-05-11T00:00", "2026-06-01T00:00"},
        /* 0 and 7 are both Sunday. */
        {"30 4 * * sun,7", "2026-05-04T00:00", "2026-05-10T04:30"},
        {"30 4 * * sun,7", "2026-05-10T04:30", "2026-05-17T04:30"},
        {"30 4 * * 7", "2026-05-04T00:00", "2026-05-10T04:30"},
        {"0 0 * * 1/2", "2026-05-04T00:00", "2026-05-06T00:00"},
        {"0 0 * * 1/2", "2026-05-08T00:00", "2026-05-10T00:00"},
        /* Office hours: 2026-05-08 is a Friday. */
        {"0 9-17/2 * * mon-fri", "2026-05-08T09:30", "2026-05-08T11:00"},
        {"0 9-17/2 * * mon-fri", "2026-05-08T16:59:59", "2026-05-08T17:00"},
        {"0 9-17/2 * * mon-fri", "2026-05-08T17:00", "2026-05-11T09:00"},
        {"0 12 * jan-mar/2 *", "2026-01-31T12:00", "2026-03-01T12:00"},
        {"0 12 * JAN-Mar/2 *", "2026-03-31T12:00", "2027-01-01T12:00"},
        /* Ends of hours, days, months and years. */
        {"* * * * *", "2026-12-31T23:59:00", "2027-01-01T00:00"},
        {"* * * * *", "2026-12-31T23:59:59", "2027-01-01T00:00"},
        {"59 23 * * *", "2026-12-31T23:59:00", "2027-01-01T23:59"},
        {"0 0 1 * *", "2026-04-30T23:59:30", "2026-05-01T00:00"},
        {"59 23 31 12 *", "2026-01-01T00:00", "2026-12-31T23:59"},
        {"0 0 1 1 *", "1969-06-01T00:00", "1970-01-01T00:00"},
        {"* * * * *", "9999-12-31T23:58:00", "9999-12-31T23:59:00"},
        /* Never. */
        {"0 0 30 2 *", "2026-01-01T00:00", NULL},
        {"0 0 31 2 *", "2026-01-01T00:00", NULL},
        {"0 0 31 4,6,9,11 *", "2026-01-01T00:00", NULL},
};

static void test_next_known(void **state)
{
        char a[64], b[64];
        int bad = 0;

        (void)state;
        for (size_t i = 0; i < sizeof(next_cases) / sizeof(next_cases[0]); i++) {
                const struct next_case *k = &next_cases[i];
                struct cron c;
                lserr err = {0};
                long long after = iso(k->after), want = k->want ? iso(k->want) : -1, got;

                if (cron_parse(k->expr, &c, &err) < 0) {
                        fprintf(stderr, "\"%s\": %s\n", k->expr, err.msg);
                        bad++;
                        continue;
                }
                got = cron_next(&c, after);
                if (got != want) {
                        fprintf(stderr, "\"%s\" after %s: got %s, want %s\n", k->expr, k->after, show(got, a),
                                show(want, b));
                        bad++;
                }
                if (ref_next(&c, after) != want) {
                        fprintf(stderr, "\"%s\" after %s: reference disagrees with the table\n", k->expr, k->after);
                        bad++;
                }
        }
        assert_int_equal(bad, 0);
}

static void test_next_limits(void **state)
{
        struct cron c;

        (void)state;
        assert_int_equal(cron_parse("* * * * *", &c, NULL), 0);
        assert_int_equal(cron_next(&c, LLONG_MAX), -1);
        assert_int_equal(cron_next(&c, LLONG_MIN), -1);
        assert_int_equal(cron_next(&c, -1), 0);
        assert_int_equal(cron_next(&c, -61), -60);
        assert_int_equal(cron_next(&c, 59), 60);
}

static void test_parse_sets(void **state)
{
        struct cron c, d;

        (void)state;
        assert_int_equal(cron_parse("*/15 9-17/2 1,15 * mon-fri", &c, NULL), 0);
        assert_true(c.minutes == (1ULL << 0 | 1ULL << 15 | 1ULL << 30 | 1ULL << 45));
        assert_int_equal(c.hours, 1u << 9 | 1u << 11 | 1u << 13 | 1u << 15 | 1u << 17);
        assert_int_equal(c.mdays, 1u << 1 | 1u << 15);
        assert_int_equal(c.months, 0x1ffe);
        assert_int_equal(c.wdays, 0x3e);
        assert_false(c.mday_any);
        assert_false(c.wday_any);

        assert_int_equal(cron_parse("\t 0 0 * * sun,7 \t", &c, NULL), 0);
        assert_int_equal(c.wdays, 0x01);
        assert_true(c.mday_any);
        assert_false(c.wday_any);

        assert_int_equal(cron_parse("* * */2 * 5-7", &c, NULL), 0);
        assert_true(c.minutes == (1ULL << 60) - 1);
        assert_int_equal(c.hours, (1u << 24) - 1);
        for (int d1 = 1; d1 <= 31; d1++)
                assert_int_equal(c.mdays >> d1 & 1, d1 % 2);
        assert_int_equal(c.wdays, 1u << 5 | 1u << 6 | 1u << 0);
        assert_true(c.mday_any);

        assert_int_equal(cron_parse("0 0 1 Jan,JUL,dec *", &c, NULL), 0);
        assert_int_equal(c.months, 1u << 1 | 1u << 7 | 1u << 12);
        assert_int_equal(cron_parse("0 0 * * *", &c, NULL), 0);
        assert_int_equal(c.wdays, 0x7f);
        assert_int_equal(cron_parse("0 0 * * 1/2", &c, NULL), 0);
        assert_int_equal(c.wdays, 0x2b); /* 1, 3, 5 and 7 = Sunday */
        assert_int_equal(cron_parse("5/20 0 * * *", &c, NULL), 0);
        assert_true(c.minutes == (1ULL << 5 | 1ULL << 25 | 1ULL << 45));
        assert_int_equal(cron_parse("007 00 01 01 00", &c, NULL), 0);
        assert_true(c.minutes == 1ULL << 7);

        /* Shorthands are their expansions. */
        const char *pairs[][2] = {
                {"@yearly", "0 0 1 1 *"},  {"@ANNUALLY", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
                {"@weekly", "0 0 * * 0"},  {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
                {" @hourly ", "0 * * * *"},
        };
        for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
                assert_int_equal(cron_parse(pairs[i][0], &c, NULL), 0);
                assert_int_equal(cron_parse(pairs[i][1], &d, NULL), 0);
                /* Field by field: the struct has padding, whose bytes mean nothing. */
                assert_true(c.minutes == d.minutes);
                assert_int_equal(c.hours, d.hours);
                assert_int_equal(c.mdays, d.mdays);
                assert_int_equal(c.months, d.months);
                assert_int_equal(c.wdays, d.wdays);
                assert_int_equal(c.mday_any, d.mday_any);
                assert_int_equal(c.wday_any, d.wday_any);
        }
}

struct bad_case {
        const char *expr, *want; /* want: a part of the message */
};

static const struct bad_case bad_cases[] = {
        {"", "empty"},
        {" \t ", "empty"},
        {"* * * *", "4 fields"},
        {"* * * * * *", "6 fields"},
        {"* * * * * root /bin/true", "7 fields"},
        {"60 * * * *", "minute: 60 is out of 0-59"},
        {"* 24 * * *", "hour: 24 is out of 0-23"},
        {"* * 0 * *", "day-of-month: 0 is out of 1-31"},
        {"* * 32 * *", "day-of-month: 32 is out of 1-31"},
        {"* * * 0 *", "month: 0 is out of 1-12"},
        {"* * * 13 *", "month: 13 is out of 1-12"},
        {"* * * * 8", "day-of-week: 8 is out of 0-7"},
        {"99999999999999999999999 * * * *", "minute: 99999999999999999999999 is out of 0-59"},
        {"5-3 * * * *", "minute: range \"5-3\" runs backwards"},
        {"* * * * fri-mon", "day-of-week: range \"fri-mon\" runs backwards"},
        {"* * * * 7-1", "day-of-week: range"},
        {"* * * dec-jan *", "month: range"},
        {"*/0 * * * *", "minute: step 0"},
        {"* 1-5/0 * * *", "hour: step 0"},
        {"*/60 * * * *", "minute: step 60"},
        {"* * * */13 *", "month: step 13"},
        {"*/99999999999999999 * * * *", "minute: step"},
        {"*/ * * * *", "minute"},
        {"*/x * * * *", "minute"},
        {"*/5/2 * * * *", "minute"},
        {"1,2, * * * *", "minute: empty item"},
        {",1 * * * *", "minute: empty item"},
        {"1,,2 * * * *", "minute: empty item"},
        {"* * * * 1,", "day-of-week: empty item"},
        {"1.5 * * * *", "minute: unexpected '.'"},
        {"** * * * *", "minute: unexpected '*'"},
        {"*-5 * * * *", "minute"},
        {"5-* * * * *", "minute"},
        {"1-2-3 * * * *", "minute"},
        {"-1 * * * *", "minute"},
        {"1- * * * *", "minute"},
        {"* * * * mon#2", "day-of-week"},
        {"* * L * *", "day-of-month"},
        {"* * ? * *", "day-of-month"},
        {"* * 1W * *", "day-of-month"},
        {"jan * * * *", "minute: \"jan\" is not a number"},
        {"* * * mon *", "month: \"mon\" is not a month name"},
        {"* * * * jan", "day-of-week: \"jan\" is not a weekday name"},
        {"* * * janu *", "month: \"janu\""},
        {"* * * ja *", "month: \"ja\""},
        {"* * * * monday", "day-of-week: \"monday\""},
        {"* * * * 1/mon", "day-of-week"},
        {"* * * * *\x01", "day-of-week: byte 0x01"},
        {"* * * * \xc2\xa0", "day-of-week: byte 0xc2"},
        {"*\n * * * *", "minute: byte 0x0a"},
        {"* @ * * *", "hour"},
        {"@reboot", "@reboot"},
        {"@every 5m", "unknown shorthand \"@every\""},
        {"@", "unknown shorthand"},
        {"@daily 0", "nothing may follow @daily"},
        {"@dailyy", "unknown shorthand"},
};

static void test_parse_invalid(void **state)
{
        int bad = 0;

        (void)state;
        for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
                struct cron c;
                lserr err = {0};
                int r;

                memset(&c, 0xa5, sizeof(c));
                r = cron_parse(bad_cases[i].expr, &c, &err);
                if (r != -EINVAL || err.code != -EINVAL || !strstr(err.msg, bad_cases[i].want)) {
                        fprintf(stderr, "\"%s\": got %d \"%s\", want -EINVAL and \"%s\"\n", bad_cases[i].expr, r,
                                err.msg, bad_cases[i].want);
                        bad++;
                }
                for (size_t j = 0; j < sizeof(c); j++)
                        if (((unsigned char *)&c)[j] != 0xa5) {
                                fprintf(stderr, "\"%s\": ret touched on failure\n", bad_cases[i].expr);
                                bad++;
                                break;
                        }
                /* Messages carry the expression, but never a control byte. */
                for (const char *m = err.msg; *m; m++)
                        if ((unsigned char)*m < 0x20 && *m != '\t') {
                                fprintf(stderr, "\"%s\": control byte in message\n", bad_cases[i].expr);
                                bad++;
                                break;
                        }
        }
        assert_int_equal(bad, 0);
}

static void test_parse_messages(void **state)
{
        lserr err = {0};
        struct cron c;
        char *big;

        (void)state;
        assert_int_equal(cron_parse("*/15 * * 13 *", &c, &err), -EINVAL);
        assert_string_equal(err.msg, "schedule \"*/15 * * 13 *\": month: 13 is out of 1-12");

        lserr_clear(&err);
        assert_int_equal(cron_parse(NULL, &c, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "empty"));

        /* 256 bytes is fine, 257 is not; the check reads no further than that. */
        big = malloc(CRON_EXPR_MAX + 2);
        assert_non_null(big);
        memset(big, ' ', CRON_EXPR_MAX + 1);
        memcpy(big, "* * * * *", 9);
        big[CRON_EXPR_MAX] = '\0';
        assert_int_equal(cron_parse(big, &c, NULL), 0);
        big[CRON_EXPR_MAX] = ' ';
        big[CRON_EXPR_MAX + 1] = '\0';
        lserr_clear(&err);
        assert_int_equal(cron_parse(big, &c, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "longer than the 256 characters"));
        free(big);

        /* The error buffer is optional. */
        assert_int_equal(cron_parse("bogus", &c, NULL), -EINVAL);
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t n)
{
        /* xorshift64*: deterministic across libcs, so a failure reproduces anywhere. */
        rnd_state ^= rnd_state >> 12;
        rnd_state ^= rnd_state << 25;
        rnd_state ^= rnd_state >> 27;
        return (uint32_t)((rnd_state * 0x2545f4914f6cdd1dULL) >> 32) % n;
}

/* Parses s from a heap copy of exactly its size, so that ASan sees any read past the
 * end; checks the outcome is a clean success or a clean -EINVAL. */
static int fuzz_one(const char *s, size_t len, int *bad)
{
        char *copy = malloc(len + 1);
        struct cron c;
        lserr err = {0};
        int r;

        assert_non_null(copy);
        memcpy(copy, s, len);
        copy[len] = '\0';
        memset(&c, 0xa5, sizeof(c));
        r = cron_parse(copy, &c, &err);
        if (r == 0) {
                long long after = iso("2026-05-04T10:07"), t = cron_next(&c, after);

                if (!c.minutes || c.minutes >> 60 || !c.hours || c.hours >> 24 || !(c.mdays & ~1u) || c.mdays & 1 ||
                    !(c.months & 0x1ffe) || c.months & ~0x1ffe || !c.wdays || c.wdays & 0x80 ||
                    (t != -1 && (t <= after || t % 60)))
                        (*bad)++;
        } else if (r != -EINVAL || err.code != -EINVAL || !err.msg[0]) {
                fprintf(stderr, "fuzz: \"%s\": %d \"%s\"\n", copy, r, err.msg);
                (*bad)++;
        }
        free(copy);
        return r;
}

static void test_fuzz(void **state)
{
        static const char alphabet[] = "0123456789*/,- abcjmsw@";
        char s[CRON_EXPR_MAX + 64];
        int bad = 0, ok = 0;

        (void)state;
        for (int i = 0; i < 20000; i++) {
                size_t len = rnd(32);

                for (size_t j = 0; j < len; j++)
                        s[j] = alphabet[rnd(sizeof(alphabet) - 1)];
                ok += fuzz_one(s, len, &bad) == 0;
        }
        /* Five fields of items that are mostly well-formed, to get past the field
         * count and into the ranges, steps and names. */
        for (int i = 0; i < 20000; i++) {
                static const char *const values[] = {"*", "0", "1", "2", "5", "7", "9", "12", "13", "23", "24",
                                                     "31", "32", "59", "60", "jan", "Mon", "SUN", "xyz", ""};
                size_t len = 0;

                static const char *const safe[] = {"*", "1", "1-5", "*/5", "2,3"};

                for (int f = 0; f < 5; f++) {
                        const char *a = values[rnd(20)], *b = values[rnd(20)], *c = values[rnd(20)];
                        int n;

                        switch (rnd(2) ? 7 : rnd(7)) {
                        case 0:
                        case 1:
                                n = snprintf(s + len, 40, "%s", a);
                                break;
                        case 2:
                                n = snprintf(s + len, 40, "%s-%s", a, b);
                                break;
                        case 3:
                                n = snprintf(s + len, 40, "%s/%s", a, b);
                                break;
                        case 4:
                                n = snprintf(s + len, 40, "%s-%s/%s", a, b, c);
                                break;
                        case 5:
                                n = snprintf(s + len, 40, "%s,%s", a, b);
                                break;
                        case 6:
                                n = snprintf(s + len, 40, "%s%s", a, b);
                                break;
                        default:
                                n = snprintf(s + len, 40, "%s", safe[rnd(5)]);
                                break;
                        }

                        len += (size_t)n;
                        s[len++] = ' ';
                }
                ok += fuzz_one(s, len - 1, &bad) == 0;
        }
        /* Any byte at all, up to past the length limit. */
        for (int i = 0; i < 5000; i++) {
                size_t len = rnd(CRON_EXPR_MAX + 40);

                for (size_t j = 0; j < len; j++)
                        s[j] = (char)(1 + rnd(255));
                fuzz_one(s, len, &bad);
        }
        assert_int_equal(bad, 0);
        assert_true(ok > 100); /* the generator does reach valid expressions */
}

/* Random valid expressions, built from the grammar, against the reference search. */
static void gen_field(char *out, size_t cap, int lo, int hi, const char *const *names)
{
        size_t len = 0;
        int items = 1 + (int)rnd(3);

        out[0] = '\0';
        for (int i = 0; i < items; i++) {
                int a = lo + (int)rnd((uint32_t)(hi - lo + 1)), b = a + (int)rnd((uint32_t)(hi - a + 1));
                int step = 1 + (int)rnd((uint32_t)hi), kind = (int)rnd(8);
                char va[12], vb[12]; /* an int in decimal */

                if (names && rnd(2) && a - lo < (hi == 7 ? 7 : 12) && b - lo < (hi == 7 ? 7 : 12)) {
                        snprintf(va, sizeof(va), "%s", names[a - lo]);
                        snprintf(vb, sizeof(vb), "%s", names[b - lo]);
                } else {
                        snprintf(va, sizeof(va), "%d", a);
                        snprintf(vb, sizeof(vb), "%d", b);
                }
                if (i == 0 && kind == 0)
                        len += (size_t)snprintf(out + len, cap - len, "*");
                else if (i == 0 && kind == 1)
                        len += (size_t)snprintf(out + len, cap - len, "*/%d", step);
                else if (kind <= 3)
                        len += (size_t)snprintf(out + len, cap - len, "%s", va);
                else if (kind <= 5)
                        len += (size_t)snprintf(out + len, cap - len, "%s-%s", va, vb);
                else if (kind == 6)
                        len += (size_t)snprintf(out + len, cap - len, "%s-%s/%d", va, vb, step);
                else
                        len += (size_t)snprintf(out + len, cap - len, "%s/%d", va, step);
                if (i + 1 < items)
                        len += (size_t)snprintf(out + len, cap - len, ",");
        }
}

static void test_next_against_reference(void **state)
{
        static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                             "jul", "aug", "sep", "oct", "nov", "dec"};
        static const char *const wdays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
        long long lo = iso("1990-01-01T00:00"), hi = iso("2200-01-01T00:00");
        int bad = 0;

        (void)state;
        for (int i = 0; i < 400; i++) {
                char f[5][64], expr[5 * 64 + 5], a[64], b[64];
                struct cron c;
                lserr err = {0};
                long long after, got, want;

                gen_field(f[0], sizeof(f[0]), 0, 59, NULL);
                gen_field(f[1], sizeof(f[1]), 0, 23, NULL);
                /* Mostly the month ends, where the calendar is hardest. */
                if (rnd(2))
                        gen_field(f[2], sizeof(f[2]), 1, 31, NULL);
                else
                        snprintf(f[2], sizeof(f[2]), "%d", 28 + (int)rnd(4));
                gen_field(f[3], sizeof(f[3]), 1, 12, months);
                if (rnd(2))
                        snprintf(f[4], sizeof(f[4]), "*");
                else
                        gen_field(f[4], sizeof(f[4]), 0, 7, wdays);
                snprintf(expr, sizeof(expr), "%s %s %s %s %s", f[0], f[1], f[2], f[3], f[4]);
                if (cron_parse(expr, &c, &err) < 0) {
                        fprintf(stderr, "generated \"%s\": %s\n", expr, err.msg);
                        bad++;
                        continue;
                }
                after = lo + (long long)(((uint64_t)rnd(UINT32_MAX) << 32 | rnd(UINT32_MAX)) % (uint64_t)(hi - lo));
                for (int k = 0; k < 3; k++) {
                        got = cron_next(&c, after);
                        want = ref_next(&c, after);
                        if (got != want) {
                                fprintf(stderr, "\"%s\" after %lld: got %s, want %s\n", expr, after, show(got, a),
                                        show(want, b));
                                bad++;
                                break;
                        }
                        if (got < 0)
                                break;
                        after = got + (long long)rnd(2) * 30; /* from a match, or just past one */
                }
        }
        assert_int_equal(bad, 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_next_known),
                cmocka_unit_test(test_next_limits),
                cmocka_unit_test(test_parse_sets),
                cmocka_unit_test(test_parse_invalid),
                cmocka_unit_test(test_parse_messages),
                cmocka_unit_test(test_fuzz),
                cmocka_unit_test(test_next_against_reference),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
