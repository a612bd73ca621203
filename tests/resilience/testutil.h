/*
 * testutil.h - shared by the resilience test groups. The counting,
 * failure-injecting allocator (tu_alloc_*) of the -ENOMEM unwind tests and
 * the "no allocation on hot paths" checks is in tests/common.
 */
#ifndef RATCHET_TESTUTIL_H
#define RATCHET_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "testsupport.h"

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
