/* transport: nng req/rep over tcp://, tls+tcp:// and ipc:// with a receive size
 * limit set before any byte is parsed, per-call deadlines, and a small pool of
 * worker threads so one long request does not block the others. */
#pragma once

#include <nng/nng.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "lserr.h"

#define TRANSPORT_MAX_DEFAULT (1024 * 1024)

/* TLS material (PEM files) for tls+tcp://. Server: cert + key (the key file
 * refused when group or other may read it). Client: ca and server_name, both
 * required: the peer's certificate must chain to ca and name server_name. */
struct transport_tls {
        const char *cert;
        const char *key;
        const char *ca;
        const char *server_name;
};

/* Rep socket listening on url. ipc_mode (e.g. 0660) applies to ipc:// only; 0
 * keeps nng's default. tls may be NULL except for tls+tcp://. */
int transport_listen(const char *url, size_t max_recv, int ipc_mode, const struct transport_tls *tls,
                     nng_socket *ret, lserr *err);

/* Req socket dialing url in the background (reconnects on its own). For
 * tls+tcp:// the peer is verified (tls->ca and tls->server_name); a peer that
 * fails it is never connected, so calls to it time out: transport_probe says why. */
int transport_dial(const char *url, size_t max_recv, const struct transport_tls *tls, nng_socket *ret,
                   lserr *err);

/* How many connections a dialed socket has now. nng connects and reconnects in
 * the background and a call to a peer it cannot reach only times out, so a
 * caller that must not start what it cannot finish (a cut's FREEZE) asks here
 * first. Lives as long as the socket: nng_close it before destroying this. */
struct transport_pipes {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int n;
};
void transport_pipes_init(struct transport_pipes *p);
void transport_pipes_destroy(struct transport_pipes *p);
/* 1 once p's socket has a connection, 0 when it has none at deadline_us
 * (fsutil_mono_us's clock). */
int transport_pipes_wait(struct transport_pipes *p, long long deadline_us);

/* transport_dial that keeps *pipes (initialised, the caller's) counting the
 * socket's connections from before its first one. */
int transport_dial_counted(const char *url, size_t max_recv, const struct transport_tls *tls,
                           struct transport_pipes *pipes, nng_socket *ret, lserr *err);

/* Connects once to url within timeout_ms, TLS handshake included, and hangs up.
 * 0 when the peer answered (and, for tls+tcp://, passed verification); -EACCES
 * when its certificate was refused; else why it could not be reached. */
int transport_probe(const char *url, const struct transport_tls *tls, int timeout_ms, lserr *err);

/* The host of a tcp:// or tls+tcp:// URL into ret (brackets of an IPv6
 * address taken off): the name a tls+tcp:// peer's certificate must carry when
 * nothing else names it. -EINVAL when url has no host and port, -ENAMETOOLONG
 * when the host does not fit ret_size; ret is then untouched. */
int transport_url_host(const char *url, char *ret, size_t ret_size);

/* 0 when path is a regular file that only its owner may read; else err says
 * what is wrong with it and how to fix it. */
int transport_tls_key_mode(const char *path, lserr *err);

/* One request and its reply within timeout_ms, on its own context so calls may
 * run in parallel on one socket. *ret is malloc'd, the caller's. Never resends:
 * a resent command must carry a fresh nonce, so resending is the caller's job. */
int transport_call(nng_socket s, const void *req, size_t len, int timeout_ms, uint8_t **ret, size_t *ret_len,
                   lserr *err);

/* One of several requests sent at once by transport_call_all. */
struct transport_call {
        nng_socket sock;
        const uint8_t *req;
        size_t len;
        /* results */
        int rc;          /* 0, LS_ETIMEDOUT, -ECONNRESET, -EIO */
        uint8_t *resp;   /* malloc'd, the caller's */
        size_t resp_len;
        long long done_us; /* Unix time (fsutil_now_us) it ended: a reply's clock is read against it */
        void *user;        /* the caller's, untouched (transport_call_all_each) */
        /* private */
        nng_ctx ctx;
        nng_aio *aio;
        int phase;
        void *group;
};

/* Sends every request at once with nng aio (no thread per call) and waits until
 * each has its reply or the shared deadline passed. Returns < 0 only when the
 * calls could not be started at all; each call has its own rc. */
int transport_call_all(struct transport_call *calls, size_t n, int timeout_ms);
/* The same, cut short once *stop is set: the calls still out end with an error
 * (a daemon that stops does not wait out a step's deadline). */
int transport_call_all_until(struct transport_call *calls, size_t n, int timeout_ms, const atomic_int *stop);
/* The same, with each(arg, call) run on the caller's thread for every call
 * that ended (in the order they end) while the others are still out: a
 * caller that checks each reply does it while it waits for the slowest. A
 * call that could not be started is not passed to each (its rc says why). */
typedef void (*transport_each_fn)(void *arg, struct transport_call *c);
int transport_call_all_each(struct transport_call *calls, size_t n, int timeout_ms, const atomic_int *stop,
                            transport_each_fn each, void *arg);

/* Handler for one request: fills *ret (malloc'd; the server frees it) or
 * returns < 0 to send nothing. Runs on a worker thread. */
typedef int (*transport_handler)(void *arg, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len);

struct transport_server;

/* Inside a handler, on its worker thread: the uid and pid (-1 when not given) of the
 * process that sent the request being handled, as the kernel reports them for an
 * ipc:// socket. -ENOENT for other transports; the outputs are then untouched. */
int transport_request_peer(long long *ret_uid, long long *ret_pid);

/* Starts n_workers threads serving s. s stays the caller's until stop. */
int transport_serve(nng_socket s, unsigned n_workers, transport_handler h, void *arg,
                    struct transport_server **ret, lserr *err);

/* Closes the socket, waits for the workers and frees the server. */
struct transport_server *transport_server_stop(struct transport_server *srv);
