/* lockstep: the command-line client. keygen works alone; every other command
 * talks to lockstepd over its control socket (the `control:` URL of
 * coordinator.yaml). Exit codes: 0 committed/ok, 1 aborted (or not all
 * settled), 2 usage or configuration, 3 coordinator unreachable. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "coord_config.h"
#include "keys.h"
#include "lockstep.pb-c.h"
#include "report.h"
#include "timeline.h"
#include "transport.h"

enum {
        EXIT_OK = 0,
        EXIT_ABORTED = 1,
        EXIT_USAGE = 2,
        EXIT_UNREACHABLE = 3,
};

/* lockstepd holds each poll until there is news (long poll, up to 1 s), so
 * this is only the pause after a poll that brought some. */
#define POLL_US 0
/* How long one progress poll may take, and how many may fail in a row. */
#define POLL_CALL_MS 10000
#define POLL_MISSES 6

static void usage(FILE *f)
{
        fprintf(f,
                "usage: lockstep [-c coordinator.yaml] COMMAND [ARGS]\n"
                "  keygen --out PREFIX                          write PREFIX.key (0600) and PREFIX.pub\n"
                "  snapshot create GROUP [--name N] [--mode quiesce|pause|memory] [--lease S] [--json]\n"
                "  snapshot list [GROUP] [--json]\n"
                "  snapshot show ID [--json]\n"
                "  snapshot show ID --timeline [--width N]      the cut as a chart: freeze, frozen, snapshot, thaw\n"
                "  snapshot delete ID [--json]                  merge a cut into its images, VMs keep running\n"
                "  snapshot revert ID [--yes] [--json]          put the whole group back on cut ID\n"
                "  snapshot revert --undo REVERT_ID [--yes]     back to what revert REVERT_ID replaced\n"
                "  check GROUP [--mode M] [--lease S] [--json]  preflight: would a cut be accepted now? nothing frozen\n"
                "  agents [--json]                              reachability, version, key, in-doubt\n"
                "  groups [--json]\n"
                "  schedules [--json]                           next and last scheduled run per group\n"
                "  prune GROUP [--dry-run] [--json]             apply the group's retention (deletes cuts)\n"
                "  events [--follow] [--limit N] [--json]       lockstepd's event log (JSON: one object a line)\n"
                "  audit [TXID] [--limit N] [--json]            commands sent, replies, and control requests with\n"
                "                                               the uid and pid that sent them (newest N)\n"
                "  reload                                       re-read coordinator.yaml (as SIGHUP does)\n"
                "  recover                                      finish unresolved transactions now\n"
                "  op wait OP [--json]                          follow an operation lockstepd runs (its id is in\n"
                "                                               the audit) to its end, and show its result\n"
                "  cluster status [--json]                      high availability: this lockstepd, the leader, etcd\n"
                "exit: 0 ok/committed, 1 aborted, 2 usage/config, 3 coordinator unreachable\n");
}

static int cmd_keygen(int argc, char **argv)
{
        static const struct option opts[] = {{"out", required_argument, NULL, 'o'}, {0}};
        const char *prefix = NULL;
        struct keys_secret *k = NULL;
        char fpr[KEYS_FPR_LEN];
        lserr err = {0};
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
                if (c != 'o') {
                        fprintf(stderr, "usage: lockstep keygen --out PREFIX\n");
                        return EXIT_USAGE;
                }
                prefix = optarg;
        }
        if (!prefix || optind != argc) {
                fprintf(stderr, "usage: lockstep keygen --out PREFIX\n");
                return EXIT_USAGE;
        }
        r = keys_generate(&k, &err);
        if (r >= 0)
                r = keys_write(prefix, k, &err);
        if (r < 0) {
                fprintf(stderr, "lockstep: keygen: %s\n", err.msg);
                keys_secret_free(k);
                return EXIT_USAGE;
        }
        keys_fingerprint(keys_secret_public(k)->id, fpr);
        printf("wrote %s.key (secret, mode 0600) and %s.pub\nkey id %s\n", prefix, prefix, fpr);
        keys_secret_free(k);
        return EXIT_OK;
}

struct client {
        nng_socket sock;
        const char *url;
        char url_buf[512]; /* the URL when the config file does not load */
        int quiet;         /* the caller says what a failed call means */
};

