/*
 * pool.c - the process pool: worker slots, their processes, the protocol's
 * orchestrator side, dispatch, crash detection and the supervisor's plumbing.
 *
 * A pool has `size` slots; a slot runs one process at a time (a `proc`) and
 * keeps the counters and the restart state that outlive it. A proc owns three
 * pipes (stdin/stdout through a ratchet_uv_transport, stderr through a
 * uv_pipe_t read line by line) and one timer that always waits for the one
 * thing that matters next: Ready (start timeout); then, while it is ready,
 * the earliest task deadline (busy) or the next Ping and its Pong (idle),
 * recomputed by proc_schedule after every dispatch, Result and Pong; then
 * the escalation Cancel -> SIGTERM -> SIGKILL; then a linger for stderr.
 * A missed deadline marks the proc hung and enters the escalation at
 * SIGTERM (a task's Cancel went out at its deadline).
 *
 * Recycling retires a proc (no new tasks) when it reaches its task count -
 * drawn per proc from the pool's seeded rng - or its RSS limit; once it
 * holds no task it is stopped like a resize stops one (Shutdown, an end
 * the pool asked for, so no restart decision) and its slot starts a new
 * proc at once. Dispatch also skips a proc whose stdin queue is congested
 * (the transport's high watermark) until it drains.
 *
 * A proc dies in two halves that may come in either order: the exit status
 * (SIGCHLD; each of our pids is probed with waitid(WNOWAIT), its process
 * group is SIGKILLed while the zombie still holds the pgid - so no
 * grandchild survives and the pgid cannot have been reused - and then it is
 * reaped with wait4 for its rusage) and the end of its stdout (EOF, a
 * protocol error). A Result may still sit in the pipe when the exit is
 * seen, so the proc is finalised - its lost outcomes, the EXITED event, the
 * restart decision - only once both halves are known; a timer bounds the
 * wait for the second half. Finalising changes all state first and calls the
 * owner's callbacks last, so a callback may call dispatch, resize or close.
 *
 * Memory: a proc is freed when its last handle's close callback has run; the
 * pool is freed, and the close callback called, when every proc is freed,
 * every slot timer is closed and the SIGCHLD handle is closed (STYLE.md:
 * objects that own libuv handles free memory only in the callback).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "pool_internal.h"
#include "ratchet/alloc.h"
#include "ratchet/clock.h"
#include "ratchet/codec.h"
#include "ratchet/error.h"
#include "ratchet/pool.h"
#include "ratchet/rng.h"
#include "ratchet/transport.h"

#define LINE_MAX_BYTES 4096
#define TEXT_MAX       512
#define MAX_PIPELINE   1024u
#define MAX_MS         3600000u

typedef struct proc proc;
typedef struct slot slot;

typedef enum proc_state {
  P_STARTING, /* Hello sent, waiting for Ready */
  P_READY,    /* serving tasks */
  P_STOPPING, /* the pool asked it to end (Shutdown sent) */
  P_DEAD      /* its stdout ended or it broke the protocol; or it exited */
} proc_state;

typedef enum timer_use {
  T_NONE,
  T_START,    /* Ready must arrive */
  T_TASK,     /* the earliest task deadline (or its Cancel's grace) */
  T_PING,     /* idle: time to send the next Ping */
  T_PONG,     /* a Ping is out: its Pong must arrive */
  T_ESCALATE, /* next kill_stage step */
  T_LINGER    /* finalised; waiting for the end of stderr */
} timer_use;

typedef struct inflight {
  uint64_t id;
  uint32_t crashes;
  uint64_t deadline_ms; /* loop time (uv_now); 0 for none */
  bool overdue;         /* past its deadline, Cancel sent */
} inflight;

struct proc {
  ratchet_pool *pool;
  slot *slot; /* the slot it was started for; slots outlive procs */
  proc *next; /* the pool's list of live procs */
  pid_t pid;
  uint32_t generation;
  proc_state state;
  uv_pipe_t in, out, err;
  uv_timer_t timer;
  timer_use timer_use;
  ratchet_uv_transport *t;
  unsigned handles; /* close callbacks still to come */
  bool t_open, err_open, timer_open;
  bool reaped, eof, finalized, stop_requested, ready_seen, protocol_error;
  bool hung;           /* a deadline, Ready or Pong did not come in time */
  bool retiring;       /* reached its recycle point: takes no new task */
  bool send_broken;    /* a write to its stdin failed: it is dying */
  uint64_t recycle_at; /* tasks_done that makes it retire; 0 never */
  uint32_t n_overdue;  /* in-flight tasks past their deadline */
  uint64_t ping_seq;   /* the last Ping's seq */
  bool ping_out;       /* a Ping awaits its Pong */
  uint64_t ping_sent_ms, idle_since_ms; /* loop time */
  uint64_t rss_kb, pong_rss_kb, pongs;
  char retire_why[160];
  int kill_stage; /* 0 none, 1 Cancel sent, 2 SIGTERM sent, 3 SIGKILL sent */
  int exit_status, term_signal;
  bool core_dumped;
  struct rusage ru;
  char cause[TEXT_MAX]; /* the first thing that went wrong, or "" */
  uint32_t capacity;
  inflight *inflight;
  uint32_t n_inflight;
  uint64_t tasks_done;
  char line[LINE_MAX_BYTES];
  size_t line_len;
};

struct slot {
  ratchet_pool *pool;
  uint32_t id;
  proc *cur; /* the process serving this slot, NULL when none */
  uv_timer_t restart_timer;
  bool restart_pending;
  bool removed; /* beyond the target size */
  uint32_t generation;
  uint32_t flaps; /* consecutive ends without progress */
  uint64_t prev_delay_ns;
  uint64_t tasks_done, tasks_lost, exits, restarts, stderr_lines;
  uint64_t recycles, hangs;
};

typedef enum pool_state { S_NEW, S_RUNNING, S_FAILED } pool_state;

struct ratchet_pool {
  uv_loop_t *loop;
  ratchet_pool_options o;
  char **argv, **env, *cwd; /* deep copies */
  pool_state state;
  bool closing;
  ratchet_pool_close_cb close_cb;
  uv_signal_t sigchld;
  int sig_state; /* 0 open, 1 closing, 2 closed */
  slot **slots;
  uint32_t n_slots; /* allocated, some may be removed */
  uint32_t size;    /* target */
  uint32_t rr;      /* where the least-loaded search starts */
  proc *procs;
  unsigned n_procs;
  unsigned timers_open; /* slot restart timers not yet closed */
  ratchet__intensity intensity;
  ratchet_rng rng;
  uint32_t ping_timeout_ms; /* effective: o.ping_timeout_ms or the interval */
  ratchet_pool_stats st;
  char readbuf[65536];
};

/* ---- small helpers ---------------------------------------------------- */

