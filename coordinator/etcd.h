/* etcd: a client of etcd's v3 API through its JSON gateway (libcurl for HTTP,
 * json-c for JSON, libsodium for base64): ranges, puts, deletes, transactions
 * with compares, leases, status, compaction. One struct etcd is one HTTP
 * connection, used by one thread at a time. Keys are text; values are bytes. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "lserr.h"

/* etcd's own limits (3.4 defaults): a request's size (--max-request-bytes)
 * and the operations of one transaction branch (--max-txn-ops). */
#define ETCD_REQUEST_MAX (1536 * 1024)
#define ETCD_TXN_OPS_MAX 128
/* Longest endpoint URL and key we send. */
#define ETCD_URL_MAX 256
#define ETCD_KEY_MAX 512
/* An answer larger than this is refused: the members of a 10,000-member cut
 * with every message at its longest (~40 MB) fit; json-c's tree of an answer
 * is a few times its size. */
#define ETCD_REPLY_MAX (64u << 20)

struct etcd_opts {
        const char *const *endpoints; /* "http://10.0.0.1:2379" or https://; tried in order */
        size_t n_endpoints;
        const char *ca_file;   /* https: the CA that signed etcd's certificate */
        const char *cert_file; /* https: our client certificate and key, or NULL */
        const char *key_file;
        unsigned timeout_ms; /* per request; 0: 5000 */
};

struct etcd_kv {
        char *key;
        uint8_t *value; /* value_len bytes and a NUL after them */
        size_t value_len;
        int64_t create_revision, mod_revision, version, lease;
};

struct etcd;

int etcd_open(const struct etcd_opts *o, struct etcd **ret, lserr *err);
struct etcd *etcd_close(struct etcd *c);
void etcd_closep(struct etcd **c);
/* Requests sent since open (each try of each endpoint) and their time. */
struct etcd_stats {
        uint64_t requests;
        double ms;
};
void etcd_stats(const struct etcd *c, struct etcd_stats *ret);
/* The endpoint the last request went to (the first one before any). */
const char *etcd_endpoint(const struct etcd *c);

/* One key (prefix 0) or every key that starts with key (prefix 1), sorted by
 * key, at most limit of them (0: no limit; *ret_more says whether there were
 * more). rev (may be NULL) gets the store's revision at the read. The caller
 * frees the array with etcd_kvs_free. */
int etcd_range(struct etcd *c, const char *key, int prefix, size_t limit, struct etcd_kv **ret, size_t *ret_n,
               int *ret_more, int64_t *rev, lserr *err);
void etcd_kvs_free(struct etcd_kv *kvs, size_t n);

/* lease 0: none. */
int etcd_put(struct etcd *c, const char *key, const void *value, size_t len, int64_t lease, lserr *err);
/* *deleted (may be NULL): how many keys went. */
int etcd_delete(struct etcd *c, const char *key, int prefix, int64_t *deleted, lserr *err);

enum etcd_target { ETCD_CREATE, ETCD_MOD, ETCD_VERSION, ETCD_VALUE };
enum etcd_result { ETCD_EQUAL, ETCD_NOT_EQUAL, ETCD_GREATER, ETCD_LESS };

/* "key's target result num" (or value, for ETCD_VALUE). A key that does not
 * exist has create, mod and version 0. */
struct etcd_cmp {
        const char *key;
        enum etcd_target target;
        enum etcd_result result;
        int64_t num;
        const void *value;
        size_t value_len;
};

enum etcd_op_kind { ETCD_OP_PUT, ETCD_OP_DELETE, ETCD_OP_RANGE };

struct etcd_op {
        enum etcd_op_kind kind;
        const char *key;
        int prefix; /* DELETE, RANGE: every key under key */
        const void *value;
        size_t value_len;
        int64_t lease;
        size_t limit; /* RANGE: at most this many keys (0: all) */
};

/* The branch a transaction took, and what its RANGE operations read (in
 * their order in that branch). */
struct etcd_txn_result {
        int succeeded;
        int64_t revision;
        size_t n_ranges;
        struct etcd_kv **kvs; /* per RANGE */
        size_t *n_kvs;
        int *more; /* per RANGE: its limit left keys out */
};

/* If every compare holds, the `then` operations, else the `otherwise` ones,
 * atomically. At most ETCD_TXN_OPS_MAX of each; no key written twice. */
int etcd_txn(struct etcd *c, const struct etcd_cmp *cmp, size_t n_cmp, const struct etcd_op *then, size_t n_then,
             const struct etcd_op *otherwise, size_t n_otherwise, struct etcd_txn_result *ret, lserr *err);
void etcd_txn_result_free(struct etcd_txn_result *r);
static inline void etcd_txn_resultp(struct etcd_txn_result *r)
{
        etcd_txn_result_free(r);
}

/* *ret_ttl (may be NULL): the TTL etcd granted, which may be above ttl_s. */
int etcd_lease_grant(struct etcd *c, int64_t ttl_s, int64_t *ret_id, int64_t *ret_ttl, lserr *err);
/* *ret_ttl: seconds left after the renewal, 0 when the lease is gone. */
int etcd_lease_keepalive(struct etcd *c, int64_t id, int64_t *ret_ttl, lserr *err);
int etcd_lease_revoke(struct etcd *c, int64_t id, lserr *err);

struct etcd_status {
        char version[32];
        int64_t db_size, revision, raft_term;
        uint64_t leader, member_id;
};

int etcd_status(struct etcd *c, struct etcd_status *ret, lserr *err);
/* Drops the history before rev; then etcd_defragment gives the space back. */
int etcd_compact(struct etcd *c, int64_t rev, lserr *err);
int etcd_defragment(struct etcd *c, lserr *err);

/* ---- the answers' parsers, apart for the fuzzer (tests/fuzz/fuzz_etcd.c) ---- */

/* Each takes one JSON answer of len bytes (not NUL-terminated) and fills its
 * result, or fails with a message that names what was wrong. */
int etcd_parse_range(const char *body, size_t len, struct etcd_kv **ret, size_t *ret_n, int *ret_more,
                     int64_t *rev, lserr *err);
int etcd_parse_txn(const char *body, size_t len, struct etcd_txn_result *ret, lserr *err);
int etcd_parse_lease(const char *body, size_t len, int64_t *ret_id, int64_t *ret_ttl, lserr *err);
int etcd_parse_status(const char *body, size_t len, struct etcd_status *ret, lserr *err);
int etcd_parse_deleted(const char *body, size_t len, int64_t *deleted, lserr *err);
