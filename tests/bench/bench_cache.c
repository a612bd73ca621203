/*
 * bench_cache.c - ns/op on the memory tier's hot paths, per policy: get hit
 * (one and two threads), get miss, put (one and two threads, in steady state:
 * every put evicts), and the miss ratios of the four policies on a Zipf(0.9)
 * trace with a scan in the middle, against LRU.
 *
 * Each figure is the best of several runs on the real clock. Keys are 24
 * bytes ("task/0000000000000042/o"), values are not allocated (the cache
 * stores the pointer). Allocations are counted through ratchet's allocator
 * hook: get must not allocate (the program exits 1 if it does); put
 * allocates one entry and frees the one it evicts. For scale, the same run
 * times an uncontended pthread rwlock read lock + unlock, the floor of the
 * sharded read path. The miss ratios come from ratchet_cache_sim, which runs
 * the same policy code.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ratchet/cache.h>
#include <ratchet/cache_policy.h>
#include <ratchet/resilience.h>

#define RUNS     5
#define KEYS     16384 /* resident keys for the hit benchmarks */
#define KEY_LEN  24
#define PUT_KEYS (1u << 20)

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
static char (*keys)[KEY_LEN];

static void make_key(char *k, uint64_t i, char tag) {
  snprintf(k, KEY_LEN, "task/%016llx/", (unsigned long long)i);
  k[KEY_LEN - 2] = tag;
  k[KEY_LEN - 1] = '\0';
}

struct result {
  double ns_per_op;
  size_t allocs_per_run;
};

typedef void (*body_fn)(void *ctx, uint64_t iters, unsigned thread);

struct job {
  body_fn body;
  void *ctx;
  uint64_t iters;
  unsigned thread;
};

static void *job_thread(void *arg) {
  struct job *j = arg;
  j->body(j->ctx, j->iters, j->thread);
  return NULL;
}

/* Runs body on `threads` threads (iters in total) and returns wall ns/op. */
static struct result measure(body_fn body, void *ctx, uint64_t iters,
                             unsigned threads) {
  struct result r = {1e30, 0};
  body(ctx, iters / 10, 0); /* warm up */
  for (int run = 0; run < RUNS; run++) {
    pthread_t t[8];
    struct job j[8];
    size_t a0 = atomic_load(&hook_allocs);
    uint64_t t0 = ratchet_now_ns();
    for (unsigned i = 0; i < threads; i++) {
      j[i] = (struct job){body, ctx, iters / threads, i};
      if (i > 0)
        pthread_create(&t[i], NULL, job_thread, &j[i]);
    }
    job_thread(&j[0]);
    for (unsigned i = 1; i < threads; i++)
      pthread_join(t[i], NULL);
    uint64_t t1 = ratchet_now_ns();
    double ns = (double)(t1 - t0) / (double)iters;
    if (ns < r.ns_per_op)
      r.ns_per_op = ns;
    r.allocs_per_run = atomic_load(&hook_allocs) - a0;
  }
  return r;
}

/* ---- bodies ----------------------------------------------------------------
 */

static void body_get_hit(void *ctx, uint64_t iters, unsigned thread) {
  ratchet_cache *c = ctx;
  uint64_t acc = 0;
  /* Each thread walks the keys with its own stride and start. */
  uint64_t i = thread * 7919u, step = thread ? 40503u : 1;
  for (uint64_t n = 0; n < iters; n++, i += step) {
    ratchet_cache_ref *r;
    if (ratchet_cache_get(c, keys[i % KEYS], KEY_LEN, 0, &r) == 0) {
      acc += ratchet_cache_ref_size(r);
      ratchet_cache_release(c, r);
    }
  }
  sink = acc;
}

static void body_get_miss(void *ctx, uint64_t iters, unsigned thread) {
  ratchet_cache *c = ctx;
  char k[KEY_LEN];
  uint64_t acc = 0;
  for (uint64_t n = 0; n < iters; n++) {
    memcpy(k, keys[n % KEYS], KEY_LEN);
    k[KEY_LEN - 2] = 'm'; /* never stored */
    ratchet_cache_ref *r;
    acc += ratchet_cache_get(c, k, KEY_LEN, 0, &r) != 0;
  }
  sink = acc + thread;
}

