/* report: how cuts, agents and groups are shown: the stable --json shapes
 * (documented in README) and the text a terminal gets. Reads the catalog only. */
#pragma once

#include <stdio.h>

#include "catalog.h"
#include "config.h"
#include "json.h"

/* One cut with its members, timings and images. */
int report_cut(struct catalog *cat, const char *txid, int as_json, FILE *out, lserr *err);

/* Cuts of a group (NULL: all), newest first. */
int report_cuts(struct catalog *cat, const char *group, int as_json, FILE *out, lserr *err);

/* Agents as last polled. */
int report_agents(struct catalog *cat, int as_json, FILE *out, lserr *err);

/* Groups as configured. */
int report_groups(const struct cfg_coord *cfg, int as_json, FILE *out);

/* "committed", "aborted", "in-doubt", "committing", "aborting"; for a cut, its
 * later fate when it has one: "deleted", "delete-failed". */
const char *report_state_name(const struct cat_txn *t);
/* The same without the cut's fate. */
const char *report_state_word(const struct cat_txn *t);
