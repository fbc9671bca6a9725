/* cat_log: the append-only records: the audit of every command sent and reply
 * received, the daemon's event log, and trimming both (with ended transactions). */
#include "catalog_priv.h"

#include "cleanup.h"

static const char *const dir_words[] = {
        [CAT_SENT] = "sent",
        [CAT_RECEIVED] = "received",
        [CAT_IGNORED] = "ignored",
        [CAT_CONTROL] = "control",
};

/* A row limit from a size_t: SQLite's integers are signed 64 bits. */
static long long limit_ll(size_t limit)
{
        return limit > (size_t)INT64_MAX ? INT64_MAX : (long long)limit;
}

/* ---- audit ------------------------------------------------------------------------ */

/* at_us 0 is now. The txid need not be logged: an ignored reply may name one
 * that never existed, and that is exactly what the audit must keep. */
int cat_audit_add(struct catalog *c, const struct cat_audit *a, lserr *err)
{
        if (c->be)
                return c->be->audit_add(c->be_impl, a, err);
        int rc;

        if (!cat_id_fits(a->txid, sizeof(a->txid), 1) || !cat_id_fits(a->agent, sizeof(a->agent), 1) ||
            !cat_id_fits(a->step, sizeof(a->step), 1) || !cat_id_fits(a->hash_hex, sizeof(a->hash_hex), 1))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": audit: transaction id, agent, step or hash longer than its field",
                                 c->path);
        if ((unsigned)a->dir >= CAT_N_WORDS(dir_words))
                return lserr_set(err, -EINVAL, "catalog \"%s\": audit \"%s\": unknown direction %d", c->path, a->txid,
                                 (int)a->dir);
        CAT_LOCK_SCOPE(c);
        rc = cat_exec(c,
                      "INSERT INTO audit (at_us, txid, agent, step, dir, code, detail, hash_hex, peer_uid, peer_pid)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                      "LssssiTsLL", a->at_us ? a->at_us : cat_now_us(), a->txid, a->agent, a->step, dir_words[a->dir],
                      a->code, a->detail ? a->detail : "", (size_t)CAT_DETAIL_MAX, a->hash_hex, a->has_peer ? a->peer_uid : -1LL,
                      a->has_peer ? a->peer_pid : -1LL);
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": audit \"%s\" %s of \"%s\": %s", c->path,
                                 a->txid, a->step, a->agent, cat_why(c, rc));
        return 0;
}

static int decode_audit(sqlite3_stmt *st, void *row, struct cat_strs *strs)
{
        struct cat_audit *a = row;
        int dir = cat_word_index(dir_words, CAT_N_WORDS(dir_words), sqlite3_column_text(st, 4));

        if (dir < 0)
                return -EIO;
        a->at_us = sqlite3_column_int64(st, 0);
        cat_col_str(st, 1, a->txid, sizeof(a->txid));
        cat_col_str(st, 2, a->agent, sizeof(a->agent));
        cat_col_str(st, 3, a->step, sizeof(a->step));
        a->dir = (enum cat_dir)dir;
        a->code = sqlite3_column_int(st, 5);
        a->detail = cat_col_strp(st, 6, strs);
        cat_col_str(st, 7, a->hash_hex, sizeof(a->hash_hex));
        a->peer_uid = sqlite3_column_int64(st, 8);
        a->peer_pid = sqlite3_column_int64(st, 9);
        a->has_peer = a->peer_uid >= 0;
        return 0;
}

#define AUDIT_COLUMNS "at_us, txid, agent, step, dir, code, detail, hash_hex, peer_uid, peer_pid"

