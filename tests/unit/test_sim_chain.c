/* test_sim_chain: the sim backend's backing chains (pure functions of a
 * domain's state): links added, found and dropped, a cut's layer found by
 * txid or by an older cut's name, the layer above an image, a full chain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sim_chain.h"
#include "testutil.h"

/* base <- web1-vda.t1 <- web1-vda.t2 <- web1-vda.t3 (active), plus the chain
 * of another disk, so that a walk must not wander into it. */
static struct simstate *chain3(void)
{
        struct simstate *st = calloc(1, sizeof(*st));

        snprintf(st->cur[0], HV_PATH_MAX, "/img/web1-vda.t3.qcow2");
        snprintf(st->cur[1], HV_PATH_MAX, "/img/web1-vdb.t3.qcow2");
        assert_int_equal(sim_chain_add(st, "/img/web1-vda.t1.qcow2", "/img/base.qcow2"), 0);
        assert_int_equal(sim_chain_add(st, "/img/web1-vdb.t3.qcow2", "/img/data.qcow2"), 0);
        assert_int_equal(sim_chain_add(st, "/img/web1-vda.t2.qcow2", "/img/web1-vda.t1.qcow2"), 0);
        assert_int_equal(sim_chain_add(st, "/img/web1-vda.t3.qcow2", "/img/web1-vda.t2.qcow2"), 0);
        return st;
}

static void test_find_and_drop(void **state)
{
        struct simstate *st = chain3();
        int k;

        (void)state;
        k = sim_chain_find(st, "/img/web1-vda.t2.qcow2");
        assert_true(k >= 0);
        assert_string_equal(st->backing[k], "/img/web1-vda.t1.qcow2");
        assert_int_equal(sim_chain_find(st, "/img/base.qcow2"), -1);
        /* Dropping a link in the middle keeps every other link's backing. */
        sim_chain_drop(st, "/img/web1-vdb.t3.qcow2");
        assert_int_equal(st->n_links, 3);
        assert_int_equal(sim_chain_find(st, "/img/web1-vdb.t3.qcow2"), -1);
        assert_string_equal(st->backing[sim_chain_find(st, "/img/web1-vda.t3.qcow2")], "/img/web1-vda.t2.qcow2");
        assert_string_equal(st->backing[sim_chain_find(st, "/img/web1-vda.t1.qcow2")], "/img/base.qcow2");
        sim_chain_drop(st, "/img/not-there.qcow2");
        assert_int_equal(st->n_links, 3);
        free(st);
}

static void test_layer_of(void **state)
{
        struct simstate *st = chain3();
        const char *child = (const char *)1;
        int k;

        (void)state;
        /* The active layer: nothing above it. */
        k = sim_chain_layer_of(st, 0, "t3", NULL, &child);
        assert_string_equal(st->link[k], "/img/web1-vda.t3.qcow2");
        assert_null(child);
        /* A layer in the middle: its child is the layer above. */
        k = sim_chain_layer_of(st, 0, "t1", NULL, &child);
        assert_string_equal(st->link[k], "/img/web1-vda.t1.qcow2");
        assert_string_equal(child, "/img/web1-vda.t2.qcow2");
        /* Not in this disk's chain, even though another disk has a t3 layer only. */
        assert_int_equal(sim_chain_layer_of(st, 1, "t1", NULL, &child), -1);
        assert_int_equal(sim_chain_layer_of(st, 0, "t9", NULL, &child), -1);
        free(st);
}

/* A cut made before names were short: its layer is "<its base>.<name>.qcow2". */
static void test_layer_of_legacy_name(void **state)
{
        struct simstate *st = calloc(1, sizeof(*st));
        const char *child;
        int k;

        (void)state;
        snprintf(st->cur[0], HV_PATH_MAX, "/img/web1-vda.t5.qcow2");
        assert_int_equal(sim_chain_add(st, "/img/base.qcow2.nightly.qcow2", "/img/base.qcow2"), 0);
        assert_int_equal(sim_chain_add(st, "/img/web1-vda.t5.qcow2", "/img/base.qcow2.nightly.qcow2"), 0);
        k = sim_chain_layer_of(st, 0, "t4", "nightly", &child);
        assert_true(k >= 0);
        assert_string_equal(st->link[k], "/img/base.qcow2.nightly.qcow2");
        assert_string_equal(child, "/img/web1-vda.t5.qcow2");
        /* The legacy name is only a fallback: the txid wins when both match. */
        k = sim_chain_layer_of(st, 0, "t5", "nightly", &child);
        assert_string_equal(st->link[k], "/img/web1-vda.t5.qcow2");
        assert_int_equal(sim_chain_layer_of(st, 0, "t4", "weekly", &child), -1);
        free(st);
}

