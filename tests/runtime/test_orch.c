/*
 * test_orch.c - the orchestrator (ratchet/orch.h), policy by policy and
 * combined, against real worker processes (orch_testutil.h): retries and
 * their spacing, the circuit breaker, the result cache and single flight,
 * rate limits, dedupe and debounce, poison pills and the dead letter,
 * expiry, deadlines and timeouts, cancel in every state, priorities, pins
 * and affinity, produced children, shutdown, the bounded queue, the
 * thread-safe submit, statistics from another thread, the blocking layer,
 * events and their JSON-lines sink, the statistics, callbacks that call
 * back in, user systems, a pool that fails, the refusals of bad specs and
 * the -ENOMEM paths. RATCHET_ORCH_TEST=<cmocka pattern> runs some of them;
 * RATCHET_ORCH_WATCHDOG_MS shortens the hang guard when debugging.
 *
 * Time is real here (the workers are processes), so no assertion bounds a
 * duration from above: spacing is checked from below only ("a retry never
 * comes before its backoff delay"), with constant backoff and no jitter so
 * that the delays are known. Ordering that must not depend on timing is
 * forced instead: a task that must wait is put behind one that runs until it
 * is cancelled. Every test ends with ot_close, which checks that each task
 * got exactly one completion callback, on the loop's thread, before close's
 * callback, and that no worker process or descriptor is left.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "orch_testutil.h"
#include "ratchet/clock.h"
#include "ratchet/error.h"
#include "ratchet/store.h"
#include "ratchet/sync.h"
#include "ratchet/tiered.h"

/* ---- helpers ------------------------------------------------------------ */

static ratchet_policy_retry constant_retry(uint32_t max_attempts,
                                           uint64_t delay_ns) {
  ratchet_policy_retry r = RATCHET_POLICY_RETRY_INIT;
  r.max_attempts = max_attempts;
  r.backoff.kind = RATCHET_BACKOFF_CONSTANT;
  r.backoff.jitter = RATCHET_JITTER_NONE;
  r.backoff.initial_ns = delay_ns;
  r.backoff.max_delay_ns = delay_ns;
  return r;
}

/* The times of task id's DISPATCHED events, in order; returns how many. */
static unsigned dispatch_times(const ot *t, uint64_t id, uint64_t *out,
                               unsigned max) {
  unsigned n = 0;
  const ot_ev *e;
  while (n < max && (e = ot_find_event(t, RATCHET_EV_DISPATCHED, id, n)))
    out[n++] = e->time_ns;
  return n;
}

static const ot_res *must_result(const ot *t, uint64_t id) {
  const ot_res *r = ot_result(t, id);
  if (r == NULL)
    print_error("task %llu has no outcome\n", (unsigned long long)id);
  assert_non_null(r);
  return r;
}

static void expect_status(const ot *t, uint64_t id, ratchet_status st) {
  const ot_res *r = must_result(t, id);
  if (r->status != st)
    print_error("task %llu (%s): %s, expected %s: %s\n", (unsigned long long)id,
                r->kind, ratchet_status_name(r->status),
                ratchet_status_name(st), r->error);
  assert_int_equal(r->status, st);
}

/* A private directory under /tmp, and its removal with what is in it. */
static void make_tmpdir(char *buf, size_t len) {
  snprintf(buf, len, "/tmp/ratchet-orch-XXXXXX");
  assert_non_null(mkdtemp(buf));
}

static void remove_tmpdir(const char *dir, const char *const *files) {
  char path[512];
  for (; files != NULL && *files != NULL; files++) {
    snprintf(path, sizeof path, "%s/%s", dir, *files);
    (void)unlink(path);
  }
  assert_int_equal(rmdir(dir), 0);
}

/* A one-worker harness whose tasks run one after the other. */
static ot *serial_harness(void) {
  ot_options oo = OT_OPTIONS_INIT;
  oo.size = 1;
  return ot_new(&oo, NULL);
}

/* ---- 1. retry and backoff ------------------------------------------------ */

static void test_retry_backoff(void **state) {
  (void)state;
  ot *t = ot_new(NULL, NULL);
  const uint64_t delay = OT_MS(100);
  ratchet_policy_retry retry = constant_retry(4, delay);

  ratchet_task_spec s = ot_spec(t, "flaky", "2");
  s.retry = &retry;
  uint64_t flaky = ot_submit(t, &s);
  s = ot_spec(t, "fail", "x");
  s.retry = &retry;
  uint64_t always = ot_submit(t, &s);
  /* BAD_REQUEST is not in the default retry_on mask: no retry. */
  s = ot_spec(t, "status", "6");
  s.retry = &retry;
  uint64_t bad_default = ot_submit(t, &s);
  /* ... unless the mask says so. */
  ratchet_policy_retry on_bad = constant_retry(2, OT_MS(1));
  on_bad.retry_on = RATCHET_RETRY_ON_BIT(RATCHET_STATUS_BAD_REQUEST);
  s = ot_spec(t, "status", "6");
  s.retry = &on_bad;
  uint64_t bad_masked = ot_submit(t, &s);
  /* A mask without INTERNAL_ERROR does not retry it. */
  ratchet_policy_retry only_failed = constant_retry(5, OT_MS(1));
  only_failed.retry_on = RATCHET_RETRY_ON_BIT(RATCHET_STATUS_FAILED);
  s = ot_spec(t, "status", "7");
  s.retry = &only_failed;
  uint64_t internal = ot_submit(t, &s);
  /* Without a retry policy a failure is final at once. */
  s = ot_spec(t, "fail", "y");
  uint64_t no_policy = ot_submit(t, &s);
  ot_run_until(t, ot_p_done, 6);

  const ot_res *r = must_result(t, flaky);
  expect_status(t, flaky, RATCHET_STATUS_OK);
  assert_int_equal(r->attempts, 3);
  assert_int_equal(r->crashes, 0);
  assert_string_equal(r->output, "2");
  assert_string_equal(r->error, "");

  r = must_result(t, always);
  expect_status(t, always, RATCHET_STATUS_FAILED);
  assert_int_equal(r->attempts, retry.max_attempts);
  assert_string_equal(r->error, "always fails (attempt 4)");

  r = must_result(t, bad_default);
  expect_status(t, bad_default, RATCHET_STATUS_BAD_REQUEST);
  assert_int_equal(r->attempts, 1);
  r = must_result(t, bad_masked);
  expect_status(t, bad_masked, RATCHET_STATUS_BAD_REQUEST);
  assert_int_equal(r->attempts, 2);
  r = must_result(t, internal);
  expect_status(t, internal, RATCHET_STATUS_INTERNAL_ERROR);
  assert_int_equal(r->attempts, 1);
  r = must_result(t, no_policy);
  expect_status(t, no_policy, RATCHET_STATUS_FAILED);
  assert_int_equal(r->attempts, 1);

  /* Each retry waited at least its delay after the failure, so attempts
   * are dispatched at least `delay` apart; RETRY events carry the delay. */
  const uint64_t ids[] = {flaky, always};
  for (size_t i = 0; i < 2; i++) {
    uint64_t at[8];
    unsigned n = dispatch_times(t, ids[i], at, 8);
    assert_int_equal(n, must_result(t, ids[i])->attempts);
    for (unsigned k = 1; k < n; k++)
      assert_true(at[k] - at[k - 1] >= delay);
    assert_int_equal(ot_count_events(t, RATCHET_EV_RETRY, ids[i]), n - 1);
    for (unsigned k = 0; k + 1 < n; k++) {
      const ot_ev *e = ot_find_event(t, RATCHET_EV_RETRY, ids[i], k);
      assert_int_equal(e->delay_ns, delay);
      assert_int_equal(e->attempt, k + 1);
    }
  }
  assert_int_equal(ot_count_events(t, RATCHET_EV_RETRY, bad_default), 0);
  assert_int_equal(ot_count_events(t, RATCHET_EV_RETRY, internal), 0);
  ot_close(t);
}

/* Retries against the expiry and the deadline: expire_ns bounds the wait
 * for the first dispatch only ("must be dispatched within expire_ns of
 * submit"), so a retry after it still runs; no retry starts after the
 * deadline, so the failure before it is final. */
static void test_retry_expiry_deadline(void **state) {
  (void)state;
  ot *t = ot_new(NULL, NULL);
  ratchet_policy_retry late = constant_retry(2, OT_MS(1200));
  ratchet_task_spec s = ot_spec(t, "flaky", "1");
  s.retry = &late;
  s.expire_ns = OT_MS(1000);
  uint64_t expiring = ot_submit(t, &s);
  ratchet_policy_retry after = constant_retry(3, OT_MS(2000));
  s = ot_spec(t, "fail", "z");
  s.retry = &after;
  s.deadline_ns = OT_MS(1000);
  uint64_t deadline = ot_submit(t, &s);
  ot_run_until(t, ot_p_done, 2);
  const ot_res *r = must_result(t, deadline);
  expect_status(t, deadline, RATCHET_STATUS_FAILED);
  assert_int_equal(r->attempts, 1);
  assert_int_equal(ot_count_events(t, RATCHET_EV_RETRY, deadline), 0);
  r = must_result(t, expiring);
  ratchet_status st = r->status;
  uint32_t attempts = r->attempts;
  if (st != RATCHET_STATUS_OK)
    print_error("the retry after the expiry: %s: %s\n", ratchet_status_name(st),
                r->error);
  /* Closed before the last checks, so that a failure leaves nothing. */
  ot_close(t);
  assert_int_equal(st, RATCHET_STATUS_OK);
  assert_int_equal(attempts, 2);
}

/* ---- 2. circuit breaker ---------------------------------------------- */

static ratchet_breaker_options quick_breaker(void) {
  ratchet_breaker_options bo = RATCHET_ORCH_BREAKER_DEFAULTS;
  bo.window = RATCHET_BREAKER_WINDOW_CONSECUTIVE;
  bo.consecutive_failures = 2;
  bo.open_duration_ns = OT_MS(200);
  bo.max_open_duration_ns = OT_MS(200);
  bo.permitted_calls_in_half_open = 1;
  return bo;
}

static const ot_ev *breaker_event(const ot *t, const char *group, int from,
                                  int to) {
  for (size_t i = 0; i < t->n_ev; i++) {
    const ot_ev *e = &t->ev[i];
    if (e->type == RATCHET_EV_BREAKER && strcmp(e->group, group) == 0 &&
        e->from_state == from && e->to_state == to)
      return e;
  }
  return NULL;
}

static void test_breaker_fail_fast(void **state) {
  (void)state;
  ot *t = serial_harness();
  ratchet_breaker_options bo = quick_breaker();
  assert_int_equal(ratchet_orch_breaker_config(t->o, "b", &bo), 0);
  assert_int_equal(ratchet_orch_breaker_config(t->o, "b", &bo), -EEXIST);
  ratchet_policy_breaker pb = RATCHET_POLICY_BREAKER_INIT;
  pb.group = "b";

  /* One worker: the tasks run in order. Two failures open the breaker;
   * the five behind them are refused without reaching a worker. */
  uint64_t ids[7];
  for (int i = 0; i < 7; i++) {
    ratchet_task_spec s = ot_spec(t, "fail", "b");
    s.breaker = &pb;
    ids[i] = ot_submit(t, &s);
  }
  ot_run_until(t, ot_p_done, 7);
  for (int i = 0; i < 7; i++) {
    const ot_res *r = must_result(t, ids[i]);
    if (i < 2) {
      expect_status(t, ids[i], RATCHET_STATUS_FAILED);
      assert_int_equal(r->attempts, 1);
      assert_int_equal(ot_count_events(t, RATCHET_EV_DISPATCHED, ids[i]), 1);
    } else {
      expect_status(t, ids[i], RATCHET_STATUS_REJECTED);
      assert_int_equal(r->attempts, 0);
      assert_int_equal(r->worker, -1);
      assert_string_equal(r->error, "circuit breaker 'b' is open");
      assert_int_equal(ot_count_events(t, RATCHET_EV_DISPATCHED, ids[i]), 0);
      const ot_ev *e = ot_find_event(t, RATCHET_EV_REJECTED, ids[i], 0);
      assert_non_null(e);
      assert_string_equal(e->group, "b");
    }
  }
  const ot_ev *opened =
      breaker_event(t, "b", RATCHET_BREAKER_CLOSED, RATCHET_BREAKER_OPEN);
  assert_non_null(opened);
  uint64_t opened_ns = opened->time_ns;

  /* Once the open duration has passed the breaker half-opens, lets a
   * probe through, and closes when it succeeds. */
  ot_sleep_ms(t, 200);
  ratchet_task_spec s = ot_spec(t, "echo", "probe");
  s.breaker = &pb;
  uint64_t probe = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, probe);
  expect_status(t, probe, RATCHET_STATUS_OK);
  assert_int_equal(must_result(t, probe)->attempts, 1);
  uint64_t at = 0;
  assert_int_equal(dispatch_times(t, probe, &at, 1), 1);
  assert_true(at - opened_ns >= bo.open_duration_ns);
  const ot_ev *half =
      breaker_event(t, "b", RATCHET_BREAKER_OPEN, RATCHET_BREAKER_HALF_OPEN);
  const ot_ev *closed =
      breaker_event(t, "b", RATCHET_BREAKER_HALF_OPEN, RATCHET_BREAKER_CLOSED);
  assert_non_null(half);
  assert_non_null(closed);
  assert_true(half->seq < closed->seq);
  assert_true(half->time_ns - opened_ns >= bo.open_duration_ns);

  /* Without a group, the breaker is the kind's. */
  ratchet_policy_breaker by_kind = RATCHET_POLICY_BREAKER_INIT;
  s = ot_spec(t, "echo", "k");
  s.breaker = &by_kind;
  uint64_t k = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, k);
  expect_status(t, k, RATCHET_STATUS_OK);
  /* Its options are taken when the group is first used. */
  assert_int_equal(ratchet_orch_breaker_config(t->o, "echo", &bo), -EEXIST);
  ot_close(t);
}

static void test_breaker_wait(void **state) {
  (void)state;
  ot *t = serial_harness();
  ratchet_breaker_options bo = quick_breaker();
  assert_int_equal(ratchet_orch_breaker_config(t->o, "w", &bo), 0);
  ratchet_policy_breaker pb = {.group = "w", .mode = RATCHET_BREAKER_WAIT};
  uint64_t fails[2], waits[3];
  for (int i = 0; i < 2; i++) {
    ratchet_task_spec s = ot_spec(t, "fail", "w");
    s.breaker = &pb;
    fails[i] = ot_submit(t, &s);
  }
  /* Waiting for the breaker, a task's expiry still applies. */
  ratchet_task_spec ex = ot_spec(t, "echo", "expires");
  ex.breaker = &pb;
  ex.expire_ns = OT_MS(50);
  uint64_t expiring = ot_submit(t, &ex);
  /* These meet the open breaker: they wait for it instead of failing. */
  for (int i = 0; i < 3; i++) {
    char p[8];
    snprintf(p, sizeof p, "w%d", i);
    ratchet_task_spec s = ot_spec(t, "echo", p);
    s.breaker = &pb;
    waits[i] = ot_submit(t, &s);
  }
  ot_run_until(t, ot_p_done, 6);
  expect_status(t, expiring, RATCHET_STATUS_EXPIRED);
  assert_int_equal(must_result(t, expiring)->attempts, 0);
  const ot_ev *opened =
      breaker_event(t, "w", RATCHET_BREAKER_CLOSED, RATCHET_BREAKER_OPEN);
  assert_non_null(opened);
  for (int i = 0; i < 2; i++)
    expect_status(t, fails[i], RATCHET_STATUS_FAILED);
  for (int i = 0; i < 3; i++) {
    const ot_res *r = must_result(t, waits[i]);
    expect_status(t, waits[i], RATCHET_STATUS_OK);
    assert_int_equal(r->attempts, 1);
    const ot_ev *d = ot_find_event(t, RATCHET_EV_DEFERRED, waits[i], 0);
    assert_non_null(d);
    assert_string_equal(d->group, "w");
    assert_true(d->delay_ns > 0);
    assert_int_equal(ot_count_events(t, RATCHET_EV_REJECTED, waits[i]), 0);
    uint64_t at = 0;
    assert_int_equal(dispatch_times(t, waits[i], &at, 1), 1);
    assert_true(at - opened->time_ns >= bo.open_duration_ns);
  }
  assert_non_null(
      breaker_event(t, "w", RATCHET_BREAKER_HALF_OPEN, RATCHET_BREAKER_CLOSED));
  ot_close(t);
}

