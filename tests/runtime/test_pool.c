/*
 * test_pool.c - the process pool (runtime/src/pool.c, process.c,
 * supervisor.c), driven on a real libuv loop against real worker processes.
 *
 * Spawn-mode workers are this binary again as "--child pool-worker MODE...",
 * a small worker on the blocking fd transport whose task kinds misbehave on
 * demand (die by exit, signal or abort, hang, write junk, oversized or
 * unasked-for frames to stdout, flood stderr, ignore Pings, grow, leave a
 * grandchild behind); fork-mode workers run the same code in a forked copy,
 * or serve a ratchet_worker registry. Tests wait for events and
 * outcomes, never for time: the only clock is a watchdog that fails a test
 * which would otherwise hang. Each test runs on its own loop and checks that
 * closing the pool leaves no handle (uv_loop_close succeeds), no descriptor
 * and no process of the workers' groups behind.
 */
#define _GNU_SOURCE

#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "ratchet/codec.h"
#include "ratchet/error.h"
#include "ratchet/pool.h"
#include "ratchet/transport.h"
#include "ratchet/worker.h"
#include "testutil.h"

/* ---- the child worker ------------------------------------------------- */

static char kind_all[] = "*";
static char worker_version[] = "test";

static int send_frame(ratchet_fd_transport *t, Ratchet__V1__Frame *f) {
  return ratchet_fd_transport_send(t, f);
}

/* Serves the protocol on fds 0/1. mode "serve" answers (Pings too, with
 * rss_kb 4321); "deaf" answers tasks but never Pings; "noready" reads
 * Hello and then waits forever. crash_on > 0: the crash_on-th task exits 42.
 * Task kinds: echo, stderr (payload to stderr), die (exit 42), junk (bytes
 * that are no frame on stdout), grandchild (forks a process that waits;
 * output is its pid), grandchild-term (the same, ignoring SIGTERM), sleep
 * (payload: milliseconds), segv, abort, exit0 (exit 0 mid-task), hang
 * (ignores Cancel), hang-term (and SIGTERM too), cancelable (waits for its
 * Cancel, answers STATUS_CANCELLED), big (a Result of payload bytes), flood
 * (thousands of Results nobody asked for), stderr-flood (payload lines of
 * 64 bytes to stderr), alloc (payload MiB allocated and touched, kept),
 * log (a Log frame with the payload, then the Result). */
static int serve(const char *mode, int crash_on) {
  ratchet_fd_transport *t;
  if (ratchet_fd_transport_new(0, 1, NULL, &t) != 0)
    return 111;
  const Ratchet__V1__Frame *in;
  if (ratchet_fd_transport_recv(t, &in) != 0 ||
      in->msg_case != RATCHET__V1__FRAME__MSG_HELLO)
    return 1;
  if (strcmp(mode, "noready") == 0)
    for (;;)
      pause();
  char *kinds[] = {kind_all};
  Ratchet__V1__Ready ready;
  ratchet__v1__ready__init(&ready);
  ready.protocol_version = RATCHET_PROTOCOL_VERSION;
  ready.worker_version = worker_version;
  ready.pid = (uint32_t)getpid();
  ready.n_kinds = 1;
  ready.kinds = kinds;
  Ratchet__V1__Frame out = RATCHET__V1__FRAME__INIT;
  out.msg_case = RATCHET__V1__FRAME__MSG_READY;
  out.ready = &ready;
  if (ratchet_fd_transport_send(t, &out) != 0)
    return 111;
  int tasks = 0;
  for (;;) {
    int rc = ratchet_fd_transport_recv(t, &in);
    if (rc == RATCHET_EEOF)
      break;
    if (rc != 0)
      return 1;
    if (in->msg_case == RATCHET__V1__FRAME__MSG_SHUTDOWN)
      break;
    if (in->msg_case == RATCHET__V1__FRAME__MSG_PING) {
      if (strcmp(mode, "deaf") == 0)
        continue;
      Ratchet__V1__WorkerStats ws;
      ratchet__v1__worker_stats__init(&ws);
      ws.rss_kb = 4321;
      ws.tasks_done = (uint64_t)tasks;
      Ratchet__V1__Pong pong;
      ratchet__v1__pong__init(&pong);
      pong.seq = in->ping->seq;
      pong.stats = &ws;
      Ratchet__V1__Frame pf = RATCHET__V1__FRAME__INIT;
      pf.msg_case = RATCHET__V1__FRAME__MSG_PONG;
      pf.pong = &pong;
      if (send_frame(t, &pf) != 0)
        return 111;
      continue;
    }
    if (in->msg_case != RATCHET__V1__FRAME__MSG_TASK)
      continue;
    const Ratchet__V1__Task *task = in->task;
    if (++tasks == crash_on || strcmp(task->kind, "die") == 0)
      _exit(42);
    char buf[64];
    Ratchet__V1__Result res;
    ratchet__v1__result__init(&res);
    res.id = task->id;
    res.attempt = task->attempt;
    res.status = RATCHET__V1__STATUS__STATUS_OK;
    res.output = task->payload;
    if (strcmp(task->kind, "stderr") == 0) {
      fprintf(stderr, "%.*s\n", (int)task->payload.len,
              (const char *)task->payload.data);
      fflush(stderr);
    } else if (strcmp(task->kind, "junk") == 0) {
      static const char junk[] = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
      (void)!write(1, junk, sizeof junk);
      for (;;)
        pause();
    } else if (strcmp(task->kind, "grandchild") == 0) {
      pid_t g = fork();
      if (g == 0) {
        for (;;)
          pause();
      }
      snprintf(buf, sizeof buf, "%d", (int)g);
      res.output.data = (uint8_t *)buf;
      res.output.len = strlen(buf);
    } else if (strcmp(task->kind, "grandchild-term") == 0) {
      pid_t g = fork();
      if (g == 0) {
        signal(SIGTERM, SIG_IGN);
        for (;;)
          pause();
      }
      snprintf(buf, sizeof buf, "%d", (int)g);
      res.output.data = (uint8_t *)buf;
      res.output.len = strlen(buf);
    } else if (strcmp(task->kind, "segv") == 0) {
      struct rlimit rl = {0, 0};
      (void)setrlimit(RLIMIT_CORE, &rl);
      signal(SIGSEGV, SIG_DFL); /* not a sanitizer's report: the signal */
      raise(SIGSEGV);
    } else if (strcmp(task->kind, "abort") == 0) {
      struct rlimit rl = {0, 0};
      (void)setrlimit(RLIMIT_CORE, &rl);
      abort();
    } else if (strcmp(task->kind, "exit0") == 0) {
      _exit(0);
    } else if (strcmp(task->kind, "hang") == 0 ||
               strcmp(task->kind, "hang-term") == 0) {
      if (strcmp(task->kind, "hang-term") == 0)
        signal(SIGTERM, SIG_IGN);
      for (;;)
        pause();
    } else if (strcmp(task->kind, "cancelable") == 0) {
      uint64_t id = task->id;
      do
        rc = ratchet_fd_transport_recv(t, &in);
      while (rc == 0 && !(in->msg_case == RATCHET__V1__FRAME__MSG_CANCEL &&
                          in->cancel->id == id));
      if (rc != 0)
        return 1;
      res.id = id;
      res.status = RATCHET__V1__STATUS__STATUS_CANCELLED;
      res.output.data = NULL;
      res.output.len = 0;
    } else if (strcmp(task->kind, "big") == 0) {
      static uint8_t big[4096];
      res.output.data = big;
      res.output.len = sizeof big;
    } else if (strcmp(task->kind, "flood") == 0) {
      for (uint64_t i = 0; i < 10000; i++) {
        Ratchet__V1__Result bogus;
        ratchet__v1__result__init(&bogus);
        bogus.id = 1000000 + i;
        bogus.status = RATCHET__V1__STATUS__STATUS_OK;
        Ratchet__V1__Frame bf = RATCHET__V1__FRAME__INIT;
        bf.msg_case = RATCHET__V1__FRAME__MSG_RESULT;
        bf.result = &bogus;
        if (send_frame(t, &bf) != 0)
          return 111;
      }
    } else if (strcmp(task->kind, "stderr-flood") == 0) {
      char num[16] = {0};
      memcpy(num, task->payload.data,
             task->payload.len < 15 ? task->payload.len : 15);
      int n = atoi(num);
      for (int i = 0; i < n; i++)
        fprintf(stderr, "line %08d 0123456789abcdef0123456789abcdef0123456\n",
                i);
      fflush(stderr);
      res.output.len = 0;
    } else if (strcmp(task->kind, "alloc") == 0) {
      char num[16] = {0};
      memcpy(num, task->payload.data,
             task->payload.len < 15 ? task->payload.len : 15);
      size_t n = (size_t)atoi(num) << 20;
      static char *kept; /* reachable: the point is to grow, not leak */
      kept = malloc(n);
      if (kept != NULL)
        memset(kept, 1, n);
      res.output.len = 0;
    } else if (strcmp(task->kind, "log") == 0) {
      char text[128];
      snprintf(text, sizeof text, "%.*s", (int)task->payload.len,
               (const char *)task->payload.data);
      Ratchet__V1__Log lg;
      ratchet__v1__log__init(&lg);
      lg.level = RATCHET__V1__LOG_LEVEL__LOG_LEVEL_WARN;
      lg.text = text;
      lg.task_id = task->id;
      Ratchet__V1__Frame lf = RATCHET__V1__FRAME__INIT;
      lf.msg_case = RATCHET__V1__FRAME__MSG_LOG;
      lf.log = &lg;
      if (send_frame(t, &lf) != 0)
        return 111;
    } else if (strcmp(task->kind, "sleep") == 0) {
      char ms[16] = {0};
      memcpy(ms, task->payload.data,
             task->payload.len < 15 ? task->payload.len : 15);
      usleep((useconds_t)atoi(ms) * 1000u);
    }
    Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
    f.msg_case = RATCHET__V1__FRAME__MSG_RESULT;
    f.result = &res;
    if (ratchet_fd_transport_send(t, &f) != 0)
      return 111;
  }
  ratchet_fd_transport_free(t);
  return 0;
}

