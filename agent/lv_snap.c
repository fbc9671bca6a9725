/* lv_snap: the snapshot of one domain for a cut: checked before any guest
 * freezes, taken atomically as external overlays (and a memory state), and
 * undone (discarded) when the cut is aborted. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/virterror.h>

#include "cleanup.h"
#include "imgfile.h"
#include "lv_commit.h"
#include "lv_conn.h"
#include "lv_err.h"
#include "lv_image.h"
#include "lv_snap.h"
#include "lv_xml.h"

/* An escaped path: every byte may become "&quot;". */
#define ESC_MAX (HV_PATH_MAX * 6)
/* The snapshot XML: its frame, then the memory state and each disk, each an
 * escaped path and less than 256 bytes of markup. */
#define SNAP_XML_MAX (1024 + (HV_MAX_DISKS + 1) * (ESC_MAX + 256))

/* One disk can take an external qcow2 overlay named for txid. */
static int check_disk(const struct lv *lv, const char *vm, const char *txid, const struct lv_xml_disk *pd,
                      lserr *err)
{
        char overlay[HV_PATH_MAX];
        lserr e2 = {0};
        int r;

        if (strcmp(pd->type, "file") != 0)
                return lserr_set(err, LS_EDISK,
                                 "validate: disk %s: type \"%s\" cannot take an external qcow2 overlay "
                                 "(only file disks can)",
                                 pd->target, pd->type);
        if (strcmp(pd->format, "qcow2") != 0 && strcmp(pd->format, "raw") != 0)
                return lserr_set(err, LS_EDISK, "validate: disk %s: format \"%s\" is not qcow2 or raw", pd->target,
                                 pd->format);
        if (imgfile_overlay(pd->path, vm, pd->target, txid, overlay, sizeof(overlay)) < 0)
                return lserr_set(err, LS_EDISK, "validate: disk %s: overlay path beside \"%s\" is longer than %d bytes",
                                 pd->target, pd->path, HV_PATH_MAX - 1);
        r = imgfile_check_new("overlay", overlay, HV_PATH_MAX, lv->min_free, &e2);
        if (r < 0)
                return lserr_set(err, r, "validate: disk %s: %s", pd->target, e2.msg);
        return 0;
}

/* The memory state can be written beside the first disk's image. */
static int check_memory(const struct lv *lv, const char *vm, const char *txid, const struct lv_xml_disk *pd0,
                        const virDomainInfo *info, lserr *err)
{
        char mem[HV_PATH_MAX];
        lserr e2 = {0};
        int r;

        if (imgfile_memory(pd0->path, vm, txid, mem, sizeof(mem)) < 0)
                return lserr_set(err, LS_EDISK, "validate: memory state path beside \"%s\" is too long", pd0->path);
        /* The state holds the guest's RAM (info.memory is in KiB). */
        r = imgfile_check_new("memory state", mem, HV_PATH_MAX, lv->min_free + info->memory * 1024ULL, &e2);
        if (r < 0)
                return lserr_set(err, r, "validate: %s", e2.msg);
        return 0;
}

/* A paused guest cannot be frozen; QEMU pauses one itself when a write fails
 * (a full disk, by default): then say what an operator has to do. */
static int paused_refusal(virDomainPtr d, lserr *err)
{
        int state = 0, reason = 0;

        if (virDomainGetState(d, &state, &reason, 0) == 0 && state == VIR_DOMAIN_PAUSED &&
            reason == VIR_DOMAIN_PAUSED_IOERROR)
                return lserr_set(err, LS_EPAUSED, "validate: domain was paused by an I/O error (a full disk?): "
                                                  "resume it once the disk has room (virsh resume); fsfreeze "
                                                  "cannot run in it");
        return lserr_set(err, LS_EPAUSED, "validate: domain is paused: fsfreeze cannot run in it");
}