/* ---- 3. result cache and single flight --------------------------------- */

typedef struct cache_fixture {
  char dir[64];
  ratchet_store *store;
  ratchet_tiered *tiered;
} cache_fixture;

static void cache_open(cache_fixture *c) {
  make_tmpdir(c->dir, sizeof c->dir);
  ratchet_store_options so = RATCHET_STORE_OPTIONS_INIT;
  so.dir = c->dir;
  so.max_bytes = UINT64_C(1) << 24;
  so.durability = RATCHET_STORE_NOSYNC;
  assert_int_equal(ratchet_store_open(&so, &c->store), 0);
  ratchet_tiered_options to = RATCHET_TIERED_OPTIONS_INIT;
  to.store = c->store;
  assert_int_equal(ratchet_tiered_new(&to, &c->tiered), 0);
}

static void cache_close(cache_fixture *c) {
  ratchet_tiered_free(c->tiered);
  ratchet_store_close(c->store);
  assert_int_equal(ratchet_store_destroy(c->dir), 0);
  struct stat st;
  if (stat(c->dir, &st) == 0)
    remove_tmpdir(c->dir, NULL);
}

static void test_cache(void **state) {
  (void)state;
  cache_fixture c;
  cache_open(&c);
  ratchet_orch_options opt = RATCHET_ORCH_OPTIONS_INIT;
  opt.cache = c.tiered;
  ot *t = ot_new(NULL, &opt);
  ratchet_policy_cache pc = RATCHET_POLICY_CACHE_INIT;

  /* The first run is a miss and stores its output ... */
  ratchet_task_spec s = ot_spec(t, "echo", "cache-me");
  s.cache = &pc;
  uint64_t first = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, first);
  const ot_res *r = must_result(t, first);
  expect_status(t, first, RATCHET_STATUS_OK);
  assert_false(r->cached);
  assert_int_equal(r->attempts, 1);
  /* ... the second is served from it without reaching a worker. */
  uint64_t second = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, second);
  r = must_result(t, second);
  expect_status(t, second, RATCHET_STATUS_OK);
  assert_true(r->cached);
  assert_false(r->coalesced);
  assert_int_equal(r->attempts, 0);
  assert_int_equal(r->worker, -1);
  assert_string_equal(r->output, "cache-me");
  assert_int_equal(ot_count_events(t, RATCHET_EV_DISPATCHED, second), 0);
  assert_int_equal(ot_count_events(t, RATCHET_EV_CACHE_HIT, second), 1);
  /* A salt makes another key: a miss. */
  ratchet_policy_cache salted = pc;
  salted.salt = "v2";
  s.cache = &salted;
  uint64_t third = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, third);
  assert_false(must_result(t, third)->cached);
  assert_int_equal(must_result(t, third)->attempts, 1);
  /* An explicit key ignores the payload. */
  ratchet_policy_cache keyed = pc;
  keyed.has_key = true;
  keyed.key.hi = 0x1234;
  keyed.key.lo = 0x5678;
  s = ot_spec(t, "echo", "keyed-1");
  s.cache = &keyed;
  uint64_t k1 = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, k1);
  s = ot_spec(t, "echo", "keyed-2");
  s.cache = &keyed;
  uint64_t k2 = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, k2);
  assert_true(must_result(t, k2)->cached);
  assert_string_equal(must_result(t, k2)->output, "keyed-1");

  /* Identical tasks in flight together run once; the others share the
   * outcome. */
  enum { N = 5 };
  uint64_t same[N];
  for (int i = 0; i < N; i++) {
    s = ot_spec(t, "sleep", "150");
    s.cache = &pc;
    same[i] = ot_submit(t, &s);
  }
  unsigned before = t->n_done;
  ot_run_until(t, ot_p_done, before + N);
  unsigned dispatched = 0, coalesced = 0;
  for (int i = 0; i < N; i++) {
    r = must_result(t, same[i]);
    expect_status(t, same[i], RATCHET_STATUS_OK);
    assert_string_equal(r->output, "150");
    dispatched += ot_count_events(t, RATCHET_EV_DISPATCHED, same[i]);
    if (r->coalesced) {
      coalesced++;
      assert_int_equal(r->related_id, same[0]);
      assert_int_equal(r->attempts, 0);
      const ot_ev *e = ot_find_event(t, RATCHET_EV_COALESCED, same[i], 0);
      assert_non_null(e);
      assert_int_equal(e->related_id, same[0]);
    }
  }
  assert_int_equal(dispatched, 1);
  assert_int_equal(coalesced, N - 1);
  assert_false(must_result(t, same[0])->coalesced);
  assert_int_equal(must_result(t, same[0])->attempts, 1);
  /* A follower shares its leader's fate: its own expiry no longer
   * applies once it has joined. */
  s = ot_spec(t, "sleep", "200");
  s.cache = &pc;
  uint64_t slow_leader = ot_submit(t, &s);
  s.expire_ns = OT_MS(20);
  uint64_t impatient = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, slow_leader);
  ot_run_until(t, ot_p_task_done, impatient);
  expect_status(t, impatient, RATCHET_STATUS_OK);
  assert_true(must_result(t, impatient)->coalesced);
  /* A failure is shared by the tasks in flight with it, and not cached. */
  uint64_t failing[3];
  for (int i = 0; i < 3; i++) {
    s = ot_spec(t, "fail", "cached?");
    s.cache = &pc;
    failing[i] = ot_submit(t, &s);
  }
  for (int i = 0; i < 3; i++) {
    ot_run_until(t, ot_p_task_done, failing[i]);
    expect_status(t, failing[i], RATCHET_STATUS_FAILED);
    assert_int_equal(ot_count_events(t, RATCHET_EV_DISPATCHED, failing[i]),
                     i == 0 ? 1 : 0);
  }
  s = ot_spec(t, "fail", "cached?");
  s.cache = &pc;
  uint64_t again = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, again);
  expect_status(t, again, RATCHET_STATUS_FAILED);
  assert_false(must_result(t, again)->cached);
  assert_int_equal(must_result(t, again)->attempts, 1);
  /* Without coalescing, identical tasks in flight each run. */
  ratchet_policy_cache solo = pc;
  solo.coalesce = false;
  uint64_t a, b;
  s = ot_spec(t, "sleep", "120");
  s.cache = &solo;
  a = ot_submit(t, &s);
  b = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, b);
  ot_run_until(t, ot_p_task_done, a);
  assert_int_equal(ot_count_events(t, RATCHET_EV_DISPATCHED, a), 1);
  assert_int_equal(ot_count_events(t, RATCHET_EV_DISPATCHED, b), 1);
  ot_close(t);
  cache_close(&c);
}

/* What a cancelled leader leaves to its followers: the first takes its
 * place and its cache key (later twins join it); a debounced task that runs
 * stores its result like any other. */
static void test_coalesce_handover(void **state) {
  (void)state;
  cache_fixture c;
  cache_open(&c);
  ratchet_orch_options opt = RATCHET_ORCH_OPTIONS_INIT;
  opt.cache = c.tiered;
  ot_options oo = OT_OPTIONS_INIT;
  oo.size = 1;
  ot *t = ot_new(&oo, &opt);
  ratchet_policy_cache pc = RATCHET_POLICY_CACHE_INIT;
  ratchet_task_spec s = ot_spec(t, "sleep", "600000");
  uint64_t blocker = ot_submit(t, &s);
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_DISPATCHED, blocker));
  s = ot_spec(t, "echo", "twin");
  s.cache = &pc;
  uint64_t leader = ot_submit(t, &s);
  uint64_t f1 = ot_submit(t, &s);
  uint64_t f2 = ot_submit(t, &s);
  assert_int_equal(ratchet_orch_cancel(t->o, leader), 0);
  ot_run_until(t, ot_p_task_done, leader);
  expect_status(t, leader, RATCHET_STATUS_CANCELLED);
  /* f1 leads now: a new twin joins it. */
  uint64_t late = ot_submit(t, &s);
  assert_int_equal(ratchet_orch_cancel(t->o, blocker), 0);
  ot_run_until(t, ot_p_task_done, late);
  ot_run_until(t, ot_p_task_done, f2);
  ot_run_until(t, ot_p_task_done, f1);
  expect_status(t, f1, RATCHET_STATUS_OK);
  assert_false(must_result(t, f1)->coalesced);
  assert_int_equal(must_result(t, f1)->attempts, 1);
  const uint64_t joined[] = {f2, late};
  for (int i = 0; i < 2; i++) {
    const ot_res *r = must_result(t, joined[i]);
    expect_status(t, joined[i], RATCHET_STATUS_OK);
    assert_true(r->coalesced);
    assert_int_equal(r->related_id, f1);
    assert_int_equal(r->attempts, 0);
    assert_string_equal(r->output, "twin");
  }
  /* A debounced task with a cache policy stores its result. */
  ratchet_policy_dedupe pd = {.key = "deb",
                              .key_len = 3,
                              .window_ns = OT_MS(50),
                              .mode = RATCHET_DEDUPE_TRAILING};
  s = ot_spec(t, "echo", "debounced");
  s.cache = &pc;
  s.dedupe = &pd;
  uint64_t d1 = ot_submit(t, &s);
  uint64_t d2 = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, d1);
  ot_run_until(t, ot_p_task_done, d2);
  expect_status(t, d2, RATCHET_STATUS_OK);
  s = ot_spec(t, "echo", "debounced");
  s.cache = &pc;
  uint64_t hit = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, hit);
  assert_true(must_result(t, hit)->cached);
  assert_string_equal(must_result(t, hit)->output, "debounced");
  ot_close(t);
  cache_close(&c);
}

/* A half-open breaker's permit comes back when its probe is cancelled, so
 * the next task can probe (instead of waiting for the half-open timeout). */
static void test_breaker_permit_returned(void **state) {
  (void)state;
  ot *t = ot_new(NULL, NULL);
  ratchet_breaker_options bo = quick_breaker();
  assert_int_equal(ratchet_orch_breaker_config(t->o, "p", &bo), 0);
  ratchet_policy_breaker pb = {.group = "p", .mode = RATCHET_BREAKER_WAIT};
  for (int i = 0; i < 2; i++) {
    ratchet_task_spec s = ot_spec(t, "fail", "p");
    s.breaker = &pb;
    ot_submit(t, &s);
  }
  ot_run_until(t, ot_p_done, 2);
  assert_non_null(
      breaker_event(t, "p", RATCHET_BREAKER_CLOSED, RATCHET_BREAKER_OPEN));
  ot_sleep_ms(t, 200);
  ratchet_task_spec s = ot_spec(t, "sleep", "600000");
  s.breaker = &pb;
  uint64_t probe = ot_submit(t, &s);
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_DISPATCHED, probe));
  s = ot_spec(t, "echo", "next");
  s.breaker = &pb;
  uint64_t next = ot_submit(t, &s);
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_DEFERRED, next));
  assert_int_equal(ratchet_orch_cancel(t->o, probe), 0);
  ot_run_until(t, ot_p_task_done, next);
  expect_status(t, probe, RATCHET_STATUS_CANCELLED);
  expect_status(t, next, RATCHET_STATUS_OK);
  ot_close(t);
}

/* ---- 4. rate limit ---------------------------------------------------------
 */

static void test_rate_limit(void **state) {
  (void)state;
  ot_options oo = OT_OPTIONS_INIT;
  oo.depth = 4;
  ot *t = ot_new(&oo, NULL);
  /* 10 per second, bursts of 2: a permit every 100 ms after the burst. */
  ratchet_ratelimit_options ro = {RATCHET_RATELIMIT_TOKEN_BUCKET, 10,
                                  UINT64_C(1000000000), 2};
  assert_int_equal(ratchet_orch_rate_limit(t->o, "r", &ro), 0);
  assert_int_equal(ratchet_orch_rate_limit(t->o, "r", &ro), -EEXIST);
  enum { N = 6, BURST = 2 };
  const uint64_t gap = OT_MS(100);
  uint64_t t0 = ratchet_now_ns(), ids[N];
  for (int i = 0; i < N; i++) {
    ratchet_task_spec s = ot_spec(t, "echo", "r");
    s.rate_group = "r";
    ids[i] = ot_submit(t, &s);
  }
  ot_run_until(t, ot_p_done, N);
  uint64_t at[N];
  unsigned deferred = 0;
  for (int i = 0; i < N; i++) {
    expect_status(t, ids[i], RATCHET_STATUS_OK);
    assert_int_equal(dispatch_times(t, ids[i], &at[i], 1), 1);
    deferred += ot_count_events(t, RATCHET_EV_DEFERRED, ids[i]) > 0;
    const ot_ev *e = ot_find_event(t, RATCHET_EV_DEFERRED, ids[i], 0);
    if (e != NULL)
      assert_string_equal(e->group, "r");
  }
  /* Sorted, the k-th dispatch (from 0) cannot come before the permits
   * beyond the burst have been refilled. */
  for (int i = 1; i < N; i++)
    for (int j = i; j > 0 && at[j] < at[j - 1]; j--) {
      uint64_t x = at[j];
      at[j] = at[j - 1];
      at[j - 1] = x;
    }
  for (int k = BURST; k < N; k++)
    assert_true(at[k] - t0 >= (uint64_t)(k - BURST + 1) * gap);
  /* Those beyond the burst waited (how often each is a matter of timing). */
  assert_true(deferred >= 1);
  ot_close(t);
}

/* ---- 5. dedupe and debounce ------------------------------------------- */

static void test_dedupe_leading(void **state) {
  (void)state;
  ot *t = ot_new(NULL, NULL);
  ratchet_policy_dedupe pd = {.key = "lead",
                              .key_len = 4,
                              .window_ns = OT_MS(60000),
                              .mode = RATCHET_DEDUPE_LEADING};
  ratchet_task_spec s = ot_spec(t, "sleep", "100");
  s.dedupe = &pd;
  uint64_t leader = ot_submit(t, &s);
  s = ot_spec(t, "echo", "b");
  s.dedupe = &pd;
  uint64_t b = ot_submit(t, &s);
  s = ot_spec(t, "echo", "c");
  s.dedupe = &pd;
  uint64_t c = ot_submit(t, &s);
  ot_run_until(t, ot_p_done, 3);
  expect_status(t, leader, RATCHET_STATUS_OK);
  assert_false(must_result(t, leader)->coalesced);
  const uint64_t followers[] = {b, c};
  for (int i = 0; i < 2; i++) {
    const ot_res *r = must_result(t, followers[i]);
    expect_status(t, followers[i], RATCHET_STATUS_OK);
    assert_true(r->coalesced);
    assert_int_equal(r->related_id, leader);
    assert_int_equal(r->attempts, 0);
    assert_string_equal(r->output, "100");
    assert_int_equal(ot_count_events(t, RATCHET_EV_DISPATCHED, followers[i]),
                     0);
    const ot_ev *e = ot_find_event(t, RATCHET_EV_COALESCED, followers[i], 0);
    assert_non_null(e);
    assert_int_equal(e->related_id, leader);
  }
  /* Later, but within the window: the finished outcome is shared. */
  s = ot_spec(t, "echo", "d");
  s.dedupe = &pd;
  uint64_t d = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, d);
  const ot_res *r = must_result(t, d);
  expect_status(t, d, RATCHET_STATUS_OK);
  assert_string_equal(r->output, "100");
  assert_int_equal(r->attempts, 0);
  assert_int_equal(ot_count_events(t, RATCHET_EV_DISPATCHED, d), 0);
  assert_int_equal(ot_count_events(t, RATCHET_EV_COALESCED, d), 1);

  /* After the window, the key runs again. */
  ratchet_policy_dedupe brief = pd;
  brief.key = "brief";
  brief.key_len = 5;
  brief.window_ns = OT_MS(100);
  s = ot_spec(t, "echo", "e1");
  s.dedupe = &brief;
  uint64_t e1 = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, e1);
  ot_sleep_ms(t, 100);
  s = ot_spec(t, "echo", "e2");
  s.dedupe = &brief;
  uint64_t e2 = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, e2);
  r = must_result(t, e2);
  expect_status(t, e2, RATCHET_STATUS_OK);
  assert_false(r->coalesced);
  assert_int_equal(r->attempts, 1);
  assert_string_equal(r->output, "e2");
  ot_close(t);
}

