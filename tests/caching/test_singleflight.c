/*
 * test_singleflight.c - one computation per key: callback leaders and
 * followers (order, leave, re-entrant callbacks, errors, many keys), the
 * blocking API across threads (one call, shared results, values destroyed
 * once), both APIs on one key, and allocation failure. The thread tests
 * wait for each other through ratchet_singleflight_waiting, never by
 * sleeping for a guessed time.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ratchet/alloc.h"
#include "ratchet/singleflight.h"
#include "testutil.h"

/* Records callbacks: who was called, in which order, with what. */
struct calls {
  int n;
  int who[16];
  int status[16];
  char value[16][16];
};

struct waiter {
  struct calls *calls;
  int id;
  /* Optional re-entrant actions. */
  ratchet_singleflight *g;
  ratchet_singleflight_ticket *leave_me;
  int join_again;
  ratchet_singleflight_ticket *joined;
  int joined_rc;
};

static void on_done(void *ctx, int status, const void *value, size_t size) {
  struct waiter *w = ctx;
  struct calls *c = w->calls;
  c->who[c->n] = w->id;
  c->status[c->n] = status;
  snprintf(c->value[c->n], sizeof c->value[0], "%.*s", (int)size,
           value != NULL ? (const char *)value : "");
  c->n++;
  if (w->leave_me != NULL)
    assert_int_equal(ratchet_singleflight_leave(w->g, w->leave_me), 0);
  if (w->join_again)
    w->joined_rc =
        ratchet_singleflight_join(w->g, "k", 1, NULL, NULL, &w->joined);
}

static atomic_int destroyed;

static void destroy_value(void *ctx, void *value, size_t size) {
  (void)ctx;
  (void)size;
  atomic_fetch_add(&destroyed, 1);
  free(value);
}

static ratchet_singleflight *group(int with_destroy) {
  ratchet_singleflight_options o = RATCHET_SINGLEFLIGHT_OPTIONS_INIT;
  if (with_destroy)
    o.destroy = destroy_value;
  ratchet_singleflight *g = NULL;
  assert_int_equal(ratchet_singleflight_new(&o, &g), 0);
  assert_non_null(g);
  return g;
}

static char *dup_str(const char *s) {
  char *p = malloc(strlen(s) + 1);
  strcpy(p, s);
  return p;
}

static void test_leader_and_followers(void **state) {
  (void)state;
  ratchet_singleflight *g = group(1);
  struct calls c = {0};
  struct waiter w[4];
  ratchet_singleflight_ticket *t[4];
  for (int i = 0; i < 4; i++) {
    memset(&w[i], 0, sizeof w[i]);
    w[i].calls = &c;
    w[i].id = i;
    int rc = ratchet_singleflight_join(g, "key", 3, on_done, &w[i], &t[i]);
    assert_int_equal(rc, i == 0 ? RATCHET_SINGLEFLIGHT_LEADER
                                : RATCHET_SINGLEFLIGHT_FOLLOWER);
  }
  assert_int_equal(ratchet_singleflight_inflight(g), 1);
  assert_int_equal(ratchet_singleflight_waiting(g, "key", 3), 3);
  assert_int_equal(ratchet_singleflight_waiting(g, "other", 5), 0);
  /* Only the leader finishes; a follower cannot. */
  assert_int_equal(ratchet_singleflight_finish(g, t[1], 0, NULL, 0), -EINVAL);
  assert_int_equal(c.n, 0);
  atomic_store(&destroyed, 0);
  assert_int_equal(ratchet_singleflight_finish(g, t[0], 0, dup_str("v"), 1), 0);
  assert_int_equal(c.n, 4);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(c.who[i], i); /* join order, leader first */
    assert_int_equal(c.status[i], 0);
    assert_string_equal(c.value[i], "v");
  }
  assert_int_equal(atomic_load(&destroyed), 1);
  assert_int_equal(ratchet_singleflight_inflight(g), 0);
  assert_int_equal(ratchet_singleflight_waiting(g, "key", 3), 0);
  /* The next join starts a new flight. */
  c.n = 0;
  assert_int_equal(ratchet_singleflight_join(g, "key", 3, NULL, NULL, &t[0]),
                   RATCHET_SINGLEFLIGHT_LEADER);
  assert_int_equal(ratchet_singleflight_finish(g, t[0], 0, NULL, 0), 0);
  assert_int_equal(atomic_load(&destroyed), 1); /* NULL is not destroyed */
  ratchet_singleflight_free(g);
  ratchet_singleflight_free(NULL);
}

