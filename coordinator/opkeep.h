/* opkeep: how long lockstepd keeps a finished operation's result for the CLI
 * that follows it. A 10,000-member cut's result (text, JSON, progress lines) is
 * about 7 MB: kept as long as 64 table slots allow, the daemon grew by that much
 * per cut. Now kept at least OPKEEP_MIN_S (a CLI between two polls still finds
 * it), dropped once OPKEEP_MAX_S old or while the results kept pass
 * OPKEEP_BYTES, oldest first; one being polled is never dropped. */
#pragma once

#include <stddef.h>

#define OPKEEP_MIN_S 30
#define OPKEEP_MAX_S 600
#define OPKEEP_BYTES ((size_t)32 << 20)

struct opkeep_entry {
        int present;      /* 0: an empty slot */
        int done;         /* finished: its result is all it holds */
        int polled;       /* a CLI waits on it right now */
        long long done_us; /* monotonic time it finished */
        size_t bytes;     /* its result's size */
        unsigned seq;     /* launch order (wraps) */
};

/* Which of the n entries to drop at now_us: their indices in ret (room for n),
 * oldest first; returns how many. */
size_t opkeep_pick(const struct opkeep_entry *e, size_t n, long long now_us, size_t *ret);
