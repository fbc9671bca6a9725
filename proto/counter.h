/* counter: the coordinator's strictly increasing command counter, durable across
 * restarts without an fsync per command: blocks are reserved on disk ahead of use.
 * A fresh or restarted counter starts at least at the current Unix time in
 * microseconds, so a lost counter file does not lock a key out of its agents. */
#pragma once

#include <stdint.h>

#include "lserr.h"

#define COUNTER_BLOCK 4096

struct counter;

int counter_open(const char *path, struct counter **ret, lserr *err);
struct counter *counter_free(struct counter *c);

/* Thread-safe. Each value is returned once, ever, for this file. */
int counter_next(struct counter *c, uint64_t *ret, lserr *err);
