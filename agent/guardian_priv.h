/* guardian_priv: the guardian's line protocol and its table of armed members,
 * exposed for tests only. */
#pragma once

#include <stddef.h>

#include "lserr.h"
#include "names.h"

#define GUARDIAN_MAX_ARMED 4096
/* The longest message is "A <64> <64> <20 digits> 1 1". */
#define GUARDIAN_MSG_MAX 256

/* One message on the socket pair, one per datagram:
 *   "A <txid> <vm> <deadline_mono_us> <thaw 0|1> <resume 0|1>"  arm
 *   "D <txid> <vm>"                                            disarm */
struct guardian_msg {
        char op; /* 'A' or 'D' */
        char txid[LS_NAME_MAX + 1], vm[LS_NAME_MAX + 1];
        long long deadline; /* CLOCK_MONOTONIC, microseconds */
        int thaw, resume;
};

/* A member the guardian undoes when its deadline passes or the agent is gone. */
struct guardian_entry {
        char txid[LS_NAME_MAX + 1], vm[LS_NAME_MAX + 1];
        long long deadline;
        int thaw, resume, used;
};

/* Writes m as one line into out (n >= GUARDIAN_MSG_MAX). */
void guardian_msg_format(const struct guardian_msg *m, char *out, size_t n);

/* Parses one datagram of len bytes (no NUL needed). Strict: valid names, a
 * deadline >= 0, flags 0 or 1, nothing else. -EINVAL with err on anything else;
 * *ret is untouched then. */
int guardian_msg_parse(const char *buf, size_t len, struct guardian_msg *ret, lserr *err);

/* Applies m to a table of GUARDIAN_MAX_ARMED entries: arm adds or replaces the
 * (txid, vm) entry, disarm removes it (absent is fine). -ENOSPC with err when
 * the table is full; the table is unchanged then. */
int guardian_table_apply(struct guardian_entry *a, const struct guardian_msg *m, lserr *err);
