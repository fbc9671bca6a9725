/* counter: the coordinator's strictly increasing command counter, durable across
 * restarts without an fsync per command: blocks are reserved on disk ahead of use.
 * A fresh or restarted counter starts at least at the current Unix time in
 * microseconds, so a lost counter file does not lock a key out of its agents. */
#pragma once

#include <stdint.h>

#include "lserr.h"

#define COUNTER_BLOCK 4096
/* How far counter_advance may move ahead of what this counter would hand out
 * if it started now: 2^40 µs is about 12.7 days of clock skew or idle time. */
#define COUNTER_JUMP_MAX (1ULL << 40)

struct counter;

int counter_open(const char *path, struct counter **ret, lserr *err);
struct counter *counter_free(struct counter *c);

/* Thread-safe. Each value is returned once, ever, for this file. */
int counter_next(struct counter *c, uint64_t *ret, lserr *err);

/* Thread-safe. Moves the counter so that every later counter_next returns a value
 * above past, durably (the new reservation is on disk before this returns); for
 * when an agent reports that another process signing with the same key got
 * ahead. Never moves back: a past below the next value changes nothing. past
 * comes from a peer, so a jump of more than COUNTER_JUMP_MAX above the larger of
 * the next value and the current Unix time in µs is refused with -ERANGE. On
 * failure the counter is unchanged. */
int counter_advance(struct counter *c, uint64_t past, lserr *err);
