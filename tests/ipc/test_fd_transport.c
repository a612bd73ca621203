/*
 * test_fd_transport.c - the blocking transport over real pipes and
 * socketpairs: frames both ways, clean EOF between frames, a peer that stops
 * mid-frame, oversized and garbage frames (each answered with an Error frame
 * the peer can read), a writer that sends one byte at a time, a child that
 * floods thousands of frames, signals interrupting a blocked read and a
 * blocked write, descriptors left non-blocking, EPIPE without SIGPIPE on
 * pipes and sockets, the unpacker's steady state without allocation, and
 * allocation failure in the constructors.
 *
 * Children are this binary re-run with "--child NAME" (see testutil.c).
 * Nothing here depends on timing: children that must catch the parent
 * blocked wait until /proc says it sleeps, and the outcome is checked the
 * same way whether or not the signal landed inside the system call.
 */
#define _GNU_SOURCE /* pipe2, SOCK_CLOEXEC */

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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratchet/codec.h"
#include "ratchet/error.h"
#include "ratchet/transport.h"
#include "ipc_testutil.h"
#include "testutil.h"

#define BIG_PAYLOAD ((size_t)1 << 20)

/* ---- helpers ---------------------------------------------------------- */

static void make_pipe(int p[2]) {
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
}

static void make_socketpair(int s[2]) {
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
}

static void write_raw(int fd, const void *p, size_t n) {
  assert_int_equal(write(fd, p, n), (ssize_t)n);
}

static ratchet_fd_transport *make(int in, int out, size_t max) {
  ratchet_fd_transport_options o = RATCHET_FD_TRANSPORT_OPTIONS_INIT;
  o.max_frame_size = max;
  ratchet_fd_transport *t = NULL;
  assert_int_equal(ratchet_fd_transport_new(in, out, &o, &t), 0);
  assert_non_null(t);
  return t;
}

/* Reads the next frame from fd and checks that it is an Error with code. */
static void expect_error_frame(int fd, Ratchet__V1__ErrorCode code) {
  ratchet_fd_transport *t = make(fd, -1, 0);
  const Ratchet__V1__Frame *f;
  assert_int_equal(ratchet_fd_transport_recv(t, &f), 0);
  assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_ERROR);
  assert_int_equal(f->error->code, code);
  assert_true(strlen(f->error->text) > 0);
  ratchet_fd_transport_free(t);
}

/* The encoded bytes of a frame, for tests that cut frames apart. */
static size_t encode(const Ratchet__V1__Frame *f, uint8_t *dst, size_t cap) {
  size_t n = 0;
  assert_int_equal(ratchet_codec_write(f, 0, dst, cap, &n), 0);
  return n;
}

/* Waits until the parent sleeps in a system call, so that a signal sent
 * now interrupts it (the test passes either way; this makes the EINTR path
 * the one taken). Gives up after ~5 s rather than hang. */
static void wait_parent_blocked(void) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)getppid());
  for (int i = 0; i < 50000; i++) {
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
      return;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    if (rp != NULL && rp[1] == ' ' && rp[2] == 'S')
      return;
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
}

/* Waits until the parent has taken delivery of the process-directed
 * signal sig (it is no longer in /proc's ShdPnd mask). ~5 s at most. */
static void wait_parent_took(int sig) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)getppid());
  for (int i = 0; i < 50000; i++) {
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
      return;
    unsigned long long mask = ~0ull;
    while (fgets(line, sizeof line, fp) != NULL)
      if (sscanf(line, "ShdPnd: %llx", &mask) == 1)
        break;
    fclose(fp);
    if ((mask & (1ull << (sig - 1))) == 0)
      return;
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
}

static volatile sig_atomic_t usr1_count;

static void on_usr1(int sig) {
  (void)sig;
  usr1_count++;
}

/* SIGUSR1 without SA_RESTART: blocking calls fail with EINTR. */
static void catch_usr1(struct sigaction *old) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  usr1_count = 0;
  assert_int_equal(sigaction(SIGUSR1, &sa, old), 0);
}

/* ---- children --------------------------------------------------------- */

