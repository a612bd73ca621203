/*
 * test_key.c - task keys: the canonical encoding (length prefixes, order
 * independence, parts), files, duplicates, the manifest and its parser,
 * explain's messages, the hex form, argument checks and allocation failure.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratchet/alloc.h"
#include "ratchet/key.h"
#include "testutil.h"

/* Keys are part of the on-disk format. These two were computed by an
 * independent implementation of the encoding documented in key.h. */
#define GOLDEN_EMPTY "29eb0d1555242be07a7e43ff74854ece"
#define GOLDEN_FULL  "342ecb348068a250bf10b963dc7c3d36"

static ratchet_key_builder *builder(void) {
  ratchet_key_builder *b = NULL;
  assert_int_equal(ratchet_key_builder_new(&b), 0);
  assert_non_null(b);
  return b;
}

static ratchet_cache_key finish(ratchet_key_builder *b) {
  ratchet_cache_key k;
  assert_int_equal(ratchet_key_finish(b, &k), 0);
  return k;
}

static int same(ratchet_cache_key a, ratchet_cache_key b) {
  return ratchet_cache_key_equal(&a, &b);
}

/* The key of one component. */
static ratchet_cache_key key1(ratchet_key_part part, const char *name,
                              const char *value) {
  ratchet_key_builder *b = builder();
  assert_int_equal(ratchet_key_add(b, part, name, value, strlen(value)), 0);
  ratchet_cache_key k = finish(b);
  ratchet_key_builder_free(b);
  return k;
}

static void test_hex_and_bytes(void **state) {
  (void)state;
  ratchet_cache_key k = {UINT64_C(0x0123456789abcdef),
                         UINT64_C(0xfedcba9876543210)};
  char hex[RATCHET_CACHE_KEY_HEX_SIZE];
  assert_string_equal(ratchet_cache_key_hex(&k, hex),
                      "0123456789abcdeffedcba9876543210");
  ratchet_cache_key back;
  assert_int_equal(ratchet_cache_key_parse(hex, &back), 0);
  assert_true(ratchet_cache_key_equal(&k, &back));
  assert_int_equal(
      ratchet_cache_key_parse("0123456789ABCDEFFEDCBA9876543210", &back), 0);
  assert_true(ratchet_cache_key_equal(&k, &back));
  assert_int_equal(ratchet_cache_key_parse("0123", &back), -EINVAL);
  assert_int_equal(
      ratchet_cache_key_parse("0123456789abcdeffedcba98765432100", &back),
      -EINVAL);
  assert_int_equal(
      ratchet_cache_key_parse("0123456789abcdeffedcba987654321g", &back),
      -EINVAL);
  assert_int_equal(ratchet_cache_key_parse(NULL, &back), -EINVAL);
  unsigned char bytes[16];
  ratchet_cache_key_bytes(&k, bytes);
  assert_int_equal(bytes[0], 0x01);
  assert_int_equal(bytes[7], 0xef);
  assert_int_equal(bytes[8], 0xfe);
  assert_int_equal(bytes[15], 0x10);
}

/* Keys must never change by accident: stored results would all miss. */
static void test_golden_keys(void **state) {
  (void)state;
  char hex[RATCHET_CACHE_KEY_HEX_SIZE];
  ratchet_key_builder *b = builder();
  ratchet_cache_key k = finish(b);
  assert_string_equal(ratchet_cache_key_hex(&k, hex), GOLDEN_EMPTY);
  assert_int_equal(ratchet_key_add_kind(b, "cc"), 0);
  assert_int_equal(ratchet_key_add_payload(b, "-O2 -c main.c", 13), 0);
  assert_int_equal(ratchet_key_add_input(b, "main.c", "int main;", 9), 0);
  assert_int_equal(ratchet_key_add_env(b, "CC", "gcc"), 0);
  assert_int_equal(ratchet_key_add_tool(b, "gcc", "12.2.0"), 0);
  assert_int_equal(ratchet_key_add_salt(b, "1"), 0);
  k = finish(b);
  assert_string_equal(ratchet_cache_key_hex(&k, hex), GOLDEN_FULL);
  ratchet_key_builder_free(b);
}

