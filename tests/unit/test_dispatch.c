/* test_dispatch: real signed commands through dispatch_handle, with a real
 * verifier, replay state, transaction manager and the sim backend. An accepted
 * command acts and is answered; every refused one changes nothing (no guest
 * frozen, no journal file, no nonce or counter remembered). One refused before
 * its signature verified (unsigned, bad signature, unknown key, oversized,
 * garbage) gets an unsigned refusal code and nothing else, logged within a
 * budget; one refused after (replayed, old counter, wrong target, expired,
 * unknown step) a signed E_REJECTED reply naming its txid and step. An opening
 * step of a txid already decided is refused, also after a restart, and the
 * memory of decided txids is bounded. */
#include <dirent.h>
#include <fcntl.h>
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

#include "decided.h"
#include "dispatch.h"
#include "dispatch_priv.h"
#include "execute.h"
#include "fsutil.h"
#include "testutil.h"
#include "txn_priv.h"

#define SELF "host-a"
#define WINDOW_US (30LL * 1000000LL)

struct fx {
        char *dir;
        struct cfg_agent *cfg;
        struct keys_secret *agent, *coord, *other;
        struct replay *rp;
        struct env_verifier *v;
        struct hv *hv;
        struct txn_mgr *txns;
        struct dispatch *d;
        struct execute *x;
        uint64_t counter;
};

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));
        struct env_trusted t = {.roles = CFG_ROLE_SNAPSHOT | CFG_ROLE_REVERT | CFG_ROLE_DELETE | CFG_ROLE_ADMIN};
        char path[4096], sim[4096], text[8192], state_dir[4096];
        lserr err = {0};

        f->dir = tu_mkdtemp();
        snprintf(sim, sizeof(sim), "%s/sim.txt", f->dir);
        snprintf(text, sizeof(text), "state_dir %s/sim\ndomain web1\ndomain db1 group=shop tier=db\n", f->dir);
        write_file(sim, text);
        snprintf(path, sizeof(path), "%s/agent.yaml", f->dir);
        snprintf(text, sizeof(text),
                 "id: " SELF "\nlisten: tcp://127.0.0.1:1\nkey: %s/agent.key\njournal_dir: %s/journal\n"
                 "authorized:\n  - name: coordinator\n    pubkey: %s/coord.pub\n    roles: [admin]\n"
                 "backend: sim\nsim_config: %s\nguest_agent_timeout_s: 2\n",
                 f->dir, f->dir, f->dir, sim);
        write_file(path, text);
        assert_int_equal(cfg_agent_load(path, &f->cfg, &err), 0);
        assert_int_equal(keys_generate(&f->agent, &err), 0);
        assert_int_equal(keys_generate(&f->coord, &err), 0);
        assert_int_equal(keys_generate(&f->other, &err), 0);
        t.pub = *keys_secret_public(f->coord);
        snprintf(t.name, sizeof(t.name), "coordinator");
        snprintf(state_dir, sizeof(state_dir), "%s/state", f->dir);
        assert_int_equal(fsutil_mkdir_p(state_dir, 0700, &err), 0);
        assert_int_equal(replay_open(state_dir, 1024, WINDOW_US, &f->rp, &err), 0);
        assert_int_equal(env_verifier_new(SELF, &t, 1, f->rp, WINDOW_US, ENV_MAX_DEFAULT, &f->v, &err), 0);
        assert_int_equal(hv_open(f->cfg, &f->hv, &err), 0);
        assert_int_equal(txn_mgr_new(f->cfg, f->hv, NULL, &f->txns, &err), 0);
        assert_int_equal(txn_mgr_recover(f->txns, &err), 0);
        assert_int_equal(execute_new(f->cfg, f->hv, f->txns, &f->x, &err), 0);
        assert_int_equal(dispatch_new(f->cfg, f->agent, f->v, execute_command, f->x, &f->d, &err), 0);
        f->counter = 10;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;

        dispatch_free(f->d);
        f->x = execute_free(f->x);
        txn_mgr_shutdown(f->txns);
        txn_mgr_free(f->txns);
        hv_close(f->hv);
        env_verifier_free(f->v);
        replay_free(f->rp);
        keys_secret_free(f->agent);
        keys_secret_free(f->coord);
        keys_secret_free(f->other);
        cfg_agent_free(f->cfg);
        tu_rmtree(f->dir);
        free(f);
        return 0;
}

