/* cat_cut: what a cut holds (members, disk images) and what became of it and of
 * a revert's pre-revert branch, with the image queries deletes rely on. */
#include "catalog_priv.h"

#include <stddef.h>
#include <string.h>

#include "cleanup.h"

/* Cuts (transactions of kind SNAPSHOT) and reverts, newest first. */
int cat_cuts(struct catalog *c, const char *group, struct cat_txn **ret, size_t *ret_n, lserr *err)
{
        if (c->be)
                return c->be->cuts(c->be_impl, group, ret, ret_n, err);
        void *v = NULL;
        size_t n = 0;
        int rc;

        if (group && !cat_id_fits(group, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": list cuts: group name empty or longer than %zu bytes",
                                 c->path, CAT_ID_FIELD - 1);
        CAT_LOCK_SCOPE(c);
        if (group)
                rc = cat_query_list(c, sizeof(struct cat_txn), cat_decode_txn, &v, &n,
                                    "SELECT " CAT_TXN_COLUMNS " FROM txns WHERE kind IN ('snapshot', 'revert')"
                                    " AND group_name = ?1 ORDER BY started_us DESC, rowid DESC",
                                    "s", group);
        else
                rc = cat_query_list(c, sizeof(struct cat_txn), cat_decode_txn, &v, &n,
                                    "SELECT " CAT_TXN_COLUMNS " FROM txns WHERE kind IN ('snapshot', 'revert')"
                                    " ORDER BY started_us DESC, rowid DESC",
                                    "");
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": list cuts of \"%s\": %s", c->path,
                                 group ? group : "*", cat_why(c, rc));
        *ret = v;
        *ret_n = n;
        return 0;
}

struct newest_revert {
        char txid[65];
        int count;
};

static int decode_newest_revert(sqlite3_stmt *st, void *row)
{
        struct newest_revert *nr = row;

        cat_col_str(st, 0, nr->txid, sizeof(nr->txid));
        nr->count = sqlite3_column_int(st, 1);
        return 0;
}

int cat_reverts_since(struct catalog *c, const char *cut_txid, long long since_us, char ret_txid[65], lserr *err)
{
        if (c->be)
                return c->be->reverts_since(c->be_impl, cut_txid, since_us, ret_txid, err);
        struct newest_revert nr = {"", 0};
        int rc;

        if (!cat_id_fits(cut_txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": reverts: transaction id empty or too long", c->path);
        CAT_LOCK_SCOPE(c);
        /* By member, not by group: groups may share VMs, and a revert of any
         * group that holds one of this cut's VMs branched that VM's chain. */
        rc = cat_query_row(c, decode_newest_revert, &nr,
                           "SELECT t.txid, count(*) OVER () FROM txns t WHERE t.kind = 'revert'"
                           " AND t.committed = 1 AND t.started_us > ?2"
                           " AND t.branch_status IN ('', 'delete-failed') AND EXISTS ("
                           "  SELECT 1 FROM members rm JOIN members cm ON rm.vm = cm.vm AND rm.agent = cm.agent"
                           "  WHERE rm.txid = t.txid AND cm.txid = ?1)"
                           " ORDER BY t.started_us DESC LIMIT 1",
                           "sL", cut_txid, since_us);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": reverts after \"%s\": %s", c->path, cut_txid,
                                 cat_why(c, rc));
        memcpy(ret_txid, nr.txid, sizeof(nr.txid));
        return nr.count;
}

/* ---- members and images ------------------------------------------------------ */

