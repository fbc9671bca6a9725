/* cat_etcd: the etcd catalog's connection, lock, fence and layout check, and the
 * helpers its files share: keys, JSON records, reads and the guarded transaction. */
#include "cat_etcd_priv.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

/* Records nest one level; anything deeper is not ours. */
#define RECORD_DEPTH 4
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* ---- the lock ------------------------------------------------------------------- */

struct cat_etcd *ce_lock(struct cat_etcd *e)
{
        pthread_mutex_lock(&e->lock);
        return e;
}

void ce_unlockp(struct cat_etcd **e)
{
        if (*e)
                pthread_mutex_unlock(&(*e)->lock);
}

/* ---- keys ------------------------------------------------------------------------- */

static int plain(unsigned char ch)
{
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
               ch == '_' || ch == '-' || ch == '@';
}

/* Appends s escaped to out (holding n bytes of size); the length it would
 * need, which is >= size when it did not fit. */
static size_t esc_into(char *out, size_t n, size_t size, const char *s)
{
        static const char hex[] = "0123456789ABCDEF";

        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;
                if (plain(ch)) {
                        if (n + 1 < size)
                                out[n] = (char)ch;
                        n++;
                        continue;
                }
                if (n + 3 < size) {
                        out[n] = '%';
                        out[n + 1] = hex[ch >> 4];
                        out[n + 2] = hex[ch & 15];
                }
                n += 3;
        }
        out[n < size ? n : size - 1] = '\0';
        return n;
}

static size_t slash_into(char *out, size_t n, size_t size)
{
        if (n + 1 < size) {
                out[n] = '/';
                out[n + 1] = '\0';
        }
        return n + 1;
}

void ce_esc(char *out, size_t size, const char *id)
{
        /* The callers size out for any identifier that fits its field. */
        size_t n = esc_into(out, 0, size, id);

        assert(n < size);
}

int ce_key(const struct cat_etcd *e, char out[CE_KEY_SIZE], int trailing, const char *dir, ...)
{
        size_t n = (size_t)snprintf(out, CE_KEY_SIZE, "%s%s", e->prefix, dir);
        const char *s;
        va_list ap;
        int first = 1;

        va_start(ap, dir);
        while (n < CE_KEY_SIZE && (s = va_arg(ap, const char *))) {
                if (!first)
                        n = slash_into(out, n, CE_KEY_SIZE);
                n = esc_into(out, n, CE_KEY_SIZE, s);
                first = 0;
        }
        va_end(ap);
        if (trailing && n < CE_KEY_SIZE)
                n = slash_into(out, n, CE_KEY_SIZE);
        if (n >= CE_KEY_SIZE) {
                out[0] = '\0';
                return -ENAMETOOLONG;
        }
        return 0;
}

int ce_key_raw(const struct cat_etcd *e, char out[CE_KEY_SIZE], const char *dir, const char *rest)
{
        size_t n = (size_t)snprintf(out, CE_KEY_SIZE, "%s%s%s", e->prefix, dir, rest);

        return n < CE_KEY_SIZE ? 0 : -ENAMETOOLONG;
}

void ce_id_digits(char out[CE_ID_DIGITS + 1], uint64_t id)
{
        snprintf(out, CE_ID_DIGITS + 1, "%020" PRIu64, id);
}

/* ---- record values ---------------------------------------------------------------- */

void ce_rec_begin(struct ce_rec *w)
{
        w->o = json_object_new_object();
        w->failed = !w->o;
}

static void rec_add(struct ce_rec *w, const char *name, struct json_object *v)
{
        if (w->failed || !v || json_object_object_add(w->o, name, v) < 0) {
                json_object_put(v);
                w->failed = 1;
        }
}

void ce_rec_str(struct ce_rec *w, const char *name, const char *s)
{
        rec_add(w, name, json_object_new_string(s));
}

void ce_rec_text(struct ce_rec *w, const char *name, const char *s, size_t field)
{
        rec_add(w, name, json_object_new_string_len(s, (int)cat_text_len(s, field)));
}

