/* coord_ha: coordinator.yaml's "ha:" section (high availability on etcd):
 * its schema, its checks and what lockstepd keeps of it. */
#pragma once

#include <cyaml/cyaml.h>

#include "cfgload.h"

#define CFG_HA_ETCD_MAX 7      /* endpoints: an etcd cluster has 3 or 5 members */
#define CFG_HA_URL_MAX 255     /* an endpoint URL */
#define CFG_HA_PREFIX_MAX 64
#define CFG_HA_COORDINATORS_MAX 16 /* lockstepd in one cluster: 3 or 5 in practice */
/* The member and leader keys' value, "NAME pid=PID control=URL peer=URL",
 * with its NUL: what election.h's ELECTION_VALUE_MAX takes. */
#define CFG_HA_VALUE_MAX 256

/* A coordinator of the cluster: its name (its ha.name) and public key
 * (inline "lockstep-pub-v1 ..." or a .pub file), loaded by forward.c. */
struct cfg_ha_coordinator {
        char *name;
        char *pubkey;
};

struct cfg_ha {
        char *name;            /* this lockstepd in the cluster */
        char **etcd;           /* http:// or https:// client URLs */
        unsigned n_etcd;
        char *etcd_ca;         /* https: the CA etcd's certificate must chain to */
        char *etcd_cert;       /* https: our client certificate and key, or NULL */
        char *etcd_key;
        char *prefix;          /* every key lockstep keeps in etcd is under it; default "/lockstep/" */
        unsigned lease_ttl_s;  /* the leader's lease, default 5, 2..60 */
        /* Forwarding (forward.c): where this lockstepd serves forwarded
         * requests, tls+tcp://HOST:PORT or ipc://PATH; NULL: it neither
         * forwards nor accepts forwards, and a follower refuses. */
        char *listen;
        char *tls_cert;        /* tls+tcp://: the listener's certificate and key */
        char *tls_key;
        char *tls_ca;          /* tls+tcp://: the CA the leader's certificate must chain to */
        struct cfg_ha_coordinator *coordinators; /* with listen: whose forwards and replies count */
        unsigned n_coordinators;
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
        char *listen;
        char *tls_cert;
        char *tls_key;
        char *tls_ca;
        struct cfg_ha_coordinator *coordinators; /* as read: checked by coord_ha_build */
        unsigned n_coordinators;
};

extern const cyaml_schema_field_t coord_ha_fields[];

/* Checks rh ("ha" in messages) and builds *ret, the caller's (cfg_ha_free).
 * control is the control socket's URL, which the member value names too. */
int coord_ha_build(const struct cfgload *ld, const struct raw_ha *rh, const char *control, struct cfg_ha **ret);
struct cfg_ha *cfg_ha_free(struct cfg_ha *h);