/* A duplicate that comes after its leader finished, within the window,
 * shares the outcome: like any coalesced task it says so and names the
 * task it joined (orch.h: "coalesced ... (related_id)"). */
static void test_dedupe_late_duplicate(void **state) {
  (void)state;
  ot *t = ot_new(NULL, NULL);
  ratchet_policy_dedupe pd = {.key = "late",
                              .key_len = 4,
                              .window_ns = OT_MS(600000),
                              .mode = RATCHET_DEDUPE_LEADING};
  ratchet_task_spec s = ot_spec(t, "echo", "first");
  s.dedupe = &pd;
  uint64_t leader = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, leader);
  s = ot_spec(t, "echo", "late");
  s.dedupe = &pd;
  uint64_t late = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, late);
  const ot_res *r = must_result(t, late);
  expect_status(t, late, RATCHET_STATUS_OK);
  assert_string_equal(r->output, "first");
  assert_int_equal(r->attempts, 0);
  const ot_ev *e = ot_find_event(t, RATCHET_EV_COALESCED, late, 0);
  assert_non_null(e);
  /* Closed before the last checks, so that a failure leaves nothing. */
  bool coalesced = r->coalesced;
  uint64_t related = r->related_id, ev_related = e->related_id;
  ot_close(t);
  assert_true(coalesced);
  assert_int_equal(related, leader);
  assert_int_equal(ev_related, leader);
}

static void test_debounce_trailing(void **state) {
  (void)state;
  ot *t = ot_new(NULL, NULL);
  ratchet_policy_dedupe pd = {.key = "trail",
                              .key_len = 5,
                              .window_ns = OT_MS(200),
                              .mode = RATCHET_DEDUPE_TRAILING};
  uint64_t ids[3];
  for (int i = 0; i < 3; i++) {
    char p[4];
    snprintf(p, sizeof p, "%d", i + 1);
    ratchet_task_spec s = ot_spec(t, "echo", p);
    s.dedupe = &pd;
    ids[i] = ot_submit(t, &s);
  }
  ot_run_until(t, ot_p_done, 3);
  /* Only the last of the burst ran, after the quiet window ... */
  const ot_res *last = must_result(t, ids[2]);
  expect_status(t, ids[2], RATCHET_STATUS_OK);
  assert_false(last->coalesced);
  assert_int_equal(last->attempts, 1);
  assert_string_equal(last->output, "3");
  assert_true(last->first_dispatch_ns - last->submitted_ns >= pd.window_ns);
  /* ... and the ones it replaced share its outcome. */
  for (int i = 0; i < 2; i++) {
    const ot_res *r = must_result(t, ids[i]);
    expect_status(t, ids[i], RATCHET_STATUS_OK);
    assert_true(r->coalesced);
    assert_int_equal(r->related_id, ids[2]);
    assert_int_equal(r->attempts, 0);
    assert_string_equal(r->output, "3");
    assert_int_equal(ot_count_events(t, RATCHET_EV_DISPATCHED, ids[i]), 0);
  }
  assert_int_equal(ot_count_events(t, RATCHET_EV_DISPATCHED, ids[2]), 1);
  /* A new burst after that starts a new window. */
  ratchet_task_spec s = ot_spec(t, "echo", "4");
  s.dedupe = &pd;
  uint64_t again = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, again);
  assert_false(must_result(t, again)->coalesced);
  assert_int_equal(must_result(t, again)->attempts, 1);
  ot_close(t);
}

/* ---- 6. poison pill and dead letter ----------------------------------- */

static unsigned dl_calls, dl_poison;
static char dl_payload[32];

static void on_dead_letter(ratchet_orch *o, const ratchet_orch_result *r,
                           const char *payload, size_t len, void *data) {
  (void)o;
  ot *t = data;
  assert_true(pthread_equal(pthread_self(), t->loop_thread));
  dl_calls++;
  if (r->status == RATCHET_STATUS_POISON) {
    dl_poison++;
    snprintf(dl_payload, sizeof dl_payload, "%.*s", (int)len, payload);
  }
}

static void test_poison_dead_letter(void **state) {
  (void)state;
  char dir[64], path[128];
  make_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/dead.jsonl", dir);
  dl_calls = dl_poison = 0;
  ratchet_orch_options opt = RATCHET_ORCH_OPTIONS_INIT;
  opt.dead_letter_path = path;
  opt.on_dead_letter = on_dead_letter;
  ot *t = ot_new(NULL, &opt);
  ratchet_policy_retry retry = constant_retry(2, OT_MS(1));

  ratchet_task_spec s = ot_spec(t, "die", "pill");
  s.retry = &retry;
  uint64_t pill = ot_submit(t, &s);
  s = ot_spec(t, "fail", "f");
  s.retry = &retry;
  uint64_t failed = ot_submit(t, &s);
  s = ot_spec(t, "echo", "fine");
  uint64_t fine = ot_submit(t, &s);
  /* Not UTF-8: written as base64. */
  static const unsigned char binary[] = {0xff, 0x00, 0x01};
  s = ot_spec(t, "fail", NULL);
  s.payload = binary;
  s.payload_len = sizeof binary;
  uint64_t bin = ot_submit(t, &s);
  s = ot_spec(t, "echo", "later");
  s.delay_ns = OT_MS(60000);
  uint64_t cancelled = ot_submit(t, &s);
  assert_int_equal(ratchet_orch_cancel(t->o, cancelled), 0);
  ot_run_until(t, ot_p_done, 5);

  /* The pill killed its worker poison_threshold times: POISON, however
   * many retries its policy allowed (lost attempts are not failures). */
  const ot_res *r = must_result(t, pill);
  expect_status(t, pill, RATCHET_STATUS_POISON);
  assert_int_equal(r->crashes, 3);
  assert_int_equal(r->attempts, 3);
  assert_non_null(strstr(r->error, "poison"));
  assert_int_equal(ot_count_events(t, RATCHET_EV_LOST, pill), 3);
  expect_status(t, failed, RATCHET_STATUS_FAILED);
  expect_status(t, fine, RATCHET_STATUS_OK);
  expect_status(t, cancelled, RATCHET_STATUS_CANCELLED);
  expect_status(t, bin, RATCHET_STATUS_FAILED);
  /* Final failures went to the callback and the file, nothing else. */
  assert_int_equal(dl_calls, 3);
  assert_int_equal(dl_poison, 1);
  assert_string_equal(dl_payload, "pill");
  assert_int_equal(ot_count_events(t, RATCHET_EV_DEAD_LETTER, 0), 3);
  assert_int_equal(ot_count_events(t, RATCHET_EV_DEAD_LETTER, pill), 1);
  assert_int_equal(ot_count_events(t, RATCHET_EV_DEAD_LETTER, failed), 1);
  ot_close(t);

  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[4096];
  unsigned lines = 0;
  bool saw_pill = false, saw_failed = false, saw_bin = false;
  while (fgets(line, sizeof line, f) != NULL) {
    lines++;
    json_error_t err;
    json_t *j = json_loads(line, 0, &err);
    if (j == NULL)
      print_error("dead letter line %u: %s\n", lines, err.text);
    assert_non_null(j);
    json_int_t id = json_integer_value(json_object_get(j, "id"));
    const char *kind = json_string_value(json_object_get(j, "kind"));
    const char *status = json_string_value(json_object_get(j, "status"));
    const char *reason = json_string_value(json_object_get(j, "reason"));
    const char *payload = json_string_value(json_object_get(j, "payload"));
    json_int_t attempts = json_integer_value(json_object_get(j, "attempts"));
    assert_non_null(kind);
    assert_non_null(status);
    assert_non_null(reason);
    if ((uint64_t)id == bin) {
      saw_bin = true;
      assert_null(payload);
      assert_string_equal(
          json_string_value(json_object_get(j, "payload_base64")), "/wAB");
      assert_string_equal(status, "failed");
      json_decref(j);
      continue;
    }
    assert_non_null(payload);
    if ((uint64_t)id == pill) {
      saw_pill = true;
      assert_string_equal(kind, "die");
      assert_string_equal(status, "poison");
      assert_int_equal(attempts, 3);
      assert_int_equal(json_integer_value(json_object_get(j, "crashes")), 3);
      assert_non_null(strstr(reason, "poison"));
      assert_string_equal(payload, "pill");
    } else {
      assert_int_equal((uint64_t)id, failed);
      saw_failed = true;
      assert_string_equal(kind, "fail");
      assert_string_equal(status, "failed");
      assert_int_equal(attempts, 2);
      assert_string_equal(reason, "always fails (attempt 2)");
      assert_string_equal(payload, "f");
    }
    json_decref(j);
  }
  fclose(f);
  assert_int_equal(lines, 3);
  assert_true(saw_pill && saw_failed && saw_bin);
  const char *files[] = {"dead.jsonl", NULL};
  remove_tmpdir(dir, files);
}

/* ---- 7. expiry and deadline --------------------------------------------- */

static void test_expiry(void **state) {
  (void)state;
  ot *t = serial_harness();
  /* The only worker is busy until the blocker is cancelled. */
  ratchet_task_spec s = ot_spec(t, "sleep", "600000");
  uint64_t blocker = ot_submit(t, &s);
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_DISPATCHED, blocker));

  s = ot_spec(t, "echo", "x");
  s.expire_ns = OT_MS(100);
  uint64_t x = ot_submit(t, &s);
  s = ot_spec(t, "echo", "y");
  s.deadline_ns = OT_MS(150);
  uint64_t y = ot_submit(t, &s);
  s = ot_spec(t, "echo", "z");
  s.expire_ns = OT_MS(600000);
  uint64_t z = ot_submit(t, &s);
  /* They end on time although no worker frees up. */
  ot_run_until(t, ot_p_task_done, x);
  ot_run_until(t, ot_p_task_done, y);
  assert_null(ot_result(t, blocker));
  const uint64_t ids[] = {x, y};
  const uint64_t limits[] = {OT_MS(100), OT_MS(150)};
  for (int i = 0; i < 2; i++) {
    const ot_res *r = must_result(t, ids[i]);
    expect_status(t, ids[i], RATCHET_STATUS_EXPIRED);
    assert_int_equal(r->attempts, 0);
    assert_non_null(strstr(r->error, "expired"));
    assert_true(r->finished_ns - r->submitted_ns >= limits[i]);
    assert_int_equal(ot_count_events(t, RATCHET_EV_DISPATCHED, ids[i]), 0);
    assert_int_equal(ot_count_events(t, RATCHET_EV_EXPIRED, ids[i]), 1);
  }
  assert_null(ot_result(t, z));
  assert_int_equal(ratchet_orch_cancel(t->o, blocker), 0);
  ot_run_until(t, ot_p_task_done, z);
  expect_status(t, blocker, RATCHET_STATUS_CANCELLED);
  expect_status(t, z, RATCHET_STATUS_OK);

  /* A deadline also bounds the attempt: the worker sees it pass, the task
   * ends TIMEOUT, and no retry starts after it. */
  ratchet_policy_retry retry = constant_retry(3, OT_MS(1));
  s = ot_spec(t, "sleep", "600000");
  s.deadline_ns = OT_MS(200);
  s.retry = &retry;
  uint64_t w = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, w);
  const ot_res *r = must_result(t, w);
  expect_status(t, w, RATCHET_STATUS_TIMEOUT);
  assert_int_equal(r->attempts, 1);
  assert_string_equal(r->output, "saw-cancel");
  /* The worker's deadline is a Unix time in whole milliseconds. */
  assert_true(r->finished_ns - r->submitted_ns >= OT_MS(200) - OT_MS(1));
  ot_close(t);
}

/* ---- 8. cancel in every state ------------------------------------------- */

static void test_cancel(void **state) {
  (void)state;
  ot *t = serial_harness();
  ratchet_task_spec s = ot_spec(t, "sleep", "600000");
  uint64_t flight = ot_submit(t, &s);
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_TASK_LOG, flight));

  /* Queued behind it. */
  s = ot_spec(t, "echo", "queued");
  uint64_t queued = ot_submit(t, &s);
  assert_int_equal(ratchet_orch_cancel(t->o, queued), 0);
  /* It has ended (its callback comes from the loop). */
  assert_int_equal(ratchet_orch_cancel(t->o, queued), -ENOENT);
  assert_null(ot_result(t, queued));
  /* Delayed. */
  s = ot_spec(t, "echo", "delayed");
  s.delay_ns = OT_MS(600000);
  uint64_t delayed = ot_submit(t, &s);
  assert_int_equal(ratchet_orch_cancel(t->o, delayed), 0);
  /* Unknown. */
  assert_int_equal(ratchet_orch_cancel(t->o, 987654321), -ENOENT);
  assert_int_equal(ratchet_orch_cancel(t->o, 0), -ENOENT);
  /* In flight (its handler runs: it logged): the worker sees the request;
   * no retry follows. */
  assert_int_equal(ratchet_orch_cancel(t->o, flight), 0);
  assert_int_equal(ratchet_orch_cancel(t->o, flight), -EALREADY);
  ot_run_until(t, ot_p_done, 3);
  expect_status(t, queued, RATCHET_STATUS_CANCELLED);
  expect_status(t, delayed, RATCHET_STATUS_CANCELLED);
  expect_status(t, flight, RATCHET_STATUS_CANCELLED);
  assert_int_equal(must_result(t, queued)->attempts, 0);
  assert_int_equal(must_result(t, delayed)->attempts, 0);
  assert_int_equal(must_result(t, flight)->attempts, 1);
  assert_string_equal(must_result(t, flight)->output, "saw-cancel");
  assert_int_equal(ot_count_events(t, RATCHET_EV_CANCELLED, queued), 1);
  assert_int_equal(ot_count_events(t, RATCHET_EV_CANCELLED, delayed), 1);
  assert_int_equal(ratchet_orch_cancel(t->o, flight), -ENOENT);

  /* Deferred by a rate limit (one permit a minute: the second waits). */
  ratchet_ratelimit_options ro = {RATCHET_RATELIMIT_TOKEN_BUCKET, 1,
                                  UINT64_C(60000000000), 1};
  assert_int_equal(ratchet_orch_rate_limit(t->o, "slow", &ro), 0);
  s = ot_spec(t, "echo", "permit");
  s.rate_group = "slow";
  uint64_t permitted = ot_submit(t, &s);
  s = ot_spec(t, "echo", "deferred");
  s.rate_group = "slow";
  uint64_t deferred = ot_submit(t, &s);
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_DEFERRED, deferred));
  assert_int_equal(ratchet_orch_cancel(t->o, deferred), 0);
  ot_run_until(t, ot_p_task_done, deferred);
  ot_run_until(t, ot_p_task_done, permitted);
  expect_status(t, permitted, RATCHET_STATUS_OK);
  expect_status(t, deferred, RATCHET_STATUS_CANCELLED);
  assert_int_equal(must_result(t, deferred)->attempts, 0);

  /* Waiting for a retry. */
  ratchet_policy_retry slow = constant_retry(3, OT_MS(600000));
  s = ot_spec(t, "fail", "r");
  s.retry = &slow;
  uint64_t retrying = ot_submit(t, &s);
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_RETRY, retrying));
  assert_int_equal(ratchet_orch_cancel(t->o, retrying), 0);
  ot_run_until(t, ot_p_task_done, retrying);
  expect_status(t, retrying, RATCHET_STATUS_CANCELLED);
  assert_int_equal(must_result(t, retrying)->attempts, 1);

  /* A follower: it leaves, the leader runs on. */
  ratchet_policy_dedupe pd = {.key = "c1",
                              .key_len = 2,
                              .window_ns = OT_MS(600000),
                              .mode = RATCHET_DEDUPE_LEADING};
  s = ot_spec(t, "sleep", "200");
  s.dedupe = &pd;
  uint64_t leader = ot_submit(t, &s);
  s = ot_spec(t, "echo", "f");
  s.dedupe = &pd;
  uint64_t follower = ot_submit(t, &s);
  assert_int_equal(ratchet_orch_cancel(t->o, follower), 0);
  ot_run_until(t, ot_p_task_done, leader);
  ot_run_until(t, ot_p_task_done, follower);
  expect_status(t, follower, RATCHET_STATUS_CANCELLED);
  assert_int_equal(must_result(t, follower)->attempts, 0);
  assert_true(must_result(t, follower)->coalesced);
  assert_int_equal(must_result(t, follower)->related_id, leader);
  expect_status(t, leader, RATCHET_STATUS_OK);
  assert_string_equal(must_result(t, leader)->output, "200");

  /* A leader cancelled in flight: its follower takes its place and runs. */
  ratchet_policy_dedupe pd2 = pd;
  pd2.key = "c2";
  s = ot_spec(t, "sleep", "600000");
  s.dedupe = &pd2;
  uint64_t leader2 = ot_submit(t, &s);
  s = ot_spec(t, "echo", "promoted");
  s.dedupe = &pd2;
  uint64_t follower2 = ot_submit(t, &s);
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_TASK_LOG, leader2));
  assert_int_equal(ratchet_orch_cancel(t->o, leader2), 0);
  ot_run_until(t, ot_p_task_done, follower2);
  expect_status(t, leader2, RATCHET_STATUS_CANCELLED);
  const ot_res *r = must_result(t, follower2);
  expect_status(t, follower2, RATCHET_STATUS_OK);
  assert_int_equal(r->attempts, 1);
  assert_false(r->coalesced);
  assert_string_equal(r->output, "promoted");

  /* A queued leader cancelled: the same. */
  s = ot_spec(t, "sleep", "600000");
  uint64_t blocker = ot_submit(t, &s);
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_DISPATCHED, blocker));
  ratchet_policy_dedupe pd3 = pd;
  pd3.key = "c3";
  s = ot_spec(t, "echo", "l3");
  s.dedupe = &pd3;
  uint64_t leader3 = ot_submit(t, &s);
  s = ot_spec(t, "echo", "f3");
  s.dedupe = &pd3;
  uint64_t follower3 = ot_submit(t, &s);
  assert_int_equal(ratchet_orch_cancel(t->o, leader3), 0);
  assert_int_equal(ratchet_orch_cancel(t->o, blocker), 0);
  ot_run_until(t, ot_p_task_done, follower3);
  expect_status(t, leader3, RATCHET_STATUS_CANCELLED);
  expect_status(t, follower3, RATCHET_STATUS_OK);
  assert_string_equal(must_result(t, follower3)->output, "f3");
  ot_close(t);
}

