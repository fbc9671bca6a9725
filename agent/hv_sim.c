/* hv_sim: simulated hosts for scale and fault tests. Domains, latencies and
 * failure points come from a text file that is re-read on every call, so a test
 * can inject a fault while the agent runs. Domain state lives in files (one per
 * domain) so that the guardian process and a restarted agent see it too.
 *
 *   state_dir DIR                  where domain state and fake images live
 *   domain NAME [group=G] [tier=T] [disks=vda,vdb] [state=running|paused|shutoff] [ga=yes|no]
 *   latency OP=MS ...              OP: check ga_ping freeze thaw snapshot discard suspend resume
 *   fail OP VM                     OP returns an error for VM
 *   hang OP VM                     OP takes longer than the guest agent deadline
 *   thaw_early VM                  the guest thaws on its own: thaw finds nothing frozen
 *   nospace VM                     check reports no room for overlays
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "branch.h"
#include "fsutil.h"
#include "hv_backend.h"
#include "imgfile.h"

#define SIM_FILE_MAX (1024 * 1024)
#define SIM_MAX_DOMAINS 4096

struct sim {
        char *path;        /* the sim config */
        unsigned ga_timeout_s;
        unsigned long long min_free;
};

/* Per-call view of the config. */
struct simcfg {
        char state_dir[HV_PATH_MAX];
        char *text; /* the config, for fail/hang lookups */
};

struct simdom {
        int exists;
        char group[LS_NAME_MAX + 1], tier[LS_NAME_MAX + 1];
        char disks[HV_MAX_DISKS][HV_TARGET_MAX];
        unsigned n_disks;
        enum hv_state initial;
        int ga;
};

/* Mutable state of one domain, in <state_dir>/<vm>.state. */
#define SIM_MAX_LINKS 32

struct simstate {
        enum hv_state state;
        int frozen;
        char cur[HV_MAX_DISKS][HV_PATH_MAX];
        /* Backing relations of overlays: link[k] is backed by backing[k]. */
        char link[SIM_MAX_LINKS][HV_PATH_MAX];
        char backing[SIM_MAX_LINKS][HV_PATH_MAX];
        unsigned n_links;
};

static int sim_open(const struct cfg_agent *cfg, void **ret, lserr *err)
{
        struct sim *s;

        if (!cfg->sim_config)
                return lserr_set(err, -EINVAL, "sim backend: sim_config is not set");
        if (access(cfg->sim_config, R_OK) < 0)
                return lserr_set(err, -errno, "sim backend: \"%s\": %m", cfg->sim_config);
        s = calloc(1, sizeof(*s));
        if (!s || !(s->path = strdup(cfg->sim_config))) {
                free(s);
                return -ENOMEM;
        }
        s->ga_timeout_s = cfg->guest_agent_timeout_s ? cfg->guest_agent_timeout_s : 10;
        s->min_free = (unsigned long long)(cfg->min_free_mb ? cfg->min_free_mb : 64) * 1024 * 1024;
        *ret = s;
        return 0;
}

static void sim_close(void *be)
{
        struct sim *s = be;

        if (s)
                free(s->path);
        free(s);
}

static int load(struct sim *s, struct simcfg *c, lserr *err)
{
        size_t len;
        char *line, *save = NULL, *copy;
        int r = fsutil_read_all(s->path, SIM_FILE_MAX, &c->text, &len, err);

        if (r < 0)
                return r;
        c->state_dir[0] = '\0';
        copy = strdup(c->text);
        if (!copy)
                return -ENOMEM;
        for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                if (sscanf(line, "state_dir %1023s", c->state_dir) == 1)
                        break;
        free(copy);
        if (!c->state_dir[0]) {
                free(c->text);
                return lserr_set(err, -EINVAL, "sim config \"%s\": no state_dir line", s->path);
        }
        return fsutil_mkdir_p(c->state_dir, 0700, err);
}

/* Does the config hold the line "<word> <a> <b>" (b may be NULL)? */
static int has_line(const struct simcfg *c, const char *word, const char *a, const char *b)
{
        char want[256];
        const char *p = c->text;
        size_t n;

        if (b)
                snprintf(want, sizeof(want), "%s %s %s", word, a, b);
        else
                snprintf(want, sizeof(want), "%s %s", word, a);
        n = strlen(want);
        while (p && *p) {
                const char *end = strchr(p, '\n');
                size_t len = end ? (size_t)(end - p) : strlen(p);
                while (len && (p[len - 1] == ' ' || p[len - 1] == '\r'))
                        len--;
                if (len == n && memcmp(p, want, n) == 0)
                        return 1;
                p = end ? end + 1 : NULL;
        }
        return 0;
}

