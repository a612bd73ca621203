/*
 * test_containers.c - the orchestrator's timer heap, id map and string map
 * (runtime/src/containers.c), each driven by random operations against a
 * plain reference (a scanned array) over many seeds, plus the edges: FIFO
 * among equal deadlines, removal of arbitrary nodes, keys with NUL bytes,
 * growth, -ENOMEM at every allocation leaving the structure unchanged, and
 * lookups and removals that never allocate.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "containers.h"
#include "ratchet/rng.h"
#include "testutil.h"

/* Values in [0, n) from resilience's seeded generator. */
static uint64_t rng_below(ratchet_rng *rs, uint64_t n) {
  return ratchet_rng_upto(ratchet_rng_next(rs), n - 1);
}

/* ---- heap ------------------------------------------------------------- */

/* A heap owner as the orchestrator would embed it, with the reference's own
 * insertion counter. */
typedef struct timer {
  ratchet__heap_node node;
  uint64_t order; /* the reference's push counter */
} timer;

#define timer_of(n) ((timer *)((char *)(n)-offsetof(timer, node)))

/* Checks the heap's shape: every node knows its position, no child comes
 * before its parent. */
static void check_heap(const ratchet__heap *h) {
  assert_true(h->len <= h->cap);
  for (uint32_t i = 0; i < h->len; i++) {
    const ratchet__heap_node *n = h->v[i];
    assert_int_equal(n->index_, i + 1);
    if (i == 0)
      continue;
    const ratchet__heap_node *p = h->v[(i - 1) / 2];
    assert_true(p->due < n->due || (p->due == n->due && p->seq_ < n->seq_));
  }
}

/* The reference's next pop: the smallest due, then the earliest push. */
static timer *ref_min(timer *t, size_t n) {
  timer *best = NULL;
  for (size_t i = 0; i < n; i++) {
    if (!ratchet__heap_contains(&t[i].node))
      continue;
    if (best == NULL || t[i].node.due < best->node.due ||
        (t[i].node.due == best->node.due && t[i].order < best->order))
      best = &t[i];
  }
  return best;
}

static void test_heap_reference(void **state) {
  (void)state;
  enum { NODES = 64 };
  for (unsigned seed = 0; seed < 300; seed++) {
    ratchet_rng rs;
    ratchet_rng_seed(&rs, seed);
    /* Few distinct deadlines in some runs (many ties), many in others. */
    uint64_t span = seed % 3 == 0 ? 4 : seed % 3 == 1 ? 64 : UINT64_MAX;
    timer t[NODES];
    memset(t, 0, sizeof t);
    ratchet__heap h;
    ratchet__heap_init(&h);
    uint64_t order = 0;
    size_t in = 0;
    for (int op = 0; op < 2000; op++) {
      timer *x = &t[rng_below(&rs, NODES)];
      unsigned what = (unsigned)rng_below(&rs, 10);
      if (what < 5) {
        if (ratchet__heap_contains(&x->node))
          continue;
        x->node.due =
            span == UINT64_MAX ? ratchet_rng_next(&rs) : rng_below(&rs, span);
        x->order = order++;
        assert_int_equal(ratchet__heap_push(&h, &x->node), 0);
        assert_true(ratchet__heap_contains(&x->node));
        in++;
      } else if (what < 7) {
        if (!ratchet__heap_contains(&x->node))
          continue;
        ratchet__heap_remove(&h, &x->node);
        assert_false(ratchet__heap_contains(&x->node));
        in--;
      } else {
        timer *want = ref_min(t, NODES);
        ratchet__heap_node *peek = ratchet__heap_peek(&h);
        ratchet__heap_node *got = ratchet__heap_pop(&h);
        assert_ptr_equal(peek, got);
        if (want == NULL) {
          assert_null(got);
          continue;
        }
        assert_ptr_equal(timer_of(got), want);
        assert_false(ratchet__heap_contains(got));
        in--;
      }
      assert_int_equal(h.len, in);
      check_heap(&h);
    }
    /* Draining gives the reference's order. */
    for (timer *want; (want = ref_min(t, NODES)) != NULL;)
      assert_ptr_equal(timer_of(ratchet__heap_pop(&h)), want);
    assert_null(ratchet__heap_pop(&h));
    assert_null(ratchet__heap_peek(&h));
    ratchet__heap_free(&h);
  }
}

