/* floor: the baseline lockstep's cuts are measured against. One process calls
 * libvirt's API directly: freeze every VM at once (a thread each; with --tier,
 * one tier at a time, front first), then take each VM's external disk-only
 * snapshot and thaw it right after (back tiers first); no agents,
 * votes, leases, journal or catalog. Prints one JSON object per round, then puts
 * the disks back on their images (active block commit + pivot) so that rounds do
 * not pile up overlays. --discard does only that last part, for a cut another
 * tool (lockstep) took. */
#include <errno.h>
#include <getopt.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_MEMBERS 64
#define MAX_DISKS 16
#define TARGET_MAX 32
#define PATH_BUF 1024
#define ERR_MAX 512
#define SNAP_MAX 65
/* A discard commits only what the guest wrote since the cut: seconds at most. */
#define PIVOT_TIMEOUT_NS (120LL * 1000000000)
#define POLL_NS (5LL * 1000000)

enum { EXIT_ROUND = 1, EXIT_USAGE = 2, EXIT_SETUP = 3 };

struct conn {
        const char *uri;
        virConnectPtr c;
};

struct disk {
        char target[TARGET_MAX];
        char image[PATH_BUF];   /* the active image before the cut: what the cut holds */
        char overlay[PATH_BUF]; /* the active image after it */
};

/* A domain's disks as they are now: the ones that take an overlay, and the
 * others, which the snapshot must name to leave them out. */
struct disks {
        struct disk d[MAX_DISKS];
        size_t n;
        char others[MAX_DISKS][TARGET_MAX];
        size_t n_others;
};

/* Holds the freeze threads until all exist, so their calls start together. */
struct start {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int state; /* 0 wait, 1 go, -1 give up */
};

struct member {
        const char *vm;
        unsigned tier; /* --tier: frozen after the tiers before it */
        struct conn *conn;
        virDomainPtr dom;
        struct disks cut;
        /* One round. Times are CLOCK_MONOTONIC ns. */
        struct start *start;
        long long freeze_t0, freeze_t1, snap_t0, snap_t1, thaw_t0, thaw_t1;
        int freeze_tried, frozen_fs, snapped, thawed_fs;
        char err[ERR_MAX];
};

struct round {
        unsigned index;
        char snap[SNAP_MAX];
        char started_at[40];
        long long t0, t_prepared, t_end, cleanup_ns;
        int ok, per_host, by_tier;
        char cleanup_err[ERR_MAX];
};

