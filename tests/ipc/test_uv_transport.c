/*
 * test_uv_transport.c - the libuv transport over real socketpairs and
 * pipes: a handshake between two transports, a child worker behind two
 * pipes, a child that writes one byte at a time and one that floods, a
 * flood between two transports that reaches the high watermark and drains,
 * read_stop/read_start in the middle of a read, close from inside a
 * callback and with writes still queued, a peer that stops mid-frame or
 * sends garbage, an oversized frame or an Error (each bad frame answered
 * with an Error frame the peer reads), write errors, and the arguments.
 *
 * Each test runs its own loop and ends with uv_loop_close() == 0, so no
 * handle is left behind. Callbacks only record what happened; the tests
 * assert after the loop has stopped. SIGPIPE is ignored for the group, as
 * any program writing to pipes with libuv must.
 */
#define _GNU_SOURCE /* pipe2, SOCK_CLOEXEC */

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "ratchet/codec.h"
#include "ratchet/error.h"
#include "ratchet/transport.h"
#include "ipc_testutil.h"
#include "testutil.h"

/* ---- helpers ---------------------------------------------------------- */

static const Ratchet__V1__Frame *make_hello(tu_msg *m) {
  ratchet__v1__frame__init(&m->f);
  ratchet__v1__hello__init(&m->u.hello);
  m->u.hello.protocol_version = RATCHET_PROTOCOL_VERSION;
  m->u.hello.max_frame_size = 64u << 20;
  m->u.hello.worker_id = 1;
  m->u.hello.pipeline_depth = 1000;
  m->f.msg_case = RATCHET__V1__FRAME__MSG_HELLO;
  m->f.hello = &m->u.hello;
  return &m->f;
}

static size_t encode(const Ratchet__V1__Frame *f, uint8_t *dst, size_t cap) {
  size_t n = 0;
  assert_int_equal(ratchet_codec_write(f, 0, dst, cap, &n), 0);
  return n;
}

static void write_raw(int fd, const void *p, size_t n) {
  assert_int_equal(write(fd, p, n), (ssize_t)n);
}

/* One end of a connection: its streams, its transport, and what its
 * callbacks saw. Tests set the hooks for their own behaviour. */
typedef struct side side;
struct side {
  uv_pipe_t in;  /* read from */
  uv_pipe_t out; /* written to, when not the same as in */
  ratchet_uv_transport *t;
  uint64_t frames; /* frames delivered */
  Ratchet__V1__Frame__MsgCase last;
  uint64_t bad; /* frames out of order or damaged */
  int ends;     /* on_end calls */
  int end_err;
  int drains;
  int closed;  /* close callbacks */
  int stopped; /* the test stopped reading */
  void (*frame_hook)(side *s, const Ratchet__V1__Frame *f);
  void (*end_hook)(side *s, int err);
  void (*drain_hook)(side *s);
  void *ctx;
};

static void on_frame(ratchet_uv_transport *t, const Ratchet__V1__Frame *f) {
  side *s = ratchet_uv_transport_data(t);
  s->frames++;
  s->last = f->msg_case;
  if (s->stopped)
    s->bad++;
  if (s->frame_hook != NULL)
    s->frame_hook(s, f);
}

static void close_cb(void *data) {
  side *s = data;
  s->closed++;
}

static void side_close(side *s) {
  if (s->t != NULL) {
    ratchet_uv_transport_close(s->t, close_cb);
    s->t = NULL;
  }
}

static void on_end(ratchet_uv_transport *t, int err) {
  side *s = ratchet_uv_transport_data(t);
  s->ends++;
  s->end_err = err;
  if (s->end_hook != NULL)
    s->end_hook(s, err);
  else
    side_close(s);
}

static void on_drain(ratchet_uv_transport *t) {
  side *s = ratchet_uv_transport_data(t);
  s->drains++;
  if (s->drain_hook != NULL)
    s->drain_hook(s);
}

static const ratchet_uv_transport_callbacks cbs = {on_frame, on_end, on_drain};

/* Opens the side on fd (both directions: a socket). */
static void side_open(uv_loop_t *loop, side *s, int fd,
                      const ratchet_uv_transport_options *o) {
  assert_int_equal(uv_pipe_init(loop, &s->in, 0), 0);
  assert_int_equal(uv_pipe_open(&s->in, fd), 0);
  assert_int_equal(ratchet_uv_transport_new((uv_stream_t *)&s->in,
                                            (uv_stream_t *)&s->in, o, &cbs, s,
                                            &s->t),
                   0);
}

