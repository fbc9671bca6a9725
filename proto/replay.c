/* replay: nonce cache and durable per-key counters with a small acceptance window. */
#include "replay.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"

struct nonce_entry {
        uint8_t nonce[REPLAY_NONCE_LEN];
        long long expires_us;
};

struct key_counter {
        uint8_t id[KEYS_ID_LEN];
        uint64_t highest;
        uint64_t seen; /* bit i: highest - i was accepted */
        struct key_counter *next;
};

struct replay {
        char *dir;
        long long window_us;
        /* Ring in insertion order; a linear scan is cheap at the sizes allowed and
         * only signed commands ever get here. */
        struct nonce_entry *ring;
        size_t cap, head, count;
        struct key_counter *keys;
        uint64_t epoch; /* the highest leader epoch accepted */
        int epoch_loaded;
};

int replay_open(const char *state_dir, size_t max_nonces, long long window_us, struct replay **ret, lserr *err)
{
        struct replay *r;
        int e;

        if (max_nonces == 0 || max_nonces > (1u << 20))
                return lserr_set(err, -EINVAL, "replay cache: %zu nonces is out of range (1..1048576)", max_nonces);
        e = state_dir ? fsutil_mkdir_p(state_dir, 0700, err) : 0;
        if (e < 0)
                return e;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->dir = state_dir ? strdup(state_dir) : NULL;
        r->ring = calloc(max_nonces, sizeof(*r->ring));
        if ((state_dir && !r->dir) || !r->ring) {
                replay_free(r);
                return -ENOMEM;
        }
        r->cap = max_nonces;
        r->window_us = window_us;
        *ret = r;
        return 0;
}

struct replay *replay_free(struct replay *r)
{
        if (!r)
                return NULL;
        while (r->keys) {
                struct key_counter *k = r->keys;
                r->keys = k->next;
                free(k);
        }
        free(r->ring);
        free(r->dir);
        free(r);
        return NULL;
}

static void expire(struct replay *r, long long now_us)
{
        while (r->count && r->ring[r->head].expires_us < now_us) {
                r->head = (r->head + 1) % r->cap;
                r->count--;
        }
}

int replay_check_nonce(struct replay *r, const uint8_t nonce[REPLAY_NONCE_LEN], long long now_us, lserr *err)
{
        expire(r, now_us);
        for (size_t i = 0; i < r->count; i++) {
                const struct nonce_entry *e = &r->ring[(r->head + i) % r->cap];
                if (memcmp(e->nonce, nonce, REPLAY_NONCE_LEN) == 0)
                        return lserr_set(err, LS_EREPLAY, "nonce already seen: command replayed");
        }
        if (r->count == r->cap)
                return lserr_set(err, LS_ENONCEFULL, "nonce cache full (%zu unexpired entries): try again later",
                                 r->cap);
        return 0;
}

static void counter_path(const struct replay *r, const uint8_t id[KEYS_ID_LEN], char *out, size_t n)
{
        char hex[2 * KEYS_ID_LEN + 1];

        for (int i = 0; i < KEYS_ID_LEN; i++)
                snprintf(hex + 2 * i, 3, "%02x", id[i]);
        snprintf(out, n, "%s/counter-%s", r->dir, hex);
}

/* Loads (or creates in memory) the counter state of a key. */
static int key_state(struct replay *r, const uint8_t id[KEYS_ID_LEN], struct key_counter **ret, lserr *err)
{
        struct key_counter *k;
        char path[4200], *buf = NULL, *end;
        size_t len;
        int e;

        assert(r->dir); /* not a nonce-only cache */
        for (k = r->keys; k; k = k->next)
                if (memcmp(k->id, id, KEYS_ID_LEN) == 0) {
                        *ret = k;
                        return 0;
                }
        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        memcpy(k->id, id, KEYS_ID_LEN);
        counter_path(r, id, path, sizeof(path));
        e = fsutil_read_all(path, 64, &buf, &len, NULL);
        if (e == -ENOENT) {
                k->highest = 0;
        } else if (e < 0) {
                free(k);
                return lserr_set(err, e, "replay counter \"%s\": cannot read: %s", path, strerror(-e));
        } else {
                errno = 0;
                k->highest = strtoull(buf, &end, 10);
                if (errno || end == buf || (*end && *end != '\n')) {
                        free(buf);
                        free(k);
                        return lserr_set(err, -EINVAL, "replay counter \"%s\": not a number; refusing to guess",
                                         path);
                }
                free(buf);
        }
        /* Unknown history below the stored highest counts as seen. */
        k->seen = ~0ULL;
        k->next = r->keys;
        r->keys = k;
        *ret = k;
        return 0;
}

