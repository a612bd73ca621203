/*
 * memcache.c - ratchet_cache, the memory tier: a sharded hash table of
 * byte-string keys to counted references, evicted by one of the policies of
 * policy.c, with TTLs, tags and invalidation.
 *
 * An entry is one allocation: the policy node (first, so a node pointer is
 * an entry pointer), the reference count, the value, the expiry time and the
 * key and tag bytes. The node's id is the key's 64-bit xxh3 hash, which also
 * picks the shard (top bits) and the bucket (low bits), and is what S3-FIFO's
 * ghost queue remembers.
 *
 * Locking. One mutex, the policy lock, serialises every change: put,
 * invalidation, expiry, clear, and LRU's reordering on a hit. Each of the 64
 * shards has a read-write lock that guards only its hash chains. A reader
 * (get) takes its shard's read lock, finds the entry, takes a reference and
 * bumps the policy counter with a relaxed atomic (S3-FIFO, SIEVE; nothing for
 * FIFO), and leaves: a hit takes no global lock, and writes only its shard's
 * lock word and counters and the entry it found. A writer holds the policy
 * lock throughout and takes a shard's write lock only around the unlinking or
 * linking of a chain; since all writers hold the policy lock, they may read
 * chains without shard locks, and at most one thread ever holds a shard lock
 * while it waits for another lock, so the order policy -> shard cannot
 * deadlock. LRU's hit drops the shard lock before it takes the policy lock,
 * then moves the node only if it is still cached.
 *
 * Lifetimes. The cache holds one reference to each entry it links; a reader
 * takes another under the shard lock, which a writer must hold to unlink, so
 * a reader never finds an entry whose count may already have reached zero.
 * Removed entries are gathered on a list while the policy lock is held and
 * their cache reference is dropped after it is released, so the destroy
 * callback, which runs when the last reference goes, never runs under a lock
 * of ours: it may call back into the cache.
 *
 * Expiry. Entries with a TTL sit in a binary min-heap by expiry time (the
 * entry knows its slot), so active expiry removes the oldest first in
 * O(log n) each, and lazy expiry (a get that finds an expired entry) misses
 * and then removes it under the policy lock. Invalidation by prefix or tag
 * walks the policy's queues: O(entries), which suits rare administrative
 * calls better than an index that every put would pay for.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <xxhash.h>

#include "policy.h"
#include "ratchet/alloc.h"
#include "ratchet/cache.h"
#include "ratchet/error.h"

#define SHARD_BITS      6
#define SHARDS          (1u << SHARD_BITS)
#define INITIAL_BUCKETS 8
#define MAX_TAGS        8
#define MAX_TAG_LEN     255
#define NO_HEAP_POS     SIZE_MAX

typedef struct ratchet_cache_ref entry;

struct ratchet_cache_ref {
  ratchet__pnode node; /* first: a node pointer is an entry pointer */
  /* Next in the hash chain; once unlinked, next on the removal list. */
  entry *chain;
  atomic_uint refs; /* the cache's own while linked, plus readers' */
  bool linked;      /* in the table and the policy; policy lock */
  uint8_t ntags;
  uint32_t key_len;
  size_t heap_pos;     /* slot in the expiry heap, or NO_HEAP_POS */
  uint64_t expires_ns; /* 0: never */
  void *value;
  size_t size;
  unsigned char key[]; /* key_len bytes, then ntags NUL-terminated tags */
};

struct shard {
  pthread_rwlock_t lock;
  entry **buckets; /* writers: policy lock + write lock */
  size_t mask;     /* bucket count - 1 */
  size_t count;
  atomic_uint_fast64_t hits, misses;
};

/* One shard per 128 bytes (two cache lines: the adjacent-line prefetcher
 * pulls pairs), so shards never share a line. */
union shard_slot {
  struct shard s;
  unsigned char pad[128];
};

struct ratchet_cache {
  pthread_mutex_t lock; /* the policy lock */
  ratchet__policy policy;
  ratchet_cache_options opt;
  union shard_slot *shards; /* aligned to 128 inside shards_mem */
  void *shards_mem;
  entry **heap; /* expiry min-heap */
  size_t heap_len, heap_cap;
  uint64_t insertions, evictions, expirations, invalidations;
};

