/* fuzz_envelope: raw bytes from the network, read as a command envelope (the
 * agent's side) and as a reply envelope (the coordinator's side). */
#include "envelope_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        fuzz_check_command(data, size);
        fuzz_check_reply(data, size);
        return 0;
}
