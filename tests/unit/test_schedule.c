/* test_schedule: when a scheduled group's next run is due: first plan, catch-up
 * after downtime (once), missed runs without catch-up, random delay, advance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "schedule.h"

static long long at(const char *iso)
{
        struct tm tm = {0};

        assert_non_null(strptime(iso, "%Y-%m-%dT%H:%M:%SZ", &tm));
        return (long long)timegm(&tm);
}

static struct cfg_group group(char *schedule, unsigned delay, int catch_up)
{
        struct cfg_group g = {.name = (char *)"shop", .schedule = schedule, .random_delay_s = delay,
                              .catch_up = catch_up};
        return g;
}

static void test_first_plan(void **state)
{
        struct cfg_group g = group((char *)"*/15 * * * *", 0, 1);
        struct schedule s;
        lserr err = {0};

        (void)state;
        assert_int_equal(schedule_plan(&s, &g, NULL, at("2026-01-01T10:07:00Z"), &err), 0);
        assert_true(s.due_s == at("2026-01-01T10:15:00Z"));
        assert_true(s.start_s == s.due_s);
        assert_false(s.catch_up_run);
        assert_int_equal(s.missed, 0);
}

static void test_catch_up_once(void **state)
{
        struct cfg_group g = group((char *)"*/15 * * * *", 0, 1);
        struct cat_sched last = {.last_due_s = at("2026-01-01T10:45:00Z")};
        long long now = at("2026-01-01T11:50:00Z");
        struct schedule s;
        lserr err = {0};

        (void)state;
        assert_int_equal(schedule_plan(&s, &g, &last, now, &err), 0);
        /* 11:00, 11:15, 11:30, 11:45 passed while down: one run, now, for the latest. */
        assert_int_equal(s.missed, 4);
        assert_true(s.catch_up_run);
        assert_true(s.due_s == at("2026-01-01T11:45:00Z"));
        assert_true(s.start_s == now);
        schedule_advance(&s, now);
        assert_true(s.due_s == at("2026-01-01T12:00:00Z"));
        assert_false(s.catch_up_run);
        assert_int_equal(s.missed, 0);
}

static void test_missed_without_catch_up(void **state)
{
        struct cfg_group g = group((char *)"@hourly", 0, 0);
        struct cat_sched last = {.last_due_s = at("2026-01-01T08:00:00Z")};
        struct schedule s;
        lserr err = {0};

        (void)state;
        assert_int_equal(schedule_plan(&s, &g, &last, at("2026-01-01T11:30:00Z"), &err), 0);
        assert_int_equal(s.missed, 3); /* 09:00, 10:00, 11:00 */
        assert_true(s.missed_last_s == at("2026-01-01T11:00:00Z"));
        assert_false(s.catch_up_run);
        assert_true(s.due_s == at("2026-01-01T12:00:00Z"));
}

/* A run that took longer than the interval: the next due time is after now,
 * never one already past (that one was skipped while it ran). */
static void test_advance_after_a_long_run(void **state)
{
        struct cfg_group g = group((char *)"*/15 * * * *", 0, 1);
        struct schedule s;
        lserr err = {0};

        (void)state;
        assert_int_equal(schedule_plan(&s, &g, NULL, at("2026-01-01T09:59:00Z"), &err), 0);
        assert_true(s.due_s == at("2026-01-01T10:00:00Z"));
        schedule_advance(&s, at("2026-01-01T10:16:30Z"));
        assert_true(s.due_s == at("2026-01-01T10:30:00Z"));
}

static void test_random_delay_bounded(void **state)
{
        struct cfg_group g = group((char *)"0 * * * *", 120, 1);
        long long now = at("2026-01-01T10:30:00Z"), lo = -1, hi = -1;
        struct schedule s;
        lserr err = {0};

        (void)state;
        for (int i = 0; i < 500; i++) {
                assert_int_equal(schedule_plan(&s, &g, NULL, now, &err), 0);
                assert_true(s.due_s == at("2026-01-01T11:00:00Z"));
                assert_true(s.start_s >= s.due_s && s.start_s <= s.due_s + 120);
                lo = lo < 0 || s.start_s < lo ? s.start_s : lo;
                hi = s.start_s > hi ? s.start_s : hi;
        }
        /* Spread, not a constant: 500 draws over 121 values. */
        assert_true(hi - lo > 60);
}

/* Down for a year on a per-minute schedule: counting stops at a bound, but the
 * latest missed minute is still the one before now. */
static void test_long_downtime(void **state)
{
        struct cfg_group g = group((char *)"* * * * *", 0, 0);
        struct cat_sched last = {.last_due_s = at("2025-01-01T00:00:00Z")};
        struct schedule s;
        lserr err = {0};

        (void)state;
        assert_int_equal(schedule_plan(&s, &g, &last, at("2026-01-01T10:30:30Z"), &err), 0);
        assert_int_equal(s.missed, 100000);
        assert_true(s.missed_last_s == at("2026-01-01T10:30:00Z"));
        assert_true(s.due_s == at("2026-01-01T10:31:00Z"));
}

static void test_bad_schedule(void **state)
{
        struct cfg_group g = group((char *)"61 * * * *", 0, 1), never = group((char *)"0 0 30 2 *", 0, 1);
        struct schedule s;
        lserr err = {0};

        (void)state;
        assert_int_equal(schedule_plan(&s, &g, NULL, at("2026-01-01T10:00:00Z"), &err), -EINVAL);
        assert_non_null(strstr(err.msg, "minute"));
        lserr_clear(&err);
        assert_int_equal(schedule_plan(&s, &never, NULL, at("2026-01-01T10:00:00Z"), &err), -EINVAL);
        assert_non_null(strstr(err.msg, "never falls due"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_first_plan),
                cmocka_unit_test(test_catch_up_once),
                cmocka_unit_test(test_missed_without_catch_up),
                cmocka_unit_test(test_advance_after_a_long_run),
                cmocka_unit_test(test_random_delay_bounded),
                cmocka_unit_test(test_long_downtime),
                cmocka_unit_test(test_bad_schedule),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