int cat_put_member(struct catalog *c, const char *txid, const struct cat_member *m, lserr *err)
{
        if (c->be)
                return c->be->put_member(c->be_impl, txid, m, err);
        int rc;

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": record member: transaction id empty or longer than %zu bytes",
                                 c->path, CAT_ID_FIELD - 1);
        if (!cat_id_fits(m->agent, sizeof(m->agent), 0) || !cat_id_fits(m->vm, sizeof(m->vm), 0) ||
            !cat_id_fits(m->tier_name, sizeof(m->tier_name), 1))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": record member of \"%s\": agent or VM empty, or agent, VM or tier "
                                 "name longer than its field",
                                 c->path, txid);
        CAT_LOCK_SCOPE(c);
        /* Durations are stored as SQLite's signed 64 bits and come back bit for bit. */
        rc = cat_exec(c,
                      "INSERT INTO members (txid, agent, vm, tier, tier_name, code, message, freeze_us,"
                      "        snapshot_us, thaw_us, frozen_for_us, frozen_at_us, thawed_at_us)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                      " ON CONFLICT (txid, agent, vm) DO UPDATE SET tier = excluded.tier,"
                      "        tier_name = excluded.tier_name, code = excluded.code,"
                      "        message = excluded.message, freeze_us = excluded.freeze_us,"
                      "        snapshot_us = excluded.snapshot_us, thaw_us = excluded.thaw_us,"
                      "        frozen_for_us = excluded.frozen_for_us, frozen_at_us = excluded.frozen_at_us,"
                      "        thawed_at_us = excluded.thawed_at_us",
                      "sssLsiTLLLLLL", txid, m->agent, m->vm, (long long)m->tier, m->tier_name, m->code,
                      m->message ? m->message : "", (size_t)CAT_MESSAGE_MAX, (long long)m->freeze_us, (long long)m->snapshot_us, (long long)m->thaw_us,
                      (long long)m->frozen_for_us, m->frozen_at_us, m->thawed_at_us);
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
                return lserr_set(err, -ENOENT,
                                 "catalog \"%s\": record member \"%s@%s\" of \"%s\": no such transaction", c->path,
                                 m->vm, m->agent, txid);
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": record member \"%s@%s\" of \"%s\": %s",
                                 c->path, m->vm, m->agent, txid, cat_why(c, rc));
        return 0;
}

int cat_put_image(struct catalog *c, const char *txid, const struct cat_image *im, lserr *err)
{
        if (c->be)
                return c->be->put_image(c->be_impl, txid, im, err);
        int rc;

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": record image: transaction id empty or longer than %zu bytes",
                                 c->path, CAT_ID_FIELD - 1);
        const char *before = im->before ? im->before : "", *after = im->after ? im->after : "";
        if (!cat_id_fits(im->agent, sizeof(im->agent), 0) || !cat_id_fits(im->vm, sizeof(im->vm), 0) ||
            !cat_id_fits(im->disk, sizeof(im->disk), 0) || !cat_id_fits(before, CAT_PATH_MAX, 1) ||
            !cat_id_fits(after, CAT_PATH_MAX, 1))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": record image of \"%s\": agent, VM or disk empty, or a name or "
                                 "path longer than its field",
                                 c->path, txid);
        CAT_LOCK_SCOPE(c);
        rc = cat_exec(c,
                      "INSERT INTO images (txid, agent, vm, disk, before, after)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                      " ON CONFLICT (txid, agent, vm, disk) DO UPDATE SET before = excluded.before,"
                      "        after = excluded.after",
                      "ssssss", txid, im->agent, im->vm, im->disk, before, after);
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
                return lserr_set(err, -ENOENT,
                                 "catalog \"%s\": record image \"%s\" of \"%s@%s\" in \"%s\": no such transaction",
                                 c->path, im->disk, im->vm, im->agent, txid);
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc),
                                 "catalog \"%s\": record image \"%s\" of \"%s@%s\" in \"%s\": %s", c->path, im->disk,
                                 im->vm, im->agent, txid, cat_why(c, rc));
        return 0;
}

static int decode_member(sqlite3_stmt *st, void *row, struct cat_strs *strs)
{
        struct cat_member *m = row;

        cat_col_str(st, 0, m->agent, sizeof(m->agent));
        cat_col_str(st, 1, m->vm, sizeof(m->vm));
        m->tier = (unsigned)sqlite3_column_int64(st, 2);
        cat_col_str(st, 3, m->tier_name, sizeof(m->tier_name));
        m->code = sqlite3_column_int(st, 4);
        m->message = cat_col_strp(st, 5, strs);
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
        if (c->be)
                return c->be->members(c->be_impl, txid, ret, ret_n, err);
        void *v = NULL;
        size_t n = 0;
        int rc;

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": list members: transaction id empty or longer than %zu bytes",
                                 c->path, CAT_ID_FIELD - 1);
        CAT_LOCK_SCOPE(c);
        rc = cat_query_rows(c, sizeof(struct cat_member), decode_member, cat_member_strs, 1, &v, &n,
                            "SELECT agent, vm, tier, tier_name, code, message, freeze_us, snapshot_us, thaw_us,"
                            "       frozen_for_us, frozen_at_us, thawed_at_us"
                            " FROM members WHERE txid = ?1 ORDER BY tier, agent, vm",
                            "s", txid);
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": list members of \"%s\": %s", c->path, txid,
                                 cat_why(c, rc));
        *ret = v;
        *ret_n = n;
        return 0;
}

