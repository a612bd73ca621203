/*
 * test_orch_chaos.c - the orchestrator's promise under fire: "a completion
 * callback fires exactly once per task, with the final outcome, whatever
 * happens to workers on the way" (ratchet/orch.h).
 *
 * 50,000 tasks (5,000 under valgrind, which traces only this process;
 * 20,000 under ThreadSanitizer) go through a pool of pipelining workers
 * while a timer SIGKILLs a random ready worker every few milliseconds.
 * RATCHET_CHAOS_TASKS, RATCHET_CHAOS_KILL_MS and RATCHET_CHAOS_SEED
 * override the count, the period and the killer's seed. Each task's handler
 * decides from its payload and attempt number alone whether it succeeds
 * (ot_chaos_class_of in orch_testutil.c), so the final status of every task is
 * known in advance - up to the kills, which are random (the seed is printed):
 *
 *   succeeds at once, or fails only its first attempts (fewer than the
 *     retry policy allows)                    -> OK, output = payload
 *   fails every attempt                      -> FAILED, after max_attempts
 *     attempts when none was lost (a lost attempt is dispatched again and
 *     counts as an attempt, but never as a failure)
 *   kills its worker every time it runs      -> POISON after exactly
 *     poison_threshold crashes
 *   and any task may end POISON if the killer hit it poison_threshold
 *   times, but only then: POISON if and only if r->crashes reached it.
 *
 * The statistics snapshot must agree with the callbacks and events, and
 * closing must leave no worker process behind (ot_close). The intensity
 * and flap limits are off: a kill pattern may legitimately trip them, and
 * the pool's own tests cover them.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "ratchet/rng.h"

#include "orch_testutil.h"
#include "ratchet/clock.h"

#define CHAOS_TASKS          50000u
#define CHAOS_TASKS_VALGRIND 5000u
#define CHAOS_TASKS_TSAN     5000u

/* ThreadSanitizer makes every worker start (and the loop) several times
 * slower: fewer tasks keep the run in the same range. */
#if defined(__SANITIZE_THREAD__)
#define CHAOS_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CHAOS_UNDER_TSAN 1
#endif
#endif
#ifndef CHAOS_UNDER_TSAN
#define CHAOS_UNDER_TSAN 0
#endif
#define KILL_EVERY_MS 10u
#define MAX_ATTEMPTS  3u
#define POISON_AT     3u

typedef struct chaos {
  ot *t;
  uv_timer_t killer;
  uint32_t n, size;
  ratchet_rng rng;
  unsigned kills;
  /* By task index (payload "I"); idx_of maps ids to indexes + 1. */
  uint64_t *ids;
  uint32_t *idx_of;
  size_t n_idx;
  uint16_t *dispatched, *lost, *retries;
  /* Totals seen through events. */
  uint64_t ev_dispatched, ev_lost, ev_retry, ev_succeeded, ev_failed;
  uint64_t ev_completed, ev_unknown;
} chaos;

static int32_t index_of(const chaos *c, uint64_t id) {
  if (id >= c->n_idx || c->idx_of[id] == 0)
    return -1;
  return (int32_t)c->idx_of[id] - 1;
}

static void on_event(void *ctx, const ratchet_event *ev) {
  chaos *c = ctx;
  int32_t i = index_of(c, ev->task_id);
  if (i < 0) {
    c->ev_unknown++;
    return;
  }
  switch (ev->type) {
  case RATCHET_EV_DISPATCHED:
    c->ev_dispatched++;
    c->dispatched[i]++;
    break;
  case RATCHET_EV_LOST:
    c->ev_lost++;
    c->lost[i]++;
    break;
  case RATCHET_EV_RETRY:
    c->ev_retry++;
    c->retries[i]++;
    break;
  case RATCHET_EV_SUCCEEDED:
    c->ev_succeeded++;
    break;
  case RATCHET_EV_FAILED:
    c->ev_failed++;
    break;
  case RATCHET_EV_COMPLETED:
    c->ev_completed++;
    break;
  default:
    break;
  }
}

/* SIGKILLs a random ready worker: one that may be in the middle of a task
 * or of a frame (a worker still starting has nothing to lose, and killing
 * those could starve a slow sanitizer build of workers altogether). */
static void killer_cb(uv_timer_t *h) {
  chaos *c = h->data;
  uint32_t w = (uint32_t)(ratchet_rng_next(&c->rng) % c->size);
  ratchet_pool_worker_stats ws;
  if (ratchet_pool_worker_stats_get(ratchet_orch_pool(c->t->o, 0), w, &ws) ==
          0 &&
      ws.ready && ws.pid > 0 && kill(ws.pid, SIGKILL) == 0)
    c->kills++;
}

static double now_s(void) {
  return (double)ratchet_now_ns() / 1e9;
}

