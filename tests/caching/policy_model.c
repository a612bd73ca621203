/*
 * policy_model.c - the four policies transcribed from the reference text as
 * plainly as possible, sharing nothing with the library: arrays instead of
 * lists (index 0 is the head, the newest), linear search, memmove to insert
 * at the head, and S3-FIFO's count kept exactly as the text says (count += 1,
 * unbounded; min(count, 3) at eviction). O(n) per request, which is the
 * point: it is too simple to share a bug with the O(1) code.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "policy_model.h"

struct obj {
  uint64_t id, size;
  unsigned long count; /* S3-FIFO count, SIEVE visited */
};

struct queue {
  struct obj *o;
  size_t n, cap;
  uint64_t bytes;
};

struct tm_model {
  ratchet_cache_policy policy;
  uint64_t C, S, M, G, max_entries;
  struct queue small, main, ghost; /* single-queue policies use main */
  long hand;                       /* SIEVE: index in main, -1 = tail */
  uint64_t *evicted;
  size_t nevicted, evicted_cap;
};

static long find(const struct queue *q, uint64_t id) {
  for (size_t i = 0; i < q->n; i++)
    if (q->o[i].id == id)
      return (long)i;
  return -1;
}

static void push_head(struct queue *q, struct obj o) {
  if (q->n == q->cap) {
    q->cap = q->cap ? q->cap * 2 : 16;
    q->o = realloc(q->o, q->cap * sizeof *q->o);
    if (q->o == NULL)
      abort();
  }
  memmove(q->o + 1, q->o, q->n * sizeof *q->o);
  q->o[0] = o;
  q->n++;
  q->bytes += o.size;
}

static struct obj take(struct queue *q, size_t i) {
  struct obj o = q->o[i];
  memmove(q->o + i, q->o + i + 1, (q->n - i - 1) * sizeof *q->o);
  q->n--;
  q->bytes -= o.size;
  return o;
}

static void log_eviction(tm_model *m, uint64_t id) {
  if (m->nevicted == m->evicted_cap) {
    m->evicted_cap = m->evicted_cap ? m->evicted_cap * 2 : 64;
    m->evicted = realloc(m->evicted, m->evicted_cap * sizeof *m->evicted);
    if (m->evicted == NULL)
      abort();
  }
  m->evicted[m->nevicted++] = id;
}

tm_model *tm_model_new(ratchet_cache_policy policy, uint64_t capacity,
                       uint64_t max_entries) {
  tm_model *m = calloc(1, sizeof *m);
  if (m == NULL)
    return NULL;
  m->policy = policy;
  m->C = capacity;
  /* trunc(C * 0.1) and trunc(C * 0.9), in long double to stay exact for
   * the capacities the tests use. */
  m->S = (uint64_t)((long double)capacity * 0.1L);
  m->M = capacity - m->S;
  m->G = (uint64_t)((long double)capacity * 0.9L);
  m->max_entries = max_entries;
  m->hand = -1;
  return m;
}

void tm_model_free(tm_model *m) {
  if (m == NULL)
    return;
  free(m->small.o);
  free(m->main.o);
  free(m->ghost.o);
  free(m->evicted);
  free(m);
}

const uint64_t *tm_model_evictions(const tm_model *m, size_t *n) {
  *n = m->nevicted;
  return m->evicted;
}

uint64_t tm_model_bytes(const tm_model *m) {
  return m->small.bytes + m->main.bytes;
}

uint64_t tm_model_objects(const tm_model *m) {
  return m->small.n + m->main.n;
}

uint64_t tm_model_ghost_bytes(const tm_model *m) {
  return m->ghost.bytes;
}

static int must_make_room(const tm_model *m, uint64_t size) {
  return m->small.bytes + m->main.bytes + size > m->C ||
         (m->max_entries != 0 && m->small.n + m->main.n + 1 > m->max_entries);
}

/* ---- FIFO, LRU, SIEVE --------------------------------------------------- */

static void sieve_evict(tm_model *m) {
  struct queue *q = &m->main;
  long i = m->hand >= 0 ? m->hand : (long)q->n - 1;
  while (q->o[i].count != 0) {
    q->o[i].count = 0;
    i = i - 1 >= 0 ? i - 1 : (long)q->n - 1; /* toward the head, wrapping */
  }
  struct obj o = take(q, (size_t)i);
  m->hand = i - 1; /* the next newer object; -1 (none): start at the tail */
  log_eviction(m, o.id);
}

static int access_simple(tm_model *m, uint64_t id, uint64_t size) {
  struct queue *q = &m->main;
  long i = find(q, id);
  if (i >= 0) {
    if (m->policy == RATCHET_CACHE_LRU)
      push_head(q, take(q, (size_t)i));
    else if (m->policy == RATCHET_CACHE_SIEVE)
      q->o[i].count = 1;
    return 1;
  }
  if (size > m->C)
    return 0;
  while (must_make_room(m, size)) {
    if (m->policy == RATCHET_CACHE_SIEVE)
      sieve_evict(m);
    else
      log_eviction(m, take(q, q->n - 1).id);
  }
  push_head(q, (struct obj){id, size, 0});
  if (m->policy == RATCHET_CACHE_SIEVE && m->hand >= 0)
    m->hand++; /* the hand stays on its object, which moved one index */
  return 0;
}

