/* journal: per-transaction files with atomic replacement, and a footer that
 * tells a whole file from one cut short or altered. */
#include "journal.h"

#include <assert.h>
#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "hv.h"
#include "names.h"

/* Files written before the footer existed; read so that an upgrade keeps the
 * transactions that were open. */
#define JOURNAL_VERSION_LEGACY 1

#define FOOTER_MAGIC "LSJ2"
#define FOOTER_HASH_LEN 16
#define FOOTER_LEN (4 + 4 + FOOTER_HASH_LEN)
#define BODY_MAX (JOURNAL_FILE_MAX - FOOTER_LEN)

static void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}

Lockstep__JournalTxn *journal_txn_free(Lockstep__JournalTxn *t)
{
        if (t)
                lockstep__journal_txn__free_unpacked(t, NULL);
        return NULL;
}

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

/* magic, body length (little-endian), BLAKE2b-128 of the body. */
static void footer_make(const uint8_t *body, size_t n, uint8_t out[FOOTER_LEN])
{
        assert(n <= BODY_MAX);
        if (sodium_init() < 0)
                abort();
        memcpy(out, FOOTER_MAGIC, 4);
        for (int i = 0; i < 4; i++)
                out[4 + i] = (uint8_t)(n >> (8 * i));
        crypto_generichash(out + 8, FOOTER_HASH_LEN, body, n, NULL, 0);
}

/* Does buf end with the footer of its own body? */
static int footer_matches(const uint8_t *buf, size_t len)
{
        uint8_t want[FOOTER_LEN];

        if (len < FOOTER_LEN || memcmp(buf + len - FOOTER_LEN, FOOTER_MAGIC, 4) != 0)
                return 0;
        footer_make(buf, len - FOOTER_LEN, want);
        return sodium_memcmp(want, buf + len - FOOTER_LEN, FOOTER_LEN) == 0;
}

