/* retention: which cuts a group's retention policy keeps (keep_last and
 * hourly/daily/weekly/monthly buckets, grandfather-father-son), and why. */
#pragma once

#include <stddef.h>

struct retention_policy { unsigned keep_last, hourly, daily, weekly, monthly; }; /* 0 = rule not used */

struct retention_cut {
        long long t_us;   /* when the cut was taken, Unix microseconds (UTC) */
        int pinned;       /* must be kept whatever the policy says (e.g. a revert's disks sit on it) */
        /* out: */
        int keep;
        char why[96];     /* every rule that keeps it, e.g. "last 2, daily 2026-11-25, monthly 2026-11"; or "pinned: ..."; or for a removed one "older than every rule keeps" */
};

/* True when no rule is set: then everything is kept and nothing is ever pruned. */
int retention_policy_empty(const struct retention_policy *p);

/* Sets keep/why on each of the n cuts (any order, ties allowed). Returns the number kept.
 *
 * Only keep and why are written; the array is not reordered and nothing is
 * kept after the call. cuts may be NULL when n is 0. Cuts taken in the same
 * microsecond count as newest-first in array order. Buckets are UTC hours
 * (why "hourly 2026-11-25T13"), days ("daily 2026-11-25"), ISO 8601 weeks
 * ("weekly 2026-W48") and months ("monthly 2026-11"); keep_last reasons name
 * the slot ("last 1" is the newest unpinned cut). Pinned cuts are invisible to
 * the rules: each rule keeps exactly what it would without them, and they are
 * kept in addition (why "pinned"). A removed cut reads "older than every rule
 * keeps" or, when a rule reaches past it, "superseded by newer cuts of its
 * periods". If memory for the working array cannot be had, every cut is kept
 * (why "retention not evaluated: out of memory"): failing never prunes. */
size_t retention_apply(const struct retention_policy *p, struct retention_cut *cuts, size_t n);