struct put_ctx {
  ratchet_cache *c;
  atomic_uint_fast64_t next;
};

static void body_put(void *ctx, uint64_t iters, unsigned thread) {
  struct put_ctx *pc = ctx;
  static int value;
  char k[KEY_LEN];
  uint64_t base = atomic_fetch_add(&pc->next, iters);
  int bad = 0;
  for (uint64_t n = 0; n < iters; n++) {
    make_key(k, (base + n) % PUT_KEYS, (char)('p' + thread));
    bad |= ratchet_cache_put(pc->c, k, KEY_LEN, &value, 100, NULL, 0);
  }
  sink = (uint64_t)bad;
}

static pthread_rwlock_t rwlock = PTHREAD_RWLOCK_INITIALIZER;

static void body_rwlock(void *ctx, uint64_t iters, unsigned thread) {
  (void)ctx;
  (void)thread;
  for (uint64_t n = 0; n < iters; n++) {
    pthread_rwlock_rdlock(&rwlock);
    pthread_rwlock_unlock(&rwlock);
  }
}

/* ---- setup ------------------------------------------------------------------
 */

static ratchet_cache *filled(ratchet_cache_policy p) {
  ratchet_cache_options o = RATCHET_CACHE_OPTIONS_INIT;
  o.policy = p;
  o.capacity_bytes = UINT64_C(1) << 30;
  ratchet_cache *c;
  if (ratchet_cache_new(&o, &c) != 0)
    return NULL;
  static int value;
  for (unsigned i = 0; i < KEYS; i++)
    ratchet_cache_put(c, keys[i], KEY_LEN, &value, 100, NULL, 0);
  return c;
}

static ratchet_cache *bounded(ratchet_cache_policy p) {
  ratchet_cache_options o = RATCHET_CACHE_OPTIONS_INIT;
  o.policy = p;
  o.capacity_bytes = 100 * 10000; /* 10,000 entries of 100 bytes */
  ratchet_cache *c;
  return ratchet_cache_new(&o, &c) == 0 ? c : NULL;
}

/* ---- miss ratios
 * --------------------------------------------------------------- */

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * UINT64_C(2685821657736338717);
}

/* Zipf(0.9) over `objects` ids by inverse CDF on a table; the scan of `scan`
 * new ids runs at the middle of the trace. */
static void miss_ratios(void) {
  enum { OBJECTS = 100000, REQUESTS = 1000000, SCAN = 100000 };
  double *cdf = malloc(OBJECTS * sizeof *cdf);
  uint64_t *trace = malloc((REQUESTS + SCAN) * sizeof *trace);
  if (cdf == NULL || trace == NULL)
    abort();
  double sum = 0;
  for (unsigned k = 0; k < OBJECTS; k++)
    cdf[k] = sum += pow((double)(k + 1), -0.9);
  uint64_t st = 42, n = 0;
  for (unsigned i = 0; i < REQUESTS; i++) {
    if (i == REQUESTS / 2)
      for (unsigned s = 0; s < SCAN; s++)
        trace[n++] = (UINT64_C(1) << 40) + s;
    double u = (double)(xorshift(&st) >> 11) / 9007199254740992.0 * sum;
    unsigned lo = 0, hi = OBJECTS - 1;
    while (lo < hi) {
      unsigned mid = (lo + hi) / 2;
      if (cdf[mid] < u)
        lo = mid + 1;
      else
        hi = mid;
    }
    trace[n++] = lo + 1;
  }
  printf("\nmiss ratio, Zipf(0.9) over %u objects, %u requests, a scan of "
         "%u new ids at the middle; unit sizes\n",
         OBJECTS, REQUESTS, SCAN);
  printf("%-10s %10s %10s %10s %10s   %s\n", "cache", "s3fifo", "sieve", "lru",
         "fifo", "s3fifo vs lru");
  static const unsigned pct[] = {1, 5, 10, 25};
  for (size_t c = 0; c < sizeof pct / sizeof pct[0]; c++) {
    double ratio[4];
    for (int p = 0; p < 4; p++) {
      ratchet_cache_sim_options o = RATCHET_CACHE_SIM_OPTIONS_INIT;
      o.policy = (ratchet_cache_policy)p;
      o.capacity_bytes = OBJECTS / 100 * pct[c];
      ratchet_cache_sim *s;
      if (ratchet_cache_sim_new(&o, &s) != 0)
        abort();
      for (uint64_t i = 0; i < n; i++)
        ratchet_cache_sim_access(s, trace[i], 1);
      ratchet_cache_sim_stats ss;
      ratchet_cache_sim_stats_get(s, &ss);
      ratio[p] = (double)ss.misses / (double)ss.requests;
      ratchet_cache_sim_free(s);
    }
    printf("%3u%% %5u %10.4f %10.4f %10.4f %10.4f   %+.1f%% misses\n", pct[c],
           OBJECTS / 100 * pct[c], ratio[0], ratio[1], ratio[2], ratio[3],
           (ratio[0] / ratio[2] - 1.0) * 100.0);
  }
  free(cdf);
  free(trace);
}

