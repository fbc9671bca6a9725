/* catalog: the coordinator's durable state in one SQLite file, opened in WAL mode
 * with synchronous=FULL so a logged decision survives a crash the moment it returns. */
#include "catalog.h"

#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

/* Long enough to ride out another process's checkpoint or a short write burst,
 * short enough that a stuck lock shows up as an error rather than a hang. */
#define BUSY_TIMEOUT_MS 5000

/* Not an SQLite result code: a row holds a value this program cannot decode. */
#define RC_BADROW (-1)

#define ID_FIELD sizeof(((struct cat_txn *)0)->txid)
#define MODE_FIELD sizeof(((struct cat_txn *)0)->mode)
#define REASON_FIELD sizeof(((struct cat_txn *)0)->reason)

struct catalog {
        /* One connection, used by one thread at a time: SQLite's own mutexes are
         * not enough because sqlite3_errmsg must be read before anyone else runs. */
        pthread_mutex_t lock;
        sqlite3 *db;
        char *path;
};

/* Migration i brings the schema from version i to i + 1; each runs in its own
 * transaction together with the row that records it. Never edit a shipped one:
 * add the next. Enumerations are stored as words so the file reads well in the
 * sqlite3 shell and survives a renumbering of the C enums. */
static const char *const migrations[] = {
        "CREATE TABLE schema_version (\n"
        "        version INTEGER PRIMARY KEY,\n"
        "        applied_us INTEGER NOT NULL\n"
        ");\n"
        "CREATE TABLE txns (\n"
        "        txid TEXT PRIMARY KEY NOT NULL,\n"
        "        kind TEXT NOT NULL CHECK (kind IN ('snapshot', 'revert', 'delete')),\n"
        "        group_name TEXT NOT NULL,\n"
        "        name TEXT NOT NULL,\n"
        "        mode TEXT NOT NULL,\n"
        "        state TEXT NOT NULL CHECK (state IN ('started', 'commit', 'abort', 'done')),\n"
        "        committed INTEGER,\n"
        "        reason TEXT NOT NULL DEFAULT '',\n"
        "        started_us INTEGER NOT NULL,\n"
        "        decided_us INTEGER NOT NULL DEFAULT 0,\n"
        "        finished_us INTEGER NOT NULL DEFAULT 0,\n"
        "        lease_ms INTEGER NOT NULL,\n"
        "        CHECK (CASE state WHEN 'started' THEN committed IS NULL\n"
        "                          WHEN 'commit' THEN committed = 1\n"
        "                          WHEN 'abort' THEN committed = 0\n"
        "                          ELSE committed IN (0, 1) END)\n"
        ");\n"
        "CREATE INDEX txns_unresolved ON txns (started_us) WHERE state <> 'done';\n"
        "CREATE INDEX txns_cuts ON txns (group_name, started_us) WHERE kind = 'snapshot';\n"
        "CREATE TABLE members (\n"
        "        txid TEXT NOT NULL REFERENCES txns (txid) ON DELETE CASCADE,\n"
        "        agent TEXT NOT NULL,\n"
        "        vm TEXT NOT NULL,\n"
        "        tier INTEGER NOT NULL,\n"
        "        tier_name TEXT NOT NULL,\n"
        "        code INTEGER NOT NULL,\n"
        "        message TEXT NOT NULL,\n"
        "        freeze_us INTEGER NOT NULL,\n"
        "        snapshot_us INTEGER NOT NULL,\n"
        "        thaw_us INTEGER NOT NULL,\n"
        "        frozen_for_us INTEGER NOT NULL,\n"
        "        frozen_at_us INTEGER NOT NULL,\n"
        "        thawed_at_us INTEGER NOT NULL,\n"
        "        PRIMARY KEY (txid, agent, vm)\n"
        ");\n"
        "CREATE TABLE images (\n"
        "        txid TEXT NOT NULL REFERENCES txns (txid) ON DELETE CASCADE,\n"
        "        agent TEXT NOT NULL,\n"
        "        vm TEXT NOT NULL,\n"
        "        disk TEXT NOT NULL,\n"
        "        before TEXT NOT NULL,\n"
        "        after TEXT NOT NULL,\n"
        "        PRIMARY KEY (txid, agent, vm, disk)\n"
        ");\n"
        "CREATE TABLE agents (\n"
        "        id TEXT PRIMARY KEY NOT NULL,\n"
        "        url TEXT NOT NULL,\n"
        "        fingerprint TEXT NOT NULL,\n"
        "        version TEXT NOT NULL,\n"
        "        reachable INTEGER NOT NULL,\n"
        "        last_error TEXT NOT NULL,\n"
        "        last_seen_us INTEGER NOT NULL,\n"
        "        checked_us INTEGER NOT NULL,\n"
        "        in_doubt INTEGER NOT NULL\n"
        ");\n"
        "CREATE TABLE groups (\n"
        "        name TEXT PRIMARY KEY NOT NULL,\n"
        "        mode TEXT NOT NULL,\n"
        "        updated_us INTEGER NOT NULL\n"
        ");\n"
        "CREATE TABLE group_members (\n"
        "        group_name TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE,\n"
        "        position INTEGER NOT NULL,\n"
        "        member TEXT NOT NULL,\n"
        "        PRIMARY KEY (group_name, position),\n"
        "        UNIQUE (group_name, member)\n"
        ");\n"
        "CREATE TABLE audit (\n"
        "        id INTEGER PRIMARY KEY,\n"
        "        at_us INTEGER NOT NULL,\n"
        "        txid TEXT NOT NULL,\n"
        "        agent TEXT NOT NULL,\n"
        "        step TEXT NOT NULL,\n"
        "        dir TEXT NOT NULL CHECK (dir IN ('sent', 'received', 'ignored')),\n"
        "        code INTEGER NOT NULL,\n"
        "        detail TEXT NOT NULL,\n"
        "        hash_hex TEXT NOT NULL\n"
        ");\n"
        "CREATE INDEX audit_txid ON audit (txid, at_us);\n",
        /* 2: what became of a cut after it was taken (deleted, delete-failed). */
        "ALTER TABLE txns ADD COLUMN cut_status TEXT NOT NULL DEFAULT ''\n"
        "        CHECK (cut_status IN ('', 'deleted', 'delete-failed'));\n"
        "ALTER TABLE txns ADD COLUMN cut_status_reason TEXT NOT NULL DEFAULT '';\n",
        /* 3: the daemon's event log, and each schedule's last run (so a
         * restart knows what it missed). */
        "CREATE TABLE events (\n"
        "        id INTEGER PRIMARY KEY,\n"
        "        at_us INTEGER NOT NULL,\n"
        "        kind TEXT NOT NULL,\n"
        "        group_name TEXT NOT NULL,\n"
        "        txid TEXT NOT NULL,\n"
        "        message TEXT NOT NULL\n"
        ");\n"
        "CREATE TABLE schedules (\n"
        "        group_name TEXT PRIMARY KEY NOT NULL,\n"
        "        last_due_s INTEGER NOT NULL,\n"
        "        last_run_us INTEGER NOT NULL,\n"
        "        outcome TEXT NOT NULL,\n"
        "        txid TEXT NOT NULL,\n"
        "        reason TEXT NOT NULL,\n"
        "        runs INTEGER NOT NULL,\n"
        "        skipped INTEGER NOT NULL\n"
        ");\n",
        /* 4: what became of a revert's pre-revert branch: kept (''), undone (the
         * VMs run on it again), deleted, delete-failed. */
        "ALTER TABLE txns ADD COLUMN branch_status TEXT NOT NULL DEFAULT ''\n"
        "        CHECK (branch_status IN ('', 'undone', 'deleted', 'delete-failed'));\n"
        "ALTER TABLE txns ADD COLUMN branch_reason TEXT NOT NULL DEFAULT '';\n"
        /* Deletes and branch deletes look cuts up by image. */
        "CREATE INDEX images_before ON images (agent, vm, before);\n",
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == CAT_SCHEMA_VERSION,
               "one migration per schema version");

static const char *const kind_words[] = {
        [CAT_KIND_SNAPSHOT] = "snapshot",
        [CAT_KIND_REVERT] = "revert",
        [CAT_KIND_DELETE] = "delete",
};

