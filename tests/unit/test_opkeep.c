/* test_opkeep: lockstepd keeps a finished operation's result at least 30 s,
 * drops it after 10 min, drops the oldest while the kept results pass their
 * budget, never one being polled or running; and a fleet cut's results (7 MB
 * each, one every 16 s) stay within the budget over 200 cuts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "opkeep.h"

#define S 1000000LL
#define MB ((size_t)1 << 20)

static void test_young_kept_old_dropped(void **state)
{
        struct opkeep_entry e[3] = {
                {.present = 1, .done = 1, .done_us = 100 * S, .bytes = 1, .seq = 1},
                {.present = 1, .done = 1, .done_us = 680 * S, .bytes = 1, .seq = 2},
                {.present = 0},
        };
        size_t ret[3];

        (void)state;
        /* At 700 s: the first is 600 s done (dropped), the second 20 s (kept). */
        assert_int_equal(opkeep_pick(e, 3, 700 * S, ret), 1);
        assert_int_equal(ret[0], 0);
        /* At 699 s the first is 599 s done: under both bounds, kept. */
        assert_int_equal(opkeep_pick(e, 3, 699 * S, ret), 0);
}

static void test_budget_drops_oldest_first(void **state)
{
        /* 4 x 10 MB done at least 30 s ago: 40 MB, over 32 MB: the oldest
         * launched goes (seq 7, in slot 2), and only it. */
        struct opkeep_entry e[4] = {
                {.present = 1, .done = 1, .done_us = 10 * S, .bytes = 10 * MB, .seq = 9},
                {.present = 1, .done = 1, .done_us = 10 * S, .bytes = 10 * MB, .seq = 8},
                {.present = 1, .done = 1, .done_us = 20 * S, .bytes = 10 * MB, .seq = 7},
                {.present = 1, .done = 1, .done_us = 10 * S, .bytes = 10 * MB, .seq = 10},
        };
        size_t ret[4];

        (void)state;
        assert_int_equal(opkeep_pick(e, 4, 100 * S, ret), 1);
        assert_int_equal(ret[0], 2);
        /* Launch order across the counter's wrap: 0xffffffff is older than 1. */
        e[0].seq = 0xffffffffu;
        e[1].seq = 1;
        e[2].seq = 2;
        e[3].seq = 3;
        assert_int_equal(opkeep_pick(e, 4, 100 * S, ret), 1);
        assert_int_equal(ret[0], 0);
}

static void test_never_polled_running_or_young(void **state)
{
        /* 100 MB over the budget, but each one is spared for its own reason. */
        struct opkeep_entry e[3] = {
                {.present = 1, .done = 1, .polled = 1, .done_us = 0, .bytes = 50 * MB, .seq = 1},
                {.present = 1, .done = 0, .done_us = 0, .bytes = 0, .seq = 2},
                {.present = 1, .done = 1, .done_us = 990 * S, .bytes = 50 * MB, .seq = 3},
        };
        size_t ret[3];

        (void)state;
        assert_int_equal(opkeep_pick(e, 3, 1000 * S, ret), 0);
}

/* 200 cuts of a 10,000-member group, one every 16 s, each result 7 MB, in 64
 * slots refilled as lockstepd does (an empty slot, else the oldest done one):
 * what is kept never passes the budget by more than what the 30 s floor holds. */
static void test_fleet_cuts_stay_bounded(void **state)
{
        struct opkeep_entry e[64] = {{0}};
        size_t ret[64], kept, most = 0;

        (void)state;
        for (unsigned c = 0; c < 200; c++) {
                long long now = (long long)c * 16 * S;
                size_t n = opkeep_pick(e, 64, now, ret);
                size_t slot = 64;

                for (size_t i = 0; i < n; i++)
                        e[ret[i]].present = 0;
                for (size_t i = 0; i < 64 && slot == 64; i++)
                        if (!e[i].present)
                                slot = i;
                assert_true(slot < 64);
                e[slot] = (struct opkeep_entry){.present = 1, .done = 1, .done_us = now + 15 * S, .bytes = 7 * MB,
                                                .seq = c};
                kept = 0;
                for (size_t i = 0; i < 64; i++)
                        kept += e[i].present ? e[i].bytes : 0;
                if (kept > most)
                        most = kept;
        }
        /* The budget, plus the ones younger than 30 s (two at one per 16 s), plus the new one. */
        assert_true(most <= OPKEEP_BYTES + 3 * 7 * MB);
        assert_true(most >= 4 * 7 * MB); /* and the budget is used: results are kept */
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_young_kept_old_dropped),
                cmocka_unit_test(test_budget_drops_oldest_first),
                cmocka_unit_test(test_never_polled_running_or_young),
                cmocka_unit_test(test_fleet_cuts_stay_bounded),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
