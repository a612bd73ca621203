/*
 * containers.c - the orchestrator's timer heap, id map and string map
 * (containers.h).
 *
 * The heap is a binary min-heap of pointers to nodes embedded in their
 * owners. It orders by (due, seq_), where seq_ is a counter stamped by push,
 * so that equal deadlines pop first-in first-out; each node records its
 * position + 1 in index_, which makes removal of an arbitrary node O(log n)
 * and leaves 0 for "not in a heap".
 *
 * Both maps use open addressing with linear probing in a power-of-two table
 * that doubles when an insertion would take it past 70% load. Deletion
 * shifts the following entries of the cluster back instead of leaving
 * tombstones, so lookups stay short however many deletions happen and
 * neither get nor del ever allocates. The id map mixes its keys (task ids
 * are sequential, and sequential keys would form one long cluster); the
 * string map stores each key's 64-bit hash beside it, so that probing
 * compares hashes before bytes and growth never rehashes a key.
 *
 * Every function that allocates does so before it changes anything, so a
 * -ENOMEM leaves the structure exactly as it was.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "containers.h"
#include "ratchet/alloc.h"

/* ---- Timer heap ------------------------------------------------------- */

/* The first array a heap allocates, in nodes. */
#define HEAP_INITIAL_CAP 16u

static bool heap_before(const ratchet__heap_node *a,
                        const ratchet__heap_node *b) {
  if (a->due != b->due)
    return a->due < b->due;
  return a->seq_ < b->seq_;
}

static void heap_place(ratchet__heap *h, uint32_t i, ratchet__heap_node *n) {
  h->v[i] = n;
  n->index_ = i + 1;
}

static void heap_sift_up(ratchet__heap *h, uint32_t i) {
  ratchet__heap_node *n = h->v[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (!heap_before(n, h->v[parent]))
      break;
    heap_place(h, i, h->v[parent]);
    i = parent;
  }
  heap_place(h, i, n);
}

static void heap_sift_down(ratchet__heap *h, uint32_t i) {
  ratchet__heap_node *n = h->v[i];
  for (;;) {
    /* 64-bit arithmetic: 2 * i + 1 may not fit in 32 bits. */
    uint64_t child = 2 * (uint64_t)i + 1;
    if (child >= h->len)
      break;
    if (child + 1 < h->len && heap_before(h->v[child + 1], h->v[child]))
      child++;
    if (!heap_before(h->v[child], n))
      break;
    heap_place(h, i, h->v[child]);
    i = (uint32_t)child;
  }
  heap_place(h, i, n);
}

void ratchet__heap_init(ratchet__heap *h) {
  h->v = NULL;
  h->len = 0;
  h->cap = 0;
  h->seq = 0;
}

void ratchet__heap_free(ratchet__heap *h) {
  /* The nodes are not touched: their owners may have freed them already. */
  ratchet_free(h->v);
  ratchet__heap_init(h);
}

int ratchet__heap_push(ratchet__heap *h, ratchet__heap_node *n) {
  if (n->index_ != 0)
    return -EINVAL; /* already in a heap: pushing it again would corrupt it */
  if (h->len == h->cap) {
    /* index_ is position + 1 in 32 bits: at most UINT32_MAX - 1 nodes. */
    if (h->cap >= UINT32_MAX - 1)
      return -ENOMEM;
    uint32_t cap = h->cap == 0                     ? HEAP_INITIAL_CAP
                   : h->cap > (UINT32_MAX - 1) / 2 ? UINT32_MAX - 1
                                                   : h->cap * 2;
    if ((uint64_t)cap * sizeof *h->v > SIZE_MAX)
      return -ENOMEM; /* 32-bit size_t */
    ratchet__heap_node **v = ratchet_realloc(h->v, cap * sizeof *h->v);
    if (v == NULL)
      return -ENOMEM;
    h->v = v;
    h->cap = cap;
  }
  n->seq_ = h->seq++;
  h->len++;
  h->v[h->len - 1] = n;
  heap_sift_up(h, h->len - 1);
  return 0;
}

ratchet__heap_node *ratchet__heap_peek(const ratchet__heap *h) {
  return h->len == 0 ? NULL : h->v[0];
}

ratchet__heap_node *ratchet__heap_pop(ratchet__heap *h) {
  if (h->len == 0)
    return NULL;
  ratchet__heap_node *n = h->v[0];
  ratchet__heap_remove(h, n);
  return n;
}

