/*
 * fuzz_frame.c - libFuzzer target for the receiving side of the wire: the
 * incremental frame decoder and the message codec.
 *
 * The input is a byte stream as a peer would send it. It is decoded four
 * ways - in one feed, a byte at a time, in chunks cut by a PRNG seeded from
 * the input, and with a callback that stops after every frame and resumes
 * from `consumed` - and all four must give the same frames, the same error
 * and the same finish() result. Each frame body is then unpacked twice, by
 * ratchet_codec_unpack and by the transports' arena ratchet_unpacker, which
 * must agree; every frame that unpacks is packed again and must survive a
 * second round trip byte for byte, and its strings go through the version
 * checks, the name helpers and the UTF-8 cleaning of the Error encoder.
 * Any disagreement aborts, so the fuzzer reports it along with the memory
 * errors ASan and UBSan find.
 *
 * Built as a libFuzzer target with -DRATCHET_FUZZ=ON (clang), and, with any
 * compiler, as fuzz-frame-replay, which runs the seed corpus through the
 * same code in the normal test suite.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ratchet/codec.h"
#include "ratchet/error.h"
#include "ratchet/frame.h"
#include "ratchet/transport.h"

#include "fuzz_frame.h"

/* Small enough that the fuzzer reaches the limit with short inputs, large
 * enough for every seed. */
#define FUZZ_MAX_FRAME 4096

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond))                                                               \
      abort();                                                                 \
  } while (0)

/* What one decoding produced. Bodies are concatenated; a stream of n bytes
 * holds at most n frames and n body bytes. */
typedef struct trace {
  uint8_t *bytes;
  size_t *lens;
  size_t nbytes, n, cap;
  int stop; /* the callback stops after each frame */
} trace;

static void trace_init(trace *t, size_t size) {
  t->cap = size;
  t->bytes = malloc(size + 1);
  t->lens = malloc((size + 1) * sizeof *t->lens);
  CHECK(t->bytes != NULL && t->lens != NULL);
  t->nbytes = t->n = 0;
  t->stop = 0;
}

static void trace_free(trace *t) {
  free(t->bytes);
  free(t->lens);
}

static int on_frame(void *ctx, const uint8_t *body, size_t len) {
  trace *t = ctx;
  CHECK(body != NULL);
  CHECK(t->n < t->cap + 1 && len <= t->cap - t->nbytes);
  if (len > 0)
    memcpy(t->bytes + t->nbytes, body, len);
  t->nbytes += len;
  t->lens[t->n++] = len;
  return t->stop ? -1 : 0;
}

static int trace_equal(const trace *a, const trace *b) {
  return a->n == b->n && a->nbytes == b->nbytes &&
         memcmp(a->lens, b->lens, a->n * sizeof *a->lens) == 0 &&
         (a->nbytes == 0 || memcmp(a->bytes, b->bytes, a->nbytes) == 0);
}

static ratchet_frame_decoder *decoder(void) {
  ratchet_frame_decoder *d = NULL;
  CHECK(ratchet_frame_decoder_new(FUZZ_MAX_FRAME, &d) == 0);
  return d;
}

/* Decodes data in pieces of the sizes next_cut gives; returns the first
 * error (or 0) and sets *fin to finish()'s answer. */
typedef size_t (*cut_fn)(void *state, size_t left);

static int decode(const uint8_t *data, size_t size, cut_fn next_cut,
                  void *state, trace *t, int *fin) {
  ratchet_frame_decoder *d = decoder();
  size_t at = 0;
  int rc = 0;
  while (at < size) {
    size_t n = next_cut(state, size - at), consumed = 0;
    rc = ratchet_frame_decoder_feed(d, data + at, n, on_frame, t, &consumed);
    CHECK(consumed <= n);
    if (rc == -1 && t->stop) {
      /* Stopped by the callback: right after a frame, nothing pending. */
      CHECK(ratchet_frame_decoder_pending(d) == 0);
      rc = 0;
    } else if (rc != 0) {
      break;
    } else {
      CHECK(consumed == n);
    }
    at += consumed;
  }
  *fin = ratchet_frame_decoder_finish(d);
  /* A failed decoder stays failed. */
  if (rc != 0)
    CHECK(ratchet_frame_decoder_feed(d, "", 1, on_frame, t, NULL) == rc);
  ratchet_frame_decoder_free(d);
  return rc;
}

