/* test_config: the YAML config loader. Valid files load with every field and default;
 * each kind of bad file is refused with "<file>:<line>: <field>: <why>". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_config.h"
#include "coord_config.h"
#include "coord_ha.h"

/* Where deploy/config lives: the build may say; otherwise it is found from this
 * file's own path (absolute under CMake, relative to the source tree by hand). */
#ifndef LOCKSTEP_SOURCE_DIR
#define LOCKSTEP_SOURCE_DIR NULL
#endif

static char tmpdir[PATH_MAX];

static void tmp_path(char out[static PATH_MAX], const char *name)
{
        int n = snprintf(out, PATH_MAX, "%s/%s", tmpdir, name);

        assert_true(n > 0 && n < PATH_MAX);
}

static void write_cfg(char out[static PATH_MAX], const char *name, const char *text)
{
        FILE *f;

        tmp_path(out, name);
        f = fopen(out, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
        assert_int_equal(fclose(f), 0);
}

static void source_path(char out[static PATH_MAX], const char *rel)
{
        const char *dir = LOCKSTEP_SOURCE_DIR;
        const char *me = __FILE__;
        const char *tail;
        int n;

        if (dir) {
                n = snprintf(out, PATH_MAX, "%s/%s", dir, rel);
        } else {
                tail = strstr(me, "tests/unit/test_config.c");
                n = snprintf(out, PATH_MAX, "%.*s%s", tail ? (int)(tail - me) : 0, me, rel);
        }
        assert_true(n > 0 && n < PATH_MAX);
}

static int group_setup(void **state)
{
        const char *base = getenv("TMPDIR");
        int n;

        (void)state;
        n = snprintf(tmpdir, sizeof(tmpdir), "%s/test_config.XXXXXX", base && *base ? base : "/tmp");
        if (n < 0 || n >= (int)sizeof(tmpdir))
                return -1;
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
        char p[PATH_MAX];
        struct dirent *de;
        DIR *d;

        (void)state;
        d = opendir(tmpdir);
        if (!d)
                return -1;
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                tmp_path(p, de->d_name);
                unlink(p);
        }
        closedir(d);
        return rmdir(tmpdir);
}

/* 8 lines; cases append from line 9. */
#define AGENT_MIN                                        \
        "id: host-a\n"                                   \
        "listen: tcp://10.77.0.2:7400\n"                 \
        "key: /etc/lockstep/agent.key\n"                 \
        "journal_dir: /var/lib/lockstep/journal\n"       \
        "authorized:\n"                                  \
        "  - name: coordinator\n"                        \
        "    pubkey: /etc/lockstep/coordinator.pub\n"    \
        "    roles: [snapshot, revert, delete, admin]\n"

/* 4 lines, without authorized. */
#define AGENT_HEAD                                       \
        "id: host-a\n"                                   \
        "listen: tcp://10.77.0.2:7400\n"                 \
        "key: /etc/lockstep/agent.key\n"                 \
        "journal_dir: /var/lib/lockstep/journal\n"

/* 11 lines ending in "groups:"; groups start on line 12. */
#define COORD_MIN                                        \
        "control: ipc:///run/lockstep/control.sock\n"    \
        "key: /etc/lockstep/coordinator.key\n"           \
        "catalog: /var/lib/lockstep/catalog.db\n"        \
        "agents:\n"                                      \
        "  - id: host-a\n"                               \
        "    url: tcp://10.77.0.2:7400\n"                \
        "    pubkey: /etc/lockstep/host-a.pub\n"         \
        "  - id: host-b\n"                               \
        "    url: tcp://10.77.0.3:7400\n"                \
        "    pubkey: /etc/lockstep/host-b.pub\n"         \
        "groups:\n"

#define PUB_INLINE "lockstep-pub-v1 MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="

enum kind { AGENT, COORD };

struct refusal {
        const char *name;
        enum kind kind;
        const char *yaml;
        unsigned line;
        const char *field; /* NULL: the message names no field */
        const char *why;   /* must appear after "<file>:<line>: <field>: " */
};

static int load(enum kind kind, const char *path, lserr *err, void **ret)
{
        if (kind == AGENT)
                return cfg_agent_load(path, (struct cfg_agent **)ret, err);
        return cfg_coord_load(path, (struct cfg_coord **)ret, err);
}

/* Loads yaml and checks the refusal: code, untouched output, exact file:line:field
 * prefix and the reason. */
static void expect_refusal(const char *file, enum kind kind, const char *yaml, unsigned line, const char *field,
                           const char *why)
{
        char path[PATH_MAX], prefix[PATH_MAX + 600];
        int sentinel;
        void *ret = &sentinel;
        lserr err = { 0 };
        int r, n;

        write_cfg(path, file, yaml);
        r = load(kind, path, &err, &ret);
        if (r != LS_ECONFIG)
                fail_msg("%s: want LS_ECONFIG, got %d (%s)", file, r, err.msg);
        assert_int_equal(err.code, LS_ECONFIG);
        assert_ptr_equal(ret, &sentinel);
        if (field)
                n = snprintf(prefix, sizeof(prefix), "%s:%u: %s: ", path, line, field);
        else
                n = snprintf(prefix, sizeof(prefix), "%s:%u: ", path, line);
        assert_true(n > 0 && n < (int)sizeof(prefix));
        if (strncmp(err.msg, prefix, strlen(prefix)) != 0)
                fail_msg("message \"%s\"\n  does not start with \"%s\"", err.msg, prefix);
        if (!strstr(err.msg + strlen(prefix), why))
                fail_msg("message \"%s\"\n  does not say \"%s\"", err.msg, why);
}

/* A coordinator.yaml up to its ha: section's etcd line 7, for the forwarding
 * refusals; and two coordinators, c1 and c2. */
#define HA_HEAD                                                                   \
        "control: ipc:///run/lockstep/control.sock\n"                              \
        "key: /k\n"                                                                \
        "counter_file: /var/lib/lockstep/counter\n"                                \
        "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n"      \
        "ha:\n"                                                                    \
        "  name: c1\n"                                                             \
        "  etcd: [http://10.77.0.20:2379]\n"
#define HA_TWO                                                                    \
        "  coordinators:\n"                                                        \
        "    - {name: c1, pubkey: /c1.pub}\n"                                      \
        "    - {name: c2, pubkey: /c2.pub}\n"

