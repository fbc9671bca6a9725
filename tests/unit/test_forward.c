/* test_forward: the link between coordinators. The leader's checks of a forward
 * (forward_verify) and the follower's of an answer (forward_open_reply) are
 * tested directly, each refusal with its step; then real nng sockets on
 * ipc:// carry forwards between a follower and two leaders in turn. The
 * leaders' handler there is this test's stub: those tests are of the link, not
 * of what lockstepd does with a request (ha_sim runs that on real daemons). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "forward_priv.h"
#include "testutil.h"

#define NOW (1800000000LL * 1000000LL)
#define SEC 1000000LL
#define REQUEST_MAX (64 * 1024)

/* c1 and c2 list each other and c3; c3 is a third coordinator the others list;
 * "stranger" lists itself and c1 only, and nobody lists it. */
enum { C1, C2, C3, STRANGER, N_COORD };
static const char *const names[N_COORD] = {"c1", "c2", "c3", "stranger"};

struct fx {
        char *dir;
        struct keys_secret *key[N_COORD];
        char *pub[N_COORD];
        char url[N_COORD][300];
        struct forward *f[N_COORD];
};

/* cfg of coordinator i, listing the coordinators in `listed` (bits). */
static void make_forward(struct fx *x, int i, unsigned listed)
{
        struct cfg_ha_coordinator list[N_COORD];
        struct cfg_ha cfg = {.name = (char *)names[i], .listen = x->url[i]};
        lserr err = {0};

        for (int j = 0; j < N_COORD; j++)
                if (listed & (1u << j))
                        list[cfg.n_coordinators++] = (struct cfg_ha_coordinator){(char *)names[j], x->pub[j]};
        cfg.coordinators = list;
        if (forward_new(&cfg, x->key[i], REQUEST_MAX, 1 << 20, &x->f[i], &err) < 0)
                fail_msg("forward_new %s: %s", names[i], err.msg);
}

static int setup(void **state)
{
        struct fx *x = calloc(1, sizeof(*x));
        char prefix[400];
        lserr err = {0};

        x->dir = tu_mkdtemp();
        for (int i = 0; i < N_COORD; i++) {
                assert_int_equal(keys_generate(&x->key[i], &err), 0);
                snprintf(prefix, sizeof(prefix), "%s/%s", x->dir, names[i]);
                assert_int_equal(keys_write(prefix, x->key[i], &err), 0);
                assert_true(asprintf(&x->pub[i], "%s.pub", prefix) > 0);
                snprintf(x->url[i], sizeof(x->url[i]), "ipc://%s/%s.sock", x->dir, names[i]);
        }
        make_forward(x, C1, 1u << C1 | 1u << C2 | 1u << C3);
        make_forward(x, C2, 1u << C1 | 1u << C2 | 1u << C3);
        make_forward(x, C3, 1u << C1 | 1u << C2 | 1u << C3);
        make_forward(x, STRANGER, 1u << C1 | 1u << STRANGER);
        *state = x;
        return 0;
}

static int teardown(void **state)
{
        struct fx *x = *state;

        for (int i = 0; i < N_COORD; i++) {
                forward_free(x->f[i]);
                keys_secret_free(x->key[i]);
                free(x->pub[i]);
        }
        tu_rmtree(x->dir);
        free(x);
        return 0;
}

static char *args[] = {(char *)"shop"}, *opts[] = {(char *)"name=before-upgrade"};
static const Lockstep__ControlRequest create = {
        PROTOBUF_C_MESSAGE_INIT(&lockstep__control_request__descriptor),
        .command = (char *)"snapshot.create",
        .n_args = 1,
        .args = args,
        .n_options = 1,
        .options = opts,
};
static const struct forward_caller cli = {.uid = 1000, .pid = 4242};

/* A forward as forward_seal makes it, from coordinator i. */
static void seal(struct fx *x, int i, long long issued, uint8_t **buf, size_t *len, uint8_t hash[ENV_HASH_LEN])
{
        lserr err = {0};

        assert_int_equal(forward_seal(x->f[i], &create, &cli, issued, buf, len, hash, &err), 0);
}

