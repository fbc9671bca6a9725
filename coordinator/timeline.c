/* timeline: the Gantt chart behind `lockstep snapshot show ID --timeline`: one
 * row per member (per agent above TIMELINE_MAX_MEMBER_ROWS), plain ASCII. */
#include "timeline.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

/* In paint order: a short step painted last stays visible over the hold. */
enum phase { PH_FROZEN, PH_SNAPSHOT, PH_FREEZE, PH_THAW, PH_N };
static const char glyph[PH_N] = {'=', 'S', 'F', 'T'};
static const char *const ansi[PH_N] = {"\033[34m", "\033[35m", "\033[33m", "\033[36m"};

#define WINDOW_LABEL "group window"
#define LABEL_MAX 32

struct span {
        long long s, e; /* agent's clock, µs; e == s: the step did not happen */
};

/* The time axis and the columns it maps to. */
struct chart {
        long long t0, span;
        unsigned width, label_w, cols;
        int color;
        FILE *out;
        const char *(*code_name)(int code);
};

void timeline_window(const struct cat_member *m, size_t n, struct timeline_window *ret)
{
        struct timeline_window w = {0};
        double max_frozen = 0;

        for (size_t i = 0; i < n; i++) {
                if (!m[i].frozen_at_us)
                        continue;
                if (!w.first_us || m[i].frozen_at_us < w.first_us)
                        w.first_us = m[i].frozen_at_us;
                if (m[i].frozen_at_us > w.last_freeze_us)
                        w.last_freeze_us = m[i].frozen_at_us;
                if (m[i].thawed_at_us > w.last_thaw_us)
                        w.last_thaw_us = m[i].thawed_at_us;
                if ((double)m[i].frozen_for_us / 1000.0 > max_frozen)
                        max_frozen = (double)m[i].frozen_for_us / 1000.0;
        }
        w.window_ms = w.first_us && w.last_thaw_us > w.first_us ? (double)(w.last_thaw_us - w.first_us) / 1000.0 : 0;
        w.skew_ms = w.first_us ? (double)(w.last_freeze_us - w.first_us) / 1000.0 : 0;
        w.max_frozen_ms = max_frozen;
        *ret = w;
}

static long long max_ll(long long a, long long b)
{
        return a > b ? a : b;
}

/* A member's steps. The agent records when the freeze began (frozen_at_us) and
 * when the thaw ended (thawed_at_us), and thaws right after the snapshot: the
 * snapshot and thaw end at the thaw's end, the hold fills the gap. 0 when the
 * member has no timings (never frozen). */
static int member_spans(const struct cat_member *m, struct span sp[PH_N], long long *ret_end)
{
        long long f = m->frozen_at_us, fe, te, ts, ss;

        memset(sp, 0, PH_N * sizeof(*sp));
        if (f <= 0)
                return 0;
        fe = f + (long long)m->freeze_us;
        sp[PH_FREEZE] = (struct span){f, fe};
        *ret_end = fe;
        if (m->thawed_at_us <= 0)
                return 1;
        te = max_ll(m->thawed_at_us, fe);
        ts = max_ll(te - (long long)m->thaw_us, fe);
        ss = max_ll(ts - (long long)m->snapshot_us, fe);
        sp[PH_THAW] = (struct span){ts, te};
        sp[PH_SNAPSHOT] = (struct span){ss, ts};
        sp[PH_FROZEN] = (struct span){fe, ss};
        *ret_end = te;
        return 1;
}

/* The column time t falls in, and the first column past time t. */
static unsigned col_of(const struct chart *c, long long t)
{
        long long k = t <= c->t0 ? 0 : (t - c->t0) * (long long)c->cols / c->span;

        return k >= c->cols ? c->cols - 1 : (unsigned)k;
}

static unsigned col_past(const struct chart *c, long long t)
{
        long long k = t <= c->t0 ? 0 : ((t - c->t0) * (long long)c->cols + c->span - 1) / c->span;

        return k > c->cols ? c->cols : (unsigned)k;
}