/* Writes argv[0] Ping frames (seq 1..n) to stdout one byte at a time. */
int tu_child_fd_slow_writer(int argc, char **argv) {
  int n = argc > 0 ? atoi(argv[0]) : 3;
  for (int i = 1; i <= n; i++) {
    tu_msg m;
    uint8_t buf[32];
    size_t len = 0;
    if (ratchet_codec_write(tu_make_ping(&m, (uint64_t)i), 0, buf, sizeof buf,
                            &len) != 0)
      return 1;
    for (size_t k = 0; k < len; k++) {
      if (write(1, buf + k, 1) != 1)
        return 1;
      struct timespec ts = {0, 200000};
      nanosleep(&ts, NULL);
    }
  }
  return 0;
}

/* Sends argv[0] Task frames, ids 0..n-1, payload i % 700 bytes of
 * tu_pattern(., i), as fast as the pipe takes them. */
int tu_child_fd_flood(int argc, char **argv) {
  int n = argc > 0 ? atoi(argv[0]) : 1000;
  ratchet_fd_transport *t;
  if (ratchet_fd_transport_new(-1, 1, NULL, &t) != 0)
    return 1;
  uint8_t payload[700];
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    tu_msg m;
    size_t len = (size_t)i % sizeof payload;
    tu_fill(payload, len, (uint64_t)i);
    rc = ratchet_fd_transport_send(t,
                                   tu_make_task(&m, (uint64_t)i, payload, len));
  }
  ratchet_fd_transport_free(t);
  return rc == 0 ? 0 : 1;
}

/* Waits for the parent to block (in its read), interrupts it with SIGUSR1,
 * and once the parent has taken the signal (its read failed with EINTR and
 * was retried), writes Ping{42}. */
int tu_child_fd_signal_write(int argc, char **argv) {
  (void)argc;
  (void)argv;
  wait_parent_blocked();
  kill(getppid(), SIGUSR1);
  wait_parent_took(SIGUSR1);
  wait_parent_blocked();
  ratchet_fd_transport *t;
  tu_msg m;
  if (ratchet_fd_transport_new(-1, 1, NULL, &t) != 0)
    return 1;
  int rc = ratchet_fd_transport_send(t, tu_make_ping(&m, 42));
  ratchet_fd_transport_free(t);
  return rc == 0 ? 0 : 1;
}

/* Reads one Task of BIG_PAYLOAD pattern bytes (seed 9) then expects EOF.
 * With argv[0] "signal", first waits for the parent to block (in its write,
 * the pipe being full) and interrupts it with SIGUSR1. Exit 0 if all was
 * as expected. */
int tu_child_fd_read_check(int argc, char **argv) {
  if (argc > 0 && strcmp(argv[0], "signal") == 0) {
    wait_parent_blocked();
    kill(getppid(), SIGUSR1);
  }
  ratchet_fd_transport *t;
  const Ratchet__V1__Frame *f;
  if (ratchet_fd_transport_new(0, -1, NULL, &t) != 0)
    return 1;
  int ok = ratchet_fd_transport_recv(t, &f) == 0 &&
           f->msg_case == RATCHET__V1__FRAME__MSG_TASK &&
           f->task->payload.len == BIG_PAYLOAD &&
           tu_check(f->task->payload.data, BIG_PAYLOAD, 9) &&
           ratchet_fd_transport_recv(t, &f) == RATCHET_EEOF;
  ratchet_fd_transport_free(t);
  return ok ? 0 : 1;
}

/* ---- tests ------------------------------------------------------------ */

