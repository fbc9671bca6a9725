/* test_report: how a cut, a revert and a preflight check read, as text and as
 * --json, from rows built here (no catalog, no clock): every line exact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lockstep.pb-c.h"
#include "prune.h"
#include "report.h"
#include "report_priv.h"

#define T0 1767225600000000LL /* 2026-01-01T00:00:00Z */
#define CUT "ls-20260101T000000-abcdef"
#define REV "ls-20260102T000000-123456"

static char *render_cut(const struct cat_txn *t, const struct cat_member *m, size_t nm, const struct cat_image *im,
                        size_t ni, int as_json)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        assert_non_null(f);
        report_cut_rows(t, m, nm, im, ni, NULL, 0, as_json, f);
        fclose(f);
        return buf;
}

static char *render_cut_audit(const struct cat_txn *t, const struct cat_audit *au, size_t na, int as_json)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        assert_non_null(f);
        report_cut_rows(t, NULL, 0, NULL, 0, au, na, as_json, f);
        fclose(f);
        return buf;
}

static char *render_check(const struct engine_check_member *m, size_t n, int as_json)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        assert_non_null(f);
        assert_int_equal(report_check("shop", m, n, as_json, f), 0);
        fclose(f);
        return buf;
}

static const struct cat_member members[] = {
        {.agent = "host-a", .vm = "web1", .tier = 0, .tier_name = "web", .code = 0, .freeze_us = 1500,
         .snapshot_us = 20000, .thaw_us = 800, .frozen_for_us = 50000, .frozen_at_us = T0 + 10000,
         .thawed_at_us = T0 + 60000},
        {.agent = "host-b", .vm = "db1", .tier = 1, .tier_name = "db", .code = 0, .freeze_us = 2500,
         .snapshot_us = 30000, .thaw_us = 900, .frozen_for_us = 58000, .frozen_at_us = T0 + 12000,
         .thawed_at_us = T0 + 70000},
};

static const struct cat_image images[] = {
        {.agent = "host-a", .vm = "web1", .disk = "vda", .before = "/img/web1.qcow2",
         .after = "/img/web1.qcow2." CUT},
};

static struct cat_txn cut_txn(void)
{
        struct cat_txn t = {.txid = CUT, .kind = CAT_KIND_SNAPSHOT, .group = "shop", .name = "nightly",
                            .mode = "quiesce", .state = CAT_TXN_DONE, .committed = 1, .started_us = T0,
                            .decided_us = T0 + 250000, .lease_ms = 30000};
        return t;
}

static void test_cut_text(void **state)
{
        struct cat_txn t = cut_txn();
        char *s = render_cut(&t, members, 2, images, 1, 0);

        (void)state;
        assert_string_equal(s,
                            "cut " CUT "  group shop  name nightly  mode quiesce  committed\n"
                            "  started 2026-01-01T00:00:00.000Z, decided 250 ms later\n"
                            "  group window 60.0 ms (first freeze to last thaw), freeze skew 2.0 ms, longest frozen 58.0 ms\n"
                            "  MEMBER         AGENT        TIER      FROZEN ms    FREEZE  SNAPSHOT     THAW  RESULT\n"
                            "  web1           host-a       web            50.0       1.5      20.0      0.8  ok\n"
                            "  db1            host-b       db             58.0       2.5      30.0      0.9  ok\n"
                            "  images (the cut's image, then the overlay the VM runs on since):\n"
                            "    web1@host-a vda: /img/web1.qcow2\n"
                            "      -> /img/web1.qcow2." CUT "\n");
        free(s);
}