static void fmt(char *dst, size_t cap, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
static void fmt(char *dst, size_t cap, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  vsnprintf(dst, cap, f, ap);
  va_end(ap);
}

static void set_cause(proc *p, const char *f, ...)
    __attribute__((format(printf, 2, 3)));
static void set_cause(proc *p, const char *f, ...) {
  if (p->cause[0] != '\0')
    return; /* keep the first */
  va_list ap;
  va_start(ap, f);
  vsnprintf(p->cause, sizeof p->cause, f, ap);
  va_end(ap);
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = ratchet_malloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

static void free_vec(char **v) {
  if (v == NULL)
    return;
  for (char **q = v; *q != NULL; q++)
    ratchet_free(*q);
  ratchet_free(v);
}

static int dup_vec(const char *const *v, char ***out) {
  size_t n = 0;
  while (v[n] != NULL)
    n++;
  char **d = ratchet_calloc(n + 1, sizeof *d);
  if (d == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    d[i] = dup_str(v[i]);
    if (d[i] == NULL) {
      free_vec(d);
      return -ENOMEM;
    }
  }
  *out = d;
  return 0;
}

static void emit(ratchet_pool *pool, const ratchet_pool_event *ev) {
  if (pool->o.on_event != NULL)
    pool->o.on_event(pool, ev);
}

static void event_init(ratchet_pool_event *ev, ratchet_pool_event_type type,
                       const proc *p) {
  memset(ev, 0, sizeof *ev);
  ev->type = type;
  ev->message = "";
  ev->exit_status = -1;
  if (p != NULL) {
    ev->worker_id = p->slot->id;
    ev->generation = p->generation;
    ev->pid = (int)p->pid;
  }
}

static void describe_exit(const proc *p, char *buf, size_t cap) {
  if (p->term_signal != 0)
    fmt(buf, cap, "was killed by signal %d (SIG%s)%s", p->term_signal,
        sigabbrev_np(p->term_signal) ? sigabbrev_np(p->term_signal) : "?",
        p->core_dumped ? ", core dumped" : "");
  else
    fmt(buf, cap, "exited with status %d", p->exit_status);
}

/* ---- forward declarations -------------------------------------------- */

static void proc_release(proc *p);
static void proc_close_transport(proc *p);
static void proc_uv_closed(uv_handle_t *h);
static void proc_try_finalize(proc *p);
static void proc_stop(proc *p, uint64_t grace_ms);
static void proc_escalate(proc *p);
static void slot_start(slot *s);
static void pool_fail(ratchet_pool *pool, const char *msg);
static void pool_maybe_finish(ratchet_pool *pool);

/* ---- timers ----------------------------------------------------------- */

static void proc_timer_cb(uv_timer_t *h);

static void proc_arm(proc *p, timer_use use, uint64_t ms) {
  p->timer_use = use;
  uv_timer_start(&p->timer, proc_timer_cb, ms, 0);
}

static void proc_signal_group(proc *p, int sig) {
  if (!p->reaped)
    (void)kill(-p->pid, sig);
}

/* One escalation step: Cancel (if tasks are in flight), SIGTERM, SIGKILL,
 * kill_grace_ms apart. After SIGKILL nothing can hold the process, so the
 * timer then only bounds the wait for the end of stdout. */
static void proc_escalate(proc *p) {
  ratchet_pool *pool = p->pool;
  if (p->reaped) {
    /* Exited, but stdout never ended: a process outside the group holds
     * it. Give up on the rest of the stream. */
    if (!p->eof) {
      p->eof = true;
      proc_close_transport(p);
    }
    proc_try_finalize(p);
    return;
  }
  if (p->kill_stage == 0) {
    p->kill_stage = 1;
    if (p->n_inflight > 0 && p->t_open && !p->eof) {
      for (uint32_t i = 0; i < p->n_inflight; i++) {
        Ratchet__V1__Cancel c;
        ratchet__v1__cancel__init(&c);
        c.id = p->inflight[i].id;
        Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
        f.msg_case = RATCHET__V1__FRAME__MSG_CANCEL;
        f.cancel = &c;
        (void)ratchet_uv_transport_send(p->t, &f);
      }
      proc_arm(p, T_ESCALATE, pool->o.kill_grace_ms);
      return;
    }
  }
  if (p->kill_stage == 1) {
    p->kill_stage = 2;
    proc_signal_group(p, SIGTERM);
    proc_arm(p, T_ESCALATE, pool->o.kill_grace_ms);
    return;
  }
  p->kill_stage = 3;
  proc_signal_group(p, SIGKILL);
  proc_arm(p, T_ESCALATE, pool->o.kill_grace_ms);
}

static void send_cancel(proc *p, uint64_t id) {
  Ratchet__V1__Cancel c;
  ratchet__v1__cancel__init(&c);
  c.id = id;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_CANCEL;
  f.cancel = &c;
  (void)ratchet_uv_transport_send(p->t, &f);
}

/* The worker missed a deadline (Ready, a task's, a Pong's): it takes no more
 * work, and the escalation starts at SIGTERM (a Cancel, if any, has been
 * sent already). Its overdue tasks will be lost HUNG. */
static void proc_hang(proc *p, const char *msg) {
  set_cause(p, "%s", msg);
  p->hung = true;
  p->state = P_DEAD;
  p->slot->hangs++;
  p->pool->st.hung++;
  p->kill_stage = 1;
  proc_escalate(p);
  ratchet_pool_event ev;
  event_init(&ev, RATCHET_POOL_EVENT_HUNG, p);
  ev.message = msg;
  emit(p->pool, &ev);
}

/* Arms the timer for whatever a ready worker waits for next: the earliest
 * task deadline while tasks are in flight, else the Pong of the Ping that
 * is out, else the next Ping. Leaves the start, escalation and linger
 * timers alone. */
static void proc_schedule(proc *p) {
  ratchet_pool *pool = p->pool;
  if (p->state != P_READY || p->finalized)
    return;
  if (p->timer_use != T_NONE && p->timer_use != T_TASK &&
      p->timer_use != T_PING && p->timer_use != T_PONG)
    return;
  uint64_t due = UINT64_MAX;
  timer_use use = T_NONE;
  if (p->n_inflight > 0) {
    for (uint32_t i = 0; i < p->n_inflight; i++) {
      const inflight *t = &p->inflight[i];
      if (t->deadline_ms == 0)
        continue;
      uint64_t d = t->deadline_ms + (t->overdue ? pool->o.kill_grace_ms : 0);
      if (d < due)
        due = d;
    }
    if (due != UINT64_MAX)
      use = T_TASK;
  } else if (p->ping_out) {
    use = T_PONG;
    due = p->ping_sent_ms + pool->ping_timeout_ms;
  } else if (pool->o.ping_interval_ms != 0) {
    use = T_PING;
    due = p->idle_since_ms + pool->o.ping_interval_ms;
  }
  if (use == T_NONE) {
    if (p->timer_use != T_NONE)
      uv_timer_stop(&p->timer);
    p->timer_use = T_NONE;
    return;
  }
  uint64_t now = uv_now(pool->loop);
  proc_arm(p, use, due > now ? due - now : 0);
}

/* A task deadline passed: Cancel the tasks that just ran out, and declare
 * the worker hung when one of them has not answered its Cancel within
 * kill_grace_ms. */
static void proc_task_timer(proc *p) {
  ratchet_pool *pool = p->pool;
  uint64_t now = uv_now(pool->loop);
  const inflight *late = NULL;
  for (uint32_t i = 0; i < p->n_inflight; i++) {
    inflight *t = &p->inflight[i];
    if (t->deadline_ms == 0)
      continue;
    if (!t->overdue && t->deadline_ms <= now) {
      t->overdue = true;
      p->n_overdue++;
      if (p->t_open)
        send_cancel(p, t->id);
    } else if (t->overdue && t->deadline_ms + pool->o.kill_grace_ms <= now) {
      late = t;
    }
  }
  if (late == NULL) {
    proc_schedule(p);
    return;
  }
  char msg[TEXT_MAX];
  fmt(msg, sizeof msg,
      "task %llu ran past its deadline and did not answer Cancel within %u "
      "ms",
      (unsigned long long)late->id, (unsigned)pool->o.kill_grace_ms);
  proc_hang(p, msg);
}

static void proc_send_ping(proc *p) {
  Ratchet__V1__Ping ping;
  ratchet__v1__ping__init(&ping);
  ping.seq = ++p->ping_seq;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_PING;
  f.ping = &ping;
  if (p->t_open)
    (void)ratchet_uv_transport_send(p->t, &f);
  p->ping_out = true;
  p->ping_sent_ms = uv_now(p->pool->loop);
  proc_schedule(p);
}

static void proc_timer_cb(uv_timer_t *h) {
  proc *p = h->data;
  timer_use use = p->timer_use;
  p->timer_use = T_NONE;
  char msg[TEXT_MAX];
  switch (use) {
  case T_START:
    fmt(msg, sizeof msg, "did not send Ready within %u ms",
        (unsigned)p->pool->o.start_timeout_ms);
    proc_hang(p, msg);
    break;
  case T_TASK:
    if (p->state == P_READY)
      proc_task_timer(p);
    break;
  case T_PING:
    if (p->state == P_READY)
      proc_send_ping(p);
    break;
  case T_PONG:
    if (p->state != P_READY)
      break;
    fmt(msg, sizeof msg, "did not answer Ping %llu within %u ms",
        (unsigned long long)p->ping_seq, (unsigned)p->pool->ping_timeout_ms);
    proc_hang(p, msg);
    break;
  case T_ESCALATE:
    proc_escalate(p);
    break;
  case T_LINGER:
    if (p->err_open) {
      p->err_open = false;
      uv_close((uv_handle_t *)&p->err, proc_uv_closed);
    }
    proc_release(p);
    break;
  case T_NONE:
    break;
  }
}

/* ---- closing and freeing a proc -------------------------------------- */

static void proc_free(proc *p) {
  ratchet_pool *pool = p->pool;
  for (proc **q = &pool->procs; *q != NULL; q = &(*q)->next)
    if (*q == p) {
      *q = p->next;
      break;
    }
  pool->n_procs--;
  ratchet_free(p->inflight);
  ratchet_free(p);
  pool_maybe_finish(pool);
}

static void proc_handle_closed(proc *p) {
  if (--p->handles == 0)
    proc_free(p);
}

static void proc_uv_closed(uv_handle_t *h) {
  proc_handle_closed(h->data);
}
static void proc_transport_closed(void *data) {
  proc_handle_closed(data);
}

/* Closes what is left once the proc is finalised and stderr has ended (or
 * the linger ran out). */
static void proc_release(proc *p) {
  if (!p->finalized || p->err_open)
    return;
  if (p->timer_open) {
    p->timer_open = false;
    uv_close((uv_handle_t *)&p->timer, proc_uv_closed);
  }
}

static void proc_close_transport(proc *p) {
  if (p->t_open) {
    p->t_open = false;
    ratchet_uv_transport_close(p->t, proc_transport_closed);
  }
}

/* ---- stderr ------------------------------------------------------------ */

static void flush_line(proc *p) {
  ratchet_pool *pool = p->pool;
  p->line[p->line_len] = '\0';
  size_t len = p->line_len;
  p->line_len = 0;
  p->slot->stderr_lines++;
  if (pool->o.on_stderr_line != NULL)
    pool->o.on_stderr_line(pool, p->slot->id, p->line, len);
}

static void err_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  proc *p = h->data;
  buf->base = p->pool->readbuf;
  buf->len = sizeof p->pool->readbuf;
}

static void err_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  proc *p = st->data;
  for (ssize_t i = 0; i < n; i++) {
    char c = buf->base[i];
    if (c == '\n') {
      flush_line(p);
      continue;
    }
    p->line[p->line_len++] = c;
    if (p->line_len == LINE_MAX_BYTES - 1)
      flush_line(p);
  }
  if (n < 0) {
    if (p->line_len > 0)
      flush_line(p);
    if (p->err_open) {
      p->err_open = false;
      uv_close((uv_handle_t *)&p->err, proc_uv_closed);
    }
    proc_release(p);
  }
}

