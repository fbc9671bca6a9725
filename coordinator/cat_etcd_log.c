/* cat_etcd_log: the append-only records in etcd: audit rows (by transaction and
 * time, with an id index) and the event log, numbered by counters so their
 * keys sort as they were added. */
#include "cat_etcd_priv.h"

#include <assert.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

/* Ids per read of an id range: far below an answer's limit even with
 * records at their longest. */
#define READ_WINDOW 1000
/* Ids per delete of an id range: its blocks stay within one transaction's
 * ETCD_TXN_OPS_MAX operations (at most 9 per digit on either side). */
#define DELETE_WINDOW 1000000

static const char *const dir_words[] = {
        [CAT_SENT] = "sent",
        [CAT_RECEIVED] = "received",
        [CAT_IGNORED] = "ignored",
        [CAT_CONTROL] = "control",
};

/* ---- counters and id ranges -------------------------------------------------------- */

int ce_seq_from(struct ce_seq *s, const struct etcd_kv *kv)
{
        int64_t last = 0;
        struct ce_in in;
        int r;

        if (kv->key) {
                r = ce_in_begin(&in, kv->value, kv->value_len);
                if (r < 0)
                        return r;
                last = ce_in_i64(&in, "last");
                r = ce_in_end(&in);
                if (r < 0 || last < 0)
                        return -EIO;
        }
        s->last = last;
        s->mod = kv->key ? kv->mod_revision : 0;
        s->loaded = 1;
        return 0;
}

int ce_seq_load(struct cat_etcd *e, struct ce_seq *s, const char *key, lserr *err)
{
        _cleanup_(ce_kv_clear) struct etcd_kv kv = {0};
        int r = ce_get(e, key, &kv, "read an id counter", err);

        if (r >= 0 && ce_seq_from(s, &kv) < 0)
                return ce_fail(e, err, -EIO, "read an id counter", CE_WHY_BAD);
        return r < 0 ? r : 0;
}

int64_t ce_id_of(const char *key)
{
        size_t n = strlen(key);

        if (n < CE_ID_DIGITS)
                return -1;
        for (size_t i = n - CE_ID_DIGITS; i < n; i++)
                if (key[i] < '0' || key[i] > '9')
                        return -1;
        return strtoll(key + n - CE_ID_DIGITS, NULL, 10);
}

int ce_id_first(struct cat_etcd *e, const char *dir, int64_t *ret, const char *what, lserr *err)
{
        struct etcd_kv *kvs = NULL;
        char key[CE_KEY_SIZE];
        size_t n = 0;
        int r;

        ce_key_raw(e, key, dir, "");
        r = ce_list(e, key, 1, &kvs, &n, NULL, what, err);
        *ret = r == 0 && n ? ce_id_of(kvs[0].key) : 0;
        etcd_kvs_free(kvs, n);
        if (r == 0 && *ret < 0)
                return ce_fail(e, err, -EIO, what, CE_WHY_BAD);
        return r;
}

/* The aligned decimal blocks covering [lo, hi], each as the digits its ids
 * share: the largest block that starts at lo and ends by hi, then on. */
static size_t blocks(uint64_t lo, uint64_t hi, char (*out)[CE_ID_DIGITS + 1], size_t max)
{
        size_t n = 0;

        while (lo <= hi) {
                uint64_t step = 1;
                int k = 0;
                while (k < CE_ID_DIGITS - 1 && lo % (step * 10) == 0 && step * 10 - 1 <= hi - lo) {
                        step *= 10;
                        k++;
                }
                assert(n < max);
                ce_id_digits(out[n], lo);
                out[n++][CE_ID_DIGITS - k] = '\0';
                if (hi - lo < step)
                        break;
                lo += step;
        }
        return n;
}

/* The blocks of [lo, hi] under dir as operations of kind (prefixes). */
static int block_ops(struct cat_etcd *e, const char *dir, int64_t lo, int64_t hi, enum etcd_op_kind kind,
                     char (*keys)[CE_KEY_SIZE], struct etcd_op *ops, size_t *ret_n)
{
        char b[ETCD_TXN_OPS_MAX][CE_ID_DIGITS + 1];
        size_t n = blocks((uint64_t)lo, (uint64_t)hi, b, ETCD_TXN_OPS_MAX);

        for (size_t i = 0; i < n; i++) {
                if (ce_key_raw(e, keys[i], dir, b[i]) < 0)
                        return -ENAMETOOLONG;
                ops[i] = (struct etcd_op){.kind = kind, .key = keys[i], .prefix = 1};
        }
        *ret_n = n;
        return 0;
}

