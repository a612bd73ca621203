/*
 * run.c - the driver of `ratchet run` (run.h).
 *
 * One libuv loop runs an orchestrator over one pool of `ratchet worker`
 * processes (this very executable, found through /proc/self/exe). Inputs
 * are read lazily: feed() turns records into tasks (run_job.c) and submits
 * them until `window` tasks are outstanding (4 x jobs, at least 16), and
 * every completion calls feed() again, so a million inputs never sit in
 * memory at once. With -k the window also bounds how far ahead of the
 * next task to print the run may go, which bounds what run_output.c
 * holds back.
 *
 * Each completion is printed (run_output.c), appended to the job log with
 * one write, counted for the progress line (run_progress.c) and the exit
 * status, and checked against --halt. The run ends when the input is
 * exhausted (or launching stopped) and no task is outstanding: the
 * orchestrator is closed and its callback closes our own handles, which
 * lets uv_run return.
 *
 * Stopping. --halt soon, a first SIGINT/SIGTERM (run_signals.c) and a
 * worker pool that gave up all stop launching. A signal also arms a timer
 * of --kill-grace, after which the tasks still running are cancelled: the
 * worker SIGTERMs the command's process group, then SIGKILLs it after the
 * kill grace. --halt now and a second signal cancel at once. Work that
 * must not be done inside the orchestrator's callbacks (closing it) is
 * deferred to a zero-delay timer, the "kick".
 */
#define _GNU_SOURCE /* readlink on /proc */

#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "diag.h"
#include "input.h"
#include "janitor.h"
#include "joblog.h"
#include "log.h"
#include "ratchet/alloc.h"
#include "ratchet/error.h"
#include "ratchet/events.h"
#include "ratchet/metrics.h"
#include "ratchet/orch.h"
#include "ratchet/store.h"
#include "ratchet/tiered.h"
#include "record.h"
#include "report.h"
#include "run_job.h"
#include "run_log.h"
#include "run_output.h"
#include "run_progress.h"
#include "run_signals.h"
#include "sbuf.h"
#include "trace.h"

#define WINDOW_PER_JOB 4u
#define WINDOW_MIN     16u
#define PLUGIN_DEPTH   16u

/* Tasks in flight per worker. A plugin's or the echo kind's handler runs
 * in the worker itself and takes microseconds, so one task at a time
 * leaves the worker waiting a round trip for each: 16 queued keep it busy
 * (about 33k tasks/s at depth 1). A command is worth a process of its
 * own, and so is a task with --timeout, whose clock would start while it
 * still waited in the worker's queue. */
static uint32_t pipeline_depth(const cli_run_options *o) {
  bool in_process = o->kind != NULL && strcmp(o->kind, "exec") != 0;
  return in_process && o->timeout_ns == 0 ? PLUGIN_DEPTH : 1;
}

typedef struct run_task {
  struct run_task *prev, *next; /* the outstanding tasks */
  uint64_t id;                  /* the orchestrator's */
  uint64_t order;               /* 0, 1, ... in submission order */
  bool running;                 /* an attempt is on a worker */
  cli_job job;
} run_task;

typedef struct run {
  const cli_run_options *o;
  uv_loop_t loop;
  ratchet_orch *orch;
  ratchet_subscription *sub;
  ratchet_store *store;
  ratchet_tiered *cache;
  ratchet_key_builder *kb;
  cli_job_env env;
  cli_input *in;
  uv_poll_t in_poll; /* a pipe or terminal input: read when readable */
  bool in_poll_init, in_poll_active;
  cli_joblog_state *resume;
  cli_joblog *jl;
  cli_out *out;
  cli_progress *prog;
  cli_progress_counts counts;
  cli_signals *sigs;
  const cli_janitor *jan; /* NULL if it did not start */
  uv_timer_t kick, grace;
  bool timers_init;
  ratchet_metrics *metrics; /* --metrics-file, --metrics-listen */
  uv_timer_t metrics_timer; /* rewrites --metrics-file */
  bool metrics_timer_init;
  bool metrics_detached;     /* holds the run's final numbers */
  bool metrics_write_failed; /* warned once */

  const char *kind;
  const char *worker_argv[5];
  char exe[PATH_MAX];
  ratchet_policy_retry retry;
  ratchet_policy_breaker breaker;
  ratchet_policy_cache cache_policy;

  run_task *live, *oldest; /* outstanding tasks, newest first */
  uint32_t n_live;
  run_task *pending; /* built, refused with -EAGAIN, to submit again */
  uint32_t window;
  uint64_t next_order;
  uint64_t ok, failed;

  bool input_done, stopping, closing, closed, halted, cancelled_all;
  int signal;      /* the first SIGINT/SIGTERM, 0: none */
  bool fatal;      /* exit 255 */
  bool fatal_pool; /* the pool gave up: per-task errors are noise */
  char fatal_msg[2400];
  uint64_t seen_stderr[16]; /* hashes of worker stderr lines shown */
  unsigned n_seen;
  cli_log log;  /* every diagnostic line (log.h) */
  cli_rec *rec; /* for --trace and --report; NULL without them */
} run;

static void set_fatal(run *r, const char *fmt, ...) CLI_PRINTF(2, 3);

static void set_fatal(run *r, const char *fmt, ...) {
  if (r->fatal)
    return;
  r->fatal = true;
  r->stopping = true;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->fatal_msg, sizeof r->fatal_msg, fmt, ap);
  va_end(ap);
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void on_kick(uv_timer_t *h);

static void kick(run *r) {
  if (r->timers_init && !r->closed)
    (void)uv_timer_start(&r->kick, on_kick, 0, 0);
}

static void task_free(run_task *t) {
  if (t == NULL)
    return;
  cli_job_free(&t->job);
  ratchet_free(t);
}

static void live_add(run *r, run_task *t) {
  t->prev = NULL;
  t->next = r->live;
  if (r->live != NULL)
    r->live->prev = t;
  r->live = t;
  if (r->oldest == NULL)
    r->oldest = t;
  r->n_live++;
}

