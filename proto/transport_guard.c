/* transport_guard: keeps an ipc:// server listening. nng 1.5.2 (Debian 12):
 * once a client hangs up before the SP handshake (nng issue 1518, fixed in
 * 1.6), an ipc:// listener still shakes hands but delivers no request any
 * more: one connect-and-close made lockstepd's control socket deaf. A new
 * listener on the same socket serves again. So a guard pings through the
 * listener every GUARD_MS (the workers answer the ping themselves, never the
 * handler); two unanswered in a row while a worker sat idle, and the listener
 * is made again. Each ping runs on a thread of its own that the guard does not
 * wait for beyond its answer: nng 1.5.2's nng_close of a REQ socket can hang
 * for ever (nng issue 648; once in ~5,000 pings under 1,000 agents' load),
 * and a guard stuck in it kept lockstepd from stopping on SIGTERM. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "failpoint.h"
#include "fsutil.h"
#include "log.h"
#include "transport_priv.h"

struct transport_guard {
        nng_socket sock;
        const struct transport_activity *act; /* the server's */
        int slot;                             /* in ipc_listeners */
        pthread_t thread;
        int stopping;
        unsigned busy;  /* pings in a row that waited behind busy workers */
        unsigned stuck; /* rounds in a row without a ping (STUCK_MAX closing) */
        pthread_mutex_t lock;
        pthread_cond_t wake;
};

#define GUARD_MS 1000
/* Ping threads still closing their socket (stuck in nng_close, or about to
 * be): at this many the guard pings no more until one ends, so a hang that
 * repeats costs a few threads, not one a second. */
#define STUCK_MAX 4
static atomic_int closing;
static const uint8_t ping_magic[16] = "\0lockstep-ping\0";
static struct {
        int used;
        uint32_t sock_id;
        nng_listener l;
        int mode;
        char url[256];
} ipc_listeners[TRANSPORT_GUARD_MAX];
static pthread_mutex_t ipc_listeners_lock = PTHREAD_MUTEX_INITIALIZER;

void transport_guard_note(nng_socket s, nng_listener l, const char *url, int ipc_mode)
{
        if (strlen(url) >= sizeof(ipc_listeners[0].url))
                return;
        pthread_mutex_lock(&ipc_listeners_lock);
        for (size_t i = 0; i < TRANSPORT_GUARD_MAX; i++)
                if (!ipc_listeners[i].used) {
                        ipc_listeners[i].used = 1;
                        ipc_listeners[i].sock_id = (uint32_t)nng_socket_id(s);
                        ipc_listeners[i].l = l;
                        ipc_listeners[i].mode = ipc_mode;
                        snprintf(ipc_listeners[i].url, sizeof(ipc_listeners[i].url), "%s", url);
                        break;
                }
        pthread_mutex_unlock(&ipc_listeners_lock);
}

bool transport_guard_is_ping(const void *body, size_t len)
{
        return len == sizeof(ping_magic) && memcmp(body, ping_magic, len) == 0;
}

/* One ping through url, its answer handed over before the socket is closed. */
struct ping_call {
        pthread_mutex_t lock;
        pthread_cond_t done_cv;
        int done, rv;
        int refs; /* the guard's and the ping thread's */
        char url[sizeof(ipc_listeners[0].url)];
};

static void ping_call_unref(struct ping_call *c)
{
        int last;

        pthread_mutex_lock(&c->lock);
        last = --c->refs == 0;
        pthread_mutex_unlock(&c->lock);
        if (!last)
                return;
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->done_cv);
        free(c);
}

static void *ping_main(void *p)
{
        struct ping_call *c = p;
        nng_socket r;
        void *buf = NULL;
        size_t n = 0;
        int rv = nng_req0_open(&r), opened = rv == 0;

        if (!rv)
                rv = nng_socket_set_ms(r, NNG_OPT_RECVTIMEO, GUARD_MS);
        if (!rv)
                rv = nng_socket_set_ms(r, NNG_OPT_SENDTIMEO, GUARD_MS);
        if (!rv)
                rv = nng_dial(r, c->url, NULL, 0);
        if (!rv)
                rv = nng_send(r, (void *)ping_magic, sizeof(ping_magic), 0);
        if (!rv)
                rv = nng_recv(r, &buf, &n, NNG_FLAG_ALLOC);
        if (!rv && (n != sizeof(ping_magic) || memcmp(buf, ping_magic, n) != 0))
                rv = NNG_EPROTO;
        if (buf)
                nng_free(buf, n);
        atomic_fetch_add(&closing, 1);
        pthread_mutex_lock(&c->lock);
        c->rv = rv;
        c->done = 1;
        pthread_cond_signal(&c->done_cv);
        pthread_mutex_unlock(&c->lock);
        ping_call_unref(c);
        if (opened) {
                /* Where nng_close hangs, the tests stop too. */
                failpoint_stop("guard-ping-close");
                nng_close(r);
        }
        atomic_fetch_sub(&closing, 1);
        return NULL;
}

/* One ping through url: 0 when it came back within GUARD_MS; -EAGAIN when
 * none was sent (pings stuck in nng_close, or no thread for one). */
