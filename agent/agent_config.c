/* agent_config: agent.yaml. cfgload checks its shape against the schema here; the
 * rest of this file checks what the values mean and copies them out. */
#include "agent_config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfgload.h"
#include "cleanup.h"
#include "transport.h"

#define AUTHORIZED_MAX 64
#define ROLES_MAX 16
/* More members at once than this only queue on libvirtd and the disks. */
#define PARALLEL_MAX 64

#define REQ_STR CFGLOAD_REQ_STR
#define OPT_STR CFGLOAD_OPT_STR

/* What libcyaml fills: every scalar a string, NULL when absent. */
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
        struct agent_hooks_raw_vm *vms;
        unsigned n_vms;
        char *libvirt_uri;
        char *backend;
        char *sim_config;
        char *journal_dir;
        char *state_dir;
        char *lease_max_s;
        char *time_window_s;
        char *guest_agent_timeout_s;
        char *min_free_mb;
        char *parallel_per_host;
        char *tls_cert;
        char *tls_key;
        char *privsep_user;
};

static const cyaml_schema_field_t authorized_fields[] = {
        REQ_STR("name", struct raw_authorized, name),
        REQ_STR("pubkey", struct raw_authorized, pubkey),
        CYAML_FIELD_SEQUENCE_COUNT("roles", CYAML_FLAG_POINTER, struct raw_authorized, roles, n_roles,
                                   &cfgload_str_entry, 1, ROLES_MAX),
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
        CYAML_FIELD_SEQUENCE_COUNT("vms", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_agent, vms, n_vms,
                                   &agent_hooks_vm_entry, 0, AGENT_HOOK_VMS_MAX),
        OPT_STR("libvirt_uri", struct raw_agent, libvirt_uri),
        OPT_STR("backend", struct raw_agent, backend),
        OPT_STR("sim_config", struct raw_agent, sim_config),
        REQ_STR("journal_dir", struct raw_agent, journal_dir),
        OPT_STR("state_dir", struct raw_agent, state_dir),
        OPT_STR("lease_max_s", struct raw_agent, lease_max_s),
        OPT_STR("time_window_s", struct raw_agent, time_window_s),
        OPT_STR("guest_agent_timeout_s", struct raw_agent, guest_agent_timeout_s),
        OPT_STR("min_free_mb", struct raw_agent, min_free_mb),
        OPT_STR("parallel_per_host", struct raw_agent, parallel_per_host),
        OPT_STR("tls_cert", struct raw_agent, tls_cert),
        OPT_STR("tls_key", struct raw_agent, tls_key),
        OPT_STR("privsep_user", struct raw_agent, privsep_user),
        CYAML_FIELD_END,
};

static const cyaml_schema_value_t agent_schema = {
        CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct raw_agent, agent_fields),
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

