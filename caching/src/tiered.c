/*
 * tiered.c - the memory tier (ratchet_cache) in front of the LMDB store.
 *
 * Both tiers are thread-safe, so this layer adds no lock: only counters.
 * The memory tier holds its own copy of every value (a ratchet_malloc'd
 * buffer freed by its destroy callback), keyed by the key's 16 bytes. A
 * store hit returns a buffer owned by the caller's handle and promotes a
 * second copy into memory: handing out the promoted buffer itself would
 * race with its eviction by another thread. Memory entries carry the
 * store's remaining TTL, on the same clock (now_ms * 10^6 as now_ns).
 *
 * put is write-through, store first: a value is in memory only if the
 * store accepted it, so memory never serves what the store refused, and a
 * crash after put returned loses nothing.
 *
 * A get reads the store and promotes afterwards, outside any store
 * transaction, so a put or an invalidate of the same key can land in
 * between; promoting then would bring the old value back into memory.
 * Writers therefore bump a generation counter of the key's stripe (one of
 * GEN_STRIPES, by key hash) after they change the store and before they
 * change memory. A get snapshots the generation before reading the store,
 * promotes only if it is unchanged, and looks again after promoting: if a
 * writer bumped it meanwhile, the writer's own memory change may already
 * have happened, so the get removes what it promoted. Either the get sees
 * the bump, or its promotion precedes the writer's memory change, which
 * then replaces or removes it. A collision between keys of one stripe
 * costs only a skipped promotion.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "ratchet/alloc.h"
#include "ratchet/error.h"
#include "ratchet/tiered.h"

#define GEN_STRIPES 64

struct ratchet_tiered {
  ratchet_cache *mem;
  ratchet_store *store;
  _Atomic uint64_t memory_hits, store_hits, misses, promotions, puts;
  _Atomic uint64_t gen[GEN_STRIPES];
};

/* The generation counter of key k's stripe. */
static _Atomic uint64_t *gen_of(ratchet_tiered *t, const ratchet_cache_key *k) {
  return &t->gen[(k->lo ^ k->hi) % GEN_STRIPES];
}

static void free_copy(void *ctx, void *value, size_t size) {
  (void)ctx;
  (void)size;
  ratchet_free(value);
}

static uint64_t ms_to_ns(uint64_t ms) {
  return ms > UINT64_MAX / 1000000u ? UINT64_MAX : ms * 1000000u;
}

int ratchet_tiered_new(const ratchet_tiered_options *o, ratchet_tiered **out) {
  if (o == NULL || o->store == NULL || out == NULL)
    return -EINVAL;
  ratchet_tiered *t = ratchet_calloc(1, sizeof *t);
  if (t == NULL)
    return -ENOMEM;
  ratchet_cache_options mo = o->memory;
  mo.destroy = free_copy;
  mo.destroy_ctx = NULL;
  int rc = ratchet_cache_new(&mo, &t->mem);
  if (rc != 0) {
    ratchet_free(t);
    return rc;
  }
  t->store = o->store;
  *out = t;
  return 0;
}

void ratchet_tiered_free(ratchet_tiered *t) {
  if (t == NULL)
    return;
  ratchet_cache_free(t->mem);
  ratchet_free(t);
}

ratchet_cache *ratchet_tiered_memory(ratchet_tiered *t) {
  return t->mem;
}

/* Puts a copy of value into memory, with the TTL left at now_ms; a copy
 * the memory tier declines is freed. Returns the memory tier's result. */
static int mem_put(ratchet_tiered *t, const unsigned char k[16],
                   const void *value, size_t len, uint64_t expires_ms,
                   uint64_t now_ms) {
  ratchet_cache_put_options po = RATCHET_CACHE_PUT_OPTIONS_INIT;
  if (expires_ms != 0) {
    if (expires_ms <= now_ms)
      return RATCHET_ECACHE_MISS; /* expired already: nothing to keep */
    po.ttl_ns = ms_to_ns(expires_ms - now_ms);
  }
  void *copy = ratchet_malloc(len ? len : 1);
  if (copy == NULL)
    return -ENOMEM;
  if (len)
    memcpy(copy, value, len);
  int rc = ratchet_cache_put(t->mem, k, 16, copy, len, &po, ms_to_ns(now_ms));
  if (rc != 0)
    ratchet_free(copy);
  return rc;
}

