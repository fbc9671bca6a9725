/* privsep: the agent as two processes joined by socketpairs. The network half
 * (unprivileged, seccomp-filtered) verifies commands and signs replies; the
 * root executor (no network) acts on the verified commands it re-encodes and
 * answers with unsigned packed Replies. One socketpair per network worker, one
 * request at a time on each; a frame is a 4-byte big-endian length and that
 * many bytes. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "envelope.h"
#include "lockstep.pb-c.h"
#include "lserr.h"

#define PRIVSEP_CHANNELS 4
/* A command is smaller than the envelope that carried it; a reply (discover of
 * many domains) may be larger, still bounded. */
#define PRIVSEP_COMMAND_MAX ENV_MAX_DEFAULT
#define PRIVSEP_REPLY_MAX (4 * ENV_MAX_DEFAULT)

/* One frame on fd. Blocks until all of it is written. */
int privsep_frame_send(int fd, const uint8_t *buf, size_t len, lserr *err);
/* The next frame from fd, refused (-EMSGSIZE, nothing read past its header)
 * when longer than max. -EPIPE at a clean end of stream. *ret is malloc'd. */
int privsep_frame_recv(int fd, size_t max, uint8_t **ret, size_t *ret_len, lserr *err);

/* Packs a fresh copy of a verified command: fields this build does not know
 * (kept by protobuf-c as unknown fields) are dropped from cmd first. */
int privsep_command_encode(Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len, lserr *err);
/* The executor's gate: unpacks and checks a command; every string in it must
 * be empty or a name (proto/names.h), so nothing in it is a path, and no
 * field may be unknown. *ret is the caller's (lockstep__command__free_unpacked). */
int privsep_command_decode(const uint8_t *buf, size_t len, Lockstep__Command **ret, lserr *err);

/* Fork with the channels made: returns the child's pid in the executor (the
 * parent), 0 in the network half (the child, killed when the parent dies).
 * fds[] gets this side's ends. Call before any thread is started. */
pid_t privsep_fork(int fds[PRIVSEP_CHANNELS], lserr *err);

/* Network half: (again) killed when the executor dies; -ESRCH when it already
 * has. A change of uid clears that tie: call it after the drop. */
int privsep_tie_to_executor(void);

/* Network half: says it is ready (msg NULL) or why it could not start. */
int privsep_send_ready(int fd, const char *msg, lserr *err);
/* Executor: waits for that word; < 0 with the network half's reason. */
int privsep_wait_ready(int fd, lserr *err);

/* Network half: a dispatch_exec_fn over the channels. */
struct privsep_client;
int privsep_client_new(const int fds[PRIVSEP_CHANNELS], struct privsep_client **ret, lserr *err);
struct privsep_client *privsep_client_free(struct privsep_client *c);
int privsep_call(void *arg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len, lserr *err);

/* Executor: one thread per channel, each answering with exec (a dispatch_exec_fn).
 * A channel that breaks the protocol (oversize or cut frame) ends the network
 * half: the executor kills it, and its exit stops the agent. */
typedef int (*privsep_exec_fn)(void *arg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len,
                               lserr *err);
struct privsep_server;
int privsep_serve(const int fds[PRIVSEP_CHANNELS], pid_t child, privsep_exec_fn exec, void *arg,
                  struct privsep_server **ret, lserr *err);
/* Closes the channels (the network half exits on that), then joins. */
struct privsep_server *privsep_server_stop(struct privsep_server *s);

/* One request on one channel, as a server thread does it (unit tests). < 0
 * when the channel is done (end of stream or a protocol violation). */
int privsep_serve_one(int fd, privsep_exec_fn exec, void *arg, lserr *err);
