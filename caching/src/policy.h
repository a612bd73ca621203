/*
 * policy.h - the eviction policies shared by the memory tier (memcache.c) and
 * the simulator (policy_sim.c), private to libratchet-caching.
 *
 * A policy works on nodes, never on keys: a node is an object id (for the
 * memory tier, the 64-bit hash of the key), a size in bytes and one small
 * counter, linked into one or two intrusive lists. Whoever embeds the nodes
 * maps its own ids to them, asks the policy what to do on a miss
 * (ratchet__policy_admit), evicts while the policy says it is full, inserts,
 * and reports hits. Lists run from head (newest) to tail (oldest); `newer`
 * points toward the head, `older` toward the tail.
 *
 * Locking is the caller's: every function here needs exclusive access to the
 * policy, except ratchet__policy_hit_shared, which only touches the node's
 * atomic counter and may run concurrently with anything, including
 * evictions (for S3-FIFO, SIEVE and FIFO; LRU must reorder its list and so
 * has no shared hit).
 */
#ifndef RATCHET_CACHING_POLICY_H
#define RATCHET_CACHING_POLICY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ratchet/cache.h"

/* ---- the id map: uint64 id -> nonzero uint64 value ------------------- */

/*
 * Open addressing with linear probing and backward-shift deletion, load at
 * most one half. Value 0 marks an empty slot, so values must be nonzero.
 * Used by the ghost queue (id -> position) and the simulator (id -> node).
 */
struct ratchet__idmap_slot {
  uint64_t key, val;
};

typedef struct ratchet__idmap {
  struct ratchet__idmap_slot *slots;
  size_t mask; /* capacity - 1; capacity is 0 or a power of two */
  size_t count;
} ratchet__idmap;

void ratchet__idmap_init(ratchet__idmap *m);
void ratchet__idmap_destroy(ratchet__idmap *m);
/* The value stored for key, or 0. */
uint64_t ratchet__idmap_get(const ratchet__idmap *m, uint64_t key);
/* Makes room for `more` insertions: 0, or -ENOMEM (map unchanged). */
int ratchet__idmap_reserve(ratchet__idmap *m, size_t more);
/* Stores key -> val (val != 0), replacing any value; needs a reserved slot
 * when key is new. */
void ratchet__idmap_put(ratchet__idmap *m, uint64_t key, uint64_t val);
/* Removes key; returns its value, or 0 if it was absent. */
uint64_t ratchet__idmap_del(ratchet__idmap *m, uint64_t key);
/* Removes everything, keeping the memory. */
void ratchet__idmap_clear(ratchet__idmap *m);

/* ---- nodes and queues ------------------------------------------------- */

enum {
  RATCHET__Q_NONE = 0, /* not in the policy */
  RATCHET__Q_SMALL,    /* S3-FIFO's small queue */
  RATCHET__Q_MAIN      /* S3-FIFO's main queue; the only queue of the others */
};

typedef struct ratchet__pnode {
  struct ratchet__pnode *newer, *older;
  uint64_t id;
  uint64_t size;
  /* S3-FIFO: the access count, 0..3; SIEVE: the visited bit. Atomic because
   * a hit updates it under a shared lock while an eviction may read it. */
  atomic_uchar freq;
  unsigned char queue; /* RATCHET__Q_*, under the policy's lock */
} ratchet__pnode;

typedef struct ratchet__plist {
  ratchet__pnode *head, *tail;
  uint64_t bytes, count;
} ratchet__plist;

/* S3-FIFO's ghost queue: a FIFO of {id, size} pairs bounded by bytes, in a
 * ring with tombstones for ids taken out by a ghost hit, plus an index. */
struct ratchet__ghost_slot {
  uint64_t id, size; /* size RATCHET__GHOST_DEAD: a tombstone */
};

typedef struct ratchet__ghost {
  struct ratchet__ghost_slot *ring;
  uint64_t mask;        /* ring capacity - 1 (capacity 0 or a power of 2) */
  uint64_t first, next; /* positions of the oldest slot and the next free */
  uint64_t dead;        /* tombstones between first and next */
  uint64_t bytes, count, cap_bytes;
  ratchet__idmap index; /* id -> position + 1 */
} ratchet__ghost;

#define RATCHET__GHOST_DEAD UINT64_MAX

void ratchet__ghost_init(ratchet__ghost *g, uint64_t cap_bytes);
void ratchet__ghost_destroy(ratchet__ghost *g);
/* Takes id out of the queue: 1 if it was there (a ghost hit), else 0. */
int ratchet__ghost_take(ratchet__ghost *g, uint64_t id);
/* Makes room for one more entry in the ring and the index: 0 or -ENOMEM. */
int ratchet__ghost_reserve(ratchet__ghost *g);
/*
 * Records {id, size} at the new end: nothing if the id is already there or
 * the object is larger than the whole queue; otherwise the oldest entries go
 * until it fits. 0, or -ENOMEM if the queue could not grow (then the entry
 * is not recorded, though older ones may have made way for it).
 */
int ratchet__ghost_add(ratchet__ghost *g, uint64_t id, uint64_t size);
/* Empties the queue, keeping its memory. */
void ratchet__ghost_clear(ratchet__ghost *g);

