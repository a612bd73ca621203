/*
 * test_codec.c - ratchet.v1.Frame messages over the framing: every message
 * type survives encode -> decoder -> unpack with every field; the bytes of
 * the example in docs/protocol.md; unknown fields ignored; undecodable and
 * empty frames refused with their own codes; the version checks and their
 * texts; the Error frame for each ratchet error; -ENOMEM at every
 * allocation of an unpack leaking nothing; and encoding into a reused
 * buffer allocating nothing.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ratchet/codec.h"
#include "ratchet/error.h"
#include "ratchet/ipc.h"
#include "testutil.h"

/* Encodes f, runs the bytes through a decoder split at the middle, checks
 * that exactly one body comes out and unpacks it. Returns the unpacked
 * frame (free with ratchet_codec_frame_free). */
typedef struct one_body {
  uint8_t *bytes;
  size_t len;
  int n;
} one_body;

static int keep_body(void *ctx, const uint8_t *body, size_t len) {
  one_body *ob = ctx;
  ob->n++;
  ob->bytes = malloc(len + 1);
  assert_non_null(ob->bytes);
  memcpy(ob->bytes, body, len);
  ob->len = len;
  return 0;
}

static Ratchet__V1__Frame *roundtrip(const Ratchet__V1__Frame *f) {
  ratchet_buf b = RATCHET_BUF_INIT;
  assert_int_equal(ratchet_codec_encode(&b, f, 0), 0);

  /* The caller-buffer encoder writes the same bytes. */
  uint8_t *w = malloc(b.len);
  size_t written = 0;
  assert_non_null(w);
  assert_int_equal(ratchet_codec_write(f, 0, w, b.len, &written), 0);
  assert_int_equal(written, b.len);
  assert_memory_equal(w, b.data, b.len);
  free(w);

  ratchet_frame_decoder *d = NULL;
  assert_int_equal(ratchet_frame_decoder_new(0, &d), 0);
  one_body ob = {NULL, 0, 0};
  size_t half = b.len / 2;
  assert_int_equal(
      ratchet_frame_decoder_feed(d, b.data, half, keep_body, &ob, NULL), 0);
  assert_int_equal(ratchet_frame_decoder_feed(d, b.data + half, b.len - half,
                                              keep_body, &ob, NULL),
                   0);
  assert_int_equal(ratchet_frame_decoder_finish(d), 0);
  assert_int_equal(ob.n, 1);
  ratchet_frame_decoder_free(d);

  Ratchet__V1__Frame *out = NULL;
  assert_int_equal(ratchet_codec_unpack(ob.bytes, ob.len, &out), 0);
  assert_non_null(out);
  assert_int_equal(out->msg_case, f->msg_case);

  /* Packing what was unpacked gives the same bytes back. */
  ratchet_buf again = RATCHET_BUF_INIT;
  assert_int_equal(ratchet_codec_encode(&again, out, 0), 0);
  assert_int_equal(again.len, b.len);
  assert_memory_equal(again.data, b.data, b.len);
  ratchet_buf_free(&again);
  free(ob.bytes);
  ratchet_buf_free(&b);
  return out;
}

static void test_hello(void **state) {
  (void)state;
  char ver[] = "0.1.0";
  Ratchet__V1__Hello h = RATCHET__V1__HELLO__INIT;
  h.protocol_version = RATCHET_PROTOCOL_VERSION;
  h.orchestrator_version = ver;
  h.max_frame_size = UINT64_C(1) << 40;
  h.worker_id = 4000000000u;
  h.pipeline_depth = 64;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_HELLO;
  f.hello = &h;
  Ratchet__V1__Frame *g = roundtrip(&f);
  assert_int_equal(g->hello->protocol_version, 1);
  assert_string_equal(g->hello->orchestrator_version, "0.1.0");
  assert_int_equal(g->hello->max_frame_size, UINT64_C(1) << 40);
  assert_int_equal(g->hello->worker_id, 4000000000u);
  assert_int_equal(g->hello->pipeline_depth, 64);
  ratchet_codec_frame_free(g);
}

