/* test_catalog: the coordinator's catalog: schema versioning, the decision log's
 * transitions, durability across connections and a dying process, and
 * concurrent use. Built twice: on SQLite (test_catalog) and, with
 * CAT_TEST_ETCD, on an etcd of its own (test_catalog_etcd), where tests of the
 * SQLite file itself are skipped and tests of the etcd layout (the fence,
 * batches over etcd's limits, a decision race, trims that compact) are added. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "catalog.h"
#include "catalog_priv.h"
#include "testutil.h"
#ifdef CAT_TEST_ETCD
#include <time.h>

#include "cat_etcd.h"
#include "cat_etcd_priv.h"
#include "etcd.h"
#include "tu_etcd.h"
#endif

struct fixture {
        char *dir;
        char *path; /* the SQLite file, or the etcd key prefix */
        struct catalog *c;
};

#ifdef CAT_TEST_ETCD
/* One etcd for the whole run; each test has a key prefix of its own. */
static struct tu_etcd D;
static struct etcd *raw_etcd;
static unsigned n_prefix;

/* The test's own connection to its etcd, for what the catalog does not show. */
static struct etcd *raw(void)
{
        const char *eps[] = {D.url};
        struct etcd_opts o = {.endpoints = eps, .n_endpoints = 1, .timeout_ms = 5000};
        lserr err = {0};

        if (!raw_etcd && etcd_open(&o, &raw_etcd, &err) < 0)
                fail_msg("%s", err.msg);
        return raw_etcd;
}

static int open_catalog(const struct fixture *f, struct catalog **ret, lserr *err)
{
        const char *eps[] = {D.url};
        struct etcd_opts eo = {.endpoints = eps, .n_endpoints = 1, .timeout_ms = 5000};
        struct cat_etcd_opts o = {.etcd = &eo, .prefix = f->path};

        return cat_open_etcd(&o, ret, err);
}

/* How many keys there are under the prefix + sub. */
static long long count_keys(const struct fixture *f, const char *sub)
{
        struct etcd_kv *kvs = NULL;
        size_t n = 0;
        char key[600];
        lserr err = {0};

        snprintf(key, sizeof(key), "%s%s", f->path, sub);
        if (etcd_range(raw(), key, 1, 0, &kvs, &n, NULL, NULL, &err) < 0)
                fail_msg("%s", err.msg);
        etcd_kvs_free(kvs, n);
        return (long long)n;
}

/* Whether the value of prefix + key holds needle. */
static long long value_has(const struct fixture *f, const char *key, const char *needle)
{
        struct etcd_kv *kvs = NULL;
        size_t n = 0;
        char k[600];
        lserr err = {0};
        int has;

        snprintf(k, sizeof(k), "%s%s", f->path, key);
        if (etcd_range(raw(), k, 0, 0, &kvs, &n, NULL, NULL, &err) < 0)
                fail_msg("%s", err.msg);
        has = n == 1 && strstr((const char *)kvs[0].value, needle) != NULL;
        etcd_kvs_free(kvs, n);
        return has;
}

static void raw_put(const struct fixture *f, const char *key, const char *value)
{
        char k[600];
        lserr err = {0};

        snprintf(k, sizeof(k), "%s%s", f->path, key);
        if (etcd_put(raw(), k, value, strlen(value), 0, &err) < 0)
                fail_msg("%s", err.msg);
}

/* Rows of the SQLite file, keys under the etcd prefix. */
#define ROWS(f, sql, keys) count_keys(f, keys)
#define HAS(f, sql, key, needle) value_has(f, key, needle)
#define SQLITE_ONLY(why)                                                                                             \
        do {                                                                                                        \
                print_message("skipped on etcd: %s\n", why);                                                        \
                skip();                                                                                             \
        } while (0)
#else
static int open_catalog(const struct fixture *f, struct catalog **ret, lserr *err)
{
        return cat_open(f->path, ret, err);
}

#define ROWS(f, sql, keys) raw_int((f)->path, sql)
#define HAS(f, sql, key, needle) raw_int((f)->path, sql)
#define SQLITE_ONLY(why) (void)0
#endif

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        lserr err = {0};

        assert_non_null(f);
        f->dir = tu_mkdtemp();
#ifdef CAT_TEST_ETCD
        assert_true(asprintf(&f->path, "/test-catalog/%d-%u/", (int)getpid(), ++n_prefix) > 0);
#else
        assert_true(asprintf(&f->path, "%s/catalog.db", f->dir) > 0);
#endif
        if (open_catalog(f, &f->c, &err) < 0)
                fail_msg("%s", err.msg);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        cat_close(f->c);
#ifdef CAT_TEST_ETCD
        /* The test's keys go: the etcd serves every test of the run. */
        etcd_delete(raw(), f->path, 1, NULL, NULL);
#endif
        free(f->path);
        tu_rmtree(f->dir);
        free(f);
        return 0;
}

/* Runs one statement on its own connection and returns its first column. */
static long long raw_int(const char *path, const char *sql)
{
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        long long v;

        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static void raw_exec(const char *path, const char *sql)
{
        sqlite3 *db = NULL;

        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
}

/* A history trim's member bound that bounds nothing. */
#define ANY_MEMBERS 1000000000LL

static struct cat_txn txn(const char *txid, enum cat_kind kind, const char *group, long long started_us)
{
        struct cat_txn t = {.kind = kind, .started_us = started_us, .lease_ms = 30000};

        snprintf(t.txid, sizeof(t.txid), "%s", txid);
        snprintf(t.group, sizeof(t.group), "%s", group);
        snprintf(t.name, sizeof(t.name), "snap-%s", txid);
        snprintf(t.mode, sizeof(t.mode), "quiesce");
        return t;
}

/* Every field, the message by its text (struct cat_member holds it by pointer). */
static void assert_member_equal(const struct cat_member *got, const struct cat_member *want)
{
        struct cat_member a = *got, b = *want;

        assert_string_equal(got->message, want->message ? want->message : "");
        a.message = b.message = NULL;
        assert_memory_equal(&a, &b, sizeof(a));
}

/* Same names and paths (struct cat_image holds its paths by pointer). */
static void assert_image_equal(const struct cat_image *got, const struct cat_image *want)
{
        assert_string_equal(got->agent, want->agent);
        assert_string_equal(got->vm, want->vm);
        assert_string_equal(got->disk, want->disk);
        assert_string_equal(got->before, want->before ? want->before : "");
        assert_string_equal(got->after, want->after ? want->after : "");
}


static void test_open_reopen_keeps_data(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("t1", CAT_KIND_SNAPSHOT, "web", 1000), got;
        struct stat sb;
        lserr err = {0};

        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "t1", 1, NULL, &err), 0);
        f->c = cat_close(f->c);
        assert_null(f->c);
#ifndef CAT_TEST_ETCD
        /* Nobody but the owner reads what was sent where. */
        assert_int_equal(stat(f->path, &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0600);
#else
        (void)sb;
#endif
        assert_int_equal(open_catalog(f, &f->c, &err), 0);
        assert_int_equal(cat_txn_get(f->c, "t1", &got, &err), 0);
        assert_string_equal(got.txid, "t1");
        assert_int_equal(got.kind, CAT_KIND_SNAPSHOT);
        assert_string_equal(got.group, "web");
        assert_string_equal(got.name, "snap-t1");
        assert_string_equal(got.mode, "quiesce");
        assert_int_equal(got.state, CAT_TXN_COMMIT);
        assert_int_equal(got.committed, 1);
        assert_int_equal(got.started_us, 1000);
        assert_true(got.decided_us > 0);
        assert_int_equal(got.finished_us, 0);
        assert_int_equal(got.lease_ms, 30000);
        assert_string_equal(err.msg, "");
        /* cat_close accepts NULL like every destructor. */
        assert_null(cat_close(NULL));
}