typedef struct ratchet__policy {
  ratchet_cache_policy kind;
  uint64_t capacity;    /* C, bytes */
  uint64_t max_entries; /* 0: no limit */
  uint64_t small_cap;   /* S3-FIFO: S = trunc(C * 0.1) */
  uint64_t main_cap;    /* S3-FIFO: M = C - S */
  ratchet__plist small; /* S3-FIFO only */
  ratchet__plist main;  /* every policy */
  ratchet__pnode *hand; /* SIEVE: NULL means "start at the tail" */
  ratchet__ghost ghost; /* S3-FIFO: G = trunc(C * 0.9) bytes */
  uint64_t ghost_lost;  /* ghost entries dropped for lack of memory */
} ratchet__policy;

/* What ratchet__policy_admit decides for a missed object. */
enum {
  RATCHET__REFUSE,            /* not admitted; change nothing */
  RATCHET__REFUSE_AFTER_ROOM, /* S3-FIFO, size == S without a ghost hit: the
                                 reference makes room, then drops it */
  RATCHET__INSERT,            /* make room, then insert (small for S3-FIFO) */
  RATCHET__INSERT_MAIN        /* S3-FIFO after a ghost hit: into main */
};

/* S3-FIFO's parameters: small ratio 0.10, ghost ratio 0.90, threshold 2. */
#define RATCHET__S3_MOVE_TO_MAIN 2
#define RATCHET__S3_MAX_FREQ     3

/* Sets up an empty policy; allocates nothing (the ghost grows on demand). */
void ratchet__policy_init(ratchet__policy *p, ratchet_cache_policy kind,
                          uint64_t capacity, uint64_t max_entries);
/* Frees the ghost queue. The nodes belong to the caller. */
void ratchet__policy_destroy(ratchet__policy *p);

static inline uint64_t ratchet__policy_bytes(const ratchet__policy *p) {
  return p->small.bytes + p->main.bytes;
}
static inline uint64_t ratchet__policy_count(const ratchet__policy *p) {
  return p->small.count + p->main.count;
}

/* True when a hit needs no lock beyond what keeps the node alive. */
static inline int ratchet__policy_hit_is_shared(ratchet_cache_policy kind) {
  return kind != RATCHET_CACHE_LRU;
}

/*
 * A hit under a shared lock. S3-FIFO: count += 1, saturating at 3 (the
 * paper's 2-bit counter; eviction only ever looks at min(count, 3), so the
 * saturation changes no decision). SIEVE: visited = 1. FIFO: nothing. The
 * value is read first so that a hot node's cache line is not written on every
 * hit; two racing hits may count once, which the policies tolerate.
 */
static inline void ratchet__policy_hit_shared(ratchet_cache_policy kind,
                                              ratchet__pnode *n) {
  unsigned f = atomic_load_explicit(&n->freq, memory_order_relaxed);
  if (kind == RATCHET_CACHE_S3FIFO) {
    if (f < RATCHET__S3_MAX_FREQ)
      atomic_store_explicit(&n->freq, (unsigned char)(f + 1),
                            memory_order_relaxed);
  } else if (kind == RATCHET_CACHE_SIEVE) {
    if (f == 0)
      atomic_store_explicit(&n->freq, 1, memory_order_relaxed);
  }
}

/* A hit under the policy's lock: as above, and LRU moves n to the head. */
void ratchet__policy_hit_locked(ratchet__policy *p, ratchet__pnode *n);

/*
 * The admission decision for an object that missed. With check_ghost (a
 * reference-semantics miss), S3-FIFO first looks the id up in its ghost queue
 * and removes it there: a ghost hit. Returns a RATCHET__REFUSE... or
 * RATCHET__INSERT... value. Only the ghost queue changes.
 */
int ratchet__policy_admit(ratchet__policy *p, uint64_t id, uint64_t size,
                          int check_ghost);

/* True while an object of `size` bytes does not fit: used + size > C, or
 * the entry limit would be passed. */
static inline int ratchet__policy_full(const ratchet__policy *p,
                                       uint64_t size) {
  uint64_t used = ratchet__policy_bytes(p);
  return used > p->capacity || size > p->capacity - used ||
         (p->max_entries != 0 && ratchet__policy_count(p) >= p->max_entries);
}

/*
 * Evicts one object by the policy's rules and returns its node, unlinked
 * (queue RATCHET__Q_NONE), or NULL if the policy is empty. S3-FIFO may first
 * move nodes from small to main and reinsert main nodes; an object dropped
 * from small goes to the ghost queue (if the ghost cannot grow for lack of
 * memory, the entry is not recorded and ghost_lost counts it).
 */
ratchet__pnode *ratchet__policy_evict(ratchet__policy *p);

/* Makes sure the next ghost insertion cannot fail: 0 or -ENOMEM. */
int ratchet__policy_reserve(ratchet__policy *p);

/* Inserts n (id and size set by the caller) as `admit` decided
 * (RATCHET__INSERT or RATCHET__INSERT_MAIN), with its counter at 0. */
void ratchet__policy_insert(ratchet__policy *p, ratchet__pnode *n, int admit);

/* Unlinks n without evicting it (invalidation, expiry, replacement): no ghost
 * entry; SIEVE's hand moves to n's newer neighbour if it was on n. */
void ratchet__policy_remove(ratchet__policy *p, ratchet__pnode *n);

/* Empties the ghost queue (keeps its memory). */
void ratchet__policy_forget(ratchet__policy *p);

#endif /* RATCHET_CACHING_POLICY_H */
