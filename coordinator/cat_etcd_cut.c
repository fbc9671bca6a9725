/* cat_etcd_cut: what a cut holds in etcd (one key per member, two per disk image:
 * by cut and by VM) and what became of it, with the queries deletes and
 * retention rely on. */
#include "cat_etcd_priv.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

#define PATH_FIELD CAT_PATH_MAX
/* As the SQLite catalog: the newest reverts to a cut, no more. */
#define REVERTS_TO_MAX 1024

/* ---- members ---------------------------------------------------------------------- */

/* In a batch a write to a transaction never logged is refused by its own
 * call, as SQLite's foreign key does: the first record of each transaction
 * looks its header up once. Outside one, the write's guard refuses it. */
static int logged_in_batch(struct cat_etcd *e, const char *txid, const char *what, lserr *err)
{
        _cleanup_(ce_kv_clear) struct etcd_kv kv = {0};
        char key[CE_KEY_SIZE];
        int r;

        if (!e->batch || strcmp(e->known_txid, txid) == 0 || ce_hcache_get(e, txid, NULL))
                return 0;
        if (ce_key(e, key, 0, "txn/", txid, NULL) < 0)
                return ce_fail(e, err, -EINVAL, what, "transaction id too long for an etcd key");
        r = ce_get(e, key, &kv, what, err);
        if (r == 0)
                return ce_fail(e, err, -ENOENT, what, "no such transaction");
        if (r > 0)
                snprintf(e->known_txid, sizeof(e->known_txid), "%s", txid);
        return r < 0 ? r : 0;
}

/* A unit writing value (taken) at key, and at key2 when not NULL, guarded
 * by txid being logged. */
static int record_unit(struct cat_etcd *e, struct ce_unit *u, const char *txid, const char *key, const char *key2,
                       char *value, size_t len, const char *what)
{
        char hk[CE_KEY_SIZE];
        char *copy = NULL;
        int r;

        u->what = strdup(what);
        if (key2 && value)
                copy = strndup(value, len);
        if (!u->what || !value || (key2 && !copy) || ce_key(e, hk, 0, "txn/", txid, NULL) < 0) {
                free(value);
                free(copy);
                return -ENOMEM;
        }
        r = ce_unit_op(u, ETCD_OP_PUT, key, value, len);
        if (r == 0 && key2)
                r = ce_unit_op(u, ETCD_OP_PUT, key2, TAKE_PTR(copy), len);
        free(copy);
        if (r == 0)
                r = ce_unit_guard(u, hk, ETCD_CREATE, ETCD_GREATER, 0, CE_G_TXN);
        return r;
}

static int member_check(struct cat_etcd *e, const char *txid, const struct cat_member *m, lserr *err)
{
        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": record member: transaction id empty or longer "
                                 "than %zu bytes", e->prefix, CAT_ID_FIELD - 1);
        if (!cat_id_fits(m->agent, sizeof(m->agent), 0) || !cat_id_fits(m->vm, sizeof(m->vm), 0) ||
            !cat_id_fits(m->tier_name, sizeof(m->tier_name), 1))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": record member of \"%s\": agent or VM empty, or "
                                 "agent, VM or tier name longer than its field", e->prefix, txid);
        return 0;
}

static int member_encode(const struct cat_member *m, char **ret, size_t *ret_len)
{
        struct ce_rec w;

        ce_rec_begin(&w);
        ce_rec_str(&w, "agent", m->agent);
        ce_rec_str(&w, "vm", m->vm);
        ce_rec_i64(&w, "tier", m->tier);
        ce_rec_str(&w, "tier_name", m->tier_name);
        ce_rec_i64(&w, "code", m->code);
        ce_rec_text(&w, "message", m->message ? m->message : "", CAT_MESSAGE_MAX);
        /* Durations as signed 64 bits, as SQLite keeps them: back bit for bit. */
        ce_rec_i64(&w, "freeze_us", (int64_t)m->freeze_us);
        ce_rec_i64(&w, "snapshot_us", (int64_t)m->snapshot_us);
        ce_rec_i64(&w, "thaw_us", (int64_t)m->thaw_us);
        ce_rec_i64(&w, "frozen_for_us", (int64_t)m->frozen_for_us);
        ce_rec_i64(&w, "frozen_at_us", m->frozen_at_us);
        ce_rec_i64(&w, "thawed_at_us", m->thawed_at_us);
        return ce_rec_end(&w, ret, ret_len);
}

/* Insert or replace by txid, agent and VM. */
int ce_be_put_member(void *impl, const char *txid, const struct cat_member *m, lserr *err)
{
        _cleanup_(ce_unit_clear) struct ce_unit u = {0};
        struct cat_etcd *e = impl;
        char what[256], key[CE_KEY_SIZE], *text = NULL;
        size_t len = 0;
        int r = member_check(e, txid, m, err);

        if (r < 0)
                return r;
        snprintf(what, sizeof(what), "record member \"%s@%s\" of \"%s\"", m->vm, m->agent, txid);
        if (ce_key(e, key, 0, "mem/", txid, m->agent, m->vm, NULL) < 0)
                return ce_fail(e, err, -EINVAL, what, "names too long for an etcd key");
        CE_LOCK_SCOPE(e);
        r = logged_in_batch(e, txid, what, err);
        if (r < 0)
                return r;
        r = member_encode(m, &text, &len);
        if (r == 0)
                r = record_unit(e, &u, txid, key, NULL, text, len, what);
        if (r < 0)
                return ce_fail(e, err, r, what, "out of memory");
        return ce_write(e, &u, NULL, err);
}

