/* config: agent.yaml and coordinator.yaml, parsed with a libcyaml schema and then
 * checked for meaning; every error names the file, the line and the field. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "lserr.h"

enum cfg_role {
        CFG_ROLE_SNAPSHOT = 1u << 0,
        CFG_ROLE_REVERT = 1u << 1,
        CFG_ROLE_DELETE = 1u << 2,
        CFG_ROLE_ADMIN = 1u << 3,
};

enum cfg_mode {
        CFG_MODE_QUIESCE = 0,
        CFG_MODE_PAUSE = 1,
        CFG_MODE_MEMORY = 2,
};

/* A coordinator key that an agent accepts commands from. */
struct cfg_authorized {
        char *name;     /* label used in logs, a valid name */
        char *pubkey;   /* "lockstep-pub-v1 <base64>" inline, or a path to a .pub file */
        unsigned roles; /* bitmask of enum cfg_role, at least one */
};

struct cfg_agent {
        char *id;          /* agent id, a valid name */
        char *listen;      /* tcp://, tls+tcp:// or ipc:// URL */
        char *key;         /* path of the agent's secret key file */
        struct cfg_authorized *authorized;
        unsigned n_authorized; /* >= 1 */
        char *libvirt_uri;     /* default "qemu:///system" */
        char *backend;         /* "libvirt" (default) or "sim" */
        char *sim_config;      /* path, required iff backend is "sim" */
        char *journal_dir;     /* required */
        char *state_dir;       /* replay counters; default: journal_dir */
        unsigned lease_max_s;  /* default 60, 1..3600 */
        unsigned time_window_s; /* default 30, 1..3600 */
        unsigned guest_agent_timeout_s; /* default 10, 1..300 */
        unsigned min_free_mb;  /* free space a new overlay needs; default 64, 1..1048576 */
        char *tls_cert;        /* optional, for tls+tcp:// */
        char *tls_key;         /* optional */
};

struct cfg_peer {
        char *id;     /* agent id, a valid name, unique */
        char *url;    /* tcp://, tls+tcp:// or ipc:// URL */
        char *pubkey; /* inline "lockstep-pub-v1 <base64>" or path to a .pub file */
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
        /* Commands run in each guest (through its guest agent, by /bin/sh -c)
         * before its freeze and after its thaw; NULL when not set. A failed
         * pre_freeze hook is a "no" vote. */
        char *hook_pre_freeze;
        char *hook_post_thaw;
        unsigned hook_timeout_s;    /* default 10, 1..300 */
};

struct cfg_coord {
        char *control;    /* ipc:// URL of the control socket */
        char *key;        /* path of the coordinator's secret key */
        char *catalog;    /* SQLite file path */
        char *counter_file; /* default: catalog path + ".counter" */
        unsigned step_timeout_s; /* default 30, 1..3600 */
        unsigned max_cuts;           /* cuts running at once in the fleet, default 8 */
        unsigned max_cuts_per_agent; /* ... that involve one agent, default 2 */
        unsigned history_keep;       /* ended transactions kept in the catalog, default 10000 */
        unsigned audit_keep;         /* audit rows kept, default 200000 */
        unsigned events_keep;        /* event log rows kept, default 200000 */
        char *metrics;               /* http://HOST:PORT of the /metrics endpoint; NULL: off */
        struct cfg_peer *agents;
        unsigned n_agents;
        struct cfg_group *groups;
        unsigned n_groups;
};

/* Loads and checks path. On success *ret is owned by the caller (free with
 * cfg_agent_free); on failure *ret is untouched and err says "<file>:<line>: <field>: <why>". */
int cfg_agent_load(const char *path, struct cfg_agent **ret, lserr *err);
struct cfg_agent *cfg_agent_free(struct cfg_agent *c);

int cfg_coord_load(const char *path, struct cfg_coord **ret, lserr *err);
struct cfg_coord *cfg_coord_free(struct cfg_coord *c);

/* Lookups, NULL when absent. */
const struct cfg_group *cfg_coord_group(const struct cfg_coord *c, const char *name);
const struct cfg_peer *cfg_coord_agent(const struct cfg_coord *c, const char *id);

/* Role names "snapshot", "revert", "delete", "admin". */
const char *cfg_role_name(enum cfg_role r);
const char *cfg_mode_name(enum cfg_mode m);
