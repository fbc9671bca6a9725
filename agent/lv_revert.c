/* lv_revert: the images of a committed cut found through each disk's chain
 * (or a recorded branch's) and checked with qemu-img, and a shut-off domain's
 * disks pointed at them (or at new overlays on them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "imgfile.h"
#include "lv_chain.h"
#include "lv_conn.h"
#include "lv_image.h"
#include "lv_revert.h"
#include "lv_xml.h"

int lv_revert_check_images(void *be, const char *vm, const struct hv_image *imgs, size_t n, lserr *err)
{
        (void)be;
        (void)vm;
        for (size_t i = 0; i < n; i++) {
                const char *f = imgs[i].format;
                if (access(imgs[i].before, R_OK) < 0)
                        return lserr_set(err, LS_EIMAGE, "prepare: disk %s: image \"%s\": %m", imgs[i].target,
                                         imgs[i].before);
                if (!f[0])
                        return lserr_set(err, LS_EIMAGE, "prepare: disk %s: image \"%s\": format unknown", imgs[i].target,
                                         imgs[i].before);
                /* -U: the image is in use read-only as a backing file. */
                const char *check[] = {"qemu-img", "check", "-U", "-q", "-f", f, imgs[i].before, NULL};
                const char *chain[] = {"qemu-img", "info", "-U", "-f", f, "--backing-chain", imgs[i].before, NULL};
                lserr e2 = {0};
                if (strcmp(f, "qcow2") == 0 && lv_image_run(check, &e2) < 0)
                        return lserr_set(err, LS_ECORRUPT, "prepare: disk %s: image \"%s\" fails qemu-img check",
                                         imgs[i].target, imgs[i].before);
                if (lv_image_run_quiet(chain, &e2) < 0)
                        return lserr_set(err, LS_ECORRUPT, "prepare: disk %s: backing chain of \"%s\" is broken",
                                         imgs[i].target, imgs[i].before);
        }
        return 0;
}

/* A recorded branch top's format: as recorded; for records from before
 * formats were, qcow2 for an overlay lockstep named, else unknown (the
 * branch is then not read). */
static const char *branch_fmt(const struct hv_image *b, const char *vm)
{
        char id[LS_NAME_MAX + 1];

        if (b->branch_format[0])
                return b->branch_format;
        return imgfile_layer_txid(b->branch, vm, b->target, id, sizeof(id)) == 0 ? "qcow2" : "";
}

/* The cut's layer in disk pd's chain, else in a recorded branch of it: 1
 * with hit, 0 when none holds it. */
static int find_layer(const struct lv_chain_dirs *ds, const char *vm, const struct lv_xml_disk *pd, const char *txid,
                      const char *legacy, const struct hv_cut_where *w, struct lv_chain_hit *hit, lserr *err)
{
        int r = lv_chain_find_cut_layer(ds, pd->path, pd->format, txid, legacy, hit, err);

        for (size_t k = 0; r == 0 && w && k < w->n_branches; k++) {
                const struct hv_image *b = &w->branches[k];
                lserr e2 = {0};
                if (strcmp(b->target, pd->target) || !branch_fmt(b, vm)[0])
                        continue;
                /* A branch dropped since, or cut short: not where the cut is. */
                if (lv_chain_find_cut_layer(ds, b->branch, branch_fmt(b, vm), txid, legacy, hit, &e2) == 1)
                        r = 1;
        }
        return r;
}

/* The catalog's hint for pd, taken only when it is a file of a chain the
 * agent knows for that disk: 1 with the format in fmt. */
static int hint_known(const struct lv_chain_dirs *ds, const char *vm, const struct lv_xml_disk *pd,
                      const struct hv_cut_where *w, const char *hint, char *fmt, lserr *err)
{
        int r = lv_chain_has(ds, pd->path, pd->format, hint, fmt, err);

        for (size_t k = 0; r == 0 && w && k < w->n_branches; k++) {
                const struct hv_image *b = &w->branches[k];
                lserr e2 = {0};
                if (!strcmp(b->target, pd->target) && branch_fmt(b, vm)[0] &&
                    lv_chain_has(ds, b->branch, branch_fmt(b, vm), hint, fmt, &e2) == 1)
                        r = 1;
        }
        return r;
}

static const char *hint_for(const struct hv_cut_where *w, const char *target)
{
        for (size_t k = 0; w && k < w->n_hints; k++)
                if (!strcmp(w->hints[k].target, target))
                        return w->hints[k].before;
        return NULL;
}

/* Disk pd's cut image into im. */
static int resolve_disk(const struct lv_chain_dirs *ds, const char *vm, const struct lv_xml_disk *pd,
                        const char *txid, const char *legacy, const struct hv_cut_where *w, struct hv_image *im,
                        lserr *err)
{
        struct lv_chain_hit hit;
        const char *hint = hint_for(w, pd->target);
        int r = find_layer(ds, vm, pd, txid, legacy, w, &hit, err);

        if (r < 0)
                return r;
        if (r == 1 && !hit.base[0])
                return lserr_set(err, LS_EIMAGE, "prepare: disk %s: \"%s\" has no backing image", pd->target,
                                 hit.layer);
        if (r == 1) {
                snprintf(im->before, HV_PATH_MAX, "%s", hit.base);
                snprintf(im->format, sizeof(im->format), "%s", hit.base_fmt);
                return 0;
        }
        r = hint ? hint_known(ds, vm, pd, w, hint, im->format, err) : 0;
        if (r < 0)
                return r;
        if (r == 0)
                return lserr_set(err, LS_EIMAGE,
                                 "prepare: disk %s: no layer of cut %s in its chain or in a recorded branch%s",
                                 pd->target, txid, hint ? ", and the catalog's image is in neither" : "");
        snprintf(im->before, HV_PATH_MAX, "%s", hint);
        return 0;
}

