/*
 * test_memcache.c - the memory tier: references that outlive eviction and
 * replacement, admission (TOO_BIG), the byte and entry bounds, lazy and
 * active expiry (against a shadow list), invalidation by key, prefix and tag,
 * clear, stats, argument checks, allocation failure, agreement with the
 * simulator (the memory tier runs the same policies), and several threads at
 * once with the books balanced afterwards (run it under ThreadSanitizer).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy_model.h"
#include "ratchet/cache.h"
#include "ratchet/cache_policy.h"
#include "ratchet/error.h"
#include "testutil.h"

/* A test value: knows its key and size, and how often it was destroyed. */
struct tv {
  uint64_t key;
  size_t size;
  atomic_int destroyed;
};

struct dctx {
  atomic_long calls, bad;
};

static void destroy_tv(void *ctx, void *value, size_t size) {
  struct dctx *d = ctx;
  struct tv *v = value;
  if (atomic_fetch_add(&v->destroyed, 1) != 0 || v->size != size)
    atomic_fetch_add(&d->bad, 1);
  atomic_fetch_add(&d->calls, 1);
}

static void tv_init(struct tv *v, uint64_t key, size_t size) {
  v->key = key;
  v->size = size;
  atomic_init(&v->destroyed, 0);
}

static ratchet_cache *make(ratchet_cache_policy p, uint64_t capacity,
                           struct dctx *d) {
  ratchet_cache_options o = RATCHET_CACHE_OPTIONS_INIT;
  o.policy = p;
  o.capacity_bytes = capacity;
  o.destroy = d != NULL ? destroy_tv : NULL;
  o.destroy_ctx = d;
  if (d != NULL) {
    atomic_init(&d->calls, 0);
    atomic_init(&d->bad, 0);
  }
  ratchet_cache *c = NULL;
  assert_int_equal(ratchet_cache_new(&o, &c), 0);
  return c;
}

static int put_s(ratchet_cache *c, const char *key, struct tv *v,
                 uint64_t now) {
  return ratchet_cache_put(c, key, strlen(key), v, v->size, NULL, now);
}

static int get_s(ratchet_cache *c, const char *key, uint64_t now,
                 ratchet_cache_ref **ref) {
  return ratchet_cache_get(c, key, strlen(key), now, ref);
}

/* 1 if key hits (releasing the reference), 0 if it misses. */
static int has(ratchet_cache *c, const char *key, uint64_t now) {
  ratchet_cache_ref *r;
  if (get_s(c, key, now, &r) != 0)
    return 0;
  ratchet_cache_release(c, r);
  return 1;
}

static void stats(ratchet_cache *c, ratchet_cache_stats *s) {
  ratchet_cache_stats_get(c, s);
}

/* ---- basics ------------------------------------------------------------- */

static void test_options(void **state) {
  (void)state;
  ratchet_cache_options o = RATCHET_CACHE_OPTIONS_INIT;
  ratchet_cache *c = (ratchet_cache *)&o;
  assert_int_equal(ratchet_cache_new(NULL, &c), -EINVAL);
  assert_int_equal(ratchet_cache_new(&o, NULL), -EINVAL);
  o.capacity_bytes = 0;
  assert_int_equal(ratchet_cache_new(&o, &c), -EINVAL);
  o.capacity_bytes = 1;
  o.policy = (ratchet_cache_policy)4;
  assert_int_equal(ratchet_cache_new(&o, &c), -EINVAL);
  assert_ptr_equal(c, (ratchet_cache *)&o);
  ratchet_cache_free(NULL);
  ratchet_cache_stats s;
  ratchet_cache_stats_get(NULL, &s);
  assert_int_equal(s.entries, 0);
}

static void test_put_get_release(void **state) {
  (void)state;
  for (int p = 0; p < 4; p++) {
    struct dctx d;
    ratchet_cache *c = make((ratchet_cache_policy)p, 1000, &d);
    struct tv v;
    tv_init(&v, 1, 10);
    ratchet_cache_ref *r = NULL;
    assert_int_equal(get_s(c, "alpha", 0, &r), RATCHET_ECACHE_MISS);
    assert_int_equal(put_s(c, "alpha", &v, 0), 0);
    assert_int_equal(get_s(c, "alpha", 0, &r), 0);
    assert_ptr_equal(ratchet_cache_ref_value(r), &v);
    assert_int_equal(ratchet_cache_ref_size(r), 10);
    ratchet_cache_release(c, r);
    assert_int_equal(get_s(c, "alph", 0, &r), RATCHET_ECACHE_MISS);
    assert_int_equal(get_s(c, "alphaa", 0, &r), RATCHET_ECACHE_MISS);
    /* The empty key is a key like any other. */
    struct tv e;
    tv_init(&e, 2, 1);
    assert_int_equal(ratchet_cache_put(c, NULL, 0, &e, 1, NULL, 0), 0);
    assert_int_equal(ratchet_cache_get(c, "", 0, 0, &r), 0);
    assert_ptr_equal(ratchet_cache_ref_value(r), &e);
    ratchet_cache_release(c, r);
    ratchet_cache_stats s;
    stats(c, &s);
    assert_int_equal(s.hits, 2);
    assert_int_equal(s.misses, 3);
    assert_int_equal(s.insertions, 2);
    assert_int_equal(s.bytes, 11);
    assert_int_equal(s.entries, 2);
    assert_int_equal(s.evictions + s.expirations + s.invalidations, 0);
    assert_int_equal(atomic_load(&d.calls), 0);
    ratchet_cache_free(c);
    assert_int_equal(atomic_load(&d.calls), 2);
    assert_int_equal(atomic_load(&d.bad), 0);
  }
  assert_null(ratchet_cache_ref_value(NULL));
  assert_int_equal(ratchet_cache_ref_size(NULL), 0);
}

