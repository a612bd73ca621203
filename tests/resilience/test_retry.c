/*
 * test_retry.c - the retry policy: classification, the order of give-up
 * reasons, Retry-After handling, deadlines, the budget, and the blocking
 * loop on an injected clock.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ratchet/error.h"
#include "ratchet/retry.h"
#include "testutil.h"

/* No jitter, 100 ms x2, cap 1 s, at most 4 attempts. */
static ratchet_retry_options policy(void) {
  ratchet_retry_options o = RATCHET_RETRY_OPTIONS_INIT;
  o.backoff.jitter = RATCHET_JITTER_NONE;
  o.backoff.initial_ns = 100 * TU_MS;
  o.backoff.max_delay_ns = 1 * TU_S;
  o.backoff.max_attempts = 4;
  return o;
}

static bool only_eagain(void *ctx, int err) {
  (*(int *)ctx)++;
  return err == -EAGAIN;
}

static void test_classification(void **state) {
  (void)state;
  ratchet_retry_options o = policy();
  assert_false(ratchet_retry_is_retryable(&o, 0));
  assert_true(ratchet_retry_is_retryable(&o, -EIO));
  assert_true(ratchet_retry_is_retryable(&o, RATCHET_EBREAKER_OPEN));

  const int retry_on[] = {-ETIMEDOUT, -ECONNRESET};
  const int abort_on[] = {-ECONNRESET, -EINVAL};
  o.retry_on = retry_on;
  o.retry_on_len = 2;
  assert_true(ratchet_retry_is_retryable(&o, -ETIMEDOUT));
  assert_true(ratchet_retry_is_retryable(&o, -ECONNRESET));
  assert_false(ratchet_retry_is_retryable(&o, -EIO));
  o.abort_on = abort_on;
  o.abort_on_len = 2;
  assert_false(ratchet_retry_is_retryable(&o, -ECONNRESET)); /* abort wins */

  int calls = 0;
  o.classify = only_eagain;
  o.classify_ctx = &calls;
  assert_true(ratchet_retry_is_retryable(&o, -EAGAIN));
  assert_false(ratchet_retry_is_retryable(&o, -ETIMEDOUT)); /* over list */
  assert_false(ratchet_retry_is_retryable(&o, -EINVAL));    /* abort first */
  assert_int_equal(calls, 2);
}

static void test_next_reasons_in_order(void **state) {
  (void)state;
  ratchet_retry_options o = policy();
  ratchet_retry_state st;
  uint64_t d = 0;
  ratchet_retry_start(&o, &st, 0, 0);
  assert_int_equal(ratchet_retry_next(&o, &st, 0, 0, 0, 0, &d), -EINVAL);

  const int abort_on[] = {-EPERM};
  o.abort_on = abort_on;
  o.abort_on_len = 1;
  assert_int_equal(ratchet_retry_next(&o, &st, -EPERM, 0, 0, 0, &d),
                   RATCHET_ENOT_RETRYABLE);
  const uint64_t expect[] = {100 * TU_MS, 200 * TU_MS, 400 * TU_MS};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(ratchet_retry_next(&o, &st, -EIO, 0, 0, 0, &d), 0);
    assert_true(d == expect[i]);
  }
  assert_int_equal(st.backoff.attempts, 4);
  /* Out of attempts, and non-retryable still reported first. */
  assert_int_equal(ratchet_retry_next(&o, &st, -EIO, 0, 0, 0, &d),
                   RATCHET_EATTEMPTS);
  assert_int_equal(ratchet_retry_next(&o, &st, -EPERM, 0, 0, 0, &d),
                   RATCHET_ENOT_RETRYABLE);
}

static void test_retry_after(void **state) {
  (void)state;
  ratchet_retry_options o = policy();
  ratchet_retry_state st;
  uint64_t d = 0;

  /* Longer than the backoff: the server's delay wins. */
  ratchet_retry_start(&o, &st, 0, 0);
  assert_int_equal(ratchet_retry_next(&o, &st, -EAGAIN, 700 * TU_MS, 0, 0, &d),
                   0);
  assert_true(d == 700 * TU_MS);
  /* Shorter than the backoff: the backoff wins. */
  ratchet_retry_start(&o, &st, 0, 0);
  assert_int_equal(ratchet_retry_next(&o, &st, -EAGAIN, 1 * TU_MS, 0, 0, &d),
                   0);
  assert_true(d == 100 * TU_MS);
  /* Capped by the backoff's cap by default... */
  ratchet_retry_start(&o, &st, 0, 0);
  assert_int_equal(ratchet_retry_next(&o, &st, -EAGAIN, 60 * TU_S, 0, 0, &d),
                   0);
  assert_true(d == 1 * TU_S);
  /* ...or by max_retry_after_ns when set. */
  o.max_retry_after_ns = 5 * TU_S;
  ratchet_retry_start(&o, &st, 0, 0);
  assert_int_equal(ratchet_retry_next(&o, &st, -EAGAIN, 60 * TU_S, 0, 0, &d),
                   0);
  assert_true(d == 5 * TU_S);
  /* And it may not run past the overall deadline. */
  ratchet_retry_start(&o, &st, 0, 4 * TU_S);
  assert_int_equal(ratchet_retry_next(&o, &st, -EAGAIN, 60 * TU_S, 0, 0, &d),
                   RATCHET_EDEADLINE);
  assert_int_equal(st.backoff.attempts, 1);
}

