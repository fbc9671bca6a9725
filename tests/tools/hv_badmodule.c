/* hv_badmodule: a libvirt backend module of another build (its version is not
 * the agent's), for hvmodule.sh: the agent must refuse to load it. */
#include "hv_backend.h"

__attribute__((visibility("default"))) const struct hv_module hv_module = {
        .version = "0.0.0-other",
        .ops_size = sizeof(struct hv_ops),
        .ops = NULL,
};
