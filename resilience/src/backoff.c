/*
 * backoff.c - backoff schedules and jitter as pure functions.
 *
 * The base delay for retry n comes from the schedule and is clamped to the
 * cap before it can overflow: linear growth is checked by division,
 * exponential growth is raised by squaring in double precision and stops as
 * soon as it passes cap / initial (so retry 4,000,000,000 costs 32 steps),
 * and fibonacci stops once it passes the cap (at most ~90 steps). Jitter
 * then maps 64 caller-supplied random bits onto the range its definition
 * gives (AWS's full, equal and decorrelated jitter; gRPC's +/- fraction).
 * Nothing here reads a clock, allocates or keeps state; the caller's
 * ratchet_backoff_state carries what decorrelated jitter and the limits need.
 */
#include <errno.h>

#include "ratchet/backoff.h"
#include "ratchet/error.h"
#include "ratchet/rng.h"

#define TABLE_MAX 4096

int ratchet_backoff_validate(const ratchet_backoff_options *o) {
  if (o == NULL)
    return -EINVAL;
  if (o->kind < RATCHET_BACKOFF_CONSTANT || o->kind > RATCHET_BACKOFF_TABLE)
    return -EINVAL;
  if (o->jitter < RATCHET_JITTER_NONE ||
      o->jitter > RATCHET_JITTER_PROPORTIONAL)
    return -EINVAL;
  if (o->initial_ns < 1 || o->max_delay_ns < o->initial_ns)
    return -EINVAL;
  /* Written as !(in range) so that NaN is refused too. */
  if (o->kind == RATCHET_BACKOFF_EXPONENTIAL &&
      !(o->multiplier >= 1.0 && o->multiplier <= 1000.0))
    return -EINVAL;
  if (o->kind == RATCHET_BACKOFF_TABLE &&
      (o->table_ns == NULL || o->table_len < 1 || o->table_len > TABLE_MAX))
    return -EINVAL;
  if (o->jitter == RATCHET_JITTER_PROPORTIONAL &&
      !(o->jitter_fraction >= 0.0 && o->jitter_fraction <= 1.0))
    return -EINVAL;
  return 0;
}

static uint64_t min_u64(uint64_t a, uint64_t b) {
  return a < b ? a : b;
}

/* initial * multiplier^k, clamped to cap. */
static uint64_t exponential(uint64_t initial, double multiplier, uint64_t k,
                            uint64_t cap) {
  double limit = (double)cap / (double)initial;
  double result = 1.0, base = multiplier;
  while (k != 0) {
    if (k & 1) {
      result *= base;
      if (result >= limit)
        return cap;
    }
    k >>= 1;
    base *= base; /* may reach infinity; then result does at the next bit */
  }
  double v = (double)initial * result;
  return v >= (double)cap ? cap : (uint64_t)v;
}

/* initial * fib(n) with fib(1) = fib(2) = 1, clamped to cap. */
static uint64_t fibonacci(uint64_t initial, uint64_t n, uint64_t cap) {
  uint64_t limit = cap / initial, a = 1, b = 1;
  for (uint64_t i = 2; i < n; i++) {
    if (a > limit - b) /* a + b > limit, tested without overflowing */
      return cap;
    uint64_t next = a + b;
    a = b;
    b = next;
  }
  return min_u64(initial * b, cap);
}

uint64_t ratchet_backoff_base(const ratchet_backoff_options *o,
                              uint32_t retry) {
  uint64_t n = retry == 0 ? 1 : retry;
  uint64_t cap = o->max_delay_ns, initial = o->initial_ns;
  switch (o->kind) {
  case RATCHET_BACKOFF_CONSTANT:
    return initial;
  case RATCHET_BACKOFF_LINEAR:
    if (o->increment_ns != 0 && n - 1 > (cap - initial) / o->increment_ns)
      return cap;
    return min_u64(initial + o->increment_ns * (n - 1), cap);
  case RATCHET_BACKOFF_EXPONENTIAL:
    return exponential(initial, o->multiplier, n - 1, cap);
  case RATCHET_BACKOFF_FIBONACCI:
    return fibonacci(initial, n, cap);
  case RATCHET_BACKOFF_TABLE:
    return min_u64(o->table_ns[min_u64(n, o->table_len) - 1], cap);
  }
  return cap;
}

static uint64_t saturating_mul3(uint64_t v) {
  return v > UINT64_MAX / 3 ? UINT64_MAX : v * 3;
}

uint64_t ratchet_backoff_delay(const ratchet_backoff_options *o, uint32_t retry,
                               uint64_t prev_ns, uint64_t random) {
  uint64_t cap = o->max_delay_ns;
  uint64_t v, lo, hi;
  double scaled;

  switch (o->jitter) {
  case RATCHET_JITTER_FULL:
    return ratchet_rng_upto(random, ratchet_backoff_base(o, retry));
  case RATCHET_JITTER_EQUAL:
    v = ratchet_backoff_base(o, retry);
    return v / 2 + ratchet_rng_upto(random, v - v / 2);
  case RATCHET_JITTER_DECORRELATED:
    /* AWS: sleep = min(cap, random_between(base, sleep * 3)), with the
     * first sleep taken as base. */
    lo = o->initial_ns;
    hi = saturating_mul3(prev_ns == 0 ? lo : prev_ns);
    if (hi < lo)
      hi = lo;
    return min_u64(lo + ratchet_rng_upto(random, hi - lo), cap);
  case RATCHET_JITTER_PROPORTIONAL:
    v = ratchet_backoff_base(o, retry);
    scaled = (double)v * (1.0 + o->jitter_fraction *
                                    (2.0 * ratchet_rng_unit(random) - 1.0));
    if (!(scaled > 0.0))
      return 0;
    return scaled >= (double)cap ? cap : (uint64_t)scaled;
  case RATCHET_JITTER_NONE:
    break;
  }
  return ratchet_backoff_base(o, retry);
}

void ratchet_backoff_start(ratchet_backoff_state *st, uint64_t now_ns) {
  st->attempts = 1;
  st->prev_ns = 0;
  st->start_ns = now_ns;
}

int ratchet_backoff_next(const ratchet_backoff_options *o,
                         ratchet_backoff_state *st, uint64_t now_ns,
                         uint64_t random, uint64_t *delay_ns) {
  uint32_t made = st->attempts == 0 ? 1 : st->attempts;
  if (o->max_attempts != 0 && made >= o->max_attempts)
    return RATCHET_EATTEMPTS;
  uint64_t d = ratchet_backoff_delay(o, made, st->prev_ns, random);
  if (o->max_elapsed_ns != 0) {
    uint64_t elapsed = now_ns > st->start_ns ? now_ns - st->start_ns : 0;
    if (elapsed > o->max_elapsed_ns || d > o->max_elapsed_ns - elapsed)
      return RATCHET_EDEADLINE;
  }
  st->attempts = made == UINT32_MAX ? made : made + 1;
  st->prev_ns = d;
  *delay_ns = d;
  return 0;
}
