/* test_guardian: the guardian's line protocol, its table of armed members, and
 * the real process (forked from this test, as from the agent) thawing and
 * resuming sim guests when a lease ends or the agent's end closes. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent_config.h"
#include "fsutil.h"
#include "guardian.h"
#include "guardian_priv.h"
#include "hv.h"
#include "log.h"
#include "testutil.h"

/* ---- line protocol --------------------------------------------------------- */

static void test_parse_valid(void **state)
{
        struct guardian_msg m;
        lserr err = {0};
        const char *a = "A tx-0001 web1 123456789 1 0", *d = "D tx-0001 web1";

        (void)state;
        assert_int_equal(guardian_msg_parse(a, strlen(a), &m, &err), 0);
        assert_int_equal(m.op, 'A');
        assert_string_equal(m.txid, "tx-0001");
        assert_string_equal(m.vm, "web1");
        assert_int_equal(m.deadline, 123456789);
        assert_int_equal(m.thaw, 1);
        assert_int_equal(m.resume, 0);
        assert_int_equal(guardian_msg_parse(d, strlen(d), &m, &err), 0);
        assert_int_equal(m.op, 'D');
        assert_string_equal(m.vm, "web1");
}

/* What guardian_arm and guardian_disarm send is what the guardian reads,
 * up to the longest names. */
static void test_format_round_trip(void **state)
{
        struct guardian_msg in = {.op = 'A', .deadline = 9223372036854775807LL, .thaw = 1, .resume = 1}, out;
        char line[GUARDIAN_MSG_MAX];
        lserr err = {0};

        (void)state;
        memset(in.txid, 't', LS_NAME_MAX);
        memset(in.vm, 'v', LS_NAME_MAX);
        guardian_msg_format(&in, line, sizeof(line));
        assert_int_equal(guardian_msg_parse(line, strlen(line), &out, &err), 0);
        assert_memory_equal(&in, &out, sizeof(in));
        in.op = 'D';
        in.deadline = 0;
        in.thaw = in.resume = 0;
        guardian_msg_format(&in, line, sizeof(line));
        assert_int_equal(guardian_msg_parse(line, strlen(line), &out, &err), 0);
        assert_memory_equal(&in, &out, sizeof(in));
}

static void test_parse_refused(void **state)
{
        static const struct {
                const char *line;
                const char *words;
        } bad[] = {
                {"", "neither"},
                {"A", "neither"},
                {"A tx web1", "neither"},
                {"A tx web1 1 0", "neither"},
                {"A tx web1 1 0 0 extra", "neither"},
                {"A  tx web1 1 0 0", "neither"},
                {"A tx web1 1 0 0 ", "neither"},
                {" A tx web1 1 0 0", "neither"},
                {"X tx web1", "neither"},
                {"AA tx web1 1 0 0", "neither"},
                {"D tx", "neither"},
                {"D tx web1 1", "neither"},
                {"A ../x web1 1 0 0", "not a valid name"},
                {"D tx web/1", "not a valid name"},
                {"A tx 01234567890123456789012345678901234567890123456789012345678901234 1 0 0", "not a valid name"},
                {"A tx web1 -1 0 0", "deadline"},
                {"A tx web1 12x 0 0", "deadline"},
                {"A tx web1 99999999999999999999 0 0", "deadline"},
                {"A tx web1 1 2 0", "0 or 1"},
                {"A tx web1 1 0 yes", "0 or 1"},
                {"A tx web1 1 00 1", "0 or 1"},
        };
        struct guardian_msg m, before;
        char big[GUARDIAN_MSG_MAX + 8];

        (void)state;
        memset(&m, 0x5a, sizeof(m));
        before = m;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                lserr err = {0};
                assert_int_equal(guardian_msg_parse(bad[i].line, strlen(bad[i].line), &m, &err), -EINVAL);
                if (!strstr(err.msg, bad[i].words))
                        fail_msg("\"%s\": \"%s\" does not say \"%s\"", bad[i].line, err.msg, bad[i].words);
                assert_memory_equal(&m, &before, sizeof(m));
        }
        {
                lserr err = {0};
                assert_int_equal(guardian_msg_parse("D tx\0 web1", 10, &m, &err), -EINVAL);
                assert_non_null(strstr(err.msg, "NUL"));
        }
        memset(big, 'a', sizeof(big));
        {
                lserr err = {0};
                assert_int_equal(guardian_msg_parse(big, sizeof(big), &m, &err), -EINVAL);
                assert_non_null(strstr(err.msg, "over the 255-byte limit"));
        }
        assert_memory_equal(&m, &before, sizeof(m));
}

