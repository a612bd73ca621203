/*
 * singleflight.c - one computation per key, for callbacks and for threads.
 *
 * A flight is one record per key in progress, found through a chained hash
 * table (xxh3-64 of the key) under the group's mutex. It lists the tickets
 * of callback callers in join order and counts the blocked threads through
 * its reference count. When the leader completes - ratchet_singleflight_
 * finish for a callback leader, the return of fn for a blocking one - the
 * flight leaves the table first (so a callback that joins the same key
 * starts a new flight), is marked done (which wakes the blocked threads),
 * and then its tickets are popped one at a time under the mutex and their
 * callbacks called without it, so a callback may leave a ticket that has
 * not been called yet or join anything.
 *
 * The flight doubles as the blocking API's result: it is reference-counted
 * (one reference while in progress, one per blocking caller), and the last
 * release destroys the value and frees the flight. The condition variable
 * is created only when a thread first waits on the flight, so flights that
 * only callbacks use cost one allocation for the flight and one per ticket.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <xxhash.h>

#include "ratchet/alloc.h"
#include "ratchet/singleflight.h"

struct ratchet_singleflight_ticket {
  struct ratchet_singleflight_result *flight;
  ratchet_singleflight_cb cb;
  void *ctx;
  struct ratchet_singleflight_ticket *prev, *next;
  bool leader;
};

struct ratchet_singleflight_result {
  struct ratchet_singleflight_result *hnext;
  uint64_t hash;
  struct ratchet_singleflight_ticket *head, *tail;
  pthread_cond_t cond;
  bool cond_ready, done, shared;
  size_t refs, callers;
  int status;
  void *value;
  size_t size;
  size_t klen;
  unsigned char key[];
};

typedef struct ratchet_singleflight_result flight;
typedef struct ratchet_singleflight_ticket ticket;

struct ratchet_singleflight {
  pthread_mutex_t lock;
  flight **buckets;
  size_t nbuckets, count;
  ratchet_singleflight_destroy_fn destroy;
  void *destroy_ctx;
};

#define INITIAL_BUCKETS 16

int ratchet_singleflight_new(const ratchet_singleflight_options *o,
                             ratchet_singleflight **out) {
  if (out == NULL)
    return -EINVAL;
  ratchet_singleflight *g = ratchet_calloc(1, sizeof *g);
  if (g == NULL)
    return -ENOMEM;
  g->buckets = ratchet_calloc(INITIAL_BUCKETS, sizeof *g->buckets);
  if (g->buckets == NULL || pthread_mutex_init(&g->lock, NULL) != 0) {
    ratchet_free(g->buckets);
    ratchet_free(g);
    return -ENOMEM;
  }
  g->nbuckets = INITIAL_BUCKETS;
  if (o != NULL) {
    g->destroy = o->destroy;
    g->destroy_ctx = o->destroy_ctx;
  }
  *out = g;
  return 0;
}

void ratchet_singleflight_free(ratchet_singleflight *g) {
  if (g == NULL)
    return;
  pthread_mutex_destroy(&g->lock);
  ratchet_free(g->buckets);
  ratchet_free(g);
}

size_t ratchet_singleflight_inflight(ratchet_singleflight *g) {
  pthread_mutex_lock(&g->lock);
  size_t n = g->count;
  pthread_mutex_unlock(&g->lock);
  return n;
}

/* ---- the table (called with the lock held) ---- */

static flight *find(ratchet_singleflight *g, const void *key, size_t len,
                    uint64_t h) {
  for (flight *f = g->buckets[h & (g->nbuckets - 1)]; f != NULL; f = f->hnext)
    if (f->hash == h && f->klen == len && memcmp(f->key, key, len) == 0)
      return f;
  return NULL;
}