static const struct refusal refusals[] = {
        /* ---- agent.yaml ---- */
        { "syntax-unclosed-list", AGENT,
          AGENT_HEAD
          "authorized:\n"
          "  - name: coordinator\n"
          "    pubkey: /p\n"
          "    roles: [snapshot, revert\n",
          8, "authorized[0].roles", "invalid YAML: did not find expected ',' or ']'" },
        { "syntax-tab", AGENT,
          "id: host-a\n"
          "\tlisten: tcp://10.77.0.2:7400\n",
          2, NULL, "invalid YAML: found a tab character" },
        { "syntax-bad-indent", AGENT,
          AGENT_MIN
          "  - name: backup\n"
          "    pubkey: /p\n"
          "     roles: [admin]\n",
          11, "authorized[1]", "invalid YAML" },
        { "syntax-no-final-newline", AGENT,
          AGENT_HEAD
          "authorized:\n"
          "  - name: coordinator\n"
          "    pubkey: /p\n"
          "    roles: [snapshot, revert",
          8, "authorized[0].roles", "invalid YAML: did not find expected ',' or ']'" },
        { "syntax-cr-lines", AGENT,
          "id: host-a\r"
          "listen: tcp://10.77.0.2:7400\r"
          "authorized:\r"
          "  - roles: [snapshot, revert\r",
          4, "authorized[0].roles", "invalid YAML: did not find expected ',' or ']'" },
        { "crlf-lines", AGENT,
          "id: host-a\r\n"
          "listen: tcp://10.77.0.2:7400\r\n"
          "key: /k\r\n"
          "journal_dir: /j\r\n"
          "authorized: [{name: c, pubkey: /p, roles: [admin]}]\r\n"
          "lease_max: 1\r\n",
          6, "lease_max", "unknown key \"lease_max\"" },
        { "unknown-key", AGENT,
          AGENT_MIN
          "lease_max: 30\n",
          9, "lease_max", "unknown key \"lease_max\" (known: id, listen, key, authorized, " },
        { "unknown-key-nested", AGENT,
          AGENT_MIN
          "  - name: backup\n"
          "    pubkey: /p\n"
          "    role: [snapshot]\n",
          11, "authorized[1].role", "unknown key \"role\" (known: name, pubkey, roles)" },
        { "wrong-type-list", AGENT,
          AGENT_HEAD
          "authorized: coordinator\n",
          5, "authorized", "wrong type: expected a list, got a single value" },
        { "wrong-type-list-item", AGENT,
          AGENT_MIN
          "  - name: backup\n"
          "    pubkey: /p\n"
          "    roles:\n"
          "      - snapshot\n"
          "      - [revert]\n",
          13, "authorized[1].roles[1]", "wrong type: expected a single value, got a list" },
        { "wrong-type-number", AGENT,
          AGENT_MIN
          "time_window_s: 1.5\n",
          9, "time_window_s", "expected a whole number, got \"1.5\"" },
        { "wrong-type-number-unit", AGENT,
          AGENT_MIN
          "lease_max_s: 60s\n",
          9, "lease_max_s", "expected a whole number, got \"60s\"" },
        { "wrong-type-mapping", AGENT,
          AGENT_MIN
          "state_dir: {path: /x}\n",
          9, "state_dir", "wrong type: expected a single value, got a mapping" },
        { "missing-top", AGENT,
          "# no journal_dir\n"
          "id: host-a\n"
          "listen: tcp://10.77.0.2:7400\n"
          "key: /etc/lockstep/agent.key\n"
          "authorized:\n"
          "  - name: coordinator\n"
          "    pubkey: /p\n"
          "    roles: [admin]\n",
          2, "journal_dir", "required field is missing" },
        { "missing-nested", AGENT,
          AGENT_MIN
          "  - name: backup\n"
          "    roles: [snapshot]\n",
          9, "authorized[1].pubkey", "required field is missing" },
        { "bad-name", AGENT,
          "id: host a\n"
          "listen: tcp://10.77.0.2:7400\n"
          "key: /k\n"
          "journal_dir: /j\n"
          "authorized: [{name: c, pubkey: /p, roles: [admin]}]\n",
          1, "id", "invalid name \"host a\"" },
        { "bad-name-authorized", AGENT,
          AGENT_MIN
          "  - name: ../x\n"
          "    pubkey: /p\n"
          "    roles: [admin]\n",
          9, "authorized[1].name", "invalid name \"../x\"" },
        { "bad-url-scheme", AGENT,
          "id: host-a\n"
          "listen: http://10.77.0.2:7400\n"
          "key: /k\n"
          "journal_dir: /j\n"
          "authorized: [{name: c, pubkey: /p, roles: [admin]}]\n",
          2, "listen", "unsupported URL \"http://10.77.0.2:7400\" (use tcp://, tls+tcp:// or ipc://)" },
        { "bad-url-port", AGENT,
          "id: host-a\n"
          "listen: tcp://10.77.0.2:http\n"
          "key: /k\n"
          "journal_dir: /j\n"
          "authorized: [{name: c, pubkey: /p, roles: [admin]}]\n",
          2, "listen", "invalid port" },
        { "unknown-role", AGENT,
          AGENT_MIN
          "  - name: backup\n"
          "    pubkey: /p\n"
          "    roles:\n"
          "      - snapshot\n"
          "      - snapshoot\n",
          13, "authorized[1].roles[1]", "unknown role \"snapshoot\" (one of snapshot, revert, delete, admin)" },
        { "duplicate-role", AGENT,
          AGENT_MIN
          "  - name: backup\n"
          "    pubkey: /p\n"
          "    roles: [admin, admin]\n",
          11, "authorized[1].roles[1]", "role \"admin\" listed twice" },
        { "duplicate-authorized", AGENT,
          AGENT_MIN
          "  - name: coordinator\n"
          "    pubkey: /p\n"
          "    roles: [admin]\n",
          9, "authorized[1].name", "duplicate name \"coordinator\" (also authorized[0])" },
        { "pubkey-format", AGENT,
          AGENT_MIN
          "  - name: backup\n"
          "    pubkey: \"lockstep-pub-v2 AAAA\"\n"
          "    roles: [admin]\n",
          10, "authorized[1].pubkey", "unsupported key format" },
        { "pubkey-base64", AGENT,
          AGENT_MIN
          "  - name: backup\n"
          "    pubkey: \"lockstep-pub-v1 AA*A\"\n"
          "    roles: [admin]\n",
          10, "authorized[1].pubkey", "not valid base64" },
        { "range-zero", AGENT,
          AGENT_MIN
          "lease_max_s: 0\n",
          9, "lease_max_s", "\"0\" is out of range (1..3600)" },
        { "range-high", AGENT,
          AGENT_MIN
          "time_window_s: 30\n"
          "guest_agent_timeout_s: 301\n",
          10, "guest_agent_timeout_s", "\"301\" is out of range (1..300)" },
        { "min-free-zero", AGENT,
          AGENT_MIN
          "min_free_mb: 0\n",
          9, "min_free_mb", "\"0\" is out of range (1..1048576)" },
        { "parallel-zero", AGENT,
          AGENT_MIN
          "parallel_per_host: 0\n",
          9, "parallel_per_host", "\"0\" is out of range (1..64)" },
        { "parallel-too-big", AGENT,
          AGENT_MIN
          "parallel_per_host: 65\n",
          9, "parallel_per_host", "\"65\" is out of range (1..64)" },
        { "parallel-not-a-number", AGENT,
          AGENT_MIN
          "parallel_per_host: all\n",
          9, "parallel_per_host", "expected a whole number, got \"all\"" },
        { "range-huge", AGENT,
          AGENT_MIN
          "lease_max_s: 99999999999999999999999\n",
          9, "lease_max_s", "is out of range (1..3600)" },
        { "range-negative", AGENT,
          AGENT_MIN
          "lease_max_s: -1\n",
          9, "lease_max_s", "expected a whole number, got \"-1\"" },
        { "duplicate-key", AGENT,
          AGENT_MIN
          "id: host-b\n",
          9, "id", "duplicate key (first given on line 1)" },
        { "sim-without-config", AGENT,
          AGENT_MIN
          "backend: sim\n",
          9, "sim_config", "required when backend is \"sim\"" },
        { "config-without-sim", AGENT,
          AGENT_MIN
          "sim_config: /etc/lockstep/sim.yaml\n",
          9, "sim_config", "only used with backend: sim" },
        { "unknown-backend", AGENT,
          AGENT_MIN
          "backend: xen\n",
          9, "backend", "unknown backend \"xen\" (one of libvirt, sim)" },
        { "tls-without-cert", AGENT,
          "id: host-a\n"
          "listen: tls+tcp://10.77.0.2:7400\n"
          "key: /k\n"
          "journal_dir: /j\n"
          "authorized: [{name: c, pubkey: /p, roles: [admin]}]\n",
          2, "tls_cert", "required when listen is a tls+tcp:// URL" },
        { "cert-without-tls", AGENT,
          AGENT_MIN
          "tls_cert: /etc/lockstep/agent.crt\n",
          9, "tls_cert", "only used when listen is a tls+tcp:// URL" },
        { "tls-agent-without-ca", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /etc/lockstep/coordinator.key\n"
          "catalog: /var/lib/lockstep/catalog.db\n"
          "agents:\n"
          "  - id: host-a\n"
          "    url: tcp://10.77.0.2:7400\n"
          "    pubkey: /etc/lockstep/host-a.pub\n"
          "  - id: host-b\n"
          "    url: tls+tcp://10.77.0.3:7400\n"
          "    pubkey: /etc/lockstep/host-b.pub\n"
          "groups:\n",
          9, "agents[1].tls_ca", "required: agent \"host-b\" has a tls+tcp:// URL and no CA to verify it with" },
        { "tls-ca-without-tls", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /etc/lockstep/coordinator.key\n"
          "catalog: /var/lib/lockstep/catalog.db\n"
          "agents:\n"
          "  - id: host-a\n"
          "    url: tcp://10.77.0.2:7400\n"
          "    pubkey: /etc/lockstep/host-a.pub\n"
          "    server_name: host-a\n"
          "groups:\n",
          8, "agents[0].server_name", "only used when the agent's url is a tls+tcp:// URL" },
        { "tls-bad-server-name", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /etc/lockstep/coordinator.key\n"
          "catalog: /var/lib/lockstep/catalog.db\n"
          "tls_ca: /etc/lockstep/ca.pem\n"
          "agents:\n"
          "  - id: host-a\n"
          "    url: tls+tcp://10.77.0.2:7400\n"
          "    pubkey: /etc/lockstep/host-a.pub\n"
          "    server_name: host-a:7400\n"
          "groups:\n",
          9, "agents[0].server_name", "server name \"host-a:7400\" is not a host name" },
        { "empty-value", AGENT,
          AGENT_MIN
          "state_dir: \"\"\n",
          9, "state_dir", "must not be empty" },
        { "null-value", AGENT,
          AGENT_MIN
          "state_dir: ~\n",
          9, "state_dir", "null is not a value here" },
        { "empty-list", AGENT,
          AGENT_HEAD
          "authorized: []\n",
          5, "authorized", "must not be empty" },
        { "empty-file", AGENT, "", 1, NULL, "the file holds no settings" },
        { "only-comments", AGENT, "# nothing\n# here\n", 1, NULL, "the file holds no settings" },
        { "top-level-list", AGENT, "- id: host-a\n", 1, NULL, "the top level must be a mapping" },
        { "two-documents", AGENT,
          AGENT_MIN
          "---\n"
          "id: host-b\n",
          9, NULL, "more than one YAML document" },
        { "anchor", AGENT,
          "id: &h host-a\n"
          "listen: tcp://10.77.0.2:7400\n",
          1, "id", "YAML anchors (&name) are not supported" },
        { "alias", AGENT,
          AGENT_MIN
          "  - name: backup\n"
          "    pubkey: /p\n"
          "    roles: [*r]\n",
          11, "authorized[1].roles[0]", "YAML aliases (*name) are not supported" },
        { "complex-key", AGENT,
          AGENT_MIN
          "? [a, b]\n"
          ": 1\n",
          9, NULL, "a mapping key must be a plain string" },


        /* ---- shape, found on libyaml's document: each at its own line ---- */
        { "unknown-key-flow", AGENT,
          AGENT_MIN
          "  - {name: backup, pubkey: /p, roles: [admin], rolez: [delete]}\n",
          9, "authorized[1].rolez", "unknown key \"rolez\" (known: name, pubkey, roles)" },
        { "unknown-key-empty", AGENT,
          AGENT_MIN
          "\"\": 1\n",
          9, NULL, "unknown key \"\" (known: id, listen, " },
        { "unknown-key-first-of-two", AGENT,
          AGENT_MIN
          "bogus: 1\n"
          "bogus: 2\n",
          9, "bogus", "unknown key \"bogus\"" },
        { "unknown-key-before-missing", AGENT,
          AGENT_HEAD
          "authorized:\n"
          "  - name: coordinator\n"
          "    roles: [admin]\n"
          "    pubkee: /p\n",
          8, "authorized[0].pubkee", "unknown key \"pubkee\" (known: name, pubkey, roles)" },
        { "duplicate-key-nested", AGENT,
          AGENT_MIN
          "  - name: backup\n"
          "    pubkey: /p\n"
          "    name: backup2\n"
          "    roles: [admin]\n",
          11, "authorized[1].name", "duplicate key (first given on line 9)" },
        { "wrong-type-null-list", AGENT,
          AGENT_HEAD
          "authorized: ~\n",
          5, "authorized", "wrong type: expected a list, got a single value" },
        { "wrong-type-list-entry", AGENT,
          AGENT_MIN
          "  - backup\n",
          9, "authorized[1]", "wrong type: expected a mapping (key: value), got a single value" },
        { "nested-before-missing-top", AGENT,
          "id: host-a\n"
          "listen: tcp://10.77.0.2:7400\n"
          "key: /k\n"
          "authorized:\n"
          "  - name: coordinator\n"
          "    pubkey: /p\n"
          "    roles: []\n",
          7, "authorized[0].roles", "must not be empty" },
        { "too-many-roles", AGENT,
          AGENT_MIN
          "  - name: backup\n"
          "    pubkey: /p\n"
          "    roles:\n"
          "      - admin\n" "      - admin\n" "      - admin\n" "      - admin\n"
          "      - admin\n" "      - admin\n" "      - admin\n" "      - admin\n"
          "      - admin\n" "      - admin\n" "      - admin\n" "      - admin\n"
          "      - admin\n" "      - admin\n" "      - admin\n" "      - admin\n"
          "      - admin\n",
          28, "authorized[1].roles[16]", "too many items (at most 16)" },
        { "item-without-dash-line", AGENT,
          AGENT_MIN
          "  -\n"
          "    name: backup\n"
          "    roles: [admin]\n",
          10, "authorized[1].pubkey", "required field is missing" },

        /* ---- agent.yaml: guest hooks ---- */
        { "hook-shell-text", AGENT,
          AGENT_MIN
          "vms:\n"
          "  - name: db1\n"
          "    hooks:\n"
          "      - name: flush-db\n"
          "        pre_freeze: \"sync; echo flushed\"\n",
          13, "vms[0].hooks[0].pre_freeze", "wrong type: expected a list, got a single value" },
        { "hook-program-relative", AGENT,
          AGENT_MIN
          "vms:\n"
          "  - name: db1\n"
          "    hooks:\n"
          "      - name: flush-db\n"
          "        post_thaw: [/bin/true]\n"
          "        pre_freeze:\n"
          "          - sync\n",
          15, "vms[0].hooks[0].pre_freeze[0]", "the program \"sync\" is not an absolute path in the guest" },
        { "hook-no-command", AGENT,
          AGENT_MIN
          "vms:\n"
          "  - name: db1\n"
          "    hooks:\n"
          "      - name: flush-db\n"
          "        timeout_s: 5\n",
          12, "vms[0].hooks[0]", "hook \"flush-db\" has neither pre_freeze nor post_thaw" },
        { "hook-duplicate", AGENT,
          AGENT_MIN
          "vms:\n"
          "  - name: db1\n"
          "    hooks:\n"
          "      - {name: flush-db, pre_freeze: [/usr/bin/sync]}\n"
          "      - {name: flush-db, post_thaw: [/usr/bin/true]}\n",
          13, "vms[0].hooks[1].name", "duplicate hook \"flush-db\" (also vms[0].hooks[0])" },
        { "hook-vm-duplicate", AGENT,
          AGENT_MIN
          "vms:\n"
          "  - name: db1\n"
          "    hooks: [{name: a, pre_freeze: [/usr/bin/sync]}]\n"
          "  - name: db1\n"
          "    hooks: [{name: b, pre_freeze: [/usr/bin/sync]}]\n",
          12, "vms[1].name", "duplicate VM \"db1\" (also vms[0])" },
        { "hook-bad-name", AGENT,
          AGENT_MIN
          "vms:\n"
          "  - name: db1\n"
          "    hooks:\n"
          "      - name: flush db\n"
          "        pre_freeze: [/usr/bin/sync]\n",
          12, "vms[0].hooks[0].name", "invalid name \"flush db\"" },
        { "hook-timeout-range", AGENT,
          AGENT_MIN
          "vms:\n"
          "  - name: db1\n"
          "    hooks:\n"
          "      - name: flush-db\n"
          "        pre_freeze: [/usr/bin/sync]\n"
          "        timeout_s: 301\n",
          14, "vms[0].hooks[0].timeout_s", "\"301\" is out of range (1..300)" },
        { "hook-vm-without-hooks", AGENT,
          AGENT_MIN
          "vms:\n"
          "  - name: db1\n",
          10, "vms[0].hooks", "required field is missing" },

        /* ---- coordinator.yaml ---- */
        /* /metrics has no authentication: loopback only, unless said otherwise. */
        { "metrics-any-address", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "catalog: /c\n"
          "metrics: http://0.0.0.0:9464\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n",
          4, "metrics", "\"http://0.0.0.0:9464\" is not a loopback address and /metrics has no authentication: "
                        "serve it on 127.0.0.1 (behind a proxy that authenticates), or set metrics_public: true" },
        { "metrics-lan-address", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "catalog: /c\n"
          "metrics: http://10.0.0.5:9464\n"
          "metrics_public: no\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n",
          4, "metrics", "\"http://10.0.0.5:9464\" is not a loopback address" },
        { "metrics-no-port", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "catalog: /c\n"
          "metrics: http://127.0.0.1\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n",
          4, "metrics", "expected http://HOST:PORT, got \"http://127.0.0.1\"" },
        /* Hook commands moved to agent.yaml: the old text is refused on its own
         * line, and the message says where they live now. */
        { "hooks-text", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    hooks: {pre_freeze: \"sync; echo flushed\", post_thaw: \"echo resumed\", timeout_s: 5}\n",
          14, "groups[0].hooks",
          "hook commands are no longer set here: define them per VM in each agent's agent.yaml (vms[].hooks[]) "
          "and name one with \"hook: NAME\"" },
        { "hooks-text-block", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    mode: pause\n"
          "    hooks:\n"
          "      pre_freeze: /usr/bin/sync\n",
          15, "groups[0].hooks", "define them per VM in each agent's agent.yaml" },
        { "hook-not-a-name", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    hook: \"sync; echo flushed\"\n",
          14, "groups[0].hook", "invalid name \"sync; echo flushed\"" },
        { "unknown-key-tier", COORD,
          COORD_MIN
          "  - name: shop\n"
          "    tiers:\n"
          "      - name: web\n"
          "        members: [web1@host-a]\n"
          "      - name: db\n"
          "        member: [db1@host-b]\n",
          17, "groups[0].tiers[1].member", "unknown key \"member\" (known: name, members)" },
        { "unknown-key-agent", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "catalog: /c\n"
          "agents:\n"
          "  - id: host-a\n"
          "    url: tcp://10.77.0.2:7400\n"
          "    pubkey: /a.pub\n"
          "    port: 7400\n",
          8, "agents[0].port", "unknown key \"port\" (known: id, url, pubkey, tls_ca, server_name)" },
        { "duplicate-key-retention", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    retention:\n"
          "      daily: 7\n"
          "      hourly: 24\n"
          "      daily: 3\n",
          17, "groups[0].retention.daily", "duplicate key (first given on line 15)" },
        { "wrong-type-retention", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    retention: 7\n",
          14, "groups[0].retention", "wrong type: expected a mapping (key: value), got a single value" },
        { "wrong-type-groups", COORD,
          COORD_MIN
          "  - solo\n",
          12, "groups[0]", "wrong type: expected a mapping (key: value), got a single value" },
        { "wrong-type-members", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: {vm1: host-a}\n",
          13, "groups[0].members", "wrong type: expected a list, got a mapping (key: value)" },
        { "wrong-type-groups-null", COORD,
          COORD_MIN
          "  ~\n",
          11, "groups", "wrong type: expected a list, got a single value" },
        { "tier-missing-members", COORD,
          COORD_MIN
          "  - name: shop\n"
          "    tiers:\n"
          "      - name: web\n"
          "        members: [web1@host-a]\n"
          "      - name: db\n",
          16, "groups[0].tiers[1].members", "required field is missing" },
        { "empty-tiers", COORD,
          COORD_MIN
          "  - name: shop\n"
          "    tiers: []\n",
          13, "groups[0].tiers", "must not be empty" },
        { "bad-schedule", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    schedule: \"61 * * * *\"\n",
          14, "groups[0].schedule", "minute: 61 is out of 0-59" },
        { "schedule-never-due", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    schedule: \"0 0 30 2 *\"\n",
          14, "groups[0].schedule", "schedule \"0 0 30 2 *\" never falls due" },
        { "schedule-reboot", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    schedule: \"@reboot\"\n",
          14, "groups[0].schedule", "@reboot" },
        { "catch-up-not-bool", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    catch_up: sometimes\n",
          14, "groups[0].catch_up", "expected true or false, got \"sometimes\"" },
        { "random-delay-too-long", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    random_delay_s: 3601\n",
          14, "groups[0].random_delay_s", "out of range (0..3600)" },
        { "unknown-agent-in-member", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a, vm2@host-z]\n",
          13, "groups[0].members[1]",
          "member \"vm2@host-z\" names agent \"host-z\", which is not listed under agents" },
        { "crash-consistent-not-a-member", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    crash_consistent: [vm9@host-a]\n",
          14, "groups[0].crash_consistent[0]", "\"vm9@host-a\" is not a member of this group" },
        { "member-without-at", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members:\n"
          "      - vm1@host-a\n"
          "      - vm2\n",
          15, "groups[0].members[1]", "member \"vm2\" is not of the form vm@agent" },
        { "member-bad-vm", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [\"v m@host-a\"]\n",
          13, "groups[0].members[0]", "invalid VM name in member \"v m@host-a\"" },
        { "member-two-ats", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm@host-a@host-b]\n",
          13, "groups[0].members[0]", "invalid agent id in member \"vm@host-a@host-b\"" },
        { "duplicate-agent-id", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "catalog: /c\n"
          "agents:\n"
          "  - id: host-a\n"
          "    url: tcp://10.77.0.2:7400\n"
          "    pubkey: /a.pub\n"
          "  - id: host-a\n"
          "    url: tcp://10.77.0.3:7400\n"
          "    pubkey: /b.pub\n",
          8, "agents[1].id", "duplicate agent id \"host-a\" (also agents[0])" },
        { "members-and-tiers", COORD,
          COORD_MIN
          "  - name: shop\n"
          "    members: [vm1@host-a]\n"
          "    tiers:\n"
          "      - name: web\n"
          "        members: [web1@host-a]\n",
          14, "groups[0].tiers", "give either members: or tiers:, not both" },
        { "neither-members-nor-tiers", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "  - name: shop\n"
          "    mode: pause\n",
          14, "groups[1].members", "a group needs members: or tiers:" },
        { "duplicate-vm-across-tiers", COORD,
          COORD_MIN
          "  - name: shop\n"
          "    tiers:\n"
          "      - name: web\n"
          "        members: [web1@host-a]\n"
          "      - name: app\n"
          "        members: [app1@host-b, web1@host-a]\n",
          17, "groups[0].tiers[1].members[1]", "member \"web1@host-a\" is listed twice in this group" },
        { "duplicate-tier", COORD,
          COORD_MIN
          "  - name: shop\n"
          "    tiers:\n"
          "      - name: web\n"
          "        members: [web1@host-a]\n"
          "      - name: web\n"
          "        members: [web2@host-a]\n",
          16, "groups[0].tiers[1].name", "duplicate tier name \"web\" (also tiers[0])" },
        { "bad-tier-name", COORD,
          COORD_MIN
          "  - name: shop\n"
          "    tiers:\n"
          "      - name: \"we b\"\n"
          "        members: [web1@host-a]\n",
          14, "groups[0].tiers[0].name", "invalid name \"we b\"" },
        { "duplicate-group", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "  - name: solo\n"
          "    members: [vm2@host-a]\n",
          14, "groups[1].name", "duplicate group name \"solo\" (also groups[0])" },
        { "group-missing-name", COORD,
          COORD_MIN
          "  - members: [vm1@host-a]\n",
          12, "groups[0].name", "required field is missing" },
        { "unknown-mode", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    mode: freeze\n",
          14, "groups[0].mode", "unknown mode \"freeze\" (one of quiesce, pause, memory)" },
        { "lease-range", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    lease_s: 3601\n",
          14, "groups[0].lease_s", "\"3601\" is out of range (1..3600)" },
        { "retention-type", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    retention: {keep_last: four}\n",
          14, "groups[0].retention.keep_last", "expected a whole number, got \"four\"" },
        { "retention-unknown-key", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    retention:\n"
          "      keep_last: 4\n"
          "      yearly: 1\n",
          16, "groups[0].retention.yearly",
          "unknown key \"yearly\" (known: keep_last, hourly, daily, weekly, monthly, keep_branches)" },
        { "retention-branches-bad", COORD,
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n"
          "    retention: {keep_last: 2, keep_branches: many}\n",
          14, "groups[0].retention.keep_branches", "expected a whole number, got \"many\"" },
        { "history-keep-low", COORD,
          "history_keep: 5\n"
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n",
          1, "history_keep", "\"5\" is out of range (10..10000000)" },
        { "history-keep-members-low", COORD,
          "history_keep_members: 9999\n"
          COORD_MIN
          "  - name: solo\n"
          "    members: [vm1@host-a]\n",
          1, "history_keep_members", "\"9999\" is out of range (10000..1000000000)" },
        { "control-not-ipc", COORD,
          "control: tcp://127.0.0.1:7300\n"
          "key: /k\n"
          "catalog: /c\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n",
          1, "control", "the control socket must be an ipc:// URL" },
        { "agent-url-scheme", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "catalog: /c\n"
          "agents:\n"
          "  - id: host-a\n"
          "    url: udp://10.77.0.2:7400\n"
          "    pubkey: /a.pub\n",
          6, "agents[0].url", "unsupported URL \"udp://10.77.0.2:7400\"" },
        { "agent-url-no-port", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "catalog: /c\n"
          "agents:\n"
          "  - id: host-a\n"
          "    pubkey: /a.pub\n"
          "    url: tcp://10.77.0.2\n",
          7, "agents[0].url", "URL \"tcp://10.77.0.2\" has no port" },
        { "agent-url-no-host", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "catalog: /c\n"
          "agents:\n"
          "  - id: host-a\n"
          "    url: tcp://:7400\n"
          "    pubkey: /a.pub\n",
          6, "agents[0].url", "has no host" },
        { "agent-url-ipv6", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "catalog: /c\n"
          "agents:\n"
          "  - id: host-a\n"
          "    url: tcp://fd00::2:7400\n"
          "    pubkey: /a.pub\n",
          6, "agents[0].url", "an IPv6 address goes in brackets" },
        { "no-agents", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "catalog: /c\n",
          1, "agents", "required field is missing" },
        { "step-timeout-range", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "catalog: /c\n"
          "step_timeout_s: 0\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n",
          4, "step_timeout_s", "\"0\" is out of range (1..3600)" },
        { "stop-timeout-range", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "catalog: /c\n"
          "stop_timeout_s: 3601\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n",
          4, "stop_timeout_s", "\"3601\" is out of range (1..3600)" },
        { "ha-with-catalog", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "catalog: /c\n"
          "counter_file: /var/lib/lockstep/counter\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n"
          "ha:\n"
          "  name: coord-a\n"
          "  etcd: [http://10.77.0.20:2379]\n",
          3, "catalog", "with ha: the catalog is in etcd" },
        { "ha-no-counter-file", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n"
          "ha:\n"
          "  name: coord-a\n"
          "  etcd: [http://10.77.0.20:2379]\n",
          4, "counter_file", "needs a file of its own" },
        { "no-catalog", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n",
          1, "catalog", "missing: the SQLite file of the catalog (or an ha: section)" },
        { "ha-etcd-not-url", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "counter_file: /var/lib/lockstep/counter\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n"
          "ha:\n"
          "  name: coord-a\n"
          "  etcd: [10.77.0.20:2379]\n",
          7, "ha.etcd[0]", "expected an http:// or https:// URL" },
        { "ha-etcd-mixed", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "counter_file: /var/lib/lockstep/counter\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n"
          "ha:\n"
          "  name: coord-a\n"
          "  etcd: [https://10.77.0.20:2379, http://10.77.0.21:2379]\n"
          "  etcd_ca: /ca.pem\n",
          7, "ha.etcd[1]", "every endpoint is http:// or every one https://" },
        { "ha-https-no-ca", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "counter_file: /var/lib/lockstep/counter\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n"
          "ha:\n"
          "  name: coord-a\n"
          "  etcd: [https://10.77.0.20:2379]\n",
          7, "ha.etcd", "https:// endpoints need ha.etcd_ca" },
        { "ha-cert-no-key", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "counter_file: /var/lib/lockstep/counter\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n"
          "ha:\n"
          "  name: coord-a\n"
          "  etcd: [https://10.77.0.20:2379]\n"
          "  etcd_ca: /ca.pem\n"
          "  etcd_cert: /c.pem\n",
          9, "ha.etcd_key", "etcd_cert and etcd_key go together" },
        { "ha-prefix", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "counter_file: /var/lib/lockstep/counter\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n"
          "ha:\n"
          "  name: coord-a\n"
          "  etcd: [http://10.77.0.20:2379]\n"
          "  prefix: lockstep\n",
          8, "ha.prefix", "expected a key prefix such as /lockstep/" },
        { "ha-ttl", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "counter_file: /var/lib/lockstep/counter\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n"
          "ha:\n"
          "  name: coord-a\n"
          "  etcd: [http://10.77.0.20:2379]\n"
          "  lease_ttl_s: 1\n",
          8, "ha.lease_ttl_s", "\"1\" is out of range (2..60)" },
        /* ha: forwarding between coordinators (ha.listen, ha.coordinators) */
        { "ha-listen-tcp", COORD,
          HA_HEAD
          "  listen: tcp://10.77.0.21:7500\n",
          8, "ha.listen", "expected tls+tcp://HOST:PORT (or ipc://PATH on one machine)" },
        { "ha-listen-wildcard", COORD,
          HA_HEAD
          "  listen: tls+tcp://0.0.0.0:7500\n",
          8, "ha.listen", "the others dial this URL, so give this host's address, not a wildcard" },
        { "ha-listen-tls-no-cert", COORD,
          HA_HEAD
          "  listen: tls+tcp://10.77.0.21:7500\n"
          HA_TWO,
          8, "ha.tls_cert", "required when ha.listen is a tls+tcp:// URL" },
        { "ha-listen-tls-key-missing", COORD,
          HA_HEAD
          "  listen: tls+tcp://10.77.0.21:7500\n"
          "  tls_cert: /nonexistent/c1.pem\n"
          "  tls_key: /nonexistent/c1.key\n"
          "  tls_ca: /nonexistent/ca.pem\n"
          HA_TWO,
          10, "ha.tls_key", "TLS key \"/nonexistent/c1.key\": No such file or directory" },
        { "ha-listen-ipc-with-ca", COORD,
          HA_HEAD
          "  listen: ipc:///run/lockstep/peer.sock\n"
          "  tls_ca: /ca.pem\n"
          HA_TWO,
          9, "ha.tls_ca", "only used when ha.listen is a tls+tcp:// URL" },
        { "ha-tls-without-listen", COORD,
          HA_HEAD
          "  tls_ca: /ca.pem\n",
          8, "ha.tls_ca", "only used with ha.listen" },
        { "ha-coordinators-without-listen", COORD,
          HA_HEAD
          HA_TWO,
          8, "ha.coordinators", "only used with ha.listen" },
        { "ha-listen-no-coordinators", COORD,
          HA_HEAD
          "  listen: ipc:///run/lockstep/peer.sock\n",
          8, "ha.coordinators", "required with ha.listen: the name and public key of every lockstepd" },
        { "ha-coordinators-dup-name", COORD,
          HA_HEAD
          "  listen: ipc:///run/lockstep/peer.sock\n"
          "  coordinators:\n"
          "    - {name: c1, pubkey: /c1.pub}\n"
          "    - {name: c1, pubkey: /c2.pub}\n",
          11, "ha.coordinators[1].name", "duplicate name \"c1\" (also ha.coordinators[0])" },
        { "ha-coordinators-dup-key", COORD,
          HA_HEAD
          "  listen: ipc:///run/lockstep/peer.sock\n"
          "  coordinators:\n"
          "    - {name: c1, pubkey: /c1.pub}\n"
          "    - {name: c2, pubkey: /c1.pub}\n",
          11, "ha.coordinators[1].pubkey", "the same key as ha.coordinators[0] (\"c1\"): one key each" },
        { "ha-coordinators-bad-name", COORD,
          HA_HEAD
          "  listen: ipc:///run/lockstep/peer.sock\n"
          "  coordinators:\n"
          "    - {name: c 1, pubkey: /c1.pub}\n",
          10, "ha.coordinators[0].name", "" },
        { "ha-coordinators-self-missing", COORD,
          HA_HEAD
          "  listen: ipc:///run/lockstep/peer.sock\n"
          "  coordinators:\n"
          "    - {name: c2, pubkey: /c2.pub}\n",
          9, "ha.coordinators", "this lockstepd (ha.name \"c1\") is not listed" },
        { "ha-value-too-long", COORD,
          "control: ipc:///run/lockstep/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n"
          "key: /k\n"
          "counter_file: /var/lib/lockstep/counter\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n"
          "ha:\n"
          "  name: c1\n"
          "  etcd: [http://10.77.0.20:2379]\n"
          "  listen: ipc:///run/lockstep/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.sock\n"
          HA_TWO,
          8, "ha.listen", "ha.name, control and ha.listen make a member value of up to" },
        { "ha-name", COORD,
          "control: ipc:///run/lockstep/control.sock\n"
          "key: /k\n"
          "counter_file: /var/lib/lockstep/counter\n"
          "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n"
          "ha:\n"
          "  name: coord a\n"
          "  etcd: [http://10.77.0.20:2379]\n",
          6, "ha.name", "" },
};