static void test_ready(void **state) {
  (void)state;
  char ver[] = "2.3.4", name[] = "python-echo", k1[] = "echo", k2[] = "sleep";
  char *kinds[] = {k1, k2};
  Ratchet__V1__Ready r = RATCHET__V1__READY__INIT;
  r.protocol_version = 1;
  r.worker_version = ver;
  r.pid = 12345;
  r.n_kinds = 2;
  r.kinds = kinds;
  r.max_frame_size = 1 << 20;
  r.max_in_flight = 8;
  r.worker_name = name;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_READY;
  f.ready = &r;
  Ratchet__V1__Frame *g = roundtrip(&f);
  assert_int_equal(g->ready->protocol_version, 1);
  assert_string_equal(g->ready->worker_version, "2.3.4");
  assert_int_equal(g->ready->pid, 12345);
  assert_int_equal(g->ready->n_kinds, 2);
  assert_string_equal(g->ready->kinds[0], "echo");
  assert_string_equal(g->ready->kinds[1], "sleep");
  assert_int_equal(g->ready->max_frame_size, 1 << 20);
  assert_int_equal(g->ready->max_in_flight, 8);
  assert_string_equal(g->ready->worker_name, "python-echo");
  ratchet_codec_frame_free(g);
}

static void test_task(void **state) {
  (void)state;
  char kind[] = "resize", k0[] = "trace", v0[] = "abc", k1[] = "user",
       v1[] = "\xc3\xa9milie";
  uint8_t payload[300];
  for (size_t i = 0; i < sizeof payload; i++)
    payload[i] = (uint8_t)i; /* binary, with NUL bytes */
  Ratchet__V1__Task__MetadataEntry e0 = RATCHET__V1__TASK__METADATA_ENTRY__INIT;
  Ratchet__V1__Task__MetadataEntry e1 = RATCHET__V1__TASK__METADATA_ENTRY__INIT;
  e0.key = k0;
  e0.value = v0;
  e1.key = k1;
  e1.value = v1;
  Ratchet__V1__Task__MetadataEntry *md[] = {&e0, &e1};
  Ratchet__V1__Task t = RATCHET__V1__TASK__INIT;
  t.id = UINT64_MAX;
  t.attempt = 3;
  t.kind = kind;
  t.payload.data = payload;
  t.payload.len = sizeof payload;
  t.deadline_unix_ms = UINT64_C(1700000000123);
  t.n_metadata = 2;
  t.metadata = md;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_TASK;
  f.task = &t;
  Ratchet__V1__Frame *g = roundtrip(&f);
  Ratchet__V1__Task *u = g->task;
  assert_int_equal(u->id, UINT64_MAX);
  assert_int_equal(u->attempt, 3);
  assert_string_equal(u->kind, "resize");
  assert_int_equal(u->payload.len, sizeof payload);
  assert_memory_equal(u->payload.data, payload, sizeof payload);
  assert_int_equal(u->deadline_unix_ms, UINT64_C(1700000000123));
  assert_int_equal(u->n_metadata, 2);
  assert_string_equal(u->metadata[0]->key, "trace");
  assert_string_equal(u->metadata[0]->value, "abc");
  assert_string_equal(u->metadata[1]->key, "user");
  assert_string_equal(u->metadata[1]->value, "\xc3\xa9milie");
  ratchet_codec_frame_free(g);

  /* A Task with every field at its default is an empty Task, which is
   * still a Task: the oneof is set. */
  Ratchet__V1__Task empty = RATCHET__V1__TASK__INIT;
  f.task = &empty;
  g = roundtrip(&f);
  assert_int_equal(g->task->id, 0);
  assert_int_equal(g->task->payload.len, 0);
  assert_string_equal(g->task->kind, "");
  ratchet_codec_frame_free(g);
}

static void test_result(void **state) {
  (void)state;
  char err[] = "exit status 2";
  uint8_t out[] = {0, 1, 2, 0xff};
  uint8_t serr[] = "oops\n";
  Ratchet__V1__Usage us = RATCHET__V1__USAGE__INIT;
  us.user_cpu_us = 1500;
  us.sys_cpu_us = 300;
  us.max_rss_kb = 20480;
  us.wall_us = 2000000;
  Ratchet__V1__Result r = RATCHET__V1__RESULT__INIT;
  r.id = 77;
  r.status = RATCHET__V1__STATUS__STATUS_FAILED;
  r.output.data = out;
  r.output.len = sizeof out;
  r.error = err;
  r.exit_code = -2;
  r.signal = 9;
  r.core_dumped = 1;
  r.usage = &us;
  r.attempt = 2;
  r.stderr.data = serr;
  r.stderr.len = 5;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_RESULT;
  f.result = &r;
  Ratchet__V1__Frame *g = roundtrip(&f);
  Ratchet__V1__Result *q = g->result;
  assert_int_equal(q->id, 77);
  assert_int_equal(q->status, RATCHET__V1__STATUS__STATUS_FAILED);
  assert_int_equal(q->output.len, 4);
  assert_memory_equal(q->output.data, out, 4);
  assert_string_equal(q->error, "exit status 2");
  assert_int_equal(q->exit_code, -2);
  assert_int_equal(q->signal, 9);
  assert_true(q->core_dumped);
  assert_non_null(q->usage);
  assert_int_equal(q->usage->user_cpu_us, 1500);
  assert_int_equal(q->usage->sys_cpu_us, 300);
  assert_int_equal(q->usage->max_rss_kb, 20480);
  assert_int_equal(q->usage->wall_us, 2000000);
  assert_int_equal(q->attempt, 2);
  assert_int_equal(q->stderr.len, 5);
  assert_memory_equal(q->stderr.data, "oops\n", 5);
  ratchet_codec_frame_free(g);
}