int replay_check_counter(struct replay *r, const uint8_t key_id[KEYS_ID_LEN], uint64_t counter,
                         uint64_t *ret_highest, lserr *err)
{
        struct key_counter *k;
        int e = key_state(r, key_id, &k, err);

        if (e < 0)
                return e;
        if (counter == 0)
                e = lserr_set(err, LS_ECOUNTER, "command counter 0 is never valid");
        else if (counter > k->highest)
                return 0;
        else if (k->highest - counter >= REPLAY_WINDOW || (k->seen >> (k->highest - counter)) & 1)
                e = lserr_set(err, LS_ECOUNTER,
                              "command counter %" PRIu64 " is not above the %" PRIu64
                              " already accepted from this key: replayed or stale",
                              counter, k->highest);
        if (e < 0 && ret_highest)
                *ret_highest = k->highest;
        return e;
}

/* The stored epoch, read once. */
static int load_epoch(struct replay *r, lserr *err)
{
        char path[4200], *buf = NULL, *end;
        size_t len;
        int e;

        if (r->epoch_loaded)
                return 0;
        assert(r->dir); /* not a nonce-only cache */
        snprintf(path, sizeof(path), "%s/epoch", r->dir);
        e = fsutil_read_all(path, 64, &buf, &len, NULL);
        if (e == -ENOENT) {
                r->epoch = 0;
        } else if (e < 0) {
                return lserr_set(err, e, "leader epoch \"%s\": cannot read: %s", path, strerror(-e));
        } else {
                errno = 0;
                r->epoch = strtoull(buf, &end, 10);
                e = errno || end == buf || (*end && *end != '\n') || buf[0] == '-';
                free(buf);
                if (e)
                        return lserr_set(err, -EINVAL, "leader epoch \"%s\": not a number; refusing to guess", path);
        }
        r->epoch_loaded = 1;
        return 0;
}

int replay_check_epoch(struct replay *r, uint64_t epoch, uint64_t *ret_highest, lserr *err)
{
        int e = load_epoch(r, err);

        if (e < 0)
                return e;
        if (epoch >= r->epoch)
                return 0;
        if (ret_highest)
                *ret_highest = r->epoch;
        if (epoch == 0)
                return lserr_set(err, LS_EEPOCH,
                                 "command without a leader epoch, and this agent obeys leaders from epoch %" PRIu64
                                 " on (a lockstepd without high availability, in a fleet that has it)",
                                 r->epoch);
        return lserr_set(err, LS_EEPOCH,
                         "command of leader epoch %" PRIu64 ", below the %" PRIu64
                         " this agent obeys: from a lockstepd that is no longer the leader",
                         epoch, r->epoch);
}

int replay_commit_epoch(struct replay *r, uint64_t epoch, lserr *err)
{
        char path[4200], text[32];
        int e = replay_check_epoch(r, epoch, NULL, err), len;

        if (e < 0 || epoch == r->epoch)
                return e;
        snprintf(path, sizeof(path), "%s/epoch", r->dir);
        len = snprintf(text, sizeof(text), "%" PRIu64 "\n", epoch);
        e = fsutil_write_atomic(path, text, (size_t)len, 0600, 0, err);
        if (e < 0)
                return e;
        r->epoch = epoch;
        return 0;
}

/* After replay_check_nonce passed: there is room. */
static void remember_nonce(struct replay *r, const uint8_t nonce[REPLAY_NONCE_LEN], long long issued_at_us,
                           long long now_us)
{
        struct nonce_entry *n;

        assert(r->count < r->cap);
        n = &r->ring[(r->head + r->count) % r->cap];
        memcpy(n->nonce, nonce, REPLAY_NONCE_LEN);
        /* A message issued in the future stays valid until issued + window. */
        n->expires_us = (issued_at_us > now_us ? issued_at_us : now_us) + r->window_us;
        r->count++;
}

int replay_commit(struct replay *r, const uint8_t key_id[KEYS_ID_LEN], const uint8_t nonce[REPLAY_NONCE_LEN],
                  long long issued_at_us, uint64_t counter, long long now_us, lserr *err)
{
        struct key_counter *k;
        int e = replay_check_counter(r, key_id, counter, NULL, err);

        if (e < 0)
                return e;
        e = replay_check_nonce(r, nonce, now_us, err);
        if (e < 0)
                return e;
        e = key_state(r, key_id, &k, err);
        if (e < 0)
                return e;
        if (counter > k->highest) {
                char path[4200], text[32];
                uint64_t shift = counter - k->highest;
                int len = snprintf(text, sizeof(text), "%" PRIu64 "\n", counter);

                counter_path(r, key_id, path, sizeof(path));
                e = fsutil_write_atomic(path, text, (size_t)len, 0600, 0, err);
                if (e < 0)
                        return e;
                k->seen = shift >= 64 ? 0 : k->seen << shift;
                k->seen |= 1;
                k->highest = counter;
        } else {
                k->seen |= 1ULL << (k->highest - counter);
        }
        remember_nonce(r, nonce, issued_at_us, now_us);
        return 0;
}

int replay_commit_nonce(struct replay *r, const uint8_t nonce[REPLAY_NONCE_LEN], long long issued_at_us,
                        long long now_us, lserr *err)
{
        int e = replay_check_nonce(r, nonce, now_us, err);

        if (e < 0)
                return e;
        remember_nonce(r, nonce, issued_at_us, now_us);
        return 0;
}
