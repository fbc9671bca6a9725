/* test_journal: a journal record survives write and read unchanged, and a file
 * cut short, altered, oversized, empty or missing is refused with a clear
 * error, never read as a shorter record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fsutil.h"
#include "hv.h"
#include "journal.h"
#include "testutil.h"

/* A revert-free cut with two members, one with two disks, and a stored reply. */
struct rec {
        Lockstep__JournalTxn t;
        Lockstep__JournalMember jm[2], *pjm[2];
        Lockstep__Member m[2];
        Lockstep__DiskImage d[3], *pd0[2], *pd1[1];
        Lockstep__Timings tm;
        Lockstep__JournalReply jr, *pjr[1];
        uint8_t reply[5];
};

static void rec_init(struct rec *r)
{
        memset(r, 0, sizeof(*r));
        lockstep__journal_txn__init(&r->t);
        r->t.version = JOURNAL_VERSION;
        r->t.txid = "tx-0001";
        r->t.snapshot = "nightly-1";
        r->t.mode = LOCKSTEP__MODE__MODE_PAUSE;
        r->t.state = LOCKSTEP__JOURNAL_STATE__J_SNAPPED;
        r->t.lease_deadline_us = 1800000000000000LL;
        r->t.updated_us = 1800000000000001LL;
        r->t.decided = 1;
        r->t.cut_txid = "tx-0000";
        for (int i = 0; i < 2; i++) {
                lockstep__journal_member__init(&r->jm[i]);
                lockstep__member__init(&r->m[i]);
                r->jm[i].member = &r->m[i];
                r->pjm[i] = &r->jm[i];
        }
        for (int i = 0; i < 3; i++)
                lockstep__disk_image__init(&r->d[i]);
        r->m[0].vm = "web1";
        r->m[1].vm = "db1";
        r->m[1].tier = 2;
        r->jm[0].quiesced = 1;
        r->jm[1].paused = 1;
        r->jm[1].message = "db1@host-a: freeze: guest agent not connected";
        r->jm[1].code = LOCKSTEP__ERROR_CODE__E_NO_GUEST_AGENT;
        r->d[0].disk = "vda";
        r->d[0].before = "/img/web1-vda.qcow2";
        r->d[0].after = "/img/web1-vda.tx-0001.qcow2";
        r->d[1].disk = "vdb";
        r->d[1].before = "/img/web1-vdb.qcow2";
        r->d[2].disk = "vda";
        r->d[2].before = "/img/db1-vda.qcow2";
        r->pd0[0] = &r->d[0];
        r->pd0[1] = &r->d[1];
        r->pd1[0] = &r->d[2];
        r->jm[0].disks = r->pd0;
        r->jm[0].n_disks = 2;
        r->jm[1].disks = r->pd1;
        r->jm[1].n_disks = 1;
        lockstep__timings__init(&r->tm);
        r->tm.freeze_us = 1234;
        r->jm[0].timings = &r->tm;
        r->t.members = r->pjm;
        r->t.n_members = 2;
        lockstep__journal_reply__init(&r->jr);
        memcpy(r->reply, "\x08\x01\x12\x01x", 5);
        r->jr.step = LOCKSTEP__STEP__STEP_FREEZE;
        r->jr.reply.data = r->reply;
        r->jr.reply.len = sizeof(r->reply);
        r->pjr[0] = &r->jr;
        r->t.replies = r->pjr;
        r->t.n_replies = 1;
}

/* The bytes journal_write puts in the file; *ret is the caller's. */
static void written(const char *dir, const Lockstep__JournalTxn *t, uint8_t **ret, size_t *ret_len)
{
        char path[4096];
        lserr err = {0};

        assert_int_equal(journal_write(dir, t, &err), 0);
        snprintf(path, sizeof(path), "%s/%s.txn", dir, t->txid);
        assert_int_equal(fsutil_read_all(path, JOURNAL_FILE_MAX, (char **)ret, ret_len, &err), 0);
}

/* Refused with code, err set and *ret untouched. */
static void refused(const uint8_t *buf, size_t len, int code, const char *words)
{
        Lockstep__JournalTxn *t = NULL;
        lserr err = {0};

        assert_int_equal(journal_parse(buf, len, &t, &err), code);
        assert_null(t);
        assert_int_equal(err.code, code);
        if (words && !strstr(err.msg, words))
                fail_msg("\"%s\" does not say \"%s\"", err.msg, words);
}

