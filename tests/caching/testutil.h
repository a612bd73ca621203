/*
 * testutil.h - shared by the caching test groups.
 */
#ifndef RATCHET_CACHING_TESTUTIL_H
#define RATCHET_CACHING_TESTUTIL_H

#include <stddef.h>

/* One group per module, each returning its number of failures. */
int test_policy(void);
int test_memcache(void);
int test_cachesim(void);
int test_key(void);
int test_store(void);
int test_tiered(void);
int test_singleflight(void);

/* Entry point of a child process: the test binary re-run as
 * "--child NAME ARGS...". Returns the child's exit status. */
int tu_child_main(const char *name, int argc, char **argv);

/* The path of the running test binary, for spawning children. */
const char *tu_self_path(void);

/* Children (argv after "--child NAME"). test_store.c: writes to the store
 * in argv[0] in a loop, seeded by argv[1], with durability argv[2], until
 * it is SIGKILLed. */
int tu_store_crash_child(int argc, char **argv);
/* test_store.c: opens the store in argv[0] with a larger map and grows it
 * with 150 values of 50 KB while the parent reads; exits 0 on success. */
int tu_store_grow_child(int argc, char **argv);

/* A counting allocator that can be told to fail, installed with
 * ratchet_replace_allocator: allocations after `fail_after` more successful
 * ones fail (SIZE_MAX: never). For the -ENOMEM unwind tests. */
void tu_alloc_install(size_t fail_after);
/* Restores the C library's allocator. */
void tu_alloc_uninstall(void);
/* Allocations (malloc, calloc, realloc) attempted since install. */
size_t tu_alloc_count(void);
/* Blocks allocated through the hook since install and not yet freed. */
long tu_alloc_live(void);

#endif
