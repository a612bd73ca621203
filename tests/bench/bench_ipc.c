/*
 * bench_ipc.c - libratchet-ipc's costs, next to what they ride on.
 *
 * 1. Encode + decode of one Task frame with a 64 B, 4 KiB and 1 MiB
 *    payload: ratchet_codec_encode into a reused buffer, then the
 *    incremental decoder and the transports' unpacker (arena). Frames/s and
 *    MB/s of frame bytes (1 MB = 10^6 bytes), best of several runs. For
 *    scale, the same decode through ratchet_codec_unpack, which allocates
 *    every field with the allocator and frees it again.
 * 2. The round trip of a small frame (a 9-byte Ping/Pong) over two real
 *    pipes between this process and a forked child: a raw write/read
 *    ping-pong of the same number of bytes, then the blocking fd transport
 *    on both sides, the same with SIGPIPE left at its default (the
 *    transport then masks it around every write), and the libuv transport
 *    (the orchestrator's side) against the fd transport (a worker). Median
 *    of runs interleaved across the modes; the overhead is ours minus raw.
 *
 * Allocations in the timed part are counted through ratchet's allocator
 * hook and glibc's mallinfo2(); the steady state must allocate nothing, and
 * the program exits 1 if it does (the codec_unpack row is exempt: that is
 * its point). Usage: bench-ipc [ROUND_TRIPS >= 1000, default 20000].
 */
#define _GNU_SOURCE /* mallinfo2, pipe2 */

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include <ratchet/alloc.h>
#include <ratchet/clock.h>
#include <ratchet/codec.h>
#include <ratchet/error.h>
#include <ratchet/frame.h>
#include <ratchet/transport.h>

#define RUNS 5

static atomic_size_t hook_allocs;

static void *count_malloc(size_t n) {
  atomic_fetch_add(&hook_allocs, 1);
  return malloc(n);
}
static void *count_realloc(void *p, size_t n) {
  atomic_fetch_add(&hook_allocs, 1);
  return realloc(p, n);
}
static void *count_calloc(size_t c, size_t n) {
  atomic_fetch_add(&hook_allocs, 1);
  return calloc(c, n);
}

static int failed;