/* ---- 9. priority, pin, affinity -------------------------------------------
 */

static void test_priority(void **state) {
  (void)state;
  ot *t = serial_harness();
  ratchet_task_spec s = ot_spec(t, "sleep", "50");
  uint64_t gate = ot_submit(t, &s);
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_DISPATCHED, gate));
  /* Everything below waits behind the gate, then runs by priority, in
   * submission order within a level. */
  static const int prio[] = {0, 5, -3, 5, 0, 7, -8, 0, 7, -3};
  enum { N = sizeof prio / sizeof prio[0] };
  uint64_t ids[N];
  for (int i = 0; i < N; i++) {
    char p[8];
    snprintf(p, sizeof p, "p%d", i);
    s = ot_spec(t, "echo", p);
    s.priority = prio[i];
    ids[i] = ot_submit(t, &s);
  }
  ot_run_until(t, ot_p_done, N + 1);
  int expect[N];
  for (int i = 0; i < N; i++)
    expect[i] = i;
  for (int i = 1; i < N; i++)
    for (int j = i; j > 0 && prio[expect[j]] > prio[expect[j - 1]]; j--) {
      int x = expect[j];
      expect[j] = expect[j - 1];
      expect[j - 1] = x;
    }
  for (int k = 0; k < N; k++) {
    const ot_res *r = must_result(t, ids[expect[k]]);
    expect_status(t, ids[expect[k]], RATCHET_STATUS_OK);
    assert_int_equal(r->order, must_result(t, gate)->order + 1 + (unsigned)k);
  }
  ot_close(t);
}

static int output_pid(const ot *t, uint64_t id) {
  const ot_res *r = must_result(t, id);
  expect_status(t, id, RATCHET_STATUS_OK);
  return atoi(r->output);
}

static void test_pin_affinity(void **state) {
  (void)state;
  ot_options oo = OT_OPTIONS_INIT;
  oo.size = 3;
  ot *t = ot_new(&oo, NULL);
  enum { N = 6 };
  uint64_t ids[N];
  /* Pinned: only that worker. */
  for (int i = 0; i < N; i++) {
    ratchet_task_spec s = ot_spec(t, "pid", "");
    s.pin_pool = 0;
    s.pin_worker = 2;
    ids[i] = ot_submit(t, &s);
  }
  ot_run_until(t, ot_p_done, N);
  int pin_pid = ot_worker_pid(t, 2);
  for (int i = 0; i < N; i++) {
    assert_int_equal(must_result(t, ids[i])->worker, 2);
    assert_int_equal(must_result(t, ids[i])->pool, 0);
    assert_int_equal(output_pid(t, ids[i]), pin_pid);
  }
  ratchet_task_spec bad = ot_spec(t, "pid", "");
  bad.pin_pool = 0;
  bad.pin_worker = 3;
  assert_int_equal(ratchet_orch_submit(t->o, &bad, NULL), -EINVAL);
  assert_non_null(strstr(ratchet_orch_last_error(t->o), "pin_worker"));

  /* Affinity: one key, one worker, while it lives. */
  uint64_t a[N], b[N];
  for (int i = 0; i < N; i++) {
    ratchet_task_spec s = ot_spec(t, "pid", "");
    s.affinity_key = "a";
    s.affinity_len = 1;
    a[i] = ot_submit(t, &s);
    s.affinity_key = "b";
    b[i] = ot_submit(t, &s);
  }
  unsigned before = t->n_done;
  ot_run_until(t, ot_p_done, before + 2 * N);
  int pid_a = output_pid(t, a[0]), pid_b = output_pid(t, b[0]);
  int32_t worker_a = must_result(t, a[0])->worker;
  for (int i = 1; i < N; i++) {
    assert_int_equal(output_pid(t, a[i]), pid_a);
    assert_int_equal(must_result(t, a[i])->worker, worker_a);
    assert_int_equal(output_pid(t, b[i]), pid_b);
  }
  /* Tasks waiting for a bound worker that dies are not stranded: the one
   * it was running is dispatched again (at least once), and the key binds
   * anew wherever that lands; the others follow it there. */
  uint64_t held[4];
  for (int i = 0; i < 4; i++) {
    ratchet_task_spec s = ot_spec(t, "sleep", i == 0 ? "600000" : "1");
    s.affinity_key = "c";
    s.affinity_len = 1;
    held[i] = ot_submit(t, &s);
  }
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_TASK_LOG, held[0]));
  const ot_ev *hd = ot_find_event(t, RATCHET_EV_DISPATCHED, held[0], 0);
  int held_pid = ot_worker_pid(t, (uint32_t)hd->worker);
  assert_true(held_pid > 0);
  assert_int_equal(kill(held_pid, SIGKILL), 0);
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_LOST, held[0]));
  assert_null(ot_result(t, held[0]));
  assert_int_equal(ratchet_orch_cancel(t->o, held[0]), 0);
  ot_run_until(t, ot_p_task_done, held[0]);
  expect_status(t, held[0], RATCHET_STATUS_CANCELLED);
  assert_int_equal(must_result(t, held[0])->crashes, 1);
  int32_t held_worker = -1;
  for (int i = 1; i < 4; i++) {
    ot_run_until(t, ot_p_task_done, held[i]);
    expect_status(t, held[i], RATCHET_STATUS_OK);
    if (held_worker < 0)
      held_worker = must_result(t, held[i])->worker;
    assert_int_equal(must_result(t, held[i])->worker, held_worker);
  }

  /* The worker dies: the key binds anew, to a live process. */
  unsigned exited = t->n_exited;
  assert_int_equal(kill(pid_a, SIGKILL), 0);
  while (t->n_exited == exited)
    ot_sleep_ms(t, 1);
  for (int i = 0; i < N; i++) {
    ratchet_task_spec s = ot_spec(t, "pid", "");
    s.affinity_key = "a";
    s.affinity_len = 1;
    a[i] = ot_submit(t, &s);
  }
  before = t->n_done;
  ot_run_until(t, ot_p_done, before + N);
  int pid_a2 = output_pid(t, a[0]);
  assert_int_not_equal(pid_a2, pid_a);
  for (int i = 1; i < N; i++)
    assert_int_equal(output_pid(t, a[i]), pid_a2);
  ot_close(t);
}

/* A task whose affinity binding appears while it sits in the FIFO moves to
 * its worker's wait list during a dispatch pass; if that worker is idle it
 * must run now, not when some other task ends. Here the only other task
 * sleeps 20 s: the bound task must end long before it. (A CI run under
 * valgrind once hung on this: the FIFO pass moved the task after the
 * pinned pass had looked, and nothing woke the idle worker again.) */
static void test_affinity_wakes_idle_worker(void **state) {
  (void)state;
  ot_options oo = OT_OPTIONS_INIT;
  oo.size = 2;
  ot *t = ot_new(&oo, NULL);
  ratchet_task_spec sl = ot_spec(t, "sleep", "20000");
  uint64_t sleeper = ot_submit(t, &sl);
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_TASK_LOG, sleeper));
  /* One worker left. Both bound tasks are queued before either runs: the
   * first takes the free worker and binds the key to it, the second stays
   * in the FIFO (no room anywhere) until the first ends. */
  ratchet_task_spec s = ot_spec(t, "pid", "");
  s.affinity_key = "k";
  s.affinity_len = 1;
  uint64_t first = ot_submit(t, &s);
  uint64_t second = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, second);
  expect_status(t, first, RATCHET_STATUS_OK);
  expect_status(t, second, RATCHET_STATUS_OK);
  assert_int_equal(must_result(t, second)->worker,
                   must_result(t, first)->worker);
  assert_null(ot_result(t, sleeper)); /* still sleeping: nothing else woke */
  assert_int_equal(ratchet_orch_cancel(t->o, sleeper), 0);
  ot_run_until(t, ot_p_task_done, sleeper);
  ot_close(t);
}

/* ---- 10. produces ---------------------------------------------------------
 */

static bool drained;

static void on_drained(ratchet_orch *o, void *arg) {
  (void)o, (void)arg;
  drained = true;
}

static bool p_drained(ot *t, uintptr_t arg) {
  (void)t, (void)arg;
  return drained;
}

static void test_produces(void **state) {
  (void)state;
  ot *t = ot_new(NULL, NULL);
  ratchet_policy_produces pp = RATCHET_POLICY_PRODUCES_INIT;
  pp.on_child = ot_on_done;
  pp.child_data = t;
  ratchet_task_spec s = ot_spec(t, "produce", "3");
  s.produces = &pp;
  uint64_t parent = ot_submit(t, &s);
  ratchet_policy_produces two = pp;
  two.max_children = 2;
  s = ot_spec(t, "produce", "5");
  s.produces = &two;
  uint64_t capped = ot_submit(t, &s);
  /* Without the policy, children are ignored. */
  s = ot_spec(t, "produce", "4");
  uint64_t plain = ot_submit(t, &s);
  drained = false;
  assert_int_equal(ratchet_orch_drain(t->o, on_drained, NULL), 0);
  assert_int_equal(ratchet_orch_drain(t->o, on_drained, NULL), -EBUSY);
  ot_run_until(t, p_drained, 0);
  expect_status(t, parent, RATCHET_STATUS_OK);
  expect_status(t, capped, RATCHET_STATUS_OK);
  expect_status(t, plain, RATCHET_STATUS_OK);
  unsigned of_parent = 0, of_capped = 0, of_plain = 0, seen = 0;
  for (size_t id = 0; id < t->cap_res; id++) {
    const ot_res *r = ot_result(t, id);
    if (r == NULL || r->submitted)
      continue;
    seen++;
    assert_string_equal(r->kind, "echo");
    assert_int_equal(r->status, RATCHET_STATUS_OK);
    assert_int_equal(r->attempts, 1);
    assert_false(r->coalesced);
    assert_int_equal(strncmp(r->output, "child-", 6), 0);
    of_parent += r->related_id == parent;
    of_capped += r->related_id == capped;
    of_plain += r->related_id == plain;
  }
  assert_int_equal(of_parent, 3);
  assert_int_equal(of_capped, 2);
  assert_int_equal(of_plain, 0);
  assert_int_equal(seen, 5);
  assert_int_equal(t->n_done, 8);
  ot_close(t);
}

/* orch.h, produces: beyond max_children, children are dropped: each is a
 * REJECTED event of the parent, their number is in its error text, and its
 * status stays OK. */
static void test_produces_dropped_counted(void **state) {
  (void)state;
  ot *t = ot_new(NULL, NULL);
  ratchet_policy_produces two = RATCHET_POLICY_PRODUCES_INIT;
  two.max_children = 2;
  two.on_child = ot_on_done;
  two.child_data = t;
  ratchet_task_spec s = ot_spec(t, "produce", "5");
  s.produces = &two;
  uint64_t parent = ot_submit(t, &s);
  drained = false;
  assert_int_equal(ratchet_orch_drain(t->o, on_drained, NULL), 0);
  ot_run_until(t, p_drained, 0);
  expect_status(t, parent, RATCHET_STATUS_OK);
  assert_int_equal(t->n_done, 3);
  const ot_res *r = must_result(t, parent);
  bool counted = strstr(r->error, "3 child tasks dropped") != NULL;
  if (!counted)
    print_error("parent's error: \"%s\"\n", r->error);
  unsigned rejected = ot_count_events(t, RATCHET_EV_REJECTED, parent);
  ot_close(t);
  assert_true(counted);
  assert_int_equal(rejected, 3);
}

/* ---- 11. shutdown ---------------------------------------------------------
 */

static void test_shutdown(void **state) {
  (void)state;
  ot_options oo = OT_OPTIONS_INIT;
  /* The hang is stopped 2 s + 0.2 s after close. */
  oo.close_grace_ms = 2000;
  oo.kill_grace_ms = 200;
  ot *t = ot_new(&oo, NULL);
  ratchet_policy_retry slow = constant_retry(3, OT_MS(600000));
  ratchet_task_spec s = ot_spec(t, "fail", "r");
  s.retry = &slow;
  uint64_t retrying = ot_submit(t, &s);
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_RETRY, retrying));
  /* Both workers busy: one finishes within the close grace, one never. */
  s = ot_spec(t, "sleep", "100");
  uint64_t finishes = ot_submit(t, &s);
  s = ot_spec(t, "hang", "");
  uint64_t hangs = ot_submit(t, &s);
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_TASK_LOG, finishes));
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_TASK_LOG, hangs));
  uint64_t queued[3], delayed[2];
  for (int i = 0; i < 3; i++) {
    s = ot_spec(t, "echo", "q");
    queued[i] = ot_submit(t, &s);
  }
  for (int i = 0; i < 2; i++) {
    s = ot_spec(t, "echo", "d");
    s.delay_ns = OT_MS(600000);
    delayed[i] = ot_submit(t, &s);
  }
  ot_begin_close(t);
  /* Closing refuses new work. */
  s = ot_spec(t, "echo", "late");
  assert_int_equal(ratchet_orch_submit(t->o, &s, NULL), -ESHUTDOWN);
  assert_int_equal(ratchet_orch_submit_async(t->o, &s, NULL), -ESHUTDOWN);
  ot_run_until(t, ot_p_closed, 0);
  expect_status(t, finishes, RATCHET_STATUS_OK);
  assert_string_equal(must_result(t, finishes)->output, "100");
  expect_status(t, hangs, RATCHET_STATUS_SHUTDOWN);
  assert_int_equal(must_result(t, hangs)->attempts, 1);
  for (int i = 0; i < 3; i++) {
    expect_status(t, queued[i], RATCHET_STATUS_SHUTDOWN);
    assert_int_equal(must_result(t, queued[i])->attempts, 0);
  }
  for (int i = 0; i < 2; i++)
    expect_status(t, delayed[i], RATCHET_STATUS_SHUTDOWN);
  const ot_res *r = must_result(t, retrying);
  expect_status(t, retrying, RATCHET_STATUS_SHUTDOWN);
  assert_int_equal(r->attempts, 1);
  /* The last failure is kept in the reason. */
  assert_non_null(strstr(r->error, "always fails (attempt 1)"));
  ot_close(t);
}

