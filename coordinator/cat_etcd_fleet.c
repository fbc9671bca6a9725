/* cat_etcd_fleet: the fleet as etcd keeps it: one key per agent, a group's
 * header and one key per member, one key per schedule. */
#include "cat_etcd_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

/* ---- agents ---------------------------------------------------------------------- */

static int agent_encode(const struct cat_agent *a, char **ret, size_t *ret_len)
{
        struct ce_rec w;

        ce_rec_begin(&w);
        ce_rec_str(&w, "id", a->id);
        ce_rec_str(&w, "url", a->url);
        ce_rec_str(&w, "fingerprint", a->fingerprint);
        ce_rec_str(&w, "version", a->version);
        ce_rec_i64(&w, "reachable", a->reachable != 0);
        ce_rec_text(&w, "last_error", a->last_error, sizeof(a->last_error));
        ce_rec_i64(&w, "last_seen_us", a->last_seen_us);
        ce_rec_i64(&w, "checked_us", a->checked_us);
        ce_rec_i64(&w, "in_doubt", a->in_doubt);
        return ce_rec_end(&w, ret, ret_len);
}

/* Insert or replace by id. */
int ce_be_agent_put(void *impl, const struct cat_agent *a, lserr *err)
{
        _cleanup_(ce_unit_clear) struct ce_unit u = {0};
        struct cat_etcd *e = impl;
        char what[96], key[CE_KEY_SIZE], *text = NULL;
        size_t len = 0;
        int r;

        if (!cat_id_fits(a->id, sizeof(a->id), 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": record agent: id empty or longer than %zu bytes",
                                 e->prefix, sizeof(a->id) - 1);
        if (!cat_id_fits(a->url, sizeof(a->url), 1) || !cat_id_fits(a->fingerprint, sizeof(a->fingerprint), 1) ||
            !cat_id_fits(a->version, sizeof(a->version), 1))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": record agent \"%s\": URL, fingerprint or version "
                                 "longer than its field", e->prefix, a->id);
        snprintf(what, sizeof(what), "record agent \"%s\"", a->id);
        if (ce_key(e, key, 0, "agent/", a->id, NULL) < 0)
                return ce_fail(e, err, -EINVAL, what, "id too long for an etcd key");
        r = agent_encode(a, &text, &len);
        u.what = strdup(what);
        if (r == 0 && u.what)
                r = ce_unit_op(&u, ETCD_OP_PUT, key, text, len);
        else
                free(text);
        if (r < 0 || !u.what)
                return ce_fail(e, err, -ENOMEM, what, "out of memory");
        CE_LOCK_SCOPE(e);
        return ce_write(e, &u, NULL, err);
}

static int agent_decode(const struct etcd_kv *kv, struct cat_agent *a)
{
        struct ce_in in;
        int r = ce_in_begin(&in, kv->value, kv->value_len);

        if (r < 0)
                return r;
        ce_in_str(&in, "id", a->id, sizeof(a->id));
        ce_in_str(&in, "url", a->url, sizeof(a->url));
        ce_in_str(&in, "fingerprint", a->fingerprint, sizeof(a->fingerprint));
        ce_in_str(&in, "version", a->version, sizeof(a->version));
        a->reachable = ce_in_i64(&in, "reachable") != 0;
        ce_in_str(&in, "last_error", a->last_error, sizeof(a->last_error));
        a->last_seen_us = ce_in_i64(&in, "last_seen_us");
        a->checked_us = ce_in_i64(&in, "checked_us");
        a->in_doubt = (unsigned)ce_in_i64(&in, "in_doubt");
        return ce_in_end(&in);
}

static int by_id(const void *pa, const void *pb)
{
        return strcmp(((const struct cat_agent *)pa)->id, ((const struct cat_agent *)pb)->id);
}

