/* roles: what a coordinator key may ask an agent to do. The agent's config grants
 * them per key (agent_config.c); the envelope checks them per step (envelope.c). */
#pragma once

enum cfg_role {
        CFG_ROLE_SNAPSHOT = 1u << 0,
        CFG_ROLE_REVERT = 1u << 1,
        CFG_ROLE_DELETE = 1u << 2,
        CFG_ROLE_ADMIN = 1u << 3,
};
