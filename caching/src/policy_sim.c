/*
 * policy_sim.c - ratchet_cache_sim: the policies of policy.c over bare
 * (id, size) objects, for ratchet-cachesim and for tests that compare the
 * policies with a model.
 *
 * An id map (policy_ghost.c) takes an id to its node; evicted nodes go to a
 * free list and are reused, so a simulation in steady state allocates
 * nothing. An access is what the reference calls a request: look up; on a
 * hit tell the policy; on a miss ask the policy whether to admit, evict while
 * the object does not fit, and insert. Everything that can fail for memory is
 * done before the first eviction, except growing the ghost queue, which is
 * reserved before each eviction so that no ghost entry is silently lost.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "policy.h"
#include "ratchet/alloc.h"
#include "ratchet/cache_policy.h"

struct ratchet_cache_sim {
  ratchet__policy policy;
  ratchet__idmap map;         /* id -> (uintptr_t)node */
  ratchet__pnode *free_nodes; /* linked through `older` */
  ratchet_cache_sim_evict_fn on_evict;
  void *on_evict_ctx;
  uint64_t requests, hits, misses, refused, evictions;
};

int ratchet_cache_sim_new(const ratchet_cache_sim_options *o,
                          ratchet_cache_sim **out) {
  if (o == NULL || out == NULL || (unsigned)o->policy > RATCHET_CACHE_FIFO ||
      o->capacity_bytes == 0)
    return -EINVAL;
  ratchet_cache_sim *s = ratchet_calloc(1, sizeof *s);
  if (s == NULL)
    return -ENOMEM;
  ratchet__policy_init(&s->policy, o->policy, o->capacity_bytes,
                       o->max_entries);
  ratchet__idmap_init(&s->map);
  s->on_evict = o->on_evict;
  s->on_evict_ctx = o->on_evict_ctx;
  *out = s;
  return 0;
}

static void free_list(ratchet__pnode *n) {
  while (n != NULL) {
    ratchet__pnode *next = n->older;
    ratchet_free(n);
    n = next;
  }
}

void ratchet_cache_sim_free(ratchet_cache_sim *s) {
  if (s == NULL)
    return;
  free_list(s->policy.small.head);
  free_list(s->policy.main.head);
  free_list(s->free_nodes);
  ratchet__idmap_destroy(&s->map);
  ratchet__policy_destroy(&s->policy);
  ratchet_free(s);
}

static ratchet__pnode *take_node(ratchet_cache_sim *s) {
  ratchet__pnode *n = s->free_nodes;
  if (n != NULL) {
    s->free_nodes = n->older;
    return n;
  }
  n = ratchet_malloc(sizeof *n);
  if (n != NULL) {
    memset(n, 0, sizeof *n);
    atomic_init(&n->freq, 0);
  }
  return n;
}

static void give_node(ratchet_cache_sim *s, ratchet__pnode *n) {
  n->older = s->free_nodes;
  s->free_nodes = n;
}

int ratchet_cache_sim_access(ratchet_cache_sim *s, uint64_t id, uint64_t size) {
  s->requests++;
  ratchet__pnode *n =
      (ratchet__pnode *)(uintptr_t)ratchet__idmap_get(&s->map, id);
  if (n != NULL) {
    ratchet__policy_hit_locked(&s->policy, n);
    s->hits++;
    return 1;
  }
  s->misses++;
  int admit = ratchet__policy_admit(&s->policy, id, size, 1);
  if (admit == RATCHET__REFUSE) {
    s->refused++;
    return 0;
  }
  if (admit != RATCHET__REFUSE_AFTER_ROOM) {
    if (ratchet__idmap_reserve(&s->map, 1) != 0 || (n = take_node(s)) == NULL)
      return -ENOMEM;
  }
  while (ratchet__policy_full(&s->policy, size)) {
    if (ratchet__policy_reserve(&s->policy) != 0) {
      if (n != NULL)
        give_node(s, n);
      return -ENOMEM;
    }
    ratchet__pnode *v = ratchet__policy_evict(&s->policy);
    if (v == NULL)
      break;
    ratchet__idmap_del(&s->map, v->id);
    s->evictions++;
    if (s->on_evict != NULL)
      s->on_evict(s->on_evict_ctx, v->id, v->size);
    give_node(s, v);
  }
  if (admit == RATCHET__REFUSE_AFTER_ROOM) {
    s->refused++;
    return 0;
  }
  n->id = id;
  n->size = size;
  ratchet__policy_insert(&s->policy, n, admit);
  ratchet__idmap_put(&s->map, id, (uint64_t)(uintptr_t)n);
  return 0;
}

void ratchet_cache_sim_stats_get(const ratchet_cache_sim *s,
                                 ratchet_cache_sim_stats *st) {
  memset(st, 0, sizeof *st);
  if (s == NULL)
    return;
  st->requests = s->requests;
  st->hits = s->hits;
  st->misses = s->misses;
  st->refused = s->refused;
  st->evictions = s->evictions;
  st->bytes = ratchet__policy_bytes(&s->policy);
  st->objects = ratchet__policy_count(&s->policy);
  st->ghost_bytes = s->policy.ghost.bytes;
  st->ghost_objects = s->policy.ghost.count;
}
