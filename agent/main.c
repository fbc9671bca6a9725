/* lockstep-agent: the per-host daemon. Loads its config and keys, listens for
 * signed commands and answers each with a signed reply. Runs in the foreground. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_config.h"
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
        struct env_trusted *t = calloc(cfg->n_authorized, sizeof(*t));

        if (!t)
                return -ENOMEM;
        for (unsigned i = 0; i < cfg->n_authorized; i++) {
                lserr e = {0};
                int r = keys_load_public(cfg->authorized[i].pubkey, &t[i].pub, &e);
                if (r < 0) {
                        free(t);
                        return lserr_set(err, r, "%s: authorized[%u] (\"%s\"): %s", path, i, cfg->authorized[i].name,
                                         e.msg);
                }
                t[i].roles = cfg->authorized[i].roles;
                snprintf(t[i].name, sizeof(t[i].name), "%s", cfg->authorized[i].name);
        }
        *ret = t;
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'C'},
                {"verbose", no_argument, NULL, 'v'},      {"version", no_argument, NULL, 'V'},
                {"help", no_argument, NULL, 'h'},         {"guardian", required_argument, NULL, 'G'},
                {0},
        };
        const char *path = "/etc/lockstep/agent.yaml";
        struct cfg_agent *cfg = NULL;
        struct keys_secret *key = NULL;
        struct env_trusted *trusted = NULL;
        struct replay *rp = NULL;
        struct env_verifier *v = NULL;
        struct dispatch *d = NULL;
        struct guardian *g = NULL;
        struct hv *hv = NULL;
        struct txn_mgr *txns = NULL;
        struct transport_server *srv = NULL;
        struct transport_tls tls = {0};
        nng_socket sock;
        int check_only = 0, level = LOG_INFO, c, r, sig, rc = 1, guardian_fd = -1;
        char fpr[KEYS_FPR_LEN];
        sigset_t set;
        lserr err = {0};

        while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
                switch (c) {
                case 'c': path = optarg; break;
                case 'C': check_only = 1; break;
                case 'v': level = LOG_DEBUG; break;
                case 'V': printf("lockstep-agent %s\n", LOCKSTEP_VERSION); return 0;
                case 'h': usage(stdout); return 0;
                case 'G': guardian_fd = atoi(optarg); break;
                default: usage(stderr); return 2;
                }
        }
        if (optind != argc) {
                usage(stderr);
                return 2;
        }
        log_setup(guardian_fd >= 0 ? "lockstep-agent[guardian]" : "lockstep-agent", level);

        r = cfg_agent_load(path, &cfg, &err);
        if (r < 0) {
                log_err("%s", err.msg);
                return 2;
        }
        if (guardian_fd >= 0) {
                guardian_run(cfg, guardian_fd);
                cfg_agent_free(cfg);
                return 0;
        }
        r = keys_load_secret(cfg->key, &key, &err);
        if (r >= 0)
                r = load_trusted(cfg, path, &trusted, &err);
        if (r < 0) {
                log_err("%s", err.msg);
                rc = 2;
                goto out;
        }
        keys_fingerprint(keys_secret_public(key)->id, fpr);
        if (check_only) {
                printf("%s: configuration and keys OK (agent \"%s\", key %s)\n", path, cfg->id, fpr);
                rc = 0;
                goto out;
        }

        /* The lease holder is forked before any thread exists. */
        r = guardian_start(path, &g, &err);
        if (r < 0) {
                log_err("agent \"%s\": %s", cfg->id, err.msg);
                goto out;
        }
        /* Signals are taken by sigwait below, never by the worker threads. */
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = hv_open(cfg, &hv, &err);
        if (r >= 0)
                r = txn_mgr_new(cfg, hv, g, &txns, &err);
        if (r >= 0)
                r = txn_mgr_recover(txns, &err);
        if (r >= 0)
                r = replay_open(cfg->state_dir, NONCE_CACHE, (long long)cfg->time_window_s * 1000000LL, &rp, &err);
        if (r >= 0)
                r = env_verifier_new(cfg->id, trusted, cfg->n_authorized, rp, (long long)cfg->time_window_s * 1000000LL,
                                     ENV_MAX_DEFAULT, &v, &err);
        if (r >= 0)
                r = dispatch_new(cfg, key, v, hv, txns, &d, &err);
        tls.cert = cfg->tls_cert;
        tls.key = cfg->tls_key;
        if (r >= 0)
                r = transport_listen(cfg->listen, ENV_MAX_DEFAULT, 0, &tls, &sock, &err);
        if (r >= 0)
                r = transport_serve(sock, WORKERS, dispatch_handle, d, &srv, &err);
        if (r < 0) {
                log_err("agent \"%s\": start: %s", cfg->id, err.msg);
                goto out;
        }
        log_info("agent \"%s\" listening on %s (key %s, %u authorized key%s, backend %s, guardian pid %d)", cfg->id,
                 cfg->listen, fpr, cfg->n_authorized, cfg->n_authorized == 1 ? "" : "s", hv_backend_name(hv),
                 guardian_pid(g));
        {
                char st[160];
                snprintf(st, sizeof(st), "agent %s on %s, backend %s", cfg->id, cfg->listen, hv_backend_name(hv));
                notify_ready(st);
        }

        for (;;) {
                if (sigwait(&set, &sig) != 0)
                        continue;
                if (sig == SIGHUP)
                        continue;
                log_info("agent \"%s\": signal %s, stopping", cfg->id, strsignal(sig));
                notify_stopping();
                break;
        }
        rc = 0;
out:
        /* No new commands, then thaw whatever is still frozen, then exit. */
        transport_server_stop(srv);
        if (txns)
                txn_mgr_shutdown(txns);
        txn_mgr_free(txns);
        guardian_stop(g);
        hv_close(hv);
        dispatch_free(d);
        env_verifier_free(v);
        replay_free(rp);
        free(trusted);
        keys_secret_free(key);
        cfg_agent_free(cfg);
        return rc;
}
