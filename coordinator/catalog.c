/* catalog: the coordinator's durable state in one SQLite file, opened in WAL mode
 * with synchronous=FULL so a logged decision survives a crash the moment it returns.
 * This file opens and closes it and holds the lock, transaction and statement
 * helpers the cat_*.c files build on. */
#include "catalog_priv.h"

#include <assert.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"

/* Long enough to ride out another process's checkpoint or a short write burst,
 * short enough that a stuck lock shows up as an error rather than a hang. */
#define BUSY_TIMEOUT_MS 5000

long long cat_now_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *const cat_kind_words[CAT_KIND_DELETE + 1] = {
        [CAT_KIND_SNAPSHOT] = "snapshot",
        [CAT_KIND_REVERT] = "revert",
        [CAT_KIND_DELETE] = "delete",
};

const char *const cat_state_words[CAT_TXN_DONE + 1] = {
        [CAT_TXN_STARTED] = "started",
        [CAT_TXN_COMMIT] = "commit",
        [CAT_TXN_ABORT] = "abort",
        [CAT_TXN_DONE] = "done",
};

int cat_member_ok(const char *s)
{
        const char *at;

        if (!s || !cat_id_fits(s, 2 * CAT_ID_FIELD, 0))
                return 0;
        at = strchr(s, '@');
        if (!at || strchr(at + 1, '@'))
                return 0;
        return at > s && (size_t)(at - s) < CAT_ID_FIELD && at[1] && strlen(at + 1) < CAT_ID_FIELD;
}

int cat_word_index(const char *const *words, size_t n, const unsigned char *s)
{
        if (!s)
                return -1;
        for (size_t i = 0; i < n; i++)
                if (strcmp(words[i], (const char *)s) == 0)
                        return (int)i;
        return -1;
}

int cat_id_fits(const char *s, size_t field, int may_be_empty)
{
        size_t n;

        if (!s)
                return 0;
        n = strnlen(s, field);
        return n < field && (may_be_empty || n > 0);
}

size_t cat_text_len(const char *s, size_t field)
{
        size_t n = strnlen(s, field);

        if (n < field)
                return n;
        n = field - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
                n--;
        return n;
}

int cat_rc_errno(int rc)
{
        if (rc == CAT_RC_BADROW)
                return -EIO;
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
                return -ENOENT;
        if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
                return -EEXIST;
        switch (rc & 0xff) {
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_CONSTRAINT:
        case SQLITE_TOOBIG:
        case SQLITE_RANGE:
        case SQLITE_MISMATCH:
                return -EINVAL;
        default:
                return -EIO;
        }
}

const char *cat_why(const struct catalog *c, int rc)
{
        if (rc == CAT_RC_BADROW)
                return "a row holds a value this program does not know (file edited or written by a newer version?)";
        if (c->db && sqlite3_extended_errcode(c->db) == rc)
                return sqlite3_errmsg(c->db);
        return sqlite3_errstr(rc);
}

/* ---- the lock and write transactions ---------------------------------------- */

struct catalog *cat_lock(struct catalog *c)
{
        pthread_mutex_lock(&c->lock);
        return c;
}

void cat_unlockp(struct catalog **c)
{
        if (*c)
                pthread_mutex_unlock(&(*c)->lock);
}

int cat_begin(struct catalog *c)
{
        /* A batch takes single-row writes only: its transaction is not to be
         * committed or rolled back by a function that joins it. */
        assert(!c->batch);
        return sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
}

int cat_commit(struct catalog *c)
{
        return sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
}

void cat_rollbackp(struct catalog **c)
{
        if (*c && (*c)->db && !(*c)->batch && !sqlite3_get_autocommit((*c)->db))
                sqlite3_exec((*c)->db, "ROLLBACK", NULL, NULL, NULL);
}

int cat_batch_begin(struct catalog *c, lserr *err)
{
        if (c->be)
                return c->be->batch_begin(c->be_impl, err);
        int rc;

        cat_lock(c);
        assert(!c->batch);
        rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                /* The rows go one by one then, each its own transaction. */
                lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": begin a batch of records: %s", c->path,
                          cat_why(c, rc));
                pthread_mutex_unlock(&c->lock);
                return err->code;
        }
        c->batch = 1;
        return 0;
}