static void test_heap_fifo(void **state) {
  (void)state;
  enum { N = 300 };
  timer t[N];
  memset(t, 0, sizeof t);
  ratchet__heap h;
  ratchet__heap_init(&h);
  /* Two deadlines interleaved, pushed in index order: each pops in it. */
  for (int i = 0; i < N; i++) {
    t[i].node.due = i % 2 == 0 ? 100 : 50;
    assert_int_equal(ratchet__heap_push(&h, &t[i].node), 0);
  }
  /* Removing some must not disturb the order of the others. */
  for (int i = 0; i < N; i += 7)
    ratchet__heap_remove(&h, &t[i].node);
  for (int pass = 0; pass < 2; pass++) {
    int first = pass == 0 ? 1 : 0;
    for (int i = first; i < N; i += 2) {
      if (i % 7 == 0)
        continue;
      ratchet__heap_node *n = ratchet__heap_pop(&h);
      assert_ptr_equal(n, &t[i].node);
    }
  }
  assert_null(ratchet__heap_pop(&h));
  /* Pushed again later, a node queues behind those already waiting. */
  assert_int_equal(ratchet__heap_push(&h, &t[1].node), 0);
  assert_int_equal(ratchet__heap_push(&h, &t[0].node), 0);
  t[2].node.due = 50;
  assert_int_equal(ratchet__heap_push(&h, &t[2].node), 0);
  assert_ptr_equal(ratchet__heap_pop(&h), &t[1].node);
  assert_ptr_equal(ratchet__heap_pop(&h), &t[2].node);
  assert_ptr_equal(ratchet__heap_pop(&h), &t[0].node);
  ratchet__heap_free(&h);
}

static void test_heap_remove_contains(void **state) {
  (void)state;
  enum { N = 40 };
  timer t[N];
  memset(t, 0, sizeof t);
  ratchet__heap h;
  ratchet__heap_init(&h);
  assert_null(ratchet__heap_peek(&h));
  assert_null(ratchet__heap_pop(&h));
  for (int i = 0; i < N; i++) {
    assert_false(ratchet__heap_contains(&t[i].node));
    t[i].node.due = (uint64_t)((i * 17) % N); /* a permutation of 0..N-1 */
    assert_int_equal(ratchet__heap_push(&h, &t[i].node), 0);
    assert_true(ratchet__heap_contains(&t[i].node));
  }
  /* The root, the last slot, a leaf in the middle and an inner node. */
  ratchet__heap_node *victims[] = {h.v[0], h.v[h.len - 1], h.v[h.len / 2 + 1],
                                   h.v[1]};
  bool removed[N] = {false};
  for (size_t i = 0; i < TU_ARRAY_LEN(victims); i++) {
    ratchet__heap_remove(&h, victims[i]);
    assert_false(ratchet__heap_contains(victims[i]));
    removed[victims[i]->due] = true;
    check_heap(&h);
  }
  assert_int_equal(h.len, N - TU_ARRAY_LEN(victims));
  /* Removing a node that is no longer in it changes nothing. */
  ratchet__heap_remove(&h, victims[0]);
  assert_int_equal(h.len, N - TU_ARRAY_LEN(victims));
  /* Pushing a node twice is refused. */
  assert_int_equal(ratchet__heap_push(&h, h.v[0]), -EINVAL);
  uint64_t due = 0;
  for (ratchet__heap_node *n; (n = ratchet__heap_pop(&h)) != NULL; due++) {
    while (removed[due])
      due++;
    assert_int_equal(n->due, due);
  }
  /* Removing the only node empties the heap. */
  assert_int_equal(ratchet__heap_push(&h, &t[0].node), 0);
  ratchet__heap_remove(&h, &t[0].node);
  assert_null(ratchet__heap_peek(&h));
  ratchet__heap_free(&h);
  ratchet__heap_free(&h); /* a freed heap is an empty one */
}

