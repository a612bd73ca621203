/*
 * policy_ghost.c - S3-FIFO's ghost queue and the id map under it.
 *
 * The ghost queue remembers {id, size} of objects recently dropped from the
 * small queue, bounded by bytes (G), oldest out first; an id found there on a
 * miss is taken out (a "ghost hit") and the object goes straight to main.
 * It lives in a ring of slots addressed by ever-growing positions (slot =
 * position & mask). A ghost hit leaves a tombstone in the ring rather than
 * shifting it; tombstones at the old end are skipped as the queue moves, and
 * when the ring is full the live slots are copied, in order, into a ring
 * twice as large or (if at most half of it is live) of the same size, so
 * tombstones never pile up. An id map from id to position + 1 makes lookups
 * O(1). A ghost entry for a 0-byte object counts as 1 byte, so that the queue
 * stays bounded however many empty objects pass through it.
 *
 * The id map is open addressing with linear probing on a mixed id (ids may be
 * sequential block numbers), at most half full, and deletes by shifting the
 * following run back, so it needs no tombstones of its own.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "policy.h"
#include "ratchet/alloc.h"

/* ---- id map ------------------------------------------------------------ */

/* The splitmix64 finaliser: spreads sequential ids over the table. */
static uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= UINT64_C(0xbf58476d1ce4e5b9);
  x ^= x >> 27;
  x *= UINT64_C(0x94d049bb133111eb);
  x ^= x >> 31;
  return x;
}

void ratchet__idmap_init(ratchet__idmap *m) {
  m->slots = NULL;
  m->mask = 0;
  m->count = 0;
}

void ratchet__idmap_destroy(ratchet__idmap *m) {
  ratchet_free(m->slots);
  ratchet__idmap_init(m);
}

uint64_t ratchet__idmap_get(const ratchet__idmap *m, uint64_t key) {
  if (m->slots == NULL)
    return 0;
  for (size_t i = (size_t)mix(key) & m->mask;; i = (i + 1) & m->mask) {
    const struct ratchet__idmap_slot *s = &m->slots[i];
    if (s->val == 0)
      return 0;
    if (s->key == key)
      return s->val;
  }
}

/* Inserts into a table known to have room and not to hold key. */
static void raw_put(struct ratchet__idmap_slot *slots, size_t mask,
                    uint64_t key, uint64_t val) {
  size_t i = (size_t)mix(key) & mask;
  while (slots[i].val != 0)
    i = (i + 1) & mask;
  slots[i].key = key;
  slots[i].val = val;
}

int ratchet__idmap_reserve(ratchet__idmap *m, size_t more) {
  size_t cap = m->slots == NULL ? 0 : m->mask + 1;
  if (more > SIZE_MAX / 2 - m->count)
    return -ENOMEM;
  size_t need = (m->count + more) * 2;
  if (need <= cap)
    return 0;
  size_t ncap = cap == 0 ? 16 : cap;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2 / sizeof *m->slots)
      return -ENOMEM;
    ncap *= 2;
  }
  struct ratchet__idmap_slot *ns = ratchet_calloc(ncap, sizeof *ns);
  if (ns == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < cap; i++)
    if (m->slots[i].val != 0)
      raw_put(ns, ncap - 1, m->slots[i].key, m->slots[i].val);
  ratchet_free(m->slots);
  m->slots = ns;
  m->mask = ncap - 1;
  return 0;
}

void ratchet__idmap_put(ratchet__idmap *m, uint64_t key, uint64_t val) {
  for (size_t i = (size_t)mix(key) & m->mask;; i = (i + 1) & m->mask) {
    struct ratchet__idmap_slot *s = &m->slots[i];
    if (s->val == 0) {
      s->key = key;
      s->val = val;
      m->count++;
      return;
    }
    if (s->key == key) {
      s->val = val;
      return;
    }
  }
}

uint64_t ratchet__idmap_del(ratchet__idmap *m, uint64_t key) {
  if (m->slots == NULL)
    return 0;
  size_t i = (size_t)mix(key) & m->mask;
  while (m->slots[i].key != key || m->slots[i].val == 0) {
    if (m->slots[i].val == 0)
      return 0;
    i = (i + 1) & m->mask;
  }
  uint64_t val = m->slots[i].val;
  /* Shift back every following entry that may move into the hole: one whose
   * home slot is not cyclically in (hole, its position]. */
  for (size_t j = (i + 1) & m->mask;; j = (j + 1) & m->mask) {
    struct ratchet__idmap_slot *s = &m->slots[j];
    if (s->val == 0)
      break;
    size_t home = (size_t)mix(s->key) & m->mask;
    if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
      m->slots[i] = *s;
      i = j;
    }
  }
  m->slots[i].val = 0;
  m->count--;
  return val;
}

