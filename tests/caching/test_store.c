/*
 * test_store.c - the LMDB persistent tier: round trips, TTL, collection by
 * size, age and expiry, a full map, persistence, permissions, the default
 * directory, one open per process, a format from the future, foreign,
 * garbage, truncated and garbled files, names and explain, batches,
 * allocation failure, and the crash test: a child writing in a loop is
 * SIGKILLed 20 times, and after each kill every value the store still
 * serves must be exactly one the child wrote.
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "ratchet/alloc.h"
#include "ratchet/error.h"
#include "ratchet/key.h"
#include "ratchet/store.h"
#include "testutil.h"

extern char **environ;

/* ---- helpers ---- */

static char *make_tmpdir(void) {
  const char *t = getenv("TMPDIR");
  char buf[512];
  snprintf(buf, sizeof buf, "%s/ratchet-store-XXXXXX",
           t != NULL && t[0] == '/' ? t : "/tmp");
  assert_non_null(mkdtemp(buf));
  return strdup(buf);
}

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

static void rm_tree(char *dir) {
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free(dir);
}

/* A store directory inside a fresh temporary directory. */
struct fix {
  char *tmp;
  char dir[600];
};

static void fix_init(struct fix *f) {
  f->tmp = make_tmpdir();
  snprintf(f->dir, sizeof f->dir, "%s/store", f->tmp);
}

static void fix_done(struct fix *f) {
  rm_tree(f->tmp);
}

/* The defaults, but without fsync: durability against power loss is not
 * what most tests look at, and 700 fsyncs cost seconds. The durability and
 * crash tests use the real default. */
static ratchet_store_options quick(void) {
  ratchet_store_options o = RATCHET_STORE_OPTIONS_INIT;
  o.durability = RATCHET_STORE_NOSYNC;
  return o;
}

static ratchet_store *open_store(const char *dir,
                                 const ratchet_store_options *base) {
  ratchet_store_options o = quick();
  if (base != NULL)
    o = *base;
  o.dir = dir;
  ratchet_store *s = NULL;
  int rc = ratchet_store_open(&o, &s);
  if (rc != 0)
    fail_msg("open %s: %s: %s", dir, ratchet_err_name(rc),
             ratchet_store_last_error());
  return s;
}

static ratchet_cache_key K(uint64_t i) {
  ratchet_cache_key k = {UINT64_C(0x5eed), i};
  return k;
}

static void put(ratchet_store *s, uint64_t i, const void *v, size_t n,
                uint64_t now) {
  int rc = ratchet_store_put(s, &(ratchet_cache_key){UINT64_C(0x5eed), i}, v, n,
                             NULL, now);
  if (rc != 0)
    fail_msg("put %llu: %s: %s", (unsigned long long)i, ratchet_err_name(rc),
             ratchet_store_last_error());
}

/* Gets key i: returns the result; on a hit *out holds the value. */
static int get(ratchet_store *s, uint64_t i, uint64_t now, void **out,
               size_t *n) {
  ratchet_cache_key k = K(i);
  return ratchet_store_get(s, &k, now, out, n, NULL);
}

static int has(ratchet_store *s, uint64_t i, uint64_t now) {
  void *v;
  size_t n;
  int rc = get(s, i, now, &v, &n);
  if (rc == 0)
    ratchet_free(v);
  return rc == 0;
}

static ratchet_store_stats stats(ratchet_store *s) {
  ratchet_store_stats st;
  ratchet_store_stats_get(s, &st);
  return st;
}

static unsigned char *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)len + 1);
  assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return buf;
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}

static size_t find(const unsigned char *hay, size_t n, const void *needle,
                   size_t m) {
  for (size_t i = 0; i + m <= n; i++)
    if (memcmp(hay + i, needle, m) == 0)
      return i;
  return SIZE_MAX;
}

static void assert_contains(const char *s, const char *sub) {
  if (strstr(s, sub) == NULL)
    fail_msg("\"%s\" does not contain \"%s\"", s, sub);
}

/* ---- basics ---- */

static void test_round_trip(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  ratchet_store *s = open_store(f.dir, NULL);
  static const size_t sizes[] = {0, 1, 100, 4096, 65536, 1 << 20};
  unsigned char *buf = malloc(1 << 20);
  for (size_t i = 0; i < (1 << 20); i++)
    buf[i] = (unsigned char)(i * 7 + 3);
  for (size_t i = 0; i < 6; i++)
    put(s, i, buf, sizes[i], 1000 + i);
  for (size_t i = 0; i < 6; i++) {
    void *v = NULL;
    size_t n = 99;
    ratchet_store_meta m;
    ratchet_cache_key k = K(i);
    assert_int_equal(ratchet_store_get(s, &k, 2000, &v, &n, &m), 0);
    assert_non_null(v);
    assert_int_equal(n, sizes[i]);
    if (n)
      assert_memory_equal(v, buf, n);
    assert_int_equal(m.created_ms, 1000 + i);
    assert_int_equal(m.expires_ms, 0);
    assert_int_equal(m.value_len, sizes[i]);
    assert_int_equal(m.manifest_len, 0);
    ratchet_free(v);
  }
  void *v;
  size_t n;
  assert_int_equal(get(s, 77, 2000, &v, &n), RATCHET_ECACHE_MISS);
  /* Replace. */
  put(s, 2, "new", 3, 3000);
  assert_int_equal(get(s, 2, 3000, &v, &n), 0);
  assert_int_equal(n, 3);
  assert_memory_equal(v, "new", 3);
  ratchet_free(v);
  ratchet_store_stats st = stats(s);
  assert_int_equal(st.entries, 6);
  assert_true(st.bytes > (1 << 20) + 65536);
  assert_int_equal(st.puts, 7);
  assert_true(st.hits >= 7);
  assert_int_equal(st.misses, 1);
  assert_true(st.file_bytes > (1 << 20));
  assert_true(st.map_size >= (UINT64_C(2) << 30));
  /* Invalidate. */
  ratchet_cache_key k = K(2);
  assert_int_equal(ratchet_store_invalidate(s, &k), 0);
  assert_int_equal(ratchet_store_invalidate(s, &k), RATCHET_ECACHE_MISS);
  assert_false(has(s, 2, 3000));
  assert_int_equal(stats(s).entries, 5);
  /* Close and reopen: everything is still there. */
  ratchet_store_close(s);
  s = open_store(f.dir, NULL);
  assert_int_equal(stats(s).entries, 5);
  assert_int_equal(get(s, 5, 4000, &v, &n), 0);
  assert_int_equal(n, 1 << 20);
  assert_memory_equal(v, buf, n);
  ratchet_free(v);
  /* Clear. */
  assert_int_equal(ratchet_store_clear(s), 0);
  assert_int_equal(stats(s).entries, 0);
  assert_int_equal(stats(s).bytes, 0);
  assert_false(has(s, 5, 4000));
  put(s, 5, "x", 1, 5000);
  assert_true(has(s, 5, 5000));
  assert_string_equal(ratchet_store_dir(s), f.dir);
  ratchet_store_close(s);
  ratchet_store_close(NULL);
  free(buf);
  fix_done(&f);
}

