/* guardian: the lease holder that outlives the agent, and the line protocol
 * (guardian_priv.h) the agent talks to it with over a SOCK_SEQPACKET pair. */
#include "guardian.h"

#include <assert.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "failpoint.h"
#include "fsutil.h"
#include "guardian_priv.h"
#include "hv.h"
#include "log.h"
#include "names.h"

#define RETRY_US 1000000LL
#define MSG_WORDS_MAX 6

struct guardian {
        int fd;
        pid_t pid;
};

void guardian_msg_format(const struct guardian_msg *m, char *out, size_t n)
{
        int len;

        assert(m->op == 'A' || m->op == 'D');
        if (m->op == 'A')
                len = snprintf(out, n, "A %s %s %lld %d %d", m->txid, m->vm, m->deadline, m->thaw ? 1 : 0,
                               m->resume ? 1 : 0);
        else
                len = snprintf(out, n, "D %s %s", m->txid, m->vm);
        /* Names are at most LS_NAME_MAX bytes, so every message fits. */
        assert(len > 0 && (size_t)len < n);
        (void)len;
}

/* Splits s in place at single spaces; returns the number of words, or -1 when
 * there are more than max or two spaces in a row. */
static int split_words(char *s, char **words, int max)
{
        int n = 0;

        for (char *p = s;; p++) {
                if (n == max)
                        return -1;
                words[n++] = p;
                p = strchr(p, ' ');
                if (!p)
                        return n;
                *p = '\0';
                if (p[1] == ' ' || p[1] == '\0')
                        return -1;
        }
}

static int parse_flag(const char *s, int *ret)
{
        if (strcmp(s, "0") != 0 && strcmp(s, "1") != 0)
                return -EINVAL;
        *ret = s[0] == '1';
        return 0;
}

int guardian_msg_parse(const char *buf, size_t len, struct guardian_msg *ret, lserr *err)
{
        char s[GUARDIAN_MSG_MAX], *w[MSG_WORDS_MAX], *end;
        struct guardian_msg m = {0};
        int n;

        if (len >= sizeof(s))
                return lserr_set(err, -EINVAL, "guardian: message of %zu bytes is over the %d-byte limit", len,
                                 GUARDIAN_MSG_MAX - 1);
        memcpy(s, buf, len);
        s[len] = '\0';
        if (strlen(s) != len)
                return lserr_set(err, -EINVAL, "guardian: message holds a NUL byte");
        n = split_words(s, w, MSG_WORDS_MAX);
        if (n < 0 || !((n == 6 && !strcmp(w[0], "A")) || (n == 3 && !strcmp(w[0], "D"))))
                return lserr_set(err, -EINVAL, "guardian: message is neither \"A txid vm deadline thaw resume\" "
                                               "nor \"D txid vm\"");
        if (!names_valid(w[1]) || !names_valid(w[2]))
                return lserr_set(err, -EINVAL, "guardian: txid or VM in message is not a valid name");
        m.op = w[0][0];
        snprintf(m.txid, sizeof(m.txid), "%s", w[1]);
        snprintf(m.vm, sizeof(m.vm), "%s", w[2]);
        if (m.op == 'A') {
                errno = 0;
                m.deadline = strtoll(w[3], &end, 10);
                if (errno || end == w[3] || *end || m.deadline < 0)
                        return lserr_set(err, -EINVAL, "guardian: deadline in message is not a number >= 0");
                if (parse_flag(w[4], &m.thaw) < 0 || parse_flag(w[5], &m.resume) < 0)
                        return lserr_set(err, -EINVAL, "guardian: thaw and resume in message must be 0 or 1");
        }
        *ret = m;
        return 0;
}

static struct guardian_entry *find(struct guardian_entry *a, const char *txid, const char *vm)
{
        for (int i = 0; i < GUARDIAN_MAX_ARMED; i++)
                if (a[i].used && !strcmp(a[i].txid, txid) && !strcmp(a[i].vm, vm))
                        return &a[i];
        return NULL;
}

int guardian_table_apply(struct guardian_entry *a, const struct guardian_msg *m, lserr *err)
{
        struct guardian_entry *e = find(a, m->txid, m->vm);

        assert(m->op == 'A' || m->op == 'D');
        if (m->op == 'D') {
                if (e)
                        e->used = 0;
                return 0;
        }
        for (int i = 0; !e && i < GUARDIAN_MAX_ARMED; i++)
                if (!a[i].used)
                        e = &a[i];
        if (!e)
                return lserr_set(err, -ENOSPC, "guardian: more than %d members armed; \"%s\" not covered",
                                 GUARDIAN_MAX_ARMED, m->vm);
        snprintf(e->txid, sizeof(e->txid), "%s", m->txid);
        snprintf(e->vm, sizeof(e->vm), "%s", m->vm);
        e->deadline = m->deadline;
        e->thaw = m->thaw;
        e->resume = m->resume;
        e->used = 1;
        return 0;
}