static void test_length_prefixes(void **state) {
  (void)state;
  /* The name/value boundary matters. */
  assert_false(same(key1(RATCHET_KEY_INPUT, "ab", "c"),
                    key1(RATCHET_KEY_INPUT, "a", "bc")));
  /* One component vs two with the same concatenation. */
  ratchet_key_builder *b = builder();
  assert_int_equal(ratchet_key_add_input(b, "a", "xy", 2), 0);
  ratchet_cache_key one = finish(b);
  ratchet_key_builder_reset(b);
  assert_int_equal(ratchet_key_add_input(b, "a", "x", 1), 0);
  assert_int_equal(ratchet_key_add_salt(b, "y"), 0);
  assert_false(same(one, finish(b)));
  /* Empty value vs no component. */
  ratchet_key_builder_reset(b);
  ratchet_cache_key none = finish(b);
  assert_int_equal(ratchet_key_add_env(b, "X", ""), 0);
  assert_false(same(none, finish(b)));
  ratchet_key_builder_free(b);
  /* Every part is distinct, for the same name and value. */
  for (int p = RATCHET_KEY_KIND; p <= RATCHET_KEY_SALT; p++)
    for (int q = p + 1; q <= RATCHET_KEY_SALT; q++)
      assert_false(same(key1((ratchet_key_part)p, "n", "v"),
                        key1((ratchet_key_part)q, "n", "v")));
  /* Values that differ in one byte. */
  assert_false(same(key1(RATCHET_KEY_PAYLOAD, NULL, "abc"),
                    key1(RATCHET_KEY_PAYLOAD, NULL, "abd")));
}

static void test_order_independent(void **state) {
  (void)state;
  ratchet_key_builder *b = builder();
  assert_int_equal(ratchet_key_add_input(b, "b.c", "B", 1), 0);
  assert_int_equal(ratchet_key_add_kind(b, "cc"), 0);
  assert_int_equal(ratchet_key_add_input(b, "a.c", "A", 1), 0);
  assert_int_equal(ratchet_key_add_env(b, "PATH", "/bin"), 0);
  ratchet_cache_key k1 = finish(b);
  ratchet_key_builder_reset(b);
  assert_int_equal(ratchet_key_add_env(b, "PATH", "/bin"), 0);
  assert_int_equal(ratchet_key_add_input(b, "a.c", "A", 1), 0);
  assert_int_equal(ratchet_key_add_input(b, "b.c", "B", 1), 0);
  assert_int_equal(ratchet_key_add_kind(b, "cc"), 0);
  assert_true(same(k1, finish(b)));
  /* finish twice, and finish after more adds. */
  assert_true(same(k1, finish(b)));
  assert_int_equal(ratchet_key_add_salt(b, "2"), 0);
  assert_false(same(k1, finish(b)));
  ratchet_key_builder_free(b);
}

static void test_duplicates(void **state) {
  (void)state;
  ratchet_key_builder *b = builder();
  assert_int_equal(ratchet_key_add_input(b, "a", "1", 1), 0);
  ratchet_cache_key k = finish(b);
  assert_int_equal(ratchet_key_add_input(b, "a", "1", 1), 0);
  assert_int_equal(ratchet_key_count(b), 2);
  assert_true(same(k, finish(b))); /* an identical duplicate folds */
  assert_int_equal(ratchet_key_count(b), 1);
  assert_int_equal(ratchet_key_add_input(b, "a", "2", 1), 0);
  ratchet_cache_key dummy;
  assert_int_equal(ratchet_key_finish(b, &dummy), -EEXIST);
  const void *m;
  size_t n;
  assert_int_equal(ratchet_key_manifest(b, &m, &n), -EINVAL);
  /* Same name under another part is not a duplicate. */
  ratchet_key_builder_reset(b);
  assert_int_equal(ratchet_key_add_input(b, "a", "1", 1), 0);
  assert_int_equal(ratchet_key_add_env(b, "a", "1"), 0);
  assert_int_equal(ratchet_key_finish(b, &dummy), 0);
  ratchet_key_builder_free(b);
}

