/*
 * ratchet/backoff.h - delays between attempts.
 *
 * A backoff schedule (constant, linear, exponential, fibonacci or a custom
 * table) gives the base delay before retry n; a jitter mode (none, full,
 * equal, decorrelated, or +/- a fraction) spreads it. Everything here is a
 * pure function of the options, the retry number and a caller-supplied
 * random value, so a test can predict every delay. Delays are nanoseconds,
 * never overflow, and never exceed max_delay_ns: huge retry numbers clamp at
 * the cap.
 *
 * Retry numbering: retry 1 is the wait after the first failed call, retry 2
 * the wait after the second, and so on. max_attempts counts the first call
 * too (resilience4j's maxAttempts): max_attempts = 3 allows 2 retries.
 */
#ifndef RATCHET_BACKOFF_H
#define RATCHET_BACKOFF_H

#include <stddef.h>
#include <stdint.h>

#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RATCHET_NS_PER_MS UINT64_C(1000000)
#define RATCHET_NS_PER_S  UINT64_C(1000000000)

typedef enum ratchet_backoff_kind {
  RATCHET_BACKOFF_CONSTANT = 0,    /* initial, initial, initial, ... */
  RATCHET_BACKOFF_LINEAR = 1,      /* initial + increment * (n - 1) */
  RATCHET_BACKOFF_EXPONENTIAL = 2, /* initial * multiplier^(n - 1) */
  RATCHET_BACKOFF_FIBONACCI = 3,   /* initial * 1, 1, 2, 3, 5, 8, ... */
  RATCHET_BACKOFF_TABLE = 4        /* table[n - 1]; the last entry repeats */
} ratchet_backoff_kind;

typedef enum ratchet_jitter {
  RATCHET_JITTER_NONE = 0,  /* the base delay v itself */
  RATCHET_JITTER_FULL = 1,  /* uniform in [0, v] (AWS "full jitter") */
  RATCHET_JITTER_EQUAL = 2, /* v/2 + uniform in [0, v/2] (AWS "equal") */
  /* uniform in [initial, previous delay * 3], capped (AWS "decorrelated");
   * it ignores the schedule and depends only on the previous delay. */
  RATCHET_JITTER_DECORRELATED = 3,
  /* v * (1 + uniform in [-fraction, +fraction]) (gRPC's +/- 20 %) */
  RATCHET_JITTER_PROPORTIONAL = 4
} ratchet_jitter;

/* Backoff options. Valid ranges (ratchet_backoff_validate refuses others):
 *   initial_ns        1 ns .. max_delay_ns (a table ignores it, but for
 *                     DECORRELATED jitter it is the lower bound)
 *   max_delay_ns      >= initial_ns; the cap on every returned delay
 *   multiplier        EXPONENTIAL only: 1.0 .. 1000.0
 *   increment_ns      LINEAR only: any, 0 behaves as CONSTANT
 *   table_ns/len      TABLE only: 1 .. 4096 entries, not NULL; borrowed, must
 *                     outlive the options
 *   jitter_fraction   PROPORTIONAL only: 0.0 .. 1.0
 *   max_attempts      0 (no limit) or >= 1; counts the first call
 *   max_elapsed_ns    0 (no limit) or the longest time from the first call to
 *                     the start of the last retry
 */
typedef struct ratchet_backoff_options {
  ratchet_backoff_kind kind;
  ratchet_jitter jitter;
  uint64_t initial_ns;
  uint64_t max_delay_ns;
  double multiplier;
  uint64_t increment_ns;
  const uint64_t *table_ns;
  size_t table_len;
  double jitter_fraction;
  uint32_t max_attempts;
  uint64_t max_elapsed_ns;
} ratchet_backoff_options;

/* Default: exponential from 100 ms, x2, capped at 30 s, full jitter, at most
 * 3 attempts (the first call and 2 retries), no time limit. */
