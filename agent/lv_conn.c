/* lv_conn: the connection to libvirtd, kept alive across libvirtd restarts,
 * and the lookup of one domain. */
#include <stdlib.h>
#include <string.h>

#include <libvirt/virterror.h>
#include <libxml/parser.h>

#include "cleanup.h"
#include "lv_conn.h"
#include "lv_err.h"

static void quiet(void *data, virErrorPtr e)
{
        (void)data;
        (void)e; /* errors are read with virGetLastError and reported once */
}

static void lv_freep(struct lv **lv)
{
        lv_conn_close(*lv);
}

int lv_conn_open(const struct cfg_agent *cfg, void **ret, lserr *err)
{
        _cleanup_(lv_freep) struct lv *lv = calloc(1, sizeof(*lv));

        if (!lv)
                return -ENOMEM;
        virSetErrorFunc(NULL, quiet);
        /* Members are worked on from several threads (parallel_per_host) and
         * libxml2 2.9 wants its one initialisation done before that. One
         * virConnect serves them all: libvirt's connections are thread-safe,
         * its errors are per thread (virGetLastError), and lv_conn_get hands
         * each call its own reference. */
        xmlInitParser();
        lv->uri = strdup(cfg->libvirt_uri ? cfg->libvirt_uri : "qemu:///system");
        lv->ga_timeout_s = cfg->guest_agent_timeout_s ? cfg->guest_agent_timeout_s : 10;
        lv->min_free = (unsigned long long)(cfg->min_free_mb ? cfg->min_free_mb : 64) * 1024 * 1024;
        pthread_mutex_init(&lv->lock, NULL);
        lv->conn = lv->uri ? virConnectOpen(lv->uri) : NULL;
        if (!lv->conn)
                return lserr_set(err, LS_EHV, "libvirt \"%s\": connect: %s", cfg->libvirt_uri, lv_err_msg());
        *ret = TAKE_PTR(lv);
        return 0;
}

void lv_conn_close(void *be)
{
        struct lv *lv = be;

        if (!lv)
                return;
        if (lv->conn)
                virConnectClose(lv->conn);
        pthread_mutex_destroy(&lv->lock);
        free(lv->uri);
        free(lv);
}

virConnectPtr lv_conn_get(struct lv *lv, lserr *err)
{
        virConnectPtr c;

        pthread_mutex_lock(&lv->lock);
        if (!lv->conn || virConnectIsAlive(lv->conn) != 1) {
                if (lv->conn)
                        virConnectClose(lv->conn);
                lv->conn = virConnectOpen(lv->uri);
        }
        c = lv->conn;
        if (c)
                virConnectRef(c);
        pthread_mutex_unlock(&lv->lock);
        if (!c)
                lserr_set(err, LS_EHV, "libvirt \"%s\": connect: %s", lv->uri, lv_err_msg());
        return c;
}

int lv_conn_domain(struct lv *lv, const char *vm, const char *step, virDomainPtr *ret, lserr *err)
{
        /* Closed only after the lookup's error is read: virConnectClose resets
         * it. The domain holds its own reference to the connection. */
        _cleanup_(lv_conn_closep) virConnectPtr c = lv_conn_get(lv, err);
        virDomainPtr d;

        if (!c)
                return LS_EHV;
        d = virDomainLookupByName(c, vm);
        if (!d)
                return lv_err_fail(err, step);
        *ret = d;
        return 0;
}