static void test_bad_args(void **state) {
  (void)state;
  ratchet_cache *c = make(RATCHET_CACHE_S3FIFO, 1000, NULL);
  ratchet_cache_ref *r;
  int v;
  assert_int_equal(ratchet_cache_get(NULL, "k", 1, 0, &r), -EINVAL);
  assert_int_equal(ratchet_cache_get(c, "k", 1, 0, NULL), -EINVAL);
  assert_int_equal(ratchet_cache_get(c, NULL, 1, 0, &r), -EINVAL);
  assert_int_equal(ratchet_cache_put(NULL, "k", 1, &v, 1, NULL, 0), -EINVAL);
  assert_int_equal(ratchet_cache_put(c, NULL, 1, &v, 1, NULL, 0), -EINVAL);
  assert_int_equal(ratchet_cache_invalidate(c, NULL, 1), -EINVAL);
  assert_int_equal(ratchet_cache_invalidate_prefix(c, NULL, 1), 0);
  assert_int_equal(ratchet_cache_invalidate_tag(c, NULL), 0);
  ratchet_cache_release(c, NULL);
  ratchet_cache_clear(NULL);
  assert_int_equal(ratchet_cache_expire(NULL, 0, 0), 0);
  ratchet_cache_free(c);
}

/* ---- references -----------------------------------------------------------
 */

static void test_ref_outlives_eviction(void **state) {
  (void)state;
  for (int p = 0; p < 4; p++) {
    struct dctx d;
    /* S3-FIFO admits up to S - 1 = 99 bytes of 1000. */
    ratchet_cache *c = make((ratchet_cache_policy)p, 1000, &d);
    struct tv a, b[20];
    tv_init(&a, 1, 60);
    assert_int_equal(put_s(c, "a", &a, 0), 0);
    ratchet_cache_ref *r;
    assert_int_equal(get_s(c, "a", 0, &r), 0);
    /* Push a out with 20 * 60 bytes of new keys, each read back after every
     * put: a, hit once, is the first to go under every policy (S3-FIFO: hit
     * fewer than twice, it leaves small for the ghost; SIEVE: the hand
     * clears a and every newer object, wraps, and takes a). */
    char key[8];
    for (int i = 0; i < 20; i++) {
      tv_init(&b[i], (uint64_t)i + 2, 60);
      snprintf(key, sizeof key, "b%d", i);
      assert_int_equal(put_s(c, key, &b[i], 0), 0);
      for (int j = 0; j <= i; j++) {
        snprintf(key, sizeof key, "b%d", j);
        has(c, key, 0);
      }
      if (i == 15)
        assert_int_equal(atomic_load(&d.calls), 0); /* a: evicted, held */
    }
    assert_int_equal(has(c, "a", 0), 0);
    /* Still held: not destroyed, still readable. */
    assert_int_equal(atomic_load(&a.destroyed), 0);
    assert_ptr_equal(ratchet_cache_ref_value(r), &a);
    ratchet_cache_release(c, r);
    assert_int_equal(atomic_load(&a.destroyed), 1);
    ratchet_cache_stats s;
    stats(c, &s);
    assert_true(s.bytes <= 1000);
    assert_int_equal(s.entries + s.evictions, 21);
    ratchet_cache_free(c);
    assert_int_equal(atomic_load(&d.calls), 21);
    assert_int_equal(atomic_load(&d.bad), 0);
  }
}

