/* lab-delay: a TCP proxy that hands on each chunk it reads a set time (with
 * jitter) later, in order: the lab's slow link, since this kernel has no netem. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "lserr.h"

#define CHUNK_MAX (64 * 1024)
/* Past this many queued bytes a direction stops reading: TCP's own flow control
 * then slows the sender instead of our memory growing. */
#define QUEUE_MAX (4u << 20)
#define MAX_PAIRS 256

struct chunk {
        struct chunk *next;
        uint64_t read_us, due_us;
        size_t len, off;
        char data[];
};

/* One direction of a pair: reads pair->fd[k], writes pair->fd[1 - k]. */
struct dir {
        struct chunk *head, *tail;
        size_t bytes;
        uint64_t last_due_us;
        bool eof;     /* the source said end of file */
        bool shut;    /* ...and all was delivered, the destination's write side shut */
        bool blocked; /* the destination's buffer is full: wait for POLLOUT */
};

struct pair {
        int fd[2]; /* 0: the accepted client, 1: our connection upstream */
        bool connecting;
        bool dead;
        unsigned id;
        struct dir d[2]; /* 0: client to upstream, 1: upstream to client */
};

struct stats {
        uint64_t chunks, bytes, delay_sum_us, delay_max_us, late_max_us;
};

static const char *const dir_names[] = { "client->upstream", "upstream->client" };
static struct pair *pairs[MAX_PAIRS];
static int n_pairs;
static unsigned next_id = 1;
static uint64_t n_accepted;
static struct stats stats[2];
static struct sockaddr_storage to_addr;
static socklen_t to_len;
static const char *to_text;
static uint64_t delay_us = 300000, jitter_us = 100000;
static uint64_t rng;
static volatile sig_atomic_t stop;

static uint64_t now_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void on_signal(int sig)
{
        stop = 1;
}

