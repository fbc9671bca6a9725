/* keys: key generation, the key file formats and their permission rules. */
#include "keys.h"

#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"

#define SEED_LEN crypto_sign_SEEDBYTES
#define KEY_MAGIC "lockstep-key-v1"
#define PUB_MAGIC "lockstep-pub-v1"
#define KEYFILE_MAX 4096

struct keys_secret {
        uint8_t seed[SEED_LEN];
        uint8_t sk[crypto_sign_SECRETKEYBYTES];
        struct keys_public pub;
};

static int sodium_ready(lserr *err)
{
        if (sodium_init() < 0)
                return lserr_set(err, -EIO, "libsodium: initialisation failed");
        return 0;
}

void keys_id_of(const uint8_t pk[KEYS_PK_LEN], uint8_t id[KEYS_ID_LEN])
{
        uint8_t h[crypto_generichash_BYTES];

        crypto_generichash(h, sizeof(h), pk, KEYS_PK_LEN, NULL, 0);
        memcpy(id, h, KEYS_ID_LEN);
}

void keys_fingerprint(const uint8_t id[KEYS_ID_LEN], char out[KEYS_FPR_LEN])
{
        for (int i = 0; i < KEYS_ID_LEN; i++)
                snprintf(out + 3 * i, 4, i + 1 < KEYS_ID_LEN ? "%02x:" : "%02x", id[i]);
}

static int from_seed(const uint8_t seed[SEED_LEN], struct keys_secret **ret, lserr *err)
{
        struct keys_secret *k = sodium_malloc(sizeof(*k));

        if (!k)
                return lserr_set(err, -ENOMEM, "secret key: out of locked memory");
        memcpy(k->seed, seed, SEED_LEN);
        crypto_sign_seed_keypair(k->pub.pk, k->sk, k->seed);
        keys_id_of(k->pub.pk, k->pub.id);
        *ret = k;
        return 0;
}

int keys_generate(struct keys_secret **ret, lserr *err)
{
        uint8_t seed[SEED_LEN];
        int r = sodium_ready(err);

        if (r < 0)
                return r;
        randombytes_buf(seed, sizeof(seed));
        r = from_seed(seed, ret, err);
        sodium_memzero(seed, sizeof(seed));
        return r;
}

struct keys_secret *keys_secret_free(struct keys_secret *k)
{
        if (k)
                sodium_free(k); /* wipes before releasing */
        return NULL;
}

const struct keys_public *keys_secret_public(const struct keys_secret *k)
{
        return &k->pub;
}

int keys_sign2(const struct keys_secret *k, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
               uint8_t sig[64])
{
        /* Plain Ed25519 signs one contiguous message. */
        uint8_t *msg = malloc(alen + blen ? alen + blen : 1);
        if (!msg)
                return -ENOMEM;
        if (alen)
                memcpy(msg, a, alen);
        if (blen)
                memcpy(msg + alen, b, blen);
        crypto_sign_detached(sig, NULL, msg, alen + blen, k->sk);
        free(msg);
        return 0;
}

int keys_write(const char *prefix, const struct keys_secret *k, lserr *err)
{
        char path[4096], fpr[KEYS_FPR_LEN];
        char b64[sodium_base64_ENCODED_LEN(SEED_LEN, sodium_base64_VARIANT_ORIGINAL)];
        char *text = NULL;
        int n, r;

        if (snprintf(path, sizeof(path), "%s.key", prefix) >= (int)sizeof(path))
                return lserr_set(err, -ENAMETOOLONG, "\"%s\": key path too long", prefix);
        if (access(path, F_OK) == 0)
                return lserr_set(err, -EEXIST, "\"%s\": already exists, refusing to overwrite a key", path);
        snprintf(path, sizeof(path), "%s.pub", prefix);
        if (access(path, F_OK) == 0)
                return lserr_set(err, -EEXIST, "\"%s\": already exists, refusing to overwrite a key", path);

        sodium_bin2base64(b64, sizeof(b64), k->seed, SEED_LEN, sodium_base64_VARIANT_ORIGINAL);
        n = asprintf(&text, "# lockstep secret key: keep private (mode 0600)\n" KEY_MAGIC " %s\n", b64);
        sodium_memzero(b64, sizeof(b64));
        if (n < 0)
                return -ENOMEM;
        snprintf(path, sizeof(path), "%s.key", prefix);
        r = fsutil_write_atomic(path, text, (size_t)n, 0600, FSUTIL_EXCL, err);
        sodium_memzero(text, (size_t)n);
        free(text);
        text = NULL;
        if (r < 0)
                return r;

        sodium_bin2base64(b64, sizeof(b64), k->pub.pk, KEYS_PK_LEN, sodium_base64_VARIANT_ORIGINAL);
        keys_fingerprint(k->pub.id, fpr);
        n = asprintf(&text, PUB_MAGIC " %s %s\n", b64, fpr);
        if (n < 0)
                return -ENOMEM;
        snprintf(path, sizeof(path), "%s.pub", prefix);
        r = fsutil_write_atomic(path, text, (size_t)n, 0644, FSUTIL_EXCL, err);
        free(text);
        return r;
}

