/* lv_revert: the images of a committed cut found through each disk's chain
 * and checked with qemu-img, and a shut-off domain's disks pointed at them
 * (or at new overlays on them). */
#include <stdio.h>
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
                if (access(imgs[i].before, R_OK) < 0)
                        return lserr_set(err, LS_EIMAGE, "prepare: disk %s: image \"%s\": %m", imgs[i].target,
                                         imgs[i].before);
                /* -U: the image is in use read-only as a backing file. */
                const char *check[] = {"qemu-img", "check", "-U", "-q", imgs[i].before, NULL};
                const char *chain[] = {"qemu-img", "info", "-U", "--backing-chain", imgs[i].before, NULL};
                lserr e2 = {0};
                if (strcmp(lv_image_format(imgs[i].before), "qcow2") == 0 && lv_image_run(check, &e2) < 0)
                        return lserr_set(err, LS_ECORRUPT, "prepare: disk %s: image \"%s\" fails qemu-img check",
                                         imgs[i].target, imgs[i].before);
                if (lv_image_run_quiet(chain, &e2) < 0)
                        return lserr_set(err, LS_ECORRUPT, "prepare: disk %s: backing chain of \"%s\" is broken",
                                         imgs[i].target, imgs[i].before);
        }
        return 0;
}

int lv_revert_cut_images(void *be, const char *vm, const char *txid, const char *legacy, struct hv_image *ret,
                         size_t *ret_n, lserr *err)
{
        struct lv_xml_disk pd[HV_MAX_DISKS];
        struct hv_domain dom;
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        int r = lv_conn_domain(be, vm, "prepare", &d, err);

        if (r < 0)
                return r;
        r = lv_xml_describe(d, &dom, pd, err);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < dom.n_disks; i++) {
                char layer[HV_PATH_MAX], child[HV_PATH_MAX];
                memset(&ret[i], 0, sizeof(ret[i]));
                r = lv_chain_find_cut_layer(pd[i].path, txid, legacy, layer, child, ret[i].before, err);
                if (r < 0)
                        return r;
                if (r == 0)
                        return lserr_set(err, LS_EIMAGE, "prepare: disk %s: no layer of cut %s in its chain",
                                         pd[i].target, txid);
                if (!ret[i].before[0])
                        return lserr_set(err, LS_EIMAGE, "prepare: disk %s: \"%s\" has no backing image", pd[i].target,
                                         layer);
                snprintf(ret[i].target, HV_TARGET_MAX, "%s", pd[i].target);
                snprintf(ret[i].branch, HV_PATH_MAX, "%s", pd[i].path);
        }
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
                                        lv_image_format(imgs[i].before), imgs[i].after, NULL};
                r = lv_image_run(create, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int lv_revert_point_disks(void *be, const char *vm, struct hv_image *imgs, size_t n, const char *tag, lserr *err)
{
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        int state = 0, reason = 0, r = lv_conn_domain(be, vm, "switch", &d, err);

        if (r < 0)
                return r;
        if (virDomainGetState(d, &state, &reason, 0) < 0 || state != VIR_DOMAIN_SHUTOFF)
                return lserr_set(err, LS_EHV, "switch: domain is not shut off");
        r = make_overlays(vm, imgs, n, tag, err);
        if (r < 0)
                return r;
        return lv_xml_redefine_disks(d, imgs, n, 1, err);
}