/* Undoes one member; 0 when it is thawed and running again. again: a failed
 * thaw is tried once more at once (see act). */
static int undo(struct hv *hv, struct guardian_entry *e, int again)
{
        lserr err = {0};
        int r = 0;

        if (e->thaw) {
                r = hv_thaw(hv, e->vm, &err);
                if (r < 0 && r != LS_ENODOMAIN) {
                        log_err("guardian: txid=%s vm=%s thaw failed, %s: %s", e->txid, e->vm,
                                again ? "trying again at once" : "will retry", err.msg);
                        return r;
                }
                log_warn("guardian: txid=%s vm=%s lease ended or agent gone: thawed (%d filesystems)", e->txid,
                         e->vm, r > 0 ? r : 0);
                e->thaw = 0;
        }
        if (e->resume) {
                lserr_clear(&err);
                r = hv_resume(hv, e->vm, &err);
                if (r < 0 && r != LS_ENODOMAIN && r != LS_ENOTRUNNING) {
                        log_err("guardian: txid=%s vm=%s resume failed, will retry: %s", e->txid, e->vm, err.msg);
                        return r;
                }
                log_warn("guardian: txid=%s vm=%s lease ended or agent gone: resumed", e->txid, e->vm);
                e->resume = 0;
        }
        return 0;
}

/* Undoes every armed member that is due; returns how many stay armed and
 * lowers *next to the earliest deadline left. */
static int act(const struct cfg_agent *cfg, struct hv **hv, struct guardian_entry *a, int all, long long *next)
{
        long long now = fsutil_mono_us();
        int left = 0;

        for (int i = 0; i < GUARDIAN_MAX_ARMED; i++) {
                struct guardian_entry *e = &a[i];
                if (!e->used)
                        continue;
                if (all || e->deadline <= now) {
                        lserr err = {0};
                        /* The connection is opened only when there is work. One
                         * kept from an earlier cut may have died with libvirtd
                         * (restarted since): its first call fails and the next
                         * connects again, so once more at once, not after
                         * RETRY_US of a guest's frozen time. */
                        if (!*hv && hv_open(cfg, hv, &err) < 0)
                                log_err("guardian: cannot reach the hypervisor, will retry: %s", err.msg);
                        else if (undo(*hv, e, 1) == 0 || undo(*hv, e, 0) == 0) {
                                e->used = 0;
                                continue;
                        }
                        e->deadline = now + RETRY_US;
                }
                left++;
                if (e->deadline < *next)
                        *next = e->deadline;
        }
        return left;
}

/* One datagram from the agent, applied; a bad one is logged here, at the
 * guardian's edge, and dropped. */
static void take_msg(struct guardian_entry *a, const char *buf, ssize_t len, int truncated)
{
        struct guardian_msg m;
        lserr err = {0};
        int r;

        if (truncated)
                r = lserr_set(&err, -EINVAL, "guardian: message over the %d-byte limit", GUARDIAN_MSG_MAX - 1);
        else
                r = guardian_msg_parse(buf, (size_t)len, &m, &err);
        if (r >= 0)
                r = guardian_table_apply(a, &m, &err);
        if (r < 0)
                log_err("%s", err.msg);
}

/* Connects to the hypervisor when a member is armed, not when its lease ends:
 * opening a connection takes a while on a loaded host, and that wait would be
 * a frozen guest's. The connection is kept for the next cuts. */
static void connect_when_armed(const struct cfg_agent *cfg, struct hv **hv, const struct guardian_entry *a)
{
        lserr err = {0};
        int armed = 0;

        for (int i = 0; i < GUARDIAN_MAX_ARMED && !armed; i++)
                armed = a[i].used;
        if (armed && !*hv && hv_open(cfg, hv, &err) < 0)
                log_err("guardian: cannot reach the hypervisor yet, will retry at the lease's end: %s", err.msg);
}

/* Serves the agent: undoes members whose lease ended, takes its messages,
 * and returns when its end of the socket closes. */
static void serve_agent(const struct cfg_agent *cfg, int fd, struct hv **hv, struct guardian_entry *a)
{
        for (;;) {
                long long next = fsutil_mono_us() + 3600 * 1000000LL, wait_ms;
                struct pollfd p = {.fd = fd, .events = POLLIN};
                char msg[GUARDIAN_MSG_MAX];
                ssize_t len;

                act(cfg, hv, a, 0, &next);
                wait_ms = (next - fsutil_mono_us()) / 1000 + 1;
                if (poll(&p, 1, wait_ms < 0 ? 0 : (int)wait_ms) <= 0)
                        continue;
                len = recv(fd, msg, sizeof(msg), MSG_TRUNC);
                if (len <= 0)
                        return;
                take_msg(a, msg, len, len >= (ssize_t)sizeof(msg));
                connect_when_armed(cfg, hv, a);
        }
}