void ratchet__idmap_clear(ratchet__idmap *m) {
  if (m->slots != NULL)
    memset(m->slots, 0, (m->mask + 1) * sizeof *m->slots);
  m->count = 0;
}

/* ---- ghost queue ------------------------------------------------------- */

void ratchet__ghost_init(ratchet__ghost *g, uint64_t cap_bytes) {
  memset(g, 0, sizeof *g);
  g->cap_bytes = cap_bytes;
  ratchet__idmap_init(&g->index);
}

void ratchet__ghost_destroy(ratchet__ghost *g) {
  ratchet_free(g->ring);
  ratchet__idmap_destroy(&g->index);
  ratchet__ghost_init(g, g->cap_bytes);
}

static uint64_t ghost_bytes_of(uint64_t size) {
  return size == 0 ? 1 : size;
}

/* Moves `first` past tombstones. */
static void skip_dead(ratchet__ghost *g) {
  while (g->first != g->next &&
         g->ring[g->first & g->mask].size == RATCHET__GHOST_DEAD) {
    g->first++;
    g->dead--;
  }
}

int ratchet__ghost_take(ratchet__ghost *g, uint64_t id) {
  uint64_t v = ratchet__idmap_del(&g->index, id);
  if (v == 0)
    return 0;
  struct ratchet__ghost_slot *s = &g->ring[(v - 1) & g->mask];
  g->bytes -= ghost_bytes_of(s->size);
  g->count--;
  s->size = RATCHET__GHOST_DEAD;
  g->dead++;
  skip_dead(g);
  return 1;
}

static void pop_oldest(ratchet__ghost *g) {
  skip_dead(g);
  if (g->first == g->next)
    return;
  struct ratchet__ghost_slot *s = &g->ring[g->first & g->mask];
  ratchet__idmap_del(&g->index, s->id);
  g->bytes -= ghost_bytes_of(s->size);
  g->count--;
  g->first++;
  skip_dead(g);
}

int ratchet__ghost_reserve(ratchet__ghost *g) {
  if (ratchet__idmap_reserve(&g->index, 1) != 0)
    return -ENOMEM;
  uint64_t cap = g->ring == NULL ? 0 : g->mask + 1;
  if (g->next - g->first < cap)
    return 0;
  /* Full: copy the live slots into a fresh ring, renumbered from 0. */
  uint64_t ncap = cap == 0 ? 64 : g->count * 2 > cap ? cap * 2 : cap;
  if (ncap > SIZE_MAX / sizeof *g->ring)
    return -ENOMEM;
  struct ratchet__ghost_slot *nr = ratchet_malloc((size_t)ncap * sizeof *nr);
  if (nr == NULL)
    return -ENOMEM;
  uint64_t n = 0;
  for (uint64_t pos = g->first; pos != g->next; pos++) {
    struct ratchet__ghost_slot s = g->ring[pos & g->mask];
    if (s.size == RATCHET__GHOST_DEAD)
      continue;
    nr[n] = s;
    ratchet__idmap_put(&g->index, s.id, n + 1);
    n++;
  }
  ratchet_free(g->ring);
  g->ring = nr;
  g->mask = ncap - 1;
  g->first = 0;
  g->next = n;
  g->dead = 0;
  return 0;
}

int ratchet__ghost_add(ratchet__ghost *g, uint64_t id, uint64_t size) {
  uint64_t b = ghost_bytes_of(size);
  if (b > g->cap_bytes || ratchet__idmap_get(&g->index, id) != 0)
    return 0;
  while (g->bytes + b > g->cap_bytes)
    pop_oldest(g);
  if (ratchet__ghost_reserve(g) != 0)
    return -ENOMEM;
  uint64_t pos = g->next++;
  g->ring[pos & g->mask].id = id;
  g->ring[pos & g->mask].size = size;
  ratchet__idmap_put(&g->index, id, pos + 1);
  g->bytes += b;
  g->count++;
  return 0;
}

void ratchet__ghost_clear(ratchet__ghost *g) {
  ratchet__idmap_clear(&g->index);
  g->first = g->next = g->dead = 0;
  g->bytes = g->count = 0;
}
