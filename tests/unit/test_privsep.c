/* test_privsep: the socketpair protocol between the agent's network half and
 * its root executor: frames are bounded, garbage and commands carrying a path
 * (or a field unknown to the build) are refused at the executor's gate and
 * answered with a refusal, never acted on; a good command round-trips. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "privsep.h"

struct pair {
        int fd[2];
};

static int setup(void **state)
{
        struct pair *p = calloc(1, sizeof(*p));

        assert_non_null(p);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fd), 0);
        *state = p;
        return 0;
}

static int teardown(void **state)
{
        struct pair *p = *state;

        close(p->fd[0]);
        close(p->fd[1]);
        free(p);
        return 0;
}

/* Counts what reached the executor's exec: must stay 0 for refused frames. */
static int exec_calls;

static int fake_exec(void *arg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len, lserr *err)
{
        Lockstep__Reply rep = LOCKSTEP__REPLY__INIT;

        (void)arg;
        (void)err;
        exec_calls++;
        rep.code = LOCKSTEP__ERROR_CODE__OK;
        rep.txid = cmd->txid;
        rep.step = cmd->step;
        *ret_len = lockstep__reply__get_packed_size(&rep);
        *ret = malloc(*ret_len + 1);
        lockstep__reply__pack(&rep, *ret);
        return 0;
}

/* A FREEZE of one member named vm with hook. */
static void send_freeze(int fd, const char *vm, const char *hook, int add_unknown)
{
        Lockstep__Command cmd = LOCKSTEP__COMMAND__INIT;
        Lockstep__FreezeRequest fr = LOCKSTEP__FREEZE_REQUEST__INIT;
        Lockstep__Member m = LOCKSTEP__MEMBER__INIT, *ms[1] = {&m};
        uint8_t *buf;
        size_t len;
        lserr err = {0};

        cmd.target = "host-a";
        cmd.txid = "t1";
        cmd.step = LOCKSTEP__STEP__STEP_FREEZE;
        cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_FREEZE;
        cmd.freeze = &fr;
        fr.snapshot = "s1";
        fr.hook = (char *)hook;
        fr.members = ms;
        fr.n_members = 1;
        m.vm = (char *)vm;
        len = lockstep__command__get_packed_size(&cmd);
        buf = malloc(len + 8);
        lockstep__command__pack(&cmd, buf);
        if (add_unknown) {
                /* field 99 (tag 792 = 0x98 0x06), varint 1: unknown to this build */
                buf[len++] = 0x98;
                buf[len++] = 0x06;
                buf[len++] = 1;
        }
        assert_int_equal(privsep_frame_send(fd, buf, len, &err), 0);
        free(buf);
}

static Lockstep__Reply *serve_and_read(struct pair *p)
{
        uint8_t *buf = NULL;
        size_t len = 0;
        lserr err = {0};
        Lockstep__Reply *rep;

        assert_int_equal(privsep_serve_one(p->fd[1], fake_exec, NULL, &err), 0);
        assert_int_equal(privsep_frame_recv(p->fd[0], PRIVSEP_REPLY_MAX, &buf, &len, &err), 0);
        rep = lockstep__reply__unpack(NULL, len, buf);
        free(buf);
        assert_non_null(rep);
        return rep;
}

static void test_good_command(void **state)
{
        struct pair *p = *state;
        Lockstep__Reply *rep;

        exec_calls = 0;
        send_freeze(p->fd[0], "web1", "fsfreeze", 0);
        rep = serve_and_read(p);
        assert_int_equal(exec_calls, 1);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__OK);
        assert_string_equal(rep->txid, "t1");
        lockstep__reply__free_unpacked(rep, NULL);
}

static void expect_refused(struct pair *p, const char *what)
{
        Lockstep__Reply *rep = serve_and_read(p);

        assert_int_equal(exec_calls, 0);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__E_REJECTED);
        assert_int_equal(rep->reject_reason, LS_EMALFORMED);
        assert_non_null(strstr(rep->message, what));
        lockstep__reply__free_unpacked(rep, NULL);
}

static void test_path_refused(void **state)
{
        struct pair *p = *state;

        exec_calls = 0;
        send_freeze(p->fd[0], "../../etc/shadow", "", 0);
        expect_refused(p, "Member.vm is not a name");
        send_freeze(p->fd[0], "web1", "/bin/sh", 0);
        expect_refused(p, "FreezeRequest.hook is not a name");
}

static void test_unknown_field_refused(void **state)
{
        struct pair *p = *state;

        exec_calls = 0;
        send_freeze(p->fd[0], "web1", "", 1);
        expect_refused(p, "unknown to this build");
}

static void test_garbage_refused(void **state)
{
        struct pair *p = *state;
        static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02};
        lserr err = {0};

        exec_calls = 0;
        assert_int_equal(privsep_frame_send(p->fd[0], junk, sizeof(junk), &err), 0);
        expect_refused(p, "is not a command");
        /* An empty frame has no step: refused too. */
        assert_int_equal(privsep_frame_send(p->fd[0], NULL, 0, &err), 0);
        expect_refused(p, "without a step");
}

static void test_oversize_frame(void **state)
{
        struct pair *p = *state;
        uint32_t hdr = htonl(PRIVSEP_COMMAND_MAX + 1);
        lserr err = {0};

        exec_calls = 0;
        assert_int_equal(write(p->fd[0], &hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
        assert_int_equal(privsep_serve_one(p->fd[1], fake_exec, NULL, &err), -EMSGSIZE);
        assert_non_null(strstr(err.msg, "refused"));
        assert_int_equal(exec_calls, 0);
}

static void test_cut_frame_and_eof(void **state)
{
        struct pair *p = *state;
        uint32_t hdr = htonl(100);
        lserr err = {0};

        assert_int_equal(write(p->fd[0], &hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
        assert_int_equal(write(p->fd[0], "abc", 3), 3);
        shutdown(p->fd[0], SHUT_WR);
        assert_int_equal(privsep_serve_one(p->fd[1], fake_exec, NULL, &err), -EPROTO);
        assert_int_equal(privsep_serve_one(p->fd[1], fake_exec, NULL, &err), -EPIPE);
}

/* The network half re-encodes: unknown fields of the verified command go. */
static void test_encode_strips_unknown(void **state)
{
        struct pair *p = *state;
        uint8_t *buf = NULL, *out = NULL;
        size_t len = 0, out_len = 0;
        lserr err = {0};
        Lockstep__Command *cmd, *back = NULL;

        send_freeze(p->fd[0], "web1", "", 1);
        assert_int_equal(privsep_frame_recv(p->fd[1], PRIVSEP_COMMAND_MAX, &buf, &len, &err), 0);
        cmd = lockstep__command__unpack(NULL, len, buf);
        assert_non_null(cmd);
        assert_int_equal(cmd->base.n_unknown_fields, 1);
        assert_int_equal(privsep_command_encode(cmd, &out, &out_len, &err), 0);
        assert_int_equal(privsep_command_decode(out, out_len, &back, &err), 0);
        assert_string_equal(back->freeze->members[0]->vm, "web1");
        lockstep__command__free_unpacked(back, NULL);
        lockstep__command__free_unpacked(cmd, NULL);
        free(out);
        free(buf);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_good_command, setup, teardown),
                cmocka_unit_test_setup_teardown(test_path_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_field_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_garbage_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_oversize_frame, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cut_frame_and_eof, setup, teardown),
                cmocka_unit_test_setup_teardown(test_encode_strips_unknown, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
