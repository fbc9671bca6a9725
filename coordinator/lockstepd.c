/* lockstepd: the coordinator daemon. Runs in the foreground, finishes what a
 * previous run left unresolved, serves the CLI on its control socket (control.c),
 * runs long operations (ops.c), schedules, reloads and metrics (service.c), and
 * polls agents' health. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "envelope.h"
#include "fsutil.h"
#include "failpoint.h"
#include "log.h"
#include "notify.h"
#include "transport.h"

#define HEALTH_INTERVAL_S 10
#define CONTROL_MAX (256 * 1024)
/* A forward is a control request in a signed envelope; its answer a control
 * reply, as large as the CLI takes one (lockstep.c), in another. */
#define FORWARD_REQUEST_MAX (CONTROL_MAX + 4096)
#define FORWARD_REPLY_MAX (16 * 1024 * 1024 + 4096)

/* What a previous run left unresolved: settled first, on this thread, so the
 * control socket serves (and SIGTERM is heard) while an agent is unreachable.
 * Operations wait for it (ops.c); status and listings do not. */
static void recover_at_start(struct daemon *d)
{
        unsigned left = 0;
        lserr err = {0};

        pthread_rwlock_rdlock(&d->gen);
        if (engine_recover(d->eng, NULL, NULL, &left, &err) < 0)
                log_err("recover at start: %s", err.msg);
        else if (left)
                log_warn("recover at start: %u transaction(s) wait for unreachable agents; retrying every %d s", left,
                         HEALTH_INTERVAL_S);
        pthread_rwlock_unlock(&d->gen);
        pthread_mutex_lock(&d->stop_lock);
        d->recovered = 1;
        pthread_cond_broadcast(&d->stop_cond);
        pthread_mutex_unlock(&d->stop_lock);
}

/* High availability: one look at the election. The moment this lockstepd
 * leads, it settles what the last leader left (commit what has its decision
 * logged, abort the rest: recover_at_start). 1 when it leads. */
static int ha_look(struct daemon *d)
{
        lserr err = {0};
        int r = ha_step(d->ha, d->cat, &err);

        if (r < 0)
                log_err("ha: %s", err.msg);
        if (r == 1) {
                ops_event(d, "leader", NULL, NULL, "%s leads: settling what the last leader left",
                          ha_config(d->ha)->name);
                pthread_rwlock_rdlock(&d->gen);
                service_groups_to_catalog(d, d->cfg);
                pthread_rwlock_unlock(&d->gen);
                recover_at_start(d);
                /* The schedules as the catalog has them now: the last leader's
                 * runs and claims count (a slot it began is not run again). */
                pthread_rwlock_rdlock(&d->gen);
                service_sched_build(d, d->cfg);
                pthread_rwlock_unlock(&d->gen);
        }
        return ha_leading(d->ha, NULL);
}

static void *health_main(void *p)
{
        struct daemon *d = p;
        /* A cluster member looks at the election every second: a takeover
         * waits for no health period. */
        int tick_s = d->ha ? 1 : HEALTH_INTERVAL_S, waited = 0;

        if (!d->ha)
                recover_at_start(d);
        else
                ha_look(d);
        pthread_mutex_lock(&d->stop_lock);
        while (!d->stop) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += tick_s;
                pthread_cond_timedwait(&d->stop_cond, &d->stop_lock, &ts);
                if (d->stop)
                        break;
                pthread_mutex_unlock(&d->stop_lock);
                int leads = !d->ha || ha_look(d);
                waited += tick_s;
                if (leads && waited >= HEALTH_INTERVAL_S) {
                        lserr err = {0};
                        unsigned left = 0;
                        waited = 0;
                        pthread_rwlock_rdlock(&d->gen);
                        /* Also settles what agents hold in doubt and decisions not yet heard. */
                        if (engine_health(d->eng, &left, &err) < 0)
                                log_err("health: %s", err.msg);
                        pthread_rwlock_unlock(&d->gen);
                        pthread_rwlock_rdlock(&d->gen);
                        ops_trim_catalog(d, d->cfg);
                        pthread_rwlock_unlock(&d->gen);
                }
                pthread_mutex_lock(&d->stop_lock);
        }
        pthread_mutex_unlock(&d->stop_lock);
        return NULL;
}

