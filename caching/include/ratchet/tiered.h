/*
 * ratchet/tiered.h - the two-tier task result cache: memory in front of
 * the persistent store.
 *
 * get looks in memory (ratchet/cache.h), then in the store
 * (ratchet/store.h); a store hit is copied into memory (promotion) with the
 * rest of its TTL. put writes the store first (write-through: a put that
 * returns 0 is persisted), then memory. invalidate and clear act on both.
 *
 * Both tiers work on one clock, now_ms (milliseconds since the Unix epoch,
 * as the store needs for persisted times); the memory tier sees it as
 * now_ms * 10^6 ns, so an entry expires at the same instant in both.
 *
 * Keys are ratchet_cache_key; the memory tier stores them as their 16 bytes
 * (ratchet_cache_key_bytes). Values are copied in on put and on promotion;
 * get hands out a reference that ratchet_tiered_release gives back.
 *
 * Threads: every function may be called from several threads at once, as
 * the two tiers allow.
 */
#ifndef RATCHET_TIERED_H
#define RATCHET_TIERED_H

#include <stddef.h>
#include <stdint.h>

#include "ratchet/cache.h"
#include "ratchet/export.h"
#include "ratchet/key.h"
#include "ratchet/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ratchet_tiered ratchet_tiered;

/*
 * Options:
 *   memory  the memory tier's options (ratchet_cache_new's ranges); its
 *           destroy and destroy_ctx are ignored (the tier owns its copies)
 *   store   the persistent tier, required; borrowed: it must stay open
 *           until ratchet_tiered_free
 */
typedef struct ratchet_tiered_options {
  ratchet_cache_options memory;
  ratchet_store *store;
} ratchet_tiered_options;

#define RATCHET_TIERED_OPTIONS_INIT                                            \
  { .memory = RATCHET_CACHE_OPTIONS_INIT, .store = NULL }

/* Where a value came from. */
enum { RATCHET_TIERED_MEMORY = 1, RATCHET_TIERED_STORE = 2 };

/* A value handed out by ratchet_tiered_get: data and size are borrowed
 * until ratchet_tiered_release. The fields ending in _ are private. */
typedef struct ratchet_tiered_value {
  const void *data;
  size_t size;
  int tier;
  ratchet_cache_ref *ref_;
  void *owned_;
} ratchet_tiered_value;

/* Counters since creation, with each tier's own. */
typedef struct ratchet_tiered_stats {
  uint64_t memory_hits, store_hits, misses, promotions, puts;
  ratchet_cache_stats memory;
  ratchet_store_stats store;
} ratchet_tiered_stats;

/* Creates the cache (and its memory tier). 0 and *out; -EINVAL (no store,
 * bad memory options); -ENOMEM. */
RATCHET_API int ratchet_tiered_new(const ratchet_tiered_options *o,
                                   ratchet_tiered **out);

/* Frees the memory tier and the cache; the store stays open. No reference
 * may be outstanding. NULL is a no-op. */
RATCHET_API void ratchet_tiered_free(ratchet_tiered *t);

/*
 * Looks key up at now_ms: memory, then the store. Returns 0 and fills *v
 * (release it); RATCHET_ECACHE_MISS; RATCHET_ECACHE_CORRUPT (the store's
 * copy failed its checksum and was deleted: treat it as a miss, and log
 * ratchet_store_last_error()); -ENOMEM or another store error.
 */
RATCHET_API int ratchet_tiered_get(ratchet_tiered *t,
                                   const ratchet_cache_key *key,
                                   uint64_t now_ms, ratchet_tiered_value *v);

/* Gives a value back. */
RATCHET_API void ratchet_tiered_release(ratchet_tiered *t,
                                        ratchet_tiered_value *v);

/*
 * Stores value (copied) under key in the store, then in memory; po as for
 * ratchet_store_put (may be NULL). Returns 0 once the store has it (memory
 * declining it, e.g. too big for the memory tier, is not an error), or the
 * store's error: then the memory tier does not hold key either.
 */
RATCHET_API int ratchet_tiered_put(ratchet_tiered *t,
                                   const ratchet_cache_key *key,
                                   const void *value, size_t len,
                                   const ratchet_store_put_options *po,
                                   uint64_t now_ms);

/* Removes key from both tiers: 0 if either had it, else
 * RATCHET_ECACHE_MISS, or the store's error. */
RATCHET_API int ratchet_tiered_invalidate(ratchet_tiered *t,
                                          const ratchet_cache_key *key);

/* Empties both tiers: 0 or the store's error (memory is emptied anyway). */
RATCHET_API int ratchet_tiered_clear(ratchet_tiered *t);

/* Fills *s. */
RATCHET_API void ratchet_tiered_stats_get(ratchet_tiered *t,
                                          ratchet_tiered_stats *s);

/* The memory tier, for its own functions (invalidate by tag or prefix,
 * active expiry); borrowed. Its values are the tier's copies: never put
 * into it directly. */
RATCHET_API ratchet_cache *ratchet_tiered_memory(ratchet_tiered *t);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_TIERED_H */