static const char *const state_words[] = {
        [CAT_TXN_STARTED] = "started",
        [CAT_TXN_COMMIT] = "commit",
        [CAT_TXN_ABORT] = "abort",
        [CAT_TXN_DONE] = "done",
};

static const char *const dir_words[] = {
        [CAT_SENT] = "sent",
        [CAT_RECEIVED] = "received",
        [CAT_IGNORED] = "ignored",
};

#define N_WORDS(a) (sizeof(a) / sizeof((a)[0]))

static long long now_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int word_index(const char *const *words, size_t n, const unsigned char *s)
{
        if (!s)
                return -1;
        for (size_t i = 0; i < n; i++)
                if (strcmp(words[i], (const char *)s) == 0)
                        return (int)i;
        return -1;
}

/* An identifier fits its field with its terminator, or is refused: a truncated
 * txid or VM name would silently name something else. */
static int id_fits(const char *s, size_t field, int may_be_empty)
{
        size_t n;

        if (!s)
                return 0;
        n = strnlen(s, field);
        return n < field && (may_be_empty || n > 0);
}

/* Free text (reasons, messages) is cut to what the field it is read back into
 * can hold, on a UTF-8 character boundary, so what is stored is what is shown. */
static size_t text_len(const char *s, size_t field)
{
        size_t n = strnlen(s, field);

        if (n < field)
                return n;
        n = field - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
                n--;
        return n;
}

static int rc_errno(int rc)
{
        if (rc == RC_BADROW)
                return -EIO;
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
                return -ENOENT;
        if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
                return -EEXIST;
        switch (rc & 0xff) {
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_CONSTRAINT:
        case SQLITE_TOOBIG:
        case SQLITE_RANGE:
        case SQLITE_MISMATCH:
                return -EINVAL;
        default:
                return -EIO;
        }
}

/* The words for a failure: SQLite's own message when it is about this rc (it
 * names the table or constraint), its generic text otherwise. */
static const char *why(const struct catalog *c, int rc)
{
        if (rc == RC_BADROW)
                return "a row holds a value this program does not know (file edited or written by a newer version?)";
        if (c->db && sqlite3_extended_errcode(c->db) == rc)
                return sqlite3_errmsg(c->db);
        return sqlite3_errstr(rc);
}

/* Bind helpers carry the first failure in *rc so a statement's bindings read
 * as a list and are checked once; text is bound without copying because every
 * statement is stepped and finalized before its caller returns. */
static void bind_text(sqlite3_stmt *st, int i, const char *s, size_t len, int *rc)
{
        if (*rc == SQLITE_OK)
                *rc = sqlite3_bind_text(st, i, s, (int)len, SQLITE_STATIC);
}

static void bind_id(sqlite3_stmt *st, int i, const char *s, int *rc)
{
        bind_text(st, i, s, strlen(s), rc);
}

static void bind_int(sqlite3_stmt *st, int i, long long v, int *rc)
{
        if (*rc == SQLITE_OK)
                *rc = sqlite3_bind_int64(st, i, v);
}

static void col_str(sqlite3_stmt *st, int i, char *dst, size_t size)
{
        const unsigned char *s = sqlite3_column_text(st, i);

        snprintf(dst, size, "%s", s ? (const char *)s : "");
}

typedef int (*row_fn)(sqlite3_stmt *st, void *row);

/* Steps st to its end, decoding each row into one growing array (NULL when
 * empty). Returns SQLITE_DONE, or the failure with nothing allocated. */
static int collect(sqlite3_stmt *st, size_t size, row_fn decode, void **ret, size_t *ret_n)
{
        char *v = NULL;
        size_t n = 0, cap = 0;
        int rc;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (n == cap) {
                        size_t ncap = cap ? 2 * cap : 8;
                        char *nv = reallocarray(v, ncap, size);

                        if (!nv) {
                                rc = SQLITE_NOMEM;
                                break;
                        }
                        v = nv;
                        cap = ncap;
                }
                memset(v + n * size, 0, size);
                if (decode(st, v + n * size) < 0) {
                        rc = RC_BADROW;
                        break;
                }
                n++;
        }
        if (rc != SQLITE_DONE) {
                free(v);
                return rc;
        }
        *ret = v;
        *ret_n = n;
        return rc;
}

/* Write transactions take the write lock up front: a deferred one that reads
 * first could not upgrade while another connection writes, and would fail
 * without waiting for the busy timeout. */
static int txn_begin(struct catalog *c)
{
        return sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
}

static int txn_commit(struct catalog *c)
{
        return sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
}

/* For cleanup paths: undoes whatever transaction a failure left open. */
static void txn_rollback(struct catalog *c)
{
        if (!sqlite3_get_autocommit(c->db))
                sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- opening --------------------------------------------------------------- */

/* Creates a missing file readable by its owner only (SQLite would use 0644 and
 * the audit says what was sent where) and makes its name durable. */
static int create_private(const char *path, lserr *err)
{
        char *copy = NULL;
        int fd, dfd = -1, r = 0;

        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
                if (errno == EEXIST)
                        return 0;
                return lserr_set(err, -errno, "catalog \"%s\": create: %m", path);
        }
        if (fsync(fd) < 0) {
                r = lserr_set(err, -errno, "catalog \"%s\": fsync: %m", path);
                goto out;
        }
        copy = strdup(path);
        if (!copy) {
                r = -ENOMEM;
                goto out;
        }
        dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) < 0)
                r = lserr_set(err, -errno, "catalog \"%s\": fsync of its directory: %m", path);
out:
        if (dfd >= 0)
                close(dfd);
        if (fd >= 0)
                close(fd);
        free(copy);
        return r;
}

static int pragma_text(struct catalog *c, const char *sql, char *ret, size_t size)
{
        sqlite3_stmt *st = NULL;
        int rc;

        rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                col_str(st, 0, ret, size);
                rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        return rc;
}

/* Reads the schema version inside the caller's transaction: 0 for an empty
 * file, -1 for a database that is not a catalog at all. */