/* Opens the side on two descriptors: read from in_fd, write to out_fd. */
static void side_open2(uv_loop_t *loop, side *s, int in_fd, int out_fd) {
  assert_int_equal(uv_pipe_init(loop, &s->in, 0), 0);
  assert_int_equal(uv_pipe_open(&s->in, in_fd), 0);
  assert_int_equal(uv_pipe_init(loop, &s->out, 0), 0);
  assert_int_equal(uv_pipe_open(&s->out, out_fd), 0);
  assert_int_equal(ratchet_uv_transport_new((uv_stream_t *)&s->in,
                                            (uv_stream_t *)&s->out, NULL, &cbs,
                                            s, &s->t),
                   0);
}

static void make_socketpair(int s[2]) {
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
}

static void make_pipe(int p[2]) {
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
}

static void loop_done(uv_loop_t *loop) {
  assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(loop), 0);
}

/* Reads frames from a blocking fd until an Error: returns its code, or -1
 * if the stream ended first. */
static int read_error_code(int fd) {
  ratchet_fd_transport *t;
  assert_int_equal(ratchet_fd_transport_new(fd, -1, NULL, &t), 0);
  const Ratchet__V1__Frame *f;
  int code = -1;
  while (ratchet_fd_transport_recv(t, &f) == 0)
    if (f->msg_case == RATCHET__V1__FRAME__MSG_ERROR) {
      code = (int)f->error->code;
      break;
    }
  ratchet_fd_transport_free(t);
  return code;
}

/* ---- two transports: handshake ---------------------------------------- */

static void worker_answers(side *s, const Ratchet__V1__Frame *f) {
  if (f->msg_case != RATCHET__V1__FRAME__MSG_HELLO) {
    s->bad++;
    return;
  }
  tu_msg m;
  ratchet__v1__frame__init(&m.f);
  ratchet__v1__ready__init(&m.u.ready);
  m.u.ready.protocol_version = RATCHET_PROTOCOL_VERSION;
  m.u.ready.pid = 1234;
  m.f.msg_case = RATCHET__V1__FRAME__MSG_READY;
  m.f.ready = &m.u.ready;
  if (ratchet_uv_transport_send(s->t, &m.f) != 0)
    s->bad++;
}

static void orchestrator_done(side *s, const Ratchet__V1__Frame *f) {
  if (f->msg_case != RATCHET__V1__FRAME__MSG_READY || f->ready->pid != 1234)
    s->bad++;
  side_close(s); /* the worker sees EOF and closes itself */
}

static void test_handshake(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  int sp[2];
  make_socketpair(sp);
  side a = {0}, b = {0};
  side_open(&loop, &a, sp[0], NULL);
  side_open(&loop, &b, sp[1], NULL);
  a.frame_hook = orchestrator_done;
  b.frame_hook = worker_answers;
  tu_msg m;
  assert_int_equal(ratchet_uv_transport_send(a.t, make_hello(&m)), 0);
  assert_ptr_equal(ratchet_uv_transport_data(a.t), &a);
  loop_done(&loop);
  assert_int_equal(a.frames, 1);
  assert_int_equal(a.bad, 0);
  assert_int_equal(a.ends, 0); /* closed by its owner: no on_end */
  assert_int_equal(a.closed, 1);
  assert_int_equal(b.frames, 1);
  assert_int_equal(b.bad, 0);
  assert_int_equal(b.ends, 1);
  assert_int_equal(b.end_err, RATCHET_EEOF);
  assert_int_equal(b.closed, 1);
}

/* ---- a worker process behind two pipes --------------------------------- */

typedef struct proc {
  uv_process_t h;
  int exited;
  int64_t status;
  int signal;
} proc;

static void on_exit_cb(uv_process_t *p, int64_t status, int sig) {
  proc *pr = p->data;
  pr->exited = 1;
  pr->status = status;
  pr->signal = sig;
  uv_close((uv_handle_t *)p, NULL);
}

/* Starts argv with its stdin and stdout on new pipes (libuv makes them),
 * and opens the side on them. */