/* splitmix64: small, and the same seed gives the same delays. */
static uint64_t rng_next(void)
{
        uint64_t z = (rng += 0x9e3779b97f4a7c15ull);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

/* delay ± uniform(jitter); jitter <= delay was checked, so never negative. */
static uint64_t pick_delay_us(void)
{
        if (jitter_us == 0)
                return delay_us;
        return delay_us - jitter_us + rng_next() % (2 * jitter_us + 1);
}

static void pair_free(struct pair *p)
{
        for (int k = 0; k < 2; k++) {
                struct chunk *c = p->d[k].head;
                while (c) {
                        struct chunk *next = c->next;
                        free(c);
                        c = next;
                }
                if (p->fd[k] >= 0)
                        close(p->fd[k]);
        }
        free(p);
}

static void pair_kill(struct pair *p, const char *step, int err)
{
        if (!p->dead)
                fprintf(stderr, "lab-delay: connection %u: %s: %s\n", p->id, step, strerror(err));
        p->dead = true;
}

static void set_nodelay(int fd)
{
        int one = 1;

        /* Nagle would add its own wait on top of ours. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void accept_one(int lfd)
{
        struct pair *p;
        int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                        fprintf(stderr, "lab-delay: accept: %s\n", strerror(errno));
                return;
        }
        p = calloc(1, sizeof(*p));
        if (!p) {
                fprintf(stderr, "lab-delay: accept: out of memory\n");
                close(cfd);
                return;
        }
        p->id = next_id++;
        p->fd[0] = cfd;
        p->fd[1] = socket(to_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        pairs[n_pairs++] = p;
        n_accepted++;
        if (p->fd[1] < 0) {
                pair_kill(p, "socket", errno);
                return;
        }
        set_nodelay(cfd);
        set_nodelay(p->fd[1]);
        if (connect(p->fd[1], (struct sockaddr *)&to_addr, to_len) == 0)
                return;
        if (errno == EINPROGRESS)
                p->connecting = true;
        else
                pair_kill(p, "connect upstream", errno);
}

static void connect_done(struct pair *p)
{
        int err = 0;
        socklen_t len = sizeof(err);

        if (getsockopt(p->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        if (err) {
                pair_kill(p, "connect upstream", err);
                return;
        }
        p->connecting = false;
}

/* Reads one chunk from side k into its queue, due a delay after now and never
 * before the chunk ahead of it. */
static void dir_read(struct pair *p, int k)
{
        static char buf[CHUNK_MAX];
        struct dir *d = &p->d[k];
        struct chunk *c;
        ssize_t n = recv(p->fd[k], buf, sizeof(buf), 0);
        uint64_t t = now_us(), due;

        if (n < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        pair_kill(p, k ? "read upstream" : "read client", errno);
                return;
        }
        if (n == 0) {
                d->eof = true;
                return;
        }
        c = malloc(sizeof(*c) + (size_t)n);
        if (!c) {
                pair_kill(p, "queue", ENOMEM);
                return;
        }
        due = t + pick_delay_us();
        if (due < d->last_due_us)
                due = d->last_due_us;
        *c = (struct chunk){ .read_us = t, .due_us = due, .len = (size_t)n };
        memcpy(c->data, buf, (size_t)n);
        if (d->tail)
                d->tail->next = c;
        else
                d->head = c;
        d->tail = c;
        d->bytes += (size_t)n;
        d->last_due_us = due;
}

static void chunk_done(struct dir *d, int k, uint64_t t)
{
        struct chunk *c = d->head;
        struct stats *s = &stats[k];
        uint64_t applied = c->due_us - c->read_us;

        s->chunks++;
        s->bytes += c->len;
        s->delay_sum_us += applied;
        if (applied > s->delay_max_us)
                s->delay_max_us = applied;
        if (t > c->due_us && t - c->due_us > s->late_max_us)
                s->late_max_us = t - c->due_us;
        d->bytes -= c->len;
        d->head = c->next;
        if (!d->head)
                d->tail = NULL;
        free(c);
}

/* Writes what is due in direction k; returns how long until the next chunk is
 * due (UINT64_MAX: nothing to wait for). */
static uint64_t dir_flush(struct pair *p, int k, uint64_t t)
{
        struct dir *d = &p->d[k];
        int dst = p->fd[1 - k];

        if (p->dead || p->connecting || d->blocked)
                return UINT64_MAX;
        while (d->head && d->head->due_us <= t) {
                struct chunk *c = d->head;
                ssize_t n = send(dst, c->data + c->off, c->len - c->off, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                d->blocked = true;
                        else
                                pair_kill(p, k ? "write client" : "write upstream", errno);
                        return UINT64_MAX;
                }
                c->off += (size_t)n;
                if (c->off == c->len)
                        chunk_done(d, k, t);
        }
        if (d->head)
                return d->head->due_us - t;
        if (d->eof && !d->shut) {
                /* Half-close passes through once everything before it has. */
                shutdown(dst, SHUT_WR);
                d->shut = true;
        }
        return UINT64_MAX;
}

/* Flushes every pair, frees the finished ones; returns the next wake-up (us from t). */
static uint64_t flush_all(uint64_t t)
{
        uint64_t wait = UINT64_MAX;

        for (int i = 0; i < n_pairs;) {
                struct pair *p = pairs[i];
                for (int k = 0; k < 2; k++) {
                        uint64_t w = dir_flush(p, k, t);
                        if (w < wait)
                                wait = w;
                }
                if (p->dead || (p->d[0].shut && p->d[1].shut)) {
                        pair_free(p);
                        pairs[i] = pairs[--n_pairs];
                        continue;
                }
                i++;
        }
        return wait;
}

static short pair_events(const struct pair *p, int side)
{
        const struct dir *in = &p->d[side], *out = &p->d[1 - side];
        short ev = 0;

        if (side == 1 && p->connecting)
                return POLLOUT;
        if (!in->eof && in->bytes < QUEUE_MAX && !(side == 0 && p->connecting))
                ev |= POLLIN;
        if (out->blocked)
                ev |= POLLOUT;
        return ev;
}

static void pair_events_done(struct pair *p, int side, short rev)
{
        if (p->dead)
                return;
        if (side == 1 && p->connecting) {
                if (rev & (POLLOUT | POLLERR | POLLHUP))
                        connect_done(p);
                return;
        }
        if (rev & (POLLOUT | POLLERR | POLLHUP))
                p->d[1 - side].blocked = false; /* the next flush finds out */
        if ((rev & (POLLIN | POLLERR | POLLHUP)) && !p->d[side].eof && p->d[side].bytes < QUEUE_MAX)
                dir_read(p, side);
}

static int loop(int lfd, const sigset_t *unblocked)
{
        static struct pollfd pfds[1 + 2 * MAX_PAIRS];
        static struct pair *owner[1 + 2 * MAX_PAIRS];
        static int side[1 + 2 * MAX_PAIRS];

        while (!stop) {
                uint64_t wait = flush_all(now_us());
                struct timespec ts = { .tv_sec = (time_t)(wait / 1000000u),
                                       .tv_nsec = (long)(wait % 1000000u) * 1000L };
                nfds_t n = 0;

                pfds[n++] = (struct pollfd){ .fd = lfd, .events = n_pairs < MAX_PAIRS ? POLLIN : 0 };
                for (int i = 0; i < n_pairs; i++)
                        for (int s = 0; s < 2; s++) {
                                short ev = pair_events(pairs[i], s);
                                if (!ev)
                                        continue;
                                owner[n] = pairs[i];
                                side[n] = s;
                                pfds[n++] = (struct pollfd){ .fd = pairs[i]->fd[s], .events = ev };
                        }
                if (ppoll(pfds, n, wait == UINT64_MAX ? NULL : &ts, unblocked) < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "lab-delay: poll: %s\n", strerror(errno));
                        return -errno;
                }
                for (nfds_t j = 1; j < n; j++)
                        if (pfds[j].revents)
                                pair_events_done(owner[j], side[j], pfds[j].revents);
                if (pfds[0].revents & POLLIN)
                        while (n_pairs < MAX_PAIRS && !stop) {
                                int before = n_pairs;
                                accept_one(lfd);
                                if (n_pairs == before)
                                        break;
                        }
        }
        return 0;
}

/* ADDR:PORT with a numeric address; [v6]:PORT for IPv6. */
static int parse_addr(const char *opt, const char *s, struct sockaddr_storage *ret, socklen_t *ret_len)
{
        char host[INET6_ADDRSTRLEN + 2];
        const char *colon = strrchr(s, ':');
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
        struct addrinfo *ai;
        size_t hl;
        int r;

        if (!colon || colon == s || colon[1] == '\0' || (size_t)(colon - s) >= sizeof(host))
                goto bad;
        hl = (size_t)(colon - s);
        if (s[0] == '[' && s[hl - 1] == ']') {
                s++;
                hl -= 2;
        }
        memcpy(host, s, hl);
        host[hl] = '\0';
        r = getaddrinfo(host, colon + 1, &hints, &ai);
        if (r != 0)
                goto bad;
        memcpy(ret, ai->ai_addr, ai->ai_addrlen);
        *ret_len = ai->ai_addrlen;
        freeaddrinfo(ai);
        return 0;
bad:
        fprintf(stderr, "lab-delay: %s: '%s' is not ADDR:PORT (numeric address, port 0-65535)\n", opt,
                s);
        return -EINVAL;
}

static int parse_u64(const char *opt, const char *s, uint64_t max, uint64_t *ret)
{
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-' || v > max) {
                fprintf(stderr, "lab-delay: %s: '%s' is not a number from 0 to %" PRIu64 "\n", opt, s, max);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

/* The port, whole or not at all, for a test to read (fsutil_write_atomic). */
static int write_port_file(const char *path, unsigned port)
{
        char buf[16];
        lserr err = {0};
        int n = snprintf(buf, sizeof(buf), "%u\n", port);

        return fsutil_write_atomic(path, buf, (size_t)n, 0644, 0, &err);
}

static int listen_on(const struct sockaddr_storage *a, socklen_t len, unsigned *ret_port)
{
        struct sockaddr_storage bound;
        socklen_t bl = sizeof(bound);
        int one = 1;
        int fd = socket(a->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -errno;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (const struct sockaddr *)a, len) < 0 || listen(fd, 64) < 0 ||
            getsockname(fd, (struct sockaddr *)&bound, &bl) < 0) {
                int err = errno;
                close(fd);
                return -err;
        }
        *ret_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                      : ((struct sockaddr_in *)&bound)->sin_port);
        return fd;
}