int cat_batch_end(struct catalog *c, lserr *err)
{
        if (c->be)
                return c->be->batch_end(c->be_impl, err);
        __attribute__((unused)) _cleanup_(cat_unlockp) struct catalog *locked = c;
        int rc = SQLITE_OK;

        assert(c->batch);
        c->batch = 0;
        /* A full disk or an I/O error makes SQLite roll the whole transaction
         * back itself: the rows after it were written one by one. */
        if (sqlite3_get_autocommit(c->db))
                return lserr_set(err, -EIO, "catalog \"%s\": a batch of records was rolled back by SQLite (full "
                                 "disk or I/O error?): some of its rows are missing", c->path);
        rc = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": commit a batch of records: %s", c->path,
                          cat_why(c, rc));
                sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
                return err->code;
        }
        return 0;
}

/* ---- the statement helper --------------------------------------------------- */

void cat_stmt_finalizep(sqlite3_stmt **st)
{
        /* Its result repeats the step's failure, which the caller has reported. */
        sqlite3_finalize(*st);
}

static int bind_one(sqlite3_stmt *st, int i, char type, va_list *ap)
{
        const char *s;
        size_t field;

        switch (type) {
        case 'i':
                return sqlite3_bind_int64(st, i, va_arg(*ap, int));
        case 'L':
                return sqlite3_bind_int64(st, i, va_arg(*ap, long long));
        case 's':
                s = va_arg(*ap, const char *);
                assert(s);
                return sqlite3_bind_text(st, i, s, (int)strlen(s), SQLITE_STATIC);
        case 'T':
                s = va_arg(*ap, const char *);
                field = va_arg(*ap, size_t);
                assert(s && field > 0);
                return sqlite3_bind_text(st, i, s, (int)cat_text_len(s, field), SQLITE_STATIC);
        default:
                assert(!"unknown bind type in a catalog statement's format");
                return SQLITE_MISUSE;
        }
}

static int prepare_v(struct catalog *c, sqlite3_stmt **ret, const char *sql, const char *fmt, va_list *ap)
{
        _cleanup_(cat_stmt_finalizep) sqlite3_stmt *st = NULL;
        int rc;

        *ret = NULL;
        rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return rc;
        /* A format that does not match the SQL is this program's bug. */
        assert(sqlite3_bind_parameter_count(st) == (int)strlen(fmt));
        for (int i = 0; fmt[i]; i++) {
                rc = bind_one(st, i + 1, fmt[i], ap);
                if (rc != SQLITE_OK)
                        return rc;
        }
        *ret = TAKE_PTR(st);
        return SQLITE_OK;
}

/* The cached statement for sql (a literal: its address is the key), or NULL. */
static sqlite3_stmt *cache_get(struct catalog *c, const char *sql)
{
        for (unsigned i = 0; i < CAT_STMT_CACHE; i++)
                if (c->cache_sql[i] == sql)
                        return c->cache_st[i];
        return NULL;
}

/* Keeps st for sql, in place of the oldest one kept. */
static void cache_put(struct catalog *c, const char *sql, sqlite3_stmt *st)
{
        unsigned i = c->cache_next++ % CAT_STMT_CACHE;

        sqlite3_finalize(c->cache_st[i]);
        c->cache_sql[i] = sql;
        c->cache_st[i] = st;
}

static void cache_clear(struct catalog *c)
{
        for (unsigned i = 0; i < CAT_STMT_CACHE; i++) {
                sqlite3_finalize(c->cache_st[i]);
                c->cache_st[i] = NULL;
                c->cache_sql[i] = NULL;
        }
}

static int bind_all(sqlite3_stmt *st, const char *fmt, va_list *ap)
{
        /* A format that does not match the SQL is this program's bug. */
        assert(sqlite3_bind_parameter_count(st) == (int)strlen(fmt));
        for (int i = 0; fmt[i]; i++) {
                int rc = bind_one(st, i + 1, fmt[i], ap);
                if (rc != SQLITE_OK)
                        return rc;
        }
        return SQLITE_OK;
}

