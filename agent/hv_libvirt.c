/* hv_libvirt: the real backend. libvirt for domains, the guest agent, external
 * disk-only snapshots and block commit; libxml2 to read domain XML. */
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "branch.h"
#include "fsutil.h"
#include "hv_backend.h"
#include "imgfile.h"

#define LOCKSTEP_NS "https://lockstep.dev/xmlns/member/1"
#define PIVOT_TIMEOUT_US (120LL * 1000000)

struct lv {
        char *uri;
        unsigned ga_timeout_s;
        /* Room an overlay needs before it is created; it grows with the guest's writes. */
        unsigned long long min_free;
        pthread_mutex_t lock; /* guards conn replacement */
        virConnectPtr conn;
};

static void quiet(void *data, virErrorPtr e)
{
        (void)data;
        (void)e; /* errors are read with virGetLastError and reported once */
}

static const char *last_error(void)
{
        virErrorPtr e = virGetLastError();

        return e && e->message ? e->message : "unknown libvirt error";
}

/* Maps the thread's last libvirt error onto the protocol's codes. */
static int last_code(void)
{
        virErrorPtr e = virGetLastError();

        if (!e)
                return LS_EHV;
        switch (e->code) {
        case VIR_ERR_NO_DOMAIN:
                return LS_ENODOMAIN;
        case VIR_ERR_AGENT_UNRESPONSIVE:
        case VIR_ERR_AGENT_UNSYNCED:
                /* libvirt 9.0 has no code of its own for a command timeout. */
                return strstr(last_error(), "timeout") || strstr(last_error(), "timed out") ? LS_EGATIMEOUT
                                                                                             : LS_ENOGA;
        case VIR_ERR_OPERATION_TIMEOUT:
                return LS_EGATIMEOUT;
        case VIR_ERR_OPERATION_INVALID:
                return strstr(last_error(), "not running") ? LS_ENOTRUNNING : LS_EHV;
        default:
                return LS_EHV;
        }
}

static int fail(lserr *err, const char *vm, const char *step)
{
        int code = last_code();

        return lserr_set(err, code, "%s: %s: %s", vm, step, last_error());
}

static int lv_open(const struct cfg_agent *cfg, void **ret, lserr *err)
{
        struct lv *lv = calloc(1, sizeof(*lv));

        if (!lv)
                return -ENOMEM;
        virSetErrorFunc(NULL, quiet);
        lv->uri = strdup(cfg->libvirt_uri ? cfg->libvirt_uri : "qemu:///system");
        lv->ga_timeout_s = cfg->guest_agent_timeout_s ? cfg->guest_agent_timeout_s : 10;
        lv->min_free = (unsigned long long)(cfg->min_free_mb ? cfg->min_free_mb : 64) * 1024 * 1024;
        pthread_mutex_init(&lv->lock, NULL);
        lv->conn = lv->uri ? virConnectOpen(lv->uri) : NULL;
        if (!lv->conn) {
                int r = lserr_set(err, LS_EHV, "libvirt \"%s\": connect: %s", cfg->libvirt_uri, last_error());
                pthread_mutex_destroy(&lv->lock);
                free(lv->uri);
                free(lv);
                return r;
        }
        *ret = lv;
        return 0;
}

static void lv_close(void *be)
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

/* The connection, reopened if libvirtd restarted. The caller owns a reference. */
static virConnectPtr conn_get(struct lv *lv, lserr *err)
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
                lserr_set(err, LS_EHV, "libvirt \"%s\": connect: %s", lv->uri, last_error());
        return c;
}

/* The named domain; its reference is the caller's. Returns 0 or a code. */
static int dom_get(struct lv *lv, const char *vm, const char *step, virDomainPtr *ret, lserr *err)
{
        virConnectPtr c = conn_get(lv, err);
        virDomainPtr d;

        if (!c)
                return LS_EHV;
        d = virDomainLookupByName(c, vm);
        virConnectClose(c); /* the domain holds its own reference */
        if (!d)
                return fail(err, vm, step);
        *ret = d;
        return 0;
}

/* ---- domain XML ---------------------------------------------------------- */

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
        char *device = xattr(disk, "device");
        int yes = (!device || !strcmp(device, "disk")) && !child(disk, "readonly") && !child(disk, "shareable");

        xmlFree(device);
        return yes;
}

struct parsed_disk {
        char target[HV_TARGET_MAX];
        char path[HV_PATH_MAX];
        char format[16];
        char type[16];
};

/* -ENAMETOOLONG when the value does not fit: a cut path is never a prefix of the real one. */
static int copy_attr(char *dst, size_t n, xmlNodePtr node, const char *attr)
{
        char *v = xattr(node, attr);
        int len = snprintf(dst, n, "%s", v ? v : "");

        xmlFree(v);
        return (size_t)len < n ? 0 : -ENAMETOOLONG;
}

/* Fills ret from a domain XML document. */
static int parse_domain(const char *vm, const char *xml, struct hv_domain *ret, struct parsed_disk *pd,
                        lserr *err)
{
        xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR |
                                                                                    XML_PARSE_NOWARNING);
        xmlNodePtr root, devices, meta;

        if (!doc)
                return lserr_set(err, LS_EHV, "%s: read domain XML: does not parse", vm);
        root = xmlDocGetRootElement(doc);
        devices = child(root, "devices");
        meta = child(root, "metadata");
        for (xmlNodePtr m = meta ? meta->children : NULL; m; m = m->next) {
                if (m->type != XML_ELEMENT_NODE || !m->ns || xmlStrcmp(m->ns->href, (const xmlChar *)LOCKSTEP_NS))
                        continue;
                copy_attr(ret->group, sizeof(ret->group), m, "group");
                copy_attr(ret->tier, sizeof(ret->tier), m, "tier");
        }
        ret->n_disks = 0;
        for (xmlNodePtr d = devices ? devices->children : NULL; d; d = d->next) {
                struct parsed_disk *p;
                if (d->type != XML_ELEMENT_NODE || xmlStrcmp(d->name, (const xmlChar *)"disk") || !is_member_disk(d))
                        continue;
                if (ret->n_disks == HV_MAX_DISKS) {
                        xmlFreeDoc(doc);
                        return lserr_set(err, LS_EDISK, "%s: more than %d disks", vm, HV_MAX_DISKS);
                }
                p = &pd[ret->n_disks];
                copy_attr(p->target, sizeof(p->target), child(d, "target"), "dev");
                copy_attr(p->type, sizeof(p->type), d, "type");
                copy_attr(p->format, sizeof(p->format), child(d, "driver"), "type");
                if (copy_attr(p->path, sizeof(p->path), child(d, "source"), !strcmp(p->type, "block") ? "dev" : "file") <
                    0) {
                        xmlFreeDoc(doc);
                        return lserr_set(err, LS_EDISK, "%s: disk %s: image path is longer than %d bytes", vm, p->target,
                                         HV_PATH_MAX - 1);
                }
                snprintf(ret->disks[ret->n_disks].target, HV_TARGET_MAX, "%s", p->target);
                snprintf(ret->disks[ret->n_disks].path, HV_PATH_MAX, "%s", p->path);
                /* libvirt's own view of the chain (running domains): never a guess from the image. */
                if (copy_attr(ret->disks[ret->n_disks].backing, HV_PATH_MAX, child(child(d, "backingStore"), "source"),
                              "file") < 0)
                        ret->disks[ret->n_disks].backing[0] = '\0';
                snprintf(ret->disks[ret->n_disks].format, sizeof(ret->disks[0].format), "%s", p->format);
                ret->n_disks++;
        }
        xmlFreeDoc(doc);
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

