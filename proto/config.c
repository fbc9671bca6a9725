/* config: agent.yaml and coordinator.yaml. libcyaml checks shape and types, a libyaml
 * walk over the same bytes supplies line numbers, and a last pass checks meaning. */
#include "config.h"

#include <cyaml/cyaml.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "cron.h"
#include "names.h"

#define CFG_FILE_MAX (1024 * 1024)
#define STR_MAX 4095 /* PATH_MAX - 1: the longest path, URL or inline key we keep */
#define KEY_MAX 128  /* no schema key comes close; longer ones are refused early */
#define DEPTH_MAX 16 /* the schemas nest 6 deep */
#define FIELD_MAX 512
#define WALK_PATH_MAX (DEPTH_MAX * (KEY_MAX + 16))
#define WHY_MAX 320
#define Q_MAX 100
#define LOG_LINES 32
#define LOG_LINE_MAX 256

#define AUTHORIZED_MAX 64
#define ROLES_MAX 16
#define AGENTS_MAX 1024
#define GROUPS_MAX 1024
#define TIERS_MAX 16
#define MEMBERS_MAX 1024 /* per list, and per group across its tiers */
#define RETENTION_MAX 100000

_Static_assert(FIELD_MAX <= WALK_PATH_MAX, "a field path must fit the walker's path");
_Static_assert(KEY_MAX == 128 && DEPTH_MAX == 16, "messages spell these out");

#define PUBKEY_PREFIX "lockstep-pub-v1 "

/* What libcyaml fills. Numbers are read as strings so that "1.5" or "60s" are refused
 * (libcyaml's strtoull would take their prefix) and so an absent value is NULL. */
struct raw_authorized {
        char *name;
        char *pubkey;
        char **roles;
        unsigned n_roles;
};

struct raw_agent {
        char *id;
        char *listen;
        char *key;
        struct raw_authorized *authorized;
        unsigned n_authorized;
        char *libvirt_uri;
        char *backend;
        char *sim_config;
        char *journal_dir;
        char *state_dir;
        char *lease_max_s;
        char *time_window_s;
        char *guest_agent_timeout_s;
        char *min_free_mb;
        char *tls_cert;
        char *tls_key;
};

struct raw_peer {
        char *id;
        char *url;
        char *pubkey;
};

struct raw_tier {
        char *name;
        char **members;
        unsigned n_members;
};

struct raw_retention {
        char *keep_last;
        char *hourly;
        char *daily;
        char *weekly;
        char *monthly;
        char *keep_branches;
};

struct raw_hooks {
        char *pre_freeze;
        char *post_thaw;
        char *timeout_s;
};

struct raw_group {
        char *name;
        char **members;
        unsigned n_members;
        struct raw_tier *tiers;
        unsigned n_tiers;
        char *mode;
        char *lease_s;
        char *schedule;
        char *random_delay_s;
        char *catch_up;
        struct raw_retention *retention;
        char **crash;
        unsigned n_crash;
        struct raw_hooks *hooks;
};

struct raw_coord {
        char *control;
        char *key;
        char *catalog;
        char *counter_file;
        char *step_timeout_s;
        char *max_cuts;
        char *max_cuts_per_agent;
        char *history_keep;
        char *audit_keep;
        char *events_keep;
        char *metrics;
        struct raw_peer *agents;
        unsigned n_agents;
        struct raw_group *groups;
        unsigned n_groups;
};

#define REQ_STR(k, st, m) CYAML_FIELD_STRING_PTR(k, CYAML_FLAG_POINTER, st, m, 1, STR_MAX)
#define OPT_STR(k, st, m) \
        CYAML_FIELD_STRING_PTR(k, CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, st, m, 1, STR_MAX)

static const cyaml_schema_value_t str_entry = {
        CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, STR_MAX),
};

static const cyaml_schema_field_t authorized_fields[] = {
        REQ_STR("name", struct raw_authorized, name),
        REQ_STR("pubkey", struct raw_authorized, pubkey),
        CYAML_FIELD_SEQUENCE_COUNT("roles", CYAML_FLAG_POINTER, struct raw_authorized, roles, n_roles,
                                   &str_entry, 1, ROLES_MAX),
        CYAML_FIELD_END,
};

static const cyaml_schema_value_t authorized_entry = {
        CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_authorized, authorized_fields),
};

static const cyaml_schema_field_t agent_fields[] = {
        REQ_STR("id", struct raw_agent, id),
        REQ_STR("listen", struct raw_agent, listen),
        REQ_STR("key", struct raw_agent, key),
        CYAML_FIELD_SEQUENCE_COUNT("authorized", CYAML_FLAG_POINTER, struct raw_agent, authorized,
                                   n_authorized, &authorized_entry, 1, AUTHORIZED_MAX),
        OPT_STR("libvirt_uri", struct raw_agent, libvirt_uri),
        OPT_STR("backend", struct raw_agent, backend),
        OPT_STR("sim_config", struct raw_agent, sim_config),
        REQ_STR("journal_dir", struct raw_agent, journal_dir),
        OPT_STR("state_dir", struct raw_agent, state_dir),
        OPT_STR("lease_max_s", struct raw_agent, lease_max_s),
        OPT_STR("time_window_s", struct raw_agent, time_window_s),
        OPT_STR("guest_agent_timeout_s", struct raw_agent, guest_agent_timeout_s),
        OPT_STR("min_free_mb", struct raw_agent, min_free_mb),
        OPT_STR("tls_cert", struct raw_agent, tls_cert),
        OPT_STR("tls_key", struct raw_agent, tls_key),
        CYAML_FIELD_END,
};

static const cyaml_schema_value_t agent_schema = {
        CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct raw_agent, agent_fields),
};

static const cyaml_schema_field_t peer_fields[] = {
        REQ_STR("id", struct raw_peer, id),
        REQ_STR("url", struct raw_peer, url),
        REQ_STR("pubkey", struct raw_peer, pubkey),
        CYAML_FIELD_END,
};

static const cyaml_schema_value_t peer_entry = {
        CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_peer, peer_fields),
};

static const cyaml_schema_field_t tier_fields[] = {
        REQ_STR("name", struct raw_tier, name),
        CYAML_FIELD_SEQUENCE_COUNT("members", CYAML_FLAG_POINTER, struct raw_tier, members, n_members,
                                   &str_entry, 1, MEMBERS_MAX),
        CYAML_FIELD_END,
};

static const cyaml_schema_value_t tier_entry = {
        CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_tier, tier_fields),
};

static const cyaml_schema_field_t retention_fields[] = {
        OPT_STR("keep_last", struct raw_retention, keep_last),
        OPT_STR("hourly", struct raw_retention, hourly),
        OPT_STR("daily", struct raw_retention, daily),
        OPT_STR("weekly", struct raw_retention, weekly),
        OPT_STR("monthly", struct raw_retention, monthly),
        OPT_STR("keep_branches", struct raw_retention, keep_branches),
        CYAML_FIELD_END,
};

static const cyaml_schema_field_t hooks_fields[] = {
        OPT_STR("pre_freeze", struct raw_hooks, pre_freeze),
        OPT_STR("post_thaw", struct raw_hooks, post_thaw),
        OPT_STR("timeout_s", struct raw_hooks, timeout_s),
        CYAML_FIELD_END,
};

