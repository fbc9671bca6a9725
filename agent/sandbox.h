/* sandbox: what each half of the agent gives up. The network half: its own
 * replay directory, then the uid of privsep_user, no new privileges and a
 * seccomp filter. The executor: a network namespace of its own. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "lserr.h"

/* Name of the replay state's directory under state_dir: the network half's. */
#define SANDBOX_REPLAY_SUBDIR "replay"

struct sandbox_user {
        bool drop; /* false when not started as root: nothing to drop to */
        uid_t uid;
        gid_t gid;
        char name[64];
};

/* Resolves user (as root) or notes that this run keeps its uid (not root).
 * err names the config key when the user does not exist. */
int sandbox_user_lookup(const char *user, struct sandbox_user *ret, lserr *err);

/* Creates state_dir/replay (0700, owned by u), moves replay counter files of
 * older versions from state_dir into it, and fills ret_dir (n bytes). */
int sandbox_replay_dir(const char *state_dir, const struct sandbox_user *u, char *ret_dir, size_t n, lserr *err);

/* Drops to u (supplementary groups, gid, uid; fails if root stays reachable),
 * then sets no-new-privileges and the network half's seccomp filter on every
 * thread of the process. Irreversible. */
int sandbox_drop(const struct sandbox_user *u, lserr *err);

/* The executor leaves the host's network: unshare(CLONE_NEWNET). Unix sockets
 * bound to a path (libvirtd's, journald's, sd_notify's) still connect. */
int sandbox_no_network(lserr *err);
