/* control: lockstepd's control socket: one request, one reply, for the CLI.
 * Long operations are started here and followed with op.poll. */
#include "daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "prune.h"
#include "report.h"
#include "timeline.h"
#include "transport.h"

static const char *option(const Lockstep__ControlRequest *q, const char *key)
{
        size_t kl = strlen(key);

        for (size_t i = 0; i < q->n_options; i++)
                if (!strncmp(q->options[i], key, kl) && q->options[i][kl] == '=')
                        return q->options[i] + kl + 1;
        return NULL;
}

unsigned control_want(const Lockstep__ControlRequest *q)
{
        const char *f = option(q, "format");

        return !f ? REPORT_TEXT | REPORT_JSON : !strcmp(f, "json") ? REPORT_JSON : REPORT_TEXT;
}

static void reply_error(Lockstep__ControlReply *rep, int code, const char *msg, char **owned)
{
        rep->exit_code = code;
        *owned = strdup(msg);
        rep->error = *owned ? *owned : (char *)"out of memory";
}

static int launch_reply(struct daemon *d, struct op *op, Lockstep__ControlReply *rep, char **owned);

static int start_snapshot(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep,
                          char **owned)
{
        const char *mode = option(q, "mode"), *lease = option(q, "lease"), *name = option(q, "name");
        int is_delete = !strcmp(q->command, "snapshot.delete"), is_revert = !strcmp(q->command, "snapshot.revert");
        struct op *op;

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
        op->want = control_want(q);
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
        return launch_reply(d, op, rep, owned);
}

static int launch_reply(struct daemon *d, struct op *op, Lockstep__ControlReply *rep, char **owned)
{
        char id[24];
        lserr err = {0};

        if (ops_launch(d, op, id, &err) < 0) {
                reply_error(rep, 2, err.msg, owned);
                return 0;
        }
        *owned = strdup(id);
        rep->op = *owned;
        return 0;
}

static int events_reply(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep,
                        char **text, char **json, lserr *err)
{
        const char *lim = option(q, "limit");
        struct cat_event *ev = NULL;
        size_t n = 0, tl = 0, jl = 0;
        long long after = q->from;
        /* The first call of a listing shows the newest; a follow asks from its last id on. */
        int newest = option(q, "since") == NULL;
        size_t limit = lim ? strtoul(lim, NULL, 10) : 50;
        int r;

        if (limit == 0 || limit > EVENTS_PAGE)
                limit = EVENTS_PAGE;
        r = cat_events(d->cat, after, limit, newest, &ev, &n, err);
        if (r < 0)
                return r;
        FILE *tf = open_memstream(text, &tl), *jf = open_memstream(json, &jl);
        if (tf) {
                report_events(ev, n, 0, tf);
                fclose(tf);
        }
        if (jf) {
                report_events(ev, n, 1, jf);
                fclose(jf);
        }
        rep->text = *text;
        rep->json = *json;
        rep->next = n ? (uint32_t)ev[n - 1].id : (uint32_t)after;
        rep->done = 1;
        free(ev);
        return 0;
}

static int prune_reply(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep,
                       char **owned, char **text, char **json)
{
        const struct cfg_group *g = q->n_args == 1 ? cfg_coord_group(d->cfg, q->args[0]) : NULL;
        struct prune_item *items = NULL;
        size_t n = 0;
        lserr err = {0};

        if (q->n_args != 1) {
                reply_error(rep, 2, "usage: prune GROUP [--dry-run]", owned);
                return 0;
        }
        if (!g) {
                char msg[128];
                snprintf(msg, sizeof(msg), "group \"%.64s\" is not in the configuration", q->args[0]);
                reply_error(rep, 2, msg, owned);
                return 0;
        }
        if (!option(q, "dry_run")) {
                struct op *op = calloc(1, sizeof(*op));
                if (!op)
                        return -ENOMEM;
                op->is_prune = 1;
                op->want = REPORT_TEXT | REPORT_JSON; /* a prune's list is small */
                snprintf(op->group, sizeof(op->group), "%s", g->name);
                return launch_reply(d, op, rep, owned);
        }
        if (prune_plan(d->cat, g, &items, &n, &err) < 0) {
                reply_error(rep, 2, err.msg, owned);
                return 0;
        }
        report_prune_pair(g->name, items, n, 1, text, json);
        free(items);
        rep->text = *text;
        rep->json = *json;
        rep->done = 1;
        return 0;
}