/* An aborted cut: the reason, a member that never answered. */
static void test_cut_aborted_text(void **state)
{
        struct cat_txn t = cut_txn();
        struct cat_member m[2] = {members[0], members[1]};
        char *s;

        (void)state;
        t.committed = 0;
        snprintf(t.reason, sizeof(t.reason), "agent \"host-b\" (tcp://10.0.0.2:7400): FREEZE: no answer before the deadline");
        m[1].code = CAT_PENDING;
        m[1].message = t.reason;
        m[1].frozen_at_us = m[1].thawed_at_us = 0;
        m[1].frozen_for_us = m[1].freeze_us = m[1].snapshot_us = m[1].thaw_us = 0;
        s = render_cut(&t, m, 2, NULL, 0, 0);
        assert_string_equal(s,
                            "cut " CUT "  group shop  name nightly  mode quiesce  aborted\n"
                            "  started 2026-01-01T00:00:00.000Z, decided 250 ms later\n"
                            "  reason: agent \"host-b\" (tcp://10.0.0.2:7400): FREEZE: no answer before the deadline\n"
                            "  group window 50.0 ms (first freeze to last thaw), freeze skew 0.0 ms, longest frozen 50.0 ms\n"
                            "  MEMBER         AGENT        TIER      FROZEN ms    FREEZE  SNAPSHOT     THAW  RESULT\n"
                            "  web1           host-a       web            50.0       1.5      20.0      0.8  ok\n"
                            "  db1            host-b       db              0.0       0.0       0.0      0.0  agent \"host-b\" (tcp://10.0.0.2:7400): FREEZE: no answer before the deadline\n");
        free(s);
}

static void test_cut_json(void **state)
{
        struct cat_txn t = cut_txn();
        char *s = render_cut(&t, members, 1, images, 1, 1);

        (void)state;
        assert_string_equal(s,
                            "{\"id\":\"" CUT "\",\"kind\":\"snapshot\",\"group\":\"shop\",\"name\":\"nightly\","
                            "\"mode\":\"quiesce\",\"state\":\"committed\",\"reason\":\"\","
                            "\"started_at\":\"2026-01-01T00:00:00.000Z\",\"decided_at\":\"2026-01-01T00:00:00.250Z\","
                            "\"lease_ms\":30000,\"group_window_ms\":50.000,\"freeze_skew_ms\":0.000,\"max_frozen_ms\":50.000,"
                            "\"members\":[{\"vm\":\"web1\",\"agent\":\"host-a\",\"tier\":0,\"tier_name\":\"web\","
                            "\"code\":\"OK\",\"message\":\"\",\"freeze_ms\":1.500,\"snapshot_ms\":20.000,\"thaw_ms\":0.800,"
                            "\"frozen_ms\":50.000,\"frozen_at_us\":1767225600010000,\"thawed_at_us\":1767225600060000,"
                            "\"disks\":[{\"disk\":\"vda\",\"image\":\"/img/web1.qcow2\","
                            "\"overlay\":\"/img/web1.qcow2." CUT "\"}]}],\"replies\":[]}\n");
        free(s);
}

/* Each command's answer time, from the audit: host-b's link is slow, and
 * SNAPSHOT to it got no answer; a retry is a command of its own. */
static const struct cat_audit replies_audit[] = {
        {.at_us = T0, .agent = "host-a", .step = "FREEZE", .dir = CAT_SENT},
        {.at_us = T0, .agent = "host-b", .step = "FREEZE", .dir = CAT_SENT},
        {.at_us = T0 + 12000, .agent = "host-a", .step = "FREEZE", .dir = CAT_RECEIVED},
        {.at_us = T0 + 312500, .agent = "host-b", .step = "FREEZE", .dir = CAT_RECEIVED},
        {.at_us = T0 + 400000, .agent = "host-a", .step = "SNAPSHOT", .dir = CAT_SENT},
        {.at_us = T0 + 400000, .agent = "host-b", .step = "SNAPSHOT", .dir = CAT_SENT},
        {.at_us = T0 + 420000, .agent = "host-a", .step = "SNAPSHOT", .dir = CAT_RECEIVED},
        {.at_us = T0 + 9000000, .agent = "host-b", .step = "SNAPSHOT", .dir = CAT_SENT},
        {.at_us = T0 + 9001000, .agent = "host-b", .step = "SNAPSHOT", .dir = CAT_IGNORED, .code = -5},
};

