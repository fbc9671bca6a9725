/* metrics: lockstepd's Prometheus metrics (text format 0.0.4) and the HTTP
 * endpoint that serves them (nng's HTTP server, GET /metrics). */
#pragma once

#include <stddef.h>
#include <stdio.h>

#include "catalog.h"
#include "lserr.h"

struct metrics;

/* Writes the metrics known only at scrape time (agents up, in-doubt
 * transactions, schedule lag...) in the text format. */
typedef void (*metrics_gauges_fn)(void *arg, FILE *out);

/* *ret is the caller's (metrics_free). */
int metrics_new(struct metrics **ret);
void metrics_free(struct metrics *m);

/* One finished cut: counted by group and outcome ("committed", "aborted",
 * "failed"), its members' step times and frozen times and its group window
 * (timeline_window's) observed. */
void metrics_cut(struct metrics *m, const char *group, const char *outcome, const struct cat_member *mb, size_t n);

/* The whole exposition, gauges included, into out. */
void metrics_write(struct metrics *m, metrics_gauges_fn gauges, void *arg, FILE *out);

/* Serves GET /metrics on url ("http://HOST:PORT") until metrics_stop. */
int metrics_serve(struct metrics *m, const char *url, metrics_gauges_fn gauges, void *arg, lserr *err);
void metrics_stop(struct metrics *m);
