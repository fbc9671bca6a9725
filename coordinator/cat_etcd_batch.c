/* cat_etcd_batch: every buffered write as a unit (a public call's operations and
 * guards), held from cat_batch_begin to cat_batch_end and written in as few
 * etcd transactions as etcd's limits allow, records first and decisions last. */
#include "cat_etcd_priv.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

/* An audit row writes three keys: the row, and its places in time and id order. */
#define AUDIT_OPS 3
/* What one operation or compare adds to a request besides its key and value. */
#define OP_FRAME 64

/* The units written together in one etcd transaction. Operations and
 * compares point into the units; audit rows' keys are made at the write. */
struct chunk {
        struct ce_unit *units[ETCD_TXN_OPS_MAX];
        size_t n_units, n_ops, n_cmps, n_audit, bytes;
        struct etcd_op ops[ETCD_TXN_OPS_MAX];
        struct etcd_cmp cmps[ETCD_TXN_OPS_MAX];
        enum ce_tag tags[ETCD_TXN_OPS_MAX];
        struct ce_unit *owner[ETCD_TXN_OPS_MAX]; /* names a failed compare */
        char (*gen)[CE_KEY_SIZE];                 /* audit keys and references */
        char seq_key[CE_KEY_SIZE];
        char *seq_value;
};

static size_t b64(size_t n)
{
        return 4 * ((n + 2) / 3);
}

/* ---- units ------------------------------------------------------------------------ */

void ce_unit_clear(struct ce_unit *u)
{
        free(u->what);
        for (size_t i = 0; i < u->n_ops; i++) {
                free(u->ops[i].key);
                free(u->ops[i].value);
        }
        for (size_t i = 0; i < u->n_guards; i++)
                free(u->guards[i].key);
        free(u->txkey);
        memset(u, 0, sizeof(*u));
}

int ce_unit_op(struct ce_unit *u, enum etcd_op_kind kind, const char *key, char *value, size_t len)
{
        struct ce_op *op = &u->ops[u->n_ops];

        assert(u->n_ops < CE_UNIT_OPS);
        op->key = strdup(key);
        if (!op->key) {
                free(value);
                return -ENOMEM;
        }
        op->kind = kind;
        op->value = value;
        op->len = len;
        op->prefix = 0;
        u->n_ops++;
        return 0;
}

int ce_unit_guard(struct ce_unit *u, const char *key, enum etcd_target target, enum etcd_result result, int64_t num,
                  enum ce_tag tag)
{
        struct ce_guard *g = &u->guards[u->n_guards];

        assert(u->n_guards < CE_UNIT_GUARDS);
        g->key = strdup(key);
        if (!g->key)
                return -ENOMEM;
        g->target = target;
        g->result = result;
        g->num = num;
        g->tag = tag;
        u->n_guards++;
        return 0;
}

static size_t unit_ops(const struct ce_unit *u)
{
        return u->audit ? AUDIT_OPS : u->n_ops;
}

static size_t unit_bytes(const struct ce_unit *u)
{
        size_t n = 0;

        if (u->audit)
                return b64(u->ops[0].len) + AUDIT_OPS * (b64(ETCD_KEY_MAX) + OP_FRAME) + 2 * b64(ETCD_KEY_MAX);
        for (size_t i = 0; i < u->n_ops; i++)
                n += b64(strlen(u->ops[i].key)) + b64(u->ops[i].len) + OP_FRAME;
        /* A compare's key is sent twice: in the compare and in the read of
         * the failure branch. */
        for (size_t i = 0; i < u->n_guards; i++)
                n += 2 * (b64(strlen(u->guards[i].key)) + OP_FRAME);
        return n;
}

/* ---- the buffer ------------------------------------------------------------------- */

void ce_units_free(struct cat_etcd *e)
{
        for (size_t i = 0; i < e->n_units; i++)
                ce_unit_clear(&e->units[i]);
        free(e->units);
        e->units = NULL;
        e->n_units = e->cap_units = e->n_records = 0;
        e->puts = strset_free(e->puts);
        e->puts_cap = 0;
}

/* A record whose only guard is that its transaction is logged: its puts may
 * replace an earlier record's of the same key, whose guard is the same. */
static int plain_record(const struct ce_unit *u)
{
        if (u->decision || u->audit)
                return 0;
        for (size_t i = 0; i < u->n_guards; i++)
                if (u->guards[i].tag != CE_G_TXN)
                        return 0;
        return 1;
}