static void test_frames_over_pipe(void **state) {
  (void)state;
  int p[2];
  make_pipe(p);
  ratchet_fd_transport *w = make(-1, p[1], 0), *r = make(p[0], -1, 0);
  uint8_t payload[256];
  tu_fill(payload, sizeof payload, 1);
  tu_msg m;

  /* A Task with a binary payload and metadata, a Ping, an empty Shutdown
   * and a Hello, in one go: several frames per read(2). */
  Ratchet__V1__Task__MetadataEntry e = RATCHET__V1__TASK__METADATA_ENTRY__INIT;
  e.key = (char *)"k\xc3\xa9y";
  e.value = (char *)"v";
  Ratchet__V1__Task__MetadataEntry *entries[] = {&e};
  tu_make_task(&m, 7, payload, sizeof payload);
  m.u.task.n_metadata = 1;
  m.u.task.metadata = entries;
  assert_int_equal(ratchet_fd_transport_send(w, &m.f), 0);
  assert_int_equal(ratchet_fd_transport_send(w, tu_make_ping(&m, 99)), 0);
  Ratchet__V1__Frame sf = RATCHET__V1__FRAME__INIT;
  Ratchet__V1__Shutdown sd = RATCHET__V1__SHUTDOWN__INIT;
  sf.msg_case = RATCHET__V1__FRAME__MSG_SHUTDOWN;
  sf.shutdown = &sd;
  assert_int_equal(ratchet_fd_transport_send(w, &sf), 0);

  const Ratchet__V1__Frame *f;
  assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
  assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_TASK);
  assert_int_equal(f->task->id, 7);
  assert_string_equal(f->task->kind, "echo");
  assert_int_equal(f->task->payload.len, sizeof payload);
  assert_memory_equal(f->task->payload.data, payload, sizeof payload);
  assert_int_equal(f->task->n_metadata, 1);
  assert_string_equal(f->task->metadata[0]->key, "k\xc3\xa9y");
  assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
  assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_PING);
  assert_int_equal(f->ping->seq, 99);
  assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
  assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_SHUTDOWN);

  /* The writer closes between frames: EEOF, and again. */
  ratchet_fd_transport_free(w);
  close(p[1]);
  assert_int_equal(ratchet_fd_transport_recv(r, &f), RATCHET_EEOF);
  assert_null(f);
  assert_int_equal(ratchet_fd_transport_recv(r, &f), RATCHET_EEOF);
  ratchet_fd_transport_free(r);
  close(p[0]);
}

static void test_socketpair_both_ways(void **state) {
  (void)state;
  int s[2];
  make_socketpair(s);
  ratchet_fd_transport *a = make(s[0], s[0], 0), *b = make(s[1], s[1], 0);
  tu_msg m;
  const Ratchet__V1__Frame *f;
  uint8_t payload[3] = {1, 2, 3};
  assert_int_equal(
      ratchet_fd_transport_send(a, tu_make_task(&m, 1, payload, 3)), 0);
  assert_int_equal(ratchet_fd_transport_recv(b, &f), 0);
  assert_int_equal(f->task->id, 1);

  /* Answer with the received payload itself: the borrowed frame stays
   * valid until the next recv. */
  Ratchet__V1__Frame rf = RATCHET__V1__FRAME__INIT;
  Ratchet__V1__Result res = RATCHET__V1__RESULT__INIT;
  res.id = f->task->id;
  res.status = RATCHET__V1__STATUS__STATUS_OK;
  res.output = f->task->payload;
  rf.msg_case = RATCHET__V1__FRAME__MSG_RESULT;
  rf.result = &res;
  assert_int_equal(ratchet_fd_transport_send(b, &rf), 0);
  assert_int_equal(ratchet_fd_transport_recv(a, &f), 0);
  assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_RESULT);
  assert_memory_equal(f->result->output.data, payload, 3);

  /* The peer goes away: a socket is written with MSG_NOSIGNAL, so EPIPE
   * comes back whatever SIGPIPE's disposition, and stays. */
  ratchet_fd_transport_free(b);
  close(s[1]);
  void (*old)(int) = signal(SIGPIPE, SIG_DFL);
  assert_int_equal(ratchet_fd_transport_send(a, tu_make_ping(&m, 1)), -EPIPE);
  assert_int_equal(ratchet_fd_transport_send(a, tu_make_ping(&m, 2)), -EPIPE);
  signal(SIGPIPE, old);
  assert_int_equal(ratchet_fd_transport_recv(a, &f), RATCHET_EEOF);
  ratchet_fd_transport_free(a);
  close(s[0]);
}

/* A peer that stops inside a frame (in the body, or in the prefix): the
 * frames before it arrive, then EFRAME_TRUNCATED, and the peer is told. */