/* Doubles the table when it is full; a failure only lengthens chains. */
static void maybe_grow(ratchet_singleflight *g) {
  if (g->count < g->nbuckets || g->nbuckets > SIZE_MAX / 2 / sizeof(flight *))
    return;
  size_t n = g->nbuckets * 2;
  flight **b = ratchet_calloc(n, sizeof *b);
  if (b == NULL)
    return;
  for (size_t i = 0; i < g->nbuckets; i++) {
    flight *f = g->buckets[i], *next;
    for (; f != NULL; f = next) {
      next = f->hnext;
      f->hnext = b[f->hash & (n - 1)];
      b[f->hash & (n - 1)] = f;
    }
  }
  ratchet_free(g->buckets);
  g->buckets = b;
  g->nbuckets = n;
}

static flight *start(ratchet_singleflight *g, const void *key, size_t len,
                     uint64_t h) {
  if (len > SIZE_MAX - sizeof(flight))
    return NULL;
  flight *f = ratchet_calloc(1, sizeof *f + len);
  if (f == NULL)
    return NULL;
  f->hash = h;
  f->klen = len;
  if (len)
    memcpy(f->key, key, len);
  f->refs = 1; /* the flight's own, until it completes */
  f->callers = 1;
  maybe_grow(g);
  flight **b = &g->buckets[h & (g->nbuckets - 1)];
  f->hnext = *b;
  *b = f;
  g->count++;
  return f;
}

static void unlink_flight(ratchet_singleflight *g, flight *f) {
  for (flight **p = &g->buckets[f->hash & (g->nbuckets - 1)]; *p != NULL;
       p = &(*p)->hnext)
    if (*p == f) {
      *p = f->hnext;
      g->count--;
      return;
    }
}

static void append(flight *f, ticket *t) {
  t->flight = f;
  t->next = NULL;
  t->prev = f->tail;
  if (f->tail != NULL)
    f->tail->next = t;
  else
    f->head = t;
  f->tail = t;
}

static void remove_ticket(flight *f, ticket *t) {
  if (t->prev != NULL)
    t->prev->next = t->next;
  else
    f->head = t->next;
  if (t->next != NULL)
    t->next->prev = t->prev;
  else
    f->tail = t->prev;
}

size_t ratchet_singleflight_waiting(ratchet_singleflight *g, const void *key,
                                    size_t len) {
  if (g == NULL || (key == NULL && len != 0))
    return 0;
  uint64_t h = XXH3_64bits(len ? key : "", len);
  pthread_mutex_lock(&g->lock);
  flight *f = find(g, key, len, h);
  size_t n = f != NULL ? f->callers - 1 : 0;
  pthread_mutex_unlock(&g->lock);
  return n;
}

/* ---- completion and references ---- */

static void destroy_flight(ratchet_singleflight *g, flight *f) {
  if (g->destroy != NULL && f->value != NULL)
    g->destroy(g->destroy_ctx, f->value, f->size);
  if (f->cond_ready)
    pthread_cond_destroy(&f->cond);
  ratchet_free(f);
}

/* Drops one reference; frees the flight when it was the last. */
static void unref(ratchet_singleflight *g, flight *f) {
  pthread_mutex_lock(&g->lock);
  bool last = --f->refs == 0;
  pthread_mutex_unlock(&g->lock);
  if (last)
    destroy_flight(g, f);
}

/* Ends flight f with the leader's result: see the file's comment. */
static void complete(ratchet_singleflight *g, flight *f, int status,
                     void *value, size_t size) {
  pthread_mutex_lock(&g->lock);
  unlink_flight(g, f);
  f->status = status;
  f->value = value;
  f->size = size;
  f->shared = f->callers > 1;
  f->done = true;
  if (f->cond_ready)
    pthread_cond_broadcast(&f->cond);
  for (;;) {
    ticket *t = f->head;
    if (t == NULL)
      break;
    remove_ticket(f, t);
    pthread_mutex_unlock(&g->lock);
    if (t->cb != NULL)
      t->cb(t->ctx, status, value, size);
    ratchet_free(t);
    pthread_mutex_lock(&g->lock);
  }
  pthread_mutex_unlock(&g->lock);
  unref(g, f);
}