/* ---- commands -------------------------------------------------------------- */

/* A command and the payloads it points at. */
struct cmd {
        Lockstep__Command c;
        Lockstep__StatusRequest st;
        Lockstep__DiscoverRequest di;
        Lockstep__FreezeRequest fz;
        Lockstep__Member m, *pm[1];
        uint8_t nonce[REPLAY_NONCE_LEN];
        uint8_t hash[ENV_HASH_LEN];
};

static void status_cmd(struct cmd *k)
{
        lockstep__command__init(&k->c);
        lockstep__status_request__init(&k->st);
        k->c.target = SELF;
        k->c.txid = "";
        k->c.step = LOCKSTEP__STEP__STEP_STATUS;
        k->c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_STATUS;
        k->c.status = &k->st;
}

static void discover_cmd(struct cmd *k)
{
        lockstep__command__init(&k->c);
        lockstep__discover_request__init(&k->di);
        k->c.target = SELF;
        k->c.txid = "";
        k->c.step = LOCKSTEP__STEP__STEP_DISCOVER;
        k->c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_DISCOVER;
        k->c.discover = &k->di;
}

static void freeze_cmd(struct cmd *k, const char *txid)
{
        lockstep__command__init(&k->c);
        lockstep__freeze_request__init(&k->fz);
        lockstep__member__init(&k->m);
        k->m.vm = "web1";
        k->pm[0] = &k->m;
        k->fz.snapshot = "nightly-1";
        k->fz.mode = LOCKSTEP__MODE__MODE_QUIESCE;
        k->fz.lease_ms = 30000;
        k->fz.members = k->pm;
        k->fz.n_members = 1;
        k->c.target = SELF;
        k->c.txid = (char *)txid;
        k->c.step = LOCKSTEP__STEP__STEP_FREEZE;
        k->c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_FREEZE;
        k->c.freeze = &k->fz;
}

static void seal(const struct keys_secret *key, struct cmd *k, uint64_t counter, long long issued, uint8_t **buf,
                 size_t *len)
{
        lserr err = {0};

        assert_int_equal(env_seal_command(key, &k->c, counter, issued, k->nonce, buf, len, k->hash, &err), 0);
}

/* ---- replies --------------------------------------------------------------- */

/* Runs buf through dispatch; the reply, checked against the agent's key and
 * the hash of what was sent. */
static Lockstep__Reply *handle(struct fx *f, const uint8_t *buf, size_t len)
{
        uint8_t *out = NULL, hash[ENV_HASH_LEN];
        size_t out_len = 0;
        Lockstep__Reply *rep = NULL;
        lserr err = {0};

        assert_int_equal(env_body_hash(buf, len, ENV_MAX_DEFAULT, hash), 0);
        assert_int_equal(dispatch_handle(f->d, buf, len, &out, &out_len), 0);
        if (env_verify_reply(out, out_len, ENV_MAX_DEFAULT, keys_secret_public(f->agent), SELF, hash, &rep, &err) <
            0)
                fail_msg("reply does not verify: %s", err.msg);
        assert_string_equal(rep->agent, SELF);
        free(out);
        return rep;
}

/* A request refused before its signature verified: the answer's bytes are
 * the refusal code and nothing else (field 5, varint): no key id, no body, no
 * signature, nothing of the request. The coordinator sees it as a failure. */
