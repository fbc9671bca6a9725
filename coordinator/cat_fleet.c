/* cat_fleet: what the coordinator knows of its fleet across restarts: agents as
 * last seen, groups as configured, and each schedule's last run. */
#include "catalog_priv.h"

#include <string.h>

#include "cleanup.h"

/* ---- agents ---------------------------------------------------------------------- */

int cat_agent_put(struct catalog *c, const struct cat_agent *a, lserr *err)
{
        if (c->be)
                return c->be->agent_put(c->be_impl, a, err);
        int rc;

        if (!cat_id_fits(a->id, sizeof(a->id), 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": record agent: id empty or longer than %zu bytes",
                                 c->path, sizeof(a->id) - 1);
        if (!cat_id_fits(a->url, sizeof(a->url), 1) || !cat_id_fits(a->fingerprint, sizeof(a->fingerprint), 1) ||
            !cat_id_fits(a->version, sizeof(a->version), 1))
                return lserr_set(err, -EINVAL,
                                 "catalog \"%s\": record agent \"%s\": URL, fingerprint or version longer than its "
                                 "field",
                                 c->path, a->id);
        CAT_LOCK_SCOPE(c);
        rc = cat_exec(c,
                      "INSERT INTO agents (id, url, fingerprint, version, reachable, last_error,"
                      "        last_seen_us, checked_us, in_doubt)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                      " ON CONFLICT (id) DO UPDATE SET url = excluded.url,"
                      "        fingerprint = excluded.fingerprint, version = excluded.version,"
                      "        reachable = excluded.reachable, last_error = excluded.last_error,"
                      "        last_seen_us = excluded.last_seen_us, checked_us = excluded.checked_us,"
                      "        in_doubt = excluded.in_doubt",
                      "ssssiTLLL", a->id, a->url, a->fingerprint, a->version, a->reachable != 0, a->last_error,
                      sizeof(a->last_error), a->last_seen_us, a->checked_us, (long long)a->in_doubt);
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": record agent \"%s\": %s", c->path, a->id,
                                 cat_why(c, rc));
        return 0;
}

static int decode_agent(sqlite3_stmt *st, void *row)
{
        struct cat_agent *a = row;

        cat_col_str(st, 0, a->id, sizeof(a->id));
        cat_col_str(st, 1, a->url, sizeof(a->url));
        cat_col_str(st, 2, a->fingerprint, sizeof(a->fingerprint));
        cat_col_str(st, 3, a->version, sizeof(a->version));
        a->reachable = sqlite3_column_int(st, 4) != 0;
        cat_col_str(st, 5, a->last_error, sizeof(a->last_error));
        a->last_seen_us = sqlite3_column_int64(st, 6);
        a->checked_us = sqlite3_column_int64(st, 7);
        a->in_doubt = (unsigned)sqlite3_column_int64(st, 8);
        return 0;
}

/* By id. */
int cat_agents(struct catalog *c, struct cat_agent **ret, size_t *ret_n, lserr *err)
{
        if (c->be)
                return c->be->agents(c->be_impl, ret, ret_n, err);
        CAT_LOCK_SCOPE(c);
        void *v = NULL;
        size_t n = 0;
        int rc;

        rc = cat_query_list(c, sizeof(struct cat_agent), decode_agent, &v, &n,
                            "SELECT id, url, fingerprint, version, reachable, last_error, last_seen_us,"
                            "       checked_us, in_doubt FROM agents ORDER BY id",
                            "");
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": list agents: %s", c->path, cat_why(c, rc));
        *ret = v;
        *ret_n = n;
        return 0;
}

/* ---- groups ----------------------------------------------------------------------- */