static int describe(virDomainPtr d, struct hv_domain *ret, struct parsed_disk *pd, lserr *err)
{
        const char *vm = virDomainGetName(d);
        int state = 0, reason = 0, r;
        char *xml;

        memset(ret, 0, sizeof(*ret));
        snprintf(ret->name, sizeof(ret->name), "%s", vm);
        if (virDomainGetState(d, &state, &reason, 0) < 0)
                return fail(err, vm, "get state");
        ret->state = map_state(state);
        xml = virDomainGetXMLDesc(d, 0);
        if (!xml)
                return fail(err, vm, "get XML");
        r = parse_domain(vm, xml, ret, pd, err);
        free(xml);
        return r;
}

static int lv_lookup(void *be, const char *vm, struct hv_domain *ret, lserr *err)
{
        struct parsed_disk pd[HV_MAX_DISKS];
        virDomainPtr d = NULL;
        int dr = dom_get(be, vm, "lookup", &d, err);
        int r;

        if (dr < 0)
                return dr;
        r = describe(d, ret, pd, err);
        virDomainFree(d);
        return r;
}

static int lv_list(void *be, struct hv_domain **ret, size_t *ret_n, lserr *err)
{
        struct parsed_disk pd[HV_MAX_DISKS];
        virConnectPtr c = conn_get(be, err);
        virDomainPtr *doms = NULL;
        struct hv_domain *out;
        int n, k = 0;

        if (!c)
                return LS_EHV;
        n = virConnectListAllDomains(c, &doms, 0);
        virConnectClose(c);
        if (n < 0)
                return lserr_set(err, LS_EHV, "list domains: %s", last_error());
        out = calloc(n ? (size_t)n : 1, sizeof(*out));
        for (int i = 0; i < n; i++) {
                /* A domain that vanished while listing is simply left out. */
                if (out && describe(doms[i], &out[k], pd, NULL) == 0 && names_valid(out[k].name))
                        k++;
                virDomainFree(doms[i]);
        }
        free(doms);
        if (!out)
                return -ENOMEM;
        *ret = out;
        *ret_n = (size_t)k;
        return 0;
}

/* ---- checks --------------------------------------------------------------- */

static int lv_check(void *be, const char *vm, const char *txid, unsigned flags, lserr *err)
{
        struct lv *lv = be;
        struct parsed_disk pd[HV_MAX_DISKS];
        struct hv_domain dom;
        virDomainInfo info = {0};
        virDomainPtr d = NULL;
        int dr = dom_get(be, vm, "validate", &d, err);
        int r;

        if (dr < 0)
                return dr;
        r = describe(d, &dom, pd, err);
        if (r == 0 && (flags & HV_CHECK_MEMORY) && virDomainGetInfo(d, &info) < 0)
                r = fail(err, vm, "validate: domain info");
        virDomainFree(d);
        if (r < 0)
                return r;
        if (dom.state == HV_PAUSED && (flags & HV_CHECK_QUIESCE))
                return lserr_set(err, LS_EPAUSED, "%s: validate: domain is paused: fsfreeze cannot run in it", vm);
        if (dom.state != HV_RUNNING && dom.state != HV_PAUSED)
                return lserr_set(err, LS_ENOTRUNNING, "%s: validate: domain is not running", vm);
        if (dom.n_disks == 0)
                return lserr_set(err, LS_EDISK, "%s: validate: no writable disk to snapshot", vm);
        for (unsigned i = 0; i < dom.n_disks; i++) {
                char overlay[HV_PATH_MAX];
                lserr e2 = {0};
                if (strcmp(pd[i].type, "file") != 0)
                        return lserr_set(err, LS_EDISK,
                                         "%s: validate: disk %s: type \"%s\" cannot take an external qcow2 overlay "
                                         "(only file disks can)",
                                         vm, pd[i].target, pd[i].type);
                if (strcmp(pd[i].format, "qcow2") != 0 && strcmp(pd[i].format, "raw") != 0)
                        return lserr_set(err, LS_EDISK, "%s: validate: disk %s: format \"%s\" is not qcow2 or raw", vm,
                                         pd[i].target, pd[i].format);
                if (imgfile_overlay(pd[i].path, vm, pd[i].target, txid, overlay, sizeof(overlay)) < 0)
                        return lserr_set(err, LS_EDISK, "%s: validate: disk %s: overlay path beside \"%s\" is longer "
                                         "than %d bytes", vm, pd[i].target, pd[i].path, HV_PATH_MAX - 1);
                r = imgfile_check_new("overlay", overlay, HV_PATH_MAX, lv->min_free, &e2);
                if (r < 0)
                        return lserr_set(err, r, "%s: validate: disk %s: %s", vm, pd[i].target, e2.msg);
        }
        if (flags & HV_CHECK_MEMORY) {
                char mem[HV_PATH_MAX];
                lserr e2 = {0};
                if (imgfile_memory(pd[0].path, vm, txid, mem, sizeof(mem)) < 0)
                        return lserr_set(err, LS_EDISK, "%s: validate: memory state path beside \"%s\" is too long",
                                         vm, pd[0].path);
                /* The state holds the guest's RAM (info.memory is in KiB). */
                r = imgfile_check_new("memory state", mem, HV_PATH_MAX, lv->min_free + info.memory * 1024ULL, &e2);
                if (r < 0)
                        return lserr_set(err, r, "%s: validate: %s", vm, e2.msg);
        }
        return 0;
}

/* ---- guest agent ---------------------------------------------------------- */

