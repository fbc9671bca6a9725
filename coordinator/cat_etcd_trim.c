/* cat_etcd_trim: keeping the etcd catalog bounded: ended transactions beyond the
 * newest kept go with every key recorded for them, the oldest audit rows and
 * events go, and etcd's history is compacted after, so deleted keys do not
 * live on in old revisions. */
#include "cat_etcd_priv.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

/* Audit ids per round of the audit trim: their references are read, then
 * the rows and the ids deleted. */
#define TRIM_WINDOW 1000

/* A growing list of keys to delete. */
struct keys {
        char **v;
        size_t n, cap;
};

static void keys_free(struct keys *k)
{
        for (size_t i = 0; i < k->n; i++)
                free(k->v[i]);
        free(k->v);
        *k = (struct keys){0};
}

/* Adds prefix + dir + rest. */
static int keys_add(struct cat_etcd *e, struct keys *k, const char *dir, const char *rest)
{
        char key[CE_KEY_SIZE];

        if (ce_key_raw(e, key, dir, rest) < 0)
                return -EIO;
        if (k->n == k->cap) {
                size_t cap = k->cap ? 2 * k->cap : 64;
                char **v = reallocarray(k->v, cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                k->v = v;
                k->cap = cap;
        }
        k->v[k->n] = strdup(key);
        return k->v[k->n++] ? 0 : -ENOMEM;
}

static int trim_failed(struct cat_etcd *e, int r, const char *what, lserr *err)
{
        return ce_fail(e, err, r, what, r == -ENOMEM ? "out of memory" : CE_WHY_BAD);
}

/* ---- compaction ------------------------------------------------------------------- */

int ce_compact(struct cat_etcd *e, lserr *err)
{
        struct etcd_status st;
        lserr why = {0};
        int r = etcd_status(e->etcd, &st, &why);

        if (r < 0)
                return ce_fail(e, err, r, "compact etcd's history: status", why.msg);
        if (st.revision <= e->compacted)
                return 0;
        r = etcd_compact(e->etcd, st.revision, &why);
        /* Another catalog on this etcd compacted as far or further: done. */
        if (r < 0 && strstr(why.msg, "has been compacted"))
                r = 0;
        if (r < 0)
                return ce_fail(e, err, r, "compact etcd's history", why.msg);
        e->compacted = st.revision;
        return 0;
}

/* ---- ended transactions -------------------------------------------------------------- */

/* Only history now: nothing lives on it. */
static int ended(const struct cat_txn *t)
{
        if (t->state != CAT_TXN_DONE)
                return 0;
        switch (t->kind) {
        case CAT_KIND_DELETE:
                return 1;
        case CAT_KIND_SNAPSHOT:
                return !t->committed || !strcmp(t->cut_status, "deleted");
        default:
                return !t->committed || !strcmp(t->branch_status, "undone") || !strcmp(t->branch_status, "deleted");
        }
}

/* The by-VM copies of txkey's images: vmimg/<agent>/<vm>/<tx>/<disk> for
 * each img/<tx>/<agent>/<vm>/<disk>. */
static int image_copies(struct cat_etcd *e, const char *txkey, struct keys *k, const char *what, lserr *err)
{
        struct etcd_kv *kvs = NULL;
        char key[CE_KEY_SIZE], rest[CE_KEY_SIZE];
        size_t n = 0, skip;
        int r;

        snprintf(rest, sizeof(rest), "%s/", txkey);
        if (ce_key_raw(e, key, "img/", rest) < 0)
                return trim_failed(e, -EIO, what, err);
        skip = strlen(key);
        r = ce_list(e, key, 0, &kvs, &n, NULL, what, err);
        for (size_t i = 0; r == 0 && i < n; i++) {
                const char *tail = strlen(kvs[i].key) > skip ? kvs[i].key + skip : "";
                const char *vm = strchr(tail, '/'), *disk = vm ? strchr(vm + 1, '/') : NULL;
                if (!disk)
                        return trim_failed(e, -EIO, what, err);
                snprintf(rest, sizeof(rest), "%.*s/%s%s", (int)(disk - tail), tail, txkey, disk);
                r = keys_add(e, k, "vmimg/", rest);
                if (r < 0)
                        r = trim_failed(e, r, what, err);
        }
        etcd_kvs_free(kvs, n);
        return r;
}

struct audit_keys {
        struct cat_etcd *e;
        struct keys *k;
        size_t skip;
};

/* An audit row's places in time and id order, from its key's tail "<at>.<id>". */
static int audit_places(void *ctx, size_t range, const struct etcd_kv *kv)
{
        struct audit_keys *a = ctx;
        const char *tail = strlen(kv->key) > a->skip ? kv->key + a->skip : "";
        const char *dot = strchr(tail, '.');
        int r;

        if (!dot)
                return -EIO;
        r = keys_add(a->e, a->k, "audit/at/", tail);
        return r < 0 ? r : keys_add(a->e, a->k, "audit/id/", dot + 1);
}

/* Deletes txid and everything recorded for it: first the keys elsewhere that
 * point into it, then in one etcd transaction its own, unless its header
 * changed since read. 1 when it went, 0 when it changed. */
static int drop_txn(struct cat_etcd *e, const struct ce_hdr *h, lserr *err)
{
        _cleanup_(keys_free) struct keys k = {0};
        char txkey[3 * CAT_ID_FIELD], what[96], rows[CE_KEY_SIZE], keys[8][CE_KEY_SIZE];
        struct audit_keys a = {.e = e, .k = &k};
        struct etcd_op ops[8];
        int r;

        snprintf(what, sizeof(what), "trim \"%s\"", h->t.txid);
        ce_esc(txkey, sizeof(txkey), h->t.txid);
        r = image_copies(e, txkey, &k, what, err);
        if (r == 0 && ce_key(e, rows, 1, "audit/tx/", h->t.txid, NULL) < 0)
                r = trim_failed(e, -EIO, what, err);
        a.skip = strlen(rows);
        if (r == 0 && (r = ce_scan(e, rows, SIZE_MAX, audit_places, &a, what, err)) < 0)
                r = trim_failed(e, r, what, err);
        if (r == 0)
                r = ce_delete_keys(e, k.v, k.n, 0, what, err);
        if (r < 0)
                return r;
        if (ce_key(e, keys[0], 1, "mem/", h->t.txid, NULL) < 0 || ce_key(e, keys[1], 1, "img/", h->t.txid, NULL) < 0 ||
            ce_key(e, keys[2], 1, "audit/tx/", h->t.txid, NULL) < 0 ||
            ce_key(e, keys[3], 0, "dec/", h->t.txid, NULL) < 0 || ce_key(e, keys[4], 0, "open/", h->t.txid, NULL) < 0 ||
            ce_key(e, keys[5], 0, "cut/", h->t.group, h->t.txid, NULL) < 0 ||
            ce_key(e, keys[6], 0, "revert/", h->t.txid, NULL) < 0 || ce_key(e, keys[7], 0, "txn/", h->t.txid, NULL) < 0)
                return trim_failed(e, -EIO, what, err);
        for (int i = 0; i < 8; i++)
                ops[i] = (struct etcd_op){.kind = ETCD_OP_DELETE, .key = keys[i], .prefix = i < 3};
        struct etcd_cmp same = {.key = keys[7], .target = ETCD_MOD, .result = ETCD_EQUAL, .num = h->mod};
        ce_hcache_drop(e, h->t.txid);
        r = ce_txn(e, what, &same, 1, ops, 8, NULL, NULL, err);
        return r < 0 ? r : r == 0;
}

/* ---- the audit's bound ------------------------------------------------------------- */

static int max_id(void *ctx, size_t range, const struct etcd_kv *kv)
{
        int64_t *max = ctx, id = ce_id_of(kv->key);

        if (id > *max)
                *max = id;
        return 0;
}

/* The newest audit id there is: the counter's, unless a trim took it. */
static int newest_id(struct cat_etcd *e, int64_t first, int64_t *ret, const char *what, lserr *err)
{
        struct ce_seq s = {0};
        char key[CE_KEY_SIZE];
        int r;

        ce_key_raw(e, key, "audit/seq", "");
        r = ce_seq_load(e, &s, key, err);
        *ret = 0;
        for (int64_t hi = s.last; r == 0 && *ret == 0 && hi >= first;) {
                int64_t lo = hi - first + 1 > TRIM_WINDOW ? hi - TRIM_WINDOW + 1 : first;
                r = ce_id_read(e, "audit/id/", lo, hi, max_id, ret, what, err);
                hi = lo - 1;
        }
        return r;
}

/* A row's two keys, from its id index entry (whose value is the row's tail
 * "<tx>/<at>.<id>"). */
static int row_keys(void *ctx, size_t range, const struct etcd_kv *kv)
{
        struct audit_keys *a = ctx;
        char ref[CE_KEY_SIZE];
        const char *slash;
        int r;

        snprintf(ref, sizeof(ref), "%.*s", (int)kv->value_len, (const char *)kv->value);
        slash = strrchr(ref, '/');
        if (!slash)
                return -EIO;
        r = keys_add(a->e, a->k, "audit/tx/", ref);
        return r < 0 ? r : keys_add(a->e, a->k, "audit/at/", slash + 1);
}

/* As SQLite's "id <= max(id) - keep": the rows, their places in time, then
 * the ids (last, so that a trim cut short is found again). */
static int trim_audit(struct cat_etcd *e, long long keep, lserr *err)
{
        const char *what = "trim audit";
        int64_t first = 0, last = 0;
        int r = ce_id_first(e, "audit/id/", &first, what, err);

        if (r == 0 && first)
                r = newest_id(e, first, &last, what, err);
        if (r < 0 || !first || !last || last - (keep < 0 ? 0 : keep) < first)
                return r;
        last -= keep < 0 ? 0 : keep;
        for (int64_t lo = first; r == 0 && lo <= last; lo += TRIM_WINDOW) {
                _cleanup_(keys_free) struct keys k = {0};
                struct audit_keys a = {.e = e, .k = &k};
                int64_t hi = last - lo >= TRIM_WINDOW ? lo + TRIM_WINDOW - 1 : last;
                r = ce_id_read(e, "audit/id/", lo, hi, row_keys, &a, what, err);
                if (r < 0)
                        return trim_failed(e, r, what, err);
                r = ce_delete_keys(e, k.v, k.n, 0, what, err);
                if (r == 0)
                        r = ce_id_delete(e, "audit/id/", lo, hi, what, err);
        }
        return r;
}

/* ---- the calls -------------------------------------------------------------------- */

/* Keeps the newest ended transactions, at most keep_txns and keep_members
 * members of them; then the newest keep_audit audit rows; then compacts.
 * Returns how many transactions went. */
int ce_be_history_trim(void *impl, long long keep_txns, long long keep_members, long long keep_audit, lserr *err)
{
        _cleanup_free_ struct ce_hdr *h = NULL;
        struct cat_etcd *e = impl;
        const char *what = "trim history";
        size_t n = 0, k = 0;
        long long members = 0;
        int r, gone = 0;

        CE_LOCK_SCOPE(e);
        r = ce_settle(e, err);
        if (r == 0)
                r = ce_hdrs_all(e, &h, &n, what, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (ended(&h[i].t))
                        h[k++] = h[i];
        ce_hdrs_sort(h, k, 1);
        for (size_t i = 0; r >= 0 && i < k; i++) {
                members += h[i].t.members;
                if ((long long)i < keep_txns && members <= keep_members)
                        continue;
                r = drop_txn(e, &h[i], err);
                gone += r > 0;
        }
        if (r >= 0)
                r = trim_audit(e, keep_audit, err);
        if (r >= 0)
                r = ce_compact(e, err);
        return r < 0 ? r : gone;
}

/* Keeps the newest `keep` events (ids are dense: counted, not read). */
int ce_be_events_trim(void *impl, long long keep, lserr *err)
{
        struct cat_etcd *e = impl;
        const char *what = "trim events";
        struct ce_seq s = {0};
        char key[CE_KEY_SIZE];
        int64_t first = 0, gone = 0;
        int r;

        CE_LOCK_SCOPE(e);
        ce_key_raw(e, key, "event/seq", "");
        r = ce_settle(e, err);
        if (r == 0)
                r = ce_seq_load(e, &s, key, err);
        if (r == 0)
                r = ce_id_first(e, "event/id/", &first, what, err);
        if (keep < 0)
                keep = 0;
        if (r == 0 && first && s.last - first >= keep) {
                gone = s.last - keep - first + 1;
                r = ce_id_delete(e, "event/id/", first, s.last - keep, what, err);
        }
        if (r == 0)
                r = ce_compact(e, err);
        return r < 0 ? r : gone > INT_MAX ? INT_MAX : (int)gone;
}