static void test_deadlines(void **state) {
  (void)state;
  ratchet_retry_options o = policy();
  o.backoff.max_attempts = 0;
  ratchet_retry_state st;
  uint64_t d = 0;

  /* Absolute deadline at 10 s: a retry that would start after it is
   * refused, one that starts exactly at it is allowed. */
  ratchet_retry_start(&o, &st, 9 * TU_S, 10 * TU_S);
  assert_int_equal(
      ratchet_retry_next(&o, &st, -EIO, 0, 9 * TU_S + 900 * TU_MS, 0, &d), 0);
  assert_int_equal(
      ratchet_retry_next(&o, &st, -EIO, 0, 9 * TU_S + 800 * TU_MS + 1, 0, &d),
      RATCHET_EDEADLINE);
  assert_int_equal(ratchet_retry_next(&o, &st, -EIO, 0, 10 * TU_S, 0, &d),
                   RATCHET_EDEADLINE);

  /* max_elapsed_ns works the same way from the first call. */
  o.backoff.max_elapsed_ns = 250 * TU_MS;
  ratchet_retry_start(&o, &st, 0, 0);
  assert_int_equal(ratchet_retry_next(&o, &st, -EIO, 0, 0, 0, &d), 0);
  assert_int_equal(ratchet_retry_next(&o, &st, -EIO, 0, 100 * TU_MS, 0, &d),
                   RATCHET_EDEADLINE);
}

static void test_budget_spent_last(void **state) {
  (void)state;
  ratchet_retry_budget_options bo = RATCHET_RETRY_BUDGET_OPTIONS_INIT;
  bo.min_retries = 2;
  bo.ratio = 0.0;
  ratchet_retry_budget *budget = NULL;
  assert_int_equal(ratchet_retry_budget_new(&bo, 0, &budget), 0);

  ratchet_retry_options o = policy();
  o.budget = budget;
  const int abort_on[] = {-EPERM};
  o.abort_on = abort_on;
  o.abort_on_len = 1;
  ratchet_retry_state st;
  uint64_t d = 0;
  ratchet_retry_start(&o, &st, 0, 0);
  /* Refusals for other reasons do not spend the budget. */
  assert_int_equal(ratchet_retry_next(&o, &st, -EPERM, 0, 0, 0, &d),
                   RATCHET_ENOT_RETRYABLE);
  assert_int_equal(ratchet_retry_next(&o, &st, -EIO, 0, 0, 0, &d), 0);
  assert_int_equal(ratchet_retry_next(&o, &st, -EIO, 0, 0, 0, &d), 0);
  assert_int_equal(ratchet_retry_next(&o, &st, -EIO, 0, 0, 0, &d),
                   RATCHET_EBUDGET);
  assert_int_equal(st.backoff.attempts, 3);

  ratchet_retry_budget_metrics m;
  ratchet_retry_budget_metrics_get(budget, 0, &m);
  assert_true(m.calls == 1);
  assert_true(m.retries == 2);
  assert_true(m.total_refused == 1);
  ratchet_retry_budget_free(budget);
}

static void test_validation(void **state) {
  (void)state;
  ratchet_retry_options o = RATCHET_RETRY_OPTIONS_INIT;
  assert_int_equal(ratchet_retry_validate(&o), 0);
  assert_int_equal(ratchet_retry_validate(NULL), -EINVAL);
  o.retry_on_len = 1; /* with a NULL array */
  assert_int_equal(ratchet_retry_validate(&o), -EINVAL);
  static int many[1025];
  o.retry_on = many;
  o.retry_on_len = 1025;
  assert_int_equal(ratchet_retry_validate(&o), -EINVAL);
  o.retry_on_len = 1024;
  assert_int_equal(ratchet_retry_validate(&o), 0);
  o.abort_on_len = 3;
  assert_int_equal(ratchet_retry_validate(&o), -EINVAL);
  o = (ratchet_retry_options)RATCHET_RETRY_OPTIONS_INIT;
  o.backoff.initial_ns = 0;
  assert_int_equal(ratchet_retry_validate(&o), -EINVAL);
}

/* A virtual clock for ratchet_retry_run. */
struct fake {
  uint64_t now;
  uint64_t slept;
  int retries_seen;
  int fail_times; /* calls before success, -1 = never */
  int error;
  uint64_t retry_after;
  int calls;
  uint64_t call_cost; /* each call takes this long */
};

static uint64_t fake_now(void *ctx) {
  return ((struct fake *)ctx)->now;
}

static void fake_sleep(void *ctx, uint64_t ns) {
  struct fake *f = ctx;
  f->now += ns;
  f->slept += ns;
}

static uint64_t fake_random(void *ctx) {
  (void)ctx;
  return UINT64_MAX; /* top of every jitter range */
}