static void usage(FILE *f)
{
        fprintf(f, "usage: lockstepd [-c coordinator.yaml] [--check-config] [-v] [--version]\n");
}

/* Returned by the steps of main when the daemon goes on (any other value is
 * the exit code). */
#define GO_ON (-1)

struct args {
        const char *path;
        int check_only;
        int level;
};

/* What main started and must stop: the control server and two threads. */
struct running {
        struct transport_server *srv;
        pthread_t health, sched;
        int health_started, sched_started;
};

static int parse_args(int argc, char **argv, struct args *a)
{
        static const struct option opts[] = {
                {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'C'},
                {"verbose", no_argument, NULL, 'v'},      {"version", no_argument, NULL, 'V'},
                {"help", no_argument, NULL, 'h'},         {0},
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
                switch (c) {
                case 'c': a->path = optarg; break;
                case 'C': a->check_only = 1; break;
                case 'v': a->level = LOG_DEBUG; break;
                case 'V': printf("lockstepd %s\n", LOCKSTEP_VERSION); return 0;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (optind != argc) {
                usage(stderr);
                return 2;
        }
        return GO_ON;
}

static void init_sync(struct daemon *d)
{
        pthread_mutex_init(&d->lock, NULL);
        pthread_mutex_init(&d->sched_rows, NULL);
        pthread_cond_init(&d->op_changed, NULL);
        pthread_mutex_init(&d->stop_lock, NULL);
        pthread_cond_init(&d->stop_cond, NULL);
        /* A reload only ever tries the write lock (service_apply_pending), so readers
         * never queue behind it and nobody blocks on a reload. */
        pthread_rwlock_init(&d->gen, NULL);
}

/* Loads the configuration and the signing key; --check-config stops here. */
static int load_config(struct daemon *d, const char *path, int check_only)
{
        char fpr[KEYS_FPR_LEN];
        lserr err = {0};
        int r;

        d->cfg_path = path;
        r = cfg_coord_load(path, &d->cfg, &err);
        if (r >= 0)
                r = keys_load_secret(d->cfg->key, &d->key, &err);
        if (r < 0) {
                log_err("%s", err.msg);
                return 2;
        }
        if (!check_only)
                return GO_ON;
        keys_fingerprint(keys_secret_public(d->key)->id, fpr);
        printf("%s: configuration and key OK (key %s, %u agents, %u groups)\n", path, fpr, d->cfg->n_agents,
               d->cfg->n_groups);
        return 0;
}

/* Opens the catalog and counter and builds the engine and its generation. */
static int open_state(struct daemon *d)
{
        lserr err = {0};
        int r;

        if (d->cfg->ha)
                r = ha_open(d->cfg->ha, d->cfg->control, &d->cat, &d->ha, &err);
        else
                r = cat_open(d->cfg->catalog, &d->cat, &err);
        if (r >= 0 && d->cfg->ha && d->cfg->ha->listen)
                r = forward_new(d->cfg->ha, d->key, FORWARD_REQUEST_MAX, FORWARD_REPLY_MAX, &d->fwd, &err);
        /* Op ids are polled through followers, which forward a poll of an id
         * they do not have: a cluster member's ids start at random, so that one
         * is never another lockstepd's. */
        if (d->ha)
                d->next_op = randombytes_random();
        if (r >= 0)
                r = counter_open(d->cfg->counter_file, &d->ctr, &err);
        if (r >= 0)
                r = slots_new(d->cfg->max_cuts, d->cfg->max_cuts_per_agent, &d->slots);
        if (r >= 0)
                r = metrics_new(&d->metrics);
        if (r >= 0)
                r = engine_new(d->cfg, d->key, d->cat, d->ctr, d->slots, &d->eng, &err);
        if (r >= 0 && d->ha)
                engine_set_fence(d->eng, ha_fence(d->ha));
        if (r >= 0 && !(d->cur = calloc(1, sizeof(*d->cur))))
                r = -ENOMEM;
        if (r < 0) {
                log_err("start: %s", err.msg[0] ? err.msg : strerror(-r));
                return 1;
        }
        d->cur->cfg = d->cfg;
        d->cur->eng = d->eng;
        return GO_ON;
}

/* Serves the control socket and starts the health and schedule threads. */
static int serve(struct daemon *d, struct running *run)
{
        char st[160];
        nng_socket sock;
        lserr err = {0};
        int r;

        snprintf(st, sizeof(st), "%u agents, %u groups, %zu scheduled", d->cfg->n_agents, d->cfg->n_groups,
                 d->n_sched);
        if (d->ha)
                log_info("lockstepd %s: control %s, catalog in etcd (%s, %u endpoint(s)) as \"%s\", %s",
                         LOCKSTEP_VERSION, d->cfg->control, d->cfg->ha->prefix, d->cfg->ha->n_etcd, d->cfg->ha->name,
                         st);
        else
                log_info("lockstepd %s: control %s, catalog %s, %s", LOCKSTEP_VERSION, d->cfg->control,
                         d->cfg->catalog, st);
        r = transport_listen(d->cfg->control, CONTROL_MAX, 0660, NULL, &sock, &err);
        if (r >= 0)
                r = transport_serve(sock, 4, control_handle, d, &run->srv, &err);
        if (r < 0) {
                log_err("control socket: %s", err.msg);
                return 1;
        }
        if (d->fwd && forward_serve(d->fwd, 4, control_request, d, &err) < 0) {
                log_err("ha.listen: %s", err.msg);
                return 1;
        }
        if (d->fwd)
                log_info("forwards: served on %s, sent to the leader's", d->cfg->ha->listen);
        if (pthread_create(&run->health, NULL, health_main, d) != 0) {
                /* Without it nothing is recovered and operations wait for that. */
                log_err("cannot start the health and recovery thread");
                return 1;
        }
        run->health_started = 1;
        if (pthread_create(&run->sched, NULL, service_sched_main, d) == 0)
                run->sched_started = 1;
        notify_ready(st);
        return GO_ON;
}

/* SIGHUP reloads; SIGTERM or SIGINT returns. */
static void wait_for_stop(struct daemon *d, sigset_t *set, const char *path)
{
        int sig;

        for (;;) {
                if (sigwait(set, &sig) != 0)
                        continue;
                if (sig == SIGHUP) {
                        int applied = 0;
                        lserr e2 = {0};
                        log_info("signal SIGHUP: reloading %s", path);
                        notify_reloading();
                        service_reload(d, 0, &applied, &e2); /* refusals are logged as events */
                        notify_ready(applied ? "configuration reloaded"
                                     : e2.msg[0] ? "reload refused; running configuration kept"
                                                 : "reload waits for running operations");
                        continue;
                }
                log_info("signal %s: stopping", strsignal(sig));
                notify_stopping();
                return;
        }
}

/* Where a stop is: the line that cuts a stuck one short names it. */
static _Atomic(const char *) stop_step = "starting";

static void stop_at(const char *step)
{
        atomic_store(&stop_step, step);
        failpoint_stop(step);
}

/* A stop that hangs (nng 1.5's close can, a catalog on a dead disk can) must
 * not keep lockstepd up: another SIGTERM or SIGINT, or stop_timeout_s, ends it
 * there. What it leaves is what a crash leaves: the next start settles the
 * transactions, the agents' leases thaw their guests. Both signals are blocked
 * in every thread since start, so this one takes them. */
static void *stop_watch_main(void *p)
{
        unsigned timeout_s = (unsigned)(uintptr_t)p;
        struct timespec ts = {.tv_sec = timeout_s};
        sigset_t set;
        int sig;

        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        do
                sig = sigtimedwait(&set, NULL, &ts);
        while (sig < 0 && errno == EINTR);
        if (sig > 0)
                log_err("signal %s while stopping (at: %s): exiting now, without a clean stop", strsignal(sig),
                        atomic_load(&stop_step));
        else
                log_err("still stopping after %u s (stop_timeout_s; at: %s): exiting now, without a clean stop",
                        timeout_s, atomic_load(&stop_step));
        _exit(1);
}

static void watch_the_stop(unsigned timeout_s)
{
        pthread_t t;

        if (pthread_create(&t, NULL, stop_watch_main, (void *)(uintptr_t)timeout_s) != 0)
                log_warn("stopping without a bound: cannot start the stop's watch");
        else
                pthread_detach(t);
}

/* Stops what run started and frees what d holds, however far the start got. */
static void stop_and_free(struct daemon *d, struct running *run)
{
        stop_at("stop-control");
        transport_server_stop(run->srv);
        /* No forward comes in or goes out from here on. */
        stop_at("stop-forward");
        d->fwd = forward_free(d->fwd);
        /* Operations waiting for a slot give up now, so the joins below are quick. */
        if (d->slots)
                slots_cancel(d->slots);
        engine_stop_all();
        stop_at("stop-threads");
        pthread_mutex_lock(&d->stop_lock);
        d->stop = 1;
        pthread_cond_broadcast(&d->stop_cond);
        pthread_mutex_unlock(&d->stop_lock);
        if (run->health_started)
                pthread_join(run->health, NULL);
        if (run->sched_started)
                pthread_join(run->sched, NULL);
        stop_at("stop-operations");
        for (int i = 0; i < MAX_OPS; i++)
                ops_free(d->ops[i]);
        /* Every op was joined above and put its reference: only cur is left. */
        if (d->cur)
                ops_gen_free(d->cur);
        else
                engine_free(d->eng);
        engine_free(d->pending_eng);
        cfg_coord_free(d->pending_cfg);
        metrics_free(d->metrics);
        slots_free(d->slots);
        counter_free(d->ctr);
        /* Resigned first: the next leader need not wait out our lease. */
        stop_at("stop-resign");
        ha_close(d->ha);
        stop_at("stop-catalog");
        cat_close(d->cat);
        keys_secret_free(d->key);
        free(d->sched);
        if (!d->cur)
                cfg_coord_free(d->cfg);
}

int main(int argc, char **argv)
{
        struct args a = {.path = "/etc/lockstep/coordinator.yaml", .level = LOG_INFO};
        struct daemon d = {0};
        struct running run = {0};
        sigset_t set;
        int rc;

        rc = parse_args(argc, argv, &a);
        if (rc != GO_ON)
                return rc;
        log_setup("lockstepd", a.level);
        failpoint_scope("lockstepd");
        /* Each operation is a thread: without a cap, glibc gives threads
         * arenas of their own, up to 8 per core, each keeping freed memory. */
        mallopt(M_ARENA_MAX, 2);
        daemon_self = &d;
        init_sync(&d);
        rc = load_config(&d, a.path, a.check_only);
        /* Three lockstepd of a cluster on one machine (the lab, tests) are
         * armed apart: by their names. */
        if (rc == GO_ON && d.cfg->ha)
                failpoint_scope(d.cfg->ha->name);
        if (rc == GO_ON) {
                sigemptyset(&set);
                sigaddset(&set, SIGTERM);
                sigaddset(&set, SIGINT);
                sigaddset(&set, SIGHUP);
                pthread_sigmask(SIG_BLOCK, &set, NULL);
                signal(SIGPIPE, SIG_IGN);
                rc = open_state(&d);
        }
        if (rc == GO_ON) {
                /* A cluster member records its groups when it leads. */
                if (!d.ha)
                        service_groups_to_catalog(&d, d.cfg);
                /* Everything that reads d.cfg unlocked happens before the control
                 * socket serves: from then on a reload may swap it. */
                /* A cluster member plans its schedules when it leads. */
                if (!d.ha)
                        service_sched_build(&d, d.cfg);
                service_metrics_apply(&d);
                rc = serve(&d, &run);
        }
        if (rc == GO_ON) {
                wait_for_stop(&d, &set, a.path);
                rc = 0;
                unsigned stop_s;
                pthread_rwlock_rdlock(&d.gen); /* a reload swaps cfg under it */
                stop_s = d.cfg->stop_timeout_s;
                pthread_rwlock_unlock(&d.gen);
                watch_the_stop(stop_s);
        }
        stop_and_free(&d, &run);
        return rc;
}
