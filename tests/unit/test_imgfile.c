/* test_imgfile: file names that never grow with a group's history, finding a
 * cut's layer under both naming schemes, and the checks FREEZE runs on every
 * file a cut will create, on a real directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imgfile.h"
#include "testutil.h"

static void test_names_do_not_grow(void **state)
{
        const char *txid = "ls-20261129T184659-5adc7f";
        char out[1024], again[1024];

        (void)state;
        assert_int_equal(imgfile_overlay("/img/web1-vda.qcow2", "web1", "vda", txid, out, sizeof(out)), 0);
        assert_string_equal(out, "/img/web1-vda.ls-20261129T184659-5adc7f.qcow2");
        /* On a long name from before (each cut appended to it) the next name is
         * as short as on the base image: it never depends on the image's name. */
        assert_int_equal(imgfile_overlay("/img/web2-vda.group-20261129-184629.qcow2.ls-20261129T184634-c3da69.qcow2"
                                         ".ls-20261129T184640-aaaaaa.qcow2",
                                         "web1", "vda", txid, again, sizeof(again)),
                         0);
        assert_string_equal(again, out);
        /* Chained 10,000 times, a name keeps its length. */
        for (int i = 0; i < 10000; i++) {
                char t[32], next[1024];
                snprintf(t, sizeof(t), "ls-20261129T000000-%06x", i);
                assert_int_equal(imgfile_overlay(out, "web1", "vda", t, next, sizeof(next)), 0);
                assert_int_equal(strlen(next), strlen(out));
                memcpy(out, next, sizeof(out));
        }
        assert_int_equal(imgfile_memory("/img/web1-vda.qcow2", "web1", txid, out, sizeof(out)), 0);
        assert_string_equal(out, "/img/web1.ls-20261129T184659-5adc7f.mem");
        assert_int_equal(imgfile_legacy("/img/web1.qcow2", "nightly", "mem", out, sizeof(out)), 0);
        assert_string_equal(out, "/img/web1.qcow2.nightly.mem");
        assert_int_equal(imgfile_overlay("/img/web1.qcow2", "web1", "vda", txid, out, 20), -ENAMETOOLONG);
}

static void test_layer_of_a_cut(void **state)
{
        (void)state;
        assert_true(imgfile_is_layer("/img/web1-vda.ls-A1.qcow2", "ls-A1"));
        assert_true(imgfile_is_layer("/img/web1.qcow2.ls-A1.qcow2", "ls-A1"));       /* older scheme */
        assert_true(imgfile_is_layer("/img/web1.qcow2.nightly.qcow2", "nightly"));   /* older, by name */
        assert_false(imgfile_is_layer("/img/web1.qcow2.ls-A1.qcow2.ls-B2.qcow2", "ls-A1"));
        assert_false(imgfile_is_layer("/img/web1-vda.xls-A1.qcow2", "ls-A1"));
        assert_false(imgfile_is_layer("/img/ls-A1.qcow2", "ls-A1")); /* nothing before the cut */
        assert_false(imgfile_is_layer("/img/web1-vda.ls-A1.qcow2.mem", "ls-A1"));
        assert_false(imgfile_is_layer("/img/web1-vda.qcow2", ""));
        /* The directory's name never matches. */
        assert_false(imgfile_is_layer("/x.ls-A1.qcow2/web1-vda.qcow2", "ls-A1"));
}

static void test_check_new_file(void **state)
{
        char *dir = tu_mkdtemp();
        char name[300], path[4200];
        lserr err = {0};

        (void)state;
        /* 255 bytes is the limit of a name; 256 is refused before anything is made. */
        memset(name, 'a', 255);
        name[255] = '\0';
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        assert_int_equal(imgfile_check_new("overlay", path, sizeof(path), 0, &err), 0);
        name[255] = 'b';
        name[256] = '\0';
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        assert_int_equal(imgfile_check_new("overlay", path, sizeof(path), 0, &err), LS_EDISK);
        assert_non_null(strstr(err.msg, "component of 256 bytes"));

        /* A path at the caller's limit. */
        lserr_clear(&err);
        snprintf(path, sizeof(path), "%s/web1-vda.ls-A.qcow2", dir);
        assert_int_equal(imgfile_check_new("overlay", path, strlen(path), 0, &err), LS_EDISK);
        assert_non_null(strstr(err.msg, "too long"));

        /* Already there. */
        lserr_clear(&err);
        free(tu_write(dir, "web1-vda.ls-A.qcow2", "x", 0600));
        assert_int_equal(imgfile_check_new("overlay", path, sizeof(path), 0, &err), LS_EOVERLAYEXISTS);
        assert_non_null(strstr(err.msg, "already exists"));

        /* More room asked for than the filesystem has. */
        lserr_clear(&err);
        snprintf(path, sizeof(path), "%s/web1-vda.ls-B.qcow2", dir);
        assert_int_equal(imgfile_check_new("overlay", path, sizeof(path), 1ULL << 62, &err), LS_ENOSPACE);
        assert_non_null(strstr(err.msg, "MiB free"));

        /* A directory that is not there. */
        lserr_clear(&err);
        snprintf(path, sizeof(path), "%s/gone/web1-vda.ls-B.qcow2", dir);
        assert_int_equal(imgfile_check_new("overlay", path, sizeof(path), 0, &err), LS_EDISK);
        assert_non_null(strstr(err.msg, "directory"));
        tu_rmtree(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names_do_not_grow),
                cmocka_unit_test(test_layer_of_a_cut),
                cmocka_unit_test(test_check_new_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
