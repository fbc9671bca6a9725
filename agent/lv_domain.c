/* lv_domain: one domain looked up by name, or every domain of the host
 * listed, each described from its XML. */
#include <stdlib.h>

#include "cleanup.h"
#include "lv_conn.h"
#include "lv_domain.h"
#include "lv_err.h"
#include "lv_xml.h"

int lv_domain_lookup(void *be, const char *vm, struct hv_domain *ret, lserr *err)
{
        struct lv_xml_disk pd[HV_MAX_DISKS];
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        int r = lv_conn_domain(be, vm, "lookup", &d, err);

        if (r < 0)
                return r;
        return lv_xml_describe(d, ret, pd, err);
}

int lv_domain_list(void *be, struct hv_domain **ret, size_t *ret_n, lserr *err)
{
        struct lv_xml_disk pd[HV_MAX_DISKS];
        /* Closed only after the listing's error is read: virConnectClose resets it. */
        _cleanup_(lv_conn_closep) virConnectPtr c = lv_conn_get(be, err);
        _cleanup_free_ virDomainPtr *doms = NULL;
        _cleanup_free_ struct hv_domain *out = NULL;
        int n, k = 0;

        if (!c)
                return LS_EHV;
        n = virConnectListAllDomains(c, &doms, 0);
        if (n < 0)
                return lserr_set(err, LS_EHV, "list domains: %s", lv_err_msg());
        out = calloc(n ? (size_t)n : 1, sizeof(*out));
        for (int i = 0; i < n; i++) {
                /* A domain that vanished while listing is simply left out. */
                if (out && lv_xml_describe(doms[i], &out[k], pd, NULL) == 0 && names_valid(out[k].name))
                        k++;
                virDomainFree(doms[i]);
        }
        if (!out)
                return -ENOMEM;
        *ret = TAKE_PTR(out);
        *ret_n = (size_t)k;
        return 0;
}
