/* lockstep: the command-line client. keygen works alone; every other command
 * talks to lockstepd over its control socket (the `control:` URL of
 * coordinator.yaml). Exit codes: 0 committed/ok, 1 aborted (or not all
 * settled), 2 usage or configuration, 3 coordinator unreachable. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord_config.h"
#include "keys.h"
#include "lockstep.pb-c.h"
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

static void usage(FILE *f)
{
        fprintf(f,
                "usage: lockstep [-c coordinator.yaml] COMMAND [ARGS]\n"
                "  keygen --out PREFIX                          write PREFIX.key (0600) and PREFIX.pub\n"
                "  snapshot create GROUP [--name N] [--mode quiesce|pause|memory] [--lease S] [--json]\n"
                "  snapshot list [GROUP] [--json]\n"
                "  snapshot show ID [--json]\n"
                "  snapshot delete ID [--json]                  merge a cut into its images, VMs keep running\n"
                "  snapshot revert ID [--yes] [--json]          put the whole group back on cut ID\n"
                "  snapshot revert --undo REVERT_ID [--yes]     back to what revert REVERT_ID replaced\n"
                "  check GROUP [--mode M] [--lease S] [--json]  preflight: would a cut be accepted now? nothing frozen\n"
                "  agents [--json]                              reachability, version, key, in-doubt\n"
                "  groups [--json]\n"
                "  schedules [--json]                           next and last scheduled run per group\n"
                "  prune GROUP [--dry-run] [--json]             apply the group's retention (deletes cuts)\n"
                "  events [--follow] [--limit N] [--json]       lockstepd's event log (JSON: one object a line)\n"
                "  reload                                       re-read coordinator.yaml (as SIGHUP does)\n"
                "  recover                                      finish unresolved transactions now\n"
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

static int finish(Lockstep__ControlReply *rep, int as_json)
{
        int code = rep->exit_code;

        if (rep->error && rep->error[0])
                fprintf(stderr, "lockstep: %s\n", rep->error);
        if (as_json && rep->json && rep->json[0])
                fputs(rep->json, stdout);
        else if (!as_json && rep->text && rep->text[0])
                fputs(rep->text, stdout);
        lockstep__control_reply__free_unpacked(rep, NULL);
        return code;
}

/* snapshot create / delete: start it, then follow its progress. */
static int snapshot_create(struct client *c, Lockstep__ControlRequest *q, int as_json)
{
        Lockstep__ControlReply *rep = NULL;
        Lockstep__ControlRequest poll = LOCKSTEP__CONTROL_REQUEST__INIT;
        char *op;
        int live = !as_json && isatty(STDOUT_FILENO), r;

        r = call(c, q, 10000, &rep);
        if (r)
                return r;
        if (!rep->op || !rep->op[0])
                return finish(rep, as_json);
        op = strdup(rep->op);
        lockstep__control_reply__free_unpacked(rep, NULL);
        if (!op)
                return EXIT_UNREACHABLE;
        poll.command = "op.poll";
        poll.n_args = 1;
        poll.args = &op;
        for (;;) {
                r = call(c, &poll, 10000, &rep);
                if (r) {
                        free(op);
                        return r;
                }
                for (size_t i = 0; i < rep->n_events; i++)
                        if (live)
                                printf("  %s\n", rep->events[i]);
                if (live)
                        fflush(stdout);
                poll.from = rep->next;
                if (rep->done)
                        break;
                lockstep__control_reply__free_unpacked(rep, NULL);
                if (POLL_US)
                        usleep(POLL_US);
        }
        free(op);
        if (live)
                printf("\n");
        return finish(rep, as_json);
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

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"config", required_argument, NULL, 'c'}, {"json", no_argument, NULL, 'j'},
                {"name", required_argument, NULL, 'n'},   {"mode", required_argument, NULL, 'm'},
                {"lease", required_argument, NULL, 'l'},  {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},      {"yes", no_argument, NULL, 'y'},
                {"undo", no_argument, NULL, 'u'},         {"dry-run", no_argument, NULL, 'D'},
                {"follow", no_argument, NULL, 'f'},       {"limit", required_argument, NULL, 'L'},
                {0},
        };
        const char *path = "/etc/lockstep/coordinator.yaml";
        Lockstep__ControlRequest q = LOCKSTEP__CONTROL_REQUEST__INIT;
        Lockstep__ControlReply *rep = NULL;
        struct cfg_coord *cfg = NULL;
        struct client cl = {0};
        char *options[4], opt_buf[4][96], control[512];
        char **args;
        size_t n_opt = 0;
        int as_json = 0, yes = 0, follow = 0, c, r, nargs;
        lserr err = {0};

        /* keygen needs no lockstepd and no config: it may follow -c all the same. */
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "keygen"))
                        return cmd_keygen(argc - i, argv + i);
                if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config"))
                        i++;
                else if (argv[i][0] != '-')
                        break;
        }
        /* Options may come anywhere; the rest are the command and its arguments. */
        while ((c = getopt_long(argc, argv, "c:jh", opts, NULL)) != -1) {
                switch (c) {
                case 'c': path = optarg; break;
                case 'j': as_json = 1; break;
                case 'n':
                case 'm':
                case 'l':
                case 'u':
                case 'D':
                case 'L':
                        /* Each option once: a repeat is a mistake, and the buffer has one slot each. */
                        if (n_opt == sizeof(options) / sizeof(options[0])) {
                                fprintf(stderr, "lockstep: too many options\n");
                                return EXIT_USAGE;
                        }
                        if (c == 'u' || c == 'D')
                                snprintf(opt_buf[n_opt], sizeof(opt_buf[0]), "%s", c == 'u' ? "undo=1" : "dry_run=1");
                        else
                                snprintf(opt_buf[n_opt], sizeof(opt_buf[0]), "%s=%.80s",
                                         c == 'n' ? "name" : c == 'm' ? "mode" : c == 'l' ? "lease" : "limit", optarg);
                        for (size_t i = 0; i < n_opt; i++)
                                if (!strncmp(options[i], opt_buf[n_opt], strcspn(opt_buf[n_opt], "=") + 1)) {
                                        fprintf(stderr, "lockstep: an option is given twice\n");
                                        return EXIT_USAGE;
                                }
                        options[n_opt] = opt_buf[n_opt];
                        n_opt++;
                        break;
                case 'y': yes = 1; break;
                case 'f': follow = 1; break;
                case 'h': usage(stdout); return EXIT_OK;
                case 'V': printf("lockstep %s\n", LOCKSTEP_VERSION); return EXIT_OK;
                default: usage(stderr); return EXIT_USAGE;
                }
        }
        args = argv + optind;
        nargs = argc - optind;
        if (nargs < 1) {
                usage(stderr);
                return EXIT_USAGE;
        }
        if (!strcmp(args[0], "snapshot") && nargs >= 2 &&
            (!strcmp(args[1], "create") || !strcmp(args[1], "list") || !strcmp(args[1], "show") ||
             !strcmp(args[1], "delete") || !strcmp(args[1], "revert"))) {
                static char cmd[32];
                snprintf(cmd, sizeof(cmd), "snapshot.%s", args[1]);
                q.command = cmd;
                q.args = args + 2;
                q.n_args = (size_t)(nargs - 2);
        } else if (!strcmp(args[0], "agents") || !strcmp(args[0], "groups") || !strcmp(args[0], "recover") ||
                   !strcmp(args[0], "schedules") || !strcmp(args[0], "prune") || !strcmp(args[0], "events") ||
                   !strcmp(args[0], "reload") || !strcmp(args[0], "check")) {
                q.command = args[0];
                q.args = args + 1;
                q.n_args = (size_t)(nargs - 1);
        } else {
                usage(stderr);
                return EXIT_USAGE;
        }
        for (size_t i = 0; i < n_opt; i++) {
                const char *o = options[i], *cmd = q.command;
                int ok = !strcmp(cmd, "snapshot.create") ? strncmp(o, "undo", 4) && strncmp(o, "dry_run", 7) &&
                                                                   strncmp(o, "limit", 5)
                         : !strcmp(cmd, "snapshot.revert") ? !strcmp(o, "undo=1")
                         : !strcmp(cmd, "prune")           ? !strcmp(o, "dry_run=1")
                         : !strcmp(cmd, "events")          ? !strncmp(o, "limit=", 6)
                         : !strcmp(cmd, "check")           ? !strncmp(o, "mode=", 5) || !strncmp(o, "lease=", 6)
                                                           : 0;
                if (!ok) {
                        fprintf(stderr, "lockstep: --name, --mode and --lease go with snapshot create (--mode and "
                                        "--lease also with check), --undo with revert, --dry-run with prune, --limit "
                                        "with events\n");
                        return EXIT_USAGE;
                }
        }
        if (follow && strcmp(q.command, "events") != 0) {
                fprintf(stderr, "lockstep: --follow goes with events\n");
                return EXIT_USAGE;
        }
        if (!strcmp(q.command, "snapshot.revert") && !yes) {
                char answer[16] = "";
                /* A revert stops every VM of the group: never without a yes. */
                if (!isatty(STDIN_FILENO)) {
                        fprintf(stderr, "lockstep: revert stops and restarts every VM of the group; "
                                        "confirm with --yes when not on a terminal\n");
                        return EXIT_USAGE;
                }
                printf("This stops every VM of the group and restarts it on %s %s.\nAnything written since is "
                       "kept on its pre-revert branch (lockstep snapshot revert --undo brings it back).\n"
                       "Revert? [y/N] ",
                       n_opt ? "the pre-revert branch of" : "cut", q.n_args ? q.args[0] : "?");
                fflush(stdout);
                if (!fgets(answer, sizeof(answer), stdin) || (answer[0] != 'y' && answer[0] != 'Y')) {
                        fprintf(stderr, "lockstep: revert not confirmed; nothing done\n");
                        return EXIT_ABORTED;
                }
        }
        q.options = options;
        q.n_options = n_opt;

        r = cfg_coord_load(path, &cfg, &err);
        if (r < 0) {
                /* After a bad edit lockstepd still runs on its last good file:
                 * reach it anyway, and say what is wrong with this one. */
                if (!control_url(path, control, sizeof(control))) {
                        fprintf(stderr, "lockstep: %s\n", err.msg);
                        return EXIT_USAGE;
                }
                fprintf(stderr, "lockstep: warning: %s\n", err.msg);
                cl.url = control;
        } else {
                cl.url = cfg->control;
        }
        r = transport_dial(cl.url, 16 * 1024 * 1024, NULL, &cl.sock, &err);
        if (r < 0) {
                fprintf(stderr, "lockstep: %s\n", err.msg);
                cfg_coord_free(cfg);
                return EXIT_UNREACHABLE;
        }
        if (!strcmp(q.command, "snapshot.create") || !strcmp(q.command, "snapshot.delete") ||
            !strcmp(q.command, "snapshot.revert")) {
                r = snapshot_create(&cl, &q, as_json);
        } else if (!strcmp(q.command, "prune") && !(n_opt && !strcmp(options[0], "dry_run=1"))) {
                r = snapshot_create(&cl, &q, as_json); /* a prune runs deletes: followed like one */
        } else if (!strcmp(q.command, "events")) {
                r = events(&cl, &q, as_json, follow);
        } else {
                r = call(&cl, &q, !strcmp(q.command, "recover") || !strcmp(q.command, "check") ? 600000 : 30000, &rep);
                if (r == 0)
                        r = finish(rep, as_json);
        }
        nng_close(cl.sock);
        cfg_coord_free(cfg);
        return r;
}
