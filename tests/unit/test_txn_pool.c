/* test_txn_pool: the agent's member pool runs each chosen member once, never
 * more of them at once than parallel_per_host, all of them at once when they
 * fit or when the step is wide (freezes, thaws of an undo, validation), and a
 * pool of one in order on the caller's thread; txn_run_all (the validation's
 * walk) takes every tier at once. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "txn_priv.h"

#define N 40

/* What the members' runs saw, under one lock. */
static struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned size;    /* the pool size under test */
        size_t picked;    /* members the pick chooses */
        size_t started, active, max_active;
        int runs[N];      /* per member index */
        size_t order[N];  /* member indices, in the order they ran */
        pthread_t thread[N];
        int timed_out;
} S = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static int pick_odd_tier(const struct member *mb, unsigned arg)
{
        return mb->tier % 2 == arg;
}

/* Holds each run until as many runs are active as the pool allows (or every
 * chosen member has started): the most active at once is then the pool's
 * bound, seen as an event, not a timing. A 10 s guard ends a wait that would
 * otherwise never end, so a wrong pool fails instead of hanging. */
static int run(struct txn_mgr *mg, struct txn *t, struct member *mb)
{
        size_t i = (size_t)(mb - t->m), want;
        struct timespec until;

        (void)mg;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        pthread_mutex_lock(&S.lock);
        S.runs[i]++;
        S.order[S.started] = i;
        S.thread[S.started++] = pthread_self();
        S.active++;
        if (S.active > S.max_active)
                S.max_active = S.active;
        want = S.size < S.picked ? S.size : S.picked;
        pthread_cond_broadcast(&S.cond);
        while (S.active < want && S.started < S.picked && !S.timed_out)
                if (pthread_cond_timedwait(&S.cond, &S.lock, &until) != 0)
                        S.timed_out = 1;
        S.active--;
        pthread_mutex_unlock(&S.lock);
        return 0;
}

/* The thread cache the pool runs on; NULL (one thread per worker) but in
 * test_pool_on_kept_threads. */
static struct workers *W;

/* Runs the pool of `size` over N members, half of them chosen, `width` wide. */
static void run_pool_width(unsigned size, int reverse, unsigned width)
{
        struct cfg_agent cfg = {.id = (char *)"host-a", .parallel_per_host = size};
        struct txn_mgr mg = {.cfg = &cfg, .workers = W};
        struct txn *t = txn_new("pool", N);

        assert_non_null(t);
        for (size_t i = 0; i < N; i++)
                t->m[i].tier = (unsigned)i;
        pthread_mutex_lock(&S.lock);
        memset(S.runs, 0, sizeof(S.runs));
        S.size = width == TXN_POOL_WIDE ? TXN_POOL_MAX : size;
        S.picked = N / 2;
        S.started = S.active = S.max_active = 0;
        S.timed_out = 0;
        pthread_mutex_unlock(&S.lock);
        txn_pool_run(&mg, t, pick_odd_tier, 1, reverse, width, run);
        assert_false(S.timed_out);
        assert_int_equal(S.started, N / 2);
        for (size_t i = 0; i < N; i++)
                assert_int_equal(S.runs[i], i % 2 == 1 ? 1 : 0);
        txn_free(t);
}

static void run_pool(unsigned size, int reverse)
{
        run_pool_width(size, reverse, 0);
}

static void test_pool_of_one_is_serial(void **state)
{
        (void)state;
        run_pool(1, 0);
        assert_int_equal(S.max_active, 1);
        for (size_t k = 0; k < S.started; k++) {
                assert_int_equal(S.order[k], 2 * k + 1);
                assert_true(pthread_equal(S.thread[k], pthread_self()));
        }
        run_pool(1, 1);
        for (size_t k = 0; k < S.started; k++)
                assert_int_equal(S.order[k], N - 1 - 2 * k);
}

static void test_pool_bounded(void **state)
{
        (void)state;
        run_pool(3, 0);
        assert_int_equal(S.max_active, 3);
        run_pool(7, 1);
        assert_int_equal(S.max_active, 7);
}