static int lv_ga_ping(void *be, const char *vm, int timeout_s, lserr *err)
{
        virDomainPtr d = NULL;
        int dr = dom_get(be, vm, "guest-ping", &d, err);
        char *out;

        if (dr < 0)
                return dr;
        out = virDomainQemuAgentCommand(d, "{\"execute\":\"guest-ping\"}", timeout_s > 0 ? timeout_s : 5, 0);
        if (!out) {
                int code = last_code();
                int r = lserr_set(err, code == LS_EHV ? LS_ENOGA : code, "%s: guest-ping: %s", vm, last_error());
                virDomainFree(d);
                return r;
        }
        free(out);
        virDomainFree(d);
        return 0;
}

static int ga_call(struct lv *lv, const char *vm, const char *step, int thaw, lserr *err)
{
        virDomainPtr d = NULL;
        int dr = dom_get(lv, vm, step, &d, err);
        int r;

        if (dr < 0)
                return dr;
        /* Every guest-agent call has a deadline: a hung guest is a "no" vote. */
        virDomainAgentSetResponseTimeout(d, (int)lv->ga_timeout_s, 0);
        r = thaw ? virDomainFSThaw(d, NULL, 0, 0) : virDomainFSFreeze(d, NULL, 0, 0);
        if (r < 0)
                r = fail(err, vm, step);
        virDomainFree(d);
        return r;
}

static int lv_freeze(void *be, const char *vm, lserr *err)
{
        return ga_call(be, vm, "fsfreeze", 0, err);
}

static int lv_thaw(void *be, const char *vm, lserr *err)
{
        return ga_call(be, vm, "fsthaw", 1, err);
}

static int lv_suspend(void *be, const char *vm, lserr *err)
{
        virDomainPtr d = NULL;
        int dr = dom_get(be, vm, "suspend", &d, err);
        int r;

        if (dr < 0)
                return dr;
        r = virDomainSuspend(d) < 0 ? fail(err, vm, "suspend") : 0;
        virDomainFree(d);
        return r;
}

static int lv_resume(void *be, const char *vm, lserr *err)
{
        virDomainPtr d = NULL;
        int dr = dom_get(be, vm, "resume", &d, err);
        int state = 0, reason = 0, r = 0;

        if (dr < 0)
                return dr;
        /* Resuming a running domain is an error in libvirt; here it is done. */
        if (virDomainGetState(d, &state, &reason, 0) == 0 && state == VIR_DOMAIN_PAUSED && virDomainResume(d) < 0)
                r = fail(err, vm, "resume");
        virDomainFree(d);
        return r;
}

/* ---- snapshots ------------------------------------------------------------- */

static int xml_escape(const char *in, char *out, size_t n)
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

static int lv_snapshot(void *be, const char *vm, const char *txid, int with_memory, struct hv_image *ret,
                       size_t *ret_n, lserr *err)
{
        struct parsed_disk pd[HV_MAX_DISKS];
        struct hv_domain dom;
        char *xml = NULL, esc[HV_PATH_MAX * 6];
        size_t cap = 1024 + HV_MAX_DISKS * (sizeof(esc) + 256), off = 0;
        virDomainPtr d = NULL;
        int dr = dom_get(be, vm, "snapshot", &d, err);
        virDomainSnapshotPtr s = NULL;
        unsigned flags = VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC;
        int r;

        if (dr < 0)
                return dr;
        r = describe(d, &dom, pd, err);
        if (r < 0)
                goto out;
        xml = malloc(cap);
        if (!xml) {
                r = -ENOMEM;
                goto out;
        }
        off += (size_t)snprintf(xml + off, cap - off, "<domainsnapshot><name>%s</name>", txid);
        if (with_memory) {
                char mem[HV_PATH_MAX];
                if (imgfile_memory(pd[0].path, vm, txid, mem, sizeof(mem)) < 0 ||
                    xml_escape(mem, esc, sizeof(esc)) < 0) {
                        r = lserr_set(err, LS_EDISK, "%s: snapshot: memory state path too long", vm);
                        goto out;
                }
                off += (size_t)snprintf(xml + off, cap - off, "<memory snapshot='external' file='%s'/>", esc);
        } else {
                flags |= VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY;
        }
        off += (size_t)snprintf(xml + off, cap - off, "<disks>");
        for (unsigned i = 0; i < dom.n_disks; i++) {
                if (imgfile_overlay(pd[i].path, vm, pd[i].target, txid, ret[i].after, HV_PATH_MAX) < 0) {
                        r = lserr_set(err, LS_EDISK, "%s: snapshot: disk %s: overlay path too long", vm, pd[i].target);
                        goto out;
                }
                snprintf(ret[i].target, HV_TARGET_MAX, "%s", pd[i].target);
                snprintf(ret[i].before, HV_PATH_MAX, "%s", pd[i].path);
                if (xml_escape(ret[i].after, esc, sizeof(esc)) < 0) {
                        r = lserr_set(err, LS_EDISK, "%s: snapshot: overlay path too long", vm);
                        goto out;
                }
                off += (size_t)snprintf(xml + off, cap - off,
                                        "<disk name='%s' snapshot='external' type='file'><driver type='qcow2'/>"
                                        "<source file='%s'/></disk>",
                                        pd[i].target, esc);
        }
        snprintf(xml + off, cap - off, "</disks></domainsnapshot>");
        s = virDomainSnapshotCreateXML(d, xml, flags);
        if (!s) {
                virErrorPtr e = virGetLastError();
                int nospace = e && e->message && strstr(e->message, "No space left");
                r = lserr_set(err, nospace ? LS_ENOSPACE : LS_EHV, "%s: external snapshot \"%s\": %s", vm, txid,
                              last_error());
                goto out;
        }
        *ret_n = dom.n_disks;
        r = 0;
out:
        if (s)
                virDomainSnapshotFree(s);
        free(xml);
        virDomainFree(d);
        return r;
}

/* ---- discard -------------------------------------------------------------- */

/* Active commit of the overlay into its backing image, then pivot, so the
 * running domain writes to the before image again. */
