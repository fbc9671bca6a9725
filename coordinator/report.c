/* report: JSON and text renderings of the catalog. */
#include "report.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "json.h"
#include "lockstep.pb-c.h"
#include "prune.h"
#include "report_priv.h"
#include "strset.h"
#include "timeline.h"

void report_iso_time(long long us, char *out, size_t n)
{
        time_t s = (time_t)(us / 1000000);
        struct tm tm;

        if (us <= 0) {
                snprintf(out, n, "-");
                return;
        }
        gmtime_r(&s, &tm);
        /* A year past 9999 does not fit the callers' buffers: no half a time. */
        int w = snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (us % 1000000) / 1000);
        if (w < 0 || (size_t)w >= n)
                snprintf(out, n, "-");
}

/* Text that came from an agent (messages, versions, errors, paths) reaches the
 * operator's terminal: in human output every control character (C0, DEL, C1) and
 * every byte that is not UTF-8 is shown as \xNN, so no escape sequence gets
 * through, and each value stays on its line. */
void report_escape(char *out, size_t size, const char *s)
{
        size_t o = 0;

        assert(size > 0);
        for (const unsigned char *p = (const unsigned char *)s; *p;) {
                /* One character (n bytes of UTF-8), or one byte that does not start one. */
                size_t n = json_utf8_len(p), take = n ? n : 1;
                int keep = n && !json_is_control(p, n);
                size_t w = keep ? n : 4 * take;

                if (o + w >= size)
                        break;
                if (keep)
                        memcpy(out + o, p, n);
                else
                        for (size_t i = 0; i < take; i++)
                                snprintf(out + o + 4 * i, 5, "\\x%02x", p[i]);
                o += w;
                p += take;
        }
        out[o] = '\0';
}

/* Escaped copies for one line of output, freed together by esc_done. */
#define ESC_MAX 8
struct esc {
        char *s[ESC_MAX];
        size_t n;
};

static const char *esc(struct esc *e, const char *s)
{
        size_t size = 4 * strlen(s) + 1;
        char *out;

        assert(e->n < ESC_MAX);
        out = malloc(size);
        if (!out)
                return "?";
        report_escape(out, size, s);
        e->s[e->n++] = out;
        return out;
}

static void esc_done(struct esc *e)
{
        for (size_t i = 0; i < e->n; i++)
                free(e->s[i]);
        e->n = 0;
}

/* A revert is listed as the pre-revert branch it keeps: its images are what
 * "revert --undo" goes back to. */
static const char *kind_name(const struct cat_txn *t)
{
        return t->kind == CAT_KIND_REVERT ? "pre-revert" : t->kind == CAT_KIND_DELETE ? "delete" : "snapshot";
}

const char *report_state_name(const struct cat_txn *t)
{
        if (t->kind == CAT_KIND_SNAPSHOT && t->cut_status[0])
                return t->cut_status;
        /* A revert is listed as its branch: what became of that. */
        if (t->kind == CAT_KIND_REVERT && t->branch_status[0])
                return t->branch_status;
        return report_state_word(t);
}

const char *report_state_word(const struct cat_txn *t)
{
        switch (t->state) {
        case CAT_TXN_STARTED: return "in-doubt";
        case CAT_TXN_COMMIT: return "committing";
        case CAT_TXN_ABORT: return "aborting";
        default: return t->committed ? "committed" : "aborted";
        }
}

const char *report_code_name(int code)
{
        const ProtobufCEnumValue *v;

        if (code == CAT_PENDING)
                return "PENDING";
        v = protobuf_c_enum_descriptor_get_value(&lockstep__error_code__descriptor, code);
        return v ? v->name : "UNKNOWN";
}

/* The group window as timeline.c defines it: one definition for the report,
 * the timeline and their JSON. */
static void window(const struct cat_member *m, size_t n, double *ret_window_ms, double *ret_skew_ms,
                   double *ret_max_frozen_ms)
{
        struct timeline_window w;

        timeline_window(m, n, &w);
        *ret_window_ms = w.window_ms;
        *ret_skew_ms = w.skew_ms;
        *ret_max_frozen_ms = w.max_frozen_ms;
}

/* For each audit row, the next row of the same agent and step (-1: none): a
 * fleet's thousands of commands are matched to their answers in one pass.
 * NULL when out of memory. */
static long *next_same_step(const struct cat_audit *au, size_t na)
{
        _cleanup_free_ long *next = malloc((na ? na : 1) * sizeof(*next));
        _cleanup_(strset_freep) struct strset *last = strset_new(na);

        if (!next || !last)
                return NULL;
        for (size_t i = na; i-- > 0;)
                next[i] = strset_put(last, au[i].agent, au[i].step, (long)i);
        return TAKE_PTR(next);
}