static void test_refusal(void **state)
{
        const struct refusal *c = *state;
        char file[PATH_MAX];

        snprintf(file, sizeof(file), "%s.yaml", c->name);
        expect_refusal(file, c->kind, c->yaml, c->line, c->field, c->why);
}

/* The brief's example message, whole. */
static void test_refusal_whole_message(void **state)
{
        char path[PATH_MAX], want[PATH_MAX + 200];
        struct cfg_agent *c = NULL;
        lserr err = { 0 };

        (void)state;
        write_cfg(path, "whole.yaml",
                  AGENT_MIN
                  "  - name: backup\n"
                  "    pubkey: /p\n"
                  "    roles: [snapshoot]\n");
        assert_int_equal(cfg_agent_load(path, &c, &err), LS_ECONFIG);
        assert_null(c);
        snprintf(want, sizeof(want),
                 "%s:11: authorized[1].roles[0]: unknown role \"snapshoot\" (one of snapshot, revert, delete, admin)",
                 path);
        assert_string_equal(err.msg, want);
}

/* An unknown key, found by walking libyaml's document against the schema: the
 * message lists every key the mapping knows, and nothing is written to stderr
 * (libcyaml's own log stays off). */
static void test_refusal_unknown_key_whole(void **state)
{
        char path[PATH_MAX], errpath[PATH_MAX], want[PATH_MAX + 400];
        struct cfg_agent *c = NULL;
        lserr err = { 0 };
        int saved, fd;
        FILE *f;

        (void)state;
        write_cfg(path, "unknown-whole.yaml", AGENT_MIN "lease_max: 30\n");
        tmp_path(errpath, "stderr.txt");
        fflush(stderr);
        saved = dup(2);
        assert_true(saved >= 0);
        f = fopen(errpath, "w");
        assert_non_null(f);
        fd = fileno(f);
        assert_int_equal(dup2(fd, 2), 2);
        assert_int_equal(cfg_agent_load(path, &c, &err), LS_ECONFIG);
        fflush(stderr);
        assert_int_equal(dup2(saved, 2), 2);
        close(saved);
        assert_int_equal(ftell(f), 0);
        fclose(f);
        assert_null(c);
        snprintf(want, sizeof(want),
                 "%s:9: lease_max: unknown key \"lease_max\" (known: id, listen, key, authorized, vms, libvirt_uri, "
                 "backend, sim_config, journal_dir, state_dir, lease_max_s, time_window_s, guest_agent_timeout_s, "
                 "min_free_mb, parallel_per_host, tls_cert, tls_key, privsep_user)",
                 path);
        assert_string_equal(err.msg, want);
}

