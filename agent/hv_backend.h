/* hv_backend: what a hypervisor backend implements; only hv.c and the backends
 * include this. The first argument of every op is the backend's own state. */
#pragma once

#include "hv.h"

struct hv_ops {
        const char *name;
        int (*open)(const struct cfg_agent *cfg, void **ret, lserr *err);
        void (*close)(void *be);
        int (*list)(void *be, struct hv_domain **ret, size_t *ret_n, lserr *err);
        int (*lookup)(void *be, const char *vm, struct hv_domain *ret, lserr *err);
        int (*check)(void *be, const char *vm, const char *txid, unsigned flags, lserr *err);
        int (*ga_ping)(void *be, const char *vm, int timeout_s, lserr *err);
        int (*freeze)(void *be, const char *vm, lserr *err);
        int (*thaw)(void *be, const char *vm, lserr *err);
        int (*suspend)(void *be, const char *vm, lserr *err);
        int (*resume)(void *be, const char *vm, lserr *err);
        int (*snapshot)(void *be, const char *vm, const char *txid, int with_memory, struct hv_image *ret,
                        size_t *ret_n, lserr *err);
        int (*discard)(void *be, const char *vm, const char *txid, const struct hv_image *imgs, size_t n,
                       lserr *err);
        int (*cut_images)(void *be, const char *vm, const char *txid, const char *legacy,
                          const struct hv_cut_where *w, struct hv_image *ret, size_t *ret_n, lserr *err);
        int (*check_images)(void *be, const char *vm, const struct hv_image *imgs, size_t n, lserr *err);
        int (*stop)(void *be, const char *vm, unsigned timeout_ms, lserr *err);
        int (*start)(void *be, const char *vm, lserr *err);
        int (*point_disks)(void *be, const char *vm, struct hv_image *imgs, size_t n, const char *tag, lserr *err);
        int (*restore)(void *be, const char *vm, const char *memfile, lserr *err);
        int (*guest_run)(void *be, const char *vm, const char *name, char *const *argv, unsigned timeout_ms,
                         lserr *err);
        int (*drop_branch)(void *be, const char *vm, const struct hv_image *branch, size_t n, const char *const *keep,
                           size_t n_keep, struct hv_removed **ret, size_t *ret_n, lserr *err);
        int (*delete_cut)(void *be, const char *vm, const char *txid, const char *legacy,
                          const struct hv_delete_hints *hints, struct hv_image *ret, size_t *ret_n, lserr *err);
};

/* What the libvirt backend's shared object exports (hv_module.c loads it):
 * the version and the size of struct hv_ops it was built with, so an agent
 * refuses a module of another build. */
struct hv_module {
        const char *version;
        size_t ops_size;
        const struct hv_ops *ops;
};

extern const struct hv_ops hv_libvirt_ops;
extern const struct hv_ops hv_sim_ops;
