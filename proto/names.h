/* names: the one rule for every name that crosses a boundary (VM, agent, group,
 * snapshot, txid): [A-Za-z0-9._-], 1..LS_NAME_MAX bytes, not "." or "..". */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define LS_NAME_MAX 64

bool names_valid(const char *s);
/* Same rule on a counted buffer (protobuf strings are NUL-terminated, but config
 * and file parsers have lengths). */
bool names_valid_n(const char *s, size_t n);
