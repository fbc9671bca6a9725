/* coord_ha: the checks of coordinator.yaml's "ha:" section; coord_config.c
 * hangs its schema under the top level. */
#include "coord_ha.h"

#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

const cyaml_schema_field_t coord_ha_fields[] = {
        CFGLOAD_REQ_STR("name", struct raw_ha, name),
        CYAML_FIELD_SEQUENCE_COUNT("etcd", CYAML_FLAG_POINTER, struct raw_ha, etcd, n_etcd, &cfgload_str_entry, 1,
                                   CFG_HA_ETCD_MAX),
        CFGLOAD_OPT_STR("etcd_ca", struct raw_ha, etcd_ca),
        CFGLOAD_OPT_STR("etcd_cert", struct raw_ha, etcd_cert),
        CFGLOAD_OPT_STR("etcd_key", struct raw_ha, etcd_key),
        CFGLOAD_OPT_STR("prefix", struct raw_ha, prefix),
        CFGLOAD_OPT_STR("lease_ttl_s", struct raw_ha, lease_ttl_s),
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

int coord_ha_build(const struct cfgload *ld, const struct raw_ha *rh, struct cfg_ha **ret)
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
        if (oom) {
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
        free(h);
        return NULL;
}
