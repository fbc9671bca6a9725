/* hv_module: finds and loads the libvirt backend's shared object, and refuses
 * one built for another agent. */
#include "hv_module.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Set once, in the main thread before any fork (hv_preload); read after. */
static const struct hv_ops *loaded;

int hv_module_locate(const char *exe, char *ret, size_t n, lserr *err)
{
        const char *slash = strrchr(exe, '/');
        int len;

        if (!slash || slash == exe)
                return lserr_set(err, -EINVAL, "backend libvirt: agent binary \"%s\" has no directory", exe);
        len = snprintf(ret, n, "%.*s/%s", (int)(slash - exe), exe, HV_MODULE_REL);
        if (len < 0 || (size_t)len >= n)
                return lserr_set(err, -ENAMETOOLONG, "backend libvirt: module path beside \"%s\" is too long", exe);
        return 0;
}

int hv_module_load(const char *path, const char *name, const struct hv_ops **ret, lserr *err)
{
        const struct hv_module *m;
        void *h;

        if (access(path, R_OK) < 0)
                return lserr_set(err, -errno, "backend libvirt: cannot open its module %s: %m", name);
        h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h)
                return lserr_set(err, -ENOEXEC, "backend libvirt: cannot load %s: %s", name, dlerror());
        m = dlsym(h, "hv_module");
        /* A module that does not match stays mapped: unloading libvirt is not
         * safe, and the agent refuses to serve without a backend anyway. */
        if (!m)
                return lserr_set(err, -ENOEXEC, "backend libvirt: %s is not a lockstep backend (no hv_module)", name);
        if (strcmp(m->version, LOCKSTEP_VERSION) != 0 || m->ops_size != sizeof(struct hv_ops))
                return lserr_set(err, -ENOEXEC,
                                 "backend libvirt: %s is of lockstep %s (interface %zu bytes), this agent of %s "
                                 "(%zu): install both from one package, then restart the agent",
                                 name, m->version, m->ops_size, LOCKSTEP_VERSION, sizeof(struct hv_ops));
        *ret = m->ops;
        return 0;
}

int hv_module_libvirt(const struct hv_ops **ret, lserr *err)
{
        char exe[PATH_MAX], path[PATH_MAX];
        ssize_t len;
        int r;

        if (!loaded) {
                len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
                if (len < 0)
                        return lserr_set(err, -errno, "backend libvirt: cannot read /proc/self/exe: %m");
                exe[len] = '\0';
                r = hv_module_locate(exe, path, sizeof(path), err);
                if (r < 0)
                        return r;
                r = hv_module_load(path, path, &loaded, err);
                if (r < 0)
                        return r;
        }
        *ret = loaded;
        return 0;
}
