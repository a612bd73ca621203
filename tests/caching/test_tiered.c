/*
 * test_tiered.c - the two-tier cache: write-through, read-through with
 * promotion, TTL carried into memory, a store that refuses, a memory tier
 * that declines, invalidation, statistics, threads and allocation failure.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratchet/alloc.h"
#include "ratchet/error.h"
#include "ratchet/tiered.h"
#include "testutil.h"

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  if (flag == FTW_DP)
    rmdir(path);
  else
    unlink(path);
  return 0;
}

struct fix {
  char tmp[512];
  ratchet_store *store;
  ratchet_tiered *t;
};

static void fix_open_store(struct fix *f, uint64_t max_bytes) {
  ratchet_store_options o = RATCHET_STORE_OPTIONS_INIT;
  char dir[600];
  snprintf(dir, sizeof dir, "%s/store", f->tmp);
  o.dir = dir;
  o.max_bytes = max_bytes;
  o.durability = RATCHET_STORE_NOSYNC; /* see test_store.c's quick() */
  f->store = NULL;
  int rc = ratchet_store_open(&o, &f->store);
  if (rc != 0)
    fail_msg("%s", ratchet_store_last_error());
}

static ratchet_tiered *make_tiered(ratchet_store *s, uint64_t mem_bytes) {
  ratchet_tiered_options o = RATCHET_TIERED_OPTIONS_INIT;
  o.memory.capacity_bytes = mem_bytes;
  o.store = s;
  ratchet_tiered *t = NULL;
  assert_int_equal(ratchet_tiered_new(&o, &t), 0);
  assert_non_null(t);
  return t;
}

static void fix_init(struct fix *f, uint64_t mem_bytes) {
  const char *t = getenv("TMPDIR");
  snprintf(f->tmp, sizeof f->tmp, "%s/ratchet-tiered-XXXXXX",
           t != NULL && t[0] == '/' ? t : "/tmp");
  assert_non_null(mkdtemp(f->tmp));
  fix_open_store(f, UINT64_C(1) << 30);
  f->t = make_tiered(f->store, mem_bytes);
}

