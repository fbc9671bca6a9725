/* test_agentlink: a stale-counter refusal heals itself. A fake agent on ipc://
 * verifies commands with the real verifier and replay state (or answers a
 * scripted refusal), and agentlink_call moves the shared counter past what it
 * reports and sends once more, once, and never past the counter's bound. A
 * refusal naming another txid or step is ignored; an unsigned refusal code is
 * a failure, never a reply. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agentlink.h"
#include "clockskew.h"
#include "fsutil.h"
#include "testutil.h"

#define AGENT "host-a"
#define MAX_SEEN 16

enum mode {
        REAL,         /* verify as the agent does; refusals as dispatch answers them */
        ALWAYS_STALE, /* refuse everything as stale, reporting fake_seen */
        ROLE_REFUSED, /* refuse everything for the role, with a counter_seen anyway */
        OTHER_TXID,   /* a signed refusal naming another transaction (a flipped bit) */
        OTHER_STEP,   /* a signed refusal naming another step */
        UNSIGNED,     /* the unsigned refusal code for an unknown key */
        PREDATES_EPOCH, /* REAL, but its replies do not echo the epoch (an agent older than the fence) */
};

struct fx {
        char *dir, *ctr_path;
        struct keys_secret *coord, *agent;
        struct replay *rp;
        struct env_verifier *v;
        nng_socket sock;
        struct transport_server *srv;
        struct counter *ctr;
        struct agentlink *link;
        pthread_mutex_t lock;
        enum mode mode;
        long long clock_off_us; /* the fake agent's clock against ours */
        uint64_t fake_seen;
        size_t n_seen;
        uint64_t counters[MAX_SEEN];
        uint8_t nonces[MAX_SEEN][REPLAY_NONCE_LEN];
};

/* Remembers what each command carried, so tests can see the resend. Runs on a
 * server thread, where cmocka cannot fail a test: a command it cannot read
 * gets no answer, and the call's deadline fails the test instead. */
static int note(struct fx *f, const uint8_t *req, size_t len)
{
        Lockstep__Envelope *env = lockstep__envelope__unpack(NULL, len, req);
        Lockstep__Command *cmd = env ? lockstep__command__unpack(NULL, env->body.len, env->body.data) : NULL;
        int r = -1;

        if (cmd && cmd->nonce.len == REPLAY_NONCE_LEN && f->n_seen < MAX_SEEN) {
                f->counters[f->n_seen] = cmd->counter;
                memcpy(f->nonces[f->n_seen], cmd->nonce.data, REPLAY_NONCE_LEN);
                f->n_seen++;
                r = 0;
        }
        if (cmd)
                lockstep__command__free_unpacked(cmd, NULL);
        if (env)
                lockstep__envelope__free_unpacked(env, NULL);
        return r;
}

