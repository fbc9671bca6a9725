/* lab-echo: the labtools.delay test's two ends: an echo server, and a probe that
 * times round trips and checks that a stream comes back whole and in order. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 16

static uint64_t now_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Byte i of connection c's stream: not periodic in any chunk size the proxy uses. */
static unsigned char pattern(unsigned c, uint64_t i)
{
        return (unsigned char)((i * 131u + (i >> 9) * 7u + c * 29u) & 0xffu);
}

static int write_all(int fd, const void *buf, size_t len)
{
        const char *p = buf;

        while (len) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -errno;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static void *echo_conn(void *arg)
{
        int fd = (int)(intptr_t)arg;
        char buf[16384];
        ssize_t n;

        while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
                if (write_all(fd, buf, (size_t)n) < 0)
                        break;
        /* The client's half-close goes back as ours, after all it sent. */
        shutdown(fd, SHUT_WR);
        close(fd);
        return NULL;
}

static int serve(const char *port_file)
{
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t al = sizeof(a);
        char tmp[4096];
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        FILE *f;

        if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 16) < 0 ||
            getsockname(lfd, (struct sockaddr *)&a, &al) < 0) {
                perror("lab-echo: serve: listen");
                return 1;
        }
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        f = fopen(tmp, "w");
        if (!f || fprintf(f, "%u\n", ntohs(a.sin_port)) < 0 || fclose(f) != 0 || rename(tmp, port_file) < 0) {
                perror("lab-echo: serve: port file");
                return 1;
        }
        for (;;) {
                pthread_t t;
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                if (pthread_create(&t, NULL, echo_conn, (void *)(intptr_t)fd) != 0)
                        close(fd);
                else
                        pthread_detach(t);
        }
}

static int dial(unsigned port)
{
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int one = 1;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
                perror("lab-echo: connect");
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return fd;
}

/* Reads exactly len bytes, or fails (end of file early, error, or timeout_ms idle). */
static int read_exact(int fd, char *buf, size_t len, int timeout_ms)
{
        while (len) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, timeout_ms) <= 0)
                        return -ETIMEDOUT;
                ssize_t n = recv(fd, buf, len, 0);
                if (n == 0)
                        return -EPIPE;
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Round trips of a small message; each must take at least min_ms. */
static int probe_rtt(unsigned port, int rounds, uint64_t min_ms)
{
        uint64_t lo = UINT64_MAX, hi = 0;
        int fd = dial(port);

        if (fd < 0)
                return 1;
        for (int r = 0; r < rounds; r++) {
                char msg[64], back[64];
                int len = snprintf(msg, sizeof(msg), "round %d of %d\n", r, rounds);
                uint64_t t0 = now_us();
                if (write_all(fd, msg, (size_t)len) < 0 || read_exact(fd, back, (size_t)len, 10000) < 0 ||
                    memcmp(msg, back, (size_t)len) != 0) {
                        fprintf(stderr, "lab-echo: probe: round %d: no intact echo\n", r);
                        close(fd);
                        return 1;
                }
                uint64_t rtt = now_us() - t0;
                lo = rtt < lo ? rtt : lo;
                hi = rtt > hi ? rtt : hi;
        }
        close(fd);
        printf("rtt: %d rounds, min %.1f ms, max %.1f ms\n", rounds, (double)lo / 1000.0, (double)hi / 1000.0);
        if (lo < min_ms * 1000u) {
                fprintf(stderr, "lab-echo: probe: a round trip took %.1f ms, less than %" PRIu64 " ms\n",
                        (double)lo / 1000.0, min_ms);
                return 1;
        }
        return 0;
}

struct stream {
        unsigned id;
        int fd;
        uint64_t bytes;
        int result; /* 0: all came back in order, then end of file */
};

/* Sends the pattern in uneven pieces, then half-closes. */
static void *stream_writer(void *arg)
{
        struct stream *s = arg;
        static const size_t pieces[] = { 1, 700, 65536, 3, 9000, 131072, 17 };
        char buf[131072];
        uint64_t off = 0;

        for (unsigned k = 0; off < s->bytes; k++) {
                size_t n = pieces[k % (sizeof(pieces) / sizeof(pieces[0]))];
                if (n > s->bytes - off)
                        n = (size_t)(s->bytes - off);
                for (size_t i = 0; i < n; i++)
                        buf[i] = (char)pattern(s->id, off + i);
                if (write_all(s->fd, buf, n) < 0)
                        return NULL;
                off += n;
        }
        shutdown(s->fd, SHUT_WR);
        return NULL;
}

