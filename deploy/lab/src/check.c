/* lab-check: verifies one cut of the lab: each disk image's ext4 (e2fsck -fn, no
 * journal recovery pending), each workload log and page store, and counts orphan
 * ring messages (received in the cut, sent outside it) across the members; with
 * --not-after, also that no record in any image was made after a given host time. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lab_rec.h"

#define MAX_MEMBERS 64
#define MAX_DISKS 4
#define MAX_ERRORS 8
#define MAX_ORPHAN_IDS 20
/* A lab log grows by a few dozen records a second; this bounds a runaway file. */
#define MAX_LOG_BYTES (256u << 20)

enum { EXIT_OK = 0, EXIT_BROKEN = 1, EXIT_USAGE = 2, EXIT_ORPHANS = 4, EXIT_LATE = 8 };

struct disk {
        const char *image;
        char role[LAB_NAME_MAX + 1]; /* "vda", "vdb", ... from /lslab-id, or "" */
        char fsck[16];     /* "clean", "errors", "recovery", "unreadable" */
        bool has_log, has_pages;
        char raw[4096];    /* extracted raw image, removed after use */
};

struct member {
        char vm[LAB_NAME_MAX + 1];
        char tier[LAB_NAME_MAX + 1];
        struct disk disks[MAX_DISKS];
        int n_disks;
        char log_path[4096];   /* extracted or given log */
        char pages_path[4096]; /* extracted page store, "" if none */

        /* log */
        bool log_found;
        uint64_t records, last_seq, n_sent, n_recv, n_tick;
        uint64_t bad_records, seq_holes;
        bool torn_tail;
        bool last_timed;          /* the last record carries a host time */
        int64_t last_at_us;
        uint32_t last_err_us;
        uint64_t late;            /* records made after --not-after for sure */
        char late_msg[256];       /* the first of them, or why none could be checked */
        enum lab_kind *kinds; /* kinds[seq-1], for the page check */
        uint64_t *sent;       /* own message counters, sorted */
        size_t n_sent_alloc;
        char **recv;          /* received message ids */
        size_t n_recv_alloc;

        /* pages */
        int pages_valid, pages_empty, pages_bad, pages_ahead;

        uint64_t orphans, unverified;
        char *errors[MAX_ERRORS];
        int n_errors;
};

static struct member members[MAX_MEMBERS];
static int n_members;
static char workdir[1024];
static bool opt_json, opt_logs_only, opt_quiet, opt_live, opt_has_not_after;
static int64_t opt_not_after; /* host Unix us */
static const char *opt_keep;

static void member_error(struct member *m, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void member_error(struct member *m, const char *fmt, ...)
{
        va_list ap;
        char *s = NULL;

        if (m->n_errors == MAX_ERRORS)
                return;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        if (s)
                m->errors[m->n_errors++] = s;
}

static void *xrealloc(void *p, size_t n)
{
        p = realloc(p, n);
        if (!p) {
                fprintf(stderr, "lab-check: out of memory\n");
                exit(EXIT_USAGE);
        }
        return p;
}

/* Runs argv with stdout+stderr into out_file; returns the exit status, or -1 if
 * it could not run or died from a signal. */
static int run(char *const argv[], const char *out_file)
{
        pid_t pid = fork();
        int st;

        if (pid < 0)
                return -1;
        if (pid == 0) {
                int fd = open(out_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (fd < 0 || nul < 0)
                        _exit(127);
                dup2(nul, 0);
                dup2(fd, 1);
                dup2(fd, 2);
                execvp(argv[0], argv);
                _exit(127);
        }
        while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR)
                        return -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Reads a whole small file; NULL if absent or larger than max. */
static char *slurp(const char *path, size_t max, size_t *ret_len)
{
        struct stat st;
        char *buf;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return NULL;
        if (fstat(fd, &st) < 0 || (size_t)st.st_size > max) {
                close(fd);
                return NULL;
        }
        buf = xrealloc(NULL, (size_t)st.st_size + 1);
        size_t got = 0;
        while (got < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
                if (n <= 0)
                        break;
                got += (size_t)n;
        }
        close(fd);
        buf[got] = '\0';
        if (ret_len)
                *ret_len = got;
        return buf;
}

/* The last non-empty line of a tool's output: what to show when it failed. */
static void last_line(const char *path, char *buf, size_t n)
{
        size_t len;
        char *s = slurp(path, 1 << 20, &len);

        snprintf(buf, n, "(no output)");
        if (!s)
                return;
        while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' '))
                s[--len] = '\0';
        char *l = strrchr(s, '\n');
        snprintf(buf, n, "%s", l ? l + 1 : s);
        free(s);
}