/* One control call. *ret is the caller's. */
static int call(struct client *c, Lockstep__ControlRequest *q, int timeout_ms, Lockstep__ControlReply **ret)
{
        size_t n = lockstep__control_request__get_packed_size(q), rn = 0;
        uint8_t *buf = malloc(n ? n : 1), *resp = NULL;
        lserr err = {0};
        int r;

        if (!buf)
                return EXIT_UNREACHABLE;
        lockstep__control_request__pack(q, buf);
        r = transport_call(c->sock, buf, n, timeout_ms, &resp, &rn, &err);
        free(buf);
        if (r < 0) {
                if (!c->quiet)
                        fprintf(stderr, "lockstep: lockstepd at %s: %s (is lockstepd running?)\n", c->url, err.msg);
                return EXIT_UNREACHABLE;
        }
        *ret = lockstep__control_reply__unpack(NULL, rn, resp);
        free(resp);
        if (!*ret) {
                fprintf(stderr, "lockstep: lockstepd at %s: reply does not unpack\n", c->url);
                return EXIT_UNREACHABLE;
        }
        return 0;
}

/* One line that may carry an agent's words: no control character reaches the
 * terminal. */
static void print_escaped(FILE *f, const char *prefix, const char *s)
{
        size_t size = 4 * strlen(s) + 1;
        char *e = malloc(size);

        if (e)
                report_escape(e, size, s);
        fprintf(f, "%s%s\n", prefix, e ? e : "(out of memory)");
        free(e);
}

static int finish(Lockstep__ControlReply *rep, int as_json)
{
        int code = rep->exit_code;

        if (rep->error && rep->error[0])
                print_escaped(stderr, "lockstep: ", rep->error);
        if (as_json && rep->json && rep->json[0])
                fputs(rep->json, stdout);
        else if (!as_json && rep->text && rep->text[0])
                fputs(rep->text, stdout);
        lockstep__control_reply__free_unpacked(rep, NULL);
        return code;
}

/* Appends format= to q's options (opts: room for them and it): lockstepd
 * renders a cut only as it is shown, and a fleet's cut has thousands of rows.
 * The option it added. */
static char *add_format(Lockstep__ControlRequest *q, char *opts[8], int as_json)
{
        static char text[] = "format=text", json[] = "format=json";
        size_t n = q->n_options < 7 ? q->n_options : 7;

        for (size_t i = 0; i < n; i++)
                opts[i] = q->options[i];
        opts[n] = as_json ? json : text;
        q->options = opts;
        q->n_options = n + 1;
        return opts[n];
}

/* Follows operation op (lockstepd's id) to its end: its progress on a
 * terminal, then its result as for as_json. */
static int follow(struct client *c, char *op, int as_json)
{
        Lockstep__ControlReply *rep = NULL;
        Lockstep__ControlRequest poll = LOCKSTEP__CONTROL_REQUEST__INIT;
        char *opts[8];
        int live = !as_json && isatty(STDOUT_FILENO), r;

        poll.command = "op.poll";
        poll.n_args = 1;
        poll.args = &op;
        add_format(&poll, opts, as_json);
        for (int missed = 0;;) {
                c->quiet = 1;
                r = call(c, &poll, POLL_CALL_MS, &rep);
                c->quiet = 0;
                /* A lockstepd that stalls (stopped, swapping) goes on with the
                 * operation: follow it a while longer before giving up. */
                if (r && ++missed < POLL_MISSES) {
                        fprintf(stderr, "lockstep: lockstepd at %s does not answer; still following operation %s\n",
                                c->url, op);
                        sleep(1);
                        continue;
                }
                if (r) {
                        fprintf(stderr, "lockstep: lockstepd at %s gave no answer %d times in a row; operation %s "
                                        "goes on there (lockstep op wait %s follows it again, lockstep snapshot list "
                                        "shows its result)\n",
                                c->url, POLL_MISSES, op, op);
                        return r;
                }
                missed = 0;
                for (size_t i = 0; i < rep->n_events; i++)
                        if (live)
                                print_escaped(stdout, "  ", rep->events[i]);
                if (live)
                        fflush(stdout);
                poll.from = rep->next;
                if (rep->done)
                        break;
                lockstep__control_reply__free_unpacked(rep, NULL);
                if (POLL_US)
                        usleep(POLL_US);
        }
        if (live)
                printf("\n");
        return finish(rep, as_json);
}

