/*
 * ratchet/accounting.h - what an orchestrator has done, as numbers: counters
 * per task kind, and per kind and final status a count and three latency
 * histograms (time spent queued, time running, end to end), read as one
 * consistent snapshot.
 *
 * Histograms have fixed buckets whose upper bounds are powers of two
 * microseconds, 1 us .. 2^31 us (about 36 minutes), plus one for anything
 * longer, so that snapshots can be added, compared and exported (Prometheus
 * "le" buckets) without rebinning. Quantiles are estimated by linear
 * interpolation inside a bucket: within a factor of two, exact at the
 * bounds.
 *
 * A snapshot is a copy: it stays valid and unchanged until
 * ratchet_stats_free, whatever the orchestrator does meanwhile, and it may be
 * taken from any thread (ratchet_orch_stats in ratchet/orch.h).
 */
#ifndef RATCHET_ACCOUNTING_H
#define RATCHET_ACCOUNTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ratchet/export.h"
#include "ratchet/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Finite buckets: bucket i counts values <= 2^i microseconds (and above the
 * previous bound); bucket RATCHET_HIST_FINITE counts the rest (+Inf). */
#define RATCHET_HIST_FINITE  32
#define RATCHET_HIST_BUCKETS (RATCHET_HIST_FINITE + 1)

typedef struct ratchet_histogram {
  uint64_t count;
  uint64_t sum_ns;
  uint64_t min_ns; /* 0 when count is 0 */
  uint64_t max_ns;
  uint64_t buckets[RATCHET_HIST_BUCKETS]; /* not cumulative */
} ratchet_histogram;

/* The upper bound of bucket i in nanoseconds (2^i * 1000); UINT64_MAX for
 * i >= RATCHET_HIST_FINITE. */
RATCHET_API uint64_t ratchet_histogram_bound_ns(unsigned i);

/* Adds one value. */
RATCHET_API void ratchet_histogram_record(ratchet_histogram *h,
                                          uint64_t value_ns);

/* Adds every value of src to dst. */
RATCHET_API void ratchet_histogram_merge(ratchet_histogram *dst,
                                         const ratchet_histogram *src);

/* The q-quantile (0 <= q <= 1) estimate in ns: 0 for an empty histogram;
 * never below min_ns or above max_ns. */
RATCHET_API uint64_t ratchet_histogram_quantile(const ratchet_histogram *h,
                                                double q);

/* Counters per kind. */
typedef enum ratchet_counter {
  RATCHET_COUNT_SUBMITTED = 0,    /* accepted by submit */
  RATCHET_COUNT_ATTEMPTS = 1,     /* attempts dispatched to a worker */
  RATCHET_COUNT_RETRIES = 2,      /* retries scheduled */
  RATCHET_COUNT_LOST = 3,         /* attempts lost with their worker */
  RATCHET_COUNT_CACHE_HITS = 4,   /* served from the result cache */
  RATCHET_COUNT_CACHE_MISSES = 5, /* looked up and not found */
  RATCHET_COUNT_COALESCED = 6,    /* joined an identical task */
  RATCHET_COUNT_DEFERRED = 7,     /* held back by a rate limit or breaker */
  RATCHET_COUNT_DEAD_LETTERS = 8  /* final failures sent to the dead letter */
} ratchet_counter;

#define RATCHET_COUNTER_COUNT 9

/* "submitted", "attempts", "retries", "lost", "cache_hits", "cache_misses",
 * "coalesced", "deferred", "dead_letters"; "unknown" otherwise. Static. */
RATCHET_API const char *ratchet_counter_name(ratchet_counter c);

/* The final outcomes of one kind with one status. queue_wait and run are
 * recorded only for tasks that reached a worker (run: the last attempt's
 * time on the worker; queue_wait: submit to the first dispatch). */
typedef struct ratchet_status_stats {
  uint64_t count;
  ratchet_histogram queue_wait;
  ratchet_histogram run;
  ratchet_histogram end_to_end;
} ratchet_status_stats;

typedef struct ratchet_kind_stats {
  const char *kind; /* owned by the snapshot */
  uint64_t counters[RATCHET_COUNTER_COUNT];
  ratchet_status_stats by_status[RATCHET_STATUS_COUNT];
} ratchet_kind_stats;

/* A snapshot: kinds in the order they were first seen, and the totals over
 * every kind. The gauges are the orchestrator's at the time of the
 * snapshot. */
typedef struct ratchet_stats {
  uint64_t taken_ns; /* the orchestrator's monotonic clock */
  uint64_t queued;   /* waiting for a worker */
  uint64_t delayed;  /* waiting for a time: delay, retry, rate limit */
  uint64_t in_flight;
  uint64_t workers_ready;
  size_t n_kinds;
  const ratchet_kind_stats *kinds;
  ratchet_kind_stats total; /* kind "" */
} ratchet_stats;

/* The statistics of kind in s, or NULL. */
RATCHET_API const ratchet_kind_stats *ratchet_stats_kind(const ratchet_stats *s,
                                                         const char *kind);

/* Frees a snapshot. NULL is a no-op. */
RATCHET_API void ratchet_stats_free(ratchet_stats *s);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_ACCOUNTING_H */