static bool file_exists(const char *p)
{
        return access(p, F_OK) == 0;
}

/* Extracts one file from the raw ext4 image with debugfs (no mount needed). */
static bool debugfs_dump(const char *raw, const char *inside, const char *to, const char *out)
{
        char cmd[8300];
        snprintf(cmd, sizeof(cmd), "dump %s %s", inside, to);
        char *argv[] = { "debugfs", "-R", cmd, (char *)raw, NULL };
        unlink(to);
        return run(argv, out) == 0 && file_exists(to);
}

/* "vm=web1 disk=vda tier=web": written by "lab up" into every data disk. */
static void parse_id(const char *s, char *vm, char *tier, char *role)
{
        char tmp[512];
        snprintf(tmp, sizeof(tmp), "%s", s);
        for (char *tok = strtok(tmp, " \n"); tok; tok = strtok(NULL, " \n")) {
                char *eq = strchr(tok, '=');
                if (!eq)
                        continue;
                *eq = '\0';
                const char *v = eq + 1;
                size_t len = strlen(v);
                if (len == 0 || len > LAB_NAME_MAX)
                        continue;
                if (!strcmp(tok, "vm"))
                        snprintf(vm, LAB_NAME_MAX + 1, "%s", v);
                else if (!strcmp(tok, "tier"))
                        snprintf(tier, LAB_NAME_MAX + 1, "%s", v);
                else if (!strcmp(tok, "disk"))
                        snprintf(role, LAB_NAME_MAX + 1, "%s", v);
        }
}

/* Converts, fscks and reads one image. The image may be a qcow2 with a backing
 * chain and may be open in a running QEMU, hence -U (no lock: we only read, and
 * a file that is a cut's image is no longer written). */