static void test_bad_arguments(void **state) {
  (void)state;
  ratchet_key_builder *b = builder();
  assert_int_equal(ratchet_key_add(b, (ratchet_key_part)0, "n", "v", 1),
                   -EINVAL);
  assert_int_equal(ratchet_key_add(b, (ratchet_key_part)7, "n", "v", 1),
                   -EINVAL);
  assert_int_equal(ratchet_key_add(b, RATCHET_KEY_INPUT, NULL, "v", 1),
                   -EINVAL);
  assert_int_equal(ratchet_key_add(b, RATCHET_KEY_ENV, "", "v", 1), -EINVAL);
  assert_int_equal(ratchet_key_add(b, RATCHET_KEY_TOOL, NULL, "v", 1), -EINVAL);
  assert_int_equal(ratchet_key_add(b, RATCHET_KEY_PAYLOAD, NULL, NULL, 1),
                   -EINVAL);
  assert_int_equal(ratchet_key_add(NULL, RATCHET_KEY_SALT, NULL, "", 0),
                   -EINVAL);
  assert_int_equal(ratchet_key_add_kind(b, NULL), -EINVAL);
  assert_int_equal(ratchet_key_add_salt(b, NULL), -EINVAL);
  assert_int_equal(ratchet_key_add_tool(b, "cc", NULL), -EINVAL);
  assert_int_equal(ratchet_key_add_env(b, NULL, NULL), -EINVAL);
  char *longname = malloc(RATCHET_KEY_NAME_MAX + 2);
  memset(longname, 'x', RATCHET_KEY_NAME_MAX + 1);
  longname[RATCHET_KEY_NAME_MAX + 1] = '\0';
  assert_int_equal(ratchet_key_add_input(b, longname, "", 0), -EINVAL);
  longname[RATCHET_KEY_NAME_MAX] = '\0';
  assert_int_equal(ratchet_key_add_input(b, longname, "", 0), 0);
  free(longname);
  assert_int_equal(ratchet_key_count(b), 1);
  /* NULL value with length 0 and unnamed kind/payload/salt are fine. */
  assert_int_equal(ratchet_key_add(b, RATCHET_KEY_PAYLOAD, NULL, NULL, 0), 0);
  /* An unset variable adds nothing. */
  assert_int_equal(ratchet_key_add_env(b, "UNSET", NULL), 0);
  assert_int_equal(ratchet_key_count(b), 2);
  ratchet_cache_key k;
  assert_int_equal(ratchet_key_finish(NULL, &k), -EINVAL);
  assert_int_equal(ratchet_key_finish(b, NULL), -EINVAL);
  assert_int_equal(ratchet_key_builder_new(NULL), -EINVAL);
  ratchet_key_builder_free(b);
  ratchet_key_builder_free(NULL);
  assert_string_equal(ratchet_key_part_name(RATCHET_KEY_INPUT), "input");
  assert_string_equal(ratchet_key_part_name(RATCHET_KEY_SALT), "salt");
  assert_null(ratchet_key_part_name((ratchet_key_part)0));
  assert_null(ratchet_key_part_name((ratchet_key_part)9));
}

static void test_files(void **state) {
  (void)state;
  const char *tmp = getenv("TMPDIR");
  char tdir[512];
  snprintf(tdir, sizeof tdir, "%s/ratchet-key-XXXXXX",
           tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
  assert_non_null(mkdtemp(tdir));
  char path[600];
  snprintf(path, sizeof path, "%s/big.bin", tdir);
  size_t n = 200 * 1024 + 17; /* several 64 KiB pieces and a tail */
  unsigned char *data = malloc(n);
  for (size_t i = 0; i < n; i++)
    data[i] = (unsigned char)(i * 31 + (i >> 8));
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);

  ratchet_key_builder *b = builder();
  assert_int_equal(ratchet_key_add_file(b, "big.bin", path), 0);
  ratchet_cache_key from_file = finish(b);
  ratchet_key_builder_reset(b);
  assert_int_equal(ratchet_key_add_input(b, "big.bin", data, n), 0);
  assert_true(same(from_file, finish(b)));
  ratchet_key_builder_reset(b);
  data[n - 1] ^= 1;
  assert_int_equal(ratchet_key_add_input(b, "big.bin", data, n), 0);
  assert_false(same(from_file, finish(b)));

  ratchet_key_builder_reset(b);
  char missing[620];
  snprintf(missing, sizeof missing, "%s/missing", tdir);
  assert_int_equal(ratchet_key_add_file(b, "m", missing), -ENOENT);
  assert_int_equal(ratchet_key_add_file(b, "d", tdir), -EISDIR);
  assert_int_equal(ratchet_key_add_file(b, "null", "/dev/null"), -EINVAL);
  char fifo[620];
  snprintf(fifo, sizeof fifo, "%s/fifo", tdir);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  assert_int_equal(ratchet_key_add_file(b, "fifo", fifo), -EINVAL);
  unlink(fifo);
  assert_int_equal(ratchet_key_add_file(b, NULL, path), -EINVAL);
  assert_int_equal(ratchet_key_add_file(b, "x", NULL), -EINVAL);
  assert_int_equal(ratchet_key_count(b), 0);

  /* An empty file is an empty input. */
  snprintf(path, sizeof path, "%s/empty", tdir);
  f = fopen(path, "wb");
  fclose(f);
  assert_int_equal(ratchet_key_add_file(b, "e", path), 0);
  ratchet_cache_key e1 = finish(b);
  ratchet_key_builder_reset(b);
  assert_int_equal(ratchet_key_add_input(b, "e", NULL, 0), 0);
  assert_true(same(e1, finish(b)));
  ratchet_key_builder_free(b);

  unlink(path);
  snprintf(path, sizeof path, "%s/big.bin", tdir);
  unlink(path);
  rmdir(tdir);
  free(data);
}

