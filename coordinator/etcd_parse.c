/* etcd_parse: etcd's JSON answers (range, txn, lease, status, delete) into
 * our structs, and the JSON and base64 helpers of the client. Nothing in an
 * answer is trusted: every field is checked for its type and size. */
#include "etcd.h"
#include "etcd_json.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

/* An answer nests a few levels (txn > responses > range > kvs > kv). */
#define JSON_DEPTH 16

struct json_object *etcd_json_b64(const void *p, size_t len)
{
        size_t n = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
        _cleanup_free_ char *s = malloc(n);
        struct json_object *o;

        if (!s)
                return NULL;
        sodium_bin2base64(s, n, p, len, sodium_base64_VARIANT_ORIGINAL);
        o = json_object_new_string(s);
        return o;
}

struct json_object *etcd_json_i64(int64_t n)
{
        char s[32];

        snprintf(s, sizeof(s), "%" PRId64, n);
        return json_object_new_string(s);
}

int etcd_json_range(struct json_object *o, const char *key, int prefix)
{
        size_t n = strlen(key);
        struct json_object *k = etcd_json_b64(key, n), *end = NULL;
        char buf[ETCD_KEY_MAX + 1];

        if (!k || json_object_object_add(o, "key", k) < 0) {
                json_object_put(k);
                return -ENOMEM;
        }
        if (!prefix)
                return 0;
        /* The range [key, key with its last byte + 1): every key it starts.
         * Trailing 0xff bytes cannot be raised: dropped first; a key of only
         * those has every key after it ("\0", etcd's "to the end"). */
        if (n == 0 || n > ETCD_KEY_MAX)
                return -EINVAL;
        memcpy(buf, key, n);
        while (n > 0 && (unsigned char)buf[n - 1] == 0xff)
                n--;
        if (n == 0)
                buf[n++] = '\0';
        else
                buf[n - 1]++;
        end = etcd_json_b64(buf, n);
        if (!end || json_object_object_add(o, "range_end", end) < 0) {
                json_object_put(end);
                return -ENOMEM;
        }
        return 0;
}

/* Decimal digits only, with an optional '-': what etcd writes. */
static int parse_decimal(const char *s, int sign, int64_t *ret_i, uint64_t *ret_u)
{
        char *end;

        if (!*s || (!sign && *s == '-'))
                return -1;
        for (const char *p = s + (*s == '-'); *p; p++)
                if (*p < '0' || *p > '9')
                        return -1;
        errno = 0;
        if (sign)
                *ret_i = strtoll(s, &end, 10);
        else
                *ret_u = strtoull(s, &end, 10);
        return errno || *end ? -1 : 0;
}

static int get_num(struct json_object *o, const char *name, int sign, int64_t *ret_i, uint64_t *ret_u, lserr *err)
{
        struct json_object *v;

        *ret_i = 0;
        *ret_u = 0;
        if (!json_object_object_get_ex(o, name, &v))
                return 0;
        if (json_object_is_type(v, json_type_string)) {
                if (parse_decimal(json_object_get_string(v), sign, ret_i, ret_u) < 0)
                        return lserr_set(err, -EPROTO, "field \"%s\" is not a number: \"%.40s\"", name,
                                         json_object_get_string(v));
                return 0;
        }
        if (json_object_is_type(v, json_type_int)) {
                *ret_i = json_object_get_int64(v);
                if (!sign && *ret_i < 0)
                        return lserr_set(err, -EPROTO, "field \"%s\" is negative", name);
                *ret_u = json_object_get_uint64(v);
                return 0;
        }
        return lserr_set(err, -EPROTO, "field \"%s\" is a %s, not a number", name,
                         json_type_to_name(json_object_get_type(v)));
}

int etcd_json_get_i64(struct json_object *o, const char *name, int64_t *ret, lserr *err)
{
        uint64_t u;

        return get_num(o, name, 1, ret, &u, err);
}

int etcd_json_get_u64(struct json_object *o, const char *name, uint64_t *ret, lserr *err)
{
        int64_t i;

        return get_num(o, name, 0, &i, ret, err);
}

int etcd_json_get_b64(struct json_object *o, const char *name, uint8_t **ret, size_t *ret_len, lserr *err)
{
        struct json_object *v;
        const char *s = "";
        size_t n = 0, max;
        uint8_t *buf;

        if (json_object_object_get_ex(o, name, &v)) {
                if (!json_object_is_type(v, json_type_string))
                        return lserr_set(err, -EPROTO, "field \"%s\" is a %s, not base64 text", name,
                                         json_type_to_name(json_object_get_type(v)));
                s = json_object_get_string(v);
        }
        max = strlen(s) / 4 * 3 + 3;
        buf = malloc(max + 1);
        if (!buf)
                return -ENOMEM;
        if (sodium_base642bin(buf, max, s, strlen(s), NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
                free(buf);
                return lserr_set(err, -EPROTO, "field \"%s\" is not base64", name);
        }
        buf[n] = '\0';
        *ret = buf;
        *ret_len = n;
        return 0;
}

int etcd_json_parse(const char *body, size_t len, struct json_object **ret, lserr *err)
{
        struct json_tokener *tok;
        struct json_object *o;
        size_t end;

        if (len > ETCD_REPLY_MAX || len > INT32_MAX)
                return lserr_set(err, -EMSGSIZE, "answer of %zu bytes is too long", len);
        tok = json_tokener_new_ex(JSON_DEPTH);
        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, body, (int)len);
        if (!o) {
                enum json_tokener_error e = json_tokener_get_error(tok);
                json_tokener_free(tok);
                return lserr_set(err, -EPROTO, "answer is not JSON: %s",
                                 e == json_tokener_continue ? "it ends early" : json_tokener_error_desc(e));
        }
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        while (end < len && strchr(" \t\r\n", body[end]) && body[end])
                end++;
        if (end != len || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return lserr_set(err, -EPROTO, "answer is not one JSON object");
        }
        *ret = o;
        return 0;
}

