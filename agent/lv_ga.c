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

/* Appends s to out as a JSON string literal (quotes included). out has room:
 * the caller sized it for six bytes per byte of s. */
static size_t json_quote(const char *s, char *out, size_t o)
{
        out[o++] = '"';
        for (; *s; s++) {
                if (*s == '"' || *s == '\\')
                        o += (size_t)sprintf(out + o, "\\%c", *s);
                else if ((unsigned char)*s < 0x20)
                        o += (size_t)sprintf(out + o, "\\u%04x", (unsigned char)*s);
                else
                        out[o++] = *s;
        }
        out[o++] = '"';
        out[o] = '\0';
        return o;
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

/* The guest-exec request of argv: argv[0] is the program, run without a shell. */
static char *exec_request(char *const *argv)
{
        static const char head[] = "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":";
        size_t n = sizeof(head) + 64, o;
        char *req;

        for (size_t i = 0; argv[i]; i++)
                n += strlen(argv[i]) * 6 + 4;
        req = malloc(n);
        if (!req)
                return NULL;
        o = (size_t)sprintf(req, "%s", head);
        o = json_quote(argv[0], req, o);
        o += (size_t)sprintf(req + o, ",\"arg\":[");
        for (size_t i = 1; argv[i]; i++) {
                if (i > 1)
                        req[o++] = ',';
                o = json_quote(argv[i], req, o);
        }
        sprintf(req + o, "],\"capture-output\":true}}");
        return req;
}

/* Starts hook name's argv in the guest: its pid, or a negative code. */
static long long exec_start(virDomainPtr d, const char *name, char *const *argv, lserr *err)
{
        _cleanup_free_ char *req = exec_request(argv);
        _cleanup_free_ char *out = NULL;
        long long pid;

        if (!req)
                return lserr_set(err, -ENOMEM, "hook \"%s\": out of memory", name);
        out = virDomainQemuAgentCommand(d, req, 10, 0);
        if (!out)
                return lserr_set(err, lv_err_code() == LS_EHV ? LS_ENOGA : lv_err_code(),
                                 "hook \"%s\": guest-exec: %s", name, lv_err_msg());
        pid = json_int_field(out, "pid");
        if (pid < 0)
                return lserr_set(err, LS_EHOOK, "hook \"%s\": guest-exec gave no pid", name);
        return pid;
}

int lv_ga_run(void *be, const char *vm, const char *name, char *const *argv, unsigned timeout_ms, lserr *err)
{
        long long deadline = fsutil_mono_us() + (long long)timeout_ms * 1000, pid;
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        int r = lv_conn_domain(be, vm, "hook", &d, err);

        if (r < 0)
                return r;
        pid = exec_start(d, name, argv, err);
        if (pid < 0)
                return (int)pid;
        for (;;) {
                char req[128];
                _cleanup_free_ char *out = NULL;
                snprintf(req, sizeof(req), "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":%lld}}", pid);
                out = virDomainQemuAgentCommand(d, req, 10, 0);
                if (!out)
                        return lserr_set(err, LS_EHOOK, "hook \"%s\": guest-exec-status: %s", name,
                                         lv_err_msg());
                if (strstr(out, "\"exited\":true") || strstr(out, "\"exited\": true")) {
                        long long code = json_int_field(out, "exitcode");
                        if (code != 0)
                                return lserr_set(err, LS_EHOOK, "hook \"%s\": %s exited with code %lld", name,
                                                 argv[0], code);
                        return 0;
                }
                if (fsutil_mono_us() > deadline)
                        return lserr_set(err, LS_EHOOK, "hook \"%s\": %s still running after %u ms", name,
                                         argv[0], timeout_ms);
                usleep(50000);
        }
}
