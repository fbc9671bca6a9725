/* lv_ga: guest agent commands: guest-ping, fsfreeze/fsthaw with a deadline,
 * and guest-exec of hook commands polled until they exit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"
#include "lv_conn.h"
#include "lv_err.h"
#include "lv_ga.h"

#include <libvirt/libvirt-qemu.h>

int lv_ga_ping(void *be, const char *vm, int timeout_s, lserr *err)
{
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        _cleanup_free_ char *out = NULL;
        int r = lv_conn_domain(be, vm, "guest-ping", &d, err);

        if (r < 0)
                return r;
        out = virDomainQemuAgentCommand(d, "{\"execute\":\"guest-ping\"}", timeout_s > 0 ? timeout_s : 5, 0);
        if (!out) {
                int code = lv_err_code();
                return lserr_set(err, code == LS_EHV ? LS_ENOGA : code, "guest-ping: %s", lv_err_msg());
        }
        return 0;
}

static int fs_call(struct lv *lv, const char *vm, const char *step, int thaw, lserr *err)
{
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        int r = lv_conn_domain(lv, vm, step, &d, err);

        if (r < 0)
                return r;
        /* Every guest-agent call has a deadline: a hung guest is a "no" vote. */
        virDomainAgentSetResponseTimeout(d, (int)lv->ga_timeout_s, 0);
        r = thaw ? virDomainFSThaw(d, NULL, 0, 0) : virDomainFSFreeze(d, NULL, 0, 0);
        if (r < 0)
                return lv_err_fail(err, step);
        return r;
}

int lv_ga_freeze(void *be, const char *vm, lserr *err)
{
        return fs_call(be, vm, "fsfreeze", 0, err);
}

int lv_ga_thaw(void *be, const char *vm, lserr *err)
{
        return fs_call(be, vm, "fsthaw", 1, err);
}

/* A JSON string literal of s (quotes included). */
static int json_quote(const char *s, char *out, size_t n)
{
        size_t o = 0;

        if (n < 3)
                return -ENAMETOOLONG;
        out[o++] = '"';
        for (; *s; s++) {
                char esc[8];
                const char *rep = esc;
                if (*s == '"' || *s == '\\')
                        snprintf(esc, sizeof(esc), "\\%c", *s);
                else if ((unsigned char)*s < 0x20)
                        snprintf(esc, sizeof(esc), "\\u%04x", (unsigned char)*s);
                else
                        snprintf(esc, sizeof(esc), "%c", *s);
                size_t l = strlen(rep);
                if (o + l + 2 > n)
                        return -ENAMETOOLONG;
                memcpy(out + o, rep, l);
                o += l;
        }
        out[o++] = '"';
        out[o] = '\0';
        return 0;
}

/* The integer after "key": in a guest agent answer, or -1. The answers are
 * small, fixed-shape objects from qemu-ga. */
static long long json_int_field(const char *json, const char *key)
{
        char pat[64];
        const char *p;

        snprintf(pat, sizeof(pat), "\"%s\":", key);
        p = strstr(json, pat);
        if (!p)
                return -1;
        p += strlen(pat);
        while (*p == ' ')
                p++;
        return strtoll(p, NULL, 10);
}

/* Starts command under /bin/sh -c in the guest: its pid, or a negative code. */
static long long exec_start(virDomainPtr d, const char *command, lserr *err)
{
        char quoted[2200], req[2400];
        _cleanup_free_ char *out = NULL;
        long long pid;

        if (json_quote(command, quoted, sizeof(quoted)) < 0)
                return lserr_set(err, LS_EHOOK, "hook: command too long");
        snprintf(req, sizeof(req),
                 "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"/bin/sh\",\"arg\":[\"-c\",%s],"
                 "\"capture-output\":true}}",
                 quoted);
        out = virDomainQemuAgentCommand(d, req, 10, 0);
        if (!out)
                return lserr_set(err, lv_err_code() == LS_EHV ? LS_ENOGA : lv_err_code(), "hook: guest-exec: %s",
                                 lv_err_msg());
        pid = json_int_field(out, "pid");
        if (pid < 0)
                return lserr_set(err, LS_EHOOK, "hook: guest-exec gave no pid");
        return pid;
}

int lv_ga_run(void *be, const char *vm, const char *command, unsigned timeout_ms, lserr *err)
{
        long long deadline = fsutil_mono_us() + (long long)timeout_ms * 1000, pid;
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        int r = lv_conn_domain(be, vm, "hook", &d, err);

        if (r < 0)
                return r;
        pid = exec_start(d, command, err);
        if (pid < 0)
                return (int)pid;
        for (;;) {
                char req[128];
                _cleanup_free_ char *out = NULL;
                snprintf(req, sizeof(req), "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":%lld}}", pid);
                out = virDomainQemuAgentCommand(d, req, 10, 0);
                if (!out)
                        return lserr_set(err, LS_EHOOK, "hook: guest-exec-status: %s", lv_err_msg());
                if (strstr(out, "\"exited\":true") || strstr(out, "\"exited\": true")) {
                        long long code = json_int_field(out, "exitcode");
                        if (code != 0)
                                return lserr_set(err, LS_EHOOK, "hook \"%.200s\": exit code %lld", command, code);
                        return 0;
                }
                if (fsutil_mono_us() > deadline)
                        return lserr_set(err, LS_EHOOK, "hook \"%.200s\": still running after %u ms", command,
                                         timeout_ms);
                usleep(50000);
        }
}
