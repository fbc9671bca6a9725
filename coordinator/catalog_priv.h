/* catalog_priv: what the catalog's files (catalog.c, cat_*.c) share and tests
 * may reach: the connection, its lock, write transactions and the statement helper. */
#pragma once

#include <pthread.h>
#include <stddef.h>

#include <sqlite3.h>

#include "catalog.h"
#include "cleanup.h"

/* Not an SQLite result code: a row holds a value this program cannot decode. */
#define CAT_RC_BADROW (-1)

#define CAT_ID_FIELD sizeof(((struct cat_txn *)0)->txid)
#define CAT_MODE_FIELD sizeof(((struct cat_txn *)0)->mode)
#define CAT_REASON_FIELD sizeof(((struct cat_txn *)0)->reason)

#define CAT_N_WORDS(a) (sizeof(a) / sizeof((a)[0]))

/* Prepared single-row writes kept for reuse: preparing costs more than the
 * insert itself when a cut records thousands of rows. */
#define CAT_STMT_CACHE 16

struct catalog {
        /* One connection, used by one thread at a time: SQLite's own mutexes are
         * not enough because sqlite3_errmsg must be read before anyone else runs.
         * Recursive: cat_batch_begin holds it while the same thread writes. */
        pthread_mutex_t lock;
        sqlite3 *db;
        char *path;
        int batch; /* a cat_batch_begin transaction is open */
        const char *cache_sql[CAT_STMT_CACHE]; /* the literal's address is the key */
        sqlite3_stmt *cache_st[CAT_STMT_CACHE];
        unsigned cache_next;
        /* Another backend (NULL: this SQLite file): every call goes there. */
        const struct cat_backend *be;
        void *be_impl;
};

long long cat_now_us(void);

/* An identifier fits its field with its terminator, or is refused: a truncated
 * txid or VM name would silently name something else. */
int cat_id_fits(const char *s, size_t field, int may_be_empty);

/* The words for enum cat_kind and enum cat_txn_state, as both backends store them. */
extern const char *const cat_kind_words[CAT_KIND_DELETE + 1];
extern const char *const cat_state_words[CAT_TXN_DONE + 1];

/* "vm@agent", each side a non-empty identifier that fits its field. */
int cat_member_ok(const char *s);

/* The index of s in words, -1 when absent (or NULL). */
int cat_word_index(const char *const *words, size_t n, const unsigned char *s);

/* The negative errno for an SQLite result code (or CAT_RC_BADROW). */
int cat_rc_errno(int rc);

/* The words for a failure: SQLite's own message when it is about this rc (it
 * names the table or constraint), its generic text otherwise. Read it before
 * the lock is given back. */
const char *cat_why(const struct catalog *c, int rc);

/* ---- the lock and write transactions ---------------------------------------- */

/* Takes c's mutex and returns c, for a variable whose cleanup gives it back. */
struct catalog *cat_lock(struct catalog *c);
void cat_unlockp(struct catalog **c);

/* Holds c's mutex from here to the end of the enclosing block. */
#define CAT_LOCK_SCOPE(c) __attribute__((unused)) _cleanup_(cat_unlockp) struct catalog *cat_locked_ = cat_lock(c)

/* Write transactions take the write lock up front: a deferred one that reads
 * first could not upgrade while another connection writes, and would fail
 * without waiting for the busy timeout. SQLite result codes. */
int cat_begin(struct catalog *c);
int cat_commit(struct catalog *c);

/* Undoes whatever transaction a failure left open, a no-op when none is. */
void cat_rollbackp(struct catalog **c);

/* Rolls back at the end of the enclosing block whatever transaction is still
 * open then; after CAT_LOCK_SCOPE, so it runs before the unlock. */
#define CAT_ROLLBACK_SCOPE(c) __attribute__((unused)) _cleanup_(cat_rollbackp) struct catalog *cat_open_txn_ = (c)

/* ---- the statement helper --------------------------------------------------- */

/* Binds are listed in fmt, one character per "?N" parameter in order:
 *   'i' int, 'L' long long,
 *   's' a NUL-terminated string (bound whole),
 *   'T' free text: (const char *, size_t field), cut on a UTF-8 boundary to
 *       what a field of that size reads back (see cat_text_len).
 * Text is bound without copying: every statement is finalized before the
 * function that prepared it returns. Arguments must have exactly these types
 * (cast unsigned and size values to long long). */

