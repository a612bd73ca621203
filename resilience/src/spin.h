/*
 * spin.h - the short lock that guards breaker, limiter and budget state.
 *
 * Critical sections here are a few dozen instructions with no calls out, so
 * a test-and-test-and-set spin lock on a C11 atomic beats a mutex and keeps
 * the library free of pthreads. If the holder is preempted, waiters stop
 * burning their time slice after a few hundred spins and yield the CPU
 * (ratchet__spin_yield, chosen by platform in yield_*.c).
 */
#ifndef RATCHET_SPIN_H
#define RATCHET_SPIN_H

#include <stdatomic.h>
#include <stdbool.h>

typedef struct ratchet__spin {
  atomic_bool locked;
} ratchet__spin;

#define RATCHET__SPIN_INIT                                                     \
  { false }

void ratchet__spin_yield(void);

static inline void ratchet__spin_init(ratchet__spin *s) {
  atomic_init(&s->locked, false);
}

static inline void ratchet__spin_lock(ratchet__spin *s) {
  unsigned spins = 0;
  for (;;) {
    if (!atomic_exchange_explicit(&s->locked, true, memory_order_acquire))
      return;
    while (atomic_load_explicit(&s->locked, memory_order_relaxed)) {
      if (++spins >= 256) {
        spins = 0;
        ratchet__spin_yield();
      }
    }
  }
}

static inline void ratchet__spin_unlock(ratchet__spin *s) {
  atomic_store_explicit(&s->locked, false, memory_order_release);
}

#endif /* RATCHET_SPIN_H */