static void test_truncated(void **state) {
  (void)state;
  for (int cut_in_prefix = 0; cut_in_prefix < 2; cut_in_prefix++) {
    int in[2], back[2];
    make_pipe(in);
    make_pipe(back);
    ratchet_fd_transport *r = make(in[0], back[1], 0);
    tu_msg m;
    uint8_t bytes[512], payload[200];
    tu_fill(payload, sizeof payload, 3);
    size_t n1 = encode(tu_make_ping(&m, 5), bytes, sizeof bytes);
    size_t n2 = encode(tu_make_task(&m, 6, payload, sizeof payload), bytes + n1,
                       sizeof bytes - n1);
    size_t cut = cut_in_prefix ? 1 : n2 / 2; /* prefix of 200+ is 2 bytes */
    write_raw(in[1], bytes, n1 + cut);
    close(in[1]);

    const Ratchet__V1__Frame *f;
    assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
    assert_int_equal(f->ping->seq, 5);
    assert_int_equal(ratchet_fd_transport_recv(r, &f),
                     RATCHET_EFRAME_TRUNCATED);
    assert_int_equal(ratchet_fd_transport_recv(r, &f),
                     RATCHET_EFRAME_TRUNCATED);
    expect_error_frame(back[0], RATCHET__V1__ERROR_CODE__ERROR_FRAME);
    ratchet_fd_transport_free(r);
    close(in[0]);
    close(back[0]);
    close(back[1]);
  }
}

/* Bytes that are not frames, each answered with an Error frame carrying
 * the right code, and a failed transport afterwards. */
static void test_bad_input(void **state) {
  (void)state;
  static const uint8_t varint[11] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                     0xff, 0xff, 0xff, 0xff, 0x01};
  static const uint8_t too_big[] = {0x80, 0x20}; /* 4096 > 1024 */
  static const uint8_t garbage[] = {3, 0xff, 0xff, 0xff};
  static const uint8_t empty[] = {0};
  static const uint8_t unknown[] = {3, 0xf8, 0x06, 0x01}; /* field 111 = 1 */
  static const struct {
    const uint8_t *bytes;
    size_t len;
    int err;
    Ratchet__V1__ErrorCode code;
  } cases[] = {
      {varint, sizeof varint, RATCHET_EFRAME_VARINT,
       RATCHET__V1__ERROR_CODE__ERROR_FRAME},
      {too_big, sizeof too_big, RATCHET_EFRAME_TOO_BIG,
       RATCHET__V1__ERROR_CODE__ERROR_FRAME},
      {garbage, sizeof garbage, RATCHET_EFRAME_UNDECODABLE,
       RATCHET__V1__ERROR_CODE__ERROR_DECODE},
      {empty, sizeof empty, RATCHET_EFRAME_EMPTY,
       RATCHET__V1__ERROR_CODE__ERROR_DECODE},
      {unknown, sizeof unknown, RATCHET_EFRAME_EMPTY,
       RATCHET__V1__ERROR_CODE__ERROR_DECODE},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int in[2], back[2];
    make_pipe(in);
    make_pipe(back);
    ratchet_fd_transport *r = make(in[0], back[1], 1024);
    tu_msg m;
    uint8_t good[32];
    write_raw(in[1], good, encode(tu_make_ping(&m, 1), good, sizeof good));
    write_raw(in[1], cases[i].bytes, cases[i].len);
    write_raw(in[1], good, encode(tu_make_ping(&m, 2), good, sizeof good));

    const Ratchet__V1__Frame *f;
    assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
    assert_int_equal(f->ping->seq, 1);
    assert_int_equal(ratchet_fd_transport_recv(r, &f), cases[i].err);
    assert_null(f);
    /* Final: the good frame after the bad one is never delivered. */
    assert_int_equal(ratchet_fd_transport_recv(r, &f), cases[i].err);
    expect_error_frame(back[0], cases[i].code);
    ratchet_fd_transport_free(r);
    close(in[0]);
    close(in[1]);
    close(back[0]);
    close(back[1]);
  }
}

/* An Error frame from the peer is an ordinary frame for the fd transport. */
static void test_peer_error_frame(void **state) {
  (void)state;
  int p[2];
  make_pipe(p);
  ratchet_fd_transport *w = make(-1, p[1], 0), *r = make(p[0], -1, 0);
  assert_int_equal(ratchet_fd_transport_send_error(w, RATCHET_EPROTO_VERSION,
                                                   "speaks 2, expected 1"),
                   0);
  const Ratchet__V1__Frame *f;
  assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
  assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_ERROR);
  assert_int_equal(f->error->code, RATCHET__V1__ERROR_CODE__ERROR_VERSION);
  assert_string_equal(f->error->text, "speaks 2, expected 1");
  ratchet_fd_transport_free(w);
  ratchet_fd_transport_free(r);
  close(p[0]);
  close(p[1]);
}

