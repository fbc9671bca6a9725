/* test_timeline: the Gantt chart of `snapshot show --timeline`, from members
 * built here: every line exact for a small cut, one row per agent above 40
 * members, members without timings, and the width's limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lockstep.pb-c.h"
#include "report.h"
#include "timeline.h"

#define T0 1767225600000000LL /* 2026-01-01T00:00:00Z */
#define MS 1000LL

/* A member frozen at `at` ms for freeze, snapshot and thaw ms, thawed at `thawed` ms. */
static struct cat_member member(const char *agent, const char *vm, long long at, long long freeze, long long snap,
                                long long thaw, long long thawed)
{
        struct cat_member m = {.code = 0};

        snprintf(m.agent, sizeof(m.agent), "%s", agent);
        snprintf(m.vm, sizeof(m.vm), "%s", vm);
        m.frozen_at_us = T0 + at * MS;
        m.thawed_at_us = T0 + thawed * MS;
        m.freeze_us = (uint64_t)(freeze * MS);
        m.snapshot_us = (uint64_t)(snap * MS);
        m.thaw_us = (uint64_t)(thaw * MS);
        m.frozen_for_us = (uint64_t)((thawed - at) * MS);
        return m;
}

/* Renders; returns the text (the caller's) or NULL with *ret_r < 0. */
static char *render(const struct cat_member *m, size_t n, unsigned width, int color, int *ret_r, lserr *err)
{
        const struct timeline_opts o = {.width = width, .color = color, .code_name = report_code_name};
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        int r;

        assert_non_null(f);
        r = timeline_render(m, n, &o, f, err);
        fclose(f);
        *ret_r = r;
        if (r < 0) {
                assert_int_equal(len, 0); /* nothing written on a refusal */
                free(buf);
                return NULL;
        }
        return buf;
}

/* Every line at most width columns, printable ASCII only. */
static void assert_fits(const char *s, unsigned width)
{
        unsigned col = 0;

        for (; *s; s++) {
                if (*s == '\n') {
                        col = 0;
                        continue;
                }
                assert_true(*s >= 0x20 && *s < 0x7f);
                assert_true(++col <= width);
        }
}

static size_t count(const char *s, const char *needle)
{
        size_t n = 0;

        for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
                n++;
        return n;
}

/* Three members on one axis, 1 ms a column: each step where its times put it. */
static void test_three_members(void **state)
{
        const struct cat_member m[] = {
                member("host-a", "web1", 0, 2, 20, 2, 40),
                member("host-b", "db1", 5, 5, 30, 5, 60),
                member("host-a", "app1", 1, 3, 10, 1, 30),
        };
        lserr err = {0};
        int r;
        char *s = render(m, 3, 73, 0, &r, &err);

        (void)state;
        assert_int_equal(r, 0);
        assert_string_equal(s,
                "3 members on 2 agents: group window 60.0 ms (first freeze to last thaw),\n"
                "freeze skew 5.0 ms, longest frozen 55.0 ms\n"
                "ms           0         10        20        30        40        50\n"
                "             +---------+---------+---------+---------+---------+--------+\n"
                "web1@host-a  FF================SSSSSSSSSSSSSSSSSSSSTT\n"
                "db1@host-b        FFFFF===============SSSSSSSSSSSSSSSSSSSSSSSSSSSSSSTTTTT\n"
                "app1@host-a   FFF===============SSSSSSSSSST\n"
                "group window |------------------------ 60.0 ms -------------------------|\n"
                "legend: F freeze, = frozen (held for the group), S snapshot, T thaw;\n"
                "|---| group window, first freeze to last thaw. Agents' clocks, one column\n"
                "= 1 ms.\n");
        assert_fits(s, 73);
        free(s);
}

/* Members with no timings say why in place of bars, one without a thaw time
 * says so; the axis and the window come from the others. */
