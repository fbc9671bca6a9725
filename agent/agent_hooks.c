/* agent_hooks: the vms: section of agent.yaml. Hook commands are the agent's own
 * configuration: a command names one, so no command text comes from the wire. */
#include "agent_hooks.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

#define HOOKS_MAX 32

static const cyaml_schema_field_t hook_fields[] = {
        CFGLOAD_REQ_STR("name", struct agent_hooks_raw_hook, name),
        CYAML_FIELD_SEQUENCE_COUNT("pre_freeze", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct agent_hooks_raw_hook,
                                   pre_freeze, n_pre_freeze, &cfgload_str_entry, 1, AGENT_HOOK_ARGS_MAX),
        CYAML_FIELD_SEQUENCE_COUNT("post_thaw", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct agent_hooks_raw_hook,
                                   post_thaw, n_post_thaw, &cfgload_str_entry, 1, AGENT_HOOK_ARGS_MAX),
        CFGLOAD_OPT_STR("timeout_s", struct agent_hooks_raw_hook, timeout_s),
        CYAML_FIELD_END,
};

static const cyaml_schema_value_t hook_entry = {
        CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct agent_hooks_raw_hook, hook_fields),
};

static const cyaml_schema_field_t vm_fields[] = {
        CFGLOAD_REQ_STR("name", struct agent_hooks_raw_vm, name),
        CYAML_FIELD_SEQUENCE_COUNT("hooks", CYAML_FLAG_POINTER, struct agent_hooks_raw_vm, hooks, n_hooks,
                                   &hook_entry, 1, HOOKS_MAX),
        CYAML_FIELD_END,
};

const cyaml_schema_value_t agent_hooks_vm_entry = {
        CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct agent_hooks_raw_vm, vm_fields),
};

static char **argv_free(char **argv)
{
        for (size_t i = 0; argv && argv[i]; i++)
                free(argv[i]);
        free(argv);
        return NULL;
}

static void argv_freep(char ***argv)
{
        argv_free(*argv);
}

/* One command, as a NULL-terminated argv; *ret stays NULL when the key is absent.
 * The program is an absolute path: guest-exec would search the guest's PATH. */
static int hook_argv(const struct cfgload *ld, const char *field, char *const *args, unsigned n, char ***ret)
{
        char f[CFGLOAD_FIELD_MAX], qb[CFGLOAD_Q_MAX];
        _cleanup_(argv_freep) char **argv = NULL;
        size_t bytes = 0;
        int r;

        if (!args)
                return 0;
        for (unsigned k = 0; k < n; k++) {
                r = cfgload_check_text(ld, cfgload_field(f, "%s[%u]", field, k), args[k]);
                if (r < 0)
                        return r;
                bytes += strlen(args[k]) + 1;
        }
        if (args[0][0] != '/')
                return cfgload_bad(ld, cfgload_field(f, "%s[0]", field),
                                   "the program %s is not an absolute path in the guest (a hook runs without a "
                                   "shell: list the program and its arguments, e.g. [/usr/bin/sync])",
                                   cfgload_quote(qb, args[0]));
        if (bytes > AGENT_HOOK_ARGV_BYTES)
                return cfgload_bad(ld, field, "longer than %d bytes in all", AGENT_HOOK_ARGV_BYTES);
        argv = calloc(n + 1, sizeof(*argv));
        if (!argv)
                return cfgload_nomem(ld);
        for (unsigned k = 0; k < n; k++)
                if (!(argv[k] = strdup(args[k])))
                        return cfgload_nomem(ld);
        *ret = TAKE_PTR(argv);
        return 0;
}

static int vm_hook(const struct cfgload *ld, const struct agent_hooks_raw_vm *rv, unsigned i, unsigned j,
                   struct cfg_hook *h)
{
        const struct agent_hooks_raw_hook *rh = &rv->hooks[j];
        char f[CFGLOAD_FIELD_MAX], qb[CFGLOAD_Q_MAX];
        bool oom = false;
        int r;

