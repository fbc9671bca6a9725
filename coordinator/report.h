/* report: how cuts, agents and groups are shown: the stable --json shapes
 * (documented in README) and the text a terminal gets. Reads the catalog only. */
#pragma once

#include <stdio.h>

#include "catalog.h"
#include "coord_config.h"
#include "engine.h"
#include "json.h"

/* One cut with its members, timings and images. */
int report_cut(struct catalog *cat, const char *txid, int as_json, FILE *out, lserr *err);
/* The renderings of a cut asked for in want (REPORT_TEXT, REPORT_JSON;
 * malloc'd, the caller's; NULL when not asked for) from one read of its rows:
 * a fleet's cut has thousands of them, and each rendering costs as much as
 * the read. The rows go to *ret_rows when not NULL (the caller's,
 * cat_cut_free), for what else needs them. */
#define REPORT_TEXT 1u
#define REPORT_JSON 2u
int report_cut_render(struct catalog *cat, const char *txid, unsigned want, char **ret_text, char **ret_json,
                      struct cat_cut *ret_rows, lserr *err);

/* One cut as a Gantt chart (timeline.h) width columns wide, after a line
 * naming it; ANSI colours when color. -EINVAL for a revert or a delete, or a
 * width out of range: nothing written then. */
int report_timeline(struct catalog *cat, const char *txid, unsigned width, int color, FILE *out, lserr *err);

/* Cuts of a group (NULL: all), newest first. */
int report_cuts(struct catalog *cat, const char *group, int as_json, FILE *out, lserr *err);

/* Agents as last polled. */
int report_agents(struct catalog *cat, int as_json, FILE *out, lserr *err);

/* Groups as configured. */
int report_groups(const struct cfg_coord *cfg, int as_json, FILE *out);

/* "committed", "aborted", "in-doubt", "committing", "aborting"; for a cut, its
 * later fate when it has one: "deleted", "delete-failed"; for a revert (listed
 * as its pre-revert branch), its branch's: "undone", "deleted", "delete-failed". */
const char *report_state_name(const struct cat_txn *t);
/* The same without the cut's fate. */
const char *report_state_word(const struct cat_txn *t);

/* An ErrorCode's name ("OK", "E_NO_GUEST_AGENT"; "PENDING" for CAT_PENDING). */
const char *report_code_name(int code);

/* A preflight's result: one line per member (OK or the reason), or JSON
 * {group, ok, members: [{vm, agent, ok, code, message}]}. */
int report_check(const char *group, const struct engine_check_member *m, size_t n, int as_json, FILE *out);

/* Unix microseconds as 2026-11-25T21:40:00.123Z ("-" for 0 or less). */
void report_iso_time(long long us, char *out, size_t n);

/* One scheduled group as lockstepd sees it now. */
struct report_sched {
        char group[65];
        char schedule[128];
        long long next_due_s, next_start_s; /* -1: never */
        int has_last;
        struct cat_sched last;
        int running;
};
int report_schedules(const struct report_sched *s, size_t n, int as_json, FILE *out);

/* Events oldest first. */
int report_events(const struct cat_event *ev, size_t n, int as_json, FILE *out);

struct prune_item;
/* A prune's plan (dry run) or outcome. */
int report_prune(const char *group, const struct prune_item *it, size_t n, int dry_run, int as_json, FILE *out);
/* Both renderings at once, malloc'd (the caller's; NULL when out of memory). */
void report_prune_pair(const char *group, const struct prune_item *it, size_t n, int dry_run, char **ret_text,
                       char **ret_json);

/* s with every control character (C0, DEL, C1) and every byte that is not UTF-8
 * shown as \xNN, so text from an agent cannot drive the operator's terminal; cut
 * short to fit size (at least 1) without splitting an escape. */
void report_escape(char *out, size_t size, const char *s);

/* Audit rows, oldest first: commands sent to agents, their replies, and requests on
 * the control socket with the uid and pid of the process that sent them. */
int report_audit(const struct cat_audit *a, size_t n, int as_json, FILE *out);
