/*
 * histogram.c - fixed-bucket latency histograms (ratchet/accounting.h).
 *
 * Bucket i holds the values in (2^(i-1) us, 2^i us] (bucket 0 everything up
 * to 1 us, zero included), and the last bucket everything above 2^31 us.
 * Finding a value's bucket is one count of leading zeros on the value in
 * whole microseconds, rounded up, so recording is a handful of instructions
 * and never allocates. The exact count, sum, minimum and maximum are kept
 * beside the buckets.
 *
 * A quantile is found by walking the cumulative counts to the bucket that
 * holds the wanted rank and interpolating linearly between that bucket's
 * bounds. The bounds are first narrowed to [min_ns, max_ns], which are
 * exact: a quantile then never leaves the recorded range, q = 0 and q = 1
 * give the minimum and maximum, and the +Inf bucket has a finite top.
 */
#include <stdint.h>

#include "ratchet/accounting.h"

uint64_t ratchet_histogram_bound_ns(unsigned i) {
  if (i >= RATCHET_HIST_FINITE)
    return UINT64_MAX;
  return (UINT64_C(1) << i) * 1000;
}

/* The bucket of value_ns: the smallest i with value_ns <= 2^i us. */
static unsigned histogram_bucket(uint64_t value_ns) {
  uint64_t us = value_ns / 1000 + (value_ns % 1000 != 0);
  if (us <= 1)
    return 0;
  /* ceil(log2(us)) for us >= 2. */
  unsigned i = 64 - (unsigned)__builtin_clzll(us - 1);
  return i < RATCHET_HIST_FINITE ? i : RATCHET_HIST_FINITE;
}

static uint64_t add_saturating(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

void ratchet_histogram_record(ratchet_histogram *h, uint64_t value_ns) {
  if (h->count == 0 || value_ns < h->min_ns)
    h->min_ns = value_ns;
  if (h->count == 0 || value_ns > h->max_ns)
    h->max_ns = value_ns;
  h->count++;
  h->sum_ns = add_saturating(h->sum_ns, value_ns);
  h->buckets[histogram_bucket(value_ns)]++;
}

void ratchet_histogram_merge(ratchet_histogram *dst,
                             const ratchet_histogram *src) {
  if (src->count == 0)
    return;
  if (dst->count == 0 || src->min_ns < dst->min_ns)
    dst->min_ns = src->min_ns;
  if (dst->count == 0 || src->max_ns > dst->max_ns)
    dst->max_ns = src->max_ns;
  dst->count += src->count;
  dst->sum_ns = add_saturating(dst->sum_ns, src->sum_ns);
  for (unsigned i = 0; i < RATCHET_HIST_BUCKETS; i++)
    dst->buckets[i] += src->buckets[i];
}

uint64_t ratchet_histogram_quantile(const ratchet_histogram *h, double q) {
  if (h->count == 0)
    return 0;
  if (!(q > 0)) /* NaN too */
    q = 0;
  if (q > 1)
    q = 1;
  double rank = q * (double)h->count;
  uint64_t below = 0; /* values in the buckets before i */
  unsigned i = 0;
  for (; i < RATCHET_HIST_BUCKETS; i++) {
    uint64_t n = h->buckets[i];
    if (n > 0 && (double)(below + n) >= rank)
      break;
    below += n;
  }
  if (i == RATCHET_HIST_BUCKETS)
    return h->max_ns; /* buckets that disagree with count */

  double lo = i == 0 ? 0.0 : (double)ratchet_histogram_bound_ns(i - 1);
  double hi = i >= RATCHET_HIST_FINITE ? (double)h->max_ns
                                       : (double)ratchet_histogram_bound_ns(i);
  if (lo < (double)h->min_ns)
    lo = (double)h->min_ns;
  if (hi > (double)h->max_ns)
    hi = (double)h->max_ns;
  if (hi < lo)
    hi = lo;
  double frac = (rank - (double)below) / (double)h->buckets[i];
  if (frac < 0)
    frac = 0;
  double est = lo + (hi - lo) * frac;

  /* Compared as doubles before converting, so that the conversion is always
   * in range: (double)max_ns may round up to 2^64. */
  if (est <= (double)h->min_ns)
    return h->min_ns;
  if (est >= (double)h->max_ns)
    return h->max_ns;
  return (uint64_t)est;
}
