/* guardian: the lease holder that outlives the agent. Messages on a
 * SOCK_SEQPACKET pair, one per datagram:
 *   "A <txid> <vm> <deadline_mono_us> <thaw 0|1> <resume 0|1>"  arm
 *   "D <txid> <vm>"                                            disarm */
#include "guardian.h"

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

#include "fsutil.h"
#include "hv.h"
#include "log.h"
#include "names.h"

#define MAX_ARMED 4096
#define RETRY_US 1000000LL

struct guardian {
        int fd;
        pid_t pid;
};

struct armed {
        char txid[LS_NAME_MAX + 1], vm[LS_NAME_MAX + 1];
        long long deadline;
        int thaw, resume, used;
};

static struct armed *find(struct armed *a, const char *txid, const char *vm)
{
        for (int i = 0; i < MAX_ARMED; i++)
                if (a[i].used && !strcmp(a[i].txid, txid) && !strcmp(a[i].vm, vm))
                        return &a[i];
        return NULL;
}

static void handle(struct armed *a, char *msg)
{
        char txid[LS_NAME_MAX + 1], vm[LS_NAME_MAX + 1];
        long long deadline;
        int thaw, resume;
        struct armed *e;

        if (sscanf(msg, "A %64s %64s %lld %d %d", txid, vm, &deadline, &thaw, &resume) == 5) {
                e = find(a, txid, vm);
                for (int i = 0; !e && i < MAX_ARMED; i++)
                        if (!a[i].used)
                                e = &a[i];
                if (!e) {
                        log_err("guardian: more than %d members armed; \"%s\" not covered", MAX_ARMED, vm);
                        return;
                }
                snprintf(e->txid, sizeof(e->txid), "%s", txid);
                snprintf(e->vm, sizeof(e->vm), "%s", vm);
                e->deadline = deadline;
                e->thaw = thaw;
                e->resume = resume;
                e->used = 1;
        } else if (sscanf(msg, "D %64s %64s", txid, vm) == 2) {
                e = find(a, txid, vm);
                if (e)
                        e->used = 0;
        }
}

/* Undoes one member; 0 when it is thawed and running again. */
static int undo(struct hv *hv, struct armed *e)
{
        lserr err = {0};
        int r = 0;

        if (e->thaw) {
                r = hv_thaw(hv, e->vm, &err);
                if (r < 0 && r != LS_ENODOMAIN) {
                        log_err("guardian: txid=%s vm=%s thaw failed, will retry: %s", e->txid, e->vm, err.msg);
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
static int act(const struct cfg_agent *cfg, struct hv **hv, struct armed *a, int all, long long *next)
{
        long long now = fsutil_mono_us();
        int left = 0;

        for (int i = 0; i < MAX_ARMED; i++) {
                struct armed *e = &a[i];
                if (!e->used)
                        continue;
                if (all || e->deadline <= now) {
                        lserr err = {0};
                        /* The connection is opened only when there is work. */
                        if (!*hv && hv_open(cfg, hv, &err) < 0)
                                log_err("guardian: cannot reach the hypervisor, will retry: %s", err.msg);
                        else if (undo(*hv, e) == 0) {
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

static void guardian_main(const struct cfg_agent *cfg, int fd)
{
        struct armed *a = calloc(MAX_ARMED, sizeof(*a));
        struct hv *hv = NULL;

        if (!a)
                _exit(1);
        for (;;) {
                long long next = fsutil_mono_us() + 3600 * 1000000LL, wait_ms;
                struct pollfd p = {.fd = fd, .events = POLLIN};
                char msg[256];
                ssize_t len;

                act(cfg, &hv, a, 0, &next);
                wait_ms = (next - fsutil_mono_us()) / 1000 + 1;
                if (poll(&p, 1, wait_ms < 0 ? 0 : (int)wait_ms) <= 0)
                        continue;
                len = recv(fd, msg, sizeof(msg) - 1, 0);
                if (len <= 0)
                        break;
                msg[len] = '\0';
                handle(a, msg);
        }
        /* The agent is gone: undo everything still armed, now, until it works. */
        for (int i = 0; i < MAX_ARMED; i++)
                if (a[i].used)
                        log_warn("guardian: agent gone with txid=%s vm=%s armed: undoing now", a[i].txid, a[i].vm);
        for (;;) {
                long long next = 0;
                if (act(cfg, &hv, a, 1, &next) == 0)
                        break;
                usleep(RETRY_US);
        }
        hv_close(hv);
        free(a);
}

int guardian_start(const char *config_path, struct guardian **ret, lserr *err)
{
        struct guardian *g;
        int sv[2];
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return lserr_set(err, -errno, "guardian: socketpair: %m");
        g = calloc(1, sizeof(*g));
        if (!g) {
                close(sv[0]);
                close(sv[1]);
                return -ENOMEM;
        }
        pid = fork();
        if (pid < 0) {
                free(g);
                close(sv[0]);
                close(sv[1]);
                return lserr_set(err, -errno, "guardian: fork: %m");
        }
        if (pid == 0) {
                char fd[16];
                /* A fresh image: no inherited state, and its command line says
                 * what it is, so a "pkill -f" aimed at the agent spares it. */
                int cfd = fcntl(sv[1], F_DUPFD, 3); /* without FD_CLOEXEC */
                snprintf(fd, sizeof(fd), "%d", cfd);
                /* Signals meant for the agent's process group do not stop it. */
                setsid();
                execl("/proc/self/exe", "lockstep-agent", "--guardian", fd, "-c", config_path, (char *)NULL);
                _exit(127);
        }
        close(sv[1]);
        g->fd = sv[0];
        g->pid = pid;
        *ret = g;
        return 0;
}

void guardian_run(const struct cfg_agent *cfg, int fd)
{
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(SIGPIPE, SIG_IGN);
        prctl(PR_SET_NAME, "ls-guardian");
        guardian_main(cfg, fd);
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
        char msg[256];

        snprintf(msg, sizeof(msg), "A %s %s %lld %d %d", txid, vm, deadline_mono_us, thaw ? 1 : 0, resume ? 1 : 0);
        return send_msg(g, msg);
}

int guardian_disarm(struct guardian *g, const char *txid, const char *vm)
{
        char msg[256];

        snprintf(msg, sizeof(msg), "D %s %s", txid, vm);
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
