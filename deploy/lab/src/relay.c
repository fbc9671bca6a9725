/* lab-relay: the lab's only "network" between guests; it passes ring messages from
 * each VM's virtio-serial socket to a VM of the next tier, round-robin. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lab_rec.h"

#define MAX_MEMBERS 64
#define MAX_TIERS 8
#define IN_MAX 4096
/* What waits for a VM that is frozen, rebooting or gone; beyond it, drop. */
#define OUT_MAX (64 * 1024)
#define RECONNECT_MS 200

struct member {
        char tier[LAB_NAME_MAX + 1];
        char vm[LAB_NAME_MAX + 1];
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
        int tier_idx;
        int fd;
        bool connecting;
        uint64_t next_try;
        char in[IN_MAX];
        size_t in_len;
        char *out;
        size_t out_len;
        uint64_t n_in, n_out, n_drop;
};

static struct member members[MAX_MEMBERS];
static int n_members;
static char tiers[MAX_TIERS][LAB_NAME_MAX + 1];
static int n_tiers;
static unsigned rr[MAX_TIERS];
static uint64_t n_bad;
static volatile sig_atomic_t stop, want_stats;

static uint64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int64_t unix_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void on_signal(int sig)
{
        if (sig == SIGUSR1)
                want_stats = 1;
        else
                stop = 1;
}

static bool name_ok(const char *s, size_t len)
{
        char probe[LAB_MSGID_MAX + 1];

        if (len == 0 || len > LAB_NAME_MAX)
                return false;
        memcpy(probe, s, len);
        memcpy(probe + len, ":1", 3);
        return lab_msgid_valid(probe, len + 2);
}

static int tier_index(const char *name)
{
        for (int i = 0; i < n_tiers; i++)
                if (!strcmp(tiers[i], name))
                        return i;
        return -1;
}

static void member_close(struct member *m, uint64_t t, const char *why)
{
        if (m->fd >= 0) {
                fprintf(stderr, "lab-relay: %s: disconnected (%s)\n", m->vm, why);
                close(m->fd);
        }
        m->fd = -1;
        m->connecting = false;
        m->in_len = 0;
        m->next_try = t + RECONNECT_MS;
}

static void member_connect(struct member *m, uint64_t t)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        m->next_try = t + RECONNECT_MS;
        m->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (m->fd < 0)
                return;
        memcpy(sa.sun_path, m->path, strlen(m->path) + 1);
        if (connect(m->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
                fprintf(stderr, "lab-relay: %s: connected\n", m->vm);
                return;
        }
        if (errno == EINPROGRESS || errno == EAGAIN) {
                m->connecting = true;
                return;
        }
        /* No socket yet (VM not started) is the usual case: stay quiet. */
        close(m->fd);
        m->fd = -1;
}

/* The next tier in the ring that has members; the ring wraps from the last to the first. */
static struct member *pick_target(int from_tier)
{
        for (int step = 1; step <= n_tiers; step++) {
                int ti = (from_tier + step) % n_tiers;
                int count = 0;
                for (int i = 0; i < n_members; i++)
                        count += members[i].tier_idx == ti;
                if (count == 0)
                        continue;
                unsigned k = rr[ti]++ % (unsigned)count;
                for (int i = 0; i < n_members; i++)
                        if (members[i].tier_idx == ti && k-- == 0)
                                return &members[i];
        }
        return NULL;
}

static void enqueue(struct member *to, const char *line, size_t len)
{
        if (to->out_len + len > OUT_MAX) {
                to->n_drop++;
                return;
        }
        memcpy(to->out + to->out_len, line, len);
        to->out_len += len;
}

static void member_flush(struct member *m, uint64_t t)
{
        while (m->fd >= 0 && !m->connecting && m->out_len > 0) {
                ssize_t n = send(m->fd, m->out, m->out_len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                member_close(m, t, strerror(errno));
                        return;
                }
                memmove(m->out, m->out + n, m->out_len - (size_t)n);
                m->out_len -= (size_t)n;
        }
}

static void member_read(struct member *m, uint64_t t)
{
        ssize_t n = recv(m->fd, m->in + m->in_len, sizeof(m->in) - m->in_len, 0);

        if (n < 0) {
                if (errno != EINTR && errno != EAGAIN)
                        member_close(m, t, strerror(errno));
                return;
        }
        if (n == 0) {
                member_close(m, t, "end of file");
                return;
        }
        m->in_len += (size_t)n;
        size_t start = 0;
        for (size_t i = 0; i < m->in_len; i++) {
                if (m->in[i] != '\n')
                        continue;
                const char *l = m->in + start;
                size_t len = i - start;
                if (len > 2 && l[0] == 'T' && l[1] == ' ' && lab_digits(l + 2, len - 2, 20)) {
                        /* A guest asks for the host's time: answer it alone,
                         * echoing its own clock so it can bound the delay. */
                        char ans[64];
                        int an = snprintf(ans, sizeof(ans), "%.*s %" PRId64 "\n", (int)len, l,
                                          unix_us());
                        if (an > 0 && (size_t)an < sizeof(ans))
                                enqueue(m, ans, (size_t)an);
                } else if (len > 2 && l[0] == 'M' && l[1] == ' ' && lab_msgid_valid(l + 2, len - 2)) {
                        struct member *to = pick_target(m->tier_idx);
                        m->n_in++;
                        if (to) {
                                enqueue(to, l, len + 1);
                                to->n_out++;
                        }
                } else {
                        n_bad++;
                }
                start = i + 1;
        }
        memmove(m->in, m->in + start, m->in_len - start);
        m->in_len -= start;
        if (m->in_len == sizeof(m->in))
                m->in_len = 0;
}