/* A forward built by hand: signed by key, its fields as given. */
static void seal_raw(struct keys_secret *key, const char *from, long long issued, const uint8_t nonce[16],
                     uint8_t **buf, size_t *len)
{
        Lockstep__Forward fw = LOCKSTEP__FORWARD__INIT;
        lserr err = {0};

        fw.from = (char *)from;
        fw.issued_us = issued;
        fw.nonce.data = (uint8_t *)nonce;
        fw.nonce.len = 16;
        fw.request = (Lockstep__ControlRequest *)&create;
        fw.caller_uid = fw.caller_pid = -1;
        assert_int_equal(env_seal_message(ENV_FORWARD, key, &fw.base, buf, len, NULL, &err), 0);
}

/* forward_verify at c1 (the leader); on success the forward is checked and freed. */
static int verify_at(struct fx *x, int at, const uint8_t *buf, size_t len, long long now, struct forward_seen *seen,
                     lserr *err)
{
        Lockstep__Forward *fw = NULL;
        int r = forward_verify(x->f[at], buf, len, now, &fw, seen, err);

        if (r == 0)
                lockstep__forward__free_unpacked(fw, NULL);
        else
                assert_null(fw);
        return r;
}

static int verify(struct fx *x, const uint8_t *buf, size_t len, long long now, lserr *err)
{
        struct forward_seen seen;

        return verify_at(x, C1, buf, len, now, &seen, err);
}

static void assert_msg(const lserr *err, const char *want)
{
        if (!strstr(err->msg, want))
                fail_msg("message \"%s\" lacks \"%s\"", err->msg, want);
}

static void test_good_forward(void **state)
{
        struct fx *x = *state;
        Lockstep__Forward *fw = NULL;
        struct forward_seen seen;
        uint8_t *buf, hash[ENV_HASH_LEN];
        size_t len;
        lserr err = {0};

        seal(x, C2, NOW, &buf, &len, hash);
        assert_int_equal(forward_verify(x->f[C1], buf, len, NOW + 29 * SEC, &fw, &seen, &err), 0);
        assert_string_equal(fw->from, "c2");
        assert_string_equal(fw->request->command, "snapshot.create");
        assert_int_equal(fw->request->n_args, 1);
        assert_string_equal(fw->request->options[0], "name=before-upgrade");
        assert_int_equal(fw->caller_uid, 1000);
        assert_int_equal(fw->caller_pid, 4242);
        assert_int_equal(fw->nonce.len, 16);
        assert_true(seen.answerable);
        assert_string_equal(seen.from, "c2");
        assert_memory_equal(seen.hash, hash, ENV_HASH_LEN);
        lockstep__forward__free_unpacked(fw, NULL);
        free(buf);
}

static void test_unknown_and_own_key(void **state)
{
        struct fx *x = *state;
        struct forward_seen seen;
        uint8_t *buf, hash[ENV_HASH_LEN];
        size_t len;
        lserr err = {0};

        seal(x, STRANGER, NOW, &buf, &len, hash);
        assert_int_equal(verify_at(x, C1, buf, len, NOW, &seen, &err), LS_EUNKNOWNKEY);
        assert_msg(&err, "forward signed by key ");
        assert_msg(&err, ": key not among ha.coordinators");
        assert_false(seen.answerable);
        assert_string_equal(seen.from, "");
        free(buf);

        lserr_clear(&err);
        seal(x, C1, NOW, &buf, &len, hash);
        assert_int_equal(verify_at(x, C1, buf, len, NOW, &seen, &err), LS_EUNKNOWNKEY);
        assert_msg(&err, "this lockstepd's own key");
        free(buf);
}