/* The last "latency" line naming op wins, so a test can override by appending. */
static unsigned latency_ms(const struct simcfg *c, const char *op)
{
        char key[64];
        const char *p = c->text;
        unsigned ms = 0;

        snprintf(key, sizeof(key), " %s=", op);
        while (p && (p = strstr(p, "latency ")) != NULL) {
                const char *end = strchr(p, '\n'), *k = strstr(p, key);
                if (k && (!end || k < end))
                        ms = (unsigned)strtoul(k + strlen(key), NULL, 10);
                p = end;
        }
        return ms;
}

static int find_domain(const struct simcfg *c, const char *vm, struct simdom *d)
{
        const char *p = c->text;
        size_t vl = strlen(vm);

        memset(d, 0, sizeof(*d));
        while (p && *p) {
                const char *end = strchr(p, '\n');
                if (strncmp(p, "domain ", 7) == 0 && strncmp(p + 7, vm, vl) == 0 &&
                    (p[7 + vl] == ' ' || p[7 + vl] == '\n' || p[7 + vl] == '\0')) {
                        char line[1024], *tok, *save = NULL;
                        size_t len = end ? (size_t)(end - p) : strlen(p);
                        snprintf(line, sizeof(line), "%.*s", (int)len, p);
                        d->exists = 1;
                        d->ga = 1;
                        d->initial = HV_RUNNING;
                        for (tok = strtok_r(line + 7 + vl, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
                                if (!strncmp(tok, "group=", 6))
                                        snprintf(d->group, sizeof(d->group), "%s", tok + 6);
                                else if (!strncmp(tok, "tier=", 5))
                                        snprintf(d->tier, sizeof(d->tier), "%s", tok + 5);
                                else if (!strcmp(tok, "ga=no"))
                                        d->ga = 0;
                                else if (!strcmp(tok, "state=paused"))
                                        d->initial = HV_PAUSED;
                                else if (!strcmp(tok, "state=shutoff"))
                                        d->initial = HV_SHUTOFF;
                                else if (!strncmp(tok, "disks=", 6)) {
                                        char *dsave = NULL;
                                        for (char *dk = strtok_r(tok + 6, ",", &dsave);
                                             dk && d->n_disks < HV_MAX_DISKS; dk = strtok_r(NULL, ",", &dsave))
                                                snprintf(d->disks[d->n_disks++], HV_TARGET_MAX, "%s", dk);
                                }
                        }
                        if (d->n_disks == 0)
                                snprintf(d->disks[d->n_disks++], HV_TARGET_MAX, "vda");
                        return 0;
                }
                p = end ? end + 1 : NULL;
        }
        return LS_ENODOMAIN;
}

/* Serialises state changes across the agent, its guardian and restarts. */
static int lock_state(const struct simcfg *c)
{
        char path[HV_PATH_MAX + 16];
        int fd;

        snprintf(path, sizeof(path), "%s/.lock", c->state_dir);
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0)
                flock(fd, LOCK_EX);
        return fd;
}

static void unlock_state(int fd)
{
        if (fd >= 0)
                close(fd); /* drops the flock */
}

static int read_state(const struct simcfg *c, const char *vm, const struct simdom *d, struct simstate *st)
{
        char path[HV_PATH_MAX + 80], *buf = NULL, *line, *save = NULL;
        size_t len;

        memset(st, 0, sizeof(*st));
        st->state = d->initial;
        for (unsigned i = 0; i < d->n_disks; i++)
                snprintf(st->cur[i], HV_PATH_MAX, "%.600s/img/%s-%s.qcow2", c->state_dir, vm, d->disks[i]);
        snprintf(path, sizeof(path), "%s/%s.state", c->state_dir, vm);
        if (fsutil_read_all(path, 1 << 20, &buf, &len, NULL) < 0)
                return 0;
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
        free(buf);
        return 0;
}

static int write_state(const struct simcfg *c, const char *vm, const struct simdom *d, const struct simstate *st,
                       lserr *err)
{
        char path[HV_PATH_MAX + 80];
        size_t cap = (HV_MAX_DISKS + 2 * SIM_MAX_LINKS) * (2 * HV_PATH_MAX + 16) + 64;
        char *text = malloc(cap);
        int n, r;

        if (!text)
                return -ENOMEM;
        n = snprintf(text, cap, "state %u\nfrozen %d\n", (unsigned)st->state, st->frozen);
        for (unsigned i = 0; i < d->n_disks; i++)
                n += snprintf(text + n, cap - (size_t)n, "disk %u %s\n", i, st->cur[i]);
        for (unsigned k = 0; k < st->n_links; k++)
                n += snprintf(text + n, cap - (size_t)n, "backing %s %s\n", st->link[k], st->backing[k]);
        snprintf(path, sizeof(path), "%s/%s.state", c->state_dir, vm);
        r = fsutil_write_atomic(path, text, (size_t)n, 0600, 0, err);
        free(text);
        return r;
}

