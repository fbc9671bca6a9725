/* branch: a revert's pre-revert branches: the record of each (which file each
 * disk ran on before the revert, kept beside the journal) and which of its
 * files no other chain holds. A branch
 * shares its lower layers with the chain the VM runs on and with other kept
 * branches; only what is above every such fork is the branch's own. The
 * backend says how to read a file's backing file. */
#pragma once

#include <stddef.h>

#include "hv.h"
#include "lserr.h"

/* Longest chain walked: deeper ones are refused, never followed forever. */
#define BRANCH_MAX_DEPTH 256

/* The backing file of path into out (HV_PATH_MAX bytes; "" when it has none).
 * -ENOENT when path does not exist. */
typedef int (*branch_backing_fn)(void *ctx, const char *path, char *out, lserr *err);

/* Whether path is a file lockstep made (so one it may remove). */
typedef int (*branch_ours_fn)(void *ctx, const char *path);

/* The files of the chain from top down to (not including) the first file that
 * a chain from one of roots[] holds, top first; none when top is gone. Every
 * one of them must be ours: a branch that reaches a file lockstep did not make
 * (a base image, a file of another tool) before it meets a root is refused
 * (LS_EIMAGE), so nothing outside lockstep's own files is ever listed. *ret
 * (HV_PATH_MAX bytes each, malloc'd) is the caller's. */
int branch_own_files(const char *top, const char *const *roots, size_t n_roots, branch_backing_fn backing,
                     branch_ours_fn ours, void *ctx, char (**ret)[HV_PATH_MAX], size_t *ret_n, lserr *err);

/* The record of the branch that revert txid kept for vm:
 * "<journal_dir>/branches/<txid>.<vm>", one "<target> @<format> <path>" line per disk.
 * It outlives the journal's pruning, so "revert --undo" finds it months later. */
int branch_record_path(const char *journal_dir, const char *txid, const char *vm, char *out, size_t n);

/* Durably writes the record: imgs[k].target, imgs[k].branch and its format
 * (imgs[k].branch_format) per disk: "<target> @<format> <path>". */
int branch_record_write(const char *journal_dir, const char *txid, const char *vm, const struct hv_image *imgs,
                        size_t n, lserr *err);

/* Reads the record into ret[] (HV_MAX_DISKS entries: target, branch and
 * branch_format set, the last "" in records made before formats were; the
 * rest zero). -ENOENT, err untouched, when there is none. */
int branch_record_read(const char *journal_dir, const char *txid, const char *vm, struct hv_image *ret,
                       size_t *ret_n, lserr *err);

/* Removes the record; none is fine. */
int branch_record_remove(const char *journal_dir, const char *txid, const char *vm, lserr *err);

/* Every file that vm's other records (of reverts other than except) name:
 * those branches stay whole. *ret (HV_PATH_MAX bytes each) is the caller's. */
int branch_record_others(const char *journal_dir, const char *vm, const char *except, char (**ret)[HV_PATH_MAX],
                         size_t *ret_n, lserr *err);

/* Every disk of every record of vm (target, branch, branch_format): where a
 * revert looks for a cut that left the disks' chains. *ret (malloc'd) is the
 * caller's. */
int branch_record_all(const char *journal_dir, const char *vm, struct hv_image **ret, size_t *ret_n, lserr *err);
