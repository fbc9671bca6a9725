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
#include "keys.h"

struct dispatch;

/* Acts on a verified command: *ret is the packed, unsigned Reply (malloc'd,
 * the caller's); < 0 with err when no reply can be made. In the agent this is
 * privsep_call (the root executor, over a socketpair); tests may pass
 * execute_command directly. */
typedef int (*dispatch_exec_fn)(void *arg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len,
                                lserr *err);

/* Borrows everything it is given; all must outlive the dispatcher. */
int dispatch_new(const struct cfg_agent *cfg, const struct keys_secret *key, struct env_verifier *v,
                 dispatch_exec_fn exec, void *exec_arg, struct dispatch **ret, lserr *err);
struct dispatch *dispatch_free(struct dispatch *d);

/* A transport_handler: arg is the struct dispatch. Every request it can answer
 * gets a reply (signed once the command's signature verified); < 0 (logged
 * here, once) only when no reply can be made. *ret is malloc'd, the caller's. */
int dispatch_handle(void *arg, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len);