static const cyaml_schema_field_t group_fields[] = {
        REQ_STR("name", struct raw_group, name),
        CYAML_FIELD_SEQUENCE_COUNT("members", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_group,
                                   members, n_members, &str_entry, 1, MEMBERS_MAX),
        CYAML_FIELD_SEQUENCE_COUNT("tiers", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_group,
                                   tiers, n_tiers, &tier_entry, 1, TIERS_MAX),
        OPT_STR("mode", struct raw_group, mode),
        OPT_STR("lease_s", struct raw_group, lease_s),
        OPT_STR("schedule", struct raw_group, schedule),
        OPT_STR("random_delay_s", struct raw_group, random_delay_s),
        OPT_STR("catch_up", struct raw_group, catch_up),
        CYAML_FIELD_MAPPING_PTR("retention", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_group,
                                retention, retention_fields),
        CYAML_FIELD_SEQUENCE_COUNT("crash_consistent", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_group,
                                   crash, n_crash, &str_entry, 0, MEMBERS_MAX),
        CYAML_FIELD_MAPPING_PTR("hooks", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_group, hooks,
                                hooks_fields),
        CYAML_FIELD_END,
};

static const cyaml_schema_value_t group_entry = {
        CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_group, group_fields),
};

static const cyaml_schema_field_t coord_fields[] = {
        REQ_STR("control", struct raw_coord, control),
        REQ_STR("key", struct raw_coord, key),
        REQ_STR("catalog", struct raw_coord, catalog),
        OPT_STR("counter_file", struct raw_coord, counter_file),
        OPT_STR("step_timeout_s", struct raw_coord, step_timeout_s),
        OPT_STR("max_cuts", struct raw_coord, max_cuts),
        OPT_STR("max_cuts_per_agent", struct raw_coord, max_cuts_per_agent),
        OPT_STR("history_keep", struct raw_coord, history_keep),
        OPT_STR("audit_keep", struct raw_coord, audit_keep),
        OPT_STR("events_keep", struct raw_coord, events_keep),
        OPT_STR("metrics", struct raw_coord, metrics),
        CYAML_FIELD_SEQUENCE_COUNT("agents", CYAML_FLAG_POINTER, struct raw_coord, agents, n_agents,
                                   &peer_entry, 1, AGENTS_MAX),
        /* "groups:" left empty means none, as when groups come from libvirt metadata. */
        CYAML_FIELD_SEQUENCE_COUNT("groups", CYAML_FLAG_POINTER_NULL | CYAML_FLAG_OPTIONAL, struct raw_coord,
                                   groups, n_groups, &group_entry, 0, GROUPS_MAX),
        CYAML_FIELD_END,
};

static const cyaml_schema_value_t coord_schema = {
        CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct raw_coord, coord_fields),
};

static const struct {
        const char *name;
        enum cfg_role role;
} role_names[] = {
        { "snapshot", CFG_ROLE_SNAPSHOT },
        { "revert", CFG_ROLE_REVERT },
        { "delete", CFG_ROLE_DELETE },
        { "admin", CFG_ROLE_ADMIN },
};

static const char *const mode_names[] = {
        [CFG_MODE_QUIESCE] = "quiesce",
        [CFG_MODE_PAUSE] = "pause",
        [CFG_MODE_MEMORY] = "memory",
};

/* One load: the bytes stay around so that any error found later can be given a line. */
struct ld {
        const char *file;
        char *buf;
        size_t len;
        unsigned n_lines;
        lserr *err;
};

/* ---- locating fields: a libyaml walk that names every node by its path ---- */

struct walk {
        const char *want;  /* path whose line is wanted, NULL when only checking */
        unsigned want_nth; /* 1 = first occurrence; duplicate keys need the second */
        unsigned seen;
        unsigned line; /* 1-based line of want, 0 when absent */
        unsigned bad_line;
        char bad_field[FIELD_MAX];
        char bad_why[WHY_MAX];
};

struct frame {
        bool seq;
        bool want_key;
        unsigned idx;
        size_t plen; /* length of this container's own path */
};

struct walker {
        struct walk *w;
        struct frame st[DEPTH_MAX];
        unsigned depth;
        unsigned docs;
        char path[WALK_PATH_MAX];
};

static int walk_refuse(struct walker *k, unsigned line, const char *why)
{
        k->w->bad_line = line;
        snprintf(k->w->bad_field, sizeof(k->w->bad_field), "%.*s", FIELD_MAX - 1, k->path);
        snprintf(k->w->bad_why, sizeof(k->w->bad_why), "%s", why);
        return -EINVAL;
}

/* Returns 1 when the wanted occurrence is this node, so the walk can stop. */
static int walk_match(struct walker *k, unsigned line)
{
        if (!k->w->want || strcmp(k->path, k->w->want) != 0)
                return 0;
        if (++k->w->seen < k->w->want_nth)
                return 0;
        k->w->line = line;
        return 1;
}

static const char *event_anchor(const yaml_event_t *ev)
{
        switch (ev->type) {
        case YAML_SCALAR_EVENT:
                return (const char *)ev->data.scalar.anchor;
        case YAML_SEQUENCE_START_EVENT:
                return (const char *)ev->data.sequence_start.anchor;
        case YAML_MAPPING_START_EVENT:
                return (const char *)ev->data.mapping_start.anchor;
        default:
                return NULL;
        }
}

static int walk_node(struct walker *k, const yaml_event_t *ev, unsigned line)
{
        /* Keys, sequence items and the root are located; a value shares its key's line. */
        bool located = true;
        struct frame *f;
        int r;

        if (k->depth == 0) {
                k->path[0] = '\0';
                if (ev->type == YAML_SCALAR_EVENT && ev->data.scalar.length == 0)
                        return walk_refuse(k, line, "the file holds no settings");
                if (ev->type != YAML_MAPPING_START_EVENT)
                        return walk_refuse(k, line, "the top level must be a mapping (key: value lines)");
        } else {
                f = &k->st[k->depth - 1];
                if (f->seq) {
                        snprintf(k->path + f->plen, sizeof(k->path) - f->plen, "[%u]", f->idx++);
                } else if (f->want_key) {
                        k->path[f->plen] = '\0';
                        if (ev->type != YAML_SCALAR_EVENT)
                                return walk_refuse(k, line, "a mapping key must be a plain string");
                        if (ev->data.scalar.length > KEY_MAX)
                                return walk_refuse(k, line, "mapping key longer than 128 bytes");
                        snprintf(k->path + f->plen, sizeof(k->path) - f->plen, "%s%s", f->plen ? "." : "",
                                 (const char *)ev->data.scalar.value);
                        f->want_key = false;
                } else {
                        f->want_key = true;
                        located = false;
                }
        }
        if (ev->type == YAML_ALIAS_EVENT)
                return walk_refuse(k, line, "YAML aliases (*name) are not supported");
        if (event_anchor(ev))
                return walk_refuse(k, line, "YAML anchors (&name) are not supported");
        if (located) {
                r = walk_match(k, line);
                if (r != 0)
                        return r;
        }
        if (ev->type != YAML_SEQUENCE_START_EVENT && ev->type != YAML_MAPPING_START_EVENT)
                return 0;
        if (k->depth == DEPTH_MAX)
                return walk_refuse(k, line, "nested deeper than 16 levels");
        k->st[k->depth++] = (struct frame){
                .seq = ev->type == YAML_SEQUENCE_START_EVENT,
                .want_key = true,
                .plen = strlen(k->path),
        };
        return 0;
}

static int walk_event(struct walker *k, const yaml_event_t *ev)
{
        unsigned line = (unsigned)ev->start_mark.line + 1;

        switch (ev->type) {
        case YAML_STREAM_END_EVENT:
                if (k->docs == 0)
                        return walk_refuse(k, 1, "the file holds no settings");
                return 1;
        case YAML_DOCUMENT_START_EVENT:
                /* libcyaml would silently ignore every document after the first. */
                k->path[0] = '\0';
                if (++k->docs > 1)
                        return walk_refuse(k, line, "more than one YAML document (\"---\"); only one is allowed");
                return 0;
        case YAML_ALIAS_EVENT:
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
                return walk_node(k, ev, line);
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
                k->depth--;
                return 0;
        default:
                return 0;
        }
}

