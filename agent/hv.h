/* hv: the agent's view of its hypervisor. One interface, two backends chosen in
 * hv_open(): libvirt (the real one, default) and sim (simulated hosts for scale
 * tests, only when the config says backend: sim).
 *
 * Every call names one domain and fills err with "<step>: <why>"; the
 * transaction adds "<vm>@<host>: " once. Failures return a negative LS_E* code from lserr.h
 * when the cause is one the protocol distinguishes (LS_ENODOMAIN, LS_ENOGA...),
 * LS_EHV otherwise. All calls are thread-safe. */
#pragma once

#include <limits.h>
#include <stddef.h>

#include "agent_config.h"
#include "lserr.h"
#include "names.h"

#define HV_MAX_DISKS 16
#define HV_PATH_MAX 1024
#define HV_TARGET_MAX 32

enum hv_state {
        HV_RUNNING,
        HV_PAUSED,
        HV_SHUTOFF,
        HV_OTHER, /* crashed, shutting down, pmsuspended... */
};

struct hv_disk {
        char target[HV_TARGET_MAX]; /* "vda" */
        char path[HV_PATH_MAX];     /* image the domain writes to now */
        char backing[HV_PATH_MAX];  /* the image below it, as the hypervisor reports it; "" none */
        char format[16];            /* "qcow2", "raw" */
};

struct hv_domain {
        char name[LS_NAME_MAX + 1];
        enum hv_state state;
        char group[LS_NAME_MAX + 1]; /* lockstep metadata label, "" if none */
        char tier[LS_NAME_MAX + 1];  /* lockstep metadata label, "" if none */
        unsigned n_disks;
        struct hv_disk disks[HV_MAX_DISKS];
};

/* One disk of one snapshot: the cut's image and the overlay made on top of it. */
struct hv_image {
        char target[HV_TARGET_MAX];
        char before[HV_PATH_MAX];
        char after[HV_PATH_MAX];
        char branch[HV_PATH_MAX]; /* revert: the image the disk ran on before */
        /* Formats as a trusted source gave them (the domain XML, a qcow2
         * header the agent read on the way down a chain, a branch record);
         * "" when unknown. after is always an overlay lockstep made: qcow2. */
        char format[16];        /* before's */
        char branch_format[16]; /* branch's */
};

struct hv;

/* Opens the backend the config names. *ret is the caller's (hv_close). */
int hv_open(const struct cfg_agent *cfg, struct hv **ret, lserr *err);
struct hv *hv_close(struct hv *hv);

/* Loads the backend's code, before the agent forks its guardian and network
 * half: the libvirt backend's module (hv_module.h); the sim backend is built in. */
int hv_preload(const struct cfg_agent *cfg, lserr *err);
const char *hv_backend_name(const struct hv *hv);

/* Every domain of the host (discover). *ret is malloc'd, the caller's. */
int hv_list(struct hv *hv, struct hv_domain **ret, size_t *ret_n, lserr *err);

/* One domain's state, labels and disks. LS_ENODOMAIN when it does not exist. */
int hv_lookup(struct hv *hv, const char *vm, struct hv_domain *ret, lserr *err);

/* What hv_check validates beyond the files. */
enum {
        HV_CHECK_QUIESCE = 1u << 0, /* fsfreeze will run: a paused domain is refused */
        HV_CHECK_MEMORY = 1u << 1,  /* a memory state will be saved: room for the guest's RAM */
};

/* Everything the snapshot of transaction txid needs, checked without changing
 * anything: the domain runs (LS_ENOTRUNNING; LS_EPAUSED with HV_CHECK_QUIESCE
 * on a paused domain), every disk is a file in a format that can take an
 * external qcow2 overlay (LS_EDISK), and every file the snapshot will create
 * (see imgfile.h) can be: name and path lengths, absent (LS_EOVERLAYEXISTS),
 * directory writable, min_free_mb free, plus the guest's RAM for a memory
 * state (LS_ENOSPACE). */
int hv_check(struct hv *hv, const char *vm, const char *txid, unsigned flags, lserr *err);

/* Guest agent answers within timeout_s (LS_ENOGA / LS_EGATIMEOUT otherwise). */
int hv_ga_ping(struct hv *hv, const char *vm, int timeout_s, lserr *err);

/* fsfreeze of every guest filesystem through the guest agent. >= 0: count frozen. */
int hv_freeze(struct hv *hv, const char *vm, lserr *err);

/* fsthaw. >= 0: count thawed; 0 means the guest was not frozen any more. */
int hv_thaw(struct hv *hv, const char *vm, lserr *err);

/* vCPUs suspended / resumed (pause mode, crash-consistent members). */
int hv_suspend(struct hv *hv, const char *vm, lserr *err);
int hv_resume(struct hv *hv, const char *vm, lserr *err);

/* External disk-only snapshot of all disks at once (atomic), named txid, the
 * overlays named by imgfile_overlay() beside each disk's current image. With
 * with_memory the memory state goes to imgfile_memory() beside the first
 * disk's image. ret gets one hv_image per disk (at most HV_MAX_DISKS). */
int hv_snapshot(struct hv *hv, const char *vm, const char *txid, int with_memory, struct hv_image *ret,
                size_t *ret_n, lserr *err);

/* Undoes a pending snapshot: the domain goes back to writing the before images
 * (block commit of the overlay + pivot while running; qemu-img commit and a
 * redefined domain when off), the overlay files and the snapshot metadata are
 * removed. Idempotent: images already discarded are skipped. */
