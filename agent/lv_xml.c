/* lv_xml: domain XML read with libxml2 (state, labels, member disks) and the
 * persistent definition's disks rewritten. */
#include <libxml/parser.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "imgfile.h"
#include "lv_conn.h"
#include "lv_err.h"
#include "lv_xml.h"
#include "lv_xml_priv.h"

#define LOCKSTEP_NS "https://lockstep.dev/xmlns/member/1"

static char *xattr(xmlNodePtr n, const char *name)
{
        return n ? (char *)xmlGetProp(n, (const xmlChar *)name) : NULL;
}

static xmlNodePtr child(xmlNodePtr n, const char *name)
{
        for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
                if (c->type == XML_ELEMENT_NODE && !xmlStrcmp(c->name, (const xmlChar *)name))
                        return c;
        return NULL;
}

/* A disk lockstep snapshots: a writable device='disk'. Its eligibility for an
 * external qcow2 overlay is checked separately so the error can say why. */
static int is_member_disk(xmlNodePtr disk)
{
        _cleanup_(lv_xml_freep) char *device = xattr(disk, "device");

        return (!device || !strcmp(device, "disk")) && !child(disk, "readonly") && !child(disk, "shareable");
}

/* -ENAMETOOLONG when the value does not fit: a cut path is never a prefix of the real one. */
static int copy_attr(char *dst, size_t n, xmlNodePtr node, const char *attr)
{
        _cleanup_(lv_xml_freep) char *v = xattr(node, attr);
        int len = snprintf(dst, n, "%s", v ? v : "");

        return (size_t)len < n ? 0 : -ENAMETOOLONG;
}

/* The group and tier labels of lockstep's metadata element. */
static void parse_labels(xmlNodePtr meta, struct hv_domain *ret)
{
        for (xmlNodePtr m = meta ? meta->children : NULL; m; m = m->next) {
                if (m->type != XML_ELEMENT_NODE || !m->ns || xmlStrcmp(m->ns->href, (const xmlChar *)LOCKSTEP_NS))
                        continue;
                copy_attr(ret->group, sizeof(ret->group), m, "group");
                copy_attr(ret->tier, sizeof(ret->tier), m, "tier");
        }
}

/* One member disk element into p and out. */
static int parse_disk(xmlNodePtr d, struct lv_xml_disk *p, struct hv_disk *out, lserr *err)
{
        copy_attr(p->target, sizeof(p->target), child(d, "target"), "dev");
        copy_attr(p->type, sizeof(p->type), d, "type");
        copy_attr(p->format, sizeof(p->format), child(d, "driver"), "type");
        if (copy_attr(p->path, sizeof(p->path), child(d, "source"), !strcmp(p->type, "block") ? "dev" : "file") < 0)
                return lserr_set(err, LS_EDISK, "disk %s: image path is longer than %d bytes", p->target,
                                 HV_PATH_MAX - 1);
        snprintf(out->target, HV_TARGET_MAX, "%s", p->target);
        snprintf(out->path, HV_PATH_MAX, "%s", p->path);
        /* libvirt's own view of the chain (running domains): never a guess from the image. */
        if (copy_attr(out->backing, HV_PATH_MAX, child(child(d, "backingStore"), "source"), "file") < 0)
                out->backing[0] = '\0';
        snprintf(out->format, sizeof(out->format), "%s", p->format);
        return 0;
}

