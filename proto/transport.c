/* transport: nng sockets, deadlines and the worker pool. */
#include "transport.h"

#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "fsutil.h"
#include "transport_priv.h"

struct worker {
        struct transport_server *srv;
        pthread_t thread;
        nng_ctx ctx;
        int started;
};

/* The pipe of the request this worker thread is handling, for transport_request_peer. */
static _Thread_local nng_pipe current_pipe = NNG_PIPE_INITIALIZER;

struct transport_server {
        nng_socket sock;
        transport_handler handler;
        void *arg;
        unsigned n;
        struct worker *workers;
        struct transport_guard *guard; /* ipc:// only (transport_guard.c) */
        struct transport_activity act;
};


static int nng_fail(lserr *err, int rv, const char *url, const char *step)
{
        int code = rv == NNG_ETIMEDOUT ? LS_ETIMEDOUT : rv == NNG_EMSGSIZE ? LS_EOVERSIZE : -EIO;

        return lserr_set(err, code, "\"%s\": %s: %s", url, step, nng_strerror(rv));
}

/* The lserr code for an nng failure of a call. */
static int call_code(int rv)
{
        switch (rv) {
        case NNG_ETIMEDOUT:
                return LS_ETIMEDOUT;
        case NNG_ECONNSHUT:
        case NNG_ECONNRESET:
        case NNG_ECONNREFUSED:
        case NNG_ECLOSED:
                return -ECONNRESET;
        case NNG_ECANCELED:
                return -ECANCELED;
        default:
                return -EIO;
        }
}

static int is_tls(const char *url)
{
        return strncmp(url, "tls+tcp://", 10) == 0;
}

static int check_scheme(const char *url, lserr *err)
{
        if (strncmp(url, "tcp://", 6) == 0 || is_tls(url) || strncmp(url, "ipc://", 6) == 0)
                return 0;
        return lserr_set(err, -EINVAL, "\"%s\": only tcp://, tls+tcp:// and ipc:// are supported", url);
}

/* The listener's certificate and key. The key is refused when group or other
 * may read it, as the signing keys are. */
static int tls_own_cert(nng_tls_config *cfg, const char *url, const struct transport_tls *tls, lserr *err)
{
        _cleanup_free_ char *cert = NULL;
        char *key = NULL;
        size_t n;
        lserr e2 = {0};
        int rv, r;

        r = fsutil_read_all(tls->cert, 1 << 20, &cert, &n, &e2);
        if (r >= 0)
                r = transport_tls_key_mode(tls->key, &e2);
        if (r >= 0)
                r = fsutil_read_all(tls->key, 1 << 20, &key, &n, &e2);
        rv = r < 0 ? NNG_EINVAL : nng_tls_config_own_cert(cfg, cert, key, NULL);
        if (key)
                sodium_memzero(key, n);
        free(key);
        if (rv)
                return lserr_set(err, -EINVAL, "\"%s\": TLS certificate \"%s\" / key \"%s\": %s", url, tls->cert,
                                 tls->key, r < 0 ? e2.msg : nng_strerror(rv));
        return 0;
}

/* The dialer verifies the agent's certificate against ca and server_name, always:
 * without both, anyone on the path could answer as the agent at the TLS layer. */
static int tls_verify_peer(nng_tls_config *cfg, const char *url, const struct transport_tls *tls, lserr *err)
{
        int rv = nng_tls_config_ca_file(cfg, tls->ca);

        if (rv)
                return lserr_set(err, -EINVAL, "\"%s\": TLS CA file \"%s\": %s", url, tls->ca, nng_strerror(rv));
        rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED);
        if (!rv)
                rv = nng_tls_config_server_name(cfg, tls->server_name);
        if (rv)
                return lserr_set(err, -EINVAL, "\"%s\": TLS server name \"%s\": %s", url, tls->server_name,
                                 nng_strerror(rv));
        return 0;
}

