/*
 * worker.c - the worker side of the protocol: a registry of handler
 * functions by task kind, served over two file descriptors.
 *
 * The worker is single-threaded and never blocks anywhere but in poll(2)
 * and in writes. Input is read with poll + read into a frame decoder
 * (ratchet/frame.h); every complete body is unpacked into a Frame that the
 * worker owns (ratchet_codec_unpack), so that Tasks can wait in a FIFO
 * queue while an earlier one runs. Output goes through the blocking fd
 * transport (ratchet/transport.h), which also encodes the Error frame sent
 * before closing.
 *
 * The serving loop runs the queue's head, or, when the queue is empty,
 * blocks in poll until frames arrive. While a handler runs, the worker reads
 * its input only when the handler calls ratchet_task_cancelled(): that call
 * drains whatever is waiting without blocking, so a Cancel reaches the
 * running task, a Cancel of a queued Task is answered at once
 * (STATUS_CANCELLED, never run), Pings are answered at once (the protocol
 * allows Pongs in any order relative to Results), and further Tasks join
 * the queue. Results therefore leave in the order the Tasks arrived, except
 * for queued Tasks cancelled early.
 *
 * No orphans: ratchet_worker_main asks the kernel for SIGKILL when the
 * parent dies (PR_SET_PDEATHSIG, where <sys/prctl.h> exists), then checks
 * the parent is still the expected one, closing the race with a parent that
 * died before the request; and the end of stdin ends the session anywhere.
 */
#define _GNU_SOURCE /* getrusage's ru_* fields, prctl */

#include "ratchet/worker.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<sys/prctl.h>)
#include <sys/prctl.h>
#define RATCHET_HAVE_PRCTL 1
#endif
#endif
#ifndef RATCHET_HAVE_PRCTL
#define RATCHET_HAVE_PRCTL 0
#endif

#include "ratchet/alloc.h"
#include "ratchet/clock.h"
#include "ratchet/codec.h"
#include "ratchet/error.h"
#include "ratchet/frame.h"
#include "ratchet/transport.h"

/* The serving loop's read size, and how many reads one non-blocking drain
 * makes at most, so that a flood of input cannot starve a handler. */
#define READ_CHUNK  65536
#define DRAIN_READS 64
/* What ratchet_frame_decoder_feed's callback returns to stop feeding. */
#define STOP_FEED (-1)

/* Why the running task should stop, in order of precedence. */
enum stop_reason {
  STOP_NONE = 0,
  STOP_CANCEL,   /* a Cancel for it arrived */
  STOP_DEADLINE, /* Task.deadline_unix_ms passed */
  STOP_GRACE,    /* a Shutdown's grace period ran out */
  STOP_EOF,      /* stdin ended: nobody will read the Result */
  STOP_END       /* the session failed (protocol or write error) */
};

typedef struct handler {
  char *kind;
  ratchet_handler_fn fn;
  void *data;
} handler;

struct ratchet_task_ctx {
  ratchet_worker *w;
  const Ratchet__V1__Task *task;
  ratchet_task_status status;
  ratchet_buf output;
  char *error;
  int exit_code;
  int signal;
  bool core_dumped;
  enum stop_reason stop;
  bool observed; /* cancelled() returned true to the handler */
  Ratchet__V1__ChildTask **children; /* ratchet_task_produce, owned */
  size_t n_children;
  ratchet_buf err_output; /* ratchet_task_set_stderr */
  char *stdout_path;      /* ratchet_task_set_output_files, owned */
  char *stderr_path;
  bool has_usage;           /* ratchet_task_set_usage overrides the */
  Ratchet__V1__Usage usage; /* worker's own measurement */
};

struct ratchet_worker {
  /* The options, strings copied. */
  char *name;
  char *version;
  size_t max_frame_size;
  uint32_t max_in_flight;
  bool set_pdeathsig;
  int parent_pid;

  handler *handlers;
  size_t n_handlers;
  size_t cap_handlers;

  /* Counters since ratchet_worker_new, for Pong. */
  uint64_t started_ns;
  uint64_t tasks_done;
  uint64_t tasks_failed;

  /* The session, valid while serving. */
  bool serving;
  int in_fd;
  ratchet_fd_transport *out;
  ratchet_frame_decoder *dec;
  size_t send_limit;
  Ratchet__V1__Frame **queue; /* owned Task frames, [qhead, qtail) */
  size_t qhead;
  size_t qtail;
  size_t qcap;
  ratchet_task_ctx *cur; /* the running task, or NULL */
  bool greeted;
  bool shutdown;
  bool eof;
  uint64_t grace_end_ns;
  int status; /* the exit status once decided, -1 while the session lasts */
  uint8_t *rbuf;
};

/* protobuf-c's string fields are `char *`; texts we send from literals are
 * copied into these arrays rather than cast. */
