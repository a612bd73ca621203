/*
 * bench_store.c - throughput of libratchet-caching's persistent tier (LMDB)
 * and cost of the key builder.
 *
 * For values of 100 B, 4 KiB and 64 KiB it measures puts per second three
 * ways - one transaction per put with an fsync each (the default
 * durability), one transaction per put without fsync (RATCHET_STORE_NOSYNC)
 * and 100 puts per transaction with an fsync each (ratchet_store_put_batch)
 * - and gets per second of random keys already written (warm page cache;
 * each get verifies the value's checksum and copies it out). Each
 * configuration runs on a fresh store in a temporary directory under
 * $TMPDIR (or /tmp; pass another directory as argv[1] to measure a
 * different disk: fsync figures depend entirely on it). Then it times
 * ratchet_key_finish for a small key (kind + 64 B payload) and a typical
 * compile key (kind, payload, 8 inputs of 1 KiB, 2 variables, a tool and a
 * salt), in ns per key including the adds.
 *
 * Prints a table; exits 1 on any error. A benchmark, not a test: no
 * assertion depends on the numbers.
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <ratchet/alloc.h>
#include <ratchet/error.h>
#include <ratchet/key.h>
#include <ratchet/store.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void) {
  uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static void die(const char *what, int rc) {
  fprintf(stderr, "bench-store: %s: %s: %s\n", what, ratchet_err_name(rc),
          ratchet_store_last_error());
  exit(1);
}

static char base[512];

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  if (flag == FTW_DP)
    rmdir(path);
  else
    unlink(path);
  return 0;
}

static ratchet_store *fresh(ratchet_store_durability d) {
  char dir[600];
  snprintf(dir, sizeof dir, "%s/store", base);
  ratchet_store_destroy(dir);
  ratchet_store_options o = RATCHET_STORE_OPTIONS_INIT;
  o.dir = dir;
  o.durability = d;
  o.max_bytes = UINT64_C(2) << 30; /* no collection during the runs */
  ratchet_store *s = NULL;
  int rc = ratchet_store_open(&o, &s);
  if (rc != 0)
    die("open", rc);
  return s;
}

static ratchet_cache_key key_of(uint64_t i) {
  ratchet_cache_key k = {UINT64_C(0xbe7c4), i * UINT64_C(0x9e3779b97f4a7c15)};
  return k;
}

/* Puts n values of size len, one transaction each; returns puts/s. */
static double bench_puts(ratchet_store *s, const unsigned char *val, size_t len,
                         uint64_t n) {
  uint64_t now = ratchet_store_now_ms();
  double t0 = now_s();
  for (uint64_t i = 0; i < n; i++) {
    ratchet_cache_key k = key_of(i);
    int rc = ratchet_store_put(s, &k, val, len, NULL, now);
    if (rc != 0)
      die("put", rc);
  }
  return (double)n / (now_s() - t0);
}

/* Puts n values in batches of `batch`; returns puts/s. */
static double bench_batches(ratchet_store *s, const unsigned char *val,
                            size_t len, uint64_t n, size_t batch) {
  ratchet_store_item *items = malloc(batch * sizeof *items);
  uint64_t now = ratchet_store_now_ms();
  double t0 = now_s();
  for (uint64_t i = 0; i < n; i += batch) {
    size_t m = n - i < batch ? (size_t)(n - i) : batch;
    for (size_t j = 0; j < m; j++) {
      ratchet_store_item it = {key_of(i + j), val, len,
                               RATCHET_STORE_PUT_OPTIONS_INIT};
      items[j] = it;
    }
    int rc = ratchet_store_put_batch(s, items, m, now);
    if (rc != 0)
      die("put_batch", rc);
  }
  double r = (double)n / (now_s() - t0);
  free(items);
  return r;
}

/* Gets `gets` random keys among the first n; returns gets/s. */
static double bench_gets(ratchet_store *s, uint64_t n, uint64_t gets,
                         size_t len) {
  uint64_t now = ratchet_store_now_ms();
  double t0 = now_s();
  for (uint64_t i = 0; i < gets; i++) {
    ratchet_cache_key k = key_of(rng() % n);
    void *v;
    size_t got;
    int rc = ratchet_store_get(s, &k, now, &v, &got, NULL);
    if (rc != 0 || got != len)
      die("get", rc);
    ratchet_free(v);
  }
  return (double)gets / (now_s() - t0);
}