static void fix_done(struct fix *f) {
  ratchet_tiered_free(f->t);
  ratchet_store_close(f->store);
  nftw(f->tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static ratchet_cache_key K(uint64_t i) {
  ratchet_cache_key k = {UINT64_C(0x7e1), i};
  return k;
}

/* Gets key i and returns the tier it came from (0 on a miss), checking the
 * value when want is not NULL. */
static int tier_of(ratchet_tiered *t, uint64_t i, uint64_t now,
                   const char *want) {
  ratchet_tiered_value v;
  ratchet_cache_key k = K(i);
  int rc = ratchet_tiered_get(t, &k, now, &v);
  if (rc == RATCHET_ECACHE_MISS)
    return 0;
  assert_int_equal(rc, 0);
  if (want != NULL) {
    assert_int_equal(v.size, strlen(want));
    assert_memory_equal(v.data, want, v.size);
  }
  int tier = v.tier;
  ratchet_tiered_release(t, &v);
  assert_null(v.data);
  return tier;
}

static void put(ratchet_tiered *t, uint64_t i, const char *value, uint64_t ttl,
                uint64_t now) {
  ratchet_store_put_options po = RATCHET_STORE_PUT_OPTIONS_INIT;
  po.ttl_ms = ttl;
  ratchet_cache_key k = K(i);
  assert_int_equal(ratchet_tiered_put(t, &k, value, strlen(value), &po, now),
                   0);
}

static void test_write_and_read_through(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f, 1 << 20);
  put(f.t, 1, "one", 0, 1000);
  assert_int_equal(tier_of(f.t, 1, 1000, "one"), RATCHET_TIERED_MEMORY);
  /* Written through: the store has it too. */
  void *v;
  size_t n;
  ratchet_cache_key k1 = K(1);
  assert_int_equal(ratchet_store_get(f.store, &k1, 1000, &v, &n, NULL), 0);
  assert_memory_equal(v, "one", 3);
  ratchet_free(v);
  /* Memory lost (or a new process): read through and promote. */
  ratchet_cache_clear(ratchet_tiered_memory(f.t));
  assert_int_equal(tier_of(f.t, 1, 1001, "one"), RATCHET_TIERED_STORE);
  assert_int_equal(tier_of(f.t, 1, 1002, "one"), RATCHET_TIERED_MEMORY);
  ratchet_tiered_free(f.t);
  f.t = make_tiered(f.store, 1 << 20);
  assert_int_equal(tier_of(f.t, 1, 1003, "one"), RATCHET_TIERED_STORE);
  assert_int_equal(tier_of(f.t, 1, 1004, "one"), RATCHET_TIERED_MEMORY);
  assert_int_equal(tier_of(f.t, 2, 1004, NULL), 0);
  /* Replace. */
  put(f.t, 1, "uno", 0, 2000);
  assert_int_equal(tier_of(f.t, 1, 2000, "uno"), RATCHET_TIERED_MEMORY);
  ratchet_tiered_stats st;
  ratchet_tiered_stats_get(f.t, &st);
  assert_int_equal(st.memory_hits, 2);
  assert_int_equal(st.store_hits, 1);
  assert_int_equal(st.promotions, 1);
  assert_int_equal(st.misses, 1);
  assert_int_equal(st.puts, 1);
  assert_int_equal(st.memory.entries, 1);
  assert_int_equal(st.store.entries, 1);
  /* An empty value. */
  put(f.t, 3, "", 0, 3000);
  assert_int_equal(tier_of(f.t, 3, 3000, ""), RATCHET_TIERED_MEMORY);
  ratchet_cache_clear(ratchet_tiered_memory(f.t));
  assert_int_equal(tier_of(f.t, 3, 3000, ""), RATCHET_TIERED_STORE);
  fix_done(&f);
}

static void test_ttl_in_both_tiers(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f, 1 << 20);
  put(f.t, 1, "a", 1000, 1000);
  assert_int_equal(tier_of(f.t, 1, 1999, "a"), RATCHET_TIERED_MEMORY);
  assert_int_equal(tier_of(f.t, 1, 2000, NULL), 0);
  /* A promoted copy keeps only the rest of the TTL. */
  put(f.t, 2, "b", 1000, 1000);
  ratchet_cache_clear(ratchet_tiered_memory(f.t));
  assert_int_equal(tier_of(f.t, 2, 1500, "b"), RATCHET_TIERED_STORE);
  assert_int_equal(tier_of(f.t, 2, 1999, "b"), RATCHET_TIERED_MEMORY);
  assert_int_equal(tier_of(f.t, 2, 2000, NULL), 0);
  /* "Never" stays. */
  put(f.t, 3, "c", RATCHET_STORE_TTL_NEVER, 1000);
  assert_int_equal(tier_of(f.t, 3, UINT64_C(1) << 40, "c"),
                   RATCHET_TIERED_MEMORY);
  fix_done(&f);
}

static void test_refusals(void **state) {
  (void)state;
  struct fix f;
  const char *t = getenv("TMPDIR");
  snprintf(f.tmp, sizeof f.tmp, "%s/ratchet-tiered-XXXXXX",
           t != NULL && t[0] == '/' ? t : "/tmp");
  assert_non_null(mkdtemp(f.tmp));
  fix_open_store(&f, 8192); /* the store holds small values only */
  f.t = make_tiered(f.store, 4096);
  /* Too big for memory, fine for the store: put succeeds. */
  char mid[6000];
  memset(mid, 'm', sizeof mid - 1);
  mid[sizeof mid - 1] = '\0';
  put(f.t, 1, mid, 0, 1000);
  assert_int_equal(tier_of(f.t, 1, 1000, mid), RATCHET_TIERED_STORE);
  /* The store refuses: the error comes back and memory holds nothing. */
  put(f.t, 2, "small", 0, 1000);
  assert_int_equal(tier_of(f.t, 2, 1000, "small"), RATCHET_TIERED_MEMORY);
  char *big = calloc(1, 10000);
  ratchet_cache_key k2 = K(2);
  assert_int_equal(ratchet_tiered_put(f.t, &k2, big, 10000, NULL, 2000),
                   RATCHET_ECACHE_TOO_BIG);
  free(big);
  /* The old "small" was invalidated from memory; the store still has it
   * (a failed put changes nothing there). */
  assert_int_equal(tier_of(f.t, 2, 2000, "small"), RATCHET_TIERED_STORE);
  /* Bad arguments. */
  ratchet_tiered_value v;
  assert_int_equal(ratchet_tiered_get(f.t, NULL, 0, &v), -EINVAL);
  assert_int_equal(ratchet_tiered_put(f.t, &k2, NULL, 3, NULL, 0), -EINVAL);
  ratchet_tiered_options o = RATCHET_TIERED_OPTIONS_INIT;
  ratchet_tiered *x = NULL;
  assert_int_equal(ratchet_tiered_new(&o, &x), -EINVAL); /* no store */
  o.store = f.store;
  o.memory.capacity_bytes = 0;
  assert_int_equal(ratchet_tiered_new(&o, &x), -EINVAL);
  assert_null(x);
  ratchet_tiered_free(NULL);
  ratchet_tiered_release(f.t, NULL);
  fix_done(&f);
}