static size_t cut_whole(void *state, size_t left) {
  (void)state;
  return left;
}

static size_t cut_byte(void *state, size_t left) {
  (void)state;
  (void)left;
  return 1;
}

static size_t cut_random(void *state, size_t left) {
  uint64_t *s = state;
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  /* Mostly tiny pieces, sometimes a large one. */
  size_t n =
      (*s & 3) == 0 ? (size_t)(*s >> 16) % 512 + 1 : (size_t)(*s >> 16) % 4 + 1;
  return n < left ? n : left;
}

/* Packs f, checks that the bytes unpack to a frame that packs to the same
 * bytes. Returns the encoded length (prefix included). */
static void check_repack(const Ratchet__V1__Frame *f) {
  ratchet_buf a = RATCHET_BUF_INIT, b = RATCHET_BUF_INIT;
  /* Unknown fields are packed too, so the frame may exceed what it came
   * in as only by a longer length prefix: the default limit holds it. */
  CHECK(ratchet_codec_encode(&a, f, 0) == 0);
  ratchet_frame_decoder *d = decoder();
  trace t;
  trace_init(&t, a.len);
  int rc = ratchet_frame_decoder_feed(d, a.data, a.len, on_frame, &t, NULL);
  /* A repacked frame is never larger than the body it came from, except
   * for fields protobuf-c normalises; allow TOO_BIG only past the limit. */
  if (rc == 0) {
    CHECK(t.n == 1);
    Ratchet__V1__Frame *g = NULL;
    CHECK(ratchet_codec_unpack(t.bytes, t.nbytes, &g) == 0);
    CHECK(g->msg_case == f->msg_case);
    CHECK(ratchet_codec_encode(&b, g, 0) == 0);
    CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    ratchet_codec_frame_free(g);
  } else {
    CHECK(rc == RATCHET_EFRAME_TOO_BIG);
  }
  trace_free(&t);
  ratchet_frame_decoder_free(d);
  ratchet_buf_free(&a);
  ratchet_buf_free(&b);
}

/* Runs a peer-supplied text through the Error encoder: the text it sends
 * must itself pass through cleaning unchanged (valid UTF-8, within the
 * limit). */
static void check_error_text(const char *text) {
  ratchet_buf a = RATCHET_BUF_INIT;
  CHECK(ratchet_codec_encode_error(&a, RATCHET_EFRAME_EMPTY, text, 0) == 0);
  size_t pfx = 0;
  while (a.data[pfx] & 0x80)
    pfx++;
  pfx++;
  Ratchet__V1__Frame *g = NULL;
  CHECK(ratchet_codec_unpack(a.data + pfx, a.len - pfx, &g) == 0);
  CHECK(g->msg_case == RATCHET__V1__FRAME__MSG_ERROR);
  CHECK(strlen(g->error->text) <= RATCHET_CODEC_ERROR_TEXT_MAX);
  ratchet_buf b = RATCHET_BUF_INIT;
  CHECK(ratchet_codec_encode_error(&b, RATCHET_EFRAME_EMPTY, g->error->text,
                                   0) == 0);
  CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
  ratchet_codec_frame_free(g);
  ratchet_buf_free(&a);
  ratchet_buf_free(&b);
}