/* ---- answers ------------------------------------------------------------- */

static int header_revision(struct json_object *o, int64_t *rev, lserr *err)
{
        struct json_object *h;

        if (!rev)
                return 0;
        *rev = 0;
        if (!json_object_object_get_ex(o, "header", &h) || !json_object_is_type(h, json_type_object))
                return lserr_set(err, -EPROTO, "answer has no header");
        return etcd_json_get_i64(h, "revision", rev, err);
}

static int parse_kv(struct json_object *o, struct etcd_kv *kv, lserr *err)
{
        size_t klen;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return lserr_set(err, -EPROTO, "a key-value is not an object");
        r = etcd_json_get_b64(o, "key", (uint8_t **)&kv->key, &klen, err);
        if (r == 0 && (klen == 0 || klen > ETCD_KEY_MAX || memchr(kv->key, '\0', klen)))
                r = lserr_set(err, -EPROTO, "a key is empty, too long or not text");
        if (r == 0)
                r = etcd_json_get_b64(o, "value", &kv->value, &kv->value_len, err);
        if (r == 0)
                r = etcd_json_get_i64(o, "create_revision", &kv->create_revision, err);
        if (r == 0)
                r = etcd_json_get_i64(o, "mod_revision", &kv->mod_revision, err);
        if (r == 0)
                r = etcd_json_get_i64(o, "version", &kv->version, err);
        if (r == 0)
                r = etcd_json_get_i64(o, "lease", &kv->lease, err);
        return r;
}

void etcd_kvs_free(struct etcd_kv *kvs, size_t n)
{
        for (size_t i = 0; kvs && i < n; i++) {
                free(kvs[i].key);
                free(kvs[i].value);
        }
        free(kvs);
}

/* The kvs (and more) of a RangeResponse object. */
static int range_of(struct json_object *o, struct etcd_kv **ret, size_t *ret_n, int *ret_more, lserr *err)
{
        struct json_object *a = NULL, *m;
        struct etcd_kv *kvs;
        size_t n = 0;
        int r = 0;

        if (json_object_object_get_ex(o, "kvs", &a) && !json_object_is_type(a, json_type_array))
                return lserr_set(err, -EPROTO, "field \"kvs\" is not an array");
        if (a)
                n = json_object_array_length(a);
        kvs = calloc(n ? n : 1, sizeof(*kvs));
        if (!kvs)
                return -ENOMEM;
        for (size_t i = 0; r == 0 && i < n; i++)
                r = parse_kv(json_object_array_get_idx(a, i), &kvs[i], err);
        if (r == 0 && ret_more) {
                *ret_more = json_object_object_get_ex(o, "more", &m) && json_object_is_type(m, json_type_boolean) &&
                            json_object_get_boolean(m);
        }
        if (r < 0) {
                etcd_kvs_free(kvs, n);
                return r;
        }
        *ret = kvs;
        *ret_n = n;
        return 0;
}

int etcd_parse_range(const char *body, size_t len, struct etcd_kv **ret, size_t *ret_n, int *ret_more, int64_t *rev,
                     lserr *err)
{
        struct json_object *o;
        int r = etcd_json_parse(body, len, &o, err);

        if (r < 0)
                return r;
        r = header_revision(o, rev, err);
        if (r == 0)
                r = range_of(o, ret, ret_n, ret_more, err);
        json_object_put(o);
        return r;
}

void etcd_txn_result_free(struct etcd_txn_result *t)
{
        for (size_t i = 0; t->kvs && i < t->n_ranges; i++)
                etcd_kvs_free(t->kvs[i], t->n_kvs[i]);
        free(t->kvs);
        free(t->n_kvs);
        free(t->more);
        *t = (struct etcd_txn_result){0};
}