/* ---- the protocol ----------------------------------------------------- */

static void proc_protocol_error(proc *p, int err, const char *text) {
  set_cause(p, "broke the protocol: %s", text);
  p->protocol_error = true;
  p->state = P_DEAD;
  if (p->t_open)
    (void)ratchet_uv_transport_send_error(p->t, err, text);
  /* Closing our ends tells the worker to stop; it gets kill_grace_ms to do
   * so before SIGTERM. The rest of its stdout is meaningless. */
  proc_close_transport(p);
  p->eof = true;
  if (p->kill_stage == 0) {
    p->kill_stage = 1;
    proc_arm(p, T_ESCALATE, p->pool->o.kill_grace_ms);
  }
  proc_try_finalize(p);
}

/* The worker's resident set in KiB from /proc/<pid>/statm, or 0. */
static uint64_t read_rss_kb(pid_t pid) {
  char path[64];
  fmt(path, sizeof path, "/proc/%d/statm", (int)pid);
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return 0;
  unsigned long size = 0, resident = 0;
  int n = fscanf(f, "%lu %lu", &size, &resident);
  fclose(f);
  if (n != 2)
    return 0;
  long page = sysconf(_SC_PAGESIZE);
  return (uint64_t)resident * (uint64_t)(page > 0 ? page : 4096) / 1024u;
}

/* Marks p to retire when its RSS (statm; else the Pong's, reported) is
 * above max_rss_kb. */
static void proc_check_rss(proc *p, uint64_t reported_kb) {
  ratchet_pool *pool = p->pool;
  if (pool->o.max_rss_kb == 0 || p->reaped)
    return;
  uint64_t rss = read_rss_kb(p->pid);
  if (rss == 0)
    rss = reported_kb;
  if (rss != 0)
    p->rss_kb = rss;
  if (rss > pool->o.max_rss_kb && !p->retiring) {
    p->retiring = true;
    fmt(p->retire_why, sizeof p->retire_why,
        "its RSS of %llu KiB is above max_rss_kb %llu", (unsigned long long)rss,
        (unsigned long long)pool->o.max_rss_kb);
  }
}

/* Recycles a retiring worker once it holds no task: Shutdown (a graceful
 * stop the pool asked for: no restart decision, no crash, no intensity),
 * and a new process in its slot at once. */
static void proc_maybe_recycle(proc *p) {
  ratchet_pool *pool = p->pool;
  slot *s = p->slot;
  if (!p->retiring || p->n_inflight > 0 || p->state != P_READY ||
      p->stop_requested || pool->closing || pool->state != S_RUNNING ||
      s->removed || s->cur != p)
    return;
  s->recycles++;
  pool->st.recycled++;
  proc_stop(p, pool->o.close_grace_ms);
  ratchet_pool_event ev;
  event_init(&ev, RATCHET_POOL_EVENT_RECYCLED, p);
  ev.tasks_done = p->tasks_done;
  ev.max_rss_kb = p->rss_kb;
  ev.message = p->retire_why;
  emit(pool, &ev);
  if (!pool->closing && pool->state == S_RUNNING && !s->removed &&
      s->cur == NULL && !s->restart_pending)
    slot_start(s);
}

static void on_ready(proc *p, const Ratchet__V1__Ready *r) {
  ratchet_pool *pool = p->pool;
  char text[RATCHET_CODEC_TEXT_MAX];
  if (p->state != P_STARTING && p->state != P_STOPPING) {
    proc_protocol_error(p, RATCHET_EPROTO_UNEXPECTED, "a second Ready");
    return;
  }
  if (p->ready_seen) {
    proc_protocol_error(p, RATCHET_EPROTO_UNEXPECTED, "a second Ready");
    return;
  }
  if (ratchet_codec_check_ready(r, text, sizeof text) != 0) {
    proc_protocol_error(p, RATCHET_EPROTO_VERSION, text);
    return;
  }
  (void)ratchet_uv_transport_set_send_limit(
      p->t, ratchet_codec_frame_limit(r->max_frame_size));
  p->capacity = pool->o.pipeline_depth;
  if (r->max_in_flight != 0 && r->max_in_flight < p->capacity)
    p->capacity = r->max_in_flight;
  p->ready_seen = true;
  if (p->state == P_STOPPING)
    return; /* stopped before it was ready: no READY event, no tasks */
  p->state = P_READY;
  if (p->timer_use == T_START) {
    uv_timer_stop(&p->timer);
    p->timer_use = T_NONE;
  }
  p->idle_since_ms = uv_now(pool->loop);
  proc_schedule(p);
  ratchet_pool_event ev;
  event_init(&ev, RATCHET_POOL_EVENT_READY, p);
  emit(pool, &ev);
}

