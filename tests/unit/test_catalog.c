/* test_catalog: the coordinator's SQLite catalog: schema versioning, the decision
 * log's transitions, durability across connections and a dying process, and
 * concurrent use. */
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

struct fixture {
        char *dir;
        char *path;
        struct catalog *c;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        lserr err = {0};

        assert_non_null(f);
        f->dir = tu_mkdtemp();
        assert_true(asprintf(&f->path, "%s/catalog.db", f->dir) > 0);
        if (cat_open(f->path, &f->c, &err) < 0)
                fail_msg("%s", err.msg);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        cat_close(f->c);
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

static struct cat_txn txn(const char *txid, enum cat_kind kind, const char *group, long long started_us)
{
        struct cat_txn t = {.kind = kind, .started_us = started_us, .lease_ms = 30000};

        snprintf(t.txid, sizeof(t.txid), "%s", txid);
        snprintf(t.group, sizeof(t.group), "%s", group);
        snprintf(t.name, sizeof(t.name), "snap-%s", txid);
        snprintf(t.mode, sizeof(t.mode), "quiesce");
        return t;
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
        /* Nobody but the owner reads what was sent where. */
        assert_int_equal(stat(f->path, &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0600);
        assert_int_equal(cat_open(f->path, &f->c, &err), 0);
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
        raw_exec(f->path, "PRAGMA ignore_check_constraints = ON;"
                          "INSERT INTO txns (txid, kind, group_name, name, mode, state, started_us, lease_ms)"
                          " VALUES ('t9', 'migrate', 'web', 'n', 'pause', 'started', 1, 1)");
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
        assert_memory_equal(&mv[1], &m, sizeof(m));
        free(mv);

        /* Same key: replaced, not added. Whole structs compare, so no stale tail. */
        m.code = 0;
        memset(m.message, 0, sizeof(m.message));
        snprintf(m.message, sizeof(m.message), "ok");
        m.thaw_us = 77;
        assert_int_equal(cat_put_member(f->c, "t1", &m, &err), 0);
        assert_int_equal(cat_members(f->c, "t1", &mv, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_memory_equal(&mv[1], &m, sizeof(m));
        free(mv);

        assert_int_equal(cat_put_image(f->c, "t1", &im2, &err), 0);
        assert_int_equal(cat_put_image(f->c, "t1", &im, &err), 0);
        memset(im.after, 0, sizeof(im.after));
        snprintf(im.after, sizeof(im.after), "/v/web1.snap-t1-retry.qcow2");
        assert_int_equal(cat_put_image(f->c, "t1", &im, &err), 0);
        assert_int_equal(cat_images(f->c, "t1", &iv, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_memory_equal(&iv[0], &im, sizeof(im));
        assert_memory_equal(&iv[1], &im2, sizeof(im2));
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

        /* A message that fills its field without a terminator is cut, not read past. */
        memset(m.message, 'm', sizeof(m.message));
        assert_int_equal(cat_txn_begin(f->c, &t, &err), 0);
        assert_int_equal(cat_put_member(f->c, "t1", &m, &err), 0);
        assert_int_equal(cat_members(f->c, "t1", &mv, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_int_equal(strlen(mv[0].message), sizeof(m.message) - 1);
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
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM group_members WHERE group_name = 'web'"), 3);
        assert_int_equal(cat_group_put(f->c, "web", "pause", one, 1, &err), 0);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM group_members WHERE group_name = 'web'"), 1);
        assert_int_equal(raw_int(f->path, "SELECT mode = 'pause' FROM groups WHERE name = 'web'"), 1);

        assert_int_equal(cat_group_put(f->c, "web", "quiesce", bad, 1, &err), -EINVAL);
        lserr_clear(&err);
        /* A refused replacement leaves the old list whole. */
        assert_int_equal(cat_group_put(f->c, "web", "quiesce", twice, 2, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "listed twice"));
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM group_members WHERE group_name = 'web'"), 1);
        assert_int_equal(raw_int(f->path, "SELECT mode = 'pause' FROM groups WHERE name = 'web'"), 1);
        lserr_clear(&err);
        /* An empty group is a group. */
        assert_int_equal(cat_group_put(f->c, "empty", "memory", NULL, 0, &err), 0);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM groups"), 2);
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
                snprintf(a.detail, sizeof(a.detail), "row %d", i);
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
        assert_int_equal(raw_int(f->path, "SELECT peer_uid FROM audit WHERE dir = 'control' ORDER BY id LIMIT 1"), 1000);
        assert_int_equal(raw_int(f->path, "SELECT peer_uid FROM audit WHERE dir = 'sent'"), -1);

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
                 "DELETE FROM schema_version WHERE version = 5;");
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
        assert_int_equal(cat_open(f->path, &other, &err), 0);
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
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit"), 0);
        assert_int_equal(cat_batch_end(f->c, &err), 0);
        assert_int_equal(cat_members(other, "t1", &mv, &n, &err), 0);
        assert_int_equal(n, 2000);
        free(mv);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit"), 2000);
        /* Outside a batch again: each write is its own, seen at once. */
        snprintf(m.vm, sizeof(m.vm), "after");
        assert_int_equal(cat_put_member(f->c, "t1", &m, &err), 0);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM members WHERE vm = 'after'"), 1);
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
        assert_int_equal(cat_open(f->path, &other, &err), 0);
        assert_int_equal(cat_batch_begin(f->c, &err), 0);
        assert_int_equal(cat_put_member(f->c, "t1", &m, &err), 0);
        assert_int_equal(cat_txn_decide(f->c, "t1", 1, NULL, &err), 0);
        assert_int_equal(cat_txn_get(other, "t1", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_STARTED);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM members WHERE vm = 'web1'"), 0);
        assert_int_equal(cat_txn_finish(f->c, "t1", &err), 0);
        assert_int_equal(cat_batch_end(f->c, &err), 0);
        assert_int_equal(cat_txn_get(other, "t1", &got, &err), 0);
        assert_int_equal(got.state, CAT_TXN_DONE);
        assert_true(got.committed);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM members WHERE vm = 'web1'"), 1);
        cat_close(other);
}

static void test_decision_visible_to_second_connection(void **state)
{
        struct fixture *f = *state;
        struct cat_txn t = txn("t1", CAT_KIND_SNAPSHOT, "web", 0), got;
        struct catalog *other = NULL;
        lserr err = {0};

        assert_int_equal(cat_open(f->path, &other, &err), 0);
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

                if (cat_open(f->path, &c, NULL) < 0 || cat_txn_begin(c, &t, NULL) < 0 ||
                    cat_txn_decide(c, "t1", 1, NULL, NULL) < 0)
                        _exit(1);
                /* No close, no checkpoint: the decision lives only in the WAL. */
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(cat_open(f->path, &f->c, &err), 0);
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
        assert_int_equal(cat_open(f->path, &other, &err), 0);
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
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM members"), THREADS * PER_THREAD);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit"), THREADS * PER_THREAD);
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
        assert_int_equal(cat_open(f->path, &f->c, &err), 0);
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
        snprintf(im.before, sizeof(im.before), "/img/web1-vda.qcow2");
        snprintf(im.after, sizeof(im.after), "/img/web1-vda.cut-X.qcow2");
        assert_int_equal(cat_put_image(f->c, "cut-X", &im, &err), 0);
        snprintf(im.before, sizeof(im.before), "/img/web1-vda.cut-X.qcow2");
        snprintf(im.after, sizeof(im.after), "/img/web1-vda.cut-Y.qcow2");
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
        snprintf(im.before, sizeof(im.before), "/img/%s", txid);
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
        assert_int_equal(cat_history_trim(f->c, 30, 100000, &err), 91);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM txns"), 30 + 3);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM members"), 30 + 2);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM images"), 30 + 2);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit"), 2 * (30 + 2));
        assert_int_equal(cat_txn_get(f->c, "live-cut", &got, &err), 0);
        assert_int_equal(cat_txn_get(f->c, "live-rev", &got, &err), 0);
        assert_int_equal(cat_txn_get(f->c, "open", &got, &err), 0);
        assert_int_equal(cat_txn_get(f->c, "undone-rev", &got, NULL), -ENOENT);
        assert_int_equal(cat_txn_get(f->c, "cut-00", &got, NULL), -ENOENT);
        assert_int_equal(cat_txn_get(f->c, "ab-39", &got, &err), 0); /* the newest history stays */
        /* Again: nothing more to do. The audit cap keeps the newest rows. */
        assert_int_equal(cat_history_trim(f->c, 30, 100000, &err), 0);
        assert_int_equal(cat_history_trim(f->c, 30, 10, &err), 0);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit"), 10);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit WHERE txid = 'ab-39'"), 2);
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
        assert_int_equal(pthread_mutex_trylock(&f->c->lock), 0);
        pthread_mutex_unlock(&f->c->lock);
        assert_true(sqlite3_get_autocommit(f->c->db));
        /* The refused group left nothing behind: its upsert was rolled back too. */
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM groups"), 0);
}

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
                cmocka_unit_test_setup_teardown(test_batch_one_transaction, setup, teardown),
                cmocka_unit_test_setup_teardown(test_decision_in_a_batch, setup, teardown),
                cmocka_unit_test_setup_teardown(test_decision_visible_to_second_connection, setup, teardown),
                cmocka_unit_test_setup_teardown(test_decision_survives_dying_process, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrent_threads, setup, teardown),
                cmocka_unit_test_setup_teardown(test_events_schedules_reverts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_branch_drops_cuts_on_its_images, setup, teardown),
                cmocka_unit_test_setup_teardown(test_history_trim_keeps_what_lives, setup, teardown),
                cmocka_unit_test_setup_teardown(test_status_reasons_cut_on_character, setup, teardown),
                cmocka_unit_test_setup_teardown(test_statement_helper, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failures_release_lock_and_transaction, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