void ratchet__heap_remove(ratchet__heap *h, ratchet__heap_node *n) {
  uint32_t i = n->index_ - 1;
  /* A node that is not in this heap is left alone rather than corrupting
   * the heap (the contract makes it the caller's error). */
  if (n->index_ == 0 || i >= h->len || h->v[i] != n)
    return;
  n->index_ = 0;
  h->len--;
  if (i == h->len)
    return;
  /* The last node fills the hole and moves whichever way restores order. */
  heap_place(h, i, h->v[h->len]);
  if (i > 0 && heap_before(h->v[i], h->v[(i - 1) / 2]))
    heap_sift_up(h, i);
  else
    heap_sift_down(h, i);
}

bool ratchet__heap_contains(const ratchet__heap_node *n) {
  return n->index_ != 0;
}

/* ---- Shared by the maps ----------------------------------------------- */

/* The first table a map allocates, in slots. */
#define MAP_INITIAL_CAP 8u

/* True when holding len + 1 entries in cap slots would pass 70% load. The
 * limit is floor(cap * 7 / 10), computed without overflow. */
static bool map_needs_growth(size_t len, size_t cap) {
  return cap == 0 || len + 1 > cap / 10 * 7 + cap % 10 * 7 / 10;
}

/* The doubled capacity (or the first one), or 0 when it cannot be
 * represented for slots of `slot` bytes. */
static size_t map_next_cap(size_t cap, size_t slot) {
  size_t next = cap == 0 ? MAP_INITIAL_CAP : cap * 2;
  if (next < cap || next > SIZE_MAX / slot)
    return 0;
  return next;
}

/* splitmix64's finaliser: spreads sequential ids over the whole table. */
static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= UINT64_C(0xbf58476d1ce4e5b9);
  x ^= x >> 27;
  x *= UINT64_C(0x94d049bb133111eb);
  x ^= x >> 31;
  return x;
}

/* Whether the entry in slot `at`, whose home slot is `home`, may move back
 * into the hole at `hole`: it may unless its home lies cyclically after the
 * hole, in (hole, at], where the move would put it before its home. */
static bool map_may_shift(size_t hole, size_t at, size_t home, size_t mask) {
  return ((at - home) & mask) >= ((at - hole) & mask);
}

/* ---- Id map ----------------------------------------------------------- */

void ratchet__idmap_init(ratchet__idmap *m) {
  m->keys = NULL;
  m->vals = NULL;
  m->len = 0;
  m->cap = 0;
}

void ratchet__idmap_free(ratchet__idmap *m) {
  ratchet_free(m->keys);
  ratchet_free(m->vals);
  ratchet__idmap_init(m);
}

/* The slot holding key, or the empty slot where it would go. cap > 0. */
static size_t idmap_slot(const uint64_t *keys, size_t cap, uint64_t key) {
  size_t mask = cap - 1;
  size_t i = (size_t)mix64(key) & mask;
  while (keys[i] != 0 && keys[i] != key)
    i = (i + 1) & mask;
  return i;
}

static int idmap_grow(ratchet__idmap *m) {
  size_t slot =
      sizeof(uint64_t) > sizeof(void *) ? sizeof(uint64_t) : sizeof(void *);
  size_t cap = map_next_cap(m->cap, slot);
  if (cap == 0)
    return -ENOMEM;
  uint64_t *keys = ratchet_calloc(cap, sizeof *keys);
  void **vals = ratchet_calloc(cap, sizeof *vals);
  if (keys == NULL || vals == NULL) {
    ratchet_free(keys);
    ratchet_free(vals);
    return -ENOMEM;
  }
  for (size_t i = 0; i < m->cap; i++) {
    if (m->keys[i] == 0)
      continue;
    size_t j = idmap_slot(keys, cap, m->keys[i]);
    keys[j] = m->keys[i];
    vals[j] = m->vals[i];
  }
  ratchet_free(m->keys);
  ratchet_free(m->vals);
  m->keys = keys;
  m->vals = vals;
  m->cap = cap;
  return 0;
}

int ratchet__idmap_put(ratchet__idmap *m, uint64_t key, void *val) {
  if (key == 0 || val == NULL)
    return -EINVAL;
  if (m->cap > 0) {
    size_t i = idmap_slot(m->keys, m->cap, key);
    if (m->keys[i] == key) {
      m->vals[i] = val; /* a replacement never needs room */
      return 0;
    }
  }
  if (map_needs_growth(m->len, m->cap)) {
    int rc = idmap_grow(m);
    if (rc != 0)
      return rc;
  }
  size_t i = idmap_slot(m->keys, m->cap, key);
  m->keys[i] = key;
  m->vals[i] = val;
  m->len++;
  return 0;
}