static void test_replace(void **state) {
  (void)state;
  for (int p = 0; p < 4; p++) {
    struct dctx d;
    ratchet_cache *c = make((ratchet_cache_policy)p, 1000, &d);
    struct tv v1, v2, v3;
    tv_init(&v1, 1, 10);
    tv_init(&v2, 1, 20);
    tv_init(&v3, 1, 500);
    ratchet_cache_ref *r1, *r2;
    assert_int_equal(put_s(c, "k", &v1, 0), 0);
    assert_int_equal(get_s(c, "k", 0, &r1), 0);
    assert_int_equal(put_s(c, "k", &v2, 0), 0);
    assert_int_equal(atomic_load(&v1.destroyed), 0); /* r1 holds it */
    assert_int_equal(get_s(c, "k", 0, &r2), 0);
    assert_ptr_equal(ratchet_cache_ref_value(r2), &v2);
    assert_ptr_equal(ratchet_cache_ref_value(r1), &v1);
    ratchet_cache_release(c, r1);
    assert_int_equal(atomic_load(&v1.destroyed), 1);
    ratchet_cache_release(c, r2);
    ratchet_cache_stats s;
    stats(c, &s);
    assert_int_equal(s.entries, 1);
    assert_int_equal(s.bytes, 20);
    assert_int_equal(s.insertions, 2);
    assert_int_equal(s.evictions, 0);
    /* A replacement the policy refuses leaves the old entry in place. */
    int want = p == RATCHET_CACHE_S3FIFO ? RATCHET_ECACHE_TOO_BIG : 0;
    assert_int_equal(put_s(c, "k", &v3, 0), want);
    if (want != 0) {
      assert_int_equal(get_s(c, "k", 0, &r2), 0);
      assert_ptr_equal(ratchet_cache_ref_value(r2), &v2);
      ratchet_cache_release(c, r2);
      assert_int_equal(atomic_load(&v2.destroyed), 0);
    }
    ratchet_cache_free(c);
    assert_int_equal(atomic_load(&d.calls), want != 0 ? 2 : 3);
    assert_int_equal(atomic_load(&d.bad), 0);
  }
}

/* ---- admission and bounds ------------------------------------------------ */

static void test_too_big(void **state) {
  (void)state;
  struct dctx d;
  struct tv v[200];
  char key[16];
  /* LRU: anything up to the capacity. */
  ratchet_cache *c = make(RATCHET_CACHE_LRU, 100, &d);
  tv_init(&v[0], 0, 101);
  assert_int_equal(put_s(c, "big", &v[0], 0), RATCHET_ECACHE_TOO_BIG);
  tv_init(&v[1], 1, 100);
  assert_int_equal(put_s(c, "fits", &v[1], 0), 0);
  ratchet_cache_free(c);
  assert_int_equal(atomic_load(&v[0].destroyed), 0); /* caller kept it */
  assert_int_equal(atomic_load(&v[1].destroyed), 1);

  /* S3-FIFO, C = 100: S = 10. Fill with unit entries; an entry of exactly S
   * bytes is refused without evicting anything (the reference would make
   * room first, then drop it), one of S - 1 bytes is admitted. */
  c = make(RATCHET_CACHE_S3FIFO, 100, &d);
  for (int i = 0; i < 100; i++) {
    tv_init(&v[i], (uint64_t)i, 1);
    snprintf(key, sizeof key, "u%d", i);
    assert_int_equal(put_s(c, key, &v[i], 0), 0);
  }
  tv_init(&v[100], 100, 11);
  tv_init(&v[101], 101, 10);
  tv_init(&v[102], 102, 9);
  assert_int_equal(put_s(c, "eleven", &v[100], 0), RATCHET_ECACHE_TOO_BIG);
  assert_int_equal(put_s(c, "ten", &v[101], 0), RATCHET_ECACHE_TOO_BIG);
  ratchet_cache_stats s;
  stats(c, &s);
  assert_int_equal(s.entries, 100);
  assert_int_equal(s.evictions, 0);
  assert_int_equal(put_s(c, "nine", &v[102], 0), 0);
  stats(c, &s);
  assert_int_equal(s.evictions, 9);
  assert_int_equal(s.bytes, 100);
  ratchet_cache_free(c);
  assert_int_equal(atomic_load(&v[100].destroyed), 0);
  assert_int_equal(atomic_load(&v[101].destroyed), 0);
  assert_int_equal(atomic_load(&d.bad), 0);
}

static void test_bounds(void **state) {
  (void)state;
  for (int p = 0; p < 4; p++) {
    struct dctx d;
    ratchet_cache *c = make((ratchet_cache_policy)p, 1000, &d);
    struct tv *v = calloc(2000, sizeof *v);
    assert_non_null(v);
    char key[16];
    uint64_t st = 7;
    for (int i = 0; i < 2000; i++) {
      tv_init(&v[i], (uint64_t)i, 1 + tm_rand(&st) % 90);
      snprintf(key, sizeof key, "key-%d", i % 700);
      assert_int_equal(put_s(c, key, &v[i], 0), 0);
      if (i % 3 == 0)
        has(c, key, 0);
      ratchet_cache_stats s;
      stats(c, &s);
      assert_true(s.bytes <= 1000);
    }
    /* What is not destroyed is cached, and the books agree. */
    uint64_t bytes = 0, live = 0;
    for (int i = 0; i < 2000; i++)
      if (atomic_load(&v[i].destroyed) == 0) {
        bytes += v[i].size;
        live++;
      }
    ratchet_cache_stats s;
    stats(c, &s);
    assert_int_equal(s.bytes, bytes);
    assert_int_equal(s.entries, live);
    assert_int_equal(s.insertions, 2000);
    assert_true(s.evictions > 0);
    ratchet_cache_free(c);
    for (int i = 0; i < 2000; i++)
      assert_int_equal(atomic_load(&v[i].destroyed), 1);
    assert_int_equal(atomic_load(&d.bad), 0);
    free(v);
  }
}