static void test_small_messages(void **state) {
  (void)state;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT, *g;

  Ratchet__V1__Cancel c = RATCHET__V1__CANCEL__INIT;
  c.id = 99;
  f.msg_case = RATCHET__V1__FRAME__MSG_CANCEL;
  f.cancel = &c;
  g = roundtrip(&f);
  assert_int_equal(g->cancel->id, 99);
  ratchet_codec_frame_free(g);

  Ratchet__V1__Ping p = RATCHET__V1__PING__INIT;
  p.seq = 5;
  f.msg_case = RATCHET__V1__FRAME__MSG_PING;
  f.ping = &p;
  g = roundtrip(&f);
  assert_int_equal(g->ping->seq, 5);
  ratchet_codec_frame_free(g);

  Ratchet__V1__WorkerStats st = RATCHET__V1__WORKER_STATS__INIT;
  st.tasks_done = 1000;
  st.tasks_failed = 3;
  st.in_flight = 2;
  st.rss_kb = 30000;
  st.user_cpu_us = 11;
  st.sys_cpu_us = 12;
  st.uptime_ms = 13;
  Ratchet__V1__Pong po = RATCHET__V1__PONG__INIT;
  po.seq = 5;
  po.stats = &st;
  f.msg_case = RATCHET__V1__FRAME__MSG_PONG;
  f.pong = &po;
  g = roundtrip(&f);
  assert_int_equal(g->pong->seq, 5);
  assert_non_null(g->pong->stats);
  assert_int_equal(g->pong->stats->tasks_done, 1000);
  assert_int_equal(g->pong->stats->tasks_failed, 3);
  assert_int_equal(g->pong->stats->in_flight, 2);
  assert_int_equal(g->pong->stats->rss_kb, 30000);
  assert_int_equal(g->pong->stats->user_cpu_us, 11);
  assert_int_equal(g->pong->stats->sys_cpu_us, 12);
  assert_int_equal(g->pong->stats->uptime_ms, 13);
  ratchet_codec_frame_free(g);

  /* A Pong without stats leaves the pointer NULL. */
  po.stats = NULL;
  g = roundtrip(&f);
  assert_null(g->pong->stats);
  ratchet_codec_frame_free(g);

  Ratchet__V1__Shutdown sd = RATCHET__V1__SHUTDOWN__INIT;
  sd.grace_ms = 5000;
  f.msg_case = RATCHET__V1__FRAME__MSG_SHUTDOWN;
  f.shutdown = &sd;
  g = roundtrip(&f);
  assert_int_equal(g->shutdown->grace_ms, 5000);
  ratchet_codec_frame_free(g);

  char text[] = "warming up";
  Ratchet__V1__Log lg = RATCHET__V1__LOG__INIT;
  lg.level = RATCHET__V1__LOG_LEVEL__LOG_LEVEL_WARN;
  lg.text = text;
  lg.task_id = 42;
  f.msg_case = RATCHET__V1__FRAME__MSG_LOG;
  f.log = &lg;
  g = roundtrip(&f);
  assert_int_equal(g->log->level, RATCHET__V1__LOG_LEVEL__LOG_LEVEL_WARN);
  assert_string_equal(g->log->text, "warming up");
  assert_int_equal(g->log->task_id, 42);
  ratchet_codec_frame_free(g);

  char etext[] = "bad frame";
  Ratchet__V1__Error er = RATCHET__V1__ERROR__INIT;
  er.code = RATCHET__V1__ERROR_CODE__ERROR_FRAME;
  er.text = etext;
  f.msg_case = RATCHET__V1__FRAME__MSG_ERROR;
  f.error = &er;
  g = roundtrip(&f);
  assert_int_equal(g->error->code, RATCHET__V1__ERROR_CODE__ERROR_FRAME);
  assert_string_equal(g->error->text, "bad frame");
  ratchet_codec_frame_free(g);
}