static void print_stats(void)
{
        for (int i = 0; i < n_members; i++) {
                struct member *m = &members[i];
                fprintf(stderr,
                        "lab-relay: %s (%s): %s, from it %" PRIu64 ", to it %" PRIu64
                        ", queued %zu bytes, dropped %" PRIu64 "\n",
                        m->vm, m->tier, m->fd >= 0 && !m->connecting ? "connected" : "down",
                        m->n_in, m->n_out, m->out_len, m->n_drop);
        }
        fprintf(stderr, "lab-relay: malformed lines %" PRIu64 "\n", n_bad);
}

static void usage(FILE *f)
{
        fprintf(f, "usage: lab-relay --tiers T1,T2,... TIER:VM:SOCKET...\n"
                   "Passes 'M <vm>:<n>' lines from each VM to a VM of the next tier and\n"
                   "answers 'T <guest us>' with 'T <guest us> <host Unix us>';\n"
                   "SIGUSR1 prints counters, SIGTERM stops.\n");
}

static int add_tiers(const char *list)
{
        const char *p = list;

        while (*p) {
                const char *e = strchr(p, ',');
                size_t len = e ? (size_t)(e - p) : strlen(p);
                if (n_tiers == MAX_TIERS || !name_ok(p, len))
                        return -EINVAL;
                memcpy(tiers[n_tiers], p, len);
                tiers[n_tiers++][len] = '\0';
                p += len + (e ? 1 : 0);
        }
        return n_tiers > 0 ? 0 : -EINVAL;
}

static int add_member(const char *spec)
{
        const char *c1 = strchr(spec, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        struct member *m;

        if (!c2 || n_members == MAX_MEMBERS)
                return -EINVAL;
        m = &members[n_members];
        if (!name_ok(spec, (size_t)(c1 - spec)) || !name_ok(c1 + 1, (size_t)(c2 - c1 - 1)) ||
            strlen(c2 + 1) == 0 || strlen(c2 + 1) >= sizeof(m->path))
                return -EINVAL;
        memcpy(m->tier, spec, (size_t)(c1 - spec));
        memcpy(m->vm, c1 + 1, (size_t)(c2 - c1 - 1));
        strcpy(m->path, c2 + 1);
        m->tier_idx = tier_index(m->tier);
        if (m->tier_idx < 0)
                return -ENOENT;
        m->fd = -1;
        m->out = malloc(OUT_MAX);
        if (!m->out)
                return -ENOMEM;
        n_members++;
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "tiers", required_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        struct pollfd pfds[MAX_MEMBERS];
        int c;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 't':
                        if (add_tiers(optarg) < 0) {
                                fprintf(stderr, "lab-relay: --tiers: '%s' is not a list of up to %d names\n",
                                        optarg, MAX_TIERS);
                                return 2;
                        }
                        break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (n_tiers == 0 || optind == argc) {
                usage(stderr);
                return 2;
        }
        for (int i = optind; i < argc; i++) {
                int r = add_member(argv[i]);
                if (r < 0) {
                        fprintf(stderr, "lab-relay: member '%s': %s\n", argv[i],
                                r == -ENOENT ? "tier not in --tiers"
                                             : "want TIER:VM:SOCKET with valid names");
                        return 2;
                }
        }

        struct sigaction sa = { .sa_handler = on_signal };
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGUSR1, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        fprintf(stderr, "lab-relay: %d members in %d tiers\n", n_members, n_tiers);

        while (!stop) {
                uint64_t t = now_ms();
                int timeout = RECONNECT_MS;

                for (int i = 0; i < n_members; i++) {
                        struct member *m = &members[i];
                        if (m->fd < 0 && t >= m->next_try)
                                member_connect(m, t);
                        pfds[i].fd = m->fd;
                        pfds[i].events = m->connecting ? POLLOUT
                                                       : POLLIN | (m->out_len ? POLLOUT : 0);
                        pfds[i].revents = 0;
                }
                if (poll(pfds, (nfds_t)n_members, timeout) < 0 && errno != EINTR) {
                        perror("lab-relay: poll");
                        return 1;
                }
                t = now_ms();
                for (int i = 0; i < n_members; i++) {
                        struct member *m = &members[i];
                        short rev = pfds[i].revents;
                        if (m->fd < 0 || rev == 0)
                                continue;
                        if (m->connecting) {
                                int err = 0;
                                socklen_t el = sizeof(err);
                                getsockopt(m->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                                if (err) {
                                        close(m->fd);
                                        m->fd = -1;
                                        m->connecting = false;
                                        continue;
                                }
                                m->connecting = false;
                                fprintf(stderr, "lab-relay: %s: connected\n", m->vm);
                        }
                        if (rev & POLLIN)
                                member_read(m, t);
                        else if (rev & (POLLHUP | POLLERR))
                                member_close(m, t, "hang-up");
                }
                /* Flush everyone after all reads: a read may have queued for anyone. */
                for (int i = 0; i < n_members; i++)
                        member_flush(&members[i], t);
                if (want_stats) {
                        want_stats = 0;
                        print_stats();
                }
        }
        print_stats();
        return 0;
}