static void on_result(proc *p, const Ratchet__V1__Result *r) {
  ratchet_pool *pool = p->pool;
  uint32_t i = 0;
  while (i < p->n_inflight && p->inflight[i].id != r->id)
    i++;
  if (i == p->n_inflight) {
    char text[96];
    fmt(text, sizeof text, "a Result for task %llu, which is not in flight",
        (unsigned long long)r->id);
    proc_protocol_error(p, RATCHET_EPROTO_UNEXPECTED, text);
    return;
  }
  inflight task = p->inflight[i];
  /* Keep dispatch order: a worker runs its tasks in order, so inflight[0]
   * is the one it is running, the only one a crash can be blamed on. */
  memmove(&p->inflight[i], &p->inflight[i + 1],
          (p->n_inflight - i - 1) * sizeof p->inflight[0]);
  p->n_inflight--;
  if (task.overdue)
    p->n_overdue--;
  p->tasks_done++;
  p->slot->tasks_done++;
  p->slot->flaps = 0; /* it did some work: it is not flapping */
  pool->st.tasks_done++;
  if (p->n_inflight == 0) {
    p->idle_since_ms = uv_now(pool->loop);
    /* A Ping sent just before a task may be answered after it: its
     * window starts again now that the worker is idle. */
    p->ping_sent_ms = p->idle_since_ms;
  }
  /* Retire it before the owner's callback can hand it another task. */
  if (p->recycle_at != 0 && p->tasks_done >= p->recycle_at && !p->retiring) {
    p->retiring = true;
    fmt(p->retire_why, sizeof p->retire_why,
        "finished %llu tasks (recycle after %u + jitter)",
        (unsigned long long)p->tasks_done,
        (unsigned)pool->o.recycle_after_tasks);
  }
  proc_check_rss(p, 0);
  ratchet_pool_outcome oc = {.task_id = task.id,
                             .worker_id = p->slot->id,
                             .result = r,
                             .lost = 0,
                             .reason = "",
                             .crash_count = task.crashes,
                             .poison = false};
  pool->o.on_outcome(pool, &oc);
  proc_maybe_recycle(p);
  proc_schedule(p);
}

static void on_pong(proc *p, const Ratchet__V1__Pong *pong) {
  if (pong->seq == 0 || pong->seq > p->ping_seq) {
    char text[96];
    fmt(text, sizeof text, "a Pong for Ping %llu, which was not sent",
        (unsigned long long)pong->seq);
    proc_protocol_error(p, RATCHET_EPROTO_UNEXPECTED, text);
    return;
  }
  p->pongs++;
  if (pong->seq == p->ping_seq && p->ping_out) {
    p->ping_out = false;
    p->idle_since_ms = uv_now(p->pool->loop);
  }
  if (pong->stats != NULL && pong->stats->rss_kb != 0)
    p->rss_kb = p->pong_rss_kb = pong->stats->rss_kb;
  proc_check_rss(p, p->pong_rss_kb);
  proc_maybe_recycle(p);
  proc_schedule(p);
}

static void on_frame(ratchet_uv_transport *t, const Ratchet__V1__Frame *f) {
  proc *p = ratchet_uv_transport_data(t);
  /* Frames after an exit are still read (a Result may have been written
   * just before it), but nothing after a protocol error or a hang. */
  if (p->protocol_error || (p->state == P_DEAD && !p->ready_seen))
    return;
  if (!p->ready_seen && f->msg_case != RATCHET__V1__FRAME__MSG_READY &&
      f->msg_case != RATCHET__V1__FRAME__MSG_ERROR) {
    char text[96];
    fmt(text, sizeof text, "a %s before Ready",
        ratchet_codec_msg_name(f->msg_case));
    proc_protocol_error(p, RATCHET_EPROTO_UNEXPECTED, text);
    return;
  }
  switch (f->msg_case) {
  case RATCHET__V1__FRAME__MSG_READY:
    on_ready(p, f->ready);
    break;
  case RATCHET__V1__FRAME__MSG_RESULT:
    on_result(p, f->result);
    break;
  case RATCHET__V1__FRAME__MSG_PONG:
    on_pong(p, f->pong);
    break;
  case RATCHET__V1__FRAME__MSG_LOG:
    if (p->pool->o.on_log != NULL)
      p->pool->o.on_log(p->pool, p->slot->id, f->log->task_id,
                        (int)f->log->level,
                        f->log->text != NULL ? f->log->text : "");
    break;
  case RATCHET__V1__FRAME__MSG_ERROR:
    /* The transport ends with RATCHET_EPEER next. */
    set_cause(p, "sent Error{%s}: %s",
              ratchet_codec_error_code_name(f->error->code),
              f->error->text != NULL ? f->error->text : "");
    break;
  default: {
    char text[96];
    fmt(text, sizeof text, "an unexpected %s",
        ratchet_codec_msg_name(f->msg_case));
    proc_protocol_error(p, RATCHET_EPROTO_UNEXPECTED, text);
    break;
  }
  }
}

static void on_end(ratchet_uv_transport *t, int err) {
  proc *p = ratchet_uv_transport_data(t);
  if (err != RATCHET_EEOF && err != RATCHET_EPEER) {
    set_cause(p, "broke the protocol: %s", ratchet_strerror(err));
    p->protocol_error = true;
  } else if (err == RATCHET_EPEER) {
    p->protocol_error = true;
  }
  proc_close_transport(p);
  p->eof = true;
  p->state = P_DEAD;
  /* A worker whose stdout ended normally exits next; give it kill_grace_ms
   * before SIGTERM. */
  if (!p->reaped && p->kill_stage == 0 && p->timer_use != T_ESCALATE) {
    p->kill_stage = 1;
    proc_arm(p, T_ESCALATE, p->pool->o.kill_grace_ms);
  }
  proc_try_finalize(p);
}

/* The send queue fell below the low watermark: proc_has_room reads the
 * transport's congestion flag, so dispatch may choose this worker again. */
static void on_drain(ratchet_uv_transport *t) {
  proc *p = ratchet_uv_transport_data(t);
  p->pool->st.drains++;
}

/* ---- reaping ----------------------------------------------------------- */

static void proc_reap(proc *p) {
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0 ||
      si.si_pid != p->pid)
    return;
  /* The zombie still holds the pgid: kill what is left of the group now. */
  (void)kill(-p->pid, SIGKILL);
  int status = 0;
  if (wait4(p->pid, &status, WNOHANG, &p->ru) != p->pid)
    return;
  p->reaped = true;
  if (WIFSIGNALED(status)) {
    p->term_signal = WTERMSIG(status);
    p->core_dumped = WCOREDUMP(status);
    p->exit_status = -1;
  } else {
    p->exit_status = WEXITSTATUS(status);
  }
  p->state = P_DEAD;
  if (!p->eof) {
    /* The group is gone, so stdout ends at once unless a process that
     * left the group holds it; bound the wait. */
    proc_arm(p, T_ESCALATE, p->pool->o.kill_grace_ms);
  }
  proc_try_finalize(p);
}

static void sigchld_cb(uv_signal_t *h, int signum) {
  (void)signum;
  ratchet_pool *pool = h->data;
  proc *next;
  for (proc *p = pool->procs; p != NULL; p = next) {
    next = p->next;
    if (!p->reaped)
      proc_reap(p);
  }
}

/* ---- finalising: outcomes, events, the restart decision --------------- */

static uint64_t backoff_delay(ratchet_pool *pool, slot *s) {
  uint32_t retry = s->flaps + 1;
  uint64_t d =
      ratchet_backoff_delay(&pool->o.restart_backoff, retry, s->prev_delay_ns,
                            ratchet_rng_next(&pool->rng));
  s->prev_delay_ns = d;
  return d;
}

static void restart_timer_cb(uv_timer_t *h) {
  slot *s = h->data;
  s->restart_pending = false;
  if (s->pool->closing || s->pool->state != S_RUNNING || s->removed ||
      s->cur != NULL)
    return;
  slot_start(s);
}

/* Decides what follows the end of slot s's process. no_progress: it never
 * got Ready, or died on its first task. Returns the restart delay through
 * *delay and true when a restart is scheduled; fills fail_msg when the pool
 * must fail. */