static int schema_version(struct catalog *c, long long *ret)
{
        sqlite3_stmt *st = NULL;
        long long has_table, n_objects;
        int rc;

        rc = sqlite3_prepare_v2(c->db,
                                "SELECT (SELECT count(*) FROM sqlite_schema"
                                "        WHERE type = 'table' AND name = 'schema_version'),"
                                "       (SELECT count(*) FROM sqlite_schema)",
                                -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                goto out;
        has_table = sqlite3_column_int64(st, 0);
        n_objects = sqlite3_column_int64(st, 1);
        sqlite3_finalize(st);
        st = NULL;
        if (!has_table) {
                *ret = n_objects ? -1 : 0;
                rc = SQLITE_OK;
                goto out;
        }
        rc = sqlite3_prepare_v2(c->db, "SELECT coalesce(max(version), 0) FROM schema_version", -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                goto out;
        *ret = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
out:
        sqlite3_finalize(st);
        return rc;
}

/* Applies the missing migrations one transaction at a time. The version is read
 * under the write lock, so two processes opening a fresh file cannot both
 * migrate it. */
static int migrate(struct catalog *c, lserr *err)
{
        sqlite3_stmt *st = NULL;
        long long v = 0;
        int rc, r = 0;

        for (;;) {
                rc = txn_begin(c);
                if (rc != SQLITE_OK) {
                        r = lserr_set(err, rc_errno(rc), "catalog \"%s\": lock for migration: %s", c->path,
                                      why(c, rc));
                        goto out;
                }
                rc = schema_version(c, &v);
                if (rc != SQLITE_OK) {
                        r = lserr_set(err, rc_errno(rc), "catalog \"%s\": read schema version: %s", c->path,
                                      why(c, rc));
                        goto out;
                }
                if (v < 0) {
                        r = lserr_set(err, -EINVAL,
                                      "catalog \"%s\": an SQLite database without a schema_version table: "
                                      "not a lockstep catalog, refusing to touch it",
                                      c->path);
                        goto out;
                }
                if (v > CAT_SCHEMA_VERSION) {
                        r = lserr_set(err, -EINVAL,
                                      "catalog \"%s\": schema version %lld is newer than this program's %d: "
                                      "refusing to open it (upgrade lockstep)",
                                      c->path, v, CAT_SCHEMA_VERSION);
                        goto out;
                }
                if (v == CAT_SCHEMA_VERSION)
                        break;
                rc = sqlite3_exec(c->db, migrations[v], NULL, NULL, NULL);
                if (rc != SQLITE_OK) {
                        r = lserr_set(err, rc_errno(rc), "catalog \"%s\": migrate schema to version %lld: %s",
                                      c->path, v + 1, why(c, rc));
                        goto out;
                }
                rc = sqlite3_prepare_v2(c->db, "INSERT INTO schema_version (version, applied_us) VALUES (?1, ?2)",
                                        -1, &st, NULL);
                bind_int(st, 1, v + 1, &rc);
                bind_int(st, 2, now_us(), &rc);
                if (rc == SQLITE_OK)
                        rc = sqlite3_step(st);
                sqlite3_finalize(st);
                st = NULL;
                if (rc == SQLITE_DONE)
                        rc = txn_commit(c);
                if (rc != SQLITE_OK) {
                        r = lserr_set(err, rc_errno(rc), "catalog \"%s\": record schema version %lld: %s",
                                      c->path, v + 1, why(c, rc));
                        goto out;
                }
        }
        /* Nothing was written in this last transaction: ending it either way is fine. */
        rc = txn_commit(c);
        if (rc != SQLITE_OK)
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": end migration: %s", c->path, why(c, rc));
out:
        sqlite3_finalize(st);
        txn_rollback(c);
        return r;
}

int cat_open(const char *path, struct catalog **ret, lserr *err)
{
        struct catalog *c;
        char mode[16];
        long long fk;
        int rc, r;

        if (!path || !*path)
                return lserr_set(err, -EINVAL, "catalog: empty file name");
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        r = pthread_mutex_init(&c->lock, NULL);
        if (r != 0) {
                free(c);
                return lserr_set(err, -r, "catalog \"%s\": mutex: %s", path, strerror(r));
        }
        c->path = strdup(path);
        if (!c->path) {
                r = -ENOMEM;
                goto out;
        }
        r = create_private(path, err);
        if (r < 0)
                goto out;
        /* SQLITE_OPEN_NOMUTEX: c->lock already serializes every use. */
        rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": open: %s", path, why(c, rc));
                goto out;
        }
        sqlite3_extended_result_codes(c->db, 1);
        sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
        /* The first statement reads the file: a file that is not SQLite fails here. */
        rc = pragma_text(c, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
        if (rc != SQLITE_OK) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": set WAL journal mode: %s", path, why(c, rc));
                goto out;
        }
        if (strcmp(mode, "wal") != 0) {
                r = lserr_set(err, -EIO, "catalog \"%s\": set WAL journal mode: SQLite kept \"%s\"", path, mode);
                goto out;
        }
        /* FULL: in WAL mode every commit fsyncs the log, which is what makes a
         * decision durable before cat_txn_decide returns. */
        rc = sqlite3_exec(c->db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": set synchronous and foreign keys: %s", path,
                              why(c, rc));
                goto out;
        }
        /* A build without foreign key support accepts the pragma silently. */
        rc = pragma_text(c, "PRAGMA foreign_keys", mode, sizeof(mode));
        fk = rc == SQLITE_OK ? strtoll(mode, NULL, 10) : 0;
        if (fk != 1) {
                r = lserr_set(err, -EIO, "catalog \"%s\": foreign keys: this SQLite does not enforce them", path);
                goto out;
        }
        r = migrate(c, err);
        if (r < 0)
                goto out;
        *ret = c;
        c = NULL;
out:
        cat_close(c);
        return r;
}

struct catalog *cat_close(struct catalog *c)
{
        if (!c)
                return NULL;
        /* Every statement is finalized by the function that prepared it, so the
         * close is immediate; the WAL stays for the next open to check in. */
        sqlite3_close_v2(c->db);
        pthread_mutex_destroy(&c->lock);
        free(c->path);
        free(c);
        return NULL;
}

/* ---- transactions -------------------------------------------------------------- */

#define TXN_COLUMNS                                                                                                   \
        "txid, kind, group_name, name, mode, state, committed, reason, started_us, decided_us, finished_us, lease_ms, " \
        "cut_status, cut_status_reason, branch_status, branch_reason"

static int decode_txn(sqlite3_stmt *st, void *row)
{
        struct cat_txn *t = row;
        int kind = word_index(kind_words, N_WORDS(kind_words), sqlite3_column_text(st, 1));
        int state = word_index(state_words, N_WORDS(state_words), sqlite3_column_text(st, 5));

        if (kind < 0 || state < 0)
                return -EIO;
        col_str(st, 0, t->txid, sizeof(t->txid));
        t->kind = (enum cat_kind)kind;
        col_str(st, 2, t->group, sizeof(t->group));
        col_str(st, 3, t->name, sizeof(t->name));
        col_str(st, 4, t->mode, sizeof(t->mode));
        t->state = (enum cat_txn_state)state;
        t->committed = sqlite3_column_int(st, 6) != 0;
        col_str(st, 7, t->reason, sizeof(t->reason));
        t->started_us = sqlite3_column_int64(st, 8);
        t->decided_us = sqlite3_column_int64(st, 9);
        t->finished_us = sqlite3_column_int64(st, 10);
        t->lease_ms = (unsigned)sqlite3_column_int64(st, 11);
        col_str(st, 12, t->cut_status, sizeof(t->cut_status));
        col_str(st, 13, t->cut_status_reason, sizeof(t->cut_status_reason));
        col_str(st, 14, t->branch_status, sizeof(t->branch_status));
        col_str(st, 15, t->branch_reason, sizeof(t->branch_reason));
        return 0;
}

/* Reads only the identity (txid, kind, group, name, mode), started_us (0: now)
 * and lease_ms; the state is always STARTED. A txid already logged is -EEXIST. */
int cat_txn_begin(struct catalog *c, const struct cat_txn *t, lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        if (!id_fits(t->txid, sizeof(t->txid), 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": begin: transaction id empty or longer than %zu bytes",
                                 c->path, sizeof(t->txid) - 1);
        if ((unsigned)t->kind >= N_WORDS(kind_words))
                return lserr_set(err, -EINVAL, "catalog \"%s\": begin \"%s\": unknown kind %d", c->path, t->txid,
                                 (int)t->kind);
        if (!id_fits(t->group, sizeof(t->group), 1) || !id_fits(t->name, sizeof(t->name), 1) ||
            !id_fits(t->mode, sizeof(t->mode), 1))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": begin \"%s\": group, name or mode longer than its field", c->path,
                                 t->txid);
        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "INSERT INTO txns (txid, kind, group_name, name, mode, state, started_us, lease_ms)"
                                " VALUES (?1, ?2, ?3, ?4, ?5, 'started', ?6, ?7)",
                                -1, &st, NULL);
        bind_id(st, 1, t->txid, &rc);
        bind_id(st, 2, kind_words[t->kind], &rc);
        bind_id(st, 3, t->group, &rc);
        bind_id(st, 4, t->name, &rc);
        bind_id(st, 5, t->mode, &rc);
        bind_int(st, 6, t->started_us ? t->started_us : now_us(), &rc);
        bind_int(st, 7, t->lease_ms, &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
                r = lserr_set(err, -EEXIST, "catalog \"%s\": begin \"%s\": transaction already logged", c->path,
                              t->txid);
                goto out;
        }
        if (rc != SQLITE_DONE) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": begin \"%s\": %s", c->path, t->txid, why(c, rc));
                goto out;
        }
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* Reads state and decision of txid inside the caller's transaction. */
static int txn_state(struct catalog *c, const char *txid, int *ret_state, int *ret_committed)
{
        sqlite3_stmt *st = NULL;
        int rc;

        rc = sqlite3_prepare_v2(c->db, "SELECT state, committed FROM txns WHERE txid = ?1", -1, &st, NULL);
        bind_id(st, 1, txid, &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                *ret_state = word_index(state_words, N_WORDS(state_words), sqlite3_column_text(st, 0));
                *ret_committed = sqlite3_column_int(st, 1) != 0;
                rc = *ret_state < 0 ? RC_BADROW : SQLITE_OK;
        }
        sqlite3_finalize(st);
        return rc;
}