static void print_stats(void)
{
        printf("lab-delay: %" PRIu64 " connections\n", n_accepted);
        for (int k = 0; k < 2; k++) {
                const struct stats *s = &stats[k];
                double mean = s->chunks ? (double)s->delay_sum_us / (double)s->chunks / 1000.0 : 0.0;
                printf("lab-delay: %s: %" PRIu64 " chunks, %" PRIu64
                       " bytes, delay mean %.1f ms, max %.1f ms, delivered late by up to %.1f ms\n",
                       dir_names[k], s->chunks, s->bytes, mean, (double)s->delay_max_us / 1000.0,
                       (double)s->late_max_us / 1000.0);
        }
        fflush(stdout);
}

static void usage(FILE *f)
{
        fprintf(f, "usage: lab-delay --listen ADDR:PORT --to ADDR:PORT [--delay-ms 300] [--jitter-ms 100]\n"
                   "                 [--seed S] [--port-file F]\n"
                   "Passes each connection on to --to; each chunk read in either direction is\n"
                   "sent on delay +- jitter ms later, in order. PORT 0 picks a free port, written\n"
                   "to --port-file. SIGTERM or SIGINT ends it, with counts and delays on stdout.\n");
}

struct opts {
        const char *listen, *to, *port_file;
        uint64_t seed;
        bool seeded;
};