static void test_schema_version_and_pragmas(void **state)
{
        struct fixture *f = *state;

        SQLITE_ONLY("the SQLite file's schema version and pragmas");

        assert_int_equal(raw_int(f->path, "SELECT max(version) FROM schema_version"), CAT_SCHEMA_VERSION);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM schema_version"), CAT_SCHEMA_VERSION);
        /* The journal mode is a property of the file, seen by any connection. */
        assert_int_equal(raw_int(f->path, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
        /* A second open neither re-migrates nor fails. */
        f->c = cat_close(f->c);
        assert_int_equal(cat_open(f->path, &f->c, NULL), 0);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM schema_version"), CAT_SCHEMA_VERSION);
}

static void test_newer_or_foreign_file_refused(void **state)
{
        struct fixture *f = *state;
        struct catalog *c = (struct catalog *)0x1;
        char want[64], *junk, *other;
        lserr err = {0};

        SQLITE_ONLY("a newer or foreign SQLite file (test_etcd_newer_layout_refused is etcd's)");
        f->c = cat_close(f->c);
        raw_exec(f->path, "INSERT INTO schema_version (version, applied_us) VALUES (99, 0)");
        assert_int_equal(cat_open(f->path, &c, &err), -EINVAL);
        assert_ptr_equal(c, (struct catalog *)0x1);
        assert_non_null(strstr(err.msg, f->path));
        assert_non_null(strstr(err.msg, "99"));
        snprintf(want, sizeof(want), "this program's %d", CAT_SCHEMA_VERSION);
        assert_non_null(strstr(err.msg, want));
        /* Refused without a change: the newer program still finds its version. */
        assert_int_equal(raw_int(f->path, "SELECT max(version) FROM schema_version"), 99);

        lserr_clear(&err);
        junk = tu_write(f->dir, "junk.db", "this is not an SQLite file, not even close to one....................\n",
                        0600);
        assert_int_equal(cat_open(junk, &c, &err), -EIO);
        assert_ptr_equal(c, (struct catalog *)0x1);
        assert_non_null(strstr(err.msg, junk));

        lserr_clear(&err);
        assert_true(asprintf(&other, "%s/other.db", f->dir) > 0);
        raw_exec(other, "CREATE TABLE t (x)");
        assert_int_equal(cat_open(other, &c, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "not a lockstep catalog"));
        assert_int_equal(raw_int(other, "SELECT count(*) FROM sqlite_schema"), 1);

        lserr_clear(&err);
        assert_int_equal(cat_open("/nonexistent-dir/x/catalog.db", &c, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "/nonexistent-dir/x/catalog.db"));
        assert_ptr_equal(c, (struct catalog *)0x1);
        free(junk);
        free(other);
}

static void test_lifecycle_and_refused_transitions(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("t1", CAT_KIND_SNAPSHOT, "web", 0), got, sentinel;
        lserr err = {0};
        long long decided;

        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(cat_txn_get(f->c, "t1", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_STARTED);
        assert_int_equal(got.committed, 0);
        assert_true(got.started_us > 0); /* 0 asked for "now" */
        assert_int_equal(got.decided_us, 0);

        /* Logged twice is a bug upstream, not a retry. */
        assert_int_equal(cat_txn_begin(f->c, &t, &err), -EEXIST);
        assert_non_null(strstr(err.msg, "\"t1\""));
        lserr_clear(&err);

        /* No finish before a decision. */
        assert_int_equal(cat_txn_finish(f->c, "t1", &err), -EBUSY);
        assert_non_null(strstr(err.msg, "\"t1\""));
        assert_non_null(strstr(err.msg, f->path));
        lserr_clear(&err);

        assert_int_equal(cat_txn_decide(f->c, "t1", 1, "ignored for a commit", &err), 0);
        assert_int_equal(cat_txn_get(f->c, "t1", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_COMMIT);
        assert_int_equal(got.committed, 1);
        assert_string_equal(got.reason, "");
        assert_true(got.decided_us >= got.started_us);
        decided = got.decided_us;

        /* The same decision again is a retry; the other one is refused. */
        assert_int_equal(cat_txn_decide(f->c, "t1", 1, NULL, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "t1", 0, "late", &err), -EBUSY);
        assert_non_null(strstr(err.msg, "\"t1\""));
        lserr_clear(&err);
        assert_int_equal(cat_txn_get(f->c, "t1", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_COMMIT);
        assert_int_equal(got.decided_us, decided);

        assert_int_equal(cat_txn_finish(f->c, "t1", &err), 0);
        assert_int_equal(cat_txn_get(f->c, "t1", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_DONE);
        assert_int_equal(got.committed, 1);
        assert_true(got.finished_us >= got.decided_us);
        assert_int_equal(cat_txn_finish(f->c, "t1", &err), 0);
        /* Once done the decision still holds. */
        assert_int_equal(cat_txn_decide(f->c, "t1", 1, NULL, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "t1", 0, NULL, &err), -EBUSY);
        lserr_clear(&err);

        /* The abort path keeps the first reason. */
        t = txn("t2", CAT_KIND_DELETE, "web", 0);
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "t2", 0, "web1@host-a: freeze: guest agent not connected", &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "t2", 0, "another reason", &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "t2", 1, NULL, &err), -EBUSY);
        lserr_clear(&err);
        assert_int_equal(cat_txn_finish(f->c, "t2", &err), 0);
        assert_int_equal(cat_txn_get(f->c, "t2", &got, &err), 0);
        assert_int_equal(got.kind, CAT_KIND_DELETE);
        assert_int_equal(got.state, CAT_TXN_DONE);
        assert_int_equal(got.committed, 0);
        assert_string_equal(got.reason, "web1@host-a: freeze: guest agent not connected");

        /* Unknown transactions, with the output untouched. */
        memset(&sentinel, 0x5a, sizeof(sentinel));
        got = sentinel;
        assert_int_equal(cat_txn_get(f->c, "nope", &got, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "\"nope\""));
        assert_memory_equal(&got, &sentinel, sizeof(got));
        lserr_clear(&err);
        assert_int_equal(cat_txn_decide(f->c, "nope", 1, NULL, &err), -ENOENT);
        lserr_clear(&err);
        assert_int_equal(cat_txn_finish(f->c, "nope", &err), -ENOENT);
        lserr_clear(&err);
}

static void test_bad_input_refused(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("t1", CAT_KIND_SNAPSHOT, "web", 0);
        char long_id[100];
        struct cat_txn *v = (struct cat_txn *)0x1;
        size_t n = 7;
        lserr err = {0};

        memset(long_id, 'x', sizeof(long_id) - 1);
        long_id[sizeof(long_id) - 1] = '\0';
        /* Identifiers are refused, never cut: a cut txid names another transaction. */
        assert_int_equal(cat_txn_decide(f->c, long_id, 1, NULL, &err), -EINVAL);
        assert_int_equal(cat_txn_get(f->c, long_id, &t, &err), -EINVAL);
        assert_int_equal(cat_txn_finish(f->c, "", &err), -EINVAL);
        assert_int_equal(cat_cuts(f->c, long_id, &v, &n, &err), -EINVAL);
        assert_ptr_equal(v, (struct cat_txn *)0x1);
        assert_int_equal(n, 7);
        memset(t.txid, 'x', sizeof(t.txid)); /* no terminator */
        assert_int_equal(cat_txn_begin(f->c, &t, &err), -EINVAL);
        t = txn("t1", CAT_KIND_SNAPSHOT, "web", 0);
        memset(t.mode, 'm', sizeof(t.mode));
        assert_int_equal(cat_txn_begin(f->c, &t, &err), -EINVAL);
        t = txn("t1", (enum cat_kind)7, "web", 0);
        assert_int_equal(cat_txn_begin(f->c, &t, &err), -EINVAL);
        t = txn("", CAT_KIND_SNAPSHOT, "web", 0);
        assert_int_equal(cat_txn_begin(f->c, &t, &err), -EINVAL);
        /* The first failure's message is the one kept. */
        assert_non_null(strstr(err.msg, "decide"));
        assert_int_equal(err.code, -EINVAL);
        assert_int_equal(cat_txn_unresolved(f->c, &v, &n, &err), 0);
        assert_int_equal(n, 0);
        assert_null(v);
}

static void test_long_reason_cut_on_character(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("t1", CAT_KIND_SNAPSHOT, "web", 0), got;
        char reason[2000];
        lserr err = {0};
        size_t i;

        /* "é" is two bytes: the cut must not fall inside one. */
        for (i = 0; i + 2 < sizeof(reason); i += 2)
                memcpy(reason + i, "\xc3\xa9", 2);
        reason[i] = '\0';
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "t1", 0, reason, &err), 0);
        assert_int_equal(cat_txn_get(f->c, "t1", &got, &err), 0);
        assert_int_equal(strlen(got.reason), sizeof(got.reason) - 2);
        assert_int_equal(memcmp(got.reason, reason, strlen(got.reason)), 0);
}

static void test_unknown_stored_value_refused(void **state)
{
        struct fixture *f = *state;
        struct cat_txn got, *v = (struct cat_txn *)0x1;
        size_t n = 7;
        lserr err = {0};

        /* A value only a newer program would write (checks bypassed to get it in). */
#ifdef CAT_TEST_ETCD
        raw_put(f, "txn/t9", "{\"txid\":\"t9\",\"kind\":\"migrate\",\"group\":\"web\",\"name\":\"n\","
                             "\"mode\":\"pause\",\"state\":\"started\",\"committed\":0,\"reason\":\"\","
                             "\"started_us\":1,\"decided_us\":0,\"finished_us\":0,\"lease_ms\":1,\"cut_status\":\"\","
                             "\"cut_status_reason\":\"\",\"branch_status\":\"\",\"branch_reason\":\"\"}");
        raw_put(f, "open/t9", "t9");
#else
        raw_exec(f->path, "PRAGMA ignore_check_constraints = ON;"
                          "INSERT INTO txns (txid, kind, group_name, name, mode, state, started_us, lease_ms)"
                          " VALUES ('t9', 'migrate', 'web', 'n', 'pause', 'started', 1, 1)");
#endif
        assert_int_equal(cat_txn_get(f->c, "t9", &got, &err), -EIO);
        assert_non_null(strstr(err.msg, "\"t9\""));
        assert_non_null(strstr(err.msg, "does not know"));
        lserr_clear(&err);
        assert_int_equal(cat_txn_unresolved(f->c, &v, &n, &err), -EIO);
        assert_ptr_equal(v, (struct cat_txn *)0x1);
        assert_int_equal(n, 7);
}

static void test_unresolved_oldest_first(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t, *v = NULL;
        const char *ids[] = {"c", "a", "d", "b", "e"};
        const long long at[] = {300, 100, 400, 200, 200};
        size_t n = 0;
        lserr err = {0};

        for (size_t i = 0; i < 5; i++) {
                t = txn(ids[i], CAT_KIND_SNAPSHOT, "web", at[i]);
                assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        }
        assert_int_equal(cat_txn_decide(f->c, "c", 1, NULL, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "d", 0, "x", &err), 0);
        assert_int_equal(cat_txn_finish(f->c, "d", &err), 0);
        assert_int_equal(cat_txn_unresolved(f->c, &v, &n, &err), 0);
        assert_int_equal(n, 4);
        assert_string_equal(v[0].txid, "a");
        /* Same start time: the one logged first comes first. */
        assert_string_equal(v[1].txid, "b");
        assert_string_equal(v[2].txid, "e");
        assert_string_equal(v[3].txid, "c");
        assert_int_equal(v[3].state, CAT_TXN_COMMIT);
        assert_int_equal(v[0].state, CAT_TXN_STARTED);
        free(v);
}

static void test_members_and_images_upsert(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("t1", CAT_KIND_SNAPSHOT, "web", 0);
        struct cat_member m = {
                .agent = "host-a",
                .vm = "web1",
                .tier = 2,
                .tier_name = "app",
                .code = 5,
                .message = "guest agent not connected",
                .freeze_us = 1,
                .snapshot_us = 2,
                .thaw_us = 3,
                .frozen_for_us = UINT64_MAX - 1,
                .frozen_at_us = -4,
                .thawed_at_us = 5000000000LL,
        };
        struct cat_member m2 = {.agent = "host-a", .vm = "db1", .tier = 1, .tier_name = "db", .code = CAT_PENDING};
        struct cat_member *mv = NULL;
        struct cat_image im = {.agent = "host-a", .vm = "web1", .disk = "vda", .before = "/v/web1.qcow2",
                               .after = "/v/web1.snap-t1.qcow2"};
        struct cat_image im2 = {.agent = "host-a", .vm = "web1", .disk = "vdb", .before = "/v/web1-b.qcow2",
                                .after = "/v/web1-b.snap-t1.qcow2"};
        struct cat_image *iv = NULL;
        size_t n = 0;
        lserr err = {0};

        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(cat_put_member(f->c, "t1", &m, &err), 0);
        assert_int_equal(cat_put_member(f->c, "t1", &m2, &err), 0);
        assert_int_equal(cat_members(f->c, "t1", &mv, &n, &err), 0);
        assert_int_equal(n, 2);
        /* Freeze order: tier first. */
        assert_string_equal(mv[0].vm, "db1");
        assert_int_equal(mv[0].code, CAT_PENDING);
        assert_member_equal(&mv[1], &m);
        free(mv);

        /* Same key: replaced, not added. Every field compares, so no stale tail. */
        m.code = 0;
        m.message = "ok";
        m.thaw_us = 77;
        assert_int_equal(cat_put_member(f->c, "t1", &m, &err), 0);
        assert_int_equal(cat_members(f->c, "t1", &mv, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_member_equal(&mv[1], &m);
        free(mv);

        assert_int_equal(cat_put_image(f->c, "t1", &im2, &err), 0);
        assert_int_equal(cat_put_image(f->c, "t1", &im, &err), 0);
        im.after = "/v/web1.snap-t1-retry.qcow2";
        assert_int_equal(cat_put_image(f->c, "t1", &im, &err), 0);
        assert_int_equal(cat_images(f->c, "t1", &iv, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_image_equal(&iv[0], &im);
        assert_image_equal(&iv[1], &im2);
        free(iv);

        /* Contents of a transaction never logged are refused. */
        assert_int_equal(cat_put_member(f->c, "nope", &m, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "\"nope\""));
        assert_non_null(strstr(err.msg, "web1@host-a"));
        lserr_clear(&err);
        assert_int_equal(cat_put_image(f->c, "nope", &im, &err), -ENOENT);
        lserr_clear(&err);
        memset(m.vm, 'v', sizeof(m.vm));
        assert_int_equal(cat_put_member(f->c, "t1", &m, &err), -EINVAL);
        lserr_clear(&err);
        assert_int_equal(cat_members(f->c, "nope", &mv, &n, &err), 0);
        assert_int_equal(n, 0);
        assert_null(mv);
}

static void test_member_message_truncated(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("t1", CAT_KIND_SNAPSHOT, "web", 0);
        struct cat_member m = {.agent = "host-a", .vm = "web1"}, *mv = NULL;
        size_t n = 0;
        lserr err = {0};

        /* A message longer than is kept is cut to CAT_MESSAGE_MAX - 1 bytes. */
        char longer[2 * CAT_MESSAGE_MAX];
        memset(longer, 'm', sizeof(longer) - 1);
        longer[sizeof(longer) - 1] = 0;
        m.message = longer;
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(cat_put_member(f->c, "t1", &m, &err), 0);
        assert_int_equal(cat_members(f->c, "t1", &mv, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_int_equal(strlen(mv[0].message), CAT_MESSAGE_MAX - 1);
        free(mv);
}

static void test_cuts_by_group_newest_first(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t, *v = NULL;
        size_t n = 0;
        lserr err = {0};

        t = txn("w1", CAT_KIND_SNAPSHOT, "web", 100);
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        t = txn("d1", CAT_KIND_SNAPSHOT, "db", 150);
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        t = txn("w2", CAT_KIND_SNAPSHOT, "web", 300);
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        t = txn("wr", CAT_KIND_REVERT, "web", 400);
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        t = txn("wd", CAT_KIND_DELETE, "web", 500);
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        t = txn("w3", CAT_KIND_SNAPSHOT, "web", 200);
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "w3", 1, NULL, &err), 0);
        assert_int_equal(cat_txn_finish(f->c, "w3", &err), 0);

        /* Reverts are listed too (as their pre-revert branches); deletes are not. */
        assert_int_equal(cat_cuts(f->c, "web", &v, &n, &err), 0);
        assert_int_equal(n, 4);
        assert_string_equal(v[0].txid, "wr");
        assert_int_equal(v[0].kind, CAT_KIND_REVERT);
        assert_string_equal(v[1].txid, "w2");
        assert_string_equal(v[2].txid, "w3");
        assert_int_equal(v[2].state, CAT_TXN_DONE);
        assert_string_equal(v[3].txid, "w1");
        free(v);

        assert_int_equal(cat_cuts(f->c, NULL, &v, &n, &err), 0);
        assert_int_equal(n, 5);
        assert_string_equal(v[0].txid, "wr");
        assert_string_equal(v[1].txid, "w2");
        assert_string_equal(v[2].txid, "w3");
        assert_string_equal(v[3].txid, "d1");
        assert_string_equal(v[4].txid, "w1");
        free(v);

        assert_int_equal(cat_cuts(f->c, "none", &v, &n, &err), 0);
        assert_int_equal(n, 0);
        assert_null(v);
}

static void test_agents_upsert(void **state)
{
        struct fixture *f = *state;
        struct cat_agent a = {
                .id = "host-b",
                .url = "https://host-b:7443",
                .fingerprint = "ab:cd:ef",
                .version = "0.3.1",
                .reachable = 1,
                .last_seen_us = 123,
                .checked_us = 456,
                .in_doubt = 2,
        };
        struct cat_agent b = {.id = "host-a", .url = "https://host-a:7443", .last_error = "connection refused"};
        struct cat_agent *v = NULL;
        size_t n = 0;
        lserr err = {0};

        assert_int_equal(cat_agent_put(f->c, &a, &err), 0);
        assert_int_equal(cat_agent_put(f->c, &b, &err), 0);
        assert_int_equal(cat_agents(f->c, &v, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_memory_equal(&v[0], &b, sizeof(b));
        assert_memory_equal(&v[1], &a, sizeof(a));
        free(v);

        a.reachable = 0;
        snprintf(a.last_error, sizeof(a.last_error), "timed out");
        a.in_doubt = 0;
        assert_int_equal(cat_agent_put(f->c, &a, &err), 0);
        assert_int_equal(cat_agents(f->c, &v, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_memory_equal(&v[1], &a, sizeof(a));
        free(v);

        b.id[0] = '\0';
        assert_int_equal(cat_agent_put(f->c, &b, &err), -EINVAL);
}

static void test_group_put_replaces(void **state)
{
        struct fixture *f = *state;
        const char *three[] = {"web1@host-a", "web2@host-b", "db1@host-a"};
        const char *one[] = {"web1@host-a"};
        const char *bad[] = {"web1"};
        const char *twice[] = {"web1@host-a", "web1@host-a"};
        lserr err = {0};

        assert_int_equal(cat_group_put(f->c, "web", "quiesce", three, 3, &err), 0);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM group_members WHERE group_name = 'web'", "gmember/web/"), 3);
        assert_int_equal(cat_group_put(f->c, "web", "pause", one, 1, &err), 0);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM group_members WHERE group_name = 'web'", "gmember/web/"), 1);
        assert_int_equal(HAS(f, "SELECT mode = 'pause' FROM groups WHERE name = 'web'", "group/web", "\"pause\""), 1);

        assert_int_equal(cat_group_put(f->c, "web", "quiesce", bad, 1, &err), -EINVAL);
        lserr_clear(&err);
        /* A refused replacement leaves the old list whole. */
        assert_int_equal(cat_group_put(f->c, "web", "quiesce", twice, 2, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "listed twice"));
        assert_int_equal(ROWS(f, "SELECT count(*) FROM group_members WHERE group_name = 'web'", "gmember/web/"), 1);
        assert_int_equal(HAS(f, "SELECT mode = 'pause' FROM groups WHERE name = 'web'", "group/web", "\"pause\""), 1);
        lserr_clear(&err);
        /* An empty group is a group. */
        assert_int_equal(cat_group_put(f->c, "empty", "memory", NULL, 0, &err), 0);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM groups", "group/"), 2);
}

static void test_audit_list_with_limit(void **state)
{
        struct fixture *f = *state;
        struct cat_audit a = {.agent = "host-a", .step = "prepare", .dir = CAT_SENT, .hash_hex = "00ff"}, *v = NULL;
        size_t n = 0;
        lserr err = {0};

        for (int i = 0; i < 6; i++) {
                snprintf(a.txid, sizeof(a.txid), "%s", i % 2 ? "tB" : "tA");
                a.at_us = 1000 - i; /* added newest first: the list must sort by time */
                a.dir = (enum cat_dir)(i % 3);
                a.code = i;
                char detail[16];
                snprintf(detail, sizeof(detail), "row %d", i);
                a.detail = detail;
                assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        }
        assert_int_equal(cat_audit_list(f->c, "", 3, &v, &n, &err), 0);
        assert_int_equal(n, 3);
        assert_int_equal(v[0].at_us, 995);
        assert_int_equal(v[1].at_us, 996);
        assert_int_equal(v[2].at_us, 997);
        assert_int_equal(v[0].code, 5);
        assert_string_equal(v[0].txid, "tB");
        assert_string_equal(v[0].detail, "row 5");
        assert_int_equal(v[0].dir, CAT_IGNORED);
        assert_string_equal(v[0].hash_hex, "00ff");
        assert_string_equal(v[0].agent, "host-a");
        assert_string_equal(v[0].step, "prepare");
        free(v);

        assert_int_equal(cat_audit_list(f->c, "tA", 100, &v, &n, &err), 0);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < n; i++)
                assert_string_equal(v[i].txid, "tA");
        assert_true(v[0].at_us < v[1].at_us && v[1].at_us < v[2].at_us);
        free(v);

        assert_int_equal(cat_audit_list(f->c, NULL, SIZE_MAX, &v, &n, &err), 0);
        assert_int_equal(n, 6);
        free(v);
        assert_int_equal(cat_audit_list(f->c, "", 0, &v, &n, &err), 0);
        assert_int_equal(n, 0);

        a.dir = (enum cat_dir)9;
        assert_int_equal(cat_audit_add(f->c, &a, &err), -EINVAL);
}

/* A request on the control socket is recorded with the uid and pid of its sender;
 * rows without a peer (commands sent to agents) read back without one. The
 * newest rows of all come oldest first. */
static void test_audit_control_peer(void **state)
{
        struct fixture *f = *state;
        struct cat_audit a = {.at_us = 100, .step = "snapshot.create", .dir = CAT_CONTROL, .has_peer = 1,
                              .peer_uid = 1000, .peer_pid = 4242, .detail = "shop: started op op-1"},
                         s = {.at_us = 200, .txid = "tA", .agent = "host-a", .step = "FREEZE", .dir = CAT_SENT},
                         *v = NULL;
        size_t n = 0;
        lserr err = {0};

        assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        assert_int_equal(cat_audit_add(f->c, &s, &err), 0);
        a.at_us = 300, a.peer_pid = -1;
        snprintf(a.step, sizeof(a.step), "reload");
        assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        assert_int_equal(cat_audit_list(f->c, "", 10, &v, &n, &err), 0);
        assert_int_equal(n, 3);
        assert_int_equal(v[0].dir, CAT_CONTROL);
        assert_string_equal(v[0].step, "snapshot.create");
        assert_true(v[0].has_peer);
        assert_int_equal(v[0].peer_uid, 1000);
        assert_int_equal(v[0].peer_pid, 4242);
        assert_string_equal(v[0].detail, "shop: started op op-1");
        assert_int_equal(v[1].dir, CAT_SENT);
        assert_false(v[1].has_peer);
        assert_true(v[2].has_peer);
        assert_int_equal(v[2].peer_pid, -1);
        free(v);
#ifndef CAT_TEST_ETCD
        assert_int_equal(raw_int(f->path, "SELECT peer_uid FROM audit WHERE dir = 'control' ORDER BY id LIMIT 1"), 1000);
        assert_int_equal(raw_int(f->path, "SELECT peer_uid FROM audit WHERE dir = 'sent'"), -1);
#endif

        assert_int_equal(cat_audit_recent(f->c, 2, &v, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_int_equal(v[0].at_us, 200);
        assert_int_equal(v[1].at_us, 300);
        free(v);
}

/* A catalog of schema 4 (before the audit knew control requests) opens, its audit
 * rows kept as they were, without a peer; new control rows go in beside them. */
static void test_audit_migration_keeps_rows(void **state)
{
        struct fixture *f = *state;
        struct cat_audit a = {.at_us = 500, .step = "reload", .dir = CAT_CONTROL, .has_peer = 1, .peer_uid = 7,
                              .peer_pid = 8},
                         *v = NULL;
        size_t n = 0;
        lserr err = {0};

        SQLITE_ONLY("a migration of the SQLite schema");
        f->c = cat_close(f->c);
        /* Version 4's audit table, as shipped, with a row in it. */
        raw_exec(f->path,
                 "DROP TABLE audit;"
                 "CREATE TABLE audit (id INTEGER PRIMARY KEY, at_us INTEGER NOT NULL, txid TEXT NOT NULL,"
                 " agent TEXT NOT NULL, step TEXT NOT NULL,"
                 " dir TEXT NOT NULL CHECK (dir IN ('sent', 'received', 'ignored')), code INTEGER NOT NULL,"
                 " detail TEXT NOT NULL, hash_hex TEXT NOT NULL);"
                 "CREATE INDEX audit_txid ON audit (txid, at_us);"
                 "INSERT INTO audit (at_us, txid, agent, step, dir, code, detail, hash_hex)"
                 " VALUES (42, 'old', 'host-a', 'FREEZE', 'received', 3, 'from v4', 'abcd');"
                 "ALTER TABLE txns DROP COLUMN members;"
                 "DELETE FROM schema_version WHERE version >= 5;");
        assert_int_equal(raw_int(f->path, "SELECT max(version) FROM schema_version"), 4);
        assert_int_equal(cat_open(f->path, &f->c, &err), 0);
        assert_int_equal(raw_int(f->path, "SELECT max(version) FROM schema_version"), CAT_SCHEMA_VERSION);
        assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        assert_int_equal(cat_audit_list(f->c, NULL, 10, &v, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(v[0].txid, "old");
        assert_int_equal(v[0].dir, CAT_RECEIVED);
        assert_int_equal(v[0].code, 3);
        assert_string_equal(v[0].detail, "from v4");
        assert_string_equal(v[0].hash_hex, "abcd");
        assert_false(v[0].has_peer);
        assert_int_equal(v[1].dir, CAT_CONTROL);
        assert_int_equal(v[1].peer_uid, 7);
        assert_int_equal(v[1].peer_pid, 8);
        free(v);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_schema WHERE name = 'audit_txid'"), 1);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_schema WHERE name = 'audit_v5'"), 0);
}

/* A catalog of schema 5 opens with each transaction's members counted from
 * its member rows, so the history's member bound holds for what was there. */
static void test_members_migration_counts(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("t5", CAT_KIND_SNAPSHOT, "web", 0), got;
        struct cat_member m = {.agent = "host-a", .code = CAT_PENDING};
        lserr err = {0};

        SQLITE_ONLY("a migration of the SQLite schema");
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        for (int i = 0; i < 3; i++) {
                snprintf(m.vm, sizeof(m.vm), "vm%d", i);
                assert_int_equal(cat_put_member(f->c, "t5", &m, &err), 0);
        }
        f->c = cat_close(f->c);
        raw_exec(f->path, "ALTER TABLE txns DROP COLUMN members; DELETE FROM schema_version WHERE version = 6;");
        assert_int_equal(cat_open(f->path, &f->c, &err), 0);
        assert_int_equal(raw_int(f->path, "SELECT max(version) FROM schema_version"), CAT_SCHEMA_VERSION);
        assert_int_equal(cat_txn_get(f->c, "t5", &got, &err), 0);
        assert_int_equal(got.members, 3);
}

/* A batch is one transaction: a second connection sees none of its rows until
 * it ends, then all of them; a row that fails (no such transaction) is refused
 * by its own call and the others stay; writes after the batch commit alone. */
static void test_batch_one_transaction(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("t1", CAT_KIND_SNAPSHOT, "web", 0);
        struct cat_member m = {.agent = "host-a", .code = CAT_PENDING};
        struct cat_audit a = {.dir = CAT_SENT, .txid = "t1", .agent = "host-a", .step = "FREEZE"};
        struct catalog *other = NULL;
        struct cat_member *mv = NULL;
        size_t n = 0;
        lserr err = {0};

        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(open_catalog(f, &other, &err), 0);
        assert_int_equal(cat_batch_begin(f->c, &err), 0);
        for (int i = 0; i < 2000; i++) {
                snprintf(m.vm, sizeof(m.vm), "vm%d", i);
                assert_int_equal(cat_put_member(f->c, "t1", &m, &err), 0);
                a.at_us = 1000 + i;
                assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        }
        assert_int_equal(cat_put_member(f->c, "no-such-txn", &m, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "no such transaction"));
        lserr_clear(&err);
        assert_int_equal(cat_members(other, "t1", &mv, &n, &err), 0);
        assert_int_equal(n, 0);
        free(mv);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM audit", "audit/id/"), 0);
        assert_int_equal(cat_batch_end(f->c, &err), 0);
        assert_int_equal(cat_members(other, "t1", &mv, &n, &err), 0);
        assert_int_equal(n, 2000);
        free(mv);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM audit", "audit/id/"), 2000);
        /* Outside a batch again: each write is its own, seen at once. */
        snprintf(m.vm, sizeof(m.vm), "after");
        assert_int_equal(cat_put_member(f->c, "t1", &m, &err), 0);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM members WHERE vm = 'after'", "mem/t1/host-a/after"), 1);
        assert_int_equal(cat_txn_decide(f->c, "t1", 1, NULL, &err), 0);
        cat_close(other);
}

/* A decision in a batch (a cut's records and its decision, one sync) joins
 * it: another connection sees it only once the batch is committed, and so
 * does the next finish in the same batch. */
static void test_decision_in_a_batch(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("t1", CAT_KIND_SNAPSHOT, "web", 0), got;
        struct cat_member m = {.agent = "host-a", .vm = "web1", .code = 0};
        struct catalog *other = NULL;
        lserr err = {0};

        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(open_catalog(f, &other, &err), 0);
        assert_int_equal(cat_batch_begin(f->c, &err), 0);
        assert_int_equal(cat_put_member(f->c, "t1", &m, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "t1", 1, NULL, &err), 0);
        assert_int_equal(cat_txn_get(other, "t1", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_STARTED);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM members WHERE vm = 'web1'", "mem/t1/host-a/web1"), 0);
        assert_int_equal(cat_txn_finish(f->c, "t1", &err), 0);
        assert_int_equal(cat_batch_end(f->c, &err), 0);
        assert_int_equal(cat_txn_get(other, "t1", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_DONE);
        assert_true(got.committed);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM members WHERE vm = 'web1'", "mem/t1/host-a/web1"), 1);
        cat_close(other);
}

static void test_decision_visible_to_second_connection(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("t1", CAT_KIND_SNAPSHOT, "web", 0), got;
        struct catalog *other = NULL;
        lserr err = {0};

        assert_int_equal(open_catalog(f, &other, &err), 0);
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(cat_txn_get(other, "t1", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_STARTED);
        assert_int_equal(cat_txn_decide(f->c, "t1", 0, "vm gone", &err), 0);
        assert_int_equal(cat_txn_get(other, "t1", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_ABORT);
        assert_string_equal(got.reason, "vm gone");
        /* And the other connection sees the conflict too. */
        assert_int_equal(cat_txn_decide(other, "t1", 1, NULL, &err), -EBUSY);
        cat_close(other);
}

static void test_decision_survives_dying_process(void **state)
{
        struct fixture *f = *state;
        struct cat_txn got;
        lserr err = {0};
        int status;
        pid_t pid;

        /* The child must not inherit an open connection. */
        f->c = cat_close(f->c);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct catalog *c = NULL;
                struct cat_txn t = txn("t1", CAT_KIND_SNAPSHOT, "web", 0);

                if (open_catalog(f, &c, NULL) < 0 || cat_txn_begin(c, &t, NULL) < 0 ||
                    cat_txn_decide(c, "t1", 1, NULL, NULL) < 0)
                        _exit(1);
                /* No close, no checkpoint: the decision lives only in the WAL. */
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(open_catalog(f, &f->c, &err), 0);
        assert_int_equal(cat_txn_get(f->c, "t1", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_COMMIT);
}

#define THREADS 4
#define PER_THREAD 50

struct worker {
        struct catalog *c;
        int id;
        int failures;
        char first[LSERR_MSG_MAX];
};

static void *work(void *arg)
{
        struct worker *w = arg;

        for (int i = 0; i < PER_THREAD; i++) {
                char txid[32];
                struct cat_txn t, got;
                struct cat_member m = {.agent = "host-a"};
                struct cat_audit a = {.agent = "host-a", .step = "prepare", .dir = CAT_SENT};
                lserr err = {0};
                int r;

                snprintf(txid, sizeof(txid), "w%d-%d", w->id, i);
                t = txn(txid, CAT_KIND_SNAPSHOT, "web", 0);
                snprintf(m.vm, sizeof(m.vm), "vm%d", i);
                snprintf(a.txid, sizeof(a.txid), "%s", txid);
                r = cat_txn_begin(w->c, &t, &err);
                if (r >= 0)
                        r = cat_put_member(w->c, txid, &m, &err);
                if (r >= 0)
                        r = cat_audit_add(w->c, &a, &err);
                if (r >= 0)
                        r = cat_txn_decide(w->c, txid, i % 2, NULL, &err);
                if (r >= 0)
                        r = cat_txn_get(w->c, txid, &got, &err);
                if (r >= 0 && got.state != (i % 2 ? CAT_TXN_COMMIT : CAT_TXN_ABORT))
                        r = -EIO;
                if (r < 0 && w->failures++ == 0)
                        snprintf(w->first, sizeof(w->first), "%s", err.msg);
        }
        return NULL;
}

static void test_concurrent_threads(void **state)
{
        struct fixture *f = *state;
        struct catalog *other = NULL;
        struct worker w[THREADS];
        pthread_t th[THREADS];
        struct cat_txn *v = NULL;
        size_t n = 0;
        lserr err = {0};

        /* Two threads per connection and two connections: the mutex serializes a
         * connection, the busy timeout the two connections. */
        assert_int_equal(open_catalog(f, &other, &err), 0);
        for (int i = 0; i < THREADS; i++) {
                w[i] = (struct worker){.c = i < THREADS / 2 ? f->c : other, .id = i};
                assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
        }
        for (int i = 0; i < THREADS; i++) {
                assert_int_equal(pthread_join(th[i], NULL), 0);
                if (w[i].failures)
                        fail_msg("thread %d: %d failures, first: %s", i, w[i].failures, w[i].first);
        }
        cat_close(other);
        assert_int_equal(cat_txn_unresolved(f->c, &v, &n, &err), 0);
        assert_int_equal(n, THREADS * PER_THREAD);
        free(v);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM members", "mem/"), THREADS * PER_THREAD);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM audit", "audit/id/"), THREADS * PER_THREAD);
}

/* The event log pages oldest first from an id, or gives the newest page; a
 * schedule's record survives reopening; reverts to a cut are counted. */
static void test_events_schedules_reverts(void **state)
{
        struct fixture *f = *state;
        struct cat_event ev = {0}, *got = NULL;
        struct cat_sched cs = {0}, back;
        size_t n = 0;
        long long id = 0;
        char rev[65];
        lserr err = {0};

        for (int i = 1; i <= 5; i++) {
                snprintf(ev.kind, sizeof(ev.kind), "cut");
                snprintf(ev.group, sizeof(ev.group), "shop");
                snprintf(ev.message, sizeof(ev.message), "event %d", i);
                assert_int_equal(cat_event_add(f->c, &ev, &id, &err), 0);
        }
        assert_int_equal(id, 5);
        assert_int_equal(cat_events(f->c, 2, 2, 0, &got, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(got[0].message, "event 3");
        assert_string_equal(got[1].message, "event 4");
        free(got);
        assert_int_equal(cat_events(f->c, 0, 2, 1, &got, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(got[0].message, "event 4"); /* the newest two, oldest first */
        assert_string_equal(got[1].message, "event 5");
        free(got);
        ev.kind[0] = '\0';
        assert_int_equal(cat_event_add(f->c, &ev, NULL, &err), -EINVAL);
        assert_int_equal(cat_events_trim(f->c, 3, &err), 2); /* 5 events, the newest 3 stay */
        assert_int_equal(cat_events(f->c, 0, 10, 0, &got, &n, &err), 0);
        assert_int_equal(n, 3);
        assert_string_equal(got[0].message, "event 3");
        free(got);

        assert_int_equal(cat_sched_get(f->c, "shop", &back, &err), -ENOENT);
        snprintf(cs.group, sizeof(cs.group), "shop");
        cs.last_due_s = 1767262500;
        cs.last_run_us = 1767262500123456LL;
        snprintf(cs.outcome, sizeof(cs.outcome), "committed");
        cs.runs = 3;
        cs.skipped = 1;
        assert_int_equal(cat_sched_put(f->c, &cs, &err), 0);
        cat_close(f->c);
        assert_int_equal(open_catalog(f, &f->c, &err), 0);
        assert_int_equal(cat_sched_get(f->c, "shop", &back, &err), 0);
        assert_int_equal(back.last_due_s, 1767262500);
        assert_int_equal(back.last_run_us, 1767262500123456LL);
        assert_string_equal(back.outcome, "committed");
        assert_int_equal(back.runs, 3);
        assert_int_equal(back.skipped, 1);

        struct cat_txn cut = txn("cut-A", CAT_KIND_SNAPSHOT, "shop", 1000);
        struct cat_txn r1 = txn("rev-1", CAT_KIND_REVERT, "shop", 2000), r2 = txn("rev-2", CAT_KIND_REVERT, "shop", 3000);
        snprintf(r1.name, sizeof(r1.name), "cut-A");
        snprintf(r2.name, sizeof(r2.name), "cut-A");
        snprintf(r1.mode, sizeof(r1.mode), "revert");
        snprintf(r2.mode, sizeof(r2.mode), "revert");
        struct cat_txn r3 = txn("rev-3", CAT_KIND_REVERT, "other", 4000);
        struct cat_member m = {.tier = 0, .code = 0};
        snprintf(r3.mode, sizeof(r3.mode), "revert");
        assert_int_equal(cat_txn_begin(f->c, &cut, &err), 0);
        snprintf(m.agent, sizeof(m.agent), "host-a");
        snprintf(m.vm, sizeof(m.vm), "web1");
        assert_int_equal(cat_put_member(f->c, "cut-A", &m, &err), 0);
        assert_int_equal(cat_reverts_since(f->c, "cut-A", 1000, rev, &err), 0);
        assert_string_equal(rev, "");
        assert_int_equal(cat_txn_begin(f->c, &r1, &err), 0);
        assert_int_equal(cat_txn_begin(f->c, &r2, &err), 0);
        assert_int_equal(cat_put_member(f->c, "rev-1", &m, &err), 0);
        assert_int_equal(cat_put_member(f->c, "rev-2", &m, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "rev-1", 1, "", &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "rev-2", 0, "prepare failed", &err), 0);
        /* Only committed reverts branch the chains; only later ones count. */
        assert_int_equal(cat_reverts_since(f->c, "cut-A", 1000, rev, &err), 1);
        assert_string_equal(rev, "rev-1");
        assert_int_equal(cat_reverts_since(f->c, "cut-A", 2000, rev, &err), 0);
        /* A revert of another group that holds web1@host-a counts too; one
         * that holds other VMs does not. */
        assert_int_equal(cat_txn_begin(f->c, &r3, &err), 0);
        snprintf(m.vm, sizeof(m.vm), "db9");
        assert_int_equal(cat_put_member(f->c, "rev-3", &m, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "rev-3", 1, "", &err), 0);
        assert_int_equal(cat_reverts_since(f->c, "cut-A", 2000, rev, &err), 0);
        snprintf(m.vm, sizeof(m.vm), "web1");
        assert_int_equal(cat_put_member(f->c, "rev-3", &m, &err), 0);
        assert_int_equal(cat_reverts_since(f->c, "cut-A", 2000, rev, &err), 1);
        assert_string_equal(rev, "rev-3");

        /* A branch that was undone or deleted pins nothing; delete-failed still does. */
        assert_int_equal(cat_branch_set_status(f->c, "rev-3", "deleted", "", &err), 0);
        assert_int_equal(cat_reverts_since(f->c, "cut-A", 2000, rev, &err), 0);
        assert_int_equal(cat_branch_set_status(f->c, "rev-3", "delete-failed", "web1@host-a: busy", &err), 0);
        assert_int_equal(cat_reverts_since(f->c, "cut-A", 2000, rev, &err), 1);
        assert_int_equal(cat_branch_set_status(f->c, "rev-1", "undone", "", &err), 0);
        assert_int_equal(cat_reverts_since(f->c, "cut-A", 1000, rev, &err), 1);
        assert_string_equal(rev, "rev-3");
        struct cat_txn back3;
        assert_int_equal(cat_txn_get(f->c, "rev-3", &back3, &err), 0);
        assert_string_equal(back3.branch_status, "delete-failed");
        assert_string_equal(back3.branch_reason, "web1@host-a: busy");
        /* Only reverts have branches, and only the four words are statuses. */
        assert_int_equal(cat_branch_set_status(f->c, "cut-A", "deleted", "", &err), -ENOENT);
        lserr_clear(&err);
        assert_int_equal(cat_branch_set_status(f->c, "rev-1", "gone", "", &err), -EINVAL);
        lserr_clear(&err);
}

static void test_branch_drops_cuts_on_its_images(void **state)
{
        struct fixture *f = *state;
        struct cat_txn x = txn("cut-X", CAT_KIND_SNAPSHOT, "shop", 1000), y = txn("cut-Y", CAT_KIND_SNAPSHOT, "shop", 2000),
                       back;
        struct cat_image im = {0};
        lserr err = {0};

        assert_int_equal(cat_txn_begin(f->c, &x, &err), 0);
        assert_int_equal(cat_txn_begin(f->c, &y, &err), 0);
        snprintf(im.agent, sizeof(im.agent), "host-a");
        snprintf(im.vm, sizeof(im.vm), "web1");
        snprintf(im.disk, sizeof(im.disk), "vda");
        im.before = "/img/web1-vda.qcow2";
        im.after = "/img/web1-vda.cut-X.qcow2";
        assert_int_equal(cat_put_image(f->c, "cut-X", &im, &err), 0);
        im.before = "/img/web1-vda.cut-X.qcow2";
        im.after = "/img/web1-vda.cut-Y.qcow2";
        assert_int_equal(cat_put_image(f->c, "cut-Y", &im, &err), 0);
        char(*ids)[65] = NULL;
        size_t n = 0;
        /* X's image is the base, Y's is X's overlay: one cut each. */
        assert_int_equal(cat_cuts_on_image(f->c, "host-a", "web1", "/img/web1-vda.cut-X.qcow2", &ids, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(ids[0], "cut-Y");
        free(ids);
        assert_int_equal(cat_cuts_on_image(f->c, "host-a", "web1", "/img/web1-vda.cut-Y.qcow2", &ids, &n, &err), 0);
        assert_int_equal(n, 0);
        free(ids);
        /* Another VM's file of that name is not this one's; deleted cuts are not listed. */
        assert_int_equal(cat_cuts_on_image(f->c, "host-a", "web2", "/img/web1-vda.qcow2", &ids, &n, &err), 0);
        assert_int_equal(n, 0);
        free(ids);
        assert_int_equal(cat_cut_set_status(f->c, "cut-Y", "deleted", "", &err), 0);
        assert_int_equal(cat_cuts_on_image(f->c, "host-a", "web1", "/img/web1-vda.cut-X.qcow2", &ids, &n, &err), 0);
        assert_int_equal(n, 0);
        free(ids);
        (void)back;
}

/* A transaction logged, decided and finished, with one member, one image and
 * two audit rows. */
static void done_txn(struct fixture *f, const char *txid, enum cat_kind kind, long long at, int commit)
{
        struct cat_txn t = txn(txid, kind, "shop", at);
        struct cat_member m = {.code = 0};
        struct cat_image im = {0};
        struct cat_audit a = {.at_us = at, .dir = CAT_SENT};
        lserr err = {0};

        snprintf(t.mode, sizeof(t.mode), "%s", kind == CAT_KIND_REVERT ? "revert" : "quiesce");
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        snprintf(m.agent, sizeof(m.agent), "host-a");
        snprintf(m.vm, sizeof(m.vm), "web1");
        assert_int_equal(cat_put_member(f->c, txid, &m, &err), 0);
        snprintf(im.agent, sizeof(im.agent), "host-a");
        snprintf(im.vm, sizeof(im.vm), "web1");
        snprintf(im.disk, sizeof(im.disk), "vda");
        char before[96];
        snprintf(before, sizeof(before), "/img/%s", txid);
        im.before = before;
        assert_int_equal(cat_put_image(f->c, txid, &im, &err), 0);
        snprintf(a.txid, sizeof(a.txid), "%s", txid);
        snprintf(a.agent, sizeof(a.agent), "host-a");
        snprintf(a.step, sizeof(a.step), "FREEZE");
        assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        a.dir = CAT_RECEIVED;
        assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, txid, commit, commit ? "" : "no", &err), 0);
        assert_int_equal(cat_txn_finish(f->c, txid, &err), 0);
}

static void test_history_trim_keeps_what_lives(void **state)
{
        struct fixture *f = *state;
        struct cat_txn got;
        lserr err = {0};
        char id[16];

        /* 40 rounds of history: a cut deleted by a delete, and an aborted cut. */
        for (int i = 0; i < 40; i++) {
                snprintf(id, sizeof(id), "cut-%02d", i);
                done_txn(f, id, CAT_KIND_SNAPSHOT, 1000 + i * 10, 1);
                assert_int_equal(cat_cut_set_status(f->c, id, "deleted", "", &err), 0);
                snprintf(id, sizeof(id), "del-%02d", i);
                done_txn(f, id, CAT_KIND_DELETE, 1001 + i * 10, 1);
                snprintf(id, sizeof(id), "ab-%02d", i);
                done_txn(f, id, CAT_KIND_SNAPSHOT, 1002 + i * 10, 0);
        }
        /* What lives, all older than the history: a kept cut, a kept branch,
         * an undecided transaction. An undone revert is history. */
        done_txn(f, "live-cut", CAT_KIND_SNAPSHOT, 10, 1);
        done_txn(f, "live-rev", CAT_KIND_REVERT, 11, 1);
        done_txn(f, "undone-rev", CAT_KIND_REVERT, 12, 1);
        assert_int_equal(cat_branch_set_status(f->c, "undone-rev", "undone", "", &err), 0);
        struct cat_txn open = txn("open", CAT_KIND_SNAPSHOT, "shop", 13);
        assert_int_equal(cat_txn_begin(f->c, &open, &err), 0);

        /* 121 ended, 30 kept: 91 go, with their members, images and audit. */
        assert_int_equal(cat_history_trim(f->c, 30, ANY_MEMBERS, 100000, &err), 91);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM txns", "txn/"), 30 + 3);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM members", "mem/"), 30 + 2);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM images", "img/"), 30 + 2);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM audit", "audit/id/"), 2 * (30 + 2));
#ifdef CAT_TEST_ETCD
        /* The indexes went with what they point at. */
        assert_int_equal(count_keys(f, "vmimg/"), 30 + 2);
        assert_int_equal(count_keys(f, "audit/tx/"), 2 * (30 + 2));
        assert_int_equal(count_keys(f, "audit/at/"), 2 * (30 + 2));
        assert_int_equal(count_keys(f, "dec/"), 30 + 2);
        assert_int_equal(count_keys(f, "open/"), 1);
        assert_int_equal(count_keys(f, "cut/"), 30 * 2 / 3 + 3);
        assert_int_equal(count_keys(f, "revert/"), 1);
#endif
        assert_int_equal(cat_txn_get(f->c, "live-cut", &got, &err), 0);
        assert_int_equal(cat_txn_get(f->c, "live-rev", &got, &err), 0);
        assert_int_equal(cat_txn_get(f->c, "open", &got, &err), 0);
        assert_int_equal(cat_txn_get(f->c, "undone-rev", &got, NULL), -ENOENT);
        assert_int_equal(cat_txn_get(f->c, "cut-00", &got, NULL), -ENOENT);
        assert_int_equal(cat_txn_get(f->c, "ab-39", &got, &err), 0); /* the newest history stays */
        /* Again: nothing more to do. The audit cap keeps the newest rows. */
        assert_int_equal(cat_history_trim(f->c, 30, ANY_MEMBERS, 100000, &err), 0);
        assert_int_equal(cat_history_trim(f->c, 30, ANY_MEMBERS, 10, &err), 0);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM audit", "audit/id/"), 10);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM audit WHERE txid = 'ab-39'", "audit/tx/ab-39/"), 2);
#ifdef CAT_TEST_ETCD
        assert_int_equal(count_keys(f, "audit/tx/"), 10);
        assert_int_equal(count_keys(f, "audit/at/"), 10);
#endif
}

/* The history bounded in members too: ended transactions of 4,000 members
 * each, kept newest first while their members add up to at most the bound;
 * a live cut, however big, is neither counted nor touched; the count comes
 * back from the catalog as it was begun. */
static void test_history_trim_by_members(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t, got;
        lserr err = {0};
        char id[16];

        for (int i = 0; i < 10; i++) {
                snprintf(id, sizeof(id), "old-%d", i);
                t = txn(id, CAT_KIND_SNAPSHOT, "big", 1000 + i);
                t.members = 4000;
                assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
                assert_int_equal(cat_txn_decide(f->c, id, 0, "no", &err), 0);
                assert_int_equal(cat_txn_finish(f->c, id, &err), 0);
        }
        t = txn("live", CAT_KIND_SNAPSHOT, "big", 10);
        t.members = 1000000;
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "live", 1, "", &err), 0);
        assert_int_equal(cat_txn_finish(f->c, "live", &err), 0);
        assert_int_equal(cat_txn_get(f->c, "old-9", &got, &err), 0);
        assert_int_equal(got.members, 4000);

        /* 10,000 members: the newest two (8,000) stay, a third would make 12,000. */
        assert_int_equal(cat_history_trim(f->c, 1000, 10000, 100000, &err), 8);
        assert_int_equal(ROWS(f, "SELECT count(*) FROM txns", "txn/"), 3);
        assert_int_equal(cat_txn_get(f->c, "old-9", &got, &err), 0);
        assert_int_equal(cat_txn_get(f->c, "old-8", &got, &err), 0);
        assert_int_equal(cat_txn_get(f->c, "old-7", &got, NULL), -ENOENT);
        assert_int_equal(cat_txn_get(f->c, "live", &got, &err), 0);
        assert_int_equal(got.members, 1000000);
        /* The count bound still applies beside it; exactly at the bound stays. */
        assert_int_equal(cat_history_trim(f->c, 1, 10000, 100000, &err), 1);
        assert_int_equal(cat_txn_get(f->c, "old-8", &got, NULL), -ENOENT);
        assert_int_equal(cat_history_trim(f->c, 1000, 4000, 100000, &err), 0);
        assert_int_equal(cat_txn_get(f->c, "old-9", &got, &err), 0);
}

/* The same cut applies to what became of a cut and of a branch. */
static void test_status_reasons_cut_on_character(void **state)
{
        struct fixture *f = *state;
        struct cat_txn s = txn("s1", CAT_KIND_SNAPSHOT, "web", 0), r = txn("r1", CAT_KIND_REVERT, "web", 0), got;
        char reason[2000];
        lserr err = {0};
        size_t i;

        for (i = 0; i + 2 < sizeof(reason); i += 2)
                memcpy(reason + i, "\xc3\xa9", 2);
        reason[i] = '\0';
        assert_int_equal(cat_txn_begin(f->c, &s, &err), 0);
        assert_int_equal(cat_txn_begin(f->c, &r, &err), 0);
        assert_int_equal(cat_cut_set_status(f->c, "s1", "delete-failed", reason, &err), 0);
        assert_int_equal(cat_branch_set_status(f->c, "r1", "delete-failed", reason, &err), 0);
        assert_int_equal(cat_txn_get(f->c, "s1", &got, &err), 0);
        assert_int_equal(strlen(got.cut_status_reason), sizeof(got.cut_status_reason) - 2);
        assert_int_equal(cat_txn_get(f->c, "r1", &got, &err), 0);
        assert_int_equal(strlen(got.branch_reason), sizeof(got.branch_reason) - 2);
        assert_int_equal(memcmp(got.branch_reason, reason, strlen(got.branch_reason)), 0);
        /* A branch status names a revert, a cut status a cut. */
        assert_int_equal(cat_cut_set_status(f->c, "r1", "deleted", "", &err), -ENOENT);
        assert_int_equal(cat_branch_set_status(f->c, "s1", "deleted", "", &err), -ENOENT);
}

static int decode_ll(sqlite3_stmt *st, void *row)
{
        *(long long *)row = sqlite3_column_int64(st, 0);
        return 0;
}

static int decode_refuse(sqlite3_stmt *st, void *row)
{
        (void)st;
        (void)row;
        return -EIO;
}

/* The statement helper: binds by format, one row, many rows, failures. */
static void test_statement_helper(void **state)
{
        struct fixture *f = *state;
        struct catalog *c = f->c;
        long long v = 42, *list = NULL;
        void *vlist = NULL;
        size_t n = 99;
        char id[65];

        SQLITE_ONLY("SQLite's statement helper");
        /* 'T' cuts free text on a character boundary to what its field reads back. */
        assert_int_equal(cat_exec(c, "INSERT INTO events (at_us, kind, group_name, txid, message)"
                                     " VALUES (?1, ?2, ?3, ?4, ?5)",
                                  "LssiT", 7LL, "k\xc3\xa9", "", 5, "ab\xc3\xa9\xc3\xa9", (size_t)5),
                         SQLITE_DONE);
        assert_int_equal(cat_query_row(c, decode_ll, &v, "SELECT length(CAST(message AS BLOB)) FROM events", ""),
                         SQLITE_ROW);
        assert_int_equal(v, 4);
        assert_int_equal(cat_query_row(c, cat_decode_id, id, "SELECT txid FROM events WHERE at_us = ?1", "L", 7LL),
                         SQLITE_ROW);
        assert_string_equal(id, "5");
        /* No row: SQLITE_DONE, the row untouched. */
        v = 42;
        assert_int_equal(cat_query_row(c, decode_ll, &v, "SELECT id FROM events WHERE kind = ?1", "s", "none"),
                         SQLITE_DONE);
        assert_int_equal(v, 42);
        assert_int_equal(cat_query_row(c, decode_refuse, &v, "SELECT id FROM events", ""), CAT_RC_BADROW);
        assert_int_equal(cat_rc_errno(CAT_RC_BADROW), -EIO);
        /* An empty list is NULL and 0; a long one grows past its first block. */
        assert_int_equal(cat_query_list(c, sizeof(long long), decode_ll, &vlist, &n,
                                        "SELECT id FROM events WHERE id > ?1", "L", 1000LL),
                         SQLITE_DONE);
        assert_null(vlist);
        assert_int_equal(n, 0);
        for (int i = 0; i < 20; i++)
                assert_int_equal(cat_exec(c, "INSERT INTO events (at_us, kind, group_name, txid, message)"
                                             " VALUES (?1, 'k', '', '', '')",
                                          "i", i),
                                 SQLITE_DONE);
        assert_int_equal(cat_query_list(c, sizeof(long long), decode_ll, &vlist, &n,
                                        "SELECT at_us FROM events WHERE id > 1 ORDER BY id", ""),
                         SQLITE_DONE);
        list = vlist;
        assert_int_equal(n, 20);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(list[i], (long long)i);
        free(list);
        vlist = NULL;
        assert_int_equal(cat_query_list(c, sizeof(long long), decode_refuse, &vlist, &n, "SELECT id FROM events", ""),
                         CAT_RC_BADROW);
        assert_null(vlist);
        /* SQLite's own failures come back as its extended codes, with its words. */
        assert_int_equal(cat_exec(c, "INSERT INTO schema_version (version, applied_us) VALUES (1, 0)", ""),
                         SQLITE_CONSTRAINT_PRIMARYKEY);
        assert_non_null(strstr(cat_why(c, SQLITE_CONSTRAINT_PRIMARYKEY), "schema_version.version"));
        assert_int_equal(cat_exec(c, "SELECT FROM nowhere", ""), SQLITE_ERROR);
}

/* Every return path gives the lock back and leaves no transaction open. */
static void test_failures_release_lock_and_transaction(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("t1", CAT_KIND_SNAPSHOT, "web", 0);
        const char *dup[] = {"a@h", "a@h"};
        lserr err = {0};

        assert_int_equal(cat_txn_decide(f->c, "nope", 1, NULL, &err), -ENOENT);
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(cat_txn_finish(f->c, "t1", &err), -EBUSY);
        assert_int_equal(cat_txn_decide(f->c, "t1", 1, NULL, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "t1", 0, "late", &err), -EBUSY);
        assert_int_equal(cat_group_put(f->c, "g", "quiesce", dup, 2, &err), -EINVAL);
        assert_int_equal(cat_txn_begin(f->c, &t, &err), -EEXIST);
#ifdef CAT_TEST_ETCD
        /* The etcd backend's own lock, and no write left buffered. */
        struct cat_etcd *e = f->c->be_impl;
        assert_int_equal(pthread_mutex_trylock(&e->lock), 0);
        pthread_mutex_unlock(&e->lock);
        assert_int_equal(e->n_units, 0);
#else
        assert_int_equal(pthread_mutex_trylock(&f->c->lock), 0);
        pthread_mutex_unlock(&f->c->lock);
        assert_true(sqlite3_get_autocommit(f->c->db));
#endif
        /* The refused group left nothing behind: its upsert was rolled back too. */
        assert_int_equal(ROWS(f, "SELECT count(*) FROM groups", "group/"), 0);
}


/* etcd requests the catalog sent so far (0 on SQLite, which sends none). */
static unsigned long long requests(const struct fixture *f)
{
#ifdef CAT_TEST_ETCD
        struct etcd_stats st;

        assert_int_equal(cat_etcd_stats(f->c, &st), 0);
        return st.requests;
#else
        (void)f;
        return 0;
#endif
}

/* One member written three times in a batch (placeholder, freeze, snapshot,
 * as a cut's records go): the last one stands, and the batch with its images,
 * audit rows and decision is one etcd request. */
static void test_batch_rewrite_keeps_last(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("rw", CAT_KIND_SNAPSHOT, "web", 0), got;
        struct cat_member m = {.agent = "host-a", .vm = "web1", .code = CAT_PENDING}, *mv = NULL;
        struct cat_image im = {.agent = "host-a", .vm = "web1", .disk = "vda", .before = "/i/a", .after = "/i/b"};
        struct cat_audit a = {.dir = CAT_SENT, .txid = "rw", .agent = "host-a", .step = "FREEZE"};
        unsigned long long before;
        size_t n = 0;
        lserr err = {0};

        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        /* The audit counter is read once per connection, before its first row. */
        assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        before = requests(f);
        assert_int_equal(cat_batch_begin(f->c, &err), 0);
        assert_int_equal(cat_put_member(f->c, "rw", &m, &err), 0);
        m.code = 0;
        m.freeze_us = 5;
        m.message = "frozen";
        assert_int_equal(cat_put_member(f->c, "rw", &m, &err), 0);
        assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        m.snapshot_us = 7;
        m.message = "snapshot taken";
        assert_int_equal(cat_put_member(f->c, "rw", &m, &err), 0);
        assert_int_equal(cat_put_image(f->c, "rw", &im, &err), 0);
        assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "rw", 1, NULL, &err), 0);
        assert_int_equal(cat_batch_end(f->c, &err), 0);
#ifdef CAT_TEST_ETCD
        assert_int_equal(requests(f) - before, 1);
#else
        (void)before;
#endif
        assert_int_equal(cat_members(f->c, "rw", &mv, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(mv[0].message, "snapshot taken");
        assert_int_equal(mv[0].freeze_us, 5);
        assert_int_equal(mv[0].snapshot_us, 7);
        free(mv);
        assert_int_equal(cat_txn_get(f->c, "rw", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_COMMIT);
}

/* A begin in a batch goes with the records after it (a cut's placeholders:
 * one etcd request); a txid already logged is refused, by the begin or at
 * the batch's end, and nothing of that batch is written. */
static void test_batch_begin_with_records(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("bb", CAT_KIND_SNAPSHOT, "web", 0), got;
        struct cat_member m = {.agent = "host-a", .code = CAT_PENDING}, *mv = NULL;
        unsigned long long before = requests(f);
        size_t n = 0;
        lserr err = {0};
        int r;

        assert_int_equal(cat_batch_begin(f->c, &err), 0);
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        for (int i = 0; i < 3; i++) {
                snprintf(m.vm, sizeof(m.vm), "vm%d", i);
                assert_int_equal(cat_put_member(f->c, "bb", &m, &err), 0);
        }
        assert_int_equal(cat_batch_end(f->c, &err), 0);
#ifdef CAT_TEST_ETCD
        assert_int_equal(requests(f) - before, 1);
#else
        (void)before;
#endif
        assert_int_equal(cat_txn_get(f->c, "bb", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_STARTED);
        assert_int_equal(cat_members(f->c, "bb", &mv, &n, &err), 0);
        assert_int_equal(n, 3);
        free(mv);

        /* Taken: SQLite refuses the begin itself, etcd the batch's end. */
        assert_int_equal(cat_batch_begin(f->c, &err), 0);
        r = cat_txn_begin(f->c, &t, &err);
        snprintf(m.vm, sizeof(m.vm), "late");
        if (r == 0)
                assert_int_equal(cat_put_member(f->c, "bb", &m, &err), 0);
        else
                assert_int_equal(r, -EEXIST);
        lserr_clear(&err);
        assert_int_equal(cat_batch_end(f->c, &err), r == 0 ? -EEXIST : 0);
        if (r == 0)
                assert_non_null(strstr(err.msg, "already logged"));
        assert_int_equal(cat_members(f->c, "bb", &mv, &n, &err), 0);
        assert_int_equal(n, 3);
        free(mv);

        /* Begun, recorded, decided and finished in one batch. */
        t = txn("bd", CAT_KIND_SNAPSHOT, "web", 0);
        assert_int_equal(cat_batch_begin(f->c, &err), 0);
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(cat_put_member(f->c, "bd", &m, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "bd", 1, NULL, &err), 0);
        assert_int_equal(cat_txn_finish(f->c, "bd", &err), 0);
        assert_int_equal(cat_batch_end(f->c, &err), 0);
        assert_int_equal(cat_txn_get(f->c, "bd", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_DONE);
        assert_true(got.committed);
        assert_int_equal(cat_members(f->c, "bd", &mv, &n, &err), 0);
        assert_int_equal(n, 1);
        free(mv);
}

/* cat_cut_read gives what the four reads give: the header, the members in
 * freeze order, the images and the audit rows; an unknown txid is -ENOENT.
 * On etcd it is one request. */
static void test_cut_read(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("cr", CAT_KIND_SNAPSHOT, "web", 0);
        struct cat_member m = {.agent = "host-b", .vm = "db1", .tier = 1};
        struct cat_image im = {.agent = "host-a", .vm = "web1", .disk = "vdb", .before = "/i/1", .after = "/i/2"};
        struct cat_audit a = {.dir = CAT_SENT, .txid = "cr", .agent = "host-a", .step = "FREEZE", .at_us = 10};
        struct cat_cut c;
        unsigned long long before;
        lserr err = {0};

        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(cat_put_member(f->c, "cr", &m, &err), 0);
        m = (struct cat_member){.agent = "host-a", .vm = "web1", .tier = 0};
        assert_int_equal(cat_put_member(f->c, "cr", &m, &err), 0);
        assert_int_equal(cat_put_image(f->c, "cr", &im, &err), 0);
        snprintf(im.disk, sizeof(im.disk), "vda");
        assert_int_equal(cat_put_image(f->c, "cr", &im, &err), 0);
        assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        a.at_us = 11;
        a.dir = CAT_RECEIVED;
        assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "cr", 0, "no", &err), 0);
        before = requests(f);
        assert_int_equal(cat_cut_read(f->c, "cr", 100, &c, &err), 0);
#ifdef CAT_TEST_ETCD
        assert_int_equal(requests(f) - before, 1);
#else
        (void)before;
#endif
        assert_string_equal(c.t.txid, "cr");
        assert_string_equal(c.t.reason, "no");
        assert_int_equal(c.nm, 2);
        assert_string_equal(c.m[0].vm, "web1");
        assert_string_equal(c.m[1].vm, "db1");
        assert_int_equal(c.ni, 2);
        assert_string_equal(c.im[0].disk, "vda");
        assert_string_equal(c.im[1].disk, "vdb");
        assert_int_equal(c.na, 2);
        assert_int_equal(c.au[0].at_us, 10);
        assert_int_equal(c.au[1].dir, CAT_RECEIVED);
        cat_cut_free(&c);
        assert_int_equal(cat_cut_read(f->c, "cr", 1, &c, &err), 0);
        assert_int_equal(c.na, 1);
        cat_cut_free(&c);
        assert_int_equal(cat_cut_read(f->c, "none", 100, &c, &err), -ENOENT);
        assert_int_equal(c.nm, 0);
        assert_null(c.m);
}

#ifdef CAT_TEST_ETCD
/* ---- etcd only --------------------------------------------------------------------- */

static int64_t raw_create_revision(const char *key)
{
        struct etcd_kv *kvs = NULL;
        size_t n = 0;
        lserr err = {0};
        int64_t rev;

        if (etcd_range(raw(), key, 0, 0, &kvs, &n, NULL, NULL, &err) < 0)
                fail_msg("%s", err.msg);
        assert_int_equal(n, 1);
        rev = kvs[0].create_revision;
        etcd_kvs_free(kvs, n);
        return rev;
}

/* After cat_set_fence every write holds only while the leader key keeps its
 * epoch: once another lockstepd's key replaced it, each write (a batch's at
 * its end) fails with -ESTALE naming the epoch, and nothing is written; with
 * the new epoch writes go again. */
static void test_etcd_fence(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("t1", CAT_KIND_SNAPSHOT, "web", 0), t2 = txn("t2", CAT_KIND_SNAPSHOT, "web", 0), got;
        struct cat_member m = {.agent = "host-a", .vm = "web1"};
        struct cat_audit a = {.txid = "t1", .agent = "host-a", .step = "FREEZE", .dir = CAT_SENT};
        struct cat_event ev = {.kind = "cut"};
        const char *one[] = {"web1@host-a"};
        char leader[128], want[64];
        int64_t epoch, epoch2;
        long long keys;
        lserr err = {0};

        snprintf(leader, sizeof(leader), "/test-leader%s", f->path);
        assert_int_equal(etcd_put(raw(), leader, "a", 1, 0, &err), 0);
        epoch = raw_create_revision(leader);
        assert_int_equal(cat_set_fence(f->c, leader, (uint64_t)epoch, &err), 0);
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(cat_put_member(f->c, "t1", &m, &err), 0);

        /* Another lockstepd leads: the key went and came back as its own. */
        assert_int_equal(etcd_delete(raw(), leader, 0, NULL, &err), 0);
        assert_int_equal(etcd_put(raw(), leader, "b", 1, 0, &err), 0);
        epoch2 = raw_create_revision(leader);
        assert_true(epoch2 > epoch);
        keys = count_keys(f, "");
        snprintf(want, sizeof(want), "not %lld", (long long)epoch);
        assert_int_equal(cat_txn_begin(f->c, &t2, &err), -ESTALE);
        assert_non_null(strstr(err.msg, want));
        assert_non_null(strstr(err.msg, "nothing written"));
        lserr_clear(&err);
        assert_int_equal(cat_txn_decide(f->c, "t1", 1, NULL, &err), -ESTALE);
        lserr_clear(&err);
        assert_int_equal(cat_put_member(f->c, "t1", &m, &err), -ESTALE);
        lserr_clear(&err);
        assert_int_equal(cat_event_add(f->c, &ev, NULL, &err), -ESTALE);
        lserr_clear(&err);
        assert_int_equal(cat_group_put(f->c, "web", "quiesce", one, 1, &err), -ESTALE);
        lserr_clear(&err);
        assert_int_equal(cat_batch_begin(f->c, &err), 0);
        for (int i = 0; i < 300; i++) {
                snprintf(m.vm, sizeof(m.vm), "vm%d", i);
                assert_int_equal(cat_put_member(f->c, "t1", &m, &err), 0);
                assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        }
        assert_int_equal(cat_txn_decide(f->c, "t1", 0, "late", &err), 0);
        assert_int_equal(cat_batch_end(f->c, &err), -ESTALE);
        assert_non_null(strstr(err.msg, want));
        lserr_clear(&err);
        assert_int_equal(count_keys(f, ""), keys);
        assert_int_equal(cat_txn_get(f->c, "t2", &got, NULL), -ENOENT);
        assert_int_equal(cat_txn_get(f->c, "t1", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_STARTED);

        /* As the new leader it writes again. */
        assert_int_equal(cat_set_fence(f->c, leader, (uint64_t)epoch2, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "t1", 1, NULL, &err), 0);
        /* A fence names a key and an epoch; NULL lifts it. */
        assert_int_equal(cat_set_fence(f->c, "", 1, &err), -EINVAL);
        lserr_clear(&err);
        assert_int_equal(cat_set_fence(f->c, NULL, 0, &err), 0);
        assert_int_equal(etcd_delete(raw(), leader, 0, NULL, &err), 0);
        assert_int_equal(cat_txn_finish(f->c, "t1", &err), 0);
}

static double ms_since(const struct timespec *t0)
{
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* A 1,000-member cut's records in one batch (far over etcd's 128 operations
 * per transaction): written at its end, decision last, and read back whole. */
static void test_etcd_big_batch(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("big", CAT_KIND_SNAPSHOT, "fleet", 0), got;
        struct cat_member m = {.code = 0}, *mv = NULL;
        struct cat_image im = {.disk = "vda"}, *iv = NULL;
        struct cat_audit a = {.txid = "big", .step = "FREEZE", .dir = CAT_SENT};
        struct timespec t0;
        size_t n = 0;
        lserr err = {0};

        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(cat_batch_begin(f->c, &err), 0);
        for (int i = 0; i < 1000; i++) {
                snprintf(m.agent, sizeof(m.agent), "host-%02d", i % 50);
                snprintf(m.vm, sizeof(m.vm), "vm%04d", i);
                m.tier = (unsigned)(i % 3);
                m.freeze_us = 1000 + (uint64_t)i;
                m.message = "ok";
                assert_int_equal(cat_put_member(f->c, "big", &m, &err), 0);
                memcpy(im.agent, m.agent, sizeof(im.agent));
                memcpy(im.vm, m.vm, sizeof(im.vm));
                char before[128], after[128];
                snprintf(before, sizeof(before), "/var/lib/libvirt/images/%s-vda.qcow2", m.vm);
                snprintf(after, sizeof(after), "/var/lib/libvirt/images/%s-vda.big.qcow2", m.vm);
                im.before = before;
                im.after = after;
                assert_int_equal(cat_put_image(f->c, "big", &im, &err), 0);
        }
        for (int i = 0; i < 100; i++) {
                snprintf(a.agent, sizeof(a.agent), "host-%02d", i / 2);
                a.dir = i % 2 ? CAT_RECEIVED : CAT_SENT;
                assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        }
        assert_int_equal(cat_txn_decide(f->c, "big", 1, NULL, &err), 0);
        assert_int_equal(cat_batch_end(f->c, &err), 0);
        print_message("a 1,000-member cut's records on etcd (1,000 members, 1,000 images, 100 audit rows and the "
                      "decision, one batch): %.0f ms\n", ms_since(&t0));

        assert_int_equal(cat_members(f->c, "big", &mv, &n, &err), 0);
        assert_int_equal(n, 1000);
        for (size_t i = 1; i < n; i++)
                assert_true(mv[i - 1].tier < mv[i].tier ||
                            (mv[i - 1].tier == mv[i].tier && strcmp(mv[i - 1].agent, mv[i].agent) <= 0));
        assert_string_equal(mv[0].vm, "vm0000");
        assert_int_equal(mv[0].freeze_us, 1000);
        free(mv);
        assert_int_equal(cat_images(f->c, "big", &iv, &n, &err), 0);
        assert_int_equal(n, 1000);
        free(iv);
        assert_int_equal(cat_txn_get(f->c, "big", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_COMMIT);
        assert_int_equal(count_keys(f, "mem/big/"), 1000);
        assert_int_equal(count_keys(f, "vmimg/"), 1000);
        assert_int_equal(count_keys(f, "audit/id/"), 100);
        assert_int_equal(cat_image_users(f->c, "host-07", "vm0007", "/var/lib/libvirt/images/vm0007-vda.qcow2", "",
                                         &err), 1);
}

/* A header this catalog wrote is not read again before its next write
 * (decide, finish); when another writer changed it meanwhile, the write's
 * compare fails, the header is read again and nothing of the other's is
 * lost. */
static void test_etcd_cached_header_guarded(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("hc", CAT_KIND_SNAPSHOT, "web", 0), got;
        struct catalog *other = NULL;
        unsigned long long before;
        lserr err = {0};

        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        before = requests(f);
        assert_int_equal(cat_txn_decide(f->c, "hc", 1, NULL, &err), 0);
        assert_int_equal(requests(f) - before, 1);
        assert_int_equal(open_catalog(f, &other, &err), 0);
        assert_int_equal(cat_cut_set_status(other, "hc", "deleted", "by the other", &err), 0);
        assert_int_equal(cat_txn_finish(f->c, "hc", &err), 0);
        assert_int_equal(cat_txn_get(other, "hc", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_DONE);
        assert_string_equal(got.cut_status, "deleted");
        assert_string_equal(got.cut_status_reason, "by the other");
        cat_close(other);
}

/* A cut of more members than one page (CE_PAGE) is read by parts, whole. */
static void test_etcd_cut_read_paged(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("pg", CAT_KIND_SNAPSHOT, "fleet", 0);
        struct cat_member m = {.code = 0};
        struct cat_cut c;
        lserr err = {0};

        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(cat_batch_begin(f->c, &err), 0);
        for (int i = 0; i < CE_PAGE + 5; i++) {
                snprintf(m.agent, sizeof(m.agent), "host-%02d", i % 50);
                snprintf(m.vm, sizeof(m.vm), "vm%05d", i);
                assert_int_equal(cat_put_member(f->c, "pg", &m, &err), 0);
        }
        assert_int_equal(cat_batch_end(f->c, &err), 0);
        assert_int_equal(cat_cut_read(f->c, "pg", 100, &c, &err), 0);
        assert_int_equal(c.nm, CE_PAGE + 5);
        assert_string_equal(c.t.txid, "pg");
        cat_cut_free(&c);
}

struct racer {
        struct catalog *c;
        pthread_barrier_t *go;
        char txid[32];
        int commit, r;
};

static void *race(void *arg)
{
        struct racer *w = arg;
        lserr err = {0};

        pthread_barrier_wait(w->go);
        w->r = cat_txn_decide(w->c, w->txid, w->commit, w->commit ? NULL : "lost the race", &err);
        return NULL;
}

/* Two lockstepd on one prefix decide a transaction the two ways at once: one
 * decision stands, the other is refused with -EBUSY. */
static void test_etcd_decide_race(void **state)
{
        struct fixture *f = *state;
        struct catalog *other = NULL;
        int wins[2] = {0, 0};
        lserr err = {0};

        assert_int_equal(open_catalog(f, &other, &err), 0);
        for (int i = 0; i < 20; i++) {
                struct racer a = {.c = f->c, .commit = 1}, b = {.c = other, .commit = 0};
                struct cat_txn t, got;
                pthread_barrier_t go;
                pthread_t ta, tb;

                snprintf(a.txid, sizeof(a.txid), "race-%d", i);
                memcpy(b.txid, a.txid, sizeof(b.txid));
                t = txn(a.txid, CAT_KIND_SNAPSHOT, "web", 0);
                assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
                assert_int_equal(pthread_barrier_init(&go, NULL, 2), 0);
                a.go = b.go = &go;
                assert_int_equal(pthread_create(&ta, NULL, race, &a), 0);
                assert_int_equal(pthread_create(&tb, NULL, race, &b), 0);
                pthread_join(ta, NULL);
                pthread_join(tb, NULL);
                pthread_barrier_destroy(&go);
                assert_true((a.r == 0 && b.r == -EBUSY) || (a.r == -EBUSY && b.r == 0));
                assert_int_equal(cat_txn_get(other, a.txid, &got, &err), 0);
                assert_int_equal(got.state, a.r == 0 ? CAT_TXN_COMMIT : CAT_TXN_ABORT);
                wins[a.r == 0]++;
        }
        print_message("decide race: commit won %d, abort won %d of 20\n", wins[1], wins[0]);
        cat_close(other);
}

/* The trims keep the store bounded: the keys under the prefix stay at what
 * the catalog keeps, and etcd's history before them is compacted away. */
static void test_etcd_trims_compact(void **state)
{
        struct fixture *f = *state;
        struct cat_event ev = {.kind = "cut"}, *got = NULL;
        struct etcd_status st;
        long long most = 0;
        size_t n = 0;
        char id[16];
        lserr err = {0};

        for (int i = 1; i <= 500; i++) {
                snprintf(ev.message, sizeof(ev.message), "event %d", i);
                assert_int_equal(cat_event_add(f->c, &ev, NULL, &err), 0);
                if (i % 50)
                        continue;
                assert_int_equal(cat_events_trim(f->c, 50, &err), i == 50 ? 0 : 50);
                if (count_keys(f, "") > most)
                        most = count_keys(f, "");
        }
        /* The layout's key, the counter and 50 events, at every trim. */
        assert_int_equal(most, 52);
        assert_int_equal(count_keys(f, "event/id/"), 50);
        assert_int_equal(cat_events(f->c, 0, 100, 0, &got, &n, &err), 0);
        assert_int_equal(n, 50);
        assert_int_equal(got[0].id, 451);
        assert_string_equal(got[49].message, "event 500");
        free(got);
        assert_int_equal(etcd_status(raw(), &st, &err), 0);
        assert_true(etcd_compact(raw(), st.revision - 1, &err) < 0);
        assert_non_null(strstr(err.msg, "compacted"));
        lserr_clear(&err);

        for (int i = 0; i < 60; i++) {
                snprintf(id, sizeof(id), "h-%02d", i);
                done_txn(f, id, CAT_KIND_DELETE, 1000 + i, 1);
        }
        assert_int_equal(cat_history_trim(f->c, 5, ANY_MEMBERS, 10, &err), 55);
        assert_int_equal(count_keys(f, "txn/"), 5);
        assert_int_equal(count_keys(f, "dec/"), 5);
        assert_int_equal(count_keys(f, "mem/"), 5);
        assert_int_equal(count_keys(f, "img/"), 5);
        assert_int_equal(count_keys(f, "vmimg/"), 5);
        assert_int_equal(count_keys(f, "audit/id/"), 10);
        assert_int_equal(count_keys(f, "audit/tx/"), 10);
        assert_int_equal(count_keys(f, "audit/at/"), 10);
        assert_int_equal(etcd_status(raw(), &st, &err), 0);
        assert_true(etcd_compact(raw(), st.revision - 1, &err) < 0);
        assert_non_null(strstr(err.msg, "compacted"));
        print_message("etcd after the trims: revision %lld, database %lld bytes, %lld keys under the prefix\n",
                      (long long)st.revision, (long long)st.db_size, count_keys(f, ""));
        lserr_clear(&err);
        assert_int_equal(cat_etcd_defragment(f->c, &err), 0);
}

/* Long listings: one transaction's audit read in pages (over etcd's ranges of
 * 2,048 keys here), in time order with ties in the order added; the newest
 * rows across id windows and the gaps a history trim leaves; events across a
 * window's edge. */
static void test_etcd_long_listings(void **state)
{
        struct fixture *f = *state;
        struct cat_audit a = {.txid = "p", .agent = "host-a", .step = "STATUS", .dir = CAT_SENT}, *v = NULL;
        struct cat_event ev = {.kind = "cut"}, *got = NULL;
        size_t n = 0;
        long long id = 0;
        lserr err = {0};

        assert_int_equal(cat_batch_begin(f->c, &err), 0);
        for (int i = 0; i < 2500; i++) {
                /* Two rows per microsecond, added newest first by time. */
                a.at_us = 100000 - i / 2;
                a.code = i;
                assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        }
        assert_int_equal(cat_batch_end(f->c, &err), 0);
        assert_int_equal(cat_audit_list(f->c, "p", SIZE_MAX, &v, &n, &err), 0);
        assert_int_equal(n, 2500);
        for (size_t i = 1; i < n; i++)
                assert_true(v[i - 1].at_us < v[i].at_us ||
                            (v[i - 1].at_us == v[i].at_us && v[i - 1].code < v[i].code));
        assert_int_equal(v[0].code, 2498);
        free(v);
        assert_int_equal(cat_audit_list(f->c, "p", 2100, &v, &n, &err), 0);
        assert_int_equal(n, 2100);
        assert_int_equal(v[2099].at_us, 100000 - 1249 + 1049);
        free(v);
        assert_int_equal(cat_audit_list(f->c, NULL, 3, &v, &n, &err), 0);
        assert_int_equal(n, 3);
        assert_int_equal(v[0].code, 2498);
        free(v);
        /* The newest 1,200 by id, across two id windows, oldest first by time. */
        assert_int_equal(cat_audit_recent(f->c, 1200, &v, &n, &err), 0);
        assert_int_equal(n, 1200);
        assert_int_equal(v[0].code, 2498);
        assert_int_equal(v[1199].code, 1301);
        free(v);
        /* A transaction's rows trimmed out of the middle of the ids. */
        done_txn(f, "gone", CAT_KIND_DELETE, 5, 1);
        for (int i = 0; i < 3; i++)
                assert_int_equal(cat_audit_add(f->c, &a, &err), 0);
        assert_int_equal(cat_history_trim(f->c, 0, ANY_MEMBERS, 1000000, &err), 1);
        assert_int_equal(cat_audit_recent(f->c, 5, &v, &n, &err), 0);
        assert_int_equal(n, 5);
        for (size_t i = 0; i < n; i++)
                assert_string_equal(v[i].txid, "p");
        free(v);

        for (int i = 1; i <= 1050; i++) {
                snprintf(ev.message, sizeof(ev.message), "event %d", i);
                assert_int_equal(cat_event_add(f->c, &ev, &id, &err), 0);
        }
        assert_int_equal(id, 1050);
        assert_int_equal(cat_events(f->c, 990, 20, 0, &got, &n, &err), 0);
        assert_int_equal(n, 20);
        assert_int_equal(got[0].id, 991);
        assert_int_equal(got[19].id, 1010);
        free(got);
        assert_int_equal(cat_events_trim(f->c, 30, &err), 1020);
        assert_int_equal(cat_events(f->c, 0, 10, 0, &got, &n, &err), 0);
        assert_int_equal(n, 10);
        assert_int_equal(got[0].id, 1021);
        free(got);
        assert_int_equal(cat_events(f->c, 1049, 10, 1, &got, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(got[0].message, "event 1050");
        free(got);
}

/* A prefix that does not end in '/', a layout written by a newer program, a
 * key that is not a catalog's and an etcd that does not answer are refused,
 * *ret untouched. */
/* A header written before transactions counted their members (no "members"
 * field) is read as 0 members, not refused as malformed. */
static void test_etcd_header_without_members(void **state)
{
        struct cat_txn t = txn("h1", CAT_KIND_SNAPSHOT, "web", 5);
        struct ce_hdr h;
        char *text = NULL, *at, *end;
        size_t len = 0;

        (void)state;
        t.members = 7;
        assert_int_equal(ce_hdr_encode(&t, &text, &len), 0);
        assert_int_equal(ce_hdr_decode(text, len, &h), 0);
        assert_int_equal(h.t.members, 7);
        at = strstr(text, "\"members\"");
        assert_non_null(at);
        end = at + strcspn(at, ",}");
        if (*end == ',')
                end++;
        else if (at[-1] == ',')
                at--;
        memmove(at, end, strlen(end) + 1);
        assert_null(strstr(text, "members"));
        assert_int_equal(ce_hdr_decode(text, strlen(text), &h), 0);
        assert_int_equal(h.t.members, 0);
        assert_string_equal(h.t.txid, "h1");
        free(text);
}

static void test_etcd_newer_layout_refused(void **state)
{
        struct fixture *f = *state;
        struct catalog *c = (struct catalog *)0x1;
        const char *eps[] = {"http://127.0.0.1:1"};
        struct etcd_opts eo = {.endpoints = eps, .n_endpoints = 1, .timeout_ms = 500};
        struct cat_etcd_opts o = {.etcd = &eo, .prefix = "/no-slash"};
        lserr err = {0};

        assert_int_equal(cat_open_etcd(&o, &c, &err), -EINVAL);
        lserr_clear(&err);
        o.prefix = f->path;
        assert_true(cat_open_etcd(&o, &c, &err) < 0);
        assert_non_null(strstr(err.msg, f->path));
        lserr_clear(&err);
        f->c = cat_close(f->c);
        raw_put(f, "meta", "{\"layout\":99}");
        assert_int_equal(open_catalog(f, &c, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "99"));
        assert_non_null(strstr(err.msg, "newer"));
        lserr_clear(&err);
        raw_put(f, "meta", "not json");
        assert_int_equal(open_catalog(f, &c, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "not a lockstep catalog"));
        assert_ptr_equal(c, (struct catalog *)0x1);
        assert_null(cat_close(NULL));
}
#endif


int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_open_reopen_keeps_data, setup, teardown),
                cmocka_unit_test_setup_teardown(test_schema_version_and_pragmas, setup, teardown),
                cmocka_unit_test_setup_teardown(test_newer_or_foreign_file_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lifecycle_and_refused_transitions, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_input_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_reason_cut_on_character, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_stored_value_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unresolved_oldest_first, setup, teardown),
                cmocka_unit_test_setup_teardown(test_members_and_images_upsert, setup, teardown),
                cmocka_unit_test_setup_teardown(test_member_message_truncated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cuts_by_group_newest_first, setup, teardown),
                cmocka_unit_test_setup_teardown(test_agents_upsert, setup, teardown),
                cmocka_unit_test_setup_teardown(test_group_put_replaces, setup, teardown),
                cmocka_unit_test_setup_teardown(test_audit_list_with_limit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_audit_control_peer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_audit_migration_keeps_rows, setup, teardown),
                cmocka_unit_test_setup_teardown(test_members_migration_counts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_batch_one_transaction, setup, teardown),
                cmocka_unit_test_setup_teardown(test_decision_in_a_batch, setup, teardown),
                cmocka_unit_test_setup_teardown(test_decision_visible_to_second_connection, setup, teardown),
                cmocka_unit_test_setup_teardown(test_decision_survives_dying_process, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrent_threads, setup, teardown),
                cmocka_unit_test_setup_teardown(test_events_schedules_reverts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_branch_drops_cuts_on_its_images, setup, teardown),
                cmocka_unit_test_setup_teardown(test_history_trim_keeps_what_lives, setup, teardown),
                cmocka_unit_test_setup_teardown(test_history_trim_by_members, setup, teardown),
                cmocka_unit_test_setup_teardown(test_status_reasons_cut_on_character, setup, teardown),
                cmocka_unit_test_setup_teardown(test_statement_helper, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failures_release_lock_and_transaction, setup, teardown),
                cmocka_unit_test_setup_teardown(test_batch_rewrite_keeps_last, setup, teardown),
                cmocka_unit_test_setup_teardown(test_batch_begin_with_records, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cut_read, setup, teardown),
#ifdef CAT_TEST_ETCD
                cmocka_unit_test_setup_teardown(test_etcd_cached_header_guarded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_etcd_cut_read_paged, setup, teardown),
                cmocka_unit_test_setup_teardown(test_etcd_fence, setup, teardown),
                cmocka_unit_test_setup_teardown(test_etcd_big_batch, setup, teardown),
                cmocka_unit_test_setup_teardown(test_etcd_decide_race, setup, teardown),
                cmocka_unit_test_setup_teardown(test_etcd_trims_compact, setup, teardown),
                cmocka_unit_test_setup_teardown(test_etcd_long_listings, setup, teardown),
                cmocka_unit_test_setup_teardown(test_etcd_newer_layout_refused, setup, teardown),
                cmocka_unit_test(test_etcd_header_without_members),
#endif
        };
#ifdef CAT_TEST_ETCD
        int r;

        if (tu_etcd_start(&D) != 0) {
                printf("test_catalog_etcd: skipped: %s not installed (Debian: apt-get install etcd-server)\n",
                       TU_ETCD_BIN);
                return 0;
        }
        r = cmocka_run_group_tests(tests, NULL, NULL);
        etcd_close(raw_etcd);
        tu_etcd_stop(&D);
        return r;
#else
        return cmocka_run_group_tests(tests, NULL, NULL);
#endif
}
