/* lockstep-agent: the per-host daemon. Loads its config and keys as root, then
 * splits (privsep.h): this process stays the root executor without network, its
 * child listens for signed commands as an unprivileged user. Runs in the foreground. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_config.h"
#include "cleanup.h"
#include "dispatch.h"
#include "envelope.h"
#include "execute.h"
#include "failpoint.h"
#include "fsutil.h"
#include "guardian.h"
#include "hv.h"
#include "keys.h"
#include "log.h"
#include "notify.h"
#include "privsep.h"
#include "replay.h"
#include "sandbox.h"
#include "transport.h"
#include "txn.h"

#define WORKERS PRIVSEP_CHANNELS
#define NONCE_CACHE 16384
#define LISTEN_RETRIES 20

static void usage(FILE *f)
{
        fprintf(f, "usage: lockstep-agent [-c agent.yaml] [--check-config] [-v] [--version]\n"
                   "  -c, --config FILE   configuration (default /etc/lockstep/agent.yaml)\n"
                   "      --check-config  load and check the configuration and keys, then exit\n"
                   "  -v, --verbose       log debug lines too\n");
}

/* The trusted coordinator keys of the config, resolved. *ret is the caller's. */
static int load_trusted(const struct cfg_agent *cfg, const char *path, struct env_trusted **ret, lserr *err)
{
        _cleanup_free_ struct env_trusted *t = calloc(cfg->n_authorized, sizeof(*t));

        if (!t)
                return lserr_set(err, -ENOMEM, "%s: out of memory", path);
        for (unsigned i = 0; i < cfg->n_authorized; i++) {
                lserr e = {0};
                int r = keys_load_public(cfg->authorized[i].pubkey, &t[i].pub, &e);
                if (r < 0)
                        return lserr_set(err, r, "%s: authorized[%u] (\"%s\"): %s", path, i, cfg->authorized[i].name,
                                         e.msg);
                t[i].roles = cfg->authorized[i].roles;
                snprintf(t[i].name, sizeof(t[i].name), "%s", cfg->authorized[i].name);
        }
        lserr e = {0};
        int r = env_trusted_unique(t, cfg->n_authorized, &e);
        if (r < 0)
                return lserr_set(err, r, "%s: authorized: %s", path, e.msg);
        *ret = TAKE_PTR(t);
        return 0;
}

/* What the executor owns; agent_done frees it in the order that stops it safely. */
struct agent {
        const char *path;
        int level;
        struct cfg_agent *cfg;
        struct keys_secret *key;
        struct env_trusted *trusted;
        struct sandbox_user user;
        char replay_dir[4200];
        int fds[PRIVSEP_CHANNELS];
        pid_t net_pid;
        struct guardian *g;
        struct hv *hv;
        struct txn_mgr *txns;
        struct execute *x;
        struct privsep_server *srv;
        char fpr[KEYS_FPR_LEN];
};

/* The network half's end: it exits on SIGTERM, or is killed with us. */
static void stop_network(struct agent *a)
{
        if (a->net_pid <= 0)
                return;
        kill(a->net_pid, SIGTERM);
        waitpid(a->net_pid, NULL, 0);
        a->net_pid = 0;
}

static void agent_done(struct agent *a)
{
        /* No new commands, then thaw whatever is still frozen, then exit. */
        privsep_server_stop(a->srv);
        stop_network(a);
        if (a->txns)
                txn_mgr_shutdown(a->txns);
        txn_mgr_free(a->txns);
        execute_free(a->x);
        guardian_stop(a->g);
        hv_close(a->hv);
        free(a->trusted);
        keys_secret_free(a->key);
        cfg_agent_free(a->cfg);
}

struct options {
        const char *path;
        int check_only, level;
};

