/*
 * make_corpus.c - writes the seed corpus of fuzz-frame: every message type
 * as a frame of its own, whole sessions in each direction, and the edge
 * cases of the framing (empty, overlong and oversized prefixes, streams
 * cut inside a prefix or a body) and of the codec (unknown fields, two
 * members, no member, not protobuf). The seeds are committed; this program
 * is kept to regenerate them after a schema change:
 *
 *   cmake --build BUILD --target fuzz-frame-make-corpus
 *   BUILD/tests/fuzz/fuzz-frame-make-corpus tests/fuzz/corpus/frame
 *
 * Each seed is a byte stream exactly as a peer would send it, so the files
 * also serve as test vectors for workers written in other languages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratchet/codec.h"

static const char *outdir;

static void put(const char *name, const void *bytes, size_t len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", outdir, name);
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(bytes, 1, len, f) != len || fclose(f) != 0) {
    perror(path);
    exit(1);
  }
  if (len >= 4096) {
    fprintf(stderr, "%s: %zu bytes, seeds must stay under 4 KiB\n", name, len);
    exit(1);
  }
}

static void put_buf(const char *name, const ratchet_buf *b) {
  put(name, b->data, b->len);
}

static void enc(ratchet_buf *b, const Ratchet__V1__Frame *f) {
  if (ratchet_codec_encode(b, f, 0) != 0) {
    fprintf(stderr, "encode failed\n");
    exit(1);
  }
}

static void frame_raw(ratchet_buf *b, const void *body, size_t len) {
  if (ratchet_frame_append(b, body, len, 0) != 0)
    exit(1);
}

/* Mutable copies of string constants, which protobuf-c wants as char *. */
static char s_ver[] = "0.1.0", s_wver[] = "1.2.3", s_name[] = "python-echo",
            s_echo[] = "echo", s_sleep[] = "sleep", s_cmd[] = "shell",
            s_trace[] = "trace", s_id[] = "4bf92f35", s_err[] = "exit 3",
            s_log[] = "loaded model in 12 ms",
            s_bad[] = "bad \xff\xfe utf-8 \xc3\xa9 \xed\xa0\x80",
            s_vtext[] = "worker speaks protocol 2, orchestrator speaks 1";

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  outdir = argv[1];

  Ratchet__V1__Hello hello;
  ratchet__v1__hello__init(&hello);
  hello.protocol_version = RATCHET_PROTOCOL_VERSION;
  hello.orchestrator_version = s_ver;
  hello.max_frame_size = 67108864;
  hello.worker_id = 3;
  hello.pipeline_depth = 8;

  char *kinds[] = {s_echo, s_sleep, s_cmd};
  Ratchet__V1__Ready ready;
  ratchet__v1__ready__init(&ready);
  ready.protocol_version = RATCHET_PROTOCOL_VERSION;
  ready.worker_version = s_wver;
  ready.pid = 4242;
  ready.n_kinds = 3;
  ready.kinds = kinds;
  ready.max_frame_size = 1 << 20;
  ready.max_in_flight = 4;
  ready.worker_name = s_name;

  static uint8_t payload[64];
  for (size_t i = 0; i < sizeof payload; i++)
    payload[i] = (uint8_t)(i * 37);
  Ratchet__V1__Task__MetadataEntry md0, md1;
  ratchet__v1__task__metadata_entry__init(&md0);
  ratchet__v1__task__metadata_entry__init(&md1);
  md0.key = s_trace;
  md0.value = s_id;
  md1.key = s_echo;
  md1.value = s_ver;
  Ratchet__V1__Task__MetadataEntry *md[] = {&md0, &md1};
  Ratchet__V1__Task task;
  ratchet__v1__task__init(&task);
  task.id = 1;
  task.attempt = 1;
  task.kind = s_echo;
  task.payload.data = payload;
  task.payload.len = sizeof payload;
  task.deadline_unix_ms = UINT64_C(1767225600000);
  task.n_metadata = 2;
  task.metadata = md;

  Ratchet__V1__Usage usage;
  ratchet__v1__usage__init(&usage);
  usage.user_cpu_us = 1200;
  usage.sys_cpu_us = 300;
  usage.max_rss_kb = 18000;
  usage.wall_us = 2500;
  static uint8_t serr[] = "warning: slow disk\n";
  Ratchet__V1__Result result;
  ratchet__v1__result__init(&result);
  result.id = 1;
  result.status = RATCHET__V1__STATUS__STATUS_OK;
  result.output.data = payload;
  result.output.len = sizeof payload;
  result.usage = &usage;
  result.attempt = 1;
  result.stderr.data = serr;
  result.stderr.len = sizeof serr - 1;

  Ratchet__V1__Result failed;
  ratchet__v1__result__init(&failed);
  failed.id = 2;
  failed.status = RATCHET__V1__STATUS__STATUS_FAILED;
  failed.error = s_err;
  failed.exit_code = 3;
  failed.signal = 0;
  failed.attempt = 1;

  Ratchet__V1__Cancel cancel;
  ratchet__v1__cancel__init(&cancel);
  cancel.id = 3;
  Ratchet__V1__Ping ping;
  ratchet__v1__ping__init(&ping);
  ping.seq = 1;
  Ratchet__V1__WorkerStats stats;
  ratchet__v1__worker_stats__init(&stats);
  stats.tasks_done = 2;
  stats.tasks_failed = 1;
  stats.in_flight = 1;
  stats.rss_kb = 18000;
  stats.user_cpu_us = 5000;
  stats.sys_cpu_us = 900;
  stats.uptime_ms = 1500;
  Ratchet__V1__Pong pong;
  ratchet__v1__pong__init(&pong);
  pong.seq = 1;
  pong.stats = &stats;
  Ratchet__V1__Shutdown shutdown;
  ratchet__v1__shutdown__init(&shutdown);
  shutdown.grace_ms = 5000;
  Ratchet__V1__Log log;
  ratchet__v1__log__init(&log);
  log.level = RATCHET__V1__LOG_LEVEL__LOG_LEVEL_INFO;
  log.text = s_log;
  log.task_id = 1;
  Ratchet__V1__Error error;
  ratchet__v1__error__init(&error);
  error.code = RATCHET__V1__ERROR_CODE__ERROR_VERSION;
  error.text = s_vtext;

  Ratchet__V1__Frame f;
  ratchet__v1__frame__init(&f);
  ratchet_buf b = RATCHET_BUF_INIT, orch = RATCHET_BUF_INIT,
              work = RATCHET_BUF_INIT;