/* ---- callbacks ---- */

int ratchet_singleflight_join(ratchet_singleflight *g, const void *key,
                              size_t len, ratchet_singleflight_cb cb, void *ctx,
                              ratchet_singleflight_ticket **out) {
  if (g == NULL || (key == NULL && len != 0) || out == NULL)
    return -EINVAL;
  uint64_t h = XXH3_64bits(len ? key : "", len);
  ticket *t = ratchet_calloc(1, sizeof *t);
  if (t == NULL)
    return -ENOMEM;
  t->cb = cb;
  t->ctx = ctx;
  pthread_mutex_lock(&g->lock);
  flight *f = find(g, key, len, h);
  if (f == NULL) {
    f = start(g, key, len, h);
    if (f == NULL) {
      pthread_mutex_unlock(&g->lock);
      ratchet_free(t);
      return -ENOMEM;
    }
    t->leader = true;
  } else {
    f->callers++;
  }
  append(f, t);
  pthread_mutex_unlock(&g->lock);
  *out = t;
  return t->leader ? RATCHET_SINGLEFLIGHT_LEADER
                   : RATCHET_SINGLEFLIGHT_FOLLOWER;
}

int ratchet_singleflight_finish(ratchet_singleflight *g,
                                ratchet_singleflight_ticket *t, int status,
                                void *value, size_t size) {
  if (g == NULL || t == NULL || !t->leader)
    return -EINVAL;
  /* The ticket is freed with the others, after its callback. */
  complete(g, t->flight, status, value, size);
  return 0;
}

int ratchet_singleflight_leave(ratchet_singleflight *g,
                               ratchet_singleflight_ticket *t) {
  if (g == NULL || t == NULL || t->leader)
    return -EINVAL;
  pthread_mutex_lock(&g->lock);
  remove_ticket(t->flight, t);
  t->flight->callers--;
  pthread_mutex_unlock(&g->lock);
  ratchet_free(t);
  return 0;
}

/* ---- blocking ---- */

int ratchet_singleflight_do(ratchet_singleflight *g, const void *key,
                            size_t len, ratchet_singleflight_fn fn, void *ctx,
                            ratchet_singleflight_result **result) {
  if (g == NULL || (key == NULL && len != 0) || fn == NULL || result == NULL)
    return -EINVAL;
  uint64_t h = XXH3_64bits(len ? key : "", len);
  pthread_mutex_lock(&g->lock);
  flight *f = find(g, key, len, h);
  if (f == NULL) {
    f = start(g, key, len, h);
    if (f == NULL) {
      pthread_mutex_unlock(&g->lock);
      return -ENOMEM;
    }
    f->refs++; /* the leader's result */
    pthread_mutex_unlock(&g->lock);
    void *value = NULL;
    size_t size = 0;
    int status = fn(ctx, &value, &size);
    complete(g, f, status, value, size);
    *result = f;
    return 0;
  }
  if (!f->cond_ready) {
    if (pthread_cond_init(&f->cond, NULL) != 0) {
      pthread_mutex_unlock(&g->lock);
      return -ENOMEM;
    }
    f->cond_ready = true;
  }
  f->refs++;
  f->callers++;
  while (!f->done)
    pthread_cond_wait(&f->cond, &g->lock);
  pthread_mutex_unlock(&g->lock);
  *result = f;
  return 0;
}

int ratchet_singleflight_status(const ratchet_singleflight_result *r) {
  return r->status;
}

const void *ratchet_singleflight_value(const ratchet_singleflight_result *r,
                                       size_t *size) {
  if (size != NULL)
    *size = r->size;
  return r->value;
}

int ratchet_singleflight_shared(const ratchet_singleflight_result *r) {
  return r->shared;
}

void ratchet_singleflight_release(ratchet_singleflight *g,
                                  ratchet_singleflight_result *r) {
  if (g == NULL || r == NULL)
    return;
  unref(g, r);
}
