/*
 * ratchet/breaker.h - a circuit breaker.
 *
 * A breaker watches the outcomes of calls to something that can fail and,
 * when too many fail or are too slow, stops calls for a while (OPEN), then
 * lets a few probes through (HALF_OPEN) and closes again if they succeed. It
 * follows resilience4j's model and defaults, with the fixes its users asked
 * for: a maximum wait in HALF_OPEN (so a breaker whose probes never report
 * cannot stay half-open forever) and an open duration that backs off on
 * repeated trips.
 *
 * States (ratchet_breaker_state):
 *   CLOSED       calls pass; outcomes go into the sliding window; the breaker
 *                trips to OPEN when, with at least minimum_calls in the
 *                window, the failure rate or the slow-call rate reaches its
 *                threshold (or, in CONSECUTIVE mode, after
 *                consecutive_failures failures in a row).
 *   OPEN         calls are refused until the open duration has passed; the
 *                first ratchet_breaker_allow after that moves to HALF_OPEN.
 *   HALF_OPEN    permitted_calls_in_half_open calls pass; when all of them
 *                have reported, the breaker closes if their failure and slow
 *                rates are under the thresholds (CONSECUTIVE mode: if none
 *                failed) and opens again otherwise, as soon as the outcome is
 *                certain. After max_wait_in_half_open_ns without a decision
 *                it opens again.
 *   DISABLED     calls always pass, nothing is recorded.
 *   FORCED_OPEN  calls are always refused.
 *   METRICS_ONLY calls always pass, outcomes are recorded and the metrics
 *                computed, but the state never changes by itself.
 * DISABLED, FORCED_OPEN and METRICS_ONLY are entered and left only through
 * ratchet_breaker_transition.
 *
 * Each trip from CLOSED or HALF_OPEN to OPEN lengthens the next open period:
 * open_duration_ns * open_backoff_multiplier^(trips - 1), capped at
 * max_open_duration_ns; closing resets the trip count.
 *
 * Outcomes are counted in the state the breaker is in when they are
 * recorded (as in resilience4j): a call permitted while CLOSED that reports
 * while HALF_OPEN counts as one of the half-open results. Outcomes reported
 * while OPEN, FORCED_OPEN or DISABLED are dropped.
 *
 * Time: every function that takes now_ns first applies the time-driven
 * changes due by then (dated now_ns), so "the current state" below is what
 * ratchet_breaker_state_at(b, now_ns) would return.
 *
 * Threads: every function may be called from any thread at once. State is
 * guarded by a short spin lock; nothing allocates after ratchet_breaker_new.
 * The listener is called after the lock is released, from the thread whose
 * call caused the change; listeners may run concurrently with each other.
 */
#ifndef RATCHET_BREAKER_H
#define RATCHET_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ratchet_breaker ratchet_breaker;

typedef enum ratchet_breaker_state {
  RATCHET_BREAKER_CLOSED = 0,
  RATCHET_BREAKER_OPEN = 1,
  RATCHET_BREAKER_HALF_OPEN = 2,
  RATCHET_BREAKER_DISABLED = 3,
  RATCHET_BREAKER_FORCED_OPEN = 4,
  RATCHET_BREAKER_METRICS_ONLY = 5
} ratchet_breaker_state;

#define RATCHET_BREAKER_STATE_COUNT 6

typedef enum ratchet_breaker_window {
  /* the last window_size calls */
  RATCHET_BREAKER_WINDOW_COUNT = 0,
  /* the calls of the last window_size buckets of bucket_ns each */
  RATCHET_BREAKER_WINDOW_TIME = 1,
  /* no window: trips after consecutive_failures failures in a row */
  RATCHET_BREAKER_WINDOW_CONSECUTIVE = 2
} ratchet_breaker_window;

typedef enum ratchet_breaker_outcome {
  RATCHET_BREAKER_SUCCESS = 0,
  RATCHET_BREAKER_FAILURE = 1,
  /* the call neither succeeded nor failed for the breaker's purposes (it was
   * cancelled, or its error is not the callee's fault): in HALF_OPEN its
   * permit is given back, elsewhere nothing is recorded */
  RATCHET_BREAKER_IGNORED = 2
} ratchet_breaker_outcome;