static void bench_store_sizes(void) {
  static const struct {
    size_t len;
    uint64_t n_sync, n_nosync, n_batch, gets;
  } cfg[] = {
      {100, 300, 50000, 50000, 500000},
      {4096, 300, 20000, 20000, 300000},
      {65536, 200, 3000, 3000, 50000},
  };
  printf("| value | puts/s, fsync each | puts/s, no fsync | "
         "puts/s, 100 per txn + fsync | gets/s |\n");
  printf("| ---: | ---: | ---: | ---: | ---: |\n");
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    size_t len = cfg[c].len;
    unsigned char *val = malloc(len);
    for (size_t i = 0; i < len; i++)
      val[i] = (unsigned char)rng();
    ratchet_store *s = fresh(RATCHET_STORE_SYNC);
    double sync = bench_puts(s, val, len, cfg[c].n_sync);
    ratchet_store_close(s);
    s = fresh(RATCHET_STORE_SYNC);
    double batch = bench_batches(s, val, len, cfg[c].n_batch, 100);
    ratchet_store_close(s);
    s = fresh(RATCHET_STORE_NOSYNC);
    double nosync = bench_puts(s, val, len, cfg[c].n_nosync);
    double gets = bench_gets(s, cfg[c].n_nosync, cfg[c].gets, len);
    ratchet_store_close(s);
    char label[32];
    if (len >= 1024)
      snprintf(label, sizeof label, "%zu KiB", len / 1024);
    else
      snprintf(label, sizeof label, "%zu B", len);
    printf("| %s | %.0f | %.0f | %.0f | %.0f |\n", label, sync, nosync, batch,
           gets);
    fflush(stdout);
    free(val);
  }
}

/* ---- key builder ---- */

static volatile uint64_t sink;

static double bench_key(int full, uint64_t iters) {
  ratchet_key_builder *b = NULL;
  if (ratchet_key_builder_new(&b) != 0)
    exit(1);
  unsigned char payload[64], input[1024];
  memset(payload, 'p', sizeof payload);
  memset(input, 'i', sizeof input);
  static const char *const names[] = {"src/a.c", "src/b.c",     "src/c.h",
                                      "src/d.h", "include/e.h", "lib/f.c",
                                      "lib/g.h", "Makefile"};
  double best = 1e30;
  for (int run = 0; run < 3; run++) {
    double t0 = now_s();
    for (uint64_t i = 0; i < iters; i++) {
      ratchet_cache_key k;
      ratchet_key_builder_reset(b);
      payload[0] = (unsigned char)i;
      ratchet_key_add_kind(b, "cc");
      ratchet_key_add_payload(b, payload, sizeof payload);
      if (full) {
        for (int j = 0; j < 8; j++)
          ratchet_key_add_input(b, names[j], input, sizeof input);
        ratchet_key_add_env(b, "CC", "gcc");
        ratchet_key_add_env(b, "CFLAGS", "-O2 -g");
        ratchet_key_add_tool(b, "gcc", "12.2.0");
        ratchet_key_add_salt(b, "1");
      }
      if (ratchet_key_finish(b, &k) != 0)
        exit(1);
      sink += k.lo;
    }
    double ns = (now_s() - t0) * 1e9 / (double)iters;
    best = ns < best ? ns : best;
  }
  ratchet_key_builder_free(b);
  return best;
}

int main(int argc, char **argv) {
  const char *tmp = getenv("TMPDIR");
  if (argc > 1)
    snprintf(base, sizeof base, "%s/ratchet-bench-XXXXXX", argv[1]);
  else
    snprintf(base, sizeof base, "%s/ratchet-bench-XXXXXX",
             tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
  if (mkdtemp(base) == NULL) {
    perror("bench-store: mkdtemp");
    return 1;
  }
  struct statfs fs;
  if (statfs(base, &fs) == 0)
    printf("store in %s (file system magic 0x%lx%s)\n\n", base,
           (unsigned long)fs.f_type,
           fs.f_type == 0x01021994 ? ", tmpfs: fsync costs nothing" : "");
  bench_store_sizes();
  printf("\n| key | ns per key |\n| --- | ---: |\n");
  printf("| kind + 64 B payload | %.0f |\n", bench_key(0, 1000000));
  printf("| kind, payload, 8 inputs x 1 KiB, 2 env, tool, salt | %.0f |\n",
         bench_key(1, 200000));
  nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}