static void live_remove(run *r, run_task *t) {
  if (t->prev != NULL)
    t->prev->next = t->next;
  else
    r->live = t->next;
  if (t->next != NULL)
    t->next->prev = t->prev;
  else
    r->oldest = t->prev;
  r->n_live--;
}

/* The outstanding task with this id, searched from the oldest: tasks are
 * dispatched roughly in order, so it is found within a few steps. */
static run_task *live_find(run *r, uint64_t id) {
  for (run_task *t = r->oldest; t != NULL; t = t->prev)
    if (t->id == id)
      return t;
  return NULL;
}

/* Stops what has not started: queued tasks, and retries waiting for their
 * delay. They end CANCELLED without running. */
static void cancel_waiting(run *r) {
  for (run_task *t = r->live; t != NULL; t = t->next)
    if (!t->running)
      (void)ratchet_orch_cancel(r->orch, t->id);
}

static void cancel_all(run *r) {
  r->cancelled_all = true;
  for (run_task *t = r->live; t != NULL; t = t->next)
    (void)ratchet_orch_cancel(r->orch, t->id);
}

/* ---- metrics ---------------------------------------------------------- */

/* Rewrites --metrics-file; a failure is reported once (the run goes on). */
static int metrics_write(run *r) {
  if (r->metrics == NULL || r->o->metrics_file == NULL)
    return 0;
  int rc = ratchet_metrics_write_file(r->metrics, r->o->metrics_file);
  if (rc != 0 && !r->metrics_write_failed) {
    r->metrics_write_failed = true;
    cli_log_msg(&r->log, CLI_LOG_WARN, NULL,
                "--metrics-file: cannot write '%s': %s", r->o->metrics_file,
                ratchet_strerror(rc));
  }
  return rc;
}

static void on_metrics_timer(uv_timer_t *h) {
  (void)metrics_write(h->data);
}

/* The metrics borrow the orchestrator: they take its final numbers and
 * let go of it once no task is outstanding, before it is closed (or, if
 * it is closed with tasks still running, after the last of them ends). */
static void metrics_detach_if_idle(run *r) {
  if (r->metrics == NULL || r->metrics_detached || r->n_live > 0)
    return;
  (void)ratchet_metrics_detach(r->metrics);
  r->metrics_detached = true;
}

/* Before the orchestrator starts, so that the first worker starts count. */
static int start_metrics(run *r) {
  const cli_run_options *o = r->o;
  if (o->metrics_file == NULL && o->metrics_listen == NULL)
    return 0;
  int rc = ratchet_metrics_new(r->orch, &r->metrics);
  if (rc != 0) {
    r->metrics = NULL;
    set_fatal(r, "cannot set up the metrics: %s", ratchet_strerror(rc));
    return rc;
  }
  if (o->metrics_listen != NULL) {
    uint16_t port = 0;
    if ((rc = ratchet_metrics_listen(r->metrics, o->metrics_listen, &port)) !=
        0) {
      set_fatal(r, "--metrics-listen: cannot listen on '%s': %s",
                o->metrics_listen, ratchet_strerror(rc));
      goto fail;
    }
    if (!o->quiet)
      fprintf(stderr, "ratchet run: metrics at http://%s:%u/metrics\n",
              strchr(o->metrics_listen, '[') != NULL ? "[::1]" : "127.0.0.1",
              (unsigned)port);
  }
  if (o->metrics_file != NULL) {
    /* A path that cannot be written is a mistake to report now, not at
     * the end of a long run. */
    if ((rc = ratchet_metrics_write_file(r->metrics, o->metrics_file)) != 0) {
      set_fatal(r, "--metrics-file: cannot write '%s': %s", o->metrics_file,
                ratchet_strerror(rc));
      goto fail;
    }
    uint64_t ms = o->metrics_interval_ns / 1000000u;
    (void)uv_timer_init(&r->loop, &r->metrics_timer);
    r->metrics_timer.data = r;
    r->metrics_timer_init = true;
    (void)uv_timer_start(&r->metrics_timer, on_metrics_timer, ms, ms);
    uv_unref((uv_handle_t *)&r->metrics_timer); /* never keeps the run */
  }
  return 0;
fail:
  ratchet_metrics_free(r->metrics); /* the orchestrator is still here */
  r->metrics = NULL;
  return rc;
}

/* ---- completion ------------------------------------------------------- */

static uint64_t file_size(const char *path) {
  struct stat st;
  if (path == NULL || path[0] == '\0' || stat(path, &st) != 0)
    return 0;
  return (uint64_t)st.st_size;
}

static void write_joblog(run *r, const run_task *t,
                         const ratchet_orch_result *res) {
  uint64_t run_ms =
      res->first_dispatch_ns != 0 && res->finished_ns > res->first_dispatch_ns
          ? (res->finished_ns - res->first_dispatch_ns) / 1000000u
          : 0;
  uint64_t now = wall_ms();
  cli_joblog_entry en = {
      .seq = t->job.seq,
      .host = NULL,
      .start_ms = now > run_ms ? now - run_ms : now,
      .runtime_ms = run_ms,
      .send = 0,
      .receive = res->output_len + res->stderr_len +
                 file_size(res->stdout_path) + file_size(res->stderr_path),
      .exitval = res->exit_code,
      .signal = res->term_signal,
      .command = t->job.display,
      .attempts = res->attempts,
      .cached = res->cached,
  };
  /* A task that failed without an exit status of its own (lost, timed
   * out, rejected) must still read as failed to --resume-failed. */
  if (res->status != RATCHET_STATUS_OK && en.exitval == 0 && en.signal == 0)
    en.exitval = -1;
  int rc = cli_joblog_write(r->jl, &en);
  if (rc != 0)
    set_fatal(r, "--joblog: cannot write '%s': %s", r->o->joblog,
              ratchet_strerror(rc));
}

/* A failure the command's own output does not explain. */
static bool worth_a_message(const ratchet_orch_result *res) {
  if (res->status == RATCHET_STATUS_OK || res->error == NULL)
    return false;
  /* A plain non-zero exit speaks through the command's own stderr; a
   * command that could not even start does not. */
  if (res->status == RATCHET_STATUS_FAILED && res->term_signal == 0 &&
      res->exit_code != 0 && strncmp(res->error, "cannot run", 10) != 0)
    return false;
  return res->error != NULL && res->error[0] != '\0';
}

