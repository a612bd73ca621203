/*
 * test_frame.c - the byte level of the wire: varints, the encoders into a
 * caller buffer and a growing buffer, and the incremental decoder. The
 * decoder's output for a stream split at every byte, fed a byte at a time
 * and cut into random chunks must equal its output for the whole buffer;
 * every framing error is raised where the stream goes wrong, before any
 * allocation a peer could abuse; and the steady state allocates nothing.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ratchet/error.h"
#include "ratchet/frame.h"
#include "testutil.h"

#define MAX_FRAMES 512

/* What a decoder handed out: bodies concatenated, with their lengths and
 * the pointers it passed. Uses the C library's malloc, so that it does not
 * count against the allocator under test. */
typedef struct recorder {
  uint8_t *bytes;
  size_t len, cap;
  size_t lens[MAX_FRAMES];
  const uint8_t *ptrs[MAX_FRAMES];
  size_t n;
  size_t stop_at; /* return -42 from the callback for frame stop_at - 1 */
} recorder;

static void rec_init(recorder *r, size_t cap) {
  memset(r, 0, sizeof *r);
  r->bytes = malloc(cap > 0 ? cap : 1);
  assert_non_null(r->bytes);
  r->cap = cap;
}

static void rec_free(recorder *r) {
  free(r->bytes);
}

static int rec_cb(void *ctx, const uint8_t *body, size_t len) {
  recorder *r = ctx;
  assert_non_null(body);
  assert_true(r->n < MAX_FRAMES);
  assert_true(len <= r->cap - r->len);
  memcpy(r->bytes + r->len, body, len);
  r->len += len;
  r->ptrs[r->n] = body;
  r->lens[r->n++] = len;
  return r->stop_at != 0 && r->n == r->stop_at ? -42 : 0;
}

static void rec_equal(const recorder *a, const recorder *b) {
  assert_int_equal(a->n, b->n);
  assert_int_equal(a->len, b->len);
  for (size_t i = 0; i < a->n; i++)
    assert_int_equal(a->lens[i], b->lens[i]);
  assert_memory_equal(a->bytes, b->bytes, a->len);
}

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* A stream of frames of awkward lengths: zero, around the one- and two-byte
 * varint limits, and one larger than a typical read. */
static const size_t sample_lens[] = {0,   1,   2,     127,   128, 0,
                                     129, 300, 16383, 16384, 3,   70000,
                                     0,   0,   5,     255,   256, 1000};
#define NSAMPLE (sizeof sample_lens / sizeof sample_lens[0])

static void make_stream(ratchet_buf *s, recorder *expect) {
  uint64_t seed = 0x9e3779b97f4a7c15u;
  size_t total = 0;
  for (size_t i = 0; i < NSAMPLE; i++)
    total += sample_lens[i];
  rec_init(expect, total);
  for (size_t i = 0; i < NSAMPLE; i++) {
    uint8_t *body = malloc(sample_lens[i] + 1);
    assert_non_null(body);
    for (size_t j = 0; j < sample_lens[i]; j++)
      body[j] = (uint8_t)rng_next(&seed);
    assert_int_equal(ratchet_frame_append(s, body, sample_lens[i], 0), 0);
    rec_cb(expect, body, sample_lens[i]);
    free(body);
  }
}

static ratchet_frame_decoder *decoder(size_t max) {
  ratchet_frame_decoder *d = NULL;
  assert_int_equal(ratchet_frame_decoder_new(max, &d), 0);
  assert_non_null(d);
  return d;
}

/* Feeds the stream in pieces cut at the given offsets. */
static void feed_cuts(const ratchet_buf *s, const size_t *cuts, size_t ncuts,
                      recorder *got) {
  ratchet_frame_decoder *d = decoder(0);
  size_t at = 0;
  for (size_t i = 0; i <= ncuts; i++) {
    size_t to = i < ncuts ? cuts[i] : s->len;
    size_t consumed = 0;
    assert_int_equal(ratchet_frame_decoder_feed(d, s->data + at, to - at,
                                                rec_cb, got, &consumed),
                     0);
    assert_int_equal(consumed, to - at);
    at = to;
  }
  assert_int_equal(ratchet_frame_decoder_pending(d), 0);
  assert_int_equal(ratchet_frame_decoder_finish(d), 0);
  ratchet_frame_decoder_free(d);
}