/* The reply to the SENT row au[i]: the next answer (or refused answer) of
 * that agent for that step before the step is sent to it again; -1 if none. */
static long long reply_to(const struct cat_audit *au, const long *next, size_t i)
{
        for (long k = next[i]; k >= 0; k = next[k]) {
                if (au[k].dir == CAT_SENT)
                        return -1;
                if (au[k].dir == CAT_RECEIVED || au[k].dir == CAT_IGNORED)
                        return (long long)k;
        }
        return -1;
}

/* Each command sent to an agent and how long its answer took (null: none
 * came), from the audit: where a slow or lossy link shows. */
static void replies_json(struct json *j, const struct cat_audit *au, size_t na)
{
        _cleanup_free_ long *next = next_same_step(au, na);

        json_arr_begin(j, "replies");
        for (size_t i = 0; next && i < na; i++) {
                long long k;
                if (au[i].dir != CAT_SENT)
                        continue;
                k = reply_to(au, next, i);
                json_obj_begin(j, NULL);
                json_str(j, "agent", au[i].agent);
                json_str(j, "step", au[i].step);
                if (k >= 0)
                        json_double(j, "ms", (double)(au[k].at_us - au[i].at_us) / 1000.0);
                else
                        json_str(j, "ms", NULL);
                json_str(j, "code", k >= 0 && au[k].dir == CAT_RECEIVED ? report_code_name(au[k].code)
                                    : k >= 0                          ? "IGNORED"
                                                                      : NULL);
                json_obj_end(j);
        }
        json_arr_end(j);
}

/* Per step, in the order the steps were sent: how many answers, the fastest
 * and the slowest (named), and how many commands got none: one line per
 * step, whatever the number of agents. */
static void replies_text(FILE *f, const struct cat_audit *au, size_t na)
{
        _cleanup_(esc_done) struct esc e = {0};
        _cleanup_free_ long *next = next_same_step(au, na);
        _cleanup_(strset_freep) struct strset *steps = strset_new(na);

        for (size_t s = 0; next && steps && s < na; s++) {
                size_t got = 0, none = 0, slow = 0;
                double lo = 0, hi = -1;
                /* Once per step, at its first command. */
                if (au[s].dir != CAT_SENT || strset_add(steps, au[s].step, "", (long)s) != -1)
                        continue;
                for (size_t i = s; i < na; i++) {
                        long long k;
                        double ms;
                        if (au[i].dir != CAT_SENT || strcmp(au[i].step, au[s].step))
                                continue;
                        k = reply_to(au, next, i);
                        if (k < 0) {
                                none++;
                                continue;
                        }
                        ms = (double)(au[k].at_us - au[i].at_us) / 1000.0;
                        if (!got++ || ms < lo)
                                lo = ms;
                        if (ms > hi) {
                                hi = ms;
                                slow = i;
                        }
                }
                fprintf(f, "  %-8s replies: %zu", au[s].step, got);
                if (got)
                        fprintf(f, ", %.1f to %.1f ms (slowest %s)", lo, hi, esc(&e, au[slow].agent));
                if (none)
                        fprintf(f, ", %zu without an answer", none);
                fputc('\n', f);
                esc_done(&e);
        }
}