/* reason is kept for an abort only (NULL is ""), cut to the field's size. A
 * repeated decision keeps the first one's reason and time. */
int cat_txn_decide(struct catalog *c, const char *txid, int commit, const char *reason, lserr *err)
{
        const char *want = commit ? "commit" : "abort";
        sqlite3_stmt *st = NULL;
        int rc, r = 0, state = -1, committed = 0;

        if (!id_fits(txid, ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": decide: transaction id empty or longer than %zu bytes",
                                 c->path, ID_FIELD - 1);
        if (commit || !reason)
                reason = "";
        pthread_mutex_lock(&c->lock);
        rc = txn_begin(c);
        if (rc != SQLITE_OK) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": decide \"%s\": take the write lock: %s", c->path,
                              txid, why(c, rc));
                goto out;
        }
        rc = txn_state(c, txid, &state, &committed);
        if (rc == SQLITE_DONE) {
                r = lserr_set(err, -ENOENT, "catalog \"%s\": decide \"%s\": no such transaction", c->path, txid);
                goto out;
        }
        if (rc != SQLITE_OK) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": decide \"%s\": read state: %s", c->path, txid,
                              why(c, rc));
                goto out;
        }
        if (state != CAT_TXN_STARTED) {
                /* Already decided (maybe even finished): the same answer again is
                 * a retry, the other answer would break atomicity. */
                if (committed != !!commit)
                        r = lserr_set(err, -EBUSY, "catalog \"%s\": decide \"%s\": already decided %s, refusing %s",
                                      c->path, txid, committed ? "commit" : "abort", want);
                goto out;
        }
        rc = sqlite3_prepare_v2(c->db,
                                "UPDATE txns SET state = ?2, committed = ?3, reason = ?4, decided_us = ?5"
                                " WHERE txid = ?1",
                                -1, &st, NULL);
        bind_id(st, 1, txid, &rc);
        bind_id(st, 2, want, &rc);
        bind_int(st, 3, !!commit, &rc);
        bind_text(st, 4, reason, text_len(reason, REASON_FIELD), &rc);
        bind_int(st, 5, now_us(), &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                rc = txn_commit(c);
        if (rc != SQLITE_OK) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": decide \"%s\": log %s: %s", c->path, txid, want,
                              why(c, rc));
                goto out;
        }
out:
        sqlite3_finalize(st);
        txn_rollback(c);
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* Undecided transactions are refused with -EBUSY: the decision must be logged
 * before agents can have answered it. */
int cat_txn_finish(struct catalog *c, const char *txid, lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0, state = -1, committed = 0;

        if (!id_fits(txid, ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": finish: transaction id empty or longer than %zu bytes",
                                 c->path, ID_FIELD - 1);
        pthread_mutex_lock(&c->lock);
        rc = txn_begin(c);
        if (rc != SQLITE_OK) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": finish \"%s\": take the write lock: %s", c->path,
                              txid, why(c, rc));
                goto out;
        }
        rc = txn_state(c, txid, &state, &committed);
        if (rc == SQLITE_DONE) {
                r = lserr_set(err, -ENOENT, "catalog \"%s\": finish \"%s\": no such transaction", c->path, txid);
                goto out;
        }
        if (rc != SQLITE_OK) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": finish \"%s\": read state: %s", c->path, txid,
                              why(c, rc));
                goto out;
        }
        if (state == CAT_TXN_DONE)
                goto out;
        if (state == CAT_TXN_STARTED) {
                r = lserr_set(err, -EBUSY, "catalog \"%s\": finish \"%s\": no decision logged yet", c->path, txid);
                goto out;
        }
        rc = sqlite3_prepare_v2(c->db, "UPDATE txns SET state = 'done', finished_us = ?2 WHERE txid = ?1", -1, &st,
                                NULL);
        bind_id(st, 1, txid, &rc);
        bind_int(st, 2, now_us(), &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                rc = txn_commit(c);
        if (rc != SQLITE_OK) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": finish \"%s\": %s", c->path, txid, why(c, rc));
                goto out;
        }
out:
        sqlite3_finalize(st);
        txn_rollback(c);
        pthread_mutex_unlock(&c->lock);
        return r;
}

int cat_txn_get(struct catalog *c, const char *txid, struct cat_txn *ret, lserr *err)
{
        sqlite3_stmt *st = NULL;
        struct cat_txn t = {0};
        int rc, r = 0;

        if (!id_fits(txid, ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": get: transaction id empty or longer than %zu bytes",
                                 c->path, ID_FIELD - 1);
        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db, "SELECT " TXN_COLUMNS " FROM txns WHERE txid = ?1", -1, &st, NULL);
        bind_id(st, 1, txid, &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
                r = lserr_set(err, -ENOENT, "catalog \"%s\": get \"%s\": no such transaction", c->path, txid);
                goto out;
        }
        if (rc == SQLITE_ROW && decode_txn(st, &t) < 0)
                rc = RC_BADROW;
        if (rc != SQLITE_ROW) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": get \"%s\": %s", c->path, txid, why(c, rc));
                goto out;
        }
        *ret = t;
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

int cat_reverts_since(struct catalog *c, const char *cut_txid, long long since_us, char ret_txid[65], lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        if (!id_fits(cut_txid, ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": reverts: transaction id empty or too long", c->path);
        pthread_mutex_lock(&c->lock);
        /* By member, not by group: groups may share VMs, and a revert of any
         * group that holds one of this cut's VMs branched that VM's chain. */
        rc = sqlite3_prepare_v2(c->db,
                                "SELECT t.txid, count(*) OVER () FROM txns t WHERE t.kind = 'revert'"
                                " AND t.committed = 1 AND t.started_us > ?2"
                                " AND t.branch_status IN ('', 'delete-failed') AND EXISTS ("
                                "  SELECT 1 FROM members rm JOIN members cm ON rm.vm = cm.vm AND rm.agent = cm.agent"
                                "  WHERE rm.txid = t.txid AND cm.txid = ?1)"
                                " ORDER BY t.started_us DESC LIMIT 1",
                                -1, &st, NULL);
        bind_id(st, 1, cut_txid, &rc);
        bind_int(st, 2, since_us, &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                snprintf(ret_txid, 65, "%s", (const char *)sqlite3_column_text(st, 0));
                r = sqlite3_column_int(st, 1);
        } else if (rc == SQLITE_DONE) {
                ret_txid[0] = '\0';
        } else {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": reverts after \"%s\": %s", c->path, cut_txid,
                              why(c, rc));
        }
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

int cat_txn_unresolved(struct catalog *c, struct cat_txn **ret, size_t *ret_n, lserr *err)
{
        sqlite3_stmt *st = NULL;
        void *v = NULL;
        size_t n = 0;
        int rc, r = 0;

        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "SELECT " TXN_COLUMNS " FROM txns WHERE state <> 'done' ORDER BY started_us, rowid",
                                -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = collect(st, sizeof(struct cat_txn), decode_txn, &v, &n);
        if (rc != SQLITE_DONE) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": list unresolved transactions: %s", c->path,
                              why(c, rc));
                goto out;
        }
        *ret = v;
        *ret_n = n;
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

int cat_cuts(struct catalog *c, const char *group, struct cat_txn **ret, size_t *ret_n, lserr *err)
{
        sqlite3_stmt *st = NULL;
        void *v = NULL;
        size_t n = 0;
        int rc, r = 0;

        if (group && !id_fits(group, ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": list cuts: group name empty or longer than %zu bytes",
                                 c->path, ID_FIELD - 1);
        pthread_mutex_lock(&c->lock);
        if (group) {
                rc = sqlite3_prepare_v2(c->db,
                                        "SELECT " TXN_COLUMNS " FROM txns WHERE kind IN ('snapshot', 'revert') AND group_name = ?1"
                                        " ORDER BY started_us DESC, rowid DESC",
                                        -1, &st, NULL);
                bind_id(st, 1, group, &rc);
        } else {
                rc = sqlite3_prepare_v2(c->db,
                                        "SELECT " TXN_COLUMNS " FROM txns WHERE kind IN ('snapshot', 'revert')"
                                        " ORDER BY started_us DESC, rowid DESC",
                                        -1, &st, NULL);
        }
        if (rc == SQLITE_OK)
                rc = collect(st, sizeof(struct cat_txn), decode_txn, &v, &n);
        if (rc != SQLITE_DONE) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": list cuts of \"%s\": %s", c->path,
                              group ? group : "*", why(c, rc));
                goto out;
        }
        *ret = v;
        *ret_n = n;
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* ---- cut contents ---------------------------------------------------------------- */