/* snapshot create / delete / revert, prune: start it, then follow it. */
static int snapshot_create(struct client *c, Lockstep__ControlRequest *q, int as_json)
{
        Lockstep__ControlReply *rep = NULL;
        char *op, *opts[8];
        int r;

        add_format(q, opts, as_json);
        r = call(c, q, 10000, &rep);
        if (r)
                return r;
        if (!rep->op || !rep->op[0])
                return finish(rep, as_json);
        op = strdup(rep->op);
        lockstep__control_reply__free_unpacked(rep, NULL);
        if (!op)
                return EXIT_UNREACHABLE;
        r = follow(c, op, as_json);
        free(op);
        return r;
}

/* The control URL alone, from a file that does not load as a whole: the first
 * "control:" line, quotes stripped. 1 when found. */
static int control_url(const char *path, char *out, size_t n)
{
        char line[1024];
        FILE *f = fopen(path, "re");
        int found = 0;

        while (f && !found && fgets(line, sizeof(line), f)) {
                char *p = line, *e;
                if (strncmp(p, "control:", 8))
                        continue;
                p += 8;
                p += strspn(p, " \t\"'");
                e = p + strcspn(p, "\"' \t\r\n#");
                *e = '\0';
                if (!strncmp(p, "ipc://", 6) && strlen(p) < n) {
                        snprintf(out, n, "%s", p);
                        found = 1;
                }
        }
        if (f)
                fclose(f);
        return found;
}

/* events: the newest page, then (--follow) what comes after it, polling. */
static int events(struct client *c, Lockstep__ControlRequest *q, int as_json, int follow)
{
        Lockstep__ControlReply *rep = NULL;
        static char since[] = "since=1";
        char *opts[6];
        int r;

        for (size_t i = 0; i < q->n_options && i < 4; i++)
                opts[i] = q->options[i];
        for (;;) {
                r = call(c, q, 10000, &rep);
                if (r)
                        return r;
                if (rep->exit_code) {
                        return finish(rep, as_json);
                }
                fputs(as_json ? (rep->json ? rep->json : "") : (rep->text ? rep->text : ""), stdout);
                fflush(stdout);
                q->from = rep->next;
                lockstep__control_reply__free_unpacked(rep, NULL);
                if (!follow)
                        return EXIT_OK;
                if (q->options != opts) {
                        /* From now on: everything after the last id, oldest first. */
                        size_t n = q->n_options < 4 ? q->n_options : 4;
                        opts[n] = since;
                        q->options = opts;
                        q->n_options = n + 1;
                }
                usleep(500000);
        }
}

/* What the command line asked for, besides the command and its arguments. */
struct cli {
        const char *path;
        int as_json, yes, follow, timeline;
        /* name=, mode=, lease=, limit=, undo=1, dry_run=1, timeline=1, width=, color=1: each at most once. */
        char *options[4];
        char opt_buf[4][96];
        size_t n_opt;
};

/* Returned by the steps of main when the command goes on (any other value is
 * the exit code). */
#define GO_ON (-1)

/* Records one of the options passed on to lockstepd as "key=value". */
static int add_option(struct cli *o, int c, const char *arg)
{
        char *buf;

        /* Each option once: a repeat is a mistake, and the buffer has one slot each. */
        if (o->n_opt == sizeof(o->options) / sizeof(o->options[0])) {
                fprintf(stderr, "lockstep: too many options\n");
                return EXIT_USAGE;
        }
        buf = o->opt_buf[o->n_opt];
        if (c == 'u' || c == 'D' || c == 't' || c == 'C')
                snprintf(buf, sizeof(o->opt_buf[0]), "%s",
                         c == 'u' ? "undo=1" : c == 'D' ? "dry_run=1" : c == 't' ? "timeline=1" : "color=1");
        else
                snprintf(buf, sizeof(o->opt_buf[0]), "%s=%.80s",
                         c == 'n' ? "name" : c == 'm' ? "mode" : c == 'l' ? "lease" : c == 'W' ? "width" : "limit", arg);
        for (size_t i = 0; i < o->n_opt; i++)
                if (!strncmp(o->options[i], buf, strcspn(buf, "=") + 1)) {
                        fprintf(stderr, "lockstep: an option is given twice\n");
                        return EXIT_USAGE;
                }
        o->options[o->n_opt++] = buf;
        return GO_ON;
}

