/* test_transport: real nng sockets over ipc:// and tcp://: calls, deadlines,
 * the receive size limit, socket permissions, parallel workers, and TLS with
 * the peer's certificate always verified. */
#include <pthread.h>
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fsutil.h"
#include "transport.h"
#include "testutil.h"

/* The "slow" handler says when it is inside and stays there until the test
 * opens the gate, so "a fast call completes while a slow one is in its
 * handler" is a fact the test arranges, not a race against a sleep. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int slow_inside, gate_open;

/* Echoes the request; "slow" waits at the gate first, "mute" answers nothing. */
static int echo(void *arg, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len)
{
        (void)arg;
        if (len == 4 && memcmp(req, "mute", 4) == 0)
                return -1;
        if (len == 4 && memcmp(req, "slow", 4) == 0) {
                pthread_mutex_lock(&gate_lock);
                slow_inside = 1;
                pthread_cond_broadcast(&gate_cond);
                while (!gate_open)
                        pthread_cond_wait(&gate_cond, &gate_lock);
                pthread_mutex_unlock(&gate_lock);
        }
        *ret = malloc(len ? len : 1);
        memcpy(*ret, req, len);
        *ret_len = len;
        return 0;
}

struct srv {
        char *dir;
        char url[512];
        nng_socket rep, req;
        struct transport_server *server;
};

/* url NULL: tcp:// on an ephemeral port. */
static void start(struct srv *s, const char *url, size_t max)
{
        lserr err = {0};

        if (url)
                snprintf(s->url, sizeof(s->url), "%s", url);
        else
                snprintf(s->url, sizeof(s->url), "tcp://127.0.0.1:%d", tu_tcp_port());
        assert_int_equal(transport_listen(s->url, max, 0660, NULL, &s->rep, &err), 0);
        assert_int_equal(transport_serve(s->rep, 2, echo, NULL, &s->server, &err), 0);
        assert_int_equal(transport_dial(s->url, TRANSPORT_MAX_DEFAULT, NULL, &s->req, &err), 0);
}

static void stop(struct srv *s)
{
        nng_close(s->req);
        transport_server_stop(s->server);
}

static void call_ok(struct srv *s, const char *text)
{
        uint8_t *out = NULL;
        size_t n = 0;
        lserr err = {0};

        assert_int_equal(transport_call(s->req, text, strlen(text), 5000, &out, &n, &err), 0);
        assert_int_equal(n, strlen(text));
        assert_memory_equal(out, text, n);
        free(out);
}

