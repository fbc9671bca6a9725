/* coord_config: coordinator.yaml, its schema, the checks on what it means, and the
 * groups built from it. */
#pragma once

#include "lserr.h"

struct cfg_ha;

enum cfg_mode {
        CFG_MODE_QUIESCE = 0,
        CFG_MODE_PAUSE = 1,
        CFG_MODE_MEMORY = 2,
};

struct cfg_peer {
        char *id;     /* agent id, a valid name, unique */
        char *url;    /* tcp://, tls+tcp:// or ipc:// URL */
        char *pubkey; /* inline "lockstep-pub-v1 <base64>" or path to a .pub file */
        /* tls+tcp:// only, NULL otherwise: the CA file the agent's certificate
         * must chain to (its own tls_ca or the fleet's), and the name it must
         * carry (server_name, default the URL's host). */
        char *tls_ca;
        char *server_name;
};

/* One member after the "vm@agent" string was split and checked. */
struct cfg_member {
        char *vm;      /* a valid name */
        char *agent;   /* id of a configured agent */
        unsigned tier; /* index into the group's tiers, 0 = front */
        int crash;     /* listed in crash_consistent: paused, not frozen */
};

struct cfg_retention {
        unsigned keep_last, hourly, daily, weekly, monthly; /* 0 = not set */
        /* Pre-revert branches kept, newest first: default 1 with a policy,
         * UINT_MAX (every one) without. */
        unsigned keep_branches;
};

struct cfg_group {
        char *name;
        /* Tier names front to back; a group given with plain `members:` has one
         * tier named "default". */
        char **tiers;
        unsigned n_tiers;
        struct cfg_member *members; /* flattened, in config order */
        unsigned n_members;         /* >= 1 */
        enum cfg_mode mode;         /* default quiesce */
        unsigned lease_s;           /* default 30, 1..3600 */
        char *schedule;             /* optional: 5-field cron or @hourly..., UTC */
        unsigned random_delay_s;    /* a scheduled cut starts up to this much later, 0..3600 */
        int catch_up;               /* one run for what was missed while down; default 1 */
        struct cfg_retention retention;
        /* The guest hook each member runs around its freeze, by name: the
         * commands are in each agent's agent.yaml. NULL when not set. */
        char *hook;
};

struct cfg_coord {
        char *control;    /* ipc:// URL of the control socket */
        char *key;        /* path of the coordinator's secret key */
        char *catalog;    /* SQLite file path; NULL with ha */
        char *counter_file; /* default: catalog path + ".counter" */
        unsigned step_timeout_s; /* default 30, 1..3600 */
        unsigned stop_timeout_s; /* a stop that takes longer is cut short; default 30, 1..3600 */
        unsigned max_cuts;           /* cuts running at once in the fleet, default 8 */
        unsigned max_cuts_per_agent; /* ... that involve one agent, default 2 */
        unsigned history_keep;       /* ended transactions kept in the catalog, default 10000 */
        unsigned history_keep_members; /* ... and their members, at most; default 1000000 */
        unsigned audit_keep;         /* audit rows kept, default 200000 */
        unsigned events_keep;        /* event log rows kept, default 200000 */
        char *metrics;               /* http://HOST:PORT of the /metrics endpoint; NULL: off */
        int metrics_public;          /* metrics may be served on a non-loopback address */
        struct cfg_peer *agents;
        unsigned n_agents;
        struct cfg_group *groups;
        unsigned n_groups;
        struct cfg_ha *ha; /* high availability on etcd; NULL: one lockstepd, SQLite */
};

/* Loads and checks path. On success *ret is owned by the caller (free with
 * cfg_coord_free); on failure *ret is untouched and err says "<file>:<line>: <field>: <why>". */
int cfg_coord_load(const char *path, struct cfg_coord **ret, lserr *err);
struct cfg_coord *cfg_coord_free(struct cfg_coord *c);
static inline void cfg_coord_freep(struct cfg_coord **c)
{
        cfg_coord_free(*c);
}

/* Lookups, NULL when absent. */
const struct cfg_group *cfg_coord_group(const struct cfg_coord *c, const char *name);
const struct cfg_peer *cfg_coord_agent(const struct cfg_coord *c, const char *id);

/* "quiesce", "pause" or "memory"; NULL for anything else. */
const char *cfg_mode_name(enum cfg_mode m);