int cat_put_member(struct catalog *c, const char *txid, const struct cat_member *m, lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        if (!id_fits(txid, ID_FIELD, 0))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": record member: transaction id empty or longer than %zu bytes",
                                 c->path, ID_FIELD - 1);
        if (!id_fits(m->agent, sizeof(m->agent), 0) || !id_fits(m->vm, sizeof(m->vm), 0) ||
            !id_fits(m->tier_name, sizeof(m->tier_name), 1))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": record member of \"%s\": agent or VM empty, or agent, VM or tier "
                                 "name longer than its field",
                                 c->path, txid);
        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "INSERT INTO members (txid, agent, vm, tier, tier_name, code, message, freeze_us,"
                                "        snapshot_us, thaw_us, frozen_for_us, frozen_at_us, thawed_at_us)"
                                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                                " ON CONFLICT (txid, agent, vm) DO UPDATE SET tier = excluded.tier,"
                                "        tier_name = excluded.tier_name, code = excluded.code,"
                                "        message = excluded.message, freeze_us = excluded.freeze_us,"
                                "        snapshot_us = excluded.snapshot_us, thaw_us = excluded.thaw_us,"
                                "        frozen_for_us = excluded.frozen_for_us, frozen_at_us = excluded.frozen_at_us,"
                                "        thawed_at_us = excluded.thawed_at_us",
                                -1, &st, NULL);
        bind_id(st, 1, txid, &rc);
        bind_id(st, 2, m->agent, &rc);
        bind_id(st, 3, m->vm, &rc);
        bind_int(st, 4, m->tier, &rc);
        bind_id(st, 5, m->tier_name, &rc);
        bind_int(st, 6, m->code, &rc);
        bind_text(st, 7, m->message, text_len(m->message, sizeof(m->message)), &rc);
        /* Durations are stored as SQLite's signed 64 bits and come back bit for bit. */
        bind_int(st, 8, (long long)m->freeze_us, &rc);
        bind_int(st, 9, (long long)m->snapshot_us, &rc);
        bind_int(st, 10, (long long)m->thaw_us, &rc);
        bind_int(st, 11, (long long)m->frozen_for_us, &rc);
        bind_int(st, 12, m->frozen_at_us, &rc);
        bind_int(st, 13, m->thawed_at_us, &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
                r = lserr_set(err, -ENOENT, "catalog \"%s\": record member \"%s@%s\" of \"%s\": no such transaction",
                              c->path, m->vm, m->agent, txid);
                goto out;
        }
        if (rc != SQLITE_DONE) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": record member \"%s@%s\" of \"%s\": %s", c->path,
                              m->vm, m->agent, txid, why(c, rc));
                goto out;
        }
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

int cat_put_image(struct catalog *c, const char *txid, const struct cat_image *im, lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        if (!id_fits(txid, ID_FIELD, 0))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": record image: transaction id empty or longer than %zu bytes", c->path,
                                 ID_FIELD - 1);
        if (!id_fits(im->agent, sizeof(im->agent), 0) || !id_fits(im->vm, sizeof(im->vm), 0) ||
            !id_fits(im->disk, sizeof(im->disk), 0) || !id_fits(im->before, sizeof(im->before), 1) ||
            !id_fits(im->after, sizeof(im->after), 1))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": record image of \"%s\": agent, VM or disk empty, or a name or "
                                 "path longer than its field",
                                 c->path, txid);
        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "INSERT INTO images (txid, agent, vm, disk, before, after)"
                                " VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                                " ON CONFLICT (txid, agent, vm, disk) DO UPDATE SET before = excluded.before,"
                                "        after = excluded.after",
                                -1, &st, NULL);
        bind_id(st, 1, txid, &rc);
        bind_id(st, 2, im->agent, &rc);
        bind_id(st, 3, im->vm, &rc);
        bind_id(st, 4, im->disk, &rc);
        bind_id(st, 5, im->before, &rc);
        bind_id(st, 6, im->after, &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
                r = lserr_set(err, -ENOENT,
                              "catalog \"%s\": record image \"%s\" of \"%s@%s\" in \"%s\": no such transaction",
                              c->path, im->disk, im->vm, im->agent, txid);
                goto out;
        }
        if (rc != SQLITE_DONE) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": record image \"%s\" of \"%s@%s\" in \"%s\": %s",
                              c->path, im->disk, im->vm, im->agent, txid, why(c, rc));
                goto out;
        }
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

static int decode_member(sqlite3_stmt *st, void *row)
{
        struct cat_member *m = row;

        col_str(st, 0, m->agent, sizeof(m->agent));
        col_str(st, 1, m->vm, sizeof(m->vm));
        m->tier = (unsigned)sqlite3_column_int64(st, 2);
        col_str(st, 3, m->tier_name, sizeof(m->tier_name));
        m->code = sqlite3_column_int(st, 4);
        col_str(st, 5, m->message, sizeof(m->message));
        m->freeze_us = (uint64_t)sqlite3_column_int64(st, 6);
        m->snapshot_us = (uint64_t)sqlite3_column_int64(st, 7);
        m->thaw_us = (uint64_t)sqlite3_column_int64(st, 8);
        m->frozen_for_us = (uint64_t)sqlite3_column_int64(st, 9);
        m->frozen_at_us = sqlite3_column_int64(st, 10);
        m->thawed_at_us = sqlite3_column_int64(st, 11);
        return 0;
}

/* In freeze order (tier), then by agent and VM. An unknown txid is an empty list. */
int cat_members(struct catalog *c, const char *txid, struct cat_member **ret, size_t *ret_n, lserr *err)
{
        sqlite3_stmt *st = NULL;
        void *v = NULL;
        size_t n = 0;
        int rc, r = 0;

        if (!id_fits(txid, ID_FIELD, 0))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": list members: transaction id empty or longer than %zu bytes",
                                 c->path, ID_FIELD - 1);
        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "SELECT agent, vm, tier, tier_name, code, message, freeze_us, snapshot_us, thaw_us,"
                                "       frozen_for_us, frozen_at_us, thawed_at_us"
                                " FROM members WHERE txid = ?1 ORDER BY tier, agent, vm",
                                -1, &st, NULL);
        bind_id(st, 1, txid, &rc);
        if (rc == SQLITE_OK)
                rc = collect(st, sizeof(struct cat_member), decode_member, &v, &n);
        if (rc != SQLITE_DONE) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": list members of \"%s\": %s", c->path, txid,
                              why(c, rc));
                goto out;
        }
        *ret = v;
        *ret_n = n;
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

static int decode_image(sqlite3_stmt *st, void *row)
{
        struct cat_image *im = row;

        col_str(st, 0, im->agent, sizeof(im->agent));
        col_str(st, 1, im->vm, sizeof(im->vm));
        col_str(st, 2, im->disk, sizeof(im->disk));
        col_str(st, 3, im->before, sizeof(im->before));
        col_str(st, 4, im->after, sizeof(im->after));
        return 0;
}

/* By agent, VM and disk. An unknown txid is an empty list. */
int cat_images(struct catalog *c, const char *txid, struct cat_image **ret, size_t *ret_n, lserr *err)
{
        sqlite3_stmt *st = NULL;
        void *v = NULL;
        size_t n = 0;
        int rc, r = 0;

        if (!id_fits(txid, ID_FIELD, 0))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": list images: transaction id empty or longer than %zu bytes", c->path,
                                 ID_FIELD - 1);
        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "SELECT agent, vm, disk, before, after FROM images WHERE txid = ?1"
                                " ORDER BY agent, vm, disk",
                                -1, &st, NULL);
        bind_id(st, 1, txid, &rc);
        if (rc == SQLITE_OK)
                rc = collect(st, sizeof(struct cat_image), decode_image, &v, &n);
        if (rc != SQLITE_DONE) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": list images of \"%s\": %s", c->path, txid,
                              why(c, rc));
                goto out;
        }
        *ret = v;
        *ret_n = n;
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* ---- agents ---------------------------------------------------------------------- */

