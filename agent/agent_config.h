/* agent_config: agent.yaml, its schema and the checks on what it means. */
#pragma once

#include "agent_hooks.h"
#include "lserr.h"
#include "roles.h"

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
        unsigned parallel_per_host; /* members worked on at once; default the online CPUs, 1..64 */
        char *tls_cert;        /* required for tls+tcp://, refused otherwise */
        char *tls_key;         /* likewise; a regular file only its owner may read */
        char *privsep_user;    /* the network half runs as this user; default "nobody" */
        struct cfg_vm *vms;    /* guest hooks per VM (agent_hooks.h); may be none */
        unsigned n_vms;
};

/* Loads and checks path. On success *ret is owned by the caller (free with
 * cfg_agent_free); on failure *ret is untouched and err says "<file>:<line>: <field>: <why>". */
int cfg_agent_load(const char *path, struct cfg_agent **ret, lserr *err);
struct cfg_agent *cfg_agent_free(struct cfg_agent *c);
static inline void cfg_agent_freep(struct cfg_agent **c)
{
        cfg_agent_free(*c);
}

/* "snapshot", "revert", "delete" or "admin"; NULL for anything but one role. */
const char *cfg_role_name(enum cfg_role r);