static long long mono_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ns(long long ns)
{
        struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static double ns_to_ms(long long ns)
{
        return (double)ns / 1e6;
}

static void quiet(void *data, virErrorPtr e)
{
        (void)data;
        (void)e; /* read with virGetLastError and reported once, in the JSON */
}

static const char *lv_error(void)
{
        virErrorPtr e = virGetLastError();

        return e && e->message ? e->message : "unknown libvirt error";
}

static int set_err(char *buf, size_t n, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Keeps the first failure only: the later ones are its consequences. */
static int set_err(char *buf, size_t n, int code, const char *fmt, ...)
{
        va_list ap;

        if (buf[0])
                return code;
        va_start(ap, fmt);
        vsnprintf(buf, n, fmt, ap);
        va_end(ap);
        return code;
}

#define member_fail(m, code, ...) set_err((m)->err, sizeof((m)->err), (code), __VA_ARGS__)

/* ---- domain XML ------------------------------------------------------------ */

static xmlNodePtr xml_child(xmlNodePtr n, const char *name)
{
        for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
                if (c->type == XML_ELEMENT_NODE && !xmlStrcmp(c->name, (const xmlChar *)name))
                        return c;
        return NULL;
}

/* Copies an attribute ("" when absent); -ENAMETOOLONG rather than a cut path. */
static int xml_attr(xmlNodePtr n, const char *name, char *out, size_t size)
{
        xmlChar *v = n ? xmlGetProp(n, (const xmlChar *)name) : NULL;
        int len = snprintf(out, size, "%s", v ? (const char *)v : "");

        xmlFree(v);
        return len < 0 || (size_t)len >= size ? -ENAMETOOLONG : 0;
}

/* Sorts one <disk> element into ret. */
static int add_disk(const char *vm, xmlNodePtr d, struct disks *ret, char *err, size_t errn)
{
        char type[16], device[16], target[TARGET_MAX], path[PATH_BUF];
        int eligible;

        if (xml_attr(d, "type", type, sizeof(type)) < 0 || xml_attr(d, "device", device, sizeof(device)) < 0 ||
            xml_attr(xml_child(d, "target"), "dev", target, sizeof(target)) < 0 ||
            xml_attr(xml_child(d, "source"), "file", path, sizeof(path)) < 0)
                return set_err(err, errn, -ENAMETOOLONG, "%s: read domain XML: a disk attribute is too long", vm);
        if (!target[0])
                return 0;
        eligible = !strcmp(type, "file") && (!device[0] || !strcmp(device, "disk")) && path[0] &&
                   !xml_child(d, "readonly") && !xml_child(d, "shareable");
        if (eligible ? ret->n == MAX_DISKS : ret->n_others == MAX_DISKS)
                return set_err(err, errn, -E2BIG, "%s: read domain XML: more than %d disks", vm, MAX_DISKS);
        if (eligible) {
                snprintf(ret->d[ret->n].target, TARGET_MAX, "%s", target);
                snprintf(ret->d[ret->n].image, PATH_BUF, "%s", path);
                ret->d[ret->n].overlay[0] = '\0';
                ret->n++;
        } else {
                snprintf(ret->others[ret->n_others++], TARGET_MAX, "%s", target);
        }
        return 0;
}

/* The live definition's disks: writable file disks take an overlay. */
static int read_disks(virDomainPtr dom, const char *vm, struct disks *ret, char *err, size_t errn)
{
        char *xml = virDomainGetXMLDesc(dom, 0);
        xmlDocPtr doc = NULL;
        int r = 0;

        memset(ret, 0, sizeof(*ret));
        if (!xml) {
                r = set_err(err, errn, -EIO, "%s: read domain XML: %s", vm, lv_error());
                goto out;
        }
        doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc) {
                r = set_err(err, errn, -EINVAL, "%s: read domain XML: does not parse", vm);
                goto out;
        }
        for (xmlNodePtr d = xml_child(xml_child(xmlDocGetRootElement(doc), "devices"), "disk"); d && r == 0;
             d = d->next)
                if (d->type == XML_ELEMENT_NODE && !xmlStrcmp(d->name, (const xmlChar *)"disk"))
                        r = add_disk(vm, d, ret, err, errn);
        if (r == 0 && ret->n == 0)
                r = set_err(err, errn, -ENOENT, "%s: no writable file disk to snapshot", vm);
out:
        xmlFreeDoc(doc);
        free(xml);
        return r;
}

/* Writes s as XML attribute text. */
static void xml_put(FILE *f, const char *s)
{
        for (; *s; s++) {
                switch (*s) {
                case '&': fputs("&amp;", f); break;
                case '<': fputs("&lt;", f); break;
                case '>': fputs("&gt;", f); break;
                case '\'': fputs("&apos;", f); break;
                case '"': fputs("&quot;", f); break;
                default: fputc(*s, f); break;
                }
        }
}

/* The <domainsnapshot> of one member: every eligible disk gets its overlay, the
 * others are named with snapshot='no' so libvirt does not pick a file for them. */
static int snapshot_xml(const struct member *m, const char *snap, char **ret)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        int r = 0;

        if (!f)
                return -errno;
        fprintf(f, "<domainsnapshot><name>%s</name><disks>", snap);
        for (size_t i = 0; i < m->cut.n; i++) {
                fputs("<disk name='", f);
                xml_put(f, m->cut.d[i].target);
                fputs("' snapshot='external' type='file'><driver type='qcow2'/><source file='", f);
                xml_put(f, m->cut.d[i].overlay);
                fputs("'/></disk>", f);
        }
        for (size_t i = 0; i < m->cut.n_others; i++) {
                fputs("<disk name='", f);
                xml_put(f, m->cut.others[i]);
                fputs("' snapshot='no'/>", f);
        }
        fputs("</disks></domainsnapshot>", f);
        if (fclose(f) != 0)
                r = -ENOMEM;
        if (r == 0)
                *ret = buf;
        else
                free(buf);
        return r;
}

/* ---- one round ------------------------------------------------------------- */

static void *freeze_main(void *arg)
{
        struct member *m = arg;
        int go, n;

        pthread_mutex_lock(&m->start->lock);
        while (m->start->state == 0)
                pthread_cond_wait(&m->start->cond, &m->start->lock);
        go = m->start->state > 0;
        pthread_mutex_unlock(&m->start->lock);
        if (!go)
                return NULL;
        /* Set before the call: a freeze that times out may still land, so it is thawed. */
        m->freeze_tried = 1;
        m->freeze_t0 = mono_ns();
        n = virDomainFSFreeze(m->dom, NULL, 0, 0);
        m->freeze_t1 = mono_ns();
        if (n < 0)
                member_fail(m, -EIO, "%s: fsfreeze: %s", m->vm, lv_error());
        else
                m->frozen_fs = n;
        return NULL;
}