static void test_spec_example(void **state) {
  (void)state;
  /* The byte-level example of docs/protocol.md, so the spec cannot drift
   * from the code. */
  char ver[] = "0.1.0";
  Ratchet__V1__Hello h = RATCHET__V1__HELLO__INIT;
  h.protocol_version = 1;
  h.orchestrator_version = ver;
  h.max_frame_size = 67108864;
  h.worker_id = 3;
  h.pipeline_depth = 8;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_HELLO;
  f.hello = &h;
  static const uint8_t hello[] = {0x14, 0x0a, 0x12, 0x08, 0x01, 0x12, 0x05,
                                  0x30, 0x2e, 0x31, 0x2e, 0x30, 0x18, 0x80,
                                  0x80, 0x80, 0x20, 0x20, 0x03, 0x28, 0x08};
  ratchet_buf b = RATCHET_BUF_INIT;
  assert_int_equal(ratchet_codec_encode(&b, &f, 0), 0);
  assert_int_equal(b.len, sizeof hello);
  assert_memory_equal(b.data, hello, sizeof hello);

  Ratchet__V1__Ping p = RATCHET__V1__PING__INIT;
  p.seq = 1;
  f.msg_case = RATCHET__V1__FRAME__MSG_PING;
  f.ping = &p;
  ratchet_buf_reset(&b);
  assert_int_equal(ratchet_codec_encode(&b, &f, 0), 0);
  assert_int_equal(b.len, 5);
  assert_memory_equal(b.data, "\x04\x32\x02\x08\x01", 5);

  /* The Result example. */
  uint8_t hi[] = {'h', 'i'};
  Ratchet__V1__Result r = RATCHET__V1__RESULT__INIT;
  r.id = 1;
  r.status = RATCHET__V1__STATUS__STATUS_OK;
  r.output.data = hi;
  r.output.len = 2;
  r.attempt = 1;
  f.msg_case = RATCHET__V1__FRAME__MSG_RESULT;
  f.result = &r;
  ratchet_buf_reset(&b);
  assert_int_equal(ratchet_codec_encode(&b, &f, 0), 0);
  assert_int_equal(b.len, 13);
  assert_memory_equal(b.data, "\x0c\x22\x0a\x08\x01\x10\x01\x1a\x02hi\x48\x01",
                      13);

  /* A Ping with seq 0 has no fields, but is still a Ping. */
  f.msg_case = RATCHET__V1__FRAME__MSG_PING;
  f.ping = &p;
  p.seq = 0;
  ratchet_buf_reset(&b);
  assert_int_equal(ratchet_codec_encode(&b, &f, 0), 0);
  assert_int_equal(b.len, 3);
  assert_memory_equal(b.data, "\x02\x32\x00", 3);
  ratchet_buf_free(&b);
}

static int unpack_hex(const char *bytes, size_t len) {
  Ratchet__V1__Frame *f = (Ratchet__V1__Frame *)&f; /* must be reset */
  int rc = ratchet_codec_unpack(bytes, len, &f);
  if (rc < 0)
    assert_null(f);
  else
    ratchet_codec_frame_free(f);
  return rc;
}

static void test_unpack_errors(void **state) {
  (void)state;
  /* Nothing at all, and a Frame with only a field this version does not
   * know: no message, RATCHET_EFRAME_EMPTY. */
  assert_int_equal(unpack_hex("", 0), RATCHET_EFRAME_EMPTY);
  assert_int_equal(unpack_hex("\xa2\x01\x01x", 4), RATCHET_EFRAME_EMPTY);
  /* Not protobuf: a bad tag, a varint running off the end, a submessage
   * longer than the frame, a field number 0, a wire type 7. */
  assert_int_equal(unpack_hex("\xff", 1), RATCHET_EFRAME_UNDECODABLE);
  assert_int_equal(unpack_hex("\x32\x05\x08", 3), RATCHET_EFRAME_UNDECODABLE);
  assert_int_equal(unpack_hex("\x32\x7f\x08\x01", 4),
                   RATCHET_EFRAME_UNDECODABLE);
  assert_int_equal(unpack_hex("\x08\x80", 2), RATCHET_EFRAME_UNDECODABLE);
  assert_int_equal(unpack_hex("\x00\x01", 2), RATCHET_EFRAME_UNDECODABLE);
  assert_int_equal(unpack_hex("\x0f", 1), RATCHET_EFRAME_UNDECODABLE);
  /* A Ping whose seq is garbage inside a well-formed envelope. */
  assert_int_equal(unpack_hex("\x32\x02\x08\xff", 4),
                   RATCHET_EFRAME_UNDECODABLE);
  /* Field number 0, which protobuf forbids, in an overlong tag that
   * protobuf-c alone would let through: in the Frame, in a message, in a
   * nested message and in a map entry. */
  assert_int_equal(unpack_hex("\x80\x00\x01\x32\x00", 5),
                   RATCHET_EFRAME_UNDECODABLE);
  assert_int_equal(unpack_hex("\x32\x05\x08\x05\x80\x00\x01", 7),
                   RATCHET_EFRAME_UNDECODABLE);
  assert_int_equal(unpack_hex("\x22\x05\x42\x03\x80\x00\x01", 7),
                   RATCHET_EFRAME_UNDECODABLE);
  assert_int_equal(unpack_hex("\x1a\x07\x32\x05\x0a\x00\x80\x00\x01", 9),
                   RATCHET_EFRAME_UNDECODABLE);
  /* A field number over 2^29 - 1, whose tag needs more than 32 bits. */
  assert_int_equal(unpack_hex("\x82\x80\x80\x80\x10\x00\x32\x00", 8),
                   RATCHET_EFRAME_UNDECODABLE);
  /* The largest allowed field number is just an unknown field. */
  assert_int_equal(unpack_hex("\xfa\xff\xff\xff\x0f\x00\x32\x00", 8), 0);
  /* Groups (wire types 3 and 4) are not supported, even unknown ones. */
  assert_int_equal(unpack_hex("\xa3\x01\xa4\x01\x32\x00", 6),
                   RATCHET_EFRAME_UNDECODABLE);
  /* A known field with the wrong wire type. */
  assert_int_equal(unpack_hex("\x30\x01", 2), RATCHET_EFRAME_UNDECODABLE);
  /* The same map entry without it is fine. */
  assert_int_equal(unpack_hex("\x1a\x04\x32\x02\x0a\x00", 6), 0);
  /* Bad arguments. */
  assert_int_equal(ratchet_codec_check_frame(NULL), -EINVAL);
  Ratchet__V1__Frame *f = NULL;
  assert_int_equal(ratchet_codec_unpack(NULL, 1, &f), -EINVAL);
  assert_int_equal(ratchet_codec_unpack("", 0, NULL), -EINVAL);
  ratchet_codec_frame_free(NULL);
}