static struct guardian_msg msg(char op, const char *txid, const char *vm, long long deadline)
{
        struct guardian_msg m = {.op = op, .deadline = deadline, .thaw = 1};

        snprintf(m.txid, sizeof(m.txid), "%s", txid);
        snprintf(m.vm, sizeof(m.vm), "%s", vm);
        return m;
}

static int n_used(const struct guardian_entry *a)
{
        int n = 0;

        for (int i = 0; i < GUARDIAN_MAX_ARMED; i++)
                n += a[i].used;
        return n;
}

static void test_table(void **state)
{
        struct guardian_entry *a = calloc(GUARDIAN_MAX_ARMED, sizeof(*a)), *copy;
        struct guardian_msg m;
        lserr err = {0};
        char vm[32];

        (void)state;
        m = msg('A', "tx-1", "web1", 100);
        assert_int_equal(guardian_table_apply(a, &m, &err), 0);
        /* Arming again moves the deadline, it adds no second entry. */
        m.deadline = 200;
        assert_int_equal(guardian_table_apply(a, &m, &err), 0);
        assert_int_equal(n_used(a), 1);
        assert_int_equal(a[0].deadline, 200);
        /* Another transaction holding the same VM is another entry. */
        m = msg('A', "tx-2", "web1", 300);
        assert_int_equal(guardian_table_apply(a, &m, &err), 0);
        assert_int_equal(n_used(a), 2);
        m = msg('D', "tx-1", "web1", 0);
        assert_int_equal(guardian_table_apply(a, &m, &err), 0);
        assert_int_equal(n_used(a), 1);
        assert_string_equal(a[1].txid, "tx-2");
        /* Disarming what is not armed is fine. */
        assert_int_equal(guardian_table_apply(a, &m, &err), 0);
        assert_int_equal(n_used(a), 1);
        /* Full: refused with an error, the table unchanged. */
        for (int i = 1; i < GUARDIAN_MAX_ARMED; i++) {
                snprintf(vm, sizeof(vm), "vm%d", i);
                m = msg('A', "tx-3", vm, i);
                assert_int_equal(guardian_table_apply(a, &m, &err), 0);
        }
        assert_int_equal(n_used(a), GUARDIAN_MAX_ARMED);
        copy = malloc(GUARDIAN_MAX_ARMED * sizeof(*a));
        memcpy(copy, a, GUARDIAN_MAX_ARMED * sizeof(*a));
        m = msg('A', "tx-3", "one-more", 1);
        assert_int_equal(guardian_table_apply(a, &m, &err), -ENOSPC);
        assert_non_null(strstr(err.msg, "more than 4096 members armed; \"one-more\" not covered"));
        assert_memory_equal(a, copy, GUARDIAN_MAX_ARMED * sizeof(*a));
        /* Re-arming one that is in the table still works when full. */
        m = msg('A', "tx-2", "web1", 400);
        assert_int_equal(guardian_table_apply(a, &m, &err), 0);
        free(copy);
        free(a);
}

/* ---- the process ----------------------------------------------------------- */

struct fx {
        char *dir;
        char cfg_path[4096], sim_path[4096], log_path[4096];
        struct cfg_agent *cfg;
        struct hv *hv;
        struct guardian *g;
        pid_t pid;
};

