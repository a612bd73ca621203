/*
 * acct.c - the orchestrator's kind table and accounting (acct.h), and the
 * snapshot functions of ratchet/accounting.h.
 *
 * A kind is one allocation: its numbers, the orchestrator's user slot and
 * its name, which never moves, so the pointer interning hands out stays
 * valid for the table's life. Two structures reach the kinds. A string map
 * from name to kind serves interning; it is read and written by the loop
 * thread only, so lookups of known kinds take no lock. An array of kinds in
 * first-seen order serves snapshots, which may run on any thread; it is
 * written by the loop thread only, and only with the mutex held.
 *
 * The mutex therefore guards: the array (pointer, length, capacity), the
 * total length of the names, and every kind's counters and histograms. The
 * loop thread may read the array without it, as no other thread writes it.
 * A kind's name is written before the kind is published into the array
 * under the mutex, so a snapshot that finds the kind there also sees its
 * name. Interning does all its allocation before it takes the mutex: it
 * makes the kind, a bigger array when the old one is full (copied from the
 * old one, which the loop thread alone may change), and the map entry, and
 * then only swaps the array and appends under the lock. When an allocation
 * fails nothing has been published and the table is unchanged.
 *
 * A snapshot is one block: the ratchet_stats, its kinds, and their names.
 * Its size is read under the mutex, the block allocated without it, and the
 * copy made under it again, provided no kind arrived meanwhile that does
 * not fit (otherwise it retries with more room). Totals are summed after
 * the mutex is released, from the copy. Recording is a few additions and
 * histogram updates under the mutex, which only snapshots contend for.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "acct.h"
#include "containers.h"
#include "ratchet/alloc.h"

/* The longest kind name interning accepts. */
#define KIND_NAME_MAX 1024

/* The first kind array, in kinds. */
#define KINDS_INITIAL_CAP 8

struct ratchet__kind {
  void *user; /* the orchestrator's; loop thread only */
  uint64_t counters[RATCHET_COUNTER_COUNT];
  ratchet_status_stats by_status[RATCHET_STATUS_COUNT];
  size_t len;
  char name[]; /* len bytes and a NUL */
};

struct ratchet__acct {
  pthread_mutex_t mu;
  ratchet__strmap *by_name; /* loop thread only */
  ratchet__kind **kinds;    /* first-seen order; written under mu */
  size_t n, cap;            /* written under mu */
  size_t names_size;        /* sum of len + 1 over kinds; under mu */
};

/* A snapshot's block: kinds[] is followed by the kinds' names. */
typedef struct snapshot_block {
  ratchet_stats s; /* first: ratchet_stats_free frees s */
  ratchet_kind_stats kinds[];
} snapshot_block;

static const char *const counter_names[RATCHET_COUNTER_COUNT] = {
    "submitted",    "attempts",  "retries",  "lost",        "cache_hits",
    "cache_misses", "coalesced", "deferred", "dead_letters"};

const char *ratchet_counter_name(ratchet_counter c) {
  if ((unsigned)c >= RATCHET_COUNTER_COUNT)
    return "unknown";
  return counter_names[c];
}

int ratchet__acct_new(ratchet__acct **out) {
  int rc = -ENOMEM;
  ratchet__acct *a = ratchet_calloc(1, sizeof *a);
  if (a == NULL)
    return -ENOMEM;
  if ((rc = ratchet__strmap_new(&a->by_name)) != 0)
    goto fail;
  if ((rc = -pthread_mutex_init(&a->mu, NULL)) != 0)
    goto fail;
  *out = a;
  return 0;
fail:
  ratchet__strmap_free(a->by_name);
  ratchet_free(a);
  return rc;
}

void ratchet__acct_free(ratchet__acct *a) {
  if (a == NULL)
    return;
  for (size_t i = 0; i < a->n; i++)
    ratchet_free(a->kinds[i]);
  ratchet_free(a->kinds);
  ratchet__strmap_free(a->by_name);
  pthread_mutex_destroy(&a->mu);
  ratchet_free(a);
}

ratchet__kind *ratchet__acct_kind(ratchet__acct *a, const char *name,
                                  size_t len) {
  if (len > KIND_NAME_MAX || (name == NULL && len > 0))
    return NULL;
  ratchet__kind *k = ratchet__strmap_get(a->by_name, name, len);
  if (k != NULL)
    return k;

  ratchet__kind **grown = NULL, **old = NULL;
  size_t cap = a->cap;
  k = ratchet_calloc(1, sizeof *k + len + 1);
  if (k == NULL)
    goto fail;
  if (len > 0)
    memcpy(k->name, name, len);
  k->name[len] = '\0';
  k->len = len;
  if (a->n == a->cap) {
    cap = a->cap == 0 ? KINDS_INITIAL_CAP : a->cap * 2;
    if (cap > SIZE_MAX / sizeof *grown)
      goto fail;
    grown = ratchet_malloc(cap * sizeof *grown);
    if (grown == NULL)
      goto fail;
    /* Unlocked read: only this (the loop) thread changes the array. */
    if (a->n > 0)
      memcpy(grown, a->kinds, a->n * sizeof *grown);
  }
  if (ratchet__strmap_put(a->by_name, name, len, k) != 0)
    goto fail;

  pthread_mutex_lock(&a->mu);
  if (grown != NULL) {
    old = a->kinds;
    a->kinds = grown;
    a->cap = cap;
  }
  a->kinds[a->n++] = k;
  a->names_size += len + 1;
  pthread_mutex_unlock(&a->mu);
  /* No snapshot can be reading the old array: they read it under mu. */
  ratchet_free(old);
  return k;

fail:
  ratchet_free(grown);
  ratchet_free(k);
  return NULL;
}