static void test_max_entries(void **state) {
  (void)state;
  for (int p = 0; p < 4; p++) {
    ratchet_cache_options o = RATCHET_CACHE_OPTIONS_INIT;
    o.policy = (ratchet_cache_policy)p;
    o.max_entries = 5;
    ratchet_cache *c;
    assert_int_equal(ratchet_cache_new(&o, &c), 0);
    int v[20];
    for (int i = 0; i < 20; i++) {
      char key[8];
      snprintf(key, sizeof key, "%d", i);
      assert_int_equal(
          ratchet_cache_put(c, key, strlen(key), &v[i], 1, NULL, 0), 0);
    }
    ratchet_cache_stats s;
    stats(c, &s);
    assert_int_equal(s.entries, 5);
    assert_int_equal(s.evictions, 15);
    ratchet_cache_free(c);
  }
}

/* The memory tier and the simulator run the same policies: a get, then a put
 * on a miss, hits exactly where the simulator hits. */
static void test_matches_sim(void **state) {
  (void)state;
  tm_req *t = tm_trace_zipf(20000, 3000, 0.9, 1, 9, 11);
  static const uint64_t caps[] = {100, 1000, 5000};
  for (int p = 0; p < 4; p++)
    for (size_t k = 0; k < 3; k++) {
      ratchet_cache *c = make((ratchet_cache_policy)p, caps[k], NULL);
      ratchet_cache_sim_options so = RATCHET_CACHE_SIM_OPTIONS_INIT;
      so.policy = (ratchet_cache_policy)p;
      so.capacity_bytes = caps[k];
      ratchet_cache_sim *sim;
      assert_int_equal(ratchet_cache_sim_new(&so, &sim), 0);
      static int value;
      uint64_t hits = 0;
      for (size_t i = 0; i < 20000; i++) {
        ratchet_cache_ref *r;
        int hit = ratchet_cache_get(c, &t[i].id, sizeof t[i].id, i, &r) == 0;
        if (hit)
          ratchet_cache_release(c, r);
        else
          assert_int_equal(ratchet_cache_put(c, &t[i].id, sizeof t[i].id,
                                             &value, t[i].size, NULL, i),
                           0);
        int want = ratchet_cache_sim_access(sim, t[i].id, t[i].size);
        if (hit != want)
          fail_msg("%s C=%llu request %zu: cache %d sim %d",
                   ratchet_cache_policy_name((ratchet_cache_policy)p),
                   (unsigned long long)caps[k], i, hit, want);
        hits += (uint64_t)hit;
      }
      ratchet_cache_stats s;
      ratchet_cache_sim_stats ss;
      stats(c, &s);
      ratchet_cache_sim_stats_get(sim, &ss);
      assert_int_equal(s.hits, hits);
      assert_int_equal(s.hits, ss.hits);
      assert_int_equal(s.bytes, ss.bytes);
      assert_int_equal(s.entries, ss.objects);
      assert_int_equal(s.evictions, ss.evictions);
      ratchet_cache_sim_free(sim);
      ratchet_cache_free(c);
    }
  free(t);
}

/* ---- expiry ---------------------------------------------------------------
 */

static void test_ttl_lazy(void **state) {
  (void)state;
  struct dctx d;
  ratchet_cache_options o = RATCHET_CACHE_OPTIONS_INIT;
  o.default_ttl_ns = 50;
  o.destroy = destroy_tv;
  o.destroy_ctx = &d;
  atomic_init(&d.calls, 0);
  atomic_init(&d.bad, 0);
  ratchet_cache *c;
  assert_int_equal(ratchet_cache_new(&o, &c), 0);
  struct tv a, b, e;
  tv_init(&a, 1, 1);
  tv_init(&b, 2, 1);
  tv_init(&e, 3, 1);
  ratchet_cache_put_options po = RATCHET_CACHE_PUT_OPTIONS_INIT;
  po.ttl_ns = 10;
  assert_int_equal(ratchet_cache_put(c, "a", 1, &a, 1, &po, 100), 0);
  assert_int_equal(put_s(c, "b", &b, 100), 0); /* the default: 50 */
  po.ttl_ns = 0;
  assert_int_equal(ratchet_cache_put(c, "e", 1, &e, 1, &po, 100), 0);
  assert_int_equal(has(c, "a", 109), 1);
  /* An expired entry is never returned, and the get removes it. */
  ratchet_cache_ref *r;
  assert_int_equal(get_s(c, "a", 110, &r), RATCHET_ECACHE_MISS);
  assert_int_equal(atomic_load(&a.destroyed), 1);
  assert_int_equal(has(c, "b", 149), 1);
  assert_int_equal(has(c, "e", 149), 1);
  /* A reference taken before expiry stays valid after it. */
  assert_int_equal(get_s(c, "b", 149, &r), 0);
  assert_int_equal(has(c, "b", 150), 0);
  assert_int_equal(has(c, "e", 150), 0);
  assert_int_equal(atomic_load(&b.destroyed), 0);
  assert_ptr_equal(ratchet_cache_ref_value(r), &b);
  ratchet_cache_release(c, r);
  assert_int_equal(atomic_load(&b.destroyed), 1);
  ratchet_cache_stats s;
  stats(c, &s);
  assert_int_equal(s.expirations, 3);
  assert_int_equal(s.entries, 0);
  assert_int_equal(s.misses, 3);
  ratchet_cache_free(c);
  assert_int_equal(atomic_load(&d.calls), 3);
  assert_int_equal(atomic_load(&d.bad), 0);
}