static void die(const char *what, int err) {
  fprintf(stderr, "bench-ipc: %s: %s\n", what, ratchet_strerror(err));
  exit(1);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* ---- 1. encode + decode ------------------------------------------------ */

typedef struct codec_ctx {
  Ratchet__V1__Frame frame;
  Ratchet__V1__Task task;
  ratchet_buf buf;
  ratchet_frame_decoder *dec;
  ratchet_unpacker *unpacker;
  int use_codec_unpack;
  size_t payload_len;
  uint64_t checked;
} codec_ctx;

static int on_body(void *p, const uint8_t *body, size_t len) {
  codec_ctx *c = p;
  if (c->use_codec_unpack) {
    Ratchet__V1__Frame *f;
    int rc = ratchet_codec_unpack(body, len, &f);
    if (rc < 0)
      return rc;
    c->checked += f->task->payload.len == c->payload_len;
    ratchet_codec_frame_free(f);
    return 0;
  }
  const Ratchet__V1__Frame *f;
  int rc = ratchet_unpacker_unpack(c->unpacker, body, len, &f);
  if (rc < 0)
    return rc;
  c->checked += f->task->payload.len == c->payload_len;
  return 0;
}

static void codec_round(codec_ctx *c, uint64_t iters) {
  for (uint64_t i = 0; i < iters; i++) {
    ratchet_buf_reset(&c->buf);
    int rc = ratchet_codec_encode(&c->buf, &c->frame, 0);
    if (rc == 0)
      rc = ratchet_frame_decoder_feed(c->dec, c->buf.data, c->buf.len, on_body,
                                      c, NULL);
    if (rc < 0)
      die("encode/decode", rc);
  }
}

static void bench_codec(size_t payload_len, uint64_t iters,
                        int use_codec_unpack) {
  codec_ctx c;
  memset(&c, 0, sizeof c);
  uint8_t *payload = malloc(payload_len);
  if (payload == NULL)
    die("payload", -ENOMEM);
  for (size_t i = 0; i < payload_len; i++)
    payload[i] = (uint8_t)(i * 131);
  ratchet__v1__frame__init(&c.frame);
  ratchet__v1__task__init(&c.task);
  static char kind[] = "echo";
  c.task.id = 123456789;
  c.task.attempt = 1;
  c.task.kind = kind;
  c.task.payload.data = payload;
  c.task.payload.len = payload_len;
  c.frame.msg_case = RATCHET__V1__FRAME__MSG_TASK;
  c.frame.task = &c.task;
  c.payload_len = payload_len;
  c.use_codec_unpack = use_codec_unpack;
  int rc = ratchet_frame_decoder_new(0, &c.dec);
  if (rc == 0)
    rc = ratchet_unpacker_new(&c.unpacker);
  if (rc < 0)
    die("setup", rc);

  codec_round(&c, iters / 10 + 1); /* warm up: buffers reach their size */
  double best = 1e30;
  size_t allocs = 0;
  long heap = 0;
  for (int run = 0; run < RUNS; run++) {
    size_t a0 = atomic_load(&hook_allocs);
    struct mallinfo2 m0 = mallinfo2();
    uint64_t t0 = ratchet_now_ns();
    codec_round(&c, iters);
    uint64_t t1 = ratchet_now_ns();
    struct mallinfo2 m1 = mallinfo2();
    allocs += atomic_load(&hook_allocs) - a0;
    heap += (long)m1.uordblks - (long)m0.uordblks;
    double s = (double)(t1 - t0) / 1e9;
    if (s < best)
      best = s;
  }
  if (c.checked != (iters / 10 + 1) + iters * RUNS)
    die("decoded frames do not match", -EIO);
  double fps = (double)iters / best;
  double mbps = fps * (double)c.buf.len / 1e6;
  char size[32];
  if (payload_len >= (1u << 20))
    snprintf(size, sizeof size, "%zu MiB", payload_len >> 20);
  else if (payload_len >= 1024)
    snprintf(size, sizeof size, "%zu KiB", payload_len >> 10);
  else
    snprintf(size, sizeof size, "%zu B", payload_len);
  printf("%-8s %-22s %12.0f %10.1f %9.3f %7zu %8ld%s\n", size,
         use_codec_unpack ? "codec_unpack (malloc)" : "unpacker (arena)", fps,
         mbps, 1e6 / fps, allocs, heap,
         !use_codec_unpack && (allocs != 0 || heap != 0) ? "  <- allocates!"
                                                         : "");
  if (!use_codec_unpack && (allocs != 0 || heap != 0))
    failed = 1;
  ratchet_buf_free(&c.buf);
  ratchet_frame_decoder_free(c.dec);
  ratchet_unpacker_free(c.unpacker);
  free(payload);
}

/* ---- 2. round trips over pipes ------------------------------------------ */

enum mode { RAW, FD, FD_SIGPIPE, UV, NMODES };

static const char *const mode_names[NMODES] = {
    "raw write/read (the pipe itself)",
    "fd transport <-> fd transport",
    "fd <-> fd, SIGPIPE not ignored",
    "uv transport <-> fd transport",
};

#define SEQ0 ((uint64_t)1 << 28) /* 5-byte varints: a constant frame size */

static Ratchet__V1__Frame *make_ping(Ratchet__V1__Frame *f,
                                     Ratchet__V1__Ping *p, uint64_t seq) {
  ratchet__v1__frame__init(f);
  ratchet__v1__ping__init(p);
  p->seq = seq;
  f->msg_case = RATCHET__V1__FRAME__MSG_PING;
  f->ping = p;
  return f;
}

static int read_full(int fd, uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r <= 0) {
      if (r < 0 && errno == EINTR)
        continue;
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The child: echoes raw bytes (RAW), or answers each Ping with a Pong of
 * the same seq through the fd transport (the other modes), until EOF. */
static int child_main(enum mode m, int in, int out, size_t frame_len) {
  if (m == RAW) {
    uint8_t buf[64];
    while (read_full(in, buf, frame_len) == 0)
      if (write_full(out, buf, frame_len) < 0)
        return 1;
    return 0;
  }
  ratchet_fd_transport *t;
  if (ratchet_fd_transport_new(in, out, NULL, &t) < 0)
    return 1;
  const Ratchet__V1__Frame *f;
  int rc;
  while ((rc = ratchet_fd_transport_recv(t, &f)) == 0) {
    Ratchet__V1__Frame pf = RATCHET__V1__FRAME__INIT;
    Ratchet__V1__Pong pong = RATCHET__V1__PONG__INIT;
    pong.seq = f->ping->seq;
    pf.msg_case = RATCHET__V1__FRAME__MSG_PONG;
    pf.pong = &pong;
    if (ratchet_fd_transport_send(t, &pf) < 0)
      break;
  }
  ratchet_fd_transport_free(t);
  return rc == RATCHET_EEOF ? 0 : 1;
}

typedef struct rt {
  uint64_t n; /* round trips to time, after `warm` untimed ones */
  uint64_t warm;
  uint64_t done;
  uint64_t t0, t1;
  size_t a0, a1; /* hook allocations at t0, t1 */
  size_t m0, m1; /* mallinfo2().uordblks at t0, t1 */
  int bad;
  ratchet_uv_transport *t;
} rt;

static void rt_mark(rt *r, int end) {
  if (!end) {
    r->a0 = atomic_load(&hook_allocs);
    r->m0 = mallinfo2().uordblks;
    r->t0 = ratchet_now_ns();
  } else {
    r->t1 = ratchet_now_ns();
    r->a1 = atomic_load(&hook_allocs);
    r->m1 = mallinfo2().uordblks;
  }
}

static void uv_pong(ratchet_uv_transport *t, const Ratchet__V1__Frame *f) {
  rt *r = ratchet_uv_transport_data(t);
  if (f->msg_case != RATCHET__V1__FRAME__MSG_PONG ||
      f->pong->seq != SEQ0 + r->done)
    r->bad = 1;
  r->done++;
  if (r->done == r->warm)
    rt_mark(r, 0);
  if (r->done == r->warm + r->n) {
    rt_mark(r, 1);
    ratchet_uv_transport_close(t, NULL);
    return;
  }
  Ratchet__V1__Frame pf;
  Ratchet__V1__Ping ping;
  if (ratchet_uv_transport_send(t, make_ping(&pf, &ping, SEQ0 + r->done)) < 0)
    r->bad = 1;
}

static void uv_end(ratchet_uv_transport *t, int err) {
  rt *r = ratchet_uv_transport_data(t);
  (void)err;
  r->bad = 1;
  ratchet_uv_transport_close(t, NULL);
}

/* One run of mode m: forks the child, does warm + n round trips. */
static void round_trips(enum mode m, rt *r, size_t frame_len,
                        const uint8_t *frame_bytes) {
  int down[2], up[2];
  if (pipe2(down, O_CLOEXEC) < 0 || pipe2(up, O_CLOEXEC) < 0)
    die("pipe", -errno);
  if (m == FD_SIGPIPE)
    signal(SIGPIPE, SIG_DFL);
  pid_t pid = fork();
  if (pid < 0)
    die("fork", -errno);
  if (pid == 0) {
    close(down[1]);
    close(up[0]);
    _exit(child_main(m, down[0], up[1], frame_len));
  }
  close(down[0]);
  close(up[1]);
  r->done = 0;
  r->bad = 0;
  if (m == RAW) {
    uint8_t buf[64];
    for (uint64_t i = 0; i < r->warm + r->n; i++) {
      if (i == r->warm)
        rt_mark(r, 0);
      if (write_full(down[1], frame_bytes, frame_len) < 0 ||
          read_full(up[0], buf, frame_len) < 0)
        r->bad = 1;
    }
    rt_mark(r, 1);
    close(down[1]);
    close(up[0]);
  } else if (m == FD || m == FD_SIGPIPE) {
    ratchet_fd_transport *w, *rd;
    if (ratchet_fd_transport_new(-1, down[1], NULL, &w) < 0 ||
        ratchet_fd_transport_new(up[0], -1, NULL, &rd) < 0)
      die("fd transport", -ENOMEM);
    for (uint64_t i = 0; i < r->warm + r->n; i++) {
      if (i == r->warm)
        rt_mark(r, 0);
      Ratchet__V1__Frame pf;
      Ratchet__V1__Ping ping;
      const Ratchet__V1__Frame *f;
      if (ratchet_fd_transport_send(w, make_ping(&pf, &ping, SEQ0 + i)) < 0 ||
          ratchet_fd_transport_recv(rd, &f) < 0 || f->pong->seq != SEQ0 + i)
        r->bad = 1;
    }
    rt_mark(r, 1);
    ratchet_fd_transport_free(w);
    ratchet_fd_transport_free(rd);
    close(down[1]);
    close(up[0]);
  } else {
    uv_loop_t loop;
    uv_pipe_t from, to;
    uv_loop_init(&loop);
    uv_pipe_init(&loop, &from, 0);
    uv_pipe_init(&loop, &to, 0);
    uv_pipe_open(&from, up[0]);
    uv_pipe_open(&to, down[1]);
    static const ratchet_uv_transport_callbacks cbs = {uv_pong, uv_end, NULL};
    int rc = ratchet_uv_transport_new((uv_stream_t *)&from, (uv_stream_t *)&to,
                                      NULL, &cbs, r, &r->t);
    if (rc < 0)
      die("uv transport", rc);
    Ratchet__V1__Frame pf;
    Ratchet__V1__Ping ping;
    if (r->warm == 0)
      rt_mark(r, 0);
    rc = ratchet_uv_transport_send(r->t, make_ping(&pf, &ping, SEQ0));
    if (rc < 0)
      die("send", rc);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop); /* closing the transport closed the pipes */
  }
  int status;
  waitpid(pid, &status, 0);
  if (m == FD_SIGPIPE)
    signal(SIGPIPE, SIG_IGN);
  if (r->bad || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    die(mode_names[m], -EIO);
}

int main(int argc, char **argv) {
  uint64_t n = 20000;
  if (argc > 1) {
    char *end;
    unsigned long long v = strtoull(argv[1], &end, 10);
    if (*end != '\0' || v < 1000) {
      fprintf(stderr, "usage: bench-ipc [ROUND_TRIPS >= 1000]\n");
      return 100;
    }
    n = v;
  }
  /* A worker pool's orchestrator ignores SIGPIPE (libuv needs it); the fd
   * transport then writes pipes with no signal masking. */
  signal(SIGPIPE, SIG_IGN);
  ratchet_replace_allocator(count_malloc, count_realloc, count_calloc, free);

  printf("libratchet-ipc: encode + decode of one Task frame, best of %d "
         "runs\n\n",
         RUNS);
  printf("%-8s %-22s %12s %10s %9s %7s %8s\n", "payload", "decode through",
         "frames/s", "MB/s", "us/frame", "allocs", "heap B");
  static const struct {
    size_t len;
    uint64_t iters;
  } sizes[] = {{64, 500000}, {4096, 100000}, {1u << 20, 400}};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    bench_codec(sizes[i].len, sizes[i].iters, 0);
    bench_codec(sizes[i].len, sizes[i].iters, 1);
  }

  Ratchet__V1__Frame pf;
  Ratchet__V1__Ping ping;
  uint8_t frame_bytes[64];
  size_t frame_len = 0;
  int rc = ratchet_codec_write(make_ping(&pf, &ping, SEQ0), 0, frame_bytes,
                               sizeof frame_bytes, &frame_len);
  if (rc < 0)
    die("encode", rc);
  printf("\nround trip of a %zu-byte frame over two pipes to a forked child, "
         "median of %d runs of %llu\n\n",
         frame_len, RUNS, (unsigned long long)n);
  printf("%-34s %10s %10s %9s %7s %8s\n", "mode", "us/trip", "trips/s",
         "overhead", "allocs", "heap B");
  double us[NMODES][RUNS];
  size_t allocs[NMODES] = {0};
  long heap[NMODES] = {0};
  for (int run = 0; run < RUNS; run++) {
    for (int m = 0; m < NMODES; m++) {
      rt r;
      memset(&r, 0, sizeof r);
      r.n = n;
      r.warm = 1000;
      round_trips((enum mode)m, &r, frame_len, frame_bytes);
      us[m][run] = (double)(r.t1 - r.t0) / 1e3 / (double)n;
      allocs[m] += r.a1 - r.a0;
      heap[m] += (long)r.m1 - (long)r.m0;
    }
  }
  double raw = 0;
  for (int m = 0; m < NMODES; m++) {
    qsort(us[m], RUNS, sizeof us[m][0], cmp_double);
    double med = us[m][RUNS / 2];
    if (m == RAW)
      raw = med;
    char over[32] = "";
    if (m != RAW)
      snprintf(over, sizeof over, "%+.2f us", med - raw);
    printf("%-34s %10.2f %10.0f %9s %7zu %8ld%s\n", mode_names[m], med,
           1e6 / med, over, allocs[m], heap[m],
           allocs[m] != 0 || heap[m] != 0 ? "  <- allocates!" : "");
    if (allocs[m] != 0 || heap[m] != 0)
      failed = 1;
  }
  printf("\noverhead = ratchet's median minus the raw median: encoding, "
         "decoding,\nunpacking and (uv) the event loop, on top of the same "
         "system calls.\n");
  ratchet_reset_allocator();
  return failed;
}
