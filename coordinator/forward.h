/* forward: the link between the lockstepd of a cluster (coordinator.yaml's
 * ha.listen): a follower hands the CLI's request to the leader over nng,
 * signed with its own key; the leader checks it against ha.coordinators,
 * handles it as its control socket would, and answers signed with its key. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "coord_ha.h"
#include "keys.h"
#include "lockstep.pb-c.h"
#include "lserr.h"
#include "names.h"

/* How far a forward's issue time may be from the leader's clock, either way. */
#define FORWARD_WINDOW_US (30LL * 1000000LL)
/* The nonces of forwards accepted within the window that a leader keeps to
 * refuse a replay. Holding this many unexpired ones, it refuses further
 * forwards until the oldest expire (a nonce is never dropped early: its
 * forward would pass again). 4096 in 30 s is some 136 a second, far above
 * what people at the CLI of followers send; only signed forwards of listed
 * coordinators get that far. */
#define FORWARD_NONCES_MAX 4096

/* Who asked for a control request: the CLI's uid and pid as the kernel gave
 * them on a control socket (-1: not known), and the follower that forwarded
 * it (NULL: this lockstepd's own socket). */
struct forward_caller {
        const char *via;
        long long uid, pid;
};

/* What the leader does with a verified forward: handles q as its own control
 * socket would, for who; *ret is a packed ControlReply, malloc'd, freed by
 * the caller. < 0: nothing to answer. Runs on a worker thread. */
typedef int (*forward_handle_fn)(void *arg, const Lockstep__ControlRequest *q, const struct forward_caller *who,
                                 uint8_t **ret, size_t *ret_len);

struct forward;

/* Loads the keys of cfg->coordinators (each refusal names its entry), which
 * must list key under cfg->name. What it needs of cfg (listen set) is copied;
 * key is borrowed and must outlive the forward. request_max bounds a forward
 * (the control request and its wrapping), reply_max an answer. */
int forward_new(const struct cfg_ha *cfg, const struct keys_secret *key, size_t request_max, size_t reply_max,
                struct forward **ret, lserr *err);
/* Stops serving (waiting for the requests being handled) and hangs up the
 * link to the leader. */
struct forward *forward_free(struct forward *f);

/* Serves forwards on ha.listen with n_workers threads, handing each verified
 * one to fn(arg, ...); every refusal is logged, naming the step. */
int forward_serve(struct forward *f, unsigned n_workers, forward_handle_fn fn, void *arg, lserr *err);

/* The leader as the election names it, "NAME pid=PID control=URL peer=URL":
 * its name and where it serves forwards. -ENOENT when it names no peer (it
 * serves none), -EINVAL when holder is no such value; outputs untouched then. */
int forward_leader_of(const char *holder, char ret_name[static LS_NAME_MAX + 1],
                      char ret_url[static CFG_HA_URL_MAX + 1]);

/* Hands q, asked by who (who->via NULL), to the leader called name at url and
 * waits up to timeout_ms: *ret is the leader's answer, its reply as the leader
 * sent it (lockstep__forward_reply__free_unpacked), after its signature and
 * the hash of our request in it checked. Over tls+tcp:// the leader's certificate must chain
 * to ha.tls_ca and carry name as a DNS subjectAltName. The link is dialled once
 * per leader and kept.
 * Thread-safe. On failure err names the leader, its URL and the step. */
int forward_call(struct forward *f, const char *name, const char *url, const Lockstep__ControlRequest *q,
                 const struct forward_caller *who, int timeout_ms, Lockstep__ForwardReply **ret, lserr *err);
