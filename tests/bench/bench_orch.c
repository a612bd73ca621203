/*
 * bench_orch.c - the orchestrator's figures (issue 6), printed side by side
 * with the layer below it in the same run:
 *
 *  1. end-to-end no-op tasks per second with 2 forked workers, through
 *     ratchet_orch_submit and the completion callback, at pipeline depths
 *     1 and 16; and the same tasks sent straight through ratchet_pool
 *     (no orchestrator) for the orchestrator's own cost;
 *  2. latency (submit to callback) p50/p99 at half the measured maximum
 *     rate, submitted in 1 ms ticks;
 *  3. memory per queued task (heap bytes from mallinfo2, 16-byte payloads,
 *     no worker running) and the total with 1,000,000 tasks queued.
 *
 * Usage: bench-orch [TASKS]   (default 300000; a quarter at depth 1)
 * Numbers only; nothing here is a pass/fail threshold.
 */
#define _GNU_SOURCE

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "ratchet/clock.h"
#include "ratchet/orch.h"
#include "ratchet/worker.h"

static int h_noop(void *data, ratchet_task_ctx *ctx) {
  (void)data, (void)ctx;
  return 0;
}

static int fork_main(void *arg) {
  return ratchet_worker_main(arg);
}

static ratchet_worker *worker;

static ratchet_pool_options pool_options(uint32_t depth) {
  ratchet_pool_options po = RATCHET_POOL_OPTIONS_INIT;
  po.mode = RATCHET_POOL_FORK;
  po.size = 2;
  po.fork_main = fork_main;
  po.fork_arg = worker;
  po.worker = worker;
  po.pipeline_depth = depth;
  return po;
}

/* ------------------------------------------------------------ throughput */

typedef struct run {
  ratchet_orch *o;
  uint64_t done, want, t0, t1;
  /* latency mode */
  uint64_t *lat;
  size_t n_lat;
  uint64_t rate; /* tasks per second; 0: all at once */
  uint64_t submitted;
  uv_timer_t tick;
  bool ready;
} run;

static void on_done(ratchet_orch *o, const ratchet_orch_result *r, void *data) {
  (void)o;
  run *x = data;
  if (x->want == 0)
    return; /* the memory run, closed with its tasks queued */
  if (r->status != RATCHET_STATUS_OK) {
    fprintf(stderr, "task %llu: %s: %s\n", (unsigned long long)r->id,
            ratchet_status_name(r->status), r->error);
    exit(1);
  }
  if (x->lat != NULL && x->n_lat < x->want)
    x->lat[x->n_lat++] = r->finished_ns - r->submitted_ns;
  if (++x->done == x->want)
    x->t1 = ratchet_now_ns();
}

static void submit_one(run *x) {
  static const char payload[16] = "0123456789abcde";
  ratchet_task_spec s = RATCHET_TASK_SPEC_INIT;
  s.kind = "noop";
  s.payload = payload;
  s.payload_len = sizeof payload;
  s.on_done = on_done;
  s.data = x;
  int rc = ratchet_orch_submit(x->o, &s, NULL);
  if (rc != 0) {
    fprintf(stderr, "submit: %d %s\n", rc, ratchet_orch_last_error(x->o));
    exit(1);
  }
  x->submitted++;
}

static void closed(void *data) {
  (void)data;
}

/* Waits until both workers are ready (so start-up is not measured). */
static void wait_ready(uv_loop_t *loop, ratchet_orch *o) {
  for (;;) {
    ratchet_pool_stats st;
    ratchet_pool_stats_get(ratchet_orch_pool(o, 0), &st);
    if (st.ready == st.size)
      return;
    uv_run(loop, UV_RUN_ONCE);
  }
}

static void tick_cb(uv_timer_t *h) {
  run *x = h->data;
  uint64_t now = ratchet_now_ns();
  uint64_t due = (now - x->t0) * x->rate / 1000000000u;
  while (x->submitted < due && x->submitted < x->want)
    submit_one(x);
  if (x->submitted >= x->want)
    uv_timer_stop(h);
}

static ratchet_orch *make_orch(uv_loop_t *loop, uint32_t depth,
                               uint32_t max_queued) {
  ratchet_orch_options oo = RATCHET_ORCH_OPTIONS_INIT;
  oo.max_queued = max_queued;
  ratchet_orch *o;
  if (ratchet_orch_new(loop, &oo, &o) != 0)
    exit(1);
  ratchet_pool_options po = pool_options(depth);
  if (ratchet_orch_add_pool(o, &po, NULL) < 0 || ratchet_orch_start(o) != 0)
    exit(1);
  return o;
}

static double orch_rate(uv_loop_t *loop, uint32_t depth, uint64_t n) {
  run x;
  memset(&x, 0, sizeof x);
  x.o = make_orch(loop, depth, (uint32_t)n + 1);
  x.want = n;
  wait_ready(loop, x.o);
  x.t0 = ratchet_now_ns();
  for (uint64_t i = 0; i < n; i++)
    submit_one(&x);
  while (x.done < n)
    uv_run(loop, UV_RUN_ONCE);
  ratchet_orch_close(x.o, closed);
  uv_run(loop, UV_RUN_DEFAULT);
  return (double)n / ((double)(x.t1 - x.t0) / 1e9);
}

/* The pool alone: dispatch as many as fit, refill on each outcome. */
typedef struct praw {
  ratchet_pool *p;
  uint64_t next_id, done, want, t1;
} praw;

static void praw_fill(praw *r) {
  static uint8_t payload[16] = "0123456789abcde";
  static char kind[] = "noop";
  while (r->next_id <= r->want) {
    Ratchet__V1__Task t;
    ratchet__v1__task__init(&t);
    t.id = r->next_id;
    t.kind = kind;
    t.payload.data = payload;
    t.payload.len = sizeof payload;
    if (ratchet_pool_dispatch(r->p, &t, 0, RATCHET_POOL_ANY, NULL) != 0)
      return;
    r->next_id++;
  }
}

