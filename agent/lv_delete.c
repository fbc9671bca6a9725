/* lv_delete: a committed cut deleted (its layer on every disk merged into
 * the image below, then removed with its metadata) and a pre-revert branch
 * dropped (the files only it holds removed, bottom up). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "branch.h"
#include "cleanup.h"
#include "imgfile.h"
#include "lv_chain.h"
#include "lv_commit.h"
#include "lv_conn.h"
#include "lv_delete.h"
#include "lv_err.h"
#include "lv_image.h"
#include "lv_xml.h"

/* One disk of a delete: the cut's layer merged away, noted in ret[*merged]. */
static int delete_disk(virDomainPtr d, const char *vm, int running, const struct lv_chain_dirs *ds,
                       const struct lv_xml_disk *pd, const char *txid, const char *legacy, const char *hint,
                       const struct hv_delete_hints *hints, struct hv_image *ret, size_t *merged, lserr *err)
{
        struct lv_chain_hit h;
        int r = lv_chain_find_cut_layer(ds, pd->path, pd->format, txid, legacy, &h, err);

        /* The cut's own layer left the chain with a pre-revert branch; a
         * revert's overlay sits on its image instead: that is what goes, and
         * nothing else (above that image may be another cut's data). The
         * hint only picks a file of the chain: the paths used are the walk's. */
        if (r == 0 && hint && hints) {
                r = lv_chain_walk_to_image(ds, pd->path, pd->format, hint, &h, err);
                if (r == 1 && !imgfile_is_overlay_of(h.layer, vm, pd->target, hints->reverts, hints->n_reverts))
                        r = 0;
        }

        if (r <= 0)
                return r; /* 0: not in this disk's chain, already deleted */
        if (!h.base[0])
                return lserr_set(err, LS_EHV, "delete: disk %s: \"%s\" has no backing image", pd->target, h.layer);
        r = lv_commit_layer(d, running, pd, &h, err);
        if (r < 0)
                return r;
        if (unlink(h.layer) < 0 && errno != ENOENT)
                return lserr_set(err, -errno, "delete: disk %s: remove \"%s\": %m", pd->target, h.layer);
        assert(*merged < HV_MAX_DISKS); /* one per disk */
        snprintf(ret[*merged].target, HV_TARGET_MAX, "%s", pd->target);
        snprintf(ret[*merged].before, HV_PATH_MAX, "%s", h.base);
        snprintf(ret[*merged].after, HV_PATH_MAX, "%s", h.layer);
        (*merged)++;
        return 0;
}

/* The coordinator's record of disk target's cut image, or NULL. */
static const char *hint_for(const struct hv_delete_hints *hints, const char *target)
{
        const char *hint = NULL;

        for (size_t k = 0; hints && k < hints->n_images; k++)
                if (!strcmp(hints->images[k].target, target))
                        hint = hints->images[k].before;
        return hint;
}

int lv_delete_cut(void *be, const char *vm, const char *txid, const char *legacy, const struct hv_delete_hints *hints,
                  struct hv_image *ret, size_t *ret_n, lserr *err)
{
        struct lv_xml_disk pd[HV_MAX_DISKS];
        struct hv_domain dom;
        _cleanup_free_ struct lv_chain_dirs *ds = calloc(1, sizeof(*ds));
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        _cleanup_(lv_snapshot_freep) virDomainSnapshotPtr s = NULL;
        size_t merged = 0;
        int r = ds ? lv_conn_domain(be, vm, "delete", &d, err) : -ENOMEM;

        if (r < 0)
                return r;
        r = lv_xml_describe(d, &dom, pd, err);
        if (r == 0)
                r = lv_chain_dirs_of(ds, &dom, err);
        for (unsigned i = 0; r == 0 && i < dom.n_disks; i++)
                r = delete_disk(d, vm, dom.state == HV_RUNNING || dom.state == HV_PAUSED, ds, &pd[i], txid, legacy,
                                hint_for(hints, pd[i].target), hints, ret, &merged, err);
        /* The metadata is named for the txid; an older cut's, for its name,
         * looked for only when there is none of the first kind. */
        s = r == 0 ? virDomainSnapshotLookupByName(d, txid, 0) : NULL;
        if (r == 0 && !s && legacy && legacy[0])
                s = virDomainSnapshotLookupByName(d, legacy, 0);
        if (s && virDomainSnapshotDelete(s, VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY) < 0)
                r = lv_err_fail(err, "delete: drop snapshot metadata");
        /* Also on failure: what was merged must reach the catalog (repath). */
        *ret_n = merged;
        return r;
}

/* What a branch walk knows: each file's format as a trusted source gave it
 * (the domain XML for the disks' files, the header above for the rest). */
struct branch_ctx {
        const char *vm, *target;
        const struct lv_chain_dirs *ds;
        char (*path)[HV_PATH_MAX];
        char (*fmt)[16];
        size_t n, cap;
};

static void branch_ctx_free(struct branch_ctx *b)
{
        free(b->path);
        free(b->fmt);
}

static int note_format(struct branch_ctx *b, const char *path, const char *fmt)
{
        if (!path[0] || !fmt[0])
                return 0;
        if (b->n == b->cap) {
                size_t cap = b->cap ? b->cap * 2 : 32;
                void *p = realloc(b->path, cap * sizeof(*b->path)), *f;
                if (!p)
                        return -ENOMEM;
                b->path = p;
                f = realloc(b->fmt, cap * sizeof(*b->fmt));
                if (!f)
                        return -ENOMEM;
                b->fmt = f;
                b->cap = cap;
        }
        snprintf(b->path[b->n], HV_PATH_MAX, "%s", path);
        snprintf(b->fmt[b->n++], 16, "%s", fmt);
        return 0;
}

