/*
 * test_breaker_threads.c - several threads hammer one breaker with every
 * call at once, on a shared virtual clock that each thread reads a little
 * out of order (so the breaker also sees time go backwards). Afterwards the
 * books must balance: every recorded outcome is in the totals, every refusal
 * counted, and the listener heard exactly the transitions the breaker
 * counted. Built to run under ThreadSanitizer.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ratchet/breaker.h"
#include "ratchet/error.h"
#include "testutil.h"

#define THREADS    4
#define ITERATIONS 20000

struct shared {
  ratchet_breaker *b;
  uint32_t window_size;
  uint32_t permitted;
  atomic_uint_fast64_t clock;
  atomic_uint_fast64_t successes, failures, refused;
  atomic_uint_fast64_t heard;   /* listener calls */
  atomic_uint_fast64_t bad;     /* invariant violations seen by any thread */
  atomic_uint_fast64_t entered; /* threads that have started */
};

static void count_listener(void *ctx, ratchet_breaker *b,
                           ratchet_breaker_state from, ratchet_breaker_state to,
                           uint64_t now_ns) {
  (void)b;
  (void)now_ns;
  struct shared *sh = ctx;
  atomic_fetch_add(&sh->heard, 1);
  if (from == to || (unsigned)to >= RATCHET_BREAKER_STATE_COUNT)
    atomic_fetch_add(&sh->bad, 1);
}

/* xorshift32, one per thread. */
static uint32_t next_rand(uint32_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 17;
  *x ^= *x << 5;
  return *x;
}

static void check_metrics(struct shared *sh, uint64_t now) {
  ratchet_breaker_metrics m;
  ratchet_breaker_metrics_get(sh->b, now, &m);
  int ok =
      (unsigned)m.state < RATCHET_BREAKER_STATE_COUNT &&
      m.failed_calls <= m.calls && m.slow_calls <= m.calls &&
      m.half_open_permits_left <= sh->permitted &&
      (m.state == RATCHET_BREAKER_HALF_OPEN || m.half_open_permits_left == 0) &&
      (m.state == RATCHET_BREAKER_OPEN || m.open_until_ns == 0) &&
      (m.failure_rate == -1.0 ||
       (m.failure_rate >= 0.0 && m.failure_rate <= 100.0));
  if (sh->window_size != 0)
    ok = ok && m.calls <= sh->window_size;
  if (!ok)
    atomic_fetch_add(&sh->bad, 1);
}

static void *worker(void *arg) {
  struct shared *sh = arg;
  uint32_t seed = (uint32_t)atomic_fetch_add(&sh->entered, 1) * 7919u + 1u;
  uint64_t ok = 0, bad = 0, refused = 0;
  for (int i = 0; i < ITERATIONS; i++) {
    uint32_t r = next_rand(&seed);
    /* Read the clock, then advance it: another thread may report at an
     * earlier time after this one, as real threads do. */
    uint64_t now = atomic_fetch_add(&sh->clock, 20000); /* 20 us */
    if (ratchet_breaker_allow(sh->b, now) == 0) {
      ratchet_breaker_outcome out = (r & 3) == 0   ? RATCHET_BREAKER_FAILURE
                                    : (r & 3) == 1 ? RATCHET_BREAKER_IGNORED
                                    : (r & 8)      ? RATCHET_BREAKER_FAILURE
                                                   : RATCHET_BREAKER_SUCCESS;
      ratchet_breaker_record(sh->b, out, (r >> 8) % (2 * TU_MS), now);
      ok += out == RATCHET_BREAKER_SUCCESS;
      bad += out == RATCHET_BREAKER_FAILURE;
    } else {
      refused++;
    }
    if ((r >> 4) % 64 == 0)
      check_metrics(sh, now);
    if ((r >> 4) % 64 == 1)
      (void)ratchet_breaker_state_at(sh->b, now);
    if ((r >> 4) % 997 == 2)
      ratchet_breaker_transition(
          sh->b,
          (ratchet_breaker_state)((r >> 16) % RATCHET_BREAKER_STATE_COUNT),
          now);
    if ((r >> 4) % 2503 == 3)
      ratchet_breaker_transition(sh->b, RATCHET_BREAKER_CLOSED, now);
    if ((r >> 4) % 4999 == 4)
      ratchet_breaker_reset(sh->b, now);
  }
  atomic_fetch_add(&sh->successes, ok);
  atomic_fetch_add(&sh->failures, bad);
  atomic_fetch_add(&sh->refused, refused);
  return NULL;
}

static void hammer(ratchet_breaker_window window) {
  struct shared sh;
  atomic_init(&sh.clock, 0);
  atomic_init(&sh.successes, 0);
  atomic_init(&sh.failures, 0);
  atomic_init(&sh.refused, 0);
  atomic_init(&sh.heard, 0);
  atomic_init(&sh.bad, 0);
  atomic_init(&sh.entered, 0);

  ratchet_breaker_options o = RATCHET_BREAKER_OPTIONS_INIT;
  o.window = window;
  o.window_size = 20;
  o.bucket_ns = TU_MS;
  o.minimum_calls = 10;
  o.consecutive_failures = 3;
  o.slow_call_duration_ns = TU_MS;
  o.slow_call_rate_threshold = 80.0;
  o.open_duration_ns = TU_MS;
  o.open_backoff_multiplier = 1.5;
  o.max_open_duration_ns = 20 * TU_MS;
  o.permitted_calls_in_half_open = 4;
  o.max_wait_in_half_open_ns = 3 * TU_MS;
  o.listener = count_listener;
  o.listener_ctx = &sh;
  sh.window_size = window == RATCHET_BREAKER_WINDOW_COUNT ? o.window_size : 0;
  sh.permitted = o.permitted_calls_in_half_open;
  assert_int_equal(ratchet_breaker_new(&o, 0, &sh.b), 0);

  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, worker, &sh), 0);
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_join(t[i], NULL), 0);

  ratchet_breaker_metrics m;
  ratchet_breaker_metrics_get(sh.b, atomic_load(&sh.clock), &m);
  /* The final metrics_get may itself make a time-driven change; its
   * listener call has returned by now, so the counts still match. */
  assert_int_equal(m.total_successes, atomic_load(&sh.successes));
  assert_int_equal(m.total_failures, atomic_load(&sh.failures));
  assert_int_equal(m.total_not_permitted, atomic_load(&sh.refused));
  assert_int_equal(m.total_transitions, atomic_load(&sh.heard));
  assert_int_equal(atomic_load(&sh.bad), 0);
  /* The run went round the states, not just sat in one. */
  assert_true(m.total_transitions > 50);
  assert_true(m.total_not_permitted > 0);
  ratchet_breaker_free(sh.b);
}

static void test_threads_count_window(void **state) {
  (void)state;
  hammer(RATCHET_BREAKER_WINDOW_COUNT);
}

static void test_threads_time_window(void **state) {
  (void)state;
  hammer(RATCHET_BREAKER_WINDOW_TIME);
}

static void test_threads_consecutive(void **state) {
  (void)state;
  hammer(RATCHET_BREAKER_WINDOW_CONSECUTIVE);
}

int test_breaker_threads(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_threads_count_window),
      cmocka_unit_test(test_threads_time_window),
      cmocka_unit_test(test_threads_consecutive),
  };
  return cmocka_run_group_tests_name("breaker_threads", tests, NULL, NULL);
}