static void test_permissions_and_dirs(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  char deep[700], path[760];
  snprintf(deep, sizeof deep, "%s/a/b/c", f.tmp);
  mode_t old = umask(022);
  ratchet_store *s = open_store(deep, NULL);
  umask(old);
  struct stat sb;
  snprintf(path, sizeof path, "%s/a", f.tmp);
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0700);
  assert_int_equal(stat(deep, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0700);
  snprintf(path, sizeof path, "%s/data.mdb", deep);
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  snprintf(path, sizeof path, "%s/lock.mdb", deep);
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);

  /* One open per process; no destroy while open. */
  ratchet_store_options o = quick();
  o.dir = deep;
  ratchet_store *s2 = NULL;
  assert_int_equal(ratchet_store_open(&o, &s2), -EBUSY);
  assert_null(s2);
  assert_contains(ratchet_store_last_error(), "already open");
  assert_int_equal(ratchet_store_destroy(deep), -EBUSY);
  ratchet_store_close(s);
  assert_int_equal(ratchet_store_destroy(deep), 0);
  assert_int_equal(stat(deep, &sb), -1);
  assert_int_equal(ratchet_store_destroy(deep), 0); /* nothing there */

  /* A file where the directory should be. */
  write_file(deep, "x", 1);
  assert_int_equal(ratchet_store_open(&o, &s2), -ENOTDIR);
  assert_contains(ratchet_store_last_error(), deep);
  unlink(deep);

  /* destroy leaves other files (and so the directory) alone. */
  s = open_store(deep, NULL);
  ratchet_store_close(s);
  snprintf(path, sizeof path, "%s/keep", deep);
  write_file(path, "k", 1);
  assert_int_equal(ratchet_store_destroy(deep), 0);
  assert_int_equal(stat(path, &sb), 0);
  fix_done(&f);
}

static void test_default_dir(void **state) {
  (void)state;
  char *xdg =
      getenv("XDG_CACHE_HOME") ? strdup(getenv("XDG_CACHE_HOME")) : NULL;
  char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  char buf[256];
  setenv("XDG_CACHE_HOME", "/x/cache", 1);
  setenv("HOME", "/home/u", 1);
  assert_int_equal(ratchet_store_default_dir(buf, sizeof buf), 0);
  assert_string_equal(buf, "/x/cache/ratchet/store");
  setenv("XDG_CACHE_HOME", "relative/is/ignored", 1);
  assert_int_equal(ratchet_store_default_dir(buf, sizeof buf), 0);
  assert_string_equal(buf, "/home/u/.cache/ratchet/store");
  unsetenv("XDG_CACHE_HOME");
  assert_int_equal(ratchet_store_default_dir(buf, sizeof buf), 0);
  assert_string_equal(buf, "/home/u/.cache/ratchet/store");
  assert_int_equal(ratchet_store_default_dir(buf, 10), -ENAMETOOLONG);
  unsetenv("HOME");
  assert_int_equal(ratchet_store_default_dir(buf, sizeof buf), -ENOENT);
  assert_contains(ratchet_store_last_error(), "HOME");

  /* Open with dir NULL uses it. */
  struct fix f;
  fix_init(&f);
  setenv("XDG_CACHE_HOME", f.tmp, 1);
  ratchet_store_options o = quick();
  ratchet_store *s = NULL;
  assert_int_equal(ratchet_store_open(&o, &s), 0);
  snprintf(buf, sizeof buf, "%s/ratchet/store", f.tmp);
  assert_string_equal(ratchet_store_dir(s), buf);
  ratchet_store_close(s);
  fix_done(&f);

  if (xdg != NULL)
    setenv("XDG_CACHE_HOME", xdg, 1);
  else
    unsetenv("XDG_CACHE_HOME");
  if (home != NULL)
    setenv("HOME", home, 1);
  free(xdg);
  free(home);
}