/* 17 tiers where 16 are allowed: the 17th is named, on its own line. */
static void test_refusal_too_many_tiers(void **state)
{
        char yaml[4096];
        size_t o;

        (void)state;
        o = (size_t)snprintf(yaml, sizeof(yaml), "%s", COORD_MIN "  - name: big\n    tiers:\n");
        for (unsigned t = 0; t < 17; t++)
                o += (size_t)snprintf(yaml + o, sizeof(yaml) - o, "      - name: t%u\n        members: [vm%u@host-a]\n",
                                      t, t);
        /* Tier t starts on line 14 + 2t. */
        expect_refusal("too-many-tiers.yaml", COORD, yaml, 14 + 2 * 16, "groups[0].tiers[16]",
                       "too many items (at most 16)");
}

/* A string longer than any path: refused by the schema, still with its line. */
static void test_refusal_long_string(void **state)
{
        static const char head[] = AGENT_MIN "state_dir: /";
        static char yaml[sizeof(head) + 5000 + 1];
        const size_t h = sizeof(head) - 1;

        (void)state;
        memcpy(yaml, head, h);
        memset(yaml + h, 'x', 5000);
        yaml[h + 5000] = '\n';
        yaml[h + 5001] = '\0';
        expect_refusal("long-string.yaml", AGENT, yaml, 9, "state_dir", "longer than 4095 bytes");
}

