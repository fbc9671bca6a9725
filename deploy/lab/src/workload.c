/* lab-workload: the guest's writer; appends fsync'd records to its log, passes
 * ring messages through a virtio-serial port and, for app VMs, rewrites pages. */
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lab_rec.h"

#define IN_MAX 4096
#define OUT_MAX 256
/* While the host end of the port is closed, read() gives end-of-file and poll()
 * reports POLLHUP at once, so the port is looked at again only after this pause. */
#define PORT_RETRY_MS 100
/* How often the guest asks the relay for the host's time. A paused guest's clock
 * stands still, so after a pause its records carry a stale estimate until the
 * next answer: short enough for that to be brief, long enough to cost nothing. */
#define SYNC_MS 250
/* An answer slower than this says little about the host's time: ignored. */
#define SYNC_MAX_RTT_US 200000

struct wl {
        const char *vm;
        int log_fd;
        int pages_fd; /* -1: not an app VM */
        const char *port_path;
        int port_fd;  /* -1: closed or host end not connected */
        uint64_t seq; /* seq of the last record written */
        uint64_t counter; /* last message counter used by this VM */
        uint64_t ticks;
        char in[IN_MAX];
        size_t in_len;
        char out[OUT_MAX];
        size_t out_len;
        uint64_t n_sent, n_recv, n_bad;
        /* host Unix us - guest monotonic us lies in [off_lo, off_hi] when synced */
        bool synced;
        int64_t off_lo, off_hi;
};

static uint64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int64_t mono_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* An answer "T <t1> <host>" to our "T <t1>" says that at some guest instant in
 * [t1, now] the host's clock read <host>, so the offset lies in [host - now,
 * host - t1]. Answers narrow the interval down; one that does not overlap it
 * means the guest's clock stood still (a pause) or drifted: start over from it. */
static void sync_answer(struct wl *w, int64_t t1, int64_t host)
{
        int64_t t2 = mono_us();

        if (t1 > t2 || t2 - t1 > SYNC_MAX_RTT_US)
                return;
        int64_t lo = host - t2, hi = host - t1;
        if (!w->synced || lo > w->off_hi || hi < w->off_lo) {
                w->off_lo = lo;
                w->off_hi = hi;
                w->synced = true;
                return;
        }
        if (lo > w->off_lo)
                w->off_lo = lo;
        if (hi < w->off_hi)
                w->off_hi = hi;
}