/* Freezes every member at once; returns how many threads ran (all joined). */
static size_t freeze_all(struct member *ms, size_t n)
{
        struct start st = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
        pthread_t th[MAX_MEMBERS];
        size_t k = 0;

        for (; k < n; k++) {
                ms[k].start = &st;
                if (pthread_create(&th[k], NULL, freeze_main, &ms[k]) != 0)
                        break;
        }
        pthread_mutex_lock(&st.lock);
        /* All or nothing: if a thread could not be made, none freezes. */
        st.state = k == n ? 1 : -1;
        pthread_cond_broadcast(&st.cond);
        pthread_mutex_unlock(&st.lock);
        for (size_t i = 0; i < k; i++)
                pthread_join(th[i], NULL);
        pthread_cond_destroy(&st.cond);
        pthread_mutex_destroy(&st.lock);
        return k;
}

/* Snapshot of one frozen member, every eligible disk at once. */
static int snapshot_member(struct member *m, const char *snap)
{
        char *xml = NULL;
        virDomainSnapshotPtr s = NULL;
        int r = snapshot_xml(m, snap, &xml);

        if (r < 0) {
                member_fail(m, r, "%s: snapshot: cannot build the snapshot XML", m->vm);
                goto out;
        }
        m->snap_t0 = mono_ns();
        s = virDomainSnapshotCreateXML(m->dom, xml,
                                       VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC);
        m->snap_t1 = mono_ns();
        if (!s) {
                r = member_fail(m, -EIO, "%s: external snapshot \"%s\": %s", m->vm, snap, lv_error());
                goto out;
        }
        m->snapped = 1;
out:
        if (s)
                virDomainSnapshotFree(s);
        free(xml);
        return r;
}

static void thaw_member(struct member *m)
{
        int n;

        m->thaw_t0 = mono_ns();
        n = virDomainFSThaw(m->dom, NULL, 0, 0);
        m->thaw_t1 = mono_ns();
        if (n < 0) {
                member_fail(m, -EIO, "%s: fsthaw: %s", m->vm, lv_error());
                return;
        }
        m->thawed_fs = n;
        /* Nothing to thaw means the guest thawed on its own: the snapshot taken
         * meanwhile is not quiesced (lockstep votes no on this too). */
        if (m->snapped && m->frozen_fs > 0 && n == 0)
                member_fail(m, -ESTALE, "%s: fsthaw: filesystems were no longer frozen before the snapshot", m->vm);
}

/* The overlay next to the image, named after the snapshot: "<image>.<snap>.qcow2".
 * The floor discards it after every round, so the name never grows; lockstep's
 * agent names its own "<vm>-<disk>.<txid>.qcow2", which ends the same way. */
static int overlay_name(struct disk *d, const char *snap)
{
        char buf[PATH_BUF];
        int len = snprintf(buf, sizeof(buf), "%s.%s.qcow2", d->image, snap);

        if (len < 0 || (size_t)len >= sizeof(buf))
                return -ENAMETOOLONG;
        memcpy(d->overlay, buf, (size_t)len + 1);
        return 0;
}

/* The members one thread snapshots and thaws in turn: all of them, or those of
 * one connection (conn set). */
struct lane {
        struct member *ms;
        size_t n;
        const struct conn *conn;
        const char *snap;
        int failed;  /* no snapshot after a failure, only thaws */
        int reverse; /* back tiers first: members are sorted by tier */
};

static void *snap_thaw(void *arg)
{
        struct lane *l = arg;

        for (size_t j = 0; j < l->n; j++) {
                struct member *m = &l->ms[l->reverse ? l->n - 1 - j : j];
                if (l->conn && m->conn != l->conn)
                        continue;
                if (!l->failed && snapshot_member(m, l->snap) < 0)
                        l->failed = 1;
                if (m->freeze_tried)
                        thaw_member(m);
        }
        return NULL;
}

/* One lane per libvirt connection, in parallel, as lockstep's agents work one
 * per host. A lane that cannot get a thread runs here, so every guest is thawed. */
static void snap_thaw_per_host(struct member *ms, size_t n, const char *snap, int failed, int reverse)
{
        struct lane lanes[MAX_MEMBERS];
        pthread_t th[MAX_MEMBERS];
        int running[MAX_MEMBERS] = {0};
        size_t k = 0;

        for (size_t i = 0; i < n; i++) {
                int seen = 0;
                for (size_t j = 0; j < k; j++)
                        seen |= lanes[j].conn == ms[i].conn;
                if (!seen)
                        lanes[k++] = (struct lane){.ms = ms, .n = n, .conn = ms[i].conn, .snap = snap, .failed = failed,
                                                   .reverse = reverse};
        }
        for (size_t j = 0; j < k; j++)
                running[j] = pthread_create(&th[j], NULL, snap_thaw, &lanes[j]) == 0;
        for (size_t j = 0; j < k; j++) {
                if (running[j])
                        pthread_join(th[j], NULL);
                else
                        snap_thaw(&lanes[j]);
        }
}