static bool has_prefix(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int authorized_roles(const struct cfgload *ld, const struct raw_authorized *rz, unsigned i,
                            struct cfg_authorized *a)
{
        char f[CFGLOAD_FIELD_MAX], qb[CFGLOAD_Q_MAX];

        for (unsigned j = 0; j < rz->n_roles; j++) {
                unsigned role = 0;

                for (size_t k = 0; k < sizeof(role_names) / sizeof(role_names[0]); k++)
                        if (strcmp(rz->roles[j], role_names[k].name) == 0)
                                role = role_names[k].role;
                cfgload_field(f, "authorized[%u].roles[%u]", i, j);
                if (!role)
                        return cfgload_bad(ld, f, "unknown role %s (one of snapshot, revert, delete, admin)",
                                           cfgload_quote(qb, rz->roles[j]));
                if (a->roles & role)
                        return cfgload_bad(ld, f, "role %s listed twice", cfgload_quote(qb, rz->roles[j]));
                a->roles |= role;
        }
        return 0;
}

static int agent_authorized(const struct cfgload *ld, const struct raw_agent *ra, unsigned i,
                            struct cfg_authorized *a)
{
        const struct raw_authorized *rz = &ra->authorized[i];
        char f[CFGLOAD_FIELD_MAX], qb[CFGLOAD_Q_MAX];
        bool oom = false;
        int r;

        r = cfgload_check_name(ld, cfgload_field(f, "authorized[%u].name", i), rz->name);
        if (r < 0)
                return r;
        for (unsigned j = 0; j < i; j++)
                if (strcmp(ra->authorized[j].name, rz->name) == 0)
                        return cfgload_bad(ld, f, "duplicate name %s (also authorized[%u])",
                                           cfgload_quote(qb, rz->name), j);
        r = cfgload_check_pubkey(ld, cfgload_field(f, "authorized[%u].pubkey", i), rz->pubkey);
        if (r < 0)
                return r;
        r = authorized_roles(ld, rz, i, a);
        if (r < 0)
                return r;
        a->name = cfgload_strdup(rz->name, &oom);
        a->pubkey = cfgload_strdup(rz->pubkey, &oom);
        return oom ? cfgload_nomem(ld) : 0;
}

/* A text setting that may be absent. */
static int opt_text(const struct cfgload *ld, const char *field, const char *s)
{
        return s ? cfgload_check_text(ld, field, s) : 0;
}

static int agent_backend(const struct cfgload *ld, const struct raw_agent *ra)
{
        const char *backend = ra->backend ? ra->backend : "libvirt";
        char qb[CFGLOAD_Q_MAX];
        bool sim;
        int r;

        if (strcmp(backend, "libvirt") != 0 && strcmp(backend, "sim") != 0)
                return cfgload_bad(ld, "backend", "unknown backend %s (one of libvirt, sim)",
                                   cfgload_quote(qb, backend));
        sim = strcmp(backend, "sim") == 0;
        if (sim && !ra->sim_config)
                return cfgload_bad_at(ld, "backend", "sim_config", "required when backend is \"sim\"");
        if (!sim && ra->sim_config)
                return cfgload_bad(ld, "sim_config", "only used with backend: sim");
        r = opt_text(ld, "sim_config", ra->sim_config);
        if (r < 0)
                return r;
        return opt_text(ld, "libvirt_uri", ra->libvirt_uri);
}

/* One member per online CPU: most of a member's time is waiting on the guest
 * agent or libvirtd, so this is a floor, not a ceiling. */
static unsigned default_parallel(void)
{
        long n = sysconf(_SC_NPROCESSORS_ONLN);

        return n < 1 ? 1u : n > PARALLEL_MAX ? (unsigned)PARALLEL_MAX : (unsigned)n;
}

static int agent_numbers(const struct cfgload *ld, const struct raw_agent *ra, struct cfg_agent *c)
{
        int r;

        r = cfgload_check_num(ld, "lease_max_s", ra->lease_max_s, 60, 1, 3600, &c->lease_max_s);
        if (r < 0)
                return r;
        r = cfgload_check_num(ld, "time_window_s", ra->time_window_s, 30, 1, 3600, &c->time_window_s);
        if (r < 0)
                return r;
        r = cfgload_check_num(ld, "guest_agent_timeout_s", ra->guest_agent_timeout_s, 10, 1, 300,
                              &c->guest_agent_timeout_s);
        if (r < 0)
                return r;
        r = cfgload_check_num(ld, "min_free_mb", ra->min_free_mb, 64, 1, 1048576, &c->min_free_mb);
        if (r < 0)
                return r;
        return cfgload_check_num(ld, "parallel_per_host", ra->parallel_per_host, default_parallel(), 1, PARALLEL_MAX,
                                 &c->parallel_per_host);
}

/* A certificate next to a plain tcp:// listener would look like TLS and not be. */
static int agent_tls(const struct cfgload *ld, const struct raw_agent *ra)
{
        bool tls = has_prefix(ra->listen, "tls+tcp://");
        lserr e = {0};
        int r;

        if (tls && (!ra->tls_cert || !ra->tls_key))
                return cfgload_bad_at(ld, "listen", ra->tls_cert ? "tls_key" : "tls_cert",
                                      "required when listen is a tls+tcp:// URL");
        if (!tls && ra->tls_cert)
                return cfgload_bad(ld, "tls_cert", "only used when listen is a tls+tcp:// URL");
        if (!tls && ra->tls_key)
                return cfgload_bad(ld, "tls_key", "only used when listen is a tls+tcp:// URL");
        r = opt_text(ld, "tls_cert", ra->tls_cert);
        if (r < 0)
                return r;
        r = opt_text(ld, "tls_key", ra->tls_key);
        if (r < 0 || !ra->tls_key)
                return r;
        /* Checked here, as well as when the listener reads it, so that a key
         * anyone may read stops the agent at load with the line that names it. */
        r = transport_tls_key_mode(ra->tls_key, &e);
        return r < 0 ? cfgload_bad(ld, "tls_key", "%s", e.msg) : 0;
}

/* Every check, in the order the refusals are tested. */
static int agent_check(const struct cfgload *ld, const struct raw_agent *ra, struct cfg_agent *c)
{
        int r;

        r = cfgload_check_name(ld, "id", ra->id);
        if (r < 0)
                return r;
        r = cfgload_check_url(ld, "listen", ra->listen, false);
        if (r < 0)
                return r;
        r = cfgload_check_text(ld, "key", ra->key);
        if (r < 0)
                return r;
        c->authorized = calloc(ra->n_authorized, sizeof(*c->authorized));
        if (!c->authorized)
                return cfgload_nomem(ld);
        c->n_authorized = ra->n_authorized;
        for (unsigned i = 0; i < ra->n_authorized; i++) {
                r = agent_authorized(ld, ra, i, &c->authorized[i]);
                if (r < 0)
                        return r;
        }
        r = agent_backend(ld, ra);
        if (r < 0)
                return r;
        r = cfgload_check_text(ld, "journal_dir", ra->journal_dir);
        if (r < 0)
                return r;
        r = opt_text(ld, "state_dir", ra->state_dir);
        if (r < 0)
                return r;
        r = opt_text(ld, "privsep_user", ra->privsep_user);
        if (r < 0)
                return r;
        r = agent_numbers(ld, ra, c);
        if (r < 0)
                return r;
        r = agent_tls(ld, ra);
        if (r < 0)
                return r;
        r = agent_hooks_build(ld, ra->vms, ra->n_vms, &c->vms);
        if (r < 0)
                return r;
        c->n_vms = ra->n_vms;
        return 0;
}

static int agent_build(const struct cfgload *ld, const struct raw_agent *ra, struct cfg_agent **ret)
{
        _cleanup_(cfg_agent_freep) struct cfg_agent *c = NULL;
        bool oom = false;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return cfgload_nomem(ld);
        r = agent_check(ld, ra, c);
        if (r < 0)
                return r;
        c->id = cfgload_strdup(ra->id, &oom);
        c->listen = cfgload_strdup(ra->listen, &oom);
        c->key = cfgload_strdup(ra->key, &oom);
        c->libvirt_uri = cfgload_strdup(ra->libvirt_uri ? ra->libvirt_uri : "qemu:///system", &oom);
        c->backend = cfgload_strdup(ra->backend ? ra->backend : "libvirt", &oom);
        c->sim_config = cfgload_strdup(ra->sim_config, &oom);
        c->journal_dir = cfgload_strdup(ra->journal_dir, &oom);
        c->state_dir = cfgload_strdup(ra->state_dir ? ra->state_dir : ra->journal_dir, &oom);
        c->tls_cert = cfgload_strdup(ra->tls_cert, &oom);
        c->tls_key = cfgload_strdup(ra->tls_key, &oom);
        c->privsep_user = cfgload_strdup(ra->privsep_user ? ra->privsep_user : "nobody", &oom);
        if (oom)
                return cfgload_nomem(ld);
        *ret = TAKE_PTR(c);
        return 0;
}

int cfg_agent_load(const char *path, struct cfg_agent **ret, lserr *err)
{
        _cleanup_(cfgload_freep) struct cfgload *ld = NULL;
        int r;

        r = cfgload_open(path, &agent_schema, err, &ld);
        if (r < 0)
                return r;
        return agent_build(ld, cfgload_raw(ld), ret);
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
        free(c->privsep_user);
        agent_hooks_free(c->vms, c->n_vms);
        free(c);
        return NULL;
}

const char *cfg_role_name(enum cfg_role r)
{
        for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
                if (role_names[i].role == r)
                        return role_names[i].name;
        return NULL;
}