/* clang-format off */
#define RATCHET_BACKOFF_OPTIONS_INIT {                                          \
    .kind = RATCHET_BACKOFF_EXPONENTIAL,                                       \
    .jitter = RATCHET_JITTER_FULL,                                             \
    .initial_ns = 100 * RATCHET_NS_PER_MS,                                     \
    .max_delay_ns = 30 * RATCHET_NS_PER_S,                                     \
    .multiplier = 2.0,                                                         \
    .increment_ns = 0,                                                         \
    .table_ns = NULL,                                                          \
    .table_len = 0,                                                            \
    .jitter_fraction = 0.0,                                                    \
    .max_attempts = 3,                                                         \
    .max_elapsed_ns = 0}
/* clang-format on */

/* gRPC's connection backoff: 1 s, x1.6, +/- 20 %, capped at 120 s, no
 * attempt limit. */
/* clang-format off */
#define RATCHET_BACKOFF_GRPC_INIT {                                             \
    .kind = RATCHET_BACKOFF_EXPONENTIAL,                                       \
    .jitter = RATCHET_JITTER_PROPORTIONAL,                                     \
    .initial_ns = 1 * RATCHET_NS_PER_S,                                        \
    .max_delay_ns = 120 * RATCHET_NS_PER_S,                                    \
    .multiplier = 1.6,                                                         \
    .increment_ns = 0,                                                         \
    .table_ns = NULL,                                                          \
    .table_len = 0,                                                            \
    .jitter_fraction = 0.2,                                                    \
    .max_attempts = 0,                                                         \
    .max_elapsed_ns = 0}
/* clang-format on */

/* Returns 0 if every option is in its documented range, else -EINVAL. */
RATCHET_API int ratchet_backoff_validate(const ratchet_backoff_options *o);

/*
 * Returns the un-jittered delay before retry `retry` (1-based; 0 is treated
 * as 1), clamped to max_delay_ns. Pure; never overflows. The options must be
 * valid (see ratchet_backoff_validate).
 */
RATCHET_API uint64_t ratchet_backoff_base(const ratchet_backoff_options *o,
                                          uint32_t retry);

/*
 * Returns the delay before retry `retry` with the jitter applied, in
 * [0, max_delay_ns]. `prev_ns` is the delay returned for the previous retry
 * (0 before the first; only DECORRELATED jitter reads it) and `random` is 64
 * uniformly random bits (from ratchet_rng_next or the caller's generator).
 * Pure: the same arguments give the same delay. The options must be valid.
 */
RATCHET_API uint64_t ratchet_backoff_delay(const ratchet_backoff_options *o,
                                           uint32_t retry, uint64_t prev_ns,
                                           uint64_t random);

/* Progress of one operation through its retries. Transparent so it can live
 * anywhere (in a task, on the stack); set it up with ratchet_backoff_start. */
typedef struct ratchet_backoff_state {
  uint32_t attempts; /* calls started so far, the first included */
  uint64_t prev_ns;  /* the last delay returned, 0 before the first retry */
  uint64_t start_ns; /* when the first call started */
} ratchet_backoff_state;

/* Sets st up for an operation whose first call starts at now_ns
 * (attempts = 1). */
RATCHET_API void ratchet_backoff_start(ratchet_backoff_state *st,
                                       uint64_t now_ns);

/*
 * Called after a failed call at now_ns: decides whether to retry. On 0,
 * *delay_ns is the wait before the next call and st records that another
 * call is coming. Otherwise st is unchanged and the result says why not:
 * RATCHET_EATTEMPTS when max_attempts calls were made, RATCHET_EDEADLINE when
 * now_ns + delay would be more than max_elapsed_ns after the first call.
 * The options must be valid.
 */
RATCHET_API int ratchet_backoff_next(const ratchet_backoff_options *o,
                                     ratchet_backoff_state *st, uint64_t now_ns,
                                     uint64_t random, uint64_t *delay_ns);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_BACKOFF_H */
