/* sim_chain: the backing chains of a simulated domain's disks, held in its
 * simstate as overlay -> backing links. Pure functions of the state. */
#pragma once

#include "sim_state.h"

/* The index of the link whose overlay is path; -1 when there is none. */
int sim_chain_find(const struct simstate *st, const char *path);

/* Records that overlay is backed by backing; -E2BIG when the chain is full. */
int sim_chain_add(struct simstate *st, const char *overlay, const char *backing);

/* Forgets the link of overlay path, if there is one. */
void sim_chain_drop(struct simstate *st, const char *path);

/* The link of cut txid's layer in disk i's chain, or of an older cut's name
 * `legacy`; in *ret_child the layer above it (NULL when it is the active
 * one); -1 when it is not there. */
int sim_chain_layer_of(const struct simstate *st, unsigned i, const char *txid, const char *legacy,
                       const char **ret_child);

/* The same for the chain from top (a recorded branch's top, say). */
int sim_chain_layer_from(const struct simstate *st, const char *top, const char *txid, const char *legacy,
                         const char **ret_child);

/* Whether image is a file of the chain from top (top included). */
int sim_chain_holds(const struct simstate *st, const char *top, const char *image);

/* The link of the layer right above file `image` in disk i's chain, and in
 * *ret_child the layer above that (NULL when it is the active one); -1 when
 * image is not in the chain or nothing sits on it. */
int sim_chain_layer_above(const struct simstate *st, unsigned i, const char *image, const char **ret_child);

/* The backing file of path into out (HV_PATH_MAX), "" for a base image;
 * -ENOENT when path does not exist. ctx is the struct simstate. */
int sim_chain_backing(void *ctx, const char *path, char *out, lserr *err);
