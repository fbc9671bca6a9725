/* etcd: the requests of the v3 JSON gateway over one libcurl handle, with
 * failover along the endpoint list; etcd_parse.c reads the answers. */
#include "etcd.h"
#include "etcd_json.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "fsutil.h"
#include "log.h"

struct etcd {
        CURL *h;
        struct curl_slist *headers;
        char **endpoints;
        size_t n_endpoints, cur;
        unsigned timeout_ms;
        char *body; /* the last answer, NUL-terminated */
        size_t len, cap;
        int too_long;
        char curl_err[CURL_ERROR_SIZE];
        struct etcd_stats stats;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

/* libcurl's global state is set up once, whichever thread opens first. */
static void global_init(void)
{
        global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
        struct etcd *c = arg;
        size_t n = size * nmemb;

        if (c->len + n > ETCD_REPLY_MAX) {
                c->too_long = 1;
                return 0; /* ends the transfer */
        }
        if (c->len + n + 1 > c->cap) {
                size_t cap = c->cap ? c->cap : 4096;
                while (cap < c->len + n + 1)
                        cap *= 2;
                char *b = realloc(c->body, cap);
                if (!b)
                        return 0;
                c->body = b;
                c->cap = cap;
        }
        memcpy(c->body + c->len, p, n);
        c->len += n;
        c->body[c->len] = '\0';
        return n;
}

static int valid_endpoint(const char *e)
{
        size_t n = strlen(e);

        return n > 0 && n < ETCD_URL_MAX && (!strncmp(e, "http://", 7) || !strncmp(e, "https://", 8)) &&
               !strpbrk(e, " \t\r\n?#");
}

static int set_tls(struct etcd *c, const struct etcd_opts *o)
{
        CURLcode rc = CURLE_OK;

        if (o->ca_file)
                rc = curl_easy_setopt(c->h, CURLOPT_CAINFO, o->ca_file);
        if (rc == CURLE_OK && o->cert_file)
                rc = curl_easy_setopt(c->h, CURLOPT_SSLCERT, o->cert_file);
        if (rc == CURLE_OK && o->key_file)
                rc = curl_easy_setopt(c->h, CURLOPT_SSLKEY, o->key_file);
        return rc == CURLE_OK ? 0 : -EINVAL;
}

static int set_options(struct etcd *c, const struct etcd_opts *o)
{
        CURL *h = c->h;
        CURLcode rc = CURLE_OK;

        c->headers = curl_slist_append(NULL, "Content-Type: application/json");
        if (!c->headers)
                return -ENOMEM;
        /* HTTP/1.1 only: etcd routes HTTP/2 by content type, and a JSON
         * request needs none of it. No signals: lockstepd has threads. */
        rc |= curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        rc |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        rc |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        rc |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
        rc |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->timeout_ms < 2000 ? c->timeout_ms : 2000));
        rc |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
        rc |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        rc |= curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
        rc |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->curl_err);
        rc |= curl_easy_setopt(h, CURLOPT_POST, 1L);
        if (rc != CURLE_OK)
                return -EINVAL;
        return set_tls(c, o);
}

int etcd_open(const struct etcd_opts *o, struct etcd **ret, lserr *err)
{
        _cleanup_(etcd_closep) struct etcd *c = NULL;
        int r;

        if (o->n_endpoints == 0)
                return lserr_set(err, -EINVAL, "etcd: no endpoint given");
        for (size_t i = 0; i < o->n_endpoints; i++)
                if (!valid_endpoint(o->endpoints[i]))
                        return lserr_set(err, -EINVAL, "etcd: endpoint \"%.80s\" is not an http:// or https:// URL",
                                         o->endpoints[i]);
        pthread_once(&global_once, global_init);
        if (global_rc != CURLE_OK)
                return lserr_set(err, -EIO, "etcd: libcurl: %s", curl_easy_strerror(global_rc));
        c = calloc(1, sizeof(*c));
        if (!c)
                return lserr_set(err, -ENOMEM, "etcd: out of memory");
        c->timeout_ms = o->timeout_ms ? o->timeout_ms : 5000;
        c->endpoints = calloc(o->n_endpoints, sizeof(*c->endpoints));
        c->h = curl_easy_init();
        if (!c->endpoints || !c->h)
                return lserr_set(err, -ENOMEM, "etcd: out of memory for the HTTP client");
        for (size_t i = 0; i < o->n_endpoints; i++) {
                c->endpoints[i] = strdup(o->endpoints[i]);
                if (!c->endpoints[i])
                        return lserr_set(err, -ENOMEM, "etcd: out of memory");
                c->n_endpoints++;
        }
        r = set_options(c, o);
        if (r < 0)
                return lserr_set(err, r, "etcd: cannot set up the HTTP client (TLS files, options)");
        *ret = TAKE_PTR(c);
        return 0;
}