static void test_layer_above(void **state)
{
        struct simstate *st = chain3();
        const char *child;
        int k;

        (void)state;
        k = sim_chain_layer_above(st, 0, "/img/base.qcow2", &child);
        assert_string_equal(st->link[k], "/img/web1-vda.t1.qcow2");
        assert_string_equal(child, "/img/web1-vda.t2.qcow2");
        k = sim_chain_layer_above(st, 0, "/img/web1-vda.t2.qcow2", &child);
        assert_string_equal(st->link[k], "/img/web1-vda.t3.qcow2");
        assert_null(child);
        /* Nothing sits on the active layer, and other disks' images are not here. */
        assert_int_equal(sim_chain_layer_above(st, 0, "/img/web1-vda.t3.qcow2", &child), -1);
        assert_int_equal(sim_chain_layer_above(st, 0, "/img/data.qcow2", &child), -1);
        free(st);
}

/* Chains from a top that is no disk's (a recorded branch's), and whether a
 * chain holds a file: what a revert searches besides the disks' chains. */
static void test_layer_from_and_holds(void **state)
{
        struct simstate *st = chain3();
        const char *child;
        int k;

        (void)state;
        k = sim_chain_layer_from(st, "/img/web1-vda.t2.qcow2", "t1", NULL, &child);
        assert_string_equal(st->link[k], "/img/web1-vda.t1.qcow2");
        assert_string_equal(child, "/img/web1-vda.t2.qcow2");
        assert_int_equal(sim_chain_layer_from(st, "/img/web1-vda.t2.qcow2", "t3", NULL, &child), -1);
        assert_int_equal(sim_chain_layer_from(st, "/img/gone.qcow2", "t1", NULL, &child), -1);

        assert_true(sim_chain_holds(st, "/img/web1-vda.t3.qcow2", "/img/web1-vda.t3.qcow2"));
        assert_true(sim_chain_holds(st, "/img/web1-vda.t3.qcow2", "/img/base.qcow2"));
        assert_false(sim_chain_holds(st, "/img/web1-vda.t3.qcow2", "/img/data.qcow2"));
        assert_false(sim_chain_holds(st, "/img/web1-vda.t2.qcow2", "/img/web1-vda.t3.qcow2"));
        free(st);
}

static void test_backing_and_full_chain(void **state)
{
        struct simstate *st = calloc(1, sizeof(*st));
        char *dir = tu_mkdtemp(), out[HV_PATH_MAX], *base, *top;
        lserr err = {0};

        (void)state;
        base = tu_write(dir, "base.qcow2", "", 0600);
        top = tu_write(dir, "top.qcow2", "", 0600);
        assert_int_equal(sim_chain_add(st, top, base), 0);
        assert_int_equal(sim_chain_backing(st, top, out, &err), 0);
        assert_string_equal(out, base);
        assert_int_equal(sim_chain_backing(st, base, out, &err), 0);
        assert_string_equal(out, "");
        assert_int_equal(sim_chain_backing(st, "/nonexistent/x.qcow2", out, &err), -ENOENT);
        /* The chain holds SIM_MAX_LINKS links, then refuses (never drops one). */
        for (unsigned i = st->n_links; i < SIM_MAX_LINKS; i++) {
                char o[64];
                snprintf(o, sizeof(o), "/img/o%u.qcow2", i);
                assert_int_equal(sim_chain_add(st, o, base), 0);
        }
        assert_int_equal(sim_chain_add(st, "/img/one-too-many.qcow2", base), -E2BIG);
        assert_int_equal(st->n_links, SIM_MAX_LINKS);
        free(base);
        free(top);
        tu_rmtree(dir);
        free(st);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_find_and_drop),
                cmocka_unit_test(test_layer_of),
                cmocka_unit_test(test_layer_of_legacy_name),
                cmocka_unit_test(test_layer_above),
                cmocka_unit_test(test_layer_from_and_holds),
                cmocka_unit_test(test_backing_and_full_chain),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
