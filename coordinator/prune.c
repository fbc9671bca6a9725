/* prune: retention verdicts for a group's cuts, and their deletes. */
#include "prune.h"

#include <limits.h>
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
        size_t nt = 0, n = 0, nb = 0, branches = 0;
        int r = cat_cuts(cat, g->name, &ts, &nt, err);

        if (r < 0)
                return r;
        items = calloc(nt ? nt : 1, sizeof(*items));
        rc = calloc(nt ? nt : 1, sizeof(*rc));
        if (!items || !rc) {
                r = lserr_set(err, -ENOMEM, "group \"%s\": prune: out of memory", g->name);
                goto out;
        }
        /* Branches first, newest first: the newest keep_branches stay. */
        for (size_t i = 0; i < nt; i++) {
                struct prune_item *it = &items[n];
                if (ts[i].kind != CAT_KIND_REVERT || ts[i].state != CAT_TXN_DONE || !ts[i].committed ||
                    (ts[i].branch_status[0] && strcmp(ts[i].branch_status, "delete-failed")))
                        continue;
                it->branch = 1;
                snprintf(it->txid, sizeof(it->txid), "%s", ts[i].txid);
                snprintf(it->name, sizeof(it->name), "%s", ts[i].name);
                it->started_us = ts[i].started_us;
                it->keep = branches++ < g->retention.keep_branches;
                if (g->retention.keep_branches == UINT_MAX)
                        snprintf(it->why, sizeof(it->why), "no retention policy: every branch is kept");
                else
                        snprintf(it->why, sizeof(it->why), "%s keep_branches %u", it->keep ? "within" : "beyond",
                                 g->retention.keep_branches);
                n++;
        }
        nb = n;
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
                rc[n - nb].t_us = ts[i].started_us;
                rc[n - nb].pinned = pinned > 0;
                /* Half gone already (a delete cut short, a branch that took
                 * some of its images): finish it whatever the policy says. */
                items[n].done = !strcmp(ts[i].cut_status, "delete-failed");
                n++;
        }
        retention_apply(&pol, rc, n - nb);
        for (size_t i = nb; i < n; i++) {
                items[i].keep = rc[i - nb].keep && !items[i].done;
                snprintf(items[i].why, sizeof(items[i].why), "%s",
                         items[i].done ? "a delete of it did not finish: finishing it" : rc[i - nb].why);
                items[i].done = 0;
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

int prune_has_policy(const struct cfg_group *g)
{
        const struct cfg_retention *p = &g->retention;

        return p->keep_last || p->hourly || p->daily || p->weekly || p->monthly || p->keep_branches != UINT_MAX;
}

/* Deletes the items of one kind that are not kept, oldest first. */
static size_t run_kind(struct engine *e, struct prune_item *items, size_t n, int branch, size_t *ret_done,
                       engine_event_fn ev, void *arg)
{
        size_t failed = 0;

        /* Oldest first: what goes first is what the policy is surest about. */
        for (size_t i = n; i-- > 0;) {
                char txid[65] = "";
                lserr err = {0};
                int r;
                if (items[i].keep || items[i].branch != branch)
                        continue;
                r = engine_delete(e, items[i].txid, ev, arg, txid, &err);
                if (r == 0) {
                        items[i].done = 1;
                        (*ret_done)++;
                } else {
                        snprintf(items[i].error, sizeof(items[i].error), "%s",
                                 r < 0 ? err.msg
                                 : branch ? "the delete failed; the branch is marked delete-failed"
                                          : "the delete failed; the cut is marked delete-failed");
                        failed++;
                }
        }
        return failed;
}

size_t prune_run(struct engine *e, struct catalog *cat, const struct cfg_group *g, struct prune_item **items,
                 size_t *n, engine_event_fn ev, void *arg)
{
        size_t failed, gone = 0, cuts_done = 0;

        failed = run_kind(e, *items, *n, 1, &gone, ev, arg);
        if (gone) {
                /* The cuts those branches pinned may go now: plan them again,
                 * keeping the branches' lines as they ended. */
                struct prune_item *again = NULL, *merged;
                size_t na = 0, nb = 0;
                lserr err = {0};
                if (prune_plan(cat, g, &again, &na, &err) == 0) {
                        for (size_t i = 0; i < *n; i++)
                                nb += (*items)[i].branch;
                        merged = calloc(nb + na + 1, sizeof(*merged));
                        if (merged) {
                                size_t k = 0;
                                for (size_t i = 0; i < *n; i++)
                                        if ((*items)[i].branch)
                                                merged[k++] = (*items)[i];
                                for (size_t i = 0; i < na; i++)
                                        if (!again[i].branch)
                                                merged[k++] = again[i];
                                free(*items);
                                *items = merged;
                                *n = k;
                        }
                        free(again);
                }
        }
        return failed + run_kind(e, *items, *n, 0, &cuts_done, ev, arg);
}
