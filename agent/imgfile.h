/* imgfile: the names of the files the agent creates beside a VM's images
 * (overlays, memory states) and the check that one can be created. A name
 * depends on the VM, the disk target and the txid of the transaction that
 * makes it, never on the image it sits on, so names do not grow with a
 * group's history: "<dir>/<vm>-<target>.<txid>.qcow2", "<dir>/<vm>.<txid>.mem".
 * With names and txids of at most LS_NAME_MAX bytes and targets of at most
 * HV_TARGET_MAX - 1, a file name is at most 167 bytes. */
#pragma once

#include <stddef.h>

#include "lserr.h"

/* The overlay that transaction txid makes for disk target of vm, in the
 * directory of image (the file the disk runs on). -ENAMETOOLONG when it does
 * not fit in n bytes. */
int imgfile_overlay(const char *image, const char *vm, const char *target, const char *txid, char *out, size_t n);

/* The memory state that cut txid saves for vm, beside its first disk's image. */
int imgfile_memory(const char *image, const char *vm, const char *txid, char *out, size_t n);

/* Names from before this scheme, "<image>.<name>.<ext>": only read, to find
 * and remove files that older versions made. */
int imgfile_legacy(const char *image, const char *name, const char *ext, char *out, size_t n);

/* Whether path is an overlay of cut `cut`: its file name ends in
 * ".<cut>.qcow2" (true of both schemes; a txid is unique, so this never
 * depends on how long the name is). */
int imgfile_is_layer(const char *path, const char *cut);

/* The txid in an overlay's name "<dir>/<vm>-<target>.<txid>.qcow2" into out;
 * -EINVAL when path is not named so (an older name, a base image). */
int imgfile_layer_txid(const char *path, const char *vm, const char *target, char *out, size_t n);

/* Whether path is "<dir>/<vm>-<target>.<txid>.qcow2" for one of txids[]. */
int imgfile_is_overlay_of(const char *path, const char *vm, const char *target, const char *const *txids, size_t n);

/* Checks that the file at path can be created now: every component of it at
 * most the filesystem's name limit (NAME_MAX), the whole path shorter than
 * PATH_MAX and than limit bytes, the file absent, its directory writable, and
 * at least need_bytes free there. Fails with LS_EDISK, LS_EOVERLAYEXISTS or
 * LS_ENOSPACE and "<what> \"<path>\": <why>" in err (the caller adds VM and
 * step). */
int imgfile_check_new(const char *what, const char *path, size_t limit, unsigned long long need_bytes, lserr *err);