static void test_wrong_from(void **state)
{
        struct fx *x = *state;
        struct forward_seen seen;
        uint8_t nonce[16] = {1}, *buf;
        size_t len;
        lserr err = {0};

        /* c2's key, claiming to be c3 (whom c1 also lists). */
        seal_raw(x->key[C2], "c3", NOW, nonce, &buf, &len);
        assert_int_equal(verify_at(x, C1, buf, len, NOW, &seen, &err), LS_ETARGET);
        assert_string_equal(err.msg, "forward from c2: it says it is from \"c3\", but ha.coordinators lists its key "
                                     "as \"c2\"");
        assert_true(seen.answerable); /* signed: the refusal may be answered, signed */
        free(buf);
        /* Refused forwards leave their nonce unused. */
        lserr_clear(&err);
        seal_raw(x->key[C2], "c2", NOW, nonce, &buf, &len);
        assert_int_equal(verify(x, buf, len, NOW, &err), 0);
        free(buf);
}

/* buf's envelope with one byte of its signature (sig) or body changed. */
static void tamper(uint8_t **buf, size_t *len, int sig)
{
        Lockstep__Envelope *env = lockstep__envelope__unpack(NULL, *len, *buf);

        assert_non_null(env);
        if (sig)
                env->signature.data[7] ^= 0x01;
        else
                env->body.data[env->body.len - 1] ^= 0x01;
        *len = lockstep__envelope__get_packed_size(env);
        lockstep__envelope__pack(env, *buf);
        lockstep__envelope__free_unpacked(env, NULL);
}

static void test_bad_signature(void **state)
{
        struct fx *x = *state;
        struct forward_seen seen;
        uint8_t *buf, hash[ENV_HASH_LEN];
        size_t len;
        lserr err = {0};

        for (int sig = 0; sig <= 1; sig++) {
                lserr_clear(&err);
                seal(x, C2, NOW, &buf, &len, hash);
                tamper(&buf, &len, sig);
                assert_int_equal(verify_at(x, C1, buf, len, NOW, &seen, &err), LS_EBADSIG);
                assert_string_equal(err.msg, "forward from c2: signature does not verify under key c2");
                assert_false(seen.answerable);
                free(buf);
        }
}

static void test_replay(void **state)
{
        struct fx *x = *state;
        uint8_t *buf, hash[ENV_HASH_LEN];
        size_t len;
        lserr err = {0};

        seal(x, C2, NOW, &buf, &len, hash);
        assert_int_equal(verify(x, buf, len, NOW, &err), 0);
        assert_int_equal(verify(x, buf, len, NOW + 5 * SEC, &err), LS_EREPLAY);
        assert_string_equal(err.msg, "forward from c2: nonce seen before (replay)");
        /* Once the window is over, the time check refuses it in turn. */
        lserr_clear(&err);
        assert_int_equal(verify(x, buf, len, NOW + 31 * SEC, &err), LS_EEXPIRED);
        free(buf);
}

static void test_window(void **state)
{
        struct fx *x = *state;
        uint8_t *buf, hash[ENV_HASH_LEN];
        size_t len;
        lserr err = {0};

        seal(x, C2, NOW - 31 * SEC, &buf, &len, hash);
        assert_int_equal(verify(x, buf, len, NOW, &err), LS_EEXPIRED);
        assert_string_equal(err.msg, "forward from c2: issued 31 s ago, outside the 30 s window");
        free(buf);
        lserr_clear(&err);
        seal(x, C2, NOW + 31 * SEC, &buf, &len, hash);
        assert_int_equal(verify(x, buf, len, NOW, &err), LS_EFUTURE);
        assert_string_equal(err.msg, "forward from c2: issued 31 s ahead, outside the 30 s window");
        free(buf);
        /* The edges are inside. */
        seal(x, C2, NOW - 30 * SEC, &buf, &len, hash);
        assert_int_equal(verify(x, buf, len, NOW, &err), 0);
        free(buf);
        seal(x, C2, NOW + 30 * SEC, &buf, &len, hash);
        assert_int_equal(verify(x, buf, len, NOW, &err), 0);
        free(buf);
}

