/* journal: the agent's durable record of open transactions, one small file per
 * transaction ("<dir>/<txid>.txn"), written with fsync + rename before the state
 * change it records is acted on. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "lockstep.pb-c.h"
#include "lserr.h"

/* Version 2 files are a packed JournalTxn followed by a footer (magic, body
 * length, body hash), so a cut-short or altered file is refused instead of
 * read as a shorter record. Version 1 files (no footer) are still read. */
#define JOURNAL_VERSION 2
#define JOURNAL_FILE_MAX (4 * 1024 * 1024)

int journal_open(const char *dir, lserr *err);

/* Durably replaces the transaction's file. */
int journal_write(const char *dir, const Lockstep__JournalTxn *t, lserr *err);

/* Removes a finished transaction's file (missing is fine). */
int journal_remove(const char *dir, const char *txid, lserr *err);

/* Calls fn for every transaction file, in no particular order; a file that does
 * not parse is reported through bad (with its path and why) and skipped, never
 * deleted. The JournalTxn passed to fn is freed after fn returns. */
int journal_load(const char *dir, void (*fn)(void *arg, const Lockstep__JournalTxn *t),
                 void (*bad)(void *arg, const char *path, const char *why), void *arg, lserr *err);

/* Reads and parses one journal file. *ret (journal_txn_free) is set only on
 * success; err names the file and what is wrong with it. */
int journal_read(const char *path, Lockstep__JournalTxn **ret, lserr *err);

/* Parses one journal file's bytes. *ret (journal_txn_free) is set only on
 * success; on failure -EBADMSG (or -EFBIG) and err says what is wrong. */
int journal_parse(const uint8_t *buf, size_t len, Lockstep__JournalTxn **ret, lserr *err);

/* Frees a parsed record (NULL is fine); returns NULL. */
Lockstep__JournalTxn *journal_txn_free(Lockstep__JournalTxn *t);

static inline void journal_txn_freep(Lockstep__JournalTxn **t)
{
        journal_txn_free(*t);
}
#define _cleanup_journal_txn_ _cleanup_(journal_txn_freep)