static void test_expire_active(void **state) {
  (void)state;
  struct dctx d;
  ratchet_cache *c = make(RATCHET_CACHE_SIEVE, 1 << 20, &d);
  enum { N = 600 };
  struct tv *v = calloc(N, sizeof *v);
  uint64_t *expires = calloc(N, sizeof *expires);
  assert_non_null(v);
  assert_non_null(expires);
  uint64_t st = 3;
  char key[16];
  /* Random TTLs (some none), random invalidations: the heap must keep up. */
  for (int i = 0; i < N; i++) {
    tv_init(&v[i], (uint64_t)i, 1);
    ratchet_cache_put_options po = RATCHET_CACHE_PUT_OPTIONS_INIT;
    po.ttl_ns = i % 7 == 0 ? 0 : 1 + tm_rand(&st) % 1000;
    expires[i] = po.ttl_ns == 0 ? 0 : 1000 + po.ttl_ns;
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(
        ratchet_cache_put(c, key, strlen(key), &v[i], 1, &po, 1000), 0);
  }
  for (int i = 0; i < N; i += 5) {
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(ratchet_cache_invalidate(c, key, strlen(key)), 0);
    expires[i] = UINT64_MAX; /* gone */
  }
  /* Step through time; each step removes what expired, at most 7 a call,
   * earliest first. */
  for (uint64_t now = 1000; now <= 2100; now += 37) {
    uint64_t due = 0;
    for (int i = 0; i < N; i++)
      if (expires[i] != 0 && expires[i] != UINT64_MAX && expires[i] <= now)
        due++;
    uint64_t got = 0, n;
    while ((n = ratchet_cache_expire(c, now, 7)) != 0) {
      assert_true(n <= 7);
      got += n;
    }
    assert_int_equal(got, due);
    for (int i = 0; i < N; i++)
      if (expires[i] != 0 && expires[i] != UINT64_MAX && expires[i] <= now) {
        assert_int_equal(atomic_load(&v[i].destroyed), 1);
        expires[i] = UINT64_MAX;
      } else if (expires[i] != UINT64_MAX) {
        assert_int_equal(atomic_load(&v[i].destroyed), 0);
      }
  }
  ratchet_cache_stats s;
  stats(c, &s);
  uint64_t left = 0;
  for (int i = 0; i < N; i++)
    left += expires[i] == 0;
  assert_int_equal(s.entries, left); /* only those without a TTL */
  assert_int_equal(s.invalidations, (N + 4) / 5);
  assert_int_equal(s.expirations + s.invalidations + s.entries, N);
  assert_int_equal(ratchet_cache_expire(c, UINT64_MAX, 0), 0);
  ratchet_cache_free(c);
  assert_int_equal(atomic_load(&d.bad), 0);
  free(v);
  free(expires);
}

/* ---- invalidation ---------------------------------------------------------
 */

static void test_invalidate(void **state) {
  (void)state;
  struct dctx d;
  ratchet_cache *c = make(RATCHET_CACHE_S3FIFO, 1 << 20, &d);
  static const char *const keys[] = {"a/1", "a/2", "ab", "b/1", "a", ""};
  struct tv v[8];
  for (int i = 0; i < 6; i++) {
    tv_init(&v[i], (uint64_t)i, 1);
    assert_int_equal(put_s(c, keys[i], &v[i], 0), 0);
  }
  /* Binary keys with NULs. */
  tv_init(&v[6], 6, 1);
  tv_init(&v[7], 7, 1);
  assert_int_equal(ratchet_cache_put(c, "a/\0x", 4, &v[6], 1, NULL, 0), 0);
  assert_int_equal(ratchet_cache_put(c, "a\0/", 3, &v[7], 1, NULL, 0), 0);
  assert_int_equal(ratchet_cache_invalidate(c, "ab", 2), 0);
  assert_int_equal(ratchet_cache_invalidate(c, "ab", 2), RATCHET_ECACHE_MISS);
  assert_int_equal(atomic_load(&v[2].destroyed), 1);
  assert_int_equal(ratchet_cache_invalidate_prefix(c, "a/", 2), 3);
  assert_int_equal(atomic_load(&v[0].destroyed), 1);
  assert_int_equal(atomic_load(&v[1].destroyed), 1);
  assert_int_equal(atomic_load(&v[6].destroyed), 1);
  assert_int_equal(has(c, "a", 0), 1);
  assert_int_equal(ratchet_cache_invalidate_prefix(c, "a\0", 2), 1);
  assert_int_equal(ratchet_cache_invalidate_prefix(c, "zz", 2), 0);
  ratchet_cache_stats s;
  stats(c, &s);
  assert_int_equal(s.entries, 3); /* b/1, a, "" */
  assert_int_equal(ratchet_cache_invalidate_prefix(c, NULL, 0), 3);
  stats(c, &s);
  assert_int_equal(s.entries, 0);
  assert_int_equal(s.bytes, 0);
  assert_int_equal(s.invalidations, 8);
  ratchet_cache_free(c);
  assert_int_equal(atomic_load(&d.calls), 8);
  assert_int_equal(atomic_load(&d.bad), 0);
}

