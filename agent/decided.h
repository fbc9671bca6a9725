/* decided: the txids an agent was told to decide (DECIDE, REVERT_DECIDE) before
 * it ever saw them open, kept durably and for a bounded time, so that an opening
 * step held back on the path and delivered after its ABORT is refused. */
#pragma once

#include <stddef.h>

#include "lserr.h"

/* At most this many txids are remembered; see decided_add for a full memory. */
#define DECIDED_MAX 1024
/* The file under the journal directory. Not a "*.txn" file: the journal's
 * loader never reads it. */
#define DECIDED_FILE "decided.list"

struct decided;

/* Loads dir/DECIDED_FILE (missing is empty), dropping what expired. keep_us is
 * how long a txid is remembered. A file that does not parse is refused, with
 * its path and line. Not thread-safe: the caller serialises every call. */
int decided_open(const char *dir, long long keep_us, long long now_us, struct decided **ret, lserr *err);
struct decided *decided_free(struct decided *d);

/* 1 when txid is remembered and not expired, or when the memory overflowed
 * less than keep_us ago (then every txid counts as decided); else 0. */
int decided_has(const struct decided *d, const char *txid, long long now_us);

/* Remembers txid until now_us + keep_us, on disk before this returns. A full
 * memory forgets its oldest entry and then counts every txid as decided until
 * that entry would have expired: it fails closed. On failure to write, txid is
 * still remembered in memory and err says why. */
int decided_add(struct decided *d, const char *txid, long long now_us, lserr *err);

/* Entries remembered now (expired ones included until the next add), for tests. */
size_t decided_count(const struct decided *d);
