/* sim_power: a simulated domain's run state, kept in its state file:
 * suspend, resume, stop, start, restore. */
#include <unistd.h>

#include "sim_power.h"
#include "sim_state.h"

static int do_suspend(const struct simcfg *c, const char *vm, const struct simdom *d, struct simstate *st,
                      lserr *err)
{
        (void)c;
        (void)vm;
        (void)d;
        if (st->state != HV_RUNNING && st->state != HV_PAUSED)
                return lserr_set(err, LS_ENOTRUNNING, "suspend: domain is not running");
        st->state = HV_PAUSED;
        return 0;
}

static int do_resume(const struct simcfg *c, const char *vm, const struct simdom *d, struct simstate *st,
                     lserr *err)
{
        (void)c;
        (void)vm;
        (void)d;
        if (st->state == HV_PAUSED)
                st->state = HV_RUNNING;
        else if (st->state != HV_RUNNING)
                return lserr_set(err, LS_ENOTRUNNING, "resume: domain is not running");
        return 0;
}

static int do_stop(const struct simcfg *c, const char *vm, const struct simdom *d, struct simstate *st, lserr *err)
{
        (void)c;
        (void)vm;
        (void)d;
        (void)err;
        st->state = HV_SHUTOFF;
        st->frozen = 0;
        return 0;
}

static int do_start(const struct simcfg *c, const char *vm, const struct simdom *d, struct simstate *st,
                    lserr *err)
{
        (void)c;
        (void)vm;
        (void)d;
        if (st->state == HV_RUNNING)
                return 0;
        if (st->state != HV_SHUTOFF)
                return lserr_set(err, LS_EHV, "start: domain is not shut off");
        st->state = HV_RUNNING;
        return 0;
}

int sim_power_suspend(void *be, const char *vm, lserr *err)
{
        return sim_state_change(be, vm, "suspend", do_suspend, err);
}

int sim_power_resume(void *be, const char *vm, lserr *err)
{
        return sim_state_change(be, vm, "resume", do_resume, err);
}

int sim_power_stop(void *be, const char *vm, unsigned timeout_ms, lserr *err)
{
        (void)timeout_ms;
        return sim_state_change(be, vm, "stop", do_stop, err);
}

int sim_power_start(void *be, const char *vm, lserr *err)
{
        return sim_state_change(be, vm, "start", do_start, err);
}

int sim_power_restore(void *be, const char *vm, const char *memfile, lserr *err)
{
        if (access(memfile, F_OK) < 0)
                return lserr_set(err, LS_EIMAGE, "restore: memory state \"%s\": %m", memfile);
        return sim_state_change(be, vm, "start", do_start, err);
}
