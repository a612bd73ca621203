/*
 * pool_proc.c - a worker process's lifecycle: starting it (spawn, pipes,
 * Hello), its timer, the escalation that stops it, its stderr and reaping.
 *
 * A proc owns three pipes (stdin/stdout through a ratchet_uv_transport,
 * stderr through a uv_pipe_t read line by line) and one timer that always
 * waits for the one thing that matters next: Ready (start timeout); then,
 * while it is ready, the earliest task deadline (busy) or the next Ping and
 * its Pong (idle), recomputed by ratchet__pool_proc_schedule after every
 * dispatch, Result and Pong; then the escalation Cancel -> SIGTERM ->
 * SIGKILL; then a linger for stderr. A missed deadline marks the proc hung
 * and enters the escalation at SIGTERM (a task's Cancel went out at its
 * deadline). Stopping a proc (close, resize, recycle) sends Shutdown and
 * starts the escalation after the grace period.
 *
 * A proc dies in two halves that may come in either order: the exit status,
 * handled here, and the end of its stdout (pool_frames.c). On SIGCHLD each
 * of our pids is probed with waitid(WNOWAIT), its process group is SIGKILLed
 * while the zombie still holds the pgid - so no grandchild survives and the
 * pgid cannot have been reused - and then it is reaped with wait4 for its
 * rusage. The proc is finalised (pool_frames.c) once both halves are known;
 * the escalation timer bounds the wait for the second half. A proc is freed
 * when its last handle's close callback has run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "pool_internal.h"
#include "ratchet/alloc.h"
#include "ratchet/codec.h"
#include "ratchet/error.h"
#include "ratchet/pool.h"
#include "ratchet/rng.h"
#include "ratchet/transport.h"

static void proc_uv_closed(uv_handle_t *h);

/* ---- timers ----------------------------------------------------------- */

static void proc_timer_cb(uv_timer_t *h);

void ratchet__pool_proc_arm(proc *p, timer_use use, uint64_t ms) {
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
      ratchet__pool_proc_close_transport(p);
    }
    ratchet__pool_proc_try_finalize(p);
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
      ratchet__pool_proc_arm(p, T_ESCALATE, pool->o.kill_grace_ms);
      return;
    }
  }
  if (p->kill_stage == 1) {
    p->kill_stage = 2;
    proc_signal_group(p, SIGTERM);
    ratchet__pool_proc_arm(p, T_ESCALATE, pool->o.kill_grace_ms);
    return;
  }
  p->kill_stage = 3;
  proc_signal_group(p, SIGKILL);
  ratchet__pool_proc_arm(p, T_ESCALATE, pool->o.kill_grace_ms);
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
  ratchet__pool_set_cause(p, "%s", msg);
  p->hung = true;
  p->state = P_DEAD;
  p->slot->hangs++;
  p->pool->st.hung++;
  p->kill_stage = 1;
  proc_escalate(p);
  ratchet_pool_event ev;
  ratchet__pool_event_init(&ev, RATCHET_POOL_EVENT_HUNG, p);
  ev.message = msg;
  ratchet__pool_emit(p->pool, &ev);
}

/* Arms the timer for whatever a ready worker waits for next: the earliest
 * task deadline while tasks are in flight, else the Pong of the Ping that
 * is out, else the next Ping. Leaves the start, escalation and linger
 * timers alone. */
void ratchet__pool_proc_schedule(proc *p) {
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
  ratchet__pool_proc_arm(p, use, due > now ? due - now : 0);
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
    ratchet__pool_proc_schedule(p);
    return;
  }
  char msg[TEXT_MAX];
  ratchet__pool_fmt(
      msg, sizeof msg,
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
  ratchet__pool_proc_schedule(p);
}