static void test_tags(void **state) {
  (void)state;
  struct dctx d;
  ratchet_cache *c = make(RATCHET_CACHE_LRU, 1 << 20, &d);
  const char *const x[] = {"x"};
  const char *const xy[] = {"y", "x"};
  const char *const y[] = {"y"};
  char long_tag[256];
  memset(long_tag, 't', 255);
  long_tag[255] = '\0';
  const char *const many[8] = {"1", "2", "3", "4", "5", "6", "7", long_tag};
  struct {
    const char *key;
    const char *const *tags;
    size_t n;
  } puts_[] = {
      {"p", x, 1}, {"q", xy, 2}, {"r", y, 1}, {"s", NULL, 0}, {"t", many, 8}};
  struct tv v[5];
  for (int i = 0; i < 5; i++) {
    tv_init(&v[i], (uint64_t)i, 3);
    ratchet_cache_put_options po = RATCHET_CACHE_PUT_OPTIONS_INIT;
    po.tags = puts_[i].tags;
    po.ntags = puts_[i].n;
    assert_int_equal(ratchet_cache_put(c, puts_[i].key, 1, &v[i], 3, &po, 0),
                     0);
  }
  assert_int_equal(ratchet_cache_invalidate_tag(c, "x"), 2);
  assert_int_equal(ratchet_cache_invalidate_tag(c, "x"), 0);
  assert_int_equal(ratchet_cache_invalidate_tag(c, "z"), 0);
  assert_int_equal(ratchet_cache_invalidate_tag(c, long_tag), 1);
  assert_int_equal(ratchet_cache_invalidate_tag(c, "y"), 1);
  assert_int_equal(has(c, "s", 0), 1);
  assert_int_equal(atomic_load(&v[0].destroyed), 1);
  assert_int_equal(atomic_load(&v[1].destroyed), 1);
  assert_int_equal(atomic_load(&v[2].destroyed), 1);
  assert_int_equal(atomic_load(&v[3].destroyed), 0);
  assert_int_equal(atomic_load(&v[4].destroyed), 1);

  /* Bad tags: -EINVAL, nothing stored, the caller keeps the value. */
  char too_long[257];
  memset(too_long, 't', 256);
  too_long[256] = '\0';
  const char *const nine[9] = {"1", "2", "3", "4", "5", "6", "7", "8", "9"};
  const char *const empty[] = {""};
  const char *const toolong[] = {too_long};
  const char *const null_tag[] = {"ok", NULL};
  struct {
    const char *const *tags;
    size_t n;
  } bad[] = {{nine, 9}, {empty, 1}, {toolong, 1}, {null_tag, 2}, {NULL, 1}};
  struct tv w;
  tv_init(&w, 9, 1);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ratchet_cache_put_options po = RATCHET_CACHE_PUT_OPTIONS_INIT;
    po.tags = bad[i].tags;
    po.ntags = bad[i].n;
    assert_int_equal(ratchet_cache_put(c, "w", 1, &w, 1, &po, 0), -EINVAL);
  }
  assert_int_equal(has(c, "w", 0), 0);
  ratchet_cache_free(c);
  assert_int_equal(atomic_load(&w.destroyed), 0);
  assert_int_equal(atomic_load(&d.bad), 0);
}

static void test_clear(void **state) {
  (void)state;
  for (int p = 0; p < 4; p++) {
    struct dctx d;
    ratchet_cache *c = make((ratchet_cache_policy)p, 100, &d);
    struct tv v[300];
    char key[16];
    for (int i = 0; i < 300; i++) {
      tv_init(&v[i], (uint64_t)i, 1);
      snprintf(key, sizeof key, "%d", i);
      assert_int_equal(put_s(c, key, &v[i], 0), 0);
    }
    ratchet_cache_ref *r;
    assert_int_equal(get_s(c, "299", 0, &r), 0);
    ratchet_cache_clear(c);
    ratchet_cache_stats s;
    stats(c, &s);
    assert_int_equal(s.entries, 0);
    assert_int_equal(s.bytes, 0);
    assert_int_equal(s.invalidations, 100);
    assert_int_equal(atomic_load(&v[299].destroyed), 0);
    ratchet_cache_release(c, r);
    assert_int_equal(atomic_load(&d.calls), 300);
    /* Usable afterwards; the ghost was forgotten too (S3-FIFO: 0 now goes
     * to small, not main; nothing to observe but that it works). */
    tv_init(&v[0], 0, 1);
    assert_int_equal(put_s(c, "0", &v[0], 1), 0);
    assert_int_equal(has(c, "0", 1), 1);
    ratchet_cache_free(c);
    assert_int_equal(atomic_load(&d.bad), 0);
  }
}

/* ---- allocation failure -----------------------------------------------------
 */

