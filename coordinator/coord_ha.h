/* coord_ha: coordinator.yaml's "ha:" section (high availability on etcd):
 * its schema, its checks and what lockstepd keeps of it. */
#pragma once

#include <cyaml/cyaml.h>

#include "cfgload.h"

#define CFG_HA_ETCD_MAX 7      /* endpoints: an etcd cluster has 3 or 5 members */
#define CFG_HA_URL_MAX 255     /* an endpoint URL */
#define CFG_HA_PREFIX_MAX 64

struct cfg_ha {
        char *name;            /* this lockstepd in the cluster */
        char **etcd;           /* http:// or https:// client URLs */
        unsigned n_etcd;
        char *etcd_ca;         /* https: the CA etcd's certificate must chain to */
        char *etcd_cert;       /* https: our client certificate and key, or NULL */
        char *etcd_key;
        char *prefix;          /* every key lockstep keeps in etcd is under it; default "/lockstep/" */
        unsigned lease_ttl_s;  /* the leader's lease, default 5, 2..60 */
};

/* What libcyaml fills for "ha:". */
struct raw_ha {
        char *name;
        char **etcd;
        unsigned n_etcd;
        char *etcd_ca;
        char *etcd_cert;
        char *etcd_key;
        char *prefix;
        char *lease_ttl_s;
};

extern const cyaml_schema_field_t coord_ha_fields[];

/* Checks rh ("ha" in messages) and builds *ret, the caller's (cfg_ha_free). */
int coord_ha_build(const struct cfgload *ld, const struct raw_ha *rh, struct cfg_ha **ret);
struct cfg_ha *cfg_ha_free(struct cfg_ha *h);