static void test_leave_and_errors(void **state) {
  (void)state;
  ratchet_singleflight *g = group(0);
  struct calls c = {0};
  struct waiter w[3] = {{&c, 0, NULL, NULL, 0, NULL, 0},
                        {&c, 1, NULL, NULL, 0, NULL, 0},
                        {&c, 2, NULL, NULL, 0, NULL, 0}};
  ratchet_singleflight_ticket *t[3];
  for (int i = 0; i < 3; i++)
    ratchet_singleflight_join(g, "k", 1, on_done, &w[i], &t[i]);
  assert_int_equal(ratchet_singleflight_leave(g, t[0]), -EINVAL);
  assert_int_equal(ratchet_singleflight_leave(g, t[1]), 0);
  assert_int_equal(ratchet_singleflight_waiting(g, "k", 1), 1);
  /* A leader that gives up: everyone sees the error. */
  assert_int_equal(ratchet_singleflight_finish(g, t[0], -ECANCELED, NULL, 0),
                   0);
  assert_int_equal(c.n, 2);
  assert_int_equal(c.who[0], 0);
  assert_int_equal(c.who[1], 2);
  assert_int_equal(c.status[1], -ECANCELED);
  /* Bad arguments. */
  ratchet_singleflight_ticket *x;
  assert_int_equal(ratchet_singleflight_join(NULL, "k", 1, NULL, NULL, &x),
                   -EINVAL);
  assert_int_equal(ratchet_singleflight_join(g, NULL, 1, NULL, NULL, &x),
                   -EINVAL);
  assert_int_equal(ratchet_singleflight_join(g, "k", 1, NULL, NULL, NULL),
                   -EINVAL);
  assert_int_equal(ratchet_singleflight_finish(g, NULL, 0, NULL, 0), -EINVAL);
  assert_int_equal(ratchet_singleflight_leave(g, NULL), -EINVAL);
  assert_int_equal(ratchet_singleflight_new(NULL, NULL), -EINVAL);
  /* An empty key is a key. */
  assert_int_equal(ratchet_singleflight_join(g, NULL, 0, NULL, NULL, &x),
                   RATCHET_SINGLEFLIGHT_LEADER);
  ratchet_singleflight_ticket *y;
  assert_int_equal(ratchet_singleflight_join(g, "", 0, NULL, NULL, &y),
                   RATCHET_SINGLEFLIGHT_FOLLOWER);
  assert_int_equal(ratchet_singleflight_finish(g, x, 0, NULL, 0), 0);
  ratchet_singleflight_free(g);
}

static void test_reentrant_callbacks(void **state) {
  (void)state;
  ratchet_singleflight *g = group(0);
  struct calls c = {0};
  struct waiter w[3];
  ratchet_singleflight_ticket *t[3];
  for (int i = 0; i < 3; i++) {
    memset(&w[i], 0, sizeof w[i]);
    w[i].calls = &c;
    w[i].id = i;
    w[i].g = g;
    ratchet_singleflight_join(g, "k", 1, on_done, &w[i], &t[i]);
  }
  /* The leader's callback joins the same key (a new flight) and makes
   * follower 2 leave before its turn. */
  w[0].join_again = 1;
  w[0].leave_me = t[2];
  char x[] = "x";
  assert_int_equal(ratchet_singleflight_finish(g, t[0], 7, x, 1), 0);
  assert_int_equal(c.n, 2);
  assert_int_equal(c.who[1], 1);
  assert_int_equal(w[0].joined_rc, RATCHET_SINGLEFLIGHT_LEADER);
  assert_int_equal(ratchet_singleflight_inflight(g), 1);
  assert_int_equal(ratchet_singleflight_finish(g, w[0].joined, 0, NULL, 0), 0);
  assert_int_equal(ratchet_singleflight_inflight(g), 0);
  ratchet_singleflight_free(g);
}

static void test_many_keys(void **state) {
  (void)state;
  ratchet_singleflight *g = group(0);
  enum { N = 1000 };
  ratchet_singleflight_ticket **lead = malloc(N * sizeof *lead);
  ratchet_singleflight_ticket *f;
  char key[16];
  for (int i = 0; i < N; i++) {
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(
        ratchet_singleflight_join(g, key, strlen(key), NULL, NULL, &lead[i]),
        RATCHET_SINGLEFLIGHT_LEADER);
  }
  assert_int_equal(ratchet_singleflight_inflight(g), N);
  for (int i = 0; i < N; i++) {
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(
        ratchet_singleflight_join(g, key, strlen(key), NULL, NULL, &f),
        RATCHET_SINGLEFLIGHT_FOLLOWER);
    assert_int_equal(ratchet_singleflight_waiting(g, key, strlen(key)), 1);
  }
  for (int i = N - 1; i >= 0; i--)
    assert_int_equal(ratchet_singleflight_finish(g, lead[i], 0, NULL, 0), 0);
  assert_int_equal(ratchet_singleflight_inflight(g), 0);
  free(lead);
  ratchet_singleflight_free(g);
}