static void cut_json(struct json *j, const struct cat_txn *t, const struct cat_member *m, size_t nm,
                     const struct cat_image *im, size_t ni, const struct cat_audit *au, size_t na)
{
        char ts[128];
        double win, skew, maxf;

        window(m, nm, &win, &skew, &maxf);
        json_obj_begin(j, NULL);
        json_str(j, "id", t->txid);
        json_str(j, "kind", kind_name(t));
        json_str(j, "group", t->group);
        json_str(j, "name", t->name);
        json_str(j, "mode", t->mode);
        json_str(j, "state", report_state_name(t));
        json_str(j, "reason", t->cut_status_reason[0] ? t->cut_status_reason : t->reason);
        report_iso_time(t->started_us, ts, sizeof(ts));
        json_str(j, "started_at", ts);
        report_iso_time(t->decided_us, ts, sizeof(ts));
        json_str(j, "decided_at", t->decided_us ? ts : NULL);
        json_uint(j, "lease_ms", t->lease_ms);
        json_double(j, "group_window_ms", win);
        json_double(j, "freeze_skew_ms", skew);
        json_double(j, "max_frozen_ms", maxf);
        _cleanup_free_ long *img_next = malloc((ni ? ni : 1) * sizeof(*img_next));
        _cleanup_(strset_freep) struct strset *first_img = strset_new(ni);

        /* Each member's images by one lookup, not a scan of the cut's images. */
        for (size_t k = ni; img_next && first_img && k-- > 0;)
                img_next[k] = strset_put(first_img, im[k].vm, im[k].agent, (long)k);
        json_arr_begin(j, "members");
        for (size_t i = 0; i < nm; i++) {
                json_obj_begin(j, NULL);
                json_str(j, "vm", m[i].vm);
                json_str(j, "agent", m[i].agent);
                json_uint(j, "tier", m[i].tier);
                json_str(j, "tier_name", m[i].tier_name);
                json_str(j, "code", report_code_name(m[i].code));
                json_str(j, "message", m[i].message ? m[i].message : "");
                json_double(j, "freeze_ms", (double)m[i].freeze_us / 1000.0);
                json_double(j, "snapshot_ms", (double)m[i].snapshot_us / 1000.0);
                json_double(j, "thaw_ms", (double)m[i].thaw_us / 1000.0);
                json_double(j, "frozen_ms", (double)m[i].frozen_for_us / 1000.0);
                /* Unix microseconds on the agent's clock: where a member's hold
                 * sits in time, for lining cuts up with other logs. */
                json_int(j, "frozen_at_us", m[i].frozen_at_us);
                json_int(j, "thawed_at_us", m[i].thawed_at_us);
                json_arr_begin(j, "disks");
                for (long k = img_next && first_img ? strset_get(first_img, m[i].vm, m[i].agent) : -1; k >= 0;
                     k = img_next[k]) {
                        json_obj_begin(j, NULL);
                        json_str(j, "disk", im[k].disk);
                        json_str(j, "image", im[k].before ? im[k].before : "");
                        json_str(j, "overlay", im[k].after ? im[k].after : "");
                        json_obj_end(j);
                }
                json_arr_end(j);
                json_obj_end(j);
        }
        json_arr_end(j);
        replies_json(j, au, na);
        json_obj_end(j);
}

static const char *member_result(const struct cat_member *m)
{
        return m->message && m->message[0] ? m->message : m->code == 0 ? "ok" : report_code_name(m->code);
}

static void cut_text(FILE *f, const struct cat_txn *t, const struct cat_member *m, size_t nm,
                     const struct cat_image *im, size_t ni, const struct cat_audit *au, size_t na)
{
        _cleanup_(esc_done) struct esc e = {0};
        char ts[128];
        double win, skew, maxf;

        window(m, nm, &win, &skew, &maxf);
        report_iso_time(t->started_us, ts, sizeof(ts));
        fprintf(f, "%s %s  group %s  %s %s  mode %s  %s\n", t->kind == CAT_KIND_REVERT ? "revert" : "cut",
                esc(&e, t->txid), esc(&e, t->group), t->kind == CAT_KIND_REVERT ? "to" : "name", esc(&e, t->name),
                esc(&e, t->mode), report_state_name(t));
        esc_done(&e);
        fprintf(f, "  started %s", ts);
        if (t->decided_us)
                fprintf(f, ", decided %.0f ms later", (double)(t->decided_us - t->started_us) / 1000.0);
        fprintf(f, "\n");
        if (t->reason[0])
                fprintf(f, "  reason: %s\n", esc(&e, t->reason));
        esc_done(&e);
        if (t->kind == CAT_KIND_REVERT) {
                /* Nothing is frozen in a revert: no timing columns to show. */
                fprintf(f, "  %-14s %-12s %-8s  %s\n", "MEMBER", "AGENT", "TIER", "RESULT");
                for (size_t i = 0; i < nm; i++) {
                        fprintf(f, "  %-14s %-12s %-8s  %s\n", esc(&e, m[i].vm), esc(&e, m[i].agent),
                                m[i].tier_name[0] ? esc(&e, m[i].tier_name) : "-", esc(&e, member_result(&m[i])));
                        esc_done(&e);
                }
        } else {
                fprintf(f, "  group window %.1f ms (first freeze to last thaw), freeze skew %.1f ms, longest frozen %.1f ms\n",
                        win, skew, maxf);
                fprintf(f, "  %-14s %-12s %-8s %10s %9s %9s %8s  %s\n", "MEMBER", "AGENT", "TIER", "FROZEN ms",
                        "FREEZE", "SNAPSHOT", "THAW", "RESULT");
                for (size_t i = 0; i < nm; i++) {
                        fprintf(f, "  %-14s %-12s %-8s %10.1f %9.1f %9.1f %8.1f  %s\n", esc(&e, m[i].vm),
                                esc(&e, m[i].agent), m[i].tier_name[0] ? esc(&e, m[i].tier_name) : "-",
                                (double)m[i].frozen_for_us / 1000.0, (double)m[i].freeze_us / 1000.0,
                                (double)m[i].snapshot_us / 1000.0, (double)m[i].thaw_us / 1000.0,
                                esc(&e, member_result(&m[i])));
                        esc_done(&e);
                }
        }
        if (ni)
                fprintf(f, t->kind == CAT_KIND_REVERT
                                   ? "  images (the pre-revert branch kept for --undo, then the disk the VM runs on since):\n"
                                   : "  images (the cut's image, then the overlay the VM runs on since):\n");
        for (size_t k = 0; k < ni; k++) {
                fprintf(f, "    %s@%s %s: %s\n      -> %s\n", esc(&e, im[k].vm), esc(&e, im[k].agent),
                        esc(&e, im[k].disk), esc(&e, im[k].before ? im[k].before : ""),
                        esc(&e, im[k].after ? im[k].after : ""));
                esc_done(&e);
        }
        replies_text(f, au, na);
}

