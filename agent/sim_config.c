/* sim_config: the sim backend's handle and its config file (format in
 * hv_sim.c), re-read on every call so a test can inject a fault while the
 * agent runs. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "sim_config.h"

#define SIM_FILE_MAX (1024 * 1024)

static struct sim *sim_free(struct sim *s)
{
        if (s)
                free(s->path);
        free(s);
        return NULL;
}

static void sim_freep(struct sim **s)
{
        *s = sim_free(*s);
}

int sim_config_open(const struct cfg_agent *cfg, void **ret, lserr *err)
{
        _cleanup_(sim_freep) struct sim *s = NULL;

        if (!cfg->sim_config)
                return lserr_set(err, -EINVAL, "sim backend: sim_config is not set");
        if (access(cfg->sim_config, R_OK) < 0)
                return lserr_set(err, -errno, "sim backend: \"%s\": %m", cfg->sim_config);
        s = calloc(1, sizeof(*s));
        if (!s || !(s->path = strdup(cfg->sim_config)))
                return -ENOMEM;
        s->ga_timeout_s = cfg->guest_agent_timeout_s ? cfg->guest_agent_timeout_s : 10;
        s->min_free = (unsigned long long)(cfg->min_free_mb ? cfg->min_free_mb : 64) * 1024 * 1024;
        *ret = TAKE_PTR(s);
        return 0;
}

void sim_config_close(void *be)
{
        sim_free(be);
}

static int find_state_dir(const char *text, char *state_dir)
{
        _cleanup_free_ char *copy = strdup(text);
        char *line, *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                if (sscanf(line, "state_dir %1023s", state_dir) == 1)
                        break;
        return 0;
}

int sim_config_load(struct sim *s, struct simcfg *c, lserr *err)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r;

        c->text = NULL;
        c->state_dir[0] = '\0';
        r = fsutil_read_all(s->path, SIM_FILE_MAX, &text, &len, err);
        if (r < 0)
                return r;
        r = find_state_dir(text, c->state_dir);
        if (r < 0)
                return r;
        if (!c->state_dir[0])
                return lserr_set(err, -EINVAL, "sim config \"%s\": no state_dir line", s->path);
        r = fsutil_mkdir_p(c->state_dir, 0700, err);
        if (r < 0)
                return r;
        c->text = TAKE_PTR(text);
        return 0;
}

int sim_config_has_line(const struct simcfg *c, const char *word, const char *a, const char *b)
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

/* The words after "domain NAME" in line. */
static void parse_domain(char *line, struct simdom *d)
{
        char *tok, *save = NULL;

        d->exists = 1;
        d->ga = 1;
        d->initial = HV_RUNNING;
        for (tok = strtok_r(line, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
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
                        for (char *dk = strtok_r(tok + 6, ",", &dsave); dk && d->n_disks < HV_MAX_DISKS;
                             dk = strtok_r(NULL, ",", &dsave))
                                snprintf(d->disks[d->n_disks++], HV_TARGET_MAX, "%s", dk);
                }
        }
        if (d->n_disks == 0)
                snprintf(d->disks[d->n_disks++], HV_TARGET_MAX, "vda");
}

int sim_config_domain(const struct simcfg *c, const char *vm, struct simdom *d)
{
        const char *p = c->text;
        size_t vl = strlen(vm);

        memset(d, 0, sizeof(*d));
        while (p && *p) {
                const char *end = strchr(p, '\n');
                if (strncmp(p, "domain ", 7) == 0 && strncmp(p + 7, vm, vl) == 0 &&
                    (p[7 + vl] == ' ' || p[7 + vl] == '\n' || p[7 + vl] == '\0')) {
                        char line[1024];
                        size_t len = end ? (size_t)(end - p) : strlen(p);
                        snprintf(line, sizeof(line), "%.*s", (int)len, p);
                        parse_domain(line + 7 + vl, d);
                        return 0;
                }
                p = end ? end + 1 : NULL;
        }
        return LS_ENODOMAIN;
}

/* "hold OP VM": the call waits, with <state_dir>/held.OP.VM present, until a
 * test removes the line. A test catches an agent inside one member's step this
 * way, on an event instead of a window of latency. */
static int hold(struct sim *s, struct simcfg *cfg, const char *vm, const char *op, lserr *err)
{
        char marker[HV_PATH_MAX + 2 * LS_NAME_MAX + 16];
        int r = 0;

        if (!sim_config_has_line(cfg, "hold", op, vm))
                return 0;
        snprintf(marker, sizeof(marker), "%s/held.%s.%s", cfg->state_dir, op, vm);
        {
                _cleanup_close_ int fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                (void)fd;
        }
        while (r == 0 && sim_config_has_line(cfg, "hold", op, vm)) {
                usleep(20 * 1000);
                sim_config_clear(cfg);
                r = sim_config_load(s, cfg, err);
        }
        unlink(marker);
        return r;
}

/* "fail_once OP VM": the first such call fails as a call on a connection that
 * died does (libvirtd restarted since it was opened); <state_dir>/failed.OP.VM
 * remembers it, for every process of the host. */
static int fail_once(const struct simcfg *cfg, const char *vm, const char *op)
{
        char marker[HV_PATH_MAX + 2 * LS_NAME_MAX + 16];
        int fd;

        if (!sim_config_has_line(cfg, "fail_once", op, vm))
                return 0;
        snprintf(marker, sizeof(marker), "%s/failed.%s.%s", cfg->state_dir, op, vm);
        fd = open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return 0; /* failed once already */
        close(fd);
        return 1;
}

int sim_config_enter(struct sim *s, struct simcfg *c, struct simdom *d, const char *vm, const char *op, lserr *err)
{
        _cleanup_simcfg_ struct simcfg cfg = {0};
        unsigned ms;
        int r = sim_config_load(s, &cfg, err);

        if (r < 0)
                return r;
        if (sim_config_domain(&cfg, vm, d) < 0)
                return lserr_set(err, LS_ENODOMAIN, "%s: no such domain", op);
        r = hold(s, &cfg, vm, op, err);
        if (r < 0)
                return r;
        ms = latency_ms(&cfg, op);
        if (ms)
                usleep(ms * 1000);
        if (sim_config_has_line(&cfg, "hang", op, vm)) {
                sleep(s->ga_timeout_s);
                return lserr_set(err, LS_EGATIMEOUT, "%s: guest agent did not answer within %u s", op,
                                 s->ga_timeout_s);
        }
        if (sim_config_has_line(&cfg, "fail", op, vm))
                return lserr_set(err, LS_EHV, "%s: injected failure", op);
        if (fail_once(&cfg, vm, op))
                return lserr_set(err, LS_EHV, "%s: Cannot write data: Broken pipe (injected: the connection died)", op);
        *c = cfg;
        cfg.text = NULL;
        return 0;
}