static void test_oversized_and_junk(void **state)
{
        struct fx *x = *state;
        struct forward_seen seen;
        uint8_t *buf = calloc(1, REQUEST_MAX + 1);
        lserr err = {0};

        assert_int_equal(verify_at(x, C1, buf, REQUEST_MAX + 1, NOW, &seen, &err), LS_EOVERSIZE);
        assert_msg(&err, "forward: message of 65537 bytes is over the 65536-byte limit");
        assert_false(seen.answerable);
        lserr_clear(&err);
        memset(buf, 0xff, 64);
        assert_int_equal(verify(x, buf, 64, NOW, &err), LS_EMALFORMED);
        assert_msg(&err, "forward: ");
        free(buf);
}

/* Domain separation: a command to an agent signed by a coordinator key the
 * leader lists is no forward, a forward is no command to an agent, and an
 * answer to a forward is no agent's reply. */
static void test_kinds_apart(void **state)
{
        struct fx *x = *state;
        Lockstep__Command cmd = LOCKSTEP__COMMAND__INIT;
        Lockstep__StatusRequest st = LOCKSTEP__STATUS_REQUEST__INIT;
        Lockstep__ControlReply rep = LOCKSTEP__CONTROL_REPLY__INIT;
        struct env_trusted t = {.roles = CFG_ROLE_SNAPSHOT | CFG_ROLE_REVERT | CFG_ROLE_DELETE | CFG_ROLE_ADMIN};
        struct env_verifier *v = NULL;
        struct replay *rp = NULL;
        Lockstep__Command *got = NULL;
        Lockstep__Reply *gr = NULL;
        const struct env_trusted *k = NULL;
        uint8_t nonce[REPLAY_NONCE_LEN], *buf, hash[ENV_HASH_LEN];
        size_t len;
        lserr err = {0};

        cmd.target = (char *)"host-a";
        cmd.step = LOCKSTEP__STEP__STEP_STATUS;
        cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_STATUS;
        cmd.status = &st;
        assert_int_equal(env_seal_command(x->key[C2], &cmd, 1, NOW, nonce, &buf, &len, hash, &err), 0);
        assert_int_equal(verify(x, buf, len, NOW, &err), LS_EBADSIG);
        free(buf);

        t.pub = *keys_secret_public(x->key[C2]);
        snprintf(t.name, sizeof(t.name), "c2");
        assert_int_equal(replay_open(x->dir, 64, 30 * SEC, &rp, &err), 0);
        assert_int_equal(env_verifier_new("host-a", &t, 1, rp, 30 * SEC, 1 << 20, &v, &err), 0);
        seal(x, C2, NOW, &buf, &len, hash);
        lserr_clear(&err);
        assert_int_equal(env_verify_command(v, buf, len, NOW, &got, &k, NULL, &err), LS_EBADSIG);
        assert_null(got);
        free(buf);

        rep.text = (char *)"ok";
        assert_int_equal(forward_answer(x->f[C2], hash, &rep, &buf, &len, &err), 0);
        assert_int_equal(env_verify_reply(buf, len, 1 << 20, &t.pub, "c2", hash, &gr, &err), LS_EBADSIG);
        assert_null(gr);
        free(buf);
        env_verifier_free(v);
        replay_free(rp);
}

/* The nonce cache holds FORWARD_NONCES_MAX unexpired nonces: one more within
 * the window is refused (nothing is dropped early), and room comes back as
 * the oldest expire. */