static void test_cut_replies(void **state)
{
        struct cat_txn t = cut_txn();
        size_t n = sizeof(replies_audit) / sizeof(replies_audit[0]);
        char *s = render_cut_audit(&t, replies_audit, n, 1);

        (void)state;
        assert_non_null(strstr(s, "\"replies\":[{\"agent\":\"host-a\",\"step\":\"FREEZE\",\"ms\":12.000,\"code\":\"OK\"},"
                                  "{\"agent\":\"host-b\",\"step\":\"FREEZE\",\"ms\":312.500,\"code\":\"OK\"},"
                                  "{\"agent\":\"host-a\",\"step\":\"SNAPSHOT\",\"ms\":20.000,\"code\":\"OK\"},"
                                  "{\"agent\":\"host-b\",\"step\":\"SNAPSHOT\",\"ms\":null,\"code\":null},"
                                  "{\"agent\":\"host-b\",\"step\":\"SNAPSHOT\",\"ms\":1.000,\"code\":\"IGNORED\"}]}"));
        free(s);
        s = render_cut_audit(&t, replies_audit, n, 0);
        assert_non_null(strstr(s, "  FREEZE   replies: 2, 12.0 to 312.5 ms (slowest host-b)\n"
                                  "  SNAPSHOT replies: 2, 1.0 to 20.0 ms (slowest host-a), 1 without an answer\n"));
        free(s);
}

/* A fleet's cut: 2,000 members with 2 disks each, the images in the reverse of
 * the members' order, 3 steps sent to 500 agents. Each member lists exactly
 * its own disks, in the catalog's order, and every command its answer. */
static void test_cut_fleet(void **state)
{
        enum { NM = 2000, NA = 500 };
        struct cat_txn t = cut_txn();
        struct cat_member *m = calloc(NM, sizeof(*m));
        struct cat_image *im = calloc(2 * NM, sizeof(*im));
        char(*paths)[32] = calloc(2 * NM, sizeof(*paths));
        struct cat_audit *au = calloc(6 * NA, sizeof(*au));
        static const char *steps[] = {"FREEZE", "SNAPSHOT", "DECIDE"};
        char *buf = NULL, want[400];
        size_t len = 0, n = 0;
        FILE *f = open_memstream(&buf, &len);

        (void)state;
        assert_true(m && im && paths && au && f);
        for (int i = 0; i < NM; i++) {
                snprintf(m[i].vm, sizeof(m[i].vm), "v%d", i);
                snprintf(m[i].agent, sizeof(m[i].agent), "h%d", i % NA);
                for (int d = 0; d < 2; d++) {
                        struct cat_image *x = &im[2 * (NM - 1 - i) + d];
                        snprintf(x->vm, sizeof(x->vm), "v%d", i);
                        snprintf(x->agent, sizeof(x->agent), "h%d", i % NA);
                        snprintf(x->disk, sizeof(x->disk), "vd%c", 'a' + d);
                        snprintf(paths[2 * i + d], sizeof(paths[0]), "/img/v%d-vd%c", i, 'a' + d);
                        x->before = paths[2 * i + d];
                }
        }
        for (int s = 0; s < 3; s++)
                for (int dir = 0; dir < 2; dir++)
                        for (int a = 0; a < NA; a++, n++) {
                                au[n].at_us = T0 + s * 1000000 + dir * (a + 1) * 100;
                                au[n].dir = dir ? CAT_RECEIVED : CAT_SENT;
                                snprintf(au[n].agent, sizeof(au[n].agent), "h%d", a);
                                snprintf(au[n].step, sizeof(au[n].step), "%s", steps[s]);
                        }
        report_cut_rows(&t, m, NM, im, 2 * NM, au, n, 1, f);
        fclose(f);
        for (int i = 0; i < NM; i += 199) {
                snprintf(want, sizeof(want),
                         "\"vm\":\"v%d\",\"agent\":\"h%d\",", i, i % NA);
                assert_non_null(strstr(buf, want));
                snprintf(want, sizeof(want),
                         "\"disks\":[{\"disk\":\"vda\",\"image\":\"/img/v%d-vda\",\"overlay\":\"\"},"
                         "{\"disk\":\"vdb\",\"image\":\"/img/v%d-vdb\",\"overlay\":\"\"}]}",
                         i, i);
                assert_non_null(strstr(strstr(buf, "\"members\""), want));
        }
        /* Every command answered, none twice: 1,500 replies with a time. */
        assert_null(strstr(buf, "\"ms\":null"));
        n = 0;
        for (const char *p = buf; (p = strstr(p, "\"code\":\"OK\"}")) != NULL; p++)
                n++;
        assert_int_equal(n, 3 * NA);
        free(buf);
        free(m);
        free(im);
        free(paths);
        free(au);
}