static int check_reply(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep,
                       char **owned, char **text, char **json)
{
        const char *mode = option(q, "mode"), *lease = option(q, "lease");
        struct engine_check_member *m = NULL;
        size_t n = 0, tl = 0, jl = 0;
        int md = !mode ? -1 : !strcmp(mode, "quiesce") ? CFG_MODE_QUIESCE : !strcmp(mode, "pause") ? CFG_MODE_PAUSE
                                                      : !strcmp(mode, "memory")                     ? CFG_MODE_MEMORY
                                                                                                    : -2;
        unsigned lease_s = lease ? (unsigned)strtoul(lease, NULL, 10) : 0;
        lserr err = {0};
        FILE *f;
        int r;

        if (q->n_args != 1 || md == -2 || (lease && (lease_s == 0 || lease_s > 3600))) {
                reply_error(rep, 2, "usage: check GROUP [--mode quiesce|pause|memory] [--lease 1..3600]", owned);
                return 0;
        }
        r = engine_check(d->eng, q->args[0], md, lease_s, &m, &n, &err);
        if (r < 0) {
                reply_error(rep, 2, err.msg, owned);
                return 0;
        }
        if ((f = open_memstream(text, &tl))) {
                report_check(q->args[0], m, n, 0, f);
                fclose(f);
        }
        if ((f = open_memstream(json, &jl))) {
                report_check(q->args[0], m, n, 1, f);
                fclose(f);
        }
        free(m);
        rep->text = *text;
        rep->json = *json;
        rep->exit_code = r;
        rep->done = 1;
        return 0;
}

/* A line of the recovery carries agents' words: escaped like the reports. */
static void recover_event(void *arg, const char *line)
{
        FILE *f = arg;
        char esc[2048];

        report_escape(esc, sizeof(esc), line);
        fprintf(f, "%s\n", esc);
}

/* snapshot show ID --timeline [--width N] [--color]: the chart, text only. */
static int timeline_reply(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep,
                          char **owned, char **text)
{
        const char *w = option(q, "width");
        char *end = NULL;
        long long width = w ? strtoll(w, &end, 10) : TIMELINE_DEFAULT_WIDTH;
        size_t tl = 0;
        lserr err = {0};
        FILE *f;
        int r;

        rep->done = 1;
        if (q->n_args != 1) {
                reply_error(rep, 2, "usage: snapshot show ID --timeline [--width N]", owned);
                return 0;
        }
        r = w && (!*w || *end) ? lserr_set(&err, -EINVAL, "timeline: width \"%.32s\" is not a number", w)
                               : timeline_check_width(width, &err);
        if (r < 0) {
                reply_error(rep, 2, err.msg, owned);
                return 0;
        }
        f = open_memstream(text, &tl);
        if (!f)
                return -ENOMEM;
        r = report_timeline(d->cat, q->args[0], (unsigned)width, option(q, "color") != NULL, f, &err);
        fclose(f);
        if (r < 0)
                reply_error(rep, 2, err.msg, owned);
        else
                rep->text = *text;
        return 0;
}

/* Commands that read the running configuration or use its engine; they hold
 * gen so that a reload waits for them. */