/* ---- helpers ----------------------------------------------------------- */

static uint64_t hash_key(const void *key, size_t len) {
  static const unsigned char empty[1];
  return XXH3_64bits(len != 0 ? key : empty, len);
}

static struct shard *shard_of(ratchet_cache *c, uint64_t h) {
  return &c->shards[h >> (64 - SHARD_BITS)].s;
}

static bool key_equal(const entry *e, uint64_t h, const void *key, size_t len) {
  return e->node.id == h && e->key_len == len &&
         (len == 0 || memcmp(e->key, key, len) == 0);
}

static entry *chain_find(const struct shard *s, uint64_t h, const void *key,
                         size_t len) {
  for (entry *e = s->buckets[h & s->mask]; e != NULL; e = e->chain)
    if (key_equal(e, h, key, len))
      return e;
  return NULL;
}

static bool expired(const entry *e, uint64_t now_ns) {
  return e->expires_ns != 0 && now_ns >= e->expires_ns;
}

static void entry_unref(ratchet_cache *c, entry *e) {
  if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
    if (c->opt.destroy != NULL)
      c->opt.destroy(c->opt.destroy_ctx, e->value, e->size);
    ratchet_free(e);
  }
}

/* Drops the cache's reference to each removed entry; no lock held. */
static void drain(ratchet_cache *c, entry *list) {
  while (list != NULL) {
    entry *next = list->chain;
    entry_unref(c, list);
    list = next;
  }
}

/* ---- expiry heap (policy lock) ----------------------------------------- */

static void heap_set(ratchet_cache *c, size_t i, entry *e) {
  c->heap[i] = e;
  e->heap_pos = i;
}

static void heap_up(ratchet_cache *c, size_t i) {
  entry *e = c->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (c->heap[parent]->expires_ns <= e->expires_ns)
      break;
    heap_set(c, i, c->heap[parent]);
    i = parent;
  }
  heap_set(c, i, e);
}

static void heap_down(ratchet_cache *c, size_t i) {
  entry *e = c->heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= c->heap_len)
      break;
    if (child + 1 < c->heap_len &&
        c->heap[child + 1]->expires_ns < c->heap[child]->expires_ns)
      child++;
    if (e->expires_ns <= c->heap[child]->expires_ns)
      break;
    heap_set(c, i, c->heap[child]);
    i = child;
  }
  heap_set(c, i, e);
}

static int heap_reserve(ratchet_cache *c) {
  if (c->heap_len < c->heap_cap)
    return 0;
  size_t ncap = c->heap_cap == 0 ? 16 : c->heap_cap * 2;
  if (ncap > SIZE_MAX / sizeof *c->heap)
    return -ENOMEM;
  entry **nh = ratchet_realloc(c->heap, ncap * sizeof *nh);
  if (nh == NULL)
    return -ENOMEM;
  c->heap = nh;
  c->heap_cap = ncap;
  return 0;
}

static void heap_push(ratchet_cache *c, entry *e) {
  c->heap[c->heap_len] = e;
  e->heap_pos = c->heap_len++;
  heap_up(c, e->heap_pos);
}

static void heap_remove(ratchet_cache *c, entry *e) {
  size_t i = e->heap_pos;
  e->heap_pos = NO_HEAP_POS;
  entry *last = c->heap[--c->heap_len];
  if (i == c->heap_len)
    return;
  heap_set(c, i, last);
  heap_up(c, i);
  heap_down(c, last->heap_pos);
}

/* ---- table changes (policy lock held) ---------------------------------- */