void *ratchet__idmap_get(const ratchet__idmap *m, uint64_t key) {
  if (m->cap == 0 || key == 0)
    return NULL;
  size_t i = idmap_slot(m->keys, m->cap, key);
  return m->keys[i] == key ? m->vals[i] : NULL;
}

void *ratchet__idmap_del(ratchet__idmap *m, uint64_t key) {
  if (m->cap == 0 || key == 0)
    return NULL;
  size_t mask = m->cap - 1;
  size_t hole = idmap_slot(m->keys, m->cap, key);
  if (m->keys[hole] != key)
    return NULL;
  void *val = m->vals[hole];
  for (size_t at = (hole + 1) & mask; m->keys[at] != 0; at = (at + 1) & mask) {
    size_t home = (size_t)mix64(m->keys[at]) & mask;
    if (map_may_shift(hole, at, home, mask)) {
      m->keys[hole] = m->keys[at];
      m->vals[hole] = m->vals[at];
      hole = at;
    }
  }
  m->keys[hole] = 0;
  m->vals[hole] = NULL;
  m->len--;
  return val;
}

void ratchet__idmap_foreach(const ratchet__idmap *m,
                            void (*fn)(void *ctx, uint64_t key, void *val),
                            void *ctx) {
  for (size_t i = 0; i < m->cap; i++)
    if (m->keys[i] != 0)
      fn(ctx, m->keys[i], m->vals[i]);
}

/* ---- String map ------------------------------------------------------- */

typedef struct strmap_entry {
  uint64_t hash;
  char *key; /* NULL: an empty slot; else len bytes and a NUL */
  size_t len;
  void *val;
} strmap_entry;

struct ratchet__strmap {
  strmap_entry *e;
  size_t len, cap; /* cap a power of two, or 0 */
};

/* 64-bit FNV-1a, finished with a mix so that the low bits, which pick the
 * slot, depend on every byte. */
static uint64_t strmap_hash(const void *key, size_t len) {
  const unsigned char *p = key;
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= UINT64_C(0x100000001b3);
  }
  return mix64(h);
}

/* The slot holding key, or the empty slot where it would go. cap > 0. */
static size_t strmap_slot(const strmap_entry *e, size_t cap, uint64_t hash,
                          const void *key, size_t len) {
  size_t mask = cap - 1;
  size_t i = (size_t)hash & mask;
  while (e[i].key != NULL && (e[i].hash != hash || e[i].len != len ||
                              (len > 0 && memcmp(e[i].key, key, len) != 0)))
    i = (i + 1) & mask;
  return i;
}

int ratchet__strmap_new(ratchet__strmap **out) {
  ratchet__strmap *m = ratchet_calloc(1, sizeof *m);
  if (m == NULL)
    return -ENOMEM;
  *out = m;
  return 0;
}

void ratchet__strmap_free(ratchet__strmap *m) {
  if (m == NULL)
    return;
  for (size_t i = 0; i < m->cap; i++)
    ratchet_free(m->e[i].key);
  ratchet_free(m->e);
  ratchet_free(m);
}

static int strmap_grow(ratchet__strmap *m) {
  size_t cap = map_next_cap(m->cap, sizeof(strmap_entry));
  if (cap == 0)
    return -ENOMEM;
  strmap_entry *e = ratchet_calloc(cap, sizeof *e);
  if (e == NULL)
    return -ENOMEM;
  size_t mask = cap - 1;
  for (size_t i = 0; i < m->cap; i++) {
    if (m->e[i].key == NULL)
      continue;
    /* Keys are distinct: the first empty slot from home is the place. */
    size_t j = (size_t)m->e[i].hash & mask;
    while (e[j].key != NULL)
      j = (j + 1) & mask;
    e[j] = m->e[i];
  }
  ratchet_free(m->e);
  m->e = e;
  m->cap = cap;
  return 0;
}