/* txid NULL is "" (all). The first limit rows in time order; limit 0 is none. */
int cat_audit_list(struct catalog *c, const char *txid, size_t limit, struct cat_audit **ret, size_t *ret_n,
                   lserr *err)
{
        if (c->be)
                return c->be->audit_list(c->be_impl, txid, limit, ret, ret_n, err);
        void *v = NULL;
        size_t n = 0;
        int rc;

        if (!txid)
                txid = "";
        if (!cat_id_fits(txid, CAT_ID_FIELD, 1))
                return lserr_set(err, -EINVAL, "catalog \"%s\": list audit: transaction id longer than %zu bytes",
                                 c->path, CAT_ID_FIELD - 1);
        CAT_LOCK_SCOPE(c);
        if (*txid)
                rc = cat_query_rows(c, sizeof(struct cat_audit), decode_audit, cat_audit_strs, 1, &v, &n,
                                    "SELECT " AUDIT_COLUMNS " FROM audit WHERE txid = ?2 ORDER BY at_us, id LIMIT ?1",
                                    "Ls", limit_ll(limit), txid);
        else
                rc = cat_query_rows(c, sizeof(struct cat_audit), decode_audit, cat_audit_strs, 1, &v, &n,
                                    "SELECT " AUDIT_COLUMNS " FROM audit ORDER BY at_us, id LIMIT ?1",
                                    "L", limit_ll(limit));
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": list audit of \"%s\": %s", c->path, txid,
                                 cat_why(c, rc));
        *ret = v;
        *ret_n = n;
        return 0;
}

int cat_audit_recent(struct catalog *c, size_t limit, struct cat_audit **ret, size_t *ret_n, lserr *err)
{
        if (c->be)
                return c->be->audit_recent(c->be_impl, limit, ret, ret_n, err);
        void *v = NULL;
        size_t n = 0;
        int rc;

        CAT_LOCK_SCOPE(c);
        rc = cat_query_rows(c, sizeof(struct cat_audit), decode_audit, cat_audit_strs, 1, &v, &n,
                            "SELECT * FROM (SELECT " AUDIT_COLUMNS ", id FROM audit ORDER BY at_us DESC, id DESC"
                            " LIMIT ?1) ORDER BY at_us, id",
                            "L", limit_ll(limit));
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": list recent audit: %s", c->path,
                                 cat_why(c, rc));
        *ret = v;
        *ret_n = n;
        return 0;
}

/* ---- events ------------------------------------------------------------------------ */

int cat_event_add(struct catalog *c, const struct cat_event *ev, long long *ret_id, lserr *err)
{
        if (c->be)
                return c->be->event_add(c->be_impl, ev, ret_id, err);
        int rc;

        if (!cat_id_fits(ev->kind, sizeof(ev->kind), 0) || !cat_id_fits(ev->group, sizeof(ev->group), 1) ||
            !cat_id_fits(ev->txid, sizeof(ev->txid), 1))
                return lserr_set(err, -EINVAL, "catalog \"%s\": event: kind empty or a field too long", c->path);
        CAT_LOCK_SCOPE(c);
        rc = cat_exec(c, "INSERT INTO events (at_us, kind, group_name, txid, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                      "LsssT", ev->at_us ? ev->at_us : cat_now_us(), ev->kind, ev->group, ev->txid, ev->message,
                      sizeof(ev->message));
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": event %s: %s", c->path, ev->kind,
                                 cat_why(c, rc));
        if (ret_id)
                *ret_id = sqlite3_last_insert_rowid(c->db);
        return 0;
}

static int decode_event(sqlite3_stmt *st, void *row)
{
        struct cat_event *e = row;

        e->id = sqlite3_column_int64(st, 0);
        e->at_us = sqlite3_column_int64(st, 1);
        cat_col_str(st, 2, e->kind, sizeof(e->kind));
        cat_col_str(st, 3, e->group, sizeof(e->group));
        cat_col_str(st, 4, e->txid, sizeof(e->txid));
        cat_col_str(st, 5, e->message, sizeof(e->message));
        return 0;
}

int cat_events(struct catalog *c, long long after_id, size_t limit, int newest, struct cat_event **ret,
               size_t *ret_n, lserr *err)
{
        if (c->be)
                return c->be->events(c->be_impl, after_id, limit, newest, ret, ret_n, err);
        CAT_LOCK_SCOPE(c);
        void *v = NULL;
        size_t n = 0;
        int rc;

        /* "newest": the last `limit` events, still returned oldest first. */
        rc = cat_query_list(c, sizeof(struct cat_event), decode_event, &v, &n,
                            newest ? "SELECT * FROM (SELECT id, at_us, kind, group_name, txid, message FROM events"
                                     " WHERE id > ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id"
                                   : "SELECT id, at_us, kind, group_name, txid, message FROM events"
                                     " WHERE id > ?1 ORDER BY id LIMIT ?2",
                            "LL", after_id, limit_ll(limit));
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": list events: %s", c->path, cat_why(c, rc));
        *ret = v;
        *ret_n = n;
        return 0;
}

