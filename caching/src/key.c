/*
 * key.c - the task key builder, its manifests and "explain".
 *
 * The builder keeps one small record per component: its part, its name
 * (copied into one growing arena), the value's length and the value's
 * xxh3-128 digest. Values are hashed when they are added and never kept, so
 * a builder costs about 48 bytes plus the name per component whatever the
 * size of the inputs, and a file is hashed in 64 KiB pieces.
 *
 * ratchet_key_finish sorts the records by (part, name) (a merge sort that
 * needs no global state; qsort's comparator could not see the arena),
 * folds identical duplicates, refuses conflicting ones, and serialises the
 * result as the manifest:
 *
 *   "RKM" 0x01 | count (u32 LE) |
 *   count * { part (u8) | name_len (u32 LE) | name | value_len (u64 LE) |
 *             digest (16 bytes, big-endian, high half first) }
 *
 * The key is the xxh3-128 of those bytes: the encoding is length-prefixed
 * everywhere, so two different component lists never share a byte string,
 * and the version byte in the magic changes every key if the format ever
 * does. Because the key is a function of the manifest, a stored manifest
 * says exactly what the stored key was made of, and explain is a merge of
 * two sorted lists: O(n + m) for thousands of inputs.
 */
#define _POSIX_C_SOURCE 200809L
#define XXH_STATIC_LINKING_ONLY
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "ratchet/alloc.h"
#include "ratchet/key.h"

#define MANIFEST_MAGIC  "RKM\x01"
#define MANIFEST_HEADER 8u
#define ENTRY_FIXED     (1u + 4u + 8u + 16u)
#define FILE_CHUNK      (64u * 1024u)
#define PART_MIN        RATCHET_KEY_KIND
#define PART_MAX        RATCHET_KEY_SALT

struct comp {
  uint8_t part;
  uint32_t name_len;
  size_t name_off;
  uint64_t value_len;
  ratchet_cache_key digest;
};

struct ratchet_key_builder {
  struct comp *comps;
  size_t n, cap;
  char *arena; /* the names, one after another, not NUL-terminated */
  size_t arena_len, arena_cap;
  unsigned char *manifest;
  size_t manifest_len, manifest_cap;
  bool manifest_valid;
};

static const char *const part_names[] = {
    [RATCHET_KEY_KIND] = "kind",   [RATCHET_KEY_PAYLOAD] = "payload",
    [RATCHET_KEY_INPUT] = "input", [RATCHET_KEY_ENV] = "env",
    [RATCHET_KEY_TOOL] = "tool",   [RATCHET_KEY_SALT] = "salt",
};

const char *ratchet_key_part_name(ratchet_key_part part) {
  if ((int)part < PART_MIN || (int)part > PART_MAX)
    return NULL;
  return part_names[part];
}

/* Parts whose components are identified by a name the user must give. */
static bool needs_name(int part) {
  return part == RATCHET_KEY_INPUT || part == RATCHET_KEY_ENV ||
         part == RATCHET_KEY_TOOL;
}

/* ---- little-endian / big-endian helpers ---- */

