/* test_envelope: every message round-trips, and every kind of bad command is
 * refused with its own code, without crashing and without being remembered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "envelope.h"
#include "testutil.h"

#define NOW (1800000000LL * 1000000LL)
#define SELF "host-a"

struct fx {
        char *dir;
        struct keys_secret *coord, *other, *agent;
        struct replay *rp;
        struct env_verifier *v;
        uint64_t counter;
};

static void make_verifier(struct fx *f, unsigned roles)
{
        struct env_trusted t = {.roles = roles};
        lserr err = {0};

        t.pub = *keys_secret_public(f->coord);
        snprintf(t.name, sizeof(t.name), "coordinator");
        assert_int_equal(replay_open(f->dir, 1024, ENV_WINDOW_DEFAULT_US, &f->rp, &err), 0);
        assert_int_equal(env_verifier_new(SELF, &t, 1, f->rp, ENV_WINDOW_DEFAULT_US, ENV_MAX_DEFAULT, &f->v, &err),
                         0);
}

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));
        lserr err = {0};

        f->dir = tu_mkdtemp();
        assert_int_equal(keys_generate(&f->coord, &err), 0);
        assert_int_equal(keys_generate(&f->other, &err), 0);
        assert_int_equal(keys_generate(&f->agent, &err), 0);
        make_verifier(f, CFG_ROLE_SNAPSHOT | CFG_ROLE_REVERT | CFG_ROLE_DELETE | CFG_ROLE_ADMIN);
        f->counter = 100;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;

        env_verifier_free(f->v);
        replay_free(f->rp);
        keys_secret_free(f->coord);
        keys_secret_free(f->other);
        keys_secret_free(f->agent);
        tu_rmtree(f->dir);
        free(f);
        return 0;
}

/* A freeze command with two members, the richest payload. */
static Lockstep__FreezeRequest fz = LOCKSTEP__FREEZE_REQUEST__INIT;
static Lockstep__Member m1 = LOCKSTEP__MEMBER__INIT, m2 = LOCKSTEP__MEMBER__INIT;
static Lockstep__Member *members[2] = {&m1, &m2};

static void freeze_cmd(Lockstep__Command *c, const char *target)
{
        lockstep__command__init(c);
        m1.vm = "web1";
        m1.tier = 0;
        m2.vm = "db1";
        m2.tier = 2;
        m2.consistency = LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH;
        fz.snapshot = "nightly-1";
        fz.mode = LOCKSTEP__MODE__MODE_QUIESCE;
        fz.lease_ms = 30000;
        fz.n_members = 2;
        fz.members = members;
        c->target = (char *)target;
        c->txid = "tx-0001";
        c->step = LOCKSTEP__STEP__STEP_FREEZE;
        c->payload_case = LOCKSTEP__COMMAND__PAYLOAD_FREEZE;
        c->freeze = &fz;
}

static void seal_with(struct keys_secret *k, Lockstep__Command *c, uint64_t counter, long long issued,
                      uint8_t **buf, size_t *len)
{
        static uint8_t nonce[REPLAY_NONCE_LEN];
        uint8_t hash[ENV_HASH_LEN];
        lserr err = {0};

        assert_int_equal(env_seal_command(k, c, counter, issued, nonce, buf, len, hash, &err), 0);
}

static void seal(struct fx *f, Lockstep__Command *c, uint8_t **buf, size_t *len)
{
        seal_with(f->coord, c, ++f->counter, NOW, buf, len);
}

static int verify(struct fx *f, const uint8_t *buf, size_t len, long long now, lserr *err)
{
        Lockstep__Command *out = NULL;
        const struct env_trusted *key = NULL;
        int r = env_verify_command(f->v, buf, len, now, &out, &key, NULL, err);

        if (r == 0) {
                assert_non_null(out);
                assert_non_null(key);
                lockstep__command__free_unpacked(out, NULL);
        } else {
                assert_null(out);
                assert_true(err->msg[0] != '\0');
        }
        return r;
}

