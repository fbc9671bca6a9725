/* hv_module: the libvirt backend is a shared object of its own, loaded only
 * by agents configured for it: a sim agent (the scale rig's) maps none of
 * libvirt's library tree (~10 MB of RSS in each of its three processes). */
#pragma once

#include <stddef.h>

#include "hv_backend.h"
#include "lserr.h"

/* ret = the module's path for the agent binary at exe: beside it, at the
 * install's relative place (HV_MODULE_REL, from sbin to the package's libdir;
 * the build tree keeps the same shape). exe may end in " (deleted)". */
int hv_module_locate(const char *exe, char *ret, size_t n, lserr *err);

/* Loads the module at path (name: what errors call it) and checks that it was
 * built with this agent: same version, same backend interface. It is never
 * unloaded: libvirt and GLib do not support it. */
int hv_module_load(const char *path, const char *name, const struct hv_ops **ret, lserr *err);

/* The libvirt backend of this binary, loaded at the first call and kept. The
 * agent makes that call before it forks (hv_preload), so its guardian never
 * loads code with a guest frozen, and a package upgrade that replaces the
 * module under a running agent changes nothing in it. */
int hv_module_libvirt(const struct hv_ops **ret, lserr *err);