/* Common prologue: config, domain, latency, injected failure or hang. */
static int enter(struct sim *s, struct simcfg *c, struct simdom *d, const char *vm, const char *op, lserr *err)
{
        unsigned ms;
        int r = load(s, c, err);

        if (r < 0)
                return r;
        if (find_domain(c, vm, d) < 0) {
                free(c->text);
                return lserr_set(err, LS_ENODOMAIN, "%s: no such domain", op);
        }
        ms = latency_ms(c, op);
        if (ms)
                usleep(ms * 1000);
        if (has_line(c, "hang", op, vm)) {
                sleep(s->ga_timeout_s);
                free(c->text);
                return lserr_set(err, LS_EGATIMEOUT, "%s: guest agent did not answer within %u s", op,
                                 s->ga_timeout_s);
        }
        if (has_line(c, "fail", op, vm)) {
                free(c->text);
                return lserr_set(err, LS_EHV, "%s: injected failure", op);
        }
        return 0;
}

static int find_link(const struct simstate *st, const char *path);

static void fill_domain(const char *vm, const struct simdom *d, const struct simstate *st, struct hv_domain *ret)
{
        int k;

        memset(ret, 0, sizeof(*ret));
        snprintf(ret->name, sizeof(ret->name), "%s", vm);
        ret->state = st->state;
        snprintf(ret->group, sizeof(ret->group), "%s", d->group);
        snprintf(ret->tier, sizeof(ret->tier), "%s", d->tier);
        ret->n_disks = d->n_disks;
        for (unsigned i = 0; i < d->n_disks; i++) {
                snprintf(ret->disks[i].target, HV_TARGET_MAX, "%s", d->disks[i]);
                snprintf(ret->disks[i].path, HV_PATH_MAX, "%s", st->cur[i]);
                k = find_link(st, st->cur[i]);
                snprintf(ret->disks[i].backing, HV_PATH_MAX, "%s", k >= 0 ? st->backing[k] : "");
                snprintf(ret->disks[i].format, sizeof(ret->disks[i].format), "qcow2");
        }
}

static int sim_lookup(void *be, const char *vm, struct hv_domain *ret, lserr *err)
{
        struct simcfg c;
        struct simdom d;
        struct simstate st;
        int r = enter(be, &c, &d, vm, "lookup", err), fd;

        if (r < 0)
                return r;
        fd = lock_state(&c);
        read_state(&c, vm, &d, &st);
        unlock_state(fd);
        fill_domain(vm, &d, &st, ret);
        free(c.text);
        return 0;
}

static int sim_list(void *be, struct hv_domain **ret, size_t *ret_n, lserr *err)
{
        struct sim *s = be;
        struct simcfg c;
        struct hv_domain *out;
        size_t n = 0;
        const char *p;
        int r = load(s, &c, err);

        if (r < 0)
                return r;
        out = calloc(SIM_MAX_DOMAINS, sizeof(*out));
        if (!out) {
                free(c.text);
                return -ENOMEM;
        }
        for (p = c.text; p && *p && n < SIM_MAX_DOMAINS;) {
                const char *end = strchr(p, '\n');
                char vm[LS_NAME_MAX + 1];
                if (sscanf(p, "domain %64s", vm) == 1) {
                        struct simdom d;
                        struct simstate st;
                        int fd = lock_state(&c);
                        find_domain(&c, vm, &d);
                        read_state(&c, vm, &d, &st);
                        unlock_state(fd);
                        fill_domain(vm, &d, &st, &out[n++]);
                }
                p = end ? end + 1 : NULL;
        }
        free(c.text);
        *ret = out;
        *ret_n = n;
        return 0;
}

static int sim_check(void *be, const char *vm, const char *txid, unsigned flags, lserr *err)
{
        struct sim *s = be;
        struct simcfg c;
        struct simdom d;
        struct simstate st;
        char dir[HV_PATH_MAX + 8];
        int r = enter(be, &c, &d, vm, "check", err), fd;

        if (r < 0)
                return r;
        fd = lock_state(&c);
        read_state(&c, vm, &d, &st);
        unlock_state(fd);
        /* Overlays go beside the images: their directory exists before the first one. */
        snprintf(dir, sizeof(dir), "%s/img", c.state_dir);
        r = fsutil_mkdir_p(dir, 0700, err);
        if (r == 0 && st.state == HV_PAUSED && (flags & HV_CHECK_QUIESCE))
                r = lserr_set(err, LS_EPAUSED, "check: domain is paused, fsfreeze cannot run in it");
        else if (r == 0 && st.state != HV_RUNNING && st.state != HV_PAUSED)
                r = lserr_set(err, LS_ENOTRUNNING, "check: domain is not running");
        else if (r == 0 && has_line(&c, "nospace", vm, NULL))
                r = lserr_set(err, LS_ENOSPACE, "check: disk %s: no space for the overlay", d.disks[0]);
        for (unsigned i = 0; r == 0 && i < d.n_disks; i++) {
                char overlay[HV_PATH_MAX];
                lserr e2 = {0};
                /* The simulated images are real files: the file checks are the real ones. */
                if (imgfile_overlay(st.cur[i], vm, d.disks[i], txid, overlay, sizeof(overlay)) < 0)
                        r = lserr_set(err, LS_EDISK, "validate: disk %s: overlay path too long", d.disks[i]);
                else if ((r = imgfile_check_new("overlay", overlay, HV_PATH_MAX, s->min_free, &e2)) < 0)
                        r = lserr_set(err, r, "validate: disk %s: %s", d.disks[i], e2.msg);
        }
        free(c.text);
        return r;
}