static int commit_active(virDomainPtr d, const char *vm, const struct hv_image *im, lserr *err)
{
        long long deadline = fsutil_mono_us() + PIVOT_TIMEOUT_US;

        /* SHALLOW: into the overlay's own backing image only. Without it a NULL
         * base means the bottom of the chain, and older cuts would be merged away. */
        if (virDomainBlockCommit(d, im->target, NULL, NULL, 0,
                                 VIR_DOMAIN_BLOCK_COMMIT_ACTIVE | VIR_DOMAIN_BLOCK_COMMIT_SHALLOW) < 0)
                return lserr_set(err, LS_EHV, "%s: discard: disk %s: block commit: %s", vm, im->target, last_error());
        for (;;) {
                virDomainBlockJobInfo info;
                int r = virDomainGetBlockJobInfo(d, im->target, &info, 0);
                if (r < 0)
                        return lserr_set(err, LS_EHV, "%s: discard: disk %s: block job: %s", vm, im->target,
                                         last_error());
                if (r == 1 && info.cur == info.end &&
                    virDomainBlockJobAbort(d, im->target, VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT) == 0)
                        break;
                if (fsutil_mono_us() > deadline) {
                        virDomainBlockJobAbort(d, im->target, 0);
                        return lserr_set(err, LS_EHV, "%s: discard: disk %s: commit did not become ready to pivot: %s",
                                         vm, im->target, last_error());
                }
                usleep(20000);
        }
        /* The pivot finishes asynchronously: wait until the job is gone. */
        while (fsutil_mono_us() < deadline) {
                virDomainBlockJobInfo info;
                if (virDomainGetBlockJobInfo(d, im->target, &info, 0) == 0)
                        return 0;
                usleep(20000);
        }
        return lserr_set(err, LS_EHV, "%s: discard: disk %s: pivot did not finish", vm, im->target);
}

static int run_qemu_img_commit(const char *vm, const char *overlay, lserr *err)
{
        pid_t pid = fork();
        int status;

        if (pid < 0)
                return lserr_set(err, -errno, "%s: discard: fork: %m", vm);
        if (pid == 0) {
                execlp("qemu-img", "qemu-img", "commit", "-q", overlay, (char *)NULL);
                _exit(127);
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return lserr_set(err, LS_EHV, "%s: discard: qemu-img commit \"%s\" failed", vm, overlay);
        return 0;
}

static int redefine_disks(virDomainPtr d, const char *vm, const struct hv_image *imgs, size_t n, int use_after,
                          lserr *err);

/* Points the persistent definition's disk im->target at im->before. */
static int redefine_disk(virDomainPtr d, const char *vm, const struct hv_image *im, lserr *err)
{
        return redefine_disks(d, vm, im, 1, 0, err);
}

/* First bytes of an image: qcow2 or raw. */
static const char *image_format(const char *path)
{
        unsigned char m[4] = {0};
        FILE *f = fopen(path, "rb");

        if (f) {
                if (fread(m, 1, sizeof(m), f) != sizeof(m))
                        m[0] = 0;
                fclose(f);
        }
        return memcmp(m, "QFI\xfb", 4) ? "raw" : "qcow2";
}

/* Points each listed disk of the persistent definition at imgs[i].after (use_after)
 * or imgs[i].before, with the driver format of that file. */
static int redefine_disks(virDomainPtr d, const char *vm, const struct hv_image *imgs, size_t n, int use_after,
                          lserr *err)
{
        char *xml = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
        xmlDocPtr doc;
        xmlChar *out = NULL;
        int len = 0, r = 0;
        virDomainPtr nd;

        if (!xml)
                return fail(err, vm, "read definition");
        doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL, XML_PARSE_NONET);
        free(xml);
        if (!doc)
                return lserr_set(err, LS_EHV, "%s: definition does not parse", vm);
        for (xmlNodePtr node = child(child(xmlDocGetRootElement(doc), "devices"), "disk"); node; node = node->next) {
                xmlNodePtr tgt = child(node, "target"), src = child(node, "source"), bs = child(node, "backingStore"),
                           drv = child(node, "driver");
                char *dev = xattr(tgt, "dev");
                for (size_t i = 0; dev && src && node->type == XML_ELEMENT_NODE && i < n; i++) {
                        const char *path = use_after ? imgs[i].after : imgs[i].before;
                        if (strcmp(dev, imgs[i].target))
                                continue;
                        xmlSetProp(src, (const xmlChar *)"file", (const xmlChar *)path);
                        if (drv)
                                xmlSetProp(drv, (const xmlChar *)"type", (const xmlChar *)image_format(path));
                        /* libvirt reads the chain again from the image itself. */
                        if (bs) {
                                xmlUnlinkNode(bs);
                                xmlFreeNode(bs);
                                bs = NULL;
                        }
                }
                xmlFree(dev);
        }
        xmlDocDumpMemory(doc, &out, &len);
        xmlFreeDoc(doc);
        nd = out ? virDomainDefineXML(virDomainGetConnect(d), (const char *)out) : NULL;
        if (!nd)
                r = fail(err, vm, "discard: redefine");
        else
                virDomainFree(nd);
        xmlFree(out);
        return r;
}

static int lv_discard(void *be, const char *vm, const char *txid, const struct hv_image *imgs, size_t n,
                      lserr *err)
{
        struct parsed_disk pd[HV_MAX_DISKS];
        struct hv_domain dom;
        virDomainPtr d = NULL;
        int dr = dom_get(be, vm, "discard", &d, err);
        virDomainSnapshotPtr s;
        int r = 0;

        if (dr < 0)
                return dr;
        r = describe(d, &dom, pd, err);
        for (size_t k = 0; r == 0 && k < n; k++) {
                const struct hv_image *im = &imgs[k];
                int on_overlay = 0;
                for (unsigned i = 0; i < dom.n_disks; i++)
                        if (!strcmp(dom.disks[i].target, im->target) && !strcmp(dom.disks[i].path, im->after))
                                on_overlay = 1;
                if (on_overlay) {
                        if (dom.state == HV_RUNNING || dom.state == HV_PAUSED) {
                                r = commit_active(d, vm, im, err);
                        } else {
                                r = run_qemu_img_commit(vm, im->after, err);
                                if (r == 0)
                                        r = redefine_disk(d, vm, im, err);
                        }
                }
                if (r == 0 && unlink(im->after) < 0 && errno != ENOENT)
                        r = lserr_set(err, -errno, "%s: discard: remove \"%s\": %m", vm, im->after);
        }
        if (r == 0) {
                char mem[HV_PATH_MAX];
                if (n && imgfile_memory(imgs[0].before, vm, txid, mem, sizeof(mem)) == 0)
                        unlink(mem);
                s = virDomainSnapshotLookupByName(d, txid, 0);
                if (s) {
                        if (virDomainSnapshotDelete(s, VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY) < 0)
                                r = fail(err, vm, "discard: drop snapshot metadata");
                        virDomainSnapshotFree(s);
                }
        }
        virDomainFree(d);
        return r;
}

/* ---- delete ----------------------------------------------------------------- */

/* The backing file named in a qcow2 header, resolved against the image's
 * directory; "" for raw images and qcow2 without a backing file. Read from the
 * header so it works whether or not the domain runs. */