int cat_agent_put(struct catalog *c, const struct cat_agent *a, lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        if (!id_fits(a->id, sizeof(a->id), 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": record agent: id empty or longer than %zu bytes",
                                 c->path, sizeof(a->id) - 1);
        if (!id_fits(a->url, sizeof(a->url), 1) || !id_fits(a->fingerprint, sizeof(a->fingerprint), 1) ||
            !id_fits(a->version, sizeof(a->version), 1))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": record agent \"%s\": URL, fingerprint or version longer than its "
                                 "field",
                                 c->path, a->id);
        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "INSERT INTO agents (id, url, fingerprint, version, reachable, last_error,"
                                "        last_seen_us, checked_us, in_doubt)"
                                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                                " ON CONFLICT (id) DO UPDATE SET url = excluded.url,"
                                "        fingerprint = excluded.fingerprint, version = excluded.version,"
                                "        reachable = excluded.reachable, last_error = excluded.last_error,"
                                "        last_seen_us = excluded.last_seen_us, checked_us = excluded.checked_us,"
                                "        in_doubt = excluded.in_doubt",
                                -1, &st, NULL);
        bind_id(st, 1, a->id, &rc);
        bind_id(st, 2, a->url, &rc);
        bind_id(st, 3, a->fingerprint, &rc);
        bind_id(st, 4, a->version, &rc);
        bind_int(st, 5, a->reachable != 0, &rc);
        bind_text(st, 6, a->last_error, text_len(a->last_error, sizeof(a->last_error)), &rc);
        bind_int(st, 7, a->last_seen_us, &rc);
        bind_int(st, 8, a->checked_us, &rc);
        bind_int(st, 9, a->in_doubt, &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": record agent \"%s\": %s", c->path, a->id,
                              why(c, rc));
                goto out;
        }
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

static int decode_agent(sqlite3_stmt *st, void *row)
{
        struct cat_agent *a = row;

        col_str(st, 0, a->id, sizeof(a->id));
        col_str(st, 1, a->url, sizeof(a->url));
        col_str(st, 2, a->fingerprint, sizeof(a->fingerprint));
        col_str(st, 3, a->version, sizeof(a->version));
        a->reachable = sqlite3_column_int(st, 4) != 0;
        col_str(st, 5, a->last_error, sizeof(a->last_error));
        a->last_seen_us = sqlite3_column_int64(st, 6);
        a->checked_us = sqlite3_column_int64(st, 7);
        a->in_doubt = (unsigned)sqlite3_column_int64(st, 8);
        return 0;
}

/* By id. */
int cat_agents(struct catalog *c, struct cat_agent **ret, size_t *ret_n, lserr *err)
{
        sqlite3_stmt *st = NULL;
        void *v = NULL;
        size_t n = 0;
        int rc, r = 0;

        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "SELECT id, url, fingerprint, version, reachable, last_error, last_seen_us,"
                                "       checked_us, in_doubt FROM agents ORDER BY id",
                                -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = collect(st, sizeof(struct cat_agent), decode_agent, &v, &n);
        if (rc != SQLITE_DONE) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": list agents: %s", c->path, why(c, rc));
                goto out;
        }
        *ret = v;
        *ret_n = n;
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* ---- groups ----------------------------------------------------------------------- */

/* "vm@agent", each side a non-empty identifier that fits its field. */
static int member_ok(const char *s)
{
        const char *at;

        if (!s || !id_fits(s, 2 * ID_FIELD, 0))
                return 0;
        at = strchr(s, '@');
        if (!at || strchr(at + 1, '@'))
                return 0;
        return at > s && (size_t)(at - s) < ID_FIELD && at[1] && strlen(at + 1) < ID_FIELD;
}

int cat_group_put(struct catalog *c, const char *name, const char *mode, const char *const *members, size_t n,
                  lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        if (!id_fits(name, ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": record group: name empty or longer than %zu bytes",
                                 c->path, ID_FIELD - 1);
        if (!id_fits(mode ? mode : "", MODE_FIELD, 1))
                return lserr_set(err, -EINVAL, "catalog \"%s\": record group \"%s\": mode longer than %zu bytes",
                                 c->path, name, MODE_FIELD - 1);
        if (n && !members)
                return lserr_set(err, -EINVAL, "catalog \"%s\": record group \"%s\": %zu members but no list",
                                 c->path, name, n);
        for (size_t i = 0; i < n; i++)
                if (!member_ok(members[i]))
                        return lserr_set(err, -EINVAL,
                                         "catalog \"%s\": record group \"%s\": member %zu is not \"vm@agent\" with "
                                         "both names of 1 to %zu bytes",
                                         c->path, name, i + 1, ID_FIELD - 1);
        pthread_mutex_lock(&c->lock);
        rc = txn_begin(c);
        if (rc == SQLITE_OK)
                rc = sqlite3_prepare_v2(c->db,
                                        "INSERT INTO groups (name, mode, updated_us) VALUES (?1, ?2, ?3)"
                                        " ON CONFLICT (name) DO UPDATE SET mode = excluded.mode,"
                                        "        updated_us = excluded.updated_us",
                                        -1, &st, NULL);
        bind_id(st, 1, name, &rc);
        bind_id(st, 2, mode ? mode : "", &rc);
        bind_int(st, 3, now_us(), &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        sqlite3_finalize(st);
        st = NULL;
        if (rc == SQLITE_DONE)
                rc = sqlite3_prepare_v2(c->db, "DELETE FROM group_members WHERE group_name = ?1", -1, &st, NULL);
        bind_id(st, 1, name, &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        sqlite3_finalize(st);
        st = NULL;
        if (rc != SQLITE_DONE) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": record group \"%s\": %s", c->path, name,
                              why(c, rc));
                goto out;
        }
        rc = sqlite3_prepare_v2(c->db, "INSERT INTO group_members (group_name, position, member) VALUES (?1, ?2, ?3)",
                                -1, &st, NULL);
        for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
                bind_id(st, 1, name, &rc);
                bind_int(st, 2, (long long)i, &rc);
                bind_id(st, 3, members[i], &rc);
                if (rc == SQLITE_OK)
                        rc = sqlite3_step(st);
                if (rc == SQLITE_CONSTRAINT_UNIQUE) {
                        r = lserr_set(err, -EINVAL, "catalog \"%s\": record group \"%s\": member \"%s\" listed twice",
                                      c->path, name, members[i]);
                        goto out;
                }
                if (rc == SQLITE_DONE)
                        rc = sqlite3_reset(st);
        }
        if (rc == SQLITE_OK)
                rc = txn_commit(c);
        if (rc != SQLITE_OK) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": record members of group \"%s\": %s", c->path, name,
                              why(c, rc));
                goto out;
        }
out:
        sqlite3_finalize(st);
        txn_rollback(c);
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* ---- audit ------------------------------------------------------------------------ */

/* at_us 0 is now. The txid need not be logged: an ignored reply may name one
 * that never existed, and that is exactly what the audit must keep. */
int cat_audit_add(struct catalog *c, const struct cat_audit *a, lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        if (!id_fits(a->txid, sizeof(a->txid), 1) || !id_fits(a->agent, sizeof(a->agent), 1) ||
            !id_fits(a->step, sizeof(a->step), 1) || !id_fits(a->hash_hex, sizeof(a->hash_hex), 1))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": audit: transaction id, agent, step or hash longer than its field",
                                 c->path);
        if ((unsigned)a->dir >= N_WORDS(dir_words))
                return lserr_set(err, -EINVAL, "catalog \"%s\": audit \"%s\": unknown direction %d", c->path, a->txid,
                                 (int)a->dir);
        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "INSERT INTO audit (at_us, txid, agent, step, dir, code, detail, hash_hex)"
                                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                                -1, &st, NULL);
        bind_int(st, 1, a->at_us ? a->at_us : now_us(), &rc);
        bind_id(st, 2, a->txid, &rc);
        bind_id(st, 3, a->agent, &rc);
        bind_id(st, 4, a->step, &rc);
        bind_id(st, 5, dir_words[a->dir], &rc);
        bind_int(st, 6, a->code, &rc);
        bind_text(st, 7, a->detail, text_len(a->detail, sizeof(a->detail)), &rc);
        bind_id(st, 8, a->hash_hex, &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": audit \"%s\" %s of \"%s\": %s", c->path, a->txid,
                              a->step, a->agent, why(c, rc));
                goto out;
        }
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