/* Options may come anywhere; optind is left on the command. */
static int parse_options(int argc, char **argv, struct cli *o)
{
        static const struct option opts[] = {
                {"config", required_argument, NULL, 'c'}, {"json", no_argument, NULL, 'j'},
                {"name", required_argument, NULL, 'n'},   {"mode", required_argument, NULL, 'm'},
                {"lease", required_argument, NULL, 'l'},  {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},      {"yes", no_argument, NULL, 'y'},
                {"undo", no_argument, NULL, 'u'},         {"dry-run", no_argument, NULL, 'D'},
                {"follow", no_argument, NULL, 'f'},       {"limit", required_argument, NULL, 'L'},
                {"timeline", no_argument, NULL, 't'},     {"width", required_argument, NULL, 'W'},
                {0},
        };
        int c, r;

        while ((c = getopt_long(argc, argv, "c:jh", opts, NULL)) != -1) {
                switch (c) {
                case 'c': o->path = optarg; break;
                case 'j': o->as_json = 1; break;
                case 'n':
                case 'm':
                case 'l':
                case 'u':
                case 'D':
                case 'L':
                case 't':
                case 'W':
                        o->timeline |= c == 't';
                        r = add_option(o, c, optarg);
                        if (r != GO_ON)
                                return r;
                        break;
                case 'y': o->yes = 1; break;
                case 'f': o->follow = 1; break;
                case 'h': usage(stdout); return EXIT_OK;
                case 'V': printf("lockstep %s\n", LOCKSTEP_VERSION); return EXIT_OK;
                default: usage(stderr); return EXIT_USAGE;
                }
        }
        return GO_ON;
}

/* The control command for the words on the command line ("snapshot create" is
 * snapshot.create), with the words after it as its arguments. */
static int pick_command(char **args, int nargs, Lockstep__ControlRequest *q)
{
        /* NOUN VERB ARGS...: the request's command is "noun.verb". */
        static const char *const noun_verbs[] = {"snapshot.create", "snapshot.list",   "snapshot.show",
                                                 "snapshot.delete", "snapshot.revert", "op.wait"};
        static const char *const cluster_verbs[] = {"status"};
        static const char *const commands[] = {"agents", "groups",  "recover", "schedules",
                                               "prune",  "events",  "reload",  "check", "audit"};
        static char cmd[32];

        if (nargs < 1) {
                usage(stderr);
                return EXIT_USAGE;
        }
        snprintf(cmd, sizeof(cmd), "%.15s.%.15s", args[0], nargs >= 2 ? args[1] : "");
        for (size_t i = 0; i < sizeof(noun_verbs) / sizeof(noun_verbs[0]); i++)
                if (nargs >= 2 && !strcmp(cmd, noun_verbs[i])) {
                        q->command = cmd;
                        q->args = args + 2;
                        q->n_args = (size_t)(nargs - 2);
                        return GO_ON;
                }
        for (size_t i = 0; i < sizeof(cluster_verbs) / sizeof(cluster_verbs[0]); i++)
                if (!strcmp(args[0], "cluster") && nargs == 2 && !strcmp(args[1], cluster_verbs[i])) {
                        snprintf(cmd, sizeof(cmd), "cluster.%s", args[1]);
                        q->command = cmd;
                        q->n_args = 0;
                        return GO_ON;
                }
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (!strcmp(args[0], commands[i])) {
                        q->command = args[0];
                        q->args = args + 1;
                        q->n_args = (size_t)(nargs - 1);
                        return GO_ON;
                }
        usage(stderr);
        return EXIT_USAGE;
}