static void test_bad_options(void **state) {
  (void)state;
  ratchet_store_options o = quick();
  ratchet_store *s = NULL;
  o.dir = "/nonexistent-but-never-created";
  o.max_bytes = 100;
  assert_int_equal(ratchet_store_open(&o, &s), -EINVAL);
  o.max_bytes = 1 << 20;
  o.map_size = 4096;
  assert_int_equal(ratchet_store_open(&o, &s), -EINVAL);
  o.map_size = 0;
  o.durability = (ratchet_store_durability)7;
  assert_int_equal(ratchet_store_open(&o, &s), -EINVAL);
  o.durability = RATCHET_STORE_SYNC;
  o.max_readers = 0;
  assert_int_equal(ratchet_store_open(&o, &s), -EINVAL);
  o.max_readers = 126;
  o.dir = "";
  assert_int_equal(ratchet_store_open(&o, &s), -EINVAL);
  assert_int_equal(ratchet_store_open(NULL, &s), -EINVAL);
  assert_null(s);
  struct stat sb;
  assert_int_equal(stat("/nonexistent-but-never-created", &sb), -1);

  struct fix f;
  fix_init(&f);
  s = open_store(f.dir, NULL);
  ratchet_cache_key k = K(1);
  assert_int_equal(ratchet_store_put(s, NULL, "x", 1, NULL, 0), -EINVAL);
  assert_int_equal(ratchet_store_put(s, &k, NULL, 1, NULL, 0), -EINVAL);
  ratchet_store_put_options po = RATCHET_STORE_PUT_OPTIONS_INIT;
  po.manifest_len = 3;
  assert_int_equal(ratchet_store_put(s, &k, "x", 1, &po, 0), -EINVAL);
  po.manifest_len = 0;
  po.name = "";
  assert_int_equal(ratchet_store_put(s, &k, "x", 1, &po, 0), -EINVAL);
  char longname[500];
  memset(longname, 'n', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  po.name = longname;
  assert_int_equal(ratchet_store_put(s, &k, "x", 1, &po, 0), -EINVAL);
  void *v;
  size_t n;
  assert_int_equal(ratchet_store_get(s, &k, 0, NULL, &n, NULL), -EINVAL);
  assert_int_equal(ratchet_store_get(s, NULL, 0, &v, &n, NULL), -EINVAL);
  assert_int_equal(stats(s).entries, 0);
  ratchet_store_close(s);
  fix_done(&f);
}

/* ---- time ---- */

static void test_ttl(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  ratchet_store_options o = quick();
  o.default_ttl_ms = 500;
  ratchet_store *s = open_store(f.dir, &o);
  ratchet_store_put_options po = RATCHET_STORE_PUT_OPTIONS_INIT;
  ratchet_cache_key k1 = K(1), k2 = K(2), k3 = K(3);
  po.ttl_ms = 1000;
  assert_int_equal(ratchet_store_put(s, &k1, "one", 3, &po, 1000), 0);
  assert_int_equal(ratchet_store_put(s, &k2, "two", 3, NULL, 1000), 0);
  po.ttl_ms = RATCHET_STORE_TTL_NEVER;
  assert_int_equal(ratchet_store_put(s, &k3, "three", 5, &po, 1000), 0);
  assert_int_equal(ratchet_store_expiry(s, 0, 10), 510);
  assert_int_equal(ratchet_store_expiry(s, 7, 10), 17);
  assert_int_equal(ratchet_store_expiry(s, RATCHET_STORE_TTL_NEVER, 10), 0);
  assert_int_equal(ratchet_store_expiry(s, UINT64_MAX - 1, 10), UINT64_MAX);

  void *v;
  size_t n;
  ratchet_store_meta m;
  assert_int_equal(ratchet_store_get(s, &k1, 1999, &v, &n, &m), 0);
  assert_int_equal(m.expires_ms, 2000);
  ratchet_free(v);
  assert_true(has(s, 2, 1499));
  assert_false(has(s, 2, 1500)); /* default TTL, expired: lazily deleted */
  assert_int_equal(stats(s).entries, 2);
  assert_false(has(s, 1, 2000));
  assert_int_equal(stats(s).entries, 1);
  assert_true(has(s, 3, UINT64_MAX - 1));
  assert_int_equal(stats(s).expirations, 2);

  /* ratchet_store_gc removes expired entries nobody reads. */
  for (uint64_t i = 10; i < 20; i++)
    put(s, i, "t", 1, 10000);
  ratchet_store_gc_result r;
  assert_int_equal(ratchet_store_gc(s, 10499, &r), 0);
  assert_int_equal(r.expired, 0);
  assert_int_equal(ratchet_store_gc(s, 10500, &r), 0);
  assert_int_equal(r.expired, 10);
  assert_int_equal(r.idle + r.evicted, 0);
  assert_int_equal(stats(s).entries, 1);
  /* and so does the next put, a bounded number at a time. */
  for (uint64_t i = 10; i < 20; i++)
    put(s, i, "t", 1, 20000);
  put(s, 99, "later", 5, 30000);
  assert_int_equal(stats(s).entries, 2);
  ratchet_store_close(s);
  fix_done(&f);
}

static void test_gc_by_size_lru(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  ratchet_store_options o = quick();
  o.max_bytes = 64 * 1024;
  o.touch_interval_ms = 1;
  ratchet_store *s = open_store(f.dir, &o);
  char value[1000];
  memset(value, 'v', sizeof value);
  uint64_t t = 1000;
  for (uint64_t i = 0; i < 200; i++) {
    put(s, i, value, sizeof value, t++);
    if (i >= 10)
      assert_true(has(s, 0, t++)); /* keep key 0 recently used */
    ratchet_store_stats st = stats(s);
    assert_true(st.bytes <= o.max_bytes);
  }
  ratchet_store_stats st = stats(s);
  assert_true(st.entries > 40 && st.entries < 64);
  assert_true(st.evictions > 100);
  assert_true(has(s, 0, t));
  assert_true(has(s, 199, t));
  assert_false(has(s, 1, t));
  assert_false(has(s, 100, t));

  /* A value that can never fit. */
  char *big = calloc(1, 70000);
  ratchet_cache_key k = K(1000);
  assert_int_equal(ratchet_store_put(s, &k, big, 70000, NULL, t),
                   RATCHET_ECACHE_TOO_BIG);
  assert_contains(ratchet_store_last_error(), "max_bytes");
  free(big);
  ratchet_store_close(s);

  /* Reopened with a smaller cap: the next put or gc trims. */
  o.max_bytes = 16 * 1024;
  s = open_store(f.dir, &o);
  ratchet_store_gc_result r;
  assert_int_equal(ratchet_store_gc(s, t, &r), 0);
  assert_true(r.evicted > 20);
  assert_true(r.bytes_freed > 20 * 1000);
  assert_true(stats(s).bytes <= 16 * 1024);
  assert_true(has(s, 0, t));
  ratchet_store_close(s);
  fix_done(&f);
}

static void test_clock_backwards(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  ratchet_store_options o = quick();
  o.max_bytes = 8 * 1024;
  ratchet_store *s = open_store(f.dir, &o);
  char value[3000] = {0};
  put(s, 1, value, sizeof value, 100000);
  put(s, 2, value, sizeof value, 50000); /* the clock stepped back */
  put(s, 3, value, sizeof value, 40000); /* over the cap: one must go */
  /* The oldest put (key 1) goes, not the ones with earlier clocks. */
  assert_false(has(s, 1, 100000));
  assert_true(has(s, 2, 100000));
  assert_true(has(s, 3, 100000));
  ratchet_store_close(s);
  fix_done(&f);
}

static void test_gc_by_age(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  ratchet_store_options o = quick();
  o.max_age_ms = 10000;
  o.touch_interval_ms = 1000;
  ratchet_store *s = open_store(f.dir, &o);
  for (uint64_t i = 0; i < 10; i++)
    put(s, i, "v", 1, 1000 + i);
  /* Read key 3 at 9000: its access time moves (older than 1 s). */
  assert_true(has(s, 3, 9000));
  /* Read key 4 at 1500: under the touch interval, nothing is written. */
  assert_true(has(s, 4, 1500));
  /* Idle longer than max_age: last access before now - max_age. Keys 0, 1,
   * 2 and 4 (1000..1004 < 11005 - 10000); 3 was touched, 5 is on the
   * boundary. */
  ratchet_store_gc_result r;
  assert_int_equal(ratchet_store_gc(s, 11005, &r), 0);
  assert_int_equal(r.idle, 4);
  assert_int_equal(stats(s).entries, 6);
  assert_true(has(s, 3, 11005));
  assert_false(has(s, 4, 11005));
  assert_true(has(s, 5, 11005));
  /* A put collects idle entries too. */
  put(s, 50, "w", 1, 30000);
  assert_int_equal(stats(s).entries, 1);
  ratchet_store_close(s);

  /* touch_interval 0: reads never write, the LRU is the put order. */
  o.touch_interval_ms = 0;
  s = open_store(f.dir, &o);
  put(s, 60, "w", 1, 40000);
  assert_true(has(s, 60, 49000));
  assert_int_equal(ratchet_store_gc(s, 50001, &r), 0);
  assert_int_equal(r.idle, 2);
  ratchet_store_close(s);
  fix_done(&f);
}

/* ---- full map ---- */

static void test_map_full(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  ratchet_store_options o = quick();
  o.map_size = 256 * 1024; /* 64 pages; max_bytes stays at 1 GiB */
  o.durability = RATCHET_STORE_NOSYNC;
  ratchet_store *s = open_store(f.dir, &o);
  char *value = malloc(300 * 1024);
  for (size_t i = 0; i < 300 * 1024; i++)
    value[i] = (char)(i % 251);
  /* Far more than the map holds: collections make room every time. */
  for (uint64_t i = 0; i < 100; i++) {
    value[0] = (char)i;
    put(s, i, value, 20 * 1024, 1000 + i);
  }
  ratchet_store_stats st = stats(s);
  assert_true(st.evictions > 50);
  assert_true(st.entries >= 1 && st.entries < 12);
  void *v;
  size_t n;
  assert_int_equal(get(s, 99, 2000, &v, &n), 0);
  assert_int_equal(n, 20 * 1024);
  assert_int_equal(((char *)v)[0], 99);
  ratchet_free(v);
  /* Bigger than the whole map: full even after a collection. */
  ratchet_cache_key k = K(500);
  assert_int_equal(ratchet_store_put(s, &k, value, 300 * 1024, NULL, 3000),
                   RATCHET_ECACHE_FULL);
  assert_contains(ratchet_store_last_error(), "full");
  assert_contains(ratchet_store_last_error(), f.dir);
  /* Still opens, serves and accepts writes. */
  put(s, 501, "small", 5, 4000);
  assert_true(has(s, 501, 4000));
  assert_int_equal(ratchet_store_sync(s), 0);
  ratchet_store_close(s);
  s = open_store(f.dir, &o);
  assert_true(has(s, 501, 4000));
  uint64_t bad = 99;
  assert_int_equal(ratchet_store_verify(s, &bad), 0);
  assert_int_equal(bad, 0);
  ratchet_store_close(s);
  free(value);
  fix_done(&f);
}

/* ---- damaged, foreign and future stores ---- */

/* Opens dir with raw LMDB and applies fn in a write transaction. */
static void raw_edit(const char *dir, void (*fn)(MDB_txn *txn)) {
  MDB_env *env;
  MDB_txn *txn;
  assert_int_equal(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 8);
  assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
  fn(txn);
  assert_int_equal(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

static void set_format_99(MDB_txn *txn) {
  MDB_dbi meta;
  assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
  unsigned char v4[4] = {99, 0, 0, 0};
  MDB_val k = {6, (void *)"format"}, v = {4, v4};
  assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
  MDB_val wk = {6, (void *)"writer"}, wv = {13, (void *)"ratchet 9.0.0"};
  assert_int_equal(mdb_put(txn, meta, &wk, &wv, 0), 0);
}

static void foreign_db(MDB_txn *txn) {
  MDB_dbi d;
  assert_int_equal(mdb_dbi_open(txn, "their-table", MDB_CREATE, &d), 0);
  MDB_val k = {1, (void *)"k"}, v = {1, (void *)"v"};
  assert_int_equal(mdb_put(txn, d, &k, &v, 0), 0);
}

static void drop_stats(MDB_txn *txn) {
  MDB_dbi meta;
  assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
  MDB_val k = {5, (void *)"stats"};
  assert_int_equal(mdb_del(txn, meta, &k, NULL), 0);
}

/* An expiry row for key 5 (no TTL) at time 1: stale, as damage could
 * leave one behind. */
static void stray_exp_row(MDB_txn *txn) {
  MDB_dbi exp;
  assert_int_equal(mdb_dbi_open(txn, "exp", 0, &exp), 0);
  unsigned char row[24] = {0, 0, 0, 0, 0, 0, 0, 1};
  ratchet_cache_key k = K(5);
  ratchet_cache_key_bytes(&k, row + 8);
  MDB_val kv = {24, row}, v = {0, (void *)""};
  assert_int_equal(mdb_put(txn, exp, &kv, &v, 0), 0);
}

static void test_stray_index_rows(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  ratchet_store *s = open_store(f.dir, NULL);
  put(s, 5, "keep", 4, 1000);
  ratchet_store_close(s);
  raw_edit(f.dir, stray_exp_row);
  s = open_store(f.dir, NULL);
  ratchet_store_gc_result r;
  assert_int_equal(ratchet_store_gc(s, 5000, &r), 0);
  assert_int_equal(r.expired, 0); /* the row went, not the entry */
  assert_true(has(s, 5, 5000));
  ratchet_store_close(s);
  fix_done(&f);
}

static void test_future_format(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  ratchet_store *s = open_store(f.dir, NULL);
  put(s, 1, "v", 1, 1000);
  ratchet_store_close(s);
  raw_edit(f.dir, set_format_99);
  char path[700];
  snprintf(path, sizeof path, "%s/data.mdb", f.dir);
  size_t n0, n1;
  unsigned char *before = read_file(path, &n0);

  ratchet_store_options o = quick();
  o.dir = f.dir;
  o.rebuild_if_corrupt = 1; /* never applies to a newer format */
  s = NULL;
  assert_int_equal(ratchet_store_open(&o, &s), RATCHET_ECACHE_VERSION);
  assert_null(s);
  const char *msg = ratchet_store_last_error();
  assert_contains(msg, f.dir);
  assert_contains(msg, "format 99");
  assert_contains(msg, "ratchet 9.0.0");
  assert_contains(msg, "ratchet cache clear");
  assert_contains(msg, "ratchet_store_destroy");
  unsigned char *after = read_file(path, &n1);
  assert_int_equal(n0, n1);
  assert_memory_equal(before, after, n0); /* left untouched */
  free(before);
  free(after);
  /* The way out works. */
  assert_int_equal(ratchet_store_destroy(f.dir), 0);
  s = open_store(f.dir, NULL);
  assert_false(has(s, 1, 1000));
  ratchet_store_close(s);
  fix_done(&f);
}

static void test_foreign_and_inconsistent(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  /* An LMDB environment that is not ours. */
  mkdir(f.dir, 0700);
  raw_edit(f.dir, foreign_db);
  ratchet_store_options o = quick();
  o.dir = f.dir;
  ratchet_store *s = NULL;
  assert_int_equal(ratchet_store_open(&o, &s), RATCHET_ECACHE_CORRUPT);
  assert_contains(ratchet_store_last_error(), "not a ratchet cache store");
  assert_int_equal(ratchet_store_destroy(f.dir), 0);
  /* Ours, with the statistics record gone. */
  s = open_store(f.dir, NULL);
  put(s, 1, "v", 1, 1000);
  ratchet_store_close(s);
  raw_edit(f.dir, drop_stats);
  assert_int_equal(ratchet_store_open(&o, &s), RATCHET_ECACHE_CORRUPT);
  assert_contains(ratchet_store_last_error(), "disagree");
  /* rebuild_if_corrupt starts over and says so. */
  o.rebuild_if_corrupt = 1;
  assert_int_equal(ratchet_store_open(&o, &s), 0);
  assert_contains(ratchet_store_last_error(), "rebuilt");
  assert_false(has(s, 1, 1000));
  put(s, 2, "w", 1, 1000);
  assert_true(has(s, 2, 1000));
  ratchet_store_close(s);
  fix_done(&f);
}

static void test_garbage_and_truncated(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  char path[700];
  snprintf(path, sizeof path, "%s/data.mdb", f.dir);
  ratchet_store_options o = quick();
  o.dir = f.dir;
  ratchet_store *s = NULL;

  /* Random bytes. */
  mkdir(f.dir, 0700);
  unsigned char *junk = malloc(100000);
  srand(7);
  for (size_t i = 0; i < 100000; i++)
    junk[i] = (unsigned char)rand();
  write_file(path, junk, 100000);
  assert_int_equal(ratchet_store_open(&o, &s), RATCHET_ECACHE_CORRUPT);
  assert_null(s);
  assert_contains(ratchet_store_last_error(), "not an LMDB file");
  assert_contains(ratchet_store_last_error(), f.dir);
  /* A short file that is not the start of an LMDB file is somebody
   * else's: refused, and left where it is. */
  write_file(path, junk, 100);
  assert_int_equal(ratchet_store_open(&o, &s), RATCHET_ECACHE_CORRUPT);
  assert_contains(ratchet_store_last_error(), "not an LMDB file");
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_size, 100);
  free(junk);
  assert_int_equal(ratchet_store_destroy(f.dir), 0);

  /* A real store cut in half. */
  s = open_store(f.dir, NULL);
  char value[4000];
  for (uint64_t i = 0; i < 100; i++) {
    memset(value, (int)i, sizeof value);
    put(s, i, value, sizeof value, 1000);
  }
  ratchet_store_close(s);
  size_t n;
  unsigned char *whole = read_file(path, &n);
  assert_int_equal(truncate(path, (off_t)(n / 2)), 0);
  s = NULL;
  assert_int_equal(ratchet_store_open(&o, &s), RATCHET_ECACHE_CORRUPT);
  assert_contains(ratchet_store_last_error(), "truncated");

  /* Cut inside the meta pages: a creation killed half-way, recreated. */
  assert_int_equal(truncate(path, 100), 0);
  s = open_store(f.dir, NULL);
  assert_int_equal(stats(s).entries, 0);
  put(s, 1, "v", 1, 1000);
  ratchet_store_close(s);

  /* Both meta pages garbled. */
  for (size_t i = 0; i < 8192; i++)
    whole[i] ^= 0x5a;
  write_file(path, whole, n);
  assert_int_equal(ratchet_store_open(&o, &s), RATCHET_ECACHE_CORRUPT);
  o.rebuild_if_corrupt = 1;
  assert_int_equal(ratchet_store_open(&o, &s), 0);
  assert_int_equal(stats(s).entries, 0);
  ratchet_store_close(s);
  free(whole);
  fix_done(&f);
}

static void test_garbled_values(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  char path[700];
  snprintf(path, sizeof path, "%s/data.mdb", f.dir);
  ratchet_store *s = open_store(f.dir, NULL);
  /* A large value (overflow pages) and a small one (inside a leaf). */
  size_t big_n = 64 * 1024;
  unsigned char *big = malloc(big_n);
  for (size_t i = 0; i < big_n; i++)
    big[i] = (unsigned char)(i * 13 + 1);
  memcpy(big + 1000, "BIG-MARKER-0123456789", 21);
  put(s, 1, big, big_n, 1000);
  put(s, 2, "small-MARKER-abcdefghij", 23, 1000);
  put(s, 3, "untouched", 9, 1000);
  ratchet_store_close(s);

  size_t n;
  unsigned char *file = read_file(path, &n);
  size_t at = find(file, n, "BIG-MARKER-0123456789", 21);
  assert_true(at != SIZE_MAX);
  file[at + 5] ^= 0xff;
  at = find(file, n, "small-MARKER-abcdefghij", 23);
  assert_true(at != SIZE_MAX);
  file[at + 7] ^= 0x01;
  write_file(path, file, n);
  free(file);

  s = open_store(f.dir, NULL);
  void *v;
  size_t vn;
  char hex[RATCHET_CACHE_KEY_HEX_SIZE];
  ratchet_cache_key k1 = K(1);
  assert_int_equal(get(s, 1, 2000, &v, &vn), RATCHET_ECACHE_CORRUPT);
  assert_contains(ratchet_store_last_error(), "checksum");
  assert_contains(ratchet_store_last_error(), ratchet_cache_key_hex(&k1, hex));
  assert_contains(ratchet_store_last_error(), f.dir);
  assert_int_equal(get(s, 1, 2000, &v, &vn), RATCHET_ECACHE_MISS);
  /* verify finds the other one, deletes it, and leaves the good one. */
  uint64_t bad = 0;
  assert_int_equal(ratchet_store_verify(s, &bad), 0);
  assert_int_equal(bad, 1);
  assert_int_equal(get(s, 2, 2000, &v, &vn), RATCHET_ECACHE_MISS);
  assert_int_equal(get(s, 3, 2000, &v, &vn), 0);
  assert_memory_equal(v, "untouched", 9);
  ratchet_free(v);
  ratchet_store_stats st = stats(s);
  assert_int_equal(st.corrupt, 2);
  assert_int_equal(st.entries, 1);
  put(s, 1, big, big_n, 3000);
  assert_true(has(s, 1, 3000));
  ratchet_store_close(s);
  free(big);
  fix_done(&f);
}

/* ---- manifests and names ---- */

static void test_manifest_and_names(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  ratchet_store *s = open_store(f.dir, NULL);
  ratchet_key_builder *b = NULL;
  assert_int_equal(ratchet_key_builder_new(&b), 0);
  assert_int_equal(ratchet_key_add_kind(b, "cc"), 0);
  assert_int_equal(ratchet_key_add_input(b, "main.c", "v1", 2), 0);
  ratchet_cache_key k1, k2, got;
  assert_int_equal(ratchet_key_finish(b, &k1), 0);
  const void *m;
  size_t mn;
  assert_int_equal(ratchet_key_manifest(b, &m, &mn), 0);
  ratchet_store_put_options po = RATCHET_STORE_PUT_OPTIONS_INIT;
  po.manifest = m;
  po.manifest_len = mn;
  po.name = "compile main.c";
  assert_int_equal(ratchet_store_put(s, &k1, "obj1", 4, &po, 1000), 0);

  void *sm;
  size_t smn;
  assert_int_equal(ratchet_store_get_manifest(s, &k1, 1000, &sm, &smn), 0);
  assert_int_equal(smn, mn);
  assert_memory_equal(sm, m, mn);
  ratchet_cache_key check;
  assert_int_equal(ratchet_key_manifest_key(sm, smn, &check), 0);
  assert_true(ratchet_cache_key_equal(&check, &k1));
  ratchet_free(sm);
  ratchet_store_meta meta;
  void *v;
  size_t vn;
  assert_int_equal(ratchet_store_get(s, &k1, 1000, &v, &vn, &meta), 0);
  assert_int_equal(meta.manifest_len, mn);
  assert_int_equal(vn, 4);
  ratchet_free(v);

  /* The task changes: its new key misses; ask why. */
  ratchet_key_builder_reset(b);
  assert_int_equal(ratchet_key_add_kind(b, "cc"), 0);
  assert_int_equal(ratchet_key_add_input(b, "main.c", "v2", 2), 0);
  assert_int_equal(ratchet_key_add_env(b, "CC", "clang"), 0);
  assert_int_equal(ratchet_key_finish(b, &k2), 0);
  assert_int_equal(ratchet_store_get(s, &k2, 1000, &v, &vn, NULL),
                   RATCHET_ECACHE_MISS);
  assert_int_equal(
      ratchet_store_last_manifest(s, "compile main.c", &got, &sm, &smn), 0);
  assert_true(ratchet_cache_key_equal(&got, &k1));
  assert_int_equal(ratchet_key_manifest(b, &m, &mn), 0);
  char *text;
  assert_int_equal(ratchet_key_explain(sm, smn, m, mn, &text), 2);
  assert_string_equal(text, "input 'main.c' changed\nenv CC added\n");
  ratchet_free(text);
  ratchet_free(sm);
  assert_int_equal(ratchet_store_last_manifest(s, "never put", &got, &sm, &smn),
                   RATCHET_ECACHE_MISS);
  /* The name outlives its entry; clear forgets it. */
  assert_int_equal(ratchet_store_invalidate(s, &k1), 0);
  assert_int_equal(
      ratchet_store_last_manifest(s, "compile main.c", &got, &sm, &smn), 0);
  ratchet_free(sm);
  assert_int_equal(stats(s).names, 1);
  assert_int_equal(ratchet_store_clear(s), 0);
  assert_int_equal(stats(s).names, 0);
  assert_int_equal(
      ratchet_store_last_manifest(s, "compile main.c", &got, &sm, &smn),
      RATCHET_ECACHE_MISS);
  /* A manifest of an absent key. */
  assert_int_equal(ratchet_store_get_manifest(s, &k1, 1000, &sm, &smn),
                   RATCHET_ECACHE_MISS);
  ratchet_key_builder_free(b);
  ratchet_store_close(s);
  fix_done(&f);
}

static void test_batch(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  ratchet_store_options o = quick();
  o.max_bytes = 64 * 1024;
  ratchet_store *s = open_store(f.dir, &o);
  ratchet_store_item items[50];
  char values[50][8];
  for (int i = 0; i < 50; i++) {
    ratchet_store_item it = {K((uint64_t)i), values[i], 0,
                             RATCHET_STORE_PUT_OPTIONS_INIT};
    items[i] = it;
    items[i].len = (size_t)snprintf(values[i], sizeof values[i], "b%d", i);
  }
  assert_int_equal(ratchet_store_put_batch(s, items, 50, 1000), 0);
  assert_int_equal(stats(s).entries, 50);
  assert_int_equal(stats(s).puts, 50);
  void *v;
  size_t n;
  assert_int_equal(get(s, 42, 1000, &v, &n), 0);
  assert_memory_equal(v, "b42", 3);
  ratchet_free(v);
  /* All or nothing: one item too big, nothing is written. */
  char *big = calloc(1, 70000);
  items[10].key = K(1000);
  items[20].key = K(1001);
  items[20].value = big;
  items[20].len = 70000;
  assert_int_equal(ratchet_store_put_batch(s, items, 50, 2000),
                   RATCHET_ECACHE_TOO_BIG);
  assert_false(has(s, 1000, 2000));
  assert_int_equal(ratchet_store_put_batch(s, items, 0, 2000), 0);
  assert_int_equal(ratchet_store_put_batch(s, NULL, 1, 2000), -EINVAL);
  free(big);
  ratchet_store_close(s);
  fix_done(&f);
}

static void test_durability_modes(void **state) {
  (void)state;
  for (int d = RATCHET_STORE_SYNC; d <= RATCHET_STORE_NOSYNC; d++) {
    struct fix f;
    fix_init(&f);
    ratchet_store_options o = RATCHET_STORE_OPTIONS_INIT;
    o.durability = (ratchet_store_durability)d;
    ratchet_store *s = open_store(f.dir, &o);
    put(s, 1, "durable", 7, 1000);
    assert_int_equal(ratchet_store_sync(s), 0);
    ratchet_store_close(s);
    s = open_store(f.dir, NULL);
    assert_true(has(s, 1, 1000));
    ratchet_store_close(s);
    fix_done(&f);
  }
}

/* ---- allocation failure ---- */

static int alloc_scenario(const char *dir) {
  ratchet_store_options o = quick();
  o.dir = dir;
  ratchet_store *s = NULL;
  int rc = ratchet_store_open(&o, &s);
  if (rc != 0)
    return rc;
  ratchet_cache_key k = K(1);
  rc = ratchet_store_put(s, &k, "value", 5, NULL, 1000);
  void *v = NULL, *m = NULL;
  size_t n;
  if (rc == 0)
    rc = ratchet_store_get(s, &k, 1000, &v, &n, NULL);
  if (rc == 0)
    rc = ratchet_store_get_manifest(s, &k, 1000, &m, &n);
  uint64_t bad;
  if (rc == 0)
    rc = ratchet_store_verify(s, &bad);
  ratchet_free(v);
  ratchet_free(m);
  ratchet_store_close(s);
  return rc;
}

static void test_alloc_failure(void **state) {
  (void)state;
  int failures = 0;
  for (size_t budget = 0; budget < 100; budget++) {
    struct fix f;
    fix_init(&f);
    tu_alloc_install(budget);
    int rc = alloc_scenario(f.dir);
    long live = tu_alloc_live();
    tu_alloc_uninstall();
    fix_done(&f);
    assert_int_equal(live, 0);
    if (rc == 0)
      break;
    assert_int_equal(rc, -ENOMEM);
    assert_true(ratchet_store_last_error()[0] != '\0');
    failures++;
  }
  assert_true(failures >= 3);
}

/* ---- the crash test ---- */

#define CRASH_KEYS   64
#define CRASH_ROUNDS 20

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* The value the child writes for (id, gen): a 16-byte header naming them,
 * then bytes that depend on both. */
static void crash_value(unsigned char *buf, size_t len, uint32_t id,
                        uint64_t gen) {
  uint64_t x = ((uint64_t)id << 40) ^ gen;
  memcpy(buf, "VAL1", 4);
  memcpy(buf + 4, &id, 4);
  memcpy(buf + 8, &gen, 8);
  for (size_t i = 16; i < len; i++)
    buf[i] = (unsigned char)splitmix(&x);
}

static int crash_value_ok(const unsigned char *v, size_t len, uint32_t id) {
  uint32_t vid;
  uint64_t gen;
  if (len < 16 || memcmp(v, "VAL1", 4) != 0)
    return 0;
  memcpy(&vid, v + 4, 4);
  memcpy(&gen, v + 8, 8);
  if (vid != id)
    return 0;
  unsigned char *want = malloc(len);
  crash_value(want, len, id, gen);
  int ok = memcmp(want, v, len) == 0;
  free(want);
  return ok;
}

static ratchet_store_options crash_options(const char *dir) {
  ratchet_store_options o = RATCHET_STORE_OPTIONS_INIT;
  o.dir = dir;
  o.max_bytes = 512 * 1024; /* collections all the time */
  o.touch_interval_ms = 1;
  return o;
}

/* The child: writes, replaces, batches, invalidates and collects in a loop
 * until it is killed. Tells the parent it is running with one byte. */
static int crash_child(int argc, char **argv) {
  if (argc < 3)
    return 2;
  ratchet_store_options o = crash_options(argv[0]);
  o.durability = (ratchet_store_durability)atoi(argv[2]);
  uint64_t rng = strtoull(argv[1], NULL, 10), gen = rng << 20;
  ratchet_store *s = NULL;
  if (ratchet_store_open(&o, &s) != 0) {
    fprintf(stderr, "child: %s\n", ratchet_store_last_error());
    return 3;
  }
  unsigned char *buf = malloc(70000);
  int told = 0;
  for (uint64_t i = 0; i < 1000000; i++) {
    uint64_t r = splitmix(&rng), now = 1000000 + i;
    uint32_t id = (uint32_t)(r % CRASH_KEYS);
    size_t len = 16 + (size_t)((r >> 8) % 6000);
    if ((r >> 40) % 16 == 0)
      len = 16 + (size_t)((r >> 8) % 66000); /* overflow pages */
    int op = (int)((r >> 32) % 20), rc = 0;
    ratchet_cache_key k = K(id);
    if (op == 0) {
      rc = ratchet_store_invalidate(s, &k);
      rc = rc == RATCHET_ECACHE_MISS ? 0 : rc;
    } else if (op == 1) {
      rc = ratchet_store_gc(s, now, NULL);
    } else if (op == 2) {
      ratchet_store_item items[4];
      unsigned char *vals = malloc(4 * 2000);
      for (int j = 0; j < 4; j++) {
        uint32_t bid = (uint32_t)((id + (uint32_t)j) % CRASH_KEYS);
        crash_value(vals + j * 2000, 2000, bid, ++gen);
        ratchet_store_item it = {K(bid), vals + j * 2000, 2000,
                                 RATCHET_STORE_PUT_OPTIONS_INIT};
        items[j] = it;
      }
      rc = ratchet_store_put_batch(s, items, 4, now);
      free(vals);
    } else {
      ratchet_store_put_options po = RATCHET_STORE_PUT_OPTIONS_INIT;
      po.ttl_ms = op == 3 ? 5 : 0;
      po.name = op == 4 ? "task" : NULL;
      crash_value(buf, len, id, ++gen);
      rc = ratchet_store_put(s, &k, buf, len, &po, now);
      if (rc == 0 && op == 5) {
        void *v;
        size_t n;
        if (ratchet_store_get(s, &k, now, &v, &n, NULL) == 0)
          ratchet_free(v);
      }
    }
    if (rc != 0) {
      fprintf(stderr, "child: %s: %s\n", ratchet_err_name(rc),
              ratchet_store_last_error());
      return 4;
    }
    if (!told) {
      told = write(1, "R", 1) == 1;
    }
  }
  free(buf);
  ratchet_store_close(s);
  return 0;
}

/* Opens the store after a kill and checks every value it serves. */
static void crash_check(const char *dir, int round) {
  ratchet_store_options o = crash_options(dir);
  ratchet_store *s = NULL;
  int rc = ratchet_store_open(&o, &s);
  if (rc != 0)
    fail_msg("round %d: open: %s: %s", round, ratchet_err_name(rc),
             ratchet_store_last_error());
  uint64_t bad = 1;
  assert_int_equal(ratchet_store_verify(s, &bad), 0);
  assert_int_equal(bad, 0);
  int present = 0;
  for (uint32_t id = 0; id < CRASH_KEYS; id++) {
    void *v;
    size_t n;
    rc = get(s, id, 1000, &v, &n);
    if (rc == RATCHET_ECACHE_MISS)
      continue;
    if (rc != 0)
      fail_msg("round %d: key %u: %s: %s", round, id, ratchet_err_name(rc),
               ratchet_store_last_error());
    if (!crash_value_ok(v, n, id))
      fail_msg("round %d: key %u holds a value never written for it", round,
               id);
    ratchet_free(v);
    present++;
  }
  ratchet_store_stats st = stats(s);
  assert_true(st.bytes <= o.max_bytes);
  (void)present;
  /* It still accepts writes. */
  unsigned char val[100];
  crash_value(val, sizeof val, 7, 1);
  ratchet_cache_key k = K(7);
  assert_int_equal(ratchet_store_put(s, &k, val, sizeof val, NULL, 1000), 0);
  ratchet_store_close(s);
}

static void test_crash_kill9(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  const char *self = tu_self_path();
  assert_non_null(self);
  /* The store exists before the first kill (see docs: a kill during the
   * very first creation is covered by the truncated-meta case). */
  ratchet_store_options o = crash_options(f.dir);
  ratchet_store *s = NULL;
  assert_int_equal(ratchet_store_open(&o, &s), 0);
  ratchet_store_close(s);
  uint64_t rng = (uint64_t)time(NULL);
  for (int round = 0; round < CRASH_ROUNDS; round++) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu",
             (unsigned long long)(splitmix(&rng) >> 1));
    /* Even rounds with the default durability (an fsync per commit),
     * odd ones without: a killed process must lose nothing committed
     * either way, and without fsync the child commits hundreds of times
     * per round (collections, overflow pages, batches) before the kill. */
    char opt[] = "--child", name[] = "store-crash";
    char dur[] = {round % 2 ? '0' + RATCHET_STORE_NOSYNC : '0', '\0'};
    char *argv[] = {(char *)self, opt, name, f.dir, seed, dur, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, self, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    char c;
    ssize_t got = read(fds[0], &c, 1);
    close(fds[0]);
    if (got != 1) {
      int st;
      waitpid(pid, &st, 0);
      fail_msg("round %d: the child did not start (status %d)", round, st);
    }
    /* Let it run 0-40 ms, then kill it wherever it is. */
    struct timespec ts = {0, (long)(splitmix(&rng) % 40000000)};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
      fail_msg("round %d: the child ended by itself (status %d)", round, st);
    crash_check(f.dir, round);
  }
  fix_done(&f);
}

/* ---- regressions: remap, descriptors, batches, verify, clock steps ---- */

/* Another process grows the map while this one's threads read: every
 * reader must keep getting the right value (the remap waits for the
 * transactions in flight instead of pulling the map from under them). */
#define GROW_VALUE (40 * 1024)
#define GROW_ITEMS 150

static void grow_fill(unsigned char *buf, size_t n, uint64_t id) {
  for (size_t i = 0; i < n; i++)
    buf[i] = (unsigned char)(i * 31 + id * 7 + 1);
}

struct grow_reader {
  ratchet_store *s;
  atomic_int *stop;
  const unsigned char *want;
  long reads, errors;
};

static void *grow_read(void *arg) {
  struct grow_reader *r = arg;
  while (!atomic_load(r->stop)) {
    void *v;
    size_t n;
    int rc = get(r->s, 1, 1000, &v, &n);
    if (rc != 0 || n != GROW_VALUE || memcmp(v, r->want, n) != 0)
      r->errors++;
    if (rc == 0)
      ratchet_free(v);
    r->reads++;
  }
  return NULL;
}

/* The child: opens argv[0] with a 64 MiB map and writes GROW_ITEMS values
 * of 50 KB, growing the file far beyond the parent's 256 KiB map. */
static int grow_child(int argc, char **argv) {
  if (argc < 1)
    return 2;
  ratchet_store_options o = quick();
  o.dir = argv[0];
  o.map_size = UINT64_C(64) << 20;
  o.max_bytes = UINT64_C(32) << 20;
  ratchet_store *s = NULL;
  if (ratchet_store_open(&o, &s) != 0) {
    fprintf(stderr, "grow child: %s\n", ratchet_store_last_error());
    return 3;
  }
  size_t n = 50 * 1000;
  unsigned char *buf = malloc(n);
  int rc = buf == NULL ? -ENOMEM : 0;
  for (uint64_t i = 0; i < GROW_ITEMS && rc == 0; i++) {
    grow_fill(buf, n, 100 + i);
    ratchet_cache_key k = K(100 + i);
    rc = ratchet_store_put(s, &k, buf, n, NULL, 1000);
  }
  if (rc != 0)
    fprintf(stderr, "grow child: %s\n", ratchet_store_last_error());
  free(buf);
  ratchet_store_close(s);
  return rc == 0 ? 0 : 4;
}

static void test_remap_while_reading(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  const char *self = tu_self_path();
  assert_non_null(self);
  ratchet_store_options o = quick();
  o.map_size = UINT64_C(256) << 10;
  ratchet_store *s = open_store(f.dir, &o);
  unsigned char *want = malloc(GROW_VALUE);
  grow_fill(want, GROW_VALUE, 1);
  put(s, 1, want, GROW_VALUE, 1000);
  atomic_int stop = 0;
  struct grow_reader r[4];
  pthread_t th[4];
  for (int i = 0; i < 4; i++) {
    r[i] = (struct grow_reader){s, &stop, want, 0, 0};
    assert_int_equal(pthread_create(&th[i], NULL, grow_read, &r[i]), 0);
  }
  char opt[] = "--child", name[] = "store-grow";
  char *argv[] = {(char *)self, opt, name, f.dir, NULL};
  pid_t pid;
  assert_int_equal(posix_spawn(&pid, self, NULL, NULL, argv, environ), 0);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  atomic_store(&stop, 1);
  long errors = 0;
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    errors += r[i].errors;
  }
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_int_equal(errors, 0);
  /* The parent now reads through the grown map, the child's values too. */
  void *v;
  size_t n;
  assert_int_equal(get(s, 1, 1000, &v, &n), 0);
  assert_int_equal(n, GROW_VALUE);
  assert_memory_equal(v, want, n);
  ratchet_free(v);
  unsigned char *last = malloc(50 * 1000);
  grow_fill(last, 50 * 1000, 100 + GROW_ITEMS - 1);
  assert_int_equal(get(s, 100 + GROW_ITEMS - 1, 1000, &v, &n), 0);
  assert_int_equal(n, 50 * 1000);
  assert_memory_equal(v, last, n);
  ratchet_free(v);
  free(last);
  free(want);
  ratchet_store_close(s);
  fix_done(&f);
}

