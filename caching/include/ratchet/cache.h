/*
 * ratchet/cache.h - the memory tier of the task result cache.
 *
 * A hash table of byte-string keys to caller-supplied values, bounded by
 * bytes (and optionally by entries), with one of four eviction policies:
 * S3-FIFO (the default: small FIFO, main FIFO, ghost FIFO; fewer misses than
 * LRU on most traces), SIEVE, LRU and FIFO, all following the reference
 * semantics documented in docs/caching.md and shared with ratchet-cachesim.
 *
 * Values are references. The cache owns a value from a successful put until
 * it is evicted, expired, invalidated or replaced AND no reader still holds
 * it; only then does it call the destroy callback. ratchet_cache_get hands
 * out a counted reference that the caller gives back with
 * ratchet_cache_release.
 *
 * Entries may carry a TTL: an expired entry is never returned (lazy expiry)
 * and ratchet_cache_expire removes expired entries in bounded steps (active
 * expiry). Entries may carry tags; invalidation works by key, by key prefix
 * (keys are bytes, so "kind/..." style keys group naturally) or by tag.
 *
 * Threads: every function may be called from several threads at once. For
 * S3-FIFO and SIEVE a hit does not serialise on one global lock (it updates
 * the entry's counter or visited bit atomically under a shared lookup path);
 * LRU must reorder its list on a hit and so takes the policy lock.
 */
#ifndef RATCHET_CACHE_H
#define RATCHET_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ratchet_cache ratchet_cache;
/* A reference to a cached value, valid until ratchet_cache_release. */
typedef struct ratchet_cache_ref ratchet_cache_ref;

typedef enum ratchet_cache_policy {
  RATCHET_CACHE_S3FIFO = 0,
  RATCHET_CACHE_SIEVE = 1,
  RATCHET_CACHE_LRU = 2,
  RATCHET_CACHE_FIFO = 3
} ratchet_cache_policy;

/* Called once per value the cache owned, when it is no longer cached and no
 * longer referenced; may run on any thread that calls into the cache. */
typedef void (*ratchet_cache_destroy_fn)(void *ctx, void *value, size_t size);

/* Options. Valid ranges (ratchet_cache_new refuses others with -EINVAL):
 *   policy          one of the four                               [S3FIFO]
 *   capacity_bytes  >= 1; the sum of the sizes given to put        [64 MiB]
 *   max_entries     0 (no limit) or >= 1                               [0]
 *   default_ttl_ns  0 (no expiry) or the TTL of puts that give none    [0]
 *   destroy, destroy_ctx  optional; NULL means values are not freed [NULL]
 */
typedef struct ratchet_cache_options {
  ratchet_cache_policy policy;
  uint64_t capacity_bytes;
  uint64_t max_entries;
  uint64_t default_ttl_ns;
  ratchet_cache_destroy_fn destroy;
  void *destroy_ctx;
} ratchet_cache_options;

/* clang-format off */
#define RATCHET_CACHE_OPTIONS_INIT {                                            \
    .policy = RATCHET_CACHE_S3FIFO,                                            \
    .capacity_bytes = UINT64_C(64) << 20,                                      \
    .max_entries = 0,                                                          \
    .default_ttl_ns = 0,                                                       \
    .destroy = NULL,                                                           \
    .destroy_ctx = NULL}
/* clang-format on */

/* Per-put options: a TTL (0: the cache's default) and up to 8 tags (each a
 * NUL-terminated string of 1 .. 255 bytes, copied). */
typedef struct ratchet_cache_put_options {
  uint64_t ttl_ns;
  const char *const *tags;
  size_t ntags;
} ratchet_cache_put_options;

#define RATCHET_CACHE_PUT_OPTIONS_INIT                                         \
  { 0, NULL, 0 }

/* A snapshot of the counters since creation (bytes and entries: now). */
typedef struct ratchet_cache_stats {
  uint64_t hits, misses, insertions, evictions, expirations, invalidations;
  uint64_t bytes, entries;
} ratchet_cache_stats;

/* Creates an empty cache. 0 and *out; -EINVAL; -ENOMEM (*out unchanged). */
RATCHET_API int ratchet_cache_new(const ratchet_cache_options *o,
                                  ratchet_cache **out);

/* Frees the cache, destroying every value it owns. No reference may be
 * outstanding and no call in progress. NULL is a no-op. */
RATCHET_API void ratchet_cache_free(ratchet_cache *c);

/*
 * Looks key up at now_ns. On a hit returns 0 and sets *ref (release it with
 * ratchet_cache_release); on a miss (absent or expired) returns
 * RATCHET_ECACHE_MISS. A hit changes only the policy's own state.
 */
RATCHET_API int ratchet_cache_get(ratchet_cache *c, const void *key,
                                  size_t key_len, uint64_t now_ns,
                                  ratchet_cache_ref **ref);

/* The value and size of a reference (borrowed until release). */
RATCHET_API void *ratchet_cache_ref_value(const ratchet_cache_ref *ref);
RATCHET_API size_t ratchet_cache_ref_size(const ratchet_cache_ref *ref);

/* Gives a reference back; may destroy the value if it left the cache. */
RATCHET_API void ratchet_cache_release(ratchet_cache *c,
                                       ratchet_cache_ref *ref);

/*
 * Stores value (size bytes, as the policy counts it) under key (copied),
 * replacing any entry with that key, at now_ns. po may be NULL. On 0 the
 * cache owns value. The policy may decline to admit it: then the result is
 * RATCHET_ECACHE_TOO_BIG (larger than the capacity, or S3-FIFO's rule for
 * objects larger than its small queue) and the caller still owns value.
 * -EINVAL for bad tags, -ENOMEM (caller still owns value). A refused put
 * changes nothing: an existing entry under key stays as it was.
 */
RATCHET_API int ratchet_cache_put(ratchet_cache *c, const void *key,
                                  size_t key_len, void *value, size_t size,
                                  const ratchet_cache_put_options *po,
                                  uint64_t now_ns);

/* Removes key: 0, or RATCHET_ECACHE_MISS if absent. */
RATCHET_API int ratchet_cache_invalidate(ratchet_cache *c, const void *key,
                                         size_t key_len);

/* Removes every key starting with prefix (len 0: all); returns how many. */
RATCHET_API uint64_t ratchet_cache_invalidate_prefix(ratchet_cache *c,
                                                     const void *prefix,
                                                     size_t len);

/* Removes every entry carrying tag; returns how many. */
RATCHET_API uint64_t ratchet_cache_invalidate_tag(ratchet_cache *c,
                                                  const char *tag);

/* Removes everything. */
RATCHET_API void ratchet_cache_clear(ratchet_cache *c);

/* Active expiry: removes up to max_entries expired entries (0: all) at
 * now_ns; returns how many. Call it from a timer. */
RATCHET_API uint64_t ratchet_cache_expire(ratchet_cache *c, uint64_t now_ns,
                                          uint64_t max_entries);

/* Fills *s with the counters. */
RATCHET_API void ratchet_cache_stats_get(ratchet_cache *c,
                                         ratchet_cache_stats *s);

/* "s3fifo", "sieve", "lru", "fifo", or NULL for an unknown value. */
RATCHET_API const char *ratchet_cache_policy_name(ratchet_cache_policy p);

/* Parses one of those names: 0 and *out, or -EINVAL. */
RATCHET_API int ratchet_cache_policy_parse(const char *name,
                                           ratchet_cache_policy *out);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_CACHE_H */
