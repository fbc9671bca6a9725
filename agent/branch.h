/* branch: which files of a pre-revert branch no other chain holds. A branch
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