static int parse_args(int argc, char **argv, struct opts *o)
{
        static const struct option lopts[] = {
                { "listen", required_argument, NULL, 'l' }, { "to", required_argument, NULL, 't' },
                { "delay-ms", required_argument, NULL, 'd' }, { "jitter-ms", required_argument, NULL, 'j' },
                { "seed", required_argument, NULL, 's' }, { "port-file", required_argument, NULL, 'p' },
                { "help", no_argument, NULL, 'h' }, { 0 },
        };
        uint64_t v;
        int c;

        while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
                switch (c) {
                case 'l': o->listen = optarg; break;
                case 't': o->to = optarg; break;
                case 'p': o->port_file = optarg; break;
                case 'd':
                case 'j':
                        if (parse_u64(c == 'd' ? "--delay-ms" : "--jitter-ms", optarg, 600000, &v) < 0)
                                return -EINVAL;
                        *(c == 'd' ? &delay_us : &jitter_us) = v * 1000u;
                        break;
                case 's':
                        if (parse_u64("--seed", optarg, UINT64_MAX, &o->seed) < 0)
                                return -EINVAL;
                        o->seeded = true;
                        break;
                case 'h': usage(stdout); exit(0);
                default: usage(stderr); return -EINVAL;
                }
        }
        if (!o->listen || !o->to || optind != argc) {
                usage(stderr);
                return -EINVAL;
        }
        if (jitter_us > delay_us) {
                fprintf(stderr, "lab-delay: --jitter-ms: %" PRIu64 " is more than --delay-ms %" PRIu64 "\n",
                        jitter_us / 1000u, delay_us / 1000u);
                return -EINVAL;
        }
        return 0;
}

int main(int argc, char **argv)
{
        struct opts o = { 0 };
        struct sockaddr_storage la;
        socklen_t ll;
        sigset_t block, unblocked;
        unsigned port = 0;
        int lfd, r;

        if (parse_args(argc, argv, &o) < 0 || parse_addr("--listen", o.listen, &la, &ll) < 0 ||
            parse_addr("--to", o.to, &to_addr, &to_len) < 0)
                return 2;
        to_text = o.to;
        rng = o.seeded ? o.seed : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        lfd = listen_on(&la, ll, &port);
        if (lfd < 0) {
                fprintf(stderr, "lab-delay: listen on '%s': %s\n", o.listen, strerror(-lfd));
                return 1;
        }
        if (o.port_file && (r = write_port_file(o.port_file, port)) < 0) {
                fprintf(stderr, "lab-delay: port file '%s': %s\n", o.port_file, strerror(-r));
                return 1;
        }
        /* Blocked but while in ppoll: a signal cannot slip in between the check and the wait. */
        sigemptyset(&block);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGINT);
        sigprocmask(SIG_BLOCK, &block, &unblocked);
        struct sigaction sa = { .sa_handler = on_signal };
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        printf("lab-delay: listening on port %u, to %s, delay %" PRIu64 " ms, jitter %" PRIu64
               " ms, seed %" PRIu64 "\n",
               port, to_text, delay_us / 1000u, jitter_us / 1000u, rng);
        fflush(stdout);
        r = loop(lfd, &unblocked);
        print_stats();
        for (int i = 0; i < n_pairs; i++)
                pair_free(pairs[i]);
        close(lfd);
        return r < 0 ? 1 : 0;
}