static void test_heap_out_of_memory(void **state) {
  (void)state;
  enum { N = 200 };
  timer t[N];
  memset(t, 0, sizeof t);
  ratchet__heap h;
  ratchet__heap_init(&h);
  tu_alloc_install(SIZE_MAX);
  int failures = 0;
  for (int i = 0; i < N; i++) {
    t[i].node.due = (uint64_t)(N - i);
    /* Every push that needs memory fails once first. */
    ratchet__heap saved = h;
    tu_alloc_install(0);
    int rc = ratchet__heap_push(&h, &t[i].node);
    size_t tried = tu_alloc_count();
    if (rc == -ENOMEM) {
      failures++;
      assert_int_equal(tried, 1);
      assert_memory_equal(&h, &saved, sizeof h);
      assert_false(ratchet__heap_contains(&t[i].node));
      check_heap(&h);
      tu_alloc_install(SIZE_MAX);
      rc = ratchet__heap_push(&h, &t[i].node);
    } else {
      assert_int_equal(tried, 0); /* a push with room does not allocate */
    }
    assert_int_equal(rc, 0);
    tu_alloc_install(SIZE_MAX);
  }
  assert_true(failures >= 4); /* 16, 32, 64, 128 and the first */
  /* Pop and remove never allocate. */
  tu_alloc_install(0);
  ratchet__heap_remove(&h, &t[N / 2].node);
  for (int i = N - 1; i >= 0; i--) {
    if (i == N / 2)
      continue;
    assert_ptr_equal(ratchet__heap_pop(&h), &t[i].node);
  }
  assert_int_equal(tu_alloc_count(), 0);
  ratchet__heap_free(&h);
  tu_alloc_uninstall();
}

/* ---- id map ------------------------------------------------------------ */

static void check_idmap(const ratchet__idmap *m, const uint64_t *keys,
                        void *const *ref, size_t n) {
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    assert_ptr_equal(ratchet__idmap_get(m, keys[i]), ref[i]);
    len += ref[i] != NULL;
  }
  assert_int_equal(m->len, len);
  /* Every stored key is one of ours. */
  size_t stored = 0;
  for (size_t i = 0; i < m->cap; i++)
    stored += m->keys[i] != 0;
  assert_int_equal(stored, len);
  if (m->cap > 0) {
    assert_int_equal(m->cap & (m->cap - 1), 0);
    assert_true(m->len * 10 <= m->cap * 7);
  }
}

static void test_idmap_reference(void **state) {
  (void)state;
  enum { KEYS = 300 };
  static int objs[KEYS * 2];
  for (unsigned seed = 0; seed < 100; seed++) {
    ratchet_rng rs;
    ratchet_rng_seed(&rs, seed);
    uint64_t keys[KEYS];
    void *ref[KEYS] = {NULL};
    /* Sequential ids (as the orchestrator hands out), random ones, and ids
     * that differ only in their high bits. */
    for (size_t i = 0; i < KEYS; i++) {
      switch (seed % 3) {
      case 0:
        keys[i] = i + 1;
        break;
      case 1:
        do
          keys[i] = ratchet_rng_next(&rs);
        while (keys[i] == 0);
        break;
      default:
        keys[i] = ((uint64_t)(i + 1) << 40) | 7;
      }
    }
    ratchet__idmap m;
    ratchet__idmap_init(&m);
    assert_null(ratchet__idmap_get(&m, 1));
    assert_null(ratchet__idmap_del(&m, 1));
    for (int op = 0; op < 5000; op++) {
      size_t k = (size_t)rng_below(&rs, KEYS);
      unsigned what = (unsigned)rng_below(&rs, 10);
      if (what < 5) {
        void *v = &objs[rng_below(&rs, KEYS * 2)];
        assert_int_equal(ratchet__idmap_put(&m, keys[k], v), 0);
        ref[k] = v;
      } else if (what < 8) {
        assert_ptr_equal(ratchet__idmap_del(&m, keys[k]), ref[k]);
        ref[k] = NULL;
      } else {
        assert_ptr_equal(ratchet__idmap_get(&m, keys[k]), ref[k]);
      }
      if (op % 97 == 0)
        check_idmap(&m, keys, ref, KEYS);
    }
    check_idmap(&m, keys, ref, KEYS);
    /* Delete everything: the table empties completely. */
    for (size_t i = 0; i < KEYS; i++) {
      assert_ptr_equal(ratchet__idmap_del(&m, keys[i]), ref[i]);
      ref[i] = NULL;
    }
    check_idmap(&m, keys, ref, KEYS);
    assert_int_equal(m.len, 0);
    ratchet__idmap_free(&m);
  }
}

