/* sim_ga: the simulated guest agent: ping, fsfreeze and thaw (a flag in the
 * domain's state file), and hooks, recorded so tests see them. */
#include <stdio.h>
#include <string.h>

#include "sim_ga.h"
#include "sim_state.h"

int sim_ga_ping(void *be, const char *vm, int timeout_s, lserr *err)
{
        _cleanup_simcfg_ struct simcfg c = {0};
        struct simdom d;
        int r = sim_config_enter(be, &c, &d, vm, "ga_ping", err);

        (void)timeout_s;
        if (r < 0)
                return r;
        if (!d.ga)
                return lserr_set(err, LS_ENOGA, "guest-ping: guest agent is not connected");
        return 0;
}

static int do_freeze(const struct simcfg *c, const char *vm, const struct simdom *d, struct simstate *st,
                     lserr *err)
{
        (void)c;
        (void)vm;
        if (!d->ga)
                return lserr_set(err, LS_ENOGA, "fsfreeze: guest agent is not connected");
        if (st->state != HV_RUNNING)
                return lserr_set(err, st->state == HV_PAUSED ? LS_EPAUSED : LS_ENOTRUNNING,
                                 "fsfreeze: domain is not running");
        st->frozen = 1;
        return (int)d->n_disks;
}

/* "thaw_early VM": the guest thawed on its own, so thaw finds nothing frozen. */
static int do_thaw(const struct simcfg *c, const char *vm, const struct simdom *d, struct simstate *st, lserr *err)
{
        int was = st->frozen;

        /* As libvirt: no guest agent to ask in a domain that does not run. */
        if (st->state != HV_RUNNING)
                return lserr_set(err, LS_ENOTRUNNING, "fsthaw: domain is not running");
        st->frozen = 0;
        if (sim_config_has_line(c, "thaw_early", vm, NULL))
                return 0;
        return was ? (int)d->n_disks : 0;
}

int sim_ga_freeze(void *be, const char *vm, lserr *err)
{
        return sim_state_change(be, vm, "freeze", do_freeze, err);
}

int sim_ga_thaw(void *be, const char *vm, lserr *err)
{
        return sim_state_change(be, vm, "thaw", do_thaw, err);
}

/* Hooks are recorded (one line per run in <state_dir>/hooks.log: the VM, the
 * hook's name and colon, then its argv, one space between) so tests see them;
 * "fail guest_run VM" makes them fail. */
int sim_ga_run(void *be, const char *vm, const char *name, char *const *argv, unsigned timeout_ms, lserr *err)
{
        _cleanup_simcfg_ struct simcfg c = {0};
        _cleanup_fclose_ FILE *f = NULL;
        struct simdom d;
        char path[HV_PATH_MAX + 16];
        int r = sim_config_enter(be, &c, &d, vm, "guest_run", err);

        (void)timeout_ms;
        if (r < 0)
                return r == LS_EHV ? lserr_set(err, LS_EHOOK, "hook \"%s\": %s exited with code 1", name, argv[0])
                                   : r;
        if (!d.ga)
                return lserr_set(err, LS_ENOGA, "hook \"%s\": guest agent is not connected", name);
        snprintf(path, sizeof(path), "%s/hooks.log", c.state_dir);
        f = fopen(path, "a");
        if (!f)
                return lserr_set(err, LS_EHOOK, "hook \"%s\": cannot record it in %s", name, path);
        fprintf(f, "%s %s:", vm, name);
        for (size_t i = 0; argv[i]; i++)
                fprintf(f, " %s", argv[i]);
        fputc('\n', f);
        return 0;
}