/* By id. */
int ce_be_agents(void *impl, struct cat_agent **ret, size_t *ret_n, lserr *err)
{
        struct cat_etcd *e = impl;
        const char *what = "list agents";
        struct etcd_kv *kvs = NULL;
        struct cat_agent *v = NULL;
        char key[CE_KEY_SIZE];
        size_t n = 0;
        int r;

        CE_LOCK_SCOPE(e);
        ce_key_raw(e, key, "agent/", "");
        r = ce_settle(e, err);
        if (r == 0)
                r = ce_list(e, key, 0, &kvs, &n, NULL, what, err);
        if (r == 0 && n && !(v = calloc(n, sizeof(*v))))
                r = ce_fail(e, err, -ENOMEM, what, "out of memory");
        for (size_t i = 0; r == 0 && i < n; i++)
                if (agent_decode(&kvs[i], &v[i]) < 0)
                        r = ce_fail(e, err, -EIO, what, CE_WHY_BAD);
        etcd_kvs_free(kvs, n);
        if (r < 0) {
                free(v);
                return r;
        }
        if (n > 1)
                qsort(v, n, sizeof(*v), by_id);
        *ret = v;
        *ret_n = n;
        return 0;
}

/* ---- groups ----------------------------------------------------------------------- */

static int by_str(const void *pa, const void *pb)
{
        return strcmp(*(const char *const *)pa, *(const char *const *)pb);
}

static int group_check(struct cat_etcd *e, const char *name, const char *mode, const char *const *members, size_t n,
                       lserr *err)
{
        _cleanup_free_ const char **sorted = NULL;

        if (!cat_id_fits(name, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": record group: name empty or longer than %zu "
                                 "bytes", e->prefix, CAT_ID_FIELD - 1);
        if (!cat_id_fits(mode, CAT_MODE_FIELD, 1))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": record group \"%s\": mode longer than %zu bytes",
                                 e->prefix, name, CAT_MODE_FIELD - 1);
        if (n && !members)
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": record group \"%s\": %zu members but no list",
                                 e->prefix, name, n);
        for (size_t i = 0; i < n; i++)
                if (!cat_member_ok(members[i]))
                        return lserr_set(err, -EINVAL, "catalog etcd \"%s\": record group \"%s\": member %zu is not "
                                         "\"vm@agent\" with both names of 1 to %zu bytes", e->prefix, name, i + 1,
                                         CAT_ID_FIELD - 1);
        if (n < 2)
                return 0;
        sorted = malloc(n * sizeof(*sorted));
        if (!sorted)
                return lserr_set(err, -ENOMEM, "catalog etcd \"%s\": record group \"%s\": out of memory", e->prefix,
                                 name);
        memcpy(sorted, members, n * sizeof(*sorted));
        qsort(sorted, n, sizeof(*sorted), by_str);
        for (size_t i = 1; i < n; i++)
                if (strcmp(sorted[i - 1], sorted[i]) == 0)
                        return lserr_set(err, -EINVAL, "catalog etcd \"%s\": record group \"%s\": member \"%s\" listed "
                                         "twice", e->prefix, name, sorted[i]);
        return 0;
}

/* Owned operations, written ETCD_TXN_OPS_MAX per etcd transaction. */
struct ops {
        struct ce_op *v;
        size_t n, cap;
};

static void ops_free(struct ops *o)
{
        for (size_t i = 0; i < o->n; i++) {
                free(o->v[i].key);
                free(o->v[i].value);
        }
        free(o->v);
}

/* Adds an operation on key (copied), with value (taken). */
static int ops_add(struct ops *o, enum etcd_op_kind kind, const char *key, char *value, size_t len)
{
        if (o->n == o->cap) {
                size_t cap = o->cap ? 2 * o->cap : 64;
                struct ce_op *v = reallocarray(o->v, cap, sizeof(*v));
                if (!v) {
                        free(value);
                        return -ENOMEM;
                }
                o->v = v;
                o->cap = cap;
        }
        o->v[o->n] = (struct ce_op){.kind = kind, .key = strdup(key), .value = value, .len = len};
        return o->v[o->n++].key ? 0 : -ENOMEM;
}

