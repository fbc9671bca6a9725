/* clockskew: an agent's clock against lockstepd's, read from the clock every
 * signed reply carries (Reply.now_us), and the words for a command the agent
 * refused because of it. */
#pragma once

#include <stddef.h>

#include "lockstep.pb-c.h"

/* An offset worth a warning while commands still pass: half the agents'
 * default time window (time_window_s, 30 s). */
#define CLOCKSKEW_WARN_US (15 * 1000000LL)

/* The agent's clock minus ours when it signed its reply: its now_us against
 * the middle of sent_us..recv_us (our clock when the command was sealed and
 * when the reply came in), so the round trip is taken out; *ret_err_us is what
 * stays unknown (half the round trip). -ENODATA for a reply without a clock
 * (now_us 0) or times out of order; the outputs are then untouched. */
int clockskew_offset(long long now_us, long long sent_us, long long recv_us, long long *ret_offset_us,
                     long long *ret_err_us);

/* Whether rep refuses the command for its issue time (LS_EEXPIRED, LS_EFUTURE). */
int clockskew_refused(const Lockstep__Reply *rep);

/* Into out, the error for such a refusal of step by agent: how far its clock
 * is from lockstepd's and what to do, with the agent's own words (why, its
 * reply's message). When the clocks agree within err_us + 1 s the command
 * was late in transit instead, and the words say that. */
void clockskew_refusal_text(const char *agent, const char *step, const char *why, long long offset_us,
                            long long err_us, char *out, size_t n);

/* Into out, a warning for an offset beyond CLOCKSKEW_WARN_US that commands
 * still pass; "" when within it. */
void clockskew_warning(long long offset_us, char *out, size_t n);