static char text_empty[] = "";

/* ---- small helpers --------------------------------------------------- */

static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = ratchet_malloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

/* printf into a fresh ratchet_malloc'd string, or NULL. */
static char *vformat(const char *fmt, va_list ap) RATCHET__WORKER_PRINTF(1, 0);
static char *vformat(const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0)
    return NULL;
  char *s = ratchet_malloc((size_t)n + 1);
  if (s != NULL)
    vsnprintf(s, (size_t)n + 1, fmt, ap);
  return s;
}

static uint64_t unix_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t tv_us(struct timeval tv) {
  return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

/* Resident set size in KiB: /proc/self/statm where it exists, else the
 * peak from getrusage (Linux and BSDs give ru_maxrss in KiB). */
static uint64_t rss_kb(const struct rusage *ru) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (f != NULL) {
    unsigned long size = 0, resident = 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    if (n == 2 && page > 0)
      return (uint64_t)resident * (uint64_t)page / 1024u;
  }
  return ru->ru_maxrss > 0 ? (uint64_t)ru->ru_maxrss : 0;
}

static const handler *find_handler(const ratchet_worker *w, const char *kind) {
  for (size_t i = 0; i < w->n_handlers; i++)
    if (strcmp(w->handlers[i].kind, kind) == 0)
      return &w->handlers[i];
  return NULL;
}

/* ---- sending --------------------------------------------------------- */

/* Sends f. A write failure ends the session with status 111; an encoding
 * failure (too big, out of memory) is returned and leaves it going. */
static int send_frame(ratchet_worker *w, const Ratchet__V1__Frame *f) {
  if (w->status >= 0)
    return -EPIPE;
  int rc = ratchet_fd_transport_send(w->out, f);
  if (rc < 0 && rc != RATCHET_EFRAME_TOO_BIG && rc != RATCHET_EFRAME_EMPTY &&
      rc != -EINVAL && rc != -ENOMEM)
    w->status = RATCHET_WORKER_EXIT_SYSTEM;
  return rc;
}

/* The side that detects a protocol error sends Error (best effort) and
 * closes: the session ends with status 1. */
static void protocol_fail(ratchet_worker *w, int err, const char *text) {
  if (w->status >= 0)
    return;
  (void)ratchet_fd_transport_send_error(w->out, err, text);
  w->status = RATCHET_WORKER_EXIT_PROTOCOL;
}

static int send_log(ratchet_worker *w, ratchet_log_level level,
                    uint64_t task_id, const char *fmt, va_list ap)
    RATCHET__WORKER_PRINTF(4, 0);
static int send_log(ratchet_worker *w, ratchet_log_level level,
                    uint64_t task_id, const char *fmt, va_list ap) {
  if (fmt == NULL || level < RATCHET_LOG_DEBUG || level > RATCHET_LOG_ERROR)
    return -EINVAL;
  if (!w->serving || !w->greeted)
    return -ENOTCONN;
  if (w->status >= 0)
    return -EPIPE;
  char *text = vformat(fmt, ap);
  if (text == NULL)
    return -ENOMEM;
  Ratchet__V1__Log log;
  ratchet__v1__log__init(&log);
  log.level = (Ratchet__V1__LogLevel)level;
  log.text = text;
  log.task_id = task_id;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_LOG;
  f.log = &log;
  int rc = send_frame(w, &f);
  ratchet_free(text);
  return rc;
}

/* Sends the Result of a task answered without running it (unknown kind,
 * cancelled in the queue, deadline passed already). */
static void send_plain_result(ratchet_worker *w, const Ratchet__V1__Task *t,
                              ratchet_task_status st, const char *text) {
  Ratchet__V1__Result res;
  ratchet__v1__result__init(&res);
  res.id = t->id;
  res.attempt = t->attempt;
  res.status = (Ratchet__V1__Status)st;
  char *err = text != NULL ? dup_string(text) : NULL;
  res.error = err != NULL ? err : text_empty;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_RESULT;
  f.result = &res;
  (void)send_frame(w, &f);
  ratchet_free(err);
  w->tasks_done++;
  if (st != RATCHET_TASK_OK)
    w->tasks_failed++;
}

/* ---- the messages ------------------------------------------------------ */