static int control_gen(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep,
                       char **owned, char **text, char **json)
{
        lserr err = {0};
        int r = 0;

        if (!strcmp(q->command, "snapshot.create") || !strcmp(q->command, "snapshot.delete") ||
            !strcmp(q->command, "snapshot.revert")) {
                r = start_snapshot(d, q, rep, owned);
        } else if (!strcmp(q->command, "snapshot.show") && option(q, "timeline")) {
                r = timeline_reply(d, q, rep, owned, text);
        } else if (!strcmp(q->command, "snapshot.list") || !strcmp(q->command, "snapshot.show") ||
                   !strcmp(q->command, "agents") || !strcmp(q->command, "groups") ||
                   !strcmp(q->command, "schedules")) {
                int (*fn)(struct daemon *, const void *, int, FILE *, lserr *) =
                        !strcmp(q->command, "snapshot.list")   ? ops_r_cuts
                        : !strcmp(q->command, "snapshot.show") ? ops_r_cut
                        : !strcmp(q->command, "agents")        ? ops_r_agents
                        : !strcmp(q->command, "schedules")     ? service_r_schedules
                                                               : ops_r_groups;
                const char *a = q->n_args ? q->args[0] : NULL;
                unsigned want = REPORT_TEXT | REPORT_JSON;
                if (fn == ops_r_cut && !a) {
                        rep->exit_code = 2;
                        rep->error = (char *)"usage: snapshot show ID";
                } else {
                        /* Only the leader may talk to agents; a follower shows the
                         * leader's last poll. */
                        if (fn == ops_r_agents && (!d->ha || ha_leading(d->ha, NULL)))
                                engine_poll_agents(d->eng, &err);
                        if (fn == ops_r_cut) {
                                want = control_want(q);
                                if (report_cut_render(d->cat, a, want, text, json, NULL, &err) < 0)
                                        *text = *json = NULL;
                        } else {
                                *text = ops_render(fn, d, a, 0, &err);
                                *json = ops_render(fn, d, a, 1, &err);
                        }
                        rep->text = *text;
                        rep->json = *json;
                        if (((want & REPORT_TEXT) && !*text) || ((want & REPORT_JSON) && !*json))
                                reply_error(rep, 2, err.msg[0] ? err.msg : "cannot render", owned);
                }
                rep->done = 1;
        } else if (!strcmp(q->command, "prune")) {
                r = prune_reply(d, q, rep, owned, text, json);
        } else if (!strcmp(q->command, "check")) {
                r = check_reply(d, q, rep, owned, text, json);
        } else if (!strcmp(q->command, "recover")) {
                unsigned left = 0;
                size_t tl = 0;
                FILE *f = open_memstream(text, &tl);
                r = f ? engine_recover(d->eng, recover_event, f, &left, &err) : -ENOMEM;
                if (f) {
                        fprintf(f, "%s\n", r < 0 ? err.msg
                                          : left  ? "some transactions could not be finished yet: an agent is unreachable"
                                                  : "nothing left unresolved");
                        fclose(f);
                }
                rep->text = *text;
                rep->exit_code = r < 0 || left ? 1 : 0;
                rep->done = 1;
                r = 0;
        } else {
                rep->exit_code = 2;
                rep->error = (char *)"unknown command";
        }
        return r;
}

/* Requests that only read are not recorded. */
static int reads_only(const Lockstep__ControlRequest *q)
{
        static const char *const readers[] = {"op.poll", "events",    "snapshot.list", "snapshot.show",
                                              "agents",  "groups",    "schedules",     "audit",
                                              "cluster.status"};

        for (size_t i = 0; q && i < sizeof(readers) / sizeof(readers[0]); i++)
                if (!strcmp(q->command, readers[i]))
                        return 1;
        return q && !strcmp(q->command, "prune") && option(q, "dry_run");
}

/* Who asked for what and what came of it: the control socket takes unsigned
 * requests from any local process that can reach it, so each one that changes
 * something is recorded with the uid and pid the kernel gives for its sender
 * (for a forwarded one, the follower's kernel, and the follower's name). The
 * record is not the operation: a failure to write it is logged and the reply goes. */
static void audit_request(struct daemon *d, const Lockstep__ControlRequest *q, const Lockstep__ControlReply *rep,
                          const struct forward_caller *who)
{
        struct cat_audit a = {.dir = CAT_CONTROL, .code = rep->exit_code};
        const char *op = rep->op && rep->op[0] ? rep->op : NULL, *why = rep->error && rep->error[0] ? rep->error : NULL;
        char detail[CAT_DETAIL_MAX] = "", shown[CAT_DETAIL_MAX];
        size_t o = 0;
        lserr err = {0};

        /* A follower writes nothing to the catalog: its fence is shut. */
        if (reads_only(q) || (d->ha && !ha_leading(d->ha, NULL)))
                return;
        a.has_peer = who->uid >= 0;
        a.peer_uid = who->uid;
        a.peer_pid = who->pid;
        snprintf(a.step, sizeof(a.step), "%s", q ? q->command : "(does not unpack)");
        for (size_t i = 0; q && i < q->n_args + q->n_options && o < sizeof(detail); i++) {
                int is_arg = i < q->n_args;
                /* How the CLI shows the answer is not part of what was asked. */
                if (!is_arg && !strncmp(q->options[i - q->n_args], "format=", 7))
                        continue;
                o += (size_t)snprintf(detail + o, sizeof(detail) - o, "%s%s%s", o ? " " : "", is_arg ? "" : "--",
                                      is_arg ? q->args[i] : q->options[i - q->n_args]);
        }
        if (o < sizeof(detail) && (op || why))
                snprintf(detail + o, sizeof(detail) - o, "%s%s%s", o ? ": " : "", op ? "started op " : "",
                         op ? op : why);
        if (who->via)
                snprintf(shown, sizeof(shown), "forwarded from %s: %s", who->via, detail);
        a.detail = who->via ? shown : detail;
        if (cat_audit_add(d->cat, &a, &err) < 0)
                log_err("audit of control request \"%s\": %s", a.step, err.msg);
}

