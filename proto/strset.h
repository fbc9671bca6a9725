/* strset: a hash index of borrowed string pairs (a VM and its agent, an agent
 * id and "") to a number each, so that checks over a fleet's names (duplicates,
 * lookups) cost one probe instead of a scan of every name. */
#pragma once

#include <stddef.h>

struct strset;

/* Room for cap pairs (the table is sized for them; adding more fails). The
 * strings are borrowed: they must outlive the set. NULL when out of memory. */
struct strset *strset_new(size_t cap);
struct strset *strset_free(struct strset *s);
static inline void strset_freep(struct strset **s)
{
        strset_free(*s);
}

/* Adds (a, b) with value v, unless it is there: then its value (>= 0) is
 * returned and nothing changes. -1 when added, -2 when the set is full. */
long strset_add(struct strset *s, const char *a, const char *b, long v);
/* Sets (a, b) to v, adding it when absent: its old value, -1 when it was
 * added, -2 when the set is full. */
long strset_put(struct strset *s, const char *a, const char *b, long v);
/* The value of (a, b), -1 when absent. */
long strset_get(const struct strset *s, const char *a, const char *b);