int tu_child_pool_worker(int argc, char **argv) {
  const char *mode = argc > 0 ? argv[0] : "serve";
  int crash_on = argc > 1 ? atoi(argv[1]) : 0;
  return serve(mode, crash_on);
}

static int fork_main(void *arg) {
  (void)arg;
  return serve("serve", 0);
}

/* A handler of the fork-mode registry: upper-cases the payload and logs. */
static int upper_handler(void *data, ratchet_task_ctx *task) {
  (void)data;
  size_t len = 0;
  const uint8_t *in = ratchet_task_payload(task, &len);
  char out[64];
  size_t n = len < sizeof out ? len : sizeof out;
  for (size_t i = 0; i < n; i++)
    out[i] = (char)toupper(in[i]);
  (void)ratchet_task_log(task, RATCHET_LOG_WARN, "upper %.*s", (int)n,
                         (const char *)in);
  return ratchet_task_set_output(task, out, n);
}

/* ---- the harness ------------------------------------------------------ */

#define MAX_RECORDS 512
#define MAX_PIDS    256

typedef struct outcome_rec {
  uint64_t id;
  uint32_t worker;
  bool ok;
  ratchet_pool_lost_reason lost;
  uint32_t crashes;
  bool poison;
  char text[256]; /* the output, or the reason */
} outcome_rec;

typedef struct event_rec {
  ratchet_pool_event_type type;
  uint32_t worker;
  uint32_t generation;
  int pid;
  int exit_status, term_signal;
  bool core_dumped;
  uint64_t tasks_done;
  char message[512];
} event_rec;

typedef struct ctx {
  uv_loop_t loop;
  uv_timer_t watchdog;
  bool timed_out;
  ratchet_pool *pool;
  bool closed;
  outcome_rec outcomes[MAX_RECORDS];
  unsigned n_outcomes;
  event_rec events[MAX_RECORDS];
  unsigned n_events;
  unsigned n_ready, n_failed, n_exited;
  char lines[8][128];
  uint32_t line_workers[8];
  unsigned n_lines;
  int pids[MAX_PIDS]; /* every worker pid seen */
  unsigned n_pids;
  unsigned total_lines, n_hung, n_recycled;
  unsigned n_logs;
  uint64_t log_task;
  int log_level;
  uint32_t log_worker;
  char log_text[128];
  /* for tests that react to events */
  void (*on_ready)(struct ctx *c, const ratchet_pool_event *ev);
  int kills_left;
} ctx;

static ctx *the_ctx(ratchet_pool *p) {
  return ratchet_pool_data(p);
}

static void rec_outcome(ratchet_pool *p, const ratchet_pool_outcome *o) {
  ctx *c = the_ctx(p);
  assert_true(c->n_outcomes < MAX_RECORDS);
  outcome_rec *r = &c->outcomes[c->n_outcomes++];
  r->id = o->task_id;
  r->worker = o->worker_id;
  r->ok = o->result != NULL;
  r->lost = o->lost;
  r->crashes = o->crash_count;
  r->poison = o->poison;
  if (o->result != NULL)
    snprintf(r->text, sizeof r->text, "%.*s", (int)o->result->output.len,
             (const char *)o->result->output.data);
  else
    snprintf(r->text, sizeof r->text, "%s", o->reason);
}

static void rec_event(ratchet_pool *p, const ratchet_pool_event *ev) {
  ctx *c = the_ctx(p);
  assert_non_null(ev->message);
  if (c->n_events < MAX_RECORDS) {
    event_rec *r = &c->events[c->n_events++];
    r->type = ev->type;
    r->worker = ev->worker_id;
    r->generation = ev->generation;
    r->pid = ev->pid;
    r->exit_status = ev->exit_status;
    r->term_signal = ev->term_signal;
    r->core_dumped = ev->core_dumped;
    r->tasks_done = ev->tasks_done;
    snprintf(r->message, sizeof r->message, "%s", ev->message);
  }
  if (ev->type == RATCHET_POOL_EVENT_STARTING) {
    assert_true(c->n_pids < MAX_PIDS);
    c->pids[c->n_pids++] = ev->pid;
  }
  if (ev->type == RATCHET_POOL_EVENT_HUNG)
    c->n_hung++;
  if (ev->type == RATCHET_POOL_EVENT_RECYCLED)
    c->n_recycled++;
  if (ev->type == RATCHET_POOL_EVENT_READY) {
    c->n_ready++;
    if (c->on_ready != NULL)
      c->on_ready(c, ev);
  }
  if (ev->type == RATCHET_POOL_EVENT_FAILED)
    c->n_failed++;
  if (ev->type == RATCHET_POOL_EVENT_EXITED)
    c->n_exited++;
}