/* One cut: read the disks, freeze all in parallel, then snapshot and thaw each
 * in turn (rd->per_host: each connection's members in turn, connections in
 * parallel). Never returns with a guest frozen by it. 0, or the first failure. */
static int round_run(struct member *ms, size_t n, struct round *rd)
{
        sigset_t block, old;
        size_t started;
        int r = 0, failed = 0;

        rd->t0 = mono_ns();
        for (size_t i = 0; i < n; i++) {
                struct member *m = &ms[i];
                m->freeze_t0 = m->freeze_t1 = m->snap_t0 = m->snap_t1 = m->thaw_t0 = m->thaw_t1 = 0;
                m->freeze_tried = m->frozen_fs = m->snapped = m->thawed_fs = 0;
                m->err[0] = '\0';
                r = read_disks(m->dom, m->vm, &m->cut, m->err, sizeof(m->err));
                for (size_t k = 0; r == 0 && k < m->cut.n; k++)
                        if (overlay_name(&m->cut.d[k], rd->snap) < 0)
                                r = member_fail(m, -ENAMETOOLONG, "%s: disk %s: overlay path is too long", m->vm,
                                                m->cut.d[k].target);
                if (r < 0)
                        goto out;
        }
        rd->t_prepared = mono_ns();

        /* A signal between freeze and thaw would leave guests frozen: it waits
         * until every guest is thawed (the threads inherit the mask). */
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGHUP);
        sigaddset(&block, SIGQUIT);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        /* By tier: each tier (a run of the sorted members) at once, the next
         * once it is all frozen; a failure freezes no further tier. */
        started = 0;
        for (size_t i = 0; i < n && started == i && !failed;) {
                size_t j = i;
                while (j < n && (!rd->by_tier || ms[j].tier == ms[i].tier))
                        j++;
                started += freeze_all(&ms[i], j - i);
                for (size_t k = i; k < j; k++)
                        failed |= ms[k].err[0] != '\0';
                i = j;
        }
        failed |= started != n;
        if (rd->per_host)
                snap_thaw_per_host(ms, n, rd->snap, failed, rd->by_tier);
        else
                snap_thaw(&(struct lane){.ms = ms, .n = n, .snap = rd->snap, .failed = failed, .reverse = rd->by_tier});
        rd->t_end = mono_ns();
        pthread_sigmask(SIG_SETMASK, &old, NULL);

        if (started != n)
                r = -EAGAIN;
        for (size_t i = 0; r == 0 && i < n; i++)
                if (ms[i].err[0])
                        r = -EIO;
out:
        rd->ok = r == 0;
        return r;
}

/* ---- discard --------------------------------------------------------------- */

/* Active commit of a disk's overlay into the image under it, then pivot: the
 * guest writes to that image again and the overlay is no longer used. */
static int commit_pivot(virDomainPtr dom, const char *vm, const char *target, char *err, size_t errn)
{
        long long deadline = mono_ns() + PIVOT_TIMEOUT_NS;
        virDomainBlockJobInfo info;
        int running = 0, r = 0, q;

        /* SHALLOW: into the overlay's own backing image; older layers stay. */
        if (virDomainBlockCommit(dom, target, NULL, NULL, 0,
                                 VIR_DOMAIN_BLOCK_COMMIT_ACTIVE | VIR_DOMAIN_BLOCK_COMMIT_SHALLOW) < 0) {
                r = set_err(err, errn, -EIO, "%s: discard: disk %s: block commit: %s", vm, target, lv_error());
                goto out;
        }
        running = 1;
        /* libvirt refuses the pivot until the job is ready; a refusal is retried. */
        for (;;) {
                q = virDomainGetBlockJobInfo(dom, target, &info, 0);
                if (q < 0) {
                        r = set_err(err, errn, -EIO, "%s: discard: disk %s: block job: %s", vm, target, lv_error());
                        goto out;
                }
                if (q == 0) {
                        running = 0;
                        r = set_err(err, errn, -EIO, "%s: discard: disk %s: the commit job ended before the pivot", vm,
                                    target);
                        goto out;
                }
                if (info.cur == info.end &&
                    virDomainBlockJobAbort(dom, target, VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT) == 0)
                        break;
                if (mono_ns() > deadline) {
                        r = set_err(err, errn, -ETIMEDOUT, "%s: discard: disk %s: not ready to pivot after %llds: %s",
                                    vm, target, PIVOT_TIMEOUT_NS / 1000000000LL, lv_error());
                        goto out;
                }
                sleep_ns(POLL_NS);
        }
        /* The pivot above is synchronous; this only confirms the job is gone. */
        running = 0;
        while ((q = virDomainGetBlockJobInfo(dom, target, &info, 0)) == 1 && mono_ns() < deadline)
                sleep_ns(POLL_NS);
        if (q != 0)
                r = set_err(err, errn, -EIO, "%s: discard: disk %s: the pivot did not finish", vm, target);
out:
        if (running)
                virDomainBlockJobAbort(dom, target, 0); /* plain cancel: the overlay stays active */
        return r;
}