static void expect_unsigned(struct fx *f, const uint8_t *buf, size_t len, Lockstep__Refusal want)
{
        uint8_t *out = NULL, none[ENV_HASH_LEN] = {0};
        const uint8_t bytes[] = {(5 << 3) | 0, (uint8_t)want};
        size_t out_len = 0;
        Lockstep__Reply *rep = NULL;
        lserr err = {0};

        assert_int_equal(dispatch_handle(f->d, buf, len, &out, &out_len), 0);
        assert_int_equal(out_len, sizeof(bytes));
        assert_memory_equal(out, bytes, sizeof(bytes));
        assert_int_equal(env_verify_reply(out, out_len, ENV_MAX_DEFAULT, keys_secret_public(f->agent), SELF, none,
                                          &rep, &err),
                         LS_EREFUSED);
        assert_null(rep);
        free(out);
}

static void expect_refused(Lockstep__Reply *rep, int reason, const char *words)
{
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__E_REJECTED);
        /* Signed refusals name the command's step (every one here has one the
         * verifier knows, or the unknown step's 0). */
        assert_true(rep->step == LOCKSTEP__STEP__STEP_FREEZE || rep->step == LOCKSTEP__STEP__STEP_STATUS ||
                    rep->step == LOCKSTEP__STEP__STEP_SNAPSHOT || rep->step == LOCKSTEP__STEP__STEP_UNSPECIFIED);
        assert_int_equal(rep->reject_reason, reason);
        assert_non_null(strstr(rep->message, SELF ": command refused: "));
        if (!strstr(rep->message, words))
                fail_msg("\"%s\" does not say \"%s\"", rep->message, words);
        lockstep__reply__free_unpacked(rep, NULL);
}

/* ---- state ----------------------------------------------------------------- */

static int frozen(const struct fx *f, const char *vm)
{
        char simdir[4200], v[16];

        snprintf(simdir, sizeof(simdir), "%s/sim", f->dir);
        return tu_sim_state(simdir, vm, "frozen", v, sizeof(v)) && !strcmp(v, "1");
}

static int journal_files(const struct fx *f)
{
        char path[4200];
        DIR *d;
        struct dirent *e;
        int n = 0;

        snprintf(path, sizeof(path), "%s/journal", f->dir);
        d = opendir(path);
        if (!d)
                return 0;
        while ((e = readdir(d)) != NULL)
                n += strstr(e->d_name, ".txn") != NULL;
        closedir(d);
        return n;
}

/* STATUS with the next counter: accepted, so no refused command before it
 * moved the counter; the number of transactions in doubt. */
static size_t status_in_doubt(struct fx *f)
{
        struct cmd k;
        uint8_t *buf;
        size_t len, n;
        Lockstep__Reply *rep;

        status_cmd(&k);
        seal(f->coord, &k, ++f->counter, fsutil_now_us(), &buf, &len);
        rep = handle(f, buf, len);
        free(buf);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__OK);
        assert_int_equal(rep->step, LOCKSTEP__STEP__STEP_STATUS);
        assert_string_equal(rep->version, LOCKSTEP_VERSION);
        n = rep->n_in_doubt;
        lockstep__reply__free_unpacked(rep, NULL);
        return n;
}

