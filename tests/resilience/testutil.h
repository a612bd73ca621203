/*
 * testutil.h - helpers shared by the resilience test groups: an allocator
 * that counts calls and can be told to fail, for the -ENOMEM unwind tests and
 * the "no allocation on hot paths" checks.
 */
#ifndef RATCHET_TESTUTIL_H
#define RATCHET_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Installs the counting allocator; allocations after `fail_after` more
 * successful ones fail (SIZE_MAX: never). */
void tu_alloc_install(size_t fail_after);
/* Restores the C library's allocator. */
void tu_alloc_uninstall(void);
/* Allocations (malloc, calloc, realloc) made since install. */
size_t tu_alloc_count(void);
/* Blocks currently allocated through the hook and not yet freed. */
long tu_alloc_live(void);

#define TU_MS UINT64_C(1000000)
#define TU_S  UINT64_C(1000000000)

/* One group of tests per module, each returning its number of failures. */
int test_alloc(void);
int test_error(void);
int test_rng(void);
int test_backoff(void);
int test_retry(void);
int test_budget(void);
int test_breaker(void);
int test_breaker_threads(void);
int test_ratelimit(void);
int test_bulkhead(void);

#endif
