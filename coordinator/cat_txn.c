/* cat_txn: the decision log: a transaction logged before any agent hears of it,
 * its decision made durable before anyone is told, and its end. */
#include "catalog_priv.h"

#include "cleanup.h"

int cat_decode_txn(sqlite3_stmt *st, void *row)
{
        struct cat_txn *t = row;
        int kind = cat_word_index(cat_kind_words, CAT_N_WORDS(cat_kind_words), sqlite3_column_text(st, 1));
        int state = cat_word_index(cat_state_words, CAT_N_WORDS(cat_state_words), sqlite3_column_text(st, 5));

        if (kind < 0 || state < 0)
                return -EIO;
        cat_col_str(st, 0, t->txid, sizeof(t->txid));
        t->kind = (enum cat_kind)kind;
        cat_col_str(st, 2, t->group, sizeof(t->group));
        cat_col_str(st, 3, t->name, sizeof(t->name));
        cat_col_str(st, 4, t->mode, sizeof(t->mode));
        t->state = (enum cat_txn_state)state;
        t->committed = sqlite3_column_int(st, 6) != 0;
        cat_col_str(st, 7, t->reason, sizeof(t->reason));
        t->started_us = sqlite3_column_int64(st, 8);
        t->decided_us = sqlite3_column_int64(st, 9);
        t->finished_us = sqlite3_column_int64(st, 10);
        t->lease_ms = (unsigned)sqlite3_column_int64(st, 11);
        cat_col_str(st, 12, t->cut_status, sizeof(t->cut_status));
        cat_col_str(st, 13, t->cut_status_reason, sizeof(t->cut_status_reason));
        cat_col_str(st, 14, t->branch_status, sizeof(t->branch_status));
        cat_col_str(st, 15, t->branch_reason, sizeof(t->branch_reason));
        t->members = (unsigned)sqlite3_column_int64(st, 16);
        return 0;
}

/* Reads only the identity (txid, kind, group, name, mode), started_us (0: now),
 * lease_ms and members; the state is always STARTED. A txid already logged is -EEXIST. */
int cat_txn_begin(struct catalog *c, const struct cat_txn *t, lserr *err)
{
        if (c->be)
                return c->be->txn_begin(c->be_impl, t, err);
        int rc;

        if (!cat_id_fits(t->txid, sizeof(t->txid), 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": begin: transaction id empty or longer than %zu bytes",
                                 c->path, sizeof(t->txid) - 1);
        if ((unsigned)t->kind >= CAT_N_WORDS(cat_kind_words))
                return lserr_set(err, -EINVAL, "catalog \"%s\": begin \"%s\": unknown kind %d", c->path, t->txid,
                                 (int)t->kind);
        if (!cat_id_fits(t->group, sizeof(t->group), 1) || !cat_id_fits(t->name, sizeof(t->name), 1) ||
            !cat_id_fits(t->mode, sizeof(t->mode), 1))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": begin \"%s\": group, name or mode longer than its field", c->path,
                                 t->txid);
        CAT_LOCK_SCOPE(c);
        rc = cat_exec(c,
                      "INSERT INTO txns (txid, kind, group_name, name, mode, state, started_us, lease_ms, members)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, 'started', ?6, ?7, ?8)",
                      "sssssLLL", t->txid, cat_kind_words[t->kind], t->group, t->name, t->mode,
                      t->started_us ? t->started_us : cat_now_us(), (long long)t->lease_ms, (long long)t->members);
        if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
                return lserr_set(err, -EEXIST, "catalog \"%s\": begin \"%s\": transaction already logged", c->path,
                                 t->txid);
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": begin \"%s\": %s", c->path, t->txid,
                                 cat_why(c, rc));
        return 0;
}

struct txn_state {
        int state;
        int committed;
};

static int decode_state(sqlite3_stmt *st, void *row)
{
        struct txn_state *s = row;

        s->state = cat_word_index(cat_state_words, CAT_N_WORDS(cat_state_words), sqlite3_column_text(st, 0));
        s->committed = sqlite3_column_int(st, 1) != 0;
        return s->state < 0 ? -EIO : 0;
}

/* Reads txid's state for `step` (decide, finish) in a write transaction it
 * begins (BEGIN IMMEDIATE), or in the caller's batch, which the one write that
 * follows then joins; -ENOENT when it is unknown. */
static int read_state(struct catalog *c, const char *step, const char *txid, struct txn_state *ret, lserr *err)
{
        int rc = c->batch ? SQLITE_OK : cat_begin(c);

        if (rc != SQLITE_OK)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": %s \"%s\": take the write lock: %s", c->path,
                                 step, txid, cat_why(c, rc));
        rc = cat_query_row(c, decode_state, ret, "SELECT state, committed FROM txns WHERE txid = ?1", "s", txid);
        if (rc == SQLITE_DONE)
                return lserr_set(err, -ENOENT, "catalog \"%s\": %s \"%s\": no such transaction", c->path, step, txid);
        if (rc != SQLITE_ROW)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": %s \"%s\": read state: %s", c->path, step,
                                 txid, cat_why(c, rc));
        return 0;
}

