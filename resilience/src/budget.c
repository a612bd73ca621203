/*
 * budget.c - a retry budget over a sliding window of time buckets.
 *
 * The window of window_ns is cut into `buckets` buckets of width
 * window_ns / buckets (rounded down, so the effective window may be a few
 * nanoseconds shorter than asked). A time t falls in epoch t / width; the
 * bucket for epoch e is slot e % buckets, and each slot remembers the epoch
 * it holds. The budget keeps the newest epoch and running sums of calls and
 * retries over all slots, so deposit and withdraw are O(1); moving from
 * epoch h to epoch e > h clears the slots of epochs h+1 .. e (at most
 * `buckets` of them, however far the clock jumped) and takes their counts
 * out of the sums. A call therefore counts for between (buckets - 1) and
 * buckets bucket widths: the usual price of a bucketed window. A clock that
 * stands still counts into the newest bucket; one that goes backwards (it
 * should not: callers pass monotonic time) also counts into the newest
 * bucket rather than rewriting the past.
 *
 * The limit is max(min_retries, floor(ratio * calls)). To keep floating
 * point out of the decision (0.29 * 100 is 28.999999999999996 in doubles),
 * the ratio is turned once, at creation, into an integer number of
 * millionths (rounded to the nearest, so 0.2 is exactly 200000) and the
 * floor is computed in 64-bit integers, saturating instead of overflowing.
 * Ratios are thus resolved to 1e-6.
 *
 * Every entry point takes the ratchet__spin lock around a few dozen
 * instructions; nothing allocates after ratchet_retry_budget_new, which makes
 * one block for the budget and its buckets.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "ratchet/alloc.h"
#include "ratchet/budget.h"
#include "ratchet/error.h"
#include "spin.h"

#define PPM             UINT64_C(1000000)
#define MAX_RATIO       1000.0
#define MAX_MIN_RETRIES UINT32_C(1000000000)
#define MIN_WINDOW_NS   UINT64_C(1000000)        /* 1 ms */
#define MAX_WINDOW_NS   UINT64_C(86400000000000) /* 1 day */
#define MAX_BUCKETS     UINT32_C(1000)

typedef struct bucket {
  uint64_t epoch; /* the epoch whose counts this slot holds */
  uint64_t calls;
  uint64_t retries;
} bucket;

struct ratchet_retry_budget {
  ratchet__spin lock;
  uint64_t width_ns;  /* one bucket's span, >= 1 */
  uint64_t ratio_ppm; /* ratio in millionths, 0 .. 1e9 */
  uint64_t min_retries;
  uint32_t nbuckets;
  uint64_t head;          /* the newest epoch seen */
  uint64_t calls;         /* sum of calls over the slots */
  uint64_t retries;       /* sum of retries over the slots */
  uint64_t total_refused; /* since creation; never decreases */
  bucket slots[];
};

/* Returns -EINVAL unless every option is in the range budget.h documents.
 * The ratio test is written so that NaN fails it. */
static int validate(const ratchet_retry_budget_options *o) {
  if (!(o->ratio >= 0.0 && o->ratio <= MAX_RATIO))
    return -EINVAL;
  if (o->min_retries > MAX_MIN_RETRIES)
    return -EINVAL;
  if (o->window_ns < MIN_WINDOW_NS || o->window_ns > MAX_WINDOW_NS)
    return -EINVAL;
  if (o->buckets < 1 || o->buckets > MAX_BUCKETS)
    return -EINVAL;
  /* Implied by the two ranges above (1 ms / 1000 = 1 us), but the epoch
   * arithmetic divides by it, so say so where it matters. */
  if (o->window_ns / o->buckets < 1)
    return -EINVAL;
  return 0;
}

/* The newest epoch at or before head that maps to slot i, or 0 when none
 * does yet (only right after creation near time 0; such a slot is empty). */
static uint64_t slot_epoch(uint64_t head, uint32_t i, uint32_t n) {
  uint64_t back = (head % n + n - i) % n;
  return head >= back ? head - back : 0;
}

/* Rolls the window forward to now_ns and returns the slot to count into.
 * Called with the lock held. */