/* Only overlays lockstep named (cuts' and reverts') are a branch's own. */
static int lv_ours(void *ctx, const char *path)
{
        const struct branch_ctx *b = ctx;
        char id[LS_NAME_MAX + 1];

        return imgfile_layer_txid(path, b->vm, b->target, id, sizeof(id)) == 0;
}

/* A file of unknown format is an overlay lockstep made (qcow2) or is not
 * read at all: its chain ends there. */
static int lv_backing(void *ctx, const char *path, char *out, lserr *err)
{
        struct branch_ctx *b = ctx;
        const char *fmt = lv_ours(ctx, path) ? "qcow2" : "";
        char next_fmt[16];
        int r;

        for (size_t i = b->n; i-- > 0;)
                if (!strcmp(b->path[i], path)) {
                        fmt = b->fmt[i];
                        break;
                }
        if (access(path, F_OK) < 0)
                return -ENOENT;
        r = lv_chain_next(b->ds, path, fmt, out, next_fmt, err);
        if (r == 0)
                r = note_format(b, out, next_fmt);
        return r;
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

/* Removes own[] (the branch's own files of disk target, top first) bottom up,
 * with the memory state and metadata of each cut whose image went too. */
static int drop_files(virDomainPtr d, const char *vm, const char *target, char (*own)[HV_PATH_MAX], size_t n_own,
                      struct hv_removed **out, size_t *n_out, lserr *err)
{
        /* Bottom up: the top goes last, so a drop cut short is found again
         * from the top and finished. */
        for (size_t k = n_own; k-- > 0;) {
                char cut[LS_NAME_MAX + 1], mem[HV_PATH_MAX];
                int r;
                if (unlink(own[k]) < 0 && errno != ENOENT)
                        return lserr_set(err, -errno, "drop branch: disk %s: remove \"%s\": %m", target, own[k]);
                r = note_removed(out, n_out, target, own[k]);
                if (r < 0)
                        return r;
                /* The cut this file is the overlay of lived on the file below
                 * it: when that went too, so do its memory state and metadata. */
                if (k + 1 == n_own || imgfile_layer_txid(own[k], vm, target, cut, sizeof(cut)) < 0)
                        continue;
                if (imgfile_memory(own[k], vm, cut, mem, sizeof(mem)) == 0)
                        unlink(mem);
                _cleanup_(lv_snapshot_freep) virDomainSnapshotPtr s = virDomainSnapshotLookupByName(d, cut, 0);
                if (s)
                        virDomainSnapshotDelete(s, VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY);
        }
        return 0;
}

/* Every disk's branch dropped, keeping what roots' chains hold. */
static int drop_disks(virDomainPtr d, const char *vm, const struct hv_image *branch, size_t n,
                      const char *const *keep, size_t n_keep, struct hv_removed **out, size_t *n_out, lserr *err)
{
        struct lv_xml_disk pd[HV_MAX_DISKS];
        struct hv_domain dom;
        _cleanup_free_ const char **roots = NULL;
        _cleanup_free_ struct lv_chain_dirs *ds = calloc(1, sizeof(*ds));
        size_t n_roots = 0;
        int r = ds ? lv_xml_describe(d, &dom, pd, err) : -ENOMEM;

        if (r == 0)
                r = lv_chain_dirs_of(ds, &dom, err);
        for (size_t i = 0; r == 0 && i < n; i++)
                r = lv_chain_dirs_add(ds, branch[i].branch, err);
        for (size_t i = 0; r == 0 && i < n_keep; i++)
                r = lv_chain_dirs_add(ds, keep[i], err);
        if (r < 0)
                return r;
        roots = calloc(dom.n_disks + n_keep + 1, sizeof(*roots));
        if (!roots)
                return -ENOMEM;
        /* Whatever the domain runs on, and every other kept branch, stays. */
        for (unsigned i = 0; i < dom.n_disks; i++)
                roots[n_roots++] = pd[i].path;
        for (size_t i = 0; i < n_keep; i++)
                roots[n_roots++] = keep[i];
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char(*own)[HV_PATH_MAX] = NULL;
                size_t n_own = 0;
                lserr e2 = {0};
                _cleanup_(branch_ctx_free) struct branch_ctx bc = {.vm = vm, .target = branch[i].target, .ds = ds};
                for (unsigned k = 0; r == 0 && k < dom.n_disks; k++)
                        r = note_format(&bc, pd[k].path, pd[k].format);
                if (r == 0)
                        r = branch_own_files(branch[i].branch, roots, n_roots, lv_backing, lv_ours, &bc, &own, &n_own,
                                             &e2);
                if (r < 0)
                        return lserr_set(err, r, "drop branch: disk %s: %s", branch[i].target, e2.msg);
                r = drop_files(d, vm, branch[i].target, own, n_own, out, n_out, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int lv_delete_branch(void *be, const char *vm, const struct hv_image *branch, size_t n, const char *const *keep,
                     size_t n_keep, struct hv_removed **ret, size_t *ret_n, lserr *err)
{
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        struct hv_removed *out = NULL;
        size_t n_out = 0;
        int r = lv_conn_domain(be, vm, "drop branch", &d, err);

        if (r < 0)
                return r;
        r = drop_disks(d, vm, branch, n, keep, n_keep, &out, &n_out, err);
        /* Also on failure: what was removed must reach the catalog. */
        *ret = out;
        *ret_n = n_out;
        return r;
}