static void test_round_trip(void **state)
{
        char *dir = tu_mkdtemp(), path[4096];
        Lockstep__JournalTxn *t = NULL;
        struct rec r;
        lserr err = {0};

        (void)state;
        rec_init(&r);
        assert_int_equal(journal_open(dir, &err), 0);
        assert_int_equal(journal_write(dir, &r.t, &err), 0);
        snprintf(path, sizeof(path), "%s/tx-0001.txn", dir);
        assert_int_equal(journal_read(path, &t, &err), 0);
        assert_string_equal(t->txid, "tx-0001");
        assert_string_equal(t->snapshot, "nightly-1");
        assert_string_equal(t->cut_txid, "tx-0000");
        assert_int_equal(t->mode, LOCKSTEP__MODE__MODE_PAUSE);
        assert_int_equal(t->state, LOCKSTEP__JOURNAL_STATE__J_SNAPPED);
        assert_int_equal(t->lease_deadline_us, 1800000000000000LL);
        assert_true(t->decided);
        assert_int_equal(t->n_members, 2);
        assert_string_equal(t->members[0]->member->vm, "web1");
        assert_int_equal(t->members[0]->n_disks, 2);
        assert_string_equal(t->members[0]->disks[0]->after, "/img/web1-vda.tx-0001.qcow2");
        assert_string_equal(t->members[0]->disks[1]->before, "/img/web1-vdb.qcow2");
        assert_int_equal(t->members[0]->timings->freeze_us, 1234);
        assert_string_equal(t->members[1]->member->vm, "db1");
        assert_int_equal(t->members[1]->member->tier, 2);
        assert_true(t->members[1]->paused);
        assert_string_equal(t->members[1]->message, "db1@host-a: freeze: guest agent not connected");
        assert_int_equal(t->n_replies, 1);
        assert_memory_equal(t->replies[0]->reply.data, r.reply, sizeof(r.reply));
        t = journal_txn_free(t);
        /* A second write replaces the first. */
        r.t.state = LOCKSTEP__JOURNAL_STATE__J_COMMITTED;
        assert_int_equal(journal_write(dir, &r.t, &err), 0);
        assert_int_equal(journal_read(path, &t, &err), 0);
        assert_int_equal(t->state, LOCKSTEP__JOURNAL_STATE__J_COMMITTED);
        journal_txn_free(t);
        assert_int_equal(journal_remove(dir, "tx-0001", &err), 0);
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(journal_remove(dir, "tx-0001", &err), 0);
        tu_rmtree(dir);
}

/* Files from before the footer (version 1, the bare record) still read. */
static void test_legacy_file(void **state)
{
        Lockstep__JournalTxn *t = NULL;
        struct rec r;
        uint8_t *buf;
        size_t n;
        lserr err = {0};

        (void)state;
        rec_init(&r);
        r.t.version = 1;
        n = lockstep__journal_txn__get_packed_size(&r.t);
        buf = malloc(n);
        lockstep__journal_txn__pack(&r.t, buf);
        assert_int_equal(journal_parse(buf, n, &t, &err), 0);
        assert_string_equal(t->members[1]->member->vm, "db1");
        journal_txn_free(t);
        free(buf);
}

/* Every prefix of a valid file is refused, also those that end where a field
 * ends and so would unpack as a shorter record. */
static void test_every_prefix(void **state)
{
        char *dir = tu_mkdtemp();
        Lockstep__JournalTxn *t = NULL;
        struct rec r;
        uint8_t *buf = NULL;
        size_t n = 0;
        lserr err = {0};

        (void)state;
        rec_init(&r);
        written(dir, &r.t, &buf, &n);
        for (size_t len = 0; len < n; len++) {
                /* A copy of exactly len bytes, so ASan sees any read past it. */
                uint8_t *p = malloc(len ? len : 1);
                memcpy(p, buf, len);
                refused(p, len, -EBADMSG, len ? "journal record" : "empty");
                free(p);
        }
        assert_int_equal(journal_parse(buf, n, &t, &err), 0);
        journal_txn_free(t);
        free(buf);
        tu_rmtree(dir);
}

