/*
 * main.c - runs every resilience test group, or only those named on the
 * command line (`test-resilience breaker backoff`).
 */
#include <stdio.h>
#include <string.h>

#include "testutil.h"

static const struct {
  const char *name;
  int (*run)(void);
} groups[] = {
    {"alloc", test_alloc},
    {"error", test_error},
    {"rng", test_rng},
    {"backoff", test_backoff},
    {"retry", test_retry},
    {"budget", test_budget},
    {"breaker", test_breaker},
    {"breaker_threads", test_breaker_threads},
    {"ratelimit", test_ratelimit},
    {"bulkhead", test_bulkhead},
};

int main(int argc, char **argv) {
  int failed = 0, ran = 0;
  for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
    int wanted = argc < 2;
    for (int a = 1; a < argc; a++)
      wanted |= strcmp(argv[a], groups[i].name) == 0;
    if (!wanted)
      continue;
    failed += groups[i].run();
    ran++;
  }
  if (ran == 0) {
    fprintf(stderr, "test-resilience: no test group matches the arguments\n");
    return 2;
  }
  return failed == 0 ? 0 : 1;
}