/* Every descriptor into the store directory is close-on-exec, so that
 * spawned workers do not inherit a writable handle to the cache. */
static void test_fds_cloexec(void **state) {
  (void)state;
  static const int modes[] = {RATCHET_STORE_SYNC, RATCHET_STORE_NOMETASYNC,
                              RATCHET_STORE_NOSYNC};
  for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
    struct fix f;
    fix_init(&f);
    ratchet_store_options o = quick();
    o.durability = modes[m];
    ratchet_store *s = open_store(f.dir, &o);
    put(s, 1, "x", 1, 1000);
    char real[PATH_MAX], prefix[PATH_MAX + 1];
    assert_non_null(realpath(f.dir, real));
    snprintf(prefix, sizeof prefix, "%s/", real);
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int seen = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
      char link[300], target[PATH_MAX];
      if (e->d_name[0] == '.')
        continue;
      snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
      ssize_t n = readlink(link, target, sizeof target - 1);
      if (n < 0)
        continue;
      target[n] = '\0';
      if (strncmp(target, prefix, strlen(prefix)) != 0)
        continue;
      int flags = fcntl(atoi(e->d_name), F_GETFD);
      if (flags < 0 || !(flags & FD_CLOEXEC))
        fail_msg("durability %d: fd %s -> %s is inherited by children",
                 modes[m], e->d_name, target);
      seen++;
    }
    closedir(d);
    assert_true(seen >= 2); /* data.mdb and lock.mdb at least */
    ratchet_store_close(s);
    fix_done(&f);
  }
}