static int walk_syntax(struct walker *k, const yaml_parser_t *p)
{
        char why[WHY_MAX];
        const char *problem = p->problem ? p->problem : "syntax error";

        if (p->error == YAML_MEMORY_ERROR)
                return -ENOMEM;
        k->path[k->depth ? k->st[k->depth - 1].plen : 0] = '\0';
        if (p->context)
                snprintf(why, sizeof(why), "invalid YAML: %s (%s from line %zu)", problem, p->context,
                         p->context_mark.line + 1);
        else
                snprintf(why, sizeof(why), "invalid YAML: %s", problem);
        return walk_refuse(k, (unsigned)p->problem_mark.line + 1, why);
}

/* Walks the whole file: refuses what libcyaml would mishandle or hide (syntax errors
 * it gives no usable line for, aliases, extra documents, non-scalar keys), and
 * finds w->want. Returns 0, -EINVAL with w->bad_* filled, or -ENOMEM. */
static int walk(const struct ld *ld, struct walk *w)
{
        struct walker k = { .w = w };
        yaml_parser_t p;
        yaml_event_t ev;
        int r = 0;

        if (!yaml_parser_initialize(&p))
                return -ENOMEM;
        yaml_parser_set_input_string(&p, (const unsigned char *)ld->buf, ld->len);
        while (r == 0) {
                if (!yaml_parser_parse(&p, &ev)) {
                        r = walk_syntax(&k, &p);
                        break;
                }
                r = walk_event(&k, &ev);
                yaml_event_delete(&ev);
        }
        yaml_parser_delete(&p);
        return r < 0 ? r : 0;
}

static unsigned clamp_line(const struct ld *ld, unsigned line)
{
        /* libyaml puts end-of-file problems on the line after the last one. */
        if (line > ld->n_lines)
                return ld->n_lines;
        return line ? line : 1;
}

/* Line of the nth occurrence of path; a field that is absent falls back to the
 * mapping or list that should hold it. 0 when memory ran out. */
static unsigned find_line(const struct ld *ld, const char *path, unsigned nth)
{
        char want[FIELD_MAX];
        struct walk w = { .want = want, .want_nth = nth };
        char *dot, *bracket;

        snprintf(want, sizeof(want), "%s", path);
        for (;;) {
                w.seen = 0;
                if (walk(ld, &w) < 0)
                        return 0;
                if (w.line)
                        return clamp_line(ld, w.line);
                if (!want[0])
                        return 1;
                dot = strrchr(want, '.');
                bracket = strrchr(want, '[');
                if (bracket > dot)
                        dot = bracket;
                if (dot)
                        *dot = '\0';
                else
                        want[0] = '\0';
                w.want_nth = 1;
        }
}

/* ---- messages ---- */