static int sim_ga_ping(void *be, const char *vm, int timeout_s, lserr *err)
{
        struct simcfg c;
        struct simdom d;
        int r = enter(be, &c, &d, vm, "ga_ping", err);

        (void)timeout_s;
        if (r < 0)
                return r;
        if (!d.ga)
                r = lserr_set(err, LS_ENOGA, "guest-ping: guest agent is not connected");
        free(c.text);
        return r;
}

/* Applies one state change under the lock. */
static int change(struct sim *s, const char *vm, const char *op, int (*fn)(const char *, struct simdom *,
                                                                            struct simstate *, lserr *),
                  lserr *err)
{
        struct simcfg c;
        struct simdom d;
        struct simstate st;
        int r = enter(s, &c, &d, vm, op, err), fd, w;

        if (r < 0)
                return r;
        fd = lock_state(&c);
        read_state(&c, vm, &d, &st);
        r = fn(vm, &d, &st, err);
        if (r >= 0 && has_line(&c, "thaw_early", vm, NULL) && !strcmp(op, "thaw"))
                r = 0;
        w = write_state(&c, vm, &d, &st, err);
        unlock_state(fd);
        free(c.text);
        return w < 0 ? w : r;
}

static int do_freeze(const char *vm, struct simdom *d, struct simstate *st, lserr *err)
{
        if (!d->ga)
                return lserr_set(err, LS_ENOGA, "fsfreeze: guest agent is not connected");
        if (st->state != HV_RUNNING)
                return lserr_set(err, st->state == HV_PAUSED ? LS_EPAUSED : LS_ENOTRUNNING,
                                 "fsfreeze: domain is not running");
        st->frozen = 1;
        return (int)d->n_disks;
}

static int do_thaw(const char *vm, struct simdom *d, struct simstate *st, lserr *err)
{
        int was = st->frozen;

        (void)vm;
        (void)err;
        st->frozen = 0;
        return was ? (int)d->n_disks : 0;
}

static int do_suspend(const char *vm, struct simdom *d, struct simstate *st, lserr *err)
{
        (void)d;
        if (st->state != HV_RUNNING && st->state != HV_PAUSED)
                return lserr_set(err, LS_ENOTRUNNING, "suspend: domain is not running");
        st->state = HV_PAUSED;
        return 0;
}

static int do_resume(const char *vm, struct simdom *d, struct simstate *st, lserr *err)
{
        (void)d;
        if (st->state == HV_PAUSED)
                st->state = HV_RUNNING;
        else if (st->state != HV_RUNNING)
                return lserr_set(err, LS_ENOTRUNNING, "resume: domain is not running");
        return 0;
}

static int sim_freeze(void *be, const char *vm, lserr *err)
{
        return change(be, vm, "freeze", do_freeze, err);
}

static int sim_thaw(void *be, const char *vm, lserr *err)
{
        return change(be, vm, "thaw", do_thaw, err);
}

static int sim_suspend(void *be, const char *vm, lserr *err)
{
        return change(be, vm, "suspend", do_suspend, err);
}

static int sim_resume(void *be, const char *vm, lserr *err)
{
        return change(be, vm, "resume", do_resume, err);
}

static int touch(const char *path, lserr *err)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

        if (fd < 0)
                return lserr_set(err, errno == EEXIST ? LS_EOVERLAYEXISTS : -errno, "\"%s\": create: %m", path);
        close(fd);
        return 0;
}