/* A TLS key file only its owner may read, as the agent wants it. */
static void write_tls_key(char out[static PATH_MAX], const char *name, mode_t mode)
{
        write_cfg(out, name, "-----BEGIN PRIVATE KEY-----\n");
        assert_int_equal(chmod(out, mode), 0);
}

static void test_agent_full(void **state)
{
        char path[PATH_MAX], key[PATH_MAX], yaml[4096 + PATH_MAX];
        struct cfg_agent *c = NULL;
        lserr err = { 0 };

        (void)state;
        write_tls_key(key, "agent-tls.key", 0600);
        snprintf(yaml, sizeof(yaml),
                  "# every key\n"
                  "id: host-a\n"
                  "listen: tls+tcp://[fd00::2]:7400\n"
                  "key: /etc/lockstep/agent.key\n"
                  "authorized:\n"
                  "  - name: coordinator\n"
                  "    pubkey: /etc/lockstep/coordinator.pub\n"
                  "    roles: [snapshot, revert, delete, admin]\n"
                  "  - name: backup\n"
                  "    pubkey: \"" PUB_INLINE "\"\n"
                  "    roles:\n"
                  "      - snapshot\n"
                  "      - delete\n"
                  "libvirt_uri: qemu+ssh://root@host-a/system\n"
                  "backend: libvirt\n"
                  "journal_dir: /var/lib/lockstep/journal\n"
                  "state_dir: /var/lib/lockstep\n"
                  "lease_max_s: 3600\n"
                  "time_window_s: 1\n"
                  "guest_agent_timeout_s: 300\n"
                  "min_free_mb: 2048\n"
                  "parallel_per_host: 64\n"
                  "tls_cert: /etc/lockstep/agent.crt\n"
                  "tls_key: %s\n"
                  "vms:\n"
                  "  - name: db1\n"
                  "    hooks:\n"
                  "      - name: flush-db\n"
                  "        pre_freeze: [/usr/local/bin/db-flush, --wait, \"a b; c\"]\n"
                  "        post_thaw: [/usr/local/bin/db-resume]\n"
                  "        timeout_s: 30\n"
                  "      - name: sync\n"
                  "        pre_freeze: [/usr/bin/sync]\n"
                  "  - name: web1\n"
                  "    hooks: [{name: flush-db, post_thaw: [/bin/true]}]\n", key);
        write_cfg(path, "agent-full.yaml", yaml);
        if (cfg_agent_load(path, &c, &err) < 0)
                fail_msg("%s", err.msg);
        assert_non_null(c);
        assert_string_equal(c->id, "host-a");
        assert_string_equal(c->listen, "tls+tcp://[fd00::2]:7400");
        assert_string_equal(c->key, "/etc/lockstep/agent.key");
        assert_int_equal(c->n_authorized, 2);
        assert_string_equal(c->authorized[0].name, "coordinator");
        assert_string_equal(c->authorized[0].pubkey, "/etc/lockstep/coordinator.pub");
        assert_int_equal(c->authorized[0].roles, CFG_ROLE_SNAPSHOT | CFG_ROLE_REVERT | CFG_ROLE_DELETE | CFG_ROLE_ADMIN);
        assert_string_equal(c->authorized[1].name, "backup");
        assert_string_equal(c->authorized[1].pubkey, PUB_INLINE);
        assert_int_equal(c->authorized[1].roles, CFG_ROLE_SNAPSHOT | CFG_ROLE_DELETE);
        assert_string_equal(c->libvirt_uri, "qemu+ssh://root@host-a/system");
        assert_string_equal(c->backend, "libvirt");
        assert_null(c->sim_config);
        assert_string_equal(c->journal_dir, "/var/lib/lockstep/journal");
        assert_string_equal(c->state_dir, "/var/lib/lockstep");
        assert_int_equal(c->lease_max_s, 3600);
        assert_int_equal(c->time_window_s, 1);
        assert_int_equal(c->guest_agent_timeout_s, 300);
        assert_int_equal(c->min_free_mb, 2048);
        assert_int_equal(c->parallel_per_host, 64);
        assert_string_equal(c->tls_cert, "/etc/lockstep/agent.crt");
        assert_string_equal(c->tls_key, key);
        assert_int_equal(c->n_vms, 2);
        const struct cfg_hook *h = agent_hooks_find(c->vms, c->n_vms, "db1", "flush-db");
        assert_non_null(h);
        assert_string_equal(h->pre_freeze[0], "/usr/local/bin/db-flush");
        assert_string_equal(h->pre_freeze[1], "--wait");
        assert_string_equal(h->pre_freeze[2], "a b; c"); /* one argument: no shell splits it */
        assert_null(h->pre_freeze[3]);
        assert_string_equal(h->post_thaw[0], "/usr/local/bin/db-resume");
        assert_null(h->post_thaw[1]);
        assert_int_equal(h->timeout_s, 30);
        h = agent_hooks_find(c->vms, c->n_vms, "db1", "sync");
        assert_non_null(h);
        assert_null(h->post_thaw);
        assert_int_equal(h->timeout_s, 10);
        h = agent_hooks_find(c->vms, c->n_vms, "web1", "flush-db");
        assert_non_null(h);
        assert_null(h->pre_freeze);
        assert_null(agent_hooks_find(c->vms, c->n_vms, "web1", "sync")); /* per VM */
        assert_null(agent_hooks_find(c->vms, c->n_vms, "app1", "flush-db"));
        assert_null(cfg_agent_free(c));
}

/* The TLS key is refused at load when group or other may read it, or when it
 * is not there: the agent would otherwise fail later, at listen. */