static void feed(run *r);

static void on_done(ratchet_orch *orch, const ratchet_orch_result *res,
                    void *data) {
  run *r = ratchet_orch_data(orch);
  run_task *t = data;
  const cli_run_options *o = r->o;
  live_remove(r, t);
  bool ok = res->status == RATCHET_STATUS_OK;
  /* A task stopped before it ran, because the run is stopping, was not
   * launched: it is neither done nor failed. */
  bool unlaunched = r->stopping && res->attempts == 0 &&
                    (res->status == RATCHET_STATUS_CANCELLED ||
                     res->status == RATCHET_STATUS_SHUTDOWN);
  if (!unlaunched)
    r->counts.done++;
  if (ok)
    r->ok++;
  else if (!unlaunched)
    r->failed++;
  r->counts.failed = r->failed;
  if (res->cached)
    r->counts.cached++;

  uint64_t dur_ms = res->finished_ns > res->submitted_ns
                        ? (res->finished_ns - res->submitted_ns) / 1000000u
                        : 0;
  cli_out_rec rec = {
      .order = t->order,
      .seq = t->job.seq,
      .input = t->job.input,
      .command = t->job.display,
      .status = ratchet_status_name(res->status),
      .error = res->error != NULL ? res->error : "",
      .exit_code = res->exit_code,
      .term_signal = res->term_signal,
      .attempts = res->attempts,
      .cached = res->cached,
      .duration_ms = dur_ms,
      .out = res->output,
      .out_len = res->output_len,
      .out_path = res->stdout_path,
      .err = res->stderr_data,
      .err_len = res->stderr_len,
      .err_path = res->stderr_path,
  };
  int rc = unlaunched ? 0 : cli_out_task(r->out, &rec);
  if (rc != 0 && rc != -EINVAL)
    set_fatal(r, "cannot write the output of task %llu: %s",
              (unsigned long long)t->job.seq, ratchet_strerror(rc));
  bool stopped = r->stopping && (res->status == RATCHET_STATUS_CANCELLED ||
                                 res->status == RATCHET_STATUS_SHUTDOWN);
  if (!unlaunched && !ok && !r->fatal_pool) {
    /* warn when nothing else explains the failure; info when the
     * command's own stderr, the --json object or the stop does. */
    bool warn = !o->json && !stopped && worth_a_message(res);
    cli_log_fields lf = CLI_LOG_FIELDS_INIT;
    lf.task = t->job.seq;
    lf.worker = res->worker;
    lf.attempt = res->attempts;
    lf.kind = res->kind;
    lf.event = "task_failed";
    cli_log_msg(&r->log, warn ? CLI_LOG_WARN : CLI_LOG_INFO, &lf,
                "task %llu (%s): %s: %s", (unsigned long long)t->job.seq,
                t->job.display, ratchet_status_name(res->status),
                res->error != NULL && res->error[0] != '\0' ? res->error
                                                            : "failed");
  }
  if (r->rec != NULL)
    cli_rec_done(r->rec, t->job.seq, t->job.display, !unlaunched, res);
  if (r->jl != NULL && res->status != RATCHET_STATUS_CANCELLED &&
      res->status != RATCHET_STATUS_SHUTDOWN)
    write_joblog(r, t, res);
  task_free(t);

  if (o->halt.when != CLI_HALT_NEVER && !r->halted &&
      cli_halt_triggered(&o->halt, r->failed, r->ok,
                         r->input_done ? r->next_order : 0)) {
    r->halted = true;
    r->stopping = true;
    cli_log_fields lf = CLI_LOG_FIELDS_INIT;
    lf.event = "halt";
    cli_log_msg(&r->log, CLI_LOG_WARN, &lf,
                "--halt: %s (%llu failed, %llu succeeded)",
                o->halt.when == CLI_HALT_NOW
                    ? "killing the running tasks"
                    : "starting no more tasks, waiting for the running ones",
                (unsigned long long)r->failed, (unsigned long long)r->ok);
    if (o->halt.when == CLI_HALT_NOW)
      cancel_all(r);
    else
      cancel_waiting(r);
  }
  if (r->closing)
    metrics_detach_if_idle(r);
  feed(r);
}

/* ---- feeding ---------------------------------------------------------- */

/* Reads the next input to run into *out: 1 and a task, 0 at the end, 2
 * when a paced input has nothing readable yet, a negated errno (message
 * set). */
static int next_task(run *r, run_task **out) {
  const cli_run_options *o = r->o;
  cli_err e = {{0}};
  for (;;) {
    const char *rec;
    size_t len;
    int rc = cli_input_next(r->in, &rec, &len, &e);
    if (rc == 0)
      return 0;
    if (rc == -EAGAIN)
      return 2; /* nothing readable yet: wait_input */
    if (rc < 0) {
      set_fatal(r, "%s", e.msg);
      return rc;
    }
    uint64_t seq = cli_input_count(r->in);
    if (r->resume != NULL && cli_joblog_skip(r->resume, seq, o->resume_failed))
      continue;
    const char *const *fields;
    size_t nf;
    cli_input_fields(r->in, &fields, &nf);
    run_task *t = ratchet_calloc(1, sizeof *t);
    if (t == NULL || cli_job_build_fields(o, &r->env, r->kb, rec, len, fields,
                                          nf, seq, &t->job) != 0) {
      ratchet_free(t);
      set_fatal(r, "out of memory");
      return -ENOMEM;
    }
    *out = t;
    return 1;
  }
}

static int submit(run *r, run_task *t) {
  const cli_run_options *o = r->o;
  ratchet_task_spec s = RATCHET_TASK_SPEC_INIT;
  ratchet_policy_cache pc = r->cache_policy;
  s.kind = r->kind;
  s.payload = t->job.payload;
  s.payload_len = t->job.payload_len;
  s.timeout_ns = o->timeout_ns;
  s.retry = &r->retry;
  if (o->breaker.enabled)
    s.breaker = &r->breaker;
  if (t->job.has_key && r->cache != NULL) {
    pc.has_key = true;
    pc.key = t->job.key;
    s.cache = &pc;
  }
  s.on_done = on_done;
  s.data = t;
  int rc = ratchet_orch_submit(r->orch, &s, &t->id);
  if (rc == 0) {
    t->order = r->next_order++;
    live_add(r, t);
  }
  return rc;
}