static void proc_timer_cb(uv_timer_t *h) {
  proc *p = h->data;
  timer_use use = p->timer_use;
  p->timer_use = T_NONE;
  char msg[TEXT_MAX];
  switch (use) {
  case T_START:
    ratchet__pool_fmt(msg, sizeof msg, "did not send Ready within %u ms",
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
    ratchet__pool_fmt(msg, sizeof msg, "did not answer Ping %llu within %u ms",
                      (unsigned long long)p->ping_seq,
                      (unsigned)p->pool->ping_timeout_ms);
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
    ratchet__pool_proc_release(p);
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
  ratchet__pool_maybe_finish(pool);
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
void ratchet__pool_proc_release(proc *p) {
  if (!p->finalized || p->err_open)
    return;
  if (p->timer_open) {
    p->timer_open = false;
    uv_close((uv_handle_t *)&p->timer, proc_uv_closed);
  }
}

void ratchet__pool_proc_close_transport(proc *p) {
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
    ratchet__pool_proc_release(p);
  }
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
    ratchet__pool_proc_arm(p, T_ESCALATE, p->pool->o.kill_grace_ms);
  }
  ratchet__pool_proc_try_finalize(p);
}

void ratchet__pool_sigchld_cb(uv_signal_t *h, int signum) {
  (void)signum;
  ratchet_pool *pool = h->data;
  proc *next;
  for (proc *p = pool->procs; p != NULL; p = next) {
    next = p->next;
    if (!p->reaped)
      proc_reap(p);
  }
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

/* Starts a process for s. Returns 0, or the error when no process was
 * started (the caller decides whether that is the supervisor's business). */
int ratchet__pool_slot_spawn(slot *s) {
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
    ratchet__pool_set_cause(
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
  ratchet_uv_transport_callbacks cbs = {.on_frame = ratchet__pool_on_frame,
                                        .on_end = ratchet__pool_on_end,
                                        .on_drain = ratchet__pool_on_drain};
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
  ratchet__pool_event_init(&ev, RATCHET_POOL_EVENT_STARTING, p);
  if (setup != 0) {
    ratchet__pool_set_cause(p, "could not set up its pipes: %s",
                            ratchet_strerror(setup));
    p->state = P_DEAD;
    (void)kill(-p->pid, SIGKILL);
    ratchet__pool_emit(pool, &ev);
    return 0;
  }
  p->state = P_STARTING;
  int hr = proc_send_hello(p);
  if (hr != 0)
    ratchet__pool_set_cause(p, "could not send Hello: %s",
                            ratchet_strerror(hr));
  if (pool->o.start_timeout_ms != 0)
    ratchet__pool_proc_arm(p, T_START, pool->o.start_timeout_ms);
  ratchet__pool_emit(pool, &ev);
  return 0;

fail:
  ratchet_free(p->inflight);
  ratchet_free(p);
  return rc;
}

void ratchet__pool_slot_start(slot *s) {
  int rc = ratchet__pool_slot_spawn(s);
  if (rc != 0)
    ratchet__pool_slot_start_failed(s, rc);
}

/* ---- stopping ---------------------------------------------------------- */

/* Asks p to end: Shutdown{grace_ms}, then after grace_ms the escalation.
 * Its tasks still in flight when it is reaped are lost (CLOSED). */
void ratchet__pool_proc_stop(proc *p, uint64_t grace_ms) {
  if (p->slot->cur == p)
    p->slot->cur = NULL;
  p->stop_requested = true;
  if (p->finalized)
    return;
  if (p->state == P_STARTING) {
    /* Nothing but Hello may precede Ready, so no Shutdown: the end of its
     * stdin tells it to exit (docs/protocol.md), SIGTERM follows if not. */
    p->state = P_DEAD;
    ratchet__pool_proc_close_transport(p);
    p->eof = true;
    p->kill_stage = 1;
    ratchet__pool_proc_arm(p, T_ESCALATE, p->pool->o.kill_grace_ms);
    ratchet__pool_proc_try_finalize(p);
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
    ratchet__pool_proc_arm(p, T_ESCALATE, grace_ms);
  }
}