static void test_freeze_round_trip(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c, *out = NULL;
        const struct env_trusted *key = NULL;
        uint8_t *buf;
        size_t len;
        lserr err = {0};

        freeze_cmd(&c, SELF);
        seal(f, &c, &buf, &len);
        assert_int_equal(env_verify_command(f->v, buf, len, NOW, &out, &key, NULL, &err), 0);
        assert_string_equal(out->target, SELF);
        assert_string_equal(out->txid, "tx-0001");
        assert_int_equal(out->step, LOCKSTEP__STEP__STEP_FREEZE);
        assert_int_equal(out->counter, f->counter);
        assert_int_equal(out->issued_at_us, NOW);
        assert_int_equal(out->nonce.len, REPLAY_NONCE_LEN);
        assert_string_equal(out->freeze->snapshot, "nightly-1");
        assert_int_equal(out->freeze->lease_ms, 30000);
        assert_int_equal(out->freeze->n_members, 2);
        assert_string_equal(out->freeze->members[1]->vm, "db1");
        assert_int_equal(out->freeze->members[1]->tier, 2);
        assert_int_equal(out->freeze->members[1]->consistency, LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH);
        assert_string_equal(key->name, "coordinator");
        lockstep__command__free_unpacked(out, NULL);
        free(buf);
}

/* Every step with its payload passes and comes back as the same step. */
static void test_every_step_round_trip(void **state)
{
        struct fx *f = *state;
        Lockstep__StatusRequest st = LOCKSTEP__STATUS_REQUEST__INIT;
        Lockstep__DiscoverRequest di = LOCKSTEP__DISCOVER_REQUEST__INIT;
        Lockstep__SnapshotRequest sn = LOCKSTEP__SNAPSHOT_REQUEST__INIT;
        Lockstep__DecideRequest de = LOCKSTEP__DECIDE_REQUEST__INIT;
        Lockstep__RevertPrepareRequest rp = LOCKSTEP__REVERT_PREPARE_REQUEST__INIT;
        Lockstep__RevertStopRequest rs = LOCKSTEP__REVERT_STOP_REQUEST__INIT;
        Lockstep__RevertSwitchRequest rw = LOCKSTEP__REVERT_SWITCH_REQUEST__INIT;
        Lockstep__RevertStartRequest ra = LOCKSTEP__REVERT_START_REQUEST__INIT;
        Lockstep__RevertDecideRequest rd = LOCKSTEP__REVERT_DECIDE_REQUEST__INIT;
        Lockstep__DeleteRequest dl = LOCKSTEP__DELETE_REQUEST__INIT;
        Lockstep__Command c;

        de.decision = LOCKSTEP__DECISION__DECISION_COMMIT;
        rd.decision = LOCKSTEP__DECISION__DECISION_ABORT;
        rp.cut_txid = "tx-0001";
        rp.snapshot = "nightly-1";
        rp.n_members = 2;
        rp.members = members;
        rs.shutdown_timeout_ms = 60000;
        rs.tier = 1;
        ra.tier = 2;
        dl.cut_txid = "tx-0001";
        dl.snapshot = "nightly-1";
        dl.n_members = 2;
        dl.members = members;

        for (int step = LOCKSTEP__STEP__STEP_STATUS; step <= LOCKSTEP__STEP__STEP_DELETE; step++) {
                Lockstep__Command *out = NULL;
                const struct env_trusted *key;
                uint8_t *buf;
                size_t len;
                lserr err = {0};

                freeze_cmd(&c, SELF);
                c.step = (Lockstep__Step)step;
                switch (step) {
                case LOCKSTEP__STEP__STEP_STATUS: c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_STATUS; c.status = &st; c.txid = ""; break;
                case LOCKSTEP__STEP__STEP_DISCOVER: c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_DISCOVER; c.discover = &di; c.txid = ""; break;
                case LOCKSTEP__STEP__STEP_FREEZE: break;
                case LOCKSTEP__STEP__STEP_SNAPSHOT: c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_SNAPSHOT; c.snapshot = &sn; break;
                case LOCKSTEP__STEP__STEP_DECIDE: c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_DECIDE; c.decide = &de; break;
                case LOCKSTEP__STEP__STEP_REVERT_PREPARE: c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_PREPARE; c.revert_prepare = &rp; break;
                case LOCKSTEP__STEP__STEP_REVERT_STOP: c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_STOP; c.revert_stop = &rs; break;
                case LOCKSTEP__STEP__STEP_REVERT_SWITCH: c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_SWITCH; c.revert_switch = &rw; break;
                case LOCKSTEP__STEP__STEP_REVERT_START: c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_START; c.revert_start = &ra; break;
                case LOCKSTEP__STEP__STEP_REVERT_DECIDE: c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_DECIDE; c.revert_decide = &rd; break;
                case LOCKSTEP__STEP__STEP_DELETE: c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_DELETE; c.delete_ = &dl; break;
                }
                seal(f, &c, &buf, &len);
                assert_int_equal(env_verify_command(f->v, buf, len, NOW, &out, &key, NULL, &err), 0);
                assert_int_equal(out->step, step);
                assert_int_equal(out->payload_case, c.payload_case);
                switch (step) {
                case LOCKSTEP__STEP__STEP_DECIDE: assert_int_equal(out->decide->decision, LOCKSTEP__DECISION__DECISION_COMMIT); break;
                case LOCKSTEP__STEP__STEP_REVERT_DECIDE: assert_int_equal(out->revert_decide->decision, LOCKSTEP__DECISION__DECISION_ABORT); break;
                case LOCKSTEP__STEP__STEP_REVERT_PREPARE: assert_string_equal(out->revert_prepare->members[0]->vm, "web1"); break;
                case LOCKSTEP__STEP__STEP_REVERT_STOP: assert_int_equal(out->revert_stop->shutdown_timeout_ms, 60000); break;
                case LOCKSTEP__STEP__STEP_REVERT_START: assert_int_equal(out->revert_start->tier, 2); break;
                case LOCKSTEP__STEP__STEP_DELETE: assert_string_equal(out->delete_->snapshot, "nightly-1"); break;
                default: break;
                }
                lockstep__command__free_unpacked(out, NULL);
                free(buf);
        }
}