static void write_sim(struct fx *f, const char *extra)
{
        FILE *s = fopen(f->sim_path, "w");

        assert_non_null(s);
        fprintf(s, "state_dir %s/sim\ndomain web1\ndomain db1\n%s", f->dir, extra);
        fclose(s);
}

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));
        lserr err = {0};
        FILE *c;

        f->dir = tu_mkdtemp();
        snprintf(f->sim_path, sizeof(f->sim_path), "%s/sim.txt", f->dir);
        snprintf(f->cfg_path, sizeof(f->cfg_path), "%s/agent.yaml", f->dir);
        snprintf(f->log_path, sizeof(f->log_path), "%s/guardian.log", f->dir);
        write_sim(f, "");
        c = fopen(f->cfg_path, "w");
        assert_non_null(c);
        fprintf(c,
                "id: host-a\nlisten: tcp://127.0.0.1:1\nkey: %s/agent.key\njournal_dir: %s/journal\n"
                "authorized:\n  - name: coordinator\n    pubkey: %s/coord.pub\n    roles: [admin]\n"
                "backend: sim\nsim_config: %s\n",
                f->dir, f->dir, f->dir, f->sim_path);
        fclose(c);
        assert_int_equal(cfg_agent_load(f->cfg_path, &f->cfg, &err), 0);
        assert_int_equal(hv_open(f->cfg, &f->hv, &err), 0);
        /* The guardian logs to its stderr: the forked child gets the log
         * file as its stderr, the test keeps its own. */
        {
                int saved = dup(STDERR_FILENO), logfd = open(f->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600), r;
                assert_true(saved >= 0 && logfd >= 0);
                fflush(stderr);
                dup2(logfd, STDERR_FILENO);
                log_setup("test-guardian", LOG_DEBUG);
                r = guardian_start(f->cfg, &f->g, &err);
                dup2(saved, STDERR_FILENO);
                close(saved);
                close(logfd);
                assert_int_equal(r, 0);
        }
        f->pid = guardian_pid(f->g);
        *state = f;
        return 0;
}

/* Waits up to 10 s for the guardian to exit; its status. */
static int wait_exit(pid_t pid)
{
        int st = 0;

        for (int i = 0; i < 1000; i++) {
                pid_t r = waitpid(pid, &st, WNOHANG);
                if (r == pid)
                        return st;
                if (r < 0)
                        return 0; /* reaped by guardian_stop already */
                usleep(10000);
        }
        fail_msg("guardian %d did not exit within 10 s", (int)pid);
        return -1;
}

static int teardown(void **state)
{
        struct fx *f = *state;

        f->g = guardian_stop(f->g);
        if (f->pid > 0 && waitpid(f->pid, NULL, WNOHANG) == 0) {
                kill(f->pid, SIGKILL);
                waitpid(f->pid, NULL, 0);
        }
        hv_close(f->hv);
        cfg_agent_free(f->cfg);
        tu_rmtree(f->dir);
        free(f);
        return 0;
}

static int frozen(const struct fx *f, const char *vm)
{
        char simdir[4200], v[16];

        snprintf(simdir, sizeof(simdir), "%s/sim", f->dir);
        return tu_sim_state(simdir, vm, "frozen", v, sizeof(v)) && !strcmp(v, "1");
}

static enum hv_state vm_state(const struct fx *f, const char *vm)
{
        struct hv_domain d;
        lserr err = {0};

        assert_int_equal(hv_lookup(f->hv, vm, &d, &err), 0);
        return d.state;
}

/* How many times the guardian's log holds words. */
static int log_count(const struct fx *f, const char *words)
{
        char *buf = NULL, *p;
        size_t len;
        int n = 0;

        if (fsutil_read_all(f->log_path, 1 << 20, &buf, &len, NULL) < 0)
                return 0;
        for (p = buf; (p = strstr(p, words)) != NULL; p++)
                n++;
        free(buf);
        return n;
}

static void freeze_both(struct fx *f)
{
        lserr err = {0};

        assert_true(hv_freeze(f->hv, "web1", &err) > 0);
        assert_int_equal(hv_suspend(f->hv, "db1", &err), 0);
        assert_true(frozen(f, "web1"));
        assert_int_equal(vm_state(f, "db1"), HV_PAUSED);
}

/* The agent's end closes (it died or stopped) with two members armed for an
 * hour: the guardian thaws one and resumes the other at once, then exits. */
static void test_agent_gone(void **state)
{
        struct fx *f = *state;
        long long hour = fsutil_mono_us() + 3600LL * 1000000LL;

        freeze_both(f);
        assert_int_equal(guardian_arm(f->g, "tx-1", "web1", hour, 1, 0), 0);
        assert_int_equal(guardian_arm(f->g, "tx-1", "db1", hour, 0, 1), 0);
        f->g = guardian_stop(f->g);
        assert_int_equal(wait_exit(f->pid), 0);
        f->pid = 0;
        assert_false(frozen(f, "web1"));
        assert_int_equal(vm_state(f, "db1"), HV_RUNNING);
        assert_int_equal(log_count(f, "agent gone with txid=tx-1 vm=web1 armed"), 1);
}