void report_cut_rows(const struct cat_txn *t, const struct cat_member *m, size_t nm, const struct cat_image *im,
                     size_t ni, const struct cat_audit *au, size_t na, int as_json, FILE *out)
{
        struct json j;

        if (!as_json) {
                cut_text(out, t, m, nm, im, ni, au, na);
                return;
        }
        json_init(&j, out);
        cut_json(&j, t, m, nm, im, ni, au, na);
        json_end(&j);
}

/* A cut's rows; the audit may have been trimmed: a report without replies then. */
int report_cut(struct catalog *cat, const char *txid, int as_json, FILE *out, lserr *err)
{
        _cleanup_(cat_cut_free) struct cat_cut c = {0};
        int r = cat_cut_read(cat, txid, REPORT_AUDIT_MAX, &c, err);

        if (r >= 0)
                report_cut_rows(&c.t, c.m, c.nm, c.im, c.ni, c.au, c.na, as_json, out);
        return r;
}

int report_cut_render(struct catalog *cat, const char *txid, unsigned want, char **ret_text, char **ret_json,
                      struct cat_cut *ret_rows, lserr *err)
{
        _cleanup_(cat_cut_free) struct cat_cut c = {0};
        char *buf[2] = {NULL, NULL};
        size_t len[2];
        int r = cat_cut_read(cat, txid, REPORT_AUDIT_MAX, &c, err);

        for (int j = 0; r >= 0 && j < 2; j++) {
                if (!(want & (j ? REPORT_JSON : REPORT_TEXT)))
                        continue;
                FILE *f = open_memstream(&buf[j], &len[j]);
                if (!f) {
                        r = lserr_set(err, -ENOMEM, "report %s: out of memory", txid);
                        break;
                }
                report_cut_rows(&c.t, c.m, c.nm, c.im, c.ni, c.au, c.na, j, f);
                fclose(f);
        }
        if (r < 0) {
                free(buf[0]);
                free(buf[1]);
                return r;
        }
        *ret_text = buf[0];
        *ret_json = buf[1];
        if (ret_rows) {
                *ret_rows = c;
                c = (struct cat_cut){0};
        }
        return 0;
}

int report_timeline(struct catalog *cat, const char *txid, unsigned width, int color, FILE *out, lserr *err)
{
        struct timeline_opts o = {.width = width, .color = color, .code_name = report_code_name};
        _cleanup_free_ struct cat_member *m = NULL;
        char title[512];
        _cleanup_(esc_done) struct esc e = {0};
        struct cat_txn t;
        size_t nm = 0;
        int r = cat_txn_get(cat, txid, &t, err);

        if (r >= 0)
                r = timeline_check_width(width, err);
        if (r < 0)
                return r;
        if (t.kind != CAT_KIND_SNAPSHOT)
                return lserr_set(err, -EINVAL, "%s: timeline: it is a %s, not a cut: nothing was frozen in it",
                                 esc(&e, txid), kind_name(&t));
        r = cat_members(cat, txid, &m, &nm, err);
        if (r < 0)
                return r;
        snprintf(title, sizeof(title), "cut %s  group %s  name %s  mode %s  %s", esc(&e, t.txid), esc(&e, t.group),
                 esc(&e, t.name), esc(&e, t.mode), report_state_name(&t));
        o.title = title;
        return timeline_render(m, nm, &o, out, err);
}