static int sim_snapshot(void *be, const char *vm, const char *txid, int with_memory, struct hv_image *ret,
                        size_t *ret_n, lserr *err)
{
        struct simcfg c;
        struct simdom d;
        struct simstate st;
        char dir[HV_PATH_MAX + 8];
        int r = enter(be, &c, &d, vm, "snapshot", err), fd;

        if (r < 0)
                return r;
        snprintf(dir, sizeof(dir), "%s/img", c.state_dir);
        r = fsutil_mkdir_p(dir, 0700, err);
        fd = lock_state(&c);
        read_state(&c, vm, &d, &st);
        if (r == 0 && st.state != HV_RUNNING && st.state != HV_PAUSED)
                r = lserr_set(err, LS_ENOTRUNNING, "snapshot: domain is not running");
        for (unsigned i = 0; r == 0 && i < d.n_disks; i++) {
                /* The base image exists as a file so overlay checks are real. */
                if (access(st.cur[i], F_OK) < 0)
                        r = touch(st.cur[i], err);
                snprintf(ret[i].target, HV_TARGET_MAX, "%s", d.disks[i]);
                snprintf(ret[i].before, HV_PATH_MAX, "%s", st.cur[i]);
                if (imgfile_overlay(st.cur[i], vm, d.disks[i], txid, ret[i].after, HV_PATH_MAX) < 0)
                        r = lserr_set(err, LS_EDISK, "snapshot: disk %s: overlay path too long", d.disks[i]);
                if (r == 0)
                        r = touch(ret[i].after, err);
        }
        if (r == 0 && st.n_links + d.n_disks > SIM_MAX_LINKS)
                r = lserr_set(err, LS_EDISK, "snapshot: the simulated chain is full");
        if (r == 0 && with_memory) {
                char mem[HV_PATH_MAX];
                r = imgfile_memory(ret[0].before, vm, txid, mem, sizeof(mem)) < 0
                            ? lserr_set(err, LS_EDISK, "snapshot: memory state path too long")
                            : touch(mem, err);
        }
        if (r == 0) {
                for (unsigned i = 0; i < d.n_disks; i++) {
                        snprintf(st.cur[i], HV_PATH_MAX, "%s", ret[i].after);
                        snprintf(st.link[st.n_links], HV_PATH_MAX, "%s", ret[i].after);
                        snprintf(st.backing[st.n_links++], HV_PATH_MAX, "%s", ret[i].before);
                }
                r = write_state(&c, vm, &d, &st, err);
                *ret_n = d.n_disks;
        }
        unlock_state(fd);
        free(c.text);
        return r;
}

static int find_link(const struct simstate *st, const char *path)
{
        for (unsigned k = 0; k < st->n_links; k++)
                if (!strcmp(st->link[k], path))
                        return (int)k;
        return -1;
}

static void drop_link(struct simstate *st, const char *path)
{
        int k = find_link(st, path);

        if (k < 0)
                return;
        st->n_links--;
        if ((unsigned)k != st->n_links) {
                memcpy(st->link[k], st->link[st->n_links], HV_PATH_MAX);
                memcpy(st->backing[k], st->backing[st->n_links], HV_PATH_MAX);
        }
}

/* Walks disk i's chain from the active layer down to the layer of cut `cut`:
 * its link index, and in *ret_child the layer above it (NULL when it is the
 * active one); -1 when it is not there. */
static int walk_to_layer(const struct simstate *st, unsigned i, const char *cut, int legacy, const char **ret_child)
{
        const char *layer = st->cur[i];
        int k;

        *ret_child = NULL;
        while ((k = find_link(st, layer)) >= 0) {
                char old[HV_PATH_MAX];
                /* An older cut's overlay is exactly "<its base>.<name>.qcow2". */
                if (legacy ? imgfile_legacy(st->backing[k], cut, "qcow2", old, sizeof(old)) == 0 && !strcmp(old, layer)
                           : imgfile_is_layer(layer, cut))
                        return k;
                *ret_child = layer;
                layer = st->backing[k];
        }
        return -1;
}

/* The link of the layer right above file `image` in disk i's chain, and in
 * *ret_child the layer above that (NULL when it is the active one); -1 when
 * image is not in the chain or nothing sits on it. */
static int layer_above(const struct simstate *st, unsigned i, const char *image, const char **ret_child)
{
        const char *layer = st->cur[i];
        int k;

        *ret_child = NULL;
        while ((k = find_link(st, layer)) >= 0) {
                if (!strcmp(st->backing[k], image))
                        return k;
                *ret_child = layer;
                layer = st->backing[k];
        }
        return -1;
}

/* The layer of cut txid, or of an older cut's name `legacy`. */
static int layer_of(const struct simstate *st, unsigned i, const char *txid, const char *legacy,
                    const char **ret_child)
{
        int k = walk_to_layer(st, i, txid, 0, ret_child);

        if (k < 0 && legacy && legacy[0] && strcmp(legacy, txid))
                k = walk_to_layer(st, i, legacy, 1, ret_child);
        return k;
}

/* Merges the overlay of cut txid into its backing image, on every disk: the
 * active layer goes back to the backing image, a deeper layer's child is
 * re-pointed at it. Already merged: nothing to do. */