static void answer_hello(ratchet_worker *w, const Ratchet__V1__Hello *h) {
  char text[RATCHET_CODEC_TEXT_MAX];
  if (ratchet_codec_check_hello(h, text, sizeof text) != 0) {
    protocol_fail(w, RATCHET_EPROTO_VERSION, text);
    return;
  }
  w->send_limit = ratchet_codec_frame_limit(h->max_frame_size);
  (void)ratchet_fd_transport_set_send_limit(w->out, w->send_limit);
  char **kinds = NULL;
  if (w->n_handlers > 0) {
    kinds = ratchet_calloc(w->n_handlers, sizeof *kinds);
    if (kinds == NULL) {
      protocol_fail(w, -ENOMEM, "out of memory answering Hello");
      return;
    }
    for (size_t i = 0; i < w->n_handlers; i++)
      kinds[i] = w->handlers[i].kind;
  }
  Ratchet__V1__Ready ready;
  ratchet__v1__ready__init(&ready);
  ready.protocol_version = RATCHET_PROTOCOL_VERSION;
  ready.worker_version = w->version;
  ready.pid = (uint32_t)getpid();
  ready.n_kinds = w->n_handlers;
  ready.kinds = kinds;
  ready.max_frame_size = w->max_frame_size;
  ready.max_in_flight = w->max_in_flight;
  ready.worker_name = w->name;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_READY;
  f.ready = &ready;
  w->greeted = true;
  (void)send_frame(w, &f);
  ratchet_free(kinds);
}

static void answer_ping(ratchet_worker *w, const Ratchet__V1__Ping *p) {
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  (void)getrusage(RUSAGE_SELF, &ru);
  Ratchet__V1__WorkerStats stats;
  ratchet__v1__worker_stats__init(&stats);
  stats.tasks_done = w->tasks_done;
  stats.tasks_failed = w->tasks_failed;
  stats.in_flight = (uint32_t)(w->qtail - w->qhead + (w->cur != NULL));
  stats.rss_kb = rss_kb(&ru);
  stats.user_cpu_us = tv_us(ru.ru_utime);
  stats.sys_cpu_us = tv_us(ru.ru_stime);
  stats.uptime_ms = (ratchet_now_ns() - w->started_ns) / 1000000u;
  Ratchet__V1__Pong pong;
  ratchet__v1__pong__init(&pong);
  pong.seq = p->seq;
  pong.stats = &stats;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_PONG;
  f.pong = &pong;
  (void)send_frame(w, &f);
}

/* Takes ownership of a Task frame. 0, or -ENOMEM (the frame is then the
 * caller's still). */
static int enqueue(ratchet_worker *w, Ratchet__V1__Frame *f) {
  if (w->qhead > 0 && w->qtail == w->qcap) {
    memmove(w->queue, w->queue + w->qhead,
            (w->qtail - w->qhead) * sizeof *w->queue);
    w->qtail -= w->qhead;
    w->qhead = 0;
  }
  if (w->qtail == w->qcap) {
    size_t cap = w->qcap ? w->qcap * 2 : 8;
    Ratchet__V1__Frame **q = ratchet_realloc(w->queue, cap * sizeof *q);
    if (q == NULL)
      return -ENOMEM;
    w->queue = q;
    w->qcap = cap;
  }
  w->queue[w->qtail++] = f;
  return 0;
}

/* Answers every queued Task with STATUS_CANCELLED and empties the queue. */
static void cancel_queue(ratchet_worker *w, const char *why) {
  for (size_t i = w->qhead; i < w->qtail; i++) {
    if (w->status < 0)
      send_plain_result(w, w->queue[i]->task, RATCHET_TASK_CANCELLED, why);
    ratchet_codec_frame_free(w->queue[i]);
  }
  w->qhead = w->qtail = 0;
}

static void handle_cancel(ratchet_worker *w, uint64_t id) {
  if (w->cur != NULL && w->cur->task->id == id) {
    if (w->cur->stop == STOP_NONE)
      w->cur->stop = STOP_CANCEL;
    return;
  }
  for (size_t i = w->qhead; i < w->qtail; i++) {
    if (w->queue[i]->task->id != id)
      continue;
    Ratchet__V1__Frame *f = w->queue[i];
    memmove(w->queue + i, w->queue + i + 1,
            (w->qtail - i - 1) * sizeof *w->queue);
    w->qtail--;
    send_plain_result(w, f->task, RATCHET_TASK_CANCELLED,
                      "cancelled before it started");
    ratchet_codec_frame_free(f);
    return;
  }
  /* Unknown or already answered: ignored, as the protocol says. */
}

static void handle_shutdown(ratchet_worker *w, uint64_t grace_ms) {
  uint64_t now = ratchet_now_ns();
  uint64_t grace_ns = grace_ms > (UINT64_MAX - now) / 1000000u
                          ? UINT64_MAX - now
                          : grace_ms * 1000000u;
  /* A second Shutdown may shorten the grace, never lengthen it. */
  if (!w->shutdown || now + grace_ns < w->grace_end_ns)
    w->grace_end_ns = now + grace_ns;
  w->shutdown = true;
  cancel_queue(w, "cancelled by shutdown");
}