static void spawn_side(uv_loop_t *loop, side *s, proc *pr, char **argv) {
  assert_int_equal(uv_pipe_init(loop, &s->in, 0), 0);
  assert_int_equal(uv_pipe_init(loop, &s->out, 0), 0);
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
  stdio[0].data.stream = (uv_stream_t *)&s->out;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&s->in;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  uv_process_options_t o;
  memset(&o, 0, sizeof o);
  o.file = argv[0];
  o.args = argv;
  o.exit_cb = on_exit_cb;
  o.stdio = stdio;
  o.stdio_count = 3;
  pr->h.data = pr;
  int rc = uv_spawn(loop, &pr->h, &o);
  if (rc != 0) {
    /* Close everything first: libuv keeps the loop in its SIGCHLD
     * handler's tree until uv_loop_close, and the loop is on the stack. */
    uv_close((uv_handle_t *)&pr->h, NULL); /* initialised even so */
    uv_close((uv_handle_t *)&s->in, NULL);
    uv_close((uv_handle_t *)&s->out, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
    fail_msg("cannot start %s: %s", argv[0], uv_strerror(rc));
  }
  assert_int_equal(ratchet_uv_transport_new((uv_stream_t *)&s->in,
                                            (uv_stream_t *)&s->out, NULL, &cbs,
                                            s, &s->t),
                   0);
}

enum { ECHO_TASKS = 2000 };

typedef struct echo_run {
  uint8_t *big; /* the payload of task 0, 1 MiB */
  uint64_t results;
  int pong;
} echo_run;

/* Orchestrator: Hello -> Ready -> 2000 tasks at once (no waiting: the
 * transport queues) -> results in order -> Ping -> Pong -> Shutdown. */
static void echo_orchestrate(side *s, const Ratchet__V1__Frame *f) {
  echo_run *r = s->ctx;
  tu_msg m;
  uint8_t payload[600];
  switch (f->msg_case) {
  case RATCHET__V1__FRAME__MSG_READY:
    if (f->ready->protocol_version != 1 || f->ready->n_kinds != 1)
      s->bad++;
    for (uint64_t id = 0; id < ECHO_TASKS; id++) {
      size_t len = id == 0 ? (size_t)1 << 20 : (size_t)(id % 600);
      if (id > 0)
        tu_fill(payload, len, id);
      if (ratchet_uv_transport_send(
              s->t, tu_make_task(&m, id, id == 0 ? r->big : payload, len)) < 0)
        s->bad++;
    }
    break;
  case RATCHET__V1__FRAME__MSG_RESULT: {
    const Ratchet__V1__Result *res = f->result;
    uint64_t id = r->results++;
    size_t len = id == 0 ? (size_t)1 << 20 : (size_t)(id % 600);
    if (res->id != id || res->status != RATCHET__V1__STATUS__STATUS_OK ||
        res->output.len != len ||
        !tu_check(res->output.data, len, id == 0 ? 5 : id))
      s->bad++;
    if (r->results == ECHO_TASKS &&
        ratchet_uv_transport_send(s->t, tu_make_ping(&m, 77)) != 0)
      s->bad++;
    break;
  }
  case RATCHET__V1__FRAME__MSG_PONG:
    r->pong = f->pong->seq == 77 && f->pong->stats != NULL &&
              f->pong->stats->tasks_done == ECHO_TASKS;
    if (ratchet_uv_transport_send(s->t, tu_make_shutdown(&m)) != 0)
      s->bad++;
    break;
  default:
    s->bad++;
  }
}

static void test_child_worker(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  side s = {0};
  proc pr = {0};
  echo_run r = {0};
  s.ctx = &r;
  s.frame_hook = echo_orchestrate;
  char *argv[] = {(char *)RATCHET_TEST_ECHO_WORKER, NULL};
  spawn_side(&loop, &s, &pr, argv);
  r.big = malloc((size_t)1 << 20);
  assert_non_null(r.big);
  tu_fill(r.big, (size_t)1 << 20, 5);
  tu_msg m;
  assert_int_equal(ratchet_uv_transport_send(s.t, make_hello(&m)), 0);
  loop_done(&loop);
  assert_int_equal(s.bad, 0);
  assert_int_equal(r.results, ECHO_TASKS);
  assert_true(r.pong);
  assert_int_equal(s.ends, 1);
  assert_int_equal(s.end_err, RATCHET_EEOF);
  assert_int_equal(s.closed, 1);
  assert_int_equal(pr.exited, 1);
  assert_int_equal(pr.status, 0);
  free(r.big);
}

/* ---- children writing through real pipes -------------------------------- */

/* Starts `--child name arg` with stdout on a pipe we read and stdin on a
 * pipe we write, and opens the side on our ends. */
static pid_t child_side(uv_loop_t *loop, side *s, const char *name,
                        const char *arg) {
  int down[2], up[2];
  make_pipe(down);
  make_pipe(up);
  pid_t pid = tu_spawn_child(name, arg, down[0], up[1]);
  assert_true(pid > 0);
  close(down[0]);
  close(up[1]);
  side_open2(loop, s, up[0], down[1]);
  return pid;
}

static void count_in_order(side *s, const Ratchet__V1__Frame *f) {
  uint64_t i = s->frames - 1;
  if (f->msg_case == RATCHET__V1__FRAME__MSG_PING) {
    if (f->ping->seq != i + 1)
      s->bad++;
  } else if (f->msg_case != RATCHET__V1__FRAME__MSG_TASK || f->task->id != i ||
             f->task->payload.len != i % 700 ||
             !tu_check(f->task->payload.data, f->task->payload.len, i)) {
    s->bad++;
  }
}

/* One byte per write(2): frames are put together across many reads. */
static void test_slow_writer(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  side s = {0};
  s.frame_hook = count_in_order;
  pid_t pid = child_side(&loop, &s, "fd_slow_writer", "4");
  loop_done(&loop);
  assert_int_equal(tu_wait(pid), 0);
  assert_int_equal(s.frames, 4);
  assert_int_equal(s.bad, 0);
  assert_int_equal(s.end_err, RATCHET_EEOF);
  assert_int_equal(s.closed, 1);
}

/* A child writes 20,000 frames as fast as it can: all arrive, in order. */
static void test_flood_from_child(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  side s = {0};
  s.frame_hook = count_in_order;
  pid_t pid = child_side(&loop, &s, "fd_flood", "20000");
  loop_done(&loop);
  assert_int_equal(tu_wait(pid), 0);
  assert_int_equal(s.frames, 20000);
  assert_int_equal(s.bad, 0);
  assert_int_equal(s.end_err, RATCHET_EEOF);
}

/* ---- flood between two transports: backpressure ----------------------- */

enum { FLOOD = 10000, FLOOD_PAYLOAD = 200 };

typedef struct flood {
  side *sender;
  side *receiver;
  size_t queued_at_drain;
  int sent_after_drain;
} flood;

static void flood_maybe_finish(flood *fl) {
  if (fl->receiver->frames == FLOOD + 1 && fl->sender->drains == 1) {
    side_close(fl->sender);
    side_close(fl->receiver);
  }
}

static void flood_receive(side *s, const Ratchet__V1__Frame *f) {
  uint64_t i = s->frames - 1;
  if (f->msg_case != RATCHET__V1__FRAME__MSG_TASK || f->task->id != i ||
      f->task->payload.len != FLOOD_PAYLOAD ||
      !tu_check(f->task->payload.data, FLOOD_PAYLOAD, i))
    s->bad++;
  flood_maybe_finish(s->ctx);
}

static void flood_drained(side *s) {
  flood *fl = s->ctx;
  fl->queued_at_drain = ratchet_uv_transport_queued(s->t);
  if (ratchet_uv_transport_congested(s->t))
    s->bad++;
  /* Sending again after the drain: accepted without backpressure. */
  uint8_t payload[FLOOD_PAYLOAD];
  tu_fill(payload, sizeof payload, FLOOD);
  tu_msg m;
  fl->sent_after_drain = ratchet_uv_transport_send(
      s->t, tu_make_task(&m, FLOOD, payload, sizeof payload));
  flood_maybe_finish(fl);
}

static void test_flood_backpressure(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  int sp[2];
  make_socketpair(sp);
  side a = {0}, b = {0};
  flood fl = {&a, &b, 0, -1};
  a.ctx = b.ctx = &fl;
  a.drain_hook = flood_drained;
  b.frame_hook = flood_receive;
  ratchet_uv_transport_options o = RATCHET_UV_TRANSPORT_OPTIONS_INIT;
  o.high_watermark = 16 << 10;
  o.low_watermark = 4 << 10;
  side_open(&loop, &a, sp[0], &o);
  side_open(&loop, &b, sp[1], NULL);

  uint8_t payload[FLOOD_PAYLOAD];
  tu_msg m;
  int first_bp = -1, zeros_after = 0;
  size_t queued_at_bp = 0;
  for (int i = 0; i < FLOOD; i++) {
    tu_fill(payload, sizeof payload, (uint64_t)i);
    int rc = ratchet_uv_transport_send(
        a.t, tu_make_task(&m, (uint64_t)i, payload, sizeof payload));
    assert_true(rc == 0 || rc == RATCHET_UV_BACKPRESSURE);
    if (rc == RATCHET_UV_BACKPRESSURE && first_bp < 0) {
      first_bp = i;
      queued_at_bp = ratchet_uv_transport_queued(a.t);
    }
    if (rc == 0 && first_bp >= 0)
      zeros_after++;
  }
  /* All queued without blocking; backpressure from the send that reached
   * the high watermark on, and never a plain 0 after it. */
  assert_true(first_bp > 0);
  assert_true(queued_at_bp >= o.high_watermark);
  assert_int_equal(zeros_after, 0);
  assert_true(ratchet_uv_transport_congested(a.t));
  assert_true(ratchet_uv_transport_queued(a.t) >
              (size_t)(FLOOD - first_bp) * FLOOD_PAYLOAD);

  loop_done(&loop);
  assert_int_equal(a.drains, 1);
  assert_true(fl.queued_at_drain <= o.low_watermark);
  assert_int_equal(fl.sent_after_drain, 0);
  assert_int_equal(a.bad, 0);
  assert_int_equal(b.frames, FLOOD + 1);
  assert_int_equal(b.bad, 0);
  assert_int_equal(a.closed + b.closed, 2);
}

/* ---- read_stop / read_start -------------------------------------------- */

typedef struct pausing {
  uv_timer_t timer;
  int restarts;
} pausing;

static void restart(uv_timer_t *timer) {
  side *s = timer->data;
  pausing *p = s->ctx;
  s->stopped = 0;
  p->restarts++;
  if (ratchet_uv_transport_read_start(s->t) != 0 ||
      ratchet_uv_transport_read_start(s->t) != 0) /* idempotent */
    s->bad++;
}

/* Stops after every 10th frame (and restarts from a timer), and at frame
 * 55 stops and restarts at once, inside the callback. */
static void pause_every_ten(side *s, const Ratchet__V1__Frame *f) {
  pausing *p = s->ctx;
  if (f->msg_case != RATCHET__V1__FRAME__MSG_PING || f->ping->seq != s->frames)
    s->bad++;
  if (s->frames == 55) {
    if (ratchet_uv_transport_read_stop(s->t) != 0 ||
        ratchet_uv_transport_read_start(s->t) != 0)
      s->bad++;
  } else if (s->frames % 10 == 0) {
    if (ratchet_uv_transport_read_stop(s->t) != 0 ||
        ratchet_uv_transport_read_stop(s->t) != 0)
      s->bad++;
    s->stopped = 1;
    uv_timer_start(&p->timer, restart, 0, 0);
  }
}

static void pause_end(side *s, int err) {
  pausing *p = s->ctx;
  (void)err;
  uv_close((uv_handle_t *)&p->timer, NULL);
  side_close(s);
}

static void test_read_stop_start(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  int sp[2];
  make_socketpair(sp);
  side s = {0};
  pausing p = {0};
  uv_timer_init(&loop, &p.timer);
  p.timer.data = &s;
  s.ctx = &p;
  s.frame_hook = pause_every_ten;
  s.end_hook = pause_end;
  side_open(&loop, &s, sp[1], NULL);
  /* 100 frames in one write: they arrive in one read, so every stop leaves
   * frames behind in the transport's buffer. */
  uint8_t bytes[100 * 8];
  size_t n = 0;
  tu_msg m;
  for (uint64_t i = 1; i <= 100; i++)
    n += encode(tu_make_ping(&m, i), bytes + n, sizeof bytes - n);
  write_raw(sp[0], bytes, n);
  close(sp[0]);
  loop_done(&loop);
  assert_int_equal(s.frames, 100);
  assert_int_equal(s.bad, 0);
  assert_int_equal(p.restarts, 10); /* frames 10, 20, ... 100 */
  assert_int_equal(s.end_err, RATCHET_EEOF);
  assert_int_equal(s.closed, 1);
}

/* ---- close from callbacks, close with writes queued ------------------- */

static void close_at_three(side *s, const Ratchet__V1__Frame *f) {
  (void)f;
  if (s->frames == 3)
    side_close(s);
}

static void test_close_in_callback(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  int sp[2];
  make_socketpair(sp);
  side s = {0};
  s.frame_hook = close_at_three;
  side_open(&loop, &s, sp[1], NULL);
  uint8_t bytes[10 * 8];
  size_t n = 0;
  tu_msg m;
  for (uint64_t i = 1; i <= 10; i++)
    n += encode(tu_make_ping(&m, i), bytes + n, sizeof bytes - n);
  write_raw(sp[0], bytes, n);
  loop_done(&loop);
  assert_int_equal(s.frames, 3);
  assert_int_equal(s.ends, 0);
  assert_int_equal(s.closed, 1);
  close(sp[0]);
}

static void test_close_with_writes_queued(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  int sp[2];
  make_socketpair(sp);
  side s = {0};
  side_open(&loop, &s, sp[0], NULL);
  uint8_t *big = calloc(1, (size_t)1 << 20);
  assert_non_null(big);
  tu_msg m;
  for (int i = 0; i < 8; i++)
    assert_true(ratchet_uv_transport_send(
                    s.t, tu_make_task(&m, (uint64_t)i, big, (size_t)1 << 20)) >=
                0);
  assert_true(ratchet_uv_transport_queued(s.t) > 0);
  side_close(&s);
  loop_done(&loop);
  assert_int_equal(s.closed, 1);
  assert_int_equal(s.ends, 0);
  free(big);
  close(sp[1]);
}

/* ---- a peer that misbehaves ------------------------------------------- */

static void refused_after_end(side *s, int err) {
  tu_msg m;
  (void)err;
  if (ratchet_uv_transport_send(s->t, tu_make_ping(&m, 1)) != -EPIPE)
    s->bad++;
  if (ratchet_uv_transport_read_start(s->t) != -EPIPE)
    s->bad++;
  side_close(s);
}

/* The peer writes a good Ping, then `bad`, then another Ping; the
 * transport delivers the first, ends with err, and the peer reads an Error
 * frame with code. */
static void bad_peer(const uint8_t *bad, size_t len, size_t max, int err,
                     int shut_after, int code) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  int sp[2];
  make_socketpair(sp);
  side s = {0};
  s.end_hook = refused_after_end;
  ratchet_uv_transport_options o = RATCHET_UV_TRANSPORT_OPTIONS_INIT;
  o.max_frame_size = max;
  side_open(&loop, &s, sp[1], &o);
  uint8_t good[16];
  tu_msg m;
  size_t gn = encode(tu_make_ping(&m, 1), good, sizeof good);
  write_raw(sp[0], good, gn);
  write_raw(sp[0], bad, len);
  if (shut_after)
    shutdown(sp[0], SHUT_WR);
  else
    write_raw(sp[0], good, gn);
  loop_done(&loop);
  assert_int_equal(s.frames, 1);
  assert_int_equal(s.ends, 1);
  assert_int_equal(s.end_err, err);
  assert_int_equal(s.bad, 0);
  assert_int_equal(s.closed, 1);
  assert_int_equal(read_error_code(sp[0]), code);
  close(sp[0]);
}

