/* bench/report.c: what lockstepd's report of one fleet-sized cut costs: a
 * real SQLite catalog holding one committed cut of N agents x M VMs (one disk
 * each, its audit rows), read back and rendered as lockstepd does after a cut.
 *
 *   lockstep-bench-report [--agents N] [--vms M] [--rounds R] [--dir DIR] [--keep-heap]
 *
 * Prints one JSON object per way of reading it (rows only, text, JSON, both):
 * the median over R rounds of the thread's CPU time and its page faults. The
 * heap is given back (malloc_trim) before each round, as lockstepd gives it
 * back after each operation, so each round pays for fresh pages as a cut does;
 * --keep-heap keeps it (and every allocation on the heap), to tell that part
 * of the cost from the rest. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "report.h"

static double thread_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static long minflt(void)
{
        struct rusage ru;

        getrusage(RUSAGE_THREAD, &ru);
        return ru.ru_minflt;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

/* One committed cut as engine_snapshot leaves it: begun, every member and
 * image put, 3 commands and their replies per agent audited, decided, done. */
static int fill(struct catalog *cat, const char *txid, unsigned agents, unsigned vms, lserr *err)
{
        static const char *steps[] = {"FREEZE", "SNAPSHOT", "DECIDE"};
        struct cat_txn t = {.kind = CAT_KIND_SNAPSHOT, .group = "big", .name = "bench", .mode = "quiesce",
                            .members = agents * vms, .lease_ms = 30000};
        long long t0 = 1700000000000000LL;
        int r;

        snprintf(t.txid, sizeof(t.txid), "%s", txid);
        r = cat_txn_begin(cat, &t, err);
        if (r >= 0)
                r = cat_batch_begin(cat, err);
        for (unsigned a = 0; r >= 0 && a < agents; a++) {
                for (unsigned v = 0; r >= 0 && v < vms; v++) {
                        struct cat_member m = {.code = 0, .freeze_us = 45000, .snapshot_us = 17000,
                                               .thaw_us = 6000, .frozen_for_us = 70000,
                                               .frozen_at_us = t0 + 1000 * a, .thawed_at_us = t0 + 1000 * a + 70000};
                        struct cat_image im = {.disk = "vda"};
                        char before[128], after[160];

                        snprintf(m.agent, sizeof(m.agent), "host-%04u", a);
                        snprintf(m.vm, sizeof(m.vm), "vm-%04u-%02u", a, v);
                        r = cat_put_member(cat, txid, &m, err);
                        snprintf(im.agent, sizeof(im.agent), "%s", m.agent);
                        snprintf(im.vm, sizeof(im.vm), "%s", m.vm);
                        snprintf(before, sizeof(before), "/var/lib/libvirt/images/%s-vda.qcow2", m.vm);
                        snprintf(after, sizeof(after), "/var/lib/libvirt/images/%s-vda.%s.qcow2", m.vm, txid);
                        im.before = before;
                        im.after = after;
                        if (r >= 0)
                                r = cat_put_image(cat, txid, &im, err);
                }
                for (int s = 0; r >= 0 && s < 6; s++) {
                        struct cat_audit au = {.at_us = t0 + s * 100000 + a, .dir = s & 1 ? CAT_RECEIVED : CAT_SENT};

                        snprintf(au.txid, sizeof(au.txid), "%s", txid);
                        snprintf(au.agent, sizeof(au.agent), "host-%04u", a);
                        snprintf(au.step, sizeof(au.step), "%s", steps[s / 2]);
                        snprintf(au.hash_hex, sizeof(au.hash_hex), "%064x", a);
                        r = cat_audit_add(cat, &au, err);
                }
        }
        if (r >= 0)
                r = cat_batch_end(cat, err);
        if (r >= 0)
                r = cat_txn_decide(cat, txid, 1, "", err);
        if (r >= 0)
                r = cat_txn_finish(cat, txid, err);
        return r;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {{"agents", required_argument, NULL, 'a'},
                                             {"vms", required_argument, NULL, 'v'},
                                             {"rounds", required_argument, NULL, 'r'},
                                             {"dir", required_argument, NULL, 'd'},
                                             {"keep-heap", no_argument, NULL, 'k'},
                                             {NULL, 0, NULL, 0}};
        static const struct {
                const char *name;
                int read_only;
                unsigned want;
        } ways[] = {{"rows", 1, 0},
                    {"text", 0, REPORT_TEXT},
                    {"json", 0, REPORT_JSON},
                    {"both", 0, REPORT_TEXT | REPORT_JSON}};
        unsigned agents = 1000, vms = 10, rounds = 5;
        char dir[256] = "", path[300];
        const char *txid = "20261202T000000Z-bench0000000001";
        struct catalog *cat = NULL;
        lserr err = {0};
        int c, rc = 1, keep = 0;

        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                if (c == 'a')
                        agents = (unsigned)strtoul(optarg, NULL, 10);
                else if (c == 'v')
                        vms = (unsigned)strtoul(optarg, NULL, 10);
                else if (c == 'r')
                        rounds = (unsigned)strtoul(optarg, NULL, 10);
                else if (c == 'k')
                        keep = 1;
                else if (c == 'd')
                        snprintf(dir, sizeof(dir), "%s", optarg);
                else {
                        fprintf(stderr, "usage: %s [--agents N] [--vms M] [--rounds R] [--dir DIR] [--keep-heap]\n", argv[0]);
                        return 2;
                }
        }
        if (!agents || !vms || !rounds || rounds > 1000) {
                fprintf(stderr, "report bench: --agents, --vms and --rounds (at most 1000) must be positive\n");
                return 2;
        }
        if (keep) {
                mallopt(M_MMAP_THRESHOLD, 1 << 30);
                mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
        if (!dir[0]) {
                snprintf(dir, sizeof(dir), "/tmp/lockstep-bench-report.XXXXXX");
                if (!mkdtemp(dir)) {
                        fprintf(stderr, "report bench: mkdtemp: %s\n", strerror(errno));
                        return 1;
                }
        }
        snprintf(path, sizeof(path), "%s/catalog.db", dir);
        if (cat_open(path, &cat, &err) < 0 || fill(cat, txid, agents, vms, &err) < 0) {
                fprintf(stderr, "report bench: %s\n", err.msg);
                goto out;
        }
        for (size_t w = 0; w < sizeof(ways) / sizeof(ways[0]); w++) {
                double ms[1000];
                long flt[1000];

                for (unsigned k = 0; k < rounds; k++) {
                        struct cat_cut rows = {0};
                        char *text = NULL, *json = NULL;
                        int r;

                        if (!keep)
                                malloc_trim(0);
                        double t0 = thread_ms();
                        long f0 = minflt();
                        r = ways[w].read_only ? cat_cut_read(cat, txid, 65536, &rows, &err)
                                              : report_cut_render(cat, txid, ways[w].want, &text, &json, &rows, &err);
                        ms[k] = thread_ms() - t0;
                        flt[k] = minflt() - f0;
                        cat_cut_free(&rows);
                        free(text);
                        free(json);
                        if (r < 0) {
                                fprintf(stderr, "report bench: %s: %s\n", ways[w].name, err.msg);
                                goto out;
                        }
                }
                qsort(ms, rounds, sizeof(ms[0]), cmp_double);
                long f = flt[rounds / 2];
                printf("{\"way\":\"%s\",\"agents\":%u,\"vms\":%u,\"rounds\":%u,\"median_ms\":%.1f,\"min_ms\":%.1f,"
                       "\"minflt\":%ld}\n",
                       ways[w].name, agents, vms, rounds, ms[rounds / 2], ms[0], f);
        }
        rc = 0;
out:
        cat_close(cat);
        unlink(path);
        snprintf(path, sizeof(path), "%s/catalog.db-wal", dir);
        unlink(path);
        snprintf(path, sizeof(path), "%s/catalog.db-shm", dir);
        unlink(path);
        rmdir(dir);
        return rc;
}
