/* failpoint: crash-test stops for both daemons, and test-only switches. Without
 * -DLOCKSTEP_FAILPOINTS=ON every function here does nothing and reads no
 * environment: a release build has no failpoint. */
#pragma once

/* Names in use: lockstepd "before-freeze" (the cut logged as begun, no FREEZE
 * sent), "after-freeze" (every vote in, no SNAPSHOT sent),
 * "after-snapshot" (replies in, nothing decided), "after-decide" (decision
 * logged, not yet sent), "after-tell" (COMMIT or ABORT sent and answered, the
 * cut's end not yet logged), "revert-after-switch" (disks switched, nothing started
 * or decided); the agent "agent-mid-switch" (one member switched, the others
 * not) and "agent-reply-STEP" (STEP done and its reply signed, not yet sent:
 * agent-reply-FREEZE, agent-reply-SNAPSHOT, ...); both daemons'
 * "guard-ping-close" (a listener guard's ping answered, its socket about to
 * be closed: where nng_close can hang); lockstepd's stop, before each of its
 * steps: "stop-control", "stop-forward", "stop-threads", "stop-operations",
 * "stop-resign", "stop-catalog".
 *
 * Two ways to arm one:
 * - LOCKSTEP_FAILPOINT=<name> at start: the daemon logs it and sleeps there
 *   until killed, so a test can kill -9 it exactly there.
 * - LOCKSTEP_FAILPOINT_DIR=<dir>, armed at run time by creating <dir>/<scope>.<name>
 *   (scope: "lockstepd" or the agent's id). Its first word says what happens:
 *   "hold" (or empty) writes <dir>/<scope>.<name>.held and waits there until the
 *   test removes <dir>/<scope>.<name>; "stop" sleeps until killed; "kill" dies
 *   of SIGKILL there. A hold is one-shot by nature: the test releases it by
 *   removing the file that armed it. Only the thread that reaches the point
 *   waits; the rest of the daemon goes on. */
void failpoint_stop(const char *name);

/* The scope of this process's run-time failpoints: "lockstepd" (a cluster
 * member: its ha name) or the agent's id. */
void failpoint_scope(const char *scope);

/* A test-only switch: true when <dir>/<scope>.<name> exists. In use: the
 * agent's "no-lease" (neither the lease thread nor the guardian thaws a frozen
 * guest: the fault tests show that their checks see a guest left frozen);
 * the agent's "agent-predates-epoch" (its replies do not echo the command's epoch, as
 * an agent older than the fence); lockstepd's "send-when-deposed" (a leader that lost its lease still signs
 * commands, with the last epoch it held: agents must refuse them). */
int failpoint_on(const char *name);