static void test_pool_all_at_once(void **state)
{
        (void)state;
        /* 20 chosen members, a pool of 64: every one of them at once. */
        run_pool(64, 0);
        assert_int_equal(S.max_active, N / 2);
}

/* Freezes wait on guest agents: a pool of 1 or 2 still freezes every chosen
 * member at once (and the walk still takes each member once). */
static void test_wide_ignores_pool_size(void **state)
{
        (void)state;
        run_pool_width(1, 0, TXN_POOL_WIDE);
        assert_int_equal(S.max_active, N / 2);
        run_pool_width(2, 1, TXN_POOL_WIDE);
        assert_int_equal(S.max_active, N / 2);
}

/* Validation is not held to tier order: members of N tiers, all at once. */
static void test_run_all_ignores_tiers(void **state)
{
        struct cfg_agent cfg = {.id = (char *)"host-a", .parallel_per_host = 2};
        struct txn_mgr mg = {.cfg = &cfg};
        struct txn *t = txn_new("all", N);

        (void)state;
        assert_non_null(t);
        for (size_t i = 0; i < N; i++)
                t->m[i].tier = (unsigned)i;
        pthread_mutex_lock(&S.lock);
        memset(S.runs, 0, sizeof(S.runs));
        S.size = 64;
        S.picked = N;
        S.started = S.active = S.max_active = 0;
        S.timed_out = 0;
        pthread_mutex_unlock(&S.lock);
        txn_run_all(&mg, t, run);
        assert_false(S.timed_out);
        assert_int_equal(S.started, N);
        assert_int_equal(S.max_active, N);
        for (size_t i = 0; i < N; i++)
                assert_int_equal(S.runs[i], 1);
        txn_free(t);
}

/* The agent's pool runs on kept threads: bounds and widths hold the same,
 * and a second wide step starts no thread when the first one's wait. */
static void test_pool_on_kept_threads(void **state)
{
        const struct timespec ms = {0, 1000000L};

        (void)state;
        assert_int_equal(workers_new(2 * TXN_POOL_MAX, 60000, &W), 0);
        run_pool(3, 0);
        assert_int_equal(S.max_active, 3);
        /* Two threads besides the caller; both wait before the next step. */
        for (int i = 0; i < 10000 && workers_counts(W).idle < 2; i++)
                nanosleep(&ms, NULL);
        assert_int_equal(workers_counts(W).created, 2);
        run_pool_width(1, 0, TXN_POOL_WIDE);
        assert_int_equal(S.max_active, N / 2);
        /* The caller is one of the N / 2 workers. */
        for (int i = 0; i < 10000 && workers_counts(W).idle < N / 2 - 1; i++)
                nanosleep(&ms, NULL);
        assert_int_equal(workers_counts(W).idle, N / 2 - 1);
        assert_int_equal(workers_counts(W).created, N / 2 - 1);
        run_pool_width(2, 1, TXN_POOL_WIDE);
        assert_int_equal(S.max_active, N / 2);
        assert_int_equal(workers_counts(W).created, N / 2 - 1);
        W = workers_free(W);
}

static void test_pool_size(void **state)
{
        struct cfg_agent cfg = {0};
        struct txn_mgr mg = {.cfg = &cfg};

        (void)state;
        assert_int_equal(txn_pool_size(&mg), 1); /* unset: serial */
        cfg.parallel_per_host = 8;
        assert_int_equal(txn_pool_size(&mg), 8);
        cfg.parallel_per_host = 1000;
        assert_int_equal(txn_pool_size(&mg), TXN_POOL_MAX);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pool_of_one_is_serial),
                cmocka_unit_test(test_pool_bounded),
                cmocka_unit_test(test_pool_all_at_once),
                cmocka_unit_test(test_wide_ignores_pool_size),
                cmocka_unit_test(test_run_all_ignores_tiers),
                cmocka_unit_test(test_pool_on_kept_threads),
                cmocka_unit_test(test_pool_size),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
