/*
 * resilience_demo.c - libratchet-resilience in one page: a flaky service
 * called with retries and jittered backoff, behind a circuit breaker.
 *
 * The "service" is simulated: it fails 30 % of the time for the first
 * requests, is down completely for a while, then recovers. Each request is
 * run with ratchet_retry_run (exponential backoff from 10 ms, full jitter, 4
 * attempts); each attempt first asks the breaker. During the outage the
 * breaker trips, and requests fail fast without touching the service until
 * the open period is over and a probe finds it healthy again. Build it
 * against an installed ratchet with:
 *
 *   cc resilience_demo.c $(pkg-config --cflags --libs ratchet-resilience)
 *
 * Pass a number as the first argument to change the random seed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <ratchet/resilience.h>

struct demo {
  ratchet_breaker *breaker;
  ratchet_rng rng;
  uint64_t t0;
  int request;
  int service_calls;
};

static double ms_since(const struct demo *d) {
  return (double)(ratchet_now_ns() - d->t0) / 1e6;
}

/* The simulated remote service: 30 % failures, then down, then healthy. */
static int service(struct demo *d) {
  d->service_calls++;
  ratchet_sleep_ns(2 * RATCHET_NS_PER_MS); /* it takes 2 ms to answer */
  if (d->request >= 9 && d->request <= 14)
    return -ECONNREFUSED; /* the outage */
  if (d->request < 9 && ratchet_rng_unit(ratchet_rng_next(&d->rng)) < 0.3)
    return -ETIMEDOUT;
  return 0;
}

/* One attempt: ask the breaker, call the service, tell the breaker. */
static int attempt(void *ctx, uint32_t n, uint64_t *retry_after_ns) {
  struct demo *d = ctx;
  (void)retry_after_ns;
  uint64_t start = ratchet_now_ns();
  int rc = ratchet_breaker_allow(d->breaker, start);
  if (rc == 0) {
    rc = service(d);
    uint64_t end = ratchet_now_ns();
    ratchet_breaker_record(
        d->breaker, rc == 0 ? RATCHET_BREAKER_SUCCESS : RATCHET_BREAKER_FAILURE,
        end - start, end);
  }
  printf("%8.1f ms  request %2d  attempt %u: %s\n", ms_since(d), d->request,
         (unsigned)n, rc == 0 ? "ok" : ratchet_strerror(rc));
  return rc;
}

static void on_retry(void *ctx, uint32_t n, int err, uint64_t delay_ns) {
  struct demo *d = ctx;
  (void)n;
  (void)err;
  printf("%8.1f ms              retrying in %.1f ms (jittered backoff)\n",
         ms_since(d), (double)delay_ns / 1e6);
}

static void on_state_change(void *ctx, ratchet_breaker *b,
                            ratchet_breaker_state from,
                            ratchet_breaker_state to, uint64_t now_ns) {
  struct demo *d = ctx;
  (void)b;
  printf("%8.1f ms  -- breaker %s -> %s\n", (double)(now_ns - d->t0) / 1e6,
         ratchet_breaker_state_name(from), ratchet_breaker_state_name(to));
}

static uint64_t env_random(void *ctx) {
  return ratchet_rng_next(&((struct demo *)ctx)->rng);
}

int main(int argc, char **argv) {
  struct demo d = {NULL, {{0}}, ratchet_now_ns(), 0, 0};
  ratchet_rng_seed(&d.rng, argc > 1 ? strtoull(argv[1], NULL, 10) : 7);

  /* Trip when half of the last 6 calls failed (at least 4 seen); stay open
   * 150 ms; let 2 probes through when half-open. */
  ratchet_breaker_options bo = RATCHET_BREAKER_OPTIONS_INIT;
  bo.window_size = 6;
  bo.minimum_calls = 4;
  bo.failure_rate_threshold = 50.0;
  bo.open_duration_ns = 150 * RATCHET_NS_PER_MS;
  bo.permitted_calls_in_half_open = 2;
  bo.listener = on_state_change;
  bo.listener_ctx = &d;
  int rc = ratchet_breaker_new(&bo, d.t0, &d.breaker);
  if (rc != 0) {
    fprintf(stderr, "demo: breaker: %s\n", ratchet_strerror(rc));
    return 1;
  }

  /* Retry up to 4 attempts, 10 ms doubling to 80 ms, full jitter; a call
   * refused by the open breaker is not retried: it fails fast. */
  static const int abort_on[] = {RATCHET_EBREAKER_OPEN};
  ratchet_retry_options ro = RATCHET_RETRY_OPTIONS_INIT;
  ro.backoff.initial_ns = 10 * RATCHET_NS_PER_MS;
  ro.backoff.max_delay_ns = 80 * RATCHET_NS_PER_MS;
  ro.backoff.max_attempts = 4;
  ro.abort_on = abort_on;
  ro.abort_on_len = 1;
  ratchet_retry_env env = {NULL, NULL, env_random, on_retry, &d};

  int ok = 0, failed = 0, fast = 0;
  printf("ratchet %s resilience demo: 20 requests to a flaky service\n",
         ratchet_version_string());
  for (d.request = 1; d.request <= 20; d.request++) {
    ratchet_retry_report r;
    rc = ratchet_retry_run(&ro, attempt, &d, 0, &env, &r);
    if (rc == 0)
      ok++;
    else if (rc == RATCHET_EBREAKER_OPEN)
      fast++;
    else
      failed++;
    if (rc == RATCHET_EBREAKER_OPEN)
      printf("%8.1f ms  request %2d  => failed fast, breaker open\n",
             ms_since(&d), d.request);
    else
      printf("%8.1f ms  request %2d  => %s after %u attempt(s)%s%s\n",
             ms_since(&d), d.request, rc == 0 ? "done" : "FAILED",
             (unsigned)r.attempts, rc == 0 ? "" : ": ",
             rc == 0 ? "" : ratchet_strerror(r.reason));
    ratchet_sleep_ns(25 * RATCHET_NS_PER_MS); /* the next request arrives */
  }

  ratchet_breaker_metrics m;
  ratchet_breaker_metrics_get(d.breaker, ratchet_now_ns(), &m);
  printf("\nsummary: %d done, %d failed after retries, %d failed fast "
         "(breaker open); %d calls reached the service; %llu refused by "
         "the breaker; breaker now %s\n",
         ok, failed, fast, d.service_calls,
         (unsigned long long)m.total_not_permitted,
         ratchet_breaker_state_name(m.state));
  ratchet_breaker_free(d.breaker);
  return ok > 0 && fast > 0 ? 0 : 1;
}