static int handle(void *arg, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len)
{
        struct fx *f = arg;
        Lockstep__Reply rep = LOCKSTEP__REPLY__INIT;
        Lockstep__Command *cmd = NULL;
        const struct env_trusted *key = NULL;
        struct env_refusal rf = {0};
        uint8_t hash[ENV_HASH_LEN];
        char msg[LSERR_MSG_MAX + 64];
        lserr err = {0};
        int r;

        pthread_mutex_lock(&f->lock);
        if (note(f, req, len) < 0 || env_body_hash(req, len, ENV_MAX_DEFAULT, hash) < 0) {
                pthread_mutex_unlock(&f->lock);
                return -1;
        }
        if (f->mode == UNSIGNED) {
                r = env_seal_refusal(LS_EUNKNOWNKEY, ret, ret_len, &err);
                pthread_mutex_unlock(&f->lock);
                return r;
        }
        rep.agent = AGENT;
        rep.command_hash.data = hash;
        rep.command_hash.len = ENV_HASH_LEN;
        rep.code = LOCKSTEP__ERROR_CODE__E_REJECTED;
        rep.message = "refused";
        /* Every refusal names what it refuses, as dispatch's do: status's. */
        rep.txid = "";
        rep.step = LOCKSTEP__STEP__STEP_STATUS;
        /* Signed replies carry the agent's clock, as dispatch's do. */
        rep.now_us = fsutil_now_us() + f->clock_off_us;
        switch (f->mode) {
        case REAL:
        case PREDATES_EPOCH:
                r = env_verify_command(f->v, req, len, rep.now_us, &cmd, &key, &rf, &err);
                if (r < 0) {
                        snprintf(msg, sizeof(msg), "%s: command refused: %s", AGENT, err.msg);
                        rep.message = msg;
                        rep.reject_reason = r;
                        rep.txid = rf.txid;
                        rep.step = rf.step;
                        if (r == LS_ECOUNTER)
                                rep.counter_seen = rf.counter_seen;
                        if (r == LS_EEPOCH)
                                rep.epoch_seen = rf.epoch_seen;
                } else {
                        rep.code = LOCKSTEP__ERROR_CODE__OK;
                        rep.message = "";
                        rep.txid = cmd->txid;
                        rep.step = cmd->step;
                        /* As dispatch does: the epoch it passed the fence with. */
                        rep.epoch_obeyed = f->mode == REAL ? cmd->epoch : 0;
                }
                break;
        case ALWAYS_STALE:
                rep.reject_reason = LS_ECOUNTER;
                rep.counter_seen = f->fake_seen;
                break;
        case ROLE_REFUSED:
                rep.reject_reason = LS_EROLE;
                rep.counter_seen = f->fake_seen;
                break;
        case OTHER_TXID:
                rep.reject_reason = LS_EROLE;
                rep.txid = "tx-other";
                break;
        case OTHER_STEP:
                rep.reject_reason = LS_EROLE;
                rep.step = LOCKSTEP__STEP__STEP_FREEZE;
                break;
        case UNSIGNED:
                break;
        }
        r = env_seal_reply(f->agent, &rep, ret, ret_len, &err);
        if (cmd)
                lockstep__command__free_unpacked(cmd, NULL);
        pthread_mutex_unlock(&f->lock);
        return r;
}

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));
        struct env_trusted t = {.roles = CFG_ROLE_ADMIN};
        char url[600];
        lserr err = {0};

        f->dir = tu_mkdtemp();
        pthread_mutex_init(&f->lock, NULL);
        assert_int_equal(keys_generate(&f->coord, &err), 0);
        assert_int_equal(keys_generate(&f->agent, &err), 0);
        t.pub = *keys_secret_public(f->coord);
        snprintf(t.name, sizeof(t.name), "coordinator");
        assert_int_equal(replay_open(f->dir, 1024, ENV_WINDOW_DEFAULT_US, &f->rp, &err), 0);
        assert_int_equal(env_verifier_new(AGENT, &t, 1, f->rp, ENV_WINDOW_DEFAULT_US, ENV_MAX_DEFAULT, &f->v, &err),
                         0);
        snprintf(url, sizeof(url), "ipc://%s/agent.sock", f->dir);
        assert_int_equal(transport_listen(url, ENV_MAX_DEFAULT, 0600, NULL, &f->sock, &err), 0);
        assert_int_equal(transport_serve(f->sock, 2, handle, f, &f->srv, &err), 0);
        assert_true(asprintf(&f->ctr_path, "%s/coord.counter", f->dir) > 0);
        assert_int_equal(counter_open(f->ctr_path, &f->ctr, &err), 0);
        assert_int_equal(agentlink_open(AGENT, url, keys_secret_public(f->agent), f->coord, f->ctr, NULL, &f->link,
                                        &err), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;

        agentlink_close(f->link);
        transport_server_stop(f->srv);
        counter_free(f->ctr);
        env_verifier_free(f->v);
        replay_free(f->rp);
        keys_secret_free(f->coord);
        keys_secret_free(f->agent);
        pthread_mutex_destroy(&f->lock);
        free(f->ctr_path);
        tu_rmtree(f->dir);
        free(f);
        return 0;
}

static void status_cmd(Lockstep__Command *c, Lockstep__StatusRequest *st)
{
        lockstep__command__init(c);
        lockstep__status_request__init(st);
        c->txid = "";
        c->step = LOCKSTEP__STEP__STEP_STATUS;
        c->payload_case = LOCKSTEP__COMMAND__PAYLOAD_STATUS;
        c->status = st;
}

/* Another process signing with our key got far ahead (as after the agent
 * accepted its command): one refusal, one resend above it, and from then on
 * every command passes at once. */
static void test_stale_counter_heals(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        Lockstep__StatusRequest st;
        Lockstep__Reply *rep = NULL;
        uint8_t nonce[REPLAY_NONCE_LEN] = {9};
        uint64_t ahead = (uint64_t)fsutil_now_us() + 3600ULL * 1000000, next;
        struct counter *again = NULL;
        lserr err = {0};

        assert_int_equal(replay_commit(f->rp, keys_secret_public(f->coord)->id, nonce, fsutil_now_us(), ahead,
                                       fsutil_now_us(), &err), 0);
        status_cmd(&c, &st);
        assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), 0);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__OK);
        lockstep__reply__free_unpacked(rep, NULL);
        assert_int_equal(f->n_seen, 2);
        assert_true(f->counters[0] < ahead);
        assert_true(f->counters[1] > ahead);
        assert_memory_not_equal(f->nonces[0], f->nonces[1], REPLAY_NONCE_LEN);

        assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), 0);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__OK);
        lockstep__reply__free_unpacked(rep, NULL);
        assert_int_equal(f->n_seen, 3);

        /* The move is on disk: a restarted coordinator stays above it. */
        assert_int_equal(counter_open(f->ctr_path, &again, &err), 0);
        assert_int_equal(counter_next(again, &next, &err), 0);
        assert_true(next > f->counters[2]);
        counter_free(again);
}