static int write_all(int fd, const void *buf, size_t len)
{
        const char *p = buf;

        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Appends one record and makes it durable before returning: the whole point of
 * the log is that what a snapshot holds is what the workload had done. */
static int log_append(struct wl *w, enum lab_kind kind, const char *msgid)
{
        char line[LAB_REC_MAX + 2];
        struct lab_rec rec = { .seq = w->seq + 1, .kind = kind, .timed = w->synced };
        int n, r;

        if (msgid)
                snprintf(rec.msgid, sizeof(rec.msgid), "%s", msgid);
        if (w->synced) {
                int64_t half = (w->off_hi - w->off_lo) / 2;
                rec.at_us = mono_us() + w->off_lo + half;
                rec.err_us = (uint32_t)(half + 1);
        }
        n = lab_rec_format(line, sizeof(line), &rec);
        if (n < 0)
                return n;
        r = write_all(w->log_fd, line, (size_t)n);
        if (r < 0)
                return r;
        if (fsync(w->log_fd) < 0)
                return -errno;
        w->seq++;
        return 0;
}

/* Reads the existing log to continue its seq and this VM's message counter (the
 * disk may come from a revert). A torn last line cannot be a record anyone
 * relied on, so it is cut off; a bad record in the middle is left for the checker. */
static int log_recover(struct wl *w)
{
        struct stat st;
        char *buf;
        size_t len, start = 0, keep = 0;
        size_t vlen = strlen(w->vm);

        if (fstat(w->log_fd, &st) < 0)
                return -errno;
        len = (size_t)st.st_size;
        if (len == 0)
                return 0;
        buf = malloc(len);
        if (!buf)
                return -ENOMEM;
        if (pread(w->log_fd, buf, len, 0) != (ssize_t)len) {
                free(buf);
                return -EIO;
        }
        for (size_t i = 0; i < len; i++) {
                struct lab_rec rec;
                if (buf[i] != '\n')
                        continue;
                if (lab_rec_parse(buf + start, i - start, &rec) == 0) {
                        w->seq = rec.seq;
                        if (rec.kind == LAB_SENT && !strncmp(rec.msgid, w->vm, vlen) &&
                            rec.msgid[vlen] == ':') {
                                uint64_t c = strtoull(rec.msgid + vlen + 1, NULL, 10);
                                if (c > w->counter)
                                        w->counter = c;
                        }
                } else {
                        fprintf(stderr, "lab-workload: %s: bad record at offset %zu left in place\n",
                                w->vm, start);
                }
                start = i + 1;
                keep = start;
        }
        free(buf);
        if (keep < len) {
                fprintf(stderr, "lab-workload: %s: cutting a torn tail of %zu bytes\n", w->vm,
                        len - keep);
                if (ftruncate(w->log_fd, (off_t)keep) < 0 || fsync(w->log_fd) < 0)
                        return -errno;
        }
        return 0;
}

static int page_write(struct wl *w)
{
        static uint8_t page[LAB_PAGE];
        uint32_t no = (uint32_t)(w->ticks % LAB_PAGES);

        lab_page_fill(page, no, w->seq);
        if (pwrite(w->pages_fd, page, LAB_PAGE, (off_t)no * LAB_PAGE) != LAB_PAGE)
                return errno ? -errno : -EIO;
        if (fdatasync(w->pages_fd) < 0)
                return -errno;
        return 0;
}

static void port_close(struct wl *w)
{
        if (w->port_fd >= 0)
                close(w->port_fd);
        w->port_fd = -1;
        w->in_len = 0;
}

static void port_try_open(struct wl *w)
{
        if (w->port_fd >= 0 || !w->port_path)
                return;
        w->port_fd = open(w->port_path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
}

static int port_flush(struct wl *w)
{
        while (w->out_len > 0) {
                ssize_t n = write(w->port_fd, w->out, w->out_len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                memmove(w->out, w->out + n, w->out_len - (size_t)n);
                w->out_len -= (size_t)n;
        }
        return 0;
}

/* Every complete line "M <msgid>" is logged as received before anything else
 * happens, so no later send of ours can overtake a receive in the log. */
static int port_read(struct wl *w)
{
        for (;;) {
                ssize_t n = read(w->port_fd, w->in + w->in_len, sizeof(w->in) - w->in_len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                if (n == 0)
                        return -EPIPE; /* host end closed */
                w->in_len += (size_t)n;

                size_t start = 0;
                for (size_t i = 0; i < w->in_len; i++) {
                        if (w->in[i] != '\n')
                                continue;
                        const char *l = w->in + start;
                        size_t len = i - start;
                        long long t1, host;
                        char tail;
                        if (len > 2 && l[0] == 'T' && l[1] == ' ' && len < 64) {
                                char tl[64];
                                memcpy(tl, l, len);
                                tl[len] = '\0';
                                if (sscanf(tl, "T %lld %lld%c", &t1, &host, &tail) == 2)
                                        sync_answer(w, t1, host);
                                else
                                        w->n_bad++;
                        } else if (len > 2 && l[0] == 'M' && l[1] == ' ' &&
                                   lab_msgid_valid(l + 2, len - 2)) {
                                char id[LAB_MSGID_MAX + 1];
                                memcpy(id, l + 2, len - 2);
                                id[len - 2] = '\0';
                                int r = log_append(w, LAB_RECV, id);
                                if (r < 0)
                                        return r;
                                w->n_recv++;
                        } else {
                                w->n_bad++;
                        }
                        start = i + 1;
                }
                memmove(w->in, w->in + start, w->in_len - start);
                w->in_len -= start;
                if (w->in_len == sizeof(w->in))
                        w->in_len = 0; /* a line longer than any message: drop it */
        }
}

static int send_next(struct wl *w)
{
        char id[LAB_MSGID_MAX + 1];
        int n, r;

        n = snprintf(id, sizeof(id), "%s:%" PRIu64, w->vm, w->counter + 1);
        if (n < 0 || (size_t)n >= sizeof(id))
                return -ENAMETOOLONG;
        r = log_append(w, LAB_SENT, id);
        if (r < 0)
                return r;
        w->counter++;
        w->n_sent++;
        n = snprintf(w->out + w->out_len, sizeof(w->out) - w->out_len, "M %s\n", id);
        if (n < 0 || (size_t)n >= sizeof(w->out) - w->out_len)
                return -ENOBUFS; /* cannot happen: sent only with out empty */
        w->out_len += (size_t)n;
        return port_flush(w);
}

/* Asks the relay for the host's time; skipped while output is pending. */
static int sync_ask(struct wl *w)
{
        int n = snprintf(w->out, sizeof(w->out), "T %" PRId64 "\n", mono_us());

        w->out_len = (size_t)n;
        return port_flush(w);
}

static void usage(FILE *f)
{
        fprintf(f,
                "usage: lab-workload --vm NAME --log FILE [--pages FILE] [--port DEV]\n"
                "                    [--tick-ms N] [--send-ms N] [--stats-s N]\n");
}

static unsigned parse_num(const char *opt, const char *s, unsigned lo, unsigned hi)
{
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || end == s || v < lo || v > hi) {
                fprintf(stderr, "lab-workload: %s: '%s' is not a number in %u..%u\n", opt, s,
                        lo, hi);
                exit(2);
        }
        return (unsigned)v;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "vm", required_argument, NULL, 'v' },
                { "log", required_argument, NULL, 'l' },
                { "pages", required_argument, NULL, 'p' },
                { "port", required_argument, NULL, 'P' },
                { "tick-ms", required_argument, NULL, 't' },
                { "send-ms", required_argument, NULL, 's' },
                { "stats-s", required_argument, NULL, 'S' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        struct wl w = { .log_fd = -1, .pages_fd = -1, .port_fd = -1 };
        const char *log_path = NULL, *pages_path = NULL;
        unsigned tick_ms = 100, send_ms = 100, stats_s = 30;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'v': w.vm = optarg; break;
                case 'l': log_path = optarg; break;
                case 'p': pages_path = optarg; break;
                case 'P': w.port_path = optarg; break;
                case 't': tick_ms = parse_num("--tick-ms", optarg, 5, 60000); break;
                case 's': send_ms = parse_num("--send-ms", optarg, 0, 60000); break;
                case 'S': stats_s = parse_num("--stats-s", optarg, 0, 86400); break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (!w.vm || !log_path || optind != argc) {
                usage(stderr);
                return 2;
        }
        char probe[LAB_MSGID_MAX + 1];
        int plen = snprintf(probe, sizeof(probe), "%s:1", w.vm);
        if (plen < 0 || (size_t)plen >= sizeof(probe) || !lab_msgid_valid(probe, (size_t)plen)) {
                fprintf(stderr, "lab-workload: --vm: '%s' is not a name of [A-Za-z0-9._-], at most 32\n", w.vm);
                return 2;
        }
        /* The relay may go away at any time; a write to a closed socket must not kill us. */
        signal(SIGPIPE, SIG_IGN);

        w.log_fd = open(log_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (w.log_fd < 0) {
                fprintf(stderr, "lab-workload: %s: open '%s': %s\n", w.vm, log_path,
                        strerror(errno));
                return 1;
        }
        r = log_recover(&w);
        if (r < 0) {
                fprintf(stderr, "lab-workload: %s: read back '%s': %s\n", w.vm, log_path,
                        strerror(-r));
                return 1;
        }
        if (pages_path) {
                w.pages_fd = open(pages_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
                if (w.pages_fd < 0 ||
                    ftruncate(w.pages_fd, (off_t)LAB_PAGE * LAB_PAGES) < 0) {
                        fprintf(stderr, "lab-workload: %s: page store '%s': %s\n", w.vm,
                                pages_path, strerror(errno));
                        return 1;
                }
        }
        printf("lab-workload: %s: running, seq %" PRIu64 ", counter %" PRIu64 "\n", w.vm,
               w.seq, w.counter);
        fflush(stdout);

        uint64_t t = now_ms();
        uint64_t next_tick = t + tick_ms;
        uint64_t next_send = send_ms ? t + send_ms : UINT64_MAX;
        uint64_t next_port = t;
        uint64_t next_stats = stats_s ? t + stats_s * 1000ull : UINT64_MAX;
        uint64_t next_sync = t;

        for (;;) {
                struct pollfd pfd = { .fd = -1 };
                uint64_t wake;

                t = now_ms();
                if (w.port_fd < 0 && t >= next_port) {
                        port_try_open(&w);
                        if (w.port_fd < 0)
                                next_port = t + PORT_RETRY_MS;
                }
                wake = next_tick < next_send ? next_tick : next_send;
                if (next_sync < wake && w.port_fd >= 0 && t >= next_port && w.out_len == 0)
                        wake = next_sync;
                if (next_stats < wake)
                        wake = next_stats;
                if (w.port_fd >= 0 && t >= next_port) {
                        pfd.fd = w.port_fd;
                        pfd.events = POLLIN | (w.out_len ? POLLOUT : 0);
                } else if (next_port < wake) {
                        wake = next_port;
                }
                int timeout = wake > t ? (int)(wake - t) : 0;
                int n = poll(&pfd, 1, timeout);
                if (n < 0 && errno != EINTR) {
                        fprintf(stderr, "lab-workload: %s: poll: %s\n", w.vm, strerror(errno));
                        return 1;
                }
                t = now_ms();

                if (n > 0 && pfd.fd >= 0) {
                        r = 0;
                        if (pfd.revents & POLLIN)
                                r = port_read(&w);
                        if (r == 0 && (pfd.revents & POLLOUT))
                                r = port_flush(&w);
                        if (r == -EPIPE || (r == 0 && (pfd.revents & (POLLHUP | POLLERR)))) {
                                /* Host end away: keep the fd, look again later. */
                                w.in_len = 0;
                                next_port = t + PORT_RETRY_MS;
                                r = 0;
                        } else if (r == -ENODEV || r == -EBADF) {
                                port_close(&w);
                                next_port = t + PORT_RETRY_MS;
                                r = 0;
                        }
                        if (r < 0) {
                                fprintf(stderr, "lab-workload: %s: ring port: %s\n", w.vm,
                                        strerror(-r));
                                return 1;
                        }
                }

                if (t >= next_tick) {
                        r = log_append(&w, LAB_TICK, NULL);
                        if (r == 0 && w.pages_fd >= 0)
                                r = page_write(&w);
                        if (r < 0) {
                                fprintf(stderr, "lab-workload: %s: tick: %s\n", w.vm,
                                        strerror(-r));
                                return 1;
                        }
                        w.ticks++;
                        /* After a freeze, catch up by one tick, not by a burst. */
                        next_tick = t + tick_ms;
                }
                /* A new message only when the host end is there and the last one
                 * went out, so a message logged as sent is almost never stuck here. */
                if (t >= next_send) {
                        next_send = t + send_ms;
                        if (w.port_fd >= 0 && t >= next_port && w.out_len == 0) {
                                r = send_next(&w);
                                if (r < 0 && r != -EPIPE) {
                                        fprintf(stderr, "lab-workload: %s: send: %s\n", w.vm,
                                                strerror(-r));
                                        return 1;
                                }
                        }
                }
                if (t >= next_sync && w.port_fd >= 0 && t >= next_port && w.out_len == 0) {
                        next_sync = t + SYNC_MS;
                        r = sync_ask(&w);
                        if (r < 0 && r != -EPIPE) {
                                fprintf(stderr, "lab-workload: %s: time sync: %s\n", w.vm,
                                        strerror(-r));
                                return 1;
                        }
                }
                if (t >= next_stats) {
                        printf("lab-workload: %s: seq %" PRIu64 " sent %" PRIu64
                               " recv %" PRIu64 " bad %" PRIu64 " clock %s+-%" PRId64 " us\n",
                               w.vm, w.seq, w.n_sent, w.n_recv, w.n_bad,
                               w.synced ? "synced " : "unsynced ",
                               w.synced ? (w.off_hi - w.off_lo) / 2 : 0);
                        fflush(stdout);
                        next_stats = t + stats_s * 1000ull;
                }
        }
}