static void test_chaos(void **state) {
  (void)state;
  double t0 = now_s();
  chaos *c = calloc(1, sizeof *c);
  assert_non_null(c);
  c->n = ot_under_valgrind() ? CHAOS_TASKS_VALGRIND
         : CHAOS_UNDER_TSAN  ? CHAOS_TASKS_TSAN
                             : CHAOS_TASKS;
  const char *env_n = getenv("RATCHET_CHAOS_TASKS");
  if (env_n != NULL && atoi(env_n) > 0)
    c->n = (uint32_t)atoi(env_n);
  c->size = 3;
  uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
  const char *env_seed = getenv("RATCHET_CHAOS_SEED");
  if (env_seed != NULL)
    seed = strtoull(env_seed, NULL, 0);
  ratchet_rng_seed(&c->rng, seed);
  c->ids = calloc(c->n, sizeof *c->ids);
  c->dispatched = calloc(c->n, sizeof *c->dispatched);
  c->lost = calloc(c->n, sizeof *c->lost);
  c->retries = calloc(c->n, sizeof *c->retries);
  assert_true(c->ids && c->dispatched && c->lost && c->retries);

  ot_options oo = OT_OPTIONS_INIT;
  oo.size = c->size;
  oo.depth = 4;
  oo.poison_threshold = POISON_AT;
  oo.record_events = false;
  oo.limits_off = true;
  oo.kill_grace_ms = 100;
  ot *t = ot_new(&oo, NULL);
  c->t = t;
  ratchet_subscriber_options so = RATCHET_SUBSCRIBER_OPTIONS_INIT;
  so.types =
      RATCHET_EV_BIT(RATCHET_EV_DISPATCHED) | RATCHET_EV_BIT(RATCHET_EV_LOST) |
      RATCHET_EV_BIT(RATCHET_EV_RETRY) | RATCHET_EV_BIT(RATCHET_EV_SUCCEEDED) |
      RATCHET_EV_BIT(RATCHET_EV_FAILED) | RATCHET_EV_BIT(RATCHET_EV_COMPLETED);
  so.cb = on_event;
  so.ctx = c;
  ratchet_subscription *sub;
  assert_int_equal(
      ratchet_events_subscribe(ratchet_orch_events(t->o), &so, &sub), 0);

  ratchet_policy_retry retry = RATCHET_POLICY_RETRY_INIT;
  retry.max_attempts = MAX_ATTEMPTS;
  retry.backoff.kind = RATCHET_BACKOFF_CONSTANT;
  retry.backoff.jitter = RATCHET_JITTER_NONE;
  retry.backoff.initial_ns = OT_MS(1);
  retry.backoff.max_delay_ns = OT_MS(1);
  uint64_t max_id = 0;
  for (uint32_t i = 0; i < c->n; i++) {
    char p[16];
    snprintf(p, sizeof p, "%u", i);
    ratchet_task_spec s = ot_spec(t, "chaos", p);
    s.retry = &retry;
    c->ids[i] = ot_submit(t, &s);
    if (c->ids[i] > max_id)
      max_id = c->ids[i];
  }
  /* No callback or event about these tasks comes before the loop runs. */
  c->n_idx = (size_t)max_id + 1;
  c->idx_of = calloc(c->n_idx, sizeof *c->idx_of);
  assert_non_null(c->idx_of);
  for (uint32_t i = 0; i < c->n; i++)
    c->idx_of[c->ids[i]] = i + 1;

  uv_timer_init(&t->loop, &c->killer);
  c->killer.data = c;
  unsigned every = KILL_EVERY_MS;
  const char *env_every = getenv("RATCHET_CHAOS_KILL_MS");
  if (env_every != NULL && atoi(env_every) > 0)
    every = (unsigned)atoi(env_every);
  uv_timer_start(&c->killer, killer_cb, every, every);
  ot_run_until(t, ot_p_done, c->n);
  uv_timer_stop(&c->killer);
  uv_close((uv_handle_t *)&c->killer, NULL);
  double t_run = now_s() - t0;

  ratchet_stats *st;
  assert_int_equal(ratchet_orch_stats(t->o, &st), 0);
  ratchet_pool_stats ps;
  ratchet_pool_stats_get(ratchet_orch_pool(t->o, 0), &ps);

  /* Every task: one callback, the status its plan and the kills allow. */
  unsigned n_ok = 0, n_failed = 0, n_poison = 0, n_pills = 0, wrong = 0;
  unsigned n_lost_tasks = 0, n_poison_innocent = 0;
  for (uint32_t i = 0; i < c->n; i++) {
    const ot_res *r = ot_result(t, c->ids[i]);
    assert_non_null(r);
    assert_int_equal(r->calls, 1);
    ot_chaos_class cls = ot_chaos_class_of(i);
    n_pills += cls == OT_CHAOS_PILL;
    n_lost_tasks += c->lost[i] > 0;
    bool ok = true;
    /* Each dispatch is an attempt; crashes are some of the losses. */
    ok &= r->attempts == c->dispatched[i];
    ok &= r->crashes <= c->lost[i];
    ok &= (r->status == RATCHET_STATUS_POISON) == (r->crashes >= POISON_AT);
    switch (r->status) {
    case RATCHET_STATUS_OK: {
      n_ok++;
      char want[16];
      snprintf(want, sizeof want, "%u", i);
      ok &= cls == OT_CHAOS_OK || cls == OT_CHAOS_TRANSIENT;
      ok &= strcmp(r->output, want) == 0;
      /* Answered attempts: the failures that were retried, then this. */
      ok &= r->attempts - c->lost[i] == c->retries[i] + 1u;
      break;
    }
    case RATCHET_STATUS_FAILED:
      n_failed++;
      ok &= cls == OT_CHAOS_ALWAYS;
      ok &= r->attempts >= MAX_ATTEMPTS;
      ok &= r->attempts - c->lost[i] <= MAX_ATTEMPTS;
      ok &= r->attempts - c->lost[i] == c->retries[i] + 1u;
      if (c->lost[i] == 0)
        ok &= r->attempts == MAX_ATTEMPTS;
      break;
    case RATCHET_STATUS_POISON:
      n_poison++;
      ok &= r->crashes == POISON_AT;
      n_poison_innocent += cls != OT_CHAOS_PILL;
      break;
    default:
      ok = false;
      break;
    }
    if (cls == OT_CHAOS_PILL)
      ok &= r->status == RATCHET_STATUS_POISON;
    if (!ok && wrong++ < 5)
      print_error("task %u (class %d, id %llu): %s, attempts %u, crashes %u, "
                  "dispatched %u, lost %u, retries %u: %s\n",
                  i, (int)cls, (unsigned long long)c->ids[i],
                  ratchet_status_name(r->status), r->attempts, r->crashes,
                  c->dispatched[i], c->lost[i], c->retries[i], r->error);
  }
  print_message("[ chaos    ] %u tasks in %.2f s (seed %#llx): %u kills, "
                "%llu processes started; %u ok, %u failed, %u poison "
                "(%u pills, %u hit by the killer), %u tasks lost an "
                "attempt\n",
                c->n, t_run, (unsigned long long)seed, c->kills,
                (unsigned long long)ps.started, n_ok, n_failed, n_poison,
                n_pills, n_poison_innocent, n_lost_tasks);
  assert_int_equal(wrong, 0);
  assert_int_equal(n_ok + n_failed + n_poison, c->n);
  assert_int_equal(t->n_done, c->n);
  assert_int_equal(c->ev_unknown, 0);
  assert_int_equal(c->ev_completed, c->n);
  assert_true(c->kills > 0);
  assert_false(ps.failed);

  /* The snapshot agrees with what the callbacks and events saw. */
  const ratchet_kind_stats *ks = ratchet_stats_kind(st, "chaos");
  assert_non_null(ks);
  assert_int_equal(st->n_kinds, 1);
  const ratchet_kind_stats *const both[] = {ks, &st->total};
  for (int k = 0; k < 2; k++) {
    const ratchet_kind_stats *x = both[k];
    assert_int_equal(x->counters[RATCHET_COUNT_SUBMITTED], c->n);
    assert_int_equal(x->counters[RATCHET_COUNT_ATTEMPTS], c->ev_dispatched);
    assert_int_equal(x->counters[RATCHET_COUNT_LOST], c->ev_lost);
    assert_int_equal(x->counters[RATCHET_COUNT_RETRIES], c->ev_retry);
    assert_int_equal(x->by_status[RATCHET_STATUS_OK].count, n_ok);
    assert_int_equal(x->by_status[RATCHET_STATUS_FAILED].count, n_failed);
    assert_int_equal(x->by_status[RATCHET_STATUS_POISON].count, n_poison);
    uint64_t all = 0;
    for (int s = 0; s < RATCHET_STATUS_COUNT; s++)
      all += x->by_status[s].count;
    assert_int_equal(all, c->n);
    assert_int_equal(x->by_status[RATCHET_STATUS_OK].end_to_end.count, n_ok);
  }
  assert_int_equal(st->queued, 0);
  assert_int_equal(st->delayed, 0);
  assert_int_equal(st->in_flight, 0);
  /* Every dispatch was answered: a Result or a loss. */
  assert_int_equal(c->ev_dispatched,
                   c->ev_succeeded + c->ev_failed + c->ev_lost);
  assert_int_equal(ps.dispatched, c->ev_dispatched);
  ratchet_stats_free(st);

  ot_close(t);
  free(c->ids);
  free(c->idx_of);
  free(c->dispatched);
  free(c->lost);
  free(c->retries);
  free(c);
}

int test_orch_chaos(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chaos),
  };
  return cmocka_run_group_tests_name("orch-chaos", tests, tu_uv_signal_setup,
                                     NULL);
}