struct etcd *etcd_close(struct etcd *c)
{
        if (!c)
                return NULL;
        if (c->h)
                curl_easy_cleanup(c->h);
        curl_slist_free_all(c->headers);
        for (size_t i = 0; i < c->n_endpoints; i++)
                free(c->endpoints[i]);
        free(c->endpoints);
        free(c->body);
        free(c);
        return NULL;
}

void etcd_closep(struct etcd **c)
{
        *c = etcd_close(*c);
}

void etcd_stats(const struct etcd *c, struct etcd_stats *ret)
{
        *ret = c->stats;
}

const char *etcd_endpoint(const struct etcd *c)
{
        return c->endpoints[c->cur];
}

/* What etcd said in an error answer ({"error": "...", "code": N}), or the
 * start of the body when it is not that. */
static void error_text(const struct etcd *c, char *out, size_t n)
{
        struct json_object *o = NULL, *m;
        lserr e = {0};

        if (c->body && etcd_json_parse(c->body, c->len, &o, &e) == 0 &&
            ((json_object_object_get_ex(o, "message", &m) && json_object_is_type(m, json_type_string)) ||
             (json_object_object_get_ex(o, "error", &m) && json_object_is_type(m, json_type_string))))
                snprintf(out, n, "%.300s", json_object_get_string(m));
        else
                snprintf(out, n, "%.120s", c->body ? c->body : "");
        json_object_put(o);
}

/* This endpoint could not be reached and has not seen the request: the next
 * one may be asked. A request that may have reached etcd is never sent again
 * elsewhere (a txn or a lease grant would then happen twice): its outcome is
 * unknown, and the caller is told so. */
static int unreachable(CURL *h, CURLcode rc)
{
        long sent = 0;

        if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_SSL_CONNECT_ERROR)
                return 1;
        return rc == CURLE_OPERATION_TIMEDOUT && curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &sent) == CURLE_OK &&
               sent == 0;
}

/* A member that took the request and then stalled (a timeout) or said it
 * cannot serve (503, 504) is left for the next request: this one is not sent
 * again (its outcome is unknown), but a member cut off from its cluster, or
 * whose gateway cannot reach its own server, must not hold every later
 * request, lease renewals included. */
static void next_endpoint(struct etcd *c)
{
        c->cur = (c->cur + 1) % c->n_endpoints;
}

/* One HTTP exchange, counted and timed: etcd's cost is what HA adds to a cut. */
static CURLcode perform(struct etcd *c, const char *what)
{
        long long t0 = fsutil_mono_us();
        double ms;
        CURLcode rc = curl_easy_perform(c->h);

        ms = (double)(fsutil_mono_us() - t0) / 1e3;
        c->stats.requests++;
        c->stats.ms += ms;
        log_debug("etcd %s: %s: %.1f ms", c->endpoints[c->cur], what, ms);
        return rc;
}

/* POSTs json to path on the current endpoint, then on the others in turn
 * while they cannot be reached; on 200 the answer is in c->body. what names
 * the request in errors. */
static int post(struct etcd *c, const char *path, struct json_object *json, const char *what, lserr *err)
{
        const char *text = json_object_to_json_string_ext(json, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        char url[ETCD_URL_MAX + 64], why[400];
        CURLcode rc = CURLE_OK;
        long status = 0;
        size_t len;

        if (!text)
                return -ENOMEM;
        len = strlen(text);
        if (len > ETCD_REQUEST_MAX)
                return lserr_set(err, -EMSGSIZE, "etcd: %s: request of %zu bytes is over etcd's %d", what, len,
                                 ETCD_REQUEST_MAX);
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)len);
        for (size_t tried = 0; tried < c->n_endpoints; tried++) {
                snprintf(url, sizeof(url), "%s%s", c->endpoints[c->cur], path);
                curl_easy_setopt(c->h, CURLOPT_URL, url);
                c->len = 0;
                c->too_long = 0;
                c->curl_err[0] = '\0';
                if (c->body)
                        c->body[0] = '\0';
                rc = perform(c, what);
                if (!unreachable(c->h, rc))
                        break;
                if (tried + 1 < c->n_endpoints)
                        next_endpoint(c);
        }
        if (c->too_long)
                return lserr_set(err, -EMSGSIZE, "etcd %s: %s: answer over %u bytes", c->endpoints[c->cur], what,
                                 ETCD_REPLY_MAX);
        if (rc != CURLE_OK && unreachable(c->h, rc))
                return lserr_set(err, -EHOSTUNREACH, "etcd %s: %s: %s", c->endpoints[c->cur], what,
                                 c->curl_err[0] ? c->curl_err : curl_easy_strerror(rc));
        if (rc != CURLE_OK) {
                int r = lserr_set(err, rc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO,
                                  "etcd %s: %s: %s (whether etcd applied it is not known)", c->endpoints[c->cur],
                                  what, c->curl_err[0] ? c->curl_err : curl_easy_strerror(rc));
                next_endpoint(c);
                return r;
        }
        curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
        if (status == 200 && c->body)
                return 0;
        error_text(c, why, sizeof(why));
        int r = lserr_set(err, status == 429 ? -ENOSPC : status == 503 || status == 504 ? -EAGAIN : -EIO,
                          "etcd %s: %s: HTTP %ld: %s", c->endpoints[c->cur], what, status, why);
        if (status == 503 || status == 504)
                next_endpoint(c);
        return r;
}

