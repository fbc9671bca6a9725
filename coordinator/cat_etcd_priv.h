/* cat_etcd_priv: what the etcd catalog's files (cat_etcd*.c) share: its state
 * and lock, record keys and values, reads, and the guarded etcd transaction. */
#pragma once

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "cat_etcd.h"
#include "catalog_priv.h"
#include "cleanup.h"
#include "etcd.h"
#include "strset.h"

#define CE_KEY_SIZE (ETCD_KEY_MAX + 1)
/* The layout of keys and values (kept in <prefix>meta); a newer one is refused. */
#define CE_LAYOUT 1
/* One etcd transaction's request: etcd refuses one over ETCD_REQUEST_MAX; the
 * estimate counts base64 and JSON framing, with room left. */
#define CE_TXN_BYTES (1024 * 1024)
/* Records a batch holds before it writes them early (its decisions still last). */
#define CE_BATCH_RECORDS 8192
/* Keys per etcd range of a listing that may be long; an answer stays far
 * below ETCD_REPLY_MAX even with records at their longest. */
#define CE_PAGE 2048
/* Rounds of a read-modify-write that met another writer before giving up. */
#define CE_TRIES 8
/* Ids are 20 digits in keys, so that key order is id order. */
#define CE_ID_DIGITS 20

/* What a compare that failed means. */
enum ce_tag {
        CE_G_NONE,
        CE_G_TXN,       /* the transaction is logged: -ENOENT */
        CE_G_MOD,       /* the key is as we read it: another writer came between */
        CE_G_UNDECIDED, /* no decision is logged: another writer decided */
        CE_G_SEQ,       /* a counter is as we read it: take the next ids again */
        CE_G_ABSENT,    /* a begin's header is not there yet: -EEXIST */
};

/* An etcd operation and a compare that own their strings. */
struct ce_op {
        enum etcd_op_kind kind;
        char *key;
        char *value;
        size_t len;
        int prefix;
};

struct ce_guard {
        char *key;
        enum etcd_target target;
        enum etcd_result result;
        int64_t num;
        enum ce_tag tag;
};

#define CE_UNIT_OPS 4 /* a revert's begin */
#define CE_UNIT_GUARDS 2

/* One write of a public call: its operations go into one etcd transaction
 * together, under its guards. */
struct ce_unit {
        char *what;                /* names it in messages: record member "web1@host-a" of "t1" */
        int decision;              /* written after every record of its batch */
        char txid[CAT_ID_FIELD];   /* a decision's transaction */
        struct ce_op ops[CE_UNIT_OPS];
        size_t n_ops;
        struct ce_guard guards[CE_UNIT_GUARDS];
        size_t n_guards;
        int hdr;                   /* ops[0] puts txid's header (begin, decision) */
        /* An audit row (ops[0].value, no key yet): its three keys take the
         * counter's next id when it is written. */
        int audit;
        char *txkey;               /* its transaction id as a key part */
        char at[CE_ID_DIGITS + 1]; /* its time as a key part */
};

/* A transaction's header key as read: the record and its revisions (the create
 * revision orders transactions logged in the same microsecond, as a rowid). */
struct ce_hdr {
        struct cat_txn t;
        int64_t create, mod;
};

/* Headers this catalog wrote last. While it leads it is their only writer
 * (its fence refuses any other), so a read-modify-write of one (decide,
 * finish) starts from here instead of a read; the compare of the header's
 * revision still guards the write. Emptied on any failed write and when
 * the fence changes. */
#define CE_HCACHE 32
struct ce_hcache {
        struct ce_hdr h; /* h.t.txid[0] == '\0': unused */
        uint64_t used;
};

/* A counter of ids (audit rows, events) as last read or written. */
struct ce_seq {
        int64_t last, mod;
        int loaded;
};

struct cat_etcd {
        /* One etcd connection, used by one thread at a time. Recursive: a
         * batch holds it from cat_batch_begin to cat_batch_end. */
        pthread_mutex_t lock;
        struct etcd *etcd;
        char prefix[CAT_ETCD_PREFIX_MAX + 1];
        char fence_key[CE_KEY_SIZE];
        int64_t fence_epoch; /* 0: no fence */
        int64_t compacted;   /* the revision of our last compaction */
        struct ce_seq audit_seq, event_seq;
        /* The batch: this thread's buffered writes. */
        int batch;
        struct ce_unit *units;
        size_t n_units, cap_units, n_records;
        /* The keys the buffered records put, to their (unit, op): a later put
         * of the same key replaces the value (etcd writes a key once a
         * transaction, and only the last value would stand). */
        struct strset *puts;
        size_t puts_cap;
        char known_txid[CAT_ID_FIELD]; /* seen logged, or begun, during this batch */
        struct ce_hcache hcache[CE_HCACHE];
        uint64_t hcache_tick;
        lserr batch_err;               /* a write of the batch that failed early */
};

