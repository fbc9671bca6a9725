/* lockstep-send: drives one agent with signed commands from a shell, the way the
 * coordinator does, and prints the verified reply as JSON. For tests and for
 * operators debugging an agent; not a replacement for lockstepd.
 *
 *   lockstep-send -k COORD.key -p AGENT.pub -u URL -a AGENT [-C COUNTER] [-t MS] [-T TARGET]
 *                 [-o HELD | -i HELD] [-R REPLY] [-x] STEP ...
 *   STEP: status | discover
 *         freeze TXID SNAPSHOT MODE LEASE_MS VM[:TIER[:crash]]...
 *         check TXID MODE LEASE_MS VM[:TIER[:crash]]...
 *         snapshot TXID | commit TXID | abort TXID
 *         delete TXID CUT_TXID SNAPSHOT VM...
 *         revert-prepare TXID CUT_TXID SNAPSHOT VM[:TIER]... [-I VM:DISK:PATH]
 * -I puts one image hint into a REVERT_PREPARE, as a catalog would (the agent
 * must only compare it with what it resolves itself).
 * What an on-path attacker does, for tests: -o seals the command into HELD and
 * sends nothing (a command held back); -i sends the sealed bytes of HELD
 * instead of a new command (no STEP); -x flips a bit of the signature; -R
 * writes the raw reply bytes to REPLY, whatever they are.
 * Exit: 0 reply code OK, 1 other reply code, 2 usage, 3 no verified reply. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentlink.h"
#include "cleanup.h"
#include "fsutil.h"
#include "json.h"

struct raw_opts {
        const char *held_out, *held_in, *reply_out;
        int flip, timeout_ms;
};

static void command_freep(Lockstep__Command **c)
{
        if (*c)
                lockstep__command__free_unpacked(*c, NULL);
}

/* A command sealed earlier (-o): its bytes, hash and the command itself. */
static int read_held(const char *path, struct agentlink_req *req, Lockstep__Command **ret, lserr *err)
{
        Lockstep__Envelope *env;
        char *buf = NULL;
        size_t len = 0;
        int r = fsutil_read_all(path, ENV_MAX_DEFAULT, &buf, &len, err);

        if (r < 0)
                return r;
        env = lockstep__envelope__unpack(NULL, len, (uint8_t *)buf);
        *ret = env ? lockstep__command__unpack(NULL, env->body.len, env->body.data) : NULL;
        if (env)
                lockstep__envelope__free_unpacked(env, NULL);
        if (!*ret || env_body_hash((uint8_t *)buf, len, ENV_MAX_DEFAULT, req->hash) < 0) {
                free(buf);
                return lserr_set(err, -EINVAL, "%s: not a sealed command", path);
        }
        req->buf = (uint8_t *)buf;
        req->len = len;
        return 0;
}

/* The -o/-i/-R/-x path: one call by hand, no stale-counter healing. */
static int send_raw(struct agentlink *l, Lockstep__Command *cmd, const struct raw_opts *o, Lockstep__Reply **ret,
                    lserr *err)
{
        _cleanup_(command_freep) Lockstep__Command *held = NULL;
        struct agentlink_req req = {0};
        _cleanup_free_ uint8_t *resp = NULL;
        size_t resp_len = 0;
        int r = o->held_in ? read_held(o->held_in, &req, &held, err) : agentlink_seal(l, cmd, &req, err);

        if (r < 0)
                return r;
        if (o->held_out) {
                r = fsutil_write_atomic(o->held_out, req.buf, req.len, 0600, 0, err);
                free(req.buf);
                return r < 0 ? r : 1;
        }
        /* The last bytes of an envelope are its signature's. */
        if (o->flip)
                req.buf[req.len - 1] ^= 1;
        r = transport_call(agentlink_socket(l), req.buf, req.len, o->timeout_ms, &resp, &resp_len, err);
        if (r >= 0 && o->reply_out)
                r = fsutil_write_atomic(o->reply_out, resp, resp_len, 0600, 0, err);
        if (r >= 0)
                r = agentlink_accept(l, held ? held : cmd, &req, resp, resp_len, fsutil_now_us(), ret, err);
        free(req.buf);
        return r;
}

static Lockstep__Mode mode_of(const char *word)
{
        return !strcmp(word, "pause") ? LOCKSTEP__MODE__MODE_PAUSE
               : !strcmp(word, "memory") ? LOCKSTEP__MODE__MODE_MEMORY
                                         : LOCKSTEP__MODE__MODE_QUIESCE;
}