/* ---- 12. bounded queue ----------------------------------------------------
 */

static unsigned room_calls, room_waiting_ok;

static void on_room(ratchet_orch *o, void *data) {
  ot *t = data;
  room_calls++;
  ratchet_stats *st;
  assert_int_equal(ratchet_orch_stats(o, &st), 0);
  room_waiting_ok += st->queued + st->delayed <= 2;
  ratchet_stats_free(st);
  assert_true(pthread_equal(pthread_self(), t->loop_thread));
}

static bool p_room(ot *t, uintptr_t n) {
  (void)t;
  return room_calls >= n;
}

static void test_bounded_queue(void **state) {
  (void)state;
  room_calls = room_waiting_ok = 0;
  ratchet_orch_options opt = RATCHET_ORCH_OPTIONS_INIT;
  opt.max_queued = 4;
  opt.on_room = on_room;
  ot_options oo = OT_OPTIONS_INIT;
  oo.start = false;
  ot *t = ot_new(&oo, &opt);
  /* Before start, tasks wait; the fifth finds the queue full. */
  for (int i = 0; i < 4; i++) {
    ratchet_task_spec s = ot_spec(t, "sleep", "20");
    ot_submit(t, &s);
  }
  ratchet_task_spec s = ot_spec(t, "echo", "full");
  assert_int_equal(ratchet_orch_submit(t->o, &s, NULL), -EAGAIN);
  assert_non_null(strstr(ratchet_orch_last_error(t->o), "full"));
  assert_int_equal(room_calls, 0);
  ot_start(t, 2);
  ot_run_until(t, p_room, 1);
  assert_int_equal(room_calls, 1);
  assert_int_equal(room_waiting_ok, 1);
  uint64_t more = ot_submit(t, &s);
  drained = false;
  assert_int_equal(ratchet_orch_drain(t->o, on_drained, NULL), 0);
  ot_run_until(t, p_drained, 0);
  assert_int_equal(t->n_done, 5);
  expect_status(t, more, RATCHET_STATUS_OK);
  /* on_room fires once per refusal, not on every later drain. */
  assert_int_equal(room_calls, 1);
  /* Nothing left: the drain callback comes on the next turn. */
  drained = false;
  assert_int_equal(ratchet_orch_drain(t->o, on_drained, NULL), 0);
  assert_false(drained);
  ot_run_until(t, p_drained, 0);
  ot_close(t);
}

/* A task handed over by submit_async that the loop cannot accept (the queue
 * is full) still completes once, LOST with the reason; closing a pool that
 * never started ends what waits for it SHUTDOWN. */
static void test_async_refused_and_unstarted_close(void **state) {
  (void)state;
  ratchet_orch_options opt = RATCHET_ORCH_OPTIONS_INIT;
  opt.max_queued = 2;
  ot_options oo = OT_OPTIONS_INIT;
  oo.start = false;
  ot *t = ot_new(&oo, &opt);
  uint64_t ids[5];
  for (int i = 0; i < 5; i++) {
    ratchet_task_spec s = ot_spec(t, "echo", "async");
    assert_int_equal(ratchet_orch_submit_async(t->o, &s, &ids[i]), 0);
    /* Not yet the loop's: nothing to cancel. */
    assert_int_equal(ratchet_orch_cancel(t->o, ids[i]), -ENOENT);
    ot_mark_submitted(t, ids[i]);
  }
  ot_run_until(t, ot_p_done, 3);
  for (int i = 0; i < 5; i++) {
    const ot_res *r = ot_result(t, ids[i]);
    if (i < 2) {
      assert_null(r);
      continue;
    }
    assert_non_null(r);
    assert_int_equal(r->status, RATCHET_STATUS_LOST);
    assert_non_null(strstr(r->error, "full"));
    assert_int_equal(r->attempts, 0);
  }
  /* The two accepted ones wait for a start that never comes. */
  ot_begin_close(t);
  ot_run_until(t, ot_p_closed, 0);
  for (int i = 0; i < 2; i++) {
    const ot_res *r = ot_result(t, ids[i]);
    assert_non_null(r);
    assert_int_equal(r->status, RATCHET_STATUS_SHUTDOWN);
  }
  ot_close(t);
}

/* ---- 13. submit_async and stats from other threads --------------------- */

typedef struct async_ctx {
  ot *t;
  unsigned n;
  uint64_t *ids;      /* written by the submitter, read after join */
  unsigned *calls;    /* per task index; loop thread only */
  uint64_t *ids_done; /* per task index; loop thread only */
  unsigned done, wrong;
  atomic_bool stop;
  atomic_uint snapshots;
  atomic_uint snapshot_errors;
  int submit_errors;
} async_ctx;

static void async_done(ratchet_orch *o, const ratchet_orch_result *r,
                       void *data) {
  (void)o;
  async_ctx *c = data;
  if (!pthread_equal(pthread_self(), c->t->loop_thread))
    c->t->off_thread++;
  unsigned i = 0;
  for (size_t k = 0; k < r->output_len; k++)
    i = i * 10 + (unsigned)(((const char *)r->output)[k] - '0');
  if (r->status != RATCHET_STATUS_OK || i >= c->n) {
    if (c->wrong == 0)
      print_error("task %u: %s: %s\n", i, ratchet_status_name(r->status),
                  r->error);
    c->wrong++;
    return;
  }
  c->calls[i]++;
  c->ids_done[i] = r->id;
  c->done++;
}

static void *submitter(void *arg) {
  async_ctx *c = arg;
  for (unsigned i = 0; i < c->n; i++) {
    char p[16];
    snprintf(p, sizeof p, "%u", i);
    ratchet_task_spec s = RATCHET_TASK_SPEC_INIT;
    s.kind = "echo";
    s.payload = p;
    s.payload_len = strlen(p);
    s.on_done = async_done;
    s.data = c;
    if (ratchet_orch_submit_async(c->t->o, &s, &c->ids[i]) != 0)
      c->submit_errors++;
  }
  return NULL;
}

static void *stats_reader(void *arg) {
  async_ctx *c = arg;
  uint64_t last = 0;
  while (!atomic_load(&c->stop)) {
    ratchet_stats *st;
    if (ratchet_orch_stats(c->t->o, &st) != 0) {
      atomic_fetch_add(&c->snapshot_errors, 1);
      continue;
    }
    uint64_t sub = st->total.counters[RATCHET_COUNT_SUBMITTED];
    if (sub < last)
      atomic_fetch_add(&c->snapshot_errors, 1);
    last = sub;
    ratchet_stats_free(st);
    atomic_fetch_add(&c->snapshots, 1);
    usleep(500);
  }
  return NULL;
}

static bool p_async_done(ot *t, uintptr_t arg) {
  (void)t;
  const async_ctx *c = (const async_ctx *)arg;
  return c->done + c->wrong >= c->n;
}

static async_ctx *async_ctx_new(ot *t, unsigned n) {
  async_ctx *c = calloc(1, sizeof *c);
  assert_non_null(c);
  c->t = t;
  c->n = n;
  c->ids = calloc(n, sizeof *c->ids);
  c->calls = calloc(n, sizeof *c->calls);
  c->ids_done = calloc(n, sizeof *c->ids_done);
  assert_true(c->ids && c->calls && c->ids_done);
  atomic_init(&c->stop, false);
  atomic_init(&c->snapshots, 0);
  atomic_init(&c->snapshot_errors, 0);
  return c;
}

static void async_ctx_free(async_ctx *c) {
  free(c->ids);
  free(c->calls);
  free(c->ids_done);
  free(c);
}

static void test_submit_async(void **state) {
  (void)state;
  ot_options oo = OT_OPTIONS_INIT;
  oo.depth = 8;
  oo.record_events = false;
  ot *t = ot_new(&oo, NULL);
  async_ctx *c = async_ctx_new(t, ot_under_valgrind() ? 500 : 5000);
  ratchet_task_spec bad = RATCHET_TASK_SPEC_INIT;
  bad.kind = "echo";
  assert_int_equal(ratchet_orch_submit_async(t->o, &bad, NULL), -EINVAL);
  assert_int_equal(ratchet_orch_submit_async(t->o, NULL, NULL), -EINVAL);

  /* Another thread submits while the loop runs here: each task completes
   * once, on the loop's thread, with the id submit_async returned. */
  pthread_t sub;
  assert_int_equal(pthread_create(&sub, NULL, submitter, c), 0);
  ot_run_until(t, p_async_done, (uintptr_t)c);
  assert_int_equal(pthread_join(sub, NULL), 0);
  assert_int_equal(c->submit_errors, 0);
  assert_int_equal(c->wrong, 0);
  assert_int_equal(c->done, c->n);
  for (unsigned i = 0; i < c->n; i++) {
    assert_int_equal(c->calls[i], 1);
    assert_int_equal(c->ids_done[i], c->ids[i]);
    assert_true(c->ids[i] != 0);
  }
  ratchet_stats *st;
  assert_int_equal(ratchet_orch_stats(t->o, &st), 0);
  assert_int_equal(st->total.counters[RATCHET_COUNT_SUBMITTED], c->n);
  assert_int_equal(st->total.by_status[RATCHET_STATUS_OK].count, c->n);
  ratchet_stats_free(st);
  ot_close(t);
  async_ctx_free(c);
}

typedef struct idle_snapshot {
  ratchet_orch *o;
  int rc;
  uint64_t queued, delayed, in_flight, workers_ready, ok;
} idle_snapshot;

static void *snapshot_once(void *arg) {
  idle_snapshot *s = arg;
  ratchet_stats *st;
  s->rc = ratchet_orch_stats(s->o, &st);
  if (s->rc == 0) {
    s->queued = st->queued;
    s->delayed = st->delayed;
    s->in_flight = st->in_flight;
    s->workers_ready = st->workers_ready;
    s->ok = st->total.by_status[RATCHET_STATUS_OK].count;
    ratchet_stats_free(st);
  }
  return NULL;
}

/* ratchet_orch_stats is documented for any thread: snapshots taken from
 * another one while tasks run never go backwards (and TSan sees no race). */
static void test_stats_other_thread(void **state) {
  (void)state;
  ot_options oo = OT_OPTIONS_INIT;
  oo.depth = 8;
  oo.record_events = false;
  ot *t = ot_new(&oo, NULL);
  async_ctx *c = async_ctx_new(t, ot_under_valgrind() ? 300 : 3000);
  pthread_t reader;
  assert_int_equal(pthread_create(&reader, NULL, stats_reader, c), 0);
  for (unsigned i = 0; i < c->n; i++) {
    char p[16];
    snprintf(p, sizeof p, "%u", i);
    ratchet_task_spec s = ot_spec(t, "echo", p);
    s.on_done = async_done;
    s.data = c;
    assert_int_equal(ratchet_orch_submit(t->o, &s, &c->ids[i]), 0);
  }
  ot_run_until(t, p_async_done, (uintptr_t)c);
  atomic_store(&c->stop, true);
  assert_int_equal(pthread_join(reader, NULL), 0);
  assert_int_equal(c->done, c->n);
  assert_int_equal(c->wrong, 0);
  assert_true(atomic_load(&c->snapshots) > 0);
  assert_int_equal(atomic_load(&c->snapshot_errors), 0);
  for (unsigned i = 0; i < c->n; i++) {
    assert_int_equal(c->calls[i], 1);
    assert_int_equal(c->ids_done[i], c->ids[i]);
  }
  /* Once the loop has gone idle, another thread sees the idle gauges. */
  ot_sleep_ms(t, 20);
  pthread_t once;
  idle_snapshot snap = {t->o, -1, 0, 0, 0, 0, 0};
  assert_int_equal(pthread_create(&once, NULL, snapshot_once, &snap), 0);
  assert_int_equal(pthread_join(once, NULL), 0);
  assert_int_equal(snap.rc, 0);
  assert_int_equal(snap.queued, 0);
  assert_int_equal(snap.delayed, 0);
  assert_int_equal(snap.in_flight, 0);
  assert_int_equal(snap.workers_ready, 2);
  assert_int_equal(snap.ok, c->n);
  ot_close(t);
  async_ctx_free(c);
}

/* ---- 14. the blocking layer ------------------------------------------- */

static bool pid_alive(int pid) {
  return kill(pid, 0) == 0;
}

static void test_sync(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ot scratch;
  memset(&scratch, 0, sizeof scratch);
  ot_options oo = OT_OPTIONS_INIT;
  ratchet_sync_pool sp;
  sp.pool = ot_pool_options(&scratch, &oo);
  sp.kinds = NULL;
  ratchet_sync_options so = {RATCHET_ORCH_OPTIONS_INIT, &sp, 1};
  so.orch.max_queued = 0;
  char err[200] = "";
  ratchet_sync *s = NULL;
  assert_int_equal(ratchet_sync_new(&so, &s, err, sizeof err), -EINVAL);
  assert_null(s);
  assert_true(err[0] != '\0');
  so.orch.max_queued = 2; /* submit runs the loop when it is full */
  assert_int_equal(ratchet_sync_new(&so, &s, err, sizeof err), 0);

  ratchet_task_spec spec = RATCHET_TASK_SPEC_INIT;
  spec.kind = "echo";
  spec.payload = "hello";
  spec.payload_len = 5;
  ratchet_sync_result *r;
  assert_int_equal(ratchet_sync_run(s, &spec, &r), 0);
  assert_int_equal(r->r.status, RATCHET_STATUS_OK);
  assert_int_equal(r->r.output_len, 5);
  assert_memory_equal(r->r.output, "hello", 5);
  assert_string_equal(r->r.kind, "echo");
  ratchet_sync_result_free(r);

  /* Several at once, waited for in any order. */
  ratchet_policy_retry retry = constant_retry(3, OT_MS(1));
  const char *kinds[] = {"echo", "sleep", "flaky", "fail", "echo"};
  const char *payloads[] = {"a", "50", "1", "x", "e"};
  uint64_t ids[5];
  for (int i = 0; i < 5; i++) {
    spec.kind = kinds[i];
    spec.payload = payloads[i];
    spec.payload_len = strlen(payloads[i]);
    spec.retry = i == 2 ? &retry : NULL;
    assert_int_equal(ratchet_sync_submit(s, &spec, &ids[i]), 0);
  }
  static const int order[] = {3, 1, 4, 0, 2};
  for (int k = 0; k < 5; k++) {
    int i = order[k];
    assert_int_equal(ratchet_sync_wait(s, ids[i], &r), 0);
    assert_int_equal(r->r.id, ids[i]);
    if (i == 3) {
      assert_int_equal(r->r.status, RATCHET_STATUS_FAILED);
      assert_string_equal(r->r.error, "always fails (attempt 1)");
    } else {
      assert_int_equal(r->r.status, RATCHET_STATUS_OK);
      assert_int_equal(r->r.output_len, strlen(payloads[i]));
      assert_memory_equal(r->r.output, payloads[i], r->r.output_len);
    }
    if (i == 2)
      assert_int_equal(r->r.attempts, 2);
    ratchet_sync_result_free(r);
  }
  assert_int_equal(ratchet_sync_wait(s, ids[0], &r), -ENOENT);
  assert_int_equal(ratchet_sync_wait(s, 424242, &r), -ENOENT);
  spec.kind = "nope";
  spec.retry = NULL;
  assert_int_equal(ratchet_sync_submit(s, &spec, NULL), 0);

  int pids[2];
  for (uint32_t w = 0; w < 2; w++) {
    ratchet_pool_worker_stats ws;
    assert_int_equal(ratchet_pool_worker_stats_get(
                         ratchet_orch_pool(ratchet_sync_orch(s), 0), w, &ws),
                     0);
    pids[w] = ws.pid;
    assert_true(pids[w] > 0);
  }
  ratchet_sync_free(s);
  ratchet_sync_free(NULL);
  for (int w = 0; w < 2; w++) {
    for (int tries = 0; tries < 5000 && pid_alive(pids[w]); tries++)
      usleep(1000);
    assert_false(pid_alive(pids[w]));
  }
  assert_int_equal(tu_count_fds(), fds);
}