/* Notes unit k's puts in e->puts, made again twice as large when full. */
static int index_puts(struct cat_etcd *e, size_t k)
{
        const struct ce_unit *u = &e->units[k];

        for (size_t i = 0; i < u->n_ops; i++) {
                if (u->ops[i].kind != ETCD_OP_PUT)
                        continue;
                while (!e->puts || strset_put(e->puts, u->ops[i].key, "", (long)(k * CE_UNIT_OPS + i)) == -2) {
                        size_t cap = e->puts_cap ? 2 * e->puts_cap : 256;
                        struct strset *s = strset_new(cap);
                        if (!s)
                                return -ENOMEM;
                        strset_free(e->puts);
                        e->puts = s;
                        e->puts_cap = cap;
                        for (size_t j = 0; j < k; j++)
                                if (plain_record(&e->units[j]))
                                        for (size_t o = 0; o < e->units[j].n_ops; o++)
                                                if (e->units[j].ops[o].kind == ETCD_OP_PUT &&
                                                    strset_put(s, e->units[j].ops[o].key, "",
                                                               (long)(j * CE_UNIT_OPS + o)) == -2)
                                                        return -ENOMEM;
                }
        }
        return 0;
}

static int same_guards(const struct ce_unit *a, const struct ce_unit *b)
{
        if (a->n_guards != b->n_guards)
                return 0;
        for (size_t i = 0; i < a->n_guards; i++)
                if (a->guards[i].target != b->guards[i].target || a->guards[i].result != b->guards[i].result ||
                    a->guards[i].num != b->guards[i].num || strcmp(a->guards[i].key, b->guards[i].key) != 0)
                        return 0;
        return 1;
}

/* Moves u's puts of keys a buffered plain record under the same guards
 * already puts into that record (the later value stands); what is left of
 * u stays in u. */
static void coalesce(struct cat_etcd *e, struct ce_unit *u)
{
        size_t k = 0;

        for (size_t i = 0; i < u->n_ops; i++) {
                struct ce_op *op = &u->ops[i];
                long at = op->kind == ETCD_OP_PUT && e->puts ? strset_get(e->puts, op->key, "") : -1;
                if (at < 0 || !same_guards(&e->units[(size_t)at / CE_UNIT_OPS], u)) {
                        u->ops[k++] = *op;
                        continue;
                }
                struct ce_op *old = &e->units[(size_t)at / CE_UNIT_OPS].ops[(size_t)at % CE_UNIT_OPS];
                free(old->value);
                old->value = op->value;
                old->len = op->len;
                free(op->key);
        }
        u->n_ops = k;
}

/* Drops the written units: the records only, or all. */
static void drop_units(struct cat_etcd *e, int records_only)
{
        size_t k = 0;

        for (size_t i = 0; i < e->n_units; i++) {
                if (records_only && e->units[i].decision)
                        e->units[k++] = e->units[i];
                else
                        ce_unit_clear(&e->units[i]);
        }
        e->n_units = k;
        e->n_records = 0;
        /* Only records are indexed, and none is left. */
        e->puts = strset_free(e->puts);
        e->puts_cap = 0;
}

struct ce_unit *ce_buffered_decision(struct cat_etcd *e, const char *txid)
{
        for (size_t i = 0; i < e->n_units; i++)
                if (e->units[i].decision && strcmp(e->units[i].txid, txid) == 0)
                        return &e->units[i];
        return NULL;
}

/* A later write of a buffered decision's transaction (its finish) joins it:
 * its keys replace or follow the first one's; the first one's guards (as of
 * the first read) stand. */
static void merge(struct ce_unit *d, struct ce_unit *u)
{
        for (size_t i = 0; i < u->n_ops; i++) {
                struct ce_op *op = &u->ops[i], *same = NULL;
                for (size_t k = 0; k < d->n_ops; k++)
                        if (strcmp(d->ops[k].key, op->key) == 0)
                                same = &d->ops[k];
                if (!same) {
                        assert(d->n_ops < CE_UNIT_OPS);
                        d->ops[d->n_ops++] = *op;
                } else {
                        free(same->key);
                        free(same->value);
                        *same = *op;
                }
                *op = (struct ce_op){0};
        }
        u->n_ops = 0;
}

