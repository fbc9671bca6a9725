/* hv: picks the backend named in the config and forwards every call to it. */
#include "hv.h"

#include <stdlib.h>
#include <string.h>

#include "hv_backend.h"
#include "hv_module.h"

struct hv {
        const struct hv_ops *ops;
        void *be;
};

int hv_open(const struct cfg_agent *cfg, struct hv **ret, lserr *err)
{
        const struct hv_ops *ops;
        struct hv *hv;
        int r;

        /* The simulated backend only ever runs when asked for by name. */
        if (!cfg->backend || strcmp(cfg->backend, "libvirt") == 0) {
                r = hv_module_libvirt(&ops, err);
                if (r < 0)
                        return r;
        } else if (strcmp(cfg->backend, "sim") == 0)
                ops = &hv_sim_ops;
        else
                return lserr_set(err, -EINVAL, "backend \"%s\" is unknown (libvirt or sim)", cfg->backend);
        hv = calloc(1, sizeof(*hv));
        if (!hv)
                return -ENOMEM;
        hv->ops = ops;
        r = ops->open(cfg, &hv->be, err);
        if (r < 0) {
                free(hv);
                return r;
        }
        *ret = hv;
        return 0;
}

int hv_preload(const struct cfg_agent *cfg, lserr *err)
{
        const struct hv_ops *ops;

        if (cfg->backend && strcmp(cfg->backend, "libvirt") != 0)
                return 0;
        return hv_module_libvirt(&ops, err);
}

struct hv *hv_close(struct hv *hv)
{
        if (!hv)
                return NULL;
        hv->ops->close(hv->be);
        free(hv);
        return NULL;
}

const char *hv_backend_name(const struct hv *hv)
{
        return hv->ops->name;
}

int hv_list(struct hv *hv, struct hv_domain **ret, size_t *ret_n, lserr *err)
{
        return hv->ops->list(hv->be, ret, ret_n, err);
}

int hv_lookup(struct hv *hv, const char *vm, struct hv_domain *ret, lserr *err)
{
        return hv->ops->lookup(hv->be, vm, ret, err);
}

int hv_check(struct hv *hv, const char *vm, const char *txid, unsigned flags, lserr *err)
{
        return hv->ops->check(hv->be, vm, txid, flags, err);
}

int hv_ga_ping(struct hv *hv, const char *vm, int timeout_s, lserr *err)
{
        return hv->ops->ga_ping(hv->be, vm, timeout_s, err);
}

int hv_freeze(struct hv *hv, const char *vm, lserr *err)
{
        return hv->ops->freeze(hv->be, vm, err);
}

int hv_thaw(struct hv *hv, const char *vm, lserr *err)
{
        return hv->ops->thaw(hv->be, vm, err);
}

int hv_suspend(struct hv *hv, const char *vm, lserr *err)
{
        return hv->ops->suspend(hv->be, vm, err);
}

int hv_resume(struct hv *hv, const char *vm, lserr *err)
{
        return hv->ops->resume(hv->be, vm, err);
}

int hv_snapshot(struct hv *hv, const char *vm, const char *snap, int with_memory, struct hv_image *ret,
                size_t *ret_n, lserr *err)
{
        return hv->ops->snapshot(hv->be, vm, snap, with_memory, ret, ret_n, err);
}

int hv_discard(struct hv *hv, const char *vm, const char *snap, const struct hv_image *imgs, size_t n, lserr *err)
{
        return hv->ops->discard(hv->be, vm, snap, imgs, n, err);
}

int hv_delete_cut(struct hv *hv, const char *vm, const char *txid, const char *legacy,
                  const struct hv_delete_hints *hints, struct hv_image *ret, size_t *ret_n, lserr *err)
{
        return hv->ops->delete_cut(hv->be, vm, txid, legacy, hints, ret, ret_n, err);
}

int hv_cut_images(struct hv *hv, const char *vm, const char *txid, const char *legacy, const struct hv_cut_where *w,
                  struct hv_image *ret, size_t *ret_n, lserr *err)
{
        return hv->ops->cut_images(hv->be, vm, txid, legacy, w, ret, ret_n, err);
}

int hv_check_images(struct hv *hv, const char *vm, const struct hv_image *imgs, size_t n, lserr *err)
{
        return hv->ops->check_images(hv->be, vm, imgs, n, err);
}

int hv_stop(struct hv *hv, const char *vm, unsigned timeout_ms, lserr *err)
{
        return hv->ops->stop(hv->be, vm, timeout_ms, err);
}

int hv_start(struct hv *hv, const char *vm, lserr *err)
{
        return hv->ops->start(hv->be, vm, err);
}

int hv_point_disks(struct hv *hv, const char *vm, struct hv_image *imgs, size_t n, const char *tag, lserr *err)
{
        return hv->ops->point_disks(hv->be, vm, imgs, n, tag, err);
}

int hv_guest_run(struct hv *hv, const char *vm, const char *name, char *const *argv, unsigned timeout_ms,
                 lserr *err)
{
        return hv->ops->guest_run(hv->be, vm, name, argv, timeout_ms, err);
}

int hv_restore(struct hv *hv, const char *vm, const char *memfile, lserr *err)
{
        return hv->ops->restore(hv->be, vm, memfile, err);
}

int hv_drop_branch(struct hv *hv, const char *vm, const struct hv_image *branch, size_t n, const char *const *keep,
                   size_t n_keep, struct hv_removed **ret, size_t *ret_n, lserr *err)
{
        return hv->ops->drop_branch(hv->be, vm, branch, n, keep, n_keep, ret, ret_n, err);
}