static void test_bad_frames(void **state) {
  (void)state;
  static const uint8_t varint[11] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                     0xff, 0xff, 0xff, 0xff, 0x01};
  static const uint8_t too_big[] = {0x80, 0x20, 1, 2, 3};
  static const uint8_t garbage[] = {3, 0xff, 0xff, 0xff};
  static const uint8_t empty[] = {0};
  static const uint8_t half[] = {10, 0x08, 0x01, 0x12}; /* 4 of 10 bytes */
  static const uint8_t half_prefix[] = {0x80};
  const int frame = RATCHET__V1__ERROR_CODE__ERROR_FRAME;
  const int decode = RATCHET__V1__ERROR_CODE__ERROR_DECODE;
  bad_peer(varint, sizeof varint, 0, RATCHET_EFRAME_VARINT, 0, frame);
  bad_peer(too_big, sizeof too_big, 1024, RATCHET_EFRAME_TOO_BIG, 0, frame);
  bad_peer(garbage, sizeof garbage, 0, RATCHET_EFRAME_UNDECODABLE, 0, decode);
  bad_peer(empty, sizeof empty, 0, RATCHET_EFRAME_EMPTY, 0, decode);
  bad_peer(half, sizeof half, 0, RATCHET_EFRAME_TRUNCATED, 1, frame);
  bad_peer(half_prefix, sizeof half_prefix, 0, RATCHET_EFRAME_TRUNCATED, 1,
           frame);
}