/* Text from the catalog, made safe and short: printable ASCII only, cut to w
 * columns with a '~' where it was cut. */
static void clip(char *out, const char *s, size_t w)
{
        size_t n = 0, len = strlen(s);

        for (; n < w && s[n]; n++)
                out[n] = s[n] >= 0x20 && s[n] < 0x7f ? s[n] : '?';
        if (len > w && w)
                out[w - 1] = '~';
        out[n] = '\0';
}

static void put_label(const struct chart *c, const char *label)
{
        char l[LABEL_MAX + 1];

        clip(l, label, c->label_w);
        fprintf(c->out, "%-*s ", (int)c->label_w, l);
}

/* A row of cells, trailing blanks dropped, each run of one step in its colour. */
static void put_cells(const struct chart *c, const char *label, const char *cells)
{
        unsigned n = c->cols;

        put_label(c, label);
        while (n && cells[n - 1] == ' ')
                n--;
        for (unsigned i = 0; i < n;) {
                const char *on = NULL;
                unsigned j = i;
                for (int p = 0; c->color && p < PH_N; p++)
                        if (cells[i] == glyph[p])
                                on = ansi[p];
                while (j < n && cells[j] == cells[i])
                        j++;
                fprintf(c->out, "%s%.*s%s", on ? on : "", (int)(j - i), cells + i, on ? "\033[0m" : "");
                i = j;
        }
        fputc('\n', c->out);
}

/* Words of text on lines of at most width columns (a word longer than that
 * is cut; the spaces between words kept on a line), in printable ASCII. */
static void put_wrapped(FILE *out, const char *text, unsigned width)
{
        unsigned col = 0;
        size_t gap = 0;

        while (*text) {
                size_t w = strcspn(text, " ");
                if (w > width)
                        w = width;
                if (col && col + gap + w > width) {
                        fputc('\n', out);
                        col = 0;
                }
                if (col)
                        fprintf(out, "%*s", (int)gap, "");
                for (size_t i = 0; i < w; i++)
                        fputc(text[i] >= 0x20 && text[i] < 0x7f ? text[i] : '?', out);
                col += (unsigned)w + (col ? (unsigned)gap : 0);
                text += w;
                gap = strspn(text, " ");
                text += gap;
        }
        if (col)
                fputc('\n', out);
}

/* Why a member has no bars: its code and the agent's message. */
static void put_reason(const struct chart *c, const char *label, const struct cat_member *m)
{
        char why[700], shown[TIMELINE_MAX_WIDTH + 1];
        const char *name = c->code_name ? c->code_name(m->code) : NULL, *msg = m->message ? m->message : "";

        if (name)
                snprintf(why, sizeof(why), "no timings: %s%s%.600s", name, msg[0] ? ": " : "", msg);
        else
                snprintf(why, sizeof(why), "no timings: code %d%s%.600s", m->code, msg[0] ? ": " : "", msg);
        clip(shown, why, c->cols);
        put_label(c, label);
        fprintf(c->out, "%s\n", shown);
}

/* One member: each step that took time covers at least one cell. */
static void member_row(const struct chart *c, const struct cat_member *m)
{
        char label[2 * 65 + 2], cells[TIMELINE_MAX_WIDTH];
        struct span sp[PH_N];
        long long end;

        snprintf(label, sizeof(label), "%s@%s", m->vm, m->agent);
        if (!member_spans(m, sp, &end)) {
                put_reason(c, label, m);
                return;
        }
        memset(cells, ' ', c->cols);
        for (int p = 0; p < PH_N; p++) {
                unsigned a, b;
                if (sp[p].e <= sp[p].s)
                        continue;
                a = col_of(c, sp[p].s);
                b = col_past(c, sp[p].e);
                if (b <= a)
                        b = a + 1;
                memset(cells + a, glyph[p], b - a);
        }
        put_cells(c, label, cells);
}

/* An agent's members m[idx[0..k)]: each cell shows the step they spent the
 * most time in during that cell's slice of time (ties: the later step). */