/* Puts every disk whose active image is snap's overlay (its name ends in ".<snap>.qcow2")
 * back on the image under it, removes the overlay file and snap's metadata.
 * Disks not on such an overlay are left alone. */
static int discard(struct member *m, const char *snap, unsigned *ret_n, char *err, size_t errn)
{
        struct disks *now = calloc(1, sizeof(*now));
        char suffix[SNAP_MAX + 16];
        size_t sl = (size_t)snprintf(suffix, sizeof(suffix), ".%s.qcow2", snap);
        virDomainSnapshotPtr s = NULL;
        unsigned done = 0;
        int r;

        if (!now)
                return set_err(err, errn, -ENOMEM, "%s: discard: out of memory", m->vm);
        r = read_disks(m->dom, m->vm, now, err, errn);
        for (size_t i = 0; r == 0 && i < now->n; i++) {
                const struct disk *d = &now->d[i];
                size_t pl = strlen(d->image);
                if (pl <= sl || strcmp(d->image + pl - sl, suffix) != 0)
                        continue;
                r = commit_pivot(m->dom, m->vm, d->target, err, errn);
                if (r == 0 && unlink(d->image) < 0 && errno != ENOENT)
                        r = set_err(err, errn, -errno, "%s: discard: remove \"%s\": %m", m->vm, d->image);
                done += r == 0;
        }
        /* Checked, not assumed: no disk may still be on one of snap's overlays. */
        if (r == 0 && done)
                r = read_disks(m->dom, m->vm, now, err, errn);
        for (size_t i = 0; r == 0 && done && i < now->n; i++) {
                size_t pl = strlen(now->d[i].image);
                if (pl > sl && !strcmp(now->d[i].image + pl - sl, suffix))
                        r = set_err(err, errn, -EIO, "%s: discard: disk %s is still on \"%s\"", m->vm,
                                    now->d[i].target, now->d[i].image);
        }
        if (r == 0)
                s = virDomainSnapshotLookupByName(m->dom, snap, 0);
        if (s && virDomainSnapshotDelete(s, VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY) < 0)
                r = set_err(err, errn, -EIO, "%s: discard: drop snapshot metadata \"%s\": %s", m->vm, snap,
                            lv_error());
        if (r == 0)
                *ret_n = done;
        if (s)
                virDomainSnapshotFree(s);
        free(now);
        return r;
}

/* Discards snap on every member; the first error goes to err. */
static int discard_all(struct member *ms, size_t n, const char *snap, unsigned *ret_n, char *err, size_t errn)
{
        unsigned total = 0;
        int r = 0;

        for (size_t i = 0; i < n; i++) {
                unsigned k = 0;
                int q = discard(&ms[i], snap, &k, err, errn);
                if (q < 0 && r == 0)
                        r = q;
                total += k;
        }
        *ret_n = total;
        return r;
}

