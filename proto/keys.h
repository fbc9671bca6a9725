/* keys: Ed25519 key pairs in lockstep's text files, key ids and fingerprints.
 *
 * PREFIX.key (mode 0600):   "lockstep-key-v1 <base64 of the 32-byte seed>\n"
 * PREFIX.pub:               "lockstep-pub-v1 <base64 of the 32-byte public key> <fingerprint>\n"
 * Lines starting with '#' and blank lines are ignored. The key id is the first
 * 8 bytes of BLAKE2b(pk); its fingerprint is those bytes in hex, colon-separated. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "lserr.h"

#define KEYS_ID_LEN 8
#define KEYS_PK_LEN 32
#define KEYS_FPR_LEN (KEYS_ID_LEN * 3) /* "aa:bb:..:hh" plus NUL */

struct keys_public {
        uint8_t pk[KEYS_PK_LEN];
        uint8_t id[KEYS_ID_LEN];
};

/* Secret keys live in sodium_malloc'd memory (guarded, not swapped) and are
 * wiped when freed. */
struct keys_secret;

/* New random key pair, owned by the caller. */
int keys_generate(struct keys_secret **ret, lserr *err);

/* Writes PREFIX.key (0600) and PREFIX.pub (0644); refuses to overwrite either. */
int keys_write(const char *prefix, const struct keys_secret *k, lserr *err);

/* Loads a secret key file; refuses a symlink, one that group or other can read, and
 * one owned by a user other than this process's or root. */
int keys_load_secret(const char *path, struct keys_secret **ret, lserr *err);

/* Accepts either an inline "lockstep-pub-v1 <base64>" or the path of a .pub file. */
int keys_load_public(const char *path_or_inline, struct keys_public *ret, lserr *err);

struct keys_secret *keys_secret_free(struct keys_secret *k);

const struct keys_public *keys_secret_public(const struct keys_secret *k);

/* Detached Ed25519 signature over the concatenation a || b. */
int keys_sign2(const struct keys_secret *k, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
               uint8_t sig[64]);

void keys_id_of(const uint8_t pk[KEYS_PK_LEN], uint8_t id[KEYS_ID_LEN]);
void keys_fingerprint(const uint8_t id[KEYS_ID_LEN], char out[KEYS_FPR_LEN]);
