/* test_branch: which files of a pre-revert branch are its own, on a made-up
 * chain: never a file another chain holds, never a file lockstep did not make,
 * and a drop cut short is finished from the top. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "branch.h"
#include "imgfile.h"
#include "testutil.h"

/* A chain as "file backing" pairs; the files exist in a temporary directory. */
struct chain {
        const char *dir;
        const char *links[16][2];
};

static void full(const struct chain *c, const char *name, char *out)
{
        snprintf(out, HV_PATH_MAX, "%s/%s", c->dir, name);
}

static int backing(void *ctx, const char *path, char *out, lserr *err)
{
        const struct chain *c = ctx;
        char p[HV_PATH_MAX];

        (void)err;
        if (access(path, F_OK) < 0)
                return -ENOENT;
        out[0] = '\0';
        for (size_t i = 0; i < 16 && c->links[i][0]; i++) {
                full(c, c->links[i][0], p);
                if (!strcmp(p, path))
                        full(c, c->links[i][1], out);
        }
        return 0;
}

static int ours(void *ctx, const char *path)
{
        char id[80];

        (void)ctx;
        return imgfile_layer_txid(path, "web1", "vda", id, sizeof(id)) == 0;
}

static void touch(const struct chain *c, const char *name)
{
        char p[HV_PATH_MAX];

        full(c, name, p);
        fclose(fopen(p, "w"));
}

static void test_own_files(void **state)
{
        char *dir = tu_mkdtemp();
        /* base <- X (cut A's layer) <- Y (cut B's) <- top (branch top, revert R's);
         * the VM now runs on O (revert R2's overlay) over X. */
        struct chain c = {dir,
                          {{"web1-vda.ls-A.qcow2", "web1-vda.qcow2"},
                           {"web1-vda.ls-B.qcow2", "web1-vda.ls-A.qcow2"},
                           {"web1-vda.ls-R.qcow2", "web1-vda.ls-B.qcow2"},
                           {"web1-vda.ls-R2.qcow2", "web1-vda.ls-A.qcow2"}}};
        char top[HV_PATH_MAX], cur[HV_PATH_MAX], (*own)[HV_PATH_MAX] = NULL;
        const char *roots[1] = {cur};
        size_t n = 0;
        lserr err = {0};

        (void)state;
        for (size_t i = 0; i < 4; i++)
                touch(&c, c.links[i][0]);
        touch(&c, "web1-vda.qcow2");
        full(&c, "web1-vda.ls-R.qcow2", top);
        full(&c, "web1-vda.ls-R2.qcow2", cur);
        assert_int_equal(branch_own_files(top, roots, 1, backing, ours, &c, &own, &n, &err), 0);
        assert_int_equal(n, 2); /* top and Y: X and base are in the live chain */
        assert_non_null(strstr(own[0], "ls-R.qcow2"));
        assert_non_null(strstr(own[1], "ls-B.qcow2"));
        free(own);

        /* A drop cut short after removing Y (files go bottom up): from the
         * top, only the top is left to remove. */
        char y[HV_PATH_MAX];
        full(&c, "web1-vda.ls-B.qcow2", y);
        unlink(y);
        own = NULL;
        assert_int_equal(branch_own_files(top, roots, 1, backing, ours, &c, &own, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_non_null(strstr(own[0], "ls-R.qcow2"));
        free(own);
        touch(&c, "web1-vda.ls-B.qcow2");

        /* Nothing holds the chain any more (the VM moved to another base): the
         * walk reaches the base image, which lockstep did not make: refused. */
        char other[HV_PATH_MAX];
        const char *none[1] = {other};
        full(&c, "elsewhere.qcow2", other);
        own = NULL;
        assert_int_equal(branch_own_files(top, none, 1, backing, ours, &c, &own, &n, &err), LS_EIMAGE);
        assert_non_null(strstr(err.msg, "web1-vda.qcow2\" is in the branch but is no file lockstep made"));
        assert_null(own);

        /* The top gone: dropped already. */
        lserr_clear(&err);
        unlink(top);
        assert_int_equal(branch_own_files(top, roots, 1, backing, ours, &c, &own, &n, &err), 0);
        assert_int_equal(n, 0);
        free(own);
        tu_rmtree(dir);
}

/* A record keeps each branch top's format; one from before formats were
 * reads with none; every record of a VM is listed for a revert to search. */
static void test_records(void **state)
{
        char *dir = tu_mkdtemp(), path[HV_PATH_MAX];
        struct hv_image imgs[2] = {{.target = "vda", .branch = "/img/web1-vda.c1.qcow2", .branch_format = "qcow2"},
                                   {.target = "vdb", .branch = "/img/my disk.raw", .branch_format = "raw"}};
        struct hv_image rec[HV_MAX_DISKS], *all = NULL;
        size_t n = 0;
        lserr err = {0};

        (void)state;
        assert_int_equal(branch_record_write(dir, "r1", "web1", imgs, 2, &err), 0);
        assert_int_equal(branch_record_read(dir, "r1", "web1", rec, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(rec[0].branch, "/img/web1-vda.c1.qcow2");
        assert_string_equal(rec[0].branch_format, "qcow2");
        assert_string_equal(rec[1].branch, "/img/my disk.raw");
        assert_string_equal(rec[1].branch_format, "raw");

        assert_int_equal(branch_record_path(dir, "r0", "web1", path, sizeof(path)), 0);
        free(tu_write(dir, "branches/r0.web1", "vda /img/web1-vda.c0.qcow2\n", 0600));
        assert_int_equal(branch_record_read(dir, "r0", "web1", rec, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(rec[0].branch, "/img/web1-vda.c0.qcow2");
        assert_string_equal(rec[0].branch_format, "");
        free(tu_write(dir, "branches/r2.db1", "vda @qcow2 /img/db1-vda.c1.qcow2\n", 0600));

        assert_int_equal(branch_record_all(dir, "web1", &all, &n, &err), 0);
        assert_int_equal(n, 3); /* r0's disk and r1's two; none of db1's */
        for (size_t i = 0; i < n; i++)
                assert_null(strstr(all[i].branch, "db1"));
        free(all);
        tu_rmtree(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_own_files),
                cmocka_unit_test(test_records),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