static void assert_unchanged(struct fx *f)
{
        assert_false(frozen(f, "web1"));
        assert_int_equal(journal_files(f), 0);
        assert_int_equal(status_in_doubt(f), 0);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_accepted(void **state)
{
        struct fx *f = *state;
        struct cmd k;
        uint8_t *buf;
        size_t len;
        Lockstep__Reply *rep;

        assert_int_equal(status_in_doubt(f), 0);
        discover_cmd(&k);
        seal(f->coord, &k, ++f->counter, fsutil_now_us(), &buf, &len);
        rep = handle(f, buf, len);
        free(buf);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__OK);
        assert_int_equal(rep->n_members, 2);
        for (size_t i = 0; i < rep->n_members; i++) {
                assert_string_equal(rep->members[i]->state, "running");
                if (!strcmp(rep->members[i]->vm, "db1")) {
                        assert_string_equal(rep->members[i]->group_label, "shop");
                        assert_string_equal(rep->members[i]->tier_label, "db");
                }
        }
        lockstep__reply__free_unpacked(rep, NULL);
        /* A FREEZE acts: the guest is frozen, journaled, and in doubt. */
        freeze_cmd(&k, "tx-0001");
        seal(f->coord, &k, ++f->counter, fsutil_now_us(), &buf, &len);
        rep = handle(f, buf, len);
        free(buf);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__OK);
        assert_string_equal(rep->txid, "tx-0001");
        assert_int_equal(rep->step, LOCKSTEP__STEP__STEP_FREEZE);
        lockstep__reply__free_unpacked(rep, NULL);
        assert_true(frozen(f, "web1"));
        assert_int_equal(journal_files(f), 1);
        assert_int_equal(status_in_doubt(f), 1);
}

/* A STATUS of leader epoch `epoch`, accepted: the epoch its reply echoes. */
static uint64_t status_epoch_echo(struct fx *f, uint64_t epoch)
{
        struct cmd k;
        uint8_t *buf;
        size_t len;
        Lockstep__Reply *rep;
        uint64_t echo;

        status_cmd(&k);
        k.c.epoch = epoch;
        seal(f->coord, &k, ++f->counter, fsutil_now_us(), &buf, &len);
        rep = handle(f, buf, len);
        free(buf);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__OK);
        echo = rep->epoch_obeyed;
        lockstep__reply__free_unpacked(rep, NULL);
        return echo;
}

/* A reply echoes the leader epoch its command passed the fence with (0 from a
 * lockstepd without high availability), so a leader can tell this agent keeps
 * the fence. */
static void test_epoch_echoed(void **state)
{
        struct fx *f = *state;

        assert_int_equal(status_epoch_echo(f, 7), 7);
        /* A read-only step without an epoch passes the fence: it echoes 0. */
        assert_int_equal(status_epoch_echo(f, 0), 0);
}

/* An envelope with the body but no signature, and one with a zero signature. */
static void test_unsigned(void **state)
{
        struct fx *f = *state;
        Lockstep__Envelope env = LOCKSTEP__ENVELOPE__INIT;
        uint8_t zero[ENV_SIG_LEN] = {0}, *body, *buf;
        struct cmd k;
        size_t n, len;

        freeze_cmd(&k, "tx-0002");
        k.c.issued_at_us = fsutil_now_us();
        k.c.counter = f->counter + 1;
        k.c.nonce.data = k.nonce;
        k.c.nonce.len = REPLAY_NONCE_LEN;
        memset(k.nonce, 7, sizeof(k.nonce));
        n = lockstep__command__get_packed_size(&k.c);
        body = malloc(n);
        lockstep__command__pack(&k.c, body);
        env.version = ENV_VERSION;
        env.key_id.data = (uint8_t *)keys_secret_public(f->coord)->id;
        env.key_id.len = KEYS_ID_LEN;
        env.body.data = body;
        env.body.len = n;
        len = lockstep__envelope__get_packed_size(&env);
        buf = malloc(len);
        lockstep__envelope__pack(&env, buf);
        expect_unsigned(f, buf, len, LOCKSTEP__REFUSAL__REFUSAL_MALFORMED);
        free(buf);
        env.signature.data = zero;
        env.signature.len = ENV_SIG_LEN;
        len = lockstep__envelope__get_packed_size(&env);
        buf = malloc(len);
        lockstep__envelope__pack(&env, buf);
        expect_unsigned(f, buf, len, LOCKSTEP__REFUSAL__REFUSAL_BAD_SIGNATURE);
        free(buf);
        free(body);
        assert_unchanged(f);
}