static void test_idmap_edges(void **state) {
  (void)state;
  int a, b;
  ratchet__idmap m;
  ratchet__idmap_init(&m);
  assert_int_equal(ratchet__idmap_put(&m, 0, &a), -EINVAL);
  assert_int_equal(ratchet__idmap_put(&m, 1, NULL), -EINVAL);
  assert_int_equal(m.len, 0);
  assert_null(ratchet__idmap_get(&m, 0));
  assert_int_equal(ratchet__idmap_put(&m, UINT64_MAX, &a), 0);
  assert_int_equal(ratchet__idmap_put(&m, UINT64_MAX, &b), 0); /* replace */
  assert_int_equal(m.len, 1);
  assert_ptr_equal(ratchet__idmap_get(&m, UINT64_MAX), &b);
  assert_null(ratchet__idmap_del(&m, 0));
  assert_ptr_equal(ratchet__idmap_del(&m, UINT64_MAX), &b);
  assert_null(ratchet__idmap_del(&m, UINT64_MAX));
  ratchet__idmap_free(&m);
  ratchet__idmap_free(&m);
}

static void sum_entry(void *ctx, uint64_t key, void *val) {
  uint64_t *acc = ctx;
  acc[0] += key;
  acc[1] += (uint64_t)(uintptr_t)val;
  acc[2]++;
}

/* foreach visits every live entry once, before and after deletions that
 * shift entries back in their probe runs. */
static void test_idmap_foreach(void **state) {
  (void)state;
  ratchet__idmap m;
  ratchet__idmap_init(&m);
  uint64_t acc[3] = {0, 0, 0};
  ratchet__idmap_foreach(&m, sum_entry, acc); /* empty: nothing */
  assert_int_equal(acc[2], 0);
  uint64_t keys = 0, vals = 0;
  for (uint64_t k = 1; k <= 1000; k++) {
    assert_int_equal(ratchet__idmap_put(&m, k * 7919, (void *)(uintptr_t)k), 0);
    keys += k * 7919;
    vals += k;
  }
  for (uint64_t k = 1; k <= 1000; k += 3) {
    assert_non_null(ratchet__idmap_del(&m, k * 7919));
    keys -= k * 7919;
    vals -= k;
  }
  ratchet__idmap_foreach(&m, sum_entry, acc);
  assert_int_equal(acc[2], m.len);
  assert_int_equal(acc[0], keys);
  assert_int_equal(acc[1], vals);
  ratchet__idmap_free(&m);
}

static void test_idmap_out_of_memory(void **state) {
  (void)state;
  static int objs[200];
  ratchet__idmap m;
  ratchet__idmap_init(&m);
  tu_alloc_install(SIZE_MAX);
  int growths = 0;
  for (uint64_t key = 1; key <= 200; key++) {
    /* Fail each allocation of this put in turn until it succeeds. */
    int rc = -ENOMEM;
    size_t k;
    for (k = 0; rc == -ENOMEM; k++) {
      ratchet__idmap saved = m;
      tu_alloc_install(k);
      rc = ratchet__idmap_put(&m, key, &objs[key - 1]);
      long live = tu_alloc_live();
      if (rc == -ENOMEM) {
        assert_int_equal(live, 0);
        assert_memory_equal(&m, &saved, sizeof m);
        assert_null(ratchet__idmap_get(&m, key));
        for (uint64_t j = 1; j < key; j++)
          assert_ptr_equal(ratchet__idmap_get(&m, j), &objs[j - 1]);
        /* A replacement needs no room, even when the map is full. */
        if (key > 1)
          assert_int_equal(ratchet__idmap_put(&m, 1, &objs[0]), 0);
      }
      assert_true(k < 10);
    }
    assert_int_equal(rc, 0);
    if (k > 1)
      growths++;
  }
  assert_true(growths >= 5);
  assert_int_equal(m.len, 200);
  /* get and del never allocate. */
  tu_alloc_install(0);
  for (uint64_t key = 1; key <= 250; key++)
    assert_ptr_equal(ratchet__idmap_get(&m, key),
                     key <= 200 ? &objs[key - 1] : NULL);
  for (uint64_t key = 1; key <= 250; key += 2)
    assert_ptr_equal(ratchet__idmap_del(&m, key),
                     key <= 200 ? &objs[key - 1] : NULL);
  assert_int_equal(tu_alloc_count(), 0);
  ratchet__idmap_free(&m);
  tu_alloc_uninstall();
}