/* Frames that cannot be encoded are refused and nothing is written; the
 * transport stays usable. Misuse gets -EINVAL or -EBADF. */
static void test_send_refused(void **state) {
  (void)state;
  int p[2];
  make_pipe(p);
  ratchet_fd_transport *w = make(-1, p[1], 64), *r = make(p[0], -1, 0);
  Ratchet__V1__Frame empty = RATCHET__V1__FRAME__INIT;
  tu_msg m;
  uint8_t payload[100] = {0};
  assert_int_equal(ratchet_fd_transport_send(w, &empty), RATCHET_EFRAME_EMPTY);
  assert_int_equal(
      ratchet_fd_transport_send(w, tu_make_task(&m, 1, payload, 100)),
      RATCHET_EFRAME_TOO_BIG);
  assert_int_equal(ratchet_fd_transport_send(w, tu_make_ping(&m, 3)), 0);
  const Ratchet__V1__Frame *f;
  assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
  assert_int_equal(f->ping->seq, 3);
  /* The peer announced a larger limit: the same Task now goes. */
  assert_int_equal(ratchet_fd_transport_set_send_limit(w, 1000), 0);
  assert_int_equal(
      ratchet_fd_transport_send(w, tu_make_task(&m, 1, payload, 100)), 0);
  assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
  assert_int_equal(f->task->payload.len, 100);
  assert_int_equal(ratchet_fd_transport_set_send_limit(w, SIZE_MAX), -EINVAL);
  assert_int_equal(ratchet_fd_transport_set_send_limit(NULL, 0), -EINVAL);

  assert_int_equal(ratchet_fd_transport_send(r, tu_make_ping(&m, 1)), -EBADF);
  assert_int_equal(ratchet_fd_transport_recv(w, &f), -EBADF);
  assert_int_equal(ratchet_fd_transport_send(NULL, &m.f), -EINVAL);
  assert_int_equal(ratchet_fd_transport_recv(r, NULL), -EINVAL);
  ratchet_fd_transport *t = NULL;
  assert_int_equal(ratchet_fd_transport_new(-1, -1, NULL, &t), -EINVAL);
  assert_int_equal(ratchet_fd_transport_new(0, 1, NULL, NULL), -EINVAL);
  ratchet_fd_transport_free(NULL);
  ratchet_fd_transport_free(w);
  ratchet_fd_transport_free(r);
  close(p[0]);
  close(p[1]);
}

/* A pipe whose reader is gone: -EPIPE and no SIGPIPE, with the default
 * disposition (which would kill this process), and the signal mask and
 * pending signals as they were - including a SIGPIPE that was already
 * pending and is not ours to take. */
static void test_epipe_pipe(void **state) {
  (void)state;
  void (*old)(int) = signal(SIGPIPE, SIG_DFL);
  int p[2];
  make_pipe(p);
  close(p[0]);
  ratchet_fd_transport *w = make(-1, p[1], 0);
  tu_msg m;
  sigset_t before, after, pending;
  pthread_sigmask(SIG_SETMASK, NULL, &before);
  assert_int_equal(ratchet_fd_transport_send(w, tu_make_ping(&m, 1)), -EPIPE);
  assert_int_equal(ratchet_fd_transport_send(w, tu_make_ping(&m, 1)), -EPIPE);
  pthread_sigmask(SIG_SETMASK, NULL, &after);
  assert_int_equal(sigismember(&after, SIGPIPE), sigismember(&before, SIGPIPE));
  sigpending(&pending);
  assert_int_equal(sigismember(&pending, SIGPIPE), 0);
  ratchet_fd_transport_free(w);

  /* SIGPIPE blocked and already pending: still pending afterwards. */
  sigset_t pipe_set, old_mask;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
  raise(SIGPIPE);
  w = make(-1, p[1], 0);
  assert_int_equal(ratchet_fd_transport_send(w, tu_make_ping(&m, 1)), -EPIPE);
  sigpending(&pending);
  assert_int_equal(sigismember(&pending, SIGPIPE), 1);
  static const struct timespec zero = {0, 0};
  assert_int_equal(sigtimedwait(&pipe_set, NULL, &zero), SIGPIPE);
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
  ratchet_fd_transport_free(w);

  /* allow_sigpipe with SIGPIPE ignored: a plain write, still -EPIPE. */
  signal(SIGPIPE, SIG_IGN);
  ratchet_fd_transport_options o = RATCHET_FD_TRANSPORT_OPTIONS_INIT;
  o.allow_sigpipe = true;
  assert_int_equal(ratchet_fd_transport_new(-1, p[1], &o, &w), 0);
  assert_int_equal(ratchet_fd_transport_send(w, tu_make_ping(&m, 1)), -EPIPE);
  ratchet_fd_transport_free(w);
  signal(SIGPIPE, old);
  close(p[1]);
}