static void feed(run *r);

static void on_input_readable(uv_poll_t *h, int status, int events) {
  (void)status, (void)events; /* an error or a hang-up: read() tells */
  run *r = h->data;
  uv_poll_stop(h);
  r->in_poll_active = false;
  cli_input_readable(r->in);
  feed(r);
}

/* Waits for the paced input to become readable (feed() runs then): true;
 * false if it cannot be watched, with one read allowed - a blocking one. */
static bool wait_input(run *r) {
  if (r->in_poll_active)
    return true;
  if (r->in_poll_init && uv_poll_start(&r->in_poll, UV_READABLE | UV_DISCONNECT,
                                       on_input_readable) == 0) {
    r->in_poll_active = true;
    return true;
  }
  cli_input_readable(r->in);
  return false;
}

static void stop_input(run *r) {
  if (!r->in_poll_init)
    return;
  uv_poll_stop(&r->in_poll);
  uv_close((uv_handle_t *)&r->in_poll, NULL);
  r->in_poll_init = r->in_poll_active = false;
}

static void feed(run *r) {
  const cli_run_options *o = r->o;
  while (!r->stopping && !r->closing) {
    if (r->n_live >= r->window)
      break;
    if (o->keep_order && r->next_order - cli_out_next(r->out) >= r->window)
      break;
    run_task *t = r->pending;
    r->pending = NULL;
    if (t == NULL) {
      if (r->input_done)
        break;
      int rc = next_task(r, &t);
      if (rc == 2) {
        if (wait_input(r))
          break;
        continue;
      }
      if (rc <= 0) {
        r->input_done = true;
        stop_input(r);
        r->counts.total = r->next_order;
        break;
      }
    }
    int rc = submit(r, t);
    if (rc == -EAGAIN) {
      r->pending = t; /* on_room calls feed again */
      break;
    }
    if (rc != 0) {
      set_fatal(r, "cannot submit task %llu: %s (%s)",
                (unsigned long long)t->job.seq, ratchet_strerror(rc),
                ratchet_orch_last_error(r->orch));
      task_free(t);
      break;
    }
  }
  if (r->input_done && r->counts.total < r->next_order)
    r->counts.total = r->next_order;
  kick(r);
}

static void on_room(ratchet_orch *orch, void *data) {
  (void)data;
  feed(ratchet_orch_data(orch));
}

/* ---- the end ---------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h) {
  (void)h;
}

static void on_orch_closed(void *data) {
  run *r = data;
  r->orch = NULL;
  r->closed = true;
  uv_timer_stop(&r->kick);
  uv_timer_stop(&r->grace);
  uv_close((uv_handle_t *)&r->kick, on_handle_closed);
  uv_close((uv_handle_t *)&r->grace, on_handle_closed);
  stop_input(r);
  if (r->metrics_timer_init) {
    uv_timer_stop(&r->metrics_timer);
    uv_close((uv_handle_t *)&r->metrics_timer, on_handle_closed);
    r->metrics_timer_init = false;
  }
  cli_signals_close(r->sigs);
  r->sigs = NULL;
  cli_progress_close(r->prog);
  r->prog = NULL;
}

static void on_kick(uv_timer_t *h) {
  run *r = h->data;
  if (r->closing)
    return;
  bool done =
      r->n_live == 0 && r->pending == NULL && (r->input_done || r->stopping);
  if (r->fatal && r->fatal_pool)
    done = true; /* the pool ends what it still holds */
  if (!done)
    return;
  r->closing = true;
  metrics_detach_if_idle(r);
  ratchet_orch_close(r->orch, on_orch_closed);
}

static void on_grace(uv_timer_t *h) {
  run *r = h->data;
  if (r->n_live > 0 && !r->cancelled_all)
    cancel_all(r);
}

static void on_signal(void *ctx, int signum, unsigned count) {
  run *r = ctx;
  if (r->signal == 0)
    r->signal = signum;
  r->stopping = true;
  if (r->pending != NULL) {
    task_free(r->pending);
    r->pending = NULL;
  }
  if (count >= 2 || r->signal != signum) {
    cancel_all(r);
  } else if (r->n_live > 0) {
    cancel_waiting(r);
    uint64_t ms = r->o->kill_grace_ns / 1000000u;
    (void)uv_timer_start(&r->grace, on_grace, ms, 0);
  }
  kick(r);
}

/* True the first time a worker says this (among the last 16 distinct
 * lines): a worker that cannot start says the same thing every restart. */
static bool first_time(run *r, const char *line) {
  uint64_t h = UINT64_C(14695981039346656037);
  for (const unsigned char *p = (const unsigned char *)line; *p; p++)
    h = (h ^ *p) * UINT64_C(1099511628211);
  unsigned n = r->n_seen < 16 ? r->n_seen : 16;
  for (unsigned i = 0; i < n; i++)
    if (r->seen_stderr[i] == h)
      return false;
  r->seen_stderr[r->n_seen++ % 16] = h;
  return true;
}

/* A sweep for what a dead worker's commands left (janitor.h), on libuv's
 * thread pool. */
typedef struct sweep_req {
  uv_work_t req;
  run *r;
  char id[CLI_JANITOR_ID_MAX];
  int32_t worker;
  int pid;
  unsigned killed;
} sweep_req;

static void sweep_work(uv_work_t *w) {
  sweep_req *q = w->data;
  q->killed = cli_janitor_sweep_worker(q->id, (pid_t)q->pid);
}

static void sweep_done(uv_work_t *w, int status) {
  sweep_req *q = w->data;
  if (status == 0 && q->killed > 0) {
    cli_log_fields lf = CLI_LOG_FIELDS_INIT;
    lf.worker = q->worker;
    lf.event = "orphans_killed";
    cli_log_msg(&q->r->log, CLI_LOG_INFO, &lf,
                "worker %d (pid %d) died: killed %u process%s its tasks "
                "had left",
                (int)q->worker, q->pid, q->killed, q->killed == 1 ? "" : "es");
  }
  ratchet_free(q);
}