/* ---- main -------------------------------------------------------------------
 */

int main(int argc, char **argv) {
  uint64_t iters = 2000000;
  if (argc > 1) {
    char *end;
    iters = strtoull(argv[1], &end, 10);
    if (*end != '\0' || iters < 1000) {
      fprintf(stderr, "usage: bench-cache [ITERATIONS >= 1000]\n");
      return 2;
    }
  }
  keys = malloc(KEYS * sizeof *keys);
  if (keys == NULL)
    return 1;
  for (unsigned i = 0; i < KEYS; i++)
    make_key(keys[i], i, 'o');
  ratchet_replace_allocator(count_malloc, count_realloc, count_calloc, free);

  printf("libratchet-caching memory tier, best of %d runs of %llu ops; "
         "%u resident keys of %d bytes\n\n",
         RUNS, (unsigned long long)iters, KEYS, KEY_LEN);
  printf("%-34s %8s %8s %8s %8s %10s\n", "ns/op", "s3fifo", "sieve", "lru",
         "fifo", "allocs/op");
  int bad = 0;
  struct {
    const char *name;
    int kind; /* 0 hit, 1 miss, 2 put */
    unsigned threads;
  } rows[] = {
      {"get hit + release, 1 thread", 0, 1},
      {"get hit + release, 2 threads", 0, 2},
      {"get miss, 1 thread", 1, 1},
      {"put (evicts one), 1 thread", 2, 1},
      {"put (evicts one), 2 threads", 2, 2},
  };
  for (size_t row = 0; row < sizeof rows / sizeof rows[0]; row++) {
    double ns[4];
    double allocs = 0;
    for (int p = 0; p < 4; p++) {
      struct result r;
      if (rows[row].kind == 2) {
        struct put_ctx pc;
        pc.c = bounded((ratchet_cache_policy)p);
        atomic_init(&pc.next, 0);
        body_put(&pc, 20000, 0); /* fill to the bound first */
        r = measure(body_put, &pc, iters / 4, rows[row].threads);
        ratchet_cache_free(pc.c);
        allocs = (double)r.allocs_per_run / (double)(iters / 4);
      } else {
        ratchet_cache *c = filled((ratchet_cache_policy)p);
        if (c == NULL)
          return 1;
        r = measure(rows[row].kind == 0 ? body_get_hit : body_get_miss, c,
                    iters, rows[row].threads);
        ratchet_cache_free(c);
        allocs = (double)r.allocs_per_run / (double)iters;
        bad |= r.allocs_per_run != 0;
      }
      ns[p] = r.ns_per_op;
    }
    printf("%-34s %8.1f %8.1f %8.1f %8.1f %10.2f\n", rows[row].name, ns[0],
           ns[1], ns[2], ns[3], allocs);
  }
  struct result r = measure(body_rwlock, NULL, iters, 1);
  printf("%-34s %8.1f   (reference)\n", "pthread rwlock rdlock+unlock",
         r.ns_per_op);
  r = measure(body_rwlock, NULL, iters, 2);
  printf("%-34s %8.1f   (reference)\n", "  same, 2 threads, one lock",
         r.ns_per_op);
  ratchet_reset_allocator();
  miss_ratios();
  free(keys);
  printf("\n%s\n", bad ? "FAIL: get allocated" : "get never allocated");
  return bad;
}