static int qcow2_backing(const char *path, char *out, size_t n, lserr *err)
{
        unsigned char hdr[20];
        char name[HV_PATH_MAX];
        unsigned long long off = 0;
        unsigned len = 0;
        FILE *f = fopen(path, "rb");
        int r = 0;

        out[0] = '\0';
        if (!f)
                return lserr_set(err, -errno, "\"%s\": open: %m", path);
        if (fread(hdr, 1, sizeof(hdr), f) != sizeof(hdr) || memcmp(hdr, "QFI\xfb", 4) != 0)
                goto out; /* raw (or too short to be qcow2): end of the chain */
        for (int i = 0; i < 8; i++)
                off = off << 8 | hdr[8 + i];
        for (int i = 0; i < 4; i++)
                len = len << 8 | hdr[16 + i];
        if (off == 0 || len == 0)
                goto out;
        if (len >= sizeof(name) || fseeko(f, (off_t)off, SEEK_SET) != 0 || fread(name, 1, len, f) != len) {
                r = lserr_set(err, LS_EHV, "\"%s\": qcow2 backing file name unreadable", path);
                goto out;
        }
        name[len] = '\0';
        {
                const char *slash = strrchr(path, '/');
                int dl = name[0] == '/' || !slash ? 0 : (int)(slash - path + 1);
                if (snprintf(out, n, "%.*s%s", dl, path, name) >= (int)n)
                        r = lserr_set(err, LS_EHV, "\"%s\": backing file path too long", path);
        }
out:
        fclose(f);
        return r;
}

