/* test_etcd: the etcd client against a real etcd (Debian's etcd-server, one
 * member on loopback ports of its own, started and stopped by this test):
 * keys and binary values, prefixes and limits, guarded transactions, leases,
 * status and compaction, failover along the endpoints, and the limits checked
 * before anything is sent; then the answers' parsers on malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "etcd.h"
#include "testutil.h"
#include "tu_etcd.h"

static struct {
        struct tu_etcd d;
        const char *url;
        struct etcd *c;
} E;

static void open_client(const char *const *eps, size_t n, struct etcd **ret)
{
        struct etcd_opts o = {.endpoints = eps, .n_endpoints = n, .timeout_ms = 3000};
        lserr err = {0};

        assert_int_equal(etcd_open(&o, ret, &err), 0);
}

static int group_setup(void **state)
{
        const char *ep[1];

        (void)state;
        if (tu_etcd_start(&E.d) != 0)
                return 0;
        E.url = E.d.url;
        ep[0] = E.url;
        open_client(ep, 1, &E.c);
        return 0;
}

static int group_teardown(void **state)
{
        (void)state;
        E.c = etcd_close(E.c);
        tu_etcd_stop(&E.d);
        return 0;
}

static void need_etcd(void)
{
        if (!E.c) {
                print_message("skipped: %s not installed (Debian: apt-get install etcd-server)\n", TU_ETCD_BIN);
                skip();
        }
}

static struct etcd_kv *get1(const char *key, size_t *n)
{
        struct etcd_kv *kvs = NULL;
        lserr err = {0};
        int more = -1;

        assert_int_equal(etcd_range(E.c, key, 0, 0, &kvs, n, &more, NULL, &err), 0);
        assert_int_equal(more, 0);
        return kvs;
}

static void test_put_get(void **state)
{
        const uint8_t bin[] = {'a', 0, 0xff, '\n', '"', '\\', 'z'};
        struct etcd_kv *kv;
        lserr err = {0};
        int64_t created;
        size_t n;

        (void)state;
        need_etcd();
        assert_int_equal(etcd_put(E.c, "/t/put/k", bin, sizeof(bin), 0, &err), 0);
        kv = get1("/t/put/k", &n);
        assert_int_equal(n, 1);
        assert_string_equal(kv->key, "/t/put/k");
        assert_int_equal(kv->value_len, sizeof(bin));
        assert_memory_equal(kv->value, bin, sizeof(bin));
        assert_int_equal(kv->version, 1);
        assert_true(kv->create_revision > 0 && kv->create_revision == kv->mod_revision);
        created = kv->create_revision;
        etcd_kvs_free(kv, n);
        /* Rewritten: same creation, a later modification, version 2; empty. */
        assert_int_equal(etcd_put(E.c, "/t/put/k", "", 0, 0, &err), 0);
        kv = get1("/t/put/k", &n);
        assert_int_equal(kv->value_len, 0);
        assert_int_equal(kv->value[0], '\0');
        assert_int_equal(kv->version, 2);
        assert_int_equal(kv->create_revision, created);
        assert_true(kv->mod_revision > created);
        etcd_kvs_free(kv, n);
}

static void test_prefix_and_limit(void **state)
{
        const char *keys[] = {"/t/p/a/2", "/t/p/a/1", "/t/p/a/3", "/t/p/b", "/t/p/a"};
        struct etcd_kv *kvs;
        lserr err = {0};
        int64_t rev = 0, deleted = 0;
        size_t n;
        int more;

        (void)state;
        need_etcd();
        for (size_t i = 0; i < 5; i++)
                assert_int_equal(etcd_put(E.c, keys[i], keys[i], strlen(keys[i]), 0, &err), 0);
        /* Every key under "/t/p/a/", in key order; "/t/p/a" and "/t/p/b" are not. */
        assert_int_equal(etcd_range(E.c, "/t/p/a/", 1, 0, &kvs, &n, &more, &rev, &err), 0);
        assert_int_equal(n, 3);
        assert_false(more);
        assert_true(rev > 0);
        assert_string_equal(kvs[0].key, "/t/p/a/1");
        assert_string_equal(kvs[2].key, "/t/p/a/3");
        assert_string_equal((char *)kvs[1].value, "/t/p/a/2");
        etcd_kvs_free(kvs, n);
        assert_int_equal(etcd_range(E.c, "/t/p/a/", 1, 2, &kvs, &n, &more, NULL, &err), 0);
        assert_int_equal(n, 2);
        assert_true(more);
        etcd_kvs_free(kvs, n);
        /* A key that is not there: nothing, and deleting it deletes nothing. */
        kvs = get1("/t/p/none", &n);
        assert_int_equal(n, 0);
        etcd_kvs_free(kvs, n);
        assert_int_equal(etcd_delete(E.c, "/t/p/none", 0, &deleted, &err), 0);
        assert_int_equal(deleted, 0);
        assert_int_equal(etcd_delete(E.c, "/t/p/a/", 1, &deleted, &err), 0);
        assert_int_equal(deleted, 3);
        kvs = get1("/t/p/a", &n);
        assert_int_equal(n, 1);
        etcd_kvs_free(kvs, n);
}