static void put_u32le(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64le(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64be(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (56 - 8 * i));
}

static uint32_t get_u32le(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static uint64_t get_u64le(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static uint64_t get_u64be(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

static ratchet_cache_key from_xxh(XXH128_hash_t h) {
  ratchet_cache_key k = {h.high64, h.low64};
  return k;
}

/* ---- keys ---- */

char *ratchet_cache_key_hex(const ratchet_cache_key *key,
                            char buf[RATCHET_CACHE_KEY_HEX_SIZE]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) {
    buf[i] = digits[(key->hi >> (60 - 4 * i)) & 15];
    buf[16 + i] = digits[(key->lo >> (60 - 4 * i)) & 15];
  }
  buf[32] = '\0';
  return buf;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int ratchet_cache_key_parse(const char *hex, ratchet_cache_key *key) {
  uint64_t half[2] = {0, 0};
  if (hex == NULL || key == NULL)
    return -EINVAL;
  for (int i = 0; i < 32; i++) {
    int v = hexval(hex[i]);
    if (v < 0)
      return -EINVAL; /* also stops at a NUL before 32 digits */
    half[i / 16] = (half[i / 16] << 4) | (uint64_t)v;
  }
  if (hex[32] != '\0')
    return -EINVAL;
  key->hi = half[0];
  key->lo = half[1];
  return 0;
}

void ratchet_cache_key_bytes(const ratchet_cache_key *key,
                             unsigned char out[16]) {
  put_u64be(out, key->hi);
  put_u64be(out + 8, key->lo);
}

int ratchet_cache_key_equal(const ratchet_cache_key *a,
                            const ratchet_cache_key *b) {
  return a->hi == b->hi && a->lo == b->lo;
}

/* ---- the builder ---- */

int ratchet_key_builder_new(ratchet_key_builder **out) {
  if (out == NULL)
    return -EINVAL;
  ratchet_key_builder *b = ratchet_calloc(1, sizeof *b);
  if (b == NULL)
    return -ENOMEM;
  *out = b;
  return 0;
}

void ratchet_key_builder_free(ratchet_key_builder *b) {
  if (b == NULL)
    return;
  ratchet_free(b->comps);
  ratchet_free(b->arena);
  ratchet_free(b->manifest);
  ratchet_free(b);
}

void ratchet_key_builder_reset(ratchet_key_builder *b) {
  b->n = 0;
  b->arena_len = 0;
  b->manifest_len = 0;
  b->manifest_valid = false;
}

size_t ratchet_key_count(const ratchet_key_builder *b) {
  return b->n;
}

/* Makes room for `more` bytes in a growing buffer; the buffer is unchanged
 * on failure. */
static int grow(void **buf, size_t *cap, size_t len, size_t more, size_t elem) {
  if (more <= *cap - len)
    return 0;
  if (more > SIZE_MAX / elem - len)
    return -ENOMEM;
  size_t want = len + more, ncap = *cap ? *cap : 16;
  while (ncap < want)
    ncap = ncap > SIZE_MAX / 2 / elem ? want : ncap * 2;
  void *p = ratchet_realloc(*buf, ncap * elem);
  if (p == NULL)
    return -ENOMEM;
  *buf = p;
  *cap = ncap;
  return 0;
}

/* Checks part and name; *name_len gets the name's length. */
static int check_component(ratchet_key_part part, const char *name,
                           size_t *name_len) {
  if ((int)part < PART_MIN || (int)part > PART_MAX)
    return -EINVAL;
  size_t nl = name == NULL ? 0 : strnlen(name, RATCHET_KEY_NAME_MAX + 1);
  if (nl > RATCHET_KEY_NAME_MAX || (nl == 0 && needs_name((int)part)))
    return -EINVAL;
  *name_len = nl;
  return 0;
}

/* Appends a component whose value has already been hashed. */
static int push(ratchet_key_builder *b, ratchet_key_part part, const char *name,
                size_t name_len, uint64_t value_len, ratchet_cache_key digest) {
  void *comps = b->comps, *arena = b->arena;
  if (grow(&comps, &b->cap, b->n, 1, sizeof *b->comps) != 0)
    return -ENOMEM;
  b->comps = comps;
  if (grow(&arena, &b->arena_cap, b->arena_len, name_len ? name_len : 1, 1) !=
      0)
    return -ENOMEM;
  b->arena = arena;
  struct comp *c = &b->comps[b->n++];
  c->part = (uint8_t)part;
  c->name_len = (uint32_t)name_len;
  c->name_off = b->arena_len;
  c->value_len = value_len;
  c->digest = digest;
  if (name_len)
    memcpy(b->arena + b->arena_len, name, name_len);
  b->arena_len += name_len;
  b->manifest_valid = false;
  return 0;
}

int ratchet_key_add(ratchet_key_builder *b, ratchet_key_part part,
                    const char *name, const void *value, size_t len) {
  size_t name_len;
  if (b == NULL || (value == NULL && len != 0))
    return -EINVAL;
  int rc = check_component(part, name, &name_len);
  if (rc != 0)
    return rc;
  ratchet_cache_key d = from_xxh(XXH3_128bits(len ? value : "", len));
  return push(b, part, name, name_len, (uint64_t)len, d);
}

int ratchet_key_add_kind(ratchet_key_builder *b, const char *kind) {
  if (kind == NULL)
    return -EINVAL;
  return ratchet_key_add(b, RATCHET_KEY_KIND, NULL, kind, strlen(kind));
}

int ratchet_key_add_payload(ratchet_key_builder *b, const void *payload,
                            size_t len) {
  return ratchet_key_add(b, RATCHET_KEY_PAYLOAD, NULL, payload, len);
}

int ratchet_key_add_input(ratchet_key_builder *b, const char *name,
                          const void *contents, size_t len) {
  return ratchet_key_add(b, RATCHET_KEY_INPUT, name, contents, len);
}

int ratchet_key_add_env(ratchet_key_builder *b, const char *name,
                        const char *value) {
  if (value == NULL) {
    size_t nl;
    if (b == NULL)
      return -EINVAL;
    return check_component(RATCHET_KEY_ENV, name, &nl);
  }
  return ratchet_key_add(b, RATCHET_KEY_ENV, name, value, strlen(value));
}

int ratchet_key_add_tool(ratchet_key_builder *b, const char *name,
                         const char *version) {
  if (version == NULL)
    return -EINVAL;
  return ratchet_key_add(b, RATCHET_KEY_TOOL, name, version, strlen(version));
}

int ratchet_key_add_salt(ratchet_key_builder *b, const char *salt) {
  if (salt == NULL)
    return -EINVAL;
  return ratchet_key_add(b, RATCHET_KEY_SALT, NULL, salt, strlen(salt));
}

int ratchet_key_add_file(ratchet_key_builder *b, const char *name,
                         const char *path) {
  size_t name_len;
  if (b == NULL || path == NULL)
    return -EINVAL;
  int rc = check_component(RATCHET_KEY_INPUT, name, &name_len);
  if (rc != 0)
    return rc;
  /* O_NONBLOCK: opening a FIFO must not wait for a writer. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0)
    return -errno;
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    rc = -errno;
    close(fd);
    return rc;
  }
  if (!S_ISREG(sb.st_mode)) {
    rc = S_ISDIR(sb.st_mode) ? -EISDIR : -EINVAL;
    close(fd);
    return rc;
  }
  unsigned char *buf = ratchet_malloc(FILE_CHUNK);
  if (buf == NULL) {
    close(fd);
    return -ENOMEM;
  }
  XXH3_state_t st;
  XXH3_INITSTATE(&st);
  XXH3_128bits_reset(&st);
  uint64_t total = 0;
  for (;;) {
    ssize_t got = read(fd, buf, FILE_CHUNK);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      rc = -errno;
      break;
    }
    if (got == 0)
      break;
    XXH3_128bits_update(&st, buf, (size_t)got);
    total += (uint64_t)got;
  }
  ratchet_free(buf);
  close(fd);
  if (rc != 0)
    return rc;
  return push(b, RATCHET_KEY_INPUT, name, name_len, total,
              from_xxh(XXH3_128bits_digest(&st)));
}

/* ---- finish: sort, fold duplicates, serialise, hash ---- */

static int cmp_comp(const ratchet_key_builder *b, const struct comp *x,
                    const struct comp *y) {
  if (x->part != y->part)
    return x->part < y->part ? -1 : 1;
  size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
  int c = n ? memcmp(b->arena + x->name_off, b->arena + y->name_off, n) : 0;
  if (c != 0)
    return c < 0 ? -1 : 1;
  if (x->name_len != y->name_len)
    return x->name_len < y->name_len ? -1 : 1;
  return 0;
}

/* A stable bottom-up merge sort of b->comps using tmp (n records). */
static void sort_comps(ratchet_key_builder *b, struct comp *tmp) {
  struct comp *src = b->comps, *dst = tmp;
  size_t n = b->n;
  for (size_t width = 1; width < n; width *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * width) {
      size_t mid = lo + width < n ? lo + width : n;
      size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi)
        dst[k++] = cmp_comp(b, &src[j], &src[i]) < 0 ? src[j++] : src[i++];
      while (i < mid)
        dst[k++] = src[i++];
      while (j < hi)
        dst[k++] = src[j++];
    }
    struct comp *t = src;
    src = dst;
    dst = t;
  }
  if (src != b->comps)
    memcpy(b->comps, src, n * sizeof *src);
}

static void write_entry(unsigned char *p, const ratchet_key_builder *b,
                        const struct comp *c) {
  *p++ = c->part;
  put_u32le(p, c->name_len);
  p += 4;
  if (c->name_len)
    memcpy(p, b->arena + c->name_off, c->name_len);
  p += c->name_len;
  put_u64le(p, c->value_len);
  p += 8;
  put_u64be(p, c->digest.hi);
  put_u64be(p + 8, c->digest.lo);
}

int ratchet_key_finish(ratchet_key_builder *b, ratchet_cache_key *key) {
  if (b == NULL || key == NULL)
    return -EINVAL;
  if (b->n > UINT32_MAX)
    return -EINVAL;
  if (b->n > 1) {
    struct comp *tmp = ratchet_malloc(b->n * sizeof *tmp);
    if (tmp == NULL)
      return -ENOMEM;
    sort_comps(b, tmp);
    ratchet_free(tmp);
    /* Refuse conflicting duplicates before folding anything. */
    for (size_t i = 1; i < b->n; i++) {
      const struct comp *x = &b->comps[i - 1], *y = &b->comps[i];
      if (cmp_comp(b, x, y) == 0 &&
          (x->value_len != y->value_len ||
           !ratchet_cache_key_equal(&x->digest, &y->digest)))
        return -EEXIST;
    }
    size_t w = 1;
    for (size_t i = 1; i < b->n; i++)
      if (cmp_comp(b, &b->comps[w - 1], &b->comps[i]) != 0)
        b->comps[w++] = b->comps[i];
    b->n = w;
  }
  size_t need = MANIFEST_HEADER;
  for (size_t i = 0; i < b->n; i++)
    need += ENTRY_FIXED + b->comps[i].name_len; /* bounded by the arena */
  void *m = b->manifest;
  if (grow(&m, &b->manifest_cap, 0, need, 1) != 0)
    return -ENOMEM;
  b->manifest = m;
  memcpy(b->manifest, MANIFEST_MAGIC, 4);
  put_u32le(b->manifest + 4, (uint32_t)b->n);
  unsigned char *p = b->manifest + MANIFEST_HEADER;
  for (size_t i = 0; i < b->n; i++) {
    write_entry(p, b, &b->comps[i]);
    p += ENTRY_FIXED + b->comps[i].name_len;
  }
  b->manifest_len = need;
  b->manifest_valid = true;
  *key = from_xxh(XXH3_128bits(b->manifest, need));
  return 0;
}

int ratchet_key_manifest(const ratchet_key_builder *b, const void **data,
                         size_t *len) {
  if (b == NULL || data == NULL || len == NULL || !b->manifest_valid)
    return -EINVAL;
  *data = b->manifest;
  *len = b->manifest_len;
  return 0;
}

/* ---- reading manifests ---- */

/* A cursor over a manifest that has passed check_manifest. */
struct mcur {
  const unsigned char *p, *end;
  uint32_t left;
};

static void mcur_next(struct mcur *m, ratchet_key_component *c) {
  const unsigned char *p = m->p;
  c->part = (ratchet_key_part)p[0];
  c->name_len = get_u32le(p + 1);
  c->name = (const char *)(p + 5);
  p += 5 + c->name_len;
  c->value_len = get_u64le(p);
  c->digest.hi = get_u64be(p + 8);
  c->digest.lo = get_u64be(p + 16);
  m->p = p + 24;
  m->left--;
}

static int cmp_id(const ratchet_key_component *x,
                  const ratchet_key_component *y) {
  if (x->part != y->part)
    return x->part < y->part ? -1 : 1;
  size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
  int c = n ? memcmp(x->name, y->name, n) : 0;
  if (c != 0)
    return c < 0 ? -1 : 1;
  if (x->name_len != y->name_len)
    return x->name_len < y->name_len ? -1 : 1;
  return 0;
}

/* Validates the whole manifest (bounds, parts, names, strict order) and
 * sets up a cursor over it. */
static int check_manifest(const void *data, size_t len, struct mcur *out) {
  const unsigned char *p = data;
  if (data == NULL || len < MANIFEST_HEADER ||
      memcmp(p, MANIFEST_MAGIC, 4) != 0)
    return -EINVAL;
  struct mcur m = {p + MANIFEST_HEADER, p + len, get_u32le(p + 4)};
  struct mcur walk = m;
  ratchet_key_component prev = {RATCHET_KEY_KIND, NULL, 0, 0, {0, 0}}, c;
  for (uint32_t i = 0; i < m.left; i++) {
    size_t room = (size_t)(walk.end - walk.p);
    if (room < ENTRY_FIXED)
      return -EINVAL;
    uint32_t nl = get_u32le(walk.p + 1);
    if (nl > RATCHET_KEY_NAME_MAX || nl > room - ENTRY_FIXED)
      return -EINVAL;
    mcur_next(&walk, &c);
    if ((int)c.part < PART_MIN || (int)c.part > PART_MAX ||
        (c.name_len == 0 && needs_name((int)c.part)))
      return -EINVAL;
    if (i > 0 && cmp_id(&prev, &c) >= 0)
      return -EINVAL; /* not canonical: unsorted or duplicated */
    prev = c;
  }
  if (walk.p != walk.end)
    return -EINVAL;
  *out = m;
  return 0;
}

int ratchet_key_manifest_foreach(const void *data, size_t len,
                                 int (*fn)(void *ctx,
                                           const ratchet_key_component *c),
                                 void *ctx) {
  struct mcur m;
  int rc = check_manifest(data, len, &m);
  if (rc != 0 || fn == NULL)
    return rc;
  while (m.left > 0) {
    ratchet_key_component c;
    mcur_next(&m, &c);
    rc = fn(ctx, &c);
    if (rc != 0)
      return rc;
  }
  return 0;
}

int ratchet_key_manifest_key(const void *data, size_t len,
                             ratchet_cache_key *key) {
  struct mcur m;
  if (key == NULL)
    return -EINVAL;
  int rc = check_manifest(data, len, &m);
  if (rc != 0)
    return rc;
  *key = from_xxh(XXH3_128bits(data, len));
  return 0;
}

/* ---- explain ---- */

struct text {
  char *buf;
  size_t len, cap;
  int err;
};

static void text_add(struct text *t, const char *s, size_t n) {
  void *buf = t->buf;
  if (t->err != 0)
    return;
  if (grow(&buf, &t->cap, t->len, n + 1, 1) != 0) {
    t->err = -ENOMEM;
    return;
  }
  t->buf = buf;
  memcpy(t->buf + t->len, s, n);
  t->len += n;
  t->buf[t->len] = '\0';
}

static void text_str(struct text *t, const char *s) {
  text_add(t, s, strlen(s));
}

/* Appends a name, escaping what could confuse a reader or a terminal. */
static void text_name(struct text *t, const char *name, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)name[i];
    if (ch < 0x20 || ch > 0x7e || ch == '\'' || ch == '\\') {
      char esc[5];
      snprintf(esc, sizeof esc, "\\x%02x", ch);
      text_add(t, esc, 4);
    } else {
      text_add(t, name + i, 1);
    }
  }
}

static void explain_line(struct text *t, const ratchet_key_component *c,
                         const char *what) {
  text_str(t, part_names[c->part]);
  if (c->name_len > 0) {
    bool quote = c->part != RATCHET_KEY_ENV;
    text_str(t, quote ? " '" : " ");
    text_name(t, c->name, c->name_len);
    if (quote)
      text_str(t, "'");
  }
  text_str(t, " ");
  text_str(t, what);
  text_str(t, "\n");
}

int ratchet_key_explain(const void *old_m, size_t old_len, const void *new_m,
                        size_t new_len, char **text) {
  struct mcur a = {NULL, NULL, 0}, b;
  struct text t = {NULL, 0, 0, 0};
  int diffs = 0;
  if (text == NULL)
    return -EINVAL;
  if (check_manifest(new_m, new_len, &b) != 0 ||
      (old_m != NULL && check_manifest(old_m, old_len, &a) != 0))
    return -EINVAL;
  if (old_m == NULL) {
    text_str(&t, "no previous key\n");
  } else {
    ratchet_key_component x, y;
    bool hx = false, hy = false;
    for (;;) {
      if (!hx && a.left > 0) {
        mcur_next(&a, &x);
        hx = true;
      }
      if (!hy && b.left > 0) {
        mcur_next(&b, &y);
        hy = true;
      }
      if (!hx && !hy)
        break;
      int c = !hx ? 1 : !hy ? -1 : cmp_id(&x, &y);
      if (c < 0) {
        explain_line(&t, &x, "removed");
        diffs++;
        hx = false;
      } else if (c > 0) {
        explain_line(&t, &y, "added");
        diffs++;
        hy = false;
      } else {
        if (x.value_len != y.value_len ||
            !ratchet_cache_key_equal(&x.digest, &y.digest)) {
          explain_line(&t, &y, "changed");
          diffs++;
        }
        hx = hy = false;
      }
    }
    if (diffs == 0)
      text_str(&t, "no component changed\n");
  }
  if (t.err != 0 || t.buf == NULL) {
    ratchet_free(t.buf);
    return -ENOMEM;
  }
  *text = t.buf;
  return diffs;
}