/* A lease that ends while the agent lives: the guardian thaws that member and
 * keeps serving; a disarmed member is left as it is. */
static void test_lease_ends(void **state)
{
        struct fx *f = *state;
        long long hour = fsutil_mono_us() + 3600LL * 1000000LL;
        lserr err = {0};

        freeze_both(f);
        assert_int_equal(guardian_arm(f->g, "tx-1", "web1", fsutil_mono_us() + 100000, 1, 0), 0);
        assert_int_equal(guardian_arm(f->g, "tx-1", "db1", hour, 0, 1), 0);
        for (int i = 0; i < 1000 && frozen(f, "web1"); i++)
                usleep(10000);
        assert_false(frozen(f, "web1"));
        assert_int_equal(kill(f->pid, 0), 0);
        /* Disarmed before the agent goes: the guardian leaves db1 paused. */
        assert_int_equal(guardian_disarm(f->g, "tx-1", "db1"), 0);
        f->g = guardian_stop(f->g);
        assert_int_equal(wait_exit(f->pid), 0);
        f->pid = 0;
        assert_int_equal(vm_state(f, "db1"), HV_PAUSED);
        assert_int_equal(log_count(f, "agent gone with"), 0);
        assert_int_equal(hv_resume(f->hv, "db1", &err), 0);
}

/* A thaw that fails is retried until it works; the guardian does not exit with
 * a guest frozen. */
static void test_retries(void **state)
{
        struct fx *f = *state;
        long long hour = fsutil_mono_us() + 3600LL * 1000000LL;
        lserr err = {0};

        assert_true(hv_freeze(f->hv, "web1", &err) > 0);
        write_sim(f, "fail thaw web1\n");
        assert_int_equal(guardian_arm(f->g, "tx-1", "web1", hour, 1, 0), 0);
        f->g = guardian_stop(f->g);
        for (int i = 0; i < 1000 && log_count(f, "vm=web1 thaw failed, will retry") < 2; i++)
                usleep(10000);
        assert_int_equal(log_count(f, "vm=web1 thaw failed, will retry") >= 2, 1);
        assert_true(frozen(f, "web1"));
        assert_int_equal(waitpid(f->pid, NULL, WNOHANG), 0);
        write_sim(f, "");
        assert_int_equal(wait_exit(f->pid), 0);
        f->pid = 0;
        assert_false(frozen(f, "web1"));
}

/* A thaw that fails once, as a call on a connection that died with libvirtd
 * (restarted since the guardian connected) does, is tried again at once, not
 * a retry period later: chaos seed 200 round 104 saw web1 frozen 8005 ms,
 * over lease + 2 s, that way. */
static void test_thaw_again_at_once(void **state)
{
        struct fx *f = *state;
        lserr err = {0};

        assert_true(hv_freeze(f->hv, "web1", &err) > 0);
        write_sim(f, "fail_once thaw web1\n");
        assert_int_equal(guardian_arm(f->g, "tx-1", "web1", fsutil_mono_us() + 100000, 1, 0), 0);
        /* Its log line comes after the thaw itself: waited for, not the state. */
        for (int i = 0; i < 1000 && !log_count(f, "vm=web1 lease ended or agent gone: thawed"); i++)
                usleep(10000);
        assert_false(frozen(f, "web1"));
        assert_int_equal(log_count(f, "vm=web1 thaw failed, trying again at once: thaw: Cannot write data"), 1);
        assert_int_equal(log_count(f, "will retry"), 0);
        assert_int_equal(log_count(f, "vm=web1 lease ended or agent gone: thawed"), 1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_valid),
                cmocka_unit_test(test_format_round_trip),
                cmocka_unit_test(test_parse_refused),
                cmocka_unit_test(test_table),
                cmocka_unit_test_setup_teardown(test_agent_gone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lease_ends, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retries, setup, teardown),
                cmocka_unit_test_setup_teardown(test_thaw_again_at_once, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
