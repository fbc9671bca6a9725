/* fuzz_forward: what one lockstepd reads from another: a forward, as the
 * leader checks it (forward_verify), and an answer, as the follower checks it
 * (forward_open_reply). Coordinator c2 signs with the fuzz key, c1 (the
 * leader) with the second one, and both list both. The first byte's low two
 * bits: 0 the rest is a forward's envelope; 1 a forward's body, signed here by
 * c2 so that the fuzzer gets behind the signature; 2 an answer's envelope; 3
 * an answer's body, signed here by c1. Mode 0 also reads the rest as a leader
 * key's value (forward_leader_of). A fixed clock; a fresh nonce cache per
 * input. */
#include <stdlib.h>
#include <string.h>

#include "envelope_common.h"
#include "forward_priv.h"

#define FORWARD_MAX (64 * 1024)

/* c1's and c2's ha: sections, with their keys' .pub files written once. */
static const struct cfg_ha *cfg_of(int leader)
{
        static struct cfg_ha cfg[2];
        static struct cfg_ha_coordinator list[2];
        static char pub[2][160], listen[2][160];
        char prefix[128];
        lserr err = {0};

        if (!cfg[0].name) {
                for (int i = 0; i < 2; i++) {
                        snprintf(prefix, sizeof(prefix), "%s/c%d", fuzz_dir(), i + 1);
                        if (keys_write(prefix, i ? fuzz_key() : fuzz_key2(), &err) < 0) {
                                fprintf(stderr, "fuzz_forward: %s\n", err.msg);
                                abort();
                        }
                        snprintf(pub[i], sizeof(pub[i]), "%s.pub", prefix);
                        snprintf(listen[i], sizeof(listen[i]), "ipc://%s.sock", prefix);
                        list[i] = (struct cfg_ha_coordinator){.name = i ? "c2" : "c1", .pubkey = pub[i]};
                        cfg[i] = (struct cfg_ha){.name = list[i].name, .listen = listen[i], .coordinators = list,
                                                 .n_coordinators = 2};
                }
        }
        return &cfg[leader ? 0 : 1];
}

static struct forward *open_forward(int leader)
{
        struct forward *f = NULL;
        lserr err = {0};

        if (forward_new(cfg_of(leader), leader ? fuzz_key2() : fuzz_key(), FORWARD_MAX, ENV_MAX_DEFAULT, &f,
                        &err) < 0) {
                fprintf(stderr, "fuzz_forward: %s\n", err.msg);
                abort();
        }
        return f;
}

static void check_forward(const uint8_t *buf, size_t len)
{
        struct forward *leader = open_forward(1);
        Lockstep__Forward *fw = NULL;
        struct forward_seen seen;
        lserr err = {0};
        int r = forward_verify(leader, buf, len, FUZZ_NOW_US, &fw, &seen, &err);

        fuzz_note("forward", r, &err);
        if (r == 0)
                lockstep__forward__free_unpacked(fw, NULL);
        forward_free(leader);
}

static void check_answer(struct forward *follower, const uint8_t *buf, size_t len)
{
        Lockstep__ForwardReply *fr = NULL;
        uint8_t hash[ENV_HASH_LEN];
        lserr err = {0};
        int r;

        memset(hash, FUZZ_CMD_HASH_BYTE, sizeof(hash));
        r = forward_open_reply(follower, buf, len, "c1", hash, &fr, &err);
        fuzz_note("answer", r, &err);
        if (r == 0)
                lockstep__forward_reply__free_unpacked(fr, NULL);
}

static void check_value(const uint8_t *data, size_t size)
{
        char *s = fuzz_cstr(data, size), name[LS_NAME_MAX + 1], url[CFG_HA_URL_MAX + 1];

        fuzz_note("leader value", forward_leader_of(s, name, url), NULL);
        free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct forward *follower;
        const uint8_t *msg = data + 1;
        size_t len = size - 1, env_len = 0;
        uint8_t *env = NULL;
        lserr err = {0};
        int mode;

        if (size < 1)
                return 0;
        if (!follower)
                follower = open_forward(0);
        mode = data[0] & 3;
        if (mode == 1 || mode == 3) {
                if (env_seal(mode == 1 ? ENV_FORWARD : ENV_FORWARD_REPLY, mode == 1 ? fuzz_key() : fuzz_key2(), msg,
                             len, &env, &env_len, &err) < 0)
                        return 0; /* too big to seal: nothing to verify */
                msg = env;
                len = env_len;
        }
        if (mode <= 1)
                check_forward(msg, len);
        else
                check_answer(follower, msg, len);
        if (mode == 0)
                check_value(msg, len);
        free(env);
        return 0;
}
