/* lockstep-agent: the per-host daemon. Loads its config and keys, listens for
 * signed commands and answers each with a signed reply. Runs in the foreground. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_config.h"
#include "cleanup.h"
#include "dispatch.h"
#include "envelope.h"
#include "guardian.h"
#include "hv.h"
#include "keys.h"
#include "log.h"
#include "notify.h"
#include "replay.h"
#include "transport.h"
#include "txn.h"

#define WORKERS 4
#define NONCE_CACHE 16384

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

/* What the daemon owns; agent_done frees it in the order that stops it safely. */
struct agent {
        const char *path;
        struct cfg_agent *cfg;
        struct keys_secret *key;
        struct env_trusted *trusted;
        struct replay *rp;
        struct env_verifier *v;
        struct dispatch *d;
        struct guardian *g;
        struct hv *hv;
        struct txn_mgr *txns;
        struct transport_server *srv;
        char fpr[KEYS_FPR_LEN];
};

static void agent_done(struct agent *a)
{
        /* No new commands, then thaw whatever is still frozen, then exit. */
        transport_server_stop(a->srv);
        if (a->txns)
                txn_mgr_shutdown(a->txns);
        txn_mgr_free(a->txns);
        guardian_stop(a->g);
        hv_close(a->hv);
        dispatch_free(a->d);
        env_verifier_free(a->v);
        replay_free(a->rp);
        free(a->trusted);
        keys_secret_free(a->key);
        cfg_agent_free(a->cfg);
}

struct options {
        const char *path;
        int check_only, level, guardian_fd;
};

/* -1 to go on, else the exit code. */
static int parse_options(int argc, char **argv, struct options *o)
{
        static const struct option opts[] = {
                {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'C'},
                {"verbose", no_argument, NULL, 'v'},      {"version", no_argument, NULL, 'V'},
                {"help", no_argument, NULL, 'h'},         {"guardian", required_argument, NULL, 'G'},
                {0},
        };
        char *end;
        int c;

        while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
                switch (c) {
                case 'c': o->path = optarg; break;
                case 'C': o->check_only = 1; break;
                case 'v': o->level = LOG_DEBUG; break;
                case 'V': printf("lockstep-agent %s\n", LOCKSTEP_VERSION); return 0;
                case 'h': usage(stdout); return 0;
                case 'G':
                        o->guardian_fd = (int)strtol(optarg, &end, 10);
                        if (*end || end == optarg || o->guardian_fd < 0) {
                                usage(stderr);
                                return 2;
                        }
                        break;
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

/* Signals are taken by sigwait in wait_for_stop, never by the worker threads. */
static void block_signals(sigset_t *set)
{
        sigemptyset(set);
        sigaddset(set, SIGTERM);
        sigaddset(set, SIGINT);
        sigaddset(set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, set, NULL);
        signal(SIGPIPE, SIG_IGN);
}

/* Hypervisor, transactions (recovered from the journal), replay state,
 * verifier, dispatcher, then the listening socket and its workers. */
static int start_serving(struct agent *a, lserr *err)
{
        const struct cfg_agent *cfg = a->cfg;
        long long window_us = (long long)cfg->time_window_s * 1000000LL;
        struct transport_tls tls = {.cert = cfg->tls_cert, .key = cfg->tls_key};
        nng_socket sock;
        int r = hv_open(cfg, &a->hv, err);

        if (r >= 0)
                r = txn_mgr_new(cfg, a->hv, a->g, &a->txns, err);
        if (r >= 0)
                r = txn_mgr_recover(a->txns, err);
        if (r >= 0)
                r = replay_open(cfg->state_dir, NONCE_CACHE, window_us, &a->rp, err);
        if (r >= 0)
                r = env_verifier_new(cfg->id, a->trusted, cfg->n_authorized, a->rp, window_us, ENV_MAX_DEFAULT,
                                     &a->v, err);
        if (r >= 0)
                r = dispatch_new(cfg, a->key, a->v, a->hv, a->txns, &a->d, err);
        if (r >= 0)
                r = transport_listen(cfg->listen, ENV_MAX_DEFAULT, 0, &tls, &sock, err);
        if (r < 0)
                return r;
        r = transport_serve(sock, WORKERS, dispatch_handle, a->d, &a->srv, err);
        if (r < 0)
                nng_close(sock);
        return r;
}

static void announce(const struct agent *a)
{
        const struct cfg_agent *cfg = a->cfg;
        char st[160];

        log_info("agent \"%s\" listening on %s (key %s, %u authorized key%s, backend %s, guardian pid %d)", cfg->id,
                 cfg->listen, a->fpr, cfg->n_authorized, cfg->n_authorized == 1 ? "" : "s", hv_backend_name(a->hv),
                 guardian_pid(a->g));
        snprintf(st, sizeof(st), "agent %s on %s, backend %s", cfg->id, cfg->listen, hv_backend_name(a->hv));
        notify_ready(st);
}

/* Returns on SIGTERM or SIGINT; SIGHUP is taken and ignored. */
static void wait_for_stop(const struct agent *a, const sigset_t *set)
{
        int sig;

        for (;;) {
                if (sigwait(set, &sig) != 0 || sig == SIGHUP)
                        continue;
                log_info("agent \"%s\": signal %s, stopping", a->cfg->id, strsignal(sig));
                notify_stopping();
                return;
        }
}

/* "--guardian FD": this process is the lease holder, not the agent. */
static int run_guardian(struct cfg_agent *cfg, int fd)
{
        guardian_run(cfg, fd);
        cfg_agent_free(cfg);
        return 0;
}

int main(int argc, char **argv)
{
        struct options o = {.path = "/etc/lockstep/agent.yaml", .level = LOG_INFO, .guardian_fd = -1};
        _cleanup_(agent_done) struct agent a = {0};
        sigset_t set;
        lserr err = {0};
        int r = parse_options(argc, argv, &o);

        if (r >= 0)
                return r;
        a.path = o.path;
        log_setup(o.guardian_fd >= 0 ? "lockstep-agent[guardian]" : "lockstep-agent", o.level);
        r = cfg_agent_load(a.path, &a.cfg, &err);
        if (r >= 0 && o.guardian_fd >= 0)
                return run_guardian(TAKE_PTR(a.cfg), o.guardian_fd);
        if (r >= 0)
                r = load_keys(&a, &err);
        if (r < 0) {
                log_err("%s", err.msg);
                return 2;
        }
        if (o.check_only) {
                printf("%s: configuration and keys OK (agent \"%s\", key %s)\n", a.path, a.cfg->id, a.fpr);
                return 0;
        }
        /* The lease holder is forked before any thread exists. */
        r = guardian_start(a.path, &a.g, &err);
        if (r < 0) {
                log_err("agent \"%s\": %s", a.cfg->id, err.msg);
                return 1;
        }
        block_signals(&set);
        r = start_serving(&a, &err);
        if (r < 0) {
                log_err("agent \"%s\": start: %s", a.cfg->id, err.msg);
                return 1;
        }
        announce(&a);
        wait_for_stop(&a, &set);
        return 0;
}