static bool supervise(ratchet_pool *pool, slot *s, ratchet__end_kind end,
                      bool no_progress, const char *what, uint64_t *delay,
                      char *fail_msg, size_t cap) {
  if (pool->closing || pool->state != S_RUNNING || s->removed)
    return false;
  if (ratchet__restart_action(pool->o.restart, end) != RATCHET__ACT_RESTART)
    return false;
  if (no_progress)
    s->flaps++;
  else
    s->flaps = 0;
  if (pool->o.flap_limit != 0 && s->flaps >= pool->o.flap_limit) {
    fmt(fail_msg, cap,
        "worker %u failed %u times in a row without making progress; "
        "last: %s",
        (unsigned)s->id, (unsigned)s->flaps, what);
    return false;
  }
  if (ratchet__intensity_note(&pool->intensity, ratchet_now_ns())) {
    fmt(fail_msg, cap,
        "more than %u restarts within %u ms (restart intensity); last: "
        "worker %u %s",
        (unsigned)pool->o.max_restarts, (unsigned)pool->o.restart_period_ms,
        (unsigned)s->id, what);
    return false;
  }
  *delay = backoff_delay(pool, s);
  s->restarts++;
  pool->st.restarts++;
  s->restart_pending = true;
  uint64_t ms = (*delay + RATCHET_NS_PER_MS - 1) / RATCHET_NS_PER_MS;
  uv_timer_start(&s->restart_timer, restart_timer_cb, ms, 0);
  return true;
}

static void proc_try_finalize(proc *p) {
  if (p->finalized || !p->reaped || !p->eof)
    return;
  ratchet_pool *pool = p->pool;
  slot *s = p->slot;
  p->finalized = true;
  p->state = P_DEAD;
  if (p->timer_use != T_NONE) {
    uv_timer_stop(&p->timer);
    p->timer_use = T_NONE;
  }
  if (s->cur == p)
    s->cur = NULL;
  s->exits++;
  pool->st.exits++;

  char exit_text[128], what[TEXT_MAX + 160];
  describe_exit(p, exit_text, sizeof exit_text);
  if (p->cause[0] != '\0')
    fmt(what, sizeof what, "%s (%s%s)", p->cause, exit_text,
        p->ready_seen ? "" : " before Ready");
  else
    fmt(what, sizeof what, "%s%s", exit_text,
        p->ready_seen ? "" : " before Ready");

  ratchet__end_kind end;
  if (p->stop_requested)
    end = RATCHET__END_REQUESTED;
  else if (p->exit_status == 0 && !p->protocol_error && p->cause[0] == '\0')
    end = RATCHET__END_CLEAN;
  else
    end = RATCHET__END_ABNORMAL;
  bool no_progress =
      !p->ready_seen || (p->n_inflight > 0 && p->tasks_done == 0);

  /* State first ... */
  uint64_t delay = 0;
  char fail_msg[TEXT_MAX + 320];
  fail_msg[0] = '\0';
  bool restart = supervise(pool, s, end, no_progress, what, &delay, fail_msg,
                           sizeof fail_msg);
  uint32_t n_lost = p->n_inflight;
  p->n_inflight = 0;
  s->tasks_lost += n_lost;
  pool->st.tasks_lost += n_lost;
  if (pool->st.in_flight >= n_lost)
    pool->st.in_flight -= n_lost;

  /* ... callbacks last. */
  ratchet_pool_event ev;
  event_init(&ev, RATCHET_POOL_EVENT_EXITED, p);
  ev.exit_status = p->exit_status;
  ev.term_signal = p->term_signal;
  ev.core_dumped = p->core_dumped;
  ev.before_ready = !p->ready_seen;
  ev.user_cpu_us = (uint64_t)p->ru.ru_utime.tv_sec * 1000000u +
                   (uint64_t)p->ru.ru_utime.tv_usec;
  ev.sys_cpu_us = (uint64_t)p->ru.ru_stime.tv_sec * 1000000u +
                  (uint64_t)p->ru.ru_stime.tv_usec;
  ev.max_rss_kb = (uint64_t)p->ru.ru_maxrss;
  ev.tasks_done = p->tasks_done;
  ev.message = what;
  emit(pool, &ev);

  char reason[TEXT_MAX + 200];
  fmt(reason, sizeof reason, "worker %u (pid %d) %s", (unsigned)s->id,
      (int)p->pid, what);
  for (uint32_t i = 0; i < n_lost; i++) {
    ratchet_pool_outcome oc;
    memset(&oc, 0, sizeof oc);
    oc.task_id = p->inflight[i].id;
    oc.worker_id = s->id;
    oc.reason = reason;
    oc.crash_count = p->inflight[i].crashes;
    if (end == RATCHET__END_REQUESTED) {
      oc.lost = RATCHET_POOL_LOST_CLOSED;
    } else if (p->hung && !p->protocol_error) {
      /* Only the tasks that overran are to blame; others pipelined on the
       * same worker are its victims. */
      if (p->inflight[i].overdue) {
        oc.lost = RATCHET_POOL_LOST_HUNG;
        oc.crash_count++;
      } else {
        oc.lost = RATCHET_POOL_LOST_CLOSED;
      }
    } else if (i == 0) {
      /* The task the worker was running: the oldest, as it runs them in
       * order. Whatever killed the worker (or made it break the protocol)
       * happened while it ran this one. */
      oc.lost = p->protocol_error ? RATCHET_POOL_LOST_PROTOCOL
                                  : RATCHET_POOL_LOST_DIED;
      oc.crash_count++;
    } else {
      /* Pipelined behind the running task: it never ran, so it is not to
       * blame. Charging it would turn the innocent tasks queued behind a
       * poison pill into poison pills too. */
      oc.lost = RATCHET_POOL_LOST_QUEUED;
    }
    oc.poison = pool->o.poison_threshold != 0 &&
                oc.crash_count >= pool->o.poison_threshold;
    pool->o.on_outcome(pool, &oc);
  }

  if (restart) {
    ratchet_pool_event rev;
    event_init(&rev, RATCHET_POOL_EVENT_RESTARTING, p);
    rev.delay_ns = delay;
    rev.message = what;
    emit(pool, &rev);
  } else if (fail_msg[0] != '\0') {
    pool_fail(pool, fail_msg);
  }

  /* Linger for the last of stderr; the group is dead, so it ends soon. */
  if (p->err_open)
    proc_arm(p, T_LINGER, pool->o.kill_grace_ms);
  proc_release(p);
}

/* ---- starting a proc --------------------------------------------------- */

static int proc_send_hello(proc *p) {
  char version[] = "0.1.0";
  Ratchet__V1__Hello h;
  ratchet__v1__hello__init(&h);
  h.protocol_version = RATCHET_PROTOCOL_VERSION;
  h.orchestrator_version = version;
  h.max_frame_size = p->pool->o.max_frame_size != 0 ? p->pool->o.max_frame_size
                                                    : RATCHET_FRAME_MAX_DEFAULT;
  h.worker_id = p->slot->id;
  h.pipeline_depth = p->pool->o.pipeline_depth;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_HELLO;
  f.hello = &h;
  int rc = ratchet_uv_transport_send(p->t, &f);
  return rc < 0 ? rc : 0;
}

/* Collects the pool's own pipe descriptors, for a FORK child to close. */
static int collect_fds(ratchet_pool *pool, int **out, size_t *n) {
  size_t cap = (size_t)pool->n_procs * 3, k = 0;
  int *fds = NULL;
  if (cap > 0) {
    fds = ratchet_calloc(cap, sizeof *fds);
    if (fds == NULL)
      return -ENOMEM;
  }
  for (proc *q = pool->procs; q != NULL; q = q->next) {
    uv_os_fd_t fd;
    if (q->t_open && uv_fileno((uv_handle_t *)&q->in, &fd) == 0)
      fds[k++] = fd;
    if (q->t_open && uv_fileno((uv_handle_t *)&q->out, &fd) == 0)
      fds[k++] = fd;
    if (q->err_open && uv_fileno((uv_handle_t *)&q->err, &fd) == 0)
      fds[k++] = fd;
  }
  *out = fds;
  *n = k;
  return 0;
}

/* A start that produced no process: counts as an end before Ready. */
static void slot_start_failed(slot *s, int err) {
  ratchet_pool *pool = s->pool;
  char what[TEXT_MAX], fail_msg[TEXT_MAX + 320];
  fmt(what, sizeof what, "could not start: %s", ratchet_strerror(err));
  fail_msg[0] = '\0';
  uint64_t delay = 0;
  if (supervise(pool, s, RATCHET__END_ABNORMAL, true, what, &delay, fail_msg,
                sizeof fail_msg)) {
    ratchet_pool_event ev;
    event_init(&ev, RATCHET_POOL_EVENT_RESTARTING, NULL);
    ev.worker_id = s->id;
    ev.generation = s->generation;
    ev.delay_ns = delay;
    ev.message = what;
    emit(pool, &ev);
  } else if (fail_msg[0] != '\0') {
    pool_fail(pool, fail_msg);
  }
}

