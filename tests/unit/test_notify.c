/* test_notify: systemd's notify protocol as the daemons speak it: one datagram
 * per message to $NOTIFY_SOCKET (a path or an abstract name), nothing without
 * it, and the watchdog interval only for the process WATCHDOG_PID names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "notify.h"
#include "testutil.h"

/* A datagram socket bound at name (a path, or "@..." for an abstract name),
 * with a receive timeout so a message that never comes fails the test. */
static int bind_at(const char *name)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct timeval tv = {.tv_sec = 5};
        size_t len = strlen(name);
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_true(len < sizeof(sa.sun_path));
        memcpy(sa.sun_path, name, len);
        if (name[0] == '@')
                sa.sun_path[0] = '\0';
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)), 0);
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        return fd;
}

static void expect_msg(int fd, const char *want)
{
        char buf[600];
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

        assert_true(n > 0);
        buf[n] = '\0';
        assert_string_equal(buf, want);
}

static void messages_to(const char *name)
{
        int fd = bind_at(name);

        setenv("NOTIFY_SOCKET", name, 1);
        notify_ready("agent h1 on tcp://127.0.0.1:1");
        expect_msg(fd, "READY=1\nSTATUS=agent h1 on tcp://127.0.0.1:1");
        notify_status("3 cuts running");
        expect_msg(fd, "STATUS=3 cuts running");
        notify_reloading();
        expect_msg(fd, "RELOADING=1");
        notify_watchdog();
        expect_msg(fd, "WATCHDOG=1");
        notify_stopping();
        expect_msg(fd, "STOPPING=1");
        unsetenv("NOTIFY_SOCKET");
        close(fd);
}

static void test_path_socket(void **state)
{
        char *dir = tu_mkdtemp(), path[256];

        (void)state;
        snprintf(path, sizeof(path), "%s/notify.sock", dir);
        messages_to(path);
        tu_rmtree(dir);
}

static void test_abstract_socket(void **state)
{
        char name[64];

        (void)state;
        snprintf(name, sizeof(name), "@lockstep-test-notify-%d", (int)getpid());
        messages_to(name);
}

/* Outside systemd, or with a socket name that is neither a path nor abstract,
 * nothing is sent and nothing fails. */
static void test_no_socket(void **state)
{
        (void)state;
        unsetenv("NOTIFY_SOCKET");
        notify_ready("x");
        setenv("NOTIFY_SOCKET", "relative.sock", 1);
        notify_watchdog();
        setenv("NOTIFY_SOCKET", "", 1);
        notify_stopping();
        unsetenv("NOTIFY_SOCKET");
}

static void test_watchdog_interval(void **state)
{
        char pid[32];

        (void)state;
        unsetenv("WATCHDOG_PID");
        unsetenv("WATCHDOG_USEC");
        assert_int_equal(notify_watchdog_ms(), 0);
        setenv("WATCHDOG_USEC", "30000000", 1);
        assert_int_equal(notify_watchdog_ms(), 30000);
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        setenv("WATCHDOG_PID", pid, 1);
        assert_int_equal(notify_watchdog_ms(), 30000);
        /* Inherited by a child: not its watchdog. */
        snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
        setenv("WATCHDOG_PID", pid, 1);
        assert_int_equal(notify_watchdog_ms(), 0);
        unsetenv("WATCHDOG_PID");
        setenv("WATCHDOG_USEC", "500", 1); /* under a millisecond: still on */
        assert_int_equal(notify_watchdog_ms(), 1);
        setenv("WATCHDOG_USEC", "0", 1);
        assert_int_equal(notify_watchdog_ms(), 0);
        setenv("WATCHDOG_USEC", "30s", 1);
        assert_int_equal(notify_watchdog_ms(), 0);
        setenv("WATCHDOG_USEC", "99999999999999999999999", 1);
        assert_int_equal(notify_watchdog_ms(), 0);
        unsetenv("WATCHDOG_USEC");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_path_socket),
                cmocka_unit_test(test_abstract_socket),
                cmocka_unit_test(test_no_socket),
                cmocka_unit_test(test_watchdog_interval),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
