/* prune: a group's retention policy applied to its cuts in the catalog, and the
 * deletes that carry it out. */
#pragma once

#include <stddef.h>

#include "catalog.h"
#include "coord_config.h"
#include "engine.h"
#include "lserr.h"

struct prune_item {
        int branch;       /* a revert's pre-revert branch, not a cut */
        char txid[65];
        char name[65];
        long long started_us;
        int keep;
        char why[128];
        int done;         /* removed (not for dry runs) */
        char error[512];  /* why its delete failed */
};

/* Every kept pre-revert branch of the group (reverts, newest first: the
 * newest keep_branches stay) and then every committed cut that is not
 * deleted, newest first, with the policy's verdict. A cut older than a
 * committed revert whose branch is kept is always kept (pinned): its layers
 * are shared with that branch. *ret is the caller's (free). */
int prune_plan(struct catalog *cat, const struct cfg_group *g, struct prune_item **ret, size_t *ret_n, lserr *err);

/* Whether the group has a retention policy for cuts or for branches. */
int prune_has_policy(const struct cfg_group *g);

/* Deletes the items not kept, oldest first, through engine_delete (so each is
 * all-or-nothing and marked delete-failed with its reason if it fails):
 * branches first; when one went, the cuts it pinned are planned again (*items
 * is replaced by the new plan, with the branches' outcomes kept). Returns the
 * number that could not be deleted. */
size_t prune_run(struct engine *e, struct catalog *cat, const struct cfg_group *g, struct prune_item **items,
                 size_t *n, engine_event_fn ev, void *arg);
