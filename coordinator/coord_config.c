/* coord_config: coordinator.yaml. cfgload checks its shape against the schema here;
 * the rest of this file checks what the values mean and builds the groups. */
#include "coord_config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfgload.h"
#include "cleanup.h"
#include "coord_ha.h"
#include "cron.h"
#include "names.h"
#include "strset.h"
#include "transport.h"

#define AGENTS_MAX 10000
#define GROUPS_MAX 1024
#define TIERS_MAX 16
#define MEMBERS_MAX 10000 /* per list, and per group across its tiers: 10,000 VMs in one cut */
#define RETENTION_MAX 100000

#define REQ_STR CFGLOAD_REQ_STR
#define OPT_STR CFGLOAD_OPT_STR
#define FIELD_MAX CFGLOAD_FIELD_MAX
#define Q_MAX CFGLOAD_Q_MAX

/* What libcyaml fills: every scalar a string, NULL when absent. */
struct raw_peer {
        char *id;
        char *url;
        char *pubkey;
        char *tls_ca;
        char *server_name;
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

/* The old place of hook commands, parsed only to refuse it with a pointer to
 * where they live now. */
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
        char *hook;
};

struct raw_coord {
        char *control;
        char *key;
        char *catalog;
        char *counter_file;
        char *step_timeout_s;
        char *stop_timeout_s;
        char *max_cuts;
        char *max_cuts_per_agent;
        char *history_keep;
        char *history_keep_members;
        char *audit_keep;
        char *events_keep;
        char *metrics;
        char *metrics_public;
        char *tls_ca;
        struct raw_ha *ha;
        struct raw_peer *agents;
        unsigned n_agents;
        struct raw_group *groups;
        unsigned n_groups;
};

static const cyaml_schema_field_t peer_fields[] = {
        REQ_STR("id", struct raw_peer, id),
        REQ_STR("url", struct raw_peer, url),
        REQ_STR("pubkey", struct raw_peer, pubkey),
        OPT_STR("tls_ca", struct raw_peer, tls_ca),
        OPT_STR("server_name", struct raw_peer, server_name),
        CYAML_FIELD_END,
};

static const cyaml_schema_value_t peer_entry = {
        CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_peer, peer_fields),
};

static const cyaml_schema_field_t tier_fields[] = {
        REQ_STR("name", struct raw_tier, name),
        CYAML_FIELD_SEQUENCE_COUNT("members", CYAML_FLAG_POINTER, struct raw_tier, members, n_members,
                                   &cfgload_str_entry, 1, MEMBERS_MAX),
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
                                   members, n_members, &cfgload_str_entry, 1, MEMBERS_MAX),
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
                                   crash, n_crash, &cfgload_str_entry, 0, MEMBERS_MAX),
        OPT_STR("hook", struct raw_group, hook),
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
        OPT_STR("catalog", struct raw_coord, catalog), /* required without ha: */
        OPT_STR("counter_file", struct raw_coord, counter_file),
        OPT_STR("step_timeout_s", struct raw_coord, step_timeout_s),
        OPT_STR("stop_timeout_s", struct raw_coord, stop_timeout_s),
        OPT_STR("max_cuts", struct raw_coord, max_cuts),
        OPT_STR("max_cuts_per_agent", struct raw_coord, max_cuts_per_agent),
        OPT_STR("history_keep", struct raw_coord, history_keep),
        OPT_STR("history_keep_members", struct raw_coord, history_keep_members),
        OPT_STR("audit_keep", struct raw_coord, audit_keep),
        OPT_STR("events_keep", struct raw_coord, events_keep),
        OPT_STR("metrics", struct raw_coord, metrics),
        OPT_STR("metrics_public", struct raw_coord, metrics_public),
        OPT_STR("tls_ca", struct raw_coord, tls_ca),
        CYAML_FIELD_MAPPING_PTR("ha", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_coord, ha, coord_ha_fields),
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

static const char *const mode_names[] = {
        [CFG_MODE_QUIESCE] = "quiesce",
        [CFG_MODE_PAUSE] = "pause",
        [CFG_MODE_MEMORY] = "memory",
};

#define N_MODES (sizeof(mode_names) / sizeof(mode_names[0]))