static void rec_line(ratchet_pool *p, uint32_t worker, const char *line,
                     size_t len) {
  ctx *c = the_ctx(p);
  assert_int_equal(strlen(line), len);
  /* A sanitizer build's workers report on stderr: none may. */
  assert_null(strstr(line, "Sanitizer"));
  assert_null(strstr(line, "runtime error:"));
  c->total_lines++;
  if (c->n_lines < 8) {
    snprintf(c->lines[c->n_lines], sizeof c->lines[0], "%s", line);
    c->line_workers[c->n_lines++] = worker;
  }
}

static void rec_log(ratchet_pool *p, uint32_t worker, uint64_t task_id,
                    int level, const char *text) {
  ctx *c = the_ctx(p);
  c->n_logs++;
  c->log_worker = worker;
  c->log_task = task_id;
  c->log_level = level;
  snprintf(c->log_text, sizeof c->log_text, "%s", text);
}

static void on_closed(void *data) {
  ctx *c = data;
  c->closed = true;
}

static void watchdog_cb(uv_timer_t *h) {
  ctx *c = h->data;
  c->timed_out = true;
}

static const char *self_argv[8];

static ratchet_pool_options spawn_options(ctx *c, const char *mode,
                                          const char *crash_on) {
  ratchet_pool_options o = RATCHET_POOL_OPTIONS_INIT;
  self_argv[0] = tu_self_path();
  self_argv[1] = "--child";
  self_argv[2] = "pool-worker";
  self_argv[3] = mode;
  self_argv[4] = crash_on;
  self_argv[5] = NULL;
  o.argv = self_argv;
  o.on_outcome = rec_outcome;
  o.on_event = rec_event;
  o.on_stderr_line = rec_line;
  o.on_log = rec_log;
  o.data = c;
  /* Fast restarts keep the tests quick; the policy is the same. */
  o.restart_backoff.initial_ns = RATCHET_NS_PER_MS;
  o.restart_backoff.max_delay_ns = 10 * RATCHET_NS_PER_MS;
  o.kill_grace_ms = 100;
  o.seed = 42;
  return o;
}

static ctx *ctx_new(void) {
  ctx *c = calloc(1, sizeof *c);
  assert_non_null(c);
  assert_int_equal(uv_loop_init(&c->loop), 0);
  uv_timer_init(&c->loop, &c->watchdog);
  c->watchdog.data = c;
  /* Not a timing threshold: only a guard against a hang. */
  uv_timer_start(&c->watchdog, watchdog_cb, 15000, 0);
  uv_unref((uv_handle_t *)&c->watchdog);
  return c;
}

typedef bool (*pred_fn)(ctx *c, uintptr_t arg);

static void run_until(ctx *c, pred_fn pred, uintptr_t arg) {
  while (!pred(c, arg)) {
    assert_false(c->timed_out);
    uv_ref((uv_handle_t *)&c->watchdog);
    uv_run(&c->loop, UV_RUN_ONCE);
    uv_unref((uv_handle_t *)&c->watchdog);
  }
}

static bool p_ready(ctx *c, uintptr_t n) {
  return c->n_ready >= n;
}
static bool p_outcomes(ctx *c, uintptr_t n) {
  return c->n_outcomes >= n;
}
static bool p_failed(ctx *c, uintptr_t n) {
  (void)n;
  return c->n_failed > 0;
}
static bool p_closed(ctx *c, uintptr_t n) {
  (void)n;
  return c->closed;
}
static bool p_exited(ctx *c, uintptr_t n) {
  return c->n_exited >= n;
}
static bool p_lines(ctx *c, uintptr_t n) {
  return c->n_lines >= n;
}

typedef struct group_query {
  int pgid;
  bool found;
} group_query;

static int find_in_group(const tu_proc_stat *st, void *arg) {
  group_query *q = arg;
  if (st->pgrp == q->pgid && st->state != 'Z')
    q->found = true;
  return q->found;
}

/* True if a live (non-zombie) process is in the process group pgid. */
static bool group_alive(int pgid) {
  group_query q = {pgid, false};
  tu_proc_scan(find_in_group, &q);
  return q.found;
}

/* Closes the pool, runs the loop dry, checks nothing is left. */
static void finish(ctx *c, int fds_before) {
  if (!c->closed) {
    ratchet_pool_close(c->pool, on_closed);
    run_until(c, p_closed, 0);
  }
  /* SIGKILL is sent to the whole group before close returns, but a killed
   * process still needs the scheduler to finish dying: allow it that (a
   * bound, not a threshold - the test only fails if it never happens). */
  for (unsigned i = 0; i < c->n_pids; i++) {
    for (int tries = 0; tries < 5000 && group_alive(c->pids[i]); tries++)
      usleep(1000);
    assert_false(group_alive(c->pids[i]));
  }
  uv_close((uv_handle_t *)&c->watchdog, NULL);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&c->loop), 0);
  assert_int_equal(tu_count_fds(), fds_before);
  free(c);
}