static void test_member_without_timings(void **state)
{
        struct cat_member m[] = {
                member("host-a", "web1", 0, 2, 20, 2, 40),
                {.agent = "host-b", .vm = "db1", .code = LOCKSTEP__ERROR_CODE__E_NO_GUEST_AGENT,
                 .message = "freeze: guest agent not connected"},
                {.agent = "host-c", .vm = "cache1", .code = CAT_PENDING},
                member("host-d", "half", 10, 3, 0, 0, 0),
        };
        lserr err = {0};
        int r;
        char *s;

        (void)state;
        m[3].thawed_at_us = 0; /* frozen, its thaw never reported */
        m[3].frozen_for_us = 0;
        s = render(m, 4, 73, 0, &r, &err);
        assert_int_equal(r, 0);
        assert_string_equal(s,
                "4 members on 4 agents: group window 40.0 ms (first freeze to last thaw),\n"
                "freeze skew 10.0 ms, longest frozen 40.0 ms\n"
                "ms            0             10             20             30\n"
                "              +-------------+--------------+--------------+-------------+\n"
                "web1@host-a   FFF=======================SSSSSSSSSSSSSSSSSSSSSSSSSSSSSSTTT\n"
                "db1@host-b    no timings: E_NO_GUEST_AGENT: freeze: guest agent not conn~\n"
                "cache1@host-c no timings: PENDING\n"
                "half@host-d                 FFFFFF\n"
                "group window  |------------------------ 40.0 ms ------------------------|\n"
                "half@host-d: no thaw time recorded, its bar ends with its freeze\n"
                "legend: F freeze, = frozen (held for the group), S snapshot, T thaw;\n"
                "|---| group window, first freeze to last thaw. Agents' clocks, one column\n"
                "= 0.678 ms.\n");
        free(s);
}

/* 42 members (more than 40): one row per agent, each cell the step most of
 * its members' time went to; an agent with a member that never answered says so. */
static void test_grouped_by_agent(void **state)
{
        struct cat_member m[42];
        lserr err = {0};
        int r;
        char *s;

        (void)state;
        for (int a = 0; a < 3; a++)
                for (int i = 0; i < 14; i++) {
                        char ag[16], vm[16];
                        snprintf(ag, sizeof(ag), "host-%c", 'a' + a);
                        snprintf(vm, sizeof(vm), "vm%d", a * 14 + i);
                        m[a * 14 + i] = member(ag, vm, a * 10, 5, 10, 5, 40 + a * 10 + i);
                }
        m[28] = (struct cat_member){.agent = "host-c", .vm = "vm28", .code = CAT_PENDING};
        s = render(m, 42, 86, 0, &r, &err);
        assert_int_equal(r, 0);
        assert_string_equal(s,
                "42 members on 3 agents: group window 73.0 ms (first freeze to last thaw), freeze skew\n"
                "20.0 ms, longest frozen 53.0 ms\n"
                "ms           0         10        20        30        40        50        60        70\n"
                "             +---------+---------+---------+---------+---------+---------+---------+--\n"
                "host-a (14)  FFFFF==========================SSSSSSSSSSSSTTTTTTTTTT\n"
                "host-b (14)            FFFFF==========================SSSSSSSSSSSSTTTTTTTTTT\n"
                "host-c (14)                      FFFFF===========================SSSSSSSSSSSTTTTTTTTTT\n"
                "group window |------------------------------- 73.0 ms -------------------------------|\n"
                "host-c: 1 of 14 members without timings (first: vm28, PENDING)\n"
                "legend: F freeze, = frozen (held for the group), S snapshot, T thaw; |---| group\n"
                "window, first freeze to last thaw. Agents' clocks, one column = 1 ms.\n"
                "42 members, more than 40: one row per agent (with its number of members), from its\n"
                "earliest freeze to its latest thaw; each cell shows the step its members spent the\n"
                "most time in during that column.\n");
        assert_fits(s, 86);
        free(s);
}

/* 40 members exactly still get a row each; 41 do not. */
static void test_group_threshold(void **state)
{
        struct cat_member m[41];
        lserr err = {0};
        int r;
        char *s;

        (void)state;
        for (int i = 0; i < 41; i++) {
                char vm[16];
                snprintf(vm, sizeof(vm), "vm%d", i);
                m[i] = member(i % 2 ? "host-b" : "host-a", vm, i, 1, 5, 1, 60 + i);
        }
        s = render(m, 40, 100, 0, &r, &err);
        assert_int_equal(count(s, "@host-"), 40);
        assert_int_equal(count(s, "(20)"), 0);
        free(s);
        s = render(m, 41, 100, 0, &r, &err);
        assert_int_equal(count(s, "@host-"), 0);
        assert_non_null(strstr(s, "\nhost-a (21) "));
        assert_non_null(strstr(s, "\nhost-b (20) "));
        assert_non_null(strstr(s, "\ngroup window |"));
        assert_fits(s, 100);
        free(s);
}