const char *ratchet__kind_name(const ratchet__kind *k) {
  return k->name;
}

size_t ratchet__kind_len(const ratchet__kind *k) {
  return k->len;
}

void **ratchet__kind_user(ratchet__kind *k) {
  return &k->user;
}

void ratchet__acct_count(ratchet__acct *a, ratchet__kind *k, ratchet_counter c,
                         uint64_t n) {
  if ((unsigned)c >= RATCHET_COUNTER_COUNT)
    return;
  pthread_mutex_lock(&a->mu);
  k->counters[c] += n;
  pthread_mutex_unlock(&a->mu);
}

void ratchet__acct_final(ratchet__acct *a, ratchet__kind *k, ratchet_status s,
                         bool ran, uint64_t queue_wait_ns, uint64_t run_ns,
                         uint64_t end_to_end_ns) {
  if ((unsigned)s >= RATCHET_STATUS_COUNT)
    return;
  pthread_mutex_lock(&a->mu);
  ratchet_status_stats *st = &k->by_status[s];
  st->count++;
  ratchet_histogram_record(&st->end_to_end, end_to_end_ns);
  if (ran) {
    ratchet_histogram_record(&st->queue_wait, queue_wait_ns);
    ratchet_histogram_record(&st->run, run_ns);
  }
  pthread_mutex_unlock(&a->mu);
}

/* The block size for n kinds with names_size bytes of names, or 0 when it
 * does not fit in a size_t. */
static size_t snapshot_size(size_t n, size_t names_size) {
  size_t head = offsetof(snapshot_block, kinds);
  if (n > (SIZE_MAX - head) / sizeof(ratchet_kind_stats))
    return 0;
  size_t size = head + n * sizeof(ratchet_kind_stats);
  if (names_size > SIZE_MAX - size)
    return 0;
  return size + names_size;
}

/* Adds src's numbers to dst's. */
static void kind_stats_add(ratchet_kind_stats *dst,
                           const ratchet_kind_stats *src) {
  for (unsigned c = 0; c < RATCHET_COUNTER_COUNT; c++)
    dst->counters[c] += src->counters[c];
  for (unsigned s = 0; s < RATCHET_STATUS_COUNT; s++) {
    ratchet_status_stats *d = &dst->by_status[s];
    const ratchet_status_stats *from = &src->by_status[s];
    d->count += from->count;
    ratchet_histogram_merge(&d->queue_wait, &from->queue_wait);
    ratchet_histogram_merge(&d->run, &from->run);
    ratchet_histogram_merge(&d->end_to_end, &from->end_to_end);
  }
}

int ratchet__acct_snapshot(ratchet__acct *a, const ratchet__gauges *g,
                           ratchet_stats **out) {
  pthread_mutex_lock(&a->mu);
  size_t n_room = a->n, names_room = a->names_size;
  pthread_mutex_unlock(&a->mu);

  snapshot_block *b;
  size_t n;
  for (;;) {
    size_t size = snapshot_size(n_room, names_room);
    if (size == 0)
      return -ENOMEM;
    b = ratchet_calloc(1, size);
    if (b == NULL)
      return -ENOMEM;
    pthread_mutex_lock(&a->mu);
    n = a->n;
    if (n <= n_room && a->names_size <= names_room)
      break; /* with mu held */
    /* Kinds arrived while the block was allocated: retry with room to
     * spare, so that a busy interning thread cannot starve the snapshot. */
    n_room = a->n * 2;
    names_room = a->names_size * 2;
    pthread_mutex_unlock(&a->mu);
    ratchet_free(b);
  }

  char *names = (char *)&b->kinds[n_room];
  for (size_t i = 0; i < n; i++) {
    const ratchet__kind *k = a->kinds[i];
    ratchet_kind_stats *ks = &b->kinds[i];
    memcpy(names, k->name, k->len + 1);
    ks->kind = names;
    names += k->len + 1;
    memcpy(ks->counters, k->counters, sizeof ks->counters);
    memcpy(ks->by_status, k->by_status, sizeof ks->by_status);
  }
  pthread_mutex_unlock(&a->mu);

  ratchet_stats *s = &b->s;
  if (g != NULL) {
    s->taken_ns = g->taken_ns;
    s->queued = g->queued;
    s->delayed = g->delayed;
    s->in_flight = g->in_flight;
    s->workers_ready = g->workers_ready;
  }
  s->n_kinds = n;
  s->kinds = b->kinds;
  s->total.kind = "";
  for (size_t i = 0; i < n; i++)
    kind_stats_add(&s->total, &b->kinds[i]);
  *out = s;
  return 0;
}

const ratchet_kind_stats *ratchet_stats_kind(const ratchet_stats *s,
                                             const char *kind) {
  if (s == NULL || kind == NULL)
    return NULL;
  for (size_t i = 0; i < s->n_kinds; i++)
    if (strcmp(s->kinds[i].kind, kind) == 0)
      return &s->kinds[i];
  return NULL;
}

void ratchet_stats_free(ratchet_stats *s) {
  /* s is the first member of its snapshot_block: one allocation. */
  ratchet_free(s);
}