static void test_unknown_fields(void **state) {
  (void)state;
  /* A newer peer's fields are ignored: Ping{seq 5, field 99 = 7} plus a
   * Frame field 20 is a Ping with seq 5. */
  static const char bytes[] = "\x32\x05\x08\x05\x98\x06\x07\xa2\x01\x01x";
  Ratchet__V1__Frame *f = NULL;
  assert_int_equal(ratchet_codec_unpack(bytes, sizeof bytes - 1, &f), 0);
  assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_PING);
  assert_int_equal(f->ping->seq, 5);
  ratchet_codec_frame_free(f);

  /* Two members: the last one wins, as protobuf defines, and the first is
   * not leaked. */
  static const char two[] = "\x32\x02\x08\x05\x42\x02\x08\x09";
  assert_int_equal(ratchet_codec_unpack(two, sizeof two - 1, &f), 0);
  assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_SHUTDOWN);
  assert_int_equal(f->shutdown->grace_ms, 9);
  ratchet_codec_frame_free(f);

  /* A status or level this version does not know is kept as a number. */
  static const char st[] = "\x22\x04\x08\x01\x10\x63";
  assert_int_equal(ratchet_codec_unpack(st, sizeof st - 1, &f), 0);
  assert_int_equal(f->result->status, 99);
  assert_string_equal(ratchet_codec_status_name(f->result->status), "unknown");
  ratchet_codec_frame_free(f);
}