static void table_link(ratchet_cache *c, entry *e) {
  struct shard *s = shard_of(c, e->node.id);
  entry **grown = NULL;
  size_t nb = s->mask + 1;
  /* Grow at load 1, allocating before the write lock; on failure the chains
   * just get longer. */
  if (s->count >= nb && nb <= SIZE_MAX / 2 / sizeof *grown)
    grown = ratchet_calloc(nb * 2, sizeof *grown);
  entry **old = NULL;
  pthread_rwlock_wrlock(&s->lock);
  if (grown != NULL) {
    for (size_t i = 0; i < nb; i++)
      for (entry *x = s->buckets[i], *next; x != NULL; x = next) {
        next = x->chain;
        x->chain = grown[x->node.id & (nb * 2 - 1)];
        grown[x->node.id & (nb * 2 - 1)] = x;
      }
    old = s->buckets;
    s->buckets = grown;
    s->mask = nb * 2 - 1;
  }
  entry **b = &s->buckets[e->node.id & s->mask];
  e->chain = *b;
  *b = e;
  s->count++;
  pthread_rwlock_unlock(&s->lock);
  ratchet_free(old);
}

/* Takes e out of the table and the heap (the policy is the caller's) and
 * puts it on *removed; its cache reference is dropped by drain(). */
static void detach(ratchet_cache *c, entry *e, entry **removed) {
  struct shard *s = shard_of(c, e->node.id);
  pthread_rwlock_wrlock(&s->lock);
  entry **p = &s->buckets[e->node.id & s->mask];
  while (*p != e)
    p = &(*p)->chain;
  *p = e->chain;
  s->count--;
  pthread_rwlock_unlock(&s->lock);
  if (e->heap_pos != NO_HEAP_POS)
    heap_remove(c, e);
  e->linked = false;
  e->chain = *removed;
  *removed = e;
}

static void remove_entry(ratchet_cache *c, entry *e, entry **removed) {
  ratchet__policy_remove(&c->policy, &e->node);
  detach(c, e, removed);
}

/* Finds key with the policy lock held (no shard lock needed). */
static entry *locked_find(ratchet_cache *c, uint64_t h, const void *key,
                          size_t len) {
  return chain_find(shard_of(c, h), h, key, len);
}

/* ---- creation ---------------------------------------------------------- */

int ratchet_cache_new(const ratchet_cache_options *o, ratchet_cache **out) {
  if (o == NULL || out == NULL || (unsigned)o->policy > RATCHET_CACHE_FIFO ||
      o->capacity_bytes == 0)
    return -EINVAL;
  ratchet_cache *c = ratchet_calloc(1, sizeof *c);
  if (c == NULL)
    return -ENOMEM;
  unsigned inited = 0;
  int err = -ENOMEM;
  c->opt = *o;
  ratchet__policy_init(&c->policy, o->policy, o->capacity_bytes,
                       o->max_entries);
  c->shards_mem = ratchet_malloc(SHARDS * sizeof *c->shards + 127);
  if (c->shards_mem == NULL)
    goto fail;
  c->shards =
      (union shard_slot *)(((uintptr_t)c->shards_mem + 127) & ~(uintptr_t)127);
  memset(c->shards, 0, SHARDS * sizeof *c->shards);
  if ((err = -pthread_mutex_init(&c->lock, NULL)) != 0)
    goto fail;
  for (; inited < SHARDS; inited++) {
    struct shard *s = &c->shards[inited].s;
    s->buckets = ratchet_calloc(INITIAL_BUCKETS, sizeof *s->buckets);
    if (s->buckets == NULL) {
      err = -ENOMEM;
      goto fail_shard;
    }
    if ((err = -pthread_rwlock_init(&s->lock, NULL)) != 0) {
      ratchet_free(s->buckets);
      goto fail_shard;
    }
    s->mask = INITIAL_BUCKETS - 1;
    atomic_init(&s->hits, 0);
    atomic_init(&s->misses, 0);
  }
  *out = c;
  return 0;

fail_shard:
  while (inited-- > 0) {
    pthread_rwlock_destroy(&c->shards[inited].s.lock);
    ratchet_free(c->shards[inited].s.buckets);
  }
  pthread_mutex_destroy(&c->lock);
fail:
  ratchet_free(c->shards_mem);
  ratchet__policy_destroy(&c->policy);
  ratchet_free(c);
  return err;
}

