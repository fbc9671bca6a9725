/* testutil: temporary directories and small file helpers for the unit tests. */
#pragma once

#include <stddef.h>

/* A fresh directory under $TMPDIR (or /tmp), removed with its files by tu_rmtree. */
char *tu_mkdtemp(void);
void tu_rmtree(char *dir);
/* Writes text to dir/name with mode and returns the malloc'd path. */
char *tu_write(const char *dir, const char *name, const char *text, int mode);
/* The value of the first line of the sim backend's state file <simdir>/<vm>.state
 * that starts with key ("frozen", "state"...): 1 and out filled, or 0. */
int tu_sim_state(const char *simdir, const char *vm, const char *key, char *out, size_t n);
/* A TCP port on 127.0.0.1 that the kernel just chose and nothing holds. */
int tu_tcp_port(void);
