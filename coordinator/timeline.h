/* timeline: a cut drawn as a terminal Gantt chart (freeze, frozen, snapshot and
 * thaw of each member on one time axis, the group window marked). Pure: the
 * members' timings and a width in, text out; no catalog, no terminal. */
#pragma once

#include <stddef.h>
#include <stdio.h>

#include "catalog.h"
#include "lserr.h"

#define TIMELINE_MIN_WIDTH 40
#define TIMELINE_MAX_WIDTH 1000
#define TIMELINE_DEFAULT_WIDTH 100
/* Above this many members, one row per agent (a terminal shows ~40 rows). */
#define TIMELINE_MAX_MEMBER_ROWS 40

/* The group window: first member frozen to last member thawed, on the agents'
 * clocks (frozen_at_us, thawed_at_us). first_us is 0 when no member froze. */
struct timeline_window {
        long long first_us, last_freeze_us, last_thaw_us;
        double window_ms, skew_ms, max_frozen_ms;
};

void timeline_window(const struct cat_member *m, size_t n, struct timeline_window *ret);

struct timeline_opts {
        unsigned width;                     /* columns of every line, TIMELINE_MIN_WIDTH..MAX_WIDTH */
        int color;                          /* ANSI colours on the bars (a terminal) */
        const char *(*code_name)(int code); /* "E_NO_GUEST_AGENT" for why a member has no bars; may be NULL */
        const char *title;                  /* first line(s), wrapped to the width; may be NULL */
};

/* 0 when a chart fits width columns; -EINVAL with err filled otherwise. */
int timeline_check_width(long long width, lserr *err);

/* Writes the chart of the n members to out: no line longer than o->width.
 * -EINVAL (err filled, nothing written) when the width is out of range. */
int timeline_render(const struct cat_member *m, size_t n, const struct timeline_opts *o, FILE *out, lserr *err);