static const char *startswith(const char *s, const char *prefix)
{
        size_t n = strlen(prefix);

        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

/* Values from the file are quoted and cut short, and lose control bytes, so one
 * message stays one line. */
static const char *qs(char buf[static Q_MAX], const char *s)
{
        size_t o = 0;

        buf[o++] = '"';
        for (; *s && o < Q_MAX - 5; s++) {
                unsigned char ch = (unsigned char)*s;
                buf[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
        }
        if (*s) {
                memcpy(buf + o, "...", 3);
                o += 3;
        }
        buf[o++] = '"';
        buf[o] = '\0';
        return buf;
}

static const char *fp(char buf[static FIELD_MAX], const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *fp(char buf[static FIELD_MAX], const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, FIELD_MAX, fmt, ap);
        va_end(ap);
        return buf;
}

static int nomem(const struct ld *ld)
{
        return lserr_set(ld->err, -ENOMEM, "%s: out of memory", ld->file);
}

/* line 0: find_line ran out of memory, and a wrong line would mislead. */
static int report(const struct ld *ld, unsigned line, const char *field, const char *why)
{
        char f[FIELD_MAX];
        size_t i;

        if (line == 0)
                return nomem(ld);
        snprintf(f, sizeof(f), "%s", field ? field : "");
        for (i = 0; f[i]; i++)
                if ((unsigned char)f[i] < 0x20 || f[i] == 0x7f)
                        f[i] = '?';
        line = clamp_line(ld, line);
        if (f[0])
                return lserr_set(ld->err, LS_ECONFIG, "%s:%u: %s: %s", ld->file, line, f, why);
        return lserr_set(ld->err, LS_ECONFIG, "%s:%u: %s", ld->file, line, why);
}

static int vbad(const struct ld *ld, const char *at, const char *field, const char *fmt, va_list ap)
        __attribute__((format(printf, 4, 0)));
static int vbad(const struct ld *ld, const char *at, const char *field, const char *fmt, va_list ap)
{
        char why[WHY_MAX];

        vsnprintf(why, sizeof(why), fmt, ap);
        return report(ld, find_line(ld, at, 1), field, why);
}

/* Refuses field, on the line of at (for a field that is missing, the line of the
 * setting that makes it necessary). */
static int bad_at(const struct ld *ld, const char *at, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int bad_at(const struct ld *ld, const char *at, const char *field, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vbad(ld, at, field, fmt, ap);
        va_end(ap);
        return r;
}

static int bad(const struct ld *ld, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(const struct ld *ld, const char *field, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vbad(ld, field, field, fmt, ap);
        va_end(ap);
        return r;
}

/* ---- libcyaml's refusals, rebuilt from its log into path, line and reason ---- */

struct logcap {
        char line[LOG_LINES][LOG_LINE_MAX];
        unsigned n;
};

static void log_capture(cyaml_log_t level, void *ctx, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));
static void log_capture(cyaml_log_t level, void *ctx, const char *fmt, va_list ap)
{
        struct logcap *lc = ctx;
        char *s;
        size_t n;

        if (level < CYAML_LOG_ERROR || lc->n == LOG_LINES)
                return;
        s = lc->line[lc->n++];
        vsnprintf(s, LOG_LINE_MAX, fmt, ap);
        n = strlen(s);
        while (n && s[n - 1] == '\n')
                s[--n] = '\0';
}

enum bt_kind {
        BT_MAP,   /* a mapping, no field known */
        BT_FIELD, /* a mapping, at field key */
        BT_SEQ,   /* a list, at item idx */
};

struct bt {
        enum bt_kind kind;
        char key[KEY_MAX + 1];
        unsigned idx;
};

/* One backtrace line: "  in mapping field 'k' (line: L, column: C)", "  in mapping
 * (line...)" or "  in sequence entry 'N' (line...)" (1.3); older releases write
 * "field: k" and "entry: N". N counts the items begun, so it is the index + 1. */
static bool bt_parse(const char *s, struct bt *b)
{
        const char *p, *end;
        size_t n;

        s += strspn(s, " \t");
        if ((p = startswith(s, "in mapping field"))) {
                b->kind = BT_FIELD;
                p += strspn(p, ": ");
                if (*p == '\'') {
                        p++;
                        end = strstr(p, "' (line:");
                        if (!end)
                                end = strrchr(p, '\'');
                } else {
                        end = NULL;
                }
                n = end ? (size_t)(end - p) : strlen(p);
                if (n > KEY_MAX)
                        n = KEY_MAX;
                memcpy(b->key, p, n);
                b->key[n] = '\0';
        } else if (startswith(s, "in mapping")) {
                b->kind = BT_MAP;
        } else if ((p = startswith(s, "in sequence entry"))) {
                b->kind = BT_SEQ;
                p += strspn(p, ": '");
                n = strtoul(p, NULL, 10);
                b->idx = n ? (unsigned)n - 1 : 0;
        } else {
                return false;
        }
        return true;
}

static void bt_path(char out[static FIELD_MAX], const struct bt *bt, unsigned n)
{
        size_t o = 0;

        out[0] = '\0';
        for (unsigned i = 0; i < n && o < FIELD_MAX; i++) {
                if (bt[i].kind == BT_FIELD)
                        o += snprintf(out + o, FIELD_MAX - o, "%s%s", o ? "." : "", bt[i].key);
                else if (bt[i].kind == BT_SEQ)
                        o += snprintf(out + o, FIELD_MAX - o, "[%u]", bt[i].idx);
        }
}

/* "<at>.<key>", or "<key>" at the top level; cut short rather than overflow. */
static void field_join(char out[static FIELD_MAX], const char *at, const char *key)
{
        size_t o = strnlen(at, FIELD_MAX - 1), n;

        memmove(out, at, o);
        if (o && o < FIELD_MAX - 1)
                out[o++] = '.';
        n = strnlen(key, FIELD_MAX - 1 - o);
        memcpy(out + o, key, n);
        out[o + n] = '\0';
}

/* The mapping schema at a backtrace path, to list the keys it knows. */
static const cyaml_schema_value_t *schema_at(const cyaml_schema_value_t *v, const struct bt *bt, unsigned n)
{
        const cyaml_schema_field_t *f;

        for (unsigned i = 0; v && i < n; i++) {
                if (bt[i].kind == BT_SEQ) {
                        v = v->type == CYAML_SEQUENCE ? v->sequence.entry : NULL;
                } else if (bt[i].kind == BT_FIELD) {
                        if (v->type != CYAML_MAPPING)
                                return NULL;
                        for (f = v->mapping.fields; f->key && strcmp(f->key, bt[i].key) != 0; f++)
                                ;
                        v = f->key ? &f->value : NULL;
                }
        }
        return v && v->type == CYAML_MAPPING ? v : NULL;
}

static const char *shape_word(const char *cyaml_name)
{
        if (startswith(cyaml_name, "MAPPING"))
                return "a mapping (key: value)";
        if (startswith(cyaml_name, "SEQUENCE") || startswith(cyaml_name, "FLAGS"))
                return "a list";
        return "a single value";
}

static int cyaml_refusal(const struct ld *ld, const cyaml_schema_value_t *schema, cyaml_err_t e,
                         const struct logcap *lc)
{
        struct bt bt[DEPTH_MAX + 2];
        unsigned n_bt = 0, nth = 1, line;
        const char *msg = NULL, *p;
        char at[FIELD_MAX], field[FIELD_MAX], why[WHY_MAX], qb[Q_MAX];
        bool in_bt = false;

        /* The log gives the reason first, then the backtrace innermost first. */
        for (unsigned i = 0; i < lc->n; i++) {
                const char *s = lc->line[i];
                struct bt b = { .kind = BT_MAP };

                if (startswith(s, "Load: Backtrace:"))
                        in_bt = true;
                else if (!in_bt && !msg && (p = startswith(s, "Load: ")))
                        msg = p;
                else if (in_bt && n_bt < DEPTH_MAX + 2 && bt_parse(s, &b))
                        bt[n_bt++] = b;
        }
        for (unsigned i = 0; i < n_bt / 2; i++) {
                struct bt t = bt[i];
                bt[i] = bt[n_bt - 1 - i];
                bt[n_bt - 1 - i] = t;
        }

        /* The walk already parsed these bytes, so libyaml failing now is memory. */
        if (e == CYAML_ERR_OOM || e == CYAML_ERR_LIBYAML_PARSER_INIT || e == CYAML_ERR_LIBYAML_PARSER)
                return nomem(ld);
        if (!msg)
                msg = e == CYAML_ERR_ALIAS ? "YAML aliases are not supported" : cyaml_strerror(e);

        if ((p = startswith(msg, "Unexpected key: "))) {
                const cyaml_schema_value_t *m;
                const cyaml_schema_field_t *f;
                char known[200];
                size_t o = 0;

                if (n_bt && bt[n_bt - 1].kind != BT_SEQ)
                        n_bt--;
                bt_path(at, bt, n_bt);
                field_join(field, at, p);
                known[0] = '\0';
                m = schema_at(schema, bt, n_bt);
                for (f = m ? m->mapping.fields : NULL; f && f->key && o < sizeof(known); f++)
                        o += snprintf(known + o, sizeof(known) - o, "%s%s", o ? ", " : "", f->key);
                if (known[0])
                        snprintf(why, sizeof(why), "unknown key %s (known: %s)", qs(qb, p), known);
                else
                        snprintf(why, sizeof(why), "unknown key %s", qs(qb, p));
                return report(ld, find_line(ld, field, 1), field, why);
        }
        if ((p = startswith(msg, "Missing required mapping field: "))) {
                /* The innermost frame is the mapping that lacks the field; point at it. */
                if (n_bt && bt[n_bt - 1].kind != BT_SEQ)
                        n_bt--;
                bt_path(at, bt, n_bt);
                field_join(field, at, p);
                return report(ld, find_line(ld, at, 1), field, "required field is missing");
        }
        if (startswith(msg, "Insufficient entries") && n_bt && bt[n_bt - 1].kind == BT_SEQ)
                n_bt--;
        if (startswith(msg, "Excessive entries") && n_bt && bt[n_bt - 1].kind == BT_SEQ)
                bt[n_bt - 1].idx++; /* refused before it was counted */
        bt_path(field, bt, n_bt);

        if (startswith(msg, "Mapping field already seen: ")) {
                line = find_line(ld, field, 1);
                if (line == 0)
                        return nomem(ld);
                snprintf(why, sizeof(why), "duplicate key (first given on line %u)", line);
                nth = 2;
        } else if ((p = startswith(msg, "Expecting "))) {
                const char *got = strstr(p, "got event: ");
                snprintf(why, sizeof(why), "wrong type: expected %s, got %s", shape_word(p),
                         got ? shape_word(got + strlen("got event: ")) : "something else");
        } else if (startswith(msg, "STRING length <")) {
                snprintf(why, sizeof(why), "must not be empty");
        } else if (startswith(msg, "STRING length >")) {
                snprintf(why, sizeof(why), "longer than %d bytes", STR_MAX);
        } else if ((p = startswith(msg, "Excessive entries ("))) {
                snprintf(why, sizeof(why), "too many items (at most %lu)", strtoul(p, NULL, 10));
        } else if ((p = startswith(msg, "Insufficient entries ("))) {
                unsigned long min;

                p = strstr(p, " of ");
                min = p ? strtoul(p + 4, NULL, 10) : 1;
                if (min <= 1)
                        snprintf(why, sizeof(why), "must not be empty");
                else
                        snprintf(why, sizeof(why), "needs at least %lu items", min);
        } else {
                snprintf(why, sizeof(why), "%s", msg);
        }
        line = find_line(ld, field, nth);
        return report(ld, line, field, why);
}

/* ---- reading ---- */

/* Lines as libyaml numbers them: LF, CR and CRLF each end one, and so do the
 * Unicode NEL, LS and PS breaks. */
static unsigned count_lines(const char *b, size_t n)
{
        const unsigned char *u = (const unsigned char *)b;
        unsigned breaks = 0;
        size_t i = 0, after_last = 0;

        while (i < n) {
                size_t w = 0;

                if (u[i] == '\r')
                        w = i + 1 < n && u[i + 1] == '\n' ? 2 : 1;
                else if (u[i] == '\n')
                        w = 1;
                else if (u[i] == 0xc2 && i + 1 < n && u[i + 1] == 0x85)
                        w = 2;
                else if (u[i] == 0xe2 && i + 2 < n && u[i + 1] == 0x80 && (u[i + 2] == 0xa8 || u[i + 2] == 0xa9))
                        w = 3;
                if (!w) {
                        i++;
                        continue;
                }
                breaks++;
                i += w;
                after_last = i;
        }
        if (after_last < n || breaks == 0)
                breaks++;
        return breaks;
}

static int read_file(struct ld *ld)
{
        struct stat st;
        ssize_t n;
        int fd, r = 0;

        fd = open(ld->file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                return lserr_set(ld->err, r, "%s: cannot open: %s", ld->file, strerror(-r));
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                lserr_set(ld->err, r, "%s: cannot stat: %s", ld->file, strerror(-r));
                goto out;
        }
        if (S_ISREG(st.st_mode) && st.st_size > CFG_FILE_MAX) {
                r = lserr_set(ld->err, LS_ECONFIG, "%s: %jd bytes, more than the 1 MiB a configuration may have",
                              ld->file, (intmax_t)st.st_size);
                goto out;
        }
        /* Read at most one byte past the limit, whatever fstat said: the file may grow
         * or not be a regular file. */
        ld->buf = malloc(CFG_FILE_MAX + 1);
        if (!ld->buf) {
                r = nomem(ld);
                goto out;
        }
        while (ld->len < CFG_FILE_MAX + 1) {
                n = read(fd, ld->buf + ld->len, CFG_FILE_MAX + 1 - ld->len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        lserr_set(ld->err, r, "%s: cannot read: %s", ld->file, strerror(-r));
                        goto out;
                }
                if (n == 0)
                        break;
                ld->len += (size_t)n;
        }
        if (ld->len > CFG_FILE_MAX) {
                r = lserr_set(ld->err, LS_ECONFIG, "%s: more than the 1 MiB a configuration may have", ld->file);
                goto out;
        }
        ld->n_lines = count_lines(ld->buf, ld->len);
out:
        close(fd);
        return r;
}

static const cyaml_config_t free_cfg = {
        .mem_fn = cyaml_mem,
        .log_level = CYAML_LOG_ERROR,
};

/* Reads ld->file into ld and loads it against schema; on success *ret is the raw
 * tree, to be released with cyaml_free(&free_cfg, schema, ...). */
static int parse(struct ld *ld, const cyaml_schema_value_t *schema, void **ret)
{
        struct logcap lc = { .n = 0 };
        const cyaml_config_t cc = {
                .log_fn = log_capture,
                .log_ctx = &lc,
                .mem_fn = cyaml_mem,
                .log_level = CYAML_LOG_ERROR,
                .flags = CYAML_CFG_NO_ALIAS,
        };
        struct walk w = { .want = NULL };
        cyaml_data_t *data = NULL;
        cyaml_err_t e;
        int r;

        r = read_file(ld);
        if (r < 0)
                return r;
        r = walk(ld, &w);
        if (r == -ENOMEM)
                return nomem(ld);
        if (r < 0)
                return report(ld, w.bad_line, w.bad_field, w.bad_why);
        e = cyaml_load_data((const uint8_t *)ld->buf, ld->len, &cc, schema, &data, NULL);
        if (e != CYAML_OK)
                return cyaml_refusal(ld, schema, e, &lc);
        if (!data)
                return report(ld, 1, NULL, "the file holds no settings");
        *ret = data;
        return 0;
}

/* ---- meaning ---- */

static char *sdup(const char *s, bool *oom)
{
        char *p;

        if (!s)
                return NULL;
        p = strdup(s);
        if (!p)
                *oom = true;
        return p;
}

static int check_name(const struct ld *ld, const char *field, const char *s)
{
        char qb[Q_MAX];

        if (names_valid(s))
                return 0;
        return bad(ld, field, "invalid name %s (1-64 of A-Z a-z 0-9 . _ -, and not \".\" or \"..\")", qs(qb, s));
}

/* Paths, URIs and the schedule: one line of text, and not a YAML null spelled out,
 * which libcyaml hands over as the string "null". */
static int check_text(const struct ld *ld, const char *field, const char *s)
{
        static const char *const nulls[] = { "~", "null", "Null", "NULL" };

        for (const char *p = s; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        return bad(ld, field, "contains a control character");
        for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
                if (strcmp(s, nulls[i]) == 0)
                        return bad(ld, field, "null is not a value here; leave the key out instead");
        return 0;
}

/* dial: the URL is connected to, so it needs a host (a listener may omit it). */
static int check_url(const struct ld *ld, const char *field, const char *url, bool dial)
{
        char qb[Q_MAX];
        const char *rest, *colon;
        unsigned long port = 0;
        int r;

        r = check_text(ld, field, url);
        if (r < 0)
                return r;
        if ((rest = startswith(url, "ipc://"))) {
                if (!*rest)
                        return bad(ld, field, "URL %s has no socket path", qs(qb, url));
                return 0;
        }
        rest = startswith(url, "tcp://");
        if (!rest)
                rest = startswith(url, "tls+tcp://");
        if (!rest)
                return bad(ld, field, "unsupported URL %s (use tcp://, tls+tcp:// or ipc://)", qs(qb, url));
        colon = strrchr(rest, ':');
        if (!colon || !colon[1])
                return bad(ld, field, "URL %s has no port", qs(qb, url));
        for (const char *p = colon + 1; *p; p++) {
                if (*p < '0' || *p > '9' || port > 65535)
                        return bad(ld, field, "URL %s has an invalid port (1..65535)", qs(qb, url));
                port = port * 10 + (unsigned long)(*p - '0');
        }
        if (port == 0 || port > 65535)
                return bad(ld, field, "URL %s has an invalid port (1..65535)", qs(qb, url));
        if (colon == rest && dial)
                return bad(ld, field, "URL %s has no host", qs(qb, url));
        if (rest[0] != '[' && memchr(rest, ':', (size_t)(colon - rest)))
                return bad(ld, field, "URL %s: an IPv6 address goes in brackets, as in tcp://[fd00::2]:7400",
                           qs(qb, url));
        if (strcspn(rest, "/ ") < (size_t)(colon - rest) ||
            (rest[0] == '[' && (colon == rest + 1 || colon[-1] != ']')))
                return bad(ld, field, "URL %s has an invalid host", qs(qb, url));
        return 0;
}

static int check_pubkey(const struct ld *ld, const char *field, const char *s)
{
        static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        char qb[Q_MAX];
        const char *k;
        size_t n, body;

        k = startswith(s, PUBKEY_PREFIX);
        if (!k) {
                if (startswith(s, "lockstep-pub-"))
                        return bad(ld, field, "unsupported key format %s (inline: \"lockstep-pub-v1 <base64>\")",
                                   qs(qb, s));
                return check_text(ld, field, s);
        }
        n = strlen(k);
        body = strspn(k, b64);
        if (n == 0 || n % 4 != 0 || (strcmp(k + body, "") != 0 && strcmp(k + body, "=") != 0 &&
                                     strcmp(k + body, "==") != 0))
                return bad(ld, field, "inline key %s is not valid base64", qs(qb, s));
        return 0;
}

/* Whole decimal numbers only; an absent value takes def. */
static int check_num(const struct ld *ld, const char *field, const char *s, unsigned def, unsigned min,
                     unsigned max, unsigned *ret)
{
        char qb[Q_MAX];
        unsigned long v = 0;

        if (!s) {
                *ret = def;
                return 0;
        }
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return bad(ld, field, "expected a whole number, got %s", qs(qb, s));
                if (v <= max)
                        v = v * 10 + (unsigned long)(*p - '0');
        }
        if (v < min || v > max)
                return bad(ld, field, "%s is out of range (%u..%u)", qs(qb, s), min, max);
        *ret = (unsigned)v;
        return 0;
}

/* YAML's usual spellings; anything else is refused rather than guessed. */
static int check_bool(const struct ld *ld, const char *field, const char *s, int def, int *ret)
{
        char qb[Q_MAX];

        if (!s)
                *ret = def;
        else if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))
                *ret = 1;
        else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))
                *ret = 0;
        else
                return bad(ld, field, "expected true or false, got %s", qs(qb, s));
        return 0;
}