/* The audit rows of one transaction, or the newest of all. */
static int audit_reply(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep,
                       char **text, char **json, lserr *err)
{
        const char *lim = option(q, "limit");
        size_t limit = lim ? strtoul(lim, NULL, 10) : 50, n = 0, tl = 0, jl = 0;
        struct cat_audit *a = NULL;
        FILE *f;
        int r;

        if (limit == 0 || limit > EVENTS_PAGE)
                limit = EVENTS_PAGE;
        r = q->n_args ? cat_audit_list(d->cat, q->args[0], limit, &a, &n, err)
                      : cat_audit_recent(d->cat, limit, &a, &n, err);
        if (r < 0)
                return r;
        if ((f = open_memstream(text, &tl))) {
                report_audit(a, n, 0, f);
                fclose(f);
        }
        if ((f = open_memstream(json, &jl))) {
                report_audit(a, n, 1, f);
                fclose(f);
        }
        free(a);
        rep->text = *text;
        rep->json = *json;
        rep->done = 1;
        return 0;
}

/* lockstep cluster status, as text. */
static void cluster_text(FILE *f, const struct ha *ha, const struct election_view *v, const struct ha_member *m,
                         size_t n, const struct etcd_status *st, const char *etcd_error)
{
        const struct cfg_ha *c = ha_config(ha);

        fprintf(f, "this lockstepd: %s, %s", c->name, v->leading ? "leader" : "follower");
        if (v->leading)
                fprintf(f, ", epoch %llu", (unsigned long long)v->epoch);
        fprintf(f, "\nleader: %s", v->holder[0] ? v->holder : "(none known)");
        if (v->holder[0])
                fprintf(f, " (epoch %llu)", (unsigned long long)v->holder_epoch);
        fprintf(f, "\nmembers:\n");
        for (size_t i = 0; i < n; i++)
                fprintf(f, "  %-60s %s\n", m[i].value, !strcmp(m[i].value, v->holder) ? "leader" : "follower");
        if (etcd_error[0])
                fprintf(f, "etcd: %s\n", etcd_error);
        else
                fprintf(f, "etcd: ok, version %s, revision %lld, %.1f MB (%u endpoint(s), keys under %s)\n", st->version,
                        (long long)st->revision, (double)st->db_size / 1e6, c->n_etcd, c->prefix);
}

static void cluster_json(FILE *f, const struct ha *ha, const struct election_view *v, const struct ha_member *m,
                         size_t n, const struct etcd_status *st, const char *etcd_error)
{
        struct json j;

        json_init(&j, f);
        json_obj_begin(&j, NULL);
        json_str(&j, "name", ha_config(ha)->name);
        json_str(&j, "role", v->leading ? "leader" : "follower");
        json_uint(&j, "epoch", v->epoch);
        json_str(&j, "leader", v->holder[0] ? v->holder : NULL);
        json_uint(&j, "leader_epoch", v->holder_epoch);
        json_arr_begin(&j, "members");
        for (size_t i = 0; i < n; i++) {
                json_obj_begin(&j, NULL);
                json_str(&j, "member", m[i].value);
                json_str(&j, "role", !strcmp(m[i].value, v->holder) ? "leader" : "follower");
                json_obj_end(&j);
        }
        json_arr_end(&j);
        json_str(&j, "etcd_error", etcd_error[0] ? etcd_error : NULL);
        json_str(&j, "etcd_version", etcd_error[0] ? NULL : st->version);
        json_int(&j, "etcd_revision", etcd_error[0] ? 0 : st->revision);
        json_int(&j, "etcd_db_bytes", etcd_error[0] ? 0 : st->db_size);
        json_str(&j, "prefix", ha_config(ha)->prefix);
        json_obj_end(&j);
        json_end(&j);
}

/* lockstep cluster status: this lockstepd, the leader it sees, every member
 * whose lease lives, etcd. */
