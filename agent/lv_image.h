/* lv_image: image files read directly (the backing file a qcow2 header names,
 * only of images known to be qcow2) and qemu-img run on them. A format is
 * never guessed from the bytes: a raw disk's bytes are the guest's. */
#pragma once

#include <stddef.h>

#include "lserr.h"

/* Whether p is a plain absolute path: starts with '/', no empty, "." or ".."
 * component, no control character, shorter than HV_PATH_MAX. */
int lv_image_plain_path(const char *p);

/* The backing file of path, whose format is `format` as a trusted source says
 * (the domain XML, or the header of the image above it): for "qcow2", read
 * from its header, with the backing file's format from the header's backing
 * format extension, into out (n bytes) and ret_fmt (fn bytes); "" for both at
 * the bottom of a chain. Any other format is not read at all (its chain ends
 * there). A backing name that is not a plain absolute path, or without a
 * recorded format, is LS_EIMAGE naming path; a missing file is -errno. */
int lv_image_backing(const char *path, const char *format, char *out, size_t n, char *ret_fmt, size_t fn,
                     lserr *err);

/* Runs argv (qemu-img ...; at least three words) and waits for it: 0 when it
 * exited 0, LS_EHV otherwise. The _quiet one sends its stdout to /dev/null. */
int lv_image_run(const char *const argv[], lserr *err);
int lv_image_run_quiet(const char *const argv[], lserr *err);
