/* make_seeds: writes the seed corpora that the code itself produces (signed
 * envelopes and their bodies, journal files, guardian lines, control requests)
 * into DIR/<harness>/. Usage: fuzz-make-seeds DIR (tests/fuzz/corpus). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "envelope_common.h"
#include "guardian_priv.h"
#include "journal.h"

static const char *top;

static void put(const char *harness, const char *name, const uint8_t *buf, size_t len)
{
        char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", top, harness);
        mkdir(path, 0755);
        snprintf(path, sizeof(path), "%s/%s/%s", top, harness, name);
        if (!(f = fopen(path, "wb")) || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
                perror(path);
                exit(1);
        }
}

/* Packs msg; with prefix >= 0 that byte goes first (envelope_signed's kind). */
static void put_msg(const char *harness, const char *name, const ProtobufCMessage *msg, int prefix)
{
        size_t n = protobuf_c_message_get_packed_size(msg), o = prefix >= 0;
        uint8_t *buf = malloc(n + 1);

        if (prefix >= 0)
                buf[0] = (uint8_t)prefix;
        protobuf_c_message_pack(msg, buf + o);
        put(harness, name, buf, n + o);
        free(buf);
}

static void put_sealed(const char *name, enum env_kind kind, const ProtobufCMessage *msg)
{
        size_t n = protobuf_c_message_get_packed_size(msg), len = 0;
        uint8_t *body = malloc(n ? n : 1), *env = NULL;
        lserr err = {0};

        protobuf_c_message_pack(msg, body);
        if (env_seal(kind, fuzz_key(), body, n, &env, &len, &err) < 0) {
                fprintf(stderr, "seal: %s\n", err.msg);
                exit(1);
        }
        put("envelope", name, env, len);
        free(env);
        free(body);
}

