/*
 * test_breaker.c - the circuit breaker on a virtual clock: every transition,
 * the three windows and their edges, half-open permits, the open-period
 * back-off, manual states, the listener, option ranges, allocation failure
 * and the absence of allocation on the hot path.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ratchet/breaker.h"
#include "ratchet/error.h"
#include "testutil.h"

#define S   RATCHET_BREAKER_SUCCESS
#define F   RATCHET_BREAKER_FAILURE
#define IGN RATCHET_BREAKER_IGNORED

#define CLOSED       RATCHET_BREAKER_CLOSED
#define OPEN         RATCHET_BREAKER_OPEN
#define HALF_OPEN    RATCHET_BREAKER_HALF_OPEN
#define DISABLED     RATCHET_BREAKER_DISABLED
#define FORCED_OPEN  RATCHET_BREAKER_FORCED_OPEN
#define METRICS_ONLY RATCHET_BREAKER_METRICS_ONLY

/* Records what the listener saw. */
struct rec {
  int n;
  ratchet_breaker_state from[16], to[16];
  uint64_t now[16];
};

static void rec_listener(void *ctx, ratchet_breaker *b,
                         ratchet_breaker_state from, ratchet_breaker_state to,
                         uint64_t now_ns) {
  (void)b;
  struct rec *r = ctx;
  if (r->n < 16) {
    r->from[r->n] = from;
    r->to[r->n] = to;
    r->now[r->n] = now_ns;
  }
  r->n++;
}

static void assert_event(const struct rec *r, int i, ratchet_breaker_state from,
                         ratchet_breaker_state to, uint64_t now_ns) {
  assert_true(i < r->n);
  assert_int_equal(r->from[i], from);
  assert_int_equal(r->to[i], to);
  assert_int_equal(r->now[i], now_ns);
}

static void assert_rate(double actual, double expected) {
  assert_true(actual - expected < 1e-9 && expected - actual < 1e-9);
}

/* A COUNT window of `size` calls, trips at `min` calls and 50 % failures. */
static ratchet_breaker_options count_opts(uint32_t size, uint32_t min) {
  ratchet_breaker_options o = RATCHET_BREAKER_OPTIONS_INIT;
  o.window_size = size;
  o.minimum_calls = min;
  return o;
}

static ratchet_breaker *make(const ratchet_breaker_options *o, uint64_t now) {
  ratchet_breaker *b = NULL;
  assert_int_equal(ratchet_breaker_new(o, now, &b), 0);
  assert_non_null(b);
  return b;
}

/* A permitted call that reports `out` after `dur` ns, at `now`. */
static void call(ratchet_breaker *b, ratchet_breaker_outcome out, uint64_t dur,
                 uint64_t now) {
  assert_int_equal(ratchet_breaker_allow(b, now), 0);
  ratchet_breaker_record(b, out, dur, now);
}

static void calls(ratchet_breaker *b, ratchet_breaker_outcome out, int n,
                  uint64_t now) {
  for (int i = 0; i < n; i++)
    call(b, out, 0, now);
}

static ratchet_breaker_metrics metrics(ratchet_breaker *b, uint64_t now) {
  ratchet_breaker_metrics m;
  ratchet_breaker_metrics_get(b, now, &m);
  return m;
}

/* Trips a fresh-options breaker built by count_opts(size, min) at `now`. */
static void trip(ratchet_breaker *b, uint32_t min, uint64_t now) {
  calls(b, F, (int)min, now);
  assert_int_equal(ratchet_breaker_state_at(b, now), OPEN);
}

static void test_new_defaults_and_names(void **state) {
  (void)state;
  ratchet_breaker_options o = RATCHET_BREAKER_OPTIONS_INIT;
  ratchet_breaker *b = make(&o, 0);
  ratchet_breaker_metrics m = metrics(b, 0);
  assert_int_equal(m.state, CLOSED);
  assert_int_equal(m.calls, 0);
  assert_rate(m.failure_rate, -1.0);
  assert_rate(m.slow_call_rate, -1.0);
  assert_int_equal(m.trips, 0);
  assert_int_equal(m.open_until_ns, 0);
  assert_int_equal(m.half_open_permits_left, 0);
  assert_int_equal(m.total_transitions, 0);
  ratchet_breaker_free(b);
  ratchet_breaker_free(NULL);

  assert_string_equal(ratchet_breaker_state_name(CLOSED), "CLOSED");
  assert_string_equal(ratchet_breaker_state_name(OPEN), "OPEN");
  assert_string_equal(ratchet_breaker_state_name(HALF_OPEN), "HALF_OPEN");
  assert_string_equal(ratchet_breaker_state_name(DISABLED), "DISABLED");
  assert_string_equal(ratchet_breaker_state_name(FORCED_OPEN), "FORCED_OPEN");
  assert_string_equal(ratchet_breaker_state_name(METRICS_ONLY), "METRICS_ONLY");
  assert_string_equal(ratchet_breaker_state_name(
                          (ratchet_breaker_state)RATCHET_BREAKER_STATE_COUNT),
                      "UNKNOWN");
  assert_string_equal(ratchet_breaker_state_name((ratchet_breaker_state)-1),
                      "UNKNOWN");
}

/* The rate is judged at exactly minimum_calls, not one call before. */
static void test_trips_at_exactly_minimum_calls(void **state) {
  (void)state;
  struct rec r = {0};
  ratchet_breaker_options o = count_opts(10, 4);
  o.listener = rec_listener;
  o.listener_ctx = &r;
  ratchet_breaker *b = make(&o, 0);

  call(b, F, 0, 1);
  call(b, F, 0, 2);
  call(b, F, 0, 3); /* 100 % of 3 calls, but 3 < minimum */
  ratchet_breaker_metrics m = metrics(b, 3);
  assert_int_equal(m.state, CLOSED);
  assert_int_equal(m.calls, 3);
  assert_int_equal(m.failed_calls, 3);
  assert_rate(m.failure_rate, -1.0);
  assert_int_equal(r.n, 0);

  call(b, S, 0, 4); /* 3 of 4 = 75 % >= 50 % */
  m = metrics(b, 4);
  assert_int_equal(m.state, OPEN);
  assert_int_equal(m.trips, 1);
  assert_int_equal(m.open_until_ns, 4 + 60 * TU_S);
  /* An open breaker still shows the rates that tripped it. */
  assert_int_equal(m.calls, 4);
  assert_rate(m.failure_rate, 75.0);
  assert_int_equal(r.n, 1);
  assert_event(&r, 0, CLOSED, OPEN, 4);
  ratchet_breaker_free(b);
}

static void test_stays_closed_under_threshold(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(10, 10);
  ratchet_breaker *b = make(&o, 0);
  calls(b, F, 4, 0);
  calls(b, S, 6, 0);
  ratchet_breaker_metrics m = metrics(b, 0);
  assert_int_equal(m.state, CLOSED);
  assert_rate(m.failure_rate, 40.0);
  assert_rate(m.slow_call_rate, 0.0);
  ratchet_breaker_free(b);
}

