/*
 * bench_resilience.c - ns/op and allocations on the hot paths of
 * libratchet-resilience: backoff delay, retry decision, breaker allow +
 * record (one thread and two threads on one breaker), rate limiter acquire
 * (token bucket and GCRA), bulkhead acquire + release.
 *
 * Each figure is the best of several runs of a few million operations on the
 * real clock. Allocations are counted two ways: through ratchet's allocator
 * hook (every allocation ratchet makes goes through it) and through glibc's
 * mallinfo2() (catches anything else). For scale, the same run times the
 * primitives an implementation could have used instead: an uncontended
 * pthread mutex lock + unlock, a contended one across two threads, and a
 * monotonic clock read. Prints a table; exits 1 if a hot path allocated.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ratchet/resilience.h>

#define RUNS 5

static atomic_size_t hook_allocs;

static void *count_malloc(size_t n) {
  atomic_fetch_add(&hook_allocs, 1);
  return malloc(n);
}
static void *count_realloc(void *p, size_t n) {
  atomic_fetch_add(&hook_allocs, 1);
  return realloc(p, n);
}
static void *count_calloc(size_t c, size_t n) {
  atomic_fetch_add(&hook_allocs, 1);
  return calloc(c, n);
}

static volatile uint64_t sink;

struct result {
  const char *name;
  double ns_per_op;
  size_t hook_allocs;
  long heap_delta;
};

/* A benchmark body: runs `iters` operations. */
typedef void (*body_fn)(void *ctx, uint64_t iters);

static struct result measure(const char *name, body_fn body, void *ctx,
                             uint64_t iters) {
  struct result r = {name, 1e30, 0, 0};
  body(ctx, iters / 10); /* warm up */
  for (int run = 0; run < RUNS; run++) {
    size_t a0 = atomic_load(&hook_allocs);
    struct mallinfo2 m0 = mallinfo2();
    uint64_t t0 = ratchet_now_ns();
    body(ctx, iters);
    uint64_t t1 = ratchet_now_ns();
    struct mallinfo2 m1 = mallinfo2();
    double ns = (double)(t1 - t0) / (double)iters;
    if (ns < r.ns_per_op)
      r.ns_per_op = ns;
    r.hook_allocs += atomic_load(&hook_allocs) - a0;
    r.heap_delta += (long)m1.uordblks - (long)m0.uordblks;
  }
  return r;
}

/* ---- bodies ---------------------------------------------------------- */

static void body_backoff(void *ctx, uint64_t iters) {
  const ratchet_backoff_options *o = ctx;
  ratchet_rng rng;
  ratchet_rng_seed(&rng, 1);
  uint64_t acc = 0;
  for (uint64_t i = 0; i < iters; i++)
    acc += ratchet_backoff_delay(o, (uint32_t)(i & 15) + 1, acc & 0xffff,
                                 ratchet_rng_next(&rng));
  sink = acc;
}

static void body_retry_next(void *ctx, uint64_t iters) {
  const ratchet_retry_options *o = ctx;
  ratchet_retry_state st;
  uint64_t acc = 0, d = 0;
  for (uint64_t i = 0; i < iters; i++) {
    if ((i & 3) == 0)
      ratchet_retry_start(o, &st, i, 0);
    if (ratchet_retry_next(o, &st, -5, 0, i, i * 0x9e3779b97f4a7c15u, &d) == 0)
      acc += d;
  }
  sink = acc;
}

struct breaker_ctx {
  ratchet_breaker *b;
  atomic_uint_fast64_t clock;
};

static void body_breaker(void *ctx, uint64_t iters) {
  struct breaker_ctx *c = ctx;
  uint64_t ok = 0;
  /* Each thread keeps its own clock (1 us per call), starting from where the
   * last run left off, so threads share only the breaker. */
  uint64_t now = atomic_fetch_add(&c->clock, iters * 1000);
  for (uint64_t i = 0; i < iters; i++) {
    now += 1000;
    if (ratchet_breaker_allow(c->b, now) == 0) {
      /* 1 call in 64 fails: the breaker stays closed, as in steady state. */
      ratchet_breaker_record(c->b,
                             (i & 63) == 0 ? RATCHET_BREAKER_FAILURE
                                           : RATCHET_BREAKER_SUCCESS,
                             500, now + 500);
      ok++;
    }
  }
  sink = ok;
}

struct pair {
  body_fn body;
  void *ctx;
  uint64_t iters;
};

static void *pair_thread(void *arg) {
  struct pair *p = arg;
  p->body(p->ctx, p->iters);
  return NULL;
}

/* Runs body on two threads at once; iters is the total over both, so
 * ns/op is wall time per operation of the pair (aggregate throughput). */
static struct pair two_threads_ctx;
static void body_two_threads(void *ctx, uint64_t iters) {
  struct pair *inner = ctx;
  pthread_t t;
  struct pair a = {inner->body, inner->ctx, iters / 2};
  struct pair b = a;
  pthread_create(&t, NULL, pair_thread, &a);
  pair_thread(&b);
  pthread_join(t, NULL);
}

struct limiter_ctx {
  ratchet_ratelimit *rl;
};

static void body_ratelimit(void *ctx, uint64_t iters) {
  struct limiter_ctx *c = ctx;
  uint64_t ok = 0, wait = 0;
  /* 1 permit per 100 ns and one acquire per 50 ns: half are refused, so
   * both the grant and the refusal path are measured. */
  for (uint64_t i = 0; i < iters; i++)
    ok += ratchet_ratelimit_acquire(c->rl, 1, i * 50, &wait) == 0;
  sink = ok + wait;
}

