/* guardian: a small process, forked when the agent starts, that holds the lease
 * even when the agent's main process dies. The agent arms it for every member it
 * freezes or pauses and disarms it after the thaw; the guardian thaws (and
 * resumes) an armed member when its lease ends, or at once when the agent is
 * gone (its socket closes, e.g. after kill -9), and keeps trying until that
 * works. It exits once nothing is armed and the agent is gone. */
#pragma once

#include "agent_config.h"
#include "lserr.h"

struct guardian;

/* The guardian's process name (/proc/PID/comm). */
#define GUARDIAN_COMM "ls-guardian"

/* Starts the guardian: a child forked from this process, in a session of its
 * own, named GUARDIAN_COMM before this returns. Call before any thread is
 * started and before any secret is read (the child has a copy of this
 * process's memory); the child works from cfg until nothing is armed and the
 * agent is gone, then exits. Returns in the parent only. */
int guardian_start(const struct cfg_agent *cfg, struct guardian **ret, lserr *err);

/* deadline_mono_us is on CLOCK_MONOTONIC. thaw/resume say what undoing takes. */
int guardian_arm(struct guardian *g, const char *txid, const char *vm, long long deadline_mono_us, int thaw,
                 int resume);
int guardian_disarm(struct guardian *g, const char *txid, const char *vm);

/* Closes the agent's end; the guardian acts on whatever is still armed. */
struct guardian *guardian_stop(struct guardian *g);

/* Pid of the guardian process (tests, logs). */
int guardian_pid(const struct guardian *g);