static void praw_outcome(ratchet_pool *p, const ratchet_pool_outcome *oc) {
  praw *r = ratchet_pool_data(p);
  (void)oc;
  if (++r->done == r->want)
    r->t1 = ratchet_now_ns();
  praw_fill(r);
}

static double pool_rate(uv_loop_t *loop, uint32_t depth, uint64_t n) {
  praw r = {NULL, 1, 0, n, 0};
  ratchet_pool_options po = pool_options(depth);
  po.on_outcome = praw_outcome;
  po.data = &r;
  if (ratchet_pool_new(loop, &po, &r.p) != 0 || ratchet_pool_start(r.p) != 0)
    exit(1);
  for (;;) {
    ratchet_pool_stats st;
    ratchet_pool_stats_get(r.p, &st);
    if (st.ready == st.size)
      break;
    uv_run(loop, UV_RUN_ONCE);
  }
  uint64_t t0 = ratchet_now_ns();
  praw_fill(&r);
  while (r.done < n)
    uv_run(loop, UV_RUN_ONCE);
  ratchet_pool_close(r.p, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return (double)n / ((double)(r.t1 - t0) / 1e9);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void latency(uv_loop_t *loop, uint32_t depth, uint64_t rate,
                    uint64_t n) {
  run x;
  memset(&x, 0, sizeof x);
  x.o = make_orch(loop, depth, 1000000);
  x.want = n;
  x.rate = rate;
  x.lat = malloc(n * sizeof *x.lat);
  wait_ready(loop, x.o);
  uv_timer_init(loop, &x.tick);
  x.tick.data = &x;
  x.t0 = ratchet_now_ns();
  uv_timer_start(&x.tick, tick_cb, 1, 1);
  while (x.done < n)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&x.tick, NULL);
  ratchet_orch_close(x.o, closed);
  uv_run(loop, UV_RUN_DEFAULT);
  qsort(x.lat, x.n_lat, sizeof *x.lat, cmp_u64);
  printf("  depth %-2u at %7llu tasks/s: p50 %7.1f us   p99 %7.1f us   "
         "max %8.1f us\n",
         depth, (unsigned long long)rate, x.lat[x.n_lat / 2] / 1e3,
         x.lat[x.n_lat * 99 / 100] / 1e3, x.lat[x.n_lat - 1] / 1e3);
  free(x.lat);
}

/* -------------------------------------------------------------- memory */

static void memory(uv_loop_t *loop, uint64_t n) {
  ratchet_orch_options oo = RATCHET_ORCH_OPTIONS_INIT;
  oo.max_queued = (uint32_t)n + 1;
  ratchet_orch *o;
  if (ratchet_orch_new(loop, &oo, &o) != 0)
    exit(1);
  ratchet_pool_options po = pool_options(1);
  if (ratchet_orch_add_pool(o, &po, NULL) < 0)
    exit(1);
  /* Not started: every task stays queued. */
  run x;
  memset(&x, 0, sizeof x);
  x.o = o;
  x.want = n;
  malloc_trim(0);
  struct mallinfo2 a = mallinfo2();
  for (uint64_t i = 0; i < n; i++)
    submit_one(&x);
  struct mallinfo2 b = mallinfo2();
  x.want = 0;
  double per = (double)(b.uordblks - a.uordblks) / (double)n;
  printf("  %llu queued tasks, 16-byte payloads: %.1f MiB heap, %.0f bytes "
         "per task (%.0f + payload)\n",
         (unsigned long long)n, (double)(b.uordblks - a.uordblks) / 1048576.0,
         per, per - 16);
  ratchet_orch_close(o, closed);
  uv_run(loop, UV_RUN_DEFAULT);
}

int main(int argc, char **argv) {
  uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 300000;
  setvbuf(stdout, NULL, _IOLBF, 0);
  ratchet_worker_options wo = RATCHET_WORKER_OPTIONS_INIT;
  if (ratchet_worker_new(&wo, &worker) != 0 ||
      ratchet_worker_register(worker, "noop", h_noop, NULL) != 0)
    return 1;
  uv_loop_t *loop = uv_default_loop();

  printf("orchestrator: %llu no-op tasks, 2 forked workers (best of 3)\n",
         (unsigned long long)n);
  double best16 = 0;
  uint32_t depths[] = {1, 16};
  for (size_t d = 0; d < 2; d++) {
    double bo = 0, bp = 0;
    /* Depth 1 is a round trip per task: a quarter of the tasks will do. */
    uint64_t m = depths[d] == 1 ? n / 4 : n;
    for (int k = 0; k < 3; k++) {
      double r = orch_rate(loop, depths[d], m);
      if (r > bo)
        bo = r;
      r = pool_rate(loop, depths[d], m);
      if (r > bp)
        bp = r;
    }
    printf("  depth %-2u  orchestrator %8.0f tasks/s   pool alone %8.0f "
           "tasks/s   (orchestrator %.2fx the pool)\n",
           depths[d], bo, bp, bo / bp);
    if (depths[d] == 16)
      best16 = bo;
  }
  printf("latency, submit to callback, at half the depth-16 maximum:\n");
  uint64_t half = (uint64_t)(best16 / 2);
  latency(loop, 16, half, half * 3 > 30000 ? half * 3 : 30000);
  latency(loop, 1, 2000, 10000);
  printf("memory:\n");
  memory(loop, 100000);
  memory(loop, 1000000);
  ratchet_worker_free(worker);
  return 0;
}
