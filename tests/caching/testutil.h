/*
 * testutil.h - shared by the caching test groups. tu_self_path() and the
 * counting, failure-injecting allocator (tu_alloc_*) of the -ENOMEM unwind
 * tests are in tests/common.
 */
#ifndef RATCHET_CACHING_TESTUTIL_H
#define RATCHET_CACHING_TESTUTIL_H

#include <stddef.h>

#include "testsupport.h"

/* One group per module, each returning its number of failures. */
int test_policy(void);
int test_memcache(void);
int test_cachesim(void);
int test_key(void);
int test_store(void);
int test_tiered(void);
int test_singleflight(void);

/* Children (argv after "--child NAME"). test_store.c: writes to the store
 * in argv[0] in a loop, seeded by argv[1], with durability argv[2], until
 * it is SIGKILLed. */
int tu_store_crash_child(int argc, char **argv);
/* test_store.c: opens the store in argv[0] with a larger map and grows it
 * with 150 values of 50 KB while the parent reads; exits 0 on success. */
int tu_store_grow_child(int argc, char **argv);

#endif
