/*
 * testsupport.h - helpers shared by every test suite (tests/common): the
 * group runner behind each suite's main(), the child-process dispatcher, and
 * the counting, failure-injecting allocator of the -ENOMEM tests.
 */
#ifndef RATCHET_TESTSUPPORT_H
#define RATCHET_TESTSUPPORT_H

#include <stddef.h>
#include <stdint.h>

/* A group of tests: one per module, returning its number of failures. */
typedef struct tu_group {
  const char *name;
  int (*run)(void);
} tu_group;

/* A child process: the test binary re-run as "--child NAME ARGS...";
 * main gets ARGS and returns the child's exit status. */
typedef struct tu_child {
  const char *name;
  int (*main)(int argc, char **argv);
} tu_child;

/* The whole of a suite's main(). With "--child NAME ARGS..." (and children
 * given) runs that child. Otherwise runs every group, or only those named in
 * argv[1..]: returns 0 if all passed, 1 if any failed, and 2 (with a message
 * on stderr prefixed by `prog`) if no group matches the arguments. */
int tu_main(const char *prog, const tu_group *groups, size_t ngroups,
            const tu_child *children, size_t nchildren, int argc, char **argv);

/* The path of the running test binary, for spawning children. */
const char *tu_self_path(void);

/* Installs the counting allocator with ratchet_replace_allocator;
 * allocations after `fail_after` more successful ones fail (SIZE_MAX:
 * never). Counters are atomic so thread tests can use it too. */
void tu_alloc_install(size_t fail_after);
/* Restores the C library's allocator. */
void tu_alloc_uninstall(void);
/* Allocations (malloc, calloc, realloc) attempted since install. */
size_t tu_alloc_count(void);
/* Blocks allocated through the hook since install and not yet freed. */
long tu_alloc_live(void);
/* The size asked for by the latest allocation, and the largest since
 * install: to check that memory follows the bytes that really arrived. */
size_t tu_alloc_last_size(void);
size_t tu_alloc_max_size(void);

#define TU_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