/* A member as kept: its message in place (m's is NULL until members_list). */
struct member {
        struct cat_member m;
        char message[CAT_MESSAGE_MAX];
};

static int member_decode(const struct etcd_kv *kv, struct member *mm)
{
        struct cat_member *m = &mm->m;
        struct ce_in in;
        int r = ce_in_begin(&in, kv->value, kv->value_len);

        if (r < 0)
                return r;
        ce_in_str(&in, "agent", m->agent, sizeof(m->agent));
        ce_in_str(&in, "vm", m->vm, sizeof(m->vm));
        m->tier = (unsigned)ce_in_i64(&in, "tier");
        ce_in_str(&in, "tier_name", m->tier_name, sizeof(m->tier_name));
        m->code = (int)ce_in_i64(&in, "code");
        ce_in_str(&in, "message", mm->message, sizeof(mm->message));
        m->freeze_us = (uint64_t)ce_in_i64(&in, "freeze_us");
        m->snapshot_us = (uint64_t)ce_in_i64(&in, "snapshot_us");
        m->thaw_us = (uint64_t)ce_in_i64(&in, "thaw_us");
        m->frozen_for_us = (uint64_t)ce_in_i64(&in, "frozen_for_us");
        m->frozen_at_us = ce_in_i64(&in, "frozen_at_us");
        m->thawed_at_us = ce_in_i64(&in, "thawed_at_us");
        return ce_in_end(&in);
}

static int by_tier(const void *pa, const void *pb)
{
        const struct cat_member *a = &((const struct member *)pa)->m, *b = &((const struct member *)pb)->m;
        int c;

        if (a->tier != b->tier)
                return a->tier < b->tier ? -1 : 1;
        c = strcmp(a->agent, b->agent);
        return c ? c : strcmp(a->vm, b->vm);
}

/* Records as read, decoded into a new array of elements of size bytes (NULL
 * when none); -ENOMEM, or -EIO when one does not decode. */
static int decode_all(const struct etcd_kv *kvs, size_t n, size_t size, int (*decode)(const struct etcd_kv *, void *),
                      void **ret)
{
        char *v = n ? calloc(n, size) : NULL;

        if (n && !v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (decode(&kvs[i], v + i * size) < 0) {
                        free(v);
                        return -EIO;
                }
        *ret = v;
        return 0;
}

/* Every key under the prefix tx's dir holds, decoded into a new array of
 * elements of size bytes (NULL when none). */
static int read_records(struct cat_etcd *e, const char *dir, const char *txid, size_t size,
                        int (*decode)(const struct etcd_kv *, void *), void **ret, size_t *ret_n, const char *what,
                        lserr *err)
{
        struct etcd_kv *kvs = NULL;
        char key[CE_KEY_SIZE];
        size_t n = 0;
        int r = ce_key(e, key, 1, dir, txid, NULL);

        if (r < 0)
                return ce_fail(e, err, -EINVAL, what, "transaction id too long for an etcd key");
        r = ce_settle(e, err);
        if (r == 0)
                r = ce_list(e, key, 0, &kvs, &n, NULL, what, err);
        if (r == 0 && (r = decode_all(kvs, n, size, decode, ret)) < 0)
                r = ce_fail(e, err, r, what, r == -ENOMEM ? "out of memory" : CE_WHY_BAD);
        etcd_kvs_free(kvs, n);
        if (r == 0)
                *ret_n = n;
        return r;
}

static int decode_member(const struct etcd_kv *kv, void *row)
{
        return member_decode(kv, row);
}

/* n kept members, sorted in freeze order, as a list: one block (cat_rows_pack). */
static int members_list(struct member *v, size_t n, struct cat_member **ret)
{
        static const size_t strs[1] = {offsetof(struct member, message)};

        if (n > 1)
                qsort(v, n, sizeof(*v), by_tier);
        return cat_rows_pack(v, n, sizeof(*v), sizeof(struct cat_member), cat_member_strs, strs, 1, (void **)ret);
}

/* In freeze order (tier), then by agent and VM. An unknown txid is an empty list. */
int ce_be_members(void *impl, const char *txid, struct cat_member **ret, size_t *ret_n, lserr *err)
{
        struct cat_etcd *e = impl;
        char what[96];
        void *v = NULL;
        size_t n = 0;
        int r;

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": list members: transaction id empty or longer "
                                 "than %zu bytes", e->prefix, CAT_ID_FIELD - 1);
        snprintf(what, sizeof(what), "list members of \"%s\"", txid);
        CE_LOCK_SCOPE(e);
        r = read_records(e, "mem/", txid, sizeof(struct member), decode_member, &v, &n, what, err);
        if (r < 0)
                return r;
        _cleanup_free_ struct member *kept = v;
        if (members_list(kept, n, ret) < 0)
                return ce_fail(e, err, -ENOMEM, what, "out of memory");
        *ret_n = n;
        return 0;
}