static int decode_image(sqlite3_stmt *st, void *row, struct cat_strs *strs)
{
        struct cat_image *im = row;

        cat_col_str(st, 0, im->agent, sizeof(im->agent));
        cat_col_str(st, 1, im->vm, sizeof(im->vm));
        cat_col_str(st, 2, im->disk, sizeof(im->disk));
        im->before = cat_col_strp(st, 3, strs);
        im->after = cat_col_strp(st, 4, strs);
        return 0;
}

const size_t cat_member_strs[1] = {offsetof(struct cat_member, message)};
const size_t cat_audit_strs[1] = {offsetof(struct cat_audit, detail)};
const size_t cat_image_strs[2] = {offsetof(struct cat_image, before), offsetof(struct cat_image, after)};

/* By agent, VM and disk. An unknown txid is an empty list. */
int cat_images(struct catalog *c, const char *txid, struct cat_image **ret, size_t *ret_n, lserr *err)
{
        if (c->be)
                return c->be->images(c->be_impl, txid, ret, ret_n, err);
        void *v = NULL;
        size_t n = 0;
        int rc;

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": list images: transaction id empty or longer than %zu bytes", c->path,
                                 CAT_ID_FIELD - 1);
        CAT_LOCK_SCOPE(c);
        rc = cat_query_rows(c, sizeof(struct cat_image), decode_image, cat_image_strs, 2, &v, &n,
                            "SELECT agent, vm, disk, before, after FROM images WHERE txid = ?1"
                            " ORDER BY agent, vm, disk",
                            "s", txid);
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": list images of \"%s\": %s", c->path, txid,
                                 cat_why(c, rc));
        *ret = v;
        *ret_n = n;
        return 0;
}

/* ---- what became of cuts and branches ----------------------------------------- */

int cat_cut_set_status(struct catalog *c, const char *txid, const char *status, const char *reason, lserr *err)
{
        if (c->be)
                return c->be->cut_set_status(c->be_impl, txid, status, reason, err);
        int rc;

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": cut status: transaction id empty or too long", c->path);
        if (strcmp(status, "") && strcmp(status, "deleted") && strcmp(status, "delete-failed"))
                return lserr_set(err, -EINVAL, "catalog \"%s\": cut status \"%s\" unknown", c->path, status);
        CAT_LOCK_SCOPE(c);
        rc = cat_exec(c,
                      "UPDATE txns SET cut_status = ?2, cut_status_reason = ?3 WHERE txid = ?1 AND kind = 'snapshot'",
                      "ssT", txid, status, reason ? reason : "", sizeof(((struct cat_txn *)0)->cut_status_reason));
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": cut \"%s\": set status: %s", c->path, txid,
                                 cat_why(c, rc));
        if (sqlite3_changes(c->db) == 0)
                return lserr_set(err, -ENOENT, "catalog \"%s\": no cut \"%s\"", c->path, txid);
        return 0;
}

int cat_branch_set_status(struct catalog *c, const char *txid, const char *status, const char *reason, lserr *err)
{
        if (c->be)
                return c->be->branch_set_status(c->be_impl, txid, status, reason, err);
        int rc;

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": branch status: transaction id empty or too long",
                                 c->path);
        if (strcmp(status, "") && strcmp(status, "undone") && strcmp(status, "deleted") &&
            strcmp(status, "delete-failed"))
                return lserr_set(err, -EINVAL, "catalog \"%s\": branch status \"%s\" unknown", c->path, status);
        CAT_LOCK_SCOPE(c);
        rc = cat_exec(c,
                      "UPDATE txns SET branch_status = ?2, branch_reason = ?3 WHERE txid = ?1 AND kind = 'revert'",
                      "ssT", txid, status, reason ? reason : "", sizeof(((struct cat_txn *)0)->branch_reason));
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": revert \"%s\": set branch status: %s",
                                 c->path, txid, cat_why(c, rc));
        if (sqlite3_changes(c->db) == 0)
                return lserr_set(err, -ENOENT, "catalog \"%s\": no revert \"%s\"", c->path, txid);
        return 0;
}

/* ---- images shared between cuts ------------------------------------------------ */