static void test_ipc_call_and_permissions(void **state)
{
        struct srv s = {0};
        char url[512];
        struct stat st;

        (void)state;
        s.dir = tu_mkdtemp();
        snprintf(url, sizeof(url), "ipc://%s/ctl.sock", s.dir);
        start(&s, url, TRANSPORT_MAX_DEFAULT);
        call_ok(&s, "hello");
        assert_int_equal(stat(url + 6, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0660);
        stop(&s);
        tu_rmtree(s.dir);
}

struct slow_arg {
        nng_socket sock;
        int result;
};

static void *slow_call(void *p)
{
        struct slow_arg *a = p;
        uint8_t *out = NULL;
        size_t n;
        lserr err = {0};

        /* Held until the test opens the gate: a deadline no slow machine reaches. */
        a->result = transport_call(a->sock, "slow", 4, 60000, &out, &n, &err);
        free(out);
        return NULL;
}

static void test_tcp_deadline_and_parallel(void **state)
{
        struct srv s = {0};
        uint8_t *out = NULL;
        size_t n;
        lserr err = {0};
        long long t0;

        (void)state;
        start(&s, NULL, TRANSPORT_MAX_DEFAULT);
        call_ok(&s, "ping");

        /* No answer: the call ends with a timeout, and not before its deadline
         * (nng counts whole milliseconds: 2 ms of slack for its rounding). */
        t0 = fsutil_mono_us();
        assert_int_equal(transport_call(s.req, "mute", 4, 300, &out, &n, &err), LS_ETIMEDOUT);
        assert_true(fsutil_mono_us() - t0 >= 298000);
        assert_null(out);

        /* A slow request in its handler does not block a second one on the same
         * socket: the fast call is answered while the slow handler is held at
         * the gate (were the server serial, it would time out instead). */
        {
                pthread_t th;
                struct slow_arg a = {.sock = s.req};
                slow_inside = gate_open = 0;
                assert_int_equal(pthread_create(&th, NULL, slow_call, &a), 0);
                pthread_mutex_lock(&gate_lock);
                while (!slow_inside)
                        pthread_cond_wait(&gate_cond, &gate_lock);
                pthread_mutex_unlock(&gate_lock);
                call_ok(&s, "fast");
                pthread_mutex_lock(&gate_lock);
                gate_open = 1;
                pthread_cond_broadcast(&gate_cond);
                pthread_mutex_unlock(&gate_lock);
                pthread_join(th, NULL);
                assert_int_equal(a.result, 0);
        }
        stop(&s);
}

struct each_log {
        pthread_t caller;
        int on_caller, n;
        char seen[4][8];
};

/* Opens the gate once the fast call is in: the slow call can only end after
 * each ran for the fast one, while the slow one was still out. */
static void each_open_gate(void *arg, struct transport_call *c)
{
        struct each_log *l = arg;

        l->on_caller += pthread_equal(pthread_self(), l->caller) != 0;
        snprintf(l->seen[l->n++], sizeof(l->seen[0]), "%.*s", (int)c->resp_len, c->resp ? (char *)c->resp : "");
        assert_ptr_equal(c->user, l); /* the caller's pointer, untouched */
        free(c->resp);
        c->resp = NULL;
        pthread_mutex_lock(&gate_lock);
        gate_open = 1;
        pthread_cond_broadcast(&gate_cond);
        pthread_mutex_unlock(&gate_lock);
}

/* transport_call_all_each hands each call to the caller's thread as it ends,
 * in the order they end, while the others are still out. */
static void test_call_all_each_in_order(void **state)
{
        struct srv s = {0};
        struct each_log l = {.caller = pthread_self()};
        struct transport_call calls[2];

        (void)state;
        start(&s, NULL, TRANSPORT_MAX_DEFAULT);
        slow_inside = gate_open = 0;
        calls[0] = (struct transport_call){.sock = s.req, .req = (const uint8_t *)"slow", .len = 4, .user = &l};
        calls[1] = (struct transport_call){.sock = s.req, .req = (const uint8_t *)"fast", .len = 4, .user = &l};
        assert_int_equal(transport_call_all_each(calls, 2, 60000, NULL, each_open_gate, &l), 0);
        assert_int_equal(l.n, 2);
        assert_string_equal(l.seen[0], "fast");
        assert_string_equal(l.seen[1], "slow");
        assert_int_equal(l.on_caller, 2);
        assert_int_equal(calls[0].rc, 0);
        assert_int_equal(calls[1].rc, 0);
        stop(&s);
}

static void test_oversize_dropped(void **state)
{
        struct srv s = {0};
        uint8_t *out = NULL, *big = calloc(1, 4096);
        size_t n;
        lserr err = {0};

        (void)state;
        start(&s, NULL, 1024);
        /* Over the server's limit: nng drops it before we ever see it. */
        {
                int r = transport_call(s.req, big, 4096, 500, &out, &n, &err);
                assert_true(r == LS_ETIMEDOUT || r == -ECONNRESET);
                assert_null(out);
        }
        /* The server still serves calls within the limit. */
        call_ok(&s, "small");
        free(big);
        stop(&s);
}

static void test_bad_urls(void **state)
{
        nng_socket s;
        lserr err = {0};

        (void)state;
        assert_int_equal(transport_listen("http://x", 1024, 0, NULL, &s, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "http://x"));
        lserr_clear(&err);
        assert_int_equal(transport_listen("tls+tcp://127.0.0.1:47393", 1024, 0, NULL, &s, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "tls_cert"));
}

/* TLS material made by openssl in dir: CA "ca" and "other-ca", and server
 * certificate "srv" (key srv.key, mode 0600) signed by "ca" with
 * subjectAltName DNS:agent-a. Returns 0 when openssl is not installed. */
static int make_pki(const char *dir)
{
        char cmd[4096];

        if (system("command -v openssl >/dev/null 2>&1") != 0)
                return 0;
        snprintf(cmd, sizeof(cmd),
                 "set -e; exec >/dev/null 2>&1; cd '%s'; umask 077; "
                 "for ca in ca other-ca; do openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                 "-nodes -days 2 -subj /CN=$ca -keyout $ca.key -out $ca.pem; done; "
                 "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=agent-a "
                 "-keyout srv.key -out srv.csr; "
                 "printf 'subjectAltName=DNS:agent-a\\n' > srv.ext; "
                 "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
                 "-extfile srv.ext -out srv.pem",
                 dir);
        assert_int_equal(system(cmd), 0);
        return 1;
}

struct tls_srv {
        struct srv s;
        char cert[600], key[600], ca[600], other_ca[600];
};

static int tls_start(struct tls_srv *t)
{
        struct transport_tls tls = {0};
        lserr err = {0};

        t->s.dir = tu_mkdtemp();
        if (!make_pki(t->s.dir)) {
                tu_rmtree(t->s.dir);
                return 0;
        }
        snprintf(t->cert, sizeof(t->cert), "%s/srv.pem", t->s.dir);
        snprintf(t->key, sizeof(t->key), "%s/srv.key", t->s.dir);
        snprintf(t->ca, sizeof(t->ca), "%s/ca.pem", t->s.dir);
        snprintf(t->other_ca, sizeof(t->other_ca), "%s/other-ca.pem", t->s.dir);
        tls.cert = t->cert;
        tls.key = t->key;
        snprintf(t->s.url, sizeof(t->s.url), "tls+tcp://127.0.0.1:%d", tu_tcp_port());
        assert_int_equal(transport_listen(t->s.url, TRANSPORT_MAX_DEFAULT, 0, &tls, &t->s.rep, &err), 0);
        assert_int_equal(transport_serve(t->s.rep, 1, echo, NULL, &t->s.server, &err), 0);
        return 1;
}

static void tls_stop(struct tls_srv *t)
{
        transport_server_stop(t->s.server);
        tu_rmtree(t->s.dir);
}

/* The right CA and name: the probe passes and a call goes through. */
static void test_tls_verified(void **state)
{
        struct tls_srv t = {0};
        struct transport_tls ctls = {0};
        lserr err = {0};

        (void)state;
        if (!tls_start(&t)) {
                skip(); /* openssl CLI not installed: cannot make test certificates */
                return;
        }
        ctls.ca = t.ca;
        ctls.server_name = "agent-a";
        assert_int_equal(transport_probe(t.s.url, &ctls, 5000, &err), 0);
        assert_int_equal(transport_dial(t.s.url, TRANSPORT_MAX_DEFAULT, &ctls, &t.s.req, &err), 0);
        call_ok(&t.s, "secret");
        nng_close(t.s.req);
        tls_stop(&t);
}

/* A certificate from another CA, or for another name, is refused: the probe
 * names the CA and the name, and no request reaches the server. */
static void test_tls_refused(void **state)
{
        struct tls_srv t = {0};
        struct transport_tls bad[2] = {{0}, {0}};
        uint8_t *out = NULL;
        size_t n = 0;
        lserr err = {0};

        (void)state;
        if (!tls_start(&t)) {
                skip();
                return;
        }
        bad[0] = (struct transport_tls){.ca = t.other_ca, .server_name = "agent-a"};
        bad[1] = (struct transport_tls){.ca = t.ca, .server_name = "agent-b"};
        for (int i = 0; i < 2; i++) {
                nng_socket req;

                lserr_clear(&err);
                assert_int_equal(transport_probe(t.s.url, &bad[i], 5000, &err), -EACCES);
                assert_non_null(strstr(err.msg, "certificate was refused"));
                assert_non_null(strstr(err.msg, bad[i].ca));
                assert_non_null(strstr(err.msg, bad[i].server_name));
                assert_int_equal(transport_dial(t.s.url, TRANSPORT_MAX_DEFAULT, &bad[i], &req, &err), 0);
                assert_int_equal(transport_call(req, "x", 1, 300, &out, &n, &err), LS_ETIMEDOUT);
                nng_close(req);
        }
        tls_stop(&t);
}

/* No fallback to an unverified peer: a dialer without a CA or a name is refused
 * before it connects, and so is a listener whose key others may read. */
static void test_tls_settings_refused(void **state)
{
        struct tls_srv t = {0};
        struct transport_tls no_ca = {.server_name = "agent-a"}, no_name = {0}, srv = {0};
        nng_socket s;
        char url[64];
        lserr err = {0};

        (void)state;
        if (!tls_start(&t)) {
                skip();
                return;
        }
        no_name.ca = t.ca;
        assert_int_equal(transport_dial(t.s.url, TRANSPORT_MAX_DEFAULT, NULL, &s, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "needs a CA file and a server name"));
        lserr_clear(&err);
        assert_int_equal(transport_dial(t.s.url, TRANSPORT_MAX_DEFAULT, &no_ca, &s, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "needs a CA file and a server name"));
        lserr_clear(&err);
        assert_int_equal(transport_dial(t.s.url, TRANSPORT_MAX_DEFAULT, &no_name, &s, &err), -EINVAL);
        lserr_clear(&err);
        assert_int_equal(transport_probe(t.s.url, &no_ca, 1000, &err), -EINVAL);

        assert_int_equal(chmod(t.key, 0640), 0);
        srv.cert = t.cert;
        srv.key = t.key;
        snprintf(url, sizeof(url), "tls+tcp://127.0.0.1:%d", tu_tcp_port());
        lserr_clear(&err);
        assert_int_equal(transport_listen(url, TRANSPORT_MAX_DEFAULT, 0, &srv, &s, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "lets group or other read it"));
        assert_int_equal(transport_tls_key_mode(t.key, &err), -EPERM);
        tls_stop(&t);
}

/* Waits (up to 10 s) for p to have no connection left. */
static int pipes_gone(struct transport_pipes *p)
{
        struct timespec ts = fsutil_mono_after(10 * 1000000LL);
        int n;

        pthread_mutex_lock(&p->lock);
        while (p->n > 0 && pthread_cond_timedwait(&p->cond, &p->lock, &ts) == 0)
                ;
        n = p->n;
        pthread_mutex_unlock(&p->lock);
        return n == 0;
}

/* The count follows the peer: up once it listens, down when it goes, up again
 * when it is back (nng's own reconnect); never up for a refused certificate. */
static void test_pipes_counted(void **state)
{
        struct transport_pipes p;
        struct srv s = {0};
        struct tls_srv t = {0};
        struct transport_tls bad = {0};
        nng_socket req;
        lserr err = {0};

        (void)state;
        transport_pipes_init(&p);
        snprintf(s.url, sizeof(s.url), "tcp://127.0.0.1:%d", tu_tcp_port());
        assert_int_equal(transport_dial_counted(s.url, TRANSPORT_MAX_DEFAULT, NULL, &p, &req, &err), 0);
        assert_int_equal(transport_pipes_wait(&p, fsutil_mono_us() + 100 * 1000), 0); /* nobody listens */
        assert_int_equal(transport_listen(s.url, TRANSPORT_MAX_DEFAULT, 0, NULL, &s.rep, &err), 0);
        assert_int_equal(transport_serve(s.rep, 1, echo, NULL, &s.server, &err), 0);
        assert_int_equal(transport_pipes_wait(&p, fsutil_mono_us() + 10 * 1000000LL), 1);
        transport_server_stop(s.server);
        assert_true(pipes_gone(&p));
        assert_int_equal(transport_listen(s.url, TRANSPORT_MAX_DEFAULT, 0, NULL, &s.rep, &err), 0);
        assert_int_equal(transport_serve(s.rep, 1, echo, NULL, &s.server, &err), 0);
        assert_int_equal(transport_pipes_wait(&p, fsutil_mono_us() + 10 * 1000000LL), 1);
        nng_close(req);
        transport_server_stop(s.server);
        assert_int_equal(p.n, 0);

        if (!tls_start(&t)) {
                transport_pipes_destroy(&p);
                skip(); /* openssl CLI not installed: cannot make test certificates */
                return;
        }
        bad = (struct transport_tls){.ca = t.other_ca, .server_name = "agent-a"};
        assert_int_equal(transport_dial_counted(t.s.url, TRANSPORT_MAX_DEFAULT, &bad, &p, &req, &err), 0);
        /* Several of nng's tries (50 ms back-off, doubling up to 2 s) are refused. */
        assert_int_equal(transport_pipes_wait(&p, fsutil_mono_us() + 1500 * 1000), 0);
        nng_close(req);
        tls_stop(&t);
        transport_pipes_destroy(&p);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ipc_call_and_permissions),
                cmocka_unit_test(test_tcp_deadline_and_parallel),
                cmocka_unit_test(test_call_all_each_in_order),
                cmocka_unit_test(test_oversize_dropped),
                cmocka_unit_test(test_bad_urls),
                cmocka_unit_test(test_tls_verified),
                cmocka_unit_test(test_tls_refused),
                cmocka_unit_test(test_tls_settings_refused),
                cmocka_unit_test(test_pipes_counted),
        };
        int rc = cmocka_run_group_tests(tests, NULL, NULL);

        /* nng frees closed sockets on its reaper thread: wait for it, so that
         * LeakSanitizer at exit sees nothing still being torn down. */
        nng_fini();
        return rc;
}
