/* strset: open addressing on FNV-1a of both strings, linear probing; the
 * table holds at least twice the pairs it was made for. */
#include "strset.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct slot {
        const char *a, *b; /* a NULL: empty */
        long v;
};

struct strset {
        struct slot *v;
        size_t size, n, cap;
};

static size_t hash2(const char *a, const char *b)
{
        uint64_t h = 14695981039346656037ULL;

        for (; *a; a++)
                h = (h ^ (unsigned char)*a) * 1099511628211ULL;
        h = (h ^ 0xffu) * 1099511628211ULL; /* ("ab", "") differs from ("a", "b") */
        for (; *b; b++)
                h = (h ^ (unsigned char)*b) * 1099511628211ULL;
        return (size_t)h;
}

struct strset *strset_new(size_t cap)
{
        struct strset *s = calloc(1, sizeof(*s));
        size_t size = 8;

        if (!s)
                return NULL;
        while (size < 2 * cap)
                size *= 2;
        s->v = calloc(size, sizeof(*s->v));
        if (!s->v) {
                free(s);
                return NULL;
        }
        s->size = size;
        s->cap = cap;
        return s;
}

struct strset *strset_free(struct strset *s)
{
        if (s)
                free(s->v);
        free(s);
        return NULL;
}

/* The slot of (a, b), or the empty one where it would go. */
static struct slot *find(const struct strset *s, const char *a, const char *b)
{
        for (size_t i = hash2(a, b) & (s->size - 1);; i = (i + 1) & (s->size - 1)) {
                struct slot *x = &s->v[i];
                if (!x->a || (!strcmp(x->a, a) && !strcmp(x->b, b)))
                        return x;
        }
}

long strset_add(struct strset *s, const char *a, const char *b, long v)
{
        struct slot *x = find(s, a, b);

        if (x->a)
                return x->v;
        if (s->n >= s->cap)
                return -2;
        *x = (struct slot){.a = a, .b = b, .v = v};
        s->n++;
        return -1;
}

long strset_put(struct strset *s, const char *a, const char *b, long v)
{
        struct slot *x = find(s, a, b);
        long old;

        if (x->a) {
                old = x->v;
                x->v = v;
                return old;
        }
        return strset_add(s, a, b, v);
}

long strset_get(const struct strset *s, const char *a, const char *b)
{
        const struct slot *x = find(s, a, b);

        return x->a ? x->v : -1;
}