/* The narrowest and the widest chart fit their width; one column less or more
 * is refused with the range, and nothing is written. */
static void test_width_limits(void **state)
{
        const struct cat_member m[] = {
                member("host-a", "a-very-long-virtual-machine-name-indeed", 0, 2, 20, 2, 40),
                member("host-b", "db1", 5, 5, 30, 5, 60),
        };
        lserr err = {0};
        int r;
        char *s;

        (void)state;
        s = render(m, 2, TIMELINE_MIN_WIDTH, 0, &r, &err);
        assert_int_equal(r, 0);
        assert_fits(s, TIMELINE_MIN_WIDTH);
        /* The long name is cut to a third of the width (13), marked where it was cut. */
        assert_non_null(strstr(s, "\na-very-long-~ F"));
        assert_non_null(strstr(s, "\ngroup window  |"));
        free(s);
        s = render(m, 2, TIMELINE_MAX_WIDTH, 0, &r, &err);
        assert_int_equal(r, 0);
        assert_fits(s, TIMELINE_MAX_WIDTH);
        free(s);
        assert_null(render(m, 2, TIMELINE_MIN_WIDTH - 1, 0, &r, &err));
        assert_int_equal(r, -EINVAL);
        assert_string_equal(err.msg, "timeline: width 39 is out of range: 40 to 1000 columns");
        lserr_clear(&err);
        assert_null(render(m, 2, TIMELINE_MAX_WIDTH + 1, 0, &r, &err));
        assert_int_equal(r, -EINVAL);
        assert_int_equal(timeline_check_width(0, &err), -EINVAL);
        assert_int_equal(timeline_check_width(-100, &err), -EINVAL);
}

/* Colour only when asked; names from the catalog never carry a control
 * character to the terminal. */
static void test_color_and_escaping(void **state)
{
        struct cat_member m[] = {member("host-a", "web1", 0, 2, 20, 2, 40)};
        lserr err = {0};
        int r;
        char *s;

        (void)state;
        snprintf(m[0].vm, sizeof(m[0].vm), "we\033[2Jb");
        s = render(m, 1, 80, 0, &r, &err);
        assert_fits(s, 80);
        assert_non_null(strstr(s, "\nwe?[2Jb@host-a "));
        free(s);
        s = render(m, 1, 80, 1, &r, &err);
        assert_non_null(strstr(s, "\033[33mFFFF\033[0m\033[34m="));
        free(s);
}

/* No member froze: no axis, every member says why, no window. */
static void test_nothing_frozen(void **state)
{
        const struct cat_member m[] = {{.agent = "host-a", .vm = "web1", .code = CAT_PENDING}};
        lserr err = {0};
        int r;
        char *s = render(m, 1, 60, 0, &r, &err);

        (void)state;
        assert_int_equal(r, 0);
        assert_null(strstr(s, "\nms "));
        assert_non_null(strstr(s, "\nweb1@host-a  no timings: PENDING\n"));
        assert_non_null(strstr(s, "\ngroup window none: no member was both frozen and thawed\n"));
        free(s);
}

/* The window is the report's: first member frozen to last member thawed. */
static void test_window(void **state)
{
        const struct cat_member m[] = {
                member("host-a", "web1", 3, 2, 20, 2, 40),
                member("host-b", "db1", 5, 5, 30, 5, 61),
                {.agent = "host-c", .vm = "x", .code = CAT_PENDING},
        };
        struct timeline_window w;

        (void)state;
        timeline_window(m, 3, &w);
        assert_int_equal(w.first_us, T0 + 3 * MS);
        assert_int_equal(w.last_thaw_us, T0 + 61 * MS);
        assert_true(w.window_ms == 58.0);
        assert_true(w.skew_ms == 2.0);
        assert_true(w.max_frozen_ms == 56.0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_three_members),      cmocka_unit_test(test_member_without_timings),
                cmocka_unit_test(test_grouped_by_agent),   cmocka_unit_test(test_group_threshold),
                cmocka_unit_test(test_width_limits),       cmocka_unit_test(test_color_and_escaping),
                cmocka_unit_test(test_nothing_frozen),     cmocka_unit_test(test_window),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