static void test_bad_signature(void **state)
{
        struct fx *f = *state;
        struct cmd k;
        uint8_t *buf;
        size_t len;

        /* The last bytes of the envelope are the signature's. */
        freeze_cmd(&k, "tx-0003");
        seal(f->coord, &k, f->counter + 1, fsutil_now_us(), &buf, &len);
        buf[len - 1] ^= 1;
        expect_unsigned(f, buf, len, LOCKSTEP__REFUSAL__REFUSAL_BAD_SIGNATURE);
        free(buf);
        /* Signed by a key the agent does not trust. */
        seal(f->other, &k, f->counter + 1, fsutil_now_us(), &buf, &len);
        expect_unsigned(f, buf, len, LOCKSTEP__REFUSAL__REFUSAL_UNKNOWN_KEY);
        free(buf);
        assert_unchanged(f);
}

static void test_replayed(void **state)
{
        struct fx *f = *state;
        struct cmd k;
        uint8_t *buf;
        size_t len;
        Lockstep__Reply *rep;

        status_cmd(&k);
        seal(f->coord, &k, ++f->counter, fsutil_now_us(), &buf, &len);
        rep = handle(f, buf, len);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__OK);
        lockstep__reply__free_unpacked(rep, NULL);
        expect_refused(handle(f, buf, len), LS_EREPLAY, "");
        free(buf);
        /* A fresh nonce with a counter already used: refused, and the reply
         * tells the key's holder where to resume. */
        freeze_cmd(&k, "tx-0004");
        seal(f->coord, &k, f->counter, fsutil_now_us(), &buf, &len);
        rep = handle(f, buf, len);
        assert_int_equal(rep->counter_seen, f->counter);
        expect_refused(rep, LS_ECOUNTER, "");
        free(buf);
        assert_unchanged(f);
}

static void test_wrong_target(void **state)
{
        struct fx *f = *state;
        struct cmd k;
        uint8_t *buf;
        size_t len;
        Lockstep__Reply *rep;

        freeze_cmd(&k, "tx-0005");
        k.c.target = "host-b";
        seal(f->coord, &k, f->counter + 1, fsutil_now_us(), &buf, &len);
        rep = handle(f, buf, len);
        /* Only a counter refusal tells the counter. */
        assert_int_equal(rep->counter_seen, 0);
        expect_refused(rep, LS_ETARGET, "command is for agent \"host-b\", this is \"host-a\"");
        free(buf);
        assert_unchanged(f);
}

static void test_expired(void **state)
{
        struct fx *f = *state;
        struct cmd k;
        uint8_t *buf;
        size_t len;

        freeze_cmd(&k, "tx-0006");
        seal(f->coord, &k, f->counter + 1, fsutil_now_us() - WINDOW_US - 5000000LL, &buf, &len);
        expect_refused(handle(f, buf, len), LS_EEXPIRED, "outside the 30 s window");
        free(buf);
        seal(f->coord, &k, f->counter + 1, fsutil_now_us() + WINDOW_US + 5000000LL, &buf, &len);
        expect_refused(handle(f, buf, len), LS_EFUTURE, "in the future");
        free(buf);
        assert_unchanged(f);
}

static void test_oversized(void **state)
{
        struct fx *f = *state;
        struct cmd k;
        uint8_t *buf, *big;
        size_t len;

        freeze_cmd(&k, "tx-0007");
        seal(f->coord, &k, f->counter + 1, fsutil_now_us(), &buf, &len);
        /* A valid command padded past the limit: refused on size alone. */
        big = calloc(1, ENV_MAX_DEFAULT + 1);
        memcpy(big, buf, len);
        expect_unsigned(f, big, ENV_MAX_DEFAULT + 1, LOCKSTEP__REFUSAL__REFUSAL_MALFORMED);
        free(big);
        free(buf);
        assert_unchanged(f);
}

