/* fuzz_coord_config: coordinator.yaml through its loader (read from a memfd path). */
#include <unistd.h>

#include "coord_config.h"
#include "fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct cfg_coord *c = NULL;
        lserr err = {0};
        char path[64];
        int fd = fuzz_memfd(data, size, path);

        int r = cfg_coord_load(path, &c, &err);

        fuzz_note("coordinator.yaml", r, &err);
        if (r == 0) {
                for (unsigned i = 0; i < c->n_groups; i++)
                        (void)cfg_coord_group(c, c->groups[i].name);
                cfg_coord_free(c);
        }
        close(fd);
        return 0;
}