/* A batch whose items fit one by one but not together is refused whole,
 * instead of collecting its own items in the same transaction. */
static void test_batch_over_max_bytes(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  ratchet_store_options o = quick();
  o.max_bytes = 64 * 1024;
  ratchet_store *s = open_store(f.dir, &o);
  put(s, 9, "old", 3, 1000);
  char *big = calloc(1, 30000);
  ratchet_store_item items[3];
  for (int i = 0; i < 3; i++) {
    ratchet_store_item it = {K((uint64_t)i), big, 30000,
                             RATCHET_STORE_PUT_OPTIONS_INIT};
    items[i] = it;
  }
  assert_int_equal(ratchet_store_put_batch(s, items, 3, 2000),
                   RATCHET_ECACHE_TOO_BIG);
  assert_contains(ratchet_store_last_error(), "max_bytes");
  for (uint64_t i = 0; i < 3; i++)
    assert_false(has(s, i, 2000));
  assert_true(has(s, 9, 2000)); /* nothing changed */
  assert_int_equal(stats(s).entries, 1);
  assert_int_equal(stats(s).puts, 1);
  /* Two of them fit together. */
  assert_int_equal(ratchet_store_put_batch(s, items, 2, 2000), 0);
  assert_true(has(s, 0, 2000));
  assert_true(has(s, 1, 2000));
  free(big);
  ratchet_store_close(s);
  fix_done(&f);
}