static bool has_prefix(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- groups ---- */

/* Names looked up while a config is built: a fleet's thousands of members are
 * each checked against the agents and the group's other members. */
struct names_index {
        const struct strset *agents; /* agent id, "" -> its index */
        struct strset *members;      /* vm, agent of this group so far */
};

/* g->members has room for cap members, counted from the lists beforehand. */
static int group_add_member(const struct cfgload *ld, const struct names_index *ix, struct cfg_group *g,
                            unsigned cap, const char *field, const char *s, unsigned tier)
{
        const char *at = strchr(s, '@');
        char qb[Q_MAX], qb2[Q_MAX];
        struct cfg_member *m;
        size_t vlen;

        if (!at)
                return cfgload_bad(ld, field, "member %s is not of the form vm@agent", cfgload_quote(qb, s));
        vlen = (size_t)(at - s);
        if (!names_valid_n(s, vlen))
                return cfgload_bad(ld, field, "invalid VM name in member %s (1-64 of A-Z a-z 0-9 . _ -)",
                                   cfgload_quote(qb, s));
        if (!names_valid(at + 1))
                return cfgload_bad(ld, field, "invalid agent id in member %s (1-64 of A-Z a-z 0-9 . _ -)",
                                   cfgload_quote(qb, s));
        if (strset_get(ix->agents, at + 1, "") < 0)
                return cfgload_bad(ld, field, "member %s names agent %s, which is not listed under agents",
                                   cfgload_quote(qb, s), cfgload_quote(qb2, at + 1));
        /* Counted before the copies so that a failed copy is still freed with the group. */
        assert(g->n_members < cap);
        m = &g->members[g->n_members++];
        m->tier = tier;
        m->vm = strndup(s, vlen);
        m->agent = strdup(at + 1);
        if (!m->vm || !m->agent)
                return cfgload_nomem(ld);
        if (strset_add(ix->members, m->vm, m->agent, g->n_members - 1) >= 0)
                return cfgload_bad(ld, field, "member %s is listed twice in this group", cfgload_quote(qb, s));
        return 0;
}

/* The tiers, or the one "default" tier of a plain members: list; *ret_total is how
 * many members the group lists in all. */
static int group_tiers(const struct cfgload *ld, const struct raw_group *rg, unsigned i, struct cfg_group *g,
                       unsigned *ret_total)
{
        char f[FIELD_MAX], f2[FIELD_MAX], qb[Q_MAX];
        unsigned total = 0;
        bool oom = false;
        int r;

        if (rg->members && rg->tiers)
                return cfgload_bad(ld, cfgload_field(f, "groups[%u].tiers", i),
                                   "give either members: or tiers:, not both");
        if (!rg->members && !rg->tiers)
                return cfgload_bad_at(ld, cfgload_field(f, "groups[%u]", i), cfgload_field(f2, "groups[%u].members", i),
                                      "required: a group needs members: or tiers:");
        g->n_tiers = rg->members ? 1 : rg->n_tiers;
        g->tiers = calloc(g->n_tiers, sizeof(*g->tiers));
        if (!g->tiers)
                return cfgload_nomem(ld);
        if (rg->members) {
                g->tiers[0] = cfgload_strdup("default", &oom);
                *ret_total = rg->n_members;
                return oom ? cfgload_nomem(ld) : 0;
        }
        for (unsigned t = 0; t < rg->n_tiers; t++) {
                r = cfgload_check_name(ld, cfgload_field(f, "groups[%u].tiers[%u].name", i, t), rg->tiers[t].name);
                if (r < 0)
                        return r;
                for (unsigned u = 0; u < t; u++)
                        if (strcmp(rg->tiers[u].name, rg->tiers[t].name) == 0)
                                return cfgload_bad(ld, f, "duplicate tier name %s (also tiers[%u])",
                                                   cfgload_quote(qb, rg->tiers[t].name), u);
                g->tiers[t] = cfgload_strdup(rg->tiers[t].name, &oom);
                total += rg->tiers[t].n_members;
        }
        if (total > MEMBERS_MAX)
                return cfgload_bad(ld, cfgload_field(f, "groups[%u].tiers", i), "more than %d members in one group",
                                   MEMBERS_MAX);
        if (oom)
                return cfgload_nomem(ld);
        *ret_total = total;
        return 0;
}

static int group_members(const struct cfgload *ld, const struct raw_coord *rc, const struct strset *agents,
                         unsigned i, struct cfg_group *g, unsigned total)
{
        const struct raw_group *rg = &rc->groups[i];
        _cleanup_(strset_freep) struct strset *members = strset_new(total);
        const struct names_index ix = {.agents = agents, .members = members};
        char f[FIELD_MAX];
        int r;

        g->members = calloc(total, sizeof(*g->members));
        if (!g->members || !members)
                return cfgload_nomem(ld);
        for (unsigned j = 0; rg->members && j < rg->n_members; j++) {
                r = group_add_member(ld, &ix, g, total, cfgload_field(f, "groups[%u].members[%u]", i, j),
                                     rg->members[j], 0);
                if (r < 0)
                        return r;
        }
        for (unsigned t = 0; !rg->members && t < rg->n_tiers; t++) {
                for (unsigned j = 0; j < rg->tiers[t].n_members; j++) {
                        r = group_add_member(ld, &ix, g, total,
                                             cfgload_field(f, "groups[%u].tiers[%u].members[%u]", i, t, j),
                                             rg->tiers[t].members[j], t);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* Members without a guest agent, paused instead of frozen: never a silent
 * fallback, so each must be named here. */
static int group_crash(const struct cfgload *ld, const struct raw_group *rg, unsigned i, struct cfg_group *g)
{
        char f[FIELD_MAX], qb[Q_MAX];

        for (unsigned j = 0; j < rg->n_crash; j++) {
                const char *want = rg->crash[j], *at = strchr(want, '@');
                unsigned k;

                for (k = 0; at && k < g->n_members; k++)
                        if (strlen(g->members[k].vm) == (size_t)(at - want) &&
                            !strncmp(g->members[k].vm, want, (size_t)(at - want)) &&
                            !strcmp(g->members[k].agent, at + 1))
                                break;
                if (!at || k == g->n_members)
                        return cfgload_bad(ld, cfgload_field(f, "groups[%u].crash_consistent[%u]", i, j),
                                           "%s is not a member of this group (give it as vm@agent)",
                                           cfgload_quote(qb, want));
                g->members[k].crash = 1;
        }
        return 0;
}

/* The group names a hook; its commands are in each agent's agent.yaml, so
 * that no command text ever travels on the wire. */
static int group_hook(const struct cfgload *ld, const struct raw_group *rg, unsigned i, struct cfg_group *g)
{
        char f[FIELD_MAX];
        bool oom = false;
        int r;

        if (rg->hooks)
                return cfgload_bad(ld, cfgload_field(f, "groups[%u].hooks", i),
                                   "hook commands are no longer set here: define them per VM in each agent's "
                                   "agent.yaml (vms[].hooks[]) and name one with \"hook: NAME\"");
        if (!rg->hook)
                return 0;
        r = cfgload_check_name(ld, cfgload_field(f, "groups[%u].hook", i), rg->hook);
        if (r < 0)
                return r;
        g->hook = cfgload_strdup(rg->hook, &oom);
        return oom ? cfgload_nomem(ld) : 0;
}

static int group_schedule(const struct cfgload *ld, const struct raw_group *rg, unsigned i, struct cfg_group *g)
{
        char f[FIELD_MAX], qb[Q_MAX];
        struct cron cr;
        lserr ce = { 0 };
        bool oom = false;
        int r;

        if (!rg->schedule)
                return 0;
        r = cfgload_check_text(ld, cfgload_field(f, "groups[%u].schedule", i), rg->schedule);
        if (r < 0)
                return r;
        if (cron_parse(rg->schedule, &cr, &ce) < 0)
                return cfgload_bad(ld, f, "%s", ce.msg);
        if (cron_next(&cr, (long long)time(NULL)) < 0)
                return cfgload_bad(ld, f, "schedule %s never falls due", cfgload_quote(qb, rg->schedule));
        g->schedule = cfgload_strdup(rg->schedule, &oom);
        return oom ? cfgload_nomem(ld) : 0;
}

/* Without a policy every pre-revert branch is kept, as every cut is. */
static int group_retention(const struct cfgload *ld, const struct raw_group *rg, unsigned i, struct cfg_group *g)
{
        const struct raw_retention *rr = rg->retention;
        char f[FIELD_MAX];
        int r;

        g->retention.keep_branches = UINT_MAX;
        if (!rr)
                return 0;
        r = cfgload_check_num(ld, cfgload_field(f, "groups[%u].retention.keep_branches", i), rr->keep_branches, 1, 0,
                              RETENTION_MAX, &g->retention.keep_branches);
        if (r < 0)
                return r;
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
                r = cfgload_check_num(ld, cfgload_field(f, "groups[%u].retention.%s", i, nums[k].key), nums[k].val, 0,
                                      0, RETENTION_MAX, nums[k].out);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int group_mode(const struct cfgload *ld, const struct raw_group *rg, unsigned i, struct cfg_group *g)
{
        char f[FIELD_MAX], qb[Q_MAX];
        unsigned mode;

        g->mode = CFG_MODE_QUIESCE;
        if (!rg->mode)
                return 0;
        for (mode = 0; mode < N_MODES; mode++)
                if (strcmp(rg->mode, mode_names[mode]) == 0)
                        break;
        if (mode == N_MODES)
                return cfgload_bad(ld, cfgload_field(f, "groups[%u].mode", i),
                                   "unknown mode %s (one of quiesce, pause, memory)", cfgload_quote(qb, rg->mode));
        g->mode = (enum cfg_mode)mode;
        return 0;
}

/* Builds group i into g, which the caller frees (with the whole config) even when
 * this fails half way. */
static int group_build(const struct cfgload *ld, const struct raw_coord *rc, const struct strset *agents, unsigned i,
                       struct cfg_group *g)
{
        const struct raw_group *rg = &rc->groups[i];
        char f[FIELD_MAX], qb[Q_MAX];
        unsigned total = 0;
        bool oom = false;
        int r;

        r = cfgload_check_name(ld, cfgload_field(f, "groups[%u].name", i), rg->name);
        if (r < 0)
                return r;
        for (unsigned j = 0; j < i; j++)
                if (strcmp(rc->groups[j].name, rg->name) == 0)
                        return cfgload_bad(ld, f, "duplicate group name %s (also groups[%u])",
                                           cfgload_quote(qb, rg->name), j);
        g->name = cfgload_strdup(rg->name, &oom);
        if (oom)
                return cfgload_nomem(ld);
        r = group_tiers(ld, rg, i, g, &total);
        if (r < 0)
                return r;
        r = group_members(ld, rc, agents, i, g, total);
        if (r < 0)
                return r;
        r = group_crash(ld, rg, i, g);
        if (r < 0)
                return r;
        r = group_hook(ld, rg, i, g);
        if (r < 0)
                return r;
        r = group_mode(ld, rg, i, g);
        if (r < 0)
                return r;
        r = cfgload_check_num(ld, cfgload_field(f, "groups[%u].lease_s", i), rg->lease_s, 30, 1, 3600, &g->lease_s);
        if (r < 0)
                return r;
        r = group_schedule(ld, rg, i, g);
        if (r < 0)
                return r;
        r = cfgload_check_num(ld, cfgload_field(f, "groups[%u].random_delay_s", i), rg->random_delay_s, 0, 0, 3600,
                              &g->random_delay_s);
        if (r < 0)
                return r;
        r = cfgload_check_bool(ld, cfgload_field(f, "groups[%u].catch_up", i), rg->catch_up, 1, &g->catch_up);
        if (r < 0)
                return r;
        return group_retention(ld, rg, i, g);
}

/* ---- the whole file ---- */

static int coord_numbers(const struct cfgload *ld, const struct raw_coord *rc, struct cfg_coord *c)
{
        int r;

        r = cfgload_check_num(ld, "step_timeout_s", rc->step_timeout_s, 30, 1, 3600, &c->step_timeout_s);
        if (r < 0)
                return r;
        r = cfgload_check_num(ld, "stop_timeout_s", rc->stop_timeout_s, 30, 1, 3600, &c->stop_timeout_s);
        if (r < 0)
                return r;
        r = cfgload_check_num(ld, "max_cuts", rc->max_cuts, 8, 1, 1024, &c->max_cuts);
        if (r < 0)
                return r;
        r = cfgload_check_num(ld, "max_cuts_per_agent", rc->max_cuts_per_agent, 2, 1, 64, &c->max_cuts_per_agent);
        if (r < 0)
                return r;
        /* The defaults suit SQLite; etcd's store (2 GiB quota by default, every
         * row three keys or more) gets a tenth of them. */
        const unsigned tenth = rc->ha ? 10 : 1;
        r = cfgload_check_num(ld, "history_keep", rc->history_keep, 10000 / tenth, 10, 10000000, &c->history_keep);
        if (r < 0)
                return r;
        /* At least one transaction of the largest group (10,000 members). */
        r = cfgload_check_num(ld, "history_keep_members", rc->history_keep_members, 1000000 / tenth, 10000,
                              1000000000, &c->history_keep_members);
        if (r < 0)
                return r;
        r = cfgload_check_num(ld, "audit_keep", rc->audit_keep, 200000 / tenth, 100, 100000000, &c->audit_keep);
        if (r < 0)
                return r;
        return cfgload_check_num(ld, "events_keep", rc->events_keep, 200000 / tenth, 100, 100000000, &c->events_keep);
}

/* Whether host (as in a URL: a name, an IPv4 address or a bracketed IPv6 one) is
 * this machine's loopback: only then is the unauthenticated /metrics private. */
static bool host_is_loopback(const char *host, size_t len)
{
        char h[INET6_ADDRSTRLEN + 2];
        struct in_addr a4;
        struct in6_addr a6;

        if (len == 0 || len >= sizeof(h))
                return false;
        memcpy(h, host, len);
        h[len] = '\0';
        if (!strcmp(h, "localhost"))
                return true;
        if (inet_pton(AF_INET, h, &a4) == 1)
                return (ntohl(a4.s_addr) >> 24) == 127;
        if (len > 2 && h[0] == '[' && h[len - 1] == ']') {
                h[len - 1] = '\0';
                return inet_pton(AF_INET6, h + 1, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
        }
        return false;
}

/* /metrics has no authentication: it is served on loopback, 127.0.0.1 when the
 * URL names no host, and another address is refused unless metrics_public says
 * the operator means it. c->metrics gets the URL to serve. */
static int coord_metrics(const struct cfgload *ld, const struct raw_coord *rc, struct cfg_coord *c)
{
        const char *hp, *colon;
        char qb[Q_MAX];
        bool oom = false;
        int pub = 0, r = cfgload_check_bool(ld, "metrics_public", rc->metrics_public, 0, &pub);

        if (r < 0 || !rc->metrics)
                return r;
        r = cfgload_check_text(ld, "metrics", rc->metrics);
        if (r < 0)
                return r;
        hp = has_prefix(rc->metrics, "http://") ? rc->metrics + 7 : NULL;
        colon = hp ? strrchr(hp, ':') : NULL;
        if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
            (colon > hp && hp[0] == '[' && colon[-1] != ']'))
                return cfgload_bad(ld, "metrics", "expected http://HOST:PORT, got %s", cfgload_quote(qb, rc->metrics));
        if (colon == hp) {
                if (asprintf(&c->metrics, "http://127.0.0.1%s", colon) < 0)
                        c->metrics = NULL, oom = true;
        } else if (!pub && !host_is_loopback(hp, (size_t)(colon - hp))) {
                return cfgload_bad(ld, "metrics",
                                   "%s is not a loopback address and /metrics has no authentication: "
                                   "serve it on 127.0.0.1 (behind a proxy that authenticates), or set "
                                   "metrics_public: true",
                                   cfgload_quote(qb, rc->metrics));
        } else {
                c->metrics = cfgload_strdup(rc->metrics, &oom);
        }
        c->metrics_public = pub;
        return oom ? cfgload_nomem(ld) : 0;
}

static int coord_settings(const struct cfgload *ld, const struct raw_coord *rc, struct cfg_coord *c)
{
        char qb[Q_MAX];
        int r;

        /* The control socket takes unsigned requests; only a local socket is safe for it. */
        if (!has_prefix(rc->control, "ipc://"))
                return cfgload_bad(ld, "control", "the control socket must be an ipc:// URL, got %s",
                                   cfgload_quote(qb, rc->control));
        r = cfgload_check_url(ld, "control", rc->control, true);
        if (r < 0)
                return r;
        r = cfgload_check_text(ld, "key", rc->key);
        if (r < 0)
                return r;
        /* With ha: the catalog is in etcd, and no file names the counter. */
        if (!rc->ha && !rc->catalog)
                return cfgload_bad(ld, "catalog", "missing: the SQLite file of the catalog (or an ha: section)");
        if (rc->ha && rc->catalog)
                return cfgload_bad(ld, "catalog", "with ha: the catalog is in etcd; remove catalog:");
        if (rc->ha && !rc->counter_file)
                return cfgload_bad_at(ld, "ha", "counter_file",
                                      "missing: with ha: this lockstepd's command counter needs a file of its own");
        r = rc->catalog ? cfgload_check_text(ld, "catalog", rc->catalog) : 0;
        if (r < 0)
                return r;
        if (rc->counter_file) {
                r = cfgload_check_text(ld, "counter_file", rc->counter_file);
                if (r < 0)
                        return r;
        }
        r = coord_numbers(ld, rc, c);
        if (r < 0)
                return r;
        return coord_metrics(ld, rc, c);
}

/* The host of a tcp:// URL already checked by cfgload_check_url, brackets off. */
static char *url_host(const char *url, bool *oom)
{
        char host[CFGLOAD_STR_MAX + 1];
        int r = transport_url_host(url, host, sizeof(host));
        char *h;

        assert(r == 0); /* cfgload_check_url saw a host, no longer than the URL */
        h = strdup(host);
        if (!h)
                *oom = true;
        return h;
}

/* A tls+tcp:// agent is always verified: its certificate must chain to tls_ca
 * (its own or the fleet's) and name server_name (default: the URL's host).
 * Without a CA there is no agent to trust at the TLS layer, so no fallback. */
static int agent_tls(const struct cfgload *ld, const struct raw_coord *rc, unsigned i, struct cfg_peer *p)
{
        const struct raw_peer *rp = &rc->agents[i];
        const char *ca = rp->tls_ca ? rp->tls_ca : rc->tls_ca;
        char f[FIELD_MAX], f2[FIELD_MAX], qb[Q_MAX];
        bool oom = false;
        int r;

        if (!has_prefix(rp->url, "tls+tcp://")) {
                if (rp->tls_ca)
                        return cfgload_bad(ld, cfgload_field(f, "agents[%u].tls_ca", i),
                                           "only used when the agent's url is a tls+tcp:// URL");
                if (rp->server_name)
                        return cfgload_bad(ld, cfgload_field(f, "agents[%u].server_name", i),
                                           "only used when the agent's url is a tls+tcp:// URL");
                return 0;
        }
        if (!ca)
                return cfgload_bad_at(ld, cfgload_field(f, "agents[%u].url", i),
                                      cfgload_field(f2, "agents[%u].tls_ca", i),
                                      "required: agent %s has a tls+tcp:// URL and no CA to verify it with "
                                      "(give tls_ca here or for the whole fleet)",
                                      cfgload_quote(qb, rp->id));
        r = cfgload_check_text(ld, rp->tls_ca ? cfgload_field(f, "agents[%u].tls_ca", i) : "tls_ca", ca);
        if (r < 0)
                return r;
        if (rp->server_name) {
                r = cfgload_check_text(ld, cfgload_field(f, "agents[%u].server_name", i), rp->server_name);
                if (r < 0)
                        return r;
                if (strcspn(rp->server_name, " /:[]") != strlen(rp->server_name))
                        return cfgload_bad(ld, f, "server name %s is not a host name",
                                           cfgload_quote(qb, rp->server_name));
        }
        p->tls_ca = cfgload_strdup(ca, &oom);
        p->server_name = rp->server_name ? cfgload_strdup(rp->server_name, &oom) : url_host(rp->url, &oom);
        return oom ? cfgload_nomem(ld) : 0;
}

static int coord_agents(const struct cfgload *ld, const struct raw_coord *rc, struct strset *ids, struct cfg_coord *c)
{
        char f[FIELD_MAX], qb[Q_MAX];
        bool oom = false;
        int r;

        c->agents = calloc(rc->n_agents, sizeof(*c->agents));
        if (!c->agents)
                return cfgload_nomem(ld);
        c->n_agents = rc->n_agents;
        for (unsigned i = 0; i < rc->n_agents; i++) {
                const struct raw_peer *rp = &rc->agents[i];

                r = cfgload_check_name(ld, cfgload_field(f, "agents[%u].id", i), rp->id);
                if (r < 0)
                        return r;
                long j = strset_add(ids, rp->id, "", (long)i);
                if (j >= 0)
                        return cfgload_bad(ld, f, "duplicate agent id %s (also agents[%ld])", cfgload_quote(qb, rp->id),
                                           j);
                r = cfgload_check_url(ld, cfgload_field(f, "agents[%u].url", i), rp->url, true);
                if (r < 0)
                        return r;
                r = cfgload_check_pubkey(ld, cfgload_field(f, "agents[%u].pubkey", i), rp->pubkey);
                if (r < 0)
                        return r;
                r = agent_tls(ld, rc, i, &c->agents[i]);
                if (r < 0)
                        return r;
                c->agents[i].id = cfgload_strdup(rp->id, &oom);
                c->agents[i].url = cfgload_strdup(rp->url, &oom);
                c->agents[i].pubkey = cfgload_strdup(rp->pubkey, &oom);
        }
        return oom ? cfgload_nomem(ld) : 0;
}

static int coord_groups(const struct cfgload *ld, const struct raw_coord *rc, const struct strset *agents,
                        struct cfg_coord *c)
{
        int r;

        if (rc->n_groups == 0)
                return 0;
        c->groups = calloc(rc->n_groups, sizeof(*c->groups));
        if (!c->groups)
                return cfgload_nomem(ld);
        c->n_groups = rc->n_groups;
        for (unsigned i = 0; i < rc->n_groups; i++) {
                r = group_build(ld, rc, agents, i, &c->groups[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int coord_build(const struct cfgload *ld, const struct raw_coord *rc, struct cfg_coord **ret)
{
        _cleanup_(cfg_coord_freep) struct cfg_coord *c = NULL;
        _cleanup_(strset_freep) struct strset *ids = strset_new(rc->n_agents);
        bool oom = false;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c || !ids)
                return cfgload_nomem(ld);
        r = coord_settings(ld, rc, c);
        if (r < 0)
                return r;
        r = coord_agents(ld, rc, ids, c);
        if (r < 0)
                return r;
        r = coord_groups(ld, rc, ids, c);
        if (r < 0)
                return r;
        c->control = cfgload_strdup(rc->control, &oom);
        c->key = cfgload_strdup(rc->key, &oom);
        if (rc->ha) {
                r = coord_ha_build(ld, rc->ha, rc->control, &c->ha);
                if (r < 0)
                        return r;
        }
        c->catalog = cfgload_strdup(rc->catalog, &oom);
        if (rc->counter_file)
                c->counter_file = cfgload_strdup(rc->counter_file, &oom);
        else if (asprintf(&c->counter_file, "%s.counter", rc->catalog) < 0) {
                c->counter_file = NULL;
                oom = true;
        }
        if (oom)
                return cfgload_nomem(ld);
        *ret = TAKE_PTR(c);
        return 0;
}

/* ---- public ---- */

int cfg_coord_load(const char *path, struct cfg_coord **ret, lserr *err)
{
        _cleanup_(cfgload_freep) struct cfgload *ld = NULL;
        int r;

        r = cfgload_open(path, &coord_schema, err, &ld);
        if (r < 0)
                return r;
        return coord_build(ld, cfgload_raw(ld), ret);
}

static void group_free(struct cfg_group *g)
{
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
        free(g->hook);
}

struct cfg_coord *cfg_coord_free(struct cfg_coord *c)
{
        if (!c)
                return NULL;
        for (unsigned i = 0; i < c->n_agents; i++) {
                free(c->agents[i].id);
                free(c->agents[i].url);
                free(c->agents[i].pubkey);
                free(c->agents[i].tls_ca);
                free(c->agents[i].server_name);
        }
        free(c->agents);
        for (unsigned i = 0; i < c->n_groups; i++)
                group_free(&c->groups[i]);
        free(c->groups);
        free(c->control);
        free(c->key);
        free(c->catalog);
        free(c->counter_file);
        cfg_ha_free(c->ha);
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

const char *cfg_mode_name(enum cfg_mode m)
{
        if ((unsigned)m >= N_MODES)
                return NULL;
        return mode_names[m];
}
