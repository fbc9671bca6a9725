/* fuzz_domain_xml: a domain XML document as libvirt would hand it over, read
 * for lockstep's labels and member disks. */
#include <stdlib.h>

#include "fuzzutil.h"
#include "lv_xml_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct hv_domain dom;
        static struct lv_xml_disk pd[HV_MAX_DISKS];
        lserr err = {0};
        char *xml = fuzz_cstr(data, size);

        int r = lv_xml_parse(xml, &dom, pd, &err);

        fuzz_note("domain xml", r, &err);
        if (r == 0)
                fuzz_note(dom.n_disks ? dom.disks[0].path : "no disks", r, &err);
        free(xml);
        return 0;
}
