/* execute: the root executor's half of the request path. It acts on a command
 * that the network half already verified and answers with a packed Reply that
 * is not signed yet (the network half holds the key and signs it). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "agent_config.h"
#include "hv.h"
#include "lockstep.pb-c.h"
#include "lserr.h"
#include "txn.h"

struct execute;

/* Borrows everything it is given; all must outlive the executor. */
int execute_new(const struct cfg_agent *cfg, struct hv *hv, struct txn_mgr *txns, struct execute **ret, lserr *err);
struct execute *execute_free(struct execute *x);

/* A dispatch_exec_fn (dispatch.h): arg is the struct execute. *ret is the
 * packed, unsigned Reply (malloc'd, the caller's); < 0 only when none can be made. */
int execute_command(void *arg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len, lserr *err);
