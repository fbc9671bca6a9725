/* transport_priv: what transport.c and transport_guard.c share. */
#pragma once

#include <nng/nng.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "lserr.h"
#include "transport.h"

/* Starts a listener of s on url (ipc_mode for ipc://, tls for tls+tcp://);
 * on failure nothing of it is left. */
int transport_start_listener(nng_socket s, const char *url, int ipc_mode, const struct transport_tls *tls,
                             nng_listener *ret, lserr *err);

struct transport_guard;

/* What a server's workers are doing, for its guard: a ping that went
 * unanswered tells of a deaf listener only when a worker sat waiting for a
 * request all the while (busy workers answer late, and that is no fault). */
struct transport_activity {
        atomic_uint_fast64_t received; /* requests taken off the socket */
        atomic_int idle;               /* workers waiting for one now */
};

/* Notes s's ipc:// listener l, for transport_guard_start. At most
 * TRANSPORT_GUARD_MAX at once; one more goes unguarded. */
#define TRANSPORT_GUARD_MAX 16
void transport_guard_note(nng_socket s, nng_listener l, const char *url, int ipc_mode);
/* When s's listener was noted: starts its guard (*ret, NULL otherwise).
 * act is the server's and outlives the guard. */
int transport_guard_start(nng_socket s, const struct transport_activity *act, struct transport_guard **ret,
                          lserr *err);
/* Stops and frees g (NULL is fine) and forgets its listener. Returns NULL. */
struct transport_guard *transport_guard_stop(struct transport_guard *g);
/* Whether a request is the guard's ping (the workers answer it themselves). */
bool transport_guard_is_ping(const void *body, size_t len);