static int make_tls(const char *url, const struct transport_tls *tls, int server, nng_tls_config **ret, lserr *err)
{
        nng_tls_config *cfg = NULL;
        int rv, r;

        if (server && (!tls || !tls->cert || !tls->key))
                return lserr_set(err, -EINVAL, "\"%s\": tls+tcp:// needs tls_cert and tls_key", url);
        if (!server && (!tls || !tls->ca || !tls->server_name))
                return lserr_set(err, -EINVAL, "\"%s\": tls+tcp:// needs a CA file and a server name", url);
        rv = nng_tls_config_alloc(&cfg, server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT);
        if (rv)
                return nng_fail(err, rv, url, "TLS setup");
        r = server ? tls_own_cert(cfg, url, tls, err) : tls_verify_peer(cfg, url, tls, err);
        if (r < 0) {
                nng_tls_config_free(cfg);
                return r;
        }
        *ret = cfg;
        return 0;
}

int transport_url_host(const char *url, char *ret, size_t ret_size)
{
        const char *rest = strstr(url, "://"), *colon;
        size_t n;

        if (!rest || strncmp(url, "ipc://", 6) == 0)
                return -EINVAL;
        rest += 3;
        colon = strrchr(rest, ':');
        if (!colon || colon == rest)
                return -EINVAL;
        n = (size_t)(colon - rest);
        if (rest[0] == '[') {
                if (n < 3 || colon[-1] != ']')
                        return -EINVAL;
                rest++;
                n -= 2;
        }
        if (n >= ret_size)
                return -ENAMETOOLONG;
        memcpy(ret, rest, n);
        ret[n] = '\0';
        return 0;
}

int transport_tls_key_mode(const char *path, lserr *err)
{
        struct stat st;

        if (stat(path, &st) < 0)
                return lserr_set(err, -errno, "TLS key \"%s\": %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return lserr_set(err, -EINVAL, "TLS key \"%s\": not a regular file", path);
        if (st.st_mode & 077)
                return lserr_set(err, -EPERM,
                                 "TLS key \"%s\": mode %04o lets group or other read it; fix with: chmod 600 '%s'",
                                 path, (unsigned)(st.st_mode & 07777), path);
        return 0;
}

int transport_start_listener(nng_socket s, const char *url, int ipc_mode, const struct transport_tls *tls,
                          nng_listener *ret, lserr *err)
{
        nng_listener l;
        nng_tls_config *cfg = NULL;
        int rv, r = 0;

        rv = nng_listener_create(&l, s, url);
        if (rv)
                return nng_fail(err, rv, url, "listen");
        if (ipc_mode && strncmp(url, "ipc://", 6) == 0) {
                rv = nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, ipc_mode);
                if (rv) {
                        r = nng_fail(err, rv, url, "set socket permissions");
                        goto out;
                }
        }
        if (is_tls(url)) {
                r = make_tls(url, tls, 1, &cfg, err);
                if (r < 0)
                        goto out;
                rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg);
                nng_tls_config_free(cfg); /* the listener holds its own reference */
                if (rv) {
                        r = nng_fail(err, rv, url, "TLS on listener");
                        goto out;
                }
        }
        rv = nng_listener_start(l, 0);
        if (rv) {
                r = nng_fail(err, rv, url, "listen");
                goto out;
        }
        *ret = l;
        return 0;
out:
        nng_listener_close(l);
        return r;
}

int transport_listen(const char *url, size_t max_recv, int ipc_mode, const struct transport_tls *tls,
                     nng_socket *ret, lserr *err)
{
        nng_socket s = NNG_SOCKET_INITIALIZER;
        nng_listener l;
        int rv, r;

        r = check_scheme(url, err);
        if (r < 0)
                return r;
        rv = nng_rep0_open(&s);
        if (rv)
                return nng_fail(err, rv, url, "open rep socket");
        rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, max_recv);
        r = rv ? nng_fail(err, rv, url, "listen") : transport_start_listener(s, url, ipc_mode, tls, &l, err);
        if (r < 0) {
                nng_close(s);
                return r;
        }
        if (strncmp(url, "ipc://", 6) == 0)
                transport_guard_note(s, l, url, ipc_mode);
        *ret = s;
        return 0;
}