/* Splits [lo, hi] at multiples of window, calling each part's blocks. */
static int by_window(struct cat_etcd *e, const char *dir, int64_t lo, int64_t hi, int64_t window,
                     enum etcd_op_kind kind, ce_kv_fn fn, void *ctx, const char *what, lserr *err)
{
        _cleanup_free_ char(*keys)[CE_KEY_SIZE] = calloc(ETCD_TXN_OPS_MAX, CE_KEY_SIZE);
        struct etcd_op ops[ETCD_TXN_OPS_MAX];

        if (!keys)
                return ce_fail(e, err, -ENOMEM, what, "out of memory");
        for (int64_t a = lo < 1 ? 1 : lo; a <= hi;) {
                int64_t b = a - a % window + window - 1 < hi ? a - a % window + window - 1 : hi;
                size_t n = 0;
                int r = block_ops(e, dir, a, b, kind, keys, ops, &n);
                if (r < 0)
                        return ce_fail(e, err, r, what, "a key prefix is too long");
                r = kind == ETCD_OP_RANGE ? ce_ranges(e, ops, n, fn, ctx, what, err)
                                          : ce_txn(e, what, NULL, 0, ops, n, NULL, NULL, err);
                assert(r <= 0);
                if (r < 0)
                        return r;
                if (b == hi)
                        break;
                a = b + 1;
        }
        return 0;
}

int ce_id_read(struct cat_etcd *e, const char *dir, int64_t lo, int64_t hi, ce_kv_fn fn, void *ctx, const char *what,
               lserr *err)
{
        return by_window(e, dir, lo, hi, READ_WINDOW, ETCD_OP_RANGE, fn, ctx, what, err);
}

int ce_id_delete(struct cat_etcd *e, const char *dir, int64_t lo, int64_t hi, const char *what, lserr *err)
{
        return by_window(e, dir, lo, hi, DELETE_WINDOW, ETCD_OP_DELETE, NULL, NULL, what, err);
}

/* ---- audit ---------------------------------------------------------------------------- */

static int audit_check(struct cat_etcd *e, const struct cat_audit *a, lserr *err)
{
        if (!cat_id_fits(a->txid, sizeof(a->txid), 1) || !cat_id_fits(a->agent, sizeof(a->agent), 1) ||
            !cat_id_fits(a->step, sizeof(a->step), 1) || !cat_id_fits(a->hash_hex, sizeof(a->hash_hex), 1))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": audit: transaction id, agent, step or hash "
                                 "longer than its field", e->prefix);
        if ((unsigned)a->dir >= CAT_N_WORDS(dir_words))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": audit \"%s\": unknown direction %d", e->prefix,
                                 a->txid, (int)a->dir);
        return 0;
}

static int audit_encode(const struct cat_audit *a, long long at_us, char **ret, size_t *ret_len)
{
        struct ce_rec w;

        ce_rec_begin(&w);
        ce_rec_i64(&w, "at_us", at_us);
        ce_rec_str(&w, "txid", a->txid);
        ce_rec_str(&w, "agent", a->agent);
        ce_rec_str(&w, "step", a->step);
        ce_rec_str(&w, "dir", dir_words[a->dir]);
        ce_rec_i64(&w, "code", a->code);
        ce_rec_text(&w, "detail", a->detail ? a->detail : "", CAT_DETAIL_MAX);
        ce_rec_str(&w, "hash_hex", a->hash_hex);
        ce_rec_i64(&w, "peer_uid", a->has_peer ? a->peer_uid : -1LL);
        ce_rec_i64(&w, "peer_pid", a->has_peer ? a->peer_pid : -1LL);
        return ce_rec_end(&w, ret, ret_len);
}

/* at_us 0 is now. The txid need not be logged: an ignored reply may name one
 * that never existed, and that is exactly what the audit must keep. The
 * row's keys take the audit counter's next id when it is written. */