/* verify judges records in a read transaction and deletes them in a later
 * write one: a fresh put of a damaged key in between must survive. The put
 * is made from the allocator, which verify calls (realloc) while it reads,
 * inside its read transaction. */
static ratchet_store *verify_hook_store;
static int verify_hook_fired;

static void *verify_hook_realloc(void *p, size_t n) {
  if (!verify_hook_fired && verify_hook_store != NULL) {
    verify_hook_fired = 1;
    put(verify_hook_store, 2, "fresh", 5, 5000);
  }
  return realloc(p, n);
}

static void test_verify_spares_fresh_put(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  char path[700];
  snprintf(path, sizeof path, "%s/data.mdb", f.dir);
  ratchet_store *s = open_store(f.dir, NULL);
  put(s, 2, "small-MARKER-abcdefghij", 23, 1000);
  put(s, 3, "untouched", 9, 1000);
  ratchet_store_close(s);
  size_t n;
  unsigned char *file = read_file(path, &n);
  /* Every copy: a page the last commit replaced may hold an older one. */
  int copies = 0;
  for (size_t at;
       (at = find(file, n, "small-MARKER-abcdefghij", 23)) != SIZE_MAX;
       copies++)
    file[at + 7] ^= 0x01;
  assert_true(copies > 0);
  write_file(path, file, n);
  free(file);

  s = open_store(f.dir, NULL);
  verify_hook_store = s;
  verify_hook_fired = 0;
  ratchet_replace_allocator(malloc, verify_hook_realloc, calloc, free);
  uint64_t bad = 99;
  int rc = ratchet_store_verify(s, &bad);
  ratchet_reset_allocator();
  verify_hook_store = NULL;
  assert_int_equal(rc, 0);
  assert_true(verify_hook_fired);
  assert_int_equal(bad, 0); /* the damaged record was replaced, not deleted */
  assert_int_equal(stats(s).corrupt, 0);
  void *v;
  size_t vn;
  assert_int_equal(get(s, 2, 5000, &v, &vn), 0);
  assert_int_equal(vn, 5);
  assert_memory_equal(v, "fresh", 5);
  ratchet_free(v);
  assert_true(has(s, 3, 5000));
  ratchet_store_close(s);
  fix_done(&f);
}