static void agent_row(const struct chart *c, const struct cat_member *m, const size_t *idx, size_t k,
                      double (*w)[PH_N])
{
        char label[96], cells[TIMELINE_MAX_WIDTH];
        const double per_col = (double)c->span / c->cols;
        size_t timed = 0;

        memset(w, 0, c->cols * sizeof(*w));
        for (size_t i = 0; i < k; i++) {
                struct span sp[PH_N];
                long long end;
                if (!member_spans(&m[idx[i]], sp, &end))
                        continue;
                timed++;
                for (int p = 0; p < PH_N; p++)
                        for (unsigned col = col_of(c, sp[p].s); sp[p].e > sp[p].s && col < col_past(c, sp[p].e);
                             col++) {
                                double lo = (double)c->t0 + col * per_col, hi = lo + per_col;
                                double s = fmax(lo, (double)sp[p].s), e = fmin(hi, (double)sp[p].e);
                                if (e > s)
                                        w[col][p] += e - s;
                        }
        }
        snprintf(label, sizeof(label), "%.64s (%zu)", m[idx[0]].agent, k);
        if (!timed) {
                put_reason(c, label, &m[idx[0]]);
                return;
        }
        for (unsigned col = 0; col < c->cols; col++) {
                int best = -1;
                for (int p = 0; p < PH_N; p++)
                        if (w[col][p] > 0 && (best < 0 || w[col][p] >= w[col][best]))
                                best = p;
                cells[col] = best < 0 ? ' ' : glyph[best];
        }
        put_cells(c, label, cells);
}

/* Tick every step ms (1, 2 or 5 times a power of ten) with room for its label. */
static double tick_step(const struct chart *c, int *ret_decimals)
{
        double span_ms = (double)c->span / 1000.0, raw, mag, step = 0;
        unsigned ticks = c->cols / 8 ? c->cols / 8 : 1;
        static const double nice[] = {1, 2, 5, 10};

        raw = span_ms / ticks;
        mag = pow(10, floor(log10(raw)));
        for (size_t i = 0; i < sizeof(nice) / sizeof(nice[0]) && !step; i++)
                if (nice[i] * mag >= raw * (1 - 1e-9))
                        step = nice[i] * mag;
        *ret_decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        return step;
}

static void axis(const struct chart *c)
{
        char labels[TIMELINE_MAX_WIDTH + 1], line[TIMELINE_MAX_WIDTH + 1];
        int dec;
        double step = tick_step(c, &dec), span_ms = (double)c->span / 1000.0;
        unsigned free_from = 0;

        memset(labels, ' ', c->cols);
        memset(line, '-', c->cols);
        for (unsigned k = 0; k * step <= span_ms * (1 + 1e-9); k++) {
                char l[32];
                unsigned col = col_of(c, c->t0 + llround(k * step * 1000.0));
                int n = snprintf(l, sizeof(l), "%.*f", dec, k * step);
                line[col] = '+';
                if (col < free_from || col + (unsigned)n > c->cols)
                        continue;
                memcpy(labels + col, l, (size_t)n);
                free_from = col + (unsigned)n + 1;
        }
        labels[c->cols] = line[c->cols] = '\0';
        while (c->cols && labels[0] && labels[strlen(labels) - 1] == ' ')
                labels[strlen(labels) - 1] = '\0';
        put_label(c, "ms");
        fprintf(c->out, "%s\n", labels);
        put_label(c, "");
        fprintf(c->out, "%s\n", line);
}