void ce_rec_i64(struct ce_rec *w, const char *name, int64_t v)
{
        rec_add(w, name, json_object_new_int64(v));
}

int ce_rec_end(struct ce_rec *w, char **ret, size_t *ret_len)
{
        const char *s = NULL;
        size_t len = 0;
        char *copy = NULL;

        if (!w->failed)
                s = json_object_to_json_string_length(w->o, JSON_FLAGS, &len);
        if (s)
                copy = strndup(s, len);
        json_object_put(w->o);
        w->o = NULL;
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        *ret_len = len;
        return 0;
}

int ce_in_begin(struct ce_in *in, const void *value, size_t len)
{
        struct json_tokener *tok;

        in->o = NULL;
        in->bad = 0;
        if (len == 0 || len > INT32_MAX)
                return -EIO;
        tok = json_tokener_new_ex(RECORD_DEPTH);
        if (!tok)
                return -ENOMEM;
        in->o = json_tokener_parse_ex(tok, value, (int)len);
        json_tokener_free(tok);
        if (!in->o || !json_object_is_type(in->o, json_type_object)) {
                json_object_put(in->o);
                in->o = NULL;
                return -EIO;
        }
        return 0;
}

/* The field, NULL (and bad) when missing or not of type t. */
static struct json_object *in_field(struct ce_in *in, const char *name, enum json_type t)
{
        struct json_object *v;

        if (!json_object_object_get_ex(in->o, name, &v) || !json_object_is_type(v, t)) {
                in->bad = 1;
                return NULL;
        }
        return v;
}

void ce_in_str(struct ce_in *in, const char *name, char *dst, size_t size)
{
        struct json_object *v = in_field(in, name, json_type_string);

        snprintf(dst, size, "%s", v ? json_object_get_string(v) : "");
}

int64_t ce_in_i64(struct ce_in *in, const char *name)
{
        struct json_object *v = in_field(in, name, json_type_int);

        return v ? json_object_get_int64(v) : 0;
}

int64_t ce_in_i64_or(struct ce_in *in, const char *name, int64_t def)
{
        return json_object_object_get_ex(in->o, name, NULL) ? ce_in_i64(in, name) : def;
}

int ce_in_word(struct ce_in *in, const char *name, const char *const *words, size_t n)
{
        struct json_object *v = in_field(in, name, json_type_string);
        int i = v ? cat_word_index(words, n, (const unsigned char *)json_object_get_string(v)) : -1;

        if (i < 0)
                in->bad = 1;
        return i;
}

int ce_in_end(struct ce_in *in)
{
        int bad = in->bad;

        json_object_put(in->o);
        in->o = NULL;
        return bad ? -EIO : 0;
}

/* ---- messages and reads ---------------------------------------------------------- */

int ce_fail(const struct cat_etcd *e, lserr *err, int code, const char *what, const char *why)
{
        return lserr_set(err, code, "catalog etcd \"%s\": %s: %s", e->prefix, what, why);
}

void ce_kv_clear(struct etcd_kv *kv)
{
        free(kv->key);
        free(kv->value);
        *kv = (struct etcd_kv){0};
}

int ce_get(struct cat_etcd *e, const char *key, struct etcd_kv *ret, const char *what, lserr *err)
{
        struct etcd_kv *kvs = NULL;
        size_t n = 0;
        lserr why = {0};
        int r = etcd_range(e->etcd, key, 0, 0, &kvs, &n, NULL, NULL, &why);

        if (r < 0)
                return ce_fail(e, err, r, what, why.msg);
        if (n == 0) {
                etcd_kvs_free(kvs, n);
                return 0;
        }
        /* One key asked, one key back: its strings move to ret. */
        *ret = kvs[0];
        free(kvs);
        return 1;
}

int ce_list(struct cat_etcd *e, const char *prefix, size_t limit, struct etcd_kv **ret, size_t *ret_n,
            int *ret_more, const char *what, lserr *err)
{
        lserr why = {0};
        int r = etcd_range(e->etcd, prefix, 1, limit, ret, ret_n, ret_more, NULL, &why);

        if (r < 0)
                return ce_fail(e, err, r, what, why.msg);
        return 0;
}

