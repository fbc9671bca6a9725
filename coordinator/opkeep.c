/* opkeep: which finished operations' results lockstepd lets go (opkeep.h says
 * the rule and why). */
#include "opkeep.h"

#include <stdbool.h>

#define US 1000000LL

static bool droppable(const struct opkeep_entry *e, long long now_us)
{
        return e->present && e->done && !e->polled && now_us - e->done_us >= OPKEEP_MIN_S * US;
}

/* Launch order, across the counter's wrap. */
static bool older(const struct opkeep_entry *a, const struct opkeep_entry *b)
{
        return b->seq - a->seq < (1u << 31) && a->seq != b->seq;
}

static bool picked(const size_t *ret, size_t k, size_t i)
{
        for (size_t j = 0; j < k; j++)
                if (ret[j] == i)
                        return true;
        return false;
}

size_t opkeep_pick(const struct opkeep_entry *e, size_t n, long long now_us, size_t *ret)
{
        size_t total = 0, k = 0;
        for (size_t i = 0; i < n; i++) {
                if (e[i].present && e[i].done)
                        total += e[i].bytes;
        }
        for (;;) {
                size_t aged = n, oldest = n, pick;

                for (size_t i = 0; i < n; i++) {
                        if (picked(ret, k, i) || !droppable(&e[i], now_us))
                                continue;
                        if (oldest == n || older(&e[i], &e[oldest]))
                                oldest = i;
                        if (now_us - e[i].done_us >= OPKEEP_MAX_S * US && (aged == n || older(&e[i], &e[aged])))
                                aged = i;
                }
                /* Past the age bound: always; else the oldest while the kept
                 * results are over their budget. */
                pick = aged != n ? aged : total > OPKEEP_BYTES ? oldest : n;
                if (pick == n)
                        break;
                total -= e[pick].bytes;
                ret[k++] = pick;
        }
        return k;
}