/* Runs a helper program (qemu-img); with quiet its stdout goes to /dev/null. */
static int run_program(const char *vm, const char *const argv[], int quiet, lserr *err)
{
        pid_t pid = fork();
        int status;

        if (pid < 0)
                return lserr_set(err, -errno, "%s: fork: %m", vm);
        if (pid == 0) {
                int fd = quiet ? open("/dev/null", O_WRONLY) : -1;
                if (fd >= 0)
                        dup2(fd, STDOUT_FILENO);
                execvp(argv[0], (char *const *)argv);
                _exit(127);
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return lserr_set(err, LS_EHV, "%s: %s %s %s failed", vm, argv[0], argv[1], argv[2]);
        return 0;
}

static int run(const char *vm, const char *const argv[], lserr *err)
{
        return run_program(vm, argv, 0, err);
}

static int run_quiet(const char *vm, const char *const argv[], lserr *err)
{
        return run_program(vm, argv, 1, err);
}

/* Waits until a non-active commit's job is gone (it ends on its own). */
static int wait_job_gone(virDomainPtr d, const char *vm, const char *disk, lserr *err)
{
        long long deadline = fsutil_mono_us() + PIVOT_TIMEOUT_US;

        while (fsutil_mono_us() < deadline) {
                virDomainBlockJobInfo info;
                int r = virDomainGetBlockJobInfo(d, disk, &info, 0);
                if (r == 0)
                        return 0;
                if (r < 0)
                        return lserr_set(err, LS_EHV, "%s: delete: disk %s: block job: %s", vm, disk, last_error());
                usleep(20000);
        }
        return lserr_set(err, LS_EHV, "%s: delete: disk %s: block commit did not finish", vm, disk);
}

/* Walks a disk's backing chain down from its active image top to the layer
 * of cut `cut` (imgfile_is_layer). Returns 1 with that layer, the layer above
 * it (child, "" when it is top) and the image below it (base, "" when it has
 * none); 0 when no layer of the chain belongs to the cut. Each path is
 * HV_PATH_MAX bytes. */
static int walk_to_layer(const char *top, const char *cut, int legacy, char *layer, char *child, char *base,
                         lserr *err)
{
        snprintf(layer, HV_PATH_MAX, "%s", top);
        child[0] = '\0';
        for (int depth = 0;; depth++) {
                char old[HV_PATH_MAX];
                int r = qcow2_backing(layer, base, HV_PATH_MAX, err);
                if (r < 0)
                        return r;
                /* An older cut's overlay is exactly "<its base>.<name>.qcow2":
                 * a name may repeat, that whole path does not. */
                if (legacy ? imgfile_legacy(base, cut, "qcow2", old, sizeof(old)) == 0 && !strcmp(old, layer)
                           : imgfile_is_layer(layer, cut))
                        return 1;
                if (!base[0] || depth > 256)
                        return 0;
                snprintf(child, HV_PATH_MAX, "%s", layer);
                snprintf(layer, HV_PATH_MAX, "%s", base);
        }
}

/* The layer of cut txid; for a cut made before names stopped growing, the
 * layer named for its name `legacy` ("<image>.<name>.qcow2"). */
static int find_cut_layer(const char *top, const char *txid, const char *legacy, char *layer, char *child, char *base,
                          lserr *err)
{
        int r = walk_to_layer(top, txid, 0, layer, child, base, err);

        if (r == 0 && legacy && legacy[0] && strcmp(legacy, txid))
                r = walk_to_layer(top, legacy, 1, layer, child, base, err);
        return r;
}

/* Walks a disk's chain from top to the file `image`: 1 with the layer right
 * above it (layer), the one above that (child, "" when layer is top) and image
 * itself (base); 0 when image is not in the chain or nothing sits on it. */
static int walk_to_image(const char *top, const char *image, char *layer, char *child, char *base, lserr *err)
{
        char cur[HV_PATH_MAX], next[HV_PATH_MAX];

        layer[0] = child[0] = '\0';
        snprintf(cur, sizeof(cur), "%s", top);
        for (int depth = 0; cur[0] && depth <= 256; depth++) {
                int r;
                if (!strcmp(cur, image)) {
                        if (!layer[0])
                                return 0;
                        snprintf(base, HV_PATH_MAX, "%s", image);
                        return 1;
                }
                r = qcow2_backing(cur, next, sizeof(next), err);
                if (r < 0)
                        return r;
                snprintf(child, HV_PATH_MAX, "%s", layer);
                snprintf(layer, HV_PATH_MAX, "%s", cur);
                snprintf(cur, sizeof(cur), "%s", next);
        }
        return 0;
}

static int delete_disk(virDomainPtr d, const char *vm, int running, const struct parsed_disk *pd, const char *txid,
                       const char *legacy, const char *hint, const struct hv_delete_hints *hints,
                       struct hv_image *ret, size_t *merged, lserr *err)
{
        char layer[HV_PATH_MAX], child[HV_PATH_MAX], base[HV_PATH_MAX];
        int r = find_cut_layer(pd->path, txid, legacy, layer, child, base, err);

        /* The cut's own layer left the chain with a pre-revert branch; a
         * revert's overlay sits on its image instead: that is what goes, and
         * nothing else (above that image may be another cut's data). */
        if (r == 0 && hint && hints) {
                r = walk_to_image(pd->path, hint, layer, child, base, err);
                if (r == 1 && !imgfile_is_overlay_of(layer, vm, pd->target, hints->reverts, hints->n_reverts))
                        r = 0;
        }

        if (r <= 0)
                return r; /* 0: not in this disk's chain, already deleted */
        if (!base[0])
                return lserr_set(err, LS_EHV, "%s: delete: disk %s: \"%s\" has no backing image", vm, pd->target, layer);
        if (running && !child[0]) {
                struct hv_image im = {0};
                snprintf(im.target, sizeof(im.target), "%s", pd->target);
                r = commit_active(d, vm, &im, err);
        } else if (running) {
                r = virDomainBlockCommit(d, pd->target, NULL, layer, 0, VIR_DOMAIN_BLOCK_COMMIT_SHALLOW) < 0
                            ? lserr_set(err, LS_EHV, "%s: delete: disk %s: block commit of \"%s\": %s", vm, pd->target,
                                        layer, last_error())
                            : wait_job_gone(d, vm, pd->target, err);
        } else {
                const char *commit[] = {"qemu-img", "commit", "-q", layer, NULL};
                r = run(vm, commit, err);
                if (r == 0 && child[0]) {
                        const char *fmt = strcmp(pd->format, "raw") ? "qcow2" : "raw";
                        char bfmt[16];
                        /* The base's own format: raw only at the very bottom. */
                        snprintf(bfmt, sizeof(bfmt), "%s", fmt);
                        {
                                char below[HV_PATH_MAX];
                                lserr e2 = {0};
                                if (qcow2_backing(base, below, sizeof(below), &e2) == 0 && !below[0]) {
                                        FILE *f = fopen(base, "rb");
                                        unsigned char m[4] = {0};
                                        if (f) {
                                                if (fread(m, 1, 4, f) != 4)
                                                        m[0] = 0;
                                                fclose(f);
                                        }
                                        snprintf(bfmt, sizeof(bfmt), "%s", memcmp(m, "QFI\xfb", 4) ? "raw" : "qcow2");
                                }
                        }
                        const char *rebase[] = {"qemu-img", "rebase", "-u", "-b", base, "-F", bfmt, child, NULL};
                        r = run(vm, rebase, err);
                } else if (r == 0) {
                        struct hv_image im = {0};
                        snprintf(im.target, sizeof(im.target), "%s", pd->target);
                        snprintf(im.before, sizeof(im.before), "%s", base);
                        r = redefine_disk(d, vm, &im, err);
                }
        }
        if (r < 0)
                return r;
        if (unlink(layer) < 0 && errno != ENOENT)
                return lserr_set(err, -errno, "%s: delete: disk %s: remove \"%s\": %m", vm, pd->target, layer);
        snprintf(ret[*merged].target, HV_TARGET_MAX, "%s", pd->target);
        snprintf(ret[*merged].before, HV_PATH_MAX, "%s", base);
        snprintf(ret[*merged].after, HV_PATH_MAX, "%s", layer);
        (*merged)++;
        return 0;
}

static int lv_delete_cut(void *be, const char *vm, const char *txid, const char *legacy,
                         const struct hv_delete_hints *hints, struct hv_image *ret, size_t *ret_n, lserr *err)
{
        struct parsed_disk pd[HV_MAX_DISKS];
        struct hv_domain dom;
        virDomainPtr d = NULL;
        virDomainSnapshotPtr s;
        size_t merged = 0;
        int r = dom_get(be, vm, "delete", &d, err);

        if (r < 0)
                return r;
        r = describe(d, &dom, pd, err);
        for (unsigned i = 0; r == 0 && i < dom.n_disks; i++) {
                const char *hint = NULL;
                for (size_t k = 0; hints && k < hints->n_images; k++)
                        if (!strcmp(hints->images[k].target, pd[i].target))
                                hint = hints->images[k].before;
                r = delete_disk(d, vm, dom.state == HV_RUNNING || dom.state == HV_PAUSED, &pd[i], txid, legacy, hint,
                                hints, ret, &merged, err);
        }
        /* The metadata is named for the txid; an older cut's, for its name,
         * looked for only when there is none of the first kind. */
        s = r == 0 ? virDomainSnapshotLookupByName(d, txid, 0) : NULL;
        if (r == 0 && !s && legacy && legacy[0])
                s = virDomainSnapshotLookupByName(d, legacy, 0);
        if (s) {
                if (virDomainSnapshotDelete(s, VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY) < 0)
                        r = fail(err, vm, "delete: drop snapshot metadata");
                virDomainSnapshotFree(s);
        }
        virDomainFree(d);
        /* Also on failure: what was merged must reach the catalog (repath). */
        *ret_n = merged;
        return r;
}

/* ---- pre-revert branches ------------------------------------------------------- */

struct branch_ctx {
        const char *vm, *target;
};

/* Only overlays lockstep named (cuts' and reverts') are a branch's own. */
static int lv_ours(void *ctx, const char *path)
{
        const struct branch_ctx *b = ctx;
        char id[LS_NAME_MAX + 1];

        return imgfile_layer_txid(path, b->vm, b->target, id, sizeof(id)) == 0;
}

static int lv_backing(void *ctx, const char *path, char *out, lserr *err)
{
        (void)ctx;
        if (access(path, F_OK) < 0)
                return -ENOENT;
        return qcow2_backing(path, out, HV_PATH_MAX, err);
}

/* Appends one removed file to the growing result. */
static int note_removed(struct hv_removed **v, size_t *n, const char *target, const char *path)
{
        struct hv_removed *p = realloc(*v, (*n + 1) * sizeof(**v));

        if (!p)
                return -ENOMEM;
        *v = p;
        snprintf(p[*n].target, sizeof(p[*n].target), "%s", target);
        snprintf(p[*n].path, sizeof(p[*n].path), "%s", path);
        (*n)++;
        return 0;
}

static int lv_drop_branch(void *be, const char *vm, const struct hv_image *branch, size_t n, const char *const *keep,
                          size_t n_keep, struct hv_removed **ret, size_t *ret_n, lserr *err)
{
        struct parsed_disk pd[HV_MAX_DISKS];
        struct hv_domain dom;
        struct hv_removed *out = NULL;
        const char **roots = NULL;
        char(*own)[HV_PATH_MAX] = NULL;
        size_t n_out = 0, n_own = 0, n_roots = 0;
        virDomainPtr d = NULL;
        int r = dom_get(be, vm, "drop branch", &d, err);

        if (r < 0)
                return r;
        r = describe(d, &dom, pd, err);
        if (r < 0)
                goto out;
        roots = calloc(dom.n_disks + n_keep + 1, sizeof(*roots));
        if (!roots) {
                r = -ENOMEM;
                goto out;
        }
        /* Whatever the domain runs on, and every other kept branch, stays. */
        for (unsigned i = 0; i < dom.n_disks; i++)
                roots[n_roots++] = pd[i].path;
        for (size_t i = 0; i < n_keep; i++)
                roots[n_roots++] = keep[i];
        for (size_t i = 0; r == 0 && i < n; i++) {
                free(own);
                own = NULL;
                lserr e2 = {0};
                struct branch_ctx bc = {vm, branch[i].target};
                r = branch_own_files(branch[i].branch, roots, n_roots, lv_backing, lv_ours, &bc, &own, &n_own, &e2);
                if (r < 0) {
                        r = lserr_set(err, r, "%s: drop branch: disk %s: %s", vm, branch[i].target, e2.msg);
                        break;
                }
                /* Bottom up: the top goes last, so a drop cut short is found
                 * again from the top and finished. */
                for (size_t k = n_own; r == 0 && k-- > 0;) {
                        char cut[LS_NAME_MAX + 1], mem[HV_PATH_MAX];
                        if (unlink(own[k]) < 0 && errno != ENOENT) {
                                r = lserr_set(err, -errno, "%s: drop branch: disk %s: remove \"%s\": %m", vm,
                                              branch[i].target, own[k]);
                                break;
                        }
                        r = note_removed(&out, &n_out, branch[i].target, own[k]);
                        /* The cut this file is the overlay of lived on the file
                         * below it: when that went too, so do its memory state
                         * and metadata. */
                        if (r < 0 || k + 1 == n_own ||
                            imgfile_layer_txid(own[k], vm, branch[i].target, cut, sizeof(cut)) < 0)
                                continue;
                        if (imgfile_memory(own[k], vm, cut, mem, sizeof(mem)) == 0)
                                unlink(mem);
                        virDomainSnapshotPtr s = virDomainSnapshotLookupByName(d, cut, 0);
                        if (s) {
                                virDomainSnapshotDelete(s, VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY);
                                virDomainSnapshotFree(s);
                        }
                }
        }
out:
        free(own);
        free(roots);
        virDomainFree(d);
        /* Also on failure: what was removed must reach the catalog. */
        *ret = out;
        *ret_n = n_out;
        return r;
}

/* ---- guest hooks ---------------------------------------------------------------- */

/* A JSON string literal of s (quotes included). */
static int json_quote(const char *s, char *out, size_t n)
{
        size_t o = 0;

        if (n < 3)
                return -ENAMETOOLONG;
        out[o++] = '"';
        for (; *s; s++) {
                char esc[8];
                const char *rep = esc;
                if (*s == '"' || *s == '\\')
                        snprintf(esc, sizeof(esc), "\\%c", *s);
                else if ((unsigned char)*s < 0x20)
                        snprintf(esc, sizeof(esc), "\\u%04x", (unsigned char)*s);
                else
                        snprintf(esc, sizeof(esc), "%c", *s);
                size_t l = strlen(rep);
                if (o + l + 2 > n)
                        return -ENAMETOOLONG;
                memcpy(out + o, rep, l);
                o += l;
        }
        out[o++] = '"';
        out[o] = '\0';
        return 0;
}

/* The integer after "key": in a guest agent answer, or -1. The answers are
 * small, fixed-shape objects from qemu-ga. */
static long long json_int_field(const char *json, const char *key)
{
        char pat[64];
        const char *p;

        snprintf(pat, sizeof(pat), "\"%s\":", key);
        p = strstr(json, pat);
        if (!p)
                return -1;
        p += strlen(pat);
        while (*p == ' ')
                p++;
        return strtoll(p, NULL, 10);
}

static int lv_guest_run(void *be, const char *vm, const char *command, unsigned timeout_ms, lserr *err)
{
        char quoted[2200], req[2400];
        long long deadline = fsutil_mono_us() + (long long)timeout_ms * 1000, pid;
        virDomainPtr d = NULL;
        char *out;
        int r = dom_get(be, vm, "hook", &d, err);

        if (r < 0)
                return r;
        if (json_quote(command, quoted, sizeof(quoted)) < 0) {
                r = lserr_set(err, LS_EHOOK, "%s: hook: command too long", vm);
                goto out;
        }
        snprintf(req, sizeof(req),
                 "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"/bin/sh\",\"arg\":[\"-c\",%s],"
                 "\"capture-output\":true}}",
                 quoted);
        out = virDomainQemuAgentCommand(d, req, 10, 0);
        if (!out) {
                r = lserr_set(err, last_code() == LS_EHV ? LS_ENOGA : last_code(), "%s: hook: guest-exec: %s", vm,
                              last_error());
                goto out;
        }
        pid = json_int_field(out, "pid");
        free(out);
        if (pid < 0) {
                r = lserr_set(err, LS_EHOOK, "%s: hook: guest-exec gave no pid", vm);
                goto out;
        }
        for (;;) {
                snprintf(req, sizeof(req), "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":%lld}}", pid);
                out = virDomainQemuAgentCommand(d, req, 10, 0);
                if (!out) {
                        r = lserr_set(err, LS_EHOOK, "%s: hook: guest-exec-status: %s", vm, last_error());
                        goto out;
                }
                if (strstr(out, "\"exited\":true") || strstr(out, "\"exited\": true")) {
                        long long code = json_int_field(out, "exitcode");
                        free(out);
                        if (code != 0)
                                r = lserr_set(err, LS_EHOOK, "%s: hook \"%.200s\": exit code %lld", vm, command, code);
                        goto out;
                }
                free(out);
                if (fsutil_mono_us() > deadline) {
                        r = lserr_set(err, LS_EHOOK, "%s: hook \"%.200s\": still running after %u ms", vm, command,
                                      timeout_ms);
                        goto out;
                }
                usleep(50000);
        }
out:
        virDomainFree(d);
        return r;
}