static void sweep_worker(run *r, int32_t worker, int pid) {
  sweep_req *q = ratchet_calloc(1, sizeof *q);
  if (q == NULL)
    return; /* the janitor ends them with the run */
  q->req.data = q;
  q->r = r;
  memcpy(q->id, r->jan->id, sizeof q->id);
  q->worker = worker;
  q->pid = pid;
  if (uv_queue_work(&r->loop, &q->req, sweep_work, sweep_done) != 0)
    ratchet_free(q);
}

/* Events seen inline on the loop: retries for the progress line, worker
 * stderr, and the pool giving up. */
static void on_event(void *ctx, const ratchet_event *ev) {
  run *r = ctx;
  run_task *t = NULL;
  cli_log_fields lf = CLI_LOG_FIELDS_INIT;
  switch (ev->type) {
  case RATCHET_EV_DISPATCHED:
    if ((t = live_find(r, ev->task_id)) != NULL)
      t->running = true;
    break;
  case RATCHET_EV_LOST:
    if ((t = live_find(r, ev->task_id)) != NULL)
      t->running = false;
    break;
  case RATCHET_EV_RETRY:
    r->counts.retried++;
    if ((t = live_find(r, ev->task_id)) != NULL)
      t->running = false;
    break;
  case RATCHET_EV_WORKER_STDERR:
    /* What a worker itself says (a task's stderr is captured apart):
     * warn the first time, debug when it repeats. */
    lf.worker = ev->worker;
    lf.event = "worker_stderr";
    cli_log_msg(&r->log,
                first_time(r, ev->message) ? CLI_LOG_WARN : CLI_LOG_DEBUG, &lf,
                "worker %d: %s", (int)ev->worker, ev->message);
    return;
  case RATCHET_EV_WORKER_EXITED:
    /* Its commands died with it (parent-death signal); what they started
     * would run on beside the retry: end it now (janitor.h). Only for a
     * worker that died - one that was told to stop ran nothing - and off
     * the loop: the sweep reads every process's environment. */
    if (r->jan != NULL && ev->pid > 0 && (ev->signal != 0 || ev->status != 0))
      sweep_worker(r, ev->worker, ev->pid);
    break;
  case RATCHET_EV_POOL_FAILED:
    r->fatal_pool = true;
    set_fatal(r, "the workers cannot run: %s", ev->message);
    kick(r);
    return;
  default:
    break;
  }
  if (t == NULL && ev->task_id != 0 &&
      (ev->type == RATCHET_EV_TASK_LOG || cli_log_on(&r->log, CLI_LOG_DEBUG)))
    t = live_find(r, ev->task_id);
  cli_run_log_event(&r->log, ev, t != NULL ? t->job.seq : 0,
                    t != NULL ? t->job.display : NULL,
                    r->stopping || r->closing);
}

/* How the record (--trace, --report) names a task's attempts. */
static bool rec_lookup(void *ctx, uint64_t id, uint64_t *seq,
                       const char **input) {
  run_task *t = live_find(ctx, id);
  if (t == NULL)
    return false;
  *seq = t->job.seq;
  *input = t->job.input;
  return true;
}

/* --trace and --report are written at the very end: a path that cannot
 * be written is better refused before a long run than after it. */
static int check_writable(run *r, const char *flag, const char *path) {
  if (path == NULL)
    return 0;
  size_t n = strlen(path);
  char *tmp = ratchet_malloc(n + 5);
  if (tmp == NULL) {
    set_fatal(r, "out of memory");
    return -ENOMEM;
  }
  memcpy(tmp, path, n);
  memcpy(tmp + n, ".tmp", 5);
  FILE *f = fopen(tmp, "w");
  int rc = f != NULL ? 0 : -errno;
  if (f != NULL) {
    fclose(f);
    (void)remove(tmp);
  } else {
    set_fatal(r, "%s: cannot write '%s': %s", flag, path, strerror(-rc));
  }
  ratchet_free(tmp);
  return rc;
}

/* Writes --trace and --report from the record; a failure is an error
 * line, but does not change the run's exit status. */
static void write_record(run *r, int status) {
  const cli_run_options *o = r->o;
  cli_err e = {{0}};
  cli_log_fields lf = CLI_LOG_FIELDS_INIT;
  if (r->rec == NULL)
    return;
  cli_rec_finish(r->rec);
  if (o->trace != NULL && cli_trace_write(r->rec, o->trace, &e) != 0) {
    lf.event = "trace";
    cli_log_msg(&r->log, CLI_LOG_ERROR, &lf, "%s", e.msg);
  }
  if (o->report != NULL) {
    cli_sbuf cmd = CLI_SBUF_INIT;
    if (o->plugin != NULL) {
      (void)cli_sbuf_adds(&cmd, "--plugin ");
      (void)cli_sbuf_adds(&cmd, o->plugin);
      (void)cli_sbuf_adds(&cmd, " --kind ");
      (void)cli_sbuf_adds(&cmd, o->kind);
    }
    for (size_t i = 0; i < o->n_command; i++) {
      if (i > 0)
        (void)cli_sbuf_addc(&cmd, ' ');
      (void)cli_sbuf_adds(&cmd, o->command[i]);
    }
    cli_report_info info = {.command = cli_sbuf_str(&cmd),
                            .jobs = o->jobs,
                            .exit_status = status,
                            .signal = r->signal};
    if (cli_report_write(r->rec, &info, o->report, &e) != 0) {
      lf.event = "report";
      cli_log_msg(&r->log, CLI_LOG_ERROR, &lf, "%s", e.msg);
    }
    cli_sbuf_free(&cmd);
  }
}

/* ---- set-up ------------------------------------------------------------ */