/* ---- output ---------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
        fputc('"', f);
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                if (c == '"' || c == '\\')
                        fprintf(f, "\\%c", c);
                else if (c < 0x20)
                        fprintf(f, "\\u%04x", c);
                else
                        fputc(c, f);
        }
        fputc('"', f);
}

static void print_round(FILE *f, const struct member *ms, size_t n, const struct round *rd)
{
        long long first = 0, last_start = 0, last_frozen = 0, last_thaw = 0, max_frozen = 0;
        const char *error = "";

        for (size_t i = 0; i < n; i++) {
                const struct member *m = &ms[i];
                if (!error[0] && m->err[0])
                        error = m->err;
                if (!m->freeze_tried)
                        continue;
                if (!first || m->freeze_t0 < first)
                        first = m->freeze_t0;
                if (m->freeze_t0 > last_start)
                        last_start = m->freeze_t0;
                if (m->freeze_t1 > last_frozen)
                        last_frozen = m->freeze_t1;
                if (m->thaw_t1 > last_thaw)
                        last_thaw = m->thaw_t1;
                if (m->thaw_t1 - m->freeze_t0 > max_frozen)
                        max_frozen = m->thaw_t1 - m->freeze_t0;
        }
        fprintf(f, "{\"method\":\"%s\",\"order\":\"%s\",\"round\":%u,\"snapshot\":",
                rd->by_tier ? "floor-tiers" : "floor", rd->per_host ? "per-host" : "serial", rd->index);
        json_str(f, rd->snap);
        fprintf(f, ",\"ok\":%s,\"error\":", rd->ok ? "true" : "false");
        json_str(f, error);
        fprintf(f, ",\"started_at\":\"%s\",\"e2e_ms\":%.3f,\"prepare_ms\":%.3f", rd->started_at,
                rd->t_end ? ns_to_ms(rd->t_end - rd->t0) : 0.0, rd->t_prepared ? ns_to_ms(rd->t_prepared - rd->t0) : 0.0);
        fprintf(f, ",\"group_window_ms\":%.3f,\"freeze_skew_ms\":%.3f,\"all_frozen_ms\":%.3f,\"max_frozen_ms\":%.3f",
                first ? ns_to_ms(last_thaw - first) : 0.0, first ? ns_to_ms(last_start - first) : 0.0,
                first ? ns_to_ms(last_frozen - first) : 0.0, ns_to_ms(max_frozen));
        fprintf(f, ",\"cleanup_ms\":%.3f,\"cleanup_error\":", ns_to_ms(rd->cleanup_ns));
        json_str(f, rd->cleanup_err);
        fputs(",\"members\":[", f);
        for (size_t i = 0; i < n; i++) {
                const struct member *m = &ms[i];
                fprintf(f, "%s{\"vm\":", i ? "," : "");
                json_str(f, m->vm);
                fputs(",\"uri\":", f);
                json_str(f, m->conn->uri);
                fprintf(f, ",\"tier\":%u,\"ok\":%s,\"error\":", m->tier, m->err[0] ? "false" : "true");
                json_str(f, m->err);
                fprintf(f,
                        ",\"frozen_fs\":%d,\"thawed_fs\":%d,\"freeze_at_ms\":%.3f,\"freeze_ms\":%.3f,"
                        "\"snapshot_ms\":%.3f,\"thaw_ms\":%.3f,\"frozen_ms\":%.3f,\"thawed_at_ms\":%.3f",
                        m->frozen_fs, m->thawed_fs, m->freeze_tried ? ns_to_ms(m->freeze_t0 - first) : 0.0,
                        ns_to_ms(m->freeze_t1 - m->freeze_t0), ns_to_ms(m->snap_t1 - m->snap_t0), ns_to_ms(m->thaw_t1 - m->thaw_t0),
                        m->thaw_t1 ? ns_to_ms(m->thaw_t1 - m->freeze_t0) : 0.0, m->thaw_t1 ? ns_to_ms(m->thaw_t1 - first) : 0.0);
                fputs(",\"disks\":[", f);
                for (size_t k = 0; m->snapped && k < m->cut.n; k++) {
                        fprintf(f, "%s{\"disk\":", k ? "," : "");
                        json_str(f, m->cut.d[k].target);
                        fputs(",\"image\":", f);
                        json_str(f, m->cut.d[k].image);
                        fputs(",\"overlay\":", f);
                        json_str(f, m->cut.d[k].overlay);
                        fputc('}', f);
                }
                fputs("]}", f);
        }
        fputs("]}\n", f);
        fflush(f);
}

/* ---- setup ----------------------------------------------------------------- */

static void usage(FILE *f)
{
        fprintf(f,
                "usage: lockstep-bench-floor [options] MEMBER...\n"
                "  MEMBER is VM=URI, or a VM name that takes the last --uri given before it.\n"
                "  -u, --uri URI          libvirt URI for the VM names after it\n"
                "  -n, --rounds N         cuts to take (default 1)\n"
                "  -t, --ga-timeout S     guest agent response timeout, seconds (default 10)\n"
                "  -p, --prefix P         snapshot name prefix, up to 24 characters (default bench-floor)\n"
                "  -g, --gap-ms MS        pause between rounds (default 1000)\n"
                "  -k, --keep             keep each cut's overlays (no discard)\n"
                "  -P, --per-host         snapshot + thaw the members of each URI in turn, URIs in\n"
                "                         parallel (default: all members in turn)\n"
                "  -T, --tier N           the members after it are in tier N (0 = front, the default):\n"
                "                         tiers are frozen one at a time, front first, and\n"
                "                         snapshotted back tiers first, as lockstep does\n"
                "  -d, --discard SNAP     take no cut; discard snapshot SNAP's overlays on the members\n"
                "One JSON object per round (or per discard) on stdout.\n");
}