static void test_unknown_step(void **state)
{
        struct fx *f = *state;
        struct cmd k;
        uint8_t *buf, junk[64];
        size_t len;

        status_cmd(&k);
        k.c.step = (Lockstep__Step)99;
        seal(f->coord, &k, f->counter + 1, fsutil_now_us(), &buf, &len);
        expect_refused(handle(f, buf, len), LS_EMALFORMED, "unknown step 99");
        free(buf);
        status_cmd(&k);
        k.c.step = LOCKSTEP__STEP__STEP_UNSPECIFIED;
        seal(f->coord, &k, f->counter + 1, fsutil_now_us(), &buf, &len);
        expect_refused(handle(f, buf, len), LS_EMALFORMED, "unknown step 0");
        free(buf);
        /* A known step with another step's payload. */
        freeze_cmd(&k, "tx-0008");
        k.c.step = LOCKSTEP__STEP__STEP_SNAPSHOT;
        seal(f->coord, &k, f->counter + 1, fsutil_now_us(), &buf, &len);
        expect_refused(handle(f, buf, len), LS_EMALFORMED, "does not match the command's payload");
        free(buf);
        /* Not an envelope at all. */
        memset(junk, 0xff, sizeof(junk));
        expect_unsigned(f, junk, sizeof(junk), LOCKSTEP__REFUSAL__REFUSAL_MALFORMED);
        assert_unchanged(f);
}

/* ---- late opening steps (a FREEZE held back until after its ABORT) --------- */

static void abort_cmd(struct cmd *k, Lockstep__DecideRequest *de, const char *txid)
{
        lockstep__command__init(&k->c);
        lockstep__decide_request__init(de);
        de->decision = LOCKSTEP__DECISION__DECISION_ABORT;
        k->c.target = SELF;
        k->c.txid = (char *)txid;
        k->c.step = LOCKSTEP__STEP__STEP_DECIDE;
        k->c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_DECIDE;
        k->c.decide = de;
}

/* The agent's transaction manager and dispatcher stopped and started again on
 * the same journal directory, as after a restart. */
static void restart_txns(struct fx *f)
{
        lserr err = {0};

        dispatch_free(f->d);
        f->x = execute_free(f->x);
        txn_mgr_shutdown(f->txns);
        txn_mgr_free(f->txns);
        assert_int_equal(txn_mgr_new(f->cfg, f->hv, NULL, &f->txns, &err), 0);
        assert_int_equal(txn_mgr_recover(f->txns, &err), 0);
        assert_int_equal(execute_new(f->cfg, f->hv, f->txns, &f->x, &err), 0);
        assert_int_equal(dispatch_new(f->cfg, f->agent, f->v, execute_command, f->x, &f->d, &err), 0);
}

static void expect_late_refused(Lockstep__Reply *rep, const char *txid)
{
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__E_BAD_STATE);
        assert_string_equal(rep->txid, txid);
        assert_int_equal(rep->step, LOCKSTEP__STEP__STEP_FREEZE);
        if (!strstr(rep->message, "was already decided on this agent: a late opening step is refused"))
                fail_msg("\"%s\" does not say the transaction was decided", rep->message);
        lockstep__reply__free_unpacked(rep, NULL);
}

/* FREEZE sealed with counter n, held on the path; ABORT (n + 1) of a txid the
 * agent never saw is answered; then the held FREEZE arrives, inside the counter
 * window. It is refused and the guest stays thawed; and a FREEZE of that txid
 * is still refused after a restart. */