static int decode_audit(sqlite3_stmt *st, void *row)
{
        struct cat_audit *a = row;
        int dir = word_index(dir_words, N_WORDS(dir_words), sqlite3_column_text(st, 4));

        if (dir < 0)
                return -EIO;
        a->at_us = sqlite3_column_int64(st, 0);
        col_str(st, 1, a->txid, sizeof(a->txid));
        col_str(st, 2, a->agent, sizeof(a->agent));
        col_str(st, 3, a->step, sizeof(a->step));
        a->dir = (enum cat_dir)dir;
        a->code = sqlite3_column_int(st, 5);
        col_str(st, 6, a->detail, sizeof(a->detail));
        col_str(st, 7, a->hash_hex, sizeof(a->hash_hex));
        return 0;
}

/* txid NULL is "" (all). The first limit rows in time order; limit 0 is none. */
int cat_audit_list(struct catalog *c, const char *txid, size_t limit, struct cat_audit **ret, size_t *ret_n,
                   lserr *err)
{
        sqlite3_stmt *st = NULL;
        void *v = NULL;
        size_t n = 0;
        int rc, r = 0;

        if (!txid)
                txid = "";
        if (!id_fits(txid, ID_FIELD, 1))
                return lserr_set(err, -EINVAL, "catalog \"%s\": list audit: transaction id longer than %zu bytes",
                                 c->path, ID_FIELD - 1);
        pthread_mutex_lock(&c->lock);
        if (*txid) {
                rc = sqlite3_prepare_v2(c->db,
                                        "SELECT at_us, txid, agent, step, dir, code, detail, hash_hex FROM audit"
                                        " WHERE txid = ?2 ORDER BY at_us, id LIMIT ?1",
                                        -1, &st, NULL);
                bind_id(st, 2, txid, &rc);
        } else {
                rc = sqlite3_prepare_v2(c->db,
                                        "SELECT at_us, txid, agent, step, dir, code, detail, hash_hex FROM audit"
                                        " ORDER BY at_us, id LIMIT ?1",
                                        -1, &st, NULL);
        }
        bind_int(st, 1, limit > (size_t)INT64_MAX ? INT64_MAX : (long long)limit, &rc);
        if (rc == SQLITE_OK)
                rc = collect(st, sizeof(struct cat_audit), decode_audit, &v, &n);
        if (rc != SQLITE_DONE) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": list audit of \"%s\": %s", c->path, txid,
                              why(c, rc));
                goto out;
        }
        *ret = v;
        *ret_n = n;
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

int cat_cut_set_status(struct catalog *c, const char *txid, const char *status, const char *reason, lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        if (!id_fits(txid, ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": cut status: transaction id empty or too long", c->path);
        if (strcmp(status, "") && strcmp(status, "deleted") && strcmp(status, "delete-failed"))
                return lserr_set(err, -EINVAL, "catalog \"%s\": cut status \"%s\" unknown", c->path, status);
        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "UPDATE txns SET cut_status = ?2, cut_status_reason = ?3 WHERE txid = ?1 AND kind = 'snapshot'",
                                -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 1, txid, -1, SQLITE_TRANSIENT);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 2, status, -1, SQLITE_TRANSIENT);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 3, reason ? reason : "", -1, SQLITE_TRANSIENT);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": cut \"%s\": set status: %s", c->path, txid, why(c, rc));
        else if (sqlite3_changes(c->db) == 0)
                r = lserr_set(err, -ENOENT, "catalog \"%s\": no cut \"%s\"", c->path, txid);
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

int cat_branch_set_status(struct catalog *c, const char *txid, const char *status, const char *reason, lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        if (!id_fits(txid, ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": branch status: transaction id empty or too long", c->path);
        if (strcmp(status, "") && strcmp(status, "undone") && strcmp(status, "deleted") && strcmp(status, "delete-failed"))
                return lserr_set(err, -EINVAL, "catalog \"%s\": branch status \"%s\" unknown", c->path, status);
        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "UPDATE txns SET branch_status = ?2, branch_reason = ?3 WHERE txid = ?1 AND kind = 'revert'",
                                -1, &st, NULL);
        bind_id(st, 1, txid, &rc);
        bind_id(st, 2, status, &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 3, reason ? reason : "", -1, SQLITE_TRANSIENT);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": revert \"%s\": set branch status: %s", c->path, txid,
                              why(c, rc));
        else if (sqlite3_changes(c->db) == 0)
                r = lserr_set(err, -ENOENT, "catalog \"%s\": no revert \"%s\"", c->path, txid);
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* The first column of every row of a bound statement, as transaction ids
 * (*v grows, the caller's); SQLITE_DONE when all were read. */
static int collect_ids(sqlite3_stmt *st, int rc, char (**v)[65], size_t *n)
{
        while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                void *p = realloc(*v, (*n + 1) * sizeof(**v));
                if (!p)
                        return SQLITE_NOMEM;
                *v = p;
                col_str(st, 0, (*v)[(*n)++], 65);
                rc = SQLITE_OK;
        }
        return rc;
}

int cat_cuts_on_image(struct catalog *c, const char *agent, const char *vm, const char *path, char (**ret)[65],
                      size_t *ret_n, lserr *err)
{
        sqlite3_stmt *st = NULL;
        char(*v)[65] = NULL;
        size_t n = 0;
        int rc;

        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "SELECT DISTINCT t.txid FROM txns t JOIN images i ON i.txid = t.txid"
                                " WHERE t.kind = 'snapshot' AND t.cut_status <> 'deleted'"
                                " AND i.agent = ?1 AND i.vm = ?2 AND i.before = ?3",
                                -1, &st, NULL);
        bind_id(st, 1, agent, &rc);
        bind_id(st, 2, vm, &rc);
        bind_id(st, 3, path, &rc);
        rc = collect_ids(st, rc, &v, &n);
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        if (rc != SQLITE_DONE) {
                free(v);
                return lserr_set(err, rc_errno(rc), "catalog \"%s\": %s@%s: cuts on \"%s\": %s", c->path, vm, agent,
                                 path, sqlite3_errstr(rc));
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

int cat_reverts_to(struct catalog *c, const char *cut_txid, char (**ret)[65], size_t *ret_n, lserr *err)
{
        sqlite3_stmt *st = NULL;
        char(*v)[65] = NULL;
        size_t n = 0;
        int rc;

        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "SELECT txid FROM txns WHERE kind = 'revert' AND mode = 'revert' AND committed = 1"
                                " AND name = ?1 ORDER BY started_us DESC LIMIT 1024",
                                -1, &st, NULL);
        bind_id(st, 1, cut_txid, &rc);
        rc = collect_ids(st, rc, &v, &n);
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        if (rc != SQLITE_DONE) {
                free(v);
                return lserr_set(err, rc_errno(rc), "catalog \"%s\": reverts to \"%s\": %s", c->path, cut_txid,
                                 sqlite3_errstr(rc));
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

int cat_image_users(struct catalog *c, const char *agent, const char *vm, const char *path, const char *except_txid,
                    lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "SELECT count(*) FROM images i JOIN txns t ON t.txid = i.txid"
                                " WHERE i.agent = ?1 AND i.vm = ?2 AND i.before = ?3 AND i.txid <> ?4"
                                " AND t.kind = 'snapshot' AND t.cut_status <> 'deleted'",
                                -1, &st, NULL);
        bind_id(st, 1, agent, &rc);
        bind_id(st, 2, vm, &rc);
        bind_id(st, 3, path, &rc);
        bind_id(st, 4, except_txid, &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                r = sqlite3_column_int(st, 0);
        else
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": %s@%s: users of \"%s\": %s", c->path, vm, agent, path,
                              why(c, rc));
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

int cat_image_repath(struct catalog *c, const char *agent, const char *vm, const char *old_path, const char *new_path,
                     lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db, "UPDATE images SET before = ?4 WHERE agent = ?1 AND vm = ?2 AND before = ?3", -1,
                                &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 1, agent, -1, SQLITE_TRANSIENT);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 2, vm, -1, SQLITE_TRANSIENT);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 3, old_path, -1, SQLITE_TRANSIENT);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 4, new_path, -1, SQLITE_TRANSIENT);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": %s@%s: repath images: %s", c->path, vm, agent,
                              why(c, rc));
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* ---- events and schedules ------------------------------------------------- */

