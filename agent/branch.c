/* branch: pre-revert branch records, and a branch's own files above its forks
 * from every other chain. */
#include "branch.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"
#include "names.h"

struct pathset {
        char (*p)[HV_PATH_MAX];
        size_t n, cap;
};

static int set_has(const struct pathset *s, const char *path)
{
        for (size_t i = 0; i < s->n; i++)
                if (!strcmp(s->p[i], path))
                        return 1;
        return 0;
}

static int set_add(struct pathset *s, const char *path)
{
        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 64;
                void *p = realloc(s->p, cap * sizeof(*s->p));
                if (!p)
                        return -ENOMEM;
                s->p = p;
                s->cap = cap;
        }
        memcpy(s->p[s->n++], path, HV_PATH_MAX);
        return 0;
}

/* Adds every file of the chain from top down to s (stops early at a file
 * already in it: the rest of that chain is there too). */
static int add_chain(struct pathset *s, const char *top, branch_backing_fn backing, void *ctx, lserr *err)
{
        char cur[HV_PATH_MAX], next[HV_PATH_MAX];

        snprintf(cur, sizeof(cur), "%s", top);
        for (int depth = 0; cur[0]; depth++) {
                int r;
                if (depth == BRANCH_MAX_DEPTH)
                        return lserr_set(err, LS_EHV, "chain below \"%s\" is deeper than %d", top, BRANCH_MAX_DEPTH);
                if (set_has(s, cur))
                        return 0;
                r = backing(ctx, cur, next, err);
                if (r == -ENOENT)
                        return 0;
                if (r < 0)
                        return r;
                r = set_add(s, cur);
                if (r < 0)
                        return r;
                memcpy(cur, next, sizeof(cur));
        }
        return 0;
}

int branch_own_files(const char *top, const char *const *roots, size_t n_roots, branch_backing_fn backing,
                     branch_ours_fn ours, void *ctx, char (**ret)[HV_PATH_MAX], size_t *ret_n, lserr *err)
{
        struct pathset used = {0}, own = {0};
        char cur[HV_PATH_MAX], next[HV_PATH_MAX];
        int r = 0;

        for (size_t i = 0; r == 0 && i < n_roots; i++)
                if (roots[i] && roots[i][0])
                        r = add_chain(&used, roots[i], backing, ctx, err);
        snprintf(cur, sizeof(cur), "%s", top);
        for (int depth = 0; r == 0 && cur[0] && !set_has(&used, cur); depth++) {
                if (depth == BRANCH_MAX_DEPTH) {
                        r = lserr_set(err, LS_EHV, "branch below \"%s\" is deeper than %d", top, BRANCH_MAX_DEPTH);
                        break;
                }
                if (access(cur, F_OK) < 0)
                        break; /* removed already, with what was below it */
                if (!ours(ctx, cur)) {
                        r = lserr_set(err, LS_EIMAGE,
                                      "\"%s\" is in the branch but is no file lockstep made, and no kept chain holds "
                                      "it: nothing removed",
                                      cur);
                        break;
                }
                r = backing(ctx, cur, next, err);
                if (r == -ENOENT) {
                        r = 0;
                        break;
                }
                if (r == 0)
                        r = set_add(&own, cur);
                memcpy(cur, next, sizeof(cur));
        }
        free(used.p);
        if (r < 0) {
                free(own.p);
                return r;
        }
        *ret = own.p;
        *ret_n = own.n;
        return 0;
}

/* ---- records ---- */

int branch_record_path(const char *journal_dir, const char *txid, const char *vm, char *out, size_t n)
{
        int len = snprintf(out, n, "%s/branches/%s.%s", journal_dir, txid, vm);

        return len < 0 || (size_t)len >= n ? -ENAMETOOLONG : 0;
}

int branch_record_write(const char *journal_dir, const char *txid, const char *vm, const struct hv_image *imgs,
                        size_t n, lserr *err)
{
        char dir[4200], path[4200], text[HV_MAX_DISKS * (HV_PATH_MAX + HV_TARGET_MAX + 24)];
        size_t off = 0;
        int r;

        assert(n <= HV_MAX_DISKS);
        snprintf(dir, sizeof(dir), "%s/branches", journal_dir);
        r = fsutil_mkdir_p(dir, 0700, err);
        if (r < 0)
                return r;
        if (branch_record_path(journal_dir, txid, vm, path, sizeof(path)) < 0)
                return lserr_set(err, -ENAMETOOLONG, "branch record path too long");
        /* "@<format>" before the path (which starts with '/'); records from
         * before formats were have none. */
        for (size_t k = 0; k < n; k++)
                off += (size_t)snprintf(text + off, sizeof(text) - off, "%s @%s %s\n", imgs[k].target,
                                        imgs[k].branch_format[0] ? imgs[k].branch_format : "-", imgs[k].branch);
        return fsutil_write_atomic(path, text, off, 0600, 0, err);
}

