/* cron: 5-field cron expressions and @-shorthands, evaluated in UTC, for
 * scheduled snapshots. */
#pragma once

#include <stdint.h>

#include "lserr.h"

/* Longest expression cron_parse() accepts, in bytes. */
#define CRON_EXPR_MAX 256

struct cron {
        uint64_t minutes; /* bit m set: minute m (0-59) matches */
        uint32_t hours;   /* 0-23 */
        uint32_t mdays;   /* bits 1-31 */
        uint16_t months;  /* bits 1-12 */
        uint8_t wdays;    /* bits 0-6, 0 = Sunday (7 in the text also means Sunday) */
        /* The field's text started with '*' ("*", "*\/2", "*,5"). As in Vixie cron, a day
         * matches when it is in both mdays and wdays if either flag is set, and when it
         * is in either of them if neither is: "0 0 1,15 * mon" runs on the 1st, the 15th
         * and every Monday, "0 0 * * mon" only on Mondays. */
        int mday_any, wday_any;
};

/* Parses expr ("minute hour day-of-month month day-of-week", or @yearly, @annually,
 * @monthly, @weekly, @daily, @midnight, @hourly). On error returns -EINVAL, leaves
 * ret untouched and fills err with a message naming the field and the offending
 * text, e.g. "schedule \"*\/15 * * 13 *\": month: 13 is out of 1-12". */
int cron_parse(const char *expr, struct cron *ret, lserr *err);

/* The first matching minute strictly after `after` (Unix seconds, UTC), in Unix
 * seconds (a multiple of 60); -1 if nothing matches within the next 9 years (e.g.
 * "0 0 30 2 *"), or if `after` is outside years 1-9999. Nine years, not fewer,
 * because Feb 29 can be eight years away (2096-02-29, then 2104-02-29). */
long long cron_next(const struct cron *c, long long after);
