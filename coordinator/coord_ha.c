/* coord_ha: the checks of coordinator.yaml's "ha:" section; coord_config.c
 * hangs its schema under the top level. */
#include "coord_ha.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "transport.h"

static const cyaml_schema_field_t coordinator_fields[] = {
        CFGLOAD_REQ_STR("name", struct cfg_ha_coordinator, name),
        CFGLOAD_REQ_STR("pubkey", struct cfg_ha_coordinator, pubkey),
        CYAML_FIELD_END,
};

static const cyaml_schema_value_t coordinator_entry = {
        CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct cfg_ha_coordinator, coordinator_fields),
};

const cyaml_schema_field_t coord_ha_fields[] = {
        CFGLOAD_REQ_STR("name", struct raw_ha, name),
        CYAML_FIELD_SEQUENCE_COUNT("etcd", CYAML_FLAG_POINTER, struct raw_ha, etcd, n_etcd, &cfgload_str_entry, 1,
                                   CFG_HA_ETCD_MAX),
        CFGLOAD_OPT_STR("etcd_ca", struct raw_ha, etcd_ca),
        CFGLOAD_OPT_STR("etcd_cert", struct raw_ha, etcd_cert),
        CFGLOAD_OPT_STR("etcd_key", struct raw_ha, etcd_key),
        CFGLOAD_OPT_STR("prefix", struct raw_ha, prefix),
        CFGLOAD_OPT_STR("lease_ttl_s", struct raw_ha, lease_ttl_s),
        CFGLOAD_OPT_STR("listen", struct raw_ha, listen),
        CFGLOAD_OPT_STR("tls_cert", struct raw_ha, tls_cert),
        CFGLOAD_OPT_STR("tls_key", struct raw_ha, tls_key),
        CFGLOAD_OPT_STR("tls_ca", struct raw_ha, tls_ca),
        CYAML_FIELD_SEQUENCE_COUNT("coordinators", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_ha,
                                   coordinators, n_coordinators, &coordinator_entry, 1, CFG_HA_COORDINATORS_MAX),
        CYAML_FIELD_END,
};

static int starts(const char *s, const char *p)
{
        return strncmp(s, p, strlen(p)) == 0;
}

/* Every endpoint an http:// or https:// URL, all of one scheme; https needs
 * the CA. */
static int check_endpoints(const struct cfgload *ld, const struct raw_ha *rh)
{
        char f[CFGLOAD_FIELD_MAX], q[CFGLOAD_Q_MAX];
        int tls = starts(rh->etcd[0], "https://");

        for (unsigned i = 0; i < rh->n_etcd; i++) {
                const char *u = rh->etcd[i];
                const char *host = starts(u, "https://") ? u + 8 : starts(u, "http://") ? u + 7 : NULL;
                cfgload_field(f, "ha.etcd[%u]", i);
                if (!host || !*host || strlen(u) > CFG_HA_URL_MAX || strpbrk(u, " \t\r\n?#"))
                        return cfgload_bad(ld, f, "expected an http:// or https:// URL of an etcd member, got %s",
                                           cfgload_quote(q, u));
                if (starts(u, "https://") != tls)
                        return cfgload_bad(ld, f, "%s: every endpoint is http:// or every one https://",
                                           cfgload_quote(q, u));
        }
        if (tls && !rh->etcd_ca)
                return cfgload_bad(ld, "ha.etcd", "https:// endpoints need ha.etcd_ca, the CA etcd's certificate "
                                                  "chains to");
        /* Shown on the line of the one that is there. */
        if (!!rh->etcd_cert != !!rh->etcd_key)
                return cfgload_bad_at(ld, rh->etcd_cert ? "ha.etcd_cert" : "ha.etcd_key",
                                      rh->etcd_cert ? "ha.etcd_key" : "ha.etcd_cert",
                                      "etcd_cert and etcd_key go together");
        if (!tls && (rh->etcd_ca || rh->etcd_cert))
                return cfgload_bad(ld, rh->etcd_ca ? "ha.etcd_ca" : "ha.etcd_cert",
                                   "TLS files with http:// endpoints: use https://");
        return 0;
}

