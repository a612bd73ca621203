/*
 * ratchet/retry.h - retry policy: which failures to retry, when, and when to
 * stop.
 *
 * A policy combines a backoff schedule (ratchet/backoff.h), a classifier
 * that tells retryable errors from others, an optional server-supplied delay
 * ("Retry-After"), an optional overall deadline and an optional shared retry
 * budget (ratchet/budget.h). It serves two kinds of callers:
 *
 *   - event-loop code asks ratchet_retry_next() after each failure and gets
 *     either a delay or the reason to give up, then arms its own timer;
 *   - blocking code calls ratchet_retry_run() with a callback and lets it
 *     loop, sleeping through an injectable clock.
 *
 * Errors are ints in ratchet's convention (negative errno or RATCHET_E*);
 * 0 means success.
 */
#ifndef RATCHET_RETRY_H
#define RATCHET_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ratchet/backoff.h"
#include "ratchet/budget.h"
#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Returns true if err (never 0) is worth retrying. */
typedef bool (*ratchet_retry_classifier)(void *ctx, int err);

/*
 * Retry options. An error is retried when it is not in abort_on, and then:
 * the classifier says so if one is set; otherwise it is in retry_on if
 * retry_on_len > 0; otherwise every error is retried.
 *   backoff             schedule, jitter, max attempts, max elapsed time
 *   retry_on/abort_on   borrowed arrays of error codes, at most 1024 each
 *   classify, classify_ctx  optional predicate, borrowed
 *   max_retry_after_ns  cap on a server-supplied delay; 0 means the
 *                       backoff's max_delay_ns
 *   budget              optional shared budget, borrowed; it must outlive
 *                       every operation using these options
 */
typedef struct ratchet_retry_options {
  ratchet_backoff_options backoff;
  const int *retry_on;
  size_t retry_on_len;
  const int *abort_on;
  size_t abort_on_len;
  ratchet_retry_classifier classify;
  void *classify_ctx;
  uint64_t max_retry_after_ns;
  ratchet_retry_budget *budget;
} ratchet_retry_options;

/* clang-format off */
#define RATCHET_RETRY_OPTIONS_INIT {                                            \
    .backoff = RATCHET_BACKOFF_OPTIONS_INIT,                                   \
    .retry_on = NULL,                                                          \
    .retry_on_len = 0,                                                         \
    .abort_on = NULL,                                                          \
    .abort_on_len = 0,                                                         \
    .classify = NULL,                                                          \
    .classify_ctx = NULL,                                                      \
    .max_retry_after_ns = 0,                                                   \
    .budget = NULL}
/* clang-format on */

/* Returns 0 if the options are valid (backoff included), else -EINVAL. */
RATCHET_API int ratchet_retry_validate(const ratchet_retry_options *o);

/* Returns true if the policy would retry err (ignoring attempts, time and
 * budget). err == 0 is never retried. */
RATCHET_API bool ratchet_retry_is_retryable(const ratchet_retry_options *o,
                                            int err);

/* One operation's progress; transparent, set up with ratchet_retry_start. */
typedef struct ratchet_retry_state {
  ratchet_backoff_state backoff;
  uint64_t deadline_ns; /* absolute; 0 = none */
} ratchet_retry_state;

/*
 * Starts an operation whose first call begins at now_ns and must be over by
 * deadline_ns (absolute, 0 for none). Deposits one call in the budget.
 */
RATCHET_API void ratchet_retry_start(const ratchet_retry_options *o,
                                     ratchet_retry_state *st, uint64_t now_ns,
                                     uint64_t deadline_ns);

/*
 * After a call failed with err at now_ns, decides what to do next.
 * retry_after_ns is the delay the server asked for (0 if none); it replaces
 * the backoff delay when longer, capped by max_retry_after_ns.
 *
 * Returns 0 with *delay_ns set: retry after that delay (st records it, and a
 * retry is withdrawn from the budget). Otherwise st is unchanged and the
 * result says why to give up, checked in this order:
 *   -EINVAL                err is 0 (a success is not retried)
 *   RATCHET_ENOT_RETRYABLE the classifier refuses err
 *   RATCHET_EATTEMPTS      backoff.max_attempts calls were made
 *   RATCHET_EDEADLINE      the retry would start after the deadline or after
 *                          backoff.max_elapsed_ns
 *   RATCHET_EBUDGET        the retry budget is spent
 * `random` is 64 random bits for the jitter. Never allocates.
 */
RATCHET_API int ratchet_retry_next(const ratchet_retry_options *o,
                                   ratchet_retry_state *st, int err,
                                   uint64_t retry_after_ns, uint64_t now_ns,
                                   uint64_t random, uint64_t *delay_ns);

/*
 * The operation for ratchet_retry_run: make one call (attempt counts from 1)
 * and return 0 on success or an error. It may set *retry_after_ns to a delay
 * the server asked for (it starts at 0).
 */
typedef int (*ratchet_retry_fn)(void *ctx, uint32_t attempt,
                                uint64_t *retry_after_ns);

/* Where ratchet_retry_run gets time and randomness. Any member may be NULL
 * for the default: ratchet_now_ns, ratchet_sleep_ns, a ratchet_rng seeded
 * from the clock. on_retry, if set, is told of each retry before the sleep.
 */
typedef struct ratchet_retry_env {
  uint64_t (*now_ns)(void *ctx);
  void (*sleep_ns)(void *ctx, uint64_t ns);
  uint64_t (*random)(void *ctx);
  void (*on_retry)(void *ctx, uint32_t attempt, int err, uint64_t delay_ns);
  void *ctx;
} ratchet_retry_env;

/* What ratchet_retry_run did. */
typedef struct ratchet_retry_report {
  uint32_t attempts;       /* calls made */
  int last_error;          /* the last call's result (0 on success) */
  int reason;              /* 0 on success, else why it gave up (as
                              ratchet_retry_next) */
  uint64_t elapsed_ns;     /* from the first call to the end */
  uint64_t total_delay_ns; /* time spent sleeping */
} ratchet_retry_report;

/*
 * Calls fn until it succeeds or the policy gives up, sleeping between
 * attempts. timeout_ns (0 = none) bounds the whole operation from its start.
 * Returns 0 if a call succeeded, else the last call's error; the report (if
 * not NULL) says how many calls were made and why it stopped. Returns
 * -EINVAL without calling fn if the options are invalid or fn is NULL.
 * Thread-safe if fn and env are.
 */
RATCHET_API int ratchet_retry_run(const ratchet_retry_options *o,
                                  ratchet_retry_fn fn, void *fn_ctx,
                                  uint64_t timeout_ns,
                                  const ratchet_retry_env *env,
                                  ratchet_retry_report *report);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_RETRY_H */