static void free_queue(ratchet_cache *c, ratchet__pnode *n) {
  while (n != NULL) {
    entry *e = (entry *)n;
    n = n->older;
    if (c->opt.destroy != NULL)
      c->opt.destroy(c->opt.destroy_ctx, e->value, e->size);
    ratchet_free(e);
  }
}

void ratchet_cache_free(ratchet_cache *c) {
  if (c == NULL)
    return;
  free_queue(c, c->policy.small.head);
  free_queue(c, c->policy.main.head);
  for (unsigned i = 0; i < SHARDS; i++) {
    pthread_rwlock_destroy(&c->shards[i].s.lock);
    ratchet_free(c->shards[i].s.buckets);
  }
  pthread_mutex_destroy(&c->lock);
  ratchet_free(c->shards_mem);
  ratchet_free(c->heap);
  ratchet__policy_destroy(&c->policy);
  ratchet_free(c);
}

/* ---- lookups ----------------------------------------------------------- */

/* Lazy expiry: removes key if it is (still) expired at now_ns. */
static void expire_key(ratchet_cache *c, uint64_t h, const void *key,
                       size_t len, uint64_t now_ns) {
  entry *removed = NULL;
  pthread_mutex_lock(&c->lock);
  entry *e = locked_find(c, h, key, len);
  if (e != NULL && expired(e, now_ns)) {
    remove_entry(c, e, &removed);
    c->expirations++;
  }
  pthread_mutex_unlock(&c->lock);
  drain(c, removed);
}

int ratchet_cache_get(ratchet_cache *c, const void *key, size_t key_len,
                      uint64_t now_ns, ratchet_cache_ref **ref) {
  if (c == NULL || ref == NULL || (key == NULL && key_len != 0))
    return -EINVAL;
  uint64_t h = hash_key(key, key_len);
  struct shard *s = shard_of(c, h);
  ratchet_cache_policy kind = c->policy.kind;
  bool stale = false;
  pthread_rwlock_rdlock(&s->lock);
  entry *e = chain_find(s, h, key, key_len);
  if (e != NULL && expired(e, now_ns)) {
    stale = true;
    e = NULL;
  }
  if (e != NULL) {
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    ratchet__policy_hit_shared(kind, &e->node);
  }
  pthread_rwlock_unlock(&s->lock);
  if (e == NULL) {
    atomic_fetch_add_explicit(&s->misses, 1, memory_order_relaxed);
    if (stale)
      expire_key(c, h, key, key_len, now_ns);
    return RATCHET_ECACHE_MISS;
  }
  atomic_fetch_add_explicit(&s->hits, 1, memory_order_relaxed);
  if (!ratchet__policy_hit_is_shared(kind)) {
    pthread_mutex_lock(&c->lock);
    if (e->linked)
      ratchet__policy_hit_locked(&c->policy, &e->node);
    pthread_mutex_unlock(&c->lock);
  }
  *ref = e;
  return 0;
}

void *ratchet_cache_ref_value(const ratchet_cache_ref *ref) {
  return ref != NULL ? ref->value : NULL;
}

size_t ratchet_cache_ref_size(const ratchet_cache_ref *ref) {
  return ref != NULL ? ref->size : 0;
}

void ratchet_cache_release(ratchet_cache *c, ratchet_cache_ref *ref) {
  if (c != NULL && ref != NULL)
    entry_unref(c, ref);
}

/* ---- put --------------------------------------------------------------- */

/* Checks the tags; sets *bytes to the room they take (with their NULs). */
static int check_tags(const ratchet_cache_put_options *po, size_t *bytes) {
  *bytes = 0;
  if (po == NULL || po->ntags == 0)
    return 0;
  if (po->ntags > MAX_TAGS || po->tags == NULL)
    return -EINVAL;
  for (size_t i = 0; i < po->ntags; i++) {
    if (po->tags[i] == NULL)
      return -EINVAL;
    size_t n = strnlen(po->tags[i], MAX_TAG_LEN + 1);
    if (n == 0 || n > MAX_TAG_LEN)
      return -EINVAL;
    *bytes += n + 1;
  }
  return 0;
}