/* A peer that sends Error: on_frame has it, then on_end(EPEER); nothing
 * after it is delivered, and no Error goes back. */
static void test_peer_error(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  int sp[2];
  make_socketpair(sp);
  side s = {0};
  side_open(&loop, &s, sp[1], NULL);
  ratchet_buf buf = RATCHET_BUF_INIT;
  assert_int_equal(
      ratchet_codec_encode_error(&buf, RATCHET_EPROTO_VERSION, "v2", 0), 0);
  tu_msg m;
  assert_int_equal(ratchet_codec_encode(&buf, tu_make_ping(&m, 1), 0), 0);
  write_raw(sp[0], buf.data, buf.len);
  ratchet_buf_free(&buf);
  loop_done(&loop);
  assert_int_equal(s.frames, 1);
  assert_int_equal(s.last, RATCHET__V1__FRAME__MSG_ERROR);
  assert_int_equal(s.end_err, RATCHET_EPEER);
  assert_int_equal(read_error_code(sp[0]), -1);
  close(sp[0]);
}

/* A clean end between frames, after frames: all delivered, then EEOF. */
static void test_eof_between_frames(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  int sp[2];
  make_socketpair(sp);
  side s = {0};
  s.frame_hook = count_in_order;
  side_open(&loop, &s, sp[1], NULL);
  uint8_t bytes[64];
  size_t n = 0;
  tu_msg m;
  for (uint64_t i = 1; i <= 3; i++)
    n += encode(tu_make_ping(&m, i), bytes + n, sizeof bytes - n);
  write_raw(sp[0], bytes, n);
  close(sp[0]);
  loop_done(&loop);
  assert_int_equal(s.frames, 3);
  assert_int_equal(s.bad, 0);
  assert_int_equal(s.ends, 1);
  assert_int_equal(s.end_err, RATCHET_EEOF);
}