static void *stream_reader(void *arg)
{
        struct stream *s = arg;
        char buf[65536];
        uint64_t off = 0;
        pthread_t w;

        s->result = 1;
        if (pthread_create(&w, NULL, stream_writer, s) != 0)
                return NULL;
        for (;;) {
                struct pollfd p = { .fd = s->fd, .events = POLLIN };
                ssize_t n = poll(&p, 1, 30000) > 0 ? recv(s->fd, buf, sizeof(buf), 0) : -1;
                if (n <= 0) {
                        s->result = n == 0 && off == s->bytes ? 0 : 1;
                        break;
                }
                for (ssize_t i = 0; i < n; i++)
                        if ((unsigned char)buf[i] != pattern(s->id, off + (uint64_t)i)) {
                                fprintf(stderr, "lab-echo: stream %u: byte %" PRIu64 " differs\n", s->id,
                                        off + (uint64_t)i);
                                goto out;
                        }
                off += (uint64_t)n;
        }
        if (s->result)
                fprintf(stderr, "lab-echo: stream %u: %" PRIu64 " of %" PRIu64 " bytes, then %s\n", s->id, off,
                        s->bytes, off == s->bytes ? "no end of file" : "the end");
out:
        if (s->result)
                shutdown(s->fd, SHUT_RDWR); /* a writer stuck on a full buffer gets out */
        pthread_join(w, NULL);
        return NULL;
}

/* conns connections at once, each a stream of bytes sent whole and half-closed:
 * each must come back intact, in order, followed by end of file. */
static int probe_streams(unsigned port, unsigned conns, uint64_t bytes)
{
        struct stream s[MAX_CONNS];
        pthread_t t[MAX_CONNS];
        int bad = 0;

        for (unsigned i = 0; i < conns; i++) {
                s[i] = (struct stream){ .id = i, .bytes = bytes, .fd = dial(port), .result = 1 };
                if (s[i].fd < 0 || pthread_create(&t[i], NULL, stream_reader, &s[i]) != 0)
                        return 1;
        }
        for (unsigned i = 0; i < conns; i++) {
                pthread_join(t[i], NULL);
                close(s[i].fd);
                bad += s[i].result != 0;
        }
        printf("streams: %u of %u came back intact and in order (%" PRIu64 " bytes each)\n", conns - (unsigned)bad,
               conns, bytes);
        return bad ? 1 : 0;
}

/* The far end is down: the proxy must close our connection, not hold it. */
static int probe_closed(unsigned port)
{
        char c;
        int fd = dial(port);
        int r;

        if (fd < 0)
                return 1;
        r = read_exact(fd, &c, 1, 10000);
        close(fd);
        if (r == -ETIMEDOUT) {
                fprintf(stderr, "lab-echo: probe: connection still open after 10 s\n");
                return 1;
        }
        printf("closed: the proxy closed the connection (%s)\n", r == -EPIPE ? "end of file" : strerror(-r));
        return 0;
}

static unsigned long num(const char *s)
{
        char *end;
        unsigned long v = strtoul(s, &end, 10);

        if (end == s || *end) {
                fprintf(stderr, "lab-echo: '%s' is not a number\n", s);
                exit(2);
        }
        return v;
}

int main(int argc, char **argv)
{
        if (argc == 3 && !strcmp(argv[1], "serve"))
                return serve(argv[2]);
        if (argc == 5 && !strcmp(argv[1], "rtt"))
                return probe_rtt((unsigned)num(argv[2]), (int)num(argv[3]), num(argv[4]));
        if (argc == 5 && !strcmp(argv[1], "streams") && num(argv[3]) >= 1 && num(argv[3]) <= MAX_CONNS)
                return probe_streams((unsigned)num(argv[2]), (unsigned)num(argv[3]), num(argv[4]));
        if (argc == 3 && !strcmp(argv[1], "closed"))
                return probe_closed((unsigned)num(argv[2]));
        fprintf(stderr, "usage: lab-echo serve PORT_FILE | rtt PORT ROUNDS MIN_MS |\n"
                        "       streams PORT CONNS BYTES | closed PORT\n");
        return 2;
}