/* "VM[:TIER[:crash]]" words into members; the arrays are the caller's. */
static int members_of(char **specs, size_t n, Lockstep__Member **ret_mem, Lockstep__Member ***ret_memp)
{
        Lockstep__Member *mem = calloc(n, sizeof(*mem));
        Lockstep__Member **memp = calloc(n, sizeof(*memp));

        if (!mem || !memp) {
                free(mem);
                free(memp);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                char *spec = specs[i], *colon;
                lockstep__member__init(&mem[i]);
                colon = strchr(spec, ':');
                if (colon) {
                        *colon = '\0';
                        mem[i].tier = (uint32_t)strtoul(colon + 1, NULL, 10);
                        if (strstr(colon + 1, ":crash"))
                                mem[i].consistency = LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH;
                }
                mem[i].vm = spec;
                memp[i] = &mem[i];
        }
        *ret_mem = mem;
        *ret_memp = memp;
        return 0;
}

static const char *code_name(int code)
{
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&lockstep__error_code__descriptor, code);

        return v ? v->name : "UNKNOWN";
}

static const char *state_name(int s)
{
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&lockstep__txn_state__descriptor, s);

        return v ? v->name : "UNKNOWN";
}

static void print_reply(const Lockstep__Reply *r)
{
        struct json j;

        json_init(&j, stdout);
        json_obj_begin(&j, NULL);
        json_str(&j, "agent", r->agent);
        json_str(&j, "txid", r->txid);
        json_str(&j, "step", env_step_name(r->step));
        json_str(&j, "code", code_name(r->code));
        json_str(&j, "message", r->message);
        json_str(&j, "reject_reason", r->code == LOCKSTEP__ERROR_CODE__E_REJECTED ? lserr_name(r->reject_reason) : NULL);
        if (r->counter_seen)
                json_uint(&j, "counter_seen", r->counter_seen);
        json_str(&j, "state", state_name(r->state));
        json_str(&j, "version", r->version);
        json_int(&j, "now_us", r->now_us);
        json_arr_begin(&j, "members");
        for (size_t i = 0; i < r->n_members; i++) {
                const Lockstep__MemberResult *m = r->members[i];
                json_obj_begin(&j, NULL);
                json_str(&j, "vm", m->vm);
                json_str(&j, "code", code_name(m->code));
                json_str(&j, "message", m->message);
                json_str(&j, "state", m->state);
                json_str(&j, "group", m->group_label);
                json_str(&j, "tier", m->tier_label);
                if (m->timings) {
                        json_uint(&j, "freeze_us", m->timings->freeze_us);
                        json_uint(&j, "snapshot_us", m->timings->snapshot_us);
                        json_uint(&j, "thaw_us", m->timings->thaw_us);
                        json_uint(&j, "frozen_for_us", m->timings->frozen_for_us);
                        json_int(&j, "frozen_at_us", m->timings->frozen_at_us);
                        json_int(&j, "thawed_at_us", m->timings->thawed_at_us);
                }
                json_arr_begin(&j, "disks");
                for (size_t k = 0; k < m->n_disks; k++) {
                        json_obj_begin(&j, NULL);
                        json_str(&j, "disk", m->disks[k]->disk);
                        json_str(&j, "before", m->disks[k]->before);
                        json_str(&j, "after", m->disks[k]->after);
                        json_obj_end(&j);
                }
                json_arr_end(&j);
                json_obj_end(&j);
        }
        json_arr_end(&j);
        json_arr_begin(&j, "in_doubt");
        for (size_t i = 0; i < r->n_in_doubt; i++) {
                json_obj_begin(&j, NULL);
                json_str(&j, "txid", r->in_doubt[i]->txid);
                json_str(&j, "state", state_name(r->in_doubt[i]->state));
                json_arr_begin(&j, "vms");
                for (size_t k = 0; k < r->in_doubt[i]->n_vms; k++)
                        json_str(&j, NULL, r->in_doubt[i]->vms[k]);
                json_arr_end(&j);
                json_obj_end(&j);
        }
        json_arr_end(&j);
        json_obj_end(&j);
        json_end(&j);
}

static int usage(void)
{
        fprintf(stderr, "usage: lockstep-send -k KEY -p AGENT.pub -u URL -a AGENT [-C COUNTER] [-t MS] [-T TARGET]\n"
                        "                     [-A CA -N NAME] [-o HELD | -i HELD] [-R REPLY] [-x] STEP ...\n"
                        "  (-A, -N: the CA file and server name a tls+tcp:// agent is verified with)\n"
                        "  status | discover | snapshot TXID | commit TXID | abort TXID\n"
                        "  freeze TXID SNAPSHOT quiesce|pause|memory LEASE_MS VM[:TIER[:crash]]...\n"
                        "  check TXID quiesce|pause|memory LEASE_MS VM[:TIER[:crash]]...\n"
                        "  delete TXID CUT_TXID SNAPSHOT VM...\n"
                        "  revert-prepare TXID CUT_TXID SNAPSHOT VM[:TIER]...  (-I VM:DISK:PATH: an image hint)\n");
        return 2;
}