/* ---- sending: refused frames, send_error, write errors ------------------ */

static void test_send_refused(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  int sp[2];
  make_socketpair(sp);
  side s = {0};
  ratchet_uv_transport_options o = RATCHET_UV_TRANSPORT_OPTIONS_INIT;
  o.max_frame_size = 64;
  side_open(&loop, &s, sp[0], &o);
  Ratchet__V1__Frame empty = RATCHET__V1__FRAME__INIT;
  uint8_t payload[100] = {0};
  tu_msg m;
  assert_int_equal(ratchet_uv_transport_send(s.t, &empty),
                   RATCHET_EFRAME_EMPTY);
  assert_int_equal(ratchet_uv_transport_send(
                       s.t, tu_make_task(&m, 1, payload, sizeof payload)),
                   RATCHET_EFRAME_TOO_BIG);
  assert_int_equal(ratchet_uv_transport_queued(s.t), 0);
  assert_int_equal(ratchet_uv_transport_set_send_limit(s.t, SIZE_MAX), -EINVAL);
  assert_int_equal(ratchet_uv_transport_set_send_limit(s.t, 1000), 0);
  assert_int_equal(ratchet_uv_transport_send(
                       s.t, tu_make_task(&m, 8, payload, sizeof payload)),
                   0);
  assert_int_equal(ratchet_uv_transport_send(s.t, tu_make_ping(&m, 9)), 0);
  assert_int_equal(
      ratchet_uv_transport_send_error(s.t, RATCHET_EPROTO_UNEXPECTED, "no"), 0);
  assert_int_equal(ratchet_uv_transport_send(s.t, tu_make_ping(&m, 10)),
                   -EPIPE);
  assert_int_equal(ratchet_uv_transport_send_error(s.t, RATCHET_EEOF, NULL),
                   -EPIPE);
  side_close(&s);
  loop_done(&loop);

  /* The peer got the Task, the Ping, then the Error. */
  ratchet_fd_transport *r;
  const Ratchet__V1__Frame *f;
  assert_int_equal(ratchet_fd_transport_new(sp[1], -1, NULL, &r), 0);
  assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
  assert_int_equal(f->task->id, 8);
  assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
  assert_int_equal(f->ping->seq, 9);
  assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
  assert_int_equal(f->error->code, RATCHET__V1__ERROR_CODE__ERROR_UNEXPECTED);
  assert_string_equal(f->error->text, "no");
  assert_int_equal(ratchet_fd_transport_recv(r, &f), RATCHET_EEOF);
  ratchet_fd_transport_free(r);
  close(sp[1]);
}

