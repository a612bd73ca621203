/*
 * test_cachesim.c - the ratchet-cachesim command, run as a child process:
 * --help and the documented exit codes, errors that name the bad flag and
 * value, unreadable and truncated traces, the output format, miss counts on
 * synthetic traces (loops and a scan derived by hand; Zipf traces checked
 * against the naive model of policy_model.c), and the real CloudPhysics
 * trace from ../shared/data/traces (which must be there: the test fails, it
 * does not skip): pinned miss counts, S3-FIFO below LRU, and the model's
 * counts at the sizes where it is quick enough.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy_model.h"
#include "ratchet/cache.h"
#include "testutil.h"

#ifndef RATCHET_CACHESIM_PATH
#error "RATCHET_CACHESIM_PATH must name the ratchet-cachesim binary"
#endif
#ifndef RATCHET_TRACE_DIR
#error "RATCHET_TRACE_DIR must name ../shared/data/traces"
#endif

#define REAL_TRACE    RATCHET_TRACE_DIR "/cloudPhysicsIO.oracleGeneral.bin"
#define REAL_REQUESTS 113872

extern char **environ;

static char tmpdir[64];

struct run {
  int status; /* exit status, or -1 if it did not exit normally */
  char *out, *err;
};

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  assert_non_null(buf);
  size_t got;
  while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
    n += got;
    if (n + 1 == cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
  }
  fclose(f);
  buf[n] = '\0';
  return buf;
}

/* Runs ratchet-cachesim with args (NULL-terminated), capturing its output. */
static void run(struct run *r, const char *const *args) {
  char out[128], err[128];
  snprintf(out, sizeof out, "%s/stdout", tmpdir);
  snprintf(err, sizeof err, "%s/stderr", tmpdir);
  const char *argv[32] = {RATCHET_CACHESIM_PATH};
  size_t n = 1;
  for (; args[n - 1] != NULL; n++) {
    assert_true(n < 31);
    argv[n] = args[n - 1];
  }
  argv[n] = NULL;
  posix_spawn_file_actions_t fa;
  assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
  posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  pid_t pid;
  int e = posix_spawn(&pid, RATCHET_CACHESIM_PATH, &fa, NULL,
                      (char *const *)argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (e != 0)
    fail_msg("cannot run %s: %s", RATCHET_CACHESIM_PATH, strerror(e));
  int ws;
  assert_int_equal(waitpid(pid, &ws, 0), pid);
  r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
  r->out = slurp(out);
  r->err = slurp(err);
}

static void run_free(struct run *r) {
  free(r->out);
  free(r->err);
}

/* Runs and checks the exit status and that stderr contains each needle. */
static void expect(const char *const *args, int status, const char *needle1,
                   const char *needle2) {
  struct run r;
  run(&r, args);
  if (r.status != status)
    fail_msg("'%s': exit %d, want %d; stderr: %s", args[0] ? args[0] : "",
             r.status, status, r.err);
  if (needle1 != NULL && strstr(r.err, needle1) == NULL)
    fail_msg("stderr lacks \"%s\": %s", needle1, r.err);
  if (needle2 != NULL && strstr(r.err, needle2) == NULL)
    fail_msg("stderr lacks \"%s\": %s", needle2, r.err);
  run_free(&r);
}

static void put_le(unsigned char *p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

/* Writes an oracleGeneral trace; returns its path (static buffer). */
static const char *write_trace(const char *name, const tm_req *t, size_t n) {
  static char path[128];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  for (size_t i = 0; i < n; i++) {
    unsigned char rec[24];
    put_le(rec, (uint64_t)i, 4);
    put_le(rec + 4, t[i].id, 8);
    put_le(rec + 12, t[i].size, 4);
    put_le(rec + 16, UINT64_MAX, 8); /* next access: -1 */
    assert_int_equal(fwrite(rec, 1, sizeof rec, f), sizeof rec);
  }
  assert_int_equal(fclose(f), 0);
  return path;
}

/* One parsed output line. */
struct line {
  char policy[16];
  unsigned long long size, requests, misses;
  double ratio;
};

/* Parses every line of out, checking the exact format; returns the count. */
static size_t parse(const char *out, struct line *l, size_t max) {
  size_t n = 0;
  for (const char *p = out; *p != '\0'; n++) {
    const char *nl = strchr(p, '\n');
    assert_non_null(nl);
    assert_true(n < max);
    int used = 0;
    int got = sscanf(p,
                     "policy=%15[a-z0-9] size=%llu requests=%llu misses=%llu "
                     "miss_ratio=%lf%n",
                     l[n].policy, &l[n].size, &l[n].requests, &l[n].misses,
                     &l[n].ratio, &used);
    if (got != 5 || p + used != nl)
      fail_msg("bad output line: %.*s", (int)(nl - p), p);
    /* The ratio is printed with six decimals. */
    char want[32];
    snprintf(want, sizeof want, "%.6f",
             l[n].requests ? (double)l[n].misses / (double)l[n].requests : 0.0);
    assert_non_null(strstr(p, want));
    p = nl + 1;
  }
  return n;
}

/* Misses of the model on t at capacity. */
static uint64_t model_misses(ratchet_cache_policy p, uint64_t capacity,
                             const tm_req *t, size_t n) {
  tm_model *m = tm_model_new(p, capacity, 0);
  assert_non_null(m);
  uint64_t misses = 0;
  for (size_t i = 0; i < n; i++)
    misses += tm_model_access(m, t[i].id, t[i].size) == 0;
  tm_model_free(m);
  return misses;
}

static const char *const all_policies = "s3fifo,sieve,lru,fifo";

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/ratchet-cachesim-XXXXXX");
  return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state) {
  (void)state;
  static const char *const files[] = {"stdout", "stderr", "t.bin", "short.bin",
                                      "empty.bin"};
  char path[128];
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
    unlink(path);
  }
  return rmdir(tmpdir);
}

