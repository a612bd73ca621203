/*
 * test_interop.c - our frames against a protobuf implementation that is not
 * ours: Google's Python runtime (Debian's python3-protobuf), with the
 * ratchet_pb2 module that protoc --python_out generated at build time.
 *
 * Both directions: the C transports drive tests/ipc/python/echo_worker.py
 * (the uv transport as an orchestrator would, pipelining hundreds of tasks;
 * the fd transport for the handshake's refusal and bad frames), and
 * tests/ipc/python/py_client.py drives the C echo worker of
 * docs/examples/ipc_echo_worker.c (and, as a control, the Python worker)
 * through every scenario it knows. A missing interpreter, google.protobuf
 * or ratchet_pb2.py fails these tests: it is never a reason to skip them.
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
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "ratchet/codec.h"
#include "ratchet/error.h"
#include "ratchet/transport.h"
#include "ipc_testutil.h"
#include "testutil.h"

#define PYTHON    RATCHET_TEST_PYTHON
#define PY_WORKER RATCHET_TEST_PY_DIR "/echo_worker.py"
#define PY_CLIENT RATCHET_TEST_PY_DIR "/py_client.py"
#define PB2_DIR   RATCHET_TEST_PB2_DIR

/* ---- helpers ---------------------------------------------------------- */

/* Runs argv with stdout and stderr into a pipe; returns the exit status
 * and prints the output if it is not `want`. */
static int run(char *const argv[], int want) {
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  assert_true(devnull >= 0);
  pid_t pid = tu_spawn(argv, devnull, p[1]);
  close(devnull);
  if (pid < 0) {
    int e = errno;
    close(p[0]);
    close(p[1]);
    print_error("cannot run %s: %s\n", argv[0], strerror(e));
    return -1;
  }
  close(p[1]);
  char out[16384];
  size_t n = 0;
  ssize_t r;
  while ((r = read(p[0], out + n, sizeof out - 1 - n)) > 0 ||
         (r < 0 && errno == EINTR))
    if (r > 0)
      n += (size_t)r;
  out[n] = '\0';
  close(p[0]);
  int status = tu_wait(pid);
  if (status != want)
    print_error("%s exited %d:\n%s\n", argv[0], status, out);
  return status;
}

/* Starts the Python echo worker with pipes on its stdin and stdout. */
static pid_t start_py_worker(const char *max_frame, int *to, int *from) {
  int down[2], up[2];
  assert_int_equal(pipe2(down, O_CLOEXEC), 0);
  assert_int_equal(pipe2(up, O_CLOEXEC), 0);
  char *argv[] = {(char *)PYTHON,
                  (char *)PY_WORKER,
                  (char *)"--pb2-dir",
                  (char *)PB2_DIR,
                  (char *)"--max-frame-size",
                  (char *)max_frame,
                  NULL};
  pid_t pid = tu_spawn(argv, down[0], up[1]);
  int e = errno;
  close(down[0]);
  close(up[1]);
  if (pid < 0) {
    close(down[1]);
    close(up[0]);
    fail_msg("cannot start %s: %s", PYTHON, strerror(e));
  }
  *to = down[1];
  *from = up[0];
  return pid;
}

static const Ratchet__V1__Frame *make_hello(tu_msg *m, uint32_t version) {
  ratchet__v1__frame__init(&m->f);
  ratchet__v1__hello__init(&m->u.hello);
  m->u.hello.protocol_version = version;
  m->u.hello.orchestrator_version = (char *)"test-ipc";
  m->u.hello.max_frame_size = 64u << 20;
  m->u.hello.worker_id = 3;
  m->u.hello.pipeline_depth = 1000;
  m->f.msg_case = RATCHET__V1__FRAME__MSG_HELLO;
  m->f.hello = &m->u.hello;
  return &m->f;
}

/* ---- prerequisites ------------------------------------------------------ */

/* Fails, naming what is missing, rather than letting the other tests fail
 * with less to go on. */
