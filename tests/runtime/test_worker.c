/*
 * test_worker.c - the worker side (runtime/src/worker.c), seen from the
 * orchestrator's end of the pipes.
 *
 * Most tests start this binary again as "--child worker", a worker process
 * with the handlers below, and talk to it over two pipes with the blocking
 * fd transport: they check what an orchestrator sees (the frames, their
 * order, the exit status). None measures time: the only waits are for
 * frames, exits and end of file. One test serves in-process from
 * pre-written input so valgrind sees the serving code too, and one checks
 * the allocation-failure paths of new and register.
 */
#define _GNU_SOURCE /* pipe2 */

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratchet/alloc.h"
#include "ratchet/clock.h"
#include "ratchet/codec.h"
#include "ratchet/error.h"
#include "ratchet/transport.h"
#include "ratchet/worker.h"
#include "testutil.h"

/* ---- the handlers of the child worker ------------------------------- */

static int h_echo(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  size_t len;
  const uint8_t *p = ratchet_task_payload(ctx, &len);
  return ratchet_task_set_output(ctx, p, len);
}

static int h_fail(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  (void)ctx;
  return -EIO;
}

static int h_fail_text(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  ratchet_task_set_error(ctx, "bad input: %d", 42);
  return -1;
}

static int h_bad(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  ratchet_task_set_status(ctx, RATCHET_TASK_BAD_REQUEST);
  ratchet_task_set_error(ctx, "nope");
  ratchet_task_set_exit(ctx, 3, 0, false);
  return 0;
}

/* Outputs as many bytes as the payload says, in decimal. */
static int h_big(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  size_t len;
  const uint8_t *p = ratchet_task_payload(ctx, &len);
  char num[32] = {0};
  memcpy(num, p, len < sizeof num - 1 ? len : sizeof num - 1);
  size_t n = (size_t)strtoull(num, NULL, 10);
  uint8_t chunk[4096];
  for (size_t off = 0; off < n; off += sizeof chunk) {
    size_t k = n - off < sizeof chunk ? n - off : sizeof chunk;
    for (size_t i = 0; i < k; i++)
      chunk[i] = (uint8_t)((off + i) % 251);
    int rc = ratchet_task_append_output(ctx, chunk, k);
    if (rc < 0)
      return rc;
  }
  return 0;
}

static int h_log(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  ratchet_task_log(ctx, RATCHET_LOG_INFO, "hello from %llu",
                   (unsigned long long)ratchet_task_id(ctx));
  ratchet_task_log(ctx, RATCHET_LOG_WARN, "second");
  ratchet_worker_log(ratchet_task_worker(ctx), RATCHET_LOG_DEBUG, "untagged");
  return ratchet_task_set_output(ctx, "logged", 6);
}

static int h_meta(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  char out[512];
  const char *k0 = "", *v0 = "";
  ratchet_task_meta_at(ctx, 0, &k0, &v0);
  const char *trace = ratchet_task_meta(ctx, "trace");
  snprintf(out, sizeof out,
           "kind=%s attempt=%u trace=%s n=%zu first=%s:%s "
           "missing=%s range=%d deadline=%llu",
           ratchet_task_kind(ctx), (unsigned)ratchet_task_attempt(ctx),
           trace ? trace : "(null)", ratchet_task_meta_count(ctx), k0, v0,
           ratchet_task_meta(ctx, "nope") ? "yes" : "no",
           ratchet_task_meta_at(ctx, 99, &k0, &v0),
           (unsigned long long)ratchet_task_deadline_ms(ctx));
  return ratchet_task_set_output(ctx, out, strlen(out));
}

/* Says it runs, then polls until told to stop. */
static int h_spin(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  ratchet_task_log(ctx, RATCHET_LOG_INFO, "running");
  while (!ratchet_task_cancelled(ctx))
    ratchet_sleep_ns(1000000);
  return -ECANCELED;
}

static const struct {
  const char *kind;
  ratchet_handler_fn fn;
} kinds[] = {
    {"echo", h_echo}, {"fail", h_fail}, {"fail-text", h_fail_text},
    {"bad", h_bad},   {"big", h_big},   {"log", h_log},
    {"meta", h_meta}, {"spin", h_spin},
};
#define N_KINDS (sizeof kinds / sizeof kinds[0])

static ratchet_worker *make_worker(void) {
  ratchet_worker_options o = RATCHET_WORKER_OPTIONS_INIT;
  o.name = "test-worker";
  o.version = "9.9.9";
  o.max_frame_size = 8u << 20;
  o.max_in_flight = 16;
  ratchet_worker *w;
  if (ratchet_worker_new(&o, &w) != 0)
    return NULL;
  for (size_t i = 0; i < N_KINDS; i++)
    if (ratchet_worker_register(w, kinds[i].kind, kinds[i].fn, NULL) != 0) {
      ratchet_worker_free(w);
      return NULL;
    }
  return w;
}