static int sim_delete_cut(void *be, const char *vm, const char *txid, const char *legacy,
                          const struct hv_delete_hints *hints, struct hv_image *ret, size_t *ret_n, lserr *err)
{
        struct simcfg c;
        struct simdom d;
        struct simstate st;
        unsigned merged = 0;
        int r = enter(be, &c, &d, vm, "delete", err), fd;

        if (r < 0)
                return r;
        fd = lock_state(&c);
        read_state(&c, vm, &d, &st);
        for (unsigned i = 0; i < d.n_disks; i++) {
                const char *child;
                int k = layer_of(&st, i, txid, legacy, &child);
                /* No layer of the cut left, but its image with a revert's
                 * overlay on it: that overlay goes (see hv_delete_cut). */
                for (size_t h = 0; k < 0 && hints && h < hints->n_images; h++)
                        if (!strcmp(hints->images[h].target, d.disks[i])) {
                                k = layer_above(&st, i, hints->images[h].before, &child);
                                if (k >= 0 && !imgfile_is_overlay_of(st.link[k], vm, d.disks[i], hints->reverts,
                                                                     hints->n_reverts))
                                        k = -1;
                        }
                if (k < 0)
                        continue;
                const char *layer = st.link[k];
                char gone[HV_PATH_MAX], base[HV_PATH_MAX];
                snprintf(gone, sizeof(gone), "%s", layer);
                snprintf(base, sizeof(base), "%s", st.backing[k]);
                if (!child)
                        snprintf(st.cur[i], HV_PATH_MAX, "%s", base);
                else
                        snprintf(st.backing[find_link(&st, child)], HV_PATH_MAX, "%s", base);
                drop_link(&st, gone);
                if (unlink(gone) < 0 && errno != ENOENT) {
                        r = lserr_set(err, -errno, "delete: disk %s: remove \"%s\": %m", d.disks[i], gone);
                        break;
                }
                snprintf(ret[merged].target, HV_TARGET_MAX, "%s", d.disks[i]);
                snprintf(ret[merged].before, HV_PATH_MAX, "%s", base);
                snprintf(ret[merged].after, HV_PATH_MAX, "%s", gone);
                merged++;
        }
        if (r == 0)
                r = write_state(&c, vm, &d, &st, err);
        unlock_state(fd);
        free(c.text);
        *ret_n = merged;
        return r;
}

static int sim_backing(void *ctx, const char *path, char *out, lserr *err)
{
        const struct simstate *st = ctx;
        int k = find_link(st, path);

        (void)err;
        if (access(path, F_OK) < 0)
                return -ENOENT;
        snprintf(out, HV_PATH_MAX, "%s", k >= 0 ? st->backing[k] : "");
        return 0;
}

struct sim_branch_ctx {
        const struct simstate *st;
        const char *vm, *target;
};

static int sim_ours(void *ctx, const char *path)
{
        const struct sim_branch_ctx *b = ctx;
        char id[LS_NAME_MAX + 1];

        return imgfile_layer_txid(path, b->vm, b->target, id, sizeof(id)) == 0;
}

static int sim_backing_of(void *ctx, const char *path, char *out, lserr *err)
{
        const struct sim_branch_ctx *b = ctx;

        return sim_backing((void *)b->st, path, out, err);
}

static int sim_drop_branch(void *be, const char *vm, const struct hv_image *branch, size_t n, const char *const *keep,
                           size_t n_keep, struct hv_removed **ret, size_t *ret_n, lserr *err)
{
        struct simcfg c;
        struct simdom d;
        struct simstate st;
        struct hv_removed *out = NULL;
        const char *roots[HV_MAX_DISKS + 64];
        char(*own)[HV_PATH_MAX] = NULL;
        size_t n_out = 0, n_own = 0, n_roots = 0;
        int r = enter(be, &c, &d, vm, "drop_branch", err), fd;

        if (r < 0)
                return r;
        if (n_keep > 64) {
                free(c.text);
                return lserr_set(err, -E2BIG, "drop branch: more than 64 kept branches");
        }
        fd = lock_state(&c);
        read_state(&c, vm, &d, &st);
        for (unsigned i = 0; i < d.n_disks; i++)
                roots[n_roots++] = st.cur[i];
        for (size_t i = 0; i < n_keep; i++)
                roots[n_roots++] = keep[i];
        for (size_t i = 0; r == 0 && i < n; i++) {
                free(own);
                own = NULL;
                struct sim_branch_ctx bc = {&st, vm, branch[i].target};
                r = branch_own_files(branch[i].branch, roots, n_roots, sim_backing_of, sim_ours, &bc, &own, &n_own,
                                     err);
                for (size_t k = n_own; r == 0 && k-- > 0;) {
                        char cut[LS_NAME_MAX + 1], mem[HV_PATH_MAX];
                        struct hv_removed *p;
                        if (unlink(own[k]) < 0 && errno != ENOENT) {
                                r = lserr_set(err, -errno, "drop branch: remove \"%s\": %m", own[k]);
                                break;
                        }
                        drop_link(&st, own[k]);
                        p = realloc(out, (n_out + 1) * sizeof(*out));
                        if (!p) {
                                r = -ENOMEM;
                                break;
                        }
                        out = p;
                        snprintf(out[n_out].target, HV_TARGET_MAX, "%s", branch[i].target);
                        snprintf(out[n_out].path, HV_PATH_MAX, "%s", own[k]);
                        n_out++;
                        if (k + 1 < n_own && imgfile_layer_txid(own[k], vm, branch[i].target, cut, sizeof(cut)) == 0 &&
                            imgfile_memory(own[k], vm, cut, mem, sizeof(mem)) == 0)
                                unlink(mem);
                }
        }
        if (r == 0)
                r = write_state(&c, vm, &d, &st, err);
        unlock_state(fd);
        free(c.text);
        free(own);
        *ret = out;
        *ret_n = n_out;
        return r;
}