/* ---- trimming ---------------------------------------------------------------------- */

/* Transactions that are only history now (nothing lives on them), past the
 * newest ?1 of them or past ?2 members counted from the newest: the oldest ?3
 * of those. */
#define ENDED_TXNS                                                                                                    \
        "SELECT txid FROM (SELECT txid, row_number() OVER w AS n, sum(members) OVER w AS m FROM txns"                \
        " WHERE state = 'done' AND (kind = 'delete'"                                                                  \
        " OR (kind = 'snapshot' AND (committed = 0 OR cut_status = 'deleted'))"                                       \
        " OR (kind = 'revert' AND (committed = 0 OR branch_status IN ('undone', 'deleted'))))"                         \
        " WINDOW w AS (ORDER BY started_us DESC ROWS UNBOUNDED PRECEDING)) WHERE n > ?1 OR m > ?2"                     \
        " ORDER BY n DESC LIMIT ?3"

/* Transactions removed per SQLite transaction: a trim with much to remove (the
 * first after an upgrade, or after the bounds were lowered) lets the cuts'
 * writes in between its batches instead of holding the catalog for minutes
 * (16 cuts of 10,000 members are ~300,000 rows with their images). */
#define TRIM_BATCH 16

/* One batch in its own write transaction: the number of transactions removed
 * (TRIM_BATCH: maybe more to do). */
static int trim_batch(struct catalog *c, long long keep_txns, long long keep_members, lserr *err)
{
        CAT_LOCK_SCOPE(c);
        CAT_ROLLBACK_SCOPE(c);
        int rc = cat_begin(c), gone = 0;

        if (rc != SQLITE_OK)
                goto fail;
        /* Audit rows go with their transaction (members and images cascade). */
        rc = cat_exec(c, "DELETE FROM audit WHERE txid IN (" ENDED_TXNS ")", "LLi", keep_txns, keep_members,
                      TRIM_BATCH);
        if (rc != SQLITE_DONE)
                goto fail;
        rc = cat_exec(c, "DELETE FROM txns WHERE txid IN (" ENDED_TXNS ")", "LLi", keep_txns, keep_members,
                      TRIM_BATCH);
        if (rc != SQLITE_DONE)
                goto fail;
        gone = sqlite3_changes(c->db);
        rc = cat_commit(c);
        if (rc == SQLITE_OK)
                return gone;
fail:
        return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": trim history: %s", c->path, cat_why(c, rc));
}

int cat_history_trim(struct catalog *c, long long keep_txns, long long keep_members, long long keep_audit,
                     lserr *err)
{
        if (c->be)
                return c->be->history_trim(c->be_impl, keep_txns, keep_members, keep_audit, err);
        int rc, gone = 0, n = TRIM_BATCH;

        while (n == TRIM_BATCH) {
                n = trim_batch(c, keep_txns, keep_members, err);
                if (n < 0)
                        return n;
                gone += n;
        }
        /* Status polls and the audit of live transactions: the newest keep_audit rows. */
        CAT_LOCK_SCOPE(c);
        rc = cat_exec(c, "DELETE FROM audit WHERE id <= (SELECT max(id) FROM audit) - ?1", "L", keep_audit);
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": trim audit: %s", c->path, cat_why(c, rc));
        return gone;
}

int cat_events_trim(struct catalog *c, long long keep, lserr *err)
{
        if (c->be)
                return c->be->events_trim(c->be_impl, keep, err);
        CAT_LOCK_SCOPE(c);
        int rc;

        rc = cat_exec(c, "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?1", "L", keep);
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": trim events: %s", c->path, cat_why(c, rc));
        return sqlite3_changes(c->db);
}