/* A threshold with decimals is honoured exactly at its boundary. */
static void test_decimal_threshold_is_exact(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(1000, 1000);
  o.failure_rate_threshold = 33.3;
  ratchet_breaker *b = make(&o, 0);
  calls(b, S, 668, 0);
  calls(b, F, 332, 0); /* 33.2 % */
  assert_int_equal(ratchet_breaker_state_at(b, 0), CLOSED);
  ratchet_breaker_free(b);

  b = make(&o, 0);
  calls(b, S, 667, 0);
  calls(b, F, 333, 0); /* 33.3 % */
  assert_int_equal(ratchet_breaker_state_at(b, 0), OPEN);
  ratchet_breaker_free(b);
}

/* A minute threshold still needs a failure. */
static void test_tiny_threshold_needs_a_failure(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(5, 1);
  o.failure_rate_threshold = 1e-12;
  o.slow_call_rate_threshold = 1e-12;
  ratchet_breaker *b = make(&o, 0);
  calls(b, S, 20, 0);
  assert_int_equal(ratchet_breaker_state_at(b, 0), CLOSED);
  call(b, F, 0, 0);
  assert_int_equal(ratchet_breaker_state_at(b, 0), OPEN);
  ratchet_breaker_free(b);
}

/* Threshold 100 trips only when every call in the window failed; the ring
 * forgets the oldest outcome as each new one comes in. */
static void test_threshold_100_and_ring_overwrite(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(4, 4);
  o.failure_rate_threshold = 100.0;
  ratchet_breaker *b = make(&o, 0);
  call(b, S, 0, 0);
  calls(b, F, 3, 0); /* S F F F: 75 % */
  ratchet_breaker_metrics m = metrics(b, 0);
  assert_int_equal(m.state, CLOSED);
  assert_rate(m.failure_rate, 75.0);

  call(b, F, 0, 0); /* overwrites the success: F F F F */
  m = metrics(b, 0);
  assert_int_equal(m.state, OPEN);
  assert_int_equal(m.calls, 4);
  assert_int_equal(m.failed_calls, 4);
  assert_rate(m.failure_rate, 100.0);
  ratchet_breaker_free(b);
}

static void test_ring_forgets_old_failures(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(4, 4);
  ratchet_breaker *b = make(&o, 0);
  call(b, F, 0, 0);
  calls(b, S, 3, 0); /* F S S S */
  assert_rate(metrics(b, 0).failure_rate, 25.0);
  call(b, S, 0, 0); /* S S S S */
  ratchet_breaker_metrics m = metrics(b, 0);
  assert_int_equal(m.calls, 4);
  assert_int_equal(m.failed_calls, 0);
  assert_rate(m.failure_rate, 0.0);
  call(b, F, 0, 0); /* F S S S */
  assert_int_equal(ratchet_breaker_state_at(b, 0), CLOSED);
  call(b, F, 0, 0); /* F F S S: 50 % */
  assert_int_equal(ratchet_breaker_state_at(b, 0), OPEN);
  ratchet_breaker_free(b);
}

/* A call of slow_call_duration_ns or longer is slow, failed or not. */
static void test_slow_rate_trips(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(4, 4);
  o.failure_rate_threshold = 100.0;
  o.slow_call_rate_threshold = 50.0;
  o.slow_call_duration_ns = 100 * TU_MS;
  ratchet_breaker *b = make(&o, 0);
  call(b, S, 100 * TU_MS - 1, 0);
  call(b, S, 100 * TU_MS, 0);
  call(b, S, 0, 0);
  ratchet_breaker_metrics m = metrics(b, 0);
  assert_int_equal(m.slow_calls, 1);
  assert_int_equal(m.state, CLOSED);
  call(b, F, 5 * TU_S, 0); /* slow and failed: 2 of 4 slow */
  m = metrics(b, 0);
  assert_int_equal(m.state, OPEN);
  assert_int_equal(m.slow_calls, 2);
  assert_rate(m.slow_call_rate, 50.0);
  assert_rate(m.failure_rate, 25.0);
  ratchet_breaker_free(b);
}

static void test_consecutive_mode(void **state) {
  (void)state;
  ratchet_breaker_options o = RATCHET_BREAKER_OPTIONS_INIT;
  o.window = RATCHET_BREAKER_WINDOW_CONSECUTIVE;
  o.consecutive_failures = 3;
  o.slow_call_rate_threshold = 1.0;
  o.slow_call_duration_ns = 1;
  ratchet_breaker *b = make(&o, 0);
  call(b, F, 0, 0);
  call(b, F, 0, 0);
  call(b, S, 10, 0); /* slow, but slowness does not count here */
  call(b, F, 0, 0);
  call(b, F, 0, 0);
  ratchet_breaker_metrics m = metrics(b, 0);
  assert_int_equal(m.state, CLOSED);
  assert_int_equal(m.consecutive_failures, 2);
  /* There is no window, so no rates. */
  assert_int_equal(m.calls, 0);
  assert_rate(m.failure_rate, -1.0);
  call(b, F, 0, 0);
  m = metrics(b, 0);
  assert_int_equal(m.state, OPEN);
  assert_int_equal(m.trips, 1);
  ratchet_breaker_free(b);
}

/* In CONSECUTIVE mode one failed probe reopens; all probes passing closes. */
static void test_consecutive_half_open(void **state) {
  (void)state;
  ratchet_breaker_options o = RATCHET_BREAKER_OPTIONS_INIT;
  o.window = RATCHET_BREAKER_WINDOW_CONSECUTIVE;
  o.consecutive_failures = 1;
  o.permitted_calls_in_half_open = 3;
  o.open_duration_ns = TU_S;
  ratchet_breaker *b = make(&o, 0);
  call(b, F, 0, 0);
  assert_int_equal(ratchet_breaker_state_at(b, 0), OPEN);
  calls(b, S, 2, TU_S);
  assert_int_equal(ratchet_breaker_state_at(b, TU_S), HALF_OPEN);
  call(b, F, 0, TU_S);
  assert_int_equal(ratchet_breaker_state_at(b, TU_S), OPEN);
  calls(b, S, 3, 2 * TU_S);
  assert_int_equal(ratchet_breaker_state_at(b, 2 * TU_S), CLOSED);
  ratchet_breaker_free(b);
}

/* OPEN refuses until the open duration has passed, to the nanosecond; the
 * first allow after that moves to HALF_OPEN. */
static void test_open_to_half_open_on_time(void **state) {
  (void)state;
  struct rec r = {0};
  ratchet_breaker_options o = count_opts(2, 2);
  o.open_duration_ns = 5 * TU_S;
  o.listener = rec_listener;
  o.listener_ctx = &r;
  uint64_t t0 = 1000 * TU_S;
  ratchet_breaker *b = make(&o, t0);
  trip(b, 2, t0);
  uint64_t until = t0 + 5 * TU_S;
  assert_int_equal(metrics(b, t0).open_until_ns, until);

  assert_int_equal(ratchet_breaker_allow(b, t0), RATCHET_EBREAKER_OPEN);
  assert_int_equal(ratchet_breaker_allow(b, until - 1), RATCHET_EBREAKER_OPEN);
  assert_int_equal(ratchet_breaker_state_at(b, until - 1), OPEN);
  assert_int_equal(metrics(b, until - 1).total_not_permitted, 2);
  assert_int_equal(r.n, 1);

  assert_int_equal(ratchet_breaker_allow(b, until), 0);
  assert_int_equal(r.n, 2);
  assert_event(&r, 1, OPEN, HALF_OPEN, until);
  ratchet_breaker_metrics m = metrics(b, until);
  assert_int_equal(m.state, HALF_OPEN);
  assert_int_equal(m.half_open_permits_left, 9);
  assert_int_equal(m.open_until_ns, 0);
  ratchet_breaker_free(b);
}