void transport_pipes_init(struct transport_pipes *p)
{
        p->n = 0;
        pthread_mutex_init(&p->lock, NULL);
        fsutil_cond_init_mono(&p->cond); /* the deadline is on fsutil_mono_us's clock */
}

void transport_pipes_destroy(struct transport_pipes *p)
{
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->lock);
}

int transport_pipes_wait(struct transport_pipes *p, long long deadline_us)
{
        struct timespec ts = {.tv_sec = deadline_us / 1000000, .tv_nsec = (deadline_us % 1000000) * 1000};
        int n;

        pthread_mutex_lock(&p->lock);
        while (p->n <= 0 && fsutil_mono_us() < deadline_us)
                if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) == ETIMEDOUT)
                        break;
        n = p->n;
        pthread_mutex_unlock(&p->lock);
        return n > 0;
}

/* Counted from ADD_PRE (the handshake done, TLS verified): nng runs REM_POST
 * for every pipe that got an ADD_PRE, also one refused before ADD_POST. */
static void pipe_event(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
        struct transport_pipes *p = arg;

        (void)pipe;
        pthread_mutex_lock(&p->lock);
        p->n += ev == NNG_PIPE_EV_ADD_PRE ? 1 : -1;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
}

int transport_dial(const char *url, size_t max_recv, const struct transport_tls *tls, nng_socket *ret,
                   lserr *err)
{
        return transport_dial_counted(url, max_recv, tls, NULL, ret, err);
}

int transport_dial_counted(const char *url, size_t max_recv, const struct transport_tls *tls,
                           struct transport_pipes *pipes, nng_socket *ret, lserr *err)
{
        nng_socket s = NNG_SOCKET_INITIALIZER;
        nng_dialer d;
        nng_tls_config *cfg = NULL;
        int rv, r;

        r = check_scheme(url, err);
        if (r < 0)
                return r;
        rv = nng_req0_open(&s);
        if (rv)
                return nng_fail(err, rv, url, "open req socket");
        rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, max_recv);
        if (!rv)
                rv = nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
        if (!rv)
                rv = nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 50);
        if (!rv)
                rv = nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 2000);
        if (!rv && pipes)
                rv = nng_pipe_notify(s, NNG_PIPE_EV_ADD_PRE, pipe_event, pipes);
        if (!rv && pipes)
                rv = nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, pipe_event, pipes);
        if (!rv)
                rv = nng_dialer_create(&d, s, url);
        if (rv) {
                r = nng_fail(err, rv, url, "dial");
                goto out;
        }
        if (is_tls(url)) {
                r = make_tls(url, tls, 0, &cfg, err);
                if (r < 0)
                        goto out;
                rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
                nng_tls_config_free(cfg);
                if (rv) {
                        r = nng_fail(err, rv, url, "TLS on dialer");
                        goto out;
                }
        }
        /* Non-blocking: an agent that is down now may be up for the call. */
        rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
        if (rv) {
                r = nng_fail(err, rv, url, "dial");
                goto out;
        }
        *ret = s;
        return 0;
out:
        nng_close(s);
        return r;
}

/* The 8-byte SP header a req0 peer opens with: sending it makes the TLS
 * handshake happen, and the listener answers with its own. */
static const uint8_t sp_req0_hello[8] = {0x00, 'S', 'P', 0x00, 0x00, 0x30, 0x00, 0x00};

/* What is left of a deadline, for the next stream step: at least 1 ms. */
static nng_duration left_ms(long long deadline_us)
{
        long long left = (deadline_us - fsutil_mono_us()) / 1000;

        return left > 0 ? (nng_duration)left : 1;
}

static int probe_fail(lserr *err, int rv, const char *url, const struct transport_tls *tls)
{
        if (rv == NNG_EPEERAUTH || rv == NNG_ECRYPTO)
                return lserr_set(err, -EACCES,
                                 "\"%s\": TLS: the peer's certificate was refused (%s): it is not signed by CA "
                                 "\"%s\" or does not name \"%s\"",
                                 url, nng_strerror(rv), tls->ca, tls->server_name);
        return nng_fail(err, rv, url, "connect");
}

