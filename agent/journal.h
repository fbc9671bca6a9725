/* journal: the agent's durable record of open transactions, one small file per
 * transaction ("<dir>/<txid>.txn", a packed JournalTxn), written with fsync +
 * rename before the state change it records is acted on. */
#pragma once

#include <stddef.h>

#include "lockstep.pb-c.h"
#include "lserr.h"

#define JOURNAL_VERSION 1
#define JOURNAL_FILE_MAX (4 * 1024 * 1024)

int journal_open(const char *dir, lserr *err);

/* Durably replaces the transaction's file. */
int journal_write(const char *dir, const Lockstep__JournalTxn *t, lserr *err);

/* Removes a finished transaction's file (missing is fine). */
int journal_remove(const char *dir, const char *txid, lserr *err);

/* Calls fn for every transaction file, in no particular order; a file that does
 * not parse is reported through bad (with its path) and skipped, never deleted.
 * The JournalTxn passed to fn is freed after fn returns. */
int journal_load(const char *dir, void (*fn)(void *arg, const Lockstep__JournalTxn *t),
                 void (*bad)(void *arg, const char *path, const char *why), void *arg, lserr *err);

/* Parses one journal file's bytes; NULL when they are not a valid record. */
Lockstep__JournalTxn *journal_parse(const uint8_t *buf, size_t len);
