/*
 * ratelimit.c - a token bucket and GCRA behind one contract, in exact
 * integer arithmetic.
 *
 * Both algorithms count in one unit: 1/limit of a nanosecond of refill time,
 * which is also 1/period_ns of a permit. A permit then costs period_ns units,
 * limit units accrue per nanosecond, and a full burst is burst * period_ns
 * units (validated to stay below 2^62). Rates such as 3 per second are exact
 * because every division keeps its remainder, except the one that reports a
 * wait, which rounds up.
 *
 * The token bucket keeps `credit`, signed: reserve() may spend permits that
 * have not accrued yet, leaving debt. GCRA keeps the theoretical arrival time
 * TAT as whole nanoseconds plus a remainder in units, so that its emission
 * interval period_ns / limit is exact; credit and TAT are two views of one
 * quantity (credit = full burst - limit * (TAT - now) while TAT is ahead of
 * now), so the two make the
 * same decisions and report the same waits. TAT is only ever compared with
 * the latest time seen, by wrapping subtraction, so it may run past
 * UINT64_MAX without harm.
 *
 * Debt is bounded by 2^62 units, which caps any wait at 2^62 / limit ns
 * (4.6 s at a limit of 10^9, 146 years at 1); with that bound every sum and
 * product below fits in 64 bits. A now_ns earlier than one already seen (two
 * threads that read the clock, then raced for the lock) counts as the latest
 * seen: no time passes, and waits are measured from it. That cannot make a
 * wait too short, since the real time of such a call is already at least the
 * latest time seen.
 */
#include <errno.h>

#include "ratchet/alloc.h"
#include "ratchet/error.h"
#include "ratchet/ratelimit.h"
#include "spin.h"

#define MAX_LIMIT     UINT64_C(1000000000)
#define MAX_PERIOD_NS (UINT64_C(86400) * UINT64_C(1000000000))
#define MAX_BURST     UINT64_C(1000000000)
/* A full burst is below FULL_BOUND units and debt at most MAX_DEBT, which
 * keeps the token bucket's signed sums below 2^63 and GCRA's below 2^64. */
#define FULL_BOUND (UINT64_C(1) << 62)
#define MAX_DEBT   (UINT64_C(1) << 62)

struct ratchet_ratelimit {
  ratchet__spin lock;
  ratchet_ratelimit_algorithm algorithm;
  /* Fixed at creation, read without the lock. */
  uint64_t limit;         /* units accrued per ns */
  uint64_t period_ns;     /* units per permit */
  uint64_t burst;         /* permits */
  uint64_t full;          /* burst * period_ns units */
  uint64_t horizon_ns;    /* MAX_DEBT / limit: the longest wait we grant */
  uint64_t full_after_ns; /* idle time that refills even the deepest debt */
  /* Guarded by the lock. */
  uint64_t last_ns; /* latest now_ns seen */
  int64_t credit;   /* token bucket: units in the bucket at last_ns */
  uint64_t tat_ns;  /* GCRA: TAT = tat_ns + tat_rem / limit, >= last_ns */
  uint64_t tat_rem; /* 0 .. limit - 1 */
};

static uint64_t ceil_div(uint64_t a, uint64_t b) {
  return a / b + (a % b != 0);
}

/* Sets *burst to the effective burst, or returns -EINVAL. */
static int check_options(const ratchet_ratelimit_options *o, uint64_t *burst) {
  if (o->algorithm != RATCHET_RATELIMIT_TOKEN_BUCKET &&
      o->algorithm != RATCHET_RATELIMIT_GCRA)
    return -EINVAL;
  if (o->limit < 1 || o->limit > MAX_LIMIT)
    return -EINVAL;
  if (o->period_ns < 1 || o->period_ns > MAX_PERIOD_NS)
    return -EINVAL;
  uint64_t b = o->burst != 0 ? o->burst : o->limit;
  if (b > MAX_BURST)
    return -EINVAL;
  /* b * period_ns < 2^62, tested by division so the test cannot overflow. */
  if (o->period_ns > (FULL_BOUND - 1) / b)
    return -EINVAL;
  *burst = b;
  return 0;
}

int ratchet_ratelimit_new(const ratchet_ratelimit_options *o, uint64_t now_ns,
                          ratchet_ratelimit **out) {
  uint64_t burst;
  if (o == NULL || out == NULL || check_options(o, &burst) != 0)
    return -EINVAL;
  ratchet_ratelimit *rl = ratchet_calloc(1, sizeof *rl);
  if (rl == NULL)
    return -ENOMEM;
  ratchet__spin_init(&rl->lock);
  rl->algorithm = o->algorithm;
  rl->limit = o->limit;
  rl->period_ns = o->period_ns;
  rl->burst = burst;
  rl->full = burst * o->period_ns;
  rl->horizon_ns = MAX_DEBT / o->limit;
  /* full + 2^62 + limit < 2^64: the rounding cannot overflow. */
  rl->full_after_ns = ceil_div(rl->full + MAX_DEBT, o->limit);
  rl->last_ns = now_ns;
  /* Both start full: a whole bucket, or a TAT that is not in the future. */
  rl->credit = (int64_t)rl->full;
  rl->tat_ns = now_ns;
  rl->tat_rem = 0;
  *out = rl;
  return 0;
}

void ratchet_ratelimit_free(ratchet_ratelimit *rl) {
  ratchet_free(rl);
}

/*
 * Token bucket: the credit at now (>= last_ns), refilled and capped at a full
 * burst. Idle periods past full_after_ns fill the bucket whatever its level;
 * shorter ones have elapsed * limit < full + 2^62 < 2^63, so neither the
 * product nor the sum can overflow.
 */
