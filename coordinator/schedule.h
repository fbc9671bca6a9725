/* schedule: when a group's next scheduled cut is due, from its cron expression,
 * its random delay and what ran last (kept in the catalog across restarts). */
#pragma once

#include "catalog.h"
#include "coord_config.h"
#include "cron.h"
#include "lserr.h"

struct schedule {
        char group[65];
        struct cron cron;
        unsigned random_delay_s;
        int catch_up;
        long long due_s;   /* the cron time this run belongs to (Unix s) */
        long long start_s; /* due_s plus its random delay: when to start it */
        int catch_up_run;  /* this run makes up for runs missed while down */
        unsigned missed;   /* cron times that passed while lockstepd was down */
        long long missed_last_s; /* the latest of them */
        int waiting_room;  /* this run waits for room in the operations table */
};

/* Plans the first run of a scheduled group at start or after a reload. With
 * last (the catalog's record, NULL if none) older than the latest cron time at
 * or before now, runs were missed: with catch_up one run is due at once (the
 * others are only counted), without it they are skipped. */
int schedule_plan(struct schedule *s, const struct cfg_group *g, const struct cat_sched *last, long long now_s,
                  lserr *err);

/* After a run of due_s (or its skip): the next cron time after both due_s and
 * now_s, and its start with a fresh random delay. */
void schedule_advance(struct schedule *s, long long now_s);