int lv_snap_check(void *be, const char *vm, const char *txid, unsigned flags, lserr *err)
{
        struct lv *lv = be;
        struct lv_xml_disk pd[HV_MAX_DISKS];
        struct hv_domain dom;
        virDomainInfo info = {0};
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        int r = lv_conn_domain(lv, vm, "validate", &d, err);

        if (r < 0)
                return r;
        r = lv_xml_describe(d, &dom, pd, err);
        if (r < 0)
                return r;
        if ((flags & HV_CHECK_MEMORY) && virDomainGetInfo(d, &info) < 0)
                return lv_err_fail(err, "validate: domain info");
        if (dom.state == HV_PAUSED && (flags & HV_CHECK_QUIESCE))
                return paused_refusal(d, err);
        if (dom.state != HV_RUNNING && dom.state != HV_PAUSED)
                return lserr_set(err, LS_ENOTRUNNING, "validate: domain is not running");
        if (dom.n_disks == 0)
                return lserr_set(err, LS_EDISK, "validate: no writable disk to snapshot");
        for (unsigned i = 0; i < dom.n_disks; i++) {
                r = check_disk(lv, vm, txid, &pd[i], err);
                if (r < 0)
                        return r;
        }
        if (flags & HV_CHECK_MEMORY)
                return check_memory(lv, vm, txid, &pd[0], &info, err);
        return 0;
}