static void test_oom(void **state) {
  (void)state;
  ratchet_cache_options o = RATCHET_CACHE_OPTIONS_INIT;
  ratchet_cache *c = NULL;
  /* ratchet_cache_new: fail each allocation in turn. */
  size_t k;
  for (k = 0;; k++) {
    tu_alloc_install(k);
    int r = ratchet_cache_new(&o, &c);
    if (r == 0)
      break;
    assert_int_equal(r, -ENOMEM);
    assert_null(c);
    assert_int_equal(tu_alloc_live(), 0);
    tu_alloc_uninstall();
  }
  assert_true(k > 2);
  ratchet_cache_free(c);
  assert_int_equal(tu_alloc_live(), 0);
  tu_alloc_uninstall();

  /* put with no memory: -ENOMEM, the caller keeps the value, the cache is
   * as it was. With a TTL the expiry heap needs room too. */
  struct dctx d;
  for (int ttl = 0; ttl < 2; ttl++) {
    tu_alloc_install(SIZE_MAX);
    c = make(RATCHET_CACHE_S3FIFO, 1000, &d);
    struct tv v[40];
    char key[16];
    ratchet_cache_put_options po = RATCHET_CACHE_PUT_OPTIONS_INIT;
    po.ttl_ns = (uint64_t)ttl * 1000;
    for (int i = 0; i < 16; i++) {
      tv_init(&v[i], (uint64_t)i, 5);
      snprintf(key, sizeof key, "k%d", i);
      assert_int_equal(ratchet_cache_put(c, key, strlen(key), &v[i], 5, &po, 0),
                       0);
    }
    ratchet_cache_stats before, after;
    stats(c, &before);
    tu_alloc_install(0);
    tv_init(&v[16], 16, 5);
    assert_int_equal(ratchet_cache_put(c, "new", 3, &v[16], 5, &po, 0),
                     -ENOMEM);
    assert_int_equal(ratchet_cache_put(c, "k3", 2, &v[16], 5, &po, 0), -ENOMEM);
    stats(c, &after);
    assert_memory_equal(&before, &after, sizeof before);
    assert_int_equal(has(c, "k3", 0), 1);
    assert_int_equal(atomic_load(&v[16].destroyed), 0);
    /* With memory for the entry but not for the heap's growth (16 slots are
     * full after 16 puts with a TTL): -ENOMEM again. */
    tu_alloc_install(1);
    assert_int_equal(ratchet_cache_put(c, "new", 3, &v[16], 5, &po, 0),
                     ttl ? -ENOMEM : 0);
    tu_alloc_install(SIZE_MAX);
    ratchet_cache_free(c);
    assert_int_equal(atomic_load(&d.bad), 0);
    tu_alloc_uninstall();
  }

  /* Every allocation of a run of puts failing from some point on: each put
   * either works or says -ENOMEM, and the cache stays consistent (bucket
   * growth failing only makes chains longer). */
  for (k = 0; k < 40; k++) {
    tu_alloc_install(SIZE_MAX);
    c = make(RATCHET_CACHE_SIEVE, 1 << 20, &d);
    tu_alloc_install(k);
    static struct tv v[300];
    int ok[300];
    char key[16];
    for (int i = 0; i < 300; i++) {
      tv_init(&v[i], (uint64_t)i, 1);
      snprintf(key, sizeof key, "k%d", i);
      int r = put_s(c, key, &v[i], 0);
      assert_true(r == 0 || r == -ENOMEM);
      ok[i] = r == 0;
    }
    tu_alloc_install(SIZE_MAX);
    uint64_t n = 0;
    for (int i = 0; i < 300; i++) {
      snprintf(key, sizeof key, "k%d", i);
      assert_int_equal(has(c, key, 0), ok[i]);
      n += (uint64_t)ok[i];
    }
    ratchet_cache_stats s;
    stats(c, &s);
    assert_int_equal(s.entries, n);
    ratchet_cache_free(c);
    tu_alloc_uninstall();
  }
}

/* ---- threads ----------------------------------------------------------------
 */

#define THREADS  4
#define OPS      20000
#define KEYS     384
#define POOL     (THREADS * OPS / 2)
#define CAPACITY 4096

struct shared {
  ratchet_cache *c;
  struct tv *pool;
  atomic_int *put_ok;
  atomic_size_t next_value;
  atomic_uint_fast64_t clock;
  atomic_uint_fast64_t gets, bad;
  atomic_int seed;
};

