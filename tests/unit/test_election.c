/* test_election: campaigns for the leader key on a real etcd (tu_etcd): one
 * leads and the other sees it; a resignation hands over at once with a higher
 * epoch; a crashed leader's key goes with its lease; a leader cut off from etcd
 * stops leading by its own clock within the lease, and leads again once etcd is
 * back. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "election.h"
#include "fsutil.h"
#include "testutil.h"
#include "tu_etcd.h"

#define TTL 2

static struct tu_etcd D;
static int have_etcd;

static int group_setup(void **state)
{
        (void)state;
        have_etcd = tu_etcd_start(&D) == 0;
        return 0;
}

static int group_teardown(void **state)
{
        (void)state;
        tu_etcd_stop(&D);
        return 0;
}

static struct election *start(const char *who, const char *key)
{
        const char *eps[] = {D.url};
        struct etcd_opts eo = {.endpoints = eps, .n_endpoints = 1, .timeout_ms = 1000};
        struct election_opts o = {.etcd = &eo, .key = key, .value = who, .ttl_s = TTL};
        struct election *e = NULL;
        lserr err = {0};

        assert_int_equal(election_start(&o, &e, &err), 0);
        return e;
}

static void need_etcd(void)
{
        if (!have_etcd) {
                print_message("skipped: %s not installed (Debian: apt-get install etcd-server)\n", TU_ETCD_BIN);
                skip();
        }
}

/* Waits (10 s at most) until e's view names a holder. */
static void wait_holder(struct election *e, struct election_view *v)
{
        for (int i = 0; i < 200; i++) {
                election_view(e, v);
                if (v->holder[0])
                        return;
                usleep(50 * 1000);
        }
        fail_msg("no holder seen within 10 s");
}

static void test_one_leads(void **state)
{
        struct election *a, *b, *c;
        struct election_view v;
        uint64_t ea = 0, eb = 0, ec = 0;

        (void)state;
        need_etcd();
        a = start("a 10.0.0.1 100", "/t/leader");
        assert_true(election_wait_leading(a, 10000, &ea));
        assert_true(ea > 0);
        b = start("b 10.0.0.2 200", "/t/leader");
        wait_holder(b, &v);
        assert_false(v.leading);
        assert_string_equal(v.holder, "a 10.0.0.1 100");
        assert_int_equal(v.holder_epoch, ea);
        assert_false(election_leading(b, &eb));
        assert_int_equal(eb, 0);

        /* a resigns: b leads, with a higher epoch. */
        a = election_stop(a, 1);
        assert_true(election_wait_leading(b, 10000, &eb));
        assert_true(eb > ea);

        /* b crashes (its lease is left to expire): c leads only after it. */
        c = start("c 10.0.0.3 300", "/t/leader");
        wait_holder(c, &v);
        assert_string_equal(v.holder, "b 10.0.0.2 200");
        long long t0 = fsutil_mono_us();
        b = election_stop(b, 0);
        assert_true(election_wait_leading(c, 10000, &ec));
        assert_true(ec > eb);
        assert_true(fsutil_mono_us() - t0 > 500000);
        /* Within the lease, etcd's expiry check (every 0.5 s) and one follower try. */
        print_message("takeover %lld ms after the crash\n", (fsutil_mono_us() - t0) / 1000);
        assert_true(fsutil_mono_us() - t0 < TTL * 1000000LL + 1000000);
        election_view(c, &v);
        assert_string_equal(v.holder, "c 10.0.0.3 300");
        assert_int_equal(v.error[0], '\0');
        election_stop(c, 1);
}

/* Cut off from etcd, the leader stops leading by its own clock within its
 * lease; once etcd answers again it campaigns anew. */
static void test_cut_off(void **state)
{
        struct election *a;
        struct election_view v;
        uint64_t e1 = 0, e2 = 0;
        long long t0;
        int led = 1;

        (void)state;
        need_etcd();
        a = start("a 10.0.0.1 100", "/t/cut");
        assert_true(election_wait_leading(a, 10000, &e1));
        assert_int_equal(kill(D.pid, SIGSTOP), 0);
        t0 = fsutil_mono_us();
        while (fsutil_mono_us() - t0 < (TTL + 2) * 1000000LL && (led = election_leading(a, NULL)))
                usleep(20 * 1000);
        assert_false(led);
        assert_true(fsutil_mono_us() - t0 <= TTL * 1000000LL);
        election_view(a, &v);
        assert_false(v.leading);
        assert_int_equal(kill(D.pid, SIGCONT), 0);
        /* The same epoch when etcd renewed the lease before its expiry check
         * ran, a new one (the key re-created) when it did not. */
        assert_true(election_wait_leading(a, 15000, &e2));
        assert_true(e2 >= e1);
        election_view(a, &v);
        assert_int_equal(v.error[0], '\0');
        election_stop(a, 1);
}

static void test_options_refused(void **state)
{
        const char *eps[] = {"http://127.0.0.1:1"};
        struct etcd_opts eo = {.endpoints = eps, .n_endpoints = 1};
        struct election_opts o = {.etcd = &eo, .key = "/t/k", .value = "x", .ttl_s = 1};
        struct election *e = NULL;
        lserr err = {0};

        (void)state;
        assert_int_equal(election_start(&o, &e, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "TTL of 1 s"));
        o.ttl_s = 5;
        o.key = "";
        lserr_clear(&err);
        assert_int_equal(election_start(&o, &e, &err), -EINVAL);
        assert_null(e);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_one_leads),
                cmocka_unit_test(test_cut_off),
                cmocka_unit_test(test_options_refused),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