static void test_prerequisites(void **state) {
  (void)state;
  if (access(PYTHON, X_OK) != 0)
    fail_msg("%s is missing: install python3 (cmake/install-deps.sh)", PYTHON);
  char *argv[] = {(char *)PYTHON, (char *)"-c",
                  (char *)"import google.protobuf", NULL};
  if (run(argv, 0) != 0)
    fail_msg("%s cannot import google.protobuf: install python3-protobuf "
             "(cmake/install-deps.sh)",
             PYTHON);
  if (access(PB2_DIR "/ratchet_pb2.py", R_OK) != 0)
    fail_msg("%s/ratchet_pb2.py is missing: protoc was not found when the "
             "build was configured (install protobuf-compiler)",
             PB2_DIR);
}

/* ---- Python drives C ---------------------------------------------------- */

static void test_py_client_drives_c_worker(void **state) {
  (void)state;
  char *argv[] = {(char *)PYTHON,
                  (char *)PY_CLIENT,
                  (char *)"--pb2-dir",
                  (char *)PB2_DIR,
                  (char *)RATCHET_TEST_ECHO_WORKER,
                  NULL};
  assert_int_equal(run(argv, 0), 0);
}

/* The control: the same scenarios against the Python worker, so a failure
 * above is the C side's and the worker below is held to the same rules. */
static void test_py_client_drives_py_worker(void **state) {
  (void)state;
  char *argv[] = {(char *)PYTHON,      (char *)PY_CLIENT,
                  (char *)"--pb2-dir", (char *)PB2_DIR,
                  (char *)"--",        (char *)PYTHON,
                  (char *)PY_WORKER,   (char *)"--pb2-dir",
                  (char *)PB2_DIR,     NULL};
  assert_int_equal(run(argv, 0), 0);
}

/* ---- C drives Python: the uv transport, as an orchestrator ---------- */

enum { TASKS = 500 };

typedef struct orch {
  ratchet_uv_transport *t;
  uv_pipe_t to, from;
  uv_process_t proc;
  uint8_t *big; /* task 1's payload, 1 MiB */
  int ready_ok;
  uint64_t results;
  uint64_t bad;
  int pong_ok;
  int ends;
  int end_err;
  int closed;
  int exited;
  int64_t exit_status;
} orch;

static size_t payload_len(uint64_t id) {
  return id == 1 ? (size_t)1 << 20 : (size_t)(id * 37 % 3000);
}

static void orch_frame(ratchet_uv_transport *t, const Ratchet__V1__Frame *f) {
  orch *o = ratchet_uv_transport_data(t);
  tu_msg m;
  uint8_t payload[3000];
  switch (f->msg_case) {
  case RATCHET__V1__FRAME__MSG_READY: {
    const Ratchet__V1__Ready *r = f->ready;
    o->ready_ok = r->protocol_version == 1 && r->n_kinds == 1 &&
                  strcmp(r->kinds[0], "echo") == 0 &&
                  strcmp(r->worker_name, "python-echo") == 0 &&
                  r->pid == (uint32_t)o->proc.pid;
    /* Every task at once: the transport queues, the worker answers as it
     * reads, and nobody blocks. */
    for (uint64_t id = 0; id < TASKS; id++) {
      size_t len = payload_len(id);
      if (id != 1)
        tu_fill(payload, len, id);
      if (ratchet_uv_transport_send(
              t, tu_make_task(&m, id, id == 1 ? o->big : payload, len)) < 0)
        o->bad++;
    }
    break;
  }
  case RATCHET__V1__FRAME__MSG_RESULT: {
    const Ratchet__V1__Result *r = f->result;
    uint64_t id = o->results++;
    if (r->id != id || r->status != RATCHET__V1__STATUS__STATUS_OK ||
        r->attempt != 1 || r->output.len != payload_len(id) ||
        !tu_check(r->output.data, r->output.len, id))
      o->bad++;
    if (o->results == TASKS &&
        ratchet_uv_transport_send(t, tu_make_ping(&m, 9)))
      o->bad++;
    break;
  }
  case RATCHET__V1__FRAME__MSG_PONG:
    o->pong_ok = f->pong->seq == 9 && f->pong->stats != NULL &&
                 f->pong->stats->tasks_done == TASKS;
    if (ratchet_uv_transport_send(t, tu_make_shutdown(&m)) != 0)
      o->bad++;
    break;
  default:
    o->bad++;
  }
}

