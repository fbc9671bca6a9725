/* sim_snap: simulated external snapshots. The overlays are real (empty) files
 * beside the images, so the file checks the real backend makes are real here. */
#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "imgfile.h"
#include "fsutil.h"
#include "sim_chain.h"
#include "sim_snap.h"
#include "sim_state.h"

/* Overlays go beside the images: their directory exists before the first one. */
static int make_img_dir(const struct simcfg *c, lserr *err)
{
        char dir[HV_PATH_MAX + 8];

        snprintf(dir, sizeof(dir), "%s/img", c->state_dir);
        return fsutil_mkdir_p(dir, 0700, err);
}

/* The overlay each disk would get: its path fits and the file can be made. */
static int check_overlays(const struct sim *s, const char *vm, const char *txid, const struct simdom *d,
                          const struct simstate *st, lserr *err)
{
        int r = 0;

        for (unsigned i = 0; r == 0 && i < d->n_disks; i++) {
                char overlay[HV_PATH_MAX];
                lserr e2 = {0};
                if (imgfile_overlay(st->cur[i], vm, d->disks[i], txid, overlay, sizeof(overlay)) < 0)
                        r = lserr_set(err, LS_EDISK, "validate: disk %s: overlay path too long", d->disks[i]);
                else if ((r = imgfile_check_new("overlay", overlay, HV_PATH_MAX, s->min_free, &e2)) < 0)
                        r = lserr_set(err, r, "validate: disk %s: %s", d->disks[i], e2.msg);
        }
        return r;
}

int sim_snap_check(void *be, const char *vm, const char *txid, unsigned flags, lserr *err)
{
        _cleanup_simcfg_ struct simcfg c = {0};
        struct simdom d;
        struct simstate st;
        int r = sim_config_enter(be, &c, &d, vm, "check", err);

        if (r < 0)
                return r;
        sim_state_peek(&c, vm, &d, &st);
        r = make_img_dir(&c, err);
        if (r < 0)
                return r;
        if (st.state == HV_PAUSED && (flags & HV_CHECK_QUIESCE))
                return lserr_set(err, LS_EPAUSED, "check: domain is paused, fsfreeze cannot run in it");
        if (st.state != HV_RUNNING && st.state != HV_PAUSED)
                return lserr_set(err, LS_ENOTRUNNING, "check: domain is not running");
        if (sim_config_has_line(&c, "nospace", vm, NULL))
                return lserr_set(err, LS_ENOSPACE, "check: disk %s: no space for the overlay", d.disks[0]);
        return check_overlays(be, vm, txid, &d, &st, err);
}

/* Creates each disk's overlay of cut txid, filling ret. */
static int make_overlays(const char *vm, const char *txid, const struct simdom *d, const struct simstate *st,
                         struct hv_image *ret, lserr *err)
{
        int r = 0;

        for (unsigned i = 0; r == 0 && i < d->n_disks; i++) {
                /* The base image exists as a file so overlay checks are real. */
                if (access(st->cur[i], F_OK) < 0)
                        r = sim_state_touch(st->cur[i], err);
                snprintf(ret[i].target, HV_TARGET_MAX, "%s", d->disks[i]);
                snprintf(ret[i].before, HV_PATH_MAX, "%s", st->cur[i]);
                if (imgfile_overlay(st->cur[i], vm, d->disks[i], txid, ret[i].after, HV_PATH_MAX) < 0)
                        r = lserr_set(err, LS_EDISK, "snapshot: disk %s: overlay path too long", d->disks[i]);
                if (r == 0)
                        r = sim_state_touch(ret[i].after, err);
        }
        return r;
}

int sim_snap_create(void *be, const char *vm, const char *txid, int with_memory, struct hv_image *ret, size_t *ret_n,
                    lserr *err)
{
        _cleanup_simcfg_ struct simcfg c = {0};
        _cleanup_close_ int fd = -1;
        struct simdom d;
        struct simstate st;
        int r = sim_config_enter(be, &c, &d, vm, "snapshot", err);

        if (r < 0)
                return r;
        r = make_img_dir(&c, err);
        fd = sim_state_lock(&c);
        sim_state_read(&c, vm, &d, &st);
        /* As libvirt: a disk-only external snapshot of a shut-off domain is
         * taken offline, a memory state needs a running one. */
        if (r == 0 && with_memory && st.state != HV_RUNNING && st.state != HV_PAUSED)
                r = lserr_set(err, LS_ENOTRUNNING, "snapshot: domain is not running");
        if (r == 0)
                r = make_overlays(vm, txid, &d, &st, ret, err);
        if (r == 0 && st.n_links + d.n_disks > SIM_MAX_LINKS)
                r = lserr_set(err, LS_EDISK, "snapshot: the simulated chain is full");
        if (r == 0 && with_memory) {
                char mem[HV_PATH_MAX];
                r = imgfile_memory(ret[0].before, vm, txid, mem, sizeof(mem)) < 0
                            ? lserr_set(err, LS_EDISK, "snapshot: memory state path too long")
                            : sim_state_touch(mem, err);
        }
        if (r < 0)
                return r;
        for (unsigned i = 0; i < d.n_disks; i++) {
                snprintf(st.cur[i], HV_PATH_MAX, "%s", ret[i].after);
                r = sim_chain_add(&st, ret[i].after, ret[i].before);
                assert(r == 0); /* room checked above */
        }
        *ret_n = d.n_disks;
        return sim_state_write(&c, vm, &d, &st, err);
}

int sim_snap_discard(void *be, const char *vm, const char *txid, const struct hv_image *imgs, size_t n, lserr *err)
{
        _cleanup_simcfg_ struct simcfg c = {0};
        _cleanup_close_ int fd = -1;
        struct simdom d;
        struct simstate st;
        int r = sim_config_enter(be, &c, &d, vm, "discard", err);

        if (r < 0)
                return r;
        if (n) {
                char mem[HV_PATH_MAX];
                if (imgfile_memory(imgs[0].before, vm, txid, mem, sizeof(mem)) == 0)
                        unlink(mem);
        }
        fd = sim_state_lock(&c);
        sim_state_read(&c, vm, &d, &st);
        for (size_t k = 0; k < n; k++)
                for (unsigned i = 0; i < d.n_disks; i++)
                        if (!strcmp(d.disks[i], imgs[k].target) && !strcmp(st.cur[i], imgs[k].after))
                                snprintf(st.cur[i], HV_PATH_MAX, "%s", imgs[k].before);
        for (size_t k = 0; k < n; k++)
                sim_chain_drop(&st, imgs[k].after);
        r = sim_state_write(&c, vm, &d, &st, err);
        for (size_t k = 0; r == 0 && k < n; k++)
                if (unlink(imgs[k].after) < 0 && errno != ENOENT)
                        r = lserr_set(err, -errno, "discard: remove \"%s\": %m", imgs[k].after);
        return r;
}