int journal_write(const char *dir, const Lockstep__JournalTxn *t, lserr *err)
{
        _cleanup_free_ uint8_t *buf = NULL;
        char path[4096];
        size_t n;
        int r = txn_path(dir, t->txid, path, sizeof(path), err);

        if (r < 0)
                return r;
        assert(t->version == JOURNAL_VERSION);
        n = lockstep__journal_txn__get_packed_size(t);
        if (n > BODY_MAX)
                return lserr_set(err, -EFBIG, "journal: transaction \"%s\" record is %zu bytes, over the limit",
                                 t->txid, n);
        buf = malloc(n + FOOTER_LEN);
        if (!buf)
                return lserr_set(err, -ENOMEM, "journal: transaction \"%s\": out of memory", t->txid);
        lockstep__journal_txn__pack(t, buf);
        footer_make(buf, n, buf + n);
        return fsutil_write_atomic(path, buf, n + FOOTER_LEN, 0600, 0, err);
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

static int check_member(const Lockstep__JournalTxn *t, size_t i, lserr *err)
{
        const Lockstep__JournalMember *m = t->members[i];

        if (!m->member || !names_valid(m->member->vm))
                return lserr_set(err, -EBADMSG, "journal record \"%s\": member %zu has no valid VM name", t->txid, i);
        if (m->n_disks > HV_MAX_DISKS)
                return lserr_set(err, -EBADMSG, "journal record \"%s\": member \"%s\" has %zu disks, more than %d",
                                 t->txid, m->member->vm, m->n_disks, HV_MAX_DISKS);
        for (size_t k = 0; k < m->n_disks; k++) {
                const Lockstep__DiskImage *d = m->disks[k];
                /* after is empty until a revert has switched the disk. */
                if (!d->before[0] || strlen(d->before) >= HV_PATH_MAX || strlen(d->after) >= HV_PATH_MAX ||
                    strlen(d->disk) >= HV_TARGET_MAX || strlen(d->branch) >= HV_PATH_MAX)
                        return lserr_set(err, -EBADMSG,
                                         "journal record \"%s\": member \"%s\" disk %zu: an image path is empty or a "
                                         "path or target is too long",
                                         t->txid, m->member->vm, k);
        }
        return 0;
}

/* Everything later code trusts is checked here, once. */
static int check_txn(const Lockstep__JournalTxn *t, lserr *err)
{
        if (!names_valid(t->txid))
                return lserr_set(err, -EBADMSG, "journal record: txid is not a valid name");
        if (t->snapshot[0] && !names_valid(t->snapshot))
                return lserr_set(err, -EBADMSG, "journal record \"%s\": snapshot is not a valid name", t->txid);
        if ((unsigned)t->state > LOCKSTEP__JOURNAL_STATE__J_R_STARTED ||
            t->state == LOCKSTEP__JOURNAL_STATE__J_DELETING)
                return lserr_set(err, -EBADMSG, "journal record \"%s\": state %d is not one a file holds", t->txid,
                                 (int)t->state);
        if ((unsigned)t->mode > LOCKSTEP__MODE__MODE_MEMORY)
                return lserr_set(err, -EBADMSG, "journal record \"%s\": mode %d is unknown", t->txid, (int)t->mode);
        for (size_t i = 0; i < t->n_members; i++) {
                int r = check_member(t, i, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int journal_parse(const uint8_t *buf, size_t len, Lockstep__JournalTxn **ret, lserr *err)
{
        _cleanup_journal_txn_ Lockstep__JournalTxn *t = NULL;
        int whole;
        int r;

        if (len > JOURNAL_FILE_MAX)
                return lserr_set(err, -EFBIG, "journal record of %zu bytes is over the %d-byte limit", len,
                                 JOURNAL_FILE_MAX);
        if (len == 0)
                return lserr_set(err, -EBADMSG, "journal record is empty");
        whole = footer_matches(buf, len);
        t = lockstep__journal_txn__unpack(NULL, whole ? len - FOOTER_LEN : len, buf);
        if (!t && whole)
                return lserr_set(err, -EBADMSG, "journal record does not unpack");
        if (!t)
                return lserr_set(err, -EBADMSG, "journal record is cut short or corrupted: it does not unpack");
        if (!whole && t->version == JOURNAL_VERSION)
                return lserr_set(err, -EBADMSG, "journal record is cut short or altered: its footer does not match");
        if (t->version != (whole ? JOURNAL_VERSION : JOURNAL_VERSION_LEGACY))
                return lserr_set(err, -EBADMSG, "journal record version %u is not supported", t->version);
        r = check_txn(t, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}

int journal_read(const char *path, Lockstep__JournalTxn **ret, lserr *err)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        lserr e = {0};
        int r = fsutil_read_all(path, JOURNAL_FILE_MAX, &buf, &len, err);

        if (r < 0)
                return r;
        r = journal_parse((const uint8_t *)buf, len, ret, &e);
        if (r < 0)
                return lserr_set(err, r, "\"%s\": %s", path, e.msg);
        return 0;
}

/* One directory entry: a transaction file goes to fn, or to bad with why. */
static void load_one(const char *dir, const char *name, void (*fn)(void *arg, const Lockstep__JournalTxn *t),
                     void (*bad)(void *arg, const char *path, const char *why), void *arg)
{
        _cleanup_journal_txn_ Lockstep__JournalTxn *t = NULL;
        _cleanup_free_ char *buf = NULL;
        char path[4096];
        size_t len = 0, nl = strlen(name);
        lserr e = {0};

        if (nl < 5 || strcmp(name + nl - 4, ".txn") != 0)
                return;
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        /* The path goes to bad on its own, so the parse error does not repeat it. */
        if (fsutil_read_all(path, JOURNAL_FILE_MAX, &buf, &len, &e) < 0 ||
            journal_parse((const uint8_t *)buf, len, &t, &e) < 0) {
                bad(arg, path, e.msg);
                return;
        }
        fn(arg, t);
}

int journal_load(const char *dir, void (*fn)(void *arg, const Lockstep__JournalTxn *t),
                 void (*bad)(void *arg, const char *path, const char *why), void *arg, lserr *err)
{
        _cleanup_(closedirp) DIR *d = opendir(dir);
        struct dirent *e;

        if (!d)
                return lserr_set(err, -errno, "journal: open \"%s\": %m", dir);
        while ((e = readdir(d)) != NULL)
                load_one(dir, e->d_name, fn, bad, arg);
        return 0;
}