/* Handles one frame the worker owns; frees it unless it was queued. */
static void handle_frame(ratchet_worker *w, Ratchet__V1__Frame *f) {
  Ratchet__V1__Frame__MsgCase c = f->msg_case;
  if (c == RATCHET__V1__FRAME__MSG_ERROR) {
    fprintf(stderr, "%s: orchestrator sent Error %s: %s\n", w->name,
            ratchet_codec_error_code_name(f->error->code),
            f->error->text != NULL ? f->error->text : "");
    w->status = RATCHET_WORKER_EXIT_PROTOCOL; /* never answered */
  } else if (c == RATCHET__V1__FRAME__MSG_HELLO) {
    if (w->greeted)
      protocol_fail(w, RATCHET_EPROTO_UNEXPECTED, "a second Hello");
    else
      answer_hello(w, f->hello);
  } else if (!w->greeted) {
    protocol_fail(w, RATCHET_EPROTO_UNEXPECTED, "expected Hello first");
  } else if (c == RATCHET__V1__FRAME__MSG_TASK) {
    if (w->shutdown) {
      protocol_fail(w, RATCHET_EPROTO_UNEXPECTED, "a Task after Shutdown");
    } else if (enqueue(w, f) == 0) {
      return; /* the queue owns it now */
    } else {
      protocol_fail(w, -ENOMEM, "out of memory queueing a Task");
    }
  } else if (c == RATCHET__V1__FRAME__MSG_CANCEL) {
    handle_cancel(w, f->cancel->id);
  } else if (c == RATCHET__V1__FRAME__MSG_PING) {
    answer_ping(w, f->ping);
  } else if (c == RATCHET__V1__FRAME__MSG_SHUTDOWN) {
    handle_shutdown(w, f->shutdown->grace_ms);
  } else {
    char text[RATCHET_CODEC_TEXT_MAX];
    snprintf(text, sizeof text, "%s goes from worker to orchestrator",
             ratchet_codec_msg_name(c));
    protocol_fail(w, RATCHET_EPROTO_UNEXPECTED, text);
  }
  ratchet_codec_frame_free(f);
}

/* ---- reading ----------------------------------------------------------- */

static int on_body(void *ctx, const uint8_t *body, size_t len) {
  ratchet_worker *w = ctx;
  Ratchet__V1__Frame *f;
  int rc = ratchet_codec_unpack(body, len, &f);
  if (rc < 0) {
    protocol_fail(w, rc, NULL);
    return STOP_FEED;
  }
  handle_frame(w, f);
  return w->status >= 0 ? STOP_FEED : 0;
}

static void on_eof(ratchet_worker *w) {
  int rc = ratchet_frame_decoder_finish(w->dec);
  if (rc < 0)
    protocol_fail(w, rc, NULL); /* truncated: best effort, it is gone */
  else
    w->eof = true;
}

/*
 * Reads and handles what arrives on in_fd. timeout_ms is poll's for the
 * first wait (-1: block until something arrives; 0: only what is there
 * already); later reads of the same call never wait.
 */