/* Whether option o ("key=value") goes with command cmd. */
static int option_fits(const char *cmd, const char *o)
{
        if (!strcmp(cmd, "snapshot.create"))
                return strncmp(o, "undo", 4) && strncmp(o, "dry_run", 7) && strncmp(o, "limit", 5);
        if (!strcmp(cmd, "snapshot.revert"))
                return !strcmp(o, "undo=1");
        if (!strcmp(cmd, "prune"))
                return !strcmp(o, "dry_run=1");
        if (!strcmp(cmd, "events") || !strcmp(cmd, "audit"))
                return !strncmp(o, "limit=", 6);
        if (!strcmp(cmd, "check"))
                return !strncmp(o, "mode=", 5) || !strncmp(o, "lease=", 6);
        if (!strcmp(cmd, "snapshot.show"))
                return !strcmp(o, "timeline=1") || !strncmp(o, "width=", 6);
        return 0;
}

static int check_options(const struct cli *o, const char *cmd)
{
        for (size_t i = 0; i < o->n_opt; i++)
                if (!option_fits(cmd, o->options[i])) {
                        fprintf(stderr, "lockstep: --name, --mode and --lease go with snapshot create (--mode and "
                                        "--lease also with check), --undo with revert, --dry-run with prune, --limit "
                                        "with events and audit, --timeline and --width with snapshot show\n");
                        return EXIT_USAGE;
                }
        if (o->follow && strcmp(cmd, "events") != 0) {
                fprintf(stderr, "lockstep: --follow goes with events\n");
                return EXIT_USAGE;
        }
        return GO_ON;
}

/* --timeline: the width checked here (the terminal's when on one, so that
 * lockstepd draws to fit), and colour only on a terminal. */
static int timeline_options(struct cli *o)
{
        struct winsize ws;
        long long width = TIMELINE_DEFAULT_WIDTH;
        char *end = NULL;
        const char *given = NULL;
        lserr err = {0};
        char num[32];
        int r;

        for (size_t i = 0; i < o->n_opt; i++)
                if (!strncmp(o->options[i], "width=", 6))
                        given = o->options[i] + 6;
        if (given && !o->timeline) {
                fprintf(stderr, "lockstep: --width goes with --timeline\n");
                return EXIT_USAGE;
        }
        if (!o->timeline)
                return GO_ON;
        if (o->as_json) {
                fprintf(stderr, "lockstep: --timeline is a chart for the terminal; --json gives the timings\n");
                return EXIT_USAGE;
        }
        if (given) {
                width = strtoll(given, &end, 10);
                if (!*given || *end || timeline_check_width(width, &err) < 0) {
                        fprintf(stderr, "lockstep: --width %s: %s\n", given,
                                err.msg[0] ? err.msg : "not a number of columns");
                        return EXIT_USAGE;
                }
        } else {
                /* A terminal narrower than a chart can be gets the narrowest chart. */
                if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                        width = ws.ws_col < TIMELINE_MIN_WIDTH   ? TIMELINE_MIN_WIDTH
                                : ws.ws_col > TIMELINE_MAX_WIDTH ? TIMELINE_MAX_WIDTH
                                                                 : ws.ws_col;
                snprintf(num, sizeof(num), "%lld", width);
        }
        r = given ? GO_ON : add_option(o, 'W', num);
        if (r == GO_ON && isatty(STDOUT_FILENO) && !getenv("NO_COLOR"))
                r = add_option(o, 'C', NULL);
        return r;
}

/* A revert stops every VM of the group: never without a yes. */
static int confirm_revert(const struct cli *o, const Lockstep__ControlRequest *q)
{
        char answer[16] = "";

        if (strcmp(q->command, "snapshot.revert") != 0 || o->yes)
                return GO_ON;
        if (!isatty(STDIN_FILENO)) {
                fprintf(stderr, "lockstep: revert stops and restarts every VM of the group; "
                                "confirm with --yes when not on a terminal\n");
                return EXIT_USAGE;
        }
        printf("This stops every VM of the group and restarts it on %s %s.\nAnything written since is "
               "kept on its pre-revert branch (lockstep snapshot revert --undo brings it back).\n"
               "Revert? [y/N] ",
               o->n_opt ? "the pre-revert branch of" : "cut", q->n_args ? q->args[0] : "?");
        fflush(stdout);
        if (!fgets(answer, sizeof(answer), stdin) || (answer[0] != 'y' && answer[0] != 'Y')) {
                fprintf(stderr, "lockstep: revert not confirmed; nothing done\n");
                return EXIT_ABORTED;
        }
        return GO_ON;
}