/* reason is kept for an abort only (NULL is ""), cut to the field's size. A
 * repeated decision keeps the first one's reason and time. */
int cat_txn_decide(struct catalog *c, const char *txid, int commit, const char *reason, lserr *err)
{
        if (c->be)
                return c->be->txn_decide(c->be_impl, txid, commit, reason, err);
        const char *want = commit ? "commit" : "abort";
        struct txn_state s;
        int rc, r;

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": decide: transaction id empty or longer than %zu bytes",
                                 c->path, CAT_ID_FIELD - 1);
        if (commit || !reason)
                reason = "";
        CAT_LOCK_SCOPE(c);
        CAT_ROLLBACK_SCOPE(c);
        r = read_state(c, "decide", txid, &s, err);
        if (r < 0)
                return r;
        if (s.state != CAT_TXN_STARTED) {
                /* Already decided (maybe even finished): the same answer again is
                 * a retry, the other answer would break atomicity. */
                if (s.committed != !!commit)
                        return lserr_set(err, -EBUSY, "catalog \"%s\": decide \"%s\": already decided %s, refusing %s",
                                         c->path, txid, s.committed ? "commit" : "abort", want);
                return 0;
        }
        rc = cat_exec(c,
                      "UPDATE txns SET state = ?2, committed = ?3, reason = ?4, decided_us = ?5 WHERE txid = ?1",
                      "ssiTL", txid, want, !!commit, reason, CAT_REASON_FIELD, cat_now_us());
        /* In a batch, the batch's commit makes it durable (engine_record_and_decide). */
        if (rc == SQLITE_DONE)
                rc = c->batch ? SQLITE_OK : cat_commit(c);
        if (rc != SQLITE_OK)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": decide \"%s\": log %s: %s", c->path, txid,
                                 want, cat_why(c, rc));
        return 0;
}

/* Undecided transactions are refused with -EBUSY: the decision must be logged
 * before agents can have answered it. */
int cat_txn_finish(struct catalog *c, const char *txid, lserr *err)
{
        if (c->be)
                return c->be->txn_finish(c->be_impl, txid, err);
        struct txn_state s;
        int rc, r;

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": finish: transaction id empty or longer than %zu bytes",
                                 c->path, CAT_ID_FIELD - 1);
        CAT_LOCK_SCOPE(c);
        CAT_ROLLBACK_SCOPE(c);
        r = read_state(c, "finish", txid, &s, err);
        if (r < 0)
                return r;
        if (s.state == CAT_TXN_DONE)
                return 0;
        if (s.state == CAT_TXN_STARTED)
                return lserr_set(err, -EBUSY, "catalog \"%s\": finish \"%s\": no decision logged yet", c->path, txid);
        rc = cat_exec(c, "UPDATE txns SET state = 'done', finished_us = ?2 WHERE txid = ?1", "sL", txid,
                      cat_now_us());
        if (rc == SQLITE_DONE)
                rc = c->batch ? SQLITE_OK : cat_commit(c);
        if (rc != SQLITE_OK)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": finish \"%s\": %s", c->path, txid,
                                 cat_why(c, rc));
        return 0;
}

int cat_txn_get(struct catalog *c, const char *txid, struct cat_txn *ret, lserr *err)
{
        if (c->be)
                return c->be->txn_get(c->be_impl, txid, ret, err);
        struct cat_txn t = {0};
        int rc;

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": get: transaction id empty or longer than %zu bytes",
                                 c->path, CAT_ID_FIELD - 1);
        CAT_LOCK_SCOPE(c);
        rc = cat_query_row(c, cat_decode_txn, &t, "SELECT " CAT_TXN_COLUMNS " FROM txns WHERE txid = ?1", "s", txid);
        if (rc == SQLITE_DONE)
                return lserr_set(err, -ENOENT, "catalog \"%s\": get \"%s\": no such transaction", c->path, txid);
        if (rc != SQLITE_ROW)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": get \"%s\": %s", c->path, txid,
                                 cat_why(c, rc));
        *ret = t;
        return 0;
}

int cat_txn_unresolved(struct catalog *c, struct cat_txn **ret, size_t *ret_n, lserr *err)
{
        if (c->be)
                return c->be->txn_unresolved(c->be_impl, ret, ret_n, err);
        CAT_LOCK_SCOPE(c);
        void *v = NULL;
        size_t n = 0;
        int rc;

        rc = cat_query_list(c, sizeof(struct cat_txn), cat_decode_txn, &v, &n,
                            "SELECT " CAT_TXN_COLUMNS " FROM txns WHERE state <> 'done' ORDER BY started_us, rowid",
                            "");
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": list unresolved transactions: %s", c->path,
                                 cat_why(c, rc));
        *ret = v;
        *ret_n = n;
        return 0;
}
