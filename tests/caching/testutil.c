/*
 * testutil.c - the child-process dispatcher of the caching tests. Groups that
 * need a child add a line to children[] and implement it in their file.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ratchet/alloc.h"
#include "testutil.h"

static const struct {
  const char *name;
  int (*main)(int argc, char **argv);
} children[] = {
    {"store-crash", tu_store_crash_child},
    {"store-grow", tu_store_grow_child},
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

/* ---- failing allocator ---------------------------------------------------
 * Counters are atomic so that thread tests may run under it too. */

static atomic_size_t tu_allocs;
static atomic_long tu_live;
static size_t tu_budget;

static int tu_take(void) {
  size_t n = atomic_fetch_add(&tu_allocs, 1);
  return tu_budget == SIZE_MAX || n < tu_budget;
}

static void *tu_malloc(size_t size) {
  void *p = tu_take() ? malloc(size) : NULL;
  if (p != NULL)
    atomic_fetch_add(&tu_live, 1);
  return p;
}

static void *tu_calloc(size_t count, size_t size) {
  void *p = tu_take() ? calloc(count, size) : NULL;
  if (p != NULL)
    atomic_fetch_add(&tu_live, 1);
  return p;
}

static void *tu_realloc(void *ptr, size_t size) {
  if (!tu_take())
    return NULL;
  void *p = realloc(ptr, size);
  if (ptr == NULL && p != NULL)
    atomic_fetch_add(&tu_live, 1);
  return p;
}

static void tu_free(void *ptr) {
  if (ptr != NULL)
    atomic_fetch_sub(&tu_live, 1);
  free(ptr);
}

void tu_alloc_install(size_t fail_after) {
  atomic_store(&tu_allocs, 0);
  atomic_store(&tu_live, 0);
  tu_budget = fail_after;
  ratchet_replace_allocator(tu_malloc, tu_realloc, tu_calloc, tu_free);
}

void tu_alloc_uninstall(void) {
  ratchet_reset_allocator();
}

size_t tu_alloc_count(void) {
  return atomic_load(&tu_allocs);
}

long tu_alloc_live(void) {
  return atomic_load(&tu_live);
}
