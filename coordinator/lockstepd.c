/* lockstepd: the coordinator daemon. Runs in the foreground, finishes what a
 * previous run left unresolved, serves the CLI on its control socket, takes cuts
 * and polls agents' health in the background. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "config.h"
#include "engine.h"
#include "envelope.h"
#include "fsutil.h"
#include "keys.h"
#include "lockstep.pb-c.h"
#include "log.h"
#include "report.h"
#include "transport.h"

#define MAX_OPS 64
#define MAX_EVENTS 4096
#define HEALTH_INTERVAL_S 10
#define CONTROL_MAX (256 * 1024)

/* A long operation the CLI follows by polling. */
struct op {
        char id[24];
        int is_delete;            /* snapshot.delete of cut `target` */
        int is_revert, undo;      /* snapshot.revert to `target` */
        char target[65];
        char group[LS_NAME_MAX + 1];
        char name[LS_NAME_MAX + 1];
        int mode;
        unsigned lease_s;
        char txid[65];
        char **events;
        size_t n_events;
        int done, exit_code;
        char *text, *json, *error;
        pthread_t thread;
};

struct daemon {
        struct cfg_coord *cfg;
        struct catalog *cat;
        struct engine *eng;
        pthread_mutex_t lock; /* ops */
        pthread_cond_t op_changed; /* an op has a new event or is done */
        struct op *ops[MAX_OPS];
        unsigned next_op;
        int stop;
        pthread_mutex_t stop_lock;
        pthread_cond_t stop_cond;
};

/* The one daemon of this process, for callbacks that only get their op. */
static struct daemon *the_daemon;

static void op_event(void *arg, const char *line)
{
        struct op *op = arg;
        char *copy = strdup(line);

        pthread_mutex_lock(&the_daemon->lock);
        if (copy && op->n_events < MAX_EVENTS) {
                char **ne = realloc(op->events, (op->n_events + 1) * sizeof(*ne));
                if (ne) {
                        op->events = ne;
                        op->events[op->n_events++] = copy;
                        copy = NULL;
                }
        }
        pthread_cond_broadcast(&the_daemon->op_changed);
        pthread_mutex_unlock(&the_daemon->lock);
        free(copy);
}

/* Renders into a malloc'd string. */
static char *render(int (*fn)(struct daemon *, const void *, int, FILE *, lserr *), struct daemon *d, const void *a,
                    int as_json, lserr *err)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        if (!f)
                return NULL;
        if (fn(d, a, as_json, f, err) < 0) {
                fclose(f);
                free(buf);
                return NULL;
        }
        fclose(f);
        return buf;
}

static int r_cut(struct daemon *d, const void *a, int j, FILE *f, lserr *err)
{
        return report_cut(d->cat, a, j, f, err);
}

static int r_cuts(struct daemon *d, const void *a, int j, FILE *f, lserr *err)
{
        return report_cuts(d->cat, a, j, f, err);
}

static int r_agents(struct daemon *d, const void *a, int j, FILE *f, lserr *err)
{
        (void)a;
        return report_agents(d->cat, j, f, err);
}

static int r_groups(struct daemon *d, const void *a, int j, FILE *f, lserr *err)
{
        (void)a;
        (void)err;
        return report_groups(d->cfg, j, f);
}

static void *op_main(void *p)
{
        struct op *op = p;
        struct daemon *d = the_daemon;
        struct engine_cut_req req = {.group = op->group, .name = op->name[0] ? op->name : NULL, .mode = op->mode,
                                     .lease_s = op->lease_s};
        char txid[65] = "";
        lserr err = {0};
        int r = op->is_revert ? engine_revert(d->eng, op->target, op->undo, op_event, op, txid, &err)
                : op->is_delete ? engine_delete(d->eng, op->target, op_event, op, txid, &err)
                                : engine_snapshot(d->eng, &req, op_event, op, txid, &err);
        char *text = NULL, *json = NULL, *error = NULL;
        /* A delete's result is the cut it deleted, as it stands now; a
         * revert's is the revert (its pre-revert branch). */
        const char *shown = op->is_delete ? op->target : txid;

        if (txid[0]) {
                text = render(r_cut, d, shown, 0, &err);
                json = render(r_cut, d, shown, 1, &err);
        }
        if (r < 0)
                error = strdup(err.msg);
        pthread_mutex_lock(&d->lock);
        snprintf(op->txid, sizeof(op->txid), "%s", txid);
        op->text = text;
        op->json = json;
        op->error = error;
        op->exit_code = r == 0 ? 0 : r == 1 ? 1 : 2;
        op->done = 1;
        pthread_cond_broadcast(&d->op_changed);
        pthread_mutex_unlock(&d->lock);
        return NULL;
}

