/* journal: per-transaction files with atomic replacement. */
#include "journal.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "names.h"

int journal_open(const char *dir, lserr *err)
{
        return fsutil_mkdir_p(dir, 0700, err);
}

static int txn_path(const char *dir, const char *txid, char *out, size_t n, lserr *err)
{
        if (!names_valid(txid))
                return lserr_set(err, -EINVAL, "journal: txid \"%s\" is not a valid name", txid);
        if (snprintf(out, n, "%s/%s.txn", dir, txid) >= (int)n)
                return lserr_set(err, -ENAMETOOLONG, "journal: path for \"%s\" too long", txid);
        return 0;
}

int journal_write(const char *dir, const Lockstep__JournalTxn *t, lserr *err)
{
        char path[4096];
        size_t n;
        uint8_t *buf;
        int r = txn_path(dir, t->txid, path, sizeof(path), err);

        if (r < 0)
                return r;
        n = lockstep__journal_txn__get_packed_size(t);
        if (n > JOURNAL_FILE_MAX)
                return lserr_set(err, -EFBIG, "journal: transaction \"%s\" record is %zu bytes, over the limit",
                                 t->txid, n);
        buf = malloc(n ? n : 1);
        if (!buf)
                return -ENOMEM;
        lockstep__journal_txn__pack(t, buf);
        r = fsutil_write_atomic(path, buf, n, 0600, 0, err);
        free(buf);
        return r;
}

int journal_remove(const char *dir, const char *txid, lserr *err)
{
        char path[4096];
        int r = txn_path(dir, txid, path, sizeof(path), err);

        if (r < 0)
                return r;
        if (unlink(path) < 0 && errno != ENOENT)
                return lserr_set(err, -errno, "journal: remove \"%s\": %m", path);
        return 0;
}

Lockstep__JournalTxn *journal_parse(const uint8_t *buf, size_t len)
{
        Lockstep__JournalTxn *t;

        if (len > JOURNAL_FILE_MAX)
                return NULL;
        t = lockstep__journal_txn__unpack(NULL, len, buf);
        if (!t)
                return NULL;
        /* Everything later code trusts is checked here, once. */
        if (t->version != JOURNAL_VERSION || !names_valid(t->txid) ||
            (t->snapshot[0] && !names_valid(t->snapshot)) || (unsigned)t->state > LOCKSTEP__JOURNAL_STATE__J_R_STARTED ||
            t->state == LOCKSTEP__JOURNAL_STATE__J_DELETING)
                goto bad;
        for (size_t i = 0; i < t->n_members; i++) {
                const Lockstep__JournalMember *m = t->members[i];
                if (!m->member || !names_valid(m->member->vm))
                        goto bad;
                for (size_t k = 0; k < m->n_disks; k++)
                        /* after is empty until a revert has switched the disk. */
                        if (!m->disks[k]->before[0] ||
                            strlen(m->disks[k]->before) >= 1024 || strlen(m->disks[k]->after) >= 1024 ||
                            strlen(m->disks[k]->disk) >= 32 || strlen(m->disks[k]->branch) >= 1024)
                                goto bad;
        }
        return t;
bad:
        lockstep__journal_txn__free_unpacked(t, NULL);
        return NULL;
}

int journal_load(const char *dir, void (*fn)(void *arg, const Lockstep__JournalTxn *t),
                 void (*bad)(void *arg, const char *path, const char *why), void *arg, lserr *err)
{
        DIR *d = opendir(dir);
        struct dirent *e;

        if (!d)
                return lserr_set(err, -errno, "journal: open \"%s\": %m", dir);
        while ((e = readdir(d)) != NULL) {
                char path[4096];
                char *buf = NULL;
                size_t len = 0, nl = strlen(e->d_name);
                Lockstep__JournalTxn *t;
                lserr e2 = {0};

                if (nl < 5 || strcmp(e->d_name + nl - 4, ".txn") != 0)
                        continue;
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                if (fsutil_read_all(path, JOURNAL_FILE_MAX, &buf, &len, &e2) < 0) {
                        bad(arg, path, e2.msg);
                        continue;
                }
                t = journal_parse((const uint8_t *)buf, len);
                free(buf);
                if (!t) {
                        bad(arg, path, "not a valid journal record");
                        continue;
                }
                fn(arg, t);
                lockstep__journal_txn__free_unpacked(t, NULL);
        }
        closedir(d);
        return 0;
}
