/* lab-frozenwatch: samples each guest's domain state and guest-agent freeze state
 * every interval and records how long each one stayed held (paused or frozen). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "lserr.h"

#define MAX_VMS 64
#define VM_NAME_MAX 64
#define ERR_MAX 256
/* libvirt's keepalive: a libvirtd that stops answering (stopped, not killed) is
 * dropped after about KA_INTERVAL_S * (KA_COUNT + 1) seconds and reopened. */
#define KA_INTERVAL_S 2
#define KA_COUNT 3

enum obs { OBS_THAWED, OBS_FROZEN, OBS_PAUSED, OBS_UNKNOWN, OBS_GONE };
static const char *const obs_names[] = { "thawed", "frozen", "paused", "unknown", "gone" };

struct watch {
        char name[VM_NAME_MAX + 1];
        const char *uri;
        pthread_t thread;
        virConnectPtr conn;
        bool opened_once; /* so the next successful open counts as a reconnect */
        bool answered;    /* libvirtd has answered once: counts toward "ready" */
        char last_err[ERR_MAX]; /* printed once, not once per poll */
        uint64_t samples, held_samples, unknown_samples, reconnects, held_intervals;
        bool held, in_unknown;
        uint64_t held_since_ms, max_held_ms;
        uint64_t unknown_since_ms, max_unknown_ms;
        uint64_t agent_quiet_until_ms; /* after a failed agent call: leave it alone */
        enum obs last;
};

/* How long a guest agent that failed a status call is not asked again. */
#define AGENT_QUIET_MS 5000

static struct watch watches[MAX_VMS];
static int n_watches;
static unsigned interval_ms = 100;
static unsigned agent_timeout_s = 1;
static uint64_t start_ms;

static atomic_bool stop;
static atomic_int n_answered;
static pthread_mutex_t tick_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tick_cond;

static uint64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* libvirt would print every error to stderr itself; each one is read where it happens. */
static void quiet_errors(void *opaque, virErrorPtr err)
{
}

static void watch_note(struct watch *w, const char *step, const char *why)
{
        char msg[ERR_MAX];

        snprintf(msg, sizeof(msg), "%s: %s", step, why ? why : "unknown error");
        if (strcmp(msg, w->last_err) == 0)
                return;
        memcpy(w->last_err, msg, sizeof(msg));
        fprintf(stderr, "lab-frozenwatch: %s: %s\n", w->name, msg);
}

/* A failed call: note it, and drop a connection libvirt has given up on so the
 * next poll opens a new one (libvirtd may have been killed and restarted). */
static void watch_fail(struct watch *w, const char *step)
{
        watch_note(w, step, virGetLastErrorMessage());
        if (w->conn && virConnectIsAlive(w->conn) != 1) {
                virConnectClose(w->conn);
                w->conn = NULL;
                fprintf(stderr, "lab-frozenwatch: %s: connection lost\n", w->name);
        }
}

/* One virConnectOpen at a time: the first ones set up libxml2's globals inside
 * libvirt, and two at once leak one of its mutexes (LeakSanitizer, now and then). */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;

static int watch_connect(struct watch *w)
{
        pthread_mutex_lock(&open_lock);
        w->conn = virConnectOpen(w->uri);
        pthread_mutex_unlock(&open_lock);
        if (!w->conn) {
                watch_fail(w, "open");
                return -1;
        }
        /* A local driver (test:///) has nothing to keep alive. */
        if (virConnectSetKeepAlive(w->conn, KA_INTERVAL_S, KA_COUNT) < 0 &&
            virGetLastErrorCode() != VIR_ERR_NO_SUPPORT)
                watch_note(w, "keepalive", virGetLastErrorMessage());
        if (w->opened_once) {
                w->reconnects++;
                fprintf(stderr, "lab-frozenwatch: %s: reconnected\n", w->name);
        }
        w->opened_once = true;
        return 0;
}

static void watch_answered(struct watch *w)
{
        if (w->answered)
                return;
        w->answered = true;
        atomic_fetch_add(&n_answered, 1);
}

/* The guest agent's word on the freeze: {"return":"frozen"} or {"return":"thawed"}. */
static enum obs agent_freeze_state(struct watch *w, virDomainPtr dom)
{
        const char *cmd = "{\"execute\":\"guest-fsfreeze-status\"}";
        enum obs o = OBS_UNKNOWN;
        const char *p;
        char *reply;