static void op_free(struct op *op)
{
        if (!op)
                return;
        pthread_join(op->thread, NULL);
        for (size_t i = 0; i < op->n_events; i++)
                free(op->events[i]);
        free(op->events);
        free(op->text);
        free(op->json);
        free(op->error);
        free(op);
}

static const char *option(const Lockstep__ControlRequest *q, const char *key)
{
        size_t kl = strlen(key);

        for (size_t i = 0; i < q->n_options; i++)
                if (!strncmp(q->options[i], key, kl) && q->options[i][kl] == '=')
                        return q->options[i] + kl + 1;
        return NULL;
}

static void reply_error(Lockstep__ControlReply *rep, int code, const char *msg, char **owned)
{
        rep->exit_code = code;
        *owned = strdup(msg);
        rep->error = *owned ? *owned : (char *)"out of memory";
}

static int start_snapshot(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep,
                          char **owned)
{
        const char *mode = option(q, "mode"), *lease = option(q, "lease"), *name = option(q, "name");
        int is_delete = !strcmp(q->command, "snapshot.delete"), is_revert = !strcmp(q->command, "snapshot.revert");
        struct op *op;
        int slot;

        if ((is_delete || is_revert) && q->n_args != 1) {
                reply_error(rep, 2, is_delete ? "usage: snapshot delete ID" : "usage: snapshot revert ID [--undo]", owned);
                return 0;
        }
        if (q->n_args != 1) {
                reply_error(rep, 2, "usage: snapshot create GROUP [--name N] [--mode quiesce|pause|memory] [--lease S]",
                            owned);
                return 0;
        }
        op = calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        op->is_delete = is_delete;
        op->is_revert = is_revert;
        op->undo = option(q, "undo") != NULL;
        snprintf(op->target, sizeof(op->target), "%.64s", q->args[0]);
        snprintf(op->group, sizeof(op->group), "%.64s", q->args[0]);
        snprintf(op->name, sizeof(op->name), "%.64s", name ? name : "");
        op->mode = !mode ? -1 : !strcmp(mode, "quiesce") ? CFG_MODE_QUIESCE : !strcmp(mode, "pause") ? CFG_MODE_PAUSE
                                                       : !strcmp(mode, "memory")                     ? CFG_MODE_MEMORY
                                                                                                     : -2;
        op->lease_s = lease ? (unsigned)strtoul(lease, NULL, 10) : 0;
        if (op->mode == -2 || (lease && op->lease_s == 0)) {
                free(op);
                reply_error(rep, 2, "snapshot create: --mode must be quiesce, pause or memory; --lease a number of seconds",
                            owned);
                return 0;
        }
        pthread_mutex_lock(&d->lock);
        slot = (int)(d->next_op % MAX_OPS);
        snprintf(op->id, sizeof(op->id), "op-%u", d->next_op++);
        if (d->ops[slot] && !d->ops[slot]->done) {
                pthread_mutex_unlock(&d->lock);
                free(op);
                reply_error(rep, 2, "too many operations running", owned);
                return 0;
        }
        struct op *old = d->ops[slot];
        d->ops[slot] = op;
        pthread_mutex_unlock(&d->lock);
        op_free(old);
        if (pthread_create(&op->thread, NULL, op_main, op) != 0) {
                op->done = 1;
                op->exit_code = 2;
                reply_error(rep, 2, "cannot start a thread for the snapshot", owned);
                return 0;
        }
        *owned = strdup(op->id);
        rep->op = *owned;
        return 0;
}

/* op.poll: events from `from` on, and the result once done. Strings are copied
 * so the op may be replaced while the reply is packed. */
static int poll_op(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep, char ***strs,
                   size_t *n_strs)
{
        struct op *op = NULL;
        size_t n = 0;

        pthread_mutex_lock(&d->lock);
        for (int i = 0; i < MAX_OPS; i++)
                if (d->ops[i] && q->n_args == 1 && !strcmp(d->ops[i]->id, q->args[0]))
                        op = d->ops[i];
        if (!op) {
                pthread_mutex_unlock(&d->lock);
                rep->exit_code = 2;
                rep->error = (char *)"no such operation";
                return 0;
        }
        /* A long poll: the CLI hears of each step as it happens, not on a tick. */
        {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += 1;
                while (!op->done && q->from >= op->n_events &&
                       pthread_cond_timedwait(&d->op_changed, &d->lock, &ts) == 0)
                        ;
        }
        size_t from = q->from < op->n_events ? q->from : op->n_events;
        *strs = calloc(op->n_events - from + 4, sizeof(char *));
        if (!*strs) {
                pthread_mutex_unlock(&d->lock);
                return -ENOMEM;
        }
        rep->events = *strs;
        for (size_t i = from; i < op->n_events; i++)
                (*strs)[n++] = strdup(op->events[i]);
        rep->n_events = n;
        rep->next = (uint32_t)op->n_events;
        rep->done = op->done;
        if (op->done) {
                rep->exit_code = op->exit_code;
                rep->text = (*strs)[n] = strdup(op->text ? op->text : "");
                rep->json = (*strs)[n + 1] = strdup(op->json ? op->json : "");
                rep->error = (*strs)[n + 2] = strdup(op->error ? op->error : "");
        }
        *n_strs = n + 3;
        pthread_mutex_unlock(&d->lock);
        return 0;
}