static void test_invalidate_and_clear(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f, 1 << 20);
  put(f.t, 1, "a", 0, 1000);
  put(f.t, 2, "b", 0, 1000);
  ratchet_cache_key k1 = K(1), k9 = K(9);
  assert_int_equal(ratchet_tiered_invalidate(f.t, &k1), 0);
  assert_int_equal(tier_of(f.t, 1, 1000, NULL), 0);
  assert_int_equal(ratchet_tiered_invalidate(f.t, &k1), RATCHET_ECACHE_MISS);
  assert_int_equal(ratchet_tiered_invalidate(f.t, &k9), RATCHET_ECACHE_MISS);
  /* Only in the store. */
  ratchet_cache_clear(ratchet_tiered_memory(f.t));
  ratchet_cache_key k2 = K(2);
  assert_int_equal(ratchet_tiered_invalidate(f.t, &k2), 0);
  assert_int_equal(tier_of(f.t, 2, 1000, NULL), 0);
  put(f.t, 3, "c", 0, 1000);
  assert_int_equal(ratchet_tiered_clear(f.t), 0);
  assert_int_equal(tier_of(f.t, 3, 1000, NULL), 0);
  ratchet_tiered_stats st;
  ratchet_tiered_stats_get(f.t, &st);
  assert_int_equal(st.memory.entries, 0);
  assert_int_equal(st.store.entries, 0);
  fix_done(&f);
}

/* ---- threads ---- */

struct worker_arg {
  ratchet_tiered *t;
  int id, bad;
};

static void *worker(void *p) {
  struct worker_arg *a = p;
  char val[32];
  for (int i = 0; i < 300; i++) {
    uint64_t k = (uint64_t)((i * 7 + a->id) % 32);
    ratchet_cache_key key = K(k);
    if (i % 3 == 0) {
      snprintf(val, sizeof val, "k%llu", (unsigned long long)k);
      if (ratchet_tiered_put(a->t, &key, val, strlen(val), NULL, 1000) != 0)
        a->bad++;
    } else if (i % 17 == 0) {
      ratchet_cache_clear(ratchet_tiered_memory(a->t));
    } else {
      ratchet_tiered_value v;
      int rc = ratchet_tiered_get(a->t, &key, 1000, &v);
      if (rc == 0) {
        snprintf(val, sizeof val, "k%llu", (unsigned long long)k);
        if (v.size != strlen(val) || memcmp(v.data, val, v.size) != 0)
          a->bad++;
        ratchet_tiered_release(a->t, &v);
      } else if (rc != RATCHET_ECACHE_MISS) {
        a->bad++;
      }
    }
  }
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f, 1 << 20);
  enum { T = 4 };
  pthread_t th[T];
  struct worker_arg args[T];
  for (int i = 0; i < T; i++) {
    args[i].t = f.t;
    args[i].id = i;
    args[i].bad = 0;
    assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
  }
  for (int i = 0; i < T; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(args[i].bad, 0);
  }
  fix_done(&f);
}

/* ---- allocation failure ---- */

