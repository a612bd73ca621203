/*
 * ratchet/cache_policy.h - the memory tier's eviction policies on their own,
 * for simulation.
 *
 * A ratchet_cache_sim is a cache of (id, size) objects without values, run by
 * the same policy code as ratchet_cache (S3-FIFO, SIEVE, LRU, FIFO, with the
 * reference semantics of docs/caching.md). Each access is one request of a
 * trace: a hit updates the policy's state; a miss admits the object if the
 * policy allows it, evicting objects one at a time until it fits.
 * ratchet-cachesim is a thin command-line driver of this interface.
 *
 * Threads: a simulator is not shared; one thread at a time per object.
 */
#ifndef RATCHET_CACHE_POLICY_H
#define RATCHET_CACHE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "ratchet/cache.h"
#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ratchet_cache_sim ratchet_cache_sim;

/* Called once per evicted object, in eviction order (not for objects that
 * are refused admission). It must not call back into the simulator. */
typedef void (*ratchet_cache_sim_evict_fn)(void *ctx, uint64_t id,
                                           uint64_t size);

/* Options. Valid ranges (ratchet_cache_sim_new refuses others with -EINVAL):
 *   policy          one of the four                               [S3FIFO]
 *   capacity_bytes  >= 1                                           [64 MiB]
 *   max_entries     0 (no limit) or a limit on cached objects          [0]
 *   on_evict, on_evict_ctx  optional eviction callback              [NULL]
 */
typedef struct ratchet_cache_sim_options {
  ratchet_cache_policy policy;
  uint64_t capacity_bytes;
  uint64_t max_entries;
  ratchet_cache_sim_evict_fn on_evict;
  void *on_evict_ctx;
} ratchet_cache_sim_options;

/* clang-format off */
#define RATCHET_CACHE_SIM_OPTIONS_INIT {                                        \
    .policy = RATCHET_CACHE_S3FIFO,                                            \
    .capacity_bytes = UINT64_C(64) << 20,                                      \
    .max_entries = 0,                                                          \
    .on_evict = NULL,                                                          \
    .on_evict_ctx = NULL}
/* clang-format on */

/* Counters since creation; bytes, objects and the ghost's: now. A refused
 * request is a miss that admitted nothing (too big for the policy). */
typedef struct ratchet_cache_sim_stats {
  uint64_t requests, hits, misses, refused, evictions;
  uint64_t bytes, objects;
  uint64_t ghost_bytes, ghost_objects; /* S3-FIFO's ghost queue */
} ratchet_cache_sim_stats;

/* Creates an empty simulator. 0 and *out; -EINVAL; -ENOMEM (*out
 * unchanged). */
RATCHET_API int ratchet_cache_sim_new(const ratchet_cache_sim_options *o,
                                      ratchet_cache_sim **out);

/* Frees the simulator. NULL is a no-op. */
RATCHET_API void ratchet_cache_sim_free(ratchet_cache_sim *s);

/*
 * One request for object id of size bytes: 1 on a hit, 0 on a miss (the
 * object is then cached if the policy admits it). A hit keeps the size the
 * object was admitted with. -ENOMEM if the simulator could not grow: the
 * request counts as a miss, the object is not cached, and objects may have
 * been evicted for it, so the simulation is no longer exact.
 */
RATCHET_API int ratchet_cache_sim_access(ratchet_cache_sim *s, uint64_t id,
                                         uint64_t size);

/* Fills *st with the counters. */
RATCHET_API void ratchet_cache_sim_stats_get(const ratchet_cache_sim *s,
                                             ratchet_cache_sim_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_CACHE_POLICY_H */