/* ---- command line ----------------------------------------------------------
 */

static void test_help(void **state) {
  (void)state;
  struct run r;
  run(&r, (const char *const[]){"--help", NULL});
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "usage: ratchet-cachesim --policy"));
  assert_non_null(strstr(r.out, "policy=NAME size=BYTES requests=N misses=N "
                                "miss_ratio=F"));
  assert_non_null(strstr(r.out, "100  usage error"));
  assert_non_null(strstr(r.out, "111  system failure"));
  run_free(&r);
}

static void test_usage_errors(void **state) {
  (void)state;
  const char *t = write_trace("t.bin", &(tm_req){1, 1}, 1);
  expect((const char *const[]){NULL}, 100, "missing --policy", NULL);
  expect((const char *const[]){"--policy", "arc", "--size", "10", t, NULL}, 100,
         "--policy", "'arc'");
  expect((const char *const[]){"--policy=lru,mru", "--size=10", t, NULL}, 100,
         "--policy", "'mru'");
  expect((const char *const[]){"--policy", "lru", "--size", "0", t, NULL}, 100,
         "--size", "'0'");
  expect((const char *const[]){"--policy", "lru", "--size", "10,12x", t, NULL},
         100, "--size", "'12x'");
  expect((const char *const[]){"--policy", "lru", "--size", "10,,20", t, NULL},
         100, "--size", "''");
  expect((const char *const[]){"--policy", "lru", "--size",
                               "99999999999999999999", t, NULL},
         100, "--size", "'99999999999999999999'");
  expect((const char *const[]){"--policy", "lru", "--size", "-5", t, NULL}, 100,
         "--size", "'-5'");
  expect((const char *const[]){"--policy", "lru", t, NULL}, 100,
         "missing --size", NULL);
  expect((const char *const[]){"--policy", "lru", "--size", "10", NULL}, 100,
         "missing TRACE", NULL);
  expect((const char *const[]){"--policy", "lru", "--size", NULL}, 100,
         "--size needs a value", NULL);
  expect((const char *const[]){"--policy", "lru", "--size", "10", "--frob", t,
                               NULL},
         100, "unknown option '--frob'", NULL);
  expect((const char *const[]){"--policy", "lru", "--size", "10", t, t, NULL},
         100, "more than one TRACE", NULL);
}

static void test_trace_errors(void **state) {
  (void)state;
  char missing[160];
  snprintf(missing, sizeof missing, "%s/no-such-trace.bin", tmpdir);
  expect(
      (const char *const[]){"--policy", "lru", "--size", "10", missing, NULL},
      111, "cannot open trace", missing);
  /* Two whole records and half of a third. */
  tm_req two[2] = {{1, 1}, {2, 1}};
  const char *t = write_trace("short.bin", two, 2);
  FILE *f = fopen(t, "ab");
  assert_non_null(f);
  assert_int_equal(fwrite("0123456789ab", 1, 12, f), 12);
  fclose(f);
  expect((const char *const[]){"--policy", "lru", "--size", "10", t, NULL}, 1,
         "truncated record at byte 48", NULL);
  /* An empty trace is a valid one. */
  t = write_trace("empty.bin", two, 0);
  struct run r;
  run(&r, (const char *const[]){"--policy", "fifo", "--size", "1k", t, NULL});
  assert_int_equal(r.status, 0);
  assert_string_equal(r.out, "policy=fifo size=1024 requests=0 misses=0 "
                             "miss_ratio=0.000000\n");
  run_free(&r);
}

/* ---- synthetic traces ---------------------------------------------------- */