/* "--child worker": the worker process. */
int tu_worker_child(int argc, char **argv) {
  (void)argc;
  (void)argv;
  ratchet_worker *w = make_worker();
  if (w == NULL)
    return 111;
  int status = ratchet_worker_main(w);
  ratchet_worker_free(w);
  return status;
}

/* "--child worker-parent": starts "--child worker" (stdin and stdout
 * inherited) and waits to be killed, so that the worker's parent dies. */
int tu_worker_parent_child(int argc, char **argv) {
  (void)argc;
  (void)argv;
  const char *self = tu_self_path();
  pid_t pid = fork();
  if (pid < 0)
    return 111;
  if (pid == 0) {
    execl(self, self, "--child", "worker", (char *)NULL);
    _exit(127);
  }
  for (;;)
    pause();
}

/* ---- the orchestrator's end ---------------------------------------- */

typedef struct peer {
  pid_t pid;
  int to;   /* the worker's stdin */
  int from; /* the worker's stdout */
  ratchet_fd_transport *t;
} peer;

static void peer_start(peer *p, const char *child) {
  int in[2], out[2];
  assert_int_equal(pipe2(in, O_CLOEXEC), 0);
  assert_int_equal(pipe2(out, O_CLOEXEC), 0);
  const char *self = tu_self_path();
  assert_non_null(self);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    execl(self, self, "--child", child, (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  p->pid = pid;
  p->to = in[1];
  p->from = out[0];
  assert_int_equal(ratchet_fd_transport_new(p->from, p->to, NULL, &p->t), 0);
}

static void peer_send(peer *p, Ratchet__V1__Frame *f) {
  assert_int_equal(ratchet_fd_transport_send(p->t, f), 0);
}

static const Ratchet__V1__Frame *peer_recv(peer *p) {
  const Ratchet__V1__Frame *f = NULL;
  int rc = ratchet_fd_transport_recv(p->t, &f);
  if (rc != 0)
    fprintf(stderr, "recv: %s\n", ratchet_strerror(rc));
  assert_int_equal(rc, 0);
  return f;
}

/* The next frame, which must be of case c. */
static const Ratchet__V1__Frame *peer_expect(peer *p,
                                             Ratchet__V1__Frame__MsgCase c) {
  const Ratchet__V1__Frame *f = peer_recv(p);
  if (f->msg_case != c)
    fprintf(stderr, "expected %s, got %s\n", ratchet_codec_msg_name(c),
            ratchet_codec_msg_name(f->msg_case));
  assert_int_equal(f->msg_case, c);
  return f;
}

static void send_hello(peer *p, uint32_t version, uint64_t max_frame) {
  Ratchet__V1__Hello h;
  ratchet__v1__hello__init(&h);
  h.protocol_version = version;
  h.max_frame_size = max_frame;
  h.pipeline_depth = 8;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_HELLO;
  f.hello = &h;
  peer_send(p, &f);
}

/* Starts a worker and completes the handshake. */
static const Ratchet__V1__Ready *peer_open(peer *p) {
  peer_start(p, "worker");
  send_hello(p, RATCHET_PROTOCOL_VERSION, 0);
  return peer_expect(p, RATCHET__V1__FRAME__MSG_READY)->ready;
}

typedef struct task_spec {
  uint64_t id;
  const char *kind;
  const char *payload;
  uint32_t attempt;
  uint64_t deadline;
} task_spec;

static void send_task(peer *p, task_spec s) {
  char kind[64];
  snprintf(kind, sizeof kind, "%s", s.kind);
  Ratchet__V1__Task t;
  ratchet__v1__task__init(&t);
  t.id = s.id;
  t.attempt = s.attempt ? s.attempt : 1;
  t.kind = kind;
  t.payload.data = (uint8_t *)(uintptr_t)s.payload;
  t.payload.len = s.payload ? strlen(s.payload) : 0;
  t.deadline_unix_ms = s.deadline;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_TASK;
  f.task = &t;
  peer_send(p, &f);
}

static void send_cancel(peer *p, uint64_t id) {
  Ratchet__V1__Cancel c;
  ratchet__v1__cancel__init(&c);
  c.id = id;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_CANCEL;
  f.cancel = &c;
  peer_send(p, &f);
}

static void send_ping(peer *p, uint64_t seq) {
  Ratchet__V1__Ping m;
  ratchet__v1__ping__init(&m);
  m.seq = seq;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_PING;
  f.ping = &m;
  peer_send(p, &f);
}

static void send_shutdown(peer *p, uint64_t grace_ms) {
  Ratchet__V1__Shutdown m;
  ratchet__v1__shutdown__init(&m);
  m.grace_ms = grace_ms;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_SHUTDOWN;
  f.shutdown = &m;
  peer_send(p, &f);
}

static const Ratchet__V1__Result *expect_result(peer *p, uint64_t id,
                                                Ratchet__V1__Status st) {
  const Ratchet__V1__Result *r =
      peer_expect(p, RATCHET__V1__FRAME__MSG_RESULT)->result;
  assert_int_equal(r->id, id);
  if (r->status != st)
    fprintf(stderr, "task %llu: status %s (%s)\n", (unsigned long long)id,
            ratchet_codec_status_name(r->status), r->error);
  assert_int_equal(r->status, st);
  return r;
}

/* Waits for the Log line a spinning task sends when it starts. */
static void expect_running(peer *p, uint64_t id) {
  const Ratchet__V1__Log *l = peer_expect(p, RATCHET__V1__FRAME__MSG_LOG)->log;
  assert_int_equal(l->task_id, id);
  assert_string_equal(l->text, "running");
}

/* Closes the worker's stdin (unless already closed), waits for its exit and
 * returns the exit status (-1 if killed). */
static int peer_close(peer *p) {
  if (p->to >= 0)
    close(p->to);
  p->to = -1;
  int ws;
  assert_int_equal(waitpid(p->pid, &ws, 0), p->pid);
  ratchet_fd_transport_free(p->t);
  close(p->from);
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

/* Waits for the exit without closing stdin first (it must exit by itself),
 * and checks stdout ended cleanly. */
static int peer_wait_exit(peer *p) {
  const Ratchet__V1__Frame *f;
  assert_int_equal(ratchet_fd_transport_recv(p->t, &f), RATCHET_EEOF);
  int ws;
  assert_int_equal(waitpid(p->pid, &ws, 0), p->pid);
  close(p->to);
  p->to = -1;
  ratchet_fd_transport_free(p->t);
  close(p->from);
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

/* ---- the tests --------------------------------------------------------- */

static void test_handshake(void **state) {
  (void)state;
  peer p;
  const Ratchet__V1__Ready *r = peer_open(&p);
  assert_int_equal(r->protocol_version, RATCHET_PROTOCOL_VERSION);
  assert_int_equal(r->pid, (uint32_t)p.pid);
  assert_int_equal(r->n_kinds, N_KINDS);
  for (size_t i = 0; i < N_KINDS; i++)
    assert_string_equal(r->kinds[i], kinds[i].kind);
  assert_string_equal(r->worker_name, "test-worker");
  assert_string_equal(r->worker_version, "9.9.9");
  assert_int_equal(r->max_frame_size, 8u << 20);
  assert_int_equal(r->max_in_flight, 16);
  /* The end of stdin between frames: exit 0. */
  assert_int_equal(peer_close(&p), 0);
}

static void test_echo(void **state) {
  (void)state;
  peer p;
  peer_open(&p);
  send_task(&p,
            (task_spec){
                .id = 41, .kind = "echo", .payload = "hi there", .attempt = 2});
  const Ratchet__V1__Result *r =
      expect_result(&p, 41, RATCHET__V1__STATUS__STATUS_OK);
  assert_int_equal(r->attempt, 2);
  assert_int_equal(r->output.len, 8);
  assert_memory_equal(r->output.data, "hi there", 8);
  assert_string_equal(r->error, "");
  assert_non_null(r->usage);
  assert_true(r->usage->max_rss_kb > 0);
  /* An empty payload is an empty output. */
  send_task(&p, (task_spec){.id = 42, .kind = "echo"});
  r = expect_result(&p, 42, RATCHET__V1__STATUS__STATUS_OK);
  assert_int_equal(r->output.len, 0);
  assert_int_equal(peer_close(&p), 0);
}

static void test_statuses(void **state) {
  (void)state;
  peer p;
  peer_open(&p);
  send_task(&p, (task_spec){.id = 1, .kind = "no-such-kind"});
  const Ratchet__V1__Result *r =
      expect_result(&p, 1, RATCHET__V1__STATUS__STATUS_UNKNOWN_KIND);
  assert_non_null(strstr(r->error, "no-such-kind"));
  send_task(&p, (task_spec){.id = 2, .kind = "fail"});
  r = expect_result(&p, 2, RATCHET__V1__STATUS__STATUS_FAILED);
  assert_string_equal(r->error, ratchet_strerror(-EIO));
  send_task(&p, (task_spec){.id = 3, .kind = "fail-text"});
  r = expect_result(&p, 3, RATCHET__V1__STATUS__STATUS_FAILED);
  assert_string_equal(r->error, "bad input: 42");
  send_task(&p, (task_spec){.id = 4, .kind = "bad"});
  r = expect_result(&p, 4, RATCHET__V1__STATUS__STATUS_BAD_REQUEST);
  assert_string_equal(r->error, "nope");
  assert_int_equal(r->exit_code, 3);
  /* The worker goes on after failures. */
  send_task(&p, (task_spec){.id = 5, .kind = "echo", .payload = "x"});
  expect_result(&p, 5, RATCHET__V1__STATUS__STATUS_OK);
  assert_int_equal(peer_close(&p), 0);
}

static void test_big_output(void **state) {
  (void)state;
  peer p;
  peer_open(&p);
  send_task(&p, (task_spec){.id = 7, .kind = "big", .payload = "1048576"});
  const Ratchet__V1__Result *r =
      expect_result(&p, 7, RATCHET__V1__STATUS__STATUS_OK);
  assert_int_equal(r->output.len, 1u << 20);
  for (size_t i = 0; i < r->output.len; i++)
    if (r->output.data[i] != (uint8_t)(i % 251))
      fail_msg("output byte %zu is wrong", i);
  assert_int_equal(peer_close(&p), 0);
}

static void test_output_over_limit(void **state) {
  (void)state;
  peer p;
  peer_start(&p, "worker");
  send_hello(&p, RATCHET_PROTOCOL_VERSION, 4096); /* we read 4 KiB at most */
  peer_expect(&p, RATCHET__V1__FRAME__MSG_READY);
  send_task(&p, (task_spec){.id = 8, .kind = "big", .payload = "10000"});
  const Ratchet__V1__Result *r =
      expect_result(&p, 8, RATCHET__V1__STATUS__STATUS_INTERNAL_ERROR);
  assert_int_equal(r->output.len, 0);
  assert_non_null(strstr(r->error, "10000 bytes"));
  assert_int_equal(peer_close(&p), 0);
}

static void test_log(void **state) {
  (void)state;
  peer p;
  peer_open(&p);
  send_task(&p, (task_spec){.id = 99, .kind = "log"});
  const Ratchet__V1__Log *l = peer_expect(&p, RATCHET__V1__FRAME__MSG_LOG)->log;
  assert_int_equal(l->task_id, 99);
  assert_int_equal(l->level, RATCHET__V1__LOG_LEVEL__LOG_LEVEL_INFO);
  assert_string_equal(l->text, "hello from 99");
  l = peer_expect(&p, RATCHET__V1__FRAME__MSG_LOG)->log;
  assert_int_equal(l->task_id, 99);
  assert_int_equal(l->level, RATCHET__V1__LOG_LEVEL__LOG_LEVEL_WARN);
  assert_string_equal(l->text, "second");
  l = peer_expect(&p, RATCHET__V1__FRAME__MSG_LOG)->log;
  assert_int_equal(l->task_id, 0);
  assert_string_equal(l->text, "untagged");
  const Ratchet__V1__Result *r =
      expect_result(&p, 99, RATCHET__V1__STATUS__STATUS_OK);
  assert_memory_equal(r->output.data, "logged", 6);
  assert_int_equal(peer_close(&p), 0);
}

static void test_metadata(void **state) {
  (void)state;
  peer p;
  peer_open(&p);
  char k1[] = "trace", v1[] = "abc", k2[] = "x", v2[] = "y", kind[] = "meta";
  Ratchet__V1__Task__MetadataEntry e1, e2;
  ratchet__v1__task__metadata_entry__init(&e1);
  ratchet__v1__task__metadata_entry__init(&e2);
  e1.key = k1;
  e1.value = v1;
  e2.key = k2;
  e2.value = v2;
  Ratchet__V1__Task__MetadataEntry *md[] = {&e1, &e2};
  Ratchet__V1__Task t;
  ratchet__v1__task__init(&t);
  t.id = 5;
  t.attempt = 3;
  t.kind = kind;
  t.n_metadata = 2;
  t.metadata = md;
  t.deadline_unix_ms = UINT64_C(32503680000000); /* the year 3000 */
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_TASK;
  f.task = &t;
  peer_send(&p, &f);
  const Ratchet__V1__Result *r =
      expect_result(&p, 5, RATCHET__V1__STATUS__STATUS_OK);
  assert_int_equal(r->attempt, 3);
  char out[512];
  snprintf(out, sizeof out, "%.*s", (int)r->output.len,
           (const char *)r->output.data);
  char want[512];
  snprintf(want, sizeof want,
           "kind=meta attempt=3 trace=abc n=2 first=trace:abc missing=no "
           "range=%d deadline=32503680000000",
           -ERANGE);
  assert_string_equal(out, want);
  assert_int_equal(peer_close(&p), 0);
}

static void test_pipelining(void **state) {
  (void)state;
  peer p;
  peer_open(&p);
  char payload[8][16];
  for (int i = 0; i < 8; i++) {
    snprintf(payload[i], sizeof payload[i], "task %d", i + 1);
    send_task(&p, (task_spec){.id = (uint64_t)i + 1,
                              .kind = i == 3 ? "fail" : "echo",
                              .payload = payload[i]});
  }
  for (int i = 0; i < 8; i++) {
    const Ratchet__V1__Result *r =
        expect_result(&p, (uint64_t)i + 1,
                      i == 3 ? RATCHET__V1__STATUS__STATUS_FAILED
                             : RATCHET__V1__STATUS__STATUS_OK);
    if (i != 3)
      assert_memory_equal(r->output.data, payload[i], strlen(payload[i]));
  }
  assert_int_equal(peer_close(&p), 0);
}

static void test_cancel_running(void **state) {
  (void)state;
  peer p;
  peer_open(&p);
  send_task(&p, (task_spec){.id = 1, .kind = "spin"});
  expect_running(&p, 1);
  send_cancel(&p, 12345); /* unknown: ignored */
  send_cancel(&p, 1);
  const Ratchet__V1__Result *r =
      expect_result(&p, 1, RATCHET__V1__STATUS__STATUS_CANCELLED);
  assert_string_equal(r->error, "cancelled");
  send_cancel(&p, 1); /* already answered: ignored */
  send_task(&p, (task_spec){.id = 2, .kind = "echo", .payload = "after"});
  expect_result(&p, 2, RATCHET__V1__STATUS__STATUS_OK);
  assert_int_equal(peer_close(&p), 0);
}

static void test_cancel_queued(void **state) {
  (void)state;
  peer p;
  peer_open(&p);
  send_task(&p, (task_spec){.id = 1, .kind = "spin"});
  send_task(&p, (task_spec){.id = 2, .kind = "echo", .payload = "two"});
  send_task(&p, (task_spec){.id = 3, .kind = "echo", .payload = "three"});
  expect_running(&p, 1);
  /* Task 2 waits behind the spinning task 1: it is answered at once,
   * without running, while task 1 goes on. */
  send_cancel(&p, 2);
  const Ratchet__V1__Result *r =
      expect_result(&p, 2, RATCHET__V1__STATUS__STATUS_CANCELLED);
  assert_int_equal(r->output.len, 0);
  send_cancel(&p, 1);
  expect_result(&p, 1, RATCHET__V1__STATUS__STATUS_CANCELLED);
  r = expect_result(&p, 3, RATCHET__V1__STATUS__STATUS_OK);
  assert_memory_equal(r->output.data, "three", 5);
  assert_int_equal(peer_close(&p), 0);
}

static void test_deadline(void **state) {
  (void)state;
  peer p;
  peer_open(&p);
  /* Long past: answered without running. */
  send_task(&p, (task_spec){.id = 1, .kind = "echo", .deadline = 1});
  const Ratchet__V1__Result *r =
      expect_result(&p, 1, RATCHET__V1__STATUS__STATUS_TIMEOUT);
  assert_non_null(strstr(r->error, "deadline"));
  /* Passing while the handler runs: cancelled() turns true. */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t now_ms =
      (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  send_task(&p, (task_spec){.id = 2, .kind = "spin", .deadline = now_ms + 20});
  /* The Log may or may not come first, depending on how fast the worker
   * starts the task; the Result is TIMEOUT either way. */
  const Ratchet__V1__Frame *f = peer_recv(&p);
  if (f->msg_case == RATCHET__V1__FRAME__MSG_LOG)
    f = peer_recv(&p);
  assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_RESULT);
  assert_int_equal(f->result->id, 2);
  assert_int_equal(f->result->status, RATCHET__V1__STATUS__STATUS_TIMEOUT);
  assert_int_equal(peer_close(&p), 0);
}

static void test_ping(void **state) {
  (void)state;
  peer p;
  peer_open(&p);
  send_task(&p, (task_spec){.id = 1, .kind = "echo"});
  send_task(&p, (task_spec){.id = 2, .kind = "fail"});
  expect_result(&p, 1, RATCHET__V1__STATUS__STATUS_OK);
  expect_result(&p, 2, RATCHET__V1__STATUS__STATUS_FAILED);
  send_ping(&p, 7);
  const Ratchet__V1__Pong *pong =
      peer_expect(&p, RATCHET__V1__FRAME__MSG_PONG)->pong;
  assert_int_equal(pong->seq, 7);
  assert_non_null(pong->stats);
  assert_int_equal(pong->stats->tasks_done, 2);
  assert_int_equal(pong->stats->tasks_failed, 1);
  assert_int_equal(pong->stats->in_flight, 0);
  assert_true(pong->stats->rss_kb > 0);
  /* While a task runs (and polls), a Ping is answered at once. */
  send_task(&p, (task_spec){.id = 3, .kind = "spin"});
  expect_running(&p, 3);
  send_ping(&p, 8);
  pong = peer_expect(&p, RATCHET__V1__FRAME__MSG_PONG)->pong;
  assert_int_equal(pong->seq, 8);
  assert_int_equal(pong->stats->in_flight, 1);
  send_cancel(&p, 3);
  expect_result(&p, 3, RATCHET__V1__STATUS__STATUS_CANCELLED);
  assert_int_equal(peer_close(&p), 0);
}

static void test_shutdown(void **state) {
  (void)state;
  /* Idle. */
  peer p;
  peer_open(&p);
  send_shutdown(&p, 1000);
  assert_int_equal(peer_wait_exit(&p), 0);

  /* With a grace period: queued tasks are cancelled, the running one may
   * finish (here it is cancelled by hand, within the grace). */
  peer_open(&p);
  send_task(&p, (task_spec){.id = 1, .kind = "spin"});
  send_task(&p, (task_spec){.id = 2, .kind = "echo"});
  expect_running(&p, 1);
  send_shutdown(&p, 600000);
  const Ratchet__V1__Result *r =
      expect_result(&p, 2, RATCHET__V1__STATUS__STATUS_CANCELLED);
  assert_non_null(strstr(r->error, "shutdown"));
  send_cancel(&p, 1);
  expect_result(&p, 1, RATCHET__V1__STATUS__STATUS_CANCELLED);
  assert_int_equal(peer_wait_exit(&p), 0);

  /* Grace 0: the running task is cancelled at its next poll. */
  peer_open(&p);
  send_task(&p, (task_spec){.id = 1, .kind = "spin"});
  expect_running(&p, 1);
  send_shutdown(&p, 0);
  r = expect_result(&p, 1, RATCHET__V1__STATUS__STATUS_CANCELLED);
  assert_non_null(strstr(r->error, "grace"));
  assert_int_equal(peer_wait_exit(&p), 0);

  /* A Task after Shutdown is out of turn (read while a task polls, so the
   * worker cannot have exited first). */
  peer_open(&p);
  send_task(&p, (task_spec){.id = 1, .kind = "spin"});
  expect_running(&p, 1);
  send_shutdown(&p, 600000);
  send_task(&p, (task_spec){.id = 2, .kind = "echo"});
  const Ratchet__V1__Error *e =
      peer_expect(&p, RATCHET__V1__FRAME__MSG_ERROR)->error;
  assert_int_equal(e->code, RATCHET__V1__ERROR_CODE__ERROR_UNEXPECTED);
  assert_int_equal(peer_wait_exit(&p), 1);
}

static void test_eof_mid_task(void **state) {
  (void)state;
  peer p;
  peer_open(&p);
  send_task(&p, (task_spec){.id = 1, .kind = "spin"});
  expect_running(&p, 1);
  close(p.to);
  p.to = -1;
  /* No Result: nobody would read it. */
  assert_int_equal(peer_wait_exit(&p), 0);
}

/* Writes raw bytes to the worker, then expects Error{code} and exit 1. */
static void expect_refused(peer *p, const void *bytes, size_t len,
                           Ratchet__V1__ErrorCode code) {
  assert_int_equal(write(p->to, bytes, len), (ssize_t)len);
  const Ratchet__V1__Error *e =
      peer_expect(p, RATCHET__V1__FRAME__MSG_ERROR)->error;
  assert_int_equal(e->code, code);
  assert_true(strlen(e->text) > 0);
  assert_int_equal(peer_wait_exit(p), 1);
}

static void test_protocol_errors(void **state) {
  (void)state;
  peer p;
  /* Another major version. */
  peer_start(&p, "worker");
  send_hello(&p, 2, 0);
  const Ratchet__V1__Error *e =
      peer_expect(&p, RATCHET__V1__FRAME__MSG_ERROR)->error;
  assert_int_equal(e->code, RATCHET__V1__ERROR_CODE__ERROR_VERSION);
  assert_non_null(strstr(e->text, "2"));
  assert_int_equal(peer_wait_exit(&p), 1);

  /* A Task before Hello. */
  peer_start(&p, "worker");
  send_task(&p, (task_spec){.id = 1, .kind = "echo"});
  e = peer_expect(&p, RATCHET__V1__FRAME__MSG_ERROR)->error;
  assert_int_equal(e->code, RATCHET__V1__ERROR_CODE__ERROR_UNEXPECTED);
  assert_int_equal(peer_wait_exit(&p), 1);

  /* Garbage: a length prefix of 11 bytes. */
  static const uint8_t varint[11] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                     0xff, 0xff, 0xff, 0xff, 0xff};
  peer_open(&p);
  expect_refused(&p, varint, sizeof varint,
                 RATCHET__V1__ERROR_CODE__ERROR_FRAME);

  /* Oversized: 16 MiB announced, the worker reads 8 MiB at most. */
  static const uint8_t big[] = {0x80, 0x80, 0x80, 0x08};
  peer_open(&p);
  expect_refused(&p, big, sizeof big, RATCHET__V1__ERROR_CODE__ERROR_FRAME);

  /* A body that is no Frame (field 0). */
  static const uint8_t undecodable[] = {0x02, 0x00, 0x00};
  peer_open(&p);
  expect_refused(&p, undecodable, sizeof undecodable,
                 RATCHET__V1__ERROR_CODE__ERROR_DECODE);

  /* A message that goes the other way. */
  peer_open(&p);
  Ratchet__V1__Pong pong;
  ratchet__v1__pong__init(&pong);
  pong.seq = 1;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_PONG;
  f.pong = &pong;
  peer_send(&p, &f);
  e = peer_expect(&p, RATCHET__V1__FRAME__MSG_ERROR)->error;
  assert_int_equal(e->code, RATCHET__V1__ERROR_CODE__ERROR_UNEXPECTED);
  assert_int_equal(peer_wait_exit(&p), 1);

  /* Stdin cut inside a frame. */
  peer_open(&p);
  static const uint8_t cut[] = {0x10, 0x1a};
  assert_int_equal(write(p.to, cut, sizeof cut), (ssize_t)sizeof cut);
  close(p.to);
  p.to = -1;
  e = peer_expect(&p, RATCHET__V1__FRAME__MSG_ERROR)->error;
  assert_int_equal(e->code, RATCHET__V1__ERROR_CODE__ERROR_FRAME);
  assert_int_equal(peer_wait_exit(&p), 1);

  /* The orchestrator's Error: no answer, exit 1. */
  peer_open(&p);
  assert_int_equal(
      ratchet_fd_transport_send_error(p.t, RATCHET_EPROTO_UNEXPECTED, "bye"),
      0);
  assert_int_equal(peer_wait_exit(&p), 1);
}

/* Whether pid is gone or a zombie waiting for a reaper that is not us. */
static int process_dead(pid_t pid) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return 1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *close_paren = strrchr(buf, ')');
  return close_paren != NULL &&
         (close_paren[2] == 'Z' || close_paren[2] == 'X');
}

static void test_pdeathsig(void **state) {
  (void)state;
  int in[2], out[2];
  assert_int_equal(pipe2(in, O_CLOEXEC), 0);
  assert_int_equal(pipe2(out, O_CLOEXEC), 0);
  const char *self = tu_self_path();
  pid_t mid = fork();
  assert_true(mid >= 0);
  if (mid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    execl(self, self, "--child", "worker-parent", (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  ratchet_fd_transport *t;
  assert_int_equal(ratchet_fd_transport_new(out[0], in[1], NULL, &t), 0);
  peer p = {.pid = mid, .to = in[1], .from = out[0], .t = t};
  /* Ready comes from the grandchild, after it asked for PDEATHSIG. */
  send_hello(&p, RATCHET_PROTOCOL_VERSION, 0);
  const Ratchet__V1__Ready *r =
      peer_expect(&p, RATCHET__V1__FRAME__MSG_READY)->ready;
  pid_t worker = (pid_t)r->pid;
  assert_true(worker != mid);
  assert_int_equal(kill(mid, SIGKILL), 0);
  int ws;
  assert_int_equal(waitpid(mid, &ws, 0), mid);
  /* The worker's stdin stays open (we hold it): only the parent's death
   * can end it. Its stdout ends when it dies. */
  const Ratchet__V1__Frame *f;
  assert_int_equal(ratchet_fd_transport_recv(t, &f), RATCHET_EEOF);
  while (!process_dead(worker))
    ratchet_sleep_ns(1000000);
  ratchet_fd_transport_free(t);
  close(in[1]);
  close(out[0]);
}

/* In-process, for valgrind: the whole session is written before serving. */
static void test_serve_in_process(void **state) {
  (void)state;
  int in[2], out[2];
  assert_int_equal(pipe2(in, O_CLOEXEC), 0);
  assert_int_equal(pipe2(out, O_CLOEXEC), 0);
  ratchet_fd_transport *tw, *tr;
  assert_int_equal(ratchet_fd_transport_new(-1, in[1], NULL, &tw), 0);
  peer p = {.pid = 0, .to = in[1], .from = -1, .t = tw};
  send_hello(&p, RATCHET_PROTOCOL_VERSION, 0);
  send_task(&p, (task_spec){.id = 1, .kind = "echo", .payload = "abc"});
  send_task(&p, (task_spec){.id = 2, .kind = "log"});
  send_task(&p, (task_spec){.id = 3, .kind = "nope"});
  send_ping(&p, 5);
  send_shutdown(&p, 0);
  ratchet_fd_transport_free(tw);
  close(in[1]);

  ratchet_worker *w = make_worker();
  assert_non_null(w);
  assert_int_equal(ratchet_worker_serve(w, in[0], out[1]), 0);
  /* Not serving any more: no logging, registering works again. */
  assert_int_equal(ratchet_worker_log(w, RATCHET_LOG_INFO, "x"), -ENOTCONN);
  assert_int_equal(ratchet_worker_register(w, "late", h_echo, NULL), 0);
  assert_int_equal(ratchet_worker_register(w, "late", h_echo, NULL), -EEXIST);
  assert_int_equal(ratchet_worker_register(w, "", h_echo, NULL), -EINVAL);
  assert_int_equal(ratchet_worker_serve(w, -1, 1), -EINVAL);
  ratchet_worker_free(w);
  close(in[0]);
  close(out[1]);

  assert_int_equal(ratchet_fd_transport_new(out[0], -1, NULL, &tr), 0);
  p = (peer){.pid = 0, .to = -1, .from = out[0], .t = tr};
  peer_expect(&p, RATCHET__V1__FRAME__MSG_READY);
  /* The Ping was read with the Tasks, before any of them ran. */
  const Ratchet__V1__Pong *pong =
      peer_expect(&p, RATCHET__V1__FRAME__MSG_PONG)->pong;
  assert_int_equal(pong->seq, 5);
  assert_int_equal(pong->stats->in_flight, 3);
  /* Shutdown was read too: the queued Tasks are cancelled. */
  expect_result(&p, 1, RATCHET__V1__STATUS__STATUS_CANCELLED);
  expect_result(&p, 2, RATCHET__V1__STATUS__STATUS_CANCELLED);
  expect_result(&p, 3, RATCHET__V1__STATUS__STATUS_CANCELLED);
  const Ratchet__V1__Frame *f;
  assert_int_equal(ratchet_fd_transport_recv(tr, &f), RATCHET_EEOF);
  ratchet_fd_transport_free(tr);
  close(out[0]);
}

/* ---- allocation failure ------------------------------------------------ */

static long allocs_left = -1; /* -1: never fail */

static int take_alloc(void) {
  if (allocs_left == 0)
    return 0;
  if (allocs_left > 0)
    allocs_left--;
  return 1;
}
static void *f_malloc(size_t n) {
  return take_alloc() ? malloc(n) : NULL;
}
static void *f_realloc(void *p, size_t n) {
  return take_alloc() ? realloc(p, n) : NULL;
}
static void *f_calloc(size_t c, size_t n) {
  return take_alloc() ? calloc(c, n) : NULL;
}

static void test_alloc_failure(void **state) {
  (void)state;
  assert_int_equal(
      ratchet_replace_allocator(f_malloc, f_realloc, f_calloc, free), 0);
  int ok = 0;
  for (long n = 0; n < 200 && !ok; n++) {
    allocs_left = n;
    ratchet_worker *w = NULL;
    int rc = ratchet_worker_new(NULL, &w);
    if (rc != 0) {
      assert_int_equal(rc, -ENOMEM);
      assert_null(w);
      continue;
    }
    /* Registration fails cleanly, leaving the worker as it was. */
    size_t done = 0;
    for (size_t i = 0; i < N_KINDS; i++) {
      rc = ratchet_worker_register(w, kinds[i].kind, kinds[i].fn, NULL);
      if (rc != 0) {
        assert_int_equal(rc, -ENOMEM);
        break;
      }
      done++;
    }
    allocs_left = -1;
    /* What was registered is there; what failed can be registered now. */
    for (size_t i = 0; i < N_KINDS; i++)
      assert_int_equal(
          ratchet_worker_register(w, kinds[i].kind, kinds[i].fn, NULL),
          i < done ? -EEXIST : 0);
    ok = done == N_KINDS;
    ratchet_worker_free(w);
  }
  allocs_left = -1;
  ratchet_reset_allocator();
  assert_true(ok);
}

static void test_args(void **state) {
  (void)state;
  ratchet_worker *w;
  assert_int_equal(ratchet_worker_new(NULL, NULL), -EINVAL);
  ratchet_worker_options o = RATCHET_WORKER_OPTIONS_INIT;
  o.max_frame_size = SIZE_MAX;
  assert_int_equal(ratchet_worker_new(&o, &w), -EINVAL);
  o = (ratchet_worker_options)RATCHET_WORKER_OPTIONS_INIT;
  o.name = NULL;
  o.version = NULL;
  assert_int_equal(ratchet_worker_new(&o, &w), 0);
  assert_int_equal(ratchet_worker_register(w, NULL, h_echo, NULL), -EINVAL);
  assert_int_equal(ratchet_worker_register(w, "k", NULL, NULL), -EINVAL);
  assert_int_equal(ratchet_worker_register(NULL, "k", h_echo, NULL), -EINVAL);
  assert_int_equal(ratchet_worker_serve(NULL, 0, 1), -EINVAL);
  assert_int_equal(ratchet_worker_main(NULL), -EINVAL);
  assert_int_equal(ratchet_worker_log(w, RATCHET_LOG_INFO, "x"), -ENOTCONN);
  ratchet_worker_free(w);
  ratchet_worker_free(NULL);
}

int test_worker(void) {
  /* Writes to a worker that exited must fail, not kill the tests. */
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_args),
      cmocka_unit_test(test_alloc_failure),
      cmocka_unit_test(test_serve_in_process),
      cmocka_unit_test(test_handshake),
      cmocka_unit_test(test_echo),
      cmocka_unit_test(test_statuses),
      cmocka_unit_test(test_big_output),
      cmocka_unit_test(test_output_over_limit),
      cmocka_unit_test(test_log),
      cmocka_unit_test(test_metadata),
      cmocka_unit_test(test_pipelining),
      cmocka_unit_test(test_cancel_running),
      cmocka_unit_test(test_cancel_queued),
      cmocka_unit_test(test_deadline),
      cmocka_unit_test(test_ping),
      cmocka_unit_test(test_shutdown),
      cmocka_unit_test(test_eof_mid_task),
      cmocka_unit_test(test_protocol_errors),
      cmocka_unit_test(test_pdeathsig),
  };
  return cmocka_run_group_tests_name("worker", tests, NULL, NULL);
}