/* ---- images --------------------------------------------------------------------- */

/* An image as kept: its transaction too, for the copy found by VM. Its
 * paths in place (im's are NULL): image_view points at them. */
struct image {
        struct cat_image im;
        char txid[CAT_ID_FIELD];
        char before[CAT_PATH_MAX], after[CAT_PATH_MAX];
};

/* i as a struct cat_image, valid while i stays where it is. */
static struct cat_image image_view(const struct image *i)
{
        struct cat_image v = i->im;

        v.before = i->before;
        v.after = i->after;
        return v;
}

/* n kept images as a list: one block (cat_rows_pack). */
static int images_list(const struct image *v, size_t n, struct cat_image **ret)
{
        static const size_t strs[2] = {offsetof(struct image, before), offsetof(struct image, after)};

        return cat_rows_pack(v, n, sizeof(*v), sizeof(struct cat_image), cat_image_strs, strs, 2, (void **)ret);
}

static int image_encode(const char *txid, const struct cat_image *im, char **ret, size_t *ret_len)
{
        struct ce_rec w;

        ce_rec_begin(&w);
        ce_rec_str(&w, "txid", txid);
        ce_rec_str(&w, "agent", im->agent);
        ce_rec_str(&w, "vm", im->vm);
        ce_rec_str(&w, "disk", im->disk);
        ce_rec_str(&w, "before", im->before ? im->before : "");
        ce_rec_str(&w, "after", im->after ? im->after : "");
        return ce_rec_end(&w, ret, ret_len);
}

static int image_decode(const struct etcd_kv *kv, void *row)
{
        struct image *i = row;
        struct ce_in in;
        int r = ce_in_begin(&in, kv->value, kv->value_len);

        if (r < 0)
                return r;
        ce_in_str(&in, "txid", i->txid, sizeof(i->txid));
        ce_in_str(&in, "agent", i->im.agent, sizeof(i->im.agent));
        ce_in_str(&in, "vm", i->im.vm, sizeof(i->im.vm));
        ce_in_str(&in, "disk", i->im.disk, sizeof(i->im.disk));
        ce_in_str(&in, "before", i->before, sizeof(i->before));
        ce_in_str(&in, "after", i->after, sizeof(i->after));
        return ce_in_end(&in);
}

static int image_check(struct cat_etcd *e, const char *txid, const struct cat_image *im, lserr *err)
{
        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": record image: transaction id empty or longer "
                                 "than %zu bytes", e->prefix, CAT_ID_FIELD - 1);
        if (!cat_id_fits(im->agent, sizeof(im->agent), 0) || !cat_id_fits(im->vm, sizeof(im->vm), 0) ||
            !cat_id_fits(im->disk, sizeof(im->disk), 0) || !cat_id_fits(im->before ? im->before : "", PATH_FIELD, 1) ||
            !cat_id_fits(im->after ? im->after : "", PATH_FIELD, 1))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": record image of \"%s\": agent, VM or disk "
                                 "empty, or a name or path longer than its field", e->prefix, txid);
        return 0;
}

/* The two keys of an image: by its cut, and by its VM. */
static int image_keys(struct cat_etcd *e, const char *txid, const struct cat_image *im, char ik[CE_KEY_SIZE],
                      char vk[CE_KEY_SIZE])
{
        if (ce_key(e, ik, 0, "img/", txid, im->agent, im->vm, im->disk, NULL) < 0 ||
            ce_key(e, vk, 0, "vmimg/", im->agent, im->vm, txid, im->disk, NULL) < 0)
                return -EINVAL;
        return 0;
}

/* Insert or replace by txid, agent, VM and disk. */
int ce_be_put_image(void *impl, const char *txid, const struct cat_image *im, lserr *err)
{
        _cleanup_(ce_unit_clear) struct ce_unit u = {0};
        struct cat_etcd *e = impl;
        char what[256], ik[CE_KEY_SIZE], vk[CE_KEY_SIZE], *text = NULL;
        size_t len = 0;
        int r = image_check(e, txid, im, err);

        if (r < 0)
                return r;
        snprintf(what, sizeof(what), "record image \"%s\" of \"%s@%s\" in \"%s\"", im->disk, im->vm, im->agent,
                 txid);
        if (image_keys(e, txid, im, ik, vk) < 0)
                return ce_fail(e, err, -EINVAL, what, "names too long for an etcd key");
        CE_LOCK_SCOPE(e);
        r = logged_in_batch(e, txid, what, err);
        if (r < 0)
                return r;
        r = image_encode(txid, im, &text, &len);
        if (r == 0)
                r = record_unit(e, &u, txid, ik, vk, text, len, what);
        if (r < 0)
                return ce_fail(e, err, r, what, "out of memory");
        return ce_write(e, &u, NULL, err);
}

