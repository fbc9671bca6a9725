/* fuzz_agent_config: agent.yaml through its loader (read from a memfd path). */
#include <unistd.h>

#include "agent_config.h"
#include "fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct cfg_agent *c = NULL;
        lserr err = {0};
        char path[64];
        int fd = fuzz_memfd(data, size, path);

        int r = cfg_agent_load(path, &c, &err);

        fuzz_note("agent.yaml", r, &err);
        if (r == 0)
                cfg_agent_free(c);
        close(fd);
        return 0;
}