static void xml_append(char *xml, size_t *off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* SNAP_XML_MAX holds the largest snapshot XML: it cannot be cut short. */
static void xml_append(char *xml, size_t *off, const char *fmt, ...)
{
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(xml + *off, SNAP_XML_MAX - *off, fmt, ap);
        va_end(ap);
        assert(n >= 0 && (size_t)n < SNAP_XML_MAX - *off);
        *off += (size_t)n;
}

/* The <domainsnapshot> document for txid into xml (SNAP_XML_MAX bytes), ret[]
 * filled with each disk's target, before and after; *flags gets DISK_ONLY
 * when no memory state is saved. */
static int snap_xml(const char *vm, const char *txid, int with_memory, const struct hv_domain *dom,
                    const struct lv_xml_disk *pd, struct hv_image *ret, char *xml, unsigned *flags, lserr *err)
{
        char esc[ESC_MAX];
        size_t off = 0;

        xml_append(xml, &off, "<domainsnapshot><name>%s</name>", txid);
        if (with_memory) {
                char mem[HV_PATH_MAX];
                if (dom->n_disks == 0)
                        return lserr_set(err, LS_EDISK, "snapshot: no writable disk to snapshot");
                if (imgfile_memory(pd[0].path, vm, txid, mem, sizeof(mem)) < 0 ||
                    lv_xml_escape(mem, esc, sizeof(esc)) < 0)
                        return lserr_set(err, LS_EDISK, "snapshot: memory state path too long");
                xml_append(xml, &off, "<memory snapshot='external' file='%s'/>", esc);
        } else {
                *flags |= VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY;
        }
        xml_append(xml, &off, "<disks>");
        for (unsigned i = 0; i < dom->n_disks; i++) {
                if (imgfile_overlay(pd[i].path, vm, pd[i].target, txid, ret[i].after, HV_PATH_MAX) < 0)
                        return lserr_set(err, LS_EDISK, "snapshot: disk %s: overlay path too long", pd[i].target);
                snprintf(ret[i].target, HV_TARGET_MAX, "%s", pd[i].target);
                snprintf(ret[i].before, HV_PATH_MAX, "%s", pd[i].path);
                if (lv_xml_escape(ret[i].after, esc, sizeof(esc)) < 0)
                        return lserr_set(err, LS_EDISK, "snapshot: overlay path too long");
                xml_append(xml, &off,
                           "<disk name='%s' snapshot='external' type='file'><driver type='qcow2'/>"
                           "<source file='%s'/></disk>",
                           pd[i].target, esc);
        }
        xml_append(xml, &off, "</disks></domainsnapshot>");
        return 0;
}

int lv_snap_create(void *be, const char *vm, const char *txid, int with_memory, struct hv_image *ret, size_t *ret_n,
                   lserr *err)
{
        struct lv_xml_disk pd[HV_MAX_DISKS];
        struct hv_domain dom;
        _cleanup_free_ char *xml = NULL;
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        _cleanup_(lv_snapshot_freep) virDomainSnapshotPtr s = NULL;
        unsigned flags = VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC;
        int r = lv_conn_domain(be, vm, "snapshot", &d, err);

        if (r < 0)
                return r;
        r = lv_xml_describe(d, &dom, pd, err);
        if (r < 0)
                return r;
        xml = malloc(SNAP_XML_MAX);
        if (!xml)
                return -ENOMEM;
        r = snap_xml(vm, txid, with_memory, &dom, pd, ret, xml, &flags, err);
        if (r < 0)
                return r;
        s = virDomainSnapshotCreateXML(d, xml, flags);
        if (!s) {
                int nospace = strstr(lv_err_msg(), "No space left") != NULL;
                return lserr_set(err, nospace ? LS_ENOSPACE : LS_EHV, "external snapshot \"%s\": %s", txid,
                                 lv_err_msg());
        }
        *ret_n = dom.n_disks;
        return 0;
}

/* Puts disk im->target back on im->before when the domain runs on im->after. */
static int discard_disk(virDomainPtr d, const struct hv_domain *dom, const struct hv_image *im, lserr *err)
{
        const struct hv_disk *on = NULL;
        struct hv_image back = *im;
        char below[HV_PATH_MAX];
        int r;

        for (unsigned i = 0; i < dom->n_disks; i++)
                if (!strcmp(dom->disks[i].target, im->target) && !strcmp(dom->disks[i].path, im->after))
                        on = &dom->disks[i];
        if (!on)
                return 0;
        if (dom->state == HV_RUNNING || dom->state == HV_PAUSED)
                return lv_commit_active(d, im->target, err);
        /* The overlay's header (the disk's format says qcow2: QEMU wrote it)
         * gives the format of the image below; the image must be the one
         * recorded, never another the header names. */
        r = lv_image_backing(im->after, on->format, below, sizeof(below), back.format, sizeof(back.format), err);
        if (r == 0 && strcmp(below, im->before))
                r = lserr_set(err, LS_EIMAGE, "discard: disk %s: \"%s\" is not backed by \"%s\": left as it is",
                              im->target, im->after, im->before);
        if (r < 0)
                return r;
        r = lv_commit_offline(im->after, err);
        if (r < 0)
                return r;
        return lv_xml_redefine_disks(d, &back, 1, 0, err);
}

int lv_snap_discard(void *be, const char *vm, const char *txid, const struct hv_image *imgs, size_t n, lserr *err)
{
        struct lv_xml_disk pd[HV_MAX_DISKS];
        struct hv_domain dom;
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        _cleanup_(lv_snapshot_freep) virDomainSnapshotPtr s = NULL;
        char mem[HV_PATH_MAX];
        int r = lv_conn_domain(be, vm, "discard", &d, err);

        if (r < 0)
                return r;
        r = lv_xml_describe(d, &dom, pd, err);
        if (r < 0)
                return r;
        for (size_t k = 0; k < n; k++) {
                r = discard_disk(d, &dom, &imgs[k], err);
                if (r < 0)
                        return r;
                if (unlink(imgs[k].after) < 0 && errno != ENOENT)
                        return lserr_set(err, -errno, "discard: remove \"%s\": %m", imgs[k].after);
        }
        if (n && imgfile_memory(imgs[0].before, vm, txid, mem, sizeof(mem)) == 0)
                unlink(mem);
        s = virDomainSnapshotLookupByName(d, txid, 0);
        if (s && virDomainSnapshotDelete(s, VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY) < 0)
                return lv_err_fail(err, "discard: drop snapshot metadata");
        return 0;
}