/* Runs every policy at the given sizes on t; checks the lines' order and
 * fields, and each miss count against want[policy * 8 + size index]. */
static void check_run(const tm_req *t, size_t n, const char *sizes,
                      const uint64_t *caps, size_t ncaps,
                      const uint64_t *want) {
  const char *path = write_trace("t.bin", t, n);
  struct run r;
  run(&r, (const char *const[]){"--policy", all_policies, "--size", sizes, path,
                                NULL});
  if (r.status != 0)
    fail_msg("exit %d: %s", r.status, r.err);
  struct line l[32];
  assert_int_equal(parse(r.out, l, 32), 4 * ncaps);
  for (size_t p = 0; p < 4; p++)
    for (size_t k = 0; k < ncaps; k++) {
      const struct line *x = &l[p * ncaps + k];
      assert_string_equal(x->policy,
                          ratchet_cache_policy_name((ratchet_cache_policy)p));
      assert_int_equal(x->size, caps[k]);
      assert_int_equal(x->requests, n);
      if (x->misses != want[p * 8 + k])
        fail_msg("%s size %llu: %llu misses, want %llu", x->policy, x->size,
                 x->misses, (unsigned long long)want[p * 8 + k]);
    }
  assert_string_equal(r.err, "");
  run_free(&r);
}

/* Loops and the scan, with miss counts derived by hand (see test_policy.c:
 * a loop that fits misses once per object; one that does not misses every
 * time under all four policies; the scan costs LRU and FIFO the hot set). */
static void test_by_hand(void **state) {
  (void)state;
  static const uint64_t caps[] = {50};
  tm_req *t = tm_trace_loop(1, 40, 10, 1);
  static const uint64_t fits[4][8] = {{40}, {40}, {40}, {40}};
  check_run(t, 400, "50", caps, 1, &fits[0][0]);
  free(t);
  t = tm_trace_loop(1, 100, 10, 1);
  static const uint64_t thrash[4][8] = {{1000}, {1000}, {1000}, {1000}};
  check_run(t, 1000, "50", caps, 1, &thrash[0][0]);
  free(t);

  tm_req scan[220];
  size_t n = 0;
  for (int r = 0; r < 3; r++)
    for (uint64_t id = 1; id <= 5; id++)
      scan[n++] = (tm_req){id, 1};
  for (uint64_t id = 1000; id < 1200; id++)
    scan[n++] = (tm_req){id, 1};
  for (uint64_t id = 1; id <= 5; id++)
    scan[n++] = (tm_req){id, 1};
  static const uint64_t cap100[] = {100};
  static const uint64_t scanned[4][8] = {{205}, {205}, {210}, {210}};
  check_run(scan, n, "100", cap100, 1, &scanned[0][0]);
}

/* Zipf, Zipf with a scan, loops with mixed sizes: the model's counts. */
static void test_against_model(void **state) {
  (void)state;
  struct {
    tm_req *t;
    size_t n;
    const char *sizes;
    uint64_t caps[4];
    size_t ncaps;
  } cases[3];
  cases[0].t = tm_trace_zipf(30000, 5000, 0.9, 1, 100, 21);
  cases[0].n = 30000;
  cases[0].sizes = "2000,8k,30000,100000";
  cases[1].t = tm_trace_zipf_scan(30000, 2000, 0.9, 6000, 7, 22, &cases[1].n);
  cases[1].sizes = "700,3500,7k";
  cases[2].t = tm_trace_loop(1, 300, 20, 13);
  for (size_t i = 0; i < 6000; i++)
    cases[2].t[i].size = 1 + (uint32_t)(cases[2].t[i].id * 7 % 50);
  cases[2].n = 6000;
  cases[2].sizes = "1000,5000,7000";
  const uint64_t caps0[] = {2000, 8192, 30000, 100000};
  const uint64_t caps1[] = {700, 3500, 7168};
  const uint64_t caps2[] = {1000, 5000, 7000};
  memcpy(cases[0].caps, caps0, sizeof caps0);
  cases[0].ncaps = 4;
  memcpy(cases[1].caps, caps1, sizeof caps1);
  cases[1].ncaps = 3;
  memcpy(cases[2].caps, caps2, sizeof caps2);
  cases[2].ncaps = 3;
  for (size_t c = 0; c < 3; c++) {
    uint64_t want[4][8];
    for (int p = 0; p < 4; p++)
      for (size_t k = 0; k < cases[c].ncaps; k++)
        want[p][k] = model_misses((ratchet_cache_policy)p, cases[c].caps[k],
                                  cases[c].t, cases[c].n);
    check_run(cases[c].t, cases[c].n, cases[c].sizes, cases[c].caps,
              cases[c].ncaps, &want[0][0]);
    free(cases[c].t);
  }
}