static int by_disk(const void *pa, const void *pb)
{
        const struct image *a = pa, *b = pb;
        int c = strcmp(a->im.agent, b->im.agent);

        if (c == 0)
                c = strcmp(a->im.vm, b->im.vm);
        return c ? c : strcmp(a->im.disk, b->im.disk);
}

/* By agent, VM and disk. An unknown txid is an empty list. */
int ce_be_images(void *impl, const char *txid, struct cat_image **ret, size_t *ret_n, lserr *err)
{
        _cleanup_free_ struct image *v = NULL;
        struct cat_etcd *e = impl;
        struct cat_image *out = NULL;
        void *raw = NULL;
        char what[96];
        size_t n = 0;
        int r;

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": list images: transaction id empty or longer "
                                 "than %zu bytes", e->prefix, CAT_ID_FIELD - 1);
        snprintf(what, sizeof(what), "list images of \"%s\"", txid);
        CE_LOCK_SCOPE(e);
        r = read_records(e, "img/", txid, sizeof(struct image), image_decode, &raw, &n, what, err);
        if (r < 0)
                return r;
        v = raw;
        if (n > 1)
                qsort(v, n, sizeof(*v), by_disk);
        if (images_list(v, n, &out) < 0)
                return ce_fail(e, err, -ENOMEM, what, "out of memory");
        *ret = out;
        *ret_n = n;
        return 0;
}

/* ---- a cut at once ------------------------------------------------------------------ */

/* The header and every record of a cut in one etcd request (a report's read
 * after each cut). 0 when a range is longer than CE_PAGE keys: then the
 * caller reads it by parts, paged. */
int ce_be_cut_read(void *impl, const char *txid, size_t audit_limit, struct cat_cut *ret, lserr *err)
{
        _cleanup_(etcd_txn_resultp) struct etcd_txn_result t = {0};
        _cleanup_free_ struct image *im = NULL;
        struct cat_etcd *e = impl;
        char hk[CE_KEY_SIZE], mk[CE_KEY_SIZE], ik[CE_KEY_SIZE], ak[CE_KEY_SIZE], what[96];
        size_t audit_page = audit_limit && audit_limit < CE_PAGE ? audit_limit : CE_PAGE;
        struct ce_hdr h;
        lserr why = {0};
        void *v = NULL;
        int r;

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": get: transaction id empty or longer than %zu "
                                 "bytes", e->prefix, CAT_ID_FIELD - 1);
        snprintf(what, sizeof(what), "get \"%s\"", txid);
        if (ce_key(e, hk, 0, "txn/", txid, NULL) < 0 || ce_key(e, mk, 1, "mem/", txid, NULL) < 0 ||
            ce_key(e, ik, 1, "img/", txid, NULL) < 0 || ce_key(e, ak, 1, "audit/tx/", txid, NULL) < 0)
                return ce_fail(e, err, -EINVAL, what, "transaction id too long for an etcd key");
        const struct etcd_op ops[4] = {
                {.kind = ETCD_OP_RANGE, .key = hk},
                {.kind = ETCD_OP_RANGE, .key = mk, .prefix = 1, .limit = CE_PAGE},
                {.kind = ETCD_OP_RANGE, .key = ik, .prefix = 1, .limit = CE_PAGE},
                {.kind = ETCD_OP_RANGE, .key = ak, .prefix = 1, .limit = audit_page},
        };
        CE_LOCK_SCOPE(e);
        r = ce_settle(e, err);
        if (r < 0)
                return r;
        r = etcd_txn(e->etcd, NULL, 0, ops, 4, NULL, 0, &t, &why);
        if (r < 0)
                return ce_fail(e, err, r, what, why.msg);
        if (!t.succeeded || t.n_ranges != 4)
                return ce_fail(e, err, -EPROTO, what, "etcd answered a read with another number of ranges");
        if (t.more[1] || t.more[2] || (t.more[3] && audit_page < audit_limit))
                return 0;
        if (t.n_kvs[0] == 0)
                return ce_fail(e, err, -ENOENT, what, "no such transaction");
        if (ce_hdr_decode(t.kvs[0][0].value, t.kvs[0][0].value_len, &h) < 0)
                return ce_fail(e, err, -EIO, what, CE_WHY_BAD);
        ret->t = h.t;
        r = decode_all(t.kvs[1], t.n_kvs[1], sizeof(struct member), decode_member, &v);
        if (r == 0) {
                _cleanup_free_ struct member *kept = v;
                if (members_list(kept, t.n_kvs[1], &ret->m) < 0)
                        r = -ENOMEM;
                else
                        ret->nm = t.n_kvs[1];
        }
        if (r == 0 && (r = decode_all(t.kvs[2], t.n_kvs[2], sizeof(struct image), image_decode, &v)) == 0)
                im = v;
        if (r == 0 && t.n_kvs[2] > 1)
                qsort(im, t.n_kvs[2], sizeof(*im), by_disk);
        if (r == 0 && images_list(im, t.n_kvs[2], &ret->im) < 0)
                r = -ENOMEM;
        if (r == 0)
                ret->ni = t.n_kvs[2];
        /* As cat_audit_list's, unreadable rows leave the report without them. */
        if (r == 0 && ce_audit_rows(t.kvs[3], t.n_kvs[3], &ret->au) == 0)
                ret->na = t.n_kvs[3];
        if (r < 0)
                return ce_fail(e, err, r, what, r == -ENOMEM ? "out of memory" : CE_WHY_BAD);
        return 1;
}