static int group_check(struct catalog *c, const char *name, const char *mode, const char *const *members, size_t n,
                       lserr *err)
{
        if (!cat_id_fits(name, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": record group: name empty or longer than %zu bytes",
                                 c->path, CAT_ID_FIELD - 1);
        if (!cat_id_fits(mode, CAT_MODE_FIELD, 1))
                return lserr_set(err, -EINVAL, "catalog \"%s\": record group \"%s\": mode longer than %zu bytes",
                                 c->path, name, CAT_MODE_FIELD - 1);
        if (n && !members)
                return lserr_set(err, -EINVAL, "catalog \"%s\": record group \"%s\": %zu members but no list",
                                 c->path, name, n);
        for (size_t i = 0; i < n; i++)
                if (!cat_member_ok(members[i]))
                        return lserr_set(err, -EINVAL,
                                         "catalog \"%s\": record group \"%s\": member %zu is not \"vm@agent\" with "
                                         "both names of 1 to %zu bytes",
                                         c->path, name, i + 1, CAT_ID_FIELD - 1);
        return 0;
}

int cat_group_put(struct catalog *c, const char *name, const char *mode, const char *const *members, size_t n,
                  lserr *err)
{
        if (c->be)
                return c->be->group_put(c->be_impl, name, mode, members, n, err);
        int rc, r;

        if (!mode)
                mode = "";
        r = group_check(c, name, mode, members, n, err);
        if (r < 0)
                return r;
        CAT_LOCK_SCOPE(c);
        CAT_ROLLBACK_SCOPE(c);
        rc = cat_begin(c);
        if (rc == SQLITE_OK)
                rc = cat_exec(c,
                              "INSERT INTO groups (name, mode, updated_us) VALUES (?1, ?2, ?3)"
                              " ON CONFLICT (name) DO UPDATE SET mode = excluded.mode,"
                              "        updated_us = excluded.updated_us",
                              "ssL", name, mode, cat_now_us());
        if (rc == SQLITE_DONE)
                rc = cat_exec(c, "DELETE FROM group_members WHERE group_name = ?1", "s", name);
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": record group \"%s\": %s", c->path, name,
                                 cat_why(c, rc));
        for (size_t i = 0; rc == SQLITE_DONE && i < n; i++) {
                rc = cat_exec(c, "INSERT INTO group_members (group_name, position, member) VALUES (?1, ?2, ?3)",
                              "sLs", name, (long long)i, members[i]);
                if (rc == SQLITE_CONSTRAINT_UNIQUE)
                        return lserr_set(err, -EINVAL,
                                         "catalog \"%s\": record group \"%s\": member \"%s\" listed twice", c->path,
                                         name, members[i]);
        }
        if (rc == SQLITE_DONE)
                rc = cat_commit(c);
        if (rc != SQLITE_OK)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": record members of group \"%s\": %s", c->path,
                                 name, cat_why(c, rc));
        return 0;
}

/* ---- schedules ---------------------------------------------------------------------- */

static int decode_sched(sqlite3_stmt *st, void *row)
{
        struct cat_sched *s = row;

        memset(s, 0, sizeof(*s));
        cat_col_str(st, 0, s->group, sizeof(s->group));
        s->last_due_s = sqlite3_column_int64(st, 1);
        s->last_run_us = sqlite3_column_int64(st, 2);
        cat_col_str(st, 3, s->outcome, sizeof(s->outcome));
        cat_col_str(st, 4, s->txid, sizeof(s->txid));
        cat_col_str(st, 5, s->reason, sizeof(s->reason));
        s->runs = (unsigned)sqlite3_column_int64(st, 6);
        s->skipped = (unsigned)sqlite3_column_int64(st, 7);
        return 0;
}

int cat_sched_get(struct catalog *c, const char *group, struct cat_sched *ret, lserr *err)
{
        if (c->be)
                return c->be->sched_get(c->be_impl, group, ret, err);
        int rc;

        if (!cat_id_fits(group, sizeof(ret->group), 0))
                return lserr_set(err, -EINVAL, "catalog \"%s\": schedule: group name empty or too long", c->path);
        CAT_LOCK_SCOPE(c);
        rc = cat_query_row(c, decode_sched, ret,
                           "SELECT group_name, last_due_s, last_run_us, outcome, txid, reason, runs, skipped"
                           " FROM schedules WHERE group_name = ?1",
                           "s", group);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": schedule of \"%s\": %s", c->path, group,
                                 cat_why(c, rc));
        return 0;
}

int cat_sched_put(struct catalog *c, const struct cat_sched *s, lserr *err)
{
        if (c->be)
                return c->be->sched_put(c->be_impl, s, err);
        int rc;

        if (!cat_id_fits(s->group, sizeof(s->group), 0) || !cat_id_fits(s->outcome, sizeof(s->outcome), 1) ||
            !cat_id_fits(s->txid, sizeof(s->txid), 1))
                return lserr_set(err, -EINVAL, "catalog \"%s\": schedule: a field empty or too long", c->path);
        CAT_LOCK_SCOPE(c);
        rc = cat_exec(c,
                      "INSERT OR REPLACE INTO schedules (group_name, last_due_s, last_run_us, outcome, txid,"
                      " reason, runs, skipped) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                      "sLLssTLL", s->group, s->last_due_s, s->last_run_us, s->outcome, s->txid, s->reason,
                      sizeof(s->reason), (long long)s->runs, (long long)s->skipped);
        if (rc != SQLITE_DONE)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": schedule of \"%s\": %s", c->path, s->group,
                                 cat_why(c, rc));
        return 0;
}