static void orch_closed(void *data) {
  orch *o = data;
  o->closed++;
}

static void orch_end(ratchet_uv_transport *t, int err) {
  orch *o = ratchet_uv_transport_data(t);
  o->ends++;
  o->end_err = err;
  ratchet_uv_transport_close(t, orch_closed);
}

static void orch_exit(uv_process_t *p, int64_t status, int sig) {
  orch *o = p->data;
  (void)sig;
  o->exited = 1;
  o->exit_status = status;
  uv_close((uv_handle_t *)p, NULL);
}

static void test_uv_orchestrates_py_worker(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  orch o;
  memset(&o, 0, sizeof o);
  o.big = malloc((size_t)1 << 20);
  assert_non_null(o.big);
  tu_fill(o.big, (size_t)1 << 20, 1);
  uv_pipe_init(&loop, &o.to, 0);
  uv_pipe_init(&loop, &o.from, 0);
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
  stdio[0].data.stream = (uv_stream_t *)&o.to;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&o.from;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  char *argv[] = {(char *)PYTHON, (char *)PY_WORKER, (char *)"--pb2-dir",
                  (char *)PB2_DIR, NULL};
  uv_process_options_t po;
  memset(&po, 0, sizeof po);
  po.file = argv[0];
  po.args = argv;
  po.exit_cb = orch_exit;
  po.stdio = stdio;
  po.stdio_count = 3;
  o.proc.data = &o;
  int rc = uv_spawn(&loop, &o.proc, &po);
  if (rc != 0) {
    /* Close everything first: libuv keeps the loop in its SIGCHLD
     * handler's tree until uv_loop_close, and this loop is on the stack. */
    uv_close((uv_handle_t *)&o.proc, NULL); /* initialised even so */
    uv_close((uv_handle_t *)&o.to, NULL);
    uv_close((uv_handle_t *)&o.from, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(o.big);
    fail_msg("cannot start %s: %s", PYTHON, uv_strerror(rc));
  }
  static const ratchet_uv_transport_callbacks cbs = {orch_frame, orch_end,
                                                     NULL};
  assert_int_equal(ratchet_uv_transport_new((uv_stream_t *)&o.from,
                                            (uv_stream_t *)&o.to, NULL, &cbs,
                                            &o, &o.t),
                   0);
  tu_msg m;
  assert_int_equal(ratchet_uv_transport_send(o.t, make_hello(&m, 1)), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_true(o.ready_ok);
  assert_int_equal(o.results, TASKS);
  assert_int_equal(o.bad, 0);
  assert_true(o.pong_ok);
  assert_int_equal(o.ends, 1);
  assert_int_equal(o.end_err, RATCHET_EEOF);
  assert_int_equal(o.closed, 1);
  assert_int_equal(o.exited, 1);
  assert_int_equal(o.exit_status, 0);
  free(o.big);
}

/* ---- C drives Python: the fd transport ------------------------------ */

/* Metadata with UTF-8 keys and values, and every byte value in the
 * payload, through a blocking round trip. */
static void test_fd_round_trip_py_worker(void **state) {
  (void)state;
  int to, from;
  pid_t pid = start_py_worker("65536", &to, &from);
  ratchet_fd_transport *w, *r;
  assert_int_equal(ratchet_fd_transport_new(-1, to, NULL, &w), 0);
  assert_int_equal(ratchet_fd_transport_new(from, -1, NULL, &r), 0);
  const Ratchet__V1__Frame *f;
  tu_msg m;
  assert_int_equal(ratchet_fd_transport_send(w, make_hello(&m, 1)), 0);
  assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
  assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_READY);
  assert_int_equal(f->ready->max_frame_size, 65536);

  uint8_t payload[256];
  for (int i = 0; i < 256; i++)
    payload[i] = (uint8_t)i;
  Ratchet__V1__Task__MetadataEntry e1, e2;
  ratchet__v1__task__metadata_entry__init(&e1);
  ratchet__v1__task__metadata_entry__init(&e2);
  e1.key = (char *)"cl\xc3\xa9";
  e1.value = (char *)"\xe2\x9c\x93";
  e2.key = (char *)"empty";
  Ratchet__V1__Task__MetadataEntry *md[] = {&e1, &e2};
  tu_make_task(&m, 77, payload, sizeof payload);
  m.u.task.metadata = md;
  m.u.task.n_metadata = 2;
  m.u.task.deadline_unix_ms = UINT64_MAX;
  assert_int_equal(ratchet_fd_transport_send(w, &m.f), 0);
  assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
  assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_RESULT);
  assert_int_equal(f->result->id, 77);
  assert_int_equal(f->result->status, RATCHET__V1__STATUS__STATUS_OK);
  assert_int_equal(f->result->output.len, sizeof payload);
  assert_memory_equal(f->result->output.data, payload, sizeof payload);

  assert_int_equal(ratchet_fd_transport_send(w, tu_make_shutdown(&m)), 0);
  assert_int_equal(ratchet_fd_transport_recv(r, &f), RATCHET_EEOF);
  assert_int_equal(tu_wait(pid), 0);
  ratchet_fd_transport_free(w);
  ratchet_fd_transport_free(r);
  close(to);
  close(from);
}