/* Any byte changed, anywhere (record or footer), is refused. */
static void test_corrupted_bytes(void **state)
{
        char *dir = tu_mkdtemp();
        struct rec r;
        uint8_t *buf = NULL;
        size_t n = 0;

        (void)state;
        rec_init(&r);
        written(dir, &r.t, &buf, &n);
        for (size_t i = 0; i < n; i++) {
                for (unsigned bit = 0; bit < 8; bit += 7) {
                        buf[i] ^= (uint8_t)(1u << bit);
                        refused(buf, n, -EBADMSG, "journal record");
                        buf[i] ^= (uint8_t)(1u << bit);
                }
        }
        /* Garbage that is not protobuf at all. */
        memset(buf, 0xff, n);
        refused(buf, n, -EBADMSG, "does not unpack");
        free(buf);
        tu_rmtree(dir);
}

/* A bare (version 1) record with one thing wrong: what the footer cannot catch
 * because the file was written that way. */
static void bare_refused(struct rec *r, const char *words)
{
        size_t n;
        uint8_t *buf;

        r->t.version = 1;
        n = lockstep__journal_txn__get_packed_size(&r->t);
        buf = malloc(n);
        lockstep__journal_txn__pack(&r->t, buf);
        refused(buf, n, -EBADMSG, words);
        free(buf);
}

static void test_bad_fields(void **state)
{
        char big[HV_PATH_MAX + 1];
        Lockstep__DiskImage *many[HV_MAX_DISKS + 1];
        struct rec r;

        (void)state;
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        big[0] = '/';
        rec_init(&r);
        r.t.txid = "../etc";
        bare_refused(&r, "txid is not a valid name");
        rec_init(&r);
        r.t.snapshot = "a b";
        bare_refused(&r, "snapshot is not a valid name");
        rec_init(&r);
        r.t.state = LOCKSTEP__JOURNAL_STATE__J_DELETING;
        bare_refused(&r, "state 7");
        rec_init(&r);
        r.t.state = (Lockstep__JournalState)99;
        bare_refused(&r, "state 99");
        rec_init(&r);
        r.t.mode = (Lockstep__Mode)7;
        bare_refused(&r, "mode 7 is unknown");
        rec_init(&r);
        r.jm[1].member = NULL;
        bare_refused(&r, "member 1 has no valid VM name");
        rec_init(&r);
        r.m[0].vm = "";
        bare_refused(&r, "member 0 has no valid VM name");
        rec_init(&r);
        r.d[0].before = "";
        bare_refused(&r, "disk 0");
        rec_init(&r);
        r.d[1].after = big;
        bare_refused(&r, "disk 1");
        rec_init(&r);
        r.d[2].branch = big;
        bare_refused(&r, "member \"db1\" disk 0");
        rec_init(&r);
        r.d[0].disk = "vdaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        bare_refused(&r, "disk 0");
        rec_init(&r);
        for (size_t i = 0; i < HV_MAX_DISKS + 1; i++)
                many[i] = &r.d[0];
        r.jm[0].disks = many;
        r.jm[0].n_disks = HV_MAX_DISKS + 1;
        bare_refused(&r, "17 disks, more than 16");
}

/* Version 1 files have no footer, so a version 3 record is refused by version. */
static void test_unknown_version(void **state)
{
        struct rec r;
        uint8_t *buf;
        size_t n;

        (void)state;
        rec_init(&r);
        r.t.version = 3;
        n = lockstep__journal_txn__get_packed_size(&r.t);
        buf = malloc(n);
        lockstep__journal_txn__pack(&r.t, buf);
        refused(buf, n, -EBADMSG, "version 3 is not supported");
        free(buf);
}

