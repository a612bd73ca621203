/*
 * policy_model.h - a deliberately naive model of the four eviction policies,
 * written from the reference text of docs/caching.md alone, to check the
 * library's policies against; plus the synthetic traces the tests feed both.
 */
#ifndef RATCHET_CACHING_POLICY_MODEL_H
#define RATCHET_CACHING_POLICY_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "ratchet/cache.h"

typedef struct tm_model tm_model;

/* A model cache; max_entries 0 means no entry limit. NULL on ENOMEM. */
tm_model *tm_model_new(ratchet_cache_policy policy, uint64_t capacity,
                       uint64_t max_entries);
void tm_model_free(tm_model *m);
/* One request: 1 on a hit, 0 on a miss. Evicted ids are logged. */
int tm_model_access(tm_model *m, uint64_t id, uint64_t size);
/* The ids evicted so far, in order. */
const uint64_t *tm_model_evictions(const tm_model *m, size_t *n);
/* Bytes and objects cached now; bytes in the ghost queue. */
uint64_t tm_model_bytes(const tm_model *m);
uint64_t tm_model_objects(const tm_model *m);
uint64_t tm_model_ghost_bytes(const tm_model *m);

/* A request of a synthetic trace. */
typedef struct tm_req {
  uint64_t id;
  uint32_t size;
} tm_req;

/* xorshift64*, seeded. */
uint64_t tm_rand(uint64_t *state);

/* n requests drawn from Zipf(alpha) over `objects` ids (id k+1 has rank k),
 * each id with a fixed size in [min_size, max_size]. Free with free(). */
tm_req *tm_trace_zipf(size_t n, uint64_t objects, double alpha,
                      uint32_t min_size, uint32_t max_size, uint64_t seed);
/* `rounds` passes over ids first..first+objects-1, size `size`. */
tm_req *tm_trace_loop(uint64_t first, uint64_t objects, size_t rounds,
                      uint32_t size);
/* Zipf requests with a one-off scan of `scan` new ids inserted at the
 * middle. *n receives the total length. */
tm_req *tm_trace_zipf_scan(size_t zipf_n, uint64_t objects, double alpha,
                           uint64_t scan, uint32_t size, uint64_t seed,
                           size_t *n);

#endif