/* The peer's read side is gone: the write fails with EPIPE (no SIGPIPE
 * kills us: ignored, as the docs require), later sends return it, and the
 * read side still ends with its own reason, EEOF. */
static void test_write_error(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  int in[2], out[2];
  make_pipe(in);
  make_pipe(out);
  side s = {0};
  side_open2(&loop, &s, in[0], out[1]);
  close(out[0]);
  tu_msg m;
  /* libuv tries the write at once, and reports its failure from the loop. */
  assert_int_equal(ratchet_uv_transport_send(s.t, tu_make_ping(&m, 1)), 0);
  assert_true(ratchet_uv_transport_writable(s.t));
  assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 1);
  assert_false(ratchet_uv_transport_writable(s.t));
  assert_int_equal(ratchet_uv_transport_send(s.t, tu_make_ping(&m, 2)), -EPIPE);
  assert_int_equal(ratchet_uv_transport_send(s.t, tu_make_ping(&m, 3)), -EPIPE);
  assert_int_equal(s.ends, 0);
  close(in[1]);
  loop_done(&loop);
  assert_int_equal(s.ends, 1);
  assert_int_equal(s.end_err, RATCHET_EEOF);
  assert_int_equal(s.closed, 1);
}

/* ---- arguments and allocation failure ----------------------------------- */