/* ---- string map -------------------------------------------------------- */

typedef struct skey {
  unsigned char b[12];
  size_t len;
} skey;

/* Distinct keys of 0..12 bytes over a small alphabet with NUL in it, so
 * that keys share prefixes, differ only by trailing NULs, or are empty. */
static void make_keys(ratchet_rng *rs, skey *k, size_t n) {
  static const unsigned char alphabet[] = {0, 'a', 1, 0xff};
  for (size_t i = 0; i < n; i++) {
    bool dup;
    do {
      k[i].len = (size_t)rng_below(rs, sizeof k[i].b + 1);
      for (size_t j = 0; j < k[i].len; j++)
        k[i].b[j] = alphabet[rng_below(rs, sizeof alphabet)];
      dup = false;
      for (size_t j = 0; j < i && !dup; j++)
        dup = k[j].len == k[i].len && memcmp(k[j].b, k[i].b, k[i].len) == 0;
    } while (dup);
  }
}

typedef struct visit {
  const skey *keys;
  void *const *ref;
  size_t n, seen;
} visit;

static void on_entry(void *ctx, const void *key, size_t len, void *val) {
  visit *v = ctx;
  v->seen++;
  for (size_t i = 0; i < v->n; i++) {
    if (v->keys[i].len == len && memcmp(v->keys[i].b, key, len) == 0) {
      assert_ptr_equal(val, v->ref[i]);
      return;
    }
  }
  fail_msg("foreach gave a key that was never put");
}

static void check_strmap(const ratchet__strmap *m, const skey *keys,
                         void *const *ref, size_t n) {
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    assert_ptr_equal(ratchet__strmap_get(m, keys[i].b, keys[i].len), ref[i]);
    len += ref[i] != NULL;
  }
  assert_int_equal(ratchet__strmap_len(m), len);
  visit v = {keys, ref, n, 0};
  ratchet__strmap_foreach(m, on_entry, &v);
  assert_int_equal(v.seen, len);
}

static void test_strmap_reference(void **state) {
  (void)state;
  enum { KEYS = 200 };
  static int objs[KEYS * 2];
  for (unsigned seed = 0; seed < 60; seed++) {
    ratchet_rng rs;
    ratchet_rng_seed(&rs, seed);
    skey keys[KEYS];
    make_keys(&rs, keys, KEYS);
    void *ref[KEYS] = {NULL};
    ratchet__strmap *m = NULL;
    assert_int_equal(ratchet__strmap_new(&m), 0);
    assert_int_equal(ratchet__strmap_len(m), 0);
    assert_null(ratchet__strmap_get(m, "", 0));
    assert_null(ratchet__strmap_del(m, "x", 1));
    for (int op = 0; op < 4000; op++) {
      size_t k = (size_t)rng_below(&rs, KEYS);
      unsigned what = (unsigned)rng_below(&rs, 10);
      if (what < 5) {
        void *v = &objs[rng_below(&rs, KEYS * 2)];
        /* The key comes from a buffer scribbled over afterwards: the map
         * must have copied it. */
        unsigned char tmp[sizeof keys[k].b];
        memcpy(tmp, keys[k].b, keys[k].len);
        assert_int_equal(ratchet__strmap_put(m, tmp, keys[k].len, v), 0);
        memset(tmp, 0x5a, sizeof tmp);
        ref[k] = v;
      } else if (what < 8) {
        assert_ptr_equal(ratchet__strmap_del(m, keys[k].b, keys[k].len),
                         ref[k]);
        ref[k] = NULL;
      } else {
        assert_ptr_equal(ratchet__strmap_get(m, keys[k].b, keys[k].len),
                         ref[k]);
      }
      if (op % 101 == 0)
        check_strmap(m, keys, ref, KEYS);
    }
    check_strmap(m, keys, ref, KEYS);
    /* Half deleted, then freed with the rest still in. */
    for (size_t i = 0; i < KEYS; i += 2) {
      assert_ptr_equal(ratchet__strmap_del(m, keys[i].b, keys[i].len), ref[i]);
      ref[i] = NULL;
    }
    check_strmap(m, keys, ref, KEYS);
    ratchet__strmap_free(m);
  }
  ratchet__strmap_free(NULL);
}

