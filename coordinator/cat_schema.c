/* cat_schema: the catalog's versioned schema, one migration per version, and
 * bringing an opened file up to date. */
#include "catalog_priv.h"

#include "cleanup.h"

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
        /* 5: who sent each control request (the control socket's peer uid and pid,
         * -1 when unknown or not a control request) and a 'control' direction for
         * those rows. SQLite cannot widen a CHECK in place: the table is copied. */
        "CREATE TABLE audit_v5 (\n"
        "        id INTEGER PRIMARY KEY,\n"
        "        at_us INTEGER NOT NULL,\n"
        "        txid TEXT NOT NULL,\n"
        "        agent TEXT NOT NULL,\n"
        "        step TEXT NOT NULL,\n"
        "        dir TEXT NOT NULL CHECK (dir IN ('sent', 'received', 'ignored', 'control')),\n"
        "        code INTEGER NOT NULL,\n"
        "        detail TEXT NOT NULL,\n"
        "        hash_hex TEXT NOT NULL,\n"
        "        peer_uid INTEGER NOT NULL DEFAULT -1,\n"
        "        peer_pid INTEGER NOT NULL DEFAULT -1\n"
        ");\n"
        "INSERT INTO audit_v5 (id, at_us, txid, agent, step, dir, code, detail, hash_hex)\n"
        "        SELECT id, at_us, txid, agent, step, dir, code, detail, hash_hex FROM audit;\n"
        "DROP TABLE audit;\n"
        "ALTER TABLE audit_v5 RENAME TO audit;\n"
        "CREATE INDEX audit_txid ON audit (txid, at_us);\n",
        /* 6: how many members each transaction was begun for, so that the
         * history is bounded in member rows too (a 10,000-member cut is as
         * much history as 10,000 small ones); counted for those already there. */
        ("ALTER TABLE txns ADD COLUMN members INTEGER NOT NULL DEFAULT 0;\n"
         "UPDATE txns SET members = (SELECT count(*) FROM members m WHERE m.txid = txns.txid);\n"),
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == CAT_SCHEMA_VERSION,
               "one migration per schema version");

struct version_probe {
        long long has_table, n_objects;
};

static int decode_probe(sqlite3_stmt *st, void *row)
{
        struct version_probe *p = row;

        p->has_table = sqlite3_column_int64(st, 0);
        p->n_objects = sqlite3_column_int64(st, 1);
        return 0;
}

static int decode_version(sqlite3_stmt *st, void *row)
{
        *(long long *)row = sqlite3_column_int64(st, 0);
        return 0;
}

/* Reads the schema version inside the caller's transaction: 0 for an empty
 * file, -1 for a database that is not a catalog at all. */
static int schema_version(struct catalog *c, long long *ret)
{
        struct version_probe p;
        int rc;

        rc = cat_query_row(c, decode_probe, &p,
                           "SELECT (SELECT count(*) FROM sqlite_schema"
                           "        WHERE type = 'table' AND name = 'schema_version'),"
                           "       (SELECT count(*) FROM sqlite_schema)",
                           "");
        if (rc != SQLITE_ROW)
                return rc;
        if (!p.has_table) {
                *ret = p.n_objects ? -1 : 0;
                return SQLITE_OK;
        }
        rc = cat_query_row(c, decode_version, ret, "SELECT coalesce(max(version), 0) FROM schema_version", "");
        return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Under the write lock: reads the version and refuses a file that is not a
 * catalog or is newer than this program. */
static int check_version(struct catalog *c, long long *ret, lserr *err)
{
        int rc = schema_version(c, ret);

        if (rc != SQLITE_OK)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": read schema version: %s", c->path,
                                 cat_why(c, rc));
        if (*ret < 0)
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": an SQLite database without a schema_version table: "
                                 "not a lockstep catalog, refusing to touch it",
                                 c->path);
        if (*ret > CAT_SCHEMA_VERSION)
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": schema version %lld is newer than this program's %d: "
                                 "refusing to open it (upgrade lockstep)",
                                 c->path, *ret, CAT_SCHEMA_VERSION);
        return 0;
}

/* Inside the caller's transaction: migration v (to version v + 1) and the row
 * that records it, committed together. */
static int apply_migration(struct catalog *c, long long v, lserr *err)
{
        int rc = sqlite3_exec(c->db, migrations[v], NULL, NULL, NULL);

        if (rc != SQLITE_OK)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": migrate schema to version %lld: %s", c->path,
                                 v + 1, cat_why(c, rc));
        rc = cat_exec(c, "INSERT INTO schema_version (version, applied_us) VALUES (?1, ?2)", "LL", v + 1,
                      cat_now_us());
        if (rc == SQLITE_DONE)
                rc = cat_commit(c);
        if (rc != SQLITE_OK)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": record schema version %lld: %s", c->path,
                                 v + 1, cat_why(c, rc));
        return 0;
}

/* Applies the missing migrations one transaction at a time. The version is read
 * under the write lock, so two processes opening a fresh file cannot both
 * migrate it. */
int cat_schema_migrate(struct catalog *c, lserr *err)
{
        CAT_ROLLBACK_SCOPE(c);
        long long v = 0;
        int rc, r;

        for (;;) {
                rc = cat_begin(c);
                if (rc != SQLITE_OK)
                        return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": lock for migration: %s", c->path,
                                         cat_why(c, rc));
                r = check_version(c, &v, err);
                if (r < 0)
                        return r;
                if (v == CAT_SCHEMA_VERSION)
                        break;
                r = apply_migration(c, v, err);
                if (r < 0)
                        return r;
        }
        /* Nothing was written in this last transaction: ending it either way is fine. */
        rc = cat_commit(c);
        if (rc != SQLITE_OK)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": end migration: %s", c->path, cat_why(c, rc));
        return 0;
}