static void test_reply_round_trip(void **state)
{
        struct fx *f = *state;
        Lockstep__Reply rep = LOCKSTEP__REPLY__INIT, *out = NULL;
        Lockstep__MemberResult mr = LOCKSTEP__MEMBER_RESULT__INIT, *mrs[1] = {&mr};
        Lockstep__Timings t = LOCKSTEP__TIMINGS__INIT;
        Lockstep__DiskImage d = LOCKSTEP__DISK_IMAGE__INIT, *ds[1] = {&d};
        uint8_t hash[ENV_HASH_LEN], other_hash[ENV_HASH_LEN], *buf;
        size_t len;
        lserr err = {0};

        memset(hash, 7, sizeof(hash));
        memset(other_hash, 8, sizeof(other_hash));
        t.freeze_us = 41000;
        t.snapshot_us = 30000;
        t.thaw_us = 9000;
        t.frozen_for_us = 80000;
        d.disk = "vda";
        d.before = "/var/lib/img/web1.qcow2";
        d.after = "/var/lib/img/web1.qcow2.nightly-1.qcow2";
        mr.vm = "web1";
        mr.code = LOCKSTEP__ERROR_CODE__E_NO_GUEST_AGENT;
        mr.message = "web1@host-a: freeze: guest agent not connected";
        mr.timings = &t;
        mr.n_disks = 1;
        mr.disks = ds;
        rep.agent = SELF;
        rep.command_hash.data = hash;
        rep.command_hash.len = sizeof(hash);
        rep.txid = "tx-0001";
        rep.step = LOCKSTEP__STEP__STEP_SNAPSHOT;
        rep.n_members = 1;
        rep.members = mrs;
        assert_int_equal(env_seal_reply(f->agent, &rep, &buf, &len, &err), 0);

        assert_int_equal(env_verify_reply(buf, len, ENV_MAX_DEFAULT, keys_secret_public(f->agent), SELF, hash, &out,
                                          &err), 0);
        assert_string_equal(out->members[0]->message, mr.message);
        assert_int_equal(out->members[0]->code, LOCKSTEP__ERROR_CODE__E_NO_GUEST_AGENT);
        assert_int_equal(out->members[0]->timings->thaw_us, 9000);
        assert_string_equal(out->members[0]->disks[0]->after, d.after);
        lockstep__reply__free_unpacked(out, NULL);

        /* Pinned to another key, another agent, another command: all refused. */
        lserr_clear(&err);
        assert_int_equal(env_verify_reply(buf, len, ENV_MAX_DEFAULT, keys_secret_public(f->other), SELF, hash, &out,
                                          &err), LS_EUNKNOWNKEY);
        lserr_clear(&err);
        assert_int_equal(env_verify_reply(buf, len, ENV_MAX_DEFAULT, keys_secret_public(f->agent), "host-b", hash,
                                          &out, &err), LS_ETARGET);
        lserr_clear(&err);
        assert_int_equal(env_verify_reply(buf, len, ENV_MAX_DEFAULT, keys_secret_public(f->agent), SELF, other_hash,
                                          &out, &err), LS_EPEER);
        free(buf);
}