static void *worker(void *arg) {
  struct shared *sh = arg;
  uint64_t st = (uint64_t)atomic_fetch_add(&sh->seed, 1) * 7919 + 17;
  uint64_t gets = 0, bad = 0;
  char key[16];
  for (int i = 0; i < OPS; i++) {
    uint64_t r = tm_rand(&st);
    uint64_t now = atomic_fetch_add(&sh->clock, 10);
    unsigned k = (unsigned)(r >> 8) % KEYS;
    int klen = snprintf(key, sizeof key, "k%u", k);
    unsigned op = (unsigned)(r % 100);
    if (op < 60) {
      ratchet_cache_ref *ref;
      gets++;
      if (ratchet_cache_get(sh->c, key, (size_t)klen, now, &ref) == 0) {
        struct tv *v = ratchet_cache_ref_value(ref);
        if (v->key != k || atomic_load(&v->destroyed) != 0 ||
            ratchet_cache_ref_size(ref) != v->size)
          bad++;
        ratchet_cache_release(sh->c, ref);
      }
    } else if (op < 88) {
      size_t idx = atomic_fetch_add(&sh->next_value, 1);
      if (idx >= POOL)
        continue;
      struct tv *v = &sh->pool[idx];
      tv_init(v, k, 1 + (r >> 20) % 64);
      static const char *const tags[] = {"even", "odd"};
      ratchet_cache_put_options po = RATCHET_CACHE_PUT_OPTIONS_INIT;
      po.tags = &tags[k & 1];
      po.ntags = 1;
      po.ttl_ns = (r >> 30) % 4 == 0 ? 1 + (r >> 32) % 2000 : 0;
      int e = ratchet_cache_put(sh->c, key, (size_t)klen, v, v->size, &po, now);
      if (e == 0)
        atomic_store(&sh->put_ok[idx], 1);
      else
        bad++;
    } else if (op < 93) {
      ratchet_cache_invalidate(sh->c, key, (size_t)klen);
    } else if (op < 95) {
      ratchet_cache_expire(sh->c, now, 4);
    } else if (op < 96) {
      if ((r >> 40) % 8 == 0)
        ratchet_cache_invalidate_tag(sh->c, (r >> 44) & 1 ? "odd" : "even");
      else
        ratchet_cache_invalidate_prefix(sh->c, "k1", 2);
    } else {
      ratchet_cache_stats s;
      ratchet_cache_stats_get(sh->c, &s);
      if (s.bytes > CAPACITY)
        bad++;
    }
  }
  atomic_fetch_add(&sh->gets, gets);
  atomic_fetch_add(&sh->bad, bad);
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  for (int p = 0; p < 4; p++) {
    struct dctx d;
    struct shared sh;
    sh.c = make((ratchet_cache_policy)p, CAPACITY, &d);
    sh.pool = calloc(POOL, sizeof *sh.pool);
    sh.put_ok = calloc(POOL, sizeof *sh.put_ok);
    assert_non_null(sh.pool);
    assert_non_null(sh.put_ok);
    atomic_init(&sh.next_value, 0);
    atomic_init(&sh.clock, 0);
    atomic_init(&sh.gets, 0);
    atomic_init(&sh.bad, 0);
    atomic_init(&sh.seed, 1);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
      assert_int_equal(pthread_create(&t[i], NULL, worker, &sh), 0);
    for (int i = 0; i < THREADS; i++)
      pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&sh.bad), 0);
    assert_int_equal(atomic_load(&d.bad), 0);
    /* Every reference is back: what is not destroyed is exactly what the
     * cache holds. */
    size_t used = atomic_load(&sh.next_value);
    if (used > POOL)
      used = POOL;
    uint64_t bytes = 0, live = 0, ok = 0;
    for (size_t i = 0; i < used; i++) {
      int destroyed = atomic_load(&sh.pool[i].destroyed);
      if (!atomic_load(&sh.put_ok[i])) {
        assert_int_equal(destroyed, 0);
        continue;
      }
      ok++;
      if (destroyed == 0) {
        bytes += sh.pool[i].size;
        live++;
      }
    }
    ratchet_cache_stats s;
    ratchet_cache_stats_get(sh.c, &s);
    assert_int_equal(s.bytes, bytes);
    assert_int_equal(s.entries, live);
    assert_int_equal(s.insertions, ok);
    assert_int_equal(s.hits + s.misses, atomic_load(&sh.gets));
    assert_true(s.hits > 0);
    assert_true(s.evictions > 0);
    assert_true(s.expirations > 0);
    assert_true(s.invalidations > 0);
    ratchet_cache_free(sh.c);
    /* Destroyed exactly once each (d.bad counts the second calls). */
    for (size_t i = 0; i < used; i++)
      assert_int_equal(atomic_load(&sh.pool[i].destroyed),
                       atomic_load(&sh.put_ok[i]));
    assert_int_equal(atomic_load(&d.calls), (long)ok);
    assert_int_equal(atomic_load(&d.bad), 0);
    free(sh.pool);
    free(sh.put_ok);
  }
}

int test_memcache(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_put_get_release),
      cmocka_unit_test(test_bad_args),
      cmocka_unit_test(test_ref_outlives_eviction),
      cmocka_unit_test(test_replace),
      cmocka_unit_test(test_too_big),
      cmocka_unit_test(test_bounds),
      cmocka_unit_test(test_max_entries),
      cmocka_unit_test(test_matches_sim),
      cmocka_unit_test(test_ttl_lazy),
      cmocka_unit_test(test_expire_active),
      cmocka_unit_test(test_invalidate),
      cmocka_unit_test(test_tags),
      cmocka_unit_test(test_clear),
      cmocka_unit_test(test_oom),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests_name("memcache", tests, NULL, NULL);
}