int cat_exec(struct catalog *c, const char *sql, const char *fmt, ...)
{
        sqlite3_stmt *st = cache_get(c, sql);
        va_list ap;
        int rc = SQLITE_OK;

        if (!st) {
                rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
                if (rc != SQLITE_OK)
                        return rc;
                cache_put(c, sql, st);
        }
        va_start(ap, fmt);
        rc = bind_all(st, fmt, &ap);
        va_end(ap);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        /* A statement that returns rows belongs in cat_query_row or cat_query_list. */
        assert(rc != SQLITE_ROW);
        /* Its bound text is the caller's: nothing may point at it after this. */
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return rc;
}

int cat_query_row(struct catalog *c, cat_row_fn decode, void *row, const char *sql, const char *fmt, ...)
{
        _cleanup_(cat_stmt_finalizep) sqlite3_stmt *st = NULL;
        va_list ap;
        int rc;

        va_start(ap, fmt);
        rc = prepare_v(c, &st, sql, fmt, &ap);
        va_end(ap);
        if (rc != SQLITE_OK)
                return rc;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && decode(st, row) < 0)
                return CAT_RC_BADROW;
        return rc;
}

/* Steps st to its end, decoding each row into one growing array: with
 * decode, or (strs not NULL) with decode_s, its strings into strs. */
static int collect(sqlite3_stmt *st, size_t size, cat_row_fn decode, cat_row_s_fn decode_s, struct cat_strs *strs,
                   void **ret, size_t *ret_n)
{
        _cleanup_free_ char *v = NULL;
        size_t n = 0, cap = 0;
        int rc;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (n == cap) {
                        size_t ncap = cap ? 2 * cap : 8;
                        char *nv = reallocarray(v, ncap, size);

                        if (!nv)
                                return SQLITE_NOMEM;
                        v = nv;
                        cap = ncap;
                }
                memset(v + n * size, 0, size);
                if ((strs ? decode_s(st, v + n * size, strs) : decode(st, v + n * size)) < 0)
                        return CAT_RC_BADROW;
                if (strs && strs->failed)
                        return SQLITE_NOMEM;
                n++;
        }
        if (rc != SQLITE_DONE)
                return rc;
        *ret = TAKE_PTR(v);
        *ret_n = n;
        return rc;
}

const char *cat_strs_add(struct cat_strs *strs, const char *s)
{
        size_t n = strlen(s ? s : "") + 1, off = strs->len;

        if (strs->len + n > strs->cap) {
                size_t cap = strs->cap ? 2 * strs->cap : 4096;
                char *p;

                while (cap < strs->len + n)
                        cap *= 2;
                if (!(p = realloc(strs->p, cap))) {
                        strs->failed = 1;
                        return NULL;
                }
                strs->p = p;
                strs->cap = cap;
        }
        memcpy(strs->p + off, s ? s : "", n);
        strs->len += n;
        return (const char *)(uintptr_t)off;
}

int cat_rows_pack(const void *kept, size_t n, size_t kept_size, size_t size, const size_t *offs,
                  const size_t *strs, size_t n_offs, void **ret)
{
        size_t bytes = 0;
        char *block, *at;

        *ret = NULL;
        if (!n)
                return 0;
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < n_offs; k++)
                        bytes += strlen((const char *)kept + i * kept_size + strs[k]) + 1;
        if (!(block = malloc(n * size + bytes)))
                return -ENOMEM;
        at = block + n * size;
        for (size_t i = 0; i < n; i++) {
                const char *rec = (const char *)kept + i * kept_size;

                memcpy(block + i * size, rec, size);
                for (size_t k = 0; k < n_offs; k++) {
                        size_t len = strlen(rec + strs[k]) + 1;

                        memcpy(at, rec + strs[k], len);
                        *(const char **)(block + i * size + offs[k]) = at;
                        at += len;
                }
        }
        *ret = block;
        return 0;
}

