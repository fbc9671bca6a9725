/* slots: admission of transactions under the fleet limits, all-or-nothing. */
#include "slots.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fsutil.h"

struct holder {
        char *group;
        char **agents;
        size_t n_agents;
        char **members;
        size_t n_members;
};

/* A taker that is waiting; the list is in arrival order. */
struct waiter {
        const struct slots_need *need;
        struct waiter *next;
};

struct slots {
        pthread_mutex_t lock;
        pthread_cond_t changed; /* a slot was dropped or the limits changed */
        unsigned fleet_max, agent_max;
        struct holder *h;
        size_t n, cap;
        size_t waiting;
        struct waiter *waiters; /* oldest first */
        int cancelled;
};

int slots_new(unsigned fleet_max, unsigned agent_max, struct slots **ret)
{
        struct slots *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        pthread_mutex_init(&s->lock, NULL);
        /* Deadlines on the monotonic clock: a clock step must not stretch a wait. */
        fsutil_cond_init_mono(&s->changed);
        s->fleet_max = fleet_max;
        s->agent_max = agent_max;
        *ret = s;
        return 0;
}

static void holder_clear(struct holder *h)
{
        for (size_t i = 0; i < h->n_agents; i++)
                free(h->agents[i]);
        for (size_t i = 0; i < h->n_members; i++)
                free(h->members[i]);
        free(h->agents);
        free(h->members);
        free(h->group);
        memset(h, 0, sizeof(*h));
}

void slots_free(struct slots *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < s->n; i++)
                holder_clear(&s->h[i]);
        free(s->h);
        pthread_cond_destroy(&s->changed);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

void slots_set_limits(struct slots *s, unsigned fleet_max, unsigned agent_max)
{
        pthread_mutex_lock(&s->lock);
        s->fleet_max = fleet_max;
        s->agent_max = agent_max;
        pthread_cond_broadcast(&s->changed);
        pthread_mutex_unlock(&s->lock);
}

static int holds(char *const *list, size_t n, const char *x)
{
        for (size_t i = 0; i < n; i++)
                if (!strcmp(list[i], x))
                        return 1;
        return 0;
}

static struct holder *holder_of(struct slots *s, const char *group)
{
        for (size_t i = 0; i < s->n; i++)
                if (!strcmp(s->h[i].group, group))
                        return &s->h[i];
        return NULL;
}

/* 0 when need fits now; else -EAGAIN with the first thing in the way in err. */
static int fits(struct slots *s, const struct slots_need *need, lserr *err)
{
        if (s->fleet_max && s->n >= s->fleet_max)
                return lserr_set(err, -EAGAIN, "group \"%s\" waits: %zu cuts run in the fleet (max_cuts %u)",
                                 need->group, s->n, s->fleet_max);
        for (size_t a = 0; s->agent_max && a < need->n_agents; a++) {
                unsigned on = 0;
                for (size_t i = 0; i < s->n; i++)
                        on += (unsigned)holds(s->h[i].agents, s->h[i].n_agents, need->agents[a]);
                if (on >= s->agent_max)
                        return lserr_set(err, -EAGAIN,
                                         "group \"%s\" waits: %u cuts run on agent %s (max_cuts_per_agent %u)",
                                         need->group, on, need->agents[a], s->agent_max);
        }
        for (size_t m = 0; m < need->n_members; m++)
                for (size_t i = 0; i < s->n; i++)
                        if (holds(s->h[i].members, s->h[i].n_members, need->members[m]))
                                return lserr_set(err, -EAGAIN,
                                                 "group \"%s\" waits: its member %s is in a transaction of group \"%s\"",
                                                 need->group, need->members[m], s->h[i].group);
        return 0;
}

static int shares(const char *const *a, size_t na, const char *const *b, size_t nb)
{
        for (size_t i = 0; i < na; i++)
                for (size_t k = 0; k < nb; k++)
                        if (!strcmp(a[i], b[k]))
                                return 1;
        return 0;
}

/* First come, first served among those that compete: a waiter steps back for
 * every older waiter that wants one of its agents or members, or when it would
 * take the last fleet slot while an older one waits, whether or not that older
 * one could go now. So what an old waiter needs is never taken by a younger
 * one while it waits for the rest: a group that needs much is not starved by
 * a stream of small ones. The oldest waiter never steps back: no livelock. */
static const struct waiter *older_rival(struct slots *s, const struct waiter *me)
{
        for (const struct waiter *o = s->waiters; o && o != me; o = o->next)
                if (shares(o->need->agents, o->need->n_agents, me->need->agents, me->need->n_agents) ||
                    shares(o->need->members, o->need->n_members, me->need->members, me->need->n_members) ||
                    (s->fleet_max && s->n + 1 >= s->fleet_max))
                        return o;
        return NULL;
}

