/* lv_xml: a domain read from its XML (state, lockstep labels, member disks),
 * its persistent definition's disks rewritten, and text escaped for XML. */
#pragma once

#include <libvirt/libvirt.h>
#include <libxml/tree.h>
#include <stddef.h>

#include "hv.h"
#include "lserr.h"

/* What the XML says of one member disk beyond struct hv_disk. */
struct lv_xml_disk {
        char target[HV_TARGET_MAX];
        char path[HV_PATH_MAX];
        char format[16];
        char type[16]; /* "file", "block"... */
};

/* d's state, labels and member disks (a writable device='disk') into ret and
 * pd (HV_MAX_DISKS entries; pd[i] describes ret->disks[i]). More disks than
 * that, or a path too long, is LS_EDISK. */
int lv_xml_describe(virDomainPtr d, struct hv_domain *ret, struct lv_xml_disk *pd, lserr *err);

/* Points each listed disk of d's persistent definition at imgs[i].after
 * (use_after) or imgs[i].before, with the driver format of that file (qcow2
 * for an after that is not before, which lockstep made; imgs[i].format
 * otherwise: an unknown one is LS_EIMAGE, nothing changed), and
 * drops its backingStore so libvirt reads the chain from the image. A failed
 * define reads "discard: redefine: <why>" whoever calls, as it always did. */
int lv_xml_redefine_disks(virDomainPtr d, const struct hv_image *imgs, size_t n, int use_after, lserr *err);

/* in with XML's five special characters escaped, into out (n bytes);
 * -ENAMETOOLONG when it does not fit. */
int lv_xml_escape(const char *in, char *out, size_t n);

static inline void lv_xml_doc_freep(xmlDocPtr *doc)
{
        if (*doc)
                xmlFreeDoc(*doc);
}

/* For strings libxml2 allocated (xmlGetProp, xmlDocDumpMemory). */
static inline void lv_xml_freep(void *p)
{
        if (*(void **)p)
                xmlFree(*(void **)p);
}