const char *cat_col_strp(sqlite3_stmt *st, int i, struct cat_strs *strs)
{
        return cat_strs_add(strs, (const char *)sqlite3_column_text(st, i));
}

int cat_query_rows(struct catalog *c, size_t size, cat_row_s_fn decode, const size_t *offs, size_t n_offs,
                   void **ret, size_t *ret_n, const char *sql, const char *fmt, ...)
{
        _cleanup_(cat_stmt_finalizep) sqlite3_stmt *st = NULL;
        _cleanup_free_ char *strs_p = NULL;
        struct cat_strs strs = {0};
        void *rows = NULL;
        char *block;
        size_t n = 0;
        va_list ap;
        int rc;

        va_start(ap, fmt);
        rc = prepare_v(c, &st, sql, fmt, &ap);
        va_end(ap);
        if (rc != SQLITE_OK)
                return rc;
        rc = collect(st, size, NULL, decode, &strs, &rows, &n);
        strs_p = strs.p;
        if (rc == SQLITE_DONE && !n) {
                *ret = NULL;
                *ret_n = 0;
        }
        if (rc != SQLITE_DONE || !n)
                return rc;
        /* The strings go after the rows in the same block: grown in place
         * (a large block is remapped, not copied), the rows not copied again. */
        if (!(block = realloc(rows, n * size + strs.len))) {
                free(rows);
                return SQLITE_NOMEM;
        }
        memcpy(block + n * size, strs.p, strs.len);
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < n_offs; k++) {
                        const char **f = (const char **)(block + i * size + offs[k]);
                        *f = block + n * size + (uintptr_t)*f;
                }
        *ret = block;
        *ret_n = n;
        return rc;
}

int cat_query_list(struct catalog *c, size_t size, cat_row_fn decode, void **ret, size_t *ret_n, const char *sql,
                   const char *fmt, ...)
{
        _cleanup_(cat_stmt_finalizep) sqlite3_stmt *st = NULL;
        va_list ap;
        int rc;

        va_start(ap, fmt);
        rc = prepare_v(c, &st, sql, fmt, &ap);
        va_end(ap);
        if (rc != SQLITE_OK)
                return rc;
        return collect(st, size, decode, NULL, NULL, ret, ret_n);
}

void cat_col_str(sqlite3_stmt *st, int i, char *dst, size_t size)
{
        const unsigned char *s = sqlite3_column_text(st, i);

        snprintf(dst, size, "%s", s ? (const char *)s : "");
}

int cat_decode_id(sqlite3_stmt *st, void *row)
{
        cat_col_str(st, 0, row, CAT_ID_FIELD);
        return 0;
}

/* ---- opening --------------------------------------------------------------- */

/* Creates a missing file readable by its owner only (SQLite would use 0644 and
 * the audit says what was sent where) and makes its name durable. */
static int create_private(const char *path, lserr *err)
{
        _cleanup_close_ int fd = -1;
        _cleanup_close_ int dfd = -1;
        _cleanup_free_ char *copy = NULL;

        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
                if (errno == EEXIST)
                        return 0;
                return lserr_set(err, -errno, "catalog \"%s\": create: %m", path);
        }
        if (fsync(fd) < 0)
                return lserr_set(err, -errno, "catalog \"%s\": fsync: %m", path);
        copy = strdup(path);
        if (!copy)
                return -ENOMEM;
        dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) < 0)
                return lserr_set(err, -errno, "catalog \"%s\": fsync of its directory: %m", path);
        return 0;
}

/* A pragma's answer, short words only ("wal", "1"). */
struct pragma_word {
        char s[16];
};

static int decode_pragma(sqlite3_stmt *st, void *row)
{
        struct pragma_word *w = row;

        cat_col_str(st, 0, w->s, sizeof(w->s));
        return 0;
}