static int ping(const char *url)
{
        struct ping_call *c;
        struct timespec ts;
        pthread_attr_t attr;
        pthread_t t;
        int rv;

        if (atomic_load(&closing) >= STUCK_MAX || !(c = calloc(1, sizeof(*c))))
                return -EAGAIN;
        pthread_mutex_init(&c->lock, NULL);
        fsutil_cond_init_mono(&c->done_cv);
        snprintf(c->url, sizeof(c->url), "%s", url);
        c->refs = 2;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        rv = pthread_create(&t, &attr, ping_main, c);
        pthread_attr_destroy(&attr);
        if (rv != 0) {
                c->refs = 1;
                ping_call_unref(c);
                return -EAGAIN;
        }
        /* Dial, send and receive each give up after GUARD_MS. */
        ts = fsutil_mono_after(4 * GUARD_MS * 1000LL);
        pthread_mutex_lock(&c->lock);
        while (!c->done && pthread_cond_timedwait(&c->done_cv, &c->lock, &ts) == 0)
                ;
        rv = c->done ? c->rv : NNG_ETIMEDOUT;
        pthread_mutex_unlock(&c->lock);
        ping_call_unref(c);
        return rv;
}

/* Closes the guarded listener and starts a new one on the same socket. */
static void relisten(struct transport_guard *g)
{
        nng_listener l;
        lserr e = {0};

        pthread_mutex_lock(&ipc_listeners_lock);
        nng_listener_close(ipc_listeners[g->slot].l);
        if (transport_start_listener(g->sock, ipc_listeners[g->slot].url, ipc_listeners[g->slot].mode, NULL,
                           &l, &e) == 0) {
                ipc_listeners[g->slot].l = l;
                log_warn("%s: requests stopped coming through (nng 1.5 after a client hung up before its "
                         "handshake): listening again",
                         ipc_listeners[g->slot].url);
        } else {
                log_err("%s: requests stopped coming through, and listening again failed: %s",
                        ipc_listeners[g->slot].url, e.msg);
        }
        pthread_mutex_unlock(&ipc_listeners_lock);
}

/* The count of misses after one more ping. All workers busy (long polls,
 * slow handlers) keeps a ping waiting in the queue: that proves nothing, so
 * only a miss while a worker waited and took nothing counts. */
static unsigned ping_missed(struct transport_guard *g, const char *url, unsigned missed)
{
        uint_fast64_t before = atomic_load(&g->act->received);
        int idle = atomic_load(&g->act->idle), rv = ping(url);

        if (rv == 0) {
                g->busy = 0;
                g->stuck = 0;
                return 0;
        }
        if (rv == -EAGAIN) {
                /* No ping, no verdict. Said once a streak. */
                if (!g->stuck++)
                        log_warn("%s: %d of the listener guard's pings are stuck closing their socket (nng_close; "
                                 "nng issue 648): no more pings until one ends",
                                 url, atomic_load(&closing));
                return missed;
        }
        if (idle > 0 && atomic_load(&g->act->received) == before)
                return missed + 1;
        /* Said once a streak: an operator sees the workers saturated. */
        if (++g->busy == 2)
                log_info("%s: every worker busy for %d s (requests wait their turn; the listener is fine)", url,
                         2 * GUARD_MS / 1000);
        return missed;
}

static void *guard_main(void *p)
{
        struct transport_guard *g = p;
        char url[sizeof(ipc_listeners[0].url)];
        unsigned missed = 0;

        pthread_mutex_lock(&ipc_listeners_lock);
        snprintf(url, sizeof(url), "%s", ipc_listeners[g->slot].url);
        pthread_mutex_unlock(&ipc_listeners_lock);
        pthread_mutex_lock(&g->lock);
        for (;;) {
                struct timespec ts = fsutil_mono_after(GUARD_MS * 1000LL);

                while (!g->stopping && pthread_cond_timedwait(&g->wake, &g->lock, &ts) == 0)
                        ;
                if (g->stopping)
                        break;
                pthread_mutex_unlock(&g->lock);
                missed = ping_missed(g, url, missed);
                pthread_mutex_lock(&g->lock);
                if (missed >= 2 && !g->stopping) {
                        relisten(g);
                        missed = 0;
                }
        }
        pthread_mutex_unlock(&g->lock);
        return NULL;
}

int transport_guard_start(nng_socket s, const struct transport_activity *act, struct transport_guard **ret,
                          lserr *err)
{
        struct transport_guard *g;
        int slot = -1;

        *ret = NULL;
        pthread_mutex_lock(&ipc_listeners_lock);
        for (int i = 0; i < TRANSPORT_GUARD_MAX; i++)
                if (ipc_listeners[i].used && ipc_listeners[i].sock_id == (uint32_t)nng_socket_id(s))
                        slot = i;
        pthread_mutex_unlock(&ipc_listeners_lock);
        if (slot < 0)
                return 0;
        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        g->sock = s;
        g->act = act;
        g->slot = slot;
        pthread_mutex_init(&g->lock, NULL);
        fsutil_cond_init_mono(&g->wake);
        if (pthread_create(&g->thread, NULL, guard_main, g) != 0) {
                pthread_mutex_destroy(&g->lock);
                pthread_cond_destroy(&g->wake);
                free(g);
                return lserr_set(err, -EAGAIN, "server: cannot start the listener's guard thread");
        }
        *ret = g;
        return 0;
}

struct transport_guard *transport_guard_stop(struct transport_guard *g)
{
        if (!g)
                return NULL;
        pthread_mutex_lock(&g->lock);
        g->stopping = 1;
        pthread_cond_broadcast(&g->wake);
        pthread_mutex_unlock(&g->lock);
        pthread_join(g->thread, NULL);
        pthread_mutex_destroy(&g->lock);
        pthread_cond_destroy(&g->wake);
        pthread_mutex_lock(&ipc_listeners_lock);
        ipc_listeners[g->slot].used = 0;
        pthread_mutex_unlock(&ipc_listeners_lock);
        free(g);
        return NULL;
}