/* ---- revert ----------------------------------------------------------------- */

static int lv_check_images(void *be, const char *vm, const struct hv_image *imgs, size_t n, lserr *err)
{
        (void)be;
        for (size_t i = 0; i < n; i++) {
                if (access(imgs[i].before, R_OK) < 0)
                        return lserr_set(err, LS_EIMAGE, "%s: prepare: disk %s: image \"%s\": %m", vm, imgs[i].target,
                                         imgs[i].before);
                /* -U: the image is in use read-only as a backing file. */
                const char *check[] = {"qemu-img", "check", "-U", "-q", imgs[i].before, NULL};
                const char *chain[] = {"qemu-img", "info", "-U", "--backing-chain", imgs[i].before, NULL};
                lserr e2 = {0};
                if (strcmp(image_format(imgs[i].before), "qcow2") == 0 && run(vm, check, &e2) < 0)
                        return lserr_set(err, LS_ECORRUPT, "%s: prepare: disk %s: image \"%s\" fails qemu-img check", vm,
                                         imgs[i].target, imgs[i].before);
                if (run_quiet(vm, chain, &e2) < 0)
                        return lserr_set(err, LS_ECORRUPT, "%s: prepare: disk %s: backing chain of \"%s\" is broken", vm,
                                         imgs[i].target, imgs[i].before);
        }
        return 0;
}