static void test_strmap_edges(void **state) {
  (void)state;
  int a, b, c;
  ratchet__strmap *m = NULL;
  assert_int_equal(ratchet__strmap_new(&m), 0);
  assert_int_equal(ratchet__strmap_put(m, "k", 1, NULL), -EINVAL);
  assert_int_equal(ratchet__strmap_len(m), 0);
  /* "a", "a\0" and "a\0b" are three keys; "" is a key too. */
  assert_int_equal(ratchet__strmap_put(m, "a", 1, &a), 0);
  assert_int_equal(ratchet__strmap_put(m, "a\0", 2, &b), 0);
  assert_int_equal(ratchet__strmap_put(m, "a\0b", 3, &c), 0);
  assert_int_equal(ratchet__strmap_put(m, NULL, 0, &a), 0);
  assert_int_equal(ratchet__strmap_len(m), 4);
  assert_ptr_equal(ratchet__strmap_get(m, "a", 1), &a);
  assert_ptr_equal(ratchet__strmap_get(m, "a\0", 2), &b);
  assert_ptr_equal(ratchet__strmap_get(m, "a\0b", 3), &c);
  assert_ptr_equal(ratchet__strmap_get(m, "", 0), &a);
  assert_null(ratchet__strmap_get(m, "a\0c", 3));
  assert_int_equal(ratchet__strmap_put(m, "a", 1, &c), 0); /* replace */
  assert_int_equal(ratchet__strmap_len(m), 4);
  assert_ptr_equal(ratchet__strmap_get(m, "a", 1), &c);
  assert_ptr_equal(ratchet__strmap_del(m, "", 0), &a);
  assert_ptr_equal(ratchet__strmap_del(m, "a\0", 2), &b);
  assert_null(ratchet__strmap_del(m, "a\0", 2));
  assert_int_equal(ratchet__strmap_len(m), 2);
  ratchet__strmap_free(m);
}

/* remove_if: exactly the chosen entries go, each value is shown once, and
 * the rest stay findable (deletion shifts entries back). */
static bool odd_value(void *ctx, const void *key, size_t len, void *val) {
  (void)key, (void)len;
  unsigned *seen = ctx;
  uintptr_t v = (uintptr_t)val;
  seen[v]++;
  return v % 2 == 1;
}

static void test_strmap_remove_if(void **state) {
  (void)state;
  ratchet__strmap *m;
  assert_int_equal(ratchet__strmap_new(&m), 0);
  enum { N = 1000 };
  char key[32];
  for (uintptr_t i = 1; i <= N; i++) {
    int n = snprintf(key, sizeof key, "key-%lu", (unsigned long)i);
    assert_int_equal(ratchet__strmap_put(m, key, (size_t)n, (void *)i), 0);
  }
  static unsigned seen[N + 1];
  memset(seen, 0, sizeof seen);
  assert_int_equal(ratchet__strmap_remove_if(m, odd_value, seen), N / 2);
  assert_int_equal(ratchet__strmap_len(m), N / 2);
  for (uintptr_t i = 1; i <= N; i++) {
    assert_int_equal(seen[i], 1);
    int n = snprintf(key, sizeof key, "key-%lu", (unsigned long)i);
    void *v = ratchet__strmap_get(m, key, (size_t)n);
    if (i % 2 == 1)
      assert_null(v);
    else
      assert_int_equal((uintptr_t)v, i);
  }
  /* Nothing matches: nothing goes; an empty map: 0. */
  memset(seen, 0, sizeof seen);
  assert_int_equal(ratchet__strmap_remove_if(m, odd_value, seen), 0);
  ratchet__strmap *e;
  assert_int_equal(ratchet__strmap_new(&e), 0);
  assert_int_equal(ratchet__strmap_remove_if(e, odd_value, seen), 0);
  ratchet__strmap_free(e);
  ratchet__strmap_free(m);
}

