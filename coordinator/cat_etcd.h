/* cat_etcd: the catalog kept in etcd (v3) instead of an SQLite file, for
 * several lockstepd of which one leads: the same cat_* calls, one key per record. */
#pragma once

#include "catalog.h"
#include "etcd.h"
#include "lserr.h"

/* Longest key prefix: room is left for the longest record key under it. */
#define CAT_ETCD_PREFIX_MAX 128

struct cat_etcd_opts {
        const struct etcd_opts *etcd;
        /* Every key of the catalog starts with it ("/lockstep/"); it must end
         * with '/', so that "/a/" never holds the keys of "/ab/". */
        const char *prefix;
};

/* Connects (one etcd connection, used under the catalog's lock), checks the
 * layout version kept under the prefix (writing it on first use; a newer one
 * is refused) and returns a catalog whose every cat_* call works against etcd.
 * Nothing is kept on failure and *ret is untouched. */
int cat_open_etcd(const struct cat_etcd_opts *o, struct catalog **ret, lserr *err);

/* Gives back to the file system the space compactions (done by
 * cat_history_trim and cat_events_trim) freed. It blocks the etcd member
 * for a while: a maintenance step, apart from the trims. -EINVAL when c is
 * not an etcd catalog. */
int cat_etcd_defragment(struct catalog *c, lserr *err);

/* The requests the catalog sent to etcd since it was opened, and their time
 * (what HA costs a cut). -EINVAL when c is not an etcd catalog. */
int cat_etcd_stats(struct catalog *c, struct etcd_stats *ret);