/* Makes c's pool from o, starts it and waits for n READY events. */
static void start_pool(ctx *c, const ratchet_pool_options *o, unsigned n) {
  assert_int_equal(ratchet_pool_new(&c->loop, o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  run_until(c, p_ready, n);
}

static void send_task(ctx *c, uint64_t id, const char *kind,
                      const char *payload, uint32_t crashes, uint32_t worker,
                      int expect) {
  Ratchet__V1__Task t;
  ratchet__v1__task__init(&t);
  char kbuf[32];
  snprintf(kbuf, sizeof kbuf, "%s", kind);
  t.id = id;
  t.attempt = 1;
  t.kind = kbuf;
  t.payload.data = (uint8_t *)(uintptr_t)payload;
  t.payload.len = strlen(payload);
  assert_int_equal(ratchet_pool_dispatch(c->pool, &t, crashes, worker, NULL),
                   expect);
}

static const event_rec *find_event(ctx *c, ratchet_pool_event_type type,
                                   unsigned nth) {
  for (unsigned i = 0; i < c->n_events; i++)
    if (c->events[i].type == type && nth-- == 0)
      return &c->events[i];
  return NULL;
}

/* ---- the tests -------------------------------------------------------- */

static void test_options(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  ctx c0;
  ratchet_pool_options o = spawn_options(&c0, "serve", NULL);
  ratchet_pool *p = NULL;
  ratchet_pool_options bad = o;
  bad.size = 0;
  assert_int_equal(ratchet_pool_new(&loop, &bad, &p), -EINVAL);
  bad = o;
  bad.argv = NULL;
  assert_int_equal(ratchet_pool_new(&loop, &bad, &p), -EINVAL);
  bad = o;
  bad.on_outcome = NULL;
  assert_int_equal(ratchet_pool_new(&loop, &bad, &p), -EINVAL);
  bad = o;
  bad.mode = RATCHET_POOL_FORK;
  assert_int_equal(ratchet_pool_new(&loop, &bad, &p), -EINVAL);
  bad = o;
  bad.restart_backoff.initial_ns = 0;
  assert_int_equal(ratchet_pool_new(&loop, &bad, &p), -EINVAL);
  /* Combinations that make no sense. */
  bad = o;
  bad.ping_timeout_ms = 5; /* a timeout without pings */
  assert_int_equal(ratchet_pool_new(&loop, &bad, &p), -EINVAL);
  bad = o;
  bad.recycle_jitter_tasks = 5; /* jitter without a count */
  assert_int_equal(ratchet_pool_new(&loop, &bad, &p), -EINVAL);
  bad = o;
  bad.task_timeout_ms = 3600001;
  assert_int_equal(ratchet_pool_new(&loop, &bad, &p), -EINVAL);
  bad = o;
  bad.worker = (struct ratchet_worker *)&c0; /* a registry in SPAWN mode */
  assert_int_equal(ratchet_pool_new(&loop, &bad, &p), -EINVAL);
  assert_null(p);
  assert_string_equal(ratchet_pool_event_name(RATCHET_POOL_EVENT_FAILED),
                      "failed");
  assert_string_equal(ratchet_pool_lost_reason_name(RATCHET_POOL_LOST_DIED),
                      "died");
  /* A pool that never starts closes cleanly. */
  c0.closed = false;
  assert_int_equal(ratchet_pool_new(&loop, &o, &p), 0);
  ratchet_pool_close(p, on_closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_true(c0.closed);

  assert_int_equal(uv_loop_close(&loop), 0);
}

/* Allocation failure at every point of new: -ENOMEM, nothing allocated is
 * left behind, no handle is left on the loop; then a pool that could be
 * made closes cleanly. */
static void test_new_out_of_memory(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  ctx c1;
  memset(&c1, 0, sizeof c1);
  ratchet_pool_options o = spawn_options(&c1, "serve", NULL);
  ratchet_pool *p = NULL;
  int rc = -ENOMEM;
  size_t k;
  for (k = 0; rc == -ENOMEM && k < 1000; k++) {
    p = NULL;
    tu_alloc_install(k);
    rc = ratchet_pool_new(&loop, &o, &p);
    long live = tu_alloc_live();
    size_t tried = tu_alloc_count();
    tu_alloc_uninstall();
    /* Success only when no allocation failed: new once returned 0 with a
     * freed pool when the slots' allocation failed. */
    if (rc == 0)
      assert_true(tried <= k);
    if (rc == -ENOMEM) {
      assert_null(p);
      assert_int_equal(live, 0);
      assert_int_equal(uv_loop_alive(&loop), 0);
    }
  }
  assert_int_equal(rc, 0);
  assert_true(k > 1); /* it did fail at least once */
  ratchet_pool_close(p, on_closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_true(c1.closed);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_runs_tasks(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.size = 3;
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), -EALREADY);
  run_until(c, p_ready, 3);
  /* Depth 1: three tasks fill the pool, the fourth finds no room. */
  for (uint64_t id = 1; id <= 3; id++)
    send_task(c, id, "echo", "hi", 0, RATCHET_POOL_ANY, 0);
  send_task(c, 4, "echo", "hi", 0, RATCHET_POOL_ANY, -EAGAIN);
  send_task(c, 4, "echo", "hi", 0, 7, -ENOENT);
  ratchet_pool_stats st;
  ratchet_pool_stats_get(c->pool, &st);
  assert_int_equal(st.in_flight, 3);
  assert_int_equal(st.ready, 3);
  run_until(c, p_outcomes, 3);
  uint64_t seen = 0;
  for (unsigned i = 0; i < 3; i++) {
    assert_true(c->outcomes[i].ok);
    assert_string_equal(c->outcomes[i].text, "hi");
    seen |= UINT64_C(1) << c->outcomes[i].id;
  }
  assert_int_equal(seen, 0xe);
  /* Then a stream of tasks to one chosen worker. */
  for (uint64_t id = 10; id < 20; id++) {
    send_task(c, id, "echo", "x", 0, 1, 0);
    run_until(c, p_outcomes, c->n_outcomes + 1);
  }
  ratchet_pool_worker_stats ws;
  assert_int_equal(ratchet_pool_worker_stats_get(c->pool, 1, &ws), 0);
  assert_true(ws.tasks_done >= 10);
  assert_true(ws.ready);
  assert_int_equal(ws.generation, 1);
  ratchet_pool_stats_get(c->pool, &st);
  assert_int_equal(st.tasks_done, 13);
  assert_int_equal(st.dispatched, 13);
  assert_int_equal(st.in_flight, 0);
  /* stderr, line by line, tagged with the worker. */
  send_task(c, 30, "stderr", "hello\nworld", 0, 2, 0);
  run_until(c, p_lines, 2);
  assert_string_equal(c->lines[0], "hello");
  assert_string_equal(c->lines[1], "world");
  assert_int_equal(c->line_workers[0], 2);
  finish(c, fds);
}

static void test_crash_on_nth_task(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", "3");
  o.poison_threshold = 2;
  start_pool(c, &o, 1);
  for (uint64_t id = 1; id <= 3; id++) {
    send_task(c, id, "echo", "a", 1, 0, 0);
    run_until(c, p_outcomes, id);
  }
  assert_true(c->outcomes[1].ok);
  const outcome_rec *lost = &c->outcomes[2];
  assert_false(lost->ok);
  assert_int_equal(lost->id, 3);
  assert_int_equal(lost->lost, RATCHET_POOL_LOST_DIED);
  assert_int_equal(lost->crashes, 2); /* 1 given + this one */
  assert_true(lost->poison);
  assert_non_null(strstr(lost->text, "exited with status 42"));
  /* Restarted; the new process serves. */
  run_until(c, p_ready, 2);
  const event_rec *ex = find_event(c, RATCHET_POOL_EVENT_EXITED, 0);
  assert_non_null(ex);
  assert_int_equal(ex->exit_status, 42);
  assert_non_null(find_event(c, RATCHET_POOL_EVENT_RESTARTING, 0));
  send_task(c, 4, "echo", "b", 0, 0, 0);
  run_until(c, p_outcomes, 4);
  assert_true(c->outcomes[3].ok);
  ratchet_pool_worker_stats ws;
  assert_int_equal(ratchet_pool_worker_stats_get(c->pool, 0, &ws), 0);
  assert_int_equal(ws.generation, 2);
  assert_int_equal(ws.tasks_lost, 1);
  assert_int_equal(c->n_failed, 0);
  finish(c, fds);
}

static void kill_on_ready(ctx *c, const ratchet_pool_event *ev) {
  if (c->kills_left > 0 && ev->worker_id == 0) {
    c->kills_left--;
    assert_int_equal(kill(ev->pid, SIGKILL), 0);
  }
}

static void test_sigkill_from_outside(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.size = 2;
  c->on_ready = kill_on_ready;
  c->kills_left = 20;
  start_pool(c, &o, 2 + 20);
  assert_int_equal(c->n_failed, 0);
  const event_rec *ex = find_event(c, RATCHET_POOL_EVENT_EXITED, 0);
  assert_non_null(ex);
  assert_int_equal(ex->term_signal, SIGKILL);
  assert_int_equal(ex->exit_status, -1);
  assert_non_null(strstr(ex->message, "SIGKILL"));
  /* Still serving, on both workers. */
  send_task(c, 1, "echo", "ok", 0, 0, 0);
  send_task(c, 2, "echo", "ok", 0, 1, 0);
  run_until(c, p_outcomes, 2);
  assert_true(c->outcomes[0].ok && c->outcomes[1].ok);
  ratchet_pool_worker_stats ws;
  assert_int_equal(ratchet_pool_worker_stats_get(c->pool, 0, &ws), 0);
  assert_int_equal(ws.generation, 21);
  assert_int_equal(ws.restarts, 20);
  finish(c, fds);
}

/* A pool under more restarts than max_restarts within restart_period_ms
 * gives up and says why, even when no single worker is flapping (each one
 * reached Ready before it was killed). */
static void test_intensity_exceeded(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.size = 1;
  o.max_restarts = 5;
  o.restart_period_ms = 600000; /* all of them fall within the period */
  c->on_ready = kill_on_ready;
  c->kills_left = 100;
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  run_until(c, p_failed, 0);
  /* Five restarts were allowed, the sixth exceeded the limit. */
  assert_int_equal(c->n_ready, 6);
  assert_int_equal(c->kills_left, 100 - 6);
  const event_rec *f = find_event(c, RATCHET_POOL_EVENT_FAILED, 0);
  assert_non_null(f);
  assert_non_null(strstr(f->message, "more than 5 restarts within 600000 ms"));
  assert_non_null(strstr(f->message, "SIGKILL"));
  assert_int_equal(c->n_failed, 1);
  send_task(c, 1, "echo", "x", 0, RATCHET_POOL_ANY, -ESHUTDOWN);
  finish(c, fds);
}

static void test_sigkill_busy_worker(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  start_pool(c, &o, 1);
  send_task(c, 9, "sleep", "60000", 0, 0, 0);
  ratchet_pool_worker_stats ws;
  assert_int_equal(ratchet_pool_worker_stats_get(c->pool, 0, &ws), 0);
  assert_int_equal(kill(ws.pid, SIGKILL), 0);
  run_until(c, p_outcomes, 1);
  assert_false(c->outcomes[0].ok);
  assert_int_equal(c->outcomes[0].lost, RATCHET_POOL_LOST_DIED);
  assert_int_equal(c->outcomes[0].crashes, 1);
  assert_false(c->outcomes[0].poison);
  assert_non_null(strstr(c->outcomes[0].text, "killed by signal 9"));
  run_until(c, p_ready, 2);
  finish(c, fds);
}

static void test_bad_path_fails_fast(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  static const char *bad_argv[] = {"/nonexistent/ratchet-worker", NULL};
  o.argv = bad_argv;
  o.size = 2;
  /* The default backoff and flap limit: the pool must give up by itself. */
  o.restart_backoff = (ratchet_backoff_options)RATCHET_POOL_BACKOFF_INIT;
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  run_until(c, p_failed, 0);
  const event_rec *f = find_event(c, RATCHET_POOL_EVENT_FAILED, 0);
  assert_non_null(strstr(f->message, "/nonexistent/ratchet-worker"));
  assert_non_null(strstr(f->message, "No such file or directory"));
  assert_non_null(strstr(f->message, "status 127 before Ready"));
  assert_int_equal(c->n_failed, 1);
  assert_int_equal(c->n_ready, 0);
  send_task(c, 1, "echo", "x", 0, RATCHET_POOL_ANY, -ESHUTDOWN);
  ratchet_pool_stats st;
  ratchet_pool_stats_get(c->pool, &st);
  assert_true(st.failed);
  finish(c, fds);
}

static void test_never_ready(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "noready", NULL);
  o.start_timeout_ms = 50;
  o.flap_limit = 3;
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  run_until(c, p_failed, 0);
  assert_non_null(find_event(c, RATCHET_POOL_EVENT_HUNG, 2));
  const event_rec *f = find_event(c, RATCHET_POOL_EVENT_FAILED, 0);
  assert_non_null(strstr(f->message, "did not send Ready within 50 ms"));
  assert_non_null(strstr(f->message, "3 times in a row"));
  assert_int_equal(c->n_ready, 0);
  finish(c, fds);
}

static void test_protocol_error(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  start_pool(c, &o, 1);
  send_task(c, 5, "junk", "", 0, 0, 0);
  run_until(c, p_outcomes, 1);
  assert_int_equal(c->outcomes[0].lost, RATCHET_POOL_LOST_PROTOCOL);
  assert_int_equal(c->outcomes[0].crashes, 1);
  assert_non_null(strstr(c->outcomes[0].text, "broke the protocol"));
  run_until(c, p_ready, 2);
  finish(c, fds);
}

static void test_close_while_busy(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.size = 2;
  o.close_grace_ms = 0; /* cancel at once, then SIGTERM */
  start_pool(c, &o, 2);
  send_task(c, 1, "sleep", "60000", 0, 0, 0);
  ratchet_pool_close(c->pool, on_closed);
  send_task(c, 2, "echo", "x", 0, 1, -ESHUTDOWN);
  run_until(c, p_closed, 0);
  assert_int_equal(c->n_outcomes, 1);
  assert_false(c->outcomes[0].ok);
  assert_int_equal(c->outcomes[0].lost, RATCHET_POOL_LOST_CLOSED);
  assert_int_equal(c->outcomes[0].crashes, 0);
  assert_int_equal(c->n_exited, 2);
  assert_null(find_event(c, RATCHET_POOL_EVENT_RESTARTING, 0));
  finish(c, fds);
}

static void test_close_lets_work_finish(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.close_grace_ms = 60000;
  start_pool(c, &o, 1);
  send_task(c, 1, "sleep", "100", 0, 0, 0);
  ratchet_pool_close(c->pool, on_closed);
  run_until(c, p_closed, 0);
  assert_int_equal(c->n_outcomes, 1);
  assert_true(c->outcomes[0].ok);
  const event_rec *ex = find_event(c, RATCHET_POOL_EVENT_EXITED, 0);
  assert_int_equal(ex->exit_status, 0);
  finish(c, fds);
}

static void test_no_orphans(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.size = 2;
  start_pool(c, &o, 2);
  send_task(c, 1, "grandchild", "", 0, 0, 0);
  send_task(c, 2, "grandchild", "", 0, 1, 0);
  run_until(c, p_outcomes, 2);
  for (unsigned i = 0; i < 2; i++) {
    int g = atoi(c->outcomes[i].text);
    assert_true(g > 0);
    assert_int_equal(kill(g, 0), 0);
  }
  assert_true(group_alive(c->pids[0]));
  /* finish() closes, then checks no group member is left. */
  finish(c, fds);
}

static void test_resize(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  start_pool(c, &o, 1);
  assert_int_equal(ratchet_pool_resize(c->pool, 3), 0);
  run_until(c, p_ready, 3);
  send_task(c, 1, "echo", "x", 0, 2, 0);
  run_until(c, p_outcomes, 1);
  assert_int_equal(ratchet_pool_resize(c->pool, 1), 0);
  run_until(c, p_exited, 2);
  send_task(c, 2, "echo", "x", 0, 2, -ENOENT);
  ratchet_pool_stats st;
  ratchet_pool_stats_get(c->pool, &st);
  assert_int_equal(st.size, 1);
  assert_int_equal(st.ready, 1);
  assert_int_equal(st.restarts, 0);
  assert_int_equal(ratchet_pool_resize(c->pool, 0), -EINVAL);
  /* Growing again reuses the slots. */
  assert_int_equal(ratchet_pool_resize(c->pool, 2), 0);
  run_until(c, p_ready, 4);
  send_task(c, 3, "echo", "x", 0, 1, 0);
  run_until(c, p_outcomes, 2);
  assert_true(c->outcomes[1].ok);
  finish(c, fds);
}

static void test_fork_mode(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.mode = RATCHET_POOL_FORK;
  o.argv = NULL;
  o.fork_main = fork_main;
  o.size = 2;
  start_pool(c, &o, 2);
  send_task(c, 1, "echo", "forked", 0, 0, 0);
  send_task(c, 2, "echo", "forked", 0, 1, 0);
  run_until(c, p_outcomes, 2);
  assert_true(c->outcomes[0].ok && c->outcomes[1].ok);
  assert_string_equal(c->outcomes[0].text, "forked");
  /* A forked worker that crashes is restarted like any other. */
  send_task(c, 3, "die", "", 0, 0, 0);
  run_until(c, p_outcomes, 3);
  assert_int_equal(c->outcomes[2].lost, RATCHET_POOL_LOST_DIED);
  run_until(c, p_ready, 3);
  finish(c, fds);
}

/* With pipelining, a worker that dies is blamed only for the task it was
 * running (the oldest): the tasks queued behind it never ran and come back
 * as QUEUED with their crash count unchanged, so they cannot become poison
 * pills alongside a real one. */
static void test_pipelined_behind_pill(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.size = 1;
  o.pipeline_depth = 3;
  o.poison_threshold = 2;
  start_pool(c, &o, 1);
  send_task(c, 1, "die", "", 1, 0, 0); /* a second crash: poison */
  send_task(c, 2, "echo", "a", 1, 0, 0);
  send_task(c, 3, "echo", "b", 0, 0, 0);
  run_until(c, p_outcomes, 3);
  assert_int_equal(c->outcomes[0].id, 1);
  assert_int_equal(c->outcomes[0].lost, RATCHET_POOL_LOST_DIED);
  assert_int_equal(c->outcomes[0].crashes, 2);
  assert_true(c->outcomes[0].poison);
  for (int i = 1; i < 3; i++) {
    assert_int_equal(c->outcomes[i].id, (uint64_t)i + 1);
    assert_int_equal(c->outcomes[i].lost, RATCHET_POOL_LOST_QUEUED);
    assert_false(c->outcomes[i].poison);
  }
  assert_int_equal(c->outcomes[1].crashes, 1); /* unchanged */
  assert_int_equal(c->outcomes[2].crashes, 0);
  assert_string_equal(ratchet_pool_lost_reason_name(RATCHET_POOL_LOST_QUEUED),
                      "queued");
  run_until(c, p_ready, 2); /* restarted */
  finish(c, fds);
}

static void test_fork_worker_registry(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_worker_options wo = RATCHET_WORKER_OPTIONS_INIT;
  wo.parent_pid = (int)getpid();
  ratchet_worker *w = NULL;
  assert_int_equal(ratchet_worker_new(&wo, &w), 0);
  assert_int_equal(ratchet_worker_register(w, "upper", upper_handler, NULL), 0);
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.mode = RATCHET_POOL_FORK;
  o.argv = NULL;
  o.worker = w;
  o.size = 2;
  start_pool(c, &o, 2);
  send_task(c, 7, "upper", "shout", 0, 1, 0);
  run_until(c, p_outcomes, 1);
  assert_true(c->outcomes[0].ok);
  assert_string_equal(c->outcomes[0].text, "SHOUT");
  /* The handler's Log line reached on_log, tagged. */
  assert_int_equal(c->n_logs, 1);
  assert_int_equal(c->log_task, 7);
  assert_int_equal(c->log_worker, 1);
  assert_int_equal(c->log_level, RATCHET_LOG_WARN);
  assert_string_equal(c->log_text, "upper shout");
  /* An unknown kind is the registry's answer, not a crash. */
  send_task(c, 8, "nope", "", 0, 0, 0);
  run_until(c, p_outcomes, 2);
  assert_true(c->outcomes[1].ok);
  finish(c, fds);
  ratchet_worker_free(w);
}

static void test_log_frames(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  start_pool(c, &o, 1);
  send_task(c, 3, "log", "disk almost full", 0, 0, 0);
  run_until(c, p_outcomes, 1);
  assert_true(c->outcomes[0].ok);
  assert_int_equal(c->n_logs, 1);
  assert_int_equal(c->log_task, 3);
  assert_int_equal(c->log_level, RATCHET_LOG_WARN);
  assert_string_equal(c->log_text, "disk almost full");
  finish(c, fds);
}

/* A worker that dies mid-task in the ways a process can. */
static void test_crash_kinds(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  static const char *const kinds[] = {"segv", "abort", "exit0"};
  static const int signals[] = {SIGSEGV, SIGABRT, 0};
  for (unsigned k = 0; k < 3; k++) {
    run_until(c, p_ready, k + 1);
    send_task(c, k + 1, kinds[k], "", 0, 0, 0);
    run_until(c, p_outcomes, k + 1);
    const outcome_rec *r = &c->outcomes[k];
    assert_false(r->ok);
    assert_int_equal(r->lost, RATCHET_POOL_LOST_DIED);
    assert_int_equal(r->crashes, 1);
    const event_rec *ex = find_event(c, RATCHET_POOL_EVENT_EXITED, k);
    assert_non_null(ex);
    assert_int_equal(ex->term_signal, signals[k]);
    if (signals[k] != 0) {
      assert_int_equal(ex->exit_status, -1);
      assert_non_null(strstr(ex->message, k == 0 ? "SIGSEGV" : "SIGABRT"));
      /* The core flag is reported as the kernel set it (the child set
       * RLIMIT_CORE to 0, but a piped core_pattern may still dump). */
      assert_int_equal(ex->core_dumped,
                       strstr(ex->message, "core dumped") != NULL);
    } else {
      assert_int_equal(ex->exit_status, 0);
      assert_non_null(strstr(r->text, "exited with status 0"));
    }
  }
  /* Each was an abnormal end of a worker that had done no task: flaps,
   * but below the limit; the slot serves again. */
  run_until(c, p_ready, 4);
  send_task(c, 9, "echo", "alive", 0, 0, 0);
  run_until(c, p_outcomes, 4);
  assert_true(c->outcomes[3].ok);
  assert_int_equal(c->n_failed, 0);
  finish(c, fds);
}

static bool p_hung(ctx *c, uintptr_t n) {
  return c->n_hung >= n;
}

static void test_task_timeout(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.task_timeout_ms = 30;
  o.kill_grace_ms = 50;
  o.poison_threshold = 1;
  start_pool(c, &o, 1);
  /* A task that answers its Cancel keeps its worker. */
  send_task(c, 1, "cancelable", "", 0, 0, 0);
  run_until(c, p_outcomes, 1);
  assert_true(c->outcomes[0].ok);
  assert_int_equal(c->n_hung, 0);
  /* One that ignores Cancel: HUNG, SIGTERM ends it. */
  send_task(c, 2, "hang", "", 0, 0, 0);
  run_until(c, p_outcomes, 2);
  const outcome_rec *r = &c->outcomes[1];
  assert_false(r->ok);
  assert_int_equal(r->lost, RATCHET_POOL_LOST_HUNG);
  assert_int_equal(r->crashes, 1);
  assert_true(r->poison); /* a hang counts toward the threshold */
  assert_non_null(strstr(r->text, "ran past its deadline"));
  assert_int_equal(c->n_hung, 1);
  const event_rec *ex = find_event(c, RATCHET_POOL_EVENT_EXITED, 0);
  assert_int_equal(ex->term_signal, SIGTERM);
  /* One that ignores SIGTERM too: SIGKILL. */
  run_until(c, p_ready, 2);
  send_task(c, 3, "hang-term", "", 0, 0, 0);
  run_until(c, p_outcomes, 3);
  assert_int_equal(c->outcomes[2].lost, RATCHET_POOL_LOST_HUNG);
  ex = find_event(c, RATCHET_POOL_EVENT_EXITED, 1);
  assert_int_equal(ex->term_signal, SIGKILL);
  assert_int_equal(c->n_hung, 2);
  ratchet_pool_stats st;
  ratchet_pool_stats_get(c->pool, &st);
  assert_int_equal(st.hung, 2);
  finish(c, fds);
}

static void test_task_own_deadline(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  start_pool(c, &o, 1);
  /* No pool timeout: the task's own deadline_unix_ms brings the Cancel. */
  Ratchet__V1__Task t;
  ratchet__v1__task__init(&t);
  char kind[] = "cancelable";
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  t.id = 1;
  t.attempt = 1;
  t.kind = kind;
  t.deadline_unix_ms =
      (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u + 20u;
  assert_int_equal(ratchet_pool_dispatch(c->pool, &t, 0, 0, NULL), 0);
  run_until(c, p_outcomes, 1);
  assert_true(c->outcomes[0].ok);
  assert_int_equal(c->n_hung, 0);
  finish(c, fds);
}

static void test_oversized_frame(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.max_frame_size = 1024;
  start_pool(c, &o, 1);
  send_task(c, 1, "big", "", 0, 0, 0);
  run_until(c, p_outcomes, 1);
  assert_int_equal(c->outcomes[0].lost, RATCHET_POOL_LOST_PROTOCOL);
  assert_int_equal(c->outcomes[0].crashes, 1);
  assert_non_null(strstr(c->outcomes[0].text, "broke the protocol"));
  run_until(c, p_ready, 2);
  finish(c, fds);
}

static void test_unasked_frames(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  start_pool(c, &o, 1);
  send_task(c, 1, "flood", "", 0, 0, 0);
  run_until(c, p_outcomes, 1);
  assert_int_equal(c->n_outcomes, 1); /* exactly one outcome */
  assert_int_equal(c->outcomes[0].lost, RATCHET_POOL_LOST_PROTOCOL);
  assert_non_null(strstr(c->outcomes[0].text, "not in flight"));
  run_until(c, p_ready, 2);
  send_task(c, 2, "echo", "again", 0, 0, 0);
  run_until(c, p_outcomes, 2);
  assert_true(c->outcomes[1].ok);
  finish(c, fds);
}

static bool p_total_lines(ctx *c, uintptr_t n) {
  return c->total_lines >= n;
}

static void test_stderr_flood(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  start_pool(c, &o, 1);
  /* 60,000 lines of 64 bytes: ~4 MB, far beyond any pipe buffer. */
  send_task(c, 1, "stderr-flood", "60000", 0, 0, 0);
  run_until(c, p_outcomes, 1);
  assert_true(c->outcomes[0].ok);
  run_until(c, p_total_lines, 60000);
  assert_int_equal(c->total_lines, 60000);
  assert_string_equal(c->lines[0],
                      "line 00000000 0123456789abcdef0123456789abcdef0123456");
  ratchet_pool_worker_stats ws;
  assert_int_equal(ratchet_pool_worker_stats_get(c->pool, 0, &ws), 0);
  assert_int_equal(ws.stderr_lines, 60000);
  finish(c, fds);
}

static void test_grandchild_ignores_term(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  start_pool(c, &o, 1);
  send_task(c, 1, "grandchild-term", "", 0, 0, 0);
  run_until(c, p_outcomes, 1);
  int g = atoi(c->outcomes[0].text);
  assert_true(g > 0);
  assert_int_equal(kill(g, SIGTERM), 0); /* ignored */
  assert_true(group_alive(c->pids[0]));
  /* finish() closes and scans /proc: nothing of the group is left. */
  finish(c, fds);
}

static bool p_pongs(ctx *c, uintptr_t n) {
  ratchet_pool_worker_stats ws;
  return ratchet_pool_worker_stats_get(c->pool, 0, &ws) == 0 && ws.pongs >= n;
}

static void test_ping(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.ping_interval_ms = 5;
  o.ping_timeout_ms = 5000;
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  run_until(c, p_pongs, 3);
  ratchet_pool_worker_stats ws;
  assert_int_equal(ratchet_pool_worker_stats_get(c->pool, 0, &ws), 0);
  assert_int_equal(ws.rss_kb, 4321);
  /* Tasks and pings interleave. */
  send_task(c, 1, "echo", "x", 0, 0, 0);
  run_until(c, p_outcomes, 1);
  assert_true(c->outcomes[0].ok);
  run_until(c, p_pongs, ws.pongs + 2);
  assert_int_equal(c->n_hung, 0);
  finish(c, fds);
}

static void test_ping_timeout(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "deaf", NULL);
  o.ping_interval_ms = 5;
  o.ping_timeout_ms = 30;
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  run_until(c, p_hung, 1);
  const event_rec *h = find_event(c, RATCHET_POOL_EVENT_HUNG, 0);
  assert_non_null(strstr(h->message, "did not answer Ping"));
  run_until(c, p_exited, 1);
  const event_rec *ex = find_event(c, RATCHET_POOL_EVENT_EXITED, 0);
  assert_int_equal(ex->term_signal, SIGTERM);
  assert_non_null(find_event(c, RATCHET_POOL_EVENT_RESTARTING, 0));
  run_until(c, p_ready, 2);
  finish(c, fds);
}

/* Sends n tasks (ids first ..), keeping every worker with room busy,
 * until all n have an outcome. */
static void run_tasks(ctx *c, uint64_t first, unsigned n, const char *kind,
                      const char *payload) {
  unsigned sent = 0, base = c->n_outcomes;
  while (c->n_outcomes < base + n) {
    while (sent < n) {
      Ratchet__V1__Task t;
      ratchet__v1__task__init(&t);
      char kbuf[32];
      snprintf(kbuf, sizeof kbuf, "%s", kind);
      t.id = first + sent;
      t.attempt = 1;
      t.kind = kbuf;
      t.payload.data = (uint8_t *)(uintptr_t)payload;
      t.payload.len = strlen(payload);
      int rc = ratchet_pool_dispatch(c->pool, &t, 0, RATCHET_POOL_ANY, NULL);
      if (rc == -EAGAIN)
        break;
      assert_int_equal(rc, 0);
      sent++;
    }
    assert_false(c->timed_out);
    uv_ref((uv_handle_t *)&c->watchdog);
    uv_run(&c->loop, UV_RUN_ONCE);
    uv_unref((uv_handle_t *)&c->watchdog);
  }
}

static void test_recycle_by_count(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.size = 4;
  o.recycle_after_tasks = 3;
  o.recycle_jitter_tasks = 3;
  o.seed = 42; /* the jitter draws, hence the assertions, are fixed */
  start_pool(c, &o, 4);
  run_tasks(c, 1, 60, "echo", "r");
  /* No task lost: every one answered, exactly once. */
  assert_int_equal(c->n_outcomes, 60);
  uint8_t seen[61] = {0};
  for (unsigned i = 0; i < 60; i++) {
    assert_true(c->outcomes[i].ok);
    assert_true(c->outcomes[i].id >= 1 && c->outcomes[i].id <= 60);
    assert_int_equal(seen[c->outcomes[i].id]++, 0);
  }
  assert_true(c->n_recycled >= 4);
  /* Jitter spreads them: not all at the same count, each within 3..6. */
  uint64_t lo = UINT64_MAX, hi = 0;
  for (unsigned i = 0; i < c->n_recycled; i++) {
    const event_rec *r = find_event(c, RATCHET_POOL_EVENT_RECYCLED, i);
    assert_true(r->tasks_done >= 3 && r->tasks_done <= 6);
    lo = r->tasks_done < lo ? r->tasks_done : lo;
    hi = r->tasks_done > hi ? r->tasks_done : hi;
  }
  assert_true(lo < hi);
  ratchet_pool_stats st;
  ratchet_pool_stats_get(c->pool, &st);
  assert_int_equal(st.recycled, c->n_recycled);
  assert_int_equal(st.restarts, 0); /* not crashes, not restarts */
  assert_int_equal(st.tasks_lost, 0);
  assert_int_equal(c->n_failed, 0);
  /* Every recycled process exited 0 on Shutdown. */
  for (unsigned i = 0; find_event(c, RATCHET_POOL_EVENT_EXITED, i); i++)
    assert_int_equal(find_event(c, RATCHET_POOL_EVENT_EXITED, i)->exit_status,
                     0);
  finish(c, fds);
}

static bool p_recycled(ctx *c, uintptr_t n) {
  return c->n_recycled >= n;
}

static void test_recycle_by_rss(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.max_rss_kb = 96 * 1024;
  start_pool(c, &o, 1);
  send_task(c, 1, "echo", "small", 0, 0, 0);
  run_until(c, p_outcomes, 1);
  assert_int_equal(c->n_recycled, 0);
  ratchet_pool_worker_stats ws;
  assert_int_equal(ratchet_pool_worker_stats_get(c->pool, 0, &ws), 0);
  assert_true(ws.rss_kb > 0 && ws.rss_kb < 96 * 1024);
  send_task(c, 2, "alloc", "128", 0, 0, 0);
  run_until(c, p_outcomes, 2);
  assert_true(c->outcomes[1].ok);
  run_until(c, p_recycled, 1);
  const event_rec *r = find_event(c, RATCHET_POOL_EVENT_RECYCLED, 0);
  assert_non_null(r);
  if (r == NULL)
    return;
  assert_non_null(strstr(r->message, "RSS"));
  assert_int_equal(r->tasks_done, 2);
  run_until(c, p_ready, 2);
  send_task(c, 3, "echo", "fresh", 0, 0, 0);
  run_until(c, p_outcomes, 3);
  assert_true(c->outcomes[2].ok);
  assert_int_equal(ratchet_pool_worker_stats_get(c->pool, 0, &ws), 0);
  assert_int_equal(ws.generation, 2);
  assert_int_equal(ws.recycles, 1);
  assert_int_equal(ws.restarts, 0);
  finish(c, fds);
}

/* Scaling down under load: a removed slot's tasks finish within
 * close_grace_ms (Results), exactly one outcome each. */
static void test_resize_under_load(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.size = 3;
  o.close_grace_ms = 60000;
  start_pool(c, &o, 3);
  send_task(c, 1, "sleep", "50", 0, 1, 0);
  send_task(c, 2, "sleep", "50", 0, 2, 0);
  send_task(c, 3, "sleep", "50", 0, 0, 0);
  assert_int_equal(ratchet_pool_resize(c->pool, 1), 0);
  send_task(c, 4, "echo", "x", 0, 1, -ENOENT);
  /* Scaling up while work is in flight. */
  assert_int_equal(ratchet_pool_resize(c->pool, 4), 0);
  run_until(c, p_outcomes, 3);
  run_until(c, p_ready, 6);
  for (unsigned i = 0; i < 3; i++)
    assert_true(c->outcomes[i].ok);
  send_task(c, 5, "echo", "new", 0, 3, 0);
  run_until(c, p_outcomes, 4);
  assert_true(c->outcomes[3].ok);
  ratchet_pool_stats st;
  ratchet_pool_stats_get(c->pool, &st);
  assert_int_equal(st.tasks_lost, 0);
  assert_int_equal(st.restarts, 0);
  finish(c, fds);
}

/* ... and when they do not finish in time: lost CLOSED, no crash. */
static void test_resize_loses_closed(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.size = 2;
  o.close_grace_ms = 0;
  start_pool(c, &o, 2);
  send_task(c, 1, "hang", "", 0, 1, 0);
  assert_int_equal(ratchet_pool_resize(c->pool, 1), 0);
  run_until(c, p_exited, 1);
  assert_int_equal(c->n_outcomes, 1);
  assert_int_equal(c->outcomes[0].lost, RATCHET_POOL_LOST_CLOSED);
  assert_int_equal(c->outcomes[0].crashes, 0);
  assert_null(find_event(c, RATCHET_POOL_EVENT_RESTARTING, 0));
  finish(c, fds);
}

static void test_backpressure(void **state) {
  (void)state;
  int fds = tu_count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.pipeline_depth = 4;
  start_pool(c, &o, 1);
  /* 1.5 MiB queued at once is above the 1 MiB high watermark. */
  size_t n = 3u << 19;
  char *big = malloc(n + 1);
  assert_non_null(big);
  memset(big, 'b', n);
  big[n] = '\0';
  send_task(c, 1, "sleep", big, 0, 0, 0);
  free(big);
  send_task(c, 2, "echo", "x", 0, 0, -EAGAIN);
  send_task(c, 2, "echo", "x", 0, RATCHET_POOL_ANY, -EAGAIN);
  run_until(c, p_outcomes, 1);
  assert_true(c->outcomes[0].ok);
  send_task(c, 2, "echo", "x", 0, 0, 0);
  run_until(c, p_outcomes, 2);
  ratchet_pool_stats st;
  ratchet_pool_stats_get(c->pool, &st);
  assert_true(st.drains >= 1);
  finish(c, fds);
}

int test_pool(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_new_out_of_memory),
      cmocka_unit_test(test_runs_tasks),
      cmocka_unit_test(test_crash_on_nth_task),
      cmocka_unit_test(test_sigkill_from_outside),
      cmocka_unit_test(test_intensity_exceeded),
      cmocka_unit_test(test_sigkill_busy_worker),
      cmocka_unit_test(test_bad_path_fails_fast),
      cmocka_unit_test(test_never_ready),
      cmocka_unit_test(test_protocol_error),
      cmocka_unit_test(test_close_while_busy),
      cmocka_unit_test(test_close_lets_work_finish),
      cmocka_unit_test(test_no_orphans),
      cmocka_unit_test(test_resize),
      cmocka_unit_test(test_fork_mode),
      cmocka_unit_test(test_pipelined_behind_pill),
      cmocka_unit_test(test_fork_worker_registry),
      cmocka_unit_test(test_log_frames),
      cmocka_unit_test(test_crash_kinds),
      cmocka_unit_test(test_task_timeout),
      cmocka_unit_test(test_task_own_deadline),
      cmocka_unit_test(test_oversized_frame),
      cmocka_unit_test(test_unasked_frames),
      cmocka_unit_test(test_stderr_flood),
      cmocka_unit_test(test_grandchild_ignores_term),
      cmocka_unit_test(test_ping),
      cmocka_unit_test(test_ping_timeout),
      cmocka_unit_test(test_recycle_by_count),
      cmocka_unit_test(test_recycle_by_rss),
      cmocka_unit_test(test_resize_under_load),
      cmocka_unit_test(test_resize_loses_closed),
      cmocka_unit_test(test_backpressure),
  };
  return cmocka_run_group_tests_name("pool", tests, tu_uv_signal_setup, NULL);
}