static void recover_event(void *arg, const char *line)
{
        FILE *f = arg;
        fprintf(f, "%s\n", line);
}

static int control(void *arg, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len)
{
        struct daemon *d = arg;
        Lockstep__ControlReply rep = LOCKSTEP__CONTROL_REPLY__INIT;
        Lockstep__ControlRequest *q = lockstep__control_request__unpack(NULL, len, req);
        char *owned = NULL, *text = NULL, *json = NULL, **strs = NULL;
        size_t n_strs = 0;
        lserr err = {0};
        int r = 0;

        if (!q) {
                rep.exit_code = 2;
                rep.error = (char *)"control request does not unpack";
        } else if (!strcmp(q->command, "snapshot.create") || !strcmp(q->command, "snapshot.delete") ||
                   !strcmp(q->command, "snapshot.revert")) {
                r = start_snapshot(d, q, &rep, &owned);
        } else if (!strcmp(q->command, "op.poll")) {
                r = poll_op(d, q, &rep, &strs, &n_strs);
        } else if (!strcmp(q->command, "snapshot.list") || !strcmp(q->command, "snapshot.show") ||
                   !strcmp(q->command, "agents") || !strcmp(q->command, "groups")) {
                int (*fn)(struct daemon *, const void *, int, FILE *, lserr *) =
                        !strcmp(q->command, "snapshot.list") ? r_cuts
                        : !strcmp(q->command, "snapshot.show") ? r_cut
                        : !strcmp(q->command, "agents")        ? r_agents
                                                               : r_groups;
                const char *a = q->n_args ? q->args[0] : NULL;
                if (fn == r_cut && !a) {
                        rep.exit_code = 2;
                        rep.error = (char *)"usage: snapshot show ID";
                } else {
                        if (fn == r_agents)
                                engine_poll_agents(d->eng, &err);
                        text = render(fn, d, a, 0, &err);
                        json = render(fn, d, a, 1, &err);
                        rep.text = text;
                        rep.json = json;
                        if (!text || !json) {
                                rep.exit_code = 2;
                                rep.error = err.msg[0] ? err.msg : (char *)"cannot render";
                        }
                }
                rep.done = 1;
        } else if (!strcmp(q->command, "recover")) {
                unsigned left = 0;
                size_t tl = 0;
                FILE *f = open_memstream(&text, &tl);
                r = f ? engine_recover(d->eng, recover_event, f, &left, &err) : -ENOMEM;
                if (f) {
                        fprintf(f, "%s\n", r < 0 ? err.msg
                                          : left  ? "some transactions could not be finished yet: an agent is unreachable"
                                                  : "nothing left unresolved");
                        fclose(f);
                }
                rep.text = text;
                rep.exit_code = r < 0 || left ? 1 : 0;
                rep.done = 1;
                r = 0;
        } else {
                rep.exit_code = 2;
                rep.error = (char *)"unknown command";
        }
        if (r >= 0) {
                size_t n = lockstep__control_reply__get_packed_size(&rep);
                *ret = malloc(n ? n : 1);
                if (*ret) {
                        lockstep__control_reply__pack(&rep, *ret);
                        *ret_len = n;
                } else {
                        r = -ENOMEM;
                }
        }
        for (size_t i = 0; i < n_strs; i++)
                free(strs[i]);
        free(strs);
        free(owned);
        free(text);
        free(json);
        if (q)
                lockstep__control_request__free_unpacked(q, NULL);
        return r;
}

static void *health_main(void *p)
{
        struct daemon *d = p;

        pthread_mutex_lock(&d->stop_lock);
        while (!d->stop) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += HEALTH_INTERVAL_S;
                pthread_cond_timedwait(&d->stop_cond, &d->stop_lock, &ts);
                if (d->stop)
                        break;
                pthread_mutex_unlock(&d->stop_lock);
                lserr err = {0};
                unsigned left = 0;
                engine_poll_agents(d->eng, &err);
                /* Settles what agents hold in doubt and decisions not yet heard. */
                if (engine_recover(d->eng, NULL, NULL, &left, &err) < 0)
                        log_err("recover: %s", err.msg);
                pthread_mutex_lock(&d->stop_lock);
        }
        pthread_mutex_unlock(&d->stop_lock);
        return NULL;
}

