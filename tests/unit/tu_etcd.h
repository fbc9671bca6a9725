/* tu_etcd: one etcd member of a test's own (Debian's etcd-server) on loopback
 * ports the kernel chose, for the tests of the etcd client and what uses it. */
#pragma once

#include <sys/types.h>

#define TU_ETCD_BIN "/usr/bin/etcd"

struct tu_etcd {
        pid_t pid;
        char *dir;
        char url[64]; /* its client URL */
};

/* Starts it and waits (20 s at most) until it answers: 0, or 1 when etcd is
 * not installed (the caller skips, saying so; with LOCKSTEP_REQUIRE_ETCD set,
 * as tests/run-all.sh does, that aborts instead). Aborts on any other failure. */
int tu_etcd_start(struct tu_etcd *e);
/* Stops what tu_etcd_start started (only that PID) and removes its data. */
void tu_etcd_stop(struct tu_etcd *e);