/* Called after each state change, outside the breaker's lock. It may call
 * back into the breaker. */
typedef void (*ratchet_breaker_listener)(void *ctx, ratchet_breaker *b,
                                         ratchet_breaker_state from,
                                         ratchet_breaker_state to,
                                         uint64_t now_ns);

/* Breaker options. Defaults are resilience4j's except where noted; valid
 * ranges (ratchet_breaker_new refuses others with -EINVAL):
 *   window                COUNT, TIME or CONSECUTIVE                 [COUNT]
 *   window_size           COUNT: 1 .. 1,000,000 calls; TIME: 1 .. 3,600
 *                         buckets; unused by CONSECUTIVE               [100]
 *   bucket_ns             TIME: 1 ms .. 1 h                            [1 s]
 *   minimum_calls         1 .. window_size for COUNT, >= 1 for TIME    [100]
 *   failure_rate_threshold  percent, (0, 100]                          [50]
 *   slow_call_rate_threshold percent, (0, 100]                        [100]
 *   slow_call_duration_ns >= 1; a call this long or longer is slow    [60 s]
 *   consecutive_failures  CONSECUTIVE: 1 .. 1,000,000                    [5]
 *   open_duration_ns      1 ms .. max_open_duration_ns                [60 s]
 *   open_backoff_multiplier 1.0 (no back-off) .. 100.0                 [1.0]
 *   max_open_duration_ns  >= open_duration_ns                   [10 min]
 *   permitted_calls_in_half_open 1 .. 100,000                           [10]
 *   max_wait_in_half_open_ns 0 (wait forever, resilience4j's default) or
 *                         >= 1 ms. Our default is 60 s, so that lost probes
 *                         cannot leave the breaker half-open forever.  [60 s]
 *   listener, listener_ctx  optional, borrowed for the breaker's life [NULL]
 */
typedef struct ratchet_breaker_options {
  ratchet_breaker_window window;
  uint32_t window_size;
  uint64_t bucket_ns;
  uint32_t minimum_calls;
  double failure_rate_threshold;
  double slow_call_rate_threshold;
  uint64_t slow_call_duration_ns;
  uint32_t consecutive_failures;
  uint64_t open_duration_ns;
  double open_backoff_multiplier;
  uint64_t max_open_duration_ns;
  uint32_t permitted_calls_in_half_open;
  uint64_t max_wait_in_half_open_ns;
  ratchet_breaker_listener listener;
  void *listener_ctx;
} ratchet_breaker_options;

/* clang-format off */
#define RATCHET_BREAKER_OPTIONS_INIT {                                          \
    .window = RATCHET_BREAKER_WINDOW_COUNT,                                    \
    .window_size = 100,                                                        \
    .bucket_ns = UINT64_C(1000000000),            /* 1 s */                    \
    .minimum_calls = 100,                                                      \
    .failure_rate_threshold = 50.0,                                            \
    .slow_call_rate_threshold = 100.0,                                         \
    .slow_call_duration_ns = UINT64_C(60000000000), /* 60 s */                 \
    .consecutive_failures = 5,                                                 \
    .open_duration_ns = UINT64_C(60000000000),      /* 60 s */                 \
    .open_backoff_multiplier = 1.0,                                            \
    .max_open_duration_ns = UINT64_C(600000000000), /* 10 min */               \
    .permitted_calls_in_half_open = 10,                                        \
    .max_wait_in_half_open_ns = UINT64_C(60000000000), /* 60 s */              \
    .listener = NULL,                                                          \
    .listener_ctx = NULL}
/* clang-format on */

/* A consistent snapshot of a breaker. Rates are percentages, or -1.0 while
 * the window holds fewer than minimum_calls calls. The counts are those of
 * the sliding window in CLOSED and METRICS_ONLY, of the probes so far in
 * HALF_OPEN (rates -1: the verdict is given as soon as it is certain), and
 * in OPEN, FORCED_OPEN and DISABLED those the window held when the breaker
 * left it (the calls that tripped it), as resilience4j shows them. The
 * CONSECUTIVE mode has no window: calls are 0 outside HALF_OPEN. */