static int fence_says(void *arg, uint64_t *epoch)
{
        const uint64_t *e = arg;

        *epoch = *e;
        return *e != 0;
}

/* The leader's fence: every command carries its epoch, the agent keeps the
 * highest, a lower one is refused there, and nothing is sealed while it does
 * not lead. */
static void test_fence(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        Lockstep__StatusRequest st;
        Lockstep__Reply *rep = NULL;
        uint64_t epoch = 9;
        struct agentlink_fence fence = {.leading = fence_says, .arg = &epoch};
        struct agentlink_req req = {0};
        lserr err = {0};
        size_t seen;

        agentlink_set_fence(f->link, &fence);
        status_cmd(&c, &st);
        assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), 0);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__OK);
        lockstep__reply__free_unpacked(rep, NULL);
        assert_int_equal(c.epoch, 9);
        /* A deposed leader's epoch: the agent refuses it, naming the newer. */
        epoch = 8;
        assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), 0);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__E_REJECTED);
        assert_int_equal(rep->reject_reason, LS_EEPOCH);
        assert_int_equal(rep->epoch_seen, 9);
        lockstep__reply__free_unpacked(rep, NULL);
        /* Not leading: nothing sealed, nothing sent. */
        epoch = 0;
        seen = f->n_seen;
        assert_int_equal(agentlink_seal(f->link, &c, &req, &err), -ESTALE);
        assert_non_null(strstr(err.msg, "not the leader"));
        assert_null(req.buf);
        lserr_clear(&err);
        assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), -ESTALE);
        assert_int_equal(f->n_seen, seen);
        agentlink_set_fence(f->link, NULL);
}

/* An agent older than the fence takes the epoch as an unknown field and obeys
 * anyone: a leader refuses its replies, naming it, instead of counting on a
 * fence that is not there. Without an epoch (no cluster) it is answered. */
static void test_agent_predates_fence(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        Lockstep__StatusRequest st;
        Lockstep__Reply *rep = NULL;
        uint64_t epoch = 12;
        struct agentlink_fence fence = {.leading = fence_says, .arg = &epoch};
        lserr err = {0};

        f->mode = PREDATES_EPOCH;
        agentlink_set_fence(f->link, &fence);
        status_cmd(&c, &st);
        assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), LS_EPEER);
        assert_null(rep);
        assert_non_null(strstr(err.msg, "agent \"host-a\": STATUS: its lockstep-agent does not keep the leader epoch"));
        agentlink_set_fence(f->link, NULL);
        lserr_clear(&err);
        assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), 0);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__OK);
        lockstep__reply__free_unpacked(rep, NULL);
        f->mode = REAL;
}

/* An agent that keeps saying stale is answered once; its second refusal is the
 * result, and the counter moved only past what it reported. */
static void test_second_refusal_stands(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        Lockstep__StatusRequest st;
        Lockstep__Reply *rep = NULL;
        uint64_t next;
        lserr err = {0};

        f->mode = ALWAYS_STALE;
        f->fake_seen = (uint64_t)fsutil_now_us() + 1000000000ULL;
        status_cmd(&c, &st);
        assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), 0);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__E_REJECTED);
        assert_int_equal(rep->reject_reason, LS_ECOUNTER);
        assert_int_equal(rep->counter_seen, f->fake_seen);
        lockstep__reply__free_unpacked(rep, NULL);
        assert_int_equal(f->n_seen, 2);
        assert_int_equal(f->counters[1], f->fake_seen + 1);
        assert_int_equal(counter_next(f->ctr, &next, &err), 0);
        assert_int_equal(next, f->fake_seen + 2);
}

/* A counter_seen far beyond what this coordinator would issue is refused with
 * a clear error; nothing is resent and the counter did not move. */