static int parse_uint(const char *s, unsigned max, unsigned *ret)
{
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || end == s || *end || v > max)
                return -ERANGE;
        *ret = (unsigned)v;
        return 0;
}

static int name_ok(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n >= SNAP_MAX - 16)
                return 0;
        return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* The connection for uri, opened once and shared by its members. */
static struct conn *conn_for(struct conn *cs, size_t *n, const char *uri)
{
        for (size_t i = 0; i < *n; i++)
                if (!strcmp(cs[i].uri, uri))
                        return &cs[i];
        cs[*n].uri = uri;
        cs[*n].c = virConnectOpen(uri);
        if (!cs[*n].c) {
                fprintf(stderr, "lockstep-bench-floor: libvirt \"%s\": connect: %s\n", uri, lv_error());
                return NULL;
        }
        return &cs[(*n)++];
}

static void iso_now(char out[40])
{
        struct timespec ts;
        struct tm tm;
        char sec[24];

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out, 40, "%.23s.%03dZ", sec, (int)(ts.tv_nsec / 1000000) % 1000);
}

struct opts {
        unsigned rounds, ga_timeout_s, gap_ms;
        int keep, per_host, by_tier;
        const char *prefix, *discard;
        char *member_arg[MAX_MEMBERS];
        unsigned member_tier[MAX_MEMBERS];
        const char *member_uri[MAX_MEMBERS];
        size_t n_members;
};

static int parse_args(int argc, char **argv, struct opts *o)
{
        static const struct option longs[] = {
                {"uri", required_argument, NULL, 'u'},     {"rounds", required_argument, NULL, 'n'},
                {"ga-timeout", required_argument, NULL, 't'}, {"prefix", required_argument, NULL, 'p'},
                {"gap-ms", required_argument, NULL, 'g'},  {"keep", no_argument, NULL, 'k'},
                {"discard", required_argument, NULL, 'd'}, {"per-host", no_argument, NULL, 'P'},
                {"tier", required_argument, NULL, 'T'},    {"help", no_argument, NULL, 'h'},
                {0},
        };
        const char *uri = NULL;
        unsigned tier = 0;
        int c;

        /* "-" first: member names come back in order, each with the --uri before it. */
        while ((c = getopt_long(argc, argv, "-u:n:t:p:g:kd:PT:h", longs, NULL)) != -1) {
                switch (c) {
                case 1: {
                        char *eq = strchr(optarg, '=');
                        if (o->n_members == MAX_MEMBERS) {
                                fprintf(stderr, "lockstep-bench-floor: at most %d members\n", MAX_MEMBERS);
                                return -E2BIG;
                        }
                        if (eq)
                                *eq = '\0';
                        if (!name_ok(optarg) || (!eq && !uri)) {
                                fprintf(stderr, "lockstep-bench-floor: member \"%s\": give VM=URI, or --uri first\n",
                                        optarg);
                                return -EINVAL;
                        }
                        o->member_tier[o->n_members] = tier;
                        o->member_arg[o->n_members] = optarg;
                        o->member_uri[o->n_members++] = eq ? eq + 1 : uri;
                        break;
                }
                case 'u': uri = optarg; break;
                case 'n':
                        if (parse_uint(optarg, 100000, &o->rounds) < 0 || o->rounds == 0)
                                return -EINVAL;
                        break;
                case 't':
                        if (parse_uint(optarg, 3600, &o->ga_timeout_s) < 0 || o->ga_timeout_s == 0)
                                return -EINVAL;
                        break;
                case 'g':
                        if (parse_uint(optarg, 3600000, &o->gap_ms) < 0)
                                return -EINVAL;
                        break;
                case 'p': o->prefix = optarg; break;
                case 'k': o->keep = 1; break;
                case 'P': o->per_host = 1; break;
                case 'T':
                        if (parse_uint(optarg, 64, &tier) < 0)
                                return -EINVAL;
                        o->by_tier |= tier > 0;
                        break;
                case 'd': o->discard = optarg; break;
                case 'h': usage(stdout); exit(0);
                default: return -EINVAL;
                }
        }
        /* The prefix leaves room in a 64-byte name for "-<stamp>-<pid>-<round>". */
        if (o->n_members == 0 || !name_ok(o->prefix) || strlen(o->prefix) > 24 ||
            (o->discard && !name_ok(o->discard)))
                return -EINVAL;
        return 0;
}