static void test_agent_tls_key(void **state)
{
        static const char fmt[] = "id: host-a\n"
                                  "listen: tls+tcp://10.77.0.2:7400\n"
                                  "key: /k\n"
                                  "journal_dir: /j\n"
                                  "authorized: [{name: c, pubkey: /p, roles: [admin]}]\n"
                                  "tls_cert: /etc/lockstep/agent.crt\n"
                                  "tls_key: %s\n";
        char key[PATH_MAX], yaml[sizeof(fmt) + PATH_MAX], want[2 * PATH_MAX + 100];
        struct cfg_agent *c = NULL;
        lserr err = { 0 };

        (void)state;
        write_tls_key(key, "tls-open.key", 0644);
        snprintf(yaml, sizeof(yaml), fmt, key);
        snprintf(want, sizeof(want), "TLS key \"%s\": mode 0644 lets group or other read it; fix with: chmod 600", key);
        expect_refusal("tls-key-open.yaml", AGENT, yaml, 7, "tls_key", want);
        assert_int_equal(chmod(key, 0640), 0);
        expect_refusal("tls-key-group.yaml", AGENT, yaml, 7, "tls_key", "mode 0640 lets group or other read it");
        snprintf(yaml, sizeof(yaml), fmt, "/nonexistent/agent-tls.key");
        expect_refusal("tls-key-missing.yaml", AGENT, yaml, 7, "tls_key", "No such file or directory");
        assert_int_equal(chmod(key, 0600), 0);
        snprintf(yaml, sizeof(yaml), fmt, key);
        write_cfg(want, "tls-key-ok.yaml", yaml);
        assert_int_equal(cfg_agent_load(want, &c, &err), 0);
        cfg_agent_free(c);
}

/* A fleet-wide tls_ca, one agent's own, and server_name given or taken from
 * the URL's host (an IPv6 address without its brackets). */
static void test_coord_tls(void **state)
{
        char path[PATH_MAX];
        struct cfg_coord *c = NULL;
        lserr err = { 0 };

        (void)state;
        write_cfg(path, "coord-tls.yaml",
                  "control: ipc:///run/lockstep/control.sock\n"
                  "key: /etc/lockstep/coordinator.key\n"
                  "catalog: /var/lib/lockstep/catalog.db\n"
                  "tls_ca: /etc/lockstep/fleet-ca.pem\n"
                  "agents:\n"
                  "  - id: host-a\n"
                  "    url: tls+tcp://10.77.0.2:7400\n"
                  "    pubkey: /etc/lockstep/host-a.pub\n"
                  "    server_name: host-a.lab\n"
                  "  - id: host-b\n"
                  "    url: tls+tcp://[fd00::3]:7400\n"
                  "    pubkey: /etc/lockstep/host-b.pub\n"
                  "    tls_ca: /etc/lockstep/b-ca.pem\n"
                  "  - id: host-c\n"
                  "    url: tcp://10.77.0.4:7400\n"
                  "    pubkey: /etc/lockstep/host-c.pub\n"
                  "groups:\n");
        assert_int_equal(cfg_coord_load(path, &c, &err), 0);
        assert_string_equal(c->agents[0].tls_ca, "/etc/lockstep/fleet-ca.pem");
        assert_string_equal(c->agents[0].server_name, "host-a.lab");
        assert_string_equal(c->agents[1].tls_ca, "/etc/lockstep/b-ca.pem");
        assert_string_equal(c->agents[1].server_name, "fd00::3");
        assert_null(c->agents[2].tls_ca);
        assert_null(c->agents[2].server_name);
        cfg_coord_free(c);
}

static void test_coord_ha(void **state)
{
        char path[PATH_MAX];
        struct cfg_coord *c = NULL;
        lserr err = { 0 };

        (void)state;
        write_cfg(path, "coord-ha.yaml",
                  "control: ipc:///run/lockstep/control.sock\n"
                  "key: /etc/lockstep/coordinator.key\n"
                  "counter_file: /var/lib/lockstep/coordinator.counter\n"
                  "ha:\n"
                  "  name: coord-a\n"
                  "  etcd: [https://10.77.0.20:2379, https://10.77.0.21:2379, https://10.77.0.22:2379]\n"
                  "  etcd_ca: /etc/lockstep/etcd-ca.pem\n"
                  "  etcd_cert: /etc/lockstep/etcd-client.pem\n"
                  "  etcd_key: /etc/lockstep/etcd-client.key\n"
                  "agents:\n"
                  "  - id: host-a\n"
                  "    url: tcp://10.77.0.2:7400\n"
                  "    pubkey: /etc/lockstep/host-a.pub\n"
                  "groups:\n");
        assert_int_equal(cfg_coord_load(path, &c, &err), 0);
        assert_null(c->catalog);
        assert_non_null(c->ha);
        assert_string_equal(c->ha->name, "coord-a");
        assert_int_equal(c->ha->n_etcd, 3);
        assert_string_equal(c->ha->etcd[2], "https://10.77.0.22:2379");
        assert_string_equal(c->ha->etcd_key, "/etc/lockstep/etcd-client.key");
        assert_string_equal(c->ha->prefix, "/lockstep/");
        assert_int_equal(c->ha->lease_ttl_s, 5);
        assert_null(c->ha->listen);
        assert_int_equal(c->ha->n_coordinators, 0);
        assert_string_equal(c->counter_file, "/var/lib/lockstep/coordinator.counter");
        /* The catalog in etcd keeps a tenth of SQLite's history by default. */
        assert_int_equal(c->history_keep, 1000);
        assert_int_equal(c->history_keep_members, 100000);
        assert_int_equal(c->audit_keep, 20000);
        assert_int_equal(c->events_keep, 20000);
        cfg_coord_free(c);
        c = NULL;

        /* Forwarding on one machine: ipc://, no TLS files. */
        write_cfg(path, "coord-ha-forward.yaml",
                  "control: ipc:///run/lockstep/control.sock\n"
                  "key: /etc/lockstep/coordinator.key\n"
                  "counter_file: /var/lib/lockstep/coordinator.counter\n"
                  "ha:\n"
                  "  name: c2\n"
                  "  etcd: [http://10.77.0.20:2379]\n"
                  "  listen: ipc:///run/lockstep/peer.sock\n"
                  "  coordinators:\n"
                  "    - name: c1\n"
                  "      pubkey: /etc/lockstep/c1.pub\n"
                  "    - {name: c2, pubkey: \"lockstep-pub-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}\n"
                  "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n");
        assert_int_equal(cfg_coord_load(path, &c, &err), 0);
        assert_string_equal(c->ha->listen, "ipc:///run/lockstep/peer.sock");
        assert_null(c->ha->tls_ca);
        assert_int_equal(c->ha->n_coordinators, 2);
        assert_string_equal(c->ha->coordinators[0].name, "c1");
        assert_string_equal(c->ha->coordinators[0].pubkey, "/etc/lockstep/c1.pub");
        assert_string_equal(c->ha->coordinators[1].name, "c2");
        cfg_coord_free(c);
}

static void test_agent_defaults(void **state)
{
        char path[PATH_MAX];
        struct cfg_agent *c = NULL;
        lserr err = { 0 };

        (void)state;
        write_cfg(path, "agent-min.yaml", AGENT_MIN);
        assert_int_equal(cfg_agent_load(path, &c, &err), 0);
        assert_string_equal(c->libvirt_uri, "qemu:///system");
        assert_string_equal(c->backend, "libvirt");
        assert_null(c->sim_config);
        assert_string_equal(c->state_dir, "/var/lib/lockstep/journal");
        assert_ptr_not_equal(c->state_dir, c->journal_dir);
        assert_int_equal(c->lease_max_s, 60);
        assert_int_equal(c->time_window_s, 30);
        assert_int_equal(c->guest_agent_timeout_s, 10);
        assert_int_equal(c->min_free_mb, 64);
        /* One member per online CPU, within the key's range. */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        assert_int_equal(c->parallel_per_host, cpus < 1 ? 1 : cpus > 64 ? 64 : cpus);
        assert_null(c->tls_cert);
        assert_null(c->tls_key);
        assert_string_equal(c->privsep_user, "nobody");
        assert_int_equal(c->n_vms, 0);
        assert_null(agent_hooks_find(c->vms, c->n_vms, "db1", "flush-db"));
        assert_int_equal(err.code, 0);
        assert_string_equal(err.msg, "");
        cfg_agent_free(c);
}

static void test_agent_sim(void **state)
{
        char path[PATH_MAX];
        struct cfg_agent *c = NULL;
        lserr err = { 0 };

        (void)state;
        write_cfg(path, "agent-sim.yaml",
                  "id: sim-1\n"
                  "listen: ipc:///run/lockstep/agent.sock\n"
                  "key: /k\n"
                  "journal_dir: /j\n"
                  "authorized: [{name: c, pubkey: /p, roles: [snapshot]}]\n"
                  "backend: sim\n"
                  "sim_config: /etc/lockstep/sim.yaml\n");
        assert_int_equal(cfg_agent_load(path, &c, &err), 0);
        assert_string_equal(c->backend, "sim");
        assert_string_equal(c->sim_config, "/etc/lockstep/sim.yaml");
        assert_string_equal(c->listen, "ipc:///run/lockstep/agent.sock");
        assert_int_equal(c->authorized[0].roles, CFG_ROLE_SNAPSHOT);
        cfg_agent_free(c);
}