int ce_be_audit_add(void *impl, const struct cat_audit *a, lserr *err)
{
        _cleanup_(ce_unit_clear) struct ce_unit u = {0};
        struct cat_etcd *e = impl;
        long long at = a->at_us ? a->at_us : cat_now_us();
        char what[256];
        int r = audit_check(e, a, err);

        if (r < 0)
                return r;
        snprintf(what, sizeof(what), "audit \"%s\" %s of \"%s\"", a->txid, a->step, a->agent);
        u.audit = 1;
        u.what = strdup(what);
        u.txkey = malloc(3 * CAT_ID_FIELD);
        /* Time as unsigned digits with the sign bit flipped: key order is time order. */
        ce_id_digits(u.at, (uint64_t)at ^ (UINT64_C(1) << 63));
        r = u.what && u.txkey ? audit_encode(a, at, &u.ops[0].value, &u.ops[0].len) : -ENOMEM;
        if (r < 0)
                return ce_fail(e, err, r, what, "out of memory");
        u.n_ops = 1;
        ce_esc(u.txkey, 3 * CAT_ID_FIELD, a->txid);
        CE_LOCK_SCOPE(e);
        return ce_write(e, &u, NULL, err);
}

/* An audit row and its id (from its key), for sorting. */
struct audit_row {
        struct cat_audit a;
        int64_t id;
        char detail[CAT_DETAIL_MAX];
};

struct audit_list {
        struct audit_row *v;
        size_t n, cap;
};

int ce_audit_decode(const struct etcd_kv *kv, struct cat_audit *a, char detail[CAT_DETAIL_MAX])
{
        struct ce_in in;
        int dir, r;

        memset(a, 0, sizeof(*a));
        r = ce_in_begin(&in, kv->value, kv->value_len);
        if (r < 0)
                return r;
        a->at_us = ce_in_i64(&in, "at_us");
        ce_in_str(&in, "txid", a->txid, sizeof(a->txid));
        ce_in_str(&in, "agent", a->agent, sizeof(a->agent));
        ce_in_str(&in, "step", a->step, sizeof(a->step));
        dir = ce_in_word(&in, "dir", dir_words, CAT_N_WORDS(dir_words));
        a->code = (int)ce_in_i64(&in, "code");
        ce_in_str(&in, "detail", detail, CAT_DETAIL_MAX);
        ce_in_str(&in, "hash_hex", a->hash_hex, sizeof(a->hash_hex));
        a->peer_uid = ce_in_i64(&in, "peer_uid");
        a->peer_pid = ce_in_i64(&in, "peer_pid");
        a->has_peer = a->peer_uid >= 0;
        r = ce_in_end(&in);
        if (r < 0)
                return r;
        a->dir = (enum cat_dir)dir;
        return 0;
}

