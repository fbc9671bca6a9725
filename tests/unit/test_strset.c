/* test_strset: the pair index: adds, lookups, a duplicate refused with the
 * first one's value, the split between the two strings, a full set, and a
 * fleet's worth of names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "strset.h"

static void test_add_get_duplicate(void **state)
{
        struct strset *s = strset_new(4);

        (void)state;
        assert_non_null(s);
        assert_int_equal(strset_get(s, "vm1", "host-a"), -1);
        assert_int_equal(strset_add(s, "vm1", "host-a", 7), -1);
        assert_int_equal(strset_get(s, "vm1", "host-a"), 7);
        /* Same VM on another agent is another pair. */
        assert_int_equal(strset_add(s, "vm1", "host-b", 8), -1);
        /* The second of a pair is refused with the first's value, which stays. */
        assert_int_equal(strset_add(s, "vm1", "host-a", 9), 7);
        assert_int_equal(strset_get(s, "vm1", "host-a"), 7);
        /* Where one string ends and the other starts matters. */
        assert_int_equal(strset_add(s, "ab", "", 1), -1);
        assert_int_equal(strset_get(s, "a", "b"), -1);
        assert_int_equal(strset_add(s, "a", "b", 2), -1);
        /* put replaces a value and says the old one. */
        assert_int_equal(strset_put(s, "vm1", "host-b", 80), 8);
        assert_int_equal(strset_get(s, "vm1", "host-b"), 80);
        /* Full: the fifth pair is refused, the four stay. */
        assert_int_equal(strset_add(s, "x", "y", 3), -2);
        assert_int_equal(strset_put(s, "x", "y", 3), -2);
        assert_int_equal(strset_get(s, "x", "y"), -1);
        assert_int_equal(strset_get(s, "ab", ""), 1);
        assert_null(strset_free(s));
}

/* 10,000 members on 1,000 agents: every one found, no false duplicate. */
static void test_fleet(void **state)
{
        enum { N = 10000 };
        static char vm[N][16], agent[N][16];
        struct strset *s = strset_new(N);

        (void)state;
        assert_non_null(s);
        for (int i = 0; i < N; i++) {
                snprintf(vm[i], sizeof(vm[i]), "v%d", i);
                snprintf(agent[i], sizeof(agent[i]), "h%d", i % 1000);
                assert_int_equal(strset_add(s, vm[i], agent[i], i), -1);
        }
        for (int i = 0; i < N; i++)
                assert_int_equal(strset_get(s, vm[i], agent[i]), i);
        assert_int_equal(strset_get(s, "v1", "h2"), -1);
        strset_free(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_add_get_duplicate),
                cmocka_unit_test(test_fleet),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