static void test_encode_errors(void **state) {
  (void)state;
  ratchet_buf b = RATCHET_BUF_INIT;
  assert_int_equal(ratchet_buf_append(&b, "keep", 4), 0);
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  /* Nothing set: the peer would refuse it, so we do not send it. */
  assert_int_equal(ratchet_codec_encode(&b, &f, 0), RATCHET_EFRAME_EMPTY);
  /* A case without its message, an unknown case, not a Frame at all. */
  f.msg_case = RATCHET__V1__FRAME__MSG_TASK;
  f.task = NULL;
  assert_int_equal(ratchet_codec_encode(&b, &f, 0), -EINVAL);
  f.msg_case = (Ratchet__V1__Frame__MsgCase)11;
  assert_int_equal(ratchet_codec_encode(&b, &f, 0), -EINVAL);
  Ratchet__V1__Frame zero;
  memset(&zero, 0, sizeof zero);
  assert_int_equal(ratchet_codec_encode(&b, &zero, 0), -EINVAL);
  assert_int_equal(ratchet_codec_encode(&b, NULL, 0), -EINVAL);

  /* Over the limit: refused, with the size counted without the prefix. */
  Ratchet__V1__Task t = RATCHET__V1__TASK__INIT;
  uint8_t payload[100] = {0};
  t.payload.data = payload;
  t.payload.len = sizeof payload;
  f.msg_case = RATCHET__V1__FRAME__MSG_TASK;
  f.task = &t;
  size_t size = ratchet__v1__frame__get_packed_size(&f);
  assert_int_equal(ratchet_codec_encode(&b, &f, size - 1),
                   RATCHET_EFRAME_TOO_BIG);
  size_t written = 0;
  uint8_t dst[200];
  assert_int_equal(ratchet_codec_write(&f, size - 1, dst, sizeof dst, &written),
                   RATCHET_EFRAME_TOO_BIG);
  assert_int_equal(b.len, 4);
  assert_memory_equal(b.data, "keep", 4);
  assert_int_equal(ratchet_codec_encode(&b, &f, size), 0);
  assert_int_equal(b.len, 4 + 1 + size);

  /* Caller buffer too small: the size needed, nothing else. */
  assert_int_equal(ratchet_codec_write(&f, 0, dst, size, &written), -ENOBUFS);
  assert_int_equal(written, size + 1);
  assert_int_equal(ratchet_codec_write(&f, 0, NULL, 0, &written), -ENOBUFS);
  assert_int_equal(written, size + 1);

  /* Out of memory: the buffer as it was. */
  ratchet_buf e = RATCHET_BUF_INIT;
  tu_alloc_install(0);
  assert_int_equal(ratchet_codec_encode(&e, &f, 0), -ENOMEM);
  assert_null(e.data);
  assert_int_equal(e.len, 0);
  tu_alloc_uninstall();
  ratchet_buf_free(&b);
}

static void test_encode_no_alloc(void **state) {
  (void)state;
  /* A stream of Tasks into a reused buffer: allocation-free once warm. */
  char kind[] = "echo";
  static uint8_t payload[2048];
  Ratchet__V1__Task t = RATCHET__V1__TASK__INIT;
  t.kind = kind;
  t.payload.data = payload;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_TASK;
  f.task = &t;
  ratchet_buf b = RATCHET_BUF_INIT;
  t.payload.len = sizeof payload;
  assert_int_equal(ratchet_codec_encode(&b, &f, 0), 0);
  tu_alloc_install(SIZE_MAX);
  for (uint64_t i = 0; i < 10000; i++) {
    ratchet_buf_reset(&b);
    t.id = i;
    t.payload.len = (size_t)(i % sizeof payload);
    assert_int_equal(ratchet_codec_encode(&b, &f, 0), 0);
  }
  assert_int_equal(tu_alloc_count(), 0);
  tu_alloc_uninstall();
  ratchet_buf_free(&b);
}

static void test_unpack_enomem(void **state) {
  (void)state;
  /* Fail each allocation of an unpack in turn: -ENOMEM, *out NULL, nothing
   * left allocated; then it succeeds. */
  char kind[] = "k", k[] = "key", v[] = "value";
  uint8_t payload[10] = {1};
  Ratchet__V1__Task__MetadataEntry e = RATCHET__V1__TASK__METADATA_ENTRY__INIT;
  e.key = k;
  e.value = v;
  Ratchet__V1__Task__MetadataEntry *md[] = {&e, &e};
  Ratchet__V1__Task t = RATCHET__V1__TASK__INIT;
  t.id = 1;
  t.kind = kind;
  t.payload.data = payload;
  t.payload.len = sizeof payload;
  t.n_metadata = 2;
  t.metadata = md;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_TASK;
  f.task = &t;
  ratchet_buf b = RATCHET_BUF_INIT;
  assert_int_equal(ratchet_codec_encode(&b, &f, 0), 0);
  size_t pfx = 1; /* the frame is shorter than 128 bytes */
  assert_true(b.len - pfx < 128);

  size_t fails = 0;
  for (size_t budget = 0;; budget++) {
    tu_alloc_install(budget);
    Ratchet__V1__Frame *g = NULL;
    int rc = ratchet_codec_unpack(b.data + pfx, b.len - pfx, &g);
    if (rc == 0) {
      assert_int_equal(g->task->n_metadata, 2);
      ratchet_codec_frame_free(g);
      assert_int_equal(tu_alloc_live(), 0);
      tu_alloc_uninstall();
      break;
    }
    assert_int_equal(rc, -ENOMEM);
    assert_null(g);
    assert_int_equal(tu_alloc_live(), 0);
    tu_alloc_uninstall();
    fails++;
  }
  assert_true(fails >= 5); /* frame, task, kind, payload, entries... */
  ratchet_buf_free(&b);
}