static void read_input(ratchet_worker *w, int timeout_ms) {
  for (int round = 0; round < DRAIN_READS && w->status < 0 && !w->eof;
       round++) {
    struct pollfd p = {.fd = w->in_fd, .events = POLLIN, .revents = 0};
    int n = poll(&p, 1, round == 0 ? timeout_ms : 0);
    if (n < 0) {
      if (errno == EINTR) {
        round--;
        continue;
      }
      w->status = RATCHET_WORKER_EXIT_SYSTEM;
      return;
    }
    if (n == 0)
      return;
    ssize_t got = read(w->in_fd, w->rbuf, READ_CHUNK);
    if (got < 0) {
      if (errno == EINTR) {
        round--;
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      w->status = RATCHET_WORKER_EXIT_SYSTEM;
      return;
    }
    if (got == 0) {
      on_eof(w);
      return;
    }
    int rc = ratchet_frame_decoder_feed(w->dec, w->rbuf, (size_t)got, on_body,
                                        w, NULL);
    if (rc < 0 && w->status < 0)
      protocol_fail(w, rc, NULL); /* a bad prefix, or no memory */
  }
}

/* ---- running tasks ------------------------------------------------------ */

static enum stop_reason stop_reason_now(const ratchet_task_ctx *ctx) {
  const ratchet_worker *w = ctx->w;
  if (w->status >= 0)
    return STOP_END;
  if (w->eof)
    return STOP_EOF;
  bool past_deadline = ctx->task->deadline_unix_ms != 0 &&
                       unix_now_ms() >= ctx->task->deadline_unix_ms;
  /* A Cancel read once the deadline has passed is the orchestrator
   * enforcing that deadline: the attempt timed out. */
  if (ctx->stop != STOP_NONE &&
      !(ctx->stop == STOP_CANCEL && past_deadline && !ctx->observed))
    return ctx->stop;
  if (past_deadline)
    return STOP_DEADLINE;
  if (w->shutdown && ratchet_now_ns() >= w->grace_end_ns)
    return STOP_GRACE;
  return STOP_NONE;
}

static void send_result(ratchet_worker *w, ratchet_task_ctx *ctx, int rc,
                        Ratchet__V1__Usage *usage) {
  ratchet_task_status st = ctx->status;
  const char *why = NULL;
  if (st == RATCHET_TASK_UNSET && ctx->observed) {
    st = ctx->stop == STOP_DEADLINE ? RATCHET_TASK_TIMEOUT
                                    : RATCHET_TASK_CANCELLED;
    why = ctx->stop == STOP_DEADLINE ? "deadline passed"
          : ctx->stop == STOP_GRACE ? "cancelled: shutdown grace period ran out"
                                    : "cancelled";
  } else if (st == RATCHET_TASK_UNSET) {
    st = rc == 0 ? RATCHET_TASK_OK : RATCHET_TASK_FAILED;
    if (rc != 0)
      why = ratchet_strerror(rc);
  }
  Ratchet__V1__Result res;
  ratchet__v1__result__init(&res);
  res.id = ctx->task->id;
  res.attempt = ctx->task->attempt;
  res.status = (Ratchet__V1__Status)st;
  res.output.data = ctx->output.data;
  res.output.len = ctx->output.len;
  char *err = ctx->error;
  char *tmp = NULL;
  if (err == NULL && why != NULL && st != RATCHET_TASK_OK)
    err = tmp = dup_string(why);
  res.error = err != NULL ? err : text_empty;
  res.exit_code = ctx->exit_code;
  res.signal = ctx->signal;
  res.core_dumped = ctx->core_dumped;
  res.usage = ctx->has_usage ? &ctx->usage : usage;
  res.stderr.data = ctx->err_output.data;
  res.stderr.len = ctx->err_output.len;
  res.stdout_path = ctx->stdout_path != NULL ? ctx->stdout_path : text_empty;
  res.stderr_path = ctx->stderr_path != NULL ? ctx->stderr_path : text_empty;
  if (st == RATCHET_TASK_OK) {
    res.n_children = ctx->n_children;
    res.children = ctx->children;
  }
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_RESULT;
  f.result = &res;
  int sent = send_frame(w, &f);
  if (sent == RATCHET_EFRAME_TOO_BIG || sent == -ENOMEM) {
    char text[RATCHET_CODEC_TEXT_MAX];
    snprintf(text, sizeof text,
             sent == -ENOMEM
                 ? "out of memory encoding an output of %zu bytes"
                 : "output of %zu bytes is over the orchestrator's frame "
                   "limit of %zu bytes",
             ctx->output.len, w->send_limit);
    st = RATCHET_TASK_INTERNAL_ERROR;
    res.status = (Ratchet__V1__Status)st;
    res.output.data = NULL;
    res.output.len = 0;
    res.stderr.data = NULL;
    res.stderr.len = 0;
    res.n_children = 0;
    res.error = text;
    (void)send_frame(w, &f);
  }
  ratchet_free(tmp);
  w->tasks_done++;
  if (st != RATCHET_TASK_OK)
    w->tasks_failed++;
}

static void run_task(ratchet_worker *w, const Ratchet__V1__Task *t) {
  const handler *h = find_handler(w, t->kind);
  if (h == NULL) {
    char text[RATCHET_CODEC_TEXT_MAX];
    snprintf(text, sizeof text, "no handler for the kind \"%.64s\"", t->kind);
    send_plain_result(w, t, RATCHET_TASK_UNKNOWN_KIND, text);
    return;
  }
  if (t->deadline_unix_ms != 0 && unix_now_ms() >= t->deadline_unix_ms) {
    send_plain_result(w, t, RATCHET_TASK_TIMEOUT,
                      "deadline passed before the task started");
    return;
  }
  ratchet_task_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.w = w;
  ctx.task = t;
  struct rusage r0, r1;
  memset(&r0, 0, sizeof r0);
  memset(&r1, 0, sizeof r1);
  (void)getrusage(RUSAGE_SELF, &r0);
  uint64_t t0 = ratchet_now_ns();
  w->cur = &ctx;
  int rc = h->fn(h->data, &ctx);
  w->cur = NULL;
  uint64_t t1 = ratchet_now_ns();
  (void)getrusage(RUSAGE_SELF, &r1);
  /* After the end of stdin or a failed session nobody reads a Result. */
  if (w->status < 0 && !w->eof) {
    Ratchet__V1__Usage usage;
    ratchet__v1__usage__init(&usage);
    uint64_t u0 = tv_us(r0.ru_utime), u1 = tv_us(r1.ru_utime);
    uint64_t s0 = tv_us(r0.ru_stime), s1 = tv_us(r1.ru_stime);
    usage.user_cpu_us = u1 > u0 ? u1 - u0 : 0;
    usage.sys_cpu_us = s1 > s0 ? s1 - s0 : 0;
    usage.max_rss_kb = r1.ru_maxrss > 0 ? (uint64_t)r1.ru_maxrss : 0;
    usage.wall_us = (t1 - t0) / 1000u;
    send_result(w, &ctx, rc, &usage);
  }
  ratchet_buf_free(&ctx.output);
  ratchet_buf_free(&ctx.err_output);
  ratchet_free(ctx.stdout_path);
  ratchet_free(ctx.stderr_path);
  ratchet_free(ctx.error);
  for (size_t i = 0; i < ctx.n_children; i++) {
    ratchet_free(ctx.children[i]->kind);
    ratchet_free(ctx.children[i]->payload.data);
    ratchet_free(ctx.children[i]);
  }
  ratchet_free(ctx.children);
}

/* ---- the worker ------------------------------------------------------- */

int ratchet_worker_new(const ratchet_worker_options *o, ratchet_worker **out) {
  static const ratchet_worker_options defaults = RATCHET_WORKER_OPTIONS_INIT;
  if (out == NULL)
    return -EINVAL;
  *out = NULL;
  if (o == NULL)
    o = &defaults;
  if (o->max_frame_size > SIZE_MAX / 2)
    return -EINVAL;
  ratchet_worker *w = ratchet_calloc(1, sizeof *w);
  if (w == NULL)
    return -ENOMEM;
  w->name = dup_string(o->name != NULL ? o->name : defaults.name);
  w->version = dup_string(o->version != NULL ? o->version : defaults.version);
  if (w->name == NULL || w->version == NULL)
    goto fail;
  w->max_frame_size = ratchet_codec_frame_limit(o->max_frame_size);
  w->max_in_flight = o->max_in_flight;
  w->set_pdeathsig = o->set_pdeathsig;
  w->parent_pid = o->parent_pid;
  w->started_ns = ratchet_now_ns();
  w->in_fd = -1;
  w->status = -1;
  *out = w;
  return 0;
fail:
  ratchet_free(w->name);
  ratchet_free(w->version);
  ratchet_free(w);
  return -ENOMEM;
}

int ratchet_worker_register(ratchet_worker *w, const char *kind,
                            ratchet_handler_fn fn, void *data) {
  if (w == NULL || kind == NULL || fn == NULL || kind[0] == '\0')
    return -EINVAL;
  if (w->serving)
    return -EBUSY;
  if (find_handler(w, kind) != NULL)
    return -EEXIST;
  if (w->n_handlers == w->cap_handlers) {
    size_t cap = w->cap_handlers ? w->cap_handlers * 2 : 4;
    handler *hs = ratchet_realloc(w->handlers, cap * sizeof *hs);
    if (hs == NULL)
      return -ENOMEM;
    w->handlers = hs;
    w->cap_handlers = cap;
  }
  char *k = dup_string(kind);
  if (k == NULL)
    return -ENOMEM;
  w->handlers[w->n_handlers++] = (handler){.kind = k, .fn = fn, .data = data};
  return 0;
}

int ratchet_worker_serve(ratchet_worker *w, int in_fd, int out_fd) {
  if (w == NULL || in_fd < 0 || out_fd < 0)
    return -EINVAL;
  if (w->serving)
    return -EBUSY;
  ratchet_fd_transport_options to = RATCHET_FD_TRANSPORT_OPTIONS_INIT;
  to.max_frame_size = RATCHET_FRAME_MAX_DEFAULT;
  w->rbuf = ratchet_malloc(READ_CHUNK);
  if (w->rbuf == NULL ||
      ratchet_frame_decoder_new(w->max_frame_size, &w->dec) < 0 ||
      ratchet_fd_transport_new(-1, out_fd, &to, &w->out) < 0) {
    fprintf(stderr, "%s: out of memory starting to serve\n", w->name);
    ratchet_frame_decoder_free(w->dec);
    ratchet_free(w->rbuf);
    w->dec = NULL;
    w->rbuf = NULL;
    return RATCHET_WORKER_EXIT_SYSTEM;
  }
  w->serving = true;
  w->in_fd = in_fd;
  w->send_limit = RATCHET_FRAME_MAX_DEFAULT;
  w->greeted = w->shutdown = w->eof = false;
  w->grace_end_ns = 0;
  w->status = -1;

  while (w->status < 0) {
    if (w->eof) {
      w->status = RATCHET_WORKER_EXIT_OK;
    } else if (w->qhead < w->qtail) {
      Ratchet__V1__Frame *f = w->queue[w->qhead++];
      run_task(w, f->task);
      ratchet_codec_frame_free(f);
    } else if (w->shutdown) {
      w->status = RATCHET_WORKER_EXIT_OK;
    } else {
      read_input(w, -1);
    }
  }

  int status = w->status;
  for (size_t i = w->qhead; i < w->qtail; i++)
    ratchet_codec_frame_free(w->queue[i]);
  ratchet_free(w->queue);
  w->queue = NULL;
  w->qhead = w->qtail = w->qcap = 0;
  ratchet_fd_transport_free(w->out);
  ratchet_frame_decoder_free(w->dec);
  ratchet_free(w->rbuf);
  w->out = NULL;
  w->dec = NULL;
  w->rbuf = NULL;
  w->in_fd = -1;
  w->serving = false;
  w->status = -1;
  return status;
}

int ratchet_worker_main(ratchet_worker *w) {
  if (w == NULL)
    return -EINVAL;
  /* A write to an orchestrator that is gone fails with EPIPE (status 111)
   * instead of killing the worker, and costs no signal masking. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  (void)sigaction(SIGPIPE, &sa, NULL);
#if RATCHET_HAVE_PRCTL
  if (w->set_pdeathsig) {
    pid_t before = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
      fprintf(stderr, "%s: prctl(PR_SET_PDEATHSIG): %s\n", w->name,
              strerror(errno));
    /* The parent may have died before the request: we were reparented,
     * and no signal will come. */
    pid_t expected = w->parent_pid > 0 ? (pid_t)w->parent_pid : before;
    if (getppid() != expected) {
      fprintf(stderr, "%s: the parent process is gone\n", w->name);
      return RATCHET_WORKER_EXIT_SYSTEM;
    }
  }
#endif
  return ratchet_worker_serve(w, STDIN_FILENO, STDOUT_FILENO);
}