/* state_at and metrics_get apply the time-driven change too. */
static void test_time_changes_are_lazy_everywhere(void **state) {
  (void)state;
  struct rec r = {0};
  ratchet_breaker_options o = count_opts(1, 1);
  o.open_duration_ns = TU_S;
  o.listener = rec_listener;
  o.listener_ctx = &r;
  ratchet_breaker *b = make(&o, 0);
  trip(b, 1, 0);
  assert_int_equal(ratchet_breaker_state_at(b, TU_S), HALF_OPEN);
  assert_event(&r, 1, OPEN, HALF_OPEN, TU_S);
  ratchet_breaker_free(b);

  r.n = 0;
  b = make(&o, 0);
  trip(b, 1, 0);
  assert_int_equal(metrics(b, 2 * TU_S).state, HALF_OPEN);
  assert_event(&r, 1, OPEN, HALF_OPEN, 2 * TU_S);
  ratchet_breaker_free(b);
}

static void test_half_open_permits_then_closes(void **state) {
  (void)state;
  struct rec r = {0};
  ratchet_breaker_options o = count_opts(4, 4);
  o.permitted_calls_in_half_open = 3;
  o.open_duration_ns = TU_S;
  o.listener = rec_listener;
  o.listener_ctx = &r;
  ratchet_breaker *b = make(&o, 0);
  trip(b, 4, 0);

  for (int i = 0; i < 3; i++)
    assert_int_equal(ratchet_breaker_allow(b, TU_S), 0);
  assert_int_equal(ratchet_breaker_allow(b, TU_S), RATCHET_EBREAKER_OPEN);
  ratchet_breaker_metrics m = metrics(b, TU_S);
  assert_int_equal(m.half_open_permits_left, 0);
  assert_int_equal(m.total_not_permitted, 1);

  ratchet_breaker_record(b, S, 0, TU_S + 1);
  ratchet_breaker_record(b, S, 0, TU_S + 2);
  m = metrics(b, TU_S + 2);
  assert_int_equal(m.state, HALF_OPEN);
  assert_int_equal(m.calls, 2);
  assert_rate(m.failure_rate, -1.0); /* fewer than the permitted calls */
  ratchet_breaker_record(b, F, 0, TU_S + 3); /* 1 of 3 < 50 % */

  m = metrics(b, TU_S + 3);
  assert_int_equal(m.state, CLOSED);
  assert_int_equal(m.trips, 0);
  assert_int_equal(m.calls, 0); /* closing starts an empty window */
  assert_int_equal(m.total_successes, 2);
  assert_int_equal(m.total_failures, 5);
  assert_int_equal(m.total_transitions, 3);
  assert_int_equal(r.n, 3);
  assert_event(&r, 2, HALF_OPEN, CLOSED, TU_S + 3);
  ratchet_breaker_free(b);
}

/* HALF_OPEN reopens as soon as the failures make the verdict certain. */
static void test_half_open_reopens_early(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(4, 4);
  o.open_duration_ns = TU_S;
  ratchet_breaker *b = make(&o, 0);
  trip(b, 4, 0);
  for (int i = 0; i < 10; i++)
    assert_int_equal(ratchet_breaker_allow(b, TU_S), 0);
  for (int i = 0; i < 4; i++)
    ratchet_breaker_record(b, F, 0, TU_S);
  assert_int_equal(ratchet_breaker_state_at(b, TU_S), HALF_OPEN);
  /* 5 of 10 permitted calls failed: 50 % whatever the other 5 do. */
  ratchet_breaker_record(b, F, 0, TU_S);
  ratchet_breaker_metrics m = metrics(b, TU_S);
  assert_int_equal(m.state, OPEN);
  assert_int_equal(m.trips, 2);
  assert_int_equal(m.calls, 5); /* the probes that reopened it */
  /* The other probes report while OPEN: counted in the totals only. */
  for (int i = 0; i < 5; i++)
    ratchet_breaker_record(b, S, 0, TU_S);
  m = metrics(b, TU_S);
  assert_int_equal(m.state, OPEN);
  assert_int_equal(m.calls, 5);
  assert_int_equal(m.total_successes, 5);
  ratchet_breaker_free(b);
}

/* Slow probes reopen it too. */
static void test_half_open_slow_probes_reopen(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(2, 2);
  o.open_duration_ns = TU_S;
  o.permitted_calls_in_half_open = 2;
  o.slow_call_duration_ns = TU_S;
  ratchet_breaker *b = make(&o, 0);
  trip(b, 2, 0);
  call(b, S, TU_S, TU_S);
  assert_int_equal(ratchet_breaker_state_at(b, TU_S), HALF_OPEN);
  call(b, S, TU_S, TU_S); /* 2 of 2 slow = 100 % */
  assert_int_equal(ratchet_breaker_state_at(b, TU_S), OPEN);
  ratchet_breaker_free(b);
}

static void test_half_open_ignored_returns_permit(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(2, 2);
  o.open_duration_ns = TU_S;
  o.permitted_calls_in_half_open = 2;
  ratchet_breaker *b = make(&o, 0);
  trip(b, 2, 0);
  assert_int_equal(ratchet_breaker_allow(b, TU_S), 0);
  assert_int_equal(ratchet_breaker_allow(b, TU_S), 0);
  assert_int_equal(ratchet_breaker_allow(b, TU_S), RATCHET_EBREAKER_OPEN);
  ratchet_breaker_record(b, IGN, 0, TU_S);
  assert_int_equal(metrics(b, TU_S).half_open_permits_left, 1);
  assert_int_equal(ratchet_breaker_allow(b, TU_S), 0);
  ratchet_breaker_record(b, S, 0, TU_S);
  ratchet_breaker_record(b, IGN, 0, TU_S);
  /* One success in; the ignored call's permit is back. */
  ratchet_breaker_metrics m = metrics(b, TU_S);
  assert_int_equal(m.state, HALF_OPEN);
  assert_int_equal(m.half_open_permits_left, 1);
  assert_int_equal(m.total_successes, 1);
  assert_int_equal(m.total_failures, 2);
  /* No more permits than were handed out come back. */
  ratchet_breaker_record(b, IGN, 0, TU_S);
  ratchet_breaker_record(b, IGN, 0, TU_S);
  assert_int_equal(metrics(b, TU_S).half_open_permits_left, 1);
  call(b, S, 0, TU_S);
  assert_int_equal(ratchet_breaker_state_at(b, TU_S), CLOSED);
  ratchet_breaker_free(b);
}

/* Probes that never report: HALF_OPEN gives up after the maximum wait and
 * opens again, which counts as a trip. */