/* Touches every field a receiver would read. */
static void use_frame(const Ratchet__V1__Frame *f) {
  char text[RATCHET_CODEC_TEXT_MAX];
  CHECK(strcmp(ratchet_codec_msg_name(f->msg_case), "unknown") != 0);
  switch (f->msg_case) {
  case RATCHET__V1__FRAME__MSG_HELLO: {
    int rc = ratchet_codec_check_hello(f->hello, text, sizeof text);
    CHECK(rc == 0 || rc == RATCHET_EPROTO_VERSION);
    CHECK(strlen(text) < sizeof text);
    (void)ratchet_codec_frame_limit(f->hello->max_frame_size);
    check_error_text(f->hello->orchestrator_version);
    break;
  }
  case RATCHET__V1__FRAME__MSG_READY: {
    int rc = ratchet_codec_check_ready(f->ready, text, sizeof text);
    CHECK(rc == 0 || rc == RATCHET_EPROTO_VERSION);
    for (size_t i = 0; i < f->ready->n_kinds; i++)
      CHECK(f->ready->kinds[i] != NULL);
    check_error_text(f->ready->worker_name);
    break;
  }
  case RATCHET__V1__FRAME__MSG_TASK:
    CHECK(f->task->kind != NULL);
    CHECK(f->task->payload.len == 0 || f->task->payload.data != NULL);
    for (size_t i = 0; i < f->task->n_metadata; i++)
      CHECK(f->task->metadata[i]->key != NULL &&
            f->task->metadata[i]->value != NULL);
    break;
  case RATCHET__V1__FRAME__MSG_RESULT:
    (void)ratchet_codec_status_name(f->result->status);
    check_error_text(f->result->error);
    break;
  case RATCHET__V1__FRAME__MSG_LOG:
    (void)ratchet_codec_log_level_name(f->log->level);
    check_error_text(f->log->text);
    break;
  case RATCHET__V1__FRAME__MSG_ERROR:
    (void)ratchet_codec_error_code_name(f->error->code);
    check_error_text(f->error->text);
    break;
  default:
    break;
  }
}

static void check_body(ratchet_unpacker *u, const uint8_t *body, size_t len) {
  Ratchet__V1__Frame *f = NULL;
  const Ratchet__V1__Frame *g = NULL;
  int rc = ratchet_codec_unpack(body, len, &f);
  int rc2 = ratchet_unpacker_unpack(u, body, len, &g);
  /* The unpacker is held to ratchet_codec_check_frame's rules. */
  if (rc2 == 0 && (rc2 = ratchet_codec_check_frame(g)) < 0)
    g = NULL;
  CHECK(rc == rc2);
  if (rc != 0) {
    CHECK(rc == RATCHET_EFRAME_UNDECODABLE || rc == RATCHET_EFRAME_EMPTY);
    CHECK(f == NULL && g == NULL);
    return;
  }
  /* Both unpackers read the same message. */
  ratchet_buf a = RATCHET_BUF_INIT, b = RATCHET_BUF_INIT;
  CHECK(ratchet_codec_encode(&a, f, 0) == 0);
  CHECK(ratchet_codec_encode(&b, g, 0) == 0);
  CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
  ratchet_buf_free(&a);
  ratchet_buf_free(&b);
  use_frame(f);
  check_repack(f);
  ratchet_codec_frame_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  trace whole, bytes, chunks, stops;
  int fin_w, fin_b, fin_c, fin_s;
  trace_init(&whole, size);
  trace_init(&bytes, size);
  trace_init(&chunks, size);
  trace_init(&stops, size);

  int rc = decode(data, size, cut_whole, NULL, &whole, &fin_w);
  CHECK(rc == 0 || rc == RATCHET_EFRAME_VARINT || rc == RATCHET_EFRAME_TOO_BIG);
  CHECK(fin_w == (rc != 0 ? rc : fin_w));
  CHECK(fin_w == 0 || fin_w == rc || fin_w == RATCHET_EFRAME_TRUNCATED);

  CHECK(decode(data, size, cut_byte, NULL, &bytes, &fin_b) == rc);
  CHECK(fin_b == fin_w && trace_equal(&whole, &bytes));

  uint64_t seed = 0xcbf29ce484222325u; /* FNV-1a of the input */
  for (size_t i = 0; i < size; i++)
    seed = (seed ^ data[i]) * 0x100000001b3u;
  seed |= 1; /* xorshift must not start at 0 */
  CHECK(decode(data, size, cut_random, &seed, &chunks, &fin_c) == rc);
  CHECK(fin_c == fin_w && trace_equal(&whole, &chunks));

  stops.stop = 1;
  CHECK(decode(data, size, cut_whole, NULL, &stops, &fin_s) == rc);
  CHECK(fin_s == fin_w && trace_equal(&whole, &stops));

  ratchet_unpacker *u = NULL;
  CHECK(ratchet_unpacker_new(&u) == 0);
  size_t at = 0;
  for (size_t i = 0; i < whole.n; i++) {
    check_body(u, whole.bytes + at, whole.lens[i]);
    at += whole.lens[i];
  }
  ratchet_unpacker_free(u);

  trace_free(&whole);
  trace_free(&bytes);
  trace_free(&chunks);
  trace_free(&stops);
  return 0;
}
