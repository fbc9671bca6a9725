/* test_replay: the nonce cache bound and expiry, and the coordinator counter's
 * durability across restarts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "counter.h"
#include "fsutil.h"
#include "replay.h"
#include "testutil.h"

#define W (30LL * 1000000)

static void test_nonce_cache_bounded_and_expiring(void **state)
{
        char *dir = tu_mkdtemp();
        struct replay *r = NULL;
        uint8_t id[KEYS_ID_LEN] = {1}, nonce[REPLAY_NONCE_LEN] = {0};
        lserr err = {0};

        (void)state;
        assert_int_equal(replay_open(dir, 4, W, &r, &err), 0);
        for (int i = 0; i < 4; i++) {
                nonce[0] = (uint8_t)i;
                assert_int_equal(replay_commit(r, id, nonce, 1000, (uint64_t)i + 1, 1000, &err), 0);
        }
        nonce[0] = 9;
        assert_int_equal(replay_check_nonce(r, nonce, 1000, &err), LS_ENONCEFULL);
        /* Once the window has passed the old nonces leave and the cache takes more. */
        lserr_clear(&err);
        assert_int_equal(replay_check_nonce(r, nonce, 1000 + W + 1, &err), 0);
        assert_int_equal(replay_commit(r, id, nonce, 1000 + W + 1, 5, 1000 + W + 1, &err), 0);
        assert_int_equal(replay_check_nonce(r, nonce, 1000 + W + 2, &err), LS_EREPLAY);
        replay_free(r);
        tu_rmtree(dir);
}

static void test_counter_file_corrupt_refused(void **state)
{
        char *dir = tu_mkdtemp();
        struct replay *r = NULL;
        uint8_t id[KEYS_ID_LEN] = {0xab, 0xcd};
        lserr err = {0};
        char *f;

        (void)state;
        f = tu_write(dir, "counter-abcd000000000000", "garbage\n", 0600);
        assert_int_equal(replay_open(dir, 16, W, &r, &err), 0);
        assert_int_equal(replay_check_counter(r, id, 7, &err), -EINVAL);
        assert_non_null(strstr(err.msg, f));
        free(f);
        replay_free(r);
        tu_rmtree(dir);
}

static void test_coordinator_counter(void **state)
{
        char *dir = tu_mkdtemp(), *path = NULL;
        struct counter *c = NULL;
        uint64_t a, b, last = 0;
        lserr err = {0};

        (void)state;
        assert_true(asprintf(&path, "%s/counter", dir) > 0);
        assert_int_equal(counter_open(path, &c, &err), 0);
        assert_int_equal(counter_next(c, &a, &err), 0);
        /* A fresh counter starts at least at the current time in microseconds. */
        assert_true(a >= (uint64_t)fsutil_now_us() - 60000000ULL);
        for (int i = 0; i < COUNTER_BLOCK * 2 + 10; i++) {
                assert_int_equal(counter_next(c, &b, &err), 0);
                assert_true(b > a);
                a = b;
        }
        last = a;
        counter_free(c);
        /* A restart never hands out a value it gave before. */
        assert_int_equal(counter_open(path, &c, &err), 0);
        assert_int_equal(counter_next(c, &b, &err), 0);
        assert_true(b > last);
        counter_free(c);
        /* Even when the clock has gone back a year. */
        {
                char *far = NULL;
                assert_true(asprintf(&far, "%llu\n", (unsigned long long)fsutil_now_us() + 365ULL * 86400 * 1000000) > 0);
                assert_int_equal(fsutil_write_atomic(path, far, strlen(far), 0600, 0, &err), 0);
                assert_int_equal(counter_open(path, &c, &err), 0);
                assert_int_equal(counter_next(c, &b, &err), 0);
                assert_true(b >= strtoull(far, NULL, 10));
                counter_free(c);
                free(far);
        }
        free(path);
        tu_rmtree(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_nonce_cache_bounded_and_expiring),
                cmocka_unit_test(test_counter_file_corrupt_refused),
                cmocka_unit_test(test_coordinator_counter),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