static void disk_open(struct member *m, struct disk *d, int mi, int di, char *id_vm,
                      char *id_tier)
{
        char out[4096], msg[256], id_path[4096];

        snprintf(d->raw, sizeof(d->raw), "%s/m%d-d%d.raw", workdir, mi, di);
        snprintf(out, sizeof(out), "%s/m%d-d%d.out", workdir, mi, di);
        snprintf(d->fsck, sizeof(d->fsck), "unreadable");

        char *conv[] = { "qemu-img", "convert", "-U", "-O", "raw", (char *)d->image, d->raw, NULL };
        if (run(conv, out) != 0) {
                last_line(out, msg, sizeof(msg));
                member_error(m, "%s: qemu-img convert failed: %s", d->image, msg);
                return;
        }

        if (opt_live) {
                /* A running VM's image is only crash-consistent: replay the
                 * journal on our copy (never on the image) and read what is there. */
                char *replay[] = { "e2fsck", "-y", "-E", "journal_only", d->raw, NULL };
                int rr = run(replay, out);
                if (rr != 0 && rr != 1) {
                        last_line(out, msg, sizeof(msg));
                        member_error(m, "%s: journal replay on the copy failed: %s", d->image, msg);
                        return;
                }
                snprintf(d->fsck, sizeof(d->fsck), "live");
        } else {
                char *dump[] = { "dumpe2fs", "-h", d->raw, NULL };
                if (run(dump, out) != 0) {
                        last_line(out, msg, sizeof(msg));
                        member_error(m, "%s: not a readable ext4 (dumpe2fs: %s)", d->image, msg);
                        return;
                }
                char *hdr = slurp(out, 1 << 20, NULL);
                bool recovery = hdr && strstr(hdr, "needs_recovery");
                bool clean = hdr && strstr(hdr, "Filesystem state:") &&
                             strstr(strstr(hdr, "Filesystem state:"), "clean");
                free(hdr);

                char *fsck[] = { "e2fsck", "-fn", d->raw, NULL };
                int r = run(fsck, out);
                if (recovery) {
                        snprintf(d->fsck, sizeof(d->fsck), "recovery");
                        member_error(m, "%s: ext4 journal needs recovery (not quiesced)", d->image);
                } else if (r != 0 || !clean) {
                        snprintf(d->fsck, sizeof(d->fsck), "errors");
                        last_line(out, msg, sizeof(msg));
                        member_error(m, "%s: e2fsck -fn exit %d%s: %s", d->image, r,
                                     clean ? "" : ", state not clean", msg);
                } else {
                        snprintf(d->fsck, sizeof(d->fsck), "clean");
                }
        }

        snprintf(id_path, sizeof(id_path), "%s/m%d-d%d.id", workdir, mi, di);
        if (debugfs_dump(d->raw, "/lslab-id", id_path, out)) {
                char *id = slurp(id_path, 4096, NULL);
                if (id)
                        parse_id(id, id_vm, id_tier, d->role);
                free(id);
        }
        char probe[4096];
        snprintf(probe, sizeof(probe), "%s/m%d-d%d.log", workdir, mi, di);
        if (debugfs_dump(d->raw, "/workload.log", probe, out)) {
                d->has_log = true;
                if (!m->log_found) {
                        snprintf(m->log_path, sizeof(m->log_path), "%s", probe);
                        m->log_found = true;
                }
        }
        snprintf(probe, sizeof(probe), "%s/m%d-d%d.pages", workdir, mi, di);
        if (debugfs_dump(d->raw, "/pages.db", probe, out)) {
                d->has_pages = true;
                if (!m->pages_path[0])
                        snprintf(m->pages_path, sizeof(m->pages_path), "%s", probe);
        }
        unlink(d->raw);
        unlink(out);
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* Every line must be a record whose checksum holds, numbered 1, 2, 3, ... with
 * no hole; the last line must end with its newline (a torn tail means a write
 * was cut by the snapshot, which a frozen filesystem rules out). */
static void log_verify(struct member *m)
{
        size_t len;
        char *buf = slurp(m->log_path, MAX_LOG_BYTES, &len);
        size_t start = 0, cap_sent = 0, cap_recv = 0, cap_kinds = 0;
        size_t vlen = strlen(m->vm);
        uint64_t expect = 1;

        if (!buf) {
                member_error(m, "workload log unreadable or over %u MiB", MAX_LOG_BYTES >> 20);
                return;
        }
        for (size_t i = 0; i <= len; i++) {
                if (i < len && buf[i] != '\n')
                        continue;
                if (i == len) {
                        /* A live copy may catch a record half-written; a cut may not. */
                        if (start < len) {
                                m->torn_tail = true;
                                if (!opt_live)
                                        member_error(m, "workload log ends in a torn record (%zu bytes)",
                                                     len - start);
                        }
                        break;
                }
                struct lab_rec rec;
                int r = lab_rec_parse(buf + start, i - start, &rec);
                uint64_t lineno = m->records + m->bad_records + 1;
                start = i + 1;
                if (r < 0) {
                        if (m->bad_records++ == 0)
                                member_error(m, "workload log line %" PRIu64 ": %s", lineno,
                                             r == -EBADMSG ? "checksum mismatch"
                                                           : "not a record");
                        continue;
                }
                m->records++;
                m->last_timed = rec.timed;
                m->last_at_us = rec.at_us;
                m->last_err_us = rec.err_us;
                /* Only what is later beyond the record's own uncertainty counts. */
                if (opt_has_not_after && rec.timed &&
                    rec.at_us - (int64_t)rec.err_us > opt_not_after && m->late++ == 0)
                        snprintf(m->late_msg, sizeof(m->late_msg),
                                 "workload log line %" PRIu64 ": seq %" PRIu64
                                 " (%s) was made %.3f ms (+-%.3f) after the bound",
                                 lineno, rec.seq, lab_kind_name(rec.kind),
                                 (double)(rec.at_us - opt_not_after) / 1000.0,
                                 (double)rec.err_us / 1000.0);
                if (rec.seq != expect) {
                        if (m->seq_holes++ == 0)
                                member_error(m, "workload log line %" PRIu64 ": seq %" PRIu64
                                             " where %" PRIu64 " was due",
                                             lineno, rec.seq, expect);
                }
                expect = rec.seq + 1;
                m->last_seq = rec.seq;
                if (rec.seq <= (uint64_t)1 << 32) {
                        if (rec.seq > cap_kinds) {
                                size_t ncap = cap_kinds ? cap_kinds * 2 : 1024;
                                while (ncap < rec.seq)
                                        ncap *= 2;
                                m->kinds = xrealloc(m->kinds, ncap * sizeof(*m->kinds));
                                for (size_t k = cap_kinds; k < ncap; k++)
                                        m->kinds[k] = (enum lab_kind)-1;
                                cap_kinds = ncap;
                        }
                        m->kinds[rec.seq - 1] = rec.kind;
                }
                switch (rec.kind) {
                case LAB_TICK:
                        m->n_tick++;
                        break;
                case LAB_SENT:
                        if (strncmp(rec.msgid, m->vm, vlen) || rec.msgid[vlen] != ':') {
                                member_error(m, "workload log: sent '%s' is not from %s",
                                             rec.msgid, m->vm);
                                break;
                        }
                        if (m->n_sent == cap_sent) {
                                cap_sent = cap_sent ? cap_sent * 2 : 256;
                                m->sent = xrealloc(m->sent, cap_sent * sizeof(*m->sent));
                        }
                        m->sent[m->n_sent++] = strtoull(rec.msgid + vlen + 1, NULL, 10);
                        break;
                case LAB_RECV:
                        if (m->n_recv == cap_recv) {
                                cap_recv = cap_recv ? cap_recv * 2 : 256;
                                m->recv = xrealloc(m->recv, cap_recv * sizeof(*m->recv));
                        }
                        m->recv[m->n_recv++] = strdup(rec.msgid);
                        break;
                }
        }
        free(buf);
        if (opt_has_not_after && m->records && !m->last_timed && !m->late_msg[0])
                snprintf(m->late_msg, sizeof(m->late_msg),
                         "the last record carries no host time: cannot check the bound");
        if (m->n_sent)
                qsort(m->sent, m->n_sent, sizeof(*m->sent), cmp_u64);
        m->n_sent_alloc = cap_sent;
        m->n_recv_alloc = cap_recv;
}

/* Each page must be whole (its checksum holds) and must follow a tick record
 * that is in this cut's log: a page newer than the log means the two files (or
 * two disks) were not captured at one instant. */
static void pages_verify(struct member *m)
{
        size_t len;
        char *buf = slurp(m->pages_path, (size_t)LAB_PAGE * LAB_PAGES * 4, &len);

        if (!buf) {
                member_error(m, "page store unreadable");
                return;
        }
        for (uint32_t no = 0; (size_t)(no + 1) * LAB_PAGE <= len && no < LAB_PAGES; no++) {
                uint64_t seq = 0;
                int r = lab_page_check((const uint8_t *)buf + (size_t)no * LAB_PAGE, no, &seq);
                if (r == 1) {
                        m->pages_empty++;
                } else if (r < 0) {
                        if (m->pages_bad++ == 0)
                                member_error(m, "page %u: %s", no,
                                             r == -EBADMSG ? "torn or corrupt" : "wrong page number");
                } else if (seq > m->last_seq || seq == 0 || !m->kinds ||
                           m->kinds[seq - 1] != LAB_TICK) {
                        /* --live reads vda and vdb one after the other, so a page
                         * may well be newer than the log it is compared with. */
                        if (m->pages_ahead++ == 0 && !opt_live)
                                member_error(m, "page %u: written after tick %" PRIu64
                                             ", which is not in the log (last seq %" PRIu64 ")",
                                             no, seq, m->last_seq);
                } else {
                        m->pages_valid++;
                }
        }
        free(buf);
}

static struct member *member_by_vm(const char *vm, size_t len)
{
        for (int i = 0; i < n_members; i++)
                if (strlen(members[i].vm) == len && !memcmp(members[i].vm, vm, len))
                        return &members[i];
        return NULL;
}

static uint64_t total_orphans;
static char *orphan_ids[MAX_ORPHAN_IDS];
static int n_orphan_ids;

static void count_orphans(void)
{
        for (int i = 0; i < n_members; i++) {
                struct member *r = &members[i];
                for (size_t k = 0; k < r->n_recv; k++) {
                        const char *id = r->recv[k];
                        const char *colon = strchr(id, ':');
                        struct member *s = member_by_vm(id, (size_t)(colon - id));
                        if (!s || !s->log_found) {
                                r->unverified++;
                                continue;
                        }
                        uint64_t c = strtoull(colon + 1, NULL, 10);
                        if (s->n_sent && bsearch(&c, s->sent, s->n_sent, sizeof(c), cmp_u64))
                                continue;
                        r->orphans++;
                        total_orphans++;
                        if (n_orphan_ids < MAX_ORPHAN_IDS)
                                orphan_ids[n_orphan_ids++] = strdup(id);
                }
        }
}

static void json_str(const char *s)
{
        putchar('"');
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                if (c == '"' || c == '\\')
                        printf("\\%c", c);
                else if (c < 0x20)
                        printf("\\u%04x", c);
                else
                        putchar(c);
        }
        putchar('"');
}