/* Takes the rounds; stops at the first that fails (after discarding it). */
static int run_rounds(struct member *ms, size_t n, const struct opts *o)
{
        char stamp[32];
        time_t now = time(NULL);
        struct tm tm;
        int rc = 0;

        gmtime_r(&now, &tm);
        strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
        for (unsigned i = 1; i <= o->rounds && rc == 0; i++) {
                struct round rd = {.index = i, .per_host = o->per_host, .by_tier = o->by_tier};
                unsigned k = 0;
                long long c0;
                snprintf(rd.snap, sizeof(rd.snap), "%s-%s-%ld-%u", o->prefix, stamp, (long)getpid(), i);
                iso_now(rd.started_at);
                if (round_run(ms, n, &rd) < 0)
                        rc = EXIT_ROUND;
                c0 = mono_ns();
                /* Also after a failed round: whatever it made goes. */
                if (!o->keep && discard_all(ms, n, rd.snap, &k, rd.cleanup_err, sizeof(rd.cleanup_err)) < 0)
                        rc = EXIT_ROUND;
                rd.cleanup_ns = mono_ns() - c0;
                print_round(stdout, ms, n, &rd);
                if (rc == 0 && i < o->rounds && o->gap_ms)
                        sleep_ns((long long)o->gap_ms * 1000000);
        }
        return rc;
}

static int run_discard(struct member *ms, size_t n, const char *snap)
{
        char err[ERR_MAX] = "";
        unsigned k = 0;
        long long t0 = mono_ns();
        int r = discard_all(ms, n, snap, &k, err, sizeof(err));

        printf("{\"method\":\"discard\",\"snapshot\":");
        json_str(stdout, snap);
        printf(",\"ok\":%s,\"overlays\":%u,\"cleanup_ms\":%.3f,\"error\":", r == 0 ? "true" : "false", k,
               ns_to_ms(mono_ns() - t0));
        json_str(stdout, err);
        printf("}\n");
        return r == 0 ? 0 : EXIT_ROUND;
}

int main(int argc, char **argv)
{
        struct opts o = {.rounds = 1, .ga_timeout_s = 10, .gap_ms = 1000, .prefix = "bench-floor"};
        struct conn conns[MAX_MEMBERS] = {{0}};
        struct member *ms = NULL;
        size_t n_conns = 0, n = 0;
        int rc = 0;

        /* A libvirtd that dies under a call must fail the call, not kill us
         * with SIGPIPE while guests are frozen. */
        signal(SIGPIPE, SIG_IGN);
        if (parse_args(argc, argv, &o) < 0) {
                usage(stderr);
                return EXIT_USAGE;
        }
        if (virInitialize() < 0) {
                fprintf(stderr, "lockstep-bench-floor: libvirt does not initialize\n");
                return EXIT_SETUP;
        }
        virSetErrorFunc(NULL, quiet);
        ms = calloc(o.n_members, sizeof(*ms));
        if (!ms) {
                rc = EXIT_SETUP;
                goto out;
        }
        for (; n < o.n_members; n++) {
                struct member *m = &ms[n];
                /* Sorted by tier as they come (insertion, stable): a tier is a run. */
                size_t at = n;
                while (at > 0 && ms[at - 1].tier > o.member_tier[n]) {
                        ms[at] = ms[at - 1];
                        at--;
                }
                m = &ms[at];
                memset(m, 0, sizeof(*m));
                m->tier = o.member_tier[n];
                m->vm = o.member_arg[n];
                m->conn = conn_for(conns, &n_conns, o.member_uri[n]);
                m->dom = m->conn ? virDomainLookupByName(m->conn->c, m->vm) : NULL;
                if (!m->dom) {
                        if (m->conn)
                                fprintf(stderr, "lockstep-bench-floor: %s: lookup on \"%s\": %s\n", m->vm,
                                        m->conn->uri, lv_error());
                        rc = EXIT_SETUP;
                        goto out;
                }
                /* Once, outside the timed part: a hung guest agent fails the freeze
                 * instead of hanging the round (lockstep's agent sets it per call). */
                if (!o.discard && virDomainAgentSetResponseTimeout(m->dom, (int)o.ga_timeout_s, 0) < 0) {
                        fprintf(stderr, "lockstep-bench-floor: %s: set guest agent timeout: %s\n", m->vm, lv_error());
                        rc = EXIT_SETUP;
                        n++;
                        goto out;
                }
        }
        rc = o.discard ? run_discard(ms, n, o.discard) : run_rounds(ms, n, &o);
out:
        for (size_t i = 0; ms && i < n; i++)
                if (ms[i].dom)
                        virDomainFree(ms[i].dom);
        for (size_t i = 0; i < n_conns; i++)
                virConnectClose(conns[i].c);
        free(ms);
        return rc;
}