static void test_any_flipped_byte_refused(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        uint8_t *buf;
        size_t len;
        lserr err;

        freeze_cmd(&c, SELF);
        seal(f, &c, &buf, &len);
        for (size_t i = 0; i < len; i++) {
                static const uint8_t masks[] = {0x01, 0x80, 0xff};
                for (size_t m = 0; m < sizeof(masks); m++) {
                        buf[i] ^= masks[m];
                        lserr_clear(&err);
                        if (verify(f, buf, len, NOW, &err) == 0)
                                fail_msg("flipping byte %zu with %02x was accepted", i, masks[m]);
                        buf[i] ^= masks[m];
                }
        }
        /* The refusals remembered nothing: the intact message still passes once. */
        lserr_clear(&err);
        assert_int_equal(verify(f, buf, len, NOW, &err), 0);
        free(buf);
}

static void test_unknown_key_and_forged_id(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        Lockstep__Envelope *env;
        uint8_t *buf, *forged;
        size_t len, flen;
        lserr err = {0};

        freeze_cmd(&c, SELF);
        seal_with(f->other, &c, ++f->counter, NOW, &buf, &len);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_EUNKNOWNKEY);

        /* Signed by another key but claiming the trusted key's id. */
        env = lockstep__envelope__unpack(NULL, len, buf);
        assert_non_null(env);
        memcpy(env->key_id.data, keys_secret_public(f->coord)->id, KEYS_ID_LEN);
        flen = lockstep__envelope__get_packed_size(env);
        forged = malloc(flen);
        lockstep__envelope__pack(env, forged);
        lserr_clear(&err);
        assert_int_equal(verify(f, forged, flen, NOW, &err), LS_EBADSIG);
        lockstep__envelope__free_unpacked(env, NULL);
        free(forged);
        free(buf);
}

static void test_wrong_target(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        uint8_t *buf;
        size_t len;
        lserr err = {0};

        freeze_cmd(&c, "host-b");
        seal(f, &c, &buf, &len);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_ETARGET);
        assert_non_null(strstr(err.msg, "host-b"));
        free(buf);
}

static void test_time_window(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        uint8_t *buf;
        size_t len;
        lserr err = {0};

        freeze_cmd(&c, SELF);
        seal_with(f->coord, &c, ++f->counter, NOW - ENV_WINDOW_DEFAULT_US - 1, &buf, &len);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_EEXPIRED);
        free(buf);
        lserr_clear(&err);
        seal_with(f->coord, &c, ++f->counter, NOW + ENV_WINDOW_DEFAULT_US + 1, &buf, &len);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_EFUTURE);
        free(buf);
        /* Just inside either edge is fine. */
        lserr_clear(&err);
        seal_with(f->coord, &c, ++f->counter, NOW + ENV_WINDOW_DEFAULT_US, &buf, &len);
        assert_int_equal(verify(f, buf, len, NOW, &err), 0);
        free(buf);
}

static void test_replayed_nonce(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        uint8_t *buf;
        size_t len;
        lserr err = {0};

        freeze_cmd(&c, SELF);
        seal(f, &c, &buf, &len);
        assert_int_equal(verify(f, buf, len, NOW, &err), 0);
        lserr_clear(&err);
        assert_int_equal(verify(f, buf, len, NOW + 1000, &err), LS_EREPLAY);
        free(buf);
}

/* A counter at or below what was accepted is refused with a fresh nonce, after a
 * restart, and after the clock was set back; a clock set back does not lock the
 * key out for new commands. */
static void test_counter_survives_restart_and_clock_jumps(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        uint8_t *old, *buf;
        size_t old_len, len;
        lserr err = {0};

        freeze_cmd(&c, SELF);
        seal_with(f->coord, &c, 500, NOW, &old, &old_len);
        assert_int_equal(verify(f, old, old_len, NOW, &err), 0);

        /* Same counter, new nonce. */
        seal_with(f->coord, &c, 500, NOW, &buf, &len);
        lserr_clear(&err);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_ECOUNTER);
        free(buf);

        /* Restart: new replay state from the same directory, empty nonce cache. */
        env_verifier_free(f->v);
        replay_free(f->rp);
        make_verifier(f, CFG_ROLE_ADMIN);
        lserr_clear(&err);
        assert_int_equal(verify(f, old, old_len, NOW, &err), LS_ECOUNTER);
        free(old);
        /* Everything at or below the stored counter is refused after a restart. */
        seal_with(f->coord, &c, 499, NOW, &buf, &len);
        lserr_clear(&err);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_ECOUNTER);
        free(buf);

        /* Clock set back a day on both sides: an old counter stays refused, a new one passes. */
        seal_with(f->coord, &c, 450, NOW - 86400LL * 1000000, &buf, &len);
        lserr_clear(&err);
        assert_int_equal(verify(f, buf, len, NOW - 86400LL * 1000000, &err), LS_ECOUNTER);
        free(buf);
        seal_with(f->coord, &c, 501, NOW - 86400LL * 1000000, &buf, &len);
        lserr_clear(&err);
        assert_int_equal(verify(f, buf, len, NOW - 86400LL * 1000000, &err), 0);
        free(buf);
}