void ratchet_worker_free(ratchet_worker *w) {
  if (w == NULL)
    return;
  for (size_t i = 0; i < w->n_handlers; i++)
    ratchet_free(w->handlers[i].kind);
  ratchet_free(w->handlers);
  ratchet_free(w->name);
  ratchet_free(w->version);
  ratchet_free(w);
}

int ratchet_worker_log(ratchet_worker *w, ratchet_log_level level,
                       const char *fmt, ...) {
  if (w == NULL)
    return -EINVAL;
  va_list ap;
  va_start(ap, fmt);
  int rc = send_log(w, level, 0, fmt, ap);
  va_end(ap);
  return rc;
}

/* ---- the task context -------------------------------------------------- */

const char *ratchet_task_kind(const ratchet_task_ctx *ctx) {
  return ctx->task->kind;
}

uint64_t ratchet_task_id(const ratchet_task_ctx *ctx) {
  return ctx->task->id;
}

uint32_t ratchet_task_attempt(const ratchet_task_ctx *ctx) {
  return ctx->task->attempt;
}

const uint8_t *ratchet_task_payload(const ratchet_task_ctx *ctx, size_t *len) {
  *len = ctx->task->payload.len;
  return ctx->task->payload.data;
}

uint64_t ratchet_task_deadline_ms(const ratchet_task_ctx *ctx) {
  return ctx->task->deadline_unix_ms;
}