static int ops_write(struct cat_etcd *e, const struct ops *o, const char *what, lserr *err)
{
        struct etcd_op ops[ETCD_TXN_OPS_MAX];

        for (size_t i = 0; i < o->n; i += ETCD_TXN_OPS_MAX) {
                size_t m = o->n - i < ETCD_TXN_OPS_MAX ? o->n - i : ETCD_TXN_OPS_MAX;
                int r;
                for (size_t k = 0; k < m; k++) {
                        const struct ce_op *op = &o->v[i + k];
                        ops[k] = (struct etcd_op){.kind = op->kind, .key = op->key, .value = op->value,
                                                  .value_len = op->len};
                }
                r = ce_txn(e, what, NULL, 0, ops, m, NULL, NULL, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* One member's key and value under the group's prefix gk. */
static int member_entry(const char *gk, const char *member, size_t pos, char key[CE_KEY_SIZE],
                        char **value, size_t *len)
{
        char part[6 * CAT_ID_FIELD];
        struct ce_rec w;

        ce_esc(part, sizeof(part), member);
        if ((size_t)snprintf(key, CE_KEY_SIZE, "%s%s", gk, part) >= CE_KEY_SIZE)
                return -ENAMETOOLONG;
        ce_rec_begin(&w);
        ce_rec_str(&w, "member", member);
        ce_rec_i64(&w, "position", (int64_t)pos);
        return ce_rec_end(&w, value, len);
}

/* The key in kvs (in key order, as etcd lists them), or NULL. */
static const struct etcd_kv *find_kv(const struct etcd_kv *kvs, size_t n, const char *key)
{
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(kvs[mid].key, key);
                if (c == 0)
                        return &kvs[mid];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

/* The changes from the group's member keys now (old, in key order) to
 * members: a key for each member whose key or position is new, a delete for
 * each key no longer listed. */
static int member_changes(const char *gk, const struct etcd_kv *old, size_t n_old,
                          const char *const *members, size_t n, struct ops *o)
{
        _cleanup_free_ char(*keys)[CE_KEY_SIZE] = calloc(n ? n : 1, CE_KEY_SIZE);
        _cleanup_free_ const char **sorted = calloc(n ? n : 1, sizeof(*sorted));
        int r = keys && sorted ? 0 : -ENOMEM;

        for (size_t i = 0; r == 0 && i < n; i++) {
                const char *k = keys[i];
                char *value = NULL;
                size_t len = 0;
                r = member_entry(gk, members[i], i, keys[i], &value, &len);
                const struct etcd_kv *same = r == 0 ? find_kv(old, n_old, k) : NULL;
                if (same && (same->value_len != len || memcmp(same->value, value, len) != 0))
                        same = NULL;
                if (r == 0 && !same)
                        r = ops_add(o, ETCD_OP_PUT, k, TAKE_PTR(value), len);
                free(value);
                sorted[i] = keys[i];
        }
        if (r < 0)
                return r;
        if (n > 1)
                qsort(sorted, n, sizeof(*sorted), by_str);
        for (size_t j = 0; r == 0 && j < n_old; j++) {
                const char *k = old[j].key;
                if (!bsearch(&k, sorted, n, sizeof(*sorted), by_str))
                        r = ops_add(o, ETCD_OP_DELETE, k, NULL, 0);
        }
        return r;
}

/* Records the group and its member list; replaces. Only what changed is
 * written (a group of thousands of members changes by a few): a list that
 * changes by more than fits one etcd transaction is written in several, and
 * one cut short is finished by the next put. The header goes last. */
int ce_be_group_put(void *impl, const char *name, const char *mode, const char *const *members, size_t n,
                    lserr *err)
{
        _cleanup_(ops_free) struct ops o = {0};
        struct cat_etcd *e = impl;
        struct etcd_kv *old = NULL;
        char what[96], gk[CE_KEY_SIZE], hk[CE_KEY_SIZE], *text = NULL;
        size_t n_old = 0, len = 0;
        struct ce_rec w;
        int r;

        if (!mode)
                mode = "";
        r = group_check(e, name, mode, members, n, err);
        if (r < 0)
                return r;
        snprintf(what, sizeof(what), "record group \"%s\"", name);
        if (ce_key(e, gk, 1, "gmember/", name, NULL) < 0 || ce_key(e, hk, 0, "group/", name, NULL) < 0)
                return ce_fail(e, err, -EINVAL, what, "name too long for an etcd key");
        CE_LOCK_SCOPE(e);
        r = ce_settle(e, err);
        if (r == 0)
                r = ce_list(e, gk, 0, &old, &n_old, NULL, what, err);
        if (r < 0)
                return r;
        r = member_changes(gk, old, n_old, members, n, &o);
        etcd_kvs_free(old, n_old);
        ce_rec_begin(&w);
        ce_rec_str(&w, "mode", mode);
        ce_rec_i64(&w, "updated_us", cat_now_us());
        ce_rec_i64(&w, "members", (int64_t)n);
        if (r == 0 && (r = ce_rec_end(&w, &text, &len)) == 0)
                r = ops_add(&o, ETCD_OP_PUT, hk, text, len);
        else
                json_object_put(w.o);
        if (r < 0)
                return ce_fail(e, err, r, what, r == -ENOMEM ? "out of memory" : "a member too long for an etcd key");
        return ops_write(e, &o, what, err);
}

/* ---- schedules ------------------------------------------------------------------------ */

/* -ENOENT (err untouched) when the group never ran on a schedule. */
int ce_be_sched_get(void *impl, const char *group, struct cat_sched *ret, lserr *err)
{
        _cleanup_(ce_kv_clear) struct etcd_kv kv = {0};
        struct cat_etcd *e = impl;
        struct cat_sched s = {0};
        char what[96], key[CE_KEY_SIZE];
        struct ce_in in;
        int r;

        if (!cat_id_fits(group, sizeof(ret->group), 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": schedule: group name empty or too long",
                                 e->prefix);
        snprintf(what, sizeof(what), "schedule of \"%s\"", group);
        if (ce_key(e, key, 0, "sched/", group, NULL) < 0)
                return ce_fail(e, err, -EINVAL, what, "group name too long for an etcd key");
        CE_LOCK_SCOPE(e);
        r = ce_settle(e, err);
        if (r == 0)
                r = ce_get(e, key, &kv, what, err);
        if (r <= 0)
                return r < 0 ? r : -ENOENT;
        r = ce_in_begin(&in, kv.value, kv.value_len);
        if (r == 0) {
                ce_in_str(&in, "group", s.group, sizeof(s.group));
                s.last_due_s = ce_in_i64(&in, "last_due_s");
                s.last_run_us = ce_in_i64(&in, "last_run_us");
                ce_in_str(&in, "outcome", s.outcome, sizeof(s.outcome));
                ce_in_str(&in, "txid", s.txid, sizeof(s.txid));
                ce_in_str(&in, "reason", s.reason, sizeof(s.reason));
                s.runs = (unsigned)ce_in_i64(&in, "runs");
                s.skipped = (unsigned)ce_in_i64(&in, "skipped");
                r = ce_in_end(&in);
        }
        if (r < 0)
                return ce_fail(e, err, -EIO, what, CE_WHY_BAD);
        *ret = s;
        return 0;
}

int ce_be_sched_put(void *impl, const struct cat_sched *s, lserr *err)
{
        _cleanup_free_ char *text = NULL;
        struct cat_etcd *e = impl;
        char what[96], key[CE_KEY_SIZE];
        struct ce_rec w;
        size_t len = 0;
        int r;

        if (!cat_id_fits(s->group, sizeof(s->group), 0) || !cat_id_fits(s->outcome, sizeof(s->outcome), 1) ||
            !cat_id_fits(s->txid, sizeof(s->txid), 1))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": schedule: a field empty or too long", e->prefix);
        snprintf(what, sizeof(what), "schedule of \"%s\"", s->group);
        if (ce_key(e, key, 0, "sched/", s->group, NULL) < 0)
                return ce_fail(e, err, -EINVAL, what, "group name too long for an etcd key");
        ce_rec_begin(&w);
        ce_rec_str(&w, "group", s->group);
        ce_rec_i64(&w, "last_due_s", s->last_due_s);
        ce_rec_i64(&w, "last_run_us", s->last_run_us);
        ce_rec_str(&w, "outcome", s->outcome);
        ce_rec_str(&w, "txid", s->txid);
        ce_rec_text(&w, "reason", s->reason, sizeof(s->reason));
        ce_rec_i64(&w, "runs", s->runs);
        ce_rec_i64(&w, "skipped", s->skipped);
        if (ce_rec_end(&w, &text, &len) < 0)
                return ce_fail(e, err, -ENOMEM, what, "out of memory");
        struct etcd_op put = {.kind = ETCD_OP_PUT, .key = key, .value = text, .value_len = len};
        CE_LOCK_SCOPE(e);
        r = ce_settle(e, err);
        return r < 0 ? r : ce_txn(e, what, NULL, 0, &put, 1, NULL, NULL, err);
}
