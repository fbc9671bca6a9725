/* lv_chain: backing chains walked file by file, read from the images'
 * headers (of images known to be qcow2 only) so the walk works whether or not
 * the domain runs. */
#include <stdio.h>
#include <string.h>

#include "imgfile.h"
#include "lv_chain.h"
#include "lv_image.h"

#define WALK_MAX 256

/* Length of file's directory part, the slash excluded. */
static size_t dir_len(const char *file)
{
        const char *slash = strrchr(file, '/');

        return slash ? (size_t)(slash - file) : 0;
}

static int dirs_have(const struct lv_chain_dirs *ds, const char *file)
{
        size_t dl = dir_len(file);

        for (size_t i = 0; i < ds->n; i++)
                if (strlen(ds->d[i]) == dl && !memcmp(ds->d[i], file, dl))
                        return 1;
        return 0;
}

int lv_chain_dirs_add(struct lv_chain_dirs *ds, const char *file, lserr *err)
{
        if (!file[0] || dirs_have(ds, file))
                return 0;
        if (ds->n == LV_CHAIN_DIRS)
                return lserr_set(err, LS_EHV, "images in more than %d directories", LV_CHAIN_DIRS);
        snprintf(ds->d[ds->n++], HV_PATH_MAX, "%.*s", (int)dir_len(file), file);
        return 0;
}

int lv_chain_next(const struct lv_chain_dirs *ds, const char *path, const char *fmt, char *next, char *next_fmt,
                  lserr *err)
{
        int r = lv_image_backing(path, fmt, next, HV_PATH_MAX, next_fmt, 16, err);

        if (r < 0 || !next[0] || dirs_have(ds, next))
                return r;
        r = lserr_set(err, LS_EIMAGE, "\"%s\": backing file \"%s\" is outside the VM's image directories: refused", path,
                      next);
        next[0] = next_fmt[0] = '\0';
        return r;
}

/* Is `layer` (backed by base) the layer of cut `cut`? */
static int is_cut_layer(const char *layer, const char *base, const char *cut, int legacy)
{
        char old[HV_PATH_MAX];

        /* An older cut's overlay is exactly "<its base>.<name>.qcow2": a name
         * may repeat, that whole path does not. */
        if (legacy)
                return imgfile_legacy(base, cut, "qcow2", old, sizeof(old)) == 0 && !strcmp(old, layer);
        return imgfile_is_layer(layer, cut);
}

/* The walk from top to the layer of cut `cut`: named by its txid, or (legacy)
 * by an older cut's name. */
static int walk_to_layer(const struct lv_chain_dirs *ds, const char *top, const char *top_fmt, const char *cut,
                         int legacy, struct lv_chain_hit *h, lserr *err)
{
        char fmt[16];

        snprintf(h->layer, sizeof(h->layer), "%s", top);
        snprintf(fmt, sizeof(fmt), "%s", top_fmt);
        h->child[0] = '\0';
        for (int depth = 0;; depth++) {
                int r = lv_chain_next(ds, h->layer, fmt, h->base, h->base_fmt, err);
                if (r < 0)
                        return r;
                if (is_cut_layer(h->layer, h->base, cut, legacy))
                        return 1;
                if (!h->base[0] || depth > WALK_MAX)
                        return 0;
                snprintf(h->child, HV_PATH_MAX, "%s", h->layer);
                snprintf(h->layer, HV_PATH_MAX, "%s", h->base);
                snprintf(fmt, sizeof(fmt), "%s", h->base_fmt);
        }
}

int lv_chain_find_cut_layer(const struct lv_chain_dirs *ds, const char *top, const char *top_fmt, const char *txid,
                            const char *legacy, struct lv_chain_hit *hit, lserr *err)
{
        int r = walk_to_layer(ds, top, top_fmt, txid, 0, hit, err);

        if (r == 0 && legacy && legacy[0] && strcmp(legacy, txid))
                r = walk_to_layer(ds, top, top_fmt, legacy, 1, hit, err);
        return r;
}

int lv_chain_walk_to_image(const struct lv_chain_dirs *ds, const char *top, const char *top_fmt, const char *image,
                           struct lv_chain_hit *h, lserr *err)
{
        char cur[HV_PATH_MAX], fmt[16], next[HV_PATH_MAX], next_fmt[16];

        h->layer[0] = h->child[0] = '\0';
        snprintf(cur, sizeof(cur), "%s", top);
        snprintf(fmt, sizeof(fmt), "%s", top_fmt);
        for (int depth = 0; cur[0] && depth <= WALK_MAX; depth++) {
                int r;
                if (!strcmp(cur, image)) {
                        if (!h->layer[0])
                                return 0;
                        snprintf(h->base, HV_PATH_MAX, "%s", image);
                        snprintf(h->base_fmt, sizeof(h->base_fmt), "%s", fmt);
                        return 1;
                }
                r = lv_chain_next(ds, cur, fmt, next, next_fmt, err);
                if (r < 0)
                        return r;
                snprintf(h->child, HV_PATH_MAX, "%s", h->layer);
                snprintf(h->layer, HV_PATH_MAX, "%s", cur);
                snprintf(cur, sizeof(cur), "%s", next);
                snprintf(fmt, sizeof(fmt), "%s", next_fmt);
        }
        return 0;
}

int lv_chain_has(const struct lv_chain_dirs *ds, const char *top, const char *top_fmt, const char *image, char *fmt,
                 lserr *err)
{
        struct lv_chain_hit h;
        int r;

        if (!strcmp(top, image)) {
                snprintf(fmt, 16, "%s", top_fmt);
                return 1;
        }
        r = lv_chain_walk_to_image(ds, top, top_fmt, image, &h, err);
        if (r == 1)
                snprintf(fmt, 16, "%s", h.base_fmt);
        return r;
}

int lv_chain_dirs_of(struct lv_chain_dirs *ds, const struct hv_domain *dom, lserr *err)
{
        int r = 0;

        ds->n = 0;
        for (unsigned i = 0; r == 0 && i < dom->n_disks; i++) {
                r = lv_chain_dirs_add(ds, dom->disks[i].path, err);
                if (r == 0)
                        r = lv_chain_dirs_add(ds, dom->disks[i].backing, err);
        }
        return r;
}
