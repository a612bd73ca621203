/*
 * ratchet/ratelimit.h - rate limiting: token bucket and GCRA.
 *
 * A limiter allows `limit` permits per `period_ns` on average, with bursts of
 * up to `burst` permits. Two algorithms with the same contract:
 *   TOKEN_BUCKET  a bucket of `burst` tokens refilled at limit/period;
 *   GCRA          the Generic Cell Rate Algorithm (a "theoretical arrival
 *                 time" moved forward by period/limit per permit, with a
 *                 tolerance of burst - 1 permits), one integer of state.
 * For the same options and calls they make the same decisions; GCRA's state
 * is smaller. All arithmetic is in integers, exact for fractional rates
 * (3 per second spaces permits 333,333,333.3 ns apart on average).
 *
 * Callers either take permits now or learn how long to wait:
 * ratchet_ratelimit_acquire never waits and never goes into debt;
 * ratchet_ratelimit_reserve takes the permits at once, for use after the
 * returned wait, if that wait is within a limit the caller gives.
 *
 * Time: a now_ns earlier than one already seen is taken as the latest time
 * seen (no time passes), so a clock read out of order can never shorten a
 * wait.
 *
 * Threads: safe to call from several threads at once (a short spin lock); no
 * allocation after ratchet_ratelimit_new.
 */
#ifndef RATCHET_RATELIMIT_H
#define RATCHET_RATELIMIT_H

#include <stdint.h>

#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ratchet_ratelimit ratchet_ratelimit;

typedef enum ratchet_ratelimit_algorithm {
  RATCHET_RATELIMIT_TOKEN_BUCKET = 0,
  RATCHET_RATELIMIT_GCRA = 1
} ratchet_ratelimit_algorithm;

/* Valid ranges (ratchet_ratelimit_new refuses others with -EINVAL):
 *   limit      permits per period, 1 .. 1,000,000,000                   [50]
 *   period_ns  1 ns .. 1 day                                  [500 ms]
 *   burst      1 .. 1,000,000,000, and burst * period_ns < 2^62;
 *              0 means "limit"                                          [0]
 * The defaults are resilience4j's (50 permits per 500 ms). */
typedef struct ratchet_ratelimit_options {
  ratchet_ratelimit_algorithm algorithm;
  uint64_t limit;
  uint64_t period_ns;
  uint64_t burst;
} ratchet_ratelimit_options;

#define RATCHET_RATELIMIT_OPTIONS_INIT                                         \
  { RATCHET_RATELIMIT_TOKEN_BUCKET, 50, UINT64_C(500000000), 0 }

/*
 * Creates a limiter that starts full (a whole burst available) at now_ns.
 * Returns 0 and sets *out; -EINVAL for NULL pointers or options out of
 * range; -ENOMEM. On failure *out is left as it was.
 */
RATCHET_API int ratchet_ratelimit_new(const ratchet_ratelimit_options *o,
                                      uint64_t now_ns, ratchet_ratelimit **out);

/* Frees rl. NULL is a no-op. */
RATCHET_API void ratchet_ratelimit_free(ratchet_ratelimit *rl);

/*
 * Takes n permits at now_ns if they are available. Returns 0 on success
 * (with *wait_ns set to 0).
 * Otherwise takes nothing and returns RATCHET_ERATE_LIMITED, with
 * *wait_ns (if wait_ns is not NULL) set to the time after which n permits
 * would be available if nobody else takes any. Returns -EINVAL when n is 0
 * or more than the burst (it could never succeed).
 */
RATCHET_API int ratchet_ratelimit_acquire(ratchet_ratelimit *rl, uint64_t n,
                                          uint64_t now_ns, uint64_t *wait_ns);

/*
 * Reserves n permits at now_ns for use after *wait_ns, if that wait is at
 * most max_wait_ns: returns 0, the permits are taken, and the caller must
 * wait *wait_ns (0 if they are available now) before using them. If the wait
 * would be longer, nothing is taken and it returns RATCHET_ERATE_LIMITED with
 * *wait_ns set to the wait needed. -EINVAL as for acquire.
 *
 * Debt is bounded so that every computation fits in 64 bits: a wait longer
 * than 2^62 / limit ns (77 minutes at a limit of 10^6 per period, 4.6 s at
 * 10^9) is refused even if max_wait_ns allows it.
 */
RATCHET_API int ratchet_ratelimit_reserve(ratchet_ratelimit *rl, uint64_t n,
                                          uint64_t max_wait_ns, uint64_t now_ns,
                                          uint64_t *wait_ns);

/* Returns the whole permits available at now_ns (0 while in debt). */
RATCHET_API uint64_t ratchet_ratelimit_available(ratchet_ratelimit *rl,
                                                 uint64_t now_ns);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_RATELIMIT_H */
