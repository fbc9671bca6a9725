/* lv_chain: backing chains walked file by file, read from the images'
 * headers so the walk works whether or not the domain runs. */
#include <stdio.h>
#include <string.h>

#include "hv.h"
#include "imgfile.h"
#include "lv_chain.h"
#include "lv_image.h"

/* The walk from top to the layer of cut `cut`: named by its txid, or (legacy)
 * by an older cut's name. */
static int walk_to_layer(const char *top, const char *cut, int legacy, char *layer, char *child, char *base,
                         lserr *err)
{
        snprintf(layer, HV_PATH_MAX, "%s", top);
        child[0] = '\0';
        for (int depth = 0;; depth++) {
                char old[HV_PATH_MAX];
                int r = lv_image_backing(layer, base, HV_PATH_MAX, err);
                if (r < 0)
                        return r;
                /* An older cut's overlay is exactly "<its base>.<name>.qcow2":
                 * a name may repeat, that whole path does not. */
                if (legacy ? imgfile_legacy(base, cut, "qcow2", old, sizeof(old)) == 0 && !strcmp(old, layer)
                           : imgfile_is_layer(layer, cut))
                        return 1;
                if (!base[0] || depth > 256)
                        return 0;
                snprintf(child, HV_PATH_MAX, "%s", layer);
                snprintf(layer, HV_PATH_MAX, "%s", base);
        }
}

int lv_chain_find_cut_layer(const char *top, const char *txid, const char *legacy, char *layer, char *child,
                            char *base, lserr *err)
{
        int r = walk_to_layer(top, txid, 0, layer, child, base, err);

        if (r == 0 && legacy && legacy[0] && strcmp(legacy, txid))
                r = walk_to_layer(top, legacy, 1, layer, child, base, err);
        return r;
}

int lv_chain_walk_to_image(const char *top, const char *image, char *layer, char *child, char *base, lserr *err)
{
        char cur[HV_PATH_MAX], next[HV_PATH_MAX];

        layer[0] = child[0] = '\0';
        snprintf(cur, sizeof(cur), "%s", top);
        for (int depth = 0; cur[0] && depth <= 256; depth++) {
                int r;
                if (!strcmp(cur, image)) {
                        if (!layer[0])
                                return 0;
                        snprintf(base, HV_PATH_MAX, "%s", image);
                        return 1;
                }
                r = lv_image_backing(cur, next, sizeof(next), err);
                if (r < 0)
                        return r;
                snprintf(child, HV_PATH_MAX, "%s", layer);
                snprintf(layer, HV_PATH_MAX, "%s", cur);
                snprintf(cur, sizeof(cur), "%s", next);
        }
        return 0;
}