int cat_event_add(struct catalog *c, const struct cat_event *ev, long long *ret_id, lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        if (!id_fits(ev->kind, sizeof(ev->kind), 0) || !id_fits(ev->group, sizeof(ev->group), 1) ||
            !id_fits(ev->txid, sizeof(ev->txid), 1))
                return lserr_set(err, -EINVAL, "catalog \"%s\": event: kind empty or a field too long", c->path);
        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "INSERT INTO events (at_us, kind, group_name, txid, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                                -1, &st, NULL);
        bind_int(st, 1, ev->at_us ? ev->at_us : now_us(), &rc);
        bind_id(st, 2, ev->kind, &rc);
        bind_id(st, 3, ev->group, &rc);
        bind_id(st, 4, ev->txid, &rc);
        bind_text(st, 5, ev->message, text_len(ev->message, sizeof(ev->message)), &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": event %s: %s", c->path, ev->kind, why(c, rc));
        else if (ret_id)
                *ret_id = sqlite3_last_insert_rowid(c->db);
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

static int decode_event(sqlite3_stmt *st, void *row)
{
        struct cat_event *e = row;

        e->id = sqlite3_column_int64(st, 0);
        e->at_us = sqlite3_column_int64(st, 1);
        col_str(st, 2, e->kind, sizeof(e->kind));
        col_str(st, 3, e->group, sizeof(e->group));
        col_str(st, 4, e->txid, sizeof(e->txid));
        col_str(st, 5, e->message, sizeof(e->message));
        return 0;
}

int cat_events(struct catalog *c, long long after_id, size_t limit, int newest, struct cat_event **ret,
               size_t *ret_n, lserr *err)
{
        sqlite3_stmt *st = NULL;
        void *v = NULL;
        size_t n = 0;
        int rc, r = 0;

        pthread_mutex_lock(&c->lock);
        /* "newest": the last `limit` events, still returned oldest first. */
        rc = sqlite3_prepare_v2(c->db,
                                newest ? "SELECT * FROM (SELECT id, at_us, kind, group_name, txid, message FROM events"
                                         " WHERE id > ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id"
                                       : "SELECT id, at_us, kind, group_name, txid, message FROM events"
                                         " WHERE id > ?1 ORDER BY id LIMIT ?2",
                                -1, &st, NULL);
        bind_int(st, 1, after_id, &rc);
        bind_int(st, 2, limit > (size_t)INT64_MAX ? INT64_MAX : (long long)limit, &rc);
        if (rc == SQLITE_OK)
                rc = collect(st, sizeof(struct cat_event), decode_event, &v, &n);
        if (rc != SQLITE_DONE) {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": list events: %s", c->path, why(c, rc));
                goto out;
        }
        *ret = v;
        *ret_n = n;
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

int cat_sched_get(struct catalog *c, const char *group, struct cat_sched *ret, lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        if (!id_fits(group, sizeof(ret->group), 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": schedule: group name empty or too long", c->path);
        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "SELECT group_name, last_due_s, last_run_us, outcome, txid, reason, runs, skipped"
                                " FROM schedules WHERE group_name = ?1",
                                -1, &st, NULL);
        bind_id(st, 1, group, &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                memset(ret, 0, sizeof(*ret));
                col_str(st, 0, ret->group, sizeof(ret->group));
                ret->last_due_s = sqlite3_column_int64(st, 1);
                ret->last_run_us = sqlite3_column_int64(st, 2);
                col_str(st, 3, ret->outcome, sizeof(ret->outcome));
                col_str(st, 4, ret->txid, sizeof(ret->txid));
                col_str(st, 5, ret->reason, sizeof(ret->reason));
                ret->runs = (unsigned)sqlite3_column_int64(st, 6);
                ret->skipped = (unsigned)sqlite3_column_int64(st, 7);
        } else if (rc == SQLITE_DONE) {
                r = -ENOENT;
        } else {
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": schedule of \"%s\": %s", c->path, group, why(c, rc));
        }
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

int cat_sched_put(struct catalog *c, const struct cat_sched *s, lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        if (!id_fits(s->group, sizeof(s->group), 0) || !id_fits(s->outcome, sizeof(s->outcome), 1) ||
            !id_fits(s->txid, sizeof(s->txid), 1))
                return lserr_set(err, -EINVAL, "catalog \"%s\": schedule: a field empty or too long", c->path);
        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db,
                                "INSERT OR REPLACE INTO schedules (group_name, last_due_s, last_run_us, outcome, txid,"
                                " reason, runs, skipped) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                                -1, &st, NULL);
        bind_id(st, 1, s->group, &rc);
        bind_int(st, 2, s->last_due_s, &rc);
        bind_int(st, 3, s->last_run_us, &rc);
        bind_id(st, 4, s->outcome, &rc);
        bind_id(st, 5, s->txid, &rc);
        bind_text(st, 6, s->reason, text_len(s->reason, sizeof(s->reason)), &rc);
        bind_int(st, 7, s->runs, &rc);
        bind_int(st, 8, s->skipped, &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": schedule of \"%s\": %s", c->path, s->group,
                              why(c, rc));
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* Transactions that are only history now: nothing lives on them. */
#define ENDED_TXNS                                                                                                    \
        "SELECT txid FROM txns WHERE state = 'done' AND (kind = 'delete'"                                            \
        " OR (kind = 'snapshot' AND (committed = 0 OR cut_status = 'deleted'))"                                       \
        " OR (kind = 'revert' AND (committed = 0 OR branch_status IN ('undone', 'deleted'))))"                         \
        " ORDER BY started_us DESC LIMIT -1 OFFSET ?1"

/* Runs one statement with ?1 = v; the number of rows it changed, or < 0. */
static int exec_int(struct catalog *c, const char *sql, long long v)
{
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);

        bind_int(st, 1, v, &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? sqlite3_changes(c->db) : -rc;
}

int cat_history_trim(struct catalog *c, long long keep_txns, long long keep_audit, lserr *err)
{
        int rc, gone = 0, n;

        pthread_mutex_lock(&c->lock);
        rc = txn_begin(c);
        if (rc != SQLITE_OK)
                goto out;
        /* Audit rows go with their transaction (members and images cascade). */
        n = exec_int(c, "DELETE FROM audit WHERE txid IN (" ENDED_TXNS ")", keep_txns);
        if (n >= 0)
                n = exec_int(c, "DELETE FROM txns WHERE txid IN (" ENDED_TXNS ")", keep_txns);
        gone = n;
        /* Status polls and the audit of live transactions: the newest keep_audit rows. */
        if (n >= 0)
                n = exec_int(c, "DELETE FROM audit WHERE id <= (SELECT max(id) FROM audit) - ?1", keep_audit);
        rc = n < 0 ? -n : txn_commit(c);
out:
        if (rc != SQLITE_OK) {
                txn_rollback(c);
                gone = lserr_set(err, rc_errno(rc), "catalog \"%s\": trim history: %s", c->path, why(c, rc));
        }
        pthread_mutex_unlock(&c->lock);
        return gone;
}

int cat_events_trim(struct catalog *c, long long keep, lserr *err)
{
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        pthread_mutex_lock(&c->lock);
        rc = sqlite3_prepare_v2(c->db, "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?1", -1, &st,
                                NULL);
        bind_int(st, 1, keep, &rc);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                r = lserr_set(err, rc_errno(rc), "catalog \"%s\": trim events: %s", c->path, why(c, rc));
        else
                r = sqlite3_changes(c->db);
        sqlite3_finalize(st);
        pthread_mutex_unlock(&c->lock);
        return r;
}
