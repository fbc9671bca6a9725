/* test_replay: the nonce cache bound and expiry, the highest counter a counter
 * refusal reports, and the coordinator counter's durability across restarts and
 * its bounded advance past a counter an agent reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
        assert_int_equal(replay_check_counter(r, id, 7, NULL, &err), -EINVAL);
        assert_non_null(strstr(err.msg, f));
        free(f);
        replay_free(r);
        tu_rmtree(dir);
}

/* A counter refusal hands out the highest accepted, a pass does not, and after
 * a restart the stored highest is what is reported. */
static void test_counter_refusal_reports_highest(void **state)
{
        char *dir = tu_mkdtemp();
        struct replay *r = NULL;
        uint8_t id[KEYS_ID_LEN] = {7}, other[KEYS_ID_LEN] = {8}, nonce[REPLAY_NONCE_LEN] = {0};
        uint64_t seen = 42;
        lserr err = {0};

        (void)state;
        assert_int_equal(replay_open(dir, 16, W, &r, &err), 0);
        assert_int_equal(replay_commit(r, id, nonce, 1000, 900, 1000, &err), 0);
        assert_int_equal(replay_check_counter(r, id, 901, &seen, &err), 0);
        assert_int_equal(seen, 42);
        assert_int_equal(replay_check_counter(r, id, 899, &seen, &err), 0); /* in the window, unseen */
        assert_int_equal(seen, 42);
        assert_int_equal(replay_check_counter(r, id, 900, &seen, &err), LS_ECOUNTER);
        assert_int_equal(seen, 900);
        seen = 42;
        lserr_clear(&err);
        assert_int_equal(replay_check_counter(r, id, 900 - REPLAY_WINDOW, &seen, &err), LS_ECOUNTER);
        assert_int_equal(seen, 900);
        /* Another key has its own counter: nothing accepted yet, 0 is still refused. */
        seen = 42;
        lserr_clear(&err);
        assert_int_equal(replay_check_counter(r, other, 0, &seen, &err), LS_ECOUNTER);
        assert_int_equal(seen, 0);
        replay_free(r);

        assert_int_equal(replay_open(dir, 16, W, &r, &err), 0);
        lserr_clear(&err);
        assert_int_equal(replay_check_counter(r, id, 899, &seen, &err), LS_ECOUNTER);
        assert_int_equal(seen, 900);
        assert_non_null(strstr(err.msg, "900"));
        replay_free(r);
        tu_rmtree(dir);
}

/* The leader epoch: never below the highest accepted, stored across a
 * restart, 0 refused once an epoch was seen, a corrupt file refused. */
static void test_epoch_fence(void **state)
{
        char *dir = tu_mkdtemp(), *f;
        struct replay *r = NULL;
        uint64_t seen = 42;
        lserr err = {0};

        (void)state;
        assert_int_equal(replay_open(dir, 16, W, &r, &err), 0);
        /* No HA yet: 0 passes, and is not stored. */
        assert_int_equal(replay_commit_epoch(r, 0, &err), 0);
        {
                char path[4200];
                snprintf(path, sizeof(path), "%s/epoch", dir);
                assert_int_equal(access(path, F_OK), -1);
        }
        assert_int_equal(replay_check_epoch(r, 7, &seen, &err), 0);
        assert_int_equal(seen, 42);
        assert_int_equal(replay_commit_epoch(r, 7, &err), 0);
        assert_int_equal(replay_check_epoch(r, 7, &seen, &err), 0); /* the same leader again */
        assert_int_equal(replay_check_epoch(r, 6, &seen, &err), LS_EEPOCH);
        assert_int_equal(seen, 7);
        assert_non_null(strstr(err.msg, "epoch 6, below the 7"));
        replay_free(r);

        /* After a restart: the stored epoch holds, a later leader moves it on. */
        assert_int_equal(replay_open(dir, 16, W, &r, &err), 0);
        lserr_clear(&err);
        assert_int_equal(replay_check_epoch(r, 0, &seen, &err), LS_EEPOCH);
        assert_non_null(strstr(err.msg, "without a leader epoch"));
        assert_int_equal(replay_commit_epoch(r, 3, &err), LS_EEPOCH);
        lserr_clear(&err);
        assert_int_equal(replay_commit_epoch(r, 9, &err), 0);
        replay_free(r);
        assert_int_equal(replay_open(dir, 16, W, &r, &err), 0);
        lserr_clear(&err);
        assert_int_equal(replay_check_epoch(r, 8, &seen, &err), LS_EEPOCH);
        assert_int_equal(seen, 9);
        replay_free(r);

        f = tu_write(dir, "epoch", "-3\n", 0600);
        assert_int_equal(replay_open(dir, 16, W, &r, &err), 0);
        lserr_clear(&err);
        assert_int_equal(replay_check_epoch(r, 10, &seen, &err), -EINVAL);
        assert_non_null(strstr(err.msg, f));
        free(f);
        replay_free(r);
        tu_rmtree(dir);
}

