/* cat_etcd_txn: the decision log in etcd: a transaction's header key (its whole
 * record), its decision key (created once, so a decision is never turned
 * around), and the index of transactions not yet done. */
#include "cat_etcd_priv.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

#define STATUS_FIELD sizeof(((struct cat_txn *)0)->cut_status)

/* ---- the header record ------------------------------------------------------------ */

int ce_hdr_encode(const struct cat_txn *t, char **ret, size_t *ret_len)
{
        struct ce_rec w;

        assert((unsigned)t->kind < CAT_N_WORDS(cat_kind_words) && (unsigned)t->state < CAT_N_WORDS(cat_state_words));
        ce_rec_begin(&w);
        ce_rec_str(&w, "txid", t->txid);
        ce_rec_str(&w, "kind", cat_kind_words[t->kind]);
        ce_rec_str(&w, "group", t->group);
        ce_rec_str(&w, "name", t->name);
        ce_rec_str(&w, "mode", t->mode);
        ce_rec_str(&w, "state", cat_state_words[t->state]);
        ce_rec_i64(&w, "committed", t->committed != 0);
        ce_rec_text(&w, "reason", t->reason, sizeof(t->reason));
        ce_rec_i64(&w, "started_us", t->started_us);
        ce_rec_i64(&w, "decided_us", t->decided_us);
        ce_rec_i64(&w, "finished_us", t->finished_us);
        ce_rec_i64(&w, "lease_ms", t->lease_ms);
        ce_rec_text(&w, "cut_status", t->cut_status, STATUS_FIELD);
        ce_rec_text(&w, "cut_status_reason", t->cut_status_reason, sizeof(t->cut_status_reason));
        ce_rec_text(&w, "branch_status", t->branch_status, STATUS_FIELD);
        ce_rec_text(&w, "branch_reason", t->branch_reason, sizeof(t->branch_reason));
        ce_rec_i64(&w, "members", t->members);
        return ce_rec_end(&w, ret, ret_len);
}

int ce_hdr_decode(const void *value, size_t len, struct ce_hdr *ret)
{
        struct cat_txn *t = &ret->t;
        struct ce_in in;
        int kind, state, r;

        memset(ret, 0, sizeof(*ret));
        r = ce_in_begin(&in, value, len);
        if (r < 0)
                return r;
        ce_in_str(&in, "txid", t->txid, sizeof(t->txid));
        kind = ce_in_word(&in, "kind", cat_kind_words, CAT_N_WORDS(cat_kind_words));
        ce_in_str(&in, "group", t->group, sizeof(t->group));
        ce_in_str(&in, "name", t->name, sizeof(t->name));
        ce_in_str(&in, "mode", t->mode, sizeof(t->mode));
        state = ce_in_word(&in, "state", cat_state_words, CAT_N_WORDS(cat_state_words));
        t->committed = ce_in_i64(&in, "committed") != 0;
        ce_in_str(&in, "reason", t->reason, sizeof(t->reason));
        t->started_us = ce_in_i64(&in, "started_us");
        t->decided_us = ce_in_i64(&in, "decided_us");
        t->finished_us = ce_in_i64(&in, "finished_us");
        t->lease_ms = (unsigned)ce_in_i64(&in, "lease_ms");
        ce_in_str(&in, "cut_status", t->cut_status, sizeof(t->cut_status));
        ce_in_str(&in, "cut_status_reason", t->cut_status_reason, sizeof(t->cut_status_reason));
        ce_in_str(&in, "branch_status", t->branch_status, sizeof(t->branch_status));
        ce_in_str(&in, "branch_reason", t->branch_reason, sizeof(t->branch_reason));
        t->members = (unsigned)ce_in_i64_or(&in, "members", 0);
        r = ce_in_end(&in);
        if (r < 0)
                return r;
        t->kind = (enum cat_kind)kind;
        t->state = (enum cat_txn_state)state;
        return 0;
}

int ce_hdr_get(struct cat_etcd *e, const char *txid, struct ce_hdr *ret, const char *what, lserr *err)
{
        _cleanup_(ce_kv_clear) struct etcd_kv kv = {0};
        char key[CE_KEY_SIZE];
        int r = ce_key(e, key, 0, "txn/", txid, NULL);

        if (r < 0)
                return ce_fail(e, err, -EINVAL, what, "transaction id too long for an etcd key");
        r = ce_get(e, key, &kv, what, err);
        if (r <= 0)
                return r;
        if (ce_hdr_decode(kv.value, kv.value_len, ret) < 0)
                return ce_fail(e, err, -EIO, what, CE_WHY_BAD);
        ret->create = kv.create_revision;
        ret->mod = kv.mod_revision;
        return 1;
}