static void command_seeds(void)
{
        static uint8_t nonce[REPLAY_NONCE_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        Lockstep__Member m1 = LOCKSTEP__MEMBER__INIT, m2 = LOCKSTEP__MEMBER__INIT;
        Lockstep__Member *ms[] = {&m1, &m2};
        Lockstep__DiskImage di = LOCKSTEP__DISK_IMAGE__INIT, *dis[] = {&di};
        Lockstep__MemberDisks md = LOCKSTEP__MEMBER_DISKS__INIT, *mds[] = {&md};
        Lockstep__StatusRequest st = LOCKSTEP__STATUS_REQUEST__INIT;
        Lockstep__FreezeRequest fr = LOCKSTEP__FREEZE_REQUEST__INIT;
        Lockstep__DecideRequest de = LOCKSTEP__DECIDE_REQUEST__INIT;
        Lockstep__RevertPrepareRequest rp = LOCKSTEP__REVERT_PREPARE_REQUEST__INIT;
        Lockstep__DeleteRequest dl = LOCKSTEP__DELETE_REQUEST__INIT;
        Lockstep__CheckRequest ck = LOCKSTEP__CHECK_REQUEST__INIT;
        Lockstep__Command c = LOCKSTEP__COMMAND__INIT;
        char name[64];

        m1.vm = (char *)"web1";
        m2.vm = (char *)"db1";
        m2.tier = 1;
        m2.consistency = LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH;
        di.disk = (char *)"vda";
        di.before = (char *)"/var/lib/libvirt/images/web1.qcow2";
        md.vm = (char *)"web1";
        md.n_disks = 1;
        md.disks = dis;
        c.target = (char *)FUZZ_AGENT;
        c.issued_at_us = FUZZ_NOW_US;
        c.nonce.data = nonce;
        c.nonce.len = sizeof(nonce);
        c.counter = 1;
        for (int step = 1; step <= 12; step++) {
                c.step = (Lockstep__Step)step;
                c.txid = step <= 2 ? (char *)"" : (char *)"tx-0001";
                c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_STATUS + (step - 1);
                switch (step) {
                case 1: c.status = &st; break;
                case 3:
                        fr.snapshot = (char *)"nightly";
                        fr.lease_ms = 30000;
                        fr.n_members = 2;
                        fr.members = ms;
                        fr.hook = (char *)"flush";
                        c.freeze = &fr;
                        break;
                case 5: de.decision = LOCKSTEP__DECISION__DECISION_COMMIT; c.decide = &de; break;
                case 6:
                        rp.cut_txid = (char *)"tx-0000";
                        rp.snapshot = (char *)"nightly";
                        rp.n_members = 1;
                        rp.members = ms;
                        rp.n_images = 1;
                        rp.images = mds;
                        c.revert_prepare = &rp;
                        break;
                case 11:
                        dl.cut_txid = (char *)"tx-0000";
                        dl.snapshot = (char *)"nightly";
                        dl.n_members = 1;
                        dl.members = ms;
                        c.delete_ = &dl;
                        break;
                case 12: ck.lease_ms = 30000; ck.n_members = 2; ck.members = ms; c.check = &ck; break;
                default: {
                        /* Empty payload messages share one layout; any of them will do. */
                        static Lockstep__RevertStartRequest rs = LOCKSTEP__REVERT_START_REQUEST__INIT;
                        static Lockstep__DiscoverRequest di_ = LOCKSTEP__DISCOVER_REQUEST__INIT;
                        static Lockstep__SnapshotRequest sn = LOCKSTEP__SNAPSHOT_REQUEST__INIT;
                        static Lockstep__RevertStopRequest rst = LOCKSTEP__REVERT_STOP_REQUEST__INIT;
                        static Lockstep__RevertSwitchRequest rsw = LOCKSTEP__REVERT_SWITCH_REQUEST__INIT;
                        static Lockstep__RevertDecideRequest rd = LOCKSTEP__REVERT_DECIDE_REQUEST__INIT;
                        rd.decision = LOCKSTEP__DECISION__DECISION_ABORT;
                        c.discover = &di_;
                        if (step == 4) c.snapshot = &sn;
                        if (step == 7) c.revert_stop = &rst;
                        if (step == 8) c.revert_switch = &rsw;
                        if (step == 9) c.revert_start = &rs;
                        if (step == 10) c.revert_decide = &rd;
                }
                }
                snprintf(name, sizeof(name), "command-%s", env_step_name(c.step));
                put_msg("envelope_signed", name, &c.base, 0);
                put_sealed(name, ENV_COMMAND, &c.base);
        }
}

static void reply_seeds(void)
{
        static uint8_t hash[ENV_HASH_LEN];
        Lockstep__DiskImage di = LOCKSTEP__DISK_IMAGE__INIT, *dis[] = {&di};
        Lockstep__Timings tm = LOCKSTEP__TIMINGS__INIT;
        Lockstep__MemberResult mr = LOCKSTEP__MEMBER_RESULT__INIT, *mrs[] = {&mr};
        Lockstep__InDoubt id = LOCKSTEP__IN_DOUBT__INIT, *ids[] = {&id};
        char *vms[] = {(char *)"web1"};
        Lockstep__Reply r = LOCKSTEP__REPLY__INIT;

        memset(hash, FUZZ_CMD_HASH_BYTE, sizeof(hash));
        di.disk = (char *)"vda";
        di.before = (char *)"/var/lib/libvirt/images/web1.qcow2";
        di.after = (char *)"/var/lib/libvirt/images/web1.tx-0001.qcow2";
        tm.freeze_us = 1200;
        mr.vm = (char *)"web1";
        mr.timings = &tm;
        mr.n_disks = 1;
        mr.disks = dis;
        r.agent = (char *)FUZZ_AGENT;
        r.command_hash.data = hash;
        r.command_hash.len = sizeof(hash);
        r.txid = (char *)"tx-0001";
        r.step = LOCKSTEP__STEP__STEP_SNAPSHOT;
        r.state = LOCKSTEP__TXN_STATE__TXN_SNAPPED;
        r.n_members = 1;
        r.members = mrs;
        r.now_us = FUZZ_NOW_US;
        put_msg("envelope_signed", "reply-snapshot", &r.base, 1);
        put_sealed("reply-snapshot", ENV_REPLY, &r.base);
        id.txid = (char *)"tx-0001";
        id.state = LOCKSTEP__TXN_STATE__TXN_FROZEN;
        id.n_vms = 1;
        id.vms = vms;
        r = (Lockstep__Reply)LOCKSTEP__REPLY__INIT;
        r.agent = (char *)FUZZ_AGENT;
        r.command_hash.data = hash;
        r.command_hash.len = sizeof(hash);
        r.step = LOCKSTEP__STEP__STEP_STATUS;
        r.n_in_doubt = 1;
        r.in_doubt = ids;
        r.version = (char *)"0.1.0";
        put_msg("envelope_signed", "reply-status", &r.base, 1);
        put_sealed("reply-status", ENV_REPLY, &r.base);
        r.code = LOCKSTEP__ERROR_CODE__E_REJECTED;
        r.reject_reason = -1;
        r.counter_seen = 7;
        r.n_in_doubt = 0;
        put_msg("envelope_signed", "reply-rejected", &r.base, 1);
        put_sealed("reply-rejected", ENV_REPLY, &r.base);
}

/* Journal files as journal_write makes them, copied out of a scratch directory. */
static void journal_seeds(void)
{
        Lockstep__Member m = LOCKSTEP__MEMBER__INIT;
        Lockstep__DiskImage di = LOCKSTEP__DISK_IMAGE__INIT, *dis[] = {&di};
        Lockstep__JournalMember jm = LOCKSTEP__JOURNAL_MEMBER__INIT, *jms[] = {&jm};
        uint8_t packed[] = {0x0a, 0x06, 'a', 'g', 'e', 'n', 't', '1'};
        Lockstep__JournalReply jr = LOCKSTEP__JOURNAL_REPLY__INIT, *jrs[] = {&jr};
        Lockstep__JournalTxn t = LOCKSTEP__JOURNAL_TXN__INIT;
        const char *dir = fuzz_dir();
        lserr err = {0};
        struct { const char *txid; int state, revert; } cases[] = {
                {"tx-frozen", LOCKSTEP__JOURNAL_STATE__J_FROZEN, 0},
                {"tx-snapped", LOCKSTEP__JOURNAL_STATE__J_SNAPPED, 0},
                {"tx-committed", LOCKSTEP__JOURNAL_STATE__J_COMMITTED, 0},
                {"tx-switched", LOCKSTEP__JOURNAL_STATE__J_R_SWITCHED, 1},
        };

        m.vm = (char *)"web1";
        di.disk = (char *)"vda";
        di.before = (char *)"/var/lib/libvirt/images/web1.qcow2";
        di.after = (char *)"/var/lib/libvirt/images/web1.tx-0001.qcow2";
        jm.member = &m;
        jm.quiesced = 1;
        jm.n_disks = 1;
        jm.disks = dis;
        jr.step = LOCKSTEP__STEP__STEP_FREEZE;
        jr.reply.data = packed;
        jr.reply.len = sizeof(packed);
        t.version = JOURNAL_VERSION;
        t.snapshot = (char *)"nightly";
        t.lease_deadline_us = FUZZ_NOW_US + 30000000;
        t.n_members = 1;
        t.members = jms;
        t.n_replies = 1;
        t.replies = jrs;
        t.updated_us = FUZZ_NOW_US;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char path[256], name[128];
                FILE *f;
                uint8_t buf[65536];
                size_t n;
                t.txid = (char *)cases[i].txid;
                t.state = cases[i].state;
                t.revert = cases[i].revert;
                t.cut_txid = cases[i].revert ? (char *)"tx-0000" : (char *)"";
                jm.switched = cases[i].revert;
                if (journal_write(dir, &t, &err) < 0) {
                        fprintf(stderr, "journal_write: %s\n", err.msg);
                        exit(1);
                }
                snprintf(path, sizeof(path), "%s/%s.txn", dir, t.txid);
                if (!(f = fopen(path, "rb")))
                        exit(1);
                n = fread(buf, 1, sizeof(buf), f);
                fclose(f);
                snprintf(name, sizeof(name), "%s.txn", t.txid);
                put("journal", name, buf, n);
        }
        /* A version 1 file: the packed record without the footer. */
        t.version = 1;
        t.txid = (char *)"tx-v1";
        t.state = LOCKSTEP__JOURNAL_STATE__J_SNAPPED;
        put_msg("journal", "tx-v1.txn", &t.base, -1);
        fuzz_dir_clear();
}