int lv_revert_cut_images(void *be, const char *vm, const char *txid, const char *legacy, const struct hv_cut_where *w,
                         struct hv_image *ret, size_t *ret_n, lserr *err)
{
        struct lv_xml_disk pd[HV_MAX_DISKS];
        struct hv_domain dom;
        _cleanup_free_ struct lv_chain_dirs *ds = calloc(1, sizeof(*ds));
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        int r = ds ? lv_conn_domain(be, vm, "prepare", &d, err) : -ENOMEM;

        if (r < 0)
                return r;
        r = lv_xml_describe(d, &dom, pd, err);
        if (r == 0)
                r = lv_chain_dirs_of(ds, &dom, err);
        for (size_t k = 0; r == 0 && w && k < w->n_branches; k++)
                r = lv_chain_dirs_add(ds, w->branches[k].branch, err);
        for (unsigned i = 0; r == 0 && i < dom.n_disks; i++) {
                memset(&ret[i], 0, sizeof(ret[i]));
                r = resolve_disk(ds, vm, &pd[i], txid, legacy, w, &ret[i], err);
                snprintf(ret[i].target, HV_TARGET_MAX, "%s", pd[i].target);
                snprintf(ret[i].branch, HV_PATH_MAX, "%s", pd[i].path);
                snprintf(ret[i].branch_format, sizeof(ret[i].branch_format), "%s", pd[i].format);
        }
        if (r < 0)
                return r;
        *ret_n = dom.n_disks;
        return lv_revert_check_images(be, vm, ret, dom.n_disks, err);
}

/* With tag, a new overlay imgs[i].after on each imgs[i].before (kept when an
 * earlier attempt of this same revert made it); without, imgs[i].before. */
static int make_overlays(const char *vm, struct hv_image *imgs, size_t n, const char *tag, lserr *err)
{
        for (size_t i = 0; i < n; i++) {
                int r;
                if (!tag) {
                        snprintf(imgs[i].after, HV_PATH_MAX, "%s", imgs[i].before);
                        continue;
                }
                if (imgfile_overlay(imgs[i].before, vm, imgs[i].target, tag, imgs[i].after, HV_PATH_MAX) < 0)
                        return lserr_set(err, LS_EDISK, "switch: disk %s: overlay path too long", imgs[i].target);
                if (access(imgs[i].after, F_OK) == 0)
                        continue; /* made by an earlier attempt of this same revert */
                const char *create[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-b", imgs[i].before, "-F",
                                        imgs[i].format, imgs[i].after, NULL};
                r = lv_image_run(create, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Each image's format known before anything changes: as given; for a record
 * from before formats were, the disk's own when it is the file the disk runs
 * on, qcow2 for an overlay lockstep named; never guessed from the bytes. */
static int known_formats(virDomainPtr d, const char *vm, struct hv_image *imgs, size_t n, lserr *err)
{
        struct lv_xml_disk pd[HV_MAX_DISKS];
        struct hv_domain dom;
        char id[LS_NAME_MAX + 1];
        int r = lv_xml_describe(d, &dom, pd, err);

        for (size_t i = 0; r == 0 && i < n; i++) {
                for (unsigned k = 0; !imgs[i].format[0] && k < dom.n_disks; k++)
                        if (!strcmp(pd[k].target, imgs[i].target) && !strcmp(pd[k].path, imgs[i].before))
                                snprintf(imgs[i].format, sizeof(imgs[i].format), "%s", pd[k].format);
                if (!imgs[i].format[0] && imgfile_layer_txid(imgs[i].before, vm, imgs[i].target, id, sizeof(id)) == 0)
                        snprintf(imgs[i].format, sizeof(imgs[i].format), "qcow2");
                if (!imgs[i].format[0])
                        r = lserr_set(err, LS_EIMAGE, "switch: disk %s: format of \"%s\" is not known: refusing to guess it",
                                      imgs[i].target, imgs[i].before);
        }
        return r;
}

int lv_revert_point_disks(void *be, const char *vm, struct hv_image *imgs, size_t n, const char *tag, lserr *err)
{
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        int state = 0, reason = 0, r = lv_conn_domain(be, vm, "switch", &d, err);

        if (r < 0)
                return r;
        if (virDomainGetState(d, &state, &reason, 0) < 0 || state != VIR_DOMAIN_SHUTOFF)
                return lserr_set(err, LS_EHV, "switch: domain is not shut off");
        r = known_formats(d, vm, imgs, n, err);
        if (r < 0)
                return r;
        r = make_overlays(vm, imgs, n, tag, err);
        if (r < 0)
                return r;
        return lv_xml_redefine_disks(d, imgs, n, 1, err);
}