/* ---- 15. event sequence and the JSON-lines sink ------------------------ */

static void test_events_sequence(void **state) {
  (void)state;
  char dir[64], path[128];
  make_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/events.jsonl", dir);
  ot *t = ot_new(NULL, NULL);
  ratchet_subscription *sink, *left;
  ratchet_events *bus = ratchet_orch_events(t->o);
  assert_int_equal(ratchet_events_jsonl_open(bus, path, 0, 0, &sink), 0);
  /* A second sink, of COMPLETED events only, stays subscribed: closing the
   * orchestrator flushes and closes it. */
  char path2[140];
  snprintf(path2, sizeof path2, "%s/completed.jsonl", dir);
  assert_int_equal(
      ratchet_events_jsonl_open(
          bus, path2, RATCHET_EV_BIT(RATCHET_EV_COMPLETED), 16, &left),
      0);
  ratchet_policy_retry retry = constant_retry(3, OT_MS(10));
  ratchet_task_spec s = ot_spec(t, "flaky", "1");
  s.retry = &retry;
  uint64_t id = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, id);
  expect_status(t, id, RATCHET_STATUS_OK);

  static const ratchet_event_type want[] = {
      RATCHET_EV_SUBMITTED, RATCHET_EV_DISPATCHED, RATCHET_EV_FAILED,
      RATCHET_EV_RETRY,     RATCHET_EV_DISPATCHED, RATCHET_EV_SUCCEEDED,
      RATCHET_EV_COMPLETED};
  static const uint32_t want_attempt[] = {0, 1, 1, 1, 2, 2, 2};
  enum { NW = sizeof want / sizeof want[0] };
  unsigned n = 0;
  uint64_t last_seq = 0;
  for (size_t i = 0; i < t->n_ev; i++) {
    const ot_ev *e = &t->ev[i];
    assert_true(e->seq > last_seq);
    last_seq = e->seq;
    if (e->task_id != id)
      continue;
    assert_true(n < NW);
    assert_int_equal(e->type, want[n]);
    assert_int_equal(e->attempt, want_attempt[n]);
    assert_string_equal(e->kind, "flaky");
    if (e->type == RATCHET_EV_FAILED)
      assert_int_equal(e->status, RATCHET_STATUS_FAILED);
    if (e->type == RATCHET_EV_RETRY)
      assert_int_equal(e->delay_ns, OT_MS(10));
    if (e->type == RATCHET_EV_COMPLETED)
      assert_int_equal(e->status, RATCHET_STATUS_OK);
    n++;
  }
  assert_int_equal(n, NW);
  /* Unsubscribing delivers what the sink's ring holds and closes the
   * file. */
  ratchet_events_unsubscribe(bus, sink);
  ot_close(t);

  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[4096];
  unsigned got = 0, lines = 0;
  json_int_t last = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    lines++;
    json_error_t err;
    json_t *j = json_loads(line, 0, &err);
    assert_non_null(j);
    json_int_t seq = json_integer_value(json_object_get(j, "seq"));
    assert_true(seq > last);
    last = seq;
    assert_non_null(json_object_get(j, "time_ns"));
    assert_non_null(json_object_get(j, "wall_ms"));
    const char *type = json_string_value(json_object_get(j, "type"));
    assert_non_null(type);
    if ((uint64_t)json_integer_value(json_object_get(j, "task_id")) == id) {
      assert_true(got < NW);
      assert_string_equal(type, ratchet_event_type_name(want[got]));
      assert_string_equal(json_string_value(json_object_get(j, "kind")),
                          "flaky");
      if (want[got] == RATCHET_EV_COMPLETED)
        assert_string_equal(json_string_value(json_object_get(j, "status")),
                            "ok");
      if (want[got] == RATCHET_EV_FAILED)
        assert_string_equal(json_string_value(json_object_get(j, "status")),
                            "failed");
      got++;
    }
    json_decref(j);
  }
  fclose(f);
  assert_int_equal(got, NW);
  assert_true(lines >= NW);
  f = fopen(path2, "r");
  assert_non_null(f);
  lines = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    json_t *j = json_loads(line, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "type")),
                        "completed");
    assert_int_equal(json_integer_value(json_object_get(j, "task_id")), id);
    json_decref(j);
    lines++;
  }
  fclose(f);
  assert_int_equal(lines, 1);
  const char *files[] = {"events.jsonl", "completed.jsonl", NULL};
  remove_tmpdir(dir, files);
}

/* ---- 16. statistics -------------------------------------------------------
 */

static void check_hist(const ratchet_histogram *h, uint64_t count) {
  assert_int_equal(h->count, count);
  uint64_t sum = 0;
  for (unsigned i = 0; i < RATCHET_HIST_BUCKETS; i++)
    sum += h->buckets[i];
  assert_int_equal(sum, count);
  if (count > 0) {
    assert_true(h->min_ns <= h->max_ns);
    uint64_t q = ratchet_histogram_quantile(h, 0.5);
    assert_true(q >= h->min_ns && q <= h->max_ns);
  }
}

static void test_stats(void **state) {
  (void)state;
  ot *t = ot_new(NULL, NULL);
  ratchet_policy_retry retry = constant_retry(2, OT_MS(1));
  for (int i = 0; i < 5; i++) {
    ratchet_task_spec s = ot_spec(t, "echo", "ok");
    ot_submit(t, &s);
  }
  for (int i = 0; i < 3; i++) {
    ratchet_task_spec s = ot_spec(t, "fail", "no");
    s.retry = &retry;
    ot_submit(t, &s);
  }
  for (int i = 0; i < 2; i++) {
    ratchet_task_spec s = ot_spec(t, "status", "6");
    ot_submit(t, &s);
  }
  ratchet_task_spec s = ot_spec(t, "echo", "never");
  s.delay_ns = OT_MS(600000);
  uint64_t cancelled = ot_submit(t, &s);
  assert_int_equal(ratchet_orch_cancel(t->o, cancelled), 0);
  ot_run_until(t, ot_p_done, 11);

  ratchet_stats *st;
  assert_int_equal(ratchet_orch_stats(t->o, &st), 0);
  assert_int_equal(st->queued, 0);
  assert_int_equal(st->delayed, 0);
  assert_int_equal(st->in_flight, 0);
  assert_int_equal(st->workers_ready, 2);
  assert_null(ratchet_stats_kind(st, "nope"));
  /* Every count equals what the callbacks and events saw. */
  static const char *const kinds[] = {"echo", "fail", "status"};
  uint64_t total_by_status[RATCHET_STATUS_COUNT] = {0};
  uint64_t total_attempts = 0;
  for (int k = 0; k < 3; k++) {
    const ratchet_kind_stats *ks = ratchet_stats_kind(st, kinds[k]);
    assert_non_null(ks);
    uint64_t by_status[RATCHET_STATUS_COUNT] = {0}, ran[RATCHET_STATUS_COUNT];
    memset(ran, 0, sizeof ran);
    uint64_t submitted = 0, attempts = 0, retries = 0;
    for (size_t id = 0; id < t->cap_res; id++) {
      const ot_res *r = ot_result(t, id);
      if (r == NULL || strcmp(r->kind, kinds[k]) != 0)
        continue;
      submitted++;
      by_status[r->status]++;
      ran[r->status] += r->attempts > 0;
      attempts += ot_count_events(t, RATCHET_EV_DISPATCHED, id);
      retries += ot_count_events(t, RATCHET_EV_RETRY, id);
    }
    assert_int_equal(ks->counters[RATCHET_COUNT_SUBMITTED], submitted);
    assert_int_equal(ks->counters[RATCHET_COUNT_ATTEMPTS], attempts);
    assert_int_equal(ks->counters[RATCHET_COUNT_RETRIES], retries);
    for (int sidx = 0; sidx < RATCHET_STATUS_COUNT; sidx++) {
      const ratchet_status_stats *ss = &ks->by_status[sidx];
      assert_int_equal(ss->count, by_status[sidx]);
      check_hist(&ss->end_to_end, by_status[sidx]);
      check_hist(&ss->run, ran[sidx]);
      check_hist(&ss->queue_wait, ran[sidx]);
      total_by_status[sidx] += by_status[sidx];
    }
    total_attempts += attempts;
  }
  const ratchet_kind_stats *echo = ratchet_stats_kind(st, "echo");
  assert_int_equal(echo->by_status[RATCHET_STATUS_OK].count, 5);
  assert_int_equal(echo->by_status[RATCHET_STATUS_CANCELLED].count, 1);
  const ratchet_kind_stats *fail = ratchet_stats_kind(st, "fail");
  assert_int_equal(fail->by_status[RATCHET_STATUS_FAILED].count, 3);
  assert_int_equal(fail->counters[RATCHET_COUNT_ATTEMPTS], 6);
  assert_int_equal(fail->counters[RATCHET_COUNT_RETRIES], 3);
  for (int sidx = 0; sidx < RATCHET_STATUS_COUNT; sidx++)
    assert_int_equal(st->total.by_status[sidx].count, total_by_status[sidx]);
  assert_int_equal(st->total.counters[RATCHET_COUNT_ATTEMPTS], total_attempts);
  assert_int_equal(st->total.counters[RATCHET_COUNT_SUBMITTED], 11);

  /* A snapshot is a copy: later work does not change it. */
  s = ot_spec(t, "echo", "after");
  uint64_t after = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, after);
  assert_int_equal(echo->by_status[RATCHET_STATUS_OK].count, 5);
  ratchet_stats *st2;
  assert_int_equal(ratchet_orch_stats(t->o, &st2), 0);
  assert_int_equal(
      ratchet_stats_kind(st2, "echo")->by_status[RATCHET_STATUS_OK].count, 6);
  ratchet_stats_free(st2);
  ratchet_stats_free(st);
  ot_close(t);
}

/* ---- 17. refusals ---------------------------------------------------------
 */

static void noop_run(void *ctx, ratchet_orch *o, ratchet_orch_task *t,
                     ratchet_lifecycle at, const ratchet_attempt *a,
                     uint64_t now_ns, ratchet_decision *d) {
  (void)ctx, (void)o, (void)t, (void)at, (void)a, (void)now_ns, (void)d;
}

typedef struct bad_case {
  const char *field; /* a substring of ratchet_orch_last_error */
  void (*spoil)(ratchet_task_spec *s);
} bad_case;

static char long_kind[1100];
static ratchet_policy_retry bad_retry;
static ratchet_policy_breaker bad_breaker;
static ratchet_policy_dedupe bad_dedupe;
static ratchet_policy_produces bad_produces;
static ratchet_component bad_component;
static const char *odd_metadata[] = {"k", NULL};

static void sp_kind_null(ratchet_task_spec *s) {
  s->kind = NULL;
}
static void sp_kind_empty(ratchet_task_spec *s) {
  s->kind = "";
}
static void sp_kind_long(ratchet_task_spec *s) {
  memset(long_kind, 'k', sizeof long_kind - 1);
  s->kind = long_kind;
}
static void sp_payload_null(ratchet_task_spec *s) {
  s->payload = NULL;
  s->payload_len = 3;
}
static void sp_payload_big(ratchet_task_spec *s) {
  s->payload_len = (size_t)RATCHET_ORCH_MAX_PAYLOAD + 1;
}
static void sp_prio_high(ratchet_task_spec *s) {
  s->priority = RATCHET_PRIORITY_MAX + 1;
}
static void sp_prio_low(ratchet_task_spec *s) {
  s->priority = RATCHET_PRIORITY_MIN - 1;
}
static void sp_no_done(ratchet_task_spec *s) {
  s->on_done = NULL;
}
static void sp_pin_half(ratchet_task_spec *s) {
  s->pin_pool = 0;
}
static void sp_pin_pool(ratchet_task_spec *s) {
  s->pin_pool = 1;
  s->pin_worker = 0;
}
static void sp_pin_worker(ratchet_task_spec *s) {
  s->pin_pool = 0;
  s->pin_worker = 1;
}
static void sp_affinity(ratchet_task_spec *s) {
  s->affinity_key = "a";
  s->affinity_len = 0;
}
static void sp_rate_group(ratchet_task_spec *s) {
  s->rate_group = "";
}
static void sp_retry_attempts(ratchet_task_spec *s) {
  bad_retry = (ratchet_policy_retry)RATCHET_POLICY_RETRY_INIT;
  bad_retry.max_attempts = 0;
  s->retry = &bad_retry;
}
static void sp_retry_backoff(ratchet_task_spec *s) {
  bad_retry = (ratchet_policy_retry)RATCHET_POLICY_RETRY_INIT;
  bad_retry.backoff.initial_ns = 0;
  s->retry = &bad_retry;
}
static void sp_breaker_mode(ratchet_task_spec *s) {
  bad_breaker = (ratchet_policy_breaker)RATCHET_POLICY_BREAKER_INIT;
  bad_breaker.mode = (ratchet_breaker_mode)7;
  s->breaker = &bad_breaker;
}
static void sp_breaker_group(ratchet_task_spec *s) {
  bad_breaker = (ratchet_policy_breaker)RATCHET_POLICY_BREAKER_INIT;
  bad_breaker.group = "";
  s->breaker = &bad_breaker;
}
static void sp_dedupe_key(ratchet_task_spec *s) {
  bad_dedupe = (ratchet_policy_dedupe){NULL, 0, 1, RATCHET_DEDUPE_LEADING};
  s->dedupe = &bad_dedupe;
}
static void sp_dedupe_window(ratchet_task_spec *s) {
  bad_dedupe = (ratchet_policy_dedupe){"k", 1, 0, RATCHET_DEDUPE_LEADING};
  s->dedupe = &bad_dedupe;
}
static void sp_dedupe_mode(ratchet_task_spec *s) {
  bad_dedupe = (ratchet_policy_dedupe){"k", 1, 1, (ratchet_dedupe_mode)9};
  s->dedupe = &bad_dedupe;
}
static void sp_cache(ratchet_task_spec *s) {
  static const ratchet_policy_cache pc = RATCHET_POLICY_CACHE_INIT;
  s->cache = &pc;
}
static void sp_produces(ratchet_task_spec *s) {
  bad_produces = (ratchet_policy_produces)RATCHET_POLICY_PRODUCES_INIT;
  bad_produces.max_children = 0;
  s->produces = &bad_produces;
}
static void sp_produces_many(ratchet_task_spec *s) {
  bad_produces = (ratchet_policy_produces)RATCHET_POLICY_PRODUCES_INIT;
  bad_produces.max_children = 4097;
  s->produces = &bad_produces;
}
static void sp_components_null(ratchet_task_spec *s) {
  s->n_components = 1;
}
static void sp_component_type(ratchet_task_spec *s) {
  bad_component = (ratchet_component){RATCHET_COMPONENT_USER - 1, "x", 1};
  s->components = &bad_component;
  s->n_components = 1;
}
static void sp_component_data(ratchet_task_spec *s) {
  bad_component = (ratchet_component){RATCHET_COMPONENT_USER, NULL, 4};
  s->components = &bad_component;
  s->n_components = 1;
}
static void sp_metadata(ratchet_task_spec *s) {
  s->metadata = odd_metadata;
}