/* Commands verified out of order within the window each pass once. */
static void test_counter_window(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        uint8_t *b1, *b2, *b3;
        size_t l1, l2, l3;
        lserr err = {0};

        freeze_cmd(&c, SELF);
        seal_with(f->coord, &c, 1000, NOW, &b1, &l1);
        seal_with(f->coord, &c, 1001, NOW, &b2, &l2);
        seal_with(f->coord, &c, 1000 + REPLAY_WINDOW + 5, NOW, &b3, &l3);
        assert_int_equal(verify(f, b2, l2, NOW, &err), 0);
        assert_int_equal(verify(f, b1, l1, NOW, &err), 0);
        free(b1);
        seal_with(f->coord, &c, 1000, NOW, &b1, &l1);
        lserr_clear(&err);
        assert_int_equal(verify(f, b1, l1, NOW, &err), LS_ECOUNTER);
        assert_int_equal(verify(f, b3, l3, NOW, &err), 0);
        free(b1);
        /* 1002 is now below the window: refused although never seen. */
        seal_with(f->coord, &c, 1002, NOW, &b1, &l1);
        lserr_clear(&err);
        assert_int_equal(verify(f, b1, l1, NOW, &err), LS_ECOUNTER);
        free(b1);
        free(b2);
        free(b3);
}

/* The leader epoch fence: a command of a lower epoch (or none, once an epoch
 * was obeyed) is refused with the epoch that replaced it, and its counter is
 * not used up: the same counter passes again at the current epoch. */
static void test_epoch_fence(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c, *out = NULL;
        const struct env_trusted *key = NULL;
        struct env_refusal rf;
        uint8_t *buf;
        size_t len;
        lserr err = {0};

        freeze_cmd(&c, SELF);
        c.epoch = 5;
        seal_with(f->coord, &c, 7000, NOW, &buf, &len);
        assert_int_equal(verify(f, buf, len, NOW, &err), 0);
        free(buf);
        for (uint64_t e = 0; e <= 4; e += 4) {
                c.epoch = e;
                seal_with(f->coord, &c, 7001, NOW, &buf, &len);
                rf.epoch_seen = 42;
                lserr_clear(&err);
                assert_int_equal(env_verify_command(f->v, buf, len, NOW, &out, &key, &rf, &err), LS_EEPOCH);
                assert_null(out);
                assert_int_equal(rf.epoch_seen, 5);
                assert_true(rf.answerable);
                free(buf);
        }
        c.epoch = 5;
        seal_with(f->coord, &c, 7001, NOW, &buf, &len);
        lserr_clear(&err);
        assert_int_equal(verify(f, buf, len, NOW, &err), 0);
        free(buf);
        /* A later leader moves the fence on for every key. */
        c.epoch = 6;
        seal_with(f->coord, &c, 7002, NOW, &buf, &len);
        assert_int_equal(verify(f, buf, len, NOW, &err), 0);
        free(buf);
        c.epoch = 5;
        seal_with(f->coord, &c, 7003, NOW, &buf, &len);
        lserr_clear(&err);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_EEPOCH);
        free(buf);
        /* A deposed leader whose counter is stale too hears of its epoch. */
        seal_with(f->coord, &c, 7000, NOW, &buf, &len);
        lserr_clear(&err);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_EEPOCH);
        free(buf);
        /* No epoch is fine on a read-only step (a status probe), not on others;
         * a read-only step with an epoch is fenced like any. */
        Lockstep__StatusRequest st = LOCKSTEP__STATUS_REQUEST__INIT;
        Lockstep__Command s = LOCKSTEP__COMMAND__INIT;
        s.target = SELF;
        s.txid = "";
        s.step = LOCKSTEP__STEP__STEP_STATUS;
        s.payload_case = LOCKSTEP__COMMAND__PAYLOAD_STATUS;
        s.status = &st;
        seal_with(f->coord, &s, 7004, NOW, &buf, &len);
        lserr_clear(&err);
        assert_int_equal(verify(f, buf, len, NOW, &err), 0);
        free(buf);
        s.epoch = 5;
        seal_with(f->coord, &s, 7005, NOW, &buf, &len);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_EEPOCH);
        free(buf);
        /* Nor may an epoch be so large that no later leader could pass it. */
        c.epoch = ENV_EPOCH_MAX + 1;
        seal_with(f->coord, &c, 7006, NOW, &buf, &len);
        lserr_clear(&err);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_EMALFORMED);
        assert_non_null(strstr(err.msg, "field epoch"));
        free(buf);
}