struct seen {
  int n;
  ratchet_key_part parts[8];
  char names[8][16];
};

static int collect_fn(void *ctx, const ratchet_key_component *c) {
  struct seen *s = ctx;
  if (s->n >= 8)
    return 99;
  s->parts[s->n] = c->part;
  snprintf(s->names[s->n], sizeof s->names[0], "%.*s", (int)c->name_len,
           c->name);
  s->n++;
  return 0;
}

static int stop_fn(void *ctx, const ratchet_key_component *c) {
  (void)ctx;
  (void)c;
  return 42;
}

static void test_manifest(void **state) {
  (void)state;
  ratchet_key_builder *b = builder();
  const void *m;
  size_t n;
  assert_int_equal(ratchet_key_manifest(b, &m, &n), -EINVAL);
  assert_int_equal(ratchet_key_add_salt(b, "s"), 0);
  assert_int_equal(ratchet_key_add_input(b, "z.c", "z", 1), 0);
  assert_int_equal(ratchet_key_add_input(b, "a.c", "a", 1), 0);
  assert_int_equal(ratchet_key_add_kind(b, "cc"), 0);
  ratchet_cache_key k = finish(b);
  assert_int_equal(ratchet_key_manifest(b, &m, &n), 0);
  ratchet_cache_key k2;
  assert_int_equal(ratchet_key_manifest_key(m, n, &k2), 0);
  assert_true(same(k, k2));

  struct seen s = {0};
  assert_int_equal(ratchet_key_manifest_foreach(m, n, collect_fn, &s), 0);
  assert_int_equal(s.n, 4);
  assert_int_equal(s.parts[0], RATCHET_KEY_KIND);
  assert_int_equal(s.parts[1], RATCHET_KEY_INPUT);
  assert_string_equal(s.names[1], "a.c");
  assert_string_equal(s.names[2], "z.c");
  assert_int_equal(s.parts[3], RATCHET_KEY_SALT);
  assert_int_equal(ratchet_key_manifest_foreach(m, n, stop_fn, NULL), 42);
  assert_int_equal(ratchet_key_manifest_foreach(m, n, NULL, NULL), 0);

  /* Every truncation is refused; every single-byte change is refused or
   * yields a different key; nothing crashes. */
  unsigned char *copy = malloc(n);
  for (size_t cut = 0; cut < n; cut++) {
    memcpy(copy, m, n);
    assert_int_equal(ratchet_key_manifest_key(copy, cut, &k2), -EINVAL);
  }
  for (size_t i = 0; i < n; i++) {
    for (int bit = 0; bit < 8; bit++) {
      memcpy(copy, m, n);
      copy[i] ^= (unsigned char)(1u << bit);
      int rc = ratchet_key_manifest_key(copy, n, &k2);
      assert_true(rc == -EINVAL || (rc == 0 && !same(k, k2)));
      char *text = NULL;
      rc = ratchet_key_explain(m, n, copy, n, &text);
      assert_true(rc == -EINVAL || rc >= 1);
      ratchet_free(text);
    }
  }
  free(copy);
  assert_int_equal(ratchet_key_manifest_key(NULL, 0, &k2), -EINVAL);
  assert_int_equal(ratchet_key_manifest_key("RKM\x02\0\0\0\0", 8, &k2),
                   -EINVAL);
  assert_int_equal(ratchet_key_manifest_key("RKM\x01\0\0\0\0", 8, &k2), 0);
  ratchet_key_builder_reset(b);
  assert_true(same(k2, finish(b))); /* the empty manifest */
  ratchet_key_builder_free(b);
}

