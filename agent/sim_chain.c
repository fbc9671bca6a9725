/* sim_chain: the backing chains of a simulated domain's disks, as overlay ->
 * backing links in its simstate: find, add and drop a link, walk a chain. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "imgfile.h"
#include "sim_chain.h"

int sim_chain_find(const struct simstate *st, const char *path)
{
        for (unsigned k = 0; k < st->n_links; k++)
                if (!strcmp(st->link[k], path))
                        return (int)k;
        return -1;
}

int sim_chain_add(struct simstate *st, const char *overlay, const char *backing)
{
        if (st->n_links >= SIM_MAX_LINKS)
                return -E2BIG;
        snprintf(st->link[st->n_links], HV_PATH_MAX, "%s", overlay);
        snprintf(st->backing[st->n_links++], HV_PATH_MAX, "%s", backing);
        return 0;
}

void sim_chain_drop(struct simstate *st, const char *path)
{
        int k = sim_chain_find(st, path);

        if (k < 0)
                return;
        st->n_links--;
        if ((unsigned)k != st->n_links) {
                memcpy(st->link[k], st->link[st->n_links], HV_PATH_MAX);
                memcpy(st->backing[k], st->backing[st->n_links], HV_PATH_MAX);
        }
}

/* Walks the chain from top down to the layer of cut `cut`: its link index,
 * and in *ret_child the layer above it (NULL when it is top); -1 when it is
 * not there. */
static int walk_to_layer(const struct simstate *st, const char *top, const char *cut, int legacy,
                         const char **ret_child)
{
        const char *layer = top;
        int k;

        *ret_child = NULL;
        for (unsigned depth = 0; (k = sim_chain_find(st, layer)) >= 0 && depth <= SIM_MAX_LINKS; depth++) {
                char old[HV_PATH_MAX];
                /* An older cut's overlay is exactly "<its base>.<name>.qcow2". */
                if (legacy ? imgfile_legacy(st->backing[k], cut, "qcow2", old, sizeof(old)) == 0 && !strcmp(old, layer)
                           : imgfile_is_layer(layer, cut))
                        return k;
                *ret_child = layer;
                layer = st->backing[k];
        }
        return -1;
}

int sim_chain_layer_from(const struct simstate *st, const char *top, const char *txid, const char *legacy,
                         const char **ret_child)
{
        int k = walk_to_layer(st, top, txid, 0, ret_child);

        if (k < 0 && legacy && legacy[0] && strcmp(legacy, txid))
                k = walk_to_layer(st, top, legacy, 1, ret_child);
        return k;
}

int sim_chain_layer_of(const struct simstate *st, unsigned i, const char *txid, const char *legacy,
                       const char **ret_child)
{
        return sim_chain_layer_from(st, st->cur[i], txid, legacy, ret_child);
}

int sim_chain_holds(const struct simstate *st, const char *top, const char *image)
{
        const char *cur = top;

        for (unsigned depth = 0; depth <= SIM_MAX_LINKS; depth++) {
                int k;
                if (!strcmp(cur, image))
                        return 1;
                k = sim_chain_find(st, cur);
                if (k < 0)
                        return 0;
                cur = st->backing[k];
        }
        return 0;
}

int sim_chain_layer_above(const struct simstate *st, unsigned i, const char *image, const char **ret_child)
{
        const char *layer = st->cur[i];
        int k;

        *ret_child = NULL;
        while ((k = sim_chain_find(st, layer)) >= 0) {
                if (!strcmp(st->backing[k], image))
                        return k;
                *ret_child = layer;
                layer = st->backing[k];
        }
        return -1;
}

int sim_chain_backing(void *ctx, const char *path, char *out, lserr *err)
{
        const struct simstate *st = ctx;
        int k = sim_chain_find(st, path);

        (void)err;
        if (access(path, F_OK) < 0)
                return -ENOENT;
        snprintf(out, HV_PATH_MAX, "%s", k >= 0 ? st->backing[k] : "");
        return 0;
}