static void test_huge_counter_seen_refused(void **state)
{
        static const uint64_t huge[] = {UINT64_MAX, 1ULL << 63};
        struct fx *f = *state;
        Lockstep__Command c;
        Lockstep__StatusRequest st;
        Lockstep__Reply *rep = NULL;
        uint64_t next;
        lserr err = {0};

        f->mode = ALWAYS_STALE;
        status_cmd(&c, &st);
        for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
                f->fake_seen = huge[i];
                f->n_seen = 0;
                lserr_clear(&err);
                assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), -ERANGE);
                assert_null(rep);
                assert_non_null(strstr(err.msg, AGENT));
                assert_non_null(strstr(err.msg, "refused as stale"));
                assert_non_null(strstr(err.msg, "more than"));
                assert_int_equal(f->n_seen, 1);
        }
        assert_int_equal(counter_next(f->ctr, &next, &err), 0);
        assert_int_equal(next, f->counters[0] + 1);
}

/* Only a stale-counter refusal that names a counter is healed. */
static void test_other_replies_not_resent(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        Lockstep__StatusRequest st;
        Lockstep__Reply *rep = NULL;
        lserr err = {0};

        status_cmd(&c, &st);
        f->mode = ROLE_REFUSED;
        f->fake_seen = (uint64_t)fsutil_now_us() + 1000000000ULL;
        assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), 0);
        assert_int_equal(rep->reject_reason, LS_EROLE);
        assert_int_equal(agentlink_heal_counter(f->link, &c, rep, &err), 0);
        lockstep__reply__free_unpacked(rep, NULL);
        assert_int_equal(f->n_seen, 1);

        /* Stale, but from an agent that has no counter to report. */
        f->mode = ALWAYS_STALE;
        f->fake_seen = 0;
        assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), 0);
        assert_int_equal(rep->reject_reason, LS_ECOUNTER);
        lockstep__reply__free_unpacked(rep, NULL);
        assert_int_equal(f->n_seen, 2);

        f->mode = REAL;
        assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), 0);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__OK);
        assert_int_equal(agentlink_heal_counter(f->link, &c, rep, &err), 0);
        lockstep__reply__free_unpacked(rep, NULL);
        assert_int_equal(f->n_seen, 3);
}

/* A signed refusal is a reply like any other: it must name the command's
 * txid and step, or a bit flipped on the path turns a genuine command into an
 * authentic-looking refusal of it. */
static void test_refusal_of_another_command_ignored(void **state)
{
        static const enum mode modes[] = {OTHER_TXID, OTHER_STEP};
        struct fx *f = *state;
        Lockstep__Command c;
        Lockstep__StatusRequest st;
        Lockstep__Reply *rep = NULL;
        lserr err = {0};

        status_cmd(&c, &st);
        for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
                f->mode = modes[i];
                lserr_clear(&err);
                assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), LS_EPEER);
                assert_null(rep);
                if (!strstr(err.msg, "reply ignored: it answers transaction"))
                        fail_msg("\"%s\" does not say the refusal answers another command", err.msg);
        }
}

/* An unsigned refusal code is a transport-level failure, never a reply. */
static void test_unsigned_refusal_is_a_failure(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        Lockstep__StatusRequest st;
        Lockstep__Reply *rep = NULL;
        lserr err = {0};

        status_cmd(&c, &st);
        f->mode = UNSIGNED;
        assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), LS_EREFUSED);
        assert_null(rep);
        if (!strstr(err.msg, "agent \"" AGENT "\": STATUS: refused the command before checking its signature "
                             "(unknown-key, unsigned)"))
                fail_msg("unexpected message: %s", err.msg);
        assert_int_equal(f->n_seen, 1);
}

/* An agent whose clock is 10 min off refuses for the issue time; the reply
 * that comes back says whose clock, how far and which way, and what to do,
 * with the agent's own words inside. */
static void test_clock_refusal_says_so(void **state)
{
        struct fx *f = *state;
        Lockstep__Command c;
        Lockstep__StatusRequest st;
        Lockstep__Reply *rep = NULL;
        lserr err = {0};

        status_cmd(&c, &st);
        f->clock_off_us = 600 * 1000000LL;
        assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), 0);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__E_REJECTED);
        assert_int_equal(rep->reject_reason, LS_EEXPIRED);
        assert_true(clockskew_refused(rep));
        if (!strstr(rep->message, "agent \"" AGENT "\": clock is 600 s ahead of lockstepd's (STATUS refused: "
                                  "command issued 600") ||
            !strstr(rep->message, " ms ago, outside the 30 s window); fix the host's time (NTP)"))
                fail_msg("unexpected message: %s", rep->message);
        lockstep__reply__free_unpacked(rep, NULL);

        f->clock_off_us = -600 * 1000000LL;
        assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), 0);
        assert_int_equal(rep->reject_reason, LS_EFUTURE);
        if (!strstr(rep->message, "agent \"" AGENT "\": clock is 600 s behind lockstepd's (STATUS refused: "
                                  "command issued 5999") ||
            !strstr(rep->message, " ms in the future, outside the 30 s window); fix the host's time (NTP)"))
                fail_msg("unexpected message: %s", rep->message);
        lockstep__reply__free_unpacked(rep, NULL);

        /* Within the window: no refusal, nothing rewritten. */
        f->clock_off_us = 20 * 1000000LL;
        assert_int_equal(agentlink_call(f->link, &c, 5000, &rep, &err), 0);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__OK);
        assert_string_equal(rep->message, "");
        lockstep__reply__free_unpacked(rep, NULL);
}