int transport_probe(const char *url, const struct transport_tls *tls, int timeout_ms, lserr *err)
{
        nng_stream_dialer *d = NULL;
        nng_stream *st = NULL;
        nng_tls_config *cfg = NULL;
        nng_aio *aio = NULL;
        uint8_t buf[8];
        nng_iov iov;
        long long deadline = fsutil_mono_us() + (long long)timeout_ms * 1000;
        int rv, r;

        r = check_scheme(url, err);
        if (r < 0)
                return r;
        if (is_tls(url)) {
                r = make_tls(url, tls, 0, &cfg, err);
                if (r < 0)
                        return r;
        }
        rv = nng_aio_alloc(&aio, NULL, NULL);
        if (!rv)
                rv = nng_stream_dialer_alloc(&d, url);
        if (!rv && cfg)
                rv = nng_stream_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
        if (rv) {
                r = nng_fail(err, rv, url, "probe");
                goto out;
        }
        nng_aio_set_timeout(aio, left_ms(deadline));
        nng_stream_dialer_dial(d, aio);
        nng_aio_wait(aio);
        rv = nng_aio_result(aio);
        if (!rv) {
                st = nng_aio_get_output(aio, 0);
                memcpy(buf, sp_req0_hello, sizeof(buf));
                iov = (nng_iov){.iov_buf = buf, .iov_len = sizeof(buf)};
                nng_aio_set_iov(aio, 1, &iov);
                nng_aio_set_timeout(aio, left_ms(deadline));
                nng_stream_send(st, aio);
                nng_aio_wait(aio);
                rv = nng_aio_result(aio);
        }
        if (!rv) {
                /* A short count is fine: any byte back means the handshake passed. */
                nng_aio_set_timeout(aio, left_ms(deadline));
                nng_stream_recv(st, aio);
                nng_aio_wait(aio);
                rv = nng_aio_result(aio);
        }
        r = rv ? probe_fail(err, rv, url, tls) : 0;
out:
        if (st)
                nng_stream_free(st);
        if (d)
                nng_stream_dialer_free(d);
        if (aio)
                nng_aio_free(aio);
        if (cfg)
                nng_tls_config_free(cfg);
        return r;
}

/* nng 1.5 has no blocking context send/recv: wait on an aio instead.
 * timeout_ms < 0 waits forever. On success a sent message belongs to nng. */
static int ctx_send(nng_ctx ctx, nng_msg *msg, int timeout_ms)
{
        nng_aio *aio;
        int rv = nng_aio_alloc(&aio, NULL, NULL);

        if (rv)
                return rv;
        nng_aio_set_timeout(aio, timeout_ms < 0 ? NNG_DURATION_INFINITE : timeout_ms);
        nng_aio_set_msg(aio, msg);
        nng_ctx_send(ctx, aio);
        nng_aio_wait(aio);
        rv = nng_aio_result(aio);
        nng_aio_free(aio);
        return rv;
}

static int ctx_recv(nng_ctx ctx, nng_msg **ret, int timeout_ms)
{
        nng_aio *aio;
        int rv = nng_aio_alloc(&aio, NULL, NULL);

        if (rv)
                return rv;
        nng_aio_set_timeout(aio, timeout_ms < 0 ? NNG_DURATION_INFINITE : timeout_ms);
        nng_ctx_recv(ctx, aio);
        nng_aio_wait(aio);
        rv = nng_aio_result(aio);
        if (rv == 0)
                *ret = nng_aio_get_msg(aio);
        nng_aio_free(aio);
        return rv;
}

