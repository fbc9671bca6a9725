/* lv_chain: a disk's backing chain walked from its top through the qcow2
 * headers, to find the layer of a cut or the layer sitting on an image. The
 * top's format comes from the domain XML, each lower one's from the header
 * above it; a backing file outside the directories the agent knows for the VM
 * is refused, never followed. */
#pragma once

#include "hv.h"
#include "lserr.h"

#define LV_CHAIN_DIRS 32

/* The directories a VM's images may live in: those of its disks' files in
 * the domain XML (and libvirt's backingStore there) and of its recorded
 * branches. */
struct lv_chain_dirs {
        size_t n;
        char d[LV_CHAIN_DIRS][HV_PATH_MAX];
};

/* Adds file's directory (once; a full set is LS_EHV). */
int lv_chain_dirs_add(struct lv_chain_dirs *ds, const char *file, lserr *err);

/* What a walk found: the layer, the layer above it (child, "" when layer is
 * the top) and the image below it (base, "" when it has none) with base's
 * format. */
struct lv_chain_hit {
        char layer[HV_PATH_MAX];
        char child[HV_PATH_MAX];
        char base[HV_PATH_MAX];
        char base_fmt[16];
};

/* The backing file of path (format fmt) into next/next_fmt (HV_PATH_MAX, 16
 * bytes; "" at the bottom), refused (LS_EIMAGE) when it is not in ds. */
int lv_chain_next(const struct lv_chain_dirs *ds, const char *path, const char *fmt, char *next, char *next_fmt,
                  lserr *err);

/* Walks a disk's chain down from its active image top (format top_fmt) to the
 * layer of cut txid (imgfile_is_layer); for a cut made before names stopped
 * growing, the layer named for its name `legacy` ("<image>.<name>.qcow2").
 * Returns 1 with hit filled; 0 when no layer of the chain belongs to the cut. */
int lv_chain_find_cut_layer(const struct lv_chain_dirs *ds, const char *top, const char *top_fmt, const char *txid,
                            const char *legacy, struct lv_chain_hit *hit, lserr *err);

/* Walks a disk's chain from top to the file `image`: 1 with the layer right
 * above it, the one above that and image itself (base, with its format); 0
 * when image is not in the chain or nothing sits on it. */
int lv_chain_walk_to_image(const struct lv_chain_dirs *ds, const char *top, const char *top_fmt, const char *image,
                           struct lv_chain_hit *hit, lserr *err);

/* Whether image is a file of the chain from top (top included): 1 with its
 * format in fmt (16 bytes), 0 when it is not. */
int lv_chain_has(const struct lv_chain_dirs *ds, const char *top, const char *top_fmt, const char *image, char *fmt,
                 lserr *err);

/* ds (emptied first) with the directories of dom's disks and of libvirt's
 * backingStore in its XML. */
int lv_chain_dirs_of(struct lv_chain_dirs *ds, const struct hv_domain *dom, lserr *err);