static int agent_authorized(const struct ld *ld, const struct raw_agent *ra, unsigned i, struct cfg_authorized *a)
{
        const struct raw_authorized *rz = &ra->authorized[i];
        char f[FIELD_MAX], qb[Q_MAX];
        bool oom = false;
        int r;

        r = check_name(ld, fp(f, "authorized[%u].name", i), rz->name);
        if (r < 0)
                return r;
        for (unsigned j = 0; j < i; j++)
                if (strcmp(ra->authorized[j].name, rz->name) == 0)
                        return bad(ld, f, "duplicate name %s (also authorized[%u])", qs(qb, rz->name), j);
        r = check_pubkey(ld, fp(f, "authorized[%u].pubkey", i), rz->pubkey);
        if (r < 0)
                return r;
        for (unsigned j = 0; j < rz->n_roles; j++) {
                unsigned role = 0;

                for (size_t k = 0; k < sizeof(role_names) / sizeof(role_names[0]); k++)
                        if (strcmp(rz->roles[j], role_names[k].name) == 0)
                                role = role_names[k].role;
                fp(f, "authorized[%u].roles[%u]", i, j);
                if (!role)
                        return bad(ld, f, "unknown role %s (one of snapshot, revert, delete, admin)",
                                   qs(qb, rz->roles[j]));
                if (a->roles & role)
                        return bad(ld, f, "role %s listed twice", qs(qb, rz->roles[j]));
                a->roles |= role;
        }
        a->name = sdup(rz->name, &oom);
        a->pubkey = sdup(rz->pubkey, &oom);
        return oom ? nomem(ld) : 0;
}