int hv_discard(struct hv *hv, const char *vm, const char *txid, const struct hv_image *imgs, size_t n,
               lserr *err);

/* Deletes a committed cut of one domain: on every disk the overlay of cut txid
 * (imgfile_is_layer; for cuts made before names stopped growing, the one named
 * for the cut's name `legacy`), found by walking the disk's backing chain, is
 * merged into its backing image while the domain keeps running (active or
 * intermediate block commit; qemu-img commit/rebase when off), then removed with
 * the snapshot metadata. Every step leaves a valid chain; running it again
 * finishes a half-done delete. ret gets one hv_image per disk merged now (after:
 * the layer removed, before: the image it was merged into; a later cut that held
 * the removed layer holds that image now); none when the cut was already gone.
 * When no layer of the cut is in a disk's chain but the cut's image is (a
 * revert put its own overlay on it), the layer above that image is merged into
 * it: hints name each disk's cut image (target, before) as the coordinator
 * recorded it, and one is used only when it is a file of that disk's chain and
 * the layer above it is the overlay of one of hints->reverts. ret and *ret_n
 * list what was merged also when a later disk fails. */
struct hv_delete_hints {
        const struct hv_image *images; /* the cut's image per disk: target, before */
        size_t n_images;
        const char *const *reverts; /* reverts to the cut: only their overlays may be merged */
        size_t n_reverts;
};
int hv_delete_cut(struct hv *hv, const char *vm, const char *txid, const char *legacy,
                  const struct hv_delete_hints *hints, struct hv_image *ret, size_t *ret_n, lserr *err);

/* One file hv_drop_branch removed. */
struct hv_removed {
        char target[HV_TARGET_MAX];
        char path[HV_PATH_MAX];
};

/* Drops a pre-revert branch of one domain: per disk, the chain from
 * branch[i].branch (the branch's top) down to the first image that the domain
 * runs on (its current chain) or that a kept branch holds (the chains from
 * keep[], other branches' tops) is removed, top first, with the memory states
 * and snapshot metadata of the cuts whose images went with it. A branch whose
 * top is gone is dropped already: nothing to do. Only files lockstep named are
 * removed: a branch that reaches any other file before a kept chain is refused
 * whole. Files go bottom up, so a drop cut short is finished by the next. *ret
 * (malloc'd, the caller's) lists every file removed now, also on failure. */
int hv_drop_branch(struct hv *hv, const char *vm, const struct hv_image *branch, size_t n, const char *const *keep,
                   size_t n_keep, struct hv_removed **ret, size_t *ret_n, lserr *err);

/* ---- revert ------------------------------------------------------------- */

/* Where a revert looks for a cut beyond the disks' current chains, all from
 * the agent's own records, plus the coordinator's hints. */
struct hv_cut_where {
        const struct hv_image *branches; /* recorded pre-revert branches: target, branch, branch_format */
        size_t n_branches;
        const struct hv_image *hints; /* the catalog's cut image per disk: target, before */
        size_t n_hints;
};

/* The images a committed cut holds for one domain, resolved from what the
 * agent knows, never from a path it is sent: per disk, before = the backing
 * image of the layer of cut txid (or of the layer named for `legacy` for
 * older cuts), looked for in the disk's current chain, then in the chains of
 * w's recorded branches; format = its format; branch = what the disk runs on
 * now, with its format. Only when neither holds the layer (a cut made before
 * revert resolved paths itself, whose layer left with a branch no longer
 * recorded) is a hint taken, and then only when it names a file of the disk's
 * current chain (what libvirt reads too) or of a recorded branch: the path
 * used is the chain's, the hint only picked it. Every cut image must exist
 * and pass "qemu-img check" (LS_EIMAGE / LS_ECORRUPT, naming the file). */
int hv_cut_images(struct hv *hv, const char *vm, const char *txid, const char *legacy, const struct hv_cut_where *w,
                  struct hv_image *ret, size_t *ret_n, lserr *err);

/* Checks that each path (before, of format format) exists and passes
 * "qemu-img check". */
int hv_check_images(struct hv *hv, const char *vm, const struct hv_image *imgs, size_t n, lserr *err);

/* Stops a domain: graceful shutdown (guest agent, then ACPI) for up to
 * timeout_ms, then destroy. Already off: nothing to do. */
int hv_stop(struct hv *hv, const char *vm, unsigned timeout_ms, lserr *err);
int hv_start(struct hv *hv, const char *vm, lserr *err);

/* Points a shut-off domain's disks: with tag (the revert's txid), at new
 * overlays imgfile_overlay(before, vm, target, tag) created on each imgs[i].before (written to
 * imgs[i].after); without, at imgs[i].before itself. Persistent definition.
 * imgs[i].format is before's format; an unknown one is refused, never guessed. */
int hv_point_disks(struct hv *hv, const char *vm, struct hv_image *imgs, size_t n, const char *tag, lserr *err);

/* Runs argv (NULL-terminated; argv[0] the program, no shell) in the guest
 * through its guest agent and waits up to timeout_ms for it to exit; name is
 * the hook's, for messages. 0 when it exited 0; LS_EHOOK otherwise (err says
 * the exit code or the timeout). */
int hv_guest_run(struct hv *hv, const char *vm, const char *name, char *const *argv, unsigned timeout_ms,
                 lserr *err);

/* Starts a shut-off domain from a memory state saved by a memory-mode cut
 * (its disks as the persistent definition has them now), running. */
int hv_restore(struct hv *hv, const char *vm, const char *memfile, lserr *err);
