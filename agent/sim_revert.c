/* sim_revert: a simulated revert: find a cut's images in the backing chains,
 * check them ("corrupt VM" makes them fail), point the stopped domain's disks
 * at them or at a tagged overlay on them. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "imgfile.h"
#include "sim_chain.h"
#include "sim_revert.h"
#include "sim_state.h"

int sim_revert_check_images(void *be, const char *vm, const struct hv_image *imgs, size_t n, lserr *err)
{
        _cleanup_simcfg_ struct simcfg c = {0};
        struct simdom d;
        int r = sim_config_enter(be, &c, &d, vm, "check_images", err);

        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                if (access(imgs[i].before, F_OK) < 0)
                        return lserr_set(err, LS_EIMAGE, "prepare: disk %s: image \"%s\" is missing", imgs[i].target,
                                         imgs[i].before);
                if (sim_config_has_line(&c, "corrupt", vm, NULL))
                        return lserr_set(err, LS_ECORRUPT, "prepare: disk %s: image \"%s\" fails its check",
                                         imgs[i].target, imgs[i].before);
        }
        return 0;
}

static const char *hint_for(const struct hv_cut_where *w, const char *target)
{
        for (size_t k = 0; w && k < w->n_hints; k++)
                if (!strcmp(w->hints[k].target, target))
                        return w->hints[k].before;
        return NULL;
}

/* Disk i's cut image from the chains the simulated host knows (see
 * hv_cut_images): the cut's layer in its chain or a recorded branch's, else
 * the hint when one of those chains holds it; NULL when none does. */
static const char *cut_image(const struct simstate *st, const struct simdom *d, unsigned i, const char *txid,
                             const char *legacy, const struct hv_cut_where *w)
{
        const char *child, *hint = hint_for(w, d->disks[i]);
        int k = sim_chain_layer_of(st, i, txid, legacy, &child);

        for (size_t b = 0; k < 0 && w && b < w->n_branches; b++)
                if (!strcmp(w->branches[b].target, d->disks[i]))
                        k = sim_chain_layer_from(st, w->branches[b].branch, txid, legacy, &child);
        if (k >= 0)
                return st->backing[k];
        if (!hint)
                return NULL;
        if (sim_chain_holds(st, st->cur[i], hint))
                return hint;
        for (size_t b = 0; w && b < w->n_branches; b++)
                if (!strcmp(w->branches[b].target, d->disks[i]) && sim_chain_holds(st, w->branches[b].branch, hint))
                        return hint;
        return NULL;
}

int sim_revert_cut_images(void *be, const char *vm, const char *txid, const char *legacy,
                          const struct hv_cut_where *w, struct hv_image *ret, size_t *ret_n, lserr *err)
{
        _cleanup_simcfg_ struct simcfg c = {0};
        struct simdom d;
        struct simstate st;
        int r = sim_config_enter(be, &c, &d, vm, "cut_images", err);

        if (r < 0)
                return r;
        sim_state_peek(&c, vm, &d, &st);
        for (unsigned i = 0; i < d.n_disks; i++) {
                const char *img = cut_image(&st, &d, i, txid, legacy, w);
                if (!img)
                        return lserr_set(err, LS_EIMAGE,
                                         "prepare: disk %s: no layer of cut %s in its chain or in a recorded branch%s",
                                         d.disks[i], txid,
                                         hint_for(w, d.disks[i]) ? ", and the catalog's image is in neither" : "");
                memset(&ret[i], 0, sizeof(ret[i]));
                snprintf(ret[i].target, HV_TARGET_MAX, "%s", d.disks[i]);
                snprintf(ret[i].before, HV_PATH_MAX, "%s", img);
                snprintf(ret[i].branch, HV_PATH_MAX, "%s", st.cur[i]);
                /* The simulated host has no formats: every file reads as qcow2. */
                snprintf(ret[i].format, sizeof(ret[i].format), "qcow2");
                snprintf(ret[i].branch_format, sizeof(ret[i].branch_format), "qcow2");
        }
        *ret_n = d.n_disks;
        return sim_revert_check_images(be, vm, ret, d.n_disks, err);
}

/* Makes img->after, the overlay tagged tag on img->before, and links it. */
static int make_overlay(struct simstate *st, const char *vm, struct hv_image *img, const char *tag, lserr *err)
{
        int r;

        if (imgfile_overlay(img->before, vm, img->target, tag, img->after, HV_PATH_MAX) < 0)
                return lserr_set(err, LS_EDISK, "switch: disk %s: overlay path too long", img->target);
        if (access(img->after, F_OK) < 0) {
                r = sim_state_touch(img->after, err);
                if (r < 0)
                        return r;
        }
        if (sim_chain_find(st, img->after) < 0 && sim_chain_add(st, img->after, img->before) < 0)
                return lserr_set(err, LS_EDISK, "switch: the simulated chain is full");
        return 0;
}

/* With tag, each disk gets a new overlay on its image; without, the image. */
int sim_revert_point_disks(void *be, const char *vm, struct hv_image *imgs, size_t n, const char *tag, lserr *err)
{
        _cleanup_simcfg_ struct simcfg c = {0};
        _cleanup_close_ int fd = -1;
        struct simdom d;
        struct simstate st;
        int r = sim_config_enter(be, &c, &d, vm, "point_disks", err);

        if (r < 0)
                return r;
        fd = sim_state_lock(&c);
        sim_state_read(&c, vm, &d, &st);
        if (st.state != HV_SHUTOFF)
                return lserr_set(err, LS_EHV, "switch: domain is not shut off");
        for (size_t k = 0; k < n; k++) {
                for (unsigned i = 0; i < d.n_disks; i++) {
                        if (strcmp(d.disks[i], imgs[k].target))
                                continue;
                        if (tag)
                                r = make_overlay(&st, vm, &imgs[k], tag, err);
                        else
                                snprintf(imgs[k].after, HV_PATH_MAX, "%s", imgs[k].before);
                        if (r < 0)
                                return r;
                        snprintf(st.cur[i], HV_PATH_MAX, "%s", imgs[k].after);
                }
        }
        return sim_state_write(&c, vm, &d, &st, err);
}
