/*
 * testutil.c - the counting, failure-injecting allocator used by the tests.
 * Counters are atomic so the thread tests can use it too.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "ratchet/alloc.h"
#include "testutil.h"

static atomic_size_t allocs;
static atomic_long live;
static size_t budget;

static int take(void) {
  size_t n = atomic_fetch_add(&allocs, 1);
  return budget == SIZE_MAX || n < budget;
}

static void *tu_malloc(size_t size) {
  void *p = take() ? malloc(size) : NULL;
  if (p != NULL)
    atomic_fetch_add(&live, 1);
  return p;
}

static void *tu_calloc(size_t count, size_t size) {
  void *p = take() ? calloc(count, size) : NULL;
  if (p != NULL)
    atomic_fetch_add(&live, 1);
  return p;
}

static void *tu_realloc(void *ptr, size_t size) {
  if (!take())
    return NULL;
  void *p = realloc(ptr, size);
  if (ptr == NULL && p != NULL)
    atomic_fetch_add(&live, 1);
  return p;
}

static void tu_free(void *ptr) {
  if (ptr != NULL)
    atomic_fetch_sub(&live, 1);
  free(ptr);
}

void tu_alloc_install(size_t fail_after) {
  atomic_store(&allocs, 0);
  atomic_store(&live, 0);
  budget = fail_after;
  ratchet_replace_allocator(tu_malloc, tu_realloc, tu_calloc, tu_free);
}

void tu_alloc_uninstall(void) {
  ratchet_reset_allocator();
}

size_t tu_alloc_count(void) {
  return atomic_load(&allocs);
}

long tu_alloc_live(void) {
  return atomic_load(&live);
}
