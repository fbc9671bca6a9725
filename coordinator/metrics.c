/* metrics: counters and histograms kept in memory (they start at zero with
 * the process, as Prometheus expects of counters) and the /metrics endpoint. */
#include "metrics.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "timeline.h"

/* Seconds: a freeze of a TCG guest is ~50 ms, a group window ~200 ms, a slow
 * guest agent several seconds. */
static const double bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_BOUNDS (sizeof(bounds) / sizeof(bounds[0]))

struct histogram {
        unsigned long long bucket[N_BOUNDS]; /* not cumulative; summed when written */
        unsigned long long count;
        double sum;
};

struct cut_count {
        char group[65];
        char outcome[16];
        unsigned long long n;
};

struct metrics {
        pthread_mutex_t lock;
        struct cut_count *cuts;
        size_t n_cuts;
        struct histogram freeze, snapshot, thaw, frozen, window;
        nng_http_server *srv;
        nng_http_handler *h;
        metrics_gauges_fn gauges;
        void *gauges_arg;
};

int metrics_new(struct metrics **ret)
{
        struct metrics *m = calloc(1, sizeof(*m));

        if (!m)
                return -ENOMEM;
        pthread_mutex_init(&m->lock, NULL);
        *ret = m;
        return 0;
}

void metrics_free(struct metrics *m)
{
        if (!m)
                return;
        metrics_stop(m);
        free(m->cuts);
        pthread_mutex_destroy(&m->lock);
        free(m);
}

static void observe(struct histogram *h, double s)
{
        size_t i = 0;

        while (i < N_BOUNDS && s > bounds[i])
                i++;
        if (i < N_BOUNDS)
                h->bucket[i]++;
        h->count++;
        h->sum += s;
}

void metrics_cut(struct metrics *m, const char *group, const char *outcome, const struct cat_member *mb, size_t n)
{
        struct cut_count *c = NULL;
        struct timeline_window w;

        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < m->n_cuts; i++)
                if (!strcmp(m->cuts[i].group, group) && !strcmp(m->cuts[i].outcome, outcome))
                        c = &m->cuts[i];
        if (!c) {
                struct cut_count *nc = realloc(m->cuts, (m->n_cuts + 1) * sizeof(*nc));
                if (nc) {
                        m->cuts = nc;
                        c = &m->cuts[m->n_cuts++];
                        memset(c, 0, sizeof(*c));
                        snprintf(c->group, sizeof(c->group), "%s", group);
                        snprintf(c->outcome, sizeof(c->outcome), "%s", outcome);
                }
        }
        if (c)
                c->n++;
        for (size_t i = 0; i < n; i++) {
                /* Steps that did not happen (an aborted cut's snapshot) are not observed. */
                if (mb[i].freeze_us)
                        observe(&m->freeze, (double)mb[i].freeze_us / 1e6);
                if (mb[i].snapshot_us)
                        observe(&m->snapshot, (double)mb[i].snapshot_us / 1e6);
                if (mb[i].thaw_us)
                        observe(&m->thaw, (double)mb[i].thaw_us / 1e6);
                if (mb[i].frozen_for_us)
                        observe(&m->frozen, (double)mb[i].frozen_for_us / 1e6);
        }
        /* The report's window, not a second definition of it. */
        timeline_window(mb, n, &w);
        if (w.window_ms > 0)
                observe(&m->window, w.window_ms / 1e3);
        pthread_mutex_unlock(&m->lock);
}

/* Label values are names ([A-Za-z0-9._-]) already; escaping keeps it so. */
static void label(FILE *out, const char *s)
{
        for (; *s; s++) {
                if (*s == '\\' || *s == '"')
                        fputc('\\', out);
                if (*s == '\n')
                        fputs("\\n", out);
                else
                        fputc(*s, out);
        }
}

static void histogram(FILE *out, const char *name, const char *help, const struct histogram *h)
{
        unsigned long long cum = 0;

        fprintf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
        for (size_t i = 0; i < N_BOUNDS; i++) {
                cum += h->bucket[i];
                fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], cum);
        }
        fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, h->count, name, h->sum, name,
                h->count);
}

void metrics_write(struct metrics *m, metrics_gauges_fn gauges, void *arg, FILE *out)
{
        pthread_mutex_lock(&m->lock);
        fprintf(out, "# HELP lockstep_cuts_total Cuts finished, by group and outcome.\n"
                     "# TYPE lockstep_cuts_total counter\n");
        for (size_t i = 0; i < m->n_cuts; i++) {
                fputs("lockstep_cuts_total{group=\"", out);
                label(out, m->cuts[i].group);
                fputs("\",outcome=\"", out);
                label(out, m->cuts[i].outcome);
                fprintf(out, "\"} %llu\n", m->cuts[i].n);
        }
        histogram(out, "lockstep_freeze_seconds", "Time to freeze one member.", &m->freeze);
        histogram(out, "lockstep_snapshot_seconds", "Time to snapshot one member's disks.", &m->snapshot);
        histogram(out, "lockstep_thaw_seconds", "Time to thaw one member.", &m->thaw);
        histogram(out, "lockstep_frozen_seconds", "How long one member stayed frozen, freeze to thaw.", &m->frozen);
        histogram(out, "lockstep_group_window_seconds", "First freeze to last thaw of a cut.", &m->window);
        pthread_mutex_unlock(&m->lock);
        if (gauges)
                gauges(arg, out);
}

static void handle(nng_aio *aio)
{
        nng_http_handler *h = nng_aio_get_input(aio, 1);
        struct metrics *m = nng_http_handler_get_data(h);
        nng_http_res *res = NULL;
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        int rv;

        if (!f) {
                nng_aio_finish(aio, NNG_ENOMEM);
                return;
        }
        metrics_write(m, m->gauges, m->gauges_arg, f);
        fclose(f);
        rv = nng_http_res_alloc(&res);
        if (rv == 0)
                rv = nng_http_res_set_header(res, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        if (rv == 0)
                rv = nng_http_res_copy_data(res, buf, len);
        free(buf);
        if (rv != 0) {
                if (res)
                        nng_http_res_free(res);
                nng_aio_finish(aio, rv);
                return;
        }
        nng_aio_set_output(aio, 0, res);
        nng_aio_finish(aio, 0);
}

int metrics_serve(struct metrics *m, const char *url, metrics_gauges_fn gauges, void *arg, lserr *err)
{
        nng_url *u = NULL;
        int rv;

        m->gauges = gauges;
        m->gauges_arg = arg;
        rv = nng_url_parse(&u, url);
        if (rv == 0)
                rv = nng_http_server_hold(&m->srv, u);
        if (rv == 0)
                rv = nng_http_handler_alloc(&m->h, "/metrics", handle);
        if (rv == 0)
                rv = nng_http_handler_set_data(m->h, m, NULL);
        if (rv == 0) {
                rv = nng_http_server_add_handler(m->srv, m->h);
                if (rv == 0)
                        m->h = NULL; /* the server owns it now */
        }
        if (rv == 0)
                rv = nng_http_server_start(m->srv);
        if (u)
                nng_url_free(u);
        if (rv != 0) {
                if (m->h)
                        nng_http_handler_free(m->h);
                m->h = NULL;
                if (m->srv)
                        nng_http_server_release(m->srv);
                m->srv = NULL;
                return lserr_set(err, -EIO, "metrics endpoint %s: %s", url, nng_strerror(rv));
        }
        return 0;
}

void metrics_stop(struct metrics *m)
{
        if (!m || !m->srv)
                return;
        nng_http_server_stop(m->srv);
        nng_http_server_release(m->srv);
        m->srv = NULL;
}
