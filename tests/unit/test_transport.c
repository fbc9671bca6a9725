/* test_transport: real nng sockets over ipc:// and tcp://: calls, deadlines,
 * the receive size limit, socket permissions and parallel workers. */
#include <pthread.h>
#include <setjmp.h>
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

/* TLS with a self-signed certificate made by openssl, when openssl is there. */
static void test_tls(void **state)
{
        struct srv s = {0};
        struct transport_tls tls = {0}, ctls = {0};
        char cmd[2048], cert[600], key[600];
        lserr err = {0};

        (void)state;
        if (system("command -v openssl >/dev/null 2>&1") != 0) {
                skip(); /* openssl CLI not installed: cannot make a test certificate */
                return;
        }
        s.dir = tu_mkdtemp();
        snprintf(cert, sizeof(cert), "%s/cert.pem", s.dir);
        snprintf(key, sizeof(key), "%s/key.pem", s.dir);
        snprintf(cmd, sizeof(cmd),
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
                 "-subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout %s -out %s >/dev/null 2>&1",
                 key, cert);
        assert_int_equal(system(cmd), 0);
        tls.cert = cert;
        tls.key = key;
        ctls.ca = cert;
        ctls.server_name = "localhost";
        snprintf(s.url, sizeof(s.url), "tls+tcp://127.0.0.1:%d", tu_tcp_port());
        assert_int_equal(transport_listen(s.url, TRANSPORT_MAX_DEFAULT, 0, &tls, &s.rep, &err), 0);
        assert_int_equal(transport_serve(s.rep, 1, echo, NULL, &s.server, &err), 0);
        assert_int_equal(transport_dial(s.url, TRANSPORT_MAX_DEFAULT, &ctls, &s.req, &err), 0);
        call_ok(&s, "secret");
        stop(&s);
        tu_rmtree(s.dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ipc_call_and_permissions),
                cmocka_unit_test(test_tcp_deadline_and_parallel),
                cmocka_unit_test(test_oversize_dropped),
                cmocka_unit_test(test_bad_urls),
                cmocka_unit_test(test_tls),
        };
        int rc = cmocka_run_group_tests(tests, NULL, NULL);

        /* nng frees closed sockets on its reaper thread: wait for it, so that
         * LeakSanitizer at exit sees nothing still being torn down. */
        nng_fini();
        return rc;
}