static int push(struct cat_etcd *e, struct ce_unit *u)
{
        int plain = e->batch && plain_record(u);

        if (plain) {
                coalesce(e, u);
                if (u->n_ops == 0) {
                        ce_unit_clear(u);
                        return 0;
                }
        }
        if (e->n_units == e->cap_units) {
                size_t cap = e->cap_units ? 2 * e->cap_units : 64;
                struct ce_unit *v = reallocarray(e->units, cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                e->units = v;
                e->cap_units = cap;
        }
        e->units[e->n_units++] = *u;
        if (!u->decision)
                e->n_records++;
        memset(u, 0, sizeof(*u));
        return plain ? index_puts(e, e->n_units - 1) : 0;
}

/* ---- chunks ----------------------------------------------------------------------- */

static int has_cmp(const struct chunk *c, const struct ce_guard *g)
{
        for (size_t i = 0; i < c->n_cmps; i++)
                if (c->cmps[i].target == g->target && c->cmps[i].result == g->result && c->cmps[i].num == g->num &&
                    strcmp(c->cmps[i].key, g->key) == 0)
                        return 1;
        return 0;
}

/* etcd refuses a transaction that writes one key twice: a second write of a
 * key goes into the next transaction, after the first. */
static int key_taken(const struct chunk *c, const struct ce_unit *u)
{
        for (size_t i = 0; i < u->n_ops; i++)
                for (size_t k = 0; k < c->n_ops; k++)
                        if (strcmp(c->ops[k].key, u->ops[i].key) == 0)
                                return 1;
        return 0;
}

/* A record's guard that its transaction is logged is left out when the
 * transaction's begin is in the same etcd transaction: compares see the
 * store before it, and the begin's own guard stands for both. */
static int needless(const struct chunk *c, const struct ce_guard *g)
{
        if (g->tag != CE_G_TXN)
                return 0;
        for (size_t i = 0; i < c->n_ops; i++)
                if (c->ops[i].kind == ETCD_OP_PUT && strcmp(c->ops[i].key, g->key) == 0)
                        return 1;
        return 0;
}

static int fits(const struct chunk *c, const struct ce_unit *u)
{
        size_t seq = u->audit && !c->n_audit, cmps = seq;

        if (c->n_units == 0)
                return 1;
        for (size_t i = 0; i < u->n_guards; i++)
                cmps += !has_cmp(c, &u->guards[i]) && !needless(c, &u->guards[i]);
        /* Audit keys are made at the write, after the fixed operations. */
        return c->n_ops + AUDIT_OPS * c->n_audit + unit_ops(u) + seq + (c->n_audit > 0) <= ETCD_TXN_OPS_MAX &&
               c->n_cmps + (c->n_audit > 0) + cmps <= ETCD_TXN_OPS_MAX - 1 /* the fence */ &&
               c->bytes + unit_bytes(u) <= CE_TXN_BYTES && (u->audit || !key_taken(c, u));
}

static void add(struct chunk *c, struct ce_unit *u)
{
        c->units[c->n_units++] = u;
        c->bytes += unit_bytes(u);
        for (size_t i = 0; i < u->n_guards; i++) {
                const struct ce_guard *g = &u->guards[i];
                if (has_cmp(c, g) || needless(c, g))
                        continue;
                c->cmps[c->n_cmps] = (struct etcd_cmp){.key = g->key, .target = g->target, .result = g->result,
                                                       .num = g->num};
                c->tags[c->n_cmps] = g->tag;
                c->owner[c->n_cmps++] = u;
        }
        if (u->audit) {
                c->n_audit++;
                return;
        }
        for (size_t i = 0; i < u->n_ops; i++)
                c->ops[c->n_ops++] = (struct etcd_op){.kind = u->ops[i].kind, .key = u->ops[i].key,
                                                      .value = u->ops[i].value, .value_len = u->ops[i].len,
                                                      .prefix = u->ops[i].prefix};
}

/* The audit rows' keys with the counter's next ids, the counter's new value
 * and its guard, after the fixed operations and compares. */
static int audit_ops(struct cat_etcd *e, struct chunk *c, size_t *n_ops, size_t *n_cmps, lserr *err)
{
        struct ce_rec w;
        int64_t id = e->audit_seq.last;
        size_t g = 0, len = 0;
        int r;

        for (size_t i = 0; i < c->n_units; i++) {
                struct ce_unit *u = c->units[i];
                char digits[CE_ID_DIGITS + 1];
                if (!u->audit)
                        continue;
                ce_id_digits(digits, (uint64_t)++id);
                char *ref = c->gen[g + 3];
                snprintf(ref, CE_KEY_SIZE, "%s/%s.%s", u->txkey, u->at, digits);
                r = ce_key_raw(e, c->gen[g], "audit/tx/", ref);
                if (r == 0)
                        r = ce_key_raw(e, c->gen[g + 1], "audit/at/", strchr(ref, '/') + 1);
                if (r == 0)
                        r = ce_key_raw(e, c->gen[g + 2], "audit/id/", digits);
                if (r < 0)
                        return ce_fail(e, err, r, u->what, "the audit row's keys are too long");
                c->ops[(*n_ops)++] = (struct etcd_op){.kind = ETCD_OP_PUT, .key = c->gen[g], .value = u->ops[0].value,
                                                      .value_len = u->ops[0].len};
                for (int k = 1; k < 3; k++)
                        c->ops[(*n_ops)++] = (struct etcd_op){.kind = ETCD_OP_PUT, .key = c->gen[g + k], .value = ref,
                                                              .value_len = strlen(ref)};
                g += 4;
        }
        free(c->seq_value);
        c->seq_value = NULL;
        ce_rec_begin(&w);
        ce_rec_i64(&w, "last", id);
        r = ce_rec_end(&w, &c->seq_value, &len);
        if (r < 0)
                return r;
        c->ops[(*n_ops)++] = (struct etcd_op){.kind = ETCD_OP_PUT, .key = c->seq_key, .value = c->seq_value,
                                              .value_len = len};
        c->cmps[*n_cmps] = (struct etcd_cmp){.key = c->seq_key, .target = ETCD_MOD, .result = ETCD_EQUAL,
                                             .num = e->audit_seq.mod};
        c->tags[*n_cmps] = CE_G_SEQ;
        c->owner[(*n_cmps)++] = NULL;
        return 0;
}

static int guard_failed(struct cat_etcd *e, const struct ce_unit *u, enum ce_tag tag, lserr *err)
{
        const char *what = u ? u->what : "record audit rows";

        switch (tag) {
        case CE_G_TXN:
                return ce_fail(e, err, -ENOENT, what, "no such transaction");
        case CE_G_UNDECIDED:
                return ce_fail(e, err, -EBUSY, what, "another writer logged a decision meanwhile");
        case CE_G_ABSENT:
                return ce_fail(e, err, -EEXIST, what, "transaction already logged");
        default:
                return ce_fail(e, err, -EAGAIN, what, "another writer changed it meanwhile");
        }
}

/* Writes c in one etcd transaction; audit rows take their ids again when
 * another writer moved the counter. */
static int write_chunk(struct cat_etcd *e, struct chunk *c, enum ce_tag *ret_tag, lserr *err)
{
        char what[256];
        int r = 0;

        if (c->n_units == 1)
                snprintf(what, sizeof(what), "%s", c->units[0]->what);
        else
                snprintf(what, sizeof(what), "write %zu buffered records", c->n_units);
        if (c->n_audit && !e->audit_seq.loaded)
                r = ce_seq_load(e, &e->audit_seq, c->seq_key, err);
        for (int tries = 0; r == 0; tries++) {
                _cleanup_(ce_kv_clear) struct etcd_kv now = {0};
                size_t n_ops = c->n_ops, n_cmps = c->n_cmps;
                int64_t rev = 0;
                if (c->n_audit && (r = audit_ops(e, c, &n_ops, &n_cmps, err)) < 0)
                        return r;
                r = ce_txn(e, what, c->cmps, n_cmps, c->ops, n_ops, &rev, &now, err);
                if (r == 0 && c->n_audit) {
                        e->audit_seq.last += (int64_t)c->n_audit;
                        e->audit_seq.mod = rev;
                }
                for (size_t i = 0; r == 0 && i < c->n_units; i++)
                        if (c->units[i]->hdr)
                                ce_hcache_put(e, c->units[i]->ops[0].value, c->units[i]->ops[0].len, rev);
                if (r <= 0)
                        return r;
                if (c->tags[r - 1] == CE_G_SEQ && tries + 1 < CE_TRIES) {
                        r = ce_seq_from(&e->audit_seq, &now);
                        if (r < 0)
                                return ce_fail(e, err, r, what, CE_WHY_BAD);
                        continue;
                }
                if (ret_tag)
                        *ret_tag = c->tags[r - 1];
                return guard_failed(e, c->owner[r - 1], c->tags[r - 1], err);
        }
        return r;
}

static void chunk_freep(struct chunk **c)
{
        if (*c) {
                free((*c)->gen);
                free((*c)->seq_value);
                free(*c);
        }
}

/* The next unit to write from *at on: the records in order, then (when
 * passes is 2) the decisions; NULL when none is left. */
static struct ce_unit *next_unit(struct cat_etcd *e, size_t at[2], size_t passes)
{
        for (; at[0] < passes; at[0]++, at[1] = 0)
                for (; at[1] < e->n_units; at[1]++)
                        if (e->units[at[1]].decision == (int)at[0])
                                return &e->units[at[1]];
        return NULL;
}

/* Writes the buffered records, then (passes 2) the decisions, in as few
 * transactions as fit: a decision shares the last records' transaction when
 * there is room, so it is durable with them, never before. */
static int write_units(struct cat_etcd *e, size_t passes, enum ce_tag *ret_tag, lserr *err)
{
        _cleanup_(chunk_freep) struct chunk *c = calloc(1, sizeof(*c));
        size_t at[2] = {0, 0};
        struct ce_unit *u;
        int r;

        if (!c || !(c->gen = calloc(4 * ETCD_TXN_OPS_MAX, sizeof(*c->gen))))
                return -ENOMEM;
        ce_key_raw(e, c->seq_key, "audit/seq", "");
        for (;;) {
                c->n_units = c->n_ops = c->n_cmps = c->n_audit = c->bytes = 0;
                while ((u = next_unit(e, at, passes)) && fits(c, u)) {
                        add(c, u);
                        at[1]++;
                }
                if (c->n_units == 0)
                        return 0;
                r = write_chunk(e, c, ret_tag, err);
                if (r < 0)
                        return r;
        }
}

/* Writes the records, then (unless records_only) the decisions, and drops
 * them; on a failure every buffered write is dropped. */
static int flush(struct cat_etcd *e, int records_only, enum ce_tag *ret_tag, lserr *err)
{
        int r = write_units(e, records_only ? 1 : 2, ret_tag, err);

        drop_units(e, r == 0 && records_only);
        if (r == -ENOMEM)
                lserr_set(err, r, "catalog etcd \"%s\": write buffered records: out of memory", e->prefix);
        return r;
}

/* A failure of a batch's write before its end: its end reports it too. */
static int remember(struct cat_etcd *e, int r, const lserr *why, lserr *err)
{
        if (r < 0 && e->batch && !e->batch_err.code)
                e->batch_err = *why;
        if (r < 0)
                lserr_set(err, r, "%s", why->msg);
        return r;
}

int ce_write(struct cat_etcd *e, struct ce_unit *u, enum ce_tag *ret_tag, lserr *err)
{
        CE_LOCK_SCOPE(e);
        struct ce_unit *d = u->decision && e->batch ? ce_buffered_decision(e, u->txid) : NULL;
        lserr why = {0};
        int r;

        if (ret_tag)
                *ret_tag = CE_G_NONE;
        /* Outside a batch nothing stays buffered. */
        assert(e->batch || e->n_units == 0);
        if (d) {
                merge(d, u);
                ce_unit_clear(u);
                return 0;
        }
        r = push(e, u);
        if (r < 0) {
                ce_unit_clear(u);
                return lserr_set(err, r, "catalog etcd \"%s\": buffer a record: out of memory", e->prefix);
        }
        if (!e->batch)
                r = flush(e, 0, ret_tag, &why);
        else if (e->n_records >= CE_BATCH_RECORDS)
                r = flush(e, 1, ret_tag, &why);
        return remember(e, r, &why, err);
}

int ce_settle(struct cat_etcd *e, lserr *err)
{
        lserr why = {0};

        if (!e->batch || e->n_units == 0)
                return 0;
        return remember(e, flush(e, 0, NULL, &why), &why, err);
}

/* ---- the batch ------------------------------------------------------------------ */

int ce_be_batch_begin(void *impl, lserr *err)
{
        struct cat_etcd *e = ce_lock(impl);

        /* Held until cat_batch_end: other threads' calls wait, as with SQLite. */
        assert(!e->batch);
        e->batch = 1;
        e->known_txid[0] = '\0';
        lserr_clear(&e->batch_err);
        return 0;
}

int ce_be_batch_end(void *impl, lserr *err)
{
        struct cat_etcd *e = impl;
        /* Gives back the hold of cat_batch_begin. */
        __attribute__((unused)) _cleanup_(ce_unlockp) struct cat_etcd *held = e;
        lserr why = {0};
        int r;

        assert(e->batch);
        r = flush(e, 0, NULL, &why);
        e->batch = 0;
        e->known_txid[0] = '\0';
        if (r < 0)
                return lserr_set(err, r, "%s", why.msg);
        if (e->batch_err.code)
                return lserr_set(err, e->batch_err.code, "%s", e->batch_err.msg);
        return 0;
}