static int sim_check_images(void *be, const char *vm, const struct hv_image *imgs, size_t n, lserr *err)
{
        struct simcfg c;
        struct simdom d;
        int r = enter(be, &c, &d, vm, "check_images", err);

        if (r < 0)
                return r;
        for (size_t i = 0; r == 0 && i < n; i++) {
                if (access(imgs[i].before, F_OK) < 0)
                        r = lserr_set(err, LS_EIMAGE, "prepare: disk %s: image \"%s\" is missing",
                                      imgs[i].target, imgs[i].before);
                else if (has_line(&c, "corrupt", vm, NULL))
                        r = lserr_set(err, LS_ECORRUPT, "prepare: disk %s: image \"%s\" fails its check",
                                      imgs[i].target, imgs[i].before);
        }
        free(c.text);
        return r;
}

static int sim_cut_images(void *be, const char *vm, const char *txid, const char *legacy, struct hv_image *ret,
                          size_t *ret_n, lserr *err)
{
        struct simcfg c;
        struct simdom d;
        struct simstate st;
        int r = enter(be, &c, &d, vm, "cut_images", err), fd;

        if (r < 0)
                return r;
        fd = lock_state(&c);
        read_state(&c, vm, &d, &st);
        unlock_state(fd);
        free(c.text);
        for (unsigned i = 0; i < d.n_disks; i++) {
                const char *child;
                int k = layer_of(&st, i, txid, legacy, &child);
                if (k < 0)
                        return lserr_set(err, LS_EIMAGE, "prepare: disk %s: no layer of cut %s in its chain",
                                         d.disks[i], txid);
                memset(&ret[i], 0, sizeof(ret[i]));
                snprintf(ret[i].target, HV_TARGET_MAX, "%s", d.disks[i]);
                snprintf(ret[i].before, HV_PATH_MAX, "%s", st.backing[k]);
                snprintf(ret[i].branch, HV_PATH_MAX, "%s", st.cur[i]);
        }
        *ret_n = d.n_disks;
        return sim_check_images(be, vm, ret, d.n_disks, err);
}

static int do_stop(const char *vm, struct simdom *d, struct simstate *st, lserr *err)
{
        (void)vm;
        (void)d;
        (void)err;
        st->state = HV_SHUTOFF;
        st->frozen = 0;
        return 0;
}

static int do_start(const char *vm, struct simdom *d, struct simstate *st, lserr *err)
{
        (void)d;
        if (st->state == HV_RUNNING)
                return 0;
        if (st->state != HV_SHUTOFF)
                return lserr_set(err, LS_EHV, "start: domain is not shut off");
        st->state = HV_RUNNING;
        return 0;
}

static int sim_stop(void *be, const char *vm, unsigned timeout_ms, lserr *err)
{
        (void)timeout_ms;
        return change(be, vm, "stop", do_stop, err);
}

static int sim_start(void *be, const char *vm, lserr *err)
{
        return change(be, vm, "start", do_start, err);
}

static int sim_restore(void *be, const char *vm, const char *memfile, lserr *err)
{
        if (access(memfile, F_OK) < 0)
                return lserr_set(err, LS_EIMAGE, "restore: memory state \"%s\": %m", memfile);
        return change(be, vm, "start", do_start, err);
}