static void test_half_open_max_wait(void **state) {
  (void)state;
  struct rec r = {0};
  ratchet_breaker_options o = count_opts(1, 1);
  o.open_duration_ns = TU_S;
  o.open_backoff_multiplier = 2.0;
  o.max_wait_in_half_open_ns = 5 * TU_S;
  o.listener = rec_listener;
  o.listener_ctx = &r;
  ratchet_breaker *b = make(&o, 0);
  trip(b, 1, 0);
  uint64_t t = 3 * TU_S; /* half-open from here, not from 1 s */
  assert_int_equal(ratchet_breaker_allow(b, t), 0);
  assert_int_equal(ratchet_breaker_state_at(b, t + 5 * TU_S - 1), HALF_OPEN);
  assert_int_equal(r.n, 2);
  assert_int_equal(ratchet_breaker_state_at(b, t + 5 * TU_S), OPEN);
  assert_event(&r, 2, HALF_OPEN, OPEN, t + 5 * TU_S);
  ratchet_breaker_metrics m = metrics(b, t + 5 * TU_S);
  assert_int_equal(m.trips, 2);
  assert_int_equal(m.open_until_ns, t + 5 * TU_S + 2 * TU_S);
  /* The late probe reports while OPEN: dropped from the window. */
  ratchet_breaker_record(b, S, 0, t + 6 * TU_S);
  assert_int_equal(ratchet_breaker_state_at(b, t + 6 * TU_S), OPEN);
  ratchet_breaker_free(b);

  /* 0 waits forever. */
  o.max_wait_in_half_open_ns = 0;
  o.listener = NULL;
  b = make(&o, 0);
  trip(b, 1, 0);
  assert_int_equal(ratchet_breaker_allow(b, TU_S), 0);
  assert_int_equal(ratchet_breaker_state_at(b, UINT64_MAX), HALF_OPEN);
  ratchet_breaker_free(b);
}

/* A clock that runs backwards in HALF_OPEN has not waited. */
static void test_half_open_clock_backwards(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(1, 1);
  o.open_duration_ns = TU_S;
  o.max_wait_in_half_open_ns = TU_S;
  ratchet_breaker *b = make(&o, 0);
  trip(b, 1, 10 * TU_S);
  assert_int_equal(ratchet_breaker_state_at(b, 11 * TU_S), HALF_OPEN);
  assert_int_equal(ratchet_breaker_state_at(b, 0), HALF_OPEN);
  assert_int_equal(ratchet_breaker_state_at(b, 12 * TU_S), OPEN);
  ratchet_breaker_free(b);
}

/* A call let through while CLOSED that reports after the open period counts
 * as a half-open result: the breaker goes OPEN -> HALF_OPEN -> OPEN in one
 * call, and the listener hears both, in order. */
static void test_two_changes_in_one_call(void **state) {
  (void)state;
  struct rec r = {0};
  ratchet_breaker_options o = count_opts(1, 1);
  o.open_duration_ns = TU_S;
  o.permitted_calls_in_half_open = 1;
  o.listener = rec_listener;
  o.listener_ctx = &r;
  ratchet_breaker *b = make(&o, 0);
  assert_int_equal(ratchet_breaker_allow(b, 0), 0); /* reports late */
  trip(b, 1, 0);
  ratchet_breaker_record(b, F, 0, 2 * TU_S);
  assert_int_equal(r.n, 3);
  assert_event(&r, 1, OPEN, HALF_OPEN, 2 * TU_S);
  assert_event(&r, 2, HALF_OPEN, OPEN, 2 * TU_S);
  ratchet_breaker_metrics m = metrics(b, 2 * TU_S);
  assert_int_equal(m.state, OPEN);
  assert_int_equal(m.total_transitions, 3);
  ratchet_breaker_free(b);
}

/* Each trip lengthens the open period by the multiplier, up to the cap;
 * closing starts again from open_duration_ns. */
static void test_open_backoff_and_cap(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(1, 1);
  o.open_duration_ns = TU_S;
  o.open_backoff_multiplier = 2.0;
  o.max_open_duration_ns = 10 * TU_S;
  o.permitted_calls_in_half_open = 1;
  ratchet_breaker *b = make(&o, 0);
  const uint64_t want[] = {1, 2, 4, 8, 10, 10, 10};
  uint64_t t = 0;
  trip(b, 1, t);
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    ratchet_breaker_metrics m = metrics(b, t);
    assert_int_equal(m.trips, i + 1);
    assert_int_equal(m.open_until_ns - t, want[i] * TU_S);
    t = m.open_until_ns;
    call(b, F, 0, t); /* the probe fails */
  }
  t = metrics(b, t).open_until_ns;
  call(b, S, 0, t);
  assert_int_equal(ratchet_breaker_state_at(b, t), CLOSED);
  assert_int_equal(metrics(b, t).trips, 0);
  trip(b, 1, t);
  assert_int_equal(metrics(b, t).open_until_ns - t, TU_S);
  ratchet_breaker_free(b);
}

static void test_open_backoff_fractional(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(1, 1);
  o.open_duration_ns = TU_S;
  o.open_backoff_multiplier = 1.5;
  o.max_open_duration_ns = 60 * TU_S;
  ratchet_breaker *b = make(&o, 0);
  /* Manual OPEN counts as a trip too. */
  const uint64_t want[] = {1000, 1500, 2250, 3375, 5062};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    assert_int_equal(ratchet_breaker_transition(b, OPEN, 0), 0);
    assert_int_equal(metrics(b, 0).open_until_ns / TU_MS, want[i]);
    assert_int_equal(ratchet_breaker_transition(b, HALF_OPEN, 0), 0);
  }
  ratchet_breaker_free(b);
}

/* Many trips and huge factors neither overflow nor take long. */
static void test_open_backoff_no_overflow(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(1, 1);
  o.open_duration_ns = TU_MS;
  o.open_backoff_multiplier = 100.0;
  o.max_open_duration_ns = UINT64_MAX;
  ratchet_breaker *b = make(&o, 0);
  uint64_t t = 1000 * TU_S;
  for (int i = 0; i < 200000; i++) {
    ratchet_breaker_transition(b, OPEN, t);
    ratchet_breaker_transition(b, HALF_OPEN, t);
  }
  ratchet_breaker_transition(b, OPEN, t);
  ratchet_breaker_metrics m = metrics(b, t);
  assert_int_equal(m.trips, 200001);
  assert_int_equal(m.open_until_ns, UINT64_MAX); /* saturated, not wrapped */
  /* Up to 1e18 ns the factor is exact: 1 ms * 100^6 = 1e15 ms. */
  ratchet_breaker_reset(b, 0);
  for (int i = 0; i < 7; i++) {
    ratchet_breaker_transition(b, HALF_OPEN, 0);
    ratchet_breaker_transition(b, OPEN, 0);
  }
  assert_int_equal(metrics(b, 0).open_until_ns, UINT64_C(1000000000000000000));
  ratchet_breaker_free(b);

  /* A multiplier barely above 1 over many trips. */
  o.open_backoff_multiplier = 1.0000001;
  o.max_open_duration_ns = 10 * TU_S;
  b = make(&o, 0);
  for (int i = 0; i < 100000; i++) {
    ratchet_breaker_transition(b, OPEN, 0);
    ratchet_breaker_transition(b, HALF_OPEN, 0);
  }
  ratchet_breaker_transition(b, OPEN, 0);
  /* 1 ms * 1.0000001^100000 = 1.01005 ms */
  uint64_t d = metrics(b, 0).open_until_ns;
  assert_in_range(d, 1010040, 1010060);
  ratchet_breaker_free(b);
}