/* ---- the lock ------------------------------------------------------------------- */

struct cat_etcd *ce_lock(struct cat_etcd *e);
void ce_unlockp(struct cat_etcd **e);
#define CE_LOCK_SCOPE(e) __attribute__((unused)) _cleanup_(ce_unlockp) struct cat_etcd *ce_locked_ = ce_lock(e)

/* ---- keys ------------------------------------------------------------------------- */

/* prefix + dir + the parts (a NULL ends them), each escaped (bytes other than
 * [A-Za-z0-9._@-] as %XX, so no part holds a '/'), '/' between them, and one
 * after the last when trailing. -ENAMETOOLONG when over ETCD_KEY_MAX. */
int ce_key(const struct cat_etcd *e, char out[CE_KEY_SIZE], int trailing, const char *dir, ...)
        __attribute__((sentinel));
/* prefix + dir + rest, rest taken as it is (already a key's tail). */
int ce_key_raw(const struct cat_etcd *e, char out[CE_KEY_SIZE], const char *dir, const char *rest);
/* id escaped as a key part, into out (3 * CAT_ID_FIELD bytes are enough). */
void ce_esc(char *out, size_t size, const char *id);
/* An id's key tail: 20 digits. */
void ce_id_digits(char out[CE_ID_DIGITS + 1], uint64_t id);

/* ---- record values: JSON objects ------------------------------------------------- */

/* Builds a record field by field; the first failure (no memory) sticks. */
struct ce_rec {
        struct json_object *o;
        int failed;
};

void ce_rec_begin(struct ce_rec *w);
void ce_rec_str(struct ce_rec *w, const char *name, const char *s);
/* Free text, cut on a character boundary to what field holds (cat_text_len). */
void ce_rec_text(struct ce_rec *w, const char *name, const char *s, size_t field);
void ce_rec_i64(struct ce_rec *w, const char *name, int64_t v);
/* The record as text (malloc'd, the caller's); frees the object either way. */
int ce_rec_end(struct ce_rec *w, char **ret, size_t *ret_len);

/* Reads a record field by field; a field missing or of another type sticks. */
struct ce_in {
        struct json_object *o;
        int bad;
};

/* -EIO when value is not one JSON object. */
int ce_in_begin(struct ce_in *in, const void *value, size_t len);
void ce_in_str(struct ce_in *in, const char *name, char *dst, size_t size);
int64_t ce_in_i64(struct ce_in *in, const char *name);
/* As ce_in_i64, but a missing field is def: one that records written by an
 * older lockstepd lack. */
int64_t ce_in_i64_or(struct ce_in *in, const char *name, int64_t def);
/* The index of the field's word in words (a word not there is bad). */
int ce_in_word(struct ce_in *in, const char *name, const char *const *words, size_t n);
/* 0, or -EIO when a field was bad; frees the object. */
int ce_in_end(struct ce_in *in);

/* ---- messages ------------------------------------------------------------------- */

/* Fills err with `catalog etcd "<prefix>": <what>: <why>` and returns code. */
int ce_fail(const struct cat_etcd *e, lserr *err, int code, const char *what, const char *why);
/* What ce_fail says about a record this program cannot read. */
#define CE_WHY_BAD "a record holds a value this program does not know (written by a newer version?)"

/* ---- reads ---------------------------------------------------------------------- */

void ce_kv_clear(struct etcd_kv *kv);

/* One key: 1 with *ret filled (ce_kv_clear), 0 when it does not exist. */
int ce_get(struct cat_etcd *e, const char *key, struct etcd_kv *ret, const char *what, lserr *err);

/* Every key under prefix, at most limit (0: all) in one answer (etcd_kvs_free). */
int ce_list(struct cat_etcd *e, const char *prefix, size_t limit, struct etcd_kv **ret, size_t *ret_n,
            int *ret_more, const char *what, lserr *err);

/* Called for each key read, with the index of the range that held it; < 0 stops. */
typedef int (*ce_kv_fn)(void *ctx, size_t range, const struct etcd_kv *kv);

/* Reads the RANGE operations (keys, or prefixes) in etcd transactions of
 * ETCD_TXN_OPS_MAX, calling fn for every key in range order. */
int ce_ranges(struct cat_etcd *e, const struct etcd_op *ranges, size_t n, ce_kv_fn fn, void *ctx, const char *what,
              lserr *err);

/* Every key under prefix + dir whose tail is a fixed-width string of digits
 * (and fixed punctuation), in key order, at most limit (SIZE_MAX: all), read
 * in pages of CE_PAGE. */
int ce_scan(struct cat_etcd *e, const char *prefix, size_t limit, ce_kv_fn fn, void *ctx, const char *what,
            lserr *err);