/* A counter refusal says how far the key got, so its coordinator can move past
 * it; no other refusal does, the role check still comes after the counter, and
 * nothing of the refused command is remembered. */
static void test_counter_refusal_reports_highest(void **state)
{
        static const uint64_t stale[] = {4000, 5000, 0};
        struct fx *f = *state;
        Lockstep__Command c, *out = NULL;
        const struct env_trusted *key = NULL;
        struct env_refusal rf;
        uint8_t *buf;
        size_t len;
        lserr err = {0};

        freeze_cmd(&c, SELF);
        seal_with(f->coord, &c, 5000, NOW, &buf, &len);
        assert_int_equal(verify(f, buf, len, NOW, &err), 0);
        free(buf);

        /* Below the window, inside it but already seen, and 0: all say 5000. */
        for (size_t i = 0; i < sizeof(stale) / sizeof(stale[0]); i++) {
                rf.counter_seen = 42;
                seal_with(f->coord, &c, stale[i], NOW, &buf, &len);
                lserr_clear(&err);
                assert_int_equal(env_verify_command(f->v, buf, len, NOW, &out, &key, &rf, &err), LS_ECOUNTER);
                assert_null(out);
                assert_int_equal(rf.counter_seen, 5000);
                free(buf);
        }

        /* A refusal before the counter check leaves it alone. */
        freeze_cmd(&c, "host-b");
        seal_with(f->coord, &c, 4000, NOW, &buf, &len);
        rf.counter_seen = 42;
        lserr_clear(&err);
        assert_int_equal(env_verify_command(f->v, buf, len, NOW, &out, &key, &rf, &err), LS_ETARGET);
        assert_int_equal(rf.counter_seen, 0);
        /* Refused after the signature verified: answered signed, naming it. */
        assert_true(rf.answerable);
        assert_int_equal(rf.step, LOCKSTEP__STEP__STEP_FREEZE);
        free(buf);

        /* A key without the role: a stale counter is still what it hears first;
         * a fresh one is refused for the role, and that says nothing of counters. */
        env_verifier_free(f->v);
        replay_free(f->rp);
        make_verifier(f, CFG_ROLE_DELETE);
        freeze_cmd(&c, SELF);
        seal_with(f->coord, &c, 4999, NOW, &buf, &len);
        lserr_clear(&err);
        assert_int_equal(env_verify_command(f->v, buf, len, NOW, &out, &key, &rf, &err), LS_ECOUNTER);
        assert_int_equal(rf.counter_seen, 5000);
        free(buf);
        seal_with(f->coord, &c, 5001, NOW, &buf, &len);
        rf.counter_seen = 42;
        lserr_clear(&err);
        assert_int_equal(env_verify_command(f->v, buf, len, NOW, &out, &key, &rf, &err), LS_EROLE);
        assert_int_equal(rf.counter_seen, 0);
        free(buf);

        /* The refusals burnt nothing: 5001 still passes once the role allows it. */
        env_verifier_free(f->v);
        replay_free(f->rp);
        make_verifier(f, CFG_ROLE_SNAPSHOT);
        seal_with(f->coord, &c, 5001, NOW, &buf, &len);
        rf.counter_seen = 42;
        lserr_clear(&err);
        assert_int_equal(env_verify_command(f->v, buf, len, NOW, &out, &key, &rf, &err), 0);
        assert_int_equal(rf.counter_seen, 42);
        assert_int_equal(out->counter, 5001);
        lockstep__command__free_unpacked(out, NULL);
        free(buf);
}

static void test_reply_passed_off_as_command(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        uint8_t *cmd_buf, *body, *buf;
        size_t cmd_len, len;
        Lockstep__Envelope *env;
        lserr err = {0};

        freeze_cmd(&c, SELF);
        seal(f, &c, &cmd_buf, &cmd_len);
        env = lockstep__envelope__unpack(NULL, cmd_len, cmd_buf);
        assert_non_null(env);
        /* The same body signed by the same key under the reply tag. */
        body = malloc(env->body.len);
        memcpy(body, env->body.data, env->body.len);
        assert_int_equal(env_seal(ENV_REPLY, f->coord, body, env->body.len, &buf, &len, &err), 0);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_EBADSIG);
        lockstep__envelope__free_unpacked(env, NULL);
        free(body);
        free(buf);
        free(cmd_buf);
}