int report_cuts(struct catalog *cat, const char *group, int as_json, FILE *out, lserr *err)
{
        struct cat_txn *ts = NULL;
        size_t n = 0;
        struct json j;
        int r = cat_cuts(cat, group, &ts, &n, err);

        if (r < 0)
                return r;
        if (as_json) {
                json_init(&j, out);
                json_arr_begin(&j, NULL);
        } else {
                fprintf(out, "%-30s %-10s %-12s %-30s %-8s %-13s %s\n", "ID", "KIND", "GROUP", "NAME", "MODE", "STATE",
                        "STARTED");
        }
        for (size_t i = 0; i < n; i++) {
                char ts_[128];
                report_iso_time(ts[i].started_us, ts_, sizeof(ts_));
                if (as_json) {
                        json_obj_begin(&j, NULL);
                        json_str(&j, "id", ts[i].txid);
                        json_str(&j, "kind", kind_name(&ts[i]));
                        json_str(&j, "group", ts[i].group);
                        json_str(&j, "name", ts[i].name);
                        json_str(&j, "mode", ts[i].mode);
                        json_str(&j, "state", report_state_name(&ts[i]));
                        json_str(&j, "reason", ts[i].reason);
                        json_str(&j, "started_at", ts_);
                        json_obj_end(&j);
                } else {
                        fprintf(out, "%-30s %-10s %-12s %-30s %-8s %-13s %s\n", ts[i].txid, kind_name(&ts[i]),
                                ts[i].group, ts[i].name, ts[i].mode, report_state_name(&ts[i]), ts_);
                }
        }
        if (as_json) {
                json_arr_end(&j);
                json_end(&j);
        }
        free(ts);
        return 0;
}

int report_agents(struct catalog *cat, int as_json, FILE *out, lserr *err)
{
        struct cat_agent *a = NULL;
        size_t n = 0;
        struct json j;
        int r = cat_agents(cat, &a, &n, err);

        if (r < 0)
                return r;
        if (as_json) {
                json_init(&j, out);
                json_arr_begin(&j, NULL);
        } else {
                fprintf(out, "%-12s %-28s %-9s %-9s %-23s %-8s %s\n", "AGENT", "URL", "REACHABLE", "VERSION",
                        "KEY", "IN-DOUBT", "LAST ERROR");
        }
        for (size_t i = 0; i < n; i++) {
                char seen[128];
                report_iso_time(a[i].last_seen_us, seen, sizeof(seen));
                if (as_json) {
                        json_obj_begin(&j, NULL);
                        json_str(&j, "id", a[i].id);
                        json_str(&j, "url", a[i].url);
                        json_bool(&j, "reachable", a[i].reachable);
                        json_str(&j, "version", a[i].version);
                        json_str(&j, "key_fingerprint", a[i].fingerprint);
                        json_uint(&j, "in_doubt", a[i].in_doubt);
                        json_str(&j, "last_seen_at", a[i].last_seen_us ? seen : NULL);
                        json_str(&j, "last_error", a[i].last_error);
                        json_obj_end(&j);
                } else {
                        struct esc e = {0};
                        fprintf(out, "%-12s %-28s %-9s %-9s %-23s %-8u %s\n", esc(&e, a[i].id), esc(&e, a[i].url),
                                a[i].reachable ? "yes" : "NO", a[i].version[0] ? esc(&e, a[i].version) : "-",
                                esc(&e, a[i].fingerprint), a[i].in_doubt, esc(&e, a[i].last_error));
                        esc_done(&e);
                }
        }
        if (as_json) {
                json_arr_end(&j);
                json_end(&j);
        }
        free(a);
        return 0;
}

int report_groups(const struct cfg_coord *cfg, int as_json, FILE *out)
{
        struct json j;

        if (as_json) {
                json_init(&j, out);
                json_arr_begin(&j, NULL);
        }
        for (unsigned i = 0; i < cfg->n_groups; i++) {
                const struct cfg_group *g = &cfg->groups[i];
                if (as_json) {
                        json_obj_begin(&j, NULL);
                        json_str(&j, "name", g->name);
                        json_str(&j, "mode", cfg_mode_name(g->mode));
                        json_uint(&j, "lease_s", g->lease_s);
                        json_str(&j, "schedule", g->schedule);
                        json_arr_begin(&j, "tiers");
                        for (unsigned t = 0; t < g->n_tiers; t++) {
                                json_obj_begin(&j, NULL);
                                json_str(&j, "name", g->tiers[t]);
                                json_arr_begin(&j, "members");
                                for (unsigned m = 0; m < g->n_members; m++)
                                        if (g->members[m].tier == t) {
                                                char who[140];
                                                snprintf(who, sizeof(who), "%s@%s", g->members[m].vm,
                                                         g->members[m].agent);
                                                json_str(&j, NULL, who);
                                        }
                                json_arr_end(&j);
                                json_obj_end(&j);
                        }
                        json_arr_end(&j);
                        json_obj_end(&j);
                } else {
                        fprintf(out, "%s (mode %s, lease %u s%s%s)\n", g->name, cfg_mode_name(g->mode), g->lease_s,
                                g->schedule ? ", schedule " : "", g->schedule ? g->schedule : "");
                        for (unsigned t = 0; t < g->n_tiers; t++) {
                                fprintf(out, "  tier %-8s", g->tiers[t]);
                                for (unsigned m = 0; m < g->n_members; m++)
                                        if (g->members[m].tier == t)
                                                fprintf(out, " %s@%s", g->members[m].vm, g->members[m].agent);
                                fprintf(out, "\n");
                        }
                }
        }
        if (as_json) {
                json_arr_end(&j);
                json_end(&j);
        }
        return 0;
}