static char **copy_list(const char *const *src, size_t n)
{
        char **out = calloc(n ? n : 1, sizeof(*out));

        for (size_t i = 0; out && i < n; i++) {
                out[i] = strdup(src[i]);
                if (!out[i]) {
                        while (i-- > 0)
                                free(out[i]);
                        free(out);
                        return NULL;
                }
        }
        return out;
}

static int add_holder(struct slots *s, const struct slots_need *need)
{
        struct holder h = {0};

        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 8;
                struct holder *nh = realloc(s->h, cap * sizeof(*nh));
                if (!nh)
                        return -ENOMEM;
                s->h = nh;
                s->cap = cap;
        }
        h.group = strdup(need->group);
        h.agents = copy_list(need->agents, need->n_agents);
        h.members = copy_list(need->members, need->n_members);
        h.n_agents = need->n_agents;
        h.n_members = need->n_members;
        if (!h.group || !h.agents || !h.members) {
                if (!h.agents)
                        h.n_agents = 0;
                if (!h.members)
                        h.n_members = 0;
                holder_clear(&h);
                return -ENOMEM;
        }
        s->h[s->n++] = h;
        return 0;
}

int slots_take(struct slots *s, const struct slots_need *need, int wait_ms, lserr *err)
{
        struct timespec deadline;
        lserr why = {0};
        int r;

        struct waiter me = {.need = need}, **pp;
        const struct waiter *rival;

        deadline = fsutil_mono_after(wait_ms * 1000LL);
        pthread_mutex_lock(&s->lock);
        s->waiting++;
        for (pp = &s->waiters; *pp; pp = &(*pp)->next)
                ;
        *pp = &me;
        for (;;) {
                if (s->cancelled) {
                        r = lserr_set(err, -ECANCELED, "group \"%s\": lockstepd is stopping", need->group);
                        break;
                }
                if (holder_of(s, need->group)) {
                        r = lserr_set(err, -EBUSY, "group \"%s\": a transaction of it is already running",
                                      need->group);
                        break;
                }
                lserr_clear(&why);
                r = fits(s, need, &why);
                if (r == 0 && (rival = older_rival(s, &me)) != NULL)
                        r = lserr_set(&why, -EAGAIN, "group \"%s\" waits: group \"%s\" asked first",
                                      need->group, rival->need->group);
                if (r == 0) {
                        r = add_holder(s, need);
                        break;
                }
                if (wait_ms <= 0) {
                        r = lserr_set(err, -EAGAIN, "%s", why.msg);
                        break;
                }
                if (pthread_cond_timedwait(&s->changed, &s->lock, &deadline) == ETIMEDOUT) {
                        lserr_clear(&why);
                        if (!holder_of(s, need->group) && fits(s, need, &why) == 0 && !older_rival(s, &me)) {
                                r = add_holder(s, need);
                                break;
                        }
                        r = lserr_set(err, -ETIMEDOUT, "%s (gave up after %d s)", why.msg[0] ? why.msg : need->group,
                                      wait_ms / 1000);
                        break;
                }
        }
        for (pp = &s->waiters; *pp != &me; pp = &(*pp)->next)
                ;
        *pp = me.next;
        s->waiting--;
        /* Whoever stepped back for this one looks again. */
        pthread_cond_broadcast(&s->changed);
        pthread_mutex_unlock(&s->lock);
        return r;
}

void slots_drop(struct slots *s, const char *group)
{
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < s->n; i++)
                if (!strcmp(s->h[i].group, group)) {
                        holder_clear(&s->h[i]);
                        s->h[i] = s->h[--s->n];
                        break;
                }
        pthread_cond_broadcast(&s->changed);
        pthread_mutex_unlock(&s->lock);
}

void slots_cancel(struct slots *s)
{
        pthread_mutex_lock(&s->lock);
        s->cancelled = 1;
        pthread_cond_broadcast(&s->changed);
        pthread_mutex_unlock(&s->lock);
}

int slots_busy(struct slots *s, const char *group)
{
        int r;

        pthread_mutex_lock(&s->lock);
        r = holder_of(s, group) != NULL;
        pthread_mutex_unlock(&s->lock);
        return r;
}

void slots_counts(struct slots *s, size_t *ret_running, size_t *ret_waiting)
{
        pthread_mutex_lock(&s->lock);
        *ret_running = s->n;
        *ret_waiting = s->waiting;
        pthread_mutex_unlock(&s->lock);
}