/* Starts a process for s. Returns 0, or the error when no process was
 * started (the caller decides whether that is the supervisor's business). */
static int slot_spawn(slot *s) {
  ratchet_pool *pool = s->pool;
  proc *p = ratchet_calloc(1, sizeof *p);
  if (p == NULL)
    return -ENOMEM;
  p->inflight = ratchet_calloc(pool->o.pipeline_depth, sizeof *p->inflight);
  if (p->inflight == NULL) {
    ratchet_free(p);
    return -ENOMEM;
  }
  p->pool = pool;
  p->slot = s;
  p->exit_status = -1;
  if (pool->o.recycle_after_tasks != 0)
    p->recycle_at = pool->o.recycle_after_tasks +
                    (pool->o.recycle_jitter_tasks != 0
                         ? ratchet_rng_upto(ratchet_rng_next(&pool->rng),
                                            pool->o.recycle_jitter_tasks)
                         : 0);

  ratchet__proc_spec spec = {.mode = pool->o.mode,
                             .argv = pool->argv,
                             .env = pool->env,
                             .cwd = pool->cwd,
                             .fork_main = pool->o.fork_main,
                             .fork_arg = pool->o.fork_arg,
                             .worker = pool->o.worker,
                             .close_fds = NULL,
                             .n_close_fds = 0};
  int *close_fds = NULL;
  int rc = 0;
  if (pool->o.mode == RATCHET_POOL_FORK) {
    rc = collect_fds(pool, &close_fds, &spec.n_close_fds);
    if (rc != 0)
      goto fail;
    spec.close_fds = close_fds;
  }
  int fds[3], exec_errno = 0;
  rc = ratchet__proc_start(&spec, &p->pid, fds, &exec_errno);
  ratchet_free(close_fds);
  if (rc != 0)
    goto fail;

  /* From here a process exists: it is registered, so it will be reaped,
   * whatever else fails. */
  s->generation++;
  p->generation = s->generation;
  pool->st.started++;
  p->next = pool->procs;
  pool->procs = p;
  pool->n_procs++;
  s->cur = p;
  if (exec_errno != 0)
    set_cause(
        p, "%s %s: %s", pool->o.mode == RATCHET_POOL_SPAWN ? "exec" : "start",
        pool->argv != NULL ? pool->argv[0] : "worker", strerror(exec_errno));

  uv_timer_init(pool->loop, &p->timer);
  p->timer.data = p;
  p->timer_open = true;
  p->handles++;
  uv_pipe_init(pool->loop, &p->in, 0);
  uv_pipe_init(pool->loop, &p->out, 0);
  uv_pipe_init(pool->loop, &p->err, 0);
  p->in.data = p->out.data = p->err.data = p;
  int r1 = uv_pipe_open(&p->in, fds[0]);
  int r2 = uv_pipe_open(&p->out, fds[1]);
  int r3 = uv_pipe_open(&p->err, fds[2]);
  int setup = r1 ? r1 : r2 ? r2 : r3;
  ratchet_uv_transport_options to = RATCHET_UV_TRANSPORT_OPTIONS_INIT;
  to.max_frame_size = pool->o.max_frame_size;
  ratchet_uv_transport_callbacks cbs = {
      .on_frame = on_frame, .on_end = on_end, .on_drain = on_drain};
  if (setup == 0)
    setup = ratchet_uv_transport_new(
        (uv_stream_t *)&p->out, (uv_stream_t *)&p->in, &to, &cbs, p, &p->t);
  if (setup == 0) {
    p->t_open = true;
    p->handles++;
  } else {
    /* Close the pipes ourselves; a failed uv_pipe_open leaves the fd to us
     * (closing the handle closes only an fd it took). */
    if (r1 != 0)
      close(fds[0]);
    if (r2 != 0)
      close(fds[1]);
    uv_close((uv_handle_t *)&p->in, proc_uv_closed);
    uv_close((uv_handle_t *)&p->out, proc_uv_closed);
    p->handles += 2;
    p->eof = true;
  }
  p->err_open = true;
  p->handles++;
  if (r3 != 0 ||
      uv_read_start((uv_stream_t *)&p->err, err_alloc, err_read) != 0) {
    if (r3 != 0)
      close(fds[2]);
    p->err_open = false;
    uv_close((uv_handle_t *)&p->err, proc_uv_closed);
  }

  ratchet_pool_event ev;
  event_init(&ev, RATCHET_POOL_EVENT_STARTING, p);
  if (setup != 0) {
    set_cause(p, "could not set up its pipes: %s", ratchet_strerror(setup));
    p->state = P_DEAD;
    (void)kill(-p->pid, SIGKILL);
    emit(pool, &ev);
    return 0;
  }
  p->state = P_STARTING;
  int hr = proc_send_hello(p);
  if (hr != 0)
    set_cause(p, "could not send Hello: %s", ratchet_strerror(hr));
  if (pool->o.start_timeout_ms != 0)
    proc_arm(p, T_START, pool->o.start_timeout_ms);
  emit(pool, &ev);
  return 0;

fail:
  ratchet_free(p->inflight);
  ratchet_free(p);
  return rc;
}

static void slot_start(slot *s) {
  int rc = slot_spawn(s);
  if (rc != 0)
    slot_start_failed(s, rc);
}

/* ---- stopping ---------------------------------------------------------- */

/* Asks p to end: Shutdown{grace_ms}, then after grace_ms the escalation.
 * Its tasks still in flight when it is reaped are lost (CLOSED). */
static void proc_stop(proc *p, uint64_t grace_ms) {
  if (p->slot->cur == p)
    p->slot->cur = NULL;
  p->stop_requested = true;
  if (p->finalized)
    return;
  if (p->state == P_STARTING) {
    /* Nothing but Hello may precede Ready, so no Shutdown: the end of its
     * stdin tells it to exit (docs/protocol.md), SIGTERM follows if not. */
    p->state = P_DEAD;
    proc_close_transport(p);
    p->eof = true;
    p->kill_stage = 1;
    proc_arm(p, T_ESCALATE, p->pool->o.kill_grace_ms);
    proc_try_finalize(p);
    return;
  }
  if (p->state == P_READY) {
    p->state = P_STOPPING;
    Ratchet__V1__Shutdown sd;
    ratchet__v1__shutdown__init(&sd);
    sd.grace_ms = grace_ms;
    Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
    f.msg_case = RATCHET__V1__FRAME__MSG_SHUTDOWN;
    f.shutdown = &sd;
    if (p->t_open)
      (void)ratchet_uv_transport_send(p->t, &f);
  }
  if (p->timer_use != T_ESCALATE || p->kill_stage == 0) {
    p->kill_stage = 0;
    proc_arm(p, T_ESCALATE, grace_ms);
  }
}

static void slot_timer_closed(uv_handle_t *h) {
  slot *s = h->data;
  ratchet_pool *pool = s->pool;
  pool->timers_open--;
  pool_maybe_finish(pool);
}

static void pool_stop_all(ratchet_pool *pool) {
  for (uint32_t i = 0; i < pool->n_slots; i++) {
    slot *s = pool->slots[i];
    if (s->restart_pending) {
      uv_timer_stop(&s->restart_timer);
      s->restart_pending = false;
    }
  }
  for (proc *p = pool->procs; p != NULL; p = p->next)
    if (!p->stop_requested)
      proc_stop(p, pool->o.close_grace_ms);
}

static void pool_fail(ratchet_pool *pool, const char *msg) {
  if (pool->state == S_FAILED)
    return;
  pool->state = S_FAILED;
  pool->st.failed = true;
  pool_stop_all(pool);
  ratchet_pool_event ev;
  event_init(&ev, RATCHET_POOL_EVENT_FAILED, NULL);
  ev.message = msg;
  emit(pool, &ev);
}