/* ---- what became of cuts and branches ------------------------------------------------ */

/* Sets the status of txid's cut (branch 0) or branch, if it is a transaction
 * of that kind; read, changed and written back unless another writer came
 * between. */
static int set_status(struct cat_etcd *e, const char *txid, int branch, const char *status, const char *reason,
                      const char *what, lserr *err)
{
        enum cat_kind kind = branch ? CAT_KIND_REVERT : CAT_KIND_SNAPSHOT;
        int r = ce_settle(e, err);

        for (int tries = 0; r == 0 && tries < CE_TRIES; tries++) {
                _cleanup_free_ char *text = NULL;
                char key[CE_KEY_SIZE];
                struct ce_hdr h;
                size_t len = 0;
                r = ce_hdr_get(e, txid, &h, what, err);
                if (r < 0)
                        return r;
                if (r == 0 || h.t.kind != kind)
                        return lserr_set(err, -ENOENT, "catalog etcd \"%s\": no %s \"%s\"", e->prefix,
                                         branch ? "revert" : "cut", txid);
                char *st = branch ? h.t.branch_status : h.t.cut_status;
                char *why = branch ? h.t.branch_reason : h.t.cut_status_reason;
                size_t n = cat_text_len(reason ? reason : "", sizeof(h.t.branch_reason));
                snprintf(st, sizeof(h.t.cut_status), "%s", status);
                memcpy(why, reason ? reason : "", n);
                why[n] = '\0';
                ce_key(e, key, 0, "txn/", txid, NULL);
                r = ce_hdr_encode(&h.t, &text, &len);
                if (r < 0)
                        return ce_fail(e, err, r, what, "out of memory");
                struct etcd_cmp same = {.key = key, .target = ETCD_MOD, .result = ETCD_EQUAL, .num = h.mod};
                struct etcd_op put = {.kind = ETCD_OP_PUT, .key = key, .value = text, .value_len = len};
                ce_hcache_drop(e, txid);
                r = ce_txn(e, what, &same, 1, &put, 1, NULL, NULL, err);
                if (r <= 0)
                        return r;
                r = 0;
        }
        return r < 0 ? r : ce_fail(e, err, -EAGAIN, what, "other writers kept changing it");
}

int ce_be_cut_set_status(void *impl, const char *txid, const char *status, const char *reason, lserr *err)
{
        struct cat_etcd *e = impl;
        char what[96];

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": cut status: transaction id empty or too long",
                                 e->prefix);
        if (strcmp(status, "") && strcmp(status, "deleted") && strcmp(status, "delete-failed"))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": cut status \"%s\" unknown", e->prefix, status);
        snprintf(what, sizeof(what), "cut \"%s\": set status", txid);
        CE_LOCK_SCOPE(e);
        return set_status(e, txid, 0, status, reason, what, err);
}

int ce_be_branch_set_status(void *impl, const char *txid, const char *status, const char *reason, lserr *err)
{
        struct cat_etcd *e = impl;
        char what[96];

        if (!cat_id_fits(txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": branch status: transaction id empty or too "
                                 "long", e->prefix);
        if (strcmp(status, "") && strcmp(status, "undone") && strcmp(status, "deleted") &&
            strcmp(status, "delete-failed"))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": branch status \"%s\" unknown", e->prefix,
                                 status);
        snprintf(what, sizeof(what), "revert \"%s\": set branch status", txid);
        CE_LOCK_SCOPE(e);
        return set_status(e, txid, 1, status, reason, what, err);
}

/* ---- lists of cuts and reverts ------------------------------------------------------ */