static void guardian_seeds(void)
{
        struct guardian_msg a = {.op = 'A', .txid = "tx-0001", .vm = "web1", .deadline = 123456789, .thaw = 1},
                            d = {.op = 'D', .txid = "tx-0001", .vm = "web1"};
        char line[GUARDIAN_MSG_MAX];

        guardian_msg_format(&a, line, sizeof(line));
        put("guardian", "arm", (const uint8_t *)line, strlen(line));
        a.resume = 1;
        a.thaw = 0;
        guardian_msg_format(&a, line, sizeof(line));
        put("guardian", "arm-resume", (const uint8_t *)line, strlen(line));
        guardian_msg_format(&d, line, sizeof(line));
        put("guardian", "disarm", (const uint8_t *)line, strlen(line));
}

/* Requests as the CLI (lockstep.c) builds them. */
static void control_seeds(void)
{
        static const struct { const char *name, *command, *arg, *opt1, *opt2; } reqs[] = {
                {"create", "snapshot.create", "web", "name=nightly", "mode=pause"},
                {"create-lease", "snapshot.create", "web", "lease=20", NULL},
                {"delete", "snapshot.delete", "tx-0001", NULL, NULL},
                {"revert", "snapshot.revert", "tx-0001", "undo=1", NULL},
                {"list", "snapshot.list", "web", NULL, NULL},
                {"show", "snapshot.show", "tx-0001", NULL, NULL},
                {"agents", "agents", NULL, NULL, NULL},
                {"groups", "groups", NULL, NULL, NULL},
                {"schedules", "schedules", NULL, NULL, NULL},
                {"prune-dry", "prune", "web", "dry_run=1", NULL},
                {"prune", "prune", "web", NULL, NULL},
                {"check", "check", "web", "mode=quiesce", "lease=30"},
                {"recover", "recover", NULL, NULL, NULL},
                {"events", "events", NULL, "limit=20", "since=1"},
                {"reload", "reload", NULL, NULL, NULL},
                {"poll", "op.poll", "op-1", NULL, NULL},
        };
        for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
                Lockstep__ControlRequest q = LOCKSTEP__CONTROL_REQUEST__INIT;
                char *args[1] = {(char *)reqs[i].arg}, *opts[2] = {(char *)reqs[i].opt1, (char *)reqs[i].opt2};
                q.command = (char *)reqs[i].command;
                q.n_args = reqs[i].arg != NULL;
                q.args = args;
                q.n_options = !reqs[i].opt1 ? 0 : !reqs[i].opt2 ? 1 : 2;
                q.options = opts;
                put_msg("control", reqs[i].name, &q.base, -1);
        }
}