static void cluster_reply(struct daemon *d, Lockstep__ControlReply *rep, char **text, char **json)
{
        struct election_view v = {0};
        struct etcd_status st = {0};
        struct ha_member *m = NULL;
        size_t n = 0, tl = 0, jl = 0;
        lserr err = {0};
        FILE *tf, *jf;

        rep->done = 1;
        if (!d->ha) {
                rep->exit_code = 2;
                rep->error = (char *)"this lockstepd runs alone: coordinator.yaml has no ha: section";
                return;
        }
        ha_view(d->ha, &v);
        /* A leader by the election is one to us once its catalog is fenced:
         * what ha_leading says, and what operations wait for. */
        v.leading = ha_leading(d->ha, &v.epoch);
        if (ha_members(d->ha, &m, &n, &st, &err) < 0)
                rep->exit_code = 1;
        tf = open_memstream(text, &tl);
        jf = open_memstream(json, &jl);
        if (tf) {
                cluster_text(tf, d->ha, &v, m, n, &st, err.msg);
                fclose(tf);
        }
        if (jf) {
                cluster_json(jf, d->ha, &v, m, n, &st, err.msg);
                fclose(jf);
        }
        free(m);
        rep->text = *text;
        rep->json = *json;
}

/* A follower changes nothing: it says who does. */
static void follower_refusal(struct daemon *d, Lockstep__ControlReply *rep, char **owned)
{
        struct election_view v = {0};
        char msg[LSERR_MSG_MAX + ELECTION_VALUE_MAX];

        ha_view(d->ha, &v);
        snprintf(msg, sizeof(msg), "this lockstepd (%s) is a follower; the leader is %s: run lockstep on its host",
                 ha_config(d->ha)->name, v.holder[0] ? v.holder : "not known yet (an election is on)");
        reply_error(rep, 1, msg, owned);
        rep->done = 1;
}

/* What a follower hands to the leader: what changes something (but reload:
 * each lockstepd reads its own file) and op.poll (operations run on the
 * leader). A leader takes no other forward. */
static int forwarded_kind(const Lockstep__ControlRequest *q)
{
        return !strcmp(q->command, "op.poll") || (!reads_only(q) && strcmp(q->command, "reload") != 0);
}

/* A forward of what followers keep to themselves. */
static void not_forwarded(const Lockstep__ControlRequest *q, const struct forward_caller *who,
                          Lockstep__ControlReply *rep, char **owned)
{
        char cmd[4 * 32 + 1], msg[LSERR_MSG_MAX];

        report_escape(cmd, sizeof(cmd), q->command);
        snprintf(msg, sizeof(msg), "forward from %s: \"%.32s\" is not a request followers forward", who->via, cmd);
        reply_error(rep, 2, msg, owned);
        rep->done = 1;
}

/* This lockstepd follows, forwards, and q is the leader's to handle: never a
 * request that was forwarded to us (no loops), nor a poll of our own op. */
static int follower_forwards(struct daemon *d, const Lockstep__ControlRequest *q, const struct forward_caller *who)
{
        if (!d->fwd || who->via || !forwarded_kind(q))
                return 0;
        if (!strcmp(q->command, "op.poll") && q->n_args == 1 && ops_known(d, q->args[0]))
                return 0;
        return !ha_leading(d->ha, NULL);
}

/* How long the leader may take over a forwarded request, under what the CLI
 * waits for its own call (lockstep.c) so that its user reads our error rather
 * than a timeout: op.poll waits up to OPS_POLL_WAIT_MS there; check and
 * recover talk to agents (the CLI waits 600 s); the rest start an operation. */
static int forward_timeout_ms(const Lockstep__ControlRequest *q)
{
        if (!strcmp(q->command, "check") || !strcmp(q->command, "recover"))
                return 570 * 1000;
        return OPS_POLL_WAIT_MS + 4000;
}

/* The leader's answer to q in *ret (its reply is what the CLI gets); else rep
 * says why not: no leader known, one that takes no forwards (the usual
 * refusal), or one that did not answer. */
static void forward_or_refuse(struct daemon *d, const Lockstep__ControlRequest *q, const struct forward_caller *who,
                              Lockstep__ControlReply *rep, char **owned, Lockstep__ForwardReply **ret)
{
        struct election_view v = {0};
        char name[LS_NAME_MAX + 1], url[CFG_HA_URL_MAX + 1], msg[LSERR_MSG_MAX];
        lserr err = {0};

        ha_view(d->ha, &v);
        rep->done = 1;
        if (!v.holder[0]) {
                reply_error(rep, 1, "forwarding: no leader is known (an election is on): try again in a moment",
                            owned);
        } else if (forward_leader_of(v.holder, name, url) < 0) {
                follower_refusal(d, rep, owned);
        } else if (!strcmp(name, ha_config(d->ha)->name)) {
                snprintf(msg, sizeof(msg), "this lockstepd (%s) is taking over as the leader: try again in a moment",
                         name);
                reply_error(rep, 1, msg, owned);
        } else if (forward_call(d->fwd, name, url, q, who, forward_timeout_ms(q), ret, &err) < 0) {
                reply_error(rep, 1, err.msg, owned);
        }
}