/* The leader election's step: create the key if nobody has it, else read it. */
static int campaign(const char *who, int64_t lease, struct etcd_txn_result *t)
{
        struct etcd_cmp absent = {.key = "/t/leader", .target = ETCD_CREATE, .result = ETCD_EQUAL, .num = 0};
        struct etcd_op put = {.kind = ETCD_OP_PUT, .key = "/t/leader", .value = who, .value_len = strlen(who),
                              .lease = lease};
        struct etcd_op get = {.kind = ETCD_OP_RANGE, .key = "/t/leader"};
        lserr err = {0};

        return etcd_txn(E.c, &absent, 1, &put, 1, &get, 1, t, &err);
}

static void test_txn_guarded(void **state)
{
        struct etcd_txn_result t = {0};
        struct etcd_kv *kv;
        lserr err = {0};
        int64_t epoch;
        size_t n;

        (void)state;
        need_etcd();
        assert_int_equal(campaign("a", 0, &t), 0);
        assert_true(t.succeeded);
        assert_int_equal(t.n_ranges, 0);
        epoch = t.revision; /* the key's create revision */
        etcd_txn_result_free(&t);
        assert_int_equal(campaign("b", 0, &t), 0);
        assert_false(t.succeeded);
        assert_int_equal(t.n_ranges, 1);
        assert_int_equal(t.n_kvs[0], 1);
        assert_string_equal((char *)t.kvs[0][0].value, "a");
        assert_int_equal(t.kvs[0][0].create_revision, epoch);
        etcd_txn_result_free(&t);

        /* A write guarded by the epoch: applied while it holds, not after. */
        struct etcd_cmp mine = {.key = "/t/leader", .target = ETCD_CREATE, .result = ETCD_EQUAL, .num = epoch};
        struct etcd_op w = {.kind = ETCD_OP_PUT, .key = "/t/decision", .value = "commit", .value_len = 6};
        assert_int_equal(etcd_txn(E.c, &mine, 1, &w, 1, NULL, 0, &t, &err), 0);
        assert_true(t.succeeded);
        etcd_txn_result_free(&t);
        assert_int_equal(etcd_delete(E.c, "/t/leader", 0, NULL, &err), 0);
        assert_int_equal(campaign("b", 0, &t), 0);
        assert_true(t.succeeded);
        assert_true(t.revision > epoch);
        etcd_txn_result_free(&t);
        w.value = "abort";
        w.value_len = 5;
        assert_int_equal(etcd_txn(E.c, &mine, 1, &w, 1, NULL, 0, &t, &err), 0);
        assert_false(t.succeeded);
        etcd_txn_result_free(&t);
        kv = get1("/t/decision", &n);
        assert_string_equal((char *)kv->value, "commit");
        etcd_kvs_free(kv, n);
        /* A compare on the value. */
        struct etcd_cmp val = {.key = "/t/decision", .target = ETCD_VALUE, .result = ETCD_EQUAL, .value = "commit",
                               .value_len = 6};
        assert_int_equal(etcd_txn(E.c, &val, 1, NULL, 0, NULL, 0, &t, &err), 0);
        assert_true(t.succeeded);
        etcd_txn_result_free(&t);
        assert_int_equal(etcd_delete(E.c, "/t/leader", 0, NULL, &err), 0);
}

static void test_lease(void **state)
{
        struct etcd_txn_result t = {0};
        struct etcd_kv *kv;
        int64_t id = 0, ttl = 0;
        lserr err = {0};
        size_t n;

        (void)state;
        need_etcd();
        int64_t granted = 0;
        assert_int_equal(etcd_lease_grant(E.c, 5, &id, &granted, &err), 0);
        assert_int_equal(granted, 5);
        assert_true(id != 0);
        assert_int_equal(campaign("leased", id, &t), 0);
        assert_true(t.succeeded);
        etcd_txn_result_free(&t);
        kv = get1("/t/leader", &n);
        assert_int_equal(n, 1);
        assert_int_equal(kv->lease, id);
        etcd_kvs_free(kv, n);
        assert_int_equal(etcd_lease_keepalive(E.c, id, &ttl, &err), 0);
        assert_true(ttl > 0 && ttl <= 5);
        /* Revoked: the key goes with it, and a keepalive says it is gone. */
        assert_int_equal(etcd_lease_revoke(E.c, id, &err), 0);
        kv = get1("/t/leader", &n);
        assert_int_equal(n, 0);
        etcd_kvs_free(kv, n);
        assert_int_equal(etcd_lease_keepalive(E.c, id, &ttl, &err), 0);
        assert_int_equal(ttl, 0);
        /* Revoking it again is etcd's "not found", with its message. */
        assert_true(etcd_lease_revoke(E.c, id, &err) < 0);
        assert_non_null(strstr(err.msg, "lease revoke"));
        assert_non_null(strstr(err.msg, "lease not found"));
}

