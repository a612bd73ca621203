/*
 * ipc_echo_worker.c - a complete ratchet worker in C, serving the task kind
 * "echo" on its stdin and stdout with libratchet-ipc's blocking fd
 * transport. docs/ipc.md walks through it; the interop test drives it from
 * a Python client built on Google's protobuf runtime.
 *
 * It answers Hello with Ready (or with Error{ERROR_VERSION} and exit 1 if
 * the orchestrator speaks another major version), each Task with a Result
 * whose output is the payload, each Ping with a Pong, and exits 0 on
 * Shutdown or when stdin ends between frames. Anything out of order gets
 * Error{ERROR_UNEXPECTED} and exit 1; a bad frame gets its Error from the
 * transport and exit 1; a failed write (the orchestrator is gone) exits 111.
 *
 *   cc ipc_echo_worker.c $(pkg-config --cflags --libs ratchet-ipc)
 */
#define _POSIX_C_SOURCE 200809L /* getpid, clock_gettime */

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ratchet/codec.h>
#include <ratchet/error.h>
#include <ratchet/transport.h>

enum { EXIT_PROTOCOL = 1, EXIT_SYSTEM = 111 };

/* protobuf-c's string fields are `char *`: strings we send live in arrays
 * rather than in string literals, which are const. */
static char kind_echo[] = "echo";
static char worker_version[] = "0.1.0";
static char worker_name[] = "c-echo";
static char unknown_kind[] = "this worker serves only the kind \"echo\"";

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Sends frame; a worker that cannot write has lost its orchestrator. */
static void send_or_exit(ratchet_fd_transport *t, Ratchet__V1__Frame *f) {
  int rc = ratchet_fd_transport_send(t, f);
  if (rc < 0) {
    fprintf(stderr, "echo-worker: send: %s\n", ratchet_strerror(rc));
    ratchet_fd_transport_free(t);
    _exit(EXIT_SYSTEM);
  }
}

static int answer_hello(ratchet_fd_transport *t, const Ratchet__V1__Hello *h) {
  char text[RATCHET_CODEC_TEXT_MAX];
  if (ratchet_codec_check_hello(h, text, sizeof text) != 0) {
    ratchet_fd_transport_send_error(t, RATCHET_EPROTO_VERSION, text);
    return EXIT_PROTOCOL;
  }
  /* Never send the orchestrator more than it said it reads. */
  ratchet_fd_transport_set_send_limit(
      t, ratchet_codec_frame_limit(h->max_frame_size));
  static char *kinds[] = {kind_echo};
  /* The generated _init functions rather than the _INIT macros: these cast
   * the const away from their default strings, which -Wcast-qual refuses. */
  Ratchet__V1__Ready ready;
  ratchet__v1__ready__init(&ready);
  ready.protocol_version = RATCHET_PROTOCOL_VERSION;
  ready.worker_version = worker_version;
  ready.pid = (uint32_t)getpid();
  ready.n_kinds = 1;
  ready.kinds = kinds;
  ready.max_frame_size = RATCHET_FRAME_MAX_DEFAULT;
  ready.max_in_flight = 1; /* one task at a time, answered in order */
  ready.worker_name = worker_name;
  Ratchet__V1__Frame out = RATCHET__V1__FRAME__INIT;
  out.msg_case = RATCHET__V1__FRAME__MSG_READY;
  out.ready = &ready;
  send_or_exit(t, &out);
  return 0;
}

static void answer_task(ratchet_fd_transport *t, const Ratchet__V1__Task *task,
                        uint64_t *done) {
  Ratchet__V1__Result res;
  ratchet__v1__result__init(&res);
  res.id = task->id;
  res.attempt = task->attempt;
  if (strcmp(task->kind, "echo") == 0) {
    res.status = RATCHET__V1__STATUS__STATUS_OK;
    res.output = task->payload; /* borrowed from the received frame */
  } else {
    res.status = RATCHET__V1__STATUS__STATUS_UNKNOWN_KIND;
    res.error = unknown_kind;
  }
  Ratchet__V1__Frame out = RATCHET__V1__FRAME__INIT;
  out.msg_case = RATCHET__V1__FRAME__MSG_RESULT;
  out.result = &res;
  send_or_exit(t, &out);
  ++*done;
}

static void answer_ping(ratchet_fd_transport *t, const Ratchet__V1__Ping *ping,
                        uint64_t done, uint64_t started_ms) {
  Ratchet__V1__WorkerStats stats = RATCHET__V1__WORKER_STATS__INIT;
  stats.tasks_done = done;
  stats.uptime_ms = now_ms() - started_ms;
  Ratchet__V1__Pong pong = RATCHET__V1__PONG__INIT;
  pong.seq = ping->seq;
  pong.stats = &stats;
  Ratchet__V1__Frame out = RATCHET__V1__FRAME__INIT;
  out.msg_case = RATCHET__V1__FRAME__MSG_PONG;
  out.pong = &pong;
  send_or_exit(t, &out);
}

int main(void) {
  uint64_t started_ms = now_ms(), done = 0;
  /* A write to an orchestrator that is gone then fails with EPIPE, which
   * ends the loop below, instead of killing us with SIGPIPE; and the
   * transport needs no signal masking around its writes. */
  signal(SIGPIPE, SIG_IGN);
  ratchet_fd_transport *t;
  int rc = ratchet_fd_transport_new(0, 1, NULL, &t);
  if (rc < 0) {
    fprintf(stderr, "echo-worker: %s\n", ratchet_strerror(rc));
    return EXIT_SYSTEM;
  }
  int status = -1, greeted = 0;
  const Ratchet__V1__Frame *in;
  while (status < 0 && (rc = ratchet_fd_transport_recv(t, &in)) == 0) {
    Ratchet__V1__Frame__MsgCase c = in->msg_case;
    if (c == RATCHET__V1__FRAME__MSG_HELLO && !greeted) {
      greeted = 1;
      if ((rc = answer_hello(t, in->hello)) != 0)
        status = rc;
    } else if (c == RATCHET__V1__FRAME__MSG_ERROR) {
      fprintf(stderr, "echo-worker: orchestrator error: %s\n", in->error->text);
      status = EXIT_PROTOCOL; /* it closes next; no answer */
    } else if (!greeted) {
      ratchet_fd_transport_send_error(t, RATCHET_EPROTO_UNEXPECTED,
                                      "expected Hello first");
      status = EXIT_PROTOCOL;
    } else if (c == RATCHET__V1__FRAME__MSG_TASK) {
      answer_task(t, in->task, &done);
    } else if (c == RATCHET__V1__FRAME__MSG_PING) {
      answer_ping(t, in->ping, done, started_ms);
    } else if (c == RATCHET__V1__FRAME__MSG_CANCEL) {
      /* Tasks are answered before the next frame is read: nothing to do. */
    } else if (c == RATCHET__V1__FRAME__MSG_SHUTDOWN) {
      status = 0;
    } else {
      char text[64];
      snprintf(text, sizeof text, "unexpected %s", ratchet_codec_msg_name(c));
      ratchet_fd_transport_send_error(t, RATCHET_EPROTO_UNEXPECTED, text);
      status = EXIT_PROTOCOL;
    }
  }
  if (status < 0) {
    /* recv failed: a clean EOF is a normal end; for a bad frame the
     * transport has already sent the Error. */
    if (rc != RATCHET_EEOF)
      fprintf(stderr, "echo-worker: %s\n", ratchet_strerror(rc));
    status = rc == RATCHET_EEOF ? 0 : EXIT_PROTOCOL;
  }
  ratchet_fd_transport_free(t);
  return status;
}