/* Prepares, binds and runs a statement that returns no rows. SQLITE_DONE, or
 * the failure; sqlite3_changes() and sqlite3_last_insert_rowid() tell the
 * rest while the lock is held. sql must be a string literal: the prepared
 * statement is kept for reuse under its address. */
int cat_exec(struct catalog *c, const char *sql, const char *fmt, ...);

/* Decodes the current row into row; < 0 when a value cannot be decoded. */
typedef int (*cat_row_fn)(sqlite3_stmt *st, void *row);

/* Prepares, binds and steps once: SQLITE_ROW with the row decoded into row,
 * SQLITE_DONE when there is none (row untouched), or the failure
 * (CAT_RC_BADROW when decode refused the row). */
int cat_query_row(struct catalog *c, cat_row_fn decode, void *row, const char *sql, const char *fmt, ...);

/* Prepares, binds and reads every row into one malloc'd array of elements of
 * `size` bytes (zeroed before decode; NULL when empty), the caller's. Returns
 * SQLITE_DONE, or the failure with nothing allocated and *ret untouched. */
int cat_query_list(struct catalog *c, size_t size, cat_row_fn decode, void **ret, size_t *ret_n, const char *sql,
                   const char *fmt, ...);

/* Rows with strings by pointer (a member's message, an audit row's detail,
 * an image's paths): a list read from the catalog is one malloc'd block, its
 * rows and then their strings, so one free() lets all of it go and a
 * 10,000-row list is a few hundred bytes a row instead of its fields' largest
 * sizes (fresh pages are most of a fleet-sized report's cost). */
struct cat_strs {
        char *p;
        size_t len, cap;
        int failed; /* out of memory: the list fails */
};
/* Copies s (NULL: "") into strs; its offset there, which cat_query_rows
 * stores in the row's field until the block is made. */
const char *cat_strs_add(struct cat_strs *strs, const char *s);
/* The same block made from n records of kept_size bytes each (a backend's
 * own, strings in place): a row of `size` bytes at the record's start, and
 * the string its field at offs[k] is to point at, at strs[k] in the record.
 * < 0 (-ENOMEM) with nothing allocated; *ret NULL when n is 0. */
int cat_rows_pack(const void *kept, size_t n, size_t kept_size, size_t size, const size_t *offs,
                  const size_t *strs, size_t n_offs, void **ret);

/* struct cat_member's message, struct cat_audit's detail and struct
 * cat_image's paths, for cat_query_rows and cat_rows_pack. */
extern const size_t cat_member_strs[1];
extern const size_t cat_audit_strs[1];
extern const size_t cat_image_strs[2];

typedef int (*cat_row_s_fn)(sqlite3_stmt *st, void *row, struct cat_strs *strs);
/* As cat_query_list, for rows whose fields at offs hold strings by pointer:
 * decode stores each with cat_col_strp. */
int cat_query_rows(struct catalog *c, size_t size, cat_row_s_fn decode, const size_t *offs, size_t n_offs,
                   void **ret, size_t *ret_n, const char *sql, const char *fmt, ...);
/* A text column (NULL: "") kept in strs, for a field of a row in cat_query_rows. */
const char *cat_col_strp(sqlite3_stmt *st, int i, struct cat_strs *strs);

/* Cleanup for a prepared statement (NULL is fine). */
void cat_stmt_finalizep(sqlite3_stmt **st);

/* Column readers: a NULL text column reads as "". */
void cat_col_str(sqlite3_stmt *st, int i, char *dst, size_t size);

/* A row of one text column read as a transaction id (char[65]). */
int cat_decode_id(sqlite3_stmt *st, void *row);

/* Free text (reasons, messages) is cut to what the field it is read back into
 * can hold, on a UTF-8 character boundary, so what is stored is what is shown. */
size_t cat_text_len(const char *s, size_t field);

/* ---- shared between the catalog's files ------------------------------------ */

/* Applies the missing schema migrations (cat_schema.c). */
int cat_schema_migrate(struct catalog *c, lserr *err);

#define CAT_TXN_COLUMNS                                                                                               \
        "txid, kind, group_name, name, mode, state, committed, reason, started_us, decided_us, finished_us, lease_ms, " \
        "cut_status, cut_status_reason, branch_status, branch_reason, members"