/* A child writes three frames one byte at a time: each recv gathers one
 * frame from many reads, in order, then EOF. */
static void test_slow_writer(void **state) {
  (void)state;
  int p[2];
  make_pipe(p);
  pid_t pid = tu_spawn_child("fd_slow_writer", "3", -1, p[1]);
  assert_true(pid > 0);
  close(p[1]);
  ratchet_fd_transport *r = make(p[0], -1, 0);
  const Ratchet__V1__Frame *f;
  for (uint64_t i = 1; i <= 3; i++) {
    assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
    assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_PING);
    assert_int_equal(f->ping->seq, i);
  }
  assert_int_equal(ratchet_fd_transport_recv(r, &f), RATCHET_EEOF);
  assert_int_equal(tu_wait(pid), 0);
  ratchet_fd_transport_free(r);
  close(p[0]);
}

/* A child floods 20,000 frames (about 7 MB, a hundred times the pipe's
 * buffer): all arrive, in order, intact; and once the buffers are warm,
 * receiving allocates nothing. */
static void test_flood(void **state) {
  (void)state;
  enum { N = 20000 };
  int p[2];
  make_pipe(p);
  pid_t pid = tu_spawn_child("fd_flood", "20000", -1, p[1]);
  assert_true(pid > 0);
  close(p[1]);
  ratchet_fd_transport *r = make(p[0], -1, 0);
  const Ratchet__V1__Frame *f;
  size_t allocs = 0;
  for (int i = 0; i < N; i++) {
    if (i == 1000)
      tu_alloc_install(SIZE_MAX);
    assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
    assert_int_equal(f->msg_case, RATCHET__V1__FRAME__MSG_TASK);
    assert_int_equal(f->task->id, (uint64_t)i);
    assert_int_equal(f->task->payload.len, (size_t)i % 700);
    assert_true(
        tu_check(f->task->payload.data, f->task->payload.len, (uint64_t)i));
  }
  allocs = tu_alloc_count();
  tu_alloc_uninstall();
  assert_int_equal(allocs, 0);
  assert_int_equal(ratchet_fd_transport_recv(r, &f), RATCHET_EEOF);
  assert_int_equal(tu_wait(pid), 0);
  ratchet_fd_transport_free(r);
  close(p[0]);
}

/* A signal interrupts recv blocked in read(2): recv goes on and returns the
 * frame that comes after. */
static void test_eintr_read(void **state) {
  (void)state;
  struct sigaction old;
  catch_usr1(&old);
  int p[2];
  make_pipe(p);
  pid_t pid = tu_spawn_child("fd_signal_write", NULL, -1, p[1]);
  assert_true(pid > 0);
  close(p[1]);
  ratchet_fd_transport *r = make(p[0], -1, 0);
  const Ratchet__V1__Frame *f;
  assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
  assert_int_equal(f->ping->seq, 42);
  assert_int_equal(ratchet_fd_transport_recv(r, &f), RATCHET_EEOF);
  assert_int_equal(tu_wait(pid), 0);
  assert_int_equal(usr1_count, 1);
  ratchet_fd_transport_free(r);
  close(p[0]);
  sigaction(SIGUSR1, &old, NULL);
}

/* A 1 MiB frame into a 64 KiB pipe: send blocks, is interrupted by a
 * signal (EINTR or a partial write), and goes on until the child has read
 * every byte intact. */