static bucket *roll(ratchet_retry_budget *b, uint64_t now_ns) {
  uint64_t epoch = now_ns / b->width_ns;
  if (epoch > b->head) {
    uint64_t skip = epoch - b->head;
    if (skip >= b->nbuckets) {
      /* The whole window has passed: every slot is stale. */
      for (uint32_t i = 0; i < b->nbuckets; i++) {
        b->slots[i].calls = 0;
        b->slots[i].retries = 0;
        b->slots[i].epoch = slot_epoch(epoch, i, b->nbuckets);
      }
      b->calls = 0;
      b->retries = 0;
    } else {
      for (uint64_t e = b->head + 1; e <= epoch; e++) {
        bucket *s = &b->slots[e % b->nbuckets];
        b->calls -= s->calls;
        b->retries -= s->retries;
        s->calls = 0;
        s->retries = 0;
        s->epoch = e;
      }
    }
    b->head = epoch;
  }
  /* Same epoch, or (defensively) an earlier one: the newest bucket. */
  return &b->slots[b->head % b->nbuckets];
}

/* floor(ratio_ppm * calls / 1e6) without overflow, saturating at
 * UINT64_MAX. Splitting calls = q * 1e6 + r keeps each product in range:
 * r * ratio_ppm < 1e6 * 1e9. */
static uint64_t ratio_of(uint64_t ratio_ppm, uint64_t calls) {
  uint64_t q = calls / PPM, r = calls % PPM;
  uint64_t part = r * ratio_ppm / PPM;
  if (q != 0 && ratio_ppm > (UINT64_MAX - part) / q)
    return UINT64_MAX;
  return q * ratio_ppm + part;
}

/* The retries the window allows. Called with the lock held. */
static uint64_t limit(const ratchet_retry_budget *b) {
  uint64_t by_ratio = ratio_of(b->ratio_ppm, b->calls);
  return by_ratio > b->min_retries ? by_ratio : b->min_retries;
}

int ratchet_retry_budget_new(const ratchet_retry_budget_options *o,
                             uint64_t now_ns, ratchet_retry_budget **out) {
  if (o == NULL || out == NULL)
    return -EINVAL;
  int rc = validate(o);
  if (rc != 0)
    return rc;

  ratchet_retry_budget *b =
      ratchet_calloc(1, sizeof *b + (size_t)o->buckets * sizeof(bucket));
  if (b == NULL)
    return -ENOMEM;
  ratchet__spin_init(&b->lock);
  b->width_ns = o->window_ns / o->buckets;
  /* In range by validate(): 0 .. 1e9 millionths; + 0.5 rounds to nearest. */
  b->ratio_ppm = (uint64_t)(o->ratio * (double)PPM + 0.5);
  b->min_retries = o->min_retries;
  b->nbuckets = o->buckets;
  b->head = now_ns / b->width_ns;
  /* Give every slot the newest epoch that maps to it, so that the slots
   * always hold the window ending at head. */
  for (uint32_t i = 0; i < b->nbuckets; i++)
    b->slots[i].epoch = slot_epoch(b->head, i, b->nbuckets);
  *out = b;
  return 0;
}

void ratchet_retry_budget_free(ratchet_retry_budget *b) {
  ratchet_free(b);
}

void ratchet_retry_budget_deposit(ratchet_retry_budget *b, uint64_t now_ns) {
  ratchet__spin_lock(&b->lock);
  bucket *s = roll(b, now_ns);
  s->calls++;
  b->calls++;
  ratchet__spin_unlock(&b->lock);
}

int ratchet_retry_budget_withdraw(ratchet_retry_budget *b, uint64_t now_ns) {
  int rc = 0;
  ratchet__spin_lock(&b->lock);
  bucket *s = roll(b, now_ns);
  /* retries + 1 <= limit, written so that it cannot overflow. */
  if (b->retries < limit(b)) {
    s->retries++;
    b->retries++;
  } else {
    b->total_refused++;
    rc = RATCHET_EBUDGET;
  }
  ratchet__spin_unlock(&b->lock);
  return rc;
}

void ratchet_retry_budget_metrics_get(ratchet_retry_budget *b, uint64_t now_ns,
                                      ratchet_retry_budget_metrics *m) {
  ratchet__spin_lock(&b->lock);
  (void)roll(b, now_ns);
  m->calls = b->calls;
  m->retries = b->retries;
  m->allowed = limit(b);
  m->total_refused = b->total_refused;
  ratchet__spin_unlock(&b->lock);
}