int ce_ranges(struct cat_etcd *e, const struct etcd_op *ranges, size_t n, ce_kv_fn fn, void *ctx, const char *what,
              lserr *err)
{
        for (size_t i = 0; i < n; i += ETCD_TXN_OPS_MAX) {
                _cleanup_(etcd_txn_resultp) struct etcd_txn_result t = {0};
                size_t m = n - i < ETCD_TXN_OPS_MAX ? n - i : ETCD_TXN_OPS_MAX;
                lserr why = {0};
                int r = etcd_txn(e->etcd, NULL, 0, ranges + i, m, NULL, 0, &t, &why);

                if (r < 0)
                        return ce_fail(e, err, r, what, why.msg);
                if (!t.succeeded || t.n_ranges != m)
                        return ce_fail(e, err, -EPROTO, what, "etcd answered a read with another number of ranges");
                for (size_t k = 0; k < m; k++)
                        for (size_t j = 0; j < t.n_kvs[k]; j++) {
                                r = fn(ctx, i + k, &t.kvs[k][j]);
                                if (r < 0)
                                        return r;
                        }
        }
        return 0;
}

/* One page of ce_scan: the keys under p (limit at most); the tail after base
 * of the last one into last, and whether p holds more. */
static int scan_page(struct cat_etcd *e, const char *p, size_t base, size_t limit, ce_kv_fn fn, void *ctx,
                     size_t *got, int *more, char *last, const char *what, lserr *err)
{
        struct etcd_kv *kvs = NULL;
        size_t n = 0;
        int r = ce_list(e, p, limit < CE_PAGE ? limit : CE_PAGE, &kvs, &n, more, what, err);

        for (size_t i = 0; r == 0 && i < n; i++)
                r = fn(ctx, 0, &kvs[i]);
        if (r == 0 && n > 0)
                snprintf(last, CE_KEY_SIZE, "%s", strlen(kvs[n - 1].key) > base ? kvs[n - 1].key + base : "");
        etcd_kvs_free(kvs, n);
        *got = n;
        return r;
}

int ce_scan(struct cat_etcd *e, const char *prefix, size_t limit, ce_kv_fn fn, void *ctx, const char *what,
            lserr *err)
{
        char last[CE_KEY_SIZE] = "", next[CE_KEY_SIZE] = "", p[CE_KEY_SIZE];
        size_t base = strlen(prefix), got = 0;
        int more = 0, again = 0, r = 0;

        if (limit == 0)
                return 0;
        r = scan_page(e, prefix, base, limit, fn, ctx, &got, &more, last, what, err);
        limit -= got;
        /* etcd_range takes prefixes only: the keys after `last` are those that
         * share its first i characters and have a greater digit at i, for
         * each i from the right, in key order. */
        while (r == 0 && more && limit > 0) {
                again = 0;
                for (size_t i = strlen(last); r == 0 && !again && limit > 0 && i-- > 0;) {
                        if (last[i] < '0' || last[i] > '9')
                                continue;
                        for (char d = (char)(last[i] + 1); r == 0 && !again && limit > 0 && d <= '9'; d++) {
                                if (snprintf(p, sizeof(p), "%s%.*s%c", prefix, (int)i, last, d) >= (int)sizeof(p))
                                        return ce_fail(e, err, -ENAMETOOLONG, what, "a key is too long to page on");
                                r = scan_page(e, p, base, limit, fn, ctx, &got, &again, next, what, err);
                                limit -= got;
                        }
                }
                more = again;
                memcpy(last, next, sizeof(last));
        }
        return r;
}

/* ---- the guarded transaction ------------------------------------------------------ */

static int64_t target_of(const struct etcd_cmp *c, const struct etcd_kv *kv)
{
        if (!kv)
                return 0;
        switch (c->target) {
        case ETCD_CREATE:
                return kv->create_revision;
        case ETCD_MOD:
                return kv->mod_revision;
        case ETCD_VERSION:
                return kv->version;
        default:
                assert(!"the catalog compares revisions and versions only");
                return 0;
        }
}