static void test_varint(void **state) {
  (void)state;
  static const struct {
    uint64_t v;
    size_t n;
    uint8_t bytes[10];
  } cases[] = {
      {0, 1, {0x00}},
      {1, 1, {0x01}},
      {127, 1, {0x7f}},
      {128, 2, {0x80, 0x01}},
      {300, 2, {0xac, 0x02}},
      {16383, 2, {0xff, 0x7f}},
      {16384, 3, {0x80, 0x80, 0x01}},
      {UINT64_C(1) << 63,
       10,
       {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}},
      {UINT64_MAX,
       10,
       {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t out[RATCHET_FRAME_VARINT_MAX];
    assert_int_equal(ratchet_varint_encode(cases[i].v, out), cases[i].n);
    assert_memory_equal(out, cases[i].bytes, cases[i].n);
  }
}

static void test_buf(void **state) {
  (void)state;
  ratchet_buf b = RATCHET_BUF_INIT;
  assert_int_equal(ratchet_buf_append(&b, "abc", 3), 0);
  assert_int_equal(ratchet_buf_append(&b, NULL, 0), 0);
  assert_int_equal(b.len, 3);
  assert_memory_equal(b.data, "abc", 3);
  uint8_t *mem = b.data;
  ratchet_buf_reset(&b);
  assert_int_equal(b.len, 0);
  assert_ptr_equal(b.data, mem); /* memory kept */
  assert_int_equal(ratchet_buf_reserve(&b, 1000), 0);
  assert_true(b.cap >= 1000);
  /* A request that cannot be met leaves the buffer as it was. */
  size_t cap = b.cap;
  assert_int_equal(ratchet_buf_append(&b, "x", 1), 0);
  assert_int_equal(ratchet_buf_reserve(&b, SIZE_MAX), -ENOMEM);
  assert_int_equal(b.len, 1);
  assert_int_equal(b.cap, cap);
  ratchet_buf_free(&b);
  assert_null(b.data);
  assert_int_equal(b.cap, 0);
  ratchet_buf_free(&b); /* twice is harmless */
}

static void test_frame_write(void **state) {
  (void)state;
  uint8_t dst[400];
  size_t written = 0;
  uint8_t body[300];
  memset(body, 'x', sizeof body);

  assert_int_equal(ratchet_frame_write(body, 300, 0, dst, sizeof dst, &written),
                   0);
  assert_int_equal(written, 302);
  assert_int_equal(dst[0], 0xac);
  assert_int_equal(dst[1], 0x02);
  assert_memory_equal(dst + 2, body, 300);

  /* Too small: nothing written, and the size needed is reported. */
  memset(dst, 0, sizeof dst);
  assert_int_equal(ratchet_frame_write(body, 300, 0, dst, 301, &written),
                   -ENOBUFS);
  assert_int_equal(written, 302);
  assert_int_equal(dst[0], 0);
  assert_int_equal(ratchet_frame_write(body, 300, 0, NULL, 0, &written),
                   -ENOBUFS);
  assert_int_equal(written, 302);

  /* An empty message is a one-byte frame. */
  assert_int_equal(ratchet_frame_write(NULL, 0, 0, dst, 1, &written), 0);
  assert_int_equal(written, 1);
  assert_int_equal(dst[0], 0);

  /* The limit applies to the body; exactly the limit is allowed. */
  assert_int_equal(
      ratchet_frame_write(body, 300, 300, dst, sizeof dst, &written), 0);
  assert_int_equal(
      ratchet_frame_write(body, 300, 299, dst, sizeof dst, &written),
      RATCHET_EFRAME_TOO_BIG);
}

static void test_frame_append(void **state) {
  (void)state;
  ratchet_buf b = RATCHET_BUF_INIT;
  assert_int_equal(ratchet_frame_append(&b, "hi", 2, 0), 0);
  assert_int_equal(ratchet_frame_append(&b, NULL, 0, 0), 0);
  assert_int_equal(b.len, 4);
  assert_memory_equal(b.data, "\x02hi\x00", 4);

  /* Too big: refused, the buffer keeps its frames. */
  assert_int_equal(ratchet_frame_append(&b, "hello", 5, 4),
                   RATCHET_EFRAME_TOO_BIG);
  assert_int_equal(b.len, 4);

  /* Encoding frame after frame into a reset buffer allocates nothing once
   * the buffer has reached the largest frame. */
  static uint8_t body[5000];
  ratchet_buf_reset(&b);
  assert_int_equal(ratchet_frame_append(&b, body, sizeof body, 0), 0);
  tu_alloc_install(SIZE_MAX);
  for (int i = 0; i < 1000; i++) {
    ratchet_buf_reset(&b);
    assert_int_equal(ratchet_frame_append(&b, body, (size_t)i * 5, 0), 0);
  }
  assert_int_equal(tu_alloc_count(), 0);
  tu_alloc_uninstall();
  ratchet_buf_free(&b);

  /* Out of memory: -ENOMEM and the buffer as it was. */
  tu_alloc_install(0);
  ratchet_buf e = RATCHET_BUF_INIT;
  assert_int_equal(ratchet_frame_append(&e, "hi", 2, 0), -ENOMEM);
  assert_null(e.data);
  assert_int_equal(e.len, 0);
  assert_int_equal(tu_alloc_live(), 0);
  tu_alloc_uninstall();
}

static void test_decoder_new(void **state) {
  (void)state;
  ratchet_frame_decoder *d = NULL;
  assert_int_equal(ratchet_frame_decoder_new(SIZE_MAX / 2 + 1, &d), -EINVAL);
  assert_null(d);
  assert_int_equal(ratchet_frame_decoder_new(0, NULL), -EINVAL);
  tu_alloc_install(0);
  assert_int_equal(ratchet_frame_decoder_new(0, &d), -ENOMEM);
  assert_null(d);
  assert_int_equal(tu_alloc_live(), 0);
  tu_alloc_uninstall();
  ratchet_frame_decoder_free(NULL);

  /* 0 means the 64 MiB default: a prefix of exactly 64 MiB is accepted, one
   * byte more is not. */
  uint8_t pfx[RATCHET_FRAME_VARINT_MAX];
  size_t n = ratchet_varint_encode(RATCHET_FRAME_MAX_DEFAULT, pfx);
  d = decoder(0);
  recorder r;
  rec_init(&r, 0);
  assert_int_equal(ratchet_frame_decoder_feed(d, pfx, n, rec_cb, &r, NULL), 0);
  assert_int_equal(ratchet_frame_decoder_pending(d), n);
  ratchet_frame_decoder_free(d);
  n = ratchet_varint_encode(RATCHET_FRAME_MAX_DEFAULT + 1, pfx);
  d = decoder(0);
  assert_int_equal(ratchet_frame_decoder_feed(d, pfx, n, rec_cb, &r, NULL),
                   RATCHET_EFRAME_TOO_BIG);
  ratchet_frame_decoder_free(d);
  rec_free(&r);
}

static void test_whole_buffer(void **state) {
  (void)state;
  ratchet_buf s = RATCHET_BUF_INIT;
  recorder expect, got;
  make_stream(&s, &expect);
  rec_init(&got, expect.len);
  feed_cuts(&s, NULL, 0, &got);
  rec_equal(&expect, &got);
  /* Every body lies inside the fed buffer: handed out in place, no copy. */
  for (size_t i = 0; i < got.n; i++)
    if (got.lens[i] > 0)
      assert_true(got.ptrs[i] > s.data && got.ptrs[i] < s.data + s.len);
  rec_free(&got);
  rec_free(&expect);
  ratchet_buf_free(&s);
}

static void test_split_every_byte(void **state) {
  (void)state;
  ratchet_buf s = RATCHET_BUF_INIT;
  recorder expect;
  make_stream(&s, &expect);
  for (size_t cut = 0; cut <= s.len; cut++) {
    recorder got;
    rec_init(&got, expect.len);
    feed_cuts(&s, &cut, 1, &got);
    rec_equal(&expect, &got);
    rec_free(&got);
  }
  rec_free(&expect);
  ratchet_buf_free(&s);
}

static void test_byte_at_a_time(void **state) {
  (void)state;
  ratchet_buf s = RATCHET_BUF_INIT;
  recorder expect, got;
  make_stream(&s, &expect);
  rec_init(&got, expect.len);
  ratchet_frame_decoder *d = decoder(0);
  for (size_t i = 0; i < s.len; i++) {
    assert_int_equal(
        ratchet_frame_decoder_feed(d, s.data + i, 1, rec_cb, &got, NULL), 0);
    /* In the middle of the stream a frame is pending unless one just
     * ended. */
    assert_true(ratchet_frame_decoder_pending(d) <= 70000 + 3);
  }
  assert_int_equal(ratchet_frame_decoder_finish(d), 0);
  rec_equal(&expect, &got);
  ratchet_frame_decoder_free(d);
  rec_free(&got);
  rec_free(&expect);
  ratchet_buf_free(&s);
}

static void test_random_chunks(void **state) {
  (void)state;
  ratchet_buf s = RATCHET_BUF_INIT;
  recorder expect;
  make_stream(&s, &expect);
  uint64_t seed = 42;
  size_t *cuts = malloc(s.len * sizeof *cuts);
  assert_non_null(cuts);
  for (int round = 0; round < 300; round++) {
    /* Mostly small pieces, so that prefixes and bodies split everywhere,
     * with some large ones that hold several frames. */
    size_t n = 0, at = 0;
    for (;;) {
      uint64_t x = rng_next(&seed);
      size_t step = (x & 3) == 0 ? (size_t)(x >> 8) % 100000 : (x >> 8) % 17;
      at += step + 1;
      if (at >= s.len)
        break;
      cuts[n++] = at;
    }
    recorder got;
    rec_init(&got, expect.len);
    feed_cuts(&s, cuts, n, &got);
    rec_equal(&expect, &got);
    rec_free(&got);
  }
  free(cuts);
  rec_free(&expect);
  ratchet_buf_free(&s);
}

/* Feeds bytes in one call and returns the result; r may be NULL. */
static int feed_all(ratchet_frame_decoder *d, const void *bytes, size_t len,
                    recorder *r) {
  recorder local;
  if (r == NULL) {
    rec_init(&local, 1 << 16);
    r = &local;
  }
  int rc = ratchet_frame_decoder_feed(d, bytes, len, rec_cb, r, NULL);
  if (r == &local)
    rec_free(&local);
  return rc;
}

static void test_bad_varint(void **state) {
  (void)state;
  /* An 11th prefix byte, a 10th byte with bits past 2^64, and the same fed
   * a byte at a time: each RATCHET_EFRAME_VARINT, and the decoder stays
   * failed. */
  static const uint8_t eleven[11] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                     0x80, 0x80, 0x80, 0x81, 0x00};
  static const uint8_t over64[10] = {0xff, 0xff, 0xff, 0xff, 0xff,
                                     0xff, 0xff, 0xff, 0xff, 0x02};
  const struct {
    const uint8_t *p;
    size_t n;
  } bad[] = {{eleven, sizeof eleven}, {over64, sizeof over64}};
  for (size_t i = 0; i < 2; i++) {
    ratchet_frame_decoder *d = decoder(0);
    assert_int_equal(feed_all(d, bad[i].p, bad[i].n, NULL),
                     RATCHET_EFRAME_VARINT);
    assert_int_equal(feed_all(d, "\x01x", 2, NULL), RATCHET_EFRAME_VARINT);
    assert_int_equal(ratchet_frame_decoder_finish(d), RATCHET_EFRAME_VARINT);
    ratchet_frame_decoder_free(d);

    d = decoder(0);
    int rc = 0;
    for (size_t j = 0; j < bad[i].n && rc == 0; j++)
      rc = feed_all(d, bad[i].p + j, 1, NULL);
    assert_int_equal(rc, RATCHET_EFRAME_VARINT);
    ratchet_frame_decoder_free(d);
  }

  /* A valid frame before the bad prefix is still delivered. */
  recorder r;
  rec_init(&r, 16);
  ratchet_frame_decoder *d = decoder(0);
  uint8_t stream[13] = {0x02, 'o', 'k'};
  memcpy(stream + 3, over64, sizeof over64);
  assert_int_equal(feed_all(d, stream, sizeof stream, &r),
                   RATCHET_EFRAME_VARINT);
  assert_int_equal(r.n, 1);
  assert_memory_equal(r.bytes, "ok", 2);
  ratchet_frame_decoder_free(d);
  rec_free(&r);

  /* The largest valid 10-byte prefix is a well-formed varint, refused for
   * its size. */
  static const uint8_t max64[10] = {0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0x01};
  d = decoder(0);
  assert_int_equal(feed_all(d, max64, sizeof max64, NULL),
                   RATCHET_EFRAME_TOO_BIG);
  ratchet_frame_decoder_free(d);
}

static void test_overlong_varint(void **state) {
  (void)state;
  /* Non-canonical prefixes are accepted, as protobuf parsers accept them:
   * 0x80 0x00 is 0, 0x82 0x80 0x00 is 2. */
  static const uint8_t s[] = {0x80, 0x00, 0x82, 0x80, 0x00, 'h', 'i'};
  for (size_t cut = 0; cut <= sizeof s; cut++) {
    recorder r;
    rec_init(&r, 16);
    ratchet_frame_decoder *d = decoder(0);
    assert_int_equal(feed_all(d, s, cut, &r), 0);
    assert_int_equal(feed_all(d, s + cut, sizeof s - cut, &r), 0);
    assert_int_equal(ratchet_frame_decoder_finish(d), 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.lens[0], 0);
    assert_int_equal(r.lens[1], 2);
    assert_memory_equal(r.bytes, "hi", 2);
    ratchet_frame_decoder_free(d);
    rec_free(&r);
  }
}

static void test_too_big_before_alloc(void **state) {
  (void)state;
  uint8_t pfx[RATCHET_FRAME_VARINT_MAX];
  size_t n = ratchet_varint_encode(1001, pfx);
  ratchet_frame_decoder *d = decoder(1000);

  /* The prefix alone is enough to refuse the frame: nothing is allocated
   * and no body byte is needed. */
  tu_alloc_install(SIZE_MAX);
  assert_int_equal(feed_all(d, pfx, n, NULL), RATCHET_EFRAME_TOO_BIG);
  assert_int_equal(tu_alloc_count(), 0);
  assert_int_equal(ratchet_frame_decoder_finish(d), RATCHET_EFRAME_TOO_BIG);
  tu_alloc_uninstall();
  ratchet_frame_decoder_free(d);

  /* Same with the prefix split. */
  d = decoder(1000);
  assert_int_equal(feed_all(d, pfx, 1, NULL), 0);
  assert_int_equal(feed_all(d, pfx + 1, n - 1, NULL), RATCHET_EFRAME_TOO_BIG);
  ratchet_frame_decoder_free(d);

  /* Exactly the limit is a frame. */
  static uint8_t s[1002];
  n = ratchet_varint_encode(1000, s);
  recorder r;
  rec_init(&r, 1000);
  d = decoder(1000);
  assert_int_equal(feed_all(d, s, n + 1000, &r), 0);
  assert_int_equal(r.n, 1);
  ratchet_frame_decoder_free(d);
  rec_free(&r);
}

static void test_memory_follows_bytes(void **state) {
  (void)state;
  /* A peer announcing a 32 MiB frame and sending 100 bytes of it costs us
   * about 100 bytes, not 32 MiB. */
  uint8_t s[110];
  size_t n = ratchet_varint_encode((size_t)32 << 20, s);
  memset(s + n, 'x', sizeof s - n);
  tu_alloc_install(SIZE_MAX);
  ratchet_frame_decoder *d = decoder(0);
  assert_int_equal(feed_all(d, s, sizeof s, NULL), 0);
  assert_true(tu_alloc_max_size() <= 4096);
  assert_int_equal(ratchet_frame_decoder_pending(d), sizeof s);
  assert_int_equal(ratchet_frame_decoder_finish(d), RATCHET_EFRAME_TRUNCATED);
  ratchet_frame_decoder_free(d);
  assert_int_equal(tu_alloc_live(), 0);
  tu_alloc_uninstall();
}

static void test_truncated(void **state) {
  (void)state;
  /* End of stream between frames is clean; inside a prefix or a body it
   * is RATCHET_EFRAME_TRUNCATED. pending() counts the held bytes. */
  ratchet_frame_decoder *d = decoder(0);
  assert_int_equal(ratchet_frame_decoder_finish(d), 0);
  assert_int_equal(feed_all(d, "\x02ok", 3, NULL), 0);
  assert_int_equal(ratchet_frame_decoder_finish(d), 0);
  assert_int_equal(feed_all(d, "\x80", 1, NULL), 0);
  assert_int_equal(ratchet_frame_decoder_pending(d), 1);
  assert_int_equal(ratchet_frame_decoder_finish(d), RATCHET_EFRAME_TRUNCATED);
  assert_int_equal(feed_all(d, "\x01", 1, NULL), 0); /* 128-byte body */
  assert_int_equal(ratchet_frame_decoder_pending(d), 2);
  assert_int_equal(ratchet_frame_decoder_finish(d), RATCHET_EFRAME_TRUNCATED);
  static uint8_t body[128];
  assert_int_equal(feed_all(d, body, 127, NULL), 0);
  assert_int_equal(ratchet_frame_decoder_pending(d), 129);
  assert_int_equal(ratchet_frame_decoder_finish(d), RATCHET_EFRAME_TRUNCATED);
  assert_int_equal(feed_all(d, body, 1, NULL), 0);
  assert_int_equal(ratchet_frame_decoder_pending(d), 0);
  assert_int_equal(ratchet_frame_decoder_finish(d), 0);
  ratchet_frame_decoder_free(d);
}

static void test_zero_length(void **state) {
  (void)state;
  /* Many empty frames in one read, and alone. */
  static const uint8_t zeros[100];
  recorder r;
  rec_init(&r, 0);
  ratchet_frame_decoder *d = decoder(0);
  assert_int_equal(feed_all(d, zeros, sizeof zeros, &r), 0);
  assert_int_equal(r.n, 100);
  assert_int_equal(feed_all(d, zeros, 1, &r), 0);
  assert_int_equal(r.n, 101);
  /* Feeding nothing is fine, even with a NULL pointer. */
  assert_int_equal(feed_all(d, NULL, 0, &r), 0);
  assert_int_equal(ratchet_frame_decoder_finish(d), 0);
  ratchet_frame_decoder_free(d);
  rec_free(&r);
}

static void test_callback_stops(void **state) {
  (void)state;
  ratchet_buf s = RATCHET_BUF_INIT;
  recorder expect;
  make_stream(&s, &expect);
  /* Stop after each frame in turn, then go on with the rest: the same
   * frames come out, and consumed ends exactly after the stopping frame. */
  for (size_t k = 1; k <= NSAMPLE; k++) {
    recorder got;
    rec_init(&got, expect.len);
    got.stop_at = k;
    ratchet_frame_decoder *d = decoder(0);
    size_t consumed = 0;
    assert_int_equal(
        ratchet_frame_decoder_feed(d, s.data, s.len, rec_cb, &got, &consumed),
        -42);
    assert_int_equal(got.n, k);
    size_t end = 0;
    for (size_t i = 0; i < k; i++) {
      uint8_t pfx[RATCHET_FRAME_VARINT_MAX];
      end += ratchet_varint_encode(sample_lens[i], pfx) + sample_lens[i];
    }
    assert_int_equal(consumed, end);
    assert_int_equal(ratchet_frame_decoder_pending(d), 0);
    got.stop_at = 0;
    assert_int_equal(ratchet_frame_decoder_feed(d, s.data + consumed,
                                                s.len - consumed, rec_cb, &got,
                                                NULL),
                     0);
    rec_equal(&expect, &got);
    ratchet_frame_decoder_free(d);
    rec_free(&got);
  }
  rec_free(&expect);
  ratchet_buf_free(&s);
}

static int positive_cb(void *ctx, const uint8_t *body, size_t len) {
  (void)body;
  (void)len;
  ++*(int *)ctx;
  return 7;
}

static void test_callback_positive(void **state) {
  (void)state;
  /* Only negative values stop; anything else goes on. */
  int calls = 0;
  ratchet_frame_decoder *d = decoder(0);
  assert_int_equal(ratchet_frame_decoder_feed(d, "\x00\x01x\x00", 4,
                                              positive_cb, &calls, NULL),
                   0);
  assert_int_equal(calls, 3);
  ratchet_frame_decoder_free(d);
}

static void test_no_alloc_steady_state(void **state) {
  (void)state;
  /* Frames split across feeds are gathered in the decoder's buffer; once it
   * has grown to the frame size, no more allocation happens. */
  static uint8_t s[3 * 1003];
  size_t at = 0;
  for (int i = 0; i < 3; i++) {
    size_t n = ratchet_varint_encode(1000, s + at);
    memset(s + at + n, 'a' + i, 1000);
    at += n + 1000;
  }
  ratchet_frame_decoder *d = decoder(0);
  recorder r;
  rec_init(&r, 3 * 1000 * 200);
  assert_int_equal(feed_all(d, s, 500, &r), 0);
  assert_int_equal(feed_all(d, s + 500, at - 500, &r), 0);
  tu_alloc_install(SIZE_MAX);
  for (int round = 0; round < 100; round++) {
    size_t cut = 1 + (size_t)round * 29 % (at - 1);
    assert_int_equal(feed_all(d, s, cut, &r), 0);
    assert_int_equal(feed_all(d, s + cut, at - cut, &r), 0);
  }
  assert_int_equal(tu_alloc_count(), 0);
  tu_alloc_uninstall();
  assert_int_equal(r.n, 3 + 300);
  ratchet_frame_decoder_free(d);
  rec_free(&r);
}

static void test_shrinks_after_huge_frame(void **state) {
  (void)state;
  /* One 4 MiB frame in pieces grows the buffer; a run of small split frames
   * afterwards gives that memory back. */
  size_t big = (size_t)4 << 20;
  uint8_t *s = calloc(1, big + 16);
  assert_non_null(s);
  size_t n = ratchet_varint_encode(big, s);
  tu_alloc_install(SIZE_MAX);
  ratchet_frame_decoder *d = decoder(0);
  for (size_t at = 0; at < n + big; at += 65536) {
    size_t len = n + big - at < 65536 ? n + big - at : 65536;
    assert_int_equal(ratchet_frame_decoder_feed(d, s + at, len, positive_cb,
                                                &(int){0}, NULL),
                     0);
  }
  assert_int_equal(tu_alloc_max_size(), big);
  for (int i = 0; i < 128; i++) {
    assert_int_equal(feed_all(d, "\x03", 1, NULL), 0);
    assert_int_equal(feed_all(d, "abc", 3, NULL), 0);
  }
  assert_true(tu_alloc_last_size() < big);
  assert_true(tu_alloc_last_size() <= (size_t)64 << 10);
  assert_int_equal(tu_alloc_live(), 2); /* the decoder and its buffer */
  ratchet_frame_decoder_free(d);
  assert_int_equal(tu_alloc_live(), 0);
  tu_alloc_uninstall();
  free(s);
}

static void test_enomem_body(void **state) {
  (void)state;
  /* The body buffer cannot be allocated: -ENOMEM, the decoder is failed,
   * and freeing it leaks nothing. */
  ratchet_frame_decoder *d = decoder(0);
  tu_alloc_install(0);
  assert_int_equal(feed_all(d,
                            "\x05"
                            "ab",
                            3, NULL),
                   -ENOMEM);
  assert_int_equal(feed_all(d, "cde", 3, NULL), -ENOMEM);
  assert_int_equal(ratchet_frame_decoder_finish(d), -ENOMEM);
  tu_alloc_uninstall();
  ratchet_frame_decoder_free(d);

  /* Whole frames in one read need no memory at all. */
  d = decoder(0);
  tu_alloc_install(0);
  assert_int_equal(feed_all(d,
                            "\x05"
                            "abcde\x00",
                            7, NULL),
                   0);
  tu_alloc_uninstall();
  ratchet_frame_decoder_free(d);
}

int test_frame(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_varint),
      cmocka_unit_test(test_buf),
      cmocka_unit_test(test_frame_write),
      cmocka_unit_test(test_frame_append),
      cmocka_unit_test(test_decoder_new),
      cmocka_unit_test(test_whole_buffer),
      cmocka_unit_test(test_split_every_byte),
      cmocka_unit_test(test_byte_at_a_time),
      cmocka_unit_test(test_random_chunks),
      cmocka_unit_test(test_bad_varint),
      cmocka_unit_test(test_overlong_varint),
      cmocka_unit_test(test_too_big_before_alloc),
      cmocka_unit_test(test_memory_follows_bytes),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_zero_length),
      cmocka_unit_test(test_callback_stops),
      cmocka_unit_test(test_callback_positive),
      cmocka_unit_test(test_no_alloc_steady_state),
      cmocka_unit_test(test_shrinks_after_huge_frame),
      cmocka_unit_test(test_enomem_body),
  };
  return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
