/* envelope_common: the verifier both envelope harnesses check input with: agent
 * "agent1" trusting the fuzz key with every role, a fresh replay state per input
 * and a fixed clock, so that seed commands issued at FUZZ_NOW_US are accepted. */
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "fuzzutil.h"

#define FUZZ_AGENT "agent1"
#define FUZZ_NOW_US 1700000000000000LL
/* The command hash every seed reply answers. */
#define FUZZ_CMD_HASH_BYTE 0x11

static inline void fuzz_check_command(const uint8_t *buf, size_t len)
{
        struct env_trusted t = {.roles = CFG_ROLE_SNAPSHOT | CFG_ROLE_REVERT | CFG_ROLE_DELETE | CFG_ROLE_ADMIN};
        struct replay *rp = NULL;
        struct env_verifier *v = NULL;
        Lockstep__Command *cmd = NULL;
        const struct env_trusted *key = NULL;
        struct env_refusal refusal = {0};
        lserr err = {0};

        t.pub = *keys_secret_public(fuzz_key());
        snprintf(t.name, sizeof(t.name), "fuzz");
        if (replay_open(fuzz_dir(), 1024, 30LL * 1000000, &rp, &err) < 0 ||
            env_verifier_new(FUZZ_AGENT, &t, 1, rp, ENV_WINDOW_DEFAULT_US, ENV_MAX_DEFAULT, &v, &err) < 0)
                abort();
        int r = env_verify_command(v, buf, len, FUZZ_NOW_US, &cmd, &key, &refusal, &err);

        fuzz_note("command", r, &err);
        if (r == 0) {
                (void)env_step_name(cmd->step);
                lockstep__command__free_unpacked(cmd, NULL);
        } else if (!refusal.answerable) {
                /* What the agent answers junk with: a code, never a signature. */
                uint8_t *out = NULL;
                size_t out_len = 0;
                lserr e2 = {0};
                if (env_seal_refusal(r, &out, &out_len, &e2) == 0)
                        free(out);
        }
        env_verifier_free(v);
        replay_free(rp);
        fuzz_dir_clear();
}

static inline void fuzz_check_reply(const uint8_t *buf, size_t len)
{
        uint8_t hash[ENV_HASH_LEN];
        Lockstep__Reply *rep = NULL;
        lserr err = {0};

        memset(hash, FUZZ_CMD_HASH_BYTE, sizeof(hash));
        int r = env_verify_reply(buf, len, ENV_MAX_DEFAULT, keys_secret_public(fuzz_key()), FUZZ_AGENT, hash, &rep,
                                 &err);

        fuzz_note("reply", r, &err);
        if (r == 0)
                lockstep__reply__free_unpacked(rep, NULL);
        (void)env_body_hash(buf, len, ENV_MAX_DEFAULT, hash);
}