static int sim_point_disks(void *be, const char *vm, struct hv_image *imgs, size_t n, const char *tag, lserr *err)
{
        struct simcfg c;
        struct simdom d;
        struct simstate st;
        int r = enter(be, &c, &d, vm, "point_disks", err), fd;

        if (r < 0)
                return r;
        fd = lock_state(&c);
        read_state(&c, vm, &d, &st);
        if (st.state != HV_SHUTOFF)
                r = lserr_set(err, LS_EHV, "switch: domain is not shut off");
        for (size_t k = 0; r == 0 && k < n; k++) {
                for (unsigned i = 0; i < d.n_disks; i++) {
                        if (strcmp(d.disks[i], imgs[k].target))
                                continue;
                        if (tag) {
                                if (imgfile_overlay(imgs[k].before, vm, imgs[k].target, tag, imgs[k].after,
                                                    HV_PATH_MAX) < 0) {
                                        r = lserr_set(err, LS_EDISK, "switch: disk %s: overlay path too long",
                                                      imgs[k].target);
                                        break;
                                }
                                if (access(imgs[k].after, F_OK) < 0 && (r = touch(imgs[k].after, err)) < 0)
                                        break;
                                if (find_link(&st, imgs[k].after) < 0 && st.n_links < SIM_MAX_LINKS) {
                                        snprintf(st.link[st.n_links], HV_PATH_MAX, "%s", imgs[k].after);
                                        snprintf(st.backing[st.n_links++], HV_PATH_MAX, "%s", imgs[k].before);
                                }
                        } else {
                                snprintf(imgs[k].after, HV_PATH_MAX, "%s", imgs[k].before);
                        }
                        snprintf(st.cur[i], HV_PATH_MAX, "%s", imgs[k].after);
                }
        }
        if (r == 0)
                r = write_state(&c, vm, &d, &st, err);
        unlock_state(fd);
        free(c.text);
        return r;
}

/* Hooks are recorded (one line per run in <state_dir>/hooks.log) so tests see
 * them; "fail guest_run VM" makes them fail. */
static int sim_guest_run(void *be, const char *vm, const char *command, unsigned timeout_ms, lserr *err)
{
        struct simcfg c;
        struct simdom d;
        char path[HV_PATH_MAX + 16];
        FILE *f;
        int r = enter(be, &c, &d, vm, "guest_run", err);

        (void)timeout_ms;
        if (r < 0)
                return r == LS_EHV ? lserr_set(err, LS_EHOOK, "hook: exit code 1") : r;
        if (!d.ga)
                r = lserr_set(err, LS_ENOGA, "hook: guest agent is not connected");
        snprintf(path, sizeof(path), "%s/hooks.log", c.state_dir);
        f = r == 0 ? fopen(path, "a") : NULL;
        if (f) {
                fprintf(f, "%s %s\n", vm, command);
                fclose(f);
        }
        free(c.text);
        return r;
}

static int sim_discard(void *be, const char *vm, const char *txid, const struct hv_image *imgs, size_t n,
                       lserr *err)
{
        struct simcfg c;
        struct simdom d;
        struct simstate st;
        int r = enter(be, &c, &d, vm, "discard", err), fd;

        if (r < 0)
                return r;
        if (n) {
                char mem[HV_PATH_MAX];
                if (imgfile_memory(imgs[0].before, vm, txid, mem, sizeof(mem)) == 0)
                        unlink(mem);
        }
        fd = lock_state(&c);
        read_state(&c, vm, &d, &st);
        for (size_t k = 0; k < n; k++)
                for (unsigned i = 0; i < d.n_disks; i++)
                        if (!strcmp(d.disks[i], imgs[k].target) && !strcmp(st.cur[i], imgs[k].after))
                                snprintf(st.cur[i], HV_PATH_MAX, "%s", imgs[k].before);
        for (size_t k = 0; k < n; k++)
                drop_link(&st, imgs[k].after);
        r = write_state(&c, vm, &d, &st, err);
        for (size_t k = 0; r == 0 && k < n; k++)
                if (unlink(imgs[k].after) < 0 && errno != ENOENT)
                        r = lserr_set(err, -errno, "discard: remove \"%s\": %m", imgs[k].after);
        unlock_state(fd);
        free(c.text);
        return r;
}

const struct hv_ops hv_sim_ops = {
        .name = "sim",
        .open = sim_open,
        .close = sim_close,
        .list = sim_list,
        .lookup = sim_lookup,
        .check = sim_check,
        .ga_ping = sim_ga_ping,
        .freeze = sim_freeze,
        .thaw = sim_thaw,
        .suspend = sim_suspend,
        .resume = sim_resume,
        .snapshot = sim_snapshot,
        .discard = sim_discard,
        .delete_cut = sim_delete_cut,
        .drop_branch = sim_drop_branch,
        .cut_images = sim_cut_images,
        .check_images = sim_check_images,
        .stop = sim_stop,
        .start = sim_start,
        .point_disks = sim_point_disks,
        .guest_run = sim_guest_run,
        .restore = sim_restore,
};