int lv_xml_parse(const char *xml, struct hv_domain *ret, struct lv_xml_disk *pd, lserr *err)
{
        _cleanup_(lv_xml_doc_freep) xmlDocPtr doc = xmlReadMemory(
                xml, (int)strlen(xml), "domain.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        xmlNodePtr root, devices;

        if (!doc)
                return lserr_set(err, LS_EHV, "read domain XML: does not parse");
        root = xmlDocGetRootElement(doc);
        devices = child(root, "devices");
        parse_labels(child(root, "metadata"), ret);
        ret->n_disks = 0;
        for (xmlNodePtr d = devices ? devices->children : NULL; d; d = d->next) {
                int r;
                if (d->type != XML_ELEMENT_NODE || xmlStrcmp(d->name, (const xmlChar *)"disk") || !is_member_disk(d))
                        continue;
                if (ret->n_disks == HV_MAX_DISKS)
                        return lserr_set(err, LS_EDISK, "more than %d disks", HV_MAX_DISKS);
                r = parse_disk(d, &pd[ret->n_disks], &ret->disks[ret->n_disks], err);
                if (r < 0)
                        return r;
                ret->n_disks++;
        }
        return 0;
}

static enum hv_state map_state(int s)
{
        switch (s) {
        case VIR_DOMAIN_RUNNING:
                return HV_RUNNING;
        case VIR_DOMAIN_PAUSED:
                return HV_PAUSED;
        case VIR_DOMAIN_SHUTOFF:
                return HV_SHUTOFF;
        default:
                return HV_OTHER;
        }
}

int lv_xml_describe(virDomainPtr d, struct hv_domain *ret, struct lv_xml_disk *pd, lserr *err)
{
        _cleanup_free_ char *xml = NULL;
        int state = 0, reason = 0;

        memset(ret, 0, sizeof(*ret));
        snprintf(ret->name, sizeof(ret->name), "%s", virDomainGetName(d));
        if (virDomainGetState(d, &state, &reason, 0) < 0)
                return lv_err_fail(err, "get state");
        ret->state = map_state(state);
        xml = virDomainGetXMLDesc(d, 0);
        if (!xml)
                return lv_err_fail(err, "get XML");
        return lv_xml_parse(xml, ret, pd, err);
}

/* The driver format for imgs[i]: an overlay lockstep made is qcow2; any
 * other file has the format a trusted source gave (never its bytes'). */
static const char *format_of(const struct hv_image *im, int use_after)
{
        return use_after && strcmp(im->after, im->before) ? "qcow2" : im->format;
}

/* Points one disk element at path when its target is one of imgs'. */
static void redefine_node(xmlNodePtr node, const struct hv_image *imgs, size_t n, int use_after)
{
        xmlNodePtr tgt = child(node, "target"), src = child(node, "source"), bs = child(node, "backingStore"),
                   drv = child(node, "driver");
        _cleanup_(lv_xml_freep) char *dev = xattr(tgt, "dev");

        for (size_t i = 0; dev && src && node->type == XML_ELEMENT_NODE && i < n; i++) {
                const char *path = use_after ? imgs[i].after : imgs[i].before;
                if (strcmp(dev, imgs[i].target))
                        continue;
                xmlSetProp(src, (const xmlChar *)"file", (const xmlChar *)path);
                if (drv)
                        xmlSetProp(drv, (const xmlChar *)"type", (const xmlChar *)format_of(&imgs[i], use_after));
                /* libvirt reads the chain again from the image itself. */
                if (bs) {
                        xmlUnlinkNode(bs);
                        xmlFreeNode(bs);
                        bs = NULL;
                }
        }
}

int lv_xml_redefine_disks(virDomainPtr d, const struct hv_image *imgs, size_t n, int use_after, lserr *err)
{
        _cleanup_free_ char *xml = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
        _cleanup_(lv_xml_doc_freep) xmlDocPtr doc = NULL;
        _cleanup_(lv_xml_freep) xmlChar *out = NULL;
        _cleanup_(lv_domain_freep) virDomainPtr nd = NULL;
        int len = 0;

        for (size_t i = 0; i < n; i++)
                if (!format_of(&imgs[i], use_after)[0])
                        return lserr_set(err, LS_EIMAGE, "disk %s: format of \"%s\" is not known: refusing to guess it",
                                         imgs[i].target, use_after ? imgs[i].after : imgs[i].before);
        if (!xml)
                return lv_err_fail(err, "read definition");
        doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL, XML_PARSE_NONET);
        if (!doc)
                return lserr_set(err, LS_EHV, "definition does not parse");
        for (xmlNodePtr node = child(child(xmlDocGetRootElement(doc), "devices"), "disk"); node; node = node->next)
                redefine_node(node, imgs, n, use_after);
        xmlDocDumpMemory(doc, &out, &len);
        nd = out ? virDomainDefineXML(virDomainGetConnect(d), (const char *)out) : NULL;
        if (!nd)
                return lv_err_fail(err, "discard: redefine");
        return 0;
}

int lv_xml_escape(const char *in, char *out, size_t n)
{
        size_t o = 0;

        for (; *in; in++) {
                const char *rep = NULL;
                char ch[2] = {*in, 0};
                switch (*in) {
                case '&': rep = "&amp;"; break;
                case '<': rep = "&lt;"; break;
                case '>': rep = "&gt;"; break;
                case '\'': rep = "&apos;"; break;
                case '"': rep = "&quot;"; break;
                default: rep = ch; break;
                }
                size_t l = strlen(rep);
                if (o + l >= n)
                        return -ENAMETOOLONG;
                memcpy(out + o, rep, l);
                o += l;
        }
        out[o] = '\0';
        return 0;
}