static void pool_free(ratchet_pool *pool) {
  for (uint32_t i = 0; i < pool->n_slots; i++)
    ratchet_free(pool->slots[i]);
  ratchet_free(pool->slots);
  free_vec(pool->argv);
  free_vec(pool->env);
  ratchet_free(pool->cwd);
  ratchet__intensity_free(&pool->intensity);
  ratchet_free(pool);
}

static void sig_closed(uv_handle_t *h) {
  ratchet_pool *pool = h->data;
  pool->sig_state = 2;
  pool_maybe_finish(pool);
}

static void pool_maybe_finish(ratchet_pool *pool) {
  if (!pool->closing)
    return;
  if (pool->n_procs == 0 && pool->sig_state == 0) {
    pool->sig_state = 1;
    uv_close((uv_handle_t *)&pool->sigchld, sig_closed);
  }
  if (pool->sig_state == 2 && pool->timers_open == 0) {
    ratchet_pool_close_cb cb = pool->close_cb;
    void *data = pool->o.data;
    pool_free(pool);
    if (cb != NULL)
      cb(data);
  }
}

/* ---- slots ------------------------------------------------------------- */

/* Grows the slot array to size slots (new ones "removed" until started).
 * All memory first, then the timers, which cannot fail: on -ENOMEM the pool
 * is as it was. */
static int pool_add_slots(ratchet_pool *pool, uint32_t size) {
  if (size <= pool->n_slots)
    return 0;
  slot **v = ratchet_realloc(pool->slots, size * sizeof *v);
  if (v == NULL)
    return -ENOMEM;
  pool->slots = v;
  for (uint32_t i = pool->n_slots; i < size; i++) {
    v[i] = ratchet_calloc(1, sizeof *v[i]);
    if (v[i] == NULL) {
      while (i-- > pool->n_slots)
        ratchet_free(v[i]);
      return -ENOMEM;
    }
  }
  for (; pool->n_slots < size; pool->n_slots++) {
    slot *s = v[pool->n_slots];
    s->pool = pool;
    s->id = pool->n_slots;
    s->removed = true;
    uv_timer_init(pool->loop, &s->restart_timer);
    s->restart_timer.data = s;
    pool->timers_open++;
  }
  return 0;
}

/* ---- the public API ---------------------------------------------------- */

static bool ms_ok(uint32_t v, uint32_t lo) {
  return v >= lo && v <= MAX_MS;
}

static int check_options(const ratchet_pool_options *o) {
  if (o->on_outcome == NULL || o->size < 1 || o->size > RATCHET_POOL_MAX_SIZE ||
      o->pipeline_depth < 1 || o->pipeline_depth > MAX_PIPELINE ||
      (unsigned)o->restart > RATCHET_RESTART_TEMPORARY ||
      o->restart_period_ms < 1 || o->restart_period_ms > 86400000u ||
      o->max_restarts > 100000u || !ms_ok(o->kill_grace_ms, 1) ||
      !ms_ok(o->close_grace_ms, 0) || !ms_ok(o->start_timeout_ms, 0) ||
      o->max_frame_size > SIZE_MAX / 2 ||
      ratchet_backoff_validate(&o->restart_backoff) != 0)
    return -EINVAL;
  if (o->mode == RATCHET_POOL_SPAWN) {
    if (o->argv == NULL || o->argv[0] == NULL)
      return -EINVAL;
  } else if (o->mode == RATCHET_POOL_FORK) {
    if (o->worker == NULL && o->fork_main == NULL)
      return -EINVAL;
  } else {
    return -EINVAL;
  }
  if (o->mode == RATCHET_POOL_SPAWN && o->worker != NULL)
    return -EINVAL;
  if (!ms_ok(o->task_timeout_ms, 0) || !ms_ok(o->ping_interval_ms, 0) ||
      !ms_ok(o->ping_timeout_ms, 0) ||
      (o->ping_timeout_ms != 0 && o->ping_interval_ms == 0) ||
      (o->recycle_jitter_tasks != 0 && o->recycle_after_tasks == 0) ||
      o->recycle_jitter_tasks > 1000000000u)
    return -EINVAL;
  return 0;
}

int ratchet_pool_new(struct uv_loop_s *loop, const ratchet_pool_options *o,
                     ratchet_pool **out) {
  if (loop == NULL || o == NULL || out == NULL)
    return -EINVAL;
  int rc = check_options(o);
  if (rc != 0)
    return rc;
  ratchet_pool *pool = ratchet_calloc(1, sizeof *pool);
  if (pool == NULL)
    return -ENOMEM;
  pool->loop = loop;
  pool->o = *o;
  pool->o.argv = NULL;
  pool->o.env = NULL;
  pool->o.cwd = NULL;
  rc = -ENOMEM;
  if (o->mode == RATCHET_POOL_SPAWN && dup_vec(o->argv, &pool->argv) != 0)
    goto fail;
  if (o->env != NULL && dup_vec(o->env, &pool->env) != 0)
    goto fail;
  if (o->cwd != NULL && (pool->cwd = dup_str(o->cwd)) == NULL)
    goto fail;
  rc = ratchet__intensity_init(&pool->intensity, o->max_restarts,
                               (uint64_t)o->restart_period_ms *
                                   RATCHET_NS_PER_MS);
  if (rc != 0)
    goto fail;
  ratchet_rng_seed(&pool->rng, o->seed != 0 ? o->seed : ratchet_now_ns());
  pool->ping_timeout_ms =
      o->ping_timeout_ms != 0 ? o->ping_timeout_ms : o->ping_interval_ms;
  /* The slots' memory now, so that start cannot fail for it; their timers
   * only once nothing else can fail. */
  pool->slots = ratchet_calloc(o->size, sizeof *pool->slots);
  if (pool->slots == NULL)
    goto fail;
  for (uint32_t i = 0; i < o->size; i++)
    if ((pool->slots[i] = ratchet_calloc(1, sizeof *pool->slots[i])) == NULL)
      goto fail;
  rc = uv_signal_init(loop, &pool->sigchld);
  if (rc != 0)
    goto fail;
  pool->sigchld.data = pool;
  for (; pool->n_slots < o->size; pool->n_slots++) {
    slot *s = pool->slots[pool->n_slots];
    s->pool = pool;
    s->id = pool->n_slots;
    s->removed = true;
    uv_timer_init(loop, &s->restart_timer);
    s->restart_timer.data = s;
    pool->timers_open++;
  }
  pool->size = o->size;
  pool->st.size = o->size;
  *out = pool;
  return 0;

fail:
  if (pool->slots != NULL)
    for (uint32_t i = 0; i < o->size; i++)
      ratchet_free(pool->slots[i]);
  ratchet_free(pool->slots);
  free_vec(pool->argv);
  free_vec(pool->env);
  ratchet_free(pool->cwd);
  ratchet__intensity_free(&pool->intensity);
  ratchet_free(pool);
  return rc;
}