/* Decodes CAT_TXN_COLUMNS into a struct cat_txn (cat_txn.c). */
int cat_decode_txn(sqlite3_stmt *st, void *row);

/* ---- another backend -------------------------------------------------------- */

/* A catalog kept elsewhere than in SQLite (cat_etcd.c): every public cat_*
 * function hands its call on, with the backend's own state (impl), and keeps
 * its documented meaning. */
struct cat_backend {
        const char *name;
        void (*close)(void *impl);
        int (*set_fence)(void *impl, const char *leader_key, uint64_t epoch, lserr *err);
        int (*batch_begin)(void *impl, lserr *err);
        int (*batch_end)(void *impl, lserr *err);
        int (*txn_begin)(void *impl, const struct cat_txn *t, lserr *err);
        int (*txn_decide)(void *impl, const char *txid, int commit, const char *reason, lserr *err);
        int (*txn_finish)(void *impl, const char *txid, lserr *err);
        int (*txn_get)(void *impl, const char *txid, struct cat_txn *ret, lserr *err);
        int (*txn_unresolved)(void *impl, struct cat_txn **ret, size_t *ret_n, lserr *err);
        int (*put_member)(void *impl, const char *txid, const struct cat_member *m, lserr *err);
        int (*put_image)(void *impl, const char *txid, const struct cat_image *im, lserr *err);
        int (*members)(void *impl, const char *txid, struct cat_member **ret, size_t *ret_n, lserr *err);
        int (*images)(void *impl, const char *txid, struct cat_image **ret, size_t *ret_n, lserr *err);
        int (*reverts_since)(void *impl, const char *cut_txid, long long since_us, char ret_txid[65], lserr *err);
        int (*cut_set_status)(void *impl, const char *txid, const char *status, const char *reason, lserr *err);
        int (*branch_set_status)(void *impl, const char *txid, const char *status, const char *reason, lserr *err);
        int (*cuts_on_image)(void *impl, const char *agent, const char *vm, const char *path, char (**ret)[65], size_t *ret_n, lserr *err);
        int (*reverts_to)(void *impl, const char *cut_txid, char (**ret)[65], size_t *ret_n, lserr *err);
        int (*image_users)(void *impl, const char *agent, const char *vm, const char *path, const char *except_txid, lserr *err);
        int (*image_repath)(void *impl, const char *agent, const char *vm, const char *old_path, const char *new_path, lserr *err);
        int (*cuts)(void *impl, const char *group, struct cat_txn **ret, size_t *ret_n, lserr *err);
        int (*agent_put)(void *impl, const struct cat_agent *a, lserr *err);
        int (*agents)(void *impl, struct cat_agent **ret, size_t *ret_n, lserr *err);
        int (*group_put)(void *impl, const char *name, const char *mode, const char *const *members, size_t n, lserr *err);
        int (*audit_add)(void *impl, const struct cat_audit *a, lserr *err);
        int (*audit_list)(void *impl, const char *txid, size_t limit, struct cat_audit **ret, size_t *ret_n, lserr *err);
        int (*audit_recent)(void *impl, size_t limit, struct cat_audit **ret, size_t *ret_n, lserr *err);
        /* May be NULL: cat_cut_read then makes its four calls. 1 when it
         * read all of it; 0 when it cannot in one go (read again by parts). */
        int (*cut_read)(void *impl, const char *txid, size_t audit_limit, struct cat_cut *ret, lserr *err);
        int (*event_add)(void *impl, const struct cat_event *ev, long long *ret_id, lserr *err);
        int (*events)(void *impl, long long after_id, size_t limit, int newest, struct cat_event **ret, size_t *ret_n, lserr *err);
        int (*history_trim)(void *impl, long long keep_txns, long long keep_members, long long keep_audit,
                            lserr *err);
        int (*events_trim)(void *impl, long long keep, lserr *err);
        int (*sched_get)(void *impl, const char *group, struct cat_sched *ret, lserr *err);
        int (*sched_put)(void *impl, const struct cat_sched *s, lserr *err);
};

/* A struct catalog whose calls go to be (impl is the backend's, freed by its
 * close). */
int cat_open_backend(const struct cat_backend *be, void *impl, struct catalog **ret, lserr *err);