/* SQLITE_OK with the pragma's first column in *ret ("" when it returns no row). */
static int pragma_word(struct catalog *c, const char *sql, struct pragma_word *ret)
{
        int rc;

        ret->s[0] = '\0';
        rc = cat_query_row(c, decode_pragma, ret, sql, "");
        return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Sets the pragmas every connection needs: WAL, synchronous=FULL, foreign keys. */
static int set_pragmas(struct catalog *c, lserr *err)
{
        struct pragma_word w;
        int rc;

        /* The first statement reads the file: a file that is not SQLite fails here. */
        rc = pragma_word(c, "PRAGMA journal_mode = WAL", &w);
        if (rc != SQLITE_OK)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": set WAL journal mode: %s", c->path,
                                 cat_why(c, rc));
        if (strcmp(w.s, "wal") != 0)
                return lserr_set(err, -EIO, "catalog \"%s\": set WAL journal mode: SQLite kept \"%s\"", c->path, w.s);
        /* FULL: in WAL mode every commit fsyncs the log, which is what makes a
         * decision durable before cat_txn_decide returns. */
        rc = sqlite3_exec(c->db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": set synchronous and foreign keys: %s",
                                 c->path, cat_why(c, rc));
        /* A build without foreign key support accepts the pragma silently. */
        rc = pragma_word(c, "PRAGMA foreign_keys", &w);
        if (rc != SQLITE_OK || strtoll(w.s, NULL, 10) != 1)
                return lserr_set(err, -EIO, "catalog \"%s\": foreign keys: this SQLite does not enforce them",
                                 c->path);
        return 0;
}

static void cat_closep(struct catalog **c)
{
        *c = cat_close(*c);
}

/* A struct catalog with its lock. */
static int cat_new(const char *what, struct catalog **ret, lserr *err)
{
        struct catalog *c = calloc(1, sizeof(*c));
        pthread_mutexattr_t attr;
        int r;

        if (!c)
                return lserr_set(err, -ENOMEM, "catalog %s: out of memory", what);
        pthread_mutexattr_init(&attr);
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
        r = pthread_mutex_init(&c->lock, &attr);
        pthread_mutexattr_destroy(&attr);
        if (r != 0) {
                free(c);
                return lserr_set(err, -r, "catalog %s: mutex: %s", what, strerror(r));
        }
        *ret = c;
        return 0;
}

int cat_open_backend(const struct cat_backend *be, void *impl, struct catalog **ret, lserr *err)
{
        struct catalog *c = NULL;
        int r = cat_new(be->name, &c, err);

        if (r < 0) {
                be->close(impl);
                return r;
        }
        c->be = be;
        c->be_impl = impl;
        *ret = c;
        return 0;
}

int cat_set_fence(struct catalog *c, const char *leader_key, uint64_t epoch, lserr *err)
{
        if (c->be)
                return c->be->set_fence(c->be_impl, leader_key, epoch, err);
        return 0;
}

int cat_open(const char *path, struct catalog **ret, lserr *err)
{
        _cleanup_(cat_closep) struct catalog *c = NULL;
        int rc, r;

        if (!path || !*path)
                return lserr_set(err, -EINVAL, "catalog: empty file name");
        r = cat_new(path, &c, err);
        if (r < 0)
                return r;
        c->path = strdup(path);
        if (!c->path)
                return -ENOMEM;
        r = create_private(path, err);
        if (r < 0)
                return r;
        /* SQLITE_OPEN_NOMUTEX: c->lock already serializes every use. */
        rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK)
                return lserr_set(err, cat_rc_errno(rc), "catalog \"%s\": open: %s", path, cat_why(c, rc));
        sqlite3_extended_result_codes(c->db, 1);
        sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
        r = set_pragmas(c, err);
        if (r < 0)
                return r;
        r = cat_schema_migrate(c, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

struct catalog *cat_close(struct catalog *c)
{
        if (!c)
                return NULL;
        if (c->be)
                c->be->close(c->be_impl);
        /* Every statement is finalized by the function that prepared it, so the
         * close is immediate; the WAL stays for the next open to check in. */
        cache_clear(c);
        sqlite3_close_v2(c->db);
        pthread_mutex_destroy(&c->lock);
        free(c->path);
        free(c);
        return NULL;
}