        /* libvirt runs one agent command per domain at a time: polling a hung
         * guest agent would keep lockstep's own calls waiting behind ours. */
        if (now_ms() < w->agent_quiet_until_ms)
                return OBS_UNKNOWN;
        reply = virDomainQemuAgentCommand(dom, cmd, (int)agent_timeout_s, 0);
        if (!reply) {
                watch_fail(w, "guest-fsfreeze-status");
                w->agent_quiet_until_ms = now_ms() + AGENT_QUIET_MS;
                return OBS_UNKNOWN;
        }
        p = strstr(reply, "\"return\"");
        if (p) {
                p += strlen("\"return\"");
                while (*p == ' ' || *p == ':')
                        p++;
                if (strncmp(p, "\"frozen\"", 8) == 0)
                        o = OBS_FROZEN;
                else if (strncmp(p, "\"thawed\"", 8) == 0)
                        o = OBS_THAWED;
        }
        if (o == OBS_UNKNOWN)
                watch_note(w, "guest-fsfreeze-status", "answer is neither frozen nor thawed");
        free(reply);
        return o;
}

static enum obs watch_observe(struct watch *w)
{
        virDomainPtr dom;
        int state, reason;
        enum obs o;

        if (!w->conn && watch_connect(w) < 0)
                return OBS_UNKNOWN;
        dom = virDomainLookupByName(w->conn, w->name);
        if (!dom) {
                if (virGetLastErrorCode() == VIR_ERR_NO_DOMAIN) {
                        watch_answered(w);
                        return OBS_GONE;
                }
                watch_fail(w, "lookup");
                return OBS_UNKNOWN;
        }
        if (virDomainGetState(dom, &state, &reason, 0) < 0) {
                bool gone = virGetLastErrorCode() == VIR_ERR_NO_DOMAIN;
                if (gone)
                        watch_answered(w);
                else
                        watch_fail(w, "get state");
                virDomainFree(dom);
                return gone ? OBS_GONE : OBS_UNKNOWN;
        }
        watch_answered(w);
        switch (state) {
        case VIR_DOMAIN_PAUSED: o = OBS_PAUSED; break;
        case VIR_DOMAIN_SHUTOFF:
        case VIR_DOMAIN_CRASHED: o = OBS_GONE; break;
        case VIR_DOMAIN_NOSTATE: o = OBS_UNKNOWN; break;
        default: o = agent_freeze_state(w, dom); break;
        }
        virDomainFree(dom);
        return o;
}

/* Folds one observation made at time t into the VM's record. An unknown answer
 * leaves the held state as it was: a frozen guest whose agent stops answering
 * stays frozen as far as anyone knows. */
static void watch_account(struct watch *w, enum obs o, uint64_t t)
{
        bool held;

        w->samples++;
        w->last = o;
        if (o == OBS_UNKNOWN) {
                w->unknown_samples++;
                if (!w->in_unknown) {
                        w->in_unknown = true;
                        w->unknown_since_ms = t;
                }
                return;
        }
        if (w->in_unknown) {
                w->in_unknown = false;
                if (t - w->unknown_since_ms > w->max_unknown_ms)
                        w->max_unknown_ms = t - w->unknown_since_ms;
        }
        held = o == OBS_FROZEN || o == OBS_PAUSED;
        w->held_samples += held;
        if (held && !w->held) {
                w->held = true;
                w->held_since_ms = t;
                w->held_intervals++;
                fprintf(stderr, "lab-frozenwatch: %s: %s at +%" PRIu64 " ms\n", w->name,
                        obs_names[o], t - start_ms);
        } else if (!held && w->held) {
                w->held = false;
                if (t - w->held_since_ms > w->max_held_ms)
                        w->max_held_ms = t - w->held_since_ms;
                fprintf(stderr, "lab-frozenwatch: %s: %s at +%" PRIu64 " ms, held %" PRIu64 " ms\n",
                        w->name, obs_names[o], t - start_ms, t - w->held_since_ms);
        }
}

/* Sleeps until the monotonic time deadline (ms) or until stop is set. */
static void wait_until(uint64_t deadline)
{
        struct timespec ts = { .tv_sec = (time_t)(deadline / 1000u),
                               .tv_nsec = (long)(deadline % 1000u) * 1000000L };

        pthread_mutex_lock(&tick_lock);
        while (!atomic_load(&stop) && now_ms() < deadline)
                if (pthread_cond_timedwait(&tick_cond, &tick_lock, &ts) == ETIMEDOUT)
                        break;
        pthread_mutex_unlock(&tick_lock);
}

