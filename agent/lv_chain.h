/* lv_chain: a disk's backing chain walked from its top through the qcow2
 * headers, to find the layer of a cut or the layer sitting on an image. */
#pragma once

#include "lserr.h"

/* Walks a disk's chain down from its active image top to the layer of cut
 * txid (imgfile_is_layer); for a cut made before names stopped growing, the
 * layer named for its name `legacy` ("<image>.<name>.qcow2"). Returns 1 with
 * that layer, the layer above it (child, "" when it is top) and the image
 * below it (base, "" when it has none); 0 when no layer of the chain belongs
 * to the cut. Each path is HV_PATH_MAX bytes. */
int lv_chain_find_cut_layer(const char *top, const char *txid, const char *legacy, char *layer, char *child,
                            char *base, lserr *err);

/* Walks a disk's chain from top to the file `image`: 1 with the layer right
 * above it (layer), the one above that (child, "" when layer is top) and image
 * itself (base); 0 when image is not in the chain or nothing sits on it. Each
 * path is HV_PATH_MAX bytes. */
int lv_chain_walk_to_image(const char *top, const char *image, char *layer, char *child, char *base, lserr *err);