static int agent_build(const struct ld *ld, const struct raw_agent *ra, struct cfg_agent **ret)
{
        struct cfg_agent *c;
        const char *backend = ra->backend ? ra->backend : "libvirt";
        bool sim, tls, oom = false;
        char qb[Q_MAX];
        int r;

        c = calloc(1, sizeof(*c));
        if (!c) {
                r = nomem(ld);
                goto out;
        }
        r = check_name(ld, "id", ra->id);
        if (r < 0)
                goto out;
        r = check_url(ld, "listen", ra->listen, false);
        if (r < 0)
                goto out;
        r = check_text(ld, "key", ra->key);
        if (r < 0)
                goto out;
        c->authorized = calloc(ra->n_authorized, sizeof(*c->authorized));
        if (!c->authorized) {
                r = nomem(ld);
                goto out;
        }
        c->n_authorized = ra->n_authorized;
        for (unsigned i = 0; i < ra->n_authorized; i++) {
                r = agent_authorized(ld, ra, i, &c->authorized[i]);
                if (r < 0)
                        goto out;
        }

        if (strcmp(backend, "libvirt") != 0 && strcmp(backend, "sim") != 0) {
                r = bad(ld, "backend", "unknown backend %s (one of libvirt, sim)", qs(qb, backend));
                goto out;
        }
        sim = strcmp(backend, "sim") == 0;
        if (sim && !ra->sim_config) {
                r = bad_at(ld, "backend", "sim_config", "required when backend is \"sim\"");
                goto out;
        }
        if (!sim && ra->sim_config) {
                r = bad(ld, "sim_config", "only used with backend: sim");
                goto out;
        }
        if (ra->sim_config) {
                r = check_text(ld, "sim_config", ra->sim_config);
                if (r < 0)
                        goto out;
        }
        if (ra->libvirt_uri) {
                r = check_text(ld, "libvirt_uri", ra->libvirt_uri);
                if (r < 0)
                        goto out;
        }
        r = check_text(ld, "journal_dir", ra->journal_dir);
        if (r < 0)
                goto out;
        if (ra->state_dir) {
                r = check_text(ld, "state_dir", ra->state_dir);
                if (r < 0)
                        goto out;
        }
        r = check_num(ld, "lease_max_s", ra->lease_max_s, 60, 1, 3600, &c->lease_max_s);
        if (r < 0)
                goto out;
        r = check_num(ld, "time_window_s", ra->time_window_s, 30, 1, 3600, &c->time_window_s);
        if (r < 0)
                goto out;
        r = check_num(ld, "guest_agent_timeout_s", ra->guest_agent_timeout_s, 10, 1, 300,
                      &c->guest_agent_timeout_s);
        if (r < 0)
                goto out;
        r = check_num(ld, "min_free_mb", ra->min_free_mb, 64, 1, 1048576, &c->min_free_mb);
        if (r < 0)
                goto out;

        /* A certificate next to a plain tcp:// listener would look like TLS and not be. */
        tls = startswith(ra->listen, "tls+tcp://") != NULL;
        if (tls && (!ra->tls_cert || !ra->tls_key)) {
                r = bad_at(ld, "listen", ra->tls_cert ? "tls_key" : "tls_cert",
                           "required when listen is a tls+tcp:// URL");
                goto out;
        }
        if (!tls && (ra->tls_cert || ra->tls_key)) {
                r = bad(ld, ra->tls_cert ? "tls_cert" : "tls_key", "only used when listen is a tls+tcp:// URL");
                goto out;
        }
        if (tls) {
                r = check_text(ld, "tls_cert", ra->tls_cert);
                if (r < 0)
                        goto out;
                r = check_text(ld, "tls_key", ra->tls_key);
                if (r < 0)
                        goto out;
        }

        c->id = sdup(ra->id, &oom);
        c->listen = sdup(ra->listen, &oom);
        c->key = sdup(ra->key, &oom);
        c->libvirt_uri = sdup(ra->libvirt_uri ? ra->libvirt_uri : "qemu:///system", &oom);
        c->backend = sdup(backend, &oom);
        c->sim_config = sdup(ra->sim_config, &oom);
        c->journal_dir = sdup(ra->journal_dir, &oom);
        c->state_dir = sdup(ra->state_dir ? ra->state_dir : ra->journal_dir, &oom);
        c->tls_cert = sdup(ra->tls_cert, &oom);
        c->tls_key = sdup(ra->tls_key, &oom);
        if (oom) {
                r = nomem(ld);
                goto out;
        }
        *ret = c;
        c = NULL;
        r = 0;
out:
        cfg_agent_free(c);
        return r;
}

static const struct raw_peer *raw_peer_find(const struct raw_coord *rc, const char *id)
{
        for (unsigned i = 0; i < rc->n_agents; i++)
                if (strcmp(rc->agents[i].id, id) == 0)
                        return &rc->agents[i];
        return NULL;
}

static int group_add_member(const struct ld *ld, const struct raw_coord *rc, struct cfg_group *g, const char *field,
                        const char *s, unsigned tier)
{
        const char *at = strchr(s, '@');
        char qb[Q_MAX], qb2[Q_MAX];
        struct cfg_member *m;
        size_t vlen;

        if (!at)
                return bad(ld, field, "member %s is not of the form vm@agent", qs(qb, s));
        vlen = (size_t)(at - s);
        if (!names_valid_n(s, vlen))
                return bad(ld, field, "invalid VM name in member %s (1-64 of A-Z a-z 0-9 . _ -)", qs(qb, s));
        if (!names_valid(at + 1))
                return bad(ld, field, "invalid agent id in member %s (1-64 of A-Z a-z 0-9 . _ -)", qs(qb, s));
        if (!raw_peer_find(rc, at + 1))
                return bad(ld, field, "member %s names agent %s, which is not listed under agents", qs(qb, s),
                           qs(qb2, at + 1));
        for (unsigned k = 0; k < g->n_members; k++)
                if (strlen(g->members[k].vm) == vlen && strncmp(g->members[k].vm, s, vlen) == 0 &&
                    strcmp(g->members[k].agent, at + 1) == 0)
                        return bad(ld, field, "member %s is listed twice in this group", qs(qb, s));
        /* Counted before the copies so that a failed copy is still freed with the group. */
        m = &g->members[g->n_members++];
        m->tier = tier;
        m->vm = strndup(s, vlen);
        m->agent = strdup(at + 1);
        if (!m->vm || !m->agent)
                return nomem(ld);
        return 0;
}