static void usage(FILE *f)
{
        fprintf(f, "usage: lockstepd [-c coordinator.yaml] [--check-config] [-v] [--version]\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'C'},
                {"verbose", no_argument, NULL, 'v'},      {"version", no_argument, NULL, 'V'},
                {"help", no_argument, NULL, 'h'},         {0},
        };
        const char *path = "/etc/lockstep/coordinator.yaml";
        struct daemon d = {0};
        struct keys_secret *key = NULL;
        struct transport_server *srv = NULL;
        pthread_t health;
        int health_started = 0, check_only = 0, level = LOG_INFO, c, r, sig, rc = 1;
        unsigned left = 0;
        nng_socket sock;
        sigset_t set;
        lserr err = {0};

        while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
                switch (c) {
                case 'c': path = optarg; break;
                case 'C': check_only = 1; break;
                case 'v': level = LOG_DEBUG; break;
                case 'V': printf("lockstepd %s\n", LOCKSTEP_VERSION); return 0;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        log_setup("lockstepd", level);
        the_daemon = &d;
        pthread_mutex_init(&d.lock, NULL);
        pthread_cond_init(&d.op_changed, NULL);
        pthread_mutex_init(&d.stop_lock, NULL);
        pthread_cond_init(&d.stop_cond, NULL);
        r = cfg_coord_load(path, &d.cfg, &err);
        if (r >= 0)
                r = keys_load_secret(d.cfg->key, &key, &err);
        if (r < 0) {
                log_err("%s", err.msg);
                rc = 2;
                goto out;
        }
        if (check_only) {
                char fpr[KEYS_FPR_LEN];
                keys_fingerprint(keys_secret_public(key)->id, fpr);
                printf("%s: configuration and key OK (key %s, %u agents, %u groups)\n", path, fpr, d.cfg->n_agents,
                       d.cfg->n_groups);
                rc = 0;
                goto out;
        }
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = cat_open(d.cfg->catalog, &d.cat, &err);
        if (r >= 0)
                r = engine_new(d.cfg, key, d.cat, &d.eng, &err);
        if (r < 0) {
                log_err("start: %s", err.msg);
                goto out;
        }
        for (unsigned i = 0; i < d.cfg->n_groups; i++) {
                const struct cfg_group *g = &d.cfg->groups[i];
                const char **who = calloc(g->n_members ? g->n_members : 1, sizeof(*who));
                char *buf = calloc(g->n_members ? g->n_members : 1, 2 * (LS_NAME_MAX + 1));
                lserr e2 = {0};
                for (unsigned m = 0; who && buf && m < g->n_members; m++) {
                        char *s = buf + m * 2 * (LS_NAME_MAX + 1);
                        snprintf(s, 2 * (LS_NAME_MAX + 1), "%s@%s", g->members[m].vm, g->members[m].agent);
                        who[m] = s;
                }
                if (who && buf && cat_group_put(d.cat, g->name, cfg_mode_name(g->mode), who, g->n_members, &e2) < 0)
                        log_err("%s", e2.msg);
                free(who);
                free(buf);
        }
        /* What a previous run left unresolved is finished before anything new. */
        if (engine_recover(d.eng, NULL, NULL, &left, &err) < 0)
                log_err("recover at start: %s", err.msg);
        else if (left)
                log_warn("recover at start: %u transaction(s) wait for unreachable agents; retrying every %d s", left,
                         HEALTH_INTERVAL_S);
        r = transport_listen(d.cfg->control, CONTROL_MAX, 0660, NULL, &sock, &err);
        if (r >= 0)
                r = transport_serve(sock, 4, control, &d, &srv, &err);
        if (r < 0) {
                log_err("control socket: %s", err.msg);
                goto out;
        }
        if (pthread_create(&health, NULL, health_main, &d) == 0)
                health_started = 1;
        log_info("lockstepd %s: control %s, catalog %s, %u agents, %u groups", LOCKSTEP_VERSION, d.cfg->control,
                 d.cfg->catalog, d.cfg->n_agents, d.cfg->n_groups);
        for (;;) {
                if (sigwait(&set, &sig) != 0 || sig == SIGHUP)
                        continue;
                log_info("signal %s: stopping", strsignal(sig));
                break;
        }
        rc = 0;
out:
        transport_server_stop(srv);
        if (health_started) {
                pthread_mutex_lock(&d.stop_lock);
                d.stop = 1;
                pthread_cond_signal(&d.stop_cond);
                pthread_mutex_unlock(&d.stop_lock);
                pthread_join(health, NULL);
        }
        for (int i = 0; i < MAX_OPS; i++)
                op_free(d.ops[i]);
        engine_free(d.eng);
        cat_close(d.cat);
        keys_secret_free(key);
        cfg_coord_free(d.cfg);
        return rc;
}