typedef struct ratchet_breaker_metrics {
  ratchet_breaker_state state;
  uint32_t calls;        /* calls in the window (or half-open results) */
  uint32_t failed_calls; /* of which failed */
  uint32_t slow_calls;   /* of which slow (failed or not) */
  double failure_rate;   /* failed_calls / calls * 100, or -1 */
  double slow_call_rate; /* slow_calls / calls * 100, or -1 */
  uint32_t consecutive_failures; /* current run of failures */
  uint32_t half_open_permits_left;
  uint32_t trips;               /* trips since the breaker last closed */
  uint64_t open_until_ns;       /* OPEN: when probes may start, else 0 */
  uint64_t total_successes;     /* since creation, all states */
  uint64_t total_failures;      /* since creation, all states */
  uint64_t total_not_permitted; /* calls refused since creation */
  uint64_t total_transitions;   /* state changes since creation */
} ratchet_breaker_metrics;

/*
 * Creates a breaker in state CLOSED at time now_ns. The options are copied
 * (the listener context is borrowed). Returns 0 and sets *out; -EINVAL if an
 * option is out of range (nothing allocated); -ENOMEM.
 */
RATCHET_API int ratchet_breaker_new(const ratchet_breaker_options *o,
                                    uint64_t now_ns, ratchet_breaker **out);

/* Frees b. NULL is a no-op. No call may be in progress on b. */
RATCHET_API void ratchet_breaker_free(ratchet_breaker *b);

/*
 * Asks to make a call at now_ns. Returns 0 if the call may go ahead (the
 * caller must then report it with ratchet_breaker_record), or
 * RATCHET_EBREAKER_OPEN if it is refused (do not report it). Moves OPEN to
 * HALF_OPEN when the open duration has passed, and HALF_OPEN back to OPEN
 * when max_wait_in_half_open_ns has passed. Never allocates.
 */
RATCHET_API int ratchet_breaker_allow(ratchet_breaker *b, uint64_t now_ns);

/*
 * Reports the outcome of a permitted call that took duration_ns and ended at
 * now_ns. May change the state (and call the listener). Never allocates.
 */
RATCHET_API void ratchet_breaker_record(ratchet_breaker *b,
                                        ratchet_breaker_outcome outcome,
                                        uint64_t duration_ns, uint64_t now_ns);

/*
 * Returns the state at now_ns, applying any time-driven change first (OPEN
 * to HALF_OPEN after the open duration; HALF_OPEN to OPEN after the maximum
 * wait).
 */
RATCHET_API ratchet_breaker_state ratchet_breaker_state_at(ratchet_breaker *b,
                                                           uint64_t now_ns);

/*
 * Moves b to state `to` by hand at now_ns. CLOSED clears the window and the
 * trip count; OPEN starts an open period (counting as a trip); HALF_OPEN
 * hands out fresh permits; DISABLED, FORCED_OPEN and METRICS_ONLY hold until
 * the next manual transition (METRICS_ONLY and CLOSED start with an empty
 * window). Moving to the current state is a no-op. Returns 0, or -EINVAL for
 * an unknown state.
 */
RATCHET_API int ratchet_breaker_transition(ratchet_breaker *b,
                                           ratchet_breaker_state to,
                                           uint64_t now_ns);

/* Resets b to CLOSED with an empty window and zero trips, as if new, but
 * keeps the since-creation totals. Calls the listener if the state changed.
 */
RATCHET_API void ratchet_breaker_reset(ratchet_breaker *b, uint64_t now_ns);

/* Fills *m with a snapshot taken at now_ns (time-driven changes applied, and
 * a TIME window rolled forward first). */
RATCHET_API void ratchet_breaker_metrics_get(ratchet_breaker *b,
                                             uint64_t now_ns,
                                             ratchet_breaker_metrics *m);

/* "CLOSED", "OPEN", "HALF_OPEN", "DISABLED", "FORCED_OPEN", "METRICS_ONLY",
 * or "UNKNOWN". Static string. */
RATCHET_API const char *ratchet_breaker_state_name(ratchet_breaker_state s);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_BREAKER_H */