/* Whether c holds for the key as read (NULL: absent). */
static int holds(const struct etcd_cmp *c, const struct etcd_kv *kv)
{
        int64_t v = target_of(c, kv);

        switch (c->result) {
        case ETCD_EQUAL:
                return v == c->num;
        case ETCD_NOT_EQUAL:
                return v != c->num;
        case ETCD_GREATER:
                return v > c->num;
        default:
                return v < c->num;
        }
}

/* After etcd took the failure branch (one read per compare, the fence last):
 * which compare failed. */
static int failed_compare(struct cat_etcd *e, const struct etcd_cmp *c, size_t n, struct etcd_txn_result *t,
                          size_t n_cmps, const char *what, struct etcd_kv *ret_failed, lserr *err)
{
        if (t->n_ranges != n)
                return ce_fail(e, err, -EPROTO, what, "etcd answered a refused transaction with other reads");
        /* The fence first: a deposed leader learns that, whatever else changed. */
        if (n > n_cmps) {
                struct etcd_kv *kv = t->n_kvs[n - 1] ? &t->kvs[n - 1][0] : NULL;
                if (!holds(&c[n - 1], kv))
                        return lserr_set(err, -ESTALE,
                                         "catalog etcd \"%s\": %s: refused: leader key \"%s\" has epoch %" PRId64
                                         ", not %" PRId64 " (this lockstepd's): another leads; nothing written",
                                         e->prefix, what, e->fence_key, kv ? kv->create_revision : 0, e->fence_epoch);
        }
        for (size_t i = 0; i < n_cmps; i++) {
                struct etcd_kv *kv = t->n_kvs[i] ? &t->kvs[i][0] : NULL;
                if (holds(&c[i], kv))
                        continue;
                if (ret_failed && kv) {
                        *ret_failed = *kv;
                        *kv = (struct etcd_kv){0};
                } else if (ret_failed) {
                        *ret_failed = (struct etcd_kv){0};
                }
                return 1 + (int)i;
        }
        return ce_fail(e, err, -EPROTO, what, "etcd refused a transaction whose every compare holds");
}

int ce_txn(struct cat_etcd *e, const char *what, const struct etcd_cmp *cmps, size_t n_cmps, const struct etcd_op *ops,
           size_t n_ops, int64_t *ret_rev, struct etcd_kv *ret_failed, lserr *err)
{
        _cleanup_(etcd_txn_resultp) struct etcd_txn_result t = {0};
        struct etcd_cmp c[ETCD_TXN_OPS_MAX];
        struct etcd_op reads[ETCD_TXN_OPS_MAX];
        size_t n = n_cmps;
        lserr why = {0};
        int r;

        assert(n_cmps < ETCD_TXN_OPS_MAX && n_ops <= ETCD_TXN_OPS_MAX);
        if (n_cmps)
                memcpy(c, cmps, n_cmps * sizeof(*c));
        if (e->fence_epoch)
                c[n++] = (struct etcd_cmp){.key = e->fence_key, .target = ETCD_CREATE, .result = ETCD_EQUAL,
                                           .num = e->fence_epoch};
        for (size_t i = 0; i < n; i++)
                reads[i] = (struct etcd_op){.kind = ETCD_OP_RANGE, .key = c[i].key};
        r = etcd_txn(e->etcd, c, n, ops, n_ops, reads, n, &t, &why);
        /* A write that failed may leave a cached header behind the store. */
        if (r < 0 || !t.succeeded)
                ce_hcache_clear(e);
        if (r < 0)
                return ce_fail(e, err, r, what, why.msg);
        if (!t.succeeded)
                return failed_compare(e, c, n, &t, n_cmps, what, ret_failed, err);
        if (ret_rev)
                *ret_rev = t.revision;
        return 0;
}