/* ---- S3-FIFO ------------------------------------------------------------ */

static void ghost_insert(tm_model *m, uint64_t id, uint64_t size) {
  if (find(&m->ghost, id) >= 0 || size > m->G)
    return;
  while (m->ghost.bytes + size > m->G)
    take(&m->ghost, m->ghost.n - 1);
  push_head(&m->ghost, (struct obj){id, size, 0});
}

/* Returns 1 if it evicted an object, 0 if small ran empty first. */
static int evict_small(tm_model *m) {
  while (m->small.n > 0) {
    struct obj o = take(&m->small, m->small.n - 1);
    if (o.count >= 2) {
      o.count = 0;
      push_head(&m->main, o);
      continue;
    }
    ghost_insert(m, o.id, o.size);
    log_eviction(m, o.id);
    return 1;
  }
  return 0;
}

static void evict_main(tm_model *m) {
  for (;;) {
    struct obj o = take(&m->main, m->main.n - 1);
    if (o.count >= 1) {
      o.count = (o.count < 3 ? o.count : 3) - 1;
      push_head(&m->main, o);
      continue;
    }
    log_eviction(m, o.id);
    return;
  }
}

static int access_s3fifo(tm_model *m, uint64_t id, uint64_t size) {
  long i = find(&m->small, id);
  if (i >= 0) {
    m->small.o[i].count += 1;
    return 1;
  }
  int ghost_hit = 0;
  i = find(&m->ghost, id);
  if (i >= 0) {
    take(&m->ghost, (size_t)i);
    ghost_hit = 1;
  }
  i = find(&m->main, id);
  if (i >= 0) {
    m->main.o[i].count += 1;
    return 1;
  }
  if (size > m->S)
    return 0;
  while (must_make_room(m, size)) {
    if (m->main.bytes > m->M || m->small.n == 0)
      evict_main(m);
    else
      evict_small(m);
  }
  if (ghost_hit)
    push_head(&m->main, (struct obj){id, size, 0});
  else if (size < m->S)
    push_head(&m->small, (struct obj){id, size, 0});
  return 0;
}

int tm_model_access(tm_model *m, uint64_t id, uint64_t size) {
  if (m->policy == RATCHET_CACHE_S3FIFO)
    return access_s3fifo(m, id, size);
  return access_simple(m, id, size);
}

/* ---- traces ------------------------------------------------------------- */

uint64_t tm_rand(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * UINT64_C(2685821657736338717);
}

static uint32_t size_of(uint64_t id, uint32_t lo, uint32_t hi) {
  uint64_t s = id * UINT64_C(0x9e3779b97f4a7c15);
  s ^= s >> 29;
  return lo + (uint32_t)(s % ((uint64_t)hi - lo + 1));
}

tm_req *tm_trace_zipf(size_t n, uint64_t objects, double alpha,
                      uint32_t min_size, uint32_t max_size, uint64_t seed) {
  double *cdf = malloc(objects * sizeof *cdf);
  tm_req *t = malloc(n * sizeof *t);
  if (cdf == NULL || t == NULL)
    abort();
  double sum = 0;
  for (uint64_t k = 0; k < objects; k++)
    cdf[k] = sum += 1.0 / pow((double)(k + 1), alpha);
  uint64_t st = seed * 2 + 1;
  for (size_t i = 0; i < n; i++) {
    double u = (double)(tm_rand(&st) >> 11) / 9007199254740992.0 * sum;
    uint64_t lo = 0, hi = objects - 1;
    while (lo < hi) {
      uint64_t mid = (lo + hi) / 2;
      if (cdf[mid] < u)
        lo = mid + 1;
      else
        hi = mid;
    }
    t[i].id = lo + 1;
    t[i].size = size_of(lo + 1, min_size, max_size);
  }
  free(cdf);
  return t;
}

tm_req *tm_trace_loop(uint64_t first, uint64_t objects, size_t rounds,
                      uint32_t size) {
  tm_req *t = malloc(objects * rounds * sizeof *t);
  if (t == NULL)
    abort();
  for (size_t r = 0; r < rounds; r++)
    for (uint64_t k = 0; k < objects; k++)
      t[r * objects + k] = (tm_req){first + k, size};
  return t;
}

tm_req *tm_trace_zipf_scan(size_t zipf_n, uint64_t objects, double alpha,
                           uint64_t scan, uint32_t size, uint64_t seed,
                           size_t *n) {
  tm_req *z = tm_trace_zipf(zipf_n, objects, alpha, size, size, seed);
  tm_req *t = malloc((zipf_n + scan) * sizeof *t);
  if (t == NULL)
    abort();
  size_t half = zipf_n / 2;
  memcpy(t, z, half * sizeof *t);
  for (uint64_t k = 0; k < scan; k++)
    t[half + k] = (tm_req){UINT64_C(1) << 40 | k, size};
  memcpy(t + half + scan, z + half, (zipf_n - half) * sizeof *t);
  free(z);
  *n = zipf_n + scan;
  return t;
}