static void test_invalid(void **state) {
  (void)state;
  /* Options. */
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  ratchet_orch_options opt = RATCHET_ORCH_OPTIONS_INIT;
  ratchet_orch *o = NULL;
  assert_int_equal(ratchet_orch_new(NULL, &opt, &o), -EINVAL);
  assert_int_equal(ratchet_orch_new(&loop, NULL, &o), -EINVAL);
  assert_int_equal(ratchet_orch_new(&loop, &opt, NULL), -EINVAL);
  opt.max_queued = 0;
  assert_int_equal(ratchet_orch_new(&loop, &opt, &o), -EINVAL);
  opt = (ratchet_orch_options)RATCHET_ORCH_OPTIONS_INIT;
  opt.breaker_defaults.failure_rate_threshold = 0;
  assert_int_equal(ratchet_orch_new(&loop, &opt, &o), -EINVAL);
  opt = (ratchet_orch_options)RATCHET_ORCH_OPTIONS_INIT;
  opt.dead_letter_path = "/nonexistent-dir/dead.jsonl";
  assert_int_equal(ratchet_orch_new(&loop, &opt, &o), -ENOENT);
  assert_null(o);
  assert_int_equal(uv_loop_close(&loop), 0);

  ot_options oo = OT_OPTIONS_INIT;
  oo.size = 1;
  oo.start = false;
  const char *const kinds[] = {"echo", NULL};
  oo.kinds = kinds;
  ot *t = ot_new(&oo, NULL);
  /* Starting needs a pool: this one has. Systems need run and points. */
  ratchet_system sys = {"noop", 0, noop_run, NULL, NULL};
  assert_int_equal(ratchet_orch_add_system(t->o, &sys), -EINVAL);
  sys.points = RATCHET_AT_BIT(RATCHET_AT_SUBMIT);
  sys.run = NULL;
  assert_int_equal(ratchet_orch_add_system(t->o, &sys), -EINVAL);
  sys.run = noop_run;
  sys.points = 1u << 9;
  assert_int_equal(ratchet_orch_add_system(t->o, &sys), -EINVAL);
  ratchet_breaker_options bo = RATCHET_ORCH_BREAKER_DEFAULTS;
  assert_int_equal(ratchet_orch_breaker_config(t->o, "", &bo), -EINVAL);
  assert_int_equal(ratchet_orch_breaker_config(t->o, "g", NULL), -EINVAL);
  bo.open_duration_ns = 0;
  assert_int_equal(ratchet_orch_breaker_config(t->o, "g", &bo), -EINVAL);
  ratchet_ratelimit_options ro = RATCHET_RATELIMIT_OPTIONS_INIT;
  ro.limit = 0;
  assert_int_equal(ratchet_orch_rate_limit(t->o, "g", &ro), -EINVAL);
  assert_int_equal(ratchet_orch_rate_limit(t->o, NULL, &ro), -EINVAL);

  static const bad_case cases[] = {
      {"spec.kind", sp_kind_null},
      {"spec.kind", sp_kind_empty},
      {"spec.kind", sp_kind_long},
      {"spec.payload", sp_payload_null},
      {"spec.payload_len", sp_payload_big},
      {"spec.priority", sp_prio_high},
      {"spec.priority", sp_prio_low},
      {"spec.on_done", sp_no_done},
      {"spec.pin_pool", sp_pin_half},
      {"spec.pin_pool", sp_pin_pool},
      {"spec.pin_worker", sp_pin_worker},
      {"spec.affinity_len", sp_affinity},
      {"spec.rate_group", sp_rate_group},
      {"spec.retry->max_attempts", sp_retry_attempts},
      {"spec.retry->backoff", sp_retry_backoff},
      {"spec.breaker->mode", sp_breaker_mode},
      {"spec.breaker->group", sp_breaker_group},
      {"spec.dedupe->key", sp_dedupe_key},
      {"spec.dedupe->window_ns", sp_dedupe_window},
      {"spec.dedupe->mode", sp_dedupe_mode},
      {"spec.cache", sp_cache},
      {"spec.produces->max_children", sp_produces},
      {"spec.produces->max_children", sp_produces_many},
      {"spec.components", sp_components_null},
      {"spec.components[].type", sp_component_type},
      {"spec.components[].data", sp_component_data},
      {"spec.metadata", sp_metadata},
  };
  for (size_t i = 0; i < TU_ARRAY_LEN(cases); i++) {
    ratchet_task_spec s = ot_spec(t, "echo", "p");
    cases[i].spoil(&s);
    uint64_t id = 77;
    int rc = ratchet_orch_submit(t->o, &s, &id);
    const char *why = ratchet_orch_last_error(t->o);
    if (rc != -EINVAL || strstr(why, cases[i].field) == NULL)
      print_error("case %zu (%s): %d, \"%s\"\n", i, cases[i].field, rc, why);
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(why, cases[i].field));
    assert_int_equal(id, 77);
  }
  assert_int_equal(ratchet_orch_submit(t->o, NULL, NULL), -EINVAL);
  /* No pool serves the kind; the rate group is not configured. */
  ratchet_task_spec s = ot_spec(t, "other", "p");
  assert_int_equal(ratchet_orch_submit(t->o, &s, NULL), RATCHET_ENOPOOL);
  assert_non_null(strstr(ratchet_orch_last_error(t->o), "other"));
  s = ot_spec(t, "echo", "p");
  s.rate_group = "nope";
  assert_int_equal(ratchet_orch_submit(t->o, &s, NULL), RATCHET_ENOGROUP);
  assert_non_null(strstr(ratchet_orch_last_error(t->o), "nope"));
  /* A good spec clears the message. */
  s = ot_spec(t, "echo", "good");
  uint64_t good = ot_submit(t, &s);
  assert_string_equal(ratchet_orch_last_error(t->o), "");

  ot_start(t, 1);
  assert_int_equal(ratchet_orch_start(t->o), -EALREADY);
  sys.points = RATCHET_AT_BIT(RATCHET_AT_SUBMIT);
  assert_int_equal(ratchet_orch_add_system(t->o, &sys), -EALREADY);
  ratchet_pool_options po = ot_pool_options(t, &oo);
  assert_int_equal(ratchet_orch_add_pool(t->o, &po, NULL), -EALREADY);
  ot_run_until(t, ot_p_task_done, good);
  expect_status(t, good, RATCHET_STATUS_OK);
  ot_close(t);

  /* No pool at all. */
  oo.add_pool = false;
  t = ot_new(&oo, NULL);
  assert_int_equal(ratchet_orch_start(t->o), -EINVAL);
  assert_non_null(strstr(ratchet_orch_last_error(t->o), "pool"));
  s = ot_spec(t, "echo", "p");
  assert_int_equal(ratchet_orch_submit(t->o, &s, NULL), RATCHET_ENOPOOL);
  ot_close(t);
}

/* ---- callbacks that call back in --------------------------------------- */

typedef struct reenter {
  ot *t;
  uint64_t victim, follower2, last;
  int cancel_rc, cancel_self_rc, follower_cancel_rc, submit_rc;
  uint64_t chained;
  unsigned closes;
} reenter;

static reenter *the_reenter;

/* Cancels a waiting task, and itself (already ended), from a callback. */
static void done_cancels(ratchet_orch *o, const ratchet_orch_result *r,
                         void *data) {
  ot_on_done(o, r, data);
  the_reenter->cancel_rc = ratchet_orch_cancel(o, the_reenter->victim);
  the_reenter->cancel_self_rc = ratchet_orch_cancel(o, r->id);
}

/* A follower's callback cancels the next follower of the same leader. */
static void done_cancels_follower(ratchet_orch *o, const ratchet_orch_result *r,
                                  void *data) {
  ot_on_done(o, r, data);
  the_reenter->follower_cancel_rc =
      ratchet_orch_cancel(o, the_reenter->follower2);
}

/* Submits the next task of a chain. */
static void done_submits(ratchet_orch *o, const ratchet_orch_result *r,
                         void *data) {
  ot_on_done(o, r, data);
  ratchet_task_spec s = ot_spec(the_reenter->t, "echo", "chained");
  the_reenter->submit_rc = ratchet_orch_submit(o, &s, &the_reenter->chained);
  if (the_reenter->submit_rc == 0)
    ot_mark_submitted(the_reenter->t, the_reenter->chained);
}

/* Closes the orchestrator from a completion callback. */
static void done_closes(ratchet_orch *o, const ratchet_orch_result *r,
                        void *data) {
  ot_on_done(o, r, data);
  the_reenter->closes++;
  ot_begin_close(the_reenter->t);
}

static void test_callbacks_reenter(void **state) {
  (void)state;
  ot *t = ot_new(NULL, NULL);
  reenter re;
  memset(&re, 0, sizeof re);
  re.t = t;
  the_reenter = &re;
  ratchet_task_spec s = ot_spec(t, "echo", "victim");
  s.delay_ns = OT_MS(600000);
  re.victim = ot_submit(t, &s);
  s = ot_spec(t, "echo", "canceller");
  s.on_done = done_cancels;
  uint64_t canceller = ot_submit(t, &s);
  s = ot_spec(t, "echo", "chain");
  s.on_done = done_submits;
  uint64_t chain = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, re.victim);
  ot_run_until(t, ot_p_task_done, chain);
  assert_int_equal(re.cancel_rc, 0);
  assert_int_equal(re.cancel_self_rc, -ENOENT);
  expect_status(t, canceller, RATCHET_STATUS_OK);
  expect_status(t, re.victim, RATCHET_STATUS_CANCELLED);
  assert_int_equal(re.submit_rc, 0);
  ot_run_until(t, ot_p_task_done, re.chained);
  expect_status(t, re.chained, RATCHET_STATUS_OK);

  /* Followers complete one at a time: the first one's callback may
   * cancel the second, which then ends once, CANCELLED. */
  ratchet_policy_dedupe pd = {.key = "re",
                              .key_len = 2,
                              .window_ns = OT_MS(600000),
                              .mode = RATCHET_DEDUPE_LEADING};
  s = ot_spec(t, "sleep", "50");
  s.dedupe = &pd;
  uint64_t leader = ot_submit(t, &s);
  s.on_done = done_cancels_follower;
  uint64_t f1 = ot_submit(t, &s);
  s.on_done = ot_on_done;
  re.follower2 = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, re.follower2);
  ot_run_until(t, ot_p_task_done, f1);
  expect_status(t, leader, RATCHET_STATUS_OK);
  expect_status(t, f1, RATCHET_STATUS_OK);
  assert_true(re.follower_cancel_rc == 0 || re.follower_cancel_rc == -ENOENT);
  expect_status(t, re.follower2,
                re.follower_cancel_rc == 0 ? RATCHET_STATUS_CANCELLED
                                           : RATCHET_STATUS_OK);

  /* Closing from a callback: the tasks still waiting end SHUTDOWN. */
  s = ot_spec(t, "echo", "closer");
  s.on_done = done_closes;
  uint64_t closer = ot_submit(t, &s);
  s = ot_spec(t, "echo", "waiting");
  s.delay_ns = OT_MS(600000);
  uint64_t waiting = ot_submit(t, &s);
  ot_run_until(t, ot_p_closed, 0);
  assert_int_equal(re.closes, 1);
  expect_status(t, closer, RATCHET_STATUS_OK);
  expect_status(t, waiting, RATCHET_STATUS_SHUTDOWN);
  ot_close(t);
  the_reenter = NULL;
}

/* ---- per-attempt timeout ------------------------------------------------- */

static void test_timeout(void **state) {
  (void)state;
  ot *t = ot_new(NULL, NULL);
  /* Each attempt overruns: the worker sees its deadline, answers TIMEOUT,
   * and the retry policy (TIMEOUT is in the default mask) tries again. */
  ratchet_policy_retry retry = constant_retry(2, OT_MS(1));
  ratchet_task_spec s = ot_spec(t, "sleep", "600000");
  s.timeout_ns = OT_MS(100);
  s.retry = &retry;
  uint64_t slow = ot_submit(t, &s);
  /* A quick task is not affected by its timeout. */
  s = ot_spec(t, "sleep", "1");
  s.timeout_ns = OT_MS(60000);
  uint64_t quick = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, slow);
  ot_run_until(t, ot_p_task_done, quick);
  const ot_res *r = must_result(t, slow);
  expect_status(t, slow, RATCHET_STATUS_TIMEOUT);
  assert_int_equal(r->attempts, 2);
  assert_int_equal(r->crashes, 0);
  assert_string_equal(r->output, "saw-cancel");
  /* Each attempt had its whole timeout (to the millisecond of the Unix
   * deadline the worker gets). */
  assert_true(r->finished_ns - r->submitted_ns >= 2 * (OT_MS(100) - OT_MS(1)));
  expect_status(t, quick, RATCHET_STATUS_OK);
  ot_close(t);
}

/* ---- user systems and a failed pool ------------------------------------ */

typedef struct gatekeeper {
  unsigned submits, finals, final_ok;
} gatekeeper;

/* Refuses payload "reject" at SUBMIT, holds "hold" back 100 ms once at
 * DISPATCH, and counts final outcomes. */
static void gate_run(void *ctx, ratchet_orch *o, ratchet_orch_task *t,
                     ratchet_lifecycle at, const ratchet_attempt *a,
                     uint64_t now_ns, ratchet_decision *d) {
  (void)o;
  gatekeeper *g = ctx;
  size_t len;
  const char *p = ratchet_orch_task_payload(t, &len);
  if (at == RATCHET_AT_SUBMIT) {
    g->submits++;
    if (len == 6 && memcmp(p, "reject", 6) == 0) {
      d->verdict = RATCHET_FINISH;
      d->status = RATCHET_STATUS_BAD_REQUEST;
      d->reason = "refused by the gatekeeper";
    }
  } else if (at == RATCHET_AT_DISPATCH) {
    if (len == 4 && memcmp(p, "hold", 4) == 0 &&
        now_ns - ratchet_orch_task_submitted_ns(t) < OT_MS(100)) {
      d->verdict = RATCHET_DEFER;
      d->until_ns = ratchet_orch_task_submitted_ns(t) + OT_MS(100);
    }
  } else if (at == RATCHET_AT_FINAL) {
    g->finals++;
    g->final_ok += a->final->status == RATCHET_STATUS_OK;
  }
}

static void test_user_system(void **state) {
  (void)state;
  ot_options oo = OT_OPTIONS_INIT;
  oo.start = false;
  ot *t = ot_new(&oo, NULL);
  gatekeeper g = {0, 0, 0};
  ratchet_system sys = {"gatekeeper",
                        RATCHET_AT_BIT(RATCHET_AT_SUBMIT) |
                            RATCHET_AT_BIT(RATCHET_AT_DISPATCH) |
                            RATCHET_AT_BIT(RATCHET_AT_FINAL),
                        gate_run, NULL, &g};
  assert_int_equal(ratchet_orch_add_system(t->o, &sys), 0);
  ot_start(t, 2);
  ratchet_task_spec s = ot_spec(t, "echo", "reject");
  uint64_t rejected = ot_submit(t, &s);
  s = ot_spec(t, "echo", "hold");
  uint64_t held = ot_submit(t, &s);
  s = ot_spec(t, "echo", "pass");
  uint64_t passed = ot_submit(t, &s);
  ot_run_until(t, ot_p_done, 3);
  expect_status(t, rejected, RATCHET_STATUS_BAD_REQUEST);
  assert_string_equal(must_result(t, rejected)->error,
                      "refused by the gatekeeper");
  assert_int_equal(must_result(t, rejected)->attempts, 0);
  expect_status(t, held, RATCHET_STATUS_OK);
  expect_status(t, passed, RATCHET_STATUS_OK);
  const ot_res *h = must_result(t, held);
  assert_true(h->first_dispatch_ns - h->submitted_ns >= OT_MS(100));
  assert_int_equal(g.submits, 3);
  assert_int_equal(g.finals, 3);
  assert_int_equal(g.final_ok, 2);
  ot_close(t);
}