/* ---- the header cache --------------------------------------------------------------- */

static struct ce_hcache *hcache_find(const struct cat_etcd *e, const char *txid)
{
        for (size_t i = 0; i < CE_HCACHE; i++)
                if (e->hcache[i].h.t.txid[0] && strcmp(e->hcache[i].h.t.txid, txid) == 0)
                        return (struct ce_hcache *)&e->hcache[i];
        return NULL;
}

int ce_hcache_get(const struct cat_etcd *e, const char *txid, struct ce_hdr *ret)
{
        const struct ce_hcache *c = hcache_find(e, txid);

        if (!c)
                return 0;
        if (ret)
                *ret = c->h;
        return 1;
}

void ce_hcache_put(struct cat_etcd *e, const void *value, size_t len, int64_t rev)
{
        struct ce_hcache *c;
        struct ce_hdr h;

        if (ce_hdr_decode(value, len, &h) < 0)
                return;
        c = hcache_find(e, h.t.txid);
        if (!c) {
                /* The least recently written goes. */
                c = &e->hcache[0];
                for (size_t i = 1; i < CE_HCACHE; i++)
                        if (e->hcache[i].used < c->used)
                                c = &e->hcache[i];
                c->h.create = rev;
        }
        h.create = c->h.create;
        h.mod = rev;
        c->h = h;
        c->used = ++e->hcache_tick;
}

void ce_hcache_drop(struct cat_etcd *e, const char *txid)
{
        struct ce_hcache *c = hcache_find(e, txid);

        if (c)
                memset(c, 0, sizeof(*c));
}

void ce_hcache_clear(struct cat_etcd *e)
{
        memset(e->hcache, 0, sizeof(e->hcache));
}

/* ---- many headers ------------------------------------------------------------------ */

struct hdr_list {
        struct ce_hdr *v;
        size_t n, cap;
};