int ce_audit_rows(const struct etcd_kv *kvs, size_t n, struct cat_audit **ret)
{
        static const size_t strs[1] = {offsetof(struct audit_row, detail)};
        _cleanup_free_ struct audit_row *v = n ? calloc(n, sizeof(*v)) : NULL;

        if (n && !v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (ce_audit_decode(&kvs[i], &v[i].a, v[i].detail) < 0)
                        return -EIO;
        return cat_rows_pack(v, n, sizeof(*v), sizeof(struct cat_audit), cat_audit_strs, strs, 1, (void **)ret);
}

static int collect_audit(void *ctx, size_t range, const struct etcd_kv *kv)
{
        struct audit_list *l = ctx;
        int r;

        if (l->n == l->cap) {
                size_t cap = l->cap ? 2 * l->cap : 16;
                struct audit_row *v = reallocarray(l->v, cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        r = ce_audit_decode(kv, &l->v[l->n].a, l->v[l->n].detail);
        if (r < 0)
                return r;
        l->v[l->n++].id = ce_id_of(kv->key);
        return 0;
}

/* The rows of l as the caller's array (NULL when none). */
static int audit_out(struct cat_etcd *e, struct audit_list *l, struct cat_audit **ret, size_t *ret_n,
                     const char *what, lserr *err)
{
        static const size_t strs[1] = {offsetof(struct audit_row, detail)};
        void *out = NULL;

        if (cat_rows_pack(l->v, l->n, sizeof(*l->v), sizeof(struct cat_audit), cat_audit_strs, strs, 1, &out) < 0)
                return ce_fail(e, err, -ENOMEM, what, "out of memory");
        *ret = out;
        *ret_n = l->n;
        return 0;
}

/* The references (row key tails) that index keys hold, as strings. */
struct refs {
        char **v;
        size_t n, cap;
};

static void refs_free(struct refs *r)
{
        for (size_t i = 0; i < r->n; i++)
                free(r->v[i]);
        free(r->v);
        *r = (struct refs){0};
}

static int collect_ref(void *ctx, size_t range, const struct etcd_kv *kv)
{
        struct refs *l = ctx;

        if (l->n == l->cap) {
                size_t cap = l->cap ? 2 * l->cap : 16;
                char **v = reallocarray(l->v, cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n] = strndup((const char *)kv->value, kv->value_len);
        return l->v[l->n++] ? 0 : -ENOMEM;
}

/* The rows the references name, in their order (a row gone meanwhile is
 * left out). */
static int rows_of(struct cat_etcd *e, char *const *refs, size_t n, struct audit_list *l, const char *what,
                   lserr *err)
{
        _cleanup_free_ char(*keys)[CE_KEY_SIZE] = calloc(ETCD_TXN_OPS_MAX, CE_KEY_SIZE);
        struct etcd_op ops[ETCD_TXN_OPS_MAX];
        int r = keys ? 0 : -ENOMEM;

        for (size_t i = 0; r == 0 && i < n; i += ETCD_TXN_OPS_MAX) {
                size_t m = n - i < ETCD_TXN_OPS_MAX ? n - i : ETCD_TXN_OPS_MAX;
                for (size_t k = 0; r == 0 && k < m; k++) {
                        r = ce_key_raw(e, keys[k], "audit/tx/", refs[i + k]) < 0 ? -EIO : 0;
                        ops[k] = (struct etcd_op){.kind = ETCD_OP_RANGE, .key = keys[k]};
                }
                if (r == 0)
                        r = ce_ranges(e, ops, m, collect_audit, l, what, err);
        }
        return r;
}

/* A failure of a collecting callback (its own code, no message), or the read's. */
static int read_failed(struct cat_etcd *e, int r, const char *what, lserr *err)
{
        return ce_fail(e, err, r, what, r == -ENOMEM ? "out of memory" : CE_WHY_BAD);
}

/* txid NULL is "" (all). The first limit rows in time order; limit 0 is none.
 * One transaction's rows are read in pages under its key; all of them go
 * through the time index. */
int ce_be_audit_list(void *impl, const char *txid, size_t limit, struct cat_audit **ret, size_t *ret_n, lserr *err)
{
        _cleanup_(refs_free) struct refs refs = {0};
        struct cat_etcd *e = impl;
        struct audit_list l = {0};
        char what[96], key[CE_KEY_SIZE];
        int r = 0;

        if (!txid)
                txid = "";
        if (!cat_id_fits(txid, CAT_ID_FIELD, 1))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": list audit: transaction id longer than %zu "
                                 "bytes", e->prefix, CAT_ID_FIELD - 1);
        snprintf(what, sizeof(what), "list audit of \"%s\"", txid);
        if (*txid ? ce_key(e, key, 1, "audit/tx/", txid, NULL) : ce_key_raw(e, key, "audit/at/", ""))
                return ce_fail(e, err, -EINVAL, what, "transaction id too long for an etcd key");
        CE_LOCK_SCOPE(e);
        r = ce_settle(e, err);
        if (r == 0 && *txid)
                r = ce_scan(e, key, limit, collect_audit, &l, what, err);
        else if (r == 0)
                r = ce_scan(e, key, limit, collect_ref, &refs, what, err);
        if (r == 0 && !*txid)
                r = rows_of(e, refs.v, refs.n, &l, what, err);
        if (r == 0)
                r = audit_out(e, &l, ret, ret_n, what, err);
        free(l.v);
        return r < 0 ? read_failed(e, r, what, err) : 0;
}

static int by_time(const void *pa, const void *pb)
{
        const struct audit_row *a = pa, *b = pb;

        if (a->a.at_us != b->a.at_us)
                return a->a.at_us < b->a.at_us ? -1 : 1;
        return a->id < b->id ? -1 : a->id > b->id;
}

/* The references of the newest limit rows by id, oldest first: windows read
 * down from the counter, as trims leave gaps. */
static int newest_refs(struct cat_etcd *e, size_t limit, struct refs *out, const char *what, lserr *err)
{
        struct ce_seq s = {0};
        char key[CE_KEY_SIZE];
        int64_t first = 0;
        int r;

        ce_key_raw(e, key, "audit/seq", "");
        r = ce_seq_load(e, &s, key, err);
        if (r == 0)
                r = ce_id_first(e, "audit/id/", &first, what, err);
        for (int64_t hi = s.last; r == 0 && first > 0 && hi >= first && out->n < limit;) {
                int64_t lo = hi - first + 1 > READ_WINDOW ? hi - READ_WINDOW + 1 : first;
                struct refs w = {0};
                r = ce_id_read(e, "audit/id/", lo, hi, collect_ref, &w, what, err);
                /* Newest first while collecting; turned around at the end. */
                for (size_t i = w.n; r == 0 && i-- > 0 && out->n < limit;) {
                        r = collect_ref(out, 0, &(struct etcd_kv){.value = (uint8_t *)w.v[i],
                                                                   .value_len = strlen(w.v[i])});
                }
                refs_free(&w);
                hi = lo - 1;
        }
        for (size_t i = 0; r == 0 && i < out->n / 2; i++) {
                char *t = out->v[i];
                out->v[i] = out->v[out->n - 1 - i];
                out->v[out->n - 1 - i] = t;
        }
        return r;
}

/* The newest limit rows as added (SQLite takes the newest by at_us; rows
 * come in time order, so the two agree but for rows added late), oldest first. */
int ce_be_audit_recent(void *impl, size_t limit, struct cat_audit **ret, size_t *ret_n, lserr *err)
{
        _cleanup_(refs_free) struct refs refs = {0};
        struct cat_etcd *e = impl;
        const char *what = "list recent audit";
        struct audit_list l = {0};
        int r;

        CE_LOCK_SCOPE(e);
        r = ce_settle(e, err);
        if (r == 0 && limit)
                r = newest_refs(e, limit, &refs, what, err);
        if (r == 0)
                r = rows_of(e, refs.v, refs.n, &l, what, err);
        if (r == 0 && l.n > 1)
                qsort(l.v, l.n, sizeof(*l.v), by_time);
        if (r == 0)
                r = audit_out(e, &l, ret, ret_n, what, err);
        free(l.v);
        return r < 0 ? read_failed(e, r, what, err) : 0;
}

/* ---- events ---------------------------------------------------------------------------- */

static int event_encode(const struct cat_event *ev, char **ret, size_t *ret_len)
{
        struct ce_rec w;

        ce_rec_begin(&w);
        ce_rec_i64(&w, "at_us", ev->at_us ? ev->at_us : cat_now_us());
        ce_rec_str(&w, "kind", ev->kind);
        ce_rec_str(&w, "group", ev->group);
        ce_rec_str(&w, "txid", ev->txid);
        ce_rec_text(&w, "message", ev->message, sizeof(ev->message));
        return ce_rec_end(&w, ret, ret_len);
}

/* One try: the counter's next id, written with the counter if it did not
 * move; 1 when it did (the counter is then as etcd has it). */
static int event_put(struct cat_etcd *e, const char *text, size_t len, long long *ret_id, const char *what,
                     lserr *err)
{
        _cleanup_(ce_kv_clear) struct etcd_kv now = {0};
        _cleanup_free_ char *seq = NULL;
        char sk[CE_KEY_SIZE], ik[CE_KEY_SIZE], digits[CE_ID_DIGITS + 1];
        int64_t id, rev = 0;
        struct ce_rec w;
        size_t n = 0;
        int r = 0;

        ce_key_raw(e, sk, "event/seq", "");
        if (!e->event_seq.loaded)
                r = ce_seq_load(e, &e->event_seq, sk, err);
        if (r < 0)
                return r;
        id = e->event_seq.last + 1;
        ce_id_digits(digits, (uint64_t)id);
        ce_key_raw(e, ik, "event/id/", digits);
        ce_rec_begin(&w);
        ce_rec_i64(&w, "last", id);
        if (ce_rec_end(&w, &seq, &n) < 0)
                return ce_fail(e, err, -ENOMEM, what, "out of memory");
        struct etcd_op ops[] = {{.kind = ETCD_OP_PUT, .key = ik, .value = text, .value_len = len},
                                {.kind = ETCD_OP_PUT, .key = sk, .value = seq, .value_len = n}};
        struct etcd_cmp same = {.key = sk, .target = ETCD_MOD, .result = ETCD_EQUAL, .num = e->event_seq.mod};
        r = ce_txn(e, what, &same, 1, ops, 2, &rev, &now, err);
        if (r > 0)
                return ce_seq_from(&e->event_seq, &now) < 0 ? ce_fail(e, err, -EIO, what, CE_WHY_BAD) : 1;
        if (r == 0) {
                e->event_seq = (struct ce_seq){.last = id, .mod = rev, .loaded = 1};
                *ret_id = id;
        }
        return r;
}

int ce_be_event_add(void *impl, const struct cat_event *ev, long long *ret_id, lserr *err)
{
        _cleanup_free_ char *text = NULL;
        struct cat_etcd *e = impl;
        long long id = 0;
        char what[96];
        size_t len = 0;
        int r;

        if (!cat_id_fits(ev->kind, sizeof(ev->kind), 0) || !cat_id_fits(ev->group, sizeof(ev->group), 1) ||
            !cat_id_fits(ev->txid, sizeof(ev->txid), 1))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": event: kind empty or a field too long",
                                 e->prefix);
        snprintf(what, sizeof(what), "event %s", ev->kind);
        if (event_encode(ev, &text, &len) < 0)
                return ce_fail(e, err, -ENOMEM, what, "out of memory");
        CE_LOCK_SCOPE(e);
        r = ce_settle(e, err);
        for (int tries = 0; r == 0 && id == 0; tries++) {
                if (tries == CE_TRIES)
                        return ce_fail(e, err, -EAGAIN, what, "other writers kept taking the next id");
                r = event_put(e, text, len, &id, what, err);
                r = r == 1 ? 0 : r;
        }
        if (r == 0 && ret_id)
                *ret_id = id;
        return r;
}

struct event_list {
        struct cat_event *v;
        size_t n, cap;
};

static int collect_event(void *ctx, size_t range, const struct etcd_kv *kv)
{
        struct event_list *l = ctx;
        struct cat_event *ev;
        struct ce_in in;
        int r;

        if (l->n == l->cap) {
                size_t cap = l->cap ? 2 * l->cap : 16;
                struct cat_event *v = reallocarray(l->v, cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        ev = memset(&l->v[l->n], 0, sizeof(*ev));
        r = ce_in_begin(&in, kv->value, kv->value_len);
        if (r < 0)
                return r;
        ev->id = ce_id_of(kv->key);
        ev->at_us = ce_in_i64(&in, "at_us");
        ce_in_str(&in, "kind", ev->kind, sizeof(ev->kind));
        ce_in_str(&in, "group", ev->group, sizeof(ev->group));
        ce_in_str(&in, "txid", ev->txid, sizeof(ev->txid));
        ce_in_str(&in, "message", ev->message, sizeof(ev->message));
        r = ce_in_end(&in);
        if (r == 0)
                l->n++;
        return r;
}

/* Ids are dense between the oldest kept and the counter (events are only
 * deleted from the oldest on), so the page is an id range. */
int ce_be_events(void *impl, long long after_id, size_t limit, int newest, struct cat_event **ret, size_t *ret_n,
                 lserr *err)
{
        struct cat_etcd *e = impl;
        const char *what = "list events";
        struct event_list l = {0};
        struct ce_seq s = {0};
        char key[CE_KEY_SIZE];
        int64_t lo = 0, hi = 0;
        int r;

        CE_LOCK_SCOPE(e);
        ce_key_raw(e, key, "event/seq", "");
        r = ce_settle(e, err);
        if (r == 0 && limit)
                r = ce_seq_load(e, &s, key, err);
        if (r == 0 && limit && s.last)
                r = ce_id_first(e, "event/id/", &lo, what, err);
        hi = s.last;
        if (lo > 0 && after_id >= lo)
                lo = after_id < hi ? after_id + 1 : hi + 1;
        if (lo > 0 && lo <= hi && (uint64_t)(hi - lo) >= limit) {
                if (newest)
                        lo = hi - (int64_t)(limit - 1);
                else
                        hi = lo + (int64_t)(limit - 1);
        }
        if (r == 0 && lo > 0 && lo <= hi)
                r = ce_id_read(e, "event/id/", lo, hi, collect_event, &l, what, err);
        if (r < 0) {
                free(l.v);
                return read_failed(e, r, what, err);
        }
        *ret = l.n ? l.v : NULL;
        *ret_n = l.n;
        if (!l.n)
                free(l.v);
        return 0;
}