static void guardian_main(const struct cfg_agent *cfg, int fd)
{
        _cleanup_free_ struct guardian_entry *a = calloc(GUARDIAN_MAX_ARMED, sizeof(*a));
        struct hv *hv = NULL;

        if (!a) {
                log_err("guardian: out of memory");
                _exit(1);
        }
        serve_agent(cfg, fd, &hv, a);
        /* The agent is gone: undo everything still armed, now, until it works. */
        for (int i = 0; i < GUARDIAN_MAX_ARMED; i++)
                if (a[i].used)
                        log_warn("guardian: agent gone with txid=%s vm=%s armed: undoing now", a[i].txid, a[i].vm);
        for (;;) {
                long long next = 0;
                if (act(cfg, &hv, a, 1, &next) == 0)
                        break;
                usleep(RETRY_US);
        }
        hv_close(hv);
}

static void become_guardian(void)
{
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(SIGPIPE, SIG_IGN);
        /* Its name (/proc/PID/comm) is how ps, tests and a "pkill -x
         * lockstep-agent" tell it from the agent: its command line is the
         * agent's. */
        prctl(PR_SET_NAME, GUARDIAN_COMM);
        log_rename("lockstep-agent[guardian]");
}

int guardian_start(const struct cfg_agent *cfg, struct guardian **ret, lserr *err)
{
        _cleanup_free_ struct guardian *g = NULL;
        _cleanup_close_ int agent_fd = -1, guardian_fd = -1, ready_r = -1, ready_w = -1;
        int sv[2], p[2];
        char byte;
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return lserr_set(err, -errno, "guardian: socketpair: %m");
        agent_fd = sv[0];
        guardian_fd = sv[1];
        if (pipe2(p, O_CLOEXEC) < 0)
                return lserr_set(err, -errno, "guardian: pipe: %m");
        ready_r = p[0];
        ready_w = p[1];
        g = calloc(1, sizeof(*g));
        if (!g)
                return lserr_set(err, -ENOMEM, "guardian: out of memory");
        pid = fork();
        if (pid < 0)
                return lserr_set(err, -errno, "guardian: fork: %m");
        if (pid == 0) {
                /* Forked, not executed again: the libraries' pages stay the
                 * agent's (an executed copy faulted in libvirt's whole tree for
                 * itself, ~13 MiB); libvirt itself is first touched here when a
                 * thaw is due. Signals meant for the agent's process group do
                 * not reach it. */
                close(agent_fd);
                close(ready_r);
                setsid();
                become_guardian();
                /* Named now: whoever lists the agent's processes from here on
                 * tells the guardian apart. */
                if (write(ready_w, "g", 1) != 1)
                        _exit(1);
                close(ready_w);
                guardian_main(cfg, guardian_fd);
                _exit(0);
        }
        close(ready_w);
        ready_w = -1;
        if (read(ready_r, &byte, 1) != 1)
                return lserr_set(err, -EIO, "guardian: pid %d did not start", (int)pid);
        g->fd = agent_fd;
        agent_fd = -1;
        g->pid = pid;
        *ret = TAKE_PTR(g);
        return 0;
}


static int send_msg(struct guardian *g, const char *msg)
{
        if (send(g->fd, msg, strlen(msg), MSG_NOSIGNAL) < 0)
                return -errno;
        return 0;
}

int guardian_arm(struct guardian *g, const char *txid, const char *vm, long long deadline_mono_us, int thaw,
                 int resume)
{
        struct guardian_msg m = {.op = 'A', .deadline = deadline_mono_us, .thaw = !!thaw, .resume = !!resume};
        char msg[GUARDIAN_MSG_MAX];

        assert(names_valid(txid) && names_valid(vm) && deadline_mono_us >= 0);
        if (failpoint_on("no-lease")) /* test only: a year instead of the lease */
                m.deadline = deadline_mono_us + 366LL * 86400 * 1000000;
        snprintf(m.txid, sizeof(m.txid), "%s", txid);
        snprintf(m.vm, sizeof(m.vm), "%s", vm);
        guardian_msg_format(&m, msg, sizeof(msg));
        return send_msg(g, msg);
}

int guardian_disarm(struct guardian *g, const char *txid, const char *vm)
{
        struct guardian_msg m = {.op = 'D'};
        char msg[GUARDIAN_MSG_MAX];

        assert(names_valid(txid) && names_valid(vm));
        snprintf(m.txid, sizeof(m.txid), "%s", txid);
        snprintf(m.vm, sizeof(m.vm), "%s", vm);
        guardian_msg_format(&m, msg, sizeof(msg));
        return send_msg(g, msg);
}

struct guardian *guardian_stop(struct guardian *g)
{
        if (!g)
                return NULL;
        close(g->fd);
        /* Reap it if it is done already; otherwise it finishes its work alone. */
        waitpid(g->pid, NULL, WNOHANG);
        free(g);
        return NULL;
}

int guardian_pid(const struct guardian *g)
{
        return g->pid;
}