/* The group window as its own row: |--- 35.2 ms ---| from first freeze to last thaw. */
static void window_row(const struct chart *c, const struct timeline_window *w)
{
        char cells[TIMELINE_MAX_WIDTH], ms[32];
        unsigned a, b;
        int n;

        if (!w->first_us || w->last_thaw_us <= w->first_us) {
                put_label(c, WINDOW_LABEL);
                fprintf(c->out, "%.*s\n", (int)c->cols, "none: no member was both frozen and thawed");
                return;
        }
        a = col_of(c, w->first_us);
        b = col_past(c, w->last_thaw_us);
        b = b > a + 1 ? b - 1 : a;
        memset(cells, ' ', c->cols);
        memset(cells + a, '-', b - a + 1);
        cells[a] = cells[b] = '|';
        n = snprintf(ms, sizeof(ms), " %.1f ms ", w->window_ms);
        if (b - a >= (unsigned)n + 1)
                memcpy(cells + a + (b - a + 1 - (unsigned)n) / 2, ms, (size_t)n);
        put_cells(&(struct chart){.cols = c->cols, .label_w = c->label_w, .out = c->out}, WINDOW_LABEL, cells);
}

struct by_agent {
        const char *agent;
        size_t i;
};

static int by_agent_cmp(const void *a, const void *b)
{
        const struct by_agent *x = a, *y = b;
        int r = strcmp(x->agent, y->agent);

        return r ? r : x->i < y->i ? -1 : x->i > y->i;
}

