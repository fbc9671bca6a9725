/* prune: retention verdicts for a group's cuts, and their deletes. */
#include "prune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retention.h"

int prune_plan(struct catalog *cat, const struct cfg_group *g, struct prune_item **ret, size_t *ret_n, lserr *err)
{
        struct retention_policy pol = {g->retention.keep_last, g->retention.hourly, g->retention.daily,
                                       g->retention.weekly, g->retention.monthly};
        struct cat_txn *ts = NULL;
        struct prune_item *items = NULL;
        struct retention_cut *rc = NULL;
        size_t nt = 0, n = 0;
        int r = cat_cuts(cat, g->name, &ts, &nt, err);

        if (r < 0)
                return r;
        items = calloc(nt ? nt : 1, sizeof(*items));
        rc = calloc(nt ? nt : 1, sizeof(*rc));
        if (!items || !rc) {
                r = lserr_set(err, -ENOMEM, "group \"%s\": prune: out of memory", g->name);
                goto out;
        }
        for (size_t i = 0; i < nt; i++) {
                char rev[65] = "";
                int pinned;
                if (ts[i].kind != CAT_KIND_SNAPSHOT || ts[i].state != CAT_TXN_DONE || !ts[i].committed ||
                    !strcmp(ts[i].cut_status, "deleted"))
                        continue;
                pinned = cat_reverts_since(cat, ts[i].txid, ts[i].started_us, rev, err);
                if (pinned < 0) {
                        r = pinned;
                        goto out;
                }
                snprintf(items[n].txid, sizeof(items[n].txid), "%s", ts[i].txid);
                snprintf(items[n].name, sizeof(items[n].name), "%s", ts[i].name);
                items[n].started_us = ts[i].started_us;
                rc[n].t_us = ts[i].started_us;
                rc[n].pinned = pinned > 0;
                n++;
        }
        retention_apply(&pol, rc, n);
        for (size_t i = 0; i < n; i++) {
                items[i].keep = rc[i].keep;
                snprintf(items[i].why, sizeof(items[i].why), "%s", rc[i].why);
        }
        *ret = items;
        *ret_n = n;
        items = NULL;
        r = 0;
out:
        free(items);
        free(rc);
        free(ts);
        return r;
}

size_t prune_run(struct engine *e, struct prune_item *items, size_t n, engine_event_fn ev, void *arg)
{
        size_t failed = 0;

        /* Oldest first: what goes first is what the policy is surest about. */
        for (size_t i = n; i-- > 0;) {
                char txid[65] = "";
                lserr err = {0};
                int r;
                if (items[i].keep)
                        continue;
                r = engine_delete(e, items[i].txid, ev, arg, txid, &err);
                if (r == 0) {
                        items[i].done = 1;
                } else {
                        snprintf(items[i].error, sizeof(items[i].error), "%s",
                                 r < 0 ? err.msg : "the delete failed; the cut is marked delete-failed");
                        failed++;
                }
        }
        return failed;
}