static void test_eintr_partial_write(void **state) {
  (void)state;
  struct sigaction old;
  catch_usr1(&old);
  int p[2];
  make_pipe(p);
  pid_t pid = tu_spawn_child("fd_read_check", "signal", p[0], -1);
  assert_true(pid > 0);
  close(p[0]);
  ratchet_fd_transport *w = make(-1, p[1], 0);
  uint8_t *payload = malloc(BIG_PAYLOAD);
  assert_non_null(payload);
  tu_fill(payload, BIG_PAYLOAD, 9);
  tu_msg m;
  assert_int_equal(
      ratchet_fd_transport_send(w, tu_make_task(&m, 1, payload, BIG_PAYLOAD)),
      0);
  ratchet_fd_transport_free(w);
  close(p[1]);
  assert_int_equal(tu_wait(pid), 0);
  assert_int_equal(usr1_count, 1);
  free(payload);
  sigaction(SIGUSR1, &old, NULL);
}

/* Descriptors someone made non-blocking: recv and send wait in poll(2)
 * instead of failing with EAGAIN. */
static void test_nonblocking_fds(void **state) {
  (void)state;
  int p[2];
  make_pipe(p);
  pid_t pid = tu_spawn_child("fd_slow_writer", "2", -1, p[1]);
  assert_true(pid > 0);
  close(p[1]);
  assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
  ratchet_fd_transport *r = make(p[0], -1, 0);
  const Ratchet__V1__Frame *f;
  assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
  assert_int_equal(f->ping->seq, 1);
  assert_int_equal(ratchet_fd_transport_recv(r, &f), 0);
  assert_int_equal(f->ping->seq, 2);
  assert_int_equal(ratchet_fd_transport_recv(r, &f), RATCHET_EEOF);
  assert_int_equal(tu_wait(pid), 0);
  ratchet_fd_transport_free(r);
  close(p[0]);

  make_pipe(p);
  pid = tu_spawn_child("fd_read_check", "nosignal", p[0], -1);
  assert_true(pid > 0);
  close(p[0]);
  assert_int_equal(fcntl(p[1], F_SETFL, O_NONBLOCK), 0);
  ratchet_fd_transport *w = make(-1, p[1], 0);
  uint8_t *payload = malloc(BIG_PAYLOAD);
  assert_non_null(payload);
  tu_fill(payload, BIG_PAYLOAD, 9);
  tu_msg m;
  assert_int_equal(
      ratchet_fd_transport_send(w, tu_make_task(&m, 1, payload, BIG_PAYLOAD)),
      0);
  ratchet_fd_transport_free(w);
  close(p[1]);
  assert_int_equal(tu_wait(pid), 0);
  free(payload);
}

/* The unpacker: a large frame grows its arena, later frames reuse it, a
 * run of small frames gives the memory back, and a warm unpacker allocates
 * nothing. */