/* "/a/b/": absolute, ends with '/', names only. */
static int check_prefix(const struct cfgload *ld, const char *p)
{
        char q[CFGLOAD_Q_MAX];
        size_t n = strlen(p);

        if (n < 2 || n > CFG_HA_PREFIX_MAX || p[0] != '/' || p[n - 1] != '/' || strstr(p, "//") ||
            strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/") != n)
                return cfgload_bad(ld, "ha.prefix",
                                   "expected a key prefix such as /lockstep/ (starts and ends with '/', at most %d "
                                   "of [A-Za-z0-9._-/]), got %s",
                                   CFG_HA_PREFIX_MAX, cfgload_quote(q, p));
        return 0;
}

static int check_texts(const struct cfgload *ld, const struct raw_ha *rh)
{
        int r = cfgload_check_name(ld, "ha.name", rh->name);

        if (r == 0 && rh->etcd_ca)
                r = cfgload_check_text(ld, "ha.etcd_ca", rh->etcd_ca);
        if (r == 0 && rh->etcd_cert)
                r = cfgload_check_text(ld, "ha.etcd_cert", rh->etcd_cert);
        if (r == 0 && rh->etcd_key)
                r = cfgload_check_text(ld, "ha.etcd_key", rh->etcd_key);
        if (r == 0 && rh->prefix)
                r = check_prefix(ld, rh->prefix);
        return r;
}

/* The TLS files go with a tls+tcp:// listen and with nothing else. */
static int check_listen_tls(const struct cfgload *ld, const struct raw_ha *rh, bool tls)
{
        const char *const names[] = {"ha.tls_cert", "ha.tls_key", "ha.tls_ca"};
        const char *const files[] = {rh->tls_cert, rh->tls_key, rh->tls_ca};
        lserr e = {0};
        int r;

        for (size_t i = 0; i < 3; i++) {
                if (!tls && files[i])
                        return cfgload_bad(ld, names[i], "only used when ha.listen is a tls+tcp:// URL");
                if (tls && !files[i])
                        return cfgload_bad_at(ld, "ha.listen", names[i],
                                              "required when ha.listen is a tls+tcp:// URL (%s)",
                                              i == 2 ? "the CA the leader's certificate must chain to"
                                                     : "the certificate and key this lockstepd serves forwards with");
                r = files[i] ? cfgload_check_text(ld, names[i], files[i]) : 0;
                if (r < 0)
                        return r;
        }
        /* Here as well as when the listener reads it: a key anyone may read
         * stops lockstepd at load, with the line that names it. */
        r = tls ? transport_tls_key_mode(rh->tls_key, &e) : 0;
        return r < 0 ? cfgload_bad(ld, "ha.tls_key", "%s", e.msg) : 0;
}

/* ha.listen: what this lockstepd serves forwards on and what the others read
 * in its member value, so a host they can dial, and no space (the value is
 * split at spaces). */
static int check_listen(const struct cfgload *ld, const struct raw_ha *rh)
{
        char q[CFGLOAD_Q_MAX], host[CFG_HA_URL_MAX + 1];
        const char *u = rh->listen;
        bool tls = starts(u, "tls+tcp://");
        int r = cfgload_check_url(ld, "ha.listen", u, true);

        if (r < 0)
                return r;
        if (!tls && !starts(u, "ipc://"))
                return cfgload_bad(ld, "ha.listen",
                                   "expected tls+tcp://HOST:PORT (or ipc://PATH on one machine), got %s: a forward "
                                   "crosses the network, so not over tcp://",
                                   cfgload_quote(q, u));
        if (strlen(u) > CFG_HA_URL_MAX || strpbrk(u, " \t"))
                return cfgload_bad(ld, "ha.listen", "%s: at most %d bytes and no spaces", cfgload_quote(q, u),
                                   CFG_HA_URL_MAX);
        if (tls && transport_url_host(u, host, sizeof(host)) == 0 &&
            (!strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !strcmp(host, "*")))
                return cfgload_bad(ld, "ha.listen",
                                   "%s: the others dial this URL, so give this host's address, not a wildcard",
                                   cfgload_quote(q, u));
        return check_listen_tls(ld, rh, tls);
}

/* The first entry before i with the same name (or pubkey, by_key), or -1. */
static int listed_before(const struct raw_ha *rh, unsigned i, bool by_key)
{
        const struct cfg_ha_coordinator *c = rh->coordinators;

        for (unsigned j = 0; j < i; j++)
                if (!strcmp(by_key ? c[j].pubkey : c[j].name, by_key ? c[i].pubkey : c[i].name))
                        return (int)j;
        return -1;
}

/* ha.coordinators: names valid and unique, keys well formed and not listed
 * twice; this lockstepd among them (the others check its replies with the key
 * listed under its name). */
static int check_coordinators(const struct cfgload *ld, const struct raw_ha *rh)
{
        char f[CFGLOAD_FIELD_MAX], q[CFGLOAD_Q_MAX];
        bool self = false;
        int r, j;

        if (!rh->listen)
                return rh->coordinators ? cfgload_bad(ld, "ha.coordinators", "only used with ha.listen") : 0;
        if (!rh->coordinators)
                return cfgload_bad_at(ld, "ha.listen", "ha.coordinators",
                                      "required with ha.listen: the name and public key of every lockstepd of the "
                                      "cluster");
        for (unsigned i = 0; i < rh->n_coordinators; i++) {
                const struct cfg_ha_coordinator *c = &rh->coordinators[i];
                r = cfgload_check_name(ld, cfgload_field(f, "ha.coordinators[%u].name", i), c->name);
                if (r < 0)
                        return r;
                if ((j = listed_before(rh, i, false)) >= 0)
                        return cfgload_bad(ld, f, "duplicate name %s (also ha.coordinators[%d])",
                                           cfgload_quote(q, c->name), j);
                r = cfgload_check_pubkey(ld, cfgload_field(f, "ha.coordinators[%u].pubkey", i), c->pubkey);
                if (r < 0)
                        return r;
                if ((j = listed_before(rh, i, true)) >= 0)
                        return cfgload_bad(ld, f, "the same key as ha.coordinators[%d] (%s): one key each", j,
                                           cfgload_quote(q, rh->coordinators[j].name));
                self = self || !strcmp(c->name, rh->name);
        }
        if (!self)
                return cfgload_bad(ld, "ha.coordinators",
                                   "this lockstepd (ha.name %s) is not listed: the others check its forwards and "
                                   "replies with the key listed under its name",
                                   cfgload_quote(q, rh->name));
        return 0;
}

/* The member value must fit the election's value whole: cut short, it would
 * send followers to a wrong address. */
static int check_value_fits(const struct cfgload *ld, const struct raw_ha *rh, const char *control)
{
        /* "NAME pid=PID control=URL peer=URL": a pid has at most 10 digits. */
        size_t n = strlen(rh->name) + strlen(" pid=") + 10 + strlen(" control=") + strlen(control) +
                   (rh->listen ? strlen(" peer=") + strlen(rh->listen) : 0);

        if (n < CFG_HA_VALUE_MAX)
                return 0;
        return cfgload_bad(ld, rh->listen ? "ha.listen" : "ha.name",
                           "ha.name, control and ha.listen make a member value of up to %zu bytes, over the %d "
                           "etcd keeps: shorten one of them",
                           n, CFG_HA_VALUE_MAX - 1);
}

static int check_forwarding(const struct cfgload *ld, const struct raw_ha *rh, const char *control)
{
        int r = 0;

        if (rh->listen)
                r = check_listen(ld, rh);
        else if (rh->tls_cert || rh->tls_key || rh->tls_ca)
                r = cfgload_bad(ld, rh->tls_cert ? "ha.tls_cert" : rh->tls_key ? "ha.tls_key" : "ha.tls_ca",
                                "only used with ha.listen");
        if (r == 0)
                r = check_coordinators(ld, rh);
        if (r == 0)
                r = check_value_fits(ld, rh, control);
        return r;
}

static int copy_forwarding(const struct raw_ha *rh, struct cfg_ha *h)
{
        bool oom = false;

        h->listen = cfgload_strdup(rh->listen, &oom);
        h->tls_cert = cfgload_strdup(rh->tls_cert, &oom);
        h->tls_key = cfgload_strdup(rh->tls_key, &oom);
        h->tls_ca = cfgload_strdup(rh->tls_ca, &oom);
        if (rh->n_coordinators) {
                h->coordinators = calloc(rh->n_coordinators, sizeof(*h->coordinators));
                if (!h->coordinators)
                        return -ENOMEM;
                h->n_coordinators = rh->n_coordinators;
        }
        for (unsigned i = 0; i < rh->n_coordinators; i++) {
                h->coordinators[i].name = cfgload_strdup(rh->coordinators[i].name, &oom);
                h->coordinators[i].pubkey = cfgload_strdup(rh->coordinators[i].pubkey, &oom);
        }
        return oom ? -ENOMEM : 0;
}

int coord_ha_build(const struct cfgload *ld, const struct raw_ha *rh, const char *control, struct cfg_ha **ret)
{
        _cleanup_free_ struct cfg_ha *h = calloc(1, sizeof(*h));
        bool oom = false;
        int r;

        if (!h)
                return cfgload_nomem(ld);
        r = check_texts(ld, rh);
        if (r == 0)
                r = check_endpoints(ld, rh);
        if (r == 0)
                r = cfgload_check_num(ld, "ha.lease_ttl_s", rh->lease_ttl_s, 5, 2, 60, &h->lease_ttl_s);
        if (r == 0)
                r = check_forwarding(ld, rh, control);
        if (r < 0)
                return r;
        h->etcd = calloc(rh->n_etcd, sizeof(*h->etcd));
        if (!h->etcd)
                return cfgload_nomem(ld);
        for (unsigned i = 0; i < rh->n_etcd; i++)
                h->etcd[i] = cfgload_strdup(rh->etcd[i], &oom);
        h->n_etcd = rh->n_etcd;
        h->name = cfgload_strdup(rh->name, &oom);
        h->etcd_ca = cfgload_strdup(rh->etcd_ca, &oom);
        h->etcd_cert = cfgload_strdup(rh->etcd_cert, &oom);
        h->etcd_key = cfgload_strdup(rh->etcd_key, &oom);
        h->prefix = cfgload_strdup(rh->prefix ? rh->prefix : "/lockstep/", &oom);
        if (copy_forwarding(rh, h) < 0 || oom) {
                cfg_ha_free(TAKE_PTR(h));
                return cfgload_nomem(ld);
        }
        *ret = TAKE_PTR(h);
        return 0;
}

struct cfg_ha *cfg_ha_free(struct cfg_ha *h)
{
        if (!h)
                return NULL;
        for (unsigned i = 0; i < h->n_etcd; i++)
                free(h->etcd[i]);
        free(h->etcd);
        free(h->name);
        free(h->etcd_ca);
        free(h->etcd_cert);
        free(h->etcd_key);
        free(h->prefix);
        free(h->listen);
        free(h->tls_cert);
        free(h->tls_key);
        free(h->tls_ca);
        for (unsigned i = 0; i < h->n_coordinators; i++) {
                free(h->coordinators[i].name);
                free(h->coordinators[i].pubkey);
        }
        free(h->coordinators);
        free(h);
        return NULL;
}