        r = cfgload_check_name(ld, cfgload_field(f, "vms[%u].hooks[%u].name", i, j), rh->name);
        if (r < 0)
                return r;
        for (unsigned k = 0; k < j; k++)
                if (strcmp(rv->hooks[k].name, rh->name) == 0)
                        return cfgload_bad(ld, f, "duplicate hook %s (also vms[%u].hooks[%u])",
                                           cfgload_quote(qb, rh->name), i, k);
        if (!rh->pre_freeze && !rh->post_thaw)
                return cfgload_bad(ld, cfgload_field(f, "vms[%u].hooks[%u]", i, j),
                                   "hook %s has neither pre_freeze nor post_thaw", cfgload_quote(qb, rh->name));
        r = hook_argv(ld, cfgload_field(f, "vms[%u].hooks[%u].pre_freeze", i, j), rh->pre_freeze, rh->n_pre_freeze,
                      &h->pre_freeze);
        if (r < 0)
                return r;
        r = hook_argv(ld, cfgload_field(f, "vms[%u].hooks[%u].post_thaw", i, j), rh->post_thaw, rh->n_post_thaw,
                      &h->post_thaw);
        if (r < 0)
                return r;
        r = cfgload_check_num(ld, cfgload_field(f, "vms[%u].hooks[%u].timeout_s", i, j), rh->timeout_s, 10, 1, 300,
                              &h->timeout_s);
        if (r < 0)
                return r;
        h->name = cfgload_strdup(rh->name, &oom);
        return oom ? cfgload_nomem(ld) : 0;
}

static int one_vm(const struct cfgload *ld, const struct agent_hooks_raw_vm *rv, unsigned n, unsigned i,
                  struct cfg_vm *v)
{
        char f[CFGLOAD_FIELD_MAX], qb[CFGLOAD_Q_MAX];
        bool oom = false;
        int r;

        r = cfgload_check_name(ld, cfgload_field(f, "vms[%u].name", i), rv[i].name);
        if (r < 0)
                return r;
        for (unsigned k = 0; k < i && k < n; k++)
                if (strcmp(rv[k].name, rv[i].name) == 0)
                        return cfgload_bad(ld, f, "duplicate VM %s (also vms[%u]); list all its hooks under one entry",
                                           cfgload_quote(qb, rv[i].name), k);
        v->hooks = calloc(rv[i].n_hooks, sizeof(*v->hooks));
        if (!v->hooks)
                return cfgload_nomem(ld);
        v->n_hooks = rv[i].n_hooks;
        for (unsigned j = 0; j < rv[i].n_hooks; j++) {
                r = vm_hook(ld, &rv[i], i, j, &v->hooks[j]);
                if (r < 0)
                        return r;
        }
        v->name = cfgload_strdup(rv[i].name, &oom);
        return oom ? cfgload_nomem(ld) : 0;
}

int agent_hooks_build(const struct cfgload *ld, const struct agent_hooks_raw_vm *rv, unsigned n,
                      struct cfg_vm **ret)
{
        struct cfg_vm *v;
        int r;

        if (n == 0)
                return 0;
        v = calloc(n, sizeof(*v));
        if (!v)
                return cfgload_nomem(ld);
        for (unsigned i = 0; i < n; i++) {
                r = one_vm(ld, rv, n, i, &v[i]);
                if (r < 0) {
                        agent_hooks_free(v, n);
                        return r;
                }
        }
        *ret = v;
        return 0;
}

struct cfg_vm *agent_hooks_free(struct cfg_vm *v, unsigned n)
{
        for (unsigned i = 0; v && i < n; i++) {
                for (unsigned j = 0; v[i].hooks && j < v[i].n_hooks; j++) {
                        free(v[i].hooks[j].name);
                        argv_free(v[i].hooks[j].pre_freeze);
                        argv_free(v[i].hooks[j].post_thaw);
                }
                free(v[i].hooks);
                free(v[i].name);
        }
        free(v);
        return NULL;
}

const struct cfg_hook *agent_hooks_find(const struct cfg_vm *v, unsigned n, const char *vm, const char *name)
{
        for (unsigned i = 0; i < n; i++) {
                if (strcmp(v[i].name, vm) != 0)
                        continue;
                for (unsigned j = 0; j < v[i].n_hooks; j++)
                        if (strcmp(v[i].hooks[j].name, name) == 0)
                                return &v[i].hooks[j];
                return NULL;
        }
        return NULL;
}
