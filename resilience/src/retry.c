/*
 * retry.c - the retry policy: classify an error, pick the delay, enforce
 * attempts, deadlines and the shared budget.
 *
 * ratchet_retry_next is the whole decision and is pure but for the budget:
 * it checks, in a fixed order, whether the error is retryable, whether
 * attempts remain, how long to wait (the backoff delay, or the server's
 * Retry-After when longer, capped), whether that wait still ends inside the
 * deadline, and only then withdraws from the budget, so a retry that would
 * be refused for another reason never spends budget. ratchet_retry_run wraps
 * it in a blocking loop whose clock, sleep and randomness can be replaced.
 */
#include <errno.h>
#include <stdint.h>

#include "ratchet/clock.h"
#include "ratchet/error.h"
#include "ratchet/retry.h"
#include "ratchet/rng.h"

#define CODES_MAX 1024

static int valid_codes(const int *codes, size_t len) {
  return len <= CODES_MAX && (len == 0 || codes != NULL);
}

int ratchet_retry_validate(const ratchet_retry_options *o) {
  if (o == NULL || ratchet_backoff_validate(&o->backoff) != 0)
    return -EINVAL;
  if (!valid_codes(o->retry_on, o->retry_on_len) ||
      !valid_codes(o->abort_on, o->abort_on_len))
    return -EINVAL;
  return 0;
}

static bool contains(const int *codes, size_t len, int err) {
  for (size_t i = 0; i < len; i++)
    if (codes[i] == err)
      return true;
  return false;
}

bool ratchet_retry_is_retryable(const ratchet_retry_options *o, int err) {
  if (err == 0 || contains(o->abort_on, o->abort_on_len, err))
    return false;
  if (o->classify != NULL)
    return o->classify(o->classify_ctx, err);
  if (o->retry_on_len > 0)
    return contains(o->retry_on, o->retry_on_len, err);
  return true;
}

void ratchet_retry_start(const ratchet_retry_options *o,
                         ratchet_retry_state *st, uint64_t now_ns,
                         uint64_t deadline_ns) {
  ratchet_backoff_start(&st->backoff, now_ns);
  st->deadline_ns = deadline_ns;
  if (o->budget != NULL)
    ratchet_retry_budget_deposit(o->budget, now_ns);
}

int ratchet_retry_next(const ratchet_retry_options *o, ratchet_retry_state *st,
                       int err, uint64_t retry_after_ns, uint64_t now_ns,
                       uint64_t random, uint64_t *delay_ns) {
  const ratchet_backoff_options *b = &o->backoff;
  uint32_t made = st->backoff.attempts == 0 ? 1 : st->backoff.attempts;

  if (err == 0)
    return -EINVAL;
  if (!ratchet_retry_is_retryable(o, err))
    return RATCHET_ENOT_RETRYABLE;
  if (b->max_attempts != 0 && made >= b->max_attempts)
    return RATCHET_EATTEMPTS;

  uint64_t d = ratchet_backoff_delay(b, made, st->backoff.prev_ns, random);
  if (retry_after_ns != 0) {
    uint64_t cap =
        o->max_retry_after_ns != 0 ? o->max_retry_after_ns : b->max_delay_ns;
    uint64_t asked = retry_after_ns < cap ? retry_after_ns : cap;
    if (asked > d)
      d = asked;
  }

  if (b->max_elapsed_ns != 0) {
    uint64_t start = st->backoff.start_ns;
    uint64_t elapsed = now_ns > start ? now_ns - start : 0;
    if (elapsed > b->max_elapsed_ns || d > b->max_elapsed_ns - elapsed)
      return RATCHET_EDEADLINE;
  }
  /* Sleeping until past the deadline only to fail then helps nobody. */
  if (st->deadline_ns != 0 &&
      (now_ns >= st->deadline_ns || d > st->deadline_ns - now_ns))
    return RATCHET_EDEADLINE;

  if (o->budget != NULL && ratchet_retry_budget_withdraw(o->budget, now_ns))
    return RATCHET_EBUDGET;

  st->backoff.attempts = made == UINT32_MAX ? made : made + 1;
  st->backoff.prev_ns = d;
  *delay_ns = d;
  return 0;
}

/* The defaults behind a ratchet_retry_env with NULL members. */
struct run_env {
  const ratchet_retry_env *user;
  ratchet_rng rng;
};

static uint64_t env_now(struct run_env *e) {
  if (e->user != NULL && e->user->now_ns != NULL)
    return e->user->now_ns(e->user->ctx);
  return ratchet_now_ns();
}

static void env_sleep(struct run_env *e, uint64_t ns) {
  if (e->user != NULL && e->user->sleep_ns != NULL)
    e->user->sleep_ns(e->user->ctx, ns);
  else
    ratchet_sleep_ns(ns);
}

static uint64_t env_random(struct run_env *e) {
  if (e->user != NULL && e->user->random != NULL)
    return e->user->random(e->user->ctx);
  return ratchet_rng_next(&e->rng);
}

int ratchet_retry_run(const ratchet_retry_options *o, ratchet_retry_fn fn,
                      void *fn_ctx, uint64_t timeout_ns,
                      const ratchet_retry_env *env,
                      ratchet_retry_report *report) {
  ratchet_retry_report r = {0, 0, 0, 0, 0};
  struct run_env e;
  ratchet_retry_state st;
  int err;

  if (fn == NULL || ratchet_retry_validate(o) != 0)
    return -EINVAL;
  e.user = env;
  uint64_t start = env_now(&e);
  /* Seed from the clock and a stack address: distinct per call and per
   * thread, which is all jitter needs. */
  ratchet_rng_seed(&e.rng, start ^ (uint64_t)(uintptr_t)&e);
  uint64_t deadline = 0;
  if (timeout_ns != 0)
    deadline =
        start > UINT64_MAX - timeout_ns ? UINT64_MAX : start + timeout_ns;
  ratchet_retry_start(o, &st, start, deadline);

  for (;;) {
    uint64_t retry_after = 0, delay = 0;
    uint32_t attempt = st.backoff.attempts;
    err = fn(fn_ctx, attempt, &retry_after);
    r.attempts = attempt;
    r.last_error = err;
    uint64_t now = env_now(&e);
    r.elapsed_ns = now > start ? now - start : 0;
    if (err == 0)
      break;
    r.reason = ratchet_retry_next(o, &st, err, retry_after, now, env_random(&e),
                                  &delay);
    if (r.reason != 0)
      break;
    if (env != NULL && env->on_retry != NULL)
      env->on_retry(env->ctx, attempt, err, delay);
    env_sleep(&e, delay);
    r.total_delay_ns += delay;
  }
  if (report != NULL)
    *report = r;
  return err;
}