static void *watch_run(void *arg)
{
        struct watch *w = arg;
        uint64_t next = now_ms();

        while (!atomic_load(&stop)) {
                enum obs o = watch_observe(w);
                uint64_t t = now_ms();

                watch_account(w, o, t);
                /* A known answer ends the error: the next one is printed again. */
                if (o != OBS_UNKNOWN)
                        w->last_err[0] = '\0';
                next += interval_ms;
                /* A slow poll (agent timeout) is not made up for with a burst of polls. */
                if (next < t)
                        next = t;
                wait_until(next);
        }
        if (w->conn)
                virConnectClose(w->conn);
        w->conn = NULL;
        return NULL;
}

/* Only there to make virEventRunDefaultImpl return now and then, to see stop. */
static void event_tick(int timer, void *opaque)
{
}

/* Runs libvirt's event loop, which sends the keepalive messages. */
static void *event_run(void *arg)
{
        int timer = virEventAddTimeout(100, event_tick, NULL, NULL);

        while (!atomic_load(&stop))
                if (virEventRunDefaultImpl() < 0)
                        break;
        if (timer >= 0)
                virEventRemoveTimeout(timer);
        return NULL;
}

static void json_vm(FILE *f, const struct watch *w, uint64_t t)
{
        uint64_t held_now_ms = w->held ? t - w->held_since_ms : 0;
        uint64_t max_held = w->max_held_ms > held_now_ms ? w->max_held_ms : held_now_ms;
        uint64_t unknown_now = w->in_unknown ? t - w->unknown_since_ms : 0;
        uint64_t max_unknown = w->max_unknown_ms > unknown_now ? w->max_unknown_ms : unknown_now;

        /* Names were checked to be [A-Za-z0-9_.-]: nothing to escape. */
        fprintf(f,
                "{\"vm\":\"%s\",\"samples\":%" PRIu64 ",\"held_samples\":%" PRIu64
                ",\"unknown_samples\":%" PRIu64 ",\"max_held_ms\":%" PRIu64
                ",\"held_now\":%s,\"held_now_ms\":%" PRIu64 ",\"held_intervals\":%" PRIu64
                ",\"max_unknown_run_ms\":%" PRIu64 ",\"reconnects\":%" PRIu64
                ",\"last_state\":\"%s\"}",
                w->name, w->samples, w->held_samples, w->unknown_samples, max_held,
                w->held ? "true" : "false", held_now_ms, w->held_intervals, max_unknown,
                w->reconnects, w->samples ? obs_names[w->last] : "unknown");
}

/* The report, whole or not at all (fsutil_write_atomic): a reader sees the
 * old file or the new one. */
static int write_report(const char *path)
{
        char *buf = NULL;
        size_t len = 0;
        uint64_t t = now_ms();
        lserr err = {0};
        FILE *f = open_memstream(&buf, &len);
        int r;

        if (!f)
                return -errno;
        fprintf(f, "{\"interval_ms\":%u,\"agent_timeout_s\":%u,\"duration_ms\":%" PRIu64 ",\"vms\":[",
                interval_ms, agent_timeout_s, t - start_ms);
        for (int i = 0; i < n_watches; i++) {
                if (i)
                        fputc(',', f);
                json_vm(f, &watches[i], t);
        }
        fputs("]}\n", f);
        r = fclose(f) == 0 ? fsutil_write_atomic(path, buf, len, 0644, 0, &err) : -ENOMEM;
        free(buf);
        return r;
}

static bool name_ok(const char *s, size_t len)
{
        if (len == 0 || len > VM_NAME_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= 'A' && s[i] <= 'Z') &&
                    !(s[i] >= '0' && s[i] <= '9') && s[i] != '_' && s[i] != '-' && s[i] != '.')
                        return false;
        return true;
}

static int add_watch(const char *spec)
{
        const char *eq = strchr(spec, '=');
        struct watch *w;

        if (!eq || !name_ok(spec, (size_t)(eq - spec)) || eq[1] == '\0') {
                fprintf(stderr, "lab-frozenwatch: '%s': want VM=URI, VM of up to %d of [A-Za-z0-9_.-]\n",
                        spec, VM_NAME_MAX);
                return -EINVAL;
        }
        for (int i = 0; i < n_watches; i++)
                if (strlen(watches[i].name) == (size_t)(eq - spec) &&
                    !strncmp(watches[i].name, spec, (size_t)(eq - spec))) {
                        fprintf(stderr, "lab-frozenwatch: '%s': VM named twice\n", spec);
                        return -EEXIST;
                }
        if (n_watches == MAX_VMS) {
                fprintf(stderr, "lab-frozenwatch: '%s': more than %d VMs\n", spec, MAX_VMS);
                return -E2BIG;
        }
        w = &watches[n_watches++];
        memcpy(w->name, spec, (size_t)(eq - spec));
        w->name[eq - spec] = '\0';
        w->uri = eq + 1;
        w->last = OBS_UNKNOWN;
        return 0;
}

