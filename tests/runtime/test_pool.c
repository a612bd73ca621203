/*
 * test_pool.c - the process pool (runtime/src/pool.c, process.c,
 * supervisor.c), driven on a real libuv loop against real worker processes.
 *
 * Spawn-mode workers are this binary again as "--child pool-worker MODE...",
 * a small worker on the blocking fd transport whose task kinds misbehave on
 * demand (die, write junk to stdout, leave a grandchild behind); fork-mode
 * workers run the same code in a forked copy. Tests wait for events and
 * outcomes, never for time: the only clock is a watchdog that fails a test
 * which would otherwise hang. Each test runs on its own loop and checks that
 * closing the pool leaves no handle (uv_loop_close succeeds), no descriptor
 * and no process of the workers' groups behind.
 */
#define _GNU_SOURCE

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "ratchet/codec.h"
#include "ratchet/error.h"
#include "ratchet/pool.h"
#include "ratchet/transport.h"
#include "testutil.h"

/* ---- the child worker ------------------------------------------------- */

static char kind_all[] = "*";
static char worker_version[] = "test";

/* Serves the protocol on fds 0/1. mode "serve" answers; "noready" reads
 * Hello and then waits forever. crash_on > 0: the crash_on-th task exits 42.
 * Task kinds: echo, stderr (payload to stderr), die (exit 42), junk (bytes
 * that are no frame on stdout), grandchild (forks a process that waits;
 * output is its pid), sleep (payload: milliseconds). */
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

/* ---- the harness ------------------------------------------------------ */

#define MAX_RECORDS 256

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
  int pids[64]; /* every worker pid seen */
  unsigned n_pids;
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
    snprintf(r->message, sizeof r->message, "%s", ev->message);
  }
  if (ev->type == RATCHET_POOL_EVENT_STARTING && c->n_pids < 64)
    c->pids[c->n_pids++] = ev->pid;
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
  if (c->n_lines < 8) {
    snprintf(c->lines[c->n_lines], sizeof c->lines[0], "%s", line);
    c->line_workers[c->n_lines++] = worker;
  }
}

static void on_closed(void *data) {
  ctx *c = data;
  c->closed = true;
}

static void watchdog_cb(uv_timer_t *h) {
  ctx *c = h->data;
  c->timed_out = true;
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    n++;
  closedir(d);
  return n;
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

/* True if a live (non-zombie) process is in the process group pgid. */
static bool group_alive(int pgid) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  bool found = false;
  while (!found && (e = readdir(d)) != NULL) {
    if (!isdigit((unsigned char)e->d_name[0]))
      continue;
    char path[300], buf[512];
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
      continue;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* pid (comm) state ppid pgrp ... ; comm may hold spaces. */
    char *rp = strrchr(buf, ')');
    char state;
    int ppid, pgrp;
    if (rp != NULL && sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 &&
        pgrp == pgid && state != 'Z')
      found = true;
  }
  closedir(d);
  return found;
}

/* Closes the pool, runs the loop dry, checks nothing is left. */
static void finish(ctx *c, int fds_before) {
  if (!c->closed) {
    ratchet_pool_close(c->pool, on_closed);
    run_until(c, p_closed, 0);
  }
  for (unsigned i = 0; i < c->n_pids; i++)
    assert_false(group_alive(c->pids[i]));
  uv_close((uv_handle_t *)&c->watchdog, NULL);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&c->loop), 0);
  assert_int_equal(count_fds(), fds_before);
  free(c);
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
  /* Not yet implemented: refused, never ignored. */
  for (int i = 0; i < 5; i++) {
    bad = o;
    uint32_t *field[] = {&bad.task_timeout_ms, &bad.ping_interval_ms,
                         &bad.ping_timeout_ms, &bad.recycle_after_tasks,
                         &bad.recycle_jitter_tasks};
    *field[i] = 5;
    assert_int_equal(ratchet_pool_new(&loop, &bad, &p), -ENOTSUP);
  }
  bad = o;
  bad.max_rss_kb = 1000;
  assert_int_equal(ratchet_pool_new(&loop, &bad, &p), -ENOTSUP);
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

static void test_runs_tasks(void **state) {
  (void)state;
  int fds = count_fds();
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
  int fds = count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", "3");
  o.poison_threshold = 2;
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  run_until(c, p_ready, 1);
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
  int fds = count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.size = 2;
  c->on_ready = kill_on_ready;
  c->kills_left = 20;
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  run_until(c, p_ready, 2 + 20);
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

static void test_sigkill_busy_worker(void **state) {
  (void)state;
  int fds = count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  run_until(c, p_ready, 1);
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
  int fds = count_fds();
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
  int fds = count_fds();
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
  int fds = count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  run_until(c, p_ready, 1);
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
  int fds = count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.size = 2;
  o.close_grace_ms = 0; /* cancel at once, then SIGTERM */
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  run_until(c, p_ready, 2);
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
  int fds = count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.close_grace_ms = 60000;
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  run_until(c, p_ready, 1);
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
  int fds = count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.size = 2;
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  run_until(c, p_ready, 2);
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
  int fds = count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  run_until(c, p_ready, 1);
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
  int fds = count_fds();
  ctx *c = ctx_new();
  ratchet_pool_options o = spawn_options(c, "serve", NULL);
  o.mode = RATCHET_POOL_FORK;
  o.argv = NULL;
  o.fork_main = fork_main;
  o.size = 2;
  assert_int_equal(ratchet_pool_new(&c->loop, &o, &c->pool), 0);
  assert_int_equal(ratchet_pool_start(c->pool), 0);
  run_until(c, p_ready, 2);
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

/* libuv opens process-wide descriptors on first use of signals; open them
 * before any test counts descriptors. */
static int group_setup(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_signal_t s;
  uv_loop_init(&loop);
  uv_signal_init(&loop, &s);
  uv_close((uv_handle_t *)&s, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return 0;
}

int test_pool(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_runs_tasks),
      cmocka_unit_test(test_crash_on_nth_task),
      cmocka_unit_test(test_sigkill_from_outside),
      cmocka_unit_test(test_sigkill_busy_worker),
      cmocka_unit_test(test_bad_path_fails_fast),
      cmocka_unit_test(test_never_ready),
      cmocka_unit_test(test_protocol_error),
      cmocka_unit_test(test_close_while_busy),
      cmocka_unit_test(test_close_lets_work_finish),
      cmocka_unit_test(test_no_orphans),
      cmocka_unit_test(test_resize),
      cmocka_unit_test(test_fork_mode),
  };
  return cmocka_run_group_tests_name("pool", tests, group_setup, NULL);
}
