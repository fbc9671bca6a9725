/* fuzz_envelope_signed: the input is a message body, validly signed with the
 * trusted test key, so the fuzzer reaches the protobuf body and the command's
 * field checks behind the signature. First byte: even = command, odd = reply. */
#include <stdlib.h>

#include "envelope_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        enum env_kind kind;
        uint8_t *env = NULL;
        size_t env_len = 0;
        lserr err = {0};

        if (size < 1)
                return 0;
        kind = data[0] & 1 ? ENV_REPLY : ENV_COMMAND;
        if (env_seal(kind, fuzz_key(), data + 1, size - 1, &env, &env_len, &err) < 0)
                return 0; /* too big to seal: nothing to verify */
        if (kind == ENV_COMMAND)
                fuzz_check_command(env, env_len);
        else
                fuzz_check_reply(env, env_len);
        free(env);
        return 0;
}