/* ---- threads ---- */

struct shared {
  ratchet_singleflight *g;
  atomic_int computed;
  int expect_waiting;
  const char *key;
};

/* The leader's computation: waits until every other thread is waiting for
 * it, so that exactly one computation happens. */
static int compute(void *ctx, void **value, size_t *size) {
  struct shared *sh = ctx;
  atomic_fetch_add(&sh->computed, 1);
  while (ratchet_singleflight_waiting(sh->g, sh->key, strlen(sh->key)) <
         (size_t)sh->expect_waiting)
    sched_yield();
  *value = dup_str("result");
  *size = 6;
  return 42;
}

struct thread_out {
  struct shared *sh;
  int rc, status, shared;
  char value[16];
};

static void *worker(void *arg) {
  struct thread_out *o = arg;
  ratchet_singleflight_result *r = NULL;
  o->rc = ratchet_singleflight_do(o->sh->g, o->sh->key, strlen(o->sh->key),
                                  compute, o->sh, &r);
  if (o->rc == 0) {
    size_t n;
    const char *v = ratchet_singleflight_value(r, &n);
    o->status = ratchet_singleflight_status(r);
    o->shared = ratchet_singleflight_shared(r);
    snprintf(o->value, sizeof o->value, "%.*s", (int)n, v);
    ratchet_singleflight_release(o->sh->g, r);
  }
  return NULL;
}

static void test_blocking_threads(void **state) {
  (void)state;
  enum { T = 8 };
  for (int round = 0; round < 20; round++) {
    ratchet_singleflight *g = group(1);
    struct shared sh = {g, 0, T - 1, "same"};
    struct thread_out out[T];
    pthread_t th[T];
    atomic_store(&destroyed, 0);
    for (int i = 0; i < T; i++) {
      memset(&out[i], 0, sizeof out[i]);
      out[i].sh = &sh;
      assert_int_equal(pthread_create(&th[i], NULL, worker, &out[i]), 0);
    }
    for (int i = 0; i < T; i++)
      pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&sh.computed), 1);
    for (int i = 0; i < T; i++) {
      assert_int_equal(out[i].rc, 0);
      assert_int_equal(out[i].status, 42);
      assert_int_equal(out[i].shared, 1);
      assert_string_equal(out[i].value, "result");
    }
    assert_int_equal(atomic_load(&destroyed), 1);
    assert_int_equal(ratchet_singleflight_inflight(g), 0);
    ratchet_singleflight_free(g);
  }
}

static void test_blocking_alone(void **state) {
  (void)state;
  ratchet_singleflight *g = group(1);
  struct shared sh = {g, 0, 0, "solo"};
  ratchet_singleflight_result *r;
  atomic_store(&destroyed, 0);
  assert_int_equal(ratchet_singleflight_do(g, "solo", 4, compute, &sh, &r), 0);
  assert_int_equal(ratchet_singleflight_shared(r), 0);
  assert_int_equal(ratchet_singleflight_status(r), 42);
  assert_int_equal(atomic_load(&destroyed), 0); /* still held */
  ratchet_singleflight_release(g, r);
  assert_int_equal(atomic_load(&destroyed), 1);
  assert_int_equal(ratchet_singleflight_do(g, "solo", 4, NULL, &sh, &r),
                   -EINVAL);
  ratchet_singleflight_release(g, NULL);
  ratchet_singleflight_free(g);
}