static int collect_hdr(void *ctx, size_t range, const struct etcd_kv *kv)
{
        struct hdr_list *l = ctx;

        if (l->n == l->cap) {
                size_t cap = l->cap ? 2 * l->cap : 16;
                struct ce_hdr *v = reallocarray(l->v, cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        if (ce_hdr_decode(kv->value, kv->value_len, &l->v[l->n]) < 0)
                return -EIO;
        l->v[l->n].create = kv->create_revision;
        l->v[l->n].mod = kv->mod_revision;
        l->n++;
        return 0;
}

/* A failure of collect_hdr (its own code, no message), or the read's. */
static int list_failed(struct cat_etcd *e, int r, const char *what, lserr *err)
{
        if (r == -EIO)
                return ce_fail(e, err, r, what, CE_WHY_BAD);
        if (r == -ENOMEM)
                return ce_fail(e, err, r, what, "out of memory");
        return r;
}

int ce_hdrs_of(struct cat_etcd *e, const char *const *txids, size_t n, struct ce_hdr **ret, size_t *ret_n,
               const char *what, lserr *err)
{
        _cleanup_free_ char(*keys)[CE_KEY_SIZE] = calloc(ETCD_TXN_OPS_MAX, CE_KEY_SIZE);
        struct etcd_op ops[ETCD_TXN_OPS_MAX];
        struct hdr_list l = {0};
        int r = keys ? 0 : -ENOMEM;

        for (size_t i = 0; r == 0 && i < n; i += ETCD_TXN_OPS_MAX) {
                size_t m = n - i < ETCD_TXN_OPS_MAX ? n - i : ETCD_TXN_OPS_MAX;
                for (size_t k = 0; r == 0 && k < m; k++) {
                        if (!cat_id_fits(txids[i + k], CAT_ID_FIELD, 0) ||
                            ce_key(e, keys[k], 0, "txn/", txids[i + k], NULL) < 0)
                                r = -EIO;
                        ops[k] = (struct etcd_op){.kind = ETCD_OP_RANGE, .key = keys[k]};
                }
                if (r == 0)
                        r = ce_ranges(e, ops, m, collect_hdr, &l, what, err);
        }
        if (r < 0) {
                free(l.v);
                return list_failed(e, r, what, err);
        }
        *ret = l.v;
        *ret_n = l.n;
        return 0;
}

int ce_hdrs_idx(struct cat_etcd *e, const char *prefix, struct ce_hdr **ret, size_t *ret_n, const char *what,
                lserr *err)
{
        _cleanup_free_ const char **ids = NULL;
        struct etcd_kv *idx = NULL;
        size_t n = 0;
        int r = ce_list(e, prefix, 0, &idx, &n, NULL, what, err);

        if (r == 0 && n && !(ids = calloc(n, sizeof(*ids))))
                r = ce_fail(e, err, -ENOMEM, what, "out of memory");
        /* An index key's value is its transaction's id. */
        for (size_t i = 0; r == 0 && i < n; i++)
                ids[i] = (const char *)idx[i].value;
        if (r == 0)
                r = ce_hdrs_of(e, ids, n, ret, ret_n, what, err);
        etcd_kvs_free(idx, n);
        return r;
}

int ce_hdrs_all(struct cat_etcd *e, struct ce_hdr **ret, size_t *ret_n, const char *what, lserr *err)
{
        struct etcd_kv *kvs = NULL;
        struct hdr_list l = {0};
        char key[CE_KEY_SIZE];
        size_t n = 0;
        int r;

        ce_key_raw(e, key, "txn/", "");
        r = ce_list(e, key, 0, &kvs, &n, NULL, what, err);
        for (size_t i = 0; r == 0 && i < n; i++)
                r = collect_hdr(&l, 0, &kvs[i]);
        etcd_kvs_free(kvs, n);
        if (r < 0) {
                free(l.v);
                return list_failed(e, r, what, err);
        }
        *ret = l.v;
        *ret_n = l.n;
        return 0;
}

static int by_start(const void *pa, const void *pb)
{
        const struct ce_hdr *a = pa, *b = pb;

        if (a->t.started_us != b->t.started_us)
                return a->t.started_us < b->t.started_us ? -1 : 1;
        return a->create < b->create ? -1 : a->create > b->create;
}

static int by_start_desc(const void *pa, const void *pb)
{
        return by_start(pb, pa);
}

void ce_hdrs_sort(struct ce_hdr *h, size_t n, int desc)
{
        if (n > 1)
                qsort(h, n, sizeof(*h), desc ? by_start_desc : by_start);
}

int ce_hdrs_out(const struct ce_hdr *h, size_t n, struct cat_txn **ret, size_t *ret_n)
{
        struct cat_txn *v = NULL;

        if (n) {
                v = calloc(n, sizeof(*v));
                if (!v)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                v[i] = h[i].t;
        *ret = v;
        *ret_n = n;
        return 0;
}

/* ---- writes ------------------------------------------------------------------------- */

static int begin_check(struct cat_etcd *e, const struct cat_txn *t, lserr *err)
{
        if (!cat_id_fits(t->txid, sizeof(t->txid), 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": begin: transaction id empty or longer than %zu "
                                 "bytes", e->prefix, sizeof(t->txid) - 1);
        if ((unsigned)t->kind >= CAT_N_WORDS(cat_kind_words))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": begin \"%s\": unknown kind %d", e->prefix,
                                 t->txid, (int)t->kind);
        if (!cat_id_fits(t->group, sizeof(t->group), 1) || !cat_id_fits(t->name, sizeof(t->name), 1) ||
            !cat_id_fits(t->mode, sizeof(t->mode), 1))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": begin \"%s\": group, name or mode longer than "
                                 "its field", e->prefix, t->txid);
        return 0;
}

/* In a batch the begin is buffered with the records that follow it (a cut's
 * placeholders): one etcd transaction for both. A txid already logged is
 * then refused at the batch's end (-EEXIST), with everything of the batch. */
static int begin_buffered(struct cat_etcd *e, const struct cat_txn *h, const struct etcd_op *ops, size_t n,
                          const char *what, lserr *err)
{
        _cleanup_(ce_unit_clear) struct ce_unit u = {0};
        int r = 0;

        u.hdr = 1;
        memcpy(u.txid, h->txid, sizeof(u.txid));
        u.what = strdup(what);
        if (!u.what)
                r = -ENOMEM;
        /* The values are text: the header's JSON and the txid. */
        for (size_t i = 0; r == 0 && i < n; i++) {
                char *v = strndup(ops[i].value, ops[i].value_len);
                r = v ? ce_unit_op(&u, ETCD_OP_PUT, ops[i].key, v, ops[i].value_len) : -ENOMEM;
        }
        if (r == 0)
                r = ce_unit_guard(&u, ops[0].key, ETCD_CREATE, ETCD_EQUAL, 0, CE_G_ABSENT);
        if (r < 0)
                return ce_fail(e, err, r, what, "out of memory");
        r = ce_write(e, &u, NULL, err);
        if (r == 0)
                snprintf(e->known_txid, sizeof(e->known_txid), "%s", h->txid);
        return r;
}

/* Reads only the identity, started_us (0: now), lease_ms and members. One etcd
 * transaction: the header (if absent), the index of open transactions, and
 * for cuts and reverts the group's and the reverts' indexes. */
int ce_be_txn_begin(void *impl, const struct cat_txn *t, lserr *err)
{
        struct cat_etcd *e = impl;
        char hk[CE_KEY_SIZE], ok[CE_KEY_SIZE], ck[CE_KEY_SIZE], rk[CE_KEY_SIZE], what[96];
        _cleanup_free_ char *text = NULL;
        struct cat_txn h = {0};
        struct etcd_op ops[4];
        size_t len = 0, n = 0;
        int64_t rev = 0;
        int r = begin_check(e, t, err);

        if (r < 0)
                return r;
        snprintf(what, sizeof(what), "begin \"%s\"", t->txid);
        memcpy(h.txid, t->txid, sizeof(h.txid));
        h.kind = t->kind;
        memcpy(h.group, t->group, sizeof(h.group));
        memcpy(h.name, t->name, sizeof(h.name));
        memcpy(h.mode, t->mode, sizeof(h.mode));
        h.state = CAT_TXN_STARTED;
        h.started_us = t->started_us ? t->started_us : cat_now_us();
        h.lease_ms = t->lease_ms;
        h.members = t->members;
        if (ce_key(e, hk, 0, "txn/", h.txid, NULL) < 0 || ce_key(e, ok, 0, "open/", h.txid, NULL) < 0 ||
            ce_key(e, ck, 0, "cut/", h.group, h.txid, NULL) < 0 || ce_key(e, rk, 0, "revert/", h.txid, NULL) < 0)
                return ce_fail(e, err, -EINVAL, what, "names too long for an etcd key");
        r = ce_hdr_encode(&h, &text, &len);
        if (r < 0)
                return ce_fail(e, err, r, what, "out of memory");
        ops[n++] = (struct etcd_op){.kind = ETCD_OP_PUT, .key = hk, .value = text, .value_len = len};
        ops[n++] = (struct etcd_op){.kind = ETCD_OP_PUT, .key = ok, .value = h.txid, .value_len = strlen(h.txid)};
        if (h.kind != CAT_KIND_DELETE)
                ops[n++] = (struct etcd_op){.kind = ETCD_OP_PUT, .key = ck, .value = h.txid,
                                            .value_len = strlen(h.txid)};
        if (h.kind == CAT_KIND_REVERT)
                ops[n++] = (struct etcd_op){.kind = ETCD_OP_PUT, .key = rk, .value = h.txid,
                                            .value_len = strlen(h.txid)};
        struct etcd_cmp absent = {.key = hk, .target = ETCD_CREATE, .result = ETCD_EQUAL, .num = 0};
        CE_LOCK_SCOPE(e);
        if (e->batch)
                return begin_buffered(e, &h, ops, n, what, err);
        r = ce_settle(e, err);
        if (r == 0)
                r = ce_txn(e, what, &absent, 1, ops, n, &rev, NULL, err);
        if (r > 0)
                return ce_fail(e, err, -EEXIST, what, "transaction already logged");
        if (r == 0)
                ce_hcache_put(e, text, len, rev);
        return r;
}

/* The header as the next write must find it: a decision buffered in this
 * batch, else etcd's. 0, or -ENOENT with err filled. */
static int read_for_write(struct cat_etcd *e, const char *txid, const char *what, struct ce_hdr *ret, lserr *err)
{
        struct ce_unit *d = e->batch ? ce_buffered_decision(e, txid) : NULL;
        int r;

        if (d) {
                assert(d->n_ops > 0 && d->n_guards > 0 && d->guards[0].tag == CE_G_MOD);
                if (ce_hdr_decode(d->ops[0].value, d->ops[0].len, ret) < 0)
                        return ce_fail(e, err, -EIO, what, CE_WHY_BAD);
                ret->mod = d->guards[0].num;
                return 0;
        }
        /* A begin still buffered is written first: a decision compares the
         * header's revision, which only its write gives. */
        for (size_t i = 0; e->batch && i < e->n_units; i++)
                if (e->units[i].hdr && !e->units[i].decision && strcmp(e->units[i].txid, txid) == 0) {
                        r = ce_settle(e, err);
                        if (r < 0)
                                return r;
                        break;
                }
        if (ce_hcache_get(e, txid, ret))
                return 0;
        r = ce_hdr_get(e, txid, ret, what, err);
        if (r == 0)
                return ce_fail(e, err, -ENOENT, what, "no such transaction");
        return r < 0 ? r : 0;
}

/* A decision unit writing h over the header read at revision mod; the
 * caller adds what else it writes. */
static int decision_unit(struct cat_etcd *e, struct ce_unit *u, const struct cat_txn *h, int64_t mod,
                         const char *what)
{
        char key[CE_KEY_SIZE], *text = NULL;
        size_t len = 0;
        int r;

        u->decision = 1;
        u->hdr = 1;
        memcpy(u->txid, h->txid, sizeof(u->txid));
        u->what = strdup(what);
        if (!u->what || ce_key(e, key, 0, "txn/", h->txid, NULL) < 0)
                return -ENOMEM;
        r = ce_hdr_encode(h, &text, &len);
        if (r == 0)
                r = ce_unit_op(u, ETCD_OP_PUT, key, text, len);
        if (r == 0)
                r = ce_unit_guard(u, key, ETCD_MOD, ETCD_EQUAL, mod, CE_G_MOD);
        return r;
}

/* Writes u; 1 when another writer came between (read again and retry). */
static int write_or_retry(struct cat_etcd *e, struct ce_unit *u, int tries, lserr *err)
{
        enum ce_tag tag = CE_G_NONE;
        lserr why = {0};
        int r = ce_write(e, u, &tag, &why);

        if (r < 0 && !e->batch && (tag == CE_G_MOD || tag == CE_G_UNDECIDED) && tries + 1 < CE_TRIES)
                return 1;
        if (r < 0)
                return lserr_set(err, r, "%s", why.msg);
        return 0;
}

/* A decision is written with a compare that its key does not exist yet:
 * whatever another writer did meanwhile, one decision stands. */
static int decide_once(struct cat_etcd *e, const char *txid, int commit, const char *reason, int tries,
                       lserr *err)
{
        _cleanup_(ce_unit_clear) struct ce_unit u = {0};
        const char *want = commit ? "commit" : "abort";
        char what[96], dk[CE_KEY_SIZE];
        struct ce_hdr h;
        size_t n;
        int r;

        snprintf(what, sizeof(what), "decide \"%s\"", txid);
        r = read_for_write(e, txid, what, &h, err);
        if (r < 0)
                return r;
        if (h.t.state != CAT_TXN_STARTED) {
                /* Already decided (maybe even finished): the same answer again is
                 * a retry, the other answer would break atomicity. */
                if (h.t.committed != !!commit)
                        return lserr_set(err, -EBUSY, "catalog etcd \"%s\": decide \"%s\": already decided %s, "
                                         "refusing %s", e->prefix, txid, h.t.committed ? "commit" : "abort", want);
                return 0;
        }
        h.t.state = commit ? CAT_TXN_COMMIT : CAT_TXN_ABORT;
        h.t.committed = !!commit;
        n = cat_text_len(reason, sizeof(h.t.reason));
        memcpy(h.t.reason, reason, n);
        h.t.reason[n] = '\0';
        h.t.decided_us = cat_now_us();
        r = decision_unit(e, &u, &h.t, h.mod, what);
        if (r == 0)
                r = ce_key(e, dk, 0, "dec/", txid, NULL) < 0 ? -ENOMEM : 0;
        if (r == 0)
                r = ce_unit_op(&u, ETCD_OP_PUT, dk, strdup(commit ? "{\"commit\":1}" : "{\"commit\":0}"), 12);
        if (r == 0 && !u.ops[1].value)
                r = -ENOMEM;
        if (r == 0)
                r = ce_unit_guard(&u, dk, ETCD_CREATE, ETCD_EQUAL, 0, CE_G_UNDECIDED);
        if (r < 0)
                return ce_fail(e, err, r, what, "out of memory");
        return write_or_retry(e, &u, tries, err);
}

/* reason is kept for an abort only (NULL is ""), cut to the field's size. A
 * repeated decision keeps the first one's reason and time. In a batch the
 * decision is written at its end, after the batch's records. */
int ce_be_txn_decide(void *impl, const char *txid, int commit, const char *reason, lserr *err)
{
        struct cat_etcd *e = impl;
        int r = 1;

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": decide: transaction id empty or longer than "
                                 "%zu bytes", e->prefix, CAT_ID_FIELD - 1);
        if (commit || !reason)
                reason = "";
        CE_LOCK_SCOPE(e);
        for (int tries = 0; r == 1; tries++)
                r = decide_once(e, txid, commit, reason, tries, err);
        return r;
}

static int finish_once(struct cat_etcd *e, const char *txid, int tries, lserr *err)
{
        _cleanup_(ce_unit_clear) struct ce_unit u = {0};
        char what[96], ok[CE_KEY_SIZE];
        struct ce_hdr h;
        int r;

        snprintf(what, sizeof(what), "finish \"%s\"", txid);
        r = read_for_write(e, txid, what, &h, err);
        if (r < 0)
                return r;
        if (h.t.state == CAT_TXN_DONE)
                return 0;
        if (h.t.state == CAT_TXN_STARTED)
                return ce_fail(e, err, -EBUSY, what, "no decision logged yet");
        h.t.state = CAT_TXN_DONE;
        h.t.finished_us = cat_now_us();
        r = decision_unit(e, &u, &h.t, h.mod, what);
        if (r == 0)
                r = ce_key(e, ok, 0, "open/", txid, NULL) < 0 ? -ENOMEM : 0;
        if (r == 0)
                r = ce_unit_op(&u, ETCD_OP_DELETE, ok, NULL, 0);
        if (r < 0)
                return ce_fail(e, err, r, what, "out of memory");
        return write_or_retry(e, &u, tries, err);
}

/* Undecided transactions are refused with -EBUSY: the decision must be logged
 * before agents can have answered it. */
int ce_be_txn_finish(void *impl, const char *txid, lserr *err)
{
        struct cat_etcd *e = impl;
        int r = 1;

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": finish: transaction id empty or longer than "
                                 "%zu bytes", e->prefix, CAT_ID_FIELD - 1);
        CE_LOCK_SCOPE(e);
        for (int tries = 0; r == 1; tries++)
                r = finish_once(e, txid, tries, err);
        return r;
}

