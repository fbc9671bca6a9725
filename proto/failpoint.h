/* failpoint: crash-test stops for both daemons. With LOCKSTEP_FAILPOINT=<name>
 * in its environment, a daemon that reaches failpoint_stop(name) logs it and
 * sleeps until killed, so a test can kill -9 it exactly there. */
#pragma once

/* Names in use: lockstepd "after-snapshot" (replies in, nothing decided),
 * "after-decide" (decision logged, not yet sent), "revert-after-switch" (disks
 * switched, nothing started or decided); the agent "agent-mid-switch" (one
 * member switched, the others not). Without -DLOCKSTEP_FAILPOINTS=ON this is
 * an empty function: a release build reads no environment here. */
void failpoint_stop(const char *name);
