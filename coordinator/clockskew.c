/* clockskew: how far an agent's clock is from ours, from its signed replies. */
#include "clockskew.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lserr.h"

int clockskew_offset(long long now_us, long long sent_us, long long recv_us, long long *ret_offset_us,
                     long long *ret_err_us)
{
        if (now_us <= 0 || sent_us <= 0 || recv_us < sent_us)
                return -ENODATA;
        *ret_err_us = (recv_us - sent_us) / 2;
        *ret_offset_us = now_us - (sent_us + *ret_err_us);
        return 0;
}

int clockskew_refused(const Lockstep__Reply *rep)
{
        return rep->code == LOCKSTEP__ERROR_CODE__E_REJECTED &&
               (rep->reject_reason == LS_EEXPIRED || rep->reject_reason == LS_EFUTURE);
}

/* Whole seconds, rounded half away from zero, without the sign. */
static long long abs_s(long long us)
{
        if (us < 0)
                us = -us;
        return (us + 500000) / 1000000;
}

/* The agent prefixes its refusals with "ID: command refused: "; what follows is the why. */
static const char *bare_why(const char *agent, const char *why)
{
        static const char mid[] = ": command refused: ";
        size_t n = strlen(agent);

        if (!strncmp(why, agent, n) && !strncmp(why + n, mid, sizeof(mid) - 1))
                return why + n + sizeof(mid) - 1;
        return why;
}

void clockskew_refusal_text(const char *agent, const char *step, const char *why, long long offset_us,
                            long long err_us, char *out, size_t n)
{
        const char *w = bare_why(agent, why ? why : "");
        long long mag = offset_us < 0 ? -offset_us : offset_us;

        if (mag <= err_us + 1000000)
                snprintf(out, n,
                         "agent \"%s\": %s refused for its time (%.300s), but its clock agrees with lockstepd's "
                         "within %lld ms: the command was that late in transit (a slow or stalled link or process)",
                         agent, step, w, (err_us + 1000000) / 1000);
        else if (offset_us > 0)
                snprintf(out, n,
                         "agent \"%s\": clock is %lld s ahead of lockstepd's (%s refused: %.300s); fix the host's "
                         "time (NTP)",
                         agent, abs_s(offset_us), step, w);
        else
                snprintf(out, n,
                         "agent \"%s\": clock is %lld s behind lockstepd's (%s refused: %.300s); fix the host's "
                         "time (NTP)",
                         agent, abs_s(offset_us), step, w);
}

void clockskew_warning(long long offset_us, char *out, size_t n)
{
        long long mag = offset_us < 0 ? -offset_us : offset_us;

        if (mag <= CLOCKSKEW_WARN_US)
                snprintf(out, n, "%s", "");
        else
                snprintf(out, n,
                         "clock is %lld s %s lockstepd's, over half the agents' default 30 s time window: its "
                         "commands are refused once it is past its window; fix the host's time (NTP)",
                         abs_s(offset_us), offset_us > 0 ? "ahead of" : "behind");
}