/* ---- reads -------------------------------------------------------------------------- */

int ce_be_txn_get(void *impl, const char *txid, struct cat_txn *ret, lserr *err)
{
        struct cat_etcd *e = impl;
        struct ce_hdr h;
        char what[96];
        int r;

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": get: transaction id empty or longer than %zu "
                                 "bytes", e->prefix, CAT_ID_FIELD - 1);
        snprintf(what, sizeof(what), "get \"%s\"", txid);
        CE_LOCK_SCOPE(e);
        r = ce_settle(e, err);
        if (r == 0)
                r = ce_hdr_get(e, txid, &h, what, err);
        if (r == 0)
                return ce_fail(e, err, -ENOENT, what, "no such transaction");
        if (r < 0)
                return r;
        *ret = h.t;
        return 0;
}

/* Oldest first: by start, then in the order they were logged. */
int ce_be_txn_unresolved(void *impl, struct cat_txn **ret, size_t *ret_n, lserr *err)
{
        struct cat_etcd *e = impl;
        const char *what = "list unresolved transactions";
        _cleanup_free_ struct ce_hdr *h = NULL;
        char key[CE_KEY_SIZE];
        size_t n = 0;
        int r;

        CE_LOCK_SCOPE(e);
        ce_key_raw(e, key, "open/", "");
        r = ce_settle(e, err);
        if (r == 0)
                r = ce_hdrs_idx(e, key, &h, &n, what, err);
        if (r < 0)
                return r;
        ce_hdrs_sort(h, n, 0);
        r = ce_hdrs_out(h, n, ret, ret_n);
        if (r < 0)
                return ce_fail(e, err, r, what, "out of memory");
        return 0;
}