/* One reply, packed into *ret. */
static int pack_reply(const Lockstep__ControlReply *rep, uint8_t **ret, size_t *ret_len)
{
        size_t n = lockstep__control_reply__get_packed_size(rep);

        *ret = malloc(n ? n : 1);
        if (!*ret)
                return -ENOMEM;
        lockstep__control_reply__pack(rep, *ret);
        *ret_len = n;
        return 0;
}

static void reload_reply(struct daemon *d, Lockstep__ControlReply *rep, char **owned, char **text)
{
        int applied = 0;
        size_t tl = 0;
        lserr err = {0};
        FILE *f;

        /* Not under gen: the reload itself has to take it. */
        if (service_reload(d, 5000, &applied, &err) < 0) {
                reply_error(rep, 1, err.msg, owned);
        } else if ((f = open_memstream(text, &tl))) {
                fprintf(f, applied ? "configuration %s reloaded\n"
                                   : "configuration %s is valid; it applies within a few seconds\n",
                        d->cfg_path);
                fclose(f);
                rep->text = *text;
        }
        rep->done = 1;
}

int control_request(void *arg, const Lockstep__ControlRequest *q, const struct forward_caller *who, uint8_t **ret,
                    size_t *ret_len)
{
        struct daemon *d = arg;
        Lockstep__ControlReply rep = LOCKSTEP__CONTROL_REPLY__INIT;
        Lockstep__ForwardReply *answer = NULL;
        char *owned = NULL, *text = NULL, *json = NULL, **strs = NULL;
        size_t n_strs = 0;
        lserr err = {0};
        int r = 0;

        if (!q) {
                rep.exit_code = 2;
                rep.error = (char *)"control request does not unpack";
        } else if (who->via && !forwarded_kind(q)) {
                not_forwarded(q, who, &rep, &owned);
        } else if (follower_forwards(d, q, who)) {
                forward_or_refuse(d, q, who, &rep, &owned, &answer);
        } else if (!strcmp(q->command, "op.poll")) {
                r = ops_poll(d, q, &rep, &strs, &n_strs);
        } else if (!strcmp(q->command, "events")) {
                if (events_reply(d, q, &rep, &text, &json, &err) < 0)
                        reply_error(&rep, 2, err.msg, &owned);
        } else if (!strcmp(q->command, "audit")) {
                if (audit_reply(d, q, &rep, &text, &json, &err) < 0)
                        reply_error(&rep, 2, err.msg, &owned);
        } else if (!strcmp(q->command, "cluster.status")) {
                cluster_reply(d, &rep, &text, &json);
        } else if (d->ha && !reads_only(q) && strcmp(q->command, "reload") && !ha_leading(d->ha, NULL)) {
                follower_refusal(d, &rep, &owned);
        } else if (!strcmp(q->command, "reload")) {
                reload_reply(d, &rep, &owned, &text);
        } else {
                pthread_rwlock_rdlock(&d->gen);
                r = control_gen(d, q, &rep, &owned, &text, &json);
                pthread_rwlock_unlock(&d->gen);
        }
        /* A follower records nothing: the leader audits what it forwarded. */
        if (r >= 0 && !answer)
                audit_request(d, q, &rep, who);
        if (r >= 0)
                r = pack_reply(answer ? answer->reply : &rep, ret, ret_len);
        if (answer)
                lockstep__forward_reply__free_unpacked(answer, NULL);
        for (size_t i = 0; i < n_strs; i++)
                free(strs[i]);
        free(strs);
        free(owned);
        free(text);
        free(json);
        return r;
}

int control_handle(void *arg, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len)
{
        struct forward_caller who = {.uid = -1, .pid = -1};
        Lockstep__ControlRequest *q = lockstep__control_request__unpack(NULL, len, req);
        int r;

        /* The kernel's word on the sender (ipc://): the audit names it, and a
         * forward carries it to the leader. */
        (void)transport_request_peer(&who.uid, &who.pid);
        r = control_request(arg, q, &who, ret, ret_len);
        if (q)
                lockstep__control_request__free_unpacked(q, NULL);
        return r;
}