/* Every manual transition between the six states lands where asked; the
 * current state is a no-op; an unknown state is refused. */
static void test_manual_transitions_all_pairs(void **state) {
  (void)state;
  for (int from = 0; from < RATCHET_BREAKER_STATE_COUNT; from++) {
    for (int to = 0; to < RATCHET_BREAKER_STATE_COUNT; to++) {
      struct rec r = {0};
      ratchet_breaker_options o = count_opts(10, 10);
      o.listener = rec_listener;
      o.listener_ctx = &r;
      ratchet_breaker *b = make(&o, 0);
      assert_int_equal(
          ratchet_breaker_transition(b, (ratchet_breaker_state)from, 1), 0);
      int before = r.n;
      assert_int_equal(from == CLOSED ? 0 : 1, before);
      assert_int_equal(
          ratchet_breaker_transition(b, (ratchet_breaker_state)to, 2), 0);
      assert_int_equal(ratchet_breaker_state_at(b, 2), to);
      if (from == to) {
        assert_int_equal(r.n, before);
      } else {
        assert_int_equal(r.n, before + 1);
        assert_event(&r, before, (ratchet_breaker_state)from,
                     (ratchet_breaker_state)to, 2);
      }
      assert_int_equal(metrics(b, 2).total_transitions, (uint64_t)r.n);
      ratchet_breaker_free(b);
    }
  }

  ratchet_breaker_options o = count_opts(10, 10);
  ratchet_breaker *b = make(&o, 0);
  assert_int_equal(
      ratchet_breaker_transition(
          b, (ratchet_breaker_state)RATCHET_BREAKER_STATE_COUNT, 0),
      -EINVAL);
  assert_int_equal(ratchet_breaker_transition(b, (ratchet_breaker_state)-1, 0),
                   -EINVAL);
  ratchet_breaker_metrics m = metrics(b, 0);
  assert_int_equal(m.state, CLOSED);
  assert_int_equal(m.total_transitions, 0);
  ratchet_breaker_free(b);
}

static void test_manual_entry_effects(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(10, 10);
  o.permitted_calls_in_half_open = 4;
  ratchet_breaker *b = make(&o, 0);
  calls(b, F, 3, 0);

  /* OPEN starts an open period and counts as a trip. */
  ratchet_breaker_transition(b, OPEN, 5);
  ratchet_breaker_metrics m = metrics(b, 5);
  assert_int_equal(m.trips, 1);
  assert_int_equal(m.open_until_ns, 5 + 60 * TU_S);
  assert_int_equal(ratchet_breaker_allow(b, 6), RATCHET_EBREAKER_OPEN);

  /* HALF_OPEN hands out fresh permits. */
  ratchet_breaker_transition(b, HALF_OPEN, 6);
  assert_int_equal(metrics(b, 6).half_open_permits_left, 4);
  assert_int_equal(ratchet_breaker_allow(b, 6), 0);
  ratchet_breaker_transition(b, OPEN, 7);
  ratchet_breaker_transition(b, HALF_OPEN, 8);
  assert_int_equal(metrics(b, 8).half_open_permits_left, 4);

  /* CLOSED empties the window and forgets the trips. */
  ratchet_breaker_transition(b, CLOSED, 9);
  m = metrics(b, 9);
  assert_int_equal(m.trips, 0);
  assert_int_equal(m.calls, 0);
  assert_int_equal(m.consecutive_failures, 0);

  /* METRICS_ONLY starts with an empty window too. */
  calls(b, F, 2, 9);
  assert_int_equal(metrics(b, 9).calls, 2);
  ratchet_breaker_transition(b, METRICS_ONLY, 10);
  assert_int_equal(metrics(b, 10).calls, 0);
  ratchet_breaker_free(b);
}

/* A manual transition acts on the state at now_ns: asking an OPEN breaker
 * whose period is over for OPEN starts a new period. */
static void test_manual_transition_sees_time(void **state) {
  (void)state;
  struct rec r = {0};
  ratchet_breaker_options o = count_opts(1, 1);
  o.open_duration_ns = TU_S;
  o.listener = rec_listener;
  o.listener_ctx = &r;
  ratchet_breaker *b = make(&o, 0);
  trip(b, 1, 0);
  ratchet_breaker_transition(b, OPEN, 5 * TU_S);
  assert_int_equal(r.n, 3);
  assert_event(&r, 1, OPEN, HALF_OPEN, 5 * TU_S);
  assert_event(&r, 2, HALF_OPEN, OPEN, 5 * TU_S);
  assert_int_equal(metrics(b, 5 * TU_S).open_until_ns, 6 * TU_S);
  ratchet_breaker_free(b);
}

static void test_disabled_lets_all_through(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(2, 2);
  ratchet_breaker *b = make(&o, 0);
  ratchet_breaker_transition(b, DISABLED, 0);
  for (int i = 0; i < 100; i++)
    call(b, F, 0, (uint64_t)i * TU_S);
  ratchet_breaker_metrics m = metrics(b, UINT64_MAX);
  assert_int_equal(m.state, DISABLED);
  assert_int_equal(m.calls, 0); /* nothing recorded */
  assert_int_equal(m.total_failures, 100);
  assert_int_equal(m.total_not_permitted, 0);
  ratchet_breaker_free(b);
}

static void test_forced_open_refuses_all(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(2, 2);
  ratchet_breaker *b = make(&o, 0);
  ratchet_breaker_transition(b, FORCED_OPEN, 0);
  for (int i = 0; i < 10; i++)
    assert_int_equal(ratchet_breaker_allow(b, (uint64_t)i * 3600 * TU_S),
                     RATCHET_EBREAKER_OPEN);
  ratchet_breaker_metrics m = metrics(b, UINT64_MAX);
  assert_int_equal(m.state, FORCED_OPEN);
  assert_int_equal(m.total_not_permitted, 10);
  assert_int_equal(m.open_until_ns, 0);
  assert_int_equal(m.trips, 0);
  ratchet_breaker_free(b);
}

/* METRICS_ONLY records and computes rates but never trips. */
static void test_metrics_only_never_trips(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(4, 4);
  ratchet_breaker *b = make(&o, 0);
  ratchet_breaker_transition(b, METRICS_ONLY, 0);
  calls(b, F, 10, 0);
  ratchet_breaker_metrics m = metrics(b, TU_S);
  assert_int_equal(m.state, METRICS_ONLY);
  assert_int_equal(m.calls, 4);
  assert_int_equal(m.failed_calls, 4);
  assert_rate(m.failure_rate, 100.0);
  assert_int_equal(m.consecutive_failures, 10);
  assert_int_equal(m.trips, 0);
  assert_int_equal(m.total_transitions, 1);
  ratchet_breaker_free(b);
}