/* Finds the first non-comment line, checks its magic and decodes its base64 field
 * into out (exactly outlen bytes). The line is not copied so no stray secret
 * remains anywhere but in buf, which the caller wipes. */
static int parse_line(const char *what, const char *buf, const char *magic, uint8_t *out, size_t outlen,
                      lserr *err)
{
        const char *line = buf, *b64, *end;
        size_t bin_len = 0, mlen = strlen(magic);

        while (*line == '#' || *line == '\n' || *line == ' ' || *line == '\t' || *line == '\r') {
                if (*line == '#') {
                        line = strchr(line, '\n');
                        if (!line)
                                break;
                }
                line++;
        }
        if (!line || strncmp(line, magic, mlen) != 0 || (line[mlen] != ' ' && line[mlen] != '\t'))
                return lserr_set(err, LS_EKEYFORMAT, "%s: not a lockstep key (expected a line starting with \"%s \")",
                                 what, magic);
        b64 = line + mlen;
        while (*b64 == ' ' || *b64 == '\t')
                b64++;
        end = b64 + strcspn(b64, " \t\r\n");
        if (sodium_base642bin(out, outlen, b64, (size_t)(end - b64), NULL, &bin_len, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            bin_len != outlen)
                return lserr_set(err, LS_EKEYFORMAT, "%s: key is not %zu bytes of base64", what, outlen);
        return 0;
}

/* The rules for a secret key file, checked on the open file (not on a path that
 * could be swapped between a check and the open): nobody but its owner may read
 * it, and that owner is this process's user or root, so another local user cannot
 * plant a key of their own in a directory we read. */
static int check_secret_file(int fd, const char *what, const char *path, lserr *err)
{
        struct stat st;

        if (fstat(fd, &st) < 0)
                return lserr_set(err, -errno, "%s: stat: %m", what);
        if (st.st_mode & 077)
                return lserr_set(err, LS_EKEYPERM,
                                 "%s: mode %04o lets group or other read it; fix with: chmod 600 '%s'", what,
                                 (unsigned)(st.st_mode & 07777), path);
        if (st.st_uid != geteuid() && st.st_uid != 0)
                return lserr_set(err, LS_EKEYPERM,
                                 "%s: owned by uid %u, neither this process's uid %u nor root; fix with: chown %u '%s'",
                                 what, (unsigned)st.st_uid, (unsigned)geteuid(), (unsigned)geteuid(), path);
        return 0;
}

int keys_load_secret(const char *path, struct keys_secret **ret, lserr *err)
{
        _cleanup_close_ int fd = -1;
        uint8_t seed[SEED_LEN];
        char what[4200];
        char *buf = NULL;
        size_t len = 0;
        int r = sodium_ready(err);

        if (r < 0)
                return r;
        snprintf(what, sizeof(what), "secret key \"%s\"", path);
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return lserr_set(err, -errno, "%s: open: %m", what);
        r = check_secret_file(fd, what, path, err);
        if (r < 0)
                return r;
        r = fsutil_read_fd(fd, path, KEYFILE_MAX, &buf, &len, err);
        if (r < 0)
                return r;
        r = parse_line(what, buf, KEY_MAGIC, seed, sizeof(seed), err);
        if (r >= 0)
                r = from_seed(seed, ret, err);
        sodium_memzero(seed, sizeof(seed));
        sodium_memzero(buf, len);
        free(buf);
        return r;
}

int keys_load_public(const char *path_or_inline, struct keys_public *ret, lserr *err)
{
        struct keys_public pub;
        char what[4200];
        char *buf = NULL;
        size_t len = 0;
        int r;

        if (strncmp(path_or_inline, PUB_MAGIC " ", strlen(PUB_MAGIC) + 1) == 0) {
                r = parse_line("inline public key", path_or_inline, PUB_MAGIC, pub.pk, KEYS_PK_LEN, err);
        } else {
                snprintf(what, sizeof(what), "public key \"%s\"", path_or_inline);
                r = fsutil_read_all(path_or_inline, KEYFILE_MAX, &buf, &len, err);
                if (r >= 0)
                        r = parse_line(what, buf, PUB_MAGIC, pub.pk, KEYS_PK_LEN, err);
                free(buf);
        }
        if (r < 0)
                return r;
        keys_id_of(pub.pk, pub.id);
        *ret = pub;
        return 0;
}