/* The Python worker refuses what it must, with the Error frames our
 * transport reads: another major version; a frame over its limit; bytes
 * that are not a Frame. And it stops without answering our Error. */
static void test_py_worker_refuses(void **state) {
  (void)state;
  for (int scenario = 0; scenario < 4; scenario++) {
    int to, from;
    pid_t pid = start_py_worker("1024", &to, &from);
    ratchet_fd_transport *w, *r;
    assert_int_equal(ratchet_fd_transport_new(-1, to, NULL, &w), 0);
    assert_int_equal(ratchet_fd_transport_new(from, -1, NULL, &r), 0);
    const Ratchet__V1__Frame *f;
    tu_msg m;
    int want = -1;
    if (scenario == 0) {
      assert_int_equal(ratchet_fd_transport_send(w, make_hello(&m, 2)), 0);
      want = RATCHET__V1__ERROR_CODE__ERROR_VERSION;
    } else {
      assert_int_equal(ratchet_fd_transport_send(w, make_hello(&m, 1)), 0);
      assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
      assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_READY);
      if (scenario == 1) {
        static uint8_t big[5000];
        assert_int_equal(
            ratchet_fd_transport_send(w, tu_make_task(&m, 1, big, sizeof big)),
            0);
        want = RATCHET__V1__ERROR_CODE__ERROR_FRAME;
      } else if (scenario == 2) {
        static const uint8_t garbage[] = {3, 0xff, 0xff, 0xff};
        assert_int_equal(write(to, garbage, sizeof garbage), 4);
        want = RATCHET__V1__ERROR_CODE__ERROR_DECODE;
      } else {
        assert_int_equal(ratchet_fd_transport_send_error(
                             w, RATCHET_EPROTO_UNEXPECTED, "bye"),
                         0);
      }
    }
    if (want >= 0) {
      assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
      assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_ERROR);
      assert_int_equal(f->error->code, want);
    }
    assert_int_equal(ratchet_fd_transport_recv(r, &f), RATCHET_EEOF);
    assert_int_equal(tu_wait(pid), 1);
    ratchet_fd_transport_free(w);
    ratchet_fd_transport_free(r);
    close(to);
    close(from);
  }
}

int test_interop(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prerequisites),
      cmocka_unit_test(test_py_client_drives_c_worker),
      cmocka_unit_test(test_py_client_drives_py_worker),
      cmocka_unit_test(test_uv_orchestrates_py_worker),
      cmocka_unit_test(test_fd_round_trip_py_worker),
      cmocka_unit_test(test_py_worker_refuses),
  };
  return cmocka_run_group_tests_name("interop", tests, tu_sigpipe_setup,
                                     tu_sigpipe_teardown);
}