int transport_call(nng_socket s, const void *req, size_t len, int timeout_ms, uint8_t **ret, size_t *ret_len,
                   lserr *err)
{
        nng_ctx ctx;
        nng_msg *msg = NULL;
        uint8_t *out;
        long long t0 = fsutil_mono_us();
        int rv, r = 0;

        rv = nng_ctx_open(&ctx, s);
        if (rv)
                return lserr_set(err, -EIO, "request: open context: %s", nng_strerror(rv));
        rv = nng_msg_alloc(&msg, len);
        if (rv) {
                r = lserr_set(err, -ENOMEM, "request: %s", nng_strerror(rv));
                goto out;
        }
        memcpy(nng_msg_body(msg), req, len);
        rv = ctx_send(ctx, msg, timeout_ms);
        if (rv) {
                nng_msg_free(msg);
                msg = NULL;
                r = lserr_set(err, call_code(rv), "send: %s", nng_strerror(rv));
                goto out;
        }
        msg = NULL;
        {
                /* One deadline for the whole call, not one per half. */
                long long left = timeout_ms - (fsutil_mono_us() - t0) / 1000;
                rv = ctx_recv(ctx, &msg, left > 0 ? (int)left : 0);
        }
        if (rv) {
                r = lserr_set(err, call_code(rv), "no reply: %s", nng_strerror(rv));
                goto out;
        }
        out = malloc(nng_msg_len(msg) ? nng_msg_len(msg) : 1);
        if (!out) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(out, nng_msg_body(msg), nng_msg_len(msg));
        *ret = out;
        *ret_len = nng_msg_len(msg);
out:
        if (msg)
                nng_msg_free(msg);
        nng_ctx_close(ctx);
        return r;
}

struct call_group {
        pthread_mutex_t lock;
        pthread_cond_t done;
        size_t pending;
        long long deadline_us;
        atomic_int cancel; /* the caller stops: no call starts its receive */
        struct transport_call **ended; /* each's queue: calls in the order they ended (NULL: no each) */
        size_t n_ended;
};

static void call_done(struct transport_call *c, int rc)
{
        struct call_group *g = c->group;

        c->rc = rc;
        c->done_us = fsutil_now_us();
        pthread_mutex_lock(&g->lock);
        if (g->ended)
                g->ended[g->n_ended++] = c;
        g->pending--;
        pthread_cond_signal(&g->done);
        pthread_mutex_unlock(&g->lock);
}

/* Runs on an nng thread: send finished -> start receiving; reply in -> done. */
static void call_step(void *arg)
{
        struct transport_call *c = arg;
        struct call_group *g = c->group;
        int rv = nng_aio_result(c->aio);

        if (rv) {
                if (c->phase == 0 && nng_aio_get_msg(c->aio))
                        nng_msg_free(nng_aio_get_msg(c->aio)); /* an unsent message is ours again */
                call_done(c, call_code(rv));
                return;
        }
        if (c->phase == 0 && atomic_load(&g->cancel)) {
                call_done(c, call_code(NNG_ECANCELED));
                return;
        }
        if (c->phase == 0) {
                long long left = (g->deadline_us - fsutil_mono_us()) / 1000;
                c->phase = 1;
                nng_aio_set_timeout(c->aio, left > 0 ? (nng_duration)left : 1);
                nng_ctx_recv(c->ctx, c->aio);
                return;
        }
        nng_msg *msg = nng_aio_get_msg(c->aio);
        c->resp_len = nng_msg_len(msg);
        c->resp = malloc(c->resp_len ? c->resp_len : 1);
        if (c->resp)
                memcpy(c->resp, nng_msg_body(msg), c->resp_len);
        nng_msg_free(msg);
        call_done(c, c->resp ? 0 : -ENOMEM);
}

/* Waits for every call of g, handing each one that ended to each (lock let
 * go meanwhile); once *stop is set, cancels those still out, again each tenth
 * of a second (a call between its send and its receive misses one cancel).
 * g->lock held. */
