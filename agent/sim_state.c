/* sim_state: a simulated domain's mutable state in <state_dir>/<vm>.state,
 * shared with the guardian and a restarted agent, and the fake image files. */
#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"
#include "sim_state.h"

int sim_state_lock(const struct simcfg *c)
{
        char path[HV_PATH_MAX + 16];
        int fd;

        snprintf(path, sizeof(path), "%s/.lock", c->state_dir);
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0)
                flock(fd, LOCK_EX);
        return fd;
}

void sim_state_read(const struct simcfg *c, const char *vm, const struct simdom *d, struct simstate *st)
{
        char path[HV_PATH_MAX + 80], *line, *save = NULL;
        _cleanup_free_ char *buf = NULL;
        size_t len;

        /* Not a memset: the struct is 80 KB of path buffers, and clearing it
         * on every read was most of the sim's CPU at a hundred agents. */
        st->state = d->initial;
        st->frozen = 0;
        st->n_links = 0;
        for (unsigned i = 0; i < HV_MAX_DISKS; i++)
                if (i < d->n_disks)
                        snprintf(st->cur[i], HV_PATH_MAX, "%.600s/img/%s-%s.qcow2", c->state_dir, vm, d->disks[i]);
                else
                        st->cur[i][0] = '\0';
        snprintf(path, sizeof(path), "%s/%s.state", c->state_dir, vm);
        if (fsutil_read_all(path, 1 << 20, &buf, &len, NULL) < 0)
                return;
        for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                unsigned i, v;
                char p[HV_PATH_MAX], b[HV_PATH_MAX];
                /* A link whose file is gone (an overlay removed outside the sim,
                 * as a revert's rollback does) is dropped, not carried along. */
                if (sscanf(line, "backing %1023s %1023s", p, b) == 2 && st->n_links < SIM_MAX_LINKS &&
                    access(p, F_OK) == 0) {
                        snprintf(st->link[st->n_links], HV_PATH_MAX, "%s", p);
                        snprintf(st->backing[st->n_links++], HV_PATH_MAX, "%s", b);
                } else if (sscanf(line, "state %u", &v) == 1)
                        st->state = (enum hv_state)v;
                else if (sscanf(line, "frozen %u", &v) == 1)
                        st->frozen = (int)v;
                else if (sscanf(line, "disk %u %1023s", &i, p) == 2 && i < HV_MAX_DISKS)
                        snprintf(st->cur[i], HV_PATH_MAX, "%s", p);
        }
}

int sim_state_write(const struct simcfg *c, const char *vm, const struct simdom *d, const struct simstate *st,
                    lserr *err)
{
        char path[HV_PATH_MAX + 80];
        _cleanup_free_ char *text = NULL;
        size_t cap = 64;
        int n;

        assert(d->n_disks <= HV_MAX_DISKS && st->n_links <= SIM_MAX_LINKS);
        /* Sized to the text: the most it could be is past malloc's mmap
         * threshold, and an munmap per write cost a TLB shootdown. */
        for (unsigned i = 0; i < d->n_disks; i++)
                cap += strlen(st->cur[i]) + 32;
        for (unsigned k = 0; k < st->n_links; k++)
                cap += strlen(st->link[k]) + strlen(st->backing[k]) + 16;
        text = malloc(cap);
        if (!text)
                return -ENOMEM;
        n = snprintf(text, cap, "state %u\nfrozen %d\n", (unsigned)st->state, st->frozen);
        for (unsigned i = 0; i < d->n_disks; i++)
                n += snprintf(text + n, cap - (size_t)n, "disk %u %s\n", i, st->cur[i]);
        for (unsigned k = 0; k < st->n_links; k++)
                n += snprintf(text + n, cap - (size_t)n, "backing %s %s\n", st->link[k], st->backing[k]);
        snprintf(path, sizeof(path), "%s/%s.state", c->state_dir, vm);
        /* A hypervisor's state outlives the agent, not the machine: no fsync,
         * which on a shared disk under a host-wide lock put the rig's I/O in
         * every member's freeze at scale. */
        return fsutil_write_atomic(path, text, (size_t)n, 0600, FSUTIL_NOSYNC, err);
}

void sim_state_peek(const struct simcfg *c, const char *vm, const struct simdom *d, struct simstate *st)
{
        _cleanup_close_ int fd = sim_state_lock(c);

        (void)fd; /* the lock is held until return */
        sim_state_read(c, vm, d, st);
}

int sim_state_change(struct sim *s, const char *vm, const char *op, sim_change_fn *fn, lserr *err)
{
        _cleanup_simcfg_ struct simcfg c = {0};
        struct simdom d;
        struct simstate st;
        _cleanup_close_ int fd = -1;
        int r = sim_config_enter(s, &c, &d, vm, op, err), w;

        if (r < 0)
                return r;
        fd = sim_state_lock(&c);
        sim_state_read(&c, vm, &d, &st);
        r = fn(&c, vm, &d, &st, err);
        w = sim_state_write(&c, vm, &d, &st, err);
        /* "lost OP VM": done, but the answer never came back (the connection to
         * the hypervisor broke under it): the caller cannot tell it happened. */
        if (w >= 0 && r >= 0 && sim_config_has_line(&c, "lost", op, vm))
                return lserr_set(err, LS_EHV, "%s: connection to the hypervisor lost before its answer", op);
        return w < 0 ? w : r;
}

int sim_state_touch(const char *path, lserr *err)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

        if (fd < 0)
                return lserr_set(err, errno == EEXIST ? LS_EOVERLAYEXISTS : -errno, "\"%s\": create: %m", path);
        close(fd);
        return 0;
}
