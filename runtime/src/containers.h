/*
 * containers.h - the orchestrator's data structures (private): a timer
 * heap, a map from task id to pointer, and a map from byte-string key to
 * pointer. All allocate through ratchet's allocator (ratchet/alloc.h), grow
 * by doubling, and never allocate on lookup or removal.
 */
#ifndef RATCHET_CONTAINERS_H
#define RATCHET_CONTAINERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Timer heap: a binary min-heap of nodes embedded in their owners. ---
 * Ties on `due` pop in insertion order (FIFO), so that tasks deferred to the
 * same instant keep their submission order. */
typedef struct ratchet__heap_node {
  uint64_t due;    /* the key */
  uint64_t seq_;   /* insertion order, set by push */
  uint32_t index_; /* position + 1; 0 when not in a heap */
} ratchet__heap_node;

typedef struct ratchet__heap {
  ratchet__heap_node **v;
  uint32_t len, cap;
  uint64_t seq;
} ratchet__heap;

/* An empty heap (no allocation until the first push). */
void ratchet__heap_init(ratchet__heap *h);
/* Frees the array; the nodes are the owners'. */
void ratchet__heap_free(ratchet__heap *h);
/* Inserts n (not in a heap) keyed by n->due: 0 or -ENOMEM (heap unchanged). */
int ratchet__heap_push(ratchet__heap *h, ratchet__heap_node *n);
/* The node with the smallest due, or NULL. */
ratchet__heap_node *ratchet__heap_peek(const ratchet__heap *h);
/* Removes and returns it, or NULL. */
ratchet__heap_node *ratchet__heap_pop(ratchet__heap *h);
/* Removes n, which must be in h. */
void ratchet__heap_remove(ratchet__heap *h, ratchet__heap_node *n);
/* True when n is in a heap. */
bool ratchet__heap_contains(const ratchet__heap_node *n);

/* ---- Id map: uint64 (never 0) -> non-NULL pointer, open addressing. ---- */
typedef struct ratchet__idmap {
  uint64_t *keys; /* 0: empty */
  void **vals;
  size_t len, cap; /* cap a power of two, or 0 */
} ratchet__idmap;

void ratchet__idmap_init(ratchet__idmap *m);
void ratchet__idmap_free(ratchet__idmap *m);
/* Inserts or replaces: 0, -EINVAL (key 0, val NULL), -ENOMEM (unchanged). */
int ratchet__idmap_put(ratchet__idmap *m, uint64_t key, void *val);
/* The value, or NULL. */
void *ratchet__idmap_get(const ratchet__idmap *m, uint64_t key);
/* Removes key and returns its value, or NULL. Never allocates. */
void *ratchet__idmap_del(ratchet__idmap *m, uint64_t key);
/* Calls fn on every entry, in no order; fn must not change the map. */
void ratchet__idmap_foreach(const ratchet__idmap *m,
                            void (*fn)(void *ctx, uint64_t key, void *val),
                            void *ctx);

/* ---- String map: byte-string key (copied) -> pointer. ---- */
typedef struct ratchet__strmap ratchet__strmap;

/* 0 and *out; -ENOMEM. */
int ratchet__strmap_new(ratchet__strmap **out);
/* Frees the map and its key copies; values are the caller's (free them
 * first, e.g. with foreach). NULL is a no-op. */
void ratchet__strmap_free(ratchet__strmap *m);
/* Inserts or replaces: 0, -EINVAL (val NULL), -ENOMEM (unchanged). */
int ratchet__strmap_put(ratchet__strmap *m, const void *key, size_t len,
                        void *val);
/* The value, or NULL. */
void *ratchet__strmap_get(const ratchet__strmap *m, const void *key,
                          size_t len);
/* Removes key and returns its value, or NULL. */
void *ratchet__strmap_del(ratchet__strmap *m, const void *key, size_t len);
/* Entries. */
size_t ratchet__strmap_len(const ratchet__strmap *m);
/* Removes every entry for which pred returns true (pred sees each entry
 * once and may free its value when it returns true; it must not change the
 * map). Returns how many were removed, or -ENOMEM (nothing removed). */
int ratchet__strmap_remove_if(ratchet__strmap *m,
                              bool (*pred)(void *ctx, const void *key,
                                           size_t len, void *val),
                              void *ctx);
/* Calls fn for each entry (any order); fn must not change the map. */
void ratchet__strmap_foreach(const ratchet__strmap *m,
                             void (*fn)(void *ctx, const void *key, size_t len,
                                        void *val),
                             void *ctx);

#endif
