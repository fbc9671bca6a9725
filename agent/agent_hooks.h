/* agent_hooks: agent.yaml's vms: section, each VM's named guest hooks (an argv
 * each, run by the guest agent's guest-exec, never by a shell), and their lookup. */
#pragma once

#include "cfgload.h"

#define AGENT_HOOK_VMS_MAX 4096   /* vms: entries */
#define AGENT_HOOK_ARGS_MAX 32     /* program and arguments of one command */
#define AGENT_HOOK_ARGV_BYTES 4096 /* all of one command's strings */

struct cfg_hook {
        char *name;         /* a valid name, unique within its VM */
        char **pre_freeze;  /* argv, NULL-terminated; NULL when not set */
        char **post_thaw;   /* the same; at least one of the two is set */
        unsigned timeout_s; /* each run; default 10, 1..300 */
};

struct cfg_vm {
        char *name; /* the libvirt domain name, a valid name, unique */
        struct cfg_hook *hooks;
        unsigned n_hooks; /* >= 1 */
};

/* What libcyaml fills for one vms: entry (every scalar a string, NULL when
 * absent); here only because agent.yaml's schema needs its size. */
struct agent_hooks_raw_hook {
        char *name;
        char **pre_freeze;
        unsigned n_pre_freeze;
        char **post_thaw;
        unsigned n_post_thaw;
        char *timeout_s;
};

struct agent_hooks_raw_vm {
        char *name;
        struct agent_hooks_raw_hook *hooks;
        unsigned n_hooks;
};

extern const cyaml_schema_value_t agent_hooks_vm_entry;

/* Checks n raw vms: entries and copies them into *ret (n entries, owned by the
 * caller: agent_hooks_free). On failure *ret is untouched and ld's error says
 * "<file>:<line>: vms[i]...: <why>". */
int agent_hooks_build(const struct cfgload *ld, const struct agent_hooks_raw_vm *rv, unsigned n,
                      struct cfg_vm **ret);
struct cfg_vm *agent_hooks_free(struct cfg_vm *v, unsigned n);

/* The hook called name of vm, or NULL when agent.yaml defines none. */
const struct cfg_hook *agent_hooks_find(const struct cfg_vm *v, unsigned n, const char *vm, const char *name);
