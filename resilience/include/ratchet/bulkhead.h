/*
 * ratchet/bulkhead.h - a bulkhead: at most N concurrent holders.
 *
 * A bulkhead caps how many callers may be inside a section at once, so that
 * one slow dependency cannot take every thread or worker. Acquisition never
 * blocks: callers that find it full are refused and can queue, shed or retry
 * as they see fit. Lock-free: the maximum and the count share one 64-bit
 * atomic word, so one compare-and-swap checks a place against the maximum in
 * force at that instant, even while it is resized. A successful acquire
 * synchronises with the release that freed its place, as a semaphore does.
 * Safe from any thread; no allocation after ratchet_bulkhead_new.
 */
#ifndef RATCHET_BULKHEAD_H
#define RATCHET_BULKHEAD_H

#include <stdint.h>

#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ratchet_bulkhead ratchet_bulkhead;

/* max_concurrent: 1 .. 1,000,000 [25, resilience4j's default]. */
typedef struct ratchet_bulkhead_options {
  uint32_t max_concurrent;
} ratchet_bulkhead_options;

#define RATCHET_BULKHEAD_OPTIONS_INIT                                          \
  { 25 }

typedef struct ratchet_bulkhead_metrics {
  uint32_t max_concurrent;
  uint32_t in_use;
  uint32_t peak; /* highest in_use seen */
  uint64_t total_acquired;
  uint64_t total_rejected;
} ratchet_bulkhead_metrics;

/* Creates an empty bulkhead. 0 and *out set; -EINVAL; -ENOMEM. */
RATCHET_API int ratchet_bulkhead_new(const ratchet_bulkhead_options *o,
                                     ratchet_bulkhead **out);

/* Frees bh. NULL is a no-op. */
RATCHET_API void ratchet_bulkhead_free(ratchet_bulkhead *bh);

/* Takes a place if one is free: 0, or RATCHET_EBULKHEAD_FULL. */
RATCHET_API int ratchet_bulkhead_try_acquire(ratchet_bulkhead *bh);

/* Gives back a place taken by a successful try_acquire. Releasing more than
 * was acquired is a bug; it is ignored (the count never goes below 0). */
RATCHET_API void ratchet_bulkhead_release(ratchet_bulkhead *bh);

/*
 * Changes the maximum to max_concurrent (1 .. 1,000,000). Holders above a
 * lowered maximum keep their places; new ones are refused until in_use falls
 * below it. Returns 0 or -EINVAL.
 */
RATCHET_API int ratchet_bulkhead_resize(ratchet_bulkhead *bh,
                                        uint32_t max_concurrent);

/* Snapshot of the counters (each read atomically, not all together). */
RATCHET_API void ratchet_bulkhead_metrics_get(ratchet_bulkhead *bh,
                                              ratchet_bulkhead_metrics *m);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_BULKHEAD_H */