static void json_putp(struct json_object **o)
{
        if (*o)
                json_object_put(*o);
}

/* Adds v (taken, also on failure) to o as name. */
static int add(struct json_object *o, const char *name, struct json_object *v)
{
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, name, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

/* Appends v (taken, also on failure) to the array a. */
static int push(struct json_object *a, struct json_object *v)
{
        if (!a || !v || json_object_array_add(a, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

/* "range /lockstep/x": a request's name in errors. */
static void what_of(char *out, size_t n, const char *op, const char *key)
{
        snprintf(out, n, "%s%s%.*s", op, key ? " " : "", ETCD_KEY_MAX, key ? key : "");
}

static int bad_answer(const struct etcd *c, const char *what, int r, const lserr *pe, lserr *err)
{
        return lserr_set(err, r, "etcd %s: %s: %s", c->endpoints[c->cur], what, pe->msg);
}

static int check_key(const char *key, const char *what, lserr *err)
{
        size_t n = strlen(key);

        if (n == 0 || n > ETCD_KEY_MAX)
                return lserr_set(err, -EINVAL, "etcd: %s: a key is 1..%d bytes", what, ETCD_KEY_MAX);
        return 0;
}

/* A request on key, or on every key under it (prefix): its JSON in *ret (the
 * caller's, also on failure) and its name for errors in what. */
static int key_request(const char *op, const char *key, int prefix, struct json_object **ret, char *what, size_t n,
                       lserr *err)
{
        int r;

        what_of(what, n, op, key);
        r = check_key(key, what, err);
        if (r < 0)
                return r;
        *ret = json_object_new_object();
        if (!*ret || etcd_json_range(*ret, key, prefix) < 0)
                return -ENOMEM;
        return 0;
}

int etcd_range(struct etcd *c, const char *key, int prefix, size_t limit, struct etcd_kv **ret, size_t *ret_n,
               int *ret_more, int64_t *rev, lserr *err)
{
        _cleanup_(json_putp) struct json_object *q = NULL;
        char what[ETCD_KEY_MAX + 40];
        lserr pe = {0};
        int r = key_request("range", key, prefix, &q, what, sizeof(what), err);

        if (r == 0 && limit)
                r = add(q, "limit", etcd_json_i64((int64_t)limit));
        if (r == 0)
                r = post(c, "/v3/kv/range", q, what, err);
        if (r == 0 && (r = etcd_parse_range(c->body, c->len, ret, ret_n, ret_more, rev, &pe)) < 0)
                return bad_answer(c, what, r, &pe, err);
        if (r == 0 && limit && *ret_n > limit) {
                etcd_kvs_free(*ret, *ret_n);
                return lserr_set(err, -EPROTO, "etcd %s: %s: %zu keys in the answer, %zu asked for", etcd_endpoint(c),
                                 what, *ret_n, limit);
        }
        return r;
}

/* A PutRequest's value and lease, into o (which has its key). */
static int put_value(struct json_object *o, const void *value, size_t len, int64_t lease)
{
        if (add(o, "value", etcd_json_b64(value, len)) < 0)
                return -ENOMEM;
        if (lease && add(o, "lease", etcd_json_i64(lease)) < 0)
                return -ENOMEM;
        return 0;
}

int etcd_put(struct etcd *c, const char *key, const void *value, size_t len, int64_t lease, lserr *err)
{
        _cleanup_(json_putp) struct json_object *q = NULL;
        char what[ETCD_KEY_MAX + 40];
        int r = key_request("put", key, 0, &q, what, sizeof(what), err);

        if (r == 0)
                r = put_value(q, value, len, lease);
        if (r == 0)
                r = post(c, "/v3/kv/put", q, what, err);
        return r;
}

int etcd_delete(struct etcd *c, const char *key, int prefix, int64_t *deleted, lserr *err)
{
        _cleanup_(json_putp) struct json_object *q = NULL;
        char what[ETCD_KEY_MAX + 40];
        lserr pe = {0};
        int r = key_request("delete", key, prefix, &q, what, sizeof(what), err);

        if (r == 0)
                r = post(c, "/v3/kv/deleterange", q, what, err);
        if (r == 0 && (r = etcd_parse_deleted(c->body, c->len, deleted, &pe)) < 0)
                return bad_answer(c, what, r, &pe, err);
        return r;
}

/* ---- transactions ---------------------------------------------------------- */

static const char *const target_names[] = {"CREATE", "MOD", "VERSION", "VALUE"};
static const char *const target_fields[] = {"create_revision", "mod_revision", "version", "value"};
static const char *const result_names[] = {"EQUAL", "NOT_EQUAL", "GREATER", "LESS"};

static struct json_object *compare_json(const struct etcd_cmp *m)
{
        struct json_object *o = json_object_new_object();
        int r;

        if (!o)
                return NULL;
        r = etcd_json_range(o, m->key, 0);
        if (r == 0)
                r = add(o, "target", json_object_new_string(target_names[m->target]));
        if (r == 0)
                r = add(o, "result", json_object_new_string(result_names[m->result]));
        if (r == 0)
                r = add(o, target_fields[m->target], m->target == ETCD_VALUE ? etcd_json_b64(m->value, m->value_len)
                                                                             : etcd_json_i64(m->num));
        if (r < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static struct json_object *op_json(const struct etcd_op *op)
{
        static const char *const kinds[] = {"request_put", "request_delete_range", "request_range"};
        struct json_object *o = json_object_new_object(), *req = json_object_new_object();
        int r = o && req ? 0 : -ENOMEM;

        if (r == 0)
                r = etcd_json_range(req, op->key, op->kind != ETCD_OP_PUT && op->prefix);
        if (r == 0 && op->kind == ETCD_OP_PUT)
                r = put_value(req, op->value, op->value_len, op->lease);
        if (r == 0 && op->kind == ETCD_OP_RANGE && op->limit)
                r = add(req, "limit", etcd_json_i64((int64_t)op->limit));
        if (r == 0) {
                r = add(o, kinds[op->kind], req);
                req = NULL;
        }
        json_object_put(req);
        if (r < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static int check_op(const struct etcd_op *op, lserr *err)
{
        char what[ETCD_KEY_MAX + 40];

        what_of(what, sizeof(what), "txn", op->key);
        if ((unsigned)op->kind > ETCD_OP_RANGE)
                return lserr_set(err, -EINVAL, "etcd: %s: no such operation", what);
        return check_key(op->key, what, err);
}

/* The compares and both branches as a TxnRequest. */
static int txn_json(struct json_object *q, const struct etcd_cmp *cmp, size_t n_cmp, const struct etcd_op *then,
                    size_t n_then, const struct etcd_op *otherwise, size_t n_otherwise, lserr *err)
{
        struct json_object *a[3] = {json_object_new_array(), json_object_new_array(), json_object_new_array()};
        static const char *const names[] = {"compare", "success", "failure"};
        int r = 0;

        for (size_t i = 0; r == 0 && i < n_cmp; i++) {
                if ((unsigned)cmp[i].target > ETCD_VALUE || (unsigned)cmp[i].result > ETCD_LESS)
                        r = lserr_set(err, -EINVAL, "etcd: txn: compare %zu is not a compare", i);
                else if ((r = check_key(cmp[i].key, "txn compare", err)) == 0)
                        r = push(a[0], compare_json(&cmp[i]));
        }
        for (size_t i = 0; r == 0 && i < n_then + n_otherwise; i++) {
                const struct etcd_op *op = i < n_then ? &then[i] : &otherwise[i - n_then];
                struct json_object *arr = a[i < n_then ? 1 : 2];
                r = check_op(op, err);
                if (r == 0)
                        r = push(arr, op_json(op));
        }
        for (int k = 0; k < 3; k++) {
                if (r == 0)
                        r = add(q, names[k], a[k]);
                else
                        json_object_put(a[k]);
        }
        return r;
}

int etcd_txn(struct etcd *c, const struct etcd_cmp *cmp, size_t n_cmp, const struct etcd_op *then, size_t n_then,
             const struct etcd_op *otherwise, size_t n_otherwise, struct etcd_txn_result *ret, lserr *err)
{
        _cleanup_(json_putp) struct json_object *q = json_object_new_object();
        lserr pe = {0};
        int r;

        if (n_cmp > ETCD_TXN_OPS_MAX || n_then > ETCD_TXN_OPS_MAX || n_otherwise > ETCD_TXN_OPS_MAX)
                return lserr_set(err, -E2BIG, "etcd: txn: %zu compares, %zu and %zu operations: etcd takes at most %d "
                                 "of each", n_cmp, n_then, n_otherwise, ETCD_TXN_OPS_MAX);
        if (!q)
                return -ENOMEM;
        r = txn_json(q, cmp, n_cmp, then, n_then, otherwise, n_otherwise, err);
        if (r == 0)
                r = post(c, "/v3/kv/txn", q, "txn", err);
        if (r == 0 && (r = etcd_parse_txn(c->body, c->len, ret, &pe)) < 0)
                return bad_answer(c, "txn", r, &pe, err);
        return r;
}

/* ---- leases, status, maintenance ------------------------------------------- */

/* A request whose body is {"ID": id} (or {} with id 0). */
static int id_request(struct etcd *c, const char *path, const char *what, int64_t id, int64_t ttl, lserr *err)
{
        _cleanup_(json_putp) struct json_object *q = json_object_new_object();

        if (!q || (id && add(q, "ID", etcd_json_i64(id)) < 0) || (ttl && add(q, "TTL", etcd_json_i64(ttl)) < 0))
                return -ENOMEM;
        return post(c, path, q, what, err);
}

int etcd_lease_grant(struct etcd *c, int64_t ttl_s, int64_t *ret_id, int64_t *ret_ttl, lserr *err)
{
        int64_t id = 0, ttl = 0;
        lserr pe = {0};
        int r;

        if (ttl_s <= 0)
                return lserr_set(err, -EINVAL, "etcd: lease grant: a TTL of %lld s", (long long)ttl_s);
        r = id_request(c, "/v3/lease/grant", "lease grant", 0, ttl_s, err);
        if (r == 0 && (r = etcd_parse_lease(c->body, c->len, &id, &ttl, &pe)) < 0)
                return bad_answer(c, "lease grant", r, &pe, err);
        if (r == 0 && (id <= 0 || ttl <= 0))
                return lserr_set(err, -EPROTO, "etcd %s: lease grant: answer has no lease ID or TTL",
                                 etcd_endpoint(c));
        if (r == 0) {
                *ret_id = id;
                if (ret_ttl)
                        *ret_ttl = ttl;
        }
        return r;
}

int etcd_lease_keepalive(struct etcd *c, int64_t id, int64_t *ret_ttl, lserr *err)
{
        lserr pe = {0};
        int r = id_request(c, "/v3/lease/keepalive", "lease keepalive", id, 0, err);

        /* One request, one line of the stream: the server ends it when our
         * body ends. */
        if (r == 0 && (r = etcd_parse_lease(c->body, c->len, NULL, ret_ttl, &pe)) < 0)
                return bad_answer(c, "lease keepalive", r, &pe, err);
        return r;
}

int etcd_lease_revoke(struct etcd *c, int64_t id, lserr *err)
{
        return id_request(c, "/v3/lease/revoke", "lease revoke", id, 0, err);
}

int etcd_status(struct etcd *c, struct etcd_status *ret, lserr *err)
{
        lserr pe = {0};
        int r = id_request(c, "/v3/maintenance/status", "status", 0, 0, err);

        if (r == 0 && (r = etcd_parse_status(c->body, c->len, ret, &pe)) < 0)
                return bad_answer(c, "status", r, &pe, err);
        return r;
}

int etcd_compact(struct etcd *c, int64_t rev, lserr *err)
{
        _cleanup_(json_putp) struct json_object *q = json_object_new_object();

        /* physical: the answer waits until the old revisions are gone. */
        if (!q || add(q, "revision", etcd_json_i64(rev)) < 0 || add(q, "physical", json_object_new_boolean(1)) < 0)
                return -ENOMEM;
        return post(c, "/v3/kv/compaction", q, "compaction", err);
}

int etcd_defragment(struct etcd *c, lserr *err)
{
        return id_request(c, "/v3/maintenance/defragment", "defragment", 0, 0, err);
}
