/*
 * policy.c - the four eviction policies of the memory tier, on intrusive
 * lists of nodes, following the reference semantics of docs/caching.md
 * (those of libCacheSim) to the letter, so that the memory tier and
 * ratchet-cachesim, which both run this code, count the misses the reference
 * counts.
 *
 * Capacity is in bytes and an object's size counts fully. FIFO inserts at the
 * head and evicts from the tail; LRU does the same and moves a hit to the
 * head. SIEVE inserts unvisited at the head, a hit marks the node visited,
 * and a hand walks from the tail toward the head (wrapping to the tail),
 * clearing visited nodes, evicts the first unvisited one and stays on that
 * node's newer neighbour. S3-FIFO keeps a small FIFO (S = trunc(C * 0.1)), a
 * main FIFO (M = C - S) and a ghost FIFO of ids (G = trunc(C * 0.9) bytes):
 * new objects enter small, or main after a ghost hit; small's tail goes to
 * main if it was hit at least twice, else to the ghost; main's tail is
 * reinserted with min(count, 3) - 1 while its count is nonzero, else evicted.
 * The sizes S and G are computed in integers: C / 10 and 9 * C / 10 rounded
 * down are exactly trunc(C * 0.1) and trunc(C * 0.9).
 *
 * Hits under a shared lock may race with an eviction that reads or resets a
 * counter; the walks of SIEVE's hand and of S3-FIFO's main queue are
 * therefore bounded (by a few turns of the queue) so that readers that keep
 * setting counters cannot hold an eviction forever. Alone, the walks never
 * reach the bound: one turn clears every visited bit, three turns every
 * count.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "policy.h"
#include "ratchet/cache.h"
#include "ratchet/error.h"

/* ---- lists ------------------------------------------------------------- */

static void push_head(ratchet__plist *l, ratchet__pnode *n) {
  n->newer = NULL;
  n->older = l->head;
  if (l->head != NULL)
    l->head->newer = n;
  else
    l->tail = n;
  l->head = n;
  l->bytes += n->size;
  l->count++;
}

static void unlink_node(ratchet__plist *l, ratchet__pnode *n) {
  if (n->newer != NULL)
    n->newer->older = n->older;
  else
    l->head = n->older;
  if (n->older != NULL)
    n->older->newer = n->newer;
  else
    l->tail = n->newer;
  n->newer = n->older = NULL;
  l->bytes -= n->size;
  l->count--;
}

static ratchet__plist *list_of(ratchet__policy *p, const ratchet__pnode *n) {
  return n->queue == RATCHET__Q_SMALL ? &p->small : &p->main;
}

static unsigned get_freq(ratchet__pnode *n) {
  return atomic_load_explicit(&n->freq, memory_order_relaxed);
}

static void set_freq(ratchet__pnode *n, unsigned f) {
  atomic_store_explicit(&n->freq, (unsigned char)f, memory_order_relaxed);
}

/* ---- setup ------------------------------------------------------------- */

void ratchet__policy_init(ratchet__policy *p, ratchet_cache_policy kind,
                          uint64_t capacity, uint64_t max_entries) {
  memset(p, 0, sizeof *p);
  p->kind = kind;
  p->capacity = capacity;
  p->max_entries = max_entries;
  if (kind == RATCHET_CACHE_S3FIFO) {
    p->small_cap = capacity / 10;
    p->main_cap = capacity - p->small_cap;
    /* 9 * C / 10 without overflowing for C near 2^64. */
    ratchet__ghost_init(&p->ghost, capacity / 10 * 9 + capacity % 10 * 9 / 10);
  } else {
    p->main_cap = capacity;
    ratchet__ghost_init(&p->ghost, 0);
  }
}

void ratchet__policy_destroy(ratchet__policy *p) {
  ratchet__ghost_destroy(&p->ghost);
}

void ratchet__policy_forget(ratchet__policy *p) {
  ratchet__ghost_clear(&p->ghost);
}

int ratchet__policy_reserve(ratchet__policy *p) {
  if (p->kind != RATCHET_CACHE_S3FIFO)
    return 0;
  return ratchet__ghost_reserve(&p->ghost);
}

/* ---- hits, admission, insertion, removal -------------------------------- */

void ratchet__policy_hit_locked(ratchet__policy *p, ratchet__pnode *n) {
  if (p->kind == RATCHET_CACHE_LRU) {
    if (p->main.head != n) {
      unlink_node(&p->main, n);
      push_head(&p->main, n);
    }
    return;
  }
  ratchet__policy_hit_shared(p->kind, n);
}

int ratchet__policy_admit(ratchet__policy *p, uint64_t id, uint64_t size,
                          int check_ghost) {
  if (p->kind != RATCHET_CACHE_S3FIFO)
    return size > p->capacity ? RATCHET__REFUSE : RATCHET__INSERT;
  /* The reference looks in the ghost queue before it checks the size, so a
   * ghost hit is consumed even by an object that is then refused. */
  int ghost_hit = check_ghost && ratchet__ghost_take(&p->ghost, id);
  if (size > p->small_cap)
    return RATCHET__REFUSE;
  if (ghost_hit)
    return RATCHET__INSERT_MAIN;
  return size >= p->small_cap ? RATCHET__REFUSE_AFTER_ROOM : RATCHET__INSERT;
}

