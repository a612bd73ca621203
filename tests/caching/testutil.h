/*
 * testutil.h - shared by the caching test groups.
 */
#ifndef RATCHET_CACHING_TESTUTIL_H
#define RATCHET_CACHING_TESTUTIL_H

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

#endif