static void test_unpacker(void **state) {
  (void)state;
  ratchet_unpacker *u;
  assert_int_equal(ratchet_unpacker_new(&u), 0);
  uint8_t *payload = malloc(BIG_PAYLOAD);
  uint8_t *bytes = malloc(BIG_PAYLOAD + 64);
  assert_non_null(payload);
  assert_non_null(bytes);
  tu_fill(payload, BIG_PAYLOAD, 4);
  tu_msg m;
  size_t n = encode(tu_make_task(&m, 3, payload, BIG_PAYLOAD), bytes,
                    BIG_PAYLOAD + 64);
  /* Skip the 3-byte prefix of a 1 MiB + few bytes body. */
  const Ratchet__V1__Frame *f;
  for (int round = 0; round < 3; round++) {
    if (round == 2)
      tu_alloc_install(SIZE_MAX);
    assert_int_equal(ratchet_unpacker_unpack(u, bytes + 3, n - 3, &f), 0);
    assert_int_equal(f->task->id, 3);
    assert_int_equal(f->task->payload.len, BIG_PAYLOAD);
    assert_true(tu_check(f->task->payload.data, BIG_PAYLOAD, 4));
  }
  assert_int_equal(tu_alloc_count(), 0); /* the third, warm, round */
  tu_alloc_uninstall();

  /* After a window of 64 small frames that follows the window holding the
   * large ones, the arena shrinks (one realloc); small frames work on. */
  uint8_t small[32];
  size_t sn = encode(tu_make_ping(&m, 8), small, sizeof small);
  tu_alloc_install(SIZE_MAX);
  for (int i = 0; i < 200; i++) {
    assert_int_equal(ratchet_unpacker_unpack(u, small + 1, sn - 1, &f), 0);
    assert_int_equal(f->ping->seq, 8);
  }
  assert_int_equal(tu_alloc_count(), 1);
  assert_true(tu_alloc_max_size() <= (64u << 10));
  tu_alloc_uninstall();

  assert_int_equal(ratchet_unpacker_unpack(u, "\xff", 1, &f),
                   RATCHET_EFRAME_UNDECODABLE);
  assert_null(f);
  assert_int_equal(ratchet_unpacker_unpack(u, NULL, 0, &f),
                   RATCHET_EFRAME_EMPTY);
  /* What the fuzzer found: field 0 hidden in an overlong tag (0x80 0x00),
   * inside a Hello and alone, is refused as the codec refuses it. */
  static const uint8_t field0_in_hello[] = {0x52, 0x05, 0x80, 0x00,
                                            0x01, 0x08, 0x03};
  static const uint8_t field0_alone[] = {0x80, 0x00, 0xd7, 0x00};
  assert_int_equal(
      ratchet_unpacker_unpack(u, field0_in_hello, sizeof field0_in_hello, &f),
      RATCHET_EFRAME_UNDECODABLE);
  assert_null(f);
  assert_int_equal(
      ratchet_unpacker_unpack(u, field0_alone, sizeof field0_alone, &f),
      RATCHET_EFRAME_EMPTY);
  assert_int_equal(ratchet_unpacker_unpack(u, NULL, 1, &f), -EINVAL);
  assert_int_equal(ratchet_unpacker_unpack(NULL, small, 1, &f), -EINVAL);
  assert_int_equal(ratchet_unpacker_new(NULL), -EINVAL);
  ratchet_unpacker_free(u);
  ratchet_unpacker_free(NULL);
  free(payload);
  free(bytes);
}

/* Allocation failure: every constructor fails cleanly with -ENOMEM at each
 * allocation it makes, and an unpack that cannot get memory says -ENOMEM. */
static void test_allocation_failure(void **state) {
  (void)state;
  int p[2];
  make_pipe(p);
  int ok = 0;
  for (size_t budget = 0; budget < 16 && !ok; budget++) {
    ratchet_fd_transport *t = NULL;
    tu_alloc_install(budget);
    int rc = ratchet_fd_transport_new(p[0], p[1], NULL, &t);
    long live = tu_alloc_live();
    ratchet_fd_transport_free(t);
    tu_alloc_uninstall();
    if (rc == 0) {
      ok = 1;
    } else {
      assert_int_equal(rc, -ENOMEM);
      assert_null(t);
      assert_int_equal(live, 0);
    }
  }
  assert_true(ok);

  ratchet_unpacker *u;
  assert_int_equal(ratchet_unpacker_new(&u), 0);
  uint8_t *payload = calloc(1, 8192), bytes[8300];
  assert_non_null(payload);
  tu_msg m;
  size_t n = encode(tu_make_task(&m, 1, payload, 8192), bytes, sizeof bytes);
  const Ratchet__V1__Frame *f;
  tu_alloc_install(0);
  assert_int_equal(ratchet_unpacker_unpack(u, bytes + 2, n - 2, &f), -ENOMEM);
  assert_null(f);
  tu_alloc_uninstall();
  assert_int_equal(ratchet_unpacker_unpack(u, bytes + 2, n - 2, &f), 0);
  assert_int_equal(f->task->payload.len, 8192);
  ratchet_unpacker_free(u);
  free(payload);
  close(p[0]);
  close(p[1]);
}

int test_fd_transport(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_frames_over_pipe),
      cmocka_unit_test(test_socketpair_both_ways),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_peer_error_frame),
      cmocka_unit_test(test_send_refused),
      cmocka_unit_test(test_epipe_pipe),
      cmocka_unit_test(test_slow_writer),
      cmocka_unit_test(test_flood),
      cmocka_unit_test(test_eintr_read),
      cmocka_unit_test(test_eintr_partial_write),
      cmocka_unit_test(test_nonblocking_fds),
      cmocka_unit_test(test_unpacker),
      cmocka_unit_test(test_allocation_failure),
  };
  return cmocka_run_group_tests_name("fd_transport", tests, NULL, NULL);
}
