/* workers: threads kept between a transaction's steps, so a step on ten
 * members does not create and tear down ten threads every time. */
#pragma once

#include <pthread.h>

struct workers;

/* One piece of work handed to a thread; the caller owns it (on its stack, as
 * a pthread_t would be) from workers_spawn until workers_join returns. */
struct workers_task {
        void (*fn)(void *arg);
        void *arg;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int done;
};

/* At most max_idle threads wait for work, each for idle_ms at most, then
 * exit: an idle agent keeps no thread (nor its stack's pages) past that. */
int workers_new(unsigned max_idle, unsigned idle_ms, struct workers **ret);
/* Waits for every thread to finish its task and let go of w (a detached
 * thread may still be on its way out, touching nothing); no spawn may race it. */
struct workers *workers_free(struct workers *w);

/* Runs fn(arg) on a waiting thread, or on a new one. w NULL: always a new
 * thread, which ends with its task. 0, or a negative errno when no thread
 * could be started (fn did not run; the task needs no join). */
int workers_spawn(struct workers *w, struct workers_task *t, void (*fn)(void *arg), void *arg);
/* Waits for a spawned task's fn to return. */
void workers_join(struct workers_task *t);

/* Threads started since workers_new, alive now, and waiting for work (tests;
 * w not NULL), read together. */
struct workers_counts {
        unsigned long created;
        unsigned live, idle;
};
struct workers_counts workers_counts(struct workers *w);