int ratchet_tiered_get(ratchet_tiered *t, const ratchet_cache_key *key,
                       uint64_t now_ms, ratchet_tiered_value *v) {
  unsigned char k[16];
  ratchet_cache_ref *ref;
  if (t == NULL || key == NULL || v == NULL)
    return -EINVAL;
  memset(v, 0, sizeof *v);
  ratchet_cache_key_bytes(key, k);
  if (ratchet_cache_get(t->mem, k, 16, ms_to_ns(now_ms), &ref) == 0) {
    v->data = ratchet_cache_ref_value(ref);
    v->size = ratchet_cache_ref_size(ref);
    v->tier = RATCHET_TIERED_MEMORY;
    v->ref_ = ref;
    atomic_fetch_add(&t->memory_hits, 1);
    return 0;
  }
  void *buf;
  size_t len;
  ratchet_store_meta meta;
  _Atomic uint64_t *gen = gen_of(t, key);
  uint64_t g = atomic_load(gen);
  int rc = ratchet_store_get(t->store, key, now_ms, &buf, &len, &meta);
  if (rc != 0) {
    if (rc == RATCHET_ECACHE_MISS || rc == RATCHET_ECACHE_CORRUPT)
      atomic_fetch_add(&t->misses, 1);
    return rc;
  }
  /* Promote only what no writer has changed since the read (see above). */
  if (atomic_load(gen) == g &&
      mem_put(t, k, buf, len, meta.expires_ms, now_ms) == 0) {
    if (atomic_load(gen) == g)
      atomic_fetch_add(&t->promotions, 1);
    else
      ratchet_cache_invalidate(t->mem, k, 16);
  }
  atomic_fetch_add(&t->store_hits, 1);
  v->data = buf;
  v->size = len;
  v->tier = RATCHET_TIERED_STORE;
  v->owned_ = buf;
  return 0;
}

void ratchet_tiered_release(ratchet_tiered *t, ratchet_tiered_value *v) {
  if (t == NULL || v == NULL)
    return;
  if (v->ref_ != NULL)
    ratchet_cache_release(t->mem, v->ref_);
  ratchet_free(v->owned_);
  memset(v, 0, sizeof *v);
}

int ratchet_tiered_put(ratchet_tiered *t, const ratchet_cache_key *key,
                       const void *value, size_t len,
                       const ratchet_store_put_options *po, uint64_t now_ms) {
  unsigned char k[16];
  if (t == NULL || key == NULL || (value == NULL && len != 0))
    return -EINVAL;
  ratchet_cache_key_bytes(key, k);
  int rc = ratchet_store_put(t->store, key, value, len, po, now_ms);
  atomic_fetch_add(gen_of(t, key), 1); /* after the store, before memory */
  if (rc != 0) {
    ratchet_cache_invalidate(t->mem, k, 16);
    return rc;
  }
  atomic_fetch_add(&t->puts, 1);
  uint64_t expires =
      ratchet_store_expiry(t->store, po != NULL ? po->ttl_ms : 0, now_ms);
  if (mem_put(t, k, value, len, expires, now_ms) != 0)
    ratchet_cache_invalidate(t->mem, k, 16); /* no stale copy left behind */
  return 0;
}

int ratchet_tiered_invalidate(ratchet_tiered *t, const ratchet_cache_key *key) {
  unsigned char k[16];
  if (t == NULL || key == NULL)
    return -EINVAL;
  ratchet_cache_key_bytes(key, k);
  int s = ratchet_store_invalidate(t->store, key);
  atomic_fetch_add(gen_of(t, key), 1); /* after the store, before memory */
  int m = ratchet_cache_invalidate(t->mem, k, 16);
  if (s != 0 && s != RATCHET_ECACHE_MISS)
    return s;
  return m == 0 || s == 0 ? 0 : RATCHET_ECACHE_MISS;
}

int ratchet_tiered_clear(ratchet_tiered *t) {
  if (t == NULL)
    return -EINVAL;
  int rc = ratchet_store_clear(t->store);
  for (size_t i = 0; i < GEN_STRIPES; i++) /* after the store, before memory */
    atomic_fetch_add(&t->gen[i], 1);
  ratchet_cache_clear(t->mem);
  return rc;
}

void ratchet_tiered_stats_get(ratchet_tiered *t, ratchet_tiered_stats *s) {
  memset(s, 0, sizeof *s);
  s->memory_hits = atomic_load(&t->memory_hits);
  s->store_hits = atomic_load(&t->store_hits);
  s->misses = atomic_load(&t->misses);
  s->promotions = atomic_load(&t->promotions);
  s->puts = atomic_load(&t->puts);
  ratchet_cache_stats_get(t->mem, &s->memory);
  ratchet_store_stats_get(t->store, &s->store);
}