int branch_record_read(const char *journal_dir, const char *txid, const char *vm, struct hv_image *ret,
                       size_t *ret_n, lserr *err)
{
        char path[4200], *line, *save = NULL;
        _cleanup_free_ char *buf = NULL;
        size_t len, n = 0;
        int r;

        if (branch_record_path(journal_dir, txid, vm, path, sizeof(path)) < 0)
                return lserr_set(err, -ENAMETOOLONG, "branch record path too long");
        r = fsutil_read_all(path, 1 << 20, &buf, &len, NULL);
        if (r == -ENOENT)
                return r;
        if (r < 0)
                return lserr_set(err, r, "branch record \"%s\": cannot read it", path);
        for (line = strtok_r(buf, "\n", &save); line && n < HV_MAX_DISKS; line = strtok_r(NULL, "\n", &save)) {
                char target[HV_TARGET_MAX], p[HV_PATH_MAX], fmt[16] = "";
                if (sscanf(line, "%31s @%15s %1023[^\n]", target, fmt, p) != 3 &&
                    sscanf(line, "%31s %1023[^\n]", target, p) != 2)
                        continue;
                memset(&ret[n], 0, sizeof(ret[n]));
                snprintf(ret[n].target, sizeof(ret[n].target), "%s", target);
                snprintf(ret[n].branch, sizeof(ret[n].branch), "%s", p);
                snprintf(ret[n].branch_format, sizeof(ret[n].branch_format), "%s", strcmp(fmt, "-") ? fmt : "");
                n++;
        }
        *ret_n = n;
        return 0;
}

int branch_record_remove(const char *journal_dir, const char *txid, const char *vm, lserr *err)
{
        char path[4200];

        if (branch_record_path(journal_dir, txid, vm, path, sizeof(path)) < 0)
                return lserr_set(err, -ENAMETOOLONG, "branch record path too long");
        if (unlink(path) < 0 && errno != ENOENT)
                return lserr_set(err, -errno, "remove branch record \"%s\": %m", path);
        return 0;
}

static void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}

/* The txid of record file `name` of vm ("<txid>.<vm>") into of; -EINVAL when
 * name is not one. */
static int record_of(const char *name, const char *vm, char *of, size_t n)
{
        size_t nl = strlen(name), vl = strlen(vm);

        if (nl <= vl + 1 || name[nl - vl - 1] != '.' || strcmp(name + nl - vl, vm) || nl - vl - 1 >= n)
                return -EINVAL;
        snprintf(of, n, "%.*s", (int)(nl - vl - 1), name);
        return 0;
}

/* Every disk of vm's records (of reverts other than except, NULL for all)
 * appended to ret. */
static int records_of(const char *journal_dir, const char *vm, const char *except, struct hv_image **ret,
                      size_t *ret_n, lserr *err)
{
        _cleanup_(closedirp) DIR *dir = NULL;
        struct hv_image other[HV_MAX_DISKS];
        char dirpath[4200];
        struct dirent *de;
        int r = 0;

        snprintf(dirpath, sizeof(dirpath), "%s/branches", journal_dir);
        dir = opendir(dirpath);
        while (r == 0 && dir && (de = readdir(dir))) {
                char of[LS_NAME_MAX + 1];
                size_t k = 0;
                if (record_of(de->d_name, vm, of, sizeof(of)) < 0 || (except && !strcmp(of, except)))
                        continue;
                r = branch_record_read(journal_dir, of, vm, other, &k, err);
                if (r == -ENOENT)
                        r = 0; /* removed meanwhile */
                if (r < 0 || k == 0)
                        continue;
                struct hv_image *p = realloc(*ret, (*ret_n + k) * sizeof(**ret));
                if (!p)
                        return -ENOMEM;
                *ret = p;
                memcpy(p + *ret_n, other, k * sizeof(*other));
                *ret_n += k;
        }
        return r;
}

int branch_record_all(const char *journal_dir, const char *vm, struct hv_image **ret, size_t *ret_n, lserr *err)
{
        struct hv_image *all = NULL;
        size_t n = 0;
        int r = records_of(journal_dir, vm, NULL, &all, &n, err);

        if (r < 0) {
                free(all);
                return r;
        }
        *ret = all;
        *ret_n = n;
        return 0;
}

int branch_record_others(const char *journal_dir, const char *vm, const char *except, char (**ret)[HV_PATH_MAX],
                         size_t *ret_n, lserr *err)
{
        _cleanup_free_ struct hv_image *all = NULL;
        struct pathset keep = {0};
        size_t n = 0;
        int r = records_of(journal_dir, vm, except, &all, &n, err);

        for (size_t j = 0; r == 0 && j < n; j++)
                r = set_add(&keep, all[j].branch);
        if (r < 0) {
                free(keep.p);
                return r;
        }
        *ret = keep.p;
        *ret_n = keep.n;
        return 0;
}