static entry *make_entry(uint64_t h, const void *key, size_t key_len,
                         void *value, size_t size,
                         const ratchet_cache_put_options *po,
                         size_t tag_bytes) {
  if (key_len > SIZE_MAX - sizeof(entry) - tag_bytes)
    return NULL;
  entry *e = ratchet_malloc(sizeof *e + key_len + tag_bytes);
  if (e == NULL)
    return NULL;
  memset(e, 0, sizeof *e);
  atomic_init(&e->node.freq, 0);
  atomic_init(&e->refs, 1);
  e->node.id = h;
  e->node.size = size;
  e->key_len = (uint32_t)key_len;
  e->heap_pos = NO_HEAP_POS;
  e->value = value;
  e->size = size;
  if (key_len != 0)
    memcpy(e->key, key, key_len);
  unsigned char *t = e->key + key_len;
  for (size_t i = 0; po != NULL && i < po->ntags; i++) {
    size_t n = strlen(po->tags[i]) + 1;
    memcpy(t, po->tags[i], n);
    t += n;
  }
  e->ntags = (uint8_t)(po != NULL ? po->ntags : 0);
  return e;
}

int ratchet_cache_put(ratchet_cache *c, const void *key, size_t key_len,
                      void *value, size_t size,
                      const ratchet_cache_put_options *po, uint64_t now_ns) {
  size_t tag_bytes;
  if (c == NULL || (key == NULL && key_len != 0) || key_len > UINT32_MAX ||
      check_tags(po, &tag_bytes) != 0)
    return -EINVAL;
  if ((uint64_t)size > c->policy.capacity)
    return RATCHET_ECACHE_TOO_BIG;
  uint64_t h = hash_key(key, key_len);
  entry *e = make_entry(h, key, key_len, value, size, po, tag_bytes);
  if (e == NULL)
    return -ENOMEM;
  uint64_t ttl =
      po != NULL && po->ttl_ns != 0 ? po->ttl_ns : c->opt.default_ttl_ns;
  if (ttl != 0)
    e->expires_ns = now_ns > UINT64_MAX - ttl ? UINT64_MAX : now_ns + ttl;

  entry *removed = NULL;
  int err = 0;
  pthread_mutex_lock(&c->lock);
  if (ttl != 0 && heap_reserve(c) != 0) {
    err = -ENOMEM;
    goto out;
  }
  entry *old = locked_find(c, h, key, key_len);
  /* A replacement is admitted as a new object, but without consulting the
   * ghost queue (the key is cached, so it cannot be a ghost). An object the
   * reference would drop only after making room is refused up front, so that
   * a refused put changes nothing. */
  int admit = ratchet__policy_admit(&c->policy, h, size, old == NULL);
  if (admit == RATCHET__REFUSE || admit == RATCHET__REFUSE_AFTER_ROOM) {
    err = RATCHET_ECACHE_TOO_BIG;
    goto out;
  }
  if (old != NULL)
    remove_entry(c, old, &removed);
  while (ratchet__policy_full(&c->policy, size)) {
    ratchet__pnode *v = ratchet__policy_evict(&c->policy);
    if (v == NULL)
      break;
    detach(c, (entry *)v, &removed);
    c->evictions++;
  }
  ratchet__policy_insert(&c->policy, &e->node, admit);
  e->linked = true;
  table_link(c, e);
  if (ttl != 0)
    heap_push(c, e);
  c->insertions++;
  e = NULL;
out:
  pthread_mutex_unlock(&c->lock);
  drain(c, removed);
  ratchet_free(e); /* only on failure: the caller keeps value */
  return err;
}

/* ---- invalidation and expiry ------------------------------------------- */

int ratchet_cache_invalidate(ratchet_cache *c, const void *key,
                             size_t key_len) {
  if (c == NULL || (key == NULL && key_len != 0))
    return -EINVAL;
  uint64_t h = hash_key(key, key_len);
  entry *removed = NULL;
  pthread_mutex_lock(&c->lock);
  entry *e = locked_find(c, h, key, key_len);
  if (e != NULL) {
    remove_entry(c, e, &removed);
    c->invalidations++;
  }
  pthread_mutex_unlock(&c->lock);
  drain(c, removed);
  return e != NULL ? 0 : RATCHET_ECACHE_MISS;
}