int report_schedules(const struct report_sched *s, size_t n, int as_json, FILE *out)
{
        char a[40], b[40], c[40];

        if (as_json) {
                struct json j;
                json_init(&j, out);
                json_arr_begin(&j, NULL);
                for (size_t i = 0; i < n; i++) {
                        json_obj_begin(&j, NULL);
                        json_str(&j, "group", s[i].group);
                        json_str(&j, "schedule", s[i].schedule);
                        report_iso_time(s[i].next_due_s * 1000000, a, sizeof(a));
                        json_str(&j, "next_due_at", s[i].next_due_s > 0 ? a : NULL);
                        report_iso_time(s[i].next_start_s * 1000000, a, sizeof(a));
                        json_str(&j, "next_start_at", s[i].next_start_s > 0 ? a : NULL);
                        json_bool(&j, "running", s[i].running);
                        report_iso_time(s[i].last.last_due_s * 1000000, a, sizeof(a));
                        json_str(&j, "last_due_at", s[i].has_last && s[i].last.outcome[0] ? a : NULL);
                        report_iso_time(s[i].last.last_run_us, a, sizeof(a));
                        json_str(&j, "last_run_at", s[i].has_last && s[i].last.last_run_us ? a : NULL);
                        json_str(&j, "last_outcome", s[i].has_last && s[i].last.outcome[0] ? s[i].last.outcome : NULL);
                        json_str(&j, "last_txid", s[i].has_last ? s[i].last.txid : NULL);
                        json_str(&j, "last_reason", s[i].has_last ? s[i].last.reason : NULL);
                        /* How late the last run started against its due time. */
                        json_double(&j, "last_lag_s",
                                    s[i].has_last && s[i].last.last_run_us
                                            ? (double)(s[i].last.last_run_us - s[i].last.last_due_s * 1000000) / 1e6
                                            : 0.0);
                        json_uint(&j, "runs", s[i].has_last ? s[i].last.runs : 0);
                        json_uint(&j, "skipped", s[i].has_last ? s[i].last.skipped : 0);
                        json_obj_end(&j);
                }
                json_arr_end(&j);
                json_end(&j);
                return 0;
        }
        fprintf(out, "%-16s %-18s %-25s %-25s %-10s %5s %7s\n", "GROUP", "SCHEDULE", "NEXT", "LAST RUN", "OUTCOME",
                "RUNS", "SKIPPED");
        for (size_t i = 0; i < n; i++) {
                report_iso_time(s[i].next_start_s * 1000000, a, sizeof(a));
                report_iso_time(s[i].has_last ? s[i].last.last_run_us : 0, b, sizeof(b));
                snprintf(c, sizeof(c), "%s",
                         s[i].running ? "running" : s[i].has_last && s[i].last.outcome[0] ? s[i].last.outcome : "-");
                fprintf(out, "%-16s %-18s %-25s %-25s %-10s %5u %7u\n", s[i].group, s[i].schedule,
                        s[i].next_start_s > 0 ? a : "never", b, c, s[i].has_last ? s[i].last.runs : 0,
                        s[i].has_last ? s[i].last.skipped : 0);
                if (s[i].has_last && s[i].last.reason[0]) {
                        struct esc e = {0};
                        fprintf(out, "  last: %s\n", esc(&e, s[i].last.reason));
                        esc_done(&e);
                }
        }
        return 0;
}

