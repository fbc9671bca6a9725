/* schedule: due times of scheduled cuts, catch-up after downtime, random delay. */
#include "schedule.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

/* Counting missed runs stops here: a per-minute schedule down for a week is
 * 10080; beyond this the exact number helps nobody. */
#define MISSED_COUNT_MAX 100000u

static long long with_delay(const struct schedule *s, long long due)
{
        /* Spread over the fleet so that every group set to "0 * * * *" does
         * not freeze at the same second. */
        return due + (s->random_delay_s ? (long long)randombytes_uniform(s->random_delay_s + 1) : 0);
}

int schedule_plan(struct schedule *s, const struct cfg_group *g, const struct cat_sched *last, long long now_s,
                  lserr *err)
{
        long long t, prev = -1;
        int r;

        memset(s, 0, sizeof(*s));
        snprintf(s->group, sizeof(s->group), "%s", g->name);
        s->random_delay_s = g->random_delay_s;
        s->catch_up = g->catch_up;
        r = cron_parse(g->schedule, &s->cron, err);
        if (r < 0)
                return r;
        if (last && last->last_due_s > 0) {
                for (t = cron_next(&s->cron, last->last_due_s); t >= 0 && t <= now_s;
                     t = cron_next(&s->cron, t)) {
                        prev = t;
                        if (++s->missed == MISSED_COUNT_MAX)
                                break;
                }
        }
        if (s->missed == MISSED_COUNT_MAX) {
                /* Stopped counting early: find the latest missed time from
                 * just before now instead, widening the look back. */
                static const long long back[] = {60, 3600, 86400, 32 * 86400LL, 367 * 86400LL};
                for (size_t i = 0; i < sizeof(back) / sizeof(back[0]); i++) {
                        long long t0 = cron_next(&s->cron, now_s - back[i]);
                        if (t0 < 0 || t0 > now_s)
                                continue;
                        for (prev = t0; (t = cron_next(&s->cron, prev)) >= 0 && t <= now_s;)
                                prev = t;
                        break;
                }
        }
        s->missed_last_s = prev;
        if (prev >= 0 && s->catch_up) {
                s->due_s = prev;
                s->start_s = now_s;
                s->catch_up_run = 1;
                return 0;
        }
        s->due_s = cron_next(&s->cron, now_s);
        if (s->due_s < 0)
                return lserr_set(err, -EINVAL, "group \"%s\": schedule \"%s\" never falls due", g->name, g->schedule);
        s->start_s = with_delay(s, s->due_s);
        return 0;
}

void schedule_advance(struct schedule *s, long long now_s)
{
        long long after = s->due_s > now_s ? s->due_s : now_s;

        s->due_s = cron_next(&s->cron, after);
        s->start_s = s->due_s < 0 ? -1 : with_delay(s, s->due_s);
        s->catch_up_run = 0;
        s->missed = 0;
        s->waiting_room = 0;
}