/* ---- the guarded transaction ------------------------------------------------------ */

/* The ops, if every compare holds and, once a fence is set, the leader key
 * still has the fence's epoch; else nothing. 0 when written (*ret_rev: its
 * revision); -ESTALE (err filled) when the fence failed; 1 + i when compare i
 * failed (err untouched; *ret_failed, may be NULL, gets that key as it is
 * now, ce_kv_clear); or another failure (err filled). */
int ce_txn(struct cat_etcd *e, const char *what, const struct etcd_cmp *cmps, size_t n_cmps, const struct etcd_op *ops,
           size_t n_ops, int64_t *ret_rev, struct etcd_kv *ret_failed, lserr *err);

/* Deletes the keys (prefixes when prefix), ETCD_TXN_OPS_MAX per etcd transaction. */
int ce_delete_keys(struct cat_etcd *e, char *const *keys, size_t n, int prefix, const char *what, lserr *err);

/* ---- buffered writes (cat_etcd_batch.c) -------------------------------------------- */

/* Frees what u owns and zeroes it. */
void ce_unit_clear(struct ce_unit *u);
/* Adds an operation or a guard to u, copying key (value is taken, NULL: none). */
int ce_unit_op(struct ce_unit *u, enum etcd_op_kind kind, const char *key, char *value, size_t len);
int ce_unit_guard(struct ce_unit *u, const char *key, enum etcd_target target, enum etcd_result result, int64_t num,
                  enum ce_tag tag);

/* Takes u (zeroed after) into the batch, or writes it now outside one. A
 * decision joins a buffered one of the same transaction. When a guard failed
 * *ret_tag (may be NULL) says which, and err says so in u's words. */
int ce_write(struct cat_etcd *e, struct ce_unit *u, enum ce_tag *ret_tag, lserr *err);

/* The buffered decision of txid, NULL when none. */
struct ce_unit *ce_buffered_decision(struct cat_etcd *e, const char *txid);

/* Before a call that is not buffered: writes the batch so far. */
int ce_settle(struct cat_etcd *e, lserr *err);

/* Drops every buffered write (the batch's end or the catalog's close). */
void ce_units_free(struct cat_etcd *e);

/* ---- transaction headers (cat_etcd_txn.c) --------------------------------------- */

int ce_hdr_decode(const void *value, size_t len, struct ce_hdr *ret);
int ce_hdr_encode(const struct cat_txn *t, char **ret, size_t *ret_len);
/* txid's header: 1 and *ret, 0 when not logged. */
int ce_hdr_get(struct cat_etcd *e, const char *txid, struct ce_hdr *ret, const char *what, lserr *err);
/* An audit row's value (its key's id aside). */
/* a's detail (a->detail NULL) goes to detail. */
int ce_audit_decode(const struct etcd_kv *kv, struct cat_audit *a, char detail[CAT_DETAIL_MAX]);
/* n audit records as a list (one block, as cat_audit_list's); -ENOMEM, or
 * -EIO when one does not decode. */
int ce_audit_rows(const struct etcd_kv *kvs, size_t n, struct cat_audit **ret);
/* The header cache: 1 (and *ret, unless NULL) when txid's is there. */
int ce_hcache_get(const struct cat_etcd *e, const char *txid, struct ce_hdr *ret);
/* Notes the header a write put at revision rev (value as written). */
void ce_hcache_put(struct cat_etcd *e, const void *value, size_t len, int64_t rev);
void ce_hcache_drop(struct cat_etcd *e, const char *txid);
void ce_hcache_clear(struct cat_etcd *e);
/* The headers of the transactions named (those not logged are left out). */
int ce_hdrs_of(struct cat_etcd *e, const char *const *txids, size_t n, struct ce_hdr **ret, size_t *ret_n,
               const char *what, lserr *err);
/* The headers named by the values of index keys (open/, cut/, revert/). */
int ce_hdrs_idx(struct cat_etcd *e, const char *prefix, struct ce_hdr **ret, size_t *ret_n, const char *what,
                lserr *err);
/* Every header. */
int ce_hdrs_all(struct cat_etcd *e, struct ce_hdr **ret, size_t *ret_n, const char *what, lserr *err);
/* Sorts by start, then by logging order; newest first when desc. */
void ce_hdrs_sort(struct ce_hdr *h, size_t n, int desc);
/* The records of h (malloc'd, NULL when n is 0). */
int ce_hdrs_out(const struct ce_hdr *h, size_t n, struct cat_txn **ret, size_t *ret_n);

/* ---- counters and id ranges (cat_etcd_log.c) ------------------------------------- */

/* Loads the counter kept at key (absent: 0). */
int ce_seq_load(struct cat_etcd *e, struct ce_seq *s, const char *key, lserr *err);
/* The counter from its key as read (a failed compare's current value). */
int ce_seq_from(struct ce_seq *s, const struct etcd_kv *kv);