static void test_coord_full(void **state)
{
        char path[PATH_MAX];
        struct cfg_coord *c = NULL;
        const struct cfg_group *g;
        const struct cfg_peer *p;
        lserr err = { 0 };

        (void)state;
        write_cfg(path, "coord-full.yaml",
                  "control: ipc:///run/lockstep/control.sock\n"
                  "key: /etc/lockstep/coordinator.key\n"
                  "catalog: /var/lib/lockstep/catalog.db\n"
                  "counter_file: /var/lib/lockstep/counter\n"
                  "step_timeout_s: 45\n"
                  "stop_timeout_s: 12\n"
                  "max_cuts: 5\n"
                  "max_cuts_per_agent: 1\n"
                  "metrics: http://127.0.0.1:9464\n"
                  "agents:\n"
                  "  - id: host-a\n"
                  "    url: tcp://10.77.0.2:7400\n"
                  "    pubkey: /etc/lockstep/host-a.pub\n"
                  "  - id: host-b\n"
                  "    url: tls+tcp://host-b.example:7400\n"
                  "    pubkey: \"" PUB_INLINE "\"\n"
                  "    tls_ca: /etc/lockstep/ca.pem\n"
                  "groups:\n"
                  "  - name: shop\n"
                  "    tiers:\n"
                  "      - name: web\n"
                  "        members: [web1@host-a, web2@host-b]\n"
                  "      - name: app\n"
                  "        members: [app1@host-b]\n"
                  "      - name: db\n"
                  "        members: [db1@host-b]\n"
                  "    mode: memory\n"
                  "    lease_s: 90\n"
                  "    schedule: \"*/15 * * * *\"\n"
                  "    random_delay_s: 60\n"
                  "    catch_up: false\n"
                  "    retention: {keep_last: 4, hourly: 24, daily: 7, weekly: 4, monthly: 12}\n"
                  "    crash_consistent: [app1@host-b]\n"
                  "  - name: solo\n"
                  "    members: [vm1@host-a]\n"
                  "    mode: pause\n"
                  "    retention:\n"
                  "      daily: 3\n");
        assert_int_equal(cfg_coord_load(path, &c, &err), 0);
        assert_string_equal(c->control, "ipc:///run/lockstep/control.sock");
        assert_string_equal(c->key, "/etc/lockstep/coordinator.key");
        assert_string_equal(c->catalog, "/var/lib/lockstep/catalog.db");
        assert_string_equal(c->counter_file, "/var/lib/lockstep/counter");
        assert_int_equal(c->step_timeout_s, 45);
        assert_int_equal(c->stop_timeout_s, 12);

        assert_int_equal(c->n_agents, 2);
        assert_string_equal(c->agents[0].id, "host-a");
        assert_string_equal(c->agents[0].url, "tcp://10.77.0.2:7400");
        assert_string_equal(c->agents[0].pubkey, "/etc/lockstep/host-a.pub");
        p = cfg_coord_agent(c, "host-b");
        assert_ptr_equal(p, &c->agents[1]);
        assert_string_equal(p->url, "tls+tcp://host-b.example:7400");
        assert_string_equal(p->pubkey, PUB_INLINE);
        assert_string_equal(p->tls_ca, "/etc/lockstep/ca.pem");
        assert_string_equal(p->server_name, "host-b.example");
        assert_null(c->agents[0].tls_ca);
        assert_null(c->agents[0].server_name);
        assert_null(cfg_coord_agent(c, "host-z"));

        assert_int_equal(c->n_groups, 2);
        g = cfg_coord_group(c, "shop");
        assert_ptr_equal(g, &c->groups[0]);
        assert_int_equal(g->n_tiers, 3);
        assert_string_equal(g->tiers[0], "web");
        assert_string_equal(g->tiers[1], "app");
        assert_string_equal(g->tiers[2], "db");
        assert_int_equal(g->n_members, 4);
        assert_string_equal(g->members[0].vm, "web1");
        assert_string_equal(g->members[0].agent, "host-a");
        assert_int_equal(g->members[0].crash, 0);
        assert_string_equal(g->members[2].vm, "app1");
        assert_int_equal(g->members[2].crash, 1);
        assert_int_equal(g->members[0].tier, 0);
        assert_string_equal(g->members[1].vm, "web2");
        assert_string_equal(g->members[1].agent, "host-b");
        assert_int_equal(g->members[1].tier, 0);
        assert_string_equal(g->members[2].vm, "app1");
        assert_int_equal(g->members[2].tier, 1);
        assert_string_equal(g->members[3].vm, "db1");
        assert_string_equal(g->members[3].agent, "host-b");
        assert_int_equal(g->members[3].tier, 2);
        assert_int_equal(g->mode, CFG_MODE_MEMORY);
        assert_int_equal(g->lease_s, 90);
        assert_string_equal(g->schedule, "*/15 * * * *");
        assert_int_equal(c->max_cuts, 5);
        assert_int_equal(c->max_cuts_per_agent, 1);
        assert_string_equal(c->metrics, "http://127.0.0.1:9464");
        assert_int_equal(g->random_delay_s, 60);
        assert_int_equal(g->catch_up, 0);
        assert_int_equal(g->retention.keep_last, 4);
        assert_int_equal(g->retention.hourly, 24);
        assert_int_equal(g->retention.daily, 7);
        assert_int_equal(g->retention.weekly, 4);
        assert_int_equal(g->retention.monthly, 12);
        assert_int_equal(g->retention.keep_branches, 1); /* the default with a policy */

        g = cfg_coord_group(c, "solo");
        assert_ptr_equal(g, &c->groups[1]);
        assert_int_equal(g->n_tiers, 1);
        assert_string_equal(g->tiers[0], "default");
        assert_int_equal(g->n_members, 1);
        assert_string_equal(g->members[0].vm, "vm1");
        assert_string_equal(g->members[0].agent, "host-a");
        assert_int_equal(g->members[0].tier, 0);
        assert_int_equal(g->mode, CFG_MODE_PAUSE);
        assert_int_equal(g->lease_s, 30);
        assert_null(g->schedule);
        assert_int_equal(g->retention.keep_last, 0);
        assert_int_equal(g->retention.daily, 3);
        assert_int_equal(g->retention.monthly, 0);
        assert_null(cfg_coord_group(c, "nope"));
        assert_null(cfg_coord_free(c));
}

static void test_coord_defaults(void **state)
{
        char path[PATH_MAX];
        struct cfg_coord *c = NULL;
        lserr err = { 0 };

        (void)state;
        write_cfg(path, "coord-min.yaml",
                  COORD_MIN
                  "  - name: solo\n"
                  "    members: [vm1@host-a]\n");
        assert_int_equal(cfg_coord_load(path, &c, &err), 0);
        assert_string_equal(c->counter_file, "/var/lib/lockstep/catalog.db.counter");
        assert_int_equal(c->step_timeout_s, 30);
        assert_int_equal(c->stop_timeout_s, 30);
        assert_int_equal(c->max_cuts, 8);
        assert_int_equal(c->max_cuts_per_agent, 2);
        assert_int_equal(c->history_keep, 10000);
        assert_int_equal(c->history_keep_members, 1000000);
        assert_int_equal(c->audit_keep, 200000);
        assert_int_equal(c->events_keep, 200000);
        assert_null(c->metrics);
        assert_int_equal(c->groups[0].random_delay_s, 0);
        assert_int_equal(c->groups[0].catch_up, 1);
        assert_int_equal(c->groups[0].mode, CFG_MODE_QUIESCE);
        assert_int_equal(c->groups[0].lease_s, 30);
        assert_null(c->groups[0].schedule);
        assert_int_equal(c->groups[0].retention.keep_last + c->groups[0].retention.hourly +
                                 c->groups[0].retention.daily + c->groups[0].retention.weekly +
                                 c->groups[0].retention.monthly,
                         0);
        /* No policy: every pre-revert branch is kept, as every cut is. */
        assert_int_equal(c->groups[0].retention.keep_branches, UINT_MAX);
        cfg_coord_free(c);
}

/* A fleet's group: 1,000 agents and 10,000 members in one group load; one
 * member more is refused, naming the limit. */
static char *fleet_yaml(unsigned agents, unsigned members)
{
        size_t cap = 256 + (size_t)agents * 96 + (size_t)members * 32, off = 0;
        char *s = malloc(cap);

        assert_non_null(s);
        off += (size_t)snprintf(s + off, cap - off, "control: ipc:///run/ls.sock\nkey: /k\ncatalog: /c.db\nagents:\n");
        for (unsigned a = 0; a < agents; a++)
                off += (size_t)snprintf(s + off, cap - off, "  - {id: h%u, url: \"tcp://10.1.%u.%u:7400\", pubkey: /p%u}\n",
                                        a, a / 250, a % 250 + 1, a);
        off += (size_t)snprintf(s + off, cap - off, "groups:\n  - name: fleet\n    members:\n");
        for (unsigned m = 0; m < members; m++)
                off += (size_t)snprintf(s + off, cap - off, "      - v%u@h%u\n", m, m % agents);
        assert_true(off < cap);
        return s;
}

static void test_coord_fleet_size(void **state)
{
        char path[PATH_MAX];
        struct cfg_coord *c = NULL;
        lserr err = { 0 };
        char *yaml = fleet_yaml(1000, 10000);

        (void)state;
        write_cfg(path, "fleet.yaml", yaml);
        free(yaml);
        if (cfg_coord_load(path, &c, &err) < 0)
                fail_msg("%s", err.msg);
        assert_int_equal(c->n_agents, 1000);
        assert_int_equal(c->groups[0].n_members, 10000);
        c = cfg_coord_free(c);

        yaml = fleet_yaml(1000, 10001);
        write_cfg(path, "fleet-over.yaml", yaml);
        free(yaml);
        assert_int_equal(cfg_coord_load(path, &c, &err), LS_ECONFIG);
        assert_null(c);
        assert_non_null(strstr(err.msg, "at most 10000"));
}

/* /metrics: loopback hosts as written, no host is 127.0.0.1, another address only
 * with metrics_public. */
static void test_coord_metrics(void **state)
{
        static const struct {
                const char *metrics, *public_, *want;
        } ok[] = {
                {"http://127.0.0.1:9464", NULL, "http://127.0.0.1:9464"},
                {"http://:9464", NULL, "http://127.0.0.1:9464"},
                {"http://localhost:9464", NULL, "http://localhost:9464"},
                {"http://[::1]:9464", NULL, "http://[::1]:9464"},
                {"http://127.9.9.9:9464", NULL, "http://127.9.9.9:9464"},
                {"http://10.0.0.5:9464", "true", "http://10.0.0.5:9464"},
                {"http://0.0.0.0:9464", "yes", "http://0.0.0.0:9464"},
        };
        char path[PATH_MAX], *text;
        struct cfg_coord *c = NULL;
        lserr err = { 0 };

        (void)state;
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                assert_true(asprintf(&text,
                                     "control: ipc:///run/lockstep/control.sock\nkey: /k\ncatalog: /c\n"
                                     "metrics: \"%s\"\n%s%s%s"
                                     "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n",
                                     ok[i].metrics, ok[i].public_ ? "metrics_public: " : "",
                                     ok[i].public_ ? ok[i].public_ : "", ok[i].public_ ? "\n" : "") > 0);
                write_cfg(path, "coord-metrics.yaml", text);
                free(text);
                if (cfg_coord_load(path, &c, &err) < 0)
                        fail_msg("%s: %s", ok[i].metrics, err.msg);
                assert_string_equal(c->metrics, ok[i].want);
                assert_int_equal(c->metrics_public, ok[i].public_ != NULL);
                c = cfg_coord_free(c);
        }
}

