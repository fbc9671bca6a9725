/* lv_image: image files read directly (format by magic bytes, the backing
 * file a qcow2 header names) and qemu-img run on them. */
#pragma once

#include <stddef.h>

#include "lserr.h"

/* "qcow2" when path starts with qcow2's magic, "raw" otherwise (also when it
 * cannot be read). The one place lockstep guesses a format from the bytes. */
const char *lv_image_format(const char *path);

/* The backing file named in path's qcow2 header, resolved against the image's
 * directory, into out (n bytes); "" for raw images and qcow2 without a backing
 * file. Read from the header so it works whether or not the domain runs. */
int lv_image_backing(const char *path, char *out, size_t n, lserr *err);

/* Runs argv (qemu-img ...; at least three words) and waits for it: 0 when it
 * exited 0, LS_EHV otherwise. The _quiet one sends its stdout to /dev/null. */
int lv_image_run(const char *const argv[], lserr *err);
int lv_image_run_quiet(const char *const argv[], lserr *err);