static void test_reset(void **state) {
  (void)state;
  struct rec r = {0};
  ratchet_breaker_options o = count_opts(4, 4);
  o.listener = rec_listener;
  o.listener_ctx = &r;
  ratchet_breaker *b = make(&o, 0);
  trip(b, 4, 0);
  assert_int_equal(ratchet_breaker_allow(b, 1), RATCHET_EBREAKER_OPEN);
  ratchet_breaker_reset(b, 2);
  assert_int_equal(r.n, 2);
  assert_event(&r, 1, OPEN, CLOSED, 2);
  ratchet_breaker_metrics m = metrics(b, 2);
  assert_int_equal(m.state, CLOSED);
  assert_int_equal(m.trips, 0);
  assert_int_equal(m.calls, 0);
  assert_int_equal(m.open_until_ns, 0);
  /* The since-creation totals stay. */
  assert_int_equal(m.total_failures, 4);
  assert_int_equal(m.total_not_permitted, 1);
  assert_int_equal(m.total_transitions, 2);

  /* Reset while CLOSED empties the window without a state change. */
  calls(b, F, 3, 3);
  ratchet_breaker_reset(b, 4);
  m = metrics(b, 4);
  assert_int_equal(m.calls, 0);
  assert_int_equal(m.consecutive_failures, 0);
  assert_int_equal(r.n, 2);
  calls(b, F, 3, 5);
  assert_int_equal(ratchet_breaker_state_at(b, 5), CLOSED);
  ratchet_breaker_free(b);
}

/* The listener may call back into the breaker. */
struct reentrant {
  int n;
  ratchet_breaker_state seen;
  uint32_t trips;
};

static void reentrant_listener(void *ctx, ratchet_breaker *b,
                               ratchet_breaker_state from,
                               ratchet_breaker_state to, uint64_t now_ns) {
  (void)from;
  struct reentrant *x = ctx;
  x->n++;
  ratchet_breaker_metrics m;
  ratchet_breaker_metrics_get(b, now_ns, &m);
  x->seen = ratchet_breaker_state_at(b, now_ns);
  x->trips = m.trips;
  /* Take it straight to HALF_OPEN when it opens; that change reaches this
   * listener again, from inside this call. */
  if (to == RATCHET_BREAKER_OPEN)
    ratchet_breaker_transition(b, RATCHET_BREAKER_HALF_OPEN, now_ns);
}

static void test_listener_may_reenter(void **state) {
  (void)state;
  struct reentrant x = {0};
  ratchet_breaker_options o = count_opts(2, 2);
  o.listener = reentrant_listener;
  o.listener_ctx = &x;
  ratchet_breaker *b = make(&o, 0);
  calls(b, F, 2, 7);
  assert_int_equal(x.n, 2);
  assert_int_equal(x.seen, HALF_OPEN);
  assert_int_equal(x.trips, 1);
  assert_int_equal(ratchet_breaker_state_at(b, 7), HALF_OPEN);
  assert_int_equal(metrics(b, 7).total_transitions, 2);
  ratchet_breaker_free(b);
}

