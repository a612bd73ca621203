/*
 * ratchet/budget.h - a retry budget.
 *
 * Retries multiply load exactly when a dependency is struggling. A budget
 * (as in Finagle and Envoy) lets retries be at most `ratio` of the calls
 * made over a sliding window, but always allows `min_retries` per window so
 * that a quiet caller can still retry. Each first call deposits, each retry
 * withdraws; a withdrawal that would exceed the budget is refused.
 *
 * The window is kept in buckets and stays correct when the clock jumps past
 * several buckets or stands still. Safe to share between threads (a short
 * spin lock); no allocation after ratchet_retry_budget_new.
 */
#ifndef RATCHET_BUDGET_H
#define RATCHET_BUDGET_H

#include <stdint.h>

#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ratchet_retry_budget ratchet_retry_budget;

/* Valid ranges (ratchet_retry_budget_new refuses others with -EINVAL):
 *   ratio        retries per call, 0.0 .. 1000.0        [0.2, Envoy's 20 %]
 *   min_retries  retries always allowed per window, 0 .. 1e9     [3, Envoy]
 *   window_ns    1 ms .. 1 day                          [10 s, Finagle]
 *   buckets      1 .. 1000 (the window's resolution)                 [10]
 */
typedef struct ratchet_retry_budget_options {
  double ratio;
  uint32_t min_retries;
  uint64_t window_ns;
  uint32_t buckets;
} ratchet_retry_budget_options;

#define RATCHET_RETRY_BUDGET_OPTIONS_INIT                                      \
  { 0.2, 3, UINT64_C(10000000000), 10 }

typedef struct ratchet_retry_budget_metrics {
  uint64_t calls;   /* deposits in the window */
  uint64_t retries; /* withdrawals in the window */
  /* the window's limit, max(min_retries, floor(ratio * calls)); retries may
   * exceed it for a while after old calls leave the window, so what is left
   * is allowed > retries ? allowed - retries : 0 */
  uint64_t allowed;
  uint64_t total_refused; /* withdrawals refused since creation */
} ratchet_retry_budget_metrics;

/* Creates an empty budget at now_ns. Returns 0 and sets *out; -EINVAL for
 * NULL pointers or an option out of range; -ENOMEM. On failure *out is left
 * as it was and nothing is allocated. */
RATCHET_API int ratchet_retry_budget_new(const ratchet_retry_budget_options *o,
                                         uint64_t now_ns,
                                         ratchet_retry_budget **out);

/* Frees b. NULL is a no-op. */
RATCHET_API void ratchet_retry_budget_free(ratchet_retry_budget *b);

/* Records a first call (not a retry) at now_ns. */
RATCHET_API void ratchet_retry_budget_deposit(ratchet_retry_budget *b,
                                              uint64_t now_ns);

/* Asks to make one retry at now_ns: 0 (counted) or RATCHET_EBUDGET when the
 * window's retries would exceed max(min_retries, ratio * calls). */
RATCHET_API int ratchet_retry_budget_withdraw(ratchet_retry_budget *b,
                                              uint64_t now_ns);

/* Snapshot at now_ns. */
RATCHET_API void
ratchet_retry_budget_metrics_get(ratchet_retry_budget *b, uint64_t now_ns,
                                 ratchet_retry_budget_metrics *m);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_BUDGET_H */