static void test_alloc_failure(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f, 1 << 20);
  put(f.t, 1, "stored", 0, 1000);
  ratchet_tiered_free(f.t);
  f.t = NULL;
  int failures = 0;
  for (size_t budget = 0; budget < 100; budget++) {
    tu_alloc_install(budget);
    ratchet_tiered_options o = RATCHET_TIERED_OPTIONS_INIT;
    o.store = f.store;
    ratchet_tiered *t = NULL;
    int rc = ratchet_tiered_new(&o, &t);
    if (rc == 0) {
      ratchet_tiered_value v;
      ratchet_cache_key k1 = K(1), k2 = K(2);
      rc = ratchet_tiered_get(t, &k1, 1000, &v); /* the store, promoted */
      if (rc == 0) {
        assert_memory_equal(v.data, "stored", 6);
        ratchet_tiered_release(t, &v);
        rc = ratchet_tiered_put(t, &k2, "two", 3, NULL, 1000);
      }
      if (rc == 0) {
        rc = ratchet_tiered_get(t, &k2, 1000, &v);
        if (rc == 0)
          ratchet_tiered_release(t, &v);
      }
      ratchet_tiered_free(t);
    }
    long live = tu_alloc_live();
    tu_alloc_uninstall();
    assert_int_equal(live, 0);
    if (rc == 0)
      break;
    assert_int_equal(rc, -ENOMEM);
    failures++;
  }
  assert_true(failures >= 3);
  fix_done(&f);
}

/* ---- a write between the store read and the promotion ---- */

/* ratchet_tiered_get reads the store, then copies the value into memory.
 * The hook below runs a write exactly in between: it fires on the second
 * allocation of RACE_LEN bytes (the store's copy is the first, the
 * promotion's copy the second) and invalidates the key, or puts a new
 * value. Memory must not be left holding the old value either way. */
#define RACE_LEN 7777

static struct {
  ratchet_tiered *t;
  int seen, fired, put_new;
} race;

static void *race_malloc(size_t n) {
  if (n == RACE_LEN && race.t != NULL && ++race.seen == 2) {
    ratchet_cache_key k = K(1);
    race.fired = 1;
    if (race.put_new)
      put(race.t, 1, "v2", 0, 1000);
    else
      assert_int_equal(ratchet_tiered_invalidate(race.t, &k), 0);
  }
  return malloc(n);
}

static void race_get(struct fix *f, int put_new) {
  char *v1 = malloc(RACE_LEN);
  memset(v1, 'a', RACE_LEN);
  ratchet_cache_key k = K(1);
  assert_int_equal(ratchet_tiered_put(f->t, &k, v1, RACE_LEN, NULL, 1000), 0);
  ratchet_cache_clear(ratchet_tiered_memory(f->t)); /* only in the store */
  race.t = f->t;
  race.seen = 0;
  race.fired = 0;
  race.put_new = put_new;
  ratchet_replace_allocator(race_malloc, realloc, calloc, free);
  ratchet_tiered_value v;
  int rc = ratchet_tiered_get(f->t, &k, 1000, &v);
  ratchet_reset_allocator();
  race.t = NULL;
  assert_int_equal(rc, 0);
  assert_true(race.fired);
  /* The value read before the write is a correct answer for this get. */
  assert_int_equal(v.tier, RATCHET_TIERED_STORE);
  assert_int_equal(v.size, RACE_LEN);
  assert_memory_equal(v.data, v1, RACE_LEN);
  ratchet_tiered_release(f->t, &v);
  free(v1);
}

static void test_promotion_race(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f, 1 << 20);
  race_get(&f, 0);
  assert_int_equal(tier_of(f.t, 1, 1000, NULL), 0); /* invalidated: a miss */
  race_get(&f, 1);
  assert_true(tier_of(f.t, 1, 1000, "v2") != 0); /* the new value */
  fix_done(&f);
}

int test_tiered(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_write_and_read_through),
      cmocka_unit_test(test_ttl_in_both_tiers),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_invalidate_and_clear),
      cmocka_unit_test(test_threads),
      cmocka_unit_test(test_alloc_failure),
      cmocka_unit_test(test_promotion_race),
  };
  return cmocka_run_group_tests_name("tiered", tests, NULL, NULL);
}
