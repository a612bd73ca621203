/*
 * ratchet/alloc.h - the one allocator every ratchet library allocates through.
 *
 * By default ratchet uses the C library's malloc family. A program (or a test
 * that injects allocation failure) may replace it once, before it creates any
 * ratchet object, in the manner of uv_replace_allocator(). The hook is shared
 * by all ratchet libraries in the process.
 */
#ifndef RATCHET_ALLOC_H
#define RATCHET_ALLOC_H

#include <stddef.h>

#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void *(*ratchet_malloc_fn)(size_t size);
typedef void *(*ratchet_realloc_fn)(void *ptr, size_t size);
typedef void *(*ratchet_calloc_fn)(size_t count, size_t size);
typedef void (*ratchet_free_fn)(void *ptr);

/*
 * Replaces the allocator. All four functions are required and must behave as
 * their C library namesakes (calloc zeroes and checks count * size for
 * overflow). Returns 0, or -EINVAL if any pointer is NULL (nothing changes).
 *
 * Not thread-safe: call it before any other ratchet function, or while no
 * ratchet object exists. Memory allocated by one allocator must not be freed
 * after switching to another.
 */
RATCHET_API int ratchet_replace_allocator(ratchet_malloc_fn malloc_fn,
                                          ratchet_realloc_fn realloc_fn,
                                          ratchet_calloc_fn calloc_fn,
                                          ratchet_free_fn free_fn);

/* Restores the C library's allocator. Same rules as above. */
RATCHET_API void ratchet_reset_allocator(void);

/*
 * The allocation functions every ratchet library uses; programs may use them
 * for memory they hand to ratchet to free. Each behaves as its C library
 * namesake through the current allocator; ratchet_malloc(0) and
 * ratchet_calloc(0, n) may return NULL or a unique pointer.
 */
RATCHET_API void *ratchet_malloc(size_t size);
RATCHET_API void *ratchet_realloc(void *ptr, size_t size);
RATCHET_API void *ratchet_calloc(size_t count, size_t size);
RATCHET_API void ratchet_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_ALLOC_H */
