/* fuzz_control: a control socket request (what the CLI sends lockstepd) through
 * control_handle. The catalog is real (in memory) and so are prune's plan and the
 * reports; what would start threads, dial agents or reread files (ops, service,
 * engine) is replaced here by stubs that only answer. */
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "fuzzutil.h"

struct daemon *daemon_self;

int ops_launch(struct daemon *d, struct op *op, char ret_id[24], lserr *err)
{
        free(op);
        snprintf(ret_id, 24, "op-1");
        return 0;
}

int ops_poll(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep, char ***strs,
             size_t *n_strs)
{
        rep->done = 1;
        return 0;
}

int ops_known(struct daemon *d, const char *id)
{
        return 0;
}

char *ops_render(ops_render_fn fn, struct daemon *d, const void *a, int as_json, lserr *err)
{
        return strdup(as_json ? "[]" : "");
}

#define RENDER_STUB(name) \
        int name(struct daemon *d, const void *a, int j, FILE *f, lserr *err) { return 0; }
RENDER_STUB(ops_r_cut)
RENDER_STUB(ops_r_cuts)
RENDER_STUB(ops_r_agents)
RENDER_STUB(ops_r_groups)
RENDER_STUB(service_r_schedules)

int service_reload(struct daemon *d, int wait_ms, int *ret_applied, lserr *err)
{
        *ret_applied = 1;
        return 0;
}

int engine_poll_agents(struct engine *e, lserr *err)
{
        return 0;
}

int engine_check(struct engine *e, const char *group, int mode, unsigned lease_s, struct engine_check_member **ret,
                 size_t *ret_n, lserr *err)
{
        *ret = NULL;
        *ret_n = 0;
        return 0;
}

int engine_recover(struct engine *e, engine_event_fn ev, void *arg, unsigned *ret_left, lserr *err)
{
        *ret_left = 0;
        return 0;
}

/* One group, "web", with a retention policy, and an empty catalog. */
static struct daemon *daemon_get(void)
{
        static struct daemon d;
        static struct cfg_coord cfg;
        static struct cfg_group g;
        static struct cfg_member m = {.vm = (char *)"vm1", .agent = (char *)"agent1"};
        static char *tiers[] = {(char *)"default"};
        lserr err = {0};
        char path[128];

        if (d.cat)
                return &d;
        g.name = (char *)"web";
        g.tiers = tiers;
        g.n_tiers = 1;
        g.members = &m;
        g.n_members = 1;
        g.lease_s = 30;
        g.retention.keep_last = 3;
        g.retention.keep_branches = 1;
        cfg.groups = &g;
        cfg.n_groups = 1;
        d.cfg_path = "/nonexistent/coordinator.yaml";
        d.cfg = &cfg;
        pthread_rwlock_init(&d.gen, NULL);
        pthread_mutex_init(&d.lock, NULL);
        snprintf(path, sizeof(path), "%s/catalog.db", fuzz_dir());
        if (cat_open(path, &d.cat, &err) < 0) {
                fprintf(stderr, "catalog: %s\n", err.msg);
                abort();
        }
        daemon_self = &d;
        return &d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint8_t *out = NULL;
        size_t out_len = 0;

        int r = control_handle(daemon_get(), data, size, &out, &out_len);

        fuzz_note("control", r, NULL);
        if (r == 0) {
                Lockstep__ControlReply *rep = lockstep__control_reply__unpack(NULL, out_len, out);
                if (rep) {
                        fuzz_note(rep->error[0] ? rep->error : rep->op[0] ? rep->op : "ok", -rep->exit_code, NULL);
                        lockstep__control_reply__free_unpacked(rep, NULL);
                }
                free(out);
        }
        return 0;
}