uint64_t ratchet_task_time_left_ms(const ratchet_task_ctx *ctx) {
  uint64_t d = ctx->task->deadline_unix_ms;
  if (d == 0)
    return UINT64_MAX;
  uint64_t now = unix_now_ms();
  return d > now ? d - now : 0;
}

const char *ratchet_task_meta(const ratchet_task_ctx *ctx, const char *key) {
  const char *v = NULL;
  if (key == NULL)
    return NULL;
  for (size_t i = 0; i < ctx->task->n_metadata; i++) {
    const Ratchet__V1__Task__MetadataEntry *e = ctx->task->metadata[i];
    if (e->key != NULL && strcmp(e->key, key) == 0)
      v = e->value != NULL ? e->value : "";
  }
  return v;
}

size_t ratchet_task_meta_count(const ratchet_task_ctx *ctx) {
  return ctx->task->n_metadata;
}

int ratchet_task_meta_at(const ratchet_task_ctx *ctx, size_t i,
                         const char **key, const char **value) {
  if (i >= ctx->task->n_metadata)
    return -ERANGE;
  const Ratchet__V1__Task__MetadataEntry *e = ctx->task->metadata[i];
  if (key != NULL)
    *key = e->key != NULL ? e->key : "";
  if (value != NULL)
    *value = e->value != NULL ? e->value : "";
  return 0;
}

bool ratchet_task_cancelled(ratchet_task_ctx *ctx) {
  enum stop_reason r = stop_reason_now(ctx);
  if (r == STOP_NONE) {
    read_input(ctx->w, 0);
    r = stop_reason_now(ctx);
  }
  if (r == STOP_NONE)
    return false;
  if (ctx->stop == STOP_NONE || (ctx->stop == STOP_CANCEL && !ctx->observed))
    ctx->stop = r;
  ctx->observed = true;
  return true;
}