int ce_delete_keys(struct cat_etcd *e, char *const *keys, size_t n, int prefix, const char *what, lserr *err)
{
        struct etcd_op ops[ETCD_TXN_OPS_MAX];

        for (size_t i = 0; i < n; i += ETCD_TXN_OPS_MAX) {
                size_t m = n - i < ETCD_TXN_OPS_MAX ? n - i : ETCD_TXN_OPS_MAX;
                int r;

                for (size_t k = 0; k < m; k++)
                        ops[k] = (struct etcd_op){.kind = ETCD_OP_DELETE, .key = keys[i + k], .prefix = prefix};
                r = ce_txn(e, what, NULL, 0, ops, m, NULL, NULL, err);
                /* No compare but the fence's: nothing else can fail. */
                assert(r <= 0);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- opening, the fence, closing ------------------------------------------------- */

static void ce_free(struct cat_etcd *e)
{
        if (!e)
                return;
        ce_units_free(e);
        etcd_close(e->etcd);
        pthread_mutex_destroy(&e->lock);
        free(e);
}

static void ce_freep(struct cat_etcd **e)
{
        ce_free(*e);
}

static void ce_close(void *impl)
{
        ce_free(impl);
}

static int ce_set_fence(void *impl, const char *leader_key, uint64_t epoch, lserr *err)
{
        struct cat_etcd *e = impl;
        CE_LOCK_SCOPE(e);

        /* Another leader may have written meanwhile. */
        ce_hcache_clear(e);
        if (!leader_key) {
                e->fence_epoch = 0;
                e->fence_key[0] = '\0';
                return 0;
        }
        if (!*leader_key || strlen(leader_key) > ETCD_KEY_MAX || epoch == 0 || epoch > INT64_MAX)
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": fence: leader key of 1 to %d bytes and an "
                                 "epoch of 1 to 2^63-1 needed", e->prefix, ETCD_KEY_MAX);
        snprintf(e->fence_key, sizeof(e->fence_key), "%s", leader_key);
        e->fence_epoch = (int64_t)epoch;
        return 0;
}

/* Writes the layout version under a fresh prefix, or checks the one there. */
static int check_layout(struct cat_etcd *e, lserr *err)
{
        _cleanup_(ce_kv_clear) struct etcd_kv kv = {0};
        _cleanup_free_ char *text = NULL;
        char key[CE_KEY_SIZE];
        struct etcd_cmp absent = {.key = key, .target = ETCD_CREATE, .result = ETCD_EQUAL, .num = 0};
        struct ce_rec w;
        struct ce_in in;
        size_t len = 0;
        int64_t layout;
        int r;

        ce_key_raw(e, key, "meta", "");
        ce_rec_begin(&w);
        ce_rec_i64(&w, "layout", CE_LAYOUT);
        r = ce_rec_end(&w, &text, &len);
        if (r < 0)
                return ce_fail(e, err, r, "open", "out of memory");
        struct etcd_op put = {.kind = ETCD_OP_PUT, .key = key, .value = text, .value_len = len};
        /* Created once: a prefix in use keeps the layout it was written in. */
        r = ce_txn(e, "open: write the layout version", &absent, 1, &put, 1, NULL, &kv, err);
        if (r <= 0)
                return r;
        r = ce_in_begin(&in, kv.value, kv.value_len);
        layout = r == 0 ? ce_in_i64(&in, "layout") : 0;
        if (r < 0 || ce_in_end(&in) < 0 || layout < 1)
                return ce_fail(e, err, -EINVAL, "open", "key \"meta\" is not a lockstep catalog's: refusing the prefix");
        if (layout > CE_LAYOUT)
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": open: layout version %" PRId64 " is newer than "
                                 "this program's %d: refusing to open it (upgrade lockstep)", e->prefix, layout,
                                 CE_LAYOUT);
        return 0;
}

static int prefix_ok(const char *p)
{
        size_t n = p ? strlen(p) : 0;

        if (n == 0 || n > CAT_ETCD_PREFIX_MAX || p[n - 1] != '/')
                return 0;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] >= 0x7f)
                        return 0;
        return 1;
}