static void fake_on_retry(void *ctx, uint32_t attempt, int err,
                          uint64_t delay_ns) {
  struct fake *f = ctx;
  f->retries_seen++;
  assert_int_equal((int)attempt, f->retries_seen);
  assert_int_equal(err, f->error);
  assert_true(delay_ns > 0);
}

static int flaky(void *ctx, uint32_t attempt, uint64_t *retry_after_ns) {
  struct fake *f = ctx;
  f->calls++;
  assert_int_equal((int)attempt, f->calls);
  assert_true(*retry_after_ns == 0);
  f->now += f->call_cost;
  if (f->fail_times >= 0 && f->calls > f->fail_times)
    return 0;
  *retry_after_ns = f->retry_after;
  return f->error;
}

static void test_run_blocking_loop(void **state) {
  (void)state;
  ratchet_retry_options o = policy();
  o.backoff.jitter = RATCHET_JITTER_FULL;
  struct fake f = {1000, 0, 0, 2, -EIO, 0, 0, 10 * TU_MS};
  ratchet_retry_env env = {fake_now, fake_sleep, fake_random, fake_on_retry,
                           &f};
  ratchet_retry_report r;

  /* Succeeds on the third call after two full-jitter waits at the top of
   * their ranges: 100 ms and 200 ms. */
  assert_int_equal(ratchet_retry_run(&o, flaky, &f, 0, &env, &r), 0);
  assert_int_equal(f.calls, 3);
  assert_int_equal(f.retries_seen, 2);
  assert_int_equal(r.attempts, 3);
  assert_int_equal(r.last_error, 0);
  assert_int_equal(r.reason, 0);
  assert_true(r.total_delay_ns == 300 * TU_MS);
  assert_true(r.elapsed_ns == 330 * TU_MS);

  /* Never succeeds: gives up after max_attempts with the last error. */
  f = (struct fake){0, 0, 0, -1, -ETIMEDOUT, 0, 0, 0};
  assert_int_equal(ratchet_retry_run(&o, flaky, &f, 0, &env, &r), -ETIMEDOUT);
  assert_int_equal(f.calls, 4);
  assert_int_equal(r.reason, RATCHET_EATTEMPTS);
  assert_int_equal(r.last_error, -ETIMEDOUT);

  /* Not retryable: one call. */
  const int abort_on[] = {-EPERM};
  o.abort_on = abort_on;
  o.abort_on_len = 1;
  f = (struct fake){0, 0, 0, -1, -EPERM, 0, 0, 0};
  assert_int_equal(ratchet_retry_run(&o, flaky, &f, 0, &env, &r), -EPERM);
  assert_int_equal(f.calls, 1);
  assert_int_equal(r.reason, RATCHET_ENOT_RETRYABLE);

  /* A timeout over the whole operation, with the server asking for 400 ms:
   * calls at 0, 400 ms and 800 ms; a fourth at 1.2 s would pass 1 s. */
  o.backoff.max_attempts = 0;
  f = (struct fake){0, 0, 0, -1, -EAGAIN, 400 * TU_MS, 0, 0};
  assert_int_equal(ratchet_retry_run(&o, flaky, &f, 1 * TU_S, &env, &r),
                   -EAGAIN);
  assert_int_equal(f.calls, 3);
  assert_int_equal(r.reason, RATCHET_EDEADLINE);
  assert_true(f.slept == 800 * TU_MS);
}

static int fails_twice(void *ctx, uint32_t attempt, uint64_t *retry_after_ns) {
  (void)retry_after_ns;
  *(uint32_t *)ctx = attempt;
  return attempt < 3 ? -EIO : 0;
}

static void test_run_real_clock_and_bad_args(void **state) {
  (void)state;
  ratchet_retry_options o = policy();
  o.backoff.initial_ns = 1000; /* 1 us: the real sleep stays short */
  o.backoff.max_delay_ns = 2000;
  uint32_t last = 0;
  ratchet_retry_report r;
  assert_int_equal(ratchet_retry_run(&o, fails_twice, &last, 0, NULL, &r), 0);
  assert_int_equal(last, 3);
  assert_true(r.elapsed_ns >= 3000); /* slept 1 us + 2 us at least */

  assert_int_equal(ratchet_retry_run(&o, NULL, NULL, 0, NULL, NULL), -EINVAL);
  o.backoff.initial_ns = 0;
  last = 0;
  assert_int_equal(ratchet_retry_run(&o, fails_twice, &last, 0, NULL, NULL),
                   -EINVAL);
  assert_int_equal(last, 0);
}

int test_retry(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_classification),
      cmocka_unit_test(test_next_reasons_in_order),
      cmocka_unit_test(test_retry_after),
      cmocka_unit_test(test_deadlines),
      cmocka_unit_test(test_budget_spent_last),
      cmocka_unit_test(test_validation),
      cmocka_unit_test(test_run_blocking_loop),
      cmocka_unit_test(test_run_real_clock_and_bad_args),
  };
  return cmocka_run_group_tests_name("retry", tests, NULL, NULL);
}
