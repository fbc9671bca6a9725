/* dispatch: the agent's request path. Every request is verified as a command
 * before anything acts on it. A request whose signature did not verify gets an
 * unsigned refusal code and a rate-limited log line; every other answer is a
 * signed Reply bound to the hash, txid and step of the command it answers,
 * refusals included. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "agent_config.h"
#include "envelope.h"
#include "hv.h"
#include "keys.h"
#include "txn.h"

struct dispatch;

/* Borrows everything it is given; all must outlive the dispatcher. */
int dispatch_new(const struct cfg_agent *cfg, const struct keys_secret *key, struct env_verifier *v, struct hv *hv,
                 struct txn_mgr *txns, struct dispatch **ret, lserr *err);
struct dispatch *dispatch_free(struct dispatch *d);

/* A transport_handler: arg is the struct dispatch. Every request it can answer
 * gets a reply (signed once the command's signature verified); < 0 (logged
 * here, once) only when no reply can be made. *ret is malloc'd, the caller's. */
int dispatch_handle(void *arg, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len);