/* fuzz_forward's: a forward and an answer, as bodies (signed by the harness)
 * and as envelopes; an agent's command where a forward goes, an unsigned
 * refusal where an answer does; leader values. */
static void put_forward_env(const char *name, int mode, enum env_kind kind, const struct keys_secret *key,
                            const ProtobufCMessage *msg)
{
        size_t n = protobuf_c_message_get_packed_size(msg), len = 0;
        uint8_t *body = malloc(n ? n : 1), *env = NULL, *buf;
        lserr err = {0};

        protobuf_c_message_pack(msg, body);
        if (env_seal(kind, key, body, n, &env, &len, &err) < 0 || !(buf = malloc(len + 1))) {
                fprintf(stderr, "seal: %s\n", err.msg);
                exit(1);
        }
        buf[0] = (uint8_t)mode;
        memcpy(buf + 1, env, len);
        put("forward", name, buf, len + 1);
        free(buf);
        free(env);
        free(body);
}

/* An unsigned refusal where the follower waits for an answer (mode 2). */
static void put_refusal_seed(void)
{
        uint8_t *ref = NULL, *buf;
        size_t len = 0;
        lserr err = {0};

        if (env_seal_refusal(LS_EUNKNOWNKEY, &ref, &len, &err) < 0 || !(buf = malloc(len + 1)))
                exit(1);
        buf[0] = 2;
        memcpy(buf + 1, ref, len);
        put("forward", "answer-refusal", buf, len + 1);
        free(buf);
        free(ref);
}

