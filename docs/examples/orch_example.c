/*
 * orch_example.c - a complete program on libratchet-runtime: it registers a
 * C handler, forks a pool of workers running it, and pushes a few thousand
 * tasks through an orchestrator with retries and a result cache.
 *
 * The handler "square" squares the integer in its payload; one call in
 * ten fails on its first attempt (a flaky dependency, say), so the retry
 * policy has work to do. The inputs are sent twice: the second round is
 * served by the cache, and repeats within a round join the copy that is
 * already running. An
 * accounting system of our own counts outcomes per status and shows how a
 * program plugs its own policy in next to the built-in ones.
 *
 *   orch-example [TASKS] [CACHE_DIR]
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "ratchet/orch.h"
#include "ratchet/store.h"
#include "ratchet/tiered.h"
#include "ratchet/worker.h"

/* ---- the worker side: runs in the forked processes -------------------- */

static int square(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  size_t len;
  const uint8_t *p = ratchet_task_payload(ctx, &len);
  char in[32];
  if (len == 0 || len >= sizeof in) {
    ratchet_task_set_status(ctx, RATCHET_TASK_BAD_REQUEST);
    return ratchet_task_set_error(ctx, "payload must be a short integer");
  }
  memcpy(in, p, len);
  in[len] = '\0';
  long long v = atoll(in);
  if (v % 10 == 3 && ratchet_task_attempt(ctx) == 1) {
    ratchet_task_set_status(ctx, RATCHET_TASK_FAILED);
    return ratchet_task_set_error(ctx, "flaky: try again");
  }
  char out[48];
  int n = snprintf(out, sizeof out, "%lld", v * v);
  return ratchet_task_set_output(ctx, out, (size_t)n);
}

static int worker_main(void *arg) {
  return ratchet_worker_main(arg);
}

/* ---- a user system: counts final statuses ------------------------------ */

typedef struct tally {
  unsigned by_status[RATCHET_STATUS_COUNT];
} tally;

static void tally_run(void *ctx, ratchet_orch *o, ratchet_orch_task *t,
                      ratchet_lifecycle at, const ratchet_attempt *a,
                      uint64_t now_ns, ratchet_decision *d) {
  (void)o, (void)t, (void)at, (void)now_ns, (void)d;
  tally *c = ctx;
  c->by_status[a->final->status]++;
}

/* ---- the program -------------------------------------------------------- */

typedef struct app {
  unsigned done, cached, coalesced, retried, wrong;
} app;

static void on_done(ratchet_orch *o, const ratchet_orch_result *r, void *data) {
  (void)o;
  app *a = ratchet_orch_data(o);
  long long v = (long long)(intptr_t)data;
  char want[48];
  snprintf(want, sizeof want, "%lld", v * v);
  if (r->status != RATCHET_STATUS_OK || r->output_len != strlen(want) ||
      memcmp(r->output, want, r->output_len) != 0)
    a->wrong++;
  a->done++;
  a->cached += r->cached;
  a->coalesced += r->coalesced;
  a->retried += r->attempts > 1;
}

/* The end of a round: the first returns from uv_run, the last closes. */
static void round_done(ratchet_orch *o, void *arg) {
  (void)o, (void)arg;
  uv_stop(uv_default_loop());
}

static void drained(ratchet_orch *o, void *arg) {
  (void)arg;
  ratchet_orch_close(o, NULL);
}

int main(int argc, char **argv) {
  unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 5000;
  const char *dir = argc > 2 ? argv[2] : "orch-example-cache";

  /* The handlers, registered before the pool forks. */
  ratchet_worker_options wo = RATCHET_WORKER_OPTIONS_INIT;
  ratchet_worker *w;
  if (ratchet_worker_new(&wo, &w) != 0 ||
      ratchet_worker_register(w, "square", square, NULL) != 0)
    return 1;

  /* A two-tier result cache: memory in front of an LMDB store. */
  ratchet_store_options so = RATCHET_STORE_OPTIONS_INIT;
  so.dir = dir;
  ratchet_store *store;
  int rc = ratchet_store_open(&so, &store);
  if (rc != 0) {
    fprintf(stderr, "cache %s: %s\n", dir, ratchet_store_last_error());
    return 1;
  }
  ratchet_tiered_options to = RATCHET_TIERED_OPTIONS_INIT;
  to.store = store;
  ratchet_tiered *cache;
  if (ratchet_tiered_new(&to, &cache) != 0)
    return 1;
  (void)ratchet_tiered_clear(cache); /* a fresh run each time */

  app a;
  memset(&a, 0, sizeof a);
  uv_loop_t *loop = uv_default_loop();
  ratchet_orch_options oo = RATCHET_ORCH_OPTIONS_INIT;
  oo.cache = cache;
  oo.data = &a;
  ratchet_orch *o;
  if (ratchet_orch_new(loop, &oo, &o) != 0)
    return 1;

  /* Two forked workers, 8 tasks in flight each. */
  ratchet_pool_options po = RATCHET_POOL_OPTIONS_INIT;
  po.mode = RATCHET_POOL_FORK;
  po.size = 2;
  po.fork_main = worker_main;
  po.fork_arg = w;
  po.worker = w;
  po.pipeline_depth = 8;
  if (ratchet_orch_add_pool(o, &po, NULL) < 0)
    return 1;

  tally t;
  memset(&t, 0, sizeof t);
  ratchet_system sys = {.name = "tally",
                        .points = RATCHET_AT_BIT(RATCHET_AT_FINAL),
                        .run = tally_run,
                        .free_ctx = NULL,
                        .ctx = &t};
  if (ratchet_orch_add_system(o, &sys) != 0 || ratchet_orch_start(o) != 0)
    return 1;

  /* Retries: up to 3 attempts, 10 ms apart, doubling. Cache: by kind and
   * payload. */
  ratchet_policy_retry retry = RATCHET_POLICY_RETRY_INIT;
  retry.backoff.initial_ns = 10 * RATCHET_NS_PER_MS;
  ratchet_policy_cache pc = RATCHET_POLICY_CACHE_INIT;
  /* Two rounds over the same inputs: in the first, every tenth task repeats
   * the one before it while that one is still running (it joins it); in
   * the second, after the first has drained, every answer is in the
   * cache. */
  for (int round = 0; round < 2; round++) {
    for (unsigned i = 0; i < n / 2; i++) {
      long long v = i % 10 == 9 ? i - 1 : i;
      char payload[32];
      int len = snprintf(payload, sizeof payload, "%lld", v);
      ratchet_task_spec s = RATCHET_TASK_SPEC_INIT;
      s.kind = "square";
      s.payload = payload;
      s.payload_len = (size_t)len;
      s.retry = &retry;
      s.cache = &pc;
      s.on_done = on_done;
      s.data = (void *)(intptr_t)v;
      rc = ratchet_orch_submit(o, &s, NULL);
      if (rc != 0) {
        fprintf(stderr, "submit: %s\n", ratchet_orch_last_error(o));
        return 1;
      }
    }
    ratchet_orch_drain(o, round == 0 ? round_done : drained, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
  }

  printf("%u tasks: %u ok, %u wrong, %u retried, %u from the cache, %u "
         "joined an identical task\n",
         a.done, t.by_status[RATCHET_STATUS_OK], a.wrong, a.retried, a.cached,
         a.coalesced);
  ratchet_tiered_free(cache);
  ratchet_store_close(store);
  ratchet_worker_free(w);
  return a.done == n && a.wrong == 0 ? 0 : 1;
}
