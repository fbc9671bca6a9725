/* hv: the agent's view of its hypervisor. One interface, two backends chosen in
 * hv_open(): libvirt (the real one, default) and sim (simulated hosts for scale
 * tests, only when the config says backend: sim).
 *
 * Every call names one domain and fills err with "<vm>: <step>: <why>" (the
 * agent adds its host id). Failures return a negative LS_E* code from lserr.h
 * when the cause is one the protocol distinguishes (LS_ENODOMAIN, LS_ENOGA...),
 * LS_EHV otherwise. All calls are thread-safe. */
#pragma once

#include <limits.h>
#include <stddef.h>

#include "config.h"
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
};

struct hv;

/* Opens the backend the config names. *ret is the caller's (hv_close). */
int hv_open(const struct cfg_agent *cfg, struct hv **ret, lserr *err);
struct hv *hv_close(struct hv *hv);
const char *hv_backend_name(const struct hv *hv);

/* Every domain of the host (discover). *ret is malloc'd, the caller's. */
int hv_list(struct hv *hv, struct hv_domain **ret, size_t *ret_n, lserr *err);

/* One domain's state, labels and disks. LS_ENODOMAIN when it does not exist. */
int hv_lookup(struct hv *hv, const char *vm, struct hv_domain *ret, lserr *err);

/* Everything a snapshot named snap needs, checked without changing anything:
 * the domain runs (LS_ENOTRUNNING; LS_EPAUSED when quiesce is asked of a paused
 * domain), every disk is a file in a format that can take an external qcow2
 * overlay (LS_EDISK), no overlay file exists yet (LS_EOVERLAYEXISTS), and the
 * overlays' directories have room (LS_ENOSPACE). */
int hv_check(struct hv *hv, const char *vm, const char *snap, int quiesce, lserr *err);

/* Guest agent answers within timeout_s (LS_ENOGA / LS_EGATIMEOUT otherwise). */
int hv_ga_ping(struct hv *hv, const char *vm, int timeout_s, lserr *err);

/* fsfreeze of every guest filesystem through the guest agent. >= 0: count frozen. */
int hv_freeze(struct hv *hv, const char *vm, lserr *err);

/* fsthaw. >= 0: count thawed; 0 means the guest was not frozen any more. */
int hv_thaw(struct hv *hv, const char *vm, lserr *err);

/* vCPUs suspended / resumed (pause mode, crash-consistent members). */
int hv_suspend(struct hv *hv, const char *vm, lserr *err);
int hv_resume(struct hv *hv, const char *vm, lserr *err);

/* External disk-only snapshot of all disks at once (atomic), overlays at
 * "<current image>.<snap>.qcow2", computed here, never taken from the wire. With
 * with_memory the memory state goes to "<first image>.<snap>.mem". ret gets one
 * hv_image per disk (at most HV_MAX_DISKS). */
int hv_snapshot(struct hv *hv, const char *vm, const char *snap, int with_memory, struct hv_image *ret,
                size_t *ret_n, lserr *err);

/* Undoes a pending snapshot: the domain goes back to writing the before images
 * (block commit of the overlay + pivot while running; qemu-img commit and a
 * redefined domain when off), the overlay files and the snapshot metadata are
 * removed. Idempotent: images already discarded are skipped. */
int hv_discard(struct hv *hv, const char *vm, const char *snap, const struct hv_image *imgs, size_t n,
               lserr *err);

/* Deletes a committed cut of one domain: on every disk the overlay named for
 * snap ("<image>.<snap>.qcow2", found by walking the disk's backing chain) is
 * merged into its backing image while the domain keeps running (active or
 * intermediate block commit; qemu-img commit/rebase when off), then removed with
 * the snapshot metadata. Every step leaves a valid chain; running it again
 * finishes a half-done delete. ret gets one hv_image per disk merged now (after:
 * the layer removed, before: the image it was merged into; a later cut that held
 * the removed layer holds that image now); none when the cut was already gone. */
int hv_delete_cut(struct hv *hv, const char *vm, const char *snap, struct hv_image *ret, size_t *ret_n, lserr *err);

/* ---- revert ------------------------------------------------------------- */

/* The images a committed cut holds for one domain: per disk, before = the
 * cut's image (the backing image of the layer named for snap), branch = what
 * the disk runs on now. Every cut image must exist and pass "qemu-img check"
 * (LS_EIMAGE / LS_ECORRUPT, naming the file). */
int hv_cut_images(struct hv *hv, const char *vm, const char *snap, struct hv_image *ret, size_t *ret_n,
                  lserr *err);

/* Checks that each path exists and passes "qemu-img check". */
int hv_check_images(struct hv *hv, const char *vm, const struct hv_image *imgs, size_t n, lserr *err);

/* Stops a domain: graceful shutdown (guest agent, then ACPI) for up to
 * timeout_ms, then destroy. Already off: nothing to do. */
int hv_stop(struct hv *hv, const char *vm, unsigned timeout_ms, lserr *err);
int hv_start(struct hv *hv, const char *vm, lserr *err);

/* Points a shut-off domain's disks: with tag, at new overlays
 * "<before>.<tag>.qcow2" created on each imgs[i].before (written to
 * imgs[i].after); without, at imgs[i].before itself. Persistent definition. */
int hv_point_disks(struct hv *hv, const char *vm, struct hv_image *imgs, size_t n, const char *tag, lserr *err);

/* Runs "/bin/sh -c command" in the guest through its guest agent and waits
 * up to timeout_ms for it to exit. 0 when it exited 0; LS_EHOOK otherwise
 * (err says the exit code or the timeout). */
int hv_guest_run(struct hv *hv, const char *vm, const char *command, unsigned timeout_ms, lserr *err);

/* Starts a shut-off domain from a memory state saved by a memory-mode cut
 * (its disks as the persistent definition has them now), running. */
int hv_restore(struct hv *hv, const char *vm, const char *memfile, lserr *err);