static int group_build(const struct ld *ld, const struct raw_coord *rc, unsigned i, struct cfg_group *g)
{
        const struct raw_group *rg = &rc->groups[i];
        const struct raw_retention *rr = rg->retention;
        char f[FIELD_MAX], f2[FIELD_MAX], qb[Q_MAX];
        unsigned total = 0, mode = CFG_MODE_QUIESCE;
        bool oom = false;
        int r;

        r = check_name(ld, fp(f, "groups[%u].name", i), rg->name);
        if (r < 0)
                return r;
        for (unsigned j = 0; j < i; j++)
                if (strcmp(rc->groups[j].name, rg->name) == 0)
                        return bad(ld, f, "duplicate group name %s (also groups[%u])", qs(qb, rg->name), j);
        g->name = sdup(rg->name, &oom);

        if (rg->members && rg->tiers)
                return bad(ld, fp(f, "groups[%u].tiers", i), "give either members: or tiers:, not both");
        if (!rg->members && !rg->tiers)
                return bad_at(ld, fp(f, "groups[%u]", i), fp(f2, "groups[%u].members", i),
                              "required: a group needs members: or tiers:");
        if (rg->members) {
                total = rg->n_members;
                g->tiers = calloc(1, sizeof(*g->tiers));
                if (!g->tiers)
                        return nomem(ld);
                g->n_tiers = 1;
                g->tiers[0] = sdup("default", &oom);
        } else {
                g->tiers = calloc(rg->n_tiers, sizeof(*g->tiers));
                if (!g->tiers)
                        return nomem(ld);
                g->n_tiers = rg->n_tiers;
                for (unsigned t = 0; t < rg->n_tiers; t++) {
                        r = check_name(ld, fp(f, "groups[%u].tiers[%u].name", i, t), rg->tiers[t].name);
                        if (r < 0)
                                return r;
                        for (unsigned u = 0; u < t; u++)
                                if (strcmp(rg->tiers[u].name, rg->tiers[t].name) == 0)
                                        return bad(ld, f, "duplicate tier name %s (also tiers[%u])",
                                                   qs(qb, rg->tiers[t].name), u);
                        g->tiers[t] = sdup(rg->tiers[t].name, &oom);
                        total += rg->tiers[t].n_members;
                }
                if (total > MEMBERS_MAX)
                        return bad(ld, fp(f, "groups[%u].tiers", i), "more than %d members in one group",
                                   MEMBERS_MAX);
        }
        if (oom)
                return nomem(ld);
        g->members = calloc(total, sizeof(*g->members));
        if (!g->members)
                return nomem(ld);
        if (rg->members) {
                for (unsigned j = 0; j < rg->n_members; j++) {
                        r = group_add_member(ld, rc, g, fp(f, "groups[%u].members[%u]", i, j), rg->members[j], 0);
                        if (r < 0)
                                return r;
                }
        } else {
                for (unsigned t = 0; t < rg->n_tiers; t++) {
                        for (unsigned j = 0; j < rg->tiers[t].n_members; j++) {
                                r = group_add_member(ld, rc, g, fp(f, "groups[%u].tiers[%u].members[%u]", i, t, j),
                                                 rg->tiers[t].members[j], t);
                                if (r < 0)
                                        return r;
                        }
                }
        }

        /* Members without a guest agent, paused instead of frozen: never a
         * silent fallback, so each must be named here. */
        for (unsigned j = 0; j < rg->n_crash; j++) {
                const char *want = rg->crash[j], *at = strchr(want, '@');
                unsigned k;
                for (k = 0; at && k < g->n_members; k++)
                        if (strlen(g->members[k].vm) == (size_t)(at - want) &&
                            !strncmp(g->members[k].vm, want, (size_t)(at - want)) && !strcmp(g->members[k].agent, at + 1))
                                break;
                if (!at || k == g->n_members)
                        return bad(ld, fp(f, "groups[%u].crash_consistent[%u]", i, j),
                                   "%s is not a member of this group (give it as vm@agent)", qs(qb, want));
                g->members[k].crash = 1;
        }

        if (rg->hooks) {
                const struct raw_hooks *h = rg->hooks;
                if (h->pre_freeze) {
                        r = check_text(ld, fp(f, "groups[%u].hooks.pre_freeze", i), h->pre_freeze);
                        if (r < 0)
                                return r;
                        if (strlen(h->pre_freeze) > 1024)
                                return bad(ld, f, "longer than 1024 bytes");
                        g->hook_pre_freeze = sdup(h->pre_freeze, &oom);
                }
                if (h->post_thaw) {
                        r = check_text(ld, fp(f, "groups[%u].hooks.post_thaw", i), h->post_thaw);
                        if (r < 0)
                                return r;
                        if (strlen(h->post_thaw) > 1024)
                                return bad(ld, f, "longer than 1024 bytes");
                        g->hook_post_thaw = sdup(h->post_thaw, &oom);
                }
                r = check_num(ld, fp(f, "groups[%u].hooks.timeout_s", i), h->timeout_s, 10, 1, 300,
                              &g->hook_timeout_s);
                if (r < 0)
                        return r;
        }

        if (rg->mode) {
                for (mode = 0; mode < sizeof(mode_names) / sizeof(mode_names[0]); mode++)
                        if (strcmp(rg->mode, mode_names[mode]) == 0)
                                break;
                if (mode == sizeof(mode_names) / sizeof(mode_names[0]))
                        return bad(ld, fp(f, "groups[%u].mode", i), "unknown mode %s (one of quiesce, pause, memory)",
                                   qs(qb, rg->mode));
        }
        g->mode = (enum cfg_mode)mode;
        r = check_num(ld, fp(f, "groups[%u].lease_s", i), rg->lease_s, 30, 1, 3600, &g->lease_s);
        if (r < 0)
                return r;
        if (rg->schedule) {
                struct cron cr;
                lserr ce = {0};
                r = check_text(ld, fp(f, "groups[%u].schedule", i), rg->schedule);
                if (r < 0)
                        return r;
                if (cron_parse(rg->schedule, &cr, &ce) < 0)
                        return bad(ld, f, "%s", ce.msg);
                if (cron_next(&cr, (long long)time(NULL)) < 0)
                        return bad(ld, f, "schedule %s never falls due", qs(qb, rg->schedule));
                g->schedule = sdup(rg->schedule, &oom);
        }
        r = check_num(ld, fp(f, "groups[%u].random_delay_s", i), rg->random_delay_s, 0, 0, 3600, &g->random_delay_s);
        if (r < 0)
                return r;
        r = check_bool(ld, fp(f, "groups[%u].catch_up", i), rg->catch_up, 1, &g->catch_up);
        if (r < 0)
                return r;
        /* Without a policy every pre-revert branch is kept, as every cut is. */
        g->retention.keep_branches = UINT_MAX;
        if (rr) {
                r = check_num(ld, fp(f, "groups[%u].retention.keep_branches", i), rr->keep_branches, 1, 0, RETENTION_MAX,
                              &g->retention.keep_branches);
                if (r < 0)
                        return r;
        }
        if (rr) {
                const struct {
                        const char *key;
                        const char *val;
                        unsigned *out;
                } nums[] = {
                        { "keep_last", rr->keep_last, &g->retention.keep_last },
                        { "hourly", rr->hourly, &g->retention.hourly },
                        { "daily", rr->daily, &g->retention.daily },
                        { "weekly", rr->weekly, &g->retention.weekly },
                        { "monthly", rr->monthly, &g->retention.monthly },
                };
                for (size_t k = 0; k < sizeof(nums) / sizeof(nums[0]); k++) {
                        r = check_num(ld, fp(f, "groups[%u].retention.%s", i, nums[k].key), nums[k].val, 0, 0,
                                      RETENTION_MAX, nums[k].out);
                        if (r < 0)
                                return r;
                }
        }
        return oom ? nomem(ld) : 0;
}

