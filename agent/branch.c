/* branch: a branch's own files, above its forks from every other chain. */
#include "branch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