static void test_oversize_and_truncated(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        uint8_t *buf, *big;
        size_t len;
        lserr err = {0};

        big = calloc(1, ENV_MAX_DEFAULT + 1);
        assert_int_equal(verify(f, big, ENV_MAX_DEFAULT + 1, NOW, &err), LS_EOVERSIZE);
        free(big);

        freeze_cmd(&c, SELF);
        seal(f, &c, &buf, &len);
        for (size_t n = 0; n < len; n++) {
                lserr_clear(&err);
                int r = verify(f, buf, n, NOW, &err);
                if (r == 0)
                        fail_msg("truncated to %zu of %zu bytes was accepted", n, len);
                assert_true(r == LS_EMALFORMED || r == LS_EUNKNOWNKEY || r == LS_EBADSIG || r == LS_EVERSION);
        }
        free(buf);
}

static void test_random_bytes(void **state)
{
        struct fx *f = *state;
        unsigned seed = 12345;
        uint8_t buf[512];

        for (int i = 0; i < 5000; i++) {
                size_t len = (size_t)(rand_r(&seed) % sizeof(buf));
                lserr err = {0};
                for (size_t j = 0; j < len; j++)
                        buf[j] = (uint8_t)rand_r(&seed);
                /* Half of them start like an envelope to get past the first parse. */
                if (i % 2 && len > 4) {
                        buf[0] = 0x08;
                        buf[1] = 0x01;
                }
                int r = verify(f, buf, len, NOW, &err);
                assert_true(r == LS_EMALFORMED || r == LS_EUNKNOWNKEY || r == LS_EVERSION);
        }
}

static void test_role_denied(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        Lockstep__StatusRequest st = LOCKSTEP__STATUS_REQUEST__INIT;
        uint8_t *buf;
        size_t len;
        lserr err = {0};

        env_verifier_free(f->v);
        replay_free(f->rp);
        make_verifier(f, CFG_ROLE_DELETE);
        freeze_cmd(&c, SELF);
        seal(f, &c, &buf, &len);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_EROLE);
        assert_non_null(strstr(err.msg, "FREEZE"));
        free(buf);
        /* The refusal did not burn the counter or nonce: status, any role, passes. */
        c.step = LOCKSTEP__STEP__STEP_STATUS;
        c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_STATUS;
        c.status = &st;
        c.txid = "";
        seal(f, &c, &buf, &len);
        lserr_clear(&err);
        assert_int_equal(verify(f, buf, len, NOW, &err), 0);
        free(buf);
}

static void test_bad_fields(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        uint8_t *buf;
        size_t len;
        lserr err = {0};

        freeze_cmd(&c, SELF);
        m1.vm = "../etc/passwd";
        seal(f, &c, &buf, &len);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_EMALFORMED);
        assert_non_null(strstr(err.msg, "members.vm"));
        free(buf);

        freeze_cmd(&c, SELF);
        c.step = LOCKSTEP__STEP__STEP_DELETE; /* payload still freeze */
        seal(f, &c, &buf, &len);
        lserr_clear(&err);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_EMALFORMED);
        free(buf);

        freeze_cmd(&c, SELF);
        fz.lease_ms = 0;
        seal(f, &c, &buf, &len);
        lserr_clear(&err);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_EMALFORMED);
        assert_non_null(strstr(err.msg, "lease_ms"));
        free(buf);

        /* A tier only by tier, and at most 64 of them. */
        for (int k = 0; k < 2; k++) {
                freeze_cmd(&c, SELF);
                fz.by_tier = k;
                fz.tier = k ? 65 : 1;
                seal(f, &c, &buf, &len);
                lserr_clear(&err);
                assert_int_equal(verify(f, buf, len, NOW, &err), LS_EMALFORMED);
                assert_non_null(strstr(err.msg, "freeze.tier"));
                free(buf);
        }
        fz.by_tier = 0;
        fz.tier = 0;

        freeze_cmd(&c, SELF);
        c.txid = "";
        seal(f, &c, &buf, &len);
        lserr_clear(&err);
        assert_int_equal(verify(f, buf, len, NOW, &err), LS_EMALFORMED);
        free(buf);
}

/* The unsigned refusal: two bytes, the code alone; a reply verifier takes it
 * for a failure (LS_EREFUSED), never a reply, and a refusal code next to a
 * signed message is malformed. Before the signature, the verifier says an
 * answer may not be signed or name anything. */