static void test_status_compact(void **state)
{
        struct etcd_status st;
        lserr err = {0};

        (void)state;
        need_etcd();
        assert_int_equal(etcd_put(E.c, "/t/c", "1", 1, 0, &err), 0);
        assert_int_equal(etcd_status(E.c, &st, &err), 0);
        assert_true(!strncmp(st.version, "3.", 2));
        assert_true(st.revision > 1 && st.db_size > 0 && st.member_id != 0 && st.leader == st.member_id);
        assert_int_equal(etcd_compact(E.c, st.revision, &err), 0);
        /* Compacting back to an older revision is refused, and says why. */
        assert_true(etcd_compact(E.c, st.revision - 1, &err) < 0);
        assert_non_null(strstr(err.msg, "compacted"));
        assert_non_null(strstr(err.msg, E.url));
        lserr_clear(&err);
        assert_int_equal(etcd_defragment(E.c, &err), 0);
}

static void test_failover(void **state)
{
        char dead[64];
        const char *eps[2] = {dead, NULL};
        struct etcd *c = NULL;
        struct etcd_kv *kvs;
        lserr err = {0};
        size_t n;

        (void)state;
        need_etcd();
        /* A port nobody listens on, then the real one: the client moves on. */
        snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", tu_tcp_port());
        eps[1] = E.url;
        open_client(eps, 2, &c);
        assert_string_equal(etcd_endpoint(c), dead);
        assert_int_equal(etcd_range(c, "/t/c", 0, 0, &kvs, &n, NULL, NULL, &err), 0);
        etcd_kvs_free(kvs, n);
        assert_string_equal(etcd_endpoint(c), E.url);
        c = etcd_close(c);
        /* Nobody at all: the error names the endpoint and the request. */
        open_client(eps, 1, &c);
        assert_int_equal(etcd_range(c, "/t/c", 0, 0, &kvs, &n, NULL, NULL, &err), -EHOSTUNREACH);
        assert_non_null(strstr(err.msg, dead));
        assert_non_null(strstr(err.msg, "range /t/c"));
        etcd_close(c);
}

/* A member that takes the request and never answers (its gateway cut off from
 * its server, as iptables in the lab does): that request's outcome is unknown
 * and is not sent again, but the next request goes to the next endpoint,
 * instead of every later one (lease renewals too) timing out on it. */
static void test_stalled_endpoint(void **state)
{
        char stalled[64];
        const char *eps[2] = {stalled, NULL};
        struct etcd_opts o = {.endpoints = eps, .n_endpoints = 2, .timeout_ms = 400};
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof(a);
        struct etcd *c = NULL;
        struct etcd_kv *kvs;
        lserr err = {0};
        size_t n;
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        (void)state;
        need_etcd();
        /* Listens, so connections and requests go through; never reads. */
        assert_true(s >= 0);
        assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(listen(s, 8), 0);
        assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
        snprintf(stalled, sizeof(stalled), "http://127.0.0.1:%d", ntohs(a.sin_port));
        eps[1] = E.url;
        assert_int_equal(etcd_open(&o, &c, &err), 0);
        assert_int_equal(etcd_put(c, "/t/stalled", "v", 1, 0, &err), -ETIMEDOUT);
        assert_non_null(strstr(err.msg, "not known"));
        assert_non_null(strstr(err.msg, stalled));
        lserr_clear(&err);
        assert_string_equal(etcd_endpoint(c), E.url);
        /* Not sent again elsewhere: the put did not happen. */
        assert_int_equal(etcd_range(c, "/t/stalled", 0, 0, &kvs, &n, NULL, NULL, &err), 0);
        assert_int_equal(n, 0);
        etcd_kvs_free(kvs, n);
        etcd_close(c);
        close(s);
}

