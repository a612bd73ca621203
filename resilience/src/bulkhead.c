/*
 * bulkhead.c - a lock-free cap on concurrent holders.
 *
 * The maximum and the number of places in use share one 64-bit atomic word
 * (maximum in the high half, in_use in the low half), so a compare-and-swap
 * tests and takes a place against the maximum of that same instant: a resize
 * racing with acquirers can never let in_use pass the newer maximum, and a
 * lowered maximum simply refuses newcomers until holders leave. Release is a
 * CAS loop too, so that a stray release cannot drive the count below zero.
 * Peak and the totals are separate atomics, updated after the fact; they are
 * statistics, read one at a time.
 *
 * Memory order: a successful acquire synchronises with the release that
 * freed its place (acquire/release), as a semaphore would, so work done
 * inside the section by one holder is visible to the next. The statistics
 * and resize order nothing and are relaxed.
 */
#include <errno.h>
#include <stdatomic.h>

#include "ratchet/alloc.h"
#include "ratchet/bulkhead.h"
#include "ratchet/error.h"

#define MAX_CONCURRENT UINT32_C(1000000)

struct ratchet_bulkhead {
  _Atomic(uint64_t) state; /* max_concurrent << 32 | in_use */
  _Atomic(uint32_t) peak;
  _Atomic(uint64_t) acquired;
  _Atomic(uint64_t) rejected;
};

static uint32_t in_use_of(uint64_t state) {
  return (uint32_t)state;
}

static uint32_t max_of(uint64_t state) {
  return (uint32_t)(state >> 32);
}

static uint64_t make_state(uint32_t max, uint32_t in_use) {
  return (uint64_t)max << 32 | in_use;
}

int ratchet_bulkhead_new(const ratchet_bulkhead_options *o,
                         ratchet_bulkhead **out) {
  if (o == NULL || out == NULL || o->max_concurrent < 1 ||
      o->max_concurrent > MAX_CONCURRENT)
    return -EINVAL;
  ratchet_bulkhead *bh = ratchet_malloc(sizeof *bh);
  if (bh == NULL)
    return -ENOMEM;
  atomic_init(&bh->state, make_state(o->max_concurrent, 0));
  atomic_init(&bh->peak, 0);
  atomic_init(&bh->acquired, 0);
  atomic_init(&bh->rejected, 0);
  *out = bh;
  return 0;
}

void ratchet_bulkhead_free(ratchet_bulkhead *bh) {
  ratchet_free(bh);
}

int ratchet_bulkhead_try_acquire(ratchet_bulkhead *bh) {
  uint64_t s = atomic_load_explicit(&bh->state, memory_order_relaxed);
  do {
    if (in_use_of(s) >= max_of(s)) {
      atomic_fetch_add_explicit(&bh->rejected, 1, memory_order_relaxed);
      return RATCHET_EBULKHEAD_FULL;
    }
    /* in_use < max <= 10^6, so + 1 never carries into the maximum. */
  } while (!atomic_compare_exchange_weak_explicit(
      &bh->state, &s, s + 1, memory_order_acquire, memory_order_relaxed));
  atomic_fetch_add_explicit(&bh->acquired, 1, memory_order_relaxed);

  /* Raise the peak to the count we reached, unless another thread has
   * already recorded a higher one. */
  uint32_t reached = in_use_of(s) + 1;
  uint32_t peak = atomic_load_explicit(&bh->peak, memory_order_relaxed);
  while (peak < reached && !atomic_compare_exchange_weak_explicit(
                               &bh->peak, &peak, reached, memory_order_relaxed,
                               memory_order_relaxed))
    ;
  return 0;
}

void ratchet_bulkhead_release(ratchet_bulkhead *bh) {
  uint64_t s = atomic_load_explicit(&bh->state, memory_order_relaxed);
  do {
    if (in_use_of(s) == 0)
      return; /* more releases than acquires: a caller's bug, ignored */
  } while (!atomic_compare_exchange_weak_explicit(
      &bh->state, &s, s - 1, memory_order_release, memory_order_relaxed));
}

int ratchet_bulkhead_resize(ratchet_bulkhead *bh, uint32_t max_concurrent) {
  if (max_concurrent < 1 || max_concurrent > MAX_CONCURRENT)
    return -EINVAL;
  uint64_t s = atomic_load_explicit(&bh->state, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(
      &bh->state, &s, make_state(max_concurrent, in_use_of(s)),
      memory_order_relaxed, memory_order_relaxed))
    ;
  return 0;
}

void ratchet_bulkhead_metrics_get(ratchet_bulkhead *bh,
                                  ratchet_bulkhead_metrics *m) {
  uint64_t s = atomic_load_explicit(&bh->state, memory_order_relaxed);
  m->max_concurrent = max_of(s);
  m->in_use = in_use_of(s);
  m->peak = atomic_load_explicit(&bh->peak, memory_order_relaxed);
  m->total_acquired = atomic_load_explicit(&bh->acquired, memory_order_relaxed);
  m->total_rejected = atomic_load_explicit(&bh->rejected, memory_order_relaxed);
}
