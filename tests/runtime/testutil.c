/*
 * testutil.c - the child-process dispatcher of the runtime tests. Groups that
 * need a child add a line to children[] and implement it in their file.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static const struct {
  const char *name;
  int (*main)(int argc, char **argv);
} children[] = {
    {"worker", tu_worker_child},
    {"worker-parent", tu_worker_parent_child},
    {"pool-worker", tu_child_pool_worker},
    {"stress-worker", tu_child_stress_worker},
    {NULL, NULL},
};

int tu_child_main(const char *name, int argc, char **argv) {
  for (size_t i = 0; i < sizeof children / sizeof children[0]; i++)
    if (children[i].name != NULL && strcmp(children[i].name, name) == 0)
      return children[i].main(argc, argv);
  fprintf(stderr, "no such child: %s\n", name);
  return 2;
}

const char *tu_self_path(void) {
  static char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n < 0)
    return NULL;
  path[n] = '\0';
  return path;
}
