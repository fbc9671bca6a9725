/* cleanup: __attribute__((cleanup)) helpers, one per owned type, so a function
 * that owns a resource frees it on every return without an out: label. */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void cleanup_freep(void *p)
{
        free(*(void **)p);
}

static inline void cleanup_closep(int *fd)
{
        if (*fd >= 0)
                close(*fd);
}

static inline void cleanup_fclosep(FILE **f)
{
        if (*f)
                fclose(*f);
}

#define _cleanup_free_ _cleanup_(cleanup_freep)
#define _cleanup_close_ _cleanup_(cleanup_closep)
#define _cleanup_fclose_ _cleanup_(cleanup_fclosep)

/* Hands an owned pointer to the caller: the variable's cleanup then sees NULL. */
#define TAKE_PTR(p)                                                                                                 \
        ({                                                                                                          \
                __typeof__(p) take_ptr_tmp_ = (p);                                                                  \
                (p) = NULL;                                                                                         \
                take_ptr_tmp_;                                                                                      \
        })