static void test_strmap_out_of_memory(void **state) {
  (void)state;
  enum { N = 120 };
  static int objs[N];
  char key[32];
  ratchet__strmap *m = NULL;
  size_t k;
  int rc = -ENOMEM;
  for (k = 0; rc == -ENOMEM; k++) {
    m = NULL;
    tu_alloc_install(k);
    rc = ratchet__strmap_new(&m);
    if (rc == -ENOMEM) {
      assert_null(m);
      assert_int_equal(tu_alloc_live(), 0);
    }
    assert_true(k < 10);
  }
  assert_int_equal(rc, 0);
  assert_true(k > 1);
  tu_alloc_install(SIZE_MAX);
  int growths = 0;
  for (int i = 0; i < N; i++) {
    /* Keys with a NUL inside, of varying length. */
    size_t len = (size_t)snprintf(key, sizeof key, "kind%c%d", 0, i * 7919);
    rc = -ENOMEM;
    for (k = 0; rc == -ENOMEM; k++) {
      tu_alloc_install(k);
      rc = ratchet__strmap_put(m, key, len, &objs[i]);
      long live = tu_alloc_live();
      if (rc == -ENOMEM) {
        assert_int_equal(live, 0);
        assert_int_equal(ratchet__strmap_len(m), (size_t)i);
        assert_null(ratchet__strmap_get(m, key, len));
        for (int j = 0; j < i; j++) {
          char other[32];
          size_t olen =
              (size_t)snprintf(other, sizeof other, "kind%c%d", 0, j * 7919);
          assert_ptr_equal(ratchet__strmap_get(m, other, olen), &objs[j]);
        }
      }
      assert_true(k < 10);
    }
    assert_int_equal(rc, 0);
    if (k > 2) /* the key copy and the table */
      growths++;
  }
  assert_true(growths >= 5);
  /* Replacing, getting and deleting never allocate. */
  tu_alloc_install(0);
  for (int i = 0; i < N; i++) {
    size_t len = (size_t)snprintf(key, sizeof key, "kind%c%d", 0, i * 7919);
    assert_int_equal(ratchet__strmap_put(m, key, len, &objs[0]), 0);
    assert_ptr_equal(ratchet__strmap_get(m, key, len), &objs[0]);
    assert_null(ratchet__strmap_get(m, key, len + 1)); /* with its NUL */
    if (i % 2 == 0)
      assert_ptr_equal(ratchet__strmap_del(m, key, len), &objs[0]);
  }
  assert_int_equal(tu_alloc_count(), 0);
  assert_int_equal(ratchet__strmap_len(m), N / 2);
  tu_alloc_install(SIZE_MAX);
  ratchet__strmap_free(m);
  tu_alloc_uninstall();
}

int test_containers(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_heap_reference),
      cmocka_unit_test(test_heap_fifo),
      cmocka_unit_test(test_heap_remove_contains),
      cmocka_unit_test(test_heap_out_of_memory),
      cmocka_unit_test(test_idmap_reference),
      cmocka_unit_test(test_idmap_edges),
      cmocka_unit_test(test_idmap_foreach),
      cmocka_unit_test(test_idmap_out_of_memory),
      cmocka_unit_test(test_strmap_reference),
      cmocka_unit_test(test_strmap_edges),
      cmocka_unit_test(test_strmap_remove_if),
      cmocka_unit_test(test_strmap_out_of_memory),
  };
  return cmocka_run_group_tests_name("containers", tests, NULL, NULL);
}