static void test_coord_no_groups(void **state)
{
        char path[PATH_MAX];
        struct cfg_coord *c = NULL;
        lserr err = { 0 };

        (void)state;
        /* Groups may come from libvirt metadata instead. */
        write_cfg(path, "coord-nogroups.yaml",
                  "control: ipc:///run/lockstep/control.sock\n"
                  "key: /k\n"
                  "catalog: /c\n"
                  "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n");
        assert_int_equal(cfg_coord_load(path, &c, &err), 0);
        assert_int_equal(c->n_groups, 0);
        assert_null(c->groups);
        assert_null(cfg_coord_group(c, "x"));
        c = cfg_coord_free(c);

        write_cfg(path, "coord-emptygroups.yaml",
                  "control: ipc:///run/lockstep/control.sock\n"
                  "key: /k\n"
                  "catalog: /c\n"
                  "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n"
                  "groups: []\n");
        assert_int_equal(cfg_coord_load(path, &c, &err), 0);
        assert_int_equal(c->n_groups, 0);
        c = cfg_coord_free(c);

        write_cfg(path, "coord-nullgroups.yaml",
                  "control: ipc:///run/lockstep/control.sock\n"
                  "key: /k\n"
                  "catalog: /c\n"
                  "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n"
                  "groups:\n");
        if (cfg_coord_load(path, &c, &err) < 0)
                fail_msg("%s", err.msg);
        assert_int_equal(c->n_groups, 0);
        c = cfg_coord_free(c);

        /* Any empty value is no groups, quoted or not. */
        write_cfg(path, "coord-quotedgroups.yaml",
                  "control: ipc:///run/lockstep/control.sock\n"
                  "key: /k\n"
                  "catalog: /c\n"
                  "agents: [{id: host-a, url: tcp://10.77.0.2:7400, pubkey: /a.pub}]\n"
                  "groups: \"\"\n");
        if (cfg_coord_load(path, &c, &err) < 0)
                fail_msg("%s", err.msg);
        assert_int_equal(c->n_groups, 0);
        cfg_coord_free(c);
}

static void test_examples(void **state)
{
        char path[PATH_MAX];
        struct cfg_agent *a = NULL;
        struct cfg_coord *c = NULL;
        lserr err = { 0 };

        (void)state;
        source_path(path, "deploy/config/agent.yaml");
        if (cfg_agent_load(path, &a, &err) < 0)
                fail_msg("%s", err.msg);
        assert_string_equal(a->id, "host-a");
        assert_int_equal(a->authorized[0].roles, CFG_ROLE_SNAPSHOT | CFG_ROLE_REVERT | CFG_ROLE_DELETE | CFG_ROLE_ADMIN);
        assert_non_null(agent_hooks_find(a->vms, a->n_vms, "web1", "flush"));
        cfg_agent_free(a);

        source_path(path, "deploy/config/coordinator.yaml");
        if (cfg_coord_load(path, &c, &err) < 0)
                fail_msg("%s", err.msg);
        assert_int_equal(c->n_agents, 2);
        assert_int_equal(c->n_groups, 2);
        assert_int_equal(cfg_coord_group(c, "shop")->n_tiers, 3);
        assert_string_equal(cfg_coord_group(c, "shop")->hook, "flush");
        assert_null(cfg_coord_group(c, "solo")->hook);
        assert_int_equal(cfg_coord_group(c, "solo")->n_members, 1);
        cfg_coord_free(c);
}

/* A config that group or other can write, or that another user owns, is refused
 * with its path: it names the keys the daemon trusts and the hooks it runs. */
static void test_mode_and_owner(void **state)
{
        static const int bad[] = {0664, 0646, 0666, 0620, 0602};
        char a[PATH_MAX], c[PATH_MAX];
        struct cfg_agent *ca = NULL;
        struct cfg_coord *cc = NULL;
        lserr err = { 0 };

        (void)state;
        write_cfg(a, "mode-agent.yaml", AGENT_MIN);
        write_cfg(c, "mode-coord.yaml", COORD_MIN);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(chmod(a, (mode_t)bad[i]), 0);
                assert_int_equal(chmod(c, (mode_t)bad[i]), 0);
                lserr_clear(&err);
                assert_int_equal(cfg_agent_load(a, &ca, &err), LS_ECONFIG);
                assert_null(ca);
                assert_non_null(strstr(err.msg, a));
                assert_non_null(strstr(err.msg, "lets group or other write it; fix with: chmod go-w"));
                lserr_clear(&err);
                assert_int_equal(cfg_coord_load(c, &cc, &err), LS_ECONFIG);
                assert_null(cc);
                assert_non_null(strstr(err.msg, c));
        }
        /* Readable by all is fine: a config holds no secret, only the key's path. */
        assert_int_equal(chmod(a, 0644), 0);
        assert_int_equal(chmod(c, 0444), 0);
        if (cfg_agent_load(a, &ca, &err) < 0 || cfg_coord_load(c, &cc, &err) < 0)
                fail_msg("%s", err.msg);
        ca = cfg_agent_free(ca);
        cc = cfg_coord_free(cc);
        if (geteuid() == 0) {
                assert_int_equal(chown(a, 65534, 65534), 0);
                lserr_clear(&err);
                assert_int_equal(cfg_agent_load(a, &ca, &err), LS_ECONFIG);
                assert_null(ca);
                assert_non_null(strstr(err.msg, a));
                assert_non_null(strstr(err.msg, "owned by uid 65534"));
        }
}

static void test_missing_file(void **state)
{
        char path[PATH_MAX], want[PATH_MAX + 100];
        struct cfg_agent *c = NULL;
        lserr err = { 0 };

        (void)state;
        tmp_path(path, "does-not-exist.yaml");
        assert_int_equal(cfg_agent_load(path, &c, &err), -ENOENT);
        assert_int_equal(err.code, -ENOENT);
        assert_null(c);
        snprintf(want, sizeof(want), "%s: cannot open: %s", path, strerror(ENOENT));
        assert_string_equal(err.msg, want);

        /* No error buffer: still refused. */
        assert_int_equal(cfg_agent_load(path, &c, NULL), -ENOENT);
}

static void test_directory(void **state)
{
        struct cfg_coord *c = NULL;
        lserr err = { 0 };

        (void)state;
        assert_int_equal(cfg_coord_load(tmpdir, &c, &err), -EISDIR);
        assert_null(c);
        assert_non_null(strstr(err.msg, tmpdir));
        assert_non_null(strstr(err.msg, strerror(EISDIR)));
}

/* A file of exactly 1 MiB loads; one byte more is refused before parsing. */
static void test_size_limit(void **state)
{
        const size_t limit = 1024 * 1024;
        char path[PATH_MAX];
        struct cfg_agent *c = NULL;
        lserr err = { 0 };
        char *text;
        size_t head = strlen(AGENT_MIN);

        (void)state;
        text = malloc(limit + 2);
        assert_non_null(text);
        memcpy(text, AGENT_MIN, head);
        memset(text + head, '#', limit - head);
        text[limit - 1] = '\n';
        text[limit] = '\0';
        write_cfg(path, "exactly-1mib.yaml", text);
        if (cfg_agent_load(path, &c, &err) < 0)
                fail_msg("%s", err.msg);
        c = cfg_agent_free(c);

        text[limit - 1] = '#';
        text[limit] = '\n';
        text[limit + 1] = '\0';
        write_cfg(path, "over-1mib.yaml", text);
        assert_int_equal(cfg_agent_load(path, &c, &err), LS_ECONFIG);
        assert_null(c);
        assert_non_null(strstr(err.msg, path));
        assert_non_null(strstr(err.msg, "1048577 bytes, more than the 1 MiB"));
        free(text);
}

static void test_names(void **state)
{
        (void)state;
        assert_string_equal(cfg_role_name(CFG_ROLE_SNAPSHOT), "snapshot");
        assert_string_equal(cfg_role_name(CFG_ROLE_REVERT), "revert");
        assert_string_equal(cfg_role_name(CFG_ROLE_DELETE), "delete");
        assert_string_equal(cfg_role_name(CFG_ROLE_ADMIN), "admin");
        assert_null(cfg_role_name(CFG_ROLE_SNAPSHOT | CFG_ROLE_ADMIN));
        assert_string_equal(cfg_mode_name(CFG_MODE_QUIESCE), "quiesce");
        assert_string_equal(cfg_mode_name(CFG_MODE_PAUSE), "pause");
        assert_string_equal(cfg_mode_name(CFG_MODE_MEMORY), "memory");
        assert_null(cfg_mode_name((enum cfg_mode)7));
        assert_null(cfg_agent_free(NULL));
        assert_null(cfg_coord_free(NULL));
        assert_null(cfg_coord_group(NULL, "x"));
        assert_null(cfg_coord_agent(NULL, "x"));
}

int main(void)
{
        static const struct CMUnitTest fixed[] = {
                cmocka_unit_test(test_agent_full),
                cmocka_unit_test(test_agent_tls_key),
                cmocka_unit_test(test_coord_tls),
                cmocka_unit_test(test_coord_ha),
                cmocka_unit_test(test_agent_defaults),
                cmocka_unit_test(test_agent_sim),
                cmocka_unit_test(test_coord_full),
                cmocka_unit_test(test_coord_defaults),
                cmocka_unit_test(test_coord_no_groups),
                cmocka_unit_test(test_coord_metrics),
                cmocka_unit_test(test_coord_fleet_size),
                cmocka_unit_test(test_examples),
                cmocka_unit_test(test_missing_file),
                cmocka_unit_test(test_mode_and_owner),
                cmocka_unit_test(test_directory),
                cmocka_unit_test(test_size_limit),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_refusal_whole_message),
                cmocka_unit_test(test_refusal_unknown_key_whole),
                cmocka_unit_test(test_refusal_too_many_tiers),
                cmocka_unit_test(test_refusal_long_string),
        };
        const size_t n_fixed = sizeof(fixed) / sizeof(fixed[0]);
        const size_t n_ref = sizeof(refusals) / sizeof(refusals[0]);
        struct CMUnitTest *tests;
        int r;

        /* One test per refusal case, so each failure is reported by its name. */
        tests = calloc(n_fixed + n_ref, sizeof(*tests));
        if (!tests)
                return 1;
        memcpy(tests, fixed, sizeof(fixed));
        for (size_t i = 0; i < n_ref; i++)
                tests[n_fixed + i] = (struct CMUnitTest){
                        .name = refusals[i].name,
                        .test_func = test_refusal,
                        .initial_state = (void *)&refusals[i],
                };
        r = _cmocka_run_group_tests("config", tests, n_fixed + n_ref, group_setup, group_teardown);
        free(tests);
        return r;
}