static void test_arguments(void **state) {
  (void)state;
  uv_loop_t loop, other;
  uv_loop_init(&loop);
  uv_loop_init(&other);
  int p[2];
  make_pipe(p);
  uv_pipe_t r, w, w2;
  uv_pipe_init(&loop, &r, 0);
  uv_pipe_open(&r, p[0]);
  uv_pipe_init(&loop, &w, 0);
  uv_pipe_open(&w, p[1]);
  int fd2 = dup(p[1]);
  uv_pipe_init(&other, &w2, 0);
  uv_pipe_open(&w2, fd2);
  uv_stream_t *rs = (uv_stream_t *)&r, *ws = (uv_stream_t *)&w;
  ratchet_uv_transport *t = NULL;
  ratchet_uv_transport_options o = RATCHET_UV_TRANSPORT_OPTIONS_INIT;
  ratchet_uv_transport_callbacks no_end = {on_frame, NULL, NULL};
  r.data = w.data = &o; /* restored on failure */
  assert_int_equal(ratchet_uv_transport_new(NULL, ws, NULL, &cbs, NULL, &t),
                   -EINVAL);
  assert_int_equal(ratchet_uv_transport_new(rs, ws, NULL, &no_end, NULL, &t),
                   -EINVAL);
  assert_int_equal(ratchet_uv_transport_new(rs, ws, NULL, &cbs, NULL, NULL),
                   -EINVAL);
  assert_int_equal(ratchet_uv_transport_new(ws, rs, NULL, &cbs, NULL, &t),
                   -EINVAL); /* the write end cannot be read */
  assert_int_equal(
      ratchet_uv_transport_new(rs, (uv_stream_t *)&w2, NULL, &cbs, NULL, &t),
      -EINVAL); /* another loop */
  o.low_watermark = o.high_watermark;
  assert_int_equal(ratchet_uv_transport_new(rs, ws, &o, &cbs, NULL, &t),
                   -EINVAL);
  o = (ratchet_uv_transport_options)RATCHET_UV_TRANSPORT_OPTIONS_INIT;
  o.high_watermark = 0;
  o.low_watermark = 0;
  assert_int_equal(ratchet_uv_transport_new(rs, ws, &o, &cbs, NULL, &t),
                   -EINVAL);
  assert_null(t);

  /* Allocation failure at each step: -ENOMEM, nothing left behind, the
   * streams' data untouched; then it works. */
  int ok = 0;
  for (size_t budget = 0; budget < 16 && !ok; budget++) {
    tu_alloc_install(budget);
    int rc = ratchet_uv_transport_new(rs, ws, NULL, &cbs, NULL, &t);
    long live = tu_alloc_live();
    tu_alloc_uninstall();
    if (rc == 0) {
      ok = 1;
    } else {
      assert_int_equal(rc, -ENOMEM);
      assert_int_equal(live, 0);
      assert_ptr_equal(r.data, &o);
      assert_ptr_equal(w.data, &o);
    }
  }
  assert_true(ok);
  assert_int_equal(ratchet_uv_transport_send(NULL, NULL), -EINVAL);
  assert_int_equal(ratchet_uv_transport_read_stop(NULL), -EINVAL);
  ratchet_uv_transport_close(t, NULL);
  ratchet_uv_transport_close(NULL, NULL);
  uv_close((uv_handle_t *)&w2, NULL);
  loop_done(&loop);
  loop_done(&other);
}

int test_uv_transport(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_handshake),
      cmocka_unit_test(test_child_worker),
      cmocka_unit_test(test_slow_writer),
      cmocka_unit_test(test_flood_from_child),
      cmocka_unit_test(test_flood_backpressure),
      cmocka_unit_test(test_read_stop_start),
      cmocka_unit_test(test_close_in_callback),
      cmocka_unit_test(test_close_with_writes_queued),
      cmocka_unit_test(test_bad_frames),
      cmocka_unit_test(test_peer_error),
      cmocka_unit_test(test_eof_between_frames),
      cmocka_unit_test(test_send_refused),
      cmocka_unit_test(test_write_error),
      cmocka_unit_test(test_arguments),
  };
  return cmocka_run_group_tests_name("uv_transport", tests, tu_sigpipe_setup,
                                     tu_sigpipe_teardown);
}