static void test_oversized(void **state)
{
        char *dir = tu_mkdtemp(), *path, *msg;
        Lockstep__JournalTxn *t = NULL;
        struct rec r;
        uint8_t one = 0;
        FILE *f;
        lserr err = {0};

        (void)state;
        /* journal_parse looks at the length before the bytes. */
        refused(&one, (size_t)JOURNAL_FILE_MAX + 1, -EFBIG, "over the 4194304-byte limit");
        /* A record over the limit is never written... */
        rec_init(&r);
        msg = malloc(JOURNAL_FILE_MAX + 1);
        memset(msg, 'x', JOURNAL_FILE_MAX);
        msg[JOURNAL_FILE_MAX] = '\0';
        r.jm[0].message = msg;
        assert_int_equal(journal_write(dir, &r.t, &err), -EFBIG);
        assert_non_null(strstr(err.msg, "over the limit"));
        free(msg);
        /* ... and a file over it is never read. */
        assert_true(asprintf(&path, "%s/tx-0002.txn", dir) > 0);
        f = fopen(path, "w");
        assert_int_equal(ftruncate(fileno(f), JOURNAL_FILE_MAX + 1), 0);
        fclose(f);
        lserr_clear(&err);
        assert_int_equal(journal_read(path, &t, &err), -EFBIG);
        assert_null(t);
        free(path);
        tu_rmtree(dir);
}

static void test_missing_and_empty(void **state)
{
        char *dir = tu_mkdtemp(), *path, missing[4096];
        Lockstep__JournalTxn *t = NULL;
        lserr err = {0};

        (void)state;
        snprintf(missing, sizeof(missing), "%s/nope.txn", dir);
        assert_int_equal(journal_read(missing, &t, &err), -ENOENT);
        assert_null(t);
        assert_non_null(strstr(err.msg, "nope.txn"));
        path = tu_write(dir, "tx-0003.txn", "", 0600);
        lserr_clear(&err);
        assert_int_equal(journal_read(path, &t, &err), -EBADMSG);
        assert_null(t);
        assert_non_null(strstr(err.msg, "tx-0003.txn"));
        assert_non_null(strstr(err.msg, "journal record is empty"));
        free(path);
        snprintf(missing, sizeof(missing), "%s/nodir", dir);
        lserr_clear(&err);
        assert_int_equal(journal_load(missing, NULL, NULL, NULL, &err), -ENOENT);
        tu_rmtree(dir);
}

struct seen {
        int good, bad;
        char why[LSERR_MSG_MAX];
};

static void on_txn(void *arg, const Lockstep__JournalTxn *t)
{
        struct seen *s = arg;

        assert_string_equal(t->txid, "tx-0001");
        s->good++;
}

static void on_bad(void *arg, const char *path, const char *why)
{
        struct seen *s = arg;

        assert_non_null(strstr(path, ".txn"));
        assert_null(strstr(why, path));
        snprintf(s->why, sizeof(s->why), "%s", why);
        s->bad++;
}

/* The good file is read, bad ones are reported and left in place, other
 * files are not looked at. */
static void test_load(void **state)
{
        char *dir = tu_mkdtemp(), *p1, *p2, *p3;
        struct seen s = {0};
        struct rec r;
        lserr err = {0};

        (void)state;
        rec_init(&r);
        assert_int_equal(journal_write(dir, &r.t, &err), 0);
        p1 = tu_write(dir, "empty.txn", "", 0600);
        p2 = tu_write(dir, "junk.txn", "\xff\xff\xff", 0600);
        p3 = tu_write(dir, "notes", "", 0600);
        assert_int_equal(journal_load(dir, on_txn, on_bad, &s, &err), 0);
        assert_int_equal(s.good, 1);
        assert_int_equal(s.bad, 2);
        assert_int_equal(access(p1, F_OK), 0);
        assert_int_equal(access(p2, F_OK), 0);
        free(p1);
        free(p2);
        free(p3);
        tu_rmtree(dir);
}

static void test_bad_txid_path(void **state)
{
        char *dir = tu_mkdtemp();
        struct rec r;
        lserr err = {0};

        (void)state;
        rec_init(&r);
        r.t.txid = "../x";
        assert_int_equal(journal_write(dir, &r.t, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "is not a valid name"));
        lserr_clear(&err);
        assert_int_equal(journal_remove(dir, "a/b", &err), -EINVAL);
        tu_rmtree(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_legacy_file),
                cmocka_unit_test(test_every_prefix), cmocka_unit_test(test_corrupted_bytes),
                cmocka_unit_test(test_bad_fields),   cmocka_unit_test(test_unknown_version),
                cmocka_unit_test(test_oversized),    cmocka_unit_test(test_missing_and_empty),
                cmocka_unit_test(test_load),         cmocka_unit_test(test_bad_txid_path),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