static struct cat_txn revert_txn(void)
{
        struct cat_txn t = {.txid = REV, .kind = CAT_KIND_REVERT, .group = "shop", .name = CUT, .mode = "revert",
                            .state = CAT_TXN_DONE, .committed = 1, .started_us = T0,
                            .decided_us = T0 + 1500000};
        return t;
}

/* A revert is shown as the pre-revert branch it keeps: no timings. */
static void test_revert_text(void **state)
{
        struct cat_txn t = revert_txn();
        struct cat_member m[2] = {members[0], members[1]};
        struct cat_image im = {.agent = "host-a", .vm = "web1", .disk = "vda",
                               .before = "/img/web1.qcow2.ls-live", .after = "/img/web1.qcow2." REV};
        char *s;

        (void)state;
        m[0].message = "started, guest agent answers";
        s = render_cut(&t, m, 2, &im, 1, 0);
        assert_string_equal(s,
                            "revert " REV "  group shop  to " CUT "  mode revert  committed\n"
                            "  started 2026-01-01T00:00:00.000Z, decided 1500 ms later\n"
                            "  MEMBER         AGENT        TIER      RESULT\n"
                            "  web1           host-a       web       started, guest agent answers\n"
                            "  db1            host-b       db        ok\n"
                            "  images (the pre-revert branch kept for --undo, then the disk the VM runs on since):\n"
                            "    web1@host-a vda: /img/web1.qcow2.ls-live\n"
                            "      -> /img/web1.qcow2." REV "\n");
        free(s);
}

/* An undone revert reads as its branch's fate. */
static void test_revert_json_undone(void **state)
{
        struct cat_txn t = revert_txn();
        char *s;

        (void)state;
        snprintf(t.branch_status, sizeof(t.branch_status), "undone");
        s = render_cut(&t, NULL, 0, NULL, 0, 1);
        assert_string_equal(s,
                            "{\"id\":\"" REV "\",\"kind\":\"pre-revert\",\"group\":\"shop\",\"name\":\"" CUT "\","
                            "\"mode\":\"revert\",\"state\":\"undone\",\"reason\":\"\","
                            "\"started_at\":\"2026-01-01T00:00:00.000Z\",\"decided_at\":\"2026-01-01T00:00:01.500Z\","
                            "\"lease_ms\":0,\"group_window_ms\":0.000,\"freeze_skew_ms\":0.000,\"max_frozen_ms\":0.000,"
                            "\"members\":[],\"replies\":[]}\n");
        free(s);
}

static const struct engine_check_member check_rows[] = {
        {.vm = "web1", .agent = "host-a", .ok = 1, .code = "OK", .clock_known = 1, .clock_offset_ms = -12},
        {.vm = "db1", .agent = "host-b", .ok = 0, .code = "E_NO_GUEST_AGENT",
         .message = "db1@host-b: validate: guest agent not connected"},
        {.vm = "app1", .agent = "host-c", .ok = 0, .code = "UNREACHABLE",
         .message = "agent \"host-c\" (tcp://10.0.0.3:7400): CHECK: connection failed"},
};