/* ---- the real trace --------------------------------------------------------
 */

static tm_req *read_real(size_t *n) {
  struct stat st;
  if (stat(REAL_TRACE, &st) != 0)
    fail_msg("the real trace is missing: %s (%s); it ships in "
             "../shared/data/traces, see its README.md",
             REAL_TRACE, strerror(errno));
  assert_int_equal(st.st_size, (off_t)REAL_REQUESTS * 24);
  FILE *f = fopen(REAL_TRACE, "rb");
  assert_non_null(f);
  tm_req *t = malloc(REAL_REQUESTS * sizeof *t);
  assert_non_null(t);
  for (size_t i = 0; i < REAL_REQUESTS; i++) {
    unsigned char rec[24];
    assert_int_equal(fread(rec, 1, 24, f), 24);
    uint64_t id = 0;
    uint32_t size = 0;
    for (int b = 7; b >= 0; b--)
      id = id << 8 | rec[4 + b];
    for (int b = 3; b >= 0; b--)
      size = size << 8 | rec[12 + b];
    t[i] = (tm_req){id, size};
  }
  fclose(f);
  *n = REAL_REQUESTS;
  return t;
}

static void test_real_trace(void **state) {
  (void)state;
  size_t n;
  tm_req *t = read_real(&n);
  free(t);
  /* 16 MiB, 64 MiB, 256 MiB, 1 GiB of a 1.94 GiB footprint. The pinned
   * counts were checked against an independent model of the reference text
   * (and the small sizes are checked again below by policy_model.c). */
  static const uint64_t caps[] = {UINT64_C(16) << 20, UINT64_C(64) << 20,
                                  UINT64_C(256) << 20, UINT64_C(1) << 30};
  static const uint64_t want[4][8] = {
      {93784, 92531, 82387, 70355}, /* s3fifo */
      {93788, 92965, 86720, 64376}, /* sieve */
      {95095, 94203, 89783, 71704}, /* lru */
      {95473, 94342, 89386, 72140}, /* fifo */
  };
  struct run r;
  run(&r, (const char *const[]){"--policy", all_policies, "--size",
                                "16m,64m,256m,1g", REAL_TRACE, NULL});
  if (r.status != 0)
    fail_msg("exit %d: %s", r.status, r.err);
  struct line l[16];
  assert_int_equal(parse(r.out, l, 16), 16);
  for (size_t p = 0; p < 4; p++)
    for (size_t k = 0; k < 4; k++) {
      const struct line *x = &l[p * 4 + k];
      assert_int_equal(x->size, caps[k]);
      assert_int_equal(x->requests, REAL_REQUESTS);
      if (x->misses != want[p][k])
        fail_msg("%s size %llu: %llu misses, want %llu", x->policy, x->size,
                 x->misses, (unsigned long long)want[p][k]);
    }
  /* The point of S3-FIFO: fewer misses than LRU at every size. */
  for (size_t k = 0; k < 4; k++)
    assert_true(l[k].misses < l[8 + k].misses);
  run_free(&r);
}

/* The model replays the real trace at sizes small enough for its O(n)
 * lists; the binary must agree with it exactly. */
static void test_real_trace_model(void **state) {
  (void)state;
  size_t n;
  tm_req *t = read_real(&n);
  static const uint64_t caps[] = {UINT64_C(1) << 20, UINT64_C(4) << 20};
  uint64_t want[4][8];
  for (int p = 0; p < 4; p++)
    for (size_t k = 0; k < 2; k++)
      want[p][k] = model_misses((ratchet_cache_policy)p, caps[k], t, n);
  struct run r;
  run(&r, (const char *const[]){"--policy", all_policies, "--size", "1m,4m",
                                REAL_TRACE, NULL});
  if (r.status != 0)
    fail_msg("exit %d: %s", r.status, r.err);
  struct line l[8];
  assert_int_equal(parse(r.out, l, 8), 8);
  for (size_t p = 0; p < 4; p++)
    for (size_t k = 0; k < 2; k++)
      if (l[p * 2 + k].misses != want[p][k])
        fail_msg("%s size %llu: %llu misses, model %llu", l[p * 2 + k].policy,
                 l[p * 2 + k].size, l[p * 2 + k].misses,
                 (unsigned long long)want[p][k]);
  run_free(&r);
  free(t);
}

int test_cachesim(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_help),
      cmocka_unit_test(test_usage_errors),
      cmocka_unit_test(test_trace_errors),
      cmocka_unit_test(test_by_hand),
      cmocka_unit_test(test_against_model),
      cmocka_unit_test(test_real_trace),
      cmocka_unit_test(test_real_trace_model),
  };
  return cmocka_run_group_tests_name("cachesim", tests, setup, teardown);
}
