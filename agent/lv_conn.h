/* lv_conn: the libvirt backend's state, its connection to libvirtd (reopened
 * when libvirtd restarts) and domain handles, with their cleanup functions. */
#pragma once

#include <libvirt/libvirt.h>
#include <pthread.h>

#include "agent_config.h"
#include "lserr.h"

struct lv {
        char *uri;
        unsigned ga_timeout_s;
        /* Room an overlay needs before it is created; it grows with the guest's writes. */
        unsigned long long min_free;
        pthread_mutex_t lock; /* guards conn replacement */
        virConnectPtr conn;
};

/* Connects to cfg's libvirt URI (qemu:///system by default). *ret is the
 * caller's (lv_conn_close); untouched on failure. */
int lv_conn_open(const struct cfg_agent *cfg, void **ret, lserr *err);

/* Closes the connection and frees the state; accepts NULL. */
void lv_conn_close(void *be);

/* The connection, reopened if libvirtd restarted; NULL (err filled) when it
 * cannot be. The caller owns a reference (virConnectClose). */
virConnectPtr lv_conn_get(struct lv *lv, lserr *err);

/* The domain named vm; its reference is the caller's. A failed lookup fills
 * err with "<step>: <why>". Returns 0 or a negative code. */
int lv_conn_domain(struct lv *lv, const char *vm, const char *step, virDomainPtr *ret, lserr *err);

/* Cleanup functions. None calls libvirt for NULL: every libvirt call resets
 * the thread's last error, which a message may still have to read. */
static inline void lv_domain_freep(virDomainPtr *d)
{
        if (*d)
                virDomainFree(*d);
}

static inline void lv_snapshot_freep(virDomainSnapshotPtr *s)
{
        if (*s)
                virDomainSnapshotFree(*s);
}

static inline void lv_conn_closep(virConnectPtr *c)
{
        if (*c)
                virConnectClose(*c);
}
