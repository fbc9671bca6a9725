/* txn_pool: runs one step on many members of a transaction at once (snapshots
 * and thaws at most parallel_per_host of them, guest-agent waits all), so a host
 * with many VMs keeps each one's frozen time near what its own steps take. */
#include <stdatomic.h>

#include "txn_priv.h"

struct pool {
        struct txn_mgr *mg;
        struct txn *t;
        txn_member_fn fn;
        txn_member_pick pick;
        unsigned arg;
        int reverse;
        atomic_size_t next; /* the next member index to claim, in walk order */
};

/* Claims members one at a time until none is left. A member is claimed by one
 * worker only, so fn and pick see their member alone. */
static void drain(struct pool *p)
{
        for (;;) {
                size_t i = atomic_fetch_add(&p->next, 1);
                struct member *mb;

                if (i >= p->t->n)
                        return;
                mb = &p->t->m[p->reverse ? p->t->n - 1 - i : i];
                if (p->pick(mb, p->arg))
                        p->fn(p->mg, p->t, mb);
        }
}

static void worker_main(void *arg)
{
        drain(arg);
}

unsigned txn_pool_size(const struct txn_mgr *mg)
{
        unsigned n = mg->cfg->parallel_per_host;

        /* A config built without the loader (tests) runs serially. */
        if (n < 1)
                return 1;
        return n > TXN_POOL_MAX ? TXN_POOL_MAX : n;
}

void txn_pool_run(struct txn_mgr *mg, struct txn *t, txn_member_pick pick, unsigned arg, int reverse,
                  unsigned width, txn_member_fn fn)
{
        const unsigned bound = width == TXN_POOL_WIDE ? TXN_POOL_MAX : txn_pool_size(mg);
        struct pool p = {.mg = mg, .t = t, .fn = fn, .pick = pick, .arg = arg, .reverse = reverse};
        struct workers_task th[TXN_POOL_MAX];
        size_t want = 0, started = 0;

        atomic_init(&p.next, 0);
        for (size_t i = 0; i < t->n; i++)
                want += pick(&t->m[i], arg) != 0;
        if (want > bound)
                want = bound;
        /* The caller is one of the workers: a pool of one starts no thread and
         * walks the members in order, as a serial loop would. A thread that
         * cannot be started leaves its share to the others. */
        for (; want > 1 && started < want - 1; started++)
                if (workers_spawn(mg->workers, &th[started], worker_main, &p) < 0)
                        break;
        drain(&p);
        for (size_t i = 0; i < started; i++)
                workers_join(&th[i]);
}