/* Finds lockstepd's control URL in the config at path (*cfg, the caller's, is
 * NULL when the file does not load) and dials it. */
static int connect_client(const char *path, struct client *cl, struct cfg_coord **cfg)
{
        lserr err = {0};
        int r;

        r = cfg_coord_load(path, cfg, &err);
        if (r < 0) {
                /* After a bad edit lockstepd still runs on its last good file:
                 * reach it anyway, and say what is wrong with this one. */
                if (!control_url(path, cl->url_buf, sizeof(cl->url_buf))) {
                        fprintf(stderr, "lockstep: %s\n", err.msg);
                        return EXIT_USAGE;
                }
                fprintf(stderr, "lockstep: warning: %s\n", err.msg);
                cl->url = cl->url_buf;
        } else {
                cl->url = (*cfg)->control;
        }
        /* The dial does not wait for lockstepd, the call would time out: a
         * local socket that is not there says so at once. */
        if (strncmp(cl->url, "ipc://", 6) == 0 && access(cl->url + 6, F_OK) < 0) {
                fprintf(stderr, "lockstep: lockstepd at %s: %s (is lockstepd running?)\n", cl->url, strerror(errno));
                return EXIT_UNREACHABLE;
        }
        r = transport_dial(cl->url, 16 * 1024 * 1024, NULL, &cl->sock, &err);
        if (r < 0) {
                fprintf(stderr, "lockstep: %s\n", err.msg);
                return EXIT_UNREACHABLE;
        }
        return GO_ON;
}

/* Runs the command: operations are followed to their end, events paged or
 * followed, everything else is one call. */
static int dispatch(struct client *cl, Lockstep__ControlRequest *q, const struct cli *o)
{
        Lockstep__ControlReply *rep = NULL;
        const char *cmd = q->command;
        char *opts[8];
        int r;

        if (!strcmp(cmd, "snapshot.create") || !strcmp(cmd, "snapshot.delete") || !strcmp(cmd, "snapshot.revert"))
                return snapshot_create(cl, q, o->as_json);
        if (!strcmp(cmd, "prune") && !(o->n_opt && !strcmp(o->options[0], "dry_run=1")))
                return snapshot_create(cl, q, o->as_json); /* a prune runs deletes: followed like one */
        if (!strcmp(cmd, "events"))
                return events(cl, q, o->as_json, o->follow);
        if (!strcmp(cmd, "op.wait")) {
                if (q->n_args != 1) {
                        fprintf(stderr, "usage: lockstep op wait OP [--json]\n");
                        return EXIT_USAGE;
                }
                return follow(cl, q->args[0], o->as_json);
        }
        if (!strcmp(cmd, "snapshot.show"))
                add_format(q, opts, o->as_json);
        r = call(cl, q, !strcmp(cmd, "recover") || !strcmp(cmd, "check") ? 600000 : 30000, &rep);
        if (r == 0)
                r = finish(rep, o->as_json);
        return r;
}

int main(int argc, char **argv)
{
        Lockstep__ControlRequest q = LOCKSTEP__CONTROL_REQUEST__INIT;
        struct cli o = {.path = "/etc/lockstep/coordinator.yaml"};
        struct cfg_coord *cfg = NULL;
        struct client cl = {0};
        int r;

        /* keygen needs no lockstepd and no config: it may follow -c all the same. */
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "keygen"))
                        return cmd_keygen(argc - i, argv + i);
                if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config"))
                        i++;
                else if (argv[i][0] != '-')
                        break;
        }
        r = parse_options(argc, argv, &o);
        if (r == GO_ON)
                r = pick_command(argv + optind, argc - optind, &q);
        if (r == GO_ON)
                r = check_options(&o, q.command);
        if (r == GO_ON)
                r = timeline_options(&o);
        if (r == GO_ON)
                r = confirm_revert(&o, &q);
        if (r != GO_ON)
                return r;
        q.options = o.options;
        q.n_options = o.n_opt;
        r = connect_client(o.path, &cl, &cfg);
        if (r != GO_ON) {
                cfg_coord_free(cfg);
                return r;
        }
        r = dispatch(&cl, &q, &o);
        nng_close(cl.sock);
        cfg_coord_free(cfg);
        return r;
}