static void set_backoff(const cli_run_options *o, ratchet_backoff_options *b) {
  ratchet_backoff_options d = RATCHET_BACKOFF_OPTIONS_INIT;
  *b = d;
  b->initial_ns = o->backoff_base_ns;
  b->max_delay_ns = o->backoff_max_ns;
  b->max_attempts = o->retries + 1;
  switch (o->backoff) {
  case CLI_BACKOFF_LINEAR:
    b->kind = RATCHET_BACKOFF_LINEAR;
    b->increment_ns = o->backoff_base_ns;
    break;
  case CLI_BACKOFF_CONSTANT:
    b->kind = RATCHET_BACKOFF_CONSTANT;
    break;
  case CLI_BACKOFF_DECORRELATED:
    b->kind = RATCHET_BACKOFF_EXPONENTIAL;
    b->jitter = RATCHET_JITTER_DECORRELATED;
    return;
  default:
    b->kind = RATCHET_BACKOFF_EXPONENTIAL;
    b->multiplier = 2.0;
    break;
  }
  switch (o->jitter.kind) {
  case CLI_JITTER_EQUAL:
    b->jitter = RATCHET_JITTER_EQUAL;
    break;
  case CLI_JITTER_NONE:
    b->jitter = RATCHET_JITTER_NONE;
    break;
  case CLI_JITTER_PROPORTIONAL:
    b->jitter = RATCHET_JITTER_PROPORTIONAL;
    b->jitter_fraction = o->jitter.percent / 100.0;
    break;
  default:
    b->jitter = RATCHET_JITTER_FULL;
    break;
  }
}

static int config_breaker(run *r) {
  const cli_breaker_spec *b = &r->o->breaker;
  ratchet_breaker_options bo = RATCHET_ORCH_BREAKER_DEFAULTS;
  if (b->time_window) {
    bo.window = RATCHET_BREAKER_WINDOW_TIME;
    bo.bucket_ns = UINT64_C(1000000000);
    uint64_t n = b->window_ns / bo.bucket_ns;
    bo.window_size = n < 1 ? 1 : (uint32_t)n;
  } else {
    bo.window = RATCHET_BREAKER_WINDOW_COUNT;
    bo.window_size = b->window_count;
  }
  bo.minimum_calls = b->min_calls;
  if (!b->time_window && bo.minimum_calls > bo.window_size)
    bo.minimum_calls = bo.window_size;
  bo.failure_rate_threshold = b->rate;
  if (b->consecutive > 0)
    bo.consecutive_failures = b->consecutive;
  bool never = b->open_ns == CLI_BREAKER_OPEN_NEVER;
  /* "Never" is a century: long enough for any run. */
  bo.open_duration_ns = never ? UINT64_C(3153600000) * 1000000000u : b->open_ns;
  if (bo.max_open_duration_ns < bo.open_duration_ns)
    bo.max_open_duration_ns = bo.open_duration_ns;
  bo.permitted_calls_in_half_open = b->probes;
  r->breaker.group = "run";
  r->breaker.mode = b->mode == CLI_BREAKER_FAIL || never
                        ? RATCHET_BREAKER_FAIL_FAST
                        : RATCHET_BREAKER_WAIT;
  return ratchet_orch_breaker_config(r->orch, "run", &bo);
}

static int open_cache(run *r) {
  const cli_run_options *o = r->o;
  char dir[PATH_MAX];
  if (o->cache_dir != NULL) {
    snprintf(dir, sizeof dir, "%s", o->cache_dir);
  } else if (ratchet_store_default_dir(dir, sizeof dir) != 0) {
    set_fatal(r, "--cache: no cache directory: set HOME or XDG_CACHE_HOME, "
                 "or give --cache=DIR");
    return -ENOENT;
  }
  ratchet_store_options so = RATCHET_STORE_OPTIONS_INIT;
  so.dir = dir;
  so.durability = RATCHET_STORE_NOMETASYNC;
  int rc = ratchet_store_open(&so, &r->store);
  if (rc != 0) {
    set_fatal(r, "--cache: cannot open the cache in '%s': %s", dir,
              ratchet_store_last_error());
    return rc;
  }
  ratchet_tiered_options to = RATCHET_TIERED_OPTIONS_INIT;
  to.store = r->store;
  if ((rc = ratchet_tiered_new(&to, &r->cache)) != 0) {
    set_fatal(r, "--cache: %s", ratchet_strerror(rc));
    return rc;
  }
  r->cache_policy = (ratchet_policy_cache)RATCHET_POLICY_CACHE_INIT;
  r->cache_policy.ttl_ms = o->cache_ttl_ns / 1000000u;
  if (o->cache_ttl_ns != 0 && r->cache_policy.ttl_ms == 0)
    r->cache_policy.ttl_ms = 1;
  r->env.names = (const char *const *)o->cache_env;
  r->env.n = o->n_cache_env;
  if (o->n_cache_env > 0) {
    r->env.values = ratchet_calloc(o->n_cache_env, sizeof *r->env.values);
    if (r->env.values == NULL) {
      set_fatal(r, "out of memory");
      return -ENOMEM;
    }
    for (size_t i = 0; i < o->n_cache_env; i++)
      r->env.values[i] = getenv(o->cache_env[i]);
  }
  return ratchet_key_builder_new(&r->kb);
}

/* A pipe, terminal or socket is read only when the loop has seen it
 * readable, so a slow producer (tail -f | ratchet run ...) never stalls
 * the run: output, timeouts and signals go on while it waits. libuv makes
 * a watched descriptor non-blocking; stdin's open file description is
 * shared with the shell and the producer, so the flag is put back at once
 * (one read per readiness does not block). Files and /dev/null, which
 * cannot be watched, are read as before. */
static void pace_input(run *r) {
  int fd = cli_input_fd(r->in);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 ||
      !(S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode) || S_ISSOCK(st.st_mode)))
    return;
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || uv_poll_init(&r->loop, &r->in_poll, fd) != 0) {
    if (flags >= 0)
      (void)fcntl(fd, F_SETFL, flags);
    return;
  }
  (void)fcntl(fd, F_SETFL, flags);
  r->in_poll.data = r;
  r->in_poll_init = true;
  cli_input_set_paced(r->in);
}