int report_events(const struct cat_event *ev, size_t n, int as_json, FILE *out)
{
        char ts[40];

        if (as_json) {
                for (size_t i = 0; i < n; i++) {
                        /* One object a line, so --follow can be piped into jq. */
                        struct json j;
                        json_init(&j, out);
                        json_obj_begin(&j, NULL);
                        json_int(&j, "id", ev[i].id);
                        report_iso_time(ev[i].at_us, ts, sizeof(ts));
                        json_str(&j, "at", ts);
                        json_str(&j, "kind", ev[i].kind);
                        json_str(&j, "group", ev[i].group[0] ? ev[i].group : NULL);
                        json_str(&j, "txid", ev[i].txid[0] ? ev[i].txid : NULL);
                        json_str(&j, "message", ev[i].message);
                        json_obj_end(&j);
                        json_end(&j);
                }
                return 0;
        }
        for (size_t i = 0; i < n; i++) {
                struct esc e = {0};
                report_iso_time(ev[i].at_us, ts, sizeof(ts));
                fprintf(out, "%s %-9s %-12s %s%s%s\n", ts, esc(&e, ev[i].kind),
                        ev[i].group[0] ? esc(&e, ev[i].group) : "-", esc(&e, ev[i].txid), ev[i].txid[0] ? " " : "",
                        esc(&e, ev[i].message));
                esc_done(&e);
        }
        return 0;
}

static const char *audit_dir(enum cat_dir d)
{
        return d == CAT_SENT ? "sent" : d == CAT_RECEIVED ? "received" : d == CAT_IGNORED ? "ignored" : "control";
}

static void audit_json(const struct cat_audit *a, size_t n, FILE *out)
{
        struct json j;
        char ts[40];

        json_init(&j, out);
        json_arr_begin(&j, NULL);
        for (size_t i = 0; i < n; i++) {
                json_obj_begin(&j, NULL);
                report_iso_time(a[i].at_us, ts, sizeof(ts));
                json_str(&j, "at", ts);
                json_str(&j, "dir", audit_dir(a[i].dir));
                json_str(&j, "txid", a[i].txid[0] ? a[i].txid : NULL);
                json_str(&j, "agent", a[i].agent[0] ? a[i].agent : NULL);
                json_str(&j, "step", a[i].step);
                json_int(&j, "code", a[i].code);
                json_str(&j, "detail", a[i].detail ? a[i].detail : "");
                json_str(&j, "hash", a[i].hash_hex[0] ? a[i].hash_hex : NULL);
                if (a[i].has_peer) {
                        json_int(&j, "peer_uid", a[i].peer_uid);
                        if (a[i].peer_pid >= 0)
                                json_int(&j, "peer_pid", a[i].peer_pid);
                        else
                                json_str(&j, "peer_pid", NULL);
                } else {
                        json_str(&j, "peer_uid", NULL);
                        json_str(&j, "peer_pid", NULL);
                }
                json_obj_end(&j);
        }
        json_arr_end(&j);
        json_end(&j);
}

int report_audit(const struct cat_audit *a, size_t n, int as_json, FILE *out)
{
        char ts[40], by[64];

        if (as_json) {
                audit_json(a, n, out);
                return 0;
        }
        fprintf(out, "%-24s %-8s %-30s %-12s %-16s %6s %-20s %s\n", "AT", "DIR", "TXID", "AGENT", "STEP", "CODE", "BY",
                "DETAIL");
        for (size_t i = 0; i < n; i++) {
                struct esc e = {0};
                report_iso_time(a[i].at_us, ts, sizeof(ts));
                if (!a[i].has_peer)
                        snprintf(by, sizeof(by), "-");
                else if (a[i].peer_pid >= 0)
                        snprintf(by, sizeof(by), "uid %lld pid %lld", a[i].peer_uid, a[i].peer_pid);
                else
                        snprintf(by, sizeof(by), "uid %lld", a[i].peer_uid);
                fprintf(out, "%-24s %-8s %-30s %-12s %-16s %6d %-20s %s\n", ts, audit_dir(a[i].dir),
                        a[i].txid[0] ? esc(&e, a[i].txid) : "-", a[i].agent[0] ? esc(&e, a[i].agent) : "-",
                        esc(&e, a[i].step), a[i].code, by, esc(&e, a[i].detail ? a[i].detail : ""));
                esc_done(&e);
        }
        return 0;
}

