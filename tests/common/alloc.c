/*
 * alloc.c - the counting, failure-injecting allocator of the -ENOMEM unwind
 * tests and the "no allocation on hot paths" checks. Counters are atomic so
 * that tests running threads can use it too.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "ratchet/alloc.h"
#include "testsupport.h"

static atomic_size_t tu_allocs;
static atomic_long tu_live;
static atomic_size_t tu_last_size, tu_max_size;
static size_t tu_budget;

static int tu_take(size_t size) {
  size_t n = atomic_fetch_add(&tu_allocs, 1);
  atomic_store(&tu_last_size, size);
  size_t m = atomic_load(&tu_max_size);
  while (size > m && !atomic_compare_exchange_weak(&tu_max_size, &m, size))
    ;
  return tu_budget == SIZE_MAX || n < tu_budget;
}

static void *tu_malloc(size_t size) {
  void *p = tu_take(size) ? malloc(size) : NULL;
  if (p != NULL)
    atomic_fetch_add(&tu_live, 1);
  return p;
}

static void *tu_calloc(size_t count, size_t size) {
  void *p = tu_take(count * size) ? calloc(count, size) : NULL;
  if (p != NULL)
    atomic_fetch_add(&tu_live, 1);
  return p;
}

static void *tu_realloc(void *ptr, size_t size) {
  if (!tu_take(size))
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
  atomic_store(&tu_last_size, 0);
  atomic_store(&tu_max_size, 0);
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

size_t tu_alloc_last_size(void) {
  return atomic_load(&tu_last_size);
}

size_t tu_alloc_max_size(void) {
  return atomic_load(&tu_max_size);
}
