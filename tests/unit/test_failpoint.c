/* test_failpoint: run-time failpoints (a hold that waits for the test, the kill
 * word, switches) in builds with failpoints, and none of it in release builds. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "failpoint.h"
#include "testutil.h"

static char *dir;
static atomic_int passed;

static int setup(void **state)
{
        (void)state;
        dir = tu_mkdtemp();
        setenv("LOCKSTEP_FAILPOINT_DIR", dir, 1);
        failpoint_scope("host-a");
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        unsetenv("LOCKSTEP_FAILPOINT_DIR");
        tu_rmtree(dir);
        return 0;
}

static char *at(const char *name)
{
        static char path[4096];

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        return path;
}

static void *reach(void *name)
{
        failpoint_stop(name);
        passed = 1;
        return NULL;
}

#ifdef LOCKSTEP_FAILPOINTS
/* Waits (up to 10 s) for a file the code under test creates. */
static int wait_for(const char *name)
{
        struct timespec ts = {0, 5 * 1000 * 1000};

        for (int i = 0; i < 2000; i++) {
                if (access(at(name), F_OK) == 0)
                        return 1;
                nanosleep(&ts, NULL);
        }
        return 0;
}

static void test_switch(void **state)
{
        (void)state;
        assert_false(failpoint_on("no-lease"));
        free(tu_write(dir, "host-b.no-lease", "", 0644)); /* another scope's */
        assert_false(failpoint_on("no-lease"));
        free(tu_write(dir, "host-a.no-lease", "", 0644));
        assert_true(failpoint_on("no-lease"));
        unlink(at("host-a.no-lease"));
        assert_false(failpoint_on("no-lease"));
}

static void test_hold(void **state)
{
        pthread_t th;

        (void)state;
        passed = 0;
        failpoint_stop("agent-reply-FREEZE"); /* not armed: returns */
        free(tu_write(dir, "host-a.agent-reply-FREEZE", "hold\n", 0644));
        assert_int_equal(pthread_create(&th, NULL, reach, "agent-reply-FREEZE"), 0);
        assert_true(wait_for("host-a.agent-reply-FREEZE.held"));
        assert_int_equal(passed, 0); /* it waits there */
        unlink(at("host-a.agent-reply-FREEZE"));
        pthread_join(th, NULL);
        assert_int_equal(passed, 1);
        assert_int_not_equal(access(at("host-a.agent-reply-FREEZE.held"), F_OK), 0);
        /* Released means disarmed: the next pass goes straight on. */
        failpoint_stop("agent-reply-FREEZE");
}

static void test_kill(void **state)
{
        int status = 0;
        pid_t pid;

        (void)state;
        free(tu_write(dir, "host-a.after-decide", "kill\n", 0644));
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                failpoint_stop("after-decide");
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        unlink(at("host-a.after-decide"));
}
#else
/* A release build has no failpoint: armed files change nothing. */
static void test_release_ignores(void **state)
{
        (void)state;
        free(tu_write(dir, "host-a.no-lease", "", 0644));
        assert_false(failpoint_on("no-lease"));
        free(tu_write(dir, "host-a.agent-reply-FREEZE", "hold\n", 0644));
        passed = 0;
        reach("agent-reply-FREEZE");
        assert_int_equal(passed, 1);
        assert_int_not_equal(access(at("host-a.agent-reply-FREEZE.held"), F_OK), 0);
}
#endif

int main(void)
{
        const struct CMUnitTest tests[] = {
#ifdef LOCKSTEP_FAILPOINTS
                cmocka_unit_test_setup_teardown(test_switch, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hold, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kill, setup, teardown),
#else
                cmocka_unit_test_setup_teardown(test_release_ignores, setup, teardown),
#endif
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