/* The members' indexes sorted by agent (stable), and how many agents. */
static int group_by_agent(const struct cat_member *m, size_t n, size_t **ret_idx, size_t *ret_agents)
{
        _cleanup_free_ struct by_agent *b = calloc(n ? n : 1, sizeof(*b));
        size_t *idx = calloc(n ? n : 1, sizeof(*idx)), agents = 0;

        if (!b || !idx) {
                free(idx);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                b[i] = (struct by_agent){m[i].agent, i};
        qsort(b, n, sizeof(*b), by_agent_cmp);
        for (size_t i = 0; i < n; i++) {
                idx[i] = b[i].i;
                agents += !i || strcmp(b[i].agent, b[i - 1].agent) != 0;
        }
        *ret_idx = idx;
        *ret_agents = agents;
        return 0;
}

/* The axis spans every step of every member; the label column fits the
 * longest name within a third of the width. */
static void layout(struct chart *c, const struct cat_member *m, size_t n, int grouped)
{
        long long t1 = 0;
        size_t lw = strlen(WINDOW_LABEL), cap = c->width / 3 < LABEL_MAX ? c->width / 3 : LABEL_MAX, digits = 1;

        for (size_t k = n; k >= 10; k /= 10)
                digits++;
        c->t0 = 0;
        for (size_t i = 0; i < n; i++) {
                struct span sp[PH_N];
                long long end;
                /* "agent (members)": no agent has more members than the cut. */
                size_t l = grouped ? strlen(m[i].agent) + 3 + digits : strlen(m[i].vm) + 1 + strlen(m[i].agent);
                if (l > lw)
                        lw = l;
                if (!member_spans(&m[i], sp, &end))
                        continue;
                if (!c->t0 || sp[PH_FREEZE].s < c->t0)
                        c->t0 = sp[PH_FREEZE].s;
                if (end > t1)
                        t1 = end;
        }
        c->span = t1 > c->t0 ? t1 - c->t0 : 1;
        if (cap < strlen(WINDOW_LABEL))
                cap = strlen(WINDOW_LABEL);
        c->label_w = (unsigned)(lw < cap ? lw : cap);
        c->cols = c->width - c->label_w - 1;
}

/* One row per agent. */
static int agent_rows(const struct chart *c, const struct cat_member *m, size_t n, const size_t *idx)
{
        _cleanup_free_ double (*w)[PH_N] = calloc(c->cols, sizeof(*w));

        if (!w)
                return -ENOMEM;
        for (size_t i = 0, j; i < n; i = j) {
                for (j = i + 1; j < n && !strcmp(m[idx[j]].agent, m[idx[i]].agent); j++)
                        ;
                agent_row(c, m, idx + i, j - i, w);
        }
        return 0;
}

/* A note for each agent some of whose members have no timings: its row
 * shows only the others. */
static void agent_notes(const struct chart *c, const struct cat_member *m, size_t n, const size_t *idx)
{
        char note[300];

        for (size_t i = 0, j; i < n; i = j) {
                size_t untimed = 0, first = 0;
                for (j = i; j < n && !strcmp(m[idx[j]].agent, m[idx[i]].agent); j++)
                        if (m[idx[j]].frozen_at_us <= 0 && !untimed++)
                                first = idx[j];
                if (!untimed || untimed == j - i)
                        continue;
                snprintf(note, sizeof(note), "%.64s: %zu of %zu members without timings (first: %.64s, %.64s)",
                         m[first].agent, untimed, j - i, m[first].vm,
                         c->code_name ? c->code_name(m[first].code) : "no timings");
                clip(note, note, c->width);
                fprintf(c->out, "%s\n", note);
        }
}

/* A member frozen whose thaw time never came back (an aborted cut's agent
 * thaws without reporting it): its bar stops at its freeze. */
static void member_notes(const struct chart *c, const struct cat_member *m, size_t n)
{
        char note[300];

        for (size_t i = 0; i < n; i++) {
                if (m[i].frozen_at_us <= 0 || m[i].thawed_at_us > 0)
                        continue;
                snprintf(note, sizeof(note), "%.64s@%.64s: no thaw time recorded, its bar ends with its freeze",
                         m[i].vm, m[i].agent);
                clip(note, note, c->width);
                fprintf(c->out, "%s\n", note);
        }
}

static void legend(const struct chart *c, size_t n, int grouped)
{
        char text[600];
        double per_col_ms = (double)c->span / 1000.0 / c->cols;

        snprintf(text, sizeof(text),
                 "legend: F freeze, = frozen (held for the group), S snapshot, T thaw; |---| group window, first "
                 "freeze to last thaw. Agents' clocks, one column = %.3g ms.", per_col_ms);
        put_wrapped(c->out, text, c->width);
        if (!grouped)
                return;
        snprintf(text, sizeof(text),
                 "%zu members, more than %d: one row per agent (with its number of members), from its earliest "
                 "freeze to "
                 "its latest thaw; each cell shows the step its members spent the most time in during that "
                 "column.", n, TIMELINE_MAX_MEMBER_ROWS);
        put_wrapped(c->out, text, c->width);
}

int timeline_check_width(long long width, lserr *err)
{
        if (width < TIMELINE_MIN_WIDTH || width > TIMELINE_MAX_WIDTH)
                return lserr_set(err, -EINVAL, "timeline: width %lld is out of range: %d to %d columns", width,
                                 TIMELINE_MIN_WIDTH, TIMELINE_MAX_WIDTH);
        return 0;
}

int timeline_render(const struct cat_member *m, size_t n, const struct timeline_opts *o, FILE *out, lserr *err)
{
        struct chart c = {.width = o->width, .color = o->color, .out = out, .code_name = o->code_name};
        _cleanup_free_ size_t *idx = NULL;
        struct timeline_window w;
        size_t agents = 0;
        int grouped = n > TIMELINE_MAX_MEMBER_ROWS, r;
        char head[300];

        r = timeline_check_width(o->width, err);
        if (r < 0)
                return r;
        r = group_by_agent(m, n, &idx, &agents);
        if (r < 0)
                return lserr_set(err, r, "timeline: out of memory");
        timeline_window(m, n, &w);
        layout(&c, m, n, grouped);
        snprintf(head, sizeof(head),
                 "%zu members on %zu agents: group window %.1f ms (first freeze to last thaw), freeze skew %.1f ms, "
                 "longest frozen %.1f ms", n, agents, w.window_ms, w.skew_ms, w.max_frozen_ms);
        if (o->title)
                put_wrapped(out, o->title, c.width);
        put_wrapped(out, head, c.width);
        if (w.first_us)
                axis(&c);
        if (grouped) {
                r = agent_rows(&c, m, n, idx);
                if (r < 0)
                        return lserr_set(err, r, "timeline: out of memory");
        } else {
                for (size_t i = 0; i < n; i++)
                        member_row(&c, &m[i]);
        }
        window_row(&c, &w);
        if (grouped)
                agent_notes(&c, m, n, idx);
        else
                member_notes(&c, m, n);
        legend(&c, n, grouped);
        return 0;
}