int ratchet_pool_start(ratchet_pool *p) {
  if (p->closing)
    return -EPIPE;
  if (p->state != S_NEW)
    return -EALREADY;
  int rc = uv_signal_start(&p->sigchld, sigchld_cb, SIGCHLD);
  if (rc != 0)
    return rc;
  /* A write to a dead worker's stdin must fail with EPIPE, not kill us;
   * a handler the program installed is left alone. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL &&
      !(sa.sa_flags & SA_SIGINFO))
    (void)signal(SIGPIPE, SIG_IGN);
  p->state = S_RUNNING;
  for (uint32_t i = 0; i < p->size; i++) {
    slot *s = p->slots[i];
    s->removed = false;
    rc = slot_spawn(s);
    if (rc != 0 && i == 0) {
      p->state = S_NEW;
      for (uint32_t j = 0; j < p->size; j++)
        p->slots[j]->removed = true;
      uv_signal_stop(&p->sigchld);
      return rc;
    }
    if (rc != 0)
      slot_start_failed(s, rc);
  }
  return 0;
}

/* Ready, not retiring, no task past its deadline (its Cancel is pending),
 * and its stdin not congested (until on_drain). */
static bool proc_has_room(const proc *p) {
  return p != NULL && p->state == P_READY && p->t_open && !p->retiring &&
         !p->send_broken && p->n_overdue == 0 && p->n_inflight < p->capacity &&
         !ratchet_uv_transport_congested(p->t);
}

/* A task's deadline in loop time: task_timeout_ms from now, or its own
 * deadline_unix_ms, whichever comes first; 0 for none. */
static uint64_t task_deadline_ms(ratchet_pool *pool,
                                 const Ratchet__V1__Task *task) {
  uint64_t now = uv_now(pool->loop), d = 0;
  if (pool->o.task_timeout_ms != 0)
    d = now + pool->o.task_timeout_ms;
  if (task->deadline_unix_ms != 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t wall =
        (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    uint64_t own =
        now +
        (task->deadline_unix_ms > wall ? task->deadline_unix_ms - wall : 0);
    if (own == 0)
      own = 1;
    if (d == 0 || own < d)
      d = own;
  }
  return d;
}

int ratchet_pool_dispatch(ratchet_pool *pool, const Ratchet__V1__Task *task,
                          uint32_t crash_count, uint32_t worker_id,
                          uint32_t *worker_out) {
  if (pool == NULL || task == NULL)
    return -EINVAL;
  if (pool->closing || pool->state != S_RUNNING)
    return -ESHUTDOWN;
  proc *p;
again:
  p = NULL;
  if (worker_id != RATCHET_POOL_ANY) {
    if (worker_id >= pool->n_slots || pool->slots[worker_id]->removed)
      return -ENOENT;
    p = pool->slots[worker_id]->cur;
    if (!proc_has_room(p))
      return -EAGAIN;
  } else {
    /* The least loaded ready worker; ties go round-robin. */
    for (uint32_t k = 0; k < pool->n_slots; k++) {
      slot *s = pool->slots[(pool->rr + k) % pool->n_slots];
      if (s->removed || !proc_has_room(s->cur))
        continue;
      if (p == NULL || s->cur->n_inflight < p->n_inflight)
        p = s->cur;
    }
    if (p == NULL)
      return -EAGAIN;
    pool->rr = (p->slot->id + 1) % pool->n_slots;
  }
  for (uint32_t i = 0; i < p->n_inflight; i++)
    if (p->inflight[i].id == task->id)
      return -EEXIST;
  Ratchet__V1__Task copy = *task;
  Ratchet__V1__Frame f = RATCHET__V1__FRAME__INIT;
  f.msg_case = RATCHET__V1__FRAME__MSG_TASK;
  f.task = &copy;
  int rc = ratchet_uv_transport_send(p->t, &f);
  if (rc < 0 && rc != -ENOMEM && rc != -EINVAL &&
      rc != RATCHET_EFRAME_TOO_BIG) {
    /* The worker's stdin is broken (EPIPE, ...): it is dying, and its exit
     * and EOF will be handled as usual. That is no fault of the task, so
     * the owner is not told about it: another worker is tried, or the
     * owner hears -EAGAIN and tries later. */
    p->send_broken = true;
    goto again;
  }
  if (rc < 0)
    return rc;
  inflight *in = &p->inflight[p->n_inflight++];
  in->id = task->id;
  in->crashes = crash_count;
  in->deadline_ms = task_deadline_ms(pool, task);
  in->overdue = false;
  proc_schedule(p);
  pool->st.dispatched++;
  pool->st.in_flight++;
  if (worker_out != NULL)
    *worker_out = p->slot->id;
  return 0;
}

int ratchet_pool_resize(ratchet_pool *pool, uint32_t size) {
  if (size < 1 || size > RATCHET_POOL_MAX_SIZE)
    return -EINVAL;
  if (pool->closing || pool->state == S_FAILED)
    return -ESHUTDOWN;
  int rc = pool_add_slots(pool, size);
  if (rc != 0)
    return rc;
  uint32_t old = pool->size;
  pool->size = size;
  pool->st.size = size;
  for (uint32_t i = size; i < old; i++) {
    slot *s = pool->slots[i];
    s->removed = true;
    if (s->restart_pending) {
      uv_timer_stop(&s->restart_timer);
      s->restart_pending = false;
    }
    if (s->cur != NULL)
      proc_stop(s->cur, pool->o.close_grace_ms);
  }
  for (uint32_t i = old; i < size; i++) {
    slot *s = pool->slots[i];
    s->removed = false;
    s->flaps = 0;
    s->prev_delay_ns = 0;
    if (pool->state == S_RUNNING)
      slot_start(s);
  }
  return 0;
}

void ratchet_pool_stats_get(const ratchet_pool *pool, ratchet_pool_stats *st) {
  *st = pool->st;
  st->ready = 0;
  st->in_flight = 0;
  for (uint32_t i = 0; i < pool->n_slots; i++) {
    const proc *p = pool->slots[i]->cur;
    if (p != NULL && p->state == P_READY)
      st->ready++;
  }
  for (const proc *p = pool->procs; p != NULL; p = p->next)
    st->in_flight += p->n_inflight;
}

int ratchet_pool_worker_stats_get(const ratchet_pool *pool, uint32_t worker_id,
                                  ratchet_pool_worker_stats *st) {
  if (worker_id >= pool->n_slots || pool->slots[worker_id]->removed)
    return -ENOENT;
  const slot *s = pool->slots[worker_id];
  const proc *p = s->cur;
  memset(st, 0, sizeof *st);
  st->worker_id = s->id;
  st->pid = p != NULL ? (int)p->pid : 0;
  st->generation = s->generation;
  st->in_flight = p != NULL ? p->n_inflight : 0;
  st->ready = p != NULL && p->state == P_READY;
  st->capacity = st->ready ? p->capacity : 0;
  st->tasks_done = s->tasks_done;
  st->tasks_lost = s->tasks_lost;
  st->exits = s->exits;
  st->restarts = s->restarts;
  st->stderr_lines = s->stderr_lines;
  st->recycles = s->recycles;
  st->hangs = s->hangs;
  st->rss_kb = p != NULL ? p->rss_kb : 0;
  st->pongs = p != NULL ? p->pongs : 0;
  st->tasks_until_recycle = p != NULL && p->recycle_at > p->tasks_done
                                ? p->recycle_at - p->tasks_done
                                : 0;
  return 0;
}

void *ratchet_pool_data(const ratchet_pool *pool) {
  return pool->o.data;
}

void ratchet_pool_close(ratchet_pool *pool, ratchet_pool_close_cb cb) {
  if (pool == NULL || pool->closing)
    return;
  pool->closing = true;
  pool->close_cb = cb;
  pool_stop_all(pool);
  for (uint32_t i = 0; i < pool->n_slots; i++)
    uv_close((uv_handle_t *)&pool->slots[i]->restart_timer, slot_timer_closed);
  pool_maybe_finish(pool);
}

const char *ratchet_pool_event_name(ratchet_pool_event_type t) {
  switch (t) {
  case RATCHET_POOL_EVENT_STARTING:
    return "starting";
  case RATCHET_POOL_EVENT_READY:
    return "ready";
  case RATCHET_POOL_EVENT_EXITED:
    return "exited";
  case RATCHET_POOL_EVENT_RESTARTING:
    return "restarting";
  case RATCHET_POOL_EVENT_RECYCLED:
    return "recycled";
  case RATCHET_POOL_EVENT_HUNG:
    return "hung";
  case RATCHET_POOL_EVENT_FAILED:
    return "failed";
  case RATCHET_POOL_EVENT_CLOSED:
    return "closed";
  }
  return "unknown";
}

const char *ratchet_pool_lost_reason_name(ratchet_pool_lost_reason r) {
  switch (r) {
  case RATCHET_POOL_LOST_DIED:
    return "died";
  case RATCHET_POOL_LOST_PROTOCOL:
    return "protocol";
  case RATCHET_POOL_LOST_HUNG:
    return "hung";
  case RATCHET_POOL_LOST_CLOSED:
    return "closed";
  case RATCHET_POOL_LOST_SEND:
    return "send";
  case RATCHET_POOL_LOST_QUEUED:
    return "queued";
  }
  return "unknown";
}