/* A callback leader on the main thread; followers blocked in threads. */
static void test_mixed_apis(void **state) {
  (void)state;
  enum { T = 4 };
  ratchet_singleflight *g = group(1);
  ratchet_singleflight_ticket *lead;
  assert_int_equal(ratchet_singleflight_join(g, "mix", 3, NULL, NULL, &lead),
                   RATCHET_SINGLEFLIGHT_LEADER);
  struct shared sh = {g, 0, 0, "mix"};
  struct thread_out out[T];
  pthread_t th[T];
  atomic_store(&destroyed, 0);
  for (int i = 0; i < T; i++) {
    memset(&out[i], 0, sizeof out[i]);
    out[i].sh = &sh;
    assert_int_equal(pthread_create(&th[i], NULL, worker, &out[i]), 0);
  }
  while (ratchet_singleflight_waiting(g, "mix", 3) < T)
    sched_yield();
  assert_int_equal(ratchet_singleflight_finish(g, lead, 5, dup_str("cb"), 2),
                   0);
  for (int i = 0; i < T; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(out[i].status, 5);
    assert_string_equal(out[i].value, "cb");
  }
  assert_int_equal(atomic_load(&sh.computed), 0);
  assert_int_equal(atomic_load(&destroyed), 1);
  ratchet_singleflight_free(g);
}

/* A blocking leader; a callback joins while it computes. */
struct join_ctx {
  ratchet_singleflight *g;
  struct calls *calls;
  struct waiter w;
  ratchet_singleflight_ticket *t;
  int rc;
};

static int compute_and_join(void *ctx, void **value, size_t *size) {
  struct join_ctx *j = ctx;
  j->rc = ratchet_singleflight_join(j->g, "bl", 2, on_done, &j->w, &j->t);
  assert_int_equal(j->calls->n, 0);
  *value = NULL;
  *size = 0;
  return 3;
}

static void test_blocking_leader_callback_follower(void **state) {
  (void)state;
  ratchet_singleflight *g = group(0);
  struct calls c = {0};
  struct join_ctx j;
  memset(&j, 0, sizeof j);
  j.g = g;
  j.calls = &c;
  j.w.calls = &c;
  j.w.id = 9;
  ratchet_singleflight_result *r;
  assert_int_equal(
      ratchet_singleflight_do(g, "bl", 2, compute_and_join, &j, &r), 0);
  assert_int_equal(j.rc, RATCHET_SINGLEFLIGHT_FOLLOWER);
  assert_int_equal(c.n, 1);
  assert_int_equal(c.who[0], 9);
  assert_int_equal(c.status[0], 3);
  assert_int_equal(ratchet_singleflight_shared(r), 1);
  ratchet_singleflight_release(g, r);
  ratchet_singleflight_free(g);
}

/* ---- allocation failure ---- */

static int noop(void *ctx, void **value, size_t *size) {
  (void)ctx;
  (void)value;
  (void)size;
  return 0;
}

static void test_alloc_failure(void **state) {
  (void)state;
  int failures = 0;
  for (size_t budget = 0; budget < 50; budget++) {
    tu_alloc_install(budget);
    ratchet_singleflight *g = NULL;
    int rc = ratchet_singleflight_new(NULL, &g);
    ratchet_singleflight_ticket *a = NULL, *b = NULL;
    ratchet_singleflight_result *r = NULL;
    if (rc == 0) {
      rc = ratchet_singleflight_join(g, "k", 1, NULL, NULL, &a);
      if (rc == RATCHET_SINGLEFLIGHT_LEADER) {
        rc = ratchet_singleflight_join(g, "k", 1, NULL, NULL, &b);
        assert_true(rc == RATCHET_SINGLEFLIGHT_FOLLOWER || rc == -ENOMEM);
        assert_int_equal(ratchet_singleflight_finish(g, a, 0, NULL, 0), 0);
        if (rc > 0)
          rc = ratchet_singleflight_do(g, "d", 1, noop, NULL, &r);
      }
      if (r != NULL)
        ratchet_singleflight_release(g, r);
      assert_int_equal(ratchet_singleflight_inflight(g), 0);
      ratchet_singleflight_free(g);
    }
    long live = tu_alloc_live();
    tu_alloc_uninstall();
    assert_int_equal(live, 0);
    if (rc == 0)
      break;
    assert_int_equal(rc, -ENOMEM);
    failures++;
  }
  assert_true(failures >= 4);
}

int test_singleflight(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_leader_and_followers),
      cmocka_unit_test(test_leave_and_errors),
      cmocka_unit_test(test_reentrant_callbacks),
      cmocka_unit_test(test_many_keys),
      cmocka_unit_test(test_blocking_threads),
      cmocka_unit_test(test_blocking_alone),
      cmocka_unit_test(test_mixed_apis),
      cmocka_unit_test(test_blocking_leader_callback_follower),
      cmocka_unit_test(test_alloc_failure),
  };
  return cmocka_run_group_tests_name("singleflight", tests, NULL, NULL);
}