static void test_check_text(void **state)
{
        char *s = render_check(check_rows, 3, 0);

        (void)state;
        assert_string_equal(s,
                            "OK    web1@host-a                 \n" /* %-28s pads an OK line with no message */
                            "FAIL  db1@host-b                   E_NO_GUEST_AGENT: db1@host-b: validate: guest agent not connected\n"
                            "FAIL  app1@host-c                  UNREACHABLE: agent \"host-c\" (tcp://10.0.0.3:7400): CHECK: connection failed\n"
                            "group shop: 2 of 3 member(s) would refuse a cut\n");
        free(s);
        s = render_check(check_rows, 1, 0);
        assert_string_equal(s, "OK    web1@host-a                 \n"
                               "group shop: all 1 member(s) ready, a cut would be accepted\n");
        free(s);
}

static void test_check_json(void **state)
{
        char *s = render_check(check_rows, 2, 1);

        (void)state;
        assert_string_equal(s,
                            "{\"group\":\"shop\",\"ok\":false,\"members\":["
                            "{\"vm\":\"web1\",\"agent\":\"host-a\",\"ok\":true,\"code\":\"OK\",\"message\":\"\","
                            "\"clock_offset_ms\":-12},"
                            "{\"vm\":\"db1\",\"agent\":\"host-b\",\"ok\":false,\"code\":\"E_NO_GUEST_AGENT\","
                            "\"message\":\"db1@host-b: validate: guest agent not connected\",\"clock_offset_ms\":null}]}\n");
        free(s);
}

/* An agent that refused for its clock: code CLOCK, the offset as a number, and the
 * text line says it. */
static void test_check_clock(void **state)
{
        const struct engine_check_member c = {
                .vm = "web1", .agent = "host-a", .ok = 0, .code = "CLOCK", .clock_known = 1,
                .clock_offset_ms = 600012,
                .message = "agent \"host-a\": clock is 600 s ahead of lockstepd's (CHECK refused: command issued "
                           "600012 ms ago, outside the 30 s window); fix the host's time (NTP)"};
        char *s = render_check(&c, 1, 1);

        (void)state;
        assert_non_null(strstr(s, "\"code\":\"CLOCK\""));
        assert_non_null(strstr(s, "\"clock_offset_ms\":600012}"));
        free(s);
        s = render_check(&c, 1, 0);
        assert_non_null(strstr(s, "FAIL  web1@host-a" "                  " "CLOCK: agent \"host-a\": clock is 600 s ahead"));
        free(s);
}

/* An agent's message with an escape sequence (clear screen, a colour, an OSC title),
 * a C1 CSI, DEL, a newline and a byte that is not UTF-8: the human output shows
 * each as \xNN (valid UTF-8 text stays as it is); JSON escapes them as JSON does
 * and stays valid UTF-8. */
static const char evil[] = "frozen\x1b[2J\x1b[31mOK\x1b]0;pwned\x07 \xc2\x9b" "1m\x7f\nFAKE \xff\xc3 caf\xc3\xa9";

static char *render_prune(const struct prune_item *it, size_t n, int dry_run, int as_json)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        assert_non_null(f);
        assert_int_equal(report_prune("shop", it, n, dry_run, as_json, f), 0);
        fclose(f);
        return buf;
}

/* A prune counts what went and what failed apart: a delete that failed is not
 * "removed" (the soak's prune at cut 74,535 said removed 1 of a cut that had
 * failed); a dry run counts what would go. */
static void test_prune_counts(void **state)
{
        const struct prune_item it[] = {
                {.txid = "ls-3", .name = "c", .keep = 1, .why = "last 1"},
                {.txid = "ls-2", .name = "b", .done = 1, .why = "beyond keep_last 1"},
                {.txid = "ls-1", .name = "a", .why = "beyond keep_last 1", .error = "begin: transaction already logged"},
        };
        char *s = render_prune(it, 3, 0, 1);

        (void)state;
        assert_non_null(strstr(s, "\"kept\":1,\"removed\":1,\"failed\":1,"));
        assert_non_null(strstr(s, "\"action\":\"failed\",\"why\":\"beyond keep_last 1\","
                                  "\"error\":\"begin: transaction already logged\""));
        free(s);
        s = render_prune(it, 3, 0, 0);
        assert_non_null(strstr(s, "group shop: 3 cut(s) and 0 pre-revert branch(es), 1 kept, 1 removed, 1 failed\n"));
        assert_non_null(strstr(s, "FAILED "));
        free(s);
        s = render_prune(it, 3, 1, 1);
        assert_non_null(strstr(s, "\"kept\":1,\"removed\":2,\"failed\":0,"));
        free(s);
        s = render_prune(it, 3, 1, 0);
        assert_non_null(strstr(s, "1 kept, 2 would be removed\n"));
        free(s);
}