static int open_input(run *r) {
  const cli_run_options *o = r->o;
  cli_err e = {{0}};
  int rc = cli_job_open_input(o, &r->in, &e);
  if (rc != 0) {
    set_fatal(r, "%s", e.msg[0] ? e.msg : "out of memory");
    return rc;
  }
  pace_input(r);
  if (o->resume || o->resume_failed) {
    if ((rc = cli_joblog_read("--joblog", o->joblog, &r->resume, &e)) != 0) {
      set_fatal(r, "%s", e.msg);
      return rc;
    }
  }
  if (o->joblog != NULL &&
      (rc = cli_joblog_open("--joblog", o->joblog,
                            o->resume || o->resume_failed, &r->jl, &e)) != 0) {
    set_fatal(r, "%s", e.msg);
    return rc;
  }
  return 0;
}

static int find_exe(run *r, const char *argv0) {
  ssize_t n = readlink("/proc/self/exe", r->exe, sizeof r->exe - 1);
  if (n > 0) {
    r->exe[n] = '\0';
    return 0;
  }
  if (argv0 != NULL && strchr(argv0, '/') != NULL &&
      realpath(argv0, r->exe) != NULL)
    return 0;
  set_fatal(r, "cannot find the ratchet executable to start workers");
  return -ENOENT;
}

static int start_orch(run *r) {
  const cli_run_options *o = r->o;
  ratchet_orch_options oo = RATCHET_ORCH_OPTIONS_INIT;
  oo.cache = r->cache;
  oo.dead_letter_path = o->dead_letter;
  oo.on_room = on_room;
  oo.data = r;
  int rc = ratchet_orch_new(&r->loop, &oo, &r->orch);
  if (rc != 0) {
    if (o->dead_letter != NULL && rc != -EINVAL && rc != -ENOMEM)
      set_fatal(r, "--dead-letter: cannot open '%s': %s", o->dead_letter,
                ratchet_strerror(rc));
    else
      set_fatal(r, "cannot create the orchestrator: %s", ratchet_strerror(rc));
    return rc;
  }
  ratchet_subscriber_options so = RATCHET_SUBSCRIBER_OPTIONS_INIT;
  /* What the log shows (dispatches, losses, retries and worker exits,
   * which on_event also acts on), plus what only on_event needs. */
  so.types = cli_run_log_types() | RATCHET_EV_BIT(RATCHET_EV_WORKER_STDERR) |
             RATCHET_EV_BIT(RATCHET_EV_POOL_FAILED);
  /* Every task's attempts are logged at debug only: unless asked for,
   * the orchestrator need not even build those events. */
  if (!cli_log_on(&r->log, CLI_LOG_DEBUG))
    so.types &= ~(RATCHET_EV_BIT(RATCHET_EV_SUCCEEDED) |
                  RATCHET_EV_BIT(RATCHET_EV_FAILED) |
                  RATCHET_EV_BIT(RATCHET_EV_WORKER_STARTING) |
                  RATCHET_EV_BIT(RATCHET_EV_WORKER_READY));
  so.cb = on_event;
  so.ctx = r;
  if ((rc = ratchet_events_subscribe(ratchet_orch_events(r->orch), &so,
                                     &r->sub)) != 0) {
    set_fatal(r, "cannot watch the workers: %s", ratchet_strerror(rc));
    return rc;
  }
  if (r->rec != NULL &&
      (rc = cli_rec_attach(r->rec, ratchet_orch_events(r->orch))) != 0) {
    set_fatal(r, "cannot record the run: %s", ratchet_strerror(rc));
    return rc;
  }

  size_t k = 0;
  r->worker_argv[k++] = r->exe;
  r->worker_argv[k++] = "worker";
  if (o->plugin != NULL) {
    r->worker_argv[k++] = "--plugin";
    r->worker_argv[k++] = o->plugin;
  }
  r->worker_argv[k] = NULL;
  uint64_t grace_ms = o->kill_grace_ns / 1000000u;
  if (grace_ms < 1)
    grace_ms = 1;
  ratchet_pool_options po = RATCHET_POOL_OPTIONS_INIT;
  po.mode = RATCHET_POOL_SPAWN;
  po.size = o->jobs;
  po.argv = r->worker_argv;
  po.pipeline_depth = pipeline_depth(o);
  po.restart = RATCHET_RESTART_PERMANENT;
  /* Workers that are killed from outside come back quickly; one that can
   * never start fails the pool after flap_limit tries, within a second. */
  po.restart_backoff.initial_ns = 10 * RATCHET_NS_PER_MS;
  po.restart_backoff.max_delay_ns = 1 * RATCHET_NS_PER_S;
  po.max_restarts = o->jobs * 20 > 100 ? o->jobs * 20 : 100;
  po.restart_period_ms = 5000;
  /* With --retries the user expects workers to be killed from outside;
   * a kill that lands before Ready must not look like a worker that can
   * never start so soon (10 tries take about 3 s with this backoff). */
  po.flap_limit = o->retries > 0 ? 10 : 5;
  /* The worker needs the kill grace itself (TERM, grace, KILL of the
   * command's group) before it can answer a Cancel: the pool waits
   * longer than that before it declares the worker hung. */
  uint64_t pool_grace = grace_ms * 2 + 1000;
  po.kill_grace_ms = pool_grace > 3600000 ? 3600000 : (uint32_t)pool_grace;
  po.close_grace_ms = pool_grace > 3600000 ? 3600000 : (uint32_t)pool_grace;
  /* A task whose worker dies under it is tried again; only one that does
   * so more often than its retries allow is a poison pill. */
  po.poison_threshold = o->retries + 3;
  rc = ratchet_orch_add_pool(r->orch, &po, NULL);
  if (rc < 0) {
    set_fatal(r, "cannot create the worker pool: %s (%s)", ratchet_strerror(rc),
              ratchet_orch_last_error(r->orch));
    return rc;
  }
  r->kind = o->kind != NULL ? o->kind : "exec";
  r->retry = (ratchet_policy_retry)RATCHET_POLICY_RETRY_INIT;
  r->retry.max_attempts = o->retries + 1;
  set_backoff(o, &r->retry.backoff);
  if (o->breaker.enabled && (rc = config_breaker(r)) != 0) {
    set_fatal(r, "--breaker: %s (%s)", ratchet_strerror(rc),
              ratchet_orch_last_error(r->orch));
    return rc;
  }
  if ((rc = start_metrics(r)) != 0)
    return rc;
  if ((rc = ratchet_orch_start(r->orch)) != 0) {
    set_fatal(r, "cannot start the workers (%s): %s", r->exe,
              ratchet_strerror(rc));
    return rc;
  }
  return 0;
}