/* A manifest built from a list of (part, name, value) triples; the copy is
 * the caller's (free). */
struct comp {
  ratchet_key_part part;
  const char *name, *value;
};

static void *manifest_of(const struct comp *c, size_t n, size_t *len) {
  ratchet_key_builder *b = builder();
  for (size_t i = 0; i < n; i++)
    assert_int_equal(ratchet_key_add(b, c[i].part, c[i].name, c[i].value,
                                     strlen(c[i].value)),
                     0);
  finish(b);
  const void *m;
  assert_int_equal(ratchet_key_manifest(b, &m, len), 0);
  void *copy = malloc(*len);
  memcpy(copy, m, *len);
  ratchet_key_builder_free(b);
  return copy;
}

static void test_explain(void **state) {
  (void)state;
  const struct comp old[] = {
      {RATCHET_KEY_KIND, NULL, "cc"},
      {RATCHET_KEY_PAYLOAD, NULL, "-O2"},
      {RATCHET_KEY_INPUT, "src/main.c", "int main;"},
      {RATCHET_KEY_INPUT, "src/old.h", "x"},
      {RATCHET_KEY_TOOL, "cc", "12"},
      {RATCHET_KEY_SALT, NULL, "1"},
  };
  const struct comp new[] = {
      {RATCHET_KEY_KIND, NULL, "cc"},
      {RATCHET_KEY_PAYLOAD, NULL, "-O2"},
      {RATCHET_KEY_INPUT, "src/main.c", "int main(void);"},
      {RATCHET_KEY_INPUT, "src/new.h", "y"},
      {RATCHET_KEY_ENV, "CC", "gcc"},
      {RATCHET_KEY_TOOL, "cc", "13"},
      {RATCHET_KEY_SALT, NULL, "2"},
  };
  size_t ol, nl;
  void *om = manifest_of(old, 6, &ol), *nm = manifest_of(new, 7, &nl);
  char *text = NULL;
  assert_int_equal(ratchet_key_explain(om, ol, nm, nl, &text), 6);
  assert_string_equal(text, "input 'src/main.c' changed\n"
                            "input 'src/new.h' added\n"
                            "input 'src/old.h' removed\n"
                            "env CC added\n"
                            "tool 'cc' changed\n"
                            "salt changed\n");
  ratchet_free(text);

  assert_int_equal(ratchet_key_explain(om, ol, om, ol, &text), 0);
  assert_string_equal(text, "no component changed\n");
  ratchet_free(text);
  assert_int_equal(ratchet_key_explain(NULL, 0, nm, nl, &text), 0);
  assert_string_equal(text, "no previous key\n");
  ratchet_free(text);
  assert_int_equal(ratchet_key_explain(om, ol - 1, nm, nl, &text), -EINVAL);
  assert_int_equal(ratchet_key_explain(om, ol, nm, 3, &text), -EINVAL);
  assert_int_equal(ratchet_key_explain(om, ol, nm, nl, NULL), -EINVAL);
  free(om);
  free(nm);

  /* Kind and payload changes, env removal, a named salt, odd names. */
  const struct comp a[] = {
      {RATCHET_KEY_KIND, NULL, "cc"},
      {RATCHET_KEY_PAYLOAD, NULL, "x"},
      {RATCHET_KEY_ENV, "CC", "gcc"},
      {RATCHET_KEY_INPUT, "it's\n\\", "1"},
  };
  const struct comp c[] = {
      {RATCHET_KEY_KIND, NULL, "ld"},
      {RATCHET_KEY_PAYLOAD, NULL, "y"},
      {RATCHET_KEY_SALT, "v2", "on"},
      {RATCHET_KEY_INPUT, "it's\n\\", "2"},
  };
  om = manifest_of(a, 4, &ol);
  nm = manifest_of(c, 4, &nl);
  assert_int_equal(ratchet_key_explain(om, ol, nm, nl, &text), 5);
  assert_string_equal(text, "kind changed\n"
                            "payload changed\n"
                            "input 'it\\x27s\\x0a\\x5c' changed\n"
                            "env CC removed\n"
                            "salt 'v2' added\n");
  ratchet_free(text);
  free(om);
  free(nm);
}