int main(int argc, char **argv)
{
        const char *keyf = NULL, *pubf = NULL, *url = NULL, *agent = NULL, *ctrf = NULL, *target = NULL;
        struct transport_tls tls = {0};
        int timeout = 30000, c, r, rc = 3;
        struct keys_secret *key = NULL;
        struct keys_public pub;
        struct counter *ctr = NULL;
        struct agentlink *l = NULL;
        Lockstep__Command cmd = LOCKSTEP__COMMAND__INIT;
        Lockstep__StatusRequest st = LOCKSTEP__STATUS_REQUEST__INIT;
        Lockstep__DiscoverRequest di = LOCKSTEP__DISCOVER_REQUEST__INIT;
        Lockstep__FreezeRequest fz = LOCKSTEP__FREEZE_REQUEST__INIT;
        Lockstep__CheckRequest ck = LOCKSTEP__CHECK_REQUEST__INIT;
        Lockstep__SnapshotRequest sn = LOCKSTEP__SNAPSHOT_REQUEST__INIT;
        Lockstep__DecideRequest de = LOCKSTEP__DECIDE_REQUEST__INIT;
        Lockstep__DeleteRequest dl = LOCKSTEP__DELETE_REQUEST__INIT;
        Lockstep__RevertPrepareRequest rp = LOCKSTEP__REVERT_PREPARE_REQUEST__INIT;
        Lockstep__MemberDisks hint_md = LOCKSTEP__MEMBER_DISKS__INIT, *hint_mdp = &hint_md;
        Lockstep__DiskImage hint_di = LOCKSTEP__DISK_IMAGE__INIT, *hint_dip = &hint_di;
        char *hint = NULL;
        Lockstep__Member *mem = NULL, **memp = NULL;
        Lockstep__Reply *rep = NULL;
        char ctrbuf[4200];
        struct raw_opts raw = {0};
        lserr err = {0};

        long long offset_s = 0;

        /* The test clock of the agent it talks to, when the test gives one:
         * start_agent's readiness probe must pass on a skewed agent. */
        if (fsutil_clock_offset_env(&offset_s, &err) < 0) {
                fprintf(stderr, "lockstep-send: %s\n", err.msg);
                return 2;
        }
        while ((c = getopt(argc, argv, "k:p:u:a:C:t:T:o:i:R:xA:N:I:")) != -1) {
                switch (c) {
                case 'k': keyf = optarg; break;
                case 'p': pubf = optarg; break;
                case 'u': url = optarg; break;
                case 'a': agent = optarg; break;
                case 'C': ctrf = optarg; break;
                case 't': timeout = atoi(optarg); break;
                case 'T': target = optarg; break; /* address another agent: tests refusals */
                case 'o': raw.held_out = optarg; break;
                case 'i': raw.held_in = optarg; break;
                case 'R': raw.reply_out = optarg; break;
                case 'x': raw.flip = 1; break;
                case 'A': tls.ca = optarg; break;
                case 'N': tls.server_name = optarg; break;
                case 'I': hint = optarg; break;
                default: return usage();
                }
        }
        if (!keyf || !pubf || !url || !agent || (optind >= argc && !raw.held_in) || (raw.held_in && raw.held_out))
                return usage();
        if (!ctrf) {
                snprintf(ctrbuf, sizeof(ctrbuf), "%s.counter", keyf);
                ctrf = ctrbuf;
        }
        const char *step = optind < argc ? argv[optind++] : "status";
        cmd.txid = "";
        cmd.target = (char *)target;
        if (!strcmp(step, "status")) {
                cmd.step = LOCKSTEP__STEP__STEP_STATUS;
                cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_STATUS;
                cmd.status = &st;
        } else if (!strcmp(step, "discover")) {
                cmd.step = LOCKSTEP__STEP__STEP_DISCOVER;
                cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_DISCOVER;
                cmd.discover = &di;
        } else if (!strcmp(step, "freeze") && argc - optind >= 5) {
                size_t n = (size_t)(argc - optind - 4);
                cmd.txid = argv[optind];
                fz.snapshot = argv[optind + 1];
                fz.mode = mode_of(argv[optind + 2]);
                fz.lease_ms = (uint32_t)strtoul(argv[optind + 3], NULL, 10);
                if (members_of(argv + optind + 4, n, &mem, &memp) < 0)
                        return 3;
                fz.n_members = n;
                fz.members = memp;
                cmd.step = LOCKSTEP__STEP__STEP_FREEZE;
                cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_FREEZE;
                cmd.freeze = &fz;
        } else if (!strcmp(step, "check") && argc - optind >= 4) {
                size_t n = (size_t)(argc - optind - 3);
                cmd.txid = argv[optind];
                ck.mode = mode_of(argv[optind + 1]);
                ck.lease_ms = (uint32_t)strtoul(argv[optind + 2], NULL, 10);
                if (members_of(argv + optind + 3, n, &mem, &memp) < 0)
                        return 3;
                ck.n_members = n;
                ck.members = memp;
                cmd.step = LOCKSTEP__STEP__STEP_CHECK;
                cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_CHECK;
                cmd.check = &ck;
        } else if (!strcmp(step, "delete") && argc - optind >= 4) {
                size_t n = (size_t)(argc - optind - 3);
                cmd.txid = argv[optind];
                dl.cut_txid = argv[optind + 1];
                dl.snapshot = argv[optind + 2];
                mem = calloc(n, sizeof(*mem));
                memp = calloc(n, sizeof(*memp));
                if (!mem || !memp)
                        return 3;
                for (size_t i = 0; i < n; i++) {
                        lockstep__member__init(&mem[i]);
                        mem[i].vm = argv[optind + 3 + (int)i];
                        memp[i] = &mem[i];
                }
                dl.n_members = n;
                dl.members = memp;
                cmd.step = LOCKSTEP__STEP__STEP_DELETE;
                cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_DELETE;
                cmd.delete_ = &dl;
        } else if (!strcmp(step, "revert-prepare") && argc - optind >= 4) {
                size_t n = (size_t)(argc - optind - 3);
                cmd.txid = argv[optind];
                rp.cut_txid = argv[optind + 1];
                rp.snapshot = argv[optind + 2];
                if (members_of(argv + optind + 3, n, &mem, &memp) < 0)
                        return 3;
                rp.n_members = n;
                rp.members = memp;
                if (hint) { /* VM:DISK:PATH */
                        char *d = strchr(hint, ':'), *path = d ? strchr(d + 1, ':') : NULL;
                        if (!path)
                                return usage();
                        *d++ = '\0';
                        *path++ = '\0';
                        hint_md.vm = hint;
                        hint_di.disk = d;
                        hint_di.before = path;
                        hint_md.n_disks = 1;
                        hint_md.disks = &hint_dip;
                        rp.n_images = 1;
                        rp.images = &hint_mdp;
                }
                cmd.step = LOCKSTEP__STEP__STEP_REVERT_PREPARE;
                cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_PREPARE;
                cmd.revert_prepare = &rp;
        } else if (!strcmp(step, "snapshot") && argc - optind == 1) {
                cmd.txid = argv[optind];
                cmd.step = LOCKSTEP__STEP__STEP_SNAPSHOT;
                cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_SNAPSHOT;
                cmd.snapshot = &sn;
        } else if ((!strcmp(step, "commit") || !strcmp(step, "abort")) && argc - optind == 1) {
                cmd.txid = argv[optind];
                de.decision = !strcmp(step, "commit") ? LOCKSTEP__DECISION__DECISION_COMMIT
                                                      : LOCKSTEP__DECISION__DECISION_ABORT;
                cmd.step = LOCKSTEP__STEP__STEP_DECIDE;
                cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_DECIDE;
                cmd.decide = &de;
        } else {
                return usage();
        }

        r = keys_load_secret(keyf, &key, &err);
        if (r >= 0)
                r = keys_load_public(pubf, &pub, &err);
        if (r >= 0)
                r = counter_open(ctrf, &ctr, &err);
        if (r >= 0)
                r = agentlink_open(agent, url, &pub, key, ctr, &tls, &l, &err);
        raw.timeout_ms = timeout;
        if (r >= 0 && (raw.held_out || raw.held_in || raw.reply_out || raw.flip))
                r = send_raw(l, &cmd, &raw, &rep, &err);
        else if (r >= 0)
                r = agentlink_call(l, &cmd, timeout, &rep, &err);
        if (r == 1) {
                rc = 0;
                goto out;
        }
        if (r < 0) {
                fprintf(stderr, "lockstep-send: %s\n", err.msg);
                goto out;
        }
        print_reply(rep);
        rc = rep->code == LOCKSTEP__ERROR_CODE__OK ? 0 : 1;
        lockstep__reply__free_unpacked(rep, NULL);
out:
        agentlink_close(l);
        counter_free(ctr);
        keys_secret_free(key);
        free(mem);
        free(memp);
        return rc;
}