void ratchet__policy_insert(ratchet__policy *p, ratchet__pnode *n, int admit) {
  set_freq(n, 0);
  if (p->kind == RATCHET_CACHE_S3FIFO && admit == RATCHET__INSERT) {
    n->queue = RATCHET__Q_SMALL;
    push_head(&p->small, n);
  } else {
    n->queue = RATCHET__Q_MAIN;
    push_head(&p->main, n);
  }
}

void ratchet__policy_remove(ratchet__policy *p, ratchet__pnode *n) {
  if (n->queue == RATCHET__Q_NONE)
    return;
  if (p->hand == n)
    p->hand = n->newer;
  unlink_node(list_of(p, n), n);
  n->queue = RATCHET__Q_NONE;
}

/* ---- eviction ---------------------------------------------------------- */

/* How far a walk may go before it evicts where it stands: `turns` times
 * around a queue of `count` nodes. Alone it never gets that far. */
static uint64_t walk_bound(uint64_t count, uint64_t turns) {
  return count > (UINT64_MAX - 1) / turns ? UINT64_MAX : count * turns + 1;
}

static ratchet__pnode *evict_tail(ratchet__policy *p) {
  ratchet__pnode *n = p->main.tail;
  if (n != NULL) {
    unlink_node(&p->main, n);
    n->queue = RATCHET__Q_NONE;
  }
  return n;
}

static ratchet__pnode *evict_sieve(ratchet__policy *p) {
  ratchet__plist *l = &p->main;
  if (l->tail == NULL)
    return NULL;
  ratchet__pnode *n = p->hand != NULL ? p->hand : l->tail;
  uint64_t steps = walk_bound(l->count, 2);
  while (get_freq(n) != 0 && --steps != 0) {
    set_freq(n, 0);
    n = n->newer != NULL ? n->newer : l->tail;
  }
  p->hand = n->newer;
  unlink_node(l, n);
  n->queue = RATCHET__Q_NONE;
  return n;
}

/* S3-FIFO, main queue: reinsert the tail while its count is nonzero, with
 * min(count, 3) - 1; evict the first with count 0 (never to the ghost). */
static ratchet__pnode *evict_main(ratchet__policy *p) {
  ratchet__plist *l = &p->main;
  uint64_t steps = walk_bound(l->count, RATCHET__S3_MAX_FREQ + 1);
  ratchet__pnode *n;
  while ((n = l->tail) != NULL) {
    unsigned f = get_freq(n);
    if (f == 0 || --steps == 0)
      break;
    unlink_node(l, n);
    set_freq(n, (f < RATCHET__S3_MAX_FREQ ? f : RATCHET__S3_MAX_FREQ) - 1);
    push_head(l, n);
  }
  if (n != NULL) {
    unlink_node(l, n);
    n->queue = RATCHET__Q_NONE;
  }
  return n;
}

/* S3-FIFO, small queue: move the tail to main (count 0) while it was hit at
 * least twice; drop the first other one into the ghost queue. NULL if small
 * ran empty without dropping anything. */
static ratchet__pnode *evict_small(ratchet__policy *p) {
  ratchet__pnode *n;
  while ((n = p->small.tail) != NULL) {
    unlink_node(&p->small, n);
    if (get_freq(n) >= RATCHET__S3_MOVE_TO_MAIN) {
      set_freq(n, 0);
      n->queue = RATCHET__Q_MAIN;
      push_head(&p->main, n); /* main may overflow M here */
      continue;
    }
    n->queue = RATCHET__Q_NONE;
    if (ratchet__ghost_add(&p->ghost, n->id, n->size) != 0)
      p->ghost_lost++;
    return n;
  }
  return NULL;
}

static ratchet__pnode *evict_s3fifo(ratchet__policy *p) {
  for (;;) {
    if (p->main.bytes > p->main_cap || p->small.count == 0)
      return evict_main(p);
    ratchet__pnode *n = evict_small(p);
    if (n != NULL)
      return n;
    /* Every node of small moved to main: choose again (main, now). */
  }
}

ratchet__pnode *ratchet__policy_evict(ratchet__policy *p) {
  switch (p->kind) {
  case RATCHET_CACHE_S3FIFO:
    return evict_s3fifo(p);
  case RATCHET_CACHE_SIEVE:
    return evict_sieve(p);
  case RATCHET_CACHE_LRU:
  case RATCHET_CACHE_FIFO:
  default:
    return evict_tail(p);
  }
}

/* ---- names ------------------------------------------------------------- */

static const char *const policy_names[] = {
    [RATCHET_CACHE_S3FIFO] = "s3fifo",
    [RATCHET_CACHE_SIEVE] = "sieve",
    [RATCHET_CACHE_LRU] = "lru",
    [RATCHET_CACHE_FIFO] = "fifo",
};

const char *ratchet_cache_policy_name(ratchet_cache_policy p) {
  if ((unsigned)p >= sizeof policy_names / sizeof policy_names[0])
    return NULL;
  return policy_names[p];
}

int ratchet_cache_policy_parse(const char *name, ratchet_cache_policy *out) {
  if (name == NULL || out == NULL)
    return -EINVAL;
  for (unsigned i = 0; i < sizeof policy_names / sizeof policy_names[0]; i++)
    if (strcmp(name, policy_names[i]) == 0) {
      *out = (ratchet_cache_policy)i;
      return 0;
    }
  return -EINVAL;
}