static bool member_ok(const struct member *m)
{
        return m->n_errors == 0;
}

static bool member_in_time(const struct member *m)
{
        return !m->late_msg[0];
}

static bool all_in_time(void)
{
        for (int i = 0; i < n_members; i++)
                if (!member_in_time(&members[i]))
                        return false;
        return true;
}

static uint64_t total_late(void)
{
        uint64_t n = 0;

        for (int i = 0; i < n_members; i++)
                n += members[i].late;
        return n;
}

static void print_text(void)
{
        for (int i = 0; i < n_members; i++) {
                struct member *m = &members[i];
                printf("%s (%s):", m->vm, m->tier[0] ? m->tier : "?");
                for (int d = 0; d < m->n_disks; d++)
                        printf(" %s %s,", m->disks[d].role[0] ? m->disks[d].role : "disk",
                               m->disks[d].fsck);
                if (m->log_found)
                        printf(" log %" PRIu64 " records (last seq %" PRIu64 "), %" PRIu64
                               " sent, %" PRIu64 " recv,",
                               m->records, m->last_seq, m->n_sent, m->n_recv);
                else
                        printf(" no workload log,");
                if (m->pages_path[0])
                        printf(" pages %d ok/%d empty/%d bad/%d ahead,", m->pages_valid,
                               m->pages_empty, m->pages_bad, m->pages_ahead);
                printf(" orphans %" PRIu64, m->orphans);
                if (opt_has_not_after)
                        printf(", late %" PRIu64, m->late);
                if (m->unverified)
                        printf(" (%" PRIu64 " recv from VMs not in the cut)", m->unverified);
                printf(" -> %s\n", member_ok(m) ? "OK" : "FAILED");
                for (int e = 0; e < m->n_errors; e++)
                        printf("  %s: %s\n", m->vm, m->errors[e]);
                if (m->late_msg[0])
                        printf("  %s: %s\n", m->vm, m->late_msg);
        }
        if (n_orphan_ids) {
                printf("orphan messages (received, never sent in this cut):");
                for (int k = 0; k < n_orphan_ids; k++)
                        printf(" %s", orphan_ids[k]);
                printf("%s\n", (uint64_t)n_orphan_ids < total_orphans ? " ..." : "");
        }
        printf("orphans: %" PRIu64 "\n", total_orphans);
        if (opt_has_not_after)
                printf("late: %" PRIu64 "%s\n", total_late(),
                       all_in_time() ? "" : " (or not checkable)");
}

