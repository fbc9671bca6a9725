/* test_workers: the agent's thread cache runs every task once and joins it,
 * hands the next tasks to the threads that wait, keeps no more waiting than
 * its bound, lets them go when idle, and without a cache starts a thread per
 * task. Waits are on the cache's counts, bounded by 10 s, never on a sleep's
 * length. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "workers.h"

#define K 8

struct gate {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned arrived, want;
        int runs[K];
        int timed_out; /* the tasks never ran all at once */
};

struct job {
        struct gate *g;
        unsigned i;
};

/* Each task waits until `want` of them run at once: K tasks are then on K
 * threads together, seen as an event. */
static void meet(void *arg)
{
        struct job *j = arg;
        struct timespec until;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        pthread_mutex_lock(&j->g->lock);
        j->g->runs[j->i]++;
        j->g->arrived++;
        pthread_cond_broadcast(&j->g->cond);
        while (j->g->arrived < j->g->want)
                if (pthread_cond_timedwait(&j->g->cond, &j->g->lock, &until) != 0) {
                        j->g->timed_out = 1;
                        break;
                }
        pthread_mutex_unlock(&j->g->lock);
}

/* K tasks at once on w; each ran once, and all were running together. */
static void run_batch(struct workers *w)
{
        struct gate g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .want = K};
        struct workers_task t[K];
        struct job j[K];

        for (unsigned i = 0; i < K; i++) {
                j[i] = (struct job){&g, i};
                assert_int_equal(workers_spawn(w, &t[i], meet, &j[i]), 0);
        }
        for (unsigned i = 0; i < K; i++)
                workers_join(&t[i]);
        assert_int_equal(g.arrived, K);
        assert_false(g.timed_out);
        for (unsigned i = 0; i < K; i++)
                assert_int_equal(g.runs[i], 1);
}

enum which { LIVE, IDLE };

/* Polls the live or idle count until it equals want, for 10 s at most. */
static int until_count(struct workers *w, enum which which, unsigned want)
{
        const struct timespec ms = {0, 1000000L};

        for (int i = 0; i < 10000; i++) {
                struct workers_counts c = workers_counts(w);

                if ((which == LIVE ? c.live : c.idle) == want)
                        return 1;
                nanosleep(&ms, NULL);
        }
        return 0;
}

static void test_threads_are_reused(void **state)
{
        struct workers *w = NULL;

        (void)state;
        assert_int_equal(workers_new(2 * K, 60000, &w), 0);
        run_batch(w);
        assert_int_equal(workers_counts(w).created, K);
        for (int round = 0; round < 3; round++) {
                assert_true(until_count(w, IDLE, K));
                run_batch(w);
        }
        assert_int_equal(workers_counts(w).created, K);
        assert_int_equal(workers_counts(w).live, K);
        workers_free(w);
}

static void test_idle_bound(void **state)
{
        struct workers *w = NULL;

        (void)state;
        assert_int_equal(workers_new(3, 60000, &w), 0);
        run_batch(w);
        /* K finished, 3 may wait: the others end. */
        assert_true(until_count(w, LIVE, 3));
        assert_int_equal(workers_counts(w).idle, 3);
        run_batch(w);
        assert_int_equal(workers_counts(w).created, K + (K - 3));
        workers_free(w);
}

static void test_idle_threads_end(void **state)
{
        struct workers *w = NULL;

        (void)state;
        assert_int_equal(workers_new(2 * K, 20, &w), 0);
        run_batch(w);
        assert_true(until_count(w, LIVE, 0));
        assert_int_equal(workers_counts(w).idle, 0);
        run_batch(w);
        assert_int_equal(workers_counts(w).created, 2 * K);
        workers_free(w);
}

static void late_flag(void *arg)
{
        const struct timespec ms = {0, 20000000L};

        nanosleep(&ms, NULL);
        *(int *)arg = 1;
}

/* Freed with a task still running, with threads waiting, and right after a
 * batch: every task ends first (under ASan, a thread left behind would touch
 * freed memory). */
static void test_free_waits_for_threads(void **state)
{
        struct workers *w = NULL;
        struct workers_task t;
        int flag = 0;

        (void)state;
        assert_int_equal(workers_new(2 * K, 60000, &w), 0);
        assert_int_equal(workers_spawn(w, &t, late_flag, &flag), 0);
        assert_null(workers_free(w));
        assert_int_equal(flag, 1);
        workers_join(&t);
        assert_int_equal(workers_new(2 * K, 60000, &w), 0);
        run_batch(w);
        assert_null(workers_free(w));
        assert_int_equal(workers_new(2 * K, 60000, &w), 0);
        run_batch(w);
        assert_true(until_count(w, IDLE, K));
        assert_null(workers_free(w));
}

static void test_without_cache(void **state)
{
        (void)state;
        run_batch(NULL);
        run_batch(NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_threads_are_reused),
                cmocka_unit_test(test_idle_bound),
                cmocka_unit_test(test_idle_threads_end),
                cmocka_unit_test(test_free_waits_for_threads),
                cmocka_unit_test(test_without_cache),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