#define ONE(file, member, CASE, value)                                         \
  do {                                                                         \
    f.msg_case = RATCHET__V1__FRAME__MSG_##CASE;                               \
    f.member = (value);                                                        \
    ratchet_buf_reset(&b);                                                     \
    enc(&b, &f);                                                               \
    put_buf(file, &b);                                                         \
  } while (0)

  ONE("msg-hello", hello, HELLO, &hello);
  ONE("msg-ready", ready, READY, &ready);
  ONE("msg-task", task, TASK, &task);
  ONE("msg-result-ok", result, RESULT, &result);
  ONE("msg-result-failed", result, RESULT, &failed);
  ONE("msg-cancel", cancel, CANCEL, &cancel);
  ONE("msg-ping", ping, PING, &ping);
  ONE("msg-pong", pong, PONG, &pong);
  ONE("msg-shutdown", shutdown, SHUTDOWN, &shutdown);
  ONE("msg-log", log, LOG, &log);
  ONE("msg-error-version", error, ERROR, &error);

  /* An Error with text that is not UTF-8, as a careless peer might send. */
  error.code = RATCHET__V1__ERROR_CODE__ERROR_DECODE;
  error.text = s_bad;
  ONE("msg-error-bad-utf8", error, ERROR, &error);
  error.code = RATCHET__V1__ERROR_CODE__ERROR_VERSION;
  error.text = s_vtext;

  /* A Hello from protocol 2, which a worker refuses. */
  hello.protocol_version = 2;
  ONE("msg-hello-v2", hello, HELLO, &hello);
  hello.protocol_version = RATCHET_PROTOCOL_VERSION;

  /* Messages with every field at its default: a member with no bytes. */
  Ratchet__V1__Task empty_task;
  ratchet__v1__task__init(&empty_task);
  ONE("msg-task-empty", task, TASK, &empty_task);

  /* A larger payload, to split bodies across many chunks. */
  static uint8_t big[3000];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (uint8_t)(i ^ (i >> 8));
  task.payload.data = big;
  task.payload.len = sizeof big;
  ONE("msg-task-3000", task, TASK, &task);
  task.payload.data = payload;
  task.payload.len = sizeof payload;

  /* Whole sessions: what the orchestrator sends, and what a worker sends. */
  f.msg_case = RATCHET__V1__FRAME__MSG_HELLO;
  f.hello = &hello;
  enc(&orch, &f);
  for (uint64_t id = 1; id <= 3; id++) {
    task.id = id;
    f.msg_case = RATCHET__V1__FRAME__MSG_TASK;
    f.task = &task;
    enc(&orch, &f);
  }
  f.msg_case = RATCHET__V1__FRAME__MSG_CANCEL;
  f.cancel = &cancel;
  enc(&orch, &f);
  f.msg_case = RATCHET__V1__FRAME__MSG_PING;
  f.ping = &ping;
  enc(&orch, &f);
  f.msg_case = RATCHET__V1__FRAME__MSG_SHUTDOWN;
  f.shutdown = &shutdown;
  enc(&orch, &f);
  put_buf("session-orchestrator", &orch);

  f.msg_case = RATCHET__V1__FRAME__MSG_READY;
  f.ready = &ready;
  enc(&work, &f);
  f.msg_case = RATCHET__V1__FRAME__MSG_LOG;
  f.log = &log;
  enc(&work, &f);
  f.msg_case = RATCHET__V1__FRAME__MSG_RESULT;
  f.result = &result;
  enc(&work, &f);
  f.result = &failed;
  enc(&work, &f);
  Ratchet__V1__Result cancelled;
  ratchet__v1__result__init(&cancelled);
  cancelled.id = 3;
  cancelled.status = RATCHET__V1__STATUS__STATUS_CANCELLED;
  cancelled.attempt = 1;
  f.result = &cancelled;
  enc(&work, &f);
  f.msg_case = RATCHET__V1__FRAME__MSG_PONG;
  f.pong = &pong;
  enc(&work, &f);
  put_buf("session-worker", &work);

  /* The orchestrator's session cut inside a prefix and inside a body. */
  put("cut-in-body", orch.data, orch.len / 2);
  {
    ratchet_buf c = RATCHET_BUF_INIT;
    task.payload.data = big;
    task.payload.len = sizeof big;
    f.msg_case = RATCHET__V1__FRAME__MSG_TASK;
    f.task = &task;
    enc(&c, &f);
    /* A frame over 127 bytes has a two-byte prefix: keep one byte. */
    put("cut-in-prefix", c.data, 1);
    ratchet_buf_free(&c);
  }

  /* Framing edge cases. */
  static const uint8_t zeros[] = {0, 0, 0};
  put("frame-zero-length", zeros, sizeof zeros);
  static const uint8_t overlong[] = {0x80, 0x00, 0x82, 0x80, 0x00, 0x32, 0x00};
  put("frame-overlong-prefix", overlong, sizeof overlong);
  static const uint8_t ten[] = {0xff, 0xff, 0xff, 0xff, 0xff,
                                0xff, 0xff, 0xff, 0xff, 0x01};
  put("frame-prefix-10-bytes", ten, sizeof ten);
  static const uint8_t eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                   0x80, 0x80, 0x80, 0x80, 0x00};
  put("frame-prefix-11-bytes", eleven, sizeof eleven);
  static const uint8_t over64[] = {0x80, 0x80, 0x80, 0x80, 0x80,
                                   0x80, 0x80, 0x80, 0x80, 0x02};
  put("frame-prefix-over-64-bits", over64, sizeof over64);
  static const uint8_t toobig[] = {0x81, 0x20, 0x32, 0x00}; /* 4097 */
  put("frame-too-big", toobig, sizeof toobig);
  static const uint8_t atmax[] = {0x80, 0x20, 0x32}; /* 4096, cut */
  put("frame-at-limit-truncated", atmax, sizeof atmax);

  /* Codec edge cases, each in a valid frame. */
  ratchet_buf_reset(&b);
  frame_raw(&b, NULL, 0);            /* no member */
  frame_raw(&b, "\xa2\x01\x01x", 4); /* only an unknown field 20 */
  put_buf("codec-empty-oneof", &b);
  ratchet_buf_reset(&b);
  /* Ping{seq 5, unknown 99 = 7} and an unknown Frame field 20. */
  frame_raw(&b, "\x32\x05\x08\x05\x98\x06\x07\xa2\x01\x01x", 11);
  put_buf("codec-unknown-fields", &b);
  ratchet_buf_reset(&b);
  frame_raw(&b, "\x32\x02\x08\x05\x42\x02\x08\x09", 8); /* ping then shutdown */
  put_buf("codec-two-members", &b);
  ratchet_buf_reset(&b);
  frame_raw(&b, "\xff", 1);         /* a bad tag */
  frame_raw(&b, "\x32\x05\x08", 3); /* submessage past the end */
  frame_raw(&b, "\x30\x01", 2);     /* ping with a wrong wire type */
  frame_raw(&b, "\x22\x04\x08\x01\x10\x63", 6); /* status 99 */
  put_buf("codec-undecodable", &b);

  /* Found by the fuzzer: an Error holding field number 0 in an overlong
   * tag, which protobuf-c parsed and then packed as a tag no parser takes. */
  ratchet_buf_reset(&b);
  frame_raw(&b, "\x52\x05\x80\x00\x01\x08\x03", 7);
  put_buf("regress-field-zero", &b);
  /* Also found by the fuzzer: a Frame both empty and holding field 0 must
   * get the same answer from every unpacker (RATCHET_EFRAME_EMPTY). */
  ratchet_buf_reset(&b);
  frame_raw(&b, "\x80\x00\xd7\x00", 4);
  put_buf("regress-empty-field-zero", &b);

  ratchet_buf_free(&b);
  ratchet_buf_free(&orch);
  ratchet_buf_free(&work);
  return 0;
}