static void test_unsigned_refusal(void **state)
{
        static const struct {
                int code;
                uint8_t byte;
                const char *name;
        } cases[] = {
                {LS_EUNKNOWNKEY, 2, "unknown-key"}, {LS_EBADSIG, 3, "bad-signature"},
                {LS_EVERSION, 4, "bad-version"},   {LS_EOVERSIZE, 1, "malformed"},
                {LS_EMALFORMED, 1, "malformed"},
        };
        struct fx *f = *state;
        uint8_t *buf, hash[ENV_HASH_LEN] = {0}, junk[16];
        size_t len;
        Lockstep__Reply *out = NULL, rep = LOCKSTEP__REPLY__INIT;
        Lockstep__Envelope *env;
        Lockstep__Command *cmd = NULL;
        const struct env_trusted *key = NULL;
        struct env_refusal rf = {.answerable = 7};
        lserr err = {0};
        char want[128];

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                assert_int_equal(env_seal_refusal(cases[i].code, &buf, &len, &err), 0);
                assert_int_equal(len, 2);
                assert_int_equal(buf[0], 5 << 3);
                assert_int_equal(buf[1], cases[i].byte);
                lserr_clear(&err);
                assert_int_equal(env_verify_reply(buf, len, ENV_MAX_DEFAULT, keys_secret_public(f->agent), SELF, hash,
                                                  &out, &err),
                                 LS_EREFUSED);
                assert_null(out);
                snprintf(want, sizeof(want), "(%s, unsigned)", cases[i].name);
                assert_non_null(strstr(err.msg, want));
                free(buf);
        }
        /* A signed reply with a refusal code bolted on is neither. */
        rep.agent = SELF;
        assert_int_equal(env_seal_reply(f->agent, &rep, &buf, &len, &err), 0);
        env = lockstep__envelope__unpack(NULL, len, buf);
        assert_non_null(env);
        free(buf);
        env->refusal = LOCKSTEP__REFUSAL__REFUSAL_UNKNOWN_KEY;
        len = lockstep__envelope__get_packed_size(env);
        buf = malloc(len);
        lockstep__envelope__pack(env, buf);
        lockstep__envelope__free_unpacked(env, NULL);
        lserr_clear(&err);
        assert_int_equal(env_verify_reply(buf, len, ENV_MAX_DEFAULT, keys_secret_public(f->agent), SELF, hash, &out,
                                          &err),
                         LS_EMALFORMED);
        free(buf);
        /* Junk that is not even an envelope: not answerable. */
        memset(junk, 0xff, sizeof(junk));
        assert_int_equal(env_verify_command(f->v, junk, sizeof(junk), NOW, &cmd, &key, &rf, &err), LS_EMALFORMED);
        assert_false(rf.answerable);
        assert_null(cmd);
}

static void test_step_names_and_roles(void **state)
{
        (void)state;
        assert_string_equal(env_step_name(LOCKSTEP__STEP__STEP_FREEZE), "FREEZE");
        assert_string_equal(env_step_name(LOCKSTEP__STEP__STEP_REVERT_SWITCH), "REVERT_SWITCH");
        assert_true(env_step_roles(LOCKSTEP__STEP__STEP_DELETE) & CFG_ROLE_DELETE);
        assert_false(env_step_roles(LOCKSTEP__STEP__STEP_DELETE) & CFG_ROLE_SNAPSHOT);
        assert_false(env_step_roles(LOCKSTEP__STEP__STEP_REVERT_STOP) & CFG_ROLE_SNAPSHOT);
        assert_int_equal(env_step_roles(LOCKSTEP__STEP__STEP_UNSPECIFIED), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_freeze_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_every_step_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reply_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_any_flipped_byte_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_key_and_forged_id, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_target, setup, teardown),
                cmocka_unit_test_setup_teardown(test_time_window, setup, teardown),
                cmocka_unit_test_setup_teardown(test_replayed_nonce, setup, teardown),
                cmocka_unit_test_setup_teardown(test_counter_survives_restart_and_clock_jumps, setup, teardown),
                cmocka_unit_test_setup_teardown(test_counter_window, setup, teardown),
                cmocka_unit_test_setup_teardown(test_counter_refusal_reports_highest, setup, teardown),
                cmocka_unit_test_setup_teardown(test_epoch_fence, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reply_passed_off_as_command, setup, teardown),
                cmocka_unit_test_setup_teardown(test_oversize_and_truncated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_random_bytes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_role_denied, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_fields, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unsigned_refusal, setup, teardown),
                cmocka_unit_test(test_step_names_and_roles),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