static void test_agent_text_escaped(void **state)
{
        struct cat_member m = members[0];
        struct cat_image im = images[0];
        struct cat_txn t = cut_txn();
        struct engine_check_member c = {.vm = "web1", .agent = "host-a", .ok = 0, .code = "E_HV"};
        char *s;

        (void)state;
        m.message = evil;
        m.code = 5;
        im.after = "/img/\x1b[8m";
        snprintf(t.reason, sizeof(t.reason), "%s", evil);
        s = render_cut(&t, &m, 1, &im, 1, 0);
        assert_null(strchr(s, 0x1b));
        assert_null(strchr(s, 0x7f));
        assert_null(strstr(s, "\xc2\x9b"));
        assert_null(strchr(s, 0xff));
        assert_non_null(strstr(s, "  reason: frozen\\x1b[2J\\x1b[31mOK\\x1b]0;pwned\\x07 \\xc2\\x9b1m\\x7f\\x0aFAKE "
                                  "\\xff\\xc3 caf\xc3\xa9\n"));
        assert_non_null(strstr(s, "0.8  frozen\\x1b[2J"));
        assert_non_null(strstr(s, "      -> /img/\\x1b[8m\n"));
        free(s);

        s = render_cut(&t, &m, 1, &im, 1, 1);
        assert_null(strchr(s, 0x1b));
        assert_null(strchr(s, 0x7f));
        assert_null(strstr(s, "\xc2\x9b"));
        assert_null(strchr(s, 0xff));
        assert_non_null(strstr(s, "\"frozen\\u001b[2J\\u001b[31mOK\\u001b]0;pwned\\u0007 \\u009b1m\\u007f\\nFAKE "
                                  "\\ufffd\\ufffd caf\xc3\xa9\""));
        free(s);

        snprintf(c.message, sizeof(c.message), "%s", evil);
        s = render_check(&c, 1, 0);
        assert_null(strchr(s, 0x1b));
        assert_string_equal(s, "FAIL  web1@host-a                  E_HV: frozen\\x1b[2J\\x1b[31mOK\\x1b]0;pwned\\x07 "
                               "\\xc2\\x9b1m\\x7f\\x0aFAKE \\xff\\xc3 caf\xc3\xa9\n"
                               "group shop: 1 of 1 member(s) would refuse a cut\n");
        free(s);
}

/* The escape never splits an \xNN and always ends the string. */
static void test_escape_bounds(void **state)
{
        char out[8];

        (void)state;
        report_escape(out, sizeof(out), "ab\x1b\x1b");
        assert_string_equal(out, "ab\\x1b");
        report_escape(out, 1, "abc");
        assert_string_equal(out, "");
        report_escape(out, sizeof(out), "\xe2\x82\xac\xed\xa0\x80");
        assert_string_equal(out, "\xe2\x82\xac\\xed");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cut_text),
                cmocka_unit_test(test_cut_aborted_text),
                cmocka_unit_test(test_cut_json),
                cmocka_unit_test(test_cut_replies),
                cmocka_unit_test(test_cut_fleet),
                cmocka_unit_test(test_revert_text),
                cmocka_unit_test(test_revert_json_undone),
                cmocka_unit_test(test_check_text),
                cmocka_unit_test(test_check_json),
                cmocka_unit_test(test_check_clock),
                cmocka_unit_test(test_prune_counts),
                cmocka_unit_test(test_agent_text_escaped),
                cmocka_unit_test(test_escape_bounds),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
