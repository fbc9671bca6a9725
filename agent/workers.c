/* workers: a cache of threads for the agent's member steps. A thread per task
 * cost each task a clone, page faults on a fresh stack and, at its end, the
 * madvise and munmap of that stack, whose TLB shootdowns reach every CPU: at
 * a hundred agents to a machine that was a fifth of an agent's CPU per cut. */
#include "workers.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "fsutil.h"

/* A thread waiting for work; it lives on that thread's stack. */
struct idle {
        struct idle *next;
        pthread_cond_t cond;
        struct workers_task *task; /* handed over under workers.lock */
};

struct workers {
        pthread_mutex_t lock;
        pthread_cond_t gone; /* live reached 0 while stopping */
        struct idle *idle;
        unsigned n_idle, max_idle, idle_ms, live;
        unsigned long created;
        int stopping;
};

struct start {
        struct workers *w;
        struct workers_task *task;
};

static void task_done(struct workers_task *t)
{
        pthread_mutex_lock(&t->lock);
        t->done = 1;
        pthread_cond_signal(&t->cond);
        pthread_mutex_unlock(&t->lock);
}

static void unlink_idle(struct workers *w, struct idle *self)
{
        for (struct idle **p = &w->idle; *p; p = &(*p)->next)
                if (*p == self) {
                        *p = self->next;
                        w->n_idle--;
                        return;
                }
}

/* Waits (w->lock held) for the next task; NULL when the thread should end. */
static struct workers_task *wait_task(struct workers *w, struct idle *self)
{
        struct timespec until;

        if (w->stopping || w->n_idle >= w->max_idle)
                return NULL;
        self->task = NULL;
        self->next = w->idle;
        w->idle = self;
        w->n_idle++;
        until = fsutil_mono_after((long long)w->idle_ms * 1000);
        while (!self->task && !w->stopping)
                if (pthread_cond_timedwait(&self->cond, &w->lock, &until) == ETIMEDOUT)
                        break;
        /* A spawner that took this thread unlinked it and gave it a task. */
        if (!self->task)
                unlink_idle(w, self);
        return self->task;
}

static void *worker_main(void *arg)
{
        struct start s = *(struct start *)arg;
        struct workers *w = s.w;
        struct workers_task *t = s.task;
        struct idle self = {0};

        free(arg);
        fsutil_cond_init_mono(&self.cond);
        while (t) {
                t->fn(t->arg);
                task_done(t);
                if (!w)
                        break;
                pthread_mutex_lock(&w->lock);
                t = wait_task(w, &self);
                if (t)
                        pthread_mutex_unlock(&w->lock);
        }
        pthread_cond_destroy(&self.cond);
        /* The last touch of w: workers_free may free it once this unlocks. */
        if (w) {
                if (--w->live == 0)
                        pthread_cond_broadcast(&w->gone);
                pthread_mutex_unlock(&w->lock);
        }
        return NULL;
}

int workers_new(unsigned max_idle, unsigned idle_ms, struct workers **ret)
{
        struct workers *w = calloc(1, sizeof(*w));

        if (!w)
                return -ENOMEM;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->gone, NULL);
        w->max_idle = max_idle;
        w->idle_ms = idle_ms;
        *ret = w;
        return 0;
}

struct workers *workers_free(struct workers *w)
{
        if (!w)
                return NULL;
        pthread_mutex_lock(&w->lock);
        w->stopping = 1;
        for (struct idle *i = w->idle; i; i = i->next)
                pthread_cond_signal(&i->cond);
        while (w->live > 0)
                pthread_cond_wait(&w->gone, &w->lock);
        pthread_mutex_unlock(&w->lock);
        pthread_cond_destroy(&w->gone);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
}

static int start_thread(struct workers *w, struct workers_task *t)
{
        struct start *s = malloc(sizeof(*s));
        pthread_attr_t attr;
        pthread_t th;
        int e = s ? 0 : ENOMEM;

        if (s) {
                *s = (struct start){w, t};
                pthread_attr_init(&attr);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                e = pthread_create(&th, &attr, worker_main, s);
                pthread_attr_destroy(&attr);
                if (e)
                        free(s);
        }
        return -e;
}

int workers_spawn(struct workers *w, struct workers_task *t, void (*fn)(void *arg), void *arg)
{
        int r;

        t->fn = fn;
        t->arg = arg;
        t->done = 0;
        pthread_mutex_init(&t->lock, NULL);
        pthread_cond_init(&t->cond, NULL);
        if (w) {
                pthread_mutex_lock(&w->lock);
                if (w->idle) {
                        struct idle *i = w->idle;

                        w->idle = i->next;
                        w->n_idle--;
                        i->task = t;
                        pthread_cond_signal(&i->cond);
                        pthread_mutex_unlock(&w->lock);
                        return 0;
                }
                w->live++;
                w->created++;
                pthread_mutex_unlock(&w->lock);
        }
        r = start_thread(w, t);
        if (r < 0) {
                if (w) {
                        pthread_mutex_lock(&w->lock);
                        w->created--;
                        if (--w->live == 0)
                                pthread_cond_broadcast(&w->gone);
                        pthread_mutex_unlock(&w->lock);
                }
                pthread_cond_destroy(&t->cond);
                pthread_mutex_destroy(&t->lock);
        }
        return r;
}

void workers_join(struct workers_task *t)
{
        pthread_mutex_lock(&t->lock);
        while (!t->done)
                pthread_cond_wait(&t->cond, &t->lock);
        pthread_mutex_unlock(&t->lock);
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->lock);
}

struct workers_counts workers_counts(struct workers *w)
{
        struct workers_counts c;

        pthread_mutex_lock(&w->lock);
        c = (struct workers_counts){.created = w->created, .live = w->live, .idle = w->n_idle};
        pthread_mutex_unlock(&w->lock);
        return c;
}