static void test_nonce_bound(void **state)
{
        struct fx *x = *state;
        uint8_t *buf, *first, hash[ENV_HASH_LEN];
        size_t len, first_len;
        lserr err = {0};

        seal(x, C2, NOW, &first, &first_len, hash);
        assert_int_equal(verify(x, first, first_len, NOW, &err), 0);
        for (int i = 1; i < FORWARD_NONCES_MAX; i++) {
                seal(x, C2, NOW + i, &buf, &len, hash);
                if (verify(x, buf, len, NOW + i, &err) != 0)
                        fail_msg("forward %d of %d: %s", i, FORWARD_NONCES_MAX, err.msg);
                free(buf);
        }
        seal(x, C2, NOW + 10 * SEC, &buf, &len, hash);
        assert_int_equal(verify(x, buf, len, NOW + 10 * SEC, &err), LS_ENONCEFULL);
        assert_string_equal(err.msg, "forward from c2: 4096 forwards already within the 30 s window, the most this "
                                     "lockstepd keeps track of: refused until the oldest expire");
        /* The full cache still knows every nonce in it. */
        lserr_clear(&err);
        assert_int_equal(verify(x, first, first_len, NOW + 10 * SEC, &err), LS_EREPLAY);
        free(buf);
        /* Past the first nonce's window: room for one, and the first forward
         * is refused by its age. */
        lserr_clear(&err);
        seal(x, C2, NOW + 30 * SEC + 1, &buf, &len, hash);
        assert_int_equal(verify(x, buf, len, NOW + 30 * SEC + 1, &err), 0);
        assert_int_equal(verify(x, first, first_len, NOW + 31 * SEC, &err), LS_EEXPIRED);
        free(buf);
        free(first);
}

/* The follower's checks of the answer. */
static void test_answer_checks(void **state)
{
        struct fx *x = *state;
        Lockstep__ControlReply rep = LOCKSTEP__CONTROL_REPLY__INIT;
        Lockstep__ForwardReply *fr = NULL;
        uint8_t *buf, hash[ENV_HASH_LEN], other[ENV_HASH_LEN];
        size_t len;
        lserr err = {0};

        rep.op = (char *)"op-7";
        randombytes_buf(hash, sizeof(hash));
        memcpy(other, hash, sizeof(other));
        other[0] ^= 1;
        assert_int_equal(forward_answer(x->f[C1], hash, &rep, &buf, &len, &err), 0);
        assert_int_equal(forward_open_reply(x->f[C2], buf, len, "c1", hash, &fr, &err), 0);
        assert_string_equal(fr->reply->op, "op-7");
        assert_string_equal(fr->leader, "c1");
        lockstep__forward_reply__free_unpacked(fr, NULL);
        fr = NULL;
        /* Answering another request. */
        assert_int_equal(forward_open_reply(x->f[C2], buf, len, "c1", other, &fr, &err), LS_EPEER);
        assert_string_equal(err.msg, "the answer is to another request (its request hash differs)");
        /* From another coordinator than the leader we asked. */
        lserr_clear(&err);
        assert_int_equal(forward_open_reply(x->f[C2], buf, len, "c3", hash, &fr, &err), LS_EUNKNOWNKEY);
        assert_null(fr);
        free(buf);
        /* Tampered with. */
        lserr_clear(&err);
        assert_int_equal(forward_answer(x->f[C1], hash, &rep, &buf, &len, &err), 0);
        tamper(&buf, &len, 0);
        assert_int_equal(forward_open_reply(x->f[C2], buf, len, "c1", hash, &fr, &err), LS_EBADSIG);
        free(buf);
        /* An unsigned refusal is never an answer. */
        lserr_clear(&err);
        assert_int_equal(env_seal_refusal(LS_EUNKNOWNKEY, &buf, &len, &err), 0);
        assert_int_equal(forward_open_reply(x->f[C2], buf, len, "c1", hash, &fr, &err), LS_EREFUSED);
        assert_msg(&err, "refused the forward before checking its signature (unknown-key, unsigned)");
        free(buf);
}