/* counter_advance: past a reported counter, durably, never back, and not
 * arbitrarily far: a peer's word cannot push the counter to its end. */
static void test_coordinator_counter_advance(void **state)
{
        char *dir = tu_mkdtemp(), *path = NULL;
        struct counter *c = NULL;
        uint64_t a, b, past;
        lserr err = {0};

        (void)state;
        assert_true(asprintf(&path, "%s/counter", dir) > 0);
        assert_int_equal(counter_open(path, &c, &err), 0);
        assert_int_equal(counter_next(c, &a, &err), 0);

        /* Well past the reserved block: the next value is above it. */
        past = a + 10ULL * COUNTER_BLOCK + 7;
        assert_int_equal(counter_advance(c, past, &err), 0);
        assert_int_equal(counter_next(c, &b, &err), 0);
        assert_int_equal(b, past + 1);
        /* Never back: an older report changes nothing. */
        assert_int_equal(counter_advance(c, a, &err), 0);
        assert_int_equal(counter_advance(c, past, &err), 0);
        assert_int_equal(counter_next(c, &b, &err), 0);
        assert_int_equal(b, past + 2);
        counter_free(c);
        /* Durable: a restart starts above it. */
        assert_int_equal(counter_open(path, &c, &err), 0);
        assert_int_equal(counter_next(c, &b, &err), 0);
        assert_true(b > past + 2);
        a = b;

        /* The end of the range, or just beyond the bound: refused, unchanged. */
        static const uint64_t huge[] = {UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - COUNTER_BLOCK};
        for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
                lserr_clear(&err);
                assert_int_equal(counter_advance(c, huge[i], &err), -ERANGE);
                assert_non_null(strstr(err.msg, path));
        }
        lserr_clear(&err);
        past = (uint64_t)fsutil_now_us() + COUNTER_JUMP_MAX + 60ULL * 1000000;
        assert_int_equal(counter_advance(c, past, &err), -ERANGE);
        assert_non_null(strstr(err.msg, "more than"));
        assert_int_equal(counter_next(c, &b, &err), 0);
        assert_int_equal(b, a + 1);
        counter_free(c);
        assert_int_equal(counter_open(path, &c, &err), 0);
        assert_int_equal(counter_next(c, &b, &err), 0);
        assert_true(b < past - COUNTER_JUMP_MAX);

        /* Within the bound, measured from the current time for an idle counter:
         * another process that started days later is still followed. */
        past = (uint64_t)fsutil_now_us() + COUNTER_JUMP_MAX - 60ULL * 1000000;
        lserr_clear(&err);
        assert_int_equal(counter_advance(c, past, &err), 0);
        assert_int_equal(counter_next(c, &b, &err), 0);
        assert_int_equal(b, past + 1);
        counter_free(c);
        free(path);
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
                cmocka_unit_test(test_counter_refusal_reports_highest),
                cmocka_unit_test(test_epoch_fence),
                cmocka_unit_test(test_coordinator_counter),
                cmocka_unit_test(test_coordinator_counter_advance),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
