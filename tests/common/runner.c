/*
 * runner.c - the group runner and child dispatcher behind each suite's
 * main(), and tu_self_path(). RATCHET_TEST_FILTER narrows the tests run.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include "testsupport.h"

static int run_child(const tu_child *children, size_t n, const char *name,
                     int argc, char **argv) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(children[i].name, name) == 0)
      return children[i].main(argc, argv);
  fprintf(stderr, "no such child: %s\n", name);
  return 2;
}

int tu_main(const char *prog, const tu_group *groups, size_t ngroups,
            const tu_child *children, size_t nchildren, int argc, char **argv) {
  int failed = 0, ran = 0;
  if (nchildren > 0 && argc > 2 && strcmp(argv[1], "--child") == 0)
    return run_child(children, nchildren, argv[2], argc - 3, argv + 3);
  /* RATCHET_TEST_FILTER=test_name (cmocka's glob) runs only the matching
   * tests of the chosen groups: for chasing one flaky test. */
  const char *filter = getenv("RATCHET_TEST_FILTER");
  if (filter != NULL && *filter != '\0')
    cmocka_set_test_filter(filter);
  for (size_t i = 0; i < ngroups; i++) {
    int wanted = argc < 2;
    for (int a = 1; a < argc; a++)
      wanted |= strcmp(argv[a], groups[i].name) == 0;
    if (!wanted)
      continue;
    failed += groups[i].run();
    ran++;
  }
  if (ran == 0) {
    fprintf(stderr, "%s: no test group matches the arguments\n", prog);
    return 2;
  }
  return failed == 0 ? 0 : 1;
}

const char *tu_self_path(void) {
  static char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n < 0)
    return NULL;
  path[n] = '\0';
  return path;
}