static void wait_calls(struct call_group *g, struct transport_call *calls, size_t n, const atomic_int *stop,
                       transport_each_fn each, void *arg)
{
        size_t taken = 0;

        while (g->pending || taken < g->n_ended) {
                struct timespec ts;
                if (each && taken < g->n_ended) {
                        struct transport_call *c = g->ended[taken++];
                        pthread_mutex_unlock(&g->lock);
                        each(arg, c);
                        pthread_mutex_lock(&g->lock);
                        continue;
                }
                if (!stop) {
                        pthread_cond_wait(&g->done, &g->lock);
                        continue;
                }
                if (atomic_load(stop)) {
                        atomic_store(&g->cancel, 1);
                        pthread_mutex_unlock(&g->lock);
                        for (size_t i = 0; i < n; i++)
                                if (calls[i].aio)
                                        nng_aio_cancel(calls[i].aio);
                        pthread_mutex_lock(&g->lock);
                }
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 100 * 1000 * 1000;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&g->done, &g->lock, &ts);
        }
}

int transport_call_all(struct transport_call *calls, size_t n, int timeout_ms)
{
        return transport_call_all_until(calls, n, timeout_ms, NULL);
}

int transport_call_all_until(struct transport_call *calls, size_t n, int timeout_ms, const atomic_int *stop)
{
        return transport_call_all_each(calls, n, timeout_ms, stop, NULL, NULL);
}

int transport_call_all_each(struct transport_call *calls, size_t n, int timeout_ms, const atomic_int *stop,
                            transport_each_fn each, void *arg)
{
        struct call_group g = {.pending = 0, .deadline_us = fsutil_mono_us() + (long long)timeout_ms * 1000};

        if (each && !(g.ended = calloc(n ? n : 1, sizeof(*g.ended)))) {
                /* None started: each call says so, as one that could not start. */
                for (size_t i = 0; i < n; i++)
                        calls[i].rc = -ENOMEM;
                return -ENOMEM;
        }
        pthread_mutex_init(&g.lock, NULL);
        pthread_cond_init(&g.done, NULL);
        for (size_t i = 0; i < n; i++) {
                struct transport_call *c = &calls[i];
                nng_msg *msg = NULL;
                c->group = &g;
                c->phase = 0;
                c->resp = NULL;
                c->resp_len = 0;
                c->aio = NULL;
                c->rc = -EIO;
                if (nng_ctx_open(&c->ctx, c->sock) != 0)
                        continue;
                if (nng_aio_alloc(&c->aio, call_step, c) != 0 || nng_msg_alloc(&msg, c->len) != 0) {
                        nng_ctx_close(c->ctx);
                        nng_aio_free(c->aio);
                        c->aio = NULL;
                        c->rc = -ENOMEM;
                        continue;
                }
                memcpy(nng_msg_body(msg), c->req, c->len);
                nng_aio_set_msg(c->aio, msg);
                nng_aio_set_timeout(c->aio, timeout_ms);
                pthread_mutex_lock(&g.lock);
                g.pending++;
                pthread_mutex_unlock(&g.lock);
                nng_ctx_send(c->ctx, c->aio);
        }
        pthread_mutex_lock(&g.lock);
        wait_calls(&g, calls, n, stop, each, arg);
        pthread_mutex_unlock(&g.lock);
        for (size_t i = 0; i < n; i++) {
                if (!calls[i].aio)
                        continue;
                nng_aio_free(calls[i].aio);
                nng_ctx_close(calls[i].ctx);
                calls[i].aio = NULL;
        }
        pthread_cond_destroy(&g.done);
        pthread_mutex_destroy(&g.lock);
        free(g.ended);
        return 0;
}