static int coord_build(const struct ld *ld, const struct raw_coord *rc, struct cfg_coord **ret)
{
        struct cfg_coord *c;
        char f[FIELD_MAX], qb[Q_MAX];
        bool oom = false;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c) {
                r = nomem(ld);
                goto out;
        }
        /* The control socket takes unsigned requests; only a local socket is safe for it. */
        if (!startswith(rc->control, "ipc://")) {
                r = bad(ld, "control", "the control socket must be an ipc:// URL, got %s", qs(qb, rc->control));
                goto out;
        }
        r = check_url(ld, "control", rc->control, true);
        if (r < 0)
                goto out;
        r = check_text(ld, "key", rc->key);
        if (r < 0)
                goto out;
        r = check_text(ld, "catalog", rc->catalog);
        if (r < 0)
                goto out;
        if (rc->counter_file) {
                r = check_text(ld, "counter_file", rc->counter_file);
                if (r < 0)
                        goto out;
        }
        r = check_num(ld, "step_timeout_s", rc->step_timeout_s, 30, 1, 3600, &c->step_timeout_s);
        if (r < 0)
                goto out;
        r = check_num(ld, "max_cuts", rc->max_cuts, 8, 1, 1024, &c->max_cuts);
        if (r < 0)
                goto out;
        r = check_num(ld, "max_cuts_per_agent", rc->max_cuts_per_agent, 2, 1, 64, &c->max_cuts_per_agent);
        if (r < 0)
                goto out;
        r = check_num(ld, "history_keep", rc->history_keep, 10000, 10, 10000000, &c->history_keep);
        if (r < 0)
                goto out;
        r = check_num(ld, "audit_keep", rc->audit_keep, 200000, 100, 100000000, &c->audit_keep);
        if (r < 0)
                goto out;
        r = check_num(ld, "events_keep", rc->events_keep, 200000, 100, 100000000, &c->events_keep);
        if (r < 0)
                goto out;
        if (rc->metrics) {
                r = check_text(ld, "metrics", rc->metrics);
                if (r < 0)
                        goto out;
                if (!startswith(rc->metrics, "http://")) {
                        r = bad(ld, "metrics", "expected http://HOST:PORT, got %s", qs(qb, rc->metrics));
                        goto out;
                }
                c->metrics = sdup(rc->metrics, &oom);
        }

        c->agents = calloc(rc->n_agents, sizeof(*c->agents));
        if (!c->agents) {
                r = nomem(ld);
                goto out;
        }
        c->n_agents = rc->n_agents;
        for (unsigned i = 0; i < rc->n_agents; i++) {
                const struct raw_peer *rp = &rc->agents[i];

                r = check_name(ld, fp(f, "agents[%u].id", i), rp->id);
                if (r < 0)
                        goto out;
                for (unsigned j = 0; j < i; j++) {
                        if (strcmp(rc->agents[j].id, rp->id) == 0) {
                                r = bad(ld, f, "duplicate agent id %s (also agents[%u])", qs(qb, rp->id), j);
                                goto out;
                        }
                }
                r = check_url(ld, fp(f, "agents[%u].url", i), rp->url, true);
                if (r < 0)
                        goto out;
                r = check_pubkey(ld, fp(f, "agents[%u].pubkey", i), rp->pubkey);
                if (r < 0)
                        goto out;
                c->agents[i].id = sdup(rp->id, &oom);
                c->agents[i].url = sdup(rp->url, &oom);
                c->agents[i].pubkey = sdup(rp->pubkey, &oom);
        }

        if (rc->n_groups) {
                c->groups = calloc(rc->n_groups, sizeof(*c->groups));
                if (!c->groups) {
                        r = nomem(ld);
                        goto out;
                }
                c->n_groups = rc->n_groups;
        }
        for (unsigned i = 0; i < rc->n_groups; i++) {
                r = group_build(ld, rc, i, &c->groups[i]);
                if (r < 0)
                        goto out;
        }

        c->control = sdup(rc->control, &oom);
        c->key = sdup(rc->key, &oom);
        c->catalog = sdup(rc->catalog, &oom);
        if (rc->counter_file)
                c->counter_file = sdup(rc->counter_file, &oom);
        else if (asprintf(&c->counter_file, "%s.counter", rc->catalog) < 0) {
                c->counter_file = NULL;
                oom = true;
        }
        if (oom) {
                r = nomem(ld);
                goto out;
        }
        *ret = c;
        c = NULL;
        r = 0;
out:
        cfg_coord_free(c);
        return r;
}

/* ---- public ---- */

int cfg_agent_load(const char *path, struct cfg_agent **ret, lserr *err)
{
        struct ld ld = { .file = path, .err = err };
        struct raw_agent *raw = NULL;
        int r;

        r = parse(&ld, &agent_schema, (void **)&raw);
        if (r < 0)
                goto out;
        r = agent_build(&ld, raw, ret);
out:
        cyaml_free(&free_cfg, &agent_schema, raw, 0);
        free(ld.buf);
        return r;
}

struct cfg_agent *cfg_agent_free(struct cfg_agent *c)
{
        if (!c)
                return NULL;
        for (unsigned i = 0; i < c->n_authorized; i++) {
                free(c->authorized[i].name);
                free(c->authorized[i].pubkey);
        }
        free(c->authorized);
        free(c->id);
        free(c->listen);
        free(c->key);
        free(c->libvirt_uri);
        free(c->backend);
        free(c->sim_config);
        free(c->journal_dir);
        free(c->state_dir);
        free(c->tls_cert);
        free(c->tls_key);
        free(c);
        return NULL;
}

int cfg_coord_load(const char *path, struct cfg_coord **ret, lserr *err)
{
        struct ld ld = { .file = path, .err = err };
        struct raw_coord *raw = NULL;
        int r;

        r = parse(&ld, &coord_schema, (void **)&raw);
        if (r < 0)
                goto out;
        r = coord_build(&ld, raw, ret);
out:
        cyaml_free(&free_cfg, &coord_schema, raw, 0);
        free(ld.buf);
        return r;
}

struct cfg_coord *cfg_coord_free(struct cfg_coord *c)
{
        if (!c)
                return NULL;
        for (unsigned i = 0; i < c->n_agents; i++) {
                free(c->agents[i].id);
                free(c->agents[i].url);
                free(c->agents[i].pubkey);
        }
        free(c->agents);
        for (unsigned i = 0; i < c->n_groups; i++) {
                struct cfg_group *g = &c->groups[i];

                for (unsigned t = 0; t < g->n_tiers; t++)
                        free(g->tiers[t]);
                free(g->tiers);
                for (unsigned m = 0; m < g->n_members; m++) {
                        free(g->members[m].vm);
                        free(g->members[m].agent);
                }
                free(g->members);
                free(g->name);
                free(g->schedule);
                free(g->hook_pre_freeze);
                free(g->hook_post_thaw);
        }
        free(c->groups);
        free(c->control);
        free(c->key);
        free(c->catalog);
        free(c->counter_file);
        free(c->metrics);
        free(c);
        return NULL;
}

const struct cfg_group *cfg_coord_group(const struct cfg_coord *c, const char *name)
{
        for (unsigned i = 0; c && name && i < c->n_groups; i++)
                if (strcmp(c->groups[i].name, name) == 0)
                        return &c->groups[i];
        return NULL;
}

const struct cfg_peer *cfg_coord_agent(const struct cfg_coord *c, const char *id)
{
        for (unsigned i = 0; c && id && i < c->n_agents; i++)
                if (strcmp(c->agents[i].id, id) == 0)
                        return &c->agents[i];
        return NULL;
}

const char *cfg_role_name(enum cfg_role r)
{
        for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
                if (role_names[i].role == r)
                        return role_names[i].name;
        return NULL;
}

const char *cfg_mode_name(enum cfg_mode m)
{
        if ((unsigned)m >= sizeof(mode_names) / sizeof(mode_names[0]))
                return NULL;
        return mode_names[m];
}