static void body_bulkhead(void *ctx, uint64_t iters) {
  ratchet_bulkhead *bh = ctx;
  uint64_t ok = 0;
  for (uint64_t i = 0; i < iters; i++)
    if (ratchet_bulkhead_try_acquire(bh) == 0) {
      ok++;
      ratchet_bulkhead_release(bh);
    }
  sink = ok;
}

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static uint64_t guarded;

static void body_mutex(void *ctx, uint64_t iters) {
  (void)ctx;
  for (uint64_t i = 0; i < iters; i++) {
    pthread_mutex_lock(&mutex);
    guarded++;
    pthread_mutex_unlock(&mutex);
  }
}

static void body_clock(void *ctx, uint64_t iters) {
  (void)ctx;
  uint64_t acc = 0;
  for (uint64_t i = 0; i < iters; i++)
    acc += ratchet_now_ns();
  sink = acc;
}

/* ---- main -------------------------------------------------------------- */

static int print(const struct result *r, int hot) {
  printf("%-44s %9.1f %9zu %9ld%s\n", r->name, r->ns_per_op, r->hook_allocs,
         r->heap_delta, hot ? "" : "   (reference)");
  return hot && (r->hook_allocs != 0 || r->heap_delta != 0);
}

int main(int argc, char **argv) {
  uint64_t iters = 5000000;
  if (argc > 1) {
    char *end;
    iters = strtoull(argv[1], &end, 10);
    if (*end != '\0' || iters < 1000) {
      fprintf(stderr, "usage: bench-resilience [ITERATIONS >= 1000]\n");
      return 2;
    }
  }
  ratchet_replace_allocator(count_malloc, count_realloc, count_calloc, free);

  ratchet_backoff_options bo = RATCHET_BACKOFF_OPTIONS_INIT;
  ratchet_retry_options ro = RATCHET_RETRY_OPTIONS_INIT;
  ro.backoff.max_attempts = 4;

  ratchet_breaker_options cbo = RATCHET_BREAKER_OPTIONS_INIT;
  struct breaker_ctx bc;
  atomic_init(&bc.clock, 0);
  ratchet_breaker_options tbo = cbo;
  tbo.window = RATCHET_BREAKER_WINDOW_TIME;
  tbo.window_size = 10;
  struct breaker_ctx tc;
  atomic_init(&tc.clock, 0);

  ratchet_ratelimit_options lo = RATCHET_RATELIMIT_OPTIONS_INIT;
  lo.limit = 1;
  lo.period_ns = 100;
  lo.burst = 10;
  struct limiter_ctx tb, gc;
  ratchet_ratelimit_options go = lo;
  go.algorithm = RATCHET_RATELIMIT_GCRA;

  ratchet_bulkhead_options bho = RATCHET_BULKHEAD_OPTIONS_INIT;
  ratchet_bulkhead *bh;

  if (ratchet_breaker_new(&cbo, 0, &bc.b) ||
      ratchet_breaker_new(&tbo, 0, &tc.b) ||
      ratchet_ratelimit_new(&lo, 0, &tb.rl) ||
      ratchet_ratelimit_new(&go, 0, &gc.rl) ||
      ratchet_bulkhead_new(&bho, &bh)) {
    fprintf(stderr, "bench-resilience: setup failed\n");
    return 1;
  }

  printf("libratchet-resilience %s hot paths, best of %d runs of %llu ops\n\n",
         ratchet_version_string(), RUNS, (unsigned long long)iters);
  printf("%-44s %9s %9s %9s\n", "operation", "ns/op", "allocs", "heap B");
  int bad = 0;
  struct result r;
  r = measure("backoff delay (exponential, full jitter)", body_backoff, &bo,
              iters);
  bad |= print(&r, 1);
  r = measure("retry next (classify + backoff + limits)", body_retry_next, &ro,
              iters);
  bad |= print(&r, 1);
  r = measure("breaker allow+record, count window, 1 thr", body_breaker, &bc,
              iters);
  bad |= print(&r, 1);
  r = measure("breaker allow+record, time window, 1 thr", body_breaker, &tc,
              iters);
  bad |= print(&r, 1);
  two_threads_ctx = (struct pair){body_breaker, &bc, 0};
  r = measure("breaker allow+record, count window, 2 thr", body_two_threads,
              &two_threads_ctx, iters);
  bad |= print(&r, 1);
  r = measure("rate limiter acquire, token bucket", body_ratelimit, &tb, iters);
  bad |= print(&r, 1);
  r = measure("rate limiter acquire, GCRA", body_ratelimit, &gc, iters);
  bad |= print(&r, 1);
  r = measure("bulkhead try_acquire+release", body_bulkhead, bh, iters);
  bad |= print(&r, 1);
  r = measure("pthread mutex lock+unlock, 1 thr", body_mutex, NULL, iters);
  print(&r, 0);
  two_threads_ctx = (struct pair){body_mutex, NULL, 0};
  r = measure("pthread mutex lock+unlock, 2 thr", body_two_threads,
              &two_threads_ctx, iters);
  print(&r, 0);
  r = measure("monotonic clock read (ratchet_now_ns)", body_clock, NULL, iters);
  print(&r, 0);

  ratchet_breaker_free(bc.b);
  ratchet_breaker_free(tc.b);
  ratchet_ratelimit_free(tb.rl);
  ratchet_ratelimit_free(gc.rl);
  ratchet_bulkhead_free(bh);
  ratchet_reset_allocator();
  printf("\n%s\n",
         bad ? "FAIL: a hot path allocated" : "no allocation on any hot path");
  return bad;
}