/* The response_range objects of a txn's responses, in order. */
static int txn_ranges(struct json_object *a, struct etcd_txn_result *t, lserr *err)
{
        size_t n = json_object_array_length(a), k = 0;
        int r = 0;

        t->kvs = calloc(n ? n : 1, sizeof(*t->kvs));
        t->n_kvs = calloc(n ? n : 1, sizeof(*t->n_kvs));
        t->more = calloc(n ? n : 1, sizeof(*t->more));
        if (!t->kvs || !t->n_kvs || !t->more)
                return -ENOMEM;
        for (size_t i = 0; r == 0 && i < n; i++) {
                struct json_object *op = json_object_array_get_idx(a, i), *rg;
                if (!json_object_is_type(op, json_type_object))
                        return lserr_set(err, -EPROTO, "a txn response is not an object");
                if (!json_object_object_get_ex(op, "response_range", &rg))
                        continue;
                if (!json_object_is_type(rg, json_type_object))
                        return lserr_set(err, -EPROTO, "a txn range response is not an object");
                r = range_of(rg, &t->kvs[k], &t->n_kvs[k], &t->more[k], err);
                if (r == 0)
                        t->n_ranges = ++k;
        }
        return r;
}

int etcd_parse_txn(const char *body, size_t len, struct etcd_txn_result *ret, lserr *err)
{
        struct etcd_txn_result t = {0};
        struct json_object *o, *s, *a;
        int r = etcd_json_parse(body, len, &o, err);

        if (r < 0)
                return r;
        r = header_revision(o, &t.revision, err);
        /* A false "succeeded" is left out, as every zero value is. */
        if (r == 0 && json_object_object_get_ex(o, "succeeded", &s)) {
                if (!json_object_is_type(s, json_type_boolean))
                        r = lserr_set(err, -EPROTO, "field \"succeeded\" is not a boolean");
                else
                        t.succeeded = json_object_get_boolean(s);
        }
        if (r == 0 && json_object_object_get_ex(o, "responses", &a)) {
                if (!json_object_is_type(a, json_type_array))
                        r = lserr_set(err, -EPROTO, "field \"responses\" is not an array");
                else
                        r = txn_ranges(a, &t, err);
        }
        json_object_put(o);
        if (r < 0) {
                etcd_txn_result_free(&t);
                return r;
        }
        *ret = t;
        return 0;
}

int etcd_parse_lease(const char *body, size_t len, int64_t *ret_id, int64_t *ret_ttl, lserr *err)
{
        struct json_object *o, *res, *e;
        int64_t id = 0, ttl = 0;
        int r = etcd_json_parse(body, len, &o, err);

        if (r < 0)
                return r;
        /* A keepalive's answer is one line of a stream: {"result": {...}}. */
        res = o;
        if (json_object_object_get_ex(o, "result", &e)) {
                res = e;
                if (!json_object_is_type(res, json_type_object))
                        r = lserr_set(err, -EPROTO, "field \"result\" is not an object");
        }
        /* An error in a stream is {"error": {"message": ...}}, else a string. */
        if (r == 0 && json_object_object_get_ex(res, "error", &e)) {
                struct json_object *m = e;
                if (json_object_is_type(e, json_type_object) && !json_object_object_get_ex(e, "message", &m))
                        m = NULL;
                if (m && json_object_is_type(m, json_type_string) && json_object_get_string_len(m) > 0)
                        r = lserr_set(err, -EIO, "%.200s", json_object_get_string(m));
                else if (!json_object_is_type(e, json_type_string))
                        r = lserr_set(err, -EIO, "an error without a message");
        }
        if (r == 0)
                r = etcd_json_get_i64(res, "ID", &id, err);
        if (r == 0)
                r = etcd_json_get_i64(res, "TTL", &ttl, err);
        json_object_put(o);
        if (r < 0)
                return r;
        if (ret_id)
                *ret_id = id;
        if (ret_ttl)
                *ret_ttl = ttl < 0 ? 0 : ttl;
        return 0;
}

int etcd_parse_status(const char *body, size_t len, struct etcd_status *ret, lserr *err)
{
        struct etcd_status s = {0};
        struct json_object *o, *h, *v;
        int r = etcd_json_parse(body, len, &o, err);

        if (r < 0)
                return r;
        r = header_revision(o, &s.revision, err);
        if (r == 0 && json_object_object_get_ex(o, "header", &h))
                r = etcd_json_get_u64(h, "member_id", &s.member_id, err);
        if (r == 0 && json_object_object_get_ex(o, "header", &h))
                r = etcd_json_get_i64(h, "raft_term", &s.raft_term, err);
        if (r == 0)
                r = etcd_json_get_i64(o, "dbSize", &s.db_size, err);
        if (r == 0)
                r = etcd_json_get_u64(o, "leader", &s.leader, err);
        if (r == 0 && json_object_object_get_ex(o, "version", &v) && json_object_is_type(v, json_type_string))
                snprintf(s.version, sizeof(s.version), "%s", json_object_get_string(v));
        json_object_put(o);
        if (r == 0)
                *ret = s;
        return r;
}

int etcd_parse_deleted(const char *body, size_t len, int64_t *deleted, lserr *err)
{
        struct json_object *o;
        int64_t n = 0;
        int r = etcd_json_parse(body, len, &o, err);

        if (r < 0)
                return r;
        r = etcd_json_get_i64(o, "deleted", &n, err);
        json_object_put(o);
        if (r == 0 && deleted)
                *deleted = n;
        return r;
}