int ratchet_task_set_status(ratchet_task_ctx *ctx, ratchet_task_status status) {
  if (status < RATCHET_TASK_OK || status > RATCHET_TASK_INTERNAL_ERROR)
    return -EINVAL;
  ctx->status = status;
  return 0;
}

/* Replaces b's bytes with a copy of data; b is unchanged on failure. */
static int buf_replace(ratchet_buf *b, const void *data, size_t len) {
  if (data == NULL && len > 0)
    return -EINVAL;
  size_t old = b->len;
  b->len = 0;
  int rc = len > 0 ? ratchet_buf_append(b, data, len) : 0;
  if (rc < 0)
    b->len = old;
  return rc;
}

int ratchet_task_set_output(ratchet_task_ctx *ctx, const void *data,
                            size_t len) {
  return buf_replace(&ctx->output, data, len);
}

int ratchet_task_set_stderr(ratchet_task_ctx *ctx, const void *data,
                            size_t len) {
  return buf_replace(&ctx->err_output, data, len);
}

int ratchet_task_set_output_files(ratchet_task_ctx *ctx,
                                  const char *stdout_path,
                                  const char *stderr_path) {
  char *o = NULL, *e = NULL;
  if ((stdout_path != NULL && (o = dup_string(stdout_path)) == NULL) ||
      (stderr_path != NULL && (e = dup_string(stderr_path)) == NULL)) {
    ratchet_free(o);
    return -ENOMEM;
  }
  ratchet_free(ctx->stdout_path);
  ratchet_free(ctx->stderr_path);
  ctx->stdout_path = o;
  ctx->stderr_path = e;
  return 0;
}

void ratchet_task_set_usage(ratchet_task_ctx *ctx, uint64_t user_cpu_us,
                            uint64_t sys_cpu_us, uint64_t max_rss_kb,
                            uint64_t wall_us) {
  ratchet__v1__usage__init(&ctx->usage);
  ctx->usage.user_cpu_us = user_cpu_us;
  ctx->usage.sys_cpu_us = sys_cpu_us;
  ctx->usage.max_rss_kb = max_rss_kb;
  ctx->usage.wall_us = wall_us;
  ctx->has_usage = true;
}

int ratchet_task_append_output(ratchet_task_ctx *ctx, const void *data,
                               size_t len) {
  if (data == NULL && len > 0)
    return -EINVAL;
  return len > 0 ? ratchet_buf_append(&ctx->output, data, len) : 0;
}

int ratchet_task_produce(ratchet_task_ctx *ctx, const char *kind,
                         const void *payload, size_t len) {
  if (ctx == NULL || kind == NULL || kind[0] == '\0' ||
      (payload == NULL && len > 0))
    return -EINVAL;
  if (ctx->n_children >= RATCHET_TASK_MAX_CHILDREN)
    return -E2BIG;
  Ratchet__V1__ChildTask **v = ratchet_realloc(
      ctx->children, (ctx->n_children + 1) * sizeof *ctx->children);
  if (v == NULL)
    return -ENOMEM;
  ctx->children = v;
  Ratchet__V1__ChildTask *c = ratchet_malloc(sizeof *c);
  char *k = dup_string(kind);
  uint8_t *p = len > 0 ? ratchet_malloc(len) : NULL;
  if (c == NULL || k == NULL || (len > 0 && p == NULL)) {
    ratchet_free(c);
    ratchet_free(k);
    ratchet_free(p);
    return -ENOMEM;
  }
  ratchet__v1__child_task__init(c);
  c->kind = k;
  if (len > 0)
    memcpy(p, payload, len);
  c->payload.data = p;
  c->payload.len = len;
  v[ctx->n_children++] = c;
  return 0;
}

int ratchet_task_set_error(ratchet_task_ctx *ctx, const char *fmt, ...) {
  if (fmt == NULL)
    return -EINVAL;
  va_list ap;
  va_start(ap, fmt);
  char *s = vformat(fmt, ap);
  va_end(ap);
  if (s == NULL)
    return -ENOMEM;
  ratchet_free(ctx->error);
  ctx->error = s;
  return 0;
}

void ratchet_task_set_exit(ratchet_task_ctx *ctx, int exit_code, int signal,
                           bool core_dumped) {
  ctx->exit_code = exit_code;
  ctx->signal = signal;
  ctx->core_dumped = core_dumped;
}

int ratchet_task_log(ratchet_task_ctx *ctx, ratchet_log_level level,
                     const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = send_log(ctx->w, level, ctx->task->id, fmt, ap);
  va_end(ap);
  return rc;
}

ratchet_worker *ratchet_task_worker(const ratchet_task_ctx *ctx) {
  return ctx->w;
}