/* Refused before anything is sent: no etcd needed. */
static void test_limits(void **state)
{
        static struct etcd_op ops[ETCD_TXN_OPS_MAX + 1];
        const char *eps[] = {"http://127.0.0.1:1"};
        struct etcd_txn_result t = {0};
        char key[ETCD_KEY_MAX + 2];
        struct etcd *c = NULL;
        char *big;
        lserr err = {0};

        (void)state;
        open_client(eps, 1, &c);
        for (size_t i = 0; i <= ETCD_TXN_OPS_MAX; i++)
                ops[i] = (struct etcd_op){.kind = ETCD_OP_DELETE, .key = "/t/x"};
        assert_int_equal(etcd_txn(c, NULL, 0, ops, ETCD_TXN_OPS_MAX + 1, NULL, 0, &t, &err), -E2BIG);
        assert_non_null(strstr(err.msg, "at most 128"));
        big = calloc(1, ETCD_REQUEST_MAX);
        lserr_clear(&err);
        assert_int_equal(etcd_put(c, "/t/big", big, ETCD_REQUEST_MAX, 0, &err), -EMSGSIZE);
        assert_non_null(strstr(err.msg, "put /t/big: request of"));
        free(big);
        memset(key, 'k', sizeof(key) - 1);
        key[sizeof(key) - 1] = '\0';
        assert_int_equal(etcd_put(c, key, "", 0, 0, &err), -EINVAL);
        assert_int_equal(etcd_put(c, "", "", 0, 0, &err), -EINVAL);
        etcd_close(c);
        /* Endpoints that are no URLs are refused at open. */
        lserr_clear(&err);
        const char *bad[] = {"127.0.0.1:2379"};
        struct etcd_opts o = {.endpoints = bad, .n_endpoints = 1};
        assert_int_equal(etcd_open(&o, &c, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "not an http:// or https:// URL"));
}

static int parse_range(const char *s, lserr *err)
{
        struct etcd_kv *kvs = NULL;
        size_t n = 0;
        int64_t rev;
        int r = etcd_parse_range(s, strlen(s), &kvs, &n, NULL, &rev, err);

        if (r == 0)
                etcd_kvs_free(kvs, n);
        return r;
}

static void test_parse_refused(void **state)
{
        static const struct {
                const char *body, *why;
        } bad[] = {
                {"", "it ends early"},
                {"[1]", "not one JSON object"},
                {"{\"header\":{\"revision\":\"1\"}} x", "not one JSON object"},
                {"{\"kvs\":[]}", "no header"},
                {"{\"header\":{\"revision\":\"1x\"}}", "\"revision\" is not a number"},
                {"{\"header\":{\"revision\":true}}", "\"revision\" is a boolean"},
                {"{\"header\":{},\"kvs\":{}}", "\"kvs\" is not an array"},
                {"{\"header\":{},\"kvs\":[3]}", "not an object"},
                {"{\"header\":{},\"kvs\":[{\"key\":\"!!\"}]}", "\"key\" is not base64"},
                {"{\"header\":{},\"kvs\":[{\"value\":\"YQ==\"}]}", "a key is empty"},
                {"{\"header\":{},\"kvs\":[{\"key\":\"YQBi\"}]}", "not text"},
                {"{\"header\":{},\"kvs\":[{\"key\":\"YQ==\",\"version\":\"-\"}]}", "\"version\" is not a number"},
        };
        struct etcd_txn_result t;
        struct etcd_status st;
        int64_t id, ttl;
        lserr err = {0};

        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                lserr_clear(&err);
                assert_int_equal(parse_range(bad[i].body, &err), -EPROTO);
                if (!strstr(err.msg, bad[i].why))
                        fail_msg("\"%s\": got \"%s\", want \"%s\"", bad[i].body, err.msg, bad[i].why);
        }
        assert_int_equal(parse_range("{\"header\":{\"revision\":7},\"kvs\":[{\"key\":\"YQ==\",\"value\":\"\"}],"
                                     "\"count\":\"1\"}",
                                     &err),
                         0);
        const char *txn_bad = "{\"header\":{},\"succeeded\":1}";
        lserr_clear(&err);
        assert_int_equal(etcd_parse_txn(txn_bad, strlen(txn_bad), &t, &err), -EPROTO);
        assert_non_null(strstr(err.msg, "\"succeeded\" is not a boolean"));
        assert_int_equal(etcd_parse_lease("{\"result\":{\"error\":\"gone\"}}", 27, &id, &ttl, &err), -EIO);
        assert_int_equal(etcd_parse_lease("{\"result\":[]}", 13, &id, &ttl, &err), -EPROTO);
        lserr_clear(&err);
        const char *stream_error = "{\"error\":{\"grpc_code\":14,\"message\":\"no leader\"}}";
        assert_int_equal(etcd_parse_lease(stream_error, strlen(stream_error), &id, &ttl, &err), -EIO);
        assert_string_equal(err.msg, "no leader");
        assert_int_equal(etcd_parse_status("{\"header\":{\"member_id\":\"-1\"}}", 29, &st, &err), -EPROTO);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_put_get),      cmocka_unit_test(test_prefix_and_limit),
                cmocka_unit_test(test_txn_guarded),  cmocka_unit_test(test_lease),
                cmocka_unit_test(test_status_compact), cmocka_unit_test(test_failover),
                cmocka_unit_test(test_stalled_endpoint),
                cmocka_unit_test(test_limits),       cmocka_unit_test(test_parse_refused),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