/* A put while the wall clock was far ahead must not freeze aging once the
 * clock is set right: access times are stored at most a little ahead of
 * the put's own clock. */
static void test_clock_forward_step(void **state) {
  (void)state;
  struct fix f;
  fix_init(&f);
  ratchet_store_options o = quick();
  o.max_age_ms = 60 * 1000;
  ratchet_store *s = open_store(f.dir, &o);
  const uint64_t t = UINT64_C(1700000000000), year = UINT64_C(31536000000);
  put(s, 1, "ahead", 5, t + 10 * year); /* the clock jumped ten years */
  put(s, 2, "now", 3, t);               /* and was set right again */
  ratchet_store_gc_result r;
  assert_int_equal(ratchet_store_gc(s, t + 3600 * 1000, &r), 0);
  assert_int_equal(r.idle, 1); /* key 2, idle for an hour */
  assert_false(has(s, 2, t + 3600 * 1000));
  ratchet_store_close(s);
  fix_done(&f);
}

int tu_store_crash_child(int argc, char **argv) {
  return crash_child(argc, argv);
}

int tu_store_grow_child(int argc, char **argv) {
  return grow_child(argc, argv);
}

int test_store(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_permissions_and_dirs),
      cmocka_unit_test(test_default_dir),
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_ttl),
      cmocka_unit_test(test_gc_by_size_lru),
      cmocka_unit_test(test_clock_backwards),
      cmocka_unit_test(test_gc_by_age),
      cmocka_unit_test(test_map_full),
      cmocka_unit_test(test_future_format),
      cmocka_unit_test(test_stray_index_rows),
      cmocka_unit_test(test_foreign_and_inconsistent),
      cmocka_unit_test(test_garbage_and_truncated),
      cmocka_unit_test(test_garbled_values),
      cmocka_unit_test(test_manifest_and_names),
      cmocka_unit_test(test_batch),
      cmocka_unit_test(test_durability_modes),
      cmocka_unit_test(test_alloc_failure),
      cmocka_unit_test(test_crash_kill9),
      cmocka_unit_test(test_fds_cloexec),
      cmocka_unit_test(test_batch_over_max_bytes),
      cmocka_unit_test(test_verify_spares_fresh_put),
      cmocka_unit_test(test_clock_forward_step),
      cmocka_unit_test(test_remap_while_reading),
  };
  return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
