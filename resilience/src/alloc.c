/*
 * alloc.c - the replaceable allocator behind every ratchet allocation.
 *
 * Four function pointers, initialised to the C library's, swapped as a set
 * by ratchet_replace_allocator(). Tests install a counting or failing
 * allocator here to prove that hot paths do not allocate and that every
 * constructor unwinds cleanly on -ENOMEM.
 */
#include <errno.h>
#include <stdlib.h>

#include "ratchet/alloc.h"

static struct {
  ratchet_malloc_fn malloc_fn;
  ratchet_realloc_fn realloc_fn;
  ratchet_calloc_fn calloc_fn;
  ratchet_free_fn free_fn;
} allocator = {malloc, realloc, calloc, free};

int ratchet_replace_allocator(ratchet_malloc_fn malloc_fn,
                              ratchet_realloc_fn realloc_fn,
                              ratchet_calloc_fn calloc_fn,
                              ratchet_free_fn free_fn) {
  if (malloc_fn == NULL || realloc_fn == NULL || calloc_fn == NULL ||
      free_fn == NULL)
    return -EINVAL;
  allocator.malloc_fn = malloc_fn;
  allocator.realloc_fn = realloc_fn;
  allocator.calloc_fn = calloc_fn;
  allocator.free_fn = free_fn;
  return 0;
}

void ratchet_reset_allocator(void) {
  allocator.malloc_fn = malloc;
  allocator.realloc_fn = realloc;
  allocator.calloc_fn = calloc;
  allocator.free_fn = free;
}

void *ratchet_malloc(size_t size) {
  return allocator.malloc_fn(size);
}

void *ratchet_realloc(void *ptr, size_t size) {
  return allocator.realloc_fn(ptr, size);
}

void *ratchet_calloc(size_t count, size_t size) {
  return allocator.calloc_fn(count, size);
}

void ratchet_free(void *ptr) {
  if (ptr != NULL)
    allocator.free_fn(ptr);
}