/* Cuts (transactions of kind SNAPSHOT) and reverts, newest first; group NULL = all. */
int ce_be_cuts(void *impl, const char *group, struct cat_txn **ret, size_t *ret_n, lserr *err)
{
        _cleanup_free_ struct ce_hdr *h = NULL;
        struct cat_etcd *e = impl;
        char what[96], key[CE_KEY_SIZE];
        size_t n = 0, k = 0;
        int r;

        if (group && !cat_id_fits(group, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": list cuts: group name empty or longer than %zu "
                                 "bytes", e->prefix, CAT_ID_FIELD - 1);
        snprintf(what, sizeof(what), "list cuts of \"%s\"", group ? group : "*");
        if (group && ce_key(e, key, 1, "cut/", group, NULL) < 0)
                return ce_fail(e, err, -EINVAL, what, "group name too long for an etcd key");
        CE_LOCK_SCOPE(e);
        r = ce_settle(e, err);
        /* A group's through its index; all of them as every header. */
        if (r == 0)
                r = group ? ce_hdrs_idx(e, key, &h, &n, what, err) : ce_hdrs_all(e, &h, &n, what, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (h[i].t.kind != CAT_KIND_DELETE)
                        h[k++] = h[i];
        ce_hdrs_sort(h, k, 1);
        r = ce_hdrs_out(h, k, ret, ret_n);
        return r < 0 ? ce_fail(e, err, r, what, "out of memory") : 0;
}

/* The committed reverts, newest first (started after since_us, with a kept
 * branch when kept_only). */
static int committed_reverts(struct cat_etcd *e, long long since_us, int kept_only, struct ce_hdr **ret,
                             size_t *ret_n, const char *what, lserr *err)
{
        struct ce_hdr *h = NULL;
        char key[CE_KEY_SIZE];
        size_t n = 0, k = 0;
        int r;

        ce_key_raw(e, key, "revert/", "");
        r = ce_hdrs_idx(e, key, &h, &n, what, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                const struct cat_txn *t = &h[i].t;
                int kept = !strcmp(t->branch_status, "") || !strcmp(t->branch_status, "delete-failed");
                if (t->kind == CAT_KIND_REVERT && t->committed && t->started_us > since_us && (kept || !kept_only))
                        h[k++] = h[i];
        }
        ce_hdrs_sort(h, k, 1);
        *ret = h;
        *ret_n = k;
        return 0;
}

/* The tails ("agent/vm" as key parts) of txid's member keys, in key order. */
static int member_tails(struct cat_etcd *e, const char *txid, struct etcd_kv **ret, size_t *ret_n, size_t *ret_skip,
                        const char *what, lserr *err)
{
        char key[CE_KEY_SIZE];

        if (ce_key(e, key, 1, "mem/", txid, NULL) < 0)
                return ce_fail(e, err, -EINVAL, what, "transaction id too long for an etcd key");
        *ret_skip = strlen(key);
        return ce_list(e, key, 0, ret, ret_n, NULL, what, err);
}

static int by_key(const void *pa, const void *pb)
{
        return strcmp(*(const char *const *)pa, *(const char *const *)pb);
}

/* Whether txid holds a VM (agent and VM) of the sorted tails. */
static int shares_vm(struct cat_etcd *e, const char *txid, const char *const *tails, size_t n_tails,
                     const char *what, lserr *err)
{
        struct etcd_kv *kvs = NULL;
        size_t n = 0, skip = 0;
        int r = member_tails(e, txid, &kvs, &n, &skip, what, err), found = 0;

        for (size_t i = 0; r == 0 && !found && i < n; i++) {
                const char *t = kvs[i].key + skip;
                found = bsearch(&t, tails, n_tails, sizeof(*tails), by_key) != NULL;
        }
        etcd_kvs_free(kvs, n);
        return r < 0 ? r : found;
}

/* By member, not by group: groups may share VMs, and a revert of any group
 * that holds one of this cut's VMs branched that VM's chain. */
int ce_be_reverts_since(void *impl, const char *cut_txid, long long since_us, char ret_txid[65], lserr *err)
{
        _cleanup_free_ struct ce_hdr *h = NULL;
        _cleanup_free_ const char **tails = NULL;
        struct cat_etcd *e = impl;
        struct etcd_kv *cut = NULL;
        char what[96], newest[CAT_ID_FIELD] = "";
        size_t n = 0, n_cut = 0, skip = 0;
        int r, count = 0;

        if (!cat_id_fits(cut_txid, CAT_ID_FIELD, 0))
                return lserr_set(err, -EINVAL, "catalog etcd \"%s\": reverts: transaction id empty or too long",
                                 e->prefix);
        snprintf(what, sizeof(what), "reverts after \"%s\"", cut_txid);
        CE_LOCK_SCOPE(e);
        r = ce_settle(e, err);
        if (r == 0)
                r = committed_reverts(e, since_us, 1, &h, &n, what, err);
        if (r == 0 && n)
                r = member_tails(e, cut_txid, &cut, &n_cut, &skip, what, err);
        if (r == 0 && n_cut && !(tails = calloc(n_cut, sizeof(*tails))))
                r = ce_fail(e, err, -ENOMEM, what, "out of memory");
        for (size_t i = 0; r == 0 && i < n_cut; i++)
                tails[i] = cut[i].key + skip;
        for (size_t i = 0; r == 0 && n_cut && i < n; i++) {
                r = shares_vm(e, h[i].t.txid, tails, n_cut, what, err);
                if (r > 0 && count++ == 0)
                        memcpy(newest, h[i].t.txid, sizeof(newest));
                r = r < 0 ? r : 0;
        }
        etcd_kvs_free(cut, n_cut);
        if (r < 0)
                return r;
        memcpy(ret_txid, newest, sizeof(newest));
        return count;
}

/* The committed reverts (not undos) to cut_txid, newest first. */
int ce_be_reverts_to(void *impl, const char *cut_txid, char (**ret)[65], size_t *ret_n, lserr *err)
{
        _cleanup_free_ struct ce_hdr *h = NULL;
        struct cat_etcd *e = impl;
        char(*v)[65] = NULL, what[96];
        size_t n = 0, k = 0;
        int r;

        snprintf(what, sizeof(what), "reverts to \"%s\"", cut_txid);
        CE_LOCK_SCOPE(e);
        r = ce_settle(e, err);
        if (r == 0)
                r = committed_reverts(e, INT64_MIN, 0, &h, &n, what, err);
        if (r < 0)
                return r;
        if (n && !(v = calloc(n, sizeof(*v))))
                return ce_fail(e, err, -ENOMEM, what, "out of memory");
        for (size_t i = 0; i < n && k < REVERTS_TO_MAX; i++)
                if (!strcmp(h[i].t.mode, "revert") && !strcmp(h[i].t.name, cut_txid))
                        memcpy(v[k++], h[i].t.txid, sizeof(*v));
        if (k == 0) {
                free(v);
                v = NULL;
        }
        *ret = v;
        *ret_n = k;
        return 0;
}

/* ---- images shared between cuts ---------------------------------------------------- */

/* An image found by its VM, with the revision of that key. */
struct vm_image {
        struct image i;
        int64_t mod;
};

/* The images of agent/vm, in every cut, whose base is path. */
static int images_on(struct cat_etcd *e, const char *agent, const char *vm, const char *path, struct vm_image **ret,
                     size_t *ret_n, const char *what, lserr *err)
{
        struct etcd_kv *kvs = NULL;
        struct vm_image *v = NULL;
        char key[CE_KEY_SIZE];
        size_t n = 0, k = 0;
        int r;

        if (ce_key(e, key, 1, "vmimg/", agent, vm, NULL) < 0)
                return ce_fail(e, err, -EINVAL, what, "names too long for an etcd key");
        r = ce_settle(e, err);
        if (r == 0)
                r = ce_list(e, key, 0, &kvs, &n, NULL, what, err);
        if (r == 0 && n && !(v = calloc(n, sizeof(*v))))
                r = ce_fail(e, err, -ENOMEM, what, "out of memory");
        for (size_t i = 0; r == 0 && i < n; i++) {
                if (image_decode(&kvs[i], &v[k].i) < 0)
                        r = ce_fail(e, err, -EIO, what, CE_WHY_BAD);
                else if (strcmp(v[k].i.before, path) == 0)
                        v[k++].mod = kvs[i].mod_revision;
        }
        etcd_kvs_free(kvs, n);
        if (r < 0) {
                free(v);
                return r;
        }
        *ret = v;
        *ret_n = k;
        return 0;
}

/* For each image, whether it belongs to a cut that is not deleted. */
static int in_live_cut(struct cat_etcd *e, const struct vm_image *v, size_t n, int *live, const char *what,
                       lserr *err)
{
        _cleanup_free_ const char **ids = calloc(n ? n : 1, sizeof(*ids));
        _cleanup_free_ struct ce_hdr *h = NULL;
        size_t k = 0, nh = 0;
        int r;

        if (!ids)
                return ce_fail(e, err, -ENOMEM, what, "out of memory");
        /* By VM, a cut's images come one after another. */
        for (size_t i = 0; i < n; i++)
                if (k == 0 || strcmp(ids[k - 1], v[i].i.txid) != 0)
                        ids[k++] = v[i].i.txid;
        r = ce_hdrs_of(e, ids, k, &h, &nh, what, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                live[i] = 0;
                for (size_t j = 0; j < nh; j++)
                        if (!strcmp(h[j].t.txid, v[i].i.txid) && h[j].t.kind == CAT_KIND_SNAPSHOT &&
                            strcmp(h[j].t.cut_status, "deleted") != 0)
                                live[i] = 1;
        }
        return 0;
}

/* The cuts (not deleted) one of whose images is file path of agent/vm. */
int ce_be_cuts_on_image(void *impl, const char *agent, const char *vm, const char *path, char (**ret)[65],
                        size_t *ret_n, lserr *err)
{
        _cleanup_free_ struct vm_image *v = NULL;
        _cleanup_free_ int *live = NULL;
        struct cat_etcd *e = impl;
        char(*ids)[65] = NULL, what[256];
        size_t n = 0, k = 0;
        int r;

        snprintf(what, sizeof(what), "%s@%s: cuts on \"%s\"", vm, agent, path);
        CE_LOCK_SCOPE(e);
        r = images_on(e, agent, vm, path, &v, &n, what, err);
        if (r == 0 && !(live = calloc(n ? n : 1, sizeof(*live))))
                r = ce_fail(e, err, -ENOMEM, what, "out of memory");
        if (r == 0)
                r = in_live_cut(e, v, n, live, what, err);
        if (r == 0 && n && !(ids = calloc(n, sizeof(*ids))))
                r = ce_fail(e, err, -ENOMEM, what, "out of memory");
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (live[i] && (k == 0 || strcmp(ids[k - 1], v[i].i.txid) != 0))
                        memcpy(ids[k++], v[i].i.txid, sizeof(*ids));
        if (k == 0) {
                free(ids);
                ids = NULL;
        }
        *ret = ids;
        *ret_n = k;
        return 0;
}

/* How many cuts other than except_txid, not deleted, hold the file as an image. */
int ce_be_image_users(void *impl, const char *agent, const char *vm, const char *path, const char *except_txid,
                      lserr *err)
{
        _cleanup_free_ struct vm_image *v = NULL;
        _cleanup_free_ int *live = NULL;
        struct cat_etcd *e = impl;
        char what[256];
        size_t n = 0, k = 0;
        int r, users = 0;

        snprintf(what, sizeof(what), "%s@%s: users of \"%s\"", vm, agent, path);
        CE_LOCK_SCOPE(e);
        r = images_on(e, agent, vm, path, &v, &n, what, err);
        for (size_t i = 0; r == 0 && i < n; i++)
                if (!except_txid || strcmp(v[i].i.txid, except_txid) != 0)
                        v[k++] = v[i];
        if (r == 0 && !(live = calloc(k ? k : 1, sizeof(*live))))
                r = ce_fail(e, err, -ENOMEM, what, "out of memory");
        if (r == 0)
                r = in_live_cut(e, v, k, live, what, err);
        for (size_t i = 0; r == 0 && i < k; i++)
                users += live[i];
        return r < 0 ? r : users;
}

/* Writes v's images with base new_path, ETCD_TXN_OPS_MAX / 2 images per etcd
 * transaction; 1 when one of them changed since read. */
static int repath_write(struct cat_etcd *e, struct vm_image *v, size_t n, const char *new_path, const char *what,
                        lserr *err)
{
        for (size_t i = 0; i < n; i += ETCD_TXN_OPS_MAX / 2) {
                size_t m = n - i < ETCD_TXN_OPS_MAX / 2 ? n - i : ETCD_TXN_OPS_MAX / 2;
                _cleanup_free_ char(*keys)[CE_KEY_SIZE] = calloc(2 * m, CE_KEY_SIZE);
                _cleanup_free_ char **texts = calloc(m, sizeof(char *));
                struct etcd_op ops[ETCD_TXN_OPS_MAX];
                struct etcd_cmp cmps[ETCD_TXN_OPS_MAX / 2];
                int r = keys && texts ? 0 : -ENOMEM;
                for (size_t k = 0; r == 0 && k < m; k++) {
                        struct vm_image *im = &v[i + k];
                        size_t len = 0;
                        snprintf(im->i.before, sizeof(im->i.before), "%s", new_path);
                        struct cat_image view = image_view(&im->i);
                        r = image_keys(e, im->i.txid, &view, keys[2 * k], keys[2 * k + 1]);
                        if (r == 0)
                                r = image_encode(im->i.txid, &view, &texts[k], &len);
                        ops[2 * k] = (struct etcd_op){.kind = ETCD_OP_PUT, .key = keys[2 * k], .value = texts[k],
                                                      .value_len = len};
                        ops[2 * k + 1] = (struct etcd_op){.kind = ETCD_OP_PUT, .key = keys[2 * k + 1],
                                                          .value = texts[k], .value_len = len};
                        cmps[k] = (struct etcd_cmp){.key = keys[2 * k + 1], .target = ETCD_MOD, .result = ETCD_EQUAL,
                                                    .num = im->mod};
                }
                if (r < 0)
                        r = ce_fail(e, err, r, what, r == -ENOMEM ? "out of memory" : "names too long for an etcd key");
                else
                        r = ce_txn(e, what, cmps, m, ops, 2 * m, NULL, NULL, err);
                for (size_t k = 0; texts && k < m; k++)
                        free(texts[k]);
                if (r != 0)
                        return r > 0 ? 1 : r;
        }
        return 0;
}

/* After a delete merged layer old_path into new_path on agent/vm: every cut
 * image recorded as old_path is now new_path (in etcd transactions of 64
 * images: one VM's images of one path are few). */
int ce_be_image_repath(void *impl, const char *agent, const char *vm, const char *old_path, const char *new_path,
                       lserr *err)
{
        struct cat_etcd *e = impl;
        char what[256];
        int r = 1;

        snprintf(what, sizeof(what), "%s@%s: repath images", vm, agent);
        if (!cat_id_fits(new_path, PATH_FIELD, 1))
                return ce_fail(e, err, -EINVAL, what, "new path longer than an image's field");
        CE_LOCK_SCOPE(e);
        for (int tries = 0; r == 1 && tries < CE_TRIES; tries++) {
                _cleanup_free_ struct vm_image *v = NULL;
                size_t n = 0;
                r = images_on(e, agent, vm, old_path, &v, &n, what, err);
                if (r == 0)
                        r = repath_write(e, v, n, new_path, what, err);
        }
        return r == 1 ? ce_fail(e, err, -EAGAIN, what, "other writers kept changing them") : r;
}
