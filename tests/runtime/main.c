/*
 * main.c - runs every runtime test group, or only those named on the command
 * line (`test-runtime worker`). A test that needs a child process runs this
 * binary again with "--child NAME" first (see children[] below).
 */
#include <stdio.h>
#include <string.h>

#include "testutil.h"

static const struct {
  const char *name;
  int (*run)(void);
} groups[] = {
    {"worker", test_worker},
    {"pool", test_pool},
    {"stress", test_stress},
};

int main(int argc, char **argv) {
  int failed = 0, ran = 0;
  if (argc > 2 && strcmp(argv[1], "--child") == 0)
    return tu_child_main(argv[2], argc - 3, argv + 3);
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
    fprintf(stderr, "test-runtime: no test group matches the arguments\\n");
    return 2;
  }
  return failed == 0 ? 0 : 1;
}