/* Outcomes reported while OPEN or FORCED_OPEN go into the totals only. */
static void test_outcomes_dropped_when_not_counting(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(4, 4);
  ratchet_breaker *b = make(&o, 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(ratchet_breaker_allow(b, 0), 0);
  for (int i = 0; i < 4; i++)
    ratchet_breaker_record(b, F, 0, 0);
  ratchet_breaker_record(b, S, 0, 1);
  ratchet_breaker_record(b, IGN, 0, 1);
  ratchet_breaker_metrics m = metrics(b, 1);
  assert_int_equal(m.state, OPEN);
  assert_int_equal(m.calls, 4);
  assert_int_equal(m.failed_calls, 4);
  assert_int_equal(m.total_successes, 1);
  assert_int_equal(m.total_failures, 4);
  /* An outcome outside the enum is ignored altogether. */
  ratchet_breaker_record(b, (ratchet_breaker_outcome)42, 0, 1);
  assert_int_equal(metrics(b, 1).total_failures, 4);
  ratchet_breaker_free(b);
}

static void test_ignored_in_closed_records_nothing(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(2, 2);
  ratchet_breaker *b = make(&o, 0);
  for (int i = 0; i < 10; i++) {
    assert_int_equal(ratchet_breaker_allow(b, 0), 0);
    ratchet_breaker_record(b, IGN, 0, 0);
  }
  ratchet_breaker_metrics m = metrics(b, 0);
  assert_int_equal(m.calls, 0);
  assert_int_equal(m.total_successes + m.total_failures, 0);
  ratchet_breaker_free(b);
}

static ratchet_breaker_options time_opts(uint32_t buckets, uint32_t min) {
  ratchet_breaker_options o = RATCHET_BREAKER_OPTIONS_INIT;
  o.window = RATCHET_BREAKER_WINDOW_TIME;
  o.window_size = buckets;
  o.bucket_ns = TU_S;
  o.minimum_calls = min;
  return o;
}

/* Calls leave the TIME window bucket by bucket. */
static void test_time_window_rollover(void **state) {
  (void)state;
  ratchet_breaker_options o = time_opts(3, 1);
  ratchet_breaker *b = make(&o, 0);
  calls(b, S, 2, TU_S / 2);            /* bucket 0 */
  calls(b, S, 3, TU_S);                /* bucket 1 */
  calls(b, S, 4, 2 * TU_S + TU_S / 2); /* bucket 2 */
  assert_int_equal(metrics(b, 3 * TU_S - 1).calls, 9);
  assert_int_equal(metrics(b, 3 * TU_S).calls, 7);
  assert_int_equal(metrics(b, 4 * TU_S).calls, 4);
  ratchet_breaker_metrics m = metrics(b, 5 * TU_S);
  assert_int_equal(m.calls, 0);
  assert_rate(m.failure_rate, -1.0);
  ratchet_breaker_free(b);
}

/* A jump of some buckets clears exactly those; a jump past the whole window
 * empties it. */
static void test_time_window_clock_jumps(void **state) {
  (void)state;
  ratchet_breaker_options o = time_opts(4, 1);
  ratchet_breaker *b = make(&o, 0);
  calls(b, S, 1, 0);
  calls(b, S, 2, TU_S);
  calls(b, S, 3, 2 * TU_S);
  /* Epoch 2 to 4: the window is now epochs 1..4. */
  call(b, S, 0, 4 * TU_S);
  assert_int_equal(metrics(b, 4 * TU_S).calls, 6);
  /* Far past the whole window. */
  uint64_t far = 4 * TU_S + 1000000 * TU_S;
  ratchet_breaker_metrics m = metrics(b, far);
  assert_int_equal(m.calls, 0);
  call(b, S, 0, far);
  m = metrics(b, far);
  assert_int_equal(m.calls, 1);
  assert_int_equal(m.failed_calls, 0);
  ratchet_breaker_free(b);

  /* A record (not a metrics read) makes the jump too. */
  b = make(&o, 0);
  calls(b, S, 5, 0);
  call(b, S, 0, UINT64_C(1) << 62);
  assert_int_equal(metrics(b, UINT64_C(1) << 62).calls, 1);
  ratchet_breaker_free(b);
}

/* A clock standing still puts every call in one bucket; a clock going
 * backwards puts them in the newest bucket. */
static void test_time_window_clock_still_or_backwards(void **state) {
  (void)state;
  ratchet_breaker_options o = time_opts(3, 100000);
  ratchet_breaker *b = make(&o, 0);
  uint64_t t = 5 * TU_S + TU_S / 2;
  calls(b, S, 50000, t);
  calls(b, F, 49999, t);
  ratchet_breaker_metrics m = metrics(b, t);
  assert_int_equal(m.calls, 99999);
  assert_int_equal(m.state, CLOSED);
  call(b, F, 0, t); /* 50 % at the 100,000th */
  assert_int_equal(ratchet_breaker_state_at(b, t), OPEN);
  ratchet_breaker_free(b);

  o.minimum_calls = 1;
  o.failure_rate_threshold = 100.0;
  b = make(&o, 0);
  call(b, S, 0, t);    /* epoch 5 */
  call(b, S, 0, TU_S); /* backwards: into epoch 5's bucket */
  call(b, S, 0, 0);    /* and again */
  assert_int_equal(metrics(b, 7 * TU_S + 1).calls, 3); /* epochs 5..7 */
  assert_int_equal(metrics(b, 8 * TU_S).calls, 0);     /* epoch 5 left */
  ratchet_breaker_free(b);
}

static void test_time_window_trips(void **state) {
  (void)state;
  struct rec r = {0};
  ratchet_breaker_options o = time_opts(10, 4);
  o.listener = rec_listener;
  o.listener_ctx = &r;
  ratchet_breaker *b = make(&o, 0);
  call(b, F, 0, 0);
  call(b, F, 0, TU_S);
  call(b, S, 0, 2 * TU_S);
  assert_int_equal(ratchet_breaker_state_at(b, 2 * TU_S), CLOSED);
  call(b, S, 0, 3 * TU_S); /* 2 of 4 */
  assert_int_equal(r.n, 1);
  assert_event(&r, 0, CLOSED, OPEN, 3 * TU_S);
  ratchet_breaker_free(b);

  /* The same calls spread over more than the window do not trip. */
  b = make(&o, 0);
  call(b, F, 0, 0);
  call(b, F, 0, 10 * TU_S);
  call(b, S, 0, 11 * TU_S);
  call(b, S, 0, 12 * TU_S);
  ratchet_breaker_metrics m = metrics(b, 12 * TU_S);
  assert_int_equal(m.state, CLOSED);
  assert_int_equal(m.calls, 3);
  assert_rate(m.failure_rate, -1.0);
  ratchet_breaker_free(b);
}

/* Buckets at the end of the clock's range do not wrap. */
static void test_time_window_end_of_time(void **state) {
  (void)state;
  ratchet_breaker_options o = time_opts(3, 1);
  o.bucket_ns = 3600 * TU_S;
  o.failure_rate_threshold = 100.0;
  ratchet_breaker *b = make(&o, UINT64_MAX - 5);
  call(b, S, 0, UINT64_MAX - 5);
  call(b, S, 0, UINT64_MAX);
  assert_int_equal(metrics(b, UINT64_MAX).calls, 2);
  ratchet_breaker_free(b);
}

static void test_metrics_snapshot(void **state) {
  (void)state;
  ratchet_breaker_options o = count_opts(10, 5);
  o.slow_call_duration_ns = TU_S;
  ratchet_breaker *b = make(&o, 0);
  call(b, S, 2 * TU_S, 0);
  call(b, S, 0, 0);
  call(b, S, 0, 0);
  call(b, F, 0, 0);
  call(b, F, 0, 0);
  ratchet_breaker_metrics m = metrics(b, 0);
  assert_int_equal(m.state, CLOSED);
  assert_int_equal(m.calls, 5);
  assert_int_equal(m.failed_calls, 2);
  assert_int_equal(m.slow_calls, 1);
  assert_rate(m.failure_rate, 40.0);
  assert_rate(m.slow_call_rate, 20.0);
  assert_int_equal(m.consecutive_failures, 2);
  assert_int_equal(m.half_open_permits_left, 0);
  assert_int_equal(m.trips, 0);
  assert_int_equal(m.open_until_ns, 0);
  assert_int_equal(m.total_successes, 3);
  assert_int_equal(m.total_failures, 2);
  assert_int_equal(m.total_not_permitted, 0);
  assert_int_equal(m.total_transitions, 0);
  ratchet_breaker_free(b);
}

static int rejects(const ratchet_breaker_options *o) {
  ratchet_breaker *b = NULL;
  int rc = ratchet_breaker_new(o, 0, &b);
  ratchet_breaker_free(b);
  return rc == -EINVAL;
}

static int accepts(const ratchet_breaker_options *o) {
  ratchet_breaker *b = NULL;
  int rc = ratchet_breaker_new(o, 0, &b);
  ratchet_breaker_free(b);
  return rc == 0;
}

/* Each documented bound: rejected one step outside, accepted on it. */
static void test_invalid_options(void **state) {
  (void)state;
  const ratchet_breaker_options d = RATCHET_BREAKER_OPTIONS_INIT;
  ratchet_breaker_options o;
  ratchet_breaker *b = NULL;
  const double nan = NAN;

  assert_int_equal(ratchet_breaker_new(NULL, 0, &b), -EINVAL);
  assert_int_equal(ratchet_breaker_new(&d, 0, NULL), -EINVAL);
  assert_true(accepts(&d));

#define CHECK(field, bad, good)                                                \
  do {                                                                         \
    o = base;                                                                  \
    o.field = (bad);                                                           \
    assert_true(rejects(&o));                                                  \
    o.field = (good);                                                          \
    assert_true(accepts(&o));                                                  \
  } while (0)

  ratchet_breaker_options base = d;
  base.window = (ratchet_breaker_window)3;
  assert_true(rejects(&base));

  /* COUNT */
  base = d;
  base.minimum_calls = 1;
  CHECK(window_size, 0, 1);
  base.window_size = 1000000;
  CHECK(window_size, 1000001, 1000000);
  base.window_size = 100;
  CHECK(minimum_calls, 0, 1);
  CHECK(minimum_calls, 101, 100);

  /* TIME */
  base = d;
  base.window = RATCHET_BREAKER_WINDOW_TIME;
  CHECK(window_size, 0, 1);
  CHECK(window_size, 3601, 3600);
  CHECK(bucket_ns, TU_MS - 1, TU_MS);
  CHECK(bucket_ns, 3600 * TU_S + 1, 3600 * TU_S);
  CHECK(minimum_calls, 0, 1);
  CHECK(minimum_calls, 0, UINT32_MAX); /* no upper bound */

  /* CONSECUTIVE: the window fields are unused. */
  base = d;
  base.window = RATCHET_BREAKER_WINDOW_CONSECUTIVE;
  base.window_size = 0;
  base.minimum_calls = 0;
  base.bucket_ns = 0;
  CHECK(consecutive_failures, 0, 1);
  CHECK(consecutive_failures, 1000001, 1000000);

  /* The rest, in every mode. */
  static const ratchet_breaker_window modes[] = {
      RATCHET_BREAKER_WINDOW_COUNT, RATCHET_BREAKER_WINDOW_TIME,
      RATCHET_BREAKER_WINDOW_CONSECUTIVE};
  for (size_t i = 0; i < 3; i++) {
    base = d;
    base.window = modes[i];
    CHECK(failure_rate_threshold, 0.0, 100.0);
    CHECK(failure_rate_threshold, 100.0000001, 1e-9);
    CHECK(failure_rate_threshold, nan, 50.0);
    CHECK(slow_call_rate_threshold, 0.0, 100.0);
    CHECK(slow_call_rate_threshold, 100.5, 1e-9);
    CHECK(slow_call_rate_threshold, nan, 50.0);
    CHECK(slow_call_duration_ns, 0, 1);
    CHECK(open_duration_ns, TU_MS - 1, TU_MS);
    CHECK(open_duration_ns, d.max_open_duration_ns + 1, d.max_open_duration_ns);
    CHECK(max_open_duration_ns, d.open_duration_ns - 1, d.open_duration_ns);
    CHECK(max_open_duration_ns, d.open_duration_ns - 1, UINT64_MAX);
    CHECK(open_backoff_multiplier, 0.999999, 1.0);
    CHECK(open_backoff_multiplier, 100.000001, 100.0);
    CHECK(open_backoff_multiplier, nan, 2.0);
    CHECK(permitted_calls_in_half_open, 0, 1);
    CHECK(permitted_calls_in_half_open, 100001, 100000);
    CHECK(max_wait_in_half_open_ns, 1, 0);
    CHECK(max_wait_in_half_open_ns, TU_MS - 1, TU_MS);
  }
#undef CHECK
}

/* Every allocation failure unwinds cleanly, in every window mode. */
static void test_alloc_failure(void **state) {
  (void)state;
  static const ratchet_breaker_window modes[] = {
      RATCHET_BREAKER_WINDOW_COUNT, RATCHET_BREAKER_WINDOW_TIME,
      RATCHET_BREAKER_WINDOW_CONSECUTIVE};
  for (size_t i = 0; i < 3; i++) {
    ratchet_breaker_options o = RATCHET_BREAKER_OPTIONS_INIT;
    o.window = modes[i];
    size_t k = 0;
    for (;; k++) {
      ratchet_breaker *b = NULL;
      tu_alloc_install(k);
      int rc = ratchet_breaker_new(&o, 0, &b);
      if (rc == 0) {
        assert_non_null(b);
        ratchet_breaker_free(b);
        assert_int_equal(tu_alloc_live(), 0);
        tu_alloc_uninstall();
        break;
      }
      assert_int_equal(rc, -ENOMEM);
      assert_null(b);
      assert_int_equal(tu_alloc_live(), 0);
      tu_alloc_uninstall();
    }
    /* The breaker, plus the window's storage where there is one. */
    assert_int_equal(k, modes[i] == RATCHET_BREAKER_WINDOW_CONSECUTIVE ? 1 : 2);
  }
}

/* No allocation after ratchet_breaker_new, whatever happens. */
static void test_no_alloc_after_new(void **state) {
  (void)state;
  static const ratchet_breaker_window modes[] = {
      RATCHET_BREAKER_WINDOW_COUNT, RATCHET_BREAKER_WINDOW_TIME,
      RATCHET_BREAKER_WINDOW_CONSECUTIVE};
  tu_alloc_install(SIZE_MAX);
  for (size_t i = 0; i < 3; i++) {
    struct rec r = {0};
    ratchet_breaker_options o = RATCHET_BREAKER_OPTIONS_INIT;
    o.window = modes[i];
    o.window_size = 20;
    o.minimum_calls = 10;
    o.bucket_ns = TU_MS;
    o.consecutive_failures = 3;
    o.open_duration_ns = TU_MS;
    o.open_backoff_multiplier = 2.0;
    o.max_wait_in_half_open_ns = 5 * TU_MS;
    o.permitted_calls_in_half_open = 3;
    o.listener = rec_listener;
    o.listener_ctx = &r;
    ratchet_breaker *b = make(&o, 0);
    size_t before = tu_alloc_count();
    uint64_t now = 0;
    for (uint32_t n = 0; n < 100000; n++) {
      now += 100000; /* 0.1 ms */
      if (ratchet_breaker_allow(b, now) == 0)
        ratchet_breaker_record(b, (n * 2654435761u) >> 31 ? F : S, n % 7, now);
      if (n % 1000 == 0) {
        ratchet_breaker_metrics m = metrics(b, now);
        (void)m;
        ratchet_breaker_transition(b, (ratchet_breaker_state)(n / 1000 % 6),
                                   now);
        ratchet_breaker_transition(b, CLOSED, now);
      }
    }
    ratchet_breaker_reset(b, now);
    assert_int_equal(tu_alloc_count(), before);
    assert_true(r.n > 100); /* it did go round the states */
    ratchet_breaker_free(b);
  }
  assert_int_equal(tu_alloc_live(), 0);
  tu_alloc_uninstall();
}

int test_breaker(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_defaults_and_names),
      cmocka_unit_test(test_trips_at_exactly_minimum_calls),
      cmocka_unit_test(test_stays_closed_under_threshold),
      cmocka_unit_test(test_decimal_threshold_is_exact),
      cmocka_unit_test(test_tiny_threshold_needs_a_failure),
      cmocka_unit_test(test_threshold_100_and_ring_overwrite),
      cmocka_unit_test(test_ring_forgets_old_failures),
      cmocka_unit_test(test_slow_rate_trips),
      cmocka_unit_test(test_consecutive_mode),
      cmocka_unit_test(test_consecutive_half_open),
      cmocka_unit_test(test_open_to_half_open_on_time),
      cmocka_unit_test(test_time_changes_are_lazy_everywhere),
      cmocka_unit_test(test_half_open_permits_then_closes),
      cmocka_unit_test(test_half_open_reopens_early),
      cmocka_unit_test(test_half_open_slow_probes_reopen),
      cmocka_unit_test(test_half_open_ignored_returns_permit),
      cmocka_unit_test(test_half_open_max_wait),
      cmocka_unit_test(test_half_open_clock_backwards),
      cmocka_unit_test(test_two_changes_in_one_call),
      cmocka_unit_test(test_open_backoff_and_cap),
      cmocka_unit_test(test_open_backoff_fractional),
      cmocka_unit_test(test_open_backoff_no_overflow),
      cmocka_unit_test(test_manual_transitions_all_pairs),
      cmocka_unit_test(test_manual_entry_effects),
      cmocka_unit_test(test_manual_transition_sees_time),
      cmocka_unit_test(test_disabled_lets_all_through),
      cmocka_unit_test(test_forced_open_refuses_all),
      cmocka_unit_test(test_metrics_only_never_trips),
      cmocka_unit_test(test_reset),
      cmocka_unit_test(test_listener_may_reenter),
      cmocka_unit_test(test_outcomes_dropped_when_not_counting),
      cmocka_unit_test(test_ignored_in_closed_records_nothing),
      cmocka_unit_test(test_time_window_rollover),
      cmocka_unit_test(test_time_window_clock_jumps),
      cmocka_unit_test(test_time_window_clock_still_or_backwards),
      cmocka_unit_test(test_time_window_trips),
      cmocka_unit_test(test_time_window_end_of_time),
      cmocka_unit_test(test_metrics_snapshot),
      cmocka_unit_test(test_invalid_options),
      cmocka_unit_test(test_alloc_failure),
      cmocka_unit_test(test_no_alloc_after_new),
  };
  return cmocka_run_group_tests_name("breaker", tests, NULL, NULL);
}
