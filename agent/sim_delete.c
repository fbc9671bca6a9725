/* sim_delete: a simulated cut's layers merged into their backing images (the
 * link is re-pointed, the overlay file removed), and a pre-revert branch's
 * own files dropped. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "branch.h"
#include "imgfile.h"
#include "sim_chain.h"
#include "sim_delete.h"
#include "sim_state.h"

#define SIM_MAX_KEEP 64

/* The link of cut txid's layer on disk i; when no layer of the cut is left
 * but its image is, with a revert's overlay on it, that overlay's (see
 * hv_delete_cut); -1 when there is nothing to merge. */
static int cut_layer(const struct simstate *st, const struct simdom *d, unsigned i, const char *vm, const char *txid,
                     const char *legacy, const struct hv_delete_hints *hints, const char **ret_child)
{
        int k = sim_chain_layer_of(st, i, txid, legacy, ret_child);

        for (size_t h = 0; k < 0 && hints && h < hints->n_images; h++)
                if (!strcmp(hints->images[h].target, d->disks[i])) {
                        k = sim_chain_layer_above(st, i, hints->images[h].before, ret_child);
                        if (k >= 0 && !imgfile_is_overlay_of(st->link[k], vm, d->disks[i], hints->reverts,
                                                             hints->n_reverts))
                                k = -1;
                }
        return k;
}

/* Merges link k of disk i into its backing image: the layer above it (or the
 * disk, when it is the active one) is re-pointed, the overlay removed. */
static int merge_layer(struct simstate *st, const struct simdom *d, unsigned i, int k, const char *child,
                       struct hv_image *ret, lserr *err)
{
        char gone[HV_PATH_MAX], base[HV_PATH_MAX];

        snprintf(gone, sizeof(gone), "%s", st->link[k]);
        snprintf(base, sizeof(base), "%s", st->backing[k]);
        if (!child) {
                snprintf(st->cur[i], HV_PATH_MAX, "%s", base);
        } else {
                int kc = sim_chain_find(st, child);
                assert(kc >= 0); /* child was found by walking the links */
                snprintf(st->backing[kc], HV_PATH_MAX, "%s", base);
        }
        sim_chain_drop(st, gone);
        if (unlink(gone) < 0 && errno != ENOENT)
                return lserr_set(err, -errno, "delete: disk %s: remove \"%s\": %m", d->disks[i], gone);
        snprintf(ret->target, HV_TARGET_MAX, "%s", d->disks[i]);
        snprintf(ret->before, HV_PATH_MAX, "%s", base);
        snprintf(ret->after, HV_PATH_MAX, "%s", gone);
        return 0;
}

/* Already merged: nothing to do. */
int sim_delete_cut(void *be, const char *vm, const char *txid, const char *legacy,
                   const struct hv_delete_hints *hints, struct hv_image *ret, size_t *ret_n, lserr *err)
{
        _cleanup_simcfg_ struct simcfg c = {0};
        _cleanup_close_ int fd = -1;
        struct simdom d;
        struct simstate st;
        unsigned merged = 0;
        int r = sim_config_enter(be, &c, &d, vm, "delete", err);

        if (r < 0)
                return r;
        fd = sim_state_lock(&c);
        sim_state_read(&c, vm, &d, &st);
        for (unsigned i = 0; i < d.n_disks; i++) {
                const char *child;
                int k = cut_layer(&st, &d, i, vm, txid, legacy, hints, &child);
                if (k < 0)
                        continue;
                r = merge_layer(&st, &d, i, k, child, &ret[merged], err);
                if (r < 0)
                        break;
                merged++;
        }
        if (r == 0)
                r = sim_state_write(&c, vm, &d, &st, err);
        *ret_n = merged;
        return r;
}

struct sim_branch_ctx {
        const struct simstate *st;
        const char *vm, *target;
};

static int sim_ours(void *ctx, const char *path)
{
        const struct sim_branch_ctx *b = ctx;
        char id[LS_NAME_MAX + 1];

        return imgfile_layer_txid(path, b->vm, b->target, id, sizeof(id)) == 0;
}

static int sim_backing_of(void *ctx, const char *path, char *out, lserr *err)
{
        const struct sim_branch_ctx *b = ctx;

        return sim_chain_backing((void *)b->st, path, out, err);
}

/* Removes own[] (top first) bottom up, forgetting their links and listing
 * each in *out; a cut's memory state goes with its layer. */
static int remove_own(struct simstate *st, const char *vm, const char *target, char (*own)[HV_PATH_MAX],
                      size_t n_own, struct hv_removed **out, size_t *n_out, lserr *err)
{
        for (size_t k = n_own; k-- > 0;) {
                char cut[LS_NAME_MAX + 1], mem[HV_PATH_MAX];
                struct hv_removed *p;
                if (unlink(own[k]) < 0 && errno != ENOENT)
                        return lserr_set(err, -errno, "drop branch: remove \"%s\": %m", own[k]);
                sim_chain_drop(st, own[k]);
                p = realloc(*out, (*n_out + 1) * sizeof(**out));
                if (!p)
                        return -ENOMEM;
                *out = p;
                snprintf(p[*n_out].target, HV_TARGET_MAX, "%s", target);
                snprintf(p[*n_out].path, HV_PATH_MAX, "%s", own[k]);
                (*n_out)++;
                if (k + 1 < n_own && imgfile_layer_txid(own[k], vm, target, cut, sizeof(cut)) == 0 &&
                    imgfile_memory(own[k], vm, cut, mem, sizeof(mem)) == 0)
                        unlink(mem);
        }
        return 0;
}

int sim_delete_branch(void *be, const char *vm, const struct hv_image *branch, size_t n, const char *const *keep,
                      size_t n_keep, struct hv_removed **ret, size_t *ret_n, lserr *err)
{
        _cleanup_simcfg_ struct simcfg c = {0};
        _cleanup_close_ int fd = -1;
        struct simdom d;
        struct simstate st;
        struct hv_removed *out = NULL;
        const char *roots[HV_MAX_DISKS + SIM_MAX_KEEP];
        size_t n_out = 0, n_roots = 0;
        int r = sim_config_enter(be, &c, &d, vm, "drop_branch", err);

        if (r < 0)
                return r;
        if (n_keep > SIM_MAX_KEEP)
                return lserr_set(err, -E2BIG, "drop branch: more than 64 kept branches");
        fd = sim_state_lock(&c);
        sim_state_read(&c, vm, &d, &st);
        for (unsigned i = 0; i < d.n_disks; i++)
                roots[n_roots++] = st.cur[i];
        for (size_t i = 0; i < n_keep; i++)
                roots[n_roots++] = keep[i];
        for (size_t i = 0; r == 0 && i < n; i++) {
                _cleanup_free_ char(*own)[HV_PATH_MAX] = NULL;
                size_t n_own = 0;
                struct sim_branch_ctx bc = {&st, vm, branch[i].target};
                r = branch_own_files(branch[i].branch, roots, n_roots, sim_backing_of, sim_ours, &bc, &own, &n_own,
                                     err);
                if (r == 0)
                        r = remove_own(&st, vm, branch[i].target, own, n_own, &out, &n_out, err);
        }
        if (r == 0)
                r = sim_state_write(&c, vm, &d, &st, err);
        *ret = out;
        *ret_n = n_out;
        return r;
}