static void *worker_main(void *p)
{
        struct worker *w = p;
        nng_msg *msg;

        for (;;) {
                uint8_t *resp = NULL;
                size_t resp_len = 0;
                int rv;

                atomic_fetch_add(&w->srv->act.idle, 1);
                rv = ctx_recv(w->ctx, &msg, -1);
                if (rv == 0)
                        atomic_fetch_add(&w->srv->act.received, 1);
                atomic_fetch_sub(&w->srv->act.idle, 1);
                if (rv == NNG_ECLOSED)
                        break;
                if (rv)
                        continue;
                /* The guard's ping comes back as it is, past the handler. */
                if (transport_guard_is_ping(nng_msg_body(msg), nng_msg_len(msg))) {
                        if (ctx_send(w->ctx, msg, 5000) != 0)
                                nng_msg_free(msg);
                        continue;
                }
                current_pipe = nng_msg_get_pipe(msg);
                rv = w->srv->handler(w->srv->arg, nng_msg_body(msg), nng_msg_len(msg), &resp, &resp_len);
                current_pipe = (nng_pipe)NNG_PIPE_INITIALIZER;
                if (rv >= 0 && resp) {
                        nng_msg_clear(msg);
                        if (nng_msg_append(msg, resp, resp_len) == 0 && ctx_send(w->ctx, msg, 5000) == 0)
                                msg = NULL;
                }
                free(resp);
                if (msg)
                        nng_msg_free(msg);
        }
        return NULL;
}

int transport_request_peer(long long *ret_uid, long long *ret_pid)
{
        uint64_t uid, pid;

        /* The kernel's credentials of an ipc:// peer (SO_PEERCRED); a TCP peer has none. */
        if (nng_pipe_id(current_pipe) <= 0 || nng_pipe_get_uint64(current_pipe, NNG_OPT_IPC_PEER_UID, &uid) != 0)
                return -ENOENT;
        *ret_uid = (long long)uid;
        *ret_pid = nng_pipe_get_uint64(current_pipe, NNG_OPT_IPC_PEER_PID, &pid) == 0 ? (long long)pid : -1;
        return 0;
}

int transport_serve(nng_socket s, unsigned n_workers, transport_handler h, void *arg,
                    struct transport_server **ret, lserr *err)
{
        struct transport_server *srv;
        int r = 0;

        if (n_workers == 0 || n_workers > 64)
                return lserr_set(err, -EINVAL, "server: %u workers out of range (1..64)", n_workers);
        srv = calloc(1, sizeof(*srv));
        if (!srv)
                return -ENOMEM;
        srv->workers = calloc(n_workers, sizeof(*srv->workers));
        if (!srv->workers) {
                free(srv);
                return -ENOMEM;
        }
        srv->sock = s;
        srv->handler = h;
        srv->arg = arg;
        srv->n = n_workers;
        for (unsigned i = 0; i < n_workers; i++) {
                struct worker *w = &srv->workers[i];
                int rv = nng_ctx_open(&w->ctx, s);
                w->srv = srv;
                if (rv) {
                        r = lserr_set(err, -EIO, "server: open context: %s", nng_strerror(rv));
                        break;
                }
                if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
                        nng_ctx_close(w->ctx);
                        r = lserr_set(err, -EAGAIN, "server: cannot start worker thread");
                        break;
                }
                w->started = 1;
        }
        if (r == 0)
                r = transport_guard_start(s, &srv->act, &srv->guard, err);
        if (r < 0) {
                /* The socket stays the caller's: close only our contexts. */
                for (unsigned i = 0; i < n_workers; i++)
                        if (srv->workers[i].started) {
                                nng_ctx_close(srv->workers[i].ctx);
                                pthread_join(srv->workers[i].thread, NULL);
                        }
                free(srv->workers);
                free(srv);
                return r;
        }
        *ret = srv;
        return 0;
}

struct transport_server *transport_server_stop(struct transport_server *srv)
{
        if (!srv)
                return NULL;
        srv->guard = transport_guard_stop(srv->guard);
        /* Contexts first, socket last: nng 1.5 can free the socket under a
         * worker still inside nng_ctx_send when the socket is closed first
         * (a panic in nni_ctx_rele), so no worker may be in nng by then. */
        for (unsigned i = 0; i < srv->n; i++)
                if (srv->workers[i].started) {
                        nng_ctx_close(srv->workers[i].ctx);
                        pthread_join(srv->workers[i].thread, NULL);
                }
        nng_close(srv->sock);
        free(srv->workers);
        free(srv);
        return NULL;
}
