/* fuzzutil: what the fuzz harnesses share: a NUL-terminated copy of the input,
 * the input as a file path (memfd), a scratch directory and a fixed test key. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "lserr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* data as a malloc'd C string (cut at its first NUL); aborts when out of memory. */
char *fuzz_cstr(const uint8_t *data, size_t size);
/* data in an anonymous memory file; its path ("/proc/self/fd/N") into path.
 * Returns the fd, the caller closes it; aborts on failure. */
int fuzz_memfd(const uint8_t *data, size_t size, char path[64]);
/* A private directory made once per process and removed (with its files) at exit. */
const char *fuzz_dir(void);
/* Empties fuzz_dir() (files only), so one input's state never reaches the next. */
void fuzz_dir_clear(void);
/* The fuzzers' fixed Ed25519 key (seed 0x01..0x20), loaded once. A test key only. */
const struct keys_secret *fuzz_key(void);
/* A second fixed key (seed 0x21..0x40), for messages between two signers. */
const struct keys_secret *fuzz_key2(void);
/* With FUZZ_DEBUG set, prints what a parser said of the input (r and err): how
 * to check that a seed gets as deep as it should. */
void fuzz_note(const char *what, int r, const lserr *err);
/* How many results fuzz_note saw, and how many of them were accepted (>= 0). */
void fuzz_counts(unsigned *noted, unsigned *accepted);