static void test_leader_of(void **state)
{
        char name[LS_NAME_MAX + 1] = "", url[CFG_HA_URL_MAX + 1] = "";

        (void)state;
        assert_int_equal(forward_leader_of("c1 pid=12 control=ipc:///run/c.sock peer=tls+tcp://10.0.0.1:7500", name,
                                           url),
                         0);
        assert_string_equal(name, "c1");
        assert_string_equal(url, "tls+tcp://10.0.0.1:7500");
        assert_int_equal(forward_leader_of("c1 pid=12 control=ipc:///run/c.sock", name, url), -ENOENT);
        assert_int_equal(forward_leader_of("", name, url), -EINVAL);
        assert_int_equal(forward_leader_of("c 1", name, url), -ENOENT);
        assert_int_equal(forward_leader_of("c/1 peer=ipc:///x", name, url), -EINVAL);
        assert_int_equal(forward_leader_of("c1 peer=", name, url), -EINVAL);
        assert_int_equal(forward_leader_of("c1 peer=ipc:///a b", name, url), -EINVAL);
}

/* ---- over sockets ---------------------------------------------------------- */

/* The leaders' stub: says who handled what for whom. */
static int stub(void *arg, const Lockstep__ControlRequest *q, const struct forward_caller *who, uint8_t **ret,
                size_t *ret_len)
{
        Lockstep__ControlReply rep = LOCKSTEP__CONTROL_REPLY__INIT;
        char text[256];

        snprintf(text, sizeof(text), "%s handled %s via %s for uid %lld pid %lld", (const char *)arg, q->command,
                 who->via, who->uid, who->pid);
        rep.text = text;
        *ret_len = lockstep__control_reply__get_packed_size(&rep);
        *ret = malloc(*ret_len);
        lockstep__control_reply__pack(&rep, *ret);
        return 0;
}

/* forward_call from c2 to `leader`; the reply's text, malloc'd, or NULL with err. */
static char *call(struct fx *x, int leader, const char *url, int timeout_ms, lserr *err)
{
        Lockstep__ForwardReply *fr = NULL;
        char *text;

        if (forward_call(x->f[C2], names[leader], url, &create, &cli, timeout_ms, &fr, err) < 0)
                return NULL;
        assert_string_equal(fr->leader, names[leader]);
        text = strdup(fr->reply->text);
        lockstep__forward_reply__free_unpacked(fr, NULL);
        return text;
}

static void test_link(void **state)
{
        struct fx *x = *state;
        char *text, nobody[320];
        lserr err = {0};

        assert_int_equal(forward_serve(x->f[C1], 2, stub, (void *)"c1", &err), 0);
        assert_int_equal(forward_serve(x->f[C3], 2, stub, (void *)"c3", &err), 0);
        text = call(x, C1, x->url[C1], 5000, &err);
        assert_non_null(text);
        assert_string_equal(text, "c1 handled snapshot.create via c2 for uid 1000 pid 4242");
        free(text);
        /* The leader moves: the follower's link follows it, and back. */
        text = call(x, C3, x->url[C3], 5000, &err);
        assert_string_equal(text, "c3 handled snapshot.create via c2 for uid 1000 pid 4242");
        free(text);
        text = call(x, C1, x->url[C1], 5000, &err);
        assert_string_equal(text, "c1 handled snapshot.create via c2 for uid 1000 pid 4242");
        free(text);
        /* The URL of one leader, the name of another: its answer does not count. */
        assert_null(call(x, C3, x->url[C1], 5000, &err));
        assert_msg(&err, "forwarding to leader c3 at ipc://");
        assert_msg(&err, "the answer is not signed by the key ha.coordinators lists for it");
        /* Nobody there: the deadline, then the step and the leader named. */
        lserr_clear(&err);
        snprintf(nobody, sizeof(nobody), "ipc://%s/nobody.sock", x->dir);
        assert_null(call(x, C1, nobody, 300, &err));
        assert_int_equal(err.code, LS_ETIMEDOUT);
        assert_msg(&err, "forwarding to leader c1 at ipc://");
        assert_msg(&err, "nobody.sock: no answer within 0.3 s; run lockstep on the leader's host");
}