static int parse_uint(const char *opt, const char *s, unsigned min, unsigned max, unsigned *ret)
{
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
                fprintf(stderr, "lab-frozenwatch: %s: '%s' is not a number from %u to %u\n", opt, s,
                        min, max);
                return -EINVAL;
        }
        *ret = (unsigned)v;
        return 0;
}

static void usage(FILE *f)
{
        fprintf(f, "usage: lab-frozenwatch [--interval-ms 100] [--agent-timeout-s 1] --out FILE VM=URI...\n"
                   "Polls each VM's state and guest-fsfreeze-status; on SIGTERM/SIGINT writes\n"
                   "how long each was held (paused or frozen) to FILE as JSON. Prints \"ready\"\n"
                   "once every VM's libvirtd has answered.\n");
}

static int parse_args(int argc, char **argv, const char **ret_out)
{
        static const struct option opts[] = {
                { "interval-ms", required_argument, NULL, 'i' },
                { "agent-timeout-s", required_argument, NULL, 'a' },
                { "out", required_argument, NULL, 'o' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        const char *out = NULL;
        int c;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'i':
                        if (parse_uint("--interval-ms", optarg, 10, 60000, &interval_ms) < 0)
                                return -EINVAL;
                        break;
                case 'a':
                        if (parse_uint("--agent-timeout-s", optarg, 1, 60, &agent_timeout_s) < 0)
                                return -EINVAL;
                        break;
                case 'o': out = optarg; break;
                case 'h': usage(stdout); exit(0);
                default: usage(stderr); return -EINVAL;
                }
        }
        if (!out || optind == argc) {
                usage(stderr);
                return -EINVAL;
        }
        for (int i = optind; i < argc; i++)
                if (add_watch(argv[i]) < 0)
                        return -EINVAL;
        *ret_out = out;
        return 0;
}

/* Waits for SIGTERM or SIGINT; says "ready" once every VM's libvirtd has answered. */
static void wait_for_stop(const sigset_t *set)
{
        const struct timespec tick = { .tv_nsec = 20 * 1000000L };
        bool ready = false;

        for (;;) {
                if (!ready && atomic_load(&n_answered) == n_watches) {
                        ready = true;
                        printf("ready\n");
                        fflush(stdout);
                }
                int sig = sigtimedwait(set, NULL, &tick);
                if (sig == SIGTERM || sig == SIGINT)
                        return;
        }
}

static int start_threads(pthread_t *ev)
{
        pthread_condattr_t ca;
        int r;

        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&tick_cond, &ca);
        pthread_condattr_destroy(&ca);
        r = pthread_create(ev, NULL, event_run, NULL);
        if (r) {
                fprintf(stderr, "lab-frozenwatch: event thread: %s\n", strerror(r));
                return -r;
        }
        for (int i = 0; i < n_watches; i++) {
                r = pthread_create(&watches[i].thread, NULL, watch_run, &watches[i]);
                if (r) {
                        fprintf(stderr, "lab-frozenwatch: %s: thread: %s\n", watches[i].name, strerror(r));
                        return -r;
                }
        }
        return 0;
}

int main(int argc, char **argv)
{
        const char *out;
        sigset_t set;
        pthread_t ev;
        int r;

        if (parse_args(argc, argv, &out) < 0)
                return 2;
        /* A write to a libvirtd that died raises SIGPIPE: the call must fail
         * (and the watcher reconnect), not the process die of it. */
        signal(SIGPIPE, SIG_IGN);
        virSetErrorFunc(NULL, quiet_errors);
        if (virInitialize() < 0 || virEventRegisterDefaultImpl() < 0) {
                fprintf(stderr, "lab-frozenwatch: libvirt: initialize: %s\n", virGetLastErrorMessage());
                return 1;
        }
        /* Blocked before any thread starts, so only wait_for_stop takes them. */
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        start_ms = now_ms();
        if (start_threads(&ev) < 0)
                return 1;
        wait_for_stop(&set);

        atomic_store(&stop, true);
        pthread_mutex_lock(&tick_lock);
        pthread_cond_broadcast(&tick_cond);
        pthread_mutex_unlock(&tick_lock);
        for (int i = 0; i < n_watches; i++)
                pthread_join(watches[i].thread, NULL);
        pthread_join(ev, NULL);

        r = write_report(out);
        if (r < 0) {
                fprintf(stderr, "lab-frozenwatch: write '%s': %s\n", out, strerror(-r));
                return 1;
        }
        return 0;
}