static void before_output(void *ctx) {
  run *r = ctx;
  cli_progress_clear(r->prog);
}

/* A log line starts its own line: the progress line is erased, and a
 * task's stderr that ended mid-line is ended. */
static void before_log(void *ctx) {
  run *r = ctx;
  cli_progress_clear(r->prog);
  cli_out_end_line(r->out);
}

static void teardown(run *r) {
  if (r->sub != NULL && r->orch != NULL)
    ratchet_events_unsubscribe(ratchet_orch_events(r->orch), r->sub);
  r->sub = NULL;
  if (r->orch != NULL && !r->closing) {
    r->closing = true;
    metrics_detach_if_idle(r);
    ratchet_orch_close(r->orch, on_orch_closed);
  }
  (void)uv_run(&r->loop, UV_RUN_DEFAULT);
  /* The last write: the run's final numbers, after a signal too. */
  if (r->metrics != NULL && r->metrics_detached) {
    (void)metrics_write(r);
    ratchet_metrics_free(r->metrics);
  }
  /* else the orchestrator went away with the metrics attached, which
   * metrics_detach_if_idle rules out: leaking beats touching its bus. */
  r->metrics = NULL;
  if (r->out != NULL)
    (void)cli_out_flush(r->out);
  task_free(r->pending);
  while (r->live != NULL) { /* only when the orchestrator never started */
    run_task *t = r->live;
    live_remove(r, t);
    task_free(t);
  }
  cli_out_free(r->out);
  r->out = NULL; /* the final log lines come after */
  cli_joblog_close(r->jl);
  cli_joblog_state_free(r->resume);
  cli_input_free(r->in);
  ratchet_key_builder_free(r->kb);
  ratchet_tiered_free(r->cache);
  ratchet_store_close(r->store);
  ratchet_free(r->env.values);
  if (uv_loop_close(&r->loop) != 0) {
    uv_walk(&r->loop, (uv_walk_cb)uv_close, NULL); /* a bug: be clean */
    (void)uv_run(&r->loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&r->loop);
  }
}

int cli_run_execute(const cli_run_options *o, const char *argv0) {
  run *r = ratchet_calloc(1, sizeof *r);
  if (r == NULL) {
    fprintf(stderr, "ratchet run: out of memory\n");
    return CLI_EXIT_USAGE;
  }
  r->o = o;
  cli_log_init(&r->log, "ratchet run", o->log_level, o->log_format, 2);
  r->log.before = before_log; /* a line of its own */
  r->log.before_ctx = r;
  uint64_t w = (uint64_t)o->jobs * WINDOW_PER_JOB * pipeline_depth(o);
  r->window = w < WINDOW_MIN ? WINDOW_MIN : w > 65536 ? 65536 : (uint32_t)w;
  int rc = uv_loop_init(&r->loop);
  if (rc != 0) {
    cli_log_msg(&r->log, CLI_LOG_ERROR, NULL, "cannot start: %s",
                uv_strerror(rc));
    ratchet_free(r);
    return CLI_EXIT_USAGE;
  }
  /* Before the first worker and the first thread (janitor.h). */
  cli_janitor jan;
  if ((rc = cli_janitor_start(&jan)) == 0)
    r->jan = &jan;
  else
    cli_log_msg(&r->log, CLI_LOG_WARN, NULL,
                "no janitor (%s): processes that tasks leave behind may "
                "survive the run",
                ratchet_strerror(rc));
  (void)uv_timer_init(&r->loop, &r->kick);
  (void)uv_timer_init(&r->loop, &r->grace);
  r->kick.data = r->grace.data = r;
  r->timers_init = true;
  uv_unref((uv_handle_t *)&r->grace);

  if (find_exe(r, argv0) == 0 && open_input(r) == 0 &&
      (!o->cache || open_cache(r) == 0) &&
      cli_out_new(o->keep_order, o->tag, o->json, r->window, 1, 2, &r->out) ==
          0 &&
      cli_signals_new(&r->loop, on_signal, r, &r->sigs) == 0 &&
      check_writable(r, "--trace", o->trace) == 0 &&
      check_writable(r, "--report", o->report) == 0 &&
      ((o->trace == NULL && o->report == NULL) ||
       cli_rec_new(rec_lookup, r, &r->rec) == 0) &&
      start_orch(r) == 0) {
    cli_out_set_before(r->out, before_output, r);
    cli_out_set_lines(r->out, o->kind != NULL);
    bool progress = o->progress == CLI_PROGRESS_ON ||
                    (o->progress == CLI_PROGRESS_AUTO && isatty(2));
    if (progress && cli_progress_new(&r->loop, 2, &r->counts, &r->prog) != 0)
      r->prog = NULL;
    feed(r);
    (void)uv_run(&r->loop, UV_RUN_DEFAULT);
  } else if (!r->fatal) {
    set_fatal(r, "cannot start: out of memory");
  }
  if (!r->closed && r->orch == NULL) {
    /* Never got as far as the orchestrator: close our own handles. */
    on_orch_closed(r);
  }
  teardown(r);

  int status;
  if (r->fatal) {
    cli_log_fields lf = CLI_LOG_FIELDS_INIT;
    lf.event = r->fatal_pool ? "pool_failed" : "fatal";
    cli_log_msg(&r->log, CLI_LOG_ERROR, &lf, "%s", r->fatal_msg);
    status = CLI_EXIT_USAGE;
  } else if (r->signal != 0) {
    status = 128 + r->signal;
  } else {
    status = r->failed == 0 ? 0 : r->failed <= 100 ? (int)r->failed : 101;
  }
  write_record(r, status);
  cli_rec_free(r->rec);
  ratchet_free(r);
  cli_janitor_finish(&jan);
  return status;
}