static int lv_cut_images(void *be, const char *vm, const char *txid, const char *legacy, struct hv_image *ret,
                         size_t *ret_n, lserr *err)
{
        struct parsed_disk pd[HV_MAX_DISKS];
        struct hv_domain dom;
        virDomainPtr d = NULL;
        int r = dom_get(be, vm, "prepare", &d, err);

        if (r < 0)
                return r;
        r = describe(d, &dom, pd, err);
        virDomainFree(d);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < dom.n_disks; i++) {
                char layer[HV_PATH_MAX], child[HV_PATH_MAX];
                memset(&ret[i], 0, sizeof(ret[i]));
                r = find_cut_layer(pd[i].path, txid, legacy, layer, child, ret[i].before, err);
                if (r < 0)
                        return r;
                if (r == 0)
                        return lserr_set(err, LS_EIMAGE, "%s: prepare: disk %s: no layer of cut %s in its chain", vm,
                                         pd[i].target, txid);
                if (!ret[i].before[0])
                        return lserr_set(err, LS_EIMAGE, "%s: prepare: disk %s: \"%s\" has no backing image", vm,
                                         pd[i].target, layer);
                snprintf(ret[i].target, HV_TARGET_MAX, "%s", pd[i].target);
                snprintf(ret[i].branch, HV_PATH_MAX, "%s", pd[i].path);
        }
        *ret_n = dom.n_disks;
        return lv_check_images(be, vm, ret, dom.n_disks, err);
}

static int lv_stop(void *be, const char *vm, unsigned timeout_ms, lserr *err)
{
        virDomainPtr d = NULL;
        long long deadline = fsutil_mono_us() + (long long)timeout_ms * 1000;
        int state = 0, reason = 0, r = dom_get(be, vm, "stop", &d, err);

        if (r < 0)
                return r;
        if (virDomainGetState(d, &state, &reason, 0) == 0 && state == VIR_DOMAIN_SHUTOFF)
                goto out;
        /* Guest agent first (the lab's guests ignore ACPI), then ACPI. */
        if (virDomainShutdownFlags(d, VIR_DOMAIN_SHUTDOWN_GUEST_AGENT) < 0)
                virDomainShutdownFlags(d, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN);
        while (fsutil_mono_us() < deadline) {
                if (virDomainGetState(d, &state, &reason, 0) == 0 && state == VIR_DOMAIN_SHUTOFF)
                        goto out;
                usleep(100000);
        }
        if (virDomainDestroy(d) < 0 && (virDomainGetState(d, &state, &reason, 0) < 0 || state != VIR_DOMAIN_SHUTOFF))
                r = fail(err, vm, "stop: destroy");
out:
        virDomainFree(d);
        return r;
}

static int lv_start(void *be, const char *vm, lserr *err)
{
        virDomainPtr d = NULL;
        int state = 0, reason = 0, r = dom_get(be, vm, "start", &d, err);

        if (r < 0)
                return r;
        if (!(virDomainGetState(d, &state, &reason, 0) == 0 && state == VIR_DOMAIN_RUNNING) && virDomainCreate(d) < 0)
                r = fail(err, vm, "start");
        virDomainFree(d);
        return r;
}

static int lv_restore(void *be, const char *vm, const char *memfile, lserr *err)
{
        virDomainPtr d = NULL;
        char *xml;
        int r = dom_get(be, vm, "restore", &d, err);

        if (r < 0)
                return r;
        /* The saved state's own XML names the disks of the cut time; the
         * definition now names the new overlays on the cut's images. */
        xml = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
        if (!xml)
                r = fail(err, vm, "restore: read definition");
        else if (virDomainRestoreFlags(virDomainGetConnect(d), memfile, xml, VIR_DOMAIN_SAVE_RUNNING) < 0)
                r = lserr_set(err, LS_EHV, "%s: restore of memory state \"%s\": %s", vm, memfile, last_error());
        free(xml);
        virDomainFree(d);
        return r;
}

static int lv_point_disks(void *be, const char *vm, struct hv_image *imgs, size_t n, const char *tag, lserr *err)
{
        virDomainPtr d = NULL;
        int state = 0, reason = 0, r = dom_get(be, vm, "switch", &d, err);

        if (r < 0)
                return r;
        if (virDomainGetState(d, &state, &reason, 0) < 0 || state != VIR_DOMAIN_SHUTOFF) {
                r = lserr_set(err, LS_EHV, "%s: switch: domain is not shut off", vm);
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                if (!tag) {
                        snprintf(imgs[i].after, HV_PATH_MAX, "%s", imgs[i].before);
                        continue;
                }
                if (imgfile_overlay(imgs[i].before, vm, imgs[i].target, tag, imgs[i].after, HV_PATH_MAX) < 0) {
                        r = lserr_set(err, LS_EDISK, "%s: switch: disk %s: overlay path too long", vm, imgs[i].target);
                        goto out;
                }
                if (access(imgs[i].after, F_OK) == 0)
                        continue; /* made by an earlier attempt of this same revert */
                const char *create[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-b", imgs[i].before, "-F",
                                        image_format(imgs[i].before), imgs[i].after, NULL};
                r = run(vm, create, err);
                if (r < 0)
                        goto out;
        }
        r = redefine_disks(d, vm, imgs, n, 1, err);
out:
        virDomainFree(d);
        return r;
}

const struct hv_ops hv_libvirt_ops = {
        .name = "libvirt",
        .open = lv_open,
        .close = lv_close,
        .list = lv_list,
        .lookup = lv_lookup,
        .check = lv_check,
        .ga_ping = lv_ga_ping,
        .freeze = lv_freeze,
        .thaw = lv_thaw,
        .suspend = lv_suspend,
        .resume = lv_resume,
        .snapshot = lv_snapshot,
        .discard = lv_discard,
        .delete_cut = lv_delete_cut,
        .drop_branch = lv_drop_branch,
        .cut_images = lv_cut_images,
        .check_images = lv_check_images,
        .stop = lv_stop,
        .start = lv_start,
        .point_disks = lv_point_disks,
        .guest_run = lv_guest_run,
        .restore = lv_restore,
};