static void test_freeze_after_abort(void **state)
{
        struct fx *f = *state;
        Lockstep__DecideRequest de;
        struct cmd held, k;
        uint8_t *held_buf, *buf;
        size_t held_len, len;
        Lockstep__Reply *rep;

        freeze_cmd(&held, "tx-late");
        seal(f->coord, &held, ++f->counter, fsutil_now_us(), &held_buf, &held_len);
        abort_cmd(&k, &de, "tx-late");
        seal(f->coord, &k, ++f->counter, fsutil_now_us(), &buf, &len);
        rep = handle(f, buf, len);
        free(buf);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__OK);
        lockstep__reply__free_unpacked(rep, NULL);

        expect_late_refused(handle(f, held_buf, held_len), "tx-late");
        free(held_buf);
        assert_false(frozen(f, "web1"));
        assert_int_equal(status_in_doubt(f), 0);

        /* Durable: after a restart the counter alone would refuse the held
         * command, so a fresh FREEZE of the aborted txid is sent instead. */
        restart_txns(f);
        freeze_cmd(&k, "tx-late");
        seal(f->coord, &k, ++f->counter, fsutil_now_us(), &buf, &len);
        expect_late_refused(handle(f, buf, len), "tx-late");
        free(buf);
        assert_false(frozen(f, "web1"));

        /* Only that txid: another one freezes as before. */
        freeze_cmd(&k, "tx-next");
        seal(f->coord, &k, ++f->counter, fsutil_now_us(), &buf, &len);
        rep = handle(f, buf, len);
        free(buf);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__OK);
        lockstep__reply__free_unpacked(rep, NULL);
        assert_true(frozen(f, "web1"));
}

/* The same refusal where the FREEZE takes its members, under the lock the
 * decision is noted under: a FREEZE that passed dispatch's early look just
 * before the ABORT was noted still freezes nothing. */
static void test_late_freeze_refused_at_enlist(void **state)
{
        struct fx *f = *state;
        struct cmd k;
        uint8_t *out = NULL;
        size_t out_len = 0;
        Lockstep__Reply *rep;
        lserr err = {0};

        assert_int_equal(txn_note_decided(f->txns, "tx-race", &err), 0);
        assert_true(txn_was_decided(f->txns, "tx-race"));
        freeze_cmd(&k, "tx-race");
        assert_int_equal(txn_step(f->txns, &k.c, &out, &out_len), 0);
        rep = lockstep__reply__unpack(NULL, out_len, out);
        free(out);
        assert_non_null(rep);
        assert_int_not_equal(rep->code, LOCKSTEP__ERROR_CODE__OK);
        assert_int_equal(rep->n_members, 1);
        assert_int_equal(rep->members[0]->code, LOCKSTEP__ERROR_CODE__E_BAD_STATE);
        assert_non_null(strstr(rep->members[0]->message, "freeze: transaction tx-race was already decided"));
        lockstep__reply__free_unpacked(rep, NULL);
        assert_false(frozen(f, "web1"));
        /* A decision of a transaction the agent has is not noted: its own
         * record answers a resend. */
        assert_int_equal(txn_note_decided(f->txns, "tx-race", &err), 0);
}

/* The memory is bounded: DECIDED_MAX entries, each kept keep_us, on disk. A
 * full memory fails closed until what it forgot would have expired. */