static void test_many_components(void **state) {
  (void)state;
  ratchet_key_builder *b = builder();
  char name[32];
  for (int i = 999; i >= 0; i--) {
    snprintf(name, sizeof name, "f%04d", i);
    assert_int_equal(ratchet_key_add_input(b, name, name, strlen(name)), 0);
  }
  ratchet_cache_key k = finish(b);
  const void *m;
  size_t n;
  assert_int_equal(ratchet_key_manifest(b, &m, &n), 0);
  void *old = malloc(n);
  memcpy(old, m, n);
  size_t oldn = n;
  ratchet_key_builder_reset(b);
  for (int i = 0; i < 1000; i++) {
    snprintf(name, sizeof name, "f%04d", i);
    const char *v = i == 500 ? "changed" : name;
    assert_int_equal(ratchet_key_add_input(b, name, v, strlen(v)), 0);
  }
  assert_false(same(k, finish(b)));
  assert_int_equal(ratchet_key_manifest(b, &m, &n), 0);
  char *text;
  assert_int_equal(ratchet_key_explain(old, oldn, m, n, &text), 1);
  assert_string_equal(text, "input 'f0500' changed\n");
  ratchet_free(text);
  free(old);
  ratchet_key_builder_free(b);
}

/* Runs a whole scenario with the n-th allocation failing, for every n. */
static int scenario(void) {
  ratchet_key_builder *b = NULL;
  ratchet_cache_key k;
  char *text = NULL;
  void *old = NULL;
  size_t oldn = 0, n = 0;
  const void *m;
  char name[16];
  int rc = ratchet_key_builder_new(&b);
  if (rc != 0)
    return rc;
  for (int i = 0; i < 40 && rc == 0; i++) {
    snprintf(name, sizeof name, "in%02d", 39 - i);
    rc = ratchet_key_add_input(b, name, name, strlen(name));
  }
  if (rc == 0)
    rc = ratchet_key_add_salt(b, "1");
  if (rc == 0)
    rc = ratchet_key_finish(b, &k);
  if (rc == 0)
    rc = ratchet_key_manifest(b, &m, &oldn);
  if (rc == 0) {
    old = malloc(oldn);
    memcpy(old, m, oldn);
    rc = ratchet_key_add_env(b, "CC", "cc");
  }
  if (rc == 0)
    rc = ratchet_key_finish(b, &k);
  if (rc == 0)
    rc = ratchet_key_manifest(b, &m, &n);
  if (rc == 0) {
    rc = ratchet_key_explain(old, oldn, m, n, &text);
    if (rc == 1)
      rc = strcmp(text, "env CC added\n") == 0 ? 0 : -EPROTO;
  }
  ratchet_free(text);
  free(old);
  ratchet_key_builder_free(b);
  return rc;
}

static void test_alloc_failure(void **state) {
  (void)state;
  int failures = 0;
  for (size_t budget = 0; budget < 200; budget++) {
    tu_alloc_install(budget);
    int rc = scenario();
    long live = tu_alloc_live();
    tu_alloc_uninstall();
    assert_int_equal(live, 0);
    assert_true(rc == 0 || rc == -ENOMEM);
    if (rc == -ENOMEM)
      failures++;
    else
      break;
  }
  assert_true(failures > 3);

  /* explain alone. */
  const struct comp a[] = {{RATCHET_KEY_INPUT, "a", "1"},
                           {RATCHET_KEY_INPUT, "b", "1"}};
  const struct comp c[] = {{RATCHET_KEY_INPUT, "a", "2"},
                           {RATCHET_KEY_INPUT, "c", "1"}};
  size_t al, cl;
  void *am = manifest_of(a, 2, &al), *cm = manifest_of(c, 2, &cl);
  for (size_t budget = 0;; budget++) {
    char *text = NULL;
    tu_alloc_install(budget);
    int rc = ratchet_key_explain(am, al, cm, cl, &text);
    ratchet_free(text);
    long live = tu_alloc_live();
    tu_alloc_uninstall();
    assert_int_equal(live, 0);
    if (rc == 3)
      break;
    assert_int_equal(rc, -ENOMEM);
  }
  free(am);
  free(cm);
}

int test_key(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hex_and_bytes),
      cmocka_unit_test(test_golden_keys),
      cmocka_unit_test(test_length_prefixes),
      cmocka_unit_test(test_order_independent),
      cmocka_unit_test(test_duplicates),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_files),
      cmocka_unit_test(test_manifest),
      cmocka_unit_test(test_explain),
      cmocka_unit_test(test_many_components),
      cmocka_unit_test(test_alloc_failure),
  };
  return cmocka_run_group_tests_name("key", tests, NULL, NULL);
}