static void forward_seeds(void)
{
        static uint8_t nonce[REPLAY_NONCE_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        static uint8_t hash[ENV_HASH_LEN];
        static const char *const values[] = {"c1 pid=12 control=ipc:///run/lockstep/control.sock "
                                             "peer=tls+tcp://10.77.0.101:7500",
                                             "c1 pid=12 control=ipc:///run/lockstep/control.sock"};
        char *args[] = {(char *)"web"}, *opts[] = {(char *)"name=nightly"}, v[200];
        Lockstep__ControlRequest q = LOCKSTEP__CONTROL_REQUEST__INIT;
        Lockstep__ControlReply rep = LOCKSTEP__CONTROL_REPLY__INIT;
        Lockstep__Forward fw = LOCKSTEP__FORWARD__INIT;
        Lockstep__ForwardReply fr = LOCKSTEP__FORWARD_REPLY__INIT;

        q.command = (char *)"snapshot.create";
        q.n_args = 1;
        q.args = args;
        q.n_options = 1;
        q.options = opts;
        fw.from = (char *)"c2";
        fw.issued_us = FUZZ_NOW_US;
        fw.nonce.data = nonce;
        fw.nonce.len = sizeof(nonce);
        fw.request = &q;
        fw.caller_uid = 1000;
        fw.caller_pid = 4242;
        put_msg("forward", "forward-body", &fw.base, 1);
        put_forward_env("forward-envelope", 0, ENV_FORWARD, fuzz_key(), &fw.base);
        put_forward_env("forward-as-command", 0, ENV_COMMAND, fuzz_key(), &fw.base);
        memset(hash, FUZZ_CMD_HASH_BYTE, sizeof(hash));
        rep.op = (char *)"op-1";
        fr.request_hash.data = hash;
        fr.request_hash.len = sizeof(hash);
        fr.reply = &rep;
        fr.leader = (char *)"c1";
        put_msg("forward", "answer-body", &fr.base, 3);
        put_forward_env("answer-envelope", 2, ENV_FORWARD_REPLY, fuzz_key2(), &fr.base);
        put_refusal_seed();
        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                char name[32];
                int n = snprintf(v, sizeof(v), "%c%s", 0, values[i]);
                snprintf(name, sizeof(name), "leader-value-%zu", i);
                put("forward", name, (const uint8_t *)v, (size_t)n);
        }
}

int main(int argc, char **argv)
{
        if (argc != 2) {
                fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
                return 2;
        }
        top = argv[1];
        command_seeds();
        reply_seeds();
        journal_seeds();
        guardian_seeds();
        control_seeds();
        forward_seeds();
        return 0;
}