static int64_t tb_credit_at(const ratchet_ratelimit *rl, uint64_t now) {
  uint64_t elapsed = now - rl->last_ns;
  if (elapsed >= rl->full_after_ns)
    return (int64_t)rl->full;
  uint64_t gain = elapsed * rl->limit;
  uint64_t room = (uint64_t)((int64_t)rl->full - rl->credit);
  return gain >= room ? (int64_t)rl->full : rl->credit + (int64_t)gain;
}

static int tb_reserve(ratchet_ratelimit *rl, uint64_t n, uint64_t max_wait,
                      uint64_t now, uint64_t *wait) {
  int64_t credit = tb_credit_at(rl, now);
  int64_t cost = (int64_t)(n * rl->period_ns);
  /* Refilling is the same whatever we decide, so keep it either way. */
  rl->credit = credit;
  rl->last_ns = now;
  *wait = 0;
  if (credit < cost) {
    /* cost - credit <= 2^62 + 2^62 - 1: fits. */
    *wait = ceil_div((uint64_t)(cost - credit), rl->limit);
    if (*wait > max_wait || *wait > rl->horizon_ns)
      return RATCHET_ERATE_LIMITED;
  }
  /* A granted wait w leaves a debt of at most w * limit <= 2^62 units. */
  rl->credit = credit - cost;
  return 0;
}

/*
 * GCRA: how far TAT is ahead of now (>= last_ns), in units; 0 if it is not.
 * TAT - last_ns is below 2^63 / limit ns (the debt bound), so the wrapping
 * difference is exact and the product fits.
 */
static uint64_t gcra_ahead_at(const ratchet_ratelimit *rl, uint64_t now) {
  uint64_t tat_off = rl->tat_ns - rl->last_ns;
  uint64_t elapsed = now - rl->last_ns;
  if (tat_off < elapsed)
    return 0;
  return (tat_off - elapsed) * rl->limit + rl->tat_rem;
}

static int gcra_reserve(ratchet_ratelimit *rl, uint64_t n, uint64_t max_wait,
                        uint64_t now, uint64_t *wait) {
  uint64_t ahead = gcra_ahead_at(rl, now);
  uint64_t cost = n * rl->period_ns;
  /* TAT = max(TAT, now), whatever we decide: it keeps TAT >= last_ns. */
  if (ahead == 0) {
    rl->tat_ns = now;
    rl->tat_rem = 0;
  }
  rl->last_ns = now;
  *wait = 0;
  /* The new TAT may be at most a full burst ahead of now (tolerance
   * (burst - 1) * T plus this request's own interval); beyond that, the
   * excess is the wait. ahead + cost < 3 * 2^62. */
  if (ahead + cost > rl->full) {
    *wait = ceil_div(ahead + cost - rl->full, rl->limit);
    if (*wait > max_wait || *wait > rl->horizon_ns)
      return RATCHET_ERATE_LIMITED;
  }
  /* TAT += n * T, with T = period_ns / limit carried exactly. */
  uint64_t rem = rl->tat_rem + cost % rl->limit;
  uint64_t whole = cost / rl->limit;
  if (rem >= rl->limit) {
    rem -= rl->limit;
    whole++;
  }
  rl->tat_ns += whole;
  rl->tat_rem = rem;
  return 0;
}

/* Taking now is reserving with no wait allowed: it succeeds exactly when the
 * wait would be 0, and reports the same wait when it fails. So acquire and
 * reserve share this one path. */
static int take(ratchet_ratelimit *rl, uint64_t n, uint64_t max_wait_ns,
                uint64_t now_ns, uint64_t *wait_ns) {
  if (n == 0 || n > rl->burst)
    return -EINVAL;
  uint64_t wait;
  int err;
  ratchet__spin_lock(&rl->lock);
  if (now_ns < rl->last_ns)
    now_ns = rl->last_ns;
  if (rl->algorithm == RATCHET_RATELIMIT_GCRA)
    err = gcra_reserve(rl, n, max_wait_ns, now_ns, &wait);
  else
    err = tb_reserve(rl, n, max_wait_ns, now_ns, &wait);
  ratchet__spin_unlock(&rl->lock);
  if (wait_ns != NULL)
    *wait_ns = wait;
  return err;
}

int ratchet_ratelimit_acquire(ratchet_ratelimit *rl, uint64_t n,
                              uint64_t now_ns, uint64_t *wait_ns) {
  return take(rl, n, 0, now_ns, wait_ns);
}

int ratchet_ratelimit_reserve(ratchet_ratelimit *rl, uint64_t n,
                              uint64_t max_wait_ns, uint64_t now_ns,
                              uint64_t *wait_ns) {
  return take(rl, n, max_wait_ns, now_ns, wait_ns);
}

uint64_t ratchet_ratelimit_available(ratchet_ratelimit *rl, uint64_t now_ns) {
  int64_t credit;
  ratchet__spin_lock(&rl->lock);
  if (now_ns < rl->last_ns)
    now_ns = rl->last_ns;
  /* Looking does not move state, so `available` never changes a decision. */
  if (rl->algorithm == RATCHET_RATELIMIT_GCRA)
    credit = (int64_t)rl->full - (int64_t)gcra_ahead_at(rl, now_ns);
  else
    credit = tb_credit_at(rl, now_ns);
  ratchet__spin_unlock(&rl->lock);
  return credit > 0 ? (uint64_t)credit / rl->period_ns : 0;
}