/* A leader that does not list the follower answers with an unsigned code. */
static void test_link_unlisted(void **state)
{
        struct fx *x = *state;
        Lockstep__ForwardReply *fr = NULL;
        lserr err = {0};

        assert_int_equal(forward_serve(x->f[STRANGER], 1, stub, (void *)"stranger", &err), 0);
        /* c2 lists no "stranger": it refuses to ask one. */
        assert_int_equal(forward_call(x->f[C2], "stranger", x->url[STRANGER], &create, &cli, 5000, &fr, &err),
                         LS_EUNKNOWNKEY);
        assert_msg(&err, "the leader is not among ha.coordinators");
        /* c1 lists the stranger, who lists c1: asked, it answers. */
        lserr_clear(&err);
        forward_free(x->f[C1]);
        make_forward(x, C1, 1u << C1 | 1u << STRANGER);
        assert_int_equal(forward_call(x->f[C1], "stranger", x->url[STRANGER], &create, &cli, 5000, &fr, &err), 0);
        assert_string_equal(fr->reply->text, "stranger handled snapshot.create via c1 for uid 1000 pid 4242");
        lockstep__forward_reply__free_unpacked(fr, NULL);
        fr = NULL;
        /* c3 is not listed by the stranger: an unsigned refusal comes back. */
        lserr_clear(&err);
        forward_free(x->f[C3]);
        make_forward(x, C3, 1u << C1 | 1u << C3 | 1u << STRANGER);
        assert_int_equal(forward_call(x->f[C3], "stranger", x->url[STRANGER], &create, &cli, 5000, &fr, &err),
                         LS_EREFUSED);
        assert_null(fr);
        assert_msg(&err, "refused the forward before checking its signature (unknown-key, unsigned): is this "
                         "lockstepd's key in the leader's ha.coordinators?");
}

/* forward_new refuses what would make every forward fail. */
static void test_new_refusals(void **state)
{
        struct fx *x = *state;
        struct cfg_ha_coordinator list[2] = {{(char *)"c1", x->pub[C2]}, {(char *)"c2", x->pub[C2]}};
        struct cfg_ha cfg = {.name = (char *)"c1", .listen = x->url[C1], .coordinators = list, .n_coordinators = 2};
        struct forward *f = NULL;
        lserr err = {0};

        /* The same key twice. */
        assert_int_equal(forward_new(&cfg, x->key[C1], REQUEST_MAX, 1 << 20, &f, &err), LS_ECONFIG);
        assert_msg(&err, "ha.coordinators: trusted keys \"c1\" and \"c2\" have the same key id");
        /* Our name with another's key. */
        lserr_clear(&err);
        list[1].pubkey = x->pub[C3];
        assert_int_equal(forward_new(&cfg, x->key[C1], REQUEST_MAX, 1 << 20, &f, &err), LS_ECONFIG);
        assert_msg(&err, "ha.coordinators: \"c1\" is listed with key ");
        /* A key that does not load. */
        lserr_clear(&err);
        list[0].pubkey = (char *)"/nonexistent/c1.pub";
        assert_true(forward_new(&cfg, x->key[C1], REQUEST_MAX, 1 << 20, &f, &err) < 0);
        assert_msg(&err, "ha.coordinators[0] (\"c1\"): ");
        assert_null(f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_good_forward, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_and_own_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_from, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_signature, setup, teardown),
                cmocka_unit_test_setup_teardown(test_replay, setup, teardown),
                cmocka_unit_test_setup_teardown(test_window, setup, teardown),
                cmocka_unit_test_setup_teardown(test_oversized_and_junk, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kinds_apart, setup, teardown),
                cmocka_unit_test_setup_teardown(test_nonce_bound, setup, teardown),
                cmocka_unit_test_setup_teardown(test_answer_checks, setup, teardown),
                cmocka_unit_test(test_leader_of),
                cmocka_unit_test_setup_teardown(test_link, setup, teardown),
                cmocka_unit_test_setup_teardown(test_link_unlisted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_new_refusals, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