int cat_cuts_on_image(struct catalog *c, const char *agent, const char *vm, const char *path, char (**ret)[65],
                      size_t *ret_n, lserr *err)
{
        if (c->be)
                return c->be->cuts_on_image(c->be_impl, agent, vm, path, ret, ret_n, err);
        void *v = NULL;
        size_t n = 0;
        int rc;

        CAT_LOCK_SCOPE(c);
        rc = cat_query_list(c, CAT_ID_FIELD, cat_decode_id, &v, &n,
                            "SELECT DISTINCT t.txid FROM txns t JOIN images i ON i.txid = t.txid"
                            " WHERE t.kind = 'snapshot' AND t.cut_status <> 'deleted'"
                            " AND i.agent = ?1 AND i.vm = ?2 AND i.before = ?3",
                            "sss", agent, vm, path);
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": %s@%s: cuts on \"%s\": %s", c->path, vm,
                                 agent, path, cat_why(c, rc));
        *ret = v;
        *ret_n = n;
        return 0;
}

int cat_reverts_to(struct catalog *c, const char *cut_txid, char (**ret)[65], size_t *ret_n, lserr *err)
{
        if (c->be)
                return c->be->reverts_to(c->be_impl, cut_txid, ret, ret_n, err);
        void *v = NULL;
        size_t n = 0;
        int rc;

        CAT_LOCK_SCOPE(c);
        rc = cat_query_list(c, CAT_ID_FIELD, cat_decode_id, &v, &n,
                            "SELECT txid FROM txns WHERE kind = 'revert' AND mode = 'revert' AND committed = 1"
                            " AND name = ?1 ORDER BY started_us DESC LIMIT 1024",
                            "s", cut_txid);
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": reverts to \"%s\": %s", c->path, cut_txid,
                                 cat_why(c, rc));
        *ret = v;
        *ret_n = n;
        return 0;
}

static int decode_count(sqlite3_stmt *st, void *row)
{
        *(int *)row = sqlite3_column_int(st, 0);
        return 0;
}

int cat_image_users(struct catalog *c, const char *agent, const char *vm, const char *path, const char *except_txid,
                    lserr *err)
{
        if (c->be)
                return c->be->image_users(c->be_impl, agent, vm, path, except_txid, err);
        int rc, n = 0;

        CAT_LOCK_SCOPE(c);
        rc = cat_query_row(c, decode_count, &n,
                           "SELECT count(*) FROM images i JOIN txns t ON t.txid = i.txid"
                           " WHERE i.agent = ?1 AND i.vm = ?2 AND i.before = ?3 AND i.txid <> ?4"
                           " AND t.kind = 'snapshot' AND t.cut_status <> 'deleted'",
                           "ssss", agent, vm, path, except_txid);
        if (rc != SQLITE_ROW)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": %s@%s: users of \"%s\": %s", c->path, vm,
                                 agent, path, cat_why(c, rc));
        return n;
}

int cat_image_repath(struct catalog *c, const char *agent, const char *vm, const char *old_path, const char *new_path,
                     lserr *err)
{
        if (c->be)
                return c->be->image_repath(c->be_impl, agent, vm, old_path, new_path, err);
        int rc;

        CAT_LOCK_SCOPE(c);
        rc = cat_exec(c, "UPDATE images SET before = ?4 WHERE agent = ?1 AND vm = ?2 AND before = ?3", "ssss", agent,
                      vm, old_path, new_path);
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": %s@%s: repath images: %s", c->path, vm,
                                 agent, cat_why(c, rc));
        return 0;
}

void cat_cut_free(struct cat_cut *c)
{
        free(c->m);
        free(c->im);
        free(c->au);
        *c = (struct cat_cut){0};
}

/* The four reads, for a backend that cannot do them at once (SQLite: they are
 * local) or a cut too long for one request. */
static int cut_read_by_parts(struct catalog *c, const char *txid, size_t audit_limit, struct cat_cut *ret,
                             lserr *err)
{
        int r = cat_txn_get(c, txid, &ret->t, err);

        if (r >= 0)
                r = cat_members(c, txid, &ret->m, &ret->nm, err);
        if (r >= 0)
                r = cat_images(c, txid, &ret->im, &ret->ni, err);
        /* The report stands without its audit rows. */
        if (r >= 0 && cat_audit_list(c, txid, audit_limit, &ret->au, &ret->na, &(lserr){0}) < 0)
                ret->na = 0;
        return r;
}

int cat_cut_read(struct catalog *c, const char *txid, size_t audit_limit, struct cat_cut *ret, lserr *err)
{
        int r = 0;

        *ret = (struct cat_cut){0};
        /* 1: read whole; 0: not in one request, read by parts. */
        if (c->be && c->be->cut_read)
                r = c->be->cut_read(c->be_impl, txid, audit_limit, ret, err);
        if (r == 0)
                r = cut_read_by_parts(c, txid, audit_limit, ret, err);
        if (r < 0)
                cat_cut_free(ret);
        return r < 0 ? r : 0;
}