static void test_decided_bound(void **state)
{
        struct fx *f = *state;
        const long long keep = 60LL * 1000000LL, t0 = 1000000000000000LL;
        struct decided *d = NULL;
        char txid[32], path[4200];
        lserr err = {0};
        struct stat st;

        assert_int_equal(decided_open(f->dir, keep, t0, &d, &err), 0);
        for (int i = 0; i < DECIDED_MAX; i++) {
                snprintf(txid, sizeof(txid), "tx-%05d", i);
                assert_int_equal(decided_add(d, txid, t0 + i, &err), 0);
        }
        assert_int_equal(decided_count(d), DECIDED_MAX);
        assert_true(decided_has(d, "tx-00000", t0 + DECIDED_MAX));
        assert_false(decided_has(d, "tx-never", t0 + DECIDED_MAX));
        /* One more: the oldest is forgotten, and every txid counts as decided
         * until it would have expired. */
        assert_int_equal(decided_add(d, "tx-extra", t0 + DECIDED_MAX, &err), 0);
        assert_int_equal(decided_count(d), DECIDED_MAX);
        assert_true(decided_has(d, "tx-never", t0 + keep - 1));
        assert_false(decided_has(d, "tx-never", t0 + keep));
        snprintf(path, sizeof(path), "%s/" DECIDED_FILE, f->dir);
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_size < 64 + DECIDED_MAX * (21 + LS_NAME_MAX + 1));
        d = decided_free(d);

        /* Durable, and cleaned once expired: read back, then pruned. */
        assert_int_equal(decided_open(f->dir, keep, t0 + DECIDED_MAX, &d, &err), 0);
        assert_int_equal(decided_count(d), DECIDED_MAX);
        assert_true(decided_has(d, "tx-extra", t0 + DECIDED_MAX));
        d = decided_free(d);
        assert_int_equal(decided_open(f->dir, keep, t0 + keep + DECIDED_MAX, &d, &err), 0);
        assert_int_equal(decided_count(d), 0);
        assert_false(decided_has(d, "tx-extra", t0 + keep + DECIDED_MAX));
        assert_int_equal(decided_add(d, "tx-later", t0 + 2 * keep, &err), 0);
        assert_int_equal(decided_count(d), 1);
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_size < 128);
        d = decided_free(d);

        /* A file that does not parse is refused, naming it. */
        assert_int_equal(fsutil_write_atomic(path, "lockstep-decided 1 0\nnot a line\n", 32, 0600, 0, &err), 0);
        lserr_clear(&err);
        assert_int_equal(decided_open(f->dir, keep, t0, &d, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, DECIDED_FILE ": line 2"));
}

/* ---- junk ------------------------------------------------------------------ */

/* Lines of the agent's log (stderr) that contain what while fn runs. */
static int log_lines(struct fx *f, const char *what, void (*fn)(struct fx *, int), int arg)
{
        char path[4200], line[4096];
        int saved = dup(STDERR_FILENO), fd, n = 0;
        FILE *in;

        snprintf(path, sizeof(path), "%s/stderr.log", f->dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0 && saved >= 0);
        fflush(stderr);
        dup2(fd, STDERR_FILENO);
        close(fd);
        fn(f, arg);
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);
        in = fopen(path, "r");
        assert_non_null(in);
        while (fgets(line, sizeof(line), in))
                n += strstr(line, what) != NULL;
        fclose(in);
        return n;
}

static void send_junk(struct fx *f, int n)
{
        uint8_t junk[32], *out;
        size_t out_len;

        memset(junk, 0xff, sizeof(junk));
        for (int i = 0; i < n; i++) {
                out = NULL;
                assert_int_equal(dispatch_handle(f->d, junk, sizeof(junk), &out, &out_len), 0);
                free(out);
        }
}

/* Junk is logged within a budget, then counted in one line. */
static void test_junk_log_limited(void **state)
{
        struct fx *f = *state;

        dispatch_set_junk_log(f->d, 3, 3600LL * 1000000LL);
        assert_int_equal(log_lines(f, "refused unverified (malformed)", send_junk, 10), 3);
        /* A new interval: the count of what was left out, then the next line. */
        dispatch_set_junk_log(f->d, 3, 0);
        assert_int_equal(log_lines(f, "refused unverified: 7 more message(s) suppressed from the log", send_junk, 1),
                         1);
        assert_unchanged(f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_accepted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_epoch_echoed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unsigned, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_signature, setup, teardown),
                cmocka_unit_test_setup_teardown(test_replayed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_target, setup, teardown),
                cmocka_unit_test_setup_teardown(test_expired, setup, teardown),
                cmocka_unit_test_setup_teardown(test_oversized, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_step, setup, teardown),
                cmocka_unit_test_setup_teardown(test_freeze_after_abort, setup, teardown),
                cmocka_unit_test_setup_teardown(test_late_freeze_refused_at_enlist, setup, teardown),
                cmocka_unit_test_setup_teardown(test_decided_bound, setup, teardown),
                cmocka_unit_test_setup_teardown(test_junk_log_limited, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