/* The id a key ends with (its last 20 digits), -1 when it does not. */
int64_t ce_id_of(const char *key);
/* The smallest id under dir ("event/id/"), 0 when there is none. */
int ce_id_first(struct cat_etcd *e, const char *dir, int64_t *ret, const char *what, lserr *err);
/* Calls fn for each key under dir whose id is in [lo, hi], in id order:
 * etcd ranges only prefixes, so the ids go as aligned decimal blocks (all
 * ids of 10^k that share their first 20 - k digits), 1000 ids per read. */
int ce_id_read(struct cat_etcd *e, const char *dir, int64_t lo, int64_t hi, ce_kv_fn fn, void *ctx, const char *what,
               lserr *err);
/* Deletes the keys under dir whose id is in [lo, hi], as blocks: one etcd
 * transaction per 10^6 ids. */
int ce_id_delete(struct cat_etcd *e, const char *dir, int64_t lo, int64_t hi, const char *what, lserr *err);
/* Compacts etcd's history at its current revision, so the store keeps only
 * what the catalog holds now (cat_etcd_defragment then frees the space). */
int ce_compact(struct cat_etcd *e, lserr *err);

/* ---- the backend's entries ------------------------------------------------------- */

int ce_be_batch_begin(void *impl, lserr *err);
int ce_be_batch_end(void *impl, lserr *err);
int ce_be_txn_begin(void *impl, const struct cat_txn *t, lserr *err);
int ce_be_txn_decide(void *impl, const char *txid, int commit, const char *reason, lserr *err);
int ce_be_txn_finish(void *impl, const char *txid, lserr *err);
int ce_be_txn_get(void *impl, const char *txid, struct cat_txn *ret, lserr *err);
int ce_be_txn_unresolved(void *impl, struct cat_txn **ret, size_t *ret_n, lserr *err);
int ce_be_put_member(void *impl, const char *txid, const struct cat_member *m, lserr *err);
int ce_be_put_image(void *impl, const char *txid, const struct cat_image *im, lserr *err);
int ce_be_members(void *impl, const char *txid, struct cat_member **ret, size_t *ret_n, lserr *err);
int ce_be_images(void *impl, const char *txid, struct cat_image **ret, size_t *ret_n, lserr *err);
int ce_be_cut_read(void *impl, const char *txid, size_t audit_limit, struct cat_cut *ret, lserr *err);
int ce_be_reverts_since(void *impl, const char *cut_txid, long long since_us, char ret_txid[65], lserr *err);
int ce_be_cut_set_status(void *impl, const char *txid, const char *status, const char *reason, lserr *err);
int ce_be_branch_set_status(void *impl, const char *txid, const char *status, const char *reason, lserr *err);
int ce_be_cuts_on_image(void *impl, const char *agent, const char *vm, const char *path, char (**ret)[65],
                        size_t *ret_n, lserr *err);
int ce_be_reverts_to(void *impl, const char *cut_txid, char (**ret)[65], size_t *ret_n, lserr *err);
int ce_be_image_users(void *impl, const char *agent, const char *vm, const char *path, const char *except_txid,
                      lserr *err);
int ce_be_image_repath(void *impl, const char *agent, const char *vm, const char *old_path, const char *new_path,
                       lserr *err);
int ce_be_cuts(void *impl, const char *group, struct cat_txn **ret, size_t *ret_n, lserr *err);
int ce_be_agent_put(void *impl, const struct cat_agent *a, lserr *err);
int ce_be_agents(void *impl, struct cat_agent **ret, size_t *ret_n, lserr *err);
int ce_be_group_put(void *impl, const char *name, const char *mode, const char *const *members, size_t n,
                    lserr *err);
int ce_be_audit_add(void *impl, const struct cat_audit *a, lserr *err);
int ce_be_audit_list(void *impl, const char *txid, size_t limit, struct cat_audit **ret, size_t *ret_n, lserr *err);
int ce_be_audit_recent(void *impl, size_t limit, struct cat_audit **ret, size_t *ret_n, lserr *err);
int ce_be_event_add(void *impl, const struct cat_event *ev, long long *ret_id, lserr *err);
int ce_be_events(void *impl, long long after_id, size_t limit, int newest, struct cat_event **ret, size_t *ret_n,
                 lserr *err);
int ce_be_history_trim(void *impl, long long keep_txns, long long keep_members, long long keep_audit, lserr *err);
int ce_be_events_trim(void *impl, long long keep, lserr *err);
int ce_be_sched_get(void *impl, const char *group, struct cat_sched *ret, lserr *err);
int ce_be_sched_put(void *impl, const struct cat_sched *s, lserr *err);