int report_prune(const char *group, const struct prune_item *it, size_t n, int dry_run, int as_json, FILE *out)
{
        char ts[40];
        size_t keep = 0, branches = 0, failed = 0;

        for (size_t i = 0; i < n; i++) {
                keep += it[i].keep ? 1 : 0;
                branches += it[i].branch ? 1 : 0;
                failed += !dry_run && !it[i].keep && !it[i].done ? 1 : 0;
        }
        if (as_json) {
                struct json j;
                json_init(&j, out);
                json_obj_begin(&j, NULL);
                json_str(&j, "group", group);
                json_bool(&j, "dry_run", dry_run);
                json_uint(&j, "kept", keep);
                /* A dry run's removed is what would go; a prune's is what
                 * went, and failed what was meant to go and did not. */
                json_uint(&j, "removed", n - keep - failed);
                json_uint(&j, "failed", failed);
                json_arr_begin(&j, "cuts");
                for (size_t i = 0; i < n; i++) {
                        json_obj_begin(&j, NULL);
                        json_str(&j, "id", it[i].txid);
                        json_str(&j, "kind", it[i].branch ? "branch" : "cut");
                        json_str(&j, "name", it[i].name);
                        report_iso_time(it[i].started_us, ts, sizeof(ts));
                        json_str(&j, "started_at", ts);
                        json_str(&j, "action", it[i].keep ? "keep" : dry_run ? "remove" : it[i].done ? "removed" : "failed");
                        json_str(&j, "why", it[i].why);
                        json_str(&j, "error", it[i].error[0] ? it[i].error : NULL);
                        json_obj_end(&j);
                }
                json_arr_end(&j);
                json_obj_end(&j);
                json_end(&j);
                return 0;
        }
        if (dry_run)
                fprintf(out, "group %s: %zu cut(s) and %zu pre-revert branch(es), %zu kept, %zu would be removed\n",
                        group, n - branches, branches, keep, n - keep);
        else
                fprintf(out, "group %s: %zu cut(s) and %zu pre-revert branch(es), %zu kept, %zu removed, %zu failed\n",
                        group, n - branches, branches, keep, n - keep - failed, failed);
        for (size_t i = 0; i < n; i++) {
                struct esc e = {0};
                report_iso_time(it[i].started_us, ts, sizeof(ts));
                fprintf(out, "  %-7s %-6s %-28s %-24s %s%s%s\n",
                        it[i].keep ? "keep" : dry_run ? "remove" : it[i].done ? "removed" : "FAILED",
                        it[i].branch ? "branch" : "cut", esc(&e, it[i].txid), ts, esc(&e, it[i].why),
                        it[i].error[0] ? ": " : "", esc(&e, it[i].error));
                esc_done(&e);
        }
        return 0;
}

void report_prune_pair(const char *group, const struct prune_item *it, size_t n, int dry_run, char **ret_text,
                       char **ret_json)
{
        char **out[2] = {ret_text, ret_json};

        for (int j = 0; j < 2; j++) {
                size_t len = 0;
                FILE *f = open_memstream(out[j], &len);
                if (!f) {
                        *out[j] = NULL;
                        continue;
                }
                report_prune(group, it, n, dry_run, j, f);
                fclose(f);
        }
}

int report_check(const char *group, const struct engine_check_member *m, size_t n, int as_json, FILE *out)
{
        size_t bad = 0;

        for (size_t i = 0; i < n; i++)
                bad += !m[i].ok;
        if (as_json) {
                struct json j;
                json_init(&j, out);
                json_obj_begin(&j, NULL);
                json_str(&j, "group", group);
                json_bool(&j, "ok", bad == 0);
                json_arr_begin(&j, "members");
                for (size_t i = 0; i < n; i++) {
                        json_obj_begin(&j, NULL);
                        json_str(&j, "vm", m[i].vm);
                        json_str(&j, "agent", m[i].agent);
                        json_bool(&j, "ok", m[i].ok);
                        json_str(&j, "code", m[i].code);
                        json_str(&j, "message", m[i].message);
                        if (m[i].clock_known)
                                json_int(&j, "clock_offset_ms", m[i].clock_offset_ms);
                        else
                                json_str(&j, "clock_offset_ms", NULL);
                        json_obj_end(&j);
                }
                json_arr_end(&j);
                json_obj_end(&j);
                json_end(&j);
                return 0;
        }
        for (size_t i = 0; i < n; i++) {
                struct esc e = {0};
                char who[600];
                snprintf(who, sizeof(who), "%s@%s", esc(&e, m[i].vm), esc(&e, m[i].agent));
                if (m[i].ok)
                        fprintf(out, "OK    %-28s%s%s\n", who, m[i].message[0] ? " " : "", esc(&e, m[i].message));
                else
                        fprintf(out, "FAIL  %-28s %s: %s\n", who, esc(&e, m[i].code), esc(&e, m[i].message));
                esc_done(&e);
        }
        if (bad)
                fprintf(out, "group %s: %zu of %zu member(s) would refuse a cut\n", group, bad, n);
        else
                fprintf(out, "group %s: all %zu member(s) ready, a cut would be accepted\n", group, n);
        return 0;
}