static bool has_prefix(const entry *e, const void *arg, size_t len) {
  return e->key_len >= len && (len == 0 || memcmp(e->key, arg, len) == 0);
}

static bool has_tag(const entry *e, const void *arg, size_t len) {
  (void)len;
  const char *t = (const char *)(e->key + e->key_len);
  for (unsigned i = 0; i < e->ntags; i++) {
    if (strcmp(t, arg) == 0)
      return true;
    t += strlen(t) + 1;
  }
  return false;
}

/* Removes every entry that matches, as invalidations; policy lock held. */
static uint64_t remove_matching(ratchet_cache *c,
                                bool (*match)(const entry *, const void *,
                                              size_t),
                                const void *arg, size_t len, entry **removed) {
  uint64_t n = 0;
  ratchet__plist *queues[2] = {&c->policy.small, &c->policy.main};
  for (int q = 0; q < 2; q++) {
    for (ratchet__pnode *x = queues[q]->head, *next; x != NULL; x = next) {
      next = x->older;
      if (match((entry *)x, arg, len)) {
        remove_entry(c, (entry *)x, removed);
        n++;
      }
    }
  }
  c->invalidations += n;
  return n;
}

uint64_t ratchet_cache_invalidate_prefix(ratchet_cache *c, const void *prefix,
                                         size_t len) {
  if (c == NULL || (prefix == NULL && len != 0))
    return 0;
  entry *removed = NULL;
  pthread_mutex_lock(&c->lock);
  uint64_t n = remove_matching(c, has_prefix, prefix, len, &removed);
  pthread_mutex_unlock(&c->lock);
  drain(c, removed);
  return n;
}

uint64_t ratchet_cache_invalidate_tag(ratchet_cache *c, const char *tag) {
  if (c == NULL || tag == NULL)
    return 0;
  entry *removed = NULL;
  pthread_mutex_lock(&c->lock);
  uint64_t n = remove_matching(c, has_tag, tag, 0, &removed);
  pthread_mutex_unlock(&c->lock);
  drain(c, removed);
  return n;
}

void ratchet_cache_clear(ratchet_cache *c) {
  if (c == NULL)
    return;
  entry *removed = NULL;
  pthread_mutex_lock(&c->lock);
  remove_matching(c, has_prefix, NULL, 0, &removed);
  ratchet__policy_forget(&c->policy);
  pthread_mutex_unlock(&c->lock);
  drain(c, removed);
}

uint64_t ratchet_cache_expire(ratchet_cache *c, uint64_t now_ns,
                              uint64_t max_entries) {
  if (c == NULL)
    return 0;
  entry *removed = NULL;
  uint64_t n = 0;
  pthread_mutex_lock(&c->lock);
  while (c->heap_len != 0 && expired(c->heap[0], now_ns) &&
         (max_entries == 0 || n < max_entries)) {
    remove_entry(c, c->heap[0], &removed);
    n++;
  }
  c->expirations += n;
  pthread_mutex_unlock(&c->lock);
  drain(c, removed);
  return n;
}

/* ---- stats ------------------------------------------------------------- */

void ratchet_cache_stats_get(ratchet_cache *c, ratchet_cache_stats *s) {
  if (s == NULL)
    return;
  memset(s, 0, sizeof *s);
  if (c == NULL)
    return;
  pthread_mutex_lock(&c->lock);
  for (unsigned i = 0; i < SHARDS; i++) {
    s->hits += atomic_load_explicit(&c->shards[i].s.hits, memory_order_relaxed);
    s->misses +=
        atomic_load_explicit(&c->shards[i].s.misses, memory_order_relaxed);
  }
  s->insertions = c->insertions;
  s->evictions = c->evictions;
  s->expirations = c->expirations;
  s->invalidations = c->invalidations;
  s->bytes = ratchet__policy_bytes(&c->policy);
  s->entries = ratchet__policy_count(&c->policy);
  pthread_mutex_unlock(&c->lock);
}