static const struct cat_backend ce_backend = {
        .name = "etcd",
        .close = ce_close,
        .set_fence = ce_set_fence,
        .batch_begin = ce_be_batch_begin,
        .batch_end = ce_be_batch_end,
        .txn_begin = ce_be_txn_begin,
        .txn_decide = ce_be_txn_decide,
        .txn_finish = ce_be_txn_finish,
        .txn_get = ce_be_txn_get,
        .txn_unresolved = ce_be_txn_unresolved,
        .put_member = ce_be_put_member,
        .put_image = ce_be_put_image,
        .members = ce_be_members,
        .images = ce_be_images,
        .reverts_since = ce_be_reverts_since,
        .cut_set_status = ce_be_cut_set_status,
        .branch_set_status = ce_be_branch_set_status,
        .cuts_on_image = ce_be_cuts_on_image,
        .reverts_to = ce_be_reverts_to,
        .image_users = ce_be_image_users,
        .image_repath = ce_be_image_repath,
        .cuts = ce_be_cuts,
        .agent_put = ce_be_agent_put,
        .agents = ce_be_agents,
        .group_put = ce_be_group_put,
        .audit_add = ce_be_audit_add,
        .audit_list = ce_be_audit_list,
        .cut_read = ce_be_cut_read,
        .audit_recent = ce_be_audit_recent,
        .event_add = ce_be_event_add,
        .events = ce_be_events,
        .history_trim = ce_be_history_trim,
        .events_trim = ce_be_events_trim,
        .sched_get = ce_be_sched_get,
        .sched_put = ce_be_sched_put,
};

int cat_open_etcd(const struct cat_etcd_opts *o, struct catalog **ret, lserr *err)
{
        _cleanup_(ce_freep) struct cat_etcd *e = NULL;
        pthread_mutexattr_t attr;
        lserr why = {0};
        int r;

        if (!o || !o->etcd || !prefix_ok(o->prefix))
                return lserr_set(err, -EINVAL, "catalog etcd: open: a key prefix of 1 to %d printable bytes ending "
                                 "in '/' is needed", CAT_ETCD_PREFIX_MAX);
        e = calloc(1, sizeof(*e));
        if (!e)
                return lserr_set(err, -ENOMEM, "catalog etcd \"%s\": open: out of memory", o->prefix);
        pthread_mutexattr_init(&attr);
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
        r = pthread_mutex_init(&e->lock, &attr);
        pthread_mutexattr_destroy(&attr);
        if (r != 0) {
                free(TAKE_PTR(e));
                return lserr_set(err, -r, "catalog etcd \"%s\": open: mutex: %s", o->prefix, strerror(r));
        }
        snprintf(e->prefix, sizeof(e->prefix), "%s", o->prefix);
        r = etcd_open(o->etcd, &e->etcd, &why);
        if (r < 0)
                return ce_fail(e, err, r, "open", why.msg);
        r = check_layout(e, err);
        if (r < 0)
                return r;
        /* cat_open_backend closes the backend itself when it fails. */
        return cat_open_backend(&ce_backend, TAKE_PTR(e), ret, err);
}

int cat_etcd_defragment(struct catalog *c, lserr *err)
{
        struct cat_etcd *e;
        lserr why = {0};
        int r;

        if (!c || c->be != &ce_backend)
                return lserr_set(err, -EINVAL, "catalog: defragment: not an etcd catalog");
        e = c->be_impl;
        CE_LOCK_SCOPE(e);
        r = etcd_defragment(e->etcd, &why);
        if (r < 0)
                return ce_fail(e, err, r, "defragment", why.msg);
        return 0;
}

int cat_etcd_stats(struct catalog *c, struct etcd_stats *ret)
{
        struct cat_etcd *e;

        if (!c || c->be != &ce_backend)
                return -EINVAL;
        e = c->be_impl;
        CE_LOCK_SCOPE(e);
        etcd_stats(e->etcd, ret);
        return 0;
}