/* -1 to go on, else the exit code. */
static int parse_options(int argc, char **argv, struct options *o)
{
        static const struct option opts[] = {
                {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'C'},
                {"verbose", no_argument, NULL, 'v'},      {"version", no_argument, NULL, 'V'},
                {"help", no_argument, NULL, 'h'},         {0},
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
                switch (c) {
                case 'c': o->path = optarg; break;
                case 'C': o->check_only = 1; break;
                case 'v': o->level = LOG_DEBUG; break;
                case 'V': printf("lockstep-agent %s\n", LOCKSTEP_VERSION); return 0;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (optind != argc) {
                usage(stderr);
                return 2;
        }
        return -1;
}

/* The agent's own key and the coordinator keys it trusts. */
static int load_keys(struct agent *a, lserr *err)
{
        int r = keys_load_secret(a->cfg->key, &a->key, err);

        if (r < 0)
                return r;
        r = load_trusted(a->cfg, a->path, &a->trusted, err);
        if (r < 0)
                return r;
        keys_fingerprint(keys_secret_public(a->key)->id, a->fpr);
        return 0;
}

/* Signals are taken by sigwait, never by the worker threads. SIGCHLD tells
 * the executor that the network half is gone. */
static void block_signals(sigset_t *set)
{
        sigemptyset(set);
        sigaddset(set, SIGTERM);
        sigaddset(set, SIGINT);
        sigaddset(set, SIGHUP);
        sigaddset(set, SIGCHLD);
        pthread_sigmask(SIG_BLOCK, set, NULL);
        signal(SIGPIPE, SIG_IGN);
}

/* The listening socket, opened before the network half drops root (a TLS key
 * or a port below 1024 may need it). */
static int listen_socket(const struct agent *a, nng_socket *sock, lserr *err)
{
        const struct cfg_agent *cfg = a->cfg;
        struct transport_tls tls = {.cert = cfg->tls_cert, .key = cfg->tls_key};

        return transport_listen(cfg->listen, ENV_MAX_DEFAULT, 0, &tls, sock, err);
}

/* The listener, retried for a moment while its address is in use: after
 * kill -9 of the executor, the old network half (killed by the kernel with
 * it) may still be closing its listening socket when the new agent starts. */
static int listen_retrying(const struct agent *a, nng_socket *sock, lserr *err)
{
        int r;

        for (int i = 0;; i++) {
                lserr e = {0};
                r = listen_socket(a, sock, &e);
                if (r >= 0 || i >= LISTEN_RETRIES || !strstr(e.msg, "Address in use")) {
                        if (r < 0)
                                lserr_set(err, r, "%s", e.msg);
                        return r;
                }
                usleep(100 * 1000);
        }
}

/* What the network half owns. */
struct net {
        struct replay *rp;
        struct env_verifier *v;
        struct privsep_client *client;
        struct dispatch *d;
        struct transport_server *srv;
};

static void net_done(struct net *n)
{
        transport_server_stop(n->srv);
        dispatch_free(n->d);
        privsep_client_free(n->client);
        env_verifier_free(n->v);
        replay_free(n->rp);
}

/* Listener, then the drop, then replay state (in its own directory, the
 * working directory from here on), verifier and dispatcher; then serving. */
static int net_start(struct agent *a, struct net *n, lserr *err)
{
        const struct cfg_agent *cfg = a->cfg;
        long long window_us = (long long)cfg->time_window_s * 1000000LL;
        nng_socket sock;
        int r = listen_retrying(a, &sock, err);

        if (r < 0)
                return r;
        if (chdir(a->replay_dir) < 0)
                r = lserr_set(err, -errno, "replay state \"%s\": chdir: %m", a->replay_dir);
        if (r >= 0)
                r = sandbox_drop(&a->user, err);
        if (r >= 0 && privsep_tie_to_executor() < 0)
                r = lserr_set(err, -ESRCH, "network half: the executor is gone");
        if (r >= 0)
                r = replay_open(".", NONCE_CACHE, window_us, &n->rp, err);
        if (r >= 0)
                r = env_verifier_new(cfg->id, a->trusted, cfg->n_authorized, n->rp, window_us, ENV_MAX_DEFAULT,
                                     &n->v, err);
        if (r >= 0)
                r = privsep_client_new(a->fds, &n->client, err);
        if (r >= 0)
                r = dispatch_new(cfg, a->key, n->v, privsep_call, n->client, &n->d, err);
        if (r >= 0)
                r = privsep_send_ready(a->fds[0], NULL, err);
        if (r >= 0)
                r = transport_serve(sock, WORKERS, dispatch_handle, n->d, &n->srv, err);
        if (r < 0)
                nng_close(sock);
        return r;
}

/* The child after the split: never returns. */
static _Noreturn void network_main(struct agent *a)
{
        struct net n = {0};
        lserr err = {0};
        sigset_t set;
        int sig, r;

        log_setup("lockstep-agent[net]", a->level);
        /* The guardian's link is the executor's: this copy goes. */
        a->g = guardian_stop(a->g);
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        r = net_start(a, &n, &err);
        if (r < 0) {
                /* The executor logs it, as the agent's last line. */
                privsep_send_ready(a->fds[0], err.msg, NULL);
                _exit(1);
        }
        while (sigwait(&set, &sig) != 0)
                ;
        net_done(&n);
        _exit(0);
}

/* The executor: out of the network, then hypervisor and transactions
 * (recovered from the journal), then the network half's channels. */
static int start_executor(struct agent *a, lserr *err)
{
        const struct cfg_agent *cfg = a->cfg;
        int r = sandbox_no_network(err);

        if (r >= 0)
                r = hv_open(cfg, &a->hv, err);
        if (r >= 0)
                r = txn_mgr_new(cfg, a->hv, a->g, &a->txns, err);
        if (r >= 0)
                r = txn_mgr_recover(a->txns, err);
        if (r >= 0)
                r = execute_new(cfg, a->hv, a->txns, &a->x, err);
        if (r >= 0)
                r = privsep_wait_ready(a->fds[0], err);
        if (r >= 0)
                r = privsep_serve(a->fds, a->net_pid, execute_command, a->x, &a->srv, err);
        return r;
}

/* The split: the network half is forked (before any thread), the executor
 * keeps no copy of the signing key. */
static int split(struct agent *a, lserr *err)
{
        pid_t pid;
        int r = sandbox_replay_dir(a->cfg->state_dir, &a->user, a->replay_dir, sizeof(a->replay_dir), err);

        if (r < 0)
                return r;
        pid = privsep_fork(a->fds, err);
        if (pid < 0)
                return (int)pid;
        if (pid == 0)
                network_main(a);
        a->net_pid = pid;
        a->key = keys_secret_free(a->key);
        return start_executor(a, err);
}

static void announce(const struct agent *a)
{
        const struct cfg_agent *cfg = a->cfg;
        char st[160];

        log_info("agent \"%s\" listening on %s (key %s, %u authorized key%s, backend %s, guardian pid %d, "
                 "network half pid %d as %s)",
                 cfg->id, cfg->listen, a->fpr, cfg->n_authorized, cfg->n_authorized == 1 ? "" : "s",
                 hv_backend_name(a->hv), guardian_pid(a->g), (int)a->net_pid,
                 a->user.drop ? a->user.name : "the starting user");
        snprintf(st, sizeof(st), "agent %s on %s, backend %s", cfg->id, cfg->listen, hv_backend_name(a->hv));
        notify_ready(st);
}

/* Returns the exit code: 0 on SIGTERM or SIGINT, 1 when the network half
 * ended (systemd restarts the agent); SIGHUP is taken and ignored. */
static int wait_for_stop(struct agent *a, const sigset_t *set)
{
        int sig, status;

        for (;;) {
                if (sigwait(set, &sig) != 0 || sig == SIGHUP)
                        continue;
                if (sig == SIGCHLD) {
                        if (waitpid(a->net_pid, &status, WNOHANG) != a->net_pid)
                                continue; /* the guardian, or nothing */
                        a->net_pid = 0;
                        log_err("agent \"%s\": the network half ended (%s %d): stopping", a->cfg->id,
                                WIFSIGNALED(status) ? "signal" : "exit code",
                                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                        notify_stopping();
                        return 1;
                }
                log_info("agent \"%s\": signal %s, stopping", a->cfg->id, strsignal(sig));
                notify_stopping();
                return 0;
        }
}

/* A test build's clock offset (LOCKSTEP_CLOCK_OFFSET_S), on before anything
 * reads the time; said loudly, since every command's window depends on it. */
static int clock_offset(lserr *err)
{
        long long s = 0;
        int r = fsutil_clock_offset_env(&s, err);

        if (r > 0)
                log_warn("test clock: this process's Unix time is offset by %+lld s (LOCKSTEP_CLOCK_OFFSET_S)", s);
        return r;
}

int main(int argc, char **argv)
{
        struct options o = {.path = "/etc/lockstep/agent.yaml", .level = LOG_INFO};
        _cleanup_(agent_done) struct agent a = {0};
        sigset_t set;
        lserr err = {0};
        int r = parse_options(argc, argv, &o);

        if (r >= 0)
                return r;
        a.path = o.path;
        a.level = o.level;
        log_setup("lockstep-agent", o.level);
        r = clock_offset(&err);
        if (r >= 0)
                r = cfg_agent_load(a.path, &a.cfg, &err);
        if (r >= 0)
                failpoint_scope(a.cfg->id);
        /* Before the forks: the three processes share the backend's pages, and
         * the guardian has it at hand when a lease ends. */
        if (r >= 0)
                r = hv_preload(a.cfg, &err);
        if (r >= 0 && !o.check_only) {
                /* The lease holder is forked first: before any thread, and
                 * before the key is read, so no copy of it is in the guardian. */
                r = guardian_start(a.cfg, &a.g, &err);
                if (r < 0) {
                        log_err("agent \"%s\": %s", a.cfg->id, err.msg);
                        return 1;
                }
        }
        if (r >= 0)
                r = load_keys(&a, &err);
        if (r >= 0)
                r = sandbox_user_lookup(a.cfg->privsep_user, &a.user, &err);
        if (r < 0) {
                log_err("%s", err.msg);
                return 2;
        }
        if (o.check_only) {
                printf("%s: configuration and keys OK (agent \"%s\", key %s)\n", a.path, a.cfg->id, a.fpr);
                return 0;
        }
        /* The network half is forked before any thread, as the guardian was. */
        block_signals(&set);
        r = split(&a, &err);
        if (r < 0) {
                log_err("agent \"%s\": start: %s", a.cfg->id, err.msg);
                return 1;
        }
        announce(&a);
        return wait_for_stop(&a, &set);
}