/* An orchestrator, not started, over one pool that will give up: its
 * worker exits before Ready (exec succeeds, so that valgrind, which traces
 * forked children until they exec, stays out of it). */
static ot *failing_pool_harness(void) {
  ot_options oo = OT_OPTIONS_INIT;
  oo.add_pool = false;
  oo.start = false;
  ot *t = ot_new(&oo, NULL);
  static const char *const argv[] = {"/bin/false", NULL};
  ratchet_pool_options po = RATCHET_POOL_OPTIONS_INIT;
  po.argv = argv;
  po.flap_limit = 2;
  po.restart_backoff.initial_ns = OT_MS(1);
  po.restart_backoff.max_delay_ns = OT_MS(2);
  assert_int_equal(ratchet_orch_add_pool(t->o, &po, NULL), 0);
  return t;
}

/* A pool that gives up (its workers cannot start) ends the tasks waiting
 * for it LOST, with its reason. */
static void test_pool_failed(void **state) {
  (void)state;
  ot *t = failing_pool_harness();
  uint64_t ids[3];
  for (int i = 0; i < 3; i++) {
    ratchet_task_spec s = ot_spec(t, "echo", "never");
    ids[i] = ot_submit(t, &s);
  }
  assert_int_equal(ratchet_orch_start(t->o), 0);
  ot_run_until(t, ot_p_done, 3);
  for (int i = 0; i < 3; i++) {
    const ot_res *r = must_result(t, ids[i]);
    expect_status(t, ids[i], RATCHET_STATUS_LOST);
    assert_int_equal(r->attempts, 0);
    /* Through a copy: gcc -O3 cannot see that must_result never returns
     * NULL and warns of an overread. */
    char err[sizeof r->error];
    snprintf(err, sizeof err, "%s", r->error);
    assert_non_null(strstr(err, "failed"));
  }
  assert_int_equal(ot_count_events(t, RATCHET_EV_POOL_FAILED, 0), 1);
  ot_close(t);
}

/* A task for a pool that has failed must not wait for ever: submit refuses
 * it (RATCHET_ENOPOOL: no pool serves the kind any more). Should a version
 * accept it, it must end LOST like the tasks that were waiting. */
static void test_pool_failed_later_task(void **state) {
  (void)state;
  ot *t = failing_pool_harness();
  assert_int_equal(ratchet_orch_start(t->o), 0);
  ot_run_until(t, ot_p_event, OT_EV_ARG(RATCHET_EV_POOL_FAILED, 0));
  ratchet_task_spec s = ot_spec(t, "echo", "after");
  uint64_t after = 0;
  int rc = ratchet_orch_submit(t->o, &s, &after);
  bool ended_lost = false;
  if (rc == 0) {
    /* Nothing can run it and nothing else happens on this loop: a few
     * seconds is the wait for an outcome that never comes. */
    for (int i = 0; i < 50 && ot_result(t, after) == NULL; i++)
      ot_sleep_ms(t, 100);
    const ot_res *r = ot_result(t, after);
    if (r == NULL)
      print_error("a task for a failed pool is still waiting\n");
    ended_lost = r != NULL && r->status == RATCHET_STATUS_LOST;
  }
  /* Closing ends it SHUTDOWN if it was still waiting. */
  ot_close(t);
  assert_true(rc == RATCHET_ENOPOOL || (rc == 0 && ended_lost));
  assert_int_equal(rc, RATCHET_ENOPOOL);
}

/* ---- 18. allocation failures ----------------------------------------- */

/* A user system that records the component it finds at SUBMIT. */
typedef struct comp_seen {
  unsigned n;
  char data[32];
} comp_seen;

static void comp_run(void *ctx, ratchet_orch *o, ratchet_orch_task *t,
                     ratchet_lifecycle at, const ratchet_attempt *a,
                     uint64_t now_ns, ratchet_decision *d) {
  (void)o, (void)at, (void)a, (void)now_ns, (void)d;
  comp_seen *c = ctx;
  size_t size = 0;
  const void *p =
      ratchet_orch_task_component(t, RATCHET_COMPONENT_USER + 1, &size);
  if (p != NULL) {
    c->n++;
    snprintf(c->data, sizeof c->data, "%.*s", (int)size, (const char *)p);
  }
}

static void test_new_enomem(void **state) {
  (void)state;
  char dir[64], path[128];
  make_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/dead.jsonl", dir);
  int fds0 = tu_count_fds();
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  int fds = tu_count_fds();
  ratchet_retry_budget_options bo = RATCHET_RETRY_BUDGET_OPTIONS_INIT;
  ratchet_orch_options opt = RATCHET_ORCH_OPTIONS_INIT;
  opt.dead_letter_path = path;
  opt.retry_budget = &bo;
  ratchet_orch *o = NULL;
  size_t k;
  int rc = -ENOMEM;
  for (k = 0; k < 10000; k++) {
    tu_alloc_install(k);
    rc = ratchet_orch_new(&loop, &opt, &o);
    long live = tu_alloc_live();
    tu_alloc_uninstall();
    if (rc == 0)
      break;
    assert_int_equal(rc, -ENOMEM);
    assert_int_equal(live, 0);
    assert_int_equal(tu_count_fds(), fds);
  }
  assert_int_equal(rc, 0);
  assert_true(k > 0);
  ratchet_orch_close(o, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(tu_count_fds(), fds0);
  const char *files[] = {"dead.jsonl", NULL};
  remove_tmpdir(dir, files);
}

static void test_add_pool_enomem(void **state) {
  (void)state;
  ot_options oo = OT_OPTIONS_INIT;
  oo.add_pool = false;
  oo.start = false;
  oo.size = 1;
  ot *t = ot_new(&oo, NULL);
  const char *const kinds[] = {"echo", "meta", NULL};
  int rc = -ENOMEM;
  size_t k;
  long grown = 0;
  for (k = 0; k < 10000; k++) {
    ratchet_pool_options po = ot_pool_options(t, &oo);
    tu_alloc_install(k);
    rc = ratchet_orch_add_pool(t->o, &po, kinds);
    long live = tu_alloc_live();
    tu_alloc_uninstall();
    if (rc >= 0)
      break;
    assert_int_equal(rc, -ENOMEM);
    /* Nothing is left but the orchestrator's array of pools, which the
     * first try that gets that far allocates for good (the counter counts
     * from each install): one block, once. */
    assert_true(live == 0 || live == 1);
    grown += live;
    assert_true(grown <= 1);
    assert_null(ratchet_orch_pool(t->o, 0));
  }
  assert_int_equal(rc, 0);
  assert_true(k > 0);
  assert_non_null(ratchet_orch_pool(t->o, 0));
  assert_null(ratchet_orch_pool(t->o, 1));
  ot_start(t, 1);
  ratchet_task_spec s = ot_spec(t, "echo", "usable");
  uint64_t id = ot_submit(t, &s);
  ot_run_until(t, ot_p_task_done, id);
  expect_status(t, id, RATCHET_STATUS_OK);
  assert_string_equal(must_result(t, id)->output, "usable");
  ot_close(t);
}

static void test_submit_enomem(void **state) {
  (void)state;
  cache_fixture c;
  cache_open(&c);
  ratchet_orch_options opt = RATCHET_ORCH_OPTIONS_INIT;
  opt.cache = c.tiered;
  ot_options oo = OT_OPTIONS_INIT;
  oo.start = false;
  ot *t = ot_new(&oo, &opt);
  comp_seen seen = {0, ""};
  ratchet_system sys = {"components", RATCHET_AT_BIT(RATCHET_AT_SUBMIT),
                        comp_run, NULL, &seen};
  assert_int_equal(ratchet_orch_add_system(t->o, &sys), 0);
  ratchet_ratelimit_options ro = {RATCHET_RATELIMIT_TOKEN_BUCKET, 100000,
                                  UINT64_C(1000000000), 100000};
  assert_int_equal(ratchet_orch_rate_limit(t->o, "rl", &ro), 0);
  ot_start(t, 2);

  /* A spec with every policy; dedupe key and cache salt change with each
   * try, so the accepted one runs on its own. */
  ratchet_policy_retry retry = constant_retry(2, OT_MS(1));
  ratchet_policy_breaker pb = {.group = "all", .mode = RATCHET_BREAKER_WAIT};
  char dkey[32], salt[32];
  ratchet_policy_dedupe pd = {
      .key = dkey, .window_ns = OT_MS(600000), .mode = RATCHET_DEDUPE_LEADING};
  ratchet_policy_cache pc = RATCHET_POLICY_CACHE_INIT;
  pc.salt = salt;
  ratchet_policy_produces pp = RATCHET_POLICY_PRODUCES_INIT;
  ratchet_component comp = {RATCHET_COMPONENT_USER + 1, "component", 9};
  const char *metadata[] = {"k", "metavalue", "other", "x", NULL};
  ratchet_task_spec s = ot_spec(t, "meta", "every-policy");
  s.priority = 3;
  s.expire_ns = OT_MS(600000);
  s.deadline_ns = OT_MS(600000);
  s.timeout_ns = OT_MS(600000);
  s.affinity_key = "aff";
  s.affinity_len = 3;
  s.rate_group = "rl";
  s.retry = &retry;
  s.breaker = &pb;
  s.dedupe = &pd;
  s.cache = &pc;
  s.produces = &pp;
  s.components = &comp;
  s.n_components = 1;
  s.metadata = metadata;

  /* Warm: the kind, its accounting and the breaker exist afterwards, so
   * a refused submit must leave nothing allocated. */
  snprintf(dkey, sizeof dkey, "warm");
  snprintf(salt, sizeof salt, "warm");
  pd.key_len = strlen(dkey);
  uint64_t warm = ot_submit(t, &s);
  unsigned done_before = t->n_done;
  int rc = -ENOMEM;
  uint64_t id = 0;
  size_t k;
  for (k = 0; k < 10000; k++) {
    snprintf(dkey, sizeof dkey, "try-%zu", k);
    snprintf(salt, sizeof salt, "try-%zu", k);
    pd.key_len = strlen(dkey);
    seen.n = 0;
    tu_alloc_install(k);
    rc = ratchet_orch_submit(t->o, &s, &id);
    long live = tu_alloc_live();
    tu_alloc_uninstall();
    if (rc == 0)
      break;
    assert_int_equal(rc, -ENOMEM);
    assert_int_equal(live, 0);
    assert_int_equal(seen.n, 0);
  }
  assert_int_equal(rc, 0);
  assert_true(k > 0);
  assert_int_equal(t->n_done, done_before);
  /* Accepted whole: its component, metadata and policies are all there. */
  assert_int_equal(seen.n, 1);
  assert_string_equal(seen.data, "component");

  /* Cold: a kind and a breaker group never seen before. */
  ratchet_policy_breaker cold_pb = {.group = "cold",
                                    .mode = RATCHET_BREAKER_FAIL_FAST};
  ratchet_task_spec cold = ot_spec(t, "echo", "cold");
  cold.breaker = &cold_pb;
  cold.metadata = metadata;
  uint64_t cold_id = 0;
  for (k = 0; k < 10000; k++) {
    tu_alloc_install(k);
    rc = ratchet_orch_submit(t->o, &cold, &cold_id);
    tu_alloc_uninstall();
    if (rc == 0)
      break;
    assert_int_equal(rc, -ENOMEM);
  }
  assert_int_equal(rc, 0);

  /* The thread-safe path. */
  ratchet_task_spec as = ot_spec(t, "meta", "async");
  as.metadata = metadata;
  uint64_t async_id = 0;
  for (k = 0; k < 10000; k++) {
    tu_alloc_install(k);
    rc = ratchet_orch_submit_async(t->o, &as, &async_id);
    long live = tu_alloc_live();
    tu_alloc_uninstall();
    if (rc == 0)
      break;
    assert_int_equal(rc, -ENOMEM);
    assert_int_equal(live, 0);
  }
  assert_int_equal(rc, 0);
  ot_run_until(t, ot_p_task_done, warm);
  ot_run_until(t, ot_p_task_done, id);
  ot_run_until(t, ot_p_task_done, cold_id);
  ot_run_until(t, ot_p_task_done, async_id);
  const uint64_t every[] = {warm, id};
  for (int i = 0; i < 2; i++) {
    const ot_res *r = must_result(t, every[i]);
    expect_status(t, every[i], RATCHET_STATUS_OK);
    assert_int_equal(r->attempts, 1);
    assert_false(r->coalesced);
    assert_string_equal(r->output, "metavalue|every-policy");
  }
  expect_status(t, cold_id, RATCHET_STATUS_OK);
  assert_string_equal(must_result(t, async_id)->output, "metavalue|async");
  assert_int_equal(t->n_done, 4);
  ot_close(t);
  cache_close(&c);
}

/* ---- FORK mode ----------------------------------------------------------- */

static void test_fork_pool(void **state) {
  (void)state;
  /* Forked workers would be traced by valgrind too: spawn covers it. */
  if (ot_under_valgrind())
    skip();
  ot_options oo = OT_OPTIONS_INIT;
  oo.mode = RATCHET_POOL_FORK;
  ot *t = ot_new(&oo, NULL);
  ratchet_policy_retry retry = constant_retry(3, OT_MS(1));
  uint64_t ids[20];
  for (int i = 0; i < 20; i++) {
    ratchet_task_spec s = ot_spec(t, i % 2 ? "flaky" : "echo", "1");
    s.retry = &retry;
    ids[i] = ot_submit(t, &s);
  }
  ot_run_until(t, ot_p_done, 20);
  for (int i = 0; i < 20; i++) {
    expect_status(t, ids[i], RATCHET_STATUS_OK);
    assert_int_equal(must_result(t, ids[i])->attempts, i % 2 ? 2 : 1);
  }
  ot_close(t);
}

int test_orch(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_retry_backoff),
      cmocka_unit_test(test_retry_expiry_deadline),
      cmocka_unit_test(test_breaker_fail_fast),
      cmocka_unit_test(test_breaker_wait),
      cmocka_unit_test(test_cache),
      cmocka_unit_test(test_coalesce_handover),
      cmocka_unit_test(test_breaker_permit_returned),
      cmocka_unit_test(test_rate_limit),
      cmocka_unit_test(test_dedupe_leading),
      cmocka_unit_test(test_dedupe_late_duplicate),
      cmocka_unit_test(test_debounce_trailing),
      cmocka_unit_test(test_poison_dead_letter),
      cmocka_unit_test(test_expiry),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_priority),
      cmocka_unit_test(test_pin_affinity),
      cmocka_unit_test(test_affinity_wakes_idle_worker),
      cmocka_unit_test(test_produces),
      cmocka_unit_test(test_produces_dropped_counted),
      cmocka_unit_test(test_shutdown),
      cmocka_unit_test(test_bounded_queue),
      cmocka_unit_test(test_async_refused_and_unstarted_close),
      cmocka_unit_test(test_submit_async),
      cmocka_unit_test(test_stats_other_thread),
      cmocka_unit_test(test_sync),
      cmocka_unit_test(test_events_sequence),
      cmocka_unit_test(test_stats),
      cmocka_unit_test(test_invalid),
      cmocka_unit_test(test_callbacks_reenter),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_user_system),
      cmocka_unit_test(test_pool_failed),
      cmocka_unit_test(test_pool_failed_later_task),
      cmocka_unit_test(test_new_enomem),
      cmocka_unit_test(test_add_pool_enomem),
      cmocka_unit_test(test_submit_enomem),
      cmocka_unit_test(test_fork_pool),
  };
  /* RATCHET_ORCH_TEST=test_cancel runs one test (a cmocka pattern). */
  const char *only = getenv("RATCHET_ORCH_TEST");
  if (only != NULL)
    cmocka_set_test_filter(only);
  return cmocka_run_group_tests_name("orch", tests, tu_uv_signal_setup, NULL);
}