static void print_json(void)
{
        bool all_ok = true;

        printf("{\"members\":[");
        for (int i = 0; i < n_members; i++) {
                struct member *m = &members[i];
                all_ok = all_ok && member_ok(m);
                printf("%s{\"vm\":", i ? "," : "");
                json_str(m->vm);
                printf(",\"tier\":");
                json_str(m->tier);
                printf(",\"disks\":[");
                for (int d = 0; d < m->n_disks; d++) {
                        printf("%s{\"image\":", d ? "," : "");
                        json_str(m->disks[d].image);
                        printf(",\"disk\":");
                        json_str(m->disks[d].role);
                        printf(",\"fsck\":");
                        json_str(m->disks[d].fsck);
                        printf("}");
                }
                printf("],\"log\":{\"found\":%s,\"records\":%" PRIu64 ",\"last_seq\":%" PRIu64
                       ",\"tick\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"recv\":%" PRIu64
                       ",\"bad_records\":%" PRIu64 ",\"seq_holes\":%" PRIu64
                       ",\"torn_tail\":%s",
                       m->log_found ? "true" : "false", m->records, m->last_seq, m->n_tick,
                       m->n_sent, m->n_recv, m->bad_records, m->seq_holes,
                       m->torn_tail ? "true" : "false");
                if (m->last_timed)
                        printf(",\"last_at_us\":%" PRId64 ",\"last_err_us\":%" PRIu32,
                               m->last_at_us, m->last_err_us);
                putchar('}');
                if (m->pages_path[0])
                        printf(",\"pages\":{\"valid\":%d,\"empty\":%d,\"bad\":%d,\"ahead\":%d}",
                               m->pages_valid, m->pages_empty, m->pages_bad, m->pages_ahead);
                printf(",\"orphans\":%" PRIu64 ",\"unverified\":%" PRIu64, m->orphans, m->unverified);
                if (opt_has_not_after) {
                        printf(",\"late\":%" PRIu64 ",\"in_time\":%s,\"late_reason\":", m->late,
                               member_in_time(m) ? "true" : "false");
                        json_str(m->late_msg);
                }
                printf(",\"ok\":%s,\"errors\":[", member_ok(m) ? "true" : "false");
                for (int e = 0; e < m->n_errors; e++) {
                        if (e)
                                putchar(',');
                        json_str(m->errors[e]);
                }
                printf("]}");
        }
        printf("],\"orphans\":%" PRIu64 ",\"orphan_ids\":[", total_orphans);
        for (int k = 0; k < n_orphan_ids; k++) {
                if (k)
                        putchar(',');
                json_str(orphan_ids[k]);
        }
        printf("]");
        if (opt_has_not_after)
                printf(",\"not_after_us\":%" PRId64 ",\"late_records\":%" PRIu64
                       ",\"in_time\":%s", opt_not_after, total_late(),
                       all_in_time() ? "true" : "false");
        printf(",\"intact\":%s,\"consistent\":%s}\n", all_ok ? "true" : "false",
               all_ok && total_orphans == 0 && all_in_time() ? "true" : "false");
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
        (void)sb;
        (void)flag;
        (void)ftw;
        return remove(p);
}