static void test_version_checks(void **state) {
  (void)state;
  char text[RATCHET_CODEC_TEXT_MAX];
  Ratchet__V1__Hello h = RATCHET__V1__HELLO__INIT;
  Ratchet__V1__Ready r = RATCHET__V1__READY__INIT;

  h.protocol_version = 1;
  memcpy(text, "junk", 5);
  assert_int_equal(ratchet_codec_check_hello(&h, text, sizeof text), 0);
  assert_string_equal(text, "");
  r.protocol_version = 1;
  assert_int_equal(ratchet_codec_check_ready(&r, text, sizeof text), 0);
  assert_string_equal(text, "");

  r.protocol_version = 2;
  assert_int_equal(ratchet_codec_check_ready(&r, text, sizeof text),
                   RATCHET_EPROTO_VERSION);
  assert_string_equal(text, "worker speaks protocol 2, orchestrator speaks 1");
  h.protocol_version = 7;
  assert_int_equal(ratchet_codec_check_hello(&h, text, sizeof text),
                   RATCHET_EPROTO_VERSION);
  assert_string_equal(text,
                      "orchestrator speaks protocol 7, this worker speaks 1");
  r.protocol_version = 0;
  assert_int_equal(ratchet_codec_check_ready(&r, text, sizeof text),
                   RATCHET_EPROTO_VERSION);
  assert_string_equal(text, "worker did not state its protocol version, "
                            "orchestrator speaks protocol 1");

  /* A short buffer gets a truncated, terminated text; none at all is
   * fine. */
  char small[8];
  assert_int_equal(ratchet_codec_check_ready(&r, small, sizeof small),
                   RATCHET_EPROTO_VERSION);
  assert_string_equal(small, "worker ");
  assert_int_equal(ratchet_codec_check_ready(&r, NULL, 0),
                   RATCHET_EPROTO_VERSION);
  assert_int_equal(ratchet_codec_check_ready(NULL, text, sizeof text), -EINVAL);
  assert_int_equal(ratchet_codec_check_hello(NULL, text, sizeof text), -EINVAL);
}

/* Encodes the Error frame for err and text, unpacks it and checks it. */
static void check_error_frame(int err, const char *text,
                              Ratchet__V1__ErrorCode code, const char *want) {
  ratchet_buf b = RATCHET_BUF_INIT;
  assert_int_equal(ratchet_codec_encode_error(&b, err, text, 0), 0);
  size_t pfx = b.data[0] < 0x80 ? 1 : 2;
  Ratchet__V1__Frame *f = NULL;
  assert_int_equal(ratchet_codec_unpack(b.data + pfx, b.len - pfx, &f), 0);
  assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_ERROR);
  assert_int_equal(f->error->code, code);
  assert_string_equal(f->error->text, want);
  ratchet_codec_frame_free(f);
  ratchet_buf_free(&b);
}

static void test_error_frames(void **state) {
  (void)state;
  typedef Ratchet__V1__ErrorCode EC;
  const struct {
    int err;
    EC code;
  } map[] = {
      {RATCHET_EFRAME_VARINT, RATCHET__V1__ERROR_CODE__ERROR_FRAME},
      {RATCHET_EFRAME_TOO_BIG, RATCHET__V1__ERROR_CODE__ERROR_FRAME},
      {RATCHET_EFRAME_TRUNCATED, RATCHET__V1__ERROR_CODE__ERROR_FRAME},
      {RATCHET_EFRAME_UNDECODABLE, RATCHET__V1__ERROR_CODE__ERROR_DECODE},
      {RATCHET_EFRAME_EMPTY, RATCHET__V1__ERROR_CODE__ERROR_DECODE},
      {RATCHET_EPROTO_VERSION, RATCHET__V1__ERROR_CODE__ERROR_VERSION},
      {RATCHET_EPROTO_UNEXPECTED, RATCHET__V1__ERROR_CODE__ERROR_UNEXPECTED},
      {-ENOMEM, RATCHET__V1__ERROR_CODE__ERROR_INTERNAL},
      {RATCHET_EBUDGET, RATCHET__V1__ERROR_CODE__ERROR_INTERNAL},
      {0, RATCHET__V1__ERROR_CODE__ERROR_UNSPECIFIED},
  };
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
    assert_int_equal(ratchet_codec_error_code(map[i].err), map[i].code);
    /* Without a text, the error's own message is sent. */
    check_error_frame(map[i].err, NULL, map[i].code,
                      ratchet_strerror(map[i].err));
  }

  check_error_frame(RATCHET_EPROTO_VERSION,
                    "worker speaks protocol 2, orchestrator speaks 1",
                    RATCHET__V1__ERROR_CODE__ERROR_VERSION,
                    "worker speaks protocol 2, orchestrator speaks 1");
  /* Not UTF-8: each bad byte becomes '?', good sequences stay. */
  check_error_frame(RATCHET_EFRAME_EMPTY,
                    "bad \xff\xfe byte \xc3\xa9 ok \xed\xa0\x80 \xc0\xaf "
                    "\xf4\x90\x80\x80 \xe2\x82",
                    RATCHET__V1__ERROR_CODE__ERROR_DECODE,
                    "bad ?? byte \xc3\xa9 ok ??? ?? ???? ??");

  /* Long texts are cut at a character boundary. */
  char *longtext = malloc(2 + 2 * 1000);
  assert_non_null(longtext);
  longtext[0] = 'a';
  for (size_t i = 0; i < 1000; i++)
    memcpy(longtext + 1 + 2 * i, "\xc3\xa9", 2);
  longtext[1 + 2 * 1000] = '\0';
  ratchet_buf b = RATCHET_BUF_INIT;
  assert_int_equal(ratchet_codec_encode_error(&b, -EIO, longtext, 0), 0);
  Ratchet__V1__Frame *f = NULL;
  assert_int_equal(ratchet_codec_unpack(b.data + 2, b.len - 2, &f), 0);
  assert_int_equal(strlen(f->error->text), 1023);
  assert_memory_equal(f->error->text, longtext, 1023);
  ratchet_codec_frame_free(f);
  ratchet_buf_free(&b);
  free(longtext);
}

