/* prune: a group's retention policy applied to its cuts in the catalog, and the
 * deletes that carry it out. */
#pragma once

#include <stddef.h>

#include "catalog.h"
#include "config.h"
#include "engine.h"
#include "lserr.h"

struct prune_item {
        char txid[65];
        char name[65];
        long long started_us;
        int keep;
        char why[128];
        int done;         /* removed (not for dry runs) */
        char error[512];  /* why its delete failed */
};

/* Every committed cut of the group that is not deleted, newest first, with
 * the policy's verdict. A cut older than a committed revert of the group is
 * always kept (pinned): its layers are shared with the pre-revert branch the
 * revert kept. *ret is the caller's (free). */
int prune_plan(struct catalog *cat, const struct cfg_group *g, struct prune_item **ret, size_t *ret_n, lserr *err);

/* Deletes the items not kept, oldest first, through engine_delete (so each is
 * all-or-nothing and marked delete-failed with its reason if it fails).
 * Returns the number that could not be deleted. */
size_t prune_run(struct engine *e, struct prune_item *items, size_t n, engine_event_fn ev, void *arg);