static void cleanup(void)
{
        if (workdir[0])
                nftw(workdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* --record SEQ KIND MSGID [US~ERR]: prints one well-formed record, so tests can
 * write logs (with a damage of their choosing) without a CRC-32 of their own. */
static int print_record(int argc, char **argv)
{
        char line[LAB_REC_MAX + 2], *end;
        struct lab_rec rec = { 0 };
        enum lab_kind kind;
        uint64_t seq;

        if (argc != 3 && argc != 4) {
                fprintf(stderr, "lab-check: --record wants SEQ KIND MSGID [US~ERR]\n");
                return EXIT_USAGE;
        }
        errno = 0;
        seq = strtoull(argv[0], &end, 10);
        if (errno || *end || end == argv[0]) {
                fprintf(stderr, "lab-check: --record: '%s' is not a number\n", argv[0]);
                return EXIT_USAGE;
        }
        if (!strcmp(argv[1], "tick"))
                kind = LAB_TICK;
        else if (!strcmp(argv[1], "sent"))
                kind = LAB_SENT;
        else if (!strcmp(argv[1], "recv"))
                kind = LAB_RECV;
        else {
                fprintf(stderr, "lab-check: --record: kind '%s' is not tick, sent or recv\n", argv[1]);
                return EXIT_USAGE;
        }
        if (kind != LAB_TICK && !lab_msgid_valid(argv[2], strlen(argv[2]))) {
                fprintf(stderr, "lab-check: --record: '%s' is not VM:COUNTER\n", argv[2]);
                return EXIT_USAGE;
        }
        if (argc == 4 && lab_time_parse(argv[3], strlen(argv[3]), &rec) < 0) {
                fprintf(stderr, "lab-check: --record: '%s' is not US~ERR or -\n", argv[3]);
                return EXIT_USAGE;
        }
        rec.seq = seq;
        rec.kind = kind;
        snprintf(rec.msgid, sizeof(rec.msgid), "%s", argv[2]);
        if (lab_rec_format(line, sizeof(line), &rec) < 0)
                return EXIT_USAGE;
        fputs(line, stdout);
        return EXIT_OK;
}

static void usage(FILE *f)
{
        fprintf(f,
                "usage: lab-check [--json] [--keep DIR] [--live] [--not-after US] [VM=]IMAGE...\n"
                "       lab-check --logs [--json] [--not-after US] VM=LOGFILE[,PAGESFILE]...\n"
                "       lab-check --record SEQ KIND MSGID [US~ERR]   (prints one record line)\n"
                "Checks one cut: every image's ext4 with e2fsck -fn (no journal recovery may be\n"
                "pending), the workload log and page store in it, and orphan messages across\n"
                "the members. An image names its VM in /lslab-id; VM= overrides that, and\n"
                "several images of one VM (vda, vdb) are grouped. --live reads images of\n"
                "running VMs: the journal is replayed on a copy and e2fsck is skipped.\n"
                "--not-after US: no record may have been made after that host Unix time\n"
                "(microseconds; records carry the guest's estimate of host time and its error).\n"
                "Exit: 0 consistent, 1 an image or log is damaged, 2 usage or tool failure,\n"
                "      4 intact but orphan messages (not a consistent cut), 8 a record later\n"
                "      than --not-after or none that can be checked (4 and 8 add up).\n");
}

static struct member *member_get(const char *vm)
{
        struct member *m = vm ? member_by_vm(vm, strlen(vm)) : NULL;

        if (m)
                return m;
        if (n_members == MAX_MEMBERS) {
                fprintf(stderr, "lab-check: more than %d members\n", MAX_MEMBERS);
                exit(EXIT_USAGE);
        }
        m = &members[n_members++];
        if (vm)
                snprintf(m->vm, sizeof(m->vm), "%s", vm);
        return m;
}

static bool valid_vm(const char *s, size_t len)
{
        char probe[LAB_MSGID_MAX + 4];
        if (len == 0 || len > LAB_NAME_MAX)
                return false;
        snprintf(probe, sizeof(probe), "%.*s:1", (int)len, s);
        return lab_msgid_valid(probe, len + 2);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "json", no_argument, NULL, 'j' },
                { "logs", no_argument, NULL, 'L' },
                { "keep", required_argument, NULL, 'k' },
                { "quiet", no_argument, NULL, 'q' },
                { "live", no_argument, NULL, 'l' },
                { "record", no_argument, NULL, 'R' },
                { "not-after", required_argument, NULL, 'N' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        int c;

        while ((c = getopt_long(argc, argv, "hjq", opts, NULL)) != -1) {
                switch (c) {
                case 'j': opt_json = true; break;
                case 'L': opt_logs_only = true; break;
                case 'k': opt_keep = optarg; break;
                case 'q': opt_quiet = true; break;
                case 'l': opt_live = true; break;
                case 'R': return print_record(argc - optind, argv + optind);
                case 'N': {
                        char *end;
                        errno = 0;
                        opt_not_after = strtoll(optarg, &end, 10);
                        if (errno || *end || end == optarg || opt_not_after <= 0) {
                                fprintf(stderr, "lab-check: --not-after: '%s' is not Unix microseconds\n",
                                        optarg);
                                return EXIT_USAGE;
                        }
                        opt_has_not_after = true;
                        break;
                }
                case 'h': usage(stdout); return EXIT_OK;
                default: usage(stderr); return EXIT_USAGE;
                }
        }
        if (optind == argc) {
                usage(stderr);
                return EXIT_USAGE;
        }

        if (opt_logs_only) {
                for (int i = optind; i < argc; i++) {
                        const char *eq = strchr(argv[i], '=');
                        if (!eq || !valid_vm(argv[i], (size_t)(eq - argv[i]))) {
                                fprintf(stderr, "lab-check: --logs wants VM=LOGFILE[,PAGESFILE], got '%s'\n",
                                        argv[i]);
                                return EXIT_USAGE;
                        }
                        char vm[LAB_NAME_MAX + 1];
                        snprintf(vm, sizeof(vm), "%.*s", (int)(eq - argv[i]), argv[i]);
                        struct member *m = member_get(vm);
                        const char *comma = strchr(eq + 1, ',');
                        snprintf(m->log_path, sizeof(m->log_path), "%.*s",
                                 (int)(comma ? comma - eq - 1 : (long)strlen(eq + 1)), eq + 1);
                        if (comma)
                                snprintf(m->pages_path, sizeof(m->pages_path), "%s", comma + 1);
                        m->log_found = file_exists(m->log_path);
                        if (!m->log_found)
                                member_error(m, "log file '%s' not found", m->log_path);
                }
        } else {
                const char *tmp = getenv("TMPDIR");
                snprintf(workdir, sizeof(workdir), "%s/lab-check.XXXXXX", tmp ? tmp : "/var/tmp");
                if (!mkdtemp(workdir)) {
                        fprintf(stderr, "lab-check: mkdtemp '%s': %s\n", workdir, strerror(errno));
                        return EXIT_USAGE;
                }
                atexit(cleanup);
                for (int i = optind; i < argc; i++) {
                        const char *arg = argv[i], *eq = strchr(arg, '=');
                        char vm[LAB_NAME_MAX + 1] = "", id_vm[LAB_NAME_MAX + 1] = "",
                             id_tier[LAB_NAME_MAX + 1] = "";
                        struct disk d = { .image = eq ? eq + 1 : arg };
                        struct member scratch = { 0 };

                        if (eq && !valid_vm(arg, (size_t)(eq - arg))) {
                                fprintf(stderr, "lab-check: '%.*s' is not a VM name\n",
                                        (int)(eq - arg), arg);
                                return EXIT_USAGE;
                        }
                        if (!file_exists(d.image)) {
                                fprintf(stderr, "lab-check: image '%s' not found\n", d.image);
                                return EXIT_USAGE;
                        }
                        if (eq)
                                snprintf(vm, sizeof(vm), "%.*s", (int)(eq - arg), arg);
                        /* Open into a scratch member first: the VM is known only
                         * once the image has been read. */
                        disk_open(&scratch, &d, i, 0, id_vm, id_tier);
                        const char *name = vm[0] ? vm : id_vm[0] ? id_vm : NULL;
                        if (!name) {
                                fprintf(stderr, "lab-check: image '%s' has no /lslab-id; give it as VM=IMAGE\n",
                                        d.image);
                                if (scratch.n_errors)
                                        fprintf(stderr, "lab-check: %s\n", scratch.errors[0]);
                                return EXIT_USAGE;
                        }
                        struct member *m = member_get(name);
                        if (m->n_disks == MAX_DISKS) {
                                fprintf(stderr, "lab-check: %s: more than %d disks\n", name,
                                        MAX_DISKS);
                                return EXIT_USAGE;
                        }
                        if (!m->tier[0] && id_tier[0])
                                snprintf(m->tier, sizeof(m->tier), "%s", id_tier);
                        if (!d.role[0])
                                snprintf(d.role, sizeof(d.role), "%s",
                                         m->n_disks == 0 ? "vda" : "vdb");
                        for (int e = 0; e < scratch.n_errors; e++) {
                                member_error(m, "%s", scratch.errors[e]);
                                free(scratch.errors[e]);
                        }
                        if (scratch.log_found && !m->log_found) {
                                snprintf(m->log_path, sizeof(m->log_path), "%s", scratch.log_path);
                                m->log_found = true;
                        }
                        if (scratch.pages_path[0] && !m->pages_path[0])
                                snprintf(m->pages_path, sizeof(m->pages_path), "%s",
                                         scratch.pages_path);
                        m->disks[m->n_disks++] = d;
                }
        }

        for (int i = 0; i < n_members; i++) {
                struct member *m = &members[i];
                if (!m->log_found) {
                        if (!opt_logs_only)
                                member_error(m, "no /workload.log on any of its disks");
                        continue;
                }
                log_verify(m);
                if (m->pages_path[0])
                        pages_verify(m);
                if (!strcmp(m->tier, "app") && !m->pages_path[0] && !opt_logs_only)
                        member_error(m, "app VM without a page store (/pages.db)");
                if (opt_keep) {
                        char dst[4200];
                        mkdir(opt_keep, 0755);
                        int n = snprintf(dst, sizeof(dst), "%s/%s.log", opt_keep, m->vm);
                        char *cp[] = { "cp", m->log_path, dst, NULL };
                        if (n < 0 || (size_t)n >= sizeof(dst) || run(cp, "/dev/null") != 0)
                                fprintf(stderr, "lab-check: %s: could not keep the log in '%s'\n",
                                        m->vm, opt_keep);
                }
        }
        count_orphans();

        bool all_ok = true;
        for (int i = 0; i < n_members; i++)
                all_ok = all_ok && member_ok(&members[i]);
        if (opt_json)
                print_json();
        else if (!opt_quiet)
                print_text();
        if (!all_ok)
                return EXIT_BROKEN;
        return (total_orphans ? EXIT_ORPHANS : 0) | (all_in_time() ? 0 : EXIT_LATE);
}