int ratchet__strmap_put(ratchet__strmap *m, const void *key, size_t len,
                        void *val) {
  if (val == NULL || (key == NULL && len > 0))
    return -EINVAL;
  uint64_t hash = strmap_hash(key, len);
  if (m->cap > 0) {
    size_t i = strmap_slot(m->e, m->cap, hash, key, len);
    if (m->e[i].key != NULL) {
      m->e[i].val = val; /* a replacement keeps the first key copy */
      return 0;
    }
  }
  if (len == SIZE_MAX)
    return -ENOMEM;
  /* The copy first: growth then cannot fail after the table has moved. */
  char *copy = ratchet_malloc(len + 1);
  if (copy == NULL)
    return -ENOMEM;
  if (len > 0)
    memcpy(copy, key, len);
  copy[len] = '\0';
  if (map_needs_growth(m->len, m->cap)) {
    int rc = strmap_grow(m);
    if (rc != 0) {
      ratchet_free(copy);
      return rc;
    }
  }
  size_t i = strmap_slot(m->e, m->cap, hash, key, len);
  m->e[i].hash = hash;
  m->e[i].key = copy;
  m->e[i].len = len;
  m->e[i].val = val;
  m->len++;
  return 0;
}

void *ratchet__strmap_get(const ratchet__strmap *m, const void *key,
                          size_t len) {
  if (m->cap == 0 || (key == NULL && len > 0))
    return NULL;
  size_t i = strmap_slot(m->e, m->cap, strmap_hash(key, len), key, len);
  return m->e[i].key != NULL ? m->e[i].val : NULL;
}

void *ratchet__strmap_del(ratchet__strmap *m, const void *key, size_t len) {
  if (m->cap == 0 || (key == NULL && len > 0))
    return NULL;
  size_t mask = m->cap - 1;
  size_t hole = strmap_slot(m->e, m->cap, strmap_hash(key, len), key, len);
  if (m->e[hole].key == NULL)
    return NULL;
  void *val = m->e[hole].val;
  ratchet_free(m->e[hole].key);
  for (size_t at = (hole + 1) & mask; m->e[at].key != NULL;
       at = (at + 1) & mask) {
    if (map_may_shift(hole, at, (size_t)m->e[at].hash & mask, mask)) {
      m->e[hole] = m->e[at];
      hole = at;
    }
  }
  memset(&m->e[hole], 0, sizeof m->e[hole]);
  m->len--;
  return val;
}

size_t ratchet__strmap_len(const ratchet__strmap *m) {
  return m->len;
}

void ratchet__strmap_foreach(const ratchet__strmap *m,
                             void (*fn)(void *ctx, const void *key, size_t len,
                                        void *val),
                             void *ctx) {
  for (size_t i = 0; i < m->cap; i++)
    if (m->e[i].key != NULL)
      fn(ctx, m->e[i].key, m->e[i].len, m->e[i].val);
}

int ratchet__strmap_remove_if(ratchet__strmap *m,
                              bool (*pred)(void *ctx, const void *key,
                                           size_t len, void *val),
                              void *ctx) {
  if (m->len == 0)
    return 0;
  /* Deleting shifts entries back, so the matches are found first and
   * deleted after: the keys are the map's own until then. */
  size_t *hits = ratchet_malloc(m->len * sizeof *hits), n = 0;
  if (hits == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < m->cap; i++)
    if (m->e[i].key != NULL)
      hits[n++] = i;
  size_t k = 0;
  for (size_t j = 0; j < n; j++) {
    strmap_entry *e = &m->e[hits[j]];
    if (pred(ctx, e->key, e->len, e->val))
      hits[k++] = hits[j];
  }
  /* Copy the chosen keys out before any deletion moves entries. */
  void **keys = ratchet_malloc((k ? k : 1) * sizeof *keys);
  size_t *lens = ratchet_malloc((k ? k : 1) * sizeof *lens);
  if (keys == NULL || lens == NULL) {
    ratchet_free(keys);
    ratchet_free(lens);
    ratchet_free(hits);
    return -ENOMEM;
  }
  for (size_t j = 0; j < k; j++) {
    keys[j] = m->e[hits[j]].key;
    lens[j] = m->e[hits[j]].len;
  }
  int removed = 0;
  for (size_t j = 0; j < k; j++) {
    /* The key pointer stays valid until its own entry is deleted: entries
     * move, their key copies do not. */
    unsigned char tmp[64];
    void *copy = lens[j] <= sizeof tmp ? tmp : ratchet_malloc(lens[j]);
    if (copy == NULL)
      continue;
    memcpy(copy, keys[j], lens[j]);
    if (ratchet__strmap_del(m, copy, lens[j]) != NULL)
      removed++;
    if (copy != tmp)
      ratchet_free(copy);
  }
  ratchet_free(keys);
  ratchet_free(lens);
  ratchet_free(hits);
  return removed;
}