/* The offset takes the round trip out; a command late in transit to an agent
 * whose clock agrees is not blamed on the clock; other refusals are not the clock's. */
static void test_clockskew_words(void **state)
{
        Lockstep__Reply rep = LOCKSTEP__REPLY__INIT;
        long long off = 0, unsure = 0;
        char out[LSERR_MSG_MAX];

        (void)state;
        /* Sent at 1000 s, answered at 1002 s; the agent signed at 1601 s: 600 s ahead, +-1 s. */
        assert_int_equal(clockskew_offset(1601000000LL, 1000000000LL, 1002000000LL, &off, &unsure), 0);
        assert_true(off == 600000000LL && unsure == 1000000LL);
        assert_int_equal(clockskew_offset(0, 1000000000LL, 1002000000LL, &off, &unsure), -ENODATA);
        assert_int_equal(clockskew_offset(5, 1002000000LL, 1000000000LL, &off, &unsure), -ENODATA);

        clockskew_refusal_text("host-a", "FREEZE",
                               "host-a: command refused: command issued 600012 ms ago, outside the 30 s window",
                               600012000LL, 2000, out, sizeof(out));
        assert_string_equal(out, "agent \"host-a\": clock is 600 s ahead of lockstepd's (FREEZE refused: command "
                                 "issued 600012 ms ago, outside the 30 s window); fix the host's time (NTP)");
        clockskew_refusal_text("host-b", "DECIDE", "other words", -599600000LL, 2000, out, sizeof(out));
        assert_string_equal(out, "agent \"host-b\": clock is 600 s behind lockstepd's (DECIDE refused: other "
                                 "words); fix the host's time (NTP)");
        clockskew_refusal_text("host-a", "SNAPSHOT",
                               "host-a: command refused: command issued 31000 ms ago, outside the 30 s window",
                               300000LL, 15000000LL, out, sizeof(out));
        assert_string_equal(out, "agent \"host-a\": SNAPSHOT refused for its time (command issued 31000 ms ago, "
                                 "outside the 30 s window), but its clock agrees with lockstepd's within 16000 ms: "
                                 "the command was that late in transit (a slow or stalled link or process)");

        clockskew_warning(14000000LL, out, sizeof(out));
        assert_string_equal(out, "");
        clockskew_warning(-20400000LL, out, sizeof(out));
        assert_string_equal(out, "clock is 20 s behind lockstepd's, over half the agents' default 30 s time window: "
                                 "its commands are refused once it is past its window; fix the host's time (NTP)");

        rep.code = LOCKSTEP__ERROR_CODE__E_REJECTED;
        rep.reject_reason = LS_EFUTURE;
        assert_true(clockskew_refused(&rep));
        rep.reject_reason = LS_EROLE;
        assert_false(clockskew_refused(&rep));
        rep.code = LOCKSTEP__ERROR_CODE__OK;
        rep.reject_reason = LS_EEXPIRED;
        assert_false(clockskew_refused(&rep));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_stale_counter_heals, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fence, setup, teardown),
                cmocka_unit_test_setup_teardown(test_agent_predates_fence, setup, teardown),
                cmocka_unit_test_setup_teardown(test_second_refusal_stands, setup, teardown),
                cmocka_unit_test_setup_teardown(test_huge_counter_seen_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_other_replies_not_resent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refusal_of_another_command_ignored, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unsigned_refusal_is_a_failure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_clock_refusal_says_so, setup, teardown),
                cmocka_unit_test(test_clockskew_words),
        };
        int rc = cmocka_run_group_tests(tests, NULL, NULL);

        /* nng frees closed sockets on its reaper thread: wait for it, so that
         * LeakSanitizer at exit sees nothing still being torn down. */
        nng_fini();
        return rc;
}
