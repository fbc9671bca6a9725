/* imgfile: names of the files the agent creates, and whether one can be made. */
#include "imgfile.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Length of the directory part of path, slash excluded ("" for a bare name). */
static int dir_len(const char *path)
{
        const char *slash = strrchr(path, '/');

        return slash ? (int)(slash - path) : 0;
}

static int fits(int len, size_t n)
{
        return len >= 0 && (size_t)len < n ? 0 : -ENAMETOOLONG;
}

int imgfile_overlay(const char *image, const char *vm, const char *target, const char *txid, char *out, size_t n)
{
        int dl = dir_len(image);

        return fits(snprintf(out, n, "%.*s%s%s-%s.%s.qcow2", dl, image, strchr(image, '/') ? "/" : "", vm, target,
                             txid),
                    n);
}

int imgfile_memory(const char *image, const char *vm, const char *txid, char *out, size_t n)
{
        int dl = dir_len(image);

        return fits(snprintf(out, n, "%.*s%s%s.%s.mem", dl, image, strchr(image, '/') ? "/" : "", vm, txid), n);
}

int imgfile_legacy(const char *image, const char *name, const char *ext, char *out, size_t n)
{
        return fits(snprintf(out, n, "%s.%s.%s", image, name, ext), n);
}

int imgfile_is_layer(const char *path, const char *cut)
{
        const char *base = strrchr(path, '/');
        size_t bl, cl = strlen(cut);

        base = base ? base + 1 : path;
        bl = strlen(base);
        /* ".<cut>.qcow2" with something before it. */
        return cl && bl > cl + 7 && base[bl - cl - 7] == '.' && !memcmp(base + bl - cl - 6, cut, cl) &&
               !strcmp(base + bl - 6, ".qcow2");
}

int imgfile_layer_txid(const char *path, const char *vm, const char *target, char *out, size_t n)
{
        const char *base = strrchr(path, '/');
        size_t vl = strlen(vm), tl = strlen(target), bl, il;

        base = base ? base + 1 : path;
        bl = strlen(base);
        if (bl <= vl + tl + 2 + 6 || strncmp(base, vm, vl) || base[vl] != '-' || strncmp(base + vl + 1, target, tl) ||
            base[vl + 1 + tl] != '.' || strcmp(base + bl - 6, ".qcow2"))
                return -EINVAL;
        il = bl - (vl + tl + 2) - 6;
        if (il == 0 || il >= n || memchr(base + vl + tl + 2, '.', il))
                return -EINVAL;
        memcpy(out, base + vl + tl + 2, il);
        out[il] = '\0';
        return 0;
}

int imgfile_is_overlay_of(const char *path, const char *vm, const char *target, const char *const *txids, size_t n)
{
        char id[256];

        if (imgfile_layer_txid(path, vm, target, id, sizeof(id)) < 0)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (txids[i] && !strcmp(txids[i], id))
                        return 1;
        return 0;
}

int imgfile_check_new(const char *what, const char *path, size_t limit, unsigned long long need_bytes, lserr *err)
{
        char dir[PATH_MAX];
        int dl = dir_len(path);
        size_t name_max = NAME_MAX;
        unsigned long long avail;
        struct statvfs vfs;

        if (strlen(path) >= PATH_MAX || strlen(path) >= limit)
                return lserr_set(err, LS_EDISK, "%s \"%.200s...\": path of %zu bytes is too long (at most %zu)", what,
                                 path, strlen(path), (limit < PATH_MAX ? limit : PATH_MAX) - 1);
        snprintf(dir, sizeof(dir), "%.*s", dl, path);
        if (!dir[0])
                snprintf(dir, sizeof(dir), "%s", path[0] == '/' ? "/" : ".");
        if (statvfs(dir, &vfs) < 0)
                return lserr_set(err, LS_EDISK, "%s \"%s\": directory \"%s\": %m", what, path, dir);
        if (vfs.f_namemax && vfs.f_namemax < name_max)
                name_max = vfs.f_namemax;
        for (const char *p = path; *p;) {
                size_t cl = strcspn(p, "/");
                if (cl > name_max)
                        return lserr_set(err, LS_EDISK, "%s \"%s\": a path component of %zu bytes is longer than the "
                                         "filesystem's limit of %zu", what, path, cl, name_max);
                p += cl;
                p += *p == '/';
        }
        if (access(path, F_OK) == 0)
                return lserr_set(err, LS_EOVERLAYEXISTS, "%s \"%s\" already exists", what, path);
        if ((vfs.f_flag & ST_RDONLY) || access(dir, W_OK | X_OK) < 0)
                return lserr_set(err, LS_EDISK, "%s \"%s\": directory \"%s\" is not writable%s", what, path, dir,
                                 vfs.f_flag & ST_RDONLY ? " (read-only filesystem)" : "");
        avail = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
        if (avail < need_bytes)
                return lserr_set(err, LS_ENOSPACE, "%s \"%s\": only %llu MiB free in \"%s\", %llu MiB needed", what,
                                 path, avail / (1024 * 1024), dir, (need_bytes + 1024 * 1024 - 1) / (1024 * 1024));
        return 0;
}