static void test_names(void **state) {
  (void)state;
  static const char *const msgs[] = {"none",     "hello",  "ready", "task",
                                     "result",   "cancel", "ping",  "pong",
                                     "shutdown", "log",    "error"};
  for (int i = 0; i <= 10; i++)
    assert_string_equal(ratchet_codec_msg_name((Ratchet__V1__Frame__MsgCase)i),
                        msgs[i]);
  assert_string_equal(ratchet_codec_msg_name((Ratchet__V1__Frame__MsgCase)11),
                      "unknown");
  assert_string_equal(ratchet_codec_msg_name((Ratchet__V1__Frame__MsgCase)-1),
                      "unknown");
  assert_string_equal(ratchet_codec_status_name(RATCHET__V1__STATUS__STATUS_OK),
                      "ok");
  assert_string_equal(
      ratchet_codec_status_name(RATCHET__V1__STATUS__STATUS_UNKNOWN_KIND),
      "unknown_kind");
  assert_string_equal(
      ratchet_codec_status_name(RATCHET__V1__STATUS__STATUS_INTERNAL_ERROR),
      "internal_error");
  assert_string_equal(
      ratchet_codec_status_name(RATCHET__V1__STATUS__STATUS_UNSPECIFIED),
      "unspecified");
  assert_string_equal(ratchet_codec_status_name((Ratchet__V1__Status)8),
                      "unknown");
  assert_string_equal(
      ratchet_codec_error_code_name(RATCHET__V1__ERROR_CODE__ERROR_VERSION),
      "version");
  assert_string_equal(
      ratchet_codec_error_code_name(RATCHET__V1__ERROR_CODE__ERROR_INTERNAL),
      "internal");
  assert_string_equal(ratchet_codec_error_code_name((Ratchet__V1__ErrorCode)6),
                      "unknown");
  assert_string_equal(
      ratchet_codec_log_level_name(RATCHET__V1__LOG_LEVEL__LOG_LEVEL_WARN),
      "warn");
  assert_string_equal(ratchet_codec_log_level_name((Ratchet__V1__LogLevel)5),
                      "unknown");
}

static void test_frame_limit(void **state) {
  (void)state;
  assert_int_equal(ratchet_codec_frame_limit(0), RATCHET_FRAME_MAX_DEFAULT);
  assert_int_equal(ratchet_codec_frame_limit(4096), 4096);
  assert_int_equal(ratchet_codec_frame_limit(UINT64_MAX), SIZE_MAX / 2);
  /* Every limit it gives is one a decoder accepts. */
  ratchet_frame_decoder *d = NULL;
  assert_int_equal(
      ratchet_frame_decoder_new(ratchet_codec_frame_limit(UINT64_MAX), &d), 0);
  ratchet_frame_decoder_free(d);
}

int test_codec(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hello),
      cmocka_unit_test(test_ready),
      cmocka_unit_test(test_task),
      cmocka_unit_test(test_result),
      cmocka_unit_test(test_small_messages),
      cmocka_unit_test(test_spec_example),
      cmocka_unit_test(test_unpack_errors),
      cmocka_unit_test(test_unknown_fields),
      cmocka_unit_test(test_encode_errors),
      cmocka_unit_test(test_encode_no_alloc),
      cmocka_unit_test(test_unpack_enomem),
      cmocka_unit_test(test_version_checks),
      cmocka_unit_test(test_error_frames),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_frame_limit),
  };
  return cmocka_run_group_tests_name("codec", tests, NULL, NULL);
}
